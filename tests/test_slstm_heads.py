"""The sLSTM cell and block-diagonal (multi-head) recurrence.

sLSTM: its hand-written BPTT against autodiff and finite differences (float64,
every sequence option), at the ties of its two ``max`` (which autodiff splits
half and half), and against FlashRNN's pure-PyTorch reference when that is
installed. Heads: block-diagonality seen directly, one head equal to the dense
cell, K heads equal to the dense cell with the block-diagonal matrix.
"""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import testing
from jaxrnn._slstm import _slstm_core, slstm_state, slstm_state_vjp

HEADED = [jaxrnn.simple_rnn, jaxrnn.lstm, jaxrnn.gru, jaxrnn.slstm]
COMBINED = ("lengths+reverse+resets", "checkpoint+lengths+batch_major")


def normal(seed, shape, scale=1.0):
    return scale * jax.random.normal(jax.random.key(seed), shape, jnp.float64)


def noisy_params(cell, hidden, num_heads, seed=0, input_size=3):
    """``cell.init`` in float64 plus noise, so no bias is zero (jitted: eager init compiles op by op)."""

    @jax.jit
    def make(key):
        params = cell.init(key, input_size, hidden, dtype=jnp.float64, num_heads=num_heads)
        return jax.tree.map(lambda a: a + normal(seed + a.size, a.shape, 0.1), params)

    return make(jax.random.key(seed))


# --------------------------------------------------------------------------
# Gradients: check_cell on every option, for sLSTM and every headed cell.


# The two combined entries hold every option between them; each cell runs one (sLSTM both, over its two runs).
@pytest.mark.sweep(fast=("slstm-2heads",))
@pytest.mark.parametrize("cell, num_heads, names", [
    (jaxrnn.slstm, 1, COMBINED[:1]),
    (jaxrnn.slstm, 2, COMBINED[1:]),
    (jaxrnn.lstm, 2, COMBINED[:1]),
    (jaxrnn.gru, 3, COMBINED[1:]),
    (jaxrnn.simple_rnn, 2, COMBINED[:1]),
], ids=["slstm", "slstm-2heads", "lstm-2heads", "gru-3heads", "simple_rnn-2heads"])
def test_check_cell(cell, num_heads, names):
    options = {name: testing.OPTIONS[name] for name in names}
    # bfloat16 against float32 is checked for every gated cell at once, in test_protocol.py
    report = testing.check_cell(cell, hidden_size=6, init_options={"num_heads": num_heads}, options=options,
                                low_precision=None)
    assert list(report) == list(names)
    assert max(report.values()) < 1e-6, report


@pytest.mark.slow
def test_slstm_from_zero_state_matches_autodiff(num_heads=2):
    """From zeros the first step takes ``m' = ĩ`` and ties ``n' = max(1, 1)``; resets return rows there."""
    hidden, steps, batch = 4, 9, 3
    params = noisy_params(jaxrnn.slstm, hidden, num_heads)
    xs = normal(1, (steps, batch, 3))
    resets = jax.random.bernoulli(jax.random.key(2), 0.3, (steps, batch))
    lengths = jnp.array([steps, 5, 0])
    w = normal(3, (steps, batch, hidden))

    direction = jax.tree.map(lambda a: normal(a.size, a.shape), (params, xs))
    eps = 1e-6
    every = ({"resets": resets, "lengths": lengths, "reverse": True},)  # checkpoint: check_cell above

    def loss(params, xs, grad, options):
        final, hs = jaxrnn.unroll(jaxrnn.slstm, params, xs, grad=grad, **options)
        return jnp.sum(hs * w) + sum(jnp.sum(jnp.sin(a)) for a in final)

    @jax.jit  # one compile: compiling is most of the cost
    def results(params, xs):
        grads = [{grad: jax.grad(loss, argnums=(0, 1))(params, xs, grad, options) for grad in jaxrnn.GRAD_MODES}
                 for options in every]
        moved = [loss(*jax.tree.map(lambda a, d: a + s * eps * d, (params, xs), direction), "manual", every[0])
                 for s in (1, -1)]
        return grads, (moved[0] - moved[1]) / (2 * eps)

    grads, numeric = results(params, xs)
    for options, pair in zip(every, grads):
        assert testing.relative_error(pair["manual"], pair["autodiff"]) < 1e-12, options
    # and against finite differences along one direction of every param and the inputs
    analytic = sum(jnp.sum(g * d) for g, d in zip(jax.tree.leaves(grads[0]["manual"]), jax.tree.leaves(direction)))
    assert abs(numeric - analytic) <= 1e-7 * abs(analytic)


