"""Calibration: fit the efficiency parameters to the measurements with optax.

`calibrate` minimises L = mean_t (log pred_t − log meas_t)² + prior · mean (u − u0)²
over a bounded reparametrisation u (sigmoid for fractions, exp for positive
values), all rows in one jitted lax.scan of Adam steps; by default it fits only
the parameters that rows of at least two sources measure (`identification`);
`sensitivity` gives the elasticities and Gauss-Newton standard errors;
`leave_one_out` refits with each row (or source) held out in one vmapped
optimisation, choosing the fitted parameters again on each fold's training rows;
`synthetic_rows` makes rows from the model itself (recovery tests).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from .._compile import jit_options
from ..errors import MlsysOptError, did_you_mean
from ..scenarios.efficiency import DEFAULT_EFFICIENCY, Efficiency
from ..search.optim import adam_scan, from_unconstrained, to_unconstrained
from ..walls._masked import floor_pos
from .rows import (
    CASES_PATH,
    METRICS,
    Batch,
    Measurement,
    Plan,
    _combine,
    _plan,
    _quantities,
    build,
    load_measurements,
    predict,
)

# The candidates `calibrate` may fit, each the leading parameter of one kind of row:
# compute_eff_scale (training throughput level), prefill_eff_scale and matmul_rows_half
# (prefill of 32k vs 128 rows), mem_bw_eff (decode-bound serving throughput).  By default
# only those that rows of at least MIN_SOURCES sources lead are fitted (`identification`).
FIT_PARAMS = ("compute_eff_scale", "prefill_eff_scale", "mem_bw_eff", "matmul_rows_half")
MIN_SOURCES = 2
_FRACTIONS = ("mem_bw_eff", "scaleup_comm_eff", "scaleout_comm_eff", "tp_comm_overlap",
              "ep_comm_overlap", "pipeline_overhead_frac", "idle_power_frac")


def _kind(name: str) -> str:
    """'frac' (in [0, 1], sigmoid) or 'pos' (> 0, exp) for an efficiency parameter."""
    return "frac" if name in _FRACTIONS or name.endswith(("_frac", "_overlap")) else "pos"


# --------------------------------------------------------------------------- calibration
def _bounds(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per parameter: [0, 1] for fractions, [0, +inf) for positive values."""
    return np.zeros(len(names)), np.array([1.0 if _kind(n) == "frac" else np.inf for n in names])


def _to_u(eff: Efficiency, names: tuple[str, ...]):
    """Unconstrained coordinates (``search.optim.to_unconstrained``, the shared bounded
    reparametrisation): logit for fractions (clipped to [1e-4, 1 - 1e-4]), log for positives."""
    x = jnp.asarray([float(getattr(eff, n)) for n in names], jnp.result_type(float))
    return to_unconstrained(x, *_bounds(names), eps=1e-4)


def _from_u(u, eff0: Efficiency, names: tuple[str, ...]) -> Efficiency:
    """The Efficiency at unconstrained coordinates u (``search.optim.from_unconstrained``)."""
    x = from_unconstrained(u, *_bounds(names))
    return eff0._replace(**{n: x[i] for i, n in enumerate(names)})


def _loss(u, u0, eff0, batch, weights, free, names, prior):
    """mean_w (log pred − log meas)² + prior · mean_free (u − u0)²; u_k = u0_k where free_k = 0."""
    u = u0 + free * (u - u0)
    pred = _combine(_quantities(_from_u(u, eff0, names), batch), batch)
    r = jnp.log(floor_pos(pred, 1e-30)) - jnp.log(batch.measured)
    data = jnp.sum(weights * r * r) / floor_pos(jnp.sum(weights), 1e-30)
    return data + prior * jnp.sum(free * (u - u0) ** 2) / floor_pos(jnp.sum(free), 1.0)


def _fit(u0, eff0, batch, weights, free, learning_rate, prior, *, names, steps):
    """Adam on _loss for `steps` steps (lax.scan): (u at the lowest loss, loss history [steps]).

    free [k] is 1 for the parameters fitted, 0 for those held at u0 (their gradient is 0,
    so Adam never moves them): one compiled program serves every subset of `names`, and
    `_program_names` makes `names` FIT_PARAMS (+ any other parameter asked for) whichever subset a
    caller fits.  Compiled with ``_compile.jit_options()`` (the older CPU fusion emitters: about
    two thirds of the compile time); call it at top level or under ``jax.vmap``, not inside a jit.
    """
    return _fit_jit()(u0, eff0, batch, weights, free, learning_rate, prior, names=names, steps=steps)


