"""``unroll``: a cell over a whole sequence, with a choice of backward pass."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxrnn import _bptt, _checks, _scans
from jaxrnn._options import GradMode, ScanMode, SequenceOptions
from jaxrnn._protocol import Carry, Cell, Params, zero_carry


def unroll(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Carry | None = None,
    *,
    grad: GradMode = "manual",
    lengths: Array | None = None,
    reverse: bool = False,
    time_major: bool = True,
    resets: Array | None = None,
    checkpoint: int | None = None,
    scan: ScanMode = "auto",
) -> tuple[Carry, Array]:
    """Runs ``cell`` over a sequence with ``jax.lax.scan``.

    ``hs[t], carry_{t+1} = cell.step(params, carry_t, xs[t])`` for t = 0..T-1,
    with the options below.

    Args:
        cell: :data:`jaxrnn.simple_rnn`, :data:`jaxrnn.lstm`, :data:`jaxrnn.gru`
            or another :class:`jaxrnn.Cell`.
        params: the cell's params, from ``cell.init``.
        xs: inputs, (T, batch, input_size), or (batch, T, input_size) with
            ``time_major=False``; floating point.
        carry: the initial state, as from ``cell.initial_carry``; None means zeros.
            The LSTM takes an :class:`LSTMCarry` or a plain ``(h, c)`` tuple.
        grad: how ``jax.grad``/``jax.vjp`` differentiate the result.
            ``"manual"``: the cell's hand-written BPTT (:mod:`jaxrnn._bptt`),
            which projects the inputs for all steps in one matmul and forms
            the weight gradients as single matmuls after the reverse scan.
            Its layout is chosen per sequence length;
            :func:`jaxrnn.backward_strategy` names it.
            ``"autodiff"``: JAX differentiates the scan of ``cell.step``.
            Both give the same values and (to rounding) the same gradients,
            with every option below.
        lengths: int (batch,) with values in 0..T, or None (all T). Row b's
            steps t ≥ lengths[b] are padding: it outputs zeros there and keeps
            its carry, so the returned carry is the state after its last real
            step (the initial carry if its length is 0). Padding values never
            reach the outputs or gradients. These are torch's packed-sequence
            semantics.
        reverse: run each row from its last real step back to step 0, like the
            backward direction of a torch bidirectional RNN on a packed
            sequence. Outputs stay at their time positions; the returned carry
            is the state after step 0.
        time_major: False takes ``xs`` as (batch, T, input) and returns ``hs``
            as (batch, T, hidden). ``lengths`` and ``resets`` keep their shapes.
        resets: bool (T, batch), or None. Where true, that row's carry is reset
            to the initial carry before the step (episode boundaries, or
            documents packed end to end). Padding steps ignore it.
        checkpoint: store only the carry entering every ``checkpoint``-th step
            and recompute the steps in between during the backward pass: memory
            O(T/k + k) instead of O(T) residuals, for one extra forward pass.
            None stores every step's residuals.
        scan: ``"sequential"`` scans ``cell.step``; ``"parallel"`` uses the
            cell's whole-sequence implementation (the parallel-scan cells);
            ``"auto"`` picks parallel where the cell has one.

    Returns:
        ``(carry, hs)``: the final state, and the outputs (T, batch, hidden)
        (batch-major with ``time_major=False``). With T = 0 the carry comes
        back unchanged.

    Raises:
        ValueError: bad shapes or values (lengths outside 0..T, checkpoint ≤ 0),
            an unknown ``grad`` or ``scan``.
        TypeError: non-float inputs, integer lengths of the wrong kind,
            non-bool resets, a non-cell, or params or a carry of the wrong kind.

    Both are raised at trace time, before any compute. Under ``jit`` lengths
    are not concrete, so rows whose length is outside 0..T come back as NaN
    instead.

    Precision: params and ``xs`` compute in their common dtype D, which is
    also the dtype of ``hs``. The carry is the running state and keeps at
    least float32 and at least D: with bfloat16 or float16 params and inputs,
    matmuls take 16-bit operands and accumulate in float32, the cell state and
    the gradient sums stay float32, and the returned carry is float32 (so
    chained calls, as in truncated BPTT, lose nothing). Gradients come back in
    each argument's own dtype.

    ``jit``, ``vmap``
    (e.g. over an ensemble of params) and reverse-mode ``grad``/``vjp``
    (to any order) compose with it. Forward mode (``jax.jvp``, ``jacfwd``)
    needs ``grad="autodiff"``: JAX cannot push tangents through a
    ``custom_vjp``.
    """
    where = "jaxrnn.unroll"
    check_cell(cell, where)
    options = SequenceOptions(grad, lengths, reverse, time_major, resets, checkpoint, scan).checked(where)
    params, input_size, sizes = _checks.params(cell, params, where)
    xs, checked = plan(cell, options, xs, where)
    return run(cell, params, input_size, sizes, xs, carry, options, checked, where)


def backward_strategy(
    cell: Cell, steps: int, *, grad: GradMode = "manual", checkpoint: int | None = None, scan: ScanMode = "auto"
) -> str:
    """Which backward pass :func:`unroll` runs for a sequence of ``steps`` steps, by name.

    The engine picks the layout of the hand-written BPTT per sequence, at
    trace time, from T alone (every layout computes the same values):

    * ``"unrolled"``: T ≤ 3 (with ``checkpoint=k``, chunks of k ≤ 3). Both
      scans are unrolled into straight-line code, and each step's residual
      and input cotangent are stacked: a loop's fixed cost per step is a
      large share of so short a sequence. Unrolled, longer sequences would
      compile slower than autodiff (the time grows with T) for little gain.
    * ``"in_place"``: longer sequences. Both scans loop, and one (T·B, P)
      buffer holds each step's input projection, then its activated gates,
      then their cotangents, updated in place.

    Other answers: ``"parallel"`` (the cell's own whole-sequence VJP, as for
    :data:`jaxrnn.mingru` with ``scan="auto"``) and ``"autodiff"`` (JAX
    differentiates the scan of ``cell.step``).

    Args:
        cell: a :class:`jaxrnn.Cell`.
        steps: the sequence length T.
        grad, checkpoint, scan: as for :func:`unroll`.

    Returns:
        ``"unrolled"``, ``"in_place"``, ``"parallel"`` or ``"autodiff"``.

    Raises:
        ValueError: ``steps`` < 0, or options :func:`unroll` would refuse.
        TypeError: ``cell`` is not a :class:`jaxrnn.Cell`, or ``steps`` is not an int.
    """
    where = "jaxrnn.backward_strategy"
    check_cell(cell, where)
    grad, _, _, _, _, checkpoint, scan = SequenceOptions(grad, checkpoint=checkpoint, scan=scan).checked(where)
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer):
        raise TypeError(f"{where}: steps must be an int, the sequence length T; got {type(steps).__name__} {steps!r}.")
    if steps < 0:
        raise ValueError(f"{where}: steps must be ≥ 0, the sequence length T; got {steps}.")
    if _parallel(cell, grad, checkpoint, scan, where):
        return "parallel"
    if grad == "autodiff":
        return "autodiff"
    return _bptt.strategy_for(checkpoint if checkpoint is not None else steps).name


def _parallel(cell: Cell, grad: str, checkpoint: int | None, scan: str, where: str) -> bool:
    """Whether the cell's whole-sequence implementation replaces the scan; raises for options that cannot run."""
    if scan == "parallel" and cell.sequence is None:
        raise ValueError(f"{where}: {cell!r} has no parallel scan; use scan='sequential' or 'auto'.")
    parallel = cell.sequence is not None and scan != "sequential"
    if grad == "manual" and not parallel and cell.bptt is None:
        raise ValueError(f"{where}: {cell!r} has no hand-written backward pass; use grad='autodiff'.")
    if checkpoint is not None and parallel:
        raise ValueError(
            f"{where}: checkpoint applies to sequential scans; {cell!r}'s parallel scan keeps O(T) "
            "memory by design. Pass scan='sequential' to checkpoint it."
        )
    return parallel


