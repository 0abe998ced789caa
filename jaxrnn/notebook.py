"""The seed notebooks' API, computed with JAX.

The seed notebooks are the five numpy notebooks of a deep-learning course that
jaxrnn started from: they build an RNN and an LSTM step by step, the forward
and backward pass of one cell and then of a sequence, by hand. This module
keeps their API and fixes their bugs (below).

The eight functions keep the notebooks' names, argument order, return tuples,
parameter keys and column layout: inputs ``x`` are (n_x, m, T_x), states are
(n_a, m), predictions (n_y, m); ``m`` is the batch. They are jit-able, and the
sequence functions run a ``lax.scan``.

Fixed here and not in the seeds:

* ``lstm_backward`` sums the weight gradients over time and passes
  ``da_prev``/``dc_prev`` back to the previous step (the seeds' LSTM
  backward overwrote the sums and dropped both);
* ``lstm_cell_forward`` predicts ``softmax(Wy a_next + by)`` (the seeds'
  LSTM forward used ``softmax(a_next)``);
* the softmax is taken per column with that column's max subtracted (the
  seeds subtracted the max of the whole array, so spread-out logits
  under- or overflowed).

Caches are NamedTuples, so they index like the seeds' tuples. A sequence's
``caches`` is ``(cache, x)``, where ``cache`` is the cell cache with every
array stacked along a last time axis (T_x) and ``parameters`` kept once.

Parameters::

    RNN:  Wax (n_a, n_x), Waa (n_a, n_a), Wya (n_y, n_a), ba (n_a, 1), by (n_y, 1)
    LSTM: Wf, Wi, Wc, Wo (n_a, n_a + n_x), acting on [a_prev; xt];
          bf, bi, bc, bo (n_a, 1), Wy (n_y, n_a), by (n_y, 1)

Arrays follow JAX's dtype rules: float32 unless x64 is enabled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _checks
from jaxrnn._cells import lstm_state, lstm_state_vjp

__all__ = [
    "MissingParameterError",
    "RNNCache",
    "LSTMCache",
    "softmax",
    "rnn_cell_forward",
    "rnn_forward",
    "rnn_cell_backward",
    "rnn_backward",
    "lstm_cell_forward",
    "lstm_forward",
    "lstm_cell_backward",
    "lstm_backward",
]

_LSTM_GATES = ("f", "i", "c", "o")


class MissingParameterError(KeyError, ValueError):
    """A parameter dict lacks a key. Both a ``KeyError`` and a ``ValueError``."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class RNNCache(NamedTuple):
    """``rnn_cell_forward``'s cache, the seeds' ``(a_next, a_prev, xt, parameters)``."""

    a_next: Array
    a_prev: Array
    xt: Array
    parameters: Any


class LSTMCache(NamedTuple):
    """``lstm_cell_forward``'s cache, the seeds' 10-tuple.

    ``ft, it, ot`` are the forget, update and output gates, ``cct`` the
    candidate c̃; each (n_a, m).
    """

    a_next: Array
    c_next: Array
    a_prev: Array
    c_prev: Array
    ft: Array
    it: Array
    cct: Array
    ot: Array
    xt: Array
    parameters: Any


def softmax(z: Array) -> Array:
    """Softmax over each column (axis 0), stable for spread-out logits."""
    return jax.nn.softmax(z, axis=0)


# --------------------------------------------------------------------------
# Checks.

# Each parameter's shape, in the sizes n_x (inputs), n_a (state), n_y (predictions).
_RNN_SHAPES = {"Wax": ("n_a", "n_x"), "Waa": ("n_a", "n_a"), "Wya": ("n_y", "n_a"), "ba": ("n_a", 1), "by": ("n_y", 1)}
_LSTM_SHAPES = {
    **{key: shape for g in _LSTM_GATES for key, shape in ((f"W{g}", ("n_a", "n_a + n_x")), (f"b{g}", ("n_a", 1)))},
    "Wy": ("n_y", "n_a"),
    "by": ("n_y", 1),
}


def _parameters(parameters: Any, keys, where: str) -> dict[str, Array]:
    if not isinstance(parameters, Mapping):
        raise TypeError(f"{where}: parameters must be a dict with keys {list(keys)}; got {type(parameters).__name__}.")
    missing = [key for key in keys if key not in parameters]
    if missing:
        raise MissingParameterError(
            f"{where}: parameters lack {missing}; it needs {list(keys)} and has {sorted(parameters)}."
        )
    return {key: _checks.floating_array(parameters[key], f"parameters[{key!r}]", where) for key in keys}


