"""Domain 2, Data: walls 8-10 (ingestion, transformation, locality) as pure,
elementwise JAX functions.

SI floats in, NamedTuples (or one array) of the broadcast shape out; keyword-only
knobs; finite outputs everywhere (x / 0 is ``UNBOUNDED``, 0 / 0 is 0).
Sources: seed 002 walls 8-10, seed 003 §3 (data walls of the Llama-3 audit),
mlsysim DataModel / TransformationModel / TopologyModel, Mohan et al. 2022,
Murray et al. 2021 (tf.data), Leiserson 1985, Dally & Towles 2003, Kim et al. 2008.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from mlsys_opt._types import TOPOLOGIES, Array
from mlsys_opt.walls._masked import UNBOUNDED, any_nan, floor_pos, nan_where, nonneg, safe_div

FAT_TREE, TORUS, RING, DRAGONFLY, SWITCH = (TOPOLOGIES.index(k) for k in
                                            ("fat_tree", "torus", "ring", "dragonfly", "switch"))


def _feed(demand, supply):
    """Shared producer/consumer algebra: utilisation, stall and delivered fraction."""
    util = safe_div(demand, supply, fill=UNBOUNDED)
    stall = safe_div(jnp.maximum(demand - supply, 0.0), demand, fill=0.0)   # no demand: no stall
    return util, demand > supply, stall, 1.0 - stall


# --------------------------------------------------------------------------- wall 8
class Ingestion(NamedTuple):
    utilization: Array  # demand / supply
    stalled: Array  # bool, demand > supply
    stall_frac: Array  # fraction of time the consumer waits: max(0, 1 - supply/demand)
    effective_throughput_frac: Array  # min(1, supply/demand)
    margin_bytes_per_s: Array  # demand - supply, <= 0 feasible


def ingestion(demand_bytes_per_s, supply_bytes_per_s) -> Ingestion:
    """Wall 8: ρ = demand / supply; the accelerator stalls when ρ > 1.

    stall_frac = max(0, 1 - supply/demand) and effective_throughput_frac =
    min(1, supply/demand) assume storage and compute overlap (prefetching), so the
    slower side sets the rate.  Args: demand and supply bandwidth, B/s.
    Source: seed 002 wall 8; mlsysim DataModel; Mohan et al. 2022.
    Example: seed 003's Llama-3 run reads 4·512·2048·2 = 8.39e6 B/step at ~1 step/s;
      on a 5e9 B/s NVMe supply ρ = 1.7e-3, no stall.  Demand 10e9 on 5e9 B/s: ρ = 2,
      stall_frac 0.5, effective_throughput_frac 0.5.
    """
    d, s = nonneg(demand_bytes_per_s, supply_bytes_per_s)
    util, stalled, stall, eff = _feed(d, s)
    return Ingestion(util, stalled, stall, eff, d - s)


# --------------------------------------------------------------------------- wall 9
class Transformation(NamedTuple):
    supply_samples_per_s: Array
    time_per_sample_s: Array  # CPU wall time per sample with all cores busy
    utilization: Array  # required / supply (CPU pool utilisation, > 1 means short)
    stalled: Array  # bool
    stall_frac: Array
    effective_throughput_frac: Array
    cores_required: Array  # continuous core count to keep up (ceil for whole cores)


def transformation(samples_per_s_required, cpu_samples_per_s_per_core, n_cores) -> Transformation:
    """Wall 9 (rate form): CPU preprocessing supply = per-core rate × cores vs demand.

    supply = r_core·n;  utilization = demand/supply;  cores_required = demand / r_core;
    stall_frac = max(0, 1 - supply/demand).
    Args: samples_per_s_required (samples/s the accelerators consume),
      cpu_samples_per_s_per_core (samples/s one core decodes/augments), n_cores (count).
    Source: seed 002 wall 9; Murray et al. 2021 (tf.data); Mohan et al. 2022.
    Example: 8 GPUs × 3000 img/s = 24,000 img/s needed, 200 img/s per core, 64 cores:
      supply 12,800/s, utilization 1.875, stall_frac 0.467, 120 cores required.
    """
    d, r, n = nonneg(samples_per_s_required, cpu_samples_per_s_per_core, n_cores)
    supply = r * n
    util, stalled, stall, eff = _feed(d, supply)
    return Transformation(supply, safe_div(jnp.ones_like(supply), supply, fill=UNBOUNDED), util, stalled, stall,
                          eff, safe_div(d, r, fill=UNBOUNDED))


class TransformationTime(NamedTuple):
    transform_s: Array  # B·S / throughput
    step_s: Array  # max(transform, accelerator step): overlapped pipeline
    accelerator_utilization_frac: Array  # accelerator step / step
    stalled: Array  # bool, transform > accelerator step
    slowdown: Array  # step / accelerator step (>= 1)


def transformation_time(batch, seq_len, cpu_tokens_per_s, accelerator_step_s) -> TransformationTime:
    """Wall 9 (seed form): Time = Batch × Sequence / CPU_Throughput, vs the step time.

    T_transform = B·S / X;  T_step = max(T_transform, T_accel) (prefetch overlaps them);
    utilisation = T_accel / T_step;  slowdown = T_step / T_accel.
    Args: batch B (samples), seq_len S (tokens, or bytes per sample with X in B/s),
      cpu_tokens_per_s X (same unit as B·S per second), accelerator_step_s (s).
    Source: seed 002 wall 9; mlsysim TransformationModel (T = B·S_sample / C).
    Example: B = 256, S = 2048 tokens, X = 1e6 tokens/s: 0.524 s against a 0.4 s step,
      stalled, accelerator utilisation 0.763, slowdown 1.31.
    """
    b, s, x, t_acc = nonneg(batch, seq_len, cpu_tokens_per_s, accelerator_step_s)
    t_tr = safe_div(b * s, x, fill=UNBOUNDED)
    step = jnp.maximum(t_tr, t_acc)
    # slowdown = T_step / T_accel written 1 + (T_step - T_accel) / T_accel: 1 when nothing waits
    slowdown = 1.0 + safe_div(step - t_acc, t_acc, fill=0.0)
    return TransformationTime(t_tr, step, safe_div(t_acc, step, fill=0.0), t_tr > t_acc, slowdown)


# --------------------------------------------------------------------------- wall 10
def locality(link_bw_bytes_per_s, bisection_frac, oversubscription) -> Array:
    """Wall 10: effective BW = link BW × bisection fraction / oversubscription, B/s.

    Args: link_bw_bytes_per_s (per-node injection BW, B/s), bisection_frac β (0-1,
      see ``bisection_fraction``), oversubscription (>= 1, e.g. 2 for 2:1 tapering).
    Source: seed 002 wall 10; mlsysim TopologyModel; Leiserson 1985.
    Example: 50e9 B/s IB NDR on a full fat tree (β = 1) at 2:1 oversubscription: 25e9 B/s.
    """
    bw, beta, o = nonneg(link_bw_bytes_per_s, bisection_frac, oversubscription)
    return safe_div(bw * beta, o, fill=UNBOUNDED)


def bisection_fraction(topology_code, n_nodes, *, torus_dims=3.0, dragonfly_frac=0.85) -> Array:
    """Typical bisection fraction β of a topology with N nodes, relative to a full fat tree.

    fat_tree 1; switch (one non-blocking crossbar) 1; dragonfly ``dragonfly_frac`` (0.85,
    mlsysim, after Kim et al. 2008); ring 2/N (a bisection cuts 2 of N links);
    torus of ``torus_dims`` dimensions with side k = N^(1/d): 2/k (a bisection cuts
    2·N/k links of N; 3-D: 2·N^(-1/3), Dally & Towles 2003 §3).  Clipped to [0, 1]
    (N <= 2 gives 1).  topology_code indexes _types.TOPOLOGIES (may be an int array);
    codes outside it give 1 (codes are validated where specs and catalog are loaded).
    Example: 64 nodes: ring 0.03125, 3-D torus (k = 4) 0.5, fat tree 1.
    """
    code, n, dims, df = nonneg(topology_code, n_nodes, torus_dims, dragonfly_frac)
    n_s = floor_pos(n, 1.0)
    ring = 2.0 / n_s
    torus = 2.0 * jnp.power(n_s, -safe_div(1.0, dims, fill=1.0))   # 0 dimensions: as 1
    beta = jnp.where(code == RING, ring,
                     jnp.where(code == TORUS, torus,
                               jnp.where(code == DRAGONFLY, df, jnp.ones_like(n))))
    return nan_where(any_nan(code, dims), jnp.clip(beta, 0.0, 1.0))


__all__ = ["Ingestion", "Transformation", "TransformationTime", "ingestion", "transformation",
           "transformation_time", "locality", "bisection_fraction"]
