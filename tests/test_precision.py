"""Mixed precision: 16-bit params and inputs, float32 state and sums.

Errors are measured against the same computation in float32, as relative
norms ||a - b|| / ||b||; bfloat16 keeps 8 bits of mantissa (ε ≈ 4e-3),
float16 keeps 11 (ε ≈ 5e-4).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

CELLS = [jaxrnn.simple_rnn, jaxrnn.lstm, jaxrnn.gru, jaxrnn.slstm]
T, B, X, H = 20, 4, 8, 16
# (dtype, bound on forward error, bound on gradient error), both relative to float32.
DTYPES = {"bfloat16": (jnp.bfloat16, 3e-2, 6e-2), "float16": (jnp.float16, 4e-3, 8e-3)}


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def problem(cell, **options):
    params = cell.init(jax.random.key(0), X, H, **options)
    params = params._replace(b_hh=params.b_hh + 0.1)
    xs = jax.random.normal(jax.random.key(1), (T, B, X))
    carry = jax.tree.map(lambda z: 0.5 * jax.random.normal(jax.random.key(2), z.shape), cell.initial_carry(B, H))
    weights = jax.random.normal(jax.random.key(3), (T, B, H))
    return params, xs, carry, weights


def grads_and_outputs(cell, params, xs, carry, weights, mode):
    def loss(params, xs, carry):
        final, hs = jaxrnn.unroll(cell, params, xs, carry, grad=mode)
        value = jnp.sum(hs.astype(jnp.float32) * weights) + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(final))
        return value, (final, hs)

    (_, outputs), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(params, xs, carry)
    return outputs, grads


# bfloat16 for every cell; float16 takes the same code path with other roundings, so one cell suffices.
@pytest.mark.sweep
@pytest.mark.parametrize("cell, name", [(cell, "bfloat16") for cell in CELLS] + [(jaxrnn.lstm, "float16")],
                         ids=lambda v: getattr(v, "name", v))
def test_sixteen_bit_compute_with_float32_state(cell, name):
    dtype, forward_bound, grad_bound = DTYPES[name]
    params, xs, carry, weights = problem(cell)
    low = jax.tree.map(lambda a: a.astype(dtype), (params, xs, carry))
    reference_outputs, reference_grads = grads_and_outputs(cell, params, xs, carry, weights, "autodiff")
    results = {mode: grads_and_outputs(cell, *low, weights, mode) for mode in ("manual", "autodiff")}

    for mode, ((final, hs), grads) in results.items():
        assert hs.dtype == dtype, mode  # outputs in the compute dtype
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(final)), mode  # state in float32
        assert all(g.dtype == a.dtype for g, a in zip(jax.tree.leaves(grads), jax.tree.leaves(low)))
        assert relative_error(hs, reference_outputs[1]) < forward_bound, mode
        for leaf, ref in zip(jax.tree.leaves(final), jax.tree.leaves(reference_outputs[0])):
            assert relative_error(leaf, ref) < forward_bound, mode
        for g, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(reference_grads)):
            assert relative_error(g, ref) < grad_bound, mode

    # The two backward passes agree to the precision of the dtype.
    for manual, autodiff in zip(jax.tree.leaves(results["manual"][1]), jax.tree.leaves(results["autodiff"][1])):
        assert relative_error(manual, autodiff) < grad_bound


@pytest.mark.slow
@pytest.mark.parametrize("cell", [jaxrnn.lstm, jaxrnn.slstm], ids=lambda c: c.name)
def test_sixteen_bit_heads(cell):
    """Headed cells in bfloat16: manual and autodiff agree, and both stay near float32."""
    params, xs, carry, weights = problem(cell, num_heads=4)
    low = jax.tree.map(lambda a: a.astype(jnp.bfloat16), (params, xs, carry))
    _, reference = grads_and_outputs(cell, params, xs, carry, weights, "autodiff")
    (_, manual), (_, autodiff) = (grads_and_outputs(cell, *low, weights, mode) for mode in ("manual", "autodiff"))
    assert manual[0].w_hh.shape == (4, 4, len(cell.gates) * 4) and manual[0].w_hh.dtype == jnp.bfloat16
    for m, a, ref in zip(jax.tree.leaves(manual), jax.tree.leaves(autodiff), jax.tree.leaves(reference)):
        assert relative_error(m, a) < DTYPES["bfloat16"][2] and relative_error(m, ref) < DTYPES["bfloat16"][2]


def test_state_in_float32_keeps_small_increments():
    """Why the state stays float32: bfloat16 loses increments below half an ulp.

    With the input gate nearly shut (bias -6), the forget gate open (bias 10)
    and a positive candidate, c grows by about 2e-3 a step, under half an ulp
    of bfloat16 once c passes 0.5. On unit-scale gates (test above) the two
    states err alike, since gate rounding dominates; here they do not.
    """
    cell = jaxrnn.lstm
    params = cell.init(jax.random.key(0), X, H)
    bias = jnp.concatenate([jnp.full(H, -6.0), jnp.full(H, 10.0), jnp.full(H, 1.0), jnp.zeros(H)])  # i, f, g, o
    params = params._replace(w_ih=0.05 * params.w_ih, b_ih=bias)
    xs = jax.random.normal(jax.random.key(1), (400, B, X))
    reference, _ = jaxrnn.unroll(cell, params, xs)
    low_params, low_xs = jax.tree.map(lambda a: a.astype(jnp.bfloat16), (params, xs))
    mixed, _ = jaxrnn.unroll(cell, low_params, low_xs)

    def bf16_state_loop(carry, x):  # what a 16-bit state would do: round it every step
        carry, h = cell.step(low_params, carry, x)
        return jax.tree.map(lambda a: a.astype(jnp.bfloat16), carry), h

    rounded, _ = jax.lax.scan(bf16_state_loop, cell.initial_carry(B, H, dtype=jnp.bfloat16), low_xs)
    assert relative_error(mixed.c, reference.c) < 5e-3
    assert relative_error(rounded.c, reference.c) > 20 * relative_error(mixed.c, reference.c)
