"""Bidirectional layers, stacked networks, dropout and whole-module torch conversion.

Parity is checked against torch itself in float64 (conftest enables x64), on
packed sequences of unequal lengths: outputs, final states and every gradient,
in both grad modes.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.interop import from_torch, stack_from_torch, stack_to_torch, to_torch

torch = pytest.importorskip("torch")
pack_padded_sequence = torch.nn.utils.rnn.pack_padded_sequence
pad_packed_sequence = torch.nn.utils.rnn.pad_packed_sequence

X, H, B, T = 3, 4, 3, 5  # input, hidden, batch, time
LENGTHS = [2, T, 4]  # unequal, one row of full length (so pad_packed gives back T steps)
TOL = dict(rtol=1e-10, atol=1e-10)
CELL_NAMES = ("simple_rnn", "lstm", "gru")
CELLS = {"simple_rnn": jaxrnn.simple_rnn, "lstm": jaxrnn.lstm, "gru": jaxrnn.gru}


def torch_module(name, **kwargs):
    """The torch module matching ``name``, in float64."""
    kinds = {"simple_rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    extra = {"nonlinearity": "tanh"} if name == "simple_rnn" else {}
    return kinds[name](X, H, **extra, **kwargs).double()


def numpy(tensor):
    return tensor.detach().cpu().numpy()


def randn(*shape, requires_grad=False):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=requires_grad)


def random_params(net, seed=0):
    """Params with every entry random, from numpy: quicker than net.init, which compiles."""
    rng = np.random.default_rng(seed)
    width = len(net.cell.gates) * H

    def one(size):
        shapes = [(size, width), (H, width), (width,), (width,)]
        return net.cell.params_type(*(jnp.asarray(0.5 * rng.standard_normal(s)) for s in shapes))

    layers = []
    for k in range(net.num_layers):
        directions = [one(X if k == 0 else net.num_directions * H) for _ in range(net.num_directions)]
        layers.append(jaxrnn.Bidirectional(*directions) if net.bidirectional else directions[0])
    return tuple(layers)


def pair_params(cell, seed=0):
    return random_params(jaxrnn.stack(cell, 1, bidirectional=True), seed)[0]


def padded_inputs():
    """(T, B, X) inputs with NaN padding after each row's length: it must never leak."""
    xs = randn(T, B, X)
    for b, n in enumerate(LENGTHS):
        xs[n:, b] = float("nan")
    return xs.requires_grad_()


def run_torch_packed(module, xs, state0):
    """torch on the packed batch; outputs padded back with zeros to (T, B, D·H)."""
    packed = pack_padded_sequence(xs, torch.tensor(LENGTHS), enforce_sorted=False)
    out, state = module(packed, state0)
    out, _ = pad_packed_sequence(out, total_length=T)
    return out, state


# --------------------------------------------------------------------------
# Parity with torch: stacked bidirectional networks on packed sequences.


