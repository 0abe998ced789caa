"""Parallel-scan cells: minGRU and minLSTM (Feng et al., 2024, "Were RNNs All We Needed?").

Both cells drop the hidden-to-gates weights, so every gate depends on the
input only and a step is a *linear* recurrence in the state::

    h_t = a_t ⊙ h_{t−1} + b_t          (a_t, b_t functions of x_t alone)

minGRU (gate blocks ``z, h``)::

    z = σ(x W_z + b_z),  h̃ = g(x W_h + b_h)
    a = 1 − z,           b = z ⊙ h̃

minLSTM (gate blocks ``f, i, h``)::

    f = σ(x W_f + b_f),  i = σ(x W_i + b_i),  h̃ = g(x W_h + b_h)
    a = f / (f + i),     b = i / (f + i) ⊙ h̃

with ``g(v) = v + 0.5`` for ``v ≥ 0`` and ``σ(v)`` for ``v < 0`` (continuous,
positive, increasing). Both are convex combinations, ``a + b/h̃ = 1``, so
``|h_t| ≤ max(|h_0|, max_s |h̃_s|)``: the state never blows up.

A whole sequence therefore needs no loop over time: composing the affine maps
``h ↦ a h + b`` is associative, so :func:`jax.lax.associative_scan` computes
every ``h_t`` in O(log T) depth (:func:`sequence`). A plain ``lax.scan`` of
``cell.step`` (``project`` then ``recurrence``) gives the same values
sequentially and is the reference.

Numerical stability. The scan runs over pairs ``(log A, B)`` with the combine

    (log A₁, B₁) ∘ (log A₂, B₂) = (log A₁ + log A₂, exp(log A₂)·B₁ + B₂),

i.e. the cumulative decay is carried as a sum of logs and the state itself as a
signed value (so any real carry works, unlike the paper's log-space form, which
needs positive values). This is stable because:

* ``log a ≤ 0`` always (``a ∈ [0, 1]``), so ``exp(log A)`` lies in ``[0, 1]``:
  no overflow, and no division by a cumulative product (the paper's
  ``h_t = A_t (h_0 + Σ b_s / A_s)`` form overflows without its logcumsumexp);
  a decay that underflows to 0 is the correct limit, added to bounded terms.
* ``log a`` is formed from the pre-activations directly, never as ``log`` of a
  rounded gate: ``log(1 − z) = −softplus(v_z)``, ``log σ(v) = −softplus(−v)``,
  and minLSTM's normalised gates are ``f' = σ(d)``, ``i' = σ(−d)`` with
  ``d = log σ(v_f) − log σ(v_i)``, so ``f/(f + i)`` is never ``0/0`` when both
  gates underflow, and ``1 − z`` keeps its relative precision when ``z → 1``.
* A reset (``a = 0``) is ``log a = −inf``, which the combine handles exactly:
  ``exp(−inf) = 0`` and ``−inf + x = −inf``; no ``inf − inf`` ever arises.

The hand-written backward pass (``grad="manual"``) is a second linear scan,
run the other way (as in RecurrentGemma's RG-LRU): the cotangent of the state
``h_{t−1}`` is its output's cotangent plus ``a_t ⊙`` the cotangent of ``h_t``,
the same combine with the decays shifted by one step. Then ``da``, ``db`` become
pre-activation cotangents elementwise, and ``dW = xsᵀ dgx`` over all T·B rows,
the bias cotangent a column sum and ``dxs = dgx Wᵀ``, one matmul each.

Precision (as for the other cells, see :mod:`jaxrnn._precision`): params and
``xs`` are in the compute dtype D, the carry in the state dtype S (at least
float32 and at least D). The projection takes D operands and sums in at least
float32; the gates, ``a``, ``b``, the scans and their cotangents run in S; the
outputs ``hs`` and the saved pre-activations are in D, the carry and the saved
states in S. For float32 and float64 every cast is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _registry
from jaxrnn._gated import column_sum, gate_biases, glorot_blocks
from jaxrnn._options import GRAD_MODES
from jaxrnn._precision import matmul
from jaxrnn._protocol import BPTT, Cell

# --------------------------------------------------------------------------
# Parameters and residuals.


class _InputWeights(NamedTuple):
    """The two arrays of a parallel cell; G is the number of gate blocks.

    Attributes:
        w_ih: input-to-gates weights, ``(input_size, G * hidden)``.
        b_ih: gate biases, ``(G * hidden,)``.

    There are no hidden-to-gates weights: that is what makes the cell a
    linear recurrence, and so a parallel scan.
    """

    w_ih: Array
    b_ih: Array


class MinGRUParams(_InputWeights):
    """Parameters of :data:`mingru` (G = 2, gate blocks ``z, h``)."""

    __slots__ = ()


class MinLSTMParams(_InputWeights):
    """Parameters of :data:`minlstm` (G = 3, gate blocks ``f, i, h``)."""

    __slots__ = ()


class StepResidual(NamedTuple):
    """What one sequential step keeps for a backward pass: its pre-activations.

    Attributes:
        gx: ``x W_ih + b_ih``, ``(batch, G·hidden)``. The gates, ``a`` and
            ``b`` are recomputed from it elementwise.
    """

    gx: Array


class ScanResiduals(NamedTuple):
    """What :func:`sequence` with ``grad="manual"`` saves for its backward pass.

    Attributes:
        params: the params, for ``dxs = dgx W_ihᵀ``.
        xs: the inputs as given, (T, B, X), for ``dW_ih`` (masked again in
            the backward pass); the caller holds them anyway.
        valid, resets: the (T, B) bool masks, or None.
        carry0: the initial state (B, H).
        gx: the pre-activations (T, B, G·H), in the compute dtype; the gates
            are recomputed from them elementwise rather than saved.
        states: the state after every step (T, B, H), unmasked, in the state
            dtype. Without ``valid``, and with the state dtype equal to the
            compute dtype (float32, float64), this is the output ``hs``
            itself, so it costs nothing.

    Bytes per time step beyond ``xs`` and the outputs: ``G·B·H`` values of
    ``gx``, plus ``B·H`` for the states when they are not ``hs`` itself,
    plus one byte per row for each mask given. In float32: minGRU 8·B·H
    bytes (12·B·H with ``valid``), minLSTM 12·B·H (16·B·H with ``valid``).
    With 16-bit compute: ``2·G·B·H`` for ``gx`` plus ``4·B·H`` for the
    float32 states (minGRU 8·B·H, minLSTM 10·B·H).
    """

    params: Any
    xs: Array
    valid: Array | None
    resets: Array | None
    carry0: Array
    gx: Array
    states: Array


# --------------------------------------------------------------------------
# The gates: pre-activations -> (log a, a, b), and back. Shapes (..., G·H) -> (..., H).


def _candidate(v: Array) -> Array:
    """``g(v) = v + 0.5`` for ``v ≥ 0``, ``σ(v)`` for ``v < 0``: continuous and positive."""
    return jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(v))


def _candidate_slope(v: Array) -> Array:
    """``g'(v)``: 1 for ``v ≥ 0``, ``σ(v)(1 − σ(v))`` below."""
    s = jax.nn.sigmoid(v)
    return jnp.where(v >= 0, 1.0, s * (1 - s)).astype(v.dtype)


