"""Parallelism walls of a modern training step: sharded data parallelism, TP/SP, CP, EP, PP.

Pure, elementwise, branch-free JAX (flags and codes are floats/ints broadcast like the
rest), SI units (bytes, s, B/s), built on the alpha-beta collectives of
``walls.fleet``.  Conventions (Megatron-Core rank order, innermost first):
tp, cp, dp (with ep *inside* dp), pp, so that N = tp·cp·pp·dp and ep divides dp.

Sources: Rajbhandari et al. 2020 (ZeRO, arXiv:1910.02054) §5 communication volumes;
Zhao et al. 2023 (PyTorch FSDP, arXiv:2304.11277) §3 hybrid sharding; Megatron-LM
docs/source/distrib_optimizer.md (bytes per parameter, reduce-scatter + all-gather);
Korthikanti et al. 2022 (arXiv:2205.05198) §4 sequence parallelism and §4.2.3
interleaved-schedule activation memory; Narayanan et al. 2021 (arXiv:2104.04473).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from mlsys_opt._types import Array
from mlsys_opt.walls import fleet
from mlsys_opt.walls._masked import as_float as _f
from mlsys_opt.walls._masked import floor_pos
from mlsys_opt.walls.pipeline_schedule import (  # re-exported: pipeline schedules (DUALPIPE)
    DUALPIPE_SLOT_FRAC, bubble_slots, dualpipe_bubble_slots, interleaved_activation_factor, pipeline_in_flight)
from mlsys_opt.walls.saved_activations import (  # re-exported: per-op SAC, eager and torch.compile (MEMEAGER)
    op_sac_activation_elements,
    op_sac_recompute_fraction,
)

# Bytes per parameter of mixed-precision Adam training, per numeric precision (columns of
# _types.PRECISIONS: fp32, tf32, fp16/bf16, fp8, int8, int4/fp4).  A framework table, not an
# accelerator one, so it lives here (documented, not fitted):
# - weights: the compute copy.  fp8/fp4 (Transformer Engine) keep the bf16 weight and a
#   cached low-precision cast (+1 / +0.5 B; TE `fp8_model_params=False`, the default).
# - grads: fp32 main gradients for every 16-bit and lower precision: Megatron-LM forces
#   fp32 gradient accumulation and reduction with bf16 (distrib_optimizer.md table "bf16
#   param, fp32 grads: 18 B/param, distributed 6 + 12/d"; Llama 3 paper §3.3.4 reduces
#   gradients in FP32).  fp32 training keeps fp32 grads.
# - optimizer: fp32 master copy + Adam m + v = 12 B (fp32 training: the weights are the
#   master, 8 B).
# - activation scale: bytes of a stored activation relative to 16-bit.  fp32 stores 2×;
#   fp8/fp4 recipes (TE) keep bf16 activations outside the GEMM inputs, counted as 1×.
WEIGHT_BYTES = (4.0, 4.0, 2.0, 3.0, 3.0, 2.5)
GRAD_BYTES = (4.0, 4.0, 4.0, 4.0, 4.0, 4.0)
OPTIMIZER_BYTES = (8.0, 8.0, 12.0, 12.0, 12.0, 12.0)
ACTIVATION_SCALE = (2.0, 2.0, 1.0, 1.0, 1.0, 1.0)
PARAM_GATHER_BYTES = (4.0, 4.0, 2.0, 2.0, 2.0, 2.0)   # dtype of the ZeRO/FSDP parameter all-gather (bf16)
# Optimizer state of Adam, split as the frameworks configure it (scenario parameters master_weights and
# optimizer_moments; OPTIMIZER_BYTES above is the default fp32 + fp32 = 4 + 8):
# - master copy per choice ("fp32", "remainders", "none", "fp32_param"): fp32 4 B, a separate fp32 copy
#   next to persistent 16-bit weights (Megatron-LM distributed optimizer, Megatron-FSDP's main_weight_buffer
#   beside its model_weight_buffer, DeepSpeed); remainders 2 B: Apex DistributedFusedAdam
#   store_param_remainders keeps only the low 16 bits of the fp32 master next to the bf16 weight (NeMo 1.x
#   turns it on for bf16 O2 with an fp32 optimizer: megatron_base_model.py setup_optimization); none 0 B:
#   the update is applied to the 16-bit weights themselves (Apex dtype=bf16 -> store_params=False; a
#   torch.optim.AdamW on a model cast to bf16; Gopher's bf16 parameters, Rae et al. 2021 App. C);
#   fp32_param 4 B: the fp32 parameter itself is the master and the only persistent weight, the 16-bit
#   weights exist only as cast copies while a unit is gathered (PyTorch FSDP1/FSDP2 mixed precision, MaxText
#   fp32 weights; the scenario drops the persistent 16-bit shard at ZeRO-3, training_setup FSDP16).  Zero
#   when the weights are fp32 already (they are the master).
# - Adam moments m, v per choice ("fp32", "bf16"): 8 or 4 B (Megatron-Core precision-aware optimizer
#   exp_avg_dtype / exp_avg_sq_dtype; torch AdamW keeps them in the parameter dtype).
MASTER_WEIGHT_BYTES = (4.0, 2.0, 0.0, 4.0)
MOMENT_BYTES = (8.0, 4.0)


def reduce_scatter(msg_bytes, n, bw_bytes_per_s, alpha_s) -> Array:
    """Ring reduce-scatter (= ring all-gather) time, T = (N-1)·α + (N-1)/N · M/β (half an all-reduce).

    M is the full buffer each rank holds before (reduce-scatter) or after (all-gather).
    Example: 2.2e9 B over 128 ranks at 37.5e9 B/s, α = 0: 127/128·0.05867 = 0.05821 s.
    Source: Thakur, Rabenseifner & Gropp 2005; ring all-reduce = RS + AG (Patarasuk & Yuan 2009).
    """
    return 0.5 * fleet.ring_allreduce(msg_bytes, n, bw_bytes_per_s, alpha_s)


def hierarchical_reduce_scatter(msg_bytes, n_intra, n_inter, bw_intra, alpha_intra, bw_inter,
                                alpha_inter) -> Array:
    """Two-level reduce-scatter (or all-gather): inside the node over g, then M/g across n nodes.

    T = RS(M, g, β_i, α_i) + RS(M/g, n, β_e, α_e); half of `fleet.hierarchical_allreduce`.
    """
    return 0.5 * fleet.hierarchical_allreduce(msg_bytes, n_intra, n_inter, bw_intra, alpha_intra,
                                              bw_inter, alpha_inter)


class DataParallelComm(NamedTuple):
    t_comm_s: Array          # all DP collectives of one step, s (nothing hidden)
    t_window_s: Array        # compute time they can hide behind, s


def data_parallel_comm(grad_bytes, param_bytes, *, dp, shard, zero_stage, microbatches, t_compute_s,
                       dp_local, bw_intra, alpha_intra, bw_inter, alpha_inter) -> DataParallelComm:
    """Time of the data-parallel collectives of one step and the compute they overlap with.

    Per GPU, G = grad_bytes and W = param_bytes of its model-parallel shard (unsharded
    sizes), d = dp, d_s = shard (the sharding group; d_s = d is plain ZeRO/FSDP, d_s < d
    is hybrid sharding: shard inside d_s, replicate over r = d/d_s), M micro-batches::

        zero 0 (DDP):        AR(G, d)                                       (ZeRO §5.1: 2Ψ)
        zero 1, 2:           RS(G, d_s) + AG(W, d_s) + AR(G/d_s, r)          (distributed optimizer)
        zero 3 (FSDP):       M·(2·AG(W, d_s) + RS(G, d_s)) + AR(G/d_s, r)     (ZeRO §5.2: 3Ψ per pass)

    min(dp_local, d_s) ranks of a group sit in one node: all-reduces are two-level, reduce-scatters
    and all-gathers NCCL's flat ring (`data_parallel_times`, `flat_ring_bytes_s`).
    Window: ZeRO-0..2 reduce gradients during the last micro-batch's backward and gather
    parameters during the first forward (one micro-batch of compute, t_compute/M); ZeRO-3
    prefetches every layer's gather during the whole step (t_compute).
    Args: grad_bytes, param_bytes (bytes); dp, shard, microbatches (counts); zero_stage
      (0-3, may be an array); t_compute_s (s, per GPU per step); dp_local (DP ranks inside
      one node); link β (B/s) and α (s) of scale-up (intra) and scale-out (inter).
    Example: zero 1, G = 2.2e9 B, W = 1.1e9 B, d = d_s = 128 all across nodes (dp_local = 1)
      at 37.5e9 B/s, α = 0: RS 0.05821 + AG 0.02910 = 0.08731 s.
    """
    fixed, per_mb = data_parallel_times(grad_bytes, param_bytes, dp=dp, shard=shard, zero_stage=zero_stage,
                                        dp_local=dp_local, bw_intra=bw_intra, alpha_intra=alpha_intra,
                                        bw_inter=bw_inter, alpha_inter=alpha_inter)
    zs, m, tc = _f(zero_stage, microbatches, t_compute_s)
    m = floor_pos(m, 1.0)
    return DataParallelComm(fixed + m * per_mb, jnp.where(zs > 2.5, tc, tc / m))


def ring_latency_s(n, n_local, alpha_intra, alpha_inter) -> Array:
    """Latency of one ring reduce-scatter or all-gather over n ranks, n_local of them per node, s.

    NCCL runs ReduceScatter and AllGather as one ring through all n ranks (the only algorithm for
    them in NCCL 2.14-2.18; all-reduce alone switches to trees): nsteps = n - 1, of which
    nInterSteps = nodes - 1 cross the network (src/graph/tuning.cc: latency = (nsteps - nInterSteps)
    ·intraLat + nInterSteps·interLat), nodes = n / n_local::

        t = (n - nodes)·α_intra + (nodes - 1)·α_inter

    Example: 512 ranks, 8 per node, α 2.45 / 2 µs: 448·2.45e-6 + 63·2e-6 = 1.224 ms (a two-level
    ring would pay 7·α_intra + 63·α_inter = 0.143 ms).  Units: counts, s.
    """
    n, loc, ai, ae = _f(n, n_local, alpha_intra, alpha_inter)
    n = floor_pos(n, 1.0)
    nodes = n / jnp.clip(loc, 1.0, n)
    return (n - nodes) * ai + (nodes - 1.0) * ae


def flat_ring_bytes_s(msg_bytes, n, n_local, bw_intra, bw_inter) -> Array:
    """Bandwidth time of NCCL's flat-ring reduce-scatter (or all-gather) over n ranks, n_local per node, s.

    NCCL runs ReduceScatter and AllGather as rings through all n ranks, no two-level algorithm
    (`ring_latency_s`), on several channels at once; each channel's ring enters and leaves every node
    once through a NIC, and the node's g = n_local GPUs take turns as the exit.  Every rank sends
    (n - 1)/n·M over the rings: the share 1/g of it through its NIC, the rest over the scale-up links,
    and both links carry their shares at the same time (different channels), so the slower share sets
    the time (one bandwidth term, not the sum of an in-node and a cross-node stage)::

        t = (n - 1)/n · M · max(f_i/β_i, f_e/β_e)
        f_e = 1/g, f_i = (g - 1)/g       (n > g: the group spans nodes)
        f_e = 0,   f_i = 1               (n <= g: one node, t = (n - 1)/n · M/β_i)

    This is NCCL's own cost model of a ring: src/graph/tuning.cc (v2.18.1, the NCCL of the torch 2.1
    images) ncclTopoTuneModel, busBw = nChannels · bwInter for more than two nodes (the per-channel rate
    of the slowest link), time = nBytes / (busBw · nRanks/nsteps), one term.  M = msg_bytes is the full
    buffer (before a reduce-scatter, after an all-gather); β_e per GPU (its NIC), β_i the scale-up ring
    rate.  Units: B, counts, B/s; s out.
    Example: M = 4e9 B, n = 512, g = 8, β_i = 368e9, β_e = 48e9 B/s: 511/512·4e9·max(0.875/368e9,
    0.125/48e9) = 0.0103963 s (the NIC share; a two-level RS inside then across the nodes would add the
    two stages: 0.0095109 + 0.0102539 = 0.0197648 s).
    """
    m, n, loc, bi, be = _f(msg_bytes, n, n_local, bw_intra, bw_inter)
    n = floor_pos(n, 1.0)
    g = jnp.clip(loc, 1.0, n)
    multi = n > g
    f_i = jnp.where(multi, (g - 1.0) / g, 1.0)
    f_e = jnp.where(multi, 1.0 / g, 0.0)
    return (n - 1.0) / n * jnp.maximum(m, 0.0) * jnp.maximum(f_i / floor_pos(bi, 1.0), f_e / floor_pos(be, 1.0))


# Megatron-Core's default DDP bucket: max(40M, 1M · dp·cp) parameters ("larger DP sizes need larger buckets to
# ensure collectives do not become latency-bound"; DistributedDataParallelConfig.bucket_size, distributed_data_
# parallel.py: `max(40000000, 1000000 * dp_group.size())`)
MEGATRON_BUCKET_MIN_PARAMS = 40e6
MEGATRON_BUCKET_PARAMS_PER_RANK = 1e6


def bucket_count(n_params, dp, bucket_params=0.0) -> Array:
    """Gradient buckets a ZeRO-1 step reduces (and gathers) one collective each: ⌈P / B⌉, count.

    B = bucket_params, or where it is 0 Megatron-Core's default max(40e6, 1e6·dp) parameters.
    Example: P = 4e9 parameters on the rank, dp 128: B = 1.28e8, 32 buckets; dp 16: B = 4e7, 100.
    """
    n, d, b = _f(n_params, dp, bucket_params)
    size = jnp.where(b > 0, b, jnp.maximum(MEGATRON_BUCKET_MIN_PARAMS, MEGATRON_BUCKET_PARAMS_PER_RANK * d))
    return jnp.maximum(jnp.ceil(floor_pos(n, 0.0) / floor_pos(size, 1.0)), 1.0)


class DataParallelTimes(NamedTuple):
    fixed_s: Array                  # DP collectives once per step, s
    per_microbatch_s: Array         # DP collectives per micro-batch (ZeRO-3), s
    tail_fixed_s: Array             # of fixed_s: the collective no overlap can hide (TAIL), s
    tail_per_microbatch_s: Array    # of per_microbatch_s: the same per micro-batch, s


def data_parallel_times(grad_bytes, param_bytes, **kw):
    """`data_parallel_collectives`' (time once per step, time per micro-batch), s."""
    t = data_parallel_collectives(grad_bytes, param_bytes, **kw)
    return t.fixed_s, t.per_microbatch_s


