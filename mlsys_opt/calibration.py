"""Fidelity: published measurements -> scenario predictions -> error tables -> calibration.

Every row of ``calibration_data/measurements.json`` (Megatron-LM on up to 3,072
A100s, PaLM, BLOOM, Llama, Patterson et al. 2021, TensorRT-LLM) becomes one or
more scenario evaluations (`to_scenario`); ``calibration_data/cases.toml`` holds
what a row needs and does not print, each value with its source or marked as an
assumption.  Each compared number ("target") is predicted in the row's own
convention from the scenario outputs q::

    prediction = coef · (Σ w_num · q) / (Σ w_den · q)

    tflops_per_gpu  Megatron eq.(3) 96·B·s·l·h²·(1 + s/6h + V/16lh) / (step_time · N)
                    (hardware FLOPs incl. full recompute, Narayanan et al. 2021 §5.1)
    mfu             the scenario's own MFU (PaLM App. B: 6·N + 12·L·H·Q·T per token)
    energy_mwh      (energy_j / time_to_train_s) · published duration: the facility
    carbon_t        power (resp. carbon rate) over the run's own duration, so these
                    check the power·PUE·grid chain, not the throughput model
    gpu_hours       time_to_train_s · N / 3600  (training_days: time_to_train_s / 86400)
    ttft_ms         ttft_s of one prompt
    tok_per_s_per_gpu  TensorRT-LLM static batch: B·out / (prefill of B·in tokens
                    + out · mean decode step) / GPUs (two evaluations of the scenario)

`validate` gives a DataFrame (id, category, metric, measured, predicted,
error_pct, plus a constant-η roofline baseline: T = 6·P·D/(N·peak·η), memory
roofline for serving, N·TDP·PUE for energy, one η fitted on the same rows).
`calibrate` fits the efficiency parameters (`mlsys_opt.efficiency`) with optax
Adam on L = mean_t (log pred_t − log meas_t)², all rows in one jitted call, over a
bounded reparametrisation (sigmoid for fractions, exp for positive values).
`leave_one_out` refits with each row (or each source) held out — one vmapped
optimisation — and reports the held-out error before and after.
"""
from __future__ import annotations

import functools
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from . import schema
from ._types import BYTES_PER_ELEMENT, SECONDS_PER_DAY, SECONDS_PER_HOUR
from .catalog import load_catalog
from .efficiency import DEFAULT_EFFICIENCY, Efficiency
from .errors import MlsysOptError, suggest
from .scenarios import SCENARIO_FNS, params_from_dict

DATA_DIR = Path(__file__).resolve().parent / "calibration_data"
MEASUREMENTS_PATH = DATA_DIR / "measurements.json"
CASES_PATH = DATA_DIR / "cases.toml"
DEFAULT_CALIBRATION_PATH = DATA_DIR / "default_calibration.json"

# measured key -> (metric, factor to the metric's unit); keys not listed are context only.
METRICS: dict[str, tuple[str, float]] = {
    "tflops_per_gpu": ("tflops_per_gpu", 1.0), "mfu": ("mfu", 1.0),
    "energy_MWh": ("energy_mwh", 1.0), "dynamic_energy_kWh": ("energy_mwh", 1e-3),
    "tco2e": ("carbon_t", 1.0), "net_tco2e": ("carbon_t", 1.0), "dynamic_tco2e": ("carbon_t", 1.0),
    "gpu_hours": ("gpu_hours", 1.0), "training_days": ("training_days", 1.0), "out_tokens_per_s_per_gpu": ("tok_per_s_per_gpu", 1.0),
    "first_token_latency_ms": ("ttft_ms", 1.0)}
FIELDS = {"training": ("step_time_s", "time_to_train_s", "energy_j", "carbon_kg", "mfu"),
          "serving": ("ttft_s", "itl_s")}
HARDWARE_NAMES = {"a100sxm480gb": "a100_80gb", "a10080gb": "a100_80gb", "a100": "a100_80gb",
                  "tpuv4": "tpu_v4", "tpuv3": "tpu_v3", "v100": "v100"}
# Parameters fitted by default: the ones the fit rows identify (see `calibrate`).
FIT_PARAMS = ("compute_eff_scale", "scaleup_comm_eff", "scaleout_comm_eff", "prefill_eff_scale",
              "mem_bw_eff", "matmul_rows_half", "dispatch_s_per_layer")
