"""Validation tables: measured vs predicted, a constant-η baseline, summaries and targets.

`validate` gives one row per compared number (default efficiency model, an
optional calibrated one, and the constant-η roofline baseline), `summarize`
the median / worst |error| per category and target group, `check_targets` the
issue's accuracy targets, `format_validation_table` the plain-text report.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
import pandas as pd

from .._types import BYTES_PER_ELEMENT
from ..scenarios import schema
from ..scenarios.efficiency import DEFAULT_EFFICIENCY, Efficiency
from ..walls import node
from .rows import FIELDS, Measurement, Plan, _evaluate, _plan, build, predict


def to_scenario(row: Measurement, catalog=None, eff: Efficiency = DEFAULT_EFFICIENCY) -> pd.DataFrame:
    """One row as scenario evaluations: a frame of its targets with measured and predicted figures.

    `frame.attrs` holds the extended catalog ("catalog"), the evaluations'
    settings ("evaluations") and the scenario parameters ("params").
    """
    plan = build([row], catalog)
    pred = np.asarray(predict(eff, plan.batch), dtype=float)
    df = _frame(plan, pred)
    df.attrs.update(catalog=plan.catalog, evaluations=plan.evaluations, params=plan.batch.params)
    return df


# --------------------------------------------------------------------------- baseline
def _baseline_q(plan: Plan, eta: float) -> np.ndarray:
    """q of the constant-η roofline: T = 6·P·D/(N·peak·η) (no comm, bubble, recompute,
    goodput), energy N·TDP·PUE·T; serving max(2·P·tokens/(peak·η), bytes/BW) per step."""
    t = jax.tree_util.tree_map(np.asarray, plan.batch.tables)
    parts = []
    if "training" in plan.batch.params:
        p = jax.tree_util.tree_map(np.asarray, plan.batch.params["training"])
        h, m, r = p.hardware, p.model, p.region
        peak, n = t.hw.peak_flop_per_s[h, p.precision], p.n_accelerators
        tokens = p.global_batch * p.seq_len
        step = 6.0 * t.model.n_active_params[m] * tokens / (n * peak * eta)
        ttt = step * p.n_tokens / tokens
        energy = n * t.hw.tdp_w[h] * t.region.pue[r] * ttt
        model_flop = (6.0 * t.model.n_active_params[m] + 12.0 * t.model.n_layers[m] * t.model.n_heads[m]
                      * t.model.head_dim[m] * p.seq_len) * tokens
        parts.append(np.stack([step, ttt, energy, energy / 3.6e6 * t.region.carbon_gco2e_per_kwh[r] / 1e3,
                               model_flop / (step * n * peak)], -1).ravel())
    if "serving" in plan.batch.params:
        p = jax.tree_util.tree_map(np.asarray, plan.batch.params["serving"])
        h, m = p.hardware, p.model
        gpus = p.tp * p.pp
        peak, bw = t.hw.peak_flop_per_s[h, p.precision] * gpus, t.hw.mem_bw_bytes_per_s[h] * gpus
        bpe = np.asarray(BYTES_PER_ELEMENT)[p.precision]
        w = t.model.n_params[m] * bpe
        kv = np.asarray(node.kv_cache_bytes(t.model.n_layers[m], t.model.n_kv_heads[m], t.model.head_dim[m],
                                            p.prompt_tokens + 0.5 * p.output_tokens,   # mean context over decode
                                            p.batch, bpe, kv_latent_dim=t.model.kv_latent_dim[m]))
        flop_tok = 2.0 * t.model.n_active_params[m]
        ttft = np.maximum(flop_tok * p.prompt_tokens / (peak * eta), w / bw)
        itl = np.maximum(flop_tok * p.batch / (peak * eta), (w + kv) / bw)
        # no queue and a full batch in the baseline; throughput: the offered tokens up to the slots' capacity
        cap = np.maximum(p.replicas, 1.0) * p.batch * p.output_tokens / (ttft + p.output_tokens * itl)
        base = {"ttft_s": ttft, "itl_s": itl, "ttft_p50_s": ttft, "itl_p50_s": itl, "ttft_mean_s": ttft,
                "itl_mean_s": itl, "throughput_tok_per_s": np.minimum(p.request_rate * p.output_tokens, cap)}
        parts.append(np.stack([base[f] for f in FIELDS["serving"]], -1).ravel())
    parts.append(np.ones(1))
    return np.concatenate(parts)


def _baseline(plan: Plan, eta: float | None = None) -> tuple[np.ndarray, float]:
    """Baseline predictions and its η (fitted on the fit targets by a log-grid search when None)."""
    b = jax.tree_util.tree_map(np.asarray, plan.batch)

    def pred(e):
        q = _baseline_q(plan, e)
        return b.coef * np.sum(b.num_w * q[b.num_idx], -1) / np.maximum(np.sum(b.den_w * q[b.den_idx], -1), 1e-30)

    if eta is None:
        grid = np.exp(np.linspace(np.log(0.02), 0.0, 400))
        losses = [np.mean((np.log(pred(e)[b.fit]) - np.log(b.measured[b.fit])) ** 2) for e in grid]
        eta = float(grid[int(np.argmin(losses))])
    return pred(eta), eta


# --------------------------------------------------------------------------- validation tables
def _frame(plan: Plan, pred) -> pd.DataFrame:
    t = plan.targets
    df = pd.DataFrame({"id": [x.id for x in t], "category": [x.category for x in t],
                       "metric": [x.metric for x in t], "measured": [x.measured for x in t]})
    df["predicted"] = np.asarray(pred, float)
    df["error_pct"] = 100.0 * (df["predicted"] / df["measured"] - 1.0)
    df["fit"] = [x.fit for x in t]
    df["target"] = [x.target for x in t]
    df["notes"] = [x.notes for x in t]
    df["source_inconsistent"] = [x.source_inconsistent for x in t]
    return df


def _violations(plan: Plan, eff: Efficiency) -> dict[str, str]:
    """Row id -> names of structural constraints its evaluations violate (g > 0)."""
    bad: dict[str, set] = {}
    first = {}                          # a row's first evaluation is its configuration as published;
    for k, (rid, _, _) in enumerate(plan.evaluations):   # the others are conventions (batch prefill)
        first.setdefault(rid, k)
    for sc, g in _evaluate(eff, plan.batch)[1].items():
        ks = [k for k, (rid, s, _) in enumerate(plan.evaluations) if s == sc]
        names = schema.STRUCTURAL_CONSTRAINTS[sc]
        for k, row in zip(ks, np.asarray(g)):
            rid = plan.evaluations[k][0]
            if first[rid] == k:
                bad.setdefault(rid, set()).update(n for n, v in zip(names, row) if v > 1e-6)
    return {k: ", ".join(sorted(v)) for k, v in bad.items() if v}


def validate(eff: Efficiency | None = None, rows: Sequence[Measurement] | None = None, *,
             calibrated: Efficiency | None = None, catalog=None,
             baseline_eta: float | None = None) -> pd.DataFrame:
    """Measured vs predicted for every target (one row per compared number).

    Columns: id, category, metric, measured, predicted, error_pct (with `eff`,
    default DEFAULT_EFFICIENCY), [calibrated, calibrated_error_pct], baseline,
    baseline_error_pct (constant-η roofline, η fitted on the fit rows unless
    given), fit, target, violations, notes.  error_pct = 100·(pred/meas − 1).
    attrs: "summary" (`summarize`), "baseline_eta".
    """
    eff = DEFAULT_EFFICIENCY if eff is None else eff
    plan = _plan(rows, catalog)
    df = _frame(plan, predict(eff, plan.batch))
    if calibrated is not None:
        df.insert(6, "calibrated", np.asarray(predict(calibrated, plan.batch), float))
        df.insert(7, "calibrated_error_pct", 100.0 * (df["calibrated"] / df["measured"] - 1.0))
    base, eta = _baseline(plan, baseline_eta)
    at = df.columns.get_loc("fit")
    df.insert(at, "baseline", base)
    df.insert(at + 1, "baseline_error_pct", 100.0 * (df["baseline"] / df["measured"] - 1.0))
    viol = _violations(plan, calibrated if calibrated is not None else eff)
    df.insert(df.columns.get_loc("notes"), "violations", [viol.get(i, "") for i in df["id"]])
    df.attrs.update(summary=summarize(df), baseline_eta=eta)
    return df


_MODELS = (("default", "error_pct"), ("calibrated", "calibrated_error_pct"), ("baseline", "baseline_error_pct"))


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per category and per accuracy-target group: n, median and worst |error| % of each model."""
    groups = [(c, df["category"] == c) for c in dict.fromkeys(df["category"])]
    groups += [(f"target:{g}", df["target"] == g) for g in dict.fromkeys(df["target"]) if g]
    groups += [("fit rows", df["fit"]), ("all", df["category"] == df["category"])]
    out = []
    for name, mask in groups:
        rec = {"group": name, "n": int(mask.sum())}
        for label, col in _MODELS:
            if col in df:
                err = df.loc[mask, col].abs()
                rec[f"{label}_median"], rec[f"{label}_worst"] = float(err.median()), float(err.max())
        out.append(rec)
    return pd.DataFrame(out).set_index("group")


