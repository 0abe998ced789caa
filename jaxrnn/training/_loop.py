"""Training a :class:`CharLM` with optax: truncated BPTT, metrics, checkpoints, resume, many devices."""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import math
import shlex
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jaxrnn import _plot
from jaxrnn._io import atomic_write, progress_bar
from jaxrnn.training import _budget, _checkpoint, _config
from jaxrnn.training._config import (
    DTYPES,
    RESUME_FIXED,
    TrainConfig,
    TrainingError,
    _flag,
    format_duration,
    learning_rates,
    make_optimizer,
)
from jaxrnn.training._corpus import Streams, Vocabulary, read_corpus, split, validation_slice
from jaxrnn.training._model import CharLM

METRICS_NAME = "metrics.jsonl"
CURVE_NAME = "curve.png"
VALIDATION_ROWS = 32
LAG = 3  # steps dispatched ahead of the one whose loss the host reads: the device never waits for the host


class NonFiniteLoss(RuntimeError):
    """The loss or the updated params became NaN or inf; the last good checkpoint is kept."""


class TrainState(NamedTuple):
    """What a checkpoint holds besides its header: everything the next step depends on."""

    params: Any
    opt_state: Any
    carry: Any  # the streams' state after the last chunk
    rng: Any  # key data (uint32), the root of every dropout key


class StepOutput(NamedTuple):
    params: Any
    opt_state: Any
    carry: Any
    loss: jax.Array
    finite: jax.Array  # the loss and the updated params are all finite


class LoopOutput(NamedTuple):
    """One step of :func:`train`'s loop: the step's output and whether any process asked to stop."""

    step: StepOutput
    stop: jax.Array


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the last step, the final model and the metric records.

    ``params`` is None only after a second Ctrl-C with several processes (no state could be kept).
    """

    step: int
    model: CharLM
    vocab: Vocabulary
    params: Any
    records: list[dict]
    interrupted: bool = False


def make_step(model: CharLM, optimizer, *, grad: str, dtype) -> Callable[..., StepOutput]:
    """The un-jitted training step ``(params, opt_state, carry, inputs, targets, key, lr) -> StepOutput``.

    ``optimizer`` gives the update at learning rate 1 (:func:`make_optimizer`);
    the step scales it by ``lr``, the step's rate, a traced scalar.
    """

    def train_step(params, opt_state, carry, inputs, targets, key, lr):
        (loss, carry), grads = jax.value_and_grad(model.loss, has_aux=True)(
            params, carry, inputs, targets, key=key if model.dropout else None, grad=grad, dtype=dtype
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, jax.tree.map(lambda update: lr * update, updates))
        finite = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)]))
        return StepOutput(params, opt_state, carry, loss, finite)

    return train_step


def make_loop_step(model: CharLM, optimizer, *, grad: str, dtype) -> Callable[..., LoopOutput]:
    """:func:`make_step` as the loop runs it: ``(params, opt_state, carry, inputs, targets, rng, step, lr, stop)``.

    The dropout key is ``fold_in(rng, step)``, derived on the device. ``stop``
    (one flag per device, each process setting its own) is reduced with
    ``any``, so every process learns of a Ctrl-C on any of them at the same step.
    """
    train_step = make_step(model, optimizer, grad=grad, dtype=dtype)

    def loop_step(params, opt_state, carry, inputs, targets, rng, step, lr, stop):
        key = jax.random.fold_in(jax.random.wrap_key_data(rng), step)
        return LoopOutput(train_step(params, opt_state, carry, inputs, targets, key, lr), jnp.any(stop))

    return loop_step


def make_eval(model: CharLM, *, dtype) -> Callable:
    """``(params, window (T+1, rows) ids) -> mean nats per character``, from a zero state."""

    def evaluate(params, window):
        loss, _ = model.loss(params, model.initial_carry(window.shape[1]), window[:-1], window[1:], dtype=dtype)
        return loss

    return evaluate


class _Placement:
    """Where arrays live: the batch axis split over a 1-D device mesh, everything else replicated.

    With several processes each gives ``devices / processes`` of its own
    devices, so every process holds an equal share of the batch.
    """

    def __init__(self, devices: int):
        available, processes = jax.devices(), jax.process_count()
        if processes == 1 and devices > len(available):
            raise TrainingError(
                f"--devices {devices} but JAX sees {len(available)} ({available[0].platform}). On a CPU, set "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} before starting; on accelerators, "
                f"use at most {len(available)}."
            )
        share, local = devices // processes, jax.local_device_count()
        if devices % processes or share > local:
            raise TrainingError(
                f"--devices {devices} with {processes} processes: each process must give the same number of its "
                f"{local} devices, so --devices must be a multiple of {processes} and at most {processes * local}. "
                f"Use --devices {processes * local} (every device)."
            )
        by_process: dict[int, list] = {}
        for device in available:
            by_process.setdefault(device.process_index, []).append(device)
        chosen = [device for index in sorted(by_process) for device in by_process[index][:share]]
        self.mesh = jax.sharding.Mesh(np.array(chosen), ("data",))
        self.local_share = share
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.rows = NamedSharding(self.mesh, PartitionSpec("data"))  # carry leaves (batch, H); one flag per device
        self.columns = NamedSharding(self.mesh, PartitionSpec(None, "data"))  # ids (T, batch)

    def replicate(self, tree):
        return jax.device_put(tree, self.replicated)

    def carry(self, tree):
        return jax.tree.map(lambda leaf: _local_shards(np.asarray(leaf), self.rows), tree)

    def ids(self, array: np.ndarray):
        return _local_shards(array, self.columns)

    def flags(self, value: bool):
        """One boolean per device of the mesh, ``value`` on this process's devices."""
        return jax.make_array_from_process_local_data(self.rows, np.full(self.local_share, value))


