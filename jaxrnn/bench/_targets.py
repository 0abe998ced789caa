"""The suite's speed targets, each judged met, not met or not measured from one run's numbers alone.

The run dict is described in :mod:`jaxrnn.bench._report`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from jaxrnn.bench._jaxrnn import AUTODIFF
from jaxrnn.bench._problem import Problem
from jaxrnn.bench._results import cell_rank, format_number, format_ratio, indexed
from jaxrnn.bench._suite import REFERENCE

# The suite's speed targets, by the shapes they name, (B, X, H, T).
SMALL_SHAPES = ((32, 64, 128, 100), (8, 32, 64, 1000))
LARGE_SHAPE = (256, 256, 512, 50)
CUDNN_ANCHORS = ("jax cuDNN", "torch cuDNN")
JAX_PEERS = ("flax", "equinox", AUTODIFF.name)

MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured in this run"


class _Check(NamedTuple):
    """One measured comparison behind a target: where, what was measured, whether it passes."""

    where: str
    shown: str
    ok: bool
    slack: float  # smaller is closer to failing; picks the example a met target shows


class _Target(NamedTuple):
    """One speed target: its letter, what it asks, and the evidence this run has for it."""

    key: str
    goal: str
    checks: list[_Check]
    missing: list[str]  # inputs the target needs that this run lacks

    @property
    def status(self) -> str:
        # One failure decides; otherwise every input must be there to call it met.
        if any(not c.ok for c in self.checks):
            return NOT_MET
        return MET if self.checks and not self.missing else NOT_MEASURED

    def line(self) -> str:
        status = self.status
        text = f"- **({self.key}) {status}**: {self.goal}."
        if status == NOT_MET:
            failed = [c for c in self.checks if not c.ok]
            text += " Missed on " + "; ".join(f"{c.where}: {c.shown}" for c in failed) + "."
        elif self.checks:
            worst = min(self.checks, key=lambda c: c.slack)
            text += f" Closest: {worst.where}: {worst.shown}" + (
                f" ({len(self.checks)} checked)." if len(self.checks) > 1 else "."
            )
        if self.missing:
            text += " Missing: " + "; ".join(self.missing) + "."
        return text


def _absent(name: str, where: str, skipped: dict) -> str:
    return f"{name} on {where}" + (f" (skipped: {skipped[name]})" if name in skipped else "")


def _of(index: dict[Problem, dict[str, dict]], *cells: str) -> list[Problem]:
    return [p for p in index if p.cell in cells]


def _ratio_checks(
    index: dict[Problem, dict[str, dict]], expected: Iterable[Problem], peers: Iterable[str], bound: float,
    skipped: dict, *, strict: bool = False, note: str = "",
) -> tuple[list[_Check], list[str]]:
    """Each peer's gradient_ratio (peer / manual) on each expected problem ≥ ``bound`` (> if ``strict``).

    Returns:
        The checks, and the (peer, problem) pairs this run has no numbers for.
    """
    checks, missing = [], []
    for problem in expected:
        if problem not in index:
            missing.append(f"{problem.label()} (not run)")
            continue
        by_impl = index[problem]
        for peer in peers:
            if REFERENCE not in by_impl or peer not in by_impl:
                missing.append(_absent(peer if REFERENCE in by_impl else REFERENCE, problem.label(), skipped))
                continue
            ratio = by_impl[peer]["gradient_ratio"]
            ok = ratio > bound if strict else ratio >= bound
            checks.append(_Check(problem.label() + note, f"{peer} {format_ratio(ratio)}", ok, ratio - bound))
    return checks, missing


def speed_targets(run: dict) -> list[_Target]:
    """The speed targets, each judged from this run's numbers alone."""
    results = run.get("results", [])
    skipped = run.get("skipped") or {}
    table, sweep = indexed(results, "table"), indexed(results, "sweep")
    every = {**table, **sweep}
    targets = []

    # (a) on the table shapes this run has: --shapes may choose others than the default four.
    lstm_gru = _of(table, "lstm", "gru")
    checks, missing = _ratio_checks(table, lstm_gru, ["torch"], 1.0, skipped)
    targets.append(_Target(
        "a", f"{REFERENCE} LSTM and GRU gradient time ≤ torch's on every table shape (torch's ratio ≥ 1)",
        checks, missing if lstm_gru else ["no LSTM or GRU table shapes"],
    ))

    # (b) the two small shapes for every cell the table ran, and every problem at all.
    cells = sorted({p.cell for p in table}, key=cell_rank)
    small = [Problem(cell, *shape) for cell in cells for shape in SMALL_SHAPES]
    checks, missing = _ratio_checks(table, small, [AUTODIFF.name], 1.4, skipped, note=" (≥ 1.4×)")
    with_autodiff = [p for p, by_impl in every.items() if AUTODIFF.name in by_impl]
    checks += _ratio_checks(every, with_autodiff, [AUTODIFF.name], 1.0, skipped, note=" (≥ 1×)")[0]
    targets.append(_Target(
        "b", f"{REFERENCE} ≥ 1.4× faster than autodiff on B32 X64 H128 T100 and B8 X32 H64 T1000 "
        "(autodiff's ratio ≥ 1.4), and never slower anywhere (≥ 1)",
        checks, missing if small else ["no table shapes"],
    ))

    checks, missing = [], []
    for cell in ("lstm", "gru"):
        problem = Problem(cell, *LARGE_SHAPE)
        ref = table.get(problem, {}).get(REFERENCE)
        if ref is None:
            missing.append(problem.label())
            continue
        fraction = ref["ceiling_fraction"]
        shown = f"{format_number(100 * fraction)}% ({format_number(ref['gflops'])} GFLOP/s)"
        checks.append(_Check(problem.label(), shown, fraction >= 0.85, fraction - 0.85))
    goal = f"{REFERENCE} LSTM and GRU ≥ 85% of the ceiling on B256 X256 H512 T50"
    targets.append(_Target("c", goal, checks, missing))

    # (d) and (e) over table and sweep alike: both are properties of the compiled gradient.
    manual = {p: by_impl for p, by_impl in every.items() if REFERENCE in by_impl}
    compiles = {p: by_impl[REFERENCE]["compile_s"] for p, by_impl in manual.items()
                if by_impl[REFERENCE].get("compile_s") is not None}
    checks = [_Check(p.label(), f"{format_number(s)} s", s <= 0.5, 0.5 - s) for p, s in compiles.items()]
    most = f" (max {format_number(max(compiles.values()))} s)" if compiles else ""
    targets.append(_Target(
        "d", f"{REFERENCE}'s first-call compile ≤ 0.5 s on every problem{most}",
        checks, [] if compiles else [f"no {REFERENCE} compile times"],
    ))

    checks, missing = [], []
    for problem, by_impl in manual.items():
        if problem.steps != 1000:
            continue
        ours = by_impl[REFERENCE].get("temp_mib")
        theirs = (by_impl.get(AUTODIFF.name) or {}).get("temp_mib")
        if ours is None or not theirs:
            missing.append(f"{REFERENCE} and {AUTODIFF.name} memory on {problem.label()}")
            continue
        shown = f"{format_number(ours)} / {format_number(theirs)} MiB ({format_ratio(ours / theirs)})"
        checks.append(_Check(problem.label(), shown, ours <= 0.6 * theirs, 0.6 - ours / theirs))
    targets.append(_Target(
        "e", f"{REFERENCE}'s XLA temporaries ≤ 0.6 × autodiff's at T = 1000 (manual / autodiff)",
        checks, missing if checks or missing else ["no problem with T = 1000"],
    ))

    if (run.get("machine") or {}).get("backend") == "gpu":
        targets += _gpu_targets(table, skipped)
    return targets


