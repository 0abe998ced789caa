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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_bfloat16_runs_each_peer_that_can_and_says_why_the_others_did_not(tmp_path):
    pytest.importorskip("torch", reason="the peer that runs bfloat16 here is torch's CPU LSTM")
    code, results = run(tmp_path, "--cells", "lstm", "--sweep", "", "--dtype", "bfloat16",
                        "--implementations", "torch,numpy notebook")
    assert code == 0
    rows = results["results"]
    assert {r["implementation"] for r in rows} == {"jaxrnn manual", "torch"}
    assert all(r["dtype"] == "bfloat16" and r["agrees"] for r in rows)
    # Held to float32 on the same numbers: bfloat16's rounding shows, well within the tolerance.
    assert all(0 < r["max_rel_error"] < _suite.TOLERANCES["bfloat16"] for r in rows)
    assert [(n["implementation"], n["dtype"]) for n in results["not_run"]] == [("numpy notebook", "bfloat16")]
    report = (tmp_path / "results.md").read_text()
    assert "| 2 | 3 | 4 | 5 | bfloat16 |" in report
    assert "## Not run" in report and "**numpy notebook** on lstm B2 X3 H4 T5 bfloat16 (table): " in report
    # jax cuDNN is not run in bfloat16 either, where a GPU has it.
    from jaxrnn.bench._peers import CUDNN_JAX
    from jaxrnn.bench._problem import Problem

    for dtype, expected in (("bfloat16", {"jax cuDNN": "jax.experimental.rnn.lstm runs float32 only"}),
                            ("float32", {})):
        assert _suite.unsupported(Problem("lstm", 2, 3, 4, 5, dtype=dtype), [CUDNN_JAX], "table") == expected


def test_a_peer_that_fails_on_a_problem_is_listed_as_not_run(tmp_path, monkeypatch):
    def fail(problem, data):
        raise RuntimeError("no kernel for this shape")

    broken = Implementation("broken peer", ("gru",), lambda: None, fail)
    monkeypatch.setattr(_suite, "IMPLEMENTATIONS", (*_suite.IMPLEMENTATIONS, broken))
    code, results = run(tmp_path, "--cells", "gru", "--sweep", "", "--implementations", "broken peer")
    assert code == 0
    assert {r["implementation"] for r in results["results"]} == {"jaxrnn manual"}
    [entry] = results["not_run"]
    assert entry["implementation"] == "broken peer" and "RuntimeError: no kernel for this shape" in entry["reason"]


@pytest.mark.slow
def test_heads_shapes_set_the_heads_group_and_the_head_counts_must_divide_them(tmp_path):
    code, results = run(tmp_path, "--cells", "lstm", "--shapes", "", "--sweep", "", "--heads", "1,12",
                        "--heads-shapes", "2x3x24x5", "--implementations", "jaxrnn autodiff,flax")
    assert code == 0
    assert {(r["hidden"], r["heads"], r["implementation"]) for r in results["results"]} == {
        (24, heads, impl) for heads in (1, 12) for impl in ("jaxrnn manual", "jaxrnn autodiff")}
    with pytest.raises(SystemExit):
        _main.main(["--heads", "12", "--heads-shapes", "2x3x16x5", "--no-plots"])


@pytest.mark.slow
def test_self_check_rows_and_a_disagreement_fails_the_run(tmp_path, monkeypatch, capsys):
    from jaxrnn.bench import _self_check

    checked = _self_check.self_check(["gru"], (2, 3, 4, 10), log=lambda line: None)
    assert [(r["cell"], r["dtype"], r["agrees"]) for r in checked["rows"]] == [
        ("gru", "float32", True), ("gru", "bfloat16", True)]
    assert checked["rows"][0]["max_rel_error"] < 1e-4 < checked["rows"][1]["max_rel_error"]

    def wrong_for_gru(cells, shape):  # gru's float32 gradient off; every other cell as gru's were
        rows = [{**row, "cell": cells[0]} for row in checked["rows"]]
        if cells == ["gru"]:
            rows[0] = {**rows[0], "max_rel_error": 0.5, "agrees": False}
        return {**checked, "rows": rows}

    monkeypatch.setattr(_self_check, "self_check", wrong_for_gru)
    code, results = run(tmp_path, "--self-check", "--shapes", "", "--sweep", "")
    assert code == 1
    assert "self-check failed: manual and autodiff gradients disagree for gru;" in capsys.readouterr().err
    assert [row["cell"] for row in results["self_check"]["rows"]] == [
        cell for cell in _registry.cells(manual=True) for _ in range(2)]
    report = (tmp_path / "results.md").read_text()
    [row] = [line for line in report.splitlines() if line.startswith("| gru |")]
    assert row.startswith("| gru | 5.0e-01 ⚠ |") and row.endswith("| **DISAGREE** |")
    assert report.count("**DISAGREE**") == 1 and report.count("| agree |") == len(_registry.cells(manual=True)) - 1


@pytest.mark.slow
def test_append_makes_one_report_of_runs_in_parts(tmp_path):
    run(tmp_path, "--cells", "lstm", "--sweep", "", "--implementations", "torch")
    code, results = run(tmp_path, "--cells", "gru", "--sweep", "", "--dtype", "bfloat16", "--append")
    assert code == 0
    assert {(r["cell"], r["dtype"]) for r in results["results"]} == {("lstm", "float32"), ("gru", "bfloat16")}
    assert results["command"].count("python -m benchmarks") == 2
    assert all(r["ceiling_fraction"] == r["gflops"] / results["ceiling"] for r in results["results"])
    report = (tmp_path / "results.md").read_text()
    assert "## LSTM" in report and "## GRU" in report
    code, results = run(tmp_path, "--cells", "gru", "--sweep", "")  # without --append: this run alone
    assert {r["cell"] for r in results["results"]} == {"gru"}


def test_a_run_stopped_midway_keeps_the_problems_it_finished(tmp_path, monkeypatch):
    real = _suite.measure

    def measure(problem, impls, settings, *, group):
        if problem.steps == 6:
            raise KeyboardInterrupt  # as a time limit or Ctrl-C would stop it
        return real(problem, impls, settings, group=group)

    monkeypatch.setattr(_suite, "measure", measure)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "--cells", "gru", "--shapes", "2x3x4x5,2x3x4x6", "--sweep", "", "--implementations", "flax")
    results = json.loads((tmp_path / "results.json").read_text())
    assert {(r["steps"], r["implementation"]) for r in results["results"]} == {(5, "jaxrnn manual"), (5, "flax")}
    assert "| 2 | 3 | 4 | 5 |" in (tmp_path / "results.md").read_text()
