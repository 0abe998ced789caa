"""Input checks. Each runs at trace time, on shapes and dtypes only.

Every message says the rule, what was received and how to fix it. Shapes
raise ``ValueError``; dtypes and wrong kinds of object raise ``TypeError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxrnn import _contract
from jaxrnn._arguments import positive_int as positive_int  # checked here too: _checks.positive_int
from jaxrnn._precision import accumulation_dtype


class CellMismatchError(TypeError, ValueError):
    """Params (or a carry) of another cell type: a wrong kind of object, and a wrong value.

    Both a ``TypeError`` and a ``ValueError``, so either ``except`` catches it.
    """


class Site(str):
    """A ``where`` (the prefix of messages) for a caller that phrases the fixes its own way.

    The framework modules run :meth:`jaxrnn.Stack.apply` with one, so its
    messages name the module, e.g. ``jaxrnn.nnx.RNN('lstm', 8, 32)``, and the
    fixes are the module's arguments rather than the functional API's. A plain
    ``str`` gets the functional API's phrasing (see :func:`fix`).

    Attributes:
        fix_input_size: the fix for inputs of ``{n}`` features.
        fix_time_major: the fix for batch-major inputs.
        fix_carry: how to make a zero carry of ``{batch}`` rows.
        unbatched: the fix for one unbatched sequence, or None for
            :func:`inputs`' own (add a batch axis).
    """

    fix_input_size: str
    fix_time_major: str
    fix_carry: str
    unbatched: str | None

    def __new__(cls, where: str, *, fix_input_size: str, fix_time_major: str, fix_carry: str,
                unbatched: str | None = None):
        site = super().__new__(cls, where)
        site.fix_input_size, site.fix_time_major, site.fix_carry = fix_input_size, fix_time_major, fix_carry
        site.unbatched = unbatched
        return site

    def __getnewargs_ex__(self):  # copy, deepcopy and pickle rebuild a str subclass through __new__
        fixes = {"fix_input_size": self.fix_input_size, "fix_time_major": self.fix_time_major,
                 "fix_carry": self.fix_carry, "unbatched": self.unbatched}
        return (str(self),), fixes


_FIXES = {
    "fix_input_size": "init the params with input_size={n}",
    "fix_time_major": "pass time_major=False",
    "fix_carry": "make it with {cell}.initial_carry({batch}, {hidden})",
}


def fix(where: str, kind: str, **values: Any) -> str:
    """The fix of ``kind`` (a :class:`Site` attribute) as ``where``'s caller phrases it, filled with ``values``."""
    return getattr(where, kind, _FIXES[kind]).format(**values)


def python_bool(value: Any, name: str, where: str) -> bool:
    """``value`` as a bool: a Python (or numpy) bool, as a flag that picks the computation must be."""
    if not isinstance(value, (bool, np.bool_)):
        if isinstance(value, jax.core.Tracer):
            got = "a traced value (a jax.jit argument)"
        else:
            got = f"{value!r} of type {type(value).__name__}"
        raise TypeError(
            f"{where}: {name} must be a Python bool (it picks the computation, so it is static under jit); "
            f"got {got}. Pass {name}=True or {name}=False."
        )
    return bool(value)


def floating_dtype(dtype: Any, where: str, name: str = "dtype") -> np.dtype:
    """``dtype`` (the argument ``name``) as a numpy dtype, which must be floating point."""
    try:
        dtype = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"{where}: {name} must be a floating dtype such as jnp.float32; got {dtype!r}.") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{where}: {name} must be a floating dtype such as jnp.float32; got {dtype}.")
    return dtype


def floating_array(value: Any, name: str, where: str) -> Array:
    """``value`` as a JAX array, which must have a floating dtype."""
    try:
        array = jnp.asarray(value)
    except TypeError:
        raise TypeError(f"{where}: {name} must be an array; got {type(value).__name__}.") from None
    if not jnp.issubdtype(array.dtype, jnp.floating):
        tokens = "" if name.startswith("params") else " (embed integer token ids first)"
        raise TypeError(
            f"{where}: {name} must have a floating dtype; got {array.dtype}. "
            f"Cast it, e.g. {name}.astype(jnp.float32){tokens}."
        )
    return array


