"""``python -m benchmarks`` / ``jaxrnn bench``: run the suite and write its report."""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

from jaxrnn import _registry
from jaxrnn._argparse import cell_list, name_list
from jaxrnn.bench import _self_check, _suite
from jaxrnn.bench._problem import Problem, shape_label

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
    """``"1,4,16"`` -> [1, 4, 16]; ``main`` checks that each divides every hidden size of the heads group."""
    try:
        return _steps(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated head counts ≥ 1, e.g. 1,4,16; got {text!r}") from None


def _shape(text: str) -> tuple[int, int, int, int]:
    """``"32x64x128x100"`` -> (32, 64, 128, 100): one shape."""
    shapes = _shapes(text)
    if len(shapes) != 1:
        raise argparse.ArgumentTypeError(f"expected one BxXxHxT shape, got {text!r}")
    return shapes[0]


def _default_heads_shapes() -> list[tuple[int, int, int, int]]:
    batch, inputs, steps = _suite.HEADS_SHAPE
    return [(batch, inputs, hidden, steps) for hidden in _suite.HEADS_HIDDEN]


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
                        "(within --cells) on each --heads-shapes shape with each K, manual and autodiff "
                        "(default: none)")
    parser.add_argument("--heads-shapes", type=_shapes, default=None,
                        help="comma-separated BxXxHxT shapes of the heads group (default: "
                        + ",".join("x".join(map(str, shape)) for shape in _default_heads_shapes()) + ")")
    parser.add_argument("--dtype", choices=_suite.DTYPES, default="float32",
                        help="the params' and inputs' dtype of every problem (default float32). bfloat16 checks "
                        "each implementation against jaxrnn autodiff in float32 on the same numbers, within "
                        f"{_suite.TOLERANCES['bfloat16']:g}; an implementation without it (jax cuDNN, the numpy "
                        "loop) is listed as not run")
    parser.add_argument("--self-check", type=_shape, nargs="?", const=_self_check.SHAPE, default=None,
                        metavar="BxXxHxT",
                        help="first check every cell with a hand-written BPTT, manual against autodiff gradients "
                        "in " + " and ".join(_self_check.DTYPES) + " as `python -m jaxrnn` does, at this shape "
                        "(default " + "x".join(map(str, _self_check.SHAPE)) + "); results.md opens with the "
                        "table, and a disagreement fails the run")
    parser.add_argument("--append", action="store_true",
                        help="add this run to the results.json already in --out and write the report of both: "
                        "a long run in parts, each under its own time limit, still makes one report (the files "
                        "are written again after each problem, so a run stopped midway keeps what it measured)")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"interleaved rounds at most (default 15; quick 10; grid {GRID_ROUNDS})")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed calls per implementation and pass at most "
                        f"(default 4; quick 1.5; grid {GRID_BUDGET})")
    parser.add_argument("--ceiling-size", type=int, default=None, metavar="N",
                        help="the float32 sgemm ceiling multiplies N × N matrices (default 2048; a smoke run on "
                        "tiny shapes can take 256)")
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
    if args.ceiling_size is not None and args.ceiling_size < 1:
        print(f"{prog}: --ceiling-size must be ≥ 1, got {args.ceiling_size}", file=sys.stderr)
        return 2
    if args.rounds is not None and args.rounds < settings.min_rounds:
        print(f"{prog}: --rounds must be ≥ {settings.min_rounds}, got {args.rounds}", file=sys.stderr)
        return 2
    heads_shapes = args.heads_shapes if args.heads_shapes is not None else _default_heads_shapes()
    hidden_sizes = sorted({hidden for _, _, hidden, _ in heads_shapes})
    bad = [k for k in args.heads if any(h % k for h in hidden_sizes)]
    if bad:
        build_parser(prog).error(f"argument --heads: head counts must divide the hidden sizes "
                                 f"{', '.join(map(str, hidden_sizes))}; got {bad}")
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

    from jaxrnn.bench import _report

    started = time.perf_counter()
    earlier_path = Path(args.out) / "results.json"
    earlier = json.loads(earlier_path.read_text()) if args.append and earlier_path.exists() else None
    results: list[dict] = []
    not_run: list[dict] = []
    checked: dict | None = None

    def save(ceiling: dict[str, float], *, plots: bool = False) -> list[Path]:
        """The run so far, merged into the earlier one with --append, written to --out."""
        for result in results:
            result["ceiling_fraction"] = result["gflops"] / max(ceiling.values())
        run = {
            "command": " ".join([prog, *map(shlex.quote, argv)]),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1),
            "machine": _suite.machine(),
            "ceiling_gflops": ceiling,
            "ceiling": max(ceiling.values()),
            "skipped": skipped,
            "not_run": not_run,
            "results": results,
        }
        if checked is not None:
            run["self_check"] = checked
        if earlier is not None:
            run = _report.merge(earlier, run)
        return _report.write(run, args.out, plots=plots)

    sized = {} if args.ceiling_size is None else {"size": args.ceiling_size}
    ceiling = _suite.sgemm_ceiling(**sized)
    print("sgemm ceiling: " + ", ".join(f"{name} {gflops:.0f} GFLOP/s" for name, gflops in ceiling.items()))
    if args.self_check is not None:
        print("self-check: manual against autodiff, " + " and ".join(_self_check.DTYPES)
              + f" ({shape_label(args.self_check)})", flush=True)
        for cell in _registry.cells(manual=True):  # saved cell by cell, as the problems below are
            one = _self_check.self_check([cell], args.self_check)
            checked = one if checked is None else {**one, "rows": checked["rows"] + one["rows"],
                                                   "seconds": checked["seconds"] + one["seconds"]}
            save(ceiling)
    dtype = args.dtype
    problems = [(Problem(cell, b, x, h, t, dtype=dtype), "table") for cell in cells for b, x, h, t in shapes]
    problems += [(Problem(cell, *_suite.SWEEP_SHAPE, steps, dtype=dtype), "sweep")
                 for cell in sweep_cells for steps in sweep]
    if grid:
        problems += [(Problem(cell, b, x, h, t, dtype=dtype), "grid")
                     for cell in cells for b, x, h, t in _suite.GRID_SHAPES]
    problems += [(Problem(cell, b, x, h, t, heads, dtype), "heads")
                 for cell in cells if cell in _registry.cells(taking="num_heads")
                 for b, x, h, t in heads_shapes for heads in args.heads]
    for number, (problem, group) in enumerate(problems, 1):
        print(f"[{number}/{len(problems)}] {problem.label()} ({group})", flush=True)
        reasons = _suite.unsupported(problem, ready, group)
        while True:
            try:
                measured = _suite.measure(problem, [impl for impl in ready if impl.name not in reasons], settings,
                                          group=group)
                break
            except _suite.Unrunnable as failure:  # measure it again without that peer
                reasons[failure.name] = failure.reason
        for name, reason in reasons.items():
            print(f"  {name:<16} not run: {reason}", flush=True)
            not_run.append({**problem._asdict(), "group": group, "implementation": name, "reason": reason})
        for result in measured:
            results.append(result)
            print(f"  {result['implementation']:<16} gradient {result['gradient_ms']:9.2f} ms "
                  f"({result['gradient_ratio']:.2f}x)"
                  + ("" if result["forward_ms"] is None else f"  forward {result['forward_ms']:8.2f} ms"), flush=True)
        save(ceiling)  # a run stopped later (a time limit, Ctrl-C) keeps what it measured

    after = _suite.sgemm_ceiling(**sized)
    ceiling = {name: max(gflops, after.get(name, 0.0)) for name, gflops in ceiling.items()}
    paths = save(ceiling, plots=not args.no_plots)
    print(f"wrote {', '.join(str(p) for p in paths)} in {time.perf_counter() - started:.0f} s")
    code = 0
    failed = sorted({row["cell"] for row in (checked or {}).get("rows", []) if not row["agrees"]})
    if failed:
        print(f"{prog}: the self-check failed: manual and autodiff gradients disagree for {', '.join(failed)}; "
              "see results.md", file=sys.stderr)
        code = 1
    disagreeing = sorted({r["implementation"] for r in results if not r["agrees"]})
    if disagreeing:
        print(f"{prog}: {', '.join(disagreeing)} computed different gradients from jaxrnn; see results.md",
              file=sys.stderr)
        code = 1
    return code


def _match_torch_threads() -> None:
    """torch uses as many threads as JAX has cores, so the two compete on equal terms."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(_suite.cores())
