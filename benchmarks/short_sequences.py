"""Compile and run time of short sequences' gradients: autodiff and each backward strategy, side by side.

    python benchmarks/short_sequences.py --shapes 16x32x64x3,64x8x128x8 --cells lstm,gru --rounds 21

Variants (``--variants``): ``autodiff``; ``in_place`` and ``unrolled``, the
hand-written BPTT with that strategy forced whatever T is (through
``jaxrnn._bptt.UNROLL_MAX_STEPS``); ``auto``, the strategy the engine picks;
and ``stackedU``, the stacked layout scanned with ``unroll=U`` (for example
``stacked2``). Each gradient is lowered and compiled once, and the time of
``lowered.compile()`` is printed (one compilation: expect ±20%, so repeat the
run); then the calls are interleaved for the rounds, and the median run time
is printed; both also as ratios to autodiff's (to the first variant
without ``autodiff``).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import jax
import jax.numpy as jnp

import jaxrnn
from jaxrnn import _bptt
from jaxrnn.bench._main import _shapes


def rule(variant: str) -> tuple[int | None, int | None]:
    """``(UNROLL_MAX_STEPS, scan unroll factor)`` that ``variant`` forces (None: the engine's own), or ValueError."""
    factor = variant.removeprefix("stacked")
    if variant in ("autodiff", "auto"):
        return None, None
    if variant in ("in_place", "unrolled"):
        return (0 if variant == "in_place" else 10**9), None
    if factor != variant and factor.isdigit():
        return 10**9, int(factor)
    raise ValueError(f"unknown variant {variant!r}: use autodiff, in_place, unrolled, auto or stackedU (e.g. stacked2)")


@contextlib.contextmanager
def forced(variant: str):
    """The engine's strategy rule for one variant, restored afterwards."""
    saved = _bptt.UNROLL_MAX_STEPS, _bptt._unroll
    max_steps, factor = rule(variant)
    if max_steps is not None:
        _bptt.UNROLL_MAX_STEPS = max_steps
    if factor is not None:
        _bptt._unroll = lambda strategy, steps: min(max(steps, 1), factor) if strategy.unrolled else 1
    try:
        yield
    finally:
        _bptt.UNROLL_MAX_STEPS, _bptt._unroll = saved


def compiled_gradient(cell, params, xs, dy, variant: str):
    """``(compiled gradient, compile seconds)`` of ``sum(hs · dy)`` for one variant."""
    grad = "autodiff" if variant == "autodiff" else "manual"

    def loss(p, x, d):
        return jnp.sum(jaxrnn.unroll(cell, p, x, grad=grad)[1] * d)

    with forced(variant):
        lowered = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, xs, dy)
    start = time.perf_counter()  # once: a second lowered.compile() in the process hits JAX's cache
    compiled = lowered.compile()
    return compiled, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=_shapes, default=_shapes("16x32x64x3,4x128x256x5,64x8x128x8"),
                        help="BxXxHxT, comma-separated")
    parser.add_argument("--cells", default="lstm,gru,simple_rnn,slstm,projected_lstm")
    parser.add_argument("--variants", default="autodiff,in_place,unrolled,auto")
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    variants = args.variants.split(",")
    for variant in variants:
        rule(variant)  # an unknown name fails before anything compiles
    base = "autodiff" if "autodiff" in variants else variants[0]  # what the ratios are to
    for batch, inputs, hidden, steps in args.shapes:
        for name in args.cells.split(","):
            cell = jaxrnn.get_cell(name)
            params = cell.init(jax.random.key(0), inputs, hidden)
            xs = jax.random.normal(jax.random.key(1), (steps, batch, inputs))
            out = jax.eval_shape(lambda: jaxrnn.unroll(cell, params, xs)[1])  # noqa: B023  (called at once)
            dy = jax.random.normal(jax.random.key(2), out.shape)
            runs = {v: compiled_gradient(cell, params, xs, dy, v) for v in variants}
            times: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(args.rounds):
                for variant, (gradient, _) in runs.items():
                    start = time.perf_counter()
                    jax.block_until_ready(gradient(params, xs, dy))
                    times[variant].append(time.perf_counter() - start)
            run_base, compile_base = statistics.median(times[base]), runs[base][1]
            line = "  ".join(
                f"{v}: run {statistics.median(times[v]) * 1e3:.3f} ms ({statistics.median(times[v]) / run_base:.2f}), "
                f"compile {runs[v][1]:.2f} s ({runs[v][1] / compile_base:.2f})" for v in variants)
            print(f"{name} B{batch} X{inputs} H{hidden} T{steps} ({jaxrnn.backward_strategy(cell, steps)}): {line}",
                  flush=True)


if __name__ == "__main__":
    main()
