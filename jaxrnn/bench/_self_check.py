"""The self-check: each cell's hand-written gradient against JAX's autodiff, in float32 and bfloat16.

The comparison ``python -m jaxrnn`` prints (:func:`jaxrnn._agreement.manual_vs_autodiff`:
the gradient of a loss on every output and the final state with respect to
params, inputs and a nonzero initial state), without its timing, with
bfloat16 beside float32, kept as rows for the suite's report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import jax.numpy as jnp

from jaxrnn import get_cell
from jaxrnn._agreement import F32_TOLERANCE, manual_vs_autodiff
from jaxrnn.bench._suite import DTYPES, TOLERANCES

SHAPE = (32, 64, 128, 100)  # B, X, H, T: the defaults of `python -m jaxrnn check`
# float32 as `python -m jaxrnn check` holds it; bfloat16 as the suite holds each implementation (see _suite).
TOLERANCE = {"float32": F32_TOLERANCE, "bfloat16": TOLERANCES["bfloat16"]}


def self_check(
    cells: Iterable[str], shape: tuple[int, int, int, int] = SHAPE, *, log: Callable[[str], None] = print
) -> dict:
    """Manual against autodiff for each cell in each of :data:`DTYPES`.

    Args:
        cells: registered cells with a hand-written BPTT.
        shape: ``(B, X, H, T)``.
        log: where each cell's line goes as it is checked.

    Returns:
        ``{"shape": [B, X, H, T], "tolerance": {dtype: float}, "seconds": float,
        "rows": [{"cell", "dtype", "max_rel_error", "agrees"}, ...]}``.
    """
    started = time.perf_counter()
    rows = []
    for name in cells:
        cell = get_cell(name)
        errors = {dtype: manual_vs_autodiff(cell, shape, jnp.dtype(dtype)) for dtype in DTYPES}
        rows += [{"cell": name, "dtype": dtype, "max_rel_error": error, "agrees": error < TOLERANCE[dtype]}
                 for dtype, error in errors.items()]
        log(f"  {name:<16}" + "  ".join(f"{dtype} {error:.1e}" for dtype, error in errors.items())
            + ("" if all(r["agrees"] for r in rows[-len(DTYPES):]) else "  DISAGREE"))
    return {"shape": list(shape), "tolerance": dict(TOLERANCE), "seconds": round(time.perf_counter() - started, 1),
            "rows": rows}
