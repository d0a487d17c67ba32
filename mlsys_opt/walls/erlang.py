"""Erlang B for real server counts at a fixed cost per element (no data-dependent loop).

The M/M/c queue (wall 7) needs the Poisson ratio B(c, a) = pmf(c; a) / cdf(c; a),
continued to real c (Jagerman 1974):

    pmf(c; a) = a^c e^-a / Γ(c+1),    cdf(c; a) = Q(c+1, a)  (regularised upper gamma).

``jax.scipy.special.gammaincc`` computes Q with a ``while_loop`` that, under vmap,
runs until the slowest element of the batch converges (hundreds of passes over the
chunk once c·ρ is large); it was most of the serving scenario's cost.  Here the
stable region of the queue, 0 < a < c, is covered by two fixed-length forms, both
evaluated (then selected) so the whole function fuses into one elementwise kernel:

* the power series  P(s, x) = D · Σ_{n≥0} x^n / ((s+1)···(s+n)),  D = x^s e^-x / Γ(s+1)
  (DLMF 8.11.4 / 8.7.1), Q = 1 − P, where s = c+1 is small or λ = x/s ≤ 1/2;
* Temme's uniform expansion (DLMF 8.12.3, 8.12.8–8.12.10)
      Q(s, x) = ½ erfc(η √(s/2)) + e^{-sη²/2} / √(2πs) · Σ_k c_k(η) s^-k,
      ½η² = λ − 1 − ln λ,  η < 0 for λ < 1,
  elsewhere (s large and 1/2 < λ < 1, |η| < 0.62).  The c_k are Taylor series in η
  whose exact rational coefficients are generated here from the recursion
  c_0 = 1/μ − 1/η, c_k = η⁻¹ c'_{k-1} + (−1)^k g_k / μ  (μ = λ − 1, g_k Stirling's
  coefficients, DLMF 5.11.3), not copied from a table.

Every logarithm is formed without cancellation: ln D = −s·h(μ) − ½ ln(2πs) − stirlerr(s)
with h(μ) = μ − ln(1+μ) from an atanh series near μ = 0, and stirlerr(s) =
ln Γ(s+1) − (s+½) ln s + s − ½ ln 2π from Stirling's series for s ≥ 10.  The number of
terms is fixed per dtype (static under jit): float64 agrees with scipy/mpmath to
~1e-13 in ln Q, float32 to its own rounding.
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import NamedTuple

import jax.numpy as jnp
from jax.scipy.special import erfc

_LOG_2PI = math.log(2.0 * math.pi)


class _Terms(NamedTuple):
    n_series: int  # power-series terms
    s_series_max: float  # s at or below which the series is used for every λ
    lam_series_max: float  # λ at or below which the series is used for every s
    n_temme_k: int  # orders s^-k in Temme's expansion
    n_temme_eta: int  # Taylor terms of each c_k(η)
    n_atanh: int  # terms of the atanh series in h(μ)
    n_stirling: int  # terms of Stirling's series (s >= 10)


_F64 = _Terms(60, 40.0, 0.5, 6, 22, 17, 7)
# float32: Temme from s > 12 with four orders, so the series needs 22 terms (it took 34 with
# Temme from s > 30 at three orders), 8 Taylor terms per c_k(η) (|η| < 0.62 there), 3 of
# Stirling's: these terms, evaluated in float64 arithmetic, stay within 1e-8 of _F64 in ln Q
# (as the previous ones did; c in [1e-2, 1e6], ρ up to 1 - 1e-12: tests/test_serving_walls.py),
# far below float32's own rounding; ~15 % fewer operations per element (XLA cost analysis).
_F32 = _Terms(22, 12.0, 0.5, 4, 8, 8, 3)
# Temme's elements must have λ > ½, where `_h_and_w`'s atanh form (and its w) is exact.
assert min(_F64.lam_series_max, _F32.lam_series_max) >= 0.5


def _terms(dtype) -> _Terms:
    return _F64 if jnp.finfo(dtype).bits > 32 else _F32


# --------------------------------------------------------------------------- coefficients
def _mul(a, b, m):
    out = [Fraction(0)] * m
    for i, ai in enumerate(a[:m]):
        for j, bj in enumerate(b[:m - i]):
            out[i + j] += ai * bj
    return out


def _compose(a, b, m):
    """a(b(t)) truncated to m terms; b[0] == 0."""
    out, power = [Fraction(0)] * m, [Fraction(1)] + [Fraction(0)] * (m - 1)
    for n in range(m):
        if n:
            power = _mul(power, b, m)
        out = [o + a[n] * p for o, p in zip(out, power)]
    return out


def _stirling_g(k_max: int) -> list[Fraction]:
    """g_k of Γ*(z) = Γ(z) / (√(2π) z^{z-½} e^-z) ~ Σ g_k z^-k (DLMF 5.11.3): g_1 = 1/12."""
    bern = [Fraction(1)]
    for m in range(1, 2 * k_max + 3):
        bern.append(-sum(math.comb(m + 1, k) * bern[k] for k in range(m)) / (m + 1))
    log_g = [Fraction(0)] * (k_max + 1)  # ln Γ* = Σ B_2m / (2m(2m-1) z^{2m-1})
    for m in range(1, k_max + 2):
        if 2 * m - 1 <= k_max:
            log_g[2 * m - 1] = bern[2 * m] / (2 * m * (2 * m - 1))
    g = [Fraction(1)] + [Fraction(0)] * k_max  # exp of the series: n g_n = Σ k L_k g_{n-k}
    for n in range(1, k_max + 1):
        g[n] = sum(k * log_g[k] * g[n - k] for k in range(1, n + 1)) / n
    return g


@functools.lru_cache(maxsize=None)
def temme_coefficients(n_k: int, n_eta: int) -> tuple[tuple[float, ...], ...]:
    """Taylor coefficients of c_k(η), k < n_k, each to n_eta terms (c_0(0) = −1/3).

    μ(η) is the reversion of η = μ √(2(μ − ln(1+μ))/μ²); then 1/μ = V(η)/η and
    c_0 = (V − 1)/η, c_k = (c'_{k-1} + (−1)^k g_k V)/η, whose η⁻¹ poles cancel exactly
    (asserted).  Exact rational arithmetic; ~0.05 s, cached.
    """
    m = n_eta + 2 * n_k + 4
    h = [Fraction(2 * (-1) ** n, n) for n in range(2, m + 2)]  # 2(μ − ln(1+μ))/μ²
    root = [Fraction(1)] + [Fraction(0)] * (m - 1)  # √h, h[0] = 1
    for n in range(1, m):
        root[n] = (h[n] - sum(root[k] * root[n - k] for k in range(1, n))) / 2
    eta_of_mu = [Fraction(0)] + root[:m - 1]
    mu_of_eta = [Fraction(0), Fraction(1)] + [Fraction(0)] * (m - 2)
    for n in range(2, m):  # series reversion, one order at a time
        mu_of_eta[n] -= _compose(eta_of_mu, mu_of_eta, n + 1)[n]
    u = mu_of_eta[1:] + [Fraction(0)]  # μ = η·u
    v = [Fraction(1)] + [Fraction(0)] * (m - 1)  # v = 1/u
    for n in range(1, m):
        v[n] = -sum(u[k] * v[n - k] for k in range(1, n + 1))
    g = _stirling_g(n_k)
    coeffs = [v[1:]]
    for k in range(1, n_k):
        prev = coeffs[-1]
        bracket = [n * prev[n] + (-1) ** k * g[k] * v[n - 1] for n in range(1, len(prev))]
        assert bracket[0] == 0, "Temme recursion: the η⁻¹ pole must cancel"
        coeffs.append(bracket[1:])
    return tuple(tuple(float(x) for x in ck[:n_eta]) for ck in coeffs)


# --------------------------------------------------------------------------- stable pieces
def _h_and_w(lam, n_atanh: int):
    """h = λ − 1 − ln λ ≥ 0 and w = 2h/μ² (μ = λ − 1) for λ ∈ (0, 1], without cancellation.

    For λ > ½: r = μ/(2+μ), S = Σ_k r^{2k}/(2k+3), w = (1−r)(1 − (1−r)·r·S)
    (from ln(1+μ) = 2 atanh r); else h = μ − ln λ from λ itself (no cancellation
    there, and ln λ keeps a tiny λ's digits that 1 + μ would lose).
    """
    mu = lam - 1.0
    near = lam > 0.5
    mu_n = jnp.where(near, mu, -0.25)
    r = mu_n / (2.0 + mu_n)
    r2 = r * r
    s = jnp.zeros_like(r)
    for k in reversed(range(n_atanh)):
        s = s * r2 + 1.0 / (2 * k + 3)
    w_near = (1.0 - r) * (1.0 - (1.0 - r) * r * s)
    lam_f = jnp.where(near, 0.25, lam)
    h_far = (lam_f - 1.0) - jnp.log(lam_f)
    h = jnp.where(near, 0.5 * mu * mu * w_near, h_far)
    return h, w_near


def _stirling_series(s, n_stirling: int):
    """Σ_{m=1}^{n} B_2m / (2m(2m-1) s^{2m-1}): stirlerr(s) for s >= 10 (error < 1e-16 at n = 7)."""
    inv2 = 1.0 / (s * s)
    series = jnp.zeros_like(s)
    for m in reversed(range(1, n_stirling + 1)):
        series = series * inv2 + float(_BERNOULLI_2M[m - 1] / (2 * m * (2 * m - 1)))
    return series / s


_BERNOULLI_2M = (Fraction(1, 6), Fraction(-1, 30), Fraction(1, 42), Fraction(-1, 30), Fraction(5, 66),
                 Fraction(-691, 2730), Fraction(7, 6))


def _stirlerr(s, n_stirling: int):
    """stirlerr(s) = ln Γ(s+1) − (s+½) ln s + s − ½ ln 2π for s >= 1.

    s >= 10: Stirling's series.  s < 10: shifted by ten, ln Γ(s+1) = ln Γ(s+11) −
    ln Π_{j=1..10}(s+j), so stirlerr(s) = stirlerr(s+10) + (s+10.5) ln(s+10) − 10
    − (s+½) ln s − ln Π_{j=1..10}(s+j)  (no lgamma: its Lanczos sum costs ~10 divisions).
    """
    big = s >= 10.0
    s_b = jnp.where(big, s, s + 10.0)
    series = _stirling_series(s_b, n_stirling)
    s_s = jnp.where(big, 1.0, s)
    prod = s_s + 1.0
    for j in range(2, 11):
        prod = prod * (s_s + j)
    shifted = (series + (s_s + 10.5) * jnp.log(s_s + 10.0) - 10.0
               - (s_s + 0.5) * jnp.log(s_s) - jnp.log(prod))
    return jnp.where(big, series, shifted)


class PoissonLogs(NamedTuple):
    log_pmf: object  # ln(a^c e^-a / Γ(c+1))
    log_cdf: object  # ln Q(c+1, a) = ln P(Poisson(a) <= c) for real c


def poisson_logs(c, a) -> PoissonLogs:
    """ln pmf(c; a) and ln cdf(c; a) for real c > 0 and 0 < a < c (the stable queue).

    Fixed cost per element, elementwise, differentiable in both arguments.  Outside
    0 < a < c the values are finite but meaningless (callers mask them).
    Source: DLMF 8.11.4, 8.12.3, 8.12.8–10, 5.11.3; Temme 1979; Loader 2000 (stirlerr).
    """
    t = _terms(jnp.result_type(c, a, float))
    s = c + 1.0
    lam = a / s
    h, w = _h_and_w(lam, t.n_atanh)
    log_d = -s * h - 0.5 * (_LOG_2PI + jnp.log(s)) - _stirlerr(s, t.n_stirling)  # ln(x^s e^-x/Γ(s+1))
    log_pmf = log_d + jnp.log(s) - jnp.log(a)

    use_series = (s <= t.s_series_max) | (lam <= t.lam_series_max)
    # Power series (selected elements only; the rest see a harmless stand-in).
    x_p = jnp.where(use_series, a, 0.5 * s)
    # Σ_{n<=N} x^n/((s+1)···(s+n)) = 1 + x/(s+1)(1 + x/(s+2)(1 + ...)), nested from the inside
    # as one fraction num/den (divisions are the costly op), with x/(s+n) = λ/(1 + n/s):
    # one division per 6 terms keeps num and den < (1 + N)^6 (finite in float32).
    lam_p = x_p / s
    inv_s = 1.0 / s
    num, den = jnp.ones_like(x_p), jnp.ones_like(x_p)
    for i, n in enumerate(range(t.n_series, 0, -1)):
        sn = 1.0 + n * inv_s
        num, den = den * sn + lam_p * num, den * sn
        if i % 6 == 5:
            num, den = num / den, jnp.ones_like(den)
    total = num / den
    log_d_p = jnp.where(use_series, log_d, -1.0)
    q_series = -jnp.expm1(log_d_p + jnp.log(total))
    # Temme (s > s_series_max, λ in (lam_series_max, 1)).  Its elements have λ > ½, where
    # `w` is exact; elsewhere `w` is the finite stand-in of `_h_and_w` and the result unused.
    s_t = jnp.where(use_series, t.s_series_max + 1.0, s)
    eta = (lam - 1.0) * jnp.sqrt(w)
    acc, inv_s_t = jnp.zeros_like(eta), 1.0 / s_t                 # one division, not one per order
    for ck in reversed(temme_coefficients(t.n_temme_k, t.n_temme_eta)):
        c_eta = jnp.zeros_like(eta)
        for coef in reversed(ck):
            c_eta = c_eta * eta + coef
        acc = acc * inv_s_t + c_eta
    q_temme = (0.5 * erfc(eta * jnp.sqrt(0.5 * s_t))
               + jnp.exp(-s_t * h - 0.5 * (_LOG_2PI + jnp.log(s_t))) * acc)
    q = jnp.where(use_series, q_series, q_temme)
    return PoissonLogs(log_pmf, jnp.log(q))
