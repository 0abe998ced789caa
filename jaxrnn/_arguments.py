"""Checks of plain Python arguments, with no JAX: shared by the library's own checks and its applications."""

from __future__ import annotations

import operator
from typing import Any


def positive_int(value: Any, name: str, where: str, *, allow_zero: bool = False) -> int:
    """``value`` as an int, which must be > 0 (or ≥ 0 with ``allow_zero``)."""
    if isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be an int; got the bool {value!r}.")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{where}: {name} must be an int; got {value!r} of type {type(value).__name__}. "
            f"Pass a whole number, e.g. {name}=int(...)."
        ) from None
    if number < 0 or (number == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        least = 0 if allow_zero else 1
        raise ValueError(f"{where}: {name} must be {bound}; got {number}. Pass {name}={least} or more.")
    return number
