"""A run's results as the report reads them: indexed by problem, in the suite's order, and as numbers to print.

Shared by the tables (:mod:`jaxrnn.bench._sections`), the targets
(:mod:`jaxrnn.bench._targets`) and the plots (:mod:`jaxrnn.bench._plots`);
the run dict is described in :mod:`jaxrnn.bench._report`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from jaxrnn.bench._problem import Problem
from jaxrnn.bench._suite import CELL_NAMES, IMPLEMENTATIONS

_ORDER = [impl.name for impl in IMPLEMENTATIONS]  # columns, legends and colours follow the suite's order
MISSING = "—"


def problem_of(result: dict) -> Problem:
    """The problem a result (or a not-run entry) was measured on."""
    return Problem(result["cell"], result["batch"], result["input"], result["hidden"], result["steps"],
                   result.get("heads", 1), result.get("dtype", "float32"))


def shape_of(problem: Problem) -> tuple[int, int, int, int]:
    """``(B, X, H, T)``."""
    return problem.batch, problem.input, problem.hidden, problem.steps


def indexed(results: Iterable[dict], group: str) -> dict[Problem, dict[str, dict]]:
    """``{problem: {implementation: result}}`` for one group, by cell, then in the order measured."""
    index: dict[Problem, dict[str, dict]] = defaultdict(dict)
    for result in results:
        if result.get("group") == group:
            index[problem_of(result)][result["implementation"]] = result
    return dict(sorted(index.items(), key=lambda item: cell_rank(item[0].cell)))  # stable


def cell_rank(cell: str) -> tuple[int, str]:
    """A sort key: the suite's cells in its order, unknown ones last by name."""
    return (CELL_NAMES.index(cell) if cell in CELL_NAMES else len(CELL_NAMES), cell)


def impl_order(names: Iterable[str]) -> list[str]:
    """``names`` in the suite's order, unknown ones (from a newer suite) last."""
    names = set(names)
    return [n for n in _ORDER if n in names] + sorted(names - set(_ORDER))


def colour(name: str) -> str:
    """An implementation's matplotlib colour, the same in every figure."""
    order = _ORDER + [name]  # an unknown name still gets a stable colour of its own
    return f"C{order.index(name) % 10}"


def format_number(x: float | None) -> str:
    """About three significant digits, never in exponent form above 1: 1234, 12.3, 1.45, 0.85."""
    if x is None:
        return MISSING
    if not math.isfinite(x):
        return str(x)
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    if a == 0:
        return "0"
    return f"{x:#.2g}"  # "#" keeps the trailing zero: 0.20 next to 0.85


def format_ratio(x: float | None) -> str:
    """:func:`format_number` with a ×: 1.45×."""
    return MISSING if x is None else f"{format_number(x)}×"

