"""A user's table of configurations -> scenario inputs (SI floats, catalog/choice codes), vectorized.

The one way to turn rows into scenario inputs (issue 17): ``mlsys_opt.evaluate_table``
streams tables through it, and the measurement validation reads its setups with it.

Columns and values (one row per configuration):

- a column named after a scenario parameter (``schema.PARAMS[scenario]``) holds
  that parameter: catalog names (slug, display name or alias, any case:
  ``"H100"`` -> h100_sxm), choices (precision aliases: ``"bf16"`` -> fp16),
  integers, or quantities as numbers or unit strings (``"15e12 token"``,
  ``"30 day"``, ``"100 GB/s"``), read like spec values (``space.values.parse_value``);
- a quantity column may carry its unit in its name: ``recovery_min``,
  ``checkpoint_interval_s``, ``checkpoint_bw_GB_per_s``, ``request_rate_per_s``
  (``_per_`` is "/"; the result columns of ``evaluate``/``evaluate_table`` read
  back unchanged); plain numbers in it are in that unit, strings with a unit
  keep their own.  A plain number in a quantity column of a dimension that needs
  a unit (time, bandwidth, rate) and no unit in the name is refused (column error);
- a parameter without a column takes its ``set=`` value, else its schema default;
  an empty cell (null / NaN / "") does the same; a required parameter (no
  default, e.g. ``model``, ``n_tokens``) with neither is a column error;
- other columns are not parameters: the caller carries them through unchanged.
  A column within a typo of a parameter name (``n_acelerators``) is refused.

Work per column, not per row: strings are factorized (pandas) or dictionary
encoded (Arrow) and each distinct value is parsed once (a catalog lookup, a
unit string through ``units.parse``), then mapped back with the codes; numbers
are checked with numpy (finite, whole for integers, schema bounds).

A value that cannot be read (unknown name, wrong unit, negative or out-of-bounds
number, fraction for an integer) makes a :class:`BadRow` (row, column, value,
reason); column-level mistakes raise :class:`~mlsys_opt.errors.MlsysOptError`.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..errors import MlsysOptError, did_you_mean
from ..scenarios import schema
from ..space.values import BadValue, check_bounds, parse_quantity, parse_value

_TYPO_RATIO = 0.85     # a column this close to a parameter name is taken for a misspelling of it


class BadRow(NamedTuple):
    """One unreadable cell: 0-based data row (header excluded), column, the value as read, why."""
    row: int
    column: str
    value: Any
    reason: str


class ColumnPlan(NamedTuple):
    """How a table's columns map to a scenario's parameters (decided once per schema of columns).

    params: column -> (parameter, factor): numbers in the column times `factor`
    are SI; factor None: no unit in the name (numbers are read as spec values).  constants: parameter -> SI value
    or code for parameters without a column (``set=`` or the schema default).
    constant_labels: their display values.  extra: the non-parameter columns.
    """
    scenario: str
    params: dict
    constants: dict
    constant_labels: dict
    extra: tuple


def _unit_text(suffix: str) -> str:
    """'GB_per_s' -> 'GB/s', 'per_s' -> '/s', 'min' -> 'min', 'kW_h' -> 'kW h' (no parentheses: units.parse)."""
    num, sep, den = suffix.partition("_per_") if not suffix.startswith("per_") else ("", "/", suffix[4:])
    return num.replace("_", " ") + ("/" + den.replace("_per_", "/").replace("_", " ") if sep else "")


def _unit_factor(spec: schema.ParamSpec, suffix: str) -> float | None:
    """SI value of one `suffix` unit for a quantity parameter, or None if it is not a unit of its dimension."""
    if spec.kind != "float" or not suffix:
        return None
    try:
        return parse_quantity(f"1 {_unit_text(suffix)}", spec.dimension)
    except BadValue:
        return None


def plan_columns(columns, scenario: str, catalog, *, set: Mapping[str, Any] | None = None) -> ColumnPlan:
    """Map column names to parameters (see the module docstring); MlsysOptError for column mistakes."""
    if scenario not in schema.PARAMS:
        raise MlsysOptError(f"unknown scenario {scenario!r}{did_you_mean(str(scenario), schema.SCENARIOS)} "
                            f"(allowed: {', '.join(schema.SCENARIOS)})")
    specs = schema.PARAMS[scenario]
    params, extra, taken = {}, [], {}
    for col in columns:
        name = str(col)
        if name in specs:
            param, factor = name, None
        else:
            hits = [(p, _unit_factor(specs[p], name[len(p) + 1:])) for p in specs if name.startswith(p + "_")]
            hits = [(p, f) for p, f in hits if f is not None]
            if not hits:
                close = difflib.get_close_matches(name, list(specs), n=1, cutoff=_TYPO_RATIO)
                if close:
                    raise MlsysOptError(f"table column {name!r} is not a parameter of the {scenario} scenario; "
                                        f"did you mean {close[0]!r}? (parameters: {', '.join(specs)})")
                extra.append(name)
                continue
            param, factor = max(hits, key=lambda h: len(h[0]))
        if param in taken:
            raise MlsysOptError(f"table columns {taken[param]!r} and {name!r} both give {param}; keep one")
        taken[param] = name
        params[name] = (param, factor)
    set = dict(set or {})
    for k in set:
        if k not in specs:
            raise MlsysOptError(f"set: {k!r} is not a parameter of the {scenario} scenario"
                                f"{did_you_mean(k, specs)} (allowed: {', '.join(specs)})")
        if k in taken:
            raise MlsysOptError(f"{k} is both a table column ({taken[k]!r}) and a set value; give one")
    constants, labels = {}, {}
    for param, spec in specs.items():
        raw = set.get(param, spec.default)
        if param in taken and param not in set and raw is None:
            continue                    # required, given by a column (empty cells are bad rows)
        if raw is None:
            raise MlsysOptError(f"table: missing required column {param!r} ({spec.doc}); add the column "
                                f"or give one value for every row (set={{{param!r}: ...}}, --set {param}=...)")
        try:
            labels[param], constants[param] = parse_value(spec, raw, catalog)
        except BadValue as exc:
            where = "set" if param in set else "schema default"
            raise MlsysOptError(f"{param} ({where}): {exc}") from None
    # parameters given by a column keep their constant only as the fill value of empty cells
    return ColumnPlan(scenario, params, constants, labels, tuple(extra))


# --------------------------------------------------------------------------- reading one column

def _column_parts(data) -> tuple[str, Any, Any]:
    """('num', float64 values, null mask) or ('coded', int codes (-1 null), distinct values as a list)."""
    import pyarrow as pa

    if isinstance(data, (pa.ChunkedArray, pa.Array)):
        typ = data.type
        if pa.types.is_dictionary(typ):
            if isinstance(data, pa.ChunkedArray):
                data = data.unify_dictionaries().combine_chunks() if data.num_chunks != 1 else data.chunk(0)
            codes = data.indices.to_numpy(zero_copy_only=False)
            if data.null_count:
                codes = np.where(data.is_null().to_numpy(zero_copy_only=False), -1, codes)
            return "coded", codes.astype(np.int64, copy=False), data.dictionary.to_pylist()
        if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ):
            if pa.types.is_boolean(typ):
                return "coded", *_factorize(pd.Series(data.to_pandas()))
            null = data.is_null().to_numpy(zero_copy_only=False) if data.null_count else None
            values = data.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            return "num", values, null
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            import pyarrow.compute as pc
            enc = pc.dictionary_encode(data)
            return _column_parts(enc)
        return "coded", *_factorize(pd.Series(data.to_pandas()))
    series = data if isinstance(data, pd.Series) else pd.Series(data)
    if isinstance(series.dtype, pd.CategoricalDtype):
        return "coded", series.cat.codes.to_numpy(np.int64), list(series.cat.categories)
    if series.dtype.kind in "iuf":
        values = series.to_numpy(np.float64)
        null = np.isnan(values) if series.dtype.kind == "f" else None
        return "num", values, null
    if pd.api.types.is_numeric_dtype(series.dtype) and series.dtype.kind != "b":   # nullable Int64 / Float64
        null = series.isna().to_numpy()
        return "num", series.to_numpy(np.float64, na_value=np.nan), null
    return "coded", *_factorize(series)


def _factorize(series: pd.Series) -> tuple[np.ndarray, list]:
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes.astype(np.int64), list(uniques)


def _is_blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip()) \
        or v is pd.NA


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _parse_distinct(spec: schema.ParamSpec, values: list, factor: float | None, catalog) -> tuple[np.ndarray, list]:
    """(SI value or code per distinct value (NaN where unreadable or blank), reason per value or None).

    Reasons: None (good), "blank" (empty cell), else the message.  Numbers and
    numeric strings of int/float parameters are checked together with numpy;
    the rest (names, unit strings) are parsed one distinct value at a time.
    """
    m = len(values)
    out = np.full(m, np.nan)
    reasons: list = [None] * m
    todo = np.ones(m, bool)
    if spec.kind in ("int", "float") and m:
        numeric = pd.to_numeric(pd.Series([_number_text(_plain(v)) for v in values], dtype=object),
                                errors="coerce").to_numpy(np.float64)
        is_num = ~np.isnan(numeric)
        if spec.kind == "float" and factor is None and not _bare_ok(spec):
            is_num[:] = False           # a bare number of a time / bandwidth: parse_value says what is missing
        x, bad, _ = _check_numbers(spec, numeric, factor)
        ok = is_num & ~bad
        out[ok] = x[ok]
        todo = ~ok                      # bad numbers too: parse_value words their message
    for i in np.flatnonzero(todo):
        raw = _plain(values[i])
        if _is_blank(raw):
            reasons[i] = "blank"
            continue
        try:
            x = _number_text(raw)
            if spec.kind == "float" and factor is not None and x is not None:
                check_bounds(spec, x * factor, str(raw))
                out[i] = x * factor
            else:
                out[i] = parse_value(spec, raw.strip() if isinstance(raw, str) else raw, catalog)[1]
        except BadValue as exc:
            reasons[i] = str(exc)
    return out, reasons


def _number_text(raw: Any) -> float | None:
    """float of a plain number or numeric string ('8', '1.5e13'), else None."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float, np.integer, np.floating)):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw.replace("_", "x"))     # '1_000' is not read as a number here
        except ValueError:
            return None
    return None


