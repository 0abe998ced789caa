"""The whole `jaxrnn train` loop, working tree against another commit, in one process: characters per second.

    python benchmarks/train_loop.py --base HEAD~1 [--steps 300 --rounds 3 --batch 32 --seq-len 128]

Unlike ``train_throughput.py``, which times the jitted step alone, this runs
``jaxrnn.training.train`` itself (batches, transfers, metrics, the host's
reads of the loss), alternating base and working tree (A B A B ...) on the
default corpus. Evals and checkpoints come only at the end, so the figure
is the loop's: characters per second between step ``--skip`` and the last
step but one, from each run's ``metrics.jsonl`` wall times. Prints each
run's rate and the median ratio working tree / base (> 1: the working tree
is faster).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import statistics
import sys
import tempfile
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_commits import import_base  # noqa: E402

import jaxrnn.training  # noqa: E402


def rate(training, folder: Path, name: str, config: dict, skip: int) -> float:
    """Characters per second of one run of ``training.train`` between step ``skip`` and the last step but one."""
    options = {**config, "out": str(folder / name)}
    fields = {field.name for field in dataclasses.fields(training.TrainConfig)}
    result = training.train(training.TrainConfig(**{k: v for k, v in options.items() if k in fields}),
                            progress=False, log=lambda _: None)
    times = {r["step"]: r["elapsed_s"] for r in result.records}
    last = result.step - 1  # the last step also evaluates and saves
    return config["batch"] * config["seq_len"] * (last - skip) / (times[last] - times[skip])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="the commit to compare against (default HEAD)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip", type=int, default=20, help="steps left out at the start (compilation)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--cell", default="lstm")
    args = parser.parse_args()
    config = dict(steps=args.steps, batch=args.batch, seq_len=args.seq_len, hidden=args.hidden, cell=args.cell,
                  eval_every=10**9, checkpoint_every=10**9, val_chars=4096)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; {args.cell} hidden {args.hidden}, batch "
          f"{args.batch} × {args.seq_len}, {args.steps} steps per run, rate over steps {args.skip}..{args.steps - 1}")
    with tempfile.TemporaryDirectory() as folder:
        base = importlib.import_module(import_base(args.base, Path(folder)).__name__ + ".training")
        rates = {"base": [], "tree": []}
        for round_ in range(args.rounds + 1):  # round 0 compiles both and is not counted
            for name, lib in (("base", base), ("tree", jaxrnn.training)):
                value = rate(lib, Path(folder), f"{name}{round_}", config, args.skip)
                if round_:
                    rates[name].append(value)
                print(f"round {round_} {name}: {value:,.0f} chars/s" + ("" if round_ else " (warm-up)"), flush=True)
    ratios = [tree / base for tree, base in zip(rates["tree"], rates["base"])]
    print(f"median chars/s: base {statistics.median(rates['base']):,.0f}, working tree "
          f"{statistics.median(rates['tree']):,.0f}; median ratio tree / base {statistics.median(ratios):.3f} "
          f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
