"""Design-space specs: a TOML file (or dict) -> a validated `Space` of mixed-radix axes.

A spec names a scenario (`schema.PARAMS` key), fixes some parameters, makes
others axes, sets limits on outputs and picks objectives; `spaces/README.md`
is the format reference.  Every other parameter takes its schema default.

A configuration is identified by its digits d (int32 [n_axes], one per axis,
0 <= d_k < radix_k); the space holds prod_k radix_k configurations and the
sweep decodes digit chunks on the device (`mlsys_opt.space.indexing`).
`Space.param_values(digits)` turns digits into the scenario's inputs: plain SI
floats for "int"/"float" parameters, int32 row codes for "catalog"/"choice"
ones (ARCHITECTURE.md: categoricals are integer indices gathered inside jit).

Validation happens at load time, once (issue 7 item 1): every mistake of a
file is collected and raised together as one `SpecError`, one line per
mistake, each naming the file, the [section] key, the value and what is
allowed.  The work is shared by three modules:

    space/spec.py     Space / Axis, load_space (reads the file, [fixed], [axes]), list_spaces
    space/values.py   one value -> (label, SI float or code); one [axes] entry -> its values
    space/checks.py   [constraints], [objectives], [search], [sweep]; whole-space feasibility

pint never leaves them: quantities are parsed with `mlsys_opt.units.parse`
into SI floats.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

import numpy as np

from ..errors import SpecError, did_you_mean
from ..scenarios import schema
from .checks import (
    SEARCH_ALGORITHMS,
    check_feasibility,
    example_for,
    parse_limits,
    parse_objectives,
    parse_settings,
    unknown_param_message,
)
from .values import AXIS_FORMS, INT64_MAX, MAX_AXIS_LEN, BadValue, expand_axis, format_si, parse_value

if TYPE_CHECKING:
    import pandas as pd

SPACES_DIR = Path(__file__).resolve().parents[2] / "spaces"
TOP_KEYS = ("name", "description", "scenario", "fixed", "axes", "constraints", "objectives",
            "search", "sweep")
SEARCH_DEFAULTS = {"algorithm": "nsga2", "evals": 20000, "pop_size": 200, "seed": 0}
SWEEP_DEFAULTS = {"chunk_size": 65536, "front_capacity": 4096}
_COLUMN_SUFFIX = {"time": "s", "bandwidth": "bytes_per_s", "rate": "per_s", "memory": "bytes", "energy": "j",
                  "power": "w", "usd": "usd", "carbon_mass": "kg", "volume": "l"}


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
        from .indexing import space_size   # numpy only (no JAX): `mlsys-opt spaces list` stays light
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
        import jax
        import jax.numpy as jnp

        dtype = jnp.float32 if dtype is None else dtype
        # host digits (numpy, lists): built in numpy and put on the device in one transfer -- the
        # same numbers without an eager jnp op (each of which compiles a small program at start-up)
        xp = np if isinstance(digits, (np.ndarray, list, tuple)) else jnp
        digits = xp.asarray(digits)
        n = digits.shape[0]
        out = {}
        for k, axis in enumerate(self.axes):
            coded = axis.kind in ("catalog", "choice")
            table = xp.asarray(axis.values, jnp.int32 if coded else dtype)
            out[axis.name] = xp.take(table, digits[:, k], mode="clip")
        for name, value in self.constants.items():
            coded = self.params[name].kind in ("catalog", "choice")
            out[name] = xp.full((n,), value, jnp.int32 if coded else dtype)
        out = {name: out[name] for name in self.params}
        return jax.device_put(out) if xp is np else out

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
                errors.append(f"{self.source}: {name}: not an axis of {self.name}"
                              f"{did_you_mean(name, by_name)} (axes: {', '.join(by_name)})")
                continue
            axis = self.axes[by_name[name]]
            try:
                _, value = parse_value(self.params[name], raw, self.catalog)
            except BadValue as exc:
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
        limits = ", ".join(f"{out} {'<=' if sense == 'max' else '>='} {format_si(v, units[out].unit)}"
                           for out, (sense, v) in self.limits.items()) or "none"
        objs = ", ".join(f"{sense}imize {name}" for name, sense in self.objectives)
        text = (f"{self.name} ({self.scenario}, {self.source}): {self.size:,} configurations"
                f" = {axes}. Fixed: {fixed}. Limits: {limits}. Objectives: {objs}.")
        return text + (f" {short_description(self.description)}" if self.description else "")


MAX_DESCRIPTION_SHOWN = 600   # characters of a description printed in headers (a spec may hold megabytes)


def short_description(text: str, limit: int = MAX_DESCRIPTION_SHOWN) -> str:
    """`text` cut to `limit` characters at a word boundary, with the size of what was left out."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return f"{cut} ... ({len(text) - len(cut):,} more characters in the spec)"


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
    return format_si(value, spec.dimension)


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
        data = _read_spec(path, label)
        data.setdefault("name", path.stem)
    if catalog is None:
        from ..catalog import load_catalog
        catalog = load_catalog()
    return _build(label, data, catalog)