@pytest.mark.slow
def test_slstm_step_vjp_splits_ties_like_jnp_maximum():
    """Both ``max``: at ĩ = log σ(f̃) + m exactly and at f'n + i' = 1 exactly, each side gets half."""
    batch, hidden = 2, 5
    raw, c, n, m = normal(0, (batch, 4 * hidden)), normal(1, (batch, hidden)), jnp.abs(normal(2, (batch, hidden))), normal(3, (batch, hidden))
    # row 0: a tie of ĩ with lf in units 0-2 (log σ(800) is exactly 0 in float64, so lf = m = ĩ)
    raw = raw.at[0, hidden: hidden + 3].set(800.0).at[0, :3].set(m[0, :3])
    # row 1: the first step (n = 0), whose n' = max(0·f' + 1, 1) ties
    n = n.at[1].set(0.0)
    (h, c_new, n_new, m_new), vjp = jax.vjp(slstm_state, raw, c, n, m)
    assert bool(jnp.all(m_new[0, :3] == raw[0, :3])) and bool(jnp.all(n_new[1] == 1.0))
    cotangents = tuple(normal(10 + k, (batch, hidden)) for k in range(4))
    want = vjp(cotangents)

    def manual(raw):
        gates, sig_neg_f, share_i = _slstm_core(raw, c, n, m)[1]
        return slstm_state_vjp(*cotangents, gates, c, n, sig_neg_f, share_i)

    got = manual(raw)
    assert testing.relative_error(got, want) < 1e-14
    # the ties matter: off the tie the whole cotangent goes to one side, and the gradient moves by O(1)
    d_raw_off_tie = manual(raw.at[0, :3].add(1e-9))[0]
    assert not np.allclose(d_raw_off_tie[0, :3], got[0][0, :3], rtol=1e-3)


