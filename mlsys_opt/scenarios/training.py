"""The training scenario: a training run composed from the walls (`training`).

See the package docstring (`mlsys_opt.scenarios`) for the conventions shared with serving;
the pieces (setup, memory, compute, communication, reliability) are in `training_parts`.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array
from ..catalog.tables import Tables
from ..walls._masked import as_scenario, floor_pos
from ..walls import fleet, node, ops, parallel
from . import training_comm as tcomm
from . import training_parts as tparts
from .efficiency import DEFAULT_EFFICIENCY, Efficiency
from .parts import batch_shape, broadcast_all, materialized, fleet_cost, fleet_upfront_capex, gather, take
from .schema import RECOMPUTE

FULL_RECOMPUTE = RECOMPUTE.index("full")
SELECTIVE_RECOMPUTE = RECOMPUTE.index("selective")
OPTIMIZER_BYTES_PER_PARAM = 12.0   # fp32 master + Adam m + v (walls.parallel.OPTIMIZER_BYTES for 16-bit)


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
    ep: Array                        # expert-parallel degree, inside dp
    microbatches: Array              # M per step per pipeline; 0 = derived / auto
    virtual_stages: Array            # V
    global_batch: Array              # sequences per step
    seq_len: Array                   # tokens per sequence (ignored for CNNs)
    recompute: Array                 # int32 code into schema.RECOMPUTE
    zero_stage: Array                # 0-3 (3 = FSDP)
    overlap: Array                   # fraction of DP communication hidden (capped by its window)
    checkpoint_interval: Array       # s; 0 = Young-Daly
    checkpoint_bw: Array             # B/s
    recovery: Array                  # s
    attention: Array                 # int32 code into schema.ATTENTION (flash, eager)
    cp: Array                        # context-parallel degree
    sequence_parallel: Array         # int32 code into schema.SEQUENCE_PARALLEL (on, off)
    shard_group: Array               # ZeRO sharding group; 0 = dp
    micro_batch_size: Array          # sequences per micro-batch; 0 = derived / auto
    tp_overlap: Array                # fraction
    ep_overlap: Array                # fraction
    cp_overlap: Array                # fraction
    stage_balance: Array             # int32 code into schema.ON_OFF
    moe_capacity_factor: Array       # 0 = dropless
    moe_imbalance: Array             # >= 1
    straggler_factor: Array          # >= 1
    failure_rate_per_gpu_hour: Array  # 1/GPU-hour; 0 = catalog MTBF
    kernels: Array                   # int32 code into schema.TRAINING_PARAMS["kernels"].choices
    main_grads: Array                # int32 code into schema.TRAINING_PARAMS["main_grads"].choices (fp32, bf16)
    master_weights: Array            # int32 code into schema.TRAINING_PARAMS["master_weights"].choices
    optimizer_moments: Array         # int32 code into schema.TRAINING_PARAMS["optimizer_moments"].choices
    offload_layers: Array            # layers per stage whose activations go to host memory
    ep_dispatcher: Array = 0         # int32 code into schema.EP_DISPATCHERS (alltoall, deepep)
    moe_node_limit: Array = 0        # nodes a token's experts may span; 0 = unlimited
    cp_comm_type: Array = 0          # int32 code into schema.CP_COMM_TYPES (p2p, all_gather)
    kv_repeat: Array = 0             # int32 code into schema.ON_OFF: K,V repeated to the query heads
    param_sync: Array = 0            # int32 code into schema param_sync choices (all_gather, broadcast)
    parallel_block: Array = 0        # int32 code into schema.ON_OFF: attention and MLP in parallel (PaLM)
    fp8_scaling: Array = 0           # int32 code into schema fp8_scaling choices (delayed, dynamic)
    loss_kernel: Array = 0           # int32 code into walls.algorithm.LOSS_KERNELS (fused, torch, megatron, torch16)
    last_stage_layers: Array = 0     # decoder layers on the last pipeline rank; 0 = even split (DSV3)
    tp_comm: Array = 0               # int32 code into schema tp_comm choices (default, dtensor, async, async_ag)
    accelerators_per_node: Array = 0  # node size (scale-up domain); 0 = the catalog's (KEMPNER)
    pipeline_engine: Array = 0       # int32 code into schema pipeline_engine choices (DSPIPE)
    attention_kernel: Array = 0      # int32 code into schema attention_kernel choices (default, cudnn) (ATTNKERNEL)
    optimizer_kernel: Array = 0      # int32 code into walls.parallel.OPTIMIZER_KERNELS (fused, foreach)
    loss_parallel: Array = 0         # int32 code into schema loss_parallel choices (on, off) (MEMPEAK)
    grad_sync: Array = 0             # int32 code into schema grad_sync choices (micro_batch, last) (MEMPEAK)
    tp_embedding: Array = 0          # int32 code into schema tp_embedding choices (sharded, replicated) (KEMPNER2)
    fsdp_runtime: Array = 0          # int32 code into schema fsdp_runtime choices (default, torch_fsdp2, torch_fsdp2_root) (FSDP16, MEMEAGER)
    memory_reserve_frac: Array = 0.0  # HBM fraction held back from the memory constraint (0 = all of it)
    pp_overlap: Array = 1.0          # fraction of pipeline sends hidden (interleaved schedule only) (PPOVL)
    dp_bucket_params: Array = 0.0    # ZeRO-1 gradient bucket, parameters; 0 = Megatron-Core's default (BUCKETS)
    recompute_norm: Array = 0        # int32 code into schema.ON_OFF: RMSNorm outputs recomputed (NORMRC)
    pp_schedule: Array = 0           # int32 code into schema.PP_SCHEDULES (1f1b, dualpipe) (DUALPIPE)


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
    expected_interruptions: Array
    micro_batch_seqs: Array
    n_microbatches: Array
    upfront_capex_usd: Array         # purchase of the on-prem fleet (0 cloud); tco_usd is the run's share


class TrainingConstraints(NamedTuple):
    memory: Array            # memory / (capacity·(1 - memory_reserve_frac)) - 1
    divisibility: Array      # |N mod (tp·cp·pp)| - 1/2  (GPUs)
    tp_within_node: Array    # tp / accelerators_per_node - 1
    pipeline_depth: Array    # pp / n_layers - 1
    experts: Array           # MoE: max(ep/E - 1, |E mod ep| - ½, |dp mod ep| - ½); dense: -1
    batch_split: Array       # 1/min(b, M) - 1  (b sequences per micro-batch, M micro-batches)
    precision: Array         # -1 supported, +1 not
    context_split: Array     # |seq mod cp| - 1/2
    heads: Array             # max(tp/a - 1, |a mod tp| - ½, min(|g mod tp|, |tp mod g|) - ½); CNN -1


class _Lane(NamedTuple):
    """One micro-batch size: what the selection needs and what the outputs keep."""
    b: Array; mb: Array; mem: Array; g_mem: Array; g_split: Array; t_compute: Array
    bottleneck: Array; step: Array


def _rem(x, k):
    """|x - k·round(x/k)|: 0 when k divides x, >= 1 for integers that it does not."""
    return jnp.abs(x - k * jnp.round(x / k))


def micro_batch_geometry(p, s: tparts.Setup, b_cand):
    """(b, M_raw, M): sequences per micro-batch and micro-batches per step for a given micro_batch_size
    (wins), microbatches (b = B/(dp·M)), else the candidate b_cand; M_raw before its floor at 1."""
    b_user, m_user = p.micro_batch_size, p.microbatches
    per_dp = s.gb / s.dp
    b = jnp.where(b_user > 0, b_user, jnp.where(m_user > 0, per_dp / floor_pos(m_user, 1.0), b_cand))
    b = floor_pos(b, 1e-6)
    mb_raw = jnp.where((b_user <= 0) & (m_user > 0), m_user, per_dp / b)
    return b, mb_raw, floor_pos(mb_raw, 1.0)


def _lane(p, c, eff, s: tparts.Setup, shape, b_cand, context_parallel: bool = True, torch_tp: bool = True,
          deepspeed_engine: bool = True) -> _Lane:
    b, mb_raw, mb = micro_batch_geometry(p, s, b_cand)
    mem = tparts.memory(p, c, s, b, mb)
    cmp = tparts.compute(p, c, eff, s, mem, b, mb)
    comm = tcomm.communication(p, c, eff, s, cmp, b, mb, context_parallel=context_parallel, torch_tp=torch_tp,
                               deepspeed_engine=deepspeed_engine)
    g_split = 1.0 / floor_pos(jnp.minimum(b, mb_raw), 1e-6) - 1.0
    lane = _Lane(b, mb, mem.total_bytes, mem.total_bytes / c.capacity - 1.0, g_split, cmp.t_compute_s,
                 cmp.bottleneck, comm.step_s)
    return broadcast_all(shape, lane)


def _pick(lanes: _Lane) -> _Lane:
    """The fastest lane whose memory fits and whose split is whole; the least violating if none."""
    feasible = (lanes.g_mem <= 0) & (lanes.g_split <= 0)
    best = jnp.argmin(jnp.where(feasible, lanes.step, jnp.inf), axis=0)
    least = jnp.argmin(jnp.maximum(lanes.g_mem, lanes.g_split), axis=0)
    idx = jnp.where(jnp.any(feasible, axis=0), best, least)[None]
    return _Lane(*(jnp.take_along_axis(x, idx, axis=0)[0] for x in lanes))


def training_common(p: TrainingParams, tables: Tables, eff: Efficiency = DEFAULT_EFFICIENCY):
    """The catalog rows a training configuration reads (parts.gather), with the training parameters that
    replace catalog values: the node size where given, and the attention core's curve by kernel."""
    c = gather(p, tables, eff)
    # KEMPNER (issue 12): the cluster's node size where given (4-GPU HGX H200 nodes), else the catalog's
    apn = jnp.asarray(p.accelerators_per_node).astype(c.apn.dtype)
    c = c._replace(apn=jnp.where(apn > 0, apn, c.apn))
    # the HBM a fit may use: capacity × (1 - memory_reserve_frac) (the allocator's reserve, context, NCCL buffers)
    # floor_pos: the derivative at the default 0 is the upward one (jnp.clip splits a tie)
    c = c._replace(capacity=c.capacity * (1.0 - jnp.minimum(floor_pos(p.memory_reserve_frac, 0.0), 0.9)))
    # ATTNKERNEL (issue 12): the attention core's curve by kernel, stacked per part [n_hw, kernel, 6] on the small
    # table, then one gather per configuration (replaces gather()'s default curve, which XLA then drops)
    kern = jnp.stack((tables.hw.attention_fwdbwd_eff, tables.hw.attention_cudnn_fwdbwd_eff), axis=1)
    return c._replace(attention_fwdbwd_eff=take(kern, p.hardware, p.attention_kernel))


