"""The serving scenario: an inference deployment composed from the walls (`serving`).

See the package docstring (`mlsys_opt.scenarios`) for the conventions shared with training.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from .._types import Array
from ..catalog.tables import Tables
from ..walls import fleet, node, ops, queueing
from .efficiency import DEFAULT_EFFICIENCY, Efficiency, decode_compute_efficiency, prefill_efficiency
from .parts import batch_shape, broadcast_all, fleet_cost, gather, safe_pos

MAX_AUTO_REPLICAS = 1e7            # auto-sizing stops here; beyond it the queue is flagged unstable


class ServingParams(NamedTuple):
    """One serving configuration per row (schema.SERVING_PARAMS, same order)."""
    hardware: Array
    model: Array
    region: Array
    fabric: Array
    precision: Array
    tp: Array
    pp: Array
    efficiency: Array
    pricing: Array
    depreciation: Array              # s
    maintenance_frac_per_year: Array
    request_rate: Array              # requests/s
    prompt_tokens: Array             # tokens
    output_tokens: Array             # tokens
    batch: Array                     # concurrent sequences per replica
    replicas: Array                  # 0 = auto
    max_utilization: Array           # fraction
    duration: Array                  # s


class ServingOutputs(NamedTuple):
    p99_latency_s: Array
    ttft_s: Array
    itl_s: Array
    cost_per_mtok_usd: Array
    carbon_per_mtok_kg: Array
    tco_usd: Array
    carbon_kg: Array
    n_accelerators: Array
    replicas: Array
    throughput_tok_per_s: Array
    utilization: Array
    kv_cache_bytes: Array
    memory_per_accelerator_bytes: Array
    bottleneck: Array


class ServingConstraints(NamedTuple):
    memory: Array
    tp_within_node: Array
    pipeline_depth: Array
    precision: Array
    queue_stable: Array      # utilisation - 1 (+1e-6: rho = 1 is unstable)



# --------------------------------------------------------------------------- serving
def serving(p: ServingParams, tables: Tables, eff: Efficiency = DEFAULT_EFFICIENCY):
    """A serving deployment: (ServingOutputs, ServingConstraints), every field shaped like the batch.

    Modelling (seed 000 §4, walls 4, 5, 7; walls named in brackets):
    - A replica is tp·pp accelerators holding all weights P·bytes (MoE: every expert).
      Pipeline stages run one after another for one request, so latency sees the
      tp-aggregate peak and bandwidth; pp adds memory and one activation hop per stage
      (scale-up link while the replica fits in a node, else the scale-out fabric).
    - TTFT [node.prefill]: 2·P_active·prompt FLOP at η_prefill (efficiency.py), never
      below reading the weights, + dispatch per layer + 2 Megatron all-reduces per layer
      of prompt·hidden·bytes over the scale-up link [fleet.ring_allreduce].
    - ITL [node.decode with kv_separate, node.kv_cache_bytes]: max(weights over
      tp·mem_bw·mem_bw_eff, 2·P_active·batch FLOP at η_decode) for the weight GEMMs, plus the
      KV of `batch` sequences at their mean context prompt + output/2 (continuous batching
      spreads the slots over the generation; MLA models cache kv_latent_dim elements per
      layer per token, DeepSeek-V2 §2.1.2) over the same bandwidth (attention is its own
      memory-bound kernel; it does not hide behind compute-bound GEMMs at large batch),
      + dispatch + 2 all-reduces per layer of batch·hidden·bytes + pp hops.  Wafer-scale
      rows stream weights over the injection link [node.weight_streaming], KV stays on-wafer
      and is read after the weights in the same way.
    - Service time S = TTFT + (output-1)·ITL [node.serving_throughput].  Continuous
      batching = M/M/c [queueing.mmc_queue] with c = replicas·batch servers of rate 1/S and
      arrival rate request_rate; p99 = S + 99th-percentile wait.  replicas = given, or
      (0) ceil(λ·S/(batch·max_utilization)), clipped to [1, MAX_AUTO_REPLICAS] (a
      float32 guard: past 1e7 replicas the queue constraint reports the overload).
    - Throughput = min(λ·output, replicas·batch·output/S).  Power per accelerator
      TDP·(idle + (active - idle)·utilisation); energy/carbon [ops.sustainability] and
      cost [ops.tco / ops.cloud_cost] over `duration`; per-Mtok = total / tokens served.
    - CNN models: a "token" is one sample (flop_per_sample per prompt token, no KV).
    """
    c = gather(p, tables, eff)
    shape = batch_shape(p)
    tp, pp = safe_pos(p.tp, 1.0), safe_pos(p.pp, 1.0)
    replica = tp * pp
    batch = safe_pos(p.batch, 1.0)
    prompt, out_tok = safe_pos(p.prompt_tokens, 1.0), safe_pos(p.output_tokens, 1.0)
    n_l = c.n_layers
    w_bytes = c.n_params * c.bpe
    kv = node.kv_cache_bytes(n_l, c.n_kv_heads, c.head_dim, prompt + out_tok, batch, c.bpe,
                             kv_latent_dim=c.kv_latent_dim)
    # A decode step reads the KV of the batch at its mean context: under continuous batching
    # the slots are spread evenly over the generation, prompt + output/2 tokens on average.
    kv_read = node.kv_cache_bytes(n_l, c.n_kv_heads, c.head_dim, prompt + 0.5 * out_tok, batch, c.bpe,
                                  kv_latent_dim=c.kv_latent_dim)
    peak_r, bw_r, inj_r = c.peak * tp, c.mem_bw * tp, c.inj_bw * tp
    tax = eff.dispatch_s_per_layer * n_l

    in_node = replica <= c.apn
    bw_pp = jnp.where(in_node, c.bw_up, c.bw_out)
    alpha_pp = jnp.where(in_node, c.alpha_up, c.alpha_out)

    def comm(tokens):   # Megatron TP all-reduces (2 per layer) + one hop per pipeline stage
        msg = tokens * c.hidden * c.bpe
        t_tp = 2.0 * n_l * fleet.ring_allreduce(msg, tp, c.bw_up, c.alpha_up)
        return t_tp + (pp - 1.0) * (alpha_pp + msg / bw_pp)

    # Prefill (time to first token).
    eta_p = prefill_efficiency(p.efficiency, prompt * c.reuse_per_item, eff)
    pf = node.prefill(c.n_eff, prompt, 1.0, peak_r, bw_r, w_bytes, efficiency=eta_p, dispatch_tax_s=tax)
    pf_ws = node.weight_streaming(w_bytes / n_l, pf.flop / n_l, n_l, inj_r, peak_r,
                                  efficiency=eta_p, dispatch_tax_s=tax / n_l)
    ttft = jnp.where(c.wafer, pf_ws.latency_s, pf.ttft_s) + comm(prompt)

    # Decode (one token for each of `batch` sequences).
    eta_d = decode_compute_efficiency(p.efficiency, eff)
    dec = node.decode(w_bytes, kv_read, c.n_eff, batch, peak_r, bw_r, efficiency=eta_d, dispatch_tax_s=tax,
                      kv_separate=True)
    dec_ws = node.weight_streaming(w_bytes / n_l, 2.0 * c.n_eff * batch / n_l, n_l, inj_r, peak_r,
                                   efficiency=eta_d, dispatch_tax_s=tax / n_l)
    itl = jnp.where(c.wafer, dec_ws.latency_s + kv_read / bw_r, dec.itl_s) + comm(batch)
    bottleneck = jnp.where(c.wafer, dec_ws.bottleneck, dec.bottleneck)

    # Queue: every batch slot of every replica is one server.
    st = node.serving_throughput(itl, ttft, batch, out_tok)
    service = safe_pos(st.request_latency_s, 1e-12)
    lam = jnp.maximum(p.request_rate, 0.0)
    auto = jnp.clip(jnp.ceil(lam * service / (batch * safe_pos(p.max_utilization, 1e-3))), 1.0,
                    MAX_AUTO_REPLICAS)
    replicas = jnp.where(p.replicas >= 0.5, p.replicas, auto)
    q = queueing.mmc_queue(lam, 1.0 / service, replicas * batch)
    throughput = jnp.minimum(lam * out_tok, replicas * st.tokens_per_s)

    # Fleet power, energy, cost.
    n_dev = replicas * replica
    busy = jnp.clip(q.utilization, 0.0, 1.0)
    power = c.tdp * (eff.idle_power_frac + (eff.active_power_frac - eff.idle_power_frac) * busy)
    fp = ops.sustainability(n_dev * power, p.duration, c.pue, c.carbon, c.wue)
    cost = fleet_cost(c, p.pricing, n_dev, p.duration, power, p.depreciation, p.maintenance_frac_per_year)
    mtok = safe_pos(throughput * p.duration, 1.0) / 1e6

    mem = jnp.where(c.wafer, kv / replica + 2.0 * w_bytes / n_l, (w_bytes + kv) / replica)
    out = ServingOutputs(
        p99_latency_s=q.p99_latency_s, ttft_s=ttft, itl_s=itl, cost_per_mtok_usd=cost / mtok,
        carbon_per_mtok_kg=fp.carbon_kg / mtok, tco_usd=cost, carbon_kg=fp.carbon_kg,
        n_accelerators=n_dev, replicas=replicas, throughput_tok_per_s=throughput,
        utilization=q.utilization, kv_cache_bytes=kv, memory_per_accelerator_bytes=mem,
        bottleneck=bottleneck.astype(jnp.int32))
    g = ServingConstraints(
        memory=mem / c.capacity - 1.0,
        tp_within_node=tp / c.apn - 1.0,
        pipeline_depth=pp / n_l - 1.0,
        precision=jnp.where(c.has_precision, -1.0, 1.0),
        queue_stable=jnp.minimum(q.utilization, 1e6) - 1.0 + 1e-6)
    return broadcast_all(shape, out), broadcast_all(shape, g)


