"""`jaxrnn train` / `jaxrnn sample`: learning, exact resume, the NaN guard, checkpoints, data parallel."""

import ast
import itertools
import re
import shutil
import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxrnn import _cli, training
from jaxrnn.training import _budget
from jaxrnn.training._corpus import Streams, Vocabulary, split

pytestmark = pytest.mark.xdist_group("training")  # the module's trained run, built once

# Small enough to compile and run in about a second per run on 2 cores.
TINY = dict(hidden=24, embed=8, batch=4, seq_len=16, eval_every=5, checkpoint_every=5, val_chars=256, warmup=4)


@pytest.fixture(autouse=True)
def float32():
    """Train as the CLI does: the suite's conftest turns on x64, which training must not depend on."""
    with jax.enable_x64(False):
        yield


def run(corpus, out, resume=False, **options) -> training.TrainResult:
    config = training.TrainConfig(out=str(out), corpus=str(corpus), **{**TINY, **options})
    return training.train(config, resume=resume, progress=False, log=lambda _: None)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> tuple[Path, training.TrainResult]:
    """One 40-step run shared by the tests that only read it (compiling is most of the cost)."""
    out = tmp_path_factory.mktemp("trained")
    with jax.enable_x64(False):
        return out, run(corpus, out, steps=40, eval_every=20, lr=1e-2)


def test_loss_goes_down_and_files_are_written(trained, read_metrics):
    tmp_path, result = trained
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == list(range(1, 41))
    first, last = np.mean([r["train_loss"] for r in records[:5]]), np.mean([r["train_loss"] for r in records[-5:]])
    assert last < first - 0.5, (first, last)
    val = [r["val_bpc"] for r in records if "val_bpc" in r]
    assert len(val) == 2 and val[-1] < val[0]
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert training.load_run(tmp_path)[3]["step"] == result.step == 40


def test_resume_after_an_interruption_is_exact(corpus, tmp_path, monkeypatch, read_metrics):
    """A run stopped by Ctrl-C after step 9 and resumed to 16 equals an uninterrupted run bit for bit.

    57k characters in 64 streams of 100 make 7-step epochs, so both parts
    cross an epoch boundary (the streams restart, the state is reset and the
    chunk offset changes); the cosine schedule spans the whole run.
    """
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    options = dict(batch=64, seq_len=100, steps=16)
    run(corpus, whole, **options)

    read = Streams.batch

    def interrupted(self, step):
        if step == 9:
            raise KeyboardInterrupt  # as Ctrl-C would, while step 10's batch is read
        return read(self, step)

    monkeypatch.setattr(Streams, "batch", interrupted)
    assert run(corpus, parts, **options).interrupted
    monkeypatch.undo()
    # A crash (rather than Ctrl-C) can leave later records, and half a line, behind; resume drops them.
    with open(parts / "metrics.jsonl", "a") as file:
        file.write('{"step": 10, "train_loss": 1.0}\n{"step": 11, "tra')
    result = run(corpus, parts, resume=True, **options)
    assert result.step == 16 and not result.interrupted
    mine, reference = read_metrics(parts), read_metrics(whole)
    assert mine == [{**r, "elapsed_s": m["elapsed_s"]} for r, m in zip(reference, mine)]


@pytest.mark.slow
def test_extending_a_finished_run(corpus, trained, tmp_path, read_metrics):
    shutil.copytree(trained[0], tmp_path, dirs_exist_ok=True)
    config = training.TrainConfig(**{**training.load_run_config(tmp_path), "steps": 44})
    said = []
    result = training.train(config, resume=True, progress=False, log=said.append)
    assert result.step == 44 and [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 45))
    assert any("the cosine schedule is recomputed" in line for line in said)


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint_every", [1, 20])
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path, checkpoint_every, read_metrics):
    """The loss is read a few steps late; the step named, the records and the checkpoint are still the right ones.

    With a checkpoint every step the NaN is seen before the next save; with
    one every 20 it is seen while later steps are already dispatched.
    """
    kept = "The last good checkpoint (step 1)" if checkpoint_every == 1 else "No checkpoint was written yet"
    with pytest.raises(training.NonFiniteLoss, match=rf"step 2: the training loss is (inf|nan)\. {re.escape(kept)}.*Lower"):
        run(corpus, tmp_path, steps=20, checkpoint_every=checkpoint_every, lr=1e37)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1]
    if checkpoint_every == 1:
        model, params, _, header = training.load_run(tmp_path)
        assert header["step"] == 1
        assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))
    else:
        assert not (tmp_path / "checkpoint.npz").exists()