def _mingru_coefficients(gx: Array):
    """``a = 1 − z = σ(−v_z)``, ``log a = −softplus(v_z)``, ``b = z ⊙ g(v_h)``."""
    v_z, v_h = jnp.split(gx, 2, axis=-1)
    return -jax.nn.softplus(v_z), jax.nn.sigmoid(-v_z), jax.nn.sigmoid(v_z) * _candidate(v_h)


def _mingru_coefficients_vjp(gx: Array, da: Array, db: Array) -> Array:
    """Cotangent of ``gx`` from those of ``a`` and ``b``.

    ``∂a/∂v_z = −a z``, ``∂b/∂v_z = a z h̃``, ``∂b/∂v_h = z g'(v_h)``.
    """
    v_z, v_h = jnp.split(gx, 2, axis=-1)
    z, a = jax.nn.sigmoid(v_z), jax.nn.sigmoid(-v_z)
    d_z = a * z * (db * _candidate(v_h) - da)
    d_h = db * z * _candidate_slope(v_h)
    return jnp.concatenate([d_z, d_h], axis=-1)


def _minlstm_coefficients(gx: Array):
    """``a = f' = σ(d)``, ``b = i' ⊙ g(v_h)`` with ``i' = σ(−d)``, ``d = log σ(v_f) − log σ(v_i)``.

    ``f/(f + i) = 1/(1 + i/f) = σ(log f − log i)``, exact and free of ``0/0``.
    """
    v_f, v_i, v_h = jnp.split(gx, 3, axis=-1)
    d = jax.nn.softplus(-v_i) - jax.nn.softplus(-v_f)
    return -jax.nn.softplus(-d), jax.nn.sigmoid(d), jax.nn.sigmoid(-d) * _candidate(v_h)


