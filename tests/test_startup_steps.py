"""The compiled-step cache (issue 15, fast start): `sweeps.executables`.

A second sweep of the same problem loads the engine's compiled step instead of tracing, lowering
and compiling it, and gives the identical result; an entry written by other code (another source
hash) is not used, a corrupt or truncated one is ignored and rebuilt, never a crash; another
problem (here: another limit) gets its own entry; "off" disables it.  One small space, swept in
this process (x64, the tests' setting) with the cache pointed at a temporary folder.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsys_opt.cli.timings import CompileEvents
from mlsys_opt.space.spec import load_space
from mlsys_opt.sweeps import api, executables

SPEC = {
    "name": "steps_small", "scenario": "training",
    "fixed": {"model": "llama3_70b", "n_tokens": "1e12 token", "global_batch": 2048},
    "axes": {"hardware": ["h100_sxm", "b200"], "n_accelerators": [256, 512], "tp": [4, 8]},
    "objectives": {"minimize": ["time_to_train_s", "tco_usd"]},
}


def _sweep(space, **kw):
    timings: dict = {}
    with CompileEvents() as ev:
        res = api.sweep(space, progress=False, timings=timings, **kw)
    status = timings["_step_cache"][0] if "_step_cache" in timings else None
    return res, status, ev


def _same(a, b):
    pd.testing.assert_frame_equal(a.front, b.front)
    assert (a.n_evaluated, a.n_feasible, dict(a.infeasible_by)) == (b.n_evaluated, b.n_feasible, dict(b.infeasible_by))
    for k in a.best:
        pd.testing.assert_frame_equal(a.best[k], b.best[k])


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv(executables.ENV, str(tmp_path / "steps"))
    return tmp_path / "steps"


def test_a_second_sweep_loads_the_step_and_gives_the_same_front(folder):
    """A corrupt entry where the sweep looks (one flipped byte) is ignored and compiled over; the next
    sweep loads that step: no tracing, lowering or compiling, the identical front."""
    space = load_space(SPEC)
    path = _cache(space, folder).path                          # the entry this sweep reads and writes
    executables.write_entry(path, {"parts": {}, "config": {}}, b"x" * 100)
    blob = bytearray(path.read_bytes())
    blob[-50] ^= 0xFF
    path.write_bytes(bytes(blob))
    first, status, _ = _sweep(space)
    assert status.startswith("rebuilt (entry ignored: checksum"), status
    assert [p.name for p in folder.iterdir()] == [path.name]     # rewritten in place, no temporary left
    second, status, ev = _sweep(load_space(SPEC))           # a new Space object, the same problem
    assert status == "loaded"
    assert ev.counts.get("trace", 0) == 0 and ev.counts.get("lower", 0) == 0 and ev.counts.get("xla", 0) == 0, \
        dict(ev.counts)
    _same(first, second)
    assert len(first.front) >= 1 and first.n_feasible >= 1


def _cache(space, folder, **kw):
    """The StepCache a sweep of `space` would use (no compiling)."""
    import jax

    from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
    names = api.output_names(space)
    counts = api.engine_counts(space, names)
    engine = {"chunk_size": 8, "front_capacity": 4096, "top_k": 5, **kw}
    return api._step_cache(space, DEFAULT_EFFICIENCY, jax.numpy.float32, None, names, None, counts, **engine)


def test_entries_that_do_not_match_are_ignored(folder, monkeypatch):
    """Truncated, corrupt, other key parts, other engine config: ignored (a miss), never used; another
    source hash, another limit, another chunk size, another dtype: another key."""
    space = load_space(SPEC)
    cache = _cache(space, folder)
    config = {"lanes": 8, "n_obj": 2, "n_constr": 3, "n_aux": 4, "columns": True, "dtypes": ["float32"] * 3}
    executables.write_entry(cache.path, {"parts": cache.parts, "config": config}, b"payload")
    ok = _cache(space, folder)
    assert ok.path == cache.path and ok.status == "miss" and ok._payload == b"payload"
    assert [s.shape for s in ok.shapes(8)] == [(2, 8), (3, 8), (4, 8)] and ok.shapes(16) is None
    blob = cache.path.read_bytes()
    for bad, why in ((blob[:-1], "checksum"), (blob[:20], "not a step cache entry"),
                     (blob[:60] + bytes([blob[60] ^ 1]) + blob[61:], "checksum")):
        cache.path.write_bytes(bad)
        c = _cache(space, folder)
        assert c._header is None and c.shapes(8) is None and why in c.status, c.status
    executables.write_entry(cache.path, {"parts": {**cache.parts, "program": {}}, "config": config}, b"x")
    c = _cache(space, folder)
    assert c._header is None and c.status == "rebuilt (entry ignored: written for other key parts)"
    keys = {cache.key, _cache(space, folder, chunk_size=16).key,
            _cache(load_space({**SPEC, "constraints": {"max_time": "200 day"}}), folder).key,
            _cache(load_space({**SPEC, "fixed": {**SPEC["fixed"], "global_batch": 1024}}), folder).key}
    monkeypatch.setattr(executables, "source_hash", lambda: "0" * 64)
    keys.add(_cache(space, folder).key)
    assert len(keys) == 5
    monkeypatch.setenv(executables.ENV, "off")
    assert executables.cache_dir() is None and _cache(space, folder) is None
    monkeypatch.delenv(executables.ENV)
    import jax
    if not jax.config.jax_compilation_cache_dir:       # no folder given and JAX's cache off: off
        assert executables.cache_dir() is None


def test_exact_key_parts():
    """Floats by their exact bits, arrays by dtype, shape and bytes: 0.1 and 0.1 + 1e-17 differ, float32 != float64."""
    e = executables.exact
    assert e(0.1) != e(0.1 + 2**-56) and e(1) != e(1.0) and e(True) is True
    assert e(np.arange(3, dtype=np.float32)) != e(np.arange(3, dtype=np.float64))
    assert e({"b": 1, "a": (2.0, "x")}) == {"a": [e(2.0), "x"], "b": 1}
    assert len(executables.source_hash()) == 64