@pytest.mark.slow
def test_progress_without_a_terminal_is_a_plain_line_per_eval_in_bits(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)  # as with `jaxrnn train 2> log`
    said = []
    config = training.TrainConfig(out=str(tmp_path), corpus=str(corpus), **{**TINY, "steps": 10})
    result = training.train(config, progress=True, log=said.append)
    lines = [line for line in said if line.startswith("step ")]
    evals = [r for r in result.records if "val_bpc" in r]
    assert len(lines) == len(evals) == 2
    for line, record in zip(lines, evals):
        assert line.startswith(f"step {record['step']}/10  train {record['train_loss'] / np.log(2):.3f} bpc  "
                               f"val {record['val_bpc']:.3f} bpc  ")
        assert line.endswith(" s") and "chars/s" in line


def test_checkpoint_mismatch_and_corruption_are_clear_errors(corpus, trained, tmp_path, capsys):
    shutil.copytree(trained[0], tmp_path, dirs_exist_ok=True)
    base = ["train", "--out", str(tmp_path), "--corpus", str(corpus), "--no-progress"]

    assert _cli.main([*base, "--resume", "--hidden", "32", "--steps", "48"]) == 2
    assert "trained with --hidden 24 (now 32)" in capsys.readouterr().err

    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text()[::-1])
    assert _cli.main([*base[:4], str(other), "--resume", "--steps", "48"]) == 2
    assert "different corpus" in capsys.readouterr().err

    assert _cli.main([*base, "--steps", "48"]) == 2  # a fresh run would overwrite the checkpoint
    assert "already exists. Pass --resume" in capsys.readouterr().err

    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04 not really a zip")
    assert _cli.main([*base, "--resume", "--steps", "48"]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert _cli.main(["sample", "--out", str(tmp_path)]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err

    assert _cli.main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch", "6", "--devices", "4"], "--batch 6 must be a multiple of --devices 4"),
        (["--devices", "64", "--batch", "64"], "--devices 64 but JAX sees"),
        (["--dropout", "0.5"], "needs --layers 2 or more"),
        (["--seq-len", "5000"], "--seq-len 5000 needs at least"),
        (["--corpus", "/nonexistent.txt"], "no such file"),
        (["--time", "5m"], "--time 5m and --steps 2 both set the run's length"),
    ],
)
def test_bad_flags_are_clear_errors(corpus, tmp_path, capsys, flags, message):
    argv = ["train", "--out", str(tmp_path), "--corpus", str(corpus), "--steps", "2", "--no-progress", *flags]
    assert _cli.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [(["--lr", "-1"], "expected a number > 0, got -1"), (["--cell", "lstmm"], "invalid choice: 'lstmm'")],
)
def test_bad_values_are_rejected_by_the_parser(capsys, flags, message):
    with pytest.raises(SystemExit):
        _cli.main(["train", *flags])
    assert message in capsys.readouterr().err


def test_config_checks_its_values():
    with pytest.raises(training.TrainingError, match="--cell must be one of simple_rnn, lstm, gru, .*; got 'lstmm'"):
        training.TrainConfig(cell="lstmm")


