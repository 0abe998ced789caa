"""Validation curves against wall time: `jaxrnn train --time` runs beside the PyTorch anchor, one figure.

    python benchmarks/plot_budget.py RUN [RUN ...] --torch benchmarks/results/training/torch_anchor.jsonl \
        --out docs/train_curve_5min.png

Each RUN is a ``jaxrnn train`` folder (its ``metrics.jsonl``) or a metrics file; the torch file is what
``benchmarks/torch_anchor.py`` writes. The x axis is ``elapsed_s``: wall time from the start of each run,
compiling and evals included.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jaxrnn import _plot


def evals(path: Path) -> list[tuple[float, float]]:
    """``(elapsed_s, val_bpc)`` of every eval in a metrics file, or in a run folder's ``metrics.jsonl``."""
    path = path / "metrics.jsonl" if path.is_dir() else path
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r["elapsed_s"], r["val_bpc"]) for r in records if "val_bpc" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="jaxrnn train run folders or metrics files")
    parser.add_argument("--labels", nargs="*", default=None, help="one label per run (default: its folder's name)")
    parser.add_argument("--torch", type=Path, required=True, help="the anchor's records (torch_anchor.py)")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds, drawn as a vertical line")
    parser.add_argument("--target", type=float, default=None, help="bits per character, drawn as a horizontal line")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"--labels gives {len(labels)} labels for {len(args.runs)} runs; give one per run")

    fig, (axes,) = _plot.figure()
    for run, label in zip(args.runs, labels):
        axes.plot(*zip(*evals(run)), "o-", ms=2.5, lw=1.2, label=label)
    axes.plot(*zip(*evals(args.torch)), "s--", ms=2.5, lw=1.2, color="0.3", label="torch.nn.LSTM anchor")
    axes.axvline(args.budget, color="0.6", lw=0.8)
    if args.target is not None:
        axes.axhline(args.target, color="0.6", lw=0.8, ls=":", label=f"target {args.target:g}")
    axes.set(xlabel="wall time, s (compiling and evals included)", ylabel="validation bits per character",
             ylim=(None, 2.6), title=f"{args.budget:.0f} s of training on this machine")
    axes.grid(True, alpha=0.3)
    axes.legend()
    _plot.save(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
