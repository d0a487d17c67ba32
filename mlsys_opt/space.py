"""Design-space specs: a TOML file (or dict) -> a validated `Space` of mixed-radix axes.

A spec names a scenario (`schema.PARAMS` key), fixes some parameters, makes
others axes, sets limits on outputs and picks objectives; `spaces/README.md`
is the format reference.  Every other parameter takes its schema default.

A configuration is identified by its digits d (int32 [n_axes], one per axis,
0 <= d_k < radix_k); the space holds prod_k radix_k configurations and the
sweep decodes digit chunks on the device (`mlsys_opt.indexing`).
`Space.param_values(digits)` turns digits into the scenario's inputs: plain SI
floats for "int"/"float" parameters, int32 row codes for "catalog"/"choice"
ones (ARCHITECTURE.md: categoricals are integer indices gathered inside jit).

Validation happens here, once, at load time (issue 7 item 1): every mistake
of a file is collected and raised together as one `SpecError`, one line per
mistake, each naming the file, the [section] key, the value and what is
allowed.  pint never leaves this module: quantities are parsed with
`mlsys_opt.units.parse` into SI floats.
"""
from __future__ import annotations

import math
import os
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

import numpy as np

from . import schema
from ._types import PRECISION_ALIASES, PRECISIONS
from .errors import MlsysOptError, SpecError, suggest

if TYPE_CHECKING:
    import pandas as pd

SPACES_DIR = Path(__file__).resolve().parents[1] / "spaces"
INT64_MAX = 2**63 - 1
TOP_KEYS = ("name", "description", "scenario", "fixed", "axes", "constraints", "objectives",
            "search", "sweep")
SEARCH_ALGORITHMS = schema.SEARCH_ALGORITHM_NAMES
SEARCH_DEFAULTS = {"algorithm": "nsga2", "evals": 20000, "pop_size": 200, "seed": 0}
SWEEP_DEFAULTS = {"chunk_size": 65536, "front_capacity": 4096}


class Axis(NamedTuple):
    """One mixed-radix axis: `labels[d]` is shown to people, `values[d]` goes into JAX.

    values: float64 SI values ("int"/"float" parameters) or int64 row/choice
    codes ("catalog"/"choice" parameters), one per digit d.
    """
    name: str
    kind: str
    labels: tuple[str, ...]
    values: np.ndarray


class SpaceInfo(NamedTuple):
    name: str
    path: Path
    scenario: str
    description: str


