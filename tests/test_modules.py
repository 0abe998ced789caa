"""The framework modules (jaxrnn.nnx, jaxrnn.linen, jaxrnn.eqx) and Stack.apply(reverse=True).

Each module must compute exactly what the functional API computes on the same
weights: outputs, final carries and the gradients with respect to the weights
and the inputs, in float64 (conftest enables x64), for every registered cell.
"""

import contextlib
import functools
import importlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn

T, B, X, H = 4, 2, 3, 4  # time, batch, input, hidden
TOL = {"rtol": 1e-9, "atol": 1e-10}
FRAMEWORKS = ("nnx", "linen", "eqx")
CELL_OPTIONS = {"lstm": {"num_heads": 2}, "slstm": {"num_heads": 2}, "projected_lstm": {"proj_size": 2}}


# --------------------------------------------------------------------------
# One adapter per framework. Each makes an abstract module (nothing computed) and
# binds given weights into it inside jit, so every framework and the functional
# API run on the very same arrays: XLA merges the identical computations and
# each check compiles about once.


def as_dicts(tree):
    """NamedTuples (params, Bidirectional) as nested dicts: the modules' documented layout."""
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return {name: as_dicts(value) for name, value in zip(tree._fields, tree)}
    return tree


class NNX:
    def __init__(self, cell, **kwargs):
        nnx = self.nnx = pytest.importorskip("flax.nnx")
        import jaxrnn.nnx

        # No 'dropout' stream, so the module's state is its Params; masks come from call keys.
        self.abstract = nnx.eval_shape(
            lambda: jaxrnn.nnx.RNN(cell, X, H, rngs=nnx.Rngs(params=0), param_dtype=jnp.float64, **kwargs)
        )

    def bind(self, params):
        nnx = self.nnx
        graphdef, state = nnx.split(self.abstract)
        nnx.replace_by_pure_dict(state, {"layers": {k: as_dicts(layer) for k, layer in enumerate(params)}})
        return graphdef, nnx.merge(graphdef, state)

    def run(self, params, xs, train=False, key=None, **kwargs):
        _, model = self.bind(params)
        return model(xs, deterministic=not train, rngs=key, **kwargs)

    def grads(self, params, loss, xs, **kwargs):
        graphdef, model = self.bind(params)
        state, d_xs = self.nnx.grad(lambda m, x: loss(m(x, deterministic=True, **kwargs)), argnums=(0, 1))(model, xs)
        return self.nnx.merge(graphdef, state).stack_params(), d_xs


class Linen:
    def __init__(self, cell, **kwargs):
        pytest.importorskip("flax.linen")
        import jaxrnn.linen

        options = {name: kwargs.pop(name) for name in list(kwargs) if name in ("num_heads", "proj_size")}
        self.model = jaxrnn.linen.RNN(cell, H, param_dtype=jnp.float64, cell_options=options or None, **kwargs)

    def bind(self, params):
        return {"params": {f"layer_{k}": as_dicts(layer) for k, layer in enumerate(params)}}

    def run(self, params, xs, train=False, key=None, **kwargs):
        rngs = None if key is None else {"dropout": key}
        return self.model.apply(self.bind(params), xs, deterministic=not train, rngs=rngs, **kwargs)

    def grads(self, params, loss, xs, **kwargs):
        variables = self.bind(params)
        d_params, d_xs = jax.grad(
            lambda p, x: loss(self.model.apply({"params": p}, x, deterministic=True, **kwargs)), argnums=(0, 1)
        )(
            variables["params"], xs
        )
        return self.model.stack_params(d_params), d_xs


class Eqx:
    def __init__(self, cell, **kwargs):
        self.eqx = pytest.importorskip("equinox")
        import jaxrnn.eqx

        self.abstract = self.eqx.filter_eval_shape(
            jaxrnn.eqx.RNN, cell, X, H, key=jax.random.key(0), dtype=jnp.float64, **kwargs
        )

    def bind(self, params):
        return self.eqx.tree_at(lambda m: m.params, self.abstract, params)

    def run(self, params, xs, train=False, key=None, **kwargs):
        return self.bind(params)(xs, inference=not train, key=key, **kwargs)

    def grads(self, params, loss, xs, **kwargs):
        d_model, d_xs = self.eqx.filter_grad(lambda both: loss(both[0](both[1], inference=True, **kwargs)))(
            (self.bind(params), xs)
        )
        return d_model.params, d_xs


