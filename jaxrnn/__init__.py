"""jaxrnn: functional recurrent networks in JAX, with hand-written BPTT.

Cells are values bundling pure functions (``init``, ``initial_carry``,
``step``); :func:`unroll` scans one over a sequence and is differentiated
either by the cell's hand-written backward pass or by JAX's autodiff.
"""

from jaxrnn import interop, notebook
from jaxrnn._cells import (
    Cell,
    GRUParams,
    LSTMCarry,
    LSTMParams,
    SimpleRNNParams,
    gru,
    lstm,
    simple_rnn,
)
from jaxrnn._checks import CellMismatchError
from jaxrnn._parallel import MinGRUParams, MinLSTMParams, mingru, minlstm
from jaxrnn._stack import Bidirectional, Stack, bidirectional, stack, stacked
from jaxrnn._unroll import GRAD_MODES, unroll

__version__ = "0.1.0"

__all__ = [
    "Bidirectional",
    "Cell",
    "CellMismatchError",
    "GRAD_MODES",
    "GRUParams",
    "LSTMCarry",
    "LSTMParams",
    "MinGRUParams",
    "MinLSTMParams",
    "SimpleRNNParams",
    "Stack",
    "bidirectional",
    "gru",
    "interop",
    "lstm",
    "mingru",
    "minlstm",
    "notebook",
    "simple_rnn",
    "stack",
    "stacked",
    "unroll",
]
