"""jaxrnn.notebook: the seeds' numbers, and backward passes equal to jax.vjp."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import notebook as nb

PRINTED = 5e-9  # the seeds print arrays to 8 decimals


def rnn_parameters():
    """The seeds' RNN parameter construction, in their randn order (after x and a)."""
    return {
        "Waa": np.random.randn(5, 5),
        "Wax": np.random.randn(5, 3),
        "Wya": np.random.randn(2, 5),
        "ba": np.random.randn(5, 1),
        "by": np.random.randn(2, 1),
    }


# n_x = 3, n_a = 5, n_y = 2, in the seeds' randn order.
LSTM_SHAPES = {"Wf": (5, 8), "bf": (5, 1), "Wi": (5, 8), "bi": (5, 1), "Wo": (5, 8),
               "bo": (5, 1), "Wc": (5, 8), "bc": (5, 1), "Wy": (2, 5), "by": (2, 1)}


def lstm_parameters(rng=None):
    """The seeds' LSTM parameters from np.random's global state, or from ``rng``."""
    draw = np.random.randn if rng is None else (lambda *shape: rng.normal(size=shape))
    return {key: draw(*shape) for key, shape in LSTM_SHAPES.items()}


# --------------------------------------------------------------------------
# The numbers the seeds print (seed 003; seeds 000 and 002 print the same LSTM ones).


def test_rnn_cell_forward_seed_numbers():
    np.random.seed(1)
    xt, a_prev = np.random.randn(3, 10), np.random.randn(5, 10)
    a_next, yt_pred, cache = nb.rnn_cell_forward(xt, a_prev, rnn_parameters())
    np.testing.assert_allclose(a_next[4], [0.59584544, 0.18141802, 0.61311866, 0.99808218, 0.85016201,
                                           0.99980978, -0.18887155, 0.99815551, 0.6531151, 0.82872037], atol=PRINTED)
    np.testing.assert_allclose(yt_pred[1], [0.9888161, 0.01682021, 0.21140899, 0.36817467, 0.98988387,
                                            0.88945212, 0.36920224, 0.9966312, 0.9982559, 0.17746526], atol=PRINTED)
    assert a_next.shape == (5, 10) and yt_pred.shape == (2, 10) and len(cache) == 4


def test_rnn_forward_seed_numbers():
    np.random.seed(1)
    x, a0 = np.random.randn(3, 10, 4), np.random.randn(5, 10)
    a, y_pred, caches = nb.rnn_forward(x, a0, rnn_parameters())
    np.testing.assert_allclose(a[4][1], [-0.99999375, 0.77911235, -0.99861469, -0.99833267], atol=PRINTED)
    np.testing.assert_allclose(y_pred[1][3], [0.79560373, 0.86224861, 0.11118257, 0.81515947], atol=PRINTED)
    np.testing.assert_allclose(caches[1][1][3], [-1.1425182, -0.34934272, -0.20889423, 0.58662319], atol=PRINTED)
    assert a.shape == (5, 10, 4) and y_pred.shape == (2, 10, 4) and len(caches) == 2


def test_lstm_cell_forward_seed_numbers():
    np.random.seed(1)
    xt, a_prev, c_prev = np.random.randn(3, 10), np.random.randn(5, 10), np.random.randn(5, 10)
    a_next, c_next, yt, cache = nb.lstm_cell_forward(xt, a_prev, c_prev, lstm_parameters())
    np.testing.assert_allclose(a_next[4], [-0.66408471, 0.0036921, 0.02088357, 0.22834167, -0.85575339,
                                           0.00138482, 0.76566531, 0.34631421, -0.00215674, 0.43827275], atol=PRINTED)
    np.testing.assert_allclose(c_next[2], [0.63267805, 1.00570849, 0.35504474, 0.20690913, -1.64566718,
                                           0.11832942, 0.76449811, -0.0981561, -0.74348425, -0.26810932], atol=PRINTED)
    np.testing.assert_allclose(yt[1], [0.79913913, 0.15986619, 0.22412122, 0.15606108, 0.97057211,
                                       0.31146381, 0.00943007, 0.12666353, 0.39380172, 0.07828381], atol=PRINTED)
    np.testing.assert_allclose(cache[1][3], [-0.16263996, 1.03729328, 0.72938082, -0.54101719, 0.02752074,
                                             -0.30821874, 0.07651101, -1.03752894, 1.41219977, -0.37647422],
                               atol=PRINTED)
    assert len(cache) == 10 and yt.shape == (2, 10)


