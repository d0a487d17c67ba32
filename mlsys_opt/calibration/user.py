"""A user's measured runs (CSV or TOML) -> Measurement rows: `mlsys-opt validate|calibrate --measurements`.

Schema (one row per measured run; CSV header or TOML ``[[runs]]`` tables)::

    id            optional label (default "row<N>")
    scenario      "training" | "serving" (default: serving when a serving column is present)
    source        optional: who measured it (default: the file name; one source, one organisation)
    model         a catalog model (slug, display name or alias), or a shape:
                  model_params_B, model_layers, model_hidden, model_heads, model_kv_heads,
                  model_ffn_hidden, model_vocab [, model_head_dim, model_experts, model_top_k,
                  model_active_params_B]  (TOML: a [runs.model] table with these keys unprefixed)
    setup         any key of calibration.setup.TRAINING_MAP / SERVING_MAP (hardware,
                  n_accelerators, tp, cp, pp, dp, ep, sharding, micro_batch_size, global_batch,
                  seq_len, precision, attention, recompute, fabric, n_tokens | input_len,
                  output_len, batch_size, request_rate, kv_precision, chunk_size, disaggregated ...)
                  or any scenario parameter by its schema name (zero_stage, overlap, region ...)
    conventions   optional, for mfu / tflops_per_gpu: attention_flop_count (causal_half | full_square) and
                  embedding_flop_count (counted | excluded: Megatron-LM / NeMo / Megatron-Bridge count the
                  vocabulary matrix once, as the logit GEMM); the predicted figure is counted the same way
    measured      one or more of MEASURED (SI: seconds, fractions, tokens/s, days, MWh; memory_gib, the peak
                  memory per accelerator in GiB as torch.cuda.max_memory_allocated reports it, is compared with
                  the scenario's memory_per_accelerator_bytes by `heldout.memory_check`, not fitted)

Every measured quantity of a row is compared (`runs` conventions).  The setup of every row goes
through the table converter (`point.table_convert.convert_table`, the one way rows become
scenario inputs, issue 17) before anything is evaluated: a cell it cannot read, an unknown
column, a row with no measured quantity or a non-positive one is a one-line MlsysOptError naming
the file, the row (1-based, as a spreadsheet counts data rows) and the column.
"""
from __future__ import annotations

import math
from pathlib import Path

try:                       # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pandas as pd

from ..errors import MlsysOptError, did_you_mean
from ..scenarios import schema
from . import setup as S
from .rows import Measurement
from .runs import ATTENTION_FLOP_COUNTS, EMBEDDING_FLOP_COUNTS

MEASURED = ("step_time_s", "mfu", "tflops_per_gpu", "tokens_per_s_per_gpu", "tokens_per_s", "time_to_train_days",
            "energy_mwh", "ttft_s", "itl_s", "output_tokens_per_s", "memory_gib")
SERVING_ONLY = ("ttft_s", "itl_s", "output_tokens_per_s", "input_len", "output_len", "batch_size", "request_rate",
                "kv_precision", "prompt_tokens", "output_tokens", "chunk_size")
MODEL_KEYS = ("params_B", "layers", "hidden", "heads", "kv_heads", "ffn_hidden", "vocab", "head_dim", "experts",
              "top_k", "active_params_B", "name")
META = ("id", "scenario", "source", "model", "notes")
# how the mfu / tflops_per_gpu of a row were counted (calibration.runs.flop_count_ratio): Megatron-LM's and NeMo's
# logs count the vocabulary matrix once ("excluded") and, before 2025-08, the full s² attention square
CONVENTIONS = {"attention_flop_count": ATTENTION_FLOP_COUNTS, "embedding_flop_count": EMBEDDING_FLOP_COUNTS}


