"""Smoke tests of the scripts in examples/: each runs as ``python examples/<name>.py`` with fewer steps.

Each check reads what the script prints and asks for what the script is about: a forecaster that beats
the naive forecast, a policy whose returns go up (with the resets check passed), a classifier well above
chance. The scripts run in a fresh interpreter from the repository root, as a user would run them, with
JAX's default float32. (examples/custom_cells.py is exercised by tests/test_protocol.py.)
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each example runs whole, with fewer steps

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300


def run_example(name: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "PYTHONPATH")}
    env.update(PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    process = subprocess.run([sys.executable, f"examples/{name}", *args], check=False, capture_output=True, text=True,
                             cwd=ROOT, env=env, timeout=TIMEOUT_S)
    assert process.returncode == 0, f"examples/{name} exited with {process.returncode}:\n{process.stderr[-4000:]}"
    return process.stdout


def number_after(label: str, text: str) -> float:
    found = re.search(re.escape(label) + r"\s+([0-9.]+)", text)
    assert found, f"no {label!r} in the output:\n{text}"
    return float(found.group(1))


def test_forecaster_beats_the_naive_forecast():
    out = run_example("forecaster.py", "--steps", "120")
    model, naive = number_after("test MSE", out), number_after("naive (last value)", out)
    assert model < 0.7 * naive, out


def test_rl_rollout_resets_and_learns():
    out = run_example("rl_rollout.py", "--iterations", "12")
    assert "resets check:" in out and "each match an unroll of that episode alone" in out, out
    first = number_after("first 3 iterations", out)
    last = float(re.search(r"last 3 ([0-9.]+)", out).group(1))
    assert last > first + 10, out  # CartPole returns from a random policy are about 20


def test_digits_nnx_classifies():
    try:
        importlib.import_module("jaxrnn.nnx")
    except ImportError as error:
        pytest.skip(f"examples/digits_nnx.py needs jaxrnn.nnx (Flax NNX module), not importable here: {error}")
    pytest.importorskip("sklearn", reason="examples/digits_nnx.py needs scikit-learn (the examples extra)")
    out = run_example("digits_nnx.py", "--epochs", "4")
    assert number_after("test accuracy", out) > 0.5, out  # chance is 0.1
