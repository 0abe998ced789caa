"""The built-in sequential cells: simple RNN, LSTM, projected LSTM and GRU, on the public protocol.

Each is a :class:`jaxrnn.Cell` (see :mod:`jaxrnn._protocol`) with a
hand-written backward pass. Rows are examples: ``x`` is ``(batch, input_size)``,
``h`` is ``(batch, hidden)``. Weights are stored ``(in, out)`` so every
product is ``rows @ W`` with a contiguous ``(batch, gates * hidden)`` result;
the gate blocks of the output axis are in torch's order (LSTM ``i, f, g, o``,
GRU ``r, z, n``), so converting torch weights is a transpose. The simple
RNN, LSTM and GRU (and :mod:`jaxrnn._slstm`, built from the pieces here) also
take ``num_heads``: block-diagonal recurrent weights (:mod:`jaxrnn._heads`).

The projection is ``x W_ih`` alone; the biases are added inside each step's
elementwise work, which saves a pass over the whole (T·B, G·H) buffer. The
activated gates are the first field of each residual, with the projection's
shape and dtype, so the engine keeps them in the projection's buffer.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _checks, _heads, _registry
from jaxrnn._precision import accumulation_dtype, matmul
from jaxrnn._protocol import BPTT, Cell, cotangents

# --------------------------------------------------------------------------
# Parameters and carries.


class GatedWeights(NamedTuple):
    """The four arrays every built-in cell has; G is the number of gates.

    Attributes:
        w_ih: input-to-gates weights, ``(input_size, G * hidden)``.
        w_hh: hidden-to-gates weights, ``(hidden, G * hidden)``; with K heads
            its diagonal blocks, ``(K, hidden / K, G * hidden / K)`` (:mod:`jaxrnn._heads`).
        b_ih: input-side bias, ``(G * hidden,)``.
        b_hh: hidden-side bias, ``(G * hidden,)``. Kept apart from ``b_ih`` as
            in torch, so weights convert both ways exactly; for the GRU the
            two differ in effect, since ``r`` multiplies ``W_hn h + b_hn``.
    """

    w_ih: Array
    w_hh: Array
    b_ih: Array
    b_hh: Array


class SimpleRNNParams(GatedWeights):
    """Parameters of :data:`simple_rnn` (G = 1)."""

    __slots__ = ()


class LSTMParams(GatedWeights):
    """Parameters of :data:`lstm` (G = 4, gate blocks ``i, f, g, o``)."""

    __slots__ = ()


class GRUParams(GatedWeights):
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
            one contiguous array, which the hand-written backward pass stores
            in the buffer that held the step's input projection and then
            overwrites with the gate cotangents (see :mod:`jaxrnn._bptt`).
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
    """

    gates: Array
    hn: Array


# --------------------------------------------------------------------------
# Shared pieces: the linear projection, the hidden side's cotangents, init.
# Shapes: x (B, X), h and c (B, H), gx (B, G*H); N = T·B rows after the scan.


def linear_projection(params, x: Array) -> Array:
    """``x W_ih`` in the params' dtype, summed in at least float32: the input's share of the pre-activations."""
    return matmul(x, params.w_ih).astype(params.w_ih.dtype)


def linear_projection_vjp(params, x: Array, d_gx: Array):
    """``(dW_ih = xᵀ d_gx, dx = d_gx W_ihᵀ)`` over all N rows; 16-bit operands, float32 sums."""
    return cotangents(params, w_ih=matmul(x.T, d_gx)), matmul(d_gx, params.w_ih.T)


def weights_and_bias(h_prev: Array, dz: Array, w_hh: Array | None = None) -> tuple[Array, Array]:
    """``(h_prevᵀ dz, Σ dz)`` over rows: the weight cotangent and the bias's.

    The weight cotangent is shaped as ``w_hh``: per head if it has heads.
    """
    d_w = matmul(h_prev.T, dz) if w_hh is None else _heads.weight_grad(h_prev, dz, w_hh)
    return d_w, matmul(jnp.ones((1, dz.shape[0]), dz.dtype), dz)[0]


def _transposed_w_hh(params) -> Array:
    # Once before the reverse scan, so each step's dz @ W_hhᵀ reads a contiguous matrix.
    return _heads.transposed(params.w_hh)


def shared_bias_grads(params, h_prev: Array, dz: Array, stash):
    """Both biases and ``W_hh`` see the same pre-activations ``z`` (simple RNN, LSTM, sLSTM)."""
    d_w_hh, d_b = weights_and_bias(h_prev, dz, params.w_hh)
    return type(params)(None, d_w_hh, d_b, d_b)


