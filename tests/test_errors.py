"""Bad inputs raise at trace time, with the right class and a message naming
what was expected and what was received.

Each case runs three ways: eagerly, under ``jax.jit``, and under
``jax.eval_shape`` on abstract ``ShapeDtypeStruct`` arguments, where nothing
can be computed, so the error is shown to come from the checks rather than
from a failing computation. Nothing is ever broadcast silently.
"""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

CELLS = [jaxrnn.simple_rnn, jaxrnn.lstm, jaxrnn.gru]
by_cell = pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
NUM_GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}
T, B, X, H = 5, 3, 4, 5


# --------------------------------------------------------------------------
# Helpers. Arrays come from NumPy so that no test here compiles an init.


def make_params(cell, input_size=X, hidden=H, seed=0):
    rng = np.random.default_rng(seed)
    width = NUM_GATES[cell.name] * hidden
    shapes = [(input_size, width), (hidden, width), (width,), (width,)]
    return cell.params_type(*(jnp.asarray(rng.standard_normal(s)) for s in shapes))


def make_carry(cell, batch=B, hidden=H):
    return cell.initial_carry(batch, hidden, dtype=jnp.float64)


def make_xs(shape=(T, B, X), dtype=jnp.float64):
    return jnp.ones(shape, dtype)


def esc(*parts):
    """A regex matching the literal ``parts`` in order, anything between."""
    return ".*".join(re.escape(p) for p in parts)


def abstract(tree):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.asarray(a).dtype), tree)


def assert_raises_at_trace(fn, args, exc, expected, received):
    """``fn(*args)`` raises ``exc`` eagerly, under jit and under eval_shape.

    ``expected`` and ``received`` are regexes: the message must name both.
    """
    runs = {
        "eager": lambda: fn(*args),
        "jit": lambda: jax.jit(fn)(*args),
        "eval_shape": lambda: jax.eval_shape(fn, *abstract(args)),
    }
    for how, run in runs.items():
        with pytest.raises(exc, match=expected) as info:
            run()
        assert info.type is exc, f"{how}: raised {info.type.__name__}, wanted exactly {exc.__name__}"
        info.match(received)


def unroll_fn(cell, mode="manual"):
    return lambda params, xs, carry: jaxrnn.unroll(cell, params, xs, carry, grad=mode)


def step_fn(cell):
    return lambda params, carry, x: cell.step(params, carry, x)


by_mode = pytest.mark.parametrize("mode", ["manual", "autodiff"])


# --------------------------------------------------------------------------
# The good case, run the same three ways, so the helpers are known to work.


@by_cell
def test_good_inputs_pass_all_three_ways(cell):
    params, xs, carry = make_params(cell), make_xs(), make_carry(cell)
    fn = unroll_fn(cell)
    final, hs = fn(params, xs, carry)
    assert hs.shape == (T, B, H)
    assert jax.jit(fn)(params, xs, carry)[1].shape == (T, B, H)
    assert jax.eval_shape(fn, *abstract((params, xs, carry)))[1].shape == (T, B, H)


def test_helper_rejects_wrong_class_and_message():
    """The helper really checks: a ValueError does not pass for a TypeError, nor a wrong message."""
    args = (make_params(jaxrnn.gru), make_xs((T, X)), make_carry(jaxrnn.gru))
    fn = unroll_fn(jaxrnn.gru)
    assert_raises_at_trace(fn, args, ValueError, "rank 3", "got shape")
    with pytest.raises(ValueError):
        assert_raises_at_trace(fn, args, TypeError, "rank 3", "got shape")
    with pytest.raises(AssertionError):
        assert_raises_at_trace(fn, args, ValueError, "rank 3", "something it does not say")
    with pytest.raises(AssertionError):
        assert_raises_at_trace(fn, args, ValueError, "something it does not say", "got shape")


# --------------------------------------------------------------------------
# Inputs.


@by_cell
@by_mode
@pytest.mark.parametrize("shape", [(T, X), (T, 1, B, X), (X,)], ids=["rank2", "rank4", "rank1"])
def test_unroll_xs_not_rank_3(cell, mode, shape):
    args = (make_params(cell), make_xs(shape), make_carry(cell))
    assert_raises_at_trace(
        unroll_fn(cell, mode), args, ValueError, esc("xs must have rank 3", "(time, batch, input_size)"),
        esc(f"got shape {shape}"),
    )