def data_parallel_collectives(grad_bytes, param_bytes, *, dp, shard, zero_stage, dp_local, bw_intra, alpha_intra,
                              bw_inter, alpha_inter, layers=1.0, bw_intra_ring=None,
                              buckets=1.0) -> DataParallelTimes:
    """`data_parallel_comm` split as (time once per step, time per micro-batch), s, with their unhideable tails.

    ZeRO-3 gathers and reduce-scatters per micro-batch; the other stages communicate once
    per step.  The training scenario computes these outside its micro-batch-size lanes.
    Reduce-scatters and all-gathers carry the bytes (`flat_ring_bytes_s`: the slower of the NIC and
    scale-up shares, which the ring moves at the same time) and the latency (`ring_latency_s`) of
    NCCL's flat ring, once per collective: ZeRO-2/3 (FSDP, one unit per
    transformer block: FULL_SHARD / SHARD_GRAD_OP gather and reduce-scatter each block on its own)
    issue `layers` of each kind per pass, ZeRO-1 `buckets` (one collective per gradient bucket, `bucket_count`;
    each pays the ring's latency: BUCKETS).  All-reduces keep the two-level
    latency (NCCL's tree for all-reduce).  `bw_intra_ring` (default bw_intra): the scale-up rate of the
    reduce-scatters and all-gathers, which NVLink SHARP does not accelerate (NCCL runs them as rings;
    NVIDIA/nccl#1083, #1506); the all-reduces keep bw_intra (NVLS where the part has it).

    TAIL: overlap hides a collective behind compute that runs after it is issued; one of them has none.
    The gradient bucket holding the first layers is ready only when the backward ends, so its
    reduce-scatter (DDP: its all-reduce) runs after the last kernel; the parameter bucket the first layer
    needs is gathered after the optimizer step and before the forward (Megatron-Core's
    overlap_param_gather dispatches the first bucket's all-gather from the optimizer step and waits for it
    in the first forward pre-hook; FSDP gathers unit 0 at the start of each micro-batch's forward and
    reduce-scatters the last unit after its backward).  Tail = one issue's share of the step's
    collectives: (RS + AG + replication AR)/issues (ZeRO-1/2), AR/buckets (DDP), per micro-batch
    (AG + RS)/layers (ZeRO-3).  The bucket the backward fills last is the remainder of P/B, anywhere in
    (0, B]: the mean bucket P/⌈P/B⌉ stands for it (smooth in P).  Megatron-Core's bucket grows with dp
    (`bucket_count`), so the tail does too: Llama-15B-like 3.75e9 parameters per rank at dp 512 hold 8
    buckets of 4.7e8, one RS + AG ≈ 1/8 of the step's DP time.
    """
    ring_bw = bw_intra if bw_intra_ring is None else bw_intra_ring
    g, w, d, ds, zs, loc, nl, nb = _f(grad_bytes, param_bytes, dp, shard, zero_stage, dp_local, layers, buckets)
    d = floor_pos(d, 1.0)
    ds = jnp.clip(ds, 1.0, d)
    rep = d / ds
    loc_s = jnp.clip(loc, 1.0, ds)

    def rs(x, n, local):
        return hierarchical_reduce_scatter(x, local, n / local, bw_intra, alpha_intra, bw_inter, alpha_inter)

    def rs_bytes(x, n, local):
        return flat_ring_bytes_s(x, n, local, ring_bw, bw_inter)

    ar_full = 2.0 * rs(g, d, jnp.clip(loc, 1.0, d))
    # the replication all-reduce of the shard runs across the groups (outside the node once d_s spans it)
    rep_local = jnp.clip(loc / ds, 1.0, rep)
    ar_rep = 2.0 * rs(g / ds, rep, rep_local)
    issues = jnp.where(zs > 1.5, floor_pos(nl, 1.0), floor_pos(nb, 1.0))
    lat = issues * ring_latency_s(ds, loc_s, alpha_intra, alpha_inter)
    rs_g, ag_w = rs_bytes(g, ds, loc_s) + lat, rs_bytes(w, ds, loc_s) + lat
    fixed = jnp.where(zs > 2.5, ar_rep, jnp.where(zs > 0.5, rs_g + ag_w + ar_rep, ar_full))
    per_mb = jnp.where(zs > 2.5, 2.0 * ag_w + rs_g, 0.0)
    # TAIL: one issue of each kind (the DDP all-reduce is bucketed as ZeRO-1's reduce-scatter is)
    issues_ar = jnp.where(zs > 0.5, issues, floor_pos(nb, 1.0))
    return DataParallelTimes(fixed, per_mb, fixed / issues_ar, jnp.where(zs > 2.5, (ag_w + rs_g) / issues, 0.0))


