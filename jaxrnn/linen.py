"""Flax Linen: :class:`RNN`, any registered cell as a ``flax.linen.Module``.

Needs Flax (``pip install "jaxrnn[flax]"``)::

    import jaxrnn.linen

    model = jaxrnn.linen.RNN("lstm", 32, num_layers=2)
    variables = model.init(jax.random.key(0), xs)      # xs (T, batch, X): time-major
    carry, hs = model.apply(variables, xs)             # hs (T, batch, 32)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from jax import Array

from jaxrnn import _checks, _modules
from jaxrnn._options import GradMode, ScanMode

try:
    import flax.linen as nn
    from flax.core import FrozenDict
except ImportError as error:
    raise _modules.missing("flax", "jaxrnn.linen", "flax") from error

__all__ = ["RNN"]

_WHERE = "jaxrnn.linen.RNN"


class RNN(nn.Module):
    """A stack of recurrent layers of any registered cell, as a ``flax.linen.Module``.

    It runs :meth:`jaxrnn.Stack.apply` (torch's ``nn.LSTM(num_layers,
    bidirectional, dropout)`` semantics, both gradient modes) on weights kept
    in the ``"params"`` collection, one array per leaf, under ``layer_{k}``
    (and ``forward``/``backward`` if bidirectional), e.g.
    ``variables["params"]["layer_0"]["w_ih"]``. The input size is read off
    ``xs`` at ``init``.

    Inputs are time-major by default, (T, batch, X), jaxrnn's convention;
    Flax's own ``nn.RNN`` is batch-major, so for (batch, T, X) inputs pass
    ``time_major=False``. ``resets`` stays (T, batch) either way.

    Dropout follows ``nn.Dropout``: ``deterministic`` is a field and a call
    argument (one of them must say it where dropout applies, i.e. dropout > 0
    and num_layers > 1), and the masks come from ``self.make_rng("dropout")``,
    so ``deterministic=False`` needs ``rngs={"dropout": key}``.

    Attributes:
        cell: a registered cell's name (see :func:`jaxrnn.cells`), e.g.
            ``"lstm"``, or a :class:`jaxrnn.Cell` such as :data:`jaxrnn.lstm`.
        hidden_size: H, every layer's state size.
        num_layers: L ≥ 1.
        bidirectional: run every layer both ways; layers output 2H features.
        dropout: 0 ≤ p < 1, applied to the outputs of every layer but the
            last when not ``deterministic``.
        grad: ``"manual"`` (the cell's hand-written BPTT) or ``"autodiff"``.
        time_major: True (the default) takes ``xs`` as (T, batch, X); False
            as (batch, T, X), Flax's layout.
        checkpoint, scan: as for :func:`jaxrnn.unroll`.
        param_dtype: the weights' floating dtype (16-bit weights keep the
            carry in float32).
        cell_options: the cell's init options, e.g. ``{"num_heads": 2}`` or
            ``{"proj_size": 16}``; None for none. Kept as a ``FrozenDict``, so
            the module stays hashable.
        deterministic: True applies no dropout, False applies it; None
            leaves it to the call's ``deterministic``.

    Example::

        model = jaxrnn.linen.RNN("gru", 16, num_layers=2, dropout=0.1)
        variables = model.init(jax.random.key(0), xs, deterministic=True)
        optimizer = optax.adam(1e-3)
        state = optimizer.init(variables["params"])

        @jax.jit
        def train_step(params, state, xs, ys, key):
            def loss(params):
                _, hs = model.apply({"params": params}, xs, deterministic=False, rngs={"dropout": key})
                return jnp.mean((hs - ys) ** 2)
            value, grads = jax.value_and_grad(loss)(params)
            updates, state = optimizer.update(grads, state)
            return optax.apply_updates(params, updates), state, value
    """

    cell: Any
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    grad: GradMode = "manual"
    time_major: bool = True
    checkpoint: int | None = None
    scan: ScanMode = "auto"
    param_dtype: Any = jnp.float32
    cell_options: Mapping[str, Any] | None = None
    deterministic: bool | None = None

    def __post_init__(self):
        if isinstance(self.cell_options, Mapping) and not isinstance(self.cell_options, FrozenDict):
            object.__setattr__(self, "cell_options", FrozenDict(self.cell_options))  # hashable, as fields must be
        _ = self.config  # constructor errors at construction, not at init
        super().__post_init__()

    @property
    def config(self) -> _modules.Config:
        """The checked settings; ``config.stack`` (also ``stack``) is the :class:`jaxrnn.Stack`."""
        return _modules.configure(
            _WHERE, self.cell, None, self.hidden_size, self.num_layers, self.bidirectional, self.dropout,
            self.grad, self.time_major, self.checkpoint, self.scan, self.param_dtype, self.cell_options,
            dtype_name="param_dtype",
        )

    stack = _modules.stack_property
    initial_carry = _modules.initial_carry

    def stack_params(self, variables: Mapping[str, Any]):
        """The weights in ``variables`` (or its ``"params"``) as :meth:`jaxrnn.Stack.apply` takes them.

        ``model.stack.apply(model.stack_params(variables), xs, grad=c.grad,
        time_major=c.time_major, checkpoint=c.checkpoint, scan=c.scan)``,
        with ``c = model.config``, is ``model.apply(variables, xs,
        deterministic=True)`` (with the default options, plain
        ``model.stack.apply(model.stack_params(variables), xs)``). Works on
        gradients of the same structure too;
        :meth:`variables_from_stack_params` is the inverse.
        """
        params = variables.get("params", variables)
        layers = [params[f"layer_{k}"] for k in range(self.num_layers)]
        return self.config.layout().unnest(layers)

    def variables_from_stack_params(self, params) -> dict[str, Any]:
        """Functional params as this module's variables: ``{"params": {"layer_0": ..., ...}}``.

        Args:
            params: a tuple of one params NamedTuple per layer, as
                :meth:`jaxrnn.Stack.init` or
                :func:`jaxrnn.interop.stack_from_torch` make them.

        Returns:
            Variables for ``model.apply(variables, xs)``.

        Raises:
            TypeError, ValueError: params of another structure or hidden size.
        """
        config = self.config
        params = config.check_params(params, f"{config.site}.variables_from_stack_params")
        return {"params": {f"layer_{k}": layer for k, layer in enumerate(config.layout().nest(params))}}

    @nn.compact
    def __call__(
        self,
        xs: Array,
        carry: Any = None,
        *,
        lengths: Array | None = None,
        resets: Array | None = None,
        reverse: bool = False,
        deterministic: bool | None = None,
    ):
        """Runs the stack over ``xs``: :meth:`jaxrnn.Stack.apply` on this module's params.

        Args:
            xs: inputs (T, batch, X), or (batch, T, X) with ``time_major=False``.
            carry: the initial state, as from :meth:`initial_carry`; None means zeros.
            lengths: int (batch,), each row's real steps; None means all T.
            resets: bool (T, batch), true where a new segment starts; (T,
                batch) even with ``time_major=False``.
            reverse: run every layer backwards (unidirectional stacks only).
            deterministic: a Python bool, or None for the field's; False
                applies dropout, with masks from the ``"dropout"`` rng
                (``apply(..., rngs={"dropout": key})``). As for
                ``nn.Dropout``, the field or this must be given (not both)
                where dropout applies.

        Returns:
            ``(carry, hs)`` as :meth:`jaxrnn.Stack.apply` returns them: a
            tuple of each layer's final state, and the last layer's outputs
            (T, batch, D·H) (batch-major with ``time_major=False``).

        Raises:
            ValueError: dropout applies and neither the field nor the call
                gives ``deterministic``, or it is False and no ``"dropout"``
                rng was given; ``xs`` not 3-dimensional.
            TypeError, ValueError: whatever :meth:`jaxrnn.Stack.apply` raises
                for the other arguments.
        """
        config = self.config
        where = config.site
        layout_name = "(time, batch, input_size)" if config.time_major else "(batch, time, input_size)"
        input_size = _checks.inputs(xs, 3, layout_name, None, "xs", where).shape[-1]
        layout = config.layout()
        layers = []
        for k in range(self.num_layers):
            def init(key, k=k):
                return layout.nest(config.init(key, input_size))[k]

            layers.append(self.param(f"layer_{k}", init))
        train = False
        if config.stack.applies_dropout:
            if self.deterministic is None and deterministic is None:
                raise ValueError(
                    f"{where}: dropout={config.stack.dropout} applies between layers, so the call must say whether "
                    "to apply it (as flax.linen.Dropout): pass deterministic=True for inference, or "
                    "deterministic=False with rngs={'dropout': key} for training, at the call or as a field."
                )
            deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
            train = not _checks.python_bool(deterministic, "deterministic", where)
        key = None
        if train:
            if not self.has_rng("dropout"):
                raise ValueError(
                    f"{where}: deterministic=False applies dropout={config.stack.dropout}, which needs a 'dropout' "
                    'rng: model.init({"params": k1, "dropout": k2}, xs, deterministic=False) or '
                    'model.apply(variables, xs, deterministic=False, rngs={"dropout": key}); or pass '
                    "deterministic=True for inference."
                )
            key = self.make_rng("dropout")
        return config.apply(
            layout.unnest(layers), xs, carry, key=key, train=train, lengths=lengths, resets=resets, reverse=reverse
        )