def _blank(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _records(path: Path) -> list[dict]:
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            runs = data.get("runs", data.get("rows"))
            if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
                raise MlsysOptError(f"{path}: expected [[runs]] tables (one per measured run)")
            return [dict(r) for r in runs]
        if path.suffix.lower() in (".csv", ".tsv", ".txt"):
            df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", skipinitialspace=True,
                             comment="#")
            df.columns = [str(c).strip() for c in df.columns]
            return [{k: (None if _blank(v) else v) for k, v in r.items()} for r in df.to_dict("records")]
    except OSError as exc:
        raise MlsysOptError(f"{path}: cannot read measurements ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise MlsysOptError(f"{path}: not valid TOML: {exc}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise MlsysOptError(f"{path}: not a readable CSV: {str(exc).splitlines()[0]}") from None
    raise MlsysOptError(f"{path}: measurements are read from .csv or .toml (got {path.suffix or 'no suffix'!r})")


def _number(v, where: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise MlsysOptError(f"{where}: {v!r} is not a number") from None
    if not math.isfinite(x) or x <= 0.0:
        raise MlsysOptError(f"{where}: {v!r} must be a finite number > 0")
    return x


def _scenario(rec: dict, where: str) -> str:
    sc = rec.get("scenario")
    if sc is None:
        return "serving" if any(rec.get(k) is not None for k in SERVING_ONLY) else "training"
    if str(sc) not in schema.SCENARIOS:
        raise MlsysOptError(f"{where}, column scenario: {sc!r}{did_you_mean(str(sc), schema.SCENARIOS)} "
                            f"(allowed: {', '.join(schema.SCENARIOS)})")
    return str(sc)


def read_measurements(path: str | Path, catalog=None) -> list[Measurement]:
    """The rows of a user's measurements file (module docstring), checked cell by cell."""
    path = Path(path)
    recs = _records(path)
    if not recs:
        raise MlsysOptError(f"{path}: no measured runs in the file")
    rows, settings_by_scenario, entries = [], {"training": [], "serving": []}, {}
    for i, rec in enumerate(recs, start=1):
        where = f"{path}: row {i}"
        sc = _scenario(rec, where)
        known = set(S.MAPS[sc]) | set(schema.PARAMS[sc]) | set(MEASURED) | set(META) | set(CONVENTIONS) | {"dp"} \
            | {f"model_{k}" for k in MODEL_KEYS}
        for col, v in rec.items():
            if col not in known and v is not None:
                raise MlsysOptError(f"{where}, column {col}: not a setup, parameter or measured column"
                                    f"{did_you_mean(col, sorted(known))} (measured: {', '.join(MEASURED)})")
        for col, allowed in CONVENTIONS.items():
            if rec.get(col) is not None and str(rec[col]) not in allowed:
                raise MlsysOptError(f"{where}, column {col}: {rec[col]!r} (allowed: {', '.join(allowed)})")
        measured = {k: _number(rec[k], f"{where}, column {k}") for k in MEASURED if rec.get(k) is not None}
        if not measured:
            raise MlsysOptError(f"{where}: no measured quantity (give one or more of {', '.join(MEASURED)})")
        if "mfu" in measured and measured["mfu"] > 1.0:
            raise MlsysOptError(f"{where}, column mfu: {measured['mfu']!r} is a fraction (0 < mfu <= 1)")
        model = rec.get("model")
        shape = {k: rec[f"model_{k}"] for k in MODEL_KEYS if rec.get(f"model_{k}") is not None}
        if isinstance(model, dict):
            shape, model = dict(model), None
        if model is None and not shape:
            raise MlsysOptError(f"{where}, column model: missing (a catalog model or model_* shape columns)")
        setup = {k: v for k, v in rec.items() if k not in META and k not in MEASURED and not k.startswith("model_")
                 and v is not None}
        setup["model"] = shape if shape else str(model)
        if sc == "training":
            setup.setdefault("dp", _dp(setup, where))
        try:
            mapped = S.to_settings(sc, {k: v for k, v in setup.items() if k != "model"}, where)
        except MlsysOptError as exc:      # "<where>.<key>: ..." -> "<where>, column <key>: ..."
            raise MlsysOptError(str(exc).replace(f"{where}.", f"{where}, column ", 1)) from None
        direct = {k: v for k, v in setup.items() if k in schema.PARAMS[sc] and k not in S.MAPS[sc] and k != "model"}
        name, entry = S.model_entry(setup["model"], int(setup.get("seq_len") or setup.get("input_len") or 4096),
                                    f"{path} row {i}", f"{where}, column model")
        if entry is not None:
            entries[name] = entry
        settings = {**mapped.settings, **direct, "model": name}
        if sc == "training" and "n_tokens" not in settings:    # as calibration.runs plans the row
            settings["n_tokens"] = 1000.0 * float(settings.get("global_batch", 1)) * float(settings.get("seq_len", 1))
        settings.setdefault("request_rate", "0.1 /s") if sc == "serving" else None
        settings_by_scenario[sc].append((i, settings))
        rid = str(rec.get("id") or f"row{i}")
        src = str(rec.get("source") or path.name)
        rows.append(Measurement(rid, "training_throughput" if sc == "training" else "inference_serving", src, {}, {},
                                {}, "", measured, str(rec.get("notes") or ""), f"{path} row {i}",
                                setup={**setup, **({"mode": "offline" if not setup.get("request_rate") else "server"}
                                                   if sc == "serving" else {})},
                                source_key=src, org=src, compare_all=True))
    if entries:
        from ..catalog import load_catalog
        catalog = (load_catalog() if catalog is None else catalog).with_entries("models", entries)
    for sc, items in settings_by_scenario.items():
        if items:
            check_settings(sc, items, path, catalog)
    return rows


def _dp(setup: dict, where: str) -> int:
    try:
        n = int(setup.get("n_accelerators", 1))
        group = int(setup.get("tp", 1) or 1) * int(setup.get("cp", 1) or 1) * int(setup.get("pp", 1) or 1)
    except (TypeError, ValueError):
        return 1
    return max(1, n // max(group, 1))


def check_settings(scenario: str, items: list, path, catalog=None) -> None:
    """Every row's settings through the table converter (point.table_convert.convert_table): the
    first unreadable cell -> MlsysOptError '<file>: row <i>, column <c>: <value>: <why>'."""
    from ..point.table_convert import convert_table
    frame = pd.DataFrame([s for _, s in items]).astype(object)
    numbers = [i for i, _ in items]
    try:
        _, bad = convert_table(frame.where(frame.notna(), None), scenario, catalog)
    except MlsysOptError as exc:
        raise MlsysOptError(f"{path}: {exc}") from None
    if bad:
        b = bad[0]
        more = f" (and {len(bad) - 1} more cells)" if len(bad) > 1 else ""
        raise MlsysOptError(f"{path}: row {numbers[b.row]}, column {b.column}: {b.value!r}: {b.reason}{more}")
