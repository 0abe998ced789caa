"""The character-level language model: embedding → stacked cell → linear readout."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

from jaxrnn import Cell, GradMode, Stack, get_cell, matmul, stack


class CharLMParams(NamedTuple):
    """Params of :class:`CharLM`.

    Attributes:
        embedding: (V, E), one row per character id.
        rnn: the :class:`jaxrnn.Stack` params, a tuple of L cell params.
        readout_w: (H, V), hidden state → logits.
        readout_b: (V,).
    """

    embedding: Array
    rnn: tuple
    readout_w: Array
    readout_b: Array


@dataclasses.dataclass(frozen=True)
class CharLM:
    """``logits_t = W_out h_t + b_out`` with ``h_t`` the last layer's state after reading ``E[id_t]``.

    A value bundling pure functions, hashable, so it can be a static
    argument of ``jax.jit``.

    Attributes:
        vocab_size: V.
        cell: the name of a registered cell (:func:`jaxrnn.cells`), e.g. ``"lstm"``.
        heads: the cell's ``num_heads`` (block-diagonal recurrence); 1 for a dense one.
        layers: L stacked layers.
        hidden: H, every layer's state size.
        embed: E, the embedding size.
        dropout: the rate between layers while training (torch's semantics).
    """

    vocab_size: int
    cell: str = "lstm"
    heads: int = 1
    layers: int = 1
    hidden: int = 256
    embed: int = 64
    dropout: float = 0.0

    @property
    def recurrent_cell(self) -> Cell:
        return get_cell(self.cell, "CharLM")

    @property
    def net(self) -> Stack:
        return stack(self.recurrent_cell, self.layers, dropout=self.dropout if self.layers > 1 else 0.0)

    def init(self, key: Array) -> CharLMParams:
        """Embedding N(0, 1) and readout U(±1/√F), F its input features, as torch's defaults; the cells' own init."""
        k_embed, k_rnn, k_w, k_b = jax.random.split(key, 4)
        features = self.recurrent_cell.sizes(self.hidden)[0]  # the cell's output size (P for a projected LSTM)
        bound = features**-0.5
        return CharLMParams(
            embedding=jax.random.normal(k_embed, (self.vocab_size, self.embed), jnp.float32),
            rnn=self.net.init(k_rnn, self.embed, self.hidden, **({"num_heads": self.heads} if self.heads > 1 else {})),
            readout_w=jax.random.uniform(k_w, (features, self.vocab_size), jnp.float32, -bound, bound),
            readout_b=jax.random.uniform(k_b, (self.vocab_size,), jnp.float32, -bound, bound),
        )

    def initial_carry(self, batch: int) -> tuple:
        """Zeros for every layer, float32."""
        return self.net.initial_carry(batch, self.hidden)

    def apply(self, params: CharLMParams, carry: tuple, ids: Array, *, key: Array | None = None, train: bool = False,
              grad: GradMode = "manual", dtype: Any = None) -> tuple[tuple, Array]:
        """Reads ``ids`` (T, batch) int from state ``carry``.

        Args:
            dtype: the compute dtype, e.g. ``jnp.bfloat16`` for mixed precision:
                params and activations are cast to it, matmuls sum in float32,
                the state and the logits stay float32. None keeps the params'.

        Returns:
            ``(carry, logits)``, logits (T, batch, V) float32.
        """
        if dtype is not None:
            params = jax.tree.map(lambda p: p.astype(dtype), params)
        xs = params.embedding[ids]
        carry, hs = self.net.apply(params.rnn, xs, carry, key=key, train=train, grad=grad)
        logits = matmul(hs, params.readout_w) + params.readout_b
        return carry, logits.astype(jnp.promote_types(logits.dtype, jnp.float32))

    def loss(self, params: CharLMParams, carry: tuple, inputs: Array, targets: Array, *, key: Array | None = None,
             grad: GradMode = "manual", dtype: Any = None) -> tuple[Array, tuple]:
        """``(mean cross-entropy in nats per character, final carry)`` over (T, batch) ids, in training mode."""
        carry, logits = self.apply(params, carry, inputs, key=key, train=key is not None, grad=grad, dtype=dtype)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean(), carry

    def step(self, params: CharLMParams, carry: tuple, token: Array) -> tuple[tuple, Array]:
        """One character: ``token`` (batch,) int → ``(carry, logits (batch, V))`` through each layer's ``cell.step``."""
        x = params.embedding[token]
        cell = self.recurrent_cell
        states = list(carry)
        for layer in range(self.layers):
            states[layer], x = cell.step(params.rnn[layer], states[layer], x)
        return tuple(states), matmul(x, params.readout_w) + params.readout_b
