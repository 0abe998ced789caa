"""The grid's comparisons: per problem, manual's gradient time over autodiff's and over the fastest peer's.

Read by both the grid's tables (:mod:`jaxrnn.bench._sections`) and its heat
map (:mod:`jaxrnn.bench._plots`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from jaxrnn.bench._jaxrnn import AUTODIFF
from jaxrnn.bench._results import impl_order
from jaxrnn.bench._suite import REFERENCE


class GridRow(NamedTuple):
    """One grid problem: manual's gradient time over autodiff's and over the fastest peer's.

    The fastest peer is the fastest of every other implementation measured on
    the problem, autodiff included. A ratio is None where it was not measured.
    """

    vs_autodiff: float | None
    vs_fastest: float | None
    fastest: str | None


def manual_over(result: dict | None) -> float | None:
    """Manual's time over ``result``'s: 1 / its median per-round ratio to manual; None if not measured."""
    ratio = None if result is None else result.get("gradient_ratio")
    return 1 / ratio if ratio is not None and math.isfinite(ratio) and ratio > 0 else None


def grid_row(by_impl: dict[str, dict]) -> GridRow:
    """The comparisons of one grid problem, from its ``{implementation: result}``."""
    if REFERENCE not in by_impl:
        return GridRow(None, None, None)
    others = {name: manual_over(by_impl[name]) for name in impl_order(by_impl) if name != REFERENCE}
    measured = {name: r for name, r in others.items() if r is not None}
    # The fastest peer has the smallest time, so the largest manual / peer; ties go to the suite's order.
    fastest = max(measured, key=lambda name: measured[name], default=None)
    return GridRow(measured.get(AUTODIFF.name), None if fastest is None else measured[fastest], fastest)


def grid_key(shape: tuple[int, int, int, int]) -> tuple[int, ...]:
    """Grid rows by T, then B (then X, H)."""
    b, x, h, t = shape
    return t, b, x, h


def short_name(name: str) -> str:
    """``"jaxrnn autodiff"`` -> ``"autodiff"``: in the grid every comparison is with jaxrnn manual."""
    return name.removeprefix("jaxrnn ")

