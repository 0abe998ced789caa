"""The package as a user gets it: an sdist, a wheel built from that sdist, and the wheel installed in a new venv.

The build runs without isolation (setuptools from this environment, nothing
downloaded). The new venv is made without the base interpreter's site-packages:
a ``.pth`` file puts this environment's site-packages (jax, numpy, pip) after the
venv's own, so the installed wheel comes first and nothing is borrowed from the
system Python, whatever it has installed. The import probe runs from a neutral
folder with optax hidden, as if the ``[train]`` extra were not installed, and
reports its ``sys.path`` so that the tests can check where imports came from. (The ``.pth`` lists folders, so
``.pth`` files inside this environment's site-packages, such as an editable jaxrnn's, do not act there.)
"""

import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import jaxrnn

# Slow: builds an sdist and a wheel and installs it in a new venv; one worker builds them once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("packaging")]

REPO = Path(jaxrnn.__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "CHANGELOG.md", "jaxrnn", "tests", "examples")
TINY_CHECK = ["--batch", "2", "--input", "3", "--hidden", "4", "--steps", "5", "--rounds", "2", "--cells", "simple_rnn"]

PROBE = textwrap.dedent(
    f"""
    import contextlib, io, json, sys
    import importlib.metadata
    from pathlib import Path

    sys.modules["optax"] = None  # an import of optax now fails, as without the [train] extra
    import jaxrnn
    from jaxrnn import _cli

    out = {{"file": jaxrnn.__file__, "version": jaxrnn.__version__,
           "metadata_version": importlib.metadata.version("jaxrnn"),
           "py_typed": (Path(jaxrnn.__file__).parent / "py.typed").is_file(),
           "sys_path": sys.path, "prefix": sys.prefix, "base_prefix": sys.base_prefix}}
    try:
        import jaxrnn.training
    except ModuleNotFoundError as error:
        out["training_error"] = str(error)
    for name, argv in (("help", ["--help"]), ("train", ["train", "--steps", "1"]), ("check", {TINY_CHECK!r})):
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = _cli.main(argv)
            except SystemExit as exit:
                code = exit.code
        out[name] = {{"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}}
    print(json.dumps(out))
    """
)


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """An sdist built from a copy of this checkout, and a wheel built from the sdist."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    out = root / "dist"
    _run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), str(source)])
    (sdist,) = out.glob("jaxrnn-*.tar.gz")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
          "--wheel-dir", str(out), str(sdist)], cwd=root)
    (wheel,) = out.glob("jaxrnn-*.whl")
    return {"root": root, "sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def installed(dist) -> dict:
    """The probe's findings, run by a new venv's Python with the wheel installed, from a neutral folder."""
    venv = dist["root"] / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    own_site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    # This environment's packages (jax, numpy, pip) come after the venv's own, never the base interpreter's.
    (Path(own_site) / "test-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # pip, from this environment, installs into the venv, leaving any other jaxrnn alone.
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", "--quiet",
          str(dist["wheel"])])
    neutral = dist["root"] / "elsewhere"
    neutral.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME") and
           not k.startswith(("JAX_", "XLA_"))}
    done = _run([str(python), "-c", PROBE], cwd=neutral, env=env)
    return {"venv": venv.resolve(), **json.loads(done.stdout.strip().splitlines()[-1])}


def _metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(name).decode())


def test_wheel_ships_py_typed_and_the_license(dist):
    with zipfile.ZipFile(dist["wheel"]) as archive:
        names = archive.namelist()
        (license_name,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        license_text = archive.read(license_name).decode()
    assert "jaxrnn/py.typed" in names
    assert "Apache License" in license_text and "Version 2.0" in license_text
    assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/"))]


def test_wheel_metadata(dist):
    metadata = _metadata(dist["wheel"])
    assert metadata["Version"] == jaxrnn.__version__
    assert metadata["License-Expression"] == "Apache-2.0"
    core = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    assert sorted(r.split(">")[0] for r in core) == ["jax", "jaxlib", "numpy"]  # optax is in [train]
    assert {"train", "flax", "equinox", "torch", "bench", "examples", "docs", "lint", "test"} <= set(
        metadata.get_all("Provides-Extra"))
    train = [r for r in metadata.get_all("Requires-Dist") if r.endswith('extra == "train"')]
    assert any(r.startswith("optax") for r in train)


def test_sdist_has_what_the_tests_need(dist):
    with tarfile.open(dist["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "jaxrnn/py.typed", "tests/conftest.py",
            "examples/custom_cells.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_installed_wheel_is_what_imports(installed):
    assert Path(installed["file"]).resolve().is_relative_to(installed["venv"]), installed["file"]
    assert installed["py_typed"]


def test_nothing_is_borrowed_from_the_base_interpreter(installed):
    """Only this environment's packages are seen: a base interpreter's that this environment lacks are not."""
    assert installed["prefix"] != installed["base_prefix"], "the probe did not run in a venv"
    # The base interpreter's own word for its package folders (Debian's, pyenv's and others' differ).
    base = json.loads(_run([sys._base_executable, "-c",  # type: ignore[attr-defined]
                            "import json, site; print(json.dumps([*site.getsitepackages(), site.getusersitepackages()]))"]
                           ).stdout)
    ours = set(site.getsitepackages())
    borrowed = [entry for entry in installed["sys_path"] if entry in base and entry not in ours]
    assert not borrowed, f"the venv sees the base interpreter's site-packages: {borrowed}"


def test_version_is_the_metadata_version(installed):
    assert installed["version"] == installed["metadata_version"] == jaxrnn.__version__


def test_without_optax_training_names_the_extra(installed):
    assert 'pip install "jaxrnn[train]"' in installed["training_error"]


def test_without_optax_the_command_still_works(installed):
    help_run, train_run, check_run = installed["help"], installed["train"], installed["check"]
    assert help_run["code"] == 0
    assert "train" in help_run["stdout"] and "jaxrnn[train]" in help_run["stdout"]
    assert train_run["code"] == 2
    assert 'pip install "jaxrnn[train]"' in train_run["stderr"]
    assert check_run["code"] == 0, check_run["stderr"]
    row = next(line for line in check_run["stdout"].splitlines() if line.startswith("simple_rnn"))
    assert row.split()[1] == "yes", row
