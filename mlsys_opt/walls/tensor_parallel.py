"""Tensor-parallel collectives as PyTorch runs them: DTensor sequence parallelism and async TP.

The training scenario's default TP term (Korthikanti et al. 2022 §4.2.2: per layer and pass one
all-gather before the QKV and MLP-up GEMMs and one reduce-scatter after the output and MLP-down
GEMMs, NCCL on sequence-first [s, b, h] activations, nothing else) fits Megatron-LM / NeMo /
MaxText.  PyTorch's tensor parallelism differs in two measured ways (``training`` parameter
``tp_comm``):

- ``dtensor`` (torchtitan's "vanilla TP", ``parallelize_module`` with ``SequenceParallel``):
  activations are batch-first [b, s, h] and sharded on dim 1, so every all-gather is
  ``all_gather_into_tensor`` on dim 0 followed by ``torch.cat(torch.chunk(out, tp), dim=1)``
  and every reduce-scatter is preceded by the inverse ``torch.cat`` (torch
  ``distributed/_functional_collectives.py`` all_gather_tensor / reduce_scatter_tensor for
  gather/scatter dim != 0): one more HBM copy of the whole (unsharded) tensor per collective
  (torchtitan PR #437, tianyu-l / awgu 2024: "an extra aten.cat after each collective ... for 8k
  seq len, batch size 1 on H100, these two cats take about 0.18 ms out of 3 ms of FFN compute").
  The cat feeding the backward reduce-scatter (whose input is the sum of the QKV / gate-up input
  gradients, a pointwise add) fuses into that add under torch.compile; the others sit between an
  extern kernel (collective or GEMM) and the next and stay copies [`dtensor_layout_copy_bytes`].
  float8 tensorwise TP (torchao ``Float8ColwiseParallel`` / ``PrepareFloat8ModuleInput`` /
  ``Float8RowwiseParallel``, torchtitan ``apply_tp(enable_float8_tensorwise_tp)``) casts before
  the all-gathers, forward and backward (``NoopFwToFloat8BwDynamic`` before the output
  redistribute), so the all-gathers move float8, the reduce-scatters (GEMM outputs) bf16.
- ``async`` (torch ``_inductor.config._micro_pipeline_tp`` + ``enable_symm_mem_for_group``,
  torchtitan ``--parallelism.enable_async_tensor_parallel``): inductor's micro_pipeline_tp pass
  replaces all-gather -> matmul by ``symm_mem.fused_all_gather_matmul`` and matmul ->
  reduce-scatter by ``fused_matmul_reduce_scatter`` (and their ``_scaled_`` float8 forms),
  restriding the producers so no layout copy remains.  Each is decomposed into tp chunks
  (torch ``distributed/_symmetric_memory/__init__.py``): copy-engine pulls of one peer's chunk
  at a time (copies serialise), each overlapped with the GEMM of another chunk
  (Wang et al., ASPLOS 2023, "Overlap communication with dependent computation via
  decomposition"), on two alternating streams [`decomposed_exposed_s`]; the all-gather first
  copies the local shard into the symmetric buffer, not overlapped (the code's comment: "we are
  giving up the chance to overlap 'mv' and 'b'"), and the reduce-scatter ends with a separate
  reduction of the tp stacked partial chunks [`symm_mem_fixed_s`].  Only the forward's
  collectives gain (and the re-run forward's under full recomputation): the backward
  reduce-scatters are not fused (their input is a sum of matmuls: pytorch/pytorch#149946,
  danielvegamyhre 2025: "only valid scaled_mm-reduce-scatter patterns in the forward graph,
  but not in the backward graph"), and the PyTorch async-TP post's Figure 9 measures no backward
  gain at all (Llama-3-8B: the whole step gains what the forward gains), so the backward's
  all-gathers and per-op SAC's recomputed ones are counted as DTensor runs them [`async_tp_layer_s`].
- ``async_ag`` (the same, with only the all-gather -> matmul fusions): torchtitan Dec-2024 float8
  tensorwise (torch 1963fc8 ~ 2.6, torchao eab345c ~ 0.8), where a forward no-op autograd.Function of
  torchao's Float8Linear sits between each row-parallel GEMM and its reduce-scatter and the
  matmul -> reduce-scatter pattern does not match (``async_tp_layer_s`` rs_fused = 0).

float8 tensorwise TP's own costs (FP8TP, issue 12; torchao 6243040): the four float8-all-gathered operands of a
block are copied whole into their weight-gradient layout [`float8_tp_transpose_bytes`], and every cast of a
TP-sharded DTensor waits for a scalar amax all-reduce [`float8_tp_amax_syncs`].

Not modelled (no source gives a size): the lower efficiency of the M/tp-row chunk GEMMs (the
two-stream schedule exists to hide that wave quantisation) and copy-engine bandwidth other than
the scale-up ring rate.  Conventions: pure ``jax.numpy``; SI floats (s, bytes, B/s, FLOP/s),
scalars or arrays broadcasting; jit/vmap/grad-able; branch-free; 0 exposure at tp <= 1.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from mlsys_opt._types import Array
from mlsys_opt.walls._masked import any_nan, floor_pos, nan_where, nonneg

__all__ = ["FLOAT8_TP_AMAX_BACKWARD", "FLOAT8_TP_AMAX_FORWARD", "BlockGemms", "async_tp_layer_s", "block_gemm_s",
           "decomposed_exposed_s", "dtensor_layout_copy_bytes", "float8_tp_amax_syncs", "float8_tp_transpose_bytes",
           "symm_mem_fixed_s"]

# FP8TP (issue 12): float8 tensorwise TP casts on TP-sharded DTensors, one amax all-reduce each
# [`float8_tp_amax_syncs`]: per block forward 4 activations + 7 weights, backward 7 output gradients
FLOAT8_TP_AMAX_FORWARD = 11.0
FLOAT8_TP_AMAX_BACKWARD = 7.0


class BlockGemms(NamedTuple):
    """Per-rank GEMM times (s) of one Llama-style block's forward for one micro-batch: the windows
    the decomposed forward collectives overlap."""
    qkv_s: Array     # wq, wk, wv: the attention input all-gather's consumers
    o_s: Array       # wo: produces the attention output reduce-scatter
    up_s: Array      # w1, w3 (gated MLP): the MLP input all-gather's consumers
    down_s: Array    # w2: produces the MLP output reduce-scatter


def block_gemm_s(tokens, hidden, attn_width, kv_width, ffn, tp, rate_flop_per_s) -> BlockGemms:
    """GEMM times of a pre-norm block with GQA and a gated (SwiGLU) MLP, per rank, s.

        unit = 2·T·h/(tp·R);  qkv = unit·(a + 2·kv)/h,  o = unit·a/h,  up = unit·2f/h,  down = unit·f/h

    tokens T (rows of the micro-batch on this rank's sequence shard, gathered: b·s/cp), hidden h,
    attn_width a = heads·head_dim, kv_width = kv_heads·head_dim, ffn f, tp, R = achieved GEMM
    FLOP/s.  The shapes are those of walls.parallel.op_sac_recompute_fraction (torchtitan's Llama).
    Example: Llama-3-70B (h 8192, a 8192, kv 1024, f 28672), T = 131,072, tp 8, R = 535 TFLOP/s:
    unit 4.11 ms, qkv 5.13, o 4.11, up 28.8, down 14.4 ms.
    """
    t, h, a, kv, f, n, r = nonneg(tokens, hidden, attn_width, kv_width, ffn, tp, rate_flop_per_s)
    per_h = 2.0 * t * h / (floor_pos(n, 1.0) * floor_pos(r, 1.0))     # = unit/h: s per unit of GEMM width
    return BlockGemms(per_h * (a + 2.0 * kv), per_h * a, per_h * 2.0 * f, per_h * f)


def decomposed_exposed_s(comm_s, gemm_s, tp, fixed_s=0.0) -> Array:
    """Exposed time (s) of a collective decomposed into tp chunks and pipelined with its GEMM.

    tp - 1 chunk transfers of c = comm/(tp - 1) each (copies serialise), tp chunk GEMMs of
    g = gemm/tp each; the local chunk's GEMM needs no transfer, every other chunk's GEMM waits for
    its transfer, and a transfer overlaps the previous chunk's GEMM.  The pipeline takes
    g + (tp - 1)·max(c, g), i.e. beyond the GEMM time::

        exposed = (tp - 1)·max(c - g, 0) + fixed = max(comm - (tp - 1)/tp·gemm, 0) + fixed

    (Wang et al., ASPLOS 2023 §3; torch symm_mem ``_pipelined_multi_all_gather_and_consume`` /
    ``_pipelined_produce_and_all2all``, which chain the copies and hide each behind one chunk's
    GEMM on two alternating streams).  fixed_s: the work of the fused op that overlaps nothing
    [`symm_mem_fixed_s`].  0 at tp <= 1.  Example: comm 5.11 ms, gemm 4.11 ms, tp 8: 1.51 ms + fixed;
    comm 5.11 ms, gemm 28.8 ms: fixed only.
    """
    c, g, n, x = nonneg(comm_s, gemm_s, tp, fixed_s)
    return nan_where(any_nan(n), jnp.where(n > 1.0, jnp.maximum(c - (n - 1.0) / floor_pos(n, 1.0) * g, 0.0) + x, 0.0))


def symm_mem_fixed_s(ag_full_bytes, rs_full_bytes, tp, mem_bw, alpha_s) -> tuple[Array, Array]:
    """Non-overlapped work of one fused all-gather-matmul and one fused matmul-reduce-scatter, s.

        ag_fixed = 2·(A/tp)/BW + 3·α        (copy of the local shard into the symmetric buffer; barriers)
        rs_fixed = (tp + 1)·(R/tp)/BW + 2·tp·α   (reduction of the tp stacked partial chunks:
                                                   read tp chunks, write one; barriers)

    A: the all-gathered tensor's bytes (whole, after the gather), R: the reduce-scatter input's
    bytes (whole GEMM output), BW: HBM B/s, α: one symmetric-memory barrier (signal-pad round,
    taken as the scale-up link latency).  torch symm_mem: ``copy_shard(dst=local_p2p_bufs,
    src=shard)`` + ``barrier(channel=1)`` before the pipeline, ``barrier(channel=0)`` at both ends;
    ``_pipelined_produce_and_all2all``: two barriers per step, then
    ``reduce_fn(stacked_partials ...)`` (torch.sum over the tp partials).  0 at tp <= 1.
    Example: A = R = 2.15 GB (Llama-3-70B, 16 x 8192 tokens, bf16), tp 8, BW 2.0 TB/s, α 0:
    ag 0.27 ms, rs 1.21 ms.
    """
    a, r, n, bw, al = nonneg(ag_full_bytes, rs_full_bytes, tp, mem_bw, alpha_s)
    n_safe = floor_pos(n, 1.0)
    bw = floor_pos(bw, 1.0)
    multi = n > 1.0
    ag = jnp.where(multi, 2.0 * a / n_safe / bw + 3.0 * al, 0.0)
    rs = jnp.where(multi, (n + 1.0) * r / n_safe / bw + 2.0 * n * al, 0.0)
    return nan_where(any_nan(n), ag), nan_where(any_nan(n), rs)


def async_tp_layer_s(ag_s, rs_s, gemms: BlockGemms, tp, ag_fixed_s, rs_fixed_s, *, forward_passes=1.0,
                     op_passes=0.0, ag_copy_s=0.0, rs_fused=1.0, rs_copy_s=0.0) -> Array:
    """Exposed TP time (s) of one block and micro-batch under PyTorch async TP.

    x(comm, gemm, fixed) = decomposed_exposed_s; F = forward_passes (the forward, + its re-run under
    full recomputation), P = op_passes (1 with per-op SAC: two recomputed all-gathers)::

        exposed = F·[x(ag, qkv, f_ag) + x(ag, up, f_ag)]                                         (fused)
                + F·[u·(x(rs, o, f_rs) + x(rs, down, f_rs)) + (1 - u)·2·(rs + c_rs)]     (forward RS)
                + (2P + 2)·(ag + c_ag) + 2·rs                                                    (unfused)

    u = rs_fused: 1 when inductor also fuses the forward's matmul -> reduce-scatter (torch
    ``fuse_matmul_reduce_scatter``), 0 when only the all-gather -> matmul fusions happen and the two
    forward reduce-scatters run as DTensor runs them, each with its torch.cat copy c_rs (rs_copy_s).
    u = 0 is torchao <= 0.8 float8 tensorwise (torchtitan's Dec-2024 rows, torchao eab345c): its
    Float8Linear.forward ends with ``cast_output_to_float8_in_bw`` = ``NoopFwToFloat8BwDynamic.apply(output)``,
    an autograd.Function returning its input, i.e. a same-shape view (eager autograd's view_as of a returned
    input) between the GEMM's reshape and the Float8RowwiseParallel reduce-scatter; inductor's
    ``view_to_reshape`` turns it into a reshape before the post-grad passes (``remove_noop_ops`` drops
    same-shape views, not reshapes), and torch 2.6 micro_pipeline_tp ``_find_producer_matmul`` accepts
    only reshape(mm(reshape(A))): a reshape of a reshape is "no producer matmul", no fusion.  torchao 0.11
    (``matmul_with_hp_or_float8_args``) casts grad_output inside the matmul's own backward and has no
    such node; bf16 TP (torch ColwiseParallel / RowwiseParallel) never had it.

    Fused: the forward's collectives (and the re-run forward's, the same graph).  Unfused, as
    DTensor runs them: the backward's reduce-scatters (input: a sum of matmuls; pytorch#149946), its
    two output-gradient all-gathers and per-op SAC's recomputed all-gathers, each with its torch.cat
    copy c_ag (`dtensor_layout_copy_bytes`): the PyTorch async-TP post (Aug 2024, Figure 9, torchtitan
    Llama-3 on H100, local batch 12) gains 202 ms in the forward of Llama-3-8B (per-op SAC) and
    203 ms per step (TPS 4,494 -> 4,854 at 12,288 tokens per GPU): the backward gains nothing;
    Llama-3-70B (full recomputation) 0.91 s in the forward of 1.55 s per step, the re-run forward
    the rest.  ag_s / rs_s: one all-gather / reduce-scatter as NCCL runs it (s); gemms:
    `block_gemm_s`; ag_fixed_s / rs_fixed_s: `symm_mem_fixed_s`; ag_copy_s: one all-gather's cat
    copy (s).  0 at tp <= 1.
    Example (Llama-3-70B of `block_gemm_s`, bf16, ag = rs = 5.11 ms, F = 2, P = 0, fixed 0.268 / 1.208 ms,
    c_ag = 2.15 ms): forward (0.614 + 0.268) + (1.514 + 1.208) + 0.268 + 1.208 = 5.08 ms (x 2),
    unfused 2·(5.11 + 2.15) + 10.22 = 24.74 ms: 34.9 ms (DTensor: 12 x 5.11 + 10 x 2.15 = 82.8 ms);
    u = 0 with c_rs = 2.15 ms: forward 2 x [(0.614 + 0.268) + 0.268 + 2·(5.11 + 2.15)] = 31.34 ms, 56.1 ms.
    """
    a, r, n, fa, fr, fp, op, ca, u, cr = nonneg(ag_s, rs_s, tp, ag_fixed_s, rs_fixed_s, forward_passes, op_passes,
                                                ag_copy_s, rs_fused, rs_copy_s)
    u = jnp.minimum(u, 1.0)

    def x(comm, gemm, fixed):
        return decomposed_exposed_s(comm, gemm, n, fixed)

    fwd_rs = u * (x(r, gemms.o_s, fr) + x(r, gemms.down_s, fr)) + (1.0 - u) * 2.0 * (r + cr)
    fwd = x(a, gemms.qkv_s, fa) + x(a, gemms.up_s, fa) + fwd_rs
    unfused = (2.0 * op + 2.0) * (a + ca) + 2.0 * r
    return nan_where(any_nan(n), jnp.where(n > 1.0, fp * fwd + unfused, 0.0))


def dtensor_layout_copy_bytes(act_elements, ag_bytes_per_element, rs_bytes_per_element, tp, *,
                              forward_passes=1.0, op_passes=0.0) -> Array:
    """HBM bytes (per block and micro-batch) of DTensor sequence parallelism's layout copies.

    One read + one write of the whole tensor per collective that has an unfused ``torch.cat``
    (module docstring): the forward's two all-gathers and two reduce-scatters (× F =
    forward_passes), per-op SAC's two recomputed all-gathers (× P = op_passes), the backward's
    two output-gradient all-gathers (the backward reduce-scatters' cat fuses into the add)::

        bytes = 2·N·[(2F + 2P + 2)·e_ag + 2F·e_rs]

    N = act_elements (b·s/cp·h, the unsharded activation), e_ag / e_rs: bytes per element the
    all-gathers / reduce-scatters move (float8 TP: 1 / 2).  0 at tp <= 1.
    Example: Llama-3-8B, 12 x 8192 tokens, bf16, P = 1, F = 1: 2·4.03e8·(6·2 + 2·2) = 12.9 GB.
    """
    n_el, ea, er, n, fp, op = nonneg(act_elements, ag_bytes_per_element, rs_bytes_per_element, tp,
                                     forward_passes, op_passes)
    per = (2.0 * fp + 2.0 * op + 2.0) * ea + 2.0 * fp * er
    return nan_where(any_nan(n), jnp.where(n > 1.0, 2.0 * n_el * per, 0.0))


def float8_tp_transpose_bytes(tokens, hidden, element_bytes, tp) -> Array:
    """HBM bytes (per block) of the column-major copies of float8 TP's all-gathered GEMM operands.

    With float8 tensorwise TP (torchao ``PrepareFloat8ModuleInput`` / ``Float8RowwiseParallel``,
    torchtitan ``apply_tp(enable_float8_tensorwise_tp)``) four tensors per block are cast on the
    sequence shard and all-gathered in float8: the attention and MLP inputs (forward) and the output
    gradients of wo and w2 (backward: ``NoopFwToFloat8BwDynamic`` casts before the all-gather that is
    the reduce-scatter's backward).  Their weight-gradient GEMMs need the gathered tensor in the other
    layout, and ``torch._scaled_mm`` takes A row-major and B column-major only: torchao 6243040
    ``float8_ops.preprocess_addmm`` (``a_data.contiguous()`` / ``b_data.t().contiguous().t()``) copies the
    whole gathered tensor (read + write, e B each), where without TP inductor writes that copy in the
    cast kernel itself (torchao ``roofline_utils``: "write twice in float8") -- the copy
    `walls.parallel.low_precision_cast_bytes` charges on the shard, e·h/tp per token.  The all-gather
    (an extern collective) sits between cast and copy, so nothing fuses; the three (two) consumers of
    one gathered input share one copy (AOTAutograd CSE).  Per token (of the gathered micro-batch)::

        bytes = T·h·4·e·(2 - 1/tp)        (tp > 1 and e < 2, else 0)

    tokens T (gathered rows on this rank), hidden h, e = element_bytes (fp8 1).  Units: bytes.
    Example: Llama-3-8B, 12 x 8192 tokens, fp8, tp 8: 98304·4096·4·1.875 = 3.02e9 B per block.
    """
    t, h, e, n = nonneg(tokens, hidden, element_bytes, tp)
    n_safe = floor_pos(n, 1.0)
    out = jnp.where((n > 1.0) & (e < 2.0), t * h * 4.0 * e * (2.0 - 1.0 / n_safe), 0.0)
    return nan_where(any_nan(n, e), out)


def float8_tp_amax_syncs(forward_passes=1.0) -> Array:
    """Blocking amax all-reduces per block and micro-batch under float8 tensorwise TP (count).

    torchao 6243040 dynamic tensorwise scaling takes ``torch.max(torch.abs(x))`` (``float8_utils.tensor_to_amax``)
    of a TP-sharded DTensor: a Partial(max) result that DTensor all-reduces over the TP group before the
    scale is used (``amax_to_scale``: clamp, divide), so every cast of a sharded tensor waits for one
    scalar all-reduce on the TP ranks, in the compiled graph's program order right before its cast
    (torchtitan 820504e sets no ``reorder_for_compute_comm_overlap``).  Per block: forward 4 activation
    casts (``PrepareFloat8ModuleInput`` attention / feed_forward, ``Float8RowwiseParallel`` wo / w2 inputs)
    + 7 weight casts (``Float8Linear.forward`` ``_get_weight_scale`` of the TP-sharded weight), re-run with
    each recomputed forward (F = forward_passes; the saved ``aten.max`` is the pre-reduction partial);
    backward 7 output-gradient casts (``NoopFwToFloat8BwDynamic.backward``)::

        count = 11·F + 7

    Without TP the amax is local (no collective).  Example: per-op SAC, F = 2: 29.
    """
    (f,) = nonneg(forward_passes)
    return FLOAT8_TP_AMAX_FORWARD * f + FLOAT8_TP_AMAX_BACKWARD
