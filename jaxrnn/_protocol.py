"""The cell protocol: what a recurrent cell supplies, and what the sequence engine does with it.

A cell is a *value* (:class:`Cell`) bundling pure functions, in the manner of
``optax.GradientTransformation``. The engine (:func:`jaxrnn.unroll` and the
networks built on it) calls these functions and nothing else: it knows no
parameter names, gate counts or layouts. Shapes below: B batch rows, X input
features, P the width of the projected input, H the output size, N = T·B rows
of a whole sequence.

**The forward maths of one step** is split in two, so that the engine can
hoist the input's share out of the time loop:

* ``project(params, x (…, X)) -> gx (…, P)``: the part of the step that reads
  the input only, row by row (typically ``x W_ih``). The engine applies it to
  all N rows of a sequence in one call before the scan. ``project=None``
  means no hoisting: ``gx`` is ``x`` itself (P = X) and the whole step lives
  in ``recurrence``.
* ``recurrence(params, carry, gx (B, P)) -> (carry, h (B, H), residual)``:
  the rest of the step. ``carry`` is a NamedTuple of (B, ·) arrays (or one
  bare (B, H) array), and its first field (or the bare array) is the output
  ``h``. ``residual`` is what the hand-written backward pass needs from the
  step: a NamedTuple of (B, ·) arrays, or ``()`` for nothing.

``step(params, carry, x) = recurrence(params, carry, project(params, x))``
minus the residual, in ``jax.lax.scan``'s own argument order, so
``partial(cell.step, params)`` is a scan body.

**The hand-written backward pass** (:class:`BPTT`, optional; without it a cell
takes ``grad="autodiff"`` only):

* ``step_vjp(params, prepared, d_carry, dh, h, h_prev, residual) ->
  (d_carry_prev, d_gx (B, P), stash)``: the reverse of one ``recurrence``.
  ``d_carry`` is the cotangent of the carry leaving step t, ``dh`` (B, H)
  that of its output, ``h`` the output at t and ``h_prev`` (B, H) the output
  of the step before (the initial carry's ``h`` at the first step, and after
  a reset). ``prepared`` is ``prepare(params)``, made once before the
  reverse scan (e.g. ``W_hhᵀ``, so no step transposes).
* ``param_grads(params, h_prev (N, H), d_gx (N, P), stash) -> d_params``: the
  recurrence's share of the parameter cotangents, as large matmuls over all N
  rows after the reverse scan (e.g. ``dW_hh = h_prevᵀ d_gx``). ``stash`` is
  every step's third output of ``step_vjp``, stacked over time with the time
  axis merged into the leading one: a (B, …) leaf per step arrives as
  (N, …), and a (1, …) per-step sum over the batch as (T, …). ``d_params``
  has the params' structure, with ``None`` for a field it does not touch.
  ``param_grads=None`` means no hoisting: the third output of ``step_vjp`` is
  then that step's own share of the parameter cotangents (params-shaped,
  ``None`` for zero, e.g. summed over its B rows) and the engine adds them up
  inside the reverse scan.
* ``project_vjp(params, x (N, X), d_gx (N, P)) -> (d_params, d_x (N, X))``:
  the projection's share of the parameter cotangents and the input
  cotangent, again over all N rows at once. ``None`` means JAX's autodiff of
  ``project`` (one matmul each way for a linear projection).

The engine casts every cotangent to its primal's dtype and sums the two
shares of ``d_params``.

**Storage.** If the residual's first field has ``gx``'s shape and dtype
(the LSTM's activated gates do), the engine stores it over the step's
projection in one (N, P) buffer, then overwrites it with ``d_gx`` in the
reverse scan, so one buffer serves three arrays whose lifetimes do not
overlap. Other residuals are stacked over time as they are.

**What the engine does for every cell** (:mod:`jaxrnn._bptt`,
:mod:`jaxrnn._unroll`): lengths (per-row validity), reverse, resets,
checkpointing, batch-major layouts, mixed precision and T = 0, in both
``grad`` modes; it also casts each new carry to the incoming carry's dtypes,
so a cell need not.

**The rest of a cell**: ``init_params(key, input_size, hidden_size, dtype,
**options) -> params``; ``check_shapes(params, where) -> (input_size,
sizes)`` reads the sizes off the params (``sizes``: one int, the size of
every carry field, or a tuple with one per field) and raises ``ValueError``
naming ``where`` if they are inconsistent; ``carry_sizes(hidden_size,
**options)`` gives those sizes for :meth:`Cell.initial_carry` (default: every
field ``hidden_size``). A whole-sequence ``sequence`` hook (a parallel scan)
may replace the scan entirely.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _checks

Params = Any
"""A cell's parameters, for annotations: its ``params_type``, a NamedTuple of arrays."""
Carry = Any
"""A cell's state, for annotations: one (batch, H) array, or its ``carry_type`` of such arrays."""


