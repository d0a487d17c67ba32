"""Walls 21-22 and the iron law (mlsys_opt.walls.analysis), and the wall registry."""
from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from golden import A100_PEAK, DAY, H100_BW, H100_PEAK
from wallcheck import Sampler, assert_batched_equals_scalar, assert_grad_matches_fd

from mlsys_opt.errors import MlsysOptError
from mlsys_opt.walls import analysis as an
from mlsys_opt.walls import fleet, registry

_sample = Sampler(21)
RNG, logu, u = _sample.rng, _sample.logu, _sample.u


# ----------------------------------------------------------------------------- helpers

class Roof(NamedTuple):
    peak_flop_per_s: object
    mem_bw_bytes_per_s: object
    bytes_moved: object
    flop: object


def roofline_time(p: Roof):
    return jnp.maximum(p.flop / p.peak_flop_per_s, p.bytes_moved / p.mem_bw_bytes_per_s)


# ----------------------------------------------------------------------------- iron law, wall 22
# (the seed 000/002/003 golden values are rows of tests/golden.py)

def test_iron_law_is_flop_over_the_loss_cascade():
    t = float(an.iron_law(3.15e23, 1024, A100_PEAK, 0.5, 1.0, 1.0))
    np.testing.assert_allclose(t, 3.15e23 / (1024 * A100_PEAK * 0.5), rtol=1e-12)
    c = an.loss_cascade(1024, A100_PEAK, 0.5, 0.6, 0.9)
    np.testing.assert_allclose([c.peak_flop_per_s, c.after_mfu_flop_per_s], [1024 * A100_PEAK, 512 * A100_PEAK],
                               rtol=1e-12)
    np.testing.assert_allclose(an.iron_law(1e21, 1024, A100_PEAK, 0.5, 0.6, 0.9), 1e21 / c.effective_flop_per_s,
                               rtol=1e-12)


def test_required_bandwidth_seed002():
    # "50 ms decode for a 140 GB model needs at least 2.8 TB/s" (tests/golden.py)
    bw = float(an.required_bandwidth(140e9, 0.050))
    assert bw > 2.0e12         # more than one A100 (2.0 TB/s)
    assert bw < 2 * H100_BW    # two H100s (TP = 2) cover it; 140 GB also needs two 80 GB devices
    np.testing.assert_allclose(an.required_memory_bytes(140e9), 140e9)
    assert float(an.required_memory_bytes(140e9)) > 80e9


def test_required_flop_memory_devices():
    np.testing.assert_allclose(an.required_memory_bytes(140e9, 20e9, usable_frac=0.9), 160e9 / 0.9, rtol=1e-12)
    # seed 003 exercise 3: Llama-3 70B on 15T tokens in 14 days on H100 at 40 % MFU (tests/golden.py)
    n = float(an.required_devices(6 * 70e9 * 15e12, 14 * DAY, H100_PEAK, 0.4, 1.0, 1.0))
    assert int(np.ceil(n)) == 13_166
    # round trip with the iron law
    np.testing.assert_allclose(an.iron_law(6.3e24, n, H100_PEAK, 0.4, 1.0, 1.0), 14 * DAY, rtol=1e-12)


def test_grads_finite_at_zero_targets():
    for g in (jax.grad(lambda t: an.required_bandwidth(1e9, t))(0.0),
              jax.grad(lambda m: an.iron_law(1e20, 8.0, 1e15, m, 1.0, 1.0))(0.0),
              jax.grad(lambda t: an.required_devices(1e24, t, 1e15, 0.4, 1.0, 1.0))(0.0),
              jax.grad(lambda e: an.required_flop_per_s(1e12, 1.0, e))(0.0)):
        assert np.isfinite(float(g))


def test_synthesis_is_finite_at_zero_targets():
    for v in (an.required_bandwidth(140e9, 0.0), an.required_flop_per_s(1e12, 0.0, 0.0),
              an.required_devices(1e24, 0.0, H100_PEAK, 0.0, 0.0, 0.0), an.iron_law(1e24, 0.0, H100_PEAK, 0.4, 1.0, 1.0),
              an.required_memory_bytes(1e9, usable_frac=0.0)):
        assert np.isfinite(float(v)) and float(v) > 0


