"""Values of a design-space spec: one value -> (label, SI float or row code), one [axes] entry -> its values.

Split out of `mlsys_opt.space` (which re-exports the public names).  Every
function here is pure and raises :class:`BadValue` with a message that names
the value and what is allowed; the caller (`space.load_space`) prefixes the
file and the [section] key and collects every mistake of a file into one
`SpecError`.

Forms of an [axes] entry (`spaces/README.md` is the format reference):

    [v0, v1, ...] or {values = [...]}    the listed values, in order
    "*"                                   every entry of a catalog class
    {pow2 = [lo, hi]}                     powers of two in [lo, hi] (int parameters)
    {range = [lo, hi], step = s}          lo, lo + s, ... <= hi (step 1 for ints)
    {linspace = [lo, hi], count = n}      n evenly spaced values
    {log = [lo, hi], count = n}           n geometrically spaced values (lo > 0)

Integer axes are rounded and deduplicated; every value is checked against the
parameter's schema bounds.  Quantities go through `mlsys_opt.units.parse`, so
pint stays on this side of the boundary.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .._types import PRECISION_ALIASES, PRECISIONS
from ..errors import MlsysOptError, did_you_mean
from ..scenarios import schema

INT64_MAX = 2**63 - 1
AXIS_FORMS = ("values", "pow2", "range", "linspace", "log")
MAX_AXIS_LEN = 1_000_000
# schema dimension names that units.DIMENSIONS spells differently
_UNITS_DIMENSION = {"rate": "frequency", "carbon_mass": "carbon", "volume": "water", "memory": "bytes"}
_SI_UNIT = {"time": "s", "bandwidth": "B/s", "rate": "/s", "memory": "B", "energy": "J", "power": "W",
            "usd": "USD", "carbon_mass": "kg", "volume": "L", "tokens": "token"}
_NOUN = {"accelerators": "accelerator", "models": "model", "fabrics": "fabric", "regions": "region"}


class BadValue(Exception):
    """One mistake in one value; the caller prefixes file and key."""


def format_si(value: float, unit: str | None) -> str:
    """'2.592e+06 s' style display of an SI value (unit: a schema dimension or an output unit)."""
    unit = _SI_UNIT.get(unit or "", unit or "")
    unit = "" if unit in ("dimensionless", "frac", "count", "code") else unit
    return f"{value:.6g}" + (f" {unit}" if unit else "")


def parse_quantity(raw: Any, dimension: str) -> float:
    """SI float of a spec value of schema `dimension` via units.parse; raises BadValue with its message."""
    from .. import units
    try:
        return units.parse(raw, _UNITS_DIMENSION.get(dimension, dimension))
    except MlsysOptError as exc:
        raise BadValue(str(exc)) from None


def parse_value(spec: schema.ParamSpec, raw: Any, catalog) -> tuple[str, float | int]:
    """(display label, SI value or int code) of one value of a parameter; raises BadValue."""
    if spec.kind == "catalog":
        return _parse_catalog_name(spec, raw, catalog)
    if spec.kind == "choice":
        return _parse_choice(spec, raw)
    if spec.kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise BadValue(f"expected an integer; got {raw!r}")
        try:
            value = float(raw)
        except (ValueError, OverflowError):
            raise BadValue(f"expected an integer; got {raw!r}") from None
        if math.isfinite(value) and value != round(value):
            raise BadValue(f"expected an integer; got {raw!r}")
        label = str(int(value)) if math.isfinite(value) else str(raw)
    else:
        value = parse_quantity(raw, spec.dimension)
        label = raw.strip() if isinstance(raw, str) else _label(raw)
    check_bounds(spec, value, label)
    return label, value


def _parse_catalog_name(spec: schema.ParamSpec, raw: Any, catalog) -> tuple[str, int]:
    """(slug, row) of a catalog name; the catalog resolves aliases ("H100" -> h100_sxm).

    A miss takes the catalog's own message: its suggestion knows the aliases
    ('h1000' -> did you mean 'h100_sxm'?), where a plain edit distance over the
    slugs would pick 'v100'.
    """
    if not isinstance(raw, str):
        raise BadValue(f"expected a name (string); got {raw!r}")
    names = list(catalog.names(spec.catalog_kind))
    try:
        code = int(catalog.index(spec.catalog_kind, raw.strip()))
    except MlsysOptError as exc:
        raise BadValue(str(exc)) from None
    except (ValueError, KeyError):     # a catalog-like object without the catalog's messages
        raise BadValue(f"{raw!r} is not a known {_NOUN.get(spec.catalog_kind, spec.catalog_kind)}"
                       f"{did_you_mean(raw, names)} (allowed: {', '.join(names)})") from None
    return names[code], code


def _parse_choice(spec: schema.ParamSpec, raw: Any) -> tuple[str, int]:
    """(choice, its index in spec.choices); precisions also accept their aliases ("bf16" -> fp16)."""
    if not isinstance(raw, str):
        raise BadValue(f"expected a name (string); got {raw!r}")
    key = raw.strip().lower()
    aliases = PRECISION_ALIASES if spec.choices == PRECISIONS else {}
    key = aliases.get(key, key)
    if key not in spec.choices:
        extra = f"; aliases: {', '.join(f'{a}={b}' for a, b in aliases.items())}" if aliases else ""
        raise BadValue(f"{raw!r} is not an allowed choice{did_you_mean(raw, spec.choices + tuple(aliases))}"
                       f" (allowed: {', '.join(spec.choices)}{extra})")
    return key, spec.choices.index(key)


def _label(raw: Any) -> str:
    """Display label of a non-string spec value: '0.5' for 0.5, Fraction(1, 2), numpy scalars, '10 min' for pint."""
    try:
        return f"{raw:g}"
    except (TypeError, ValueError):
        return str(raw)


def check_bounds(spec: schema.ParamSpec, value: float, label: str) -> None:
    """Raise BadValue unless `value` is finite and within the parameter's [low, high]."""
    if not math.isfinite(value):
        raise BadValue(f"{label} is not a finite number")
    if spec.low is not None and value < spec.low:
        raise BadValue(f"{label} is below the minimum {format_si(spec.low, spec.dimension)} ({spec.doc})")
    if spec.high is not None and value > spec.high:
        raise BadValue(f"{label} is above the maximum {format_si(spec.high, spec.dimension)} ({spec.doc})")