_FRACTIONS = ("mem_bw_eff", "scaleup_comm_eff", "scaleout_comm_eff", "tp_comm_overlap",
              "ep_comm_overlap", "pipeline_overhead_frac", "idle_power_frac")


def _kind(name: str) -> str:
    """'frac' (in [0, 1], sigmoid) or 'pos' (> 0, exp) for an efficiency parameter."""
    return "frac" if name in _FRACTIONS or name.endswith(("_frac", "_overlap")) else "pos"


# --------------------------------------------------------------------------- measurements
class Measurement(NamedTuple):
    """One published measurement (a row of measurements.json; dicts as published)."""
    id: str
    category: str
    source: str
    hardware: dict
    model: dict
    parallelism: dict
    precision: str
    measured: dict
    notes: str
    verification: str


def load_measurements(path: str | Path | None = None) -> list[Measurement]:
    """Rows of a measurements file (default: the packaged copy of reality/measurements.json)."""
    path = Path(path) if path is not None else MEASUREMENTS_PATH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MlsysOptError(f"{path}: cannot read measurements ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise MlsysOptError(f"{path}: not valid JSON: {exc}") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise MlsysOptError(f"{path}: expected an object with a 'rows' list of measurements")
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not all(k in r for k in ("id", "category", "measured")):
            raise MlsysOptError(f"{path}: rows[{i}] needs 'id', 'category' and 'measured' fields")
        out.append(Measurement(str(r["id"]), str(r["category"]), str(r.get("source", "")),
                               dict(r.get("hardware") or {}), dict(r.get("model") or {}),
                               dict(r.get("parallelism") or {}), str(r.get("precision", "")),
                               dict(r["measured"]), str(r.get("notes", "")),
                               str(r.get("verification", ""))))
    return out


@functools.lru_cache(maxsize=1)
def _cases() -> dict:
    with open(CASES_PATH, "rb") as fh:
        return tomllib.load(fh)


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", re.sub(r"\(.*?\)", "", str(text).lower()))


# --------------------------------------------------------------------------- rows -> evaluations
class Target(NamedTuple):
    """One compared number: prediction = coef · Σ num / Σ den over (evaluation, field) terms."""
    id: str
    category: str
    metric: str
    measured: float
    coef: float
    num: tuple        # ((evaluation index within the row, field) | ("const", 1.0), weight), ...
    den: tuple
    fit: bool
    target: str       # accuracy-target group ("megatron", "mfu", "energy", "serving", "")
    notes: str


class RowPlan(NamedTuple):
    """What `to_scenario` makes of a row: catalog entries, evaluations and targets."""
    id: str
    entries: dict     # kind -> {name: fields}
    evaluations: tuple  # ((scenario, settings dict), ...)
    targets: tuple    # Target, ...


def _megatron_settings(row: Measurement, cfg: dict) -> tuple[dict, dict]:
    """Settings and the model entry of a fully specified Megatron-style row."""
    m, par, hw = row.model, row.parallelism, row.hardware
    need = [k for k in ("layers", "hidden", "heads", "seq_len", "vocab", "params_B") if k not in m]
    need += [k for k in ("TP", "PP", "DP", "global_batch") if k not in par]
    if need or "count" not in hw or "type" not in hw:
        raise MlsysOptError(f"measurement {row.id!r}: not in calibration_data/cases.toml and missing "
                            f"{', '.join(need or ['hardware.type/count'])} to derive its scenario")
    name = re.sub(r"[^a-z0-9]+", "_", row.id.lower()).strip("_")
    year = re.search(r"(19|20)\d\d", row.source)
    model = {"display_name": f"{row.id} model", "kind": "transformer",
             "year": int(year.group(0)) if year else 2021, "params": f"{float(m['params_B']) * 1e9:.6g}",
             "layers": int(m["layers"]), "hidden": int(m["hidden"]), "heads": int(m["heads"]),
             "kv_heads": int(m.get("kv_heads", m["heads"])), "head_dim": int(m["hidden"]) // int(m["heads"]),
             "ffn_dim": 4 * int(m["hidden"]), "vocab": int(m["vocab"]), "context": int(m["seq_len"]),
             "source": f"{row.source} (shape as in measurements.json row {row.id})"}
    tp, pp, dp, batch = (int(par[k]) for k in ("TP", "PP", "DP", "global_batch"))
    per_stage = int(m["layers"]) // pp
    v = 1 if pp == 1 else next((d for d in range(2, per_stage + 1) if per_stage % d == 0), 1)
    hardware = HARDWARE_NAMES.get(_norm(hw["type"]), hw["type"])
    full = "full" in str(par.get("recompute", "")).lower()
    settings = {"hardware": hardware, "model": name, "n_accelerators": int(hw["count"]), "tp": tp,
                "pp": pp, "global_batch": batch, "seq_len": int(m["seq_len"]),
                "microbatches": batch // (dp * int(cfg.get("micro_batch", 1))), "virtual_stages": v,
                "recompute": "full" if full else "selective",
                **{k: cfg[k] for k in ("fabric", "zero_stage", "overlap", "precision", "efficiency") if k in cfg}}
    return settings, {"models": {name: model}}


def _eq3_flop(row: Measurement) -> float:
    """Megatron eq.(3): 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)) FLOP per iteration (incl. recompute)."""
    m, b = row.model, float(row.parallelism["global_batch"])
    s, l, h, v = (float(m[k]) for k in ("seq_len", "layers", "hidden", "vocab"))
    return 96.0 * b * s * l * h * h * (1.0 + s / (6.0 * h) + v / (16.0 * l * h))


_DURATION_S = {"training_days": lambda v, n: v * SECONDS_PER_DAY,       # measured key -> s of the run
               "gpu_hours": lambda v, n: v * SECONDS_PER_HOUR / n,        # (n accelerators)
               "duration_months": lambda v, n: v * 30.44 * SECONDS_PER_DAY}


def _duration_s(row: Measurement, how: str, n: float) -> float:
    if how not in _DURATION_S or how not in row.measured:
        raise MlsysOptError(f"{CASES_PATH.name}: [rows.{row.id}] duration: {how!r} must be a measured key "
                            f"of the row among {', '.join(_DURATION_S)}")
    return _DURATION_S[how](float(row.measured[how]), n)


def plan_row(row: Measurement) -> RowPlan:
    """The evaluations and targets of one measurement (see the module docstring)."""
    cfg = _cases()
    spec = cfg.get("rows", {}).get(row.id)
    entries: dict = {}
    if spec is None:
        settings, entries = _megatron_settings(row, cfg.get("megatron", {}))
        spec = {"scenario": "training", "metrics": ["tflops_per_gpu"], "fit": True, "target": "megatron",
                "assumptions": "micro-batch 1 and the least interleaving the layer split allows (assumptions)"}
    else:
        settings = dict(spec.get("set", {}))
    scenario, notes = spec.get("scenario", "training"), spec.get("assumptions", "")
    if scenario == "training":   # throughput rows: any run length (1000 steps) gives the step time
        settings.setdefault("n_tokens", 1000.0 * settings.get("global_batch", 1) * settings.get("seq_len", 1))
    else:                        # latency/throughput rows do not depend on the arrival rate
        settings.setdefault("request_rate", "0.1 /s")
    evals: list = [(scenario, settings)]
    variants = [("", 0)]   # energy/carbon figures are also evaluated with each variant's settings
    for var in spec.get("variants", []):
        evals.append((scenario, {**settings, **var["set"]}))
        variants.append((var["label"], len(evals) - 1))
    targets = []
    for key in spec.get("metrics", []):
        if key not in row.measured or key not in METRICS:
            raise MlsysOptError(f"{CASES_PATH.name}: [rows.{row.id}] metrics: {key!r} is not a measured "
                                f"key of the row with a known convention;{suggest(key, row.measured)} "
                                f"(known: {', '.join(k for k in METRICS if k in row.measured)})")
        metric, factor = METRICS[key]
        measured = float(row.measured[key]) * factor
        n = float(settings.get("n_accelerators", 1))
        group = spec.get("target", "")
        if group == "energy" and metric not in ("energy_mwh", "carbon_t"):
            group = ""     # e.g. GPU-hours of an energy row: a throughput figure, not the energy chain
        for label, e in variants if metric in ("energy_mwh", "carbon_t") else variants[:1]:
            num, den, coef = ((("const", 1.0), 1.0),), ((("const", 1.0), 1.0),), 1.0
            if metric == "tflops_per_gpu":
                coef, den = _eq3_flop(row) / (n * 1e12), (((e, "step_time_s"), 1.0),)
            elif metric == "mfu":
                num = (((e, "mfu"), 1.0),)
            elif metric in ("energy_mwh", "carbon_t"):
                dur = _duration_s(row, spec.get("duration", "training_days"), n)
                coef = dur / (3.6e9 if metric == "energy_mwh" else 1e3)
                num = (((e, "energy_j" if metric == "energy_mwh" else "carbon_kg"), 1.0),)
                den = (((e, "time_to_train_s"), 1.0),)
            elif metric in ("gpu_hours", "training_days"):
                coef = n / SECONDS_PER_HOUR if metric == "gpu_hours" else 1.0 / SECONDS_PER_DAY
                num = (((e, "time_to_train_s"), 1.0),)
            elif metric == "ttft_ms":
                coef, num = 1e3, (((e, "ttft_s"), 1.0),)
            elif metric == "tok_per_s_per_gpu":
                b, p_in, out = (float(settings[k]) for k in ("batch", "prompt_tokens", "output_tokens"))
                gpus = float(settings.get("tp", 1)) * float(settings.get("pp", 1))
                # prefill of the whole batch = one prompt of b·p_in tokens; the scenario's ITL is
                # already the mean decode step (KV at prompt + output/2)
                evals.append(("serving", {**settings, "batch": 1, "prompt_tokens": b * p_in, "output_tokens": 1}))
                coef = b * out / gpus
                den = (((len(evals) - 1, "ttft_s"), 1.0), ((e, "itl_s"), out))
            targets.append(Target(row.id, row.category, metric + (f" [{label}]" if label else ""), measured,
                                  coef, num, den, bool(spec.get("fit", False)) and not label,
                                  "" if label else group, notes))
    for kind, table in cfg.get("entries", {}).items():   # shared additions (small; always included)
        entries.setdefault(kind, {}).update(table)
    return RowPlan(row.id, entries, tuple(evals), tuple(targets))


def _values(scenario: str, settings: dict, catalog, where: str) -> dict:
    """Schema parameters (SI floats / int codes) of one evaluation, validated by space.load_space."""
    from .space import load_space
    fixed = {k: v for k, v in settings.items() if k != "tp"}
    spec = {"scenario": scenario, "fixed": fixed, "axes": {"tp": [settings.get("tp", 1)]},
            "objectives": {"minimize": [next(iter(schema.OUTPUTS[scenario]))]}}
    try:
        space = load_space(spec, catalog=catalog)
    except MlsysOptError as exc:
        raise MlsysOptError(f"{where}: {exc}") from None
    return {**space.constants, "tp": float(space.axes[0].values[0])}


class Batch(NamedTuple):
    """All evaluations and targets of a set of rows, as arrays (what the jitted loss sees)."""
    params: dict      # scenario -> Params NamedTuple of [n_eval(scenario)] arrays
    tables: Any
    coef: Any         # [n_targets]
    num_idx: Any      # [n_targets, K] int32 into the flat q vector
    num_w: Any
    den_idx: Any
    den_w: Any
    measured: Any     # [n_targets]
    fit: Any          # [n_targets] bool


class Plan(NamedTuple):
    """Host-side view of a Batch: the targets and the catalog it was built on."""
    targets: tuple
    evaluations: tuple  # (row id, scenario, settings)
    catalog: Any
    batch: Batch


def build(rows: Sequence[Measurement] | None = None, catalog=None, dtype=None) -> Plan:
    """Plan and batch every row: one catalog (with every row's entries), stacked parameters."""
    rows = load_measurements() if rows is None else list(rows)
    plans = [plan_row(r) for r in rows]
    catalog = load_catalog() if catalog is None else catalog
    for kind in ("accelerators", "models", "fabrics", "regions"):
        table = {k: v for p in plans for k, v in p.entries.get(kind, {}).items()}
        if table:
            catalog = catalog.with_entries(kind, table)
    dtype = jnp.result_type(float) if dtype is None else dtype
    evals, offsets, stacks = [], {}, {"training": [], "serving": []}
    for p in plans:
        for j, (sc, settings) in enumerate(p.evaluations):
            offsets[(p.id, j)] = (sc, len(stacks[sc]))
            stacks[sc].append(_values(sc, settings, catalog, f"measurement {p.id!r}"))
            evals.append((p.id, sc, settings))
    n_train = len(stacks["training"])
    sizes = {"training": 0, "serving": n_train * len(FIELDS["training"])}
    const = sizes["serving"] + len(stacks["serving"]) * len(FIELDS["serving"])

    def flat(rid, term):
        (e, field), w = term
        if e == "const":
            return const, float(field) * w
        sc, i = offsets[(rid, e)]
        return sizes[sc] + i * len(FIELDS[sc]) + FIELDS[sc].index(field), w

    targets = [t for p in plans for t in p.targets]
    k = max([len(t.num) for t in targets] + [len(t.den) for t in targets] + [1])
    arr = {n: np.zeros((len(targets), k), dt) for n, dt in
           (("ni", np.int32), ("nw", float), ("di", np.int32), ("dw", float))}
    for i, t in enumerate(targets):
        for j, term in enumerate(t.num):
            arr["ni"][i, j], arr["nw"][i, j] = flat(t.id, term)
        for j, term in enumerate(t.den):
            arr["di"][i, j], arr["dw"][i, j] = flat(t.id, term)
    params = {sc: params_from_dict(sc, {key: np.array([v[key] for v in vs]) for key in schema.PARAMS[sc]})
              for sc, vs in stacks.items() if vs}
    batch = Batch(params, catalog.tables(dtype=dtype), jnp.asarray([t.coef for t in targets], dtype),
                  jnp.asarray(arr["ni"]), jnp.asarray(arr["nw"], dtype), jnp.asarray(arr["di"]),
                  jnp.asarray(arr["dw"], dtype), jnp.asarray([t.measured for t in targets], dtype),
                  jnp.asarray([t.fit for t in targets]))
    return Plan(tuple(targets), tuple(evals), catalog, batch)


def _quantities(eff: Efficiency, batch: Batch):
    """The flat q vector: per evaluation its FIELDS, then a constant 1."""
    parts = []
    for sc in ("training", "serving"):
        if sc in batch.params:
            out, _ = SCENARIO_FNS[sc](batch.params[sc], batch.tables, eff)
            parts.append(jnp.stack([getattr(out, f) for f in FIELDS[sc]], axis=-1).ravel())
    parts.append(jnp.ones((1,), batch.coef.dtype))
    return jnp.concatenate([p.astype(batch.coef.dtype) for p in parts])


def _combine(q, batch: Batch):
    num = jnp.sum(batch.num_w * q[batch.num_idx], axis=-1)
    den = jnp.sum(batch.den_w * q[batch.den_idx], axis=-1)
    return batch.coef * num / jnp.maximum(den, 1e-30)


@jax.jit
def _evaluate(eff: Efficiency, batch: Batch):
    """(predictions [n_targets], {scenario: constraint margins [n_eval, n_constraints]})."""
    g = {sc: jnp.stack(SCENARIO_FNS[sc](p, batch.tables, eff)[1], -1) for sc, p in batch.params.items()}
    return _combine(_quantities(eff, batch), batch), g


def predict(eff: Efficiency, batch: Batch):
    """Predicted figure of every target [n_targets] (one jitted call, one scenario call per scenario)."""
    return _evaluate(eff, batch)[0]


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
        kv = 2.0 * t.model.n_layers[m] * t.model.n_kv_heads[m] * t.model.head_dim[m] \
            * (p.prompt_tokens + 0.5 * p.output_tokens) * p.batch * bpe     # mean context over decode
        flop_tok = 2.0 * t.model.n_active_params[m]
        ttft = np.maximum(flop_tok * p.prompt_tokens / (peak * eta), w / bw)
        itl = np.maximum(flop_tok * p.batch / (peak * eta), (w + kv) / bw)
        parts.append(np.stack([ttft, itl], -1).ravel())
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
    return df


@functools.lru_cache(maxsize=4)
def _default_plan(dtype_name: str) -> Plan:
    return build(dtype=jnp.dtype(dtype_name))


def _plan(rows, catalog) -> Plan:   # the packaged rows on the packaged catalog are built once
    return _default_plan(jnp.dtype(jnp.result_type(float)).name) if rows is None and catalog is None \
        else build(rows, catalog)


def _violations(plan: Plan, eff: Efficiency) -> dict[str, str]:
    """Row id -> names of structural constraints its evaluations violate (g > 0)."""
    bad: dict[str, set] = {}
    for sc, g in _evaluate(eff, plan.batch)[1].items():
        ids = [rid for rid, s, _ in plan.evaluations if s == sc]
        names = schema.STRUCTURAL_CONSTRAINTS[sc]
        for rid, row in zip(ids, np.asarray(g)):
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


def check_targets(df: pd.DataFrame, loo: pd.DataFrame | None = None) -> pd.DataFrame:
    """The issue's accuracy targets: requirement, value and whether it is met."""
    meg = df[df["target"] == "megatron"]
    energy = df[df["target"] == "energy"]
    cal = "calibrated_error_pct" if "calibrated_error_pct" in df else "error_pct"
    rows = [("Megatron median |err|, defaults", "<= 10 %", meg["error_pct"].abs().median(), 10.0),
            ("Megatron median |err|, calibrated", "<= 5 %", meg[cal].abs().median(), 5.0),
            ("Megatron worst |err|, calibrated", "<= 20 %", meg[cal].abs().max(), 20.0),
            ("energy/carbon (power, duration, grid given) worst |err|", "<= 15 %",
             energy[cal].abs().max(), 15.0)]
    out = [{"target": a, "requirement": b, "value_pct": float(c), "met": bool(c <= d)} for a, b, c, d in rows]
    if loo is not None and len(loo):
        before, after = loo["before_abs_error_pct"].median(), loo["after_abs_error_pct"].median()
        out.append({"target": "held-out median |err| improves (leave-one-out)",
                    "requirement": f"< {before:.1f} % (before)", "value_pct": float(after),
                    "met": bool(after < before)})
    return pd.DataFrame(out)


def format_validation_table(df: pd.DataFrame, loo: pd.DataFrame | None = None) -> str:
    """Plain-text report of a `validate` frame: every target (measured, predictions, % errors),
    median / worst |error| per group, the accuracy targets (with `loo`: the held-out one too)."""
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
    viol = df.drop_duplicates("id")
    viol = viol[viol["violations"] != ""] if "violations" in viol else viol.iloc[:0]
    if len(viol):
        lines += ["", "constraint violations (the configuration as published breaks a modelled limit):"]
        lines += [f"  {r.id}: {r.violations}" for r in viol.itertuples()]
    return "\n".join(lines)


# --------------------------------------------------------------------------- calibration
def _to_u(eff: Efficiency, names: tuple[str, ...]):
    """Unconstrained coordinates: logit for fractions (clipped to [1e-4, 1 - 1e-4]), log for positives."""
    u = []
    for n in names:
        x = float(getattr(eff, n))
        if _kind(n) == "frac":
            x = min(max(x, 1e-4), 1.0 - 1e-4)
            u.append(math.log(x / (1.0 - x)))
        else:
            u.append(math.log(max(x, 1e-12)))
    return jnp.asarray(u, jnp.result_type(float))


def _from_u(u, eff0: Efficiency, names: tuple[str, ...]) -> Efficiency:
    vals = {n: (jax.nn.sigmoid(u[i]) if _kind(n) == "frac" else jnp.exp(u[i])) for i, n in enumerate(names)}
    return eff0._replace(**vals)


def _loss(u, u0, eff0, batch, weights, names, prior):
    """mean_w (log pred − log meas)² + prior · mean (u − u0)²."""
    pred = _combine(_quantities(_from_u(u, eff0, names), batch), batch)
    r = jnp.log(jnp.maximum(pred, 1e-30)) - jnp.log(batch.measured)
    data = jnp.sum(weights * r * r) / jnp.maximum(jnp.sum(weights), 1e-30)
    return data + prior * jnp.mean((u - u0) ** 2)


@functools.partial(jax.jit, static_argnames=("names", "steps"))
def _fit(u0, eff0, batch, weights, learning_rate, prior, *, names, steps):
    """Adam on _loss for `steps` steps (lax.scan): (u at the lowest loss, loss history [steps])."""
    opt = optax.adam(learning_rate)
    grad = jax.value_and_grad(_loss)

    def body(carry, _):
        u, state, best_u, best = carry
        loss, g = grad(u, u0, eff0, batch, weights, names, prior)
        better = loss < best
        best_u, best = jnp.where(better, u, best_u), jnp.where(better, loss, best)
        upd, state = opt.update(g, state, u)
        return (optax.apply_updates(u, upd), state, best_u, best), loss

    init = (u0, opt.init(u0), u0, jnp.asarray(jnp.inf, u0.dtype))
    (_, _, best_u, _), hist = jax.lax.scan(body, init, None, length=steps)
    return best_u, hist


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
        raise MlsysOptError(f"calibrate(fit=...): {n!r} is not an efficiency parameter;"
                            f"{suggest(n, Efficiency._fields)} (allowed: {', '.join(Efficiency._fields)})")
    return tuple(names)


def calibrate(rows: Sequence[Measurement] | None = None, eff0: Efficiency = DEFAULT_EFFICIENCY,
              steps: int = 400, learning_rate: float = 0.05, *, fit: Sequence[str] = FIT_PARAMS,
              prior: float = 1e-2, catalog=None) -> Calibration:
    """Fit the efficiency parameters `fit` to the rows' fit targets (cases.toml `fit = true`).

    Loss L(θ) = mean_t (log pred_t(θ) − log meas_t)² + prior · mean_k (u_k − u0_k)² over the
    unconstrained u (θ = sigmoid(u) for fractions, exp(u) for positive parameters).  The prior
    is a Gaussian in u: with ~5 % data error, k = 7 parameters and n = 15 targets, prior = 1e-2
    is σ_u ≈ sqrt(0.05²·k/(n·prior)) ≈ 0.34 (±40 %) around eff0, which keeps the parameters the
    rows barely constrain (see `sensitivity`'s rel_std_err) near their documented defaults; against
    1e-3 it lowers the serving rows' leave-one-out errors (bs-32 throughput 30 -> 7 %).  Adam
    (`learning_rate`, `steps`) in one jitted lax.scan over all rows at once; returns the
    lowest-loss iterate.  Parameters not in `fit` keep eff0's values exactly.
    """
    names = _check_names(fit)
    plan = _plan(rows, catalog)
    b = plan.batch
    w = b.fit.astype(b.coef.dtype)
    if not bool(jnp.any(b.fit)):
        raise MlsysOptError("calibrate: none of the given rows is marked fit = true in "
                            f"{CASES_PATH.name}; nothing to fit")
    eff0 = Efficiency(*(jnp.asarray(x, b.coef.dtype) for x in eff0))
    u0 = _to_u(eff0, names).astype(b.coef.dtype)
    u, hist = _fit(u0, eff0, b, w, learning_rate, prior, names=names, steps=int(steps))
    eff = Efficiency(*(float(x) for x in _from_u(u, eff0, names)))
    before, after = (_log_loss(e, b) for e in (eff0, eff))
    ids = tuple(dict.fromkeys(t.id for t in plan.targets if t.fit))
    return Calibration(eff, np.asarray(hist), sensitivity(eff, plan, names), ids, names, before, after)


@jax.jit
def _log_jacobian(theta, b: Batch):
    """∂ log pred / ∂θ [n_targets, n_params] by reverse mode (forward mode overflows float32 in
    the walls' MFU division for 1e22-FLOP steps)."""
    return jax.jacrev(lambda th: jnp.log(jnp.maximum(_combine(_quantities(Efficiency(*th), b), b),
                                                     1e-30)))(theta)


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
                  fit: Sequence[str] = FIT_PARAMS, prior: float = 1e-2, catalog=None) -> pd.DataFrame:
    """Refit with each fit row (by="row") or each source (by="source") held out, all folds in one
    vmapped optimisation; per held-out target: |error| % before (eff0) and after (fold's fit)."""
    if by not in ("row", "source"):
        raise MlsysOptError(f"leave_one_out(by={by!r}): allowed 'row' or 'source'")
    names = _check_names(fit)
    rows = load_measurements() if rows is None else list(rows)
    src = {r.id: r.source.split(",")[0].split("(")[0].strip() for r in rows}
    plan = _plan(rows if rows else None, catalog)
    b = plan.batch
    key = [t.id if by == "row" else src[t.id] for t in plan.targets]
    fit_mask = np.asarray(b.fit)
    folds = list(dict.fromkeys(k for k, f in zip(key, fit_mask) if f))
    held = np.array([[k == f for k in key] for f in folds])
    w = jnp.asarray((fit_mask[None, :] & ~held).astype(float), b.coef.dtype)
    eff0 = Efficiency(*(jnp.asarray(x, b.coef.dtype) for x in eff0))
    u0 = _to_u(eff0, names).astype(b.coef.dtype)
    fit_all = jax.vmap(lambda wi: _fit(u0, eff0, b, wi, learning_rate, prior, names=names, steps=int(steps))[0])
    us = fit_all(w)
    before = np.asarray(predict(eff0, b))
    meas = np.asarray(b.measured)
    out = []
    for i, f in enumerate(folds):
        after = np.asarray(predict(_from_u(us[i], eff0, names), b))
        for j in np.flatnonzero(held[i] & fit_mask):
            out.append({"fold": f, "id": plan.targets[j].id, "metric": plan.targets[j].metric,
                        "measured": meas[j], "before_abs_error_pct": 100 * abs(before[j] / meas[j] - 1),
                        "after_abs_error_pct": 100 * abs(after[j] / meas[j] - 1)})
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