@by_cell
@pytest.mark.parametrize("shape", [(B, 1, X), (X,)], ids=["rank3", "rank1"])
def test_step_x_not_rank_2(cell, shape):
    args = (make_params(cell), make_carry(cell), make_xs(shape))
    assert_raises_at_trace(
        step_fn(cell), args, ValueError, esc("x must have rank 2", "(batch, input_size)"), esc(f"got shape {shape}")
    )


@by_cell
@by_mode
def test_unroll_input_size_mismatch(cell, mode):
    args = (make_params(cell), make_xs((T, B, X + 2)), make_carry(cell))
    assert_raises_at_trace(
        unroll_fn(cell, mode), args, ValueError, esc(f"input_size {X}"), esc(f"xs has {X + 2} features")
    )


@by_cell
def test_step_input_size_mismatch(cell):
    args = (make_params(cell), make_carry(cell), make_xs((B, 1)))
    assert_raises_at_trace(step_fn(cell), args, ValueError, esc(f"input_size {X}"), esc("x has 1 feature on its last axis"))


@by_cell
@by_mode
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_, jnp.complex64], ids=["int32", "bool", "complex64"])
def test_unroll_non_float_xs(cell, mode, dtype):
    args = (make_params(cell), make_xs(dtype=dtype), make_carry(cell))
    assert_raises_at_trace(
        unroll_fn(cell, mode), args, TypeError, esc("xs must have a floating dtype"),
        esc(f"got {np.dtype(dtype).name}"),
    )


@by_cell
def test_step_integer_x(cell):
    args = (make_params(cell), make_carry(cell), make_xs((B, X), jnp.int32))
    assert_raises_at_trace(step_fn(cell), args, TypeError, esc("x must have a floating dtype"), esc("got int32"))


# --------------------------------------------------------------------------
# Carries.


@by_cell
@by_mode
@pytest.mark.parametrize(
    "shape", [(B + 1, H), (B, H + 1), (1, H), (H,), (1, B, H)], ids=["batch", "hidden", "batch1", "rank1", "rank3"]
)
def test_unroll_carry_shape_mismatch(cell, mode, shape):
    """Including (1, H) and (H,), which would broadcast against batch 3: they must raise."""
    carry = jax.tree.map(lambda a: jnp.zeros(shape, a.dtype), make_carry(cell))
    args = (make_params(cell), make_xs(), carry)
    assert_raises_at_trace(
        unroll_fn(cell, mode), args, ValueError, esc("carry.h must be (batch, hidden) = (3, 5)"), esc(f"got {shape}")
    )


@by_cell
@pytest.mark.parametrize("shape", [(B + 1, H), (B, H - 1), (1, H)], ids=["batch", "hidden", "batch1"])
def test_step_carry_shape_mismatch(cell, shape):
    carry = jax.tree.map(lambda a: jnp.zeros(shape, a.dtype), make_carry(cell))
    args = (make_params(cell), carry, make_xs((B, X)))
    assert_raises_at_trace(
        step_fn(cell), args, ValueError, esc("carry.h must be (batch, hidden) = (3, 5)"), esc(f"got {shape}")
    )


@by_cell
def test_step_x_batch_1_does_not_broadcast_against_carry(cell):
    args = (make_params(cell), make_carry(cell), make_xs((1, X)))
    assert_raises_at_trace(
        step_fn(cell), args, ValueError, esc("carry.h must be (batch, hidden) = (1, 5)"), esc(f"got ({B}, {H})")
    )


@by_mode
def test_lstm_cell_state_shape_mismatch(mode):
    h, c = make_carry(jaxrnn.lstm)
    args = (make_params(jaxrnn.lstm), make_xs(), (h, jnp.zeros((1, H))))
    assert_raises_at_trace(
        unroll_fn(jaxrnn.lstm, mode), args, ValueError, esc("carry.c must be (batch, hidden) = (3, 5)"),
        esc("got (1, 5)"),
    )


@by_cell
def test_integer_carry(cell):
    carry = jax.tree.map(lambda a: a.astype(jnp.int32), make_carry(cell))
    args = (make_params(cell), make_xs(), carry)
    assert_raises_at_trace(
        unroll_fn(cell), args, TypeError, esc("carry.h must have a floating dtype"), esc("got int32")
    )


