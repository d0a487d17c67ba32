"""walls/serving.py and queueing.mgc_queue: reference values, batched == scalar, grad vs FD,
and the M/G/c approximation against a small discrete-event simulation (numpy, FCFS)."""
import heapq
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from golden import H100_BW

from mlsys_opt.walls import queueing
from mlsys_opt.walls import serving as sw
from mlsys_opt.walls._masked import UNBOUNDED

Z99 = 2.3263478740408408


# --------------------------------------------------------------------------- reference values
# (the paper / docstring golden values of these walls are rows of tests/golden.py; the tests
# here check them against simulations, identities and limits)
def test_lognormal_quantile_reference():
    s2 = math.log(1.25)                                   # cv 0.5
    med = 2000 / math.sqrt(1.25)
    assert float(sw.lognormal_quantile(2000.0, 0.5, 0.5)) == pytest.approx(med, rel=1e-9)
    assert float(sw.lognormal_quantile(2000.0, 0.5, 0.99)) == pytest.approx(med * math.exp(Z99 * math.sqrt(s2)),
                                                                          rel=1e-9)
    assert float(sw.lognormal_quantile(2000.0, 0.0, 0.99)) == pytest.approx(2000.0, rel=1e-12)
    # The sample mean of log-normal draws with that parametrisation is the mean.
    rng = np.random.default_rng(0)
    x = rng.lognormal(math.log(med), math.sqrt(s2), 400_000)
    assert x.mean() == pytest.approx(2000.0, rel=5e-3)
    assert np.quantile(x, 0.99) == pytest.approx(float(sw.lognormal_quantile(2000.0, 0.5, 0.99)), rel=0.02)


def test_lognormal_quantile_derivative_at_fixed_lengths():
    """cv = 0 (fixed lengths, the scenario default) is the edge of cv's domain: x_q = mean·exp(z·σ - σ²/2)
    with σ = cv + O(cv³), so dx_q/dcv = mean·z_q there (the upward side), not a square root's 0; the
    forward difference agrees, and away from 0 the derivative is the smooth one (central differences)."""
    g = jax.grad(lambda v: sw.lognormal_quantile(2000.0, v, 0.99))
    assert float(g(0.0)) == pytest.approx(2000.0 * Z99, rel=1e-9)
    h = 1e-7
    fwd = (float(sw.lognormal_quantile(2000.0, h, 0.99)) - 2000.0) / h
    assert float(g(0.0)) == pytest.approx(fwd, rel=1e-5)
    f = lambda v: sw.lognormal_quantile(2000.0, v, 0.99)     # noqa: E731  (float64: tests/conftest.py)
    for v in (1e-5, 0.5, 2.0):
        fd = (float(f(v + 1e-7)) - float(f(v - 1e-7))) / 2e-7
        assert float(jax.grad(f)(v)) == pytest.approx(fd, rel=1e-6), v


def test_combine_quantiles_reference_and_monotone():
    assert float(sw.combine_quantiles(0.1, 0.9, 0.3, 0.6)) == pytest.approx(0.4 + math.sqrt(0.64 + 0.09), rel=1e-12)
    # normals: exact
    assert float(sw.combine_quantiles(1.0, 1.0 + 3 * Z99, 2.0, 2.0 + 4 * Z99)) == pytest.approx(3.0 + 5 * Z99)
    # one dominant term: its quantile plus the other's mean
    assert float(sw.combine_quantiles(0.0, 0.0, 2.0, 5.0)) == pytest.approx(5.0)
    q = np.linspace(0.0, 3.0, 101)         # a quantile below the mean too (q < 1)
    v = np.asarray(sw.combine_quantiles(1.0, q, 1.0, 2.0))
    assert np.all(np.diff(v) >= 0)


def test_causal_attention_flop_reference():
    # Llama-3-70B, 2000-token prompt: 4·L·(h·d)·n(n+1)/2
    assert float(sw.causal_attention_flop(80, 8192, 2000, 0)) == pytest.approx(4 * 80 * 8192 * 2000 * 2001 / 2)
    # FlashAttention-2 counts causal as half of 4·n²·h·d per layer: same to O(1/n)
    n = 8192.0
    assert float(sw.causal_attention_flop(1, 1, n, 0)) == pytest.approx(4 * n * n / 2, rel=2e-4)
    # chunks add up to the whole prompt (prefix / chunked prefill attend to the cache)
    whole = float(sw.causal_attention_flop(80, 8192, 2048, 0))
    parts = sum(float(sw.causal_attention_flop(80, 8192, 512, 512 * i)) for i in range(4))
    assert parts == pytest.approx(whole, rel=1e-12)
    assert float(sw.causal_attention_flop(1, 1, 1, 99)) == 4 * 100          # decode step at context 100


