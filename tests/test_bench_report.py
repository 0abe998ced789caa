"""The benchmark report: tables, targets judged from the numbers, and the files it writes."""

import json

import pytest

from jaxrnn.bench._report import markdown, write

SMALL = (32, 64, 128, 100)
LONG = (8, 32, 64, 1000)  # one of the two small shapes of target (b), and T 1000 for (e)


def result(impl, shape, *, group="table", cell="lstm", ms=10.0, ratio=1.0, temp=None, compile_s=None,
           agrees=True, error=1e-6):
    """One suite result; the JAX fields are None unless given, as for a non-JAX implementation."""
    b, x, h, t = shape
    return {
        "cell": cell, "batch": b, "input": x, "hidden": h, "steps": t, "group": group, "implementation": impl,
        "gradient_ms": ms * ratio, "forward_ms": ms * ratio / 3, "gradient_ratio": ratio, "forward_ratio": ratio,
        "gflops": 50.0, "ceiling_fraction": 0.5, "compile_s": compile_s, "temp_mib": temp,
        "max_rel_error": error, "agrees": agrees, "rounds": 5,
    }


def make_run(torch_ratio=1.3, *, torch=True, backend="cpu"):
    """lstm on two table shapes (manual, autodiff, torch) and a sweep over two T (manual, autodiff)."""
    results = []
    for shape in (SMALL, LONG):
        results += [
            result("jaxrnn manual", shape, ms=12.3, temp=2.0, compile_s=0.3),
            result("jaxrnn autodiff", shape, ms=12.3, ratio=1.45, temp=8.0, compile_s=0.4),
        ]
        if torch:
            results.append(result("torch", shape, ratio=torch_ratio))
    for t in (100, 1000):
        shape = (16, 128, 128, t)
        results += [
            result("jaxrnn manual", shape, group="sweep", ms=t / 10, temp=t / 100, compile_s=0.2),
            result("jaxrnn autodiff", shape, group="sweep", ms=t / 10, ratio=1.2, temp=t / 20, compile_s=0.3),
        ]
    return {
        "command": "python -m benchmarks --quick",
        "date": "2025-01-01T00:00:00+00:00",
        "seconds": 42.0,
        "machine": {"cpu": "Test CPU", "cores": 2, "backend": backend, "devices": ["TFRT_CPU_0"],
                    "device_kind": "cpu", "versions": {"jax": "0.0", "numpy": "0.0"}, "xla_flags": ""},
        "ceiling_gflops": {"jax": 100.0, "torch": 90.0},
        "ceiling": 100.0,
        "skipped": {} if torch else {"torch": "torch is not installed"},
        "results": results,
    }


def section(md, heading):
    """The lines under ``heading`` up to the next heading of any level."""
    lines = md.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    return lines[start:end]


def table_rows(lines):
    """The table's rows as lists of cells, header first, the alignment row dropped."""
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("|")]
    return [rows[0], *rows[2:]]


def target(md, key):
    lines = [line for line in md.splitlines() if line.startswith(f"- **({key}) ")]
    assert len(lines) == 1, md
    return lines[0]


@pytest.mark.parametrize("heading", ["### Training gradient", "### Forward pass"])
def test_table_has_a_row_per_shape_and_a_column_per_implementation(heading):
    rows = table_rows(section(markdown(make_run()), heading))
    header, body = rows[0], rows[1:]
    assert header[:7] == ["B", "X", "H", "T", "jaxrnn manual", "jaxrnn autodiff", "torch"]
    assert [tuple(map(int, row[:4])) for row in body] == [SMALL, LONG]  # in the order measured
    if heading == "### Training gradient":
        assert body[1][4] == "12.3 ms"  # manual: its ratio would always be 1
        assert body[1][5] == "17.8 ms (1.45×)"
        assert body[1][-1] == "2.00 / 8.00 (0.25×)"  # memory: manual / autodiff


def test_sweep_table_has_a_row_per_t():
    rows = table_rows(section(markdown(make_run()), "### Training gradient against sequence length T (B16 X128 H128)"))
    assert rows[0] == ["T", "jaxrnn manual", "jaxrnn autodiff", "memory MiB: manual / autodiff"]
    assert [row[0] for row in rows[1:]] == ["100", "1000"]
    assert rows[2][1:] == ["100 ms", "120 ms (1.20×)", "10.0 / 50.0 (0.20×)"]