# ----------------------------------------------------------------------------- wall 21: elasticities

def test_elasticities_memory_bound_roofline():
    p = Roof(H100_PEAK, H100_BW, 140e9, 2 * 70e9)  # decode of a 70B model: memory-bound
    e = an.elasticities(roofline_time, p)
    assert isinstance(e, Roof)
    np.testing.assert_allclose([e.peak_flop_per_s, e.mem_bw_bytes_per_s, e.bytes_moved, e.flop],
                               [0.0, -1.0, 1.0, 0.0], atol=1e-12)
    assert int(an.binding(e)) == 1 and an.binding_name(e) == "mem_bw_bytes_per_s"  # ties go to the first
    # over the hardware only (the workload held in the closure), compute-bound: peak binds
    hw = {"peak_flop_per_s": H100_PEAK, "mem_bw_bytes_per_s": H100_BW}
    e = an.elasticities(lambda h: roofline_time(Roof(h["peak_flop_per_s"], h["mem_bw_bytes_per_s"], 1e6, 1e15)), hw)
    np.testing.assert_allclose([e["peak_flop_per_s"], e["mem_bw_bytes_per_s"]], [-1.0, 0.0], atol=1e-12)
    assert an.binding_name(e) == "peak_flop_per_s"


def test_elasticities_dict_iron_law_and_int_leaves():
    params = {"total_flop": 3.15e23, "n_devices": 1024, "peak": A100_PEAK, "mfu": 0.5, "eta": 0.6, "goodput": 0.9}

    def t(p):
        return an.iron_law(p["total_flop"], p["n_devices"], p["peak"], p["mfu"], p["eta"], p["goodput"])

    e = an.elasticities(t, params)
    assert list(e) == list(params)
    np.testing.assert_allclose([e[k] for k in params], [1.0, 0.0, -1.0, -1.0, -1.0, -1.0], rtol=1e-12)
    # the int leaf (n_devices = 1024) is held fixed; as a float it has elasticity -1
    e = an.elasticities(t, {**params, "n_devices": 1024.0})
    np.testing.assert_allclose(e["n_devices"], -1.0, rtol=1e-12)


def test_elasticities_match_log_finite_differences_and_select_fields():
    class Fab(NamedTuple):
        bw_inter: object
        overlap: object
        t_compute: object

    def step(p):
        return fleet.parallel_step(p.t_compute, dp=128.0, tp=8.0, pp=4.0, grad_bytes=140e9,
                                   tp_act_bytes_per_layer=64e6, n_layers=80.0, bw_intra_bytes_per_s=450e9,
                                   bw_inter_bytes_per_s=p.bw_inter, alpha_intra_s=1e-6, alpha_inter_s=5e-6,
                                   n_microbatches=16.0, overlap_frac=p.overlap)

    p = Fab(50e9, 0.5, 2.0)
    e = an.elasticities(step, p, field="step_s")
    for name in Fab._fields:
        x = getattr(p, name)
        h = 1e-6
        up = float(step(p._replace(**{name: x * np.exp(h)})).step_s)
        dn = float(step(p._replace(**{name: x * np.exp(-h)})).step_s)
        np.testing.assert_allclose(float(getattr(e, name)), (np.log(up) - np.log(dn)) / (2 * h), rtol=1e-6)
    # output_index on a tuple output selects the same thing
    e2 = an.elasticities(lambda q: tuple(step(q)), p, output_index=7)
    np.testing.assert_allclose(np.asarray(e2), np.asarray(e), rtol=1e-12)


