"""Leave-one-source-out over the whole measurement set, per-row feasibility and bottleneck.

`dataset` gathers the rows (measurements.json, training_runs.json, serving_runs.json, or a
user's file) and says which cannot be evaluated and why.  `leave_one_source_out` holds out
every row of a source (or of an organisation, by="org"), fits the efficiency model on the rest
with the usual rule (only the candidates that rows of >= MIN_SOURCES *organisations* measure:
sources of one organisation count once), and predicts the held-out rows; every fold plus the
fit on all rows run as one vmapped optimisation and one vmapped prediction.  Rows of a source
with no fit rows are never in any fit, so their held-out prediction is the all-rows fit.
`diagnostics` gives per row the memory per accelerator against its HBM (feasible or not), the
predicted bottleneck and the structural constraints it breaks.  `summarize_loso` and
`format_loso` report median / worst |error| per scenario (training, serving) for the default
and the held-out model, the default-model figure, and the rows that miss most.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._types import BOTTLENECKS
from ..errors import MlsysOptError
from ..scenarios import schema
from ..scenarios.efficiency import DEFAULT_EFFICIENCY, Efficiency
from .fit import (
    MIN_SOURCES,
    _fit,
    _free,
    _from_u,
    _leading,
    _program_names,
    _source,
    _to_u,
    organisation,
)
from .rows import Measurement, Plan, _evaluate, build, load_measurements, predict
from .runs import evaluable, load_runs, scenario_of

DATASETS = ("legacy", "training", "serving", "runs", "all")


class Dataset(NamedTuple):
    rows: list            # Measurement rows that plan
    skipped: list         # [(id, why it cannot be evaluated)]


def dataset(which: str = "all", catalog=None) -> Dataset:
    """Rows of: "legacy" (measurements.json), "training"/"serving" (the runs files), "runs" (both),
    "all" (legacy + both); the rows today's scenarios cannot evaluate are listed with the reason."""
    if which not in DATASETS:
        raise MlsysOptError(f"dataset {which!r}: allowed {', '.join(DATASETS)}")
    if catalog is None:
        rows, skipped = _packaged(which)
        return Dataset(list(rows), list(skipped))
    return _dataset(which, catalog)


@functools.lru_cache(maxsize=len(DATASETS))
def _packaged(which: str) -> tuple:
    ds = _dataset(which, None)
    return tuple(ds.rows), tuple(ds.skipped)


def _dataset(which: str, catalog) -> Dataset:
    rows: list[Measurement] = []
    if which in ("legacy", "all"):
        rows += load_measurements()
    if which != "legacy":
        rows += load_runs({"runs": "all", "all": "all"}.get(which, which))
    ok, skipped = evaluable(rows, catalog)
    return Dataset(ok, skipped)


def _scenario(row: Measurement) -> str:
    if row.setup:
        return scenario_of(row)
    return "serving" if "serving" in row.category or "inference" in row.category else "training"


# --------------------------------------------------------------------------- diagnostics
def diagnostics(eff: Efficiency, plan: Plan) -> pd.DataFrame:
    """Per row (its first evaluation): memory_gib per accelerator, capacity_gib, feasible
    (memory <= HBM), bottleneck (compute / memory / overhead) and violated structural constraints."""
    _, cons, diag = jax.tree_util.tree_map(np.asarray, _evaluate(eff, plan.batch))
    seen, out = set(), []
    index = {sc: 0 for sc in cons}
    for rid, sc, _ in plan.evaluations:
        i = index[sc]
        index[sc] += 1
        if rid in seen:
            continue
        seen.add(rid)
        mem, code, g = diag[sc][0][i], diag[sc][1][i], cons[sc][i]
        g_mem = g[schema.STRUCTURAL_CONSTRAINTS[sc].index("memory")]
        cap = mem / (g_mem + 1.0) if g_mem > -1.0 else float("nan")
        names = schema.STRUCTURAL_CONSTRAINTS[sc]
        out.append({"id": rid, "scenario": sc, "memory_gib": float(mem) / 2**30, "capacity_gib": float(cap) / 2**30,
                    "feasible": bool(g_mem <= 1e-6), "bottleneck": BOTTLENECKS[int(code)] if 0 <= int(code) < len(BOTTLENECKS) else str(code),
                    "violations": ", ".join(n for n, v in zip(names, g) if v > 1e-6)})
    return pd.DataFrame(out).set_index("id")


