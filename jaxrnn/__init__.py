"""jaxrnn: functional recurrent networks in JAX, with hand-written BPTT.

Cells are values bundling pure functions (``init``, ``initial_carry``,
``step``); :func:`unroll` scans one over a sequence and is differentiated
either by the cell's hand-written backward pass or by JAX's autodiff.
"""

from jaxrnn._cells import (
    GRUParams,
    LSTMCarry,
    LSTMParams,
    ProjectedLSTMParams,
    SimpleRNNParams,
    gru,
    lstm,
    projected_lstm,
    simple_rnn,
)
from jaxrnn._checks import CellMismatchError
from jaxrnn._gated import GatedCell, GatedParams
from jaxrnn._heads import block_diagonal
from jaxrnn._options import GRAD_MODES, GradMode
from jaxrnn._parallel import MinGRUParams, MinLSTMParams, mingru, minlstm
from jaxrnn._precision import matmul
from jaxrnn._protocol import BPTT, Cell, cotangents
from jaxrnn._registry import cells, get as get_cell, register
from jaxrnn._slstm import SLSTMCarry, SLSTMParams, slstm
from jaxrnn._stack import Bidirectional, Stack, bidirectional, stack
from jaxrnn._unroll import backward_strategy, unroll

from jaxrnn import interop, notebook, testing  # isort: skip  (they build on the names above)

__version__ = "0.2.0.dev0"

__all__ = [
    "BPTT",
    "Bidirectional",
    "Cell",
    "CellMismatchError",
    "GRAD_MODES",
    "GatedCell",
    "GatedParams",
    "GRUParams",
    "GradMode",
    "LSTMCarry",
    "LSTMParams",
    "MinGRUParams",
    "MinLSTMParams",
    "ProjectedLSTMParams",
    "SLSTMCarry",
    "SLSTMParams",
    "SimpleRNNParams",
    "Stack",
    "backward_strategy",
    "bidirectional",
    "block_diagonal",
    "cells",
    "cotangents",
    "get_cell",
    "gru",
    "interop",
    "lstm",
    "matmul",
    "mingru",
    "minlstm",
    "notebook",
    "projected_lstm",
    "register",
    "simple_rnn",
    "slstm",
    "stack",
    "testing",
    "unroll",
]