def test_sampling_length_and_determinism(trained, capsys):
    tmp_path = trained[0]
    model, params, vocab, _ = training.load_run(tmp_path)
    def draw(seed, length=200, **options):
        return training.sample(model, params, vocab, length=length, key=jax.random.key(seed), **options)

    text = draw(0, prime="def ")
    assert len(text) == 200 and set(text) <= set(vocab.chars)
    assert draw(0, prime="def ") == text and draw(1, prime="def ") != text
    assert draw(0, temperature=0) == draw(1, temperature=0)  # greedy ignores the key
    with pytest.raises(ValueError, match="--temperature must be a finite number ≥ 0"):
        draw(0, temperature=-1.0)

    argv = ["sample", "--out", str(tmp_path), "--length", "50", "--prime", "import ", "--seed", "3", "--temperature", "0.5"]
    assert _cli.main(argv) == 0
    assert capsys.readouterr().out == "import " + draw(3, length=50, prime="import ", temperature=0.5) + "\n"


def test_streams_continue_across_steps_and_vocabulary_round_trips():
    text = "abcabcabx" * 40 + "é"  # 'x' (40×) is kept with min_count 20, 'é' (1×) is not
    vocab = Vocabulary.from_text(text)
    assert vocab.chars == "\ufffdabcx"
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text[:-1] + "\ufffd"
    train_ids, val_ids = split(ids)
    assert len(val_ids) == int(len(ids) * 0.05) and np.array_equal(np.concatenate([train_ids, val_ids]), ids)

    streams = Streams.build(np.arange(10_000, dtype=np.int32), batch=4, seq_len=10, seed=0)
    chunks = streams.chunks_per_epoch
    for step in range(chunks - 1):
        inputs, targets, fresh = streams.batch(step)
        following, _, _ = streams.batch(step + 1)
        assert inputs.shape == (10, 4) and fresh == (step == 0)
        np.testing.assert_array_equal(targets[:-1], inputs[1:])  # targets are the next characters
        np.testing.assert_array_equal(following[0], inputs[-1] + 1)  # each stream goes on where it stopped
    assert streams.batch(chunks)[2]  # a new epoch starts fresh


@pytest.mark.slow
def test_bfloat16_mixed_precision_keeps_float32_master_params(corpus, tmp_path):
    result = run(corpus, tmp_path, steps=4, dtype="bfloat16")
    assert all(np.isfinite(r["train_loss"]) for r in result.records)
    assert {leaf.dtype for leaf in jax.tree.leaves(result.params)} == {np.dtype(np.float32)}
    assert {leaf.dtype for leaf in jax.tree.leaves(training.load_run(tmp_path)[1])} == {np.dtype(np.float32)}


