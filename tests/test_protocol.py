"""The cell protocol in use: cells written on public names only, check_cell, the registry, values through jit.

The example cells (examples/custom_cells.py) import nothing but ``jaxrnn``'s
public names; here they go through every ``unroll`` option in both grad
modes (by ``check_cell``), the registry and the command line's cell choices.
"""

import dataclasses
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import custom_cells  # noqa: E402

KEY = jax.random.key(0)


def normal(seed, shape, dtype=jnp.float64):
    return jax.random.normal(jax.random.key(seed), shape, dtype)


# --------------------------------------------------------------------------
# check_cell: manual against autodiff and finite differences, every option.


# The two combined entries hold every option (lengths, reverse, resets, checkpoint, batch-major) between them;
# the single-option entries of testing.OPTIONS only locate a failure, which these cells do not have.
COMBINED = ("lengths+reverse+resets", "checkpoint+lengths+batch_major")


# The layer-norm LSTM's three layer norms over 5 units magnify bfloat16's rounding: its outputs read 5e-2 and its
# gradients up to 0.76 off float32's, in either grad mode, whether or not its gates share the projection's
# buffer. Its bfloat16 run is held to dtypes and finite values (low_rtol 1); float64 checks its gradient.
@pytest.mark.slow
@pytest.mark.parametrize(
    "cell, init_options, names, low_rtol",
    [(custom_cells.cifg_lstm, {"num_heads": 5}, COMBINED, 5e-2),
     (custom_cells.peephole_lstm, {}, COMBINED, 5e-2), (custom_cells.layer_norm_lstm, {}, COMBINED, 1.0),
     # Also against torch in both grad modes (below) and in the property tests: one combination here.
     (jaxrnn.projected_lstm, {"proj_size": 3}, COMBINED[:1], 5e-2)],
    ids=["cifg_lstm-5heads", "peephole_lstm", "layer_norm_lstm", "projected_lstm"],
)
def test_cells_pass_check_cell_on_every_option(cell, init_options, names, low_rtol):
    combined = {name: testing.OPTIONS[name] for name in names}
    report = testing.check_cell(cell, hidden_size=5, init_options=init_options, options=combined, low_rtol=low_rtol)
    assert list(report) == [entry for name in combined for entry in (name, f"{name} (bfloat16)")]
    assert max(report[name] for name in combined) < 1e-6, report


def test_a_gated_cell_from_the_docs_passes_check_cell_with_heads_in_bfloat16_too():
    """The examples' CIFG LSTM (the docs' gated cell): manual BPTT against autodiff and finite differences in
    float64, and bfloat16 against float32 in both grad modes, with two heads; every option in the slow tier."""
    report = testing.check_cell(custom_cells.cifg_lstm, init_options={"num_heads": 2},
                                options={"resets": testing.OPTIONS["resets"]})
    assert list(report) == ["resets", "resets (bfloat16)"]
    assert report["resets"] < 1e-6 and report["resets (bfloat16)"] < 5e-2, report


@pytest.mark.slow
def test_check_cell_catches_a_wrong_reverse_step():
    """A peephole cotangent left out of the reverse step: a plausible slip that check_cell must name."""
    cell = custom_cells.peephole_lstm
    right = cell.bptt.step_vjp

    def forgets_the_output_peephole(params, prepared, d_carry, h, h_prev, res):
        return right(params._replace(w_co=jnp.zeros_like(params.w_co)), prepared, d_carry, h, h_prev, res)

    broken = dataclasses.replace(cell, name="broken_peephole", bptt=cell.bptt._replace(step_vjp=forgets_the_output_peephole))
    with pytest.raises(AssertionError, match=r"option 'plain': the manual gradient of params\.w_ih disagrees with autodiff"):
        testing.check_cell(broken, options={"plain": {}})


