"""Issue 7 item 4 (walls): dimensional consistency with pint, monotonicity, symmetry.

Convention (docs/CONTRACTS.md: "unit in every name"): the unit of every wall
argument and every output field is read from its NAME -- `_s` seconds,
`_bytes` bytes, `_bytes_per_s`, `_flop`, `_flop_per_s`, `_per_s` 1/s, `_usd`,
`_usd_per_device_s`, `_usd_per_kwh`, `_w`, `_j`, `_kg` (kg CO2e),
`_gco2e_per_kwh`, `_l`, `_l_per_kwh`, `_per_year`; a trailing
`_per_<count>` (layer, param, token, sequence, element, core, request, ...)
divides by a count and leaves the unit; anything else is a plain number.  A
few historic names are listed in `EXACT`.  Single-array walls whose name has
no unit suffix take their unit from `RETURNS` (cross-checked against the
Google-style "Returns:" line of the docstring where there is one).

`test_names_carry_units` keeps the convention true for every function of the
wall registry.  `test_dimensional_homogeneity` then checks every wall with
pint: each root dimension ([time], [information], [flop], [currency],
[carbon], [length], [mass]) gets a random scale k_d; every input is
multiplied by prod k_d^e_d of its unit's dimensionality, and every output
must come out multiplied by the factor of ITS unit.  A wall that hides a
dimensional constant (e.g. "2 FLOP per parameter per token", "16-bit
activations") freezes that dimension (listed per case, with the constant).

Monotonicity (more bandwidth never slower, higher carbon intensity never
lower carbon, ...) and symmetries are checked on the walls and on the
scenarios (jitted once each, tables modified between calls).
"""
from __future__ import annotations

import functools
import inspect
import itertools
import re
import typing

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_finiteness import CAT, evaluate

from mlsys_opt.space.spec import load_space
from mlsys_opt.units import ureg
from mlsys_opt.walls import algorithm, analysis, data, fleet, laws, moe, node, ops, queueing, registry
from mlsys_opt.walls import serving as serving_walls

ROOT_DIMS = ("[time]", "[information]", "[flop]", "[currency]", "[carbon]", "[length]", "[mass]")
COUNT_WORDS = {"layer", "sequence", "param", "request", "token", "element", "core", "device", "step",
               "node", "gpu", "sample"}
SUFFIXES = (("usd_per_device_s", "usd / second"), ("usd_per_kwh", "usd / kilowatt_hour"),
            ("gco2e_per_kwh", "gCO2e / kilowatt_hour"), ("l_per_kwh", "liter / kilowatt_hour"),
            ("bytes_per_s", "byte / second"), ("flop_per_s", "flop / second"), ("per_s", "1 / second"),
            ("usd_per_w", "usd / watt"),
            ("per_year", "1 / year"), ("bytes", "byte"), ("flop", "flop"), ("usd", "usd"), ("s", "second"),
            ("w", "watt"), ("j", "joule"), ("kg", "kgCO2e"), ("l", "liter"))
# Names whose unit is not at the end (historic; keep this list short).
EXACT = {"intensity": "flop / byte", "arithmetic_intensity": "flop / byte", "ridge_point": "flop / byte",
         "bytes_moved": "byte", "samples_per_s_required": "1 / second", "energy_j_per_byte": "joule / byte"}
# Plain numbers that are NOT unit-suffixed by design: counts, fractions, codes, ratios, knobs.
PLAIN = {
    "n", "n_params", "n_tokens", "n_layers", "n_kv_heads", "head_dim", "seq_len", "batch", "n_devices",
    "n_active_params", "prompt_tokens", "output_tokens", "d_in", "d_out", "micro_batch", "hidden_dim",
    "n_heads", "tp", "pp", "dp", "ep", "shard_factor", "zero_stage", "recompute_code", "sequence_parallel",
    "kv_separate", "kv_latent_dim",
    "efficiency", "pue", "quantile", "n_servers", "reserve_frac", "batch_cap", "block_tokens", "max_seq_len",
    "layer_params", "n_cores", "bisection_frac", "oversubscription", "topology_code", "n_nodes", "torus_dims",
    "dragonfly_frac", "tokens_per_param", "n_steps", "tokens_per_step", "bits_from", "bits_to", "bits",
    "memory_bound_frac", "hw_compute_speedup", "sparsity", "structured_code", "nm_speedup", "max_sparsity",
    "mild_loss_frac", "knee_sparsity", "steep_coef", "steep_exp", "n_intra", "n_inter", "n_stages",
    "n_microbatches", "n_virtual_stages", "gpus_per_node", "overlap_frac", "tp_allreduces_per_layer",
    "ep_alltoalls_per_layer", "utilization_frac", "n_devices", "serial_frac", "concurrency", "mfu",
    "eta_scaling", "goodput", "epsilon", "coef", "min_epsilon", "loss_8bit_frac", "loss_4bit_frac",
    "mfu_frac", "eta_scaling_frac", "goodput_frac", "efficiency_frac", "usable_frac",
    # output fields
    "bottleneck", "utilization", "p_wait", "stable", "stalled", "stall_frac", "effective_throughput_frac",
    "cores_required", "accelerator_utilization_frac", "slowdown", "static_waste_frac", "paged_waste_frac",
    "optimal_params", "optimal_tokens", "ratio", "speedup", "accuracy_delta_frac", "scaling_efficiency",
    # walls.serving / queueing.mgc_queue (issue 13): counts, fractions, squared coefficients of variation
    "mean", "cv", "q", "attn_width", "new_tokens", "cached_tokens", "k", "acceptance", "draft_cost_frac",
    "n_experts", "top_k", "tokens", "slot_utilization", "slots_per_replica", "busy", "busy_frac",
    "idle_frac", "active_frac", "service_cv2", "arrival_cv2",
    "chunk_share", "draft_cost_steps", "tokens_p50", "tokens_p01", "iterations", "seen", "saturated",
    # walls.ops.upfront_capex_usd: fractions of the accelerator price / TDP
    "system_frac", "network_frac", "host_power_frac",
    # walls.moe (expert dispatch): counts and switches
    "ranks_per_node", "node_limit", "dedup", "microbatches", "virtual_stages", "inter_copies", "intra_copies",
}
# Units of single-array walls whose NAME has no unit suffix ("" = a plain number).
RETURNS = {
    "mfu": "", "model_flops_utilization": "", "max_batch": "", "weight_streaming_balance_batch": "",
    "locality": "byte / second", "bisection_fraction": "", "tokens_per_param": "",
    "quantization_loss_frac": "", "ring_allreduce": "second", "tree_allreduce": "second",
    "hierarchical_allreduce": "second", "all_to_all": "second", "pipeline_bubble": "", "scaling_efficiency": "",
    "failure_probability": "", "expected_failures": "", "multitenant_wait": "second", "little": "",
    "cloud_cost": "usd", "breakeven_utilization": "", "cost_per_useful_flop": "usd / flop",
    "goodput": "", "checkpoint_overhead": "", "goodput_daly": "", "checkpoint_overhead_halfwrite": "",
    "goodput_halfwrite": "", "dp_sgd_slowdown": "", "required_bandwidth": "byte / second",
    "required_devices": "", "iron_law": "second", "amdahl": "", "gustafson": "",
    "ridge_point": "flop / byte", "arithmetic_intensity": "flop / byte", "flop_for_budget": "flop",
    "lognormal_quantile": "", "combine_quantiles": "second", "experts_touched": "", "busy_fraction": "",
    "power_at_utilization": "watt", "expert_dispatch": "second",
    "ep_overlap_partner_frac": "",
}
NOT_PHYSICAL = {"elasticities", "binding", "binding_name"}      # take functions / pytrees
DOC_UNITS = {"s": "second", "bytes": "byte", "b/s": "byte / second", "flop": "flop", "flop/s": "flop / second",
             "usd": "usd", "usd/flop": "usd / flop", "j": "joule", "fraction": "", "failures (count)": ""}