def params(cell, params: Any, where: str) -> tuple[Any, int, tuple[int, ...]]:
    """Checks ``params`` against ``cell``; returns ``(params, input_size, hidden_size)``.

    Accepts the cell's own params NamedTuple, or a mapping with the same keys
    (as a checkpoint may restore them).
    """
    params_type = cell.params_type
    fields = params_type._fields
    if isinstance(params, Mapping):
        if set(params) != set(fields):
            torch_like = any(str(key).startswith("weight_ih") for key in params)
            fix = (
                f"It looks like a torch state dict: convert it with jaxrnn.interop.from_torch({cell!r}, state_dict)."
                if torch_like
                else f"Make them with {cell!r}.init(key, input_size, hidden_size)."
            )
            raise ValueError(
                f"{where}: {cell!r} params need exactly the keys {list(fields)}; got {sorted(map(str, params))}. {fix}"
            )
        params = params_type(**params)
    elif not isinstance(params, params_type):
        kind = type(params).__name__
        other_cell = hasattr(params, "_fields")  # a NamedTuple: another cell's params
        hint = " (params of another cell type)" if other_cell else ""
        raise (CellMismatchError if other_cell else TypeError)(
            f"{where}: {cell!r} needs {params_type.__name__}; got {kind}{hint}. "
            f"Make them with {cell!r}.init(key, input_size, hidden_size), or use the cell they belong to."
        )
    for name, value in zip(fields, params):
        if value is None:
            raise TypeError(
                f"{where}: params.{name} is None; {cell!r} needs an array in every field of {params_type.__name__} "
                f"{list(fields)}. Make them with {cell!r}.init(key, input_size, hidden_size)."
            )
    arrays = {name: floating_array(value, f"params.{name}", where) for name, value in zip(fields, params)}
    params = params_type(**arrays)
    return (params, *_contract.sizes(cell, cell.check_shapes(params, where), where))


def carry(cell, carry: Any, batch: int, sizes: tuple[int, ...], where: str, *, steps: int | None = None):
    """Checks a carry of ``(batch, size)`` arrays, one size per field; returns it as the cell's carry type."""
    carry_type = cell.carry_type
    if carry_type is None:
        if isinstance(carry, (tuple, list)):
            raise TypeError(
                f"{where}: {cell!r} carries one array h of shape (batch, hidden); got a "
                f"{type(carry).__name__} of {len(carry)}. Make one with "
                f"{cell!r}.initial_carry(batch_size, hidden_size)."
            )
        names, values = ("h",), (carry,)
    else:
        names = carry_type._fields
        shapes = ("each (batch, hidden)" if len(set(sizes)) == 1
                  else ", ".join(f"{name} (batch, {size})" for name, size in zip(names, sizes)))
        if not isinstance(carry, (tuple, list)) or len(carry) != len(names):
            if isinstance(carry, (tuple, list)):
                got = f"a {type(carry).__name__} of {len(carry)}"
            else:
                got = f"a single array of shape {jnp.shape(carry)}"
            raise TypeError(
                f"{where}: {cell!r} carries the tuple ({', '.join(names)}), {shapes}; got {got}. "
                f"Make one with {cell!r}.initial_carry(batch_size, hidden_size)."
            )
        values = tuple(carry)
    arrays = []
    for name, value, size in zip(names, values, sizes):
        array = floating_array(value, f"carry.{name}", where)
        if array.shape != (batch, size):
            hint = layout_hint(array.shape[0] if array.ndim else None, batch, steps, "carry", where)
            make = _make_carry(cell, batch, sizes, where)
            raise ValueError(
                f"{where}: carry.{name} must be (batch, hidden) = ({batch}, {size}), from the inputs' "
                f"batch size and the params' hidden size; got {array.shape}. Pass carry=None for zeros, "
                f"or {make}.{hint}"
            )
        arrays.append(array)
    return arrays[0] if carry_type is None else carry_type(*arrays)


def _make_carry(cell, batch: int, sizes: tuple[int, ...], where: str) -> str:
    """How to make a zero carry of these widths: ``initial_carry`` where it makes them, else the shapes."""
    if len(set(sizes)) == 1 or cell.sizes(sizes[-1]) == sizes:
        return fix(where, "fix_carry", cell=repr(cell), batch=batch, hidden=sizes[-1])
    names = _contract.field_names(cell)
    return "make its fields zeros of shapes " + ", ".join(f"{n} ({batch}, {w})" for n, w in zip(names, sizes))


def inputs(value: Any, rank: int, layout: str, input_size: int | None, name: str, where: str, cell=None) -> Array:
    """Checks inputs of ``rank`` dims laid out as ``layout``, features last (``input_size`` of them, if given).

    ``layout`` names the axes, e.g. ``"(time, batch, input_size)"``; it also
    says where a single sequence's missing batch axis goes.
    """
    array = floating_array(value, name, where)
    if array.ndim != rank:
        hint = ""
        if rank == 3 and array.ndim == 2:
            unbatched = getattr(where, "unbatched", None)
            axis = f"{name}[:, None, :]" if layout.startswith("(time") else f"{name}[None]"
            hint = " " + (unbatched or f"For a single sequence add a batch axis: {axis}.")
        raise ValueError(f"{where}: {name} must have rank {rank}, shaped {layout}; got shape {array.shape}.{hint}")
    if input_size is not None:
        input_width(array, input_size, name, where, cell)
    return array


