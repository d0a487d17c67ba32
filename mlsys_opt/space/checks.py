"""Checks of the sections of a design-space spec, and the whole-space feasibility check.

Split out of `mlsys_opt.space`: `space.load_space` parses [fixed] and [axes]
and hands the other sections to the functions here.  None of them raises:
each reports every mistake through ``report(section, key, message)`` (the
loader prefixes the file and collects them into one `SpecError`), then returns
what was valid.

``check_feasibility`` rejects spaces in which a structural constraint fails
for EVERY configuration (tp beyond a node, pp beyond the layers, a precision
no hardware has, tp·pp·ep never dividing n_accelerators, ...), so a sweep that
could only find nothing is refused before it starts.  It needs the values of
every parameter over the space (SI floats / row codes), not the configurations.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np

from .._types import PRECISIONS
from ..catalog._load import HAS_COLUMNS
from ..errors import did_you_mean
from ..scenarios import schema
from .values import BadValue, format_si, parse_quantity

SEARCH_ALGORITHMS = schema.SEARCH_ALGORITHM_NAMES
OBJECTIVE_KEYS = ("minimize", "maximize", "report")

Report = Callable[[str | None, str, str], None]   # report(section or None, key, message)


def unknown_param_message(name: str, scenario: str) -> str:
    """Message for a [fixed]/[axes] key that is not a parameter of `scenario`."""
    allowed = schema.PARAMS[scenario]
    return (f"not a parameter of the {scenario} scenario{did_you_mean(name, allowed)}"
            f" (allowed: {', '.join(allowed)})")


def example_for(spec: schema.ParamSpec) -> str:
    """', e.g. model = "llama3_70b"' for the required parameters, '' otherwise."""
    return {"models": ', e.g. model = "llama3_70b"', "tokens": ', e.g. n_tokens = "1.5e12 token"',
            "rate": ', e.g. request_rate = "1000 /s"'}.get(spec.catalog_kind or spec.dimension or "", "")


def parse_limits(scenario: str, table: Mapping, report: Report) -> dict[str, tuple[str, float]]:
    """[constraints] key = value -> {output: ("max"|"min", SI value)}, refusing limits nothing can meet."""
    allowed = schema.LIMITS[scenario]
    limits = {}
    for key, raw in table.items():
        if key not in allowed:
            report("constraints", key, f"unknown constraint for the {scenario} scenario"
                   f"{did_you_mean(key, allowed)} (allowed: {', '.join(allowed)})")
            continue
        output, sense, dim = allowed[key]
        try:
            value = parse_quantity(raw, dim)
        except BadValue as exc:
            report("constraints", key, str(exc))
            continue
        unit = schema.OUTPUTS[scenario][output].unit
        if not math.isfinite(value):
            report("constraints", key, f"must be finite; got {raw!r}")
        elif sense == "max" and value <= 0:
            report("constraints", key, f"no configuration can satisfy {output} <= {format_si(value, unit)}; "
                   "an upper limit must be > 0")
        elif sense == "min" and unit == "frac" and not 0 <= value <= 1:
            report("constraints", key, f"no configuration can satisfy {output} >= {value:g}; "
                   "a fraction limit must lie in [0, 1]")
        elif dim == "count" and value != round(value):
            report("constraints", key, f"must be a whole number; got {raw!r}")
        else:
            limits[output] = (sense, value)
    return limits


def parse_objectives(scenario: str, table: Mapping,
                     report: Report) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """[objectives] -> (((output, "min"|"max"), ...), extra report-only outputs)."""
    outputs = schema.OUTPUTS[scenario]
    for key in table:
        if key not in OBJECTIVE_KEYS:
            report("objectives", key, f"unknown key{did_you_mean(key, OBJECTIVE_KEYS)}"
                   f" (allowed: {', '.join(OBJECTIVE_KEYS)})")
    lists = {}
    for key in OBJECTIVE_KEYS:
        raw = table.get(key, [])
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            report("objectives", key, f"must be a list of output names; got {raw!r}")
            raw = []
        good = []
        for name in raw:
            if name not in outputs:
                report("objectives", key, f"{name!r} is not an output of the {scenario} scenario"
                       f"{did_you_mean(name, outputs)} (allowed: {', '.join(outputs)})")
            elif key != "report" and outputs[name].unit == "code":
                report("objectives", key, f"{name!r} is a category code, not a quantity to optimize; "
                       "list it under report")
            elif name in good:
                report("objectives", key, f"{name!r} is listed twice")
            else:
                good.append(name)
        lists[key] = good
    both = set(lists["minimize"]) & set(lists["maximize"])
    for name in sorted(both):
        report("objectives", "maximize", f"{name!r} is both minimized and maximized")
    objectives = tuple((n, "min") for n in lists["minimize"]) + tuple((n, "max") for n in lists["maximize"])
    if not table.get("minimize") and not table.get("maximize"):
        report("objectives", "minimize", "no objectives; name at least one output under minimize or "
               f"maximize (allowed: {', '.join(n for n, o in outputs.items() if o.unit != 'code')})")
    extra = tuple(n for n in lists["report"] if n not in dict(objectives))
    return objectives, extra


def parse_settings(section: str, table: Mapping, defaults: dict, report: Report) -> dict:
    """[search] / [sweep] -> `defaults` overridden by the valid keys of `table`."""
    out = dict(defaults)
    for key, raw in table.items():
        if key not in defaults:
            report(section, key, f"unknown key{did_you_mean(key, defaults)} (allowed: {', '.join(defaults)})")
        elif key == "algorithm":
            if raw not in SEARCH_ALGORITHMS:
                report(section, key, f"unknown algorithm {raw!r}{did_you_mean(str(raw), SEARCH_ALGORITHMS)}"
                       f" (allowed: {', '.join(SEARCH_ALGORITHMS)})")
            else:
                out[key] = raw
        elif isinstance(raw, bool) or not isinstance(raw, int) or raw < (0 if key == "seed" else 1):
            report(section, key, f"must be a {'non-negative' if key == 'seed' else 'positive'} integer; "
                   f"got {raw!r}")
        else:
            out[key] = raw
    if section == "search" and out["pop_size"] > out["evals"]:
        report(section, "pop_size", f"pop_size {out['pop_size']} exceeds evals {out['evals']}")
    return out


def check_feasibility(scenario: str, values: dict[str, np.ndarray], axis_names: set[str], limits, catalog,
                      report: Report) -> None:
    """Report spaces where a structural constraint fails for EVERY configuration.

    values: parameter -> array of the values it takes in the space (SI / codes).
    """
    def where(name: str) -> str:
        return "axes" if name in axis_names else "fixed"

    tp = values["tp"]
    # the catalog's DataFrames (numpy), not catalog.tables() (JAX arrays): loading a spec -- and so
    # `mlsys-opt spaces list` -- runs without importing JAX
    frames = catalog.frames
    acc, mod = frames["accelerators"], frames["models"]

    def col(frame, name: str, rows) -> np.ndarray:
        return frame[name].to_numpy(np.float64)[rows]

    hardware, models = values["hardware"].astype(int), values["model"].astype(int)
    per_node = col(acc, "accelerators_per_node", hardware)
    # KEMPNER (issue 12): training's accelerators_per_node > 0 replaces the catalog's node size
    apn = np.asarray(values.get("accelerators_per_node", np.zeros(1)), np.float64)
    per_node = np.concatenate([per_node if (apn <= 0).any() else per_node[:0], apn[apn > 0]])
    _smallest_above_largest(report, where, "tp", tp, "accelerators_per_node", per_node,
                            "the hardware in the space has at most {} accelerators per node")
    _check_heads(report, where, tp, col(mod, "n_heads", models), col(mod, "n_kv_heads", models))
    n_layers = col(mod, "n_layers", models)
    _smallest_above_largest(report, where, "pp", values["pp"], "n_layers", n_layers,
                            "the models in the space have at most {} layers")
    has = acc[list(HAS_COLUMNS)].to_numpy(bool)[np.ix_(hardware, values["precision"].astype(int))]
    if not has.any():
        hw_names = [catalog.names("accelerators")[int(i)] for i in values["hardware"]]
        precisions = [PRECISIONS[int(i)] for i in values["precision"]]
        report(where("precision"), "precision",
               f"no configuration can satisfy the precision constraint: none of {', '.join(hw_names)} "
               f"supports {' or '.join(precisions)}")
    rate = values.get("request_rate")
    if rate is not None and not (rate > 0).any():     # an axis may hold 0 (the scenario flags those rows)
        report(where("request_rate"), "request_rate",
               f"{rate.max():g} /s: a serving deployment needs requests to serve (at zero load there are no "
               "tokens to price and no queue to measure); give a rate > 0, e.g. request_rate = \"10 /s\"")
    chunk = values.get("chunk_size")          # serving: a prefill chunk beyond every model's context
    if chunk is not None:
        ctx = col(mod, "context_len", models)
        if ctx.max() > 0 and chunk.max() > ctx.max():
            report(where("chunk_size"), "chunk_size", f"{int(chunk.max()):,} tokens is larger than the context "
                   f"of the model ({int(ctx.max()):,} tokens); allowed: 0 (no chunking) to {int(ctx.max()):,}")
    if scenario != "training":
        return
    cp = values.get("cp", np.ones(1))
    deg = np.multiply.outer(np.multiply.outer(tp, values["pp"]), cp).ravel()
    n = values["n_accelerators"]
    if not (np.mod.outer(n, np.unique(deg)) == 0).any():
        report(where("n_accelerators"), "n_accelerators",
               f"no configuration can satisfy tp·cp·pp dividing n_accelerators: tp·cp·pp takes "
               f"{_few(np.unique(deg))} and n_accelerators takes {_few(n)}")
    if not (np.mod.outer(values["seq_len"], cp) == 0).any():
        report(where("cp"), "cp", f"no configuration can satisfy cp dividing seq_len: cp takes {_few(cp)} "
               f"and seq_len takes {_few(values['seq_len'])} (context parallelism splits the sequence)")
    n_experts = col(mod, "n_experts", models)
    _smallest_above_largest(report, where, "ep", values["ep"], "n_experts", n_experts,
                            "the models in the space have at most {} experts (1 for a dense model)")
    ep = values["ep"]
    if ep.min() <= n_experts.max() and not (np.mod.outer(n_experts, ep) == 0).any():
        report(where("ep"), "ep", f"no configuration can satisfy ep dividing n_experts: ep takes {_few(ep)} "
               f"and the models have {_few(n_experts)} experts")
    # dp >= 1 (ep lives inside dp): a micro-batch of >= 1 sequence and >= 1 micro-batch need
    # micro_batch_size <= global_batch (when given) or microbatches <= global_batch (when given).
    mbs = values.get("micro_batch_size", np.zeros(1))
    gb_max = values["global_batch"].max()
    by_size = (mbs > 0) & (mbs <= gb_max)
    by_count = (mbs <= 0).any() and values["microbatches"].min() <= gb_max
    if not by_size.any() and not by_count:
        key = "micro_batch_size" if (mbs > 0).all() else "microbatches"
        report(where(key), key, f"no configuration can satisfy dp·{key} <= global_batch: the smallest {key} is "
               f"{values[key][values[key] > 0].min():g} (dp >= 1) but global_batch is at most {gb_max:g}")
    if "n_accelerators" in limits and n.min() > limits["n_accelerators"][1]:
        report("constraints", "max_accelerators",
               f"no configuration can satisfy n_accelerators <= {limits['n_accelerators'][1]:g}: "
               f"the smallest n_accelerators in the space is {n.min():g}")


def tp_splits_heads(tp, n_heads, n_kv_heads):
    """Whether tensor parallelism `tp` splits a model's attention heads (broadcasting arrays).

    tp must divide the query heads; the KV heads are divided by tp, or replicated when tp is a
    multiple of them (GQA/MQA, as Megatron-LM and vLLM do).  Models without heads (CNNs) always pass.
    Same rule as the training scenario's structural "heads" constraint.
    """
    tp, heads, kv = (np.asarray(x, np.float64) for x in (tp, n_heads, n_kv_heads))
    kv = np.where(kv > 0, kv, heads)
    ok = (np.mod(heads, tp) == 0) & ((np.mod(kv, tp) == 0) | (np.mod(tp, np.maximum(kv, 1)) == 0))
    return (heads <= 0) | ok


def _check_heads(report: Report, where, tp: np.ndarray, heads: np.ndarray, kv: np.ndarray) -> None:
    """Report tp when no (tp, model) pair of the space splits the attention heads (heads, kv: per model)."""
    if not tp_splits_heads(tp[:, None], heads[None, :], kv[None, :]).any():
        pairs = sorted({(int(h), int(k)) for h, k in zip(heads, kv)})
        shown = ", ".join(f"{h} heads / {k} KV heads" for h, k in pairs[:4])
        report(where("tp"), "tp",
               f"no configuration can split the attention heads: tp takes {_few(tp)} but the models have "
               f"{shown}; tp must divide the heads, and divide the KV heads or be a multiple of them")


def _smallest_above_largest(report: Report, where, param: str, values, bound: str, bounds, what: str) -> None:
    """Report `param` when even its smallest value exceeds the largest `bound` in the space."""
    if values.min() > bounds.max():
        report(where(param), param,
               f"no configuration can satisfy {param} <= {bound}: the smallest {param} is {values.min():g} "
               f"but {what.format(format(bounds.max(), 'g'))}")


def _few(values: np.ndarray) -> str:
    vals = [f"{v:g}" for v in np.unique(values)]
    return "{" + ", ".join(vals[:8]) + (", ..." if len(vals) > 8 else "") + "}"


__all__ = ["OBJECTIVE_KEYS", "SEARCH_ALGORITHMS", "check_feasibility", "tp_splits_heads", "example_for", "parse_limits",
           "parse_objectives", "parse_settings", "unknown_param_message"]
