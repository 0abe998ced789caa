"""The one registry of cells: every place that offers a choice of cell reads it here.

The CLI's ``--cell``/``--cells``, training, the memory task, the benchmark
suite and the interop messages all list :func:`cells`, so a cell registered
once appears wherever it applies.
"""

from __future__ import annotations

import inspect
import warnings

from jaxrnn._protocol import Cell

_CELLS: dict[str, Cell] = {}
_BUILT_IN: set[str] = set()  # names the library's own cells hold; never replaced


def register_built_in(cell: Cell) -> Cell:
    """:func:`register` for the library's own cells, whose names no other cell may take."""
    _BUILT_IN.add(register(cell).name)
    return cell


def register(cell: Cell) -> Cell:
    """Adds ``cell`` under ``cell.name`` and returns it.

    Registering a cell of your own again under its name (a re-run notebook
    cell, a reloaded module) replaces the old one, with a warning; the
    built-in cells' names are taken.

    Raises:
        TypeError: ``cell`` is not a :class:`jaxrnn.Cell`.
        ValueError: the name is a built-in cell's.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"jaxrnn.register: expected a jaxrnn.Cell; got {type(cell).__name__}.")
    known = _CELLS.get(cell.name)
    if known is not None and known is not cell:
        if cell.name in _BUILT_IN:
            raise ValueError(
                f"jaxrnn.register: {cell.name!r} is the name of the built-in {known!r}. "
                "Give yours another name, e.g. dataclasses.replace(cell, name='my_' + cell.name)."
            )
        warnings.warn(
            f"jaxrnn.register: the cell registered as {cell.name!r} (recurrence from "
            f"{known.recurrence.__module__}) is replaced by a new one (from {cell.recurrence.__module__}).",
            UserWarning, stacklevel=2,
        )
    _CELLS[cell.name] = cell
    return cell


def cells(*, manual: bool = False, taking: str | None = None) -> dict[str, Cell]:
    """The registered cells by name, in registration order.

    Args:
        manual: only the cells with a hand-written BPTT.
        taking: only the cells whose ``init`` takes this keyword option,
            e.g. ``"num_heads"`` for those with a block-diagonal recurrence.
    """
    return {
        name: cell for name, cell in _CELLS.items()
        if (not manual or cell.bptt is not None)
        and (taking is None or taking in inspect.signature(cell.init_params).parameters)
    }


def get(name: str, where: str = "jaxrnn.get_cell") -> Cell:
    """The registered cell called ``name``; ``ValueError`` listing the names otherwise."""
    try:
        return _CELLS[name]
    except KeyError:
        raise ValueError(
            f"{where}: unknown cell {name!r}; the registered cells, jaxrnn.cells(), are {list(_CELLS)}. "
            "Pass one of these names; register a cell of your own with jaxrnn.register(cell) to use it by name."
        ) from None
