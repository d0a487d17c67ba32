"""Read and validate catalog TOML files: one entry -> one row of SI floats.

Every field of every entry is checked here (missing field, unknown field,
wrong unit, NaN/inf, negative or zero where a positive value is required,
duplicate names, kind-specific fields) and the first problem raises ONE
`CatalogError` naming the file, the entry, the field and what is allowed::

    accelerators.toml: [h100_sxm] mem_bw: expected bandwidth (bytes/second), got '3.35 TB'

Rows are plain dicts keyed by DataFrame column (SI, unit in the name); the
public `Catalog` (``catalog/__init__.py``) turns them into pandas DataFrames
and the jnp `Tables` of ``catalog/tables.py``.
"""
from __future__ import annotations

import copy
import functools
import math
import numbers
import re

import unicodedata
from pathlib import Path
from typing import Any, Mapping

from .. import units
from .._types import MODEL_KINDS, PRECISION_ALIASES, PRECISIONS
from ..errors import CatalogError, MlsysOptError, suggest
from ._files import read_toml  # noqa: F401  (also read as _load.read_toml)
from ._schema import (  # noqa: F401  (also read as _load.COLUMNS, _load.PEAK_COLUMNS, _load.HAS_COLUMNS, ...)
    _ALL, _COLUMN_KEYS, _TF, COLUMNS, DEFAULT_HOST_BW, DEFAULT_MTBF, HAS_COLUMNS, KINDS, PEAK_COLUMNS, SCHEMA, Field,
)
from .shapes import derived_columns
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def kind_of(kind: str) -> str:
    """Canonical kind name ("accelerator" and "hardware" -> "accelerators"), or CatalogError."""
    k = str(kind).strip().lower()
    k = {"accelerator": "accelerators", "hardware": "accelerators", "hw": "accelerators",
         "model": "models", "fabric": "fabrics", "network": "fabrics", "region": "regions",
         "grid": "regions"}.get(k, k)
    if k not in KINDS:
        raise CatalogError(f"unknown catalog kind {kind!r}{hint(str(kind), KINDS)} "
                           f"(allowed: {', '.join(KINDS)})")
    return k


def hint(name: str, choices) -> str:
    """'; did you mean 'x'?' or '' (for messages)."""
    s = suggest(name, choices)
    return f";{s}" if s else ""


_WORDS = {"str": "text", "int": "a whole number", "float": "a number", "year": "a year such as 2024",
          "aliases": "a list of names", "enum": "one of", "bool": "true or false"}


def norm_key(text: str) -> str:
    """Lookup key: lower case, accents and non-alphanumerics dropped ('H100 SXM' -> 'h100sxm')."""
    s = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    return re.sub(r"[^0-9a-z]", "", s.lower())


# ---------------------------------------------------------------- reading files

def entries_from(source: Mapping[str, Any] | str | Path, kind: str) -> tuple[dict[str, dict], str]:
    """(name -> raw entry dict, label) from a dict or a TOML file of entries of one kind."""
    if isinstance(source, (str, Path)):
        label = str(source)
        data = read_toml(source, label)
        # A file of several kinds ([accelerators.x]) is accepted when it holds this kind only.
        if set(data) <= set(KINDS) and data:
            if set(data) != {kind}:
                raise CatalogError(f"{label}: holds kinds {sorted(data)}, expected entries of {kind!r} "
                                   f"(or pass it to load_catalog(extra=...))")
            data = data[kind]
    elif isinstance(source, Mapping):
        label, data = getattr(source, "label", f"{kind} (dict)"), dict(source)
    else:
        raise CatalogError(f"{kind}: entries must be a dict of name -> fields or a TOML file path, "
                           f"got {type(source).__name__}")
    out: dict[str, dict] = {}
    for name, fields in data.items():
        if not isinstance(fields, Mapping):
            raise CatalogError(f"{label}: [{name}] expected a table of fields, got {fields!r}")
        out[str(name)] = copy.deepcopy(dict(fields))
    return out, label


# ---------------------------------------------------------------- validation

@functools.lru_cache(maxsize=8192, typed=True)
def _parse_cached(value: str | int | float, dim: str, positive: bool, nonnegative: bool) -> float:
    return units.parse(value, dim, positive=positive, nonnegative=nonnegative)


