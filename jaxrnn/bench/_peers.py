"""The peers: the same network, with the same weights, in other libraries.

Each :class:`Implementation` here rebuilds the network of a :class:`Data` in
a peer's own layout and maps the peer's gradient back to jaxrnn's, so the
suite can check that all of them compute the same numbers before timing them:

* ``flax``: ``nn.RNN`` over ``nn.OptimizedLSTMCell``, ``nn.GRUCell``,
  ``nn.SimpleCell``.
* ``equinox``: ``eqx.nn.LSTMCell`` / ``GRUCell``, vmapped over the batch and
  scanned over time.
* ``torch`` and ``torch cuDNN``: ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` on the
  CPU and on a CUDA GPU.
* ``jax cuDNN``: ``jax.experimental.rnn.lstm``, cuDNN's LSTM called from JAX.

The peers are imported inside ``missing`` and ``prepare`` only, so that
``jaxrnn.bench`` imports without any of them.
"""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn import interop
from jaxrnn.bench._jax import numpy_gradients, prepare_jax
from jaxrnn.bench._problem import Data, Gradients, Implementation, Prepared, Problem

__all__ = ["CUDNN_JAX", "EQUINOX", "FLAX", "PEERS", "TORCH", "TORCH_CUDA"]


def _not_installed(module: str) -> str | None:
    """Why ``module`` cannot be used here, or None if it imports."""
    try:
        importlib.import_module(module)
    except ImportError:
        return f"{module} is not installed: pip install 'jaxrnn[bench]'"
    return None


def _concat(blocks) -> np.ndarray:
    """Gate blocks (along the last axis) joined into one array, for gradients."""
    return np.concatenate([np.asarray(b) for b in blocks], axis=-1)


# --------------------------------------------------------------------------
# Flax.


def _flax_params(cell: str, data: Data) -> dict:
    """The cell's params in Flax Linen's names and layout, by :func:`jaxrnn.interop.to_flax`.

    ``OptimizedLSTMCell`` and ``SimpleCell`` hold one bias per gate,
    ``b_ih + b_hh``; ``GRUCell`` keeps ``n``'s two apart, since ``b_hn`` is
    inside ``r * (W_hn h + b_hn)``.
    """
    jax_cell = getattr(jaxrnn, cell)
    return interop.to_flax(jax_cell, jax_cell.params_type(*data[:4]))


def _flax_gradients(cell: str, d: dict, d_xs) -> Gradients:
    """The gradient in Flax's layout mapped back to ours; a folded bias's goes to both of ours."""
    grads = interop._from_flax_gradient(getattr(jaxrnn, cell), d)
    return numpy_gradients(grads.w_ih, grads.w_hh, grads.b_ih, grads.b_hh, d_xs)


def _flax_prepare(problem: Problem, data: Data) -> Prepared:
    import flax.linen as nn

    dtype = data.xs.dtype
    cells = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "simple_rnn": nn.SimpleCell}
    # param_dtype also sets the zero carry's dtype, which must match the data's. The weights come from the data;
    # Linen still traces the recurrent kernel's default orthogonal init, whose QR has no bfloat16 from JAX 0.12.
    cell = cells[problem.cell](features=problem.hidden, param_dtype=dtype,
                               recurrent_kernel_init=nn.initializers.zeros_init())
    # time_major=True: nn.RNN scans over axis 0 as it is; the batch-major
    # default would move the time axis to the front and back around the scan,
    # and our data is time-major already.
    model = nn.RNN(cell, time_major=True)
    params = {"params": {"cell": jax.tree.map(jnp.asarray, _flax_params(problem.cell, data))}}

    def run(p, xs):
        return model.apply(p, xs)

    def to_gradients(d, d_xs):
        return _flax_gradients(problem.cell, d["params"]["cell"], d_xs)

    return prepare_jax(run, params, data, to_gradients)


FLAX = Implementation(
    name="flax",
    cells=("lstm", "gru", "simple_rnn"),
    missing=lambda: _not_installed("flax"),
    prepare=_flax_prepare,
)


# --------------------------------------------------------------------------
# Equinox.