def test_lstm_forward_seed_numbers():
    np.random.seed(1)
    x, a0 = np.random.randn(3, 10, 7), np.random.randn(5, 10)
    a, y, c, caches = nb.lstm_forward(x, a0, lstm_parameters())
    # Printed to full precision; agreement to a few ulps (summation order differs).
    np.testing.assert_allclose(a[4][3][6], 0.17211776753291672, rtol=1e-14)
    np.testing.assert_allclose(y[1][4][3], 0.9508734618501101, rtol=1e-14)
    np.testing.assert_allclose(c[1][2][1], -0.8555449167181982, rtol=1e-14)
    np.testing.assert_allclose(caches[1][1][1], [0.82797464, 0.23009474, 0.76201118, -0.22232814,
                                                 -0.20075807, 0.18656139, 0.41005165], atol=PRINTED)
    assert a.shape == (5, 10, 7) and y.shape == (2, 10, 7) and len(caches) == 2


# --------------------------------------------------------------------------
# The seeds' bugs, not copied.


def test_lstm_prediction_uses_wy_and_by():
    # Seed 004 predicted softmax(a_next).
    rng = np.random.default_rng(0)
    xt, a_prev, c_prev = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    p = lstm_parameters(rng)
    a_next, _, yt, _ = nb.lstm_cell_forward(xt, a_prev, c_prev, p)
    logits = p["Wy"] @ np.asarray(a_next) + p["by"]
    expected = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
    np.testing.assert_allclose(yt, expected, rtol=1e-13)


def test_softmax_is_per_column_and_stable():
    # Seeds subtracted the global max: column 1 here would be exp(-2000)/0 = nan.
    z = np.array([[1000.0, -1000.0], [999.0, -1001.0]])
    y = nb.softmax(z)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=0), 1.0, rtol=1e-15)
    np.testing.assert_allclose(y[:, 1], y[:, 0], rtol=1e-12)  # same gaps, same probabilities


def test_rnn_prediction_is_finite_for_spread_logits():
    np.random.seed(1)
    x, a0 = np.random.randn(3, 10, 4), np.random.randn(5, 10)
    p = rnn_parameters()
    p["by"] = np.array([[800.0], [-800.0]])
    _, y_pred, _ = nb.rnn_forward(x, a0, p)
    assert np.all(np.isfinite(y_pred))
    np.testing.assert_allclose(np.asarray(y_pred).sum(axis=0), 1.0, rtol=1e-12)


# --------------------------------------------------------------------------
# Backward passes equal jax.vjp of the forward, and finite differences.


def _assert_dicts_close(ours: dict, theirs: dict, rtol=1e-12, atol=1e-13):
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key], value, rtol=rtol, atol=atol, err_msg=key)


def _lstm_problem(seed=0, T=6):
    rng = np.random.default_rng(seed)
    x, a0 = rng.normal(size=(3, 4, T)), rng.normal(size=(5, 4))
    p = lstm_parameters(rng)
    return x, a0, p, rng


def test_lstm_cell_backward_equals_vjp():
    rng = np.random.default_rng(1)
    xt, a_prev, c_prev = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    p = lstm_parameters(rng)
    da_next, dc_next = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    *_, cache = nb.lstm_cell_forward(xt, a_prev, c_prev, p)
    ours = nb.lstm_cell_backward(da_next, dc_next, cache)
    _, vjp = jax.vjp(lambda *args: nb.lstm_cell_forward(*args)[:2], xt, a_prev, c_prev, p)
    dxt, da_prev, dc_prev, dp = vjp((da_next, dc_next))
    assert set(ours) == {"dxt", "da_prev", "dc_prev", "dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo"}
    _assert_dicts_close(ours, {"dxt": dxt, "da_prev": da_prev, "dc_prev": dc_prev,
                               **{f"d{k}": v for k, v in dp.items() if k not in ("Wy", "by")}})