def unit_of(name: str) -> str | None:
    """The pint unit of a wall argument/field from its name; "" for plain numbers; None if unknown."""
    if name in EXACT:
        return EXACT[name]
    parts = name.split("_")
    for i in range(len(parts) - 1, 0, -1):          # strip a trailing _per_<count>[_<count>...]
        if parts[i] == "per" and parts[i + 1:] and all(p in COUNT_WORDS for p in parts[i + 1:]):
            parts = parts[:i]
            break
    stem = "_".join(parts)
    for suffix, unit in SUFFIXES:
        if stem == suffix or stem.endswith("_" + suffix):
            return unit
    return "" if name in PLAIN or stem in PLAIN else None


def dims_of(unit: str) -> dict[str, float]:
    if not unit:
        return {}
    dim = ureg.Unit(unit).dimensionality if " " not in unit and "/" not in unit else ureg(unit).dimensionality
    out = dict(dim)
    unknown = set(out) - set(ROOT_DIMS)
    assert not unknown, f"{unit}: unexpected root dimensions {unknown}"
    return out


def _wall_functions():
    seen = {}
    for spec in registry.WALLS + registry.LAWS:
        for path in spec.paths:
            seen.setdefault(path, registry.resolve(path))
    return seen


def _output_fields(fn) -> tuple[str, ...] | None:
    """Field names of a wall's NamedTuple result, or None for a single array."""
    ann = inspect.signature(fn).return_annotation
    if isinstance(ann, str):
        ann = getattr(inspect.getmodule(fn), ann, None)
    return tuple(ann._fields) if isinstance(ann, type) and hasattr(ann, "_fields") else None


def _doc_return_unit(fn) -> str | None:
    """Unit from a Google-style 'Returns:\n  X, UNIT, ...' docstring line (None when not machine-readable)."""
    doc = inspect.getdoc(fn) or ""
    m = re.search(r"Returns:\s*\n\s*(.+)", doc)
    if not m:
        return None
    for token in (t.strip().lower() for t in m.group(1).split(",")[:3]):
        token = token.split(" in [")[0].split(" (may")[0].strip()
        if token in DOC_UNITS:
            return DOC_UNITS[token]
    return None


def single_output_unit(fn) -> str | None:
    name = fn.__name__
    if name in RETURNS:
        return RETURNS[name]
    return unit_of(name) or None


# --------------------------------------------------------------------------- the naming convention

def test_names_carry_units():
    """Every argument and output of every wall in the registry has a unit by the naming convention."""
    problems = []
    for path, fn in _wall_functions().items():
        if fn.__name__ in NOT_PHYSICAL:
            continue
        for p in inspect.signature(fn).parameters:
            if unit_of(p) is None:
                problems.append(f"{path}: argument {p!r} has no unit suffix (and is not a listed plain number)")
        fields = _output_fields(fn)
        if fields is None:
            unit = single_output_unit(fn)
            if unit is None:
                problems.append(f"{path}: returns one array but neither its name nor RETURNS gives a unit")
                continue
            doc = _doc_return_unit(fn)
            if doc is not None and dims_of(doc) != dims_of(unit):
                problems.append(f"{path}: docstring 'Returns:' says {doc!r}, the name/table says {unit!r}")
        else:
            problems += [f"{path}: output field {f!r} has no unit" for f in fields if unit_of(f) is None]
    assert not problems, "\n".join(problems)


def test_unit_parser_examples():
    assert unit_of("mem_bw_bytes_per_s") == "byte / second"
    assert unit_of("tp_act_bytes_per_layer") == "byte"
    assert unit_of("tokens_per_s_per_request") == "1 / second"
    assert unit_of("cloud_usd_per_device_s") == "usd / second"
    assert unit_of("facility_usd_per_w") == "usd / watt"
    assert unit_of("flop_per_param_token") == "flop"
    assert unit_of("maintenance_frac_per_year") == "1 / year"
    assert unit_of("n_layers") == "" and unit_of("carbon_kg") == "kgCO2e" and unit_of("water_l") == "liter"
    assert unit_of("mystery") is None
    assert dims_of("usd / kilowatt_hour") == {"[currency]": 1, "[mass]": -1, "[length]": -2, "[time]": 2}


# --------------------------------------------------------------------------- homogeneity

D = {"second": (1e-3, 1e4), "byte": (1e6, 1e12), "byte / second": (1e9, 1e13), "flop": (1e9, 1e18),
     "flop / second": (1e12, 1e16), "1 / second": (0.1, 1e3), "usd": (1e3, 1e7), "usd / second": (1e-4, 1e-2),
     "usd / kilowatt_hour": (0.02, 0.3), "watt": (100.0, 1e4), "joule": (1e6, 1e12),
     "gCO2e / kilowatt_hour": (10.0, 900.0), "liter / kilowatt_hour": (0.1, 3.0), "1 / year": (0.01, 0.2),
     "flop / byte": (0.1, 1e4), "kgCO2e": (1.0, 1e6), "liter": (1.0, 1e6)}
FRAC, COUNT, PUE = (0.05, 1.0), (1.0, 1024.0), (1.0, 2.0)