def _parse(value: Any, dim: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    """``units.parse``, memoised for text and numbers: a catalog repeats most of its values ("8",
    "700 W", "none", ...), and every process loads the built-in catalog (typed keys: True is not 1;
    errors are raised again each time, never cached)."""
    if type(value) in (str, int, float):
        return _parse_cached(value, dim, positive, nonnegative)
    return units.parse(value, dim, positive=positive, nonnegative=nonnegative)


def _fail(ctx: str, key: str, msg: str) -> CatalogError:
    return CatalogError(f"{ctx} {key}: {msg}")


def _number(value: Any, ctx: str, f: Field) -> float:
    try:
        x = _parse(value, "dimensionless")
    except MlsysOptError as exc:
        raise _fail(ctx, f.key, str(exc)) from None
    return _check_rule(x, value, ctx, f)


def _check_rule(x: float, value: Any, ctx: str, f: Field) -> float:
    bad = {"pos": not x > 0, "nonneg": not x >= 0, "ge1": not x >= 1, "frac": not 0 < x <= 1}.get(f.rule, False)
    if bad:
        want = {"pos": "> 0", "nonneg": ">= 0", "ge1": ">= 1", "frac": "in (0, 1]"}[f.rule]
        raise _fail(ctx, f.key, f"must be {want}, got {value!r}")
    return x


def _parse_field(f: Field, value: Any, ctx: str) -> Any:
    if f.type == "qty":
        try:
            return _parse(value, f.dim, positive=f.rule == "pos", nonnegative=f.rule == "nonneg")
        except MlsysOptError as exc:
            raise _fail(ctx, f.key, str(exc)) from None
    if f.type == "float":
        return _number(value, ctx, f)
    if f.type in ("int", "year"):
        if isinstance(value, bool):
            raise _fail(ctx, f.key, f"expected a whole number, got {value!r}")
        try:
            x = _parse(value, "count")
        except MlsysOptError as exc:
            raise _fail(ctx, f.key, str(exc)) from None
        if x != math.floor(x):
            raise _fail(ctx, f.key, f"expected a whole number, got {value!r}")
        if f.type == "year":
            if not 1940 <= x <= 2100:
                raise _fail(ctx, f.key, f"expected a year such as 2024, got {value!r}")
            return int(x)
        return int(_check_rule(x, value, ctx, f))
    if f.type == "str":
        if not isinstance(value, str):
            raise _fail(ctx, f.key, f"expected text, got {value!r}")
        if f.required and not value.strip():
            raise _fail(ctx, f.key, "must not be empty")
        return value.strip()
    if f.type == "enum":
        v = value.strip().lower() if isinstance(value, str) else value
        if v not in f.choices:
            raise _fail(ctx, f.key, f"unknown value {value!r}{hint(str(value), f.choices)} "
                                    f"(allowed: {', '.join(f.choices)})")
        return v
    if f.type == "bool":
        if not isinstance(value, bool):
            raise _fail(ctx, f.key, f"expected true or false, got {value!r}")
        return value
    if f.type == "floats":
        if not isinstance(value, (list, tuple)) or not value:
            raise _fail(ctx, f.key, f"expected a list of numbers such as [0.4, 0.7, 0.8], got {value!r}")
        return tuple(_number(v, ctx, f) for v in value)
    if f.type == "aliases":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(a, str) and a.strip() for a in value):
            raise _fail(ctx, f.key, f"expected a list of names, got {value!r}")
        return tuple(a.strip() for a in value)
    raise AssertionError(f.type)  # pragma: no cover


def _parse_peak(value: Any, ctx: str) -> dict[str, float]:
    """peak = {fp32 = "...", ...}: every precision present, "none" where absent."""
    if not isinstance(value, Mapping):
        raise _fail(ctx, "peak", f"expected a table of precisions ({', '.join(PRECISIONS)}), got {value!r}")
    out: dict[str, float] = {}
    for key, v in value.items():
        k = PRECISION_ALIASES.get(str(key).lower(), str(key).lower())
        if k not in PRECISIONS:
            raise _fail(ctx, f"peak.{key}", f"unknown precision{hint(str(key), PRECISIONS)} "
                                            f"(allowed: {', '.join(PRECISIONS)})")
        if k in out:
            raise _fail(ctx, f"peak.{key}", f"duplicates peak.{k}")
        if isinstance(v, str) and v.strip().lower() == "none":
            out[k] = 0.0
            continue
        try:
            out[k] = _parse(v, "flop_rate")
        except MlsysOptError as exc:
            raise _fail(ctx, f"peak.{k}", f"{exc} (or \"none\" if the device lacks it)") from None
        if not out[k] > 0:
            shown = f"'{v:~}'" if isinstance(v, units.Q_) else repr(v)
            raise _fail(ctx, f"peak.{k}", f"must be > 0, got {shown}; write {k} = \"none\" if the device lacks it")
    for p in PRECISIONS:
        if p not in out:
            raise _fail(ctx, f"peak.{p}", f"missing; give its dense peak or write {p} = \"none\" "
                                          "if the device lacks it")
    if not any(out.values()):
        raise _fail(ctx, "peak", "every precision is \"none\"; at least one is needed")
    return out


