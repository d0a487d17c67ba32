"""Domain 1, Node, wall 7 (tail latency): the M/M/c queue as a pure, elementwise JAX function.

Conventions as in ``node.py`` (SI floats, broadcasting, finite outputs with
``UNBOUNDED`` for unbounded times).  Erlang B comes from ``erlang.poisson_logs`` at a
fixed cost per element.

Sources: seed 002 wall 7; Erlang 1917; Kleinrock 1975 §3.5 (M/M/c); Jagerman 1974
(Erlang B for non-integer servers); Dean & Barroso 2013 (tail at scale).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from mlsys_opt._types import Array
from mlsys_opt.walls.erlang import poisson_logs
from mlsys_opt.walls.node import UNBOUNDED, _f


# --------------------------------------------------------------------------- wall 7
class Queue(NamedTuple):
    utilization: Array  # ρ = λ / (c·μ), may exceed 1 when unstable
    p_wait: Array  # Erlang C, P(wait > 0)
    mean_wait_s: Array
    mean_latency_s: Array
    p99_latency_s: Array  # service mean + wait quantile (see docstring)
    stable: Array  # bool


def mmc_queue(arrival_rate_per_s, service_rate_per_s, n_servers, *,
              quantile=0.99) -> Queue:
    """Wall 7: M/M/c queue (Erlang C), vectorised, non-integer c allowed.

    a = λ/μ, ρ = a/c.  Erlang B through the Poisson ratio, continued to real c
    (Jagerman 1974):  B = pmf(c; a)/Q(c+1, a) = exp(c·ln a - a - lgamma(c+1)) / Q(c+1, a),
    evaluated at a fixed cost per element by ``erlang.poisson_logs`` (series + Temme).
    C = B / (1 - ρ(1 - B));  Wq = C / (cμ - λ);  P(Wq > t) = C·exp(-(cμ - λ)t), so the
    wait quantile is t_q = max(0, ln(C / (1 - q)) / (cμ - λ)).
    p99_latency_s = 1/μ + t_q (q = ``quantile``, default 0.99): an approximation that adds
    the MEAN service time to the wait quantile (the exact sojourn quantile would convolve
    the two distributions); mlsysim TailLatencyModel uses the same form.
    mean_latency_s = Wq + 1/μ.  Unstable (ρ >= 1, or μ, c <= 0): stable = False,
    p_wait = 1 and the times are UNBOUNDED (finite).
    Args: arrival_rate_per_s λ (1/s), service_rate_per_s μ per server (1/s),
      n_servers c (count, may be fractional, e.g. batch slots); quantile in (0, 1).
    Source: seed 002 wall 7; Kleinrock 1975 §3.5; Dean & Barroso 2013.
    Example: λ = 8/s, μ = 1/s, c = 10: ρ = 0.8, C = 0.4092, Wq = 0.2046 s,
      t_99 = ln(40.92)/2 = 1.857 s, p99 latency = 2.857 s.
    """
    lam, mu, c, q = _f(arrival_rate_per_s, service_rate_per_s, n_servers, quantile)
    mu_s = jnp.where(mu > 0, mu, 1.0)
    c_s = jnp.where(c > 0, c, 1.0)
    a = lam / mu_s
    rho = jnp.where((mu > 0) & (c > 0), a / c_s, jnp.where(lam > 0, UNBOUNDED, 0.0))
    stable = (mu > 0) & (c > 0) & (lam >= 0) & (rho < 1.0)
    busy = stable & (a > 0)
    a_s = jnp.where(busy, a, 0.5 * c_s)  # safe interior point for the masked branch
    logs = poisson_logs(c_s, a_s)  # fixed cost per element (erlang.py), no gammaincc loop
    log_b = logs.log_pmf - logs.log_cdf
    erlang_b = jnp.exp(jnp.minimum(log_b, 0.0))
    rho_s = a_s / c_s
    erlang_c = erlang_b / (1.0 - rho_s * (1.0 - erlang_b))
    p_wait = jnp.where(busy, jnp.clip(erlang_c, 0.0, 1.0), jnp.where(stable, 0.0, 1.0))
    gap = jnp.where(stable, c_s * mu_s - lam, 1.0)
    wq = jnp.where(stable, jnp.minimum(p_wait / gap, UNBOUNDED), UNBOUNDED)
    tail = 1.0 - jnp.clip(q, 0.0, 1.0 - 1e-7)
    wait_pos = busy & (p_wait > tail)
    ratio = jnp.where(wait_pos, p_wait / tail, 1.0)
    t_q = jnp.where(wait_pos, jnp.log(ratio) / gap, 0.0)
    service = jnp.where(mu > 0, 1.0 / mu_s, UNBOUNDED)
    mean_lat = jnp.where(stable, jnp.minimum(wq + service, UNBOUNDED), UNBOUNDED)
    p99 = jnp.where(stable, jnp.minimum(service + t_q, UNBOUNDED), UNBOUNDED)
    return Queue(rho, p_wait, wq, mean_lat, p99, stable)
