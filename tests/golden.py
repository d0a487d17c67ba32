"""Golden values of the walls, kept once: every seed / paper reference value the wall tests
check, as ``(wall, args, expected, tolerance, source)`` rows, and the seed hardware constants
the tests share.  tests/test_golden.py checks every row; the per-wall test files keep what is
not a golden value (batched == scalar, gradients, properties, branch logic, identities).

A row names its wall as ``"module:function"`` under ``mlsys_opt.walls`` and, for a wall that
returns a NamedTuple, the output ``field``.  ``expected`` is in SI units; a value as a seed
prints it is written ``printed("41.8", MS)``: 41.8 ms with the tolerance of its last printed
digit (± 0.05 ms).  Where a seed's printed arithmetic disagrees with its own equation the row
follows the equation and its source says so (docs/CONTRACTS.md).

Seeds: /work/shared/seeds/ (000 Mathematical Foundations, 001 Machine Foundations, 002 the 22
Laws, 003 Llama-3-70B audit, 004 cheat sheet); the walls' docstrings repeat the examples.
"""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, NamedTuple

# ----------------------------------------------------------------------------- units (SI)
MS = 1e-3
MIN = 60.0
HOUR = 3600.0
DAY = 86400.0
YEAR = 365.0 * DAY
KWH = 3.6e6
GB = 1e9

# ----------------------------------------------------------------------------- seed hardware
H100_PEAK = 989e12       # FLOP/s, fp16 dense (seed 001; catalog h100_sxm)
H100_BW = 3.35e12        # B/s HBM3 (seed 001)
A100_PEAK = 312e12       # FLOP/s, fp16 dense (seed 001; catalog a100_*)
A100_40GB_BW = 1.555e12  # B/s (catalog a100_40gb; seed 001's ridge "~208" used 1.5 TB/s)
IB_NDR = 50e9            # B/s per GPU, InfiniBand NDR (seed 000 §2.3)
NVLINK4 = 450e9          # B/s per GPU, NVLink 4 (H100 SXM)
GPU_MTBF_S = 50_000 * HOUR   # per-GPU MTBF (seed 000 §7.1, seed 002 wall 15)


class Printed(NamedTuple):
    value: float   # SI
    atol: float    # half a unit of the last printed digit, SI


def printed(text: str, unit: float = 1.0) -> Printed:
    """A value as a seed prints it: ``printed("41.8", MS)`` = 0.0418 s ± 0.05 ms."""
    exp = Decimal(text).as_tuple().exponent
    return Printed(float(text) * unit, 0.5 * 10.0 ** exp * unit)


class Golden(NamedTuple):
    wall: str                 # "module:function" under mlsys_opt.walls
    args: tuple
    kwargs: dict
    field: str | None         # NamedTuple output field; None for a one-array wall
    expected: Any             # float or list (SI)
    rtol: float
    atol: float
    source: str

    @property
    def id(self) -> str:
        return f"{self.wall.split(':')[1]}.{self.field or 'out'}[{self.source.split(':')[0][:40]}]"


def row(wall, args, expected, source, *, field=None, rtol=1e-12, atol=0.0, **kwargs) -> Golden:
    if isinstance(expected, Printed):
        expected, atol, rtol = expected.value, expected.atol, 0.0
    return Golden(wall, tuple(args), kwargs, field, expected, rtol, atol, source)


_ONPREM_USD = 350e3 / 3 + 0.05 * 350e3          # seed 000 §6 node: capex/3 yr + 5 % maintenance
_TAU_OPT = math.sqrt(720.0) * MIN               # Young-Daly at δ = 2 min, M = 180 min