@dataclass(frozen=True, eq=False)
class Space:
    """A validated design space (see module docstring).

    fixed / defaults: parameter -> SI float or int code ([fixed] table / schema
    defaults for everything neither fixed nor an axis).  limits: output name ->
    ("max"|"min", SI value).  objectives: ((output, "min"|"max"), ...).
    """
    name: str
    description: str
    scenario: str
    source: str
    axes: tuple[Axis, ...]
    fixed: dict[str, float | int]
    defaults: dict[str, float | int]
    limits: dict[str, tuple[str, float]]
    objectives: tuple[tuple[str, str], ...]
    report: tuple[str, ...]
    search: dict[str, Any]
    sweep: dict[str, int]
    catalog: Any = None
    fixed_labels: dict[str, str] = field(default_factory=dict)   # [fixed] values as written

    @property
    def params(self) -> dict[str, schema.ParamSpec]:
        return schema.PARAMS[self.scenario]

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    @property
    def radices(self) -> tuple[int, ...]:
        return tuple(len(a.labels) for a in self.axes)

    @property
    def size(self) -> int:
        """Number of configurations, prod(radices), as an exact Python int."""
        try:
            from .indexing import space_size
        except ImportError:
            return math.prod(self.radices)
        return int(space_size(self.radices))

    @property
    def constants(self) -> dict[str, float | int]:
        """Every non-axis parameter: defaults overridden by [fixed]."""
        return {**self.defaults, **self.fixed}

    def param_values(self, digits, dtype=None) -> dict[str, Any]:
        """Scenario inputs for a batch of digits (jit-able; `dtype` must be static).

        digits: int32 [n, n_axes].  Returns {param: [n] array} for every schema
        parameter of the scenario: `dtype` (default float32) SI values for
        "int"/"float" parameters, int32 codes for "catalog"/"choice" ones.
        """
        import jax.numpy as jnp

        dtype = jnp.float32 if dtype is None else dtype
        digits = jnp.asarray(digits)
        n = digits.shape[0]
        out = {}
        for k, axis in enumerate(self.axes):
            coded = axis.kind in ("catalog", "choice")
            table = jnp.asarray(axis.values, jnp.int32 if coded else dtype)
            out[axis.name] = jnp.take(table, digits[:, k], mode="clip")
        for name, value in self.constants.items():
            coded = self.params[name].kind in ("catalog", "choice")
            out[name] = jnp.full((n,), value, jnp.int32 if coded else dtype)
        return {name: out[name] for name in self.params}

    def labels(self, digits) -> pd.DataFrame:
        """pandas DataFrame with one column per axis, decoded for people.

        catalog/choice axes -> names (categorical), int axes -> int64, float
        axes -> SI float64 in a column whose name carries the unit
        (`checkpoint_interval_s`, see `column_name`).
        """
        import pandas as pd

        digits = np.asarray(digits).reshape(-1, len(self.axes))
        cols = {}
        for k, axis in enumerate(self.axes):
            d = digits[:, k].astype(np.int64)
            if axis.kind in ("catalog", "choice"):
                cols[axis.name] = pd.Categorical.from_codes(d, categories=list(axis.labels))
            elif axis.kind == "int":
                cols[axis.name] = axis.values[d].astype(np.int64)
            else:
                cols[column_name(self.scenario, axis.name)] = axis.values[d]
        return pd.DataFrame(cols)

    def digits_for(self, assignment: Mapping[str, Any]) -> np.ndarray:
        """int32 [n_axes] digits of one configuration given {axis: label or value}.

        Values are parsed like spec values ("h100_sxm", 8, "10 min"); an axis
        left out gets digit 0.  Raises SpecError for unknown axes or values.
        """
        errors = []
        digits = np.zeros(len(self.axes), np.int32)
        by_name = {a.name: k for k, a in enumerate(self.axes)}
        for name, raw in assignment.items():
            if name not in by_name:
                errors.append(f"{self.source}: {name}: not an axis of {self.name};"
                              f"{suggest(name, by_name)} (axes: {', '.join(by_name)})")
                continue
            axis = self.axes[by_name[name]]
            try:
                _, value = _parse_value(self.params[name], raw, self.catalog)
            except _Bad as exc:
                errors.append(f"{self.source}: {name}: {exc}")
                continue
            hit = np.flatnonzero(np.isclose(axis.values, value, rtol=1e-9, atol=0))
            if hit.size == 0:
                errors.append(f"{self.source}: {name}: {raw!r} is not on the axis "
                              f"(axis values: {', '.join(axis.labels[:20])})")
            else:
                digits[by_name[name]] = hit[0]
        if errors:
            raise SpecError("\n".join(errors))
        return digits

    def describe(self) -> str:
        """One paragraph: scenario, size, axes with counts, fixed values, limits, objectives."""
        axes = " × ".join(f"{a.name} {len(a.labels)}" for a in self.axes)
        fixed = ", ".join(f"{k}={self.fixed_labels.get(k) or _show(self, k, v)}"
                          for k, v in self.fixed.items()) or "none"
        units = schema.OUTPUTS[self.scenario]
        limits = ", ".join(f"{out} {'<=' if sense == 'max' else '>='} {_fmt(v, units[out].unit)}"
                           for out, (sense, v) in self.limits.items()) or "none"
        objs = ", ".join(f"{sense}imize {name}" for name, sense in self.objectives)
        text = (f"{self.name} ({self.scenario}, {self.source}): {self.size:,} configurations"
                f" = {axes}. Fixed: {fixed}. Limits: {limits}. Objectives: {objs}.")
        return text + (f" {self.description}" if self.description else "")


def column_name(scenario: str, param: str) -> str:
    """Result-column name of a parameter: the SI unit appended for physical ones."""
    spec = schema.PARAMS[scenario][param]
    suffix = _COLUMN_SUFFIX.get(spec.dimension or "", "") if spec.kind == "float" else ""
    return f"{param}_{suffix}" if suffix and not param.endswith("_" + suffix) else param


