"""Walls 11-13 (mlsys_opt.walls.algorithm): seed reference values, batching, gradients, properties."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from golden import H100_PEAK
from wallcheck import B, Sampler, assert_grad_matches_fd
from wallcheck import assert_batched_equals_scalar as _batched_equals_scalar

from mlsys_opt.walls._masked import UNBOUNDED
from mlsys_opt.walls import algorithm as alg

_sample = Sampler(11)
RNG, logu, u = _sample.rng, _sample.logu, _sample.u


def assert_batched_equals_scalar(fn, *cols):
    """wallcheck's check with no absolute slack on the jit-vs-lax.map comparison."""
    _batched_equals_scalar(fn, *cols, atol=0.0)

# ----------------------------------------------------------------------------- wall 11
# (the seed 000/002/003 golden values of walls 11-13 are rows of tests/golden.py)

@pytest.mark.parametrize("c", [1e20, 3.15e23, 9.72e23, 5.9e24], ids=["1e20", "gpt3", "seed002", "10musd_h100"])
def test_chinchilla_p_star_is_sqrt_c_over_120(c):
    out = alg.chinchilla(c)
    np.testing.assert_allclose(out.optimal_params, np.sqrt(c / 120.0), rtol=1e-12)
    np.testing.assert_allclose(out.optimal_tokens, 20.0 * np.sqrt(c / 120.0), rtol=1e-12)
    # round trip: 6 P* D* = C
    np.testing.assert_allclose(6.0 * out.optimal_params * out.optimal_tokens, c, rtol=1e-12)


def test_chinchilla_seed002_ten_million_dollars():
    # Seed 002 wall 11: "$10M -> ~90B params on ~1.8T tokens". The seed never says
    # how dollars become FLOP. Its answer implies C = 6 * 90e9 * 1.8e12 = 9.72e23 FLOP,
    # i.e. ~9.7e16 FLOP per dollar. That matches e.g. A100 at 50 % MFU for ~$5.8/GPU-h,
    # or H100 at 40 % MFU for ~$14.6/GPU-h. At the seed-000 $2.40/GPU-h H100 price and
    # 40 % MFU, $10M buys ~5.9e24 FLOP -> P* ~ 222B (values: tests/golden.py).
    c_h100 = alg.flop_for_budget(10e6, 2.40 / 3600.0, H100_PEAK, 0.4)
    np.testing.assert_allclose(c_h100, 10e6 / (2.40 / 3600.0) * H100_PEAK * 0.4, rtol=1e-12)


def test_tokens_per_param():
    np.testing.assert_allclose(alg.tokens_per_param(1.8e12, 90e9), 20.0, rtol=1e-12)
    # no parameters: the +inf limit as the finite UNBOUNDED stand-in (issue 18: not a plausible 0)
    assert float(alg.tokens_per_param(1e12, 0.0)) == UNBOUNDED


# ----------------------------------------------------------------------------- wall 12

def test_reasoning_worked_example():
    r = alg.reasoning(8.0, 1.0, 70e9, tokens_per_step=50.0)   # FLOP: tests/golden.py
    np.testing.assert_allclose(r.time_s, 8.0)
    np.testing.assert_allclose(r.n_tokens, 400.0)
    r2 = alg.reasoning(8.0, 1.0, 70e9, ttft_s=0.25)
    np.testing.assert_allclose(r2.time_s, 8.25)


# ----------------------------------------------------------------------------- wall 13

def test_quantization_memory_bound_speedup_is_the_byte_ratio():
    # seed 002 wall 13 (ratios and sizes: tests/golden.py)
    np.testing.assert_allclose(alg.quantization(8e9, 16.0, 4.0).speedup, 4.0)


def test_quantization_speedup_regimes():
    # compute-bound, no low-precision path: no speed-up (mlsysim: 1.0 when unsupported)
    np.testing.assert_allclose(alg.quantization(1e9, 16.0, 8.0, memory_bound_frac=0.0).speedup, 1.0)
    # compute-bound with an fp8 path twice as fast: min(2, 2) = 2
    np.testing.assert_allclose(alg.quantization(1e9, 16.0, 8.0, memory_bound_frac=0.0,
                                                hw_compute_speedup=2.0).speedup, 2.0)
    # hardware faster than the byte ratio is capped at the ratio
    np.testing.assert_allclose(alg.quantization(1e9, 16.0, 8.0, memory_bound_frac=0.0,
                                                hw_compute_speedup=4.0).speedup, 2.0)
    # half and half (Amdahl): 1 / (0.5/2 + 0.5/1) = 4/3
    np.testing.assert_allclose(alg.quantization(1e9, 16.0, 8.0, memory_bound_frac=0.5).speedup, 4 / 3)


