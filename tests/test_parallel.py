"""The parallel-scan cells ``mingru`` and ``minlstm`` (Feng et al., 2024).

``cell.step`` is checked against a NumPy reference written here from the
paper's equations. ``cell.sequence`` (associative scans, both ``grad`` modes)
is checked against a loop of ``cell.step`` (a jitted ``lax.scan`` for
T = 2000) that implements the ``valid``/``resets``/``reverse`` semantics
directly, and the hand-written backward against JAX's autodiff, and against
autodiff of that loop, to 1e-10 relative in float64.

Most tests run eagerly on purpose: they share shapes, so JAX's per-primitive
executable cache makes each variant cheap, where a jit per variant would
compile each one.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn
from jaxrnn import _parallel

CELLS = [jaxrnn.mingru, jaxrnn.minlstm]
by_cell = pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
by_mode = pytest.mark.parametrize("mode", ["manual", "autodiff"])

# Written out here rather than read from the cells, so the tests pin them.
GATES = {"mingru": ("z", "h"), "minlstm": ("f", "i", "h")}
PARAMS_TYPE = {"mingru": jaxrnn.MinGRUParams, "minlstm": jaxrnn.MinLSTMParams}

T, B, X, H = 6, 4, 3, 5
GRAD_RTOL = 1e-10


# --------------------------------------------------------------------------
# NumPy reference of one step, from the paper's equations (float64).


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _g(v):
    return np.where(v >= 0, v + 0.5, _sigmoid(v))


def reference_step(name, params, h, x):
    w, b = (np.asarray(a, np.float64) for a in params)
    h, x = np.asarray(h, np.float64), np.asarray(x, np.float64)
    v = x @ w + b
    if name == "mingru":
        v_z, v_h = v[:, :H], v[:, H:]
        z = _sigmoid(v_z)
        return (1 - z) * h + z * _g(v_h)
    v_f, v_i, v_h = v[:, :H], v[:, H : 2 * H], v[:, 2 * H :]
    f, i = _sigmoid(v_f), _sigmoid(v_i)
    return f / (f + i) * h + i / (f + i) * _g(v_h)


# --------------------------------------------------------------------------
# Problems.


def make_params(cell, seed, input_size=X, hidden=H, scale=1.0):
    """``cell.init`` params (float64) scaled, with random nonzero biases."""
    k_init, k_b = jax.random.split(jax.random.PRNGKey(seed))
    params = cell.init(k_init, input_size, hidden, dtype=jnp.float64)
    return params._replace(
        w_ih=scale * params.w_ih,
        b_ih=0.5 * jax.random.normal(k_b, params.b_ih.shape, jnp.float64),
    )


def make_xs(seed, steps=T, batch=B, input_size=X):
    return 1.5 * jax.random.normal(jax.random.PRNGKey(seed), (steps, batch, input_size), jnp.float64)


def make_carry(seed, batch=B, hidden=H):
    """A carry with negative entries, so the scan must handle signs."""
    return 2.0 * jax.random.normal(jax.random.PRNGKey(seed), (batch, hidden), jnp.float64)


def make_masks(case, seed=0, steps=T, batch=B):
    """``(valid, resets, reverse)`` for a named combination."""
    rng = np.random.default_rng(seed)
    valid = resets = None
    if "valid" in case:
        lengths = np.concatenate([[0, steps], rng.integers(0, steps + 1, batch - 2)])  # 0 and T included
        valid = jnp.asarray(np.arange(steps)[:, None] < lengths[None, :])
    if "resets" in case:
        r = rng.random((steps, batch)) < 0.3
        r[0, 0] = r[-1, 1] = r[steps // 2, 2] = True  # at both ends, so either direction starts on one
        resets = jnp.asarray(r)
    return valid, resets, "reverse" in case


# Each option alone is exercised inside the pairs; the pairs and the triple cover every interaction.
CASES = [
    "plain",
    "valid+resets",
    "valid+reverse",
    "resets+reverse",
    "valid+resets+reverse",
]
by_case = pytest.mark.parametrize("case", CASES)


def masked_step(cell, params, carry0):
    """One step of the semantics, written directly on top of ``cell.step``.

    At a reset the state restarts from ``carry0``; at an invalid step the
    input is zeroed, the state is kept and the output is zero.
    """

    def body(h, inputs):
        x, v, r = inputs
        start = jnp.where(r[:, None], carry0, h)
        new, out = cell.step(params, start, jnp.where(v[:, None], x, 0))
        return jnp.where(v[:, None], new, h), jnp.where(v[:, None], out, 0)

    return body


def as_arrays(valid, resets, steps=T, batch=B):
    return (
        jnp.ones((steps, batch), bool) if valid is None else valid,
        jnp.zeros((steps, batch), bool) if resets is None else resets,
    )


def loop_reference(cell, params, carry, xs, valid, resets, reverse):
    """The sequential reference: a Python loop of :func:`masked_step`, in processing order."""
    steps = xs.shape[0]
    valid, resets = as_arrays(valid, resets, *xs.shape[:2])
    body, h, hs = masked_step(cell, params, carry), carry, [None] * steps
    for t in reversed(range(steps)) if reverse else range(steps):
        h, hs[t] = body(h, (xs[t], valid[t], resets[t]))
    return h, jnp.stack(hs)


@functools.partial(jax.jit, static_argnums=(0, 6))
def scan_reference(cell, params, carry, xs, valid, resets, reverse):
    """The same as a jitted ``lax.scan``, for long sequences (masks as arrays)."""
    return jax.lax.scan(masked_step(cell, params, carry), carry, (xs, valid, resets), reverse=reverse)


def run_sequence(cell, params, carry, xs, valid, resets, reverse, mode):
    # Eager on purpose: JAX caches each primitive's executable by shape, and
    # the tests share shapes, so this compiles far less than a jit per variant.
    return cell.sequence(params, carry, xs, valid=valid, resets=resets, reverse=reverse, grad=mode)


def make_loss(run, steps=T, batch=B, seed=99, with_outputs=False):
    """A scalar loss of ``run(params, carry, xs) -> (final, hs)`` touching every output.

    With ``with_outputs`` it returns ``(loss, (final, hs))``, for ``has_aux``.
    """
    k_r, k_s = jax.random.split(jax.random.PRNGKey(seed))
    R = jax.random.normal(k_r, (steps, batch, H), jnp.float64)
    S = jax.random.normal(k_s, (batch, H), jnp.float64)

    def loss(params, xs, carry):
        final, hs = run(params, carry, xs)
        value = jnp.sum(jnp.sin(hs) * R) + jnp.sum(jnp.cos(final) * S) + 0.5 * jnp.sum(final**2)
        return (value, (final, hs)) if with_outputs else value

    return loss


def grads_of(loss):
    return jax.grad(loss, argnums=(0, 1, 2))


def assert_tree_close(actual, expected, **tol):
    actual_leaves, expected_leaves = jax.tree.leaves(actual), jax.tree.leaves(expected)
    assert len(actual_leaves) == len(expected_leaves)
    for a, e in zip(actual_leaves, expected_leaves):
        assert a.shape == e.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), **tol)


# --------------------------------------------------------------------------
# The cell values, init and step.


@by_cell
def test_cell_metadata(cell):
    assert cell.gates == GATES[cell.name]
    assert cell.params_type is PARAMS_TYPE[cell.name]
    assert cell.carry_type is None
    assert cell.sequence is not None
    assert repr(cell) == f"jaxrnn.{cell.name}"
    assert "Feng" in cell.__doc__ and "Glorot" in cell.__doc__
    assert cell.name in jaxrnn.__all__ and PARAMS_TYPE[cell.name].__name__ in jaxrnn.__all__


@by_cell
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_init_shapes_dtypes_and_biases(cell, dtype):
    params = cell.init(jax.random.PRNGKey(0), X, H, dtype=dtype)
    G = len(GATES[cell.name])
    assert type(params) is PARAMS_TYPE[cell.name]
    assert params._fields == ("w_ih", "b_ih")
    assert params.w_ih.shape == (X, G * H) and params.b_ih.shape == (G * H,)
    assert params.w_ih.dtype == dtype and params.b_ih.dtype == dtype
    np.testing.assert_array_equal(params.b_ih, 0)
    carry = cell.initial_carry(B, H, dtype=dtype)
    assert carry.shape == (B, H) and carry.dtype == dtype


@by_cell
def test_init_glorot_uniform_per_block(cell):
    bound = np.sqrt(6.0 / (X + H))  # fan-in X, fan-out H per gate block
    G = len(GATES[cell.name])
    w = np.stack([np.asarray(cell.init(jax.random.PRNGKey(s), X, H, dtype=jnp.float64).w_ih) for s in range(40)])
    blocks = w.reshape(40, X, G, H)
    assert np.all(np.abs(w) <= bound)
    for g in range(G):
        block = blocks[:, :, g, :]
        assert np.abs(block).max() > 0.95 * bound
        np.testing.assert_allclose(block.var(), bound**2 / 3, rtol=0.15)
    for a in range(G):
        for b in range(a + 1, G):
            assert not np.allclose(blocks[0, :, a], blocks[0, :, b])
    other = cell.init(jax.random.PRNGKey(1), X, H, dtype=jnp.float64).w_ih
    assert not np.allclose(w[0], other)


@by_cell
def test_step_matches_numpy_reference(cell):
    params, x, h = make_params(cell, 1, scale=2.0), make_xs(2)[0], make_carry(3)
    carry, out = cell.step(params, h, x)
    expected = reference_step(cell.name, params, h, x)
    np.testing.assert_allclose(carry, expected, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(carry, out)


@by_cell
def test_step_vjp_matches_autodiff(cell):
    """The per-step hand-written backward, ready for a generic sequential manual path."""
    bptt = {"mingru": _parallel.MINGRU_STEP_BPTT, "minlstm": _parallel.MINLSTM_STEP_BPTT}[cell.name]
    params, x, h_prev = make_params(cell, 4), make_xs(5)[0], make_carry(6)
    gx = cell.project(params, x)
    (h, _, residual), vjp = jax.vjp(lambda h, gx: cell.recurrence(params, h, gx), h_prev, gx)
    d_carry, dh_out = make_carry(7), make_carry(8)
    dh_prev, dgx = vjp((d_carry, dh_out, jax.tree.map(jnp.zeros_like, residual)))
    got_dh_prev, got_dgx, extra = bptt.step_vjp(params, None, d_carry + dh_out, h, h_prev, residual)
    np.testing.assert_allclose(got_dh_prev, dh_prev, rtol=1e-13)
    np.testing.assert_allclose(got_dgx, dgx, rtol=1e-12, atol=1e-15)
    assert extra is None


def test_minlstm_normalised_gates_survive_underflow():
    """With both gates below exp(−745) ≈ 0, f/(f + i) is still σ(v_f − v_i), not 0/0."""
    zeros = jnp.zeros((1, H), jnp.float64)
    gx = jnp.concatenate([zeros - 2000.0, zeros - 2001.0, zeros + 1.0], axis=-1)  # v_f, v_i, v_h
    h = jnp.full((1, H), 3.0, jnp.float64)
    new, _, _ = jaxrnn.minlstm.recurrence(None, h, gx)
    f = 1 / (1 + np.exp(-1.0))  # σ(v_f − v_i) = σ(1)
    np.testing.assert_allclose(new, f * 3.0 + (1 - f) * 1.5, rtol=1e-14)


def test_mingru_keeps_one_minus_z_precision():
    """z → 1 in float32: 1 − z is σ(−v_z) ≈ e^{−40}, not the rounded 0."""
    gx = jnp.concatenate([jnp.full((1, H), 40.0), jnp.full((1, H), 1.0)], axis=-1).astype(jnp.float32)
    log_a, a, _ = _parallel._mingru_coefficients(gx)
    np.testing.assert_allclose(a, np.exp(-40.0), rtol=1e-5)
    np.testing.assert_allclose(log_a, -40.0, rtol=1e-6)


# --------------------------------------------------------------------------
# Shape and type errors.


@by_cell
def test_check_shapes_errors(cell):
    params, x, h = make_params(cell, 0), make_xs(0)[0], make_carry(0)
    G = len(GATES[cell.name])
    rule = rf"params.w_ih must be \(input_size, {G}·hidden\).*got shape \(3, {G * H + 1}\)"
    with pytest.raises(ValueError, match=rule):
        cell.step(params._replace(w_ih=jnp.zeros((X, G * H + 1))), h, x)
    with pytest.raises(ValueError, match=rf"params.w_ih must be .*got shape \({G * H},\)"):
        cell.step(params._replace(w_ih=jnp.zeros((G * H,))), h, x)
    with pytest.raises(ValueError, match=rf"params.b_ih must have shape \({G * H},\).*got \(4,\)"):
        cell.step(params._replace(b_ih=jnp.zeros((4,))), h, x)
    with pytest.raises(ValueError, match=r"input_size 3"):
        cell.step(params, h, jnp.zeros((B, X + 1)))
    with pytest.raises(ValueError, match=r"carry.h must be \(batch, hidden\) = \(4, 5\)"):
        cell.step(params, jnp.zeros((B, H + 1)), x)


@by_cell
def test_params_of_another_cell(cell):
    other = jaxrnn.minlstm if cell is jaxrnn.mingru else jaxrnn.mingru
    x, h = make_xs(0)[0], make_carry(0)
    with pytest.raises(TypeError, match=f"needs {PARAMS_TYPE[cell.name].__name__}.*another cell type"):
        cell.step(other.init(jax.random.PRNGKey(0), X, H), h, x)
    with pytest.raises(TypeError, match="another cell type"):
        cell.step(jaxrnn.gru.init(jax.random.PRNGKey(0), X, H), h, x)
    gru_dict = jaxrnn.gru.init(jax.random.PRNGKey(0), X, H)._asdict()
    with pytest.raises(ValueError, match=r"exactly the keys \['w_ih', 'b_ih'\]"):
        cell.step(gru_dict, h, x)
    # A mapping with the right keys is accepted.
    params = cell.init(jax.random.PRNGKey(0), X, H)
    np.testing.assert_array_equal(cell.step(dict(params._asdict()), h, x)[1], cell.step(params, h, x)[1])


@by_cell
def test_sequence_rejects_unknown_grad(cell):
    params, xs, h0 = make_params(cell, 0), make_xs(0), make_carry(0)
    with pytest.raises(ValueError, match="grad must be one of"):
        cell.sequence(params, h0, xs, valid=None, resets=None, reverse=False, grad="fd")


# --------------------------------------------------------------------------
# The parallel scan against the sequential reference: values.


@by_cell
@by_mode
@by_case
def test_sequence_matches_sequential_reference(cell, mode, case):
    params, xs, h0 = make_params(cell, 10), make_xs(11), make_carry(12)
    valid, resets, reverse = make_masks(case, seed=13)
    final, hs = run_sequence(cell, params, h0, xs, valid, resets, reverse, mode)
    ref_final, ref_hs = loop_reference(cell, params, h0, xs, valid, resets, reverse)
    assert hs.shape == (T, B, H) and final.shape == (B, H)
    np.testing.assert_allclose(hs, ref_hs, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(final, ref_final, rtol=1e-12, atol=1e-13)
    if valid is not None:
        np.testing.assert_array_equal(np.asarray(hs)[~np.asarray(valid)], 0)
        np.testing.assert_array_equal(final[0], h0[0])  # the length-0 row keeps its carry


def test_unroll_parallel_matches_unroll_sequential():
    """Wired into unroll: scan="auto" takes the parallel scan, which agrees with
    unroll's own sequential scan (lengths, resets, reverse) in values and gradients."""
    cell = jaxrnn.minlstm
    params, xs, h0 = make_params(cell, 20), make_xs(21), make_carry(22)
    lengths = jnp.array([0, T, 2, 5])
    resets = jnp.asarray(np.random.default_rng(23).random((T, B)) < 0.3)

    def loss(params, xs, h0, grad, scan):
        final, hs = jaxrnn.unroll(
            cell, params, xs, h0, grad=grad, scan=scan, lengths=lengths, resets=resets, reverse=True
        )
        return jnp.sum(jnp.sin(hs)) + jnp.sum(final**2), (final, hs)

    def run(grad, scan):
        return jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, h0, grad, scan)

    sequential = run("autodiff", "sequential")
    assert_tree_close(run("manual", "auto"), sequential, rtol=GRAD_RTOL, atol=1e-13)
    jaxpr = str(jax.make_jaxpr(lambda p: jaxrnn.unroll(cell, p, xs, h0))(params))
    assert "custom_vjp" in jaxpr and "scan[" not in jaxpr  # the parallel path, not a lax.scan


