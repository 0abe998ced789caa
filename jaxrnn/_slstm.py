"""sLSTM (Beck et al. 2024, xLSTM): exponential input and forget gates, a normaliser and a log-space stabiliser.

The step is that of FlashRNN's pure-PyTorch reference
(``flashrnn.flashrnn.vanilla.slstm``, Pöppel et al. 2024) with its first-step
test made per element, and the hand-written backward pass is the exact
reverse of those equations, ``jnp.maximum``'s even split at ties included,
so it equals JAX's autodiff of the same step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _registry
from jaxrnn._gated import GatedCell, GatedParams, gate_biases


class SLSTMParams(GatedParams):
    """Parameters of :data:`slstm` (G = 4, gate blocks ``i, f, z, o``); ``w_hh`` may be headed (see ``_heads``)."""

    __slots__ = ()


class SLSTMCarry(NamedTuple):
    """sLSTM state; unpacks as ``h, c, n, m = carry``, each ``(batch, hidden)``.

    Attributes:
        h: the output, ``σ(õ) ⊙ c / n``.
        c: the cell state, scaled by ``exp(−m)``.
        n: the normaliser state, scaled likewise; 0 only before the first step.
        m: the stabiliser, the log of that scale.
    """

    h: Array
    c: Array
    n: Array
    m: Array


class SLSTMResidual(NamedTuple):
    """What one sLSTM step saves for the backward pass, which then needs no transcendental function.

    The cell does not declare ``residual_in_buffer``: with the gates written
    over the step's projection in its buffer, the many fusions that read the
    sLSTM's projection made XLA copy the whole buffer twice a step to keep it
    for them (about 3× slower at B32 X64 H512 T100: benchmarks/RESULTS.md).

    Attributes:
        c_prev: the cell state entering the step.
        gates: ``[i', f', tanh z̃, σ(õ)]``, ``(batch, 4 * hidden)``.
        n_prev: the normaliser state entering the step.
        sig_neg_f: ``σ(−f̃)``, the derivative of ``log σ(f̃)``.
        share_i: the share of ``m'``'s cotangent that reaches ``ĩ`` (1 at a
            first step or where ``ĩ > lf``, ½ at a tie, else 0); the rest
            reaches ``lf``.
    """

    c_prev: Array
    gates: Array
    n_prev: Array
    sig_neg_f: Array
    share_i: Array


def _ties(x: Array, y: Array) -> Array:
    """The share of ``max(x, y)``'s cotangent that reaches ``x``: 1, ½ at a tie (as ``jnp.maximum``), 0."""
    return jnp.where(x > y, 1.0, jnp.where(x == y, 0.5, 0.0)).astype(x.dtype)


def _slstm_core(raw: Array, c: Array, n: Array, m: Array):
    """:func:`slstm_state`, plus what its reverse needs: ``((h', c', n', m'), (gates, σ(−f̃), share_i))``."""
    i, f, z, o = jnp.split(raw, 4, axis=-1)
    log_f = jax.nn.log_sigmoid(f) + m
    first = n == 0
    m_new = jnp.where(first, i, jnp.maximum(i, log_f))
    i_gate = jnp.exp(i - m_new)
    f_gate = jnp.exp(log_f - m_new)
    g, o_gate = jnp.tanh(z), jax.nn.sigmoid(o)
    c_new = f_gate * c + i_gate * g
    n_new = jnp.maximum(f_gate * n + i_gate, 1)
    share_i = jnp.where(first, 1, _ties(i, log_f)).astype(raw.dtype)
    gates = jnp.concatenate([i_gate, f_gate, g, o_gate], axis=-1)
    return (o_gate * c_new / n_new, c_new, n_new, m_new), (gates, jax.nn.sigmoid(-f), share_i)


def slstm_state(raw: Array, c: Array, n: Array, m: Array):
    """The sLSTM update from the pre-activations ``raw`` (B, 4H): ``(h', c', n', m')``.

    ``m' = ĩ`` where ``n = 0`` (no history yet), else ``max(ĩ, log σ(f̃) + m)``;
    elementwise, so any layout works.
    """
    return _slstm_core(raw, c, n, m)[0]


def slstm_state_vjp(dh: Array, dc: Array, dn: Array, dm: Array, gates: Array, c: Array, n: Array,
                    sig_neg_f: Array, share_i: Array):
    """The reverse of :func:`slstm_state`: from the cotangents of ``(h', c', n', m')`` to ``(d_raw, dc, dn, dm)``.

    From the saved gates (see :class:`SLSTMResidual`): products and sums
    only. At a tie of a ``max`` (``f' n + i' = 1`` exactly, as at every first
    step, or ``ĩ = log σ(f̃) + m``) each side takes half the cotangent, as in
    JAX's ``jnp.maximum``.
    """
    i_gate, f_gate, g, o_gate = jnp.split(gates, 4, axis=-1)
    c_new = f_gate * c + i_gate * g
    total = f_gate * n + i_gate  # n' = max(total, 1)
    n_new = jnp.maximum(total, 1)

    dc = dc + dh * o_gate / n_new
    d_o = dh * c_new / n_new * o_gate * (1 - o_gate)
    d_total = (dn - dh * o_gate * c_new / n_new**2) * _ties(total, jnp.ones_like(total))
    d_i_gate = dc * g + d_total
    d_f_gate = dc * c + d_total * n
    d_z = dc * i_gate * (1 - g**2)
    d_i = d_i_gate * i_gate  # at ĩ − m'
    d_log_f = d_f_gate * f_gate  # at log σ(f̃) + m − m'
    dm_new = dm - d_i - d_log_f
    d_i = d_i + dm_new * share_i
    d_log_f = d_log_f + dm_new * (1 - share_i)
    d_f = d_log_f * sig_neg_f  # d log σ(f̃) / df̃ = σ(−f̃)
    d_raw = jnp.concatenate([d_i, d_f, d_z, d_o], axis=-1)  # (B, 4H): one matmul, not four
    return d_raw, dc * f_gate, d_total * f_gate, d_log_f


