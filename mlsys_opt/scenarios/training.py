"""The training scenario: a training run composed from the walls (`training`).

See the package docstring (`mlsys_opt.scenarios`) for the conventions shared with serving.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from .._types import Array
from ..catalog.tables import Tables
from ..walls import algorithm, fleet, node, ops
from .efficiency import DEFAULT_EFFICIENCY, Efficiency, matmul_efficiency
from .parts import COMPUTE, MEMORY, batch_shape, broadcast_all, elementwise_time_s, fleet_cost, gather, safe_pos
from .schema import RECOMPUTE

FULL_RECOMPUTE = RECOMPUTE.index("full")
SELECTIVE_RECOMPUTE = RECOMPUTE.index("selective")
OPTIMIZER_BYTES_PER_PARAM = 12.0   # fp32 master + Adam m + v (seed 001 "16 B/param" rule)


class TrainingParams(NamedTuple):
    """One training configuration per row (schema.TRAINING_PARAMS, same order)."""
    hardware: Array                  # int32 row of tables.hw
    model: Array                     # int32 row of tables.model
    region: Array                    # int32 row of tables.region
    fabric: Array                    # int32 row of tables.fabric (scale-out network)
    precision: Array                 # int32 code into _types.PRECISIONS
    tp: Array                        # tensor-parallel degree
    pp: Array                        # pipeline-parallel degree
    efficiency: Array                # user η, asymptotic matmul fraction of peak
    pricing: Array                   # int32 code into schema.PRICING
    depreciation: Array              # s
    maintenance_frac_per_year: Array  # 1/year fraction of price
    n_tokens: Array                  # tokens (samples for a CNN)
    n_accelerators: Array            # count
    ep: Array                        # expert-parallel degree
    microbatches: Array              # M per step per pipeline
    virtual_stages: Array            # V
    global_batch: Array              # sequences per step
    seq_len: Array                   # tokens per sequence (ignored for CNNs)
    recompute: Array                 # int32 code into schema.RECOMPUTE
    zero_stage: Array                # 0-3
    overlap: Array                   # fraction of DP all-reduce hidden
    checkpoint_interval: Array       # s; 0 = Young-Daly
    checkpoint_bw: Array             # B/s
    recovery: Array                  # s


class TrainingOutputs(NamedTuple):
    time_to_train_s: Array
    tco_usd: Array
    carbon_kg: Array
    energy_j: Array
    water_l: Array
    step_time_s: Array
    mfu: Array
    scaling_efficiency: Array
    goodput: Array
    bubble_frac: Array
    memory_per_accelerator_bytes: Array
    n_accelerators: Array
    dp: Array
    bottleneck: Array                # int32 code into BOTTLENECKS


class TrainingConstraints(NamedTuple):
    memory: Array            # memory / capacity - 1
    divisibility: Array      # |N mod (tp·pp·ep)| - 1/2  (GPUs)
    tp_within_node: Array    # tp / accelerators_per_node - 1
    pipeline_depth: Array    # pp / n_layers - 1
    experts: Array           # ep / n_experts - 1
    batch_split: Array       # dp·ep·M / global_batch - 1
    precision: Array         # -1 supported, +1 not



# --------------------------------------------------------------------------- training
def training(p: TrainingParams, tables: Tables, eff: Efficiency = DEFAULT_EFFICIENCY):
    """A training run: (TrainingOutputs, TrainingConstraints), every field shaped like the batch.

    Modelling (seed 000 §2-9, seed 003; walls named in brackets):
    - dp = N/(tp·pp·ep); EP ranks also split the data, so a micro-batch holds
      b = global_batch/(dp·ep·M) sequences and rows = b·seq GEMM rows.
    - Model FLOPs per step = 6·P_active·T [algorithm.training_flop] + 12·L·(a·d)·s·T
      (attention scores, PaLM App. B MFU count; a·d = heads·head_dim), T = tokens per
      step.  CNN: 3·flop_per_sample per sample (seq_len ignored, n_tokens = samples).
      Recompute adds hardware FLOPs only: full +1 forward, selective +the attention
      core forward 4·L·(a·d)·s·T (Korthikanti et al. 2022 §5), × recompute_flop_scale.
    - Per-GPU step compute [node.roofline]: hardware FLOPs/N at η_matmul (efficiency.py)
      vs HBM traffic M·(3 [+1 full])·W_shard + 2·(weights+grads+optimizer shard)
      + 2·M·activations; dispatch tax per layer per pass.  Wafer-scale rows stream
      weights over the injection link instead [node.weight_streaming].
    - Plus the memory-bound non-matmul time (layernorm, dropout, residual, softmax,
      GeLU) [scenario_parts.elementwise_time_s]: elementwise_traffic_scale·(3 + full)·M
      ·(L/pp)·A / (mem_bw·mem_bw_eff), A = s·b·h·(10 + 24/tp) + 5·a·s²·b/tp bytes per layer
      (Korthikanti et al. 2022 Table 2), added to the compute time (those kernels run
      between the GEMMs), so the pipeline bubble stretches it too.  A step whose roofline
      byte term plus this time exceeds its GEMM time is reported memory-bound.
    - Pipeline stage imbalance: the compute time × (1 + pipeline_overhead_frac·(1 - 1/pp)).
    - Communication and bubble [fleet.parallel_step]: hierarchical DP all-reduce of the
      gradient over scale-up + locality-derated scale-out [data.locality], Megatron TP
      all-reduces over the scale-up link (k = 4 per layer, 6 with full recompute,
      × (1 - tp_comm_overlap)), EP all-to-all (k = 4 × (1 - ep_comm_overlap)), PP p2p,
      bubble (P-1)/(V·M+P-1) [fleet.pipeline_bubble].
    - Memory [node.training_memory, node.transformer_activation_bytes]: shared params
      sharded by tp·pp, expert params by tp·pp·ep, ZeRO over dp; 16-bit activations
      with sequence parallelism, min(pp, M) micro-batches in flight (1F1B).  Wafer-scale:
      weights stream from external memory, only activations + two layers stay on-wafer.
      CNN activations are not in the catalog and count as 0.
    - Reliability [fleet.cluster_mtbf_s, ops.young_daly_interval_s, ops.goodput]:
      checkpoint = P·(bytes + 12) bytes written at checkpoint_bw; τ = interval or
      Young-Daly; steady-state goodput 1 - δ/τ - (τ/2 + R)/M (seed 002 fix).
      time_to_train = steps·step/goodput, capped at node.UNBOUNDED = 1e18 s (float32 safety).
    - MFU [node.model_flops_utilization] = model FLOPs per step / (step·N·peak): PaLM
      App. B's steady-state definition (communication and bubble count, checkpoints and
      failures do not), so time_to_train = model FLOPs / (N·peak·MFU·goodput).
    - Energy/carbon/water [ops.sustainability]: N·TDP·active_power_frac for the whole
      run, PUE; cost [ops.tco / ops.cloud_cost].
    """
    c = gather(p, tables, eff)
    shape = batch_shape(p)
    n = safe_pos(p.n_accelerators, 1.0)
    tp, pp, ep = (safe_pos(x, 1.0) for x in (p.tp, p.pp, p.ep))
    mb, v = safe_pos(p.microbatches, 1.0), safe_pos(p.virtual_stages, 1.0)
    dp_out = n / (tp * pp * ep)
    dp = safe_pos(dp_out, 1.0)      # a group larger than the fleet is infeasible (divisibility)
    seq = jnp.where(c.is_cnn, 1.0, safe_pos(p.seq_len, 1.0))
    tokens_step = safe_pos(p.global_batch, 1.0) * seq
    steps = safe_pos(p.n_tokens, 1.0) / tokens_step
    rc = jnp.asarray(p.recompute)
    full = (rc == FULL_RECOMPUTE).astype(c.peak.dtype)
    selective = (rc == SELECTIVE_RECOMPUTE).astype(c.peak.dtype)

    # FLOPs: model (MFU) and hardware (with recomputation).
    attn_fwd_per_token = 4.0 * c.n_layers * c.attn_width * seq          # QK^T + AV, forward
    model_flop = algorithm.training_flop(c.n_eff, tokens_step) + 3.0 * attn_fwd_per_token * tokens_step
    fwd_flop = model_flop / 3.0
    extra = eff.recompute_flop_scale * (full * fwd_flop + selective * attn_fwd_per_token * tokens_step)
    flop_gpu = (model_flop + extra) / n

    # Micro-batch geometry and achieved matmul efficiency.
    micro_seqs = safe_pos(p.global_batch, 1.0) / (dp * ep * mb)
    rows = micro_seqs * seq * c.reuse_per_item
    eta = matmul_efficiency(p.efficiency, rows, eff)

    # Parameters: shared vs routed experts (MoE), per-GPU shards.
    per_expert = jnp.maximum(c.n_params - c.n_active, 0.0) / safe_pos(c.n_experts - c.top_k, 1.0)
    expert_params = jnp.where(c.n_experts > c.top_k, c.n_experts * per_expert, 0.0)
    shared_params = c.n_params - expert_params
    layers_stage = c.n_layers / pp
    act_micro = node.transformer_activation_bytes(seq, micro_seqs, c.hidden, c.n_heads, layers_stage,
                                                  tp=tp, recompute_code=rc, sequence_parallel=True)
    act = act_micro * jnp.minimum(pp, mb)
    zs = p.zero_stage
    m_shared = node.training_memory(shared_params, 0.0, weight_bytes_per_param=c.bpe,
                                    grad_bytes_per_param=c.bpe,
                                    optimizer_bytes_per_param=OPTIMIZER_BYTES_PER_PARAM,
                                    shard_factor=tp * pp, zero_stage=zs, dp=dp)
    m_expert = node.training_memory(expert_params, 0.0, weight_bytes_per_param=c.bpe,
                                    grad_bytes_per_param=c.bpe,
                                    optimizer_bytes_per_param=OPTIMIZER_BYTES_PER_PARAM,
                                    shard_factor=tp * pp * ep, zero_stage=zs, dp=dp)
    w_shard = (shared_params / (tp * pp) + expert_params / (tp * pp * ep)) * c.bpe
    states = (m_shared.weights_bytes + m_shared.gradients_bytes + m_shared.optimizer_bytes
              + m_expert.weights_bytes + m_expert.gradients_bytes + m_expert.optimizer_bytes)
    mem_gpu = jnp.where(c.wafer, act + 2.0 * w_shard / layers_stage, states + act)

    # Per-GPU compute time of one step (roofline, or weight streaming on a wafer).
    passes = 3.0 + full
    weight_traffic = mb * passes * w_shard
    bytes_gpu = weight_traffic + 2.0 * states + 2.0 * mb * act_micro
    tax = eff.dispatch_s_per_layer * layers_stage * mb * passes
    rl = node.roofline(flop_gpu, bytes_gpu, c.peak, c.mem_bw, efficiency=eta, dispatch_tax_s=tax)
    ws = node.weight_streaming(weight_traffic / layers_stage, flop_gpu / layers_stage, layers_stage,
                               c.inj_bw, c.peak, efficiency=eta, dispatch_tax_s=tax / layers_stage)
    # Memory-bound non-matmul work runs between the GEMMs: added, not max-ed (scenario_parts).
    t_elem = elementwise_time_s(c, eff, seq=seq, micro_seqs=micro_seqs, tp=tp, layers_stage=layers_stage,
                                microbatches=mb, full=full, selective=selective).t_memory_s
    t_compute = jnp.where(c.wafer, ws.latency_s, rl.latency_s) + t_elem
    # The slowest pipeline stage sets the pace (stage imbalance), bubble included.
    t_compute = t_compute * (1.0 + eff.pipeline_overhead_frac * (1.0 - 1.0 / pp))
    memory_bound = (rl.bottleneck == COMPUTE) & (rl.t_memory_s + t_elem > rl.t_compute_s)
    bottleneck = jnp.where(c.wafer, ws.bottleneck, jnp.where(memory_bound, MEMORY, rl.bottleneck))

    # Communication, bubble, step.
    act_msg = micro_seqs * seq * c.hidden * c.bpe
    step = fleet.parallel_step(
        t_compute, dp=dp, tp=tp, pp=pp, ep=ep,
        grad_bytes=(shared_params + expert_params / ep) * c.bpe, tp_act_bytes_per_layer=act_msg,
        n_layers=c.n_layers, bw_intra_bytes_per_s=c.bw_up, bw_inter_bytes_per_s=c.bw_out,
        alpha_intra_s=c.alpha_up, alpha_inter_s=c.alpha_out, n_microbatches=mb, n_virtual_stages=v,
        ep_token_bytes=act_msg * c.top_k, pp_act_bytes=act_msg, gpus_per_node=c.apn,
        overlap_frac=p.overlap,
        tp_allreduces_per_layer=(4.0 + 2.0 * full) * (1.0 - eff.tp_comm_overlap),
        ep_alltoalls_per_layer=4.0 * (1.0 - eff.ep_comm_overlap))
    bubble = fleet.pipeline_bubble(pp, mb, v)

    # Reliability and wall-clock time.
    mtbf = fleet.cluster_mtbf_s(c.mtbf, n)
    ckpt_s = c.n_params * (c.bpe + OPTIMIZER_BYTES_PER_PARAM) / safe_pos(p.checkpoint_bw, 1.0)
    tau = jnp.where(p.checkpoint_interval > 0, p.checkpoint_interval,
                    ops.young_daly_interval_s(ckpt_s, mtbf))
    good = ops.goodput(tau, ckpt_s, mtbf, recovery_s=p.recovery)
    # Capped at node.UNBOUNDED (1e18 s, the walls' finite "never"): 1e16 steps at a floored
    # goodput would otherwise overflow float32 in energy and cost products (N·P·t ~ 1e38).
    time = jnp.minimum(steps * step.step_s / good, node.UNBOUNDED)

    # Energy, carbon, water, cost.
    power = c.tdp * eff.active_power_frac
    fp = ops.sustainability(n * power, time, c.pue, c.carbon, c.wue)
    cost = fleet_cost(c, p.pricing, n, time, power, p.depreciation, p.maintenance_frac_per_year)
    mfu = node.model_flops_utilization(model_flop, step.step_s, n, c.peak)

    group = tp * pp * ep
    out = TrainingOutputs(
        time_to_train_s=time, tco_usd=cost, carbon_kg=fp.carbon_kg, energy_j=fp.energy_j,
        water_l=fp.water_l, step_time_s=step.step_s, mfu=mfu,
        scaling_efficiency=step.scaling_efficiency, goodput=good, bubble_frac=bubble,
        memory_per_accelerator_bytes=mem_gpu, n_accelerators=n, dp=dp_out,
        bottleneck=bottleneck.astype(jnp.int32))
    g = TrainingConstraints(
        memory=mem_gpu / c.capacity - 1.0,
        divisibility=jnp.abs(n - group * jnp.round(n / group)) - 0.5,
        tp_within_node=tp / c.apn - 1.0,
        pipeline_depth=pp / c.n_layers - 1.0,
        experts=ep / c.n_experts - 1.0,
        batch_split=dp * ep * mb / safe_pos(p.global_batch, 1.0) - 1.0,
        precision=jnp.where(c.has_precision, -1.0, 1.0))
    return broadcast_all(shape, out), broadcast_all(shape, g)


