"""Walls 8-10 (mlsys_opt.walls.data): golden values, batched == scalar,
gradients against finite differences, and properties (x64 via conftest)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from wallcheck import PROP, all_finite, check_case, close, fd_check

from mlsys_opt._types import TOPOLOGIES
from mlsys_opt.walls import data

ingestion = jax.jit(data.ingestion)
transformation = jax.jit(data.transformation)
transformation_time = jax.jit(data.transformation_time)
locality = jax.jit(data.locality)
bisection = jax.jit(data.bisection_fraction)


# ============================================================================ examples
# (seed golden values: tests/golden.py)
def test_ingestion_seed003_text_training_is_not_data_bound():
    # seed 003 §3: 4 samples/GPU × 512 GPUs × 2048 tokens × 2 B ≈ 8 MB per step, ~1 step/s.
    demand = 4 * 512 * 2048 * 2.0
    r = ingestion(demand, 5e9)  # one NVMe-class 5 GB/s supply
    assert not bool(r.stalled)
    close(r.utilization, demand / 5e9)
    assert float(r.effective_throughput_frac) == 1.0
    assert float(r.margin_bytes_per_s) < 0


def test_ingestion_stalled_case():
    r = ingestion(10e9, 5e9)
    close(r.utilization, 2.0)
    assert bool(r.stalled)
    close(r.stall_frac, 0.5)
    close(r.effective_throughput_frac, 0.5)
    close(r.margin_bytes_per_s, 5e9)
    z = ingestion(0.0, 0.0)  # nothing demanded: no stall
    assert float(z.stall_frac) == 0.0 and float(z.utilization) == 0.0


def test_transformation_rate_form():
    r = transformation(24_000.0, 200.0, 64.0)
    close(r.supply_samples_per_s, 12_800.0)
    close(r.utilization, 24_000 / 12_800)
    close(r.cores_required, 120.0)
    close(r.stall_frac, 1 - 12_800 / 24_000)
    close(r.time_per_sample_s, 1 / 12_800)
    assert bool(r.stalled)


def test_transformation_seed_form():
    # seed 002 wall 9: Time = Batch × Sequence / CPU_Throughput
    r = transformation_time(256.0, 2048.0, 1e6, 0.4)   # step 0.524288 s: tests/golden.py
    close(r.transform_s, 256 * 2048 / 1e6)
    close(r.accelerator_utilization_frac, 0.4 / 0.524288)
    close(r.slowdown, 0.524288 / 0.4)
    assert bool(r.stalled)
    ok = transformation_time(64.0, 2048.0, 1e6, 0.4)
    assert not bool(ok.stalled) and float(ok.accelerator_utilization_frac) == 1.0
    assert float(ok.slowdown) == 1.0


def test_locality_and_topologies():
    code = {name: i for i, name in enumerate(TOPOLOGIES)}
    codes = jnp.array([code[k] for k in ("fat_tree", "torus", "ring", "dragonfly", "switch")])
    close(bisection(codes, 64.0), [1.0, 0.5, 2 / 64, 0.85, 1.0])  # 3-D torus k = 4 -> 2/k
    close(bisection(code["torus"], 4096.0, torus_dims=2.0), 2 / 64)  # 64×64 2-D torus
    close(bisection(code["ring"], 2.0), 1.0)  # small rings clip to full bisection
    close(bisection(code["ring"], 1.0), 1.0)
    assert data.TORUS == code["torus"] and data.RING == code["ring"]


# ============================================================================ batched == scalar
CASES = {
    "ingestion": (data.ingestion, [(1e6, 1e11, 1), (1e6, 1e11, 1)]),
    "transformation": (data.transformation, [(1.0, 1e6, 1), (1.0, 1e4, 1), (1.0, 512.0, 1)]),
    "transformation_time": (data.transformation_time,
                            [(1, 4096, 1), (1, 32768, 1), (1e3, 1e9, 1), (1e-3, 10.0, 1)]),
    "locality": (data.locality, [(1e9, 1e12, 1), (0.0, 1.0, 0), (1.0, 8.0, 0)]),
    "bisection_fraction": (lambda c, n, d: data.bisection_fraction(jnp.floor(c), n, torus_dims=d),
                           [(0.0, 4.999, 0), (1.0, 1e5, 1), (1.0, 4.0, 0)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_equals_scalar(name):
    check_case(CASES, name)


def test_float32_default_path():
    r = ingestion(jnp.float32(1e10), jnp.float32(5e9))
    assert r.utilization.dtype == jnp.float32
    assert bisection(jnp.int32(1), jnp.float32(512.0)).dtype == jnp.float32


# ============================================================================ gradients
def test_grad_ingestion_wall8():
    g = fd_check(lambda s: ingestion(10e9, s).stall_frac, 5e9)
    close(g, -1 / 10e9)
    fd_check(lambda d: ingestion(d, 5e9).utilization, 3e9)


def test_grad_transformation_wall9():
    fd_check(lambda x: transformation_time(256.0, 2048.0, x, 0.4).accelerator_utilization_frac,
             1e6)
    fd_check(lambda n: transformation(24_000.0, 200.0, n).stall_frac, 64.0)


def test_grad_locality_wall10():
    fd_check(lambda o: locality(50e9, 0.5, o), 2.0)
    fd_check(lambda n: bisection(1, n), 512.0)


# ============================================================================ properties
rate = st.floats(0.0, 1e12)


@PROP
@given(d=rate, s=rate, k=st.floats(1.0, 1e3))
def test_more_supply_never_more_stall(d, s, k):
    a, b = ingestion(d, s), ingestion(d, s * k)
    assert float(b.stall_frac) <= float(a.stall_frac) + 1e-15
    for r in (a, b):
        assert 0.0 <= float(r.stall_frac) <= 1.0
        assert 0.0 <= float(r.effective_throughput_frac) <= 1.0
        assert all_finite(r)
        np.testing.assert_allclose(float(r.stall_frac) + float(r.effective_throughput_frac), 1.0)


@PROP
@given(req=st.floats(0.0, 1e6), per_core=st.floats(0.0, 1e4), n=st.floats(0.0, 512.0),
       extra=st.floats(0.0, 512.0))
def test_more_cores_never_more_stall(req, per_core, n, extra):
    a, b = transformation(req, per_core, n), transformation(req, per_core, n + extra)
    assert float(b.stall_frac) <= float(a.stall_frac) + 1e-15
    assert all_finite(a) and all_finite(b)


@PROP
@given(b=st.floats(0.0, 4096.0), s=st.floats(0.0, 1e5), x=st.floats(0.0, 1e9),
       t=st.floats(0.0, 10.0))
def test_transformation_time_finite_and_bounded(b, s, x, t):
    r = transformation_time(b, s, x, t)
    assert all_finite(r)
    assert 0.0 <= float(r.accelerator_utilization_frac) <= 1.0
    assert float(r.slowdown) >= 1.0 or t == 0.0


@PROP
@given(code=st.integers(0, len(TOPOLOGIES) - 1), n=st.floats(1.0, 1e6), k=st.floats(1.0, 100.0),
       bw=st.floats(1e9, 1e12), o=st.floats(1.0, 8.0))
def test_locality_properties(code, n, k, bw, o):
    beta, beta_big = float(bisection(code, n)), float(bisection(code, n * k))
    assert 0.0 < beta_big <= beta <= 1.0  # bigger networks never gain bisection fraction
    assert float(locality(bw, beta, o)) <= bw
    assert float(locality(bw, beta, o * k)) <= float(locality(bw, beta, o))