class Case(typing.NamedTuple):
    fn: typing.Callable
    args: dict              # name -> None (range from its unit), (low, high) or [choices]; unit from the name
    freeze: tuple = ()      # root dimensions with a hidden constant (not scaled)
    why: str = ""           # the hidden constant
    fix: typing.Callable | None = None   # dict of sampled values -> dict (dependent arguments)


def _mmc(v):    # a stable queue: λ = ρ·c·μ with ρ < 1
    v["arrival_rate_per_s"] = v["arrival_rate_per_s"] / 1e3 * v["n_servers"] * v["service_rate_per_s"]
    return v


def _quantiles(v):    # serving_walls.combine_quantiles: each quantile at or above its mean
    v["q_a_s"], v["q_b_s"] = v["mean_a_s"] + v["q_a_s"], v["mean_b_s"] + v["q_b_s"]
    return v


FLOP_COUNT = "FLOP computed from counts (2 or 6 FLOP per parameter per token)"
CASES = [
    Case(node.roofline, dict(flop=None, bytes_moved=None, peak_flop_per_s=None, mem_bw_bytes_per_s=None,
                             efficiency=FRAC, dispatch_tax_s=(1e-7, 1e-3))),
    Case(node.ridge_point, dict(peak_flop_per_s=None, mem_bw_bytes_per_s=None)),
    Case(node.arithmetic_intensity, dict(flop=None, bytes_moved=None)),
    Case(node.attainable_flop_per_s, dict(intensity=None, peak_flop_per_s=None, mem_bw_bytes_per_s=None,
                                          efficiency=FRAC)),
    Case(node.dense_layer, dict(d_in=COUNT, d_out=COUNT, batch=COUNT, bytes_per_element=(0.5, 4.0)),
         ("[flop]",), FLOP_COUNT),
    Case(node.training_memory, dict(n_params=(1e6, 1e12), activation_bytes=None, weight_bytes_per_param=(1, 4),
                                    grad_bytes_per_param=(1, 4), optimizer_bytes_per_param=(4, 16),
                                    shard_factor=COUNT, zero_stage=[0, 1, 2, 3], dp=COUNT)),
    Case(node.inference_memory, dict(weight_bytes=None, kv_bytes=None, activation_bytes=None)),
    Case(node.transformer_activation_bytes, dict(seq_len=COUNT, micro_batch=COUNT, hidden_dim=COUNT, n_heads=COUNT,
                                                 n_layers=COUNT, tp=COUNT, recompute_code=[0, 1, 2]),
         ("[information]",), "16-bit activations: 2 bytes per element"),
    Case(node.memory_margin_bytes, dict(required_bytes=None, capacity_bytes=None)),
    Case(node.mfu, dict(achieved_flop_per_s=None, peak_flop_per_s=None)),
    Case(node.model_flops_utilization, dict(model_flop=None, step_time_s=None, n_devices=COUNT,
                                            peak_flop_per_s=None)),
    Case(node.prefill, dict(n_active_params=(1e6, 1e12), prompt_tokens=COUNT, batch=COUNT, peak_flop_per_s=None,
                            mem_bw_bytes_per_s=None, weight_bytes=None, efficiency=FRAC, dispatch_tax_s=(1e-7, 1e-3)),
         ("[flop]",), FLOP_COUNT),
    Case(node.decode, dict(weight_bytes=None, kv_bytes=None, n_active_params=(1e6, 1e12), batch=COUNT,
                           peak_flop_per_s=None, mem_bw_bytes_per_s=None, efficiency=FRAC,
                           dispatch_tax_s=(1e-7, 1e-3), kv_separate=[0, 1]), ("[flop]",), FLOP_COUNT),
    Case(node.serving_throughput, dict(itl_s=None, ttft_s=None, batch=COUNT, output_tokens=COUNT)),
    Case(node.kv_cache_bytes, dict(n_layers=COUNT, n_kv_heads=COUNT, head_dim=COUNT, seq_len=COUNT, batch=COUNT,
                                   bytes_per_element=(0.5, 4.0), kv_latent_dim=[0, 576])),
    Case(node.paged_kv_cache_bytes, dict(n_layers=COUNT, n_kv_heads=COUNT, head_dim=COUNT, seq_len=COUNT,
                                         batch=COUNT, bytes_per_element=(0.5, 4.0), block_tokens=(1.0, 64.0),
                                         kv_latent_dim=[0, 576])),
    Case(node.max_batch, dict(capacity_bytes=None, weight_bytes=None, kv_bytes_per_sequence=None,
                              reserve_frac=(0.0, 0.5))),
    Case(node.weight_streaming, dict(layer_weight_bytes=None, layer_flop=None, n_layers=COUNT,
                                     injection_bw_bytes_per_s=None, peak_flop_per_s=None, efficiency=FRAC,
                                     dispatch_tax_s=(1e-7, 1e-3))),
    Case(node.weight_streaming_balance_batch, dict(layer_params=(1e6, 1e10), injection_bw_bytes_per_s=None,
                                                   peak_flop_per_s=None, bytes_per_element=(0.5, 4.0),
                                                   efficiency=FRAC), ("[flop]",), "2 FLOP per parameter per item"),
    Case(queueing.mmc_queue, dict(arrival_rate_per_s=(50.0, 950.0), service_rate_per_s=None, n_servers=(1.0, 64.0),
                              quantile=(0.5, 0.999)), fix=_mmc),
    # issue 13: the serving walls and the M/G/c queues (walls 4 and 7, related functions)
    Case(queueing.mgc_queue, dict(arrival_rate_per_s=(50.0, 950.0), service_rate_per_s=None, n_servers=(1.0, 64.0),
                              service_cv2=(0.0, 3.0), arrival_cv2=(0.5, 2.0)), fix=_mmc),
    Case(queueing.ggc_queue_closed_form, dict(arrival_rate_per_s=(50.0, 950.0), service_rate_per_s=None,
                                          n_servers=(1.0, 64.0), service_cv2=(0.0, 3.0), arrival_cv2=(0.5, 2.0)),
         fix=_mmc),
    Case(serving_walls.lognormal_quantile, dict(mean=(1.0, 1e4), cv=(0.0, 3.0), q=(0.01, 0.999))),
    Case(serving_walls.combine_quantiles, dict(mean_a_s=None, q_a_s=None, mean_b_s=None, q_b_s=None), fix=_quantiles),
    Case(serving_walls.causal_attention_flop, dict(n_layers=COUNT, attn_width=(64.0, 16384.0), new_tokens=COUNT,
                                                   cached_tokens=(0.0, 8192.0)), ("[flop]",), FLOP_COUNT),
    Case(serving_walls.speculative_decoding, dict(k=[0, 1, 4, 8], acceptance=(0.0, 0.99), draft_cost_frac=(0.0, 0.5))),
    Case(serving_walls.batch_step_s, dict(weight_read_s=None, compute_s=None, kv_read_s=None, overhead_s=None)),
    Case(serving_walls.prefill_interference, dict(decode_step_s=(1e-3, 0.1), chunk_extra_s=(1e-4, 0.1),
                                                  chunks_per_s=(0.1, 100.0))),
    Case(serving_walls.running_batch, dict(arrivals_per_s=(0.1, 20.0), fixed_s=(1e-3, 1.0), step_at_one_s=(1e-3, 0.05),
                                           step_slope_s=(1e-6, 1e-4), iterations=(1.0, 500.0), batch_cap=COUNT,
                                           chunks_per_s=(0.0, 10.0), chunk_extra_s=(1e-4, 0.05))),
    Case(serving_walls.iteration_residual, dict(iteration_s=None, chunk_extra_s=None, chunk_share=FRAC,
                                                busy_frac=FRAC)),
    Case(serving_walls.kv_transfer, dict(kv_bytes=None, bw_bytes_per_s=None, latency_s=(1e-6, 1e-3), prefill_s=None,
                                         n_layers=COUNT, energy_j_per_byte=(1e-10, 1e-8))),
    Case(serving_walls.experts_touched, dict(n_experts=[8.0, 64.0, 256.0], top_k=[1.0, 2.0, 8.0], tokens=COUNT)),
    Case(serving_walls.offload_spill_bytes, dict(resident_bytes=None, spillable_bytes=None, capacity_bytes=None)),
    Case(serving_walls.split_read_s, dict(total_bytes=None, spilled_bytes=None, hbm_bw_bytes_per_s=None,
                                          host_bw_bytes_per_s=None)),
    Case(serving_walls.busy_fraction, dict(slot_utilization=FRAC, slots_per_replica=COUNT)),
    Case(serving_walls.power_at_utilization, dict(tdp_w=None, busy=FRAC, idle_frac=(0.1, 0.4), active_frac=(0.6, 1.0))),
    Case(data.ingestion, dict(demand_bytes_per_s=None, supply_bytes_per_s=None)),
    Case(data.transformation, dict(samples_per_s_required=None, cpu_samples_per_s_per_core=None, n_cores=COUNT)),
    Case(data.transformation_time, dict(batch=COUNT, seq_len=COUNT, cpu_tokens_per_s=(1e3, 1e7),
                                        accelerator_step_s=None)),
    Case(data.locality, dict(link_bw_bytes_per_s=None, bisection_frac=FRAC, oversubscription=(1.0, 4.0))),
    Case(laws.little, dict(arrival_rate_per_s=None, latency_s=None)),
    Case(laws.little_throughput_per_s, dict(concurrency=COUNT, latency_s=None)),
    Case(laws.effective_flop_per_s, dict(peak_flop_per_s=None, mfu=FRAC, eta_scaling=FRAC, goodput=FRAC)),
    Case(laws.iron_law_time_s, dict(total_flop=None, n_devices=COUNT, peak_flop_per_s=None, mfu=FRAC,
                                    eta_scaling=FRAC, goodput=FRAC)),
    Case(laws.training_flop, dict(n_params=(1e6, 1e12), n_tokens=(1e6, 1e12)), ("[flop]",), FLOP_COUNT),
    Case(laws.training_time_s, dict(n_params=(1e6, 1e12), n_tokens=(1e6, 1e12), peak_flop_per_s=None,
                                    efficiency=FRAC, n_devices=COUNT), ("[flop]",), FLOP_COUNT),
    Case(algorithm.training_flop, dict(n_params=(1e6, 1e12), n_tokens=(1e6, 1e12), flop_per_param_token=(2.0, 8.0))),
    Case(algorithm.chinchilla, dict(compute_flop=None, tokens_per_param=(5.0, 50.0), flop_per_param_token=(2.0, 8.0))),
    Case(algorithm.flop_for_budget, dict(budget_usd=None, usd_per_device_s=None, peak_flop_per_s=None,
                                         mfu_frac=FRAC)),
    Case(algorithm.reasoning, dict(n_steps=COUNT, step_time_s=None, n_params=(1e6, 1e12),
                                   tokens_per_step=(1.0, 100.0), ttft_s=None), ("[flop]",), FLOP_COUNT),
    Case(fleet.ring_allreduce, dict(msg_bytes=None, n=COUNT, bw_bytes_per_s=None, alpha_s=(1e-7, 1e-4))),
    Case(fleet.tree_allreduce, dict(msg_bytes=None, n=COUNT, bw_bytes_per_s=None, alpha_s=(1e-7, 1e-4))),
    Case(fleet.all_to_all, dict(msg_bytes=None, n=COUNT, bw_bytes_per_s=None, alpha_s=(1e-7, 1e-4))),
    Case(moe.expert_dispatch, dict(token_bytes=None, top_k=(1.0, 8.0), ep=COUNT, ranks_per_node=(1.0, 8.0),
                                   bw_intra_bytes_per_s=None, alpha_intra_s=(1e-7, 1e-4),
                                   bw_inter_bytes_per_s=None, alpha_inter_s=(1e-7, 1e-4),
                                   node_limit=[0.0, 4.0], dedup=[0.0, 1.0])),
    Case(fleet.ring_tree_crossover_bytes, dict(n=COUNT, alpha_s=(1e-7, 1e-4), bw_bytes_per_s=None)),
    Case(fleet.ring_tree_crossover_exact_bytes, dict(n=COUNT, alpha_s=(1e-7, 1e-4), bw_bytes_per_s=None)),
    Case(fleet.hierarchical_allreduce, dict(msg_bytes=None, n_intra=(1.0, 8.0), n_inter=COUNT,
                                            bw_intra_bytes_per_s=None, alpha_intra_s=(1e-7, 1e-4),
                                            bw_inter_bytes_per_s=None, alpha_inter_s=(1e-7, 1e-4))),
    Case(fleet.scaling_efficiency, dict(t_compute_s=None, t_dp_s=None, t_tp_s=None, t_ep_s=None, t_bubble_s=None,
                                        t_pp_s=None)),
    Case(fleet.parallel_step, dict(t_compute_s=None, dp=COUNT, tp=[1, 2, 4, 8, 16], pp=[1, 2, 4], ep=[1, 2, 8],
                                   grad_bytes=None, tp_act_bytes_per_layer=None, n_layers=COUNT,
                                   bw_intra_bytes_per_s=None, bw_inter_bytes_per_s=None, alpha_intra_s=(1e-7, 1e-4),
                                   alpha_inter_s=(1e-7, 1e-4), n_microbatches=COUNT, n_virtual_stages=(1.0, 4.0),
                                   ep_token_bytes=None, pp_act_bytes=None, gpus_per_node=[4, 8, 72],
                                   overlap_frac=(0.0, 1.0))),
    Case(fleet.cluster_mtbf_s, dict(component_mtbf_s=None, n=COUNT)),
    Case(fleet.failure_probability, dict(duration_s=None, mtbf_s=None)),
    Case(fleet.expected_failures, dict(duration_s=None, mtbf_s=None)),
    Case(fleet.multitenant_wait, dict(utilization_frac=(0.0, 0.95), service_rate_per_s=(1e-4, 10.0))),
    Case(ops.tco, dict(device_price_usd=None, n_devices=COUNT, duration_s=None, device_power_w=None,
                       electricity_usd_per_kwh=None, pue=PUE, depreciation_s=(1e7, 3e8),
                       maintenance_frac_per_year=None)),
    Case(ops.upfront_capex_usd, dict(device_price_usd=None, n_devices=COUNT, device_power_w=None, system_frac=FRAC,
                                     network_frac=FRAC, facility_usd_per_w=(5.0, 20.0), host_power_frac=FRAC)),
    Case(ops.cloud_cost, dict(cloud_usd_per_device_s=None, n_devices=COUNT, duration_s=None, utilization_frac=FRAC)),
    Case(ops.breakeven_utilization, dict(onprem_usd=None, cloud_usd_per_device_s=None, n_devices=COUNT,
                                         duration_s=None)),
    Case(ops.effective_usd_per_device_s, dict(cost_usd=None, n_devices=COUNT, duration_s=None,
                                              utilization_frac=FRAC)),
    Case(ops.cost_per_useful_flop, dict(cost_usd=None, n_devices=COUNT, duration_s=None, peak_flop_per_s=None,
                                        mfu_frac=FRAC, eta_scaling_frac=FRAC, goodput_frac=FRAC)),
    Case(ops.energy_j, dict(it_power_w=None, duration_s=None, pue=PUE)),
    Case(ops.sustainability, dict(it_power_w=None, duration_s=None, pue=PUE, carbon_gco2e_per_kwh=None,
                                  wue_l_per_kwh=None)),
    Case(ops.young_daly_interval_s, dict(checkpoint_s=None, mtbf_s=None)),
    Case(ops.checkpoint_overhead, dict(interval_s=None, checkpoint_s=None, mtbf_s=None, recovery_s=None)),
    Case(ops.goodput, dict(interval_s=None, checkpoint_s=None, mtbf_s=None, recovery_s=None)),
    Case(ops.goodput_daly, dict(interval_s=None, checkpoint_s=None, mtbf_s=(1e4, 1e6), recovery_s=None)),
    Case(ops.checkpoint_overhead_halfwrite, dict(interval_s=None, checkpoint_s=None, mtbf_s=None)),
    Case(ops.goodput_halfwrite, dict(interval_s=None, checkpoint_s=None, mtbf_s=None)),
    Case(analysis.loss_cascade, dict(n_devices=COUNT, peak_flop_per_s=None, mfu_frac=FRAC, eta_scaling_frac=FRAC,
                                     goodput_frac=FRAC)),
    Case(analysis.iron_law, dict(total_flop=None, n_devices=COUNT, peak_flop_per_s=None, mfu_frac=FRAC,
                                 eta_scaling_frac=FRAC, goodput_frac=FRAC)),
    Case(analysis.required_bandwidth, dict(bytes_per_token=None, target_latency_s=None)),
    Case(analysis.required_flop_per_s, dict(flop=None, target_s=None, efficiency_frac=FRAC)),
    Case(analysis.required_memory_bytes, dict(weight_bytes=None, kv_cache_bytes=None, activation_bytes=None,
                                              usable_frac=FRAC)),
    Case(analysis.required_devices, dict(total_flop=None, target_s=None, peak_flop_per_s=None, mfu_frac=FRAC,
                                         eta_scaling_frac=FRAC, goodput_frac=FRAC)),
]
N_SAMPLES = 32


