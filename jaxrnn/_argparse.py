"""argparse types shared by the ``jaxrnn`` command and the benchmark suite's parser."""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys

from jaxrnn import _registry
from jaxrnn._protocol import Cell


def name_list(allowed, what: str = "cell"):
    """An argparse type: a comma-separated list of names from ``allowed``, each once."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {what}(s) {unknown}; choose from {', '.join(allowed)}")
        if len(set(names)) < len(names):
            raise argparse.ArgumentTypeError(f"a {what} is listed twice in {text!r}; list each once")
        return names

    return parse


def number(kind, low: float, inclusive: bool = False):
    """An argparse type: ``kind`` (int or float) above ``low`` (at or above it if ``inclusive``)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            expected = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not (math.isfinite(value) and (value >= low if inclusive else value > low)):
            raise argparse.ArgumentTypeError(f"expected a number {'≥' if inclusive else '>'} {low:g}, got {text}")
        return value

    return parse


positive = number(int, 0)


def cell_list(*, manual: bool = False):
    """An argparse type: comma-separated registered cells, or ``MODULE:NAME`` of a cell to import.

    ``MODULE:NAME`` imports ``MODULE`` (from the current folder too, as
    ``python -m`` does), takes its ``NAME`` and registers it, so a cell of
    your own runs wherever a registered one does. ``manual=True`` admits only
    cells with a hand-written BPTT.
    """

    def parse(text: str) -> list[str]:
        names = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            if ":" in item:
                module, _, attribute = item.partition(":")
                if os.getcwd() not in sys.path:
                    sys.path.insert(0, os.getcwd())
                try:
                    cell = getattr(importlib.import_module(module), attribute)
                    if not isinstance(cell, Cell):
                        raise TypeError(f"it is a {type(cell).__name__}, not a jaxrnn.Cell")
                    item = _registry.register(cell).name
                except Exception as error:  # argparse would hide a TypeError/ValueError's message
                    raise argparse.ArgumentTypeError(
                        f"cannot load the cell {item!r}: {type(error).__name__}: {error}") from None
            if manual and item in _registry.cells() and item not in _registry.cells(manual=True):
                raise argparse.ArgumentTypeError(f"the cell {item!r} has no hand-written BPTT (cell.bptt is None)")
            names.append(item)
        return name_list(_registry.cells(manual=manual))(",".join(names))

    parse.__name__ = "cell list"
    return parse
