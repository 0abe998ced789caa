"""The engine's side of the cell contract: what each of a cell's functions must return, checked at trace time.

Every check reads shapes only, while JAX traces, so it costs nothing when the
compiled code runs. A broken cell gets a ``TypeError`` (a wrong kind of
value) or ``ValueError`` (a wrong shape) naming the cell, the function that
broke the contract, what was expected and what came back, instead of an
error from deep inside the engine's scans.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np


def describe(value: Any) -> str:
    """A short account of ``value`` for a message: its kind, and its shapes."""
    if value is None:
        return "None"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"an array of shape {tuple(value.shape)} ({value.dtype})"
    if isinstance(value, tuple):
        inner = ", ".join(describe(v) if not hasattr(v, "shape") else str(tuple(v.shape)) for v in value)
        name = type(value).__name__ if hasattr(value, "_fields") else "a tuple"
        return f"{name} of {len(value)} ({inner})"
    return f"{type(value).__name__} {value!r}"


def field_names(cell) -> tuple[str, ...]:
    """The carry's field names: ``("h",)`` for a bare array."""
    return ("h",) if cell.carry_type is None else cell.carry_type._fields


def _as_fields(cell, value: Any) -> tuple | None:
    """``value``'s carry fields as a tuple, or None if it is not shaped as the cell's carry."""
    if cell.carry_type is None:
        return None if isinstance(value, (tuple, list)) or not hasattr(value, "shape") else (value,)
    if not isinstance(value, (tuple, list)) or len(value) != len(cell.carry_type._fields):
        return None
    return tuple(value)


def tuple_of(cell, function: str, value: Any, names: tuple[str, ...], hint: str = "") -> tuple:
    """``value`` as a tuple of ``len(names)``: what ``function`` of ``cell`` must return."""
    if not isinstance(value, tuple) or len(value) != len(names):
        raise TypeError(
            f"{cell!r}: {function} must return a tuple ({', '.join(names)}); got {describe(value)}.{hint}"
        )
    return value


def carry_like(cell, function: str, what: str, value: Any, reference: Any, *, allow_none: bool = False):
    """``value`` must be shaped as the carry ``reference``: the same fields, each of the same shape.

    With ``allow_none``, a field may be None (a zero cotangent), and comes back as zeros.
    """
    names = field_names(cell)
    expected = ", ".join(f"{n} {tuple(r.shape)}" for n, r in zip(names, _as_fields(cell, reference) or ()))
    fields = (None,) * len(names) if allow_none and value is None else _as_fields(cell, value)
    kind = "one array" if cell.carry_type is None else f"{cell.carry_type.__name__} ({', '.join(names)})"
    if fields is None:
        raise TypeError(
            f"{cell!r}: {function} must return {what} as the carry is, {kind}: {expected}; got {describe(value)}."
        )
    out = []
    for name, field, ref in zip(names, fields, _as_fields(cell, reference) or ()):
        if field is None and allow_none:
            field = jnp.zeros_like(ref)
        if not hasattr(field, "shape") or tuple(field.shape) != tuple(ref.shape):
            raise ValueError(
                f"{cell!r}: {function} must return {what} shaped as the carry ({expected}); its field {name} is "
                f"{describe(field)}."
            )
        out.append(field)
    return out[0] if cell.carry_type is None else cell.carry_type(*out)


def array_of(cell, function: str, what: str, value: Any, shape: tuple[int, ...], rule: str) -> Any:
    """``value`` must be an array of ``shape``; ``rule`` says where that shape comes from."""
    if not hasattr(value, "shape") or tuple(value.shape) != tuple(shape):
        raise ValueError(f"{cell!r}: {function} must return {what} of shape {tuple(shape)} ({rule}); "
                         f"got {describe(value)}.")
    return value