def _loo_frames(loo) -> dict:
    """{by: frame} from None, one leave_one_out frame (by row) or a mapping by -> frame."""
    if loo is None:
        return {}
    return {"row": loo} if isinstance(loo, pd.DataFrame) else dict(loo)


def check_targets(df: pd.DataFrame, loo: pd.DataFrame | dict | None = None) -> pd.DataFrame:
    """The issue's accuracy targets: requirement, value and whether it is met.

    Energy/carbon: the worst |error| over every row whose source gives power, duration and
    grid, and over those of them whose stated figures are self-consistent (cases.toml
    `source_inconsistent` unset).  `loo`: a `leave_one_out` frame (by row) or {"row": frame,
    "source": frame}; the held-out target is met when the median |error| after refitting
    without the row (source) is below the defaults' on the same rows.
    """
    meg = df[df["target"] == "megatron"]
    energy = df[df["target"] == "energy"]
    flagged = energy["source_inconsistent"] != "" if "source_inconsistent" in energy else energy["id"] == ""
    cal = "calibrated_error_pct" if "calibrated_error_pct" in df else "error_pct"
    tag = "calibrated" if cal == "calibrated_error_pct" else "calibrated (none given: default model)"
    bad = ", ".join(dict.fromkeys(energy.loc[flagged, "id"]))
    rows = [("Megatron median |err|, defaults", "<= 10 %", meg["error_pct"].abs().median(), 10.0),
            (f"Megatron median |err|, {tag}", "<= 5 %", meg[cal].abs().median(), 5.0),
            (f"Megatron worst |err|, {tag}", "<= 20 %", meg[cal].abs().max(), 20.0)] if len(meg) else []
    if len(energy):
        rows.append((f"energy/carbon worst |err|, all {len(energy)} figures with power, duration and grid given",
                     "<= 15 %", energy[cal].abs().max(), 15.0))
    if flagged.any():
        rows.append((f"energy/carbon worst |err|, the {int((~flagged).sum())} self-consistent ones "
                     f"(without {bad}: source_inconsistent)", "<= 15 %", energy.loc[~flagged, cal].abs().max(), 15.0))
    out = [{"target": a, "requirement": b, "value_pct": float(c), "met": bool(c <= d)} for a, b, c, d in rows]
    for by, frame in _loo_frames(loo).items():
        if len(frame):
            before, after = frame["before_abs_error_pct"].median(), frame["after_abs_error_pct"].median()
            out.append({"target": f"held-out median |err| improves (leave-one-{by}-out, {len(frame)} rows)",
                        "requirement": f"< {before:.1f} % (defaults)", "value_pct": float(after),
                        "met": bool(after < before)})
    return pd.DataFrame(out)


