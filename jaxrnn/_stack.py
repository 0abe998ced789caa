"""Networks composed of unrolls: bidirectional layers and stacks of layers.

Everything here is built on :func:`jaxrnn.unroll`, so both ``grad`` modes,
``lengths``, ``resets``, ``checkpoint`` and ``time_major`` work unchanged,
and the semantics are torch's:

* :func:`bidirectional` runs a cell forward and (with its own params) in
  reverse over each row's real steps, and concatenates the two outputs
  feature-wise, ``[forward, backward]``, like one layer of a
  ``torch.nn.LSTM(..., bidirectional=True)`` on a packed sequence;
* :func:`stack` makes a :class:`Stack`, a value bundling pure functions like a
  cell, for ``torch.nn.LSTM(num_layers=L, bidirectional=..., dropout=p)``:
  layer ``k > 0`` reads layer ``k − 1``'s outputs, with dropout between layers
  while training.

Carries are nested per layer and per direction. torch's ``h_n``/``c_n`` stack
them on one axis, layer-major and direction-minor (index ``layer·D + d`` with
``d = 0`` forward and ``1`` backward); :meth:`Stack.stack_carry` and
:meth:`Stack.unstack_carry` convert between the two.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _checks
from jaxrnn._options import GradMode, ScanMode, SequenceOptions
from jaxrnn._precision import accumulation_dtype
from jaxrnn._protocol import Cell
from jaxrnn._unroll import Plan, check_cell, plan, run


class Bidirectional(NamedTuple):
    """One value per direction: the params or the carry of a bidirectional layer.

    Attributes:
        forward: the forward direction's params or carry.
        backward: the backward (reverse) direction's.
    """

    forward: Any
    backward: Any


def bidirectional(
    cell: Cell,
    params,
    xs: Array,
    carry=None,
    *,
    grad: GradMode = "manual",
    lengths: Array | None = None,
    time_major: bool = True,
    resets: Array | None = None,
    checkpoint: int | None = None,
    scan: ScanMode = "auto",
):
    """Runs ``cell`` over ``xs`` in both directions and concatenates the outputs.

    The forward direction is ``unroll(cell, params.forward, xs, ...)``; the
    backward one is ``unroll(cell, params.backward, xs, ..., reverse=True)``,
    which starts each row at its own last real step (``lengths[b] − 1``), as
    the reverse direction of a torch bidirectional RNN does on a packed
    sequence.

    Args:
        cell: the cell both directions use, e.g. :data:`jaxrnn.lstm`.
        params: :class:`Bidirectional` ``(forward, backward)``, or a plain
            pair, of ``cell``'s params. Both need the same hidden size H.
        xs: inputs (T, batch, input_size), or (batch, T, input_size) with
            ``time_major=False``.
        carry: the initial states, :class:`Bidirectional` or a plain pair of
            ``cell`` carries; None means zeros for both directions.
        grad, lengths, time_major, checkpoint, scan: as for
            :func:`jaxrnn.unroll`, applied to both directions.
        resets: bool (T, batch), or None: true where a new segment starts at
            step t, as for :func:`jaxrnn.unroll`. The forward direction resets
            before step t; the backward direction, which meets segments from
            their end, resets before step t − 1 (each direction to its own
            initial carry). So every segment is processed as if it were a
            sequence of its own, in both directions.

    Returns:
        ``(carry, hs)``, in :func:`jaxrnn.unroll`'s order. ``carry`` is
        :class:`Bidirectional`: the forward state after each row's last real
        step and the backward state after step 0 (torch's ``h_n[0]`` and
        ``h_n[1]``). ``hs`` is (T, batch, 2H) (batch-major with
        ``time_major=False``): features ``[:H]`` are the forward outputs and
        ``[H:]`` the backward ones, torch's order; zeros at padded steps.

    Raises:
        TypeError: ``params`` or ``carry`` not a pair, e.g. a single cell's
            params.
        ValueError: directions of different sizes.
        TypeError, ValueError: whatever :func:`jaxrnn.unroll` raises for the
            other arguments.
    """
    where = "jaxrnn.bidirectional"
    check_cell(cell, where)
    params = _pair(params, "params", f"Bidirectional({cell!r}.init(k1, ...), {cell!r}.init(k2, ...))", cell, where)
    carry = Bidirectional(None, None) if carry is None else _pair(
        carry, "carry", f"Bidirectional(forward=..., backward=...) of {cell!r}.initial_carry(...)", cell, where
    )
    checked = [_checks.params(cell, p, f"{where}, params.{name}") for name, p in zip(params._fields, params)]
    sizes = [(c[1], _shown(c[2])) for c in checked]
    if sizes[0] != sizes[1]:
        raise ValueError(
            f"{where}: both directions need the same (input_size, hidden_size), as in torch; params.forward has "
            f"{sizes[0]} and params.backward {sizes[1]}. Init both with the same sizes."
        )
    options = SequenceOptions(grad, lengths, False, time_major, resets, checkpoint, scan).checked(where)
    _, input_size, carry_sizes = checked[0]
    xs, checked_plan = plan(cell, options, xs, where)
    return _both_directions(cell, Bidirectional(*(c[0] for c in checked)), input_size, carry_sizes, xs, carry, options,
                            checked_plan, where)


def _both_directions(cell: Cell, params: Bidirectional, input_size: int | None, sizes, xs, carry: Bidirectional,
                     options: SequenceOptions, checked: Plan, where: str):
    """:func:`bidirectional` on checked params, options and plan."""
    carry_fwd, hs_fwd = run(cell, params.forward, input_size, sizes, xs, carry.forward, options, checked, where)
    resets = checked.resets
    if resets is not None:
        # "Segment starts at t+1" is "segment ends at t": the reverse scan resets entering t.
        # A flag on the first padding step resets a carry that padding kept at its initial value.
        resets = jnp.concatenate([resets[1:], jnp.zeros_like(resets[:1])])
    backward = options._replace(reverse=True)
    carry_bwd, hs_bwd = run(cell, params.backward, input_size, sizes, xs, carry.backward, backward,
                            checked._replace(resets=resets), where)
    return Bidirectional(carry_fwd, carry_bwd), jnp.concatenate([hs_fwd, hs_bwd], axis=-1)


# --------------------------------------------------------------------------
# Stacks of layers.


def stack(cell: Cell, num_layers: int = 1, *, bidirectional: bool = False, dropout: float = 0.0) -> Stack:
    """A multi-layer network of ``cell``, like ``torch.nn.LSTM(num_layers, bidirectional, dropout)``.

    ``net = jaxrnn.stack(jaxrnn.lstm, 2, bidirectional=True, dropout=0.1)``
    gives a :class:`Stack` with ``net.init``, ``net.initial_carry`` and
    ``net.apply``; see there.

    Args:
        cell: the cell of every layer and direction, e.g. :data:`jaxrnn.lstm`.
        num_layers: L ≥ 1.
        bidirectional: run each layer in both directions (:func:`bidirectional`),
            so every layer outputs 2H features.
        dropout: 0 ≤ p < 1, the probability of zeroing each output of every
            layer except the last, while training. Like torch, it has no
            effect with one layer (and warns).

    Returns:
        A :class:`Stack`: hashable by value and a leafless pytree, so it
        passes through ``jax.jit`` as an argument (static or not) and can
        sit inside an Equinox module.

    Raises:
        TypeError: a non-cell, or arguments of the wrong type.
        ValueError: ``num_layers`` < 1, or ``dropout`` outside [0, 1).
    """
    net = make_stack(cell, num_layers, bidirectional, dropout, "jaxrnn.stack")
    warn_if_dropout_is_idle(net, "jaxrnn.stack", stacklevel=3)
    return net


def make_stack(cell: Cell, num_layers: int, bidirectional: bool, dropout: float, where: str) -> Stack:
    """:func:`stack` without the warning: checks the arguments (errors name ``where``) and makes the value."""
    check_cell(cell, where)
    num_layers = _checks.positive_int(num_layers, "num_layers", where)
    if not isinstance(bidirectional, bool):
        raise TypeError(f"{where}: bidirectional must be a bool; got {bidirectional!r}. Pass True or False.")
    return Stack(cell, num_layers, bidirectional, _rate(dropout, where))


def warn_if_dropout_is_idle(net: Stack, where: str, stacklevel: int) -> None:
    """Warns that a dropout rate has no effect on one layer (it applies between layers)."""
    if net.dropout > 0 and net.num_layers == 1:
        warnings.warn(
            f"{where}: dropout={net.dropout} has no effect with num_layers=1: it applies between layers, "
            "as in torch. Use num_layers > 1, or dropout=0.",
            UserWarning,
            stacklevel=stacklevel,
        )


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Stack:
    """A stack of recurrent layers: a value bundling pure functions, made by :func:`stack`.

    With L layers, D directions (2 if ``bidirectional``, else 1) and hidden
    size H, layer 0 reads the inputs and layer ``k > 0`` the D·H outputs of
    layer ``k − 1``. The structures are nested per layer:

    * params: a tuple of L entries, each the cell's params, or
      :class:`Bidirectional` ``(forward, backward)`` of them;
    * carry: a tuple of L entries, each the cell's carry (``h`` or
      :class:`jaxrnn.LSTMCarry`), or :class:`Bidirectional` of them. Entry
      ``[k].forward``/``[k].backward`` is torch's ``h_n[k·D + d]``;
      :meth:`stack_carry` builds exactly that array.

    Attributes:
        cell: the cell of every layer and direction.
        num_layers: L.
        bidirectional: whether each layer runs in both directions.
        dropout: the rate applied to the outputs of every layer but the last
            when ``apply(..., train=True)``.
    """

    cell: Cell
    num_layers: int
    bidirectional: bool
    dropout: float

    def __repr__(self) -> str:
        return (
            f"jaxrnn.stack({self.cell!r}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, dropout={self.dropout})"
        )

    @property
    def num_directions(self) -> int:
        """D: 2 if bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def applies_dropout(self) -> bool:
        """Whether ``apply(..., train=True)`` drops anything: a rate above 0 and a layer after the first."""
        return self.dropout > 0 and self.num_layers > 1

    def init(self, key: Array, input_size: int, hidden_size: int, *, dtype=jnp.float32, **options):
        """Makes each layer's params with ``cell.init``, each from its own key.

        Args:
            key: a PRNG key.
            input_size: features of the inputs, X > 0 (layer 0's input size).
            hidden_size: H > 0, every layer's and direction's state size.
            dtype: a floating dtype for every array.
            **options: the cell's own init options (e.g. ``proj_size`` of
                :data:`jaxrnn.projected_lstm`), for every layer.

        Returns:
            A tuple of L params (:class:`Bidirectional` pairs if
            bidirectional). Layer 0 reads X features, the others D times the
            cell's output size (D·H, or D·P for a projected LSTM).
        """
        where = f"{self!r}.init"
        _checks.prng_key(key, where, "net.init(jax.random.key(0), input_size, hidden_size)")
        input_size = _checks.positive_int(input_size, "input_size", where)
        hidden_size = _checks.positive_int(hidden_size, "hidden_size", where)
        keys = jax.random.split(key, (self.num_layers, self.num_directions))
        output_size = self.cell.sizes(hidden_size, **options)[0]
        layers = []
        for k in range(self.num_layers):
            size = input_size if k == 0 else self.num_directions * output_size
            made = [self.cell.init(keys[k, d], size, hidden_size, dtype=dtype, **options)
                    for d in range(self.num_directions)]
            layers.append(Bidirectional(*made) if self.bidirectional else made[0])
        return tuple(layers)

    def initial_carry(self, batch_size: int, hidden_size: int, *, dtype=jnp.float32, **options):
        """The all-zero state: a tuple of L cell carries (:class:`Bidirectional` pairs if bidirectional).

        ``dtype`` is the params' dtype; the state is kept in at least float32
        (16-bit params give a float32 carry), as :meth:`apply` returns it, so
        the carry has one dtype across calls (e.g. through ``lax.scan``).
        """
        dtype = _checks.floating_dtype(dtype, f"{self!r}.initial_carry")
        zeros = self.cell.initial_carry(batch_size, hidden_size, dtype=accumulation_dtype(dtype), **options)
        layer = Bidirectional(zeros, zeros) if self.bidirectional else zeros
        return (layer,) * self.num_layers

    def apply(
        self,
        params,
        xs: Array,
        carry=None,
        *,
        key: Array | None = None,
        train: bool = False,
        grad: GradMode = "manual",
        lengths: Array | None = None,
        time_major: bool = True,
        resets: Array | None = None,
        checkpoint: int | None = None,
        scan: ScanMode = "auto",
        reverse: bool = False,
    ):
        """Runs the layers in turn over ``xs``.

        Args:
            params: from :meth:`init`, or :func:`jaxrnn.interop.stack_from_torch`.
            xs: inputs (T, batch, X), or (batch, T, X) with ``time_major=False``.
            carry: the initial state, as from :meth:`initial_carry` (or
                :meth:`unstack_carry` of torch's ``h_0``); None means zeros.
            key: a PRNG key for dropout, needed when ``train`` and
                :attr:`applies_dropout`; ignored otherwise. A given key gives the same masks every time.
            train: a Python bool. True applies dropout to the outputs of every
                layer but the last: each entry is zeroed with probability p and
                the others are scaled by 1/(1 − p), independently per step, row
                and feature (torch's ``F.dropout`` on the whole output). False
                (inference) applies none.
            grad, lengths, time_major, resets, checkpoint, scan: as for
                :func:`jaxrnn.unroll` (and :func:`bidirectional`), applied to
                every layer.
            reverse: a Python bool, for unidirectional stacks only. True runs
                every layer in reverse, as ``unroll(..., reverse=True)``: each
                row from its last real step back to step 0, with each layer's
                outputs kept at their time positions, so layer ``k > 0`` reads
                layer ``k − 1``'s outputs where they were made. The final
                carries are then the states after step 0. A bidirectional
                stack already runs both ways and takes only False.

        Returns:
            ``(carry, hs)``: the final state of every layer and direction, in
            the structure of ``carry`` (each layer's state before dropout, as
            torch's ``h_n``), and the last layer's outputs (T, batch, D·H)
            (batch-major with ``time_major=False``), zeros at padded steps.

        Raises:
            TypeError, ValueError: params or carry of the wrong structure or
                shapes (naming the layer and direction), ``train`` not a bool,
                a missing or malformed ``key``, ``reverse=True`` on a
                bidirectional stack; and whatever :func:`jaxrnn.unroll` raises
                for the other arguments.
        """
        where = f"{self!r}.apply"
        options = SequenceOptions(grad, lengths, reverse, time_major, resets, checkpoint, scan).checked(where)
        return self._apply(params, xs, carry, key, train, options, where)

    def _apply(self, params, xs: Array, carry, key: Array | None, train: bool, options: SequenceOptions, where: str):
        """:meth:`apply` on checked options, with messages from ``where``.

        A :class:`jaxrnn._checks.Site` phrases a module's fixes. Everything
        else is checked here, once, and passed down to every layer and direction.
        """
        if options.reverse and self.bidirectional:
            raise ValueError(
                f"{where}: reverse=True runs a unidirectional stack backwards; this stack is bidirectional, so "
                "every layer already runs both ways and reversing it would only swap the two directions. "
                "Pass reverse=False, or make the net with bidirectional=False to run it in reverse."
            )
        params, sizes = self._check_params(params, where)
        carry = (None,) * self.num_layers if carry is None else self._check_carry(carry, where)
        train = _checks.python_bool(train, "train", where)
        keys = None  # one dropout key per layer input after the first; None when there is no dropout
        if train and self.applies_dropout:
            if key is None:
                raise ValueError(
                    f"{where}: train=True with dropout={self.dropout} needs a PRNG key for the dropout masks. "
                    "Pass key=jax.random.key(seed) (a fresh one per step), or train=False for inference."
                )
            _checks.prng_key(key, where, "key=jax.random.key(seed)")
            keys = jax.random.split(key, self.num_layers - 1)

        hs, checked = plan(self.cell, options, xs, where)
        finals = []
        for k in range(self.num_layers):
            if k > 0 and keys is not None:
                hs = _dropout(keys[k - 1], hs, self.dropout)
            input_size: int | None = sizes[k][0]
            carry_sizes = sizes[k][1]
            if k > 0:
                input_size = None  # the lower layer's outputs, whose width _check_params matched
            layer_carry = carry[k]
            if self.bidirectional:
                if layer_carry is None:
                    layer_carry = Bidirectional(None, None)
                final, hs = _both_directions(self.cell, params[k], input_size, carry_sizes, hs, layer_carry, options,
                                             checked, where)
            else:
                final, hs = run(self.cell, params[k], input_size, carry_sizes, hs, layer_carry, options, checked, where)
            finals.append(final)
        return tuple(finals), hs

    def stack_carry(self, carry):
        """A nested carry as torch's ``h_n`` (and ``c_n``): one (L·D, batch, H) array per part.

        Entry ``k·D + d`` is layer k's direction d (0 forward, 1 backward).
        For the LSTM it returns ``LSTMCarry(h_n, c_n)``, which unpacks like
        torch's ``(h_n, c_n)``; for the other built-in cells the array ``h_n``.
        """
        carry = self._check_carry(carry, f"{self!r}.stack_carry")
        flat = [c for layer in carry for c in (layer if self.bidirectional else (layer,))]
        return jax.tree.map(lambda *parts: jnp.stack(parts), *flat)

    def unstack_carry(self, stacked):
        """The inverse of :meth:`stack_carry`: torch's ``h_0`` (or ``(h_0, c_0)``) as a nested carry.

        Args:
            stacked: (L·D, batch, H) arrays in torch's layout, one per part of
                the cell's carry: ``h_0`` alone, or ``(h_0, c_0)`` for the LSTM.

        Returns:
            A tuple of L carries (:class:`Bidirectional` pairs if
            bidirectional), for :meth:`apply`.
        """
        where = f"{self!r}.unstack_carry"
        carry_type = self.cell.carry_type
        if carry_type is not None:
            names = carry_type._fields
            if not isinstance(stacked, (tuple, list)) or len(stacked) != len(names):
                raise TypeError(
                    f"{where}: {self.cell!r} carries ({', '.join(names)}), so pass a tuple of "
                    f"{len(names)} stacked arrays, like torch's (h_0, c_0); got {type(stacked).__name__}."
                )
            stacked = carry_type(*stacked)
        elif isinstance(stacked, (tuple, list)):
            raise TypeError(
                f"{where}: {self.cell!r} carries one array h, so pass torch's h_0 alone; "
                f"got a {type(stacked).__name__} of {len(stacked)}."
            )
        count = self.num_layers * self.num_directions
        stacked = jax.tree.map(jnp.asarray, stacked)
        for leaf in jax.tree.leaves(stacked):
            if leaf.ndim != 3 or leaf.shape[0] != count:
                raise ValueError(
                    f"{where}: each stacked array must be (num_layers·num_directions, batch, hidden) = "
                    f"({self.num_layers}·{self.num_directions}, batch, hidden), as torch's h_0; got {leaf.shape}."
                )
        parts = [jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(count)]
        if self.bidirectional:
            return tuple(Bidirectional(*parts[2 * k : 2 * k + 2]) for k in range(self.num_layers))
        return tuple(parts)

    # ----------------------------------------------------------------------
    # Structure checks; shapes and dtypes are left to jaxrnn._checks.

    def _layers(self, value, name: str, fix: str, where: str) -> tuple:
        """``value`` as a tuple of L per-layer entries (each a Bidirectional pair if bidirectional)."""
        cell = self.cell
        if type(value) not in (tuple, list):
            if isinstance(value, Mapping) and name == "params":
                hint = " It looks like a state dict: convert it with jaxrnn.interop.stack_from_torch(net, state_dict)."
            elif isinstance(value, (cell.params_type, Bidirectional)) or (
                cell.carry_type is not None and isinstance(value, cell.carry_type)
            ) or hasattr(value, "shape"):
                hint = f" It looks like a single layer's {name}, or arrays stacked over layers."
            else:
                hint = ""
            raise TypeError(
                f"{where}: {name} must be a tuple of one entry per layer ({self.num_layers}); got "
                f"{type(value).__name__}.{hint} {fix}"
            )
        if len(value) != self.num_layers:
            raise ValueError(
                f"{where}: {name} must have one entry per layer, {self.num_layers}; got {len(value)}. "
                f"{fix}, or make the net with jaxrnn.stack({cell!r}, num_layers={len(value)}, ...)."
            )
        if not self.bidirectional:
            for k, layer in enumerate(value):
                if isinstance(layer, Bidirectional):
                    raise TypeError(
                        f"{where}: {name}[{k}] is Bidirectional, but the net is unidirectional. Make the net "
                        f"with jaxrnn.stack({cell!r}, {self.num_layers}, bidirectional=True)."
                    )
            return tuple(value)
        return tuple(_pair(layer, f"{name}[{k}]", fix, cell, where) for k, layer in enumerate(value))

    def _check_params(self, params, where: str) -> tuple[tuple, list[tuple[int, tuple[int, ...]]]]:
        """Checks every layer's params and that layer k > 0 reads D·H features.

        Returns:
            ``(params, sizes)``: the checked params, and ``(input_size, carry
            sizes)`` of each layer.
        """
        layers = self._layers(params, "params", "Make them with net.init(key, input_size, hidden_size)", where)
        checked, layer_sizes, carry_sizes = [], [], None
        for k, layer in enumerate(layers):
            directions = layer if self.bidirectional else (layer,)
            out = []
            for d, p in enumerate(directions):
                label = f"{where}, params[{k}]" + (f".{Bidirectional._fields[d]}" if self.bidirectional else "")
                p, input_size, sizes = _checks.params(self.cell, p, label)
                if carry_sizes is None:
                    carry_sizes = sizes
                if sizes != carry_sizes:
                    raise ValueError(
                        f"{label}: every layer and direction needs the same hidden size, as in torch; "
                        f"params[0] has {_shown(carry_sizes)}, this one {_shown(sizes)}. "
                        "Make them with net.init(key, input_size, hidden_size)."
                    )
                hidden = sizes[0]  # the output size, which the next layer reads
                if k > 0 and input_size != self.num_directions * hidden:
                    raise ValueError(
                        f"{label}: layer {k} reads layer {k - 1}'s outputs, {self.num_directions}·H = "
                        f"{self.num_directions * hidden} features, so its w_ih must be "
                        f"({self.num_directions * hidden}, ...); got input_size {input_size}. "
                        + (
                            "These look like a unidirectional net's params: make the net with bidirectional=False."
                            if self.bidirectional and input_size == hidden
                            else "These look like a bidirectional net's params: make the net with bidirectional=True."
                            if not self.bidirectional and input_size == 2 * hidden
                            else "Make them with net.init(key, input_size, hidden_size)."
                        )
                    )
                out.append(p)
            checked.append(Bidirectional(*out) if self.bidirectional else out[0])
            layer_sizes.append((input_size, sizes))
        return tuple(checked), layer_sizes

    def _check_carry(self, carry, where: str) -> tuple:
        make = _checks.fix(where, "fix_carry", cell="net", batch="batch_size", hidden="hidden_size")
        fix = f"{make[0].upper()}{make[1:]}, or from torch's h_0 with net.unstack_carry"
        return self._layers(carry, "carry", fix, where)


