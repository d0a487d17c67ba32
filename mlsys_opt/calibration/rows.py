"""Measurements -> scenario evaluations -> one batch of arrays -> predictions.

`load_measurements` reads the rows (``calibration_data/measurements.json``),
`plan_row` turns one row into scenario evaluations and compared targets (with
``calibration_data/cases.toml``: what a row needs and does not print), `build`
stacks every row's evaluations into one `Batch` on one extended catalog, and
`predict` evaluates all targets in one jitted call::

    prediction = coef · (Σ w_num · q) / (Σ w_den · q)

over the flat vector q of scenario outputs (`FIELDS` per evaluation, then 1).
The per-metric conventions are documented in `mlsys_opt.calibration`.
"""
from __future__ import annotations

import functools
import json
import re

try:                       # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the tomli backport (pyproject dependency)
    import tomli as tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._compile import jit_options
from .._types import SECONDS_PER_DAY, SECONDS_PER_HOUR
from ..catalog import load_catalog
from ..errors import MlsysOptError, did_you_mean
from ..scenarios import SCENARIO_FNS, params_from_dict, schema
from ..scenarios.efficiency import Efficiency
from ..walls._masked import floor_pos

# Prompt tokens per prefill pack when a benchmark's batched prompts are replayed as one prefill:
# trtllm-bench's smallest max_num_tokens ("Set min to 2048 to ensure Ctx/Gen overlap efficiency",
# NVIDIA/TensorRT-LLM tensorrt_llm/bench/build/tuning.py finetune_setting)
PACK_TOKENS = 2048

DATA_DIR = Path(__file__).resolve().parent.parent / "calibration_data"
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
          "serving": ("ttft_s", "itl_s", "ttft_p50_s", "itl_p50_s", "ttft_mean_s", "itl_mean_s",
                      "throughput_tok_per_s")}
HARDWARE_NAMES = {"a100sxm480gb": "a100_80gb", "a10080gb": "a100_80gb", "a100": "a100_80gb",
                  "tpuv4": "tpu_v4", "tpuv3": "tpu_v3", "v100": "v100"}


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
    # rows with a `setup` (training_runs.json, serving_runs.json, a user's file; calibration.runs)
    setup: dict | None = None       # the run in the source's terms, mapped by calibration.setup
    source_key: str = ""            # the source (a key of the file's `sources`, or a user label)
    org: str = ""                   # its organisation (independent-source counting)
    fit_candidate: bool = True      # false: rests on heavy assumptions (reported, never fitted)
    source_inconsistent: str = ""   # why the source's own figures disagree, or ""
    assumptions: str = ""
    derived: dict | None = None
    compare_all: bool = False       # compare every measured quantity (a user's file), not the first


def read_rows_file(path: str | Path, what: str, expected: str) -> tuple[dict, list]:
    """(the document, its 'rows' list) of a JSON file of published rows; one-line MlsysOptError naming
    the file otherwise (`what` names the content in the read error, `expected` the shape wanted)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise MlsysOptError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise MlsysOptError(f"{path}: not valid JSON: {exc}") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise MlsysOptError(f"{path}: expected an object with {expected}")
    return data, rows


def load_measurements(path: str | Path | None = None) -> list[Measurement]:
    """Rows of a measurements file (default: the packaged copy of reality/measurements.json)."""
    path = Path(path) if path is not None else MEASUREMENTS_PATH
    data, rows = read_rows_file(path, "measurements", "a 'rows' list of measurements")
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
    source_inconsistent: str = ""   # why the source's own figures disagree (cases.toml), or ""


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
                **{k: cfg[k] for k in ("fabric", "zero_stage", "overlap", "precision", "efficiency", "attention",
                                       "sequence_parallel", "loss_kernel") if k in cfg}}
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
    if row.setup:                       # a published run with its full setup (calibration.runs)
        from .runs import plan_setup_row
        return plan_setup_row(row)
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
                                f"key of the row with a known convention{did_you_mean(key, row.measured)} "
                                f"(known: {', '.join(k for k in METRICS if k in row.measured) or 'none'})")
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
                # prefill of the whole batch in packs of m = min(b·p_in, PACK_TOKENS) tokens (attention
                # per pack, not over one b·p_in-token prompt); the scenario's ITL is already the mean
                # decode step (KV at prompt + output/2)
                m = int(min(b * p_in, PACK_TOKENS))
                evals.append(("serving", {**settings, "batch": 1, "prompt_tokens": m, "output_tokens": 1}))
                coef = b * out / gpus
                den = (((len(evals) - 1, "ttft_s"), b * p_in / m), ((e, "itl_s"), out))
            targets.append(Target(row.id, row.category, metric + (f" [{label}]" if label else ""), measured,
                                  coef, num, den, bool(spec.get("fit", False)) and not label,
                                  "" if label else group, notes, str(spec.get("source_inconsistent", ""))))
    for kind, table in cfg.get("entries", {}).items():   # shared additions (small; always included)
        entries.setdefault(kind, {}).update(table)
    return RowPlan(row.id, entries, tuple(evals), tuple(targets))


def _values(scenario: str, settings: dict, catalog, where: str) -> dict:
    """Schema parameters (SI floats / int codes) of one evaluation, validated by space.load_space."""
    from ..space.spec import load_space
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
    return batch.coef * num / floor_pos(den, 1e-30)


def _evaluate_jit(eff: Efficiency, batch: Batch):
    """(predicted figure [rows], structural g, diagnostics), compiled with ``_compile.jit_options()``."""
    return _evaluate_compiled()(eff, batch)


@functools.cache
def _evaluate_compiled():
    return jax.jit(_evaluate_program, **jit_options())


def _evaluate_program(eff: Efficiency, batch: Batch):
    parts, g, diag = [], {}, {}
    for sc in ("training", "serving"):
        if sc in batch.params:
            out, cons = SCENARIO_FNS[sc](batch.params[sc], batch.tables, eff)
            parts.append(jnp.stack([getattr(out, f) for f in FIELDS[sc]], axis=-1).ravel())
            g[sc] = jnp.stack(cons, -1)
            diag[sc] = (out.memory_per_accelerator_bytes, out.bottleneck)
    parts.append(jnp.ones((1,), batch.coef.dtype))
    q = jnp.concatenate([x.astype(batch.coef.dtype) for x in parts])
    return _combine(q, batch), g, diag


def _eff_arrays(eff: Efficiency, dtype) -> Efficiency:
    """eff with every field a 0-d array of `dtype`: one compiled program for defaults (Python
    floats), fitted values and traced folds alike (a Python float would be another jit key)."""
    return Efficiency(*(jnp.asarray(x, dtype) for x in eff))


def _evaluate(eff: Efficiency, batch: Batch):
    """(predictions [n_targets], {scenario: constraint margins [n_eval, n_constraints]},
    {scenario: (memory per accelerator [n_eval], bottleneck code [n_eval])}): one jitted call,
    one scenario call per scenario."""
    return _evaluate_jit(_eff_arrays(eff, batch.coef.dtype), batch)


def predict(eff: Efficiency, batch: Batch):
    """Predicted figure of every target [n_targets] (one jitted call, one scenario call per scenario)."""
    return _evaluate(eff, batch)[0]


@functools.lru_cache(maxsize=4)
def _default_plan(dtype_name: str) -> Plan:
    return build(dtype=jnp.dtype(dtype_name))


def _plan(rows, catalog) -> Plan:   # the packaged rows on the packaged catalog are built once
    return _default_plan(jnp.dtype(jnp.result_type(float)).name) if rows is None and catalog is None \
        else build(rows, catalog)
