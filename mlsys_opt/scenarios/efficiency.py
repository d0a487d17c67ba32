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

η_matmul is the efficiency of the matrix multiplies alone: the memory-bound,
non-matmul work of a transformer layer (layernorm, dropout, residual adds,
softmax, GeLU) is a separate, additive time in the training scenario
(`elementwise_traffic_scale`, below).  The seeds' η (0.25–0.55) is a whole-step
figure that silently contains that work, so the default `compute_eff_scale`
is 1.3: the seed's η = 0.5 becomes a GEMM efficiency of 0.65, and the
elementwise time brings a transformer's per-GPU compute efficiency back to
about the seed's η (the Megatron-LM rows of `calibration`, 1.7B–1T on A100:
elementwise 25 % down to 4 % of the compute time, hardware FLOPs / (compute
time · peak) 0.46–0.59).
`compute_eff_scale = 1` with `elementwise_traffic_scale = 0` and
`matmul_rows_half = 0` is the seeds' model exactly (η_matmul == η, no
elementwise time).  The decode compute term has no tile factor: the decode
GEMMs stream their weights while they multiply, and the decode wall's
max(W / BW, compute) already charges a small batch for its weight read (a second,
row-count penalty would double-count it).  Attention's KV read is a separate,
memory-bound kernel that adds to that max (`walls.node.decode(kv_separate=True)`,
as the serving scenario calls it).

Memory-bound phases run at `mem_bw_eff` × peak HBM bandwidth; collectives at
`scaleup_comm_eff` / `scaleout_comm_eff` × peak link bandwidth.

Achievable rates (issue 19; `achievable` = 1, the default)
------------------------------------------------------------
The catalog carries per-part microbenchmark data (``catalog/achievable.toml``,
resolved by ``catalog/achievable.py``, gathered by ``parts.gather``); the global
factors above keep their names, defaults and calibration, and now scale the
*part's own* measured rates relative to the reference part they were set on
(A100-SXM4-80GB, where the seeds' η, the Megatron rows and the TensorRT-LLM rows
come from), so a part without data behaves exactly as before:

- GEMMs: the part's curve g(n) (cuBLASLt/hipBLASLt M = N = K sweeps, per precision,
  interpolated linearly in log2 n, flat beyond 1024..16384) at the GEMM's
  equal-work size n_eq = (M·K·N)^(1/3), times the tile factor of its smallest
  dimension relative to a square GEMM of that size, q = tile(min(M,K,N))/tile(n_eq)::

      η_matmul = min(1, η · compute_eff_scale · g(n_eq) · q / GEMM_REF_EFF)

  with GEMM_REF_EFF = 0.822 (A100 fp16 at 16384³), M = rows (tokens per
  micro-batch), K = hidden, N = ffn/tp (4·hidden/tp when ffn is 0): the MLP
  up-projection, the layer's largest GEMM.  η·compute_eff_scale/GEMM_REF_EFF
  (0.79 by default) is the one global factor: the fraction of the square-GEMM
  microbenchmark that framework transformer GEMMs reach; q makes a square GEMM
  reproduce the microbenchmark exactly and penalises skinny M (tile
  quantisation); wave quantisation is inside the measured curve (averaged over
  its sizes; the catalog has no SM count to model it separately).  Prefill uses
  prefill_eff_scale; the decode compute term uses g(n_eq) without q (as before,
  no row-count penalty on decode).
- Memory-bound kernels: mem_bw · mem_bw_eff · s / SUSTAINED_REF_FRAC with s the
  part's STREAM-triad fraction (0.85 on the reference): mem_bw_eff/0.85 = 0.94 is
  the kernel factor (achieved / STREAM triad) of the streaming kernels.
- Collectives: scale-up bandwidth × the part's large-message all-reduce bus
  bandwidth fraction (nccl-tests / rccl-tests; NCCL's default algorithm, so NVLS
  on NVLink 4/5) with α per ring step fitted to the measured bus-bandwidth
  curve; scale-out: the fabric's fraction and α.  The ring formula
  2(n-1)α + 2(n-1)/n·m/bw then gives a message-size dependent bus bandwidth
  (`busbw_fraction` interpolates the measured curve itself).  No data: the
  global factors (scaleup_comm_eff, scaleout_comm_eff, scaleup_latency_s) and
  the catalog latency, as before.

`achievable` in [0, 1] blends every achieved rate linearly between the previous
model (0) and this one (1): ``Efficiency(achievable=0.0)`` evaluates the
pre-issue-19 model for before/after comparisons.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax.numpy as jnp

