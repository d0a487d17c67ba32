"""The efficiency model: how far real kernels and collectives fall short of peak.

The scenarios (`mlsys_opt.scenarios`) turn peak hardware numbers from the
catalog into achieved rates with the named parameters below.  They are a flat
`NamedTuple` of float leaves, so the whole model is a JAX pytree:
`jax.grad(f)(eff)` gives the sensitivity of any objective to every parameter,
and an optax calibration loop can fit them to `reality/measurements.json`.
The defaults are first-principles or vendor-benchmark numbers, never fitted to a
single measured row (the calibration is a separate step).

How the user's η (the schema's `efficiency` parameter) combines with the model
--------------------------------------------------------------------------------
η is the *asymptotic* matmul efficiency: the fraction of peak FLOP/s a large,
well-shaped GEMM reaches (seed 000 §1.1: 0.25–0.55 training, ~0.35 inference).
The model multiplies it by a calibration scale and a tile-quantisation factor
that saturates with the GEMM's row count x (tokens per micro-batch, i.e. how
many times each weight is reused per pass)::

    η_matmul = min(1, η · compute_eff_scale · x / (x + matmul_rows_half))     (training)
    η_prefill = min(1, η · prefill_eff_scale · x / (x + matmul_rows_half))    (prefill, x = prompt tokens)
    η_decode  = min(1, η · prefill_eff_scale)                                 (decode compute term)

With the defaults (`compute_eff_scale = 1`, x ≫ 128) η_matmul ≈ η, so the
user's η means what the seeds mean by it.  Setting `matmul_rows_half = 0`
makes η_matmul == η exactly.  The decode compute term has no tile factor: a
decode step is memory-bound, and the roofline's byte term already models the
cost of small GEMMs (a second, row-count penalty would double-count it).

Memory-bound phases run at `mem_bw_eff` × peak HBM bandwidth; collectives at
`scaleup_comm_eff` / `scaleout_comm_eff` × peak link bandwidth.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from ._types import Array


class Efficiency(NamedTuple):
    """Named efficiency parameters (all dimensionless fractions unless the name has a unit).

    Fields and defaults (with the physical motivation):

    - `compute_eff_scale` = 1.0: multiplies the user's η for training matmuls
      (1 = trust η as given; a calibration fits it).
    - `prefill_eff_scale` = 1.0: multiplies η for serving (prefill and the decode
      compute term); mlsysim uses ~0.35 for inference against 0.25–0.55 for
      training (seed 000 §1.1), which a user expresses through η itself.
    - `matmul_rows_half` = 128.0 rows: GEMM row count (tokens per micro-batch)
      at which the tile factor x/(x + x½) is 1/2.  128 is the M-dimension of one
      tensor-core thread-block tile on A100/H100 (CUTLASS/cuBLAS 128×128/128×256
      tiles): a GEMM with fewer rows leaves tile rows idle.
    - `mem_bw_eff` = 0.8: achieved/peak HBM bandwidth of streaming kernels
      (decode GEMV, optimizer update).  STREAM-like kernels reach 80–90 % of
      HBM peak on A100/H100 (NVIDIA "Dissecting the Ampere/Hopper GPU
      architecture" microbenchmarks); seed 000 §4.2 uses 1.0 for its worked
      example (our tests set it to 1.0 there).
    - `scaleup_comm_eff` = 0.8: NCCL all-reduce bus bandwidth / NVLink peak
      (nccl-tests on DGX H100: ~360–380 GB/s bus bandwidth of 450 GB/s).
    - `scaleout_comm_eff` = 0.75: NCCL bus bandwidth / InfiniBand line rate
      across nodes (nccl-tests over NDR 400G: ~40 of 50 GB/s per GPU minus
      protocol overhead at large scale).
    - `scaleup_latency_s` = 1e-6 s: α per ring step on the scale-up link
      (NVLink/NVSwitch hop + NCCL launch share, ~1 µs).  The accelerator table
      has a scale-up bandwidth but no scale-up latency, so it lives here.
    - `tp_comm_overlap` = 0.0: fraction of tensor-parallel all-reduce time hidden
      behind compute (Megatron-LM TP all-reduces sit on the critical path,
      Shoeybi et al. 2019 §3; async-TP/sequence-parallel overlap raises it).
    - `ep_comm_overlap` = 0.0: same for the expert-parallel all-to-all
      (GShard/DeepSpeed-MoE dispatch is synchronous by default).
    - `pipeline_overhead_frac` = 0.0: pipeline stage imbalance.  The per-GPU step
      compute is multiplied by 1 + pipeline_overhead_frac × (1 − 1/pp): the slowest
      stage (embedding / LM head on the end stages, an uneven layer split) sets the
      pace of every micro-batch, so the bubble grows with it too.  0 = Narayanan
      et al. 2021's ideal, perfectly balanced 1F1B schedule.
    - `recompute_flop_scale` = 1.0: multiplies the extra hardware FLOPs of
      activation recomputation (full: one more forward; selective: the attention
      core, Korthikanti et al. 2022 §5); 1 = exactly those FLOPs.
    - `dispatch_s_per_layer` = 10e-6 s: un-hidden kernel-launch/dispatch time per
      layer per forward (or decode) pass.  Seed 000 §1.1 gives 0.01–0.1 ms of
      dispatch tax per launch; with CUDA graphs/async launch only ~1 launch per
      layer stays exposed.  Backward passes pay it twice.
    - `active_power_frac` = 1.0: average board power / TDP while busy.  1 keeps
      the seeds' convention (seed 000 §5.1 worked example: 64 GPUs × 400 W).
    - `idle_power_frac` = 0.25: board power / TDP of an idle accelerator
      (H100 SXM idles near 70–100 W of 700 W; A100 ~50–60 W of 400 W); serving
      fleets draw idle + (active − idle) × utilisation.
    """

    compute_eff_scale: Array = 1.0
    prefill_eff_scale: Array = 1.0
    matmul_rows_half: Array = 128.0
    mem_bw_eff: Array = 0.8
    scaleup_comm_eff: Array = 0.8
    scaleout_comm_eff: Array = 0.75
    scaleup_latency_s: Array = 1e-6
    tp_comm_overlap: Array = 0.0
    ep_comm_overlap: Array = 0.0
    pipeline_overhead_frac: Array = 0.0
    recompute_flop_scale: Array = 1.0
    dispatch_s_per_layer: Array = 10e-6
    active_power_frac: Array = 1.0
    idle_power_frac: Array = 0.25


DEFAULT_EFFICIENCY = Efficiency()


def tile_factor(rows: Array, eff: Efficiency = DEFAULT_EFFICIENCY) -> Array:
    """Tile-quantisation factor x / (x + x½) of a GEMM with `rows` rows (dimensionless, in [0, 1)).

    Written as 1 / (1 + x½/x) with x floored at 1e-30, so `matmul_rows_half = 0`
    gives exactly 1 and x → 0 gives 0, finite gradients everywhere.
    """
    x = jnp.maximum(jnp.asarray(rows, dtype=jnp.result_type(float)), 1e-30)
    return 1.0 / (1.0 + eff.matmul_rows_half / x)


def matmul_efficiency(eta: Array, rows: Array, eff: Efficiency = DEFAULT_EFFICIENCY) -> Array:
    """Achieved fraction of peak for training matmuls: min(1, η · compute_eff_scale · x/(x + x½))."""
    return jnp.minimum(eta * eff.compute_eff_scale * tile_factor(rows, eff), 1.0)


def prefill_efficiency(eta: Array, rows: Array, eff: Efficiency = DEFAULT_EFFICIENCY) -> Array:
    """Achieved fraction of peak for prefill: min(1, η · prefill_eff_scale · x/(x + x½))."""
    return jnp.minimum(eta * eff.prefill_eff_scale * tile_factor(rows, eff), 1.0)


def decode_compute_efficiency(eta: Array, eff: Efficiency = DEFAULT_EFFICIENCY) -> Array:
    """Achieved fraction of peak for the compute term of a decode step: min(1, η · prefill_eff_scale)."""
    return jnp.minimum(eta * eff.prefill_eff_scale, 1.0)
