"""jaxrnn.interop.from_flax / to_flax: exact weight conversion to and from Flax's recurrent cells.

Parity is checked against Flax itself in float64 (conftest enables x64):
``nn.RNN`` outputs and final carries, batch-major, with random biases so that
a bias in the wrong place shows.
"""

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.interop import _from_flax_gradient, from_flax, to_flax

nn = pytest.importorskip("flax.linen")
nnx = pytest.importorskip("flax.nnx")

X, H, B, T = 3, 4, 2, 5  # input, hidden, batch, time
TOL = {"rtol": 1e-12, "atol": 1e-12}
F64 = {"param_dtype": jnp.float64}
RANDOM_BIAS = nn.initializers.normal(1.0)  # Flax's zero default would hide a misplaced bias

LINEN = [  # (Flax class, jaxrnn cell)
    (nn.LSTMCell, jaxrnn.lstm),
    (nn.OptimizedLSTMCell, jaxrnn.lstm),
    (nn.GRUCell, jaxrnn.gru),
    (nn.SimpleCell, jaxrnn.simple_rnn),
]
NNX = [  # (Flax class, jaxrnn cell, to_flax layout)
    (nnx.LSTMCell, jaxrnn.lstm, "nnx"),
    (nnx.OptimizedLSTMCell, jaxrnn.lstm, "nnx_optimized"),
    (nnx.GRUCell, jaxrnn.gru, "nnx"),
    (nnx.SimpleCell, jaxrnn.simple_rnn, "nnx"),
]


def ids(cases):
    return [case[0].__module__.split(".")[1] + "." + case[0].__name__ for case in cases]


def inputs(seed=1):
    return jax.random.normal(jax.random.key(seed), (B, T, X), jnp.float64)


def random_params(cell, seed=0):
    """Params with every entry random, both biases included."""
    rng = np.random.default_rng(seed)
    width = len(cell.gates) * H
    shapes = {"w_ih": (X, width), "w_hh": (H, width), "b_ih": (width,), "b_hh": (width,)}
    return cell.params_type(**{k: jnp.asarray(rng.standard_normal(s), jnp.float64) for k, s in shapes.items()})


def linen_model(cls):
    return nn.RNN(cls(H, bias_init=RANDOM_BIAS, **F64), return_carry=True)


# Jitted once per cell class and shared by the tests: compiling is most of their time.
@functools.cache
def run_linen(cls):
    return jax.jit(linen_model(cls).apply)


@functools.cache
def linen_variables(cls):
    return jax.jit(linen_model(cls).init)(jax.random.key(0), inputs())


@functools.cache
def run_jaxrnn(cell):
    return jax.jit(lambda params, xs: jaxrnn.unroll(cell, params, xs, time_major=False))


@nnx.jit
def run_nnx(module, xs):
    return nnx.RNN(module, return_carry=True)(xs)


def nnx_cell(cls, seed=0):
    # NNX cells compute in float32 unless told (dtype defaults to float32 there).
    return cls(X, H, dtype=jnp.float64, bias_init=RANDOM_BIAS, rngs=nnx.Rngs(seed), **F64)


def assert_same_run(cell, params, flax_carry, flax_hs, xs):
    """jaxrnn.unroll on ``params`` gives Flax's outputs and final carry (Flax's LSTM carry is (c, h))."""
    carry, hs = run_jaxrnn(cell)(params, xs)
    np.testing.assert_allclose(hs, flax_hs, **TOL)
    if cell is jaxrnn.lstm:
        flax_c, flax_h = flax_carry
        np.testing.assert_allclose(carry.h, flax_h, **TOL)
        np.testing.assert_allclose(carry.c, flax_c, **TOL)
    else:
        np.testing.assert_allclose(carry, flax_carry, **TOL)


def flat(tree):
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


# --------------------------------------------------------------------------
# Linen.


@pytest.mark.sweep
@pytest.mark.parametrize("cls, cell", LINEN, ids=ids(LINEN))
def test_from_flax_reproduces_linen(cls, cell):
    xs, variables = inputs(), linen_variables(cls)
    flax_carry, flax_hs = run_linen(cls)(variables, xs)
    params = from_flax(cell, variables["params"]["cell"])
    assert params.w_ih.shape == (X, len(cell.gates) * H) and params.w_ih.dtype == jnp.float64
    assert_same_run(cell, params, flax_carry, flax_hs, xs)


