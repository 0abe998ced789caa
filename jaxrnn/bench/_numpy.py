"""The numpy notebook loop: the seed notebooks' algorithm, corrected, as a baseline.

This is how the project started: a cell forward that returns the new state
and a cache, a Python loop over time that collects the caches, a cell
backward, and a reverse Python loop that sums the weight gradients and passes
``da_prev`` (and ``dc_prev``) to the step before. It keeps the notebooks'
names, their column layout and their parameter dicts::

    x: (n_x, m, T_x)    states a, c: (n_a, m)    m is the batch
    RNN:  Wax (n_a, n_x), Waa (n_a, n_a), ba (n_a, 1)
    LSTM: Wf, Wi, Wc, Wo (n_a, n_a + n_x), acting on [a_prev; xt];
          bf, bi, bc, bo (n_a, 1)

with the seeds' bugs fixed (see :mod:`jaxrnn.notebook`). There is no readout
(``Wy``, ``by``): the benchmark's loss is ``sum(hs * dy)``, so the gradient of
the hidden state at step t starts as ``dy[t]``.

Everything is computed in the data's dtype. The conversion from and to
jaxrnn's layout happens in ``prepare`` and ``outputs``, outside the timed calls.
"""

from __future__ import annotations

import numpy as np

from jaxrnn.bench._problem import Data, Gradients, Implementation, Prepared, Problem