def _minlstm_coefficients_vjp(gx: Array, da: Array, db: Array) -> Array:
    """Cotangent of ``gx`` from those of ``a`` and ``b``.

    ``∂a/∂d = f'i'``, ``∂b/∂d = −f'i' h̃``, ``∂d/∂v_f = σ(−v_f)``,
    ``∂d/∂v_i = −σ(−v_i)``, ``∂b/∂v_h = i' g'(v_h)``.
    """
    v_f, v_i, v_h = jnp.split(gx, 3, axis=-1)
    d = jax.nn.softplus(-v_i) - jax.nn.softplus(-v_f)
    f_n, i_n = jax.nn.sigmoid(d), jax.nn.sigmoid(-d)
    dd = f_n * i_n * (da - db * _candidate(v_h))
    d_f = dd * jax.nn.sigmoid(-v_f)
    d_i = -dd * jax.nn.sigmoid(-v_i)
    d_h = db * i_n * _candidate_slope(v_h)
    return jnp.concatenate([d_f, d_i, d_h], axis=-1)


class _Gates(NamedTuple):
    coefficients: Callable[[Array], tuple[Array, Array, Array]]  # gx -> (log a, a, b)
    coefficients_vjp: Callable[[Array, Array, Array], Array]  # (gx, da, db) -> dgx


_MINGRU = _Gates(_mingru_coefficients, _mingru_coefficients_vjp)
_MINLSTM = _Gates(_minlstm_coefficients, _minlstm_coefficients_vjp)


# --------------------------------------------------------------------------
# One step (the sequential reference) and its backward.


def _project(params: _InputWeights, x: Array) -> Array:
    """``x W_ih + b_ih`` in the params' dtype, summed in at least float32: every pre-activation, as none reads ``h``."""
    return (matmul(x, params.w_ih) + params.b_ih).astype(params.w_ih.dtype)


def _project_vjp(params: _InputWeights, x: Array, d_gx: Array):
    """``dW_ih = xᵀ d_gx``, ``db_ih = Σ d_gx`` and ``dx = d_gx W_ihᵀ`` over all rows."""
    # Not weights_and_bias: its ones column would copy the inputs, which nothing else builds.
    return type(params)(matmul(x.T, d_gx), column_sum(d_gx)), matmul(d_gx, params.w_ih.T)


def _no_recurrent_weights(params, h_prev, d_gx, stash):
    return None  # every parameter cotangent comes through the projection


def _make_recurrence(gates: _Gates):
    def recurrence(params, h_prev: Array, gx: Array):
        """``h = a ⊙ h_prev + b``, with ``a``, ``b`` from ``gx`` alone.

        The gates and the new carry are in the carry's dtype (the state
        dtype), the output in ``gx``'s (the compute dtype).
        """
        _, a, b = gates.coefficients(gx.astype(h_prev.dtype))
        h = a * h_prev + b
        return h, h.astype(gx.dtype), StepResidual(gx)

    return recurrence


def _make_step_vjp(gates: _Gates):
    def step_vjp(params, prepared, dh, h, h_prev, residual):
        """One reverse step: ``dh_prev = a ⊙ dh``, ``da = dh ⊙ h_prev``, ``db = dh``."""
        gx = residual.gx.astype(h_prev.dtype)
        _, a, _ = gates.coefficients(gx)
        return a * dh, gates.coefficients_vjp(gx, dh * h_prev, dh), None

    return step_vjp