def _show(space: Space, name: str, value) -> str:
    spec = space.params[name]
    if spec.kind == "catalog":
        return str(space.catalog.names(spec.catalog_kind)[int(value)])
    if spec.kind == "choice":
        return spec.choices[int(value)]
    if spec.kind == "int":
        return str(int(value))
    return _fmt(value, spec.dimension)


# --------------------------------------------------------------------------- values

AXIS_FORMS = ("values", "pow2", "range", "linspace", "log")
MAX_AXIS_LEN = 1_000_000
# schema dimension names that units.DIMENSIONS spells differently
_UNITS_DIMENSION = {"rate": "frequency", "carbon_mass": "carbon", "volume": "water", "memory": "bytes"}
_SI_UNIT = {"time": "s", "bandwidth": "B/s", "rate": "/s", "memory": "B", "energy": "J", "power": "W",
            "usd": "USD", "carbon_mass": "kg", "volume": "L", "tokens": "token"}
_COLUMN_SUFFIX = {"time": "s", "bandwidth": "bytes_per_s", "rate": "per_s", "memory": "bytes", "energy": "j",
                  "power": "w", "usd": "usd", "carbon_mass": "kg", "volume": "l"}
_NOUN = {"accelerators": "accelerator", "models": "model", "fabrics": "fabric", "regions": "region"}


class _Bad(Exception):
    """One mistake in one value; the caller prefixes file and key."""


def _fmt(value: float, unit: str | None) -> str:
    """'2.592e+06 s' style display of an SI value (unit: a dimension or an output unit)."""
    unit = _SI_UNIT.get(unit or "", unit or "")
    unit = "" if unit in ("dimensionless", "frac", "count", "code") else unit
    return f"{value:.6g}" + (f" {unit}" if unit else "")


def _parse_quantity(raw: Any, dimension: str) -> float:
    """SI float of a spec value of schema `dimension` via units.parse; raises _Bad with its message."""
    from . import units
    try:
        return units.parse(raw, _UNITS_DIMENSION.get(dimension, dimension))
    except MlsysOptError as exc:
        raise _Bad(str(exc)) from None


def _parse_value(spec: schema.ParamSpec, raw: Any, catalog) -> tuple[str, float | int]:
    """(display label, SI value or int code) of one value of a parameter; raises _Bad."""
    if spec.kind in ("catalog", "choice"):
        if not isinstance(raw, str):
            raise _Bad(f"expected a name (string); got {raw!r}")
        if spec.kind == "catalog":
            names = list(catalog.names(spec.catalog_kind))
            try:                        # the catalog also knows aliases ("H100" -> h100_sxm)
                code = int(catalog.index(spec.catalog_kind, raw.strip()))
            except (MlsysOptError, ValueError, KeyError):
                raise _Bad(f"{raw!r} is not a known {_NOUN.get(spec.catalog_kind, spec.catalog_kind)};"
                           f"{suggest(raw, names)} (known: {', '.join(names)})") from None
            return names[code], code
        key = raw.strip().lower()
        aliases = PRECISION_ALIASES if spec.choices == PRECISIONS else {}
        key = aliases.get(key, key)
        if key not in spec.choices:
            extra = f"; aliases: {', '.join(f'{a}={b}' for a, b in aliases.items())}" if aliases else ""
            raise _Bad(f"{raw!r} is not an allowed choice;{suggest(raw, spec.choices + tuple(aliases))}"
                       f" (allowed: {', '.join(spec.choices)}{extra})")
        return key, spec.choices.index(key)
    if spec.kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise _Bad(f"expected an integer; got {raw!r}")
        try:
            value = float(raw)
        except (ValueError, OverflowError):
            raise _Bad(f"expected an integer; got {raw!r}") from None
        if math.isfinite(value) and value != round(value):
            raise _Bad(f"expected an integer; got {raw!r}")
        label = str(int(value)) if math.isfinite(value) else str(raw)
    else:
        value = _parse_quantity(raw, spec.dimension)
        label = raw.strip() if isinstance(raw, str) else _label(raw)
    _check_bounds(spec, value, label)
    return label, value


def _label(raw: Any) -> str:
    """Display label of a non-string spec value: '0.5' for 0.5, Fraction(1, 2), numpy scalars, '10 min' for pint."""
    try:
        return f"{raw:g}"
    except (TypeError, ValueError):
        return str(raw)


