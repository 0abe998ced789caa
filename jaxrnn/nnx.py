"""Flax NNX: :class:`RNN`, any registered cell as an ``nnx.Module``.

Needs Flax (``pip install "jaxrnn[flax]"``)::

    from flax import nnx
    import jaxrnn.nnx

    model = jaxrnn.nnx.RNN("lstm", 8, 32, num_layers=2, dropout=0.1, rngs=nnx.Rngs(0))
    carry, hs = model(xs)                # xs (T, batch, 8) -> hs (T, batch, 32): time-major
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax import Array

from jaxrnn import _checks, _modules
from jaxrnn._options import GradMode, ScanMode

try:
    from flax import nnx
except ImportError as error:
    raise _modules.missing("flax", "jaxrnn.nnx", "flax") from error

__all__ = ["RNN"]

_WHERE = "jaxrnn.nnx.RNN"


class RNN(nnx.Module):
    """A stack of recurrent layers of any registered cell, as an ``nnx.Module``.

    It holds the weights of a :func:`jaxrnn.stack` as ``nnx.Param``\\ s, one
    per array, under ``layers[k]`` (and ``.forward``/``.backward`` if
    bidirectional), e.g. ``model.layers[0].w_ih``, and runs
    :meth:`jaxrnn.Stack.apply`, with its semantics (torch's
    ``nn.LSTM(num_layers, bidirectional, dropout)``) and both gradient modes.
    It trains with ``nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)``
    under ``nnx.jit``, and splits and merges like any NNX module.

    Inputs are time-major by default, (T, batch, X), jaxrnn's convention;
    Flax's own ``nn.RNN`` is batch-major, so for (batch, T, X) inputs pass
    ``time_major=False``. ``resets`` stays (T, batch) either way. The params'
    dtype is ``param_dtype``, as in Flax.

    Dropout (between layers) follows ``nnx.Dropout``: the attribute
    ``deterministic`` starts False (training) and ``model.eval()`` /
    ``model.train()`` switch it; masks come from the ``'dropout'`` stream of
    the construction ``rngs`` (or ``'default'``), or of the call's ``rngs``.

    Args:
        cell: a registered cell's name (see :func:`jaxrnn.cells`), e.g.
            ``"lstm"``, or a :class:`jaxrnn.Cell` such as :data:`jaxrnn.lstm`.
        input_size: X, the features per step of the inputs.
        hidden_size: H, every layer's state size.
        rngs: an ``nnx.Rngs``; its ``'params'`` stream (or ``'default'``)
            makes the weights, its ``'dropout'`` stream (or ``'default'``)
            the dropout masks.
        num_layers: L ≥ 1.
        bidirectional: run every layer both ways; layers output 2H features.
        dropout: 0 ≤ p < 1, applied to the outputs of every layer but the
            last while training.
        grad: ``"manual"`` (the cell's hand-written BPTT) or ``"autodiff"``.
        time_major: True (the default) takes ``xs`` as (T, batch, X); False
            as (batch, T, X), Flax's layout.
        checkpoint, scan: as for :func:`jaxrnn.unroll`.
        param_dtype: the weights' floating dtype (16-bit weights keep the
            carry in float32).
        **cell_options: the cell's init options, e.g. ``num_heads=2`` or
            ``proj_size=16`` (:data:`jaxrnn.projected_lstm`).

    Attributes:
        layers: ``nnx.List`` of one ``nnx.Dict`` of ``nnx.Param`` per layer.
        config: the checked settings; ``config.stack`` (also ``stack``) is
            the :class:`jaxrnn.Stack` that :meth:`stack_params` feed.
        deterministic: True disables dropout (``model.eval()``).
        rngs: the ``nnx.RngStream`` of the dropout masks, or None.

    Example::

        model = jaxrnn.nnx.RNN("gru", 4, 16, num_layers=2, rngs=nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

        @nnx.jit
        def train_step(model, optimizer, xs, ys):
            def loss(model):
                _, hs = model(xs)              # (T, batch, 16)
                return jnp.mean((hs - ys) ** 2)
            value, grads = nnx.value_and_grad(loss)(model)
            optimizer.update(model, grads)
            return value
    """

    def __init__(
        self,
        cell: Any,
        input_size: int,
        hidden_size: int,
        *,
        rngs: Any,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        grad: GradMode = "manual",
        time_major: bool = True,
        checkpoint: int | None = None,
        scan: ScanMode = "auto",
        param_dtype: Any = jnp.float32,
        **cell_options: Any,
    ):
        config = _modules.configure(
            _WHERE, cell, input_size, hidden_size, num_layers, bidirectional, dropout, grad, time_major,
            checkpoint, scan, param_dtype, cell_options, dtype_name="param_dtype",
        )
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{_WHERE}: rngs must be an nnx.Rngs; got {type(rngs).__name__}. Pass rngs=nnx.Rngs(0).")
        try:
            key = rngs.params()
        except (KeyError, AttributeError):
            raise ValueError(
                f"{_WHERE}: rngs has neither a 'params' nor a 'default' stream to make the weights with. "
                "Pass rngs=nnx.Rngs(0), or nnx.Rngs(params=0, dropout=1)."
            ) from None
        self.config = config
        params = config.init(key, input_size)
        self.layers = nnx.List([_containers(layer) for layer in config.layout().nest(params)])
        self.deterministic = False
        stream = None
        if config.stack.applies_dropout:
            try:
                stream = rngs["dropout"].fork()
            except KeyError:  # no 'dropout' or 'default' stream: the call must bring one
                stream = None
        self.rngs = nnx.data(stream)

    stack = _modules.stack_property
    initial_carry = _modules.initial_carry

    def stack_params(self):
        """The weights as :meth:`jaxrnn.Stack.apply` takes them: a tuple of one params NamedTuple per layer.

        ``model.stack.apply(model.stack_params(), xs, grad=c.grad,
        time_major=c.time_major, checkpoint=c.checkpoint, scan=c.scan)``, with
        ``c = model.config``, is ``model(xs)`` in eval mode (with the default
        options, plain ``model.stack.apply(model.stack_params(), xs)``);
        :func:`jaxrnn.interop.stack_to_torch` takes them too, and
        :meth:`load_stack_params` takes them back.
        """
        return self.config.layout().unnest(self.layers, lambda param: param[...])

    def load_stack_params(self, params) -> None:
        """Replaces the weights, in place, with functional params of the same sizes.

        Args:
            params: a tuple of one params NamedTuple per layer, as
                :meth:`jaxrnn.Stack.init` or
                :func:`jaxrnn.interop.stack_from_torch` make them.

        Raises:
            TypeError, ValueError: params of another structure or other sizes.
        """
        params = self.config.check_params(params, f"{self.config.site}.load_stack_params")
        for layer, values in zip(self.layers, self.config.layout().nest(params)):
            _assign(layer, values)

    def set_view(self, deterministic: bool | None = None):
        """Used by ``nnx.view(model, deterministic=...)``, as for ``nnx.Dropout``."""
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(
        self,
        xs: Array,
        carry: Any = None,
        *,
        lengths: Array | None = None,
        resets: Array | None = None,
        reverse: bool = False,
        deterministic: bool | None = None,
        rngs: Any = None,
    ):
        """Runs the stack over ``xs``: :meth:`jaxrnn.Stack.apply` on these weights.

        Args:
            xs: inputs (T, batch, X), or (batch, T, X) with ``time_major=False``.
            carry: the initial state, as from :meth:`initial_carry`; None means zeros.
            lengths: int (batch,), each row's real steps; None means all T.
            resets: bool (T, batch), true where a new segment starts; (T,
                batch) even with ``time_major=False``.
            reverse: run every layer backwards (unidirectional stacks only).
            deterministic: overrides the attribute for this call; True
                applies no dropout.
            rngs: an ``nnx.Rngs`` (its ``'dropout'`` stream), an
                ``nnx.RngStream`` or a PRNG key, for this call's dropout
                masks instead of the construction stream.

        Returns:
            ``(carry, hs)`` as :meth:`jaxrnn.Stack.apply` returns them: a
            tuple of each layer's final state, and the last layer's outputs
            (T, batch, D·H) (batch-major with ``time_major=False``).

        Raises:
            ValueError: dropout is on and no dropout rngs was given.
            TypeError, ValueError: whatever :meth:`jaxrnn.Stack.apply` raises
                for the other arguments.
        """
        deterministic = _checks.python_bool(
            self.deterministic if deterministic is None else deterministic, "deterministic", self.config.site
        )
        train = self.config.stack.applies_dropout and not deterministic
        key = _dropout_key(rngs if rngs is not None else self.rngs) if train else None
        return self.config.apply(
            self.stack_params(), xs, carry, key=key, train=train, lengths=lengths, resets=resets, reverse=reverse
        )


def _containers(tree):
    """Nested dicts of arrays as ``nnx.Dict``\\ s of ``nnx.Param``\\ s."""
    if isinstance(tree, dict):
        return nnx.Dict({name: _containers(value) for name, value in tree.items()})
    return nnx.Param(tree)


def _assign(node, values) -> None:
    """Sets the ``nnx.Param``\\ s under ``node`` to the arrays of the nested dict ``values``."""
    for name, value in values.items():
        if isinstance(value, dict):
            _assign(node[name], value)
        else:
            node[name][...] = value


def _dropout_key(source) -> Array:
    """A key for the dropout masks, from an ``nnx.Rngs``, an ``nnx.RngStream`` or a key itself."""
    fix = (
        "Give the model a dropout stream, RNN(..., rngs=nnx.Rngs(0)) or nnx.Rngs(params=0, dropout=1); pass "
        "rngs=nnx.Rngs(dropout=seed) to the call; or switch dropout off with model.eval() or deterministic=True."
    )
    if source is None:
        raise ValueError(f"{_WHERE}: dropout is on (deterministic=False), but no rngs for its masks was given. {fix}")
    if isinstance(source, nnx.Rngs):
        try:
            return source["dropout"]()
        except KeyError:
            raise ValueError(
                f"{_WHERE}: the call's rngs has neither a 'dropout' nor a 'default' stream. {fix}"
            ) from None
    if isinstance(source, nnx.RngStream):
        return source()
    return source  # a key; Stack.apply checks it
