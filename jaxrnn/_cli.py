"""The ``jaxrnn`` command (also ``python -m jaxrnn``)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import __version__, _timing
from jaxrnn._cells import CELLS
from jaxrnn._parallel import PARALLEL_CELLS
from jaxrnn._unroll import unroll

CELL_NAMES = {cell.name: cell for cell in CELLS + PARALLEL_CELLS}
F64_TOLERANCE = 1e-10  # relative; the hand-written and autodiff BPTT differ only by rounding
F32_TOLERANCE = 1e-4


def _problem(cell, batch, input_size, hidden, steps, dtype, seed=0):
    """Params, inputs and a nonzero initial carry, plus cotangent weights for the loss."""
    k_params, k_xs, k_carry, k_out = jax.random.split(jax.random.key(seed), 4)
    params = cell.init(k_params, input_size, hidden, dtype=dtype)
    xs = jax.random.normal(k_xs, (steps, batch, input_size), dtype)
    carry = jax.tree.map(
        lambda z: 0.5 * jax.random.normal(k_carry, z.shape, dtype), cell.initial_carry(batch, hidden, dtype=dtype)
    )
    weights = jax.random.normal(k_out, (steps, batch, hidden), dtype)
    return params, xs, carry, weights


def _gradient_fn(cell, grad):
    """A jitted ``(params, xs, carry, weights) -> grads`` of a loss on the outputs and the final state."""

    def loss(params, xs, carry, weights):
        final, hs = unroll(cell, params, xs, carry, grad=grad)
        return jnp.sum(hs * weights) + sum(jnp.sum(jnp.tanh(leaf)) for leaf in jax.tree.leaves(final))

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def _relative_error(a, b) -> float:
    """The largest, over leaves, of max|a - b| / max|b|."""
    return max(
        float(jnp.max(jnp.abs(x - y)) / jnp.maximum(jnp.max(jnp.abs(y)), jnp.finfo(y.dtype).tiny))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def _agreement(cell, sizes, dtype) -> float:
    args = _problem(cell, *sizes, dtype)
    return _relative_error(_gradient_fn(cell, "manual")(*args), _gradient_fn(cell, "autodiff")(*args))


def check(args) -> int:
    """For each cell: do manual and autodiff gradients agree, and which is faster?"""
    sizes = (args.batch, args.input, args.hidden, args.steps)
    print(f"jaxrnn {__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(
        f"gradient of a loss on all outputs and the final state w.r.t. params, inputs and initial state;\n"
        f"batch {args.batch}, input {args.input}, hidden {args.hidden}, T {args.steps}; timings float32, "
        f"{args.rounds} interleaved rounds, medians\n"
    )
    header = ("cell", "agree", "f64 rel err", "f32 rel err", "manual ms", "autodiff ms", "autodiff/manual", "compile s")
    print("{:<11} {:>5} {:>11} {:>11} {:>9} {:>11} {:>15} {:>16}".format(*header))
    all_agree = True
    for name in args.cells:
        cell = CELL_NAMES[name]
        with jax.enable_x64(True):
            err64 = _agreement(cell, sizes, jnp.float64)
        problem = _problem(cell, *sizes, jnp.float32)
        grads = {mode: _gradient_fn(cell, mode) for mode in ("manual", "autodiff")}
        compile_s = {}
        for mode, fn in grads.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*problem))
            compile_s[mode] = time.perf_counter() - start
        err32 = _relative_error(grads["manual"](*problem), grads["autodiff"](*problem))
        times = _timing.interleaved({mode: lambda fn=fn: fn(*problem) for mode, fn in grads.items()}, rounds=args.rounds)
        agree = err64 < F64_TOLERANCE and err32 < F32_TOLERANCE
        all_agree &= agree
        print(
            f"{name:<11} {'yes' if agree else 'NO':>5} {err64:>11.1e} {err32:>11.1e} "
            f"{1e3 * statistics.median(times['manual']):>9.2f} {1e3 * statistics.median(times['autodiff']):>11.2f} "
            f"{_timing.median_ratio(times['autodiff'], times['manual']):>15.2f} "
            f"{compile_s['manual']:>7.2f} / {compile_s['autodiff']:<6.2f}"
        )
    print(
        f"\nagree: relative error below {F64_TOLERANCE:g} in float64 and {F32_TOLERANCE:g} in float32. "
        "compile s: first call, manual / autodiff."
    )
    return 0 if all_agree else 1


def _cell_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CELL_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown cell(s) {unknown}; choose from {', '.join(CELL_NAMES)}")
    return names


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxrnn", description="Recurrent networks in JAX with hand-written BPTT.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check_parser = commands.add_parser(
        "check", help="compare manual and autodiff gradients for each cell, and time them (the default)"
    )
    for flag, default, help_text in (
        ("--batch", 32, "batch size"),
        ("--input", 64, "input features"),
        ("--hidden", 128, "hidden size"),
        ("--steps", 100, "sequence length T"),
        ("--rounds", 20, "timing rounds"),
    ):
        check_parser.add_argument(flag, type=_positive, default=default, help=f"{help_text} (default {default})")
    check_parser.add_argument(
        "--cells", type=_cell_list, default=list(CELL_NAMES), help="comma-separated cells (default: all)"
    )
    check_parser.set_defaults(run=check)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["check", *argv]  # `jaxrnn` alone runs the check
    args = parser.parse_args(argv)
    return args.run(args)
