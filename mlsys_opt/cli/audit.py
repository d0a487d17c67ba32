"""Seed 003's full-stack audit: one evaluated configuration -> a table of every wall.

:func:`audit` turns one row of :func:`mlsys_opt.point.evaluation.evaluate` into the
seed 003 summary table (Domain | Wall | Key metric | Status): which wall binds
the configuration, which are slack, and by how much (a limit within ``NEAR`` =
10 % counts as binding).  Training rows follow the iron law
T = 6PD / (N · peak · kernel · scaling · goodput) (seed 002 walls 1-3, 8, 11,
14, 15, 17-19, 22); serving rows the decode roofline, KV-cache batching and the
M/M/c tail (walls 1-5, 7, 17, 18).  :func:`format_audit` prints it.

Text helpers (``format_table``, ``_h``) come from ``mlsys_opt.cli.report``, imported
where used (``report`` re-exports this module's names).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

AUDIT_COLUMNS = ("domain", "wall", "metric", "status")
INGEST_BYTES_PER_TOKEN = 4.0      # int32 token ids read from storage (vocabularies > 65,536)
NEAR = 0.10                       # a limit within 10 % counts as binding


def _limit_status(g: float | None) -> str:
    """Status of a constraint margin g (<= 0 feasible, relative to its limit)."""
    if g is None or not math.isfinite(g):
        return "no limit set"
    if g > 1e-6:
        return f"VIOLATED (over by {100 * g:.0f} %)" if g < 10 else "VIOLATED"
    if g > -NEAR:
        return f"binding ({100 * -g:.0f} % headroom)"
    return f"not binding ({100 * -g:.0f} % headroom)"


def _g(row: Mapping[str, Any], name: str) -> float | None:
    key = "g_" + name.replace("limit:", "limit_")
    return float(row[key]) if key in row else None


def _purchase(row: Mapping[str, Any]) -> str:
    """'; purchase $655M' for an on-prem row (upfront_capex_usd > 0); empty in the cloud."""
    if "upfront_capex_usd" not in row or not float(row["upfront_capex_usd"]) > 0:
        return ""
    return f"; purchase ${float(row['upfront_capex_usd']) / 1e6:,.3g}M"


def _worst(*gs: float | None) -> float | None:
    vals = [g for g in gs if g is not None]
    return max(vals) if vals else None



def audit(row: Mapping[str, Any], space, *, sensitivity_binding=None, eff=None) -> pd.DataFrame:
    """Seed 003's full-stack summary for one evaluated configuration.

    Args:
      row: one row of :func:`evaluate` (a Series or dict: parameters, outputs,
        ``g_<constraint>`` margins).
      space: the ``Space`` it was evaluated in (scenario, catalog, limits).
      sensitivity_binding: optional ``sensitivity.Binding`` of the first
        objective (wall 21 row).
      eff: the ``Efficiency`` the row was evaluated with (None: the defaults), for the
        step-time (training) and latency (serving) breakdowns.

    Returns:
      DataFrame with `AUDIT_COLUMNS`: domain, wall ("14 Communication"), the key
      metric in human units, and status ("binding", "not binding", "VIOLATED",
      "largest loss", ...).  Limits within 10 % count as binding.
    """
    rows = _audit_training(row, space, eff) if space.scenario == "training" else _audit_serving(row, space, eff)
    if sensitivity_binding is not None:
        b = sensitivity_binding
        at = next((i for i, r in enumerate(rows) if r[1].startswith("22")), len(rows))
        rows.insert(at, ("Analysis", "21 Sensitivity",
                         f"{b.output}: most sensitive to {b.parameter} (elasticity {b.elasticity:+.2f})",
                         f"binding input: {b.parameter}"))
    return pd.DataFrame(rows, columns=list(AUDIT_COLUMNS))


def _entries(row, space):
    cat = space.catalog
    return (cat.entry("accelerators", row["hardware"]), cat.entry("models", row["model"]),
            cat.entry("regions", row["region"]))


def _loss_status(name: str, factors: dict[str, float]) -> str:
    worst = min(factors, key=factors.get)
    loss = 100 * (1 - factors[name])
    return f"largest loss ({loss:.0f} %)" if name == worst else f"loss {loss:.0f} %"


def _audit_training(row, space, eff=None) -> list[tuple]:
    from .._types import BOTTLENECKS, BYTES_PER_ELEMENT, PRECISIONS
    from ..scenarios import OPTIMIZER_BYTES_PER_PARAM
    from ..walls import algorithm, analysis, data, fleet, ops
    from .report import _h

    hw, model, region = _entries(row, space)
    n = float(row["n_accelerators"])
    step = float(row["step_time_s"])
    bound = str(row["bottleneck"])
    bpe = BYTES_PER_ELEMENT[PRECISIONS.index(row["precision"])]
    peak = float(hw[f"peak_{row['precision']}_flop_per_s"])
    mfu, scaling, good = float(row["mfu"]), float(row["scaling_efficiency"]), float(row["goodput"])
    kernel = mfu / max(scaling, 1e-12)
    factors = {"kernel": kernel, "scaling": scaling, "goodput": good}
    wall_of = {"compute": "1 Compute", "memory": "2 Memory (bandwidth)", "overhead": "3 Software (dispatch)"}
    out = [("Node", wall_of.get(bound, bound),
            f"per-device step {bound}-bound, {step:.3g} s/step on {hw['name']} "
            f"({_h(peak, 'flop_rate', 'TFLOP/s', '{:,.0f}')} {row['precision']})",
            f"binding at the node ({bound})" if bound in BOTTLENECKS else bound)]
    out += _training_budget(row, space, eff)
    mem, cap = float(row["memory_per_accelerator_bytes"]), float(hw["mem_capacity_bytes"])
    reserve = float(row.get("memory_reserve_frac", 0.0) or 0.0)      # HBM held back from the fit
    usable = (f", {_h(cap * (1 - reserve), 'bytes', 'GB', '{:.1f}')} usable at memory_reserve_frac "
              f"{reserve:g}" if reserve > 0 else "")
    out.append(("Node", "2 Memory (capacity)",
                f"{_h(mem, 'bytes', 'GB', '{:.1f}')} of {_h(cap, 'bytes', 'GB', '{:.0f}')} per device "
                f"({100 * mem / cap:.0f} %{usable})", _limit_status(_g(row, "memory"))))
    out.append(("Node", "3 Software", f"MFU {100 * mfu:.1f} % (kernel efficiency {100 * kernel:.1f} % "
                f"at η = {float(row['efficiency']):.2f})", _loss_status("kernel", factors)))
    tokens_step = float(row["global_batch"]) * float(row["seq_len"])
    demand = tokens_step * INGEST_BYTES_PER_TOKEN / max(step, 1e-12)
    supply = float(row["checkpoint_bw_bytes_per_s"])
    ing = data.ingestion(demand, supply)
    rho = float(ing.utilization)
    out.append(("Data", "8 Ingestion",
                f"demand {_h(demand, 'bandwidth')} of {_h(supply, 'bandwidth')} "
                f"storage ({100 * rho:.2g} %)",
                "VIOLATED (GPUs stall)" if rho > 1 else ("binding" if rho > 1 - NEAR else "not binding")))
    n_params = float(model["n_params"])
    tpp = float(algorithm.tokens_per_param(float(row["n_tokens"]), n_params))
    flop = float(algorithm.training_flop(float(model["n_active_params"]), float(row["n_tokens"])))
    out.append(("Algorithm", "11 Complexity",
                f"{tpp:,.1f} tokens/param (Chinchilla ≈ 20), 6PD = {flop:.3g} FLOP",
                "not a limit: " + ("over-trained" if tpp > 20 else "under-trained")
                + " vs compute-optimal"))
    out.append(("Fleet", "14 Communication",
                f"scaling efficiency {100 * scaling:.1f} %, bubble {100 * float(row['bubble_frac']):.1f} %, "
                f"dp {int(row['dp']):,} × tp {int(row['tp'])} × pp {int(row['pp'])}",
                _loss_status("scaling", factors)))
    time_s = float(row["time_to_train_s"])
    mtbf = float(fleet.cluster_mtbf_s(float(hw["mtbf_s"]), n))
    fails = float(fleet.expected_failures(time_s, mtbf))
    out.append(("Fleet", "15 Fragility", f"cluster MTBF {_h(mtbf, 'time', 'hour', '{:,.0f}')}, "
                f"~{fails:,.1f} failures during the run", "cost counted in goodput"))
    ckpt_s = n_params * (bpe + OPTIMIZER_BYTES_PER_PARAM) / supply
    interval = float(row["checkpoint_interval_s"])
    tau = interval if interval > 0 else float(ops.young_daly_interval_s(ckpt_s, mtbf))
    out.append(("Ops", "19 Checkpoint", f"goodput {100 * good:.1f} % (write {_h(ckpt_s, 'time')} "
                f"every {_h(tau, 'time')}{'' if interval > 0 else ', Young-Daly'})",
                _loss_status("goodput", factors)))
    out.append(("Ops", "17 Capital", f"TCO ${float(row['tco_usd']) / 1e6:,.2f}M ({row['pricing']}"
                f"{_purchase(row)})", _limit_status(_worst(_g(row, "limit:tco_usd"),
                                                           _g(row, "limit:upfront_capex_usd")))))
    out.append(("Ops", "18 Sustainability",
                f"{_h(float(row['energy_j']), 'energy', 'MWh', '{:,.0f}')}, "
                f"{_h(float(row['carbon_kg']), 'carbon', 'tCO2e', '{:,.1f}')}, "
                f"{_h(float(row['water_l']), 'water', 'kL', '{:,.0f}')} water ({region['name']}: "
                f"{float(region['carbon_gco2e_per_kwh']):g} g/kWh, PUE {float(region['pue']):g})",
                _limit_status(_worst(_g(row, "limit:carbon_kg"), _g(row, "limit:energy_j"),
                                     _g(row, "limit:water_l")))))
    out.append(("Analysis", "Iron law",
                f"{time_s / 86400:,.1f} days = 6PD / (N·peak × {100 * kernel:.0f} % kernel × "
                f"{100 * scaling:.0f} % scaling × {100 * good:.0f} % goodput)",
                _limit_status(_g(row, "limit:time_to_train_s"))))
    if "time_to_train_s" in space.limits:
        target = space.limits["time_to_train_s"][1]
        need = float(analysis.required_devices(flop, target, peak, mfu, 1.0, good))
        out.append(("Analysis", "22 Synthesis", f"N ≥ {math.ceil(need):,} devices for "
                    f"{target / 86400:g} days at this MFU and goodput (now {int(n):,})",
                    "met" if need <= n else "NOT met"))
    return out


def _audit_serving(row, space, eff=None) -> list[tuple]:
    from ..walls import node
    from .report import _h

    hw, model, region = _entries(row, space)
    ttft, itl, p99 = float(row["ttft_s"]), float(row["itl_s"]), float(row["p99_latency_s"])
    bound = str(row["bottleneck"])
    running = f"; {_h(float(row['itl_mean_s']), 'time', 'ms', '{:.2f}')} per token at the load's running batch " \
              f"of {float(row['running_batch']):,.1f}"
    out = [("Node", "4 Serving", f"TTFT {_h(ttft, 'time', 'ms', '{:,.1f}')}, ITL {_h(itl, 'time', 'ms', '{:.2f}')}"
            f" at a full batch of {int(row['batch'])}{running}",
            _limit_status(_worst(_g(row, "limit:ttft_s"), _g(row, "limit:itl_s"))))]
    wall = {"compute": "1 Compute", "memory": "2 Memory (bandwidth)", "overhead": "3 Software (dispatch)"}
    out.append(("Node", wall.get(bound, bound), f"decode step of a full batch {bound}-bound on {hw['name']} "
                f"({_h(float(hw['mem_bw_bytes_per_s']), 'bandwidth', 'TB/s', '{:.3g}')} HBM)",
                f"binding at the node ({bound})"))
    mem, cap = float(row["memory_per_accelerator_bytes"]), float(hw["mem_capacity_bytes"])
    out.append(("Node", "2 Memory (capacity)", f"{_h(mem, 'bytes', 'GB', '{:.1f}')} of "
                f"{_h(cap, 'bytes', 'GB', '{:.0f}')} per device ({100 * mem / cap:.0f} %)",
                _limit_status(_g(row, "memory"))))
    replica = int(row["tp"]) * int(row["pp"])
    from .._types import BYTES_PER_ELEMENT, PRECISIONS
    w = float(model["n_params"]) * BYTES_PER_ELEMENT[PRECISIONS.index(row["precision"])]
    kv = float(row["kv_cache_bytes"])
    per_seq = kv / max(int(row["batch"]), 1)
    most = float(node.max_batch(cap * replica, w, per_seq))
    out.append(("Node", "5 Batching", f"KV cache {_h(kv, 'bytes')} per replica "
                f"({_h(per_seq, 'bytes')}/sequence); at most {most:,.0f} sequences fit",
                "VIOLATED" if int(row["batch"]) > most else
                ("binding" if int(row["batch"]) > (1 - NEAR) * most else "not binding")))
    out.append(("Node", "7 Tail latency", f"p99 {_h(p99, 'time', 's', '{:.3g}')} at utilisation "
                f"{100 * float(row['utilization']):.0f} % ({int(row['replicas']):,} replicas × {replica} devices)",
                _limit_status(_worst(_g(row, "limit:p99_latency_s"), _g(row, "queue_stable")))))
    out.append(("Ops", "17 Capital", f"TCO ${float(row['tco_usd']) / 1e6:,.3g}M over "
                f"{float(row['duration_s']) / 86400:,.0f} days, ${float(row['cost_per_mtok_usd']):.3g}/Mtok "
                f"({row['pricing']}{_purchase(row)})", _limit_status(_worst(
                    _g(row, "limit:tco_usd"), _g(row, "limit:cost_per_mtok_usd"), _g(row, "limit:upfront_capex_usd")))))
    out.append(("Ops", "18 Sustainability", f"{_h(float(row['carbon_kg']), 'carbon', 'tCO2e', '{:,.1f}')} "
                f"({float(row['carbon_per_mtok_kg']):.3g} kg/Mtok; {region['name']}: "
                f"{float(region['carbon_gco2e_per_kwh']):g} g/kWh)", _limit_status(_g(row, "limit:carbon_kg"))))
    out[1:1] = _serving_budget(row, space, eff)
    return out


def _params_of(row, space):
    """The scenario's Params of one audit row (inverse of point.evaluation._param_frame), float32;
    None when the row does not carry every parameter (a hand-made row)."""
    import jax.numpy as jnp

    from ..scenarios import params_from_dict, schema
    from ..space.spec import column_name
    sc = space.scenario
    specs = schema.PARAMS[sc]
    if not all(name in row or column_name(sc, name) in row for name in specs):
        return None
    values = {}
    for name, spec in specs.items():
        v = row[name] if name in row else row[column_name(sc, name)]
        if spec.kind == "catalog":
            values[name] = space.catalog.index(spec.catalog_kind, str(v))
        elif spec.kind == "choice":
            values[name] = spec.choices.index(str(v))
        else:
            values[name] = jnp.asarray(float(v), jnp.float32)
    return params_from_dict(sc, values)


def _training_budget(row, space, eff) -> list[tuple]:
    """Where the step's time goes (scenarios.training_breakdown): one audit row, its largest term named."""
    from ..scenarios.efficiency import DEFAULT_EFFICIENCY
    import jax.numpy as jnp

    from ..scenarios import STATIC_OPTION_PARAMS, static_options
    from ..scenarios.training_breakdown import PARTS, breakdown, format_breakdown

    p = _params_of(row, space)
    if p is None or "micro_batch_seqs" not in row:
        return []
    p = p._replace(micro_batch_size=jnp.asarray(float(row["micro_batch_seqs"]), jnp.float32))  # the row's choice
    opts = static_options("training", {k: [float(getattr(p, k))] for k in STATIC_OPTION_PARAMS["training"]})
    bd = breakdown(p, space.catalog.tables(), DEFAULT_EFFICIENCY if eff is None else eff, **opts)
    label, value = max(((lab, float(getattr(bd, f))) for f, lab in PARTS), key=lambda kv: kv[1])
    step = float(bd.step_s)
    return [("Node", "Step time", format_breakdown(bd), f"largest: {label} ({100 * value / step:.0f} %)")]


