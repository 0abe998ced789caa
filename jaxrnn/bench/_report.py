"""The suite's report: ``results.md`` for people, ``results.json`` for programs, and PNG plots.

This module puts the report together and writes it; the markdown sections
are in :mod:`jaxrnn.bench._sections`, the targets in
:mod:`jaxrnn.bench._targets`, the figures in :mod:`jaxrnn.bench._plots`.

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
import os
from pathlib import Path

from jaxrnn._io import atomic_write
from jaxrnn.bench import _plots
from jaxrnn.bench._results import cell_rank, indexed, problem_of, shape_of
from jaxrnn.bench._sections import (
    disagreement_section,
    grid_section,
    header_section,
    heads_table,
    self_check_section,
    shape_table,
    sweep_table,
)
from jaxrnn.bench._suite import REFERENCE
from jaxrnn.bench._targets import speed_targets


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
    table, sweep = indexed(results, "table"), indexed(results, "sweep")
    lines = ["# jaxrnn benchmark", "", *header_section(run), ""]
    lines += self_check_section(run.get("self_check"))
    lines += disagreement_section(results)
    lines += ["## Targets", ""]
    lines += [target.line() for target in speed_targets(run)] + [""]
    lines += [
        "Times are medians of interleaved rounds. (r×) is the median per-round ratio to "
        f"{REFERENCE}, so r > 1 means slower than {REFERENCE}. ⚠ marks a result that disagrees "
        "with jaxrnn autodiff.",
        "",
    ]
    for cell in sorted({p.cell for p in (*table, *sweep)}, key=cell_rank):
        lines += [f"## {cell.upper() if cell != 'simple_rnn' else 'Simple RNN'}", ""]
        rows = {p: by_impl for p, by_impl in table.items() if p.cell == cell}
        if rows:
            lines += ["### Training gradient", "", *shape_table(rows, "gradient"), ""]
            lines += ["### Forward pass", "", *shape_table(rows, "forward"), ""]
        rows = {p: by_impl for p, by_impl in sweep.items() if p.cell == cell}
        if rows:
            sizes = sorted({shape_of(p)[:3] for p in rows})
            title = ", ".join(f"B{b} X{x} H{h}" for b, x, h in sizes)
            title += "".join(sorted({f", {p.dtype}" for p in rows if p.dtype != "float32"}))
            lines += [f"### Training gradient against sequence length T ({title})", ""]
            lines += [*sweep_table(rows, by_t=len(sizes) == 1), ""]
    heads = indexed(results, "heads")
    if heads:
        lines += ["## Heads: block-diagonal recurrence", "", *heads_table(heads), ""]
    grid = indexed(results, "grid")
    if grid:
        lines += grid_section(grid)
    skipped = run.get("skipped") or {}
    if skipped:
        lines += ["## Skipped", ""]
        lines += [f"- **{name}**: {reason}" for name, reason in skipped.items()] + [""]
    not_run = run.get("not_run") or []
    if not_run:
        lines += ["## Not run", "", "Problems an implementation here could not run (— in the tables):", ""]
        lines += [f"- **{entry['implementation']}** on {problem_of(entry).label()} ({entry.get('group', '?')}): "
                  f"{entry['reason']}" for entry in not_run] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


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
        paths += _plots.plots(run, out_dir)
    return paths