@pytest.mark.sweep
@pytest.mark.parametrize(
    "name, bidirectional", [(name, True) for name in CELL_NAMES] + [("lstm", False)]
)
def test_stacked_network_matches_torch_on_packed_sequences(name, bidirectional):
    torch.manual_seed(0)
    cell, is_lstm = CELLS[name], name == "lstm"
    module = torch_module(name, num_layers=2, bidirectional=bidirectional)
    net = jaxrnn.stack(cell, 2, bidirectional=bidirectional)
    layers = 2 * net.num_directions

    # torch: a loss touching the outputs and every part of the final state, from random initial states.
    xs = padded_inputs()
    h0, c0 = randn(layers, B, H, requires_grad=True), randn(layers, B, H, requires_grad=True)
    r_out, r_h, r_c = randn(T, B, net.num_directions * H), randn(layers, B, H), randn(layers, B, H)
    out, state = run_torch_packed(module, xs, (h0, c0) if is_lstm else h0)
    h_n, c_n = state if is_lstm else (state, None)
    loss = (out * r_out).sum() + (h_n * r_h).sum() + ((c_n * r_c).sum() if is_lstm else 0)
    loss.backward()
    assert all(numpy(out)[n:, b].max(initial=0) == 0 for b, n in enumerate(LENGTHS))

    # jaxrnn: the same loss on converted weights and states, both grad modes in one jit.
    params = stack_from_torch(net, module.state_dict())
    carry0 = net.unstack_carry((numpy(h0), numpy(c0)) if is_lstm else numpy(h0))
    lengths = jnp.asarray(LENGTHS)

    @jax.jit
    def both_modes(params, carry, xs):
        results = {}
        for grad in jaxrnn.GRAD_MODES:

            def jax_loss(params, carry, xs, grad=grad):
                final, hs = net.apply(params, xs, carry, grad=grad, lengths=lengths)
                stacked = net.stack_carry(final)
                h_n, c_n = stacked if is_lstm else (stacked, None)
                value = jnp.sum(hs * numpy(r_out)) + jnp.sum(h_n * numpy(r_h))
                if is_lstm:
                    value = value + jnp.sum(c_n * numpy(r_c))
                return value, (hs, stacked)

            results[grad] = jax.value_and_grad(jax_loss, argnums=(0, 1, 2), has_aux=True)(params, carry, xs)
        return results

    torch_grads = {key: numpy(p.grad) for key, p in module.named_parameters()}
    for grad, ((value, (hs, final)), (d_params, d_carry, d_xs)) in both_modes(params, carry0, numpy(xs)).items():
        assert hs.dtype == jnp.float64 and hs.shape == (T, B, net.num_directions * H)
        np.testing.assert_allclose(hs, numpy(out), **TOL, err_msg=grad)
        np.testing.assert_allclose(value, loss.item(), **TOL, err_msg=grad)
        d_state = net.stack_carry(d_carry)
        if is_lstm:
            np.testing.assert_allclose(final.h, numpy(h_n), **TOL, err_msg=grad)
            np.testing.assert_allclose(final.c, numpy(c_n), **TOL, err_msg=grad)
            np.testing.assert_allclose(d_state.h, numpy(h0.grad), **TOL, err_msg=grad)
            np.testing.assert_allclose(d_state.c, numpy(c0.grad), **TOL, err_msg=grad)
        else:
            np.testing.assert_allclose(final, numpy(h_n), **TOL, err_msg=grad)
            np.testing.assert_allclose(d_state, numpy(h0.grad), **TOL, err_msg=grad)
        # torch's gradient at the padding is zero, and NaN padding must not reach ours.
        np.testing.assert_allclose(d_xs, numpy(xs.grad), **TOL, err_msg=grad)

        ours = stack_to_torch(net, d_params)
        assert list(ours) == list(torch_grads)
        for key, expected in torch_grads.items():
            assert np.abs(expected).max() > 0, key  # a zero gradient would make the check vacuous
            np.testing.assert_allclose(ours[key], expected, **TOL, err_msg=f"{grad} {key}")


@pytest.mark.sweep
@pytest.mark.parametrize("name", CELL_NAMES)
def test_bidirectional_matches_a_one_layer_torch_module(name):
    torch.manual_seed(1)
    cell, is_lstm = CELLS[name], name == "lstm"
    module = torch_module(name, bidirectional=True)
    xs = padded_inputs()
    h0, c0 = randn(2, B, H), randn(2, B, H)
    with torch.no_grad():
        out, state = run_torch_packed(module, xs, (h0, c0) if is_lstm else h0)
    h_n = state[0] if is_lstm else state

    sd = module.state_dict()
    params = jaxrnn.Bidirectional(from_torch(cell, sd), from_torch(cell, sd, reverse=True))
    if is_lstm:
        carry0 = jaxrnn.Bidirectional(*(jaxrnn.LSTMCarry(numpy(h0)[d], numpy(c0)[d]) for d in (0, 1)))
    else:
        carry0 = jaxrnn.Bidirectional(numpy(h0)[0], numpy(h0)[1])
    carry, hs = jaxrnn.bidirectional(cell, params, numpy(xs), carry0, lengths=jnp.asarray(LENGTHS))

    assert isinstance(carry, jaxrnn.Bidirectional)
    np.testing.assert_allclose(hs, numpy(out), **TOL)
    np.testing.assert_allclose(cell.hidden(carry.forward), numpy(h_n)[0], **TOL)
    np.testing.assert_allclose(cell.hidden(carry.backward), numpy(h_n)[1], **TOL)
    if is_lstm:
        np.testing.assert_allclose(carry.backward.c, numpy(state[1])[1], **TOL)


