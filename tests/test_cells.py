"""The cells on their own: ``init``, ``initial_carry`` and one ``step``.

``step`` is checked against a NumPy reference written here from the published
equations, independent of the library's code.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

CELLS = [jaxrnn.simple_rnn, jaxrnn.lstm, jaxrnn.gru]
by_cell = pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)

# Written out here rather than read from the cells, so the tests pin them.
NUM_GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}
GATE_ORDER = {"simple_rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
PARAMS_TYPE = {"simple_rnn": jaxrnn.SimpleRNNParams, "lstm": jaxrnn.LSTMParams, "gru": jaxrnn.GRUParams}

B, X, H = 3, 4, 5


def blocks(a, hidden):
    """The gate blocks of the last axis."""
    return [a[..., g * hidden : (g + 1) * hidden] for g in range(a.shape[-1] // hidden)]


# --------------------------------------------------------------------------
# A NumPy reference, from the equations (float64 throughout).


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def reference_step(name, params, carry, x):
    w_ih, w_hh, b_ih, b_hh = (np.asarray(a, np.float64) for a in params)
    x = np.asarray(x, np.float64)
    hidden = w_hh.shape[0]
    if name == "simple_rnn":
        h = np.asarray(carry, np.float64)
        h_new = np.tanh(x @ w_ih + b_ih + h @ w_hh + b_hh)
        return h_new, h_new
    if name == "lstm":
        h, c = (np.asarray(a, np.float64) for a in carry)
        z = x @ w_ih + b_ih + h @ w_hh + b_hh
        zi, zf, zg, zo = blocks(z, hidden)
        i, f, g, o = _sigmoid(zi), _sigmoid(zf), np.tanh(zg), _sigmoid(zo)
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        return (h_new, c_new), h_new
    if name == "gru":
        h = np.asarray(carry, np.float64)
        xr, xz, xn = blocks(x @ w_ih + b_ih, hidden)
        hr, hz, hn = blocks(h @ w_hh + b_hh, hidden)
        r = _sigmoid(xr + hr)
        z = _sigmoid(xz + hz)
        n = np.tanh(xn + r * hn)
        h_new = (1 - z) * n + z * h
        return h_new, h_new
    raise AssertionError(name)


def random_params(cell, rng, input_size=X, hidden=H, scale=0.5):
    """Params with every entry random and nonzero (biases included), float64."""
    width = NUM_GATES[cell.name] * hidden
    shapes = [(input_size, width), (hidden, width), (width,), (width,)]
    return cell.params_type(*(jnp.asarray(scale * rng.standard_normal(s)) for s in shapes))


def random_carry(cell, rng, batch=B, hidden=H):
    zeros = cell.initial_carry(batch, hidden, dtype=jnp.float64)
    return jax.tree.map(lambda z: jnp.asarray(rng.standard_normal(z.shape)), zeros)


def assert_tree_close(actual, expected, **tol):
    actual_leaves, expected_leaves = jax.tree.leaves(actual), jax.tree.leaves(expected)
    assert len(actual_leaves) == len(expected_leaves)
    for a, e in zip(actual_leaves, expected_leaves):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), **tol)


# --------------------------------------------------------------------------
# The cell values.


@by_cell
def test_cell_metadata(cell):
    assert cell.gates == GATE_ORDER[cell.name]
    assert cell.params_type is PARAMS_TYPE[cell.name]
    assert repr(cell) == f"jaxrnn.{cell.name}"
    assert hash(cell) == hash(cell)  # hashable, so usable as a static jit argument


# --------------------------------------------------------------------------
# init.


@by_cell
@pytest.mark.parametrize("dtype", [None, jnp.float32, jnp.float64], ids=["default", "float32", "float64"])
def test_init_shapes_and_dtype(cell, dtype):
    kwargs = {} if dtype is None else {"dtype": dtype}
    params = cell.init(jax.random.PRNGKey(0), X, H, **kwargs)
    G = NUM_GATES[cell.name]
    assert type(params) is PARAMS_TYPE[cell.name]
    assert params._fields == ("w_ih", "w_hh", "b_ih", "b_hh")
    assert params.w_ih.shape == (X, G * H)
    assert params.w_hh.shape == (H, G * H)
    assert params.b_ih.shape == (G * H,)
    assert params.b_hh.shape == (G * H,)
    expected = np.dtype(np.float32) if dtype is None else np.dtype(dtype)
    for leaf in params:
        assert leaf.dtype == expected


@by_cell
def test_init_w_hh_blocks_orthogonal(cell):
    params = cell.init(jax.random.PRNGKey(1), X, H, dtype=jnp.float64)
    qs = blocks(np.asarray(params.w_hh), H)
    assert len(qs) == NUM_GATES[cell.name]
    for q in qs:
        assert q.shape == (H, H)
        np.testing.assert_allclose(q.T @ q, np.eye(H), atol=1e-12)
        np.testing.assert_allclose(q @ q.T, np.eye(H), atol=1e-12)
    # Each gate gets its own matrix, not one copied G times.
    for a in range(len(qs)):
        for b in range(a + 1, len(qs)):
            assert not np.allclose(qs[a], qs[b])


@by_cell
def test_init_w_hh_orthogonal_in_float32(cell):
    params = cell.init(jax.random.PRNGKey(2), X, H)
    for q in blocks(np.asarray(params.w_hh, np.float64), H):
        np.testing.assert_allclose(q.T @ q, np.eye(H), atol=1e-5)


@by_cell
def test_init_w_ih_glorot_uniform_per_block(cell):
    # Pool each gate block over many keys (same shapes, so one compile) until
    # the sample statistics pin the distribution.
    bound = np.sqrt(6.0 / (X + H))  # fan-in X and fan-out H per gate block, not G*H
    samples = [[] for _ in range(NUM_GATES[cell.name])]
    for seed in range(60):
        w_ih = np.asarray(cell.init(jax.random.PRNGKey(100 + seed), X, H, dtype=jnp.float64).w_ih)
        for g, w in enumerate(blocks(w_ih, H)):
            assert w.shape == (X, H)
            samples[g].append(w)
    for g, ws in enumerate(samples):
        w = np.stack(ws)
        assert np.all(np.abs(w) <= bound), f"block {g} exceeds the Glorot bound"
        # Uniform(-b, b): reaches near the bound, mean 0, variance b²/3.
        assert np.abs(w).max() > 0.95 * bound
        assert abs(w.mean()) < 0.05 * bound
        np.testing.assert_allclose(w.var(), bound**2 / 3, rtol=0.1)
    w_ih = np.asarray(cell.init(jax.random.PRNGKey(3), X, H, dtype=jnp.float64).w_ih)
    bs = blocks(w_ih, H)
    for a in range(len(bs)):
        for b in range(a + 1, len(bs)):
            assert not np.allclose(bs[a], bs[b])


@by_cell
def test_init_biases(cell):
    params = cell.init(jax.random.PRNGKey(4), X, H, dtype=jnp.float64)
    np.testing.assert_array_equal(params.b_hh, np.zeros(NUM_GATES[cell.name] * H))
    for gate, block in zip(GATE_ORDER[cell.name], blocks(np.asarray(params.b_ih), H)):
        expected = 1.0 if (cell.name, gate) == ("lstm", "f") else 0.0
        np.testing.assert_array_equal(block, np.full(H, expected), err_msg=f"b_ih block {gate}")


def test_init_lstm_forget_bias_is_second_block():
    params = jaxrnn.lstm.init(jax.random.PRNGKey(5), X, H)
    np.testing.assert_array_equal(params.b_ih[:H], 0)
    np.testing.assert_array_equal(params.b_ih[H : 2 * H], 1)
    np.testing.assert_array_equal(params.b_ih[2 * H :], 0)


@by_cell
def test_init_deterministic_and_key_dependent(cell):
    a = cell.init(jax.random.PRNGKey(6), X, H)
    again = cell.init(jax.random.PRNGKey(6), X, H)
    other = cell.init(jax.random.PRNGKey(7), X, H)
    for name, x, y, z in zip(a._fields, a, again, other):
        np.testing.assert_array_equal(x, y, err_msg=name)
        if name.startswith("w_"):
            assert not np.allclose(x, z), f"{name} ignores the key"
        else:
            np.testing.assert_array_equal(x, z, err_msg=name)  # biases are constants


@by_cell
def test_init_accepts_new_style_keys(cell):
    old = cell.init(jax.random.PRNGKey(8), X, H)
    new = cell.init(jax.random.key(8), X, H)
    for x, y in zip(old, new):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------
# initial_carry.


@by_cell
@pytest.mark.parametrize("batch", [0, 1, B])
@pytest.mark.parametrize("dtype", [None, jnp.float64], ids=["default", "float64"])
def test_initial_carry(cell, batch, dtype):
    kwargs = {} if dtype is None else {"dtype": dtype}
    carry = cell.initial_carry(batch, H, **kwargs)
    expected_dtype = np.dtype(np.float32) if dtype is None else np.dtype(dtype)
    if cell.name == "lstm":
        assert isinstance(carry, jaxrnn.LSTMCarry)
        h, c = carry
        assert h is carry.h and c is carry.c
        leaves = [h, c]
    else:
        assert isinstance(carry, jax.Array)
        leaves = [carry]
    for leaf in leaves:
        assert leaf.shape == (batch, H)
        assert leaf.dtype == expected_dtype
        np.testing.assert_array_equal(leaf, np.zeros((batch, H)))


# --------------------------------------------------------------------------
# step.


@by_cell
def test_step_matches_numpy_reference(cell):
    rng = np.random.default_rng(10)
    params = random_params(cell, rng)
    carry = random_carry(cell, rng)
    x = jnp.asarray(rng.standard_normal((B, X)))
    new_carry, h = cell.step(params, carry, x)
    ref_carry, ref_h = reference_step(cell.name, params, carry, x)
    assert h.shape == (B, H) and h.dtype == jnp.float64
    np.testing.assert_allclose(h, ref_h, rtol=1e-12, atol=1e-12)
    assert_tree_close(new_carry, ref_carry, rtol=1e-12, atol=1e-12)
    if cell.name == "lstm":
        assert isinstance(new_carry, jaxrnn.LSTMCarry)
        np.testing.assert_array_equal(new_carry.h, h)
    else:
        np.testing.assert_array_equal(new_carry, h)


@by_cell
def test_step_reference_is_sensitive_to_every_param(cell):
    """Guards the reference comparison: perturbing any param array changes the step."""
    rng = np.random.default_rng(11)
    params = random_params(cell, rng)
    carry = random_carry(cell, rng)
    x = jnp.asarray(rng.standard_normal((B, X)))
    _, h = cell.step(params, carry, x)
    for name in params._fields:
        bumped = params._replace(**{name: getattr(params, name) + 0.1})
        _, h_bumped = cell.step(bumped, carry, x)
        assert not np.allclose(h, h_bumped), name


def test_lstm_step_accepts_plain_tuple_carry():
    rng = np.random.default_rng(12)
    params = random_params(jaxrnn.lstm, rng)
    h0, c0 = random_carry(jaxrnn.lstm, rng)
    x = jnp.asarray(rng.standard_normal((B, X)))
    for carry in [(h0, c0), [h0, c0]]:
        new_carry, h = jaxrnn.lstm.step(params, carry, x)
        assert isinstance(new_carry, jaxrnn.LSTMCarry)
        ref_carry, ref_h = reference_step("lstm", params, (h0, c0), x)
        np.testing.assert_allclose(h, ref_h, rtol=1e-12, atol=1e-12)
        assert_tree_close(new_carry, ref_carry, rtol=1e-12, atol=1e-12)


@by_cell
def test_step_as_scan_body(cell):
    T = 6
    rng = np.random.default_rng(13)
    params = random_params(cell, rng)
    carry0 = random_carry(cell, rng)
    xs = jnp.asarray(rng.standard_normal((T, B, X)))
    final, hs = jax.lax.scan(partial(cell.step, params), carry0, xs)
    assert hs.shape == (T, B, H)
    carry = carry0
    for t in range(T):
        carry, h = reference_step(cell.name, params, carry, xs[t])
        np.testing.assert_allclose(hs[t], h, rtol=1e-12, atol=1e-12)
    assert_tree_close(final, carry, rtol=1e-12, atol=1e-12)
    if cell.name == "lstm":
        assert isinstance(final, jaxrnn.LSTMCarry)


@by_cell
def test_step_under_jit_and_batch_one(cell):
    rng = np.random.default_rng(14)
    params = random_params(cell, rng)
    carry = random_carry(cell, rng, batch=1)
    x = jnp.asarray(rng.standard_normal((1, X)))
    new_carry, h = jax.jit(cell.step)(params, carry, x)
    ref_carry, ref_h = reference_step(cell.name, params, carry, x)
    assert h.shape == (1, H)
    np.testing.assert_allclose(h, ref_h, rtol=1e-12, atol=1e-12)
    assert_tree_close(new_carry, ref_carry, rtol=1e-12, atol=1e-12)


@by_cell
def test_step_accepts_dict_params(cell):
    rng = np.random.default_rng(15)
    params = random_params(cell, rng)
    carry = random_carry(cell, rng)
    x = jnp.asarray(rng.standard_normal((B, X)))
    _, h = cell.step(dict(params._asdict()), carry, x)
    _, ref_h = reference_step(cell.name, params, carry, x)
    np.testing.assert_allclose(h, ref_h, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# Mixed dtypes.


@by_cell
def test_step_promotes_float32_params_with_float64_x(cell):
    rng = np.random.default_rng(16)
    params32 = jax.tree.map(lambda a: a.astype(jnp.float32), random_params(cell, rng))
    carry32 = jax.tree.map(lambda a: a.astype(jnp.float32), random_carry(cell, rng))
    x64 = jnp.asarray(rng.standard_normal((B, X)))
    new_carry, h = cell.step(params32, carry32, x64)
    assert h.dtype == jnp.float64
    for leaf in jax.tree.leaves(new_carry):
        assert leaf.dtype == jnp.float64
    # Promoted, not computed in float32 and cast: it equals the float64 step on the same values.
    params64 = jax.tree.map(lambda a: a.astype(jnp.float64), params32)
    carry64 = jax.tree.map(lambda a: a.astype(jnp.float64), carry32)
    ref_carry, ref_h = reference_step(cell.name, params64, carry64, x64)
    np.testing.assert_allclose(h, ref_h, rtol=1e-12, atol=1e-12)
    assert_tree_close(new_carry, ref_carry, rtol=1e-12, atol=1e-12)


@by_cell
def test_step_promotes_float64_params_with_float32_x(cell):
    rng = np.random.default_rng(17)
    params = random_params(cell, rng)
    carry = random_carry(cell, rng)
    x32 = jnp.asarray(rng.standard_normal((B, X)), jnp.float32)
    new_carry, h = cell.step(params, carry, x32)
    assert h.dtype == jnp.float64
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(new_carry))


@by_cell
def test_step_float32_stays_float32(cell):
    rng = np.random.default_rng(18)
    params = cell.init(jax.random.PRNGKey(0), X, H)
    carry = cell.initial_carry(B, H)
    x = jnp.asarray(rng.standard_normal((B, X)), jnp.float32)
    new_carry, h = cell.step(params, carry, x)
    assert h.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(new_carry))
    _, ref_h = reference_step(cell.name, params, carry, x)
    np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-6)
