"""Domain 1, Node: walls 1-6 (compute, memory, software, serving, batching,
streaming) as pure, elementwise JAX functions; wall 7 (tail latency, the M/M/c
queue) is in ``queueing.py``.

Every argument is a plain SI float (scalar or array); all arguments broadcast to
one batch shape ``[...]`` and every output has that shape.  Knobs are
keyword-only.  Outputs are finite for every input: a quantity divided by zero
capacity is ``UNBOUNDED`` (a large finite stand-in for +inf, so float32
arithmetic downstream stays finite), ``0/0`` is 0.  Gradients are finite away
from those masked points (safe inner values, jax-md ``safe_mask`` style).

Sources: seed 000 (mlsysim "Mathematical Foundations" §1 roofline, §4 serving,
§4.3 KV cache), seed 002 (22 laws, walls 1-7), Williams et al. 2009 (roofline),
Korthikanti et al. 2022 arXiv:2205.05198 (activation memory), Rajbhandari et al.
2020 (ZeRO), Kwon et al. 2023 (PagedAttention), Erlang 1917 / Kleinrock 1975
(M/M/c), Jagerman 1974 (Erlang B for non-integer servers).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from mlsys_opt._types import BOTTLENECKS, Array
from mlsys_opt.walls._masked import UNBOUNDED, nan_where, nonneg, safe_div

BOTTLENECK_NAMES = BOTTLENECKS  # ("compute", "memory", "overhead"); reports only
COMPUTE, MEMORY, OVERHEAD = 0, 1, 2
RECOMPUTE_NAMES: tuple[str, ...] = ("none", "selective", "full")



def _bottleneck(t_compute_s, t_memory_s, tax_s):
    core = jnp.maximum(t_compute_s, t_memory_s)
    code = jnp.where(t_compute_s >= t_memory_s, COMPUTE, MEMORY)
    return jnp.where(tax_s > core, OVERHEAD, code).astype(jnp.int32)


# --------------------------------------------------------------------------- walls 1-2
class Roofline(NamedTuple):
    t_compute_s: Array
    t_memory_s: Array
    latency_s: Array
    arithmetic_intensity: Array  # FLOP/byte
    ridge_point: Array  # FLOP/byte
    bottleneck: Array  # int32 code into BOTTLENECK_NAMES


def roofline(flop, bytes_moved, peak_flop_per_s, mem_bw_bytes_per_s, *,
             efficiency=1.0, dispatch_tax_s=0.0) -> Roofline:
    """Walls 1 (compute) and 2 (memory): the roofline latency of one kernel/step.

    T = max(F / (P·η), B / BW) + Dispatch_Tax;  I = F / B;  I* = P / BW.

    Args (all broadcast to ``[...]``):
      flop: work F, FLOP.  bytes_moved: memory traffic B, bytes.
      peak_flop_per_s: peak P, FLOP/s.  mem_bw_bytes_per_s: bandwidth BW, B/s.
      efficiency: η, fraction of peak achieved (0-1], default 1 (pure ceiling).
      dispatch_tax_s: fixed launch overhead, s.
    Returns: Roofline with t_compute_s, t_memory_s, latency_s (s), arithmetic_intensity
      and ridge_point (FLOP/byte; the ridge is the hardware's P/BW, without η), and
      bottleneck (int32: 0 compute if F/(Pη) >= B/BW (ties go to compute), 1 memory,
      2 overhead when the tax exceeds both terms).
    Source: seed 000 §1.1-1.2; seed 002 walls 1-2; Williams, Waterman & Patterson 2009.
    Example: Wall 1, 16e9 FLOP on an H100 (989e12 FLOP/s) at η = 0.5 takes
      16e9 / 4.945e14 = 3.24e-5 s (seed: "0.03 ms"); Wall 2, 16e9 bytes at 3.35e12 B/s
      takes 4.78e-3 s (seed: "4.8 ms").  H100 ridge 989e12/3.35e12 = 295.2 FLOP/byte.
    """
    flop, b, peak, bw, eta, tax = nonneg(flop, bytes_moved, peak_flop_per_s,
                                     mem_bw_bytes_per_s, efficiency, dispatch_tax_s)
    t_c = safe_div(flop, peak * eta, fill=UNBOUNDED)
    t_m = safe_div(b, bw, fill=UNBOUNDED)
    latency = jnp.maximum(t_c, t_m) + tax
    return Roofline(t_c, t_m, latency, safe_div(flop, b, fill=UNBOUNDED), safe_div(peak, bw, fill=UNBOUNDED),
                    _bottleneck(t_c, t_m, tax))


def ridge_point(peak_flop_per_s, mem_bw_bytes_per_s) -> Array:
    """Ridge point I* = P / BW, FLOP/byte (seed 000 §1.2). H100: 989e12/3.35e12 = 295.2."""
    p, bw = nonneg(peak_flop_per_s, mem_bw_bytes_per_s)
    return safe_div(p, bw, fill=UNBOUNDED)


def arithmetic_intensity(flop, bytes_moved) -> Array:
    """I = F / B, FLOP/byte (seed 000 §1.2). Dense 2048->512 fp16, batch 1: 2.10e6/2.10e6 = 1."""
    f, b = nonneg(flop, bytes_moved)
    return safe_div(f, b, fill=UNBOUNDED)


def attainable_flop_per_s(intensity, peak_flop_per_s, mem_bw_bytes_per_s, *,
                          efficiency=1.0) -> Array:
    """Roofline ceiling min(P·η, I·BW), FLOP/s (Williams 2009).

    intensity in FLOP/byte, P in FLOP/s, BW in B/s, η fraction.
    Example: I = 1 on an H100 gives min(989e12, 3.35e12) = 3.35e12 FLOP/s (0.34 % of peak).
    """
    i, p, bw, eta = nonneg(intensity, peak_flop_per_s, mem_bw_bytes_per_s, efficiency)
    return jnp.minimum(p * eta, i * bw)


class DenseLayer(NamedTuple):
    flop: Array
    weight_bytes: Array
    activation_bytes: Array
    bytes_moved: Array


def dense_layer(d_in, d_out, batch, bytes_per_element) -> DenseLayer:
    """FLOPs and traffic of a dense layer y = x·W, W of shape [d_in, d_out].

    F = 2·d_in·d_out·batch;  weight_bytes = d_in·d_out·b;
    activation_bytes = batch·(d_in + d_out)·b (read x, write y);
    bytes_moved = weight_bytes + activation_bytes.  All bytes, b in bytes/element.
    Source: seed 000 §1.2 worked example (which counts weight bytes only).
    Example: 2048->512 fp16 batch 1: F = 2.097e6, weights 2.097e6 B (I = 1.0 on
      weights, 0.998 on all traffic); batch 64: I = 64 on weights, 55.4 on all traffic.
    """
    di, do, bsz, b = nonneg(d_in, d_out, batch, bytes_per_element)
    w = di * do * b
    act = bsz * (di + do) * b
    return DenseLayer(2.0 * di * do * bsz, w, act, w + act)


# --------------------------------------------------------------------------- memory footprint
class MemoryFootprint(NamedTuple):
    weights_bytes: Array
    gradients_bytes: Array
    optimizer_bytes: Array
    activations_bytes: Array
    total_bytes: Array


def training_memory(n_params, activation_bytes, *, weight_bytes_per_param=2.0,
                    grad_bytes_per_param=2.0, optimizer_bytes_per_param=12.0,
                    shard_factor=1.0, zero_stage=0, dp=1.0) -> MemoryFootprint:
    """Per-device training memory (mixed-precision Adam: 2 + 2 + 12 = 16 B/param).

    weights = N·w/(S·D3), grads = N·g/(S·D2), optimizer = N·o/(S·D1), where S is the
    model-parallel ``shard_factor`` (TP·PP, splits every state), and D_k = dp when
    ``zero_stage >= k`` else 1 (ZeRO-1 shards optimizer, ZeRO-2 also grads, ZeRO-3
    also weights).  total = weights + grads + optimizer + activations.
    Args: n_params (count); activation_bytes (bytes, already per device);
      *_bytes_per_param (B/param; optimizer 12 = fp32 master 4 + Adam m 4 + v 4);
      shard_factor (count >= 1); zero_stage (int code 0-3, may be an array); dp (count).
    Returns: MemoryFootprint, all bytes.
    Source: seed 001 "16 bytes/parameter for training"; Rajbhandari et al. 2020 (ZeRO).
    Example: 7e9 params, no activations: 14e9 + 14e9 + 84e9 = 112e9 B (seed: "112 GB").
    """
    n, act, wb, gb, ob, s, dp_, zs = nonneg(n_params, activation_bytes, weight_bytes_per_param,
                                        grad_bytes_per_param, optimizer_bytes_per_param,
                                        shard_factor, dp, zero_stage)
    one = jnp.ones_like(n)
    w = safe_div(n * wb, s * jnp.where(zs > 2.5, dp_, one), fill=UNBOUNDED)
    g = safe_div(n * gb, s * jnp.where(zs > 1.5, dp_, one), fill=UNBOUNDED)
    o = safe_div(n * ob, s * jnp.where(zs > 0.5, dp_, one), fill=UNBOUNDED)
    return nan_where(jnp.isnan(zs), MemoryFootprint(w, g, o, act, w + g + o + act))


class InferenceMemory(NamedTuple):
    weights_bytes: Array
    kv_bytes: Array
    activations_bytes: Array
    total_bytes: Array


def inference_memory(weight_bytes, kv_bytes, activation_bytes) -> InferenceMemory:
    """Inference memory: total = weights + KV cache + activations, all bytes (seed 000 §4.3).

    Example: Llama-3-70B int4 weights 35e9 B + KV 42.9e9 B (batch 32, 4096 tokens)
      = 77.9e9 B, the seed's "78 GB".
    """
    w, kv, act = nonneg(weight_bytes, kv_bytes, activation_bytes)
    return InferenceMemory(w, kv, act, w + kv + act)


def transformer_activation_bytes(seq_len, micro_batch, hidden_dim, n_heads, n_layers, *,
                                 tp=1.0, recompute_code=0, sequence_parallel=False) -> Array:
    """Stored activations of a transformer stack, bytes (16-bit activations).

    Per layer (Korthikanti et al. 2022, arXiv:2205.05198, Table 2), s = seq_len,
    b = micro_batch, h = hidden_dim, a = n_heads, t = tp, t' = t with sequence
    parallelism else 1:
      recompute_code 0 (none):      s·b·h·(10/t' + 24/t + 5·a·s/(h·t))
      recompute_code 1 (selective): s·b·h·(10/t' + 24/t)
      recompute_code 2 (full):      2·s·b·h/t'   (only each layer's input is kept)
    total = n_layers × per layer.  With t = 1 "none" is the paper's s·b·h·(34 + 5as/h).
    Embedding/output-layer terms and pipeline in-flight microbatches are not included.
    Args: seq_len (tokens), micro_batch (sequences), hidden_dim, n_heads, n_layers
      (counts); tp (count); recompute_code (int code into RECOMPUTE_NAMES, may be an
      array); sequence_parallel (bool or bool array).
    Example: s = 2048, b = 1, h = 12288, a = 96, 96 layers, t = 8 with sequence
      parallelism and selective recompute: 34·s·b·h/t·L = 1.027e10 B.
    """
    s, b, h, a, n_l, t, code, sp = nonneg(seq_len, micro_batch, hidden_dim, n_heads, n_layers,
                                      tp, recompute_code, sequence_parallel)
    t_sp = jnp.where(sp > 0.5, t, jnp.ones_like(t))
    sbh = s * b * h
    score = 5.0 * a * safe_div(s, h, fill=UNBOUNDED)
    none = sbh * (safe_div(10.0, t_sp, fill=UNBOUNDED) + safe_div(24.0 + score, t, fill=UNBOUNDED))
    selective = sbh * (safe_div(10.0, t_sp, fill=UNBOUNDED) + safe_div(24.0 * jnp.ones_like(t), t, fill=UNBOUNDED))
    full = safe_div(2.0 * sbh, t_sp, fill=UNBOUNDED)
    per_layer = jnp.where(code > 1.5, full, jnp.where(code > 0.5, selective, none))
    return nan_where(jnp.isnan(code) | jnp.isnan(sp), n_l * per_layer)


def memory_margin_bytes(required_bytes, capacity_bytes) -> Array:
    """Constraint g = required - capacity, bytes; g <= 0 means it fits (pymoo convention).

    Example: 183e9 B needed on an 80e9 B H100: g = 103e9 > 0, does not fit.
    """
    r, c = nonneg(required_bytes, capacity_bytes)
    return r - c


def memory_fits(required_bytes, capacity_bytes) -> Array:
    """Boolean [...]: required <= capacity (bytes). Example: 77.9e9 on 80e9 -> True."""
    return memory_margin_bytes(required_bytes, capacity_bytes) <= 0


# --------------------------------------------------------------------------- wall 3
def mfu(achieved_flop_per_s, peak_flop_per_s) -> Array:
    """Wall 3: MFU = achieved / peak, fraction (seed 002 wall 3).

    Example: 450e12 of 989e12 FLOP/s = 0.455 (seed: "45%").
    """
    a, p = nonneg(achieved_flop_per_s, peak_flop_per_s)
    return safe_div(a, p, fill=UNBOUNDED)


def model_flops_utilization(model_flop, step_time_s, n_devices, peak_flop_per_s) -> Array:
    """MFU = model FLOPs / (step time · N · peak), fraction (Chowdhery et al. 2022, PaLM §B).

    model_flop: useful FLOPs per step (e.g. 6·P·tokens), FLOP; step_time_s: s;
    n_devices: count; peak_flop_per_s: per device, FLOP/s.
    Example: 6·1e9·2e6 FLOP per step in 10 s on 8 A100s (312e12): 1.2e16/2.496e16 = 0.481.
    Computed as (F/peak)/(t·N): a 1e22-FLOP step over t·N·peak ~ 1e21 would make the
    division's forward-mode derivative (-ḋ·F/den²) overflow float32 into NaN; F/peak
    (seconds of peak compute, ~1e7) keeps every intermediate small.  peak <= 0 or t·N <= 0
    with F > 0: unbounded (UNBOUNDED, or UNBOUNDED/(t·N) >= 1e12 for any t·N <= 1e6).
    """
    f, t, n, p = nonneg(model_flop, step_time_s, n_devices, peak_flop_per_s)
    return safe_div(safe_div(f, p, fill=UNBOUNDED), t * n, fill=UNBOUNDED)


# --------------------------------------------------------------------------- wall 4
class Prefill(NamedTuple):
    flop: Array
    t_compute_s: Array
    t_memory_s: Array
    ttft_s: Array
    bottleneck: Array


def prefill(n_active_params, prompt_tokens, batch, peak_flop_per_s, mem_bw_bytes_per_s,
            weight_bytes, *, efficiency=1.0, dispatch_tax_s=0.0) -> Prefill:
    """Wall 4, prefill: TTFT = max(2·P·S·B / (peak·η), W / BW) + tax.

    Args: n_active_params P (count), prompt_tokens S, batch B (counts), peak FLOP/s,
      BW B/s, weight_bytes W (bytes read once).  Attention's O(S^2) FLOPs are not
      included (seed's form).  Returns Prefill(flop FLOP, t_compute_s, t_memory_s,
      ttft_s in s, bottleneck int32).
    Source: seed 000 §4.1 (which keeps only the compute term; we take the roofline max).
    Example: Llama-3-70B (70e9), 1024 tokens, batch 1, H100 at η = 0.5: 1.434e14 FLOP,
      t_compute = 0.290 s vs weights 140e9/3.35e12 = 0.0418 s, TTFT = 0.290 s.
    """
    p, s, bsz, peak, bw, w = nonneg(n_active_params, prompt_tokens, batch, peak_flop_per_s,
                                mem_bw_bytes_per_s, weight_bytes)
    flop = 2.0 * p * s * bsz
    r = roofline(flop, w, peak, bw, efficiency=efficiency, dispatch_tax_s=dispatch_tax_s)
    return Prefill(flop, r.t_compute_s, r.t_memory_s, r.latency_s, r.bottleneck)


class Decode(NamedTuple):
    t_memory_s: Array
    t_compute_s: Array
    itl_s: Array
    bottleneck: Array


def decode(weight_bytes, kv_bytes, n_active_params, batch, peak_flop_per_s,
           mem_bw_bytes_per_s, *, efficiency=1.0, dispatch_tax_s=0.0,
           kv_separate=False) -> Decode:
    """Wall 4, decode: ITL = max((W + KV) / BW, 2·P·B / (peak·η)) + tax.

    One step emits one token for each of the B sequences; never faster than compute.
    With ``kv_separate`` (a bool, or a bool array broadcast like the rest; nonzero is True):

        ITL = max(W / BW, 2·P·B / (peak·η)) + KV / BW + tax

    The weight GEMMs stream their weights while they multiply (one roofline max), and
    attention reads the KV cache in its own memory-bound kernel between them
    (TensorRT-LLM's masked multi-head attention, vLLM's PagedAttention, Kwon et al.
    2023), which cannot hide behind the GEMMs.  At small batch both forms agree
    (W + KV is read at BW either way); at large batch the GEMMs become compute-bound
    and the KV read adds to them instead of hiding under the FLOPs.
    Args: weight_bytes W and kv_bytes KV (whole batch's cache read per step), bytes;
      n_active_params P, batch B (counts); peak FLOP/s; BW B/s; η fraction; tax s;
      kv_separate: False (default) is the seed's one-roofline form.
    Returns Decode(t_memory_s = (W + KV)/BW, t_compute_s, itl_s, bottleneck int32).  With
      ``kv_separate`` the bottleneck is compute when the GEMMs' compute time is at least
      both the weight read and the KV read (compute-bound GEMMs are the larger part of
      the step), memory otherwise, overhead when the tax exceeds all three.
    Source: seed 000 §4.2 (default form).
    Example: Llama-3-70B fp16 on H100, batch 1: memory 140e9/3.35e12 = 41.8 ms,
      compute 1.4e11/989e12 = 0.14 ms, ITL 41.8 ms -> 23.9 tokens/s ("~24").
      kv_separate, Llama-2-7B fp16 (W = 13.48e9 B, P = 6.74e9) on A100 (312e12 FLOP/s,
      BW 2.0e12·0.8 = 1.6e12 B/s) at η = 0.65, B = 256 at context 192 (KV 25.77e9 B):
      weights 8.4 ms, compute 3.451e12/2.028e14 = 17.0 ms, KV 16.1 ms, ITL 33.1 ms
      (the default form: max(24.5, 17.0) = 24.5 ms).
    """
    w, kv, p, bsz, peak, bw, eta, tax, flag = nonneg(weight_bytes, kv_bytes, n_active_params, batch,
                                                 peak_flop_per_s, mem_bw_bytes_per_s,
                                                 efficiency, dispatch_tax_s, kv_separate)
    sep = flag != 0
    r = roofline(2.0 * p * bsz, w + kv, peak, bw, efficiency=eta, dispatch_tax_s=tax)
    t_w, t_kv = safe_div(w, bw, fill=UNBOUNDED), safe_div(kv, bw, fill=UNBOUNDED)
    split = jnp.minimum(jnp.maximum(t_w, r.t_compute_s) + t_kv, UNBOUNDED) + tax
    itl = jnp.where(sep, split, r.latency_s)
    code = jnp.where(sep, _bottleneck(r.t_compute_s, jnp.maximum(t_w, t_kv), tax), r.bottleneck)
    return Decode(r.t_memory_s, r.t_compute_s, itl, code.astype(jnp.int32))


class ServingThroughput(NamedTuple):
    request_latency_s: Array
    tokens_per_s_per_request: Array
    tokens_per_s: Array
    requests_per_s: Array


def serving_throughput(itl_s, ttft_s, batch, output_tokens) -> ServingThroughput:
    """Throughput of a batch of B requests each producing N output tokens.

    request_latency = TTFT + (N - 1)·ITL (the first token arrives at TTFT);
    tokens_per_s_per_request = 1 / ITL (streaming speed one user sees);
    tokens_per_s = B·N / request_latency;  requests_per_s = B / request_latency.
    Args: itl_s, ttft_s (s); batch, output_tokens (counts, N >= 1).
    Source: seed 000 §4 (serving lifecycle); latencies from prefill()/decode().
    Example: ITL 41.8 ms, TTFT 0.29 s, B = 1, N = 256: latency 10.95 s, 23.9 tok/s per
      request, 23.4 tok/s overall, 0.091 req/s.
    """
    itl, ttft, bsz, n = nonneg(itl_s, ttft_s, batch, output_tokens)
    lat = ttft + jnp.maximum(n - 1.0, 0.0) * itl
    return ServingThroughput(lat, safe_div(jnp.ones_like(itl), itl, fill=UNBOUNDED), safe_div(bsz * n, lat, fill=UNBOUNDED),
                             safe_div(bsz, lat, fill=UNBOUNDED))


# --------------------------------------------------------------------------- wall 5
def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch, bytes_per_element,
                   *, kv_latent_dim=0.0) -> Array:
    """Wall 5: KV = 2·L·H_kv·d_head·S·B·b, bytes (factor 2: K and V).

    Multi-head Latent Attention (MLA, kv_latent_dim = c > 0) caches one compressed latent
    per layer per token instead of K and V per head: KV = L·c·S·B·b, with
    c = d_c + d_h^R (latent rank + decoupled RoPE key dim); H_kv and d_head are then unused.
    Args: n_layers L, n_kv_heads H_kv, head_dim d_head, seq_len S, batch B (counts);
      bytes_per_element b; kv_latent_dim c (elements cached per token per layer;
      0 = standard MHA/GQA formula).
    Source: seed 000 §4.3; MLA: DeepSeek-AI 2024 DeepSeek-V2 (arXiv:2405.04434) §2.1.2,
      "(d_c + d_h^R)·l" elements per token, and DeepSeek-V3 (arXiv:2412.19437) §2.1.1,
      d_c = 512, d_h^R = 64.
    Example: Llama-3-70B (80 layers, 8 KV heads, d = 128, fp16):
      327,680 B per token ("327 KB"); batch 16 × 4096 tokens = 21.47e9 B ("21.5 GB").
      DeepSeek-V3 (61 layers, c = 512 + 64 = 576, bf16): 61·576·2 = 70,272 B per token
      (the MHA formula with 128 heads × 128 would give 3,997,696 B, 56.9× more).
    """
    n_l, h, d, s, bsz, b, c = nonneg(n_layers, n_kv_heads, head_dim, seq_len, batch,
                                 bytes_per_element, kv_latent_dim)
    per_token_layer = jnp.where(c > 0, c, 2.0 * h * d)   # elements cached per token per layer
    return nan_where(jnp.isnan(c), per_token_layer * n_l * s * bsz * b)


def paged_kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch, bytes_per_element,
                         *, block_tokens=16.0, kv_latent_dim=0.0) -> Array:
    """PagedAttention KV: 2·L·H_kv·d·ceil(S/p)·p·B·b, bytes (Kwon et al. 2023; mlsysim wall 5).

    block_tokens p: tokens per KV block; kv_latent_dim c > 0: MLA, L·c·ceil(S/p)·p·B·b
    (see kv_cache_bytes).  Example: S = 1000, p = 16 -> 1008 tokens allocated.
    """
    n_l, h, d, s, bsz, b, p, c = nonneg(n_layers, n_kv_heads, head_dim, seq_len, batch,
                                    bytes_per_element, block_tokens, kv_latent_dim)
    s_alloc = nan_where(jnp.isnan(p), jnp.where(p > 0, jnp.ceil(safe_div(s, p, fill=UNBOUNDED)) * p, s))
    return kv_cache_bytes(n_l, h, d, s_alloc, bsz, b, kv_latent_dim=c)


def max_batch(capacity_bytes, weight_bytes, kv_bytes_per_sequence, *, reserve_frac=0.0,
              batch_cap=1e9) -> Array:
    """Most sequences whose KV fits: floor(max(0, C·(1 - r) - W) / kv_seq), a float count.

    Args: capacity C, weight_bytes W, kv_bytes_per_sequence (bytes); reserve_frac r
      (fraction of C held back for activations/fragmentation); batch_cap (count returned
      when kv_seq = 0 and memory is free, so the result stays finite).
    Source: seed 002 wall 5; mlsysim ContinuousBatchingModel.
    Example: Llama-3-8B (16.06e9 B fp16) at 4096 tokens (536.9e6 B/request) on an
      80e9 B GPU: floor(63.94e9/536.9e6) = 119 (seed: "~100").
    """
    c, w, kv, r, cap = nonneg(capacity_bytes, weight_bytes, kv_bytes_per_sequence,
                          reserve_frac, batch_cap)
    free = jnp.maximum(c * (1.0 - r) - w, 0.0)
    n = jnp.floor(safe_div(free, kv, fill=cap))
    return jnp.clip(n, 0.0, cap)


class KVWaste(NamedTuple):
    static_waste_frac: Array
    paged_waste_frac: Array


def kv_waste(seq_len, max_seq_len, *, block_tokens=16.0) -> KVWaste:
    """Fraction of reserved KV memory left unused, static vs paged allocation.

    static: each request reserves max_seq_len tokens: 1 - S / S_max (S clipped to S_max);
    paged:  blocks of p tokens: 1 - S / (ceil(S/p)·p).
    Args: seq_len S and max_seq_len S_max (tokens), block_tokens p (tokens).
    Source: Kwon et al. 2023 (vLLM/PagedAttention) §3; seed 004 wall 5 ("static batching
      wastes memory through KV-cache fragmentation").
    Example: S = 1000, S_max = 4096, p = 16: static 0.756, paged 0.0079.
    """
    s, s_max, p = nonneg(seq_len, max_seq_len, block_tokens)
    used = jnp.minimum(s, s_max)
    static = safe_div(s_max - used, s_max, fill=0.0)
    alloc = nan_where(jnp.isnan(p), jnp.where(p > 0, jnp.ceil(safe_div(s, p, fill=UNBOUNDED)) * p, s))
    paged = safe_div(alloc - s, alloc, fill=0.0)
    return KVWaste(static, paged)


# --------------------------------------------------------------------------- wall 6
class WeightStreaming(NamedTuple):
    t_injection_s: Array  # per layer
    t_compute_s: Array  # per layer
    t_layer_s: Array
    latency_s: Array  # all layers
    bottleneck: Array  # 0 compute, 1 injection bandwidth, 2 overhead


def weight_streaming(layer_weight_bytes, layer_flop, n_layers, injection_bw_bytes_per_s,
                     peak_flop_per_s, *, efficiency=1.0, dispatch_tax_s=0.0) -> WeightStreaming:
    """Wall 6: T_layer = max(W_layer / BW_inject, F_layer / (peak·η)) + tax; T = L·T_layer.

    Weights stream from external memory (e.g. Cerebras MemoryX) while activations stay
    on-wafer, so the injection link replaces HBM in the roofline.
    Args: layer_weight_bytes (bytes), layer_flop (FLOP per layer, e.g. 2·P_layer·B),
      n_layers (count), injection BW (B/s), peak (FLOP/s), η, tax (s).
    Source: seed 002 wall 6; mlsysim WeightStreamingModel; Lie et al. 2022 (Cerebras).
    Example: 1.75e9 B layer at 1.2e12 B/s = 1.46 ms injection vs 2·0.875e9·64 FLOP at
      125e15·0.5 = 1.79 us compute; 80 layers -> 0.117 s, injection-bound.
    """
    w, f, n_l = nonneg(layer_weight_bytes, layer_flop, n_layers)
    r = roofline(f, w, peak_flop_per_s, injection_bw_bytes_per_s, efficiency=efficiency,
                 dispatch_tax_s=dispatch_tax_s)
    return WeightStreaming(r.t_memory_s, r.t_compute_s, r.latency_s, n_l * r.latency_s,
                           r.bottleneck)


def weight_streaming_balance_batch(layer_params, injection_bw_bytes_per_s, peak_flop_per_s,
                                   bytes_per_element, *, efficiency=1.0) -> Array:
    """Batch at which decode compute hides injection: B* = (P_l·b/BW)·peak·η / (2·P_l).

    = b·peak·η / (2·BW), a float count (mlsysim WeightStreamingModel "optimal batch").
    Example: fp16, 125e15 FLOP/s at η = 0.5, 1.2e12 B/s: B* = 52,083.
    """
    p_l, bw, peak, b, eta = nonneg(layer_params, injection_bw_bytes_per_s, peak_flop_per_s,
                               bytes_per_element, efficiency)
    return safe_div(safe_div(p_l * b, bw, fill=UNBOUNDED) * peak * eta, 2.0 * p_l, fill=UNBOUNDED)
