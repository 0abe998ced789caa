"""Checks for cells: :func:`check_cell`, a gradient check for recurrences.

In the spirit of ``torch.autograd.gradcheck``, but over sequences: a cell's
hand-written BPTT is run through every sequence option of
:func:`jaxrnn.unroll` and compared, in float64, against JAX's autodiff of the
same scan and against central finite differences.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks
from jaxrnn._protocol import Cell, zero_carry
from jaxrnn._unroll import unroll

__all__ = ["OPTIONS", "check_cell", "relative_error"]

OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "reverse": {"reverse": True},
    "lengths": {"lengths": True},
    "resets": {"resets": True},
    "checkpoint": {"checkpoint": 2},
    "batch_major": {"time_major": False},
    "lengths+reverse+resets": {"lengths": True, "reverse": True, "resets": True},
    "checkpoint+lengths+batch_major": {"checkpoint": 3, "lengths": True, "time_major": False},
}
"""The sequence options :func:`check_cell` runs by default, by name. ``lengths``
and ``resets`` set to True mean "draw some"."""


def relative_error(a, b) -> float:
    """The largest, over the leaves of two pytrees, of ``max |a − b| / max |b|``, in float64.

    ``inf`` when the trees or a leaf's shape differ, or when either has a
    non-finite value the other does not share (so a NaN gradient never
    passes as agreement).
    """
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    if len(leaves_a) != len(leaves_b):
        return float("inf")
    worst = 0.0
    for x, y in zip(leaves_a, leaves_b):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape:
            return float("inf")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            if not np.array_equal(x, y, equal_nan=True):
                return float("inf")
            x, y = np.nan_to_num(x), np.nan_to_num(y)
        scale = max(float(np.max(np.abs(y), initial=0.0)), 1e-30)
        worst = max(worst, float(np.max(np.abs(x - y), initial=0.0) / scale))
    return worst


def check_cell(
    cell: Cell,
    params=None,
    *,
    input_size: int = 3,
    hidden_size: int = 4,
    batch: int = 3,
    steps: int = 7,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    rtol: float = 1e-9,
    fd_rtol: float = 1e-6,
    fd_eps: float = 1e-6,
    seed: int = 0,
    init_options: Mapping[str, Any] | None = None,
    low_precision: Any = jnp.bfloat16,
    low_rtol: float = 5e-2,
) -> dict[str, float]:
    """Checks ``cell``'s hand-written BPTT against autodiff and finite differences, in float64.

    For each entry of ``options`` (default :data:`OPTIONS`: plain, reverse,
    lengths, resets, checkpoint, batch-major and combinations), it draws
    inputs, an initial carry and weights on the outputs and the final carry,
    and differentiates ``loss = Σ hs ⊙ w + Σ carry ⊙ v`` with respect to every
    params field, ``xs`` and the initial carry:

    * with ``grad="manual"`` against ``grad="autodiff"``, each to ``rtol``
      (relative to the largest entry of autodiff's gradient);
    * with ``grad="manual"`` against central finite differences
      ``(L(θ + εd) − L(θ − εd)) / 2ε`` along a random direction ``d`` of each
      field, to ``fd_rtol``.

    The outputs and final carry of both modes must agree too. Float64 is
    switched on for the duration of the call only (``jax.enable_x64``).

    Then, for each option, mixed precision: params and inputs in
    ``low_precision`` (bfloat16 by default) with a float32 carry, in both grad
    modes, against the float32 run. The outputs must come back in the inputs'
    dtype and the carry in float32, and outputs, carry and every gradient must
    agree with float32's to ``low_rtol``: a 16-bit run rounds at every step,
    so this catches a broken cast or a dtype error, not a small slip (the
    float64 checks do that).

    Args:
        cell: the cell to check; it needs a hand-written backward
            (``cell.bptt``, or the ``sequence`` hook's own).
        params: its params (cast to float64), or None to draw them with
            ``cell.init`` plus noise of scale 0.1, so no bias is zero.
        input_size, hidden_size, batch, steps: the problem's sizes (ignored
            where ``params`` fix them).
        options: name -> keyword arguments of :func:`jaxrnn.unroll`, with
            ``lengths=True`` / ``resets=True`` meaning "draw some". Default
            :data:`OPTIONS`.
        rtol: tolerance against autodiff.
        fd_rtol: tolerance against finite differences.
        fd_eps: the finite-difference step ε.
        seed: fixes every draw.
        init_options: extra keyword arguments of ``cell.init``.
        low_precision: the 16-bit dtype of the mixed-precision check, or
            None to skip it.
        low_rtol: its tolerance against float32.

    Returns:
        ``{option name: worst relative error}``, the largest over the params
        fields, ``xs``, the carry and both references; with ``low_precision``
        also ``{"<option> (<its name>)": worst relative error against float32}``,
        e.g. ``"plain (bfloat16)"``. A cell with a
        whole-sequence ``sequence`` (a parallel scan) is checked on both paths:
        its step backward under each option's own name, its parallel one as
        ``"<option> (parallel)"`` (options without ``checkpoint``, which the
        parallel path does not take).

    Raises:
        AssertionError: naming the option and the argument (e.g.
            ``params.w_hh``) whose gradient disagrees, and by how much.
        ValueError: a cell without a hand-written backward pass.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"check_cell: cell must be a jaxrnn.Cell; got {type(cell).__name__}.")
    if cell.bptt is None and cell.sequence is None:
        raise ValueError(f"check_cell: {cell!r} has no hand-written backward pass (cell.bptt is None) to check.")
    runs = {}
    for name, given in (options or OPTIONS).items():
        if "scan" in given:
            runs[name] = dict(given)
            continue
        if cell.bptt is not None:  # the step protocol's backward, whatever scan="auto" would pick
            runs[name] = {**given, "scan": "sequential"}
        if cell.sequence is not None and given.get("checkpoint") is None:  # the whole-sequence path's backward
            runs[f"{name} (parallel)"] = {**given, "scan": "parallel"}
    if not runs:
        raise ValueError(
            f"check_cell: none of the options {list(options or OPTIONS)} applies to {cell!r}: its only backward is "
            "its parallel scan, which takes no checkpoint. Pass options without checkpoint."
        )
    with jax.enable_x64(True):
        return _check(cell, params, input_size, hidden_size, batch, steps, runs, rtol, fd_rtol, fd_eps, seed,
                      dict(init_options or {}), low_precision, low_rtol)