@by_mode
def test_lstm_carry_single_array(mode):
    args = (make_params(jaxrnn.lstm), make_xs(), jnp.zeros((B, H)))
    assert_raises_at_trace(
        unroll_fn(jaxrnn.lstm, mode), args, TypeError, esc("carries the tuple (h, c)", "(batch, hidden)"),
        esc(f"got a single array of shape ({B}, {H})"),
    )
    args = (make_params(jaxrnn.lstm), make_carry(jaxrnn.lstm).h, make_xs((B, X)))
    assert_raises_at_trace(
        step_fn(jaxrnn.lstm), args, TypeError, esc("carries the tuple (h, c)"),
        esc(f"got a single array of shape ({B}, {H})"),
    )


def test_lstm_carry_stacked_array():
    """A (2, B, H) array is not a carry either (it is not unpacked silently)."""
    args = (make_params(jaxrnn.lstm), make_xs(), jnp.zeros((2, B, H)))
    assert_raises_at_trace(
        unroll_fn(jaxrnn.lstm), args, TypeError, esc("carries the tuple (h, c)"),
        esc(f"got a single array of shape (2, {B}, {H})"),
    )


def test_lstm_carry_wrong_length_tuple():
    h, c = make_carry(jaxrnn.lstm)
    for carry, n in [((h, c, h), 3), ((h,), 1)]:
        args = (make_params(jaxrnn.lstm), make_xs(), carry)
        assert_raises_at_trace(
            unroll_fn(jaxrnn.lstm), args, TypeError, esc("carries the tuple (h, c)"), esc(f"got a tuple of {n}")
        )


@pytest.mark.parametrize("cell", [jaxrnn.simple_rnn, jaxrnn.gru], ids=lambda c: c.name)
@by_mode
def test_single_array_cell_given_tuple_carry(cell, mode):
    zeros = make_carry(cell)
    args = (make_params(cell), make_xs(), (zeros, zeros))
    assert_raises_at_trace(
        unroll_fn(cell, mode), args, TypeError, esc("carries one array h of shape (batch, hidden)"),
        esc("got a tuple of 2"),
    )
    # An LSTMCarry is a tuple too.
    args = (make_params(cell), jaxrnn.LSTMCarry(zeros, zeros), make_xs((B, X)))
    assert_raises_at_trace(
        step_fn(cell), args, TypeError, esc("carries one array h"), esc("got a LSTMCarry of 2")
    )


# --------------------------------------------------------------------------
# Params.


OTHER_CELL = {"simple_rnn": jaxrnn.lstm, "lstm": jaxrnn.gru, "gru": jaxrnn.lstm}


@by_cell
@by_mode
def test_params_of_another_cell_type(cell, mode):
    other = OTHER_CELL[cell.name]
    wanted, got = cell.params_type.__name__, other.params_type.__name__
    args = (make_params(other), make_xs(), make_carry(cell))
    mismatch = jaxrnn.CellMismatchError  # a TypeError and a ValueError
    assert_raises_at_trace(unroll_fn(cell, mode), args, mismatch, esc(f"needs {wanted}"), esc(f"got {got}"))
    args = (make_params(other), make_carry(cell), make_xs((B, X)))
    assert_raises_at_trace(step_fn(cell), args, mismatch, esc(f"needs {wanted}"), esc(f"got {got}"))


def test_lstm_params_to_gru_example():
    args = (make_params(jaxrnn.lstm), make_xs(), make_carry(jaxrnn.gru))
    assert_raises_at_trace(
        unroll_fn(jaxrnn.gru), args, jaxrnn.CellMismatchError, esc("jaxrnn.gru needs GRUParams"), esc("got LSTMParams")
    )


@by_cell
def test_params_as_plain_tuple(cell):
    args = (tuple(make_params(cell)), make_xs(), make_carry(cell))
    wanted = cell.params_type.__name__
    assert_raises_at_trace(unroll_fn(cell), args, TypeError, esc(f"needs {wanted}"), esc("got tuple"))


