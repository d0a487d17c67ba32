"""Fast start of the light commands (issue 15): `catalog list` and `spaces list` import neither pandas
nor pint once the caches are warm, and the caches give exactly what validating again gives.

- the built-in catalog's validated rows (``catalog._cached``): the same fingerprint as a validation,
  a damaged file is ignored and rewritten;
- the command line's validated specs (``cli.spec_cache``): every field the same, with the same types;
  a damaged file is ignored; another catalog is another key;
- display units without pint (``cli.report.display_factor``): each factor is pint's.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _leaves(x, path=""):
    """(path, type, value) of every leaf, arrays by dtype, shape and bytes: equal means identical."""
    if isinstance(x, np.ndarray):
        yield path, "ndarray", (x.dtype.str, x.shape, x.tobytes())
    elif isinstance(x, dict):
        yield path, "dict", tuple(x)
        for k, v in x.items():
            yield from _leaves(v, f"{path}.{k}")
    elif isinstance(x, tuple) and hasattr(x, "_fields"):
        yield path, type(x).__name__, x._fields
        for k in x._fields:
            yield from _leaves(getattr(x, k), f"{path}.{k}")
    elif isinstance(x, (list, tuple)):
        yield path, type(x).__name__, len(x)
        for i, v in enumerate(x):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, type(x).__name__, x


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSYS_OPT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_catalog_rows_cache_gives_the_validated_rows(cache):
    import shutil

    from mlsys_opt.catalog import (
        _DATA_DIR,
        _FILES,
        KINDS,
        _cached,
        _load,
        achievable,
        load_catalog,
    )
    validated = load_catalog()._rows                         # (the process's catalog, validated or cached)
    shutil.rmtree(cache, ignore_errors=True)                  # (its load may have filled this folder)
    calls = []

    def validate():
        calls.append(1)
        return validated
    files = [_DATA_DIR / _FILES[k] for k in KINDS] + [achievable.PATH]
    first = _cached.cached_rows(files, validate, _load.fingerprint)
    second = _cached.cached_rows(files, validate, _load.fingerprint)
    assert len(calls) == 1                                    # the second came from the file
    assert list(_leaves(second)) == list(_leaves(validated)) and first is validated
    assert _load.fingerprint(second) == _load.fingerprint(validated)
    [entry] = list((cache / _cached.FOLDER).glob("*.json"))
    data = json.loads(entry.read_text())
    data["rows"]["accelerators"]["h100_sxm"]["tdp_w"] = 701.0   # a changed value: the fingerprint refuses it
    entry.write_text(json.dumps(data))
    assert list(_leaves(_cached.cached_rows(files, validate, _load.fingerprint))) == list(_leaves(validated))
    assert len(calls) == 2
    entry.write_text("{not json")
    _cached.cached_rows(files, validate, _load.fingerprint)
    assert len(calls) == 3 and json.loads(entry.read_text())["format"] == _cached.FORMAT   # rewritten whole
    os.environ["MLSYS_OPT_CACHE_DIR"] = "off"
    _cached.cached_rows(files, validate, _load.fingerprint)
    assert len(calls) == 4


def test_spec_cache_gives_the_same_space(cache, tmp_path):
    from mlsys_opt.catalog import load_catalog
    from mlsys_opt.cli import spec_cache
    from mlsys_opt.space.spec import load_space
    cat = load_catalog()
    spec = ROOT / "spaces" / "capstone.toml"
    fresh = load_space(str(spec), catalog=cat)
    first = spec_cache.load_space_cached(str(spec), cat)
    [entry] = list((cache / spec_cache.FOLDER).glob("*.json"))
    second = spec_cache.load_space_cached(str(spec), cat)
    for space in (first, second):
        assert space.catalog is cat
        for f in dataclasses.fields(fresh):
            if f.name != "catalog":
                assert list(_leaves(getattr(space, f.name))) == list(_leaves(getattr(fresh, f.name))), f.name
    assert second.size == fresh.size and second.radices == fresh.radices
    entry.write_text(entry.read_text()[:-40])                 # damaged: parsed again, rewritten
    again = spec_cache.load_space_cached(str(spec), cat)
    assert list(_leaves(again.axes)) == list(_leaves(fresh.axes))
    json.loads(entry.read_text())
    # another catalog (a user entry) is another key; an invalid spec raises every time, nothing cached
    other = cat.with_entries("regions", {"my_grid": {"based_on": "quebec", "carbon_intensity": "5 g/kWh"}})
    spec_cache.load_space_cached(str(spec), other)
    assert len(list((cache / spec_cache.FOLDER).glob("*.json"))) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('scenario = "training"\n[axes]\ntp = [1, 2]\n[objectives]\nminimize = ["nope_s"]\n')
    from mlsys_opt.errors import SpecError
    for _ in range(2):
        with pytest.raises(SpecError, match="bad.toml"):
            spec_cache.load_space_cached(str(bad), cat)
    assert len(list((cache / spec_cache.FOLDER).glob("*.json"))) == 2


def test_display_factors_are_pints():
    from mlsys_opt.cli import report
    from mlsys_opt.units import convert
    for (dim, unit), f in report._DISPLAY_FACTORS.items():
        assert f == convert(1.0, dim, unit), (dim, unit)
    assert report.display_factor("bandwidth", "PB/s") == convert(1.0, "bandwidth", "PB/s")   # not in the table
    for v in (3.35e12, 989e12, 80e9, 2e-6, 1.8e8, 0.123):
        for dim, unit in (("bandwidth", "TB/s"), ("time", "hour"), ("energy", "MWh"), ("carbon", "tCO2e")):
            assert f"{report.convert_si(v, dim, unit):.4g}" == f"{convert(v, dim, unit):.4g}"


CHILD = """
import contextlib, io, json, sys
from mlsys_opt.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    codes = [main(["catalog", "list"]), main(["spaces", "list"])]
print(json.dumps({"codes": codes, "loaded": [m for m in ("pandas", "pint", "jax") if m in sys.modules],
                  "out": out.getvalue()}))
"""


def test_catalog_and_spaces_list_import_neither_pandas_nor_pint_when_warm(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLSYS_OPT_CACHE_DIR": str(tmp_path / "cache"),
           "MLSYS_OPT_CATALOG": ""}

    def run():
        proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])
    cold, warm = run(), run()
    assert cold["codes"] == warm["codes"] == [0, 0]
    assert "pint" in cold["loaded"] and warm["loaded"] == [], warm["loaded"]     # the first run validates
    assert warm["out"] == cold["out"] and "h100_sxm" in warm["out"] and "286,720" in warm["out"]


def test_prune_keeps_the_most_recent_entries(tmp_path):
    from mlsys_opt import _cache
    for i in range(5):
        p = tmp_path / f"{i}.step"
        _cache.write_atomically(p, b"x")
        os.utime(p, (1000 + i, 1000 + i))
    (tmp_path / "other.json").write_text("{}")
    _cache.prune(tmp_path, "*.step", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3.step", "4.step", "other.json"]
    _cache.prune(tmp_path / "missing", "*.step", 0)          # no folder: nothing to do, no error
