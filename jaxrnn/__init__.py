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
from jaxrnn._unroll import GRAD_MODES, unroll

__version__ = "0.1.0"

__all__ = [
    "Cell",
    "GRAD_MODES",
    "GRUParams",
    "LSTMCarry",
    "LSTMParams",
    "SimpleRNNParams",
    "gru",
    "interop",
    "lstm",
    "notebook",
    "simple_rnn",
    "unroll",
]
