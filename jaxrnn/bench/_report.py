"""The suite's report: ``results.md`` for people, ``results.json`` for programs, and PNG plots.

Everything here reads one *run* dict, the whole measurement::

    {"command", "date", "seconds"?, "machine": {cpu, cores, backend, devices, device_kind, versions, xla_flags},
     "ceiling_gflops": {"jax": float, "torch"?: float}, "ceiling": float,
     "skipped": {implementation: reason}, "results": [result, ...],
     "not_run"?: [{problem fields, "group", "implementation", "reason"}, ...],
     "self_check"?: {"shape", "tolerance", "seconds", "rows": [{"cell", "dtype", "max_rel_error", "agrees"}]}}

with results as described in :mod:`jaxrnn.bench._suite` and the self-check
as in :mod:`jaxrnn.bench._self_check`. Nothing is measured here, so a saved
``results.json`` can be re-rendered anywhere, and runs made in parts merged
(:func:`merge`).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxrnn._io import atomic_write, extra_module
from jaxrnn.bench._jaxrnn import AUTODIFF
from jaxrnn.bench._problem import Problem, shape_label
from jaxrnn.bench._suite import CELL_NAMES, IMPLEMENTATIONS, REFERENCE

# The suite's speed targets, by the shapes they name, (B, X, H, T).
SMALL_SHAPES = ((32, 64, 128, 100), (8, 32, 64, 1000))
LARGE_SHAPE = (256, 256, 512, 50)
CUDNN_ANCHORS = ("jax cuDNN", "torch cuDNN")
JAX_PEERS = ("flax", "equinox", AUTODIFF.name)

MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured in this run"
_ORDER = [impl.name for impl in IMPLEMENTATIONS]  # columns, legends and colours follow the suite's order
_MISSING = "—"


# --------------------------------------------------------------------------
# Indexing and formatting.


def _problem(result: dict) -> Problem:
    return Problem(result["cell"], result["batch"], result["input"], result["hidden"], result["steps"],
                   result.get("heads", 1), result.get("dtype", "float32"))


def _shape(problem: Problem) -> tuple[int, int, int, int]:
    return problem.batch, problem.input, problem.hidden, problem.steps


def _index(results: Iterable[dict], group: str) -> dict[Problem, dict[str, dict]]:
    """``{problem: {implementation: result}}`` for one group, by cell, then in the order measured."""
    index: dict[Problem, dict[str, dict]] = defaultdict(dict)
    for result in results:
        if result.get("group") == group:
            index[_problem(result)][result["implementation"]] = result
    return dict(sorted(index.items(), key=lambda item: _cell_rank(item[0].cell)))  # stable


def _cell_rank(cell: str) -> tuple[int, str]:
    return (CELL_NAMES.index(cell) if cell in CELL_NAMES else len(CELL_NAMES), cell)


def _impl_order(names: Iterable[str]) -> list[str]:
    """``names`` in the suite's order, unknown ones (from a newer suite) last."""
    names = set(names)
    return [n for n in _ORDER if n in names] + sorted(names - set(_ORDER))


def _colour(name: str) -> str:
    order = _ORDER + [name]  # an unknown name still gets a stable colour of its own
    return f"C{order.index(name) % 10}"


def _num(x: float | None) -> str:
    """About three significant digits, never in exponent form above 1: 1234, 12.3, 1.45, 0.85."""
    if x is None:
        return _MISSING
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