@functools.cache
def _fit_jit():
    return jax.jit(_fit_program, static_argnames=("names", "steps"), **jit_options())


def _fit_program(u0, eff0, batch, weights, free, learning_rate, prior, *, names, steps):
    loss = functools.partial(_loss, u0=u0, eff0=eff0, batch=batch, weights=weights, free=free, names=names,
                             prior=prior)
    _, best_u, hist = adam_scan(loss, u0, optax.adam(learning_rate), steps)
    return u0 + free * (best_u - u0), hist


def _log_loss(eff: Efficiency, b: Batch) -> float:
    """mean over fit targets of (log pred − log meas)², on the host from `predict`."""
    r = np.log(np.asarray(predict(eff, b), float)) - np.log(np.asarray(b.measured, float))
    return float(np.mean(r[np.asarray(b.fit)] ** 2))


class Calibration(NamedTuple):
    """Result of `calibrate`: fitted efficiency, loss history [steps], sensitivities, provenance."""
    eff: Efficiency
    loss_history: np.ndarray
    sensitivity: pd.DataFrame
    fitted_on: tuple
    fitted: tuple     # names of the fitted parameters
    loss_before: float
    loss_after: float


def _check_names(names) -> tuple[str, ...]:
    for n in (bad for bad in names if bad not in Efficiency._fields):
        raise MlsysOptError(f"calibrate(fit=...): {n!r} is not an efficiency parameter"
                            f"{did_you_mean(n, Efficiency._fields)} (allowed: {', '.join(Efficiency._fields)})")
    return tuple(names)


def _source(row: Measurement) -> str:
    """A row's source: its source_key (rows with a setup), else its citation up to the first
    comma or parenthesis ("Narayanan et al.")."""
    return row.source_key or row.source.split(",")[0].split("(")[0].strip()


def organisation(source: str) -> str:
    """The organisation of a source (runs.ORGANISATIONS; the source itself when unknown): sources
    of one organisation count once towards MIN_SOURCES."""
    from .runs import ORGANISATIONS
    return ORGANISATIONS.get(source, source)


def _rows_and_plan(rows, catalog) -> tuple[list, Plan, list]:
    """(rows, plan, source of each target); the packaged rows use the cached plan."""
    rows = None if rows is None else list(rows)
    plan = _plan(rows, catalog)
    rows = load_measurements() if rows is None else rows
    src = {r.id: _source(r) for r in rows}
    return rows, plan, [src[t.id] for t in plan.targets]


def _leading(eff0: Efficiency, plan: Plan, candidates: tuple[str, ...]) -> np.ndarray:
    """Per target, the index into `candidates` of its leading parameter, argmax_k |∂log pred/∂log θ_k|
    at eff0 (−1 where none of them moves it).  Needs no measured value, only the model's shape."""
    b = plan.batch
    theta = jnp.asarray([float(x) for x in eff0], b.coef.dtype)
    cols = [Efficiency._fields.index(n) for n in candidates]
    el = np.abs(np.asarray(_log_jacobian(theta, b)) * np.asarray(theta)[None, :])[:, cols]
    return np.where(el.max(axis=1) > 0.0, np.argmax(el, axis=1), -1)


def _replicated(lead: np.ndarray, sources: Sequence[str], weights, k: int, min_sources: int) -> np.ndarray:
    """free [k]: 1.0 where the targets of weight > 0 that candidate j leads come from at least
    `min_sources` distinct organisations (sources of one organisation count once), else 0.0."""
    used = [{organisation(s) for l, s, w in zip(lead, sources, weights) if w > 0 and l == j} for j in range(k)]
    return np.array([len(u) >= min_sources for u in used], float)


