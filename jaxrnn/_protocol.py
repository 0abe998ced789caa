"""The cell protocol: what a recurrent cell supplies, and what the sequence engine does with it.

A cell is a *value* (:class:`Cell`) bundling pure functions, in the manner of
``optax.GradientTransformation``. The engine (:func:`jaxrnn.unroll` and the
networks built on it) calls these functions and nothing else. There are two
tiers:

* :class:`jaxrnn.GatedCell` (:mod:`jaxrnn._gated`): pre-activations ``x W_ih +
  b_ih`` and ``h W_hh + b_hh`` followed by elementwise maths. The cell supplies
  the number of gates and a pointwise forward and backward; the engine owns
  the weights, init, shape checks, both products and every weight gradient.
* :class:`Cell` itself, the general tier: any step, any params. Its contract
  is documented on :class:`Cell` and :class:`BPTT`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _checks, _contract

Params = Any
"""A cell's parameters, for annotations: its ``params_type``, a NamedTuple of arrays."""
Carry = Any
"""A cell's state, for annotations: one (batch, H) array, or its ``carry_type`` of such arrays."""


class BPTT(NamedTuple):
    """A general cell's hand-written backward pass, as pure functions.

    Shapes: B batch rows, X input features, P the projection's width, N = T·B
    rows of a whole sequence. The engine calls them as follows, and checks at
    trace time that each returns what the cell declared.

    * ``step_vjp(params, prepared, d_carry, h, h_prev, residual) ->
      (d_carry_prev, d_gx (B, P), stash)``: the reverse of one
      :attr:`Cell.recurrence`. ``d_carry`` is the cotangent of the carry leaving
      the step, **the output's cotangent already added to its first field**
      (the output is that field). ``h`` (B, H) is the step's output and
      ``h_prev`` the output of the step before (the initial carry's ``h`` at
      the first step and after a reset). ``residual`` is what the step's
      ``recurrence`` returned, cast back to the carry's dtype where the engine
      stored it narrower. ``prepared`` is ``prepare(params)``. Returns the
      cotangent of the carry entering the step (the carry's structure and
      shapes), that of the step's projection ``gx``, and a ``stash`` for
      ``param_grads``.
    * ``param_grads(params, h_prev (N, H), d_gx (N, P), stash) -> d_params``:
      the recurrence's share of the parameter cotangents, as large products
      over all N rows after the reverse scan (e.g. ``dW_hh = h_prevᵀ d_gx``).
      ``stash`` is every step's ``stash`` stacked over time with the time axis
      merged into the leading one: a (B, …) leaf per step arrives as (N, …),
      a (1, …) per-step sum over the batch as (T, …). ``d_params`` has the
      params' structure, ``None`` for a field it does not touch (see
      :func:`jaxrnn.cotangents`). With ``param_grads=None`` each ``stash`` is
      instead that step's own params-shaped share, and the engine adds them up.
    * ``project_vjp(params, x (N, X), d_gx (N, P)) -> (d_params, d_x (N, X))``:
      the projection's share of the parameter cotangents and the input
      cotangent; ``None`` means JAX's autodiff of :attr:`Cell.project`.

    The engine sums the two shares of ``d_params`` and casts every cotangent
    to its primal's dtype.

    Attributes:
        step_vjp: the reverse of one step (above).
        param_grads: the parameter cotangents after the reverse scan, or None.
        project_vjp: the projection's VJP, or None for autodiff's.
        prepare: ``params -> prepared``, once before the reverse scan (e.g.
            ``W_hhᵀ``, so no step transposes); None passes the params.
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
    """A recurrent cell of the general tier: a value bundling pure functions.

    For a step of two linear parts and elementwise maths,
    :class:`jaxrnn.GatedCell` asks for much less. Shapes: B batch rows, X input
    features, P the projection's width, H the output size.

    **The forward maths of one step** is split in two, so that the engine can
    hoist the input's share out of the time loop:

    * ``project(params, x (…, X)) -> gx (…, P)``: what reads the input only,
      row by row (typically ``x W_ih``), applied to all T·B rows of a sequence
      at once. ``None``: ``gx`` is ``x`` itself.
    * ``recurrence(params, carry, gx (B, P)) -> (carry, h (B, H), residual)``:
      the rest. ``carry`` is a ``carry_type`` of (B, ·) arrays, or one bare
      (B, H) array; **the output ``h`` is the new carry's first field** (or the
      bare array). ``residual`` is what the hand-written backward pass needs
      from the step (a tuple or NamedTuple of (B, ·) arrays, ``()`` for none).

    ``step(params, carry, x) = recurrence(params, carry, project(params, x))``
    minus the residual, in ``jax.lax.scan``'s own argument order.

    **What the engine does for every cell**: lengths, reverse, resets,
    checkpointing, both layouts, T = 0 and mixed precision in both ``grad``
    modes. It promotes params and inputs to their common (compute) dtype and
    the carry to at least float32; it casts each new carry to the incoming
    carry's dtypes and each output to the compute dtype, so ``hs`` comes back
    in the inputs' dtype whatever the cell computes in. It checks at trace
    time that every function returns the structure and shapes above, and says
    which function broke the contract.

    Hashable by identity and a leafless pytree, so it passes through
    ``jax.jit`` as an ordinary argument, as a static argument, or inside an
    Equinox module.

    Attributes:
        name: the public name, e.g. ``"lstm"``.
        params_type: the NamedTuple its params are.
        carry_type: the NamedTuple its carry is (first field the output
            ``h``), or None for a bare ``h``.
        init_params: ``(key, input_size, hidden_size, dtype, **options) ->
            params``, called by :meth:`init` after its checks.
        check_shapes: ``(params, where) -> (input_size, sizes)``: reads the
            sizes off the params and raises ``ValueError`` naming ``where`` if
            they disagree. ``sizes`` is one int, the width of every carry
            field, or a tuple with one per field.
        recurrence: ``(params, carry, gx) -> (carry, h, residual)``.
        project: ``(params, x) -> gx``, hoisted over all steps; None for ``gx = x``.
        bptt: the hand-written backward pass (:class:`BPTT`), or None
            (``grad="autodiff"`` only).
        carry_sizes: ``(hidden_size, **options) -> int or tuple``, the width
            of each carry field for :meth:`initial_carry`; None: ``hidden_size``
            for all.
        sequence: a whole-sequence implementation that replaces the scan
            (e.g. a parallel scan), or None:
            ``sequence(params, carry, xs, *, valid, resets, reverse, grad) ->
            (carry, hs)``, called by :func:`jaxrnn.unroll` with checked,
            promoted, time-major inputs whose padding is already zeroed;
            ``valid`` and ``resets`` are (T, B) bool or None.
        gates: names of the gate blocks along the projection's output axis
            (descriptive).
        doc: the cell's equations, shown by ``help(cell)``.
        residual_in_buffer: a declaration that the residual's first field is
            (B, P), like ``gx``: the engine then stores it in the projection's
            own (T·B, P) buffer, in the compute dtype, and overwrites it with
            ``d_gx`` in the reverse scan, so one buffer serves three arrays
            (the LSTM's activated gates). The residual must then be a tuple or
            NamedTuple.
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
    residual_in_buffer: bool = False
    # The function a user wrote for the step, as the engine's contract errors name it.
    step_function: ClassVar[str] = "recurrence"

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
        return _contract.widths(self, function(hidden_size, **options), "carry_sizes", f"{self!r}.initial_carry")

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
        gx = self.project_or_identity(params, x)
        new, h, _ = _contract.recurrence(self, self.recurrence(params, carry, gx), carry, gx)
        return like(new, carry), h.astype(x.dtype)  # the output in the compute dtype, whatever the cell returned


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


def with_first(fields: Any, first: Any) -> Any:
    """``fields`` (a carry or residual: one array, a tuple or a NamedTuple) with its first entry replaced."""
    if not isinstance(fields, tuple):
        return first
    rest = tuple(fields[1:])
    return type(fields)(first, *rest) if hasattr(fields, "_fields") else (first, *rest)


def zero_carry(cell: Cell, batch: int, sizes: tuple[int, ...], dtype: Any) -> Carry:
    """Zeros of shapes ``(batch, size)``, one per carry field."""
    zeros = [jnp.zeros((batch, size), dtype) for size in sizes]
    return zeros[0] if cell.carry_type is None else cell.carry_type(*zeros)