def _ratio(x: float | None) -> str:
    return _MISSING if x is None else f"{_num(x)}×"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub table, every column right-aligned: they are all numbers."""
    return ["| " + " | ".join(cells) + " |" for cells in (header, ["---:"] * len(header), *rows)]


# --------------------------------------------------------------------------
# The markdown.


def markdown(run: dict) -> str:
    """The run as a GitHub markdown report.

    Sections: the header (command, date, machine, sgemm ceiling), the
    self-check (if run), results that disagree with jaxrnn autodiff (if
    any), the targets each marked met,
    not met or not measured, then per cell the training-gradient and
    forward-pass tables of the table shapes and the sweep over T, the heads
    group, the grid (per cell a table of gradient times and of manual's time
    over autodiff's and over the fastest peer's, and a line counting the
    shapes where manual is not slower), and last the implementations that
    were skipped and the problems an implementation could not run.

    Args:
        run: the run dict (see the module docstring).

    Returns:
        The report, ending in a newline.
    """
    results = run.get("results", [])
    table, sweep = _index(results, "table"), _index(results, "sweep")
    lines = ["# jaxrnn benchmark", "", *_header(run), ""]
    lines += _self_check_section(run.get("self_check"))
    lines += _disagreements(results)
    lines += ["## Targets", ""]
    lines += [target.line() for target in _targets(run)] + [""]
    lines += [
        "Times are medians of interleaved rounds. (r×) is the median per-round ratio to "
        f"{REFERENCE}, so r > 1 means slower than {REFERENCE}. ⚠ marks a result that disagrees "
        "with jaxrnn autodiff.",
        "",
    ]
    for cell in sorted({p.cell for p in (*table, *sweep)}, key=_cell_rank):
        lines += [f"## {cell.upper() if cell != 'simple_rnn' else 'Simple RNN'}", ""]
        rows = {p: by_impl for p, by_impl in table.items() if p.cell == cell}
        if rows:
            lines += ["### Training gradient", "", *_shape_table(rows, "gradient"), ""]
            lines += ["### Forward pass", "", *_shape_table(rows, "forward"), ""]
        rows = {p: by_impl for p, by_impl in sweep.items() if p.cell == cell}
        if rows:
            sizes = sorted({_shape(p)[:3] for p in rows})
            title = ", ".join(f"B{b} X{x} H{h}" for b, x, h in sizes)
            title += "".join(sorted({f", {p.dtype}" for p in rows if p.dtype != "float32"}))
            lines += [f"### Training gradient against sequence length T ({title})", ""]
            lines += [*_sweep_table(rows, by_t=len(sizes) == 1), ""]
    heads = _index(results, "heads")
    if heads:
        lines += ["## Heads: block-diagonal recurrence", "", *_heads_table(heads), ""]
    grid = _index(results, "grid")
    if grid:
        lines += _grid_section(grid)
    skipped = run.get("skipped") or {}
    if skipped:
        lines += ["## Skipped", ""]
        lines += [f"- **{name}**: {reason}" for name, reason in skipped.items()] + [""]
    not_run = run.get("not_run") or []
    if not_run:
        lines += ["## Not run", "", "Problems an implementation here could not run (— in the tables):", ""]
        lines += [f"- **{entry['implementation']}** on {_problem(entry).label()} ({entry.get('group', '?')}): "
                  f"{entry['reason']}" for entry in not_run] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _self_check_section(checked: dict | None) -> list[str]:
    """The self-check's table: per cell, manual's relative error against autodiff in each dtype."""
    if not checked:
        return []
    rows = checked.get("rows") or []
    dtypes = list(dict.fromkeys(row["dtype"] for row in rows))
    by_cell: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        by_cell[row["cell"]][row["dtype"]] = row
    tolerance = checked.get("tolerance") or {}
    lines = [
        "## Self-check: hand-written gradients against autodiff",
        "",
        "Each cell's manual BPTT against JAX's autodiff of the same scan, as `python -m jaxrnn` checks it: the "
        "gradient of a loss on every output and the final state with respect to params, inputs and a nonzero "
        f"initial state, at {shape_label(tuple(checked['shape']))}, both in the same dtype. Max relative "
        "error; agree: within " + ", ".join(f"{_num(tolerance[d])} in {d}" for d in dtypes if d in tolerance)
        + " (bfloat16 computes with float32 state and sums)."
        + (f" {_num(checked['seconds'])} s." if checked.get("seconds") is not None else ""),
        "",
    ]
    body = []
    for cell, by_dtype in by_cell.items():
        agree = all(row["agrees"] for row in by_dtype.values())
        body.append([cell, *(_MISSING if d not in by_dtype else f"{by_dtype[d]['max_rel_error']:.1e}"
                             + ("" if by_dtype[d]["agrees"] else " ⚠") for d in dtypes),
                     "agree" if agree else "**DISAGREE**"])
    lines += _table(["cell", *(f"{d} rel err" for d in dtypes), "manual = autodiff"], body)
    failed = [cell for cell, by_dtype in by_cell.items() if not all(row["agrees"] for row in by_dtype.values())]
    if failed:
        lines += ["", f"> **WARNING: the hand-written gradient of {', '.join(failed)} disagrees with autodiff.**"]
    return lines + [""]


def _header(run: dict) -> list[str]:
    machine = run.get("machine") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (machine.get("versions") or {}).items())
    devices = machine.get("devices") or []
    lines = [
        f"Command: `{run.get('command', '?')}`",
        "",
        f"- Date: {run.get('date', '?')}" + (f" ({run['seconds']:.0f} s)" if run.get("seconds") is not None else ""),
        f"- CPU: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores",
        f"- JAX backend: {machine.get('backend', '?')} ({machine.get('device_kind', '?')}"
        + (f", {len(devices)} device{'s' * (len(devices) != 1)})" if devices else ")"),
        f"- Versions: {versions or '?'}",
    ]
    if machine.get("xla_flags"):
        lines.append(f"- XLA_FLAGS: `{machine['xla_flags']}`")
    ceilings = ", ".join(f"{k} {_num(v)}" for k, v in (run.get("ceiling_gflops") or {}).items())
    lines.append(
        f"- float32 sgemm ceiling: {ceilings or '?'} GFLOP/s; "
        f"% of ceiling below is of {_num(run.get('ceiling'))} GFLOP/s"
    )
    return lines


def _disagreements(results: list[dict]) -> list[str]:
    """A loud section listing every result whose outputs or gradients differ from jaxrnn autodiff's."""
    bad = [r for r in results if not r.get("agrees", True)]
    if not bad:
        return []
    lines = [
        "## ⚠ Results that disagree",
        "",
        f"> **WARNING: {len(bad)} result{'s' * (len(bad) != 1)} computed different outputs or gradients "
        "from jaxrnn autodiff, so their times are not of the same work:**",
        ">",
    ]
    lines += [
        f"> - **{r['implementation']}** on {_problem(r).label()} ({r.get('group', '?')}): "
        f"max relative error {r.get('max_rel_error', float('nan')):.1e}"
        for r in sorted(bad, key=lambda r: (_cell_rank(r["cell"]), _shape(_problem(r)), r["implementation"]))
    ]
    return lines + [""]


