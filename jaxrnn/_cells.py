"""Recurrent cells: their parameters, carries and one time step.

A cell is a *value* (:class:`Cell`) bundling pure functions, in the manner of
``optax.GradientTransformation``:

* ``cell.init(key, input_size, hidden_size)`` makes the parameters;
* ``cell.initial_carry(batch_size, hidden_size)`` makes the all-zero state;
* ``cell.step(params, carry, x) -> (carry, h)`` runs one time step, in
  ``jax.lax.scan``'s own argument order, so ``partial(cell.step, params)`` is a
  scan body.

Rows are examples: ``x`` is ``(batch, input_size)``, ``h`` is
``(batch, hidden)``. Weights are stored ``(in, out)`` so every product is
``rows @ W`` with a contiguous ``(batch, gates * hidden)`` result; the gate
blocks of the output axis are in torch's order (LSTM ``i, f, g, o``, GRU
``r, z, n``), so converting torch weights is a transpose.

Each step is split in two so the hand-written backward pass can hoist the
input projection out of the time loop:

* ``project(params, x)``: the input's contribution to the gate pre-activations
  (one matmul, which a sequence does for all steps at once);
* ``recurrence(params, carry, gx)``: the rest of the step, returning the new
  carry, the output and the named residual the backward pass needs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _bptt, _checks
from jaxrnn._precision import matmul


# --------------------------------------------------------------------------
# Parameters and carries.


class _Weights(NamedTuple):
    """The four arrays every built-in cell has; G is the number of gates.

    Attributes:
        w_ih: input-to-gates weights, ``(input_size, G * hidden)``.
        w_hh: hidden-to-gates weights, ``(hidden, G * hidden)``.
        b_ih: input-side bias, ``(G * hidden,)``.
        b_hh: hidden-side bias, ``(G * hidden,)``. Kept apart from ``b_ih`` as
            in torch, so weights convert both ways exactly; for the GRU the
            two differ in effect, since ``r`` multiplies ``W_hn h + b_hn``.
    """

    w_ih: Array
    w_hh: Array
    b_ih: Array
    b_hh: Array


class SimpleRNNParams(_Weights):
    """Parameters of :data:`simple_rnn` (G = 1)."""

    __slots__ = ()


class LSTMParams(_Weights):
    """Parameters of :data:`lstm` (G = 4, gate blocks ``i, f, g, o``)."""

    __slots__ = ()


class GRUParams(_Weights):
    """Parameters of :data:`gru` (G = 3, gate blocks ``r, z, n``)."""

    __slots__ = ()


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
        c_prev: the cell state entering the step, ``(batch, hidden)``. The new
            one is not saved: ``c = f * c_prev + i * g`` is recomputed, three
            elementwise ops against a ``(batch, hidden)`` array a step.
    """

    gates: Array
    c_prev: Array


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
# The maths of one step. Shapes: x (B, X), h and c (B, H), gx (B, G*H).


# Every recurrence returns its new carry in the carry's dtype (the state dtype)
# and its output and residual in the params' dtype (the compute dtype); see
# jaxrnn._precision. For float32 and float64 those casts are no-ops.


def _both_biases(params: _Weights) -> Array:
    """``b_ih + b_hh``: both biases fold into the input side."""
    return params.b_ih + params.b_hh


def _input_side_bias(params: GRUParams) -> Array:
    """``b_ih``; the GRU keeps ``b_hh`` inside, as the reset gate scales part of it."""
    return params.b_ih


def input_projection(params, x: Array, bias: Array) -> Array:
    """``x W_ih + bias`` in the params' dtype: the input's share of the pre-activations.

    The sum is taken in the matmul's (at least float32) accumulation dtype
    before the cast, so the hand-written forward pass, which adds the bias to
    a stored ``x W_ih`` one step at a time, rounds exactly as this does.
    """
    return (matmul(x, params.w_ih) + bias).astype(params.w_ih.dtype)


