"""Issue 7 item 4 (spec parser): fuzzing.  Whatever a person writes, `load_space` returns a valid
`Space` or raises the project's own `SpecError` -- never KeyError, TypeError, OverflowError,
pint's errors or a traceback from numpy -- and every line of the message names the file.

Inputs: random TOML documents (every TOML type, datetimes included) written to disk; random
value-level mutations of the real spaces/*.toml (replace / delete / add a key anywhere);
byte-level mutations (cuts, junk, invalid UTF-8); Python-only objects in dict specs (numpy
scalars, tuples, sets, bytes, Decimal, pint quantities); and `units.parse` on random text.
Every parsed Space is checked for internal consistency.  The real catalog is used throughout.
"""
from __future__ import annotations

import copy
import datetime as dt
import decimal
import fractions
import json
import math
from pathlib import Path

import numpy as np
import pytest
import tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys_opt import units
from mlsys_opt.catalog import load_catalog
from mlsys_opt.errors import MlsysOptError, SpecError
from mlsys_opt.scenarios import schema
from mlsys_opt.space.spec import AXIS_FORMS, SPACES_DIR, TOP_KEYS, Space, load_space

CAT = load_catalog()
REAL = {p.name: p.read_text(encoding="utf-8") for p in sorted(SPACES_DIR.glob("*.toml"))}
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])


# --------------------------------------------------------------------------- a TOML writer

def _key(k) -> str:
    return json.dumps(str(k))


def _val(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)                       # a valid TOML basic string (\\uXXXX escapes)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_val(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def to_toml(data: dict) -> str:
    """TOML text of a dict: scalars/arrays at the top, one [table] per top-level dict."""
    lines = [f"{_key(k)} = {_val(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"[{_key(k)}]")
            lines += [f"{_key(kk)} = {_val(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- strategies

PARAMS = sorted(set(schema.TRAINING_PARAMS) | set(schema.SERVING_PARAMS))
OUTPUT_NAMES = sorted(set(schema.TRAINING_OUTPUTS) | set(schema.SERVING_OUTPUTS))
LIMIT_KEYS = sorted(set(schema.LIMITS["training"]) | set(schema.LIMITS["serving"]))
WORDS = (CAT.names("accelerators")[:6] + CAT.names("models")[:4] + CAT.names("regions")[:3]
         + ["*", "h100", "H100 SXM", "h1000", "fp8", "bf16", "fp4", "int3", "full", "onprem", "cloud",
            "10 min", "-10 min", "3.35 TB/s", "3.35 TB", "989 TFLOPs", "1e12 token", "1e400 token", "5 h",
            "30 day", "1000 /s", "0 /s", "nan", "inf s", "-3", "1e-320 s", "0x10", "1/0 s", "20 degC",
            "1 year", "  ", "", "é", "\u0000", "nsga2", "time_to_train_s", "tco_usd", "p99_latency_s",
            "mfu", "bottleneck", "2**64", "1e19"])
TOML_SCALARS = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.sampled_from([0, 1, 2, 3, 4, 8, 16, 64, 1024, 2**31, 2**62])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0.0, -0.0, 0.5, 1.0, 1e-300, 1e300, 1.5])
    | st.text(max_size=8)
    | st.sampled_from(WORDS)
    | st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1))
    | st.dates() | st.times()
)
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.sampled_from(list(AXIS_FORMS) + ["step", "count", "junk", "minimize"]), inner, max_size=3),
    max_leaves=10)
KEYS = st.sampled_from(PARAMS + LIMIT_KEYS + ["minimize", "maximize", "report", "algorithm", "evals",
                                              "pop_size", "seed", "chunk_size", "front_capacity", "junk", ""])
SECTIONS = ("fixed", "axes", "constraints", "objectives", "search", "sweep")


@st.composite
def toml_documents(draw):
    doc = {}
    if draw(st.integers(0, 9)) > 0:
        doc["scenario"] = draw(st.sampled_from(["training", "serving", "trainig", "x"]) | TOML_SCALARS)
    for key in draw(st.lists(st.sampled_from(TOP_KEYS + ("junk", "axis")), max_size=8, unique=True)):
        if key in SECTIONS and draw(st.integers(0, 5)) > 0:
            doc[key] = draw(st.dictionaries(KEYS, TOML_VALUES, max_size=6))
        elif key != "scenario":
            doc[key] = draw(TOML_VALUES)
    return doc


