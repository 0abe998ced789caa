"""The state-tracking demo: running parity, which nonlinear recurrences learn and linear ones cannot.

The task: a bit string ``b_1 … b_T``, and at every step the label
``y_t = b_1 ⊕ … ⊕ b_t``, the parity so far. The state it needs is one bit,
flipped by every 1. A recurrence that is linear in its state with a positive
diagonal transition (minGRU, minLSTM, Mamba: each step ``h' = a(x) ⊙ h + b(x)``
with ``0 < a < 1``) cannot flip it: in finite precision no such recurrence, of
any width, tracks parity at every length (Merrill et al. 2024; Grazzi et al.
2025). An LSTM, GRU or sLSTM can, through its nonlinearity.

Training sequences have length :data:`DEFAULTS` ``["length"]`` (64), so with a
label at every step they teach every length up to 64. The held-out sequences
have length ``test_length`` (256): accuracy on their steps 1-64 is accuracy
at the trained lengths, on steps 65-256 length generalisation.

Model: the cell over the sequence, then a linear readout of each output to
two logits; loss: the mean cross-entropy over every step. Always guessing
scores 50 %.

:func:`run_state_tracking` trains each cell with the same budget (same data,
same optimiser, same steps) and writes ``state_tracking.json`` and
``state_tracking.png``; ``jaxrnn state-tracking`` is its command-line face.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

from jaxrnn import Cell, GradMode, get_cell, unroll
from jaxrnn._arguments import positive_int
from jaxrnn.training._compare import Trial, budget, cell_names, optimizer, train_each, trial, write_report

DEFAULT_CELLS = ("lstm", "gru", "slstm", "mingru", "minlstm")
"""Three nonlinear recurrences and two linear ones (any registered cell may be named)."""

DEFAULT_OUT = "state_tracking_out"

EVAL_BATCH = 512
"""Held-out sequences, drawn once from the seed and scored at every eval."""

INPUT_FEATURES = 2  # the bit, one-hot

# Defaults, measured on 2 CPU cores (benchmarks/results/state_tracking/state_tracking.json): the five cells in
# about 2 minutes together; LSTM, GRU and sLSTM are at accuracy 1.000 on every held-out step from the eval at
# step 200 (sLSTM 100) on; minGRU and minLSTM stay at chance (0.50) throughout.
DEFAULTS: dict[str, Any] = dict(
    length=64, test_length=256, hidden=64, batch=64, steps=1000, lr=1e-2, eval_every=100, seed=0
)


def parity_problem(key: Array, batch: int, length: int) -> tuple[Array, Array]:
    """A batch of bit strings and their running parity, time-major.

    Args:
        key: a PRNG key.
        batch: sequences B ≥ 1.
        length: steps T ≥ 1.

    Returns:
        ``(xs, labels)``: ``xs`` float32 (T, B, 2), the one-hot bits;
        ``labels`` int32 (T, B), ``labels[t] = b_0 ⊕ … ⊕ b_t``.
    """
    where = "parity_problem"
    return _parity_problem(key, positive_int(batch, "batch", where), positive_int(length, "length", where))


@partial(jax.jit, static_argnums=(1, 2))
def _parity_problem(key: Array, batch: int, length: int) -> tuple[Array, Array]:
    bits = jax.random.bernoulli(key, 0.5, (length, batch)).astype(jnp.int32)
    return jax.nn.one_hot(bits, 2, dtype=jnp.float32), jnp.cumsum(bits, axis=0) % 2


class Model(NamedTuple):
    """The cell's params and a linear readout of every output to two logits.

    Attributes:
        cell: the cell's params (input size 2).
        w_out: (F, 2), F the cell's output size.
        b_out: (2,).
    """

    cell: Any
    w_out: Array
    b_out: Array


def init_model(cell: Cell, key: Array, hidden: int) -> Model:
    """The cell's own init; readout ``N(0, 1/F)``, zero bias."""
    k_cell, k_out = jax.random.split(key)
    features = cell.sizes(hidden)[0]
    return Model(
        cell=cell.init(k_cell, INPUT_FEATURES, hidden, dtype=jnp.float32),
        w_out=jax.random.normal(k_out, (features, 2), jnp.float32) / math.sqrt(features),
        b_out=jnp.zeros((2,), jnp.float32),
    )


def logits(cell: Cell, model: Model, xs: Array, grad: GradMode = "manual") -> Array:
    """xs (T, B, 2) -> logits (T, B, 2), one pair per step."""
    _, hs = unroll(cell, model.cell, xs, grad=grad)
    return hs @ model.w_out + model.b_out


def _trial(cell: Cell, optimizer, *, key: Array, train_key: Array, hidden: int, batch: int, length: int,
           grad: GradMode, eval_xs: Array, eval_labels: Array, seen: int) -> Trial:
    """The cell's run: cross-entropy at every step of fresh batches; accuracy on the held-out sequences."""

    def loss_fn(model: Model, key: Array) -> Array:
        xs, labels = parity_problem(key, batch, length)
        return optax.softmax_cross_entropy_with_integer_labels(logits(cell, model, xs, grad), labels).mean()

    def evaluate(model: Model) -> dict[str, float]:
        by_step = accuracy_by_step(cell, model, eval_xs, eval_labels)
        return {"accuracy_seen": float(jnp.mean(by_step[:seen])), "accuracy_longer": float(jnp.mean(by_step[seen:]))}

    return trial(partial(init_model, cell, hidden=hidden), loss_fn, evaluate, optimizer, key, train_key)


