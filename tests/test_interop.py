"""jaxrnn.interop: exact weight conversion to and from torch.nn.RNN/LSTM/GRU.

Parity is checked against torch itself in float64 (conftest enables x64):
outputs, final states and every gradient.
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.interop import from_torch, to_torch

torch = pytest.importorskip("torch")

X, H, B, T = 3, 5, 4, 6  # input, hidden, batch, time
TOL = dict(rtol=1e-12, atol=1e-12)
CELL_NAMES = ("simple_rnn", "lstm", "gru")
CELLS = {"simple_rnn": jaxrnn.simple_rnn, "lstm": jaxrnn.lstm, "gru": jaxrnn.gru}


def torch_module(name, input_size=X, **kwargs):
    """The torch layer matching ``name``, in float64."""
    if name == "simple_rnn":
        return torch.nn.RNN(input_size, H, nonlinearity="tanh", **kwargs).double()
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[name](input_size, H, **kwargs).double()


def torch_cell(name, **kwargs):
    """The torch single-step cell matching ``name``, in float64."""
    if name == "simple_rnn":
        return torch.nn.RNNCell(X, H, nonlinearity="tanh", **kwargs).double()
    return {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[name](X, H, **kwargs).double()


def numpy(tensor):
    return tensor.detach().cpu().numpy()


def randn(*shape, requires_grad=False):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=requires_grad)


def random_params(cell, dtype=jnp.float64, seed=0):
    """Params with every entry random (cell.init's zero biases would hide a mix-up); quicker than init."""
    rng = np.random.default_rng(seed)
    width = len(cell.gates) * H
    shapes = {"w_ih": (X, width), "w_hh": (H, width), "b_ih": (width,), "b_hh": (width,)}
    return cell.params_type(**{k: jnp.asarray(rng.standard_normal(s), dtype) for k, s in shapes.items()})


# --------------------------------------------------------------------------
# Parity with torch: values and gradients.


@pytest.mark.parametrize("grad", jaxrnn.GRAD_MODES)
@pytest.mark.parametrize("name", CELL_NAMES)
def test_unroll_matches_torch_values_and_gradients(name, grad):
    torch.manual_seed(0)
    cell, module = CELLS[name], torch_module(name)
    is_lstm = name == "lstm"

    # torch: a loss touching the outputs and every part of the final state.
    xs = randn(T, B, X, requires_grad=True)
    h0 = randn(1, B, H, requires_grad=True)
    c0 = randn(1, B, H, requires_grad=True)
    r_out, r_h, r_c = randn(T, B, H), randn(1, B, H), randn(1, B, H)
    out, state = module(xs, (h0, c0) if is_lstm else h0)
    h_n, c_n = state if is_lstm else (state, None)
    loss = (out * r_out).sum() + (h_n * r_h).sum() + ((c_n * r_c).sum() if is_lstm else 0)
    loss.backward()

    # jaxrnn: the same loss on converted weights.
    def jax_loss(params, carry, xs):
        carry, hs = jaxrnn.unroll(cell, params, xs, carry, grad=grad)
        value = jnp.sum(hs * numpy(r_out)) + jnp.sum(cell.hidden(carry) * numpy(r_h)[0])
        if is_lstm:
            value = value + jnp.sum(carry.c * numpy(r_c)[0])
        return value, (carry, hs)

    params = from_torch(cell, module.state_dict())
    carry0 = jaxrnn.LSTMCarry(numpy(h0)[0], numpy(c0)[0]) if is_lstm else numpy(h0)[0]
    (value, (carry, hs)), (d_params, d_carry, d_xs) = jax.value_and_grad(
        jax_loss, argnums=(0, 1, 2), has_aux=True
    )(params, carry0, numpy(xs))

    assert hs.dtype == jnp.float64
    np.testing.assert_allclose(hs, numpy(out), **TOL)
    np.testing.assert_allclose(cell.hidden(carry), numpy(h_n)[0], **TOL)
    np.testing.assert_allclose(value, loss.item(), **TOL)
    np.testing.assert_allclose(d_xs, numpy(xs.grad), **TOL)
    np.testing.assert_allclose(cell.hidden(d_carry), numpy(h0.grad)[0], **TOL)
    if is_lstm:
        np.testing.assert_allclose(carry.c, numpy(c_n)[0], **TOL)
        np.testing.assert_allclose(d_carry.c, numpy(c0.grad)[0], **TOL)

    torch_grads = {key: numpy(p.grad) for key, p in module.named_parameters()}
    our_grads = to_torch(cell, d_params)
    assert our_grads.keys() == torch_grads.keys()
    for key, expected in torch_grads.items():
        assert np.abs(expected).max() > 0, key  # a zero gradient would make the check vacuous
        np.testing.assert_allclose(our_grads[key], expected, **TOL, err_msg=key)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_second_layer_of_a_stacked_module(name):
    torch.manual_seed(1)
    cell, module = CELLS[name], torch_module(name, num_layers=2)
    xs = randn(T, B, X)
    with torch.no_grad():
        out, state = module(xs)
    h_n = state[0] if name == "lstm" else state

    sd = module.state_dict()
    carry0, hs0 = jaxrnn.unroll(cell, from_torch(cell, sd, layer=0), numpy(xs))
    carry1, hs1 = jaxrnn.unroll(cell, from_torch(cell, sd, layer=1), hs0)
    np.testing.assert_allclose(hs1, numpy(out), **TOL)
    np.testing.assert_allclose(cell.hidden(carry0), numpy(h_n)[0], **TOL)
    np.testing.assert_allclose(cell.hidden(carry1), numpy(h_n)[1], **TOL)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_bidirectional_module_converts_its_forward_direction(name):
    torch.manual_seed(2)
    cell, module = CELLS[name], torch_module(name, bidirectional=True)
    xs = randn(T, B, X)
    with torch.no_grad():
        out, _ = module(xs)
    assert any(key.endswith("_reverse") for key in module.state_dict())
    _, hs = jaxrnn.unroll(cell, from_torch(cell, module.state_dict()), numpy(xs))
    np.testing.assert_allclose(hs, numpy(out)[..., :H], **TOL)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_bias_false_gives_zero_biases_and_matches_torch(name):
    torch.manual_seed(3)
    cell, module = CELLS[name], torch_module(name, bias=False)
    assert not any(key.startswith("bias") for key in module.state_dict())
    params = from_torch(cell, module.state_dict())
    width = len(cell.gates) * H
    for bias in (params.b_ih, params.b_hh):
        assert bias.shape == (width,) and bias.dtype == jnp.float64
        np.testing.assert_array_equal(bias, np.zeros(width))

    xs = randn(T, B, X)
    with torch.no_grad():
        out, _ = module(xs)
    _, hs = jaxrnn.unroll(cell, params, numpy(xs))
    np.testing.assert_allclose(hs, numpy(out), **TOL)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_cell_style_keys_match_one_torch_cell_step(name):
    torch.manual_seed(4)
    cell, module = CELLS[name], torch_cell(name)
    assert "weight_ih" in module.state_dict()  # no _l0 suffix
    x, h, c = randn(B, X), randn(B, H), randn(B, H)
    with torch.no_grad():
        expected = module(x, (h, c)) if name == "lstm" else module(x, h)

    params = from_torch(cell, module.state_dict())
    carry = jaxrnn.LSTMCarry(numpy(h), numpy(c)) if name == "lstm" else numpy(h)
    new_carry, out = cell.step(params, carry, numpy(x))
    if name == "lstm":
        np.testing.assert_allclose(out, numpy(expected[0]), **TOL)
        np.testing.assert_allclose(new_carry.c, numpy(expected[1]), **TOL)
    else:
        np.testing.assert_allclose(out, numpy(expected), **TOL)

    # The recipe in to_torch's docstring loads the params back into a torch cell.
    sd = {k.removesuffix("_l0"): torch.from_numpy(v) for k, v in to_torch(cell, params).items()}
    fresh = torch_cell(name)
    fresh.load_state_dict(sd)
    for key, value in module.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


# --------------------------------------------------------------------------
# Exact round trips and the kinds of values accepted.


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("values", ["tensor", "numpy"])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_state_dict_round_trip_is_exact(name, values, dtype):
    torch.manual_seed(5)
    sd = torch_module(name, num_layers=2).to(dtype).state_dict()
    if values == "numpy":
        sd = {key: numpy(value) for key, value in sd.items()}
    cell = CELLS[name]
    back = {}
    for layer in (0, 1):
        params = from_torch(cell, sd, layer=layer)
        assert isinstance(params, cell.params_type)
        assert all(isinstance(a, jax.Array) for a in params)
        back.update(to_torch(cell, params, layer=layer))

    assert back.keys() == sd.keys()
    for key, value in sd.items():
        expected = numpy(value) if values == "tensor" else value
        assert back[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(back[key], expected, err_msg=key)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_params_round_trip_is_exact(name, dtype):
    cell = CELLS[name]
    params = random_params(cell, dtype)
    sd = to_torch(cell, params, layer=2, prefix="model.rnn.")
    assert sorted(sd) == [f"model.rnn.{stem}_l2" for stem in ("bias_hh", "bias_ih", "weight_hh", "weight_ih")]
    assert sd["model.rnn.weight_ih_l2"].shape == (len(cell.gates) * H, X)
    assert sd["model.rnn.weight_hh_l2"].shape == (len(cell.gates) * H, H)
    for value in sd.values():  # what torch.from_numpy takes without a copy or a warning
        assert isinstance(value, np.ndarray) and value.flags.c_contiguous and value.flags.writeable

    back = from_torch(cell, sd, layer=2, prefix="model.rnn.")
    assert type(back) is type(params)
    for field, a, b in zip(params._fields, back, params):
        assert a.dtype == b.dtype, field
        np.testing.assert_array_equal(a, b, err_msg=field)


def test_to_torch_loads_into_a_nested_torch_module():
    torch.manual_seed(6)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Module()
            self.encoder.rnn = torch.nn.GRU(X, H).double()

    model = Model()
    params = random_params(jaxrnn.gru, seed=2)
    sd = to_torch(jaxrnn.gru, params, prefix="encoder.rnn.")
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})  # strict: keys must match

    xs = randn(T, B, X)
    with torch.no_grad():
        out, _ = model.encoder.rnn(xs)
    _, hs = jaxrnn.unroll(jaxrnn.gru, params, numpy(xs))
    np.testing.assert_allclose(hs, numpy(out), **TOL)

    # And back through the nested model's own state dict.
    back = from_torch(jaxrnn.gru, model.state_dict(), prefix="encoder.rnn.")
    for a, b in zip(back, params):
        np.testing.assert_array_equal(a, b)