def recurrence(cell, out: Any, carry: Any, gx: Any):
    """Checks ``recurrence(params, carry, gx)``'s result; returns ``(carry, h, residual)``."""
    new, h, residual = tuple_of(
        cell, "recurrence", out, ("carry", "h", "residual"),
        " Return () as the residual when the backward pass needs nothing from the step.",
    )
    function = cell.step_function  # a gated cell's forward returns this carry and residual
    new = carry_like(cell, function, "the new carry", new, carry)
    first = new if cell.carry_type is None else new[0]
    array_of(cell, "recurrence", "the output h", h, first.shape, "the output is the new carry's first field")
    buffered_residual(cell, function, residual, gx.shape)
    return new, h, residual


def buffered_residual(cell, function: str, residual: Any, shape: tuple[int, ...]) -> None:
    """With ``residual_in_buffer``, ``residual`` must be a tuple whose first field has ``gx``'s ``shape``."""
    if not cell.residual_in_buffer:
        return
    if not isinstance(residual, tuple) or not residual:
        raise TypeError(
            f"{cell!r} declares residual_in_buffer, so {function} must return a tuple or NamedTuple residual whose "
            f"first field is {tuple(shape)} like gx; got {describe(residual)}."
        )
    array_of(cell, function, "the residual's first field", residual[0], shape,
             "the cell declares residual_in_buffer: it is stored in gx's buffer")


def step_vjp(cell, out: Any, carry: Any, gx_shape: tuple[int, ...]):
    """Checks ``bptt.step_vjp``'s result; returns ``(d_carry_prev, d_gx, stash)``."""
    d_prev, d_gx, stash = tuple_of(cell, "bptt.step_vjp", out, ("d_carry_prev", "d_gx", "stash"))
    d_prev = carry_like(cell, "bptt.step_vjp", "d_carry_prev", d_prev, carry)
    array_of(cell, "bptt.step_vjp", "d_gx", d_gx, gx_shape, "gx's shape, (batch, P)")
    return d_prev, d_gx, stash


def params_like(cell, function: str, value: Any, params: Any) -> Any:
    """``value`` must have the params' fields, each None or of its param's shape; None alone means all zero."""
    if value is None:
        return value
    fields = params._fields
    if not isinstance(value, tuple) or len(value) != len(fields):
        raise TypeError(
            f"{cell!r}: {function} must return params-shaped cotangents, a {type(params).__name__} with None for "
            f"fields it does not touch (jaxrnn.cotangents(params, name=...)); got {describe(value)}."
        )
    for name, d, p in zip(fields, value, params):
        if d is not None and tuple(np.shape(d)) != tuple(p.shape):
            raise ValueError(f"{cell!r}: {function} returned the cotangent of params.{name} with shape "
                             f"{tuple(np.shape(d))}; params.{name} is {tuple(p.shape)}.")
    return value


def widths(cell, value: Any, function: str, where: str) -> tuple[int, ...]:
    """One width per carry field, from ``function``'s one int for all fields or a tuple of them."""
    names = field_names(cell)
    got = tuple(value) if isinstance(value, (tuple, list)) else (value,) * len(names)
    if len(got) != len(names) or not all(isinstance(w, (int, np.integer)) and not isinstance(w, bool) for w in got):
        raise TypeError(
            f"{where}: {cell!r}'s {function} must give the carry's widths as one int for every field, or a tuple of "
            f"{len(names)} ints, one per field {list(names)}; got {describe(value)}."
        )
    return tuple(int(w) for w in got)


def sizes(cell, out: Any, where: str) -> tuple[int, tuple[int, ...]]:
    """Checks ``check_shapes``' result; returns ``(input_size, one width per carry field)``."""
    if not isinstance(out, tuple) or len(out) != 2 or not isinstance(out[0], (int, np.integer)):
        raise TypeError(f"{where}: {cell!r}'s check_shapes must return (input_size, sizes), input_size an int; "
                        f"got {describe(out)}.")
    return int(out[0]), widths(cell, out[1], "check_shapes", where)