def identification(rows: Sequence[Measurement] | None = None, eff0: Efficiency = DEFAULT_EFFICIENCY,
                   candidates: Sequence[str] = FIT_PARAMS, *, min_sources: int = MIN_SOURCES,
                   catalog=None) -> pd.DataFrame:
    """Which candidate parameters the fit rows measure, and by how many independent sources.

    A fit row *measures* the candidate θ_k with the largest elasticity |∂log pred/∂log θ_k| at
    eff0 (its leading parameter: compute_eff_scale for a training-throughput row, mem_bw_eff for
    a decode-bound serving row, prefill_eff_scale for a short-prompt TTFT or a large-batch
    throughput whose prefill and decode GEMMs are compute-bound).  `calibrate` fits θ_k
    only when rows of at least `min_sources` sources measure it: a parameter only one publication
    measures cannot be checked by any row it was not fitted on.  Uses the model's Jacobian, never
    the measured values.  Returns per candidate: rows (ids it leads), sources, n_sources, fitted.
    """
    names = _check_names(candidates)
    rows, plan, src = _rows_and_plan(rows, catalog)
    lead = _leading(eff0, plan, names)
    fit = np.asarray(plan.batch.fit)
    free = _replicated(lead, src, fit, len(names), min_sources)
    out = []
    for j, n in enumerate(names):
        hit = [i for i in np.flatnonzero(fit) if lead[i] == j]
        srcs = sorted({src[i] for i in hit})
        out.append({"parameter": n, "rows": ", ".join(plan.targets[i].id for i in hit),
                    "sources": "; ".join(srcs), "n_sources": len(srcs),
                    "n_organisations": len({organisation(x) for x in srcs}), "fitted": bool(free[j])})
    return pd.DataFrame(out).set_index("parameter")


def _program_names(fit: Sequence[str] | None) -> tuple[str, ...]:
    """The parameters of the compiled fit program: FIT_PARAMS, then any other parameter `fit` names
    (checked, in Efficiency's order).  `_fit` takes them as a static argument, so every subset of
    FIT_PARAMS (the default rule's choice, `fit=...` of a user or a test) runs one program; the
    `free` mask holds the parameters not fitted at their given values."""
    if fit is None:
        return FIT_PARAMS
    given = set(_check_names(fit))
    return FIT_PARAMS + tuple(n for n in Efficiency._fields if n in given and n not in FIT_PARAMS)


def _free(names, lead, src, weights, fit, min_sources) -> np.ndarray:
    """The free mask of one fit: the replicated candidates (fit None) or the parameters `fit` names."""
    if fit is not None:
        chosen = set(fit)
        return np.array([n in chosen for n in names], float)
    return _replicated(lead, src, weights, len(names), min_sources)


def calibrate(rows: Sequence[Measurement] | None = None, eff0: Efficiency = DEFAULT_EFFICIENCY,
              steps: int = 400, learning_rate: float = 0.05, *, fit: Sequence[str] | None = None,
              prior: float = 1e-2, min_sources: int = MIN_SOURCES, catalog=None) -> Calibration:
    """Fit efficiency parameters to the rows' fit targets (cases.toml `fit = true`).

    Loss L(θ) = mean_t (log pred_t(θ) − log meas_t)² + prior · mean_k (u_k − u0_k)² over the
    unconstrained u (θ = sigmoid(u) for fractions, exp(u) for positive parameters), the mean
    over the k fitted ones.  The prior is a Gaussian in u: with ~5 % data error and n = 15
    targets, prior = 1e-2 is σ_u ≈ sqrt(0.05²·k/(n·prior)) around eff0, ≈ 0.13 (±14 %) for
    k = 1 and ≈ 0.26 (±30 %) for k = 4, which keeps what the rows barely constrain near the
    documented defaults.  Adam (`learning_rate`, `steps`) in
    one jitted lax.scan over all rows at once; returns the lowest-loss iterate.  Parameters not
    fitted keep eff0's values exactly.

    Which parameters: `fit` names them; None (default) fits those of the candidates FIT_PARAMS
    that rows of at least `min_sources` (2) independent sources measure (`identification`).  On
    the packaged rows that is compute_eff_scale alone (Narayanan et al., PaLM, MT-NLG): the
    serving parameters are measured by one vendor page only (TensorRT-LLM: prefill_eff_scale
    by the 128-token TTFT and the batch-256 throughput, whose prefill and compute-bound decode
    GEMMs it scales; mem_bw_eff by the decode-bound batch-32 throughput; matmul_rows_half by
    none), so no held-out source can check them.  Fitted anyway (fit=FIT_PARAMS) the serving
    rows reach <= 0.7 % in sample; leave-one-row-out then gives median 1.9 % against the rule's
    2.2 % (the serving rows check each other: batch-256 5.4 -> 1.6 %, TTFT 7.7 -> 6.7 %) and
    worst 19.5 % against 19.3 %, leave-one-source-out 4.1 % against 4.0 % (see
    `leave_one_out`, benchmarks/validation.py).  The rule was chosen with the full-set
    leave-one-out numbers of the earlier serving model in view (one roofline max over weights
    + KV, prefill_eff_scale 1.0: all four fitted gave median 3.0 -> 3.2 %, worst 39 -> 54 %);
    it uses the model's Jacobian only, never the measured values, and is applied afresh to
    each fold's training rows in `leave_one_out`.  A nested leave-one-out choosing the parameter
    subset and prior on the training rows only was tried (earlier serving model) and did worse
    (held-out median 4.0 %):
    with 14 rows the inner choice is noise.  Other parameters (collective efficiencies, dispatch
    tax, elementwise_traffic_scale) are not candidates: fitted, they come out at rel_std_err
    0.9–27 and are partly collinear with compute_eff_scale.
    """
    rows, plan, src = _rows_and_plan(rows, catalog)
    b = plan.batch
    if not bool(jnp.any(b.fit)):
        raise MlsysOptError("calibrate: none of the given rows is marked fit = true in "
                            f"{CASES_PATH.name}; nothing to fit")
    names = _program_names(fit)
    fit_mask = np.asarray(b.fit)
    lead = _leading(eff0, plan, names) if fit is None else None
    free = _free(names, lead, src, fit_mask, fit, min_sources)
    w = b.fit.astype(b.coef.dtype)
    given = Efficiency(*(float(x) for x in eff0))
    eff0 = Efficiency(*(jnp.asarray(x, b.coef.dtype) for x in eff0))
    u0 = _to_u(eff0, names).astype(b.coef.dtype)
    u, hist = _fit(u0, eff0, b, w, jnp.asarray(free, b.coef.dtype), learning_rate, prior,
                   names=names, steps=int(steps))
    fitted = _from_u(u, eff0, names)
    chosen = tuple(n for n, f in zip(names, free) if f)
    eff = given._replace(**{n: float(getattr(fitted, n)) for n in chosen})   # the rest exactly as given
    before, after = (_log_loss(e, b) for e in (eff0, eff))
    ids = tuple(dict.fromkeys(t.id for t in plan.targets if t.fit))
    return Calibration(eff, np.asarray(hist), sensitivity(eff, plan, chosen), ids, chosen, before, after)