GOLDEN: list[Golden] = [
    # ------------------------------------------------------------------ node: walls 1-7
    row("node:ridge_point", (H100_PEAK, H100_BW), 989.0 / 3.35,
        "seed 000 §1.2 (≈ 296), seed 001 (295): equation 295.2 FLOP/B"),
    row("node:ridge_point", (A100_PEAK, A100_40GB_BW), 312.0 / 1.555,
        "seed 001: ~208 used 1.5 TB/s; a100_40gb 1.555 TB/s gives 200.6"),
    row("node:dense_layer", (2048, 512, 1, 2.0), printed("2.1", 1e6), "seed 000 §1.2: 2.1M FLOPs", field="flop"),
    row("node:dense_layer", (2048, 512, 1, 2.0), printed("2.1", 1e6), "seed 000 §1.2: 2.1 MB of weights",
        field="weight_bytes"),
    row("node:roofline", (16e9, 0.0, H100_PEAK, H100_BW), printed("0.03", MS),
        "seed 002 wall 1: 0.03 milliseconds at η = 0.5", field="t_compute_s", efficiency=0.5),
    row("node:roofline", (0.0, 16e9, H100_PEAK, H100_BW), printed("4.8", MS), "seed 002 wall 2: 4.8 ms",
        field="t_memory_s"),
    row("node:mfu", (450e12, H100_PEAK), 450.0 / 989.0, "seed 002 wall 3: 45% (truncated from 45.5 %)"),
    row("node:model_flops_utilization", (1.2e16, 10.0, 8, A100_PEAK), 1.2e16 / (10 * 8 * A100_PEAK),
        "Chowdhery et al. 2022 (PaLM) §B: 0.481 (docstring example)"),
    row("node:decode", (140e9, 0.0, 70e9, 1, H100_PEAK, H100_BW), printed("41.8", MS),
        "seed 002 wall 4: Llama-3-70B decode memory time 41.8 ms", field="t_memory_s"),
    row("node:decode", (140e9, 0.0, 70e9, 1, H100_PEAK, H100_BW), printed("0.14", MS),
        "seed 002 wall 4: compute 0.14 ms", field="t_compute_s"),
    row("node:decode", (140e9, 0.0, 70e9, 1, H100_PEAK, H100_BW), printed("42", MS),
        "seed 002 wall 4: ~42 ms/token", field="itl_s"),
    row("node:kv_cache_bytes", (80, 8, 128, 1, 1, 2.0), 327_680.0,
        "seed 001: Llama-3-70B 327 KB per token (decimal kB = 320 KiB)"),
    row("node:kv_cache_bytes", (80, 8, 128, 4096, 16, 2.0), 20 * 2.0**30,
        "seed 001: 21.5 GB at batch 16 (decimal GB = 20.0 GiB)"),
    row("node:kv_cache_bytes", (80, 8, 128, 4096, 32, 2.0), 40 * 2.0**30,
        "seed 001: 43 GB at batch 32 (decimal GB = 40.0 GiB)"),
    row("node:inference_memory", (70e9 * 0.5, 40 * 2.0**30, 0.0), printed("78", GB),
        "seed 001: 78 GB, barely fits (int4 weights; fp16 would be 140 GB)", field="total_bytes"),
    row("node:kv_cache_bytes", (32, 8, 128, 4096, 1, 2.0), 512 * 2.0**20,
        "seed 002 wall 5: Llama-3-8B ~500 MB per request"),
    row("node:max_batch", (80e9, 8.03e9 * 2, 512 * 2.0**20), 119.0,
        "seed 002 wall 5: ~100 requests; equation floor(63.94e9 / 536.9e6) = 119"),
    row("node:kv_cache_bytes", (61, 128, 128, 1, 1, 2.0), 61 * 576 * 2.0,
        "DeepSeek-V3 arXiv:2412.19437 §2.1.1: MLA caches 512 + 64 elements per layer", kv_latent_dim=576),
    row("node:kv_cache_bytes", (61, 128, 128, 1, 1, 2.0), 3_997_696.0,
        "DeepSeek-V2 arXiv:2405.04434 Table 1: MHA 2·L·H·d·b, 56.9x MLA"),
    row("node:training_memory", (7e9, 0.0), 112e9, "seed 001: 7B params -> 112 GB (16 B/param)",
        field="total_bytes"),
    row("queueing:mmc_queue", (8.0, 1.0, 10.0), 0.4092, "Kleinrock 1975 §3.5: Erlang C, λ = 8, μ = 1, c = 10",
        field="p_wait", rtol=0.0, atol=5e-5),
    row("queueing:mmc_queue", (8.0, 1.0, 10.0), 0.2046, "Kleinrock 1975 §3.5: Wq = C/(cμ − λ)",
        field="mean_wait_s", rtol=0.0, atol=5e-5),
    row("queueing:mmc_queue", (8.0, 1.0, 10.0), 2.8558, "seed 002 wall 7 form: 1/μ + ln(C/0.01)/(cμ − λ)",
        field="p99_latency_s", rtol=0.0, atol=5e-5),
    # ------------------------------------------------------------------ data: walls 8-10
    row("data:ingestion", (4 * 512 * 2048 * 2.0, 5e9), 0.0,
        "seed 003 §3: ~8 MB per step of text is not data bound", field="stall_frac"),
    row("data:transformation_time", (256.0, 2048.0, 1e6, 0.4), 0.524288,
        "seed 002 wall 9: Time = Batch × Sequence / CPU_Throughput", field="step_s"),
    row("data:locality", (IB_NDR, 1.0, 2.0), 25e9, "seed 002 wall 10: IB NDR, fat tree, 2:1 tapering"),
    # ------------------------------------------------------------------ laws
    row("laws:amdahl", (0.05, 8.0), 1 / (0.05 + 0.95 / 8), "seed 001: 5.9x at s = 0.05, n = 8"),
    row("laws:amdahl", (0.01, 8.0), printed("7.5"), "seed 001: 'Show: ~7.5x' needs s = 0.01"),
    row("laws:amdahl", (0.05, math.inf), 20.0, "seed 001: capped at 1/0.05 = 20x"),
    row("laws:amdahl", (0.1, math.inf), 10.0, "seed 001 checkpoint: 10 % serial -> at most 10x"),
    row("laws:gustafson", (0.05, 8.0), 7.65, "seed 001: 7.65 (its 'Show: ~7.67x' is off by 0.02)"),
    row("laws:gustafson", (0.05, 1000.0), 950.05, "seed 001: 950 (its 'Show: ~951x' disagrees)"),
    row("laws:gustafson", (0.1, 256.0), 230.5, "seed 001 checkpoint question: 230.5x"),
    row("laws:little", (1000.0, 0.050), 50.0, "seed 001: 1000 QPS × 50 ms = 50 requests"),
    row("laws:little", (500.0, 0.100), 50.0, "seed 001 checkpoint: 500 QPS × 100 ms"),
    row("laws:little_throughput_per_s", (24.0, 0.050), 480.0, "seed 001: 24 GB / 1 GB per request -> 480 QPS"),
    row("laws:training_time_s", (1e9, 20e9, A100_PEAK, 0.40), printed("961538"),
        "seed 001 Training Time Equation: 961538 seconds"),
    row("laws:training_time_s", (1e9, 20e9, A100_PEAK, 0.40), printed("16026", MIN), "seed 001: ≈ 16026 minutes"),
    row("laws:training_time_s", (1e9, 20e9, A100_PEAK, 0.40), printed("11", DAY), "seed 001: about 11 days"),
    row("laws:effective_flop_per_s", (H100_PEAK, 0.4, 0.85, 0.95), 989e12 * 0.4 * 0.85 * 0.95,
        "seed 000 §9 loss cascade: 3.195e14 FLOP/s"),
    *[row(w, (n_params, tokens), flop, src)
      for w in ("laws:training_flop", "algorithm:training_flop")
      for n_params, tokens, flop, src in (
          (1e9, 20e9, 1.2e20, "seed 001: 6PD, 1B params on 20B tokens"),
          (175e9, 300e9, 3.15e23, "seed 000 §3: GPT-3, 6 × 175e9 × 300e9"),
          (7e9, 1e12, printed("4", 1e22), "seed 001 scaling rules: 7B on 1T tokens, 4 × 10^22"))],
    *[row(w, (3.15e23, 1024.0, A100_PEAK, 0.5, eta, 1.0), want, src)
      for w in ("laws:iron_law_time_s", "analysis:iron_law")
      for eta, want, src in (
          (1.0, printed("1.97", 1e6), "seed 000 §3: GPT-3 on 1024 A100s at MFU 0.5, 1.97e6 s"),
          (1.0, printed("23", DAY), "seed 000 §3: ~23 days"),
          (0.6, printed("38", DAY), "seed 000 §3: ~34 days 'at ~60 %' is 38 days by the equation"),
          (0.67, printed("34", DAY), "seed 000 §3: 34 days is η ≈ 0.67"))],
    # ------------------------------------------------------------------ fleet: walls 14-16
    row("fleet:ring_allreduce", (140 * GB, 1024, IB_NDR, 0.0), 2 * 1023 / 1024 * 140 / 50,
        "seed 000 §2.3: 140 GB over 1024 GPUs, bandwidth term ~5.6 s"),
    row("fleet:ring_allreduce", (0.0, 1024, IB_NDR, 2e-6), 4.092e-3, "seed 000 §2.3: latency term ~4 ms",
        rtol=1e-9),
    row("fleet:ring_allreduce", (1 * GB, 8, 50 * GB, 0.0), 0.035,
        "seed 002 wall 14: 1 GB across 8 GPUs at 50 GB/s takes 35 ms"),
    row("fleet:pipeline_bubble", ([4.0, 4.0, 8.0, 16.0], [16.0, 16.0, 32.0, 16.0], [1.0, 2.0, 1.0, 1.0]),
        [3 / 19, 3 / 35, 7 / 39, 15 / 31], "seed 000 §2.4 bubble table: 15.8 / 8.6 / 17.9 / 48.4 %"),
    row("fleet:ring_tree_crossover_bytes", (1024, 2e-6, IB_NDR), 102.4e6, "seed 000 §2.3: N·α·β rule of thumb"),
    row("fleet:ring_tree_crossover_exact_bytes", (1024, 2e-6, IB_NDR), 1e5 * 1013 / (10 - 1023 / 1024),
        "seed 000 §2.3 formulas, ring = tree: 11.3 MB"),
    row("fleet:hierarchical_allreduce", (140 * GB, 8, 64, NVLINK4, 0.0, IB_NDR, 0.0),
        2 * 7 / 8 * 140 / 450 + 2 * 63 / 64 * 17.5 / 50, "seed 000 §2.3 rings: NVLink ring + IB ring of 1/8"),
    row("fleet:scaling_efficiency", (1.0, 0.2, 0.0, 0.0, 0.05), 0.8,
        "seed 000 §2.2: 80 % on 256 GPUs = the throughput of ~205 GPUs"),
    row("fleet:cluster_mtbf_s", (GPU_MTBF_S, [1000.0, 10_000.0, 100_000.0]), [50 * HOUR, 5 * HOUR, 0.5 * HOUR],
        "seed 000 §7.1, seed 002 wall 15: 50 h / 5 h / 30 min"),
    row("fleet:cluster_mtbf_s", (GPU_MTBF_S, 16_000), printed("3", HOUR), "seed 000 §7.1: 16,000 GPUs ~3 hours"),
    row("fleet:cluster_mtbf_s", (GPU_MTBF_S, 1000), printed("2", DAY),
        "seed 002 wall 15: at 1000 GPUs something breaks every 2 days"),
    row("fleet:expected_failures", (54 * DAY, GPU_MTBF_S / 16_384), 419.0,
        "Dubey et al. 2024 (Llama 3) §3.3.4: 419 interruptions in 54 days on 16,384 GPUs", rtol=0.02),
    row("fleet:failure_probability", (30 * DAY, 5 * HOUR), 1.0, "seed 000 §7.1: 30 days at 5 h MTBF, 1 − e^−144",
        atol=1e-15),
    row("fleet:expected_failures", (30 * DAY, GPU_MTBF_S / 512), 720 * 512 / 50_000,
        "seed 003 fleet: 512 GPUs, 30 days -> 7.4 failures"),
    row("fleet:failure_probability", (30 * DAY, GPU_MTBF_S / 512), 1 - math.exp(-7.3728),
        "seed 003 fleet: P(failure in 30 days) = 0.9994"),
    row("fleet:multitenant_wait", (0.8, 1 / (2 * DAY)), 4 * DAY,
        "seed 002 wall 16: at 80 % utilization the wait is 2x the job"),
    # ------------------------------------------------------------------ ops: walls 17-20
    row("ops:sustainability", (64 * 400.0, 336 * HOUR, 1.2, 429.0, 0.0), printed("8602", KWH),
        "seed 000 §8 carbon table: 64 GPUs × 400 W × 336 h", field="it_energy_j"),
    row("ops:sustainability", (64 * 400.0, 336 * HOUR, 1.2, 429.0, 0.0), printed("10322", KWH),
        "seed 000 §8 carbon table: PUE 1.2", field="energy_j"),
    row("ops:sustainability", (64 * 400.0, 336 * HOUR, 1.2, [20.0, 429.0, 820.0], 0.0), [206.0, 4428.0, 8464.0],
        "seed 000 §8 carbon table: Quebec / US avg / Poland kg (41x)", field="carbon_kg", rtol=0.0, atol=0.5),
    row("ops:sustainability", (64 * 400.0, 336 * HOUR, 1.2, 429.0, 1.8), 8601.6 * 1.8,
        "The Green Grid WUE: litres per kWh of IT energy", field="water_l"),
    row("ops:tco", (350e3, 1.0, YEAR, 0.0, 0.0, 1.0), 350e3 / 3, "seed 000 §6 TCO: $116,667 / yr",
        field="capex_usd"),
    row("ops:tco", (350e3, 1.0, YEAR, 0.0, 0.0, 1.0), 17_500.0, "seed 000 §6 TCO: 5 % maintenance / yr",
        field="opex_maintenance_usd"),
    row("ops:tco", (350e3, 1.0, YEAR, 8 * 700.0 * 0.8, 0.10, 1.1), 122e3,
        "seed 000 §6: ~$122K/node/yr = capex + energy, no maintenance", field="tco_usd", rtol=0.02,
        maintenance_frac_per_year=0.0),
    row("ops:effective_usd_per_device_s", (_ONPREM_USD, 8.0, YEAR), printed("2.4", 1 / HOUR),
        "seed 000 §6: on-prem ~$2.40 per GPU-hour at 80 %", utilization_frac=0.8),
    row("ops:effective_usd_per_device_s", (_ONPREM_USD, 8.0, YEAR), 134_166.67 / (8 * 8760 * 0.2) / HOUR,
        "seed 000 §6: '~$6/GPU-h at 20 %' is $9.57 by the equation", rtol=1e-6, utilization_frac=0.2),
    row("ops:cloud_cost", (4.00 / HOUR, 8.0, YEAR), 4.00 * 8 * 8760 * 0.8, "seed 000 §6: cloud ~$224K/node/yr",
        utilization_frac=0.8),
    row("ops:breakeven_utilization", (_ONPREM_USD, 4.00 / HOUR, 8.0, YEAR), 134_166.67 / (4.00 * 8 * 8760),
        "seed 000 §6: u* = C/(cNT) = 47.9 % (its '~55 %' disagrees)", rtol=1e-6),
    row("ops:breakeven_utilization", (_ONPREM_USD, 4.00 / HOUR, 8.0, YEAR), 2.40 * 0.8 / 4.00,
        "seed 000 §6: $2.40 vs $4.00 at 80 % imply 48 %", rtol=0.0, atol=0.005),
    row("ops:cost_per_useful_flop", (2.40, 1.0, HOUR, H100_PEAK, 0.4), 2.40 / (989e12 * 0.4 * 3600),
        "seed 000 §6: $2.40 per H100-hour at MFU 0.4, 1.69e-18 USD/FLOP"),
    row("ops:young_daly_interval_s", (2 * MIN, 180 * MIN), _TAU_OPT, "seed 000 §7.3: τ = √(2δM) = 26.8 min"),
    row("ops:young_daly_interval_s", (2 * MIN, 180 * MIN), printed("27", MIN), "seed 000 §7.3: ~27 min"),
    row("ops:checkpoint_overhead", ([10 * MIN, _TAU_OPT, 60 * MIN], 2 * MIN, 180 * MIN),
        [0.2 + 10 / 360, 2 * math.sqrt(2 / 360), 2 / 60 + 60 / 360],
        "seed 000 §7.3 table (17/7/15 % printed; Young's δ/τ + τ/2M gives 22.8/14.9/20.0 %)"),
    row("ops:checkpoint_overhead_halfwrite", ([10 * MIN, _TAU_OPT, 60 * MIN], 2 * MIN, 180 * MIN),
        [0.1 + 10 / 360, 1 / math.sqrt(720) + math.sqrt(720) / 360, 1 / 60 + 60 / 360],
        "seed 000 §7.3 equation δ/(2τ) + τ/(2M): 12.8/11.2/18.3 %"),
    row("ops:young_daly_interval_s", (2 * MIN, 4 * HOUR), math.sqrt(960.0) * MIN,
        "seed 003 self-check: MTBF 4 h, checkpoint 2 min -> 31.0 min"),
    row("ops:checkpoint_overhead", (math.sqrt(960.0) * MIN, 2 * MIN, 4 * HOUR), 2 * math.sqrt(2 / 480),
        "seed 003 self-check: 2 × 6.45 % at the optimum"),
    row("ops:goodput", (_TAU_OPT, 2 * MIN, 180 * MIN), 1 - 2 * math.sqrt(2 / 360),
        "seed 000 §9: goodput 0.851 (typical 0.85-0.97)"),
    row("ops:goodput_daly", (_TAU_OPT, 2 * MIN, 180 * MIN), 0.8581, "Daly 2006 exact model: 0.858",
        rtol=0.0, atol=5e-4),
    row("ops:goodput_halfwrite", (10 * MIN, 2 * MIN, 180 * MIN), 1 - 0.1 - 10 / 360,
        "seed 000 §7.3 half-write form at τ = 10 min"),
    row("ops:dp_sgd_slowdown", ([1.0, 10.0, 1e9],), [3.0, 1.2, 1.0],
        "seed 002 wall 20 heuristic: 3x at ε = 1, 1.2x at ε = 10", rtol=1e-8),
    # ------------------------------------------------------------------ analysis: walls 21-22
    row("analysis:loss_cascade", (1024, A100_PEAK, 0.5, 0.6, 0.9), 8.626176e16,
        "seed 000 §9 loss cascade: 1024 A100s, MFU 0.5, η 0.6, goodput 0.9", field="effective_flop_per_s"),
    row("analysis:loss_cascade", (1024, A100_PEAK, 0.5, 0.6, 0.9), 9.58464e16, "seed 000 §9 after scaling",
        field="after_scaling_flop_per_s"),
    row("analysis:loss_cascade", ([1.0, 1.0], 1.0, [0.3, 0.5], [0.4, 0.85], [0.85, 0.97]), [0.102, 0.41225],
        "seed 000 §9: 10-35 % of peak (its ranges give 10.2-41.2 %)", field="effective_flop_per_s", rtol=1e-9),
    row("analysis:required_bandwidth", (140e9, 0.050), 2.8e12,
        "seed 002 wall 22: 50 ms decode of a 140 GB model needs 2.8 TB/s"),
    row("analysis:required_flop_per_s", (1.4e11, 0.05, 0.5), 5.6e12, "seed 002 wall 22 (docstring example)"),
    row("analysis:required_devices", (6 * 70e9 * 15e12, 14 * DAY, H100_PEAK, 0.4, 1.0, 1.0),
        6.3e24 / (14 * DAY * 989e12 * 0.4), "seed 003 exercise 3: Llama-3 70B, 15T tokens, 14 days -> 13,166 H100"),
    # ------------------------------------------------------------------ algorithm: walls 11-13
    row("algorithm:chinchilla", (9.72e23,), 90e9, "seed 002 wall 11: $10M -> ~90B params", field="optimal_params",
        rtol=1e-3),
    row("algorithm:chinchilla", (9.72e23,), 1.8e12, "seed 002 wall 11: on ~1.8T tokens", field="optimal_tokens",
        rtol=1e-3),
    row("algorithm:flop_for_budget", (10e6, 2.40 / HOUR, H100_PEAK, 0.4), 5.934e24,
        "seed 000 §6 price: $10M of H100 at MFU 0.4", rtol=1e-3),
    row("algorithm:chinchilla", (10e6 / (2.40 / HOUR) * H100_PEAK * 0.4,), 2.224e11,
        "Hoffmann et al. 2022: P* = √(C/120) for $10M of H100", field="optimal_params", rtol=1e-3),
    row("algorithm:tokens_per_param", (15e12, 70e9), 214.2857, "seed 003: Llama-3 70B on 15T tokens", rtol=1e-6),
    row("algorithm:quantization", (1e9, 32.0, [16.0, 8.0, 4.0]), [2.0, 4.0, 8.0],
        "seed 002 wall 13: FP32 -> INT8 = 4x smaller", field="ratio"),
    row("algorithm:quantization", (8e9, 16.0, 4.0), 4e9, "seed 002 wall 13: int4 of 8 GB", field="size_bytes"),
    row("algorithm:quantization", (8e9, 16.0, 4.0), -0.025, "mlsysim anchor: int4 −2.5 %",
        field="accuracy_delta_frac"),
    row("algorithm:pruning", (8e9, 0.5, [0, 1, 2]), [1.0, 2.0, 2.0],
        "seed 002 wall 13: 50 % sparse, unstructured gives no GEMM speed-up", field="speedup"),
    row("algorithm:pruning", (8e9, 0.5, 0), 2.0, "seed 002 wall 13: 50 % sparse = 2x smaller", field="ratio"),
    row("algorithm:reasoning", (8.0, 1.0, 70e9), 400 * 2 * 70e9, "seed 002 wall 12: 8 steps × 50 tokens",
        field="flop", tokens_per_step=50.0),
    # ------------------------------------------------------------------ serving walls
    row("serving:lognormal_quantile", (2000.0, 0.5, 0.99), 5368.2, "log-normal P99 of a 2000-token mean, cv 0.5",
        rtol=1e-4),
    row("serving:causal_attention_flop", (80, 8192, 2000, 0), 5.2455e12,
        "Dao 2023 (FlashAttention-2) causal count: Llama-3-70B, 2000 tokens", rtol=1e-4),
    row("serving:speculative_decoding", (4, 0.8, 0.05), 3.3616,
        "Leviathan et al. 2023 Eq. (1): k = 4, α = 0.8", field="tokens_per_step", rtol=1e-9),
    row("serving:speculative_decoding", (4, 0.8, 0.05), 4.0, "Leviathan et al. 2023: median tokens per step",
        field="tokens_p50"),
    row("serving:prefill_interference", (0.02, 0.015, 10.0), 0.2 / 0.85,
        "Agrawal et al. 2024 (Sarathi-Serve) §4.3 share: f = x·t/(1 − x·Δ)", field="chunk_share"),
    row("serving:prefill_interference", (0.02, 0.015, 10.0), 0.035, "Sarathi-Serve: P99 ITL = t + Δ",
        field="itl_p99_s"),
    row("serving:running_batch", (4.0, 0.03, 0.01, 1e-4, 193.0, 256.0), 7.84 / 0.9228,
        "Little 1961 (L = λW) over an affine decode step, no chunks (docstring example)", field="mean"),
    row("serving:running_batch", (4.0, 0.03, 0.01, 1e-4, 193.0, 256.0), 4.0 * 11.61 / 0.9228,
        "Little 1961 with a chunk on every iteration (y·Δ = 0.95, docstring example)", field="mean",
        chunks_per_s=19.0, chunk_extra_s=0.05),
    row("serving:iteration_residual", (0.02, 0.015, 0.25, 1.0), printed("12.76", MS),
        "Kleinrock 1975 Vol. 1 Eq. 5.11 residual life (docstring example)", field="mean_s"),
    row("serving:iteration_residual", (0.02, 0.015, 0.25, 1.0), printed("34.05", MS),
        "Kleinrock 1975 Vol. 1 §5.2: P99 of the residual", field="p99_s"),
    row("serving:kv_transfer", (655.36e6, 300e9, 2e-6, 0.3, 80), 2e-6 + 655.36e6 / 300e9 / 80,
        "Splitwise / DistServe §4.3 layer-wise transfer: exposed 29.3 µs", field="exposed_s"),
    row("serving:experts_touched", (8, 2, 4), 8 * (1 - 0.75**4), "Lepikhin et al. 2021 (GShard): Mixtral, 4 tokens"),
    row("serving:power_at_utilization", (700.0, 0.5), 437.5, "H100 700 W TDP at 50 % load (docstring example)"),
    row("queueing:mgc_queue", (8.0, 1.0, 10.0, 0.25), 0.625 * 0.4092 / 2, "Allen 1990 §6.4 (Allen–Cunneen)",
        field="mean_wait_s", rtol=0.0, atol=5e-5),
    row("queueing:mgc_queue", (8.0, 1.0, 10.0, 0.25), 1.1599, "Kingman 1961 exponential tail: w_99",
        field="wait_p99_s", rtol=0.0, atol=5e-5),
    row("queueing:mgc_queue", (0.5, 1.0, 1.0, 0.0), 0.5, "Pollaczek–Khinchine M/D/1: (1 + 0)/2 · ρ/(μ − λ)",
        field="mean_wait_s", rtol=1e-9),
    row("queueing:ggc_queue_closed_form", (8.0, 1.0, 10.0, 1.0), 0.8 ** (math.sqrt(22.0) - 1.0),
        "Sakasegawa 1977: P(wait) = ρ^(√(2(c+1)) − 1) = 0.4389", field="p_wait"),
]
