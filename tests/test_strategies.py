"""The hand-written BPTT's backward strategies: each computes the same values, and the rule that picks one.

The engine lays out its two scans per sequence (``jaxrnn.backward_strategy``):
unrolled with stacked residuals for short sequences, a loop over one in-place
buffer otherwise. Here every strategy is forced on every cell with a
hand-written backward pass, with every sequence option, and checked against
an independent step-by-step reference (values) and JAX's autodiff (gradients,
float64, 1e-10 relative).
"""

import functools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import _bptt, _gated

T, B, X, H = 9, 4, 3, 6  # T > UNROLL_MAX_STEPS: the automatic choice alone would loop in place
LENGTHS = np.array([0, 9, 4, 6])
STRATEGIES = [_bptt.Strategy(unrolled=False), _bptt.Strategy(unrolled=True)]
by_strategy = pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.name)
MANUAL_CELLS = list(jaxrnn.cells(manual=True))


@pytest.fixture
def forced(monkeypatch):
    """Makes the engine use one strategy for every sequence, whatever its length."""

    def force(strategy):
        monkeypatch.setattr(_bptt, "strategy_for", lambda steps: strategy)

    return force


def problem(cell, seed=0, batch=B, **init_options):
    rng = np.random.default_rng(seed)
    params = cell.init(jax.random.key(seed), X, H, dtype=jnp.float64, **init_options)
    params = jax.tree.map(lambda p: p + 0.2 * jnp.asarray(rng.normal(size=p.shape)), params)  # nonzero biases
    xs = jnp.asarray(rng.normal(size=(T, batch, X)))
    carry = jax.tree.map(lambda z: jnp.asarray(rng.normal(size=z.shape)),
                         cell.initial_carry(batch, H, dtype=jnp.float64))
    resets = rng.random((T, batch)) < 0.3
    weights = jnp.asarray(rng.normal(size=(T, batch, cell.hidden(carry).shape[-1])))  # the output's size
    return params, xs, carry, resets, weights


def reference(cell, params, xs, carry, lengths, reverse, resets):
    """Row by row, step by step, in Python: the semantics ``unroll`` documents."""
    finals, rows = [], []
    for b in range(B):
        row = jax.tree.map(lambda a: a[b : b + 1], carry)
        start, hs = row, [jnp.zeros((1, cell.hidden(carry).shape[-1]))] * T
        steps = range(int(lengths[b]))
        for t in reversed(steps) if reverse else steps:
            if resets[t, b]:
                row = start
            row, h = cell.step(params, row, xs[t, b : b + 1])
            hs[t] = h
        finals.append(row)
        rows.append(jnp.concatenate(hs))
    return jax.tree.map(lambda *a: jnp.concatenate(a), *finals), jnp.stack(rows, axis=1)


def gradients(cell, params, xs, carry, weights, grad, **options):
    def loss(params, xs, carry):
        final, hs = jaxrnn.unroll(cell, params, xs, carry, grad=grad, scan="sequential", **options)
        hs_t = hs if options.get("time_major", True) else jnp.swapaxes(hs, 0, 1)
        value = jnp.sum(jnp.sin(hs_t) * weights) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(final))
        return value, (final, hs_t)

    (_, outputs), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(params, xs, carry)
    return outputs, grads


def assert_close(actual, expected, rtol):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        scale = max(float(jnp.max(jnp.abs(e))), 1e-300)
        assert float(jnp.max(jnp.abs(a - e))) <= rtol * scale


@functools.cache
def expected(name):
    """The reference's outputs and autodiff's gradients, once per cell."""
    cell = jaxrnn.get_cell(name)
    params, xs, carry, resets, weights = problem(cell)
    _, grads = gradients(cell, params, xs, carry, weights, "autodiff", lengths=LENGTHS, resets=resets, reverse=True)
    return reference(cell, params, xs, carry, LENGTHS, True, resets), grads


@pytest.mark.sweep(fast=("lstm-unrolled",))
@by_strategy
@pytest.mark.parametrize("name", MANUAL_CELLS)
def test_every_strategy_matches_the_reference_and_autodiff(forced, strategy, name):
    cell = jaxrnn.get_cell(name)
    params, xs, carry, resets, weights = problem(cell)
    expected_outputs, expected_grads = expected(name)
    forced(strategy)
    outputs, grads = gradients(cell, params, xs, carry, weights, "manual", lengths=LENGTHS, resets=resets, reverse=True)
    assert_close(outputs, expected_outputs, 1e-12)
    assert_close(grads, expected_grads, 1e-10)


@pytest.mark.sweep
@by_strategy
@pytest.mark.parametrize("options", [dict(checkpoint=4), dict(time_major=False)], ids=["checkpoint", "batch_major"])
def test_every_strategy_with_checkpointing_and_batch_major(forced, strategy, options):
    cell = jaxrnn.lstm
    params, xs, carry, resets, weights = problem(cell, seed=1)
    options = dict(options, lengths=LENGTHS, resets=resets)
    if options.get("time_major") is False:
        xs = jnp.swapaxes(xs, 0, 1)
    _, expected = gradients(cell, params, xs, carry, weights, "autodiff", **options)
    forced(strategy)
    _, grads = gradients(cell, params, xs, carry, weights, "manual", **options)
    assert_close(grads, expected, 1e-10)