def exposed(t_comm_s, overlap, window_s) -> Array:
    """Exposed communication: max((1 - overlap)·t, t - window), s.

    `overlap` is the fraction a framework *tries* to hide; it can only hide behind the
    compute that runs concurrently (`window`).  Example: t = 0.1, overlap 1, window 0.04: 0.06.
    The floor at 0 passes the derivative at 0 (floor_pos): at overlap = 1 with t <= window the
    exposure is 0 and d/d(overlap) = -t, the only admissible side (jnp.maximum's tie gave -t/2).
    """
    t, o, w = _f(t_comm_s, overlap, window_s)
    return floor_pos(jnp.maximum((1.0 - o) * t, t - w), 0.0)


def low_precision_cast_bytes(tokens, hidden, kv_ratio, ffn_ratio, element_bytes, full_recompute=0.0,
                             amax_pass=0.0) -> Array:
    """HBM bytes per layer of quantizing GEMM operands to a sub-16-bit format (FP8/FP4 training).

    FP8 recipes (Transformer Engine, torchao float8) keep activations and gradients in BF16
    between ops and cast each GEMM operand that is not already low precision: read it in
    BF16 (2 B) and write the low-precision copy and the transposed copy the other backward
    GEMM needs (Hopper FP8 tensor cores take only the TN layout: TE `cast_transpose`), 2·e B,
    with e = element_bytes (fp8 1, fp4 0.5); the amax is taken in the same pass (delayed
    scaling, TE's default).  amax_pass = 1 (TITAN2, coord.md): dynamic tensorwise scaling
    (torchao float8, torchtitan's default) takes the amax in a kernel of its own before the
    cast, one more bf16 read, + 2 B per element (torchao torchao/testing/float8/roofline_utils.py,
    get_tensor_memory_traffic_ovhd_s, tensorwise input / grad_output: "kernel 1: x_bf16 ->
    max_abs", "kernel 3: read in bf16, write twice in float8": 2 + 2 + 2·1 B).
    Per token, in units of the hidden size h, for a pre-norm block with GQA ratio g =
    kv_ratio and gated MLP width r·h (r = ffn_ratio):
      forward inputs  QKV x, attention output, MLP x (gate and up share it), down input r:
                      (3 + r)·h, run again under full recomputation;
      backward grads  of the outputs QKV (1 + 2g)·h, proj h, gate and up 2r·h, down h:
                      (3 + 2g + 2r)·h.
      bytes = tokens·h·(2 + 2e + 2·amax_pass)·((3 + r)·(1 + full) + 3 + 2g + 2r)
    Weights are cast once per step (cached across micro-batches), not counted here.
    element_bytes >= 2 (16-bit and wider) gives 0.  Example: Llama-3-8B (h 4096, g 1/4,
    r 3.5), 16,384 tokens, fp8: 16384·4096·4·(6.5 + 10.5) = 4.56e9 B per layer (dynamic
    scaling, amax_pass = 1: 16384·4096·6·17 = 6.85e9 B).
    Units: tokens (count), hidden (elements), bytes (B).
    """
    t, h, g, r, e, full, amax = _f(tokens, hidden, kv_ratio, ffn_ratio, element_bytes, full_recompute, amax_pass)
    count = (3.0 + r) * (1.0 + full) + 3.0 + 2.0 * g + 2.0 * r
    return jnp.where(e < 2.0, t * h * (2.0 + 2.0 * e + 2.0 * amax) * count, 0.0)


