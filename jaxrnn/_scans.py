"""The scans both grad modes share: a cell's step over a sequence, with validity, resets and checkpointed chunks.

:func:`step_scan` is the plain scan of ``cell.step``: what ``grad="autodiff"``
differentiates, and the primal of the hand-written BPTT (:mod:`jaxrnn._bptt`),
whose own scans reuse :func:`masked_step`. :func:`checkpointed_scan` is the
autodiff scan with ``jax.checkpoint`` per chunk, on inputs that
:func:`pad_to_chunks` made a whole number of chunks long.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn._protocol import like

# --------------------------------------------------------------------------
# The sequence level, the same for every cell.
#
# Per-step side inputs, each (T, B) bool or None (None costs nothing):
#   valid:  step t of row b is real (t < lengths[b]). At other steps the row
#           outputs zeros and keeps its carry.
#   resets: the row's carry is reset to ``init`` (the initial carry) before
#           step t. Invalid steps ignore resets.
# With ``reverse`` the steps run from T-1 down to 0; outputs stay in place.


def select(mask: Array, on_true, on_false):
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
        carry_in = carry if reset_t is None else select(reset_t, init, carry)
        new, h, extra = step(carry_in, input_t)
        new = like(new, carry)  # the carry keeps its dtypes, whatever the cell returns
        if valid_t is not None:
            new = select(valid_t, new, carry)
            h = jnp.where(valid_t[:, None], h, 0)
        return new, (h, extra)

    return body


def step_scan(cell, params, carry, xs: Array, init, valid, resets, reverse: bool, time_major: bool = True):
    """The plain scan of ``cell.step``: what autodiff differentiates, and the primal of the manual path.

    Projecting inside each step is faster here than the hoisted projection of
    :func:`jaxrnn._bptt.forward` when no residuals are needed (measured in
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



def pad_to_chunks(checkpoint: int | None, xs: Array, valid, resets) -> tuple[Array, Array | None, Array | None]:
    """Pads the time axis to a multiple of ``checkpoint`` with invalid steps at the end.

    Invalid steps keep the carry wherever they run, and padding at the end
    runs last forward and first in reverse, where lengths' padding already is.
    """
    steps = xs.shape[0]
    extra = 0 if checkpoint is None else -steps % checkpoint
    if extra == 0:
        return xs, valid, resets

    def pad(a, value):
        return jnp.concatenate([a, jnp.full((extra, *a.shape[1:]), value, a.dtype)])

    if valid is None:
        valid = jnp.ones(xs.shape[:2], bool)
    return pad(xs, 0), pad(valid, False), None if resets is None else pad(resets, False)


def checkpointed_scan(cell, params, carry, xs, valid, resets, reverse: bool, checkpoint: int):
    """The checkpointed scan of ``cell.step`` that JAX differentiates: ``jax.checkpoint`` per chunk."""

    def chunk(start, inputs):  # resets go back to the initial carry, not the chunk's start
        xs_c, valid_c, resets_c = inputs
        return step_scan(cell, params, start, xs_c, carry, valid_c, resets_c, reverse)

    def chunks(a):
        return None if a is None else a.reshape(-1, checkpoint, *a.shape[1:])

    final, hs = jax.lax.scan(jax.checkpoint(chunk), carry, jax.tree.map(chunks, (xs, valid, resets)), reverse=reverse)
    return final, hs.reshape(-1, *hs.shape[2:])
