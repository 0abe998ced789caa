"""`jaxrnn train` / `jaxrnn sample`: learning, exact resume, the NaN guard, checkpoints, data parallel."""

import re
import shutil
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxrnn import _cli, training
from jaxrnn.training._corpus import Streams, Vocabulary, split

pytestmark = pytest.mark.xdist_group("training")  # the module's trained run, built once

# Small enough to compile and run in about a second per run on 2 cores.
TINY = dict(hidden=24, embed=8, batch=4, seq_len=16, eval_every=5, checkpoint_every=5, val_chars=256)


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