@by_cell
def test_reverse_with_lengths_starts_each_row_at_its_last_step(cell):
    """Independent of the reference: a reverse run over each row's real prefix is a
    forward run over that prefix flipped (same lengths, so the same padding)."""
    params, xs, h0 = make_params(cell, 30), make_xs(31), make_carry(32)
    valid, _, _ = make_masks("valid", seed=33)
    lengths = np.asarray(valid).sum(axis=0)
    assert {0, T} <= set(lengths.tolist())
    flipped = np.array(xs)
    for b, length in enumerate(lengths):
        flipped[:length, b] = flipped[:length, b][::-1]
    final, hs = cell.sequence(params, h0, xs, valid=valid, resets=None, reverse=True, grad="manual")
    fwd_final, fwd_hs = cell.sequence(params, h0, jnp.asarray(flipped), valid=valid, resets=None, reverse=False)
    np.testing.assert_allclose(final, fwd_final, rtol=1e-12, atol=1e-13)
    for b, length in enumerate(lengths):
        np.testing.assert_allclose(hs[:length, b], fwd_hs[:length, b][::-1], rtol=1e-12, atol=1e-13)
        np.testing.assert_array_equal(hs[length:, b], 0)


@by_cell
@pytest.mark.parametrize("reverse", [False, True])
def test_reset_restarts_from_the_initial_carry(cell, reverse):
    """Independent of the reference: after a reset at step k the outputs are a fresh run
    from h_0 over the steps from k on (in processing order)."""
    params, xs, h0 = make_params(cell, 40), make_xs(41), make_carry(42)
    k = 2
    resets = jnp.zeros((T, B), bool).at[k].set(True)
    final, hs = cell.sequence(params, h0, xs, resets=resets, reverse=reverse, grad="manual")
    # Move the steps from k on to where a fresh run processes them first.
    shift = T - 1 - k if reverse else -k
    _, fresh = cell.sequence(params, h0, jnp.roll(xs, shift, axis=0), reverse=reverse, grad="manual")
    if reverse:
        np.testing.assert_allclose(hs[: k + 1], fresh[T - 1 - k :], rtol=1e-12, atol=1e-13)
    else:
        np.testing.assert_allclose(hs[k:], fresh[: T - k], rtol=1e-12, atol=1e-13)
    assert not np.allclose(hs[k], cell.step(params, hs[k - 1] if not reverse else hs[k + 1], xs[k])[1])
    np.testing.assert_array_equal(final, hs[0] if reverse else hs[-1])


