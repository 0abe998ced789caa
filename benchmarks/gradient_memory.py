"""Memory of the compiled gradient, manual against autodiff BPTT (XLA's memory_analysis).

    python benchmarks/gradient_memory.py [--batch 16 --input 64 --hidden 128 --steps 100,1000]
                                         [--cells lstm,gru] [--checkpoint none,316]

Prints a markdown table of temp (scratch) bytes per compiled gradient; nothing is run, only compiled.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import jaxrnn
from jaxrnn import cells


def temp_bytes(cell, grad: str, batch: int, input_size: int, hidden: int, steps: int, checkpoint=None) -> int:
    params = cell.init(jax.random.key(0), input_size, hidden)
    xs = jax.ShapeDtypeStruct((steps, batch, input_size), jnp.float32)

    def loss(params, xs):
        _, hs = jaxrnn.unroll(cell, params, xs, grad=grad, checkpoint=checkpoint)
        return jnp.sum(hs**2)

    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, xs).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--input", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", default="100,1000", help="comma-separated sequence lengths")
    parser.add_argument("--cells", default="simple_rnn,lstm,gru", help="comma-separated cells")
    parser.add_argument("--checkpoint", default="none", help="comma-separated spacings; 'none' stores every step")
    args = parser.parse_args()
    chosen = [cells()[name] for name in args.cells.split(",")]
    spacings = [None if k == "none" else int(k) for k in args.checkpoint.split(",")]
    print(f"batch {args.batch}, input {args.input}, hidden {args.hidden}, float32; "
          f"jax {jax.__version__} on {jax.default_backend()}\n")
    print("| cell | T | checkpoint | manual temp MiB | autodiff temp MiB | manual / autodiff |")
    print("|---|---|---|---|---|---|")
    for cell in chosen:
        for steps in map(int, args.steps.split(",")):
            for k in spacings:
                sizes = (args.batch, args.input, args.hidden, steps, k)
                manual, autodiff = (temp_bytes(cell, grad, *sizes) for grad in ("manual", "autodiff"))
                print(
                    f"| {cell.name} | {steps} | {k or '-'} | {manual / 2**20:.1f} | {autodiff / 2**20:.1f} "
                    f"| {manual / autodiff:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