# The sequential path's hand-written backward, on the cell protocol: the
# gate cotangents are those of ``project``'s output, and there is no hidden side.
MINGRU_STEP_BPTT = BPTT(_make_step_vjp(_MINGRU), _no_recurrent_weights, _project_vjp)
MINLSTM_STEP_BPTT = BPTT(_make_step_vjp(_MINLSTM), _no_recurrent_weights, _project_vjp)


# --------------------------------------------------------------------------
# The whole sequence, by associative scans.


def _combine(earlier, later):
    """Composes ``h ↦ A₁h + B₁`` then ``h ↦ A₂h + B₂``, with the A's as logs (all ≤ 0)."""
    log_a1, b1 = earlier
    log_a2, b2 = later
    return log_a1 + log_a2, jnp.exp(log_a2) * b1 + b2


def _linear_scan(log_a: Array, b: Array, reverse: bool) -> Array:
    """``y_t = exp(log_a_t) ⊙ y_prev + b_t`` from ``y = 0``, over axis 0, in O(log T) depth.

    ``reverse=False`` runs t = 0, 1, …; ``reverse=True`` runs t = T−1, T−2, ….
    """
    return jax.lax.associative_scan(_combine, (log_a, b), reverse=reverse)[1]


def _mask(keep: Array | None, values: Array, fill) -> Array:
    """``values`` where ``keep`` (T, B) is true, ``fill`` elsewhere; ``values`` if ``keep`` is None."""
    return values if keep is None else jnp.where(keep[..., None], values, fill)


def _at_resets(resets: Array, values: Array, replacement) -> Array:
    """``replacement`` where ``resets`` (T, B) is true, ``values`` elsewhere."""
    return jnp.where(resets[..., None], replacement, values)


def _effective_log_a(log_a: Array, valid, resets) -> Array:
    """``log a`` as the scan sees it: −inf (a = 0) at resets, 0 (a = 1) at invalid steps."""
    log_a = log_a if resets is None else _at_resets(resets, log_a, -jnp.inf)
    return log_a if valid is None else jnp.where(valid[..., None], log_a, 0)


def _forward(gates: _Gates, params, carry, xs, valid, resets, reverse: bool):
    """Returns ``(final carry, hs, gx, states)``; see :func:`sequence`."""
    gx = _project(params, xs)  # (T, B, G·H): one matmul for every step; unroll zeroed the padding
    log_a, a, b = gates.coefficients(gx.astype(carry.dtype))  # in the state dtype
    if resets is not None:  # h_t = a_t h_0 + b_t: the carry enters through b
        b = _at_resets(resets, b, b + a * carry)
    log_a = _effective_log_a(log_a, valid, resets)
    b = _mask(valid, b, 0)
    first = -1 if reverse else 0
    b = b.at[first].add(jnp.exp(log_a[first]) * carry)  # fold h_0 into the first step processed
    states = _linear_scan(log_a, b, reverse)
    final = states[0] if reverse else states[-1]  # the state after the last step processed
    return final, _mask(valid, states, 0).astype(xs.dtype), gx, states


def _backward(gates: _Gates, reverse: bool, res: ScanResiduals, d_final: Array, d_hs: Array):
    """The VJP of :func:`_forward`'s ``(final, hs)``: ``(d_params, d_carry0, d_xs, None, None)``."""
    params, xs, valid, resets, carry, gx, states = res
    gx_state = gx.astype(carry.dtype)  # the gates and every cotangent below are in the state dtype
    log_a, a, _ = gates.coefficients(gx_state)
    log_a = _effective_log_a(log_a, valid, resets)
    first, last = (-1, 0) if reverse else (0, -1)

    # λ_t, the cotangent of the state after step t: its output's, plus the
    # next processed step's λ scaled by that step's a. A linear scan run the
    # other way; the final carry's cotangent enters at the last step.
    lam = _mask(valid, d_hs.astype(carry.dtype), 0).at[last].add(d_final)
    zero = jnp.zeros_like(log_a[:1])
    if reverse:  # the next step processed after t is t − 1
        log_alpha = jnp.concatenate([zero, log_a[:-1]])
        h_prev = jnp.concatenate([states[1:], carry[None]])
    else:
        log_alpha = jnp.concatenate([log_a[1:], zero])
        h_prev = jnp.concatenate([carry[None], states[:-1]])
    lam = _linear_scan(log_alpha, lam, not reverse)

    if resets is not None:
        h_prev = _at_resets(resets, h_prev, carry)
    da = _mask(valid, lam * h_prev, 0)
    db = _mask(valid, lam, 0)
    dgx = gates.coefficients_vjp(gx_state, da, db)  # zero at invalid steps

    d_carry = jnp.exp(log_a[first]) * lam[first]
    if resets is not None:
        hit = resets if valid is None else resets & valid
        d_carry = d_carry + jnp.where(hit[..., None], lam * a, 0).sum(axis=0)

    def rows(x: Array) -> Array:  # (T, B, n) -> (T·B, n)
        return x.reshape(-1, x.shape[-1])

    # Sums over all T·B rows, accumulated in at least float32; each cotangent in its primal's dtype.
    d_params, d_xs = _project_vjp(params, rows(xs), rows(dgx).astype(params.w_ih.dtype))
    d_params = jax.tree.map(lambda d, p: d.astype(p.dtype), d_params, params)
    return d_params, d_carry, d_xs.astype(xs.dtype).reshape(xs.shape), None, None