from .._types import Array
from ..walls._masked import floor_pos
from ..catalog.achievable import ATTENTION_SEQLENS, GEMM_REF_EFF, GEMM_SIZES, MSG_BYTES

_LOG2_GEMM0 = math.log2(GEMM_SIZES[0])
_LOG2_ATTN0 = math.log2(ATTENTION_SEQLENS[0])
_LOG2_MSG0 = math.log2(MSG_BYTES[0])


class Efficiency(NamedTuple):
    """Named efficiency parameters (all dimensionless fractions unless the name has a unit).

    Fields and defaults (with the physical motivation):

    - `compute_eff_scale` = 1.3: multiplies the user's η for training matmuls.
      The user's η is the seeds' whole-step compute efficiency (default 0.5);
      the GEMMs alone run faster, because the non-matmul work is modelled
      separately (`elementwise_traffic_scale`).  0.5 × 1.3 = 0.65 of the A100's
      312 TFLOP/s ≈ 203 TFLOP/s for Megatron-shaped fp16 GEMMs: cuBLAS reaches
      ~80–90 % of peak on large square fp16 GEMMs on A100, less on transformer
      shapes (skinny projections, the batched attention GEMMs); a whole 530B
      training step on 2,240 A100s reaches 54.2 % model-FLOPs utilisation with
      elementwise kernels and communication included (Korthikanti et al. 2022,
      arXiv:2205.05198, abstract), so the GEMMs themselves run above that.  The
      round value was chosen with the Megatron-LM rows in view (it is not a fit to
      any one row); `calibration.calibrate` fits it (1.35 on the 15 fit rows).
    - `prefill_eff_scale` = 1.3: multiplies η for serving (prefill and the decode
      compute term).  Same value and reason as `compute_eff_scale`: prefill and
      large-batch decode run the same cuBLAS/CUTLASS fp16 GEMMs as a training step,
      and the user's η (default 0.5) is the seeds' whole-step figure, so the GEMMs
      alone run at η·1.3 = 0.65 of peak before the tile factor.  mlsysim uses ~0.35
      for inference against 0.25–0.55 for training (seed 000 §1.1), which a user
      expresses through η itself.  Check (TensorRT-LLM, Llama-7B on one A100, fp16;
      `mlsys-opt validate`): 128-token TTFT 17.3 ms predicted vs 16.1 ms measured
      (+8 %; with 1.0 it was 22.4 ms, +39 %); static batch 256 × (128 in, 128 out)
      5,067 vs 5,353 tok/s (−5 %); batch 32 × (128, 2048) 1,527 vs 1,518 (+1 %).  1.3
      relies on the separate KV read of the decode step: with the seed's single roofline
      max((W + KV)/BW, compute), the KV read hides under the compute-bound batch-256 GEMMs
      and that row goes to +14 % (with 1.0 it was +2 % only because a too-slow prefill
      offset a too-fast decode step).
    - `matmul_rows_half` = 128.0 rows: GEMM row count (tokens per micro-batch)
      at which the tile factor x/(x + x½) is 1/2.  128 is the M-dimension of one
      tensor-core thread-block tile on A100/H100 (CUTLASS/cuBLAS 128×128/128×256
      tiles): a GEMM with fewer rows leaves tile rows idle.  The same form is the
      efficiency of a weight-streaming GEMM whose weight read does not overlap its
      FLOPs, t = 2·x·K·N/(peak·η∞) + bpe·K·N/(BW·mem_bw_eff), with x½ = η∞·peak·(bpe/2)
      /(BW·mem_bw_eff) = 0.65 × 312/(2.039 × 0.8) ≈ 124 rows on A100 fp16 at the
      training GEMM efficiency η∞ = η·compute_eff_scale; 128 agrees.  Prefill of 128
      tokens runs at η·prefill_eff_scale·½ = 0.325 of peak; TensorRT-LLM's Llama-7B
      TTFT on A100 (16.1 ms) implies ~0.35 (TTFT +8 %).
    - `mem_bw_eff` = 0.8: achieved/peak HBM bandwidth of streaming kernels
      (decode GEMV, optimizer update).  STREAM-like kernels reach 80–90 % of
      HBM peak on A100/H100 (NVIDIA "Dissecting the Ampere/Hopper GPU
      architecture" microbenchmarks); seed 000 §4.2 uses 1.0 for its worked
      example (our tests set it to 1.0 there).
    - `elementwise_traffic_scale` = 1.4: HBM traffic of the memory-bound,
      non-matmul operations of a training step (layernorm, dropout, residual
      adds, softmax and its dropout, GeLU), in units of the activation bytes a
      layer stores for backward.  Per GPU and step the scenario adds the time
        t_elem = scale · (3 + full_recompute) · M · (L/pp) · A / (mem_bw · mem_bw_eff)
      with A = s·b·h·(10 + 24/tp) + 5·a·s²·b/tp bytes per layer and micro-batch
      (Korthikanti et al. 2022, arXiv:2205.05198, Table 2, no recomputation, no
      sequence parallelism: every elementwise op's 16-bit input or output):
      the forward writes A (1), the backward reads it and writes its gradient
      (2), full recomputation runs the forward again (+1); selective
      recomputation adds the attention core's 5·a·s²·b/tp once more.  Physically 1–2:
      each tensor is touched at least once per pass (1) and fused/unfused
      kernels read an input and write an output (2); 1.4 assumes part of the
      chain is fused (Megatron-LM's fused bias-GeLU, bias-dropout-add and
      scaled-masked-softmax kernels, Narayanan et al. 2021 §4.2).  It is added
      to the compute time, not folded into the roofline's max: these kernels
      run between the GEMMs and cannot overlap with them.  0 switches it off.
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
    - `serial_host_s_per_seq` = 1e-4 s: host (CPU) time per running sequence of one
      decode iteration of an engine whose scheduler does not overlap the GPU
      (serving `scheduler = "serial"`: vLLM's V0 engine, 0.4-0.7), added to the step:
      scheduling, block-table and input preparation, sampling and output processing
      are Python work per sequence.  Source: vLLM issue #6801 (Performance Roadmap,
      2024-08-08): "when BS is 200, all this together [sampling, prepare input,
      process_model_output, scheduler] can be 20 ms" -> 0.1 ms per sequence; the
      multi-step-scheduling RFC #6854 (2024-07-26) saw 4 ms of GPU bubble per decode
      step on Llama-3-8B / 1 x H100 (5-13 ms in general).  Overlapping engines (SGLang
      >= 0.4's zero-overhead scheduler, TensorRT-LLM's overlap scheduler, vLLM V1) hide
      it (`scheduler = "overlapped"`, the default): 0 there.
    - `active_power_frac` = 1.0: average board power / TDP while busy.  1 keeps
      the seeds' convention (seed 000 §5.1 worked example: 64 GPUs × 400 W).
    - `idle_power_frac` = 0.25: board power / TDP of an idle accelerator
      (H100 SXM idles near 70–100 W of 700 W; A100 ~50–60 W of 400 W); serving
      fleets draw idle + (active − idle) × utilisation.
    - `achievable` = 1.0: weight of the achievable-rate model (module docstring):
      1 = per-part microbenchmark curves from the catalog (issue 19), 0 = the
      previous global-factor model; achieved rates blend linearly in between.
    """

    compute_eff_scale: Array = 1.3
    prefill_eff_scale: Array = 1.3
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
    serial_host_s_per_seq: Array = 1e-4
    active_power_frac: Array = 1.0
    idle_power_frac: Array = 0.25
    elementwise_traffic_scale: Array = 1.4
    achievable: Array = 1.0