def format_validation_table(df: pd.DataFrame, loo: pd.DataFrame | dict | None = None) -> str:
    """Plain-text report of a `validate` frame: every target (measured, predictions, % errors),
    median / worst |error| per group, the accuracy targets (with `loo`: the held-out ones too;
    without it a line says how to get them) and the rows whose source contradicts itself."""
    cols = [("predicted", "default"), ("error_pct", "err%"), ("calibrated", "calibrated"),
            ("calibrated_error_pct", "cal.err%"), ("baseline", "baseline"), ("baseline_error_pct", "base.err%")]
    pad = {c: df[c].str.ljust(df[c].str.len().max()) for c in ("id", "metric")}   # left-aligned text
    table = pd.DataFrame({"id": pad["id"], "metric": pad["metric"], "fit": np.where(df["fit"], "*", ""),
                          "measured": df["measured"].map("{:.4g}".format)})
    for col, label in cols:
        if col in df:
            table[label] = df[col].map(("{:+.1f}" if col.endswith("pct") else "{:.4g}").format)
    summary = df.attrs.get("summary", summarize(df))
    groups = pd.DataFrame({"n": summary["n"]})
    for label, col in _MODELS:
        if col in df:
            groups[label] = [f"{a:.1f} / {b:.1f}" for a, b in zip(summary[f"{label}_median"], summary[f"{label}_worst"])]
    lines = [table.to_string(index=False), "",
             "|error| % per group (median / worst); baseline = constant-η roofline with "
             f"η = {df.attrs.get('baseline_eta', float('nan')):.3f} fitted on the fit rows (*)",
             groups.to_string(), "", "targets:"]
    lines += [f"  [{'met' if r.met else 'NOT met'}] {r.target}: {r.value_pct:.1f} % ({r.requirement})"
              for r in check_targets(df, loo).itertuples()]
    if not _loo_frames(loo):
        lines.append("  [not run] held-out median |err| improves (leave-one-out): "
                     "mlsys-opt validate --loo, or python benchmarks/validation.py")
    odd = df[df["source_inconsistent"] != ""].drop_duplicates("id") if "source_inconsistent" in df else df.iloc[:0]
    if len(odd):
        lines += ["", "rows whose source's own figures disagree (kept and reported; outside the "
                  "self-consistent target):"]
        lines += [f"  {r.id}: {r.source_inconsistent}" for r in odd.itertuples()]
    viol = df.drop_duplicates("id")
    viol = viol[viol["violations"] != ""] if "violations" in viol else viol.iloc[:0]
    if len(viol):
        lines += ["", "constraint violations (the configuration as published breaks a modelled limit):"]
        lines += [f"  {r.id}: {r.violations}" for r in viol.itertuples()]
    return "\n".join(lines)
