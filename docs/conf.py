"""Sphinx configuration: the jaxrnn documentation, built from Markdown pages (MyST) and the docstrings.

Build it from the repository root with ``sphinx-build -W --keep-going -b html docs docs/_build/html``
(``pip install ".[docs]"``). Nothing here reaches the network.
"""

from __future__ import annotations

import importlib
import os
import sys

# The checkout's jaxrnn, not an installed copy, so the API pages document the code next to them.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

project = "jaxrnn"
author = "the jaxrnn authors"
copyright = "the jaxrnn authors"

import jaxrnn  # noqa: E402  (after the sys.path line above)

release = jaxrnn.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
# Only pages and the figures they show live here (run records are in benchmarks/results/); should a data
# file land beside the pages, it is not a page.
exclude_patterns = ["_build", "**/*.json", "**/*.jsonl", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# "Attributes:" of a NamedTuple as a field list: autodoc already documents each field as a member.
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}

# No intersphinx: the build runs without network access.
nitpicky = False

html_theme = "furo"
html_title = f"jaxrnn {release}"

# Framework modules (Flax NNX, Linen, Equinox) need their optional framework installed. Their API pages are
# left out of the build, with a note, when the module cannot be imported, so the rest of the site still builds.
_FRAMEWORK_PAGES = {"api/nnx": "jaxrnn.nnx", "api/linen": "jaxrnn.linen", "api/eqx": "jaxrnn.eqx"}
for _page, _module in _FRAMEWORK_PAGES.items():
    try:
        importlib.import_module(_module)
    except ImportError as error:
        print(f"docs/conf.py: leaving out {_page}.md: {_module} cannot be imported ({error})")
        exclude_patterns.append(_page + ".md")