def _check_bounds(spec: schema.ParamSpec, value: float, label: str) -> None:
    if not math.isfinite(value):
        raise _Bad(f"{label} is not a finite number")
    if spec.low is not None and value < spec.low:
        raise _Bad(f"{label} is below the minimum {_fmt(spec.low, spec.dimension)} ({spec.doc})")
    if spec.high is not None and value > spec.high:
        raise _Bad(f"{label} is above the maximum {_fmt(spec.high, spec.dimension)} ({spec.doc})")


def _expand_axis(spec: schema.ParamSpec, raw: Any, catalog) -> list[tuple[str, float | int]]:
    """The (label, value) pairs of one [axes] entry, in order; raises _Bad."""
    forms = "a list, \"*\" (catalog parameters) or a table with one of " + ", ".join(AXIS_FORMS)
    if isinstance(raw, str) and raw.strip() == "*":
        if spec.kind != "catalog":
            takes = {"choice": "a list of " + ", ".join(spec.choices or ()), "int": "a list or pow2/range/log",
                     "float": "a list or range/linspace/log"}[spec.kind]
            raise _Bad(f"'*' (a whole catalog class) only works for catalog parameters "
                       f"(hardware, model, region, fabric); this one takes {takes}")
        return [(n, int(catalog.index(spec.catalog_kind, n))) for n in catalog.names(spec.catalog_kind)]
    if isinstance(raw, Mapping):
        form = [k for k in raw if k in AXIS_FORMS]
        other = [k for k in raw if k not in AXIS_FORMS + ("step", "count")]
        if len(form) != 1 or other:
            raise _Bad(f"an axis table needs exactly one of {', '.join(AXIS_FORMS)} (plus step for range, "
                       f"count for linspace/log); got keys {', '.join(raw)}")
        if form[0] != "values":
            return _generate(spec, form[0], raw)
        if set(raw) - {"values"}:
            raise _Bad("values takes no step or count")
        raw = raw["values"]
    if not isinstance(raw, list):
        raise _Bad(f"an axis is {forms}; got {raw!r} (to hold one value, put it under [fixed])")
    if not raw:
        raise _Bad("empty axis; give at least one value")
    pairs, problems = [], []
    for item in raw:
        try:
            pairs.append(_parse_value(spec, item, catalog))
        except _Bad as exc:
            problems.append(str(exc))
    if problems:
        raise _Bad("; ".join(problems))
    seen: dict[float, str] = {}
    for label, value in pairs:
        if value in seen:
            again = "appears twice" if label == seen[value] else f"repeats {seen[value]!r}"
            raise _Bad(f"{label!r} {again}; every value of an axis must be distinct")
        seen[value] = label
    return pairs


def _generate(spec: schema.ParamSpec, form: str, table: Mapping) -> list[tuple[str, float | int]]:
    """Expand pow2 / range / linspace / log bounds into values (ints rounded and deduplicated)."""
    if spec.kind not in ("int", "float"):
        raise _Bad(f"{form} is for numeric parameters; a {spec.kind} axis takes a list"
                   + (" or \"*\"" if spec.kind == "catalog" else ""))
    bounds = table[form]
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise _Bad(f"{form} needs [low, high]; got {bounds!r}")
    extra = set(table) - {form, {"range": "step", "linspace": "count", "log": "count"}.get(form, "")}
    if extra:
        raise _Bad(f"{form} does not take {', '.join(sorted(extra))}")
    is_int = spec.kind == "int"
    lo, hi = (_number(spec, b, f"{form} bound") for b in bounds)
    if lo > hi:
        raise _Bad(f"{form} low {bounds[0]!r} is greater than high {bounds[1]!r}")
    if form == "pow2":
        if not is_int:
            raise _Bad("pow2 is for integer parameters; use log with a count for quantities")
        if lo <= 0:
            raise _Bad(f"pow2 bounds must be positive; got {bounds!r}")
        k0, k1 = (math.ceil(lo) - 1).bit_length(), int(math.floor(hi)).bit_length() - 1
        values = np.array([2.0**k for k in range(k0, max(k0, k1 + 1))])
    elif form == "range":
        step = _number(spec, table.get("step", 1 if is_int else None), "step")
        if step <= 0:
            raise _Bad(f"range step must be > 0; got {table.get('step')!r}")
        n = math.floor((hi - lo) / step * (1 + 1e-12)) + 1
        _check_len(n)
        values = lo + step * np.arange(n)
    else:
        count = table.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise _Bad(f"{form} needs count = a positive integer; got {count!r}")
        _check_len(count)
        if form == "log" and lo <= 0:
            raise _Bad(f"log bounds must be positive; got {bounds!r}")
        values = (np.geomspace if form == "log" else np.linspace)(lo, hi, count)
        if is_int:
            values = np.unique(np.round(values))
        elif count > 1 and lo == hi:
            raise _Bad(f"{form} [{bounds[0]!r}, {bounds[1]!r}] with count {count} repeats one value")
    if values.size == 0:
        raise _Bad(f"empty axis: no power of two lies in [{bounds[0]!r}, {bounds[1]!r}]")
    labels = [str(int(v)) if is_int else _fmt(v, spec.dimension) for v in values.tolist()]
    low = -np.inf if spec.low is None else spec.low
    high = np.inf if spec.high is None else spec.high
    bad = np.flatnonzero((values < low) | (values > high))
    if bad.size:
        _check_bounds(spec, float(values[bad[0]]), labels[bad[0]])
    return list(zip(labels, values.tolist()))