def test_durations_and_the_budget_arithmetic(monkeypatch):
    parse = training._config.parse_duration
    assert [parse(text) for text in ("5m", "90s", "2h", "1h30m", " 1.5h ", "300", "2m 30s")] == [
        300, 90, 7200, 5400, 5400, 300, 150]
    assert parse(42) == 42.0 and training._config.format_duration(5400) == "1h30m"
    for bad in ("5 minutes", "m5", "", "-5m", "0s", "1e400", True):
        with pytest.raises(training.TrainingError, match="--time must be a duration"):
            parse(bad)
    assert training.TrainConfig(time="5m").time == 300.0 and training.TrainConfig(time="5m").steps is None
    assert training.TrainConfig().time == training._config.DEFAULT_TIME == 300 and training.TrainConfig().steps is None
    assert training.TrainConfig(steps=10).time is None
    with pytest.raises(training.TrainingError, match="--time 5m and --steps 100 both set the run's length"):
        training.TrainConfig(time="5m", steps=100)
    with pytest.raises(training.TrainingError, match="--time times the warm-up's steps .* needs --warmup 5 or more"):
        training.TrainConfig(time="5m", warmup=2)

    # 10 ms a step, 1 s an eval every 200 steps, 0.5 s a checkpoint every 500: 10 + 5 + 1 s for 1000 steps
    timing = _budget.Timing(step_s=0.01, eval_s=1.0, save_s=0.5)
    assert _budget.run_seconds(0, 1000, timing, 200, 500) == pytest.approx(10 + 5 + 1)
    assert _budget.run_seconds(0, 1001, timing, 200, 500) == pytest.approx(10.01 + 6 + 1.5)  # one more eval and save
    assert _budget.run_seconds(100, 1000, timing, 200, 500) == pytest.approx(9 + 5 + 1)  # the warm-up ran already
    assert _budget.steps_within(16.0, 0, timing, 200, 500) == 1000
    assert _budget.steps_within(17.0, 0, timing, 200, 500) == 1000  # step 1001 would bring an eval and a checkpoint
    assert _budget.steps_within(1.0, 0, timing, 200, 500) == 0
    monkeypatch.setattr(_budget, "MARGIN", 0.03)
    plan = _budget.plan(100.0, 20.0, 100, timing, 200, 500)  # 97 s usable (3% held back), 77 s after the 20 spent
    assert plan.steps == _budget.steps_within(77.0, 100, timing, 200, 500) == 4800  # 47 + 24 evals + 10 saves = 76 s
    assert plan.expected_s == pytest.approx(20 + 76)
    assert _budget.plan(10.0, 20.0, 100, timing, 200, 500).steps == 101  # spent already: one step more, which saves
    assert _budget.step_seconds([50.0, 50.1, 50.2, 59.2, 59.3, 59.4]) == pytest.approx(0.1)  # a stall, ignored

    rates = training._config.learning_rates(1.0, "linear", 4, 10)
    np.testing.assert_allclose(rates, [0.25, 0.4375, 0.625, 0.8125, 1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6], rtol=1e-6)
    for schedule in training._config.SCHEDULES:  # the warm-up's rates do not depend on the run's length
        short, long = (training._config.learning_rates(1.0, schedule, 4, n) for n in (4, 1000))
        np.testing.assert_array_equal(short, long[:4])


@pytest.mark.slow
def test_time_sizes_the_run_and_its_count_is_exact_on_resume_and_as_steps(corpus, tmp_path, monkeypatch,
                                                                          read_metrics):
    """--time stores the count it chose; resumed after a Ctrl-C, or rerun with that --steps, it is the same run.

    The loop's clock ticks 1 s at each reading, so both --time runs see the
    same times and choose the same count.
    """
    ticks = itertools.count()
    clock = types.SimpleNamespace(perf_counter=lambda: float(next(ticks)))
    for module in (training._loop, training._monitor):  # the loop's and its records' times, one clock
        monkeypatch.setattr(module, "time", clock)
    said = []
    options = dict(TINY, warmup=5, time="60s")
    config = training.TrainConfig(out=str(tmp_path / "timed"), corpus=str(corpus), **options)
    steps = training.train(config, progress=False, log=said.append).step
    (line,) = [line for line in said if line.startswith("--time 1m: ")]
    assert "the warm-up's first 5 steps took 1000.0 ms each (median)" in line
    assert f"{steps} steps (--steps {steps}), expected to end at about " in line and 10 < steps < 60
    stored = training.load_run_config(tmp_path / "timed")
    assert stored["steps"] == steps and stored["time"] is None
    assert training.load_run(tmp_path / "timed")[3]["time_s"] == 60.0
    assert not list((tmp_path / "timed").glob(".timing*"))  # the scratch checkpoint and curve are gone

    read = Streams.batch

    def interrupted(self, step):
        if step == 8:
            raise KeyboardInterrupt
        return read(self, step)

    ticks = itertools.count()
    monkeypatch.setattr(Streams, "batch", interrupted)
    assert run(corpus, tmp_path / "parts", **options).interrupted
    monkeypatch.setattr(Streams, "batch", read)
    with pytest.raises(training.TrainingError, match=rf"--time sizes a fresh run; .* is at step 8 of --steps {steps}"):
        run(corpus, tmp_path / "parts", resume=True, **options)
    resumed = training.TrainConfig(**training.load_run_config(tmp_path / "parts"))  # as --resume reads it
    assert training.train(resumed, resume=True, progress=False, log=said.append).step == steps
    assert run(corpus, tmp_path / "fixed", **{**options, "time": None, "steps": steps}).step == steps
    timed = read_metrics(tmp_path / "timed")
    for other in ("parts", "fixed"):
        assert [{**r, "elapsed_s": 0} for r in read_metrics(tmp_path / other)] == [
            {**r, "elapsed_s": 0} for r in timed]


