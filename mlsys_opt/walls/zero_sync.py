"""Parameter broadcasts of InternEvo's hybrid ZeRO-1 optimizer (param_sync = broadcast).

After the optimizer step every rank that owns parameters broadcasts its updated 16-bit shard to the
other ranks of the ZeRO group, one ``dist.broadcast`` per owner on one communicator, waited before the
next forward (InternLM/InternEvo hybrid_zero_optim.py ``broadcast_params(overlap=False)``).  This module
models the code that produced InternEvo's published 7B tables (doc/en/train_performance.md: the table
rows are unchanged since c18bec9, 2023-07-08; code of the initial commit fa7337b, 2023-07-06) and the
time NCCL takes for each broadcast:

- Who owns what (`broadcast_messages`): fa7337b ``_partition_param_list`` sorts the parameter tensors by
  size and gives each to the rank holding the fewest elements so far (one optimizer param group:
  train.py ``initialize_optimizer``); a tensor is never split.  With d_s ranks and T tensors, the first
  d_s tensors land on distinct ranks, so min(d_s, T) ranks broadcast.  InternLM's block (internlm/model,
  fa7337b) has k_m = 5 weight matrices (Wqkv, out_proj, w1, w2, w3) and k_s = 4 small tensors (Wqkv and
  out_proj biases, two RMSNorm weights), plus embedding, head (large) and final norm (small).  The large
  tensors come first in the sort, so min(d_s, k_m·L + 2) owners carry the bytes and the remaining
  clip(d_s - (k_m·L + 2), 0, k_s·L + 1) owners hold only a few kB each (latency only).  (The Jan-2024
  code, 34fc28d, assigns whole parameters in block order through ParamBcastSyncHandler: not the code of
  the tables.)
- Protocol (`ring_broadcast_s`): NCCL picks, per call, the protocol of least modelled time
  (src/enqueue.cc getAlgoInfo -> topoGetAlgoInfo over src/graph/tuning.cc ncclTopoTuneModel), NCCL 2.14.3
  (torch 1.13.1+cu117, InternEvo requirements/torch.txt at fa7337b).  Broadcast runs only as a ring;
  with several NICs per node the ring channels differ (sameChannels = 0), so its latency is nsteps = n
  steps of hwLat[hw][Ring][p] (Simple: the Tree/Simple "256 kB chunk" latency, 28 µs):

      Simple: 8.4 µs + n·28 µs + B_simple,                     B_simple = flat ring bytes
      LL:     3.6 µs + n·λ_LL  + max(φ·B_simple, (n-1)/n·M/β_LLmax)
              λ_LL = 2.7 µs (NET, n spans nodes) or 0.47 µs (NVLink, one node);
              φ = 4 across nodes, 3 in one node (busBw·1/4, 1/3), β_LLmax = llMaxBws:
              20.4 GB/s (> 2 nodes, Intel hosts), 39.0 GB/s (2 nodes), 87.7 GB/s (one A100 node)

  LL128 is left out: 2.14.3 enables it only when the ring's GPU-NIC path is PXB or better, which the
  InternEvo doc does not state (assumption).  B_simple is `parallel.flat_ring_bytes_s` (every rank
  receives M; the ring's NIC and NVLink shares move together), as for the all-gather it replaces.
"""
from __future__ import annotations

import jax.numpy as jnp

from mlsys_opt._types import Array
from mlsys_opt.walls import parallel
from mlsys_opt.walls._masked import as_float as _f
from mlsys_opt.walls._masked import floor_pos

# NCCL 2.14.3 cost model of a ring broadcast with the Simple protocol (src/graph/tuning.cc, ncclTopoTuneModel):
# latency = baseLat[Ring][Simple] + nsteps·lat with nsteps = nRanks for Broadcast, and, when the ring channels
# are not all identical (multi-NIC nodes), lat = hwLat[·][Tree][Simple] = 28 µs ("the latency a 256kB chunk,
# ~ base lat + 256k/12GB/s (+ 256k/12GB/s for the network)", the same 28 µs in the NVLink, PCI and NET rows):
# a chain broadcast pipelines Simple-protocol chunks (512 KiB: the 4 MiB buffer / NCCL_STEPS 8,
# BROADCAST_CHUNKSTEPS 1) and each rank forwards a chunk only once it holds it, so filling the chain costs one
# chunk latency per rank.  2.14.3 is the NCCL of torch 1.13.1 (InternEvo's documented environment).
NCCL_RING_BASE_LATENCY_SIMPLE_S = 8.4e-6
NCCL_CHUNK_LATENCY_SIMPLE_S = 28e-6
# NCCL 2.14.3 src/graph/tuning.cc: baseLat[Ring][LL], hwLat[NET|NVLINK][Ring][LL], llMaxBws (Intel N2/N4,
# Ampere N1), and the LL bus-bandwidth factor for Broadcast (1/4 across nodes, 1/3 in one node).
NCCL_RING_BASE_LATENCY_LL_S = 3.6e-6
NCCL_RING_STEP_LATENCY_LL_NET_S = 2.7e-6
NCCL_RING_STEP_LATENCY_LL_NVLINK_S = 0.47e-6
NCCL_LL_MAX_BW_MULTI_NODE = 20.4e9
NCCL_LL_MAX_BW_TWO_NODES = 39.0e9
NCCL_LL_MAX_BW_ONE_NODE = 87.7e9
NCCL_LL_BW_FACTOR_MULTI_NODE = 4.0
NCCL_LL_BW_FACTOR_ONE_NODE = 3.0
# InternLM block tensors (internlm/model/modeling_internlm.py, multi_head_attention.py at fa7337b):
# weight matrices Wqkv, out_proj, w1, w2, w3; small tensors Wqkv.bias, out_proj.bias, norm1, norm2.
LARGE_TENSORS_PER_LAYER = 5.0
SMALL_TENSORS_PER_LAYER = 4.0


