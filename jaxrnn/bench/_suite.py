"""Measuring: every implementation on every problem, side by side in one process.

For one :class:`Problem` the suite

1. draws the shared :class:`Data` and builds every implementation that has
   the cell and can run here (JAX ones compile now, timed);
2. checks each one's outputs and gradients against jaxrnn's autodiff (in
   float32 for a bfloat16 problem), so that every timed call does the same
   work;
3. times the training gradient of all of them interleaved after warm-up
   (each round runs every implementation a few times in a row and times the
   last call, in an order that rotates from round to round), then the
   forward pass likewise, and keeps per-round ratios to ``jaxrnn manual`` as
   well as medians.

A result is a plain dict (the JSON the CLI writes), one per implementation and
problem::

    {"cell", "batch", "input", "hidden", "steps", "heads",   # heads: 1 unless the heads group
     "dtype",                                # "float32" or "bfloat16"
     "group": "table" | "sweep" | "heads" | "grid",
     "implementation", "gradient_ms", "forward_ms",   # forward_ms: None when the forward pass is not timed
     "gradient_ratio", "forward_ratio",      # median of implementation / manual per round
     "gflops", "ceiling_fraction",           # the gradient's matmul work per second, and its
                                             # share of the sgemm ceiling (set by the caller)
     "compile_s", "temp_mib",                # None where not JAX
     "max_rel_error", "agrees", "rounds"}

Implementations that cannot run here are listed once each with the reason;
one that cannot run a particular problem (jax cuDNN in bfloat16) says why
through :func:`unsupported`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn._timing import interleaved, median_ratio
from jaxrnn.bench._jaxrnn import AUTODIFF, MANUAL
from jaxrnn.bench._numpy import NUMPY
from jaxrnn.bench._peers import EQUINOX, FLAX, PEERS, TORCH
from jaxrnn.bench._problem import Implementation, Prepared, Problem, make_data
from jaxrnn.testing import relative_error

IMPLEMENTATIONS: tuple[Implementation, ...] = (MANUAL, AUTODIFF, NUMPY, *PEERS)
REFERENCE = MANUAL.name  # ratios are to this one
CELL_NAMES = ("lstm", "gru", "simple_rnn")

# The table's four shapes, (B, X, H, T): two small ones limited by per-step
# overhead, a mid-sized one, and one large enough to be bound by matmuls.
TABLE_SHAPES = ((32, 64, 128, 100), (64, 128, 256, 200), (8, 32, 64, 1000), (256, 256, 512, 50))
SWEEP_STEPS = (10, 30, 100, 300, 1000, 3000, 10000)
SWEEP_SHAPE = (16, 128, 128)  # B, X, H
# The grid, (B, X, H, T): spread over T 1..10,000, B 1..256, X 1..512 and H
# 16..1024 on log scales, so that every regime users meet is near a point:
# per-step overhead (small B and H), matmul-bound (large B and H), short and
# very long sequences. It includes the four table shapes and shapes users
# reported slow: short sequences (T 1-10), one input feature, batch 256 with
# hidden 32, input 300 with hidden 300. Sizes are capped so that one gradient
# stays well under a second on 2 cores: the largest H goes with short T or small B.
GRID_SHAPES = (
    (1, 1, 16, 1), (64, 8, 128, 1), (256, 512, 1024, 1), (16, 32, 64, 3), (64, 8, 128, 8), (4, 128, 256, 5),
    (256, 64, 32, 10), (1, 512, 512, 10), (32, 16, 1024, 10), (128, 256, 128, 20), (256, 128, 256, 10),
    (8, 256, 16, 30), (2, 256, 1024, 10), (64, 32, 512, 30), (64, 1, 128, 64), (32, 64, 128, 100),
    (64, 128, 256, 200), (8, 32, 64, 1000), (256, 256, 512, 50), (256, 32, 32, 100), (256, 1, 32, 300),
    (32, 300, 300, 50), (1, 1, 16, 100), (1, 64, 256, 300), (4, 8, 512, 50), (16, 512, 64, 100),
    (128, 16, 16, 200), (16, 128, 1024, 20), (1, 256, 1024, 30), (8, 4, 128, 500), (16, 1, 512, 100),
    (128, 128, 64, 300), (32, 1, 256, 1000), (1, 32, 32, 1000), (16, 128, 128, 1000), (64, 64, 64, 1000),
    (4, 512, 256, 1000), (256, 8, 16, 1000), (8, 8, 32, 3000), (4, 32, 256, 3000), (16, 128, 128, 3000),
    (1, 1, 16, 10000), (1, 16, 64, 10000), (2, 64, 128, 10000),
)
# The grid's default implementations: the numpy notebook loop would take minutes at its largest shapes.
GRID_IMPLEMENTATIONS = (MANUAL.name, AUTODIFF.name, FLAX.name, EQUINOX.name, TORCH.name)
HEADS_SHAPE = (32, 64, 100)  # B, X, T of the heads group, at each of HEADS_HIDDEN
HEADS_HIDDEN = (512, 1024)
# f32 gradients of long sequences differ by rounding; a wrong network differs by O(1).
F32_TOLERANCE = 2e-3
# bfloat16 keeps 8 bits (ε ≈ 4e-3): every implementation is held to the float32 computation on the same
# (rounded) numbers, within many ε, and a wrong network still differs by O(1).
TOLERANCES = {"float32": F32_TOLERANCE, "bfloat16": 0.2}
DTYPES = tuple(TOLERANCES)  # the problems' dtypes: those with a tolerance


class Settings(NamedTuple):
    """How long to measure.

    Attributes:
        rounds: interleaved rounds per problem, at most.
        budget_s: seconds of timed calls per implementation and pass, at
            most; a slow implementation gets fewer rounds (never below
            ``min_rounds``).
        min_rounds: the fewest rounds any median is taken over.
        warmup: untimed calls of each implementation first.
        burst: calls of an implementation in a row per round, the last one
            timed (see :func:`jaxrnn._timing.interleaved`): with one call,
            torch's spinning OpenMP threads slowed the JAX call after them,
            and the same JAX code measured 10-13% apart depending on which
            implementation ran before it; with three, within 2-4%.
        forward: time the forward pass too (the grid times gradients only,
            which halves its run).
    """

    rounds: int = 15
    budget_s: float = 4.0
    min_rounds: int = 3
    warmup: int = 1
    burst: int = 3
    forward: bool = True


def sgemm_ceiling(size: int = 2048, rounds: int = 8) -> dict[str, float]:
    """The machine's float32 matmul rate in GFLOP/s, by JAX (XLA) and by torch if present.

    A (size × size) @ (size × size) product, the two libraries interleaved
    after warm-up. A ceiling is what the machine can reach, so each library's
    figure is its fastest round: a median let a moment of load on this shared
    machine halve it (once to 190 GFLOP/s, below what the LSTM itself reached).
    The suite measures it before and after the problems and keeps the higher.
    """
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    product = jax.jit(jnp.matmul).lower(a, b).compile()
    calls: dict[str, Callable[[], Any]] = {"jax": lambda: product(a, b)}
    try:
        import torch
    except ImportError:
        pass
    else:
        ta, tb = torch.randn(size, size), torch.randn(size, size)
        calls["torch"] = lambda: torch.mm(ta, tb)
    times = interleaved(calls, rounds=rounds, burst=2)
    return {name: 2 * size**3 / min(t) / 1e9 for name, t in times.items()}


def available(implementations: Iterable[Implementation]) -> tuple[list[Implementation], dict[str, str]]:
    """The implementations that can run here, and why each of the others cannot."""
    ready, skipped = [], {}
    for impl in implementations:
        reason = impl.missing()
        if reason is None:
            ready.append(impl)
        else:
            skipped[impl.name] = reason
    return ready, skipped


class Unrunnable(Exception):
    """A peer failed to build or run a problem; the caller measures the problem again without it.

    Attributes:
        name: the implementation's name.
        reason: what failed, for the report.
    """

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason


def _peer(impl: Implementation, problem: Problem, step: Callable[[], Any]) -> Any:
    """``step()``, where a peer's failure becomes :class:`Unrunnable`; jaxrnn's own failures stay errors."""
    if impl in (MANUAL, AUTODIFF):
        return step()
    try:
        return step()
    except Exception as error:  # e.g. a cuDNN build without this dtype
        raise Unrunnable(impl.name, f"failed on {problem.label()}: {type(error).__name__}: {error}") from error


def takes(impl: Implementation, problem: Problem, group: str) -> bool:
    """Whether ``impl`` belongs on ``problem``: it has the cell, and the heads group runs jaxrnn's two alone."""
    return impl.has(problem.cell) and (group != "heads" and problem.heads == 1 or impl in (MANUAL, AUTODIFF))


