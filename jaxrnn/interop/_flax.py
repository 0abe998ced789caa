"""The Flax side of :mod:`jaxrnn.interop`: the parameters of Flax's recurrent cells, Linen and NNX.

:func:`from_flax` and :func:`to_flax` convert the parameters of one
``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell`` or ``SimpleCell``, Linen or
NNX. Flax keeps a kernel ``(in, H)`` per gate (or one ``(in, G·H)`` for NNX's
fused cells) and one bias per gate where we have two, so :func:`to_flax`
sums ``b_ih + b_hh`` where Flax adds both sides before the gate; outputs are
the same, exactly. Only Flax's default gate and activation functions
(sigmoid, tanh) are representable. Importing this module does not import Flax.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks
from jaxrnn._heads import block_diagonal
from jaxrnn._protocol import Cell
from jaxrnn.interop._common import _CELL_OF_GATES, _check_cell


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