def input_width(array: Array, input_size: int, name: str, where: str, cell=None) -> None:
    """``array``'s last axis must hold ``input_size`` features, the params' input size."""
    if array.shape[-1] != input_size:
        raise ValueError(
            f"{where}: {name} has {array.shape[-1]} feature{'s' * (array.shape[-1] != 1)} on its last axis, "
            f"but the params expect input_size {input_size}{_input_size_source(cell, input_size)}. "
            f"Pass inputs with {input_size} "
            f"features, or {fix(where, 'fix_input_size', n=array.shape[-1])}."
        )


def _input_size_source(cell, input_size: int) -> str:
    """Where the params' input size is read: ``w_ih``'s rows, for the cells that have one."""
    if cell is None or "w_ih" in cell.params_type._fields:
        return f" (params.w_ih is ({input_size}, ...))"
    return f" (read off the params by {cell!r}'s check_shapes)"


def promote(params, carry, x):
    """Casts to the compute dtype and the state dtype.

    The compute dtype D is the common dtype of ``params`` and ``x`` (float32
    with float64 gives float64); both are cast to it. The carry is the
    running state: it is cast to its own common dtype with D and float32, so
    16-bit compute keeps a float32 state and no carry is ever downcast.
    """
    dtype = jnp.result_type(*jax.tree.leaves(params), x)
    state = jnp.result_type(*jax.tree.leaves(carry), accumulation_dtype(dtype))
    params, x = jax.tree.map(lambda a: a.astype(dtype), (params, x))
    return params, jax.tree.map(lambda a: a.astype(state), carry), x


def layout_hint(rows: int | None, batch: int, steps: int | None, name: str, where: str = "") -> str:
    """A suggestion of ``time_major=False`` when ``name``'s rows match xs' time axis, not its batch axis."""
    if steps is None or rows is None or rows == batch or rows != steps:
        return ""
    return (
        f" The {name} has {rows} rows, the size of xs' first axis, which time-major xs (T, batch, input) "
        f"uses for time: if xs is (batch, T, input), {fix(where, 'fix_time_major')}."
    )


def prng_key(key: Any, where: str, example: str) -> None:
    """A PRNG key: typed (``jax.random.key``) or raw uint32 (``jax.random.PRNGKey``)."""
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == jnp.uint32 and getattr(key, "ndim", 0) == 1
    if not (typed or raw):
        shown = f"an array of dtype {dtype}" if dtype is not None else f"{key!r} of type {type(key).__name__}"
        raise TypeError(
            f"{where}: key must be a PRNG key; got {shown}. "
            f"Make one with jax.random.key(seed), e.g. {example}."
        )


def step_arguments(cell, params_, carry_, x, where: str):
    """Checks and promotes the arguments of ``cell.step``."""
    params_, input_size, sizes = params(cell, params_, where)
    x = inputs(x, 2, "(batch, input_size)", input_size, "x", where, cell)
    carry_ = carry(cell, carry_, x.shape[0], sizes, where)
    return promote(params_, carry_, x)


def lengths(value: Any, batch: int, where: str, *, steps: int | None = None) -> Array:
    """Sequence lengths: an integer (batch,) array (values are checked by the caller)."""
    array = jnp.asarray(value)
    if not jnp.issubdtype(array.dtype, jnp.integer):
        raise TypeError(
            f"{where}: lengths must be an integer array of shape (batch,); got dtype {array.dtype}. "
            f"Cast it, e.g. lengths.astype(jnp.int32)."
        )
    if array.shape != (batch,):
        raise ValueError(
            f"{where}: lengths must have shape (batch,) = ({batch},), one length per row of xs; got {array.shape}."
            + layout_hint(array.shape[0] if array.ndim == 1 else None, batch, steps, "lengths array", where)
        )
    return array


def step_mask(value: Any, steps: int, batch: int, name: str, where: str) -> Array | None:
    """A per-step, per-row bool mask of shape (T, batch), or None."""
    if value is None:
        return None
    array = jnp.asarray(value)
    if array.dtype != jnp.bool_:
        raise TypeError(
            f"{where}: {name} must be a bool array of shape (T, batch); got dtype {array.dtype}. "
            f"Convert it, e.g. {name} != 0."
        )
    if array.shape != (steps, batch):
        raise ValueError(
            f"{where}: {name} must have shape (T, batch) = ({steps}, {batch}) (time first, whatever "
            f"time_major says); got {array.shape}."
        )
    return array
