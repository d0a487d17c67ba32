"""The serving audit's decomposition (`breakdown`): where the P99 TTFT and the P99 ITL go.

The same model as `scenarios.serving.serving` (its helpers, evaluated in the same order), split
into parts that sum to the totals, for `mlsys-opt evaluate` (cli/audit.py).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from .._types import Array
from ..catalog.tables import Tables
from .efficiency import DEFAULT_EFFICIENCY, Efficiency
from .parts import gather
from .serving import ServingParams, at_load, boundary_wait, latency, pools, replica, request_mix


class Breakdown(NamedTuple):
    """Where the P99 TTFT and the P99 ITL go (s), for the serving audit (cli/audit.py)."""
    ttft_p99_s: Array
    ttft_wait_s: Array         # queue wait share (P99 TTFT − service P99 when positive)
    ttft_gemm_s: Array         # GEMM FLOPs of the mean prompt's prefill
    ttft_attention_s: Array    # causal attention FLOPs
    ttft_weights_s: Array      # weight read beyond the FLOP time (small prompts)
    ttft_overhead_s: Array     # dispatch + TP/EP/PP communication
    ttft_batching_s: Array     # colocated: the decode iterations the chunks ride on
    ttft_kv_transfer_s: Array  # disaggregated: exposed KV transfer
    ttft_long_prompt_s: Array  # P99 prompt over the mean prompt
    itl_p99_s: Array
    itl_weights_s: Array       # per-token share of the weight read
    itl_compute_s: Array       # GEMM FLOPs beyond the weight read
    itl_kv_s: Array            # KV-cache read
    itl_overhead_s: Array      # dispatch + communication
    itl_draft_s: Array         # draft passes (speculative decoding)
    itl_prefill_s: Array       # prefill chunk riding on the P99 iteration
    itl_tokens_per_step: Array  # tokens the P99 step emits (the divisor)
    itl_host_s: Array          # a serial engine's scheduler between GPU steps (scheduler = serial)


def breakdown(p: ServingParams, tables: Tables, eff: Efficiency = DEFAULT_EFFICIENCY) -> Breakdown:
    """The audit's decomposition of `ttft_p99_s` and `itl_p99_s` (same model as `serving`).

    TTFT P99 = wait + GEMMs + attention + weight-read excess + overhead + batching
    (colocated chunk iterations) + KV transfer (disaggregated) + long-prompt tail;
    ITL P99 = (weights + compute excess + KV + overhead + draft + prefill chunk + host) / tokens.
    The parts sum to the totals (the wait is the remainder of the root-sum-square combination).
    """
    c = gather(p, tables, eff)
    mix = request_mix(p)
    disagg = jnp.asarray(p.disaggregated) == 1
    r = replica(p, c, tables.hw.host_bw_bytes_per_s[jnp.asarray(p.hardware, jnp.int32)], eff,
                prompt=mix.prompt, out_tok=mix.out, spec_on=jnp.asarray(p.spec_k) >= 1)
    load = at_load(p, c, r, eff, mix, disagg)
    d, t = load.decode, load.ttft
    q = pools(p, r, d, t, mix, disagg, load.sizing)
    lat = latency(d, t, q, mix, disagg, boundary_wait(r, d, t, q, disagg))
    a = t.alone
    gemm = a.compute_s - a.attention_s
    w_excess = jnp.maximum(a.weights_s - a.compute_s, 0.0)
    kv = jnp.where(disagg, t.kv.exposed_s, 0.0)
    batching = jnp.where(disagg, 0.0, t.mean_s - a.time_s)
    tail = t.p99_s - t.mean_s
    wait = lat.ttft_p99_s - (a.time_s + batching + kv + tail)
    n = d.spec.tokens_p01
    hit = q.itl.itl_p99_s - d.step_s
    w_exc = jnp.maximum(d.compute_s - d.weights_s, 0.0)
    return Breakdown(lat.ttft_p99_s, wait, gemm, a.attention_s, w_excess, a.overhead_s, batching, kv, tail,
                     lat.itl_p99_s, d.weights_s / n, w_exc / n, d.kv_s / n, d.overhead_s / n, d.draft_s / n,
                     hit / n, n, d.host_s / n)
