"""The serving scenario: an inference deployment composed from the walls (`serving`).

See the package docstring (`mlsys_opt.scenarios`) for the conventions shared with training.
The step physics (replica geometry, decode step, prefill, chunked prefill) lives in
`serving_steps.py`; the request mix, the TTFT service, the replicas and the running batch at the
offered load (continuous batching) in `serving_load.py`; this module queues the pools, times the
requests and prices the fleet.  The audit's decomposition: `serving_breakdown.py`.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from .._types import Array
from ..catalog.tables import Tables
from ..walls._masked import as_scenario
from ..walls import ops, queueing
from ..walls import serving as sw
from ..walls._masked import UNBOUNDED, floor_pos, safe_div
from .efficiency import DEFAULT_EFFICIENCY, Efficiency
from .parts import Common, batch_shape, broadcast_all, materialized, fleet_cost, fleet_upfront_capex, gather
from .serving_steps import DecodeStep, Replica, replica  # noqa: F401  (replica: scenarios.serving_breakdown, tests)
from .serving_load import (MAX_AUTO_REPLICAS, Q50, Q99, Load, Mix, PrefillParts, Sizing, Ttft, at_load,  # noqa: F401
                           prefill_parts, request_mix, size_pools, ttft_service)


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
    prompt_tokens: Array             # tokens (mean)
    output_tokens: Array             # tokens (mean)
    batch: Array                     # concurrent sequences per replica
    replicas: Array                  # 0 = auto
    max_utilization: Array           # fraction
    duration: Array                  # s
    prompt_cv: Array                 # coefficient of variation of the prompt length
    output_cv: Array
    kv_precision: Array              # code into schema.KV_PRECISIONS (0 = the weight precision)
    chunk_size: Array                # tokens per prefill chunk, 0 = whole prompt
    disaggregated: Array             # code into schema.ON_OFF
    prefill_fraction: Array          # share of replicas in the prefill pool
    spec_k: Array                    # drafted tokens per step, 0 = off
    spec_acceptance: Array           # α
    draft_cost_frac: Array           # draft pass / target step
    prefix_hit_rate: Array           # fraction of prompt tokens cached
    offload: Array                   # code into schema.OFFLOAD
    ep: Array                        # expert-parallel degree
    moe_imbalance: Array             # busiest EP rank / mean
    scheduler: Array                 # code into schema.SCHEDULERS (1 = serial: host time per step)
    scheduler_steps: Array           # decode steps per scheduler call (multi-step scheduling)


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
    ttft_p50_s: Array
    ttft_p99_s: Array
    itl_p50_s: Array
    itl_p99_s: Array
    energy_per_mtok_j: Array
    kv_transfer_s: Array
    offload_bytes: Array
    spec_tokens_per_step: Array
    prefill_replicas: Array
    upfront_capex_usd: Array         # purchase of the on-prem fleet (0 cloud); tco_usd is the period's share
    ttft_mean_s: Array
    itl_mean_s: Array                # mean time per generated token at the offered load
    running_batch: Array             # mean sequences in a decode replica's batch at the offered load


class ServingConstraints(NamedTuple):
    memory: Array
    tp_within_node: Array
    pipeline_depth: Array
    precision: Array
    queue_stable: Array      # utilisation - 1 (+1e-6: rho = 1 is unstable), worst pool
    experts: Array           # ep / n_experts - 1 (a dense model at ep = 1: -1)
    context: Array           # (prompt + output) / context - 1


class Pools(NamedTuple):
    replicas: Array          # all replicas (prefill + decode pools when disaggregated)
    prefill_replicas: Array  # 0 when colocated
    slots: Array             # decode slots (colocated: every slot)
    slot_service_s: Array    # mean time a request holds a slot
    slot_queue: queueing.MGCQueue
    prefill_queue: queueing.MGCQueue
    itl: sw.Interference     # decode iterations with prefill chunks riding on them
    utilization: Array       # worst pool


def pools(p, r: Replica, d: DecodeStep, t: Ttft, mix: Mix, disagg, sizing: Sizing) -> Pools:
    """Queue the pools (walls.queueing.mgc_queue: Allen–Cunneen M/G/c) of `sizing`.

    Colocated: c = replicas·batch slots (the cap), each held for S = TTFT service +
    (output − 1)·ITL, `d` and `t` the steps at the running batch (`at_load`).
    Disaggregated: the prefill pool (one prompt per replica, service = prefill + KV
    transfer) and the decode pool's slots (service = KV transfer + (output − 1)·ITL, no
    prefill interference).
    Service-time variability C_s² = Var(S)/E[S]² from the length mix: the output term
    (ITL·σ_out)² plus the prompt term (TTFT service·cv_prompt)² (log-normal lengths).
    """
    lam = jnp.maximum(p.request_rate, 0.0)
    out1 = jnp.maximum(mix.out - 1.0, 0.0)
    pf_serv = t.alone.time_s + t.kv.transfer_s
    replicas, r_p, r_d = sizing
    prefill_replicas = r_p
    fixed = jnp.where(disagg, t.kv.transfer_s, t.mean_s)

    def slot_service(decoders):
        chunks_per_s = jnp.where(disagg, 0.0, lam / decoders * t.chunking.n_chunks)
        itl = sw.prefill_interference(d.step_s, t.chunking.extra_s, chunks_per_s)
        return itl, fixed + out1 * itl.itl_mean_s / d.spec.tokens_per_step

    # Auto-sized (replicas = 0) at the affine step of u·batch busy slots (`at_load`): where the step at
    # the running batch is above that line (the GEMM curves are not convex everywhere), add the decode
    # replicas that bring the slots back to max_utilization (conservative: the step stays the one
    # evaluated at the running batch of the replicas sized first).
    u = floor_pos(p.max_utilization, 1e-3)
    rho = lam * slot_service(r_d)[1] / (r_d * r.batch)
    extra = jnp.where((p.replicas < 0.5) & (rho > u),
                      jnp.minimum(jnp.ceil(r_d * rho / u - 1e-9), MAX_AUTO_REPLICAS) - r_d, 0.0)
    r_d, replicas = r_d + jnp.maximum(extra, 0.0), replicas + jnp.maximum(extra, 0.0)
    itl, s_slot = slot_service(r_d)
    itl_tok = itl.itl_mean_s / d.spec.tokens_per_step
    slots = r_d * r.batch
    sd_out = itl_tok * out1 * floor_pos(p.output_cv, 0.0)
    sd_pr = jnp.where(disagg, 0.0, t.mean_s) * floor_pos(p.prompt_cv, 0.0)
    s_safe = floor_pos(s_slot, 1e-12)
    cs2 = (sd_out * sd_out + sd_pr * sd_pr) / (s_safe * s_safe)
    pf_safe = floor_pos(pf_serv, 1e-12)
    cv_pf = floor_pos(p.prompt_cv, 0.0)
    # One Erlang C per configuration: the queue TTFT waits in (colocated: the slots;
    # disaggregated: the prefill pool) is M/G/c; the decode pool of a disaggregated
    # deployment takes the closed form (queueing.ggc_queue_closed_form, Sakasegawa).
    sel = lambda a, b: jnp.where(disagg, a, b)                     # noqa: E731
    first = queueing.mgc_queue(lam, sel(1.0 / pf_safe, 1.0 / s_safe), sel(r_p, slots), sel(cv_pf * cv_pf, cs2))
    second = queueing.ggc_queue_closed_form(jnp.where(disagg, lam, 0.0), 1.0 / s_safe, slots, cs2)
    idle = queueing.MGCQueue(*(jnp.zeros_like(x) for x in first[:-1]), jnp.ones_like(first.stable))
    slot_q = queueing.MGCQueue(*(sel(a, b) for a, b in zip(second, first)))
    pre_q = queueing.MGCQueue(*(sel(a, b) for a, b in zip(first, idle)))
    util = jnp.where(disagg, jnp.maximum(slot_q.utilization, pre_q.utilization), slot_q.utilization)
    return Pools(replicas, prefill_replicas, slots, s_slot, slot_q, pre_q, itl, util)


class Latency(NamedTuple):
    ttft_p50_s: Array
    ttft_p99_s: Array
    itl_p50_s: Array
    itl_p99_s: Array
    p99_latency_s: Array
    ttft_mean_s: Array
    itl_mean_s: Array


def boundary_wait(r: Replica, d: DecodeStep, t: Ttft, q: Pools, disagg, busy=None) -> sw.Residual:
    """Colocated: the wait for the decode iteration in flight to end before a new prompt can
    join (walls.serving.iteration_residual).  The iteration is the decode step t, or t + Δ
    with a prefill chunk on it (share f, walls.serving.prefill_interference); the replica
    runs iterations a busy_fraction of the time.  Disaggregated: the prefill pool's own
    queue (M/G/c, one prompt per replica) already holds that wait: 0.
    `busy`: the slots' busy_fraction when the caller has it already (same value)."""
    busy = sw.busy_fraction(q.slot_queue.utilization, r.batch) if busy is None else busy
    busy = jnp.where(disagg, 0.0, busy)
    return sw.iteration_residual(d.step_s, t.chunking.extra_s, q.itl.chunk_share, busy)


