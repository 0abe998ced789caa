"""Building any JAX implementation: compile once (timed), then call the compiled functions."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.bench._problem import Data, Gradients, Prepared


def prepare_jax(
    run: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    data: Data,
    to_gradients: Callable[[Any, jax.Array], tuple[np.ndarray, ...]],
) -> Prepared:
    """A :class:`Prepared` for ``run(params, xs) -> hs (T, B, H)``.

    The gradient is ``jax.grad`` of ``sum(run(params, xs) * dy)`` with respect
    to ``params`` and ``xs``, jitted, with ``dy`` an argument (as a loss's
    targets are) rather than a constant baked into the program. Its compile
    time is the wall time of ``lower(...).compile()`` on first use: tracing,
    lowering and XLA's compilation, which is what a user waits for on a
    first call.

    Args:
        run: the implementation's forward pass.
        params: its parameters, as it stores them.
        data: the shared data; ``xs`` and ``dy`` are used.
        to_gradients: ``(d_params, d_xs) -> Gradients`` in jaxrnn's layout; for a cell with
            its own ``Data.params``, those params' leaves then ``d_xs``.
    """
    xs = jnp.asarray(data.xs)
    dy = jnp.asarray(data.dy)

    def loss(p, x, d):
        return jnp.sum(run(p, x) * d)

    start = time.perf_counter()
    gradient = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, xs, dy).compile()
    compile_s = time.perf_counter() - start
    forward = jax.jit(run).lower(params, xs).compile()
    memory = gradient.memory_analysis()

    def outputs():
        d_params, d_xs = gradient(params, xs, dy)
        return np.asarray(forward(params, xs)), to_gradients(d_params, d_xs)

    return Prepared(
        gradient=lambda: gradient(params, xs, dy),
        forward=lambda: forward(params, xs),
        outputs=outputs,
        compile_s=compile_s,
        temp_bytes=None if memory is None else int(memory.temp_size_in_bytes),
    )


def numpy_gradients(w_ih, w_hh, b_ih, b_hh, xs) -> Gradients:
    """:class:`Gradients` from arrays of any framework, as numpy."""
    return Gradients(*(np.asarray(a) for a in (w_ih, w_hh, b_ih, b_hh, xs)))