@pytest.mark.slow
def test_check_cell_compares_with_finite_differences_too():
    """A cell whose tanh has a wrong derivative, used by both its forward (through a custom JVP, which
    autodiff trusts) and its hand-written reverse step: manual equals autodiff, and only finite
    differences see the error."""

    @jax.custom_jvp
    def steep_tanh(x):
        return jnp.tanh(x)

    steep_tanh.defjvp(lambda primals, tangents: (jnp.tanh(primals[0]), 1.1 * (1 - jnp.tanh(primals[0]) ** 2) * tangents[0]))

    def forward(gx, gh, h):
        h = steep_tanh(gx + gh)
        return h, h

    def backward(h, dh):
        return 1.1 * dh * (1 - h**2), None, None

    cell = jaxrnn.GatedCell("steep_rnn", 1, forward, backward)
    with pytest.raises(AssertionError, match=r"option 'reverse': the manual gradient of params\.w_ih disagrees with "
                                             r"finite differences"):
        testing.check_cell(cell, options={"reverse": {"reverse": True}})


@pytest.mark.slow
def test_check_cell_checks_both_paths_of_a_parallel_cell():
    report = testing.check_cell(jaxrnn.mingru, options={name: testing.OPTIONS[name] for name in ("plain", "checkpoint")})
    float64 = ["plain", "plain (parallel)", "checkpoint"]
    assert list(report) == [entry for name in float64 for entry in (name, f"{name} (bfloat16)")]
    assert max(report[name] for name in float64) < 1e-6, report


def test_check_cell_refuses_a_cell_without_bptt():
    with pytest.raises(ValueError, match="has no hand-written backward pass"):
        testing.check_cell(dataclasses.replace(jaxrnn.lstm, name="plain_lstm", backward=None))


# --------------------------------------------------------------------------
# The projected LSTM against torch.nn.LSTM(proj_size=P).