def test_quantization_accuracy_heuristic_anchors():
    loss = alg.quantization_loss_frac(jnp.array([32.0, 16.0, 8.0, 4.0, 2.0]))
    np.testing.assert_allclose(loss[:4], [0.0, 0.0, 0.005, 0.025], atol=1e-15, rtol=1e-12)
    assert 0.05 < float(loss[4]) < 0.06  # mlsysim's flat sub-INT4 value is 0.05
    np.testing.assert_allclose(alg.quantization(1e9, 32.0, 16.0).accuracy_delta_frac, 0.0)
    np.testing.assert_allclose(alg.quantization(1e9, 16.0, 8.0, loss_8bit_frac=0.002).accuracy_delta_frac,
                               -0.002, rtol=1e-12)  # FP8 anchor


def test_pruning_seed002():
    # seed 002 wall 13: "50% sparse = 2x smaller"; unstructured pruning gives zero GEMM speed-up.
    p = alg.pruning(8e9, 0.5, jnp.array([0, 1, 2]))   # ratio 2, speed-ups 1 / 2 / 2: tests/golden.py
    np.testing.assert_allclose(p.size_bytes, 8e9)
    np.testing.assert_allclose(p.accuracy_delta_frac, -0.001, rtol=1e-12)
    # 75 %: storage 4x for all; structured 4x; 2:4 capped at 2x; unstructured 1x
    p = alg.pruning(8e9, 0.75, jnp.array([0.0, 1.0, 2.0]))
    np.testing.assert_allclose(p.ratio, 4.0)
    np.testing.assert_allclose(p.speedup, [1.0, 4.0, 2.0])


def test_pruning_accuracy_heuristic_is_continuous_at_knee():
    s = jnp.array([0.5 - 1e-9, 0.5, 0.5 + 1e-9])
    d = alg.pruning(1e9, s, 0).accuracy_delta_frac
    np.testing.assert_allclose(d, -0.001, atol=1e-9)
    # above the knee: -(0.001 + 0.01 (e^{2s} - e)); at 0.9: -0.0343 (mlsysim's step rule: -0.0605)
    np.testing.assert_allclose(alg.pruning(1e9, 0.9, 0).accuracy_delta_frac,
                               -(0.001 + 0.01 * (np.exp(1.8) - np.e)), rtol=1e-12)


def test_pruning_full_sparsity_is_finite():
    p = alg.pruning(1e9, 1.0, 1)
    for leaf in p:
        assert np.isfinite(float(leaf))
    np.testing.assert_allclose(p.ratio, 100.0, rtol=1e-9)  # clipped at 0.99, mlsysim's cap


# ----------------------------------------------------------------------------- batched == scalar

def test_batched_equals_scalar_scaling_laws():
    assert_batched_equals_scalar(lambda p, d: alg.training_flop(p, d), logu(1e6, 1e12), logu(1e9, 1e14))
    assert_batched_equals_scalar(lambda c: alg.chinchilla(c), logu(1e15, 1e27))
    assert_batched_equals_scalar(lambda d, p: alg.tokens_per_param(d, p), logu(1e9, 1e14), logu(1e6, 1e12))
    assert_batched_equals_scalar(lambda b, c, pk, m: alg.flop_for_budget(b, c, pk, m),
                                 logu(1e3, 1e9), logu(1e-4, 1e-2), logu(1e13, 1e16), u(0.1, 0.6))


def test_batched_equals_scalar_reasoning():
    assert_batched_equals_scalar(lambda k, t, p: alg.reasoning(k, t, p, ttft_s=0.1),
                                 u(1, 100), logu(1e-3, 10), logu(1e8, 1e12))


def test_batched_equals_scalar_compression():
    assert_batched_equals_scalar(lambda p, bf, bt, f: alg.quantization(p, bf, bt, memory_bound_frac=f,
                                                                       hw_compute_speedup=2.0),
                                 logu(1e6, 1e12), jnp.asarray(RNG.choice([32.0, 16.0], B)),
                                 jnp.asarray(RNG.choice([8.0, 4.0, 2.0], B)), u(0, 1))
    assert_batched_equals_scalar(lambda p, s, c: alg.pruning(p, s, c),
                                 logu(1e6, 1e12), u(0, 1), jnp.asarray(RNG.integers(0, 3, B).astype(float)))


# ----------------------------------------------------------------------------- gradients

