"""Every ```python block in README.md and the docs pages runs.

Each page is one test: its python blocks run in order, in one namespace (a
page's blocks build on each other), in a fresh interpreter with JAX's default
float32 and the checkout first on ``sys.path``. A traceback points at the
page's own line numbers.

A fence's info string says what a block is: ``python`` is executed; anything
else (``text``, ``bash``, a MyST ``{code-block}``) is shown only. A block whose
first lines say ``# requires: PACKAGE[, PACKAGE...]`` (an optional third-party
package such as ``torch`` or ``flax``, never a jaxrnn module, so that a broken
jaxrnn import fails rather than skips) is skipped when one of them cannot be
imported, and the page's test then reports the skip with the
reason after running its other blocks; once importable, the block runs.

README.md's test is in the fast tier; every docs page's is marked ``slow``
(``python -m pytest -m slow`` runs them, ``-m ""`` runs everything).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)]
TIMEOUT_S = 300

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_REQUIRES = re.compile(r"^#\s*requires:\s*(?P<names>.+?)\s*$")


class Block(NamedTuple):
    line: int  # 1-based line number of the block's first code line in its page
    code: str
    requires: tuple[str, ...]


def python_blocks(text: str) -> list[Block]:
    """The executed blocks of a Markdown text: fenced code whose info string's first word is ``python``."""
    lines = text.splitlines()
    blocks, k = [], 0
    while k < len(lines):
        opening = _FENCE.match(lines[k])
        if not opening:
            k += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        info = opening["info"].strip().split()
        body, end = [], k + 1
        while end < len(lines):
            closing = _FENCE.match(lines[end])
            if closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence) \
                    and not closing["info"].strip():
                break
            body.append(lines[end][indent:] if lines[end][:indent].strip() == "" else lines[end])
            end += 1
        if info and info[0] == "python":
            code = textwrap.dedent("\n".join(body))
            requires: list[str] = []
            for line in code.splitlines():
                marker = _REQUIRES.match(line.strip())
                if not marker:
                    break
                requires += [name.strip() for name in marker["names"].split(",") if name.strip()]
            blocks.append(Block(k + 2, code, tuple(requires)))
        k = end + 1
    return blocks


# Runs in the child: checks each block's requirements, then executes it with the page's line numbers.
_DRIVER = r"""
import importlib, json, sys

def missing(name):
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            value = importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name is not None and module.startswith(error.name) or error.name == module:
                continue  # the module itself is absent: try its parent, then its attribute
            return f"{module} cannot be imported ({error})"
        except ImportError as error:  # an optional module whose framework is not installed
            return f"{module} cannot be imported ({error})"
        for attribute in parts[cut:]:
            if not hasattr(value, attribute):
                return f"{name} does not exist yet"
            value = getattr(value, attribute)
        return None
    return f"{name} cannot be imported"

page, blocks = sys.argv[1], json.load(sys.stdin)
namespace = {"__name__": "__main__"}
skipped = []
for block in blocks:
    reasons = [reason for reason in map(missing, block["requires"]) if reason]
    if reasons:
        skipped.append(f"line {block['line']}: " + "; ".join(reasons))
        continue
    code = "\n" * (block["line"] - 1) + block["code"]
    exec(compile(code, page, "exec"), namespace)
print("DOCS-SKIPPED " + json.dumps(skipped))
"""


def run_page(path: Path, blocks: list[Block]) -> list[str]:
    """Runs ``blocks`` in a fresh interpreter; returns the skipped blocks' reasons. Fails on any error."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "PYTHONPATH")}
    env.update(PYTHONPATH=str(ROOT), MPLBACKEND="Agg", PYTHONWARNINGS="ignore::DeprecationWarning")
    payload = json.dumps([block._asdict() for block in blocks])
    process = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(path)], check=False, input=payload, capture_output=True, text=True,
        cwd=ROOT, env=env, timeout=TIMEOUT_S,
    )
    if process.returncode != 0:
        pytest.fail(f"{path.relative_to(ROOT)}: a python block failed\n{process.stderr[-6000:]}", pytrace=False)
    marker = [line for line in process.stdout.splitlines() if line.startswith("DOCS-SKIPPED ")]
    assert marker, f"the driver did not finish:\n{process.stdout[-2000:]}"
    return json.loads(marker[-1][len("DOCS-SKIPPED "):])


PAGES_WITH_CODE = [page for page in PAGES if python_blocks(page.read_text(encoding="utf-8"))]
# The fast tier runs the README (kept cheap: small shapes); every docs page runs in the slow tier (-m slow).
FAST_PAGES = {ROOT / "README.md"}


def _page_param(page: Path):
    marks = () if page in FAST_PAGES else (pytest.mark.slow,)
    return pytest.param(page, marks=marks, id=str(page.relative_to(ROOT)))


@pytest.mark.parametrize("page", [_page_param(page) for page in PAGES_WITH_CODE])
def test_page_runs(page):
    skipped = run_page(page, python_blocks(page.read_text(encoding="utf-8")))
    if skipped:
        pytest.skip(f"{page.relative_to(ROOT)}: the other blocks ran; skipped " + " | ".join(skipped))


def test_pages_are_collected():
    names = {str(page.relative_to(ROOT)) for page in PAGES_WITH_CODE}
    assert {"README.md", "docs/getting_started.md", "docs/unroll.md", "docs/interop.md"} <= names, names


def test_fences():
    text = "\n".join([
        "```python",
        "a = 1",
        "```",
        "  ```python",          # indented, as inside a list item
        "  b = a + 1",
        "  ```",
        "```text",
        "not code",
        "```",
        "```{code-block} python",
        "not run either",
        "```",
        "````python",           # a longer fence holding a shorter one
        "# requires: torch, flax",
        "s = '''",
        "```",
        "'''",
        "````",
        "```bash",
        "pip install .",
        "```",
    ])
    blocks = python_blocks(text)
    assert [b.code for b in blocks] == ["a = 1", "b = a + 1", "# requires: torch, flax\ns = '''\n```\n'''"]
    assert [b.line for b in blocks] == [2, 5, 14]
    assert [b.requires for b in blocks] == [(), (), ("torch", "flax")]
