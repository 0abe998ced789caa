"""Sizing a run to a wall-time budget (``--time``): time the warm-up's steps, count the steps that fit.

The timed steps are the run's own: the warm-up's learning rates do not depend
on the run's length, so the run goes on from them, and equals a run given
the chosen count as ``--steps`` from its first step.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import NamedTuple

MARGIN = 0.06  # of the budget, held back: on a shared machine a run's mean step drifts from its first ones' median
TIMING_SHARE = 0.05  # of the budget, at most, spent timing steps (they train: nothing is thrown away)


class Timing(NamedTuple):
    """What one part of a run costs, in seconds, measured after compiling.

    Attributes:
        step_s: one training step in steady state, the host's share included:
            the median interval between the timed steps' results.
        eval_s: one validation eval with the curve's redraw.
        save_s: one checkpoint.
    """

    step_s: float
    eval_s: float
    save_s: float


class Plan(NamedTuple):
    """The step count chosen for a budget, and when the run should end.

    Attributes:
        steps: the run's length, the steps already run included.
        expected_s: when the run should end, from its start.
    """

    steps: int
    expected_s: float


def step_seconds(elapsed: Sequence[float]) -> float:
    """The median interval between consecutive steps' result times (the first time includes compiling).

    A median, so that a moment when the machine stalls, or an eval between
    two steps, does not size the whole run.
    """
    intervals = [b - a for a, b in zip(elapsed, elapsed[1:])]
    return statistics.median(intervals)


def _events(start: int, steps: int, every: int) -> int:
    """Evals (or checkpoints) after step ``start`` up to ``steps``: one every ``every`` steps and one at the end."""
    return steps // every - start // every + (steps % every > 0)


def run_seconds(start: int, steps: int, timing: Timing, eval_every: int, checkpoint_every: int) -> float:
    """The expected wall time from step ``start`` to ``steps``, with their evals and checkpoints."""
    if steps <= start:
        return 0.0
    return ((steps - start) * timing.step_s + _events(start, steps, eval_every) * timing.eval_s
            + _events(start, steps, checkpoint_every) * timing.save_s)


def steps_within(seconds: float, start: int, timing: Timing, eval_every: int, checkpoint_every: int) -> int:
    """The largest step count (at least ``start``) whose steps after ``start`` take at most ``seconds``."""
    per_step = timing.step_s + timing.eval_s / eval_every + timing.save_s / checkpoint_every
    steps = start + max(0, int(seconds / per_step))

    def cost(n: int) -> float:
        return run_seconds(start, n, timing, eval_every, checkpoint_every)

    while steps > start and cost(steps) > seconds:
        steps -= 1
    while cost(steps + 1) <= seconds:
        steps += 1
    return steps


def plan(budget_s: float, spent_s: float, done: int, timing: Timing, eval_every: int, checkpoint_every: int) -> Plan:
    """The steps that fit in ``budget_s`` less :data:`MARGIN` of it, ``spent_s`` and ``done`` steps in.

    At least one step more than ``done``: the last step is the one that
    evaluates and saves, even when the budget is spent already.
    """
    steps = max(done + 1, steps_within(budget_s * (1 - MARGIN) - spent_s, done, timing, eval_every, checkpoint_every))
    return Plan(steps, spent_s + run_seconds(done, steps, timing, eval_every, checkpoint_every))
