"""``python -m benchmarks`` / ``jaxrnn bench``: run the suite and write its report."""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from pathlib import Path

from jaxrnn import _registry
from jaxrnn._argparse import cell_list, name_list
from jaxrnn.bench import _suite
from jaxrnn.bench._problem import Problem

QUICK_SHAPES = (_suite.TABLE_SHAPES[0],)
QUICK_SWEEP = (10, 100, 1000)
QUICK_CELLS = ("lstm", "gru")
# Few rounds, a short budget and no forward timing: the whole grid, 7 cells, took 75 minutes on 2 cores.
GRID_ROUNDS = 7
GRID_BUDGET = 0.75


def _shapes(text: str) -> list[tuple[int, int, int, int]]:
    """``"32x64x128x100,8x32x64x1000"`` -> [(B, X, H, T), ...]."""
    shapes = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            shape = tuple(int(n) for n in item.lower().split("x"))
        except ValueError:
            shape = ()
        if len(shape) != 4 or min(shape) < 1:
            raise argparse.ArgumentTypeError(f"expected BxXxHxT with four positive whole numbers, got {item!r}")
        shapes.append(shape)
    return shapes


def _steps(text: str) -> list[int]:
    """``"10,100,1000"`` -> [10, 100, 1000]; ``""`` -> no sweep."""
    try:
        steps = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if any(n < 1 for n in steps):
        raise argparse.ArgumentTypeError(f"sequence lengths must be ≥ 1, got {text!r}")
    return steps


