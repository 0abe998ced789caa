"""What the torch and Flax conversions of :mod:`jaxrnn.interop` share: the cell check, the cell of each gate count."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxrnn import _registry
from jaxrnn._gated import GatedCell
from jaxrnn._protocol import Cell

# The cell of each gate count, and its torch layer type, for messages.
_CELL_OF_GATES = {1: ("jaxrnn.simple_rnn", "RNN"), 3: ("jaxrnn.gru", "GRU"), 4: ("jaxrnn.lstm", "LSTM")}


def _check_cell(cell: Any, counterparts: Mapping, framework: str, namespace: str, where: str,
                any_gated: bool = False) -> None:
    """``cell`` must be a :class:`jaxrnn.Cell` named in ``counterparts`` (the cells ``framework`` has).

    With ``any_gated``, every :class:`jaxrnn.GatedCell` qualifies too: its
    weights are G blocks of H in the framework's own layout.
    """
    convertible = ", ".join("jaxrnn." + name for name in _registry.cells() if name in counterparts)
    if not isinstance(cell, Cell):
        raise TypeError(
            f"{where}: cell must be a jaxrnn.Cell with a {framework} counterpart ({convertible}); "
            f"got {type(cell).__name__}. Pass the cell first, e.g. {where.rsplit('.', 1)[1]}(jaxrnn.lstm, ...)."
        )
    if cell.name not in counterparts and not (any_gated and isinstance(cell, GatedCell)):
        raise ValueError(
            f"{where}: {cell!r} has no {namespace} counterpart, so there are no {framework} weights to convert; "
            f"the cells that have one are {convertible}"
            + (", and every jaxrnn.GatedCell, whose weights are in torch's layout." if any_gated else ".")
        )
