"""jaxrnn itself: the hand-written BPTT and JAX's autodiff of the same scan."""

from __future__ import annotations

import jax.numpy as jnp

import jaxrnn
from jaxrnn.bench._jax import numpy_gradients, prepare_jax
from jaxrnn.bench._problem import Data, Implementation, Prepared, Problem


def _implementation(grad: str) -> Implementation:
    def prepare(problem: Problem, data: Data) -> Prepared:
        cell = getattr(jaxrnn, problem.cell)
        params = cell.params_type(*(jnp.asarray(a) for a in (data.w_ih, data.w_hh, data.b_ih, data.b_hh)))

        def run(p, xs):
            return jaxrnn.unroll(cell, p, xs, grad=grad)[1]

        return prepare_jax(run, params, data, lambda d, d_xs: numpy_gradients(*d, d_xs))

    return Implementation(
        name=f"jaxrnn {grad}",
        cells=("lstm", "gru", "simple_rnn"),
        missing=lambda: None,
        prepare=prepare,
    )


MANUAL = _implementation("manual")
AUTODIFF = _implementation("autodiff")
