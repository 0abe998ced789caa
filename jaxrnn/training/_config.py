"""What defines a ``jaxrnn train`` run: :class:`TrainConfig`, its checks, durations, the optimiser and its rates."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from jaxrnn import GRAD_MODES
from jaxrnn.training import _checkpoint

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "linear", "constant")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
DEFAULT_TIME = 300.0  # seconds: the budget of a run given neither --steps nor --time
MIN_TIMED_STEPS = 5  # --time needs at least this many warm-up steps to time
# What a checkpoint's arrays or data stream depend on: these cannot change on --resume.
# (The corpus is checked by content, not by path: see the loop's _check_corpus.)
RESUME_FIXED = ("cell", "heads", "layers", "hidden", "embed", "dropout", "batch", "seq_len", "seed", "optimizer")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([hms])")


class TrainingError(ValueError):
    """Bad options, or a state training cannot continue from; the message says what to change."""


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``: a number of seconds, or a duration such as ``"5m"``, ``"1h30m"`` or ``"90s"``.

    Raises:
        TrainingError: anything else, or a duration that is not > 0.
    """
    if isinstance(value, bool):
        raise TrainingError(f"--time must be a duration such as 90s, 5m or 2h; got {value!r}.")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        try:
            seconds = float(text)  # a bare number is seconds
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or _DURATION.sub("", text).strip():
                raise TrainingError(
                    f"--time must be a duration such as 90s, 5m, 2h or 1h30m (a bare number is seconds); "
                    f"got {value!r}.") from None
            seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if not (math.isfinite(seconds) and seconds > 0):
        raise TrainingError(f"--time must be a duration > 0 such as 90s, 5m or 2h; got {value!r}.")
    return seconds


def format_duration(seconds: float) -> str:
    """``300.0`` → ``"5m"``, ``5400.0`` → ``"1h30m"``, ``90.0`` → ``"1m30s"``: how ``--time`` would be written."""
    whole = round(seconds)
    if abs(seconds - whole) > 1e-6 or whole == 0:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n) or "0s"


def _check_heads(cell: str, heads: int, hidden: int) -> None:
    """``--heads`` needs a cell whose init takes ``num_heads``, and must divide ``--hidden``."""
    headed = jaxrnn.cells(taking="num_heads")
    if cell not in headed:
        raise TrainingError(f"--heads {heads}: the {cell} cell has no heads; use one of {', '.join(headed)}, "
                            "or --heads 1.")
    if hidden % heads:
        divisors = [k for k in range(1, hidden + 1) if hidden % k == 0]
        raise TrainingError(f"--heads {heads} must divide --hidden {hidden}, so every head has the same size; "
                            f"choose one of {divisors}.")


