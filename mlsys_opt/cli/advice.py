"""What to change when one configuration is infeasible: a sentence per violated structural constraint.

`mlsys-opt evaluate` and `mlsys-opt sensitivity` print these under "feasible: NO" (and `evaluate --json`
returns them as "advice"), so a user who asked for 4,096 GPUs with the default batch reads that 1,024
sequences cannot be split over 4,096 data-parallel ranks and what would fix it, not only the constraint's
name.  Each sentence quotes the row's own numbers (its parameters, outputs and the catalog entries it
uses) and the levers the model has for that constraint; the constraints are defined on
`scenarios.training.TrainingConstraints` and `scenarios.serving` (g <= 0 feasible).  Limit constraints
(`limit:...`, a spec's [constraints]) are not explained here: the output and its limit are printed beside
them already.
"""
from __future__ import annotations

import math
from typing import Any

from ..scenarios import schema
from ..space.spec import column_name


def _param(row, scenario: str, name: str) -> Any:
    return row.get(column_name(scenario, name))


def _gb(x: float) -> str:
    return f"{x / 1e9:,.1f} GB"


def _nearest_multiples(n: float, k: float) -> str:
    lo, hi = math.floor(n / k) * k, math.ceil(n / k) * k
    vals = sorted({int(v) for v in (lo, hi) if v > 0})
    return " or ".join(f"{v:,}" for v in vals)


def _capacity(row) -> tuple[float, float]:
    """(memory needed, capacity) per accelerator, bytes: g_memory = memory / capacity - 1."""
    mem = float(row["memory_per_accelerator_bytes"])
    return mem, mem / (float(row["g_memory"]) + 1.0)


def _pipeline_depth(pp: int, model) -> str:
    return f"pipeline_depth: pp {pp} is more than the model's {int(model.get('n_layers', 0))} layers"


def _precision(hw, hardware: Any, precision: Any) -> str:
    ok = [k for k in schema.PARAMS["training"]["precision"].choices if hw.get(f"has_{k}")]
    return f"precision: the {hardware} has no {precision} path: choose one of {', '.join(ok) or '(none listed)'}"


def _training(row, space, name: str) -> str:
    def p(k):
        return _param(row, "training", k)
    model, hw = space.catalog.entry("models", p("model")), space.catalog.entry("accelerators", p("hardware"))
    tp, cp, pp = (int(round(float(p(k) or 1))) for k in ("tp", "cp", "pp"))
    n = int(round(float(row["n_accelerators"])))
    if name == "memory":
        mem, cap = _capacity(row)
        reserve = float(p("memory_reserve_frac") or 0.0)
        held = f" with memory_reserve_frac {reserve:g} held back" if reserve > 0 else ""
        return (f"memory: {_gb(mem)} per accelerator needed, the {p('hardware')} holds {_gb(cap)}{held}: shard the "
                f"states (zero_stage 3 / sharding = fsdp), raise tp, pp or cp, recompute activations "
                f"(recompute = full), fewer sequences per micro-batch (micro_batch_size), or an accelerator "
                f"with more memory")
    if name == "divisibility":
        group = tp * cp * pp
        return (f"divisibility: tp·cp·pp = {group} does not divide {n:,} accelerators: use "
                f"{_nearest_multiples(n, group)} accelerators, or degrees whose product divides {n:,}")
    if name == "tp_within_node":
        apn = int(hw.get("accelerators_per_node", 0) or 0)
        apn = int(float(p("accelerators_per_node") or 0)) or apn
        return (f"tp_within_node: tp {tp} is more than the {apn} accelerators of one {p('hardware')} node "
                f"(tensor parallelism needs the scale-up link): tp <= {apn}, split the rest with pp or cp")
    if name == "pipeline_depth":
        return _pipeline_depth(pp, model)
    if name == "experts":
        e, ep = int(model.get("n_experts", 1)), int(round(float(p("ep") or 1)))
        return (f"experts: ep {ep} must be <= and divide the {e} experts and divide the data-parallel degree "
                f"dp = {int(round(float(row['dp']))):,} (expert parallelism lives inside data parallelism)")
    if name == "batch_split":
        gb, dp = float(p("global_batch")), float(row["dp"])
        per = gb / max(dp, 1.0)
        return (f"batch_split: a global batch of {gb:,.0f} sequences over dp = {dp:,.0f} data-parallel ranks "
                f"(N/(tp·cp·pp)) leaves {per:.3g} sequences per rank, and a micro-batch needs at least one "
                f"whole sequence: raise global_batch to >= {dp:,.0f} sequences, or shrink dp by raising tp, cp "
                f"or pp or using fewer accelerators"
                + ("; with micro_batch_size or microbatches given, micro_batch_size × microbatches must be "
                   "<= global_batch/dp" if float(p("micro_batch_size") or 0) > 0 or float(p("microbatches") or 0) > 0
                   else ""))
    if name == "precision":
        return _precision(hw, p("hardware"), p("precision"))
    if name == "context_split":
        return f"context_split: cp {cp} does not divide the sequence length {int(float(p('seq_len'))):,}"
    if name == "heads":
        a, g = int(model.get("n_heads", 0)), int(model.get("n_kv_heads", 0)) or int(model.get("n_heads", 0))
        return (f"heads: tp {tp} must divide the model's {a} attention heads, and its {g} KV heads must be "
                f"divisible by tp or tp by them (KV replication)")
    return name


def _serving(row, space, name: str) -> str:
    def p(k):
        return _param(row, "serving", k)
    model, hw = space.catalog.entry("models", p("model")), space.catalog.entry("accelerators", p("hardware"))
    tp, pp = (int(round(float(p(k) or 1))) for k in ("tp", "pp"))
    if name == "memory":
        mem, cap = _capacity(row)
        return (f"memory: weights and KV cache need {_gb(mem)} per accelerator, the {p('hardware')} holds "
                f"{_gb(cap)}: raise tp or pp, lower the batch cap, a smaller precision or kv_precision, or an "
                f"accelerator with more memory")
    if name == "tp_within_node":
        return (f"tp_within_node: tp {tp} is more than the {int(hw.get('accelerators_per_node', 0))} "
                f"accelerators of one {p('hardware')} node: tp <= that, split the rest with pp")
    if name == "pipeline_depth":
        return _pipeline_depth(pp, model)
    if name == "precision":
        return _precision(hw, p("hardware"), p("precision"))
    if name == "queue_stable":
        r = int(float(row["replicas"]))
        return (f"queue_stable: {r:,} replica{'s' if r != 1 else ''} cannot keep up with "
                f"{float(p('request_rate')):,.4g} requests/s (utilisation >= 1): more replicas (replicas = 0 "
                f"picks the fewest that keep up), a larger batch cap, or faster hardware")
    if name == "experts":
        return (f"experts: ep {int(round(float(p('ep') or 1)))} is more than the model's "
                f"{int(model.get('n_experts', 1))} experts")
    if name == "context":
        return (f"context: the P99 prompt plus output is longer than the model's "
                f"{int(model.get('context_len', 0)):,}-token context")
    return name


def advice(row, space) -> list[str]:
    """One sentence per violated structural constraint of a result row (g_<name> > 0), in the schema's order."""
    explain = _training if space.scenario == "training" else _serving
    return [explain(row, space, name) for name in schema.STRUCTURAL_CONSTRAINTS[space.scenario]
            if float(row.get(f"g_{name}", -1.0)) > 0]