def _local_shards(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """``array`` (the same on every process) as a global array, each process sending only its own devices' slices.

    ``jax.device_put`` of a host array onto devices of several processes
    first checks that every process passed the same value, a blocking
    cross-process gather of the whole array, which would stall every step.
    """
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


@functools.lru_cache(maxsize=8)
def _placement(devices: int) -> _Placement:
    """One placement per device count, so that :func:`_compiled`'s cache can hit."""
    return _Placement(devices)


def _log(message: str) -> None:
    print(message, flush=True)


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True, log=_log) -> TrainResult:
    """Trains a character-level language model as ``config`` says; see ``jaxrnn train --help``.

    Writes ``metrics.jsonl`` (one record per step), ``curve.png`` (at each
    eval) and ``checkpoint.npz`` (every ``checkpoint_every`` steps, at the
    end, and on Ctrl-C) into ``config.out``.

    The host never waits for the step it has just dispatched: it reads each
    step's loss and finite-flag :data:`LAG` steps later, so the device always
    has work queued. Before a checkpoint is written every step up to it has
    been read and found finite, so a NaN or inf stops the run at the step
    where it appeared, and the checkpoint on disk is the last good one.

    Args:
        config: the run.
        resume: continue exactly from ``config.out``'s checkpoint. Its
            :data:`RESUME_FIXED` options must equal ``config``'s.
        progress: show progress: a tqdm bar when standard error is a
            terminal, otherwise one plain line per eval through ``log``.
        log: prints the run's messages.

    Returns:
        A :class:`TrainResult`; ``interrupted`` is True after Ctrl-C (a
        checkpoint was saved).

    Raises:
        TrainingError: bad options; a checkpoint in the way (without
            ``resume``) or missing (with it); a mismatched checkpoint.
        CorpusError: an unreadable or too short corpus.
        CheckpointError: a corrupt checkpoint.
        NonFiniteLoss: the loss became NaN or inf (the last good checkpoint is kept).
    """
    began = time.perf_counter()  # a --time budget counts from here
    out = Path(config.out)
    place = _placement(config.devices)
    header = _check_out(config, resume)
    text = read_corpus(config.corpus)
    vocab = Vocabulary(header["vocab"]) if header else Vocabulary.from_text(text)
    if header:
        _check_corpus(header, text, config)
    ids = vocab.encode(text)
    train_ids, val_ids = split(ids)
    streams = Streams.build(train_ids, config.batch, config.seq_len, config.seed)
    val_window = validation_slice(val_ids, _validation_rows(config.devices), config.val_chars)

    model = CharLM(len(vocab), **config.model_fields)
    step_fn, eval_fn = _compiled(model, _optimizer_options(config), config.grad, config.dtype, place)
    template = _template(model, config, shapes_only=bool(header))
    lead = jax.process_index() == 0  # with many processes, the first writes the files and the messages
    say = log if lead else (lambda _: None)
    if header:
        stored, header = _checkpoint.load(config.checkpoint_path, template)
        start, elapsed = header["step"], header["elapsed_s"]
        say(f"resuming {out} from step {start} (epoch {header['epoch']}, column {header['column']})")
        if config.schedule != "constant" and header["config"].get("steps") != config.steps:
            say(f"note: --steps is now {config.steps} (was {header['config'].get('steps')}): the {config.schedule} "
                "schedule is recomputed for the new length, so the learning rate jumps at this step")
    else:
        out.mkdir(parents=True, exist_ok=True)
        stored, start, elapsed = template, 0, 0.0
    state = TrainState(place.replicate(stored.params), place.replicate(stored.opt_state), place.carry(stored.carry),
                       np.asarray(stored.rng))
    val_window = place.ids(val_window)
    fingerprint = _fingerprint(text)
    # elapsed_s is wall time from the start of the run: reading, compiling, steps, evals, plots and checkpoints
    clock = time.perf_counter() - elapsed if header else began
    budget = config.time if config.time is not None else (header or {}).get("time_s")  # into every checkpoint

    def save(state: TrainState, step: int, path: Path = config.checkpoint_path) -> Path:
        epoch, column = streams.position(step)
        return _checkpoint.save(path, state, {
            "step": step, "epoch": epoch, "column": column, "elapsed_s": time.perf_counter() - clock,
            "config": dataclasses.asdict(config), "time_s": budget, "vocab": vocab.chars, "corpus_chars": len(text),
            "corpus_sha256": fingerprint,
        })

    def dispatch(state: TrainState, step: int, lr, stop: bool) -> LoopOutput:
        inputs, targets, fresh = streams.batch(step)
        carry = place.carry(model.initial_carry(config.batch)) if fresh else state.carry
        return step_fn(state.params, state.opt_state, carry, place.ids(inputs), place.ids(targets), state.rng, step,
                       lr, place.flags(stop))

    say(
        f"jaxrnn train: {config.model_name} × {config.layers}, hidden {config.hidden}, vocabulary {len(vocab)}, "
        f"{len(train_ids):,} training / {len(val_ids):,} validation characters; batch {config.batch} × "
        f"{config.seq_len}, grad {config.grad}, {config.dtype}, {config.devices} device(s) "
        f"({jax.devices()[0].platform}"
        + (f", {jax.process_count()} processes" if jax.process_count() > 1 else "") + f"); writing {out}"
    )
    total = config.steps  # None while a --time run times its warm-up; then the count that fits
    # Before the count is known, only the warm-up's rates are used, and they do not depend on it.
    rates = learning_rates(config.lr, config.schedule, config.warmup, total or config.warmup)
    monitor = _Monitor(config, out, start, clock, lead, progress, say)
    pending: collections.deque = collections.deque()  # (step number, LoopOutput, eval or None) not read yet
    at = (start, state)  # the last dispatched step and the state after it, moved on by one assignment
    interrupted, unsaved, saved = False, False, start
    stop = _SigintFlag()
    try:
        while not monitor.stop_agreed:
            if total is None and _timed_enough(config, at[0], monitor.records):
                monitor.settle(pending, keep=0)
                config, total = _size_to_budget(
                    config, began, at[0], monitor.records, say,
                    evaluate=functools.partial(eval_fn, at[1].params, val_window),
                    redraw=functools.partial(_plot_curve, monitor.records, out / ".timing.png", config) if lead
                    else None,
                    save=functools.partial(save, at[1], at[0], out / ".timing.npz"))
                rates = learning_rates(config.lr, config.schedule, config.warmup, total)
                monitor.sized(config)
            if total is not None and at[0] >= total:
                break
            step, state = at
            result = dispatch(state, step, rates[step], stop.requested)
            following = _following(state, result)
            evaluate = step + 1 == total or (step + 1) % config.eval_every == 0
            pending.append((step + 1, result, eval_fn(following.params, val_window) if evaluate else None))
            at = (step + 1, following)  # a Ctrl-C before this line leaves a record ahead of the state: resume drops it
            # No checkpoint before a --time run is sized: its header could not say the run's length.
            if total is not None and (at[0] % config.checkpoint_every == 0 or at[0] == total):
                monitor.settle(pending, keep=0)  # every step up to the checkpoint is read and finite
                save(*at[::-1])
                saved = at[0]
                monitor.paused()
            else:
                monitor.settle(pending, keep=LAG)
        monitor.settle(pending, keep=0)
        interrupted = monitor.stop_agreed and (total is None or at[0] < total)  # a stop after the last step: done
    except KeyboardInterrupt:  # raised where no SIGINT handler could be set (a thread), or a second Ctrl-C
        interrupted = True
        # With several processes the others may be at another step, and saving is collective: it could hang.
        unsaved = jax.process_count() > 1
        if not unsaved:
            monitor.settle(pending, keep=0)
    finally:
        stop.restore()
        monitor.close()
    step, state = at
    resume_command = f"jaxrnn train --out {shlex.quote(str(out))} --resume" + (
        " --distributed\n(on every process, as before)" if jax.process_count() > 1 else "")
    if unsaved:  # every process says it: the one interrupted may not be the first
        log(f"\nprocess {jax.process_index()} interrupted at once: with {jax.process_count()} processes no "
            f"checkpoint can be written mid-step; the last one is kept in {config.checkpoint_path}. Continue from "
            f"it with:\n  {resume_command}")
        return TrainResult(step, model, vocab, None, monitor.records, interrupted)  # in-flight steps may never end
    if interrupted and total is None:
        say(f"\ninterrupted at step {step}, while timing the warm-up to size the run: no checkpoint was written "
            "(its length is not known yet). Start the run again.")
    elif interrupted:
        if saved != step:
            save(state, step)
        say(f"\ninterrupted: saved a checkpoint at step {step} in {config.checkpoint_path}; continue with:\n"
            f"  {resume_command}")
    return TrainResult(step, model, vocab, jax.device_get(state.params), monitor.records, interrupted)