DEFAULT_EFFICIENCY = Efficiency()


def tile_factor(rows: Array, eff: Efficiency = DEFAULT_EFFICIENCY) -> Array:
    """Tile-quantisation factor x / (x + x½) of a GEMM with `rows` rows (dimensionless, in [0, 1)).

    Written as 1 / (1 + x½/x) with x floored at 1e-30, so `matmul_rows_half = 0`
    gives exactly 1 and x → 0 gives 0, finite gradients everywhere.
    """
    rows = jnp.asarray(rows)   # float rows keep their dtype: a float32 sweep stays float32 under x64
    x = floor_pos(rows.astype(jnp.result_type(rows, float)), 1e-30)
    return 1.0 / (1.0 + eff.matmul_rows_half / x)


def _f(x: Array) -> Array:
    """x as a float array of its own dtype; Python numbers stay weakly typed (float32 stays float32)."""
    if isinstance(x, (int, float)):
        return float(x)
    x = jnp.asarray(x)
    return x.astype(jnp.result_type(x, float))


def _interp_log2(table: Array, x: Array, log2_first: float) -> Array:
    """table[..., k] sampled at x_k = 2^(log2_first + k), interpolated linearly in log2 x at x [...].

    Flat beyond the grid's ends; piecewise linear (differentiable between grid points).
    Shapes broadcast explicitly: table [..., n], x [...] -> [...].
    """
    return _interp_at_log2(table, jnp.log2(floor_pos(_f(x), 1e-30)), log2_first)