def gates_last(w: Array) -> Array:
    """(G, rows, H) blocks -> one (rows, G·H) matrix, gate blocks along the output axis."""
    return jnp.moveaxis(w, 0, -2).reshape(w.shape[1], w.shape[0] * w.shape[2])


def glorot_blocks(key, num_gates: int, rows: int, hidden_size: int, dtype) -> Array:
    """(rows, G·H): Glorot-uniform per gate block (fan-in ``rows``, fan-out ``hidden_size``)."""
    glorot = jax.nn.initializers.glorot_uniform(in_axis=-2, out_axis=-1, batch_axis=0)
    return gates_last(glorot(key, (num_gates, rows, hidden_size), dtype))


def orthogonal_blocks(key, num_gates: int, rows: int, hidden_size: int, dtype) -> Array:
    """(rows, G·H): an orthogonal (rows, H) block per gate, drawn in at least float32 (no 16-bit QR), then cast."""
    orthogonal = jax.nn.initializers.orthogonal()
    wide = accumulation_dtype(dtype)
    blocks = jax.vmap(lambda k: orthogonal(k, (rows, hidden_size), wide))(jax.random.split(key, num_gates))
    return gates_last(blocks.astype(dtype))


def gate_biases(num_gates: int, hidden_size: int, dtype, unit_block: int | None = None) -> Array:
    """(G·H,) zeros, with block ``unit_block`` (the LSTM's forget gate) at 1."""
    b = jnp.zeros((num_gates, hidden_size), dtype)
    return (b if unit_block is None else b.at[unit_block].set(1)).reshape(-1)


def recurrent_blocks(key, num_gates: int, hidden_size: int, num_heads: int, dtype) -> Array:
    """``w_hh``: an orthogonal block per gate and head; (H, G·H) for one head, else (K, d, G·d)."""
    if num_heads == 1:
        return orthogonal_blocks(key, num_gates, hidden_size, hidden_size, dtype)
    size = hidden_size // num_heads
    return jax.vmap(lambda k: orthogonal_blocks(k, num_gates, size, size, dtype))(jax.random.split(key, num_heads))


def init_gated(params_type, num_gates: int, unit_block: int | None, name: str, key, input_size, hidden_size, dtype,
               *, num_heads: int = 1):
    """Glorot input blocks, orthogonal recurrent blocks per head, zero biases (see :data:`lstm`)."""
    num_heads = _heads.checked_num_heads(num_heads, hidden_size, f"jaxrnn.{name}.init")
    k_ih, k_hh = jax.random.split(key)
    return params_type(
        w_ih=glorot_blocks(k_ih, num_gates, input_size, hidden_size, dtype),
        w_hh=recurrent_blocks(k_hh, num_gates, hidden_size, num_heads, dtype),
        b_ih=gate_biases(num_gates, hidden_size, dtype, unit_block),
        b_hh=gate_biases(num_gates, hidden_size, dtype),
    )


# --------------------------------------------------------------------------
# The maths of one step, forward and reverse.


# Every recurrence returns its output and residual in the params' dtype (the
# compute dtype); the engine keeps the carry in its own dtype (the state
# dtype); see jaxrnn._precision. For float32 and float64 those casts are no-ops.


def _simple_rnn_recurrence(params: SimpleRNNParams, h_prev: Array, gx: Array):
    """``h' = tanh(x W_ih + b_ih + h W_hh + b_hh)``. Saves nothing: ``h'`` is the output."""
    h = jnp.tanh(gx + (params.b_ih + params.b_hh) + _heads.recurrent(h_prev, params.w_hh))
    return h, h.astype(params.w_hh.dtype), ()


def _simple_rnn_step_vjp(params, w_hh_t, dh, dh_out, h, h_prev, res):
    dz = (dh + dh_out) * (1 - h.astype(dh.dtype) ** 2)
    return _heads.recurrent_vjp(dz, w_hh_t), dz, None


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


def _lstm_core(params, carry: LSTMCarry, gx: Array):
    """``i, f, o = σ(·)``, ``g = tanh(·)`` of ``gx + b + h W_hh``.

    Then :func:`lstm_state`: ``(o ⊙ tanh c', c', residual)``.
    """
    h_prev, c_prev = carry
    z = gx + (params.b_ih + params.b_hh) + _heads.recurrent(h_prev, params.w_hh)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    m, c, tanh_c = lstm_state(i, f, g, o, c_prev)
    # c_prev and tanh c' are kept in the state dtype.
    return m, c, LSTMResidual(jnp.concatenate([i, f, g, o], axis=-1).astype(params.w_hh.dtype), c_prev, tanh_c)