def _serving_budget(row, space, eff=None) -> list[tuple]:
    """Where each millisecond of the P99 TTFT and the P99 ITL goes (scenarios.serving_breakdown.breakdown)."""
    from ..scenarios.efficiency import DEFAULT_EFFICIENCY
    from ..scenarios.serving_breakdown import breakdown

    p = _params_of(row, space)
    if p is None:
        return []
    b = breakdown(p, space.catalog.tables(), DEFAULT_EFFICIENCY if eff is None else eff)
    ms = lambda x: 1e3 * float(x)                                   # noqa: E731

    def parts(items):
        shown = [f"{label} {ms(v):,.1f}" for label, v in items if abs(ms(v)) >= 0.05]
        return " + ".join(shown) if shown else "0"

    ttft = parts([("wait", b.ttft_wait_s), ("GEMMs", b.ttft_gemm_s), ("attention", b.ttft_attention_s),
                  ("weight read", b.ttft_weights_s), ("dispatch+comm", b.ttft_overhead_s),
                  ("decode iterations (chunks)", b.ttft_batching_s), ("KV transfer", b.ttft_kv_transfer_s),
                  ("long-prompt tail", b.ttft_long_prompt_s)])
    itl = parts([("weights", b.itl_weights_s), ("GEMM compute", b.itl_compute_s), ("KV read", b.itl_kv_s),
                 ("dispatch+comm", b.itl_overhead_s), ("host (serial scheduler)", b.itl_host_s),
                 ("draft", b.itl_draft_s), ("prefill chunk", b.itl_prefill_s)])
    per = f" (step / {float(b.itl_tokens_per_step):.0f} tokens)" if float(b.itl_tokens_per_step) > 1 else ""
    return [("Node", "4 Serving: TTFT P99", f"{ms(b.ttft_p99_s):,.1f} ms = {ttft} ms",
             _limit_status(_g(row, "limit:ttft_p99_s"))),
            ("Node", "4 Serving: ITL P99", f"{ms(b.itl_p99_s):,.2f} ms = {itl} ms{per}",
             _limit_status(_g(row, "limit:itl_p99_s")))]


def format_audit(df: pd.DataFrame) -> str:
    """The audit table as aligned text (Domain | Wall | Key metric | Status)."""
    from .report import format_table
    shown = df.rename(columns={"domain": "Domain", "wall": "Wall", "metric": "Key metric", "status": "Status"})
    return format_table(shown, human=False)


__all__ = ["AUDIT_COLUMNS", "INGEST_BYTES_PER_TOKEN", "NEAR", "audit", "format_audit"]