def _gpu_targets(table: dict[Problem, dict[str, dict]], skipped: dict) -> list[_Target]:
    """(f) and (g): where cuDNN exists, the anchors to be near and the JAX peers to beat."""
    checks, missing = [], []
    lstm = _of(table, "lstm")
    for problem in lstm:
        by_impl = table[problem]
        anchors = [by_impl[name]["gradient_ratio"] for name in CUDNN_ANCHORS if name in by_impl]
        if REFERENCE not in by_impl or not anchors:
            missing.append(" or ".join(_absent(name, problem.label(), skipped) for name in CUDNN_ANCHORS))
            continue
        behind = 1 / min(anchors)  # the fastest anchor has the smallest ratio; manual / anchor is its inverse
        checks.append(_Check(problem.label(), f"{REFERENCE} at {format_ratio(behind)} the fastest cuDNN's time",
                             behind <= 1.25, 1.25 - behind))
    targets = [_Target(
        "f", f"{REFERENCE} LSTM within 1.25× of the fastest cuDNN anchor ({', '.join(CUDNN_ANCHORS)})",
        checks, missing if lstm else ["no LSTM table shapes"],
    )]
    gru = _of(table, "gru")
    checks, missing = _ratio_checks(table, gru, JAX_PEERS, 1.0, skipped, strict=True)
    targets.append(_Target(
        "g", f"{REFERENCE} GRU faster than every JAX peer ({', '.join(JAX_PEERS)}; their ratios > 1)",
        checks, missing if gru else ["no GRU table shapes"],
    ))
    return targets