@by_cell
def test_single_step_and_empty_sequence(cell):
    params, xs, h0 = make_params(cell, 50), make_xs(51, steps=1), make_carry(52)
    final, hs = cell.sequence(params, h0, xs, grad="manual")
    np.testing.assert_allclose(hs[0], reference_step(cell.name, params, h0, xs[0]), rtol=1e-13)
    np.testing.assert_array_equal(final, hs[0])
    final, hs = cell.sequence(params, h0, xs[:0], grad="manual")
    assert hs.shape == (0, B, H)
    np.testing.assert_array_equal(final, h0)


# --------------------------------------------------------------------------
# Gradients.


def sequence_loss(cell, mode, valid, resets, reverse):
    return make_loss(lambda p, c, xs: cell.sequence(p, c, xs, valid=valid, resets=resets, reverse=reverse, grad=mode))


@by_cell
@by_case
def test_manual_grads_match_autodiff_and_sequential(cell, case):
    params, xs, h0 = make_params(cell, 60), make_xs(61), make_carry(62)
    valid, resets, reverse = make_masks(case, seed=63)
    manual = grads_of(sequence_loss(cell, "manual", valid, resets, reverse))(params, xs, h0)
    autodiff = grads_of(sequence_loss(cell, "autodiff", valid, resets, reverse))(params, xs, h0)
    reference = make_loss(lambda p, c, x: loop_reference(cell, p, c, x, valid, resets, reverse))
    sequential = grads_of(reference)(params, xs, h0)
    for got in (manual, autodiff):
        for leaf in jax.tree.leaves(got):
            assert np.all(np.isfinite(leaf))
    assert np.abs(manual[2]).max() > 0  # the carry's cotangent is exercised
    assert_tree_close(manual, autodiff, rtol=GRAD_RTOL, atol=1e-13)
    assert_tree_close(manual, sequential, rtol=GRAD_RTOL, atol=1e-13)


