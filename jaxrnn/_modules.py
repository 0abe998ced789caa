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
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks, _registry
from jaxrnn._options import GradMode, ScanMode, SequenceOptions
from jaxrnn._protocol import Cell, _check_options
from jaxrnn._stack import Stack, make_stack, warn_if_dropout_is_idle


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
        site: the module as its messages name it, e.g.
            ``jaxrnn.nnx.RNN('lstm', 8, 32)``, with fixes in its terms.
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
    site: _checks.Site

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

    def init(self, key, input_size: int):
        """The stack's params, from :meth:`jaxrnn.Stack.init`."""
        return self.stack.init(key, input_size, self.hidden_size, dtype=self.dtype, **self.cell_options)

    def initial_carry(self, batch_size: int):
        """The all-zero state for ``batch_size`` rows, in :meth:`apply`'s carry dtype (float32 for 16-bit params)."""
        return self.stack.initial_carry(batch_size, self.hidden_size, dtype=self.dtype, **self.cell_options)

    def layout(self) -> Layout:
        """How the params' leaves nest (the same for every input size)."""
        return _layout(self.stack, self.hidden_size, self.options)

    def apply(self, params, xs, carry, *, key, train: bool, lengths, resets, reverse):
        """:meth:`jaxrnn.Stack.apply` with this config's options, checked once by :func:`configure`; messages name
        the module."""
        reverse = _checks.python_bool(reverse, "reverse", self.site)  # the one option given per call
        options = SequenceOptions(self.grad, lengths, reverse, self.time_major, resets, self.checkpoint, self.scan)
        return self.stack._apply(params, xs, carry, key, train, options, self.site)

    def check_params(self, params, where: str):
        """Functional params (e.g. from :func:`jaxrnn.interop.stack_from_torch`) checked against this module.

        Returns:
            The params with their arrays as :meth:`jaxrnn.Stack.apply` checks them.

        Raises:
            TypeError, ValueError: params of another structure, or of other
                sizes than this module's.
        """
        checked, sizes = self.stack._check_params(params, where)
        input_size, carry_sizes = sizes[0]
        want = self.input_size if self.input_size is not None else input_size
        made = jax.eval_shape(lambda key: self.init(key, want), jax.random.key(0))
        for got, expected in zip(jax.tree.leaves(checked), jax.tree.leaves(made)):
            if got.shape != expected.shape:
                raise ValueError(
                    f"{where}: the params are for input_size {input_size} and hidden size {carry_sizes[0]}; this "
                    f"module is {self.site}. Make the module with the params' sizes."
                )
        return checked


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
    *,
    dtype_name: str,
) -> Config:
    """Checks a framework module's constructor arguments; errors name ``where`` and the fix.

    ``dtype_name`` is the module's name for the params' dtype (``param_dtype``
    or ``dtype``).
    """
    cell = resolve_cell(cell, where)
    if input_size is not None:
        input_size = _checks.positive_int(input_size, "input_size", where)
    hidden_size = _checks.positive_int(hidden_size, "hidden_size", where)
    dtype = _checks.floating_dtype(dtype, where, dtype_name)
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise TypeError(
            f"{where}: cell_options must be a mapping of the cell's init options, e.g. {{'num_heads': 2}}; "
            f"got {type(options).__name__}."
        )
    for other in ("dtype", "param_dtype"):
        if other != dtype_name and other in options:
            try:
                shown = f"jnp.{jnp.dtype(options[other]).name}"
            except TypeError:
                shown = repr(options[other])
            raise TypeError(
                f"{where}: the params' dtype is the argument {dtype_name} (not {other}), as in "
                f"{'Flax' if dtype_name == 'param_dtype' else 'Equinox'}. Pass {dtype_name}={shown}."
            )
    _check_options(cell.init_params, (None, 1, 1, dtype), dict(options), where)
    checked = SequenceOptions(grad, None, False, time_major, None, checkpoint, scan).checked(where)
    net = make_stack(cell, num_layers, bidirectional, dropout, where)
    if (where, net) not in _WARNED:
        _WARNED.add((where, net))  # once: Linen re-checks its fields whenever it copies a module
        warn_if_dropout_is_idle(net, where, stacklevel=_caller_level() + 1)  # + 1: the helper's frame
    try:
        sorted_options = tuple(sorted(options.items()))
        hash(sorted_options)
    except TypeError:
        raise TypeError(
            f"{where}: cell options must be hashable values (ints, strings), as they pick the computation; "
            f"got {dict(options)!r}."
        ) from None
    return Config(net, input_size, hidden_size, checked.grad, checked.time_major, checked.checkpoint, checked.scan,
                  dtype, sorted_options, _site(where, cell, input_size, hidden_size))


_WARNED: set = set()


def _site(where: str, cell: Cell, input_size: int | None, hidden_size: int) -> _checks.Site:
    """The module as its messages name it, with the fixes in its constructor's terms."""
    sizes = f"{hidden_size}" if input_size is None else f"{input_size}, {hidden_size}"
    if input_size is None:  # Linen reads the input size off the inputs at init
        fix_input_size = "init the module on inputs of {n} features, model.init(key, xs), for params that take them"
    else:
        fix_input_size = f"make the module with {where}(..., input_size={{n}})"
    return _checks.Site(
        f"{where}({cell.name!r}, {sizes})",
        fix_input_size=fix_input_size,
        fix_time_major=f"make the module with {where}(..., time_major=False)",
        fix_carry="make it with model.initial_carry({batch})",
    )


def resolve_cell(cell: Any, where: str) -> Cell:
    """A :class:`jaxrnn.Cell` from itself or its registered name."""
    if isinstance(cell, Cell):
        return cell
    if isinstance(cell, str):
        return _registry.get(cell, where)
    raise TypeError(
        f"{where}: cell must be a registered cell's name, e.g. 'lstm' (see jaxrnn.cells()), or a jaxrnn.Cell "
        f"such as jaxrnn.lstm; got {type(cell).__name__}."
    )


# --------------------------------------------------------------------------
# What the three modules share: each keeps its Config as ``config``.


def _stack(model) -> Stack:
    """The :class:`jaxrnn.Stack` the module's weights are for (``model.config.stack``)."""
    return model.config.stack


stack_property = property(_stack)


def initial_carry(model, batch_size: int):
    """The all-zero state for ``batch_size`` rows, as the module's call takes and returns it.

    A tuple of one carry per layer (even with one layer), e.g.
    ``(LSTMCarry(h, c),)``, each (batch, H); in float32 for 16-bit params, the
    dtype the call keeps the state in.
    """
    return model.config.initial_carry(batch_size)


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
    """The ``stacklevel`` of the first frame outside jaxrnn, the frameworks and generated dataclass ``__init__``s."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and (frame.f_code.co_filename.startswith(_INTERNAL) or _generated_init(frame)):
        frame, level = frame.f_back, level + 1
    return level


def _generated_init(frame: FrameType) -> bool:
    """Whether ``frame`` runs a dataclass's generated ``__init__`` (as Flax Linen modules have)."""
    code = frame.f_code
    return (code.co_filename == "<string>" and code.co_name == "__init__"
            and dataclasses.is_dataclass(frame.f_locals.get("self")))


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
