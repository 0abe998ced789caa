"""A run's folder: its checks on a start or a resume, the configuration its checkpoint records, metrics and curve."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn import _plot
from jaxrnn._io import atomic_write
from jaxrnn.training import _checkpoint
from jaxrnn.training._config import RESUME_FIXED, TrainConfig, TrainingError, _flag
from jaxrnn.training._corpus import Vocabulary
from jaxrnn.training._model import CharLM
from jaxrnn.training._steps import template

METRICS_NAME = "metrics.jsonl"
CURVE_NAME = "curve.png"


def load_run_config(out: str | Path) -> dict:
    """The :class:`TrainConfig` fields recorded in the checkpoint in ``out``, with ``out`` itself as given."""
    return _stored_config(_checkpoint.read_header(Path(out) / _checkpoint.CHECKPOINT_NAME), out)


def _stored_config(header: dict, out: str | Path) -> dict:
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    stored = header.get("config")
    if not isinstance(stored, dict):
        raise _checkpoint.CheckpointError(f"{out}: the checkpoint's header has no configuration; it is corrupt.")
    return {**{k: v for k, v in stored.items() if k in fields}, "out": str(out)}


def load_run(out: str | Path) -> tuple[CharLM, Any, Vocabulary, dict]:
    """``(model, params, vocabulary, header)`` from the checkpoint in the run folder ``out``.

    Raises:
        CheckpointError: no checkpoint, a corrupt one, or one that does not
            match the configuration recorded in its own header.
    """
    path = Path(out) / _checkpoint.CHECKPOINT_NAME
    header = _checkpoint.read_header(path)
    try:
        config = TrainConfig(**_stored_config(header, out))
        vocab = Vocabulary(header["vocab"])
    except (KeyError, TypeError, TrainingError) as error:
        raise _checkpoint.CheckpointError(f"{path}: its header is incomplete or invalid ({error}).") from None
    model = CharLM(len(vocab), **config.model_fields)
    state, header = _checkpoint.load(path, template(model, config, shapes_only=True))
    return model, jax.tree.map(jnp.asarray, state.params), vocab, header


def check_out(config: TrainConfig, resume: bool) -> dict | None:
    """The checkpoint header to resume from (None for a fresh run), after checking the folder."""
    path = config.checkpoint_path
    if not resume:
        if path.exists():
            raise TrainingError(
                f"{path} already exists. Pass --resume to continue that run, or choose a new --out "
                "(a fresh run would overwrite it)."
            )
        return None
    header = _checkpoint.read_header(path)
    if config.time is not None:
        raise TrainingError(
            f"--time sizes a fresh run; {path} is at step {header['step']} of --steps "
            f"{header.get('config', {}).get('steps')}, the count its own run chose. Resume without --time to finish "
            "it, or pass a larger --steps to go further.")
    stored = header.get("config", {})
    # Older runs lack newer fields: they read as the defaults.
    stored = {name: stored.get(name, getattr(TrainConfig, name)) for name in RESUME_FIXED}
    changed = [f"--{_flag(name)} {stored[name]!r} (now {getattr(config, name)!r})"
               for name in RESUME_FIXED if stored[name] != getattr(config, name)]
    if changed:
        raise TrainingError(
            f"{path} was trained with " + ", ".join(changed) + ". These cannot change on --resume: "
            "pass the values it was trained with (or leave them out), or start a new --out."
        )
    if header["step"] > config.steps:
        raise TrainingError(f"{path} is at step {header['step']}, past --steps {config.steps}; pass a larger --steps.")
    return header


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def check_corpus(header: dict, text: str, config: TrainConfig) -> None:
    """A resumed run must read the same text (its vocabulary, batches and validation slice come from it)."""
    if header.get("corpus_sha256") != fingerprint(text):
        fresh = Vocabulary.from_text(text)
        raise TrainingError(
            f"{config.checkpoint_path} was trained on a different corpus ({header.get('corpus_chars', 0):,} "
            f"characters, vocabulary of {len(header['vocab'])}; this one has {len(text):,} and {len(fresh)}"
            + (", the same vocabulary but other text" if fresh.chars == header["vocab"] else "")
            + "). Resume with the same --corpus, or start a new --out."
        )


def restart_metrics(path: Path, start: int, write: bool = True) -> list[dict]:
    """The records of steps 1..start, rewriting the file without later ones (from after the checkpoint)."""
    if start == 0:
        if write:
            atomic_write(path, lambda file: None)
        return []
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= start:
                records.append(record)
    if write:
        atomic_write(path, lambda file: file.write("".join(json.dumps(r) + "\n" for r in records).encode()))
    return records


def append(path: Path, record: dict) -> None:
    with open(path, "a") as file:
        file.write(json.dumps(record) + "\n")


def plot_curve(records: list[dict], path: Path, config: TrainConfig) -> None:
    fig, (axes,) = _plot.figure()
    train = [(r["step"], r["train_loss"] / math.log(2)) for r in records if "train_loss" in r]
    val = [(r["step"], r["val_bpc"]) for r in records if "val_bpc" in r]
    axes.plot(*zip(*train), lw=0.6, alpha=0.6, label="train (batch)")
    if val:
        axes.plot(*zip(*val), "o-", ms=3, label="validation")
    axes.set(xlabel="step", ylabel="bits per character (log scale)", yscale="log",
             title=f"{config.model_name} × {config.layers}, hidden {config.hidden}, "
             f"batch {config.batch} × {config.seq_len}")
    _plot.plain_log_ticks(axes.yaxis)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    _plot.save(fig, path)