def latency(d: DecodeStep, t: Ttft, q: Pools, mix: Mix, disagg, res: sw.Residual) -> Latency:
    """Percentiles: TTFT = wait + prefill service; ITL = decode iteration / tokens per step.

    TTFT waits in the prefill pool (disaggregated) or for a batch slot (colocated); its
    P99 combines the wait's and the service's P99 by root-sum-square
    (walls.serving.combine_quantiles), its median adds the medians.  ITL quantiles take
    the iteration's quantile (prefill chunks riding on it, walls.serving.prefill_interference)
    over the tokens of a step at the matching low quantile (speculation: a step with
    fewer accepted tokens is a slower one; walls.serving.speculative_decoding).
    Whole request P99: TTFT (mean, P99) combined with the decode part (mean output and
    P99 output at the mean ITL, plus the decode-pool wait when disaggregated).
    Colocated TTFT adds the wait for the iteration in flight (`res`, boundary_wait): its
    median to the median, its (mean, P99) root-sum-square with the queue wait's.
    At zero load every wait is 0: the P99s are service times.
    """
    w_q = jnp.where(disagg, 0.0, 1.0)
    wait = lambda f_p, f_s: jnp.where(disagg, f_p, f_s)          # noqa: E731
    w_mean = wait(q.prefill_queue.mean_wait_s, q.slot_queue.mean_wait_s)
    w50 = wait(q.prefill_queue.wait_p50_s, q.slot_queue.wait_p50_s)
    w99 = wait(q.prefill_queue.wait_p99_s, q.slot_queue.wait_p99_s)
    w99 = sw.combine_quantiles(w_mean, w99, res.mean_s, res.p99_s)
    w_mean = w_mean + res.mean_s
    ttft50 = jnp.minimum(w50 + res.p50_s + t.p50_s, UNBOUNDED)
    ttft99 = jnp.minimum(sw.combine_quantiles(w_mean, w99, t.mean_s, t.p99_s), UNBOUNDED)
    itl50 = q.itl.itl_p50_s / d.spec.tokens_p50
    itl99 = q.itl.itl_p99_s / d.spec.tokens_p01
    itl_tok = q.itl.itl_mean_s / d.spec.tokens_per_step
    dec_mean = jnp.maximum(mix.out - 1.0, 0.0) * itl_tok + (1.0 - w_q) * q.slot_queue.mean_wait_s
    dec99 = jnp.maximum(mix.out_p99 - 1.0, 0.0) * itl_tok + (1.0 - w_q) * q.slot_queue.wait_p99_s
    e2e = sw.combine_quantiles(w_mean + t.mean_s, ttft99, dec_mean, dec99)
    return Latency(ttft50, ttft99, jnp.minimum(itl50, UNBOUNDED), jnp.minimum(itl99, UNBOUNDED),
                   jnp.minimum(e2e, UNBOUNDED), jnp.minimum(w_mean + t.mean_s, UNBOUNDED),
                   jnp.minimum(itl_tok, UNBOUNDED))


