"""Communication of one training step: TP, CP, EP, PP, DP and the pipeline bubble.

Split from `training_parts` (which re-exports `Comm` and `communication`): the exposed time of
each collective for one micro-batch size b, given the step's `Setup` and `Compute`.  Equations
and sources are on `communication`; the walls are `walls.fleet`, `walls.parallel`,
`walls.attention` (context parallelism) and `walls.moe` (expert dispatch).  Branch-free,
float32-safe, jit/vmap/grad-able.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from .._types import Array
from ..walls import attention, deepspeed_pipe, fleet, moe, node, parallel, tensor_parallel
from ..walls._masked import floor_pos
from .efficiency import Efficiency
from .parts import Common, group_link_bw
from .schema import TRAINING_PARAMS
from .training_parts import ACT_BYTES, MEGATRON_ENGINE, PARALLEL_BLOCK_ON, Compute, Setup, _flash_eta

DEEPEP = TRAINING_PARAMS["ep_dispatcher"].choices.index("deepep")
ALL_GATHER_CP = TRAINING_PARAMS["cp_comm_type"].choices.index("all_gather")
TP_DEFAULT, TP_ASYNC, TP_ASYNC_AG = (TRAINING_PARAMS["tp_comm"].choices.index(x)
                                     for x in ("default", "async", "async_ag"))


class Comm(NamedTuple):
    t_tp_s: Array; t_cp_s: Array; t_ep_s: Array; t_pp_s: Array
    t_dp_s: Array; t_dp_exposed_s: Array; t_bubble_s: Array; step_s: Array


def communication(p, c: Common, eff: Efficiency, s: Setup, cmp: Compute, b, mb, *,
                  context_parallel: bool = True, torch_tp: bool = True, deepspeed_engine: bool = True) -> Comm:
    """Exposed communication and bubble of one step (Megatron rank order tp, cp, dp ⊃ ep, pp).

    A group runs on the scale-up link while its span fits a node (G accelerators), else
    per-GPU scale-out.  Per micro-batch and layer of a stage (×M·L/pp):
    - TP [fleet.hierarchical_allreduce]: 4 (+2 full recompute, +1 per-op SAC: its two
      recomputed SP all-gathers) all-reduces — or, with
      sequence parallelism, as many reduce-scatter + all-gather pairs, the same time
      (Korthikanti et al. 2022 §4.2.2) — of b·s_loc·h·2 bytes; hidden: tp_overlap (only
      with SP; Megatron-LM --tp-comm-overlap), combined with efficiency.tp_comm_overlap; × ½ with
      parallel_block = on (attention and MLP share the input all-gather and the output reduce-scatter).
      tp_comm (with SP; ASYNCTP) [walls.tensor_parallel]: dtensor (PyTorch DTensor SequenceParallel) = the
      same collectives, all-gathers in float8 with float8 GEMMs, + the torch.cat layout copies
      (dtensor_layout_copy_bytes / mem_bw); async (PyTorch async TP, tp inside one scale-up domain) =
      async_tp_layer_s: the forward's (and re-run forward's) collectives decomposed into tp chunks behind
      their GEMMs (block_gemm_s at peak·η_gemm) + symm_mem_fixed_s, the backward's and per-op SAC's as
      dtensor runs them; async_ag (ASYNCTP2) = the same with the forward reduce-scatters unfused
      (rs_fused = 0, + their torch.cat copies); × tp_block × (1 - hidden) as above.
    - CP [walls.attention]: K,V of h_x = cp_exchange_heads heads per rank (n_heads/tp with
      kv_repeat).  p2p: ring sends (ring_attention_bytes), exposed beyond the layer's attention
      time at the FlashAttention rate [walls.parallel.exposed]; all_gather (PyTorch
      context_parallel): cp_allgather_exposed_s (one all-gather behind the first sub-SDPA, fp32
      dK/dV after each backward step, the forward again under full recomputation) + the fp32
      merge traffic cp_merge_bytes / mem_bw; cp_overlap is the fraction either tries to hide; p2p
      also pays Transformer Engine's K,V packing, output merges and dQ, dK,dV accumulations
      (cp_p2p_bookkeeping_bytes / mem_bw, exposed).
    - EP [walls.moe.expert_dispatch]: 4 (+2) dispatches/combines (fwd, bwd) of B = b·s_loc/t'·h·2·λ
      bytes, the NIC and NVLink shares at once: top_k copies per token (ep_dispatcher = alltoall)
      or one per distinct remote node, then NVLink forwarding (deepep), moe_node_limit nodes at
      most; ep ranks tp·cp apart, clip(G/(tp·cp), 1, ep) per node; deepep's NIC rate is
      walls.moe.DEEPEP_RDMA_OF_NCCL × bw_out (DeepEP's measured normal-kernel RDMA payload).  Overlap (ep_overlap,
      combined with efficiency.ep_comm_overlap) only for chunks paired with another's compute
      [walls.moe.ep_overlap_partner_frac], exposed = (1 - o)·t + max(f·o·t, o·t - W)
      [walls.moe.overlapped_exposed: the comm kernels hold f = 20/132 of the SMs], W = the stage's MoE
      layers' compute; the slower of the critical stage and a middle rank with s.ep_alt_layers MoE layers
      [walls.moe.ep_stage_exposed] (DSV3EP); dense 0.
    - PP: 2·M·V sends of b·s_loc·h·2/t bytes per rank (the SP shard; without SP Megatron's scatter/gather,
      Narayanan et al. 2021 §4.1, + the all-gather of the t shares over NVLink); bubble
      (t_compute + exposed TP + CP + EP)·(pp-1)/(V·M): pp - 1 micro-batch slots of a stage's
      forward + backward, the per-micro-batch comm on its critical path included; pp_schedule = dualpipe
      (DUALPIPE): (pp/2 - 1)·2/3 slots [walls.parallel.dualpipe_bubble_slots], and every chunk's sends and
      all-to-all sit beside another chunk's compute (partner = 1).
    - Scale-up rates: all-reduces (TP without SP, DP ZeRO-0) at c.bw_up (NVLink SHARP where the
      part has it); reduce-scatter / all-gather (TP with SP, ZeRO/FSDP), all-to-all (EP) and
      send/recv (CP ring, PP) at c.bw_up_ring (NVLS reduces in-switch for all-reduce only).
    - DP [walls.parallel.data_parallel_comm]: ZeRO/FSDP/hybrid volumes of the shared shard
      over dp·cp and of the expert shard over dp·cp/ep, exposed beyond their window with `overlap`, and at
      least their tail (TAIL: the last bucket's reduce-scatter and the first bucket's all-gather, which no
      compute follows or precedes; ZeRO-3 once per micro-batch);
      CP, EP and DP together hide at most the compute + exposed TP time (the NIC's DP traffic runs on
      its own stream while the GPU computes or waits on NVLink TP collectives; the excess is exposed);
      param_sync = broadcast (InternEvo) adds the parameter broadcasts (bytes and NCCL latency), exposed
      [setup: walls.zero_sync.broadcast_params_s].
    - Optimizer step: one fused pass over the rank's optimizer shard after the reduction, exposed
      (s.optimizer_update_s = walls.parallel.optimizer_update_bytes / HBM bandwidth).
    step = straggler_factor·(compute + bubble + TP + CP + EP + PP + DP exposed + optimizer step).
    """
    g_node = c.apn
    tpf, cp, pp, ep, dp = s.tp, s.cp, s.pp, s.ep, s.dp
    layers_mb = mb * s.layers_stage
    ebytes = ACT_BYTES * s.act_scale
    act_msg = b * s.s_loc * c.hidden * ebytes
    k = 4.0 + 2.0 * s.full + s.op    # per-op SAC reruns the two SP all-gathers (~ one all-reduce)

    # send/recv (CP ring, PP) and all-gathers get the scale-up link's ring rate, not NVLS's all-reduce rate;
    # MESH: on an all-to-all wired node, the share of the links a group of `group` in-node ranks drives
    def link(in_node, group):
        return (jnp.where(in_node, group_link_bw(c, c.bw_up_ring, group), c.bw_out),
                jnp.where(in_node, c.alpha_up, c.alpha_out))

    tp_local = jnp.minimum(tpf, g_node)
    # SP's reduce-scatter + all-gather run as rings (bw_up_ring); the all-reduce without SP may use NVLS (bw_up)
    bw_tp = group_link_bw(c, jnp.where(s.sp > 0, c.bw_up_ring, c.bw_up), tp_local)
    t_tp_one = fleet.hierarchical_allreduce(act_msg, tp_local, tpf / tp_local, bw_tp, c.alpha_up,
                                            c.bw_out, c.alpha_out)
    tp_hidden = 1.0 - (1.0 - s.sp * p.tp_overlap) * (1.0 - eff.tp_comm_overlap)
    # parallel block (MAXTEXT, coord.md): attention and MLP share one input all-gather and one output
    # reduce-scatter (XLA CSE; ReduceScatterReassociate rs(a) + rs(b) -> rs(a + b)): half the collectives
    tp_block = jnp.where(jnp.asarray(p.parallel_block) == PARALLEL_BLOCK_ON, 0.5, 1.0)
    t_tp = layers_mb * k * tp_block * t_tp_one * (1.0 - tp_hidden)
    # ASYNCTP: tp_comm = dtensor / async (PyTorch SP; walls.tensor_parallel).  One RS = half the ring all-reduce;
    # the all-gathers move float8 when the GEMMs do (torchao Float8ColwiseParallel casts before gathering)
    # torch_tp (static): False when every row has tp_comm = default (scenarios.static_options): not traced
    if torch_tp:
        t_rs = 0.5 * t_tp_one
        e_ag = jnp.minimum(c.bpe, ebytes)
        t_ag = t_rs * e_ag / ebytes
        n_act = b * s.s_loc * c.hidden
        fwd_passes = 1.0 + s.full
        copies = tensor_parallel.dtensor_layout_copy_bytes(n_act, e_ag, ebytes, tpf, forward_passes=fwd_passes,
                                                           op_passes=s.op)
        t_dtensor = k * t_tp_one + (t_ag - t_rs) * (2.0 * fwd_passes + 2.0 * s.op + 2.0) + copies / c.mem_bw
        # GEMM rate of the windows: peak·η_gemm when the step is compute-bound, else the roofline's own (FLOP per
        # second of the non-elementwise compute time: the windows follow the compute time, so more efficiency
        # never lengthens a step); and never so slow that the windows together exceed that time (the Llama
        # shapes overcount a non-gated MLP)
        t_kernels = floor_pos(cmp.t_compute_s - cmp.t_elem_s, 1e-30)
        gemm_rate = jnp.where(cmp.bottleneck == node.COMPUTE, c.peak * floor_pos(cmp.eta_gemm, 1e-6),
                              s.flop_gpu / t_kernels)
        widths = fwd_passes * (2.0 * c.attn_width + 2.0 * s.kv_width + 3.0 * c.ffn_dim)
        gemm_rate = jnp.maximum(gemm_rate, 2.0 * b * s.s_loc * c.hidden / tpf * widths * layers_mb / t_kernels)
        gemms = tensor_parallel.block_gemm_s(b * s.s_loc, c.hidden, c.attn_width, s.kv_width, c.ffn_dim, tpf,
                                             gemm_rate)
        f_ag, f_rs = tensor_parallel.symm_mem_fixed_s(n_act * e_ag, n_act * ebytes, tpf, c.mem_bw, c.alpha_up)
        mode = jnp.asarray(p.tp_comm)
        # async_ag (ASYNCTP2): only the all-gather -> matmul fusions; forward RS + its cat copy as DTensor
        t_async = tensor_parallel.async_tp_layer_s(t_ag, t_rs, gemms, tpf, f_ag, f_rs, forward_passes=fwd_passes,
                                                   op_passes=s.op, ag_copy_s=2.0 * n_act * e_ag / c.mem_bw,
                                                   rs_fused=jnp.where(mode == TP_ASYNC_AG, 0.0, 1.0),
                                                   rs_copy_s=2.0 * n_act * ebytes / c.mem_bw)
        # symmetric memory needs peer access: async TP only inside one scale-up domain (beyond: DTensor's NCCL path)
        is_async = (mode == TP_ASYNC) | (mode == TP_ASYNC_AG)
        t_torch = layers_mb * tp_block * (1.0 - tp_hidden) * jnp.where(is_async & (tpf <= g_node),
                                                                       t_async, t_dtensor)
        t_tp = jnp.where((mode != TP_DEFAULT) & (s.sp > 0) & ~c.is_cnn, t_torch, t_tp)

    if context_parallel:
        # CP [walls.attention]: K,V heads exchanged (kv_repeat: repeated to the query heads before SDPA)
        bw_cp, a_cp = link(tpf * cp <= g_node, cp)
        hx = attention.cp_exchange_heads(c.n_heads, c.n_kv_heads, tpf, p.kv_repeat)
        cp_bytes = attention.ring_attention_bytes(s.seq, b, hx, c.head_dim, cp, bytes_per_element=ebytes)
        # full recomputation re-runs the forward ring: (3 + full)/3 of the forward + backward sends
        t_cp_layer = (1.0 + s.full / 3.0) * (cp_bytes / bw_cp + 3.0 * (cp - 1.0) * a_cp)
        # The ring hides behind the attention kernels: their time at the FlashAttention rate (compute()'s),
        # at most the stage's compute time.  p2p: each send behind one step, the whole layer's attention.
        rate = jnp.minimum(c.peak_16bit, c.peak) * floor_pos(_flash_eta(c, s), 1e-6)
        per_rank = b / (cp * tpf)
        t_fwd = s.attn_fwd_seq_layer * per_rank / rate
        t_bwd = s.attn_bwd_seq_layer * per_rank / rate
        t_attn_layer = jnp.minimum(t_fwd + t_bwd, cmp.t_compute_s / layers_mb)
        t_p2p = parallel.exposed(t_cp_layer, p.cp_overlap, t_attn_layer)
        # all_gather (PyTorch context_parallel): one all-gather behind the first sub-SDPA, fp32 dK/dV passed
        # after each backward step, the forward re-run under full recomputation; + the fp32 merges' HBM traffic
        chunk = 2.0 * b * (s.seq / cp) * hx * c.head_dim * ebytes
        t_cp_ag = attention.cp_allgather_exposed_s(chunk, cp, bw_cp, a_cp, t_fwd, t_bwd, overlap=p.cp_overlap,
                                                   forward_passes=1.0 + s.full)
        tok = b * (s.seq / cp) * c.head_dim
        merge = attention.cp_merge_bytes(tok * c.n_heads / tpf, tok * hx, cp,
                                         forward_passes=1.0 + s.full) / c.mem_bw
        # LONGCP: p2p = Transformer Engine's ring (Megatron-Core/NeMo): the K,V packing, output merges and
        # dQ, dK,dV accumulations in the activation dtype, memory-bound and on the path [cp_p2p_bookkeeping_bytes]
        book = attention.cp_p2p_bookkeeping_bytes(tok * c.n_heads / tpf, tok * hx, cp, forward_passes=1.0 + s.full,
                                                  bytes_per_element=ebytes) / c.mem_bw
        all_gather = jnp.asarray(p.cp_comm_type) == ALL_GATHER_CP
        t_cp = layers_mb * jnp.where(all_gather, t_cp_ag + merge, t_p2p + book)
        ag_total = jnp.where(cp > 1.0, (2.0 + s.full) * (cp - 1.0) * (chunk / bw_cp + a_cp)
                             + cp * (2.0 * chunk / bw_cp + a_cp), 0.0)
        cp_hidden = layers_mb * jnp.where(all_gather, ag_total - t_cp_ag, t_cp_layer - t_p2p)
    else:   # every row has cp = 1 (the caller knows: scenarios.static_options): the CP terms are 0 exactly
        t_cp = cp_hidden = jnp.zeros_like(cmp.t_compute_s)

    # EP [walls.moe]: ranks tp·cp apart, g of them per node; dispatch/combine on NIC and NVLink at once
    g_ep = jnp.clip(g_node / (tpf * cp), 1.0, ep)
    dedup = jnp.where(jnp.asarray(p.ep_dispatcher) == DEEPEP, 1.0, 0.0)
    tok_bytes = b * s.s_loc / s.t_sp * c.hidden * ebytes * s.load
    # DSV3EP: DeepEP's normal kernels move DEEPEP_RDMA_OF_NCCL of NCCL's NIC rate (DeepEP legacy README, EP 32)
    bw_ep_out = c.bw_out * (1.0 - dedup * (1.0 - moe.DEEPEP_RDMA_OF_NCCL))
    t_ep_one = moe.expert_dispatch(tok_bytes, c.top_k, ep, g_ep, group_link_bw(c, c.bw_up_ring, g_ep), c.alpha_up,
                                   bw_ep_out, c.alpha_out,
                                   node_limit=p.moe_node_limit, dedup=dedup)
    ep_hidden = 1.0 - (1.0 - p.ep_overlap) * (1.0 - eff.ep_comm_overlap)
    partner = moe.ep_overlap_partner_frac(pp, s.v, mb)      # chunks with another chunk's compute beside them
    # DUALPIPE: every chunk runs beside another's (forward and backward chunk pairs, DeepSeek-V3 §3.2.1: "both
    # all-to-all and PP communication can be fully hidden")
    # (static dualpipe off: s.dualpipe is the constant 0.0, a select XLA folds away)
    partner = jnp.where(s.dualpipe > 0.5, 1.0, partner)
    t_layer = jnp.where(s.is_moe, mb * k * t_ep_one, 0.0)                # one MoE layer's dispatch/combine, step
    t_ep_all = t_layer * s.ep_layers_stage                               # DSV3: MoE layers of the stage
    # DSV3EP: hidden only behind the MoE layers' compute; the slowest of the critical and a middle stage
    t_ep = moe.ep_stage_exposed(t_layer, cmp.t_compute_s, s.ep_layers_stage, s.ep_layer_frac, ep_hidden * partner,
                                partner, alt_layers=s.ep_alt_layers)

    bw_pp, a_pp = link(tpf * cp * dp < g_node, 2.0)        # a send/recv: one link
    # each TP rank sends its 1/t share: the sequence-parallel shard, or without SP Megatron's scatter/gather
    # (Narayanan et al. 2021 §4.1: split over the t ranks for the network, all-gathered over NVLink after)
    bw_tp_ring = group_link_bw(c, c.bw_up_ring, tp_local)
    pp_gather = (1.0 - s.sp) * parallel.reduce_scatter(act_msg, tp_local, bw_tp_ring, c.alpha_up)
    t_pp = jnp.where(pp > 1.0, 2.0 * mb * s.v * (a_pp + act_msg / tpf / bw_pp + pp_gather), 0.0)
    # PPOVL: Megatron's interleaved schedule posts a chunk's sends and receives asynchronously and waits for
    # them a chunk later (overlap_p2p_comm; forced off without virtual stages), so the steady 1F1B phase's
    # transfers (the `partner` share of the chunks) hide behind the stage's busy time (compute + exposed TP, the
    # DP window's: the sends run on a stream of their own); warm-up and flush wait.  What PP, DP, CP and EP hide
    # together is capped by that busy time below (`overflow`), so faster compute never lengthens a step
    t_pp_all = t_pp
    pp_ovl = (s.v > 1.0) | (s.dualpipe > 0.5)
    t_pp = parallel.exposed(t_pp_all, jnp.where(pp_ovl, p.pp_overlap, 0.0) * partner, cmp.t_compute_s + t_tp)
    pp_hidden = t_pp_all - t_pp
    # DSPIPE (issue 12): DeepSpeed's PipelineEngine: a step's receive and send block one after the other (4 transfers
    # of meta + 1/t share per micro-batch) and 3 PartitionedTensor all-gathers whatever SP [walls.deepspeed_pipe]
    # (static deepspeed_engine: traced only when some row has pipeline_engine != megatron)
    dp_overlap = p.overlap
    if deepspeed_engine:
        ds_engine = jnp.asarray(p.pipeline_engine) != MEGATRON_ENGINE
        t_pp_ds = deepspeed_pipe.p2p_time_s(act_msg / tpf, mb * s.v, a_pp, bw_pp,
                                            parallel.reduce_scatter(act_msg, tp_local, bw_tp_ring, c.alpha_up))
        t_pp = jnp.where(ds_engine & (pp > 1.0), t_pp_ds, t_pp)
        pp_hidden = jnp.where(ds_engine, 0.0, pp_hidden)
        dp_overlap = jnp.where(ds_engine, 0.0, dp_overlap)
    # the bubble is pp - 1 micro-batch slots of a stage's forward + backward, exposed per-micro-batch
    # communication (TP, CP, EP: sequential with the stage's kernels) included
    # DUALPIPE: (pp/2 - 1)·2/3 slots, whatever V [walls.parallel.bubble_slots]
    t_bubble = (cmp.t_compute_s + t_tp + t_cp + t_ep) * parallel.bubble_slots(pp, s.v, s.dualpipe) / mb

    # DP volumes from setup [walls.parallel.data_parallel_times]; window as data_parallel_comm's
    t_dp = s.dp_fixed_s + mb * s.dp_per_microbatch_s
    # the window is the GPU's busy time, compute + exposed TP: the DP collectives run on the NIC on a stream of
    # their own while the GPU computes or waits on its NVLink TP collectives (so faster GEMMs never lengthen a step)
    busy = cmp.t_compute_s + t_tp
    window = jnp.where(s.zs > 2.5, busy, busy / mb)
    # DSPIPE: DeepSpeed's PipelineEngine reduces after the flush (enable_backward_allreduce = False): nothing hidden
    t_dp_exp = parallel.exposed(t_dp, dp_overlap, window)
    # TAIL: the last gradient bucket's reduce-scatter and the first parameter bucket's all-gather (ZeRO-3: per
    # micro-batch) have no compute to hide behind [walls.parallel.data_parallel_collectives]
    tail = jnp.minimum(s.dp_tail_fixed_s + mb * s.dp_tail_per_microbatch_s, t_dp)
    t_dp_exp = jnp.maximum(t_dp_exp, tail)
    # CP, EP, PP and DP hide behind the same busy time: what they hide together is at most compute + exposed TP.
    overflow = jnp.maximum(cp_hidden + (t_ep_all - t_ep) + pp_hidden + t_dp - t_dp_exp - busy, 0.0)
    # param_sync = broadcast: the broadcasts' latency, waited before the next forward (exposed) [setup]
    t_dp_exp = t_dp_exp + overflow + s.dp_sync_s
    healthy = cmp.t_compute_s + t_bubble + t_tp + t_cp + t_ep + t_pp + t_dp_exp + s.optimizer_update_s
    step = jnp.minimum(floor_pos(p.straggler_factor, 1.0) * healthy, node.UNBOUNDED)
    return Comm(t_tp, t_cp, t_ep, t_pp, t_dp + s.dp_sync_s, t_dp_exp, t_bubble, step)


__all__ = ["Comm", "communication"]
