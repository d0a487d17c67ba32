"""Fewest accelerators that train within a deadline, searched over parallelism layouts (wall 22).

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
fleet sizes per layout from the iron-law bound N₀ = 6PD/(T·peak·MFU) to
`max_factor`·N₀ finds each layout's first feasible grid point C_l; then every
multiple of g_l from N₀ up to C_l is evaluated, so each reported
N_l is the exact smallest such fleet (within the window), not a grid value.
Layouts whose C_l exceeds `runners_up` × min_l C_l are not refined (every grid point below C_l failed).

Source of the default axes: the layouts Megatron-LM / NeMo and torchtitan recipes
use (TP within an 8-GPU node, pipeline depths of powers of two, ZeRO-1 as
Megatron's distributed optimizer, ZeRO-3 as FSDP).
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
from .synthesis import DevicesResult, _training_jit

LAYOUT_AXES: dict[str, tuple[int, ...]] = {"tp": (1, 2, 4, 8), "pp": (1, 2, 4, 8, 16), "zero_stage": (1, 3)}
CHUNK = 4096            # rows per jitted call (the shape min_devices_for_time compiles too)


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


def _evaluate(rows: dict, tables, eff, dtype, p_dtypes) -> tuple[np.ndarray, dict]:
    """ok [n] (feasible and finite) and the outputs {field: [n]} of the training scenario, CHUNK rows
    per jitted call (the last chunk padded with its final row)."""
    n = len(next(iter(rows.values())))
    oks, outs = [], []
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        batch = {k: jnp.asarray(np.concatenate([v[start:stop], np.full(CHUNK - (stop - start), v[stop - 1])]),
                                p_dtypes[k]) for k, v in rows.items()}
        o, cons = _training_jit()(batch, tables, eff)
        o = jax.tree_util.tree_map(lambda x: np.asarray(x)[: stop - start], o)
        g = np.stack([np.asarray(c)[: stop - start] for c in cons])
        oks.append(np.all(g <= 0, axis=0) & np.isfinite(np.asarray(o.time_to_train_s, np.float64)))
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


def min_devices_over_layouts(target, config: dict, target_time_s: float, *, axes: dict | None = None,
                             max_factor: float = 8.0, grid: int = 256, runners_up: float = 1.5, eff=None,
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
    from ..walls.algorithm import training_flop

    axes = dict(LAYOUT_AXES if axes is None else axes)
    if not axes or any(len(v) == 0 for v in axes.values()):
        raise MlsysOptError("min_devices_over_layouts: every searched axis needs at least one value")
    dtype = jnp.float64 if dtype is None and jax.config.jax_enable_x64 else (dtype or jnp.float32)
    scenario, _, p, catalog = resolve_config(target, config, dtype)
    if scenario != "training":
        raise MlsysOptError(f"min_devices_over_layouts needs the training scenario; got {scenario}")
    unknown = [k for k in axes if k not in p]
    if unknown:
        raise MlsysOptError(f"min_devices_over_layouts: {', '.join(unknown)} is not a training parameter")
    eff = DEFAULT_EFFICIENCY if eff is None else eff
    tables = catalog.tables(dtype=dtype)
    q = {k: np.asarray(v)[0] for k, v in p.items()}
    p_dtypes = {k: np.asarray(v).dtype for k, v in p.items()}
    h, m, prec = int(q["hardware"]), int(q["model"]), int(q["precision"])
    flop = float(training_flop(float(tables.model.n_active_params[m]), float(q["n_tokens"])))
    n0 = float(analysis.required_devices(flop, target_time_s, float(tables.hw.peak_flop_per_s[h, prec]),
                                         float(q["efficiency"]), 1.0, 1.0))
    layouts = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
    groups = np.array([int(round(float(lay.get("tp", q["tp"])) * float(lay.get("cp", q["cp"]))
                                 * float(lay.get("pp", q["pp"])) * float(lay.get("ep", q["ep"]))))
                       for lay in layouts])
    k0 = np.maximum(1, np.ceil(n0 / groups).astype(int) - 1)
    k1 = np.maximum(k0 + 1, np.ceil(max_factor * n0 / groups).astype(int))

    # pass 1: a geometric grid per layout -> C_l, its first feasible fleet that meets T
    coarse = [np.unique(np.round(np.geomspace(a, b, grid)).astype(int)) for a, b in zip(k0, k1)]
    rows, idx = _rows(q, layouts, coarse, groups)
    ok, outs = _evaluate(rows, tables, eff, dtype, p_dtypes)
    ok &= outs["time_to_train_s"] <= target_time_s
    first = {}
    for i in np.unique(idx[ok]):
        first[int(i)] = int(rows["n_accelerators"][np.argmax(ok & (idx == i))])
    empty = pd.DataFrame(columns=[*axes, "devices", "time_to_train_s", "tco_usd"])
    if not first:
        return LayoutsResult(DevicesResult(n0, 0, math.inf, math.inf, {}), {}, empty, len(layouts))

    # pass 2: every multiple of g_l from k0 up to C_l -> the exact smallest fleet of each layout whose C_l is
    # within `runners_up` × the best C (the winner is among them: its fleet is <= min C)
    c_best = min(first.values())
    fine_ids = sorted(i for i in first if first[i] <= runners_up * c_best)
    fine = [np.arange(k0[i], first[i] // groups[i] + 1) for i in fine_ids]
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


__all__ = ["LAYOUT_AXES", "LayoutsResult", "min_devices_over_layouts"]