# --------------------------------------------------------------------------- calibration files
def save_calibration(cal: Calibration | Efficiency, path: str | Path) -> Path:
    """Write a calibration (JSON, or TOML when the name ends in .toml): per parameter its value,
    default and what it was fitted on (the measurement ids in `fitted_on`, or the default)."""
    path = Path(path)
    eff = cal.eff if isinstance(cal, Calibration) else cal
    fitted = set(cal.fitted) if isinstance(cal, Calibration) else set()
    meta = {"format": "mlsys_opt calibration 1",
            "note": "efficiency parameters (mlsys_opt.efficiency); load with mlsys_opt.calibration.load_calibration",
            "fitted_on": list(cal.fitted_on) if isinstance(cal, Calibration) else []}
    if isinstance(cal, Calibration):
        meta.update(loss_before=round(cal.loss_before, 8), loss_after=round(cal.loss_after, 8))
    params = {n: {"value": float(getattr(eff, n)), "default": float(getattr(DEFAULT_EFFICIENCY, n)),
                  "fitted_on": f"measurements.json rows in fitted_on ({len(meta['fitted_on'])})" if n in fitted
                  else "not fitted (efficiency.py default or a user value)"} for n in Efficiency._fields}
    if path.suffix.lower() == ".toml":
        lines = [f"{k} = {json.dumps(v)}" for k, v in meta.items()]
        for n, p in params.items():
            lines += ["", f"[parameters.{n}]"] + [f"{k} = {json.dumps(v)}" for k, v in p.items()]
        text = "\n".join(lines)
    else:
        body = ",\n".join(f"  {json.dumps(n)}: {json.dumps(p)}" for n, p in params.items())
        text = "{\n" + "".join(f" {json.dumps(k)}: {json.dumps(v)},\n" for k, v in meta.items()) \
            + f' "parameters": {{\n{body}\n }}\n}}'
    path.write_text(text + "\n", encoding="utf-8")
    return path