def _check(cell, params, input_size, hidden_size, batch, steps, options, rtol, fd_rtol, fd_eps, seed, init_options,
           low_precision, low_rtol):
    f64 = jnp.float64
    keys = (jax.random.fold_in(jax.random.key(seed), k) for k in itertools.count())
    if params is None:
        params = cell.init(next(keys), input_size, hidden_size, dtype=f64, **init_options)
        leaves, tree = jax.tree.flatten(params)
        noise_keys = jax.random.split(next(keys), len(leaves))
        noise = [0.1 * jax.random.normal(k, a.shape, f64) for k, a in zip(noise_keys, leaves)]
        params = jax.tree.unflatten(tree, [a + n for a, n in zip(leaves, noise)])
    params = jax.tree.map(lambda a: jnp.asarray(a, f64), params)
    _, input_size, sizes = _checks.params(cell, params, "check_cell")
    xs = jax.random.normal(next(keys), (steps, batch, input_size), f64)
    carry = jax.tree.map(lambda z: 0.5 * jax.random.normal(next(keys), z.shape, f64),
                         zero_carry(cell, batch, sizes, f64))
    w_hs = jax.random.normal(next(keys), (steps, batch, sizes[0]), f64)
    w_carry = jax.tree.map(lambda z: jax.random.normal(next(keys), z.shape, f64), carry)
    lengths = jax.random.randint(next(keys), (batch,), 0, steps + 1).at[0].set(steps)
    resets = jax.random.bernoulli(next(keys), 0.25, (steps, batch))

    args = (params, xs, carry)
    flat, tree = jax.tree.flatten(args)
    # One random direction per leaf; row k of the stack moves leaf k alone.
    unit = [jax.random.normal(jax.random.fold_in(jax.random.key(seed + 1), k), leaf.shape, f64)
            for k, leaf in enumerate(flat)]
    moves = [jnp.stack([unit[j] if j == k else jnp.zeros_like(leaf) for k in range(len(flat))])
             for j, leaf in enumerate(flat)]

    report = {}
    for name, given in options.items():
        kwargs = dict(given)
        if kwargs.get("lengths") is True:
            kwargs["lengths"] = lengths
        if kwargs.get("resets") is True:
            kwargs["resets"] = resets
        batch_major = kwargs.get("time_major", True) is False

        def loss(p, x, c, grad, kwargs=kwargs, batch_major=batch_major):
            final, hs = unroll(cell, p, jnp.swapaxes(x, 0, 1) if batch_major else x, c, grad=grad, **kwargs)
            hs = jnp.swapaxes(hs, 0, 1) if batch_major else hs
            total = jnp.sum(hs * w_hs) + sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(final),
                                                                            jax.tree.leaves(w_carry)))
            return total, (final, hs)

        @jax.jit
        def everything(args, loss=loss):
            value_and_grad = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
            (_, out_m), grads_m = value_and_grad(*args, "manual")
            (_, out_a), grads_a = value_and_grad(*args, "autodiff")

            def moved(step):  # the loss with every leaf k moved by step · unit[k], one at a time
                def one(*move):
                    return loss(*jax.tree.unflatten(tree, [a + step * m for a, m in zip(flat, move)]), "manual")[0]
                return jax.vmap(one)(*moves)

            numeric = (moved(fd_eps) - moved(-fd_eps)) / (2 * fd_eps)
            return out_m, out_a, grads_m, grads_a, numeric

        out_m, out_a, grads_m, grads_a, numeric = everything(args)
        worst = 0.0
        for label, got, want in zip(("carry", "outputs"), out_m, out_a):
            error = relative_error(got, want)
            worst = max(worst, error)
            if not error <= rtol:  # NaN fails too
                raise AssertionError(
                    f"check_cell({cell!r}): option {name!r}: the {label} of grad='manual' and grad='autodiff' "
                    f"differ, relative error {error:.2e} > rtol {rtol:.0e}."
                )
        for label, g_m, g_a, k in _named_leaves(grads_m, grads_a, args):
            error = relative_error(g_m, g_a)
            if not error <= rtol:
                raise AssertionError(
                    f"check_cell({cell!r}): option {name!r}: the manual gradient of {label} disagrees with "
                    f"autodiff: relative error {error:.2e} > rtol {rtol:.0e}."
                )
            analytic = float(jnp.sum(g_m * unit[k]))
            fd = float(numeric[k])
            fd_error = abs(fd - analytic) / max(abs(fd), abs(analytic), 1e-12)
            if not fd_error <= fd_rtol:
                raise AssertionError(
                    f"check_cell({cell!r}): option {name!r}: the manual gradient of {label} disagrees with finite "
                    f"differences: directional derivative {analytic:.10g} against {fd:.10g} (relative error "
                    f"{fd_error:.2e} > fd_rtol {fd_rtol:.0e})."
                )
            worst = max(worst, error, fd_error)
        report[name] = worst
        if low_precision is not None:
            low = jnp.dtype(low_precision)
            report[f"{name} ({low.name})"] = _check_low_precision(cell, name, loss, args, low, low_rtol)
    return report