def _scan_unrolls(cell, steps, **options):
    """The ``unroll`` of every scan in the manual gradient's jaxpr (forward and backward)."""
    params = cell.init(jax.random.key(0), X, H)
    xs = jnp.ones((steps, B, X), jnp.float32)
    jaxpr = jax.make_jaxpr(jax.grad(lambda p: jnp.sum(jaxrnn.unroll(cell, p, xs, **options)[1])))(params)
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "scan":
                found.append(eqn.params["unroll"])
            for value in eqn.params.values():  # the sub-jaxprs (jax.extend.core.jaxprs_in_params from jax 0.10)
                for sub in value if isinstance(value, tuple | list) else (value,):
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        walk(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        walk(sub)

    walk(jaxpr.jaxpr)
    return found


def test_the_rule_is_what_unroll_runs():
    """Short sequences unroll both scans fully; longer ones loop one step per iteration."""
    short, long = _bptt.UNROLL_MAX_STEPS, _bptt.UNROLL_MAX_STEPS + 1
    assert jaxrnn.backward_strategy(jaxrnn.lstm, short) == "unrolled"
    assert jaxrnn.backward_strategy(jaxrnn.lstm, long) == "in_place"
    assert set(_scan_unrolls(jaxrnn.lstm, short)) == {short}
    assert set(_scan_unrolls(jaxrnn.lstm, long)) == {1}
    # With checkpointing, the chunk's length decides.
    assert jaxrnn.backward_strategy(jaxrnn.gru, 1000, checkpoint=_bptt.UNROLL_MAX_STEPS) == "unrolled"
    assert jaxrnn.backward_strategy(jaxrnn.gru, 1000, checkpoint=_bptt.UNROLL_MAX_STEPS + 1) == "in_place"


def test_backward_strategy_names_the_other_paths_and_refuses_what_unroll_refuses():
    assert jaxrnn.backward_strategy(jaxrnn.mingru, 100) == "parallel"
    assert jaxrnn.backward_strategy(jaxrnn.mingru, 100, scan="sequential") == "in_place"
    assert jaxrnn.backward_strategy(jaxrnn.lstm, 100, grad="autodiff") == "autodiff"
    with pytest.raises(ValueError, match="steps must be ≥ 0.*got -1"):
        jaxrnn.backward_strategy(jaxrnn.lstm, -1)
    with pytest.raises(TypeError, match="steps must be an int.*got float 8.0"):
        jaxrnn.backward_strategy(jaxrnn.lstm, 8.0)
    with pytest.raises(ValueError, match="checkpoint applies to sequential scans"):
        jaxrnn.backward_strategy(jaxrnn.mingru, 100, checkpoint=10)
    with pytest.raises(ValueError, match="grad must be one of"):
        jaxrnn.backward_strategy(jaxrnn.lstm, 100, grad="fast")
    with pytest.raises(TypeError, match="cell must be a jaxrnn.Cell"):
        jaxrnn.backward_strategy("lstm", 100)


GATED_CELLS = [name for name in MANUAL_CELLS if isinstance(jaxrnn.get_cell(name), jaxrnn.GatedCell)]


@pytest.mark.sweep(fast=("gru",))
@pytest.mark.parametrize("name", [*GATED_CELLS, "projected_lstm"])
def test_bias_sum_folded_or_apart_matches_autodiff(monkeypatch, name):
    """``dW_hh`` and the bias's sum from one product ``[h_prev, 1]ᵀ dz``, or from a product and a sum."""
    cell = jaxrnn.get_cell(name)
    params, xs, carry, _, weights = problem(cell, seed=3)
    _, expected = gradients(cell, params, xs, carry, weights, "autodiff")
    for width in (0, 10**6):  # 0: always apart; 10**6: always folded
        monkeypatch.setattr(_gated, "FOLDED_BIAS_MAX_WIDTH", width)
        _, grads = gradients(cell, params, xs, carry, weights, "manual")
        assert_close(grads, expected, 1e-10)


@pytest.mark.sweep(fast=("lstm-1-1-in_place", "gru-2-1-unrolled"))
@by_strategy
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("name", GATED_CELLS)
def test_one_or_two_rows_dense_or_headed_match_autodiff(forced, strategy, batch, heads, name):
    """A batch of one row (vector-matrix products) and of two, with a dense and a block-diagonal W_hh."""
    cell = jaxrnn.get_cell(name)
    params, xs, carry, _, weights = problem(cell, seed=2, batch=batch, num_heads=heads)
    _, expected_grads = gradients(cell, params, xs, carry, weights, "autodiff")
    forced(strategy)
    _, grads = gradients(cell, params, xs, carry, weights, "manual")
    assert_close(grads, expected_grads, 1e-10)
