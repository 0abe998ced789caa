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
