"""PNG figures with matplotlib's object API: no pyplot, so no global state or display is touched."""

from __future__ import annotations

import os
from pathlib import Path

from jaxrnn._io import atomic_write, extra_module


def figure(rows: int = 1, cols: int = 1, *, width: float = 6.4, height: float = 4.0):
    """A new ``(figure, axes)``; ``axes`` is a flat list of ``rows * cols`` axes.

    Raises:
        ModuleNotFoundError: matplotlib is missing, with the install command.
    """
    Figure = extra_module("matplotlib.figure", "figures").Figure
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    return fig, axes


def save(fig, path: str | os.PathLike) -> Path:
    """Writes ``fig`` as a PNG at ``path``, atomically (a viewer never sees half a file)."""
    return atomic_write(path, lambda file: fig.savefig(file, format="png", dpi=110))


def plain_log_ticks(axis) -> None:
    """Labels a log-scaled axis with plain numbers (1.5, 2, 3) instead of powers of ten."""
    formatter = extra_module("matplotlib.ticker", "figures").FormatStrFormatter("%.3g")
    axis.set_major_formatter(formatter)
    axis.set_minor_formatter(formatter)