def test_rnn_cell_backward_equals_vjp():
    rng = np.random.default_rng(2)
    xt, a_prev = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    np.random.seed(2)
    p = rnn_parameters()
    da_next = rng.normal(size=(5, 4))
    _, _, cache = nb.rnn_cell_forward(xt, a_prev, p)
    ours = nb.rnn_cell_backward(da_next, cache)
    _, vjp = jax.vjp(lambda *args: nb.rnn_cell_forward(*args)[0], xt, a_prev, p)
    dxt, da_prev, dp = vjp(da_next)
    assert set(ours) == {"dxt", "da_prev", "dWax", "dWaa", "dba"}
    _assert_dicts_close(ours, {"dxt": dxt, "da_prev": da_prev, "dWax": dp["Wax"], "dWaa": dp["Waa"], "dba": dp["ba"]})


@pytest.mark.slow
def test_lstm_backward_equals_vjp_and_finite_differences():
    x, a0, p, rng = _lstm_problem()
    a, _, _, caches = nb.lstm_forward(x, a0, p)
    da = rng.normal(size=a.shape)
    ours = nb.lstm_backward(da, caches)
    assert list(ours) == ["dx", "da0", "dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo"]

    @jax.jit
    def hidden_states(x, a0, p):
        return nb.lstm_forward(x, a0, p)[0]

    _, vjp = jax.vjp(hidden_states, x, a0, p)
    dx, da0, dp = vjp(da)
    _assert_dicts_close(ours, {"dx": dx, "da0": da0, **{f"d{k}": dp[k] for k in ("Wf", "bf", "Wi", "bi", "Wc",
                                                                                   "bc", "Wo", "bo")}})
    # Seed 002 kept only the first step's weight gradient; a directional finite
    # difference over all parameters catches that independently of jax.vjp.
    v = {k: rng.normal(size=np.shape(val)) for k, val in p.items() if k not in ("Wy", "by")}
    eps = 1e-6

    def loss(scale):
        shifted = {k: p[k] + scale * v.get(k, 0) for k in p}
        return float(np.sum(da * np.asarray(hidden_states(x, a0, shifted))))

    numeric = (loss(eps) - loss(-eps)) / (2 * eps)
    analytic = sum(float(np.sum(ours[f"d{k}"] * v[k])) for k in v)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7)


@pytest.mark.slow
def test_rnn_backward_equals_vjp_and_finite_differences():
    rng = np.random.default_rng(4)
    x, a0 = rng.normal(size=(3, 4, 5)), rng.normal(size=(5, 4))
    np.random.seed(4)
    p = rnn_parameters()
    a, _, caches = nb.rnn_forward(x, a0, p)
    da = rng.normal(size=a.shape)
    ours = nb.rnn_backward(da, caches)
    assert list(ours) == ["dx", "da0", "dWax", "dWaa", "dba"]
    hidden_states = jax.jit(lambda x, a0, p: nb.rnn_forward(x, a0, p)[0])
    _, vjp = jax.vjp(hidden_states, x, a0, p)
    dx, da0, dp = vjp(da)
    _assert_dicts_close(ours, {"dx": dx, "da0": da0, "dWax": dp["Wax"], "dWaa": dp["Waa"], "dba": dp["ba"]})
    v, eps = rng.normal(size=x.shape), 1e-6

    def loss(scale):
        return float(np.sum(da * np.asarray(hidden_states(x + scale * v, a0, p))))

    np.testing.assert_allclose(np.sum(ours["dx"] * v), (loss(eps) - loss(-eps)) / (2 * eps), rtol=1e-7)


