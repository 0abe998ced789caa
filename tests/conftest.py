"""Gradients are compared in float64; x64 is enabled here and only here. Fixtures shared by the training tests.

Two tiers: a plain ``pytest`` runs the fast one (``-m 'not slow'`` in pyproject.toml's addopts); ``-m slow`` runs
the sweeps, every docs page and example, the multi-process runs and packaging; ``-m ""`` runs both.

Also set up here, for the whole run:

* The test processes (xdist's workers) and the interpreters that tests start (docs pages, examples, the CLI,
  training launches) share JAX's persistent compilation cache, so a program that several of them compile is
  compiled once. The cache folder is ``JAXRNN_TEST_CACHE_DIR`` when set (``.ci/run`` shares one between the two
  tiers), else a temporary folder for this run.
* Hypothesis profiles: ``dev`` (few examples, the default) and ``ci`` (more; chosen when ``CI`` is set, as
  ``.ci/run`` runs), or the one that ``HYPOTHESIS_PROFILE`` names.
* ``@pytest.mark.sweep`` on a parametrised test keeps its first case in the fast tier and puts the others in
  the slow one; ``@pytest.mark.sweep(fast=("lstm-reverse", ...))`` keeps instead the cases with those ids.
* Under ``-n N`` (or an explicit ``--dist load``), scheduling is xdist's ``loadgroup``: tests spread one by one
  over the workers, except that those marked ``xdist_group`` (the ones sharing an expensive module fixture) go
  to one worker together.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)

settings.register_profile("dev", max_examples=3, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=8, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

_CACHE = "JAXRNN_TEST_CACHE_DIR"


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the marks added here
def pytest_collection_modifyitems(items):
    seen: set[str] = set()
    named: dict[str, set[str]] = {}  # a sweep's fast= ids not yet found among its cases
    for item in items:
        sweep = item.get_closest_marker("sweep")
        if sweep is None:
            continue
        if not hasattr(item, "callspec"):
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.sweep needs a parametrised test")
        function = item.nodeid.split("[")[0]
        fast = sweep.kwargs.get("fast")
        if fast is None:
            kept = function not in seen
        else:
            fast = (fast,) if isinstance(fast, str) else tuple(fast)
            named.setdefault(function, set(fast)).discard(item.callspec.id)
            kept = item.callspec.id in fast
        seen.add(function)
        if not kept:
            item.add_marker(pytest.mark.slow)
    missing = {function: sorted(ids) for function, ids in named.items() if ids}
    if missing:
        raise pytest.UsageError(f"@pytest.mark.sweep(fast=...) names cases that do not exist: {missing}")


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist): one folder for every worker
        if not os.environ.get(_CACHE):
            folder = tempfile.mkdtemp(prefix="jaxrnn-test-jax-cache-")
            os.environ[_CACHE] = folder
            config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
        if getattr(config.option, "dist", None) == "load":  # -n N's default: groups are kept together, the rest spread
            config.option.dist = "loadgroup"
    # Read by the interpreters that tests start (and by xdist's workers, started after the controller sets them);
    # set here for this process too, whose JAX was imported before, so that every way of running is the same.
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ[_CACHE]
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


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
