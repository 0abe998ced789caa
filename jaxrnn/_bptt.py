"""Hand-written backpropagation through time, wired into ``jax.grad`` by ``jax.custom_vjp``.

For a sequence ``xs`` of shape (T, B, X) the forward pass is

1. ``gx = project(params, xs)``: one (T·B, X) × (X, G·H) matmul for all steps;
2. a ``lax.scan`` of ``recurrence`` that keeps each step's named residual.

The backward pass is

1. a reverse ``lax.scan`` whose carry holds only the recurrent cotangents
   (``dh``, and ``dc`` for the LSTM). Each step turns them into the gate
   pre-activation cotangents ``dz`` (B, G·H) and does one ``dz @ W_hhᵀ``;
2. the weight, bias and input cotangents as single large matmuls over all
   T·B rows: ``dW_ih = xsᵀ dgx``, ``dW_hh = h_prevᵀ dgh``, ``dxs = dgx W_ihᵀ``,
   and the biases are column sums.

Memory saved for the backward pass, per time step, beyond ``xs`` and the
outputs ``hs`` (which the caller holds anyway): LSTM 5·B·H values, GRU
4·B·H, simple RNN none. That is 20·B·H, 16·B·H and 0 bytes a step in float32.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn._precision import accumulation_dtype, matmul


class CellBPTT(NamedTuple):
    """A cell's hand-written backward pass, as pure functions.

    Attributes:
        step_vjp: ``(params, d_carry, dh_out, h, h_prev, residual) ->
            (d_carry_prev, gate_grads)``. One reverse step: ``d_carry`` is the
            cotangent of the carry leaving step t, ``dh_out`` that of the
            output ``h`` at step t, and ``residual`` what the forward saved.
            ``gate_grads`` is stacked over time by the scan.
        split_gate_grads: ``gate_grads (stacked) -> (dgx, dgh)``, the
            cotangents of the input-side and hidden-side pre-activations, each
            (T, B, G·H). They are one array for cells whose biases all fold
            into the input side; ``dgh`` is None for cells without hidden-side
            weights (``w_hh``, ``b_hh``), whose gates see only the input.
    """

    step_vjp: Callable[..., tuple[Any, Any]]
    split_gate_grads: Callable[[Any], tuple[Array, Array]] = lambda dz: (dz, dz)


class Residuals(NamedTuple):
    """What the forward pass saves for the backward pass.

    Attributes:
        xs: the inputs (T, B, X), for ``dW_ih``.
        carry0: the initial carry, whose ``h`` starts ``h_prev``.
        hs: the outputs (T, B, H); ``h_prev`` is ``hs`` shifted by one step.
        steps: the cell's per-step residual, stacked over time.
    """

    xs: Array
    carry0: Any
    hs: Array
    steps: Any


# --------------------------------------------------------------------------
# One reverse step per cell. Shapes: (B, H) unless noted.


def lstm_state_vjp(dh: Array, dc: Array, i: Array, f: Array, g: Array, o: Array, c_prev: Array):
    """Backward of :func:`jaxrnn._cells.lstm_state` and the gate activations.

    Given the cotangents ``dh``, ``dc`` of ``(h, c)`` leaving the step,
    returns the cotangents of the four gate pre-activations (in ``i, f, g, o``
    order) and of ``c_prev``. Elementwise, so any layout works.
    """
    tanh_c = jnp.tanh(f * c_prev + i * g)  # recomputed rather than saved
    dc = dc + dh * o * (1 - tanh_c**2)
    d_i = dc * g * i * (1 - i)
    d_f = dc * c_prev * f * (1 - f)
    d_g = dc * i * (1 - g**2)
    d_o = dh * tanh_c * o * (1 - o)
    return (d_i, d_f, d_g, d_o), dc * f


def _lstm_step_vjp(params, d_carry, dh_out, h, h_prev, res):
    dh, dc = d_carry
    d_gates, dc_prev = lstm_state_vjp(dh + dh_out, dc, *res)
    dz = jnp.concatenate(d_gates, axis=-1)  # (B, 4H): one matmul, not four
    return type(d_carry)(matmul(dz, params.w_hh.T), dc_prev), dz.astype(params.w_hh.dtype)


def _gru_step_vjp(params, dh, dh_out, h, h_prev, res):
    r, z, n, hn = res
    dh = dh + dh_out
    dn = dh * (1 - z) * (1 - n**2)  # at n's pre-activation
    d_r = dn * hn * r * (1 - r)
    d_z = dh * (h_prev - n) * z * (1 - z)
    dgh = jnp.concatenate([d_r, d_z, dn * r], axis=-1)  # (B, 3H) at h W_hh + b_hh
    dtype = params.w_hh.dtype
    return dh * z + matmul(dgh, params.w_hh.T), (dgh.astype(dtype), dn.astype(dtype))


def _gru_split(gate_grads):
    # The input side sees r and z like the hidden side, but n unscaled by r.
    dgh, dn = gate_grads
    hidden = dn.shape[-1]
    return jnp.concatenate([dgh[..., : 2 * hidden], dn], axis=-1), dgh


def _simple_rnn_step_vjp(params, dh, dh_out, h, h_prev, res):
    dz = (dh + dh_out) * (1 - h.astype(dh.dtype) ** 2)
    return matmul(dz, params.w_hh.T), dz.astype(params.w_hh.dtype)


SIMPLE_RNN = CellBPTT(_simple_rnn_step_vjp)
LSTM = CellBPTT(_lstm_step_vjp)
GRU = CellBPTT(_gru_step_vjp, _gru_split)


# --------------------------------------------------------------------------
# The sequence level, the same for every cell.
#
# Per-step side inputs, each (T, B) bool or None (None costs nothing):
#   valid:  step t of row b is real (t < lengths[b]). At other steps the row
#           outputs zeros and keeps its carry.
#   resets: the row's carry is reset to ``init`` (the initial carry) before
#           step t. Invalid steps ignore resets.
# With ``reverse`` the steps run from T-1 down to 0; outputs stay in place.


def _select(mask: Array, on_true, on_false):
    """Per-row choice between two carries (or cotangents); mask (B,) bool."""
    return jax.tree.map(lambda a, b: jnp.where(mask[:, None], a, b), on_true, on_false)


def masked_step(step: Callable, init) -> Callable:
    """A scan body from ``step(carry, input_t) -> (carry, h, extra)``, with resets and validity.

    ``carry_in = init if reset_t else carry``; then ``step(carry_in, input_t)``
    where ``valid_t``, else the carry is kept and ``h = 0``. Rows are
    independent, so the choices are per row.
    """

    def body(carry, inputs):
        input_t, valid_t, reset_t = inputs
        carry_in = carry if reset_t is None else _select(reset_t, init, carry)
        new, h, extra = step(carry_in, input_t)
        if valid_t is not None:
            new = _select(valid_t, new, carry)
            h = jnp.where(valid_t[:, None], h, 0)
        return new, (h, extra)

    return body


def step_scan(cell, params, carry, xs: Array, init, valid, resets, reverse: bool, time_major: bool = True):
    """The plain scan of ``cell.step``: what autodiff differentiates, and the primal of the manual path.

    Projecting inside each step is faster here than the hoisted projection of
    :func:`forward` when no residuals are needed (measured in
    benchmarks/RESULTS.md), so inference takes this path in both modes.

    With ``time_major=False``, ``xs`` is (B, T, X) and ``hs`` comes back
    (B, T, H): each step reads ``xs[:, t]`` and writes ``hs[:, t]`` in place,
    which costs less than transposing both whole arrays (``valid`` and
    ``resets`` stay (T, B)).
    """

    def step(c, x_t):
        new, h = cell.step_unchecked(params, c, x_t)
        return new, h, ()

    body = masked_step(step, init)
    if time_major:
        final, (hs, _) = jax.lax.scan(body, carry, (xs, valid, resets), reverse=reverse)
        return final, hs

    def batch_major_body(state, t):
        c, hs = state
        x_t = jax.lax.dynamic_index_in_dim(xs, t, axis=1, keepdims=False)
        masks = tuple(None if m is None else m[t] for m in (valid, resets))
        c, (h, _) = body(c, (x_t, *masks))
        return (c, jax.lax.dynamic_update_index_in_dim(hs, h, t, axis=1)), None

    batch, steps = xs.shape[:2]
    hs = jnp.zeros((batch, steps, cell.hidden(carry).shape[-1]), xs.dtype)
    (final, hs), _ = jax.lax.scan(batch_major_body, (carry, hs), jnp.arange(steps), reverse=reverse)
    return final, hs


def forward(cell, params, carry, xs: Array, init, valid, resets, reverse: bool, save: bool = True):
    """Runs ``cell`` over ``xs`` (T, B, X) from ``carry``, keeping :class:`Residuals` if ``save``.

    Returns:
        ``(final carry, hs (T, B, H), residuals or None)``.
    """
    gx = cell.project(params, xs)  # all T steps in one matmul

    def step(c, gx_t):
        new, h, residual = cell.recurrence(params, c, gx_t)
        return new, h, residual if save else ()

    final, (hs, steps) = jax.lax.scan(masked_step(step, init), carry, (gx, valid, resets), reverse=reverse)
    return final, hs, Residuals(xs, carry, hs, steps) if save else None


def _previous_hidden(h_start: Array, h_init: Array, hs: Array, valid, resets, reverse: bool) -> Array:
    """The ``h`` entering each step, rebuilt from the outputs rather than saved.

    It is the previous step's output in running order, ``h_start`` for the
    first step, and ``h_init`` after a reset. A step after an invalid one
    sees ``h_init``: with ``valid`` from lengths, invalid steps only come
    before a row's first real step (``reverse``) or after its last (forward),
    and before the first they keep the initial carry.
    """
    if reverse:
        h_prev = jnp.concatenate([hs[1:], h_start[None]])
        prev_valid = None if valid is None else jnp.concatenate([valid[1:], jnp.ones_like(valid[:1])])
    else:
        h_prev = jnp.concatenate([h_start[None], hs[:-1]])
        prev_valid = None if valid is None else jnp.concatenate([jnp.ones_like(valid[:1]), valid[:-1]])
    if valid is not None:
        h_prev = jnp.where(prev_valid[..., None], h_prev, h_init)
    if resets is not None:
        h_prev = jnp.where(resets[..., None], h_init, h_prev)
    return h_prev


def backward(cell, params, res: Residuals, d_final, d_hs: Array, init, valid, resets, reverse: bool):
    """The VJP of :func:`forward` for cotangents ``d_final`` (carry) and ``d_hs`` (T, B, H).

    Returns:
        ``(d_params, d_carry, d_xs, d_init)``: cotangents of ``params``, of the
        carry the run started from, of ``xs``, and of ``init`` through resets
        (None without resets).
    """
    xs, carry, hs, steps = res
    h_prev = _previous_hidden(cell.hidden(carry), cell.hidden(init), hs, valid, resets, reverse)

    def body(acc, inputs):
        d_carry, d_init = acc
        dh_out, h, h_prev_t, residual, valid_t, reset_t = inputs
        d_new = d_carry
        if valid_t is not None:  # an invalid step passes its carry's cotangent straight through
            d_new = jax.tree.map(lambda d: jnp.where(valid_t[:, None], d, 0), d_carry)
            dh_out = jnp.where(valid_t[:, None], dh_out, 0)
        d_in, gate_grads = cell.bptt.step_vjp(params, d_new, dh_out, h, h_prev_t, residual)
        if reset_t is not None:
            d_init = jax.tree.map(lambda a, d: a + jnp.where(reset_t[:, None], d, 0), d_init, d_in)
            d_in = jax.tree.map(lambda d: jnp.where(reset_t[:, None], 0, d), d_in)
        if valid_t is not None:
            d_in = _select(valid_t, d_in, d_carry)
        return (d_in, d_init), gate_grads

    d_init0 = None if resets is None else jax.tree.map(jnp.zeros_like, init)
    (d_carry, d_init), gate_grads = jax.lax.scan(
        body, (d_final, d_init0), (d_hs, hs, h_prev, steps, valid, resets), reverse=not reverse
    )
    dgx, dgh = cell.bptt.split_gate_grads(gate_grads)

    def rows(a: Array) -> Array:  # (T, B, n) -> (T·B, n)
        return a.reshape(-1, a.shape[-1])

    # Sums over all T·B rows, accumulated in at least float32.
    dtype = params.w_ih.dtype
    total = accumulation_dtype(dtype)
    d_params = {
        "w_ih": matmul(rows(xs).T, rows(dgx)).astype(dtype),
        "b_ih": dgx.sum(axis=(0, 1), dtype=total).astype(dtype),
    }
    if dgh is not None:
        d_params["w_hh"] = matmul(rows(h_prev).T, rows(dgh)).astype(dtype)
        d_params["b_hh"] = dgh.sum(axis=(0, 1), dtype=total).astype(dtype)
    return type(params)(**d_params), d_carry, matmul(dgx, params.w_ih.T).astype(xs.dtype), d_init


def _add(a, b):
    return a if b is None else jax.tree.map(jnp.add, a, b)


@functools.cache
def manual_unroll(cell, reverse: bool = False, checkpoint: int | None = None, time_major: bool = True) -> Callable:
    """``(params, carry, xs, valid, resets) -> (carry, hs)`` with the hand-written VJP.

    One ``jax.custom_vjp`` per cell (and direction, checkpointing and
    layout), made on first use and cached. ``valid`` and ``resets`` are
    (T, B) bool or None. With ``time_major=False`` (no checkpointing), ``xs``
    and ``hs`` are batch-major: the primal reads them in place, and the
    backward pass works time-major on transposed copies.

    With ``checkpoint=k`` (T a multiple of k) the forward pass saves only the
    carry entering every k-th step; the backward pass recomputes each chunk of
    k steps with its residuals, then runs that chunk's reverse scan and its
    weight-gradient matmuls over k·B rows. Memory for residuals falls from
    O(T) to O(T/k + k) carries' worth, for one extra forward pass.
    """

    def chunks(a):  # (T, ...) -> (T/k, k, ...)
        return None if a is None else a.reshape(-1, checkpoint, *a.shape[1:])

    def time_first(a):  # batch-major in, time-major inside
        return a if time_major else jnp.swapaxes(a, 0, 1)

    @jax.custom_vjp
    def run(params, carry, xs, valid, resets):
        return step_scan(cell, params, carry, xs, carry, valid, resets, reverse, time_major)

    def run_fwd(params, carry, xs, valid, resets):
        if checkpoint is None:
            final, hs, res = forward(cell, params, carry, time_first(xs), carry, valid, resets, reverse)
            return (final, time_first(hs)), (params, carry, res, valid, resets)

        def chunk(start, inputs):
            xs_c, valid_c, resets_c = inputs
            final, hs, _ = forward(cell, params, start, xs_c, carry, valid_c, resets_c, reverse, save=False)
            return final, (hs, start)

        final, (hs, starts) = jax.lax.scan(chunk, carry, (chunks(xs), chunks(valid), chunks(resets)), reverse=reverse)
        return (final, hs.reshape(-1, *hs.shape[2:])), (params, carry, (xs, starts), valid, resets)

    def run_bwd(saved, cotangents):
        params, init, res, valid, resets = saved
        d_final, d_hs = cotangents
        if checkpoint is None:
            d_params, d_carry, d_xs, d_init = backward(
                cell, params, res, d_final, time_first(d_hs), init, valid, resets, reverse
            )
            return d_params, _add(d_carry, d_init), time_first(d_xs), None, None

        xs, starts = res

        def chunk(acc, inputs):
            d_carry, d_params_sum, d_init_sum = acc
            start, xs_c, valid_c, resets_c, d_hs_c = inputs
            _, _, chunk_res = forward(cell, params, start, xs_c, init, valid_c, resets_c, reverse)
            d_params, d_start, d_xs, d_init = backward(
                cell, params, chunk_res, d_carry, d_hs_c, init, valid_c, resets_c, reverse
            )
            return (d_start, _add(d_params_sum, d_params), _add(d_init_sum, d_init)), d_xs

        zeros = (jax.tree.map(jnp.zeros_like, params), None if resets is None else jax.tree.map(jnp.zeros_like, init))
        (d_carry, d_params, d_init), d_xs = jax.lax.scan(
            chunk,
            (d_final, *zeros),
            (starts, chunks(xs), chunks(valid), chunks(resets), chunks(d_hs)),
            reverse=not reverse,
        )
        return d_params, _add(d_carry, d_init), d_xs.reshape(xs.shape), None, None

    run.defvjp(run_fwd, run_bwd)
    return run