def _bubble_frac(s: tparts.Setup, mb):
    """The pipeline's bubble fraction: (P - 1)/(V·M + P - 1) [fleet.pipeline_bubble], or with DualPipe k/(M + k),
    k = walls.parallel.dualpipe_bubble_slots(P) (the same form: slots of bubble over slots of work + bubble)."""
    k = parallel.bubble_slots(s.pp, s.v, s.dualpipe)
    return jnp.where(s.dualpipe > 0.5, k / (floor_pos(mb, 1.0) + k), fleet.pipeline_bubble(s.pp, mb, s.v))


# --------------------------------------------------------------------------- training
@as_scenario
def training(p: TrainingParams, tables: Tables, eff: Efficiency = DEFAULT_EFFICIENCY, *,
             auto_micro_batch: bool = True, context_parallel: bool = True, torch_tp: bool = True,
             deepspeed_engine: bool = True, param_broadcast: bool = True, dualpipe: bool = True):
    """A training run: (TrainingOutputs, TrainingConstraints), every field shaped like the batch.

    auto_micro_batch (static): False when every row gives micro_batch_size or microbatches
    (> 0), which the caller knows from the values its parameters can take
    (`scenarios.static_options`); the scenario then evaluates one micro-batch geometry
    instead of the candidate set (same results for those rows, ~3× faster).  Rows that give
    neither under False are evaluated at b = 1 sequence per micro-batch.
    context_parallel (static): False when every row has cp <= 1; the context-parallel terms
    (exactly 0 at cp = 1) are then not traced (~500 fewer operations per configuration).
    torch_tp (static, ASYNCTP): False when every row has tp_comm = default; the PyTorch TP terms
    (walls.tensor_parallel, unused there) are then not traced (~300 fewer operations per configuration).
    deepspeed_engine (static): False when every row has pipeline_engine = megatron (walls.deepspeed_pipe not
    traced); param_broadcast (static): False when every row has param_sync = all_gather (walls.zero_sync not traced);
    dualpipe (static): False when every row has pp_schedule = 1f1b (the DualPipe terms not traced).

    Conventions (Megatron-Core, DeepSeek-V3): N = tp·cp·pp·dp; expert parallelism lives
    *inside* the data-parallel group (ep divides dp; experts sharded over tp·pp·ep, their
    gradients reduced over the expert-data-parallel dp/ep); a dense model ignores ep and
    never reports the experts constraint.  The rank order is tp, cp, dp ⊃ ep, pp (innermost
    first), which decides which groups fit a node's scale-up link.

    Modelling (walls named in brackets; equations on the `training_parts` functions):
    - Setup [training_parts.setup]: model FLOPs (PaLM App. B, MFU numerator), hardware
      FLOPs with the attention kernel [walls.attention: flash vs eager, causal], routing
      load, recomputation and the LM-head stage imbalance; bytes per parameter per
      precision [walls.parallel: fp32 main grads, 2 B with main_grads = bf16; 12 B optimizer].
    - Micro-batch geometry: micro_batch_size b (wins) or microbatches M (b = B/(dp·M));
      with both 0 the scenario evaluates b ∈ {1, 2, 4, 8} side by side (`jax.vmap`, one
      static set, no Python loop over configurations) and keeps the fastest whose memory
      fits and whose split is whole (the least violating one if none is).
    - Memory [training_parts.memory]: ZeRO 0-3 / hybrid sharding, activations with SP,
      CP, recomputation, attention kernel, 1F1B / interleaved in-flight micro-batches.
    - Compute [training_parts.compute]: roofline at the shape-aware matmul efficiency
      (efficiency.matmul_efficiency) + memory-bound elementwise time; the attention core at the
      part's curve for attention_kernel (default: the catalog curve; cudnn: its cuDNN SDPA curve).
    - Communication [training_comm.communication]: TP (AR or RS+AG with SP), CP ring,
      EP all-to-all, PP p2p and bubble, DP/ZeRO/FSDP collectives with their overlap
      windows, the optimizer step's pass over its shard (walls.parallel.optimizer_update_bytes);
      step × straggler_factor (fail-slow).
    - Reliability [training_parts.reliability]: Young-Daly checkpointing, goodput, the
      per-GPU failure rate or catalog MTBF, expected_interruptions.
    - MFU [node.model_flops_utilization] = model FLOPs / (step·N·peak).
    - Energy/carbon/water [ops.sustainability], cost [ops.tco / ops.cloud_cost].
    """
    c = training_common(p, tables, eff)
    shape = batch_shape(p)
    vocab = tables.model.vocab_size[jnp.asarray(p.model, jnp.int32)]
    s = tparts.setup(p, c, eff, vocab, torch_tp=torch_tp, deepspeed_engine=deepspeed_engine,
                     param_broadcast=param_broadcast, dualpipe=dualpipe)
    if auto_micro_batch:
        cands = jnp.asarray(tparts.MICRO_BATCH_CANDIDATES, c.peak.dtype)
        lanes = jax.vmap(lambda bc: _lane(p, c, eff, s, shape, bc, context_parallel, torch_tp,
                                          deepspeed_engine))(cands)
        # the candidates' step times computed once: without the hint XLA's CPU fusion recomputes the whole
        # step-time chain inside _pick's argmin reduce (not vectorised) and again for the take (values equal)
        lane = _pick(lanes._replace(step=materialized(lanes.step, p.hardware)))
    else:
        lane = _lane(p, c, eff, s, shape, jnp.asarray(tparts.MICRO_BATCH_CANDIDATES[0], c.peak.dtype),
                     context_parallel, torch_tp, deepspeed_engine)

    lane = materialized(lane, p.hardware)     # computed once for its many consumers (parts.materialized)
    rel = tparts.reliability(p, c, s, lane.step)
    power = c.tdp * eff.active_power_frac
    fp = ops.sustainability(s.n * power, rel.time_to_train_s, c.pue, c.carbon, c.wue)
    cost = fleet_cost(c, p.pricing, s.n, rel.time_to_train_s, power, p.depreciation, p.maintenance_frac_per_year)
    mfu = node.model_flops_utilization(s.model_flop, lane.step, s.n, c.peak)
    scaling = lane.t_compute / floor_pos(lane.step, 1e-30)

    out = TrainingOutputs(
        time_to_train_s=rel.time_to_train_s, tco_usd=cost, carbon_kg=fp.carbon_kg, energy_j=fp.energy_j,
        water_l=fp.water_l, step_time_s=lane.step, mfu=mfu, scaling_efficiency=scaling, goodput=rel.goodput,
        bubble_frac=_bubble_frac(s, lane.mb), memory_per_accelerator_bytes=lane.mem,
        n_accelerators=s.n, dp=s.dp_out, bottleneck=lane.bottleneck.astype(jnp.int32),
        expected_interruptions=rel.expected_interruptions, micro_batch_seqs=lane.b, n_microbatches=lane.mb,
        upfront_capex_usd=fleet_upfront_capex(c, p.pricing, s.n))

    group = s.tp * s.cp * s.pp
    ep_raw = floor_pos(p.ep, 1.0)
    experts = jnp.maximum(jnp.maximum(ep_raw / c.n_experts - 1.0, _rem(c.n_experts, ep_raw) - 0.5),
                          _rem(s.dp_out, ep_raw) - 0.5)
    heads = floor_pos(c.n_heads, 1.0)
    kv = jnp.where(c.n_kv_heads > 0, c.n_kv_heads, heads)    # space.checks.tp_splits_heads: same rule
    g_heads = jnp.maximum(jnp.maximum(s.tp / heads - 1.0, _rem(heads, s.tp) - 0.5),
                          jnp.minimum(_rem(kv, s.tp), _rem(s.tp, kv)) - 0.5)
    g = TrainingConstraints(
        memory=lane.g_mem,
        divisibility=jnp.abs(s.n - group * jnp.round(s.n / group)) - 0.5,
        tp_within_node=s.tp / c.apn - 1.0,
        pipeline_depth=s.pp / c.n_layers - 1.0,
        experts=jnp.where(s.is_moe, experts, -1.0),
        batch_split=lane.g_split,
        precision=jnp.where(c.has_precision, -1.0, 1.0),
        context_split=_rem(s.seq, s.cp) - 0.5,
        heads=jnp.where(c.is_cnn | (c.n_heads <= 0), -1.0, g_heads))
    return broadcast_all(shape, out), broadcast_all(shape, g)