def _time_cell(result: dict | None, pass_name: str) -> str:
    if result is None:
        return _MISSING
    text = f"{_num(result[f'{pass_name}_ms'])} ms"
    if result["implementation"] != REFERENCE:
        text += f" ({_ratio(result[f'{pass_name}_ratio'])})"
    return text + ("" if result.get("agrees", True) else " ⚠")


def _memory_cell(by_impl: dict[str, dict]) -> str:
    """``manual / autodiff (ratio)`` in MiB of XLA temporaries."""
    manual = (by_impl.get(REFERENCE) or {}).get("temp_mib")
    autodiff = (by_impl.get(AUTODIFF.name) or {}).get("temp_mib")
    if manual is None:
        return _MISSING
    if autodiff is None:
        return _num(manual)
    return f"{_num(manual)} / {_num(autodiff)}" + (f" ({_ratio(manual / autodiff)})" if autodiff else "")


def _shape_table(rows: dict[Problem, dict[str, dict]], pass_name: str) -> list[str]:
    """One row per shape, one column per implementation; the gradient table adds manual's details."""
    impls = _impl_order(name for by_impl in rows.values() for name in by_impl)
    dtypes = _dtype_column(rows)
    header = ["B", "X", "H", "T", *(["dtype"] if dtypes else []), *impls]
    gradient = pass_name == "gradient"
    if gradient:
        header += [f"{REFERENCE} GFLOP/s", "% of ceiling", "compile s", "memory MiB: manual / autodiff"]
    body = []
    for problem, by_impl in rows.items():
        row = ([str(n) for n in _shape(problem)] + ([problem.dtype] if dtypes else [])
               + [_time_cell(by_impl.get(name), pass_name) for name in impls])
        if gradient:
            ref = by_impl.get(REFERENCE) or {}
            fraction = ref.get("ceiling_fraction")
            row += [
                _num(ref.get("gflops")),
                _MISSING if fraction is None else f"{_num(100 * fraction)}%",
                _num(ref.get("compile_s")),
                _memory_cell(by_impl),
            ]
        body.append(row)
    return _table(header, body)


def _heads_table(rows: dict[Problem, dict[str, dict]]) -> list[str]:
    """Gradient times per cell, H and K, with manual/autodiff and the speed-up over the same cell with one head."""
    one_head = {p._replace(heads=1): by_impl.get(REFERENCE) for p, by_impl in rows.items() if p.heads == 1}
    dtypes = _dtype_column(rows)
    header = ["cell", "B", "X", "H", "T", *(["dtype"] if dtypes else []), "heads", REFERENCE, AUTODIFF.name,
              f"{REFERENCE} vs 1 head"]
    body = []
    for problem, by_impl in sorted(rows.items(), key=lambda item: (_cell_rank(item[0].cell), _shape(item[0]),
                                                                   item[0].dtype, item[0].heads)):
        ref, dense = by_impl.get(REFERENCE), one_head.get(problem._replace(heads=1))
        speedup = dense["gradient_ms"] / ref["gradient_ms"] if ref and dense else None
        body.append([problem.cell, *map(str, _shape(problem)), *([problem.dtype] if dtypes else []),
                     str(problem.heads),
                     _time_cell(ref, "gradient"), _time_cell(by_impl.get(AUTODIFF.name), "gradient"),
                     _MISSING if speedup is None else f"{speedup:.2f}×"])
    return _table(header, body)


def _dtype_column(rows: dict[Problem, dict[str, dict]]) -> bool:
    """Whether a table needs a dtype column: some problem is not float32."""
    return any(problem.dtype != "float32" for problem in rows)