def _sample(case: Case, rng: np.random.Generator) -> dict:
    out = {}
    for name, spec in case.args.items():
        unit = unit_of(name)
        assert unit is not None, f"{case.fn.__name__}: {name} has no unit"
        spec = spec if spec is not None else D[unit]
        if isinstance(spec, list):              # discrete choices
            out[name] = rng.choice(np.asarray(spec, np.float64), N_SAMPLES)
        else:                                   # (low, high): log-uniform (uniform from 0)
            lo, hi = (float(x) for x in spec)
            out[name] = (np.exp(rng.uniform(np.log(lo), np.log(hi), N_SAMPLES)) if lo > 0
                         else rng.uniform(lo, hi, N_SAMPLES))
    return case.fix(out) if case.fix else out


def _factor(unit: str, k: dict) -> float:
    return float(np.prod([k[d] ** e for d, e in dims_of(unit).items()])) if unit else 1.0


def _call(fn, values: dict):
    sig = inspect.signature(fn).parameters
    pos = [jnp.asarray(values[p], jnp.float64) for p, s in sig.items()
           if s.kind == s.POSITIONAL_OR_KEYWORD and p in values]
    kw = {p: jnp.asarray(v, jnp.float64) for p, v in values.items()
          if sig[p].kind == sig[p].KEYWORD_ONLY}
    out = fn(*pos, **kw)
    fields = _output_fields(fn)
    if fields is None:
        return {"<result>": np.asarray(out, np.float64)}
    return {f: np.asarray(getattr(out, f), np.float64) for f in fields}