def test_jit_matches_eager():
    x, a0, p, rng = _lstm_problem(seed=5)
    a, y, c, caches = nb.lstm_forward(x, a0, p)
    a_j, y_j, c_j, caches_j = jax.jit(nb.lstm_forward)(x, a0, p)
    for ours, jitted in ((a, a_j), (y, y_j), (c, c_j)):
        np.testing.assert_allclose(jitted, ours, rtol=1e-13)
    da = rng.normal(size=a.shape)
    _assert_dicts_close(jax.jit(nb.lstm_backward)(da, caches_j), nb.lstm_backward(da, caches))


def test_empty_sequence():
    x, a0, p, _ = _lstm_problem(T=0)
    a, y, c, caches = nb.lstm_forward(x, a0, p)
    assert a.shape == (5, 4, 0) and y.shape == (2, 4, 0) and c.shape == (5, 4, 0)
    grads = nb.lstm_backward(jnp.zeros(a.shape), caches)
    assert grads["dx"].shape == (3, 4, 0)
    np.testing.assert_array_equal(grads["dWf"], 0)


# --------------------------------------------------------------------------
# Bad input.


def test_missing_key_is_a_key_error_and_a_value_error():
    x, a0, p, _ = _lstm_problem()
    del p["Wc"]
    with pytest.raises(nb.MissingParameterError, match=r"lack \['Wc'\]") as info:
        nb.lstm_forward(x, a0, p)
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    np.random.seed(0)
    rnn_p = rnn_parameters()
    del rnn_p["Waa"]
    with pytest.raises(ValueError, match="Waa"):
        nb.rnn_cell_forward(np.zeros((3, 2)), np.zeros((5, 2)), rnn_p)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda x, a0, p: (x, a0, {**p, "Wf": p["Wf"][:, :-1]}), r"parameters\['Wf'\] must have shape \(n_a, n_a \+ n_x\) = \(5, 8\).*got \(5, 7\)"),
        (lambda x, a0, p: (x, a0, {**p, "bo": p["bo"][:, 0]}), r"parameters\['bo'\] must have shape \(n_a, 1\) = \(5, 1\).*got \(5,\)"),
        (lambda x, a0, p: (x, a0[:, :3], p), r"a0 must have shape \(n_a, m\) = \(5, 4\).*got \(5, 3\)"),
        (lambda x, a0, p: (x[..., 0], a0, p), r"x must be \(n_x, m, T_x\); got shape \(3, 4\)"),
        (lambda x, a0, p: (x[:2], a0, p), r"parameters\['Wf'\] must have shape .* = \(5, 7\).*got \(5, 8\)"),
    ],
    ids=["W_shape", "b_shape", "a0_batch", "x_rank", "x_features"],
)
def test_shape_mismatch_raises_value_error(change, match):
    x, a0, p, _ = _lstm_problem()
    with pytest.raises(ValueError, match=match):
        nb.lstm_forward(*change(x, a0, p))
    with pytest.raises(ValueError, match=match):
        jax.jit(nb.lstm_forward)(*change(x, a0, p))


def test_rnn_shape_mismatch_and_dtype_errors():
    np.random.seed(0)
    p = rnn_parameters()
    with pytest.raises(ValueError, match=r"parameters\['Wax'\] must have shape \(n_a, n_x\) = \(5, 4\)"):
        nb.rnn_cell_forward(np.zeros((4, 2)), np.zeros((5, 2)), p)
    with pytest.raises(TypeError, match="floating dtype; got int"):
        nb.rnn_forward(np.zeros((3, 2, 4), dtype=int), np.zeros((5, 2)), p)
    with pytest.raises(TypeError, match="must be a dict"):
        nb.rnn_forward(np.zeros((3, 2, 4)), np.zeros((5, 2)), list(p.values()))


def test_backward_upstream_shape_is_checked():
    x, a0, p, _ = _lstm_problem()
    a, _, _, caches = nb.lstm_forward(x, a0, p)
    with pytest.raises(ValueError, match=r"da must have the shape .* \(5, 4, 6\); got \(5, 4, 5\)"):
        nb.lstm_backward(np.zeros((5, 4, 5)), caches)
