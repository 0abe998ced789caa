"""``unroll``: every cell through every way of running it, and both backward passes.

Values must agree across a Python loop of ``cell.step``, ``unroll`` with either
``grad`` mode, each under ``jax.jit``, and ``jax.vmap`` over an ensemble of
params. Gradients of the hand-written BPTT (``grad="manual"``) must match JAX's
autodiff of the scan to 1e-10 relative in float64, and both must match finite
differences.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn

CELLS = [jaxrnn.simple_rnn, jaxrnn.lstm, jaxrnn.gru]
by_cell = pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
by_mode = pytest.mark.parametrize("mode", ["manual", "autodiff"])

T, B, X, H = 6, 3, 4, 5
GRAD_RTOL = 1e-10


# --------------------------------------------------------------------------
# Problems and helpers.


def make_params(cell, seed, input_size=X, hidden=H):
    """``cell.init`` params (float64) with random nonzero biases added."""
    k_init, k_ih, k_hh = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = cell.init(k_init, input_size, hidden, dtype=jnp.float64)
    return params._replace(
        b_ih=params.b_ih + 0.3 * jax.random.normal(k_ih, params.b_ih.shape, jnp.float64),
        b_hh=params.b_hh + 0.3 * jax.random.normal(k_hh, params.b_hh.shape, jnp.float64),
    )


def make_carry(cell, seed, batch=B, hidden=H):
    """A random nonzero carry of the cell's type."""
    zeros = cell.initial_carry(batch, hidden, dtype=jnp.float64)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(jax.tree.leaves(zeros)))
    leaves = [0.8 * jax.random.normal(k, z.shape, jnp.float64) for k, z in zip(keys, jax.tree.leaves(zeros))]
    return jax.tree.unflatten(jax.tree.structure(zeros), leaves)


def make_xs(seed, steps=T, batch=B, input_size=X):
    return jax.random.normal(jax.random.PRNGKey(seed), (steps, batch, input_size), jnp.float64)


def problem(cell, steps=T, batch=B, seed=0):
    return make_params(cell, seed), make_xs(seed + 1, steps, batch), make_carry(cell, seed + 2, batch)


def loop_unroll(cell, params, xs, carry):
    """The reference: a Python loop of ``cell.step``."""
    hs = []
    for t in range(xs.shape[0]):
        carry, h = cell.step(params, carry, xs[t])
        hs.append(h)
    hs = jnp.stack(hs) if hs else jnp.zeros((0, xs.shape[1], jax.tree.leaves(carry)[0].shape[-1]), xs.dtype)
    return carry, hs


def make_loss(cell, steps=T, batch=B, seed=99):
    """A scalar loss touching every output and every leaf of the final carry."""
    k_r, *k_s = jax.random.split(jax.random.PRNGKey(seed), 3)
    R = jax.random.normal(k_r, (steps, batch, H), jnp.float64)
    S = [jax.random.normal(k, (batch, H), jnp.float64) for k in k_s]

    def loss(params, xs, carry, mode):
        final, hs = jaxrnn.unroll(cell, params, xs, carry, grad=mode)
        value = jnp.sum(jnp.sin(hs) * R)
        for leaf, s in zip(jax.tree.leaves(final), S):
            value = value + jnp.sum(jnp.cos(leaf) * s) + 0.5 * jnp.sum(leaf**2)
        return value

    return loss


def assert_trees_close(actual, expected, rtol=1e-12, atol=1e-12):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        assert a.shape == e.shape and a.dtype == e.dtype
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)


def assert_grads_match(manual, autodiff, rtol=GRAD_RTOL):
    """Leafwise ``max|manual - autodiff| <= rtol * max|autodiff|``, on nonzero gradients."""
    assert jax.tree.structure(manual) == jax.tree.structure(autodiff)
    for path_m, m in jax.tree_util.tree_leaves_with_path(manual):
        a = autodiff
        for key in path_m:  # the same leaf in the other tree
            a = a[key.idx] if hasattr(key, "idx") else getattr(a, key.name)
        m, a = np.asarray(m), np.asarray(a)
        assert m.shape == a.shape and m.dtype == a.dtype
        scale = np.abs(a).max()
        assert scale > 0, f"gradient {jax.tree_util.keystr(path_m)} is zero: nothing compared"
        err = np.abs(m - a).max()
        assert err <= rtol * scale, f"{jax.tree_util.keystr(path_m)}: max err {err:.3e}, scale {scale:.3e}"