def test_time_major_false_gives_the_transposed_result():
    cell = jaxrnn.gru
    net = jaxrnn.stack(cell, 2, bidirectional=True)
    xs = jnp.asarray(np.random.default_rng(0).standard_normal((T, B, X)))
    lengths = jnp.asarray(LENGTHS)

    @jax.jit
    def run(params, net_params, xs):
        results = []
        for time_major, inputs in ((True, xs), (False, xs.swapaxes(0, 1))):
            carry, hs = jaxrnn.bidirectional(cell, params, inputs, lengths=lengths, time_major=time_major)
            final, out = net.apply(net_params, inputs, lengths=lengths, time_major=time_major)
            results.append((carry, hs, net.stack_carry(final), out))
        return results

    (carry, hs, final, out), (carry_b, hs_b, final_b, out_b) = run(pair_params(cell), random_params(net), xs)
    assert hs_b.shape == out_b.shape == (B, T, 2 * H)
    assert not np.allclose(hs, out)
    np.testing.assert_allclose(hs_b, hs.swapaxes(0, 1), rtol=1e-14)
    np.testing.assert_allclose(out_b, out.swapaxes(0, 1), rtol=1e-14)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-14), (carry_b, final_b), (carry, final))


def test_bidirectional_resets_treat_each_segment_as_its_own_sequence():
    """resets marks segment starts; the backward direction resets at segment ends."""
    cell = jaxrnn.lstm
    rng = np.random.default_rng(1)
    xs = jnp.asarray(rng.standard_normal((T, 1, X)))
    carry0 = jaxrnn.Bidirectional(*(jaxrnn.LSTMCarry(*rng.standard_normal((2, 1, H))) for _ in range(2)))
    resets = np.zeros((T, 1), bool)
    resets[2] = True  # segments [0, 2) and [2, T)

    @jax.jit
    def run(params, carry0, xs):
        whole = jaxrnn.bidirectional(cell, params, xs, carry0, resets=jnp.asarray(resets))
        first, second = (jaxrnn.bidirectional(cell, params, part, carry0) for part in (xs[:2], xs[2:]))
        return whole, first, second

    (carry, hs), (carry_a, hs_a), (carry_b, hs_b) = run(pair_params(cell), carry0, xs)
    np.testing.assert_allclose(hs, np.concatenate([hs_a, hs_b]), rtol=1e-12)
    # Forward ends after the last segment; backward after step 0, i.e. the first segment.
    np.testing.assert_allclose(carry.forward.c, carry_b.forward.c, rtol=1e-12)
    np.testing.assert_allclose(carry.backward.c, carry_a.backward.c, rtol=1e-12)


def test_bidirectional_defaults_and_grad_modes_agree():
    cell = jaxrnn.simple_rnn
    xs = jnp.asarray(np.random.default_rng(2).standard_normal((T, B, X)))
    params = pair_params(cell)
    zeros = jaxrnn.Bidirectional(*(cell.initial_carry(B, H, dtype=jnp.float64),) * 2)

    @jax.jit
    def run(params, xs):  # a plain pair works too
        return jaxrnn.bidirectional(cell, params, xs), jaxrnn.bidirectional(cell, tuple(params), xs, zeros)

    (carry, hs), (carry_z, hs_z) = run(params, xs)
    np.testing.assert_array_equal(hs, hs_z)
    np.testing.assert_array_equal(carry.backward, carry_z.backward)
    # Without lengths the backward output at step 0 is its final state, the forward one at T-1.
    np.testing.assert_array_equal(hs[0, :, H:], carry.backward)
    np.testing.assert_array_equal(hs[-1, :, :H], carry.forward)

    @jax.jit
    def grads(params, xs):
        def loss(params, xs, grad):
            carry, hs = jaxrnn.bidirectional(cell, params, xs, grad=grad, lengths=jnp.asarray(LENGTHS))
            return jnp.sum(hs**2) + jnp.sum(carry.backward)

        return [jax.grad(loss, argnums=(0, 1))(params, xs, grad) for grad in jaxrnn.GRAD_MODES]

    manual, autodiff = grads(params, xs)
    assert np.abs(manual[0].backward.w_hh).max() > 0
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), manual, autodiff)


# --------------------------------------------------------------------------
# The network value: init, carries, hashing.