class BPTT(NamedTuple):
    """A cell's hand-written backward pass, as pure functions (see the module docstring).

    Attributes:
        step_vjp: ``(params, prepared, d_carry, dh, h, h_prev, residual) ->
            (d_carry_prev, d_gx, stash)``, the reverse of one step.
        param_grads: ``(params, h_prev (N, H), d_gx (N, P), stash) ->
            d_params`` after the reverse scan, or None to have the engine sum
            ``step_vjp``'s per-step params cotangents (its ``stash``).
        project_vjp: ``(params, x (N, X), d_gx (N, P)) -> (d_params, d_x)``,
            or None for JAX's autodiff of ``project``.
        prepare: ``params -> prepared``, once before the reverse scan; None
            passes the params themselves.
    """

    step_vjp: Callable[..., tuple[Any, Array, Any]]
    param_grads: Callable[..., Any] | None = None
    project_vjp: Callable[..., tuple[Any, Array]] | None = None
    prepare: Callable[[Any], Any] | None = None


def _all_hidden(hidden_size: int) -> int:
    return hidden_size


def _check_options(function, args: tuple, options: dict, where: str) -> None:
    """``options`` must be keyword arguments that ``function`` takes; a clear ``TypeError`` otherwise."""
    if not options:
        return
    try:
        inspect.signature(function).bind(*args, **options)
    except TypeError:
        parameters = [name for name, p in inspect.signature(function).parameters.items()
                      if p.kind == p.KEYWORD_ONLY or (p.default is not p.empty and name != "dtype")]
        takes = f"takes the option(s) {parameters}" if parameters else "takes no options"
        raise TypeError(f"{where}: got option(s) {sorted(options)}, but this cell {takes}.") from None


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True, eq=False)
class Cell:
    """A recurrent cell: a value bundling pure functions (see :mod:`jaxrnn._protocol`).

    Hashable by identity and a leafless pytree, so it passes through
    ``jax.jit`` as an ordinary argument, as a static argument, or inside an
    Equinox module.

    Attributes:
        name: the public name, e.g. ``"lstm"``.
        params_type: the NamedTuple its params are.
        carry_type: the NamedTuple its carry is (its first field the output
            ``h``), or None for a bare ``h``.
        init_params: ``(key, input_size, hidden_size, dtype, **options) -> params``,
            called by :meth:`init` after its checks.
        check_shapes: ``(params, where) -> (input_size, sizes)``.
        recurrence: ``(params, carry, gx) -> (carry, h, residual)``.
        project: ``(params, x) -> gx``, hoisted over all steps; None for ``gx = x``.
        bptt: the hand-written backward pass (:class:`BPTT`), or None
            (``grad="autodiff"`` only).
        carry_sizes: ``(hidden_size, **options) -> int or tuple``, the last
            dimension of each carry field; None: ``hidden_size`` for all.
        sequence: a whole-sequence implementation that replaces the scan
            (e.g. a parallel scan), or None:
            ``sequence(params, carry, xs, *, valid, resets, reverse, grad) ->
            (carry, hs)``, called by :func:`jaxrnn.unroll` with checked,
            promoted, time-major inputs whose padding is already zeroed;
            ``valid`` and ``resets`` are (T, B) bool or None.
        gates: names of the gate blocks along the projection's output axis
            (descriptive; the engine does not read it).
        doc: the cell's equations, shown by ``help(cell)``.
    """

    name: str
    params_type: type
    carry_type: type | None
    init_params: Callable[..., Any]
    check_shapes: Callable[[Any, str], tuple[int, Any]]
    recurrence: Callable[[Any, Any, Array], tuple[Any, Array, Any]]
    project: Callable[[Any, Array], Array] | None = None
    bptt: BPTT | None = None
    carry_sizes: Callable[..., Any] | None = None
    sequence: Callable[..., Any] | None = None
    gates: tuple[str, ...] = ()
    doc: str = ""

    def __post_init__(self):
        object.__setattr__(self, "__doc__", self.doc)

    def __repr__(self) -> str:
        return f"jaxrnn.{self.name}"

    def init(self, key: Array, input_size: int, hidden_size: int, *, dtype=jnp.float32, **options) -> Params:
        """Makes parameters with the cell's ``init_params``.

        Args:
            key: a PRNG key (``jax.random.key(seed)``).
            input_size: features per time step, X > 0.
            hidden_size: state size, H > 0.
            dtype: a floating dtype for every array.
            **options: the cell's own init options, if any.

        Returns:
            ``params_type``; see the cell's docstring for its arrays.
        """
        where = f"{self!r}.init"
        _checks.prng_key(key, where, "init(jax.random.key(0), input_size, hidden_size)")
        input_size = _checks.positive_int(input_size, "input_size", where)
        hidden_size = _checks.positive_int(hidden_size, "hidden_size", where)
        dtype = _checks.floating_dtype(dtype, where)
        _check_options(self.init_params, (key, input_size, hidden_size, dtype), options, where)
        return self.init_params(key, input_size, hidden_size, dtype, **options)

    def sizes(self, hidden_size: int, **options) -> tuple[int, ...]:
        """The last dimension of each carry field, for a state of size ``hidden_size``."""
        function = self.carry_sizes or _all_hidden
        _check_options(function, (hidden_size,), options, f"{self!r}.initial_carry")
        return _checks.carry_sizes(self, function(hidden_size, **options))

    def initial_carry(self, batch_size: int, hidden_size: int, *, dtype=jnp.float32, **options) -> Carry:
        """The all-zero state: (batch, ·) arrays, as ``carry_type`` if it has one."""
        where = f"{self!r}.initial_carry"
        batch_size = _checks.positive_int(batch_size, "batch_size", where, allow_zero=True)
        hidden_size = _checks.positive_int(hidden_size, "hidden_size", where)
        dtype = _checks.floating_dtype(dtype, where)
        return zero_carry(self, batch_size, self.sizes(hidden_size, **options), dtype)

    def hidden(self, carry: Carry) -> Array:
        """The output part ``h`` of a carry."""
        return carry if self.carry_type is None else carry[0]

    def step(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        """One time step, checked: ``(carry, x (batch, input)) -> (carry, h (batch, hidden))``.

        Params and ``x`` compute in their common dtype; the carry keeps at
        least float32 (see :func:`jaxrnn.unroll`). Raises
        ``ValueError``/``TypeError`` at trace time on bad shapes or dtypes.
        """
        params, carry, x = _checks.step_arguments(self, params, carry, x, f"{self!r}.step")
        return self.step_unchecked(params, carry, x)

    def project_or_identity(self, params: Params, x: Array) -> Array:
        """``project(params, x)``, or ``x`` for a cell that projects nothing."""
        return x if self.project is None else self.project(params, x)

    def step_unchecked(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        """:meth:`step` without the checks, for inputs already validated."""
        new, h, _ = self.recurrence(params, carry, self.project_or_identity(params, x))
        return like(new, carry), h


def cotangents(params: Params, **fields: Array | None) -> Params:
    """Params-shaped cotangents with ``fields`` given and ``None`` (zero) elsewhere.

    For ``param_grads`` and ``project_vjp``, which often touch a few fields:
    ``cotangents(params, w_hh=d_w_hh)``.
    """
    unknown = set(fields) - set(params._fields)
    if unknown:
        raise ValueError(f"cotangents: {type(params).__name__} has no field(s) {sorted(unknown)}; "
                         f"its fields are {list(params._fields)}.")
    return type(params)(**{name: fields.get(name) for name in params._fields})


def like(new: Any, old: Any) -> Any:
    """``new`` cast to the dtypes of ``old``, leaf by leaf (a carry keeps its dtype)."""
    return jax.tree.map(lambda a, b: a.astype(b.dtype), new, old)


def zero_carry(cell: Cell, batch: int, sizes: tuple[int, ...], dtype: Any) -> Carry:
    """Zeros of shapes ``(batch, size)``, one per carry field."""
    zeros = [jnp.zeros((batch, size), dtype) for size in sizes]
    return zeros[0] if cell.carry_type is None else cell.carry_type(*zeros)