@pytest.mark.sweep
@pytest.mark.parametrize("cls, cell", LINEN, ids=ids(LINEN))
def test_to_flax_runs_in_linen_as_in_jaxrnn(cls, cell):
    xs, params = inputs(), random_params(cell)
    flax_carry, flax_hs = run_linen(cls)({"params": {"cell": to_flax(cell, params)}}, xs)
    assert_same_run(cell, params, flax_carry, flax_hs, xs)


@pytest.mark.sweep
@pytest.mark.parametrize("cell", [jaxrnn.lstm, jaxrnn.gru, jaxrnn.simple_rnn], ids=lambda c: c.name)
def test_round_trips(cell):
    xs, params = inputs(), random_params(cell)
    # jaxrnn -> Flax -> jaxrnn: biases may move between b_ih and b_hh, outputs may not change.
    back = from_flax(cell, to_flax(cell, params))
    expected = run_jaxrnn(cell)(params, xs)
    for got, want in zip(jax.tree.leaves(run_jaxrnn(cell)(back, xs)), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_array_equal(back.w_ih, params.w_ih)
    np.testing.assert_array_equal(back.w_hh, params.w_hh)
    # Flax -> jaxrnn -> Flax is exact: each Flax bias comes back where it was.
    flax_params = to_flax(cell, params)
    again = flat(to_flax(cell, from_flax(cell, flax_params)))
    assert again.keys() == flat(flax_params).keys()
    for key, value in flat(flax_params).items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)


def test_gru_n_biases_stay_apart_and_the_others_fold():
    params = random_params(jaxrnn.gru)
    b_ih, b_hh = np.split(np.asarray(params.b_ih), 3), np.split(np.asarray(params.b_hh), 3)
    flax_params = to_flax(jaxrnn.gru, params)
    np.testing.assert_array_equal(flax_params["ir"]["bias"], b_ih[0] + b_hh[0])
    np.testing.assert_array_equal(flax_params["iz"]["bias"], b_ih[1] + b_hh[1])
    np.testing.assert_array_equal(flax_params["in"]["bias"], b_ih[2])
    np.testing.assert_array_equal(flax_params["hn"]["bias"], b_hh[2])
    assert "bias" not in flax_params["hr"] and "bias" not in flax_params["hz"]
    back = from_flax(jaxrnn.gru, flax_params)  # input-side biases into b_ih, hn's into b_hh
    np.testing.assert_array_equal(back.b_hh, np.concatenate([np.zeros(2 * H), b_hh[2]]))


def test_headed_params_export_their_block_diagonal_weights():
    heads = 2  # headed w_hh: (K, H/K, 4H/K), one block per head
    w_hh = np.random.default_rng(3).standard_normal((heads, H // heads, 4 * H // heads))
    params = random_params(jaxrnn.lstm)._replace(w_hh=jnp.asarray(w_hh))
    dense = params._replace(w_hh=jaxrnn.block_diagonal(params.w_hh))
    got, expected = flat(to_flax(jaxrnn.lstm, params)), flat(to_flax(jaxrnn.lstm, dense))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert got["['hi']['kernel']"].shape == (H, H)


@pytest.mark.sweep
@pytest.mark.parametrize("cell", [jaxrnn.lstm, jaxrnn.gru, jaxrnn.simple_rnn], ids=lambda c: c.name)
def test_flax_gradient_maps_back_as_the_transpose_of_to_flax(cell):
    params = random_params(cell)
    weights = jax.tree.map(lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype).reshape(a.shape)), to_flax(cell, params))

    def loss(flax_params):  # any function of the Flax params; nonlinear so the gradient depends on them
        return sum(jnp.sum(w * jnp.sin(p)) for w, p in zip(jax.tree.leaves(weights), jax.tree.leaves(flax_params)))

    expected = jax.grad(lambda p: loss(to_flax(cell, p)))(params)
    got = _from_flax_gradient(cell, jax.grad(loss)(to_flax(cell, params)))
    assert type(got) is cell.params_type
    for name, a, b in zip(cell.params_type._fields, got, expected):
        np.testing.assert_allclose(a, b, **TOL, err_msg=name)


# --------------------------------------------------------------------------
# NNX.


@pytest.mark.sweep
@pytest.mark.parametrize("cls, cell, layout", NNX, ids=ids(NNX))
def test_from_flax_reproduces_nnx_from_instance_state_and_dict(cls, cell, layout):
    xs, module = inputs(), nnx_cell(cls)
    flax_carry, flax_hs = run_nnx(module, xs)
    for source in (module, nnx.state(module), nnx.to_pure_dict(nnx.state(module, nnx.Param))):
        assert_same_run(cell, from_flax(cell, source), flax_carry, flax_hs, xs)


