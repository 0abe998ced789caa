"""The state-tracking demo: running-parity data, a tiny run through the command line, argument errors."""

import contextlib
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import _cli
from jaxrnn.training import _state_tracking as st

pytestmark = pytest.mark.xdist_group("state_tracking")  # the module's tiny run, built once


def test_parity_problem_labels_the_running_parity():
    xs, labels = st.parity_problem(jax.random.key(0), 16, 12)
    assert xs.shape == (12, 16, 2) and xs.dtype == jnp.float32 and labels.shape == (12, 16)
    bits = np.asarray(xs[..., 1], np.int64)
    np.testing.assert_array_equal(np.asarray(xs).sum(-1), 1)  # one-hot
    np.testing.assert_array_equal(labels, np.bitwise_xor.accumulate(bits, axis=0))
    assert 0.3 < bits.mean() < 0.7


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run (an LSTM and a minGRU) through the command line, shared below (compiling is the cost)."""
    out = tmp_path_factory.mktemp("state_tracking")
    argv = ["state-tracking", "--cells", "lstm,mingru", "--length", "6", "--test-length", "12", "--hidden", "16",
            "--batch", "64", "--steps", "80", "--lr", "3e-2", "--eval-every", "40", "--out", str(out),
            "--no-progress"]
    printed = io.StringIO()
    with jax.enable_x64(False), contextlib.redirect_stdout(printed):
        status = _cli.main(argv)
    return status, printed.getvalue(), out


@pytest.mark.slow
def test_tiny_run_writes_json_png_and_a_table(tiny_run):
    status, printed, out = tiny_run
    assert status == 0
    assert (out / "state_tracking.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "state_tracking.json").read_text())
    assert report["config"]["cells"] == ["lstm", "mingru"] and report["config"]["test_length"] == 12
    for name in ("lstm", "mingru"):
        result = report["cells"][name]
        assert result["curve"]["step"] == [0, 40, 80] and result["curve"]["train_loss"][0] is None
        by_step = result["accuracy_by_step"]
        assert len(by_step) == 12 and all(0 <= a <= 1 for a in by_step)
        assert result["final_accuracy_seen"] == pytest.approx(np.mean(by_step[:6]), abs=1e-3)
        assert result["final_accuracy_longer"] == pytest.approx(np.mean(by_step[6:]), abs=1e-3)
        row = next(line.split() for line in printed.splitlines() if line.startswith(name + " "))
        assert float(row[1]) == pytest.approx(result["final_accuracy_seen"], abs=1e-3)
    assert str(out / "state_tracking.json") in printed


@pytest.mark.slow
def test_tiny_run_the_lstm_learns_parity_and_the_mingru_does_not(tiny_run):
    cells = json.loads((tiny_run[2] / "state_tracking.json").read_text())["cells"]
    # Seeds 0-2 at these settings: the LSTM at 1.000 on both halves; the minGRU 0.59-0.65 on steps 1-6 (the
    # first steps are easy for any cell) and 0.49-0.50 on steps 7-12.
    assert cells["lstm"]["final_accuracy_seen"] > 0.95 and cells["lstm"]["final_accuracy_longer"] > 0.95
    assert cells["mingru"]["final_accuracy_longer"] < 0.6


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(test_length=64), ValueError, "test_length must be longer than length.*test_length=64 with length=64"),
    (dict(cells=("lstm", "tcn")), ValueError, r"unknown cell\(s\) \['tcn'\]"),
    (dict(hidden=0), ValueError, "hidden must be > 0"),
    (dict(lr=-1.0), ValueError, "lr must be a finite number > 0"),
    (dict(grad="forward"), ValueError, "grad must be one of"),
])
def test_bad_arguments_raise_before_any_work(kwargs, error, message, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(error, match=message):
        st.run_state_tracking(**kwargs, out=out, progress=False)
    assert not out.exists()


def test_command_refuses_a_test_length_that_is_not_longer(capsys):
    assert _cli.main(["state-tracking", "--length", "64", "--test-length", "32"]) == 2
    assert "test_length must be longer than length" in capsys.readouterr().err