def expand_axis(spec: schema.ParamSpec, raw: Any, catalog) -> list[tuple[str, float | int]]:
    """The (label, value) pairs of one [axes] entry, in order; raises BadValue."""
    forms = "a list, \"*\" (catalog parameters) or a table with one of " + ", ".join(AXIS_FORMS)
    if isinstance(raw, str) and raw.strip() == "*":
        if spec.kind != "catalog":
            takes = {"choice": "a list of " + ", ".join(spec.choices or ()), "int": "a list or pow2/range/log",
                     "float": "a list or range/linspace/log"}[spec.kind]
            raise BadValue(f"'*' (a whole catalog class) only works for catalog parameters "
                           f"(hardware, model, region, fabric); this one takes {takes}")
        return [(n, int(catalog.index(spec.catalog_kind, n))) for n in catalog.names(spec.catalog_kind)]
    if isinstance(raw, Mapping):
        form = [k for k in raw if k in AXIS_FORMS]
        other = [k for k in raw if k not in AXIS_FORMS + ("step", "count")]
        if len(form) != 1 or other:
            raise BadValue(f"an axis table needs exactly one of {', '.join(AXIS_FORMS)} (plus step for range, "
                           f"count for linspace/log); got keys {', '.join(raw)}")
        if form[0] != "values":
            return _generate(spec, form[0], raw)
        if set(raw) - {"values"}:
            raise BadValue("values takes no step or count")
        raw = raw["values"]
    if not isinstance(raw, list):
        raise BadValue(f"an axis is {forms}; got {raw!r} (to hold one value, put it under [fixed])")
    if not raw:
        raise BadValue("empty axis; give at least one value")
    _check_len(len(raw))
    pairs, problems = [], []
    for item in raw:
        try:
            pairs.append(parse_value(spec, item, catalog))
        except BadValue as exc:
            problems.append(str(exc))
    if problems:
        raise BadValue("; ".join(problems))
    seen: dict[float, str] = {}
    for label, value in pairs:
        if value in seen:
            again = "appears twice" if label == seen[value] else f"repeats {seen[value]!r}"
            raise BadValue(f"{label!r} {again}; every value of an axis must be distinct")
        seen[value] = label
    return pairs