def test_speculative_decoding_reference():
    s = sw.speculative_decoding(4, 0.8, 0.05)
    assert float(s.tokens_per_step) == pytest.approx((1 - 0.8 ** 5) / 0.2, rel=1e-12)
    assert float(s.draft_cost_steps) == pytest.approx(0.2)
    assert float(s.tokens_p01) == 1
    # Leviathan et al. 2023 Eq. (1) is the sum of α^i; α = 0 -> 1 token, k = 0 -> plain decoding
    assert float(sw.speculative_decoding(3, 0.6, 0).tokens_per_step) == pytest.approx(1 + .6 + .36 + .216)
    assert float(sw.speculative_decoding(5, 0.0, 0.1).tokens_per_step) == 1.0
    off = sw.speculative_decoding(0, 0.9, 0.3)
    assert float(off.tokens_per_step) == 1.0 and float(off.draft_cost_steps) == 0.0
    assert float(sw.speculative_decoding(4, 1.0 - 1e-9, 0).tokens_per_step) == pytest.approx(5.0, rel=1e-6)
    # the distribution of tokens per step against a simulation
    rng = np.random.default_rng(1)
    acc = rng.uniform(size=(200_000, 4)) < 0.8
    n = 1 + np.argmin(np.concatenate([acc, np.zeros((200_000, 1), bool)], axis=1), axis=1)
    assert n.mean() == pytest.approx(float(s.tokens_per_step), rel=5e-3)
    assert np.quantile(n, 0.5) == float(s.tokens_p50) and np.quantile(n, 0.01) == 1


def test_prefill_interference_reference():
    it = sw.prefill_interference(0.02, 0.015, 10.0)      # share and P99: tests/golden.py
    assert float(it.itl_mean_s) == pytest.approx(0.02 + float(it.chunk_share) * 0.015)
    assert float(it.itl_p50_s) == pytest.approx(0.02)
    sat = sw.prefill_interference(0.02, 0.2, 10.0)                     # x·Δ >= 1: every iteration
    assert float(sat.chunk_share) == 1.0 and float(sat.itl_p50_s) == pytest.approx(0.22)
    idle = sw.prefill_interference(0.02, 0.2, 0.0)
    assert float(idle.itl_p99_s) == pytest.approx(0.02) and float(idle.chunk_share) == 0.0


def test_running_batch_reference():
    """Little's law over the affine step (values: tests/golden.py); the batch seen is 1 + B; an
    overload saturates at the cap; zero load runs one sequence at a time."""
    rb = sw.running_batch(4.0, 0.03, 0.01, 1e-4, 193.0, 256.0)
    b = 7.84 / 0.9228
    assert float(rb.seen) == pytest.approx(b + 1.0) and not bool(rb.saturated)
    s = 0.03 + 193.0 * (0.01 + 1e-4 * b)                 # the service at the batch seen: B = x·S
    assert float(rb.mean) == pytest.approx(4.0 * s)
    full = sw.running_batch(40.0, 0.03, 0.01, 1e-4, 193.0, 64.0)
    assert bool(full.saturated) and float(full.mean) == 64.0 and float(full.seen) == 64.0
    idle = sw.running_batch(0.0, 0.03, 0.01, 1e-4, 193.0, 64.0)
    assert float(idle.mean) == 0.0 and float(idle.seen) == 1.0
    # chunks on some iterations: the mean iteration t/(1 − y·Δ) (prefill_interference, f < 1)
    ch = sw.running_batch(4.0, 0.03, 0.01, 1e-4, 193.0, 256.0, chunks_per_s=2.0, chunk_extra_s=0.05)
    t = 0.01 + 1e-4 * float(ch.mean)
    it = sw.prefill_interference(t, 0.05, 2.0)
    assert float(ch.mean) == pytest.approx(4.0 * (0.03 + 193.0 * float(it.itl_mean_s)), rel=1e-9)


def test_kv_transfer_reference():
    kv = sw.kv_transfer(655.36e6, 300e9, 2e-6, 0.3, 80)   # exposed 29.3 µs: tests/golden.py
    t = 655.36e6 / 300e9
    assert float(kv.transfer_s) == pytest.approx(2e-6 + t)
    assert float(kv.energy_j) == pytest.approx(655.36e6 * sw.NETWORK_J_PER_BYTE)
    slow = sw.kv_transfer(655.36e6, 1e9, 2e-6, 0.3, 80)                # link slower than the prefill
    assert float(slow.exposed_s) == pytest.approx(2e-6 + 0.65536 - 0.3 * 79 / 80)