def test_init_shapes_and_carry_layout():
    net = jaxrnn.stack(jaxrnn.lstm, 3, bidirectional=True)
    params = jaxrnn.stack(jaxrnn.lstm, 2, bidirectional=True).init(jax.random.key(0), X, H, dtype=jnp.float64)
    assert isinstance(params, tuple) and len(params) == 2
    assert all(isinstance(layer, jaxrnn.Bidirectional) for layer in params)
    assert params[0].forward.w_ih.shape == (X, 4 * H)
    assert params[1].backward.w_ih.shape == params[1].forward.w_ih.shape == (2 * H, 4 * H)
    assert params[0].forward.w_ih.dtype == jnp.float64
    assert not np.array_equal(params[0].forward.w_hh, params[0].backward.w_hh)  # separate keys

    zeros = net.initial_carry(B, H)
    assert len(zeros) == 3 and isinstance(zeros[2].backward, jaxrnn.LSTMCarry)
    assert zeros[0].forward.h.shape == (B, H) and not np.any(zeros[1].backward.c)

    # stack_carry is torch's h_n layout: index layer·2 + direction.
    carry = tuple(
        jaxrnn.Bidirectional(*(jaxrnn.LSTMCarry(jnp.full((B, H), 10 * k + d), jnp.full((B, H), -(10 * k + d)))
                               for d in (0, 1)))
        for k in range(3)
    )
    h_n, c_n = net.stack_carry(carry)
    assert h_n.shape == (6, B, H)
    np.testing.assert_array_equal(h_n[:, 0, 0], [0, 1, 10, 11, 20, 21])
    np.testing.assert_array_equal(c_n[:, 0, 0], [0, -1, -10, -11, -20, -21])
    back = net.unstack_carry((h_n, c_n))
    jax.tree.map(np.testing.assert_array_equal, back, carry)
    assert isinstance(back[1], jaxrnn.Bidirectional) and isinstance(back[1].forward, jaxrnn.LSTMCarry)


def test_stack_is_a_hashable_value_usable_under_jit():
    net = jaxrnn.stack(jaxrnn.gru, 2, bidirectional=True)
    assert net == jaxrnn.stack(jaxrnn.gru, 2, bidirectional=True)
    assert hash(net) == hash(jaxrnn.stack(jaxrnn.gru, 2, bidirectional=True))
    assert net != jaxrnn.stack(jaxrnn.gru, 2)
    assert repr(net) == "jaxrnn.stack(jaxrnn.gru, num_layers=2, bidirectional=True, dropout=0.0)"

    params = random_params(net)
    xs = jnp.ones((T, B, X))
    traces = []

    def apply(net, params, xs):
        traces.append(net)
        return net.apply(params, xs)[1]

    run = jax.jit(apply, static_argnums=0)
    out = run(net, params, xs)
    assert out.shape == (T, B, 2 * H)
    # An equal net hits the cache: no second trace.
    np.testing.assert_array_equal(run(jaxrnn.stack(jaxrnn.gru, 2, bidirectional=True), params, xs), out)
    assert len(traces) == 1


# --------------------------------------------------------------------------
# Dropout.


def dropout_setup():
    net = jaxrnn.stack(jaxrnn.gru, 2, dropout=0.5)
    xs = jnp.asarray(np.random.default_rng(3).standard_normal((T, B, X)))
    return net, random_params(net), xs


def test_dropout_is_identity_in_inference_and_deterministic_per_key():
    net, params, xs = dropout_setup()
    plain = jaxrnn.stack(jaxrnn.gru, 2)

    @jax.jit
    def inference(params, xs):  # no key needed; a key given is ignored
        return plain.apply(params, xs)[1], net.apply(params, xs)[1], net.apply(params, xs, key=jax.random.key(1))[1]

    expected, eval_out, eval_keyed = inference(params, xs)
    np.testing.assert_array_equal(eval_out, expected)
    np.testing.assert_array_equal(eval_keyed, expected)

    train = jax.jit(lambda params, xs, key: net.apply(params, xs, key=key, train=True)[1])
    a, b, c = (train(params, xs, jax.random.key(seed)) for seed in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, expected) and not np.allclose(a, c)
    d = train(params, xs, jax.random.PRNGKey(1))  # a raw uint32 key works too
    assert d.shape == a.shape and not np.allclose(d, expected)


