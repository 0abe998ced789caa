"""What every benchmarked implementation is given, and what it hands back.

One :class:`Problem` is a cell and a shape. :func:`make_data` draws the
weights and data every implementation shares, in jaxrnn's layout (weights
``(in, G·H)``, gate blocks in torch's order), so that each implementation runs
the same network on the same numbers and the suite can check that they agree
before it times them.

The timed work is a *training gradient*: the gradient of
``loss = sum(hs * dy)`` with respect to all four weight arrays and the inputs
``xs``, from a zero initial state. ``dy`` is a fixed random cotangent, so the
backward pass does the same work as in training, without a readout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

GATES = {name: cast(jaxrnn.GatedCell, jaxrnn.get_cell(name)).num_gates for name in ("simple_rnn", "lstm", "gru")}
"""The cells the peers share, with their gate counts: their data is drawn as four arrays in torch's layout.
Any other registered cell gets params from its own ``init``."""


class Problem(NamedTuple):
    """A cell and a shape.

    Attributes:
        cell: the name of a registered cell, e.g. ``"lstm"``.
        batch: B, rows per time step.
        input: X, input features.
        hidden: H, state size.
        steps: T, time steps.
        heads: K, heads of a block-diagonal recurrence (``init(..., num_heads=K)``); 1 is dense.
        dtype: the params' and inputs' dtype, ``"float32"`` or ``"bfloat16"`` (jaxrnn then keeps
            its state and sums in float32).
    """

    cell: str
    batch: int
    input: int
    hidden: int
    steps: int
    heads: int = 1
    dtype: str = "float32"

    @property
    def gates(self) -> int:
        """G, the gate blocks of the projection (1 for a cell that names none)."""
        cell = jaxrnn.get_cell(self.cell)
        return getattr(cell, "num_gates", 0) or len(cell.gates) or 1

    def matmul_flops(self, gradient: bool = True) -> int:
        """Floating-point operations in the matmuls, the work the ceiling bounds.

        Forward: ``2·T·B·G·H·(X + H/K)``. A gradient with respect to weights and
        inputs does three times that: the forward, then the input-side and
        weight-side products of the backward pass.
        """
        forward = 2 * self.steps * self.batch * self.gates * self.hidden * (self.input + self.hidden // self.heads)
        return 3 * forward if gradient else forward

    def label(self) -> str:
        heads = f" K{self.heads}" if self.heads > 1 else ""
        dtype = f" {self.dtype}" if self.dtype != "float32" else ""
        return f"{self.cell} {shape_label((self.batch, self.input, self.hidden, self.steps))}{heads}{dtype}"


def shape_label(shape: tuple[int, int, int, int]) -> str:
    """``(64, 8, 128, 8)`` -> ``"B64 X8 H128 T8"``: a (B, X, H, T) shape as the reports write it."""
    return "B{} X{} H{} T{}".format(*shape)


class Data(NamedTuple):
    """Weights and data, numpy (float32 unless asked), in jaxrnn's layout.

    Attributes:
        w_ih: (X, G·H); w_hh: (H, G·H); b_ih, b_hh: (G·H,). Gate blocks in
            torch's order (LSTM i, f, g, o; GRU r, z, n). None for cells
            outside :data:`GATES` and for heads.
        xs: (T, B, X) inputs.
        dy: (T, B, H) the loss's weights on the outputs.
        params: the cell's own params for cells outside :data:`GATES` or
            with heads (from its ``init``), else None.
    """

    w_ih: np.ndarray | None
    w_hh: np.ndarray | None
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    xs: np.ndarray
    dy: np.ndarray
    params: Any = None

    def weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(w_ih, w_hh, b_ih, b_hh)``.

        Raises:
            ValueError: this data carries a cell's own ``params`` instead.
        """
        if self.w_ih is None or self.w_hh is None or self.b_ih is None or self.b_hh is None:
            raise ValueError("this problem's cell has its own params (Data.params), not the four gate arrays; "
                             "use an implementation that takes params")
        return self.w_ih, self.w_hh, self.b_ih, self.b_hh


