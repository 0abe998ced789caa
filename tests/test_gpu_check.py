"""`bash benchmarks/gpu.sh --cpu`: the GPU check's smoke run end to end, on tiny shapes, and its one report."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxrnn import _registry

ROOT = Path(__file__).resolve().parent.parent
# The script's own process knows the library's cells only: this one may have registered the examples' too.
BUILT_IN = [name for name in _registry.cells(manual=True) if name in _registry._BUILT_IN]


@pytest.mark.slow
def test_gpu_check_smoke_run_writes_one_report(tmp_path):
    out = tmp_path / "gpu"
    # A clean environment: this test process runs with x64 on (conftest); the script must not inherit it.
    env = {key: value for key, value in os.environ.items()
           if key not in ("JAX_ENABLE_X64", "JAX_PLATFORMS", "XLA_FLAGS")}
    env["PYTHON"] = sys.executable
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--cpu", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (out / "results.md").read_text()
    run = json.loads((out / "results.json").read_text())

    # The self-check: a row per cell with a hand-written BPTT, each agreeing in float32 and bfloat16.
    section = report[report.index("## Self-check"):report.index("## Targets")]
    for cell in BUILT_IN:
        [row] = [line for line in section.splitlines() if line.startswith(f"| {cell} |")]
        assert row.endswith("| agree |"), row
    assert {(r["cell"], r["dtype"]) for r in run["self_check"]["rows"]} == {
        (cell, dtype) for cell in BUILT_IN for dtype in ("float32", "bfloat16")}

    # FlashRNN's shape, scaled down, in bfloat16: a table row against the peers, and 1 and 12 heads.
    lstm = report[report.index("## LSTM"):report.index("## GRU")]
    assert "| 2 | 24 | 24 | 16 | bfloat16 |" in lstm
    heads = report[report.index("## Heads"):]
    for k in (1, 12):
        assert f"| lstm | 2 | 24 | 24 | 16 | bfloat16 | {k} |" in heads
    flash = {r["implementation"] for r in run["results"] if (r["hidden"], r["dtype"], r["group"]) == (24, "bfloat16",
                                                                                                       "table")}
    torch = importlib.util.find_spec("torch") is not None  # .ci/newest-jax runs without torch
    assert flash == {"jaxrnn manual", "jaxrnn autodiff", "flax", *(["torch"] if torch else [])}
    assert all(r["agrees"] for r in run["results"])
    assert {r["cell"] for r in run["results"] if r["group"] == "table"} == {"lstm", "gru", "simple_rnn"}

    # The peers that need a GPU are said to, not left out silently.
    assert ("- **torch cuDNN**: needs a CUDA GPU" if torch else "- **torch cuDNN**: torch is not installed") in report
    assert "- **jax cuDNN**: needs a GPU (cuDNN)" in report

    # How each part ended, and their logs.
    ended = report[report.index("## How each part of benchmarks/gpu.sh ended"):]
    for part in ("self-check", "flashrnn", "table-lstm-gru-simple_rnn"):
        assert f"| {part} | 0 |" in ended
        assert (out / "logs" / f"{part}.log").stat().st_size > 0


def test_gpu_check_help_and_bad_arguments():
    script = str(ROOT / "benchmarks" / "gpu.sh")
    shown = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0
    assert "bash benchmarks/gpu.sh --cpu [--out DIR]" in shown.stdout and "Exit status" in shown.stdout
    refused = subprocess.run(["bash", script, "--gpus", "2"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "unknown argument --gpus" in refused.stderr
