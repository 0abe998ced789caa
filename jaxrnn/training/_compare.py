"""What the cell-comparison demos share: argument checks, the optimiser, and one training loop per cell.

Each demo (the adding problem, state tracking) trains every named cell with
the same budget: the same data stream, the same optimiser, the same number of
steps, evals at the same steps.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax import Array

import jaxrnn
from jaxrnn import GRAD_MODES, GradMode
from jaxrnn._arguments import positive_int
from jaxrnn._io import atomic_write, progress_bar

GRAD_CLIP = 1.0  # global-norm clip: the loss drops in a cliff when a gated cell catches on, and gradients spike
DECAY_AT = 2 / 3  # the learning rate is divided by DECAY_FACTOR after this fraction of the steps
DECAY_FACTOR = 10


def decay_step(steps: int) -> int:
    return max(1, round(DECAY_AT * steps))


def optimizer(lr: float, steps: int) -> optax.GradientTransformation:
    """Adam after a global-norm clip at :data:`GRAD_CLIP`.

    The rate is ``lr`` for the first :data:`DECAY_AT` of the steps, then ``lr / DECAY_FACTOR``.
    """
    schedule = optax.piecewise_constant_schedule(lr, {decay_step(steps): 1 / DECAY_FACTOR})
    return optax.chain(optax.clip_by_global_norm(GRAD_CLIP), optax.adam(schedule))


class Budget(NamedTuple):
    """What every cell of a demo gets, checked (see :func:`budget`)."""

    hidden: int
    batch: int
    steps: int
    lr: float
    eval_every: int
    seed: int
    grad: GradMode

    def describe(self) -> dict:
        """The budget, the optimiser and the schedule, as the demos' JSON records them."""
        return {**self._asdict(), "optimizer": f"clip_by_global_norm({GRAD_CLIP}) + adam",
                "lr_schedule": f"lr until step {decay_step(self.steps)}, then lr / {DECAY_FACTOR}",
                "backend": jax.default_backend()}


def budget(where: str, *, hidden, batch, steps, lr, eval_every, seed, grad) -> Budget:
    """The demos' shared arguments, checked; each error says what was expected, what came, and the fix."""
    if grad not in GRAD_MODES:
        raise ValueError(f"{where}: grad must be one of {GRAD_MODES}; got {grad!r}. Pass grad='manual' or 'autodiff'.")
    return Budget(
        hidden=positive_int(hidden, "hidden", where), batch=positive_int(batch, "batch", where),
        steps=positive_int(steps, "steps", where), lr=learning_rate(lr, where),
        eval_every=positive_int(eval_every, "eval_every", where),
        seed=positive_int(seed, "seed", where, allow_zero=True), grad=grad)


def trial(start: Callable[[Array], Any], loss_fn: Callable[[Any, Array], Array],
          evaluate: Callable[[Any], dict[str, float]], optimizer, key: Array, train_key: Array) -> Trial:
    """A :class:`Trial` from a model's ``start(key) -> model``, ``loss_fn(model, key)`` and ``evaluate(model)``.

    Each step draws its batch from ``fold_in(train_key, step)`` inside the
    jitted step, so the data never crosses from the host and a seed fixes the
    whole run.
    """

    @jax.jit
    def train_step(state, step):
        model, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(model, jax.random.fold_in(train_key, step))
        updates, opt_state = optimizer.update(grads, opt_state, model)
        return (optax.apply_updates(model, updates), opt_state), loss

    @jax.jit  # run eagerly, each of the init's small ops would compile on its own
    def first(key):
        model = start(key)
        return model, optimizer.init(model)

    return Trial(first(key), train_step, lambda state: evaluate(state[0]))


def write_report(report: dict, out: Path, stem: str, plot: Callable[[dict, Path], None]) -> dict:
    """Adds ``files`` to ``report``, draws ``OUT/STEM.png`` and writes ``OUT/STEM.json``, each atomically."""
    json_path, png_path = out / f"{stem}.json", out / f"{stem}.png"
    report["files"] = {"json": str(json_path), "png": str(png_path)}
    plot(report, png_path)
    atomic_write(json_path, lambda file: file.write(json.dumps(report, indent=1).encode() + b"\n"))
    return report


