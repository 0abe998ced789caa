"""The memory-task demo: adding-problem data, a tiny end-to-end run, and argument errors."""

import contextlib
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import _cli
from jaxrnn.training import _memory_task as mt

pytestmark = pytest.mark.xdist_group("memory_task")  # the module's tiny run, built once

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.sweep
@pytest.mark.parametrize("length", [2, 7, 20])
def test_adding_problem_marks_one_step_in_each_half_and_sums_them(length):
    xs, targets = mt.adding_problem(jax.random.key(3), 64, length)
    assert xs.shape == (length, 64, 2) and xs.dtype == jnp.float32  # float32 even with x64 enabled
    assert targets.shape == (64,) and targets.dtype == jnp.float32
    values, markers = np.asarray(xs[..., 0]), np.asarray(xs[..., 1])
    assert set(np.unique(markers)) <= {0.0, 1.0}
    half = length // 2
    np.testing.assert_array_equal(markers[:half].sum(0), 1)
    np.testing.assert_array_equal(markers[half:].sum(0), 1)
    assert ((values >= 0) & (values < 1)).all()
    first, second = markers[:half].argmax(0), half + markers[half:].argmax(0)
    rows = np.arange(64)
    np.testing.assert_allclose(targets, values[first, rows] + values[second, rows], rtol=1e-6)


def test_adding_problem_is_deterministic_given_the_key_and_jit_able():
    a = mt.adding_problem(jax.random.key(0), 8, 12)
    b = jax.jit(mt.adding_problem, static_argnums=(1, 2))(jax.random.key(0), 8, 12)
    c = mt.adding_problem(jax.random.key(1), 8, 12)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_marker_positions_cover_each_half():
    xs, _ = mt.adding_problem(jax.random.key(5), 2000, 8)
    positions = np.nonzero(np.asarray(xs[..., 1]))[0]
    assert set(positions) == set(range(8))  # uniform over each half: every step is marked somewhere


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny two-cell run through the command line, shared by the tests below (compiling is the cost)."""
    out = tmp_path_factory.mktemp("memory_task")
    argv = ["memory-task", "--cells", "simple_rnn,gru", "--length", "6", "--hidden", "8", "--batch", "32",
            "--steps", "60", "--lr", "3e-2", "--eval-every", "20", "--out", str(out), "--no-progress"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = _cli.main(argv)
    return status, printed.getvalue(), out


@pytest.mark.slow
def test_tiny_run_writes_json_and_png(tiny_run):
    status, _, out = tiny_run
    assert status == 0
    assert (out / "memory_task.png").read_bytes()[:8] == PNG_MAGIC
    report = json.loads((out / "memory_task.json").read_text())
    assert report["config"]["steps"] == 60 and report["config"]["cells"] == ["simple_rnn", "gru"]
    assert report["accuracy_tolerance"] == mt.ACCURACY_TOLERANCE
    for name in ("simple_rnn", "gru"):
        result = report["cells"][name]
        curve = result["curve"]
        assert curve["step"] == [0, 20, 40, 60]
        assert curve["train_loss"][0] is None  # nothing trained before step 0
        assert all(0 <= a <= 1 for a in curve["accuracy"])
        assert result["final_eval_mse"] == curve["eval_mse"][-1]
        assert result["seconds"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["simple_rnn", "gru"])
def test_tiny_run_training_loss_falls(tiny_run, name):
    curve = json.loads((tiny_run[2] / "memory_task.json").read_text())["cells"][name]["curve"]
    # Mean loss over steps 41-60 against steps 1-20; at T = 6 both cells can use the inputs
    # (seeds 0-2 gave ratios 0.55-0.73 for the simple RNN and below 0.2 for the GRU).
    assert curve["train_loss"][-1] < 0.8 * curve["train_loss"][1], curve["train_loss"]
    assert curve["eval_mse"][-1] < curve["eval_mse"][0], curve["eval_mse"]


@pytest.mark.slow
def test_tiny_run_gru_solves_the_short_task(tiny_run):
    report = json.loads((tiny_run[2] / "memory_task.json").read_text())
    assert report["cells"]["gru"]["final_eval_mse"] < 0.3 * mt.BASELINE_MSE  # seeds 0-2: 0.009-0.022


@pytest.mark.slow
def test_command_prints_a_table_and_the_paths(tiny_run):
    _, printed, out = tiny_run
    rows = {row[0]: row for row in map(str.split, printed.splitlines()) if row[:1] in (["simple_rnn"], ["gru"])}
    report = json.loads((out / "memory_task.json").read_text())
    for name, row in rows.items():
        assert float(row[1]) == pytest.approx(report["cells"][name]["final_eval_mse"], abs=1e-4)
        assert row[3] == "60"
    assert set(rows) == {"simple_rnn", "gru"}
    assert str(out / "memory_task.json") in printed and str(out / "memory_task.png") in printed
    assert f"< {mt.ACCURACY_TOLERANCE}" in printed


def test_flag_defaults_match_the_function():
    args = _cli.build_parser().parse_args(["memory-task"])
    assert args.cells == ["simple_rnn", "lstm", "gru"] and args.out == "memory_task_out"
    for key, value in mt.DEFAULTS.items():
        assert getattr(args, key) == value, key


@pytest.mark.parametrize(
    "flags", [["--cells", "lstm,tcn"], ["--cells", "gru,gru"], ["--length", "1"], ["--hidden", "0"], ["--lr", "-1"]]
)
def test_bad_flags_exit(flags, capsys):
    with pytest.raises(SystemExit):
        _cli.build_parser().parse_args(["memory-task", *flags])
    err = capsys.readouterr().err
    assert "expected a number" in err or "unknown cell" in err or "listed twice" in err, err


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(cells=("lstm", "tcn")), ValueError, r"unknown cell\(s\) \['tcn'\]; choose from simple_rnn, lstm, gru"),
        (dict(cells=()), ValueError, "cells is empty"),
        (dict(cells=("gru", "gru")), ValueError, "more than once"),
        (dict(cells="lstm"), TypeError, r"Pass cells=\('lstm',\)"),
        (dict(length=1), ValueError, "length must be ≥ 2.*got 1"),
        (dict(hidden=0), ValueError, "hidden must be > 0; got 0"),
        (dict(batch=-3), ValueError, "batch must be > 0; got -3"),
        (dict(steps=2.5), TypeError, "steps must be an int; got 2.5"),
        (dict(eval_every=0), ValueError, "eval_every must be > 0"),
        (dict(lr=0.0), ValueError, "lr must be a finite number > 0; got 0.0"),
        (dict(lr="fast"), TypeError, "lr must be a number"),
        (dict(grad="forward"), ValueError, "grad must be one of"),
    ],
)
def test_bad_arguments_raise_before_any_work(kwargs, error, message, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(error, match=message):
        mt.run_memory_task(**kwargs, out=out, progress=False)
    assert not out.exists()


def test_adding_problem_rejects_bad_sizes():
    with pytest.raises(ValueError, match="length must be ≥ 2"):
        mt.adding_problem(jax.random.key(0), 4, 1)
    with pytest.raises(ValueError, match="batch must be > 0"):
        mt.adding_problem(jax.random.key(0), 0, 10)