def step_breakdowns(eff: Efficiency, plan: Plan) -> pd.Series:
    """Per training row (its first evaluation): where the model's step goes, as one line
    (scenarios.training_breakdown.format_breakdown), indexed by row id; one jitted call."""
    from ..scenarios.training_breakdown import breakdown, format_breakdown
    if "training" not in plan.batch.params:
        return pd.Series(dtype=object, name="step")
    bd = jax.tree_util.tree_map(np.asarray, breakdown(plan.batch.params["training"], plan.batch.tables, eff))
    ids = [rid for rid, sc, _ in plan.evaluations if sc == "training"]
    first = {}
    for i, rid in enumerate(ids):
        first.setdefault(rid, i)
    return pd.Series({rid: format_breakdown(bd, i) for rid, i in first.items()}, name="step")


def memory_check(rows: Sequence[Measurement], diag: pd.DataFrame) -> pd.DataFrame:
    """The predicted memory per accelerator (`diagnostics`) against the rows that publish their peak
    (measured ``memory_gib``): id, source, measured_gib, predicted_gib, error_pct.  The published figure
    is the framework's own counter (torchtitan logs torch.cuda max_memory_reserved, which includes the
    caching allocator's free blocks; KempnerForge max_memory_allocated); the model counts allocations."""
    out = [{"id": r.id, "source": r.source_key or r.source, "measured_gib": float(r.measured["memory_gib"]),
            "predicted_gib": float(diag.loc[r.id, "memory_gib"])}
           for r in rows if "memory_gib" in r.measured and r.id in diag.index]
    df = pd.DataFrame(out, columns=["id", "source", "measured_gib", "predicted_gib"])
    return df.assign(error_pct=100.0 * (df.predicted_gib / df.measured_gib - 1.0))


def format_memory_check(mem: pd.DataFrame, what: str) -> str:
    """`memory_check`'s table under one line: `what`, then median and worst |error| %."""
    err = mem.error_pct.abs()
    return (f"{what}: median |error| {err.median():.1f} %, worst {err.max():.1f} %\n"
            + mem.to_string(index=False, float_format=lambda x: f"{x:.1f}"))


# --------------------------------------------------------------------------- leave one source out

