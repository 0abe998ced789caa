"""Where one compiled gradient spends its time: XLA's CPU thunks, from a profiler trace.

    python benchmarks/profile_gradient.py --cell lstm --shape 32x64x128x100 --grad manual

Prints the thunks (fusions, matmuls, loops) by total time per call, with how
many times each ran per call: a loop body's thunks run once per time step.
It sets ``XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true`` for itself (before
JAX starts), which is what makes XLA name each thunk in the trace. The trace
itself adds overhead, and thunks that run on worker threads (Eigen's matmuls)
show only their launch, so read the figures as a guide to where time goes,
not as timings: those come from ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import tempfile
from pathlib import Path

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import jax.numpy as jnp  # noqa: E402

import jaxrnn  # noqa: E402
from jaxrnn.bench._main import _shapes  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", default="lstm", choices=list(jaxrnn.cells(manual=True)))
    parser.add_argument("--shape", type=_shapes, default=[(32, 64, 128, 100)], help="BxXxHxT")
    parser.add_argument("--grad", default="manual", choices=list(jaxrnn.GRAD_MODES))
    parser.add_argument("--calls", type=int, default=10, help="profiled calls (default 10)")
    parser.add_argument("--top", type=int, default=30, help="thunks to show (default 30)")
    args = parser.parse_args()
    (batch, inputs, hidden, steps), cell = args.shape[0], getattr(jaxrnn, args.cell)

    params = cell.init(jax.random.key(0), inputs, hidden)
    xs = jax.random.normal(jax.random.key(1), (steps, batch, inputs))
    dy = jax.random.normal(jax.random.key(2), (steps, batch, hidden))

    def loss(p, x, d):
        return jnp.sum(jaxrnn.unroll(cell, p, x, grad=args.grad)[1] * d)

    gradient = jax.jit(jax.grad(loss, argnums=(0, 1)))
    for _ in range(3):
        jax.block_until_ready(gradient(params, xs, dy))
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            for _ in range(args.calls):
                jax.block_until_ready(gradient(params, xs, dy))
        trace = next(Path(folder).rglob("*.trace.json.gz"))
        with gzip.open(trace) as file:
            events = json.load(file)["traceEvents"]

    total, count = collections.Counter(), collections.Counter()
    for event in events:
        if event.get("ph") == "X" and not event["name"].startswith("$"):  # "$..." are Python frames
            total[event["name"]] += event["dur"]
            count[event["name"]] += 1
    print(f"{args.cell} B{batch} X{inputs} H{hidden} T{steps}, grad={args.grad}: ms per call, runs per call")
    for name, micros in total.most_common(args.top):
        print(f"{micros / args.calls / 1e3:9.3f} ms  x{count[name] // args.calls:<6d} {name[:80]}")


if __name__ == "__main__":
    main()