def optimizer_state_bytes(weight_bytes_per_param, master_code, moments_code) -> Array:
    """Adam optimizer-state bytes per parameter: master copy + moments, o = [w < 4]·M[master] + V[moments].

    M = MASTER_WEIGHT_BYTES (fp32 4, remainders 2, none 0, fp32_param 4), V = MOMENT_BYTES (fp32 8,
    bf16 4); weights stored at 4 B (fp32/tf32 training) are their own master (M counts 0).  Codes index
    the scenario choices master_weights ("fp32", "remainders", "none", "fp32_param") and optimizer_moments
    ("fp32", "bf16"); fp32_param (the fp32 parameter is the master: PyTorch FSDP mixed precision) has the
    same optimizer bytes as fp32, the difference is the weights the scenario keeps (training_setup, FSDP16).
    Sources: Megatron-LM docs distrib_optimizer.md (fp32 master + m + v =
    12 B), Apex contrib DistributedFusedAdam (store_param_remainders: "store bits required to
    reconstruct FP32 params"; dtype = optimizer-state dtype), Megatron-Core precision-aware
    optimizer (exp_avg_dtype, exp_avg_sq_dtype), Rae et al. 2021 App. C (Gopher: bf16 parameters
    and fp32 Adam state: 'occupy 2.5 TiB' for 280B = 2 + 8 B per parameter, gradients not counted).
    Examples: bf16 weights (2 B), fp32/fp32: 12; remainders/fp32: 10; none/bf16: 4; fp32_param/fp32: 12;
    fp32 weights: 8.
    Units: bytes per parameter; codes are ints (may be arrays).
    """
    (w,) = _f(weight_bytes_per_param)
    master = jnp.asarray(MASTER_WEIGHT_BYTES, w.dtype)[jnp.asarray(master_code, jnp.int32)]
    moments = jnp.asarray(MOMENT_BYTES, w.dtype)[jnp.asarray(moments_code, jnp.int32)]
    return jnp.where(w >= 4.0, 0.0, master) + moments


