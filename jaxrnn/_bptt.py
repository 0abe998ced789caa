"""Hand-written backpropagation through time, wired into ``jax.grad`` by ``jax.custom_vjp``.

For a sequence ``xs`` of shape (T, B, X) the forward pass is

1. ``gx = project(params, xs)``: one (T·B, X) × (X, G·H) matmul for all steps;
2. a ``lax.scan`` of ``recurrence`` that keeps each step's named residual.

The backward pass is

1. a reverse ``lax.scan`` whose carry holds only the recurrent cotangents
   (``dh``, and ``dc`` for the LSTM). Each step turns them into the gate
   pre-activation cotangents ``dz`` (B, G·H) and does one ``dz @ W_hhᵀ``;
2. the weight, bias and input cotangents as single large matmuls over all
   T·B rows: ``dW_ih = xsᵀ dgx``, ``dW_hh = h_prevᵀ dgh``, ``dxs = dgx W_ihᵀ``,
   and the biases are column sums.

Memory saved for the backward pass, per time step, beyond ``xs`` and the
outputs ``hs`` (which the caller holds anyway): LSTM 5·B·H values, GRU
4·B·H, simple RNN none. That is 20·B·H, 16·B·H and 0 bytes a step in float32.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array


class CellBPTT(NamedTuple):
    """A cell's hand-written backward pass, as pure functions.

    Attributes:
        step_vjp: ``(params, d_carry, dh_out, h, h_prev, residual) ->
            (d_carry_prev, gate_grads)``. One reverse step: ``d_carry`` is the
            cotangent of the carry leaving step t, ``dh_out`` that of the
            output ``h`` at step t, and ``residual`` what the forward saved.
            ``gate_grads`` is stacked over time by the scan.
        split_gate_grads: ``gate_grads (stacked) -> (dgx, dgh)``, the
            cotangents of the input-side and hidden-side pre-activations, each
            (T, B, G·H). They are one array for cells whose biases all fold
            into the input side.
    """

    step_vjp: Callable[..., tuple[Any, Any]]
    split_gate_grads: Callable[[Any], tuple[Array, Array]] = lambda dz: (dz, dz)


class Residuals(NamedTuple):
    """What the forward pass saves for the backward pass.

    Attributes:
        xs: the inputs (T, B, X), for ``dW_ih``.
        carry0: the initial carry, whose ``h`` starts ``h_prev``.
        hs: the outputs (T, B, H); ``h_prev`` is ``hs`` shifted by one step.
        steps: the cell's per-step residual, stacked over time.
    """

    xs: Array
    carry0: Any
    hs: Array
    steps: Any


# --------------------------------------------------------------------------
# One reverse step per cell. Shapes: (B, H) unless noted.


def lstm_state_vjp(dh: Array, dc: Array, i: Array, f: Array, g: Array, o: Array, c_prev: Array):
    """Backward of :func:`jaxrnn._cells.lstm_state` and the gate activations.

    Given the cotangents ``dh``, ``dc`` of ``(h, c)`` leaving the step,
    returns the cotangents of the four gate pre-activations (in ``i, f, g, o``
    order) and of ``c_prev``. Elementwise, so any layout works.
    """
    tanh_c = jnp.tanh(f * c_prev + i * g)  # recomputed rather than saved
    dc = dc + dh * o * (1 - tanh_c**2)
    d_i = dc * g * i * (1 - i)
    d_f = dc * c_prev * f * (1 - f)
    d_g = dc * i * (1 - g**2)
    d_o = dh * tanh_c * o * (1 - o)
    return (d_i, d_f, d_g, d_o), dc * f


def _lstm_step_vjp(params, d_carry, dh_out, h, h_prev, res):
    dh, dc = d_carry
    d_gates, dc_prev = lstm_state_vjp(dh + dh_out, dc, *res)
    dz = jnp.concatenate(d_gates, axis=-1)  # (B, 4H): one matmul, not four
    return type(d_carry)(dz @ params.w_hh.T, dc_prev), dz


def _gru_step_vjp(params, dh, dh_out, h, h_prev, res):
    r, z, n, hn = res
    dh = dh + dh_out
    dn = dh * (1 - z) * (1 - n**2)  # at n's pre-activation
    d_r = dn * hn * r * (1 - r)
    d_z = dh * (h_prev - n) * z * (1 - z)
    dgh = jnp.concatenate([d_r, d_z, dn * r], axis=-1)  # (B, 3H) at h W_hh + b_hh
    return dh * z + dgh @ params.w_hh.T, (dgh, dn)


def _gru_split(gate_grads):
    # The input side sees r and z like the hidden side, but n unscaled by r.
    dgh, dn = gate_grads
    hidden = dn.shape[-1]
    return jnp.concatenate([dgh[..., : 2 * hidden], dn], axis=-1), dgh


def _simple_rnn_step_vjp(params, dh, dh_out, h, h_prev, res):
    dz = (dh + dh_out) * (1 - h**2)
    return dz @ params.w_hh.T, dz


SIMPLE_RNN = CellBPTT(_simple_rnn_step_vjp)
LSTM = CellBPTT(_lstm_step_vjp)
GRU = CellBPTT(_gru_step_vjp, _gru_split)


# --------------------------------------------------------------------------
# The sequence level, the same for every cell.


def forward(cell, params, carry, xs: Array):
    """Runs ``cell`` over ``xs`` (T, B, X), keeping :class:`Residuals`.

    Returns:
        ``(final carry, hs (T, B, H), residuals)``.
    """
    gx = cell.project(params, xs)  # all T steps in one matmul

    def body(carry, gx_t):
        carry, h, residual = cell.recurrence(params, carry, gx_t)
        return carry, (h, residual)

    final, (hs, steps) = jax.lax.scan(body, carry, gx)
    return final, hs, Residuals(xs, carry, hs, steps)


def backward(cell, params, res: Residuals, d_final, d_hs: Array):
    """The VJP of :func:`forward` for cotangents ``d_final`` (carry) and ``d_hs`` (T, B, H).

    Returns:
        ``(d_params, d_carry0, d_xs)``, shaped like ``params``, ``carry0``, ``xs``.
    """
    xs, carry0, hs, steps = res
    h_prev = jnp.concatenate([cell.hidden(carry0)[None], hs[:-1]])

    def body(d_carry, step):
        return cell.bptt.step_vjp(params, d_carry, *step)

    d_carry0, gate_grads = jax.lax.scan(body, d_final, (d_hs, hs, h_prev, steps), reverse=True)
    dgx, dgh = cell.bptt.split_gate_grads(gate_grads)

    def rows(a: Array) -> Array:  # (T, B, n) -> (T·B, n)
        return a.reshape(-1, a.shape[-1])

    d_params = type(params)(
        w_ih=rows(xs).T @ rows(dgx),
        w_hh=rows(h_prev).T @ rows(dgh),
        b_ih=dgx.sum(axis=(0, 1)),
        b_hh=dgh.sum(axis=(0, 1)),
    )
    return d_params, d_carry0, dgx @ params.w_ih.T


@functools.cache
def manual_unroll(cell) -> Callable:
    """``(params, carry, xs) -> (carry, hs)`` for ``cell``, with the hand-written VJP.

    One ``jax.custom_vjp`` per cell, made on first use and cached.
    """

    @jax.custom_vjp
    def run(params, carry, xs):
        final, hs, _ = forward(cell, params, carry, xs)
        return final, hs

    def run_fwd(params, carry, xs):
        final, hs, res = forward(cell, params, carry, xs)
        return (final, hs), (params, res)

    def run_bwd(saved, cotangents):
        params, res = saved
        d_final, d_hs = cotangents
        return backward(cell, params, res, d_final, d_hs)

    run.defvjp(run_fwd, run_bwd)
    return run