def _interp_at_log2(table: Array, log2_x: Array, log2_first: float) -> Array:
    """`_interp_log2` given log2 x instead of x (callers that have the logarithm already)."""
    table = jnp.asarray(table)
    n = table.shape[-1]
    u = jnp.clip(log2_x - log2_first, 0.0, n - 1.0)
    out = 0.0
    for k in range(n):      # hat functions: elementwise, fuses (no gather)
        out = out + table[..., k] * jnp.maximum(1.0 - jnp.abs(u - k), 0.0)
    return out


def gemm_dims(rows: Array, hidden: Array = 0.0, ffn: Array = 0.0, tp: Array = 1.0):
    """(M, K, N) of a transformer layer's MLP up-projection, its largest GEMM (elements).

    M = rows, K = hidden, N = ffn/tp (4·hidden/tp when ffn = 0); hidden = 0 (CNN,
    unknown shape): a square M x M x M.
    """
    m = floor_pos(_f(rows), 1.0)
    h = _f(hidden)
    ffn = _f(ffn)
    k = jnp.where(h > 0, floor_pos(h, 1.0), m)
    n = jnp.where(h > 0, floor_pos(jnp.where(ffn > 0, ffn, 4.0 * h) / floor_pos(_f(tp), 1.0), 1.0), m)
    return m, k, n


def gemm_size(rows: Array, hidden: Array = 0.0, ffn: Array = 0.0, tp: Array = 1.0) -> Array:
    """Equal-work square size n_eq = (M·K·N)^(1/3) of `gemm_dims` (elements).

    Example: 2048 rows, hidden 12288, ffn 49152, tp 8: (2048·12288·6144)^(1/3) = 5,367.
    """
    m, k, n = gemm_dims(rows, hidden, ffn, tp)
    return jnp.cbrt(m * k * n)


def gemm_curve(gemm: Array, size: Array) -> Array:
    """A part's GEMM efficiency g(n) (fraction of peak) at square size n (table [..., 5] at GEMM_SIZES)."""
    return _interp_log2(gemm, size, _LOG2_GEMM0)


def gemm_mnk_efficiency(gemm: Array, m: Array, k: Array, n: Array, eff: Efficiency = DEFAULT_EFFICIENCY, *,
                        tile: bool = True) -> Array:
    """Microbenchmark efficiency of an M x K x N GEMM: g(n_eq) · tile(d)/tile(n_eq) (fraction of peak).

    n_eq = (M·K·N)^(1/3) (the square GEMM of equal work); d = min(M, K, N), the skinny
    dimension; tile(x) = x/(x + matmul_rows_half) (`tile_factor`), so a square GEMM gets
    exactly g(n) and a skinny one less.  tile=False: g(n_eq) alone.
    Cross-check (tests/test_achievable.py): Azure's non-square cuBLASLt points
    (1024x2145x1024, 6144x12288x12288, 802816x192x768 on A100 fp16 and H100 fp8) within 30 %.
    """
    m, k, n = _f(m), _f(k), _f(n)
    # log2 n_eq = log2(M·K·N)/3 and n_eq = 2^that: jnp.cbrt is a scalar libm call on XLA's CPU
    # (10 ns per element, a third of the training scenario's time) where log2/exp2 are vectorised
    log2_n_eq = jnp.log2(floor_pos(m, 1.0) * floor_pos(k, 1.0) * floor_pos(n, 1.0)) / 3.0
    g = _interp_at_log2(gemm, log2_n_eq, _LOG2_GEMM0)
    if not tile:
        return g
    d = jnp.minimum(jnp.minimum(m, k), n)
    return g * tile_factor(d, eff) / tile_factor(jnp.exp2(log2_n_eq), eff)


def gemm_shape_efficiency(gemm: Array, rows: Array, hidden: Array = 0.0, ffn: Array = 0.0, tp: Array = 1.0,
                          eff: Efficiency = DEFAULT_EFFICIENCY, *, tile: bool = True) -> Array:
    """`gemm_mnk_efficiency` of the MLP up-projection `gemm_dims(rows, hidden, ffn, tp)`."""
    m, k, n = gemm_dims(rows, hidden, ffn, tp)
    return gemm_mnk_efficiency(gemm, m, k, n, eff, tile=tile)