def test_dropout_zeroes_or_rescales_each_interlayer_activation():
    """Layer 2 is tanh(x) of its input exactly (w_ih = I, the rest 0), so it shows layer 1's dropped outputs."""
    cell = jaxrnn.simple_rnn
    net = jaxrnn.stack(cell, 2, dropout=0.5)
    layer0 = random_params(net)[0]
    zeros = jnp.zeros(H, jnp.float64)
    identity = jaxrnn.SimpleRNNParams(jnp.eye(H), jnp.zeros((H, H)), zeros, zeros)
    # Bigger batch for a stable fraction; padding rows must stay zero.
    xs = jnp.asarray(np.random.default_rng(4).standard_normal((T, 40, X)))
    lengths = jnp.asarray(np.r_[[T] * 39, 2])

    @jax.jit
    def run(layer0, xs):
        alone = jaxrnn.unroll(cell, layer0, xs, lengths=lengths)
        return alone, net.apply((layer0, identity), xs, key=jax.random.key(5), train=True, lengths=lengths)

    (carry_1, h1), (carry, out) = run(layer0, xs)
    seen = np.arctanh(np.asarray(out))  # what layer 2 received
    dropped = seen == 0
    np.testing.assert_allclose(np.where(dropped, 0, seen), np.where(dropped, 0, 2 * np.asarray(h1)), rtol=1e-12)
    live = np.asarray(h1) != 0
    assert 0.4 < dropped[live].mean() < 0.6
    assert np.all(seen[2:, -1] == 0)  # padding stays zero
    # Dropout acts on what the next layer reads, not on the state: layer 1's carry is torch's h_n.
    np.testing.assert_array_equal(carry[0], carry_1)


@pytest.mark.slow
def test_dropout_gradients_agree_between_grad_modes():
    net, params, xs = dropout_setup()
    key = jax.random.key(7)

    @jax.jit
    def grads(params, xs):
        def loss(params, xs, grad):
            carry, hs = net.apply(params, xs, key=key, train=True, grad=grad, lengths=jnp.asarray(LENGTHS))
            return jnp.sum(hs**2) + jnp.sum(carry[1])

        return [jax.grad(loss, argnums=(0, 1))(params, xs, grad) for grad in jaxrnn.GRAD_MODES]

    manual, autodiff = grads(params, xs)
    assert np.abs(manual[0][1].w_ih).max() > 0
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), manual, autodiff)


def test_dropout_errors_and_warning():
    net, params, xs = dropout_setup()
    with pytest.raises(ValueError, match=r"train=True with dropout=0\.5 needs a PRNG key.*jax\.random\.key"):
        net.apply(params, xs, train=True)
    with pytest.raises(TypeError, match="key must be a PRNG key; got 3"):
        net.apply(params, xs, key=3, train=True)
    with pytest.raises(TypeError, match="train must be a Python bool"):
        net.apply(params, xs, key=jax.random.key(0), train=jnp.asarray(True))
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\)"):
            jaxrnn.stack(jaxrnn.gru, 2, dropout=bad)
    for bad in ("0.1", True, None):
        with pytest.raises(TypeError, match=r"dropout must be a float in \[0, 1\)"):
            jaxrnn.stack(jaxrnn.gru, 2, dropout=bad)
    with pytest.warns(UserWarning, match="no effect with num_layers=1"):
        jaxrnn.stack(jaxrnn.gru, 1, dropout=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jaxrnn.stack(jaxrnn.gru, 2, dropout=0.2)


# --------------------------------------------------------------------------
# Conversion: reverse weights and whole modules.


@pytest.mark.sweep
@pytest.mark.parametrize("name", CELL_NAMES)
def test_reverse_weights_round_trip_exactly(name):
    torch.manual_seed(2)
    cell = CELLS[name]
    sd = torch_module(name, num_layers=2, bidirectional=True).state_dict()
    forward = from_torch(cell, sd, layer=1)
    backward = from_torch(cell, sd, layer=1, reverse=True)
    np.testing.assert_array_equal(backward.w_hh, numpy(sd["weight_hh_l1_reverse"]).T)
    assert not np.array_equal(forward.w_hh, backward.w_hh)
    back = to_torch(cell, backward, layer=1, reverse=True, prefix="rnn.")
    assert sorted(back) == sorted(f"rnn.{k}" for k in sd if k.endswith("_l1_reverse"))
    for key, value in back.items():
        np.testing.assert_array_equal(value, numpy(sd[key.removeprefix("rnn.")]), err_msg=key)


@pytest.mark.sweep
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_whole_module_converts_exactly_both_ways(name, bidirectional):
    torch.manual_seed(3)
    cell = CELLS[name]
    net = jaxrnn.stack(cell, 3, bidirectional=bidirectional)
    module = torch_module(name, num_layers=3, bidirectional=bidirectional)
    sd = module.state_dict()

    params = stack_from_torch(net, sd)
    back = stack_to_torch(net, params)
    assert list(back) == list(sd)  # torch's own key order
    for key, value in sd.items():
        assert back[key].dtype == np.float64
        np.testing.assert_array_equal(back[key], numpy(value), err_msg=key)

    # Our params into a fresh torch module (strict load) and back again, under a prefix.
    ours = random_params(net)
    fresh = torch_module(name, num_layers=3, bidirectional=bidirectional)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in stack_to_torch(net, ours).items()})
    nested = {f"enc.{k}": v for k, v in fresh.state_dict().items()}
    jax.tree.map(np.testing.assert_array_equal, stack_from_torch(net, nested, prefix="enc."), ours)