def _number(spec: schema.ParamSpec, raw: Any, what: str) -> float:
    if raw is None:
        raise _Bad(f"a range of {spec.dimension} values needs step = a quantity, e.g. step = \"10 min\"")
    if spec.kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int) or abs(raw) > INT64_MAX:
            raise _Bad(f"{what} must be an integer; got {raw!r}")
        return float(raw)
    value = _parse_quantity(raw, spec.dimension)
    if not math.isfinite(value):
        raise _Bad(f"{what} must be finite; got {raw!r}")
    return value


def _check_len(n: int) -> None:
    if n > MAX_AXIS_LEN:
        raise _Bad(f"the axis would have {n:,} values; at most {MAX_AXIS_LEN:,} per axis")


# --------------------------------------------------------------------------- loading

def load_space(source: str | Path | Mapping[str, Any], *, catalog=None) -> Space:
    """Read and validate a spec: a TOML path, a name in spaces/ ("capstone") or a dict.

    Raises SpecError listing every mistake (one line each) with the file and key.
    """
    if isinstance(source, Mapping):
        label, data = "<dict>", dict(source)
    elif not isinstance(source, (str, os.PathLike)):
        raise SpecError(f"load_space(): expected a spec: a TOML path, a name in spaces/ (e.g. 'capstone') "
                        f"or a dict; got {source!r:.80} ({type(source).__name__})")
    else:
        path = _resolve(source)
        label = str(source) if Path(source).exists() else _display_path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{label}: TOML syntax error: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{label}: cannot read the spec: {exc}") from None
        data.setdefault("name", path.stem)
    if catalog is None:
        from .catalog import load_catalog
        catalog = load_catalog()
    return _build(label, data, catalog)


def list_spaces(directory: str | Path | None = None) -> list[SpaceInfo]:
    """The spec files of `directory` (default: the repository's spaces/), sorted by name.

    Reads only name/scenario/description (a broken file shows its error as description).
    """
    folder = Path(directory) if directory is not None else SPACES_DIR
    infos = []
    for path in sorted(folder.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
            infos.append(SpaceInfo(path.stem, path, "?", f"(unreadable: {exc})"))
            continue
        infos.append(SpaceInfo(str(data.get("name", path.stem)), path, str(data.get("scenario", "?")),
                               " ".join(str(data.get("description", "")).split())))
    return infos


def _resolve(source: str | Path) -> Path:
    path = Path(source)
    if path.exists():
        return path
    if path.suffix == "" and (SPACES_DIR / f"{path.name}.toml").exists():
        return SPACES_DIR / f"{path.name}.toml"
    known = [p.stem for p in sorted(SPACES_DIR.glob("*.toml"))]
    raise SpecError(f"{source}: no such spec file;{suggest(str(path.stem), known)}"
                    f" (ready spaces in {_display_path(SPACES_DIR)}: {', '.join(known) or 'none'})")


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(SPACES_DIR.parent))
    except ValueError:
        return str(path)


