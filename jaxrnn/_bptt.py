"""The sequence engine: any protocol cell over a sequence, with its hand-written BPTT behind ``jax.custom_vjp``.

The engine knows only the protocol (:class:`jaxrnn.Cell`, :class:`jaxrnn.BPTT`),
and checks every cell function's result against it (:mod:`jaxrnn._contract`).
For a sequence ``xs`` of shape (T, B, X), N = T·B rows, the forward pass is

1. ``buf = project(params, xs)``: one call over all N rows (one matmul for a
   linear projection), kept as (N, P) rows;
2. a ``lax.scan`` of ``recurrence`` that reads step t's projection from
   ``buf`` and, for a cell that declares ``residual_in_buffer`` (the LSTM's
   and GRU's activated gates), writes the residual's first field back over
   that step's rows in place; the rest of the residual is stacked over time.

The backward pass is

1. a reverse ``lax.scan`` of the cell's ``step_vjp``, whose carry holds the
   recurrent cotangents and ``buf``: step t reads its residual and writes its
   ``d_gx`` (B, P) over ``buf``'s rows for t;
2. the parameter and input cotangents as single large computations over all
   N rows: ``param_grads`` (e.g. ``dW_hh = h_prevᵀ d_gx``) and
   ``project_vjp`` (e.g. ``dW_ih = xsᵀ d_gx``, ``dxs = d_gx W_ihᵀ``), the
   ``h`` entering each step rebuilt from the outputs rather than saved.

One (N, P) buffer thus holds the projection, then the gates, then their
cotangents, as their lifetimes do not overlap.

That is the ``"in_place"`` :class:`Strategy`. For short sequences
(:func:`strategy_for`: T ≤ 3) the engine instead unrolls both scans and
stacks each step's residual and ``d_gx`` as the scans' outputs
(``"unrolled"``); the maths, and the values, are the same.

Memory saved for the backward pass, per time step, beyond ``xs`` and the
outputs ``hs`` (which the caller holds anyway): LSTM 6·B·H values (four
gates, ``c_prev`` and ``tanh c'``), GRU 4·B·H, simple RNN B·H, the gates'
share in the projection's buffer. The (N, P) buffer itself is saved for every
cell, the sLSTM's included, and takes ``d_gx`` in the backward pass. The scans
both grad modes share are in :mod:`jaxrnn._scans`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, overload

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _contract
from jaxrnn._precision import accumulation_dtype
from jaxrnn._protocol import like, with_first
from jaxrnn._scans import masked_step, select, step_scan


class Residuals(NamedTuple):
    """What the forward pass saves for the backward pass.

    Attributes:
        xs: the inputs (T, B, X), for the projection's cotangents.
        carry0: the initial carry, whose ``h`` starts ``h_prev``.
        hs: the outputs (T, B, H); ``h_prev`` is ``hs`` shifted by one step.
        buf: the (N, P) rows of the projection, holding each step's residual
            first field for a cell that declares ``residual_in_buffer``; the
            backward pass overwrites them with ``d_gx``, so it needs no zeroed
            (N, P) buffer. For a cell without ``residual_in_buffer`` this keeps
            the projection alive between the passes. None with the
            ``"unrolled"`` strategy (the first field is then stacked in
            ``rest``).
        rest: the cell's per-step residual, stacked over time, with its first
            field None when it lives in ``buf``.
    """

    xs: Array
    carry0: Any
    hs: Array
    buf: Array | None
    rest: Any


class Strategy(NamedTuple):
    """How the hand-written BPTT lays out its two scans; both layouts compute the same values.

    Attributes:
        unrolled: False (``"in_place"``): both scans loop, one step per
            iteration, and one (N, P) buffer holds each step's projection,
            then its residual's first field, then its ``d_gx``, updated in
            place. True (``"unrolled"``): both scans are unrolled over every
            step into straight-line code, and each step's residual and
            ``d_gx`` are stacked as the scans' outputs.
    """

    unrolled: bool = False

    @property
    def name(self) -> str:
        """``"unrolled"`` or ``"in_place"``."""
        return "unrolled" if self.unrolled else "in_place"


IN_PLACE = Strategy(unrolled=False)

# The longest sequence whose scans are unrolled (see :func:`strategy_for`).
UNROLL_MAX_STEPS = 3


def strategy_for(steps: int) -> Strategy:
    """The strategy the engine uses for a sequence of ``steps`` time steps.

    Up to :data:`UNROLL_MAX_STEPS` steps both scans are unrolled, with the
    residuals and ``d_gx`` stacked: a loop's fixed cost per step (its
    carries, dynamic slices and launches) is a large share of so short a
    sequence, and that many steps of straight-line code compile in about
    0.6-1.5× autodiff's time. Longer sequences loop over one in-place
    buffer: unrolled, their compile time grows with T (up to 1.8× autodiff's
    at T = 4-5 and 3.6× at T = 8) while the loop runs in 0.80-1.17× their
    time; stacked, the scans copy every step's residual and cotangent in and
    out of the loop (measured in benchmarks/RESULTS.md, "Backward strategies").
    """
    return Strategy(unrolled=steps <= UNROLL_MAX_STEPS)


def add_cotangents(params, *parts):
    """Sums params-shaped cotangents, where ``None`` stands for zero; each in its param's dtype."""

    def total(p, *ds):
        present = [d for d in ds if d is not None]
        if not present:
            return jnp.zeros_like(p)
        return functools.reduce(jnp.add, present).astype(p.dtype)

    parts = [part for part in parts if part is not None]
    return jax.tree.map(total, params, *parts, is_leaf=lambda x: x is None)