def _flag(name: str) -> str:
    return name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a ``jaxrnn train`` run; the CLI flags map one to one onto these fields.

    Attributes:
        out: the run's folder: ``checkpoint.npz``, ``metrics.jsonl``, ``curve.png``.
        corpus: a UTF-8 text file; None is the Python standard library's source.
        cell, heads, layers, hidden, embed, dropout: the :class:`CharLM`
            (``heads``: block-diagonal recurrence, for the cells that take ``num_heads``).
        batch: B contiguous streams per step. seq_len: T characters per chunk.
        steps: total optimiser steps (a resumed run continues up to this).
        time: a wall-time budget instead of ``steps``: seconds, or a duration
            such as ``"5m"`` (stored as seconds); :data:`DEFAULT_TIME` when
            neither is given. :func:`train` times the warm-up's steps (they
            train) and sets ``steps`` to what fits; the checkpoint stores
            that count, so ``--resume`` and a re-run with ``steps`` set to it
            are exact. Not with ``steps``.
        optimizer: ``"adam"`` or ``"adamw"``; lr, weight_decay (AdamW only) and
            clip (global gradient norm) configure it.
        schedule: after the warm-up, ``"cosine"`` decays lr to lr/10 by
            ``steps`` along a cosine, ``"linear"`` to 0 along a line;
            ``"constant"`` keeps lr throughout (no warm-up).
        warmup: steps over which the rate rises linearly to lr, whatever
            ``steps`` is, so a ``time`` run can train while it times them.
        seed: params, dropout and the per-epoch chunk offsets; same seed, same run.
        eval_every: steps between validation evals (and curve refreshes).
        checkpoint_every: steps between checkpoints (one is also written at the end).
        val_chars: at most this many validation characters are scored at each eval.
        grad: ``"manual"`` (hand-written BPTT) or ``"autodiff"``.
        dtype: ``"float32"``, or ``"bfloat16"`` for mixed precision (float32 master params).
        devices: shard the batch over this many devices (data parallel).
    """

    out: str = "jaxrnn_run"
    corpus: str | None = None
    cell: str = "gru"
    heads: int = 1
    layers: int = 1
    hidden: int = 384
    embed: int = 64
    dropout: float = 0.0
    batch: int = 128
    seq_len: int = 32
    steps: int | None = None
    time: float | str | None = None
    optimizer: str = "adam"
    lr: float = 3e-3
    schedule: str = "cosine"
    warmup: int = 100
    weight_decay: float = 1e-4
    clip: float = 1.0
    seed: int = 0
    eval_every: int = 400
    checkpoint_every: int = 500
    val_chars: int = 131072
    grad: str = "manual"
    dtype: str = "float32"
    devices: int = 1

    def __post_init__(self):
        if self.time is not None:
            if self.steps is not None:
                raise TrainingError(
                    f"--time {self.time} and --steps {self.steps} both set the run's length: --time picks the step "
                    "count that fits in the budget, --steps fixes it. Pass one of them.")
        elif self.steps is None:
            object.__setattr__(self, "time", DEFAULT_TIME)  # frozen: set once, here
        if self.time is not None:
            object.__setattr__(self, "time", parse_duration(self.time))
        for name in ("heads", "layers", "hidden", "embed", "batch", "seq_len", "steps", "eval_every",
                     "checkpoint_every", "val_chars", "devices"):
            value = getattr(self, name)
            if name == "steps" and value is None:
                continue  # sized by --time
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TrainingError(f"--{_flag(name)} must be a whole number ≥ 1; got {value!r}.")
        choices = {"cell": tuple(jaxrnn.cells()), "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "grad": GRAD_MODES,
                   "dtype": tuple(DTYPES)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise TrainingError(
                    f"--{_flag(name)} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}.")
        if self.heads > 1:
            _check_heads(self.cell, self.heads, self.hidden)
        if not 0 <= self.dropout < 1:
            raise TrainingError(f"--dropout must be in [0, 1); got {self.dropout}.")
        if self.dropout > 0 and self.layers == 1:
            raise TrainingError(f"--dropout {self.dropout} applies between layers, so it needs --layers 2 or more.")
        for name in ("lr", "clip"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise TrainingError(f"--{name} must be a finite number > 0; got {getattr(self, name)}.")
        if not isinstance(self.warmup, int) or isinstance(self.warmup, bool) or self.warmup < 0:
            raise TrainingError(f"--warmup must be a whole number ≥ 0; got {self.warmup!r}.")
        if self.time is not None and self.warmup < MIN_TIMED_STEPS:
            raise TrainingError(
                f"--time times the warm-up's steps to size the run, so it needs --warmup {MIN_TIMED_STEPS} or more; "
                f"got --warmup {self.warmup}. Raise --warmup, or give --steps instead of --time.")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise TrainingError(f"--weight-decay must be a finite number ≥ 0; got {self.weight_decay}.")
        if self.batch % self.devices:
            raise TrainingError(
                f"--batch {self.batch} must be a multiple of --devices {self.devices}: each device takes an equal "
                f"share of the streams. Use --batch {self.devices * max(1, round(self.batch / self.devices))}."
            )

    @property
    def model_fields(self) -> dict:
        return {name: getattr(self, name) for name in ("cell", "heads", "layers", "hidden", "embed", "dropout")}

    @property
    def model_name(self) -> str:
        """The cell's name, with its heads if more than one: ``"slstm (4 heads)"``."""
        return self.cell + (f" ({self.heads} heads)" if self.heads > 1 else "")

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.out) / _checkpoint.CHECKPOINT_NAME


def make_optimizer(optimizer: str = "adam", weight_decay: float = 0.0,
                   clip: float = 1.0) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam or AdamW at learning rate 1 (``weight_decay`` applies to AdamW only).

    The training step multiplies the update by the step's rate from
    :func:`learning_rates`: one compiled step serves every schedule and
    length, so ``--time`` can size the run after compiling it.
    """
    inner = optax.adamw(1.0, weight_decay=weight_decay) if optimizer == "adamw" else optax.adam(1.0)
    return optax.chain(optax.clip_by_global_norm(clip), inner)


def learning_rates(lr: float, schedule: str, warmup: int, steps: int) -> np.ndarray:
    """The learning rate of each of ``steps`` steps, float32 (steps,), with optax's schedules.

    ``"cosine"`` and ``"linear"`` rise linearly from lr/warmup to lr over
    ``warmup`` steps (whatever ``steps`` is: a shorter run ends during the
    warm-up), then decay to lr/10 along a cosine, or to 0 along a line, at
    ``steps``. ``"constant"`` is ``lr`` throughout.
    """
    if schedule == "constant":
        return np.full(steps, lr, np.float32)
    decay_steps = max(steps - warmup, 1)
    decay = (optax.linear_schedule(lr, 0.0, decay_steps) if schedule == "linear"
             else optax.cosine_decay_schedule(lr, decay_steps, alpha=0.1))
    rate = optax.join_schedules([optax.linear_schedule(lr / max(warmup, 1), lr, warmup), decay], [warmup])
    return np.asarray(rate(np.arange(steps)), np.float32)
