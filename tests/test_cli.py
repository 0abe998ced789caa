"""The `jaxrnn` command (also `python -m jaxrnn`): the gradient check is its default."""

import subprocess
import sys

import pytest

import jaxrnn
from jaxrnn import _bptt, _cli

TINY = ["--batch", "2", "--input", "3", "--hidden", "4", "--steps", "5", "--rounds", "2"]


@pytest.mark.slow
def test_check_fails_when_the_manual_gradient_is_wrong(monkeypatch, capsys):
    real_backward = _bptt.backward

    def off_by_a_bit(*args):
        d_params, d_carry, d_xs, d_init = real_backward(*args)
        return d_params, d_carry, d_xs * 1.001, d_init

    monkeypatch.setattr(_bptt, "backward", off_by_a_bit)
    assert _cli.main(["check", *TINY, "--cells", "simple_rnn"]) == 1  # the quickest cell to compile
    assert "NO" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [(["--hidden", "0"], "expected a number > 0"),
                                            (["--cells", "lstm,tcn"], "unknown cell")])
def test_bad_flags_exit_with_a_message(flags, message, capsys):
    with pytest.raises(SystemExit) as info:
        _cli.main(flags)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_check_is_the_default_command_and_reports_agreement(capsys):
    # In-process: a subprocess would pay JAX's start-up and compile again; every cell's agreement is checked
    # in-process in test_unroll.py, so one cell (the quickest to compile) shows the report.
    assert _cli.main([*TINY, "--cells", "simple_rnn"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("simple_rnn"))
    assert row.split()[1] == "yes", row
    steps = int(TINY[TINY.index("--steps") + 1])
    assert row.split()[-1] == jaxrnn.backward_strategy(jaxrnn.simple_rnn, steps), row  # the strategy it ran


def test_python_dash_m_jaxrnn_is_the_command():
    # `--help` reaches the parser through __main__ without compiling anything.
    result = subprocess.run([sys.executable, "-m", "jaxrnn", "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: jaxrnn") and "(the default)" in result.stdout