def _arguments(where: str, x, sequence: bool, states: dict[str, Any], parameters, shapes: dict[str, tuple]):
    """Checks a forward call; returns ``(x, *states, p)`` as arrays.

    ``x`` is (n_x, m) or, if ``sequence``, (n_x, m, T_x); every state is
    (n_a, m); each parameter has its shape in ``shapes``. Mismatches raise
    ``ValueError`` naming the expected and received shapes.
    """
    p = _parameters(parameters, tuple(shapes), where)
    x_name, layout = ("x", "(n_x, m, T_x)") if sequence else ("xt", "(n_x, m)")
    x = _checks.floating_array(x, x_name, where)
    if x.ndim != layout.count(",") + 1:
        raise ValueError(f"{where}: {x_name} must be {layout}; got shape {x.shape}.")
    arrays = [_checks.floating_array(value, name, where) for name, value in states.items()]
    if arrays[0].ndim != 2:
        raise ValueError(f"{where}: {next(iter(states))} must be 2-D, (n_a, m); got shape {arrays[0].shape}.")
    (n_x, m), n_a = x.shape[:2], arrays[0].shape[0]
    output = next(key for key in shapes if shapes[key] == ("n_y", "n_a"))
    sizes = {"n_x": n_x, "n_a": n_a, "n_y": p[output].shape[0], "n_a + n_x": n_a + n_x, 1: 1}
    expected = {name: (("n_a", "m"), (n_a, m), array) for name, array in zip(states, arrays)}
    for key, formula in shapes.items():
        expected[f"parameters[{key!r}]"] = (formula, tuple(sizes[s] for s in formula), p[key])
    for name, (formula, shape, array) in expected.items():
        if array.shape != shape:
            pretty = "(" + ", ".join(map(str, formula)) + ")"
            raise ValueError(
                f"{where}: {name} must have shape {pretty} = {shape}, from the other arguments' shapes; "
                f"got {array.shape}."
            )
    return (x, *arrays, p)


def _upstream(d: Any, like: Array, name: str, where: str) -> Array:
    d = _checks.floating_array(d, name, where)
    if d.shape != like.shape:
        raise ValueError(
            f"{where}: {name} must have the shape of the states it is the gradient of, {like.shape}; got {d.shape}."
        )
    return d


# --------------------------------------------------------------------------
# Forward.


def _rnn_cell(xt, a_prev, p):
    a_next = jnp.tanh(p["Waa"] @ a_prev + p["Wax"] @ xt + p["ba"])
    return a_next, softmax(p["Wya"] @ a_next + p["by"]), RNNCache(a_next, a_prev, xt, p)


def rnn_cell_forward(xt: Array, a_prev: Array, parameters: Mapping[str, Array]) -> tuple[Array, Array, RNNCache]:
    """One RNN step: ``a_next = tanh(Waa a_prev + Wax xt + ba)``, ``yt_pred = softmax(Wya a_next + by)``.

    Args:
        xt: input at step t, (n_x, m).
        a_prev: hidden state at step t-1, (n_a, m).
        parameters: dict with Wax, Waa, Wya, ba, by.

    Returns:
        ``(a_next (n_a, m), yt_pred (n_y, m), cache)``, cache an :class:`RNNCache`.
    """
    return _rnn_cell(*_arguments("rnn_cell_forward", xt, False, {"a_prev": a_prev}, parameters, _RNN_SHAPES))


def _lstm_cell(xt, a_prev, c_prev, p):
    concat = jnp.concatenate([a_prev, xt], axis=0)
    ft, it, ot = (jax.nn.sigmoid(p[f"W{g}"] @ concat + p[f"b{g}"]) for g in "fio")
    cct = jnp.tanh(p["Wc"] @ concat + p["bc"])
    a_next, c_next, _ = lstm_state(it, ft, cct, ot, c_prev)
    yt_pred = softmax(p["Wy"] @ a_next + p["by"])
    return a_next, c_next, yt_pred, LSTMCache(a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, p)