def test_moe_offload_power_reference():
    assert float(sw.experts_touched(8, 2, 1)) == pytest.approx(2.0)
    assert float(sw.experts_touched(8, 2, 64)) == pytest.approx(8.0, rel=1e-7)
    assert float(sw.experts_touched(1, 1, 5)) == 1.0                    # dense
    assert float(sw.offload_spill_bytes(140e9, 30e9, 160e9)) == pytest.approx(10e9)
    assert float(sw.offload_spill_bytes(100e9, 30e9, 160e9)) == 0.0
    assert float(sw.offload_spill_bytes(200e9, 30e9, 160e9)) == pytest.approx(30e9)   # all of it, still short
    assert float(sw.split_read_s(140e9, 10e9, H100_BW, 64e9)) == pytest.approx(130e9 / H100_BW + 10e9 / 64e9)
    assert float(sw.busy_fraction(0.3, 16)) == pytest.approx(1 - 0.7 ** 16)
    assert float(sw.busy_fraction(0.3, 1)) == pytest.approx(0.3)
    assert float(sw.batch_step_s(10.5e-3, 11e-3, 3e-3, 0.8e-3)) == pytest.approx(14.8e-3)


def test_pow_unit_equals_power_with_exact_edges_and_finite_gradients():
    """busy_fraction and experts_touched take (1 − ρ)^b and (1 − k/E)^T as exp(b·ln x) (sw._pow_unit,
    vectorised on the CPU where jnp.power is a libm call per element): the power's values, exactly
    0 and 1 at the edges, and finite gradients that match the power's inside (0, 1)."""
    base = np.array([0.0, 0.0, 1e-30, 1e-3, 0.3, 0.5, 0.7, 0.999, 1.0 - 1e-12, 1.0, 1.0, 0.25, 0.9])
    expo = np.array([0.0, 3.0, 2.0, 0.5, 16.0, 1.0, 7.3, 256.0, 1e6, 0.0, 64.0, 1e4, 0.0])
    f = jax.jit(sw._pow_unit)
    got = np.asarray(f(base, expo))
    np.testing.assert_allclose(got, np.power(base, expo), rtol=1e-12, atol=0.0)
    assert got[0] == 1.0 and got[1] == 0.0 and got[9] == 1.0 and got[10] == 1.0 and got[12] == 1.0
    # float32: within a few ulp of the float32 power (relative error |b·ln x|·eps at most)
    b32, e32 = base.astype(np.float32), expo.astype(np.float32)
    np.testing.assert_allclose(np.asarray(f(jnp.asarray(b32), jnp.asarray(e32))), np.power(b32, e32),
                               rtol=2e-6, atol=1e-37)
    assert sw._pow_unit(jnp.float32(0.3), jnp.float32(4.0)).dtype == jnp.float32
    # the walls at their edges: idle and saturated slots, dense models, zero tokens
    assert float(sw.busy_fraction(0.0, 16)) == 0.0 and float(sw.busy_fraction(1.0, 16)) == 1.0
    assert float(sw.busy_fraction(0.0, 1)) == 0.0 and float(sw.busy_fraction(1.0, 1)) == 1.0
    assert float(sw.experts_touched(8, 2, 0)) == 0.0 and float(sw.experts_touched(8, 8, 3)) == 8.0
    # gradients: the power's inside, finite (0 from a zero base) at the edges
    inner = (base > 0) & (base < 1) & (expo > 0) & (expo < 1e3)
    g = jax.vmap(jax.grad(sw._pow_unit, argnums=(0, 1)))(jnp.asarray(base), jnp.asarray(expo))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in g)
    b, e = base[inner], expo[inner]
    np.testing.assert_allclose(np.asarray(g[0])[inner], e * np.power(b, e - 1.0), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(g[1])[inner], np.power(b, e) * np.log(b), rtol=1e-10)
    busy_grad = jax.grad(lambda r: sw.busy_fraction(r, 16.0))
    assert float(busy_grad(0.0)) == pytest.approx(16.0) and np.isfinite(float(busy_grad(1.0)))