def _simple_rnn_recurrence(params: SimpleRNNParams, h_prev: Array, gx: Array):
    """``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``. Saves nothing: ``h'`` is the output."""
    h = jnp.tanh(gx + matmul(h_prev, params.w_hh))
    return h.astype(h_prev.dtype), h.astype(params.w_hh.dtype), ()


def lstm_state(i: Array, f: Array, g: Array, o: Array, c_prev: Array):
    """The LSTM memory update from activated gates: ``(h, c)``.

    ``c = f * c_prev + i * g`` and ``h = o * tanh(c)``. Elementwise, so it
    serves any layout (the notebook's ``(n_a, m)`` columns too).
    """
    c = f * c_prev + i * g
    return o * jnp.tanh(c), c


def _lstm_recurrence(params: LSTMParams, carry: LSTMCarry, gx: Array):
    """``i, f, o = σ(·)``, ``g = tanh(·)`` of ``gx + h W_hh``, then :func:`lstm_state`."""
    h_prev, c_prev = carry
    i, f, g, o = jnp.split(gx + matmul(h_prev, params.w_hh), 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    h, c = lstm_state(i, f, g, o, c_prev)
    dtype = params.w_hh.dtype
    # c_prev is saved in the state dtype: the backward pass recomputes tanh(c) from it.
    residual = LSTMResidual(jnp.concatenate([i, f, g, o], axis=-1).astype(dtype), c_prev)
    return LSTMCarry(h.astype(h_prev.dtype), c.astype(c_prev.dtype)), h.astype(dtype), residual


def _gru_recurrence(params: GRUParams, h_prev: Array, gx: Array):
    """Reset-after GRU (cuDNN, torch, Flax, Keras):

    ``r = σ(x_r + h_r)``, ``z = σ(x_z + h_z)``, ``n = tanh(x_n + r ⊙ (W_hn h + b_hn))``,
    ``h' = (1 − z) ⊙ n + z ⊙ h``.
    """
    x_r, x_z, x_n = jnp.split(gx, 3, axis=-1)
    h_r, h_z, hn = jnp.split(matmul(h_prev, params.w_hh) + params.b_hh, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * hn)
    h = (1 - z) * n + z * h_prev
    dtype = params.w_hh.dtype
    residual = GRUResidual(jnp.concatenate([r, z, n], axis=-1).astype(dtype), hn.astype(dtype))
    return h.astype(h_prev.dtype), h.astype(dtype), residual


def _init_gated(cell: "Cell", key: Array, input_size: int, hidden_size: int, dtype) -> _Weights:
    """Glorot input blocks, orthogonal recurrent blocks, zero biases (see :meth:`Cell.init`)."""
    num_gates = len(cell.gates)
    k_ih, k_hh = jax.random.split(key)
    glorot = jax.nn.initializers.glorot_uniform(in_axis=-2, out_axis=-1, batch_axis=0)
    w_ih = glorot(k_ih, (num_gates, input_size, hidden_size), dtype)
    orthogonal = jax.nn.initializers.orthogonal()
    w_hh = jax.vmap(lambda k: orthogonal(k, (hidden_size, hidden_size), dtype))(jax.random.split(k_hh, num_gates))
    b_ih = jnp.zeros((num_gates, hidden_size), dtype)
    if cell.unit_bias_gate is not None:
        b_ih = b_ih.at[cell.gates.index(cell.unit_bias_gate)].set(1)

    def gates_last(w: Array) -> Array:  # (G, rows, H) -> (rows, G*H)
        return jnp.moveaxis(w, 0, -2).reshape(*w.shape[1:-1], num_gates * hidden_size)

    return cell.params_type(
        w_ih=gates_last(w_ih),
        w_hh=gates_last(w_hh),
        b_ih=b_ih.reshape(-1),
        b_hh=jnp.zeros((num_gates * hidden_size,), dtype),
    )


# --------------------------------------------------------------------------
# The cell value.


@dataclasses.dataclass(frozen=True, eq=False)
class Cell:
    """A recurrent cell: a value bundling pure functions.

    Hashable by identity, so it can be a static argument of ``jax.jit``.

    Attributes:
        name: the public name, e.g. ``"lstm"``.
        gates: names of the gate blocks along the weights' output axis.
        params_type: the NamedTuple its params are.
        carry_type: the NamedTuple its carry is, or None for a bare ``h``.
        input_bias: ``params -> (G*H,)``, the biases that fold into the input
            side; :meth:`project` adds them to ``x W_ih``.
        recurrence: ``(params, carry, gx) -> (carry, h, residual)``.
        init_params: ``(cell, key, input_size, hidden_size, dtype) -> params``,
            called by :meth:`init` after its checks.
        check_shapes: ``(cell, params, where) -> (input_size, hidden_size)``:
            reads the sizes off the params' shapes and raises ``ValueError``
            if they are inconsistent.
        bptt: the hand-written backward pass of ``recurrence``, or None
            (autodiff only).
        sequence: a whole-sequence implementation that replaces the scan of
            ``recurrence`` (e.g. a parallel scan), or None:
            ``sequence(params, carry, xs, *, valid, resets, reverse, grad) ->
            (carry, hs)``, called by :func:`jaxrnn.unroll` (see its ``scan``
            argument) with checked, promoted, time-major inputs whose padding
            is already zeroed; ``valid`` and ``resets`` are (T, B) bool or None.
        unit_bias_gate: name of the gate whose ``b_ih`` block starts at 1.
        doc: the cell's equations, shown by ``help(cell)``.
    """

    name: str
    gates: tuple[str, ...]
    params_type: type
    carry_type: type | None
    input_bias: Callable[[Any], Array]
    recurrence: Callable[[Any, Any, Array], tuple[Any, Array, Any]]
    init_params: Callable[..., Any] = _init_gated
    check_shapes: Callable[..., tuple[int, int]] = _checks.gated_shapes
    bptt: _bptt.CellBPTT | None = None
    sequence: Callable[..., Any] | None = None
    unit_bias_gate: str | None = None
    doc: str = ""

    def __post_init__(self):
        object.__setattr__(self, "__doc__", self.doc)

    def __repr__(self) -> str:
        return f"jaxrnn.{self.name}"

    def init(self, key: Array, input_size: int, hidden_size: int, *, dtype=jnp.float32):
        """Makes parameters with the cell's ``init_params``.

        The built-in gated cells follow Keras' recurrent defaults:

        * ``w_ih``: Glorot-uniform per gate block (fan-in ``input_size``,
          fan-out ``hidden_size``), which keeps the pre-activation variance
          near that of the input.
        * ``w_hh``: an orthogonal ``(hidden, hidden)`` block per gate. All
          singular values are 1, so early on the recurrent Jacobian neither
          shrinks nor grows gradients over time (Saxe et al., 2014).
        * biases: zero, except the LSTM forget gate's ``b_ih`` block, which
          is 1 so the memory is kept until the net learns to drop it
          (Jozefowicz et al., 2015).

        Args:
            key: a PRNG key.
            input_size: features per time step, X > 0.
            hidden_size: state size, H > 0.
            dtype: a floating dtype for every array.

        Returns:
            ``params_type``; for the gated cells ``(w_ih (X, G*H), w_hh (H, G*H),
            b_ih (G*H,), b_hh (G*H,))``.
        """
        where = f"{self!r}.init"
        input_size = _checks.positive_int(input_size, "input_size", where)
        hidden_size = _checks.positive_int(hidden_size, "hidden_size", where)
        dtype = _checks.floating_dtype(dtype, where)
        return self.init_params(self, key, input_size, hidden_size, dtype)

    def initial_carry(self, batch_size: int, hidden_size: int, *, dtype=jnp.float32):
        """The all-zero state: ``(batch, hidden)`` arrays, as ``carry_type`` if it has one."""
        where = f"{self!r}.initial_carry"
        batch_size = _checks.positive_int(batch_size, "batch_size", where, allow_zero=True)
        hidden_size = _checks.positive_int(hidden_size, "hidden_size", where)
        dtype = _checks.floating_dtype(dtype, where)
        zeros = jnp.zeros((batch_size, hidden_size), dtype)
        if self.carry_type is None:
            return zeros
        return self.carry_type(*(zeros for _ in self.carry_type._fields))

    def hidden(self, carry) -> Array:
        """The output part ``h`` of a carry."""
        return carry if self.carry_type is None else carry[0]

    def step(self, params, carry, x: Array):
        """One time step, checked: ``(carry, x (batch, input)) -> (carry, h (batch, hidden))``.

        Params and ``x`` compute in their common dtype; the carry keeps at
        least float32 (see :func:`jaxrnn.unroll`). Raises
        ``ValueError``/``TypeError`` at trace time on bad shapes or dtypes.
        """
        params, carry, x = _checks.step_arguments(self, params, carry, x, f"{self!r}.step")
        return self.step_unchecked(params, carry, x)

    def project(self, params, x: Array) -> Array:
        """``x W_ih + input_bias(params)``: the input's share of the pre-activations, (…, G*H)."""
        return input_projection(params, x, self.input_bias(params))

    def step_unchecked(self, params, carry, x: Array):
        """:meth:`step` without the checks, for inputs already validated."""
        carry, h, _ = self.recurrence(params, carry, self.project(params, x))
        return carry, h


simple_rnn = Cell(
    name="simple_rnn",
    gates=("h",),
    params_type=SimpleRNNParams,
    carry_type=None,
    input_bias=_both_biases,
    recurrence=_simple_rnn_recurrence,
    bptt=_bptt.SIMPLE_RNN,
    doc="""Elman RNN: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``.

    Params :class:`SimpleRNNParams` (G = 1); carry ``h`` of shape (batch, hidden).
    Manual BPTT saves nothing beyond the outputs it returns.
    """,
)

lstm = Cell(
    name="lstm",
    gates=("i", "f", "g", "o"),
    params_type=LSTMParams,
    carry_type=LSTMCarry,
    input_bias=_both_biases,
    recurrence=_lstm_recurrence,
    bptt=_bptt.LSTM,
    unit_bias_gate="f",
    doc="""LSTM, with the seeds' equations (z = W_ih x + b_ih + W_hh h + b_hh)::

        i, f, g, o = split(z, 4)
        i, f, o = σ(i), σ(f), σ(o);  g = tanh(g)     # input, forget, output gates; candidate
        c' = f ⊙ c + i ⊙ g
        h' = o ⊙ tanh(c')

    Params :class:`LSTMParams` (G = 4, torch's gate order); carry
    :class:`LSTMCarry` ``(h, c)``, each (batch, hidden). Manual BPTT saves
    5·batch·hidden values a step (four gates and ``c_prev``).
    """,
)

gru = Cell(
    name="gru",
    gates=("r", "z", "n"),
    params_type=GRUParams,
    carry_type=None,
    input_bias=_input_side_bias,
    recurrence=_gru_recurrence,
    bptt=_bptt.GRU,
    doc="""GRU, reset-after form (cuDNN, torch.nn.GRU, Flax, Keras)::

        r = σ(W_ir x + b_ir + W_hr h + b_hr)
        z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        h' = (1 − z) ⊙ n + z ⊙ h

    Params :class:`GRUParams` (G = 3, torch's gate order r, z, n); carry ``h``
    of shape (batch, hidden). Manual BPTT saves 4·batch·hidden values a step
    (``r``, ``z``, ``n`` and ``W_hn h + b_hn``).
    """,
)

CELLS = (simple_rnn, lstm, gru)
