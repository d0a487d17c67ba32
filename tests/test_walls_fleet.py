"""Walls 14-16 (mlsys_opt.walls.fleet): seed reference values, batching, gradients, properties."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from golden import DAY, GB, GPU_MTBF_S, HOUR
from golden import IB_NDR as IB
from golden import NVLINK4 as NVLINK
from wallcheck import B, Sampler, assert_batched_equals_scalar, assert_grad_matches_fd

from mlsys_opt.walls import fleet

_sample = Sampler(14)
RNG, logu = _sample.rng, _sample.logu


# ----------------------------------------------------------------------------- helpers

def pow2(lo, hi, n=B):
    return jnp.asarray(2.0 ** RNG.integers(lo, hi + 1, n))


# ----------------------------------------------------------------------------- wall 14
# (the seed 000/002 golden values of walls 14-16 are rows of tests/golden.py)

def test_ring_allreduce_is_bandwidth_plus_latency_term():
    total = fleet.ring_allreduce(140 * GB, 1024, IB, 2e-6)
    np.testing.assert_allclose(total, fleet.ring_allreduce(140 * GB, 1024, IB, 0.0)
                               + fleet.ring_allreduce(0.0, 1024, IB, 2e-6), rtol=1e-12)
    # seed 002 wall 14's 35 ms ignores α: 2 µs per hop moves it by < 0.2 %
    np.testing.assert_allclose(fleet.ring_allreduce(1 * GB, 8, 50 * GB, 2e-6), 0.035, rtol=2e-3)


def test_pipeline_bubble_seed000_rule():
    # seed: "bubble < 5 % with V = 1 needs M >= 19 (P - 1)"
    assert float(fleet.pipeline_bubble(8.0, 19 * 7.0)) <= 0.05
    assert float(fleet.pipeline_bubble(8.0, 19 * 7.0 - 1)) > 0.05
    np.testing.assert_allclose(fleet.pipeline_bubble(1.0, 1.0), 0.0)


def test_tree_allreduce_and_crossover():
    np.testing.assert_allclose(fleet.tree_allreduce(4096.0, 1024, IB, 2e-6), 40e-6 + 20 * 4096 / IB, rtol=1e-12)
    np.testing.assert_allclose(fleet.tree_allreduce(1 * GB, 1, IB, 2e-6), 0.0)  # log2(1) = 0
    # the exact crossover of the two seed formulas (value: tests/golden.py) equalises them
    m_star = float(fleet.ring_tree_crossover_exact_bytes(1024, 2e-6, IB))
    ring = fleet.ring_allreduce(m_star, 1024, IB, 2e-6)
    tree = fleet.tree_allreduce(m_star, 1024, IB, 2e-6)
    np.testing.assert_allclose(ring, tree, rtol=1e-9)
    assert float(fleet.tree_allreduce(0.5 * m_star, 1024, IB, 2e-6)) < float(fleet.ring_allreduce(0.5 * m_star, 1024, IB, 2e-6))
    assert float(fleet.tree_allreduce(2 * m_star, 1024, IB, 2e-6)) > float(fleet.ring_allreduce(2 * m_star, 1024, IB, 2e-6))
    # N = 1, 2: the tree never wins
    np.testing.assert_allclose(fleet.ring_tree_crossover_exact_bytes(jnp.array([1.0, 2.0]), 2e-6, IB), 0.0)


def test_hierarchical_allreduce():
    # 64 nodes x 8 GPUs (NVLink ring + IB ring of 1/8): tests/golden.py; degenerate levels reduce to a flat ring
    np.testing.assert_allclose(fleet.hierarchical_allreduce(1 * GB, 8, 1, NVLINK, 1e-6, IB, 5e-6),
                               fleet.ring_allreduce(1 * GB, 8, NVLINK, 1e-6), rtol=1e-12)
    np.testing.assert_allclose(fleet.hierarchical_allreduce(1 * GB, 1, 64, NVLINK, 1e-6, IB, 5e-6),
                               fleet.ring_allreduce(1 * GB, 64, IB, 5e-6), rtol=1e-12)


def test_all_to_all():
    np.testing.assert_allclose(fleet.all_to_all(4096.0, 64, IB, 2e-6), 63 * 2e-6 + 63 / 64 * 4096 / IB, rtol=1e-12)
    np.testing.assert_allclose(fleet.all_to_all(4096.0, 1, IB, 2e-6), 0.0)


def _step(**kw):
    base = dict(dp=1.0, tp=1.0, pp=1.0, grad_bytes=140 * GB, tp_act_bytes_per_layer=64e6, n_layers=80.0,
                bw_intra_bytes_per_s=NVLINK, bw_inter_bytes_per_s=IB, alpha_intra_s=1e-6, alpha_inter_s=5e-6)
    base.update(kw)
    t = base.pop("t_compute_s", 10.0)
    return fleet.parallel_step(t, **base)


def test_parallel_step_single_gpu_has_no_overhead():
    s = _step()
    for name in ("t_dp_s", "t_dp_exposed_s", "t_tp_s", "t_pp_s", "t_ep_s", "t_bubble_s"):
        assert float(getattr(s, name)) == 0.0, name
    np.testing.assert_allclose(s.step_s, 10.0)
    np.testing.assert_allclose(s.scaling_efficiency, 1.0)


def test_parallel_step_pure_dp_is_hierarchical_ring():
    s = _step(dp=1024.0, alpha_intra_s=0.0, alpha_inter_s=0.0)
    expect = fleet.ring_allreduce(140 * GB, 8, NVLINK, 0.0) + fleet.ring_allreduce(17.5 * GB, 128, IB, 0.0)
    np.testing.assert_allclose(s.t_dp_s, expect, rtol=1e-12)
    np.testing.assert_allclose(s.scaling_efficiency, 10.0 / (10.0 + float(expect)), rtol=1e-12)
    # DP inside one node uses NVLink only
    s8 = _step(dp=8.0, alpha_intra_s=0.0)
    np.testing.assert_allclose(s8.t_dp_s, fleet.ring_allreduce(140 * GB, 8, NVLINK, 0.0), rtol=1e-12)
    # overlap hides part of it
    so = _step(dp=1024.0, overlap_frac=0.85)
    np.testing.assert_allclose(so.t_dp_exposed_s, 0.15 * so.t_dp_s, rtol=1e-12)


def test_parallel_step_tp_pp_ep_terms():
    # TP = 8 inside a node, DP = 64 across nodes (seed 003 layout): Megatron 4 all-reduces/layer
    s = _step(dp=64.0, tp=8.0, n_microbatches=4.0)
    t_one = fleet.ring_allreduce(64e6, 8, NVLINK, 1e-6)
    np.testing.assert_allclose(s.t_tp_s, 4 * 80 * 4 * t_one, rtol=1e-12)
    np.testing.assert_allclose(s.t_dp_s, fleet.ring_allreduce(140 * GB / 8, 64, IB, 5e-6), rtol=1e-12)
    # PP: bubble time / (compute + bubble) is the bubble fraction
    s = _step(pp=4.0, n_microbatches=16.0, n_virtual_stages=2.0, pp_act_bytes=32e6)
    np.testing.assert_allclose(s.t_bubble_s / (s.t_compute_s + s.t_bubble_s), 3 / 35, rtol=1e-12)
    np.testing.assert_allclose(s.t_pp_s, 2 * 16 * (1e-6 + 32e6 / NVLINK), rtol=1e-12)
    np.testing.assert_allclose(s.t_tp_s, 0.0)
    # EP = 8 with TP = 1: all-to-all inside the node, 4 per layer per microbatch, L/pp layers
    s = _step(ep=8.0, pp=2.0, n_microbatches=2.0, ep_token_bytes=16e6)
    np.testing.assert_allclose(s.t_ep_s, 2 * 40 * 4 * fleet.all_to_all(16e6, 8, NVLINK, 1e-6), rtol=1e-12)
    # step and efficiency are consistent
    total = s.t_compute_s + s.t_dp_exposed_s + s.t_tp_s + s.t_pp_s + s.t_ep_s + s.t_bubble_s
    np.testing.assert_allclose(s.step_s, total, rtol=1e-12)
    np.testing.assert_allclose(s.scaling_efficiency, s.t_compute_s / total, rtol=1e-12)


def test_scaling_efficiency_seed000():
    # seed 000 section 2.2: "80 % on 256 GPUs = the throughput of ~205 GPUs" (0.8: tests/golden.py)
    assert round(256 * float(fleet.scaling_efficiency(1.0, 0.2, 0.0, 0.0, 0.05))) == 205
    np.testing.assert_allclose(fleet.scaling_efficiency(0.0, 0.0, 0.0, 0.0, 0.0), 1.0)


# ----------------------------------------------------------------------------- wall 15

def test_cluster_mtbf_small_cluster_and_no_time():
    # 8 GPUs: 6,250 h = 260 days = 8.6 months (730 h/month); the seed prints "~8 months" (rounded down).
    months = float(fleet.cluster_mtbf_s(GPU_MTBF_S, 8)) / (730 * HOUR)
    assert 8.0 <= months < 9.0
    np.testing.assert_allclose(fleet.failure_probability(0.0, fleet.cluster_mtbf_s(GPU_MTBF_S, 512)), 0.0)


def test_multitenant_wait_edges():
    job_s = 2 * DAY
    np.testing.assert_allclose(fleet.multitenant_wait(0.0, 1 / job_s), 0.0)
    w = fleet.multitenant_wait(jnp.array([0.999999, 1.0, 1.5]), 1 / job_s)
    assert np.isfinite(np.asarray(w)).all() and (np.asarray(w) > 1e5 * job_s).all()


# ----------------------------------------------------------------------------- batched == scalar

def test_batched_equals_scalar_collectives():
    m, n, bw, a = logu(1e3, 1e12), pow2(0, 14), logu(1e9, 1e12), logu(1e-7, 1e-4)
    for f in (fleet.ring_allreduce, fleet.tree_allreduce, fleet.all_to_all):
        assert_batched_equals_scalar(f, m, n, bw, a)
    assert_batched_equals_scalar(fleet.ring_tree_crossover_exact_bytes, n, a, bw)
    assert_batched_equals_scalar(fleet.hierarchical_allreduce, m, pow2(0, 3), pow2(0, 10),
                                 logu(1e11, 1e12), logu(1e-7, 1e-6), bw, a)
    assert_batched_equals_scalar(fleet.pipeline_bubble, pow2(0, 5), pow2(0, 7), pow2(0, 2))


def test_batched_equals_scalar_parallel_step():
    cols = (logu(0.1, 100), pow2(0, 10), pow2(0, 4), pow2(0, 4), pow2(0, 3),
            logu(1e9, 1e12), logu(1e6, 1e9), pow2(0, 6), RNG.uniform(0, 1, B))
    cols = tuple(jnp.asarray(c) for c in cols)

    def f(t, dp, tp, pp, ep, grad, act, m, ov):
        return fleet.parallel_step(t, dp=dp, tp=tp, pp=pp, ep=ep, grad_bytes=grad, tp_act_bytes_per_layer=act,
                                   n_layers=80.0, bw_intra_bytes_per_s=NVLINK, bw_inter_bytes_per_s=IB,
                                   alpha_intra_s=1e-6, alpha_inter_s=5e-6, n_microbatches=m,
                                   ep_token_bytes=act / 4, pp_act_bytes=act, overlap_frac=ov)

    assert_batched_equals_scalar(f, *cols)


def test_batched_equals_scalar_reliability_and_queue():
    mt, n, t = logu(1e7, 1e9), pow2(0, 17), logu(HOUR, 100 * DAY)
    assert_batched_equals_scalar(fleet.cluster_mtbf_s, mt, n)
    assert_batched_equals_scalar(fleet.failure_probability, t, mt / n)
    assert_batched_equals_scalar(fleet.expected_failures, t, mt / n)
    assert_batched_equals_scalar(fleet.multitenant_wait, jnp.asarray(RNG.uniform(0, 0.99, B)), logu(1e-7, 1e-3))


# ----------------------------------------------------------------------------- gradients

def test_grads_match_finite_differences():
    assert_grad_matches_fd(lambda bw: fleet.ring_allreduce(140 * GB, 1024, bw, 2e-6), IB)
    assert_grad_matches_fd(lambda a: fleet.tree_allreduce(1e6, 64, IB, a), 2e-6)
    assert_grad_matches_fd(lambda bw: fleet.hierarchical_allreduce(1 * GB, 8, 64, NVLINK, 1e-6, bw, 5e-6), IB)
    assert_grad_matches_fd(lambda m: fleet.all_to_all(m, 64, IB, 2e-6), 4e6)
    assert_grad_matches_fd(lambda m: fleet.pipeline_bubble(8.0, m, 2.0), 24.0)
    assert_grad_matches_fd(lambda n: fleet.ring_tree_crossover_exact_bytes(n, 2e-6, IB), 300.0)
    assert_grad_matches_fd(lambda bw: _step(dp=64.0, tp=8.0, pp=4.0, n_microbatches=8.0,
                                           bw_inter_bytes_per_s=bw).step_s, IB)
    assert_grad_matches_fd(lambda ov: _step(dp=128.0, overlap_frac=ov).scaling_efficiency, 0.5)
    assert_grad_matches_fd(lambda t: fleet.scaling_efficiency(t, 0.2, 0.1, 0.0, 0.05), 1.0)
    assert_grad_matches_fd(lambda n: fleet.cluster_mtbf_s(GPU_MTBF_S, n), 1000.0)
    assert_grad_matches_fd(lambda t: fleet.failure_probability(t, 5 * HOUR), 3 * HOUR)
    assert_grad_matches_fd(lambda r: fleet.multitenant_wait(r, 1 / DAY), 0.8)


def test_grads_finite_at_domain_edges():
    def step(tp, dp, bw):
        return fleet.parallel_step(1.0, dp=dp, tp=tp, pp=1.0, grad_bytes=1e9, tp_act_bytes_per_layer=1e6,
                                   n_layers=10.0, bw_intra_bytes_per_s=NVLINK, bw_inter_bytes_per_s=bw).step_s

    for g in (jax.grad(lambda n: fleet.ring_allreduce(1e9, n, IB, 0.0))(1.0),
              jax.grad(lambda n: fleet.tree_allreduce(1e9, n, IB, 0.0))(1.0),
              jax.grad(lambda b: fleet.ring_allreduce(1e9, 8.0, b, 1e-6))(0.0),
              jax.grad(lambda n: fleet.ring_tree_crossover_exact_bytes(n, 2e-6, IB))(1.0),
              jax.grad(lambda n: fleet.ring_tree_crossover_exact_bytes(n, 2e-6, IB))(2.0),
              jax.grad(lambda p: fleet.pipeline_bubble(p, 1.0))(1.0),
              *jax.grad(step, argnums=(0, 1, 2))(1.0, 8.0, 0.0),
              jax.grad(lambda n: fleet.cluster_mtbf_s(1e8, n))(0.0),
              jax.grad(lambda m: fleet.failure_probability(1e5, m))(0.0),
              jax.grad(lambda r: fleet.multitenant_wait(r, 1e-5))(1.0)):
        assert np.isfinite(float(g))


# ----------------------------------------------------------------------------- properties

_mtbf = jax.jit(fleet.cluster_mtbf_s)
_pfail = jax.jit(fleet.failure_probability)
_bubble = jax.jit(fleet.pipeline_bubble)
_colls = jax.jit(lambda m, n, bw, a: jnp.stack([fleet.ring_allreduce(m, n, bw, a), fleet.tree_allreduce(m, n, bw, a),
                                                fleet.all_to_all(m, n, bw, a),
                                                fleet.hierarchical_allreduce(m, 8.0, n, NVLINK, a, bw, a)]))
_pstep = jax.jit(lambda t, dp, tp, pp, ep, m, a: fleet.parallel_step(
    t, dp=dp, tp=tp, pp=pp, ep=ep, grad_bytes=1e10, tp_act_bytes_per_layer=1e7, n_layers=32.0,
    bw_intra_bytes_per_s=NVLINK, bw_inter_bytes_per_s=IB, alpha_intra_s=a, alpha_inter_s=a,
    n_microbatches=m, ep_token_bytes=1e6, pp_act_bytes=1e7))

counts = st.integers(1, 200_000).map(float)


@settings(max_examples=50, deadline=None)
@given(n1=counts, n2=counts, mtbf_h=st.floats(1.0, 1e6), days=st.floats(0.01, 365.0))
def test_more_gpus_never_lower_failure_rate(n1, n2, mtbf_h, days):
    lo, hi = sorted((n1, n2))
    m_lo, m_hi = float(_mtbf(mtbf_h * HOUR, lo)), float(_mtbf(mtbf_h * HOUR, hi))
    assert 1 / m_hi >= 1 / m_lo * (1 - 1e-12)
    p_lo, p_hi = float(_pfail(days * DAY, m_lo)), float(_pfail(days * DAY, m_hi))
    assert 0.0 <= p_lo <= p_hi * (1 + 1e-12) + 1e-300 and p_hi <= 1.0


@settings(max_examples=50, deadline=None)
@given(p=st.integers(1, 256), m=st.integers(1, 4096), v=st.integers(1, 8))
def test_bubble_fraction_in_unit_interval(p, m, v):
    b = float(_bubble(float(p), float(m), float(v)))
    assert 0.0 <= b < 1.0
    assert (b == 0.0) == (p == 1)


@settings(max_examples=50, deadline=None)
@given(m1=st.floats(0.0, 1e12), m2=st.floats(0.0, 1e12), n=counts,
       bw1=st.floats(1e6, 1e13), bw2=st.floats(1e6, 1e13), a=st.one_of(st.just(0.0), st.floats(0.0, 1e-3)))
def test_collectives_monotone_in_message_and_bandwidth(m1, m2, n, bw1, bw2, a):
    m_lo, m_hi = sorted((m1, m2))
    b_lo, b_hi = sorted((bw1, bw2))
    t_small, t_big = np.asarray(_colls(m_lo, n, b_lo, a)), np.asarray(_colls(m_hi, n, b_lo, a))
    t_fast = np.asarray(_colls(m_hi, n, b_hi, a))
    assert np.isfinite(t_small).all() and np.isfinite(t_big).all() and (t_small >= 0).all()
    assert (t_big >= t_small * (1 - 1e-12)).all()          # more bytes never faster
    assert (t_fast <= t_big * (1 + 1e-12)).all()           # more bandwidth never slower
    if n == 1.0:
        np.testing.assert_allclose(t_big[:3], 0.0)         # N = 1: no communication


@settings(max_examples=50, deadline=None)
@given(t=st.floats(1e-3, 1e3), dp=st.integers(0, 12), tp=st.integers(0, 4), pp=st.integers(0, 5),
       ep=st.integers(0, 4), m=st.integers(1, 256), a=st.one_of(st.just(0.0), st.floats(0.0, 1e-4)))
def test_parallel_step_bounds(t, dp, tp, pp, ep, m, a):
    s = _pstep(t, 2.0 ** dp, 2.0 ** tp, 2.0 ** pp, 2.0 ** ep, float(m), a)
    vals = np.array([float(x) for x in s])
    assert np.isfinite(vals).all() and (vals >= 0).all()
    assert 0.0 < float(s.scaling_efficiency) <= 1.0
    assert float(s.step_s) >= t * (1 - 1e-12)
    if pp == 0:
        assert float(s.t_pp_s) == 0.0 and float(s.t_bubble_s) == 0.0  # p = 1 pipelines
    if tp == 0:
        assert float(s.t_tp_s) == 0.0
    if dp == 0:
        assert float(s.t_dp_s) == 0.0
    if ep == 0:
        assert float(s.t_ep_s) == 0.0


def test_float32_parallel_step_finite():
    with jax.enable_x64(False):
        s = jax.jit(lambda bw: fleet.parallel_step(
            jnp.float32(5.0), dp=jnp.float32(2048), tp=jnp.float32(8), pp=jnp.float32(16), ep=jnp.float32(1),
            grad_bytes=jnp.float32(810e9), tp_act_bytes_per_layer=jnp.float32(1e8), n_layers=jnp.float32(126),
            bw_intra_bytes_per_s=jnp.float32(NVLINK), bw_inter_bytes_per_s=bw, n_microbatches=jnp.float32(64)))(
            jnp.float32(0.0))  # zero inter-node bandwidth: huge but finite
        for leaf in s:
            assert leaf.dtype == jnp.float32 and np.isfinite(np.asarray(leaf)).all()