def fsdp_backward_buffer_bytes(unit_params, param_bytes, reduce_bytes) -> Array:
    """Per-unit gradient buffers of PyTorch FSDP's backward beyond its gathered parameters, bytes.

    B = n_u·(p + r): at the end of a unit's backward the autograd gradients of its unsharded parameters
    (param_dtype, p B each) are alive next to the previous unit's reduce-scatter input (reduce_dtype, r B
    each), which FSDP keeps until this unit's post-backward; the unit's own gathered weights and the
    prefetched next unit are the two gathered units counted apart.
    Source (FSDP2): torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py foreach_reduce allocates
    ``reduce_scatter_input = torch.empty(..., dtype=reduce_dtype)`` in the compute stream, copies the
    unsharded gradients in (foreach_reduce_scatter_copy_in) and only then clears them; it returns the
    input, which FSDPParamGroup.post_backward (_fsdp_param_group.py) keeps as
    ``comm_ctx.reduce_scatter_state`` until the next unit's post_backward waits on its event and drops it
    (before allocating its own); pre_backward prefetches the next unit (_backward_prefetch).  Read at
    _fsdp_collectives.py @010ae4a and _fsdp_param_group.py @002a76f; a torch-2.6-era copy (Dec 2024, the
    torchtitan benchmark's nightly 1963fc8: typing.List signatures, foreach_reduce returning the input as the
    first of six) has the same order.
    Example: a Llama-3-8B layer (n_u = 218,112,000: 2·4096² + 2·4096·1024 + 3·4096·14336 + 2·4096) with
    bf16 parameters and fp32 reduction: 218.112e6·(2 + 4) = 1.3087e9 B (1.22 GiB).
    Units: n_u parameters per rank; bytes per parameter; all may be arrays.
    """
    n, pb, rb = _f(unit_params, param_bytes, reduce_bytes)
    return n * (pb + rb)


