"""Output: files that are either wholly written or not there (temp file, fsync, rename), and progress bars."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import IO


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Writes ``path`` through ``write(file)`` so that a crash never leaves a partial file.

    The bytes go to a temporary file in the same folder, which is flushed to
    disk and then renamed over ``path`` (``os.replace`` is atomic on POSIX
    and Windows). A reader sees the old file or the new one, never a mix.

    Args:
        path: the file to write; its folder must exist.
        write: called once with the open binary temporary file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it an ordinary file's mode
        os.replace(temp, path)
    except BaseException:  # KeyboardInterrupt included: never leave the temp file behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def extra_module(module: str, purpose: str, extra: str = "train") -> ModuleType:
    """Imports ``module``, which comes with the optional ``[extra]``, or says how to install it.

    Raises:
        ModuleNotFoundError: ``module`` is missing; the message names ``purpose`` and the install command.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"jaxrnn's {purpose} need {module.split('.')[0]}, which is not installed. "
            f'Install it with: pip install "jaxrnn[{extra}]".'
        ) from error


def progress_bar(total: int | None, *, initial: int = 0, enabled: bool = True, desc: str | None = None):
    """A tqdm bar over ``total`` steps (None: not known yet), starting at ``initial``.

    It is hidden (``bar.disable`` is True) when not ``enabled``, and when
    standard error is neither a terminal nor a notebook: redirected to a
    file, a bar would write a carriage-return update per refresh into it.
    """
    tqdm = extra_module("tqdm.auto", "progress bars").tqdm
    shown = enabled and (sys.stderr.isatty() or "ipykernel" in sys.modules)
    return tqdm(total=total, initial=initial, disable=not shown, desc=desc, unit="step", dynamic_ncols=True)
