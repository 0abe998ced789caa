"""Checkpoints: one ``.npz`` file of arrays plus a JSON header, written atomically."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxrnn._io import atomic_write

FORMAT = "jaxrnn.training checkpoint v1"
CHECKPOINT_NAME = "checkpoint.npz"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or made for another model or corpus."""


def save(path: str | os.PathLike, tree: Any, header: dict) -> Path:
    """Writes the leaves of ``tree`` and the JSON-able ``header`` to ``path`` atomically.

    The leaves are stored in ``jax.tree.leaves`` order as ``leaf_00000``…;
    :func:`load` rebuilds the tree from a template of the same structure, so
    nothing is pickled. Sharded arrays are gathered to the host first; with
    several processes (``jax.distributed``) every process must call this and
    process 0 writes.
    """
    leaves = [np.asarray(_gather(leaf)) for leaf in jax.tree.leaves(tree)]
    arrays = {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}
    header = {"format": FORMAT, **header, "leaves": [[list(a.shape), a.dtype.name] for a in leaves]}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    if jax.process_index() == 0:  # with many hosts, every one gathers (a collective) and the first writes
        atomic_write(path, lambda file: np.savez(file, **arrays))  # type: ignore[arg-type]  # numpy's stub: **kwds
    return Path(path)


def _gather(leaf):
    """The whole value of ``leaf`` on this host, also when its shards live on other hosts."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(leaf, tiled=True)
    return jax.device_get(leaf)


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of the checkpoint at ``path``.

    Raises:
        CheckpointError: the file is missing, is not a jaxrnn checkpoint, or is corrupt.
    """
    with _open(path) as data:
        return _header(data, path)


def load(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """``(tree, header)``: the arrays at ``path`` in the structure of ``template``.

    Raises:
        CheckpointError: as :func:`read_header`, or the stored arrays do not
            match ``template``'s count, shapes and dtypes (another model).
    """
    expected, treedef = jax.tree.flatten(template)
    with _open(path) as data:
        header = _header(data, path)
        if len(header["leaves"]) != len(expected):
            raise CheckpointError(
                f"{path} holds {len(header['leaves'])} arrays but this model and optimiser have {len(expected)}: "
                "it was made for another configuration. Pass the flags it was trained with, or a new --out."
            )
        leaves = []
        for i, want in enumerate(expected):
            try:
                leaf = data[f"leaf_{i:05d}"]
            except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
                raise CheckpointError(
                    f"{path} is corrupt (array {i}: {error}). Delete it, or resume from a backup.") from None
            want_shape, want_dtype = tuple(want.shape), np.dtype(want.dtype)
            if leaf.shape != want_shape or leaf.dtype != want_dtype:
                raise CheckpointError(
                    f"{path}: array {i} is {leaf.dtype}{list(leaf.shape)} but this model expects "
                    f"{want_dtype}{list(want_shape)}: it was made for another configuration. "
                    "Pass the flags it was trained with, or a new --out."
                )
            leaves.append(leaf)
    return jax.tree.unflatten(treedef, leaves), header


class _open:
    """``np.load`` of an npz, with every failure turned into a :class:`CheckpointError`."""

    def __init__(self, path):
        self.path = Path(path)

    def __enter__(self):
        if not self.path.is_file():
            raise CheckpointError(f"no checkpoint at {self.path}. Train first (without --resume), or check --out.")
        try:
            self.data = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
            raise CheckpointError(
                f"{self.path} is not a readable checkpoint ({type(error).__name__}: {error}). "
                "It may be truncated or from another program; delete it, or resume from a backup."
            ) from None
        return self.data

    def __exit__(self, *exc):
        self.data.close()


def _header(data, path) -> dict:
    try:
        header = json.loads(bytes(data["header"]).decode())
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"{path} has no readable jaxrnn header ({type(error).__name__}). "
            "It is corrupt or not a jaxrnn checkpoint; delete it, or resume from a backup."
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else None
        raise CheckpointError(f"{path} has format {found!r}, expected {FORMAT!r}; it was written by another program.")
    return header
