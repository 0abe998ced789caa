"""Batch-major against time-major input: does ``time_major=False`` cost time?

    python benchmarks/time_major.py [--batch 32 --input 64 --hidden 128 --steps 100 --rounds 30]

Each layout gets its inputs already in that layout, so the difference is what unroll does with
them. Gradient and forward of an LSTM, float32, calls interleaved after warm-up; medians.
"""

from __future__ import annotations

import argparse
import functools
import statistics

import jax
import jax.numpy as jnp

import jaxrnn
from jaxrnn import _timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default in (("--batch", 32), ("--input", 64), ("--hidden", 128), ("--steps", 100), ("--rounds", 30)):
        parser.add_argument(flag, type=int, default=default)
    args = parser.parse_args()
    print(f"batch {args.batch}, input {args.input}, hidden {args.hidden}, T {args.steps}, float32, "
          f"{args.rounds} interleaved rounds; jax {jax.__version__} on {jax.default_backend()}\n")
    print("| cell | grad | pass | time-major ms | batch-major ms | batch / time (median ratio) |")
    print("|---|---|---|---|---|---|")
    xs = jax.random.normal(jax.random.key(1), (args.steps, args.batch, args.input))
    inputs = {True: xs, False: jnp.swapaxes(xs, 0, 1).copy()}
    for cell in (jaxrnn.lstm, jaxrnn.gru):
        params = cell.init(jax.random.key(0), args.input, args.hidden)
        for grad in ("manual", "autodiff"):
            for kind in ("gradient", "forward"):
                def fn(time_major, cell=cell, grad=grad, kind=kind):
                    def loss(weights, xs):
                        _, hs = jaxrnn.unroll(cell, weights, xs, grad=grad, time_major=time_major)
                        return jnp.sum(hs**2)

                    return jax.jit(jax.grad(loss) if kind == "gradient" else loss)

                calls = {tm: functools.partial(fn(tm), params, inputs[tm]) for tm in (True, False)}
                times = _timing.interleaved(calls, rounds=args.rounds)
                print(f"| {cell.name} | {grad} | {kind} | {1e3 * statistics.median(times[True]):.2f} "
                      f"| {1e3 * statistics.median(times[False]):.2f} "
                      f"| {_timing.median_ratio(times[False], times[True]):.3f} |", flush=True)


if __name__ == "__main__":
    main()