@pytest.mark.slow
def test_slstm_matches_flashrnn_reference():
    """FlashRNN's vanilla sLSTM (pure PyTorch): outputs, final state and every gradient, 1 and 2 heads."""
    torch = pytest.importorskip("torch")
    try:
        from flashrnn.flashrnn import vanilla
    except ImportError as error:
        if os.environ.get("JAXRNN_REQUIRE_FLASHRNN"):  # CI installs it: a skip there would hide a broken install
            raise
        pytest.skip(f"FlashRNN is not installed ({error}); `pip install --no-deps flashrnn==1.0.8` adds its "
                    "pure-PyTorch reference")
    steps, batch, inputs, hidden = 7, 3, 4, 6
    for num_heads in (1, 2):
        size = hidden // num_heads
        params = noisy_params(jaxrnn.slstm, hidden, num_heads, seed=num_heads, input_size=inputs)
        xs = normal(5, (steps, batch, inputs))
        w = normal(6, (steps, batch, hidden))

        def loss(params, xs, grad):
            final, hs = jaxrnn.unroll(jaxrnn.slstm, params, xs, grad=grad)
            return jnp.sum(hs * w) + jnp.sum(final.c), (hs, final)

        # torch: gate-major (.., 4, K, d) pre-activations, R (K, d, 4, d), bias (4, K, d)
        t = {name: torch.tensor(np.asarray(a), requires_grad=True) for name, a in params._asdict().items()}
        t_xs = torch.tensor(np.asarray(xs), requires_grad=True)
        wx = (t_xs @ t["w_ih"]).reshape(steps, batch, 4, num_heads, size)
        r = t["w_hh"].reshape(num_heads, size, 4, size)
        b = (t["b_ih"] + t["b_hh"]).reshape(4, num_heads, size)
        states = torch.zeros(1, batch, 4, num_heads, size, dtype=torch.float64)
        every, last = vanilla.flashrnn_forward(wx, states, r, b, vanilla.flashrnn_pointwise_function_registry["slstm"])
        t_hs = every[:, :, 0].reshape(steps, batch, hidden)
        t_c = last[0, :, 1].reshape(batch, hidden)
        ((t_hs * torch.tensor(np.asarray(w))).sum() + t_c.sum()).backward()

        both = jax.jit(lambda p, x: {grad: jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(p, x, grad)
                                     for grad in jaxrnn.GRAD_MODES})(params, xs)
        for grad, ((_, (hs, final)), (d_params, d_xs)) in both.items():
            np.testing.assert_allclose(hs, t_hs.detach().numpy(), rtol=1e-10, atol=1e-12)
            for k, name in enumerate(("h", "c", "n", "m")):
                np.testing.assert_allclose(final[k], last[0, :, k].reshape(batch, hidden).detach().numpy(),
                                           rtol=1e-10, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(d_xs, t_xs.grad.numpy(), rtol=1e-9, atol=1e-11)
            for name, value in d_params._asdict().items():
                np.testing.assert_allclose(value, t[name].grad.numpy(), rtol=1e-9, atol=1e-11,
                                           err_msg=f"{grad} {num_heads} heads {name}")


# --------------------------------------------------------------------------
# Heads.


@pytest.mark.sweep
@pytest.mark.parametrize("cell", HEADED, ids=lambda c: c.name)
def test_heads_are_block_diagonal(cell):
    """Moving head j of ``h`` moves head j of the next output and no other."""
    hidden, heads, batch = 6, 3, 2
    size = hidden // heads
    params = noisy_params(cell, hidden, heads)
    x = normal(1, (batch, 3))
    carry = jax.tree.map(lambda z: 0.5 + normal(z.size, z.shape, 0.1), cell.initial_carry(batch, hidden,
                                                                                          dtype=jnp.float64))
    _, h = cell.step(params, carry, x)
    h_prev = cell.hidden(carry)
    for j in range(heads):
        nudged = h_prev.at[:, j * size: (j + 1) * size].add(0.3)
        _, h_moved = cell.step(params, nudged if cell.carry_type is None else carry._replace(h=nudged), x)
        moved = np.abs(np.asarray(h_moved - h)).max(axis=0).reshape(heads, size).max(axis=1)
        assert moved[j] > 1e-3 and np.all(np.delete(moved, j) == 0), (j, moved)


# Every gated cell shares the gated tier's init and the heads' products; the sLSTM has its own bias_init.
@pytest.mark.slow
@pytest.mark.parametrize("cell", [jaxrnn.lstm, jaxrnn.slstm], ids=lambda c: c.name)
def test_one_head_is_the_dense_cell_bit_for_bit(cell):
    key = jax.random.key(3)
    dense, one = jax.jit(lambda k: (cell.init(k, 3, 8), cell.init(k, 3, 8, num_heads=1)))(key)
    assert all(np.array_equal(a, b) for a, b in zip(dense, one)) and one.w_hh.shape == (8, len(cell.gates) * 8)
    xs = jax.random.normal(key, (5, 2, 3))

    one_block = dense._replace(w_hh=dense.w_hh[None])  # (1, H, G·H): the headed code path with one head

    @jax.jit
    def results(dense, one, one_block):
        return [jax.value_and_grad(lambda p: jnp.sum(jaxrnn.unroll(cell, p, xs, grad=grad)[1] ** 2))(params)
                for grad in jaxrnn.GRAD_MODES for params in (dense, one, one_block)]

    out = results(dense, one, one_block)
    for a, b, (value, grads) in (out[:3], out[3:]):
        assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
        np.testing.assert_allclose(value, a[0], rtol=1e-6)
        for u, v in zip(jax.tree.leaves(grads._replace(w_hh=grads.w_hh[0])), jax.tree.leaves(a[1])):
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


# The GRU's hidden-side gradient has its own code (n scaled by r); the others share theirs with the sLSTM's.
@pytest.mark.slow
@pytest.mark.parametrize("cell", [jaxrnn.gru, jaxrnn.slstm], ids=lambda c: c.name)
def test_heads_equal_the_dense_cell_with_the_block_diagonal_matrix(cell):
    """Outputs equal; the dense cell's gradient on the heads' blocks is the headed cell's gradient."""
    hidden, heads = 8, 4
    size, gates = hidden // heads, len(cell.gates)
    params = noisy_params(cell, hidden, heads)
    dense = params._replace(w_hh=jaxrnn.block_diagonal(params.w_hh))
    assert dense.w_hh.shape == (hidden, gates * hidden)
    xs = normal(1, (6, 2, 3))

    def loss(p, grad):
        final, hs = jaxrnn.unroll(cell, p, xs, grad=grad, lengths=jnp.array([6, 4]))
        return jnp.sum(jnp.sin(hs)) + sum(jnp.sum(a) for a in jax.tree.leaves(final))

    results = jax.jit(lambda params, dense: [(jax.value_and_grad(loss)(params, grad), jax.value_and_grad(loss)(dense, grad))
                                             for grad in jaxrnn.GRAD_MODES])(params, dense)
    for (value_h, d_headed), (value_d, d_dense) in results:
        np.testing.assert_allclose(value_h, value_d, rtol=1e-13)
        blocks = np.asarray(d_dense.w_hh).reshape(heads, size, gates, heads, size)
        on_heads = np.stack([blocks[k, :, :, k, :] for k in range(heads)]).reshape(heads, size, gates * size)
        np.testing.assert_allclose(d_headed.w_hh, on_heads, rtol=1e-11, atol=1e-13)
        for name in ("w_ih", "b_ih", "b_hh"):
            np.testing.assert_allclose(getattr(d_headed, name), getattr(d_dense, name), rtol=1e-11, atol=1e-13)


@pytest.mark.slow
def test_headed_init_shapes_and_orthogonal_blocks():
    params = jaxrnn.lstm.init(jax.random.key(0), 3, 12, num_heads=4)
    assert params.w_hh.shape == (4, 3, 12) and params.w_ih.shape == (3, 48) and params.b_ih.shape == (48,)
    for head in np.asarray(params.w_hh):
        for gate in range(4):
            block = head[:, gate * 3: (gate + 1) * 3]
            np.testing.assert_allclose(block @ block.T, np.eye(3), atol=1e-5)
    b_f = np.asarray(jaxrnn.slstm.init(jax.random.key(0), 3, 8, num_heads=2).b_ih[8:16])
    np.testing.assert_allclose(b_f[:4], b_f[4:])  # the same spread in every head
    assert b_f[0] == 5.0 and b_f[3] == -7.0


@pytest.mark.parametrize("num_heads, error, match", [
    (3, ValueError, r"num_heads must divide hidden_size.*got num_heads=3 with hidden_size=8.*\[1, 2, 4, 8\]"),
    (0, ValueError, "num_heads must be > 0"),
    (2.0, TypeError, "num_heads must be an int"),
])
def test_bad_num_heads(num_heads, error, match):
    with pytest.raises(error, match=match):
        jaxrnn.gru.init(jax.random.key(0), 3, 8, num_heads=num_heads)


def test_bad_headed_weights_are_named():
    params = jaxrnn.lstm.init(jax.random.key(0), 3, 8, num_heads=2)
    with pytest.raises(ValueError, match=r"headed params.w_hh must be \(num_heads, head_size, 4·head_size\)"):
        jaxrnn.lstm.step(params._replace(w_hh=params.w_hh[..., :12]), jaxrnn.lstm.initial_carry(2, 8),
                         jnp.zeros((2, 3)))
    with pytest.raises(TypeError, match="num_heads"):
        jaxrnn.projected_lstm.init(jax.random.key(0), 3, 8, num_heads=2)  # not a headed cell


@pytest.mark.slow
def test_headed_lstm_exports_to_torch_as_block_diagonal():
    torch = pytest.importorskip("torch")
    params = jaxrnn.lstm.init(jax.random.key(1), 3, 8, num_heads=4, dtype=jnp.float64)
    params = jax.tree.map(lambda a: a + normal(a.size, a.shape, 0.1), params)
    module = torch.nn.LSTM(3, 8).double()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in jaxrnn.interop.to_torch(jaxrnn.lstm, params).items()})
    xs = normal(2, (5, 2, 3))
    out, _ = module(torch.from_numpy(np.asarray(xs)))
    np.testing.assert_allclose(jaxrnn.unroll(jaxrnn.lstm, params, xs)[1], out.detach().numpy(), rtol=1e-12)