def test_manual_sequence_uses_custom_vjp():
    """Without this, manual-vs-autodiff comparisons could be comparing autodiff with itself."""
    params, xs, h0 = make_params(jaxrnn.mingru, 0), make_xs(0), make_carry(0)

    def jaxpr(mode):
        return str(jax.make_jaxpr(lambda p: jaxrnn.mingru.sequence(p, h0, xs, grad=mode))(params))

    assert "custom_vjp" in jaxpr("manual")
    assert "custom_vjp" not in jaxpr("autodiff")


@by_cell
def test_manual_grads_finite_differences(cell):
    """Params, inputs and carry at once, under valid + resets + reverse."""
    params, xs, h0 = make_params(cell, 70), make_xs(71), make_carry(72)
    valid, resets, reverse = make_masks("valid+resets+reverse", seed=73)

    def f(params, xs, h0):
        final, hs = cell.sequence(params, h0, xs, valid=valid, resets=resets, reverse=reverse, grad="manual")
        return jnp.sum(jnp.sin(hs)) + jnp.sum(final**2)

    check_grads(f, (params, xs, h0), order=1, modes=["rev"])


def test_manual_second_order_grads_match_autodiff():
    """The hand-written backward is itself differentiable (e.g. for Hessian-vector products).

    Compared with autodiff rather than finite differences: g' jumps at 0
    (from σ'(0) = 1/4 to 1), so second differences across it are meaningless.
    """
    cell = jaxrnn.minlstm
    params, xs, h0 = make_params(cell, 80), make_xs(81), make_carry(82)
    valid, resets, reverse = make_masks("valid+resets+reverse", seed=83)
    loss = {mode: sequence_loss(cell, mode, valid, resets, reverse) for mode in ("manual", "autodiff")}

    def second(mode):
        def vjp_of_grads(params, xs, h0):
            grads, vjp = jax.vjp(grads_of(loss[mode]), params, xs, h0)
            return vjp(jax.tree.map(lambda g: jnp.cos(jnp.arange(g.size, dtype=g.dtype).reshape(g.shape)), grads))

        return jax.jit(vjp_of_grads)(params, xs, h0)

    manual, autodiff = second("manual"), second("autodiff")
    assert all(np.abs(leaf).max() > 0 for leaf in jax.tree.leaves(manual))
    assert_tree_close(manual, autodiff, rtol=GRAD_RTOL, atol=1e-12)