def check_cell(cell, where: str) -> None:
    """``cell`` must be a :class:`jaxrnn.Cell`."""
    if not isinstance(cell, Cell):
        raise TypeError(
            f"{where}: cell must be a jaxrnn.Cell such as jaxrnn.lstm; got {type(cell).__name__}. "
            "Pass the cell first: unroll(cell, params, xs)."
        )


class Plan(NamedTuple):
    """One call's checked per-step inputs and its choices, made once for every layer and direction.

    Attributes:
        parallel: the cell's whole-sequence implementation replaces the scan.
        swap: batch-major inputs are worked on as time-major copies.
        steps: T.
        batch: B.
        valid: (T, B) bool, step t of row b is real; None without lengths.
        bad_rows: (B,) bool, rows whose traced length lies outside 0..T (they
            come back NaN); None where lengths are concrete or absent.
        resets: (T, B) bool or None.
        time_major: the caller's layout, as ``unroll``'s ``time_major``.
    """

    parallel: bool
    swap: bool
    steps: int
    batch: int
    valid: Array | None
    bad_rows: Array | None
    resets: Array | None
    time_major: bool

    @property
    def inner_time_major(self) -> bool:
        """Whether the engine sees time-major inputs: given so, or swapped."""
        return self.swap or self.time_major