def _sweep_table(rows: dict[Problem, dict[str, dict]], *, by_t: bool) -> list[str]:
    """Gradient times against T (rows), one column per implementation, plus manual/autodiff memory."""
    impls = _impl_order(name for by_impl in rows.values() for name in by_impl)
    keys = ["T"] if by_t else ["B", "X", "H", "T"]  # several sizes swept: T alone would not say which
    header = [*keys, *impls, "memory MiB: manual / autodiff"]
    body = [
        [str(n) for n in _shape(problem)[-len(keys):]]
        + [_time_cell(by_impl.get(name), "gradient") for name in impls]
        + [_memory_cell(by_impl)]
        for problem, by_impl in rows.items()
    ]
    return _table(header, body)


# --------------------------------------------------------------------------
# The grid.


class _GridRow(NamedTuple):
    """One grid problem: manual's gradient time over autodiff's and over the fastest peer's.

    The fastest peer is the fastest of every other implementation measured on
    the problem, autodiff included. A ratio is None where it was not measured.
    """

    vs_autodiff: float | None
    vs_fastest: float | None
    fastest: str | None


def _manual_over(result: dict | None) -> float | None:
    """Manual's time over ``result``'s: 1 / its median per-round ratio to manual; None if not measured."""
    ratio = None if result is None else result.get("gradient_ratio")
    return 1 / ratio if ratio is not None and math.isfinite(ratio) and ratio > 0 else None


def _grid_row(by_impl: dict[str, dict]) -> _GridRow:
    if REFERENCE not in by_impl:
        return _GridRow(None, None, None)
    others = {name: _manual_over(by_impl[name]) for name in _impl_order(by_impl) if name != REFERENCE}
    measured = {name: r for name, r in others.items() if r is not None}
    # The fastest peer has the smallest time, so the largest manual / peer; ties go to the suite's order.
    fastest = max(measured, key=lambda name: measured[name], default=None)
    return _GridRow(measured.get(AUTODIFF.name), None if fastest is None else measured[fastest], fastest)


def _grid_key(shape: tuple[int, int, int, int]) -> tuple[int, ...]:
    """Grid rows by T, then B (then X, H)."""
    b, x, h, t = shape
    return t, b, x, h


def _short(name: str) -> str:
    """``"jaxrnn autodiff"`` -> ``"autodiff"``: in the grid every comparison is with jaxrnn manual."""
    return name.removeprefix("jaxrnn ")


def _grid_section(grid: dict[Problem, dict[str, dict]]) -> list[str]:
    """The Grid section: per cell a table of gradient times and manual's ratios, then a summary line."""
    lines = [
        "## Grid",
        "",
        "Training-gradient time on each shape of the grid. manual / X is jaxrnn manual's time over X's, "
        "computed as 1 / X's median per-round ratio to manual (for an odd number of rounds, exactly the median "
        "of the per-round manual / X), so < 1 means manual is faster. The fastest peer is the fastest of every "
        "other implementation measured on that shape, autodiff included. A shape counts as slower only where "
        "the ratio is above 1.00; ratios a few percent either side of 1 are within the measured noise.",
        "",
    ]
    summaries = []
    for cell in sorted({p.cell for p in grid}, key=_cell_rank):
        rows = sorted(((p, by_impl) for p, by_impl in grid.items() if p.cell == cell),
                      key=lambda item: _grid_key(_shape(item[0])))
        impls = _impl_order(name for _, by_impl in rows for name in by_impl)
        header = ["B", "X", "H", "T", *(f"{_short(name)} ms" for name in impls),
                  f"manual / {_short(AUTODIFF.name)}", "manual / fastest peer"]
        body = []
        for problem, by_impl in rows:
            row = _grid_row(by_impl)
            times = [_MISSING if name not in by_impl else _num(by_impl[name]["gradient_ms"])
                     + ("" if by_impl[name].get("agrees", True) else " ⚠") for name in impls]
            fastest = _MISSING if row.fastest is None else f"{_ratio(row.vs_fastest)} ({_short(row.fastest)})"
            body.append([*map(str, _shape(problem)), *times, _ratio(row.vs_autodiff), fastest])
        lines += [f"### {cell}", "", *_table(header, body), ""]
        summaries.append(f"- **{cell}**: " + _grid_summary(rows, impls) + ".")
    return lines + ["### Summary", "", *summaries, ""]


def _grid_summary(rows: list[tuple[Problem, dict[str, dict]]], impls: list[str]) -> str:
    """``manual ≤ autodiff on k of n shapes (worst r× at B.. X.. H.. T..); ≤ flax on ...``."""
    parts = []
    comparisons = [(_short(name), [(p, _manual_over(by_impl.get(name))) for p, by_impl in rows])
                   for name in impls if name != REFERENCE]
    if len(comparisons) > 1:  # with one peer the fastest is that one
        comparisons.append(("the fastest peer", [(p, _grid_row(by_impl).vs_fastest) for p, by_impl in rows]))
    for name, ratios in comparisons:
        measured = [(p, r) for p, r in ratios if r is not None]
        if not measured:
            continue
        worst, ratio = max(measured, key=lambda item: item[1])
        kept = sum(r <= 1.0 for _, r in measured)
        parts.append(f"≤ {name} on {kept} of {len(measured)} shape{'s' * (len(measured) != 1)} "
                     f"(worst {_ratio(ratio)} at {shape_label(_shape(worst))})")
    return ("manual " + "; ".join(parts)) if parts else f"no peer measured beside {REFERENCE}"