@by_cell
@by_mode
def test_nan_padding_does_not_leak(cell, mode):
    params, xs, h0 = make_params(cell, 90), make_xs(91), make_carry(92)
    valid, resets, _ = make_masks("valid+resets", seed=93)
    pad = ~np.asarray(valid)
    assert pad.any()
    xs_nan = jnp.where(jnp.asarray(pad)[..., None], jnp.nan, xs)
    xs_zero = jnp.where(jnp.asarray(pad)[..., None], 0.0, xs)
    lengths = jnp.sum(valid, axis=0)  # make_masks' valid is a lengths mask
    for reverse in (False, True):
        def run(p, c, xs, reverse=reverse):  # unroll zeroes padding before the parallel scan
            return jaxrnn.unroll(cell, p, xs, c, grad=mode, lengths=lengths, resets=resets, reverse=reverse,
                                 scan="parallel")

        loss = make_loss(run)
        g_nan = grads_of(loss)(params, xs_nan, h0)
        g_zero = grads_of(loss)(params, xs_zero, h0)
        for leaf in jax.tree.leaves(g_nan):
            assert np.all(np.isfinite(leaf))
        assert_tree_close(g_nan, g_zero, rtol=0, atol=0)
        np.testing.assert_array_equal(np.asarray(g_nan[1])[pad], 0)  # no gradient into padding
        final, hs = run(params, h0, xs_nan)
        assert np.all(np.isfinite(hs)) and np.all(np.isfinite(final))


