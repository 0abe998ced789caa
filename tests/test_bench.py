"""The benchmark suite end to end: `python -m benchmarks` / `jaxrnn bench` on tiny problems.

Speed itself is never asserted here (timed tests are flaky on a shared
machine); these tests check that the suite runs every implementation on the
same network, catches one that computes something else, and writes its report.
"""

import json

import numpy as np
import pytest

from jaxrnn import _cli, _registry
from jaxrnn.bench import _main, _suite
from jaxrnn.bench._jaxrnn import MANUAL
from jaxrnn.bench._problem import Implementation
from jaxrnn.testing import relative_error

TINY = ["--shapes", "2x3x4x5", "--sweep", "3", "--rounds", "3", "--budget", "0.01"]


@pytest.fixture(autouse=True)
def small_ceiling(monkeypatch):
    """The real measurement, on 256² matrices: 2048² would cost seconds per run here."""
    real = _suite.sgemm_ceiling
    monkeypatch.setattr(_suite, "sgemm_ceiling", lambda: real(size=256, rounds=3))


def run(tmp_path, *flags, plots=False):
    code = _main.main([*TINY, "--out", str(tmp_path), *flags, *([] if plots else ["--no-plots"])])
    return code, json.loads((tmp_path / "results.json").read_text())


def test_every_available_implementation_runs_agrees_and_is_reported(tmp_path):
    code, results = run(tmp_path, "--cells", "lstm", plots=True)
    assert code == 0
    ready, skipped = _suite.available(_suite.IMPLEMENTATIONS)
    assert set(results["skipped"]) == set(skipped)
    rows = results["results"]
    for cell in ("lstm",):  # one cell keeps it fast; test_bench_peers checks every peer's cells
        for group, steps in (("table", 5), ("sweep", 3)):
            names = {r["implementation"] for r in rows if (r["cell"], r["group"], r["steps"]) == (cell, group, steps)}
            assert names == {impl.name for impl in ready if impl.has(cell)}, (cell, group, steps)
    assert all(r["agrees"] and r["max_rel_error"] < 1e-4 for r in rows)
    manual = [r for r in rows if r["implementation"] == MANUAL.name]
    assert all(r["gradient_ratio"] == 1.0 and r["forward_ratio"] == 1.0 for r in manual)
    assert all(r["gradient_ms"] > 0 and r["compile_s"] > 0 and r["temp_mib"] > 0 for r in manual)
    assert results["ceiling"] == max(results["ceiling_gflops"].values()) > 0
    report = (tmp_path / "results.md").read_text()
    assert "## Targets" in report and "| 2 | 3 | 4 | 5 |" in report
    for name in ("time_vs_T.png", "memory_vs_T.png", "ratios.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def wrong_manual_outputs(problem, data):
    """jaxrnn manual, with every output gradient off by 1%."""
    prepared = MANUAL.prepare(problem, data)

    def outputs():
        hs, grads = prepared.outputs()
        return hs, type(grads)(*(g * 1.01 for g in grads))

    return prepared._replace(outputs=outputs)


def test_an_implementation_that_disagrees_fails_the_run(tmp_path, monkeypatch, capsys):
    broken = MANUAL._replace(prepare=wrong_manual_outputs)
    monkeypatch.setattr(_suite, "IMPLEMENTATIONS", (broken, *_suite.IMPLEMENTATIONS[1:]))
    code, results = run(tmp_path, "--cells", "gru", "--sweep", "", "--implementations", "jaxrnn manual")
    assert code == 1
    assert "jaxrnn manual computed different gradients" in capsys.readouterr().err
    assert not any(r["agrees"] for r in results["results"])


def test_implementations_can_be_chosen_and_manual_always_runs(tmp_path):
    code, results = run(tmp_path, "--cells", "lstm", "--sweep", "", "--implementations", "torch")
    assert code == 0
    names = {r["implementation"] for r in results["results"]}
    assert names <= {"jaxrnn manual", "jaxrnn autodiff", "torch"} and "jaxrnn manual" in names


def test_a_missing_peer_is_skipped_with_its_reason(tmp_path, monkeypatch):
    absent = Implementation("absent peer", ("lstm",), lambda: "absent is not installed: pip install 'jaxrnn[bench]'",
                            lambda problem, data: pytest.fail("a missing peer must not be prepared"))
    monkeypatch.setattr(_suite, "IMPLEMENTATIONS", (MANUAL, absent))
    code, results = run(tmp_path, "--cells", "lstm", "--sweep", "")
    assert code == 0
    assert results["skipped"] == {"absent peer": "absent is not installed: pip install 'jaxrnn[bench]'"}
    assert "absent is not installed" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("flags, message", [
    (["--shapes", "2x3x4"], "expected BxXxHxT"),
    (["--shapes", "2x0x4x5"], "expected BxXxHxT"),
    (["--sweep", "10,-1"], "must be ≥ 1"),
    (["--cells", "tcn"], "unknown cell"),
    (["--implementations", "keras"], "unknown implementation"),
])
def test_bad_flags_exit_2_with_a_message(flags, message, capsys):
    with pytest.raises(SystemExit) as info:
        _main.main(flags)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_heads_run_jaxrnn_alone_and_report_the_speed_up(tmp_path, monkeypatch):
    monkeypatch.setattr(_suite, "HEADS_SHAPE", (2, 3, 5))
    monkeypatch.setattr(_suite, "HEADS_HIDDEN", (8,))
    code, results = run(tmp_path, "--cells", "slstm", "--shapes", "", "--sweep", "", "--heads", "1,4")
    assert code == 0
    rows = results["results"]
    assert {(r["cell"], r["heads"], r["implementation"]) for r in rows} == {
        ("slstm", heads, impl) for heads in (1, 4) for impl in ("jaxrnn manual", "jaxrnn autodiff")}
    assert all(r["agrees"] and r["group"] == "heads" and r["hidden"] == 8 for r in rows)
    report = (tmp_path / "results.md").read_text()
    table = report[report.index("## Heads"):].splitlines()
    assert sum(line.startswith("| slstm | 2 | 3 | 8 | 5 | 4 |") for line in table) == 1
    with pytest.raises(SystemExit):
        _main.main(["--heads", "3", "--no-plots"])  # 3 does not divide the hidden sizes


def test_too_few_rounds_is_refused(capsys):
    assert _main.main(["--rounds", "1", "--no-plots"]) == 2  # refused before anything is measured
    assert "--rounds must be ≥ 3" in capsys.readouterr().err


def test_jaxrnn_bench_is_the_same_command(capsys):
    with pytest.raises(SystemExit) as info:
        _cli.main(["bench", "--help"])
    assert info.value.code == 0
    assert "usage: jaxrnn bench" in capsys.readouterr().out


def test_relative_error_sees_shape_value_and_nan_differences():
    a = np.ones((2, 3))
    assert relative_error([a], [a]) == 0.0
    assert relative_error([a * 1.5], [a]) == pytest.approx(0.5)
    assert relative_error([a[:1]], [a]) == float("inf")
    assert relative_error([a, a * np.nan], [a, a]) == float("inf")  # a NaN gradient never agrees
    assert relative_error([a], [a, a]) == float("inf")


GRID = ((2, 3, 4, 5), (1, 2, 4, 3))


def test_grid_runs_its_shapes_alone_and_writes_the_heat_map(tmp_path, monkeypatch):
    monkeypatch.setattr(_suite, "GRID_SHAPES", GRID)
    code = _main.main(["--grid", "--cells", "gru", "--implementations", "jaxrnn autodiff", "--rounds", "3",
                       "--budget", "0.01", "--out", str(tmp_path)])
    assert code == 0
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert {r["group"] for r in rows} == {"grid"}  # no table shapes, no sweep
    assert sorted((r["batch"], r["input"], r["hidden"], r["steps"], r["implementation"]) for r in rows) == sorted(
        (*shape, impl) for shape in GRID for impl in ("jaxrnn manual", "jaxrnn autodiff"))
    assert all(r["cell"] == "gru" and r["agrees"] for r in rows)
    report = (tmp_path / "results.md").read_text()
    grid = report[report.index("## Grid"):]
    assert "| 1 | 2 | 4 | 3 |" in grid and "| 2 | 3 | 4 | 5 |" in grid
    assert "- **gru**: manual ≤ autodiff on" in grid
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "time_vs_T.png").exists()