@by_cell
@pytest.mark.parametrize("change", ["missing", "extra"])
def test_dict_params_with_wrong_keys(cell, change):
    params = dict(make_params(cell)._asdict())
    if change == "missing":
        del params["b_ih"]
        received = "got ['b_hh', 'w_hh', 'w_ih']"
    else:
        params["bias"] = params["b_ih"]
        received = "got ['b_hh', 'b_ih', 'bias', 'w_hh', 'w_ih']"
    expected = esc("need exactly the keys ['w_ih', 'w_hh', 'b_ih', 'b_hh']")
    assert_raises_at_trace(unroll_fn(cell), (params, make_xs(), make_carry(cell)), ValueError, expected, esc(received))
    assert_raises_at_trace(step_fn(cell), (params, make_carry(cell), make_xs((B, X))), ValueError, expected, esc(received))


@pytest.mark.parametrize(
    "cell,other",
    [(c, o) for c in CELLS for o in CELLS if o is not c],
    ids=[f"{o.name}-to-{c.name}" for c in CELLS for o in CELLS if o is not c],
)
def test_dict_params_with_another_cells_shapes(cell, other):
    G, G_other = NUM_GATES[cell.name], NUM_GATES[other.name]
    params = dict(make_params(other)._asdict())
    args = (params, make_xs(), make_carry(cell))
    assert_raises_at_trace(
        unroll_fn(cell), args, ValueError, esc(f"params.w_hh must be (hidden, {G}·hidden)"),
        esc(f"got shape ({H}, {G_other * H})"),
    )


def test_dict_params_with_lstm_shapes_to_gru_example():
    args = (dict(make_params(jaxrnn.lstm)._asdict()), make_carry(jaxrnn.gru), make_xs((B, X)))
    assert_raises_at_trace(
        step_fn(jaxrnn.gru), args, ValueError, esc("params.w_hh must be (hidden, 3·hidden)"), esc("got shape (5, 20)")
    )


@by_cell
@pytest.mark.parametrize("name", ["b_ih", "b_hh"])
@pytest.mark.parametrize("shape_of", ["longer", "row", "scalar"])
def test_bias_of_wrong_shape(cell, name, shape_of):
    """Including (1, G·H) and (), which would broadcast: they must raise."""
    width = NUM_GATES[cell.name] * H
    shape = {"longer": (width + 1,), "row": (1, width), "scalar": ()}[shape_of]
    params = make_params(cell)._replace(**{name: jnp.zeros(shape)})
    expected = esc(f"params.{name} must have shape ({width},)")
    received = esc(f"got {shape}")
    assert_raises_at_trace(unroll_fn(cell), (params, make_xs(), make_carry(cell)), ValueError, expected, received)
    assert_raises_at_trace(step_fn(cell), (params, make_carry(cell), make_xs((B, X))), ValueError, expected, received)


@by_cell
def test_w_ih_of_wrong_width(cell):
    width = NUM_GATES[cell.name] * H
    params = make_params(cell)._replace(w_ih=jnp.zeros((X, width - 1)))
    assert_raises_at_trace(
        unroll_fn(cell), (params, make_xs(), make_carry(cell)), ValueError, esc(f"params.w_ih must be (input_size, {width})"),
        esc(f"got ({X}, {width - 1})"),
    )


@by_cell
def test_integer_params(cell):
    params = make_params(cell)._replace(w_hh=jnp.zeros((H, NUM_GATES[cell.name] * H), jnp.int32))
    assert_raises_at_trace(
        unroll_fn(cell), (params, make_xs(), make_carry(cell)), TypeError,
        esc("params.w_hh must have a floating dtype"), esc("got int32"),
    )


@by_cell
def test_ensemble_params_without_vmap(cell):
    """Stacked params need jax.vmap; unroll does not broadcast over them."""
    params = jax.tree.map(lambda a: jnp.stack([a, a]), make_params(cell))
    G = NUM_GATES[cell.name]
    assert_raises_at_trace(
        unroll_fn(cell), (params, make_xs(), make_carry(cell)), ValueError,
        esc(f"stacked params (an ensemble) with a leading axis; a cell takes one set, params.w_hh of shape (hidden, "
            f"{G}·hidden)") + ".*" + esc("Map over the stack with jax.vmap"), esc(f"params.w_hh (2, {H}, {G * H})"),
    )


# --------------------------------------------------------------------------
# unroll's own arguments.


@by_cell
@pytest.mark.parametrize("mode", ["fast", "Manual", "", None])
def test_unknown_grad_mode(cell, mode):
    args = (make_params(cell), make_xs(), make_carry(cell))
    assert_raises_at_trace(
        unroll_fn(cell, mode), args, ValueError, esc("grad must be one of ('manual', 'autodiff')"),
        esc(f"got {mode!r}"),
    )