def test_grads_match_finite_differences():
    assert_grad_matches_fd(lambda c: alg.chinchilla(c).optimal_params, 3.15e23)
    assert_grad_matches_fd(lambda p: alg.training_flop(p, 300e9), 175e9)
    assert_grad_matches_fd(lambda p: alg.tokens_per_param(15e12, p), 70e9)
    assert_grad_matches_fd(lambda b: alg.flop_for_budget(b, 2.4 / 3600, H100_PEAK, 0.4), 1e7)
    assert_grad_matches_fd(lambda t: alg.reasoning(8.0, t, 70e9).time_s, 0.7)
    assert_grad_matches_fd(lambda f: alg.quantization(1e9, 16.0, 4.0, memory_bound_frac=f).speedup, 0.6)
    assert_grad_matches_fd(lambda b: alg.quantization(1e9, 16.0, b).accuracy_delta_frac, 5.0)
    assert_grad_matches_fd(lambda s: alg.pruning(1e9, s, 1).speedup, 0.6)
    assert_grad_matches_fd(lambda s: alg.pruning(1e9, s, 0).accuracy_delta_frac, 0.7)


def test_grads_finite_at_domain_edges():
    for g in (jax.grad(lambda c: alg.chinchilla(c).optimal_params)(0.0),
              jax.grad(lambda p: alg.tokens_per_param(1e12, p))(0.0),
              jax.grad(lambda s: alg.pruning(1e9, s, 1).speedup)(1.0),
              jax.grad(lambda s: alg.pruning(1e9, s, 0).accuracy_delta_frac)(0.0),
              jax.grad(lambda b: alg.quantization(1e9, 16.0, b).accuracy_delta_frac)(16.0)):
        assert np.isfinite(float(g))


# ----------------------------------------------------------------------------- properties

_prune = jax.jit(alg.pruning)
_quant = jax.jit(alg.quantization)
_chin = jax.jit(alg.chinchilla)


@settings(max_examples=50, deadline=None)
@given(s1=st.floats(0.0, 1.0), s2=st.floats(0.0, 1.0), code=st.integers(0, 2))
def test_pruning_properties(s1, s2, code):
    lo, hi = sorted((s1, s2))
    a, b = _prune(1e9, lo, code), _prune(1e9, hi, code)
    for leaf in (*a, *b):
        assert np.isfinite(float(leaf))
    assert float(a.ratio) >= 1.0 and float(a.size_bytes) <= 2e9 * (1 + 1e-12)
    assert 1.0 <= float(a.speedup) <= float(a.ratio) * (1 + 1e-12)
    assert float(b.ratio) >= float(a.ratio)
    assert float(b.accuracy_delta_frac) <= float(a.accuracy_delta_frac) <= 0.0  # more sparsity never helps


@settings(max_examples=50, deadline=None)
@given(bits_to=st.floats(1.0, 16.0), f=st.floats(0.0, 1.0), hw=st.floats(1.0, 8.0))
def test_quantization_properties(bits_to, f, hw):
    q = _quant(1e9, 16.0, bits_to, memory_bound_frac=f, hw_compute_speedup=hw)
    for leaf in q:
        assert np.isfinite(float(leaf))
    assert float(q.ratio) >= 1.0
    assert 1.0 - 1e-12 <= float(q.speedup) <= float(q.ratio) * (1 + 1e-12)
    assert float(q.accuracy_delta_frac) <= 0.0


@settings(max_examples=50, deadline=None)
@given(c=st.one_of(st.just(0.0), st.floats(1.0, 1e30)), r=st.floats(1.0, 200.0))
def test_chinchilla_round_trip(c, r):
    out = alg.chinchilla(c, tokens_per_param=r)
    assert np.isfinite(float(out.optimal_params)) and float(out.optimal_params) >= 0
    np.testing.assert_allclose(6 * float(out.optimal_params) * float(out.optimal_tokens), c, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(float(out.optimal_tokens) / max(float(out.optimal_params), 1e-300),
                               r if c > 0 else 0.0, rtol=1e-9)


def test_float32_outputs_finite():
    with jax.enable_x64(False):
        q = jax.jit(alg.quantization)(jnp.float32(4e11), jnp.float32(16.0), jnp.float32(4.0))
        p = jax.jit(alg.pruning)(jnp.float32(4e11), jnp.float32(1.0), jnp.int32(2))
        c = jax.jit(alg.chinchilla)(jnp.float32(1e27))
        for leaf in (*q, *p, *c):
            assert leaf.dtype == jnp.float32 and np.isfinite(np.asarray(leaf)).all()