# optimizer_kernel choices (training schema): one fused kernel, or PyTorch's multi-tensor (foreach) AdamW
OPTIMIZER_KERNELS = ("fused", "foreach")


def optimizer_update_bytes(optimizer_bytes, optimizer_bytes_per_param, grad_bytes_per_param,
                           weight_bytes_per_param, moment_bytes_per_param=8.0, kernel=0) -> Array:
    """HBM bytes of one optimizer step over a rank's optimizer shard (memory-bound, after the backward).

    n = O / o local parameters (O = optimizer_bytes, the shard's state bytes; o = master copy +
    moments per parameter; g = gradient, w = model weight, M = both moments' bytes per parameter).
    kernel 0, fused (Apex multi_tensor_adam under Megatron's optimizers and NeMo, DeepSpeed's
    FusedAdam, torch AdamW(fused=True), XLA's fused optax update): one pass reads the state and the
    gradient and writes the state and the updated model weight (Megatron's
    _copy_main_params_to_model_params, or the in-place update without a master copy)::

        fused   = 2·O + n·(g + w)

    kernel 1, foreach (torch.optim.AdamW(foreach=True), torch/optim/adamw.py _multi_tensor_adamw, no
    amsgrad, not capturable): eight multi-tensor kernels, counted per parameter with p = the updated
    parameter's bytes (the master copy where there is one, else w) and m = M/2 per moment:
    weight decay mul_ (r p, w p) 2p; exp_avg lerp_ (r m + g, w m) 2m + g; exp_avg_sq mul_ 2m;
    addcmul_(grad, grad) (r m + 2g, w m) 2m + 2g; sqrt 2m; div_ 2m; add_(eps) 2m; addcdiv_ (r p + 2m,
    w p) 2p + 2m::

        foreach = n·(4p + 7·M + 3g)

    Runs after the gradient reduction and before the next forward, so no GEMM hides it (the step
    adds bytes / HBM bandwidth).  Examples: Llama-3-8B, ZeRO-1 over 8 ranks (1.0e9 parameters a
    rank), o = 12, g = 4, w = 2, M = 8: fused 2·12e9 + 1e9·6 = 3.0e10 B (9.0 ms at 3.35 TB/s);
    foreach 1e9·(16 + 56 + 12) = 8.4e10 B.
    Units: bytes; bytes per parameter; kernel an int code into OPTIMIZER_KERNELS.
    """
    o_bytes, o, g, w, mom = _f(optimizer_bytes, optimizer_bytes_per_param, grad_bytes_per_param,
                               weight_bytes_per_param, moment_bytes_per_param)
    n = o_bytes / floor_pos(o, 1e-9)
    fused = 2.0 * o_bytes + n * (g + w)
    p = jnp.where(o - mom > 0.0, o - mom, w)
    foreach = n * (4.0 * p + 7.0 * mom + 3.0 * g)
    return jnp.where(jnp.asarray(kernel) == 1, foreach, fused)