def test_whole_module_mismatches_are_explained():
    gru2 = jaxrnn.stack(jaxrnn.gru, 2, bidirectional=True)
    uni_sd = torch_module("gru", num_layers=2).state_dict()
    bi_sd = torch_module("gru", num_layers=2, bidirectional=True).state_dict()
    with pytest.raises(ValueError, match=r"has no _reverse keys.*bidirectional=True.*bidirectional=False\)"):
        stack_from_torch(gru2, uni_sd)
    with pytest.raises(ValueError, match=r"has _reverse keys.*bidirectional=False.*bidirectional=True\)"):
        stack_from_torch(jaxrnn.stack(jaxrnn.gru, 2), bi_sd)
    with pytest.raises(ValueError, match=r"2 layer\(s\) .*num_layers=3.*jaxrnn\.stack\(jaxrnn\.gru, num_layers=2"):
        stack_from_torch(jaxrnn.stack(jaxrnn.gru, 3, bidirectional=True), bi_sd)
    incomplete = {k: v for k, v in bi_sd.items() if "_l0" not in k}
    with pytest.raises(ValueError, match=r"layers \[1\].*incomplete"):
        stack_from_torch(gru2, incomplete)
    with pytest.raises(ValueError, match=r"rows where 4·H are expected.*torch\.nn\.GRU"):
        stack_from_torch(jaxrnn.stack(jaxrnn.lstm, 2, bidirectional=True), bi_sd)
    with pytest.raises(ValueError, match=r"reverse direction of layer 0.*not bidirectional\. Pass reverse=False"):
        from_torch(jaxrnn.gru, uni_sd, reverse=True)
    with pytest.raises(TypeError, match=r"net must be a network from jaxrnn\.stack.*interop\.from_torch\(cell"):
        stack_from_torch(jaxrnn.gru, bi_sd)
    with pytest.raises(TypeError, match="reverse must be a bool"):
        to_torch(jaxrnn.gru, from_torch(jaxrnn.gru, bi_sd), reverse="yes")
    with pytest.raises(ValueError, match=r"params must have one entry per layer, 2; got 1"):
        stack_to_torch(gru2, stack_from_torch(jaxrnn.stack(jaxrnn.gru, 1, bidirectional=True), {
            k: v for k, v in bi_sd.items() if "_l0" in k}))


# --------------------------------------------------------------------------
# Structure errors: each names the rule, what was received and the fix.


def test_stack_argument_errors():
    with pytest.raises(ValueError, match="num_layers must be > 0; got 0"):
        jaxrnn.stack(jaxrnn.lstm, 0)
    with pytest.raises(TypeError, match="num_layers must be an int"):
        jaxrnn.stack(jaxrnn.lstm, "2")
    with pytest.raises(TypeError, match="bidirectional must be a bool"):
        jaxrnn.stack(jaxrnn.lstm, 2, bidirectional=1)
    with pytest.raises(TypeError, match="cell must be a jaxrnn.Cell"):
        jaxrnn.stack("lstm", 2)
    net = jaxrnn.stack(jaxrnn.lstm, 2)
    with pytest.raises(TypeError, match=r"initial_carry: dtype must be a floating dtype"):
        net.initial_carry(2, 3, dtype=jnp.int32)
    assert net.initial_carry(2, 3, dtype=jnp.bfloat16)[0].h.dtype == jnp.float32  # the state stays float32


