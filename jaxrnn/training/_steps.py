"""The compiled training step and eval, and the state a run carries from one step to the next."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxrnn.training._config import DTYPES, TrainConfig, make_optimizer
from jaxrnn.training._model import CharLM
from jaxrnn.training._placement import Placement


class TrainState(NamedTuple):
    """What a checkpoint holds besides its header: everything the next step depends on."""

    params: Any
    opt_state: Any
    carry: Any  # the streams' state after the last chunk
    rng: Any  # key data (uint32), the root of every dropout key


class StepOutput(NamedTuple):
    params: Any
    opt_state: Any
    carry: Any
    loss: jax.Array
    finite: jax.Array  # the loss and the updated params are all finite


class LoopOutput(NamedTuple):
    """One step of :func:`train`'s loop: the step's output and whether any process asked to stop."""

    step: StepOutput
    stop: jax.Array


def make_step(model: CharLM, optimizer, *, grad: str, dtype) -> Callable[..., StepOutput]:
    """The un-jitted training step ``(params, opt_state, carry, inputs, targets, key, lr) -> StepOutput``.

    ``optimizer`` gives the update at learning rate 1 (:func:`make_optimizer`);
    the step scales it by ``lr``, the step's rate, a traced scalar.
    """

    def train_step(params, opt_state, carry, inputs, targets, key, lr):
        (loss, carry), grads = jax.value_and_grad(model.loss, has_aux=True)(
            params, carry, inputs, targets, key=key if model.dropout else None, grad=grad, dtype=dtype
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, jax.tree.map(lambda update: lr * update, updates))
        finite = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)]))
        return StepOutput(params, opt_state, carry, loss, finite)

    return train_step


def make_loop_step(model: CharLM, optimizer, *, grad: str, dtype) -> Callable[..., LoopOutput]:
    """:func:`make_step` as the loop runs it: ``(params, opt_state, carry, inputs, targets, rng, step, lr, stop)``.

    The dropout key is ``fold_in(rng, step)``, derived on the device. ``stop``
    (one flag per device, each process setting its own) is reduced with
    ``any``, so every process learns of a Ctrl-C on any of them at the same step.
    """
    train_step = make_step(model, optimizer, grad=grad, dtype=dtype)

    def loop_step(params, opt_state, carry, inputs, targets, rng, step, lr, stop):
        key = jax.random.fold_in(jax.random.wrap_key_data(rng), step)
        return LoopOutput(train_step(params, opt_state, carry, inputs, targets, key, lr), jnp.any(stop))

    return loop_step


def make_eval(model: CharLM, *, dtype) -> Callable:
    """``(params, window (T+1, rows) ids) -> mean nats per character``, from a zero state."""

    def evaluate(params, window):
        loss, _ = model.loss(params, model.initial_carry(window.shape[1]), window[:-1], window[1:], dtype=dtype)
        return loss

    return evaluate


def optimizer_options(config: TrainConfig) -> tuple:
    """What the compiled step depends on: the rates are an argument, so neither --lr, --schedule nor the length."""
    return config.optimizer, config.weight_decay, config.clip


@functools.lru_cache(maxsize=8)
def compiled(model: CharLM, optimizer_options: tuple, grad: str, dtype: str, place: Placement):
    """The jitted step and eval, cached so that runs of one configuration in one process compile once."""
    optimizer = make_optimizer(*optimizer_options)
    step_fn = jax.jit(
        make_loop_step(model, optimizer, grad=grad, dtype=DTYPES[dtype]),
        out_shardings=LoopOutput._make((  # the outputs' tree with a sharding per leaf (_make: not arrays)
            StepOutput._make((place.replicated, place.replicated, place.rows, place.replicated, place.replicated)),
            place.replicated,
        )),
    )  # no buffer donation: Ctrl-C mid-step must still find the last state intact to save it
    eval_fn = jax.jit(make_eval(model, dtype=DTYPES[dtype]), out_shardings=place.replicated)
    return step_fn, eval_fn


def template(model: CharLM, config: TrainConfig, *, shapes_only: bool = False) -> TrainState:
    """The fresh state of a run: initial params (from the seed), optimiser state, zero carry, root key.

    Built by one jitted call (op by op, the init's dozens of small programs
    took twice as long to compile); ``shapes_only`` gives its shapes and
    dtypes without computing it, all a checkpoint's loader needs.
    """
    build = functools.partial(_fresh_state, model, config)
    return jax.eval_shape(build) if shapes_only else jax.jit(build)()


def _fresh_state(model: CharLM, config: TrainConfig) -> TrainState:
    key = jax.random.key(config.seed)
    params = model.init(key)
    optimizer = make_optimizer(*optimizer_options(config))
    return TrainState(params, optimizer.init(params), model.initial_carry(config.batch), jax.random.key_data(key))
