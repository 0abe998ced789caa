"""``import jaxrnn`` has no side effects on JAX's global state, the environment,
or the set of loaded heavy libraries.

Each check runs in a fresh interpreter: this test process has x64 enabled by
conftest.py and may have imported anything.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jaxrnn

pytestmark = pytest.mark.xdist_group("import")  # the module's probe, run once

REPO = Path(jaxrnn.__file__).resolve().parent.parent

PROBE = textwrap.dedent(
    """
    import json, os, sys
    import jax

    def config():
        return {name: repr(value) for name, value in jax.config.values.items()}

    def env():
        return {k: v for k, v in os.environ.items() if k.startswith(("JAX_", "XLA_"))}

    config_before, env_before = config(), env()
    torch_before = "torch" in sys.modules
    import jaxrnn
    config_after, env_after = config(), env()
    import jax.numpy as jnp
    print(json.dumps({
        "file": jaxrnn.__file__,
        "x64": bool(jax.config.jax_enable_x64),
        "default_float": str(jnp.zeros(1).dtype),
        "config_changed": sorted(
            k for k in config_before.keys() & config_after.keys() if config_before[k] != config_after[k]
        ),
        "env_before": env_before,
        "env_after": env_after,
        "torch_before": torch_before,
        "torch_after": "torch" in sys.modules,
    }))
    """
)


def run_probe(extra_path=()):
    """Runs PROBE in a clean interpreter: no JAX_*/XLA_* variables inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), str(REPO), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probe():
    return run_probe()


def test_probe_imports_this_checkout(probe):
    assert Path(probe["file"]).resolve() == Path(jaxrnn.__file__).resolve()


def test_import_leaves_x64_off(probe):
    assert probe["x64"] is False
    assert probe["default_float"] == "float32"


def test_import_leaves_jax_config_alone(probe):
    """No config option (platforms, default device, matmul precision, ...) changes on import."""
    assert probe["config_changed"] == []


def test_import_sets_no_jax_or_xla_env_vars(probe):
    assert probe["env_before"] == {}
    assert probe["env_after"] == {}, "import jaxrnn set JAX_*/XLA_* environment variables"


def test_import_does_not_import_torch(probe):
    assert probe["torch_before"] is False
    assert probe["torch_after"] is False


def test_import_does_not_import_torch_even_if_importable(tmp_path):
    """With a stub ``torch`` first on the path, any import of it would succeed and show."""
    stub = tmp_path / "torch"
    stub.mkdir()
    (stub / "__init__.py").write_text("")
    result = run_probe(extra_path=[tmp_path])
    assert result["torch_before"] is False
    assert result["torch_after"] is False


def test_stub_torch_would_be_detected(tmp_path):
    """Guards the test above: the stub is what `import torch` finds in the probe's interpreter."""
    stub = tmp_path / "torch"
    stub.mkdir()
    (stub / "__init__.py").write_text("MARK = 'stub'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", "import sys, torch; print(torch.MARK, 'torch' in sys.modules)"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["stub", "True"]