def plan(cell: Cell, options: SequenceOptions, xs, where: str) -> tuple[Array, Plan]:
    """Checks ``xs``' rank, lengths and resets against it, and decides the layout: once per call.

    Returns ``(xs as an array, the plan)``. The feature width is checked by
    :func:`run`, against each layer's params.
    """
    grad, lengths, reverse, time_major, resets, checkpoint, scan = options
    parallel = _parallel(cell, grad, checkpoint, scan, where)
    layout = "(time, batch, input_size)" if time_major else "(batch, time, input_size)"
    xs = _checks.inputs(xs, 3, layout, None, "xs", where)
    # Batch-major inputs stay as they are for the manual path's per-step scan
    # (_scans.step_scan reads and writes them in place). Everything else works
    # time-major on transposed copies: under autodiff the in-place loop is
    # slower than the transposes (benchmarks/RESULTS.md).
    swap = not time_major and (checkpoint is not None or parallel or grad == "autodiff")
    steps, batch = xs.shape[:2] if time_major else xs.shape[1::-1]
    other = steps if time_major else None  # xs' first axis, which a time_major=False hint compares with
    valid, bad_rows = _validity(lengths, steps, batch, where, other)
    resets = _checks.step_mask(resets, steps, batch, "resets", where)
    return xs, Plan(parallel, swap, steps, batch, valid, bad_rows, resets, time_major)


def run(cell: Cell, params, input_size: int | None, sizes: tuple[int, ...], xs, carry, options: SequenceOptions,
        plan: Plan, where: str):
    """One layer and direction of :func:`unroll`, on params, options and a :class:`Plan` already checked.

    The one runner behind :func:`unroll`, :func:`jaxrnn.bidirectional` and
    :meth:`jaxrnn.Stack.apply`, which check everything once per call and pass
    it down. ``input_size`` None: ``xs`` are a lower layer's outputs, whose
    width the stack's params check already matched.
    """
    grad, _, reverse, time_major, _, checkpoint, _ = options
    parallel, swap, steps, batch, valid, bad_rows, resets, _ = plan
    hidden = sizes[0]
    if input_size is not None:
        _checks.input_width(xs, input_size, "xs", where, cell)
    if swap:
        xs = jnp.swapaxes(xs, 0, 1)
    inner_time_major = plan.inner_time_major
    if carry is None:
        carry = zero_carry(cell, batch, sizes, jnp.result_type(xs, *jax.tree.leaves(params)))
    carry = _checks.carry(cell, carry, batch, sizes, where, steps=steps if time_major else None)
    params, carry, xs = _checks.promote(params, carry, xs)

    if steps == 0:
        return carry, jnp.zeros((0, batch, hidden) if time_major else (batch, 0, hidden), xs.dtype)
    if valid is not None:  # padding (even NaN) must not reach outputs or gradients
        xs = jnp.where((valid if inner_time_major else valid.T)[..., None], xs, 0)
    if parallel and cell.sequence is not None:
        carry, hs = cell.sequence(params, carry, xs, valid=valid, resets=resets, reverse=reverse, grad=grad)
    elif checkpoint is not None:
        padded = _scans.pad_to_chunks(checkpoint, xs, valid, resets)
        if grad == "manual":
            carry, hs = _bptt.manual_unroll(cell, reverse, checkpoint)(params, carry, *padded)
        else:
            carry, hs = _scans.checkpointed_scan(cell, params, carry, *padded, reverse, checkpoint)
        hs = hs[:steps]
    elif grad == "manual":
        carry, hs = _bptt.manual_unroll(cell, reverse, None, inner_time_major)(params, carry, xs, valid, resets)
    else:
        carry, hs = _scans.step_scan(cell, params, carry, xs, carry, valid, resets, reverse)
    if bad_rows is not None:
        carry = jax.tree.map(lambda a: jnp.where(bad_rows[:, None], jnp.nan, a), carry)
        hs = jnp.where((bad_rows[:, None] if inner_time_major else bad_rows[:, None, None]), jnp.nan, hs)
    return carry, (jnp.swapaxes(hs, 0, 1) if swap else hs)


def _validity(lengths, steps: int, batch: int, where: str, other: int | None = None):
    """``(valid (T, B) bool, bad_rows)`` from lengths; both None without lengths.

    Concrete lengths outside 0..T raise here. Traced ones cannot be read at
    trace time, so ``bad_rows`` (B,) marks the rows to poison with NaN.
    """
    if lengths is None:
        return None, None
    lengths = _checks.lengths(lengths, batch, where, steps=other)
    try:
        concrete = np.asarray(lengths)
    except jax.errors.TracerArrayConversionError:
        bad_rows = (lengths < 0) | (lengths > steps)
    else:
        outside = np.flatnonzero((concrete < 0) | (concrete > steps))
        if outside.size:
            raise ValueError(
                f"{where}: lengths must lie in 0..T = 0..{steps}; rows {outside.tolist()[:8]} have "
                f"{concrete[outside].tolist()[:8]}. Clip them, or pad xs to the longest sequence."
            )
        bad_rows = None
    return jnp.arange(steps)[:, None] < lengths[None, :], bad_rows