def _slstm_forward(gx: Array, gh: Array, carry: SLSTMCarry):
    h_prev, c, n, m = carry
    (h, c_new, n_new, m_new), (gates, sig_neg_f, share_i) = _slstm_core(gx + gh, c, n, m)
    return SLSTMCarry(h, c_new, n_new, m_new), SLSTMResidual(c, gates, n, sig_neg_f, share_i)


def _slstm_backward(res: SLSTMResidual, d_carry: SLSTMCarry):
    d_raw, dc, dn, dm = slstm_state_vjp(*d_carry, res.gates, res.c_prev, res.n_prev, res.sig_neg_f, res.share_i)
    return d_raw, None, SLSTMCarry(None, dc, dn, dm)  # type: ignore[arg-type]


def forget_biases(head_size: int, num_heads: int, dtype) -> Array:
    """xLSTM's sLSTM forget-gate biases: ``5 − 12 (u / (d − 1))^0.3`` for unit u of each head, (H,).

    From 5 (σ ≈ 0.993, a memory of about 150 steps) down to −7 (forgets at
    once), so each head starts with a spread of time scales.
    """
    u = jnp.arange(head_size, dtype=jnp.float32) / max(head_size - 1, 1)
    return jnp.tile(5.0 - 12.0 * u**0.3, num_heads).astype(dtype)


def _forget_biases_spread(hidden_size: int, num_heads: int, dtype) -> Array:
    """``b_ih``: zeros, with xLSTM's :func:`forget_biases` in the forget gate's block."""
    b_f = forget_biases(hidden_size // num_heads, num_heads, dtype)
    return gate_biases(4, hidden_size, dtype).at[hidden_size: 2 * hidden_size].set(b_f)


slstm = _registry.register_built_in(GatedCell(
    "slstm", 4, _slstm_forward, _slstm_backward, carry_type=SLSTMCarry, bias_init=_forget_biases_spread,
    params_type=SLSTMParams, gates=("i", "f", "z", "o"),
    doc="""sLSTM (xLSTM's scalar-memory LSTM, Beck et al. 2024), FlashRNN's equations::

        raw = W_ih x + b_ih + W_hh h + b_hh          split into ĩ, f̃, z̃, õ
        lf  = log σ(f̃) + m
        m'  = ĩ where n = 0, else max(ĩ, lf)         # the stabiliser
        i'  = exp(ĩ − m');  f' = exp(lf − m')         # exponential gates, stabilised
        c'  = f' c + i' tanh(z̃)
        n'  = max(f' n + i', 1)                       # the normaliser
        h'  = σ(õ) c' / n'

    Params :class:`SLSTMParams` ``(w_ih (X, 4H), w_hh (H, 4H), b_ih (4H,),
    b_hh (4H,))``, gate order ``i, f, z, o``; carry :class:`SLSTMCarry`
    ``(h, c, n, m)``, each (batch, hidden). ``init(key, X, H, num_heads=K)``
    makes ``w_hh`` block-diagonal, ``(K, H/K, 4H/K)`` (FlashRNN's heads);
    see :func:`jaxrnn.block_diagonal`. Manual BPTT saves 8·batch·hidden
    values a step (the four activated gates, the old ``c`` and ``n``, ``σ(−f̃)``
    and how ``m'`` chose), so its backward pass computes no exponential.

    These are the equations of FlashRNN's reference
    (``flashrnn.flashrnn.vanilla.slstm``), whose first-step test ``n = 0`` is
    on the whole state at once; here it is per element, so a row reset to
    zeros restarts alone. Against the xLSTM paper (its stabilised form, with
    a sigmoid forget gate): the paper has ``n' = f' n + i'`` with no clamp, and
    no first-step case (``m' = max(ĩ, lf)`` from ``m = 0``). Against the
    ``xlstm`` package's sLSTM: it clamps ``i', f' ≤ 1`` and has no ``n ≥ 1``
    clamp. All agree once ``n ≥ 1`` and the gates are stabilised; they differ
    at the first step and where ``f' n + i' < 1``. The gradient is that of
    these equations exactly, ``jnp.maximum``'s half-and-half split at ties
    included (``n' = 1`` at every first step).

    Init: as :data:`lstm` (Glorot input blocks, orthogonal recurrent blocks per
    gate and head, zero biases) except the forget gate's ``b_ih``, which is
    xLSTM's spread ``5 − 12 (u/(d − 1))^0.3`` over the d units of each head.
    """,
))