@pytest.mark.parametrize("not_a_cell", ["lstm", None, jaxrnn.lstm.step], ids=["str", "None", "function"])
def test_non_cell_first_argument(not_a_cell):
    fn = lambda params, xs: jaxrnn.unroll(not_a_cell, params, xs)
    assert_raises_at_trace(
        fn, (make_params(jaxrnn.lstm), make_xs()), TypeError, esc("cell must be a jaxrnn.Cell"),
        esc(f"got {type(not_a_cell).__name__}"),
    )


def test_params_passed_where_the_cell_goes():
    fn = lambda params, xs: jaxrnn.unroll(params, jaxrnn.lstm, xs)
    assert_raises_at_trace(
        fn, (make_params(jaxrnn.lstm), make_xs()), TypeError, esc("cell must be a jaxrnn.Cell"), esc("got LSTMParams")
    )


def test_manual_grad_on_cell_without_bptt():
    plain = dataclasses.replace(jaxrnn.simple_rnn, name="plain_rnn", backward=None)
    args = (make_params(jaxrnn.simple_rnn), make_xs(), make_carry(jaxrnn.simple_rnn))
    assert_raises_at_trace(
        unroll_fn(plain, "manual"), args, ValueError, esc("use grad='autodiff'"), esc("jaxrnn.plain_rnn has no")
    )
    # autodiff still works for it, and agrees with the built-in cell.
    np.testing.assert_allclose(
        unroll_fn(plain, "autodiff")(*args)[1], unroll_fn(jaxrnn.simple_rnn, "autodiff")(*args)[1], rtol=1e-12
    )


# --------------------------------------------------------------------------
# init and initial_carry. Sizes are static, so jit and eval_shape close over them
# and trace only the key.


KEY = jax.random.PRNGKey(0)


def init_fn(cell, *sizes, **kwargs):
    return lambda key: cell.init(key, *sizes, **kwargs)


@by_cell
@pytest.mark.parametrize("size", [0, -1])
@pytest.mark.parametrize("which", ["input_size", "hidden_size"])
def test_init_sizes_must_be_positive(cell, size, which):
    sizes = {"input_size": X, "hidden_size": H, which: size}
    fn = init_fn(cell, sizes["input_size"], sizes["hidden_size"])
    assert_raises_at_trace(fn, (KEY,), ValueError, esc(f"{which} must be > 0"), esc(f"got {size}"))


@by_cell
@pytest.mark.parametrize("size", [5.0, "5", None, True, np.float32(5)], ids=["float", "str", "None", "bool", "np.float32"])
@pytest.mark.parametrize("which", ["input_size", "hidden_size"])
def test_init_sizes_must_be_int(cell, size, which):
    sizes = {"input_size": X, "hidden_size": H, which: size}
    fn = init_fn(cell, sizes["input_size"], sizes["hidden_size"])
    assert_raises_at_trace(fn, (KEY,), TypeError, esc(f"{which} must be an int"), esc(f"got {'the bool ' if size is True else ''}{size!r}"))


@by_cell
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_, jnp.complex64, "not a dtype"])
def test_init_dtype_must_be_floating(cell, dtype):
    fn = init_fn(cell, X, H, dtype=dtype)
    received = repr(dtype) if isinstance(dtype, str) else np.dtype(dtype).name
    assert_raises_at_trace(fn, (KEY,), TypeError, esc("dtype must be a floating dtype"), esc(f"got {received}"))


@by_cell
def test_init_accepts_numpy_ints(cell):
    params = jax.eval_shape(init_fn(cell, np.int64(X), np.int32(H)), KEY)
    assert params.w_hh.shape == (H, NUM_GATES[cell.name] * H)