# --------------------------------------------------------------------------
# Values: every variant agrees with the loop.


VARIANTS = {
    "autodiff": lambda cell: functools.partial(jaxrnn.unroll, cell, grad="autodiff"),
    "manual": lambda cell: functools.partial(jaxrnn.unroll, cell, grad="manual"),
    "jit-autodiff": lambda cell: jax.jit(functools.partial(jaxrnn.unroll, cell, grad="autodiff")),
    "jit-manual": lambda cell: jax.jit(functools.partial(jaxrnn.unroll, cell, grad="manual")),
    "jit-loop": lambda cell: jax.jit(functools.partial(loop_unroll, cell)),
}


@by_cell
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_match_loop(cell, variant):
    params, xs, carry = problem(cell)
    expected = loop_unroll(cell, params, xs, carry)
    final, hs = VARIANTS[variant](cell)(params, xs, carry)
    assert hs.shape == (T, B, H) and hs.dtype == jnp.float64
    assert_trees_close((final, hs), expected)
    if cell is jaxrnn.lstm:
        assert isinstance(final, jaxrnn.LSTMCarry)
    # The outputs actually vary over time (a stuck state would pass trivially).
    assert not np.allclose(hs[0], hs[-1])


@by_cell
@by_mode
def test_vmap_over_param_ensemble(cell, mode):
    members = [make_params(cell, seed) for seed in (10, 11, 12)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *members)
    _, xs, carry = problem(cell)
    final, hs = jax.vmap(lambda p: jaxrnn.unroll(cell, p, xs, carry, grad=mode))(stacked)
    assert hs.shape == (3, T, B, H)
    for m, p in enumerate(members):
        expected = loop_unroll(cell, p, xs, carry)
        assert_trees_close((jax.tree.map(lambda a: a[m], final), hs[m]), expected)
    assert not np.allclose(hs[0], hs[1])


@by_cell
@by_mode
def test_jit_vmap_over_xs_and_carry(cell, mode):
    params, _, _ = problem(cell)
    xs = jnp.stack([make_xs(s) for s in (20, 21)])
    carry = jax.tree.map(lambda *a: jnp.stack(a), *[make_carry(cell, s) for s in (22, 23)])
    run = jax.jit(jax.vmap(lambda x, c: jaxrnn.unroll(cell, params, x, c, grad=mode)))
    final, hs = run(xs, carry)
    for m in range(2):
        expected = loop_unroll(cell, params, xs[m], jax.tree.map(lambda a: a[m], carry))
        assert_trees_close((jax.tree.map(lambda a: a[m], final), hs[m]), expected)


# --------------------------------------------------------------------------
# Gradients: manual against autodiff.


def test_manual_mode_uses_custom_vjp():
    """Without this, manual-vs-autodiff comparisons could be comparing autodiff with itself."""
    params, xs, carry = problem(jaxrnn.lstm)
    manual = str(jax.make_jaxpr(lambda p: jaxrnn.unroll(jaxrnn.lstm, p, xs, carry, grad="manual"))(params))
    autodiff = str(jax.make_jaxpr(lambda p: jaxrnn.unroll(jaxrnn.lstm, p, xs, carry, grad="autodiff"))(params))
    assert "custom_vjp" in manual
    assert "custom_vjp" not in autodiff


@by_cell
def test_manual_grads_match_autodiff(cell):
    params, xs, carry = problem(cell)
    loss = make_loss(cell)
    grad = jax.grad(loss, argnums=(0, 1, 2))
    manual = grad(params, xs, carry, "manual")
    autodiff = grad(params, xs, carry, "autodiff")
    assert type(manual[0]) is cell.params_type
    if cell is jaxrnn.lstm:
        assert isinstance(manual[2], jaxrnn.LSTMCarry)
    assert_grads_match(manual, autodiff)
    # The loss values agree too.
    np.testing.assert_allclose(loss(params, xs, carry, "manual"), loss(params, xs, carry, "autodiff"), rtol=1e-12)