@partial(jax.jit, static_argnums=0)
def accuracy_by_step(cell: Cell, model: Model, xs: Array, labels: Array) -> Array:
    """The fraction of sequences whose label at step t is predicted right, per step: (T,)."""
    return jnp.mean(jnp.argmax(logits(cell, model, xs), axis=-1) == labels, axis=1)


def run_state_tracking(
    *,
    cells: Iterable[str] = DEFAULT_CELLS,
    length: int = DEFAULTS["length"],
    test_length: int = DEFAULTS["test_length"],
    hidden: int = DEFAULTS["hidden"],
    batch: int = DEFAULTS["batch"],
    steps: int = DEFAULTS["steps"],
    lr: float = DEFAULTS["lr"],
    eval_every: int = DEFAULTS["eval_every"],
    seed: int = DEFAULTS["seed"],
    grad: GradMode = "manual",
    out: str | os.PathLike = DEFAULT_OUT,
    progress: bool = True,
) -> dict:
    """Trains each cell on running parity with the same budget; writes JSON and a PNG.

    Every cell sees the same training batches, starts from params drawn from
    the same key, and is scored on the same :data:`EVAL_BATCH` held-out
    sequences of length ``test_length``. The optimiser is that of the memory
    task (:func:`jaxrnn.training._compare.optimizer`).

    Args:
        cells: names of registered cells; at least one, no repeats.
        length: training sequence length, ≥ 1.
        test_length: held-out sequence length, ≥ ``length``.
        hidden, batch, steps, eval_every: sizes, each > 0.
        lr: Adam's initial learning rate.
        seed: fixes params, data and the held-out set.
        grad: ``"manual"`` or ``"autodiff"``.
        out: folder for ``state_tracking.json`` and ``state_tracking.png``.
        progress: show a tqdm bar per cell.

    Returns:
        The dict written to ``state_tracking.json``: ``config`` and ``cells``,
        which maps each name to its ``curve`` (lists ``step``, ``train_loss``,
        ``accuracy_seen`` (steps 1 to ``length``) and ``accuracy_longer``
        (steps ``length`` + 1 to ``test_length``)), the ``final_`` values of
        both accuracies, ``accuracy_by_step`` (the trained model's accuracy at
        each held-out step) and ``seconds``; plus ``files``.

    Raises:
        ValueError, TypeError: an unknown or repeated cell, a bad size, lr or grad;
            raised before any work.
    """
    where = "run_state_tracking"
    names = cell_names(cells, where)
    length = positive_int(length, "length", where)
    test_length = positive_int(test_length, "test_length", where)
    if test_length <= length:
        raise ValueError(f"{where}: test_length must be longer than length, to test length generalisation; got "
                         f"test_length={test_length} with length={length}. Pass e.g. test_length={4 * length}.")
    given = budget(where, hidden=hidden, batch=batch, steps=steps, lr=lr, eval_every=eval_every, seed=seed, grad=grad)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    k_init, k_train, k_eval = jax.random.split(jax.random.key(given.seed), 3)
    eval_xs, eval_labels = parity_problem(k_eval, EVAL_BATCH, test_length)
    make = partial(_trial, optimizer=optimizer(given.lr, given.steps), key=k_init, train_key=k_train,
                   hidden=given.hidden, batch=given.batch, length=length, grad=given.grad, eval_xs=eval_xs,
                   eval_labels=eval_labels, seen=length)
    results = train_each(names, make, steps=given.steps, eval_every=given.eval_every, progress=progress)
    for name, result in results.items():
        model = result.pop("state")[0]
        by_step = accuracy_by_step(get_cell(name), model, eval_xs, eval_labels)
        result["accuracy_by_step"] = [round(float(a), 4) for a in by_step]
    report = {
        "task": "running parity",
        "config": {"cells": names, "length": length, "test_length": test_length, **given.describe(),
                   "eval_batch": EVAL_BATCH},
        "chance": 0.5,
        "cells": results,
    }
    return write_report(report, out, "state_tracking", _plot)


def _plot(report: dict, path: Path) -> None:
    """Two panels: held-out accuracy at each step of the sequence, and the training loss against step."""
    from jaxrnn._plot import figure, save

    config = report["config"]
    fig, (by_step_ax, loss_ax) = figure(1, 2)
    for name, result in report["cells"].items():
        accuracy = result["accuracy_by_step"]
        by_step_ax.plot(range(1, len(accuracy) + 1), accuracy, label=name)
        curve = result["curve"]
        loss_ax.plot(curve["step"][1:], curve["train_loss"][1:], label=name)
    by_step_ax.axvline(config["length"], color="gray", linestyle=":", label=f"training length {config['length']}")
    by_step_ax.axhline(0.5, color="gray", linestyle="--", label="chance")
    by_step_ax.set(xlabel="step t of a held-out sequence", ylabel="accuracy of the parity at t", ylim=(0.4, 1.02))
    loss_ax.set(xlabel="training step", ylabel="training cross-entropy (nats)", yscale="log")
    for ax in (by_step_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(
        f"Running parity: trained at length {config['length']}, tested at {config['test_length']}; hidden "
        f"{config['hidden']}, batch {config['batch']}, {config['steps']} steps, Adam lr {config['lr']:g}, "
        f"seed {config['seed']}"
    )
    save(fig, path)