# --------------------------------------------------------------------------
# Helpers.


def _shown(sizes: tuple[int, ...]):
    """Carry sizes for a message: one number when every field has it."""
    return sizes[0] if len(set(sizes)) == 1 else sizes


def _pair(value: Any, name: str, fix: str, cell: Cell, where: str) -> Bidirectional:
    """``value`` as :class:`Bidirectional`: it must be one, or a plain tuple/list of two.

    Other NamedTuples are refused, since a cell's own params or carry (e.g.
    ``LSTMCarry(h, c)``) can also have two fields.
    """
    if isinstance(value, Bidirectional):
        return value
    if type(value) in (tuple, list) and len(value) == 2:
        return Bidirectional(*value)
    if type(value) in (tuple, list):
        got = f"a {type(value).__name__} of {len(value)}"
    elif hasattr(value, "shape"):
        got = f"an array of shape {value.shape}"
    else:
        got = type(value).__name__
    raise TypeError(
        f"{where}: {name} of a bidirectional layer must be a pair, Bidirectional(forward, backward), one per "
        f"direction; got {got}. {fix}."
    )


def _rate(value: Any, where: str) -> float:
    """A dropout probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: dropout must be a float in [0, 1); got {value!r} of type {type(value).__name__}.")
    rate = float(value)
    if not (math.isfinite(rate) and 0 <= rate < 1):
        raise ValueError(
            f"{where}: dropout must be a probability in [0, 1); got {value!r}. Pass e.g. dropout=0.1, or 0 for none."
        )
    return rate


def _dropout(key: Array, x: Array, rate: float) -> Array:
    """Inverted dropout: zero with probability ``rate``, scale the rest by 1/(1 − rate)."""
    keep = jax.random.bernoulli(key, 1 - rate, x.shape)
    return jnp.where(keep, x / (1 - rate), 0)