@by_cell
def test_manual_grads_match_autodiff_under_jit(cell):
    params, xs, carry = problem(cell, seed=30)
    loss = make_loss(cell)
    grad = jax.grad(loss, argnums=(0, 1, 2))
    both = jax.jit(lambda p, x, c: (grad(p, x, c, "manual"), grad(p, x, c, "autodiff")))
    assert_grads_match(*both(params, xs, carry))


@by_cell
def test_manual_grads_match_autodiff_through_vmap(cell):
    members = [make_params(cell, seed) for seed in (40, 41, 42)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *members)
    _, xs, carry = problem(cell)
    loss = make_loss(cell)
    per_member = jax.vmap(jax.grad(loss), in_axes=(0, None, None, None))
    manual = per_member(stacked, xs, carry, "manual")
    autodiff_grad = jax.jit(jax.grad(loss), static_argnums=3)  # one compile for the three members
    for m, p in enumerate(members):
        expected = autodiff_grad(p, xs, carry, "autodiff")
        assert_grads_match(jax.tree.map(lambda a: a[m], manual), expected)
    assert not np.allclose(manual.w_hh[0], manual.w_hh[1])


@by_cell
def test_grad_wrt_params_manual_inside_jit_with_static_cell(cell):
    @functools.partial(jax.jit, static_argnums=0)
    def param_grad(cell_, params, xs, carry):
        return jax.grad(lambda p: make_loss(cell_)(p, xs, carry, "manual"))(params)

    params, xs, carry = problem(cell, seed=50)
    got = param_grad(cell, params, xs, carry)
    assert type(got) is cell.params_type
    assert_grads_match(got, jax.grad(make_loss(cell))(params, xs, carry, "autodiff"))


def test_static_cell_argument_selects_the_cell():
    """The same jitted function with a different static cell recompiles for that cell."""

    @functools.partial(jax.jit, static_argnums=0)
    def run(cell_, params, xs):
        return jaxrnn.unroll(cell_, params, xs)[1]

    xs = make_xs(60)
    for cell in CELLS:
        params = make_params(cell, 61)
        zeros = cell.initial_carry(B, H, dtype=jnp.float64)
        expected = loop_unroll(cell, params, xs, zeros)[1]
        np.testing.assert_allclose(run(cell, params, xs), expected, rtol=1e-12, atol=1e-12)


@by_cell
@pytest.mark.parametrize("which", ["final_only", "hs_only"])
def test_vjp_with_partial_cotangents(cell, which):
    params, xs, carry = problem(cell, seed=70)
    final0, hs0 = jaxrnn.unroll(cell, params, xs, carry, grad="autodiff")
    key_f, key_h = jax.random.split(jax.random.PRNGKey(71))
    d_final = jax.tree.map(lambda a: jax.random.normal(key_f, a.shape, a.dtype), final0)
    d_hs = jax.random.normal(key_h, hs0.shape, hs0.dtype)
    if which == "final_only":
        d_hs = jnp.zeros_like(d_hs)
    else:
        d_final = jax.tree.map(jnp.zeros_like, d_final)

    def vjp(mode):
        _, pullback = jax.vjp(lambda p, x, c: jaxrnn.unroll(cell, p, x, c, grad=mode), params, xs, carry)
        return pullback((d_final, d_hs))

    manual, autodiff = vjp("manual"), vjp("autodiff")
    assert_grads_match(manual, autodiff)


# --------------------------------------------------------------------------
# Finite differences.


@by_cell
@pytest.mark.parametrize("wrt", ["params", "xs", "carry"])
def test_manual_grads_finite_differences(cell, wrt):
    params, xs, carry = problem(cell, steps=5, seed=80)
    args = {"params": params, "xs": xs, "carry": carry}

    @jax.jit
    def f(arg):
        kwargs = dict(args, **{wrt: arg})
        return jaxrnn.unroll(cell, kwargs["params"], kwargs["xs"], kwargs["carry"], grad="manual")

    check_grads(f, (args[wrt],), order=1, modes=["rev"])