def _project_vjp(cell, params, x_rows: Array, d_gx: Array):
    """``(d_params, d_x)`` of the projection: the cell's own, or autodiff's."""
    if cell.project is None:
        return None, d_gx
    if cell.bptt.project_vjp is None:
        gx, vjp = jax.vjp(cell.project, params, x_rows)
        return vjp(d_gx.astype(gx.dtype))
    d_params, d_x = _contract.tuple_of(cell, "bptt.project_vjp", cell.bptt.project_vjp(params, x_rows, d_gx),
                                       ("d_params", "d_x"))
    _contract.array_of(cell, "bptt.project_vjp", "d_x", d_x, x_rows.shape, "the inputs' rows, (N, X)")
    return _contract.params_like(cell, "bptt.project_vjp", d_params, params), d_x


def _checked_recurrence(cell, params):
    """``recurrence`` as the engine calls it: checked, the output in the compute dtype (``gx``'s).

    A residual declared to live in the projection's buffer is made the
    buffer's dtype here, so every strategy saves the same values.
    """

    def step(carry, gx):
        new, h, residual = _contract.recurrence(cell, cell.recurrence(params, carry, gx), carry, gx)
        if cell.residual_in_buffer:
            residual = with_first(residual, residual[0].astype(gx.dtype))
        return new, h.astype(gx.dtype), residual

    return step



def forward(cell, params, carry, xs: Array, init, valid, resets, reverse: bool, save: bool = True,
            strategy: Strategy = IN_PLACE):
    """Runs ``cell`` over ``xs`` (T, B, X) from ``carry``, keeping :class:`Residuals` if ``save``.

    Returns:
        ``(final carry, hs (T, B, H), residuals or None)``.
    """
    steps, batch = xs.shape[:2]
    buf = cell.project_or_identity(params, _rows(xs))  # (N, P): every step's projection at once

    step = _checked_recurrence(cell, params)
    body = masked_step(step, init)
    if not save or strategy.unrolled:
        gxs = buf.reshape(steps, batch, buf.shape[-1])  # not -1: B may be 0
        final, (hs, rest) = jax.lax.scan(
            body, carry, (gxs, valid, resets), reverse=reverse, unroll=_unroll(strategy, steps)
        )
        return final, hs, (Residuals(xs, carry, hs, None, rest) if save else None)

    in_buffer = cell.residual_in_buffer

    def in_place(state, masks):  # step t's residual first field overwrites its projection in ``buf``
        c, buf, t = state
        c, (h, residual) = body(c, (_read(buf, t, batch), *masks))
        if in_buffer:
            buf = _write(buf, residual[0], t)
            residual = with_first(residual, None)
        return (c, buf, t + (-1 if reverse else 1)), (h, residual)

    (final, buf, _), (hs, rest) = jax.lax.scan(
        in_place, (carry, buf, _first_step(steps, reverse)), (valid, resets), length=steps, reverse=reverse
    )
    return final, hs, Residuals(xs, carry, hs, buf, rest)


def _unroll(strategy: Strategy, steps: int) -> int:
    """``lax.scan``'s ``unroll``: every step, or one per iteration."""
    return max(steps, 1) if strategy.unrolled else 1


@overload
def _rows(a: Array) -> Array: ...
@overload
def _rows(a: None) -> None: ...
def _rows(a: Array | None) -> Array | None:
    """(T, B, n) -> (T·B, n)."""
    return None if a is None else a.reshape(-1, a.shape[-1])


