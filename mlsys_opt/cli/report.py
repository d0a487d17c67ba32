"""Results for people: readable text tables, quantities in human units, catalog tables, JSON.

Inside the package every number is a plain SI float in a column whose name
carries the unit (``time_to_train_s``, ``tco_usd``, ``carbon_kg``).  This module
is where they become what a person reads: days, $M, t CO2e, ms, GB, TB/s
(conversions through ``mlsys_opt.units.convert``, so pint stays at the edge),
with short headers and aligned columns.  Machine-readable output (``--json``,
CSV, Parquet) keeps the SI columns untouched.

- :func:`format_table` / :func:`human_frame`: any result DataFrame -> text.
- :func:`front_columns`: which columns a space's front shows by default.
- :func:`quantity_text` / :func:`catalog_table` / :func:`entry_table`: catalog values and entries.
- :func:`dumps`: JSON of frames, numpy scalars and dicts (NaN -> null).

(One configuration evaluated: ``mlsys_opt.point.evaluation``; seed 003's full-stack
audit table: ``mlsys_opt.cli.audit``, which imports this module, not the reverse.)
"""
from __future__ import annotations

import json
import math
import shutil
import sys
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Sequence

import numpy as np

from ..errors import MlsysOptError

if TYPE_CHECKING:
    import pandas as pd

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
    "upfront_capex_usd": Column("buy $M", "usd", "MUSD", "{:,.2f}"),     # fleet purchase, 0 in the cloud
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
    return display_factor(col.dimension, str(col.unit))


# SI -> display unit factors (what ``units.convert(1.0, dimension, unit)`` gives; tests/test_cli_report.py
# checks each against pint): a table or a front is shown without importing pint
_DISPLAY_FACTORS = {
    **{("bandwidth", u): f for u, f in (("TB/s", 1e-12), ("GB/s", 1e-09), ("MB/s", 1e-06), ("kB/s", 0.001),
                                        ("B/s", 1.0))},
    **{("bytes", u): f for u, f in (("TB", 1e-12), ("GB", 1e-09), ("MB", 1e-06), ("kB", 0.001), ("B", 1.0))},
    **{("time", u): f for u, f in (("day", 1.1574074074074073e-05), ("hour", 0.0002777777777777778),
                                   ("min", 0.016666666666666666), ("s", 1.0), ("ms", 1000.0), ("us", 1000000.0))},
    ("flop_rate", "TFLOP/s"): 1e-12, ("flop", "GFLOP"): 1e-09, ("carbon", "kgCO2e"): 1.0,
    ("carbon", "tCO2e"): 0.001, ("carbon", "gCO2e"): 1000.0, ("energy", "kWh"): 2.7777777777777776e-07,
    ("energy", "MWh"): 2.7777777777777777e-10, ("usd", "MUSD"): 1e-06, ("usd", "USD"): 1.0, ("water", "kL"): 0.001,
}


def display_factor(dimension: str, unit: str) -> float:
    """The factor from the SI unit of `dimension` to `unit` (known pairs from a table, others through pint)."""
    f = _DISPLAY_FACTORS.get((dimension, unit))
    if f is None:
        from ..units import convert
        f = convert(1.0, dimension, unit)
    return f


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
    import pandas as pd
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
    lines = format_rows(list(text.columns), text.to_numpy(dtype=object).tolist(), width=width)
    if max_rows is not None and len(df) > max_rows:      # before the width note, as it always was
        at = len(lines) - 1 if lines[-1].startswith("(not shown for width") else len(lines)
        lines.insert(at, f"... {len(df) - max_rows} more rows")
    return "\n".join(lines)


def format_rows(headers: list, rows: list[list], *, width: int | None = None) -> list[str]:
    """The lines of an aligned plain-text table of string cells (numbers right, text left; no pandas).

    width: drop trailing columns that do not fit (the last line then says which); None = no limit.
    """
    rows = [[str(c) for c in r] for r in rows]
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
    if dropped:
        lines.append(f"(not shown for width: {', '.join(dropped)})")
    return lines


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


BEST_WORDS = {"time_to_train_s": "fastest", "tco_usd": "cheapest", "upfront_capex_usd": "cheapest to buy",
              "carbon_kg": "cleanest",
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
    from ..space.spec import column_name
    return [column_name(space.scenario, a.name) for a in space.axes if len(a.labels) > 1]


# --------------------------------------------------------------------------- quantities and catalog entries

_LADDER = {"bandwidth": (("TB/s", 1e12), ("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3), ("B/s", 0.0)),
           "bytes": (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("B", 0.0)),
           "time": (("day", 2 * 86400.0), ("hour", 2 * 3600.0), ("min", 120.0), ("s", 1.0), ("ms", 1e-3),
                    ("us", 0.0))}
_SHOW_UNIT = {"hour": "h", "day": "days", "us": "µs", "tCO2e": "t CO2e"}


def _h(value: float, dimension: str, unit: str | None = None, fmt: str = "{:.3g}") -> str:
    """'3.35 TB/s': `value` (SI) in `unit`, or in the largest ladder unit it reaches when None."""
    if unit is None:
        unit = next(u for u, floor in _LADDER[dimension] if abs(float(value)) >= floor)
    return fmt.format(convert_si(float(value), dimension, unit)) + f" {_SHOW_UNIT.get(unit, unit)}"


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
    """`value` (SI) in `unit` for display: ``value * display_factor(dimension, unit)``."""
    return value * display_factor(dimension, unit)


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
    """Key columns of one catalog kind in human units; '*' marks entries from user files (no pandas, no pint)."""
    entries = catalog.rows(kind)
    cols = [c for c in _CATALOG_COLUMNS[kind] if not entries or c in entries[0]]
    out = {}
    for c in cols:
        values = [r[c] for r in entries]
        if c in ("name", "display_name", "kind", "scope", "topology"):
            out[_CATALOG_HEADERS.get(c, c)] = [str(v) for v in values]
        elif c in ("n_layers", "hidden_dim", "context_len", "pue"):
            out[_CATALOG_HEADERS.get(c, c)] = [f"{float(v):,.4g}" for v in values]
        else:
            out[_CATALOG_HEADERS.get(c, c)] = [quantity_text(c, float(v)) if float(v) != 0 else "-"
                                               for v in values]
    builtin = f"{kind}.toml"
    out["name"] = [r["name"] + ("*" if catalog.source_of(kind, r["name"]) != builtin else "") for r in entries]
    return "\n".join(format_rows(list(out), [list(r) for r in zip(*out.values())], width=width))


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
    text = "\n".join(format_rows(["field", "value", "SI"], [[r["field"], r["value"], r["SI"]] for r in rows]))
    return text + ("\n\n" + "\n".join(notes) if notes else "")


# --------------------------------------------------------------------------- JSON


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types: DataFrame -> list of records, Series -> dict, numpy -> Python, NaN/inf -> None."""
    pd = sys.modules.get("pandas")          # (not imported: obj is no DataFrame)
    if pd is not None and isinstance(obj, pd.DataFrame):
        return [to_jsonable(r) for r in obj.to_dict(orient="records")]
    if pd is not None and isinstance(obj, pd.Series):
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


__all__ = ["Column", "COLUMNS", "column", "human_frame", "format_table", "front_columns", "describe_row",
           "headline", "best_rows", "axis_columns", "BEST_WORDS", "to_jsonable", "dumps",
           "terminal_width", "value_text", "quantity_text", "catalog_table", "entry_table"]