@pytest.mark.sweep
@by_cell
def test_manual_grads_second_order_finite_differences(cell):
    """Grad of grad through the custom_vjp: its backward pass is itself differentiable."""
    params, xs, carry = problem(cell, steps=5, seed=90)
    f = jax.jit(lambda p, x, c: jaxrnn.unroll(cell, p, x, c, grad="manual"))
    check_grads(f, (params, xs, carry), order=2, modes=["rev"])


# --------------------------------------------------------------------------
# Edge cases.


@by_cell
@by_mode
def test_carry_none_is_zeros(cell, mode):
    params, xs, _ = problem(cell)
    zeros = cell.initial_carry(B, H, dtype=jnp.float64)
    got = jaxrnn.unroll(cell, params, xs, grad=mode)
    assert_trees_close(got, jaxrnn.unroll(cell, params, xs, zeros, grad=mode))
    assert_trees_close(got, loop_unroll(cell, params, xs, zeros))


@by_cell
@by_mode
def test_zero_steps(cell, mode):
    params, _, carry = problem(cell)
    xs = jnp.zeros((0, B, X), jnp.float64)
    final, hs = jaxrnn.unroll(cell, params, xs, carry, grad=mode)
    assert hs.shape == (0, B, H) and hs.dtype == jnp.float64
    assert_trees_close(final, carry, rtol=0, atol=0)
    if cell is jaxrnn.lstm:
        assert isinstance(final, jaxrnn.LSTMCarry)
        final_t, _ = jaxrnn.unroll(cell, params, xs, tuple(carry), grad=mode)
        assert isinstance(final_t, jaxrnn.LSTMCarry)
    # carry=None at T = 0 gives zeros.
    final0, _ = jaxrnn.unroll(cell, params, xs, grad=mode)
    assert_trees_close(final0, cell.initial_carry(B, H, dtype=jnp.float64), rtol=0, atol=0)
    # And under jit.
    final_j, hs_j = jax.jit(lambda p, x, c: jaxrnn.unroll(cell, p, x, c, grad=mode))(params, xs, carry)
    assert hs_j.shape == (0, B, H)
    assert_trees_close(final_j, carry, rtol=0, atol=0)


@by_cell
@by_mode
def test_zero_steps_grads(cell, mode):
    params, _, carry = problem(cell)
    xs = jnp.zeros((0, B, X), jnp.float64)
    S = jax.tree.map(lambda a: jnp.sin(jnp.arange(a.size, dtype=a.dtype).reshape(a.shape) + 1.0), carry)

    def loss(p, x, c):
        final, hs = jaxrnn.unroll(cell, p, x, c, grad=mode)
        return sum(jnp.vdot(a, s) for a, s in zip(jax.tree.leaves(final), jax.tree.leaves(S))) + jnp.sum(hs)

    d_params, d_xs, d_carry = jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry)
    for leaf in d_params:
        np.testing.assert_array_equal(leaf, 0)
    assert d_xs.shape == (0, B, X)
    assert_trees_close(d_carry, S, rtol=0, atol=0)  # the final carry is the initial carry


@by_cell
@pytest.mark.parametrize("steps,batch", [(1, B), (T, 1)], ids=["T1", "batch1"])
def test_small_shapes(cell, steps, batch):
    params, xs, carry = problem(cell, steps=steps, batch=batch, seed=100)
    expected = loop_unroll(cell, params, xs, carry)
    assert expected[1].shape == (steps, batch, H)
    for mode in ("manual", "autodiff"):
        assert_trees_close(jaxrnn.unroll(cell, params, xs, carry, grad=mode), expected)
    grad = jax.grad(make_loss(cell, steps=steps, batch=batch), argnums=(0, 1, 2))
    both = jax.jit(lambda p, x, c: (grad(p, x, c, "manual"), grad(p, x, c, "autodiff")))
    assert_grads_match(*both(params, xs, carry))