def _paths(tree, prefix=()):
    """Every (path, value) of a parsed TOML tree (dict keys and list positions)."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for k, v in items:
        yield prefix + (k,), v
        if isinstance(v, (dict, list)):
            yield from _paths(v, prefix + (k,))


def _mutate(tree, path, how: str, new):
    parent = tree
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    if how == "replace":
        parent[last] = new
    elif how == "delete":
        del parent[last]
    elif how == "add" and isinstance(parent, dict):
        parent[f"{last}_x" if isinstance(new, (dict, list)) else str(new)[:12] or "k"] = new
    elif how == "add":
        parent.append(new)


# --------------------------------------------------------------------------- the oracle

def check_outcome(source, label: str) -> Space | None:
    """load_space(source) returns a consistent Space or raises SpecError whose lines all start with `label`."""
    try:
        space = load_space(source, catalog=CAT)
    except SpecError as exc:
        message = str(exc)
        assert message.strip(), "empty error message"
        for line in message.splitlines():
            assert line.startswith(f"{label}: "), f"a line does not name the file:\n{line}\n(full: {message})"
        assert "Traceback" not in message
        return None
    except MlsysOptError as exc:                     # an MlsysOptError that is not a SpecError: still ours
        pytest.fail(f"load_space raised {type(exc).__name__}, not SpecError: {exc}")
    _check_space(space)
    return space


def _check_space(space: Space) -> None:
    assert space.scenario in schema.SCENARIOS
    assert space.axes and space.objectives
    assert space.size == math.prod(space.radices) >= 1 and space.size <= 2**63 - 1
    params = schema.PARAMS[space.scenario]
    assert set(space.constants) | set(space.axis_names) == set(params)
    assert not set(space.constants) & set(space.axis_names)
    for axis in space.axes:
        spec = params[axis.name]
        assert len(axis.labels) == len(axis.values) == len(set(axis.labels)) >= 1, axis
        assert len(np.unique(axis.values)) == len(axis.values), f"{axis.name}: repeated values"
        values = np.asarray(axis.values, np.float64)
        assert np.isfinite(values).all(), axis
        if spec.low is not None:
            assert (values >= spec.low).all(), axis
        if spec.high is not None:
            assert (values <= spec.high).all(), axis
        if spec.kind == "int":
            assert (values == np.round(values)).all(), axis
        first = space.digits_for({axis.name: axis.labels[-1]})           # labels parse back to their digit
        assert first[space.axis_names.index(axis.name)] == len(axis.labels) - 1, axis
    for name, value in space.constants.items():
        assert math.isfinite(float(value)), (name, value)
    for out, (sense, limit) in space.limits.items():
        assert sense in ("min", "max") and math.isfinite(limit), (out, limit)
    for name, sense in space.objectives:
        assert name in schema.OUTPUTS[space.scenario] and sense in ("min", "max")
    assert isinstance(space.describe(), str)


# --------------------------------------------------------------------------- the tests

@FUZZ
@given(doc=toml_documents())
def test_random_toml_documents(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("doc") / "random.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    check_outcome(path, str(path))


@FUZZ
@given(name=st.sampled_from(sorted(REAL)), data=st.data())
def test_value_mutations_of_the_real_spaces(tmp_path_factory, name, data):
    tree = tomllib.loads(REAL[name])
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p, _ in _paths(tree)]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        how = data.draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        _mutate(tree, path, how, data.draw(TOML_VALUES))
    path = tmp_path_factory.mktemp("mut") / name
    path.write_text(to_toml(tree), encoding="utf-8")
    check_outcome(path, str(path))


@FUZZ
@given(name=st.sampled_from(sorted(REAL)), cut=st.integers(0, 10**6), length=st.integers(0, 40),
       junk=st.binary(max_size=8) | st.sampled_from([b"", b"\xff\xfe", b"\n[axes]\n", b"]", b"=", b"\"",
                                                     b"\nscenario = 1\n", b"#", b"\x00", b"[[axes]]"]))
def test_byte_mutations_of_the_real_spaces(tmp_path_factory, name, cut, length, junk):
    text = REAL[name].encode("utf-8")
    cut %= len(text) + 1
    path = tmp_path_factory.mktemp("bytes") / name
    path.write_bytes(text[:cut] + junk + text[cut + length:])
    check_outcome(path, str(path))


PY_ODDITIES = st.sampled_from([
    None, (1, 2), {1, 2}, b"h100_sxm", bytearray(b"x"), decimal.Decimal("0.5"), fractions.Fraction(1, 2),
    np.float32("nan"), np.float64(1e300), np.int64(8), np.int32(-1), np.bool_(True), np.array([1, 2]),
    np.array(4), complex(1, 1), float("nan"), 10**400, -(10**400), 2**63, object(), Path("x"), dt.timedelta(1),
    units.Q_(10, "minute"), units.Q_(3.35, "TB/s"), units.Q_(float("nan"), "s"), units.Q_(5, "kg"),
    [None], [[1]], {"values": None}, {"pow2": [1, 2**70]}, {"range": [1, 10**9]}, {"log": [1, 1e300], "count": 3},
    {"linspace": ["1 s", "1 GB"], "count": 2}, {"range": ["1 s", "1 h"], "step": "0 s"},
])


@FUZZ
@given(scenario=st.sampled_from(["training", "serving"]), section=st.sampled_from(SECTIONS),
       key=KEYS, value=PY_ODDITIES | TOML_VALUES)
def test_python_objects_in_dict_specs(scenario, section, key, value):
    """load_space(dict) from Python code: objects TOML cannot even express."""
    base = tomllib.loads(REAL["capstone.toml" if scenario == "training" else "llama3_serving.toml"])
    data = copy.deepcopy(base)
    data.setdefault(section, {})[key] = value
    check_outcome(data, "<dict>")


@FUZZ
@given(section=st.sampled_from(SECTIONS + ("name", "description", "scenario")), value=PY_ODDITIES | TOML_VALUES)
def test_python_objects_as_whole_sections(section, value):
    data = copy.deepcopy(tomllib.loads(REAL["llama3_70b_training.toml"]))
    data[section] = value
    check_outcome(data, "<dict>")


DIMENSIONS = list(units.DIMENSIONS)
UNIT_WORDS = ["B", "GB", "GiB", "TB/s", "Gb/s", "Gbps", "FLOP", "TFLOP/s", "TFLOPs", "s", "ms", "us", "min", "h",
              "day", "year", "W", "kW", "J", "kWh", "USD", "$", "g", "kg", "t", "gCO2e", "kgCO2e", "L", "/s",
              "token", "param", "degC", "K", "m", "%", "dimensionless", "1/h", "$/h", "g/kWh", "L/kWh"]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(dim=st.sampled_from(DIMENSIONS),
       text=st.text(max_size=12)
       | st.builds(lambda n, u: f"{n} {u}", st.sampled_from(["1", "-1", "0", "1e400", "nan", "inf", "3.35", "1e-400",
                                                             "30,000", "1_000", "0x10", "1/0", "(1", "2**1024"]),
                   st.sampled_from(UNIT_WORDS))
       | st.builds(lambda a, b: f"{a} {b}", st.sampled_from(UNIT_WORDS), st.sampled_from(UNIT_WORDS))
       | st.floats() | st.integers() | st.sampled_from([None, True, [1], {"a": 1}, units.Q_(1, "degC")]),
       positive=st.booleans())
def test_units_parse_returns_a_finite_float_or_raises_mlsys_opt_error(dim, text, positive):
    try:
        value = units.parse(text, dim, positive=positive, field="f.toml: [x] y")
    except MlsysOptError as exc:
        assert str(exc).startswith("f.toml: [x] y: expected "), str(exc)
        return
    assert isinstance(value, float) and math.isfinite(value)
    assert value > 0 or not positive


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_spaces_parse_and_are_consistent(name):
    space = check_outcome(SPACES_DIR / name, str(SPACES_DIR / name))
    assert space is not None, name


@pytest.mark.parametrize("text, dim", [("10**400 GB", "bytes"), ("2**1024D", "bandwidth"), ("10**400", "count"),
                                       (10**400, "count"), (-(10**400), "usd")],
                         ids=["10**400 GB", "2**1024D", "'10**400'", "int 10**400", "int -10**400"])
def test_units_parse_refuses_huge_integers(text, dim):
    """Regression (issue 7): found failing, since fixed.

    Was: mlsys_opt/units.py parse(): (a) `q.unitless` (line `bare = ... or q.unitless`) converts the
    quantity to root units outside any try, so an integer power too large for a float ("10**400 GB")
    raises OverflowError; (b) `math.isfinite(float(value))` raises OverflowError for a Python int
    beyond 1.8e308 (load_space({... "constraints": {"budget": 10**400}})).  Both should be
    MlsysOptError ("... which is not a finite number").  (a) is reachable from catalog files:
    with_entries("accelerators", {"h100_sxm": {"mem_capacity": "10**400 GB"}})."""
    with pytest.raises(MlsysOptError, match="expected"):
        units.parse(text, dim)
    if dim == "bytes":
        with pytest.raises(MlsysOptError, match="mem_capacity"):
            CAT.with_entries("accelerators", {"h100_sxm": {"mem_capacity": text}})


def test_load_space_python_objects_give_spec_errors():
    """Regression (issue 7): found failing, since fixed.

    Was: mlsys_opt/space/spec.py (found by test_python_objects_in_dict_specs):
    (a) _parse_value() formats a numeric label with f"{raw:g}", which raises TypeError for a
        fractions.Fraction (a numbers.Real that units.parse accepts): {"fixed": {"efficiency": Fraction(1, 2)}};
    (b) _build() tests `raw == "*"` on [fixed] values, which raises ValueError ("truth value of an array
        is ambiguous") for a numpy array: {"fixed": {"model": np.array([1, 2])}};
    (c) units.parse overflow via {"constraints": {"budget": 10**400}} (see the units test).
    All three must be SpecError naming the [section] key."""
    base = tomllib.loads(REAL["llama3_serving.toml"])
    problems = []
    for section, key, value in (("fixed", "efficiency", fractions.Fraction(1, 2)),
                                ("fixed", "model", np.array([1, 2])),
                                ("constraints", "budget", 10**400)):
        data = copy.deepcopy(base)
        data.setdefault(section, {})[key] = value
        try:
            load_space(data, catalog=CAT)       # Fraction(1, 2) may also be accepted as 0.5
        except SpecError as exc:
            if f"[{section}] {key}" not in str(exc):
                problems.append(f"[{section}] {key}: message does not name the key: {exc}")
        except Exception as exc:   # noqa: BLE001
            problems.append(f"[{section}] {key} = {str(value)[:20]}: {type(exc).__name__}: {exc}")
    assert not problems, "\n".join(problems)


CATALOG_TOML = {kind: tomllib.loads((Path(load_catalog.__code__.co_filename).parent / f"{kind}.toml")
                                    .read_text(encoding="utf-8"))
                for kind in ("accelerators", "models", "fabrics", "regions")}


@FUZZ
@given(kind=st.sampled_from(sorted(CATALOG_TOML)), data=st.data())
def test_catalog_entry_mutations(tmp_path_factory, kind, data):
    """User catalog files: a mutated copy of built-in entries loads or raises CatalogError naming the file."""
    entries = CATALOG_TOML[kind]
    names = data.draw(st.lists(st.sampled_from(sorted(entries)), min_size=1, max_size=2, unique=True))
    tree = {kind: {n: copy.deepcopy(entries[n]) for n in names}}
    if data.draw(st.booleans()):
        tree[kind][f"{names[0]}_copy"] = {"based_on": names[0], "source": "fuzz"}
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p, _ in _paths(tree) if len(p) >= 3]
        path = data.draw(st.sampled_from(paths))
        _mutate(tree, path, data.draw(st.sampled_from(["replace", "replace", "delete", "add"])),
                data.draw(TOML_VALUES | st.sampled_from(WORDS)))
    body = "\n".join(f"[{_key(kind)}.{_key(n)}]\n" + "\n".join(f"{_key(k)} = {_val(v)}" for k, v in e.items())
                     for n, e in tree[kind].items()) + "\n"
    path = tmp_path_factory.mktemp("cat") / "mine.toml"
    path.write_text(body, encoding="utf-8")
    try:
        cat = load_catalog(extra=path)
    except MlsysOptError as exc:
        assert str(exc).startswith(f"{path}: "), str(exc)
        return
    frame = cat.frames[kind]
    numeric = frame.select_dtypes("number")
    assert np.isfinite(numeric.to_numpy(np.float64)).all(), "a NaN/inf reached the catalog"
