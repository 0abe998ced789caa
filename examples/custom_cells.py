"""Three cells written on jaxrnn's public names, with hand-written BPTT.

* :data:`cifg_lstm`, on the gated tier (:class:`jaxrnn.GatedCell`): the
  LSTM with coupled input and forget gates (Greff et al. 2017), ``i = 1 − f``.
* :data:`peephole_lstm`, on the general tier (:class:`jaxrnn.Cell`): the LSTM
  with peephole connections of Gers & Schmidhuber (2000), the gates also
  reading the cell state.
* :data:`layer_norm_lstm`, on the general tier: the layer-normalised LSTM of
  Ba et al. (2016), in the form of Haste's ``LayerNormLSTM``.

Each runs through every option of ``jaxrnn.unroll`` in both grad modes and in
mixed precision, in stacks, in training (``TrainConfig(cell="cifg_lstm")``
once this module is imported) and on the command line (``jaxrnn bench --cells
examples.custom_cells:cifg_lstm`` from the checkout; ``check`` and
``memory-task`` take the same). Check one with
``jaxrnn.testing.check_cell(cifg_lstm)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

import jaxrnn

# --------------------------------------------------------------------------
# CIFG LSTM, on the gated tier: the engine adds gx = x W_ih + b_ih and gh = h W_hh + b_hh.


def cifg_forward(gx, gh, carry):
    """``f, g, o`` from ``gx + gh``; ``c' = f c + (1 − f) g``, ``h' = o tanh(c')``."""
    f, g, o = jnp.split(gx + gh, 3, axis=-1)
    f, g, o = jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * carry.c + (1 - f) * g  # the input gate is 1 − f
    tanh_c = jnp.tanh(c)
    return jaxrnn.LSTMCarry(o * tanh_c, c), (f, g, o, carry.c, tanh_c)


def cifg_backward(residual, d_carry):
    """The cotangents of ``gx``, ``gh`` (None: the same as ``gx``'s) and the carry (None: zero)."""
    f, g, o, c_prev, tanh_c = residual
    dc = d_carry.c + d_carry.h * o * (1 - tanh_c**2)
    d_f = dc * (c_prev - g) * f * (1 - f)
    d_g = dc * (1 - f) * (1 - g**2)
    d_o = d_carry.h * tanh_c * o * (1 - o)
    return jnp.concatenate([d_f, d_g, d_o], axis=-1), None, jaxrnn.LSTMCarry(None, dc * f)


cifg_lstm = jaxrnn.register(jaxrnn.GatedCell(
    "cifg_lstm", 3, cifg_forward, cifg_backward, carry_type=jaxrnn.LSTMCarry, gates=("f", "g", "o"),
    doc="CIFG LSTM: f, g, o = σ, tanh, σ of x W_ih + b_ih + h W_hh + b_hh; c' = f c + (1 − f) g; h' = o tanh(c').",
))


def _four_gate_shapes(params, where: str, vectors: dict[str, int]):
    """``(input_size, hidden)`` of an LSTM-like cell's params, read off ``w_hh`` (H, 4H); ``ValueError`` if
    ``w_ih`` is not (X, 4H) or a vector field ``name`` is not (multiple · H,) for ``vectors[name]``."""
    hidden = params.w_hh.shape[0]
    expected = {"w_hh": (hidden, 4 * hidden), **{name: (k * hidden,) for name, k in vectors.items()}}
    for name, shape in expected.items():
        if getattr(params, name).shape != shape:
            raise ValueError(f"{where}: params.{name} must be {shape} for hidden {hidden}; "
                             f"got {getattr(params, name).shape}.")
    if params.w_ih.ndim != 2 or params.w_ih.shape[1] != 4 * hidden:
        raise ValueError(f"{where}: params.w_ih must be (input_size, {4 * hidden}); got {params.w_ih.shape}.")
    return params.w_ih.shape[0], hidden


# --------------------------------------------------------------------------
# Peephole LSTM.


class PeepholeParams(NamedTuple):
    """``w_ih (X, 4H)``, ``w_hh (H, 4H)``, ``b (4H,)`` (gate blocks ``i, f, g, o``) and the peepholes ``(H,)``."""

    w_ih: jax.Array
    w_hh: jax.Array
    b: jax.Array
    w_ci: jax.Array
    w_cf: jax.Array
    w_co: jax.Array


class PeepholeResidual(NamedTuple):
    gates: jax.Array  # activated i, f, g, o (B, 4H): the projection's shape, so it may share its buffer
    c_prev: jax.Array  # (B, H)


def _peephole_init(key, input_size, hidden_size, dtype):
    k_ih, k_hh, k_peep = jax.random.split(key, 3)
    bound = 1 / jnp.sqrt(hidden_size)
    uniform = lambda k, shape: jax.random.uniform(k, shape, dtype, -bound, bound)  # noqa: E731
    peep = uniform(k_peep, (3, hidden_size))
    b = jnp.zeros(4 * hidden_size, dtype).at[hidden_size : 2 * hidden_size].set(1)  # forget gate open
    return PeepholeParams(uniform(k_ih, (input_size, 4 * hidden_size)), uniform(k_hh, (hidden_size, 4 * hidden_size)),
                          b, *peep)


def _peephole_shapes(params: PeepholeParams, where: str):
    return _four_gate_shapes(params, where, {"b": 4, "w_ci": 1, "w_cf": 1, "w_co": 1})


def _peephole_project(params, x):
    return x @ params.w_ih


def _peephole_recurrence(params, carry, gx):
    """``i = σ(z_i + w_ci c)``, ``f = σ(z_f + w_cf c)``, ``g = tanh(z_g)``, ``c' = f c + i g``,
    ``o = σ(z_o + w_co c')``, ``h' = o tanh(c')``, with ``z = x W_ih + h W_hh + b``."""
    h_prev, c_prev = carry
    z_i, z_f, z_g, z_o = jnp.split(gx + h_prev @ params.w_hh + params.b, 4, axis=-1)
    i = jax.nn.sigmoid(z_i + params.w_ci * c_prev)
    f = jax.nn.sigmoid(z_f + params.w_cf * c_prev)
    g = jnp.tanh(z_g)
    c = f * c_prev + i * g
    o = jax.nn.sigmoid(z_o + params.w_co * c)
    h = o * jnp.tanh(c)
    return jaxrnn.LSTMCarry(h, c), h, PeepholeResidual(jnp.concatenate([i, f, g, o], axis=-1), c_prev)


def _peephole_step_vjp(params, w_hh_t, d_carry, h, h_prev, res):
    dh, dc = d_carry
    i, f, g, o = jnp.split(res.gates, 4, axis=-1)
    c = f * res.c_prev + i * g
    tanh_c = jnp.tanh(c)
    d_o = dh * tanh_c * o * (1 - o)
    dc = dc + dh * o * (1 - tanh_c**2) + d_o * params.w_co  # o reads the new c
    d_i = dc * g * i * (1 - i)
    d_f = dc * res.c_prev * f * (1 - f)
    d_g = dc * i * (1 - g**2)
    dc_prev = dc * f + d_i * params.w_ci + d_f * params.w_cf
    dz = jnp.concatenate([d_i, d_f, d_g, d_o], axis=-1)
    # The peepholes' cotangents, summed over the batch now: (1, H) a step, not (B, H).
    peep = tuple(jnp.sum(d * s, axis=0, keepdims=True) for d, s in ((d_i, res.c_prev), (d_f, res.c_prev), (d_o, c)))
    return jaxrnn.LSTMCarry(dz @ w_hh_t, dc_prev), dz, peep


def _peephole_param_grads(params, h_prev, dz, peep):
    return jaxrnn.cotangents(params, w_hh=h_prev.T @ dz, b=dz.sum(0), w_ci=peep[0].sum(0), w_cf=peep[1].sum(0),
                             w_co=peep[2].sum(0))


peephole_lstm = jaxrnn.register(jaxrnn.Cell(
    name="peephole_lstm",
    params_type=PeepholeParams,
    carry_type=jaxrnn.LSTMCarry,
    init_params=_peephole_init,
    check_shapes=_peephole_shapes,
    recurrence=_peephole_recurrence,
    project=_peephole_project,
    bptt=jaxrnn.BPTT(_peephole_step_vjp, _peephole_param_grads, prepare=lambda params: params.w_hh.T),
    residual_in_buffer=True,
    gates=("i", "f", "g", "o"),
    doc=_peephole_recurrence.__doc__,
))


# --------------------------------------------------------------------------
# Layer-norm LSTM.

EPS = 1e-5


class LayerNormLSTMParams(NamedTuple):
    """``w_ih (X, 4H)``, ``w_hh (H, 4H)``, ``b (4H,)``; layer-norm gains ``gamma_x``, ``gamma_h`` (4H,);
    ``gamma_c``, ``beta_c`` (H,)."""

    w_ih: jax.Array
    w_hh: jax.Array
    b: jax.Array
    gamma_x: jax.Array
    gamma_h: jax.Array
    gamma_c: jax.Array
    beta_c: jax.Array


class LayerNormResidual(NamedTuple):
    gates: jax.Array  # activated i, f, g, o (B, 4H)
    c_prev: jax.Array  # (B, H)
    rh_hat: jax.Array  # normalised h W_hh (B, 4H)
    rh_inv_std: jax.Array  # (B, 1)
    c_hat: jax.Array  # normalised c' (B, H)
    c_inv_std: jax.Array  # (B, 1)


def _normalise(v):
    """``(v − mean) / sqrt(var + ε)`` over the last axis, and ``1 / sqrt(var + ε)``."""
    mean = v.mean(-1, keepdims=True)
    inv_std = jax.lax.rsqrt(((v - mean) ** 2).mean(-1, keepdims=True) + EPS)
    return (v - mean) * inv_std, inv_std


def _normalise_vjp(d_hat, v_hat, inv_std):
    """Cotangent of ``v`` from that of ``v̂ = normalise(v)``."""
    return inv_std * (d_hat - d_hat.mean(-1, keepdims=True) - v_hat * (d_hat * v_hat).mean(-1, keepdims=True))


def _layer_norm_init(key, input_size, hidden_size, dtype):
    k_ih, k_hh = jax.random.split(key)
    bound = 1 / jnp.sqrt(hidden_size)
    uniform = lambda k, shape: jax.random.uniform(k, shape, dtype, -bound, bound)  # noqa: E731
    ones4, ones = jnp.ones(4 * hidden_size, dtype), jnp.ones(hidden_size, dtype)
    return LayerNormLSTMParams(
        uniform(k_ih, (input_size, 4 * hidden_size)), uniform(k_hh, (hidden_size, 4 * hidden_size)),
        jnp.zeros(4 * hidden_size, dtype), ones4, ones4, ones, jnp.zeros(hidden_size, dtype),
    )


def _layer_norm_shapes(params: LayerNormLSTMParams, where: str):
    return _four_gate_shapes(params, where, {"b": 4, "gamma_x": 4, "gamma_h": 4, "gamma_c": 1, "beta_c": 1})


def _layer_norm_project(params, x):
    """``LN(x W_ih) γ_x``: row-wise, so the engine runs it over all T·B rows before the scan."""
    return _normalise(x @ params.w_ih)[0] * params.gamma_x


def _layer_norm_recurrence(params, carry, gx):
    """``z = LN(x W_ih) γ_x + LN(h W_hh) γ_h + b``; ``i, f, o = σ``, ``g = tanh``;
    ``c' = f c + i g``; ``h' = o tanh(LN(c') γ_c + β_c)``."""
    h_prev, c_prev = carry
    rh_hat, rh_inv_std = _normalise(h_prev @ params.w_hh)
    z_i, z_f, z_g, z_o = jnp.split(gx + rh_hat * params.gamma_h + params.b, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(z_i), jax.nn.sigmoid(z_f), jnp.tanh(z_g), jax.nn.sigmoid(z_o)
    c = f * c_prev + i * g
    c_hat, c_inv_std = _normalise(c)
    h = o * jnp.tanh(c_hat * params.gamma_c + params.beta_c)
    gates = jnp.concatenate([i, f, g, o], axis=-1)
    return jaxrnn.LSTMCarry(h, c), h, LayerNormResidual(gates, c_prev, rh_hat, rh_inv_std, c_hat, c_inv_std)


def _layer_norm_step_vjp(params, w_hh_t, d_carry, h, h_prev, res):
    dh, dc = d_carry
    i, f, g, o = jnp.split(res.gates, 4, axis=-1)
    tanh_cn = jnp.tanh(res.c_hat * params.gamma_c + params.beta_c)
    d_o = dh * tanh_cn * o * (1 - o)
    d_cn = dh * o * (1 - tanh_cn**2)  # at LN(c') γ_c + β_c
    dc = dc + _normalise_vjp(d_cn * params.gamma_c, res.c_hat, res.c_inv_std)
    d_i = dc * g * i * (1 - i)
    d_f = dc * res.c_prev * f * (1 - f)
    d_g = dc * i * (1 - g**2)
    dz = jnp.concatenate([d_i, d_f, d_g, d_o], axis=-1)  # also the cotangent of gx
    d_rh = _normalise_vjp(dz * params.gamma_h, res.rh_hat, res.rh_inv_std)  # at h W_hh
    sums = tuple(jnp.sum(a, axis=0, keepdims=True) for a in (dz * res.rh_hat, d_cn * res.c_hat, d_cn))
    return jaxrnn.LSTMCarry(d_rh @ w_hh_t, dc * f), dz, (d_rh, *sums)


def _layer_norm_param_grads(params, h_prev, dz, stash):
    d_rh, d_gamma_h, d_gamma_c, d_beta_c = stash
    return jaxrnn.cotangents(params, w_hh=h_prev.T @ d_rh, b=dz.sum(0), gamma_h=d_gamma_h.sum(0),
                             gamma_c=d_gamma_c.sum(0), beta_c=d_beta_c.sum(0))


layer_norm_lstm = jaxrnn.register(jaxrnn.Cell(
    name="layer_norm_lstm",
    params_type=LayerNormLSTMParams,
    carry_type=jaxrnn.LSTMCarry,
    init_params=_layer_norm_init,
    check_shapes=_layer_norm_shapes,
    recurrence=_layer_norm_recurrence,
    project=_layer_norm_project,  # its cotangents come from JAX's autodiff over all rows (no project_vjp)
    bptt=jaxrnn.BPTT(_layer_norm_step_vjp, _layer_norm_param_grads, prepare=lambda params: params.w_hh.T),
    residual_in_buffer=True,
    gates=("i", "f", "g", "o"),
    doc=_layer_norm_recurrence.__doc__,
))
