"""The report's markdown sections and tables, each a list of lines.

The header, the self-check, the results that disagree, and the tables of
the table shapes, the sweep over T, the heads group and the grid;
:func:`jaxrnn.bench._report.markdown` puts them in order. The run dict is
described in :mod:`jaxrnn.bench._report`.
"""

from __future__ import annotations

from collections import defaultdict

from jaxrnn.bench._grid import grid_key, grid_row, manual_over, short_name
from jaxrnn.bench._jaxrnn import AUTODIFF
from jaxrnn.bench._problem import Problem, shape_label
from jaxrnn.bench._results import MISSING, cell_rank, format_number, format_ratio, impl_order, problem_of, shape_of
from jaxrnn.bench._suite import REFERENCE


def header_section(run: dict) -> list[str]:
    """The command, date, machine, versions and sgemm ceiling, as a list under the title."""
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
    ceilings = ", ".join(f"{k} {format_number(v)}" for k, v in (run.get("ceiling_gflops") or {}).items())
    lines.append(
        f"- float32 sgemm ceiling: {ceilings or '?'} GFLOP/s; "
        f"% of ceiling below is of {format_number(run.get('ceiling'))} GFLOP/s"
    )
    return lines


def self_check_section(checked: dict | None) -> list[str]:
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
        "error; agree: within " + ", ".join(f"{format_number(tolerance[d])} in {d}" for d in dtypes if d in tolerance)
        + " (bfloat16 computes with float32 state and sums)."
        + (f" {format_number(checked['seconds'])} s." if checked.get("seconds") is not None else ""),
        "",
    ]
    body = []
    for cell, by_dtype in by_cell.items():
        agree = all(row["agrees"] for row in by_dtype.values())
        body.append([cell, *(MISSING if d not in by_dtype else f"{by_dtype[d]['max_rel_error']:.1e}"
                             + ("" if by_dtype[d]["agrees"] else " ⚠") for d in dtypes),
                     "agree" if agree else "**DISAGREE**"])
    lines += _table(["cell", *(f"{d} rel err" for d in dtypes), "manual = autodiff"], body)
    failed = [cell for cell, by_dtype in by_cell.items() if not all(row["agrees"] for row in by_dtype.values())]
    if failed:
        lines += ["", f"> **WARNING: the hand-written gradient of {', '.join(failed)} disagrees with autodiff.**"]
    return lines + [""]


def disagreement_section(results: list[dict]) -> list[str]:
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
        f"> - **{r['implementation']}** on {problem_of(r).label()} ({r.get('group', '?')}): "
        f"max relative error {r.get('max_rel_error', float('nan')):.1e}"
        for r in sorted(bad, key=lambda r: (cell_rank(r["cell"]), shape_of(problem_of(r)), r["implementation"]))
    ]
    return lines + [""]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub table, every column right-aligned: they are all numbers."""
    return ["| " + " | ".join(cells) + " |" for cells in (header, ["---:"] * len(header), *rows)]


def _time_cell(result: dict | None, pass_name: str) -> str:
    if result is None:
        return MISSING
    text = f"{format_number(result[f'{pass_name}_ms'])} ms"
    if result["implementation"] != REFERENCE:
        text += f" ({format_ratio(result[f'{pass_name}_ratio'])})"
    return text + ("" if result.get("agrees", True) else " ⚠")


def _memory_cell(by_impl: dict[str, dict]) -> str:
    """``manual / autodiff (ratio)`` in MiB of XLA temporaries."""
    manual = (by_impl.get(REFERENCE) or {}).get("temp_mib")
    autodiff = (by_impl.get(AUTODIFF.name) or {}).get("temp_mib")
    if manual is None:
        return MISSING
    if autodiff is None:
        return format_number(manual)
    return (f"{format_number(manual)} / {format_number(autodiff)}"
            + (f" ({format_ratio(manual / autodiff)})" if autodiff else ""))


def shape_table(rows: dict[Problem, dict[str, dict]], pass_name: str) -> list[str]:
    """One row per shape, one column per implementation; the gradient table adds manual's details."""
    impls = impl_order(name for by_impl in rows.values() for name in by_impl)
    dtypes = _dtype_column(rows)
    header = ["B", "X", "H", "T", *(["dtype"] if dtypes else []), *impls]
    gradient = pass_name == "gradient"
    if gradient:
        header += [f"{REFERENCE} GFLOP/s", "% of ceiling", "compile s", "memory MiB: manual / autodiff"]
    body = []
    for problem, by_impl in rows.items():
        row = ([str(n) for n in shape_of(problem)] + ([problem.dtype] if dtypes else [])
               + [_time_cell(by_impl.get(name), pass_name) for name in impls])
        if gradient:
            ref = by_impl.get(REFERENCE) or {}
            fraction = ref.get("ceiling_fraction")
            row += [
                format_number(ref.get("gflops")),
                MISSING if fraction is None else f"{format_number(100 * fraction)}%",
                format_number(ref.get("compile_s")),
                _memory_cell(by_impl),
            ]
        body.append(row)
    return _table(header, body)