def list_spaces(directory: str | Path | None = None) -> list[SpaceInfo]:
    """The spec files of `directory` (default: the repository's spaces/), sorted by name.

    Reads only name/scenario/description (a broken file shows its error as description).
    """
    folder = Path(directory) if directory is not None else SPACES_DIR
    if not folder.is_dir():
        raise SpecError(f"{directory}: no such folder (give a folder of spec files)")
    infos = []
    for path in sorted(folder.glob("*.toml")):
        try:
            data = _read_spec(path, path.name)
        except SpecError as exc:
            infos.append(SpaceInfo(path.stem, path, "?", f"(unreadable: {exc})"))
            continue
        infos.append(SpaceInfo(str(data.get("name", path.stem)), path, str(data.get("scenario", "?")),
                               " ".join(str(data.get("description", "")).split())))
    return infos


def _read_spec(path: Path, label: str) -> dict:
    """The TOML table of a spec file; SpecError naming `label` for unreadable, non-UTF-8, malformed or
    too deeply nested files (a UTF-8 BOM is accepted)."""
    from ..catalog._files import decode_text, loads_toml, read_limited
    if path.exists() and not path.is_file():
        raise SpecError(f"{label}: cannot read the spec: not a regular file (a folder, device or pipe)")
    try:
        raw = read_limited(path, f"{label}: cannot read the spec", SpecError)
    except OSError as exc:
        raise SpecError(f"{label}: cannot read the spec: {exc.strerror or exc}") from None
    text = decode_text(raw, f"{label}: cannot read the spec", SpecError)
    return loads_toml(text, label, SpecError, syntax="TOML syntax error")


