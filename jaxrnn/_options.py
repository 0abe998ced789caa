"""The sequence options, as one value shared by :func:`jaxrnn.unroll`, :func:`jaxrnn.bidirectional` and stacks."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from jaxrnn import _checks

GRAD_MODES = ("manual", "autodiff")
GradMode = Literal["manual", "autodiff"]
"""The type of a ``grad`` argument, :data:`GRAD_MODES` as a ``Literal``, for annotating code that passes one on.

``"manual"`` differentiates a sequence by the cell's hand-written BPTT,
``"autodiff"`` by JAX's autodiff through the scan; see :func:`jaxrnn.unroll`.
"""

SCANS = ("auto", "sequential", "parallel")
ScanMode = Literal["auto", "sequential", "parallel"]  # SCANS as a type


class SequenceOptions(NamedTuple):
    """How a cell runs over a sequence; see :func:`jaxrnn.unroll` for each field.

    Attributes:
        grad: ``"manual"`` (the cell's hand-written BPTT) or ``"autodiff"``.
        lengths: int (batch,) or None.
        reverse: run from the last real step back to step 0.
        time_major: ``xs`` is (T, batch, ·) if True, (batch, T, ·) if False.
        resets: bool (T, batch) or None.
        checkpoint: steps per checkpointed chunk, or None.
        scan: ``"auto"``, ``"sequential"`` or ``"parallel"``.
    """

    grad: GradMode = "manual"
    lengths: Any = None
    reverse: bool = False
    time_major: bool = True
    resets: Any = None
    checkpoint: int | None = None
    scan: ScanMode = "auto"

    def checked(self, where: str) -> SequenceOptions:
        """The options with their static fields validated (arrays are checked against ``xs`` later)."""
        if self.grad not in GRAD_MODES:
            raise ValueError(f"{where}: grad must be one of {GRAD_MODES}; got {self.grad!r}.")
        if self.scan not in SCANS:
            raise ValueError(f"{where}: scan must be one of {SCANS}; got {self.scan!r}.")
        reverse = _checks.python_bool(self.reverse, "reverse", where)
        time_major = _checks.python_bool(self.time_major, "time_major", where)
        checkpoint = self.checkpoint
        if checkpoint is not None:
            checkpoint = _checks.positive_int(checkpoint, "checkpoint", where)
        return self._replace(checkpoint=checkpoint, reverse=reverse, time_major=time_major)