def lstm_cell_forward(
    xt: Array, a_prev: Array, c_prev: Array, parameters: Mapping[str, Array]
) -> tuple[Array, Array, Array, LSTMCache]:
    """One LSTM step on ``concat = [a_prev; xt]`` ((n_a + n_x), m)::

        ft = σ(Wf concat + bf)   it = σ(Wi concat + bi)   ot = σ(Wo concat + bo)
        cct = tanh(Wc concat + bc)
        c_next = ft * c_prev + it * cct
        a_next = ot * tanh(c_next)
        yt_pred = softmax(Wy a_next + by)

    Args:
        xt: (n_x, m). a_prev, c_prev: (n_a, m).
        parameters: dict with Wf, bf, Wi, bi, Wc, bc, Wo, bo, Wy, by.

    Returns:
        ``(a_next, c_next, yt_pred, cache)``, cache an :class:`LSTMCache`.
    """
    return _lstm_cell(
        *_arguments("lstm_cell_forward", xt, False, {"a_prev": a_prev, "c_prev": c_prev}, parameters, _LSTM_SHAPES)
    )


def _time_last(tree):
    return jax.tree.map(lambda a: jnp.moveaxis(a, 0, -1), tree)


def _time_first(tree):  # the notebooks keep time last; scan wants it first
    return jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0), tree)


def _scan_cell(cell, carry, x, p):
    """Scans ``cell(xt, *carry, p)`` over x's last axis; returns ``(y, cache)`` stacked time-last."""

    def body(carry, xt):
        *state, yt, cache = cell(xt, *carry, p)
        return tuple(state), (yt, cache._replace(parameters=None))

    _, (y, cache) = jax.lax.scan(body, carry, _time_first(x))
    return _time_last(y), _time_last(cache)._replace(parameters=p)


def rnn_forward(
    x: Array, a0: Array, parameters: Mapping[str, Array]
) -> tuple[Array, Array, tuple[RNNCache, Array]]:
    """The RNN over a sequence.

    Args:
        x: inputs, (n_x, m, T_x).
        a0: initial hidden state, (n_a, m).
        parameters: as in :func:`rnn_cell_forward`.

    Returns:
        ``(a (n_a, m, T_x), y_pred (n_y, m, T_x), caches)``, caches ``(cache, x)``.
    """
    x, a0, p = _arguments("rnn_forward", x, True, {"a0": a0}, parameters, _RNN_SHAPES)
    y_pred, cache = _scan_cell(_rnn_cell, (a0,), x, p)
    return cache.a_next, y_pred, (cache, x)


def lstm_forward(
    x: Array, a0: Array, parameters: Mapping[str, Array]
) -> tuple[Array, Array, Array, tuple[LSTMCache, Array]]:
    """The LSTM over a sequence, from ``a0`` and a zero cell state.

    Args:
        x: inputs, (n_x, m, T_x).
        a0: initial hidden state, (n_a, m).
        parameters: as in :func:`lstm_cell_forward`.

    Returns:
        ``(a, y, c, caches)``: hidden states (n_a, m, T_x), predictions
        (n_y, m, T_x), cell states (n_a, m, T_x), and ``(cache, x)``.
    """
    x, a0, p = _arguments("lstm_forward", x, True, {"a0": a0}, parameters, _LSTM_SHAPES)
    y, cache = _scan_cell(_lstm_cell, (a0, jnp.zeros_like(a0)), x, p)
    return cache.a_next, y, cache.c_next, (cache, x)


# --------------------------------------------------------------------------
# Backward.


def _rnn_cell_backward(da_next, cache: RNNCache):
    p = cache.parameters
    dtanh = (1 - cache.a_next**2) * da_next
    return {
        "dxt": p["Wax"].T @ dtanh,
        "da_prev": p["Waa"].T @ dtanh,
        "dWax": dtanh @ cache.xt.T,
        "dWaa": dtanh @ cache.a_prev.T,
        "dba": dtanh.sum(axis=1, keepdims=True),
    }


def rnn_cell_backward(da_next: Array, cache: RNNCache) -> dict[str, Array]:
    """Backward of :func:`rnn_cell_forward`'s ``a_next`` for its gradient ``da_next`` (n_a, m).

    Returns:
        dict with dxt (n_x, m), da_prev (n_a, m), dWax, dWaa, dba (n_a, 1).
    """
    cache = RNNCache(*cache)
    return _rnn_cell_backward(_upstream(da_next, cache.a_next, "da_next", "rnn_cell_backward"), cache)