# The notebook's LSTM gate letters in jaxrnn's (torch's) block order i, f, g, o.
_LSTM_BLOCKS = ("i", "f", "c", "o")


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``σ(x) = 1 / (1 + exp(-x))``, written with tanh so it never overflows."""
    return 0.5 * (1 + np.tanh(0.5 * x))


# --------------------------------------------------------------------------
# Cells.


def rnn_cell_forward(xt: np.ndarray, a_prev: np.ndarray, parameters: dict):
    """One RNN step: ``a_next = tanh(Waa a_prev + Wax xt + ba)``.

    Args:
        xt: input at step t, (n_x, m).
        a_prev: hidden state at step t-1, (n_a, m).
        parameters: dict with Wax (n_a, n_x), Waa (n_a, n_a), ba (n_a, 1).

    Returns:
        ``(a_next (n_a, m), cache)``, cache ``(a_next, a_prev, xt, parameters)``.
    """
    a_next = np.tanh(parameters["Waa"] @ a_prev + parameters["Wax"] @ xt + parameters["ba"])
    return a_next, (a_next, a_prev, xt, parameters)


def rnn_cell_backward(da_next: np.ndarray, cache: tuple) -> dict:
    """Backward of :func:`rnn_cell_forward` for the gradient ``da_next`` (n_a, m) of ``a_next``::

        dtanh = (1 - a_next²) * da_next
        dxt = Waxᵀ dtanh    da_prev = Waaᵀ dtanh
        dWax = dtanh xtᵀ    dWaa = dtanh a_prevᵀ    dba = Σ_m dtanh

    Returns:
        dict with dxt (n_x, m), da_prev (n_a, m), dWax, dWaa, dba shaped like
        their parameters.
    """
    a_next, a_prev, xt, parameters = cache
    dtanh = (1 - a_next**2) * da_next
    return {
        "dxt": parameters["Wax"].T @ dtanh,
        "da_prev": parameters["Waa"].T @ dtanh,
        "dWax": dtanh @ xt.T,
        "dWaa": dtanh @ a_prev.T,
        "dba": dtanh.sum(axis=1, keepdims=True),
    }


def lstm_cell_forward(xt: np.ndarray, a_prev: np.ndarray, c_prev: np.ndarray, parameters: dict):
    """One LSTM step on ``concat = [a_prev; xt]`` ((n_a + n_x), m)::

        ft = σ(Wf concat + bf)   it = σ(Wi concat + bi)   ot = σ(Wo concat + bo)
        cct = tanh(Wc concat + bc)
        c_next = ft * c_prev + it * cct
        a_next = ot * tanh(c_next)

    Args:
        xt: input at step t, (n_x, m).
        a_prev, c_prev: hidden and cell state at step t-1, (n_a, m).
        parameters: dict with Wf, Wi, Wc, Wo (n_a, n_a + n_x) and bf, bi, bc,
            bo (n_a, 1).

    Returns:
        ``(a_next, c_next, cache)``, both states (n_a, m), cache the seeds'
        ``(a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)``.
    """
    concat = np.concatenate((a_prev, xt), axis=0)
    ft = sigmoid(parameters["Wf"] @ concat + parameters["bf"])
    it = sigmoid(parameters["Wi"] @ concat + parameters["bi"])
    cct = np.tanh(parameters["Wc"] @ concat + parameters["bc"])
    ot = sigmoid(parameters["Wo"] @ concat + parameters["bo"])
    c_next = ft * c_prev + it * cct
    a_next = ot * np.tanh(c_next)
    return a_next, c_next, (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)


def lstm_cell_backward(da_next: np.ndarray, dc_next: np.ndarray, cache: tuple) -> dict:
    """Backward of :func:`lstm_cell_forward` for the gradients of ``(a_next, c_next)``, each (n_a, m)::

        dc = dc_next + da_next * ot * (1 - tanh²(c_next))     c_next's whole gradient
        dot = da_next * tanh(c_next) * ot (1 - ot)             at the pre-activations:
        dit = dc * cct * it (1 - it)    dft = dc * c_prev * ft (1 - ft)
        dcct = dc * it * (1 - cct²)
        dW· = d· concatᵀ    db· = Σ_m d·    [da_prev; dxt] = Σ_gates W·ᵀ d·
        dc_prev = dc * ft

    Returns:
        dict with dxt (n_x, m), da_prev, dc_prev (n_a, m), and dWf, dbf, dWi,
        dbi, dWc, dbc, dWo, dbo shaped like their parameters.
    """
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters = cache
    n_a = a_prev.shape[0]
    tanh_c = np.tanh(c_next)
    dc = dc_next + da_next * ot * (1 - tanh_c**2)  # shared by the f, i, c gates and dc_prev
    d = {
        "f": dc * c_prev * ft * (1 - ft),
        "i": dc * cct * it * (1 - it),
        "c": dc * it * (1 - cct**2),
        "o": da_next * tanh_c * ot * (1 - ot),
    }
    concat = np.concatenate((a_prev, xt), axis=0)  # recomputed: the seeds' cache lacks it
    dconcat = sum(parameters[f"W{g}"].T @ d[g] for g in d)
    gradients = {"dxt": dconcat[n_a:], "da_prev": dconcat[:n_a], "dc_prev": dc * ft}
    for g in d:
        gradients[f"dW{g}"] = d[g] @ concat.T
        gradients[f"db{g}"] = d[g].sum(axis=1, keepdims=True)
    return gradients


# --------------------------------------------------------------------------
# Sequences: the Python loops over time.


def _forward(cell_forward, x: np.ndarray, states: tuple, parameters: dict, keep_caches: bool):
    """Runs ``cell_forward(xt, *states, parameters)`` over x's last axis.

    Returns:
        ``(a (n_a, m, T_x), caches)``, caches ``(list of cell caches, x)``; the
        list is empty unless ``keep_caches`` (then each step's cache is freed
        as soon as the next step has run).
    """
    n_a, m = states[0].shape
    T_x = x.shape[2]
    a = np.empty((n_a, m, T_x), x.dtype)
    caches = []
    for t in range(T_x):
        *states, cache = cell_forward(x[:, :, t], *states, parameters)
        a[:, :, t] = states[0]
        if keep_caches:
            caches.append(cache)
    return a, (caches, x)


def rnn_forward(x: np.ndarray, a0: np.ndarray, parameters: dict, keep_caches: bool = True):
    """The RNN over a sequence.

    Args:
        x: inputs, (n_x, m, T_x).
        a0: initial hidden state, (n_a, m).
        parameters: as in :func:`rnn_cell_forward`.
        keep_caches: False for a forward pass alone.

    Returns:
        ``(a (n_a, m, T_x), caches)``, caches ``(list of cell caches, x)``.
    """
    return _forward(rnn_cell_forward, x, (a0,), parameters, keep_caches)


def lstm_forward(x: np.ndarray, a0: np.ndarray, parameters: dict, keep_caches: bool = True):
    """The LSTM over a sequence, from ``a0`` and a zero cell state.

    Args and Returns: as :func:`rnn_forward`, with ``parameters`` as in
    :func:`lstm_cell_forward`.
    """
    return _forward(lstm_cell_forward, x, (a0, np.zeros_like(a0)), parameters, keep_caches)


def _backward(cell_backward, da: np.ndarray, caches: tuple, state_keys: tuple[str, ...]) -> dict:
    """The reverse loop over time, summing weight gradients.

    ``state_keys`` names the gradients passed to the previous step (``da_prev``
    first); all start at zero, and ``da[:, :, t]`` adds to ``da_prev`` because
    ``a`` at step t feeds both the loss and step t+1.

    Returns:
        dict with dx (n_x, m, T_x), da0 (n_a, m), and ``d`` + each parameter's
        key, summed over time.
    """
    caches, x = caches
    parameters = caches[0][-1]
    n_a, m, T_x = da.shape
    dx = np.empty_like(x)
    d_states = [np.zeros((n_a, m), da.dtype) for _ in state_keys]
    sums = {f"d{key}": np.zeros_like(value) for key, value in parameters.items()}
    for t in reversed(range(T_x)):
        gradients = cell_backward(da[:, :, t] + d_states[0], *d_states[1:], caches[t])
        dx[:, :, t] = gradients["dxt"]
        for key in sums:  # accumulate (the seeds overwrote these)
            sums[key] += gradients[key]
        d_states = [gradients[key] for key in state_keys]  # (the seeds dropped these)
    return {"dx": dx, "da0": d_states[0], **sums}


def rnn_backward(da: np.ndarray, caches: tuple) -> dict:
    """Backward of :func:`rnn_forward` for the gradient ``da`` (n_a, m, T_x) of all hidden states.

    Returns:
        dict with dx (n_x, m, T_x), da0 (n_a, m), and dWax, dWaa, dba summed
        over time.
    """
    return _backward(rnn_cell_backward, da, caches, ("da_prev",))


def lstm_backward(da: np.ndarray, caches: tuple) -> dict:
    """Backward of :func:`lstm_forward` for the gradient ``da`` (n_a, m, T_x) of all hidden states.

    Returns:
        dict with dx (n_x, m, T_x), da0 (n_a, m), and dWf, dbf, dWi, dbi, dWc,
        dbc, dWo, dbo summed over time.
    """
    return _backward(lstm_cell_backward, da, caches, ("da_prev", "dc_prev"))


_SEQUENCES = {"simple_rnn": (rnn_forward, rnn_backward), "lstm": (lstm_forward, lstm_backward)}


# --------------------------------------------------------------------------
# Layout conversions, outside the timed calls.


def _parameters(cell: str, data: Data) -> dict:
    """jaxrnn's weights as the notebook's dict.

    jaxrnn computes ``x W_ih + h W_hh + b_ih + b_hh`` on rows; the notebook
    ``W [a_prev; xt] + b`` on columns, so each gate's ``W`` is
    ``[W_hh blockᵀ, W_ih blockᵀ]`` and its one bias is ``b_ih + b_hh``.
    """
    w_ih, w_hh, b_ih, b_hh = data.weights()
    b = b_ih + b_hh
    if cell == "simple_rnn":
        return {"Wax": w_ih.T.copy(), "Waa": w_hh.T.copy(), "ba": b[:, None]}
    h = w_hh.shape[0]
    parameters = {}
    for k, g in enumerate(_LSTM_BLOCKS):
        block = slice(k * h, (k + 1) * h)
        parameters[f"W{g}"] = np.concatenate((w_hh[:, block].T, w_ih[:, block].T), axis=1)
        parameters[f"b{g}"] = b[block, None]
    return parameters


def _gradients(cell: str, gradients: dict) -> Gradients:
    """The notebook's gradient dict in jaxrnn's layout; ``b`` is reported for both biases."""
    if cell == "simple_rnn":
        w_ih, w_hh, b = gradients["dWax"].T, gradients["dWaa"].T, gradients["dba"][:, 0]
    else:
        h = gradients["dWf"].shape[0]
        w_hh = np.concatenate([gradients[f"dW{g}"][:, :h].T for g in _LSTM_BLOCKS], axis=1)
        w_ih = np.concatenate([gradients[f"dW{g}"][:, h:].T for g in _LSTM_BLOCKS], axis=1)
        b = np.concatenate([gradients[f"db{g}"][:, 0] for g in _LSTM_BLOCKS])
    return Gradients(w_ih, w_hh, b, b.copy(), gradients["dx"].transpose(2, 1, 0))


def _prepare(problem: Problem, data: Data) -> Prepared:
    forward, backward = _SEQUENCES[problem.cell]
    parameters = _parameters(problem.cell, data)
    x = np.ascontiguousarray(data.xs.transpose(2, 1, 0))  # (T, B, X) -> (n_x, m, T_x)
    da = np.ascontiguousarray(data.dy.transpose(2, 1, 0))  # (T, B, H) -> (n_a, m, T_x)
    a0 = np.zeros((problem.hidden, problem.batch), data.xs.dtype)

    def gradient():
        _, caches = forward(x, a0, parameters)
        backward(da, caches)

    def outputs():
        a, caches = forward(x, a0, parameters)
        return a.transpose(2, 1, 0), _gradients(problem.cell, backward(da, caches))

    return Prepared(
        gradient=gradient,
        # A transposed view of a, (T, B, H) like the other implementations' hs, at no cost.
        forward=lambda: forward(x, a0, parameters, keep_caches=False)[0].transpose(2, 1, 0),
        outputs=outputs,
    )


def _unsupported(problem: Problem) -> str | None:
    return None if problem.dtype == "float32" else "the notebook loop is float32 (numpy has no bfloat16 matmul)"


NUMPY = Implementation(
    name="numpy notebook",
    cells=("lstm", "simple_rnn"),
    missing=lambda: None,
    prepare=_prepare,
    unsupported=_unsupported,
)
