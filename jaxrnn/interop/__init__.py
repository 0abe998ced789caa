"""Weights to and from PyTorch's ``torch.nn.RNN``, ``LSTM`` and ``GRU``, and Flax's recurrent cells.

Conversions are exact both ways. Torch: :func:`from_torch` and
:func:`to_torch` convert one layer and direction of a module's state dict,
whose arrays are our params with the weights transposed (we compute
``x @ W``, torch ``x @ Wᵀ``; the gate order is the same);
:func:`stack_from_torch` and :func:`stack_to_torch` convert a whole
multi-layer, optionally bidirectional module for a :func:`jaxrnn.stack`
network. Flax: :func:`from_flax` and :func:`to_flax` convert the parameters
of one ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell`` or ``SimpleCell``,
Linen or NNX; where Flax has one bias for a gate and both sides are summed
before it, :func:`to_flax` writes ``b_ih + b_hh`` there.

Importing this package imports neither torch nor Flax: the torch
conversions take any mapping of arrays, turning tensors into numpy by duck
typing, and return numpy arrays that ``torch.from_numpy`` takes as they are.

Limits:

* ``torch.nn.RNN`` must use ``nonlinearity='tanh'`` (its default), the only
  one :data:`jaxrnn.simple_rnn` has. A state dict cannot show which one a
  module used, so ``'relu'`` weights convert without error but compute
  something else.
* Dropout is not part of a state dict: make the :func:`jaxrnn.stack` with
  the module's ``dropout`` yourself.
* An ``LSTM`` with ``proj_size > 0`` has one more key, ``weight_hr_l{k}``
  (P, H): it converts to :data:`jaxrnn.projected_lstm`, whose ``w_hr`` is its
  transpose.
* Only Flax's default gate and activation functions (sigmoid, tanh) are
  representable.
"""

from jaxrnn.interop._flax import _from_flax_gradient as _from_flax_gradient, from_flax, to_flax
from jaxrnn.interop._torch import from_torch, stack_from_torch, stack_to_torch, to_torch

__all__ = ["from_flax", "from_torch", "stack_from_torch", "stack_to_torch", "to_flax", "to_torch"]
