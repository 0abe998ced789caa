"""argparse types shared by the ``jaxrnn`` command and the benchmark suite's parser."""

from __future__ import annotations

import argparse
import math


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