def test_elasticities_batched_jit_and_vmap():
    class HW(NamedTuple):
        peak_flop_per_s: object
        mem_bw_bytes_per_s: object

    n = 2_000
    p = Roof(logu(1e12, 1e15, n), logu(1e11, 1e13, n), logu(1e6, 1e12, n), logu(1e9, 1e15, n))
    direct = jax.jit(lambda q: an.elasticities(roofline_time, q))(p)
    mapped = jax.vmap(lambda q: an.elasticities(roofline_time, q))(p)
    for a, b in zip(direct, mapped):
        assert np.shape(a) == (n,)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-15)
    # binding hardware input, elementwise over the batch (workload in the closure)
    hw = HW(p.peak_flop_per_s, p.mem_bw_bytes_per_s)
    e_hw = jax.jit(lambda h: an.elasticities(lambda q: roofline_time(Roof(*q, p.bytes_moved, p.flop)), h))(hw)
    idx = np.asarray(jax.jit(an.binding)(e_hw))
    mem_bound = np.asarray(p.bytes_moved / p.mem_bw_bytes_per_s > p.flop / p.peak_flop_per_s)
    np.testing.assert_array_equal(idx, np.where(mem_bound, 1, 0))
    names = an.binding_name(e_hw)
    assert names.shape == (n,)
    np.testing.assert_array_equal(names, np.where(mem_bound, "mem_bw_bytes_per_s", "peak_flop_per_s"))


# ----------------------------------------------------------------------------- batched == scalar, gradients

def test_batched_equals_scalar_analysis():
    f, n, pk, m, e, g, t = (logu(1e18, 1e26), logu(1, 1e5), logu(1e12, 1e16), u(0.05, 0.7), u(0.3, 1.0),
                            u(0.5, 1.0), logu(3600, 1e8))
    assert_batched_equals_scalar(an.iron_law, f, n, pk, m, e, g)
    assert_batched_equals_scalar(an.loss_cascade, n, pk, m, e, g)
    assert_batched_equals_scalar(an.required_devices, f, t, pk, m, e, g)
    assert_batched_equals_scalar(an.required_bandwidth, logu(1e6, 1e12), logu(1e-4, 1))
    assert_batched_equals_scalar(an.required_flop_per_s, f, t, m)
    assert_batched_equals_scalar(lambda w, kv, a, uu: an.required_memory_bytes(w, kv, a, usable_frac=uu),
                                 logu(1e6, 1e12), logu(1e6, 1e11), logu(1e6, 1e10), u(0.5, 1.0))


def test_grads_match_finite_differences():
    assert_grad_matches_fd(lambda m: an.iron_law(3.15e23, 1024, A100_PEAK, m, 0.8, 0.9), 0.5)
    assert_grad_matches_fd(lambda t: an.required_devices(6.3e24, t, H100_PEAK, 0.4, 0.8, 0.9), 14 * DAY)
    assert_grad_matches_fd(lambda t: an.required_bandwidth(140e9, t), 0.05)
    assert_grad_matches_fd(lambda e: an.required_flop_per_s(1e12, 0.05, e), 0.5)
    assert_grad_matches_fd(lambda uu: an.required_memory_bytes(140e9, 2e10, usable_frac=uu), 0.9)
    assert_grad_matches_fd(lambda g: an.loss_cascade(1024, A100_PEAK, 0.5, 0.6, g).effective_flop_per_s, 0.9)


# ----------------------------------------------------------------------------- properties

_iron = jax.jit(an.iron_law)
_cascade = jax.jit(an.loss_cascade)
_reqdev = jax.jit(an.required_devices)
_el_iron = jax.jit(lambda p: an.elasticities(lambda q: an.iron_law(*q), p))


class IronIn(NamedTuple):
    flop: object
    n: object
    peak: object
    mfu: object
    eta: object
    goodput: object


frac = st.floats(0.01, 1.0)


@settings(max_examples=50, deadline=None)
@given(f=st.floats(1e15, 1e27), n=st.floats(1.0, 1e6), pk=st.floats(1e9, 1e16), m=frac, e=frac, g=frac)
def test_iron_law_consistency(f, n, pk, m, e, g):
    t = float(_iron(f, n, pk, m, e, g))
    rate = float(_cascade(n, pk, m, e, g).effective_flop_per_s)
    assert np.isfinite(t) and t > 0
    np.testing.assert_allclose(t * rate, f, rtol=1e-12)
    np.testing.assert_allclose(float(_reqdev(f, t, pk, m, e, g)), n, rtol=1e-10)
    el = _el_iron(IronIn(f, n, pk, m, e, g))
    np.testing.assert_allclose([float(x) for x in el], [1.0, -1.0, -1.0, -1.0, -1.0, -1.0], rtol=1e-10)