class Trial(NamedTuple):
    """One cell's run, as pure functions of the demo's making.

    Attributes:
        state: what ``train_step`` carries: ``(model, optimiser state)``.
        train_step: ``(state, step) -> (state, loss)``, jitted; draws its own batch.
        evaluate: ``state -> {metric: float}`` on the held-out data.
    """

    state: Any
    train_step: Callable[[Any, int], tuple[Any, Array]]
    evaluate: Callable[[Any], dict[str, float]]


def train_each(names: list[str], trial: Callable[[Any], Trial], *, steps: int, eval_every: int,
               progress: bool) -> dict[str, dict]:
    """Runs ``trial(cell)`` for each named cell: evals at step 0, every ``eval_every`` steps and at the end.

    Returns, per name: ``curve`` (lists ``step``, ``train_loss`` (the mean
    since the previous eval, None at step 0) and one per metric), ``final_<metric>``,
    ``seconds`` (wall time, compile and evals included) and ``state`` (the
    trained state, for the demo's own last look; not for JSON).
    """
    results: dict[str, dict] = {}
    eval_steps = {*range(eval_every, steps, eval_every), steps}
    for name in names:
        start = time.perf_counter()
        run = trial(jaxrnn.get_cell(name))
        state = run.state
        curve: dict[str, list] = {"step": [], "train_loss": []}
        pending: list[Array] = []  # device losses since the last eval; fetched there, so steps never sync
        with progress_bar(steps, enabled=progress, desc=f"{name:<10}") as bar:
            _record(curve, pending, 0, run.evaluate(state), bar)
            for step in range(1, steps + 1):
                state, loss = run.train_step(state, step)
                pending.append(loss)
                bar.update()
                if step in eval_steps:
                    _record(curve, pending, step, run.evaluate(state), bar)
        metrics = [key for key in curve if key not in ("step", "train_loss")]
        results[name] = {"curve": curve, **{f"final_{key}": curve[key][-1] for key in metrics},
                         "seconds": round(time.perf_counter() - start, 2), "state": state}
    return results


def _record(curve: dict[str, list], pending: list[Array], step: int, metrics: dict[str, float], bar) -> None:
    """Appends one eval to ``curve``: ``step``, the mean of the ``pending`` losses (then cleared), ``metrics``."""
    curve["step"].append(step)
    curve["train_loss"].append(float(np.mean(jax.device_get(pending))) if pending else None)
    for key, value in metrics.items():
        curve.setdefault(key, []).append(value)
    pending.clear()
    bar.set_postfix({key: f"{value:.4g}" for key, value in metrics.items()})


# --------------------------------------------------------------------------
# Argument checks: each says what was expected, what came, and how to fix it.


def learning_rate(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{where}: lr must be a number; got {value!r} of type {type(value).__name__}. Pass e.g. lr=1e-2."
        )
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: lr must be a finite number > 0; got {value!r}. Pass e.g. lr=1e-2.")
    return float(value)


def cell_names(cells: Any, where: str) -> list[str]:
    if isinstance(cells, str):
        raise TypeError(
            f"{where}: cells must be a sequence of names such as ('lstm', 'gru'); got the string {cells!r}. "
            f"Pass cells=({cells!r},) for one cell."
        )
    names = list(cells)
    if not names:
        raise ValueError(f"{where}: cells is empty; pass at least one of {', '.join(jaxrnn.cells())}.")
    unknown = [name for name in names if name not in jaxrnn.cells()]
    if unknown:
        raise ValueError(f"{where}: unknown cell(s) {unknown}; choose from {', '.join(jaxrnn.cells())}.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{where}: cell(s) {repeated} appear more than once; list each cell once.")
    return names
