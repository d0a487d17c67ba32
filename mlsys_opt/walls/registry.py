"""The 22 walls of ML systems as data (mlsysim ``core/walls.py``, re-done as records).

Each :class:`WallSpec` names its wall, domain, the equation in plain text, the
literature, and the wall function by dotted path ("module:function"). Paths
are resolved lazily (``spec.fn``), so this module imports nothing from the
wall modules and stays importable while any of them is being written.

Lookups: :func:`wall` (by number), :func:`walls_in_domain`, :func:`law` (by name);
``WALLS`` (the 22, in order), ``LAWS`` (iron law, Amdahl, Gustafson, Little),
``DOMAINS``.

Source: mlsysim ``core/walls.py`` (Janapa Reddi 2026, Table 1); seed 002 (the
22 laws, plain English); seed 004 (cheat sheet).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from mlsys_opt.errors import MlsysOptError, did_you_mean

__all__ = ["WallSpec", "WALLS", "LAWS", "DOMAINS", "wall", "walls_in_domain", "law", "resolve"]

DOMAINS: tuple[str, ...] = ("node", "data", "algorithm", "fleet", "operations", "analysis")
_DOMAIN_ALIASES = {"ops": "operations", "operation": "operations", "meta": "analysis",
                   "meta-analysis": "analysis", "algo": "algorithm"}

_N = "mlsys_opt.walls.node"
_D = "mlsys_opt.walls.data"
_L = "mlsys_opt.walls.laws"
_A = "mlsys_opt.walls.algorithm"
_F = "mlsys_opt.walls.fleet"
_O = "mlsys_opt.walls.ops"
_Y = "mlsys_opt.walls.analysis"
_S = "mlsys_opt.walls.serving"     # serving as deployed (issue 13): related functions of walls 4 and 7


def resolve(path: str) -> Callable:
    """Import "package.module:function" and return the function."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class WallSpec:
    """One wall: number (1-22; 0 for a cross-cutting law), name, domain, primary
    function path, equation, sources, the constraint in words, and related functions."""

    number: int
    name: str
    domain: str
    fn_path: str
    equation: str
    sources: tuple[str, ...]
    constraint: str = ""
    related: tuple[str, ...] = ()

    @property
    def fn(self) -> Callable:
        """The primary wall function (imported on first use)."""
        return resolve(self.fn_path)

    @property
    def paths(self) -> tuple[str, ...]:
        """The primary and related function paths."""
        return (self.fn_path,) + self.related

    def functions(self) -> tuple[Callable, ...]:
        """The primary and related functions, imported."""
        return tuple(resolve(p) for p in self.paths)


def _w(number, name, domain, fn, equation, sources, constraint, related=()):
    mod = {"node": _N, "data": _D, "algorithm": _A, "fleet": _F,
           "operations": _O, "analysis": _Y}[domain]

    def full(p: str) -> str:
        return p if ":" in p else f"{mod}:{p}"

    return WallSpec(number, name, domain, full(fn), equation, tuple(sources), constraint,
                    tuple(full(r) for r in related))