def leave_one_source_out(rows: Sequence[Measurement] | None = None, eff0: Efficiency = DEFAULT_EFFICIENCY,
                         steps: int = 300, learning_rate: float = 0.05, *, by: str = "source",
                         fit: Sequence[str] | None = None, prior: float = 1e-2,
                         min_sources: int = MIN_SOURCES, catalog=None, plan: Plan | None = None) -> pd.DataFrame:
    """Hold out every row of a source (by="source") or organisation (by="org"), fit on the rest
    (fit=None: the candidates FIT_PARAMS that >= `min_sources` organisations measure among the
    fold's own fit rows), predict the held-out rows.  One row per target: fold, source, org,
    scenario, id, metric, fit, measured, default (eff0) and held-out predictions with their
    errors (100·(pred/meas − 1)), and the parameters that fold fitted.  attrs["all_rows_fit"]
    holds the efficiency fitted on every fit row (the 'calibrated' model)."""
    if by not in ("source", "org"):
        raise MlsysOptError(f"leave_one_source_out(by={by!r}): allowed 'source' or 'org'")
    rows = dataset("all", catalog).rows if rows is None else list(rows)
    plan = build(rows, catalog) if plan is None else plan
    b = plan.batch
    by_id = {r.id: r for r in rows}
    src = [_source(by_id[t.id]) for t in plan.targets]
    org = [organisation(s) for s in src]
    key = src if by == "source" else org
    names = _program_names(fit)
    fit_mask = np.asarray(b.fit)
    folds = list(dict.fromkeys(k for k, f in zip(key, fit_mask) if f))
    held = np.array([[k == f for k in key] for f in folds] + [[False] * len(key)])   # last: all rows
    w = fit_mask[None, :] & ~held
    lead = _leading(eff0, plan, names) if fit is None else None
    free = np.stack([_free(names, lead, src, wi, fit, min_sources) for wi in w])
    dtype = b.coef.dtype
    eff0j = Efficiency(*(jnp.asarray(x, dtype) for x in eff0))
    u0 = _to_u(eff0j, names).astype(dtype)
    fit_all = jax.vmap(lambda wi, fi: _fit(u0, eff0j, b, wi, fi, learning_rate, prior, names=names,
                                           steps=int(steps))[0])
    us = fit_all(jnp.asarray(w, dtype), jnp.asarray(free, dtype))
    # the folds' predictions reuse the compiled `predict` program (one call each, milliseconds)
    after = np.stack([np.asarray(predict(_from_u(u, eff0j, names), b), float) for u in us])
    before = np.asarray(predict(eff0, b), float)
    meas = np.asarray(b.measured, float)
    fold_of = {f: i for i, f in enumerate(folds)}
    out = []
    for j, t in enumerate(plan.targets):
        i = fold_of.get(key[j], len(folds))
        chosen = ", ".join(n for n, x in zip(names, free[i]) if x) or "(none)"
        out.append({"fold": key[j] if i < len(folds) else f"{key[j]} (never fitted)", "source": src[j],
                    "org": org[j], "scenario": _scenario(by_id[t.id]), "id": t.id, "metric": t.metric,
                    "variant": _variant(t.metric),
                    "fit": bool(fit_mask[j]), "measured": meas[j], "default": before[j],
                    "default_error_pct": 100.0 * (before[j] / meas[j] - 1.0), "heldout": after[i, j],
                    "heldout_error_pct": 100.0 * (after[i, j] / meas[j] - 1.0), "fitted": chosen})
    df = pd.DataFrame(out)
    u_all = us[len(folds)]
    fitted = _from_u(u_all, eff0j, names)
    chosen_all = [n for n, x in zip(names, free[len(folds)]) if x]
    df.attrs["all_rows_fit"] = Efficiency(*(float(x) for x in eff0))._replace(
        **{n: float(getattr(fitted, n)) for n in chosen_all})
    df.attrs["all_rows_fitted"] = tuple(chosen_all)
    df.attrs["by"] = by
    return df


def _variant(metric: str) -> str:
    """The variant label of a target ("catalog TDP" of "energy_mwh [catalog TDP]"), "" for none."""
    m = metric.split(" [", 1)
    return m[1].rstrip("]") if len(m) == 2 else ""


VARIANTS_GROUP = "input variants"


def _is_variant(df: pd.DataFrame):
    if "variant" in df:
        return df["variant"].astype(bool)
    return df["metric"].map(lambda m: bool(_variant(m)))


def summarize_loso(df: pd.DataFrame) -> pd.DataFrame:
    """Per scenario (and all): rows, sources, organisations, median / worst |error| % of the
    default model and of the held-out predictions.

    Variant targets (cases.toml `variants`: the same published figure evaluated again with an
    input the source did not use, e.g. Patterson et al.'s energy at the catalog's board TDP
    instead of the measured average power) are summarised in their own group, VARIANTS_GROUP,
    not in their scenario's nor in "all": their error is the spread between the substituted
    input and the source's own (450 W TPU v3 TDP against 245-310 W measured: +43 to +84 %),
    which the row's main target, evaluated under the source's convention, already separates
    from the model's error.  They are listed, never dropped."""
    var = _is_variant(df)
    groups = [(sc, (df["scenario"] == sc) & ~var) for sc in ("training", "serving")
              if ((df["scenario"] == sc) & ~var).any()]
    groups.append(("all", ~var))
    if var.any():
        groups.append((VARIANTS_GROUP, var))
    out = []
    for name, m in groups:
        d, h = df.loc[m, "default_error_pct"].abs(), df.loc[m, "heldout_error_pct"].abs()
        out.append({"scenario": name, "rows": int(m.sum()), "sources": df.loc[m, "source"].nunique(),
                    "organisations": df.loc[m, "org"].nunique(), "default_median": d.median(),
                    "default_worst": d.max(), "heldout_median": h.median(), "heldout_worst": h.max()})
    return pd.DataFrame(out).set_index("scenario")