@pytest.mark.sweep
@pytest.mark.parametrize("cls, cell, layout", NNX, ids=ids(NNX))
def test_to_flax_loads_into_nnx(cls, cell, layout):
    xs, params = inputs(), random_params(cell)
    if cls is nnx.GRUCell:  # it has no hidden bias on n: see test_nnx_gru_cannot_hold_b_hn
        params = params._replace(b_hh=params.b_hh.at[2 * H :].set(0.0))
    module = nnx_cell(cls, seed=5)
    nnx.update(module, to_flax(cell, params, layout=layout))
    flax_carry, flax_hs = run_nnx(module, xs)
    assert_same_run(cell, params, flax_carry, flax_hs, xs)


def test_nnx_gru_cannot_hold_b_hn():
    params = random_params(jaxrnn.gru)
    with pytest.raises(ValueError, match=r"flax\.nnx\.GRUCell has no bias for b_hh's n block \(b_hh\[8:12\]\).*"
                                         r"inside r ⊙ \(\.\.\.\).*Use layout='linen'"):
        to_flax(jaxrnn.gru, params, layout="nnx")
    with pytest.raises(TypeError, match=r"checks that it is zero, which needs concrete values: call it outside jax"):
        jax.jit(lambda p: to_flax(jaxrnn.gru, p, layout="nnx"))(params)
    flax_params = jax.jit(lambda p: to_flax(jaxrnn.gru, p, layout="linen"))(params)  # nothing to check there
    np.testing.assert_array_equal(flax_params["hn"]["bias"], params.b_hh[2 * H :])


@pytest.mark.slow
def test_nnx_cells_with_other_functions_are_refused():
    with pytest.raises(ValueError, match=r"flax\.nnx\.LSTMCell has gate_fn=.*jaxrnn's cells compute sigmoid"):
        from_flax(jaxrnn.lstm, nnx.LSTMCell(X, H, gate_fn=jax.nn.hard_sigmoid, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"flax\.nnx\.GRUCell has activation_fn=.*compute tanh"):
        from_flax(jaxrnn.gru, nnx.GRUCell(X, H, activation_fn=jax.nn.relu, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"flax\.nnx\.SimpleCell has residual=True"):
        from_flax(jaxrnn.simple_rnn, nnx.SimpleCell(X, H, residual=True, rngs=nnx.Rngs(0)))


def test_nnx_rnn_and_other_modules():
    module = nnx.LSTMCell(X, H, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"flax\.nnx\.RNN is not a cell .*Pass its cell instead: rnn\.cell"):
        from_flax(jaxrnn.lstm, nnx.RNN(module))
    with pytest.raises(ValueError, match=r"flax\.nnx\.Linear is not a cell .*we read are flax\.nnx\.LSTMCell"):
        from_flax(jaxrnn.lstm, nnx.Linear(X, H, rngs=nnx.Rngs(0)))


# --------------------------------------------------------------------------
# Errors: each names the rule, what was received and the fix.


def linen_params(cls):
    return linen_variables(cls)["params"]["cell"]


def test_another_cells_params():
    with pytest.raises(ValueError, match=r"parameters of a flax\.linen\.GRUCell, a counterpart of jaxrnn\.gru, "
                                         r"not of jaxrnn\.lstm\. Convert them with .*from_flax\(jaxrnn\.gru"):
        from_flax(jaxrnn.lstm, linen_params(nn.GRUCell))
    with pytest.raises(ValueError, match=r"flax\.linen\.LSTMCell or flax\.linen\.OptimizedLSTMCell, .*jaxrnn\.lstm"):
        from_flax(jaxrnn.simple_rnn, linen_params(nn.OptimizedLSTMCell))
    # NNX's GRUCell and SimpleCell have the same keys: the kernels' widths tell them apart.
    with pytest.raises(ValueError, match=r"nnx\.SimpleCell, a counterpart of jaxrnn\.simple_rnn, not of jaxrnn\.gru"):
        from_flax(jaxrnn.gru, nnx.state(nnx.SimpleCell(X, H, rngs=nnx.Rngs(0))))
    with pytest.raises(ValueError, match=r"nnx\.GRUCell, a counterpart of jaxrnn\.gru, not of jaxrnn\.simple_rnn"):
        from_flax(jaxrnn.simple_rnn, nnx.GRUCell(X, H, rngs=nnx.Rngs(0)))


def test_missing_and_extra_keys_are_named():
    flax_params = dict(linen_params(nn.GRUCell))
    del flax_params["hz"]
    flax_params["hq"] = {"kernel": np.zeros((H, H))}
    with pytest.raises(ValueError, match=r"reads the parameters of a flax\.linen\.GRUCell.*"
                                         r"missing \['hz/kernel'\], unexpected \['hq/kernel'\]"):
        from_flax(jaxrnn.gru, flax_params)
    no_bias = {**linen_params(nn.LSTMCell), "hf": {"kernel": np.zeros((H, H))}}
    with pytest.raises(ValueError, match=r"missing \['hf/bias'\], unexpected \[\]"):
        from_flax(jaxrnn.lstm, no_bias)


def test_wrapped_dicts_say_where_the_cell_is():
    variables = {"params": {"cell": linen_params(nn.SimpleCell)}}
    with pytest.raises(ValueError, match=r"whole variables dict: pass .*variables\['params'\]\['cell'\]"):
        from_flax(jaxrnn.simple_rnn, variables)
    with pytest.raises(ValueError, match=r"one level down: pass flax_params\['cell'\]"):
        from_flax(jaxrnn.simple_rnn, variables["params"])


def test_shape_mismatches_name_the_key_expected_and_received():
    flax_params = dict(linen_params(nn.LSTMCell))
    bad = {**flax_params, "ig": {"kernel": np.zeros((X + 1, H))}}
    with pytest.raises(ValueError, match=r"flax_params\['ig'\]\['kernel'\] must have the shape \(3, 4\) .*"
                                         r"got \(4, 4\)\. All kernels and biases must come from one cell"):
        from_flax(jaxrnn.lstm, bad)
    bad = {**flax_params, "hg": {"kernel": flax_params["hg"]["kernel"], "bias": np.zeros(H + 1)}}
    with pytest.raises(ValueError, match=r"flax_params\['hg'\]\['bias'\] must have the shape \(4,\) .*got \(5,\)"):
        from_flax(jaxrnn.lstm, bad)
    transposed = {**flax_params, "io": {"kernel": np.zeros((H, X))}}
    with pytest.raises(ValueError, match=r"\['io'\]\['kernel'\] must have the shape \(3, 4\).*got \(4, 3\)\. "
                                         r"It looks transposed"):
        from_flax(jaxrnn.lstm, transposed)
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), flax_params)  # as nn.scan over two layers makes
    with pytest.raises(ValueError, match=r"\['hi'\]\['kernel'\] must have the shape \(\?, \?\).*got \(2, 4, 4\)\. "
                                         r"It has 1 extra leading axis"):
        from_flax(jaxrnn.lstm, stacked)


