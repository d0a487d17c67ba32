"""Results for people: readable text tables, the full-stack audit, JSON, and `evaluate`.

Inside the package every number is a plain SI float in a column whose name
carries the unit (``time_to_train_s``, ``tco_usd``, ``carbon_kg``).  This module
is where they become what a person reads: days, $M, t CO2e, ms, GB, TB/s
(conversions through ``mlsys_opt.units.convert``, so pint stays at the edge),
with short headers and aligned columns.  Machine-readable output (``--json``,
CSV, Parquet) keeps the SI columns untouched.

- :func:`format_table` / :func:`human_frame`: any result DataFrame -> text.
- :func:`front_columns`: which columns a space's front shows by default.
- :func:`audit` / :func:`format_audit`: seed 003's full-stack summary table
  (domain, wall, key metric, binding or not) for one evaluated configuration.
- :func:`evaluate`: one configuration (or a small grid) of a scenario or a
  space -> every output, constraint margin and feasibility, as pandas.
- :func:`dumps`: JSON of frames, numpy scalars and dicts (NaN -> null).
"""
from __future__ import annotations

import itertools
import json
import math
import shutil
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from . import schema
from .errors import MlsysOptError, SpecError

# --------------------------------------------------------------------------- column display


class Column(NamedTuple):
    """How one result column is shown: header, `units.convert` dimension and unit (or a
    plain factor when `dimension` is None), and a format string."""
    header: str
    dimension: str | None = None
    unit: str | float | None = None
    fmt: str = "{:.4g}"


_PCT = (None, 100.0, "{:.1f}")
COLUMNS: dict[str, Column] = {
    # parameters / axes
    "hardware": Column("hardware"), "model": Column("model"), "region": Column("region"),
    "fabric": Column("fabric"), "precision": Column("prec"), "pricing": Column("pricing"),
    "n_accelerators": Column("N", fmt="{:,.0f}"), "tp": Column("tp", fmt="{:.0f}"),
    "pp": Column("pp", fmt="{:.0f}"), "ep": Column("ep", fmt="{:.0f}"),
    "microbatches": Column("micro", fmt="{:.0f}"), "virtual_stages": Column("V", fmt="{:.0f}"),
    "global_batch": Column("gbs", fmt="{:,.0f}"), "seq_len": Column("seq", fmt="{:,.0f}"),
    "zero_stage": Column("ZeRO", fmt="{:.0f}"), "recompute": Column("recompute"),
    "efficiency": Column("η", fmt="{:.2f}"), "overlap": Column("overlap", fmt="{:.2f}"),
    "batch": Column("batch", fmt="{:,.0f}"), "prompt_tokens": Column("prompt", fmt="{:,.0f}"),
    "output_tokens": Column("out tok", fmt="{:,.0f}"),
    "request_rate_per_s": Column("req/s", fmt="{:,.4g}"),
    "checkpoint_interval_s": Column("ckpt min", "time", "min", "{:.3g}"),
    "checkpoint_bw_bytes_per_s": Column("ckpt GB/s", "bandwidth", "GB/s", "{:.3g}"),
    "recovery_s": Column("recovery min", "time", "min", "{:.3g}"),
    "duration_s": Column("days", "time", "day", "{:,.0f}"),
    "n_tokens": Column("tokens", fmt="{:.3g}"),
    # training outputs
    "time_to_train_s": Column("days", "time", "day", "{:,.1f}"),
    "tco_usd": Column("$M", "usd", "MUSD", "{:,.2f}"),
    "carbon_kg": Column("t CO2e", "carbon", "tCO2e", "{:,.1f}"),
    "energy_j": Column("MWh", "energy", "MWh", "{:,.0f}"),
    "water_l": Column("water kL", "water", "kL", "{:,.0f}"),
    "step_time_s": Column("step s", "time", "s", "{:.3g}"),
    "mfu": Column("MFU %", *_PCT), "scaling_efficiency": Column("scaling %", *_PCT),
    "goodput": Column("goodput %", *_PCT), "bubble_frac": Column("bubble %", *_PCT),
    "memory_per_accelerator_bytes": Column("mem/dev GB", "bytes", "GB", "{:.1f}"),
    "dp": Column("dp", fmt="{:,.0f}"), "bottleneck": Column("bound"),
    # serving outputs
    "p99_latency_s": Column("p99 s", "time", "s", "{:.3g}"),
    "ttft_s": Column("TTFT ms", "time", "ms", "{:,.1f}"),
    "itl_s": Column("ITL ms", "time", "ms", "{:.2f}"),
    "cost_per_mtok_usd": Column("$/Mtok", "usd", "USD", "{:.3g}"),
    "carbon_per_mtok_kg": Column("g CO2e/Mtok", "carbon", "gCO2e", "{:.3g}"),
    "replicas": Column("replicas", fmt="{:,.0f}"),
    "throughput_tok_per_s": Column("tok/s", fmt="{:,.0f}"),
    "utilization": Column("util %", *_PCT),
    "kv_cache_bytes": Column("KV GB", "bytes", "GB", "{:.1f}"),
}
HIDDEN = ("time_to_train_days",)          # duplicates of an SI column shown in human units
# unit suffix -> (dimension, unit, format) for columns not listed above
_SUFFIX = (("_bytes_per_s", "bandwidth", "GB/s", "{:.3g}"), ("_bytes", "bytes", "GB", "{:.3g}"),
           ("_s", "time", "s", "{:.3g}"), ("_usd", "usd", "USD", "{:,.0f}"),
           ("_kg", "carbon", "kgCO2e", "{:.3g}"), ("_j", "energy", "kWh", "{:.3g}"))