def _shape_args(part: Any, gemm, hidden, ffn):
    if part is not None:
        gemm = part.gemm_eff if gemm is None else gemm
        hidden = part.hidden if hidden is None else hidden
        ffn = part.ffn_dim if ffn is None else ffn
    return gemm, (0.0 if hidden is None else hidden), (0.0 if ffn is None else ffn)


def _blend(old: Array, new: Array, eff: Efficiency) -> Array:
    return old + eff.achievable * (new - old)


def _scaled_gemm_efficiency(eta, scale, rows, eff, part, gemm, hidden, ffn, tp) -> Array:
    """min(1, η·scale·x/(x + x½)) (previous model), blended with the part's GEMM curve when it is known."""
    old = jnp.minimum(eta * scale * tile_factor(rows, eff), 1.0)
    gemm, hidden, ffn = _shape_args(part, gemm, hidden, ffn)
    if gemm is None:
        return old
    shape = gemm_shape_efficiency(gemm, rows, hidden, ffn, tp, eff)
    return _blend(old, jnp.minimum(eta * scale * shape / GEMM_REF_EFF, 1.0), eff)


def matmul_efficiency(eta: Array, rows: Array, eff: Efficiency = DEFAULT_EFFICIENCY, *, part: Any = None,
                      gemm: Array | None = None, hidden: Array | None = None, ffn: Array | None = None,
                      tp: Array = 1.0) -> Array:
    """Achieved fraction of peak for training matmuls.

    Previous model (no `part`/`gemm`, or eff.achievable = 0): min(1, η · compute_eff_scale · x/(x + x½)).
    With the part's curve (part = the gathered `parts.Common`, or gemm/hidden/ffn given):
    min(1, η · compute_eff_scale · g(n_eq) · tile(M)/tile(n_eq) / GEMM_REF_EFF), blended by
    eff.achievable (module docstring).  rows = M, tokens per micro-batch; tp divides N.
    """
    return _scaled_gemm_efficiency(eta, eff.compute_eff_scale, rows, eff, part, gemm, hidden, ffn, tp)


def prefill_efficiency(eta: Array, rows: Array, eff: Efficiency = DEFAULT_EFFICIENCY, *, part: Any = None,
                       gemm: Array | None = None, hidden: Array | None = None, ffn: Array | None = None,
                       tp: Array = 1.0) -> Array:
    """Achieved fraction of peak for prefill (rows = prompt tokens); as `matmul_efficiency` with prefill_eff_scale."""
    return _scaled_gemm_efficiency(eta, eff.prefill_eff_scale, rows, eff, part, gemm, hidden, ffn, tp)


def decode_compute_efficiency(eta: Array, eff: Efficiency = DEFAULT_EFFICIENCY, *, part: Any = None,
                              rows: Array = 1.0, gemm: Array | None = None, hidden: Array | None = None,
                              ffn: Array | None = None, tp: Array = 1.0) -> Array:
    """Achieved fraction of peak for the compute term of a decode step (rows = batch).

    Previous model: min(1, η · prefill_eff_scale).  With the part's curve: min(1, η ·
    prefill_eff_scale · g(n_eq) / GEMM_REF_EFF), no tile factor (the decode wall's
    max(W/BW, compute) already charges a small batch for its weight read).
    """
    old = jnp.minimum(eta * eff.prefill_eff_scale, 1.0)
    gemm, hidden, ffn = _shape_args(part, gemm, hidden, ffn)
    if gemm is None:
        return old
    g = gemm_shape_efficiency(gemm, rows, hidden, ffn, tp, eff, tile=False)
    return _blend(old, jnp.minimum(eta * eff.prefill_eff_scale * g / GEMM_REF_EFF, 1.0), eff)


