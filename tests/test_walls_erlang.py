"""The fixed-cost Poisson logs behind Erlang B (mlsys_opt.walls.erlang).

References: scipy.special (gammaincc / gammaln, double precision) where it is
accurate (s <= 1e5), a long log-space power series beyond; Temme's c_k(0) and
Stirling's g_k from DLMF 8.12 / 5.11.  conftest.py enables x64.
"""
from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import gammaincc, gammaln
from wallcheck import fd_check

from mlsys_opt.walls import erlang

logs = jax.jit(erlang.poisson_logs)


def _space(n, c_max, seed=0):
    """c log-uniform in [0.01, c_max]; load ρ uniform and piled up near 1 (the hard end)."""
    rng = np.random.default_rng(seed)
    c = np.exp(rng.uniform(np.log(0.01), np.log(c_max), 2 * n))
    rho = np.concatenate([rng.uniform(0.0, 1.0, n), 1.0 - np.exp(rng.uniform(-18.0, 0.0, n))])
    return c, np.maximum(rho * c, 1e-200), rho


def _erlang_c(log_b, rho):
    b = np.exp(np.minimum(log_b, 0.0))
    return b / (1.0 - rho * (1.0 - b))


def test_coefficients_match_dlmf():
    # DLMF 8.12.12 / Temme 1979: c_0(0) = -1/3, c_0'(0) = 1/12, c_1(0) = -1/540, c_2(0) = 25/6048.
    c = erlang.temme_coefficients(3, 3)
    np.testing.assert_allclose([c[0][0], c[0][1], c[1][0], c[2][0]],
                               [-1 / 3, 1 / 12, -1 / 540, 25 / 6048], rtol=1e-15)
    g = erlang._stirling_g(4)   # DLMF 5.11.4
    assert g[:5] == [1, Fraction(1, 12), Fraction(1, 288), Fraction(-139, 51840), Fraction(-571, 2488320)]


def test_float64_matches_scipy():
    c, a, rho = _space(50_000, 1e5)
    got = logs(jnp.asarray(c), jnp.asarray(a))
    want_cdf = np.log(gammaincc(c + 1.0, a))
    np.testing.assert_allclose(np.asarray(got.log_cdf), want_cdf, rtol=0, atol=1e-12)
    want_b = c * np.log(a) - a - gammaln(c + 1.0) - want_cdf
    got_c = _erlang_c(np.asarray(got.log_pmf - got.log_cdf), rho)
    want_c = _erlang_c(want_b, rho)
    big = want_c > 1e-8
    np.testing.assert_allclose(got_c[big], want_c[big], rtol=1e-8)
    np.testing.assert_allclose(got_c, want_c, rtol=0, atol=1e-9)   # the reference's own c·ln a rounding


@pytest.mark.parametrize("c,rho", [(3e6, 0.999), (5e8, 0.9998), (2e7, 0.7), (1e9, 0.5001)])
def test_large_servers_match_long_series(c, rho):
    # scipy's gammaincc loses digits for s > 1e7 (it gives 0.9999989 where the truth is
    # 0.9999968 at c = 5e8); the reference here is the power series summed to convergence.
    a = rho * c
    s = c + 1.0
    n = np.arange(1, 400_000)
    tail = np.exp(np.cumsum(np.log(a) - np.log(s + n))).sum()
    p = np.exp(s * np.log(a) - a - gammaln(s + 1.0)) * (1.0 + tail)
    got = float(logs(jnp.asarray(c), jnp.asarray(a)).log_cdf)
    assert abs(got - np.log1p(-p)) < 1e-9


def test_float32_close_to_float64():
    c, a, rho = _space(20_000, 1e5, seed=1)
    c32, a32 = (jnp.asarray(x, jnp.float32) for x in (c, a))
    got = logs(c32, a32)
    assert got.log_cdf.dtype == jnp.float32
    ref = logs(jnp.asarray(c32, jnp.float64), jnp.asarray(a32, jnp.float64))
    rho32 = np.asarray(a32, np.float64) / np.asarray(c32, np.float64)
    got_c = _erlang_c(np.asarray(got.log_pmf, np.float64) - np.asarray(got.log_cdf, np.float64), rho32)
    want_c = _erlang_c(np.asarray(ref.log_pmf - ref.log_cdf), rho32)
    assert np.all(np.isfinite(got_c))
    big = want_c > 1e-6
    assert np.max(np.abs(got_c[big] - want_c[big]) / want_c[big]) < 1e-3
    assert np.max(np.abs(got_c - want_c)) < 1e-4


def test_batched_equals_scalar():
    c, a, _ = _space(5_000, 1e6, seed=2)
    batched = logs(jnp.asarray(c), jnp.asarray(a))
    for i in np.random.default_rng(3).choice(c.size, 40, replace=False):
        one = logs(jnp.asarray(c[i]), jnp.asarray(a[i]))
        assert float(one.log_cdf) == float(batched.log_cdf[i])
        assert float(one.log_pmf) == float(batched.log_pmf[i])


@pytest.mark.parametrize("c,a", [(10.5, 8.0), (3.0, 0.2), (200.0, 170.0), (5e4, 3e4), (45.0, 40.0)])
def test_grad_matches_finite_differences(c, a):
    # both branches (series: small s or λ <= 1/2; Temme: large s, 1/2 < λ < 1)
    log_b = lambda cc, aa: (lambda r: r.log_pmf - r.log_cdf)(erlang.poisson_logs(cc, aa))  # noqa: E731
    fd_check(lambda x: log_b(x, a), c, rtol=1e-5)
    fd_check(lambda x: log_b(c, x), a, rtol=1e-5)


def test_finite_everywhere_including_masked_points():
    c = jnp.asarray([1e-3, 0.5, 1.0, 40.0, 41.0, 1e4, 1e9, 1e9], jnp.float32)
    a = jnp.asarray([1e-6, 0.49, 0.999, 39.9, 20.5, 9999.0, 1e3, 9.9999e8], jnp.float32)
    out = jax.jit(erlang.poisson_logs)(c, a)
    g = jax.grad(lambda x: jnp.sum(erlang.poisson_logs(x, a).log_cdf))(c)
    assert np.all(np.isfinite(np.asarray(out.log_cdf))) and np.all(np.isfinite(np.asarray(out.log_pmf)))
    assert np.all(np.isfinite(np.asarray(g)))
