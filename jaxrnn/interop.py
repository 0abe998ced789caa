"""Weights to and from PyTorch's ``torch.nn.RNN``, ``LSTM`` and ``GRU``, and Flax's recurrent cells.

Our params hold the same four arrays as one layer of a torch recurrent
module, with the same gate order (LSTM ``i, f, g, o``, GRU ``r, z, n``); only
the weights are transposed, since we compute ``x @ W`` and torch
``x @ Wᵀ``. For layer ``k`` of a module::

    w_ih = state_dict["weight_ih_lk"].T    # torch (G·H, input) -> (input, G·H)
    w_hh = state_dict["weight_hh_lk"].T    # torch (G·H, H)     -> (H, G·H)
    b_ih = state_dict["bias_ih_lk"]        # (G·H,)
    b_hh = state_dict["bias_hh_lk"]        # (G·H,)

so conversions are exact both ways. The reverse direction of a
``bidirectional=True`` module has the same keys with ``_reverse`` appended,
which ``reverse=True`` reads and writes. :func:`stack_from_torch` and
:func:`stack_to_torch` convert a whole multi-layer, optionally bidirectional
module for a :func:`jaxrnn.stack` network in one call.

This module never imports torch: it takes any mapping of arrays, turning
tensors into numpy by duck typing, and returns numpy arrays that
``torch.from_numpy`` takes as they are.

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

Flax: :func:`from_flax` and :func:`to_flax` convert the parameters of one
``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell`` or ``SimpleCell``, Linen or
NNX. Flax keeps a kernel ``(in, H)`` per gate (or one ``(in, G·H)`` for NNX's
fused cells) and one bias per gate where we have two, so :func:`to_flax`
sums ``b_ih + b_hh`` where Flax adds both sides before the gate; outputs are
the same, exactly. Only Flax's default gate and activation functions
(sigmoid, tanh) are representable. Importing this module does not import Flax.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks, _registry
from jaxrnn._heads import block_diagonal
from jaxrnn._protocol import Cell
from jaxrnn._stack import Bidirectional, Stack

__all__ = ["from_flax", "from_torch", "stack_from_torch", "stack_to_torch", "to_flax", "to_torch"]

# torch key stems, in the order of the params' fields (w_ih, w_hh, b_ih, b_hh).
_STEMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

# The torch layer types of our cells, and the cell of each gate count, for messages.
_TORCH_NAMES = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "projected_lstm": "LSTM"}
_PROJECTED = "projected_lstm"  # the cell with torch's fifth key, weight_hr (proj_size > 0)
_CELL_OF_GATES = {1: ("jaxrnn.simple_rnn", "RNN"), 3: ("jaxrnn.gru", "GRU"), 4: ("jaxrnn.lstm", "LSTM")}

# How many present keys an error message shows.
_SHOWN_KEYS = 6


def from_torch(cell: Cell, state_dict: Mapping[str, Any], *, layer: int = 0, prefix: str = "", reverse: bool = False):
    """Params for ``cell`` from one layer of a torch recurrent module's state dict.

    Reads, with H the hidden size, X the input size of that layer (the
    module's ``input_size`` for layer 0, H above it) and G the cell's gate
    count (RNN 1, GRU 3, LSTM 4):

    * ``{prefix}weight_ih_l{layer}``, (G·H, X): becomes ``w_ih``, (X, G·H);
    * ``{prefix}weight_hh_l{layer}``, (G·H, H): becomes ``w_hh``, (H, G·H);
    * ``{prefix}bias_ih_l{layer}`` and ``{prefix}bias_hh_l{layer}``, (G·H,):
      become ``b_ih`` and ``b_hh`` as they are.

    With ``reverse=True`` it reads the reverse direction of a bidirectional
    module instead, the same keys with ``_reverse`` appended (e.g.
    ``weight_ih_l{layer}_reverse``); run those params with
    ``unroll(..., reverse=True)`` or as ``backward`` of :func:`jaxrnn.bidirectional`.

    A ``torch.nn.RNNCell``/``LSTMCell``/``GRUCell`` state dict has the same
    keys without the ``_l{layer}`` suffix; those are read when ``layer`` is 0
    and the suffixed keys are absent. A module made with ``bias=False`` has
    no bias keys: both biases are then zeros, which compute the same thing.

    A ``torch.nn.RNN`` must have used ``nonlinearity='tanh'``; see the module
    docstring. For all layers and directions at once use :func:`stack_from_torch`.

    Args:
        cell: :data:`jaxrnn.simple_rnn` for ``torch.nn.RNN``,
            :data:`jaxrnn.lstm` for ``LSTM``, :data:`jaxrnn.projected_lstm`
            for an ``LSTM`` with ``proj_size > 0``, :data:`jaxrnn.gru` for ``GRU``.
        state_dict: ``module.state_dict()`` or any mapping of key to array.
            Values may be torch tensors (on any device, requiring grad or
            not) or anything ``np.asarray`` takes.
        layer: which layer of a multi-layer module, ≥ 0. Layer ``k > 0``
            takes layer ``k - 1``'s outputs as its inputs.
        prefix: prepended to every key, for a module inside another, e.g.
            ``"encoder.rnn."`` for ``model.state_dict()``.
        reverse: read the ``_reverse`` keys of a bidirectional module.

    Returns:
        ``cell.params_type``, as JAX arrays of the state dict's dtype
        (float64 stays float64 when JAX's x64 mode is on). They are copies,
        so updating the torch module in place later leaves them as they are.

    Raises:
        ValueError: keys missing, shapes that do not fit ``cell`` (such as an
            LSTM's weights given to :data:`jaxrnn.gru`), a negative
            ``layer``, or an LSTM with ``proj_size > 0`` given to a cell
            other than :data:`jaxrnn.projected_lstm` (or the reverse), or a
            cell with no torch counterpart.
        TypeError: ``cell`` not a :class:`jaxrnn.Cell`, ``state_dict`` not a
            mapping, ``layer`` not an int, or non-floating arrays.

    Warns:
        UserWarning: on the default call (``layer=0``, forward) when the state
            dict has keys of other layers or directions, listing the ignored
            keys and pointing to :func:`stack_from_torch`.
    """
    params, read = _from_torch(cell, state_dict, layer, prefix, reverse, "jaxrnn.interop.from_torch")
    if layer == 0 and not reverse:  # the default call: a user who named a layer or direction meant it
        _warn_ignored(cell, state_dict, read, prefix)
    return params


def _from_torch(cell, state_dict, layer, prefix, reverse, where):
    """:func:`from_torch` without the warning about other layers' keys; returns ``(params, keys read)``."""
    layer, prefix = _common_arguments(cell, layer, prefix, reverse, where)
    _check_mapping(state_dict, where)
    hr_key = f"{prefix}weight_hr{_suffix(layer, reverse)}"
    projected = cell.name == _PROJECTED
    if hr_key in state_dict and not projected:
        raise ValueError(
            f"{where}: the state dict has {hr_key}, so it comes from a torch.nn.LSTM with proj_size > 0, "
            f"whose projected hidden state {cell!r} does not have. Convert it with jaxrnn.projected_lstm."
        )
    if projected and hr_key not in state_dict:
        raise ValueError(
            f"{where}: jaxrnn.projected_lstm needs {hr_key}, the projection of a torch.nn.LSTM made with "
            f"proj_size > 0; the state dict has no such key. For proj_size=0 use jaxrnn.lstm."
        )

    keys = _find_keys(cell, state_dict, layer, prefix, reverse, where)
    w_ih, w_hh = (_to_numpy(state_dict[key], key, where) for key in keys[:2])
    if not projected:  # its weight_hh is (4H, P): the shared shape rules below check it
        _check_weight_hh(cell, w_hh, keys[1], where)
    if keys[2] in state_dict and keys[3] in state_dict:
        b_ih, b_hh = (_to_numpy(state_dict[key], key, where) for key in keys[2:])
    elif keys[2] in state_dict or keys[3] in state_dict:
        have, lack = (keys[2], keys[3]) if keys[2] in state_dict else (keys[3], keys[2])
        raise ValueError(
            f"{where}: the state dict has {have} but not {lack}; a torch module has both biases "
            f"(bias=True) or neither (bias=False). Add the missing one, or drop both."
        )
    else:  # bias=False: zero biases compute the same function.
        b_ih = b_hh = np.zeros(w_hh.shape[:1], w_hh.dtype)

    # Copies (jnp.array), not views: a torch optimizer updates the tensors in place.
    arrays = dict(w_ih=jnp.array(w_ih.T), w_hh=jnp.array(w_hh.T), b_ih=jnp.array(b_ih), b_hh=jnp.array(b_hh))
    read = set(keys)
    if projected:
        arrays["w_hr"] = jnp.array(_to_numpy(state_dict[hr_key], hr_key, where).T)
        read.add(hr_key)
    params = cell.params_type(**arrays)
    # The shared shape rules, read in our layout; the context says how it maps to the keys.
    context = f"{where} (w_ih = {keys[0]}.T, w_hh = {keys[1]}.T)"
    params, _, _ = _checks.params(cell, params, context)
    return params, read


def _warn_ignored(cell: Cell, state_dict: Mapping, read: set, prefix: str) -> None:
    """Warns, listing them, when other layers' or directions' keys were left unread."""
    pattern = re.compile(re.escape(prefix) + r"(weight|bias)_(ih|hh|hr)_l\d+(_reverse)?$")
    ignored = [str(key) for key in state_dict if pattern.match(str(key)) and str(key) not in read]
    if ignored:
        shown = ignored[:_SHOWN_KEYS] + (["..."] if len(ignored) > _SHOWN_KEYS else [])
        warnings.warn(
            f"jaxrnn.interop.from_torch read one layer and direction and ignored {len(ignored)} key(s) of "
            f"other layers or directions: {shown}. For the whole module use "
            f"jaxrnn.interop.stack_from_torch(jaxrnn.stack({cell!r}, num_layers, bidirectional=...), state_dict).",
            UserWarning,
            stacklevel=3,
        )


def to_torch(cell: Cell, params, *, layer: int = 0, prefix: str = "", reverse: bool = False) -> dict[str, np.ndarray]:
    """One layer of a torch recurrent module's state dict, from ``cell``'s params.

    The inverse of :func:`from_torch`: with H the hidden size, X the input
    size and G the cell's gate count, returns the numpy arrays

    * ``{prefix}weight_ih_l{layer}``: ``w_ih.T``, (G·H, X);
    * ``{prefix}weight_hh_l{layer}``: ``w_hh.T``, (G·H, H); headed weights
      (``init(..., num_heads=K)``) as their dense block-diagonal matrix
      (:func:`jaxrnn.block_diagonal`), which torch computes the same forward with;
    * ``{prefix}bias_ih_l{layer}``, ``{prefix}bias_hh_l{layer}``: ``b_ih``,
      ``b_hh``, (G·H,).

    They are fresh, writable, C-contiguous arrays of the params' dtype, so::

        sd = jaxrnn.interop.to_torch(jaxrnn.lstm, params)
        module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})

    loads a one-layer ``torch.nn.LSTM(X, H)`` (cast the module with
    ``.double()`` first for float64 params). ``reverse=True`` names the keys
    of a bidirectional module's reverse direction (``..._l{layer}_reverse``).
    For a multi-layer module, merge the dicts of each ``layer`` and direction,
    or use :func:`stack_to_torch`. For a ``torch.nn.LSTMCell`` (keys without
    the suffix) drop it: ``{k.removesuffix("_l0"): v ...}``; for a module
    made with ``bias=False`` drop the bias keys.

    Args:
        cell: the cell the params belong to.
        params: ``cell``'s params, or a mapping with the same keys.
        layer: the layer number used in the keys, ≥ 0.
        prefix: prepended to every key, e.g. ``"encoder.rnn."``.
        reverse: name the keys of the reverse direction (``_reverse`` appended).

    Returns:
        A dict of the four keys above (five with ``weight_hr`` for
        :data:`jaxrnn.projected_lstm`) to numpy arrays.

    Raises:
        ValueError: params of the wrong shapes, or a negative ``layer``.
        TypeError: ``cell`` not a :class:`jaxrnn.Cell`, params of another
            type, or ``layer`` not an int.
    """
    where = "jaxrnn.interop.to_torch"
    layer, prefix = _common_arguments(cell, layer, prefix, reverse, where)
    params, _, _ = _checks.params(cell, params, where)
    keys = _keys(prefix, _suffix(layer, reverse))
    # np.array copies into a C-ordered, writable array: what torch.from_numpy wants.
    arrays: tuple[jax.Array, ...] = (params.w_ih.T, block_diagonal(params.w_hh).T, params.b_ih, params.b_hh)
    if cell.name == _PROJECTED:
        keys, arrays = (*keys, f"{prefix}weight_hr{_suffix(layer, reverse)}"), (*arrays, params.w_hr.T)
    return {key: np.array(array, order="C") for key, array in zip(keys, arrays)}


def stack_from_torch(net: Stack, state_dict: Mapping[str, Any], *, prefix: str = "") -> tuple:
    """Params for a :func:`jaxrnn.stack` network from a whole torch module's state dict.

    For ``torch.nn.LSTM(X, H, num_layers=L, bidirectional=B)`` use
    ``net = jaxrnn.stack(jaxrnn.lstm, L, bidirectional=B)`` (and the module's
    ``dropout``); then ``net.apply(stack_from_torch(net, module.state_dict()), xs)``
    computes what the module does. Each layer and direction is read by
    :func:`from_torch`, with ``reverse=True`` for the ``_reverse`` keys.

    The number of layers and whether the module is bidirectional are read
    off the keys (``weight_ih_l{k}`` and ``weight_ih_l{k}_reverse``) and must
    match ``net``.

    Args:
        net: the network, from :func:`jaxrnn.stack`.
        state_dict: ``module.state_dict()`` or any mapping of key to array.
        prefix: prepended to every key, e.g. ``"encoder.rnn."``.

    Returns:
        A tuple of ``net.num_layers`` params, each a :class:`jaxrnn.Bidirectional`
        ``(forward, backward)`` pair if ``net.bidirectional``; layer ``k``
        direction ``d`` is torch's ``h_n[k·D + d]`` state.

    Raises:
        ValueError: layers or directions that differ from ``net``'s, and
            everything :func:`from_torch` raises.
        TypeError: ``net`` not a :class:`jaxrnn.Stack`, ``state_dict`` not a mapping.
    """
    where = "jaxrnn.interop.stack_from_torch"
    _check_stack(net, where, "from_torch")
    _common_arguments(net.cell, 0, prefix, False, where)
    _check_mapping(state_dict, where)
    layers = _layers_present(state_dict, prefix)
    # Without module-style keys there is nothing to count; from_torch names what is missing.
    if layers:
        expected = list(range(net.num_layers))
        if layers != list(range(len(layers))):
            raise ValueError(
                f"{where}: the state dict has the layers {layers} ({prefix}weight_ih_l{{k}}), "
                f"not 0..{len(layers) - 1}; it looks incomplete. Pass the module's whole state_dict()."
            )
        if layers != expected:
            raise ValueError(
                f"{where}: the state dict has {len(layers)} layer(s) ({prefix}weight_ih_l0..l{layers[-1]}), but "
                f"{net!r} has num_layers={net.num_layers}. Make the net with "
                f"jaxrnn.stack({net.cell!r}, num_layers={len(layers)}, bidirectional={net.bidirectional})."
            )
        has_reverse = any(f"{prefix}weight_ih_l{k}_reverse" in state_dict for k in layers)
        if has_reverse != net.bidirectional:
            found = (
                "has _reverse keys (a bidirectional module)"
                if has_reverse
                else "has no _reverse keys (a unidirectional module)"
            )
            raise ValueError(
                f"{where}: the state dict {found}, but {net!r} has bidirectional={net.bidirectional}. Make the net "
                f"with jaxrnn.stack({net.cell!r}, num_layers={net.num_layers}, bidirectional={has_reverse})."
            )
    params = []
    for k in range(net.num_layers):
        directions = [_from_torch(net.cell, state_dict, k, prefix, d == 1, where)[0]
                      for d in range(net.num_directions)]
        params.append(Bidirectional(*directions) if net.bidirectional else directions[0])
    # Layer k > 0 must read D·H features: a hand-made state dict may not.
    return net._check_params(tuple(params), where)[0]


def stack_to_torch(net: Stack, params, *, prefix: str = "") -> dict[str, np.ndarray]:
    """A whole torch module's state dict from a :func:`jaxrnn.stack` network's params.

    The inverse of :func:`stack_from_torch`: the keys of every layer and
    direction, from :func:`to_torch`, in torch's own order (layer by layer,
    forward before ``_reverse``), so::

        sd = jaxrnn.interop.stack_to_torch(net, params)
        module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})

    loads ``torch.nn.LSTM(X, H, num_layers=L, bidirectional=B)`` for
    ``net = jaxrnn.stack(jaxrnn.lstm, L, bidirectional=B)``.

    Args:
        net: the network, from :func:`jaxrnn.stack`.
        params: its params, as from ``net.init``.
        prefix: prepended to every key.

    Returns:
        A dict of key to numpy array.

    Raises:
        TypeError, ValueError: params that do not fit ``net`` (per layer and
            direction), or ``net`` not a :class:`jaxrnn.Stack`.
    """
    where = "jaxrnn.interop.stack_to_torch"
    _check_stack(net, where, "to_torch")
    _common_arguments(net.cell, 0, prefix, False, where)
    params = net._check_params(params, where)[0]
    state_dict = {}
    for k, layer in enumerate(params):
        for d, p in enumerate(layer if net.bidirectional else (layer,)):
            state_dict.update(to_torch(net.cell, p, layer=k, prefix=prefix, reverse=d == 1))
    return state_dict


# --------------------------------------------------------------------------
# Flax.


class _FlaxLayout(NamedTuple):
    """Where one family of Flax cells keeps a jaxrnn cell's weights.

    Each side (input, hidden) is a row of ``Dense``/``Linear`` layers, either
    one per gate or one for all gates (NNX's fused cells), each holding a
    ``kernel`` (in, out) and, where Flax gives it one, a ``bias`` (out,).
    Names and flags are in jaxrnn's (torch's) gate order.
    """

    classes: str  # the Flax classes with this layout, for messages
    input: tuple[str, ...]  # the input side's layer names
    hidden: tuple[str, ...]  # the hidden side's layer names
    input_bias: tuple[bool, ...]  # per gate: whether the input side has a bias for it
    hidden_bias: tuple[bool, ...]  # per gate: the same for the hidden side


_NO4, _YES4 = (False,) * 4, (True,) * 4
_FLAX_LAYOUTS = {
    # LSTMs sum both sides before each gate, so Flax gives only the hidden side a bias.
    ("linen", "lstm"): _FlaxLayout(
        "flax.linen.LSTMCell or flax.linen.OptimizedLSTMCell", ("ii", "if", "ig", "io"), ("hi", "hf", "hg", "ho"),
        _NO4, _YES4,
    ),
    ("nnx", "lstm"): _FlaxLayout("flax.nnx.LSTMCell", ("ii", "if_", "ig", "io"), ("hi", "hf", "hg", "ho"), _NO4, _YES4),
    ("nnx_optimized", "lstm"): _FlaxLayout("flax.nnx.OptimizedLSTMCell", ("dense_i",), ("dense_h",), _NO4, _YES4),
    # Linen's GRU keeps n's hidden bias inside r ⊙ (W_hn h + b_hn), as torch does; NNX's has none there.
    ("linen", "gru"): _FlaxLayout(
        "flax.linen.GRUCell", ("ir", "iz", "in"), ("hr", "hz", "hn"), (True, True, True), (False, False, True)
    ),
    ("nnx", "gru"): _FlaxLayout("flax.nnx.GRUCell", ("dense_i",), ("dense_h",), (True, True, True), (False,) * 3),
    ("linen", "simple_rnn"): _FlaxLayout("flax.linen.SimpleCell", ("i",), ("h",), (True,), (False,)),
    ("nnx", "simple_rnn"): _FlaxLayout("flax.nnx.SimpleCell", ("dense_i",), ("dense_h",), (True,), (False,)),
}
_FLAX_LAYOUT_NAMES = ("linen", "nnx", "nnx_optimized")
# The cells with a Flax counterpart, and its class name.
_FLAX_NAMES = {"simple_rnn": "SimpleCell", "lstm": "LSTMCell", "gru": "GRUCell"}
# The NNX cell classes we read, and their layout.
_NNX_CLASSES = {
    "LSTMCell": ("nnx", "lstm"),
    "OptimizedLSTMCell": ("nnx_optimized", "lstm"),
    "GRUCell": ("nnx", "gru"),
    "SimpleCell": ("nnx", "simple_rnn"),
}
# Gates whose hidden bias sits inside r ⊙ (...): neither of their biases may move to the other side.
_INSIDE_RESET = {"gru": (2,)}
# The activations our cells compute; Flax's defaults are these same functions.
_FLAX_FUNCTIONS = (("gate_fn", jax.nn.sigmoid, "sigmoid"), ("activation_fn", jnp.tanh, "tanh"))


def from_flax(cell: Cell, flax_params: Any):
    """Params for ``cell`` from a Flax recurrent cell's parameters.

    Reads the parameters of one cell as Flax stores them, with X the input
    size, H the hidden size and every kernel ``(in, out)``:

    * Linen (``flax.linen``): the dict under the cell's scope, e.g.
      ``variables["params"]["cell"]`` of ``nn.RNN(nn.LSTMCell(H))``.
      ``LSTMCell`` and ``OptimizedLSTMCell`` share one layout: kernels
      ``ii, if, ig, io`` (X, H) without bias and ``hi, hf, hg, ho`` (H, H)
      with bias (H,). ``GRUCell``: ``ir, iz, in`` (X, H) with bias,
      ``hr, hz`` (H, H) without, ``hn`` (H, H) with bias. ``SimpleCell``:
      ``i`` (X, H) with bias, ``h`` (H, H) without.
    * NNX (``flax.nnx``): an ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``
      or ``SimpleCell`` instance, its ``nnx.state(...)``, or
      ``nnx.to_pure_dict`` of that state. ``LSTMCell`` has Linen's names with ``if_`` for
      ``if``; the others hold two fused layers, ``dense_i`` (X, G·H) and
      ``dense_h`` (H, G·H), gate blocks in jaxrnn's order, with a bias on
      ``dense_h`` for the LSTM and on ``dense_i`` for the GRU and simple cell.

    The layout is read off the keys. Each kernel becomes its gate's block of
    ``w_ih`` (X, G·H) or ``w_hh`` (H, G·H); an input-side bias becomes that
    block of ``b_ih``, a hidden-side bias that block of ``b_hh``, and a
    block Flax has no bias for is zero. That places the GRU's ``hn`` bias in
    ``b_hh``'s ``n`` block, inside ``r ⊙ (...)`` where Flax computes it, so
    the conversion is exact.

    Flax's cells compute the same functions as ours only with their default
    ``gate_fn=sigmoid``, ``activation_fn=tanh`` (and ``residual=False`` for
    ``SimpleCell``). An NNX instance is checked for that; a Linen dict cannot
    show it, so converting a cell made with other functions gives params that
    compute something else. Flax's LSTM carry is ``(c, h)``, ours
    ``LSTMCarry(h, c)``.

    Example::

        model = nn.RNN(nn.LSTMCell(16))
        variables = model.init(key, xs)                  # xs: (B, T, X)
        params = jaxrnn.interop.from_flax(jaxrnn.lstm, variables["params"]["cell"])
        carry, hs = jaxrnn.unroll(jaxrnn.lstm, params, xs, time_major=False)
        # hs == model.apply(variables, xs), (B, T, 16)

    Args:
        cell: :data:`jaxrnn.lstm`, :data:`jaxrnn.gru` or :data:`jaxrnn.simple_rnn`.
        flax_params: the cell's parameters, as above: a mapping of layer name
            to ``{"kernel": ..., "bias": ...}`` (values may be arrays or NNX
            variables), an ``nnx.State``, or an NNX cell instance.

    Returns:
        ``cell.params_type``: ``w_ih`` (X, G·H), ``w_hh`` (H, G·H), ``b_ih``
        and ``b_hh`` (G·H,), as JAX arrays of the kernels' dtype.

    Raises:
        ValueError: keys missing or extra, shapes that do not fit together
            (naming the key and the shape expected), parameters of another
            cell type (such as a ``GRUCell``'s given to :data:`jaxrnn.lstm`),
            an NNX cell with non-default activations, a Flax cell class we
            have no counterpart for, or a ``cell`` without a Flax counterpart.
        TypeError: ``cell`` not a :class:`jaxrnn.Cell`, ``flax_params`` not a
            mapping or NNX cell (e.g. a Linen module, which holds no
            weights), or non-floating arrays.
    """
    where = "jaxrnn.interop.from_flax"
    _check_cell(cell, _FLAX_NAMES, "Flax", "Flax", where)
    tree, known = _flax_tree(flax_params, where)
    key = _find_flax_layout(cell, tree, known, where)
    layout = _FLAX_LAYOUTS[key]
    size = _check_flax_shapes(cell, layout, tree, where)
    gates = len(cell.gates)

    def side(names, biased):
        per = gates // len(names)  # gate blocks per layer
        kernels = [jnp.asarray(tree[name]["kernel"]) for name in names]
        weight = jnp.concatenate(kernels, axis=-1)
        biases = [
            jnp.asarray(tree[name]["bias"]) if biased[j * per] else jnp.zeros(per * size, weight.dtype)
            for j, name in enumerate(names)
        ]
        return weight, jnp.concatenate(biases).astype(weight.dtype)

    w_ih, b_ih = side(layout.input, layout.input_bias)
    w_hh, b_hh = side(layout.hidden, layout.hidden_bias)
    params = cell.params_type(w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    return _checks.params(cell, params, f"{where} ({layout.classes})")[0]


def to_flax(cell: Cell, params, *, layout: str = "linen") -> dict:
    """A Flax recurrent cell's parameters, from ``cell``'s params.

    The inverse of :func:`from_flax`, for the cell classes ``layout`` names:

    * ``"linen"``: ``flax.linen.LSTMCell`` and ``OptimizedLSTMCell`` (one
      layout), ``GRUCell``, ``SimpleCell``. Use the dict as the cell's scope:
      ``{"params": {"cell": to_flax(...)}}`` for ``nn.RNN(cell)``.
    * ``"nnx"``: ``flax.nnx.LSTMCell``, ``GRUCell``, ``SimpleCell``; load it
      with ``nnx.update(nnx_cell, to_flax(..., layout="nnx"))``.
    * ``"nnx_optimized"``: ``flax.nnx.OptimizedLSTMCell`` (LSTM only).

    Weights split into Flax's kernels as they are (headed ``w_hh`` as its
    dense block-diagonal matrix, :func:`jaxrnn.block_diagonal`). Flax has one
    bias per gate where we have two; where it is summed with the other side
    before the gate, ``b_ih + b_hh`` goes into it, which computes the same
    function. The GRU's ``n`` gate is not summed that way:
    ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``. Linen's ``GRUCell``
    has both of its biases, so ``b_ih``'s and ``b_hh``'s ``n`` blocks stay
    apart; NNX's has no ``b_hn``, so ``b_hh``'s ``n`` block must be zero.
    :func:`from_flax` of the result therefore need not equal ``params``
    array by array, but computes the same outputs.

    Example::

        flax_params = jaxrnn.interop.to_flax(jaxrnn.gru, params)
        hs = nn.RNN(nn.GRUCell(H)).apply({"params": {"cell": flax_params}}, xs)

    Args:
        cell: :data:`jaxrnn.lstm`, :data:`jaxrnn.gru` or :data:`jaxrnn.simple_rnn`.
        params: ``cell``'s params, or a mapping with the same keys.
        layout: ``"linen"``, ``"nnx"`` or ``"nnx_optimized"``, as above.

    Returns:
        A dict of layer name to ``{"kernel": (in, out)}`` or
        ``{"kernel": ..., "bias": (out,)}``, JAX arrays of the params' dtype.

    Raises:
        ValueError: params of the wrong shapes, an unknown ``layout``, a
            nonzero GRU ``b_hh`` ``n`` block for ``layout="nnx"``, or a cell
            without a Flax counterpart.
        TypeError: ``cell`` not a :class:`jaxrnn.Cell`, params of another
            type, or, for ``layout="nnx"`` and :data:`jaxrnn.gru`, params traced
            by ``jax.jit``/``grad``, whose ``n`` block cannot be checked.
    """
    where = "jaxrnn.interop.to_flax"
    _check_cell(cell, _FLAX_NAMES, "Flax", "Flax", where)
    key = _flax_layout_key(cell, layout, where)
    params, _, _ = _checks.params(cell, params, where)
    params = params._replace(w_hh=block_diagonal(params.w_hh))
    _check_dropped_biases(cell, key, params, where)
    return _to_flax_tree(cell.name, _FLAX_LAYOUTS[key], params)


def _from_flax_gradient(cell: Cell, gradient: Mapping, layout: str = "linen"):
    """A loss's gradient in ``cell``'s params, from its gradient in ``to_flax(cell, params, layout=layout)``.

    :func:`to_flax` is linear in the params, so this is its transpose: a bias
    folded into one of Flax's gets that bias's gradient on both sides.
    """
    where = "jaxrnn.interop._from_flax_gradient"
    key = _flax_layout_key(cell, layout, where)
    tree = _flax_tree(gradient, where)[0]
    primal = from_flax(cell, tree)  # only its shapes and dtypes are used
    transpose = jax.linear_transpose(functools.partial(_to_flax_tree, cell.name, _FLAX_LAYOUTS[key]), primal)
    return transpose(jax.tree.map(jnp.asarray, tree))[0]


def _flax_layout_key(cell: Cell, layout: Any, where: str) -> tuple[str, str]:
    if layout not in _FLAX_LAYOUT_NAMES:
        raise ValueError(
            f"{where}: layout must be one of {list(_FLAX_LAYOUT_NAMES)} (flax.linen's cells, flax.nnx's, or "
            f"flax.nnx.OptimizedLSTMCell); got {layout!r}."
        )
    key = (layout, cell.name)
    if key not in _FLAX_LAYOUTS:
        raise ValueError(
            f"{where}: layout={layout!r} is flax.nnx.OptimizedLSTMCell's, for jaxrnn.lstm only; "
            f"flax.nnx.{_FLAX_NAMES[cell.name]} has one layout: pass layout='nnx'."
        )
    return key


def _bias_side(cell_name: str, layout: _FlaxLayout, gate: int, source: str) -> str | None:
    """The side (``"input"``/``"hidden"``) of Flax's bias that our ``source`` bias of ``gate`` goes into.

    Its own side where Flax has a bias there; else the other side's, which
    is exact where both sides are summed before the gate; else None, and
    the bias must be zero.
    """
    has = {"input": layout.input_bias[gate], "hidden": layout.hidden_bias[gate]}
    own, other = ("input", "hidden") if source == "b_ih" else ("hidden", "input")
    if has[own]:
        return own
    if has[other] and gate not in _INSIDE_RESET.get(cell_name, ()):
        return other
    return None


def _to_flax_tree(cell_name: str, layout: _FlaxLayout, params) -> dict:
    """The Flax dict of dense params; linear in them, so :func:`_from_flax_gradient` transposes it."""
    gates = len(layout.input_bias)
    biases: dict[str, list] = {"input": [None] * gates, "hidden": [None] * gates}
    for source in ("b_ih", "b_hh"):
        for gate, block in enumerate(jnp.split(getattr(params, source), gates)):
            side = _bias_side(cell_name, layout, gate, source)
            if side is not None:
                held = biases[side][gate]
                biases[side][gate] = block if held is None else held + block
    tree = {}
    for side, names, weight in (("input", layout.input, params.w_ih), ("hidden", layout.hidden, params.w_hh)):
        per = gates // len(names)
        for j, (name, kernel) in enumerate(zip(names, jnp.split(weight, len(names), axis=-1))):
            tree[name] = {"kernel": kernel}
            blocks = biases[side][j * per : (j + 1) * per]
            if blocks[0] is not None:
                tree[name]["bias"] = jnp.concatenate(blocks)
    return tree


def _check_dropped_biases(cell: Cell, key: tuple[str, str], params, where: str) -> None:
    """A bias block Flax has no place for must be zero (NNX's GRU has no b_hn)."""
    layout = _FLAX_LAYOUTS[key]
    gates = len(cell.gates)
    dropped = [(s, g) for s in ("b_ih", "b_hh") for g in range(gates) if _bias_side(cell.name, layout, g, s) is None]
    for source, gate in dropped:
        array = getattr(params, source)
        if isinstance(array, jax.core.Tracer):  # as jax's own ConcretizationTypeError, a TypeError
            raise TypeError(
                f"{where}: {layout.classes} has no bias for {source}'s {cell.gates[gate]} block, so to_flax checks "
                f"that it is zero, which needs concrete values: call it outside jax.jit, grad or vmap."
            )
        block = np.split(np.asarray(array), gates)[gate]
        if np.any(block != 0):
            h = block.shape[0]
            raise ValueError(
                f"{where}: {layout.classes} has no bias for {source}'s {cell.gates[gate]} block "
                f"({source}[{gate * h}:{(gate + 1) * h}]), which is nonzero here; it sits inside r ⊙ (...), so it "
                f"cannot move into another bias. Use layout='linen' (flax.linen.{_FLAX_NAMES[cell.name]} has it), "
                f"or zero that block first."
            )


def _flax_tree(flax_params: Any, where: str) -> tuple[dict, tuple[str, str] | None]:
    """``flax_params`` as a plain dict of dicts; with the layout an NNX cell instance implies, else None."""
    module = type(flax_params).__module__ or ""
    if not isinstance(flax_params, Mapping) and module.startswith("flax.nnx"):
        return _nnx_cell_tree(flax_params, where)
    if not isinstance(flax_params, Mapping) and module.startswith("flax.linen"):
        raise TypeError(
            f"{where}: got the Linen module {type(flax_params).__name__}, which holds no weights. Pass its "
            f"parameters: the dict under its scope in the variables, e.g. variables['params']['cell'] for "
            f"nn.RNN(cell)."
        )
    if not isinstance(flax_params, Mapping):
        raise TypeError(
            f"{where}: flax_params must be a Flax cell's parameters: a mapping such as "
            f"variables['params']['cell'], an nnx.State, or a flax.nnx cell; got {type(flax_params).__name__}."
        )
    # The state of an NNX cell made with keep_rngs=True also holds its carry's random stream: not a weight.
    return {key: value for key, value in _plain(flax_params).items() if key != "rngs"}, None


def _plain(tree: Any) -> Any:
    """Nested mappings as dicts with str keys; NNX variables as their values."""
    if isinstance(tree, Mapping):
        return {str(key): _plain(value) for key, value in tree.items()}
    if hasattr(tree, "get_value"):  # an nnx.Variable such as nnx.Param
        return tree.get_value()
    return tree


def _nnx_cell_tree(cell: Any, where: str) -> tuple[dict, tuple[str, str]]:
    """An NNX cell's parameters, once its class and functions are known to have a counterpart."""
    name = type(cell).__name__
    if name not in _NNX_CLASSES:
        hint = (
            " Pass its cell instead: rnn.cell."
            if hasattr(cell, "cell")
            else f" The cells we read are flax.nnx.{', flax.nnx.'.join(_NNX_CLASSES)}."
        )
        raise ValueError(f"{where}: flax.nnx.{name} is not a cell with a jaxrnn counterpart.{hint}")
    for attribute, function, label in _FLAX_FUNCTIONS:
        if getattr(cell, attribute, function) is not function:
            raise ValueError(
                f"{where}: this flax.nnx.{name} has {attribute}={getattr(cell, attribute)!r}; jaxrnn's cells "
                f"compute {label} there (Flax's default), so its weights would compute something else here. "
                f"Only cells with the default {attribute} convert."
            )
    if getattr(cell, "residual", False):
        raise ValueError(
            f"{where}: this flax.nnx.{name} has residual=True, which adds h to the pre-activation; "
            f"jaxrnn.simple_rnn has no such term. Only cells with residual=False convert."
        )
    from flax import nnx  # present: the cell is one of its objects

    return _plain(nnx.state(cell, nnx.Param)), _NNX_CLASSES[name]


def _flax_paths(tree: Mapping) -> set[str]:
    """The leaves of a cell's parameters, as ``"name/kernel"``; a top-level leaf as ``"name"``."""
    paths: set[str] = set()
    for name, value in tree.items():
        if isinstance(value, Mapping):
            paths.update(f"{name}/{leaf}" for leaf in value)
        else:
            paths.add(name)
    return paths


def _layout_paths(layout: _FlaxLayout) -> set[str]:
    paths = set()
    for names, biased in ((layout.input, layout.input_bias), (layout.hidden, layout.hidden_bias)):
        per = len(biased) // len(names)
        for j, name in enumerate(names):
            paths.add(f"{name}/kernel")
            if biased[j * per]:
                paths.add(f"{name}/bias")
    return paths


def _gate_count(layout: _FlaxLayout, tree: Mapping) -> int | None:
    """How many gates the hidden side's first kernel holds, (H, n·H) fused or (H, H) per gate; None if unclear."""
    shape = np.shape(tree[layout.hidden[0]]["kernel"])
    if len(shape) != 2 or shape[0] == 0 or shape[1] % shape[0]:
        return None
    return shape[1] // shape[0] * len(layout.hidden)


def _find_flax_layout(cell: Cell, tree: dict, known: tuple[str, str] | None, where: str) -> tuple[str, str]:
    """The layout key of ``tree``, which must be one of ``cell``'s."""
    paths = _flax_paths(tree)
    if known is not None:  # an NNX instance: its class says which
        candidates = [known]
    else:
        candidates = [key for key, layout in _FLAX_LAYOUTS.items() if _layout_paths(layout) == paths]
        # NNX's GRUCell and SimpleCell have the same keys: the kernels' widths tell them apart.
        if len(candidates) > 1:
            layouts = {key: _FLAX_LAYOUTS[key] for key in candidates}
            counted = [key for key, layout in layouts.items() if _gate_count(layout, tree) == len(layout.input_bias)]
            candidates = counted or candidates
    for key in candidates:
        if key[1] == cell.name and (known is None or _layout_paths(_FLAX_LAYOUTS[key]) == paths):
            return key
    if candidates and candidates[0][1] != cell.name:
        other = candidates[0]
        raise ValueError(
            f"{where}: these are the parameters of a {_FLAX_LAYOUTS[other].classes}, a counterpart of "
            f"jaxrnn.{other[1]}, not of {cell!r}. Convert them with jaxrnn.interop.from_flax(jaxrnn.{other[1]}, ...), "
            f"or pass the parameters of a flax {_FLAX_NAMES[cell.name]}."
        )

    # No layout fits: name what the nearest of the cell's own lacks and has too many.
    mine = [key for key in _FLAX_LAYOUTS if key[1] == cell.name and (known is None or key == known)]
    nearest = min(mine, key=lambda key: len(_layout_paths(_FLAX_LAYOUTS[key]) ^ paths))
    expected = _layout_paths(_FLAX_LAYOUTS[nearest])
    missing, extra = sorted(expected - paths), sorted(paths - expected)
    names = sorted(tree)
    if names == ["params"]:
        hint = (
            "This is a whole variables dict: pass the cell's scope, e.g. variables['params']['cell'] for "
            "nn.RNN(cell)."
        )
    elif len(names) == 1 and isinstance(tree[names[0]], Mapping):
        hint = (
            f"The weights seem to be one level down: pass flax_params[{names[0]!r}], the dict under the "
            "cell's scope."
        )
    else:
        hint = (
            "Pass the parameters of one flax LSTMCell, OptimizedLSTMCell, GRUCell or SimpleCell with the default "
            "gate and activation functions; other Flax cells (MGUCell, ConvLSTMCell) have no jaxrnn counterpart."
        )
    raise ValueError(
        f"{where}: {cell!r} reads the parameters of a {_FLAX_LAYOUTS[nearest].classes}, with the keys "
        f"{sorted(expected)}; got {sorted(paths)}: missing {missing}, unexpected {extra}. " + hint
    )


def _check_flax_shapes(cell: Cell, layout: _FlaxLayout, tree: dict, where: str) -> int:
    """Checks every kernel and bias against the sizes read off the first ones; returns H."""
    gates = len(cell.gates)

    def array(name, leaf):
        return _checks.floating_array(tree[name][leaf], f"flax_params[{name!r}][{leaf!r}]", where)

    first_hidden, first_input = array(layout.hidden[0], "kernel"), array(layout.input[0], "kernel")
    size = first_hidden.shape[0] if first_hidden.ndim == 2 else None
    inputs = first_input.shape[0] if first_input.ndim == 2 else None
    # The hidden side first: its first kernel gives H, so a problem there is named there.
    for names, biased, rows in ((layout.hidden, layout.hidden_bias, size), (layout.input, layout.input_bias, inputs)):
        per = gates // len(names)
        width = None if size is None else per * size
        for j, name in enumerate(names):
            leaves = [("kernel", (rows, width))] + ([("bias", (width,))] if biased[j * per] else [])
            for leaf, shape in leaves:
                got = array(name, leaf).shape
                if got != shape:
                    raise ValueError(_flax_shape_message(cell, layout, name, leaf, shape, got, where))
    assert size is not None  # else the first kernel's shape check raised
    return size


def _flax_shape_message(cell, layout, name, leaf, shape, got, where) -> str:
    """Names the key, the shape expected and received, and the likeliest fix."""
    sizes = "H = the first dimension of the hidden side's first kernel, X = that of the input side's"
    message = (
        f"{where}: flax_params[{name!r}][{leaf!r}] must have the shape {_shape_text(shape)} in a "
        f"{layout.classes} (kernels (in, out); {sizes}); got {got}."
    )
    if None in shape or len(got) > len(shape):
        extra = len(got) - 2 if leaf == "kernel" else len(got) - 1
        if extra > 0:
            return message + (
                f" It has {extra} extra leading axis(es), as from nn.scan or nn.vmap over layers or models: "
                "pass one cell's slice, e.g. jax.tree.map(lambda a: a[0], flax_params)."
            )
        return message + " Kernels are 2-D, biases 1-D: pass the cell's own arrays."
    if leaf == "kernel" and got == shape[::-1] and got != shape:
        return message + " It looks transposed: Flax kernels are (in, out), as in flax.linen.Dense."
    first_hidden = leaf == "kernel" and name == layout.hidden[0]
    if first_hidden and len(got) == 2 and got[0] == shape[0] and got[1] % max(got[0], 1) == 0:
        count = got[1] // got[0] * len(layout.hidden)
        if count in _CELL_OF_GATES:
            other = _CELL_OF_GATES[count][0]
            return message + f" It holds {count} gate(s) where {cell!r} has {len(cell.gates)}: convert it with {other}."
    return message + " All kernels and biases must come from one cell: check that none was taken from another model."


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join("?" if n is None else str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


# --------------------------------------------------------------------------
# Helpers.


def _check_stack(net: Any, where: str, single: str) -> None:
    if not isinstance(net, Stack):
        hint = (
            f" For one layer of a cell use jaxrnn.interop.{single}(cell, ...), or make a network with "
            f"jaxrnn.stack({net!r}, num_layers, bidirectional=...)."
            if isinstance(net, Cell)
            else ""
        )
        raise TypeError(
            f"{where}: net must be a network from jaxrnn.stack, e.g. jaxrnn.stack(jaxrnn.lstm, 2, "
            f"bidirectional=True); got {type(net).__name__}.{hint}"
        )


def _check_mapping(state_dict: Any, where: str) -> None:
    if not isinstance(state_dict, Mapping):
        hint = " Pass module.state_dict(), not the module." if hasattr(state_dict, "state_dict") else ""
        raise TypeError(
            f"{where}: state_dict must be a mapping of key to array, such as module.state_dict(); "
            f"got {type(state_dict).__name__}.{hint}"
        )


def _layers_present(state_dict: Mapping, prefix: str) -> list[int]:
    """The k of every ``{prefix}weight_ih_l{k}`` key (forward direction), sorted."""
    start = prefix + "weight_ih_l"
    suffixes = [str(key)[len(start) :] for key in state_dict if str(key).startswith(start)]
    return sorted(int(suffix) for suffix in suffixes if suffix.isdigit())


def _common_arguments(cell: Any, layer: Any, prefix: Any, reverse: Any, where: str) -> tuple[int, str]:
    """Checks the arguments both directions share; returns ``(layer, prefix)``."""
    _check_cell(cell, _TORCH_NAMES, "torch", "torch.nn", where)
    layer = _checks.positive_int(layer, "layer", where, allow_zero=True)
    if not isinstance(prefix, str):
        raise TypeError(
            f"{where}: prefix must be a str such as 'encoder.rnn.'; got {type(prefix).__name__}."
        )
    if not isinstance(reverse, bool):
        raise TypeError(f"{where}: reverse must be a bool; got {reverse!r}. Pass True for the _reverse keys.")
    return layer, prefix


def _check_cell(cell: Any, counterparts: Mapping, framework: str, namespace: str, where: str) -> None:
    """``cell`` must be a :class:`jaxrnn.Cell` named in ``counterparts`` (the cells ``framework`` has)."""
    convertible = ", ".join("jaxrnn." + name for name in _registry.cells() if name in counterparts)
    if not isinstance(cell, Cell):
        raise TypeError(
            f"{where}: cell must be a jaxrnn.Cell with a {framework} counterpart ({convertible}); "
            f"got {type(cell).__name__}. Pass the cell first, e.g. {where.rsplit('.', 1)[1]}(jaxrnn.lstm, ...)."
        )
    if cell.name not in counterparts:
        raise ValueError(
            f"{where}: {cell!r} has no {namespace} counterpart, so there are no {framework} weights to convert; "
            f"the cells that have one are {convertible}."
        )


def _suffix(layer: int, reverse: bool) -> str:
    """The key suffix of a module's layer and direction, e.g. ``_l1_reverse``."""
    return f"_l{layer}" + ("_reverse" if reverse else "")


def _keys(prefix: str, suffix: str) -> tuple[str, ...]:
    """The four keys, in the order of the params' fields."""
    return tuple(f"{prefix}{stem}{suffix}" for stem in _STEMS)


def _torch_name(cell: Cell) -> str:
    """E.g. ``"LSTM"``, for messages; a generic phrase for cells torch lacks."""
    return _TORCH_NAMES.get(cell.name, "RNN/LSTM/GRU")


def _find_keys(cell: Cell, state_dict: Mapping, layer: int, prefix: str, reverse: bool, where: str):
    """The keys to read: module-style (``_l{layer}``, ``_reverse`` if asked), else cell-style for layer 0."""
    candidates = [_keys(prefix, _suffix(layer, reverse))]
    if layer == 0 and not reverse:  # torch's single-step cells have one direction only
        candidates.append(_keys(prefix, ""))
    for keys in candidates:
        if keys[0] in state_dict and keys[1] in state_dict:
            return keys

    name = _torch_name(cell)
    looked_for = f"looked for {list(candidates[0][:2])}"
    if len(candidates) > 1:
        looked_for += f" and, as a torch.nn.{name}Cell names them, {list(candidates[1][:2])}"
    present = [str(key) for key in state_dict]
    shown = present[:_SHOWN_KEYS] + (["..."] if len(present) > _SHOWN_KEYS else [])
    direction = "the reverse direction of " if reverse else ""
    if reverse and prefix + f"weight_ih_l{layer}" in state_dict:
        hint = (
            f"It has the forward direction's {prefix}weight_ih_l{layer} but no _reverse keys: the module is "
            "not bidirectional. Pass reverse=False."
        )
    else:
        hint = _missing_keys_hint(state_dict, candidates, layer, prefix)
    raise ValueError(
        f"{where}: no weights for {direction}layer {layer} of a torch.nn.{name}: {looked_for}; "
        f"the state dict's {len(present)} key(s) are {shown}. " + hint
    )


def _missing_keys_hint(state_dict: Mapping, candidates: list, layer: int, prefix: str) -> str:
    """Guesses the fix for missing keys: one weight lost, another prefix, or another layer."""
    for keys in candidates:
        if (keys[0] in state_dict) != (keys[1] in state_dict):
            have, lack = keys[:2] if keys[0] in state_dict else keys[1::-1]
            return f"It has {have} but not {lack}: the state dict looks incomplete."
    present = [str(key) for key in state_dict]
    stems = [f"weight_ih_l{layer}"] + (["weight_ih"] if layer == 0 else [])
    for stem in stems:
        for key in present:
            if key.endswith(stem) and key != prefix + stem:
                return f"The weights seem to be under another prefix: pass prefix={key[: -len(stem)]!r}."
    layers = _layers_present(state_dict, prefix)
    if layers:
        return f"The state dict has layers {layers}: pass one of those as layer."
    if prefix + "weight_ih" in state_dict:
        return "Cell-style keys (without _l0) hold a single layer: pass layer=0."
    if not present:
        return "The state dict is empty."
    return "Pass the state dict of a torch.nn.RNN, LSTM or GRU (or its Cell), with prefix= for a submodule."


def _to_numpy(value: Any, key: str, where: str) -> np.ndarray:
    """A state dict value as a numpy array of its own dtype, without importing torch."""
    if hasattr(value, "detach"):  # a torch tensor: leave autograd, come to host memory
        try:
            return value.detach().cpu().numpy()
        except TypeError as error:  # e.g. bfloat16, which numpy lacks
            raise TypeError(
                f"{where}: cannot turn {key} into a numpy array ({error}). Cast the module first, "
                f"e.g. module.float() or module.double()."
            ) from None
    return np.asarray(value)


def _check_weight_hh(cell: Cell, w_hh: np.ndarray, key: str, where: str) -> None:
    """weight_hh must be (G·H, H) in torch's layout; a wrong G names the cell it fits.

    Checked here, in torch's terms, because this is the array that tells the
    cell types apart; :func:`jaxrnn._checks.params` checks the rest.
    """
    num_gates = len(cell.gates)
    name = _torch_name(cell)
    if w_hh.ndim == 2 and w_hh.shape[1] > 0 and w_hh.shape[0] == num_gates * w_hh.shape[1]:
        return
    message = (
        f"{where}: {cell!r} has {num_gates} gate(s), so {key} must be ({num_gates}·H, H) as in a "
        f"torch.nn.{name}; got shape {w_hh.shape}."
    )
    if w_hh.ndim == 2 and w_hh.shape[1] > 0 and w_hh.shape[0] % w_hh.shape[1] == 0:
        rows = w_hh.shape[0] // w_hh.shape[1]
        message += f" It has {rows}·H rows where {num_gates}·H are expected"
        if rows in _CELL_OF_GATES:
            other_cell, other_torch = _CELL_OF_GATES[rows]
            message += (
                f", so it looks like the state dict of a torch.nn.{other_torch}: convert it with {other_cell}."
            )
        else:
            message += "."
    raise ValueError(message)