def load_calibration(path: str | Path = DEFAULT_CALIBRATION_PATH) -> Efficiency:
    """Efficiency from a calibration file (JSON or TOML, as written by `save_calibration`).

    `parameters.<name>` is a table with `value` (or a bare number); parameters the file
    leaves out keep their DEFAULT_EFFICIENCY value.  Errors name the file and the field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except OSError as exc:
        raise MlsysOptError(f"{path}: cannot read calibration file ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MlsysOptError(f"{path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: "
                            f"{exc}") from None
    params = data.get("parameters") if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise MlsysOptError(f"{path}: parameters: missing; expected a table of efficiency parameters "
                            f"({', '.join(Efficiency._fields)})")
    values = {}
    for name, entry in params.items():
        where = f"{path}: parameters.{name}"
        if name not in Efficiency._fields:
            raise MlsysOptError(f"{where}: not an efficiency parameter;{suggest(name, Efficiency._fields)} "
                                f"(allowed: {', '.join(Efficiency._fields)})")
        value = entry.get("value") if isinstance(entry, dict) else entry
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise MlsysOptError(f"{where}.value: expected a finite number, got {value!r}")
        low, high = (0.0, 1.0) if _kind(name) == "frac" else (0.0, math.inf)
        if not low <= value <= high:
            raise MlsysOptError(f"{where}.value: {value!r} is out of range (allowed: "
                                f"{'0 to 1' if high == 1.0 else '>= 0'})")
        values[name] = float(value)
    return DEFAULT_EFFICIENCY._replace(**values)


__all__ = ["Measurement", "Target", "RowPlan", "Plan", "Batch", "Calibration", "METRICS", "FIT_PARAMS",
           "load_measurements", "plan_row", "build", "predict", "to_scenario", "validate", "summarize",
           "check_targets", "format_validation_table", "calibrate", "sensitivity", "leave_one_out",
           "synthetic_rows", "save_calibration", "load_calibration", "MEASUREMENTS_PATH",
           "DEFAULT_CALIBRATION_PATH"]