def test_mgc_queue_reference():
    q = queueing.mgc_queue(8.0, 1.0, 10.0, 0.25)
    m = queueing.mmc_queue(8.0, 1.0, 10.0)
    assert float(q.mean_wait_s) == pytest.approx(0.625 * float(m.mean_wait_s), rel=1e-12)
    assert float(q.wait_p99_s) == pytest.approx(0.625 * math.log(float(m.p_wait) / 0.01) / 2.0, rel=1e-12)
    assert float(q.wait_p50_s) == 0.0
    # C_s² = 1 is the M/M/c: same P99 wait as wall 7
    e = queueing.mgc_queue(8.0, 1.0, 10.0, 1.0)
    assert float(e.wait_p99_s) == pytest.approx(float(m.p99_latency_s) - 1.0, rel=1e-10)
    # M/G/1: Allen–Cunneen is Pollaczek–Khinchine exactly, W = (1 + C_s²)/2 · ρ/(μ − λ)
    # (the M/D/1 value is a row of tests/golden.py); zero load: no wait; unstable: UNBOUNDED
    z = queueing.mgc_queue(0.0, 1.0, 4.0, 2.0)
    assert float(z.mean_wait_s) == 0 and float(z.wait_p99_s) == 0
    u = queueing.mgc_queue(5.0, 1.0, 4.0, 2.0)
    assert not bool(u.stable) and float(u.wait_p99_s) == UNBOUNDED


def test_closed_form_ggc_queue_reference():
    q = queueing.ggc_queue_closed_form(8.0, 1.0, 10.0, 1.0)
    pw = 0.8 ** (math.sqrt(22.0) - 1.0)
    assert float(q.mean_wait_s) == pytest.approx(pw / 2.0, rel=1e-12)
    assert float(q.wait_p99_s) == pytest.approx(math.log(pw / 0.01) / 2.0, rel=1e-12)
    # c = 1: P(wait) = ρ, the Pollaczek–Khinchine mean, same as mgc_queue
    one, ac = queueing.ggc_queue_closed_form(0.5, 1.0, 1.0, 0.3), queueing.mgc_queue(0.5, 1.0, 1.0, 0.3)
    assert float(one.mean_wait_s) == pytest.approx(float(ac.mean_wait_s), rel=1e-9)
    # within 10 % of Erlang C at moderate load
    for c, rho in ((4, 0.8), (16, 0.9), (64, 0.95)):
        a = queueing.mgc_queue(rho * c, 1.0, float(c), 0.5).mean_wait_s
        b = queueing.ggc_queue_closed_form(rho * c, 1.0, float(c), 0.5).mean_wait_s
        assert float(b) == pytest.approx(float(a), rel=0.10), c
    z = queueing.ggc_queue_closed_form(0.0, 1.0, 4.0, 2.0)
    assert float(z.mean_wait_s) == 0 and bool(z.stable)
    assert float(queueing.ggc_queue_closed_form(5.0, 1.0, 4.0, 2.0).wait_p99_s) == UNBOUNDED


