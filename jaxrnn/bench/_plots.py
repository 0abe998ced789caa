"""The report's PNG figures: gradient time and memory against T, ratios to manual, and the grid's heat map.

The run dict is described in :mod:`jaxrnn.bench._report`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from jaxrnn._io import extra_module
from jaxrnn.bench._grid import grid_key, grid_row, short_name
from jaxrnn.bench._problem import Problem, shape_label
from jaxrnn.bench._results import cell_rank, colour, format_ratio, impl_order, indexed, shape_of
from jaxrnn.bench._suite import REFERENCE


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
        run: the run dict (see :mod:`jaxrnn.bench._report`).
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
    sweep, table = indexed(results, "sweep"), indexed(results, "table")
    paths = []

    def by_cell(index: dict, value: str) -> dict:
        """``{cell: {implementation: [(T, value)]}}`` for results where ``value`` is known."""
        lines: dict = defaultdict(lambda: defaultdict(list))
        for problem, by_impl in index.items():
            for name, result in by_impl.items():
                if result.get(value) is not None:
                    lines[problem.cell][name].append((problem.steps, result[value]))
        return {cell: lines[cell] for cell in sorted(lines, key=cell_rank)}

    def log_log(title, name, lines, ylabel):
        if not lines:
            return
        fig, axes = figure(1, len(lines))
        for ax, (cell, by_impl) in zip(axes, lines.items()):
            for impl in impl_order(by_impl):
                ts, ys = zip(*sorted(by_impl[impl]))
                ax.plot(ts, ys, "o-", ms=3, color=colour(impl), label=impl)
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

    cells = sorted({p.cell for p in table}, key=cell_rank)
    if cells:
        fig, axes = figure(1, len(cells))
        for ax, cell in zip(axes, cells):
            rows = {p: by_impl for p, by_impl in table.items() if p.cell == cell}
            impls = [n for n in impl_order(n for by_impl in rows.values() for n in by_impl) if n != REFERENCE]
            width = 0.8 / max(len(impls), 1)
            ratios = []
            for i, impl in enumerate(impls):
                offset = (i - (len(impls) - 1) / 2) * width  # the group of bars centred on its shape
                xs = [j + offset for j, by_impl in enumerate(rows.values()) if impl in by_impl]
                ys = [by_impl[impl]["gradient_ratio"] for by_impl in rows.values() if impl in by_impl]
                bars = ax.bar(xs, ys, width, color=colour(impl), label=impl)
                ax.bar_label(bars, [format_ratio(y) for y in ys], fontsize="x-small")  # a log axis is hard to read off
                ratios += ys
            ax.axhline(1.0, color="black", lw=1, label=f"{REFERENCE} = 1")
            ax.set_xticks(range(len(rows)), [f"B{p.batch} X{p.input}\nH{p.hidden} T{p.steps}" for p in rows])
            ax.set(yscale="log", ylabel=f"gradient time / {REFERENCE}'s (log)", title=f"{cell}: > 1 is slower")
            _plain_if_narrow(ax.yaxis, ratios + [1.0], plain_log_ticks)
            ax.grid(True, axis="y", which="both", alpha=0.3)
            ax.legend(fontsize="small")
        paths.append(save(fig, out_dir / "ratios.png"))

    grid = indexed(results, "grid")
    if grid:
        paths.append(save(_heat_map(grid, figure), out_dir / "grid.png"))
    return paths


def _heat_map(grid: dict[Problem, dict[str, dict]], figure):
    """``grid.png``'s figure: manual / autodiff and manual / fastest peer, shapes × cells."""
    matplotlib = extra_module("matplotlib", "benchmark plots", "bench")
    colors = extra_module("matplotlib.colors", "benchmark plots", "bench")
    cells = sorted({p.cell for p in grid}, key=cell_rank)
    shapes = sorted({shape_of(p) for p in grid}, key=grid_key)
    panels = {"manual / autodiff": np.full((len(shapes), len(cells)), np.nan),
              "manual / fastest peer": np.full((len(shapes), len(cells)), np.nan)}
    fastest = {}  # (row, column): the fastest peer's name, written under its ratio
    for problem, by_impl in grid.items():
        row = grid_row(by_impl)
        at = shapes.index(shape_of(problem)), cells.index(problem.cell)
        for values, ratio in zip(panels.values(), (row.vs_autodiff, row.vs_fastest)):
            values[at] = np.nan if ratio is None else ratio
        fastest[at] = short_name(row.fastest or "")
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

