"""Domain 1, Node: the walls of LLM serving as it is deployed today.

Request-length mixes, causal attention FLOPs of a prefill, continuous batching with
chunked prefill and iteration-level admission, speculative decoding, disaggregated
prefill/decode (KV transfer), prefix caching, host offload, MoE expert reads and the power
of a partly busy fleet.
Conventions as in ``node.py``: plain SI floats (scalars or arrays) broadcast to one
shape, keyword-only knobs, finite outputs (``UNBOUNDED`` for unbounded times), finite
gradients away from masked points.  The queue itself (M/G/c) is ``queueing.mgc_queue``.

Sources (per function): Leviathan et al. 2023 (arXiv:2211.17192) and Chen et al. 2023
(arXiv:2302.01318) speculative decoding; Agrawal et al. 2024 Sarathi-Serve (OSDI'24,
arXiv:2403.02310) chunked prefill; Zhong et al. 2024 DistServe (OSDI'24,
arXiv:2401.09670) and Patel et al. 2024 Splitwise (ISCA'24, arXiv:2311.18677)
disaggregation; Dao 2023 FlashAttention-2 (arXiv:2307.08691) causal FLOPs; Kwon et al.
2023 vLLM (prefix sharing); Sheng et al. 2023 FlexGen (arXiv:2303.06865) offload;
Lepikhin et al. 2021 GShard / Fedus et al. 2022 (expert routing); Yu et al. 2022 Orca
(OSDI'22, iteration-level scheduling), Kleinrock 1975 §5.2 and Wolff 1982 (residual life,
PASTA) for the wait to the next iteration boundary.  Every public function here is
registered in ``registry.py`` (walls 4 and 7) and checked by tests/test_walls_special.py.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax.scipy.special import ndtri

from mlsys_opt._types import Array
from mlsys_opt.walls._masked import UNBOUNDED, any_nan, floor_pos, nan_where, nonneg, safe_div, safe_sqrt

# Energy of moving one byte NIC -> switch -> NIC across the scale-out fabric, J/byte.
# Estimate from board powers at line rate: a 400 Gb/s ConnectX-7 adapter draws ~25 W
# (NVIDIA ConnectX-7 datasheet, typical power with passive cables) -> 62.5 pJ/bit at each
# end, and a 64 x 400 Gb/s Quantum-2 switch ~1.7 kW (QM9700 datasheet maximum) -> ~66 pJ/bit;
# 2·62.5 + 66 ≈ 190 pJ/bit = 1.5e-9 J/byte (upper end: NICs and switches are rarely at line rate).
NETWORK_J_PER_BYTE = 1.5e-9


# --------------------------------------------------------------------------- request mix
def lognormal_quantile(mean, cv, q) -> Array:
    """q-quantile of a log-normal length with the given mean and coefficient of variation.

        σ² = ln(1 + cv²),   x_q = mean · exp(z_q·σ − σ²/2),   z_q = Φ⁻¹(q)

    cv = 0 gives the mean for every q.  Request lengths of production traces are
    right-skewed and close to log-normal (Patel et al. 2024 Splitwise §3, Fig. 3; Zhong
    et al. 2024 DistServe §6.1 fit ShareGPT/LongBench the same way).  A monotone cost
    c(x) (prefill time of a prompt, decode time of an output) has c(x_q) as its exact
    q-quantile, which is how the serving scenario uses it.
    Args: mean (tokens, > 0), cv (dimensionless, >= 0), q in (0, 1).
    Example: mean 2000, cv 0.5: σ = 0.4724, median 1789, P99 = 1789·e^{2.3263·0.4724} = 5366.
    """
    m, v, qq = nonneg(mean, cv, q)
    # z_q once per q (a Python number stays a constant under jit, not one ndtri per element)
    z = ndtri(jnp.clip(jnp.asarray(q, m.dtype), 1e-12, 1.0 - 1e-12))
    u = v * v
    s2 = jnp.log1p(u)
    # σ = cv·sqrt(ln(1 + cv²)/cv²): the same value as sqrt(σ²), with dσ/dcv = 1 at cv = 0 (fixed lengths,
    # the default; cv >= 0 is the only admissible side) where a square root's derivative is undefined
    # (safe_sqrt's 0 read "variable lengths cost nothing" there); 1 - u/2 is the series below 1e-8
    big = u > 1e-8
    ratio = jnp.where(big, s2 / jnp.where(big, u, 1.0), 1.0 - 0.5 * u)
    sigma = v * jnp.sqrt(ratio)
    return nan_where(any_nan(m, v, qq), m * jnp.exp(z * sigma - 0.5 * s2))


def combine_quantiles(mean_a_s, q_a_s, mean_b_s, q_b_s) -> Array:
    """q-quantile of A + B (independent) from their means and q-quantiles, root-sum-square.

        (A + B)_q ≈ E[A] + E[B] + sqrt(d_a⁺² + d_b⁺²) + d_a⁻ + d_b⁻,   d = quantile − mean

    (d⁺ = max(d, 0), d⁻ = min(d, 0)).  For upper quantiles (d >= 0) this is the
    root-sum-square rule: exact for normals; for a dominant term it returns that term's
    quantile plus the other's mean; it lies between the larger and the sum of the two
    quantiles (statistical tolerancing, the "root-sum-square" latency budget).  Negative
    excesses (a quantile below the mean) add linearly, so the result never decreases
    when either quantile grows.  Args: seconds (any one unit).
    Example: waits (mean 0.1, P99 0.9) + prefill (mean 0.3, P99 0.6): 0.4 + √(0.64 + 0.09) = 1.254.
    """
    a, qa, b, qb = nonneg(mean_a_s, q_a_s, mean_b_s, q_b_s)
    da, db = qa - a, qb - b
    # d⁺ with floor_pos and d⁻ = d - d⁺: at d = 0 (cv = 0, fixed lengths) the derivative goes to d⁺, the side
    # an upper quantile moves to (jnp.maximum / jnp.minimum split it ½/½ into both); values unchanged.  At
    # d_a = d_b = 0 the root-sum-square is a cone, no linear derivative: safe_sqrt's 0 there
    pa, pb = floor_pos(da, 0.0), floor_pos(db, 0.0)
    return a + b + safe_sqrt(pa * pa + pb * pb) + (da - pa) + (db - pb)


# --------------------------------------------------------------------------- attention
def causal_attention_flop(n_layers, attn_width, new_tokens, cached_tokens=0.0) -> Array:
    """Forward FLOPs of causal attention (QKᵀ and AV) for `new_tokens` after `cached_tokens`.

        FLOP = 4 · L · (h·d) · (n·c + n(n+1)/2)

    Query i (0-based, absolute position c + i) attends to c + i + 1 keys; QKᵀ and AV are
    2·d FLOP per (query, key) pair each per head.  c = 0 is a whole causal prefill,
    4·L·h·d·n(n+1)/2 ≈ half the non-causal 4·L·h·d·n² (FlashAttention-2, Dao 2023 §4.1,
    counts causal attention as half); prefix-cached (c > 0) and chunked prefills attend
    to the cached tokens too.  A decode step is n = 1 at context c.
    Args: n_layers L, attn_width h·d (query heads × head dim), new_tokens n, cached_tokens c.
    Example: Llama-3-70B (L = 80, h·d = 8192), n = 2000, c = 0: 4·80·8192·2,001,000 = 5.246e12
      FLOP (2·70.6e9·2000 = 2.824e14 for the GEMMs: +1.9 %); at n = 8192, +7.6 %.
    """
    n_l, w, n, c = nonneg(n_layers, attn_width, new_tokens, cached_tokens)
    return 4.0 * n_l * w * (n * c + 0.5 * n * (n + 1.0))


# --------------------------------------------------------------------------- speculation
class Speculation(NamedTuple):
    tokens_per_step: Array  # E[tokens] per target step, (1 − α^(k+1))/(1 − α)
    draft_cost_steps: Array  # draft forward passes per step, in target-step units (k·f)
    tokens_p50: Array  # tokens of a step at the median (lower half)
    tokens_p01: Array  # tokens of a step at its 1st percentile (the slow steps the P99 sees)


def speculative_decoding(k, acceptance, draft_cost_frac) -> Speculation:
    """Speculative decoding: k drafted tokens, each accepted with probability α.

        E[tokens per target step] = Σ_{i=0}^{k} α^i = (1 − α^(k+1)) / (1 − α)     (k + 1 at α = 1)

    (Leviathan et al. 2023, Eq. (1), i.i.d. acceptance).  A step emits n tokens with
    P(n) = α^(n−1)(1 − α) for n <= k and α^k for n = k + 1, so P(N <= n) = 1 − α^n; its
    p-quantile is the smallest n >= 1 with α^n <= 1 − p: n_p = clip(⌈ln(1 − p)/ln α⌉, 1, k + 1).
    The draft runs k sequential forward passes, each costing `draft_cost_frac` f of a
    target decode step (≈ draft/target parameter ratio for memory-bound decode).
    k = 0 is plain decoding: 1 token per step, no draft.
    Args: k (count >= 0), acceptance α in [0, 1), draft_cost_frac f in [0, 1).
    Example: k = 4, α = 0.8: E = (1 − 0.8⁵)/0.2 = 3.3616 tokens; median n = ⌈ln .5/ln .8⌉ = 4;
      1st percentile n = 1; draft cost 4·f.
    """
    kk, a, f = nonneg(k, acceptance, draft_cost_frac)
    bad = any_nan(kk, a, f)
    kk = jnp.maximum(kk, 0.0)
    a = jnp.clip(a, 0.0, 1.0)
    near_one = jnp.abs(1.0 - a) < 1e-6
    a_s = jnp.where(near_one, 0.5, a)
    e = jnp.where(near_one, kk + 1.0, (1.0 - jnp.power(a_s, kk + 1.0)) / (1.0 - a_s))
    log_a = jnp.log(jnp.maximum(a, 1e-30))

    def low_quantile(p):          # tokens of the step at level p of its distribution
        n = jnp.ceil(safe_div(-jnp.log(1.0 - p), -log_a, fill=UNBOUNDED))  # α = 1: never rejected
        return jnp.clip(n, 1.0, kk + 1.0)

    return nan_where(bad, Speculation(e, kk * f, low_quantile(0.5), low_quantile(0.01)))


# --------------------------------------------------------------------------- batching
def batch_step_s(weight_read_s, compute_s, kv_read_s, overhead_s=0.0) -> Array:
    """One continuous-batching iteration: max(weight read, GEMM compute) + KV read + overhead, s.

    The weight GEMMs stream their weights while they multiply (roofline max); attention
    reads the KV cache in its own memory-bound kernel (``node.decode(kv_separate=True)``,
    same form); overhead = dispatch + communication.  A prefill chunk fused into the
    iteration (Sarathi-Serve's piggybacking, Agrawal et al. 2024 §4) adds to compute_s:
    while the step is weight-read bound the chunk rides free, past the ridge it costs
    its FLOPs.  Args: seconds.  Example: weights 10.5 ms, compute 2 ms, KV 3 ms, overhead
    0.8 ms: 14.3 ms; a chunk adding 9 ms of compute: max(10.5, 11) + 3 + 0.8 = 14.8 ms.
    """
    w, c, kv, o = nonneg(weight_read_s, compute_s, kv_read_s, overhead_s)
    return jnp.minimum(jnp.maximum(w, c) + kv + o, UNBOUNDED)


class Interference(NamedTuple):
    chunk_share: Array  # fraction of decode iterations that carry a prefill chunk
    itl_mean_s: Array  # mean decode iteration
    itl_p50_s: Array
    itl_p99_s: Array


def prefill_interference(decode_step_s, chunk_extra_s, chunks_per_s) -> Interference:
    """Decode iterations slowed by the prefill chunks sharing them (continuous batching).

    A replica runs iterations back to back; chunks arrive at rate x = λ_replica·n_chunks
    (n_chunks = prompt/chunk, 1 without chunking: the whole prompt stalls one iteration).
    The share f of iterations carrying a chunk solves f = x·(t + f·Δ):

        f = clip(x·t / (1 − x·Δ), 0, 1)     (f = 1 when x·Δ >= 1: every iteration has one)

    An iteration is t (decode only) or t + Δ (with a chunk), so the mean is t + f·Δ and
    the q-quantile is t + Δ when f > 1 − q, else t (a two-point distribution).  Small
    chunks keep Δ small (P99 ITL) but split a prompt over more iterations (TTFT), the
    Sarathi-Serve trade-off (Agrawal et al. 2024, Fig. 1/§4.3).
    Args: decode_step_s t, chunk_extra_s Δ (s), chunks_per_s x (1/s).
    Example: t = 20 ms, Δ = 15 ms, x = 10/s: f = 0.2/0.85 = 0.235; mean 23.5 ms,
      P50 20 ms, P99 35 ms.
    """
    t, d, x = nonneg(decode_step_s, chunk_extra_s, chunks_per_s)
    den = 1.0 - x * d
    f = jnp.where(den > 0, jnp.clip(safe_div(x * t, den, fill=1.0), 0.0, 1.0), 1.0)  # x·Δ >= 1: all
    hit = t + d
    out = Interference(f, jnp.minimum(t + f * d, UNBOUNDED), jnp.where(f > 0.5, hit, t),
                       jnp.where(f > 0.01, hit, t))
    return nan_where(any_nan(t, d, x), out)


class RunningBatch(NamedTuple):
    mean: Array        # time-average sequences in a replica's batch, B = x·S (Little), <= the cap
    seen: Array        # the batch a request decodes in: 1 + B, at most the cap
    saturated: Array   # bool: the load fills every slot (no fixed point, or 1 + B >= the cap)


def running_batch(arrivals_per_s, fixed_s, step_at_one_s, step_slope_s, iterations, batch_cap, *,
                  chunks_per_s=0.0, chunk_extra_s=0.0) -> RunningBatch:
    """Continuous batching's running batch at an offered load (Little's law over an affine step).

    An engine with iteration-level scheduling (Orca; vLLM, TensorRT-LLM, SGLang) runs as
    many sequences as are in flight, up to its cap (max_num_seqs), so the decode
    iteration, and with it the ITL, follows the load.  A request holds a slot for
    S = A + n·m(b): A the time outside decode iterations (the TTFT service, or the KV
    transfer of a disaggregated decode pool), n its decode iterations ((out − 1) over
    the tokens per step), m(b) the mean iteration of a b-sequence batch with its share of
    prefill chunks (`prefill_interference`: chunks at rate y, each adding Δ,
    m = min(t/(1 − y·Δ), t + Δ)), and t(b) the decode step, affine between one sequence
    and the cap: t(b) = t1 + k·(b − 1).  A request decodes beside the B others a Poisson
    arrival finds (PASTA, Wolff 1982; below the cap the engine is an M/G/∞ system whose
    others during a stay are Poisson(B)), b = 1 + B, and Little's law B = x·S gives, on
    each branch of m (the fixed point of the smaller map is the smaller fixed point),

        B = min( x·(A + n·g·t1) / (1 − x·n·g·k),  x·(A + n·(t1 + Δ)) / (1 − x·n·k) ),  g = 1/(1 − y·Δ),

    a branch with a non-positive denominator having none; saturated (B = cap) when
    neither has one or 1 + B >= cap.
    Args: arrivals_per_s x (requests per second to one replica), fixed_s A, step_at_one_s t1,
    step_slope_s k (s per sequence), iterations n, batch_cap (sequences, >= 1), chunks_per_s y,
    chunk_extra_s Δ.
    Example: x = 4/s, A = 30 ms, n = 193, t1 = 10 ms, k = 0.1 ms, cap 256, no chunks:
      B = 4·(0.03 + 1.93)/(1 − 0.0772) = 8.50, seen 9.50 (t = 10.85 ms); chunks at
      y = 19/s of Δ = 50 ms (y·Δ = 0.95): the stretched branch has no fixed point, a chunk on
      every iteration gives B = 4·(0.03 + 193·0.06)/0.9228 = 50.33.
    """
    x, a, t1, k, n, b, y, dx = nonneg(arrivals_per_s, fixed_s, step_at_one_s, step_slope_s, iterations, batch_cap,
                                      chunks_per_s, chunk_extra_s)
    b = jnp.maximum(b, 1.0)
    busy = y * dx
    g = safe_div(1.0, 1.0 - busy, fill=UNBOUNDED)

    def branch(num, slope):
        den = 1.0 - x * slope
        return jnp.where((den > 0.0) & (num < UNBOUNDED), safe_div(x * num, den, fill=UNBOUNDED), UNBOUNDED)

    stretched = jnp.where(busy < 1.0, branch(a + n * g * t1, n * g * k), UNBOUNDED)
    every = branch(a + n * (t1 + dx), n * k)               # a chunk on every iteration
    mean = jnp.minimum(stretched, every)
    saturated = mean + 1.0 >= b
    mean = jnp.where(saturated, b, mean)
    out = RunningBatch(mean, jnp.where(saturated, b, mean + 1.0), saturated)
    return nan_where(any_nan(x, a, t1, k, n, b, y, dx), out)


class Residual(NamedTuple):
    mean_s: Array  # mean wait for the iteration in flight to end
    p50_s: Array
    p99_s: Array


def iteration_residual(iteration_s, chunk_extra_s, chunk_share, busy_frac) -> Residual:
    """Wait of an arriving request for the batch iteration in flight to end, s.

    Iteration-level scheduling admits a new request only at an iteration boundary
    (Yu et al. 2022, Orca, OSDI'22 §3.2-3.3; vLLM, TensorRT-LLM in-flight batching and
    SGLang schedule the same way), so a prompt arriving mid-iteration waits for it to
    finish before its prefill (or first chunk) can run.  Poisson arrivals see time
    averages (PASTA, Wolff 1982): the replica is mid-iteration with probability
    b = busy_frac, and the time R to the next boundary is the residual life of the
    iteration renewal process, P(R > r | busy) = E[(T − r)⁺]/E[T] (Kleinrock 1975, Vol. 1
    §5.2, Eq. 5.11: E[R] = E[T²]/(2E[T])).  Iterations are two-point, as in
    ``prefill_interference``: t, or t + Δ with probability f (a prefill chunk on it)::

        E[T] = t + fΔ,   E[R] = b·((1 − f)t² + f(t + Δ)²) / (2E[T])
        P(R > r) = b·(E[T] − r)/E[T]           for r <= t
                 = b·f·(t + Δ − r)/E[T]        for t < r <= t + Δ

    so the q-quantile, with s = (1 − q)/b (0 when s >= 1), is E[T]·(1 − s) while
    s >= fΔ/E[T], else t + Δ − s·E[T]/f.
    Args: iteration_s t (s), chunk_extra_s Δ (s), chunk_share f in [0, 1], busy_frac b in [0, 1].
    Example: t = 10 ms, no chunks, b = 1: mean 5 ms, P50 5 ms, P99 9.9 ms; b = 0.4: mean 2 ms,
      P50 0 (fewer than half the arrivals find an iteration running).  t = 20 ms, Δ = 15 ms,
      f = 0.25, b = 1: E[T] = 23.75 ms, mean 12.76 ms, P50 11.88 ms, P99 34.05 ms.
    """
    t, d, f, b = nonneg(iteration_s, chunk_extra_s, chunk_share, busy_frac)
    f, b = jnp.minimum(f, 1.0), jnp.minimum(b, 1.0)
    m = t + f * d
    second = (1.0 - f) * t * t + f * (t + d) * (t + d)
    s_a = safe_div(f * d, m, fill=0.0)                   # P(R > t | busy); f·Δ <= m, so m = 0 gives 0/0

    def quantile(q):
        s = safe_div(1.0 - q, b, fill=UNBOUNDED)         # b = 0: nobody waits (masked below)
        r = jnp.where(s >= s_a, m * (1.0 - s), t + d - safe_div(s * m, f, fill=UNBOUNDED))  # f = 0: s >= s_a = 0
        return jnp.where((b > 0) & (s < 1.0) & (m > 0), jnp.minimum(r, UNBOUNDED), 0.0)

    mean = safe_div(b * second, 2.0 * m, fill=0.0)               # no iteration: no wait
    return nan_where(any_nan(t, d, f, b), Residual(mean, quantile(0.5), quantile(0.99)))


# --------------------------------------------------------------------------- disaggregation
class KVTransfer(NamedTuple):
    transfer_s: Array  # α + bytes/bw: the whole cache over the link
    exposed_s: Array  # the part TTFT sees once layer-wise streaming overlaps the prefill
    energy_j: Array  # network energy of the transfer


def kv_transfer(kv_bytes, bw_bytes_per_s, latency_s, prefill_s, n_layers, *,
                energy_j_per_byte=NETWORK_J_PER_BYTE) -> KVTransfer:
    """Prefill -> decode KV-cache transfer of disaggregated serving.

        T = α + B/β;   exposed = α + max(B/(β·L), B/β − prefill·(L − 1)/L)

    Layer l's KV is sent while layers l+1..L are still being computed (Splitwise §4.3
    layer-wise transfer, DistServe §4.3), so only the last layer's share, or whatever
    the link cannot hide behind the remaining prefill, is exposed.  Energy = B·e with
    e = NETWORK_J_PER_BYTE (NIC + switch + NIC, an estimate from board powers, see there).
    Args: kv_bytes B, bw_bytes_per_s β (the sender's aggregate link bandwidth), latency_s α,
      prefill_s (s), n_layers L; energy_j_per_byte e (J/B).
    Example: Llama-3-70B fp16, 2000 tokens: B = 655.4e6 B over 8 × 37.5 GB/s = 300e9 B/s, α = 2 µs:
      T = 2.187 ms; prefill 300 ms -> exposed = 2 µs + 27.3 µs = 29.3 µs; energy 0.98 J.
    """
    b, bw, a, pf, n_l, e = nonneg(kv_bytes, bw_bytes_per_s, latency_s, prefill_s, n_layers, energy_j_per_byte)
    t_link = safe_div(b, bw, fill=UNBOUNDED)
    n_l = floor_pos(n_l, 1.0)
    exposed = a + jnp.maximum(t_link / n_l, t_link - pf * (n_l - 1.0) / n_l)
    out = KVTransfer(jnp.minimum(a + t_link, UNBOUNDED), jnp.minimum(exposed, UNBOUNDED), b * e)
    return nan_where(any_nan(b, bw, a, pf, n_l, e), out)


# --------------------------------------------------------------------------- MoE, offload, power
def _pow_unit(base, exponent) -> Array:
    """base^exponent for base in [0, 1] and exponent >= 0, as exp(exponent·ln base).

    Same values as ``jnp.power`` to float rounding (a few ulp), exactly 1 at exponent 0 or
    base 1 and exactly 0 at base 0 (exponent > 0), with finite gradients (0 at base 0).
    Why not ``jnp.power``: XLA's CPU code calls libm's pow one element at a time
    (~9 ns per element on the 2-core CPU) where exp and log vectorise (~1.3 ns for both).
    """
    pos = base > 0
    return jnp.where(pos, jnp.exp(exponent * jnp.log(jnp.where(pos, base, 1.0))), jnp.where(exponent > 0, 0.0, 1.0))


def experts_touched(n_experts, top_k, tokens) -> Array:
    """Expected distinct experts hit when `tokens` tokens each pick top_k of E (uniform routing).

        E_touched = E · (1 − (1 − k/E)^T)

    A decode step reads only the experts its tokens route to: at batch 1 k of E, at large
    batch all E (GShard, Lepikhin et al. 2021; uniform, independent routing; a skewed
    router touches fewer).  Dense models (E = k = 1): 1.
    Args: n_experts E (>= 1), top_k k (1 <= k <= E), tokens T (>= 0).
    Example: Mixtral (E = 8, k = 2): T = 1 -> 2; T = 4 -> 8·(1 − 0.75⁴) = 5.469; T = 64 -> 8.0.
    (1 − k/E)^T is evaluated as exp(T·ln(1 − k/E)) (`_pow_unit`).
    """
    e, k, t = nonneg(n_experts, top_k, tokens)
    bad = any_nan(e, k, t)
    e = floor_pos(e, 1.0)
    base = jnp.clip(1.0 - k / e, 0.0, 1.0)
    base_s = jnp.where(base > 0, base, 0.5)
    frac = jnp.where(base > 0, 1.0 - _pow_unit(base_s, t), jnp.where(t > 0, 1.0, 0.0))
    return nan_where(bad, e * frac)


def offload_spill_bytes(resident_bytes, spillable_bytes, capacity_bytes) -> Array:
    """Bytes spilled to host memory: clip(resident + spillable − capacity, 0, spillable).

    Offload moves only what does not fit (FlexGen, Sheng et al. 2023 §4: the policy keeps
    as much as possible on the GPU); the rest of `spillable_bytes` stays in HBM.
    Args: bytes.  Example: weights 140 GB, KV 30 GB, 160 GB of HBM, KV offload: 10 GB spilled.
    """
    r, s, c = nonneg(resident_bytes, spillable_bytes, capacity_bytes)
    return nan_where(any_nan(r, s, c), jnp.clip(r + s - c, 0.0, s))


def split_read_s(total_bytes, spilled_bytes, hbm_bw_bytes_per_s, host_bw_bytes_per_s) -> Array:
    """Time to read bytes of which `spilled` sit in host memory: (B − S)/BW_hbm + S/BW_host, s.

    The host link (PCIe / NVLink-C2C) is a separate path, but a step must read all of both,
    and a host-resident share streams at the slower link (no overlap assumed: the
    spilled share is needed in the same step).  Example: 10 GB over 64 GB/s PCIe Gen5
    = 0.156 s, 130 GB over 3.35 TB/s = 38.8 ms: 0.195 s.
    """
    b, s, bw, hb = nonneg(total_bytes, spilled_bytes, hbm_bw_bytes_per_s, host_bw_bytes_per_s)
    return jnp.minimum(safe_div(jnp.maximum(b - s, 0.0), bw, fill=UNBOUNDED) + safe_div(s, hb, fill=UNBOUNDED), UNBOUNDED)


def busy_fraction(slot_utilization, slots_per_replica) -> Array:
    """Fraction of time a replica runs iterations: 1 − (1 − ρ)^b (b slots, each busy w.p. ρ).

    A replica with any request in flight runs full iterations (a decode step costs the
    weight read whatever the batch), so it draws active power; only a replica with all
    b slots empty idles.  Slots are treated as independent (binomial occupancy).
    Args: slot_utilization ρ in [0, 1], slots_per_replica b (>= 1).
    Example: ρ = 0.3, b = 16: 1 − 0.7¹⁶ = 0.9967; b = 1: 0.3.
    (1 − ρ)^b is evaluated as exp(b·ln(1 − ρ)) (`_pow_unit`): same value to float rounding,
    exactly 0 busy at ρ = 0 and 1 at ρ = 1.
    """
    r, b = nonneg(slot_utilization, slots_per_replica)
    return nan_where(any_nan(r, b), 1.0 - _pow_unit(1.0 - jnp.minimum(r, 1.0), jnp.maximum(b, 1.0)))


def power_at_utilization(tdp_w, busy, *, idle_frac=0.25, active_frac=1.0) -> Array:
    """Average board power: TDP·(idle + (active − idle)·busy), W.

    Sources: idle ≈ 0.25 TDP (H100 SXM idles near 70–100 W of 700 W, A100 ~50–60 W of
    400 W: nvidia-smi readings in NVIDIA's data-center GPU manager docs and MLPerf Power
    submissions); active = TDP keeps the seeds' convention (seed 000 §5.1).  The scenario
    takes both fractions from ``Efficiency`` (idle_power_frac, active_power_frac).
    Example: 700 W, busy 0.5: 700·(0.25 + 0.75·0.5) = 437.5 W.
    """
    p, u, i, a = nonneg(tdp_w, busy, idle_frac, active_frac)
    return nan_where(any_nan(p, u, i, a), p * (i + (a - i) * jnp.minimum(u, 1.0)))
