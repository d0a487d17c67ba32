"""Parallelism layouts searched: the fewest accelerators for a deadline (wall 22), the best layout of a configuration.

`synthesis.min_devices_for_time` answers "how many accelerators train this in T days?"
for one parallelism layout.  The answer depends on the layout as much as on the
hardware: Llama-3-8B on 2T tokens in 14 days needs 352 H100s at the capstone's
tp 8 × pp 4 and 225 data-parallel with FSDP (tp 1, pp 1, ZeRO-3), because a small
model split 32 ways runs small GEMMs, TP collectives and a pipeline bubble.  A user who asks the
question without naming a layout expects the tool to pick the one a practitioner
would, so :func:`min_devices_over_layouts` searches them:

    layouts  = every combination of the `axes` values (default tp ∈ {1, 2, 4, 8},
               pp ∈ {1, 2, 4, 8, 16}, ZeRO stage ∈ {1, 3}; the config's value for the rest)
    N_l      = the smallest multiple of g_l = tp·cp·pp·ep at which layout l is feasible
               (memory, heads, batch split, ...) and trains within T
    answer   = argmin over l of (N_l, time at N_l)

in two vectorised passes (no per-configuration loop): a geometric grid of `grid`
fleet sizes per layout, from the physical bound N_lb = 6PD/(T·peak) (MFU = 1: the
scenario may beat the user's MFU, so the iron law N₀ = 6PD/(T·peak·MFU) bounds
nothing) to `max_factor`·N₀, finds each layout's first feasible grid point C_l;
then the multiples of g_l between the grid point below it and C_l are evaluated
(every one when there are at most MAX_FINE, i.e. for fleets up to a few thousand
accelerators; else MAX_FINE of them evenly spaced), so each reported N_l is the
smallest such fleet, not a grid value, provided a fleet that meets T keeps meeting
it when grown by one grid step (more devices: shorter steps, less memory each).
Layouts whose C_l exceeds `runners_up` × min_l C_l are not refined (every grid point below C_l failed).

:func:`best_layout_at` answers the question for a given configuration: the fastest
feasible layout on its fleet (training), or the cheapest per token for its load
(serving: tp × pp, replicas as the config says), which `mlsys-opt evaluate` names when
the user gave no layout.

Source of the default axes: the layouts Megatron-LM / NeMo and torchtitan recipes
use (TP within an 8-GPU node, pipeline depths of powers of two, ZeRO-1 as
Megatron's distributed optimizer, ZeRO-3 as FSDP); serving engines' tp 1-8 and pp 1-2.
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..errors import MlsysOptError
from ..point.config import resolve_config
from ..walls import analysis
from .synthesis import MAX_DEVICES, DevicesResult, _scenario_jit, run_flop

LAYOUT_AXES: dict[str, tuple[int, ...]] = {"tp": (1, 2, 4, 8), "pp": (1, 2, 4, 8, 16), "zero_stage": (1, 3)}
SERVING_LAYOUT_AXES: dict[str, tuple[int, ...]] = {"tp": (1, 2, 4, 8), "pp": (1, 2)}
OBJECTIVE = {"training": "time_to_train_s", "serving": "cost_per_mtok_usd"}      # what best_layout_at minimises
CHUNK = 4096            # rows per jitted call (the shape min_devices_for_time compiles too)
MAX_FINE = 512          # fleet sizes per layout in the refinement pass


class LayoutsResult(NamedTuple):
    """The fewest-accelerator layout and its runners-up.

    best: DevicesResult at the winning layout (n = 0 when no layout meets the target);
    layout: {axis: value} of the winner ({} when none);
    table: one row per layout refined exactly (axes..., devices, time_to_train_s, tco_usd),
      fewest devices first, then the shorter time.
    n_layouts: layouts searched.
    """
    best: DevicesResult
    layout: dict
    table: pd.DataFrame
    n_layouts: int


def _evaluate(rows: dict, tables, eff, dtype, p_dtypes, scenario: str = "training") -> tuple[np.ndarray, dict]:
    """ok [n] (feasible, finite objectives) and the outputs {field: [n]} of the scenario, CHUNK rows per jitted
    call (the last chunk padded with its final row)."""
    n = len(next(iter(rows.values())))
    fn = _scenario_jit(scenario)
    oks, outs = [], []
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        batch = {k: jnp.asarray(np.concatenate([v[start:stop], np.full(CHUNK - (stop - start), v[stop - 1])]),
                                p_dtypes[k]) for k, v in rows.items()}
        o, cons = fn(batch, tables, eff)
        o = jax.tree_util.tree_map(lambda x: np.asarray(x)[: stop - start], o)
        g = np.stack([np.asarray(c)[: stop - start] for c in cons])
        finite = np.all([np.isfinite(np.asarray(x, np.float64)) for x in o], axis=0)
        oks.append(np.all(g <= 0, axis=0) & finite)
        outs.append(o)
    cat = {f: np.concatenate([np.asarray(getattr(o, f)) for o in outs]) for f in outs[0]._fields}
    return np.concatenate(oks), cat


def _rows(q: dict, layouts: list[dict], ks: list[np.ndarray], groups: np.ndarray) -> tuple[dict, np.ndarray]:
    """Rows {param: [n]} for layout l at fleet sizes ks[l]·g_l, and each row's layout index."""
    idx = np.concatenate([np.full(len(k), i) for i, k in enumerate(ks)])
    rows = {k: np.full(len(idx), v) for k, v in q.items()}
    for key in layouts[0]:
        rows[key] = np.array([layouts[i][key] for i in idx], dtype=float)
    rows["n_accelerators"] = np.concatenate([k * groups[i] for i, k in enumerate(ks)]).astype(float)
    return rows, idx