@by_cell
@by_mode
def test_nan_in_inputs_propagates(cell, mode):
    params, xs, carry = problem(cell)
    bad_t, bad_b = 2, 1
    xs = xs.at[bad_t, bad_b, 0].set(jnp.nan)
    final, hs = jaxrnn.unroll(cell, params, xs, carry, grad=mode)
    hs = np.asarray(hs)
    # From the bad step on, that example's outputs are NaN...
    assert np.all(np.isnan(hs[bad_t:, bad_b]))
    for leaf in jax.tree.leaves(final):
        assert np.all(np.isnan(np.asarray(leaf)[bad_b]))
    # ...while earlier steps and the other examples are untouched.
    assert np.all(np.isfinite(hs[:bad_t]))
    others = [b for b in range(B) if b != bad_b]
    assert np.all(np.isfinite(hs[:, others]))
    clean = jaxrnn.unroll(cell, params, xs.at[bad_t, bad_b, 0].set(0.0), carry, grad=mode)[1]
    np.testing.assert_allclose(hs[:, others], np.asarray(clean)[:, others], rtol=1e-12, atol=1e-12)


@by_mode
def test_lstm_plain_tuple_carry(mode):
    params, xs, carry = problem(jaxrnn.lstm)
    expected = jaxrnn.unroll(jaxrnn.lstm, params, xs, carry, grad=mode)
    for plain in [tuple(carry), list(carry)]:
        final, hs = jaxrnn.unroll(jaxrnn.lstm, params, xs, plain, grad=mode)
        assert isinstance(final, jaxrnn.LSTMCarry)
        assert_trees_close((final, hs), expected, rtol=0, atol=0)
    # And it is differentiable w.r.t. the plain tuple, which keeps its structure.
    loss = lambda c: jnp.sum(jaxrnn.unroll(jaxrnn.lstm, params, xs, c, grad=mode)[1] ** 2)
    d_plain = jax.grad(loss)(tuple(carry))
    assert type(d_plain) is tuple
    d_named = jax.grad(loss)(carry)
    np.testing.assert_allclose(d_plain[0], d_named.h, rtol=1e-12)
    np.testing.assert_allclose(d_plain[1], d_named.c, rtol=1e-12)


@pytest.mark.sweep
@by_cell
@by_mode
def test_mixed_dtypes_promote(cell, mode):
    params, xs, carry = problem(cell)
    params32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    final, hs = jaxrnn.unroll(cell, params32, xs, carry, grad=mode)
    assert hs.dtype == jnp.float64
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(final))
    expected = loop_unroll(cell, jax.tree.map(lambda a: a.astype(jnp.float64), params32), xs, carry)
    assert_trees_close((final, hs), expected)
    # Gradients come back in the params' own dtype.
    g = jax.grad(lambda p: jnp.sum(jaxrnn.unroll(cell, p, xs, carry, grad=mode)[1]))(params32)
    assert all(leaf.dtype == jnp.float32 for leaf in g)


@pytest.mark.sweep
@by_cell
def test_float32_end_to_end(cell):
    params = cell.init(jax.random.PRNGKey(0), X, H)
    xs = make_xs(110).astype(jnp.float32)
    p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    expected = jaxrnn.unroll(cell, p64, xs.astype(jnp.float64), grad="autodiff")
    loss = lambda p, mode: jnp.sum(jnp.sin(jaxrnn.unroll(cell, p, xs, grad=mode)[1]))
    for mode in ("manual", "autodiff"):
        final, hs = jaxrnn.unroll(cell, params, xs, grad=mode)
        assert hs.dtype == jnp.float32
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(final))
        np.testing.assert_allclose(hs, expected[1], rtol=1e-5, atol=1e-5)
    g = jax.jit(lambda p: (jax.grad(loss)(p, "manual"), jax.grad(loss)(p, "autodiff")))(params)
    for leaf in jax.tree.leaves(g):
        assert leaf.dtype == jnp.float32
    assert_grads_match(g[0], g[1], rtol=1e-4)


@by_cell
def test_batch_zero(cell):
    params = make_params(cell, 120)
    xs = jnp.zeros((T, 0, X), jnp.float64)
    for mode in ("manual", "autodiff"):
        final, hs = jaxrnn.unroll(cell, params, xs, grad=mode)
        assert hs.shape == (T, 0, H)
        assert all(leaf.shape == (0, H) for leaf in jax.tree.leaves(final))
    grad = jax.grad(lambda p, mode: jnp.sum(jaxrnn.unroll(cell, p, xs, grad=mode)[1]))
    for g in jax.jit(lambda p: (grad(p, "manual"), grad(p, "autodiff")))(params):
        for leaf in g:
            np.testing.assert_array_equal(leaf, 0)  # no examples, no gradient