def low_precision_activation_scale(element_bytes) -> Array:
    """Stored activations with sub-16-bit GEMM inputs, relative to the 16-bit count (dimensionless).

    Transformer Engine saves each linear layer's input for the weight-gradient GEMM in the
    quantized format it already made for the forward GEMM (FP8: 1 B per element, MXFP8 the
    column-wise copy only, + 1/32 B of scales not counted), while norms, activation functions
    and the attention kernel keep their BF16 inputs/outputs.  In Korthikanti et al.'s 34·s·b·h
    per-layer count (Table 2, 16-bit: QKV input 2, Q·K 4, V 2, projection input 2, dropout
    mask 1, norm inputs 4, MLP input 2, activation input 8, down-projection input 8, mask 1,
    bytes per s·b·h) the GEMM inputs QKV 2, MLP 2 and down 8 shrink to e/2 of their size, and the
    projection keeps the attention output O (BF16, saved by the flash kernel) plus its own
    e-byte copy::

        scale = (34 - 12 + 6·e + e)/34 = (22 + 7·e)/34   for e < 2,   1 otherwise

    e = bytes per element of the GEMM precision (fp8 1: 29/34 = 0.853; fp4 0.5: 0.75).  Applies to
    the stored form without recomputation or with selective recomputation; full recomputation
    keeps only each layer's BF16 input (scale 1).  Source: TransformerEngine pytorch
    module/linear.py and layernorm_linear.py (1.x: saves the FP8 transpose `inputmat_t` when the
    wgrad GEMM runs in FP8, the default; 2.x: the quantized input with
    `update_usage(rowwise_usage=False, columnwise_usage=True)`, "discard row-wise data since it is not
    needed in backward pass"), Korthikanti et al. 2022 (arXiv:2205.05198) §4.1.
    """
    (e,) = _f(element_bytes)
    return jnp.where(e < 2.0, (22.0 + 7.0 * e) / 34.0, 1.0)