# --------------------------------------------------------------------------
# jit and vmap.


@by_cell
def test_jit_vmap_over_param_ensemble_with_grads(cell, mode="manual"):
    """The custom_vjp under vmap and jit (autodiff mode is plain JAX there)."""
    members = [make_params(cell, s) for s in (100, 101, 102)]
    ensemble = jax.tree.map(lambda *a: jnp.stack(a), *members)
    xs, h0 = make_xs(103), make_carry(104)
    valid, resets, reverse = make_masks("valid+resets+reverse", seed=105)
    run = functools.partial(cell.sequence, valid=valid, resets=resets, reverse=reverse, grad=mode)
    loss = make_loss(run)

    def values_and_grads(params):
        return run(params, h0, xs), jax.grad(loss, argnums=(0, 1, 2))(params, xs, h0)

    (finals, hss), grads = jax.jit(jax.vmap(values_and_grads))(ensemble)
    reference = make_loss(lambda p, c, x: loop_reference(cell, p, c, x, valid, resets, reverse))
    for k, p in enumerate(members):
        ref_final, ref_hs = loop_reference(cell, p, h0, xs, valid, resets, reverse)
        np.testing.assert_allclose(hss[k], ref_hs, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(finals[k], ref_final, rtol=1e-12, atol=1e-13)
        member_grads = jax.tree.map(lambda g: g[k], grads)
        assert_tree_close(member_grads, grads_of(reference)(p, xs, h0), rtol=GRAD_RTOL, atol=1e-13)


@by_cell
def test_vmap_over_xs_and_carry(cell):
    params = make_params(cell, 110)
    xs = jnp.stack([make_xs(111), make_xs(112)])
    h0 = jnp.stack([make_carry(113), make_carry(114)])
    finals, hss = jax.jit(jax.vmap(lambda x, c: cell.sequence(params, c, x, reverse=True)))(xs, h0)
    for k in range(2):
        ref_final, ref_hs = loop_reference(cell, params, h0[k], xs[k], None, None, True)
        np.testing.assert_allclose(hss[k], ref_hs, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(finals[k], ref_final, rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------
# Mixed precision, as unroll promotes it: 16-bit params and xs, float32 carry.


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_bfloat16_compute_with_float32_state():
    """Outputs in bfloat16, carry in float32, each gradient in its argument's dtype;
    errors against float32 within bfloat16's precision (ε ≈ 4e-3), in both modes.
    One cell: the dtype handling is shared; minLSTM has the most gates."""
    cell = jaxrnn.minlstm
    problem = make_params(cell, 150), make_xs(151), make_carry(152)
    params, xs, h0 = jax.tree.map(lambda a: a.astype(jnp.float32), problem)
    # g' jumps at 0 (from 1/4 to 1): a candidate pre-activation that rounding moves across 0
    # changes its gradient by 4x, so keep them clear of 0 by more than bfloat16 rounding.
    assert np.abs(np.asarray(cell.project(params, xs))[..., -H:]).min() > 0.015
    valid, resets, reverse = make_masks("valid+resets+reverse", seed=153)
    weights = jax.random.normal(jax.random.PRNGKey(154), (T, B, H), jnp.float32)

    def outputs_and_grads(params, xs, h0, mode):
        def loss(params, xs, h0):
            final, hs = cell.sequence(params, h0, xs, valid=valid, resets=resets, reverse=reverse, grad=mode)
            return jnp.sum(hs.astype(jnp.float32) * weights) + jnp.sum(final), (final, hs)

        return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(params, xs, h0)[::-1]

    ref_outputs, ref_grads = outputs_and_grads(params, xs, h0, "autodiff")
    low = jax.tree.map(lambda a: a.astype(jnp.bfloat16), (params, xs))
    results = {mode: outputs_and_grads(*low, h0, mode) for mode in ("manual", "autodiff")}
    for mode, ((final, hs), grads) in results.items():
        assert hs.dtype == jnp.bfloat16 and final.dtype == jnp.float32, mode
        assert [g.dtype for g in jax.tree.leaves(grads)] == [jnp.bfloat16] * 3 + [jnp.float32], mode
        assert relative_error(hs, ref_outputs[1]) < 3e-2, mode
        assert relative_error(final, ref_outputs[0]) < 3e-2, mode
        for g, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
            assert relative_error(g, ref) < 6e-2, mode
    for manual, autodiff in zip(jax.tree.leaves(results["manual"][1]), jax.tree.leaves(results["autodiff"][1])):
        assert relative_error(manual, autodiff) < 6e-2


# --------------------------------------------------------------------------
# Stability over a long, saturated sequence.


def saturated_problem(cell, dtype, steps, batch):
    params = make_params(cell, 120, scale=300.0)
    params = params._replace(b_ih=100.0 * jnp.sign(params.b_ih))
    xs = make_xs(121, steps=steps, batch=batch)
    h0 = -5.0 * jnp.abs(make_carry(122, batch=batch))  # negative, so signs matter
    params, xs, h0 = jax.tree.map(lambda a: a.astype(dtype), (params, xs, h0))
    gx = np.asarray(cell.project(params, xs), np.float64)
    assert np.abs(gx).max() > 750 and (gx < -750).any()  # σ underflows even in float64
    return params, xs, h0


@pytest.mark.sweep
@by_cell
def test_long_saturated_sequence_is_stable(cell):
    """T = 2000 with pre-activations of several hundred: gates at 0 or 1 to the last bit,
    σ below the smallest float, cumulative decays far below it too, a negative carry and
    a reset to it. Values in float64 and float32, gradients in float64, against the
    sequential reference. Jitted: one compile rather than eager ops at each scan level."""
    steps, batch = 2000, 2
    valid, resets = as_arrays(None, jnp.zeros((steps, batch), bool).at[1500, 0].set(True), steps, batch)
    run = functools.partial(cell.sequence, resets=resets, grad="manual")
    reference = functools.partial(scan_reference, cell, valid=valid, resets=resets, reverse=False)

    def values_and_grads(run, params, xs, h0):  # one compile for both
        loss = make_loss(run, steps, batch, with_outputs=True)
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(params, xs, h0)

    for dtype in (jnp.float64, jnp.float32):
        params, xs, h0 = saturated_problem(cell, dtype, steps, batch)
        if dtype == jnp.float64:
            grads, (final, hs) = values_and_grads(run, params, xs, h0)
            ref_grads, (ref_final, ref_hs) = values_and_grads(reference, params, xs, h0)
            for leaf in jax.tree.leaves(grads):
                assert np.all(np.isfinite(leaf))
            assert_tree_close(grads, ref_grads, rtol=1e-8, atol=1e-8)
        else:
            (final, hs), (ref_final, ref_hs) = jax.jit(run)(params, h0, xs), reference(params, h0, xs)
        assert hs.dtype == dtype
        assert np.all(np.isfinite(hs)) and np.all(np.isfinite(final)) and np.all(np.isfinite(ref_hs))
        # Float32: the two orders of summation differ by rounding of the largest values (|h̃| ~ 10³).
        rtol = 1e-10 if dtype == jnp.float64 else 1e-5
        atol = rtol * 2 * float(np.abs(ref_hs).max())
        np.testing.assert_allclose(hs, ref_hs, rtol=rtol, atol=atol)
        np.testing.assert_allclose(final, ref_final, rtol=rtol, atol=atol)


@pytest.mark.sweep
@by_cell
@pytest.mark.parametrize("checkpoint", [None, 4], ids=["plain", "checkpoint4"])
def test_sequential_manual_path_matches_the_parallel_scan(cell, checkpoint):
    """The per-step hand-written BPTT (scan="sequential", grad="manual") agrees with the parallel scan."""
    params, xs, carry = make_params(cell, 1), make_xs(2), make_carry(3)
    valid, resets, _ = make_masks("valid+resets", seed=4)
    lengths = jnp.sum(valid, axis=0)

    def run(scan, mode, ckpt):
        def fn(params, carry, xs):
            return jaxrnn.unroll(cell, params, xs, carry, grad=mode, scan=scan, lengths=lengths, resets=resets,
                                 reverse=True, checkpoint=ckpt)
        return fn

    @jax.jit
    def both(params, xs, carry):
        sequential = jax.value_and_grad(make_loss(run("sequential", "manual", checkpoint), with_outputs=True),
                                        argnums=(0, 1, 2), has_aux=True)(params, xs, carry)
        parallel = jax.value_and_grad(make_loss(run("parallel", "manual", None), with_outputs=True),
                                      argnums=(0, 1, 2), has_aux=True)(params, xs, carry)
        return sequential, parallel

    sequential, parallel = both(params, xs, carry)
    assert_tree_close(sequential[0], parallel[0], rtol=1e-12, atol=1e-12)  # loss, final carry and outputs
    assert_tree_close(sequential[1], parallel[1], rtol=1e-10, atol=1e-12)  # gradients