def _resolve(source: str | Path) -> Path:
    path = Path(source)
    if path.exists():
        return path
    if path.suffix == "" and (SPACES_DIR / f"{path.name}.toml").exists():
        return SPACES_DIR / f"{path.name}.toml"
    known = [p.stem for p in sorted(SPACES_DIR.glob("*.toml"))]
    scenario = did_you_mean(str(path.stem), schema.SCENARIOS) if path.suffix == "" and len(path.parts) == 1 else ""
    if scenario:        # mo.evaluate("trianing"): the scenario was meant, not a spec file
        raise SpecError(f"{source}: not a scenario or spec file{scenario.replace('mean ', 'mean the scenario ')}"
                        f" (scenarios: {', '.join(schema.SCENARIOS)}; ready spaces: {', '.join(known) or 'none'})")
    raise SpecError(f"{source}: no such spec file{did_you_mean(str(path.stem), known)}"
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
            err(None, key, f"unknown top-level key{did_you_mean(key, TOP_KEYS)} (allowed: {', '.join(TOP_KEYS)})")
    tables = {}
    for key in ("fixed", "axes", "constraints", "objectives", "search", "sweep"):
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            err(None, key, f"must be a table ([{key}]); got {value!r}")
            value = {}
        tables[key] = value
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            err(None, key, f"must be a string; got {data[key]!r:.80}")
    name = data.get("name")
    if isinstance(name, str) and (not name.strip() or name.strip(".") == "" or name.startswith("~")
                                  or any(c in name for c in "/\\:\0") or os.path.isabs(name)):
        err(None, "name", f"{name!r:.80} cannot name output files (a plain file name is needed: no folders, "
            "no '/', '\\' or ':', not '.' or '..'), e.g. name = \"my_space\"")
    scenario = data.get("scenario")
    if not isinstance(scenario, str) or scenario not in schema.PARAMS:
        msg = ("missing" if scenario is None
               else f"unknown scenario {scenario!r}{did_you_mean(str(scenario), schema.SCENARIOS)}")
        err(None, "scenario", f"{msg} (allowed: {', '.join(schema.SCENARIOS)})")
        raise SpecError("\n".join(errors))
    params = schema.PARAMS[scenario]

    # [fixed]
    fixed: dict[str, float | int] = {}
    fixed_labels: dict[str, str] = {}
    for name, raw in tables["fixed"].items():
        if name not in params:
            err("fixed", name, unknown_param_message(name, scenario))
        elif isinstance(raw, (list, Mapping)) or (isinstance(raw, str) and raw.strip() == "*"):
            err("fixed", name, f"a fixed value is one value; got {raw!r} (to sweep it, move it to [axes])")
        else:
            try:
                fixed_labels[name], fixed[name] = parse_value(params[name], raw, catalog)
            except BadValue as exc:
                err("fixed", name, str(exc))

    # [axes]
    axes: list[Axis] = []
    for name, raw in tables["axes"].items():
        if name not in params:
            err("axes", name, unknown_param_message(name, scenario))
            continue
        if name in tables["fixed"]:
            err("axes", name, "is both fixed and an axis; keep it in one of [fixed] or [axes]")
            continue
        try:
            pairs = expand_axis(params[name], raw, catalog)
        except BadValue as exc:
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
                f"give it under [fixed] or [axes]{example_for(spec)}")
            continue
        try:
            defaults[name] = parse_value(spec, spec.default, catalog)[1]
        except BadValue as exc:   # e.g. a catalog without the default entry
            err("fixed", name, f"the default {spec.default!r} does not apply ({exc}); give it under [fixed]")

    size = math.prod(len(a.labels) for a in axes)
    if size > INT64_MAX:
        err("axes", "", f"the space has {size:.3e} configurations, more than an int64 index "
            f"allows ({INT64_MAX:.3e}); remove or shorten axes")

    limits = parse_limits(scenario, tables["constraints"], err)
    objectives, report = parse_objectives(scenario, tables["objectives"], err)
    search = parse_settings("search", tables["search"], SEARCH_DEFAULTS, err)
    sweep = parse_settings("sweep", tables["sweep"], SWEEP_DEFAULTS, err)

    if not errors:   # cross-parameter checks need every value parsed
        values = {**{k: np.array([v]) for k, v in {**defaults, **fixed}.items()},
                  **{a.name: a.values for a in axes}}
        check_feasibility(scenario, values, {a.name for a in axes}, limits, catalog, err)
    if errors:
        raise SpecError("\n".join(errors))
    return Space(name=str(data.get("name", "space")), description=" ".join(str(data.get("description", "")).split()),
                 scenario=scenario, source=src, axes=tuple(axes), fixed=fixed, defaults=defaults,
                 limits=limits, objectives=objectives, report=report, search=search, sweep=sweep,
                 catalog=catalog, fixed_labels=fixed_labels)


__all__ = ["Axis", "Space", "SpaceInfo", "load_space", "list_spaces", "column_name", "AXIS_FORMS", "INT64_MAX",
           "MAX_AXIS_LEN", "SEARCH_ALGORITHMS", "SPACES_DIR", "TOP_KEYS"]
