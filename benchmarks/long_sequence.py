"""A very long sequence in bounded memory: the LSTM gradient at T = 100,000 with checkpointing.

    python benchmarks/long_sequence.py [--steps 100000 --batch 8 --hidden 256 --input 8 --checkpoint 316]

For each grad mode: compiles the gradient, prints XLA's scratch estimate, runs it once and prints
the wall time, whether every gradient is finite, and the process's peak resident memory so far.
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp

import jaxrnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default in (("--steps", 100_000), ("--batch", 8), ("--hidden", 256), ("--input", 8),
                          ("--checkpoint", 316)):
        parser.add_argument(flag, type=int, default=default)
    args = parser.parse_args()
    cell = jaxrnn.lstm
    params = cell.init(jax.random.key(0), args.input, args.hidden)
    xs = jax.random.normal(jax.random.key(1), (args.steps, args.batch, args.input))
    print(f"LSTM, T {args.steps}, batch {args.batch}, hidden {args.hidden}, input {args.input}, "
          f"checkpoint {args.checkpoint}, float32, jax {jax.__version__} on {jax.default_backend()}\n")
    print("| grad | compiled temp GB | run s | finite | peak RSS GB |")
    print("|---|---|---|---|---|")
    for grad in ("manual", "autodiff"):
        def loss(params, xs, grad=grad):
            final, hs = jaxrnn.unroll(cell, params, xs, grad=grad, checkpoint=args.checkpoint)
            return jnp.mean(hs[-1]) + jnp.mean(final.c)

        compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
        start = time.perf_counter()
        grads = jax.block_until_ready(compiled(params, xs))
        seconds = time.perf_counter() - start
        finite = all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(grads))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux
        temp = compiled.memory_analysis().temp_size_in_bytes / 1e9
        print(f"| {grad} | {temp:.2f} | {seconds:.1f} | {finite} | {peak:.2f} |", flush=True)


if __name__ == "__main__":
    main()