def _build(src: str, data: dict, catalog) -> Space:
    errors: list[str] = []

    def err(section: str | None, key: str, msg: str) -> None:
        where = (f"[{section}] {key}" if key else f"[{section}]") if section else key
        errors.append(f"{src}: {where}: {msg}")

    for key in data:
        if key not in TOP_KEYS:
            err(None, key, f"unknown top-level key;{suggest(key, TOP_KEYS)} (allowed: {', '.join(TOP_KEYS)})")
    tables = {}
    for key in ("fixed", "axes", "constraints", "objectives", "search", "sweep"):
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            err(None, key, f"must be a table ([{key}]); got {value!r}")
            value = {}
        tables[key] = value
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            err(None, key, f"must be a string; got {data[key]!r}")
    scenario = data.get("scenario")
    if not isinstance(scenario, str) or scenario not in schema.PARAMS:
        msg = "missing; " if scenario is None else f"unknown scenario {scenario!r};{suggest(str(scenario), schema.SCENARIOS)} "
        err(None, "scenario", f"{msg}(allowed: {', '.join(schema.SCENARIOS)})")
        raise SpecError("\n".join(errors))
    params = schema.PARAMS[scenario]

    # [fixed]
    fixed: dict[str, float | int] = {}
    fixed_labels: dict[str, str] = {}
    for name, raw in tables["fixed"].items():
        if name not in params:
            err("fixed", name, _unknown_param(name, scenario))
        elif isinstance(raw, (list, Mapping)) or (isinstance(raw, str) and raw.strip() == "*"):
            err("fixed", name, f"a fixed value is one value; got {raw!r} (to sweep it, move it to [axes])")
        else:
            try:
                fixed_labels[name], fixed[name] = _parse_value(params[name], raw, catalog)
            except _Bad as exc:
                err("fixed", name, str(exc))

    # [axes]
    axes: list[Axis] = []
    for name, raw in tables["axes"].items():
        if name not in params:
            err("axes", name, _unknown_param(name, scenario))
            continue
        if name in tables["fixed"]:
            err("axes", name, "is both fixed and an axis; keep it in one of [fixed] or [axes]")
            continue
        try:
            pairs = _expand_axis(params[name], raw, catalog)
        except _Bad as exc:
            err("axes", name, str(exc))
            continue
        kind = params[name].kind
        dtype = np.int64 if kind in ("catalog", "choice") else np.float64
        axes.append(Axis(name, kind, tuple(p[0] for p in pairs), np.array([p[1] for p in pairs], dtype)))

    if not tables["axes"]:
        err("axes", "", "no axes; a space needs at least one axis (a one-value list such as tp = [8] is fine)")

    # defaults and required parameters
    defaults: dict[str, float | int] = {}
    for name, spec in params.items():
        if name in tables["fixed"] or name in tables["axes"]:
            continue
        if spec.default is None:
            err("fixed", name, f"required for the {scenario} scenario ({spec.doc}); "
                f"give it under [fixed] or [axes]{_example(spec)}")
            continue
        try:
            defaults[name] = _parse_value(spec, spec.default, catalog)[1]
        except _Bad as exc:   # e.g. a catalog without the default entry
            err("fixed", name, f"the default {spec.default!r} does not apply ({exc}); give it under [fixed]")

    size = math.prod(len(a.labels) for a in axes)
    if size > INT64_MAX:
        err("axes", "", f"the space has {size:.3e} configurations, more than an int64 index "
            f"allows ({INT64_MAX:.3e}); remove or shorten axes")

    limits = _limits(scenario, tables["constraints"], err)
    objectives, report = _objectives(scenario, tables["objectives"], err)
    search = _settings("search", tables["search"], SEARCH_DEFAULTS, err)
    sweep = _settings("sweep", tables["sweep"], SWEEP_DEFAULTS, err)

    if not errors:   # cross-parameter checks need every value parsed
        values = {**{k: np.array([v]) for k, v in {**defaults, **fixed}.items()},
                  **{a.name: a.values for a in axes}}
        _feasibility(scenario, values, {a.name for a in axes}, limits, catalog, err)
    if errors:
        raise SpecError("\n".join(errors))
    return Space(name=str(data.get("name", "space")), description=" ".join(str(data.get("description", "")).split()),
                 scenario=scenario, source=src, axes=tuple(axes), fixed=fixed, defaults=defaults,
                 limits=limits, objectives=objectives, report=report, search=search, sweep=sweep,
                 catalog=catalog, fixed_labels=fixed_labels)