def _lstm_core_vjp(dm: Array, dc: Array, res: LSTMResidual):
    """The reverse of :func:`_lstm_core`: ``(dz (B, 4H), dc_prev)`` from the cotangents of ``o ⊙ tanh c'``, ``c'``."""
    i, f, g, o = jnp.split(res.gates.astype(dc.dtype), 4, axis=-1)
    d_gates, dc_prev = lstm_state_vjp(dm, dc, i, f, g, o, res.c_prev, res.tanh_c)
    return jnp.concatenate(d_gates, axis=-1), dc_prev  # (B, 4H): one matmul, not four


def _lstm_recurrence(params: LSTMParams, carry: LSTMCarry, gx: Array):
    """:func:`_lstm_core`, whose ``o ⊙ tanh c'`` is the output ``h'``."""
    h, c, residual = _lstm_core(params, carry, gx)
    return LSTMCarry(h, c), h.astype(params.w_hh.dtype), residual


def _lstm_step_vjp(params, w_hh_t, d_carry, dh_out, h, h_prev, res):
    dz, dc_prev = _lstm_core_vjp(d_carry.h + dh_out, d_carry.c, res)
    return LSTMCarry(_heads.recurrent_vjp(dz, w_hh_t), dc_prev), dz, None


def _projected_lstm_recurrence(params: ProjectedLSTMParams, carry: LSTMCarry, gx: Array):
    """The LSTM step on the projected state: ``h' = (o ⊙ tanh c') W_hr``, (B, P)."""
    m, c, residual = _lstm_core(params, carry, gx)
    h = matmul(m, params.w_hr)
    return LSTMCarry(h, c), h.astype(params.w_hh.dtype), residual


def _projected_lstm_step_vjp(params, transposed, d_carry, dh_out, h, h_prev, res):
    w_hh_t, w_hr_t = transposed
    dh = d_carry.h + dh_out  # (B, P)
    dz, dc_prev = _lstm_core_vjp(matmul(dh, w_hr_t), d_carry.c, res)
    i, f, g, o = jnp.split(res.gates.astype(dz.dtype), 4, axis=-1)
    m = o * jnp.tanh(f * res.c_prev + i * g)  # the unprojected output, for dW_hr after the scan
    dtype = params.w_hr.dtype  # 16-bit operands for dW_hr with 16-bit params
    return LSTMCarry(matmul(dz, w_hh_t), dc_prev), dz, (m.astype(dtype), dh.astype(dtype))


def _projected_lstm_param_grads(params, h_prev: Array, dz: Array, stash):
    m, dh = stash
    d_w_hh, d_b = weights_and_bias(h_prev, dz)
    # None: w_ih's cotangent comes from the projection's VJP, added by the engine.
    return ProjectedLSTMParams(None, d_w_hh, d_b, d_b, matmul(m.T, dh))  # type: ignore[arg-type]


def _gru_recurrence(params: GRUParams, h_prev: Array, gx: Array):
    """Reset-after GRU (cuDNN, torch, Flax, Keras):

    ``r = σ(x_r + h_r)``, ``z = σ(x_z + h_z)``, ``n = tanh(x_n + r ⊙ (W_hn h + b_hn))``,
    ``h' = (1 − z) ⊙ n + z ⊙ h``.
    """
    x_r, x_z, x_n = jnp.split(gx + params.b_ih, 3, axis=-1)
    h_r, h_z, hn = jnp.split(_heads.recurrent(h_prev, params.w_hh) + params.b_hh, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * hn)
    h = (1 - z) * n + z * h_prev
    dtype = params.w_hh.dtype
    residual = GRUResidual(jnp.concatenate([r, z, n], axis=-1).astype(dtype), hn.astype(dtype))
    return h, h.astype(dtype), residual