def unsupported(problem: Problem, implementations: Iterable[Implementation], group: str) -> dict[str, str]:
    """Why each implementation that belongs on ``problem`` cannot run it (e.g. its dtype), by name."""
    return {impl.name: why for impl in implementations
            if takes(impl, problem, group) and (why := impl.unsupported(problem)) is not None}


def _rounds(prepared: dict[str, Prepared], pass_name: str, settings: Settings) -> int:
    """Rounds that fit the budget, from one untimed call of each (which also warms up)."""
    slowest = 0.0
    for p in prepared.values():
        start = time.perf_counter()
        jax.block_until_ready(getattr(p, pass_name)())
        slowest = max(slowest, time.perf_counter() - start)
    affordable = int(settings.budget_s / max(slowest * settings.burst, 1e-9))
    return max(settings.min_rounds, min(settings.rounds, affordable))


def _time(prepared: dict[str, Prepared], pass_name: str, settings: Settings) -> tuple[dict[str, list[float]], int]:
    rounds = _rounds(prepared, pass_name, settings)
    calls = {name: getattr(p, pass_name) for name, p in prepared.items()}
    return interleaved(calls, rounds=rounds, warmup=settings.warmup, burst=settings.burst), rounds


def measure(
    problem: Problem,
    implementations: Iterable[Implementation],
    settings: Settings,
    *,
    group: str,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Every implementation that has ``problem.cell``, built, checked and timed together.

    ``jaxrnn manual`` must be among ``implementations``: the ratios are to it.
    The heads group runs jaxrnn's two gradients only: no peer has heads.
    Those that cannot run the problem (see :func:`unsupported`) are left out.
    A bfloat16 problem is checked against jaxrnn's autodiff in float32 on
    the same numbers, to :data:`TOLERANCES`.

    Raises:
        Unrunnable: a peer failed to build or to run the problem once.
    """
    data = make_data(problem)
    cannot = unsupported(problem, implementations, group)
    impls = [impl for impl in implementations if takes(impl, problem, group) and impl.name not in cannot]
    prepared = {impl.name: _peer(impl, problem, functools.partial(impl.prepare, problem, data)) for impl in impls}
    if REFERENCE not in prepared:
        raise ValueError(
            f"the suite times every implementation against {REFERENCE!r}; it was not among {list(prepared)}")

    if problem.dtype != "float32":
        wide = jax.tree.map(lambda a: np.asarray(a, np.float32), data)  # the same numbers, computed in float32
        reference = AUTODIFF.prepare(problem._replace(dtype="float32"), wide)
    else:
        reference = AUTODIFF.prepare(problem, data) if AUTODIFF.name not in prepared else prepared[AUTODIFF.name]
    want_hs, want_grads = reference.outputs()
    tolerance = TOLERANCES[problem.dtype]
    errors = {}
    by_name = {impl.name: impl for impl in impls}
    for name, p in prepared.items():
        hs, grads = _peer(by_name[name], problem, p.outputs)
        errors[name] = relative_error((hs, tuple(grads)), (want_hs, tuple(want_grads)))
        if errors[name] > tolerance:
            log(f"  ! {name} disagrees with jaxrnn autodiff on {problem.label()}: "
                f"max relative error {errors[name]:.2e}")

    gradient_times, gradient_rounds = _time(prepared, "gradient", settings)
    forward_times = _time(prepared, "forward", settings)[0] if settings.forward else None
    flops = problem.matmul_flops()
    results = []
    for name, p in prepared.items():
        gradient_s = statistics.median(gradient_times[name])
        results.append(
            {
                **problem._asdict(),
                "group": group,
                "implementation": name,
                "gradient_ms": 1e3 * gradient_s,
                "forward_ms": None if forward_times is None else 1e3 * statistics.median(forward_times[name]),
                "gradient_ratio": median_ratio(gradient_times[name], gradient_times[REFERENCE]),
                "forward_ratio": None if forward_times is None
                else median_ratio(forward_times[name], forward_times[REFERENCE]),
                "gflops": flops / gradient_s / 1e9,
                "compile_s": p.compile_s,
                "temp_mib": None if p.temp_bytes is None else p.temp_bytes / 2**20,
                "max_rel_error": errors[name],
                "agrees": errors[name] <= tolerance,
                "rounds": gradient_rounds,
            }
        )
    return results


def cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {"jax": jax.__version__, "numpy": np.__version__}
    for module in ("jaxlib", "torch", "flax", "equinox"):
        with contextlib.suppress(ImportError):
            versions[module] = __import__(module).__version__
    return {
        "cpu": model,
        "cores": cores(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "versions": versions,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