class Footprint(NamedTuple):
    n_dev: Array
    power_w: Array           # mean board power per accelerator (incl. the KV network share)
    cost_usd: Array
    carbon_kg: Array
    energy_j: Array
    tokens: Array            # generated tokens over the duration
    throughput: Array        # tokens/s


def footprint(p, c: Common, r: Replica, d: DecodeStep, t: Ttft, q: Pools, mix: Mix, disagg,
              eff: Efficiency, busy_d=None) -> Footprint:
    """Power at utilisation, energy, carbon and cost over `duration` (walls.serving, ops).

    A decode replica draws active power while any slot is busy
    (walls.serving.busy_fraction), a prefill replica while it runs a prompt (its
    utilisation); idle/active fractions are Efficiency.idle_power_frac /
    active_power_frac (sources there and at walls.serving.power_at_utilization).  The KV
    transfers add λ·(network J per request) of IT power (walls.serving.kv_transfer).
    `busy_d`: the slots' busy_fraction when the caller has it already (same value).
    """
    lam = jnp.maximum(p.request_rate, 0.0)
    n_dev = q.replicas * r.devices
    n_pre = q.prefill_replicas * r.devices
    busy_d = sw.busy_fraction(q.slot_queue.utilization, r.batch) if busy_d is None else busy_d
    busy_p = jnp.clip(q.prefill_queue.utilization, 0.0, 1.0)
    pw = lambda b: sw.power_at_utilization(c.tdp, b, idle_frac=eff.idle_power_frac,    # noqa: E731
                                           active_frac=eff.active_power_frac)
    fleet_w = pw(busy_d) * (n_dev - n_pre) + pw(busy_p) * n_pre + jnp.where(disagg, lam * t.kv.energy_j, 0.0)
    power = fleet_w / floor_pos(n_dev, 1.0)
    fp = ops.sustainability(fleet_w, p.duration, c.pue, c.carbon, c.wue)
    cost = fleet_cost(c, p.pricing, n_dev, p.duration, power, p.depreciation, p.maintenance_frac_per_year)
    capacity = q.slots * mix.out / floor_pos(q.slot_service_s, 1e-12)
    throughput = jnp.minimum(lam * mix.out, capacity)
    return Footprint(n_dev, power, cost, fp.carbon_kg, fp.energy_j, throughput * p.duration, throughput)