def _first_step(steps: int, reverse: bool) -> Array:
    # A step index carried through the scan rather than read from an
    # ``arange``: an index loaded from memory, inside each step's elementwise
    # loops, made them up to twice as slow (benchmarks/RESULTS.md).
    return jnp.asarray(steps - 1 if reverse else 0, jnp.int32)


def _read(buf: Array, t: Array, batch: int) -> Array:
    """Step t's rows ``buf[t·B : (t+1)·B]`` of a (T·B, n) buffer.

    The buffer is kept as rows, the layout its matmuls use, so that no
    reshape meets an in-place write (XLA copied the whole buffer for that),
    and negative indices are not wrapped (see :func:`_first_step`).
    """
    return jax.lax.dynamic_slice_in_dim(buf, t * batch, batch, 0, allow_negative_indices=False)


def _write(buf: Array, value: Array, t: Array) -> Array:
    """Writes step t's rows; in place when ``buf`` is a loop carry."""
    return jax.lax.dynamic_update_slice_in_dim(buf, value, t * value.shape[0], 0, allow_negative_indices=False)


def _previous_hidden(h_start: Array, h_init: Array, hs: Array, valid, resets, reverse: bool) -> Array:
    """The ``h`` entering each step, rebuilt from the outputs rather than saved.

    It is the previous step's output in running order, ``h_start`` for the
    first step, and ``h_init`` after a reset. A step after an invalid one
    sees ``h_init``: with ``valid`` from lengths, invalid steps only come
    before a row's first real step (``reverse``) or after its last (forward),
    and before the first they keep the initial carry.
    """
    h_prev = jnp.concatenate([hs[1:], h_start[None]] if reverse else [h_start[None], hs[:-1]])
    if valid is not None:
        ones = jnp.ones_like(valid[:1])
        prev_valid = jnp.concatenate([valid[1:], ones] if reverse else [ones, valid[:-1]])
        h_prev = jnp.where(prev_valid[..., None], h_prev, h_init)
    if resets is not None:
        h_prev = jnp.where(resets[..., None], h_init, h_prev)
    return h_prev


