"""Fleet walls (14-16): collectives, 3D/4D parallel steps, reliability, shared-cluster queues.

Wall 14 (Communication): alpha-beta collectives (ring / tree / hierarchical
all-reduce, all-to-all), the pipeline bubble and the composed parallel step.
Wall 15 (Fragility): cluster MTBF, failure probability, expected failures.
Wall 16 (Multi-tenant): queueing wait on a shared cluster.

Conventions: pure ``jax.numpy``; SI floats (bytes, s, B/s), scalars or arrays
broadcasting to ``[...]``; knobs keyword-only; jit/vmap/grad-able; branch-free
(``jnp.where``) so integer-valued float degrees work. Counts are floored at 1
(N = 1 gives zero communication), bandwidths at 1 B/s and MTBFs at 1 ns, so
out-of-domain inputs give huge but finite values, never NaN or inf.

Sources: seed 000 sections 2.2-2.5, 7.1, 8; seed 002 walls 14-16;
Patarasuk & Yuan (2009) ring all-reduce; Thakur, Rabenseifner & Gropp (2005)
MPI collectives; Shoeybi et al. (2019) and Narayanan et al. (2021) Megatron-LM;
Shazeer et al. (2017) MoE; Little (1961); Kleinrock (1975) M/D/1.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from mlsys_opt._types import Array
from mlsys_opt.walls._masked import any_nan, floor_pos, nan_where, nonneg, safe_div

__all__ = [
    "ParallelStep",
    "ring_allreduce", "tree_allreduce", "ring_tree_crossover_bytes",
    "ring_tree_crossover_exact_bytes", "hierarchical_allreduce", "all_to_all",
    "pipeline_bubble", "parallel_step", "scaling_efficiency",
    "cluster_mtbf_s", "failure_probability", "expected_failures", "multitenant_wait",
]

_BW_FLOOR = 1.0        # B/s: a zero bandwidth gives a huge finite time
_TIME_FLOOR = 1e-9     # s: MTBF / service-time floor
_SLACK_FLOOR = 1e-6    # 1 - rho floor of the queue


# --------------------------------------------------------------------------- wall 14: collectives

def ring_allreduce(msg_bytes: Array, n: Array, bw_bytes_per_s: Array, alpha_s: Array) -> Array:
    """Ring all-reduce time, T = 2(N-1)·α + 2(N-1)/N · M/β.

    Reduce-scatter then all-gather around a ring: 2(N-1) steps, each sending
    M/N bytes, so each GPU moves ~2M bytes whatever N is.

    Args:
      msg_bytes: M, bytes each participant contributes (the gradient buffer), ``[...]``.
      n: N, participants (>= 1; N = 1 gives 0), ``[...]``.
      bw_bytes_per_s: β, per-link bandwidth, B/s, ``[...]``.
      alpha_s: α, per-message latency, s (0 allowed), ``[...]``.

    Returns:
      T, s, ``[...]``.

    Source: seed 000 section 2.3; seed 002 wall 14; Patarasuk & Yuan (2009).

    Worked examples: 140 GB on 1024 GPUs, β = 50 GB/s, α = 2 µs (seed 000):
    bandwidth term 2·1023/1024 · 140e9/50e9 = 5.59 s, latency term 2·1023·2e-6 = 4.1 ms.
    1 GB on 8 GPUs at 50 GB/s (seed 002): 2·7/8 · 1e9/50e9 = 35 ms (+ 14α).
    """
    msg_bytes, n, bw_bytes_per_s, alpha_s = nonneg(msg_bytes, n, bw_bytes_per_s, alpha_s, broadcast=False)
    n = floor_pos(n, 1.0)
    return 2.0 * (n - 1.0) * alpha_s + 2.0 * (n - 1.0) / n * msg_bytes / floor_pos(bw_bytes_per_s, _BW_FLOOR)


def tree_allreduce(msg_bytes: Array, n: Array, bw_bytes_per_s: Array, alpha_s: Array) -> Array:
    """Tree all-reduce time as seed 000 writes it, T = 2·log2(N)·α + 2·log2(N)·M/β.

    Latency-optimal (log N steps) but each step carries the whole message, so
    it loses to the ring for large messages. log2 is continuous here (mlsysim
    rounds it up); N = 1 gives log2(1) = 0, i.e. zero time.

    Args:
      msg_bytes: M, bytes, ``[...]``.
      n: N, participants (>= 1), ``[...]``.
      bw_bytes_per_s: β, B/s, ``[...]``.
      alpha_s: α, s, ``[...]``.

    Returns:
      T, s, ``[...]``.

    Source: seed 000 section 2.3; Thakur, Rabenseifner & Gropp (2005).

    Worked example: 4 KiB on 1024 GPUs, α = 2 µs, β = 50 GB/s:
    2·10·2e-6 + 2·10·4096/50e9 = 40.0 µs + 1.6 µs = 41.6 µs (ring: 4.09 ms).
    """
    msg_bytes, n, bw_bytes_per_s, alpha_s = nonneg(msg_bytes, n, bw_bytes_per_s, alpha_s, broadcast=False)
    log_n = jnp.log2(floor_pos(n, 1.0))
    return 2.0 * log_n * alpha_s + 2.0 * log_n * msg_bytes / floor_pos(bw_bytes_per_s, _BW_FLOOR)


def ring_tree_crossover_bytes(n: Array, alpha_s: Array, bw_bytes_per_s: Array) -> Array:
    """Seed 000's rule of thumb for the ring/tree crossover message size, M ≈ N·α·β.

    Below it the tree (latency-bound) wins, above it the ring. This is the
    seed's approximation; :func:`ring_tree_crossover_exact_bytes` solves the
    two formulas for equality and is smaller by roughly a factor log2(N).

    Args:
      n: N, participants, ``[...]``.
      alpha_s: α, s, ``[...]``.
      bw_bytes_per_s: β, B/s, ``[...]``.

    Returns:
      M_cross, bytes, ``[...]``.

    Source: seed 000 section 2.3.

    Worked example: N = 1024, α = 2 µs, β = 50 GB/s: 1024 · 2e-6 · 50e9 = 102.4 MB.
    """
    n, alpha_s, bw_bytes_per_s = nonneg(n, alpha_s, bw_bytes_per_s, broadcast=False)
    return floor_pos(n, 1.0) * alpha_s * bw_bytes_per_s


def ring_tree_crossover_exact_bytes(n: Array, alpha_s: Array, bw_bytes_per_s: Array) -> Array:
    """Message size where :func:`ring_allreduce` equals :func:`tree_allreduce`.

    M* = α·β · (N - 1 - log2 N) / (log2 N - (N-1)/N); 0 for N <= 2 (the tree
    never wins there: equal latency, twice the bytes).

    Args:
      n: N, participants, ``[...]``.
      alpha_s: α, s, ``[...]``.
      bw_bytes_per_s: β, B/s, ``[...]``.

    Returns:
      M*, bytes, ``[...]``.

    Source: derived from the two seed 000 section 2.3 formulas.

    Worked example: N = 1024, α = 2 µs, β = 50 GB/s: α·β = 1e5 B,
    (1023 - 10) / (10 - 0.999) = 112.5, so M* = 11.3 MB (seed's N·α·β: 102 MB).
    """
    n, alpha_s, bw_bytes_per_s = nonneg(n, alpha_s, bw_bytes_per_s, broadcast=False)
    n = floor_pos(n, 1.0)
    log_n = jnp.log2(n)
    num = jnp.maximum(n - 1.0 - log_n, 0.0)
    den = log_n - (n - 1.0) / n
    return safe_div(alpha_s * bw_bytes_per_s * num, den, fill=0.0)


def hierarchical_allreduce(msg_bytes: Array, n_intra: Array, n_inter: Array,
                           bw_intra_bytes_per_s: Array, alpha_intra_s: Array,
                           bw_inter_bytes_per_s: Array, alpha_inter_s: Array) -> Array:
    """Two-level all-reduce: reduce-scatter in the node, all-reduce across nodes, all-gather in the node.

    T = [(g-1)α_i + (g-1)/g · M/β_i]                     reduce-scatter, g = n_intra
      + [2(n-1)α_e + 2(n-1)/n · (M/g)/β_e]               ring all-reduce of the M/g shard, n = n_inter
      + [(g-1)α_i + (g-1)/g · M/β_i]                     all-gather
      = ring(M, g, β_i, α_i) + ring(M/g, n, β_e, α_e).

    Each of the g GPUs of a node owns one M/g shard after the reduce-scatter
    and runs its own cross-node ring for it through its own NIC (one NIC per
    GPU, as in DGX/HGX), so β_e is the per-GPU scale-out bandwidth. This is
    NCCL's reduce-scatter design (mlsysim documents the same choice). With
    n_inter = 1 it is a ring inside the node; with n_intra = 1 a flat ring
    across nodes.

    Args:
      msg_bytes: M, bytes per GPU, ``[...]``.
      n_intra: g, GPUs of the group inside one node (>= 1), ``[...]``.
      n_inter: n, nodes the group spans (>= 1), ``[...]``.
      bw_intra_bytes_per_s, alpha_intra_s: scale-up fabric (e.g. NVLink) β, α.
      bw_inter_bytes_per_s, alpha_inter_s: scale-out fabric (e.g. IB NDR) β per GPU, α.

    Returns:
      T, s, ``[...]``.

    Source: seed 002 commit note (hierarchical all-reduce, NCCL reduce-scatter
    design); NCCL / Horovod hierarchical all-reduce.

    Worked example: 140 GB over 64 nodes x 8 GPUs, NVLink 450 GB/s (α 0),
    IB 50 GB/s (α 0): intra 2·7/8·140e9/450e9 = 0.544 s, inter
    2·63/64·17.5e9/50e9 = 0.689 s, total 1.23 s (flat ring over IB: 5.59 s).
    """
    (msg_bytes, n_intra, n_inter, bw_intra_bytes_per_s, alpha_intra_s, bw_inter_bytes_per_s,
     alpha_inter_s) = nonneg(
        msg_bytes, n_intra, n_inter, bw_intra_bytes_per_s, alpha_intra_s, bw_inter_bytes_per_s,
        alpha_inter_s, broadcast=False)
    g = floor_pos(n_intra, 1.0)
    return (ring_allreduce(msg_bytes, g, bw_intra_bytes_per_s, alpha_intra_s)
            + ring_allreduce(msg_bytes / g, n_inter, bw_inter_bytes_per_s, alpha_inter_s))


def all_to_all(msg_bytes: Array, n: Array, bw_bytes_per_s: Array, alpha_s: Array) -> Array:
    """All-to-all (MoE token routing) time, T = (N-1)·α + (N-1)/N · M/β.

    Each participant sends a distinct M/N slice to each of the N-1 others.

    Args:
      msg_bytes: M, bytes each participant holds for exchange, ``[...]``.
      n: N, participants (EP degree, >= 1), ``[...]``.
      bw_bytes_per_s: β, B/s, ``[...]``.
      alpha_s: α, s, ``[...]``.

    Returns:
      T, s, ``[...]``.

    Source: seed 000 section 2.5; Shazeer et al. (2017).

    Worked example: 4 KiB over 64 GPUs, α = 2 µs, β = 50 GB/s:
    63·2e-6 + 63/64·4096/50e9 = 126 µs + 0.08 µs (latency-bound).
    """
    msg_bytes, n, bw_bytes_per_s, alpha_s = nonneg(msg_bytes, n, bw_bytes_per_s, alpha_s, broadcast=False)
    n = floor_pos(n, 1.0)
    return (n - 1.0) * alpha_s + (n - 1.0) / n * msg_bytes / floor_pos(bw_bytes_per_s, _BW_FLOOR)


def pipeline_bubble(n_stages: Array, n_microbatches: Array, n_virtual_stages: Array = 1.0) -> Array:
    """Pipeline bubble fraction, (P - 1) / (V·M + P - 1), in [0, 1).

    Args:
      n_stages: P, pipeline stages (>= 1), ``[...]``.
      n_microbatches: M, microbatches per step (>= 1), ``[...]``.
      n_virtual_stages: V, virtual stages (interleaved chunks) per GPU (>= 1), ``[...]``.

    Returns:
      Bubble fraction of the pipeline's wall time, ``[...]``.

    Source: seed 000 section 2.4; Narayanan et al. (2021).

    Worked example (seed 000 table): (P, M, V) = (4, 16, 1) -> 3/19 = 15.8 %;
    (4, 16, 2) -> 3/35 = 8.6 %; (8, 32, 1) -> 7/39 = 17.9 %; (16, 16, 1) -> 15/31 = 48.4 %.
    """
    n_stages, n_microbatches, n_virtual_stages = nonneg(n_stages, n_microbatches, n_virtual_stages, broadcast=False)
    p = floor_pos(n_stages, 1.0)
    return (p - 1.0) / (floor_pos(n_virtual_stages, 1.0) * floor_pos(n_microbatches, 1.0) + p - 1.0)


def scaling_efficiency(t_compute_s: Array, t_dp_s: Array, t_tp_s: Array, t_ep_s: Array,
                       t_bubble_s: Array, t_pp_s: Array = 0.0) -> Array:
    """η_scale = T_compute / (T_compute + T_dp + T_tp + T_ep + T_bubble [+ T_pp]).

    Args:
      t_compute_s: per-GPU compute time of one step, s, ``[...]``.
      t_dp_s: exposed data-parallel communication, s, ``[...]``.
      t_tp_s, t_ep_s, t_bubble_s: tensor-parallel, expert-parallel and bubble time, s.
      t_pp_s: pipeline point-to-point time, s (not in the seed's formula; default 0).

    Returns:
      η in [0, 1] (1 when every term is 0), ``[...]``.

    Source: seed 000 section 2.2.

    Worked example: T_compute = 1 s, T_dp = 0.2 s, T_bubble = 0.05 s: η = 1/1.25 = 0.8.
    """
    (t_compute_s, t_dp_s, t_tp_s, t_ep_s, t_bubble_s, t_pp_s) = nonneg(
        t_compute_s, t_dp_s, t_tp_s, t_ep_s, t_bubble_s, t_pp_s, broadcast=False)
    total = t_compute_s + t_dp_s + t_tp_s + t_ep_s + t_bubble_s + t_pp_s
    return 1.0 - safe_div(total - t_compute_s, total, fill=0.0)   # t_c / total; 1 for an empty step


class ParallelStep(NamedTuple):
    """Time budget of one 3D/4D-parallel training step, per GPU. Shapes ``[...]``, seconds."""

    t_compute_s: Array        # pure compute (input)
    t_dp_s: Array             # gradient all-reduce, un-overlapped
    t_dp_exposed_s: Array     # (1 - overlap) · t_dp, the part on the critical path
    t_tp_s: Array             # Megatron tensor-parallel all-reduces
    t_pp_s: Array             # pipeline point-to-point activation sends
    t_ep_s: Array             # MoE all-to-alls
    t_bubble_s: Array         # pipeline fill/drain idle time
    step_s: Array             # compute + exposed dp + tp + pp + ep + bubble
    scaling_efficiency: Array  # t_compute / step


def parallel_step(t_compute_s: Array, *, dp: Array, tp: Array, pp: Array, ep: Array = 1.0,
                  grad_bytes: Array, tp_act_bytes_per_layer: Array, n_layers: Array,
                  bw_intra_bytes_per_s: Array, bw_inter_bytes_per_s: Array,
                  alpha_intra_s: Array = 0.0, alpha_inter_s: Array = 0.0,
                  n_microbatches: Array = 1.0, n_virtual_stages: Array = 1.0,
                  ep_token_bytes: Array = 0.0, pp_act_bytes: Array = 0.0,
                  gpus_per_node: Array = 8.0, overlap_frac: Array = 0.0,
                  tp_allreduces_per_layer: float = 4.0,
                  ep_alltoalls_per_layer: float = 4.0) -> ParallelStep:
    """One training step under DP x TP x PP x EP, composed from the alpha-beta collectives.

    Rank layout (Megatron order, innermost first): TP, EP, DP, PP. A group
    whose span fits in one node (gpus_per_node) uses the scale-up fabric, else
    the scale-out one:

      T_tp = m · (L/pp) · k_tp · hier_allreduce(A_tp, min(tp, G), tp/min(tp, G))
             with k_tp = 4 (Megatron: 2 all-reduces forward + 2 backward per layer);
      T_ep = m · (L/pp) · k_ep · all_to_all(A_ep, ep) over scale-up if tp·ep <= G
             (k_ep = 4: dispatch + combine, forward + backward);
      T_dp = hier_allreduce(grad_bytes/(tp·pp), g, dp/g), g = clip(G/(tp·ep), 1, dp)
             (DP stays in the node while tp·ep·dp <= G and crosses nodes after);
      T_dp,exposed = (1 - overlap) · T_dp;
      T_pp = [pp > 1] · 2m · (α + A_pp/β), scale-up if tp·ep·dp < G;
      T_bubble = T_compute · (pp - 1)/(V·m)   (so T_bubble/(T_compute+T_bubble) is
                 the bubble fraction (P-1)/(V·m+P-1));
      step = T_compute + T_dp,exposed + T_tp + T_pp + T_ep + T_bubble;
      η_scale = T_compute / step.

    η_scale is seed 000's formula with T_dp read as the exposed part and the
    pipeline point-to-point term T_pp added (the seed leaves it out; it is 0
    when pp = 1 and tiny when pp_act_bytes = 0). Every degree equal to 1 gives
    zero for its term; the formulas are branch-free, so any integer-valued
    float degrees (and, smoothly, non-integers) work.

    Args:
      t_compute_s: per-GPU compute time of one step, all microbatches, s, ``[...]``
        (e.g. 6·P·tokens_per_step / (n_devices · peak · MFU)).
      dp, tp, pp, ep: parallel degrees (>= 1), ``[...]``.
      grad_bytes: gradient bytes of one full model replica (e.g. 2·P for BF16),
        ``[...]``; each GPU all-reduces its shard grad_bytes/(tp·pp). For MoE,
        fold expert weights in as experts/ep.
      tp_act_bytes_per_layer: bytes of ONE tensor-parallel all-reduce for one
        microbatch (b_micro · seq · hidden · bytes), ``[...]``.
      n_layers: L, transformer layers of the model, ``[...]``.
      bw_intra_bytes_per_s, alpha_intra_s: scale-up fabric (NVLink) per-GPU β and α.
      bw_inter_bytes_per_s, alpha_inter_s: scale-out fabric (IB) per-GPU β and α.
      n_microbatches: m, microbatches per step (>= 1).
      n_virtual_stages: V, interleaved chunks per GPU (>= 1).
      ep_token_bytes: bytes one GPU exchanges in one MoE all-to-all for one microbatch (default 0).
      pp_act_bytes: bytes of one stage-boundary activation send for one microbatch (default 0).
      gpus_per_node: G (default 8).
      overlap_frac: fraction of the DP all-reduce hidden behind backward compute
        (0-1, default 0 = nothing hidden; mlsysim's overlap default is 0.85).
      tp_allreduces_per_layer: k_tp (default 4, Megatron).
      ep_alltoalls_per_layer: k_ep (default 4; use 2 if only every other layer is MoE).

    Returns:
      ParallelStep (see fields), each ``[...]``.

    Source: seed 000 sections 2.1-2.5; Shoeybi et al. (2019); Narayanan et al. (2021).

    Worked example: pure DP, 1024 GPUs (128 nodes x 8), grad_bytes = 140e9,
    T_compute = 10 s, NVLink 450 GB/s, IB 50 GB/s, α = 0: T_dp = ring(140 GB, 8, NVLink)
    + ring(17.5 GB, 128, IB) = 0.544 + 0.695 = 1.24 s, η = 10/11.24 = 0.89.
    """
    (t_compute_s, dp, tp, pp, ep, grad_bytes, tp_act_bytes_per_layer, n_layers, bw_intra_bytes_per_s,
     bw_inter_bytes_per_s, alpha_intra_s, alpha_inter_s, n_microbatches, n_virtual_stages,
     ep_token_bytes, pp_act_bytes, gpus_per_node, overlap_frac, tp_allreduces_per_layer,
     ep_alltoalls_per_layer) = nonneg(
        t_compute_s, dp, tp, pp, ep, grad_bytes, tp_act_bytes_per_layer, n_layers,
        bw_intra_bytes_per_s, bw_inter_bytes_per_s, alpha_intra_s, alpha_inter_s, n_microbatches,
        n_virtual_stages, ep_token_bytes, pp_act_bytes, gpus_per_node, overlap_frac,
        tp_allreduces_per_layer, ep_alltoalls_per_layer, broadcast=False)
    dp, tp, pp, ep = (floor_pos(x, 1.0) for x in (dp, tp, pp, ep))
    m = floor_pos(n_microbatches, 1.0)
    v = floor_pos(n_virtual_stages, 1.0)
    g_node = floor_pos(gpus_per_node, 1.0)
    layers_per_stage = n_layers / pp

    # Tensor parallel: Megatron all-reduces, hierarchical if tp spans nodes.
    tp_local = jnp.minimum(tp, g_node)
    t_tp_one = hierarchical_allreduce(tp_act_bytes_per_layer, tp_local, tp / tp_local,
                                      bw_intra_bytes_per_s, alpha_intra_s,
                                      bw_inter_bytes_per_s, alpha_inter_s)
    t_tp = m * layers_per_stage * tp_allreduces_per_layer * t_tp_one

    # Expert parallel: all-to-all, in the node while tp·ep fits.
    ep_in_node = tp * ep <= g_node
    t_ep_one = all_to_all(ep_token_bytes, ep,
                          jnp.where(ep_in_node, bw_intra_bytes_per_s, bw_inter_bytes_per_s),
                          jnp.where(ep_in_node, alpha_intra_s, alpha_inter_s))
    t_ep = m * layers_per_stage * ep_alltoalls_per_layer * t_ep_one

    # Data parallel: gradient shard all-reduce, hierarchical once dp leaves the node.
    dp_local = jnp.clip(g_node / (tp * ep), 1.0, dp)
    t_dp = hierarchical_allreduce(grad_bytes / (tp * pp), dp_local, dp / dp_local,
                                  bw_intra_bytes_per_s, alpha_intra_s,
                                  bw_inter_bytes_per_s, alpha_inter_s)
    t_dp_exposed = (1.0 - overlap_frac) * t_dp

    # Pipeline: point-to-point sends and the fill/drain bubble.
    pp_in_node = tp * ep * dp < g_node
    bw_pp = jnp.where(pp_in_node, bw_intra_bytes_per_s, bw_inter_bytes_per_s)
    alpha_pp = jnp.where(pp_in_node, alpha_intra_s, alpha_inter_s)
    t_pp = jnp.where(pp > 1.0, 2.0 * m * (alpha_pp + pp_act_bytes / floor_pos(bw_pp, _BW_FLOOR)), 0.0)
    t_bubble = t_compute_s * (pp - 1.0) / (v * m)

    step = t_compute_s + t_dp_exposed + t_tp + t_pp + t_ep + t_bubble
    eff = scaling_efficiency(t_compute_s, t_dp_exposed, t_tp, t_ep, t_bubble, t_pp)
    out = ParallelStep(t_compute_s=t_compute_s * jnp.ones_like(step), t_dp_s=t_dp,
                       t_dp_exposed_s=t_dp_exposed, t_tp_s=t_tp, t_pp_s=t_pp, t_ep_s=t_ep,
                       t_bubble_s=t_bubble, step_s=step, scaling_efficiency=eff)
    # the placement masks (in node or not) compare degrees: a NaN degree must not pick a branch
    return nan_where(any_nan(dp, tp, pp, ep, gpus_per_node), out)


# --------------------------------------------------------------------------- wall 15: reliability

def cluster_mtbf_s(component_mtbf_s: Array, n: Array) -> Array:
    """Cluster MTBF with N independent components in series, M_cluster = M / N.

    Args:
      component_mtbf_s: M, mean time between failures of one component, s, ``[...]``.
      n: N, components (>= 1), ``[...]``.

    Returns:
      M_cluster, s, ``[...]``.

    Source: seed 000 section 7.1; seed 002 wall 15.

    Worked example (50,000 h per GPU): 8 GPUs -> 6,250 h (~8.6 months);
    1,000 -> 50 h; 10,000 -> 5 h; 100,000 -> 0.5 h (30 min).
    """
    component_mtbf_s, n = nonneg(component_mtbf_s, n, broadcast=False)
    return component_mtbf_s / floor_pos(n, 1.0)


def failure_probability(duration_s: Array, mtbf_s: Array) -> Array:
    """P(at least one failure in T) = 1 - exp(-T / M) (exponential failures).

    Args:
      duration_s: T, job duration, s, ``[...]``.
      mtbf_s: M, (cluster) MTBF, s, ``[...]``.

    Returns:
      probability in [0, 1], ``[...]``.

    Source: seed 000 section 8.

    Worked example: 30 days at M = 5 h: 1 - exp(-720/5) = 1 - 3e-63 ≈ 1.0.
    """
    duration_s, mtbf_s = nonneg(duration_s, mtbf_s, broadcast=False)
    return -jnp.expm1(-duration_s / floor_pos(mtbf_s, _TIME_FLOOR))


def expected_failures(duration_s: Array, mtbf_s: Array) -> Array:
    """Expected number of failures in T, T / M.

    Args:
      duration_s: T, s, ``[...]``.
      mtbf_s: M, s, ``[...]``.

    Returns:
      failures (count), ``[...]``.

    Source: seed 000 sections 7.1 and 8.

    Worked example: 16,384 GPUs at 50,000 h for 54 days: 54·24 / (50,000/16,384)
    = 425 (Llama-3 reported 419).
    """
    duration_s, mtbf_s = nonneg(duration_s, mtbf_s, broadcast=False)
    return duration_s / floor_pos(mtbf_s, _TIME_FLOOR)


# --------------------------------------------------------------------------- wall 16: multi-tenancy

def multitenant_wait(utilization_frac: Array, service_rate_per_s: Array) -> Array:
    """Mean queue wait on a shared cluster, W = ρ / (2μ(1 - ρ)) (M/D/1).

    Deterministic job lengths (1/μ) arriving as a Poisson stream; Pollaczek-Khinchine
    with zero service variance. 1 - ρ is floored at 1e-6, so ρ -> 1 (and the
    unstable ρ >= 1) give a huge finite wait; add ρ - 1 <= 0 as a constraint.

    Args:
      utilization_frac: ρ = λ/μ, cluster utilization (>= 0), ``[...]``.
      service_rate_per_s: μ, jobs per second one cluster completes (1 / job duration), ``[...]``.

    Returns:
      W, s, ``[...]``.

    Source: seed 002 wall 16; mlsysim OrchestrationModel; Little (1961); Kleinrock (1975).

    Worked example (seed 002): ρ = 0.8 gives W = 0.8/(2·0.2)/μ = 2/μ, i.e. the
    average wait is 2x the job duration.
    """
    utilization_frac, service_rate_per_s = nonneg(utilization_frac, service_rate_per_s, broadcast=False)
    rho = jnp.maximum(utilization_frac, 0.0)
    slack = floor_pos(1.0 - rho, _SLACK_FLOOR)
    return rho / (2.0 * floor_pos(service_rate_per_s, _TIME_FLOOR) * slack)
