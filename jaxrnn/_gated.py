"""The gated tier: a cell whose step is two linear parts and elementwise maths.

A gated cell with G gates and state size H computes, at every step,

    gx = x W_ih + b_ih            (B, G·H), the input part
    gh = h W_hh + b_hh            (B, G·H), the recurrent part (dense, or block-diagonal heads)
    carry', residual = forward(gx, gh, carry)

and its hand-written backward pass is the reverse of ``forward`` alone:

    d_gx, d_gh, d_carry = backward(residual, d_carry')

The engine owns everything else: the weights and their layout (heads
included, :mod:`jaxrnn._heads`), their init, the shape checks, the hoisted
input projection, the recurrent product and its transpose, every weight and
bias cotangent, the output's dtype and mixed precision. The simple RNN, LSTM,
GRU and sLSTM are gated cells (:mod:`jaxrnn._cells`, :mod:`jaxrnn._slstm`).

Weights are stored ``(in, out)``, so every product is ``rows @ W`` with a
contiguous ``(batch, G·H)`` result, gate blocks of H along the output axis.
The biases are added inside each step's elementwise work, which XLA fuses with
the cell's own, rather than in a pass over the whole (T·B, G·H) projection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar, NamedTuple, cast

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _checks, _contract, _heads
from jaxrnn._precision import accumulation_dtype, matmul
from jaxrnn._protocol import BPTT, Cell, cotangents, with_first


class GatedParams(NamedTuple):
    """The params of every gated cell; G is the number of gates, H the state size.

    Attributes:
        w_ih: input-to-gates weights, ``(input_size, G·H)``.
        w_hh: hidden-to-gates weights, ``(H, G·H)``; with K heads its diagonal
            blocks, ``(K, H/K, G·H/K)`` (see :func:`jaxrnn.block_diagonal`).
        b_ih: input-side bias, ``(G·H,)``.
        b_hh: hidden-side bias, ``(G·H,)``. Kept apart from ``b_ih`` as in
            torch, so weights convert both ways exactly; a cell that scales
            ``gh`` (the GRU's ``r ⊙ (W_hn h + b_hn)``) tells them apart.
    """

    w_ih: Array
    w_hh: Array
    b_ih: Array
    b_hh: Array


# --------------------------------------------------------------------------
# Init.


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
    """(G·H,) zeros, with block ``unit_block`` (e.g. the LSTM's forget gate) at 1."""
    b = jnp.zeros((num_gates, hidden_size), dtype)
    return (b if unit_block is None else b.at[unit_block].set(1)).reshape(-1)


def recurrent_blocks(key, num_gates: int, hidden_size: int, num_heads: int, dtype) -> Array:
    """``w_hh``: an orthogonal block per gate and head; (H, G·H) for one head, else (K, d, G·d)."""
    if num_heads == 1:
        return orthogonal_blocks(key, num_gates, hidden_size, hidden_size, dtype)
    size = hidden_size // num_heads
    return jax.vmap(lambda k: orthogonal_blocks(k, num_gates, size, size, dtype))(jax.random.split(key, num_heads))


# --------------------------------------------------------------------------
# The linear parts and their cotangents. Shapes: x (N, X), gx (N, G·H).


def linear_projection(params, x: Array) -> Array:
    """``x W_ih`` in the params' dtype, summed in at least float32: the input's share of the pre-activations."""
    return matmul(x, params.w_ih).astype(params.w_ih.dtype)


def linear_projection_vjp(params, x: Array, d_gx: Array):
    """``(dW_ih = xᵀ d_gx, dx = d_gx W_ihᵀ)`` over all N rows; 16-bit operands, float32 sums."""
    return cotangents(params, w_ih=matmul(x.T, d_gx)), matmul(d_gx, params.w_ih.T)


def column_sum(dz: Array) -> Array:
    """``Σ dz`` over rows, a bias's cotangent: float32 sums for 16-bit ``dz``."""
    return jnp.sum(dz, axis=0, dtype=accumulation_dtype(dz.dtype))


# Up to this many columns of h_prev, the bias's sum rides on the weight product (see weights_and_bias).
FOLDED_BIAS_MAX_WIDTH = 512


def weights_and_bias(h_prev: Array, dz: Array, w_hh: Array | None = None) -> tuple[Array, Array]:
    """``(h_prevᵀ dz, Σ dz)`` over rows: the weight cotangent and the bias's.

    The weight cotangent is shaped as ``w_hh``: per head if it has heads.
    Without heads, and up to :data:`FOLDED_BIAS_MAX_WIDTH` columns of
    ``h_prev``, both come from one product, ``[h_prev, 1]ᵀ dz``, so ``dz``'s
    N rows are read once, at the cost of an (N, H + 1) copy of ``h_prev``.
    At H = 1024 the folded product measured slower for the LSTM
    (benchmarks/RESULTS.md, "The bias's sum").
    """
    if w_hh is not None and w_hh.ndim != 2:
        return _heads.weight_grad(h_prev, dz, w_hh), column_sum(dz)
    if h_prev.shape[-1] > FOLDED_BIAS_MAX_WIDTH:
        return matmul(h_prev.T, dz), column_sum(dz)
    both = matmul(jnp.concatenate([h_prev, jnp.ones((h_prev.shape[0], 1), h_prev.dtype)], axis=-1).T, dz)
    return both[:-1], both[-1]


# --------------------------------------------------------------------------
# The gated cell.


class _PreviousOutput:
    """Where a residual held the ``h`` entering the step: saved as nothing, and rebuilt from the outputs.

    A pytree node without leaves, so it passes through the engine's scans
    and buffers at no cost; the backward step puts ``h_prev`` back in its place.
    """


jax.tree_util.register_pytree_node(_PreviousOutput, lambda node: ((), None), lambda aux, children: _PreviousOutput())


def _is_previous(node) -> bool:
    return isinstance(node, _PreviousOutput)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True, eq=False, init=False, repr=False)
class GatedCell(Cell):
    """A cell of the gated tier: you write the elementwise maths, the engine does the rest.

    At every step, for a state of size H and G gates (shapes for B rows)::

        gx = x W_ih + b_ih                        # (B, G·H), gate blocks of H
        gh = h W_hh + b_hh                        # (B, G·H); h is the carry's first field
        carry', residual = forward(gx, gh, carry)
        d_gx, d_gh, d_carry = backward(residual, d_carry')

    You write:

    1. ``num_gates``: G, the blocks of H in ``gx`` and ``gh``.
    2. ``forward(gx, gh, carry) -> (carry', residual)``: the new carry (the
       output ``h'`` is its first field, or the carry itself if it is one
       array) and what the backward pass needs (any pytree of (B, ·) arrays).
    3. ``backward(residual, d_carry') -> (d_gx, d_gh, d_carry)``: the
       cotangents of ``forward``'s three inputs, from that of its new carry.
       ``d_carry'`` already includes the output's cotangent. Return ``None`` as
       ``d_gh`` when it equals ``d_gx`` (``forward`` reads only ``gx + gh``),
       or a tuple of G blocks (B, H) with ``None`` for each block that equals
       ``d_gx``'s (the GRU's ``(None, None, dn ⊙ r)``), so the engine keeps
       only the others for ``dW_hh``; and ``None`` for a carry field with a
       zero cotangent. ``d_carry`` is the pointwise part only: the engine adds
       the path through ``h W_hh``.
    4. ``carry_type``: the carry's NamedTuple (every field (B, H), the output
       first), or None for one array.

    Everything ``forward`` and ``backward`` receive is in one dtype, the
    carry's (float32 for 16-bit params), so they need no casts. A residual
    may hold the ``h`` that ``forward`` received, as it came: the engine saves
    nothing for it and gives it back from the outputs. Optional:
    ``bias_init(hidden_size, num_heads, dtype) -> b_ih (G·H,)`` (zeros
    otherwise; ``b_hh`` starts at zero), and ``residual_in_buffer=True`` when
    the residual is a tuple whose first field is (B, G·H), such as the
    activated gates: the engine then keeps it in the input projection's
    buffer instead of a buffer of its own. Without ``backward`` the cell takes
    ``grad="autodiff"`` only.

    The engine supplies the params (:class:`GatedParams`), ``init(key,
    input_size, hidden_size, dtype=..., num_heads=1)`` (Glorot-uniform
    ``w_ih`` blocks, orthogonal ``w_hh`` blocks per gate and head), the shape
    checks, every weight and bias gradient, and the rest of :class:`jaxrnn.Cell`.
    Check a new cell with :func:`jaxrnn.testing.check_cell`.

    Args:
        name: the public name, e.g. ``"cifg_lstm"``.
        num_gates: G ≥ 1.
        forward: the pointwise forward step (above).
        backward: its reverse (above), or None.
        carry_type: the carry's NamedTuple, or None for one array.
        bias_init: the initial ``b_ih``, or None for zeros.
        residual_in_buffer: the residual's first field shares the projection's buffer.
        params_type: a NamedTuple with :class:`GatedParams`' four fields, for
            cells that name their params (the built-in cells do).
        gates: names of the G gate blocks (descriptive).
        doc: the cell's equations, shown by ``help(cell)``.

    Raises:
        TypeError, ValueError: arguments that cannot make a cell.
    """

    # The general tier's functions are made from the fields below, not passed.
    init_params: Callable[..., Any] = dataclasses.field(init=False, default=None)  # type: ignore[assignment]
    check_shapes: Callable[..., Any] = dataclasses.field(init=False, default=None)  # type: ignore[assignment]
    recurrence: Callable[..., Any] = dataclasses.field(init=False, default=None)  # type: ignore[assignment]
    project: Callable[..., Any] | None = dataclasses.field(init=False, default=None)
    bptt: BPTT | None = dataclasses.field(init=False, default=None)
    carry_sizes: Callable[..., Any] | None = dataclasses.field(init=False, default=None)
    sequence: Callable[..., Any] | None = dataclasses.field(init=False, default=None)
    num_gates: int = 1
    forward: Callable[..., Any] = None  # type: ignore[assignment]  # always given; a default for field order
    backward: Callable[..., Any] | None = None
    bias_init: Callable[..., Array] | None = None
    step_function: ClassVar[str] = "forward"

    def __init__(self, name: str, num_gates: int, forward: Callable, backward: Callable | None = None, *,
                 carry_type: type | None = None, bias_init: Callable | None = None,
                 residual_in_buffer: bool = False, params_type: type = GatedParams,
                 gates: tuple[str, ...] = (), doc: str = ""):
        where = "jaxrnn.GatedCell"
        num_gates = _checks.positive_int(num_gates, "num_gates", where)
        for label, function in (("forward", forward), ("backward", backward), ("bias_init", bias_init)):
            if function is not None and not callable(function):
                raise TypeError(f"{where}: {label} must be a function; got {type(function).__name__}.")
        if forward is None:
            raise TypeError(f"{where}: forward must be a function (gx, gh, carry) -> (carry, residual); got None.")
        if carry_type is not None and not (isinstance(carry_type, type) and hasattr(carry_type, "_fields")):
            raise TypeError(f"{where}: carry_type must be a NamedTuple class (its first field the output h), or "
                            f"None for one array; got {carry_type!r}.")
        if tuple(getattr(params_type, "_fields", ())) != GatedParams._fields:
            raise TypeError(f"{where}: params_type must be a NamedTuple with the fields {GatedParams._fields}; "
                            f"got {params_type!r}.")
        if gates and len(gates) != num_gates:
            raise ValueError(f"{where}: gates names the {num_gates} gate blocks; got {len(gates)} names {gates}.")
        super().__init__(
            name=name, params_type=params_type, carry_type=carry_type,
            init_params=partial(_init, self), check_shapes=partial(_shapes, self),
            recurrence=partial(_recurrence, self), project=linear_projection,
            bptt=None if backward is None else BPTT(partial(_step_vjp, self), partial(_param_grads, self),
                                                    linear_projection_vjp, _transposed_w_hh),
            carry_sizes=partial(_carry_sizes, self), gates=tuple(gates), doc=doc,
            residual_in_buffer=bool(residual_in_buffer),
        )
        for field, value in (("num_gates", num_gates), ("forward", forward), ("backward", backward),
                             ("bias_init", bias_init)):
            object.__setattr__(self, field, value)


def _init(cell: GatedCell, key, input_size: int, hidden_size: int, dtype, *, num_heads: int = 1):
    """Glorot-uniform ``w_ih`` blocks, orthogonal ``w_hh`` blocks per gate and head, ``bias_init``'s ``b_ih``."""
    num_heads = _heads.checked_num_heads(num_heads, hidden_size, f"{cell!r}.init")
    g = cell.num_gates
    k_ih, k_hh = jax.random.split(key)
    if cell.bias_init is None:
        b_ih = gate_biases(g, hidden_size, dtype)
    else:
        b_ih = _contract.array_of(cell, "bias_init", "b_ih", cell.bias_init(hidden_size, num_heads, dtype),
                                  (g * hidden_size,), "G·H for the cell's G gates").astype(dtype)
    return cell.params_type(
        w_ih=glorot_blocks(k_ih, g, input_size, hidden_size, dtype),
        w_hh=recurrent_blocks(k_hh, g, hidden_size, num_heads, dtype),
        b_ih=b_ih,
        b_hh=gate_biases(g, hidden_size, dtype),
    )


def _carry_sizes(cell: GatedCell, hidden_size: int, num_heads: int = 1) -> int:
    """Every carry field is (batch, H), heads or not; ``num_heads`` is taken (and checked) so init's options serve."""
    _heads.checked_num_heads(num_heads, hidden_size, f"{cell!r}.initial_carry")
    return hidden_size


def _transposed_w_hh(params) -> Array:
    # Once before the reverse scan, so each step's dz @ W_hhᵀ reads a contiguous matrix.
    return _heads.transposed(params.w_hh)


def _recurrence(cell: GatedCell, params, carry, gx: Array):
    """``gx + b_ih`` and ``h W_hh + b_hh`` in the state dtype, then the cell's ``forward``."""
    h_prev = cell.hidden(carry)
    state = h_prev.dtype
    gx = gx.astype(state) + params.b_ih.astype(state)
    gh = _heads.recurrent(h_prev, params.w_hh).astype(state) + params.b_hh.astype(state)
    out = cell.forward(gx, gh, carry)
    hint = " forward(gx, gh, carry) returns the new carry and what backward needs; () for nothing."
    if cell.carry_type is not None and isinstance(out, cell.carry_type):  # a carry alone also unpacks in two
        raise TypeError(f"{cell!r}: forward must return a tuple (carry, residual); got the carry alone, "
                        f"{_contract.describe(out)}.{hint}")
    new, residual = _contract.tuple_of(cell, "forward", out, ("carry", "residual"), hint)
    # The engine checks the carry and the residual next, naming forward (step_function).
    # The h entering the step, kept as it came (the same array), is rebuilt from the outputs, not saved.
    residual = jax.tree.map(lambda a: _PreviousOutput() if a is h_prev else a, residual)
    return new, new[0] if isinstance(new, tuple) else new, residual  # the engine's check reads a malformed carry too


def _step_vjp(cell: GatedCell, params, w_hh_t, d_carry, h, h_prev, residual):
    """The cell's ``backward``, then the path through ``h W_hh``: ``d_carry.h += d_gh W_hhᵀ``."""
    state = cell.hidden(d_carry).dtype
    def restored(a):  # h_prev where it was rebuilt; floating leaves in the state dtype (the gates were stored narrower)
        if _is_previous(a):
            return h_prev.astype(state)
        return a.astype(state) if jnp.issubdtype(a.dtype, jnp.floating) else a

    residual = jax.tree.map(restored, residual, is_leaf=_is_previous)
    d_gx, d_gh, d_prev = _contract.tuple_of(
        cell, "backward", cast(Callable, cell.backward)(residual, d_carry), ("d_gx", "d_gh", "d_carry"),
        " backward(residual, d_carry) returns the cotangents of forward's gx, gh and carry.")
    batch, hidden, gates = h.shape[0], h.shape[-1], cell.num_gates
    rule = "(batch, G·H), as gx and gh"
    _contract.array_of(cell, "backward", "d_gx", d_gx, (batch, gates * hidden), rule)
    dtype = params.w_hh.dtype  # what is stashed for dW_hh: 16-bit operands for 16-bit params
    if d_gh is None:
        full, stash = d_gx, None
    elif isinstance(d_gh, (tuple, list)):  # by gate block, None where a block is d_gx's
        if len(d_gh) != gates:
            raise TypeError(f"{cell!r}: backward must return d_gh as None, one (batch, G·H) array or a tuple of "
                            f"G = {gates} blocks; got a tuple of {len(d_gh)}.")
        blocks = jnp.split(d_gx, gates, axis=-1)
        stash = tuple(None if b is None else _contract.array_of(
            cell, "backward", f"d_gh's block {k}", b, (batch, hidden), "(batch, H), or None for d_gx's").astype(dtype)
            for k, b in enumerate(d_gh))
        full = jnp.concatenate([x if b is None else b for x, b in zip(blocks, d_gh)], axis=-1)
    else:
        full = _contract.array_of(cell, "backward", "d_gh (or None when it equals d_gx)", d_gh,
                                  (batch, gates * hidden), rule)
        stash = d_gh.astype(dtype)
    # Whether h has a pointwise path of its own (None: zero), so that no zeros are added below.
    no_pointwise = d_prev is None or (isinstance(d_prev, (tuple, list)) and len(d_prev) > 0 and d_prev[0] is None)
    d_prev = _contract.carry_like(cell, "backward", "d_carry", d_prev, d_carry, allow_none=True)
    d_h = _heads.recurrent_vjp(full, w_hh_t).astype(state)
    d_prev = with_first(d_prev, d_h if no_pointwise else cell.hidden(d_prev) + d_h)
    return d_prev, d_gx, stash


def _param_grads(cell: GatedCell, params, h_prev: Array, d_gx: Array, d_gh):
    """``dW_hh = h_prevᵀ d_gh``, ``db_hh = Σ d_gh``, ``db_ih = Σ d_gx``; ``dW_ih`` comes from the projection's VJP.

    ``d_gh`` as stashed: None (it is ``d_gx``), (N, G·H), or G blocks (N, H), None where a block is ``d_gx``'s.
    """
    if not isinstance(d_gh, tuple):
        d_w_hh, d_b_hh = weights_and_bias(h_prev, d_gx if d_gh is None else d_gh, params.w_hh)
        return cotangents(params, w_hh=d_w_hh, b_ih=d_b_hh if d_gh is None else column_sum(d_gx), b_hh=d_b_hh)
    # One product per run of consecutive blocks that are d_gx's, and one per stashed block.
    hidden = d_gx.shape[-1] // cell.num_gates
    runs: list[tuple[int, int, Array | None]] = []  # (first block, last block + 1, the stashed block or None)
    for k, block in enumerate(d_gh):
        if block is None and runs and runs[-1][2] is None:
            runs[-1] = (runs[-1][0], k + 1, None)
        else:
            runs.append((k, k + 1, block))
    sources = [d_gx[:, first * hidden: end * hidden] if block is None else block for first, end, block in runs]
    parts = [weights_and_bias(h_prev, source, params.w_hh) for source in sources]
    return cotangents(params, w_hh=jnp.concatenate([w for w, _ in parts], axis=-1), b_ih=column_sum(d_gx),
                      b_hh=jnp.concatenate([b for _, b in parts]))


def _shapes(cell: GatedCell, params, where: str) -> tuple[int, int]:
    """Shape rules of :class:`GatedParams`; returns ``(input_size, hidden)``."""
    num_gates = cell.num_gates
    w_hh = params.w_hh
    if params.w_ih.ndim == 3 and w_hh.ndim >= 3:
        raise ValueError(
            f"{where}: params.w_ih is 3-D {params.w_ih.shape} and params.w_hh {w_hh.shape}: stacked params (an "
            f"ensemble) with a leading axis; a cell takes one set, params.w_hh of shape (hidden, {num_gates}·hidden) "
            "(or (num_heads, head_size, G·head_size) with heads). Map over the stack with jax.vmap."
        )
    if w_hh.ndim == 3:  # block-diagonal: (heads, head size, G·head size)
        heads, size = w_hh.shape[:2]
        if heads <= 0 or size <= 0 or w_hh.shape != (heads, size, num_gates * size):
            raise ValueError(
                f"{where}: {cell!r} has {num_gates} gate(s), so headed params.w_hh must be (num_heads, head_size, "
                f"{num_gates}·head_size) with both > 0; got shape {w_hh.shape}. Make them with "
                f"{cell!r}.init(key, input_size, hidden_size, num_heads=K)."
            )
        hidden = heads * size
    else:
        hidden = w_hh.shape[0] if w_hh.ndim == 2 else -1
        if hidden <= 0 or w_hh.shape != (hidden, num_gates * hidden):
            raise ValueError(
                f"{where}: {cell!r} has {num_gates} gate(s), so params.w_hh must be (hidden, {num_gates}·hidden) "
                f"with hidden > 0, or (num_heads, head_size, {num_gates}·head_size) with heads; got shape "
                f"{w_hh.shape}. These may be params of another cell type."
            )
    width = num_gates * hidden
    w_ih = params.w_ih
    if w_ih.ndim != 2 or w_ih.shape[1] != width or w_ih.shape[0] == 0:
        raise ValueError(
            f"{where}: params.w_ih must be (input_size, {width}) to match w_hh {w_hh.shape}; got {w_ih.shape}."
        )
    for name in ("b_ih", "b_hh"):
        if getattr(params, name).shape != (width,):
            raise ValueError(
                f"{where}: params.{name} must have shape ({width},) to match w_hh {w_hh.shape}; "
                f"got {getattr(params, name).shape}."
            )
    return w_ih.shape[0], hidden
