"""What the framework modules (:mod:`jaxrnn.nnx`, :mod:`jaxrnn.linen`, :mod:`jaxrnn.eqx`) share.

Each of them wraps one :class:`jaxrnn.Stack`: it checks its constructor's
arguments into a :class:`Config`, keeps the stack's params in its framework's
own containers (one array per leaf, nested by layer, direction and field, e.g.
``layers[0].forward.w_ih``), rebuilds the params NamedTuples from them at call
time with a :class:`Layout`, and runs :meth:`jaxrnn.Stack.apply`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxrnn import _checks, _registry
from jaxrnn._options import GradMode, ScanMode, SequenceOptions
from jaxrnn._protocol import Cell, _check_options
from jaxrnn._stack import Stack, stack


def missing(framework: str, where: str, extra: str) -> ImportError:
    """The error for an optional framework that is not installed: it names the extra that installs it.

    Each framework module imports its framework normally and raises this
    ``from`` the ImportError.
    """
    return ImportError(
        f"{where} needs {framework}, which is not installed. Install it with: pip install \"jaxrnn[{extra}]\""
    )


# --------------------------------------------------------------------------
# Constructor arguments.


@dataclasses.dataclass(frozen=True)
class Config:
    """A framework module's checked settings: hashable, so frameworks keep it as static data.

    Attributes:
        stack: the :class:`jaxrnn.Stack` (cell, num_layers, bidirectional, dropout).
        input_size: X, or None where it is read off the inputs (Linen).
        hidden_size: H.
        grad, time_major, checkpoint, scan: passed to every
            :meth:`jaxrnn.Stack.apply`.
        dtype: the params' dtype.
        options: the cell's init options as sorted ``(name, value)`` pairs.
    """

    stack: Stack
    input_size: int | None
    hidden_size: int
    grad: GradMode
    time_major: bool
    checkpoint: int | None
    scan: ScanMode
    dtype: np.dtype
    options: tuple[tuple[str, Any], ...]

    def __pdoc__(self, **kwargs):
        """For Equinox's pretty-printer: the one-line repr, not every function of the cell."""
        try:
            from wadler_lindig import TextDoc
        except ImportError:
            return None
        return TextDoc(repr(self))

    @property
    def cell_options(self) -> dict[str, Any]:
        """The cell's init options, e.g. ``{"num_heads": 2}``."""
        return dict(self.options)

    @property
    def dropping(self) -> bool:
        """Whether training applies dropout: a rate above 0 and a layer after the first."""
        return self.stack.dropout > 0 and self.stack.num_layers > 1

    def init(self, key, input_size: int):
        """The stack's params, from :meth:`jaxrnn.Stack.init`."""
        return self.stack.init(key, input_size, self.hidden_size, dtype=self.dtype, **self.cell_options)

    def initial_carry(self, batch_size: int):
        """The all-zero state for ``batch_size`` rows, in the params' dtype."""
        return self.stack.initial_carry(batch_size, self.hidden_size, dtype=self.dtype, **self.cell_options)

    def layout(self) -> Layout:
        """How the params' leaves nest (the same for every input size)."""
        return _layout(self.stack, self.hidden_size, self.options)

    def apply(self, params, xs, carry, *, key, train: bool, lengths, resets, reverse):
        """:meth:`jaxrnn.Stack.apply` with this config's options."""
        return self.stack.apply(
            params, xs, carry, key=key, train=train, grad=self.grad, lengths=lengths, time_major=self.time_major,
            resets=resets, checkpoint=self.checkpoint, scan=self.scan, reverse=reverse,
        )


def configure(
    where: str,
    cell: Any,
    input_size: int | None,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
    dropout: float,
    grad: GradMode,
    time_major: bool,
    checkpoint: int | None,
    scan: ScanMode,
    dtype: Any,
    options: Mapping[str, Any] | None,
) -> Config:
    """Checks a framework module's constructor arguments; errors name ``where`` and the fix."""
    cell = resolve_cell(cell, where)
    if input_size is not None:
        input_size = _checks.positive_int(input_size, "input_size", where)
    hidden_size = _checks.positive_int(hidden_size, "hidden_size", where)
    dtype = _checks.floating_dtype(dtype, where)
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise TypeError(
            f"{where}: cell_options must be a mapping of the cell's init options, e.g. {{'num_heads': 2}}; "
            f"got {type(options).__name__}."
        )
    _check_options(cell.init_params, (None, 1, 1, dtype), dict(options), where)
    checked = SequenceOptions(grad, None, False, time_major, None, checkpoint, scan).checked(where)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # re-raised below, naming the module and pointing at the caller
        net = stack(cell, num_layers, bidirectional=bidirectional, dropout=dropout)
    if net.dropout > 0 and net.num_layers == 1 and (where, net) not in _WARNED:
        _WARNED.add((where, net))  # once: Linen re-checks its fields whenever it copies a module
        warnings.warn(
            f"{where}: dropout={net.dropout} has no effect with num_layers=1: it applies between layers, as in "
            "torch. Use num_layers > 1, or dropout=0.",
            UserWarning,
            stacklevel=_caller_level(),
        )
    try:
        sorted_options = tuple(sorted(options.items()))
        hash(sorted_options)
    except TypeError:
        raise TypeError(
            f"{where}: cell options must be hashable values (ints, strings), as they pick the computation; "
            f"got {dict(options)!r}."
        ) from None
    return Config(net, input_size, hidden_size, checked.grad, checked.time_major, checked.checkpoint, checked.scan,
                  dtype, sorted_options)