ADAPTERS = {"nnx": NNX, "linen": Linen, "eqx": Eqx}


def available(cell, **kwargs):
    """An adapter per installed framework (at least one, or the test is skipped)."""
    adapters = {}
    for name, adapter in ADAPTERS.items():
        with contextlib.suppress(pytest.skip.Exception):
            adapters[name] = adapter(cell, **kwargs)
    if not adapters:
        pytest.skip("neither flax nor equinox is installed")
    return adapters


def loss(out):
    """Reads every output and every final carry, so each of their gradients is checked."""
    carry, hs = out
    return jnp.sum(jnp.sin(hs)) + sum(jnp.sum(jnp.cos(leaf)) for leaf in jax.tree.leaves(carry))


def inputs(seed=0, time_major=True):
    xs = jax.random.normal(jax.random.key(seed), (T, B, X), jnp.float64)
    return xs if time_major else jnp.swapaxes(xs, 0, 1)


def random_params(net, seed=0, **options):
    """Params of ``net``'s shapes with every entry random, from numpy: nothing to compile."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda key: net.init(key, X, H, dtype=jnp.float64, **options), jax.random.key(0))
    return jax.tree.map(lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape)), shapes)


def assert_trees_close(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), **TOL)


def check_parity(net, cell, build=None, **kwargs):
    """Every framework's outputs and gradients equal ``net.apply``'s on the same weights.

    ``build``: the modules' constructor options; ``kwargs``: the call's (plus
    ``grad`` and ``time_major``, which are constructor options of the modules).
    """
    build = dict(build or {})
    grad, time_major = kwargs.pop("grad", "manual"), kwargs.pop("time_major", True)
    options = {name: build[name] for name in ("num_heads", "proj_size") if name in build}
    adapters = available(cell, grad=grad, time_major=time_major, **build)
    params, xs = random_params(net, **options), inputs(time_major=time_major)

    def functional(p, x):
        return net.apply(p, x, grad=grad, time_major=time_major, **kwargs)

    @jax.jit
    def everything(params, xs):
        want = functional(params, xs), jax.grad(lambda p, x: loss(functional(p, x)), argnums=(0, 1))(params, xs)
        got = {name: (a.run(params, xs, **kwargs), a.grads(params, loss, xs, **kwargs)) for name, a in adapters.items()}
        return want, got

    want, got = everything(params, xs)
    for result in got.values():
        assert_trees_close(result, want)


# --------------------------------------------------------------------------
# Parity with the functional API.


@pytest.mark.sweep
@pytest.mark.parametrize("name", list(jaxrnn.cells()))
def test_every_registered_cell_matches_the_functional_api(name):
    cell = jaxrnn.get_cell(name)
    grad = "manual" if cell.bptt is not None or cell.sequence is not None else "autodiff"
    check_parity(jaxrnn.stack(cell), name, build=CELL_OPTIONS.get(name, {}), grad=grad)


def test_two_bidirectional_layers_with_lengths_and_dropout_off():
    build = {"num_layers": 2, "bidirectional": True, "dropout": 0.5}
    net = jaxrnn.stack(jaxrnn.simple_rnn, 2, bidirectional=True, dropout=0.5)
    check_parity(net, jaxrnn.simple_rnn, build=build, lengths=jnp.array([2, T]))


def test_resets_reverse_and_batch_major():
    resets = jnp.zeros((T, B), bool).at[2, 0].set(True)
    net = jaxrnn.stack(jaxrnn.gru, 2)
    check_parity(net, "gru", build={"num_layers": 2}, time_major=False, resets=resets, reverse=True)


def test_manual_and_autodiff_modules_give_equal_gradients():
    manual, autodiff = available("gru", num_layers=2), available("gru", num_layers=2, grad="autodiff")
    params = random_params(jaxrnn.stack(jaxrnn.gru, 2))
    xs = inputs()

    @jax.jit
    def both(params, xs):
        return {name: (manual[name].grads(params, loss, xs), autodiff[name].grads(params, loss, xs)) for name in manual}

    for got, want in both(params, xs).values():
        assert_trees_close(got, want)


# --------------------------------------------------------------------------
# Dropout.


def test_dropout_applies_while_training_only():
    adapters = available("simple_rnn", num_layers=2, dropout=0.5)
    net = jaxrnn.stack(jaxrnn.simple_rnn, 2, dropout=0.5)
    params, xs = random_params(net), inputs()
    k1, k2 = jax.random.key(1), jax.random.key(2)

    @jax.jit
    def outputs(params, xs):
        want = {"eval": net.apply(params, xs)[1], "masked": net.apply(params, xs, key=k1, train=True)[1]}
        got = {
            name: {
                "first": a.run(params, xs, train=True, key=k1)[1],
                "again": a.run(params, xs, train=True, key=k1)[1],
                "other": a.run(params, xs, train=True, key=k2)[1],
                "eval": a.run(params, xs)[1],
            }
            for name, a in adapters.items()
        }
        return want, got

    want, got = outputs(params, xs)
    for name, hs in got.items():
        np.testing.assert_array_equal(hs["first"], hs["again"])
        assert not np.allclose(hs["first"], hs["other"])
        assert not np.allclose(hs["first"], want["eval"])
        np.testing.assert_allclose(hs["eval"], want["eval"], **TOL)
        if name != "linen":  # Linen folds the module's path into make_rng's key
            np.testing.assert_allclose(hs["first"], want["masked"], **TOL)


# --------------------------------------------------------------------------
# Training with each framework's own tools.


def regression(seed=0):
    """Inputs and a constant target: every cell can fit it within a few steps, dropout or not."""
    return inputs(seed), jnp.full((T, B, 1), 0.5)


def assert_loss_falls(train_step, *state, steps=6):
    """Runs ``train_step(*state, key) -> (*state, loss)`` with a new dropout key per step; the loss must fall."""
    losses = []
    for step in range(steps):
        *state, value = train_step(*state, jax.random.key(step))
        losses.append(float(value))
    assert losses[-1] < 0.8 * losses[0], losses


def test_nnx_trains_with_optimizer_under_jit():
    nnx = pytest.importorskip("flax.nnx")
    import jaxrnn.nnx

    model = jaxrnn.nnx.RNN("mingru", X, H, num_layers=2, dropout=0.1, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(0.05), wrt=nnx.Param)
    xs, ys = regression()

    @nnx.jit
    def train_step(model, optimizer, xs, ys):
        def mse(model):
            _, hs = model(xs)
            return jnp.mean((hs[..., :1] - ys) ** 2)

        value, grads = nnx.value_and_grad(mse)(model)
        optimizer.update(model, grads)
        return value

    losses = [float(train_step(model, optimizer, xs, ys)) for _ in range(6)]
    assert losses[-1] < 0.8 * losses[0], losses
    assert len(jax.tree.leaves(nnx.state(model, nnx.Param))) == 2 * 2  # one Param per array: w_ih, b_ih

    # Dropout follows nnx.Dropout: on by default, the 'dropout' stream advances, eval() switches it off.
    call = nnx.jit(lambda model, xs: (model(xs)[1], model.stack.apply(model.stack_params(), xs)[1]))
    assert model.deterministic is False
    (first, want), (second, _) = call(model, xs), call(model, xs)
    assert not np.allclose(first, second)
    assert not np.allclose(first, want)
    np.testing.assert_allclose(call(nnx.view(model, deterministic=True), xs)[0], want, **TOL)
    model.eval()
    np.testing.assert_allclose(call(model, xs)[0], want, **TOL)
    graphdef, state = nnx.split(model)
    np.testing.assert_array_equal(call(nnx.merge(graphdef, state), xs)[0], call(model, xs)[0])
    model.train()
    assert not np.allclose(call(model, xs)[0], want)


def test_linen_trains_with_optax_under_jit():
    pytest.importorskip("flax.linen")
    import jaxrnn.linen

    model = jaxrnn.linen.RNN("minlstm", H, num_layers=2, dropout=0.1)
    xs, ys = regression()
    params = jax.jit(lambda key, xs: model.init(key, xs, deterministic=True))(jax.random.key(0), xs)["params"]
    optimizer = optax.adam(0.05)
    state = optimizer.init(params)

    @jax.jit
    def train_step(params, state, key):
        def mse(params):
            _, hs = model.apply({"params": params}, xs, deterministic=False, rngs={"dropout": key})
            return jnp.mean((hs[..., :1] - ys) ** 2)

        value, grads = jax.value_and_grad(mse)(params)
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(params, updates), state, value

    assert_loss_falls(train_step, params, state)


def test_eqx_trains_with_filter_jit_and_optax():
    eqx = pytest.importorskip("equinox")
    import jaxrnn.eqx

    model = jaxrnn.eqx.RNN("mingru", X, H, num_layers=2, dropout=0.1, key=jax.random.key(0))
    xs, ys = regression()
    optimizer = optax.adam(0.05)
    state = optimizer.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def train_step(model, state, key):
        def mse(model):
            _, hs = model(xs, key=key)
            return jnp.mean((hs[..., :1] - ys) ** 2)

        value, grads = eqx.filter_value_and_grad(mse)(model)
        updates, state = optimizer.update(grads, state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state, value

    assert_loss_falls(train_step, model, state)

    call = eqx.filter_jit(lambda model, xs: (model(xs)[1], model.stack.apply(model.params, xs)[1]))
    got, want = call(eqx.nn.inference_mode(model), xs)
    np.testing.assert_allclose(got, want, **TOL)


# --------------------------------------------------------------------------
# Equinox's per-example convention.


def test_eqx_takes_one_sequence_and_vmaps():
    adapter = Eqx("lstm", num_layers=2)
    model = adapter.bind(random_params(jaxrnn.stack(jaxrnn.lstm, 2)))
    xs = inputs()
    lengths = jnp.array([2, T])
    resets = jnp.zeros((T, B), bool).at[1, 1].set(True)
    carry = jax.tree.map(lambda a: a + 0.5, model.initial_carry(B))

    @adapter.eqx.filter_jit
    def run(model, xs, carry):
        batched = model(xs, carry, lengths=lengths, resets=resets)
        mapped = jax.vmap(
            lambda x, c, n, r: model(x, c, lengths=n, resets=r), in_axes=(1, 0, 0, 1), out_axes=(0, 1)
        )(xs, carry, lengths, resets)
        one = model(xs[:, 0], jax.tree.map(lambda a: a[0], carry), lengths=2, resets=resets[:, 0])
        return batched, mapped, one

    (want_carry, want), (got_carry, got), (one_carry, one) = run(model, xs, carry)
    assert got.shape == want.shape == (T, B, H)
    assert_trees_close((got_carry, got), (want_carry, want))
    assert one.shape == (T, H)
    assert_trees_close((one_carry, one), jax.tree.map(lambda a: a[:, 0] if a.ndim == 3 else a[0], (want_carry, want)))
    assert jax.tree.leaves(model.initial_carry())[0].shape == (H,)


# --------------------------------------------------------------------------
# Stack.apply(reverse=True).


@pytest.mark.sweep
@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_reversed_stack_is_reversed_unrolls_layer_by_layer(grad):
    net = jaxrnn.stack(jaxrnn.lstm, 2)
    params, xs, lengths = random_params(net), inputs(), jnp.array([3, T])

    def stacked(p, x):
        return net.apply(p, x, grad=grad, lengths=lengths, reverse=True)

    def by_hand(p, x):
        first, hs = jaxrnn.unroll(jaxrnn.lstm, p[0], x, grad=grad, lengths=lengths, reverse=True)
        second, hs = jaxrnn.unroll(jaxrnn.lstm, p[1], hs, grad=grad, lengths=lengths, reverse=True)
        return (first, second), hs

    @jax.jit
    def results(params, xs):
        grads = [jax.grad(lambda p, x, f=f: loss(f(p, x)), argnums=(0, 1))(params, xs) for f in (stacked, by_hand)]
        return stacked(params, xs), by_hand(params, xs), net.apply(params, xs, lengths=lengths)[1], grads

    got, want, forward, (d_got, d_want) = results(params, xs)
    assert_trees_close(got, want)
    assert not np.allclose(forward, got[1])
    assert_trees_close(d_got, d_want)


def test_reverse_on_a_bidirectional_stack_says_why_and_the_fix():
    net = jaxrnn.stack(jaxrnn.gru, 1, bidirectional=True)
    params = random_params(net)
    with pytest.raises(ValueError, match="already runs both ways.*bidirectional=False"):
        net.apply(params, inputs(), reverse=True)


# --------------------------------------------------------------------------
# Errors.


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_constructor_errors_name_the_fix(monkeypatch, framework):
    from jaxrnn import _modules

    monkeypatch.setattr(_modules, "_WARNED", set())  # the warning comes once per configuration
    build = ADAPTERS[framework]
    with pytest.raises(ValueError, match=r"unknown cell 'lsmt'.*jaxrnn\.cells\(\).*'lstm'"):
        build("lsmt")
    with pytest.raises(TypeError, match="registered cell's name"):
        build(42)
    with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\)"):
        build("lstm", num_layers=2, dropout=1.0)
    with pytest.raises(ValueError, match="num_layers must be > 0"):
        build("lstm", num_layers=0)
    with pytest.raises(TypeError, match=r"option\(s\) \['proj_size'\]"):
        build("gru", proj_size=2)
    with pytest.warns(UserWarning, match=f"jaxrnn.{framework}.RNN: dropout=0.5 has no effect with num_layers=1"):
        build("gru", dropout=0.5)


def test_bad_sizes_are_refused():
    nnx = pytest.importorskip("flax.nnx")
    import jaxrnn.linen
    import jaxrnn.nnx

    with pytest.raises(ValueError, match="hidden_size must be > 0"):
        jaxrnn.nnx.RNN("lstm", X, 0, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="input_size must be an int"):
        jaxrnn.nnx.RNN("lstm", 2.5, H, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"rngs must be an nnx.Rngs.*nnx.Rngs\(0\)"):
        jaxrnn.nnx.RNN("lstm", X, H, rngs=0)
    with pytest.raises(ValueError, match="hidden_size must be > 0"):
        jaxrnn.linen.RNN("lstm", -1)


def test_missing_dropout_rngs_are_explained():
    nnx = pytest.importorskip("flax.nnx")
    import jaxrnn.eqx
    import jaxrnn.linen
    import jaxrnn.nnx

    xs = inputs()
    model = nnx.eval_shape(lambda: jaxrnn.nnx.RNN("lstm", X, H, num_layers=2, dropout=0.5, rngs=nnx.Rngs(params=0)))
    assert model.rngs is None  # no 'dropout' or 'default' stream
    with pytest.raises(ValueError, match=r"no rngs for its masks.*nnx.Rngs\(dropout=seed\).*model.eval\(\)"):
        model(xs)

    linen = Linen("lstm", num_layers=2, dropout=0.5)
    variables = linen.bind(random_params(jaxrnn.stack(jaxrnn.lstm, 2)))
    with pytest.raises(ValueError, match=r"needs a 'dropout' rng.*rngs=\{\"dropout\": key\}"):
        linen.model.apply(variables, xs, deterministic=False)

    with pytest.raises(ValueError, match=r"needs a PRNG key.*inference=True"):
        Eqx("lstm", num_layers=2, dropout=0.5).abstract(xs)


@pytest.mark.parametrize(("module", "framework", "extra"), [
    ("jaxrnn.nnx", "flax", "flax"), ("jaxrnn.linen", "flax", "flax"), ("jaxrnn.eqx", "equinox", "equinox"),
])
def test_a_missing_framework_names_the_extra(monkeypatch, module, framework, extra):
    for name in [name for name in sys.modules if name == framework or name.startswith(framework + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, framework, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError, match=rf'pip install "jaxrnn\[{extra}\]"'):
        importlib.import_module(module)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_call_errors_name_the_module_and_phrase_its_fixes(framework):
    adapter = ADAPTERS[framework]("lstm")
    params = random_params(jaxrnn.stack(jaxrnn.lstm))
    wide = jnp.zeros((T, B, X + 2), jnp.float64)
    batch_major, lengths = jnp.zeros((B, T + 1, X)), jnp.full((B,), T)  # read time-major: T' = B rows
    if framework == "linen":  # the input size comes from xs at init (Flax checks it); a wrong carry then
        match = rf"jaxrnn\.linen\.RNN\('lstm', {H}\): carry\.h .*make it with model\.initial_carry\({B}\)"
        call = functools.partial(adapter.run, params, inputs(), carry=(jaxrnn.lstm.initial_carry(B + 1, H),))
    else:
        match = (rf"jaxrnn\.{framework}\.RNN\('lstm', {X}, {H}\): .*make the module with "
                 rf"jaxrnn\.{framework}\.RNN\(\.\.\., input_size={X + 2}\)")
        call = functools.partial(adapter.run, params, wide)
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "Stack" not in str(info.value) and "jaxrnn.stack" not in str(info.value)
    with pytest.raises(ValueError, match=rf"make the module with jaxrnn\.{framework}\.RNN\(\.\.\., time_major=False\)"):
        adapter.run(params, batch_major, lengths=lengths)


@pytest.mark.slow
def test_initial_carry_has_the_dtype_a_16_bit_call_returns():
    for name, adapter in available("lstm", num_layers=2).items():
        if name == "linen":
            model = jaxrnn.linen.RNN("lstm", H, num_layers=2, param_dtype=jnp.bfloat16)
            variables = {"params": jax.tree.map(lambda a: a.astype(jnp.bfloat16),
                                                adapter.bind(random_params(model.stack))["params"])}

            def call(xs, carry, model=model, variables=variables):
                return model.apply(variables, xs, carry)
        else:
            module = jaxrnn.nnx.RNN if name == "nnx" else jaxrnn.eqx.RNN
            dtype = {"param_dtype" if name == "nnx" else "dtype": jnp.bfloat16}
            key = {"rngs": adapter.nnx.Rngs(0)} if name == "nnx" else {"key": jax.random.key(0)}
            model = module("lstm", X, H, num_layers=2, **key, **dtype)
            call = model
        xs = jnp.zeros((T, B, X), jnp.bfloat16)
        carry = model.initial_carry(B)
        returned, _ = jax.eval_shape(call, xs, carry)  # shapes only: nothing compiled
        assert jax.tree.map(lambda a: a.dtype, carry) == jax.tree.map(lambda a: a.dtype, returned), name
        assert jax.tree.leaves(carry)[0].dtype == jnp.float32


def test_eqx_under_plain_jit_says_to_use_filter_jit():
    adapter = Eqx("gru")
    model = adapter.bind(random_params(jaxrnn.stack(jaxrnn.gru)))
    with pytest.raises(TypeError, match=r"traced by jax\.jit.*eqx\.filter_jit.*eqx\.partition"):
        jax.jit(lambda m, x: m(x))(model, inputs())
    with pytest.raises(ValueError, match=r"a batch of rank 3, \(time, batch, input_size\), or one sequence of rank 2"):
        model(jnp.zeros((T,)))


def test_modules_deepcopy():
    import copy

    eqx_model = Eqx("gru").bind(random_params(jaxrnn.stack(jaxrnn.gru)))
    assert repr(copy.deepcopy(eqx_model).config) == repr(eqx_model.config)
    pytest.importorskip("flax.nnx")
    from flax import nnx

    from jaxrnn.nnx import RNN

    nnx_model = RNN("lstm", X, H, rngs=nnx.Rngs(0))
    twin = copy.deepcopy(nnx_model)
    assert repr(twin.config) == repr(nnx_model.config)
    assert twin.config.site.fix_input_size == nnx_model.config.site.fix_input_size


def test_linen_rank_dtype_and_deterministic_errors():
    pytest.importorskip("flax.linen")
    import jaxrnn.linen

    model = jaxrnn.linen.RNN("lstm", H)
    with pytest.raises(ValueError, match=r"xs must have rank 3, shaped \(time, batch, input_size\); got shape \(\)"):
        model.init(jax.random.key(0), 1.0)
    with pytest.raises(ValueError, match=r"got shape \(4, 3\)\. For a single sequence add a batch axis: xs\[None\]"):
        jaxrnn.linen.RNN("lstm", H, time_major=False).init(jax.random.key(0), jnp.zeros((T, X)))
    with pytest.raises(TypeError, match="param_dtype must be a floating dtype"):
        jaxrnn.linen.RNN("lstm", H, param_dtype=jnp.int32)

    # As nn.Dropout: deterministic is needed (field or call) only where dropout applies.
    dropping = Linen("lstm", num_layers=2, dropout=0.5)
    variables = dropping.bind(random_params(jaxrnn.stack(jaxrnn.lstm, 2)))
    xs = inputs()
    with pytest.raises(ValueError, match="so the call must say whether to apply it"):
        jax.eval_shape(lambda: dropping.model.apply(variables, xs))
    fixed = dropping.model.clone(deterministic=True)
    assert jax.eval_shape(lambda: fixed.apply(variables, xs))[1].shape == (T, B, H)
    one_layer = Linen("lstm")
    assert jax.eval_shape(lambda: one_layer.model.apply(one_layer.bind(random_params(jaxrnn.stack(jaxrnn.lstm))),
                                                        xs))[1].shape == (T, B, H)


def test_nnx_takes_param_dtype_and_explains_dtype():
    nnx = pytest.importorskip("flax.nnx")
    import jaxrnn.nnx

    with pytest.raises(TypeError, match=r"param_dtype \(not dtype\), as in Flax\. Pass param_dtype=jnp\.bfloat16"):
        jaxrnn.nnx.RNN("lstm", X, H, rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
    model = nnx.eval_shape(lambda: jaxrnn.nnx.RNN("lstm", X, H, rngs=nnx.Rngs(0), param_dtype=jnp.bfloat16))
    assert {leaf.dtype for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype(jnp.bfloat16)}


def test_linen_with_cell_options_is_hashable():
    pytest.importorskip("flax.linen")
    import jaxrnn.linen

    model = jaxrnn.linen.RNN("lstm", H, cell_options={"num_heads": 2})
    assert hash(model) == hash(jaxrnn.linen.RNN("lstm", H, cell_options={"num_heads": 2}))
    assert model.config.cell_options == {"num_heads": 2}


@pytest.mark.slow
def test_functional_params_round_trip_through_every_module():
    net = jaxrnn.stack(jaxrnn.lstm, 2, bidirectional=True)
    params = random_params(net)
    for name, adapter in available("lstm", num_layers=2, bidirectional=True).items():
        if name == "nnx":
            model = jaxrnn.nnx.RNN(
                "lstm", X, H, num_layers=2, bidirectional=True, rngs=adapter.nnx.Rngs(0), param_dtype=jnp.float64
            )
            model.load_stack_params(params)
            got = model.stack_params()
            with pytest.raises(ValueError, match=r"hidden size 3.*Make the module with the params' sizes"):
                model.load_stack_params(net.init(jax.random.key(0), X, 3))
        elif name == "linen":
            variables = adapter.model.variables_from_stack_params(params)
            assert set(variables["params"]) == {"layer_0", "layer_1"}
            got = adapter.model.stack_params(variables)
            model = adapter.model
        else:
            model = adapter.eqx.tree_at(lambda m: m.params, adapter.abstract, params)
            got = model.stack_params()
        assert model.config.stack == model.stack == net  # .config and .stack are attributes in all three
        assert_trees_close(got, params)


def test_the_dropout_warning_points_at_code_run_from_a_string(monkeypatch):
    from jaxrnn import _modules

    monkeypatch.setattr(_modules, "_WARNED", set())
    pytest.importorskip("flax.linen")
    with pytest.warns(UserWarning, match="no effect") as record:
        exec(compile("import jaxrnn.linen\njaxrnn.linen.RNN('gru', 4, dropout=0.5)", "<string>", "exec"))
    assert record[0].filename == "<string>"