@pytest.mark.parametrize("case", CASES, ids=[c.fn.__module__.split(".")[-1] + "." + c.fn.__name__ for c in CASES])
@settings(max_examples=8, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**32 - 1), logk=st.lists(st.floats(-2.0, 2.0), min_size=7, max_size=7))
def test_dimensional_homogeneity(case, seed, logk):
    check_homogeneous(case, seed, logk)


def check_homogeneous(case: Case, seed: int, logk) -> None:
    k = {d: (1.0 if d in case.freeze else 10.0 ** lk) for d, lk in zip(ROOT_DIMS, logk)}
    x = _sample(case, np.random.default_rng(seed))
    scaled = {n: v * _factor(unit_of(n), k) for n, v in x.items()}
    base, out = _call(case.fn, x), _call(case.fn, scaled)
    for field, y in base.items():
        unit = single_output_unit(case.fn) if field == "<result>" else unit_of(field)
        want = y * _factor(unit, k)
        got = out[field]
        assert np.isfinite(y).all() and np.isfinite(got).all(), field
        # plain numbers (fractions in [0, 1]) may be formed as 1 - x: allow a few ulps of 1.0 absolute
        # (fleet.parallel_step's scaling_efficiency of 2.5e-11 differed by 1.1e-16 under a time scale)
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=0.0 if unit else 1e-15,
                                   err_msg=f"{case.fn.__name__}.{field} [{unit or 'plain number'}] is not "
                                           f"homogeneous under scales {k}")