WALLS: tuple[WallSpec, ...] = (
    # Domain 1: node
    _w(1, "Compute", "node", "roofline", "T = OPs / (Peak × η)",
       ["Williams et al. (2009), Roofline", "seed 000 §1"],
       "Peak FLOP/s ceiling of a single accelerator.",
       ["ridge_point", "arithmetic_intensity", "attainable_flop_per_s"]),
    _w(2, "Memory", "node", "roofline", "T = |W| / BW_HBM; mem_required <= HBM",
       ["Williams et al. (2009), Roofline", "seed 000 §1"],
       "HBM capacity and bandwidth ceilings.",
       ["training_memory", "inference_memory", "memory_margin_bytes"]),
    _w(3, "Software", "node", "mfu", "MFU = achieved FLOP/s / peak FLOP/s",
       ["Chowdhery et al. (2022), PaLM", "Dao et al. (2022), FlashAttention"],
       "Gap between peak and achieved FLOP/s.", ["model_flops_utilization"]),
    _w(4, "Serving", "node", "prefill", "TTFT = OPs_prefill / Peak; ITL = |W| / BW_HBM",
       ["Pope et al. (2023), LLM Inference", "Yu et al. (2022), ORCA", "seed 000 §4"],
       "Compute-bound prefill vs. memory-bound decode.",
       ["decode", "serving_throughput", f"{_S}:causal_attention_flop", f"{_S}:batch_step_s",
        f"{_S}:prefill_interference", f"{_S}:running_batch", f"{_S}:iteration_residual",
        f"{_S}:speculative_decoding",
        f"{_S}:kv_transfer", f"{_S}:experts_touched", f"{_S}:offload_spill_bytes", f"{_S}:split_read_s",
        f"{_S}:busy_fraction", f"{_S}:power_at_utilization"]),
    _w(5, "Batching", "node", "kv_cache_bytes", "KV = 2 × L × H_kv × D × S × B × b (MLA: L × c × S × B × b)",
       ["Kwon et al. (2023), vLLM / PagedAttention", "seed 000 §4.3",
        "DeepSeek-AI (2024), DeepSeek-V2 §2.1.2 (MLA)"],
       "KV cache limits concurrent requests.", ["max_batch", "paged_kv_cache_bytes", "kv_waste"]),
    _w(6, "Streaming", "node", "weight_streaming", "T_layer = max(|W|/BW_inject, 2|W|B / (Peak × η))",
       ["Cerebras Systems (2024), Weight Streaming"],
       "Wafer-scale shifts the bottleneck from HBM to the injection interconnect.",
       ["weight_streaming_balance_batch"]),
    _w(7, "Tail Latency", "node", "mlsys_opt.walls.queueing:mmc_queue", "Erlang-C M/M/c queue",
       ["Dean & Barroso (2013), The Tail at Scale", "Allen (1990) §6.4, Allen-Cunneen M/G/c",
        "Sakasegawa (1977), G/G/c closed form"],
       "P99 latency grows non-linearly as utilization approaches 1.",
       ["mlsys_opt.walls.queueing:mgc_queue", "mlsys_opt.walls.queueing:ggc_queue_closed_form",
        f"{_S}:lognormal_quantile", f"{_S}:combine_quantiles"]),
    # Domain 2: data
    _w(8, "Ingestion", "data", "ingestion", "ρ = BW_demand / BW_supply",
       ["Mohan et al. (2022), Data Bottlenecks"],
       "Storage I/O must supply data at the rate the accelerator consumes it."),
    _w(9, "Transformation", "data", "transformation", "T = B · S / C_throughput",
       ["Murray et al. (2021), tf.data"],
       "CPU preprocessing cannot keep pace with the accelerator.", ["transformation_time"]),
    _w(10, "Locality", "data", "locality", "BW_eff = BW_link · β_bisection / oversubscription",
       ["Leiserson (1985), Fat-Trees", "Dally & Towles (2003), Interconnection Networks"],
       "Network topology limits bisection bandwidth.", ["bisection_fraction"]),
    # Domain 3: algorithm
    _w(11, "Complexity", "algorithm", "chinchilla", "C = 6PD; P* = √(C/120); D* = 20 P*",
       ["Hoffmann et al. (2022), Chinchilla", "Kaplan et al. (2020)", "seed 000 §3"],
       "Scaling laws govern compute-optimal training.",
       ["training_flop", "tokens_per_param", "flop_for_budget"]),
    _w(12, "Reasoning", "algorithm", "reasoning", "T = TTFT + K × T_step; F = K × t × 2P",
       ["Wei et al. (2022), Chain-of-Thought", "Snell et al. (2024), Test-Time Compute"],
       "Inference-time compute scales with reasoning steps."),
    _w(13, "Fidelity", "algorithm", "quantization",
       "r = b_from/b_to (quantization); r = 1/(1-s) (pruning); speed-up only if structured",
       ["Han et al. (2015), Deep Compression", "Gholami et al. (2021), Quantization Survey",
        "Blalock et al. (2020), State of Pruning"],
       "Compression trades model fidelity for efficiency.",
       ["pruning", "quantization_loss_frac"]),
    # Domain 4: fleet
    _w(14, "Communication", "fleet", "ring_allreduce", "T = 2(N-1)α + 2(N-1)/N · M/β",
       ["Patarasuk & Yuan (2009), Ring AllReduce", "Shoeybi et al. (2019), Megatron-LM",
        "Narayanan et al. (2021), Megatron-LM at scale", "seed 000 §2",
        "DeepSeek-AI (2024), DeepSeek-V3 §3.2.2; deepseek-ai/DeepEP (expert dispatch)"],
       "Distributed training requires synchronization across N devices.",
       ["tree_allreduce", "ring_tree_crossover_bytes", "ring_tree_crossover_exact_bytes",
        "hierarchical_allreduce", "all_to_all", "pipeline_bubble", "parallel_step",
        "scaling_efficiency", "mlsys_opt.walls.moe:expert_dispatch", "mlsys_opt.walls.moe:dispatch_copies",
        "mlsys_opt.walls.moe:ep_overlap_partner_frac"]),
    _w(15, "Fragility", "fleet", "cluster_mtbf_s", "MTBF_cluster = MTBF_component / N; P = 1 - e^{-T/M}",
       ["Young (1974), Checkpoint Interval", "Daly (2006), Higher-Order Estimate", "seed 000 §7-8"],
       "Component failures are inevitable at scale.",
       ["failure_probability", "expected_failures"]),
    _w(16, "Multi-tenant", "fleet", "multitenant_wait", "T_wait = ρ / [2μ(1-ρ)]",
       ["Little (1961), L = λW", "Kleinrock (1975), Queueing Systems"],
       "Shared clusters introduce queueing delays.", [f"{_L}:little"]),
    # Domain 5: operations
    _w(17, "Capital", "operations", "tco", "TCO = CapEx·T/T_dep + E·$/kWh + m·CapEx·T",
       ["Barroso et al. (2018), Datacenter as a Computer", "seed 000 §6"],
       "Total cost of ownership bounds what is economically feasible.",
       ["upfront_capex_usd", "cloud_cost", "breakeven_utilization", "effective_usd_per_device_s",
        "cost_per_useful_flop"]),
    _w(18, "Sustainability", "operations", "sustainability",
       "E = P·t·PUE; CO2e = E · CI; water = E_IT · WUE",
       ["Patterson et al. (2021), Carbon Emissions", "The Green Grid (2011), WUE", "seed 000 §5"],
       "Energy converts to carbon and water footprint.", ["energy_j"]),
    _w(19, "Checkpoint", "operations", "goodput",
       "τ* = √(2δM); goodput = 1 - (δ/τ + (τ/2 + R)/M)",
       ["Young (1974)", "Daly (2006)", "Eisenman et al. (2022), Check-N-Run", "seed 000 §7"],
       "Periodic state saves and failures cost training time.",
       ["young_daly_interval_s", "checkpoint_overhead", "goodput_daly",
        "checkpoint_overhead_halfwrite", "goodput_halfwrite"]),
    _w(20, "Safety", "operations", "dp_sgd_slowdown", "S = 1 + k / max(ε, ε_min)  (heuristic, ∝ 1/ε)",
       ["Abadi et al. (2016), DP-SGD", "mlsysim ResponsibleEngineeringModel"],
       "Privacy guarantees impose computational overhead."),
    # Domain 6: analysis
    _w(21, "Sensitivity", "analysis", "elasticities", "e_i = ∂ln y / ∂ln x_i; binding = argmax |e_i|",
       ["Williams et al. (2009), Roofline", "seed 002 wall 21"],
       "Identifies the binding constraint by exact derivatives.", ["binding", "binding_name"]),
    _w(22, "Synthesis", "analysis", "required_bandwidth", "BW_req = |W| / T_target",
       ["Williams et al. (2009), Roofline", "seed 002 wall 22"],
       "Inverse roofline: hardware specs from an SLA target.",
       ["required_flop_per_s", "required_memory_bytes", "required_devices"]),
)