def heads_table(rows: dict[Problem, dict[str, dict]]) -> list[str]:
    """Gradient times per cell, H and K, with manual/autodiff and the speed-up over the same cell with one head."""
    one_head = {p._replace(heads=1): by_impl.get(REFERENCE) for p, by_impl in rows.items() if p.heads == 1}
    dtypes = _dtype_column(rows)
    header = ["cell", "B", "X", "H", "T", *(["dtype"] if dtypes else []), "heads", REFERENCE, AUTODIFF.name,
              f"{REFERENCE} vs 1 head"]
    body = []
    for problem, by_impl in sorted(rows.items(), key=lambda item: (cell_rank(item[0].cell), shape_of(item[0]),
                                                                   item[0].dtype, item[0].heads)):
        ref, dense = by_impl.get(REFERENCE), one_head.get(problem._replace(heads=1))
        speedup = dense["gradient_ms"] / ref["gradient_ms"] if ref and dense else None
        body.append([problem.cell, *map(str, shape_of(problem)), *([problem.dtype] if dtypes else []),
                     str(problem.heads),
                     _time_cell(ref, "gradient"), _time_cell(by_impl.get(AUTODIFF.name), "gradient"),
                     MISSING if speedup is None else f"{speedup:.2f}×"])
    return _table(header, body)


def _dtype_column(rows: dict[Problem, dict[str, dict]]) -> bool:
    """Whether a table needs a dtype column: some problem is not float32."""
    return any(problem.dtype != "float32" for problem in rows)


def sweep_table(rows: dict[Problem, dict[str, dict]], *, by_t: bool) -> list[str]:
    """Gradient times against T (rows), one column per implementation, plus manual/autodiff memory."""
    impls = impl_order(name for by_impl in rows.values() for name in by_impl)
    keys = ["T"] if by_t else ["B", "X", "H", "T"]  # several sizes swept: T alone would not say which
    header = [*keys, *impls, "memory MiB: manual / autodiff"]
    body = [
        [str(n) for n in shape_of(problem)[-len(keys):]]
        + [_time_cell(by_impl.get(name), "gradient") for name in impls]
        + [_memory_cell(by_impl)]
        for problem, by_impl in rows.items()
    ]
    return _table(header, body)


def grid_section(grid: dict[Problem, dict[str, dict]]) -> list[str]:
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
    for cell in sorted({p.cell for p in grid}, key=cell_rank):
        rows = sorted(((p, by_impl) for p, by_impl in grid.items() if p.cell == cell),
                      key=lambda item: grid_key(shape_of(item[0])))
        impls = impl_order(name for _, by_impl in rows for name in by_impl)
        header = ["B", "X", "H", "T", *(f"{short_name(name)} ms" for name in impls),
                  f"manual / {short_name(AUTODIFF.name)}", "manual / fastest peer"]
        body = []
        for problem, by_impl in rows:
            row = grid_row(by_impl)
            times = [MISSING if name not in by_impl else format_number(by_impl[name]["gradient_ms"])
                     + ("" if by_impl[name].get("agrees", True) else " ⚠") for name in impls]
            fastest = MISSING if row.fastest is None else f"{format_ratio(row.vs_fastest)} ({short_name(row.fastest)})"
            body.append([*map(str, shape_of(problem)), *times, format_ratio(row.vs_autodiff), fastest])
        lines += [f"### {cell}", "", *_table(header, body), ""]
        summaries.append(f"- **{cell}**: " + _grid_summary(rows, impls) + ".")
    return lines + ["### Summary", "", *summaries, ""]


def _grid_summary(rows: list[tuple[Problem, dict[str, dict]]], impls: list[str]) -> str:
    """``manual ≤ autodiff on k of n shapes (worst r× at B.. X.. H.. T..); ≤ flax on ...``."""
    parts = []
    comparisons = [(short_name(name), [(p, manual_over(by_impl.get(name))) for p, by_impl in rows])
                   for name in impls if name != REFERENCE]
    if len(comparisons) > 1:  # with one peer the fastest is that one
        comparisons.append(("the fastest peer", [(p, grid_row(by_impl).vs_fastest) for p, by_impl in rows]))
    for name, ratios in comparisons:
        measured = [(p, r) for p, r in ratios if r is not None]
        if not measured:
            continue
        worst, ratio = max(measured, key=lambda item: item[1])
        kept = sum(r <= 1.0 for _, r in measured)
        parts.append(f"≤ {name} on {kept} of {len(measured)} shape{'s' * (len(measured) != 1)} "
                     f"(worst {format_ratio(ratio)} at {shape_label(shape_of(worst))})")
    return ("manual " + "; ".join(parts)) if parts else f"no peer measured beside {REFERENCE}"