def test_non_floating_and_non_mapping_inputs():
    flax_params = {**linen_params(nn.SimpleCell), "h": {"kernel": np.zeros((H, H), np.int32)}}
    with pytest.raises(TypeError, match=r"flax_params\['h'\]\['kernel'\] must have a floating dtype; got int32"):
        from_flax(jaxrnn.simple_rnn, flax_params)
    with pytest.raises(TypeError, match=r"Linen module SimpleCell, which holds no weights.*variables\['params'\]"):
        from_flax(jaxrnn.simple_rnn, nn.SimpleCell(H))
    with pytest.raises(TypeError, match=r"flax_params must be a Flax cell's parameters.*got list"):
        from_flax(jaxrnn.simple_rnn, [np.zeros((X, H))])


@pytest.mark.parametrize("function", [from_flax, to_flax])
def test_cells_without_a_flax_counterpart(function):
    with pytest.raises(ValueError, match=r"jaxrnn\.slstm has no Flax counterpart.*jaxrnn\.simple_rnn, jaxrnn\.lstm, "
                                         r"jaxrnn\.gru"):
        function(jaxrnn.slstm, {})
    with pytest.raises(TypeError, match=r"cell must be a jaxrnn\.Cell with a Flax counterpart .*got LSTMCell"):
        function(nn.LSTMCell(H), {})


def test_to_flax_layout_and_params_are_checked():
    params = random_params(jaxrnn.gru)
    with pytest.raises(ValueError, match=r"layout must be one of \['linen', 'nnx', 'nnx_optimized'\] .*; got 'torch'"):
        to_flax(jaxrnn.gru, params, layout="torch")
    with pytest.raises(ValueError, match=r"layout='nnx_optimized' is flax\.nnx\.OptimizedLSTMCell's.*layout='nnx'"):
        to_flax(jaxrnn.gru, params, layout="nnx_optimized")
    with pytest.raises(TypeError, match=r"needs LSTMParams; got GRUParams"):
        to_flax(jaxrnn.lstm, params)


def test_interop_does_not_import_flax():
    code = "import sys, jaxrnn, jaxrnn.interop; assert 'flax' not in sys.modules, 'flax imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