# FlashAttention-1-generation kernels (flash-attn 1.x, the Triton FlashAttention) run at this
# fraction of FlashAttention-2's forward+backward rate: causal, head dim 128, 2k-16k tokens,
# FA1 / FA2 TFLOP/s read from the FA2 README figures (Dao-AILab/flash-attention assets,
# commit 0251105, panel d): H100 108/265, 126/294, 135/308, 137/328 (0.41-0.44); A100 69/155,
# 76/173, 80/182, 83/189 (0.44); mean of the eight 0.432 (the FA2 paper's "around 2x").
# One constant, not a curve: the ratio is flat in the sequence length over 2k-16k (A100 0.439-0.445,
# H100 0.41-0.44), so the FA2 curve carries the length dependence; only head dim 128 was read (every
# row mapped to fa1 has head dim 128).  llm-foundry's attn_impl 'triton' (llmfoundry/models/layers/
# flash_attn_triton.py @v0.3.0, a copy of Dao-AILab/flash-attention flash_attn_triton.py @eff9fe6) is
# this generation too: its docstring says "Triton forward + backward is slightly slower than CUDA
# forward + backward", llm-foundry's TUTORIAL.md @v0.3.0 that "triton is slightly faster than flash"
# (flash-attn 1.x); the FA2 README's "Triton" bars are OpenAI's triton.ops.flash_attention (benchmarks/
# benchmark_flash_attention.py imports it), not this kernel.
FLASH1_OF_FLASH2 = 0.43


def unfused_elementwise_factor(kv_ratio: Array, ffn_ratio: Array) -> Array:
    """HBM traffic of a Llama block's elementwise ops run as PyTorch eager kernels / as fused kernels.

    Counted per element of the s·b·h activation, 16-bit tensors, forward pass, from the ops
    (torchtitan's Llama at 9dec370; the same for any pre-norm RMSNorm/RoPE/SwiGLU block), with
    g = kv_ratio = n_kv_heads/n_heads (RoPE also rotates the g·h keys) and r = ffn_ratio =
    ffn/hidden (SwiGLU runs on r·h elements); bytes read + written per element::

        eager: RMSNorm (x.float() 2+4, pow 4+4, mean 4, ×rsqrt 4+4, type_as 4+2, ×w 2+2) 36, ×2 norms
               RoPE (float 2+4, complex mul 4+4, type_as 4+2) 20·(1 + g)
               residual add (4+2) 6, ×2;  SwiGLU silu (2+2) + mul (4+2) = 10·r
               E = 84 + 20·(1 + g) + 10·r
        fused: add + RMSNorm in one kernel (read x, branch; write sum, normed) 8, ×2
               RoPE (2+2) 4·(1 + g);  SwiGLU (read gate, up; write) 6·r
               F = 16 + 4·(1 + g) + 6·r
        factor = E / F         (Llama-3-8B, g = 1/4, r = 3.5: 144/42 = 3.43)

    The backward of each op reads its saved inputs and the output gradient and writes the input
    gradient (about twice its forward traffic, fused or not), so the same ratio is applied to
    the whole elementwise term.  Copies both paths make (repeat_kv for GQA, head transposes) are
    not counted.  Fused = Megatron-LM/Transformer Engine kernels or torch.compile (Inductor fuses
    chains of pointwise ops and reductions into one kernel).  Dimensionless, >= 1; ffn_ratio = 0
    (unknown) counts as 4.  Check (torchtitan Dec 2024 Table 1/3, Llama 3.1 8B, 8 and 128 H100s:
    eager 5,762 / 5,605 vs torch.compile 6,667 / 6,514 tokens/s/GPU, 1.16x) in
    tests/test_training_physics.py.
    """
    g = jnp.maximum(_f(kv_ratio), 0.0)
    r = _f(ffn_ratio)
    r = jnp.where(r > 0, r, 4.0)
    return (84.0 + 20.0 * (1.0 + g) + 10.0 * r) / (16.0 + 4.0 * (1.0 + g) + 6.0 * r)


def attention_efficiency(curve: Array, seq_len: Array) -> Array:
    """FlashAttention efficiency (fraction of the fp16 peak) at sequence length seq_len.

    curve: a part's `attention_fwdbwd_eff` or `attention_fwd_eff` row [..., 6] at
    ATTENTION_SEQLENS (512..16384, log2-linear, flat beyond).  Head dim 128; forward+backward
    is FA2's causal series where it was read (training is causal), forward FA3's non-causal
    (Dao-AILab/flash-attention benchmark figures; catalog/achievable.py).
    """
    return _interp_log2(curve, seq_len, _LOG2_ATTN0)


def busbw_fraction(curve: Array, msg_bytes: Array) -> Array:
    """Measured all-reduce bus bandwidth / link peak at message size msg_bytes (bytes).

    curve: a `busbw_curve` / `scaleup_busbw_curve` row [..., 25] at MSG_BYTES (1 KiB..16 GiB,
    log2-linear, flat beyond); nccl-tests busbw = algbw · 2(n-1)/n.  0 where the link has no data.
    """
    return _interp_log2(curve, msg_bytes, _LOG2_MSG0)
