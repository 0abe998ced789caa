"""The host's side of the training loop: each finished step read, checked for NaN, recorded and shown."""

from __future__ import annotations

import collections
import math
import time
from pathlib import Path

import jax

from jaxrnn._io import progress_bar
from jaxrnn.training import _checkpoint, _run
from jaxrnn.training._config import TrainConfig


class NonFiniteLoss(RuntimeError):
    """The loss or the updated params became NaN or inf; the last good checkpoint is kept."""


class Monitor:
    """The host's side of the loop: reads finished steps, checks them, writes their records and shows progress."""

    def __init__(self, config: TrainConfig, out: Path, start: int, clock: float, lead: bool, progress: bool, say):
        self.config, self.out, self.clock, self.lead, self.say = config, out, clock, lead, say
        self.records = _run.restart_metrics(out / _run.METRICS_NAME, start, write=lead)
        self.bar = progress_bar(config.steps, initial=start, enabled=progress and lead)
        self.lines = progress and lead and self.bar.disable  # no terminal: a plain line per eval instead
        self.chars_per_step = config.batch * config.seq_len
        self.stop_agreed = False
        self.speed = None
        # (time, step) since which only training steps ran; restarted after compile, evals, saves
        self.window: tuple[float, int] | None = None

    def settle(self, pending: collections.deque, keep: int) -> None:
        """Reads the oldest pending steps until ``keep`` are left, in order.

        Raises:
            NonFiniteLoss: a step's loss or updated params are not finite.
        """
        while len(pending) > keep:
            number, result, val = pending[0]
            if self.records and self.records[-1]["step"] >= number:  # recorded before a Ctrl-C cut this loop short
                pending.popleft()
                continue
            loss, finite, stop = (x.item() for x in jax.device_get((result.step.loss, result.step.finite, result.stop)))
            if not finite:
                self._fail(number, loss)
            record = {"step": number, "train_loss": loss}
            if val is not None:
                record["val_bpc"] = float(val) / math.log(2)
            self._record(record)
            pending.popleft()
            self.stop_agreed |= stop

    def _record(self, record: dict) -> None:
        now = time.perf_counter()
        record["elapsed_s"] = round(now - self.clock, 3)
        if self.lead:
            _run.append(self.out / _run.METRICS_NAME, record)
        self.records.append(record)
        if self.window is not None and "val_bpc" not in record:
            began, first = self.window
            self.speed = self.chars_per_step * (record["step"] - first) / max(now - began, 1e-9)
        if self.window is None or "val_bpc" in record:
            self.window = (now, record["step"])
        if "val_bpc" in record and self.lead:
            _run.plot_curve(self.records, self.out / _run.CURVE_NAME, self.config)
        train_bpc = record["train_loss"] / math.log(2)
        shown = {"train_bpc": f"{train_bpc:.3f}", "chars_s": f"{self.speed:,.0f}" if self.speed else "…"}
        if "val_bpc" in record:
            shown["val_bpc"] = f"{record['val_bpc']:.3f}"
            if self.lines:
                self.say(f"step {record['step']}/{self.config.steps or '?'}  train {train_bpc:.3f} bpc  val "
                         f"{record['val_bpc']:.3f} bpc  {shown['chars_s']} chars/s  {record['elapsed_s']:.0f} s")
        self.bar.update(1)
        self.bar.set_postfix(shown, refresh=False)

    def sized(self, config: TrainConfig) -> None:
        """A --time run chose its length: the bar's total and the lines' "of N" follow; the speed is measured afresh."""
        self.config = config
        self.bar.total = config.steps
        self.bar.refresh()
        self.paused()

    def paused(self) -> None:
        """The host did something else (a checkpoint): measure the speed afresh from the next step."""
        self.window = None

    def _fail(self, number: int, loss: float):
        path = self.config.checkpoint_path
        saved = _checkpoint.read_header(path)["step"] if path.exists() else None
        what = (f"the training loss is {loss}" if not math.isfinite(loss)
                else f"the update made the params NaN or inf (the loss was {loss:.4g})")
        raise NonFiniteLoss(
            f"step {number}: {what}. "
            + (f"The last good checkpoint (step {saved}) is kept in {path}. "
               if saved is not None else "No checkpoint was written yet. ")
            + f"Lower --lr (now {self.config.lr:g}) or --clip (now {self.config.clip:g}), then --resume."
        )

    def close(self) -> None:
        self.bar.close()
