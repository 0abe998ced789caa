"""A cell's manual gradient against autodiff's on one random problem, and the tolerances they must agree to.

The comparison ``jaxrnn check`` prints and the benchmark suite's self-check
tabulates. It is built on the public API alone, so that both share it
without reaching into the library's core.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import unroll
from jaxrnn.testing import relative_error

F64_TOLERANCE = 1e-10  # relative; the hand-written and autodiff BPTT differ only by rounding
F32_TOLERANCE = 1e-4


def random_problem(cell, batch, input_size, hidden, steps, dtype, seed=0):
    """Params, inputs and a nonzero initial carry, plus cotangent weights for the loss."""
    k_params, k_xs, k_carry, k_out = jax.random.split(jax.random.key(seed), 4)
    params = cell.init(k_params, input_size, hidden, dtype=dtype)
    xs = jax.random.normal(k_xs, (steps, batch, input_size), dtype)
    carry = jax.tree.map(
        lambda z: 0.5 * jax.random.normal(k_carry, z.shape, dtype), cell.initial_carry(batch, hidden, dtype=dtype)
    )
    weights = jax.random.normal(k_out, (steps, batch, cell.sizes(hidden)[0]), dtype)  # the output's size
    return params, xs, carry, weights


def gradient_fn(cell, grad):
    """A jitted ``(params, xs, carry, weights) -> grads`` of a loss on the outputs and the final state."""

    def loss(params, xs, carry, weights):
        final, hs = unroll(cell, params, xs, carry, grad=grad)
        return jnp.sum(hs * weights) + sum(jnp.sum(jnp.tanh(leaf)) for leaf in jax.tree.leaves(final))

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def manual_vs_autodiff(cell, sizes: tuple[int, int, int, int], dtype) -> float:
    """The relative error of the manual gradient against autodiff's on a random ``(B, X, H, T)`` problem."""
    args = random_problem(cell, *sizes, dtype)
    return relative_error(gradient_fn(cell, "manual")(*args), gradient_fn(cell, "autodiff")(*args))