@pytest.mark.slow
def test_projected_lstm_matches_torch_stack():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    X, H, P, T, B = 3, 5, 2, 6, 4
    module = torch.nn.LSTM(X, H, num_layers=2, bidirectional=True, proj_size=P).double()
    net = jaxrnn.stack(jaxrnn.projected_lstm, 2, bidirectional=True)
    params = jaxrnn.interop.stack_from_torch(net, module.state_dict())

    xs = torch.randn(T, B, X, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, B, P, dtype=torch.float64)
    c0 = torch.randn(4, B, H, dtype=torch.float64)
    r_out = torch.randn(T, B, 2 * P, dtype=torch.float64)
    r_c = torch.randn(4, B, H, dtype=torch.float64)
    out, (h_n, c_n) = module(xs, (h0, c0))
    ((out * r_out).sum() + (c_n * r_c).sum() + h_n.sum()).backward()
    torch_grads = {name: p.grad.numpy() for name, p in module.named_parameters()}

    carry = net.unstack_carry((h0.numpy(), c0.numpy()))

    def loss(params, x, grad):
        final, hs = net.apply(params, x, carry, grad=grad)
        h, c = net.stack_carry(final)
        return jnp.sum(hs * r_out.numpy()) + jnp.sum(c * r_c.numpy()) + jnp.sum(h), (hs, h, c)

    for grad in jaxrnn.GRAD_MODES:
        (_, (hs, h, c)), (d_params, d_xs) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
            params, jnp.asarray(xs.detach().numpy()), grad)
        np.testing.assert_allclose(hs, out.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(h, h_n.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(c, c_n.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(d_xs, xs.grad.numpy(), rtol=1e-9, atol=1e-11)
        ours = jaxrnn.interop.stack_to_torch(net, d_params)
        assert set(ours) == set(torch_grads)
        for name, value in torch_grads.items():
            np.testing.assert_allclose(ours[name], value, rtol=1e-9, atol=1e-11, err_msg=f"{grad} {name}")


def test_projected_lstm_round_trips_and_refuses_the_wrong_cell():
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(3, 4, proj_size=2).double()
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    params = jaxrnn.interop.from_torch(jaxrnn.projected_lstm, state)
    back = jaxrnn.interop.to_torch(jaxrnn.projected_lstm, params)
    assert set(back) == set(state)
    for key in state:
        np.testing.assert_array_equal(back[key], state[key])
    plain = {k: v.numpy() for k, v in torch.nn.LSTM(3, 4).double().state_dict().items()}
    with pytest.raises(ValueError, match="needs weight_hr_l0.*For proj_size=0 use jaxrnn.lstm"):
        jaxrnn.interop.from_torch(jaxrnn.projected_lstm, plain)


@pytest.mark.slow
def test_projected_lstm_sizes():
    params = jaxrnn.projected_lstm.init(KEY, 3, 6, proj_size=2)
    assert params.w_hh.shape == (2, 24) and params.w_hr.shape == (6, 2)
    carry = jaxrnn.projected_lstm.initial_carry(4, 6, proj_size=2)
    assert carry.h.shape == (4, 2) and carry.c.shape == (4, 6)
    final, hs = jaxrnn.unroll(jaxrnn.projected_lstm, params, jnp.ones((5, 4, 3)))
    assert hs.shape == (5, 4, 2) and final.c.shape == (4, 6)
    net = jaxrnn.stack(jaxrnn.projected_lstm, 2, bidirectional=True)
    assert net.init(KEY, 3, 6, proj_size=2)[1].forward.w_ih.shape == (4, 24)  # D·P features
    with pytest.raises(ValueError, match="proj_size must be smaller than hidden_size"):
        jaxrnn.projected_lstm.init(KEY, 3, 4, proj_size=4)


# --------------------------------------------------------------------------
# Cells and stacks are values that pass through jit and sit in Equinox modules.


@pytest.mark.slow
def test_cell_and_stack_pass_through_jit_as_arguments():
    params = jaxrnn.lstm.init(KEY, 3, 4)
    xs = jnp.ones((5, 2, 3))
    _, hs = jax.jit(jaxrnn.unroll)(jaxrnn.lstm, params, xs)
    np.testing.assert_allclose(hs, jaxrnn.unroll(jaxrnn.lstm, params, xs)[1], rtol=1e-6)
    net = jaxrnn.stack(jaxrnn.gru, 2)
    stack_params = net.init(KEY, 3, 4)
    _, out = jax.jit(lambda net, p, x: net.apply(p, x))(net, stack_params, xs)
    assert out.shape == (5, 2, 4)
    assert jax.tree.leaves(jaxrnn.lstm) == [] and jax.tree.leaves(net) == []


@pytest.mark.slow
def test_equinox_module_holds_a_cell_under_plain_jit():
    eqx = pytest.importorskip("equinox")

    class Model(eqx.Module):
        cell: jaxrnn.Cell
        params: jaxrnn.LSTMParams

        def __call__(self, xs):
            return jaxrnn.unroll(self.cell, self.params, xs)[1]

    model = Model(jaxrnn.lstm, jaxrnn.lstm.init(KEY, 3, 4, dtype=jnp.float64))
    xs = normal(1, (5, 2, 3))
    grads = jax.jit(jax.grad(lambda m, x: jnp.sum(m(x) ** 2)))(model, xs)
    assert grads.cell is jaxrnn.lstm
    expected = jax.grad(lambda p: jnp.sum(jaxrnn.unroll(jaxrnn.lstm, p, xs)[1] ** 2))(model.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), grads.params, expected)


# --------------------------------------------------------------------------
# Any carry dtype autodiff takes works in the manual path too.


@pytest.mark.slow
@pytest.mark.parametrize("name", ["simple_rnn", "lstm", "gru", "projected_lstm", "mingru"])
def test_float32_params_with_a_float64_carry(name):
    cell = jaxrnn.get_cell(name)
    params = cell.init(KEY, 3, 4, dtype=jnp.float32)
    xs = normal(1, (6, 2, 3), jnp.float32)
    carry = jax.tree.map(lambda z: z + 0.3, cell.initial_carry(2, 4, dtype=jnp.float64))

    def loss(params, xs, carry, grad):
        final, hs = jaxrnn.unroll(cell, params, xs, carry, grad=grad, scan="sequential")
        return jnp.sum(hs**2) + sum(jnp.sum(c**2) for c in jax.tree.leaves(final))

    manual = jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry, "manual")
    autodiff = jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry, "autodiff")
    for got, want in zip(jax.tree.leaves(manual), jax.tree.leaves(autodiff)):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    assert all(c.dtype == jnp.float64 for c in jax.tree.leaves(manual[2]))