def _log_jacobian(theta, b: Batch, rel_step: float = 1e-3):
    """∂ log pred / ∂θ [n_targets, n_params] by central differences (h = rel_step·max(|θ|, 1e-3)),
    each a call of the compiled `predict` program: no second program to compile for the large
    published-run sets (a jacobian program of the scenarios costs about as much again to compile
    as the scenarios themselves).  A parameter that no target depends on gets exactly 0."""
    theta = np.asarray(theta, float)
    base = Efficiency(*theta)
    cols = []
    for k, x in enumerate(theta):
        h = rel_step * max(abs(x), 1e-3)
        up = np.log(np.maximum(np.asarray(predict(base._replace(**{Efficiency._fields[k]: x + h}), b), float), 1e-30))
        dn = np.log(np.maximum(np.asarray(predict(base._replace(**{Efficiency._fields[k]: x - h}), b), float), 1e-30))
        cols.append((up - dn) / (2.0 * h))
    return np.stack(cols, axis=1)


def sensitivity(eff: Efficiency, plan: Plan, fitted: Sequence[str] = ()) -> pd.DataFrame:
    """Per parameter: value, elasticities ∂log pred/∂log θ over the fit targets (mean and max of
    |·|), loss elasticity θ·∂L/∂θ, and a Gauss-Newton relative standard error of the fitted ones
    (sqrt diag σ²(JᵀJ)⁺ in log θ, σ² = Σr²/(n − k)): large means the rows do not pin it down."""
    b = plan.batch
    theta = jnp.asarray([float(x) for x in eff], b.coef.dtype)
    mask = np.asarray(b.fit)

    jac = np.asarray(_log_jacobian(theta, b)) * np.asarray(theta)[None, :]   # [n_targets, n_params]
    r = np.log(np.asarray(predict(Efficiency(*theta), b))) - np.log(np.asarray(b.measured))
    j_fit = jac[mask]
    loss_el = 2.0 * np.mean(r[mask][:, None] * j_fit, axis=0)
    cols = [Efficiency._fields.index(n) for n in fitted]
    se = np.full(len(theta), np.nan)
    if cols:
        jf = j_fit[:, cols]
        dof = max(int(mask.sum()) - len(cols), 1)
        cov = float(np.sum(r[mask] ** 2)) / dof * np.linalg.pinv(jf.T @ jf)
        se[cols] = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return pd.DataFrame({"parameter": Efficiency._fields,
                         "default": [float(x) for x in DEFAULT_EFFICIENCY], "value": np.asarray(theta),
                         "fitted": [n in fitted for n in Efficiency._fields],
                         "elasticity_mean_abs": np.abs(j_fit).mean(axis=0),
                         "elasticity_max_abs": np.abs(j_fit).max(axis=0),
                         "loss_elasticity": loss_el, "rel_std_err": se}).set_index("parameter")


