"""A time-series forecaster: a GRU through jaxrnn's functional API, trained with optax.

The series are noisy sums of two sines with random periods, phases and amplitudes. The model reads a
window of past values and predicts the next one at every step (next-step prediction, teacher forced),
trained on some series and tested on others. It prints the test MSE of the last step's prediction next to
the naive forecast's ("tomorrow equals today"), which a useful model must beat.

    python examples/forecaster.py [--steps 400] [--seed 0]
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

import jaxrnn

WINDOW = 48  # steps the model reads; it predicts the value after each
HIDDEN = 32
NOISE = 0.1


def make_series(key, count: int, length: int) -> jax.Array:
    """``count`` series of ``length`` steps, (count, length): two sines with periods 8-40 steps, plus noise."""
    k_period, k_phase, k_amp, k_noise = jax.random.split(key, 4)
    period = jax.random.uniform(k_period, (count, 2, 1), minval=8.0, maxval=40.0)
    phase = jax.random.uniform(k_phase, (count, 2, 1), maxval=2 * jnp.pi)
    amplitude = jax.random.uniform(k_amp, (count, 2, 1), minval=0.3, maxval=1.0)
    t = jnp.arange(length)
    clean = jnp.sum(amplitude * jnp.sin(2 * jnp.pi * t / period + phase), axis=1)
    return clean + NOISE * jax.random.normal(k_noise, clean.shape)


class Params(NamedTuple):
    gru: jaxrnn.GRUParams
    readout_w: jax.Array  # (HIDDEN, 1)
    readout_b: jax.Array  # (1,)


def init(key) -> Params:
    k_gru, k_out = jax.random.split(key)
    return Params(jaxrnn.gru.init(k_gru, 1, HIDDEN), 0.1 * jax.random.normal(k_out, (HIDDEN, 1)), jnp.zeros(1))


def predict(params: Params, inputs: jax.Array) -> jax.Array:
    """Next-value predictions (batch, T) from ``inputs`` (batch, T): one per step, from the values so far."""
    _, hs = jaxrnn.unroll(jaxrnn.gru, params.gru, inputs[..., None], time_major=False)  # (batch, T, H)
    return (hs @ params.readout_w + params.readout_b)[..., 0]


def loss(params: Params, windows: jax.Array) -> jax.Array:
    """Mean squared error of every step's next-value prediction; ``windows`` is (batch, WINDOW + 1)."""
    return jnp.mean((predict(params, windows[:, :-1]) - windows[:, 1:]) ** 2)


def windows_of(series: jax.Array, key, count: int) -> jax.Array:
    """``count`` random windows of WINDOW + 1 consecutive values, (count, WINDOW + 1)."""
    k_row, k_start = jax.random.split(key)
    rows = jax.random.randint(k_row, (count,), 0, series.shape[0])
    starts = jax.random.randint(k_start, (count,), 0, series.shape[1] - WINDOW)
    take = jax.vmap(lambda r, s: jax.lax.dynamic_slice(series[r], (s,), (WINDOW + 1,)))
    return take(rows, starts)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    k_train, k_test, k_init, k_windows, k_test_windows = jax.random.split(jax.random.key(args.seed), 5)
    train_series, test_series = make_series(k_train, 256, 200), make_series(k_test, 64, 200)
    test_windows = windows_of(test_series, k_test_windows, 512)

    params = init(k_init)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(optax.cosine_decay_schedule(1e-2, args.steps)))
    state = optimizer.init(params)

    @jax.jit
    def step(params, state, key):
        value, grads = jax.value_and_grad(loss)(params, windows_of(train_series, key, 64))
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    for k, key in enumerate(jax.random.split(k_windows, args.steps)):
        params, state, value = step(params, state, key)
        if (k + 1) % max(1, args.steps // 5) == 0:
            print(f"step {k + 1:4d}  train MSE {float(value):.4f}")

    # The forecast after a full window: the model's last prediction against the last value seen.
    target = test_windows[:, -1]
    model_mse = float(jnp.mean((predict(params, test_windows[:, :-1])[:, -1] - target) ** 2))
    naive_mse = float(jnp.mean((test_windows[:, -2] - target) ** 2))
    print(f"test MSE {model_mse:.4f}  naive (last value) {naive_mse:.4f}  noise floor {NOISE**2:.4f}")
    return {"model_mse": model_mse, "naive_mse": naive_mse}


if __name__ == "__main__":
    main()
