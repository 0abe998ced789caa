"""The torch side of :mod:`jaxrnn.interop`: state dicts of ``torch.nn.RNN``, ``LSTM`` and ``GRU``.

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
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks
from jaxrnn._gated import GatedCell
from jaxrnn._heads import block_diagonal
from jaxrnn._protocol import Cell
from jaxrnn._stack import Bidirectional, Stack
from jaxrnn.interop._common import _CELL_OF_GATES, _check_cell

# torch key stems, in the order of the params' fields (w_ih, w_hh, b_ih, b_hh).
_STEMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

# The torch layer types of our cells, for messages.
_TORCH_NAMES = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "projected_lstm": "LSTM"}
_PROJECTED = "projected_lstm"  # the cell with torch's fifth key, weight_hr (proj_size > 0)

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

    A ``torch.nn.RNN`` must have used ``nonlinearity='tanh'``; see the limits
    in :mod:`jaxrnn.interop`. For all layers and directions at once use
    :func:`stack_from_torch`.

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

    Every :class:`jaxrnn.GatedCell` converts too, a cell of your own
    included: its weights are G gate blocks of H, in torch's layout once
    transposed.

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
    _check_cell(cell, _TORCH_NAMES, "torch", "torch.nn", where, any_gated=True)
    layer = _checks.positive_int(layer, "layer", where, allow_zero=True)
    if not isinstance(prefix, str):
        raise TypeError(
            f"{where}: prefix must be a str such as 'encoder.rnn.'; got {type(prefix).__name__}."
        )
    if not isinstance(reverse, bool):
        raise TypeError(f"{where}: reverse must be a bool; got {reverse!r}. Pass True for the _reverse keys.")
    return layer, prefix


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
    num_gates = cell.num_gates if isinstance(cell, GatedCell) else len(cell.gates)
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