def _setup(target, config: dict, axes: dict | None, dtype, who: str, scenarios=("training",)):
    """(scenario, q: the base row {param: value}, p_dtypes, catalog tables, layouts, groups g_l = tp·cp·pp·ep)."""
    scenario, _, p, catalog = resolve_config(target, config, dtype)
    if scenario not in scenarios:
        raise MlsysOptError(f"{who} needs the {' or '.join(scenarios)} scenario; got {scenario}")
    axes = dict((LAYOUT_AXES if scenario == "training" else SERVING_LAYOUT_AXES) if axes is None else axes)
    if not axes or any(len(v) == 0 for v in axes.values()):
        raise MlsysOptError(f"{who}: every searched axis needs at least one value")
    unknown = [k for k in axes if k not in p]
    if unknown:
        raise MlsysOptError(f"{who}: {', '.join(unknown)} is not a {scenario} parameter")
    q = {k: np.asarray(v)[0] for k, v in p.items()}
    layouts = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
    groups = np.array([int(round(math.prod(float(lay.get(k, q.get(k, 1.0))) for k in ("tp", "cp", "pp", "ep"))))
                       for lay in layouts])
    return scenario, q, {k: np.asarray(v).dtype for k, v in p.items()}, catalog.tables(dtype=dtype), layouts, groups


def _dtype(dtype):
    return jnp.float64 if dtype is None and jax.config.jax_enable_x64 else (dtype or jnp.float32)