def _unknown_param(name: str, scenario: str) -> str:
    allowed = schema.PARAMS[scenario]
    return (f"not a parameter of the {scenario} scenario;{suggest(name, allowed)}"
            f" (allowed: {', '.join(allowed)})")


def _example(spec: schema.ParamSpec) -> str:
    return {"models": ', e.g. model = "llama3_70b"', "tokens": ', e.g. n_tokens = "1.5e12 token"',
            "rate": ', e.g. request_rate = "1000 /s"'}.get(spec.catalog_kind or spec.dimension or "", "")


def _limits(scenario: str, table: Mapping, err) -> dict[str, tuple[str, float]]:
    """[constraints] key = value -> {output: (sense, SI value)} with sanity checks."""
    allowed = schema.LIMITS[scenario]
    limits = {}
    for key, raw in table.items():
        if key not in allowed:
            err("constraints", key, f"unknown constraint for the {scenario} scenario;{suggest(key, allowed)}"
                f" (allowed: {', '.join(allowed)})")
            continue
        output, sense, dim = allowed[key]
        try:
            value = _parse_quantity(raw, dim)
        except _Bad as exc:
            err("constraints", key, str(exc))
            continue
        unit = schema.OUTPUTS[scenario][output].unit
        if not math.isfinite(value):
            err("constraints", key, f"must be finite; got {raw!r}")
        elif sense == "max" and value <= 0:
            err("constraints", key, f"no configuration can satisfy {output} <= {_fmt(value, unit)}; "
                "an upper limit must be > 0")
        elif sense == "min" and unit == "frac" and not 0 <= value <= 1:
            err("constraints", key, f"no configuration can satisfy {output} >= {value:g}; "
                "a fraction limit must lie in [0, 1]")
        elif dim == "count" and value != round(value):
            err("constraints", key, f"must be a whole number; got {raw!r}")
        else:
            limits[output] = (sense, value)
    return limits


def _objectives(scenario: str, table: Mapping, err) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    outputs = schema.OUTPUTS[scenario]
    for key in table:
        if key not in ("minimize", "maximize", "report"):
            err("objectives", key, f"unknown key;{suggest(key, ('minimize', 'maximize', 'report'))}"
                " (allowed: minimize, maximize, report)")
    lists = {}
    for key in ("minimize", "maximize", "report"):
        raw = table.get(key, [])
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            err("objectives", key, f"must be a list of output names; got {raw!r}")
            raw = []
        good = []
        for name in raw:
            if name not in outputs:
                err("objectives", key, f"{name!r} is not an output of the {scenario} scenario;"
                    f"{suggest(name, outputs)} (allowed: {', '.join(outputs)})")
            elif key != "report" and outputs[name].unit == "code":
                err("objectives", key, f"{name!r} is a category code, not a quantity to optimize; "
                    "list it under report")
            elif name in good:
                err("objectives", key, f"{name!r} is listed twice")
            else:
                good.append(name)
        lists[key] = good
    both = set(lists["minimize"]) & set(lists["maximize"])
    for name in sorted(both):
        err("objectives", "maximize", f"{name!r} is both minimized and maximized")
    objectives = tuple((n, "min") for n in lists["minimize"]) + tuple((n, "max") for n in lists["maximize"])
    if not table.get("minimize") and not table.get("maximize"):
        err("objectives", "minimize", "no objectives; name at least one output under minimize or "
            f"maximize (allowed: {', '.join(n for n, o in outputs.items() if o.unit != 'code')})")
    report = tuple(n for n in lists["report"] if n not in dict(objectives))
    return objectives, report