_WARNED: set = set()


def resolve_cell(cell: Any, where: str) -> Cell:
    """A :class:`jaxrnn.Cell` from itself or its registered name."""
    if isinstance(cell, Cell):
        return cell
    if isinstance(cell, str):
        known = _registry.cells()
        if cell in known:
            return known[cell]
        raise ValueError(
            f"{where}: unknown cell {cell!r}; the registered cells, jaxrnn.cells(), are {list(known)}. "
            "Pass one of these names or a jaxrnn.Cell value (e.g. jaxrnn.lstm); register your own cell with "
            "jaxrnn.register(cell) to use it by name."
        )
    raise TypeError(
        f"{where}: cell must be a registered cell's name, e.g. 'lstm' (see jaxrnn.cells()), or a jaxrnn.Cell "
        f"such as jaxrnn.lstm; got {type(cell).__name__}."
    )


def check_flag(value: Any, name: str, where: str) -> bool:
    """A Python bool that picks the computation (static under jit)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{where}: {name} must be a Python bool (it picks the computation, so it is static under jit); "
            f"got {value!r} of type {type(value).__name__}. Pass True or False."
        )
    return bool(value)


def _package_dirs(names: tuple[str, ...]) -> tuple[str, ...]:
    """The directories (each ending in a separator) of the packages among ``names`` that are installed."""
    dirs = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None:
            dirs.append(os.path.dirname(spec.origin) + os.sep)
    return tuple(dirs)


_INTERNAL = _package_dirs(("jaxrnn", "flax", "equinox"))


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside jaxrnn, the frameworks and generated ``__init__``s."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and (frame.f_code.co_filename.startswith(_INTERNAL)
                                 or frame.f_code.co_filename == "<string>"):
        frame, level = frame.f_back, level + 1
    return level


# --------------------------------------------------------------------------
# The params' layout: nested mappings of leaves, one per layer, and back.


class Layout(NamedTuple):
    """Where each leaf of a stack's params sits.

    Attributes:
        treedef: the params' tree structure (a tuple of layers of NamedTuples).
        paths: one per leaf, in ``treedef``'s order: the layer index, then the
            names leading to the leaf in that layer, e.g. ``(0, "forward", "w_ih")``.
    """

    treedef: Any
    paths: tuple[tuple, ...]

    def nest(self, params) -> list[dict]:
        """The params as one nested dict per layer, e.g. ``{"forward": {"w_ih": ..., ...}, ...}``."""
        layers: list[dict] = [{} for _ in params]
        for path, leaf in zip(self.paths, jax.tree.leaves(params)):
            node = layers[path[0]]
            for name in path[1:-1]:
                node = node.setdefault(name, {})
            node[path[-1]] = leaf
        return layers

    def unnest(self, layers, value: Callable[[Any], Any] = lambda leaf: leaf):
        """The params from per-layer nested mappings (as :meth:`nest` makes), ``value`` applied to each leaf."""
        leaves = []
        for path in self.paths:
            node = layers[path[0]]
            for name in path[1:]:
                node = node[name]
            leaves.append(value(node))
        return jax.tree.unflatten(self.treedef, leaves)


@functools.lru_cache(maxsize=64)
def _layout(net: Stack, hidden_size: int, options: tuple) -> Layout:
    abstract = jax.eval_shape(lambda key: net.init(key, hidden_size, hidden_size, **dict(options)), jax.random.key(0))
    keyed, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    paths = tuple((path[0].idx, *(_name(entry) for entry in path[1:])) for path, _ in keyed)
    return Layout(treedef, paths)


def _name(entry) -> str:
    """A key path entry as a container key: a field name, or a sequence index as a string."""
    for attribute in ("name", "key", "idx"):
        if hasattr(entry, attribute):
            return str(getattr(entry, attribute))
    return str(entry)
