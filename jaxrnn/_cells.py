"""The built-in sequential cells: simple RNN, LSTM and GRU on the gated tier, and the projected LSTM.

The simple RNN, LSTM and GRU are :class:`jaxrnn.GatedCell` values
(:mod:`jaxrnn._gated`): each supplies its gate count and the elementwise maths
of one step, forward and reverse; the engine owns the weights (heads
included), init, the products and every weight gradient. Gate blocks are in
torch's order (LSTM ``i, f, g, o``, GRU ``r, z, n``), so converting torch
weights is a transpose. The projected LSTM, whose output is a product of the
new state, is a general :class:`jaxrnn.Cell` built from the LSTM's pieces.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _checks, _registry
from jaxrnn._gated import (
    GatedCell,
    GatedParams,
    gate_biases,
    glorot_blocks,
    linear_projection,
    linear_projection_vjp,
    orthogonal_blocks,
    weights_and_bias,
)
from jaxrnn._precision import matmul
from jaxrnn._protocol import BPTT, Cell

# --------------------------------------------------------------------------
# Parameters and carries.


class SimpleRNNParams(GatedParams):
    """Parameters of :data:`simple_rnn` (G = 1)."""

    __slots__ = ()


class LSTMParams(GatedParams):
    """Parameters of :data:`lstm` (G = 4, gate blocks ``i, f, g, o``)."""

    __slots__ = ()


class GRUParams(GatedParams):
    """Parameters of :data:`gru` (G = 3, gate blocks ``r, z, n``)."""

    __slots__ = ()


class ProjectedLSTMParams(NamedTuple):
    """Parameters of :data:`projected_lstm` (G = 4, gate blocks ``i, f, g, o``); P is the projection size.

    Attributes:
        w_ih: ``(input_size, 4H)``.
        w_hh: ``(P, 4H)``: the recurrent weights read the projected state.
        b_ih, b_hh: ``(4H,)``.
        w_hr: ``(H, P)``, the projection ``h = (o ⊙ tanh c) W_hr``.
    """

    w_ih: Array
    w_hh: Array
    b_ih: Array
    b_hh: Array
    w_hr: Array


class LSTMCarry(NamedTuple):
    """LSTM state; unpacks as ``h, c = carry``.

    Attributes:
        h: hidden state (the output), ``(batch, hidden)``.
        c: cell state (the memory), ``(batch, hidden)``.
    """

    h: Array
    c: Array


class LSTMResidual(NamedTuple):
    """What one LSTM step saves for the backward pass.

    Attributes:
        gates: the activated gates ``[i, f, g, o]``, ``(batch, 4 * hidden)``:
            one contiguous array, which the engine stores in the buffer that
            held the step's input projection and then overwrites with the gate
            cotangents (``residual_in_buffer``).
        c_prev: the cell state entering the step, ``(batch, hidden)``.
        tanh_c: ``tanh c'`` of the state leaving it, ``(batch, hidden)``,
            which the forward pass computes anyway. Saved rather than
            recomputed: the backward step's tanh loop, which read the gates
            back from the shared buffer, cost more than the 20% more residual
            memory (benchmarks/RESULTS.md, "Backward strategies").
    """

    gates: Array
    c_prev: Array
    tanh_c: Array


class GRUResidual(NamedTuple):
    """What one GRU step saves for the backward pass.

    Attributes:
        gates: reset gate, update gate and candidate ``[r, z, n]``,
            ``(batch, 3 * hidden)``, stored like :class:`LSTMResidual`'s.
        hn: ``W_hn h + b_hn``, the term the reset gate multiplies, ``(batch, hidden)``.
        h_prev: the state entering the step, ``(batch, hidden)``, which the
            update gate's cotangent reads: kept as ``forward`` received it, so
            the engine saves nothing for it and rebuilds it from the outputs.
    """

    gates: Array
    hn: Array
    h_prev: Array


# --------------------------------------------------------------------------
# The maths of one step, forward and reverse: elementwise, on (B, G·H) blocks.


def _simple_rnn_forward(gx: Array, gh: Array, h: Array):
    """``h' = tanh(gx + gh)``; saves ``h'`` (in the projection's buffer)."""
    h = jnp.tanh(gx + gh)
    return h, (h,)


def _simple_rnn_backward(res, dh: Array):
    (h,) = res
    return dh * (1 - h**2), None, None


def lstm_state(i: Array, f: Array, g: Array, o: Array, c_prev: Array):
    """The LSTM memory update from activated gates: ``(h, c, tanh c)``.

    ``c = f * c_prev + i * g`` and ``h = o * tanh(c)``. Elementwise, so it
    serves any layout (the notebook's ``(n_a, m)`` columns too).
    """
    c = f * c_prev + i * g
    tanh_c = jnp.tanh(c)
    return o * tanh_c, c, tanh_c


def lstm_state_vjp(dh: Array, dc: Array, i: Array, f: Array, g: Array, o: Array, c_prev: Array, tanh_c: Array):
    """Backward of :func:`lstm_state` and the gate activations.

    Given the cotangents ``dh``, ``dc`` of ``(h, c)`` leaving the step,
    returns the cotangents of the four gate pre-activations (in ``i, f, g, o``
    order) and of ``c_prev``. Elementwise, so any layout works.
    """
    dc = dc + dh * o * (1 - tanh_c**2)
    d_i = dc * g * i * (1 - i)
    d_f = dc * c_prev * f * (1 - f)
    d_g = dc * i * (1 - g**2)
    d_o = dh * tanh_c * o * (1 - o)
    return (d_i, d_f, d_g, d_o), dc * f


def _lstm_forward(gx: Array, gh: Array, carry: LSTMCarry):
    """``i, f, o = σ(·)``, ``g = tanh(·)`` of ``gx + gh``, then :func:`lstm_state`."""
    i, f, g, o = jnp.split(gx + gh, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    h, c, tanh_c = lstm_state(i, f, g, o, carry.c)
    return LSTMCarry(h, c), LSTMResidual(jnp.concatenate([i, f, g, o], axis=-1), carry.c, tanh_c)


def _lstm_backward(res: LSTMResidual, d_carry: LSTMCarry):
    i, f, g, o = jnp.split(res.gates, 4, axis=-1)
    d_gates, dc_prev = lstm_state_vjp(d_carry.h, d_carry.c, i, f, g, o, res.c_prev, res.tanh_c)
    return jnp.concatenate(d_gates, axis=-1), None, LSTMCarry(None, dc_prev)  # type: ignore[arg-type]


def _gru_forward(gx: Array, gh: Array, h: Array):
    """Reset-after GRU (cuDNN, torch, Flax, Keras): the reset gate scales ``W_hn h + b_hn``."""
    x_r, x_z, x_n = jnp.split(gx, 3, axis=-1)
    h_r, h_z, hn = jnp.split(gh, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * hn)
    return (1 - z) * n + z * h, GRUResidual(jnp.concatenate([r, z, n], axis=-1), hn, h)


def _gru_backward(res: GRUResidual, dh: Array):
    r, z, n = jnp.split(res.gates, 3, axis=-1)
    dn = dh * (1 - z) * (1 - n**2)  # at n's pre-activation
    d_r = dn * res.hn * r * (1 - r)
    d_z = dh * (res.h_prev - n) * z * (1 - z)
    # gh's n block is scaled by r; its r and z blocks are d_gx's
    return jnp.concatenate([d_r, d_z, dn], axis=-1), (None, None, dn * r), dh * z


_INIT_DOC = """Init (``cell.init(key, input_size, hidden_size, dtype=..., num_heads=1)``), Keras' recurrent defaults:

    * ``w_ih``: Glorot-uniform per gate block (fan-in ``input_size``, fan-out
      ``hidden_size``), which keeps the pre-activation variance near the input's.
    * ``w_hh``: an orthogonal ``(hidden, hidden)`` block per gate. All singular
      values are 1, so early on the recurrent Jacobian neither shrinks nor grows
      gradients over time (Saxe et al., 2014). With ``num_heads=K`` (K dividing
      H) it is block-diagonal: ``w_hh`` is ``(K, H/K, G·H/K)``, an orthogonal
      ``(H/K, H/K)`` block per head and gate; head k's pre-activations read only
      units ``k·H/K … (k+1)·H/K − 1`` of ``h`` (see :func:`jaxrnn.block_diagonal`).
    * biases: zero, except the LSTM forget gate's ``b_ih`` block, which is 1 so
      the memory is kept until the net learns to drop it (Jozefowicz et al., 2015).
    """


def _forget_gate_open(hidden_size: int, num_heads: int, dtype) -> Array:
    return gate_biases(4, hidden_size, dtype, unit_block=1)


simple_rnn = _registry.register_built_in(GatedCell(
    "simple_rnn", 1, _simple_rnn_forward, _simple_rnn_backward, params_type=SimpleRNNParams,
    residual_in_buffer=True, gates=("h",),
    doc=f"""Elman RNN: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``.

    Params :class:`SimpleRNNParams` ``(w_ih (X, H), w_hh (H, H), b_ih (H,), b_hh (H,))``;
    carry ``h`` of shape (batch, hidden). Manual BPTT saves ``h'``, in the
    buffer of the step's input projection.

    {_INIT_DOC}""",
))

lstm = _registry.register_built_in(GatedCell(
    "lstm", 4, _lstm_forward, _lstm_backward, carry_type=LSTMCarry, bias_init=_forget_gate_open,
    params_type=LSTMParams, residual_in_buffer=True, gates=("i", "f", "g", "o"),
    doc=f"""LSTM, with the seeds' equations (z = W_ih x + b_ih + W_hh h + b_hh)::

        i, f, g, o = split(z, 4)
        i, f, o = σ(i), σ(f), σ(o);  g = tanh(g)     # input, forget, output gates; candidate
        c' = f ⊙ c + i ⊙ g
        h' = o ⊙ tanh(c')

    Params :class:`LSTMParams` ``(w_ih (X, 4H), w_hh (H, 4H), b_ih (4H,), b_hh (4H,))``,
    torch's gate order; carry :class:`LSTMCarry` ``(h, c)``, each (batch,
    hidden). Manual BPTT saves 6·batch·hidden values a step (four gates,
    ``c_prev`` and ``tanh c``).

    {_INIT_DOC}""",
))

gru = _registry.register_built_in(GatedCell(
    "gru", 3, _gru_forward, _gru_backward, params_type=GRUParams, residual_in_buffer=True, gates=("r", "z", "n"),
    doc=f"""GRU, reset-after form (cuDNN, torch.nn.GRU, Flax, Keras)::

        r = σ(W_ir x + b_ir + W_hr h + b_hr)
        z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        h' = (1 − z) ⊙ n + z ⊙ h

    Params :class:`GRUParams` ``(w_ih (X, 3H), w_hh (H, 3H), b_ih (3H,), b_hh (3H,))``,
    torch's gate order r, z, n; carry ``h`` of shape (batch, hidden). Manual
    BPTT saves 4·batch·hidden values a step (``r``, ``z``, ``n`` and ``W_hn h +
    b_hn``; the ``h`` its residual names is rebuilt from the outputs).

    {_INIT_DOC}""",
))


# --------------------------------------------------------------------------
# The projected LSTM: the LSTM's maths, then h' = (o ⊙ tanh c') W_hr.


def _projected_lstm_recurrence(params: ProjectedLSTMParams, carry: LSTMCarry, gx: Array):
    """The LSTM step on the projected state: ``h' = (o ⊙ tanh c') W_hr``, (B, P)."""
    state = carry.c.dtype
    gh = matmul(carry.h, params.w_hh).astype(state) + params.b_hh.astype(state)
    (m, c), residual = _lstm_forward(gx.astype(state) + params.b_ih.astype(state), gh, carry)
    h = matmul(m, params.w_hr).astype(state)
    return LSTMCarry(h, c), h, residual


def _projected_lstm_step_vjp(params, transposed, d_carry, h, h_prev, res):
    w_hh_t, w_hr_t = transposed
    dz, _, (_, dc_prev) = _lstm_backward(res, LSTMCarry(matmul(d_carry.h, w_hr_t), d_carry.c))
    m = jnp.split(res.gates, 4, axis=-1)[3] * res.tanh_c  # the unprojected output, for dW_hr after the scan
    dtype = params.w_hr.dtype  # 16-bit operands for dW_hr with 16-bit params
    return LSTMCarry(matmul(dz, w_hh_t), dc_prev), dz, (m.astype(dtype), d_carry.h.astype(dtype))


def _projected_lstm_param_grads(params, h_prev: Array, dz: Array, stash):
    m, dh = stash
    d_w_hh, d_b = weights_and_bias(h_prev, dz)
    # None: w_ih's cotangent comes from the projection's VJP, added by the engine.
    return ProjectedLSTMParams(None, d_w_hh, d_b, d_b, matmul(m.T, dh))  # type: ignore[arg-type]


def _init_projected_lstm(key, input_size: int, hidden_size: int, dtype, proj_size: int | None = None):
    """As :data:`lstm`'s init, with ``w_hh`` (P, 4H) orthogonal per gate and ``w_hr`` (H, P) orthogonal."""
    proj_size = _projection_size(hidden_size, proj_size)
    k_ih, k_hh, k_hr = jax.random.split(key, 3)
    return ProjectedLSTMParams(
        w_ih=glorot_blocks(k_ih, 4, input_size, hidden_size, dtype),
        w_hh=orthogonal_blocks(k_hh, 4, proj_size, hidden_size, dtype),
        b_ih=gate_biases(4, hidden_size, dtype, unit_block=1),  # forget gate open
        b_hh=gate_biases(4, hidden_size, dtype),
        w_hr=orthogonal_blocks(k_hr, 1, hidden_size, proj_size, dtype),
    )


def _projection_size(hidden_size: int, proj_size: int | None) -> int:
    """``proj_size``, checked to lie in 1..H−1 as torch requires (1 when H = 1); None means H // 2 (at least 1)."""
    if proj_size is None:
        return max(1, hidden_size // 2)
    proj_size = _checks.positive_int(proj_size, "proj_size", "jaxrnn.projected_lstm")
    if proj_size >= hidden_size and hidden_size > 1:
        raise ValueError(
            f"jaxrnn.projected_lstm: proj_size must be smaller than hidden_size, as in torch.nn.LSTM; got "
            f"proj_size={proj_size} with hidden_size={hidden_size}. Use jaxrnn.lstm for no projection."
        )
    return proj_size


def _projected_lstm_shapes(params: ProjectedLSTMParams, where: str):
    """Shape rules of :class:`ProjectedLSTMParams`; returns ``(input_size, (P, H))``."""
    hidden, proj = params.w_hr.shape if params.w_hr.ndim == 2 else (-1, -1)
    if hidden <= 0 or proj <= 0:
        raise ValueError(f"{where}: params.w_hr must be (hidden, proj_size), both > 0; got {params.w_hr.shape}.")
    expected = {"w_hh": (proj, 4 * hidden), "b_ih": (4 * hidden,), "b_hh": (4 * hidden,)}
    for name, shape in expected.items():
        if getattr(params, name).shape != shape:
            raise ValueError(
                f"{where}: params.{name} must have shape {shape} to match w_hr {params.w_hr.shape} "
                f"(hidden {hidden}, proj_size {proj}); got {getattr(params, name).shape}."
            )
    w_ih = params.w_ih
    if w_ih.ndim != 2 or w_ih.shape[1] != 4 * hidden or w_ih.shape[0] == 0:
        raise ValueError(f"{where}: params.w_ih must be (input_size, {4 * hidden}); got {w_ih.shape}.")
    return w_ih.shape[0], (proj, hidden)


projected_lstm = _registry.register_built_in(Cell(
    name="projected_lstm",
    params_type=ProjectedLSTMParams,
    carry_type=LSTMCarry,
    init_params=_init_projected_lstm,
    check_shapes=_projected_lstm_shapes,
    recurrence=_projected_lstm_recurrence,
    project=linear_projection,
    bptt=BPTT(_projected_lstm_step_vjp, _projected_lstm_param_grads, linear_projection_vjp,
              lambda params: (jnp.transpose(params.w_hh), jnp.transpose(params.w_hr))),
    residual_in_buffer=True,
    carry_sizes=lambda hidden_size, proj_size=None: (_projection_size(hidden_size, proj_size), hidden_size),
    gates=("i", "f", "g", "o"),
    doc="""LSTM with a projected state, torch's ``nn.LSTM(..., proj_size=P)`` (Sak et al., 2014)::

        z = W_ih x + b_ih + W_hh h + b_hh            # W_hh reads the projected h, (P, 4H)
        i, f, g, o = σ, σ, tanh, σ of split(z, 4)
        c' = f ⊙ c + i ⊙ g                           # (batch, H)
        h' = (o ⊙ tanh(c')) W_hr                     # (batch, P), the output

    Params :class:`ProjectedLSTMParams` ``(w_ih (X, 4H), w_hh (P, 4H), b_ih,
    b_hh (4H,), w_hr (H, P))``; carry :class:`LSTMCarry` ``(h (batch, P), c
    (batch, H))``. ``init(key, X, H, proj_size=P)`` and
    ``initial_carry(batch, H, proj_size=P)``; ``proj_size`` defaults to
    ``H // 2``. Stacked layers above the first read D·P features, as in torch.
    :func:`jaxrnn.interop.from_torch` converts a ``torch.nn.LSTM`` with
    ``proj_size > 0`` to it (``w_hr = weight_hr_l{k}.T``).
    """,
))