# --------------------------------------------------------------------------
# Targets.


class _Check(NamedTuple):
    """One measured comparison behind a target: where, what was measured, whether it passes."""

    where: str
    shown: str
    ok: bool
    slack: float  # smaller is closer to failing; picks the example a met target shows


class _Target(NamedTuple):
    """One speed target: its letter, what it asks, and the evidence this run has for it."""

    key: str
    goal: str
    checks: list[_Check]
    missing: list[str]  # inputs the target needs that this run lacks

    @property
    def status(self) -> str:
        # One failure decides; otherwise every input must be there to call it met.
        if any(not c.ok for c in self.checks):
            return NOT_MET
        return MET if self.checks and not self.missing else NOT_MEASURED

    def line(self) -> str:
        status = self.status
        text = f"- **({self.key}) {status}**: {self.goal}."
        if status == NOT_MET:
            failed = [c for c in self.checks if not c.ok]
            text += " Missed on " + "; ".join(f"{c.where}: {c.shown}" for c in failed) + "."
        elif self.checks:
            worst = min(self.checks, key=lambda c: c.slack)
            text += f" Closest: {worst.where}: {worst.shown}" + (
                f" ({len(self.checks)} checked)." if len(self.checks) > 1 else "."
            )
        if self.missing:
            text += " Missing: " + "; ".join(self.missing) + "."
        return text


def _absent(name: str, where: str, skipped: dict) -> str:
    return f"{name} on {where}" + (f" (skipped: {skipped[name]})" if name in skipped else "")


def _of(index: dict[Problem, dict[str, dict]], *cells: str) -> list[Problem]:
    return [p for p in index if p.cell in cells]


def _ratio_checks(
    index: dict[Problem, dict[str, dict]], expected: Iterable[Problem], peers: Iterable[str], bound: float,
    skipped: dict, *, strict: bool = False, note: str = "",
) -> tuple[list[_Check], list[str]]:
    """Each peer's gradient_ratio (peer / manual) on each expected problem ≥ ``bound`` (> if ``strict``).

    Returns:
        The checks, and the (peer, problem) pairs this run has no numbers for.
    """
    checks, missing = [], []
    for problem in expected:
        if problem not in index:
            missing.append(f"{problem.label()} (not run)")
            continue
        by_impl = index[problem]
        for peer in peers:
            if REFERENCE not in by_impl or peer not in by_impl:
                missing.append(_absent(peer if REFERENCE in by_impl else REFERENCE, problem.label(), skipped))
                continue
            ratio = by_impl[peer]["gradient_ratio"]
            ok = ratio > bound if strict else ratio >= bound
            checks.append(_Check(problem.label() + note, f"{peer} {_ratio(ratio)}", ok, ratio - bound))
    return checks, missing


