"""Equinox: :class:`RNN`, any registered cell as an ``equinox.Module``.

Needs Equinox (``pip install "jaxrnn[equinox]"``)::

    import jaxrnn.eqx

    model = jaxrnn.eqx.RNN("lstm", 8, 32, num_layers=2, key=jax.random.key(0))
    carry, hs = model(xs)                # xs (T, batch, 8) -> hs (T, batch, 32): time-major
    carry, hs = model(xs[:, 0])          # one sequence (T, 8) -> hs (T, 32)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _checks, _modules
from jaxrnn._options import GradMode, ScanMode

try:
    import equinox as eqx
except ImportError as error:
    raise _modules.missing("equinox", "jaxrnn.eqx", "equinox") from error

__all__ = ["RNN"]

_WHERE = "jaxrnn.eqx.RNN"


class RNN(eqx.Module):
    """A stack of recurrent layers of any registered cell, as an ``equinox.Module``.

    Its field ``params`` holds the weights of a :func:`jaxrnn.stack` exactly
    as :meth:`jaxrnn.Stack.apply` takes them (a tuple of one params
    NamedTuple per layer, :class:`jaxrnn.Bidirectional` pairs if
    bidirectional), so ``eqx.filter_grad`` differentiates them and optax
    updates them like any Equinox weights. Calling it runs
    :meth:`jaxrnn.Stack.apply` (torch's ``nn.LSTM(num_layers, bidirectional,
    dropout)`` semantics, both gradient modes).

    It takes a batch, as :func:`jaxrnn.unroll` does, or one unbatched
    sequence (T, X), Equinox's per-example convention, so
    ``jax.vmap(model)`` maps it over a batch. Dropout follows
    ``eqx.nn.Dropout``: it needs ``key`` unless ``inference`` is true, and
    ``eqx.nn.inference_mode(model)`` switches it off. Transform it with
    ``eqx.filter_jit`` (or ``eqx.partition`` around ``jax.jit``): the flag
    ``inference`` must stay a Python bool.

    Batched inputs are time-major by default, (T, batch, X), jaxrnn's
    convention; for (batch, T, X) pass ``time_major=False``. ``resets`` stays
    (T, batch) either way. Functional params (e.g. from
    :func:`jaxrnn.interop.stack_from_torch`) go in with
    ``eqx.tree_at(lambda m: m.params, model, params)``.

    Args:
        cell: a registered cell's name (see :func:`jaxrnn.cells`), e.g.
            ``"lstm"``, or a :class:`jaxrnn.Cell` such as :data:`jaxrnn.lstm`.
        input_size: X, the features per step of the inputs.
        hidden_size: H, every layer's state size.
        key: a PRNG key for the weights.
        num_layers: L ≥ 1.
        bidirectional: run every layer both ways; layers output 2H features.
        dropout: 0 ≤ p < 1, applied to the outputs of every layer but the
            last while training.
        grad: ``"manual"`` (the cell's hand-written BPTT) or ``"autodiff"``.
        time_major: True (the default) takes batched ``xs`` as (T, batch,
            X); False as (batch, T, X). An unbatched (T, X) sequence is the
            same either way.
        checkpoint, scan: as for :func:`jaxrnn.unroll`.
        dtype: the weights' floating dtype (16-bit weights keep the carry in
            float32).
        **cell_options: the cell's init options, e.g. ``num_heads=2`` or
            ``proj_size=16`` (:data:`jaxrnn.projected_lstm`).

    Attributes:
        params: the stack's params.
        config: the checked settings (static); ``config.stack`` (also
            ``stack``) is the :class:`jaxrnn.Stack`.
        inference: True disables dropout unless a call says otherwise;
            False at construction.

    Example::

        model = jaxrnn.eqx.RNN("gru", 4, 16, num_layers=2, dropout=0.1, key=jax.random.key(0))
        optimizer = optax.adam(1e-3)
        state = optimizer.init(eqx.filter(model, eqx.is_array))

        @eqx.filter_jit
        def train_step(model, state, xs, ys, key):
            def loss(model):
                _, hs = model(xs, key=key)     # (T, batch, 16)
                return jnp.mean((hs - ys) ** 2)
            value, grads = eqx.filter_value_and_grad(loss)(model)
            updates, state = optimizer.update(grads, state)
            return eqx.apply_updates(model, updates), state, value
    """

    params: tuple
    config: _modules.Config = eqx.field(static=True)
    inference: bool

    def __init__(
        self,
        cell: Any,
        input_size: int,
        hidden_size: int,
        *,
        key: Array,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        grad: GradMode = "manual",
        time_major: bool = True,
        checkpoint: int | None = None,
        scan: ScanMode = "auto",
        dtype: Any = jnp.float32,
        **cell_options: Any,
    ):
        self.config = _modules.configure(
            _WHERE, cell, input_size, hidden_size, num_layers, bidirectional, dropout, grad, time_major,
            checkpoint, scan, dtype, cell_options, dtype_name="dtype",
        )
        self.params = self.config.init(key, input_size)
        self.inference = False

    stack = _modules.stack_property

    def stack_params(self):
        """The weights as :meth:`jaxrnn.Stack.apply` takes them: ``params`` itself.

        ``eqx.tree_at(lambda m: m.params, model, params)`` puts functional
        params (of the same sizes) back.
        """
        return self.params

    def initial_carry(self, batch_size: int | None = None):
        """The all-zero state for ``batch_size`` rows; None: for one unbatched sequence (no batch axis).

        A tuple of one carry per layer (even with one layer), e.g.
        ``(LSTMCarry(h, c),)``; in float32 for 16-bit params, the dtype the
        call keeps the state in.
        """
        if batch_size is None:
            return jax.tree.map(lambda a: a[0], _modules.initial_carry(self, 1))
        return _modules.initial_carry(self, batch_size)

    def __call__(
        self,
        xs: Array,
        carry: Any = None,
        *,
        lengths: Array | None = None,
        resets: Array | None = None,
        reverse: bool = False,
        key: Array | None = None,
        inference: bool | None = None,
    ):
        """Runs the stack over ``xs``: :meth:`jaxrnn.Stack.apply` on ``params``.

        Args:
            xs: a batch (T, batch, X), or (batch, T, X) with
                ``time_major=False``; or one sequence (T, X).
            carry: the initial state, as from :meth:`initial_carry` (without
                the batch axis for one sequence); None means zeros.
            lengths: int (batch,), each row's real steps (a scalar for one
                sequence); None means all T.
            resets: bool (T, batch) ((T,) for one sequence), true where a new
                segment starts.
            reverse: run every layer backwards (unidirectional stacks only).
            key: a PRNG key for the dropout masks; needed while training with
                dropout.
            inference: True applies no dropout; None uses the field
                ``inference`` (False unless ``eqx.nn.inference_mode``).

        Returns:
            ``(carry, hs)`` as :meth:`jaxrnn.Stack.apply` returns them: a
            tuple of each layer's final state, and the last layer's outputs
            (T, batch, D·H) (batch-major with ``time_major=False``); for one
            sequence, the same without the batch axis: hs (T, D·H).

        Raises:
            ValueError: dropout is on and ``key`` is None; ``xs`` neither 2-
                nor 3-dimensional.
            TypeError, ValueError: whatever :meth:`jaxrnn.Stack.apply` raises
                for the other arguments.
        """
        where = self.config.site
        if inference is None:
            inference = self.inference
            if isinstance(inference, jax.core.Tracer):
                raise TypeError(
                    f"{where}: the module was traced by jax.jit, which makes its field inference (a bool) an array. "
                    "Transform it with eqx.filter_jit (e.g. eqx.filter_jit(lambda m, x: m(x))), or split it with "
                    "eqx.partition(model, eqx.is_array) and jit only the arrays."
                )
        inference = _checks.python_bool(inference, "inference", where)
        train = self.config.stack.applies_dropout and not inference
        if train and key is None:
            raise ValueError(
                f"{where}: dropout={self.config.stack.dropout} is on (inference=False), so it needs a PRNG key for "
                "its masks. Pass key=jax.random.key(seed) (a fresh one per step), or inference=True "
                "(eqx.nn.inference_mode(model)) for evaluation."
            )
        rank = jnp.ndim(xs)
        if rank != 2:  # a batch; Stack.apply checks its rank
            if rank != 3:
                batched = "(time, batch, input_size)" if self.config.time_major else "(batch, time, input_size)"
                raise ValueError(
                    f"{where}: xs must be a batch of rank 3, {batched}, or one sequence of rank 2, "
                    f"(time, input_size); got shape {jnp.shape(xs)}. Pass inputs of one of those shapes."
                )
            return self.config.apply(
                self.params, xs, carry, key=key if train else None, train=train, lengths=lengths, resets=resets,
                reverse=reverse,
            )
        # One sequence: a batch of one, time-major, and the batch axis dropped again.
        if lengths is not None:
            if jnp.ndim(lengths) != 0:
                raise ValueError(
                    f"{where}: for one sequence (T, X), lengths is a scalar, its number of real steps; "
                    f"got shape {jnp.shape(lengths)}."
                )
            lengths = jnp.reshape(lengths, (1,))
        if resets is not None:
            if jnp.ndim(resets) != 1:
                raise ValueError(
                    f"{where}: for one sequence (T, X), resets is bool (T,); got shape {jnp.shape(resets)}."
                )
            resets = jnp.asarray(resets)[:, None]
        if carry is not None:
            carry = jax.tree.map(lambda a: jnp.asarray(a)[None], carry)
        final, hs = self.config.apply(
            self.params, jnp.asarray(xs)[:, None] if self.config.time_major else jnp.asarray(xs)[None], carry,
            key=key if train else None, train=train, lengths=lengths, resets=resets, reverse=reverse,
        )
        return jax.tree.map(lambda a: a[0], final), (hs[:, 0] if self.config.time_major else hs[0])