def _gru_step_vjp(params, w_hh_t, dh, dh_out, h, h_prev, res):
    r, z, n = jnp.split(res.gates.astype(dh.dtype), 3, axis=-1)
    dh = dh + dh_out
    dn = dh * (1 - z) * (1 - n**2)  # at n's pre-activation
    d_r = dn * res.hn * r * (1 - r)
    d_z = dh * (h_prev - n) * z * (1 - z)
    dn_r = dn * r  # at W_hn h + b_hn, which r scales
    dgh = jnp.concatenate([d_r, d_z, dn_r], axis=-1)  # (B, 3H) at h W_hh + b_hh
    # dn_r is stored in the params' dtype: with 16-bit params, dW_hh's matmul takes 16-bit operands.
    d_gx = jnp.concatenate([d_r, d_z, dn], axis=-1)
    return dh * z + _heads.recurrent_vjp(dgh, w_hh_t), d_gx, dn_r.astype(params.w_hh.dtype)


def _gru_param_grads(params, h_prev: Array, dgx: Array, dn_r: Array):
    # The hidden side sees r and z like the input side, but n scaled by r.
    hidden, size = dn_r.shape[-1], params.w_hh.shape[-1] // 3  # size: H, or d for (K, d, 3d) heads
    d_w, d_b = weights_and_bias(h_prev, dgx, params.w_hh)
    d_w_n, d_b_n = weights_and_bias(h_prev, dn_r, params.w_hh)  # each block's r and z from d_w, n from d_w_n
    return GRUParams(
        w_ih=None,  # type: ignore[arg-type]  # from the projection's VJP, added by the engine
        w_hh=jnp.concatenate([d_w[..., : 2 * size], d_w_n], axis=-1),
        b_ih=d_b,
        b_hh=jnp.concatenate([d_b[: 2 * hidden], d_b_n]),
    )


def _carry_sizes(name: str, hidden_size: int, num_heads: int = 1) -> int:
    """Every carry field is (batch, H), heads or not.

    ``num_heads`` is taken (and checked) so that init's options serve here too.
    """
    _heads.checked_num_heads(num_heads, hidden_size, f"jaxrnn.{name}.initial_carry")
    return hidden_size


def gated_cell(name: str, gates: tuple[str, ...], params_type, carry_type, recurrence, step_vjp, param_grads,
               doc: str, unit_bias_gate: str | None = None, init_params=None) -> Cell:
    """A built-in cell: ``(w_ih, w_hh, b_ih, b_hh)`` params, a linear projection, a hand-written BPTT.

    ``init_params`` defaults to :func:`init_gated` with ``unit_bias_gate``'s input bias at 1.
    """
    bias_block = None if unit_bias_gate is None else gates.index(unit_bias_gate)
    cell = Cell(
        name=name,
        params_type=params_type,
        carry_type=carry_type,
        init_params=init_params or partial(init_gated, params_type, len(gates), bias_block, name),
        carry_sizes=partial(_carry_sizes, name),
        check_shapes=lambda params, where: _checks.gated_shapes(cell, params, where),
        recurrence=recurrence,
        project=linear_projection,
        bptt=BPTT(step_vjp, param_grads, linear_projection_vjp, _transposed_w_hh),
        gates=gates,
        doc=doc,
    )
    return _registry.register_built_in(cell)


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

simple_rnn = gated_cell(
    "simple_rnn", ("h",), SimpleRNNParams, None, _simple_rnn_recurrence, _simple_rnn_step_vjp, shared_bias_grads,
    doc=f"""Elman RNN: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``.

    Params :class:`SimpleRNNParams` ``(w_ih (X, H), w_hh (H, H), b_ih (H,), b_hh (H,))``;
    carry ``h`` of shape (batch, hidden). Manual BPTT saves nothing beyond the
    outputs it returns.

    {_INIT_DOC}""",
)

lstm = gated_cell(
    "lstm", ("i", "f", "g", "o"), LSTMParams, LSTMCarry, _lstm_recurrence, _lstm_step_vjp, shared_bias_grads,
    unit_bias_gate="f",
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
)

gru = gated_cell(
    "gru", ("r", "z", "n"), GRUParams, None, _gru_recurrence, _gru_step_vjp, _gru_param_grads,
    doc=f"""GRU, reset-after form (cuDNN, torch.nn.GRU, Flax, Keras)::

        r = σ(W_ir x + b_ir + W_hr h + b_hr)
        z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        h' = (1 − z) ⊙ n + z ⊙ h

    Params :class:`GRUParams` ``(w_ih (X, 3H), w_hh (H, 3H), b_ih (3H,), b_hh (3H,))``,
    torch's gate order r, z, n; carry ``h`` of shape (batch, hidden). Manual
    BPTT saves 4·batch·hidden values a step (``r``, ``z``, ``n`` and
    ``W_hn h + b_hn``).

    {_INIT_DOC}""",
)


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
