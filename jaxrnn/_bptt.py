"""Hand-written backpropagation through time, wired into ``jax.grad`` by ``jax.custom_vjp``.

For a sequence ``xs`` of shape (T, B, X) the forward pass is

1. ``buf = xs W_ih``: one (T·B, X) × (X, G·H) matmul for all steps, with no
   bias (each step adds it inside its own elementwise work, which saves a
   pass over the whole array);
2. a ``lax.scan`` of ``recurrence`` that reads step t's projection from
   ``buf[t]`` and writes that step's activated gates back over it, in place,
   stacking the rest of its named residual (the LSTM's ``c_prev``, the GRU's
   ``W_hn h + b_hn``).

The backward pass is

1. a reverse ``lax.scan`` whose carry holds the recurrent cotangents
   (``dh``, and ``dc`` for the LSTM) and ``buf``. Step t reads its gates from
   ``buf[t]``, forms the gate pre-activation cotangents ``dz`` (B, G·H), writes
   them over ``buf[t]`` and does one ``dz @ W_hhᵀ``, with ``W_hhᵀ`` transposed
   once before the loop;
2. the weight, bias and input cotangents as single large matmuls over all
   T·B rows of ``buf``: ``dW_ih = xsᵀ dz``, ``dW_hh = h_prevᵀ dz``,
   ``dxs = dz W_ihᵀ``, and the biases are column sums.

One (T, B, G·H) buffer thus holds the projection, then the gates, then their
cotangents, as their lifetimes do not overlap. Memory saved for the backward
pass, per time step, beyond ``xs`` and the outputs ``hs`` (which the caller
holds anyway): LSTM 5·B·H values (four gates and ``c_prev``), GRU 4·B·H,
simple RNN B·H (the buffer, which then holds ``dz``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn._precision import accumulation_dtype, matmul


def _weights_and_bias(h_prev: Array, dz: Array) -> tuple[Array, Array]:
    """``(h_prevᵀ dz, Σ dz)`` over rows: the hidden side's weight and bias cotangents."""
    return matmul(h_prev.T, dz), matmul(jnp.ones((1, dz.shape[0]), dz.dtype), dz)[0]


class CellBPTT(NamedTuple):
    """A cell's hand-written backward pass, as pure functions.

    A cell's ``recurrence`` returns a residual whose first field is its
    activated gates, (B, G·H): the sequence level stores those in place of the
    step's input projection, and the rest of the residual stacked over time.

    Attributes:
        step_vjp: ``(params, w_hh_t, d_carry, dh_out, h, h_prev, residual) ->
            (d_carry_prev, dgx, extra)``. One reverse step: ``d_carry`` is the
            cotangent of the carry leaving step t, ``dh_out`` that of the
            output ``h`` at step t, ``residual`` what the forward saved and
            ``w_hh_t`` the recurrent weights transposed, (G·H, H) (None for
            cells without them). ``dgx`` (B, G·H) is the cotangent of the
            input-side pre-activations, written over the step's gates;
            ``extra`` is what the hidden side needs beyond it (stacked over
            time), or None.
        hidden_grads: ``(h_prev, dgx, extra) -> (d_w_hh, d_b_hh)`` over all
            T·B rows (``h_prev`` (N, H), ``dgx`` (N, G·H)), or None for cells
            without hidden-side weights. The default is for cells whose hidden
            side sees the same pre-activations as the input side.
    """

    step_vjp: Callable[..., tuple[Any, Array, Any]]
    hidden_grads: Callable[..., tuple[Array, Array]] | None = lambda h_prev, dgx, extra: _weights_and_bias(h_prev, dgx)


class Residuals(NamedTuple):
    """What the forward pass saves for the backward pass.

    Attributes:
        xs: the inputs (T, B, X), for ``dW_ih``.
        carry0: the initial carry, whose ``h`` starts ``h_prev``.
        hs: the outputs (T, B, H); ``h_prev`` is ``hs`` shifted by one step.
        gates: each step's activated gates, (T, B, G·H): the buffer the
            backward pass overwrites with the gate cotangents.
        rest: the cell's per-step residual, stacked over time, with its first
            field (the gates, kept in ``gates``) None.
    """

    xs: Array
    carry0: Any
    hs: Array
    gates: Array
    rest: Any


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


def _lstm_step_vjp(params, w_hh_t, d_carry, dh_out, h, h_prev, res):
    dh, dc = d_carry
    i, f, g, o = jnp.split(res.gates.astype(dc.dtype), 4, axis=-1)
    d_gates, dc_prev = lstm_state_vjp(dh + dh_out, dc, i, f, g, o, res.c_prev)
    dz = jnp.concatenate(d_gates, axis=-1)  # (B, 4H): one matmul, not four
    return type(d_carry)(matmul(dz, w_hh_t), dc_prev), dz, None


def _gru_step_vjp(params, w_hh_t, dh, dh_out, h, h_prev, res):
    r, z, n = jnp.split(res.gates.astype(dh.dtype), 3, axis=-1)
    dh = dh + dh_out
    dn = dh * (1 - z) * (1 - n**2)  # at n's pre-activation
    d_r = dn * res.hn * r * (1 - r)
    d_z = dh * (h_prev - n) * z * (1 - z)
    dn_r = dn * r  # at W_hn h + b_hn, which r scales
    dgh = jnp.concatenate([d_r, d_z, dn_r], axis=-1)  # (B, 3H) at h W_hh + b_hh
    return dh * z + matmul(dgh, w_hh_t), jnp.concatenate([d_r, d_z, dn], axis=-1), dn_r


