"""Laws (mlsys_opt.walls.laws): Amdahl, Gustafson, Little, Iron Law, 6PD
training time. Golden values from seeds 000/001/002/004 (x64 via conftest)."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from golden import A100_PEAK, H100_PEAK
from wallcheck import PROP, check_case, close, fd_check

from mlsys_opt.walls import laws

amdahl = jax.jit(laws.amdahl)
gustafson = jax.jit(laws.gustafson)
little = jax.jit(laws.little)
iron = jax.jit(laws.iron_law_time_s)
train_t = jax.jit(laws.training_time_s)


# ============================================================================ identities
# (the seed 000/001 golden values of these laws are rows of tests/golden.py)
def test_amdahl_one_device_is_no_speedup():
    close(amdahl(0.05, 1.0), 1.0)


def test_training_time_is_the_iron_law_of_6pd():
    t = float(train_t(1e9, 20e9, A100_PEAK, 0.40))
    close(t, 6 * 1e9 * 20e9 / (A100_PEAK * 0.40))   # seed 001's 961538 s / 11 days: tests/golden.py
    close(train_t(1e9, 20e9, A100_PEAK, 0.40, 8.0), t / 8)
    flop = float(laws.training_flop(175e9, 300e9))
    close(train_t(175e9, 300e9, A100_PEAK, 0.5, 1024.0), iron(flop, 1024.0, A100_PEAK, 0.5))


def test_iron_law_terms_and_effective_flops():
    t = iron(1e24, 512.0, H100_PEAK, 0.4, 0.85, 0.95)
    close(t, 1e24 / (512 * laws.effective_flop_per_s(H100_PEAK, 0.4, 0.85, 0.95)))


# ============================================================================ batched == scalar
CASES = {
    "amdahl": (laws.amdahl, [(0.0, 1.0, 0), (1.0, 1e5, 1)]),
    "gustafson": (laws.gustafson, [(0.0, 1.0, 0), (1.0, 1e5, 1)]),
    "little": (laws.little, [(0.0, 1e5, 0), (1e-4, 10.0, 1)]),
    "iron_law_time_s": (laws.iron_law_time_s, [(1e18, 1e26, 1), (1.0, 1e5, 1), (1e12, 5e15, 1),
                                               (0.1, 0.7, 0), (0.3, 1.0, 0), (0.5, 1.0, 0)]),
    "training_time_s": (laws.training_time_s, [(1e6, 1e12, 1), (1e9, 1e13, 1), (1e12, 5e15, 1),
                                               (0.1, 0.7, 0), (1.0, 1e5, 1)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_equals_scalar(name):
    check_case(CASES, name)


# ============================================================================ gradients
def test_grads_against_finite_differences():
    fd_check(lambda s: amdahl(s, 8.0), 0.05)
    fd_check(lambda n: amdahl(0.05, n), 8.0)
    fd_check(lambda s: gustafson(s, 1000.0), 0.05)
    fd_check(lambda w: little(1000.0, w), 0.05)
    g = fd_check(lambda m: iron(1e24, 512.0, H100_PEAK, m, 0.85, 0.95), 0.4)
    assert g < 0
    fd_check(lambda u: train_t(1e9, 20e9, A100_PEAK, u), 0.4)


# ============================================================================ properties
frac = st.floats(0.0, 1.0)
count = st.floats(1.0, 1e6)


@PROP
@given(s=frac, n=count, k=st.floats(1.0, 100.0))
def test_amdahl_gustafson_bounds(s, n, k):
    a, a_k = float(amdahl(s, n)), float(amdahl(s, n * k))
    assert 1.0 - 1e-12 <= a <= n * (1 + 1e-12)
    assert a_k >= a * (1 - 1e-12)  # more processors never slower
    if s > 0:
        assert a <= 1.0 / s * (1 + 1e-12)
    g = float(gustafson(s, n))
    assert g >= a * (1 - 1e-12)  # weak scaling never below strong scaling


@PROP
@given(f=st.floats(1e15, 1e26), n=count, k=st.floats(1.0, 100.0), m=st.floats(0.01, 1.0),
       e=st.floats(0.01, 1.0), g=st.floats(0.01, 1.0))
def test_iron_law_monotone(f, n, k, m, e, g):
    t = float(iron(f, n, H100_PEAK, m, e, g))
    assert np.isfinite(t) and t > 0
    assert float(iron(f, n * k, H100_PEAK, m, e, g)) <= t * (1 + 1e-12)
    np.testing.assert_allclose(float(iron(f * k, n, H100_PEAK, m, e, g)), t * k, rtol=1e-12)


@PROP
@given(s=st.sampled_from([0.0, 1.0]), n=st.sampled_from([1.0, 0.0, float("inf")]))
def test_finite_at_edges(s, n):
    assert np.isfinite(float(amdahl(s, n)))
    assert np.isfinite(float(train_t(1e9, 1e9, 0.0 if n == 0 else 1e12, 0.4)))
    assert np.isfinite(float(little(0.0, 0.0)))