def _make_sequence(gates: _Gates, name: str):
    def run_fwd(params, carry, xs, valid, resets, reverse):
        final, hs, gx, states = _forward(gates, params, carry, xs, valid, resets, reverse)
        return (final, hs), ScanResiduals(params, xs, valid, resets, carry, gx, states)

    def run(params, carry, xs, valid, resets, reverse):
        return _forward(gates, params, carry, xs, valid, resets, reverse)[:2]

    def run_bwd(reverse, res, cotangents):
        return _backward(gates, reverse, res, *cotangents)

    manual = jax.custom_vjp(run, nondiff_argnums=(5,))  # reverse is static
    manual.defvjp(run_fwd, run_bwd)

    def sequence(params, carry, xs, *, valid=None, resets=None, reverse=False, grad="manual"):
        """The whole sequence by parallel (associative) scans, O(log T) depth.

        The cell's ``sequence`` hook, called by :func:`jaxrnn.unroll` after its
        checks; it checks nothing itself.

        Args:
            params: the cell's params, checked and of ``xs``' dtype D.
            carry: the initial state h_0, (B, H), in the state dtype (at
                least float32 and at least D).
            xs: inputs (T, B, X), checked, T ≥ 1.
            valid: None, or bool (T, B): step t of row b is real (e.g.
                ``t < lengths[b]``). Invalid steps output zeros and keep the
                carry. ``unroll`` has zeroed their inputs, so padding (even
                NaN) reaches neither values nor gradients.
            resets: None, or bool (T, B): where true (at a valid step) the
                state is reset to ``carry`` before step t,
                ``h_t = a_t ⊙ h_0 + b_t``.
            reverse: process t = T−1 down to 0. Outputs stay at their time
                positions; the final carry is the state after step 0. With
                ``valid`` from lengths the padding is then processed first and
                keeps ``carry``, so each row starts at its own last real step.
            grad: ``"manual"``, a ``jax.custom_vjp`` whose backward is a
                reverse linear scan and one matmul each for ``dW_ih``,
                ``dxs`` (saves :class:`ScanResiduals`); or ``"autodiff"``,
                JAX differentiates the same forward.

        Returns:
            ``(final carry (B, H), hs (T, B, H))``, in the carry's and ``xs``'
            dtypes.
        """
        if grad not in GRAD_MODES:
            raise ValueError(f"jaxrnn.{name}.sequence: grad must be one of {GRAD_MODES}; got {grad!r}.")
        valid = None if valid is None else jnp.asarray(valid, bool)
        resets = None if resets is None else jnp.asarray(resets, bool)
        reverse = bool(reverse)
        if xs.shape[0] == 0:
            return carry, jnp.zeros((0, *carry.shape), xs.dtype)  # a direct call; unroll returns before this
        if grad == "manual":
            return manual(params, carry, xs, valid, resets, reverse)
        return run(params, carry, xs, valid, resets, reverse)

    sequence.__qualname__ = sequence.__name__ = f"{name}_sequence"
    return sequence


# --------------------------------------------------------------------------
# Init and shape checks.


