"""jaxrnn itself: the hand-written BPTT and JAX's autodiff of the same scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import GradMode, get_cell, unroll
from jaxrnn.bench._jax import numpy_gradients, prepare_jax
from jaxrnn.bench._problem import Data, Implementation, Prepared, Problem


def _implementation(grad: GradMode) -> Implementation:
    def prepare(problem: Problem, data: Data) -> Prepared:
        cell = get_cell(problem.cell)

        def run(p, xs):
            return unroll(cell, p, xs, grad=grad)[1]

        if data.params is None:  # the peers' four arrays
            params = cell.params_type(*(jnp.asarray(a) for a in data.weights()))
            return prepare_jax(run, params, data, lambda d, d_xs: numpy_gradients(d.w_ih, d.w_hh, d.b_ih, d.b_hh, d_xs))
        # Any other cell: its own params, compared leaf by leaf.
        params = jax.tree.map(jnp.asarray, data.params)
        return prepare_jax(run, params, data, lambda d, d_xs: tuple(map(np.asarray, (*jax.tree.leaves(d), d_xs))))

    return Implementation(
        name=f"jaxrnn {grad}",
        cells=None,  # every registered cell with a hand-written BPTT
        missing=lambda: None,
        prepare=prepare,
    )


MANUAL = _implementation("manual")
AUTODIFF = _implementation("autodiff")