def offload_resident_layers(layers, offload_layers, in_flight) -> Array:
    """Layers' activations held in HBM when k layers of a pipeline stage are offloaded to host memory.

    Megatron-Core cpu_offloading_num_layers = k (Transformer Engine's CPU-offload context,
    activations only): the stored activations of the first k transformer layers are copied to
    host memory on a side stream as soon as each layer's forward ends and copied back one layer
    ahead of its backward; one offloaded layer is in transit at a time.  (Megatron-Core's
    transformer_config.py refuses CPU offloading with pipeline parallelism or recomputation and
    needs k < L; for pp > 1 this extends it per stage.)  With F
    micro-batches in flight on the stage (walls.parallel.interleaved_activation_factor)::

        resident = F·(L - k) + min(k, 1)        (k clipped to [0, L])

    Units: layers (count, float), F (micro-batches).  Example: L = 80, k = 40, F = 1: 41.
    Source: TransformerEngine pytorch/cpu_offload.py (get_cpu_offload_context,
    AsyncDoubleBufferGroupOffloadHandler); Megatron-Bridge perf configs (Llama 3 70B on GB200:
    cpu_offloading_num_layers = 40).
    """
    n, k, f = _f(layers, offload_layers, in_flight)
    k = jnp.clip(k, 0.0, n)
    return f * (n - k) + jnp.minimum(k, 1.0)


def offload_exposed_s(bytes_one_way, host_bw_bytes_per_s, t_compute_s) -> Array:
    """Step time the activation offload adds: what the host copies do not hide behind compute, s.

    The device-to-host copies (bytes_one_way = every offloaded layer of every micro-batch of the
    step) run during the forward passes and the host-to-device copies during the backward
    passes, each on its own direction of the host link (β one way) and overlapped with the
    compute of the same phase (forward ≈ 1/3, backward ≈ 2/3 of t_compute; Transformer Engine's
    AsyncDoubleBufferGroupOffloadHandler: "D2h and h2d copying are completely hidden behind
    computation if computation time of a layer is longer than host-device communication time",
    its offload windows spread over the layers)::

        X = bytes / β;   exposed = max(0, X - t/3) + max(0, X - 2·t/3)

    Example: 182e9 B at 450e9 B/s (X = 0.404 s) behind t = 4 s: 0; behind t = 0.6 s: 0.2044 + 0.0044 = 0.209 s.
    Units: bytes (B), B/s, s.  β = 0 (no host link in the catalog) is treated as 1 B/s.
    """
    x, bw, t = _f(bytes_one_way, host_bw_bytes_per_s, t_compute_s)
    one_way = x / floor_pos(bw, 1.0)
    return jnp.maximum(one_way - t / 3.0, 0.0) + jnp.maximum(one_way - 2.0 * t / 3.0, 0.0)


__all__ = [
    "ACTIVATION_SCALE",
    "MEGATRON_BUCKET_MIN_PARAMS",
    "MEGATRON_BUCKET_PARAMS_PER_RANK",
    "bucket_count",
    "DataParallelTimes",
    "data_parallel_collectives",
    "DUALPIPE_SLOT_FRAC",
    "bubble_slots",
    "dualpipe_bubble_slots",
    "pipeline_in_flight",
    "GRAD_BYTES",
    "MASTER_WEIGHT_BYTES",
    "MOMENT_BYTES",
    "OPTIMIZER_KERNELS",
    "OPTIMIZER_BYTES",
    "PARAM_GATHER_BYTES",
    "WEIGHT_BYTES",
    "DataParallelComm",
    "data_parallel_comm",
    "data_parallel_times",
    "exposed",
    "flat_ring_bytes_s",
    "fsdp_backward_buffer_bytes",
    "hierarchical_reduce_scatter",
    "interleaved_activation_factor",
    "low_precision_activation_scale",
    "low_precision_cast_bytes",
    "offload_exposed_s",
    "offload_resident_layers",
    "op_sac_activation_elements",
    "op_sac_recompute_fraction",
    "optimizer_state_bytes",
    "optimizer_update_bytes",
    "reduce_scatter",
    "ring_latency_s",
]