def fake_latency_s(flop, peak_flop_per_s, *, dispatch_tax_s=0.0):
    """A wall with a hidden constant: 1 ms of fixed overhead written as a bare number."""
    return flop / peak_flop_per_s + dispatch_tax_s + 1e-3


def fake_bandwidth_bytes_per_s(msg_bytes, alpha_s):
    """A dimensional slip: bytes / s**2."""
    return msg_bytes / alpha_s ** 2


def test_homogeneity_check_catches_hidden_constants_and_slips():
    for fn in (fake_latency_s, fake_bandwidth_bytes_per_s):
        args = {p: None for p in inspect.signature(fn).parameters}
        args.update({"alpha_s": (1e-6, 1e-3)} if "alpha_s" in args else {"dispatch_tax_s": (1e-6, 1e-3)})
        with pytest.raises(AssertionError, match="is not homogeneous"):
            check_homogeneous(Case(fn, args), 0, [1.0, 0.5, -0.5, 0.0, 0.0, 0.0, 0.0])
    check_homogeneous(Case(fake_latency_s, dict(flop=None, peak_flop_per_s=None)), 0,
                      [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])      # time not scaled: the constant is harmless


def test_every_physical_wall_has_a_homogeneity_case():
    covered = {c.fn for c in CASES}
    plain_only = {"kv_waste", "bisection_fraction", "tokens_per_param", "quantization", "pruning",
                  "quantization_loss_frac", "pipeline_bubble", "amdahl", "gustafson", "dp_sgd_slowdown",
                  "dispatch_copies", "ep_overlap_partner_frac"}
    missing = [p for p, fn in _wall_functions().items()
               if fn not in covered and fn.__name__ not in plain_only | NOT_PHYSICAL]
    assert not missing, f"walls without a homogeneity case: {missing}"


# --------------------------------------------------------------------------- monotonicity

def _rand(rng, lo, hi, n=64):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


MONOTONE = [
    # (function, base sampler, argument varied, output field or None, +1 non-decreasing / -1 non-increasing)
    (node.roofline, "roofline", "mem_bw_bytes_per_s", "latency_s", -1),
    (node.roofline, "roofline", "peak_flop_per_s", "latency_s", -1),
    (node.roofline, "roofline", "flop", "latency_s", +1),
    (node.decode, "decode", "mem_bw_bytes_per_s", "itl_s", -1),
    (node.decode, "decode", "kv_bytes", "itl_s", +1),
    (node.prefill, "prefill", "peak_flop_per_s", "ttft_s", -1),
    (fleet.ring_allreduce, "coll", "bw_bytes_per_s", None, -1),
    (fleet.ring_allreduce, "coll", "msg_bytes", None, +1),
    (fleet.ring_allreduce, "coll", "n", None, +1),
    (fleet.tree_allreduce, "coll", "bw_bytes_per_s", None, -1),
    (fleet.all_to_all, "coll", "bw_bytes_per_s", None, -1),
    (fleet.hierarchical_allreduce, "hier", "bw_inter_bytes_per_s", None, -1),
    (fleet.hierarchical_allreduce, "hier", "bw_intra_bytes_per_s", None, -1),
    (fleet.parallel_step, "step", "bw_inter_bytes_per_s", "step_s", -1),
    (fleet.parallel_step, "step", "bw_intra_bytes_per_s", "step_s", -1),
    (fleet.parallel_step, "step", "grad_bytes", "step_s", +1),
    (fleet.parallel_step, "step", "alpha_inter_s", "step_s", +1),
    (fleet.pipeline_bubble, "bubble", "n_microbatches", None, -1),
    (fleet.pipeline_bubble, "bubble", "n_stages", None, +1),
    (fleet.cluster_mtbf_s, "mtbf", "n", None, -1),
    (ops.sustainability, "sust", "carbon_gco2e_per_kwh", "carbon_kg", +1),
    (ops.sustainability, "sust", "pue", "energy_j", +1),
    (ops.sustainability, "sust", "wue_l_per_kwh", "water_l", +1),
    (ops.tco, "tco", "device_price_usd", "tco_usd", +1),
    (ops.tco, "tco", "electricity_usd_per_kwh", "tco_usd", +1),
    (ops.tco, "tco", "depreciation_s", "tco_usd", -1),
    (ops.goodput, "ckpt", "checkpoint_s", None, -1),
    (ops.goodput, "ckpt", "mtbf_s", None, +1),
    (ops.goodput, "ckpt", "recovery_s", None, -1),
    (ops.young_daly_interval_s, "yd", "mtbf_s", None, +1),
    (queueing.mmc_queue, "queue", "service_rate_per_s", "p99_latency_s", -1),
    (queueing.mmc_queue, "queue", "n_servers", "p99_latency_s", -1),
    (queueing.mmc_queue, "queue", "arrival_rate_per_s", "p99_latency_s", +1),
    (queueing.mmc_queue, "queue", "arrival_rate_per_s", "mean_wait_s", +1),
    (node.kv_cache_bytes, "kv", "seq_len", None, +1),
]