def per_mtok(total, tokens):
    """total / (tokens / 1e6); UNBOUNDED when no token is served (request_rate 0: undefined)."""
    served = tokens > 0
    return jnp.where(served, jnp.minimum(safe_div(total, tokens, fill=UNBOUNDED) * 1e6, UNBOUNDED), UNBOUNDED)


# --------------------------------------------------------------------------- serving
@as_scenario
def serving(p: ServingParams, tables: Tables, eff: Efficiency = DEFAULT_EFFICIENCY):
    """A serving deployment: (ServingOutputs, ServingConstraints), every field shaped like the batch.

    Modelling (seed 000 §4, walls 4, 5, 7 and walls.serving; details on each helper):
    - Replica [serving_steps.replica]: tp·pp·ep accelerators holding all weights (MoE: every
      expert, split over ep), the KV of `batch` sequences at prompt + output tokens in
      kv_precision, a draft model when spec_k > 0; offload spills what does not fit.
    - Decode [serving_steps.decode_step]: max(weight read, GEMM FLOPs) + KV read (mean
      context prompt + output/2) + dispatch + comm, MoE reading only the touched experts;
      speculative decoding verifies k + 1 tokens per sequence and emits
      (1 − α^(k+1))/(1 − α) per step.  `itl_s` = step / tokens per step.
    - Prefill [serving_steps.prefill_time]: GEMM + causal attention FLOPs of the uncached
      prompt at η_prefill, never below the weight read; `ttft_s` = that alone, mean prompt.
    - Colocated: chunked prefill rides on the decode iterations
      [serving_steps.chunked_prefill]; disaggregated: separate pools, KV over the fabric.
    - Queues [pools]: M/G/c (Allen–Cunneen) on batch slots and on the prefill pool;
      percentiles [latency]; request mix log-normal [request_mix].
    - Power at utilisation, energy, carbon, cost [footprint]; per-Mtok = total / tokens
      served over `duration` (UNBOUNDED at zero load, where it is undefined).
    - CNN models: a "token" is one sample (flop_per_sample per prompt token, no KV).
    """
    c = gather(p, tables, eff)
    shape = batch_shape(p)
    mix = request_mix(p)
    disagg = jnp.asarray(p.disaggregated) == 1
    spec_on = jnp.asarray(p.spec_k) >= 1
    r = replica(p, c, tables.hw.host_bw_bytes_per_s[jnp.asarray(p.hardware, jnp.int32)], eff,
                prompt=mix.prompt, out_tok=mix.out, spec_on=spec_on)
    load = at_load(p, c, r, eff, mix, disagg)
    d, t = load.decode, load.ttft
    # Computed once for their many consumers (parts.materialized; XLA's CPU fusion otherwise
    # recomputes the chunk's Δ, the residual wait and busy_fraction inside each consumer).  Cut
    # points chosen by measurement on the benchmarks/throughput.py serving chunk (XLA cost
    # analysis and CPU time); other cuts (d alone, the prefill curve, lat or f alone) cost more.
    # Of the steps, only the times the queues, latency and footprint read (`_step_times`): each
    # materialized leaf is one more pass over the chunk (a copy), and the replica's sizes are
    # cheaper to recompute (chunk CPU time 6-13 % lower than materializing r, d and t whole).
    q = pools(p, r, d, t, mix, disagg, load.sizing)
    busy = sw.busy_fraction(q.slot_queue.utilization, r.batch)
    q, res, busy = materialized((q, boundary_wait(r, d, t, q, disagg, busy), busy), p.hardware)
    lat = latency(d, t, q, mix, disagg, res)
    f = footprint(p, c, r, d, t, q, mix, disagg, eff, busy)
    lat, f = materialized((lat, f), p.hardware)

    out = ServingOutputs(
        p99_latency_s=lat.p99_latency_s, ttft_s=t.alone.time_s, itl_s=load.full.itl_s,
        cost_per_mtok_usd=per_mtok(f.cost_usd, f.tokens), carbon_per_mtok_kg=per_mtok(f.carbon_kg, f.tokens),
        tco_usd=f.cost_usd, carbon_kg=f.carbon_kg, n_accelerators=f.n_dev, replicas=q.replicas,
        throughput_tok_per_s=f.throughput, utilization=q.utilization, kv_cache_bytes=r.kv_bytes,
        memory_per_accelerator_bytes=r.memory_bytes, bottleneck=load.full.bottleneck,
        ttft_p50_s=lat.ttft_p50_s, ttft_p99_s=lat.ttft_p99_s, itl_p50_s=lat.itl_p50_s,
        itl_p99_s=lat.itl_p99_s, energy_per_mtok_j=per_mtok(f.energy_j, f.tokens),
        kv_transfer_s=jnp.where(disagg, t.kv.exposed_s, 0.0), offload_bytes=r.offload_bytes,
        spec_tokens_per_step=d.spec.tokens_per_step, prefill_replicas=q.prefill_replicas,
        upfront_capex_usd=fleet_upfront_capex(c, p.pricing, f.n_dev), ttft_mean_s=lat.ttft_mean_s,
        itl_mean_s=lat.itl_mean_s, running_batch=jnp.clip(q.slot_queue.utilization, 0.0, 1.0) * r.batch)
    ctx = jnp.asarray(tables.model.context_len)[jnp.asarray(p.model, jnp.int32)]
    stable = jnp.where(disagg, q.slot_queue.stable & q.prefill_queue.stable, q.slot_queue.stable)
    g = ServingConstraints(
        memory=r.memory_bytes / c.capacity - 1.0,
        tp_within_node=r.tp / c.apn - 1.0,
        pipeline_depth=r.pp / c.n_layers - 1.0,
        precision=jnp.where(c.has_precision, -1.0, 1.0),
        queue_stable=jnp.where(stable, jnp.minimum(q.utilization, 1e6) - 1.0 + 1e-6,
                               jnp.maximum(jnp.minimum(q.utilization, 1e6) - 1.0, 0.0) + 1e-6),
        # a dense model at ep = 1 is not on the experts boundary (g = 0 would show it as the
        # tightest constraint): -1, as in training; ep > 1 stays refused for it (ep <= n_experts = 1)
        experts=jnp.where((c.n_experts > jnp.maximum(c.top_k, 1.0)) | (r.ep > 1.0), r.ep / c.n_experts - 1.0, -1.0),
        context=jnp.where(c.is_cnn | (ctx <= 0), -1.0, (mix.prompt + mix.out) / floor_pos(ctx, 1.0) - 1.0))
    return broadcast_all(shape, out), broadcast_all(shape, g)