def _check_low_precision(cell, name: str, loss, args, low, rtol: float) -> float:
    """Params and inputs in ``low`` with a float32 carry, both grad modes, against float32; the worst error."""
    params, xs, carry = args
    f32 = jnp.float32

    @functools.partial(jax.jit, static_argnums=3)
    def run(params, xs, carry, modes):  # [((final, hs), grads) for each grad mode]
        value_and_grad = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
        runs = [value_and_grad(params, xs, carry, grad) for grad in modes]
        return [(aux, grads) for (_, aux), grads in runs]

    cast = lambda tree, dtype: jax.tree.map(lambda a: a.astype(dtype), tree)  # noqa: E731
    want = run(cast(params, f32), xs.astype(f32), cast(carry, f32), ("manual",))[0]
    worst = 0.0
    for grad, ((final, hs), grads) in zip(("manual", "autodiff"), run(cast(params, low), xs.astype(low),
                                                                       cast(carry, f32), ("manual", "autodiff"))):
        dtypes = {leaf.dtype for leaf in jax.tree.leaves(final)}
        if hs.dtype != low or dtypes != {jnp.dtype(f32)}:
            raise AssertionError(
                f"check_cell({cell!r}): option {name!r}, {low.name} params and inputs, grad={grad!r}: the outputs "
                f"must come back in {low.name} and the carry in float32; got outputs {hs.dtype} and carry "
                f"{sorted(d.name for d in dtypes)}."
            )
        for label, got, ref in (("carry", final, want[0][0]), ("outputs", hs, want[0][1]),
                                *((lbl, g, r) for lbl, g, r, _ in _named_leaves(grads, want[1], args))):
            error = relative_error(got, ref)
            if not error <= rtol:
                raise AssertionError(
                    f"check_cell({cell!r}): option {name!r}: with {low.name} params and inputs, grad={grad!r}, the "
                    f"{label if label in ('carry', 'outputs') else 'gradient of ' + label} is off from float32's by "
                    f"a relative error {error:.2e} > low_rtol {rtol:.0e}."
                )
            worst = max(worst, error)
    return worst


def _named_leaves(grads_m, grads_a, args):
    """``(label, manual, autodiff, flat index)`` for every leaf of params, xs and carry."""
    index = 0
    for group, g_m, g_a, primal in zip(("params", "xs", "carry"), grads_m, grads_a, args):
        paths = jax.tree_util.tree_flatten_with_path(primal)[0]
        for (path, _), m, a in zip(paths, jax.tree.leaves(g_m), jax.tree.leaves(g_a)):
            field = jax.tree_util.keystr(path, simple=True, separator=".")
            yield group + ("." + field if field else ""), m, a, index
            index += 1