@by_cell
@pytest.mark.parametrize(
    "batch,hidden,kwargs,exc,expected,received",
    [
        (-1, H, {}, ValueError, "batch_size must be ≥ 0", "got -1"),
        (B, 0, {}, ValueError, "hidden_size must be > 0", "got 0"),
        (2.0, H, {}, TypeError, "batch_size must be an int", "got 2.0"),
        (B, "5", {}, TypeError, "hidden_size must be an int", "got '5'"),
        (B, H, {"dtype": jnp.int32}, TypeError, "dtype must be a floating dtype", "got int32"),
    ],
    ids=["negative-batch", "zero-hidden", "float-batch", "str-hidden", "int-dtype"],
)
def test_initial_carry_bad_arguments(cell, batch, hidden, kwargs, exc, expected, received):
    with pytest.raises(exc, match=esc(expected)) as info:
        cell.initial_carry(batch, hidden, **kwargs)
    info.match(esc(received))
    with pytest.raises(exc, match=esc(expected)):
        jax.eval_shape(lambda: cell.initial_carry(batch, hidden, **kwargs))


def test_torch_state_dict_as_params_points_to_interop():
    params = make_params(jaxrnn.lstm)
    state_dict = {"weight_ih_l0": params.w_ih.T, "weight_hh_l0": params.w_hh.T,
                  "bias_ih_l0": params.b_ih, "bias_hh_l0": params.b_hh}
    with pytest.raises(ValueError, match=esc("torch state dict", "jaxrnn.interop.from_torch(jaxrnn.lstm")):
        jaxrnn.unroll(jaxrnn.lstm, state_dict, make_xs())


def test_params_of_another_cell_type_is_a_type_and_a_value_error():
    args = (make_params(jaxrnn.lstm), make_xs(), make_carry(jaxrnn.gru))
    for expected in (TypeError, ValueError, jaxrnn.CellMismatchError):
        with pytest.raises(expected, match=esc("jaxrnn.gru needs GRUParams; got LSTMParams")):
            jaxrnn.unroll(jaxrnn.gru, *args)


# --------------------------------------------------------------------------
# A broken cell: the engine names the cell, the function that broke the contract, what it expected and got.
# Every case is checked by jax.eval_shape alone: the contract is read off shapes while JAX traces.


def _leaky():
    """A general cell (from the docs' leaky RNN) whose params have no w_ih, and its params."""

    from typing import NamedTuple

    class KernelParams(NamedTuple):
        kernel: jax.Array  # (X, H)
        w_hh: jax.Array  # (H, H)

    def recurrence(params, h, gx):
        h = jnp.tanh(gx + h @ params.w_hh)
        return h, h, ()

    def step_vjp(params, w_hh_t, dh, h, h_prev, res):
        dz = dh * (1 - h**2)
        return dz @ w_hh_t, dz, None

    cell = jaxrnn.Cell(
        name="kernel_rnn", params_type=KernelParams, carry_type=None, init_params=None,
        check_shapes=lambda params, where: params.kernel.shape, recurrence=recurrence,
        project=lambda params, x: x @ params.kernel,
        bptt=jaxrnn.BPTT(step_vjp, lambda params, h_prev, dz, stash: jaxrnn.cotangents(params, w_hh=h_prev.T @ dz),
                         prepare=lambda params: params.w_hh.T),
    )
    rng = np.random.default_rng(0)
    return cell, KernelParams(jnp.asarray(rng.standard_normal((X, H))), jnp.asarray(rng.standard_normal((H, H))))


def _raises(fn, args, exc, *parts):
    with pytest.raises(exc, match=esc(*parts)) as info:
        jax.eval_shape(fn, *abstract(args))
    assert info.type is exc, f"raised {info.type.__name__}, wanted exactly {exc.__name__}"


def _grad_fn(cell):
    return lambda params, xs: jax.grad(lambda p: jaxrnn.unroll(cell, p, xs)[1].sum())(params)


def test_a_none_params_field_is_named():
    params = make_params(jaxrnn.lstm)._replace(b_ih=None)
    with pytest.raises(TypeError, match=esc("params.b_ih is None", "LSTMParams", "jaxrnn.lstm.init(")):
        jaxrnn.unroll(jaxrnn.lstm, params, make_xs())


def test_a_wrong_input_width_names_only_fields_the_cell_has():
    cell, params = _leaky()
    with pytest.raises(ValueError, match=esc("xs has 3 features", "input_size 4", "kernel_rnn's check_shapes")) as e:
        jaxrnn.unroll(cell, params, make_xs((T, B, 3)))
    assert "w_ih" not in str(e.value)