def _lstm_cell_backward(da_next, dc_next, cache: LSTMCache):
    p = cache.parameters
    n_a = cache.a_prev.shape[0]
    (dit, dft, dcct, dot), dc_prev = lstm_state_vjp(
        da_next, dc_next, cache.it, cache.ft, cache.cct, cache.ot, cache.c_prev, jnp.tanh(cache.c_next)
    )
    concat = jnp.concatenate([cache.a_prev, cache.xt], axis=0)
    d_pre = {"f": dft, "i": dit, "c": dcct, "o": dot}
    d_concat = sum(p[f"W{g}"].T @ d_pre[g] for g in _LSTM_GATES)
    gradients = {"dxt": d_concat[n_a:], "da_prev": d_concat[:n_a], "dc_prev": dc_prev}
    for g in _LSTM_GATES:
        gradients[f"dW{g}"] = d_pre[g] @ concat.T
        gradients[f"db{g}"] = d_pre[g].sum(axis=1, keepdims=True)
    return gradients


def lstm_cell_backward(da_next: Array, dc_next: Array, cache: LSTMCache) -> dict[str, Array]:
    """Backward of :func:`lstm_cell_forward`'s ``(a_next, c_next)``.

    Args:
        da_next, dc_next: gradients of ``a_next`` and ``c_next``, (n_a, m).
        cache: the step's :class:`LSTMCache`.

    Returns:
        dict with dxt (n_x, m), da_prev, dc_prev (n_a, m), and dWf, dbf,
        dWi, dbi, dWc, dbc, dWo, dbo shaped like their parameters.
    """
    where = "lstm_cell_backward"
    cache = LSTMCache(*cache)
    da_next = _upstream(da_next, cache.a_next, "da_next", where)
    dc_next = _upstream(dc_next, cache.c_next, "dc_next", where)
    return _lstm_cell_backward(da_next, dc_next, cache)


def _sequence_backward(cell_backward: Callable, da, cache, state_keys, zeros_like_weights):
    """Reverse scan of ``cell_backward`` over time, summing weight gradients.

    The carry holds the gradients flowing to the previous step (``state_keys``,
    each starting at zero) and the running weight sums; ``da[..., t]`` adds to
    the hidden state's gradient.
    """
    n_a, m, _ = da.shape
    states = tuple(jnp.zeros((n_a, m), da.dtype) for _ in state_keys)

    def body(carry, step):
        (da_prev, *rest), sums = carry
        da_t, cache_t = step
        grads = cell_backward(da_t + da_prev, *rest, cache_t._replace(parameters=cache.parameters))
        sums = {k: sums[k] + grads[k] for k in sums}
        return (tuple(grads[k] for k in state_keys), sums), grads["dxt"]

    steps = _time_first((da, cache._replace(parameters=None)))
    ((da0, *_), sums), dx = jax.lax.scan(body, (states, zeros_like_weights), steps, reverse=True)
    # In the seeds' key order (scan returns dicts sorted).
    return {"dx": _time_last(dx), "da0": da0, **{k: sums[k] for k in zeros_like_weights}}


def rnn_backward(da: Array, caches: tuple[RNNCache, Array]) -> dict[str, Array]:
    """Backward of :func:`rnn_forward` for the gradient ``da`` (n_a, m, T_x) of all hidden states.

    Returns:
        dict with dx (n_x, m, T_x), da0 (n_a, m), dWax, dWaa, dba, summed over time.
    """
    cache, _ = caches
    cache = RNNCache(*cache)
    da = _upstream(da, cache.a_next, "da", "rnn_backward")
    p = cache.parameters
    zeros = {"dWax": jnp.zeros_like(p["Wax"]), "dWaa": jnp.zeros_like(p["Waa"]), "dba": jnp.zeros_like(p["ba"])}
    return _sequence_backward(_rnn_cell_backward, da, cache, ("da_prev",), zeros)


def lstm_backward(da: Array, caches: tuple[LSTMCache, Array]) -> dict[str, Array]:
    """Backward of :func:`lstm_forward` for the gradient ``da`` (n_a, m, T_x) of all hidden states.

    Returns:
        dict with dx (n_x, m, T_x), da0 (n_a, m), and dWf, dbf, dWi, dbi, dWc,
        dbc, dWo, dbo summed over time.
    """
    cache, _ = caches
    cache = LSTMCache(*cache)
    da = _upstream(da, cache.a_next, "da", "lstm_backward")
    p = cache.parameters
    zeros = {f"{d}{g}": jnp.zeros_like(p[f"{d[1]}{g}"]) for g in _LSTM_GATES for d in ("dW", "db")}
    return _sequence_backward(_lstm_cell_backward, da, cache, ("da_prev", "dc_prev"), zeros)
