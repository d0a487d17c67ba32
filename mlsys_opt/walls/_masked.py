"""Masked arithmetic: the ONE place where the walls guard a division, a floor or a bad input.

The policy (see ``walls/__init__.py`` for the rule it serves):

- ``safe_div(num, den, *, fill)``: ``num / den`` where ``den > 0``; where
  ``den <= 0`` the result is 0 if ``num == 0`` and otherwise ``fill``, which
  every call site names (there is no default: what a zero capacity means is a
  property of the quantity, e.g. ``UNBOUNDED`` for a time or a cost per unit,
  0 for a utilisation of nothing).  A NaN in ``num`` or ``den`` gives NaN.
  Quotients are capped at ``±UNBOUNDED`` so float32 arithmetic downstream
  stays finite.  The inner denominator is replaced by 1 where it is not
  positive, so gradients stay finite at the masked points (jax-md
  ``util.safe_mask``).
- ``nonneg(*xs)``: float arrays broadcast together, with every negative entry
  replaced by NaN: arguments that cannot be negative (a bandwidth, a count, a
  duration, a price) pass through it at the top of a wall, so an impossible
  value propagates as NaN instead of being floored into a plausible answer.
- ``floor_pos(x, floor)``: ``max(x, floor)`` for a denominator or a degree that
  is positive by construction (a count of at least 1, a catalog bandwidth);
  NaN stays NaN; derivative 1 at ``x == floor`` (the input's side of the edge).
- ``as_float(*xs)``: float arrays broadcast to one shape; ints become the
  default float dtype, float inputs keep theirs, so a float32 sweep stays
  float32 when x64 is on.
- ``safe_sqrt(x)``: sqrt for x > 0, 0 at and below 0, finite gradient.

Inside a scenario (``scenario_inputs()``, a trace-time switch the scenario functions
turn on): the scenario floors every denominator and degree and validates its inputs at
the boundary, so a NaN or negative input cannot reach a wall from there.  The guards
that exist only for such inputs are then left out of the traced program: ``nonneg``
does not replace negatives, ``any_nan`` is False, ``safe_div`` does not test for NaN.
The results for finite, non-negative inputs are identical (same fill values, same
caps, same gradients); the guards were ~60 % of the training scenario's
element-wise operations (XLA cost analysis: 3,359 → ~1,400 FLOP per configuration).
Walls called directly (users, the registry, tests) keep every guard.

Source: jax-md ``util.safe_mask`` (Schoenholz & Cubuk 2020); docs/CONTRACTS.md
("infeasible is a value, no NaN/inf in outputs of valid inputs").
"""
from __future__ import annotations

import contextlib
import functools
import threading

import jax
import jax.numpy as jnp

from mlsys_opt._types import Array

UNBOUNDED = 1e18  # finite stand-in for +inf (s, bytes, USD per unit, ...): x / 0 with x != 0
TRUSTED_TINY = 1e-30  # denominator floor of safe_div inside scenario_inputs (float32-normal)

__all__ = ["UNBOUNDED", "as_float", "nonneg", "nan_where", "any_nan", "safe_div", "floor_pos", "safe_sqrt",
           "scenario_inputs", "as_scenario"]

_STATE = threading.local()          # .trusted: True while a scenario traces its walls


def _trusted() -> bool:
    return getattr(_STATE, "trusted", False)