def min_devices_over_layouts(target, config: dict, target_time_s: float, *, axes: dict | None = None,
                             max_factor: float = 8.0, grid: int = 128, runners_up: float = 1.5, eff=None,
                             dtype=None) -> LayoutsResult:
    """The fewest accelerators, over parallelism layouts, that train within `target_time_s` (module docstring).

    Args:
      target: "training" or a training Space; config: display values as for
        `synthesis.min_devices_for_time` (model, hardware, n_tokens, ...; the searched axes' values
        in it are ignored); target_time_s: T, s.
      axes: {parameter: candidate values} searched jointly (default LAYOUT_AXES); integer parameters
        of the training scenario (tp, pp, cp, zero_stage, ep, virtual_stages, ...).
      max_factor: fleets up to max_factor × the iron-law bound; grid: coarse points per layout;
      runners_up: layouts whose grid answer is within this factor of the best one are refined and tabled.
    """
    from ..scenarios.efficiency import DEFAULT_EFFICIENCY

    dtype = _dtype(dtype)
    _, q, p_dtypes, tables, layouts, groups = _setup(target, config, axes, dtype, "min_devices_over_layouts")
    axes = layouts[0]
    eff = DEFAULT_EFFICIENCY if eff is None else eff
    h, m, prec = int(q["hardware"]), int(q["model"]), int(q["precision"])
    flop = run_flop(tables, m, float(q["n_tokens"]))
    peak = float(tables.hw.peak_flop_per_s[h, prec])
    n0 = float(analysis.required_devices(flop, target_time_s, peak, float(q["efficiency"]), 1.0, 1.0))
    # the window starts at the physical bound (MFU = 1): the scenario's own MFU may beat the user's η, so the
    # iron law at η is no lower bound on the scenario's fleet
    n_lb = float(analysis.required_devices(flop, target_time_s, peak, 1.0, 1.0, 1.0))
    if not max_factor * n0 <= MAX_DEVICES:         # a deadline no fleet of this world meets (or inf / NaN)
        return LayoutsResult(DevicesResult(n0, 0, math.inf, math.inf, {}), {},
                             pd.DataFrame(columns=[*axes, "devices", "time_to_train_s", "tco_usd"]), len(layouts))
    k0 = np.maximum(1, np.floor(n_lb / groups).astype(np.int64))
    k1 = np.maximum(k0 + 1, np.ceil(max_factor * n0 / groups).astype(np.int64))

    # pass 1: a geometric grid per layout -> C_l, its first feasible fleet that meets T
    coarse = [np.unique(np.round(np.geomspace(a, b, grid)).astype(int)) for a, b in zip(k0, k1)]
    rows, idx = _rows(q, layouts, coarse, groups)
    ok, outs = _evaluate(rows, tables, eff, dtype, p_dtypes)
    ok &= outs["time_to_train_s"] <= target_time_s
    first, prev = {}, {}            # C_l, and the grid point before it (k units), per layout
    for i in np.unique(idx[ok]):
        at = int(np.argmax(ok & (idx == i)))
        first[int(i)] = int(rows["n_accelerators"][at])
        prev[int(i)] = int(rows["n_accelerators"][at - 1]) // groups[i] if at > 0 and idx[at - 1] == i else k0[i] - 1
    empty = pd.DataFrame(columns=[*axes, "devices", "time_to_train_s", "tco_usd"])
    if not first:
        return LayoutsResult(DevicesResult(n0, 0, math.inf, math.inf, {}), {}, empty, len(layouts))

    # pass 2: the multiples of g_l between the failing grid point below C_l and C_l -> the smallest fleet of each
    # layout whose C_l is within `runners_up` × the best C (the winner is among them: its fleet is <= min C);
    # every multiple when there are at most MAX_FINE of them (~2.5 % of N apart: all up to a few thousand
    # devices), else MAX_FINE evenly spaced (the answer to 0.005 % of N)
    c_best = min(first.values())
    fine_ids = sorted(i for i in first if first[i] <= runners_up * c_best)
    fine = [np.unique(np.round(np.linspace(prev[i] + 1, first[i] // groups[i],
                                           min(MAX_FINE, first[i] // groups[i] - prev[i]))).astype(np.int64))
            for i in fine_ids]
    rows, idx = _rows(q, [layouts[i] for i in fine_ids], fine, groups[fine_ids])
    ok, outs = _evaluate(rows, tables, eff, dtype, p_dtypes)
    meets = ok & (outs["time_to_train_s"] <= target_time_s)
    found = []
    for j, i in enumerate(fine_ids):
        sel = np.flatnonzero(idx == j)
        r = int(sel[meets[sel]][0])         # exists: C_l itself is in the range and meets T
        below = float(outs["time_to_train_s"][r - 1]) if r > sel[0] and ok[r - 1] else math.inf
        found.append((int(rows["n_accelerators"][r]), float(outs["time_to_train_s"][r]), i, r, below))
    found.sort(key=lambda f: (f[0], f[1]))
    n, t, i, r, below = found[0]
    best = DevicesResult(n0, n, t, below, {f: float(v[r]) for f, v in outs.items()})
    table = pd.DataFrame([{**layouts[li], "devices": nn, "time_to_train_s": tt,
                           "tco_usd": float(outs["tco_usd"][rr])} for nn, tt, li, rr, _ in found])
    return LayoutsResult(best, dict(layouts[i]), table, len(layouts))


class LayoutAtFleet(NamedTuple):
    """The best feasible layout of a configuration.

    layout: {axis: value} ({} when no layout is feasible); outputs: its scenario outputs;
    table: every feasible layout (axes..., the objective, tco_usd), best first; objective: the output minimised.
    """
    layout: dict
    outputs: dict
    table: pd.DataFrame
    objective: str


def best_layout_at(target, config: dict, *, axes: dict | None = None, eff=None, dtype=None) -> LayoutAtFleet:
    """The feasible layout with the lowest OBJECTIVE, everything else as in the config: training, the
    shortest time_to_train_s at the config's n_accelerators over LAYOUT_AXES (layouts whose tp·cp·pp·ep
    does not divide it are skipped); serving, the lowest cost_per_mtok_usd over SERVING_LAYOUT_AXES (the
    replicas as the config says: 0 = enough for the load).  One jitted call."""
    from ..scenarios.efficiency import DEFAULT_EFFICIENCY

    dtype = _dtype(dtype)
    scenario, q, p_dtypes, tables, layouts, groups = _setup(target, config, axes, dtype, "best_layout_at",
                                                            ("training", "serving"))
    objective = OBJECTIVE[scenario]
    fits = list(range(len(layouts)))
    counts = [np.array([1]) for _ in fits]
    if scenario == "training":
        n = int(round(float(q["n_accelerators"])))
        fits = [i for i, g in enumerate(groups) if n % g == 0]
        counts = [np.array([n // groups[i]]) for i in fits]
    cols = [*layouts[0], objective, "tco_usd"]
    if not fits:
        return LayoutAtFleet({}, {}, pd.DataFrame(columns=cols), objective)
    rows, idx = _rows(q, [layouts[i] for i in fits], counts, groups[fits])
    if scenario != "training":
        rows.pop("n_accelerators")
    ok, outs = _evaluate(rows, tables, DEFAULT_EFFICIENCY if eff is None else eff, dtype, p_dtypes, scenario)
    order = [int(r) for r in np.argsort(outs[objective], kind="stable") if ok[r]]
    table = pd.DataFrame([{**layouts[fits[r]], objective: float(outs[objective][r]),
                           "tco_usd": float(outs["tco_usd"][r])} for r in order], columns=cols)
    if not order:
        return LayoutAtFleet({}, {}, table, objective)
    r = order[0]
    return LayoutAtFleet(dict(layouts[fits[r]]), {f: float(v[r]) for f, v in outs.items()}, table, objective)


__all__ = ["LAYOUT_AXES", "OBJECTIVE", "SERVING_LAYOUT_AXES", "LayoutAtFleet", "LayoutsResult", "best_layout_at",
           "min_devices_over_layouts"]
