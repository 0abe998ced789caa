"""The numpy notebook baseline: its outputs equal jaxrnn's, and its gradient equals finite differences."""

import numpy as np
import pytest

from jaxrnn.bench._jaxrnn import AUTODIFF
from jaxrnn.bench._numpy import NUMPY
from jaxrnn.bench._problem import Gradients, Problem, make_data

CELLS = ("lstm", "simple_rnn")
SHAPES = ((3, 4, 5, 6), (3, 4, 5, 1))  # B, X, H, T; T 1 has no step-to-step gradient


def assert_close(actual, expected, rtol, name):
    """Equal shapes, and every entry within ``rtol`` of the largest magnitude of ``expected``.

    Where ``expected`` is all zero (w_hh's gradient at T 1, from a zero state)
    the bound is absolute.
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape}, expected {expected.shape}"
    scale = np.max(np.abs(expected)) or 1.0
    error = np.max(np.abs(actual - expected)) / scale
    assert error <= rtol, f"{name}: relative error {error:.3g} > {rtol:g}"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}X{}H{}T{}".format(*s))
@pytest.mark.parametrize("cell", CELLS)
def test_outputs_equal_jaxrnn(cell, shape):
    problem = Problem(cell, *shape)
    data = make_data(problem, dtype=np.float64)
    hs, gradients = NUMPY.prepare(problem, data).outputs()
    hs_ref, gradients_ref = AUTODIFF.prepare(problem, data).outputs()
    assert hs.dtype == np.float64
    assert_close(hs, hs_ref, 1e-10, "hs")
    for name, actual, expected in zip(Gradients._fields, gradients, gradients_ref):
        assert actual.dtype == np.float64, name
        assert_close(actual, expected, 1e-10, name)


def loss(problem, data):
    hs = NUMPY.prepare(problem, data).forward()
    return float(np.sum(hs * data.dy))


# (array, index): entries in different gate blocks, so a swapped block shows.
ENTRIES = {
    "lstm": (("w_hh", (2, 5 + 3)), ("w_ih", (1, 3 * 5 + 4)), ("b_hh", (2 * 5 + 1,))),  # f, o, g blocks
    "simple_rnn": (("w_hh", (2, 3)), ("w_ih", (1, 4)), ("b_ih", (0,))),
}


@pytest.mark.parametrize("cell", CELLS)
def test_gradient_equals_finite_differences(cell):
    problem = Problem(cell, 3, 4, 5, 6)
    data = make_data(problem, dtype=np.float64)
    _, gradients = NUMPY.prepare(problem, data).outputs()
    eps = 1e-6
    for name, index in ENTRIES[cell]:
        shifted = []
        for step in (eps, -eps):
            array = getattr(data, name).copy()
            array[index] += step
            shifted.append(loss(problem, data._replace(**{name: array})))
        numeric = (shifted[0] - shifted[1]) / (2 * eps)
        analytic = getattr(gradients, name)[index]
        assert abs(analytic) > 1e-3, f"{name}{index}: gradient too small to test"
        assert analytic == pytest.approx(numeric, rel=1e-6), f"{name}{index}"


@pytest.mark.parametrize("cell", CELLS)
def test_forward_and_gradient_run_in_the_data_dtype(cell):
    problem = Problem(cell, 3, 4, 5, 6)
    data = make_data(problem)  # float32, as the suite times
    prepared = NUMPY.prepare(problem, data)
    assert prepared.gradient() is None
    hs = prepared.forward()
    hs_out, gradients = prepared.outputs()
    assert hs.shape == (6, 3, 5) and hs.dtype == np.float32
    np.testing.assert_array_equal(hs, hs_out)
    for name, array in zip(Gradients._fields, gradients):
        assert array.shape == getattr(data, name).shape, name
        assert array.dtype == np.float32, name
    assert prepared.compile_s is None and prepared.temp_bytes is None


def test_implementation():
    assert NUMPY.name == "numpy notebook"
    assert set(NUMPY.cells) == set(CELLS)
    assert NUMPY.missing() is None