LAWS: tuple[WallSpec, ...] = (
    WallSpec(0, "Iron Law", "analysis", f"{_Y}:iron_law",
             "T = FLOP / (N × Peak × MFU × η_scaling × Goodput)",
             ("seed 002, The Iron Law", "seed 004 cheat sheet", "seed 000 §9"),
             "Every wall maps to one factor of the denominator.",
             (f"{_Y}:loss_cascade", f"{_Y}:required_devices", f"{_L}:iron_law_time_s")),
    WallSpec(0, "Amdahl", "analysis", f"{_L}:amdahl", "S = 1 / ((1 - p) + p/N)",
             ("Amdahl (1967)",), "The serial fraction caps speed-up."),
    WallSpec(0, "Gustafson", "analysis", f"{_L}:gustafson", "S = (1 - p) + p·N",
             ("Gustafson (1988)",), "Scaled speed-up when the problem grows with N."),
    WallSpec(0, "Little", "analysis", f"{_L}:little", "L = λ W",
             ("Little (1961)",), "Occupancy = arrival rate × time in system."),
)

_BY_NUMBER = {w.number: w for w in WALLS}


def wall(number: int) -> WallSpec:
    """The wall with this number (1-22); raises MlsysOptError naming the allowed range."""
    try:
        return _BY_NUMBER[int(number)]
    except (KeyError, TypeError, ValueError):
        raise MlsysOptError(f"wall number {number!r} does not exist; allowed: 1-22") from None


def walls_in_domain(domain: str) -> tuple[WallSpec, ...]:
    """The walls of one domain, by number; raises MlsysOptError (with a suggestion) for an unknown domain."""
    key = _DOMAIN_ALIASES.get(str(domain).lower(), str(domain).lower())
    if key not in DOMAINS:
        raise MlsysOptError(f"domain {domain!r} is not a wall domain{did_you_mean(str(domain), DOMAINS)}"
                            f" (allowed: {', '.join(DOMAINS)})")
    return tuple(w for w in WALLS if w.domain == key)


def law(name: str) -> WallSpec:
    """A cross-cutting law by name ("iron law", "amdahl", "gustafson", "little")."""
    names = {w.name.lower(): w for w in LAWS}
    key = str(name).lower().replace("_", " ")
    if key not in names:
        raise MlsysOptError(f"law {name!r} is not known{did_you_mean(key, names)}"
                            f" (allowed: {', '.join(w.name for w in LAWS)})")
    return names[key]