def backward(cell, params, res: Residuals, d_final, d_hs: Array, init, valid, resets, reverse: bool,
             strategy: Strategy):
    """The VJP of :func:`forward` for cotangents ``d_final`` (carry) and ``d_hs`` (T, B, H).

    Returns:
        ``(d_params, d_carry, d_xs, d_init)``: cotangents of ``params``, of the
        carry the run started from, of ``xs``, and of ``init`` through resets
        (None without resets).
    """
    xs, carry, hs, buf, rest = res
    steps, batch = xs.shape[:2]
    bptt = cell.bptt
    h_prev = _previous_hidden(cell.hidden(carry), cell.hidden(init), hs, valid, resets, reverse)
    prepared = params if bptt.prepare is None else bptt.prepare(params)
    in_buffer = cell.residual_in_buffer
    summed = bptt.param_grads is None  # per-step params cotangents, added up in the loop

    gx_shape = (batch, jax.eval_shape(cell.project_or_identity, params, xs[0]).shape[-1])

    def step_back(d_carry, d_init, d_sum, dh_out, h, h_prev_t, residual, valid_t, reset_t):
        # The output is the carry's first field, so its cotangent joins that field's.
        d_new = with_first(d_carry, cell.hidden(d_carry) + dh_out)
        if valid_t is not None:  # an invalid step passes its carry's cotangent straight through
            d_new = jax.tree.map(lambda d: jnp.where(valid_t[:, None], d, 0), d_new)
        if in_buffer:  # stored in the compute dtype; the cell gets it back in the state dtype
            residual = with_first(residual, residual[0].astype(cell.hidden(d_carry).dtype))
        out = bptt.step_vjp(params, prepared, d_new, h, h_prev_t, residual)
        d_in, d_gx, stash = _contract.step_vjp(cell, out, d_carry, gx_shape)
        d_in = like(d_in, d_carry)
        if reset_t is not None:
            d_init = jax.tree.map(lambda a, d: a + jnp.where(reset_t[:, None], d, 0), d_init, d_in)
            d_in = jax.tree.map(lambda d: jnp.where(reset_t[:, None], 0, d), d_in)
        if valid_t is not None:
            d_in = select(valid_t, d_in, d_carry)
        if summed:
            d_sum, stash = add_cotangents(d_sum, d_sum, stash), None
        return d_in, d_init, d_sum, d_gx, stash

    def body(state, inputs):
        d_carry, d_init, d_sum, buf, pending, t = state
        # The previous step's d_gx is written here, before anything reads ``buf``,
        # so every read comes after the write and XLA updates ``buf`` in place.
        # Written after the reads of its own step, it made XLA copy all of
        # ``buf`` on every step.
        buf = _write(buf, *pending)
        dh_out, h, h_prev_t, rest_t, valid_t, reset_t = inputs
        residual = with_first(rest_t, _read(buf, t, batch)) if in_buffer else rest_t
        d_in, d_init, d_sum, d_gx, stash = step_back(
            d_carry, d_init, d_sum, dh_out, h, h_prev_t, residual, valid_t, reset_t)
        return (d_in, d_init, d_sum, buf, (d_gx.astype(buf.dtype), t), t + (1 if reverse else -1)), stash

    def stacked_body(state, inputs):  # d_gx leaves as the scan's output, stacked over time
        d_carry, d_init, d_sum = state
        d_in, d_init, d_sum, d_gx, stash = step_back(d_carry, d_init, d_sum, *inputs)
        return (d_in, d_init, d_sum), (d_gx, stash)

    d_init0 = None if resets is None else jax.tree.map(jnp.zeros_like, init)
    # Summed in at least float32, whatever the params' dtype.
    d_sum0 = jax.tree.map(lambda p: jnp.zeros(p.shape, accumulation_dtype(p.dtype)), params) if summed else None
    if not strategy.unrolled:
        if buf is None:
            raise ValueError("jaxrnn: the in-place backward pass needs the projection's rows that the in-place "
                             "forward pass keeps; got residuals from the unrolled strategy. Run both passes with "
                             "one strategy.")
        first = _first_step(steps, not reverse)  # the backward pass's first step
        (d_carry, d_init, d_sum, d_gx, pending, _), stash = jax.lax.scan(
            body,
            (d_final, d_init0, d_sum0, buf, (_read(buf, first, batch), first), first),  # a first write: no change
            (d_hs, hs, h_prev, rest, valid, resets),
            reverse=not reverse,
        )
        d_gx = _write(d_gx, *pending)  # the last step's
    else:
        (d_carry, d_init, d_sum), (d_gx_steps, stash) = jax.lax.scan(
            stacked_body, (d_final, d_init0, d_sum0), (d_hs, hs, h_prev, rest, valid, resets),
            reverse=not reverse, unroll=_unroll(strategy, steps),
        )
        d_gx = _rows(d_gx_steps)
    d_project, d_x = _project_vjp(cell, params, _rows(xs), d_gx)
    if summed:
        d_recurrence = d_sum
    else:
        stash = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), stash)
        d_recurrence = _contract.params_like(
            cell, "bptt.param_grads", bptt.param_grads(params, _rows(h_prev), d_gx, stash), params)
    d_params = add_cotangents(params, d_project, d_recurrence)
    return d_params, d_carry, d_x.astype(xs.dtype).reshape(xs.shape), d_init


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

    The :class:`Strategy` is chosen per sequence (or per checkpointed chunk)
    by :func:`strategy_for`, at trace time.
    """

    def chunks(a):  # (T, ...) -> (T/k, k, ...)
        return None if a is None else a.reshape(-1, checkpoint, *a.shape[1:])

    def time_first(a):  # batch-major in, time-major inside
        return a if time_major else jnp.swapaxes(a, 0, 1)

    def chosen(xs_time_major) -> Strategy:  # the same choice in both passes, from static shapes
        return strategy_for(xs_time_major.shape[0])

    @jax.custom_vjp
    def run(params, carry, xs, valid, resets):
        return step_scan(cell, params, carry, xs, carry, valid, resets, reverse, time_major)

    def run_fwd(params, carry, xs, valid, resets):
        if checkpoint is None:
            xs = time_first(xs)
            final, hs, res = forward(cell, params, carry, xs, carry, valid, resets, reverse, strategy=chosen(xs))
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
                cell, params, res, d_final, time_first(d_hs), init, valid, resets, reverse, chosen(res.xs)
            )
            return d_params, _add(d_carry, d_init), time_first(d_xs), None, None

        xs, starts = res

        def chunk(acc, inputs):
            d_carry, d_params_sum, d_init_sum = acc
            start, xs_c, valid_c, resets_c, d_hs_c = inputs
            strategy_c = chosen(xs_c)
            _, _, chunk_res = forward(cell, params, start, xs_c, init, valid_c, resets_c, reverse, strategy=strategy_c)
            d_params, d_start, d_xs, d_init = backward(
                cell, params, chunk_res, d_carry, d_hs_c, init, valid_c, resets_c, reverse, strategy_c
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