def as_scenario(fn):
    """Decorator: ``fn`` traces its walls inside :func:`scenario_inputs` (the scenario functions)."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with scenario_inputs():
            return fn(*args, **kwargs)
    return wrapped


@contextlib.contextmanager
def scenario_inputs():
    """Trace the walls called inside as a scenario does: inputs finite and non-negative by
    construction (floored degrees and denominators, validated parameters), so the NaN and
    negative-input guards are not traced (module docstring).  Re-entrant; thread-local."""
    before = _trusted()
    _STATE.trusted = True
    try:
        yield
    finally:
        _STATE.trusted = before


def as_float(*xs: jax.typing.ArrayLike) -> list[jax.Array]:
    """Float arrays broadcast to one shape (ints -> the default float dtype)."""
    arrs = [jnp.asarray(x) for x in xs]
    dt = jnp.result_type(*arrs, float)
    return jnp.broadcast_arrays(*[a.astype(dt) for a in arrs])


def nonneg(*xs: jax.typing.ArrayLike, broadcast: bool = True) -> list[jax.Array]:
    """:func:`as_float`, with negative entries (physically impossible) replaced by NaN.

    broadcast=False keeps each argument's own shape and float dtype (walls whose outputs
    broadcast only the arguments they use); Python scalars and ints become weakly typed
    floats (``* 1.0``), so a float32 sweep stays float32 when x64 is on."""
    if broadcast:
        arrs = as_float(*xs)
    else:
        arrs = [jnp.asarray(x) for x in xs]
        arrs = [a if jnp.issubdtype(a.dtype, jnp.floating) else a * 1.0 for a in arrs]
    if _trusted():
        return arrs
    return [jnp.where(a < 0, jnp.nan, a) for a in arrs]


def nan_where(bad: Array, out):
    """``out`` (an array or a NamedTuple of arrays) with its float entries set to NaN where ``bad``:
    for walls whose masks (``jnp.where`` on a comparison) would otherwise turn a NaN input into a
    finite branch.  Integer and boolean fields are left as they are."""
    def one(x):
        x = jnp.asarray(x)
        return jnp.where(bad, jnp.asarray(jnp.nan, x.dtype), x) if jnp.issubdtype(x.dtype, jnp.floating) else x
    if _trusted():
        return out
    if isinstance(out, tuple):
        return type(out)(*(one(x) for x in out))
    return one(out)


def any_nan(*xs: Array) -> jax.Array:
    """True where any of the (broadcast) arguments is NaN (a constant False inside ``scenario_inputs``)."""
    bad = jnp.zeros((), bool)
    if _trusted():
        return bad
    for x in xs:
        bad = bad | jnp.isnan(x)
    return bad


def safe_div(num: Array, den: Array, *, fill: float) -> jax.Array:
    """num / den where den > 0; 0 where den <= 0 and num == 0; ``fill`` where den <= 0 and
    num != 0; NaN where num or den is NaN.  Capped at ±UNBOUNDED.

    Inside ``scenario_inputs`` (inputs finite by construction) the same values with fewer
    operations: den is floored at TRUSTED_TINY (a positive den below it does not occur in SI
    inputs), which already gives ±UNBOUNDED after the cap for fill = UNBOUNDED (up to
    |num| < UNBOUNDED·TRUSTED_TINY = 1e-12, where the result is huge but below the cap);
    other fills keep their explicit mask; no NaN test.
    """
    num, den = jnp.asarray(num), jnp.asarray(den)
    if _trusted():
        # the floor as a select, not jnp.maximum: at den <= 0 the quotient's derivative in the denominator is
        # -num/TRUSTED_TINY² = inf in float32, and the clip's zero cotangent times it is NaN; maximum's
        # derivative multiplies that NaN by 0 (NaN), a select drops it (an unstable M/G/c queue's wait had a
        # NaN gradient in every float parameter of the serving scenario)
        q = jnp.clip(num / jnp.where(den > TRUSTED_TINY, den, TRUSTED_TINY), -UNBOUNDED, UNBOUNDED)
        if isinstance(fill, (int, float)) and fill >= UNBOUNDED:
            return q
        return jnp.where(den > 0, q, jnp.where(num == 0, jnp.zeros_like(q), jnp.asarray(fill, q.dtype)))
    ok = den > 0
    q = jnp.clip(num / jnp.where(ok, den, 1.0), -UNBOUNDED, UNBOUNDED)
    out = jnp.where(ok, q, jnp.where(num == 0, jnp.zeros_like(q), jnp.asarray(fill, q.dtype)))
    return jnp.where(jnp.isnan(num) | jnp.isnan(den), jnp.asarray(jnp.nan, q.dtype), out)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _floor_at(x: jax.Array, floor: float) -> jax.Array:
    return jnp.maximum(x, floor)


@_floor_at.defjvp
def _floor_at_jvp(floor, primals, tangents):
    (x,), (t,) = primals, tangents
    return jnp.maximum(x, floor), jnp.where(x >= floor, t, jnp.zeros_like(t))


def floor_pos(x: Array, floor: float) -> jax.Array:
    """max(x, floor): a positive stand-in for a denominator or degree (same units as x), or a floor at 0
    of a quantity non-negative by construction (an exposed time); NaN stays NaN.

    Derivative 1 at x == floor (and 0 below): the floor guards the edge of the input's domain, and
    inputs sit on that edge by default (straggler_factor = 1, a fabric's oversubscription = 1), where
    the only admissible change is upward.  ``jnp.maximum`` alone splits a tie's gradient (½ to each
    argument), which halved those inputs' sensitivities (a 1 % straggler read as +0.5 % step time).
    The value is ``jnp.maximum``'s (one operation in a sweep, which takes no derivative); the rule is a
    custom JVP (a Python-number floor) or a select (an array floor).
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x * 1.0                        # as jnp.maximum(int, float): the default float dtype
    if isinstance(floor, (int, float)):
        return _floor_at(x, float(floor))
    return jnp.where(x < floor, floor, x)


def safe_sqrt(x: Array) -> jax.Array:
    """sqrt(x) for x > 0, else 0, with a finite (zero) gradient at and below 0; NaN stays NaN."""
    ok = x > 0
    root = jnp.where(ok, jnp.sqrt(jnp.where(ok, x, 1.0)), 0.0)
    return root if _trusted() else jnp.where(jnp.isnan(x), x, root)