def _following(state: TrainState, result: LoopOutput) -> TrainState:
    return TrainState(result.step.params, result.step.opt_state, result.step.carry, state.rng)


def _timed_enough(config: TrainConfig, dispatched: int, records: list[dict]) -> bool:
    """Whether a --time run has timed enough of its warm-up: all of it, or :data:`_budget.TIMING_SHARE` of the budget.

    With several processes only the warm-up's end counts: every process must
    decide at the same step, and their clocks differ.
    """
    if dispatched >= config.warmup:
        return True
    if jax.process_count() > 1 or len(records) < _config.MIN_TIMED_STEPS:
        return False
    return records[-1]["elapsed_s"] - records[0]["elapsed_s"] >= _budget.TIMING_SHARE * float(config.time or 0)


def _size_to_budget(config: TrainConfig, began: float, done: int, records: list[dict], say: Callable, *,
                    evaluate: Callable, redraw: Callable | None, save: Callable[[], Path]) -> tuple[TrainConfig, int]:
    """``(config with steps set to what fits in its time budget and time cleared, that count)``; says why.

    ``records`` are the timed steps' (``done`` of them, all read). An eval
    (run twice: the first call may compile) with the curve's ``redraw``
    (the first process's), and a checkpoint ``save`` to a scratch file, are
    timed here. With several processes the first one's count is the count of all.
    """
    budget = float(config.time or 0)  # normalised to seconds by TrainConfig
    step_s = _budget.step_seconds([r["elapsed_s"] for r in records])
    jax.block_until_ready(evaluate())
    started = time.perf_counter()
    jax.block_until_ready(evaluate())
    if redraw is not None:
        redraw()
    eval_s = time.perf_counter() - started
    started = time.perf_counter()
    scratch = save()
    save_s = time.perf_counter() - started
    for path in (scratch, scratch.with_suffix(".png")):
        path.unlink(missing_ok=True)
    spent = time.perf_counter() - began
    sized = _budget.plan(budget, spent, done, _budget.Timing(step_s, eval_s, save_s), config.eval_every,
                         config.checkpoint_every)
    steps = sized.steps
    if jax.process_count() > 1:  # the processes' clocks differ a little; they must run the same steps
        from jax.experimental import multihost_utils

        steps = int(multihost_utils.broadcast_one_to_all(np.int32(steps)))
    over = sized.expected_s > budget
    say(f"--time {format_duration(budget)}: the warm-up's first {done} steps took {1e3 * step_s:.1f} ms each "
        f"(median), an eval {eval_s:.2f} s every {config.eval_every} steps, a checkpoint {save_s:.2f} s every "
        f"{config.checkpoint_every}; {spent:.0f} s spent, {_budget.MARGIN:.0%} of the budget held back: "
        f"{steps:,} steps (--steps {steps}), expected to end at about {sized.expected_s:.0f} s of "
        f"{budget:.0f} s" + (" (over: compiling and timing took the budget; give a longer --time)" if over
                                  else ""))
    return dataclasses.replace(config, steps=steps, time=None), steps