def test_tensors_requiring_grad_convert_and_are_copied():
    torch.manual_seed(7)
    module = torch_module("lstm")
    sd = dict(module.named_parameters())  # live parameters, requires_grad=True
    assert all(p.requires_grad for p in sd.values())
    params = from_torch(jaxrnn.lstm, sd)
    np.testing.assert_array_equal(params.w_hh, numpy(module.weight_hh_l0).T)
    np.testing.assert_array_equal(params.b_ih, numpy(module.bias_ih_l0))

    before = [np.array(a) for a in params]
    with torch.no_grad():  # as an optimizer step would
        for p in module.parameters():
            p.add_(1.0)
    for a, b in zip(params, before):
        np.testing.assert_array_equal(a, b)


def test_jaxrnn_does_not_import_torch():
    code = "import sys, jaxrnn, jaxrnn.interop; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------
# Errors: each names the rule, what was received and the fix.


def test_missing_keys_lists_those_looked_for_and_present():
    looked_for = (
        r"no weights for layer 0 of a torch\.nn\.LSTM: looked for \['weight_ih_l0', 'weight_hh_l0'\] "
        r"and, as a torch\.nn\.LSTMCell names them, \['weight_ih', 'weight_hh'\]"
    )
    with pytest.raises(ValueError, match=looked_for):
        from_torch(jaxrnn.lstm, {"fc.weight": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"key\(s\) are \['fc.weight'\]"):
        from_torch(jaxrnn.lstm, {"fc.weight": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="state dict is empty"):
        from_torch(jaxrnn.lstm, {})


def test_missing_keys_suggests_the_prefix():
    sd = {f"encoder.rnn.{k}": v for k, v in torch_module("gru").state_dict().items()}
    with pytest.raises(ValueError, match=r"pass prefix='encoder\.rnn\.'"):
        from_torch(jaxrnn.gru, sd)
    with pytest.raises(ValueError, match=r"pass prefix='encoder\.rnn\.'"):
        from_torch(jaxrnn.gru, sd, prefix="encoder.rnn")  # the dot forgotten


def test_missing_layer_lists_the_layers_present():
    sd = torch_module("gru", num_layers=2).state_dict()
    match = r"layer 2 .*looked for \['weight_ih_l2', 'weight_hh_l2'\];.*has layers \[0, 1\]"
    with pytest.raises(ValueError, match=match):
        from_torch(jaxrnn.gru, sd, layer=2)


def test_cell_style_keys_need_layer_zero():
    with pytest.raises(ValueError, match="Cell-style keys .* pass layer=0"):
        from_torch(jaxrnn.gru, torch_cell("gru").state_dict(), layer=1)


def test_missing_weight_hh_says_the_state_dict_is_incomplete():
    sd = dict(torch_module("gru").state_dict())
    del sd["weight_hh_l0"]
    with pytest.raises(ValueError, match="has weight_ih_l0 but not weight_hh_l0"):
        from_torch(jaxrnn.gru, sd)


@pytest.mark.parametrize(
    "source, cell, rows",
    [
        ("lstm", jaxrnn.gru, 4),
        ("gru", jaxrnn.lstm, 3),
        ("simple_rnn", jaxrnn.gru, 1),
        ("gru", jaxrnn.simple_rnn, 3),
    ],
)
def test_state_dict_of_another_cell_type(source, cell, rows):
    sd = torch_module(source).state_dict()
    torch_name = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "RNN"}[source]
    with pytest.raises(
        ValueError,
        match=rf"has {rows}·H rows where {len(cell.gates)}·H are expected, "
        rf"so it looks like the state dict of a torch\.nn\.{torch_name}: convert it with jaxrnn\.{source}",
    ):
        from_torch(cell, sd)


def test_shapes_that_fit_no_cell():
    sd = dict(torch_module("gru").state_dict())
    sd["weight_hh_l0"] = torch.zeros(3 * H, H + 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"weight_hh_l0 must be \(3·H, H\) .* got shape \(15, 6\)"):
        from_torch(jaxrnn.gru, sd)
    sd["weight_hh_l0"] = torch.zeros(3 * H, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"weight_hh_l0 must be \(3·H, H\) .* got shape \(15,\)"):
        from_torch(jaxrnn.gru, sd)


def test_bad_input_weight_and_bias_shapes_use_the_shared_checks():
    good = torch_module("lstm").state_dict()
    sd = {**good, "weight_ih_l0": good["weight_ih_l0"][:7]}
    with pytest.raises(ValueError, match=r"w_ih = weight_ih_l0\.T.*params\.w_ih must be \(input_size, 20\)"):
        from_torch(jaxrnn.lstm, sd)
    sd = {**good, "bias_hh_l0": good["bias_hh_l0"][:4]}
    with pytest.raises(ValueError, match=r"params\.b_hh must have shape \(20,\).*got \(4,\)"):
        from_torch(jaxrnn.lstm, sd)


def test_only_one_bias():
    sd = dict(torch_module("lstm").state_dict())
    del sd["bias_hh_l0"]
    with pytest.raises(ValueError, match="has bias_ih_l0 but not bias_hh_l0.*both biases"):
        from_torch(jaxrnn.lstm, sd)


def test_lstm_with_proj_size_is_rejected():
    sd = torch.nn.LSTM(X, H, proj_size=2).state_dict()
    with pytest.raises(ValueError, match="weight_hr_l0.*proj_size > 0.*jaxrnn.lstm does not have.*jaxrnn.projected_lstm"):
        from_torch(jaxrnn.lstm, sd)


@pytest.mark.parametrize("function", [from_torch, to_torch])
def test_bad_layer(function):
    params = random_params(jaxrnn.gru)
    argument = torch_module("gru").state_dict() if function is from_torch else params
    with pytest.raises(ValueError, match="layer must be ≥ 0; got -1"):
        function(jaxrnn.gru, argument, layer=-1)
    with pytest.raises(TypeError, match="layer must be an int; got 1.0"):
        function(jaxrnn.gru, argument, layer=1.0)
    with pytest.raises(TypeError, match="layer must be an int; got the bool"):
        function(jaxrnn.gru, argument, layer=True)


@pytest.mark.parametrize("function", [from_torch, to_torch])
def test_not_a_cell(function):
    with pytest.raises(TypeError, match="cell must be a jaxrnn.Cell .*got str"):
        function("gru", {})
    with pytest.raises(TypeError, match="cell must be a jaxrnn.Cell .*got GRU"):
        function(torch_module("gru"), {})


def test_prefix_must_be_a_string():
    with pytest.raises(TypeError, match="prefix must be a str"):
        from_torch(jaxrnn.gru, torch_module("gru").state_dict(), prefix=None)


def test_module_instead_of_state_dict():
    with pytest.raises(TypeError, match=r"must be a mapping.*got GRU\. Pass module\.state_dict\(\)"):
        from_torch(jaxrnn.gru, torch_module("gru"))


def test_integer_weights_are_rejected():
    sd = {k: v.to(torch.int64) for k, v in torch_module("gru").state_dict().items()}
    with pytest.raises(TypeError, match="must have a floating dtype; got int64"):
        from_torch(jaxrnn.gru, sd)


def test_bfloat16_names_the_key_and_the_cast():
    sd = torch_module("gru").to(torch.bfloat16).state_dict()
    with pytest.raises(TypeError, match=r"cannot turn weight_ih_l0 into a numpy array.*module\.float\(\)"):
        from_torch(jaxrnn.gru, sd)


def test_to_torch_rejects_params_of_another_cell():
    params = random_params(jaxrnn.lstm)
    with pytest.raises(TypeError, match="needs GRUParams; got LSTMParams"):
        to_torch(jaxrnn.gru, params)


def test_a_gated_cell_of_your_own_converts_to_torch_and_back():
    """The gated tier's weights are torch's layout transposed, for any gate count (here the examples' CIFG LSTM)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    import custom_cells

    cell = custom_cells.cifg_lstm
    params = cell.init(jax.random.key(0), 3, 4, num_heads=2)
    sd = to_torch(cell, params, layer=1, reverse=True)
    assert sd["weight_ih_l1_reverse"].shape == (12, 3) and sd["weight_hh_l1_reverse"].shape == (12, 4)
    back = from_torch(cell, sd, layer=1, reverse=True)  # headed weights come back as their dense matrix
    for got, want in zip(back, params._replace(w_hh=jaxrnn.block_diagonal(params.w_hh))):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="has 3 gate.*weight_hh_l0 must be \\(3·H, H\\).*4·H rows"):
        from_torch(cell, to_torch(jaxrnn.lstm, jaxrnn.lstm.init(jax.random.key(0), 3, 4)))
