"""``unroll``: a cell over a whole sequence, with a choice of backward pass."""

from __future__ import annotations

from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _bptt, _checks
from jaxrnn._cells import Cell

GRAD_MODES = ("manual", "autodiff")


def unroll(cell: Cell, params, xs: Array, carry=None, *, grad: Literal["manual", "autodiff"] = "manual"):
    """Runs ``cell`` over a sequence with ``jax.lax.scan``.

    ``hs[t], carry_{t+1} = cell.step(params, carry_t, xs[t])`` for t = 0..T-1.

    Args:
        cell: :data:`jaxrnn.simple_rnn`, :data:`jaxrnn.lstm`, :data:`jaxrnn.gru`
            or another :class:`jaxrnn.Cell`.
        params: the cell's params, from ``cell.init``.
        xs: inputs, (T, batch, input_size), floating point.
        carry: the initial state, as from ``cell.initial_carry``; None means zeros.
            The LSTM takes an :class:`LSTMCarry` or a plain ``(h, c)`` tuple.
        grad: how ``jax.grad``/``jax.vjp`` differentiate the result.
            ``"manual"``: the cell's hand-written BPTT (:mod:`jaxrnn._bptt`),
            which projects the inputs for all steps in one matmul and forms
            the weight gradients as single matmuls after the reverse scan.
            ``"autodiff"``: JAX differentiates the scan of ``cell.step``.
            Both give the same values and (to rounding) the same gradients.

    Returns:
        ``(carry, hs)``: the state after the last step, and the outputs
        (T, batch, hidden). With T = 0, ``carry`` comes back unchanged.

    Raises:
        ValueError: bad shapes or an unknown ``grad``. TypeError: integer
        inputs, a non-cell, or params or a carry of the wrong kind.
        Both are raised at trace time, before any compute.

    Mixed float dtypes are promoted to their common dtype. ``jit``, ``vmap``
    (e.g. over an ensemble of params) and reverse-mode ``grad``/``vjp``
    (to any order) compose with it. Forward mode (``jax.jvp``, ``jacfwd``)
    needs ``grad="autodiff"``: JAX cannot push tangents through a
    ``custom_vjp``.
    """
    where = "jaxrnn.unroll"
    if not isinstance(cell, Cell):
        raise TypeError(
            f"{where}: cell must be a jaxrnn.Cell such as jaxrnn.lstm; got {type(cell).__name__}. "
            "Pass the cell first: unroll(cell, params, xs)."
        )
    if grad not in GRAD_MODES:
        raise ValueError(f"{where}: grad must be one of {GRAD_MODES}; got {grad!r}.")
    if grad == "manual" and cell.bptt is None:
        raise ValueError(f"{where}: {cell!r} has no hand-written backward pass; use grad='autodiff'.")
    params, input_size, hidden = _checks.params(cell, params, where)
    xs = _checks.inputs(xs, 3, "(time, batch, input_size)", input_size, "xs", where)
    batch = xs.shape[1]
    if carry is None:
        carry = cell.initial_carry(batch, hidden, dtype=jnp.result_type(xs, *params))
    carry = _checks.carry(cell, carry, batch, hidden, where)
    params, carry, xs = _checks.promote(params, carry, xs)

    if xs.shape[0] == 0:
        return carry, jnp.zeros((0, batch, hidden), xs.dtype)
    if grad == "autodiff":
        return jax.lax.scan(partial(cell.step_unchecked, params), carry, xs)
    return _bptt.manual_unroll(cell)(params, carry, xs)