@pytest.mark.slow
def test_built_in_cells_init_in_16_bits(dtype=jnp.bfloat16):
    """The orthogonal recurrent blocks are drawn in float32 (no 16-bit QR), then cast."""
    drawn = {}
    for cell in (jaxrnn.simple_rnn, jaxrnn.lstm, jaxrnn.gru, jaxrnn.projected_lstm, jaxrnn.mingru, jaxrnn.minlstm):
        drawn[cell.name] = jax.jit(cell.init, static_argnums=(1, 2), static_argnames="dtype")(KEY, 3, 4, dtype=dtype)
        assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(drawn[cell.name])), cell
    w_hh = drawn["lstm"].w_hh.astype(jnp.float32)[:, :4]  # the i block: orthogonal
    np.testing.assert_allclose(w_hh.T @ w_hh, np.eye(4), atol=2e-2)


# --------------------------------------------------------------------------
# Errors a newcomer meets.


def test_batch_major_inputs_without_time_major_false_are_named():
    params = jaxrnn.lstm.init(KEY, 3, 4)
    xs = jnp.ones((2, 7, 3))  # (batch, T, input), passed as if time-major
    carry = jaxrnn.lstm.initial_carry(2, 4)
    with pytest.raises(ValueError, match=r"carry has 2 rows, the size of xs' first axis.*pass time_major=False"):
        jaxrnn.unroll(jaxrnn.lstm, params, xs, carry)
    with pytest.raises(ValueError, match=r"lengths array has 2 rows.*pass time_major=False"):
        jaxrnn.unroll(jaxrnn.lstm, params, xs, lengths=jnp.array([7, 5]))
    jaxrnn.unroll(jaxrnn.lstm, params, xs, carry, time_major=False, lengths=jnp.array([7, 5]))  # the fix works


def test_init_with_an_int_key_explains_prng_keys():
    with pytest.raises(TypeError, match=r"key must be a PRNG key; got 0 of type int\. Make one with jax\.random\.key"):
        jaxrnn.lstm.init(0, 3, 4)