def leave_one_out(rows: Sequence[Measurement] | None = None, eff0: Efficiency = DEFAULT_EFFICIENCY,
                  steps: int = 400, learning_rate: float = 0.05, *, by: str = "row",
                  fit: Sequence[str] | None = None, prior: float = 1e-2, min_sources: int = MIN_SOURCES,
                  catalog=None) -> pd.DataFrame:
    """Refit with each fit row (by="row") or each source (by="source") held out, all folds in one
    vmapped optimisation; per held-out target: |error| % before (eff0) and after (the fold's fit).

    With fit=None each fold fits the candidates that its own training rows measure from at least
    `min_sources` sources (`calibrate`, `identification`), so the choice never sees the held-out
    rows.  Columns: fold, id, metric, measured, before_abs_error_pct, after_abs_error_pct, fitted.
    """
    if by not in ("row", "source"):
        raise MlsysOptError(f"leave_one_out(by={by!r}): allowed 'row' or 'source'")
    rows, plan, src = _rows_and_plan(rows, catalog)
    names = _program_names(fit)
    b = plan.batch
    key = [t.id for t in plan.targets] if by == "row" else src
    fit_mask = np.asarray(b.fit)
    folds = list(dict.fromkeys(k for k, f in zip(key, fit_mask) if f))
    held = np.array([[k == f for k in key] for f in folds])
    w = fit_mask[None, :] & ~held
    lead = _leading(eff0, plan, names) if fit is None else None
    free = np.stack([_free(names, lead, src, wi, fit, min_sources) for wi in w])
    eff0 = Efficiency(*(jnp.asarray(x, b.coef.dtype) for x in eff0))
    u0 = _to_u(eff0, names).astype(b.coef.dtype)
    fit_all = jax.vmap(lambda wi, fi: _fit(u0, eff0, b, wi, fi, learning_rate, prior, names=names,
                                           steps=int(steps))[0])
    pad = int(fit_mask.sum()) - len(folds)    # as many folds as fit targets: by row and by source
    us = fit_all(jnp.asarray(np.concatenate([w, w[:1].repeat(pad, 0)]), b.coef.dtype),   # share one program
                 jnp.asarray(np.concatenate([free, free[:1].repeat(pad, 0)]), b.coef.dtype))
    before = np.asarray(predict(eff0, b))
    meas = np.asarray(b.measured)
    out = []
    for i, f in enumerate(folds):
        after = np.asarray(predict(_from_u(us[i], eff0, names), b))
        chosen = ", ".join(n for n, x in zip(names, free[i]) if x) or "(none)"
        for j in np.flatnonzero(held[i] & fit_mask):
            out.append({"fold": f, "id": plan.targets[j].id, "metric": plan.targets[j].metric,
                        "measured": meas[j], "before_abs_error_pct": 100 * abs(before[j] / meas[j] - 1),
                        "after_abs_error_pct": 100 * abs(after[j] / meas[j] - 1), "fitted": chosen})
    return pd.DataFrame(out)


def synthetic_rows(eff: Efficiency, rows: Sequence[Measurement] | None = None) -> list[Measurement]:
    """Rows whose compared figures are this model's predictions under `eff` (for recovery tests)."""
    rows = load_measurements() if rows is None else list(rows)
    plan = build(rows)
    pred = np.asarray(predict(eff, plan.batch), float)
    by_id: dict[str, dict] = {}
    for t, p in zip(plan.targets, pred):
        if "[" not in t.metric:
            by_id.setdefault(t.id, {})[t.metric] = p
    out = []
    for r in rows:
        meas = dict(r.measured)
        for key, (metric, factor) in METRICS.items():
            if key in meas and metric in by_id.get(r.id, {}):
                meas[key] = by_id[r.id][metric] / factor
        out.append(r._replace(measured=meas))
    return out