def _ring_broadcast(m, n, loc, bi, be):
    """(time of one broadcast of m bytes at NCCL's protocol, LL latency alone), s; n > 1 assumed by callers."""
    g = jnp.clip(loc, 1.0, n)
    nodes = n / g
    multi = nodes > 1.0
    b_simple = parallel.flat_ring_bytes_s(m, n, g, bi, be)
    t_simple = NCCL_RING_BASE_LATENCY_SIMPLE_S + n * NCCL_CHUNK_LATENCY_SIMPLE_S + b_simple
    ll_max = jnp.where(nodes > 2.0, NCCL_LL_MAX_BW_MULTI_NODE,
                       jnp.where(multi, NCCL_LL_MAX_BW_TWO_NODES, NCCL_LL_MAX_BW_ONE_NODE))
    phi = jnp.where(multi, NCCL_LL_BW_FACTOR_MULTI_NODE, NCCL_LL_BW_FACTOR_ONE_NODE)
    lat_ll = NCCL_RING_BASE_LATENCY_LL_S + n * jnp.where(multi, NCCL_RING_STEP_LATENCY_LL_NET_S,
                                                         NCCL_RING_STEP_LATENCY_LL_NVLINK_S)
    t_ll = lat_ll + jnp.maximum(phi * b_simple, (n - 1.0) / n * m / ll_max)
    return jnp.minimum(t_simple, t_ll), lat_ll


def ring_broadcast_s(msg_bytes, n, n_local, bw_intra, bw_inter) -> Array:
    """One NCCL 2.14.3 ring broadcast of msg_bytes to n ranks (n_local per node), at the protocol NCCL picks, s.

    t = min(Simple, LL) of the module docstring; 0 for n <= 1.  Units: B, counts, B/s; s out.
    Example: M = 90.4e6 B over n = 1024 ranks, 8 per node, β_i = 2.349e11, β_e = 5e9 B/s: flat ring
    bytes 1023/1024·90.4e6·0.125/5e9 = 2.2578 ms; Simple 8.4e-6 + 1024·28e-6 + 2.2578e-3 = 30.946 ms;
    LL 3.6e-6 + 1024·2.7e-6 + 4·2.2578e-3 = 11.799 ms -> 11.799 ms (LL).
    """
    m, n, loc, bi, be = _f(msg_bytes, n, n_local, bw_intra, bw_inter)
    n = floor_pos(n, 1.0)
    t, _ = _ring_broadcast(jnp.maximum(m, 0.0), n, loc, bi, be)
    return jnp.where(n > 1.0, t, 0.0)


def broadcast_messages(shard, n_layers):
    """Owners of the greedy partition (fa7337b): (large-tensor owners, small-only owners), counts.

        large = min(d_s, k_m·L + 2),   small = clip(d_s - large, 0, k_s·L + 1)

    Example: InternLM-7B (L = 32): d_s = 1024 -> (162, 129); 256 -> (162, 94); 128 -> (128, 0); 8 -> (8, 0).
    """
    d, nl = _f(shard, n_layers)
    d = floor_pos(d, 1.0)
    nl = floor_pos(nl, 1.0)
    large = jnp.minimum(d, LARGE_TENSORS_PER_LAYER * nl + 2.0)
    small = jnp.clip(d - large, 0.0, SMALL_TENSORS_PER_LAYER * nl + 1.0)
    return large, small


def broadcast_params_s(param_bytes, shard, n_local, n_layers, bw_intra, bw_inter) -> Array:
    """Exposed time of the parameter broadcasts after one optimizer step, s.

        t = large·ring_broadcast(W/large, d_s) + small·(3.6 µs + d_s·λ_LL)      (0 for d_s <= 1)

    W = param_bytes (the 16-bit parameters of this model-parallel rank, all owned by the `large`
    owners; their mean share sets each call's protocol); the small-only owners' few kB cost the
    latency of the cheaper protocol (LL).  Units: B, counts, B/s; s out.
    Example: W = 14.64e9 B (InternLM-7B bf16) over d_s = 1024 ranks, 8 per node, L = 32, β_i = 2.349e11,
    β_e = 5e9 B/s: 162·11.797 ms + 129·2.7684 ms = 1.9111 + 0.35712 = 2.2682 s (the Simple-only,
    162-owner model gave 5.01 s).
    """
    large, small = broadcast_messages(shard, n_layers)
    w, d, loc, bi, be = _f(param_bytes, shard, n_local, bw_intra, bw_inter)
    d = floor_pos(d, 1.0)
    per, lat_ll = _ring_broadcast(jnp.maximum(w, 0.0) / large, d, loc, bi, be)
    # a few kB: LL's latency is below Simple's (3.6 + λ_LL·n < 8.4 + 28·n µs), bytes negligible
    return jnp.where(d > 1.0, large * per + small * lat_ll, 0.0)


__all__ = ["broadcast_messages", "broadcast_params_s", "ring_broadcast_s"]
