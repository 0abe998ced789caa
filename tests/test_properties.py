"""Property-based tests: random cells, shapes and sequence options against a plain step-by-step loop.

Hypothesis draws a registered cell (built-in or one of the example cells
written on the public protocol), sizes, lengths, resets, reverse, a
checkpoint interval, the layout, the dtype and the initial carry. Both grad
modes of :func:`jaxrnn.unroll` must give the reference loop's outputs, final
carry and gradients, the reference being a Python ``for`` loop over
``cell.step`` with the documented semantics written out.
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

import jaxrnn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import custom_cells  # noqa: E402

CELLS = ["simple_rnn", "lstm", "gru", "slstm", "projected_lstm", "mingru", "minlstm", "peephole_lstm",
         "layer_norm_lstm"]
assert custom_cells.peephole_lstm is jaxrnn.get_cell("peephole_lstm")


def reference(cell, params, xs, carry0, lengths, resets, reverse):
    """The semantics of unroll, one step at a time: padding keeps the carry and outputs zeros; a reset
    (at a real step) restarts from the initial carry; reverse runs T−1 down to 0, outputs in place."""
    steps, batch = xs.shape[:2]
    carry, hs = carry0, [None] * steps
    for t in (reversed(range(steps)) if reverse else range(steps)):
        start = carry
        if resets is not None:
            start = jax.tree.map(lambda a, b: jnp.where(resets[t][:, None], a, b), carry0, carry)
        new, h = cell.step(params, start, xs[t])
        valid = jnp.ones(batch, bool) if lengths is None else t < lengths
        carry = jax.tree.map(lambda a, b: jnp.where(valid[:, None], a.astype(b.dtype), b), new, carry)
        hs[t] = jnp.where(valid[:, None], h, 0)
    hidden = cell.hidden(carry0).shape[-1]
    return carry, jnp.stack(hs) if steps else jnp.zeros((0, batch, hidden), xs.dtype)


@st.composite
def problems(draw):
    name = draw(st.sampled_from(CELLS))
    steps, batch = draw(st.integers(1, 5)), draw(st.integers(1, 3))  # T = 0: test_unroll
    inputs, hidden = draw(st.integers(1, 3)), draw(st.integers(2, 4))
    dtype = draw(st.sampled_from([jnp.float64, jnp.float64, jnp.float32]))
    lengths = draw(st.none() | st.lists(st.integers(0, steps), min_size=batch, max_size=batch))
    resets = draw(st.none() | st.lists(st.booleans(), min_size=steps * batch, max_size=steps * batch))
    parallel = jaxrnn.get_cell(name).sequence is not None
    checkpoint = draw(st.sampled_from([None, 1, 2, 3]))
    scan = "sequential" if checkpoint is not None or not parallel else draw(st.sampled_from(["auto", "sequential"]))
    return dict(
        name=name, steps=steps, batch=batch, inputs=inputs, hidden=hidden, dtype=dtype, lengths=lengths,
        resets=resets, reverse=draw(st.booleans()), checkpoint=checkpoint, scan=scan,
        time_major=draw(st.booleans()), carry=draw(st.booleans()), seed=draw(st.integers(0, 2**16)),
    )


@pytest.mark.slow  # examples per run: tests/conftest.py's hypothesis profiles
@given(problems())
def test_both_grad_modes_match_a_plain_loop(problem):
    p = problem
    cell = jaxrnn.get_cell(p["name"])
    keys = jax.random.split(jax.random.key(p["seed"]), 5)
    params = cell.init(keys[0], p["inputs"], p["hidden"], dtype=p["dtype"])
    params = jax.tree.map(lambda a, k: a + 0.1 * jax.random.normal(k, a.shape, a.dtype), params,
                          jax.tree.unflatten(jax.tree.structure(params),
                                             list(jax.random.split(keys[1], len(jax.tree.leaves(params))))))
    xs = jax.random.normal(keys[2], (p["steps"], p["batch"], p["inputs"]), p["dtype"])
    carry = cell.initial_carry(p["batch"], p["hidden"], dtype=jnp.promote_types(p["dtype"], jnp.float32))
    if p["carry"]:
        carry = jax.tree.map(lambda z: 0.5 * jax.random.normal(keys[3], z.shape, z.dtype), carry)
    lengths = None if p["lengths"] is None else jnp.asarray(p["lengths"], jnp.int32)
    resets = None if p["resets"] is None else jnp.asarray(p["resets"], bool).reshape(p["steps"], p["batch"])
    hidden = cell.hidden(carry).shape[-1]
    weights = jax.random.normal(keys[4], (p["steps"], p["batch"], hidden), p["dtype"])

    def loss(params, xs, carry, grad):
        data = xs if p["time_major"] else jnp.swapaxes(xs, 0, 1)
        if grad == "reference":
            final, hs = reference(cell, params, xs, carry, lengths, resets, p["reverse"])
        else:
            final, hs = jaxrnn.unroll(cell, params, data, carry, grad=grad, lengths=lengths, resets=resets,
                                      reverse=p["reverse"], checkpoint=p["checkpoint"], scan=p["scan"],
                                      time_major=p["time_major"])
            hs = hs if p["time_major"] else jnp.swapaxes(hs, 0, 1)
        total = jnp.sum(hs * weights) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(final))
        return total, (final, hs)

    @jax.jit  # one compile for all three: compiling is most of the cost
    def every_mode(params, xs, carry):
        return {grad: jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry, grad)
                for grad in ("reference", "manual", "autodiff")}

    results = every_mode(params, xs, carry)
    rtol = 1e-9 if p["dtype"] == jnp.float64 else 2e-4
    want = jax.tree.leaves(results["reference"])
    for grad in ("manual", "autodiff"):
        got = jax.tree.leaves(results[grad])
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.dtype == b.dtype, (grad, a.shape, b.shape, a.dtype, b.dtype)
            scale = float(np.max(np.abs(np.asarray(b, np.float64)), initial=1.0))
            np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol,
                                       atol=rtol * scale, err_msg=f"{grad}: {problem}")