class Gradients(NamedTuple):
    """A gradient in jaxrnn's layout, float numpy, for the cross-check.

    An implementation with one bias where jaxrnn has two reports that bias's
    gradient for both (their gradients are equal: both enter as a sum).
    """

    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray
    xs: np.ndarray


class Prepared(NamedTuple):
    """One implementation, built for one problem and ready to time.

    Attributes:
        gradient: zero-argument; runs one training gradient and returns
            something ``jax.block_until_ready`` can wait on (or None when the
            work is already done, as for torch and numpy).
        forward: zero-argument; the outputs ``hs`` only, with no gradient
            bookkeeping (torch under ``no_grad``).
        outputs: zero-argument; ``(hs (T, B, H), Gradients)`` as numpy, for the
            cross-check against jaxrnn (for a cell with its own ``Data.params``,
            those params' leaves then ``d_xs``). Not timed.
        compile_s: seconds to trace and compile the gradient (JAX), or None.
        temp_bytes: the compiled gradient's scratch memory from XLA's
            ``memory_analysis()``, or None where there is no such figure.
    """

    gradient: Callable[[], Any]
    forward: Callable[[], Any]
    outputs: Callable[[], tuple[np.ndarray, tuple[np.ndarray, ...]]]
    compile_s: float | None = None
    temp_bytes: int | None = None


def _runs_everything(problem: Problem) -> str | None:
    return None


class Implementation(NamedTuple):
    """A value bundling what the suite needs to run one implementation.

    Attributes:
        name: shown in tables, e.g. ``"jaxrnn manual"``, ``"torch"``.
        cells: the cells it has, a subset of ``GATES``; None for every
            registered cell with a hand-written BPTT.
        missing: zero-argument; why it cannot run here (e.g. ``"flax is not
            installed: pip install 'jaxrnn[bench]'"``), or None.
        prepare: ``(problem, data) -> Prepared``.
        unsupported: ``(problem) -> str | None``; why it cannot run this
            problem of one of its cells (e.g. ``"runs float32 only"``), or
            None. The default runs every problem.
    """

    name: str
    cells: tuple[str, ...] | None
    missing: Callable[[], str | None]
    prepare: Callable[[Problem, Data], Prepared]
    unsupported: Callable[[Problem], str | None] = _runs_everything

    def has(self, cell: str) -> bool:
        """Whether it runs ``cell``."""
        return cell in (self.cells if self.cells is not None else jaxrnn.cells(manual=True))


def make_data(problem: Problem, seed: int = 0, dtype=None) -> Data:
    """Weights at torch's default scale (uniform ±1/√H) and standard normal data.

    ``dtype`` (default: the problem's) is what implementations compute in;
    the tests pass float64 to check every implementation's gradients
    tightly. The draw is the same in every dtype, rounded to it, so a
    problem in bfloat16 starts from its float32 twin's numbers up to that
    rounding.
    """
    dtype = np.dtype(jnp.dtype(problem.dtype if dtype is None else dtype))  # numpy's own or ml_dtypes' bfloat16
    rng = np.random.default_rng(seed)
    if problem.cell not in GATES or problem.heads > 1:
        cell = jaxrnn.get_cell(problem.cell)
        heads = {"num_heads": problem.heads} if problem.heads > 1 else {}
        params = jax.tree.map(lambda a: np.asarray(a, dtype),
                              cell.init(jax.random.key(seed), problem.input, problem.hidden, dtype=dtype, **heads))
        out = cell.sizes(problem.hidden)[0]
        return Data(None, None, None, None, params=params,
                    xs=rng.standard_normal((problem.steps, problem.batch, problem.input)).astype(dtype),
                    dy=rng.standard_normal((problem.steps, problem.batch, out)).astype(dtype))
    g, x, h = problem.gates, problem.input, problem.hidden
    bound = 1.0 / np.sqrt(h)

    def uniform(*shape):
        return rng.uniform(-bound, bound, shape).astype(dtype)

    return Data(
        w_ih=uniform(x, g * h),
        w_hh=uniform(h, g * h),
        b_ih=uniform(g * h),
        b_hh=uniform(g * h),
        xs=rng.standard_normal((problem.steps, problem.batch, x)).astype(dtype),
        dy=rng.standard_normal((problem.steps, problem.batch, h)).astype(dtype),
    )