def _base(kind: str, rng) -> dict:
    if kind == "roofline":
        return dict(flop=_rand(rng, 1e9, 1e15), bytes_moved=_rand(rng, 1e6, 1e12), peak_flop_per_s=_rand(rng, 1e12, 1e16),
                    mem_bw_bytes_per_s=_rand(rng, 1e10, 1e13), efficiency=_rand(rng, 0.1, 1.0),
                    dispatch_tax_s=_rand(rng, 1e-7, 1e-3))
    if kind == "decode":
        return dict(weight_bytes=_rand(rng, 1e8, 1e12), kv_bytes=_rand(rng, 1e6, 1e11), n_active_params=_rand(rng, 1e8, 1e12),
                    batch=_rand(rng, 1, 256), peak_flop_per_s=_rand(rng, 1e12, 1e16),
                    mem_bw_bytes_per_s=_rand(rng, 1e10, 1e13), efficiency=_rand(rng, 0.1, 1.0))
    if kind == "prefill":
        return dict(n_active_params=_rand(rng, 1e8, 1e12), prompt_tokens=_rand(rng, 1, 8192), batch=_rand(rng, 1, 64),
                    peak_flop_per_s=_rand(rng, 1e12, 1e16), mem_bw_bytes_per_s=_rand(rng, 1e10, 1e13),
                    weight_bytes=_rand(rng, 1e8, 1e12))
    if kind == "coll":
        return dict(msg_bytes=_rand(rng, 1e3, 1e11), n=np.round(_rand(rng, 1, 4096)), bw_bytes_per_s=_rand(rng, 1e9, 1e12),
                    alpha_s=_rand(rng, 1e-7, 1e-4))
    if kind == "hier":
        return dict(msg_bytes=_rand(rng, 1e3, 1e11), n_intra=np.round(_rand(rng, 1, 8)), n_inter=np.round(_rand(rng, 1, 512)),
                    bw_intra_bytes_per_s=_rand(rng, 1e10, 1e12), alpha_intra_s=_rand(rng, 1e-7, 1e-5),
                    bw_inter_bytes_per_s=_rand(rng, 1e9, 1e11), alpha_inter_s=_rand(rng, 1e-6, 1e-4))
    if kind == "step":
        return dict(t_compute_s=_rand(rng, 1e-2, 10), dp=np.round(_rand(rng, 1, 1024)), tp=rng.choice([1., 2, 4, 8], 64),
                    pp=rng.choice([1., 2, 4, 8], 64), ep=rng.choice([1., 2, 8], 64), grad_bytes=_rand(rng, 1e8, 1e12),
                    tp_act_bytes_per_layer=_rand(rng, 1e5, 1e9), n_layers=np.round(_rand(rng, 8, 128)),
                    bw_intra_bytes_per_s=_rand(rng, 1e10, 1e12), bw_inter_bytes_per_s=_rand(rng, 1e9, 1e11),
                    alpha_intra_s=_rand(rng, 1e-7, 1e-5), alpha_inter_s=_rand(rng, 1e-6, 1e-4),
                    n_microbatches=np.round(_rand(rng, 1, 64)), ep_token_bytes=_rand(rng, 1e5, 1e9),
                    pp_act_bytes=_rand(rng, 1e5, 1e9), overlap_frac=rng.uniform(0, 1, 64))
    if kind == "bubble":
        return dict(n_stages=np.round(_rand(rng, 1, 64)), n_microbatches=np.round(_rand(rng, 1, 256)),
                    n_virtual_stages=np.round(_rand(rng, 1, 4)))
    if kind == "mtbf":
        return dict(component_mtbf_s=_rand(rng, 1e5, 1e9), n=np.round(_rand(rng, 1, 1e5)))
    if kind == "sust":
        return dict(it_power_w=_rand(rng, 1e2, 1e8), duration_s=_rand(rng, 1, 1e8), pue=rng.uniform(1, 2, 64),
                    carbon_gco2e_per_kwh=_rand(rng, 1, 1000), wue_l_per_kwh=_rand(rng, 0.01, 3))
    if kind == "tco":
        return dict(device_price_usd=_rand(rng, 1e2, 1e6), n_devices=np.round(_rand(rng, 1, 1e5)), duration_s=_rand(rng, 1e3, 1e9),
                    device_power_w=_rand(rng, 1, 1e4), electricity_usd_per_kwh=_rand(rng, 0.01, 0.5),
                    pue=rng.uniform(1, 2, 64), depreciation_s=_rand(rng, 1e7, 3e8))
    if kind == "ckpt":
        return dict(interval_s=_rand(rng, 60, 1e5), checkpoint_s=_rand(rng, 1, 1e3), mtbf_s=_rand(rng, 1e4, 1e7),
                    recovery_s=_rand(rng, 1, 1e4))
    if kind == "yd":
        return dict(checkpoint_s=_rand(rng, 1, 1e3), mtbf_s=_rand(rng, 1e3, 1e7))
    if kind == "queue":
        c, mu = np.round(_rand(rng, 1, 64)), _rand(rng, 0.1, 10)
        return dict(arrival_rate_per_s=rng.uniform(0.05, 0.9, 64) * c * mu, service_rate_per_s=mu, n_servers=c)
    if kind == "kv":
        return dict(n_layers=np.round(_rand(rng, 1, 128)), n_kv_heads=np.round(_rand(rng, 1, 64)), head_dim=128.0,
                    seq_len=np.round(_rand(rng, 1, 1e5)), batch=np.round(_rand(rng, 1, 256)), bytes_per_element=2.0)
    raise KeyError(kind)


@pytest.mark.parametrize("fn, kind, arg, field, sign", MONOTONE,
                         ids=[f"{m[0].__name__}-{m[2]}-{m[3] or ''}" for m in MONOTONE])
@settings(max_examples=6, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**32 - 1), step=st.floats(1.001, 100.0))
def test_monotone(fn, kind, arg, field, sign, seed, step):
    x = _base(kind, np.random.default_rng(seed))
    if kind == "queue" and arg in ("service_rate_per_s", "n_servers"):
        pass                                    # more capacity keeps a stable queue stable
    elif kind == "queue":
        step = min(step, 1.0 / 0.9)             # keep rho < 1
    y = {**x, arg: x[arg] * step}
    a, b = _call(fn, x), _call(fn, y)
    a, b = (a[field or "<result>"], b[field or "<result>"])
    diff = sign * (b - a)
    assert (diff >= -1e-9 * np.abs(a)).all(), (f"{fn.__name__}: {field or 'result'} moved the wrong way when "
                                                f"{arg} grew x{step:.3g}: {a[diff < 0][:3]} -> {b[diff < 0][:3]}")


# --------------------------------------------------------------------------- symmetries and consistency

