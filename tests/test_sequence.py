"""unroll's sequence options: lengths, reverse, resets, time_major, checkpoint.

Every option is checked against an independent reference (a Python loop over
rows and steps of ``cell.step``), in both grad modes, and the hand-written
gradients against autodiff's in float64.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn

CELLS = [jaxrnn.simple_rnn, jaxrnn.lstm, jaxrnn.gru]
by_cell = pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
T, B, X, H = 7, 4, 3, 5
LENGTHS = np.array([0, 7, 3, 5])  # empty, full and partial rows


def problem(cell, seed=0):
    rng = np.random.default_rng(seed)
    params = cell.init(jax.random.key(seed), X, H, dtype=jnp.float64)
    params = params._replace(b_hh=params.b_hh + jnp.asarray(rng.normal(size=params.b_hh.shape)) * 0.3)
    xs = jnp.asarray(rng.normal(size=(T, B, X)))
    carry = jax.tree.map(lambda z: jnp.asarray(rng.normal(size=z.shape)), cell.initial_carry(B, H, dtype=jnp.float64))
    resets = rng.random((T, B)) < 0.3
    weights = jnp.asarray(rng.normal(size=(T, B, H)))
    return params, xs, carry, resets, weights


def reference(cell, params, xs, carry, lengths=None, reverse=False, resets=None):
    """Row by row, step by step: the semantics unroll documents."""
    step = jax.jit(cell.step)
    hs = np.zeros((xs.shape[0], xs.shape[1], H))
    finals = []
    for b in range(xs.shape[1]):
        def row(c):
            return jax.tree.map(lambda a: a[b : b + 1], c)

        state = row(carry)
        length = xs.shape[0] if lengths is None else int(lengths[b])
        for t in range(length - 1, -1, -1) if reverse else range(length):
            if resets is not None and resets[t, b]:
                state = row(carry)
            state, h = step(params, state, xs[t, b : b + 1])
            hs[t, b] = h[0]
        finals.append(state)
    return jax.tree.map(lambda *rows: jnp.concatenate(rows), *finals), hs


def run_both_modes(cell, params, xs, carry, weights, **options):
    """``{mode: ((carry, hs), grads)}`` for one loss, both modes compiled together."""

    def loss(params, xs, carry, mode):
        final, hs = jaxrnn.unroll(cell, params, xs, carry, grad=mode, **options)
        value = jnp.sum(jnp.sin(hs) * weights) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(final))
        return value, (final, hs)

    @jax.jit
    def both(params, xs, carry):
        return {
            mode: jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry, mode)
            for mode in ("manual", "autodiff")
        }

    return {mode: (aux, grads) for mode, ((_, aux), grads) in both(params, xs, carry).items()}


def assert_trees_close(actual, expected, rtol, atol=0.0):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def assert_grads_agree(grads_manual, grads_autodiff):
    for a, e in zip(jax.tree.leaves(grads_manual), jax.tree.leaves(grads_autodiff), strict=True):
        scale = max(float(jnp.max(jnp.abs(e))), 1e-300)
        assert float(jnp.max(jnp.abs(a - e))) <= 1e-10 * scale


FEATURES = {
    "lengths": dict(lengths=LENGTHS),
    "resets": dict(resets=True),
    "lengths+resets": dict(lengths=LENGTHS, resets=True),
}


@pytest.mark.sweep
@by_cell
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("features", list(FEATURES))
def test_matches_reference_and_grads_agree(cell, reverse, features):
    params, xs, carry, resets, weights = problem(cell)
    options = dict(FEATURES[features], reverse=reverse)
    if options.get("resets") is True:
        options["resets"] = resets
    expected_final, expected_hs = reference(cell, params, xs, carry, options.get("lengths"), reverse,
                                            options.get("resets"))
    results = run_both_modes(cell, params, xs, carry, weights, **options)
    for mode, ((final, hs), _) in results.items():
        np.testing.assert_allclose(hs, expected_hs, atol=1e-13, err_msg=mode)
        assert_trees_close(final, expected_final, rtol=0, atol=1e-13)
    assert_grads_agree(results["manual"][1], results["autodiff"][1])


@pytest.mark.slow
@pytest.mark.parametrize("cell", [jaxrnn.lstm, jaxrnn.gru], ids=lambda c: c.name)
def test_manual_grads_match_finite_differences_with_every_option(cell):
    params, xs, carry, resets, _ = problem(cell, seed=3)

    @jax.jit
    def f(params, xs, carry):
        final, hs = jaxrnn.unroll(cell, params, xs, carry, lengths=LENGTHS, reverse=True, resets=resets)
        return jnp.sum(jnp.tanh(hs)) + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(final))

    check_grads(f, (params, xs, carry), order=1, modes=["rev"])


def test_lengths_zero_and_full():
    cell = jaxrnn.lstm
    params, xs, carry, _, _ = problem(cell)
    final, hs = jaxrnn.unroll(cell, params, xs, carry, lengths=np.array([0, 0, 0, 0]))
    assert_trees_close(final, carry, rtol=0)  # no real steps: the carry comes back
    np.testing.assert_array_equal(hs, 0)
    full = jaxrnn.unroll(cell, params, xs, carry, lengths=np.full(B, T))
    assert_trees_close(full, jaxrnn.unroll(cell, params, xs, carry), rtol=1e-13, atol=1e-15)


@pytest.mark.sweep
@pytest.mark.parametrize("mode", ["manual", "autodiff"])
def test_padding_never_reaches_outputs_or_gradients(mode):
    cell = jaxrnn.gru
    params, xs, carry, _, weights = problem(cell)
    padded = xs.at[6:, 2].set(jnp.nan).at[4:, 0].set(jnp.inf)  # rows 0 and 2 are padded there
    lengths = np.array([4, 7, 6, 5])

    def loss(params, xs):
        _, hs = jaxrnn.unroll(cell, params, xs, carry, grad=mode, lengths=lengths)
        return jnp.sum(hs * weights)

    grads = jax.grad(loss, argnums=(0, 1))(params, padded)
    clean = jax.grad(loss, argnums=(0, 1))(params, xs)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(grads))
    assert_trees_close(grads, clean, rtol=1e-13, atol=1e-15)


@by_cell
def test_time_major_false_is_the_transpose(cell):
    params, xs, carry, resets, _ = problem(cell)
    options = dict(lengths=LENGTHS, resets=resets, reverse=True)
    final_t, hs_t = jaxrnn.unroll(cell, params, xs, carry, **options)
    final_b, hs_b = jaxrnn.unroll(cell, params, jnp.swapaxes(xs, 0, 1), carry, time_major=False, **options)
    assert hs_b.shape == (B, T, H)
    np.testing.assert_allclose(hs_b, jnp.swapaxes(hs_t, 0, 1), rtol=1e-15)
    assert_trees_close(final_b, final_t, rtol=1e-15)


# --------------------------------------------------------------------------
# Checkpointing: the same values and gradients as storing every step.


@pytest.mark.sweep
@pytest.mark.parametrize("cell", [jaxrnn.lstm, jaxrnn.gru], ids=lambda c: c.name)
@pytest.mark.parametrize("checkpoint", [1, 3, 7, 10], ids=lambda k: f"k{k}")
def test_checkpoint_equals_plain(cell, checkpoint):
    params, xs, carry, resets, weights = problem(cell, seed=5)
    options = dict(lengths=LENGTHS, resets=resets, reverse=checkpoint % 2 == 1)
    plain = run_both_modes(cell, params, xs, carry, weights, **options)
    ckpt = run_both_modes(cell, params, xs, carry, weights, checkpoint=checkpoint, **options)
    for mode in ("manual", "autodiff"):
        assert_trees_close(ckpt[mode][0], plain[mode][0], rtol=1e-13, atol=1e-15)
        assert_trees_close(ckpt[mode][1], plain[mode][1], rtol=1e-11, atol=1e-13)


def _gradient_temp_bytes(grad, steps, checkpoint, batch=8, hidden=256, input_size=8):
    cell = jaxrnn.lstm
    params = cell.init(jax.random.key(0), input_size, hidden)
    xs = jax.ShapeDtypeStruct((steps, batch, input_size), jnp.float32)

    def loss(params, xs):
        final, hs = jaxrnn.unroll(cell, params, xs, grad=grad, checkpoint=checkpoint)
        return jnp.mean(hs[-1]) + jnp.mean(final.c)

    return jax.jit(jax.grad(loss)).lower(params, xs).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.slow
@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_checkpoint_bounds_memory_at_t_100000(grad):
    """A T = 100,000, batch 8, hidden 256 LSTM gradient fits comfortably in 24 GB.

    Stored per step, the residuals alone would be 6·8·256·4 bytes · 1e5 = 4.9 GB
    for the manual path. With k = 316 ≈ √T the compiled gradient's scratch is
    dominated by the outputs' cotangent and a few (T, B, H) arrays.
    """
    steps, k = 100_000, 316
    one_sequence_array = steps * 8 * 256 * 4  # a (T, B, H) float32 array, 0.8 GB
    plain = _gradient_temp_bytes(grad, steps, None)
    ckpt = _gradient_temp_bytes(grad, steps, k)
    assert plain > 5 * one_sequence_array  # what checkpointing saves us from
    assert ckpt < 3 * one_sequence_array, ckpt / one_sequence_array


# --------------------------------------------------------------------------
# Bad input: clear errors at trace time (and NaN rows for traced bad lengths).


def _call(**options):
    params, xs, carry, _, _ = problem(jaxrnn.lstm)
    return jaxrnn.unroll(jaxrnn.lstm, params, xs, carry, **options)


@pytest.mark.parametrize(
    "options, error, match",
    [
        (dict(lengths=np.array([1, 2, 3])), ValueError, r"lengths must have shape \(batch,\) = \(4,\).*got \(3,\)"),
        (dict(lengths=np.array([1.0, 2, 3, 4])), TypeError, r"lengths must be an integer array.*got dtype float"),
        (dict(lengths=np.array([True] * 4)), TypeError, r"lengths must be an integer array.*got dtype bool"),
        (dict(lengths=np.array([1, 8, 3, -1])), ValueError, r"lengths must lie in 0\.\.T = 0\.\.7; rows \[1, 3\] have \[8, -1\]"),
        (dict(resets=np.zeros((4, 7), bool)), ValueError, r"resets must have shape \(T, batch\) = \(7, 4\).*got \(4, 7\)"),
        (dict(resets=np.zeros((7, 4), int)), TypeError, r"resets must be a bool array.*got dtype int"),
        (dict(checkpoint=0), ValueError, r"checkpoint must be > 0; got 0"),
        (dict(checkpoint=-3), ValueError, r"checkpoint must be > 0; got -3"),
        (dict(checkpoint=2.5), TypeError, r"checkpoint must be an int"),
        (dict(scan="fast"), ValueError, r"scan must be one of \('auto', 'sequential', 'parallel'\); got 'fast'"),
        (dict(scan="parallel"), ValueError, r"jaxrnn.lstm has no parallel scan"),
        # (7, 4, 3) read batch-major is batch 7: the (4, 5) carry no longer fits.
        (dict(time_major=False), ValueError, r"carry.h must be \(batch, hidden\) = \(7, 5\)"),
    ],
    ids=["lengths_batch", "lengths_float", "lengths_bool", "lengths_range", "resets_shape", "resets_dtype",
         "checkpoint_zero", "checkpoint_negative", "checkpoint_float", "scan_unknown", "scan_parallel",
         "batch_major_shape"],
)
def test_bad_options_raise_clear_errors(options, error, match):
    with pytest.raises(error, match=match):
        _call(**options)


def test_errors_are_raised_at_trace_time():
    params, xs, carry, _, _ = problem(jaxrnn.lstm)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (params, xs, carry))
    with pytest.raises(ValueError, match=r"lengths must have shape"):
        jax.eval_shape(lambda p, x, c: jaxrnn.unroll(jaxrnn.lstm, p, x, c, lengths=jnp.zeros(3, int)), *abstract)
    with pytest.raises(ValueError, match=r"resets must have shape"):
        jax.eval_shape(lambda p, x, c: jaxrnn.unroll(jaxrnn.lstm, p, x, c, resets=jnp.zeros((2, 2), bool)), *abstract)


def test_traced_lengths_out_of_range_poison_their_rows():
    params, xs, carry, _, _ = problem(jaxrnn.lstm)
    run = jax.jit(lambda lengths: jaxrnn.unroll(jaxrnn.lstm, params, xs, carry, lengths=lengths))
    final, hs = run(jnp.array([2, 9, 7, -1]))
    bad = np.array([False, True, False, True])
    assert np.all(np.isnan(np.asarray(hs)[:, bad])) and np.all(np.isnan(np.asarray(final.h)[bad]))
    assert np.all(np.isfinite(np.asarray(hs)[:, ~bad])) and np.all(np.isfinite(np.asarray(final.c)[~bad]))
