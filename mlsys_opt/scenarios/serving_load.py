"""Serving at the offered load: the request mix, the TTFT service, the replicas and the running batch.

`at_load` is continuous batching: the engine's `batch` is a cap and the batch it runs is set by
the load (walls.serving.running_batch); `scenarios.serving` queues, times and prices what it
returns.  The step physics (replica geometry, decode step, prefill, chunked prefill) lives in
`serving_steps.py`.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from .._types import Array
from ..walls import serving as sw
from ..walls._masked import floor_pos, safe_div
from .efficiency import Efficiency
from .parts import Common, materialized
from .serving_steps import (Chunking, DecodeStep, PrefillTime, Replica, chunked_prefill, decode_step,
                            prefill_eta, prefill_time)

MAX_AUTO_REPLICAS = 1e7            # auto-sizing stops here; beyond it the queue is flagged unstable
Q50, Q99 = 0.5, 0.99


class Mix(NamedTuple):
    """Request-length mix (log-normal, walls.serving.lognormal_quantile), tokens."""
    prompt: Array
    prompt_p50: Array
    prompt_p99: Array
    out: Array
    out_p99: Array
    cached: Array            # prefix-cache hits of a mean prompt
    hit: Array               # prefix_hit_rate


def request_mix(p) -> Mix:
    prompt, out = floor_pos(p.prompt_tokens, 1.0), floor_pos(p.output_tokens, 1.0)
    hit = jnp.minimum(floor_pos(p.prefix_hit_rate, 0.0), 1.0)     # derivative at the default 0: the upward one
    return Mix(prompt, sw.lognormal_quantile(prompt, p.prompt_cv, Q50),
               sw.lognormal_quantile(prompt, p.prompt_cv, Q99), out,
               sw.lognormal_quantile(out, p.output_cv, Q99), hit * prompt, hit)


class Ttft(NamedTuple):
    """Prefill service at the mean, median and P99 prompt (no queueing), s."""
    mean_s: Array
    p50_s: Array
    p99_s: Array
    alone: PrefillTime       # isolated prefill of the mean prompt (the `ttft_s` output)
    chunking: Chunking       # colocated, at the mean prompt
    kv: sw.KVTransfer        # disaggregated, at the mean prompt


class PrefillParts(NamedTuple):
    """The batch-independent parts of the TTFT service at one prompt length."""
    new: Array               # uncached tokens
    cached: Array
    eta: Array               # η_prefill(new)
    alone: PrefillTime
    kv: sw.KVTransfer


def prefill_parts(p, c: Common, r: Replica, eff: Efficiency, mix: Mix) -> tuple:
    """(mean prompt, P99 prompt, η at the chunk): what `ttft_service` reads that does not depend
    on the running batch, computed once for the full batch and the running batch (`at_load`)."""
    bw_kv = c.bw_out * r.devices

    def at(prompt):
        new, cached = jnp.maximum((1.0 - mix.hit) * prompt, 1.0), mix.hit * prompt
        eta = prefill_eta(p, c, r, eff, new)
        alone = prefill_time(p, c, r, eff, new, cached, eta)
        kv = sw.kv_transfer(r.kv_bytes_per_token * prompt, bw_kv, c.alpha_out, alone.time_s, c.n_layers)
        return PrefillParts(new, cached, eta, alone, kv)

    return at(mix.prompt), at(mix.prompt_p99), prefill_eta(p, c, r, eff, p.chunk_size)


def ttft_service(p, c: Common, r: Replica, eff: Efficiency, d: DecodeStep, mix: Mix, disagg,
                 parts: tuple | None = None) -> Ttft:
    """TTFT without queueing (mean, P50, P99 prompt): colocated = chunked prefill inside the running batch;
    disaggregated = the prefill alone + the exposed KV transfer (walls.serving.kv_transfer,
    over the scale-out fabric, every accelerator of the replica sending its share).
    Prefix hits skip their tokens (new = (1 − h)·prompt, attending to the cached h·prompt).
    Evaluated at the mean, median and P99 prompt: the service is increasing in the prompt
    length, so its quantiles are the service at the prompt's quantiles.
    `parts`: `prefill_parts` when the caller has them (same values)."""
    at_mean, at_p99, eta_chunk = prefill_parts(p, c, r, eff, mix) if parts is None else parts

    def at(x: PrefillParts):
        chunks = chunked_prefill(p, c, r, eff, d, x.new, x.cached, x.eta, eta_chunk)
        colocated = jnp.maximum(chunks.ttft_s, x.alone.time_s)     # never faster than the prefill alone
        return jnp.where(disagg, x.alone.time_s + x.kv.exposed_s, colocated), x.alone, chunks, x.kv

    mean, alone, chunks, kv = at(at_mean)
    # Monotone by construction (a GEMM-efficiency curve may make a longer prompt's prefill
    # no slower than a shorter one's): P99 >= mean.  The median prompt (below the mean) is
    # interpolated linearly between the mean and the P99 prompt (the service is affine in
    # the prompt up to the small quadratic attention term), which saves a third evaluation.
    p99 = jnp.maximum(at(at_p99)[0], mean)
    span = mix.prompt_p99 - mix.prompt
    frac = safe_div(mix.prompt_p50 - mix.prompt, span, fill=0.0)     # no spread: the mean
    p50 = jnp.clip(mean + frac * (p99 - mean), 0.0, p99)
    return Ttft(mean, p50, p99, alone, chunks, kv)


class Sizing(NamedTuple):
    replicas: Array          # all replicas (prefill + decode pools when disaggregated)
    prefill_replicas: Array  # 0 when colocated
    decode_replicas: Array   # the replicas holding decode slots (colocated: all)


def size_pools(p, r: Replica, itl_s, t: Ttft, mix: Mix, disagg) -> Sizing:
    """The replicas: given (`replicas` >= 1) or the fewest keeping every pool at or below
    max_utilization (replicas = 0), clipped to [1, MAX_AUTO_REPLICAS].

    Colocated: c = R·batch slots, each holding a request for S = TTFT service +
    (output − 1)·ITL, ITL the mean decode iteration including its share of prefill chunks
    (walls.serving.prefill_interference, chunks per replica λ/R·n_chunks).
    Disaggregated: a prefill pool of R_p replicas, one prompt each (prefill is
    compute-bound: batching prompts does not raise its throughput), service = prefill +
    KV transfer; a decode pool of R_d·batch slots, service = KV transfer + (output − 1)·ITL.
    R_p = ⌈φ·R⌉, R_d = R − R_p (each at least 1; φ = prefill_fraction).
    `itl_s`: the per-token decode time at the batch the sized pool runs (`at_load`: u·batch
    busy slots).
    """
    lam = jnp.maximum(p.request_rate, 0.0)
    u = floor_pos(p.max_utilization, 1e-3)
    out1 = jnp.maximum(mix.out - 1.0, 0.0)
    phi = jnp.clip(p.prefill_fraction, 0.01, 0.99)
    pf_serv = t.alone.time_s + t.kv.transfer_s
    # Colocated: the chunks per replica, x = λ·n_chunks/R, stretch the mean iteration to
    # t/(1 − x·Δ) (walls.serving.prefill_interference), so the slot condition
    # λ/R·(A + K/(1 − aR⁻¹)) <= u·B (A = TTFT service, K = (output − 1)·t/E, a = λ·n_chunks·Δ)
    # is a quadratic in 1/R; its smaller root (citardauq form, finite at a = 0) gives
    # R >= (b + √(b² − 4·λA·a·uB)) / (2uB),  b = λ(A + K) + uB·a  (a = 0: λ·S/(uB)).
    ub = u * r.batch
    a_int = lam * t.chunking.n_chunks * t.chunking.extra_s
    big_a, big_k = lam * t.mean_s, lam * out1 * itl_s
    b1 = big_a + big_k + ub * a_int
    need_colo = (b1 + jnp.sqrt(jnp.maximum(b1 * b1 - 4.0 * big_a * a_int * ub, 0.0))) / (2.0 * ub)
    s_dec = t.kv.transfer_s + out1 * itl_s
    need_p, need_d = lam * pf_serv / u, lam * s_dec / (r.batch * u)
    auto = jnp.where(disagg, jnp.maximum(need_p / phi, need_d / (1.0 - phi)), need_colo)
    total = jnp.where(p.replicas >= 0.5, p.replicas, jnp.clip(jnp.ceil(auto), 1.0, MAX_AUTO_REPLICAS))
    r_p = jnp.maximum(jnp.ceil(phi * total - 1e-3), 1.0)
    r_d = jnp.maximum(total - r_p, 1.0)
    r_d = jnp.where(p.replicas >= 0.5, r_d, jnp.maximum(r_d, jnp.minimum(jnp.ceil(need_d), MAX_AUTO_REPLICAS)))
    replicas = jnp.where(disagg, r_p + r_d, total)
    return Sizing(replicas, jnp.where(disagg, r_p, 0.0), jnp.where(disagg, r_d, replicas))


class Load(NamedTuple):
    """The steps at the offered load (`at_load`)."""
    full: DecodeStep         # a full batch (the cap): `itl_s`, the bottleneck
    decode: DecodeStep       # the batch a request decodes in (running.seen)
    ttft: Ttft               # TTFT service inside that running batch
    sizing: Sizing
    running: sw.RunningBatch


def at_load(p, c: Common, r: Replica, eff: Efficiency, mix: Mix, disagg) -> Load:
    """Continuous batching at the offered load: the running batch and the steps it runs.

    The engine's `batch` is a cap (max_num_seqs); the batch it runs is set by the load
    (walls.serving.running_batch).  The decode iteration is taken affine in the batch
    between one sequence and the cap (both evaluated by `decode_step`), the replicas are
    sized at u·cap busy slots (`size_pools`), and the running batch of those replicas
    solves Little's law; the decode step and the TTFT service (chunks riding on that
    batch) are then evaluated at the batch a request decodes in.  The KV memory stays
    reserved for the cap (the engine allocates it up front).
    """
    d_full = decode_step(p, c, r, eff, prompt=mix.prompt, out_tok=mix.out)
    d_one = decode_step(p, c, r._replace(batch=jnp.ones_like(r.batch)), eff, prompt=mix.prompt, out_tok=mix.out)
    parts = prefill_parts(p, c, r, eff, mix)
    t_full = ttft_service(p, c, r, eff, d_full, mix, disagg, parts)
    d_full, t_full = _step_times(d_full, t_full, p.hardware)
    tokens = d_full.spec.tokens_per_step
    slope = safe_div(jnp.maximum(d_full.step_s - d_one.step_s, 0.0), r.batch - 1.0, fill=0.0)
    u = jnp.clip(p.max_utilization, 1e-3, 1.0)
    itl_sized = (d_one.step_s + slope * jnp.maximum(jnp.minimum(u * r.batch, r.batch - 1.0), 0.0)) / tokens
    sizing = size_pools(p, r, itl_sized, t_full, mix, disagg)
    lam = jnp.maximum(p.request_rate, 0.0)
    x = lam / sizing.decode_replicas
    chunks_per_s = jnp.where(disagg, 0.0, x * t_full.chunking.n_chunks)
    fixed = jnp.where(disagg, t_full.kv.transfer_s, t_full.mean_s)
    running = sw.running_batch(x, fixed, d_one.step_s, slope, jnp.maximum(mix.out - 1.0, 0.0) / tokens, r.batch,
                               chunks_per_s=chunks_per_s, chunk_extra_s=t_full.chunking.extra_s)
    r_run = r._replace(batch=running.seen)
    d = decode_step(p, c, r_run, eff, prompt=mix.prompt, out_tok=mix.out)
    t = ttft_service(p, c, r_run, eff, d, mix, disagg, parts)
    d, t = _step_times(d, t, p.hardware)
    return Load(d_full, d, t, sizing, running)


def _step_times(d: DecodeStep, t: Ttft, codes):
    """`d` and `t` with the fields the queues, latency and footprint read computed once
    (parts.materialized); the other fields (the audit's parts) as they were."""
    step_s, itl_s, mean_s, p50_s, p99_s, alone_s, extra_s, n_chunks, kv = materialized(
        (d.step_s, d.itl_s, t.mean_s, t.p50_s, t.p99_s, t.alone.time_s, t.chunking.extra_s,
         t.chunking.n_chunks, t.kv), codes)
    return d._replace(step_s=step_s, itl_s=itl_s), t._replace(
        mean_s=mean_s, p50_s=p50_s, p99_s=p99_s, alone=t.alone._replace(time_s=alone_s),
        chunking=t.chunking._replace(extra_s=extra_s, n_chunks=n_chunks), kv=kv)