def test_a_wrong_carry_width_suggests_a_carry_that_fits():
    params = jaxrnn.projected_lstm.init(jax.random.key(0), X, 5, proj_size=3)
    carry = jaxrnn.LSTMCarry(jnp.zeros((B, 2)), jnp.zeros((B, 5)))
    with pytest.raises(ValueError, match=esc("carry.h must be", "(3, 3)", "zeros of shapes h (3, 3), c (3, 5)")):
        jaxrnn.unroll(jaxrnn.projected_lstm, params, make_xs(dtype=jnp.float32), carry)


def test_a_recurrence_that_forgets_its_residual():
    cell, params = _leaky()
    broken = dataclasses.replace(cell, recurrence=lambda p, h, gx: cell.recurrence(p, h, gx)[:2])
    _raises(unroll_fn(broken), (params, make_xs(), jnp.zeros((B, H))), TypeError,
            "jaxrnn.kernel_rnn: recurrence must return a tuple (carry, h, residual)", "a tuple of 2",
            "Return () as the residual")


def test_an_output_that_is_not_the_carrys_first_field():
    cell, params = _leaky()
    broken = dataclasses.replace(cell, recurrence=lambda p, h, gx: (lambda c, o, r: (c, o[:, :-1], r))(
        *cell.recurrence(p, h, gx)))
    _raises(unroll_fn(broken), (params, make_xs(), jnp.zeros((B, H))), ValueError,
            "recurrence must return the output h of shape (3, 5) (the output is the new carry's first field)",
            "got an array of shape (3, 4)")


def test_check_shapes_with_too_few_sizes():
    base = jaxrnn.projected_lstm
    broken = dataclasses.replace(base, name="few_sizes", check_shapes=lambda p, where: (X, (2, 5, 5)))
    params = base.init(jax.random.key(0), X, 5, proj_size=2)
    with pytest.raises(TypeError, match=esc("few_sizes's check_shapes must give the carry's widths",
                                            "a tuple of 2 ints, one per field ['h', 'c']", "got a tuple of 3")):
        jaxrnn.unroll(broken, params, make_xs(dtype=jnp.float32))


def test_a_step_vjp_with_a_wrong_d_gx_width():
    cell, params = _leaky()
    step_vjp = cell.bptt.step_vjp
    broken = dataclasses.replace(cell, bptt=cell.bptt._replace(
        step_vjp=lambda *args: (lambda d, dgx, s: (d, dgx[:, :-1], s))(*step_vjp(*args))))
    _raises(_grad_fn(broken), (params, make_xs()), ValueError,
            "jaxrnn.kernel_rnn: bptt.step_vjp must return d_gx of shape (3, 5) (gx's shape, (batch, P))",
            "got an array of shape (3, 4)")


def test_param_grads_of_the_wrong_shape():
    cell, params = _leaky()
    broken = dataclasses.replace(cell, bptt=cell.bptt._replace(
        param_grads=lambda params, h_prev, dz, stash: jaxrnn.cotangents(params, w_hh=dz.T @ h_prev[:, :2])))
    _raises(_grad_fn(broken), (params, make_xs()), ValueError,
            "bptt.param_grads returned the cotangent of params.w_hh with shape (5, 2); params.w_hh is (5, 5)")


def _gated(forward, backward=None):
    cell = jaxrnn.GatedCell("broken_gated", 2, forward, backward, carry_type=jaxrnn.LSTMCarry)
    rng = np.random.default_rng(0)
    params = jaxrnn.GatedParams(*(jnp.asarray(rng.standard_normal(s)) for s in ((X, 2 * H), (H, 2 * H), (2 * H,),
                                                                                  (2 * H,))))
    return cell, params


def _gated_forward(gx, gh, carry):
    f, g = jnp.split(jax.nn.sigmoid(gx + gh), 2, axis=-1)
    c = f * carry.c + (1 - f) * g
    return jaxrnn.LSTMCarry(jnp.tanh(c), c), (f, g, carry.c, c)


def test_a_gated_forward_that_returns_no_residual():
    cell, params = _gated(lambda gx, gh, carry: _gated_forward(gx, gh, carry)[0])
    _raises(unroll_fn(cell, "autodiff"), (params, make_xs(), make_carry(jaxrnn.lstm)), TypeError,
            "jaxrnn.broken_gated: forward must return a tuple (carry, residual)", "got the carry alone, LSTMCarry of 2")