def _equinox_prepare(problem: Problem, data: Data) -> Prepared:
    """Equinox's cells hold torch's layout: ``weight_ih`` (G·H, X), ``weight_hh`` (G·H, H).

    ``LSTMCell`` has one ``bias`` (G·H,), ``b_ih + b_hh``. ``GRUCell`` has
    ``bias`` (3H,) on the input side, where ``r`` and ``z`` take
    ``b_i + b_h`` and ``n`` takes ``b_in``, and ``bias_n`` (H,) = ``b_hn``
    inside ``r * (W_hn h + b_hn)``. Gates in torch's order in both.
    """
    import equinox as eqx

    lstm = problem.cell == "lstm"
    dtype = data.xs.dtype
    h = problem.hidden
    make = eqx.nn.LSTMCell if lstm else eqx.nn.GRUCell
    # The key only draws initial weights, which are all replaced below.
    cell = make(problem.input, h, key=jax.random.key(0), dtype=dtype)
    w_ih, w_hh, b_ih, b_hh = data.weights()
    weights = (jnp.asarray(w_ih.T), jnp.asarray(w_hh.T))
    if lstm:
        bias = jnp.asarray(b_ih + b_hh)
        cell = eqx.tree_at(lambda c: (c.weight_ih, c.weight_hh, c.bias), cell, (*weights, bias))
    else:
        hidden_rz = np.concatenate([b_hh[: 2 * h], np.zeros(h, b_hh.dtype)])
        biases = (jnp.asarray(b_ih + hidden_rz), jnp.asarray(b_hh[2 * h :]))
        cell = eqx.tree_at(lambda c: (c.weight_ih, c.weight_hh, c.bias, c.bias_n), cell, (*weights, *biases))
    # Differentiate the array leaves; the rest (sizes, flags) stays static.
    params, static = eqx.partition(cell, eqx.is_inexact_array)

    def run(p, xs):
        cell = eqx.combine(p, static)

        def step(carry, x):
            carry = jax.vmap(cell)(x, carry)
            return carry, carry[0] if lstm else carry

        zeros = jnp.zeros((problem.batch, h), dtype)
        return jax.lax.scan(step, (zeros, zeros) if lstm else zeros, xs)[1]

    def to_gradients(d, d_xs):
        if lstm:
            b_ih = b_hh = d.bias
        else:
            b_ih, b_hh = d.bias, _concat([d.bias[: 2 * h], d.bias_n])
        return numpy_gradients(d.weight_ih.T, d.weight_hh.T, b_ih, b_hh, d_xs)

    return prepare_jax(run, params, data, to_gradients)


EQUINOX = Implementation(
    name="equinox",
    cells=("lstm", "gru"),  # Equinox has no simple RNN cell
    missing=lambda: _not_installed("equinox"),
    prepare=_equinox_prepare,
)


# --------------------------------------------------------------------------
# PyTorch.

_TORCH_MODULES = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "RNN"}


def _torch_implementation(name: str, device: str) -> Implementation:
    """torch's own recurrent module, sequence-first as our data, on ``device``.

    Its layout is jaxrnn's transposed, loaded by :func:`jaxrnn.interop.to_torch`.
    The thread count is the caller's to set (``torch.set_num_threads``).
    """

    def missing() -> str | None:
        why = _not_installed("torch")
        if why is None and device == "cuda":
            import torch

            if not torch.cuda.is_available():
                return "needs a CUDA GPU"
        return why

    def prepare(problem: Problem, data: Data) -> Prepared:
        import torch

        kind = getattr(torch.nn, _TORCH_MODULES[problem.cell])
        extra = {"nonlinearity": "tanh"} if problem.cell == "simple_rnn" else {}
        xs = _tensor(data.xs, device).requires_grad_()
        dy = _tensor(data.dy, device)
        module = kind(problem.input, problem.hidden, **extra).to(device=device, dtype=xs.dtype)
        cell = getattr(jaxrnn, problem.cell)
        state = interop.to_torch(cell, cell.params_type(*data[:4]))
        module.load_state_dict({key: _tensor(value, device) for key, value in state.items()})
        # CUDA calls return before the GPU is done: wait, so that timing the call times the work.
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def gradient():
            module.zero_grad(set_to_none=True)
            xs.grad = None
            hs, _ = module(xs)  # zero initial state when none is given
            (hs * dy).sum().backward()
            sync()

        def forward():
            with torch.no_grad():
                hs, _ = module(xs)
            sync()
            return hs

        def outputs():
            gradient()
            grads = {key: p.grad for key, p in module.named_parameters()}
            arrays = (grads["weight_ih_l0"].T, grads["weight_hh_l0"].T, grads["bias_ih_l0"], grads["bias_hh_l0"])
            return _numpy(forward()), numpy_gradients(*map(_numpy, arrays), _numpy(xs.grad))

        return Prepared(gradient=gradient, forward=forward, outputs=outputs)

    return Implementation(name=name, cells=("lstm", "gru", "simple_rnn"), missing=missing, prepare=prepare)


