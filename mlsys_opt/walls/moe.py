"""Expert-parallel (MoE) communication as the training frameworks run it: dispatch/combine and its overlap.

The flat ``fleet.all_to_all`` charges every one of a token's top-k copies to one link.  Real
MoE dispatchers are hierarchical: a GPU's copies for ranks of its own node go over the
scale-up link (NVLink) and the rest over its scale-out NIC, concurrently; DeepEP / HybridEP
(Megatron-Core ``moe_token_dispatcher_type = "flex"``) also send a token *once* per remote
node (RDMA to the same-index GPU there, which forwards it over NVLink to the target ranks) and
once per target rank; node-limited routing (DeepSeek-V3: M = 4 nodes per token) caps the
nodes a token reaches.  Overlap with the other micro-batch's compute (Megatron-Core
``overlap_moe_expert_parallel_comm``) hides the rest, minus the SMs the comm kernels take.

Conventions: pure ``jax.numpy``; SI floats (bytes, s, B/s), scalars or arrays broadcasting to
``[...]``; knobs keyword-only; jit/vmap/grad-able; branch-free.  Counts floored at 1,
bandwidths at 1 B/s.  Routing is uniform over the eligible experts (force-balanced
benchmarks: Megatron-Core ``moe_router_force_load_balancing`` replaces the router logits by
random ones before the group-limited top-k), experts spread evenly over the EP ranks; a
token's k experts are counted as k independent uniform picks (with replacement: the exact
without-replacement count differs by < 1 % for DeepSeek-V3's 8 of 256).

Sources: DeepSeek-AI 2024, DeepSeek-V3 Technical Report (arXiv:2412.19437) §3.2.2
(node-limited routing, IB then NVLink forwarding, 20 of 132 SMs for communication);
deepseek-ai/DeepEP README and docs/legacy.md (bottleneck bandwidths, tests/legacy/test_internode.py
counts RDMA bytes per (token, node) pair including the local node); Megatron-Core router
(group-limited top-k, force load balancing), token dispatchers (alltoall: one copy per
(token, expert); flex: DeepEP / HybridEP), pipeline_parallel/schedules.py (interleaved 1F1B
warm-up count).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from mlsys_opt._types import Array
from mlsys_opt.walls._masked import any_nan, floor_pos, nan_where, nonneg

__all__ = ["DEEPEP_RDMA_OF_NCCL", "EP_COMM_SM_FRAC", "DispatchCopies", "dispatch_copies", "ep_overlap_partner_frac",
           "ep_stage_exposed", "expert_dispatch", "overlapped_exposed"]

# Share of the SMs the dispatch/combine kernels hold while they overlap compute: DeepSeek-V3 §3.2.2
# "only 20 SMs are sufficient to fully utilize the bandwidths of IB and NVLink" of the H800's 132;
# Megatron-Core's moe_deepep_num_sms defaults to 20 (on a 148-SM B200: 0.135).  Not fitted.
EP_COMM_SM_FRAC = 20.0 / 132.0

# DeepEP (V1, NVSHMEM; Megatron-Core's flex dispatcher with moe_flex_dispatcher_backend = "deepep") normal
# kernels' RDMA payload rate over NCCL's large all-reduce bus bandwidth on the same 400 Gb/s NIC (DSV3EP, issue 12).
# DeepEP docs/legacy.md (= README at tag v1.2.1), "Normal kernels with NVLink and RDMA forwarding", H800 + CX7
# 400 Gb/s: internode EP 32 dispatch 58 GB/s, combine 57 GB/s (RDMA), counted by tests/test_internode.py over
# every (token, node) pair, its own node included (num_rdma_token_sent); at EP 32 = 4 nodes with 4 groups
# 3 of 4 of those pairs cross the NIC, so the NIC carries 0.75·(58 + 57)/2 = 43.1 GB/s of payload.  NCCL
# all-reduce bus bandwidth on 400 Gb RDMA: 48 GB/s (NVIDIA GTC24 S62129, catalog/achievable.toml
# [fabrics.ib_ndr]).  43.125/48 = 0.898 (EP 64: 0.875·(51 + 50)/2 = 44.2 GB/s, 0.92).  Not fitted.
DEEPEP_RDMA_OF_NCCL = 0.75 * (58.0 + 57.0) / 2.0 / 48.0

_BW_FLOOR = 1.0
_TINY = 1e-30


class DispatchCopies(NamedTuple):
    """Copies of one token a GPU sends per dispatch (dimensionless, ``[...]``)."""
    inter_copies: Array   # over the scale-out NIC (to other nodes)
    intra_copies: Array   # over the scale-up link (NVLink, inside the node)


def _hit(n_bins, k):
    """P(a given bin of n receives at least one of k uniform picks) = 1 - (1 - 1/n)^k."""
    miss = floor_pos(1.0 - 1.0 / n_bins, _TINY)        # n = 1: every pick lands in the one bin
    return 1.0 - jnp.exp(k * jnp.log(miss))


def dispatch_copies(top_k: Array, ep: Array, ranks_per_node: Array, *, node_limit: Array = 0.0,
                    dedup: Array = 1.0) -> DispatchCopies:
    """Copies of one token a GPU sends per dispatch (= receives per combine): (over the NIC, over NVLink).

    g = clip(ranks_per_node, 1, ep) EP ranks share a node, n = ep/g nodes, m = min(node_limit, n)
    eligible nodes (node_limit 0 = all n); k = top_k picks uniform over the m·g eligible ranks.
    With dedup = 1 (DeepEP / HybridEP: one RDMA copy per distinct remote node, then one NVLink
    copy per distinct target rank other than itself)::

        inter = m·(1 - 1/n)·(1 - (1 - 1/m)^k)          distinct remote nodes
        intra = m·(g - 1/n)·(1 - (1 - 1/(m·g))^k)      distinct target ranks other than its own

    With dedup = 0 (Megatron-Core ``alltoall`` dispatcher / NCCL: one copy per (token, expert),
    node limit irrelevant to the volume): inter = k·(1 - 1/n), intra = k·(g - 1)/ep.
    dedup in between blends the two linearly.

    Args:
      top_k: k, experts per token, ``[...]``.
      ep: expert-parallel ranks (>= 1), ``[...]``.
      ranks_per_node: EP ranks inside one scale-up domain (>= 1), ``[...]``.
      node_limit: M, nodes a token may reach (0 = unlimited), ``[...]``.
      dedup: 1 = DeepEP-style deduplicated dispatch, 0 = one copy per (token, expert), ``[...]``.

    Returns:
      (inter, intra) copies per token, dimensionless, each ``[...]``.

    Source: DeepSeek-V3 report §3.2.2; DeepEP README (tests/legacy/test_internode.py).

    Worked example (DeepEP's benchmark topologies, k = 8, 8 GPUs per node, up to 4 groups = nodes):
    EP 8x2: inter = 2·½·(1 - ½^8) = 0.996, remote share of the (token, node) pairs DeepEP counts
    (2·0.996) ½, so a 45 GB/s NIC shows 90 GB/s "logical" (README V2: 90); EP 8x4: inter = 3·0.8999
    = 2.700 of 3.600 pairs, 45 GB/s -> 60 GB/s (README: 61); EP 8x8, M = 4: inter = 4·⅞·0.8999 =
    3.150 of 3.600 -> 51.4 GB/s (legacy.md V1: 51).
    """
    top_k, ep, ranks_per_node, node_limit, dedup = nonneg(top_k, ep, ranks_per_node, node_limit, dedup,
                                                          broadcast=False)
    ep = floor_pos(ep, 1.0)
    g = jnp.clip(ranks_per_node, 1.0, ep)
    n = ep / g
    m = jnp.where(node_limit > 0, jnp.clip(node_limit, 1.0, n), n)
    flat_inter = top_k * (1.0 - 1.0 / n)
    flat_intra = top_k * (g - 1.0) / ep
    dd_inter = m * (1.0 - 1.0 / n) * _hit(m, top_k)
    dd_intra = m * (g - 1.0 / n) * _hit(m * g, top_k)
    out = (flat_inter + dedup * (dd_inter - flat_inter), flat_intra + dedup * (dd_intra - flat_intra))
    return DispatchCopies(*(nan_where(any_nan(ep, ranks_per_node, node_limit), x) for x in out))


def expert_dispatch(token_bytes: Array, top_k: Array, ep: Array, ranks_per_node: Array,
                    bw_intra_bytes_per_s: Array, alpha_intra_s: Array,
                    bw_inter_bytes_per_s: Array, alpha_inter_s: Array, *,
                    node_limit: Array = 0.0, dedup: Array = 1.0) -> Array:
    """Time of one MoE dispatch (or combine) per GPU, hierarchical: NIC and NVLink concurrently.

    T = max(B·c_e/β_e, B·c_i/β_i) + (n - 1)·α_e + (g - 1)·α_i,   (c_e, c_i) = dispatch_copies(...)

    B = token_bytes (the GPU's tokens × hidden × bytes per element, × any routing load),
    n = ep/g nodes, g = clip(ranks_per_node, 1, ep).  DeepEP pipelines the RDMA sends and the
    NVLink forwarding (its tables give one "bottleneck bandwidth"), NCCL's all-to-all runs all
    peers at once: the slower link sets the time.  With every rank in one node (n = 1) and no
    dedup this is fleet.all_to_all(k·B, ep) on the scale-up link; with one rank per node,
    fleet.all_to_all(k·B, ep) on the NIC.

    Args:
      token_bytes: B, bytes of the GPU's tokens (one copy each), ``[...]``.
      top_k, ep, ranks_per_node, node_limit, dedup: as dispatch_copies.
      bw_intra_bytes_per_s, alpha_intra_s: scale-up (NVLink) per-GPU β and α.
      bw_inter_bytes_per_s, alpha_inter_s: scale-out (NIC) per-GPU β and α.

    Returns:
      T, s, ``[...]``.

    Source: DeepSeek-V3 report §3.2.2; DeepEP README; Megatron-Core token dispatchers.

    Worked example: DeepSeek-V3 on DGX B200, EP 32 = 4 nodes × 8, one micro-batch of 4096 tokens,
    h = 7168, BF16 (B = 58.72 MB), β_e = 48 GB/s, β_i = 846 GB/s, α = 0: deduplicated
    c_e = 2.700 -> 3.303 ms (NVLink c_i = 6.953 -> 0.483 ms); one copy per expert c_e = 6 ->
    7.34 ms; the flat all_to_all over the NIC 8·31/32 = 7.75 copies -> 9.48 ms.
    """
    token_bytes, bw_intra_bytes_per_s, alpha_intra_s, bw_inter_bytes_per_s, alpha_inter_s = nonneg(
        token_bytes, bw_intra_bytes_per_s, alpha_intra_s, bw_inter_bytes_per_s, alpha_inter_s, broadcast=False)
    inter, intra = dispatch_copies(top_k, ep, ranks_per_node, node_limit=node_limit, dedup=dedup)
    ep_f = floor_pos(ep, 1.0)
    g = jnp.clip(ranks_per_node, 1.0, ep_f)
    t_bw = jnp.maximum(token_bytes * inter / floor_pos(bw_inter_bytes_per_s, _BW_FLOOR),
                       token_bytes * intra / floor_pos(bw_intra_bytes_per_s, _BW_FLOOR))
    return t_bw + (ep_f / g - 1.0) * alpha_inter_s + (g - 1.0) * alpha_intra_s


def ep_overlap_partner_frac(pp: Array, virtual_stages: Array, microbatches: Array) -> Array:
    """Share of a pipeline rank's micro-batch chunks whose EP comm has another chunk's compute to hide behind.

    Megatron-Core's EP all-to-all overlap (``overlap_moe_expert_parallel_comm``, the combined
    1F1B schedule) pairs the forward of one micro-batch chunk with the backward of another;
    the warm-up forwards and cool-down backwards run alone.  Rank 0 warms up
    w = 2·(pp - 1) + (V - 1)·pp chunks with interleaving (V > 1), pp - 1 without, at least 1
    (pp = 1: the first forward and the last backward have no partner), of V·M::

        partner = clip(1 - w/(V·M), 0, 1)

    Args:
      pp: pipeline stages, virtual_stages: V, microbatches: M (counts, >= 1), ``[...]``.

    Returns:
      fraction in [0, 1], ``[...]``.

    Source: Megatron-Core pipeline_parallel/schedules.py (forward_backward_pipelining_with_interleaving:
    num_warmup_microbatches = (pp - rank - 1)·2 + (V - 1)·microbatch_group_size_per_vp_stage, default pp).

    Worked example: pp = 8, V = 2, M = 128 (DeepSeek-V3 on B200): w = 14 + 8 = 22, 1 - 22/256 = 0.914.
    """
    pp, v, m = nonneg(pp, virtual_stages, microbatches, broadcast=False)
    pp, v, m = floor_pos(pp, 1.0), floor_pos(v, 1.0), floor_pos(m, 1.0)
    w = jnp.where(v > 1.0, 2.0 * (pp - 1.0) + (v - 1.0) * pp, pp - 1.0)
    return jnp.clip(1.0 - jnp.maximum(w, 1.0) / (v * m), 0.0, 1.0)


def overlapped_exposed(t_comm_s: Array, overlap: Array, window_s: Array,
                       sm_frac: Array = EP_COMM_SM_FRAC) -> Array:
    """Step time a communication adds when a share of it runs concurrently with compute, s.

    The overlapped part o·t runs beside W seconds of compute that then has 1 - f of the SMs
    (the comm kernels hold f), so that region takes max(W + f·o·t, o·t); the rest runs alone::

        exposed = (1 - o)·t + max(f·o·t, o·t - W)

    With f = 0 this is walls.parallel.exposed, max((1 - o)·t, t - W).

    Args:
      t_comm_s: t, the communication's time alone, s, ``[...]``.
      overlap: o, fraction run concurrently with compute (0-1), ``[...]``.
      window_s: W, compute time it can overlap, s, ``[...]``.
      sm_frac: f, share of the SMs the comm kernels take (default EP_COMM_SM_FRAC), ``[...]``.

    Returns:
      exposed time, s, ``[...]``.

    Source: DeepSeek-V3 report §3.2.2 (communication kernels on 20 of 132 SMs while computation
    proceeds); Megatron-Core overlap_moe_expert_parallel_comm.

    Worked example: t = 13 s, o = 0.914, W = 11.33 s, f = 20/132: 1.118 + max(1.800, 0.552) = 2.918 s.
    """
    t, o, w, f = nonneg(t_comm_s, overlap, window_s, sm_frac, broadcast=False)
    o = jnp.clip(o, 0.0, 1.0)
    hidden = o * t
    return (1.0 - o) * t + jnp.maximum(f * hidden, hidden - w)


def ep_stage_exposed(t_layer_comm_s: Array, compute_s: Array, moe_layers: Array, layer_frac: Array,
                     overlap: Array, partner: Array, *, alt_layers: Array = 0.0,
                     sm_frac: Array = EP_COMM_SM_FRAC) -> Array:
    """EP time the slowest pipeline stage adds to the FLOP-critical stage's compute, s.

    Megatron-Core's EP overlap (combined 1F1B, ``TransformerLayerSchedulePlan.run``) pairs each MoE
    layer's dispatch/combine of one micro-batch with the attention/MLP compute of a layer of another:
    the embedding, the LM head and loss, the MTP projection and the dense layers hide none of it.
    So the window is the stage's MoE layers' compute, m·λ·C (λ: one layer's share of the stage's
    compute C), × the paired share p.  A pipeline runs at its slowest stage's pace: where a layout's
    last rank is the FLOP-critical one (LM head, MTP), a middle rank with m_a > m MoE layers
    (compute m_a·λ·C) may be slower once its EP time is counted::

        crit = overlapped_exposed(m·T_l, o, p·m·λ·C, f)
        alt  = m_a·λ·C + overlapped_exposed(m_a·T_l, o, p·m_a·λ·C, f) - C
        exposed = max(crit, alt)                (m_a = 0: alt = -C, so crit)

    Args:
      t_layer_comm_s: T_l, one MoE layer's dispatch + combine time over the step (all micro-batches,
        forward and backward), s, ``[...]``.
      compute_s: C, compute time of the FLOP-critical stage, s, ``[...]``.
      moe_layers: m, its MoE layers; alt_layers: m_a, a middle rank's (0 = none), counts, ``[...]``.
      layer_frac: λ, one layer's share of C (0-1), ``[...]``.
      overlap: o, fraction of the comm run concurrently (ep_overlap × p), ``[...]``.
      partner: p, share of micro-batch chunks with another's compute beside them
        (ep_overlap_partner_frac), ``[...]``.
      sm_frac: f, as overlapped_exposed.

    Returns:
      exposed EP time (with the slower stage's extra compute), s, ``[...]``.

    Source: Megatron-Core models/common/model_chunk_schedule_plan.py (TransformerLayerSchedulePlan.run:
    comm stream combine_bwd | dispatch_fwd -> dispatch_bwd | combine_fwd beside attn_fwd | mlp_bwd ->
    mlp_bwd_dw -> mlp_fwd | attn_bwd; pre/post-process outside), at Megatron-LM 251c6e9 (Megatron-Bridge
    26.04's submodule); pipeline_parallel/schedules.py (throughput of the slowest stage).

    Worked example (about DeepSeek-V3 on DGX B200, PP 8 x VP 2, EP 32: the last rank's 5 layers + MTP vs a
    middle rank's 8): T_l = 1.9 s, C = 12.5 s, λ = 0.12, m = 6, m_a = 8, o = p = 0.9, f = 20/132:
    crit = 1.14 + max(1.555, 10.26 - 8.1) = 3.30 s; alt = 12.0 + 1.52 + max(2.073, 13.68 - 10.8) - 12.5
    = 3.90 s -> 3.90 s.
    """
    t, c, m, lam, o, p, ma, f = nonneg(t_layer_comm_s, compute_s, moe_layers, layer_frac, overlap, partner,
                                       alt_layers, sm_frac, broadcast=False)
    unit = lam * c
    crit = overlapped_exposed(m * t, o, p * m * unit, f)
    alt = ma * unit + overlapped_exposed(ma * t, o, p * ma * unit, f) - c
    return jnp.maximum(crit, alt)
