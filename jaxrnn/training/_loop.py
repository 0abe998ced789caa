"""The training loop: :func:`train` dispatches steps ahead of the host, sizes a --time run, stops on Ctrl-C."""

from __future__ import annotations

import collections
import dataclasses
import functools
import shlex
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxrnn.training import _budget, _checkpoint, _config, _run, _steps
from jaxrnn.training._config import TrainConfig, format_duration, learning_rates
from jaxrnn.training._corpus import Streams, Vocabulary, read_corpus, split, validation_rows, validation_slice
from jaxrnn.training._model import CharLM
from jaxrnn.training._monitor import Monitor
from jaxrnn.training._placement import placement
from jaxrnn.training._steps import LoopOutput, TrainState

LAG = 3  # steps dispatched ahead of the one whose loss the host reads: the device never waits for the host


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
    place = placement(config.devices)
    header = _run.check_out(config, resume)
    text = read_corpus(config.corpus)
    vocab = Vocabulary(header["vocab"]) if header else Vocabulary.from_text(text)
    if header:
        _run.check_corpus(header, text, config)
    ids = vocab.encode(text)
    train_ids, val_ids = split(ids)
    streams = Streams.build(train_ids, config.batch, config.seq_len, config.seed)
    val_window = validation_slice(val_ids, validation_rows(config.devices), config.val_chars)

    model = CharLM(len(vocab), **config.model_fields)
    step_fn, eval_fn = _steps.compiled(model, _steps.optimizer_options(config), config.grad, config.dtype, place)
    template = _steps.template(model, config, shapes_only=bool(header))
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
    fingerprint = _run.fingerprint(text)
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
    monitor = Monitor(config, out, start, clock, lead, progress, say)
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
                    redraw=functools.partial(_run.plot_curve, monitor.records, out / ".timing.png", config) if lead
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