def test_grid_defaults_and_what_overrides_them(tmp_path, monkeypatch):
    """Nothing is measured: ``measure`` records what it was asked for."""
    monkeypatch.setattr(_suite, "GRID_SHAPES", GRID)
    asked = []
    monkeypatch.setattr(_suite, "measure", lambda problem, impls, settings, *, group: asked.append(
        (problem, group, [impl.name for impl in impls], settings)) or [])

    assert _main.main(["--grid", "--out", str(tmp_path), "--no-plots"]) == 0
    assert {(p.cell, (p.batch, p.input, p.hidden, p.steps)) for p, group, _, _ in asked} == {
        (cell, shape) for cell in _registry.cells(manual=True) for shape in GRID}
    assert {group for _, group, _, _ in asked} == {"grid"}
    ready, _ = _suite.available(_suite.IMPLEMENTATIONS)
    names = {name for _, _, impls, _ in asked for name in impls}
    assert names == {impl.name for impl in ready} & set(_suite.GRID_IMPLEMENTATIONS)
    assert "numpy notebook" not in names
    assert {(s.rounds, s.budget_s) for _, _, _, s in asked} == {(_main.GRID_ROUNDS, _main.GRID_BUDGET)}

    asked.clear()
    assert _main.main(["--grid", "--cells", "lstm", "--shapes", "2x3x4x5", "--implementations", "numpy notebook",
                       "--rounds", "4", "--budget", "2", "--out", str(tmp_path), "--no-plots"]) == 0
    assert sorted((group, p.steps) for p, group, _, _ in asked) == [("grid", 3), ("grid", 5), ("table", 5)]
    assert {name for _, _, impls, _ in asked for name in impls} == {"jaxrnn manual", "numpy notebook"}
    assert {(s.rounds, s.budget_s) for _, _, _, s in asked} == {(4, 2.0)}


def test_grid_and_quick_are_alternatives(capsys):
    with pytest.raises(SystemExit) as info:
        _main.main(["--grid", "--quick", "--no-plots"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