@pytest.mark.parametrize("torch_ratio, status", [(1.3, "met"), (0.8, "not met")])
def test_torch_target_follows_the_numbers(torch_ratio, status):
    line = target(markdown(make_run(torch_ratio)), "a")
    assert line.startswith(f"- **(a) {status}**"), line
    assert f"torch {torch_ratio:.2f}×" in line


def test_targets_without_their_inputs_are_not_measured():
    md = markdown(make_run(torch=False))
    line = target(md, "a")
    assert line.startswith("- **(a) not measured in this run**"), line
    assert "torch is not installed" in line
    assert target(md, "c").startswith("- **(c) not measured in this run**")  # B256 X256 H512 T50 was not run
    assert "- **torch**: torch is not installed" in section(md, "## Skipped")
    assert "(f)" not in md  # the cuDNN targets only on a GPU


def test_other_targets_follow_the_numbers():
    md = markdown(make_run())
    # (b) needs B32 X64 H128 T100 too (here 1.45×) and ≥ 1× everywhere; the sweep has 1.2×.
    assert target(md, "b").startswith("- **(b) met**")
    assert target(md, "d").startswith("- **(d) met**") and "(max 0.30 s)" in target(md, "d")
    assert target(md, "e").startswith("- **(e) met**")  # 2 / 8 and 10 / 50 at T 1000

    run = make_run()
    for r in run["results"]:
        if r["implementation"] == "jaxrnn autodiff" and r["steps"] == 1000:
            r["gradient_ratio"], r["temp_mib"] = 0.9, 2.5 * r["temp_mib"] / 8  # slower than manual; less memory
        if r["implementation"] == "jaxrnn manual" and r["batch"] == 16:
            r["compile_s"] = 0.75
    md = markdown(run)
    assert target(md, "b").startswith("- **(b) not met**") and "jaxrnn autodiff 0.90×" in target(md, "b")
    assert target(md, "d").startswith("- **(d) not met**") and "(max 0.75 s)" in target(md, "d")
    assert target(md, "e").startswith("- **(e) not met**") and "2.00 / 2.50 MiB (0.80×)" in target(md, "e")


def test_gpu_adds_the_cudnn_targets():
    md = markdown(make_run(backend="gpu"))
    assert target(md, "f").startswith("- **(f) not measured in this run**")  # no cuDNN results
    assert target(md, "g").startswith("- **(g) not measured in this run**")  # no GRU


def test_a_disagreeing_result_is_called_out():
    clean = markdown(make_run())
    assert "WARNING" not in clean and "⚠ " not in clean.replace("⚠ marks", "")
    run = make_run()
    bad = next(r for r in run["results"] if r["implementation"] == "torch" and r["steps"] == 1000)
    bad["agrees"], bad["max_rel_error"] = False, 0.31
    md = markdown(run)
    warning = "\n".join(section(md, "## ⚠ Results that disagree"))
    assert "WARNING" in warning
    assert "**torch** on lstm B8 X32 H64 T1000 (table): max relative error 3.1e-01" in warning
    assert "13.0 ms (1.30×) ⚠" in "\n".join(section(md, "### Training gradient"))


