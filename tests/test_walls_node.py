"""Walls 1-7 (mlsys_opt.walls.node): seed golden values, batched == scalar,
gradients against finite differences, and properties.

conftest.py enables x64; jitted functions are built once at module level and
reused so each compiles a handful of times at most.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads
from golden import A100_PEAK, H100_BW, H100_PEAK
from wallcheck import PROP, all_finite, check_case, close, fd_check, fd_check_derivative, jax_uniform

from mlsys_opt.walls import node, queueing

roofline = jax.jit(node.roofline)
decode = jax.jit(node.decode)
prefill = jax.jit(node.prefill)
kv_cache = jax.jit(node.kv_cache_bytes)
max_batch = jax.jit(node.max_batch)
mmc = jax.jit(queueing.mmc_queue)
stream = jax.jit(node.weight_streaming)
train_mem = jax.jit(node.training_memory)
act_bytes = jax.jit(node.transformer_activation_bytes)


# ============================================================================ seed examples
# The seed golden values themselves are rows of tests/golden.py (tests/test_golden.py); the
# tests here check what the examples imply beyond one number (bottlenecks, identities).
def test_dense_layer_seed_example():
    d1 = node.dense_layer(2048, 512, 1, 2.0)
    close(node.arithmetic_intensity(d1.flop, d1.weight_bytes), 1.0)  # "= 1 FLOP/byte"
    # Counting the activations too (as bytes_moved does) gives 0.9976, still ≈ 1.
    close(node.arithmetic_intensity(d1.flop, d1.bytes_moved), 2097152 / 2102272)
    d64 = node.dense_layer(2048, 512, 64, 2.0)
    # The seed's "batch=64 raises I to ~64" counts weight bytes only: exactly 64.
    close(node.arithmetic_intensity(d64.flop, d64.weight_bytes), 64.0)
    # With the 64·(2048+512)·2 B of activations the equation gives 55.35, not 64.
    close(node.arithmetic_intensity(d64.flop, d64.bytes_moved), 134217728 / 2424832)
    r = roofline(d1.flop, d1.weight_bytes, H100_PEAK, H100_BW)
    assert int(r.bottleneck) == node.MEMORY
    assert float(d1.flop / r.latency_s) / H100_PEAK < 0.01  # "<1% peak utilization"


def test_wall1_wall2_bottleneck_codes():
    # Wall 1 / wall 2 seed examples (times in tests/golden.py): which side binds.
    assert int(roofline(16e9, 0.0, H100_PEAK, H100_BW, efficiency=0.5).bottleneck) == node.COMPUTE
    assert int(roofline(0.0, 16e9, H100_PEAK, H100_BW).bottleneck) == node.MEMORY


def test_dispatch_tax_overhead_code():
    r = roofline(1e6, 1e3, H100_PEAK, H100_BW, dispatch_tax_s=5e-5)
    assert int(r.bottleneck) == node.OVERHEAD
    close(r.latency_s, 5e-5 + 1e6 / H100_PEAK)
    assert node.BOTTLENECK_NAMES[int(r.bottleneck)] == "overhead"


def test_llama3_70b_decode_on_h100():
    d = decode(140e9, 0.0, 70e9, 1, H100_PEAK, H100_BW)   # 41.8 / 0.14 / 42 ms: tests/golden.py
    assert round(1.0 / float(d.itl_s)) == 24  # "~24 tokens/s"
    assert int(d.bottleneck) == node.MEMORY
    # The seed labels compute "(3%)" and memory "(97%)"; its own numbers give
    # 0.14 / 41.94 = 0.34 % compute. We follow the equation.
    share = float(d.t_compute_s / (d.t_compute_s + d.t_memory_s))
    assert 0.003 < share < 0.004
    # "a 2x compute upgrade yields zero speedup"
    close(decode(140e9, 0.0, 70e9, 1, 2 * H100_PEAK, H100_BW).itl_s, d.itl_s)
    thr = node.serving_throughput(d.itl_s, 0.0, 1, 100)
    assert round(float(thr.tokens_per_s_per_request)) == 24


def test_decode_kv_separate_adds_attention_kv_read():
    """kv_separate: ITL = max(W/BW, 2PB/(peak·η)) + KV/BW + tax (docstring example)."""
    w, p, kv, bw = 6.74e9 * 2, 6.74e9, 2 * 32 * 32 * 128 * 2 * 192.0 * 256, 2.0e12 * 0.8
    d = decode(w, kv, p, 256, A100_PEAK, bw, efficiency=0.65, kv_separate=True)
    t_c = 2 * p * 256 / (A100_PEAK * 0.65)
    close(d.t_compute_s, t_c)
    close(d.t_memory_s, (w + kv) / bw)
    close(d.itl_s, max(w / bw, t_c) + kv / bw)
    assert round(float(d.itl_s) * 1e3, 1) == 33.1 and round(t_c * 1e3, 1) == 17.0
    assert int(d.bottleneck) == node.COMPUTE           # 17.0 ms of GEMMs > 16.1 ms KV, 8.4 ms W
    old = decode(w, kv, p, 256, A100_PEAK, bw, efficiency=0.65)
    assert round(float(old.itl_s) * 1e3, 1) == 24.5 and int(old.bottleneck) == node.MEMORY
    # Memory-bound GEMMs (batch 1): both forms read W + KV once, the same ITL.
    one = dict(efficiency=0.65, dispatch_tax_s=3e-4)
    close(decode(w, kv / 256, p, 1, A100_PEAK, bw, kv_separate=True, **one).itl_s,
          decode(w, kv / 256, p, 1, A100_PEAK, bw, **one).itl_s)
    # A bool array selects per row; the tax alone wins when both terms are tiny.
    both = decode(w, kv, p, 256, A100_PEAK, bw, efficiency=0.65, kv_separate=jnp.array([True, False]))
    close(both.itl_s, [float(d.itl_s), float(old.itl_s)])
    tiny = decode(1.0, 1.0, 1.0, 1, A100_PEAK, bw, dispatch_tax_s=1e-3, kv_separate=True)
    assert int(tiny.bottleneck) == node.OVERHEAD
    assert all_finite(decode(1e9, 1e9, 5e8, 4, 1e14, 0.0, kv_separate=True))
    fd_check(lambda b: decode(w, kv, p, 256, A100_PEAK, b, efficiency=0.65, kv_separate=True).itl_s, bw)


def test_prefill_is_compute_bound():
    p = prefill(70e9, 1024, 1, H100_PEAK, H100_BW, 140e9, efficiency=0.5)
    close(p.flop, 2 * 70e9 * 1024)
    close(p.ttft_s, 2 * 70e9 * 1024 / (H100_PEAK * 0.5))
    assert int(p.bottleneck) == node.COMPUTE
    # tiny prompt: weights dominate, TTFT never below W/BW
    p1 = prefill(70e9, 1, 1, H100_PEAK, H100_BW, 140e9, dispatch_tax_s=1e-5)
    close(p1.ttft_s, 140e9 / H100_BW + 1e-5)


def test_serving_throughput_algebra():
    t = node.serving_throughput(0.04, 0.3, 8, 101)
    close(t.request_latency_s, 0.3 + 100 * 0.04)
    close(t.tokens_per_s, 8 * 101 / 4.3)
    close(t.requests_per_s, 8 / 4.3)
    close(t.tokens_per_s_per_request, 25.0)


def test_kv_cache_llama3_70b():
    # 327 KB per token, 21.5 / 43 GB at batch 16 / 32: tests/golden.py
    b32 = float(kv_cache(80, 8, 128, 4096, 32, 2.0))
    # The seed adds "Weights (35 GB in FP16)", but 70e9 params × 2 B = 140 GB (as its own
    # §4.2 uses); 35 GB is the int4 size. fp16 weights + KV do not fit on an 80 GB H100:
    assert float(node.memory_margin_bytes(140e9 + b32, 80e9)) > 0
    # With int4 (0.5 B/param) weights the seed's "78 GB — barely fits" is reproduced:
    tot = node.inference_memory(70e9 * 0.5, b32, 0.0).total_bytes   # 78 GB: tests/golden.py
    assert bool(node.memory_fits(tot, 80e9))


def test_wall5_llama3_8b_per_request_and_max_batch():
    kv = float(kv_cache(32, 8, 128, 4096, 1, 2.0))   # ~500 MB, max batch 119: tests/golden.py
    assert float(max_batch(80e9, 0.0, 0.0)) == 1e9  # no KV: finite cap
    assert float(max_batch(10e9, 20e9, kv)) == 0.0  # weights do not fit
    assert float(max_batch(80e9, 16.06e9, kv, reserve_frac=0.1)) == math.floor(
        (72e9 - 16.06e9) / kv)


def test_kv_cache_mla_deepseek_v3():
    # DeepSeek-V3 (arXiv:2412.19437 §2.1.1, §4.2): 61 layers, MLA caches d_c + d_h^R = 512 + 64 = 576
    # elements per layer per token (DeepSeek-V2 arXiv:2405.04434 §2.1.2: (d_c + d_h^R)·l), bf16.
    per_token = float(kv_cache(61, 128, 128, 1, 1, 2.0, kv_latent_dim=576))   # values: tests/golden.py
    mha = float(kv_cache(61, 128, 128, 1, 1, 2.0))          # the un-compressed 2·L·H·d·b
    assert round(mha / per_token, 1) == 56.9
    # V2 Table 1: MLA's cache equals GQA with 2.25 groups: (d_c + d_h^R) = 4.5·d_h = 2·2.25·d_h.
    close(kv_cache(61, 2.25, 128, 4096, 8, 2.0), float(kv_cache(61, 128, 128, 4096, 8, 2.0, kv_latent_dim=576)))
    # kv_latent_dim = 0 is the standard formula; n_kv_heads / head_dim are ignored when > 0.
    assert float(kv_cache(80, 8, 128, 1, 1, 2.0, kv_latent_dim=0.0)) == 327_680.0
    assert float(kv_cache(61, 1, 1, 1, 1, 2.0, kv_latent_dim=576)) == 70_272.0
    close(node.paged_kv_cache_bytes(61, 128, 128, 1000, 1, 2.0, block_tokens=16, kv_latent_dim=576),
          70_272 * 1008)


def test_kv_waste_and_paged():
    w = node.kv_waste(1000.0, 4096.0, block_tokens=16.0)
    close(w.static_waste_frac, 1 - 1000 / 4096)
    close(w.paged_waste_frac, 8 / 1008)
    close(node.paged_kv_cache_bytes(80, 8, 128, 1000, 1, 2.0, block_tokens=16),
          327_680 * 1008)
    w0 = node.kv_waste(0.0, 4096.0)
    assert float(w0.paged_waste_frac) == 0.0 and float(w0.static_waste_frac) == 1.0


def test_training_memory_16_bytes_per_param():
    # seed 001 "7B params -> 112 GB": tests/golden.py
    z = train_mem(7e9, 1e9, shard_factor=2.0, zero_stage=jnp.array([0, 1, 2, 3]), dp=8.0)
    want_w = np.array([7e9, 7e9, 7e9, 7e9 / 8])
    want_g = np.array([7e9, 7e9, 7e9 / 8, 7e9 / 8])
    want_o = np.array([42e9, 42e9 / 8, 42e9 / 8, 42e9 / 8])
    close(z.weights_bytes, want_w)
    close(z.gradients_bytes, want_g)
    close(z.optimizer_bytes, want_o)
    close(z.total_bytes, want_w + want_g + want_o + 1e9)


def test_korthikanti_activation_forms():
    s, b, h, a, n_l = 2048.0, 1.0, 12288.0, 96.0, 96.0
    sbh = s * b * h
    close(act_bytes(s, b, h, a, n_l), n_l * sbh * (34 + 5 * a * s / h))
    close(act_bytes(s, b, h, a, n_l, tp=8.0), n_l * sbh * (10 + 24 / 8 + 5 * a * s / (h * 8)))
    close(act_bytes(s, b, h, a, n_l, tp=8.0, sequence_parallel=True),
          n_l * sbh / 8 * (34 + 5 * a * s / h))
    close(act_bytes(s, b, h, a, n_l, tp=8.0, recompute_code=1, sequence_parallel=True),
          n_l * sbh * 34 / 8)
    close(act_bytes(s, b, h, a, n_l, tp=8.0, recompute_code=1), n_l * sbh * (10 + 24 / 8))
    close(act_bytes(s, b, h, a, n_l, recompute_code=2), n_l * 2 * sbh)


def test_weight_streaming_example():
    w = stream(1.75e9, 2 * 0.875e9 * 64, 80, 1.2e12, 125e15, efficiency=0.5)
    close(w.t_injection_s, 1.75e9 / 1.2e12)
    close(w.latency_s, 80 * 1.75e9 / 1.2e12)
    assert int(w.bottleneck) == node.MEMORY
    bstar = float(node.weight_streaming_balance_batch(0.875e9, 1.2e12, 125e15, 2.0,
                                                      efficiency=0.5))
    w2 = stream(1.75e9, 2 * 0.875e9 * bstar, 80, 1.2e12, 125e15, efficiency=0.5)
    close(w2.t_compute_s, w2.t_injection_s, rtol=1e-12)


def erlang_c_recursion(lam, mu, c):
    """Textbook Erlang B recursion B_k = a·B_{k-1}/(k + a·B_{k-1}), then C."""
    a = lam / mu
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1.0 - rho * (1.0 - b))


@pytest.mark.parametrize("lam,mu,c", [(8.0, 1.0, 10), (1.0, 2.0, 1), (45.0, 0.5, 100),
                                      (3.9, 1.0, 4), (0.3, 1.0, 3)])
def test_erlang_c_matches_recursion(lam, mu, c):
    q = mmc(lam, mu, float(c))
    want_c = erlang_c_recursion(lam, mu, c)
    close(q.p_wait, want_c, rtol=1e-9)
    gap = c * mu - lam
    close(q.mean_wait_s, want_c / gap, rtol=1e-9)
    close(q.mean_latency_s, want_c / gap + 1 / mu, rtol=1e-9)
    t99 = max(0.0, math.log(want_c / 0.01) / gap)
    close(q.p99_latency_s, 1 / mu + t99, rtol=1e-9)
    assert bool(q.stable)


def test_mm1_closed_form_and_unstable():
    q = mmc(0.5, 1.0, 1.0)  # M/M/1: C = ρ, Wq = ρ/(μ - λ)
    close(q.p_wait, 0.5)
    close(q.mean_wait_s, 1.0)
    for lam in (10.0, 12.0):  # ρ = 1 and ρ = 1.2 with c = 10
        q = mmc(lam, 1.0, 10.0)
        assert not bool(q.stable)
        assert float(q.p_wait) == 1.0
        assert float(q.p99_latency_s) == node.UNBOUNDED
        assert all_finite(q)
    q = mmc(0.0, 1.0, 4.0)  # no load: no wait
    assert float(q.p_wait) == 0.0 and float(q.p99_latency_s) == 1.0


# ============================================================================ batched == scalar
# name -> (function of positional args only, list of (lo, hi, log) per arg)
CASES = {
    "roofline": (lambda f, b, p, bw, e, t: node.roofline(f, b, p, bw, efficiency=e,
                                                         dispatch_tax_s=t),
                 [(1e6, 1e15, 1), (1e3, 1e12, 1), (1e12, 2e15, 1), (1e11, 8e12, 1),
                  (0.1, 1.0, 0), (0.0, 1e-4, 0)]),
    "prefill": (lambda p, s, b, pk, bw, w, e: node.prefill(p, s, b, pk, bw, w, efficiency=e),
                [(1e8, 4e11, 1), (1, 8192, 1), (1, 64, 1), (1e12, 2e15, 1), (1e11, 8e12, 1),
                 (1e8, 8e11, 1), (0.1, 1.0, 0)]),
    "decode": (lambda w, kv, p, b, pk, bw, e: node.decode(w, kv, p, b, pk, bw, efficiency=e),
               [(1e8, 8e11, 1), (0.0, 1e11, 0), (1e8, 4e11, 1), (1, 512, 1), (1e12, 2e15, 1),
                (1e11, 8e12, 1), (0.1, 1.0, 0)]),
    "decode_kv_separate": (lambda w, kv, p, b, pk, bw, e: node.decode(w, kv, p, b, pk, bw, efficiency=e,
                                                                      kv_separate=True),
                           [(1e8, 8e11, 1), (0.0, 1e11, 0), (1e8, 4e11, 1), (1, 512, 1),
                            (1e12, 2e15, 1), (1e11, 8e12, 1), (0.1, 1.0, 0)]),
    "serving_throughput": (node.serving_throughput,
                           [(1e-3, 0.2, 1), (1e-3, 5.0, 1), (1, 256, 1), (1, 4096, 1)]),
    "kv_cache_bytes": (node.kv_cache_bytes, [(1, 128, 0), (1, 64, 0), (32, 256, 0),
                                             (1, 131072, 1), (1, 512, 1), (0.5, 4, 0)]),
    "kv_cache_bytes_mla": (lambda n_l, h, d, s, b, e, c: node.kv_cache_bytes(n_l, h, d, s, b, e,
                                                                              kv_latent_dim=c),
                           [(1, 128, 0), (1, 64, 0), (32, 256, 0), (1, 131072, 1), (1, 512, 1),
                            (0.5, 4, 0), (0, 1024, 0)]),
    "max_batch": (lambda c, w, kv, r: node.max_batch(c, w, kv, reserve_frac=r),
                  [(1e9, 2e11, 1), (1e8, 2e11, 1), (1e5, 1e10, 1), (0.0, 0.3, 0)]),
    "kv_waste": (lambda s, m, p: node.kv_waste(s, m, block_tokens=p),
                 [(1, 8192, 1), (1, 8192, 1), (1, 256, 1)]),
    "training_memory": (lambda n, a, s, z, d: node.training_memory(n, a, shard_factor=s,
                                                                   zero_stage=jnp.floor(z),
                                                                   dp=d),
                        [(1e6, 1e12, 1), (0.0, 1e11, 0), (1, 64, 1), (0, 3.999, 0),
                         (1, 1024, 1)]),
    "activation_bytes": (lambda s, b, h, a, n_l, t, r: node.transformer_activation_bytes(
        s, b, h, a, n_l, tp=t, recompute_code=jnp.floor(r)),
        [(128, 32768, 1), (1, 16, 1), (512, 16384, 1), (8, 128, 1), (1, 128, 1), (1, 8, 1),
         (0, 2.999, 0)]),
    "weight_streaming": (lambda w, f, n_l, bw, pk, e: node.weight_streaming(
        w, f, n_l, bw, pk, efficiency=e),
        [(1e6, 1e10, 1), (1e6, 1e15, 1), (1, 128, 1), (1e10, 1e13, 1), (1e13, 1e17, 1),
         (0.1, 1.0, 0)]),
    "mmc_queue": (queueing.mmc_queue, [(0.0, 200.0, 0), (0.5, 5.0, 1), (1.0, 100.0, 1)]),
    "memory_margin_bytes": (node.memory_margin_bytes, [(1e9, 1e12, 1), (1e9, 1e12, 1)]),
    "mfu": (node.mfu, [(1e10, 1e15, 1), (1e12, 2e15, 1)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_equals_scalar(name):
    check_case(CASES, name)


def test_broadcasting_mixed_shapes():
    r = roofline(jnp.ones((3, 1)) * 1e9, jnp.ones((1, 4)) * 1e9, H100_PEAK, H100_BW)
    assert r.latency_s.shape == (3, 4) and r.bottleneck.shape == (3, 4)
    assert r.ridge_point.shape == (3, 4)
    q = mmc(jnp.linspace(0.0, 9.0, 5), 1.0, 10.0)
    assert q.stable.shape == (5,)


def test_float32_default_path():
    f32 = jnp.float32
    r = roofline(f32(1e12), f32(1e9), f32(H100_PEAK), f32(H100_BW))
    assert r.latency_s.dtype == jnp.float32
    q = mmc(jnp.array([0.0, 500.0, 999.0, 1000.0], f32), f32(1.0), f32(1000.0))
    assert q.p_wait.dtype == jnp.float32 and all_finite(q)
    assert np.all(np.diff(np.asarray(q.p_wait)) >= 0)
    kv = kv_cache(f32(80), f32(8), f32(128), f32(131072), f32(512), f32(2))
    assert np.isfinite(float(kv))


# ============================================================================ gradients
def test_grad_roofline_wall1_wall2():
    g = fd_check(lambda f: roofline(f, 1e9, H100_PEAK, H100_BW, efficiency=0.5).latency_s, 1e13)
    close(g, 1 / (H100_PEAK * 0.5))
    g = fd_check(lambda bw: roofline(1e9, 1e10, H100_PEAK, bw).latency_s, H100_BW)
    assert g < 0
    check_grads(jax.jit(lambda f, b, bw: node.roofline(f, b, H100_PEAK, bw).latency_s),
                (1e12, 1e10, H100_BW), order=1, modes=("fwd", "rev"))


def test_grad_mfu_wall3():
    fd_check(lambda t: node.model_flops_utilization(1.2e16, t, 8, A100_PEAK), 10.0)
    fd_check(lambda a: node.mfu(a, H100_PEAK), 4.5e14)


def test_grad_serving_wall4():
    fd_check(lambda bw: decode(140e9, 4e10, 70e9, 16, H100_PEAK, bw).itl_s, H100_BW)
    fd_check(lambda e: prefill(70e9, 2048, 4, H100_PEAK, H100_BW, 140e9, efficiency=e).ttft_s,
             0.45)
    fd_check(lambda i: node.serving_throughput(i, 0.3, 8, 256).tokens_per_s, 0.04)


def test_grad_batching_wall5():
    fd_check(lambda s: kv_cache(80, 8, 128, s, 16, 2.0), 4096.0)
    fd_check(lambda s: kv_cache(61, 128, 128, s, 16, 2.0, kv_latent_dim=576.0), 4096.0)
    fd_check(lambda c: kv_cache(61, 128, 128, 4096.0, 16, 2.0, kv_latent_dim=c), 576.0)
    fd_check(lambda s: node.kv_waste(s, 8192.0).static_waste_frac, 3000.0)
    fd_check(lambda n: train_mem(n, 1e9, zero_stage=1, dp=8.0).total_bytes, 7e9)
    fd_check(lambda s: act_bytes(s, 1.0, 8192.0, 64.0, 80.0, tp=8.0), 4096.0)


def test_grad_streaming_wall6():
    fd_check(lambda bw: stream(1.75e9, 1e12, 80, bw, 125e15, efficiency=0.5).latency_s, 1.2e12)


def _queue_outputs(lam, mu, c):
    q = mmc(lam, mu, c)
    return jnp.stack([q.mean_wait_s, q.p99_latency_s, q.p_wait])


# d(mean_wait, p99, p_wait)/d(lam, mu, c) by reverse mode (a jax.grad per output) in ONE compiled
# program: separate jax.grad calls per argument compiled mmc_queue's gammaincc four times (~10 s)
_QUEUE_JACOBIAN = jax.jit(jax.jacrev(_queue_outputs, argnums=(0, 1, 2)))


def test_grad_queue_wall7():
    J = np.stack(_QUEUE_JACOBIAN(8.0, 1.0, 10.0), axis=1)          # [output, argument]
    fd_check_derivative(J[0, 0], lambda lam: mmc(lam, 1.0, 10.0).mean_wait_s, 8.0)
    fd_check_derivative(J[1, 0], lambda lam: mmc(lam, 1.0, 10.0).p99_latency_s, 8.0)
    fd_check_derivative(J[2, 1], lambda mu: mmc(8.0, mu, 10.0).p_wait, 1.0)
    # non-integer servers: d(p_wait)/dc through gammaincc's first argument
    g = fd_check_derivative(np.stack(_QUEUE_JACOBIAN(8.0, 1.0, 10.5), axis=1)[2, 2],
                            lambda c: mmc(8.0, 1.0, c).p_wait, 10.5, rtol=1e-5)
    assert g < 0


def test_grads_finite_at_unstable_and_zero_load():
    for lam in (0.0, 10.0, 20.0):
        g = jax.grad(lambda x: mmc(x, 1.0, 10.0).p99_latency_s)(lam)
        assert np.isfinite(float(g))
    g = jax.grad(lambda kv: max_batch(80e9, 16e9, kv))(0.0)
    assert np.isfinite(float(g))


# ============================================================================ properties
pos = st.floats(min_value=1e-3, max_value=1e3)
scale = st.floats(min_value=1.0, max_value=1e3)


@PROP
@given(f=st.floats(1e3, 1e18), b=st.floats(1.0, 1e14), peak=st.floats(1e9, 1e16),
       bw=st.floats(1e8, 1e14), k=scale, eta=st.floats(0.05, 1.0), tax=st.floats(0.0, 1e-3))
def test_more_bandwidth_or_flops_never_slower(f, b, peak, bw, k, eta, tax):
    base = float(roofline(f, b, peak, bw, efficiency=eta, dispatch_tax_s=tax).latency_s)
    assert float(roofline(f, b, peak, bw * k, efficiency=eta, dispatch_tax_s=tax).latency_s) <= base
    assert float(roofline(f, b, peak * k, bw, efficiency=eta, dispatch_tax_s=tax).latency_s) <= base
    d = float(decode(b, b, f / 1e6, 1.0, peak, bw).itl_s)
    assert float(decode(b, b, f / 1e6, 1.0, peak, bw * k).itl_s) <= d
    assert d >= float(decode(b, b, f / 1e6, 1.0, peak, bw).t_compute_s)


@PROP
@given(n_l=st.integers(1, 128), h=st.integers(1, 64), d=st.integers(16, 256),
       s=st.integers(1, 200_000), bsz=st.integers(1, 1024), k=st.integers(1, 16))
def test_kv_linear_in_batch_and_seq(n_l, h, d, s, bsz, k):
    one = float(kv_cache(n_l, h, d, s, bsz, 2.0))
    np.testing.assert_allclose(float(kv_cache(n_l, h, d, s, bsz * k, 2.0)), k * one, rtol=1e-12)
    np.testing.assert_allclose(float(kv_cache(n_l, h, d, s * k, bsz, 2.0)), k * one, rtol=1e-12)


@PROP
@given(cap=st.floats(0.0, 1e12), extra=st.floats(0.0, 1e12), w=st.floats(0.0, 1e12),
       kv=st.floats(0.0, 1e10), r=st.floats(0.0, 0.5))
def test_max_batch_monotone_in_capacity(cap, extra, w, kv, r):
    lo = float(max_batch(cap, w, kv, reserve_frac=r))
    hi = float(max_batch(cap + extra, w, kv, reserve_frac=r))
    assert 0.0 <= lo <= hi <= 1e9


@PROP
@given(c=st.floats(0.5, 500.0), mu=pos, r1=st.floats(0.0, 0.999), r2=st.floats(0.0, 0.999))
def test_erlang_c_bounded_and_increasing_in_load(c, mu, r1, r2):
    lo, hi = sorted((r1, r2))
    q_lo = mmc(lo * c * mu, mu, c)
    q_hi = mmc(hi * c * mu, mu, c)
    for q in (q_lo, q_hi):
        assert 0.0 <= float(q.p_wait) <= 1.0
        assert all_finite(q)
    assert float(q_lo.p_wait) <= float(q_hi.p_wait) + 1e-12
    assert float(q_lo.mean_wait_s) <= float(q_hi.mean_wait_s) * (1 + 1e-9) + 1e-15
    assert float(q_hi.p99_latency_s) >= 1.0 / mu * (1 - 1e-12)


@PROP
@given(rho=st.sampled_from([0.0, 1e-12, 0.5, 1 - 1e-6, 1 - 1e-9, 1.0, 1.5]),
       c=st.sampled_from([1.0, 2.5, 8.0, 1000.0]), mu=pos)
def test_queue_finite_at_edges(rho, c, mu):
    q = mmc(rho * c * mu, mu, c)
    assert all_finite(q)
    assert bool(q.stable) == (rho < 1.0)


@PROP
@given(bsz=st.sampled_from([1.0, 2.0]), tax=st.sampled_from([0.0, 1e-5]),
       kv=st.sampled_from([0.0, 1e9]), bw=st.floats(1e9, 1e13))
def test_serving_finite_at_edges(bsz, tax, kv, bw):
    d = decode(1e9, kv, 5e8, bsz, 1e14, bw)
    p = prefill(5e8, 1.0, bsz, 1e14, bw, 1e9, dispatch_tax_s=tax)
    assert all_finite(d) and all_finite(p)
    assert all_finite(node.serving_throughput(d.itl_s, p.ttft_s, bsz, 1.0))
    assert float(max_batch(80e9, 1e9, kv)) >= 0.0


def test_dimensional_homogeneity_by_scaling():
    key = jax.random.PRNGKey(7)
    k1, k2, k3 = jax.random.split(key, 3)
    f = jax_uniform(k1, 100_000, 1e6, 1e15, True)
    b = jax_uniform(k2, 100_000, 1e3, 1e12, True)
    k = jax_uniform(k3, 100_000, 0.1, 100.0, True)
    base = roofline(f, b, H100_PEAK, H100_BW)
    scaled_bytes = roofline(f, b * k, H100_PEAK, H100_BW * k)  # bytes and B/s together
    np.testing.assert_allclose(scaled_bytes.t_memory_s, base.t_memory_s, rtol=1e-12)
    scaled_rate = roofline(f, b, H100_PEAK * k, H100_BW * k)  # all rates ×k: times /k
    np.testing.assert_allclose(scaled_rate.latency_s * k, base.latency_s, rtol=1e-12)
    assert bool(jnp.all(scaled_rate.bottleneck == base.bottleneck))