def _targets(run: dict) -> list[_Target]:
    """The speed targets, each judged from this run's numbers alone."""
    results = run.get("results", [])
    skipped = run.get("skipped") or {}
    table, sweep = _index(results, "table"), _index(results, "sweep")
    every = {**table, **sweep}
    targets = []

    # (a) on the table shapes this run has: --shapes may choose others than the default four.
    lstm_gru = _of(table, "lstm", "gru")
    checks, missing = _ratio_checks(table, lstm_gru, ["torch"], 1.0, skipped)
    targets.append(_Target(
        "a", f"{REFERENCE} LSTM and GRU gradient time ≤ torch's on every table shape (torch's ratio ≥ 1)",
        checks, missing if lstm_gru else ["no LSTM or GRU table shapes"],
    ))

    # (b) the two small shapes for every cell the table ran, and every problem at all.
    cells = sorted({p.cell for p in table}, key=_cell_rank)
    small = [Problem(cell, *shape) for cell in cells for shape in SMALL_SHAPES]
    checks, missing = _ratio_checks(table, small, [AUTODIFF.name], 1.4, skipped, note=" (≥ 1.4×)")
    with_autodiff = [p for p, by_impl in every.items() if AUTODIFF.name in by_impl]
    checks += _ratio_checks(every, with_autodiff, [AUTODIFF.name], 1.0, skipped, note=" (≥ 1×)")[0]
    targets.append(_Target(
        "b", f"{REFERENCE} ≥ 1.4× faster than autodiff on B32 X64 H128 T100 and B8 X32 H64 T1000 "
        "(autodiff's ratio ≥ 1.4), and never slower anywhere (≥ 1)",
        checks, missing if small else ["no table shapes"],
    ))

    checks, missing = [], []
    for cell in ("lstm", "gru"):
        problem = Problem(cell, *LARGE_SHAPE)
        ref = table.get(problem, {}).get(REFERENCE)
        if ref is None:
            missing.append(problem.label())
            continue
        fraction = ref["ceiling_fraction"]
        checks.append(_Check(problem.label(), f"{_num(100 * fraction)}% ({_num(ref['gflops'])} GFLOP/s)",
                             fraction >= 0.85, fraction - 0.85))
    goal = f"{REFERENCE} LSTM and GRU ≥ 85% of the ceiling on B256 X256 H512 T50"
    targets.append(_Target("c", goal, checks, missing))

    # (d) and (e) over table and sweep alike: both are properties of the compiled gradient.
    manual = {p: by_impl for p, by_impl in every.items() if REFERENCE in by_impl}
    compiles = {p: by_impl[REFERENCE]["compile_s"] for p, by_impl in manual.items()
                if by_impl[REFERENCE].get("compile_s") is not None}
    checks = [_Check(p.label(), f"{_num(s)} s", s <= 0.5, 0.5 - s) for p, s in compiles.items()]
    most = f" (max {_num(max(compiles.values()))} s)" if compiles else ""
    targets.append(_Target(
        "d", f"{REFERENCE}'s first-call compile ≤ 0.5 s on every problem{most}",
        checks, [] if compiles else [f"no {REFERENCE} compile times"],
    ))

    checks, missing = [], []
    for problem, by_impl in manual.items():
        if problem.steps != 1000:
            continue
        ours = by_impl[REFERENCE].get("temp_mib")
        theirs = (by_impl.get(AUTODIFF.name) or {}).get("temp_mib")
        if ours is None or not theirs:
            missing.append(f"{REFERENCE} and {AUTODIFF.name} memory on {problem.label()}")
            continue
        checks.append(_Check(problem.label(), f"{_num(ours)} / {_num(theirs)} MiB ({_ratio(ours / theirs)})",
                             ours <= 0.6 * theirs, 0.6 - ours / theirs))
    targets.append(_Target(
        "e", f"{REFERENCE}'s XLA temporaries ≤ 0.6 × autodiff's at T = 1000 (manual / autodiff)",
        checks, missing if checks or missing else ["no problem with T = 1000"],
    ))

    if (run.get("machine") or {}).get("backend") == "gpu":
        targets += _gpu_targets(table, skipped)
    return targets


def _gpu_targets(table: dict[Problem, dict[str, dict]], skipped: dict) -> list[_Target]:
    """(f) and (g): where cuDNN exists, the anchors to be near and the JAX peers to beat."""
    checks, missing = [], []
    lstm = _of(table, "lstm")
    for problem in lstm:
        by_impl = table[problem]
        anchors = [by_impl[name]["gradient_ratio"] for name in CUDNN_ANCHORS if name in by_impl]
        if REFERENCE not in by_impl or not anchors:
            missing.append(" or ".join(_absent(name, problem.label(), skipped) for name in CUDNN_ANCHORS))
            continue
        behind = 1 / min(anchors)  # the fastest anchor has the smallest ratio; manual / anchor is its inverse
        checks.append(_Check(problem.label(), f"{REFERENCE} at {_ratio(behind)} the fastest cuDNN's time",
                             behind <= 1.25, 1.25 - behind))
    targets = [_Target(
        "f", f"{REFERENCE} LSTM within 1.25× of the fastest cuDNN anchor ({', '.join(CUDNN_ANCHORS)})",
        checks, missing if lstm else ["no LSTM table shapes"],
    )]
    gru = _of(table, "gru")
    checks, missing = _ratio_checks(table, gru, JAX_PEERS, 1.0, skipped, strict=True)
    targets.append(_Target(
        "g", f"{REFERENCE} GRU faster than every JAX peer ({', '.join(JAX_PEERS)}; their ratios > 1)",
        checks, missing if gru else ["no GRU table shapes"],
    ))
    return targets


# --------------------------------------------------------------------------
# Plots.