def test_write_creates_the_json_the_markdown_and_the_plots(tmp_path):
    run = make_run()
    out = tmp_path / "out"  # not there yet: write makes it
    paths = write(run, out)
    names = {path.name for path in paths}
    assert names == {"results.json", "results.md", "time_vs_T.png", "memory_vs_T.png", "ratios.png"}
    assert all(path.parent == out for path in paths)
    assert json.loads((out / "results.json").read_text()) == run
    assert (out / "results.md").read_text(encoding="utf-8") == markdown(run)
    for name in ("time_vs_T.png", "memory_vs_T.png", "ratios.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000, name


def test_write_skips_plots_without_data(tmp_path):
    run = make_run()
    run["results"] = [r for r in run["results"] if r["group"] == "table"]
    assert {path.name for path in write(run, tmp_path)} == {"results.json", "results.md", "ratios.png"}
    assert {path.name for path in write(run, tmp_path / "no-plots", plots=False)} == {"results.json", "results.md"}


# --------------------------------------------------------------------------
# The grid.

GRID_A, GRID_B, GRID_C = (4, 8, 16, 30), (64, 1, 32, 10), (1, 1, 16, 10)


def make_grid_run():
    """A grid run: lstm on three shapes, gru on one; ratios are peer / manual, as the suite records them.

    lstm at GRID_C has autodiff only; gru has no torch (a cell a peer lacks).
    """
    results = []
    ratios = {  # shape: {implementation: gradient_ratio}
        GRID_A: {"jaxrnn autodiff": 1.25, "flax": 2.0, "torch": 0.8},  # torch fastest, manual slower than it
        GRID_B: {"jaxrnn autodiff": 0.5, "flax": 4.0, "torch": 1.6},  # autodiff fastest
        GRID_C: {"jaxrnn autodiff": 1.0},
    }
    for shape, by_impl in ratios.items():
        results.append(result("jaxrnn manual", shape, group="grid", ms=10.0, compile_s=0.2))
        results += [result(name, shape, group="grid", ratio=r) for name, r in by_impl.items()]
    results += [result("jaxrnn manual", GRID_A, group="grid", cell="gru", ms=5.0),
                result("jaxrnn autodiff", GRID_A, group="grid", cell="gru", ms=5.0, ratio=2.0)]
    run = make_run()
    run["command"] = "python -m benchmarks --grid"
    run["results"] = results
    return run


def test_grid_table_gives_manual_over_autodiff_and_the_fastest_peer():
    md = markdown(make_grid_run())
    assert "## LSTM" not in md  # no table or sweep sections: the grid has its own
    rows = table_rows(section(md, "### lstm"))
    assert rows[0] == ["B", "X", "H", "T", "manual ms", "autodiff ms", "flax ms", "torch ms",
                       "manual / autodiff", "manual / fastest peer"]
    by_shape = {tuple(map(int, row[:4])): row[4:] for row in rows[1:]}
    assert [tuple(map(int, row[:4])) for row in rows[1:]] == [GRID_C, GRID_B, GRID_A]  # by T, then B
    assert by_shape[GRID_A] == ["10.0", "12.5", "20.0", "8.00", "0.80×", "1.25× (torch)"]
    assert by_shape[GRID_B] == ["10.0", "5.00", "40.0", "16.0", "2.00×", "2.00× (autodiff)"]
    assert by_shape[GRID_C] == ["10.0", "10.0", "—", "—", "1.00×", "1.00× (autodiff)"]
    gru = table_rows(section(md, "### gru"))
    assert gru[0][4:6] == ["manual ms", "autodiff ms"] and gru[1][-2:] == ["0.50×", "0.50× (autodiff)"]


def test_grid_summary_counts_the_shapes_where_manual_is_not_slower():
    lines = section(markdown(make_grid_run()), "### Summary")
    lstm = next(line for line in lines if line.startswith("- **lstm**"))
    # autodiff: 0.80, 2.00, 1.00 -> 2 of 3 ≤ 1 (1.00 counts as not slower); flax: 0.50, 0.25;
    # torch: 1.25, 0.625; fastest: 1.25 (torch), 2.00 (autodiff), 1.00 (autodiff).
    assert lstm == ("- **lstm**: manual ≤ autodiff on 2 of 3 shapes (worst 2.00× at B64 X1 H32 T10); "
                    "≤ flax on 2 of 2 shapes (worst 0.50× at B4 X8 H16 T30); "
                    "≤ torch on 1 of 2 shapes (worst 1.25× at B4 X8 H16 T30); "
                    "≤ the fastest peer on 1 of 3 shapes (worst 2.00× at B64 X1 H32 T10).")
    gru = next(line for line in lines if line.startswith("- **gru**"))
    assert gru.startswith("- **gru**: manual ≤ autodiff on 1 of 1 shape (worst 0.50× at B4 X8 H16 T30)")


def test_grid_heat_map_is_written_with_a_missing_entry(tmp_path):
    run = make_grid_run()
    paths = write(run, tmp_path)
    assert {path.name for path in paths} == {"results.json", "results.md", "grid.png"}  # no table, no sweep
    data = (tmp_path / "grid.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert json.loads((tmp_path / "results.json").read_text()) == run  # the JSON stays the run dict
    # gru has no entry at GRID_B and GRID_C, lstm's fastest peer at GRID_C is autodiff alone: blanks, not errors.
    only_manual = dict(run, results=[r for r in run["results"] if r["implementation"] == "jaxrnn manual"])
    assert (tmp_path / "alone" / "grid.png") in write(only_manual, tmp_path / "alone")
    assert "no peer measured beside jaxrnn manual" in (tmp_path / "alone" / "results.md").read_text()