def _as_float(value: numbers.Real) -> float:
    """float(value); inf for an int beyond a float (10**400), which parsing then refuses."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def apply_si_columns(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Accept SI column names in overrides: {"mem_bw_bytes_per_s": 4e12} -> {"mem_bw": Quantity}."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _COLUMN_KEYS[kind] and isinstance(value, numbers.Real) and not isinstance(value, bool):
            toml_key, dim = _COLUMN_KEYS[kind][key]
            out[toml_key] = units.quantity(_as_float(value), dim)    # parsing refuses NaN, inf, <= 0
        elif (kind == "accelerators" and key in PEAK_COLUMNS and isinstance(value, numbers.Real)
              and not isinstance(value, bool)):
            peak = dict(out.get("peak", fields.get("peak", {})) or {})
            # Only 0 means "none"; NaN / negative / inf go on to _parse_peak, which refuses them.
            peak[key[len("peak_"):-len("_flop_per_s")]] = "none" if value == 0 \
                else units.quantity(_as_float(value), "flop_rate")
            out["peak"] = peak
        else:
            out[key] = value
    return out


def validate_entry(kind: str, name: str, raw: Mapping[str, Any], label: str) -> dict[str, Any]:
    """Check one raw entry and return its row: {column: value} in SI units."""
    ctx = f"{label}: [{name}]"
    if not _SLUG.match(name):
        raise CatalogError(f"{ctx} is not a valid name: use lower-case letters, digits and '_' "
                           f"(e.g. '{norm_key(name) or 'my_entry'}')")
    fields = SCHEMA[kind]
    keys = {f.key for f in fields}
    for key in raw:
        if key not in keys:
            raise _fail(ctx, key, f"unknown field{hint(key, keys)} (allowed: {', '.join(f.key for f in fields)})")
    model_kind = None
    if kind == "models":
        kf = next(f for f in fields if f.key == "kind")
        if "kind" not in raw:
            raise _fail(ctx, "kind", f"missing (allowed: {', '.join(MODEL_KINDS)})")
        model_kind = _parse_field(kf, raw["kind"], ctx)

    row: dict[str, Any] = {"name": name}
    for f in fields:
        required = f.required if isinstance(f.required, bool) else model_kind in f.required
        present = f.key in raw
        if present and f.allowed is not _ALL and model_kind not in f.allowed:
            raise _fail(ctx, f.key, f"applies to kind {' / '.join(repr(k) for k in f.allowed)} only, "
                                    f"not {model_kind!r}")
        if f.type == "peak":
            if not present:
                raise _fail(ctx, "peak", f"missing (a table with {', '.join(PRECISIONS)})")
            peaks = _parse_peak(raw["peak"], ctx)
            for p in PRECISIONS:
                row[f"peak_{p}_flop_per_s"] = peaks[p]
                row[f"has_{p}"] = peaks[p] > 0
            continue
        if not present:
            if required:
                if f.type == "qty":
                    dim = units.DIMENSIONS[f.dim]
                    what = f"{f.dim} ({dim.label}), e.g. '{dim.example}'"
                elif f.type == "enum":
                    what = f"one of {', '.join(f.choices)}"
                else:
                    what = _WORDS[f.type]
                raise _fail(ctx, f.key, f"missing (required: {what})")
            value = f.default
            if f.type == "qty" and isinstance(value, str):
                value = _parse_field(f, value, ctx)
        else:
            value = _parse_field(f, raw[f.key], ctx)
        if f.column:
            row[f.column] = value
    _cross_check(kind, row, raw, ctx)
    if kind in ("accelerators", "fabrics"):
        from . import achievable
        achievable.resolve(kind, row, ctx)
    return row


def _cross_check(kind: str, row: dict[str, Any], raw: Mapping[str, Any], ctx: str) -> None:
    if kind == "accelerators":
        if row["accelerators_per_node"] > 1 and not row["scaleup_bw_bytes_per_s"] > 0:
            raise _fail(ctx, "scaleup_bw", f"must be > 0 when accelerators_per_node = {row['accelerators_per_node']}")
        inj = row["injection_bw_bytes_per_s"]
        row["is_wafer_scale"] = inj is not None
        row["injection_bw_bytes_per_s"] = 0.0 if inj is None else inj
        row["ridge_flop_per_byte"] = row["peak_fp16_flop_per_s"] / row["mem_bw_bytes_per_s"]
    elif kind == "models":
        if row["n_active_params"] is None:
            row["n_active_params"] = row["n_params"]
        if row["n_active_params"] > row["n_params"]:
            raise _fail(ctx, "active_params", f"must be <= params ({row['n_params']:.6g}), "
                                              f"got {raw.get('active_params')!r}")
        if row["kind"] in _TF:
            if row["n_kv_heads"] > row["n_heads"] or row["n_heads"] % row["n_kv_heads"]:
                raise _fail(ctx, "kv_heads", f"must divide heads ({row['n_heads']}), got {row['n_kv_heads']}")
        if row["kind"] in _TF and row["dense_layers"] >= row["n_layers"]:
            raise _fail(ctx, "dense_layers", f"must be < layers ({row['n_layers']}), got {row['dense_layers']}")
        row.update(derived_columns(row))      # per-model columns the scenarios read (MLA widths, MTP)
        if row["kind"] == "moe":
            if row["n_experts"] < 2:
                raise _fail(ctx, "experts", f"a moe model needs >= 2 experts, got {row['n_experts']}")
            if row["top_k"] > row["n_experts"]:
                raise _fail(ctx, "top_k", f"must be <= experts ({row['n_experts']}), got {row['top_k']}")


def fingerprint(rows: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """SHA-256 hex digest of a catalog's validated SI rows: THE catalog fingerprint (``Catalog.fingerprint``).

    Covers every kind, the entry names in row order (row i is code i on the device) and every field
    of every row -- floats exactly (``float.hex``), arrays (the achievable-rate curves the device
    tables carry) by dtype, shape and bytes, strings, flags and None -- so it changes with any value a
    result could depend on (one changed price is enough) and with nothing else; the same entries give
    the same digest in every process and Python version.  Used by the results' metadata
    (``catalog_sha256``) and by the checkpoint run key (``sweeps.api.run_key``).
    """
    import hashlib

    import numpy as np

    def enc(v: Any) -> str:
        if isinstance(v, np.ndarray):
            a = np.ascontiguousarray(v)
            return f"a:{a.dtype.str}:{a.shape}:{hashlib.sha256(a.tobytes()).hexdigest()}"
        if isinstance(v, (bool, np.bool_)):
            return f"b:{bool(v)}"
        if isinstance(v, (int, np.integer)):
            return f"i:{int(v)}"
        if isinstance(v, (float, np.floating)):
            return f"f:{float(v).hex()}"
        if isinstance(v, (list, tuple)):
            return "[" + ",".join(enc(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{" + ",".join(f"{k!r}:{enc(x)}" for k, x in sorted(v.items())) + "}"
        return f"{type(v).__name__}:{v!r}"

    h = hashlib.sha256()
    for kind in KINDS:
        h.update(f"\x00{kind}".encode())
        for name, row in rows[kind].items():
            h.update(f"\x01{name}".encode())
            for key in sorted(row):
                h.update(f"\x02{key}={enc(row[key])}".encode())
    return h.hexdigest()


def check_names(kind: str, rows: list[dict[str, Any]], labels: Mapping[str, str]) -> dict[str, int]:
    """name/display name/alias lookup key -> row index; a key shared by two entries is an error."""
    lookup: dict[str, int] = {}
    for i, row in enumerate(rows):
        for what, text in [("name", row["name"]), ("display_name", row["display_name"])] + \
                [("alias", a) for a in row["aliases"]]:
            key = norm_key(text)
            if not key:
                continue
            j = lookup.setdefault(key, i)
            if j != i:
                other = rows[j]["name"]
                raise CatalogError(f"{labels[row['name']]}: [{row['name']}] {what} {text!r} is ambiguous: "
                                   f"it also names [{other}] ({labels[other]})")
    return lookup