def plots(run: dict, out_dir: str | os.PathLike) -> list[Path]:
    """The run's PNG figures in ``out_dir``; a figure without data is not drawn.

    - ``time_vs_T.png``: the sweep's gradient time against T, log-log, one
      line per implementation, one panel per cell;
    - ``memory_vs_T.png``: the sweep's XLA temporaries against T for the JAX
      implementations, log-log;
    - ``ratios.png``: each implementation's gradient time over jaxrnn
      manual's on each table shape, one panel per cell, a line at 1;
    - ``grid.png``: the grid as a heat map, rows the shapes (by T, then B),
      columns the cells, in two panels: manual's gradient time over
      autodiff's, and over the fastest peer's (every other implementation
      measured, autodiff included). Diverging log colours centred at 1 (blue:
      manual faster, red: slower), each ratio written in its square, grey
      where not measured.

    Args:
        run: the run dict (see the module docstring).
        out_dir: an existing folder.

    Returns:
        The paths written.

    Raises:
        ModuleNotFoundError: matplotlib is missing, with the install command.
    """
    extra_module("matplotlib", "benchmark plots", "bench")  # fail here, naming the benchmark, not midway
    from jaxrnn._plot import figure, plain_log_ticks, save

    out_dir = Path(out_dir)
    results = run.get("results", [])
    sweep, table = _index(results, "sweep"), _index(results, "table")
    paths = []

    def by_cell(index: dict, value: str) -> dict:
        """``{cell: {implementation: [(T, value)]}}`` for results where ``value`` is known."""
        lines: dict = defaultdict(lambda: defaultdict(list))
        for problem, by_impl in index.items():
            for name, result in by_impl.items():
                if result.get(value) is not None:
                    lines[problem.cell][name].append((problem.steps, result[value]))
        return {cell: lines[cell] for cell in sorted(lines, key=_cell_rank)}

    def log_log(title, name, lines, ylabel):
        if not lines:
            return
        fig, axes = figure(1, len(lines))
        for ax, (cell, by_impl) in zip(axes, lines.items()):
            for impl in _impl_order(by_impl):
                ts, ys = zip(*sorted(by_impl[impl]))
                ax.plot(ts, ys, "o-", ms=3, color=_colour(impl), label=impl)
            ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel=ylabel, title=f"{cell}: {title}")
            steps = sorted({t for points in by_impl.values() for t, _ in points})
            ax.set_xticks(steps, [str(t) for t in steps])  # the T measured, not powers of ten
            ax.tick_params(axis="x", which="minor", labelbottom=False)
            _plain_if_narrow(ax.yaxis, [y for points in by_impl.values() for _, y in points], plain_log_ticks)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize="small")
        paths.append(save(fig, out_dir / name))

    sizes = ", ".join(sorted({f"B{p.batch} X{p.input} H{p.hidden}" for p in sweep}))
    log_log(f"training gradient ({sizes})", "time_vs_T.png", by_cell(sweep, "gradient_ms"), "ms per gradient")
    log_log(f"memory ({sizes})", "memory_vs_T.png", by_cell(sweep, "temp_mib"), "MiB of XLA temporaries (gradient)")

    cells = sorted({p.cell for p in table}, key=_cell_rank)
    if cells:
        fig, axes = figure(1, len(cells))
        for ax, cell in zip(axes, cells):
            rows = {p: by_impl for p, by_impl in table.items() if p.cell == cell}
            impls = [n for n in _impl_order(n for by_impl in rows.values() for n in by_impl) if n != REFERENCE]
            width = 0.8 / max(len(impls), 1)
            ratios = []
            for i, impl in enumerate(impls):
                offset = (i - (len(impls) - 1) / 2) * width  # the group of bars centred on its shape
                xs = [j + offset for j, by_impl in enumerate(rows.values()) if impl in by_impl]
                ys = [by_impl[impl]["gradient_ratio"] for by_impl in rows.values() if impl in by_impl]
                bars = ax.bar(xs, ys, width, color=_colour(impl), label=impl)
                ax.bar_label(bars, [_ratio(y) for y in ys], fontsize="x-small")  # a log axis is hard to read off
                ratios += ys
            ax.axhline(1.0, color="black", lw=1, label=f"{REFERENCE} = 1")
            ax.set_xticks(range(len(rows)), [f"B{p.batch} X{p.input}\nH{p.hidden} T{p.steps}" for p in rows])
            ax.set(yscale="log", ylabel=f"gradient time / {REFERENCE}'s (log)", title=f"{cell}: > 1 is slower")
            _plain_if_narrow(ax.yaxis, ratios + [1.0], plain_log_ticks)
            ax.grid(True, axis="y", which="both", alpha=0.3)
            ax.legend(fontsize="small")
        paths.append(save(fig, out_dir / "ratios.png"))

    grid = _index(results, "grid")
    if grid:
        paths.append(save(_heat_map(grid, figure), out_dir / "grid.png"))
    return paths


