"""Pieces of the training scenario, each a small function returning a NamedTuple.

`setup` (degrees, FLOPs, parameter split: everything independent of the micro-batch
size; in `training_setup`, re-exported here), `memory`, `compute` (and `training_comm.communication`:
one micro-batch size b per call; the scenario evaluates a static set of b with `jax.vmap` and picks the
fastest feasible one with jnp ops), `reliability`.  Equations and sources are on each function and on
`mlsys_opt.scenarios.training.training`; the walls are `walls.attention`,
`walls.parallel`, `walls.fleet`, `walls.node`.  Branch-free, float32-safe, jit/vmap/grad-able.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from .._types import Array
from ..walls import fleet, node, ops, parallel
from ..walls._masked import floor_pos
from .efficiency import (
    FLASH1_OF_FLASH2,
    Efficiency,
    attention_efficiency,
    matmul_efficiency,
)
from .parts import Common, group_link_bw
from .training_setup import (  # noqa: F401  (re-exported: the scenario, training_comm and tests read them here)
    ACT_BYTES,
    MEGATRON_ENGINE,
    MICRO_BATCH_CANDIDATES,
    PARALLEL_BLOCK_ON,
    Setup,
    setup,
)

class Memory(NamedTuple):
    states_bytes: Array      # weights + grads + optimizer (+ ZeRO-3 gather buffer)
    act_micro_bytes: Array   # activations of one micro-batch on one stage (all written to HBM, offloaded or not)
    total_bytes: Array       # per GPU
    host_bytes: Array        # activation bytes offloaded to host memory per step, one direction


def memory(p, c: Common, s: Setup, b, mb) -> Memory:
    """Per-GPU memory for micro-batches of b sequences, M = mb per step.

    - States [node.training_memory]: shared params over tp·pp, expert params over tp·pp·ep,
      ZeRO stage k shards optimizer (≥1), grads (≥2), weights (≥3) over the sharding group
      (shard_group or dp·cp: CP ranks hold the same weights; experts: at most dp·cp/ep); bytes per param
      from walls.parallel (bf16: 2 + 4 + 12 = 18, Megatron-LM distrib_optimizer.md; optimizer =
      master_weights + optimizer_moments [walls.parallel.optimizer_state_bytes], e.g. NeMo 1.x
      Apex remainders 2 + 8, a pure-bf16 AdamW 0 + 4; master_weights = fp32_param, PyTorch FSDP on an
      fp32 model: no persistent 16-bit weights at ZeRO-3 and fp32 gradient shards, 4 + 4 + 8 = 16, see
      setup FSDP16).  ZeRO-3 holds two gathered layers (current + prefetch), in the all-gather dtype with
      fsdp_runtime = torch_fsdp2 (bf16 for fp8 too: torchao's float8 all-gather is off by default).
    - Activations per layer [node.transformer_activation_bytes, Korthikanti et al. 2022
      Table 2] at s/cp tokens, SP dividing the 10·sbh term: sbh·(10/t' + 24/t) (none and
      selective), 2·sbh/t' (full), 2·s·b·walls.parallel.op_sac_activation_elements (op:
      torchtitan's per-op SAC; MEMEAGER: with kernels = eager / fa1_eager the SAC cache's every MUST_SAVE output,
      otherwise, torch.compile, only those its backward reads [walls.saved_activations]), plus the attention core's stored bytes
      [walls.attention: eager 5·a·s_loc·s/t without recomputation, flash 4·a·s_loc/t LSE],
      × the precision's activation scale, × walls.parallel.low_precision_activation_scale for
      fp8/fp4 GEMM inputs saved quantized (none/selective: 29/34 at fp8); in-flight micro-batches
      F [walls.parallel.pipeline_in_flight: interleaved_activation_factor; DualPipe pp + 1]; + the transient peak of one micro-batch (MEMPEAK):
      max(s_loc·b·μ·V/tp, b·one layer's rematerialised activations under full recomputation), μ = 4 / 12 / 6 / 8 B
      per logit for loss_kernel fused / torch / megatron / torch16, 16 for torch on a vocabulary shard (DTensor
      loss_parallel) [walls.algorithm.cross_entropy_peak_bytes] (the loss's buffers when the backward starts), the layer in the selective form (Korthikanti et al. 2022 §5:
      full recomputation still holds one layer's activations during its backward); with fsdp_runtime =
      torch_fsdp2 at ZeRO-3 (PyTorch FSDP2) the layer's backward adds n_u·(2 + r): the unit's unsharded 16-bit
      gradients and the previous unit's reduce-scatter input in the reduce dtype (r = 4, or 2 with main_grads =
      bf16), n_u = params per rank and unit [walls.parallel.fsdp_backward_buffer_bytes; FSDP16], so the transient
      is max(loss, b·layer + n_u·(2 + r)).  With grad_sync = last
      and M > 1 the stage's unsharded gradients in fp32 (4·P/(tp·pp), FSDP2 no_sync) take the place of the
      gradient shards (written only by the last micro-batch's reduce-scatter).  Layers per stage: L/pp, or with
      stage_balance = on the first stage's (L + 2)/pp - 1 (Llama 3 §3.3.2, see setup); with
      last_stage_layers = k, max((L - k)/(pp - 1), k) (DSV3).  The bytes
      of one sequence and layer (setup.act_seq_layer) do not depend on b: setup computes them once.
    - Activation offload (offload_layers = k, Megatron-Core cpu_offloading_num_layers): HBM holds
      F·(L_s - k) + min(k, 1) layers' activations [walls.parallel.offload_resident_layers]; the
      k layers of each of the M micro-batches cross the host link once each way per step
      (host_bytes = M·k·b·bytes per sequence and layer; the exposed time is added in compute()).
    - Wafer-scale rows stream weights: activations + two layers of weights stay on-wafer.
    """
    states = s.states_bytes                  # computed once in setup (independent of b)
    per_layer = b * s.act_seq_layer          # one micro-batch, one layer (setup: independent of b)
    act_micro = s.layers_first * per_layer
    in_flight = parallel.pipeline_in_flight(s.pp, s.v, mb, s.dualpipe)     # DUALPIPE: pp + 1
    k = jnp.clip(p.offload_layers, 0.0, s.layers_first)
    act = per_layer * parallel.offload_resident_layers(s.layers_first, k, in_flight)
    # MEMPEAK: the transient peak on top of states and stored activations, the larger of the loss's buffers when
    # the backward starts and (full recomputation) one rematerialised layer during its backward
    # (FSDP16: FSDP2's per-unit gradient buffers belong to the layers' backward, with the rematerialised layer)
    transient = jnp.maximum(b * s.s_loc * s.loss_peak_bytes_per_token,
                            b * s.recompute_seq_layer + s.fsdp_backward_bytes)
    # MEMPEAK: grad_sync = last, the unsharded fp32 gradients accumulated over the step's micro-batches
    states = states + jnp.where(mb > 1.5, s.accumulated_grad_bytes, 0.0)
    total = jnp.where(c.wafer, act + 2.0 * s.w_shard / s.layers_stage, states + act + transient)
    return Memory(states, act_micro, total, mb * k * per_layer)


class Compute(NamedTuple):
    t_compute_s: Array       # per GPU per step, slowest stage, bubble excluded
    t_elem_s: Array          # memory-bound non-matmul part of it
    eta: Array               # achieved matmul fraction
    bottleneck: Array        # int32 code
    eta_gemm: Array = 1.0    # the GEMMs' own achieved fraction of peak (ASYNCTP: async TP's overlap windows)


def compute(p, c: Common, eff: Efficiency, s: Setup, mem: Memory, b, mb) -> Compute:
    """Per-GPU compute time of one step [node.roofline / node.weight_streaming] + elementwise time.

    GEMM rows = b·s_loc (tokens of one micro-batch on one CP rank), η from
    efficiency.matmul_efficiency.  HBM bytes: M·passes·W_shard + 2·states + 2·M·activations
    (passes = 3 + full + op_frac).
    Elementwise (memory-bound) time, added: scale·M·(L/pp)·((3 + full + op)·A + selective·eager·A_s)
    / mem_bw with A = act_scale·(s_loc·b·h·(10/t' + 24/t) + eager·5·a·s_loc·s·b/t)
    (Korthikanti et al. 2022 Table 2; t' = tp with sequence parallelism; flash fuses the
    softmax/dropout, so no score traffic); × efficiency.unfused_elementwise_factor(g, ffn/h)
    (≈ 3.4, the counted eager/fused HBM bytes) with kernels = eager / fa1_eager (PyTorch eager);
    + act_scale·M·(L/pp)·8·s_loc·b·h/t' with recompute_norm = on (both RMSNorms rerun in the backward: NORMRC);
    + M·(L/pp)·walls.parallel.low_precision_cast_bytes(b·s_loc/tp, ...)/mem_bw for fp8/fp4 GEMMs
    (quantize + transpose of every GEMM operand kept in BF16 between ops; 0 at 16 bits).
    + M·b·s_loc·β·V/tp / mem_bw on the LM-head stage: the softmax cross entropy over the vocabulary
    (loss_kernel: β = 6 / 48 / 52 B per logit fused / torch / megatron, walls.algorithm.cross_entropy_bytes);
    with loss_parallel = off over V instead of V/tp, after a ring all-gather of the 2-byte logits
    (b·s_loc·2V bytes per micro-batch over the TP group at the scale-up ring rate, walls.parallel.reduce_scatter).
    FP8TP: float8 tensorwise PyTorch TP adds the whole-tensor layout copies of its float8-gathered operands
    (in cast_bytes_per_token) and M·(L/pp)·s.tp_fp8_sync_s, the amax all-reduce waits (walls.tensor_parallel).
    × (1 + pipeline_overhead_frac·(1 - 1/pp)); + the activation-offload copies that the forward
    (1/3) and backward (2/3) compute do not hide [walls.parallel.offload_exposed_s].
    """
    passes = 3.0 + s.full + s.op_frac
    rows = b * s.s_loc * c.reuse_per_item
    eta_gemm = matmul_efficiency(p.efficiency, rows, eff, part=c, tp=s.tp)   # the part's GEMM curve (issue 19)
    eta = _with_attention_kernel(eta_gemm, c, eff, s)
    weight_traffic = mb * passes * s.w_shard
    bytes_gpu = weight_traffic + 2.0 * mem.states_bytes + 2.0 * mb * mem.act_micro_bytes
    tax = eff.dispatch_s_per_layer * s.layers_stage * mb * passes
    rl = node.roofline(s.flop_gpu, bytes_gpu, c.peak, c.mem_bw, efficiency=eta, dispatch_tax_s=tax)
    ws = node.weight_streaming(weight_traffic / s.layers_stage, s.flop_gpu / s.layers_stage, s.layers_stage,
                               c.inj_bw, c.peak, efficiency=eta, dispatch_tax_s=tax / s.layers_stage)
    sbh = s.s_loc * b * c.hidden
    a_base = sbh * (10.0 / s.t_sp + 24.0 / s.tp)
    a_score = s.eager * 5.0 * c.n_heads * s.s_loc * s.seq * b / s.tp
    # per-op SAC reruns every elementwise op of the block (only mm / SDPA outputs are saved): + one pass
    # NORMRC: recompute_norm = on reruns both RMSNorms in the backward (read 2 B + write 2 B per element, twice)
    per_layer = s.act_scale * ((3.0 + s.full + s.op) * (a_base + a_score) + s.selective * a_score
                               + s.norm_rc * 8.0 * sbh / s.t_sp)
    # eager kernels (setup.elem_factor) and the operand casts of sub-16-bit GEMMs (kernel bytes)
    per_layer = eff.elementwise_traffic_scale * s.elem_factor * per_layer + b * s.s_loc * s.cast_bytes_per_token
    # + the loss over the vocabulary on the LM-head stage (b·s_loc tokens per micro-batch; not recomputed)
    t_elem = mb * (s.layers_stage * per_layer + b * s.s_loc * s.loss_bytes_per_token) / c.mem_bw
    # MEMPEAK: loss_parallel = off, the logits' all-gather over the TP group before the loss (synchronous)
    t_gather = parallel.reduce_scatter(b * s.s_loc * s.loss_gather_bytes_per_token, s.tp,
                                       group_link_bw(c, c.bw_up_ring, s.tp), c.alpha_up)
    t_elem = t_elem + mb * jnp.where(s.loss_gather_bytes_per_token > 0, t_gather, 0.0)
    # FP8TP (issue 12, marked): + the float8 TP amax all-reduce waits, per block and micro-batch (0 without) [setup()]
    t_elem = t_elem + mb * s.layers_stage * s.tp_fp8_sync_s
    t = jnp.where(c.wafer, ws.latency_s, rl.latency_s) + t_elem
    t = t * (1.0 + eff.pipeline_overhead_frac * (1.0 - 1.0 / s.pp))
    # activation offload: host copies not hidden by the phase they overlap [walls.parallel.offload_exposed_s]
    t = t + parallel.offload_exposed_s(mem.host_bytes, c.host_bw, t)
    memory_bound = (rl.bottleneck == node.COMPUTE) & (rl.t_memory_s + t_elem > rl.t_compute_s)
    code = jnp.where(c.wafer, ws.bottleneck, jnp.where(memory_bound, node.MEMORY, rl.bottleneck))
    return Compute(t, t_elem, eta, code.astype(jnp.int32), eta_gemm)


def _flash_eta(c: Common, s: Setup):
    """FlashAttention forward+backward efficiency at s/cp (fraction of the 16-bit peak; see
    _with_attention_kernel); shared with communication()'s context-parallel overlap window."""
    return attention_efficiency(c.attention_fwdbwd_eff, s.s_loc) * (1.0 - s.flash1 * (1.0 - FLASH1_OF_FLASH2))


def _with_attention_kernel(eta_gemm, c: Common, eff: Efficiency, s: Setup):
    """Effective matmul efficiency of a step whose attention core is a kernel of its own.

    t = F_gemm/(P·η_gemm) + F_attn/(P_16·η_attn), returned as η = F/(P·t) for the roofline.
    Flash attention runs at the part's FlashAttention forward+backward efficiency at the
    per-rank sequence s/cp (catalog/achievable.toml, efficiency.attention_efficiency: FA2
    causal, head dim 128, on A100 0.50-0.61 of the 16-bit peak at 2k-16k, on H100
    0.17-0.33 at 512-16k; on B200 / GB200 cuDNN SDPA's causal series, 0.05-0.51 / 0.14-0.56
    at 512-16k (NVIDIA/cudnn-frontend training benchmark; issue 12: B200 used to fall back to
    the A100 FA2 curve); the benchmarks count causal FLOPs as half the square, as
    walls.attention does), × FLASH1_OF_FLASH2 = 0.43 with FlashAttention-1-generation
    kernels (kernels = fa1 / fa1_eager), and at P_16 = min(16-bit peak,
    the row's peak) (fp32/tf32 runs keep their own, lower peak), so in fp8 runs at the
    16-bit peak: Transformer Engine keeps dot-product attention in BF16 unless FP8
    attention is switched on (NVTE_FP8_DPA=0 by default; TransformerEngine docs, "FP8
    dot product attention"), and torch SDPA / FlashAttention-2 have no fp8 path.  Eager
    attention's batched GEMMs run at η_gemm and the row's peak (its score traffic is in the
    elementwise term).  Blended with the previous model (η_attn = η_gemm at the row's
    peak) by eff.achievable.

    The LM head's GEMMs (s.head_flop_gpu) run at η_gemm and P_16 too: FP8 training keeps the
    output layer in 16 bits in every framework the rows ran.  torchtitan converts every
    nn.Linear but the output (`convert_to_float8_training(..., module_filter_fn=lambda mod, fqn:
    fqn != "output")`, torchtitan float8.py, 2024-25; later `filter_fqns = ["output"]`);
    Megatron-Core's GPTModel.output_layer is a tensor_parallel.ColumnParallelLinear, not a
    Transformer Engine module, so te.fp8_autocast leaves it in BF16 (NeMo, Megatron-Bridge);
    llm-foundry's MPT ties the head to wte and calls F.linear; DeepSeek-V3 §3.3.1 keeps "the
    embedding module, the output head" in their original precision.
    """
    t_gemm, t_head, t_attn = kernel_times(eta_gemm, c, eff, s)
    return s.flop_gpu / floor_pos(c.peak * (t_gemm + t_head + t_attn), 1e-30)


def kernel_times(eta_gemm, c: Common, eff: Efficiency, s: Setup):
    """(GEMMs, LM head, attention core): each kernel family's FLOP time per step at its own rate, s
    (`_with_attention_kernel`'s terms; their shares split the step's matmul time in the breakdown)."""
    flash = 1.0 - s.eager
    a = eff.achievable
    # FlashAttention-1-generation kernels (kernels = fa1 / fa1_eager): FLASH1_OF_FLASH2 of the FA2 rate
    eta_fa = _flash_eta(c, s)
    eta_attn = eta_gemm + a * flash * (eta_fa - eta_gemm)
    peak_attn = c.peak + a * flash * (jnp.minimum(c.peak_16bit, c.peak) - c.peak)
    f_attn = jnp.clip(s.attn_flop_gpu, 0.0, s.flop_gpu)
    # the LM head at the 16-bit peak (0 change at 16 bits; see the docstring)
    f_head = jnp.clip(s.head_flop_gpu, 0.0, s.flop_gpu - f_attn)
    peak_head = jnp.minimum(c.peak_16bit, c.peak)
    return ((s.flop_gpu - f_attn - f_head) / (c.peak * floor_pos(eta_gemm, 1e-6)),
            f_head / (peak_head * floor_pos(eta_gemm, 1e-6)),
            f_attn / (peak_attn * floor_pos(eta_attn, 1e-6)))


class Reliability(NamedTuple):
    goodput: Array
    time_to_train_s: Array
    expected_interruptions: Array


def reliability(p, c: Common, s: Setup, step_s) -> Reliability:
    """Checkpoint/restart goodput [ops.young_daly_interval_s, ops.goodput] and interruptions.

    Per-GPU MTBF: 3600/failure_rate_per_gpu_hour when the rate is > 0, else the catalog's;
    cluster MTBF = MTBF/N [fleet.cluster_mtbf_s]; checkpoint = P·(param gather bytes +
    optimizer bytes) at checkpoint_bw (fp32_param: P·optimizer bytes, the fp32 parameter is the master;
    FSDP16); τ = interval or Young-Daly; time = steps·step/goodput
    (capped at node.UNBOUNDED); expected_interruptions = time / cluster MTBF
    [fleet.expected_failures] (Llama 3 paper §3.3.4: 419 in 54 days on 16,384 H100s).
    """
    rate = p.failure_rate_per_gpu_hour
    mtbf_gpu = jnp.where(rate > 0, 3600.0 / floor_pos(rate, 1e-30), c.mtbf)
    mtbf = fleet.cluster_mtbf_s(mtbf_gpu, s.n)
    ckpt_s = c.n_params * s.ckpt_bytes_per_param / floor_pos(p.checkpoint_bw, 1.0)
    tau = jnp.where(p.checkpoint_interval > 0, p.checkpoint_interval, ops.young_daly_interval_s(ckpt_s, mtbf))
    good = ops.goodput(tau, ckpt_s, mtbf, recovery_s=p.recovery)
    time = jnp.minimum(s.steps * step_s / good, node.UNBOUNDED)
    return Reliability(good, time, jnp.minimum(fleet.expected_failures(time, mtbf), node.UNBOUNDED))


__all__ = [
    "MICRO_BATCH_CANDIDATES",
    "Compute",
    "Memory",
    "Reliability",
    "Setup",
    "compute",
    "memory",
    "reliability",
    "setup",
]