def _init_input_weights(params_type, num_gates: int, key: Array, input_size: int, hidden_size: int, dtype):
    """Glorot-uniform per gate block (fan-in ``input_size``, fan-out ``hidden_size``), zero biases."""
    return params_type(w_ih=glorot_blocks(key, num_gates, input_size, hidden_size, dtype),
                       b_ih=gate_biases(num_gates, hidden_size, dtype))


def _input_weight_shapes(cell: Cell, params: _InputWeights, where: str) -> tuple[int, int]:
    """Shape rules of ``(w_ih, b_ih)``; returns ``(input_size, hidden)``."""
    num_gates = len(cell.gates)
    blocks = ", ".join(cell.gates)
    w_ih = params.w_ih
    if w_ih.ndim != 2 or 0 in w_ih.shape or w_ih.shape[1] % num_gates:
        raise ValueError(
            f"{where}: {cell!r} has {num_gates} gate blocks ({blocks}) and no recurrent weights, so params.w_ih "
            f"must be (input_size, {num_gates}·hidden) with input_size > 0 and hidden > 0; got shape "
            f"{w_ih.shape}. Make them with {cell!r}.init(key, input_size, hidden_size); these may be params "
            f"of another cell type."
        )
    hidden = w_ih.shape[1] // num_gates
    if params.b_ih.shape != (num_gates * hidden,):
        raise ValueError(
            f"{where}: params.b_ih must have shape ({num_gates * hidden},) to match w_ih {w_ih.shape} "
            f"({num_gates} blocks of hidden {hidden}); got {params.b_ih.shape}. Make them with "
            f"{cell!r}.init(key, input_size, hidden_size)."
        )
    return w_ih.shape[0], hidden


# --------------------------------------------------------------------------
# The cells.

_INIT_DOC = """Init: Glorot-uniform per gate block of ``w_ih`` (fan-in ``input_size``,
    fan-out ``hidden_size``, as the other cells' ``w_ih``), zero biases."""

def _parallel_cell(name: str, gates: tuple[str, ...], params_type, maths: _Gates, bptt: BPTT, doc: str) -> Cell:
    cell = Cell(
        name=name,
        params_type=params_type,
        carry_type=None,
        init_params=partial(_init_input_weights, params_type, len(gates)),
        check_shapes=lambda params, where: _input_weight_shapes(cell, params, where),
        recurrence=_make_recurrence(maths),
        project=_project,
        bptt=bptt,
        sequence=_make_sequence(maths, name),
        gates=gates,
        doc=doc,
    )
    return _registry.register_built_in(cell)


mingru = _parallel_cell(
    "mingru", ("z", "h"), MinGRUParams, _MINGRU, MINGRU_STEP_BPTT,
    doc=f"""minGRU (Feng et al., 2024), a GRU whose gates see only the input::

        z = σ(W_z x + b_z)
        h̃ = g(W_h x + b_h)        # g(v) = v + 0.5 if v ≥ 0 else σ(v)
        h' = (1 − z) ⊙ h + z ⊙ h̃

    Params :class:`MinGRUParams` ``(w_ih (X, 2H), b_ih (2H,))``, blocks ``z, h``;
    carry ``h`` of shape (batch, hidden). ``cell.sequence`` runs a whole
    sequence as a parallel scan (see :mod:`jaxrnn._parallel`).

    {_INIT_DOC}
    """,
)

minlstm = _parallel_cell(
    "minlstm", ("f", "i", "h"), MinLSTMParams, _MINLSTM, MINLSTM_STEP_BPTT,
    doc=f"""minLSTM (Feng et al., 2024), an LSTM whose gates see only the input::

        f = σ(W_f x + b_f),  i = σ(W_i x + b_i)
        f', i' = f / (f + i), i / (f + i)      # normalised: f' + i' = 1
        h̃ = g(W_h x + b_h)                     # g(v) = v + 0.5 if v ≥ 0 else σ(v)
        h' = f' ⊙ h + i' ⊙ h̃

    Params :class:`MinLSTMParams` ``(w_ih (X, 3H), b_ih (3H,))``, blocks
    ``f, i, h``; carry ``h`` of shape (batch, hidden), no cell state.
    ``cell.sequence`` runs a whole sequence as a parallel scan (see
    :mod:`jaxrnn._parallel`).

    {_INIT_DOC}
    """,
)