def format_loso(df: pd.DataFrame, diag: pd.DataFrame | None = None, *, worst: int = 12,
                skipped: Sequence = (), every_row: bool = True) -> str:
    """Plain-text report: per-row table (held-out and default errors, feasibility, bottleneck),
    the per-scenario summary, the rows that miss most and the rows not evaluated."""
    lines = []
    d = df.copy()
    if diag is not None:
        d = d.join(diag[[c for c in ("feasible", "bottleneck", "memory_gib", "capacity_gib", "step")
                         if c in diag.columns]], on="id")
    if every_row:
        cols = {"id": "id", "source": "source", "metric": "metric", "measured": "measured",
                "default_error_pct": "default%", "heldout_error_pct": "held-out%"}
        t = pd.DataFrame({v: d[k] for k, v in cols.items()})
        t["measured"] = t["measured"].map("{:.4g}".format)
        for c in ("default%", "held-out%"):
            t[c] = t[c].map("{:+.1f}".format)
        t["fit"] = np.where(d["fit"], "*", "")
        if diag is not None:
            t["mem/HBM GiB"] = [f"{a:.0f}/{c:.0f}" for a, c in zip(d["memory_gib"], d["capacity_gib"])]
            t["feasible"] = np.where(d["feasible"], "yes", "NO")
            t["bottleneck"] = d["bottleneck"]
        lines += [t.to_string(index=False), ""]
    s = summarize_loso(df)
    lines.append(f"leave-one-{df.attrs.get('by', 'source')}-out |error| % (held out: fitted without the "
                 "row's source; default: the unfitted model); sources of one organisation count once "
                 "in 'organisations' and in the >= 2 rule:")
    lines.append(s.to_string(float_format=lambda x: f"{x:.1f}"))
    if diag is not None:
        bad = diag[~diag["feasible"]]
        lines += ["", f"feasible (memory per accelerator <= HBM): {int(diag['feasible'].sum())} of {len(diag)} rows"
                  + (": infeasible " + ", ".join(bad.index) if len(bad) else "")]
        lines.append("predicted bottleneck: " + ", ".join(f"{k} {v}" for k, v in diag["bottleneck"].value_counts().items()))
    var = _is_variant(d)
    if var.any():
        lines += ["", (f"{VARIANTS_GROUP} (summarised apart: a published figure evaluated again with an input "
                       "the source did not use; the error is that input's, the row's main target is above):")]
        lines += [f"  {r.id} {r.metric}: {r.heldout_error_pct:+.1f} %" for r in d[var].itertuples()]
    d = d[~var]
    w = d.reindex(d["heldout_error_pct"].abs().sort_values(ascending=False).index).head(worst)
    lines += ["", "rows that miss most (held out):"]
    for r in w.itertuples():
        extra = f", {r.bottleneck}-bound" if diag is not None else ""
        lines.append(f"  {r.id} [{r.source}] {r.metric}: {r.heldout_error_pct:+.1f} % (default "
                     f"{r.default_error_pct:+.1f} %{extra})")
        step = getattr(r, "step", None)
        if isinstance(step, str):           # diag joined with step_breakdowns: the model's step of that row
            lines.append(f"      model step: {step}")
    if len(skipped):
        lines += ["", f"not evaluated ({len(skipped)} rows):"]
        lines += [f"  {i}: {why}" for i, why in skipped]
    return "\n".join(lines)