@pytest.mark.slow
def test_a_ctrl_c_while_timing_the_warm_up_saves_nothing(corpus, tmp_path, monkeypatch):
    read = Streams.batch
    monkeypatch.setattr(Streams, "batch", lambda self, step: (_ for _ in ()).throw(KeyboardInterrupt) if step == 3
                        else read(self, step))
    said = []
    config = training.TrainConfig(out=str(tmp_path), corpus=str(corpus), **{**TINY, "warmup": 50, "time": "1m"})
    assert training.train(config, progress=False, log=said.append).interrupted
    assert any("while timing the warm-up to size the run: no checkpoint" in line for line in said)
    assert not (tmp_path / "checkpoint.npz").exists()


def test_time_from_the_command_line(corpus, tmp_path, capsys):
    """Timed for real: the count printed is the count run and stored; --time does not resume."""
    tiny = [f"--{name.replace('_', '-')}={value}" for name, value in {**TINY, "warmup": 20, "eval_every": 100}.items()]
    argv = ["train", "--out", str(tmp_path), "--corpus", str(corpus), "--no-progress", "--time", "5s", *tiny]
    assert _cli.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"--time 5s: the warm-up's first 20 steps took [\d.]+ ms each \(median\)", out), out
    steps = int(re.search(r"\(--steps (\d+)\), expected to end at about \d+ s of 5 s", out)[1])
    assert f"done: step {steps}, validation " in out and " s of the --time 5 s budget" in out
    assert training.load_run_config(tmp_path)["steps"] == steps
    assert _cli.main([*argv, "--resume"]) == 2
    assert "--time sizes a fresh run" in capsys.readouterr().err


def test_heads_are_checked_against_the_cell_and_the_hidden_size():
    with pytest.raises(training.TrainingError, match="--heads 2: the mingru cell has no heads; use one of simple_rnn, "
                       "lstm, gru, slstm"):
        training.TrainConfig(cell="mingru", heads=2)
    with pytest.raises(training.TrainingError, match=r"--heads 3 must divide --hidden 8.*\[1, 2, 4, 8\]"):
        training.TrainConfig(cell="lstm", heads=3, hidden=8)


@pytest.mark.slow
def test_a_headed_slstm_trains_and_keeps_its_heads_on_resume(corpus, tmp_path, read_metrics):
    run(corpus, tmp_path, cell="slstm", heads=2, steps=20, lr=1e-2)
    losses = [r["train_loss"] for r in read_metrics(tmp_path)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses
    stored = training.load_run_config(tmp_path)
    assert stored["heads"] == 2
    with pytest.raises(training.TrainingError, match=r"--heads 2 \(now 4\)"):
        run(corpus, tmp_path, resume=True, cell="slstm", heads=4, steps=25, lr=1e-2)
    result = run(corpus, tmp_path, resume=True, cell="slstm", heads=2, steps=25, lr=1e-2)
    model, params, _, _ = training.load_run(tmp_path)
    assert model.heads == 2 and params.rnn[0].w_hh.shape == (2, 12, 48)  # (heads, H/heads, 4·H/heads)
    assert result.step == 25 and [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 26))


def test_training_reads_jaxrnn_through_public_names_and_leaf_utilities_only():
    """The training package is an application of jaxrnn: the core's private modules may change under it."""
    leaves = {"jaxrnn._io", "jaxrnn._plot", "jaxrnn._arguments", "jaxrnn._timing", "jaxrnn._argparse"}
    private = []
    for path in sorted(Path(training.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "jaxrnn":
                modules = [f"jaxrnn.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            private += [f"{path.name}: {module}" for module in modules
                        if module.startswith("jaxrnn._") and module not in leaves]
    assert not private, private
