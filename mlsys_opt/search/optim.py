"""The gradient-solve pieces shared by calibration, gradient search and synthesis (written once).

- :func:`adam_scan`: ``steps`` optax updates of a loss in one ``lax.scan``,
  returning the last iterate, the iterate of the lowest loss seen and the
  loss history (optax ships no loop; optimistix is not a dependency);
- :func:`decaying_adam`: Adam whose rate decays ×0.01 over the run;
- :func:`to_unconstrained` / :func:`from_unconstrained`: the bounded
  reparametrisation x = lo + (hi − lo)·sigmoid(u) where an input is bounded
  on both sides, x = e^u where it is only positive (hi = +inf), with the
  logit's argument clipped ``eps`` inside the bounds.

Source: Kingma & Ba (2015), Adam, via optax.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

# Adam moments of the penalty solves: short memories (β1 0.5, β2 0.9, optax defaults 0.9/0.999).
# With a stiff penalty one step into the infeasible side gives a gradient 10^3x the objective's;
# the default β2 keeps that in the second moment for ~1000 steps and the iterate stalls far from
# the boundary (measured on the fleet-size problem of tests/test_synthesis.py).
ADAM_B1 = 0.5
ADAM_B2 = 0.9


def decaying_adam(learning_rate: float, steps: int, *, b1: float = ADAM_B1,
                  b2: float = ADAM_B2) -> optax.GradientTransformation:
    """Adam with the rate decaying exponentially to 1 % of ``learning_rate`` over ``steps``."""
    sched = optax.exponential_decay(learning_rate, transition_steps=max(1, steps), decay_rate=0.01)
    return optax.adam(sched, b1=b1, b2=b2)


def adam_scan(loss: Callable[[jax.Array], jax.Array], z0: jax.Array, opt: optax.GradientTransformation,
              steps: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Minimise ``loss(z)`` from ``z0`` by ``steps`` updates of ``opt`` (one lax.scan, jit-able).

    Returns ``(z_last, z_best, history [steps])``: the final iterate, the iterate
    with the lowest loss evaluated (each loss is evaluated before its update),
    and that loss per step.
    """
    value_and_grad = jax.value_and_grad(loss)

    def body(carry, _):
        z, state, best_z, best = carry
        value, g = value_and_grad(z)
        better = value < best
        best_z, best = jnp.where(better, z, best_z), jnp.where(better, value, best)
        upd, state = opt.update(g, state, z)
        return (optax.apply_updates(z, upd), state, best_z, best), value

    init = (z0, opt.init(z0), z0, jnp.asarray(jnp.inf, z0.dtype))
    (z, _, best_z, _), history = lax.scan(body, init, None, length=steps)
    return z, best_z, history


def _bounds(lo, hi):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    bounded = np.isfinite(hi) & (hi > lo)
    return lo, np.where(bounded, hi, lo + 1.0), bounded


def to_unconstrained(x, lo, hi, *, eps: float):
    """u with :func:`from_unconstrained` (u) = x: logit((x − lo)/(hi − lo)) clipped to [eps, 1 − eps]
    where hi is finite, else log(x) (x floored at the smallest normal float)."""
    lo, hi_s, bounded = _bounds(lo, hi)
    x = jnp.asarray(x)
    frac = jnp.clip((x - lo) / (hi_s - lo), eps, 1.0 - eps)
    tiny = jnp.finfo(jnp.result_type(x, float)).tiny
    return jnp.where(bounded, jnp.log(frac) - jnp.log1p(-frac), jnp.log(jnp.maximum(x, tiny)))


def from_unconstrained(u, lo, hi):
    """x = lo + (hi − lo)·sigmoid(u) where hi is finite, else e^u."""
    lo, hi_s, bounded = _bounds(lo, hi)
    return jnp.where(bounded, lo + (hi_s - lo) * jax.nn.sigmoid(u), jnp.exp(u))


__all__ = ["ADAM_B1", "ADAM_B2", "adam_scan", "decaying_adam", "from_unconstrained", "to_unconstrained"]