@pytest.mark.slow
def test_headed_slstm_in_a_bidirectional_stack_matches_autodiff():
    net = jaxrnn.stack(jaxrnn.slstm, num_layers=2, bidirectional=True)
    params = jax.jit(lambda k: net.init(k, 3, 4, dtype=jnp.float64, num_heads=2))(jax.random.key(0))
    assert params[1].forward.w_ih.shape == (8, 16) and params[1].forward.w_hh.shape == (2, 2, 8)
    xs, lengths = normal(1, (5, 3, 3)), jnp.array([5, 2, 4])

    @jax.jit
    def grads(params, xs):
        def loss(params, xs, grad):
            final, hs = net.apply(params, xs, lengths=lengths, grad=grad)
            return jnp.sum(jnp.sin(hs)) + sum(jnp.sum(a) for a in jax.tree.leaves(final))
        return [jax.grad(loss, argnums=(0, 1))(params, xs, grad) for grad in jaxrnn.GRAD_MODES]

    manual, auto = grads(params, xs)
    assert testing.relative_error(manual, auto) < 1e-12


_DOT = re.compile(r"stablehlo\.dot_general .*batching_dims.*: \(tensor<([^>]*)>, tensor<([^>]*)>\) -> tensor<([^>]*)>")


@pytest.mark.parametrize("platform", ["cpu", "cuda"])
def test_sixteen_bit_headed_products_per_platform(platform):
    """The headed (batched) products of bfloat16 values sum in float32 on every platform. For the CPU their
    operands are float32 (XLA's CPU runtime in JAX 0.11.2 and 0.12.0 has no batched bfloat16 × bfloat16 → float32
    product: "Unsupported element type for DotThunk"); elsewhere they stay bfloat16, the GPU's own product."""
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), jaxrnn.lstm.init(jax.random.key(0), 3, 8, num_heads=2))
    xs = jnp.ones((3, 2, 3), jnp.bfloat16)

    def loss(params):  # the forward and backward products, hand-written and by autodiff
        return sum(jnp.sum(jaxrnn.unroll(jaxrnn.lstm, params, xs, grad=mode)[1].astype(jnp.float32))
                   for mode in ("manual", "autodiff"))

    text = jax.jit(jax.grad(loss)).trace(params).lower(lowering_platforms=(platform,)).as_text()
    products = [types for types in _DOT.findall(text) if types[2].endswith("f32")]
    assert len(products) >= 6, text  # per mode: h W_hh, its cotangent, dW_hh
    operands = {a.rsplit("x", 1)[1] for a, b, _ in products} | {b.rsplit("x", 1)[1] for a, b, _ in products}
    assert operands == ({"f32"} if platform == "cpu" else {"bf16", "f32"}), products
