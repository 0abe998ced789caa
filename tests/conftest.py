"""Gradients are compared in float64; x64 is enabled here and only here. Fixtures shared by the training tests."""

import json
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """About 60k characters of real Python source from the standard library, for `jaxrnn train`."""
    from jaxrnn import training

    text, files = "", iter(training.stdlib_files())
    while len(text) < 60_000:
        text += next(files).read_text(encoding="utf-8", errors="replace")
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(text[:60_000], encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def read_metrics():
    """Reads a run folder's ``metrics.jsonl`` strictly: every line must be a whole JSON record."""

    def read(out) -> list[dict]:
        return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]

    return read


@pytest.hookimpl(optionalhook=True)  # known only when xdist is loaded (not under -p no:xdist)
def pytest_xdist_make_scheduler(config, log):
    """Under ``-n N``, xdist's default ``load`` scheduling becomes ``loadscope``: a module's tests go to one worker.

    With ``load`` a module's tests are spread over the workers, and each worker that gets one builds the
    module-scoped fixtures again: the shared training runs here (a trained model, the demos' tiny runs) would
    run once per worker. An explicit ``--dist`` other than ``load`` is kept.
    """
    if config.getvalue("dist") != "load":
        return None  # xdist's own hook picks the scheduler asked for
    from xdist.scheduler import LoadScopeScheduling

    return LoadScopeScheduling(config, log)