def _settings(section: str, table: Mapping, defaults: dict, err) -> dict:
    out = dict(defaults)
    for key, raw in table.items():
        if key not in defaults:
            err(section, key, f"unknown key;{suggest(key, defaults)} (allowed: {', '.join(defaults)})")
        elif key == "algorithm":
            if raw not in SEARCH_ALGORITHMS:
                err(section, key, f"unknown algorithm {raw!r};{suggest(str(raw), SEARCH_ALGORITHMS)}"
                    f" (allowed: {', '.join(SEARCH_ALGORITHMS)})")
            else:
                out[key] = raw
        elif isinstance(raw, bool) or not isinstance(raw, int) or raw < (0 if key == "seed" else 1):
            err(section, key, f"must be a {'non-negative' if key == 'seed' else 'positive'} integer; got {raw!r}")
        else:
            out[key] = raw
    if section == "search" and out["pop_size"] > out["evals"]:
        err(section, "pop_size", f"pop_size {out['pop_size']} exceeds evals {out['evals']}")
    return out


def _feasibility(scenario: str, values: dict[str, np.ndarray], axis_names: set[str], limits, catalog,
                 err) -> None:
    """Reject spaces where a structural constraint fails for EVERY configuration.

    values: parameter -> array of the values it takes in the space (SI / codes).
    """
    def where(name: str) -> str:
        return "axes" if name in axis_names else "fixed"

    tp = values["tp"]
    hw = catalog.tables()
    per_node = np.asarray(hw.hw.accelerators_per_node)[values["hardware"].astype(int)]
    _smallest_above_largest(err, where, "tp", tp, "accelerators_per_node", per_node,
                            "the hardware in the space has at most {} accelerators per node")
    n_layers = np.asarray(hw.model.n_layers)[values["model"].astype(int)]
    _smallest_above_largest(err, where, "pp", values["pp"], "n_layers", n_layers,
                            "the models in the space have at most {} layers")
    has = np.asarray(hw.hw.has_precision)[np.ix_(values["hardware"].astype(int), values["precision"].astype(int))]
    if not has.any():
        hw_names = [catalog.names("accelerators")[int(i)] for i in values["hardware"]]
        precisions = [PRECISIONS[int(i)] for i in values["precision"]]
        err(where("precision"), "precision",
            f"no configuration can satisfy the precision constraint: none of {', '.join(hw_names)} "
            f"supports {' or '.join(precisions)}")
    if scenario != "training":
        return
    deg = np.multiply.outer(np.multiply.outer(tp, values["pp"]), values["ep"]).ravel()
    n = values["n_accelerators"]
    if not (np.mod.outer(n, np.unique(deg)) == 0).any():
        err(where("n_accelerators"), "n_accelerators",
            f"no configuration can satisfy tp·pp·ep dividing n_accelerators: tp·pp·ep takes "
            f"{_few(np.unique(deg))} and n_accelerators takes {_few(n)}")
    n_experts = np.asarray(hw.model.n_experts)[values["model"].astype(int)]
    _smallest_above_largest(err, where, "ep", values["ep"], "n_experts", n_experts,
                            "the models in the space have at most {} experts (1 for a dense model)")
    # dp >= 1 wherever divisibility holds, so dp·ep·microbatches >= min(ep)·min(microbatches).
    split = values["ep"].min() * values["microbatches"].min()
    if split > values["global_batch"].max():
        err(where("microbatches"), "microbatches",
            f"no configuration can satisfy dp·ep·microbatches <= global_batch: the smallest ep·microbatches "
            f"is {split:g} (dp >= 1) but global_batch is at most {values['global_batch'].max():g}")
    if "n_accelerators" in limits and n.min() > limits["n_accelerators"][1]:
        err("constraints", "max_accelerators",
            f"no configuration can satisfy n_accelerators <= {limits['n_accelerators'][1]:g}: "
            f"the smallest n_accelerators in the space is {n.min():g}")



def _smallest_above_largest(err, where, param: str, values, bound: str, bounds, what: str) -> None:
    """Report `param` when even its smallest value exceeds the largest `bound` in the space."""
    if values.min() > bounds.max():
        err(where(param), param,
            f"no configuration can satisfy {param} <= {bound}: the smallest {param} is {values.min():g} "
            f"but {what.format(format(bounds.max(), 'g'))}")

def _few(values: np.ndarray) -> str:
    vals = [f"{v:g}" for v in np.unique(values)]
    return "{" + ", ".join(vals[:8]) + (", ..." if len(vals) > 8 else "") + "}"


__all__ = ["Axis", "Space", "SpaceInfo", "load_space", "list_spaces", "column_name", "AXIS_FORMS"]