def test_symmetries_of_the_walls():
    rng = np.random.default_rng(0)
    t = {k: _rand(rng, 1e-3, 10) for k in ("t_dp_s", "t_tp_s", "t_ep_s", "t_bubble_s", "t_pp_s")}
    tc = _rand(rng, 1e-2, 10)
    ref = np.asarray(fleet.scaling_efficiency(tc, *t.values()))
    for perm in itertools.islice(itertools.permutations(t.values()), 0, 120, 17):
        np.testing.assert_allclose(np.asarray(fleet.scaling_efficiency(tc, *perm)), ref, rtol=1e-12)

    dims = [np.round(_rand(rng, 1, 128)) for _ in range(5)]
    ref = np.asarray(node.kv_cache_bytes(*dims, 2.0))
    for perm in itertools.permutations(dims):
        np.testing.assert_allclose(np.asarray(node.kv_cache_bytes(*perm, 2.0)), ref, rtol=1e-12)

    p, d, a = _rand(rng, 1e2, 1e6), _rand(rng, 1, 1e7), _rand(rng, 0.1, 10)          # P·t is what counts
    e1 = ops.sustainability(p, d, 1.2, 400.0, 1.8)
    e2 = ops.sustainability(p * a, d / a, 1.2, 400.0, 1.8)
    for f in e1._fields:
        np.testing.assert_allclose(np.asarray(getattr(e2, f)), np.asarray(getattr(e1, f)), rtol=1e-12)

    x = _base("coll", rng)                    # only M/β enters the bandwidth term
    r1 = fleet.ring_allreduce(x["msg_bytes"], x["n"], x["bw_bytes_per_s"], x["alpha_s"])
    r2 = fleet.ring_allreduce(x["msg_bytes"] * 7.0, x["n"], x["bw_bytes_per_s"] * 7.0, x["alpha_s"])
    np.testing.assert_allclose(np.asarray(r2), np.asarray(r1), rtol=1e-12)


def test_consistency_between_walls():
    rng = np.random.default_rng(1)
    x = _base("hier", rng)
    one = np.ones_like(x["n_intra"])
    np.testing.assert_allclose(
        np.asarray(fleet.hierarchical_allreduce(x["msg_bytes"], x["n_intra"], one, x["bw_intra_bytes_per_s"],
                                                x["alpha_intra_s"], x["bw_inter_bytes_per_s"], x["alpha_inter_s"])),
        np.asarray(fleet.ring_allreduce(x["msg_bytes"], x["n_intra"], x["bw_intra_bytes_per_s"], x["alpha_intra_s"])),
        rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(fleet.hierarchical_allreduce(x["msg_bytes"], one, x["n_inter"], x["bw_intra_bytes_per_s"],
                                                x["alpha_intra_s"], x["bw_inter_bytes_per_s"], x["alpha_inter_s"])),
        np.asarray(fleet.ring_allreduce(x["msg_bytes"], x["n_inter"], x["bw_inter_bytes_per_s"], x["alpha_inter_s"])),
        rtol=1e-12)
    # M/M/1 (c = 1): Erlang C = rho, Wq = rho / (mu - lambda) (Kleinrock 1975)
    mu = _rand(rng, 0.1, 10)
    rho = rng.uniform(0.05, 0.95, mu.shape)
    q = queueing.mmc_queue(rho * mu, mu, 1.0)
    np.testing.assert_allclose(np.asarray(q.p_wait), rho, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(q.mean_wait_s), rho / (mu - rho * mu), rtol=1e-9)
    # goodput at the Young-Daly interval is the optimum of the steady-state model (R = 0)
    x = _base("yd", rng)
    tau = np.asarray(ops.young_daly_interval_s(x["checkpoint_s"], x["mtbf_s"]))
    g0 = np.asarray(ops.goodput(tau, x["checkpoint_s"], x["mtbf_s"]))
    for f in (0.8, 1.25):
        assert (np.asarray(ops.goodput(tau * f, x["checkpoint_s"], x["mtbf_s"])) <= g0 + 1e-12).all()


# --------------------------------------------------------------------------- scenarios

@functools.lru_cache(maxsize=None)
def _scenario_case(scenario: str):
    fixed = {"n_tokens": "1e12 token"} if scenario == "training" else {"request_rate": "100 /s", "replicas": 4}
    axes = {"hardware": ["h100_sxm", "a100_80gb", "b200", "tpu_v5p", "cerebras_wse3", "jetson_orin"],
            "model": ["llama3_8b", "llama3_70b", "mixtral_8x7b", "resnet50"], "tp": [1, 8],
            "region": ["quebec", "poland"]}
    if scenario == "training":
        axes["n_accelerators"] = [64, 1024]
    space = load_space({"scenario": scenario, "fixed": fixed, "axes": axes,
                        "objectives": {"minimize": ["carbon_kg"]}})
    return space, np.array(np.unravel_index(np.arange(space.size), space.radices)).T.astype(np.int32)


def _run(scenario, tables):
    """Outputs for every configuration (test_finiteness's jitted program: compiled once per session)."""
    space, digits = _scenario_case(scenario)
    _, out, _ = evaluate(space, digits, jnp.float64, tables=tables)
    return out


@pytest.mark.parametrize("scenario", ["training", "serving"])
def test_scenarios_monotone_in_hardware_and_grid(scenario):
    """Faster memory / compute / links never make a step slower; a dirtier grid never lowers carbon,
    and carbon is proportional to carbon intensity (operational carbon only)."""
    t = CAT.tables(jnp.float64)
    base = _run(scenario, t)
    time_key = "step_time_s" if scenario == "training" else "itl_s"
    for field in ("mem_bw_bytes_per_s", "peak_flop_per_s", "scaleup_bw_bytes_per_s", "injection_bw_bytes_per_s"):
        faster = _run(scenario, t._replace(hw=t.hw._replace(**{field: getattr(t.hw, field) * 2.0})))
        for key in (time_key,) + (("ttft_s",) if scenario == "serving" else ()):
            assert (faster[key] <= base[key] * (1 + 1e-12)).all(), f"2x {field} made {key} slower"
    fabric = _run(scenario, t._replace(fabric=t.fabric._replace(bw_bytes_per_s=t.fabric.bw_bytes_per_s * 2.0)))
    assert (fabric[time_key] <= base[time_key] * (1 + 1e-12)).all(), "2x fabric bandwidth made a step slower"
    dirty = _run(scenario, t._replace(region=t.region._replace(
        carbon_gco2e_per_kwh=t.region.carbon_gco2e_per_kwh * 3.0)))
    np.testing.assert_allclose(dirty["carbon_kg"], 3.0 * base["carbon_kg"], rtol=1e-12)
    for k in base:                       # nothing else depends on carbon intensity
        if "carbon" not in k:
            np.testing.assert_array_equal(dirty[k], base[k], err_msg=k)