def _check_numbers(spec: schema.ParamSpec, values: np.ndarray, factor: float | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(SI values, bad mask, reason kind) of a numeric column, vectorized."""
    if spec.kind in ("catalog", "choice"):
        return values, np.ones(values.shape, bool), "name"
    x = values * factor if factor not in (None, 1.0) else values
    bad = ~np.isfinite(x)
    if spec.kind == "int":
        bad |= x != np.round(x)
    if spec.low is not None:
        bad |= x < spec.low
    if spec.high is not None:
        bad |= x > spec.high
    return x, bad, "bounds"


def _reason(spec: schema.ParamSpec, raw: Any, factor: float | None) -> str:
    """Why one number of a numeric column is bad (only called for reported rows)."""
    raw = _plain(raw)
    if spec.kind in ("catalog", "choice"):
        return f"expected a name (string); got {raw!r}"
    try:
        if factor is not None:
            check_bounds(spec, float(raw) * factor, f"{raw!r}")
        else:
            parse_value(spec, raw, None)
    except BadValue as exc:
        return str(exc)
    return f"unreadable value {raw!r}"


# --------------------------------------------------------------------------- the converter

def convert_columns(table, plan: ColumnPlan, catalog, *, row_offset: int = 0, max_reported: int | None = None):
    """(values, bad) for the parameter columns of `table` under `plan`.

    values: {parameter: [n] array}: int32 codes (catalog/choice) or float64 SI
    (int/float), only for parameters given by a column; empty cells and bad
    cells hold the plan's constant (the fill value), or the first good value of
    the column for a required parameter.  bad: list of BadRow (row numbers
    offset by `row_offset`); at most `max_reported` (None: all) are built.
    Returns (values, bad, bad_mask bool [n] (rows with a bad cell), n_bad_cells).
    """
    specs = schema.PARAMS[plan.scenario]
    n = _n_rows(table)
    values: dict[str, np.ndarray] = {}
    bad_mask = np.zeros(n, bool)
    bad: list[BadRow] = []
    n_bad_cells = 0
    for col, (param, factor) in plan.params.items():
        spec = specs[param]
        coded = spec.kind in ("catalog", "choice")
        kind, a, b = _column_parts(_column(table, col))
        fill = plan.constants.get(param)
        fast = _all_good(spec, kind, a, b, factor, catalog, fill is not None)
        if fast is not None:                   # every cell readable: no masks, no fill
            values[param] = fast.astype(np.int32, copy=False) if coded else fast.astype(np.float64, copy=False)
            continue
        if kind == "num":
            x, badc, _ = _check_numbers(spec, a, factor)
            null = b if b is not None else np.zeros(n, bool)
            badc &= ~null
            blank = null
            raw_of = lambda i, a=a: a[i]
            reason_of = lambda i, raw, spec=spec, factor=factor: _reason(spec, raw, factor)
        else:
            lut, reasons = _parse_distinct(spec, b, factor, catalog)
            blank_u = np.array([r == "blank" for r in reasons], bool)
            bad_u = np.array([r is not None and r != "blank" for r in reasons], bool)
            codes = a
            null = codes < 0
            safe = np.where(null, 0, codes)
            x = lut[safe] if len(lut) else np.full(n, np.nan)
            blank = null | (blank_u[safe] if len(lut) else null)
            badc = ~null & (bad_u[safe] if len(lut) else False)
            raw_of = lambda i, b=b, codes=codes: b[codes[i]]
            reason_of = lambda i, raw, reasons=reasons, codes=codes: reasons[codes[i]]
        if blank.any() and fill is None:
            badc = badc | blank
            reason_blank = f"empty cell; {param} is required ({spec.doc})"
        else:
            reason_blank = None
        if badc.any():
            rows = np.flatnonzero(badc)
            take = rows if max_reported is None else rows[:max(0, max_reported - len(bad))]
            for i in take:
                raw = None if blank[i] else _plain(raw_of(i))
                reason = reason_blank if blank[i] and reason_blank else reason_of(i, raw)
                bad.append(BadRow(int(i) + row_offset, str(col), raw, reason))
            bad_mask |= badc
            n_bad_cells += int(rows.size)
        good = ~badc & ~blank
        if fill is None:
            first = np.flatnonzero(good)
            fill = x[first[0]] if first.size else 0
        out = np.where(good, x, fill)
        values[param] = out.astype(np.int32) if coded else out.astype(np.float64, copy=False)
    return values, bad, bad_mask, n_bad_cells


_LUTS: dict = {}


def _lut(spec: schema.ParamSpec, distinct: list, factor: float | None, catalog) -> tuple[np.ndarray, list]:
    """`_parse_distinct`, memoized for the few distinct values of a name column (per catalog)."""
    if len(distinct) > 256:
        return _parse_distinct(spec, distinct, factor, catalog)
    try:
        key = (spec, tuple(distinct), factor, id(catalog))
        hash(key)
    except TypeError:
        return _parse_distinct(spec, distinct, factor, catalog)
    if key not in _LUTS:
        if len(_LUTS) > 4096:
            _LUTS.clear()
        _LUTS[key] = (*_parse_distinct(spec, distinct, factor, catalog), catalog)   # keeps id(catalog) unique
    return _LUTS[key][:2]


def _all_good(spec: schema.ParamSpec, kind: str, a, b, factor: float | None, catalog, has_fill: bool):
    """The column's values when every cell is readable and none is empty (checked cheaply), else None."""
    if kind == "num":
        if b is not None and b.any():
            return None
        if spec.kind in ("catalog", "choice") or not len(a):
            return None
        x = a * factor if factor not in (None, 1.0) else a
        lo, hi = float(x.min()), float(x.max())           # NaN / inf fail the bounds below
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return None
        if (spec.low is not None and lo < spec.low) or (spec.high is not None and hi > spec.high):
            return None
        if spec.kind == "int" and not np.array_equal(x, np.rint(x)):
            return None
        return x
    codes, distinct = a, b
    lut, reasons = _lut(spec, distinct, factor, catalog)
    if any(r is not None for r in reasons) or (len(codes) and codes.min() < 0):
        return None
    if not len(lut):
        return None
    return (lut.astype(np.int32) if spec.kind in ("catalog", "choice") else lut)[codes]


def _n_rows(table) -> int:
    return int(table.num_rows) if hasattr(table, "num_rows") else len(table)


def _column(table, col):
    import pyarrow as pa
    if isinstance(table, (pa.Table, pa.RecordBatch)):
        return table.column(col)
    return table[col]


def _as_columns(table):
    """A DataFrame, Arrow Table or RecordBatch as itself; a dict of columns as a DataFrame."""
    import pyarrow as pa
    if isinstance(table, (pd.DataFrame, pa.Table, pa.RecordBatch)):
        return table
    if isinstance(table, Mapping):
        return pd.DataFrame(dict(table))
    raise MlsysOptError(f"convert_table: expected a pandas DataFrame, a pyarrow Table / RecordBatch or a dict "
                        f"of columns; got {type(table).__name__}")


def _names(table) -> list[str]:
    return list(table.column_names) if hasattr(table, "column_names") else [str(c) for c in table.columns]


def convert_table(df, scenario: str, catalog=None, *, set: Mapping[str, Any] | None = None,
                  row_offset: int = 0) -> tuple[dict[str, np.ndarray], list[BadRow]]:
    """Rows of a table -> scenario inputs for every parameter, plus the rows that cannot be read.

    Args:
      df: a pandas DataFrame, a pyarrow Table or RecordBatch (or a dict of
        columns), one row per configuration; columns as in the module docstring
        (parameter names, optionally with a unit suffix: ``recovery_min``).
      scenario: "training" or "serving".
      catalog: a ``Catalog`` (user entries); default ``load_catalog()``.
      set: {parameter: display value} for parameters without a column
        (``{"hardware": "b200", "recovery": "5 min"}``); the rest take their
        schema defaults.  A parameter may not be both a column and a set value.
      row_offset: added to the row numbers of the BadRows (a batch of a larger table).

    Returns:
      (params, bad): params maps EVERY parameter of ``schema.PARAMS[scenario]``
      to an [n] numpy array (int32 codes for catalog/choice parameters -- rows of
      ``catalog.names(kind)`` / positions in ``spec.choices`` -- and float64 SI
      values for int/float ones), ready for ``scenarios.params_from_dict`` after a
      cast to the float dtype of the run.  bad: one :class:`BadRow` per
      unreadable cell (row, column, value, reason), in column then row order;
      the bad rows' entries in `params` hold placeholder values: drop
      ``{b.row - row_offset for b in bad}`` before using them.

    Raises:
      MlsysOptError for mistakes of a whole column: a required parameter with no
      column and no set value, a column that misspells a parameter, two columns
      for one parameter, plain numbers where a unit is needed, an unknown
      scenario or set key.
    """
    from ..catalog import load_catalog
    catalog = load_catalog() if catalog is None else catalog
    table = _as_columns(df)
    plan = plan_columns(_names(table), scenario, catalog, set=set)
    check_units(plan, table)
    values, bad, _, _ = convert_columns(table, plan, catalog, row_offset=row_offset)
    n = _n_rows(table)
    out = {}
    for param, spec in schema.PARAMS[scenario].items():
        if param in values:
            out[param] = values[param]
        else:
            coded = spec.kind in ("catalog", "choice")
            out[param] = np.full(n, plan.constants[param], np.int32 if coded else np.float64)
    return out, bad


def check_units(plan: ColumnPlan, table) -> None:
    """MlsysOptError for a numeric column of a quantity that needs a unit and has none in its name."""
    import pyarrow as pa
    specs = schema.PARAMS[plan.scenario]
    for col, (param, factor) in plan.params.items():
        spec = specs[param]
        if spec.kind != "float" or factor is not None:
            continue
        data = _column(table, col)
        numeric = (pa.types.is_integer(data.type) or pa.types.is_floating(data.type)) \
            if isinstance(data, (pa.Array, pa.ChunkedArray)) else data.dtype.kind in "iuf"
        if numeric and not _bare_ok(spec):
            raise MlsysOptError(
                f"table column {col!r} holds plain numbers but {param} is a {spec.dimension} quantity: put the "
                f"unit in the column name ({unit_example(param, spec)}) or in the values ('{_example(spec)}')")


def _bare_ok(spec: schema.ParamSpec) -> bool:
    try:
        parse_quantity(1.0, spec.dimension)
        return True
    except BadValue:
        return False


_EXAMPLE_SUFFIX = {"time": "s", "bandwidth": "bytes_per_s", "rate": "per_s", "memory": "bytes",
                   "energy": "J", "power": "W", "usd": "usd", "carbon_mass": "kg", "volume": "L"}


def unit_example(param: str, spec: schema.ParamSpec) -> str:
    return f"{param}_{_EXAMPLE_SUFFIX.get(spec.dimension or '', 'SI')}"


def _example(spec: schema.ParamSpec) -> str:
    return {"time": "30 min", "bandwidth": "100 GB/s", "rate": "10 /s"}.get(spec.dimension or "", "1")


__all__ = ["BadRow", "ColumnPlan", "check_units", "convert_columns", "convert_table", "plan_columns"]