def _generate(spec: schema.ParamSpec, form: str, table: Mapping) -> list[tuple[str, float | int]]:
    """Expand pow2 / range / linspace / log bounds into values (ints rounded and deduplicated)."""
    if spec.kind not in ("int", "float"):
        raise BadValue(f"{form} is for numeric parameters; a {spec.kind} axis takes a list"
                       + (" or \"*\"" if spec.kind == "catalog" else ""))
    bounds = table[form]
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise BadValue(f"{form} needs [low, high]; got {bounds!r}")
    extra = set(table) - {form, {"range": "step", "linspace": "count", "log": "count"}.get(form, "")}
    if extra:
        raise BadValue(f"{form} does not take {', '.join(sorted(extra))}")
    is_int = spec.kind == "int"
    lo, hi = (_number(spec, b, f"{form} bound") for b in bounds)
    if lo > hi:
        raise BadValue(f"{form} low {bounds[0]!r} is greater than high {bounds[1]!r}")
    if form == "pow2":
        if not is_int:
            raise BadValue("pow2 is for integer parameters; use log with a count for quantities")
        if lo <= 0:
            raise BadValue(f"pow2 bounds must be positive; got {bounds!r}")
        k0, k1 = (math.ceil(lo) - 1).bit_length(), int(math.floor(hi)).bit_length() - 1
        values = np.array([2.0**k for k in range(k0, max(k0, k1 + 1))])
    elif form == "range":
        step = _number(spec, table.get("step", 1 if is_int else None), "step")
        if step <= 0:
            raise BadValue(f"range step must be > 0; got {table.get('step')!r}")
        n = math.floor((hi - lo) / step * (1 + 1e-12)) + 1
        _check_len(n)
        values = lo + step * np.arange(n)
    else:
        count = table.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise BadValue(f"{form} needs count = a positive integer; got {count!r}")
        _check_len(count)
        if form == "log" and lo <= 0:
            raise BadValue(f"log bounds must be positive; got {bounds!r}")
        values = (np.geomspace if form == "log" else np.linspace)(lo, hi, count)
        if is_int:
            values = np.unique(np.round(values))
        elif count > 1 and lo == hi:
            raise BadValue(f"{form} [{bounds[0]!r}, {bounds[1]!r}] with count {count} repeats one value")
    if values.size == 0:
        raise BadValue(f"empty axis: no power of two lies in [{bounds[0]!r}, {bounds[1]!r}]")
    labels = [str(int(v)) if is_int else format_si(v, spec.dimension) for v in values.tolist()]
    low = -np.inf if spec.low is None else spec.low
    high = np.inf if spec.high is None else spec.high
    bad = np.flatnonzero((values < low) | (values > high))
    if bad.size:
        check_bounds(spec, float(values[bad[0]]), labels[bad[0]])
    return list(zip(labels, values.tolist()))


def _number(spec: schema.ParamSpec, raw: Any, what: str) -> float:
    if raw is None:
        raise BadValue(f"a range of {spec.dimension} values needs step = a quantity, e.g. step = \"10 min\"")
    if spec.kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int) or abs(raw) > INT64_MAX:
            raise BadValue(f"{what} must be an integer; got {raw!r}")
        return float(raw)
    value = parse_quantity(raw, spec.dimension)
    if not math.isfinite(value):
        raise BadValue(f"{what} must be finite; got {raw!r}")
    return value


def _check_len(n: int) -> None:
    if n > MAX_AXIS_LEN:
        raise BadValue(f"the axis would have {n:,} values; at most {MAX_AXIS_LEN:,} per axis")


__all__ = ["AXIS_FORMS", "BadValue", "INT64_MAX", "MAX_AXIS_LEN", "check_bounds", "expand_axis", "format_si",
           "parse_quantity", "parse_value"]