def test_from_torch_names_the_keys_it_ignores():
    torch = pytest.importorskip("torch")
    state = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True).state_dict()
    with pytest.warns(UserWarning, match=r"ignored 12 key\(s\).*weight_ih_l0_reverse.*stack_from_torch"):
        jaxrnn.interop.from_torch(jaxrnn.gru, state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a layer named on purpose, and the whole-module call, stay quiet
        jaxrnn.interop.from_torch(jaxrnn.gru, state, layer=1)
        jaxrnn.interop.stack_from_torch(jaxrnn.stack(jaxrnn.gru, 2, bidirectional=True), state)


# --------------------------------------------------------------------------
# One registry: a cell registered once appears wherever cells are chosen.


def test_registered_cells_appear_in_every_choice():
    from jaxrnn import _cli
    from jaxrnn.training import TrainConfig
    from jaxrnn.training._compare import cell_names

    for name in ("peephole_lstm", "layer_norm_lstm", "projected_lstm", "mingru"):
        assert jaxrnn.cells()[name] is jaxrnn.get_cell(name)
    parser = _cli.build_parser()
    assert parser.parse_args(["check", "--cells", "peephole_lstm,lstm"]).cells == ["peephole_lstm", "lstm"]
    assert parser.parse_args(["memory-task", "--cells", "layer_norm_lstm"]).cells == ["layer_norm_lstm"]
    assert TrainConfig(cell="peephole_lstm").cell == "peephole_lstm"  # validated on construction
    assert cell_names(["layer_norm_lstm"], "test") == ["layer_norm_lstm"]
    assert parser.parse_args(["state-tracking", "--cells", "layer_norm_lstm"]).cells == ["layer_norm_lstm"]
    from jaxrnn.bench._main import build_parser as bench_parser

    assert bench_parser().parse_args(["--cells", "peephole_lstm"]).cells == ["peephole_lstm"]


def test_cells_taking_an_init_option_are_those_whose_init_accepts_it():
    # Every gated cell takes heads, the examples' CIFG LSTM too: the engine owns the weights.
    assert list(jaxrnn.cells(taking="num_heads")) == ["simple_rnn", "lstm", "gru", "slstm", "cifg_lstm"]
    assert list(jaxrnn.cells(manual=True, taking="proj_size")) == ["projected_lstm"]
    assert jaxrnn.cells(taking="no_such_option") == {}


def test_cells_load_from_module_and_name_on_the_command_line(capsys):
    from jaxrnn import _cli

    parser = _cli.build_parser()
    spec = "custom_cells:layer_norm_lstm"  # examples/ is on sys.path here, as the checkout is for `python -m`
    assert parser.parse_args(["check", "--cells", f"{spec},lstm"]).cells == ["layer_norm_lstm", "lstm"]
    for bad, message in [("custom_cells:nothing", "AttributeError"), ("no_such_module:cell", "ModuleNotFoundError"),
                         ("custom_cells:EPS", "not a jaxrnn.Cell")]:
        with pytest.raises(SystemExit):
            parser.parse_args(["check", "--cells", bad])
        err = capsys.readouterr().err
        assert f"cannot load the cell '{bad}'" in err and message in err, err


def test_cells_with_a_projected_output_size_everything_that_reads_it():
    from jaxrnn._agreement import random_problem
    from jaxrnn.training._memory_task import init_model
    from jaxrnn.training._model import CharLM

    cell = jaxrnn.projected_lstm  # output P = H // 2 = 3 features, state H = 6
    _, _, carry, weights = random_problem(cell, 2, 3, 6, 4, jnp.float32)
    assert weights.shape == (4, 2, 3) and carry.h.shape == (2, 3) and carry.c.shape == (2, 6)
    assert CharLM(vocab_size=5, cell="projected_lstm", hidden=6, embed=4).init(KEY).readout_w.shape == (3, 5)
    assert init_model(cell, KEY, 6).w_out.shape == (3,)


def test_register_refuses_a_built_in_name_and_replaces_ones_own(monkeypatch):
    from jaxrnn import _registry

    monkeypatch.setattr(_registry, "_CELLS", dict(_registry._CELLS))  # this test's changes stay here
    jaxrnn.register(jaxrnn.lstm)  # the same cell again is fine
    with pytest.raises(ValueError, match="'lstm' is the name of the built-in jaxrnn.lstm"):
        jaxrnn.register(dataclasses.replace(jaxrnn.lstm))
    mine = dataclasses.replace(jaxrnn.lstm, name="my_lstm")  # built from a built-in, as the message suggests
    jaxrnn.register(mine)
    again = dataclasses.replace(mine)  # as a re-run notebook cell makes it
    with pytest.warns(UserWarning, match="'my_lstm' .* is replaced"):
        jaxrnn.register(again)
    assert jaxrnn.get_cell("my_lstm") is again
    with pytest.raises(ValueError, match=r"unknown cell 'tcn'; the registered cells, jaxrnn.cells\(\), are"):
        jaxrnn.get_cell("tcn")


@pytest.mark.slow
@pytest.mark.parametrize("num_heads", [1, 2])
def test_a_gated_cell_with_d_gh_by_block_and_a_rebuilt_h(num_heads):
    """d_gh given by gate block with a stashed first block and a d_gx run after it, and a residual holding the h
    that forward received (rebuilt from the outputs), against autodiff and finite differences."""

    def forward(gx, gh, h):
        x_f, x_g = jnp.split(gx, 2, axis=-1)
        h_f, h_g = jnp.split(gh, 2, axis=-1)
        f, g = jax.nn.sigmoid(x_f + 0.5 * h_f), jnp.tanh(x_g + h_g)
        return f * h + (1 - f) * g, (f, g, h)

    def backward(res, dh):
        f, g, h = res
        d_f, d_g = dh * (h - g) * f * (1 - f), dh * (1 - f) * (1 - g**2)
        return jnp.concatenate([d_f, d_g], axis=-1), (0.5 * d_f, None), dh * f

    cell = jaxrnn.GatedCell("half_recurrent_gate", 2, forward, backward)
    report = testing.check_cell(cell, hidden_size=6, init_options={"num_heads": num_heads},
                                options={name: testing.OPTIONS[name] for name in COMBINED})
    assert max(report[name] for name in COMBINED) < 1e-6, report