# --------------------------------------------------------------------------- DES check
def _des_waits(lam, c, cs2, n=100_000, seed=0):
    """FCFS M/G/c with gamma service (mean 1, squared CV cs2): mean, P50, P99 wait (warm-up dropped)."""
    rng = np.random.default_rng(seed)
    arrive = np.cumsum(rng.exponential(1.0 / lam, n))
    serve = rng.gamma(1.0 / cs2, cs2, n)
    free = [0.0] * c
    wait = np.empty(n)
    for i in range(n):
        start = max(arrive[i], heapq.heappop(free))
        wait[i] = start - arrive[i]
        heapq.heappush(free, start + serve[i])
    w = wait[n // 10:]
    return w.mean(), np.quantile(w, 0.99)


@pytest.mark.parametrize("c,rho,cs2", [(1, 0.7, 0.5), (4, 0.8, 0.25), (8, 0.85, 2.0), (16, 0.9, 0.5)])
def test_mgc_queue_against_discrete_event_simulation(c, rho, cs2):
    """Allen–Cunneen mean within 12 %, Kingman-tail P99 within 20 % of simulation."""
    mean, p99 = _des_waits(rho * c, c, cs2)
    q = queueing.mgc_queue(rho * c, 1.0, float(c), cs2)
    assert float(q.mean_wait_s) == pytest.approx(mean, rel=0.12)
    assert float(q.wait_p99_s) == pytest.approx(p99, rel=0.20)
    # and the M/M/c form (variability ignored) is worse whenever C_s² is far from 1
    if abs(cs2 - 1) > 0.5:
        mm = queueing.mmc_queue(rho * c, 1.0, float(c))
        assert abs(float(mm.mean_wait_s) / mean - 1) > abs(float(q.mean_wait_s) / mean - 1)


# --------------------------------------------------------------------------- batched == scalar, gradients
def _all(x):
    lam, mu, c, cs2, k, a, f, n, ctx, bw, pf, bpe = x
    q = queueing.mgc_queue(lam, mu, c, cs2)
    s = sw.speculative_decoding(k, a, f)
    return jnp.stack([q.mean_wait_s, q.wait_p99_s, s.tokens_per_step,
                      sw.lognormal_quantile(n, cs2, 0.99), sw.causal_attention_flop(80.0, 8192.0, n, ctx),
                      sw.kv_transfer(n * bpe, bw, 2e-6, pf, 80.0).exposed_s,
                      sw.experts_touched(8.0, 2.0, n / 100.0),
                      sw.prefill_interference(pf, pf * a, lam / 10).itl_mean_s,
                      sw.busy_fraction(lam / (mu * c * 2), k + 1.0),
                      sw.running_batch(lam / 10, pf / 10, pf / 100, pf * 1e-5, n / 20, c * 4, chunks_per_s=lam / 20,
                                       chunk_extra_s=pf * a / 50).mean])


def _random_inputs(n, seed):
    rng = np.random.default_rng(seed)
    c = rng.integers(1, 64, n).astype(float)
    return np.stack([rng.uniform(0.1, 0.95, n) * c, np.ones(n), c, rng.uniform(0, 3, n),
                     rng.integers(0, 8, n).astype(float), rng.uniform(0, 0.99, n), rng.uniform(0, 0.9, n),
                     rng.uniform(1, 8192, n), rng.uniform(0, 4096, n), rng.uniform(1e9, 1e12, n),
                     rng.uniform(1e-3, 1.0, n), rng.uniform(1e5, 4e5, n)])


def test_batched_equals_scalar_and_finite():
    x = _random_inputs(256, 3)
    f = jax.jit(_all)
    batched = np.asarray(f(x))
    assert np.all(np.isfinite(batched))
    for i in (0, 17, 101, 255):
        np.testing.assert_allclose(np.asarray(f(x[:, i])), batched[:, i], rtol=1e-12)


def test_gradients_match_finite_differences():
    x0 = np.array([6.0, 1.0, 8.0, 0.7, 4.0, 0.75, 0.05, 2000.0, 100.0, 3e11, 0.3, 3.2e5])

    def loss(x):
        v = _all(x)
        return jnp.sum(jnp.log(v + 1e-3) * jnp.arange(1.0, 11.0))

    loss = jax.jit(loss)
    g = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(x0)))
    assert np.all(np.isfinite(g))
    for i in (0, 2, 3, 5, 7, 8, 9, 10):                  # the continuous inputs
        h = 1e-6 * max(abs(x0[i]), 1.0)
        up, dn = x0.copy(), x0.copy()
        up[i] += h
        dn[i] -= h
        fd = (float(loss(jnp.asarray(up))) - float(loss(jnp.asarray(dn)))) / (2 * h)
        assert g[i] == pytest.approx(fd, rel=1e-4, abs=1e-9), i


def test_float32_erlang_terms_truncate_like_float64_terms():
    # walls.erlang's float32 term counts (fewer series terms, Temme from a smaller s), evaluated
    # in float64 arithmetic, against the float64 counts: the truncation alone, without float32's
    # rounding, must stay far below float32's resolution in ln Q(c + 1, a) (worst at ρ -> 1 just
    # below the series/Temme switch; the previous counts, 34 terms from s <= 30, gave 1.0e-8).
    from mlsys_opt.walls import erlang
    c = np.exp(np.linspace(np.log(0.01), np.log(1e6), 600))
    rho = np.concatenate([np.linspace(0.01, 0.99, 50), 1.0 - np.logspace(-2, -12, 25)])
    c, rho = (x.ravel() for x in np.meshgrid(c, rho))
    args = jnp.asarray(c), jnp.asarray(rho * c)
    want = erlang.poisson_logs(*args)
    f32_terms = erlang._terms(jnp.float32)
    assert f32_terms != erlang._terms(jnp.float64)
    orig = erlang._terms
    try:
        erlang._terms = lambda dtype: f32_terms
        got = erlang.poisson_logs(*args)
    finally:
        erlang._terms = orig
    assert np.max(np.abs(np.asarray(got.log_cdf) - np.asarray(want.log_cdf))) < 2e-8