def _gru_hidden_grads(h_prev: Array, dgx: Array, dn_r: Array):
    # The hidden side sees r and z like the input side, but n scaled by r.
    hidden = dn_r.shape[-1]
    d_w, d_b = _weights_and_bias(h_prev, dgx)
    d_w_n, d_b_n = _weights_and_bias(h_prev, dn_r)
    return (
        jnp.concatenate([d_w[:, : 2 * hidden], d_w_n], axis=-1),
        jnp.concatenate([d_b[: 2 * hidden], d_b_n]),
    )


def _simple_rnn_step_vjp(params, w_hh_t, dh, dh_out, h, h_prev, res):
    dz = (dh + dh_out) * (1 - h.astype(dh.dtype) ** 2)
    return matmul(dz, w_hh_t), dz, None


SIMPLE_RNN = CellBPTT(_simple_rnn_step_vjp)
LSTM = CellBPTT(_lstm_step_vjp)
GRU = CellBPTT(_gru_step_vjp, _gru_hidden_grads)


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
    # x W_ih for all T steps in one matmul, kept in the accumulation dtype:
    # each step adds the bias and rounds, exactly as ``cell.project`` does.
    steps, batch = xs.shape[:2]
    buf = jnp.matmul(_rows(xs), params.w_ih, preferred_element_type=accumulation_dtype(params.w_ih.dtype))
    bias = cell.input_bias(params)
    dtype = params.w_ih.dtype

    def step(c, xw_t):
        return cell.recurrence(params, c, (xw_t + bias).astype(dtype))

    if not save:
        buf = buf.reshape(steps, batch, -1)
        final, (hs, _) = jax.lax.scan(masked_step(step, init), carry, (buf, valid, resets), reverse=reverse)
        return final, hs, None

    body = masked_step(step, init)

    def in_place(state, masks):  # step t's gates overwrite its projection in ``buf``
        c, buf, t = state
        c, (h, residual) = body(c, (_read(buf, t, batch), *masks))
        if residual:
            buf = _write(buf, residual[0].astype(buf.dtype), t)
            residual = type(residual)(None, *residual[1:])  # the gates live in ``buf``
        return (c, buf, t + (-1 if reverse else 1)), (h, residual)

    (final, buf, _), (hs, rest) = jax.lax.scan(
        in_place, (carry, buf, _first_step(steps, reverse)), (valid, resets), length=steps, reverse=reverse
    )
    return final, hs, Residuals(xs, carry, hs, buf, rest)


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
    xs, carry, hs, buf, rest = res
    h_prev = _previous_hidden(cell.hidden(carry), cell.hidden(init), hs, valid, resets, reverse)
    # Transposed once here, so each step's dz @ W_hhᵀ reads a contiguous (G·H, H) matrix.
    w_hh_t = getattr(params, "w_hh", None)
    w_hh_t = None if w_hh_t is None else jnp.transpose(w_hh_t)

    def body(state, inputs):
        d_carry, d_init, buf, pending, t = state
        # The previous step's dz is written here, before anything reads ``buf``,
        # so every read comes after the write and XLA updates ``buf`` in place.
        # Written after the reads of its own step, it made XLA copy all of
        # ``buf`` on every step.
        buf = _write(buf, *pending)
        dh_out, h, h_prev_t, rest_t, valid_t, reset_t = inputs
        d_new = d_carry
        if valid_t is not None:  # an invalid step passes its carry's cotangent straight through
            d_new = jax.tree.map(lambda d: jnp.where(valid_t[:, None], d, 0), d_carry)
            dh_out = jnp.where(valid_t[:, None], dh_out, 0)
        residual = type(rest_t)(_read(buf, t, batch), *rest_t[1:]) if rest_t else rest_t
        d_in, dgx, extra = cell.bptt.step_vjp(params, w_hh_t, d_new, dh_out, h, h_prev_t, residual)
        if reset_t is not None:
            d_init = jax.tree.map(lambda a, d: a + jnp.where(reset_t[:, None], d, 0), d_init, d_in)
            d_in = jax.tree.map(lambda d: jnp.where(reset_t[:, None], 0, d), d_in)
        if valid_t is not None:
            d_in = _select(valid_t, d_in, d_carry)
        return (d_in, d_init, buf, (dgx.astype(buf.dtype), t), t + (1 if reverse else -1)), extra

    d_init0 = None if resets is None else jax.tree.map(jnp.zeros_like, init)
    steps, batch = xs.shape[:2]
    first = _first_step(steps, not reverse)  # the backward pass's first step
    (d_carry, d_init, dgx, pending, _), extra = jax.lax.scan(
        body,
        (d_final, d_init0, buf, (_read(buf, first, batch), first), first),  # a first write that changes nothing
        (d_hs, hs, h_prev, rest, valid, resets),
        reverse=not reverse,
    )
    dgx = _write(dgx, *pending)  # the last step's dz
    # Sums over all T·B rows, accumulated in at least float32.
    dtype = params.w_ih.dtype
    d_w_ih, d_b_ih = _weights_and_bias(_rows(xs), dgx)
    d_params = {"w_ih": d_w_ih, "b_ih": d_b_ih}
    if cell.bptt.hidden_grads is not None:
        d_params["w_hh"], d_params["b_hh"] = cell.bptt.hidden_grads(_rows(h_prev), dgx, _rows(extra))
    d_params = {name: d.astype(dtype) for name, d in d_params.items()}
    d_xs = matmul(dgx, params.w_ih.T).astype(xs.dtype).reshape(xs.shape)
    return type(params)(**d_params), d_carry, d_xs, d_init


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