def _tensor(array: np.ndarray, device: str):
    """``array`` as a tensor of its own dtype on ``device``; numpy hands torch no bfloat16, so that goes by float32."""
    import torch

    if array.dtype.name == "bfloat16":
        return torch.from_numpy(np.asarray(array, np.float32)).to(device=device, dtype=torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(array)).to(device=device)


def _numpy(tensor) -> np.ndarray:
    """A tensor as numpy; bfloat16, which numpy lacks, widened to float32 (exactly)."""
    import torch

    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()


TORCH = _torch_implementation("torch", "cpu")
TORCH_CUDA = _torch_implementation("torch cuDNN", "cuda")


# --------------------------------------------------------------------------
# JAX's cuDNN LSTM.


def _pack_lstm(data: Data) -> np.ndarray:
    """The flat weights of ``jax.experimental.rnn.lstm`` for one layer, one direction.

    cuDNN's order: ``W_ih`` (4H, X) and ``W_hh`` (4H, H), row-major (torch's
    layout, our weights transposed), then ``b_ih`` and ``b_hh`` (4H,); gate
    blocks i, f, g, o in all four, as ours.
    """
    w_ih, w_hh, b_ih, b_hh = data.weights()
    return np.concatenate([w_ih.T.ravel(), w_hh.T.ravel(), b_ih, b_hh])


def _cudnn_prepare(problem: Problem, data: Data, *, reference: bool = False) -> Prepared:
    """``jax.experimental.rnn.lstm`` on our weights, batch-first as it wants.

    Args:
        problem: an LSTM problem.
        data: float32 data: the cuDNN kernel is float32 only.
        reference: run ``jax.experimental.rnn.lstm_ref`` on the unpacked
            weights in place of the cuDNN kernel. Everything else (packing,
            transposes, unpacking the gradient) stays as it is, so the tests
            can check it without a GPU, in float64.
    """
    from jax.experimental import rnn

    x, h, b = problem.input, problem.hidden, problem.batch
    if not reference and data.xs.dtype != np.float32:
        raise ValueError(f"jax.experimental.rnn.lstm runs float32 only; got {data.xs.dtype} data.")
    seq_lengths = jnp.full((b,), problem.steps, jnp.int32)
    zeros = jnp.zeros((1, b, h), data.xs.dtype)  # (layers · directions, B, H)

    def run(w, xs):
        xs = jnp.swapaxes(xs, 0, 1)
        if reference:
            unpacked = rnn.unpack_lstm_weights(w, x, h, 1, False)
            ys = rnn.lstm_ref(xs, zeros, zeros, *unpacked, seq_lengths, x, h, 1, 0.0, False)[0]
        else:
            ys = rnn.lstm(
                xs, zeros, zeros, w, seq_lengths,
                input_size=x, hidden_size=h, num_layers=1, dropout=0.0, bidirectional=False,
            )[0]
        return jnp.swapaxes(ys, 0, 1)

    def to_gradients(d_w, d_xs):
        w_ih, w_hh, b_ih, b_hh = (part[0] for part in rnn.unpack_lstm_weights(d_w, x, h, 1, False))
        return numpy_gradients(w_ih.T, w_hh.T, b_ih, b_hh, d_xs)

    return prepare_jax(run, jnp.asarray(_pack_lstm(data)), data, to_gradients)


def _cudnn_missing() -> str | None:
    return None if jax.default_backend() == "gpu" else "needs a GPU (cuDNN)"


def _cudnn_unsupported(problem: Problem) -> str | None:
    return None if problem.dtype == "float32" else "jax.experimental.rnn.lstm runs float32 only"


CUDNN_JAX = Implementation(
    name="jax cuDNN",
    cells=("lstm",),  # the only cell jax.experimental.rnn has
    missing=_cudnn_missing,
    prepare=_cudnn_prepare,
    unsupported=_cudnn_unsupported,
)


PEERS = (FLAX, EQUINOX, TORCH, TORCH_CUDA, CUDNN_JAX)