def _validation_rows(devices: int) -> int:
    """Rows of the validation window: 32 whatever the batch, so runs of any batch score the same characters.

    Rounded up to a multiple of ``devices``, which shard them.
    """
    return -(-VALIDATION_ROWS // devices) * devices


class _Monitor:
    """The host's side of the loop: reads finished steps, checks them, writes their records and shows progress."""

    def __init__(self, config: TrainConfig, out: Path, start: int, clock: float, lead: bool, progress: bool, say):
        self.config, self.out, self.clock, self.lead, self.say = config, out, clock, lead, say
        self.records = _restart_metrics(out / METRICS_NAME, start, write=lead)
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
            _append(self.out / METRICS_NAME, record)
        self.records.append(record)
        if self.window is not None and "val_bpc" not in record:
            began, first = self.window
            self.speed = self.chars_per_step * (record["step"] - first) / max(now - began, 1e-9)
        if self.window is None or "val_bpc" in record:
            self.window = (now, record["step"])
        if "val_bpc" in record and self.lead:
            _plot_curve(self.records, self.out / CURVE_NAME, self.config)
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


def _optimizer_options(config: TrainConfig) -> tuple:
    """What the compiled step depends on: the rates are an argument, so neither --lr, --schedule nor the length."""
    return config.optimizer, config.weight_decay, config.clip


@functools.lru_cache(maxsize=8)
def _compiled(model: CharLM, optimizer_options: tuple, grad: str, dtype: str, place: _Placement):
    """The jitted step and eval, cached so that runs of one configuration in one process compile once."""
    optimizer = make_optimizer(*optimizer_options)
    step_fn = jax.jit(
        make_loop_step(model, optimizer, grad=grad, dtype=DTYPES[dtype]),
        out_shardings=LoopOutput._make((  # the outputs' tree with a sharding per leaf (_make: not arrays)
            StepOutput._make((place.replicated, place.replicated, place.rows, place.replicated, place.replicated)),
            place.replicated,
        )),
    )  # no buffer donation: Ctrl-C mid-step must still find the last state intact to save it
    eval_fn = jax.jit(make_eval(model, dtype=DTYPES[dtype]), out_shardings=place.replicated)
    return step_fn, eval_fn


def _template(model: CharLM, config: TrainConfig, *, shapes_only: bool = False) -> TrainState:
    """The fresh state of a run: initial params (from the seed), optimiser state, zero carry, root key.

    Built by one jitted call (op by op, the init's dozens of small programs
    took twice as long to compile); ``shapes_only`` gives its shapes and
    dtypes without computing it, all a checkpoint's loader needs.
    """
    build = functools.partial(_fresh_state, model, config)
    return jax.eval_shape(build) if shapes_only else jax.jit(build)()


def _fresh_state(model: CharLM, config: TrainConfig) -> TrainState:
    key = jax.random.key(config.seed)
    params = model.init(key)
    optimizer = make_optimizer(*_optimizer_options(config))
    return TrainState(params, optimizer.init(params), model.initial_carry(config.batch), jax.random.key_data(key))


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
    state, header = _checkpoint.load(path, _template(model, config, shapes_only=True))
    return model, jax.tree.map(jnp.asarray, state.params), vocab, header


class _SigintFlag:
    """Turns the first Ctrl-C into a request to stop (read a few steps later); a second one interrupts at once.

    A KeyboardInterrupt raised at an arbitrary point can land inside a
    callback that swallows it (JAX's garbage-collection hook does), and the
    run goes on; a flag checked between steps cannot be lost. Outside the
    main thread no handler can be set, and KeyboardInterrupt is the fallback.
    """

    def __init__(self):
        self.requested = False
        self._installed = threading.current_thread() is threading.main_thread()
        if self._installed:
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        if self._installed:  # None: the previous handler was not set from Python; Python's own is the default
            signal.signal(signal.SIGINT, signal.default_int_handler if self._previous is None else self._previous)
            self._installed = False


def _check_out(config: TrainConfig, resume: bool) -> dict | None:
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


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _check_corpus(header: dict, text: str, config: TrainConfig) -> None:
    """A resumed run must read the same text (its vocabulary, batches and validation slice come from it)."""
    if header.get("corpus_sha256") != _fingerprint(text):
        fresh = Vocabulary.from_text(text)
        raise TrainingError(
            f"{config.checkpoint_path} was trained on a different corpus ({header.get('corpus_chars', 0):,} "
            f"characters, vocabulary of {len(header['vocab'])}; this one has {len(text):,} and {len(fresh)}"
            + (", the same vocabulary but other text" if fresh.chars == header["vocab"] else "")
            + "). Resume with the same --corpus, or start a new --out."
        )


def _restart_metrics(path: Path, start: int, write: bool = True) -> list[dict]:
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


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as file:
        file.write(json.dumps(record) + "\n")


def _plot_curve(records: list[dict], path: Path, config: TrainConfig) -> None:
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