# ----------------------------------------------------------------------------- registry

SEED_NAMES = ("Compute", "Memory", "Software", "Serving", "Batching", "Streaming", "Tail Latency",
              "Ingestion", "Transformation", "Locality", "Complexity", "Reasoning", "Fidelity",
              "Communication", "Fragility", "Multi-tenant", "Capital", "Sustainability", "Checkpoint",
              "Safety", "Sensitivity", "Synthesis")  # seed 004 "The 22 Walls at a Glance"
MY_MODULES = ("mlsys_opt.walls.algorithm", "mlsys_opt.walls.fleet", "mlsys_opt.walls.ops",
              "mlsys_opt.walls.analysis")
OTHER_MODULES = ("mlsys_opt.walls.node", "mlsys_opt.walls.data", "mlsys_opt.walls.laws")


def _all_specs():
    return registry.WALLS + registry.LAWS


def test_registry_has_the_22_walls_in_order():
    assert tuple(w.number for w in registry.WALLS) == tuple(range(1, 23))
    assert tuple(w.name for w in registry.WALLS) == SEED_NAMES
    expect = {"node": (1, 7), "data": (8, 10), "algorithm": (11, 13), "fleet": (14, 16),
              "operations": (17, 20), "analysis": (21, 22)}
    for domain, (lo, hi) in expect.items():
        assert tuple(w.number for w in registry.walls_in_domain(domain)) == tuple(range(lo, hi + 1))
    for w in registry.WALLS:
        assert w.equation and w.sources and w.domain in registry.DOMAINS and ":" in w.fn_path


def test_registry_lookups_and_errors():
    assert registry.wall(14).name == "Communication"
    assert registry.wall(14).fn is fleet.ring_allreduce
    assert registry.walls_in_domain("ops") == registry.walls_in_domain("operations")
    assert registry.law("iron law").fn is an.iron_law
    for bad in (0, 23, "x"):
        with pytest.raises(MlsysOptError, match="allowed: 1-22"):
            registry.wall(bad)
    with pytest.raises(MlsysOptError, match="did you mean 'fleet'"):
        registry.walls_in_domain("fleat")
    with pytest.raises(MlsysOptError, match="allowed: Iron Law"):
        registry.law("moore")


def test_registry_entries_of_this_room_resolve_and_are_documented():
    seen = 0
    for spec in _all_specs():
        for path in spec.paths:
            module = path.partition(":")[0]
            if module not in MY_MODULES:
                continue
            fn = registry.resolve(path)
            assert callable(fn), path
            doc = inspect.getdoc(fn) or ""
            if path.endswith(("binding_name", "binding", "leaf_names")):
                continue
            assert "Source" in doc and "Worked example" in doc and "Returns" in doc, path
            seen += 1
    assert seen >= 40


@pytest.mark.parametrize("module", OTHER_MODULES)
def test_registry_entries_of_other_room_resolve(module):
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            pytest.skip(f"{module} is not written yet")
        raise
    paths = [p for s in _all_specs() for p in s.paths if p.partition(":")[0] == module]
    assert paths
    for p in paths:
        assert callable(registry.resolve(p)), p


def test_wall_modules_import_only_jax_numpy_and_shared_vocabulary():
    allowed = {"__future__", "typing", "jax", "jax.numpy", "numpy", "mlsys_opt._types", "mlsys_opt.errors",
               "importlib", "dataclasses", "mlsys_opt.walls._masked"}   # _masked: the one masking policy
    root = Path(registry.__file__).parent
    for name in ("algorithm", "fleet", "ops", "analysis", "registry"):
        tree = ast.parse((root / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module]
            else:
                continue
            for m in mods:
                assert m in allowed, f"walls/{name}.py imports {m}"
        assert len((root / f"{name}.py").read_text().splitlines()) < 500