def column(name: str) -> Column:
    """Display rule of a result column (known name, unit suffix, or the name itself)."""
    if name in COLUMNS:
        return COLUMNS[name]
    for suffix, dim, unit, fmt in _SUFFIX:
        if name.endswith(suffix):
            return Column(f"{name[: -len(suffix)]} {unit}", dim, unit, fmt)
    return Column(name)


def _factor(col: Column) -> float:
    if col.dimension is None:
        return float(col.unit) if col.unit is not None else 1.0
    from .units import convert
    return convert(1.0, col.dimension, str(col.unit))


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return fmt.format(float(value))
    return str(value)


def human_frame(df: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Strings in human units with short headers (see `COLUMNS`); `columns` picks and orders."""
    cols = [c for c in (columns if columns is not None else df.columns) if c not in HIDDEN]
    out = {}
    for name in cols:
        if name not in df:
            raise MlsysOptError(f"no column {name!r} in the result (columns: {', '.join(map(str, df.columns))})")
        col = column(str(name))
        series = df[name]
        if series.dtype.kind in "fiu" and series.dtype.kind != "b":
            f = _factor(col)
            values = [_fmt(v * f, col.fmt) for v in series.to_numpy(dtype=float)]
        else:
            values = [_fmt(v, col.fmt) for v in series.tolist()]
        header = col.header
        while header in out:                       # two columns with one header: keep both
            header += "'"
        out[header] = values
    return pd.DataFrame(out, index=df.index)


def format_table(df: pd.DataFrame, columns: Sequence[str] | None = None, *, max_rows: int | None = None,
                 width: int | None = None, human: bool = True, index: bool = False) -> str:
    """Aligned plain-text table of `df` (numbers right, text left).

    human: convert to display units (`human_frame`); else show values as they are.
    max_rows: show the first rows and say how many were left out.
    width: drop trailing columns that do not fit (and say which); None = no limit.
    index: prepend the index as a '#' column.
    """
    shown = df if max_rows is None else df.head(max_rows)
    text = human_frame(shown, columns) if human else shown.astype(str)
    if index:
        text.insert(0, "#", [str(i) for i in shown.index])
    headers = list(text.columns)
    rows = text.to_numpy(dtype=object).tolist()
    numeric = [all(_looks_numeric(r[j]) for r in rows) and rows != [] for j in range(len(headers))]
    widths = [max([len(str(h))] + [len(str(r[j])) for r in rows]) for j, h in enumerate(headers)]
    dropped = []
    if width is not None:
        total = 0
        for j, w in enumerate(widths):
            total += w + (2 if j else 0)
            if total > width and j > 0:
                dropped = headers[j:]
                headers, widths, numeric = headers[:j], widths[:j], numeric[:j]
                rows = [r[:j] for r in rows]
                break

    def line(cells):
        return "  ".join(str(c).rjust(w) if num else str(c).ljust(w)
                         for c, w, num in zip(cells, widths, numeric)).rstrip()

    lines = [line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
    if max_rows is not None and len(df) > max_rows:
        lines.append(f"... {len(df) - max_rows} more rows")
    if dropped:
        lines.append(f"(not shown for width: {', '.join(dropped)})")
    return "\n".join(lines)


def _looks_numeric(text: str) -> bool:
    t = str(text).replace(",", "").strip()
    if t in ("-", ""):
        return True
    try:
        float(t)
        return True
    except ValueError:
        return False


def terminal_width(default: int | None = None) -> int | None:
    """Columns of the terminal on stdout, or `default` when stdout is not a terminal."""
    import sys
    if not sys.stdout.isatty():
        return default
    return shutil.get_terminal_size((120, 24)).columns


def front_columns(space, df: pd.DataFrame) -> list[str]:
    """Default columns of a front table: axes that vary, objectives, then `report` outputs."""
    cols = axis_columns(space) + [name for name, _ in space.objectives]
    cols += [name for name in space.report if name not in cols]
    return [c for c in dict.fromkeys(cols) if c in df]


def describe_row(row: Mapping[str, Any], names: Sequence[str]) -> str:
    """'b200 ×16384, tp 8, pp 4, quebec, fp8, onprem' for the axis values of one row."""
    parts = []
    for name in names:
        if name not in row:
            continue
        value, col = row[name], column(name)
        if name == "n_accelerators":
            parts.append(f"×{int(value):,}")
        elif isinstance(value, (str, bool)) or not isinstance(value, (int, float, np.number)):
            parts.append(str(value))
        else:
            parts.append(f"{col.header} {_fmt(value * _factor(col), col.fmt)}")
    return ", ".join(parts)


_UNIT_WORDS = {"day": "days", "tCO2e": "t CO2e", "kgCO2e": "kg CO2e", "gCO2e": "g CO2e", "us": "µs"}


def value_text(name: str, value: Any, fmt: str | None = None) -> str:
    """'38.6 days', '$1.42M', '7.3 t CO2e', '32.6 %', '512' for a result column's SI value.

    fmt: a format for the number instead of the column's ("{:,.4g}" gives '30 days', '$20M')."""
    col = column(name)
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        return str(value)
    text = _fmt(float(value) * _factor(col), fmt or col.fmt)
    if col.dimension is None:
        return f"{text} %" if col.unit == 100.0 else text
    unit = str(col.unit)
    per = "/Mtok" if "_per_mtok" in name else ""
    if unit == "MUSD":
        return f"${text}M"
    if unit == "USD":
        return f"${text}{per}"
    return f"{text} {_UNIT_WORDS.get(unit, unit)}{per}"


def headline(row: Mapping[str, Any], names: Sequence[str]) -> str:
    """'6.9 days, $4.89M, 59.6 t CO2e' for the objective values of one row."""
    return ", ".join(value_text(n, row[n]) for n in names)


BEST_WORDS = {"time_to_train_s": "fastest", "tco_usd": "cheapest", "carbon_kg": "cleanest",
              "cost_per_mtok_usd": "cheapest", "carbon_per_mtok_kg": "cleanest", "p99_latency_s": "lowest P99"}


def best_rows(front: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> list[tuple[str, int]]:
    """[(label, index)] of the best row per objective ('fastest', 'cheapest', ...), ties broken by the
    other objectives in order."""
    out = []
    for name, sense in objectives:
        rest = [(o, s) for o, s in objectives if o != name]
        order = front.sort_values([name] + [o for o, _ in rest], kind="stable",
                                  ascending=[sense == "min"] + [s == "min" for _, s in rest])
        out.append((BEST_WORDS.get(name, f"best {name}"), order.index[0]))
    return out


def axis_columns(space) -> list[str]:
    """Result columns of the axes that vary (float axes carry their unit suffix)."""
    from .space import column_name
    return [column_name(space.scenario, a.name) for a in space.axes if len(a.labels) > 1]


# --------------------------------------------------------------------------- quantities and catalog entries

# name suffix -> (units.convert dimension or None, display unit, format); first match wins
_QUANTITY = (("_flop_per_s", "flop_rate", "TFLOP/s", "{:,.4g}"), ("_bytes_per_s", "bandwidth", "GB/s", "{:,.4g}"),
             ("_bytes", "bytes", "GB", "{:,.4g}"), ("_gco2e_per_kwh", None, "g CO2e/kWh", "{:,.4g}"),
             ("_usd_per_kwh", None, "$/kWh", "{:.4g}"), ("_l_per_kwh", None, "L/kWh", "{:.4g}"),
             ("_usd_per_hour", None, "$/h", "{:,.4g}"), ("mtbf_s", "time", "hour", "{:,.0f}"),
             ("latency_s", "time", "us", "{:.4g}"), ("_s", "time", "s", "{:.4g}"), ("_usd", None, "$", "{:,.0f}"),
             ("_w", None, "W", "{:,.4g}"), ("_kg", "carbon", "kgCO2e", "{:,.4g}"), ("_j", "energy", "kWh", "{:.4g}"),
             ("n_params", None, "params", "{:.4g}"), ("n_active_params", None, "params", "{:.4g}"),
             ("flop_per_sample", "flop", "GFLOP", "{:,.4g}"), ("ridge_flop_per_byte", None, "FLOP/B", "{:,.4g}"))


def quantity_text(name: str, value: Any) -> str:
    """'989 TFLOP/s', '3.35 TB/s'-style text of an SI value from its (dotted) name's unit suffix."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        return str(value)
    key = str(name).rsplit(".", 1)[-1]
    for suffix, dim, unit, fmt in _QUANTITY:
        if key.endswith(suffix):
            if dim is None:
                if unit.startswith("$"):            # $30,000 ; $3/h ; $0.05/kWh
                    return f"${fmt.format(float(value))}{unit[1:]}"
                return f"{fmt.format(float(value))} {unit}"
            if dim in ("bandwidth", "bytes", "time") and unit in ("GB/s", "GB", "s"):
                return _h(float(value), dim)
            return f"{fmt.format(convert_si(float(value), dim, unit))} {_SHOW_UNIT.get(unit, unit)}"
    return f"{float(value):.4g}"


def convert_si(value: float, dimension: str, unit: str) -> float:
    from .units import convert
    return convert(value, dimension, unit)


_CATALOG_COLUMNS = {
    "accelerators": ("name", "display_name", "peak_fp16_flop_per_s", "peak_fp8_flop_per_s", "mem_capacity_bytes",
                     "mem_bw_bytes_per_s", "tdp_w", "cloud_usd_per_hour", "ridge_flop_per_byte"),
    "models": ("name", "display_name", "kind", "n_params", "n_active_params", "n_layers", "hidden_dim",
               "context_len"),
    "fabrics": ("name", "display_name", "scope", "bw_bytes_per_s", "latency_s", "topology"),
    "regions": ("name", "display_name", "carbon_gco2e_per_kwh", "pue", "wue_l_per_kwh", "electricity_usd_per_kwh"),
}
_CATALOG_HEADERS = {"peak_fp16_flop_per_s": "fp16", "peak_fp8_flop_per_s": "fp8", "mem_capacity_bytes": "HBM",
                    "mem_bw_bytes_per_s": "HBM BW", "tdp_w": "TDP", "cloud_usd_per_hour": "cloud",
                    "ridge_flop_per_byte": "ridge", "n_params": "params", "n_active_params": "active",
                    "n_layers": "layers", "hidden_dim": "hidden", "context_len": "context",
                    "bw_bytes_per_s": "bandwidth", "latency_s": "latency", "carbon_gco2e_per_kwh": "carbon",
                    "wue_l_per_kwh": "WUE", "electricity_usd_per_kwh": "electricity", "display_name": "display name"}


def catalog_table(catalog, kind: str, *, width: int | None = None) -> str:
    """Key columns of one catalog kind in human units; '*' marks entries from user files."""
    frame = catalog.frames[kind]
    cols = [c for c in _CATALOG_COLUMNS[kind] if c in frame]
    out = {}
    for c in cols:
        if c in ("name", "display_name", "kind", "scope", "topology"):
            out[_CATALOG_HEADERS.get(c, c)] = [str(v) for v in frame[c]]
        elif c in ("n_layers", "hidden_dim", "context_len", "pue"):
            out[_CATALOG_HEADERS.get(c, c)] = [f"{float(v):,.4g}" for v in frame[c]]
        else:
            out[_CATALOG_HEADERS.get(c, c)] = [quantity_text(c, float(v)) if float(v) != 0 else "-"
                                               for v in frame[c]]
    df = pd.DataFrame(out)
    builtin = f"{kind}.toml"
    df["name"] = [n + ("*" if catalog.source_of(kind, n) != builtin else "") for n in frame["name"]]
    return format_table(df, human=False, width=width)


def entry_table(entry: pd.Series) -> str:
    """Every field of one catalog entry: field, value in human units, SI value; long texts below."""
    rows, notes = [], []
    for k, v in entry.items():
        if isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v))
        number = isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
        if not number and len(str(v)) > 48:
            notes.append(f"{k}: {v}")
            continue
        rows.append({"field": str(k), "value": quantity_text(str(k), v) if number else str(v),
                     "SI": f"{float(v):.6g}" if number else ""})
    text = format_table(pd.DataFrame(rows), human=False)
    return text + ("\n\n" + "\n".join(notes) if notes else "")


# --------------------------------------------------------------------------- JSON


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types: DataFrame -> list of records, Series -> dict, numpy -> Python, NaN/inf -> None."""
    if isinstance(obj, pd.DataFrame):
        return [to_jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, pd.Series):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def dumps(obj: Any, indent: int | None = 2) -> str:
    """JSON text of `obj` (see `to_jsonable`)."""
    return json.dumps(to_jsonable(obj), indent=indent, ensure_ascii=False)


# --------------------------------------------------------------------------- evaluate

DEFAULT_OBJECTIVES = {"training": ("time_to_train_s", "tco_usd", "carbon_kg"),
                      "serving": ("cost_per_mtok_usd", "carbon_per_mtok_kg", "p99_latency_s")}
MAX_GRID = 100_000
_EVAL_FNS: dict = {}


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _is_list(v: Any) -> bool:
    return isinstance(v, (list, tuple, np.ndarray, pd.Series))


def point_space(scenario: str, params: Mapping[str, Any], *, catalog=None, limits: Mapping[str, Any] | None = None):
    """A validated `Space` of the given parameters: scalars fixed, lists as axes.

    params: display values as in a spec ({"hardware": "h100_sxm", "n_tokens": "15e12 token",
    "tp": [4, 8]}).  limits: [constraints] keys ({"max_time": "30 day"}).
    """
    from .space import load_space
    if scenario not in schema.PARAMS:
        from .errors import suggest
        raise MlsysOptError(f"unknown scenario {scenario!r};{suggest(str(scenario), schema.SCENARIOS)} "
                            f"(allowed: {', '.join(schema.SCENARIOS)})")
    fixed, axes = {}, {}
    for k, v in params.items():
        if _is_list(v):
            axes[k] = [_plain(x) for x in v]
        else:
            fixed[k] = _plain(v)
    if not axes:      # a space needs one axis: a one-value axis of a parameter left at its default
        key = next((k for k, spec in schema.PARAMS[scenario].items() if k not in fixed and spec.default is not None),
                   next(iter(fixed), "hardware"))
        axes[key] = [fixed.pop(key)] if key in fixed else [schema.PARAMS[scenario][key].default]
    spec = {"name": f"{scenario}", "scenario": scenario, "fixed": fixed, "axes": axes,
            "constraints": dict(limits or {}),
            "objectives": {"minimize": list(DEFAULT_OBJECTIVES[scenario])}}
    try:
        return load_space(spec, catalog=catalog)
    except SpecError as exc:     # name the parameter, not the internal spec tables
        msg = str(exc)
        for table, word in (("fixed", ""), ("axes", ""), ("constraints", "limit ")):
            msg = msg.replace(f"<dict>: [{table}] ", word)
        raise SpecError(msg.replace("<dict>: ", "")) from None


def _eval_fn(space, dtype):
    """jit(evaluate_params) for the space's scenario, objectives and limits (cached)."""
    import jax
    import jax.numpy as jnp

    from .sweep import evaluate_params
    key = (space.scenario, space.objectives, tuple(sorted(space.limits.items())), jnp.dtype(dtype).name)
    if key not in _EVAL_FNS:
        _EVAL_FNS[key] = jax.jit(lambda p, tables, eff: evaluate_params(space, p, tables, eff))
    return _EVAL_FNS[key]


def _grid_digits(space, params: Mapping[str, Any]) -> np.ndarray:
    """Digits of every combination of the axis values given (lists) - all of an axis when not given."""
    choices = []
    for axis in space.axes:
        raw = params.get(axis.name)
        if raw is None:                   # not given: the axis's first value (sweep.configurations)
            choices.append([{}])
        else:
            choices.append([{axis.name: _plain(v)} for v in (raw if _is_list(raw) else [raw])])
    combos = list(itertools.product(*choices))
    if len(combos) > MAX_GRID:
        raise MlsysOptError(f"evaluate: {len(combos):,} configurations; at most {MAX_GRID:,} "
                            "(use mlsys_opt.sweep for whole spaces)")
    return np.stack([space.digits_for({k: v for part in c for k, v in part.items()}) for c in combos])


def evaluate_frame(target: Any = "training", params: Mapping[str, Any] | None = None, *, eff=None,
                   catalog=None, limits: Mapping[str, Any] | None = None, dtype=None):
    """(DataFrame, Space): every configuration of `params` evaluated (see :func:`evaluate`)."""
    import jax.numpy as jnp

    from .sensitivity import resolve_config
    from .space import Space, load_space
    from .sweep import add_human_columns, constraint_names, output_names

    params = dict(params or {})
    dtype = jnp.float32 if dtype is None else dtype
    if isinstance(target, str) and target in schema.PARAMS:
        space = point_space(target, params, catalog=catalog, limits=limits)
        n = math.prod(space.radices)
        if n > MAX_GRID:
            raise MlsysOptError(f"evaluate: {n:,} configurations; at most {MAX_GRID:,} (use mlsys_opt.sweep)")
        digits = np.stack(np.unravel_index(np.arange(n), space.radices), axis=-1).astype(np.int32)
        p = space.param_values(digits, dtype)
    else:
        space = target if isinstance(target, Space) else load_space(target, catalog=catalog)
        if limits:
            raise MlsysOptError("evaluate: limits= applies to a scenario name; a space has its own [constraints]")
        overrides = {k: v for k, v in params.items() if k not in space.axis_names}
        for k, v in overrides.items():
            if _is_list(v):
                raise MlsysOptError(f"evaluate: {k} is not an axis of {space.name}; give one value "
                                    f"(axes: {', '.join(space.axis_names)})")
        digits = _grid_digits(space, params)
        if overrides:
            parts = [resolve_config(space, {**_labels_of(space, d), **overrides}, dtype)[2] for d in digits]
            p = {k: jnp.concatenate([q[k] for q in parts]) for k in parts[0]}
        else:
            p = space.param_values(digits, dtype)
    from .efficiency import DEFAULT_EFFICIENCY
    tables = space.catalog.tables(dtype=dtype)
    ev = _eval_fn(space, dtype)(p, tables, DEFAULT_EFFICIENCY if eff is None else eff)
    df = _param_frame(space, p)
    for name in output_names(space):
        df[name] = np.asarray(getattr(ev.outputs, name), np.float64).reshape(-1)
    df = add_human_columns(df)
    G = np.asarray(ev.G, np.float64).reshape(len(df), -1)
    cnames = constraint_names(space)
    for j, name in enumerate(cnames):
        df["g_" + name.replace("limit:", "limit_")] = G[:, j]
    df["feasible"] = (G <= 0).all(axis=1) if G.shape[1] else True
    df["binding_constraint"] = [cnames[int(j)] for j in G.argmax(axis=1)] if G.shape[1] else ""
    return df, space


def _labels_of(space, digits) -> dict:
    return {a.name: a.labels[int(d)] for a, d in zip(space.axes, digits)}


def _param_frame(space, p: Mapping[str, Any]) -> pd.DataFrame:
    """Every scenario parameter in display form: names for catalog/choice, SI floats (unit-suffixed)."""
    from .space import column_name
    cols = {}
    for name, spec in schema.PARAMS[space.scenario].items():
        values = np.asarray(p[name]).reshape(-1)
        if spec.kind == "catalog":
            names = space.catalog.names(spec.catalog_kind)
            cols[name] = [names[int(v)] for v in values]
        elif spec.kind == "choice":
            cols[name] = [spec.choices[int(v)] for v in values]
        elif spec.kind == "int":
            cols[name] = np.rint(values.astype(np.float64)).astype(np.int64)
        else:
            cols[column_name(space.scenario, name)] = values.astype(np.float64)
    return pd.DataFrame(cols)


def evaluate(target: Any = "training", *, eff=None, catalog=None, limits: Mapping[str, Any] | None = None,
             dtype=None, **params):
    """Evaluate one configuration (or a small grid) and return every output.

    Args:
      target: a scenario name ("training", "serving"), a ``Space``, or a spec
        path / name / dict (``load_space``).
      **params: parameter values as in a spec file: catalog names, choices,
        numbers or unit strings, e.g. ``hardware="h100_sxm", model="llama3_70b",
        n_accelerators=512, tp=8, region="quebec", n_tokens="1.24e12 token"``.
        With a scenario name, every required parameter (model, n_tokens /
        request_rate) must be given; the rest take their schema defaults.
        With a space, axis parameters pick values on the axes and other
        parameters override the space's constants.  A list makes a grid.
      limits: with a scenario name, [constraints] keys such as ``max_time="30 day"``.
      eff: an ``Efficiency`` (e.g. a calibration); catalog: a ``Catalog`` with user entries.

    Returns:
      a pandas Series (one configuration) or DataFrame (a grid, one row per
      configuration): every parameter (SI, unit in the column name), every
      scenario output (``time_to_train_s``, ``tco_usd``, ``carbon_kg``, ...),
      ``time_to_train_days``, the constraint margins ``g_<name>`` (<= 0 is
      feasible), ``feasible`` and ``binding_constraint`` (the largest g).

    Example:
      >>> mlsys_opt.evaluate("training", model="llama3_70b", hardware="h100_sxm",
      ...                    n_accelerators=512, tp=8, region="quebec",
      ...                    n_tokens="1.24e12 token")["time_to_train_days"]
    """
    df, _ = evaluate_frame(target, params, eff=eff, catalog=catalog, limits=limits, dtype=dtype)
    grid = any(_is_list(v) for v in params.values())
    return df if grid or len(df) != 1 else df.iloc[0]


# --------------------------------------------------------------------------- audit
AUDIT_COLUMNS = ("domain", "wall", "metric", "status")
INGEST_BYTES_PER_TOKEN = 4.0      # int32 token ids read from storage (vocabularies > 65,536)
NEAR = 0.10                       # a limit within 10 % counts as binding


def _limit_status(g: float | None) -> str:
    """Status of a constraint margin g (<= 0 feasible, relative to its limit)."""
    if g is None or not math.isfinite(g):
        return "no limit set"
    if g > 1e-6:
        return f"VIOLATED (over by {100 * g:.0f} %)" if g < 10 else "VIOLATED"
    if g > -NEAR:
        return f"binding ({100 * -g:.0f} % headroom)"
    return f"not binding ({100 * -g:.0f} % headroom)"


def _g(row: Mapping[str, Any], name: str) -> float | None:
    key = "g_" + name.replace("limit:", "limit_")
    return float(row[key]) if key in row else None


def _worst(*gs: float | None) -> float | None:
    vals = [g for g in gs if g is not None]
    return max(vals) if vals else None


_LADDER = {"bandwidth": (("TB/s", 1e12), ("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3), ("B/s", 0.0)),
           "bytes": (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("B", 0.0)),
           "time": (("day", 2 * 86400.0), ("hour", 2 * 3600.0), ("min", 120.0), ("s", 1.0), ("ms", 1e-3),
                    ("us", 0.0))}
_SHOW_UNIT = {"hour": "h", "day": "days", "us": "µs", "tCO2e": "t CO2e"}


def _h(value: float, dimension: str, unit: str | None = None, fmt: str = "{:.3g}") -> str:
    """'3.35 TB/s': `value` (SI) in `unit`, or in the largest ladder unit it reaches when None."""
    from .units import convert
    if unit is None:
        unit = next(u for u, floor in _LADDER[dimension] if abs(float(value)) >= floor)
    return fmt.format(convert(float(value), dimension, unit)) + f" {_SHOW_UNIT.get(unit, unit)}"


def audit(row: Mapping[str, Any], space, *, sensitivity_binding=None) -> pd.DataFrame:
    """Seed 003's full-stack summary for one evaluated configuration.

    Args:
      row: one row of :func:`evaluate` (a Series or dict: parameters, outputs,
        ``g_<constraint>`` margins).
      space: the ``Space`` it was evaluated in (scenario, catalog, limits).
      sensitivity_binding: optional ``sensitivity.Binding`` of the first
        objective (wall 21 row).

    Returns:
      DataFrame with `AUDIT_COLUMNS`: domain, wall ("14 Communication"), the key
      metric in human units, and status ("binding", "not binding", "VIOLATED",
      "largest loss", ...).  Limits within 10 % count as binding.
    """
    rows = _audit_training(row, space) if space.scenario == "training" else _audit_serving(row, space)
    if sensitivity_binding is not None:
        b = sensitivity_binding
        at = next((i for i, r in enumerate(rows) if r[1].startswith("22")), len(rows))
        rows.insert(at, ("Analysis", "21 Sensitivity",
                         f"{b.output}: most sensitive to {b.parameter} (elasticity {b.elasticity:+.2f})",
                         f"binding input: {b.parameter}"))
    return pd.DataFrame(rows, columns=list(AUDIT_COLUMNS))


def _entries(row, space):
    cat = space.catalog
    return (cat.entry("accelerators", row["hardware"]), cat.entry("models", row["model"]),
            cat.entry("regions", row["region"]))


def _loss_status(name: str, factors: dict[str, float]) -> str:
    worst = min(factors, key=factors.get)
    loss = 100 * (1 - factors[name])
    return f"largest loss ({loss:.0f} %)" if name == worst else f"loss {loss:.0f} %"


def _audit_training(row, space) -> list[tuple]:
    from .walls import algorithm, analysis, data, fleet, ops
    from ._types import BOTTLENECKS, BYTES_PER_ELEMENT, PRECISIONS
    from .scenarios import OPTIMIZER_BYTES_PER_PARAM

    hw, model, region = _entries(row, space)
    n = float(row["n_accelerators"])
    step = float(row["step_time_s"])
    bound = str(row["bottleneck"])
    bpe = BYTES_PER_ELEMENT[PRECISIONS.index(row["precision"])]
    peak = float(hw[f"peak_{row['precision']}_flop_per_s"])
    mfu, scaling, good = float(row["mfu"]), float(row["scaling_efficiency"]), float(row["goodput"])
    kernel = mfu / max(scaling, 1e-12)
    factors = {"kernel": kernel, "scaling": scaling, "goodput": good}
    wall_of = {"compute": "1 Compute", "memory": "2 Memory (bandwidth)", "overhead": "3 Software (dispatch)"}
    out = [("Node", wall_of.get(bound, bound),
            f"per-device step {bound}-bound, {step:.3g} s/step on {hw['name']} "
            f"({_h(peak, 'flop_rate', 'TFLOP/s', '{:,.0f}')} {row['precision']})",
            f"binding at the node ({bound})" if bound in BOTTLENECKS else bound)]
    mem, cap = float(row["memory_per_accelerator_bytes"]), float(hw["mem_capacity_bytes"])
    out.append(("Node", "2 Memory (capacity)",
                f"{_h(mem, 'bytes', 'GB', '{:.1f}')} of {_h(cap, 'bytes', 'GB', '{:.0f}')} per device "
                f"({100 * mem / cap:.0f} %)", _limit_status(_g(row, "memory"))))
    out.append(("Node", "3 Software", f"MFU {100 * mfu:.1f} % (kernel efficiency {100 * kernel:.1f} % "
                f"at η = {float(row['efficiency']):.2f})", _loss_status("kernel", factors)))
    tokens_step = float(row["global_batch"]) * float(row["seq_len"])
    demand = tokens_step * INGEST_BYTES_PER_TOKEN / max(step, 1e-12)
    supply = float(row["checkpoint_bw_bytes_per_s"])
    ing = data.ingestion(demand, supply)
    rho = float(ing.utilization)
    out.append(("Data", "8 Ingestion",
                f"demand {_h(demand, 'bandwidth')} of {_h(supply, 'bandwidth')} "
                f"storage ({100 * rho:.2g} %)",
                "VIOLATED (GPUs stall)" if rho > 1 else ("binding" if rho > 1 - NEAR else "not binding")))
    n_params = float(model["n_params"])
    tpp = float(algorithm.tokens_per_param(float(row["n_tokens"]), n_params))
    flop = float(algorithm.training_flop(float(model["n_active_params"]), float(row["n_tokens"])))
    out.append(("Algorithm", "11 Complexity",
                f"{tpp:,.1f} tokens/param (Chinchilla ≈ 20), 6PD = {flop:.3g} FLOP",
                "not a limit: " + ("over-trained" if tpp > 20 else "under-trained")
                + " vs compute-optimal"))
    out.append(("Fleet", "14 Communication",
                f"scaling efficiency {100 * scaling:.1f} %, bubble {100 * float(row['bubble_frac']):.1f} %, "
                f"dp {int(row['dp']):,} × tp {int(row['tp'])} × pp {int(row['pp'])}",
                _loss_status("scaling", factors)))
    time_s = float(row["time_to_train_s"])
    mtbf = float(fleet.cluster_mtbf_s(float(hw["mtbf_s"]), n))
    fails = float(fleet.expected_failures(time_s, mtbf))
    out.append(("Fleet", "15 Fragility", f"cluster MTBF {_h(mtbf, 'time', 'hour', '{:,.0f}')}, "
                f"~{fails:,.1f} failures during the run", "cost counted in goodput"))
    ckpt_s = n_params * (bpe + OPTIMIZER_BYTES_PER_PARAM) / supply
    interval = float(row["checkpoint_interval_s"])
    tau = interval if interval > 0 else float(ops.young_daly_interval_s(ckpt_s, mtbf))
    out.append(("Ops", "19 Checkpoint", f"goodput {100 * good:.1f} % (write {_h(ckpt_s, 'time')} "
                f"every {_h(tau, 'time')}{'' if interval > 0 else ', Young-Daly'})",
                _loss_status("goodput", factors)))
    out.append(("Ops", "17 Capital", f"TCO ${float(row['tco_usd']) / 1e6:,.2f}M ({row['pricing']})",
                _limit_status(_g(row, "limit:tco_usd"))))
    out.append(("Ops", "18 Sustainability",
                f"{_h(float(row['energy_j']), 'energy', 'MWh', '{:,.0f}')}, "
                f"{_h(float(row['carbon_kg']), 'carbon', 'tCO2e', '{:,.1f}')}, "
                f"{_h(float(row['water_l']), 'water', 'kL', '{:,.0f}')} water ({region['name']}: "
                f"{float(region['carbon_gco2e_per_kwh']):g} g/kWh, PUE {float(region['pue']):g})",
                _limit_status(_worst(_g(row, "limit:carbon_kg"), _g(row, "limit:energy_j"),
                                     _g(row, "limit:water_l")))))
    out.append(("Analysis", "Iron law",
                f"{time_s / 86400:,.1f} days = 6PD / (N·peak × {100 * kernel:.0f} % kernel × "
                f"{100 * scaling:.0f} % scaling × {100 * good:.0f} % goodput)",
                _limit_status(_g(row, "limit:time_to_train_s"))))
    if "time_to_train_s" in space.limits:
        target = space.limits["time_to_train_s"][1]
        need = float(analysis.required_devices(flop, target, peak, mfu, 1.0, good))
        out.append(("Analysis", "22 Synthesis", f"N ≥ {math.ceil(need):,} devices for "
                    f"{target / 86400:g} days at this MFU and goodput (now {int(n):,})",
                    "met" if need <= n else "NOT met"))
    return out


def _audit_serving(row, space) -> list[tuple]:
    from .walls import node

    hw, model, region = _entries(row, space)
    ttft, itl, p99 = float(row["ttft_s"]), float(row["itl_s"]), float(row["p99_latency_s"])
    bound = str(row["bottleneck"])
    out = [("Node", "4 Serving", f"TTFT {_h(ttft, 'time', 'ms', '{:,.1f}')}, ITL {_h(itl, 'time', 'ms', '{:.2f}')}"
            f" at batch {int(row['batch'])}", _limit_status(_worst(_g(row, "limit:ttft_s"), _g(row, "limit:itl_s"))))]
    wall = {"compute": "1 Compute", "memory": "2 Memory (bandwidth)", "overhead": "3 Software (dispatch)"}
    out.append(("Node", wall.get(bound, bound), f"decode step {bound}-bound on {hw['name']} "
                f"({_h(float(hw['mem_bw_bytes_per_s']), 'bandwidth', 'TB/s', '{:.3g}')} HBM)",
                f"binding at the node ({bound})"))
    mem, cap = float(row["memory_per_accelerator_bytes"]), float(hw["mem_capacity_bytes"])
    out.append(("Node", "2 Memory (capacity)", f"{_h(mem, 'bytes', 'GB', '{:.1f}')} of "
                f"{_h(cap, 'bytes', 'GB', '{:.0f}')} per device ({100 * mem / cap:.0f} %)",
                _limit_status(_g(row, "memory"))))
    replica = int(row["tp"]) * int(row["pp"])
    from ._types import BYTES_PER_ELEMENT, PRECISIONS
    w = float(model["n_params"]) * BYTES_PER_ELEMENT[PRECISIONS.index(row["precision"])]
    kv = float(row["kv_cache_bytes"])
    per_seq = kv / max(int(row["batch"]), 1)
    most = float(node.max_batch(cap * replica, w, per_seq))
    out.append(("Node", "5 Batching", f"KV cache {_h(kv, 'bytes')} per replica "
                f"({_h(per_seq, 'bytes')}/sequence); at most {most:,.0f} sequences fit",
                "VIOLATED" if int(row["batch"]) > most else
                ("binding" if int(row["batch"]) > (1 - NEAR) * most else "not binding")))
    out.append(("Node", "7 Tail latency", f"p99 {_h(p99, 'time', 's', '{:.3g}')} at utilisation "
                f"{100 * float(row['utilization']):.0f} % ({int(row['replicas']):,} replicas × {replica} devices)",
                _limit_status(_worst(_g(row, "limit:p99_latency_s"), _g(row, "queue_stable")))))
    out.append(("Ops", "17 Capital", f"TCO ${float(row['tco_usd']) / 1e6:,.3g}M over "
                f"{float(row['duration_s']) / 86400:,.0f} days, ${float(row['cost_per_mtok_usd']):.3g}/Mtok "
                f"({row['pricing']})", _limit_status(_worst(_g(row, "limit:tco_usd"),
                                                             _g(row, "limit:cost_per_mtok_usd")))))
    out.append(("Ops", "18 Sustainability", f"{_h(float(row['carbon_kg']), 'carbon', 'tCO2e', '{:,.1f}')} "
                f"({float(row['carbon_per_mtok_kg']):.3g} kg/Mtok; {region['name']}: "
                f"{float(region['carbon_gco2e_per_kwh']):g} g/kWh)", _limit_status(_g(row, "limit:carbon_kg"))))
    return out


def format_audit(df: pd.DataFrame) -> str:
    """The audit table as aligned text (Domain | Wall | Key metric | Status)."""
    shown = df.rename(columns={"domain": "Domain", "wall": "Wall", "metric": "Key metric", "status": "Status"})
    return format_table(shown, human=False)


__all__ = ["Column", "COLUMNS", "column", "human_frame", "format_table", "front_columns", "describe_row",
           "headline", "best_rows", "axis_columns", "BEST_WORDS", "to_jsonable", "dumps", "evaluate", "evaluate_frame", "point_space", "audit",
           "format_audit", "AUDIT_COLUMNS", "terminal_width", "value_text", "quantity_text", "catalog_table", "entry_table"]
