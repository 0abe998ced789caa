"""The one registry of cells: every place that offers a choice of cell reads it here.

The CLI's ``--cell``/``--cells``, training, the memory task, the benchmark
suite and the interop messages all list :func:`cells`, so a cell registered
once appears wherever it applies.
"""

from __future__ import annotations

from jaxrnn._protocol import Cell

_CELLS: dict[str, Cell] = {}


def register(cell):
    """Adds ``cell`` under ``cell.name`` and returns it; a second cell of the same name is refused.

    Raises:
        TypeError: ``cell`` is not a :class:`jaxrnn.Cell`.
        ValueError: another cell already has that name.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"jaxrnn.register: expected a jaxrnn.Cell; got {type(cell).__name__}.")
    known = _CELLS.get(cell.name)
    if known is not None and known is not cell:
        raise ValueError(
            f"jaxrnn.register: a cell named {cell.name!r} is already registered ({known!r}). "
            "Give yours another name, e.g. dataclasses.replace(cell, name='my_' + cell.name)."
        )
    _CELLS[cell.name] = cell
    return cell


def cells(*, manual: bool = False) -> dict[str, Cell]:
    """The registered cells by name, in registration order; ``manual=True``: only those with a hand-written BPTT."""
    return {name: cell for name, cell in _CELLS.items() if not manual or cell.bptt is not None}


def get(name: str, where: str = "jaxrnn.get_cell"):
    """The registered cell called ``name``; ``ValueError`` listing the names otherwise."""
    try:
        return _CELLS[name]
    except KeyError:
        raise ValueError(f"{where}: unknown cell {name!r}; registered cells are {list(_CELLS)}.") from None
