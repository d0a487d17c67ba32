"""Serving building blocks: replica geometry, the decode step, the prefill, the fused chunk.

Helpers of `mlsys_opt.scenarios.serving`, each a small pure function returning a
NamedTuple of arrays shaped like the batch.  Every equation is a wall
(`walls.node`, `walls.serving`, `walls.fleet`); here only glue: byte and FLOP
counts, degrees, and which wall sees which bandwidth.

Times are whole-model latencies: a replica is tp·ep accelerators per pipeline stage
(D = tp·ep lanes run a stage in parallel, the pp stages run one after another), so
per-lane bytes / per-lane bandwidth summed over the stages is bytes / (D·bw).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from .._types import BYTES_PER_ELEMENT, Array
from ..catalog.achievable import GEMM_REF_EFF
from ..walls import fleet, node
from ..walls import serving as sw
from ..walls._masked import floor_pos, safe_div
from .efficiency import (
    Efficiency,
    decode_compute_efficiency,
    gemm_curve,
    gemm_dims,
    tile_factor,
)
from .parts import Common, group_link_bw, materialized
from .schema import KV_PRECISIONS, OFFLOAD, SCHEDULERS

OFFLOAD_KV, OFFLOAD_WEIGHTS = OFFLOAD.index("kv"), OFFLOAD.index("weights")
SERIAL = SCHEDULERS.index("serial")
assert KV_PRECISIONS[0] == "auto"


class Replica(NamedTuple):
    """Geometry, sizes and rates of one replica (per-lane rates; see the module docstring)."""
    tp: Array
    pp: Array
    ep: Array
    lanes: Array               # D = tp·ep accelerators per pipeline stage
    devices: Array             # tp·pp·ep accelerators per replica
    batch: Array               # decode slots
    shared_params: Array       # parameters every token uses (dense: all; MoE: attention + shared experts)
    expert_params: Array       # parameters of one routed expert (0 for dense)
    compute_params: Array      # parameters per token on the busiest lane's critical path (imbalance)
    imbalance: Array           # routing imbalance in effect (1 unless ep > 1)
    weight_bytes: Array        # target weights of the replica, bytes (the draft's are in memory_bytes)
    kv_bytes_per_token: Array  # target KV of one token over all layers at kv_precision, bytes
    peak: Array                # FLOP/s per lane
    bw: Array                  # achieved HBM B/s per lane
    host_bw: Array             # host link B/s per lane
    spill_frac_w: Array        # share of the weights in host memory
    spill_frac_kv: Array       # share of the KV in host memory
    offload_bytes: Array       # bytes per accelerator spilled to host
    memory_bytes: Array        # HBM per accelerator (weights + KV at full batch − spill)
    kv_bytes: Array            # KV per replica at full batch, prompt + output, bytes
    tax_s: Array               # dispatch per forward pass
    in_node: Array             # bool: the replica fits in one scale-up domain


def embedding_extra_bytes(vocab, hidden, weight_bytes):
    """Extra bytes of the input embedding and the LM head kept at 16 bits under 8/4-bit weights, B.

    E = 2·V·h parameters (untied input and output embeddings, as Llama 2/3 8B-405B) stay
    BF16/FP16 when the GEMM weights are quantized: TensorRT-LLM's FP8/INT4 quantization
    (modelopt) excludes `lm_head` and the embedding by default, vLLM's FP8/AWQ/GPTQ linear
    methods do not quantize `ParallelLMHead`/`VocabParallelEmbedding`.  Extra = E·(max(b, 2) − b)
    with b the weight bytes per element (0 at 16 bits and above).  Llama-3-70B at fp8:
    2·128,256·8,192 = 2.10e9 params → +2.10 GB.  Numbers or arrays (the row planner of
    `calibration.runs` calls it with catalog floats).
    """
    short = 2.0 - weight_bytes
    return 2.0 * vocab * hidden * 0.5 * (short + abs(short))    # max(short, 0), for floats and arrays alike


def replica(p, c: Common, host_bw_per_lane, eff: Efficiency, *, prompt, out_tok, spec_on) -> Replica:
    """Replica geometry, MoE split, KV at kv_precision, draft model, offload spill (bytes, B/s).

    MoE: with A = active and N = total parameters, E experts and top-k routing,
    one expert has e = (N − A)/(E − k) parameters and the rest s = N − E·e is used by
    every token (attention, embeddings, shared experts).  The busiest of ep ranks
    sees `moe_imbalance` times the mean routed tokens, so a token costs s + k·e·imb
    on the critical path.  The draft model of speculative decoding adds
    draft_cost_frac of the target's weights and KV (its cost ratio ≈ its size ratio).
    Offload (schema.OFFLOAD): the KV or the weights that do not fit spill to host
    memory (walls.serving.offload_spill_bytes).
    """
    tp, pp = floor_pos(p.tp, 1.0), floor_pos(p.pp, 1.0)
    ep = floor_pos(p.ep, 1.0)
    lanes = tp * ep
    devices = lanes * pp
    batch = floor_pos(p.batch, 1.0)
    e_n, k = c.n_experts, jnp.maximum(c.top_k, 1.0)
    moe = (e_n > k) & ~c.is_cnn
    expert = jnp.where(moe, safe_div(c.n_params - c.n_active, e_n - k, fill=0.0), 0.0)  # dense: no experts
    shared = c.n_params - e_n * expert
    imb = jnp.where(ep > 1.0, jnp.maximum(p.moe_imbalance, 1.0), 1.0)
    compute_params = jnp.where(c.is_cnn, c.n_eff, shared + k * expert * imb)
    draft = 1.0 + jnp.where(spec_on, jnp.maximum(p.draft_cost_frac, 0.0), 0.0)

    code = jnp.asarray(p.kv_precision, jnp.int32)
    table = jnp.asarray((0.0, *BYTES_PER_ELEMENT), c.bpe.dtype)
    bpe_kv = jnp.where(code <= 0, c.bpe, table[jnp.clip(code, 0, len(KV_PRECISIONS) - 1)])
    kv_tok = node.kv_cache_bytes(c.n_layers, c.n_kv_heads, c.head_dim, 1.0, 1.0, bpe_kv,
                                         kv_latent_dim=c.kv_latent_dim)
    w_bytes = c.n_params * c.bpe + embedding_extra_bytes(c.vocab, c.hidden, c.bpe)
    kv = kv_tok * (prompt + out_tok) * batch

    w_dev, kv_dev = draft * w_bytes / devices, draft * kv / devices
    off = jnp.asarray(p.offload, jnp.int32)
    spill_kv = jnp.where(off == OFFLOAD_KV, sw.offload_spill_bytes(w_dev, kv_dev, c.capacity), 0.0)
    spill_w = jnp.where(off == OFFLOAD_WEIGHTS, sw.offload_spill_bytes(kv_dev, w_dev, c.capacity), 0.0)
    spill_w, spill_kv = jnp.where(c.wafer, 0.0, spill_w), jnp.where(c.wafer, 0.0, spill_kv)
    mem = jnp.where(c.wafer, kv_dev + 2.0 * draft * w_bytes / c.n_layers, w_dev + kv_dev - spill_w - spill_kv)
    return Replica(
        tp=tp, pp=pp, ep=ep, lanes=lanes, devices=devices, batch=batch, shared_params=shared,
        expert_params=expert, compute_params=compute_params, imbalance=imb, weight_bytes=w_bytes,
        kv_bytes_per_token=kv_tok, peak=c.peak, bw=c.mem_bw, host_bw=floor_pos(host_bw_per_lane, 1.0),
        spill_frac_w=spill_w / floor_pos(w_dev, 1.0), spill_frac_kv=spill_kv / floor_pos(kv_dev, 1.0),
        offload_bytes=spill_w + spill_kv, memory_bytes=mem, kv_bytes=kv,
        tax_s=eff.dispatch_s_per_layer * c.n_layers, in_node=devices <= c.apn)


def weight_read_s(r: Replica, c: Common, tokens) -> Array:
    """Weights one forward pass over `tokens` tokens reads, whole model, s.

    Shared weights always; routed experts only as many as the tokens touch
    (walls.serving.experts_touched, × imbalance on the busiest rank, at most all E); the LM
    head at 16 bits under quantized weights (`embedding_extra_bytes`).
    Offloaded share at the host-link rate (walls.serving.split_read_s).
    """
    touched = jnp.minimum(sw.experts_touched(c.n_experts, c.top_k, tokens) * r.imbalance, c.n_experts)
    # the LM head (half of embedding_extra_bytes) is read whole every pass, at 16 bits
    head = 0.5 * embedding_extra_bytes(c.vocab, c.hidden, c.bpe)
    read = (c.bpe * (r.shared_params + r.expert_params * touched) + head) / r.lanes
    return sw.split_read_s(read, read * r.spill_frac_w, r.bw, r.host_bw)


ACT_BYTES_MIN = 2.0   # activations exchanged between ranks are at least 16-bit (see comm_s)


def comm_s(r: Replica, c: Common, tokens) -> Array:
    """Megatron TP all-reduces (2 per layer), MoE all-to-alls (2 per layer, ep > 1), pp hops, s.

    The messages are activations, tokens·hidden elements at max(bytes of the precision, 2):
    8-bit and 4-bit formats quantise the GEMM inputs (weights, and activations on entry to a
    GEMM), while GEMM outputs, which the TP all-reduce sums, stay 16-bit (NVIDIA Transformer
    Engine FP8 primer: "the output of FP8 GEMMs is in higher precision"; Micikevicius et
    al. 2022, arXiv:2209.05433 §4; TensorRT-LLM's and vLLM's custom all-reduce kernels run
    on fp16/bf16 tensors)."""
    msg = tokens * c.hidden * jnp.maximum(c.bpe, ACT_BYTES_MIN)
    # MESH: on an all-to-all wired node a group of k ranks drives k - 1 of the n - 1 links [parts.group_link_bw]
    def bw_x(group):
        return jnp.where(r.in_node, group_link_bw(c, c.bw_up, group), c.bw_out)
    alpha_x = jnp.where(r.in_node, c.alpha_up, c.alpha_out)
    t_tp = 2.0 * c.n_layers * fleet.ring_allreduce(msg, r.tp, group_link_bw(c, c.bw_up, r.tp), c.alpha_up)
    a2a_msg = msg * jnp.maximum(c.top_k, 1.0) * r.imbalance / r.ep
    t_ep = jnp.where(r.ep > 1.0, 2.0 * c.n_layers * fleet.all_to_all(a2a_msg, r.ep, bw_x(r.ep), alpha_x), 0.0)
    return t_tp + t_ep + (r.pp - 1.0) * (alpha_x + msg / bw_x(2.0))


def expert_rows(r: Replica, c: Common, tokens) -> Array:
    """GEMM rows of one routed expert on the busiest rank for `tokens` tokens: tokens·k·imb/E
    (>= 1; dense models: tokens)."""
    moe = r.expert_params > 0.0
    rows = tokens * jnp.maximum(c.top_k, 1.0) * r.imbalance / floor_pos(c.n_experts, 1.0)
    return jnp.where(moe, jnp.maximum(rows, 1.0), tokens)


def gemm_s(r: Replica, c: Common, tokens, eta_shared, eta_expert) -> Array:
    """Weight-GEMM time of a forward pass over `tokens` tokens, whole model, s.

    Shared weights multiply all the tokens (M = tokens rows, efficiency eta_shared); a routed
    expert multiplies only the tokens routed to it, M_e = tokens·k·imb/E on the busiest rank
    (`expert_rows`; GShard, Lepikhin et al. 2021 §2.2: each expert sees ~T·k/E tokens;
    MegaBlocks, Gale et al. 2023 §3: the expert FFNs run as grouped GEMMs of those rows), so
    it runs at the GEMM efficiency of its own shape, eta_expert = η(M_e) (the part's measured
    GEMM curve, efficiency.py):  T = 2·tokens·(s/η(M) + k·e·imb/η(M_e)) / (D·peak).
    Dense models (no routed part): 2·A·tokens/(D·peak·η(M)); CNN rows: compute_params."""
    moe = r.expert_params > 0.0                                      # dense and CNN rows: 0
    routed = jnp.where(moe, r.compute_params - r.shared_params, 0.0)  # k·e·imb
    dense_part = jnp.where(moe, r.shared_params, r.compute_params)
    expert_part = jnp.where(moe, safe_div(routed, eta_expert, fill=node.UNBOUNDED), 0.0)
    return 2.0 * tokens * (dense_part / eta_shared + expert_part) / (r.lanes * r.peak)


class DecodeStep(NamedTuple):
    step_s: Array              # one target step incl. the draft passes (plain decode: one step)
    itl_s: Array               # mean time per generated token, step / E[tokens]
    weights_s: Array           # parts of the target step (audit)
    compute_s: Array
    kv_s: Array
    overhead_s: Array
    draft_s: Array
    spec: sw.Speculation
    bottleneck: Array
    host_s: Array              # a serial engine's host time per iteration (`host_step_s`; 0 overlapped)


def host_step_s(p, eff: Efficiency, batch) -> Array:
    """Engine CPU time of one decode iteration that the GPU waits for, s:

        t_host = serial_host_s_per_seq · B / n   (scheduler = serial),   0   (overlapped)

    A serial engine (vLLM V0) schedules, builds the block tables and inputs and turns the
    sampled tokens into outputs in Python between two GPU steps, per running sequence;
    an overlapped one does it while the GPU runs the previous iteration, so only the
    dispatch tax remains.  Multi-step scheduling (vLLM 0.6 --num-scheduler-steps n) pays it
    once per n steps.  B: running sequences; n = scheduler_steps >= 1.  Source:
    efficiency.Efficiency (vLLM #6801: ~20 ms between steps at batch 200; RFC #6854, whose
    multi-step design incurs the ~4 ms bubble "once for every 8 decode" steps at n = 8)."""
    serial = jnp.asarray(p.scheduler, jnp.int32) == SERIAL
    per_seq = jnp.maximum(eff.serial_host_s_per_seq, 0.0) / jnp.maximum(p.scheduler_steps, 1.0)
    return jnp.where(serial, per_seq * jnp.maximum(batch, 0.0), 0.0)


def decode_step(p, c: Common, r: Replica, eff: Efficiency, *, prompt, out_tok) -> DecodeStep:
    """A continuous-batching decode step of `batch` sequences, with speculative decoding.

    Target step (walls.serving.batch_step_s): max(weight read, 2·A·B·(k+1) FLOP at η_decode;
    MoE experts at their routed rows, `gemm_s`)
    + KV read of B sequences at the mean context prompt + output/2 + dispatch + comm;
    the verify pass scores k + 1 tokens per sequence against the KV read once.  The
    draft adds k passes of draft_cost_frac × a plain step (walls.serving.speculative_decoding);
    tokens per step E = (1 − α^(k+1))/(1 − α).  A serial engine's host time (`host_step_s`)
    is added once per iteration.  Wafer-scale rows stream weights (node.weight_streaming)
    as before.
    """
    spec = sw.speculative_decoding(p.spec_k, p.spec_acceptance, p.draft_cost_frac)
    eta = decode_compute_efficiency(p.efficiency, eff, part=c, rows=r.batch, tp=r.tp)   # GEMM curve (issue 19)
    eta_e = decode_compute_efficiency(p.efficiency, eff, part=c, rows=expert_rows(r, c, r.batch), tp=r.tp)
    eta, eta_e = materialized((eta, eta_e), p.hardware)      # the GEMM curve once, not in each consumer
    k1 = jnp.maximum(p.spec_k, 0.0) + 1.0
    kv_read = r.kv_bytes_per_token * (prompt + 0.5 * out_tok) * r.batch / r.lanes
    t_kv = sw.split_read_s(kv_read, kv_read * r.spill_frac_kv, r.bw, r.host_bw)

    def step(tokens):
        w = weight_read_s(r, c, tokens)
        comp = gemm_s(r, c, tokens, eta, eta_e)
        over = r.tax_s + comm_s(r, c, tokens)
        ws = node.weight_streaming(r.weight_bytes / c.n_layers, 2.0 * r.compute_params * tokens / c.n_layers,
                                   c.n_layers, c.inj_bw * r.lanes, c.peak * r.lanes, efficiency=eta,
                                   dispatch_tax_s=r.tax_s / c.n_layers)
        wafer = ws.latency_s + t_kv + over - r.tax_s
        return jnp.where(c.wafer, wafer, sw.batch_step_s(w, comp, t_kv, over)), w, comp, over

    t_verify, w, comp, over = step(r.batch * k1)
    t_plain = step(r.batch)[0]
    draft = spec.draft_cost_steps * t_plain
    host = host_step_s(p, eff, r.batch)                 # once per iteration, not per draft pass
    t_step = t_verify + draft + host
    mem = jnp.maximum(w, t_kv)
    code = jnp.where(comp >= mem, node.COMPUTE, node.MEMORY)
    code = jnp.where(over + host > jnp.maximum(comp, mem), node.OVERHEAD, code).astype(jnp.int32)
    return DecodeStep(t_step, t_step / spec.tokens_per_step, w, comp, t_kv, over, draft, spec, code, host)


class PrefillTime(NamedTuple):
    time_s: Array              # isolated prefill of one prompt (weights, GEMMs + attention, comm)
    compute_s: Array           # GEMM + attention FLOP time
    attention_s: Array         # the causal attention part of compute_s
    weights_s: Array
    overhead_s: Array


# The part that Efficiency.matmul_rows_half was derived on: A100-SXM4-80GB fp16, 312 TFLOP/s over its
# achieved HBM rate 2.0 TB/s × mem_bw_eff 0.8; its ridge peak·bpe/(2·BW) = 195 rows (bpe = 2).
REF_RIDGE_ROWS = 312e12 * 2.0 / (2.0 * 2.0e12 * 0.8)


def prefill_rows_half(c, eff: Efficiency) -> Array:
    """Half-saturation x½ of a prefill GEMM's tile factor on this part, rows (tokens)::

        x½ = matmul_rows_half · (1 + achievable · (R / R_ref − 1)),   R = peak · bpe / (2 · BW)

    R: the rows at which a GEMM's FLOP time equals its weight read (peak FLOP/s, bytes per
    weight, achieved HBM B/s, all of `c`: parts.Common); R_ref = REF_RIDGE_ROWS (195, A100
    fp16).  achievable = 0: the global matmul_rows_half (the previous model).  A100-80GB fp16
    128 rows, H100 SXM fp16/fp8 232 (see prefill_gemm_efficiency)."""
    ratio = c.peak * c.bpe / (2.0 * REF_RIDGE_ROWS * c.mem_bw)
    return eff.matmul_rows_half * (1.0 + eff.achievable * (ratio - 1.0))


def prefill_gemm_efficiency(eta, rows, eff: Efficiency, *, part, tp=1.0) -> Array:
    """Achieved fraction of peak of the weight GEMMs of a prefill pass over `rows` tokens.

    The part's square-GEMM curve g (efficiency.gemm_curve, cuBLAS M = N = K sweeps) is read at
    the size of the weight matrix, s = √(K·N) (K = hidden, N = ffn/tp: the MLP up-projection
    of efficiency.gemm_dims), and the row count M enters only through the tile factor, whose
    half-saturation is the part's own ridge::

        η = min(1, η_user · prefill_eff_scale · g(s) · τ(min(M, s)) / τ(s) / GEMM_REF_EFF)
        τ(x) = x / (x + x½),   x½ = matmul_rows_half · R / R_ref,   R = peak · bpe / (2 · BW)

    (`prefill_rows_half`; BW the achieved HBM rate parts.Common.mem_bw, R_ref = REF_RIDGE_ROWS
    = 195 rows), blended by eff.achievable with the previous model
    min(1, η_user·prefill_eff_scale·tile(M)) as in efficiency.prefill_efficiency.
    Dimensionless; rows in tokens; tp ≥ 1.
    τ is the efficiency of a GEMM whose weight read does not overlap its FLOPs,
    t = FLOP/(peak·η∞) + W/BW, so x½ = η∞·R (Efficiency.matmul_rows_half: 128 rows on the
    A100, where R = 195); a part with more FLOP/s per byte of HBM needs more rows to hide its
    weight read: H100 SXM fp16 and fp8 R = 354, x½ = 232 rows; H200 253 / 166.
    The equal-work cube (M·K·N)^(1/3) that the training matmuls read the curve at would charge
    a short prompt twice: M = 128 on Llama-2-7B is a 1,783³ cube, where the square sweep loses
    to launch and wave quantisation, on top of the tile factor; the K and N of the weight matrix
    (4096 x 11008) are large whatever M is.
    Source: TensorRT-LLM's first-token latencies at batch 1 (NVIDIA/TensorRT-LLM
    docs/source/performance.md, v0.6.1 page, 'Low Latency' tables from v0.5).  A100-SXM4 FP16
    LLaMA 7B: 16 ms at 128 tokens, 133 ms at 2048 -- a line of slope 0.061 ms per token
    (13.5 GFLOP/token at 0.71 of peak for every M) and intercept 8.2 ms (the 13.5 GB weight
    read at 1.65 TB/s): t = W/BW + FLOP/(0.71·peak), the tile-factor form with one η∞.  This
    reading gives 15.6 / 135 ms and, LLaMA 70B TP4, 45.7 / 371 ms (measured 47 / 377); the cube
    reading gave 20.5 / 143 and 56.1 / 393 ms.  H100 FP8 stays below the table (7B: 5.0 / 31 ms
    vs 7 / 36; 70B TP4: 16 / 97 vs 26 / 109: fixed per-layer costs of v0.5's FP8 path the
    model does not carry), the global x½ made it 3.7 / 30 and 12.8 / 94 ms (A100 curve of
    achievable.toml at issue 13's accuracy round).
    CNN rows (hidden 0): K = N = M, s = M, g(M) with τ(M)/τ(M) = 1.
    """
    rows = jnp.asarray(rows)
    rows = rows.astype(jnp.result_type(rows, float))
    old = jnp.minimum(eta * eff.prefill_eff_scale * tile_factor(rows, eff), 1.0)
    own = eff._replace(matmul_rows_half=prefill_rows_half(part, eff))
    m, k, n = gemm_dims(rows, part.hidden, part.ffn_dim, tp)
    size = jnp.sqrt(k * n)
    g = gemm_curve(part.gemm_eff, size) * tile_factor(jnp.minimum(m, size), own) / tile_factor(size, own)
    new = jnp.minimum(eta * eff.prefill_eff_scale * g / GEMM_REF_EFF, 1.0)
    return old + eff.achievable * (new - old)


def prefill_eta(p, c: Common, r: Replica, eff: Efficiency, rows) -> Array:
    """η_prefill of a prefill (or a chunk) of `rows` new tokens: `prefill_gemm_efficiency` at
    rows·reuse (rows floored at 1); `prefill_time` and `chunked_prefill` take it from the caller
    when it has it."""
    return prefill_gemm_efficiency(p.efficiency, floor_pos(rows, 1.0) * c.reuse_per_item, eff, part=c, tp=r.tp)


def prefill_time(p, c: Common, r: Replica, eff: Efficiency, new_tokens, cached_tokens, eta=None) -> PrefillTime:
    """Prefill of `new_tokens` after `cached_tokens` (prefix cache hits), alone on the replica, s.

    FLOP = 2·A·n + causal attention 4·L·(h·d)·(n·c + n(n+1)/2)
    (walls.serving.causal_attention_flop), at η_prefill(rows = n) (`prefill_gemm_efficiency`; MoE
    expert GEMMs at their own rows n·k·imb/E, `gemm_s`, through the part's row (tile) factor,
    η_e = η·tile(n·k·imb/E)/tile(n) with x½ = `prefill_rows_half`, so a prefill evaluates the
    part's GEMM curve once; the decode step, where experts see the fewest rows, evaluates it
    at the expert rows);
    never faster than reading the weights once; + dispatch + TP all-reduces of n tokens.
    Wafer-scale rows stream the weights (node.weight_streaming).
    `eta`: `prefill_eta(p, c, r, eff, new_tokens)` when the caller has it (same value).
    """
    n = floor_pos(new_tokens, 1.0)
    eta = prefill_eta(p, c, r, eff, n) if eta is None else eta
    own = eff._replace(matmul_rows_half=prefill_rows_half(c, eff))     # the part's tile factor
    eta_e = eta * tile_factor(expert_rows(r, c, n), own) / tile_factor(n, own)
    attn = sw.causal_attention_flop(c.n_layers, c.attn_width, n, cached_tokens)
    gemm = 2.0 * r.compute_params * n
    t_a = attn / (r.lanes * r.peak * eta)
    t_c = gemm_s(r, c, n, eta, eta_e) + t_a
    w = weight_read_s(r, c, n)
    over = r.tax_s + comm_s(r, c, n)
    ws = node.weight_streaming(r.weight_bytes / c.n_layers, (gemm + attn) / c.n_layers, c.n_layers,
                               c.inj_bw * r.lanes, c.peak * r.lanes, efficiency=eta,
                               dispatch_tax_s=r.tax_s / c.n_layers)
    t = jnp.where(c.wafer, ws.latency_s + over - r.tax_s, jnp.maximum(t_c, w) + over)
    return PrefillTime(jnp.minimum(t, node.UNBOUNDED), t_c, t_a, w, over)


class Chunking(NamedTuple):
    chunk_tokens: Array        # prompt tokens per iteration (the whole prompt without chunking)
    n_chunks: Array            # iterations a prompt's prefill spans, prompt / chunk (>= 1)
    extra_s: Array             # Δ: how much a chunk lengthens the decode iteration it rides on
    ttft_s: Array              # prefill service inside the running batch: n_chunks·(step + Δ)


def chunked_prefill(p, c: Common, r: Replica, eff: Efficiency, d: DecodeStep, new_tokens,
                    cached_tokens, eta_whole=None, eta_chunk=None) -> Chunking:
    """Continuous batching with chunked prefill (Sarathi-Serve, Agrawal et al. 2024).

    A prompt's n new tokens run in chunks of m = min(chunk_size, n) tokens (chunk_size 0:
    m = n, the whole prompt in one iteration), n/m iterations, each fused with the decode
    step of the running batch: its GEMM FLOPs (2·A·m, at η_prefill(m rows); MoE experts at
    their routed rows as in `prefill_time`) and its
    attention (m tokens at the mean position c + (n − m)/2) add to the step's compute
    (walls.serving.batch_step_s), so Δ = fused − step is ~0 while the step is weight-read
    bound and the chunk's FLOP time past the ridge.  TTFT service = (n/m)·(step + Δ):
    small chunks cut Δ (the P99 ITL) and add iterations (the TTFT).
    η_prefill(m) is η(chunk_size) when the prompt is split, else η(n) (`prefill_eta`); callers
    that have them pass `eta_whole` = η(n) and `eta_chunk` = η(chunk_size), which does not
    depend on the prompt (the mean and P99 prompts share it: three curve evaluations, not four).
    """
    n = floor_pos(new_tokens, 1.0)
    chunk = jnp.asarray(p.chunk_size)
    split = (chunk >= 1.0) & (chunk < n)
    m = jnp.where(split, chunk, n)                       # min(chunk, n); n without chunking
    eta_whole = prefill_eta(p, c, r, eff, n) if eta_whole is None else eta_whole
    eta_chunk = prefill_eta(p, c, r, eff, chunk) if eta_chunk is None else eta_chunk
    eta_p = jnp.where(split, eta_chunk, eta_whole)
    own = eff._replace(matmul_rows_half=prefill_rows_half(c, eff))     # the part's tile factor
    eta_e = eta_p * tile_factor(expert_rows(r, c, m), own) / tile_factor(m, own)
    attn = sw.causal_attention_flop(c.n_layers, c.attn_width, m, cached_tokens + 0.5 * (n - m))
    chunk_c = gemm_s(r, c, m, eta_p, eta_e) + attn / (r.lanes * r.peak * eta_p)
    tokens = r.batch * (jnp.maximum(p.spec_k, 0.0) + 1.0)
    w_fused = weight_read_s(r, c, tokens + m)
    over = r.tax_s + comm_s(r, c, tokens + m)
    fused = sw.batch_step_s(w_fused, d.compute_s + chunk_c, d.kv_s, over)
    wafer_extra = chunk_c + comm_s(r, c, tokens + m) - comm_s(r, c, tokens)
    base = sw.batch_step_s(d.weights_s, d.compute_s, d.kv_s, d.overhead_s)
    extra = jnp.maximum(jnp.where(c.wafer, wafer_extra, fused - base), 0.0)
    n_chunks = n / m
    return Chunking(m, n_chunks, extra, jnp.minimum(n_chunks * (d.step_s + extra), node.UNBOUNDED))