def _heads(text: str) -> list[int]:
    """``"1,4,16"`` -> [1, 4, 16], each dividing every hidden size of the heads group."""
    try:
        heads = _steps(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated head counts ≥ 1, e.g. 1,4,16; got {text!r}") from None
    bad = [k for k in heads if any(h % k for h in _suite.HEADS_HIDDEN)]
    if bad:
        raise argparse.ArgumentTypeError(
            f"head counts must divide the hidden sizes {', '.join(map(str, _suite.HEADS_HIDDEN))}; got {bad}")
    return heads


def _grid_ranges() -> list[tuple[str, int, int]]:
    """``[(axis, smallest, largest)]`` of the grid's B, X, H and T."""
    return [(axis, min(sizes), max(sizes)) for axis, sizes in zip("BXHT", zip(*_suite.GRID_SHAPES))]


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    impl_names = [impl.name for impl in _suite.IMPLEMENTATIONS]
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Time the training gradient (and forward pass) of jaxrnn's manual BPTT against JAX's autodiff, "
        "the numpy notebook loop, Flax, Equinox and torch, side by side in one process; write results.json, "
        "results.md and PNG plots to --out.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help=f"a short run (under 2 minutes on 2 cores): cells {','.join(QUICK_CELLS)}, "
                      f"shape {QUICK_SHAPES[0]}, sweep T={','.join(map(str, QUICK_SWEEP))}, fewer rounds")
    size.add_argument("--grid", action="store_true",
                      help=f"a sweep over {len(_suite.GRID_SHAPES)} shapes spread over "
                      + ", ".join(f"{axis} {low}..{high}" for axis, low, high in _grid_ranges())
                      + " in place of the table shapes and the T sweep (unless --shapes or --sweep is given too): "
                      "every cell with a hand-written BPTT, implementations "
                      f"{', '.join(_suite.GRID_IMPLEMENTATIONS)}, --rounds {GRID_ROUNDS} --budget {GRID_BUDGET} "
                      "unless given; adds a Grid section to results.md and grid.png, a heat map of manual's time "
                      "over autodiff's and over the fastest peer's (any other implementation). "
                      "About 75 minutes on 2 cores")
    parser.add_argument("--cells", type=cell_list(manual=True), default=None,
                        help=f"comma-separated registered cells, or MODULE:NAME of a cell of your own, e.g. "
                        f"examples.custom_cells:peephole_lstm (default: {','.join(_suite.CELL_NAMES)}; "
                        "--grid: every registered one; registered: "
                        f"{','.join(_registry.cells(manual=True))})")
    parser.add_argument("--implementations", type=name_list(impl_names, "implementation"), default=None,
                        help=f"comma-separated, from: {', '.join(impl_names)} (default: all; --grid: "
                        f"{', '.join(_suite.GRID_IMPLEMENTATIONS)}; {_suite.REFERENCE!r} always runs)")
    parser.add_argument("--shapes", type=_shapes, default=None,
                        help="comma-separated BxXxHxT table shapes (default: "
                        + ",".join("x".join(map(str, shape)) for shape in _suite.TABLE_SHAPES) + ")")
    parser.add_argument("--sweep", type=_steps, default=None,
                        help=f"comma-separated T for the sweep at B={_suite.SWEEP_SHAPE[0]}, "
                        f"X={_suite.SWEEP_SHAPE[1]}, H={_suite.SWEEP_SHAPE[2]}; '' for none "
                        f"(default: {','.join(map(str, _suite.SWEEP_STEPS))})")
    parser.add_argument("--sweep-cells", type=cell_list(manual=True), default=None,
                        help="cells for the sweep (default: lstm,gru, within --cells)")
    parser.add_argument("--heads", type=_heads, default=[],
                        help="comma-separated head counts K, e.g. 1,4,16: time each cell that takes num_heads "
                        f"(within --cells) at B={_suite.HEADS_SHAPE[0]}, X={_suite.HEADS_SHAPE[1]}, "
                        f"T={_suite.HEADS_SHAPE[2]} and H in {','.join(map(str, _suite.HEADS_HIDDEN))} "
                        "with each K (manual and autodiff; default: none)")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"interleaved rounds at most (default 15; quick 10; grid {GRID_ROUNDS})")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed calls per implementation and pass at most "
                        f"(default 4; quick 1.5; grid {GRID_BUDGET})")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder (default bench-results)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (they need matplotlib)")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks") -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(prog).parse_args(argv)
    quick, grid = args.quick, args.grid
    cells = args.cells or list(_registry.cells(manual=True) if grid else QUICK_CELLS if quick else _suite.CELL_NAMES)
    # The grid replaces the table and the sweep unless they are asked for by name.
    shapes = args.shapes if args.shapes is not None else [] if grid else list(
        QUICK_SHAPES if quick else _suite.TABLE_SHAPES)
    sweep = args.sweep if args.sweep is not None else [] if grid else list(
        QUICK_SWEEP if quick else _suite.SWEEP_STEPS)
    sweep_cells = [cell for cell in args.sweep_cells or (["lstm"] if quick else ["lstm", "gru"]) if cell in cells]
    settings = _suite.Settings(
        rounds=args.rounds or (GRID_ROUNDS if grid else 10 if quick else 15),
        budget_s=args.budget or (GRID_BUDGET if grid else 1.5 if quick else 4.0),
        forward=not grid,
    )
    if args.rounds is not None and args.rounds < settings.min_rounds:
        print(f"{prog}: --rounds must be ≥ {settings.min_rounds}, got {args.rounds}", file=sys.stderr)
        return 2
    if not args.no_plots:
        try:
            from jaxrnn._io import extra_module

            extra_module("matplotlib", "benchmark plots", "bench")
        except ModuleNotFoundError as error:
            print(f"{prog}: {error} (or pass --no-plots)", file=sys.stderr)
            return 2

    default = _suite.GRID_IMPLEMENTATIONS if grid else [impl.name for impl in _suite.IMPLEMENTATIONS]
    wanted = set(args.implementations or default) | {_suite.REFERENCE}
    ready, skipped = _suite.available(impl for impl in _suite.IMPLEMENTATIONS if impl.name in wanted)
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}")
    _match_torch_threads()

    started = time.perf_counter()
    ceiling = _suite.sgemm_ceiling()
    print("sgemm ceiling: " + ", ".join(f"{name} {gflops:.0f} GFLOP/s" for name, gflops in ceiling.items()))
    problems = [(Problem(cell, *shape), "table") for cell in cells for shape in shapes]
    problems += [(Problem(cell, *_suite.SWEEP_SHAPE, steps), "sweep") for cell in sweep_cells for steps in sweep]
    if grid:
        problems += [(Problem(cell, *shape), "grid") for cell in cells for shape in _suite.GRID_SHAPES]
    batch, inputs, steps = _suite.HEADS_SHAPE
    problems += [(Problem(cell, batch, inputs, hidden, steps, heads), "heads")
                 for cell in cells if cell in _registry.taking("num_heads")
                 for hidden in _suite.HEADS_HIDDEN for heads in args.heads]
    results = []
    for number, (problem, group) in enumerate(problems, 1):
        print(f"[{number}/{len(problems)}] {problem.label()} ({group})", flush=True)
        for result in _suite.measure(problem, ready, settings, group=group):
            results.append(result)
            print(f"  {result['implementation']:<16} gradient {result['gradient_ms']:9.2f} ms "
                  f"({result['gradient_ratio']:.2f}x)"
                  + ("" if result["forward_ms"] is None else f"  forward {result['forward_ms']:8.2f} ms"), flush=True)

    after = _suite.sgemm_ceiling()
    ceiling = {name: max(gflops, after.get(name, 0.0)) for name, gflops in ceiling.items()}
    for result in results:
        result["ceiling_fraction"] = result["gflops"] / max(ceiling.values())
    run = {
        "command": " ".join([prog, *map(shlex.quote, argv)]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": _suite.machine(),
        "ceiling_gflops": ceiling,
        "ceiling": max(ceiling.values()),
        "skipped": skipped,
        "results": results,
    }
    from jaxrnn.bench import _report

    paths = _report.write(run, args.out, plots=not args.no_plots)
    print(f"wrote {', '.join(str(p) for p in paths)} in {run['seconds']:.0f} s")
    disagreeing = sorted({r["implementation"] for r in results if not r["agrees"]})
    if disagreeing:
        print(f"{prog}: {', '.join(disagreeing)} computed different gradients from jaxrnn; see results.md",
              file=sys.stderr)
        return 1
    return 0


def _match_torch_threads() -> None:
    """torch uses as many threads as JAX has cores, so the two compete on equal terms."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(_suite.cores())
