"""Mixed precision: 16-bit operands, float32 sums and state.

With bfloat16 or float16 params and inputs, matmuls take 16-bit operands and
accumulate in float32; the carry (the cell state) and the gradient sums stay
float32; outputs and saved residuals are 16-bit. For float32 and float64
every cast here is a no-op.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array


def accumulation_dtype(dtype) -> jnp.dtype:
    """float32 for 16-bit floats, else ``dtype`` itself."""
    return jnp.promote_types(dtype, jnp.float32)


def matmul(a: Array, w: Array) -> Array:
    """``a @ w`` by the cells' mixed-precision rule: ``w``'s dtype for both operands, summed in at least float32.

    A layer of your own around the cells, a readout on their outputs say,
    computes as they do with it: bfloat16 or float16 weights give 16-bit
    operands and a float32 result; float32 and float64 weights give a plain ``a @ w``.

    Args:
        a: the inputs, cast to ``w``'s dtype; (..., K).
        w: the weights, (K, N) (or stacked, as :func:`jax.numpy.matmul` takes them).

    Returns:
        ``a @ w``, (..., N), float32 for 16-bit weights, otherwise ``w``'s dtype.
    """
    return jnp.matmul(a.astype(w.dtype), w, preferred_element_type=accumulation_dtype(w.dtype))
