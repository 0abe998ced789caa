"""The working tree's jaxrnn against another commit's, in one process: how a change was measured.

    python benchmarks/compare_commits.py --base HEAD --cell lstm --shapes 32x64x128x100,8x32x64x1000

``git archive`` puts the base commit's ``jaxrnn/`` in a temporary folder,
renamed ``jaxrnn_base`` so both import side by side. Each shape times the
base's manual gradient, the working tree's, and the working tree's autodiff,
interleaved in bursts as the suite does (see ``jaxrnn.bench._suite.Settings``),
once in each compile order, and prints the median per-round ratio
base / working tree (> 1: the change made it faster).
"""

from __future__ import annotations

import argparse
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxrnn
from jaxrnn._timing import interleaved, median_ratio
from jaxrnn.bench._main import _shapes

ROOT = Path(__file__).resolve().parent.parent


def import_base(commit: str, folder: Path):
    """``jaxrnn`` as of ``commit``, imported as ``jaxrnn_base``."""
    archive = subprocess.run(["git", "archive", commit, "jaxrnn"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / "jaxrnn_base"
    (folder / "jaxrnn").rename(package)
    for path in package.rglob("*.py"):  # its own imports must find itself, not the working tree
        text = path.read_text()
        path.write_text(text.replace("from jaxrnn.", "from jaxrnn_base.")
                        .replace("from jaxrnn import", "from jaxrnn_base import")
                        .replace("import jaxrnn\n", "import jaxrnn_base as jaxrnn\n"))
    sys.path.insert(0, str(folder))
    return importlib.import_module("jaxrnn_base")


def gradient(lib, cell_name: str, grad: str, shape, xs, dy):
    batch, inputs, hidden, steps = shape
    cell = getattr(lib, cell_name)
    params = cell.init(jax.random.key(0), inputs, hidden)

    def loss(p, x, d):
        return jnp.sum(lib.unroll(cell, p, x, grad=grad)[1] * d)

    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, xs, dy).compile()
    return lambda: compiled(params, xs, dy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="the commit to compare against (default HEAD)")
    parser.add_argument("--cell", default="lstm", choices=list(jaxrnn.cells(manual=True)),
                        help="a built-in cell (the base commit must have it too)")
    parser.add_argument("--shapes", type=_shapes, default=[(32, 64, 128, 100), (8, 32, 64, 1000)], help="BxXxHxT,...")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = import_base(args.base, Path(folder))
        for shape in args.shapes:
            batch, inputs, hidden, steps = shape
            xs = jax.random.normal(jax.random.key(1), (steps, batch, inputs))
            dy = jax.random.normal(jax.random.key(2), (steps, batch, hidden))
            ratios = []
            for order in ((base, jaxrnn), (jaxrnn, base)):
                calls = {("base" if lib is base else "tree") + " manual":
                         gradient(lib, args.cell, "manual", shape, xs, dy) for lib in order}
                calls["tree autodiff"] = gradient(jaxrnn, args.cell, "autodiff", shape, xs, dy)
                times = interleaved(calls, rounds=args.rounds, burst=3)
                ratios.append(median_ratio(times["base manual"], times["tree manual"]))
                medians = ", ".join(f"{name} {1e3 * statistics.median(t):.2f} ms" for name, t in times.items())
                print(f"{args.cell} {shape} ({'base' if order[0] is base else 'tree'} compiled first): {medians}")
            print(f"  base / tree: {ratios[0]:.3f} and {ratios[1]:.3f}, mean {statistics.mean(ratios):.3f}", flush=True)


if __name__ == "__main__":
    main()
