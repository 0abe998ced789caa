"""Side-by-side timing: calls interleaved A B A B..., after warm-up, compared by medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax


def interleaved(
    calls: Mapping[str, Callable[[], Any]], *, rounds: int, warmup: int = 2, burst: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each zero-argument function, one call of each per round.

    Interleaving puts every function under the same machine load, so their
    per-round ratios are fair even when the load drifts. The order rotates
    from round to round, so each function follows each other one equally
    often: a call that runs right after another pays for the caches that one
    evicted, which in a fixed order made the same code measure 10-20% slower
    in one slot than in another.

    With ``burst`` > 1 each function runs that many times in a row per round
    and only the last call is timed: it then runs as in a training loop, its
    own worker threads awake and the previous function's gone quiet. torch's
    OpenMP threads spin after each call, and on two cores that slowed
    whatever JAX ran next by 10-40%.
    """
    for _ in range(warmup):
        for call in calls.values():
            jax.block_until_ready(call())
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            for _ in range(burst - 1):
                jax.block_until_ready(calls[name]())
            start = time.perf_counter()
            jax.block_until_ready(calls[name]())
            times[name].append(time.perf_counter() - start)
    return times


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median of per-round ratios ``numerator[r] / denominator[r]``."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))