def _heat_map(grid: dict[Problem, dict[str, dict]], figure):
    """``grid.png``'s figure: manual / autodiff and manual / fastest peer, shapes × cells."""
    matplotlib = extra_module("matplotlib", "benchmark plots", "bench")
    colors = extra_module("matplotlib.colors", "benchmark plots", "bench")
    cells = sorted({p.cell for p in grid}, key=_cell_rank)
    shapes = sorted({_shape(p) for p in grid}, key=_grid_key)
    panels = {"manual / autodiff": np.full((len(shapes), len(cells)), np.nan),
              "manual / fastest peer": np.full((len(shapes), len(cells)), np.nan)}
    fastest = {}  # (row, column): the fastest peer's name, written under its ratio
    for problem, by_impl in grid.items():
        row = _grid_row(by_impl)
        at = shapes.index(_shape(problem)), cells.index(problem.cell)
        for values, ratio in zip(panels.values(), (row.vs_autodiff, row.vs_fastest)):
            values[at] = np.nan if ratio is None else ratio
        fastest[at] = _short(row.fastest or "")
    measured = np.concatenate([values[np.isfinite(values)] for values in panels.values()])
    # One scale for both panels, symmetric in log around 1, at least 0.67..1.5 so noise stays pale.
    span = max(1.5, float(np.exp(np.abs(np.log(measured)).max()))) if measured.size else 1.5
    norm = colors.LogNorm(vmin=1 / span, vmax=span)
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.85")

    fig, axes = figure(1, 2, width=2.6 + 1.0 * len(cells), height=1.2 + 0.26 * len(shapes))
    image = None
    for ax, (title, values), named in zip(axes, panels.items(), (False, True)):
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
        for (i, j), ratio in np.ndenumerate(values):
            if np.isfinite(ratio):
                dark = abs(np.log(ratio)) > 0.6 * np.log(span)  # white text on the deep colours
                text = f"{ratio:.2f} {fastest[i, j]}" if named else f"{ratio:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=6.5 if named else 7,
                        color="white" if dark else "black")
        ax.set_xticks(range(len(cells)), cells, rotation=30, ha="right")
        ax.set_yticks(range(len(shapes)), [shape_label(shape) for shape in shapes], fontsize=7)
        ax.tick_params(length=0)
        ax.set_title(f"{title}: < 1 is manual faster", fontsize="medium")
    above = [t for t in (1.25, 1.5, 2, 3, 5, 10, 20, 50) if t <= span]
    ticks = [1 / t for t in reversed(above)] + [1.0] + above
    bar = fig.colorbar(image, ax=axes, shrink=min(1.0, 12 / len(shapes) + 0.3), label="ratio (log scale)")
    bar.set_ticks(ticks, labels=[f"{t:.2g}" for t in ticks])
    bar.ax.minorticks_off()
    return fig


def _plain_if_narrow(axis, values: list[float], plain_log_ticks) -> None:
    """Plain tick labels (1.5, 2, 3) on a log axis that spans little; across decades they would crowd."""
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) < 20:
        plain_log_ticks(axis)


# --------------------------------------------------------------------------
# Files.


def merge(earlier: dict, later: dict) -> dict:
    """Two runs on one machine as one, for a run made in parts (``--append``).

    Results, skipped and not-run entries of both; the commands joined, the
    seconds summed, the earlier date; the later machine and self-check (the
    earlier one's where the later has none); the higher sgemm ceiling, with
    every result's share of it computed again.
    """
    ceilings = {name: max((run.get("ceiling_gflops") or {}).get(name, 0.0) for run in (earlier, later))
                for name in {**(earlier.get("ceiling_gflops") or {}), **(later.get("ceiling_gflops") or {})}}
    ceiling = max(ceilings.values(), default=0.0)
    results = [dict(r) for r in (*earlier.get("results", []), *later.get("results", []))]
    if ceiling:
        for result in results:
            result["ceiling_fraction"] = result["gflops"] / ceiling
    run = {
        **earlier,
        **later,
        "command": "; ".join(filter(None, (earlier.get("command"), later.get("command")))),
        "date": earlier.get("date", later.get("date")),
        "ceiling_gflops": ceilings,
        "ceiling": ceiling,
        "skipped": {**(earlier.get("skipped") or {}), **(later.get("skipped") or {})},
        "not_run": [*(earlier.get("not_run") or []), *(later.get("not_run") or [])],
        "results": results,
    }
    if "seconds" in earlier or "seconds" in later:
        run["seconds"] = round(earlier.get("seconds", 0.0) + later.get("seconds", 0.0), 1)
    if later.get("self_check") is None and earlier.get("self_check") is not None:
        run["self_check"] = earlier["self_check"]
    return run


def write(run: dict, out_dir: str | os.PathLike, *, plots: bool = True) -> list[Path]:
    """Writes ``results.json``, ``results.md`` and (unless ``plots`` is False) the PNGs, each atomically.

    Args:
        run: the run dict (see the module docstring).
        out_dir: the folder, created if need be.
        plots: draw the figures (they need matplotlib).

    Returns:
        The paths written, JSON and markdown first.

    Raises:
        ModuleNotFoundError: ``plots`` and matplotlib is missing; the JSON
            and markdown are written first, so no measurement is lost.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        atomic_write(out_dir / "results.json", lambda f: f.write((json.dumps(run, indent=2) + "\n").encode())),
        atomic_write(out_dir / "results.md", lambda f: f.write(markdown(run).encode())),
    ]
    if plots:
        paths += _plots(run, out_dir)
    return paths


_plots = plots  # ``write``'s keyword shadows the function's name
