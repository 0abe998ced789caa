"""Memory of the compiled gradient, manual against autodiff BPTT (XLA's memory_analysis).

    python benchmarks/gradient_memory.py [--batch 16 --input 64 --hidden 128 --steps 100,1000]
                                         [--cells lstm,gru] [--checkpoint none,316] [--dtype bfloat16]
                                         [--base COMMIT]

Prints a markdown table of temp (scratch) bytes per compiled gradient; nothing is run, only compiled.
``--base`` adds a column for another commit's manual gradient (imported as in compare_commits.py).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxrnn
from jaxrnn import get_cell


def temp_bytes(cell, grad: str, batch: int, input_size: int, hidden: int, steps: int, checkpoint=None,
               dtype=jnp.float32, lib=jaxrnn) -> int:
    params = jax.tree.map(lambda a: a.astype(dtype), cell.init(jax.random.key(0), input_size, hidden))
    xs = jax.ShapeDtypeStruct((steps, batch, input_size), dtype)

    def loss(params, xs):
        _, hs = lib.unroll(cell, params, xs, grad=grad, checkpoint=checkpoint)
        return jnp.sum(hs.astype(jnp.float32) ** 2)

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
    parser.add_argument("--dtype", default="float32", help="params and inputs dtype, e.g. bfloat16")
    parser.add_argument("--base", default=None, help="also measure this commit's manual gradient")
    args = parser.parse_args()
    dtype = jnp.dtype(args.dtype)
    base = None
    if args.base:
        from compare_commits import import_base  # noqa: PLC0415  (beside this script)

        base = import_base(args.base, Path(tempfile.mkdtemp()))
    chosen = [get_cell(name, "gradient_memory.py --cells") for name in args.cells.split(",")]
    spacings = [None if k == "none" else int(k) for k in args.checkpoint.split(",")]
    print(f"batch {args.batch}, input {args.input}, hidden {args.hidden}, {dtype}; "
          f"jax {jax.__version__} on {jax.default_backend()}\n")
    extra = f" {args.base} manual MiB |" if base else ""
    print(f"| cell | T | checkpoint | manual temp MiB | autodiff temp MiB | manual / autodiff |{extra}")
    print("|---|---|---|---|---|---|" + ("---|" if base else ""))
    for cell in chosen:
        for steps in map(int, args.steps.split(",")):
            for k in spacings:
                sizes = (args.batch, args.input, args.hidden, steps, k)
                manual, autodiff = (temp_bytes(cell, grad, *sizes, dtype=dtype) for grad in ("manual", "autodiff"))
                row = f"| {cell.name} | {steps} | {k or '-'} | {manual / 2**20:.1f} | {autodiff / 2**20:.1f} " \
                      f"| {manual / autodiff:.2f} |"
                if base:
                    old = temp_bytes(getattr(base, cell.name), "manual", *sizes, dtype=dtype, lib=base)
                    row += f" {old / 2**20:.1f} |"
                print(row, flush=True)


if __name__ == "__main__":
    main()