def test_a_gated_forward_with_a_carry_field_of_the_wrong_width():
    cell, params = _gated(lambda gx, gh, carry: (carry._replace(c=gx), ()))
    _raises(unroll_fn(cell, "autodiff"), (params, make_xs(), make_carry(jaxrnn.lstm)), ValueError,
            "forward must return the new carry shaped as the carry (h (3, 5), c (3, 5))",
            "its field c is an array of shape (3, 10)")


@pytest.mark.parametrize("bad, message", [
    (lambda d_gx, d_carry: (d_gx[:, :-1], None, d_carry), ("backward must return d_gx of shape (3, 10)",)),
    (lambda d_gx, d_carry: (d_gx, d_gx[:, :3], d_carry), ("d_gh (or None when it equals d_gx) of shape (3, 10)",)),
    (lambda d_gx, d_carry: (d_gx, None, d_carry.c), ("backward must return d_carry as the carry is",
                                                     "LSTMCarry (h, c)", "got an array of shape (3, 5)")),
], ids=["d_gx", "d_gh", "d_carry"])
def test_a_gated_backward_that_breaks_the_contract(bad, message):
    def backward(res, d_carry):
        f, g, c_prev, c = res
        dc = d_carry.c + d_carry.h * (1 - jnp.tanh(c) ** 2)
        d_gx = jnp.concatenate([dc * (c_prev - g) * f * (1 - f), dc * (1 - f) * g * (1 - g)], axis=-1)
        return bad(d_gx, jaxrnn.LSTMCarry(None, dc * f))

    cell, params = _gated(_gated_forward, backward)
    _raises(_grad_fn(cell), (params, make_xs()), ValueError if "d_carry as" not in message[0] else TypeError,
            "jaxrnn.broken_gated:", *message)


@pytest.mark.parametrize("time_major", [True, False])
@by_mode
def test_a_user_cell_runs_in_bfloat16_and_returns_bfloat16_outputs(time_major, mode):
    """The docs' peephole LSTM (a general cell computing in float32 from bfloat16 inputs), both layouts and modes."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    import custom_cells

    cell = custom_cells.peephole_lstm
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), cell.init(jax.random.key(0), X, H))
    xs = jnp.ones((B, T, X) if not time_major else (T, B, X), jnp.bfloat16)

    def loss(p):
        carry, hs = jaxrnn.unroll(cell, p, xs, grad=mode, time_major=time_major)
        return hs.astype(jnp.float32).sum(), (carry, hs)

    (carry, hs), grads = jax.eval_shape(lambda p: jax.grad(loss, has_aux=True)(p)[::-1], params)
    assert hs.dtype == jnp.bfloat16 and carry.c.dtype == jnp.float32
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.bfloat16)}


def test_a_gated_residual_in_buffer_of_the_wrong_shape_names_forward():
    cell = jaxrnn.GatedCell("buffered", 2, lambda gx, gh, carry: (carry, (gx[:, :H],)), residual_in_buffer=True,
                            carry_type=jaxrnn.LSTMCarry)
    _, params = _gated(_gated_forward)
    _raises(unroll_fn(cell, "autodiff"), (params, make_xs(), make_carry(jaxrnn.lstm)), ValueError,
            "jaxrnn.buffered: forward must return the residual's first field of shape (3, 10)", "got an array of shape (3, 5)")


def test_a_gated_backward_may_give_d_carry_as_a_list_or_none():
    """A list of fields means what the carry's tuple means; None, a carry without a pointwise cotangent, runs."""

    def backward(res, d_carry, kind):
        f, g, c_prev, c = res
        dc = d_carry.c + d_carry.h * (1 - jnp.tanh(c) ** 2)
        d_gx = jnp.concatenate([dc * (c_prev - g) * f * (1 - f), dc * (1 - f) * g * (1 - g)], axis=-1)
        d_prev = {"tuple": jaxrnn.LSTMCarry(None, dc * f), "list": [None, dc * f], "none": None}[kind]
        return d_gx, None, d_prev

    grads = {}
    for kind in ("tuple", "list", "none"):
        cell, params = _gated(_gated_forward, lambda res, d, kind=kind: backward(res, d, kind))
        grads[kind] = _grad_fn(cell)(params, make_xs())
    for got, want in zip(grads["list"], grads["tuple"]):
        np.testing.assert_array_equal(got, want)
    assert all(np.isfinite(g).all() for g in grads["none"])