def test_params_and_carry_structure_errors():
    net = jaxrnn.stack(jaxrnn.lstm, 2, bidirectional=True)
    params = random_params(net)
    xs = jnp.ones((T, B, X))
    with pytest.raises(TypeError, match=r"params must be a tuple of one entry per layer \(2\); got LSTMParams"):
        net.apply(params[0].forward, xs)
    with pytest.raises(ValueError, match=r"one entry per layer, 2; got 1.*num_layers=1"):
        net.apply(params[:1], xs)
    with pytest.raises(TypeError, match=r"params\[1\] of a bidirectional layer must be a pair.*got LSTMParams"):
        net.apply((params[0], params[1].forward), xs)
    with pytest.raises(TypeError, match=r"state dict.*stack_from_torch"):
        net.apply({"weight_ih_l0": 1}, xs)
    with pytest.raises(TypeError, match=r"params\[0\] is Bidirectional, but the net is unidirectional"):
        jaxrnn.stack(jaxrnn.lstm, 2).apply(params, xs)
    uni = random_params(jaxrnn.stack(jaxrnn.lstm, 2))
    with pytest.raises(ValueError, match=r"params\[1\]\.forward: layer 1 reads .* 8 features.*unidirectional net"):
        net.apply(tuple(jaxrnn.Bidirectional(p, p) for p in uni), xs)
    with pytest.raises(ValueError, match=r"params\[1\]: layer 1 reads .* 4 features.*bidirectional net"):
        jaxrnn.stack(jaxrnn.lstm, 2).apply(tuple(p.forward for p in params), xs)

    carry = net.initial_carry(B, H)
    h_n, c_n = net.stack_carry(carry)
    with pytest.raises(TypeError, match=r"carry must be a tuple of one entry per layer.*LSTMCarry.*unstack_carry"):
        net.apply(params, xs, net.stack_carry(carry))
    with pytest.raises(TypeError, match=r"carry\[0\] of a bidirectional layer must be a pair.*got LSTMCarry"):
        net.apply(params, xs, (carry[0].forward, carry[1]))
    with pytest.raises(ValueError, match=r"\(2·2, batch, hidden\), as torch's h_0; got \(2, 3, 4\)"):
        net.unstack_carry((h_n[:2], c_n[:2]))
    with pytest.raises(TypeError, match=r"pass a tuple of 2 stacked arrays, like torch's \(h_0, c_0\)"):
        net.unstack_carry(h_n)
    with pytest.raises(ValueError, match=r"carry\.h must be \(batch, hidden\) = \(3, 4\)"):
        net.apply(params, xs, net.initial_carry(B + 1, H))

    # The function form has the same pair rule.
    with pytest.raises(TypeError, match=r"params of a bidirectional layer must be a pair.*got LSTMParams"):
        jaxrnn.bidirectional(jaxrnn.lstm, params[0].forward, xs)
    with pytest.raises(TypeError, match=r"carry of a bidirectional layer must be a pair.*got LSTMCarry"):
        jaxrnn.bidirectional(jaxrnn.lstm, params[0], xs, carry[0].forward)
    with pytest.raises(ValueError, match=r"same \(input_size, hidden_size\).*\(3, 4\) and params\.backward \(8, 4\)"):
        jaxrnn.bidirectional(jaxrnn.lstm, (params[0].forward, params[1].backward), xs)


def test_every_check_runs_once_per_call(monkeypatch):
    """Options, xs, lengths and resets are checked once per call, not again in every layer and direction."""
    from jaxrnn import _checks, _options

    calls: dict[str, int] = {}

    def counted(owner, name):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    for name in ("inputs", "lengths", "step_mask", "params"):
        counted(_checks, name)
    counted(_options.SequenceOptions, "checked")
    net = jaxrnn.stack(jaxrnn.lstm, num_layers=3, bidirectional=True)
    params = net.init(jax.random.key(0), 4, 5)
    xs, lengths, resets = jnp.ones((6, 2, 4)), jnp.array([6, 3]), jnp.zeros((6, 2), bool)
    jax.eval_shape(lambda p: net.apply(p, xs, lengths=lengths, resets=resets), params)
    # one params check per layer and direction: six different sets of params
    assert calls == {"checked": 1, "inputs": 1, "lengths": 1, "step_mask": 1, "params": 6}
