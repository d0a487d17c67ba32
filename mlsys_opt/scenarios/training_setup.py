"""Setup of the training scenario: everything independent of the micro-batch size.

`setup` returns degrees, model and hardware FLOPs, the parameter split, the critical pipeline stage,
the data-parallel volumes and the per-token byte counts the micro-batch lanes read (`Setup`); the other
pieces (`memory`, `compute`, `reliability`) are in `training_parts`, the collectives in `training_comm`.
Equations and sources are on `setup` and on `mlsys_opt.scenarios.training.training`.  Branch-free,
float32-safe, jit/vmap/grad-able.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from .._types import Array
from ..walls import (
    algorithm,
    attention,
    deepspeed_pipe,
    fleet,
    node,
    parallel,
    saved_activations,
    tensor_parallel,
    zero_sync,
)
from ..walls._masked import floor_pos
from .efficiency import (
    Efficiency,
    unfused_elementwise_factor,
)
from .parts import Common, group_link_bw, materialized
from .schema import ATTENTION, ON_OFF, RECOMPUTE, SEQUENCE_PARALLEL, TRAINING_PARAMS

FULL_RECOMPUTE = RECOMPUTE.index("full")
SELECTIVE_RECOMPUTE = RECOMPUTE.index("selective")
OP_RECOMPUTE = RECOMPUTE.index("op")
FULL_DCE_RECOMPUTE = RECOMPUTE.index("full_dce")
CORE_ATTN_RECOMPUTE = RECOMPUTE.index("core_attn")
EAGER = ATTENTION.index("eager")
SP_ON = SEQUENCE_PARALLEL.index("on")
BALANCED = ON_OFF.index("on")
PARALLEL_BLOCK_ON = ON_OFF.index("on")
KERNELS = TRAINING_PARAMS["kernels"].choices
EAGER_KERNELS = tuple(KERNELS.index(k) for k in ("eager", "fa1_eager"))
FLASH1_KERNELS = tuple(KERNELS.index(k) for k in ("fa1", "fa1_eager"))
BF16_GRADS = TRAINING_PARAMS["main_grads"].choices.index("bf16")
LOSS_GATHERED = TRAINING_PARAMS["loss_parallel"].choices.index("off")
SYNC_LAST = TRAINING_PARAMS["grad_sync"].choices.index("last")
EMB_REPLICATED = TRAINING_PARAMS["tp_embedding"].choices.index("replicated")   # KEMPNER2
FP32_PARAM_MASTER = TRAINING_PARAMS["master_weights"].choices.index("fp32_param")   # FSDP16
TORCH_FSDP2 = TRAINING_PARAMS["fsdp_runtime"].choices.index("torch_fsdp2")   # FSDP16
TORCH_FSDP2_ROOT = TRAINING_PARAMS["fsdp_runtime"].choices.index("torch_fsdp2_root")   # MEMEAGER
ACCUMULATED_GRAD_BYTES = 4.0    # FSDP2 accumulates skipped-sync gradients in its reduce_dtype, float32
BROADCAST_SYNC = TRAINING_PARAMS["param_sync"].choices.index("broadcast")
DYNAMIC_FP8 = TRAINING_PARAMS["fp8_scaling"].choices.index("dynamic")
TP_COMM_DEFAULT = TRAINING_PARAMS["tp_comm"].choices.index("default")   # FP8TP
DUALPIPE = TRAINING_PARAMS["pp_schedule"].choices.index("dualpipe")   # DUALPIPE
NORM_RECOMPUTED = ON_OFF.index("on")   # NORMRC
MEGATRON_ENGINE, DS_BF16_ENGINE = (TRAINING_PARAMS["pipeline_engine"].choices.index(x)   # DSPIPE
                                   for x in ("megatron", "deepspeed_bf16"))
assert TRAINING_PARAMS["loss_kernel"].choices == algorithm.LOSS_KERNELS
assert TRAINING_PARAMS["optimizer_kernel"].choices == parallel.OPTIMIZER_KERNELS
MICRO_BATCH_CANDIDATES = (1.0, 2.0, 4.0, 8.0)   # sequences per micro-batch tried when nothing is given
ACT_BYTES = 2.0                                 # 16-bit activations (× parallel.ACTIVATION_SCALE)


def _table(values, code, dtype):
    return jnp.asarray(values, dtype)[jnp.asarray(code, jnp.int32)]


class Setup(NamedTuple):
    """Everything that does not depend on the micro-batch size (per row of the batch)."""
    n: Array; tp: Array; cp: Array; pp: Array; v: Array; dp: Array; dp_out: Array; ep: Array
    seq: Array; s_loc: Array; gb: Array; steps: Array; layers_stage: Array; layers_first: Array
    full: Array; selective: Array; op: Array; op_frac: Array; act_seq_layer: Array
    eager: Array; sp: Array; t_sp: Array; zs: Array; shard: Array
    elem_factor: Array; cast_bytes_per_token: Array; flash1: Array
    is_moe: Array; load: Array; shared_params: Array; expert_params: Array
    wb: Array; gbytes: Array; ob: Array; act_scale: Array; gather_b: Array
    model_flop: Array; flop_gpu: Array; attn_fwd_seq_layer: Array; attn_bwd_seq_layer: Array
    attn_flop_gpu: Array
    head_flop_gpu: Array     # LM-head GEMM FLOPs of the critical stage (+ the MTP modules' head passes), per GPU
    vocab: Array; w_shard: Array; expert_active: Array
    states_bytes: Array; dp_fixed_s: Array; dp_per_microbatch_s: Array; loss_bytes_per_token: Array
    dp_tail_fixed_s: Array; dp_tail_per_microbatch_s: Array    # TAIL [walls.parallel.data_parallel_collectives]
    dualpipe: Array          # DUALPIPE: 1 with pp_schedule = dualpipe and pp > 1, else 0 (the float 0.0: not traced)
    norm_rc: Array           # NORMRC: 1 where the RMSNorm outputs are recomputed (recompute_norm = on), else 0
    kv_width: Array          # K (or V) projection width, kv heads · head_dim (heads · head_dim without GQA)
    dp_sync_s: Array         # exposed parameter-broadcast latency (param_sync = broadcast), s
    ep_layers_stage: Array   # MoE layers of the critical stage (DSV3: dense layers and MTP counted), count
    ep_layer_frac: Array     # DSV3EP: one layer's share of the critical stage's FLOPs (EP overlap window), 0-1
    ep_alt_layers: Array     # DSV3EP: MoE layers of a middle rank when a layout's last rank is FLOP-critical (else 0)
    optimizer_update_s: Array  # the optimizer step's own HBM pass over its shard, s (after the backward)
    loss_peak_bytes_per_token: Array  # MEMPEAK: the loss's transient buffers per token, B [memory()]
    loss_gather_bytes_per_token: Array  # MEMPEAK: loss_parallel = off, the gathered 16-bit logits per token, B
    accumulated_grad_bytes: Array  # MEMPEAK: grad_sync = last, unsharded fp32 gradients less the shards, when M > 1, B
    recompute_seq_layer: Array  # MEMPEAK: one layer's rematerialised activations per sequence (full recompute), B
    tp_fp8_sync_s: Array     # FP8TP: float8 TP amax all-reduce waits per block and micro-batch, s (0 without)
    fsdp_backward_bytes: Array  # FSDP16: FSDP2's per-unit gradient buffers in a layer's backward (torch_fsdp2), B
    ckpt_bytes_per_param: Array  # FSDP16: checkpointed bytes per parameter (weights + optimizer state)


def setup(p, c: Common, eff: Efficiency, vocab, *, torch_tp: bool = True, deepspeed_engine: bool = True,
          param_broadcast: bool = True, dualpipe: bool = True) -> Setup:
    """Degrees, parameter split, bytes per parameter and FLOPs of one step.

    - N = tp·cp·pp·dp; ep ranks live inside dp (Megatron-Core / DeepSeek convention); a
      dense model ignores ep (1).  dp is floored at 1 (divisibility flags the rest).
    - Model FLOPs (MFU numerator, PaLM App. B with the causal mask): 6·P_active·T +
      12·L·(a·d)·s·T·f, f = walls.attention.causal_fraction(s, s) ≈ ½: only the lower
      triangle of the scores is necessary work (FlashAttention's benchmark FLOP count
      halves causal attention), so MFU <= 1 holds for a causal flash kernel too (PaLM
      counts the full square: its MFU is higher by 6·L·(a·d)·s/(6·P) of the model FLOPs).
    - Hardware FLOPs: 6·T·(P_active - E_untied + (λ - 1)·P_expert,active) (λ = routing load of the busiest
      expert rank: the capacity factor, or the imbalance when dropless; E_untied = (1 - tied)·V·h, the
      untied input embedding, a gather forward and a scatter-add backward, no GEMM) + the attention core
      [walls.attention: flash causal ½ square, backward 2.5×; eager full square, 2×] +
      recomputation (full: one more forward of the blocks, 2·T·(P_active - E_untied - V·h): checkpointing wraps the
      transformer blocks, never the LM head; full_dce: one more forward without the MLP
      down-projection, 2·T·h·ffn·L (per active expert), which JAX remat (jax.checkpoint: the
      recomputation is partial-evaluated and dead-code eliminated) and torch's non-reentrant checkpoint
      (early stop: recomputation ends once every saved tensor is back; an op's inputs are saved
      before it runs) never re-run, since its output only feeds the residual add (with parallel_block = on
      the attention output projection too, 2·T·h·(a·d)·L); selective: eager's attention core forward;
      core_attn (Megatron-Core's selective): the attention core forward whatever the kernel (flash too); op
      (torchtitan per-op SAC): op_frac = walls.saved_activations.op_sac_recompute_fraction of the forward
      GEMMs, wk/wo/w3 of a Llama block, + eager's attention core forward),
      × recompute_flop_scale for the extras.  Per GPU: /N, except the LM head (6·V·h·T), which
      the last pipeline stage runs alone: head·pp/N there, 0 on a middle stage (stage_balance = on
      or last_stage_layers, when a middle stage is the slowest; HFUS, issue 12: the head's even
      share used to stay on the middle stage, ~14 % of nanotron's 1.34B pp2 step).
    - DSV3 (issue 12; catalog/shapes.py): the attention core is core_head_dim = ((d + r) + d_v)/2 wide per
      head (MLA: Q·Kᵀ over 192, P·V over 128); MTP (DeepSeek-V3 §2.2) adds, on the last stage only,
      6·T·P_mtp (its block, 2·h² projection and LM-head pass) + its attention core, to the hardware and
      the model FLOPs (Megatron-Core num_floating_point_operations: mtp_num_layers); last_stage_layers = k
      > 0 puts k layers on the last rank and ⌈(L - k)/(pp - 1)⌉ on the busiest other one, the critical stage being the
      larger of a middle rank (trunk·k_mid/L, trunk = every FLOP but the head's) and the last
      (trunk·k/L + head + MTP) per stage;
      ep_layers_stage = min(layers of the critical stage (+ MTP on the last), L - dense_layers + MTP):
      the leading dense layers dispatch no tokens.  Every term is exactly 0 / unchanged without the fields.
      DSV3EP: ep_layer_frac = (trunk·pp/(L·n))/flop_gpu, one layer's share of the critical stage's FLOPs (the
      EP overlap window is its MoE layers' compute); ep_alt_layers = min(k_mid, L - k - dense_layers) when the
      layout's last rank is FLOP-critical, else 0 (a middle rank that may be slower with its EP time).
    """
    n = floor_pos(p.n_accelerators, 1.0)
    tp, cp, pp = (floor_pos(x, 1.0) for x in (p.tp, p.cp, p.pp))
    v = floor_pos(p.virtual_stages, 1.0)
    is_moe = c.n_experts > jnp.maximum(c.top_k, 1.0)
    ep = jnp.where(is_moe, floor_pos(p.ep, 1.0), 1.0)
    dp_out = n / (tp * cp * pp)
    dp = floor_pos(dp_out, 1.0)
    seq = jnp.where(c.is_cnn, 1.0, floor_pos(p.seq_len, 1.0))
    gb = floor_pos(p.global_batch, 1.0)
    tokens = gb * seq
    rc = jnp.asarray(p.recompute)
    one = jnp.ones_like(c.peak)
    full = jnp.where((rc == FULL_RECOMPUTE) | (rc == FULL_DCE_RECOMPUTE), one, 0.0)   # memory, passes, TP: as full
    full_dce = jnp.where(rc == FULL_DCE_RECOMPUTE, one, 0.0)
    # RECOMP (issue 12): core_attn = Megatron-Core selective: selective's memory and traffic, + the flash forward re-run
    core_attn = jnp.where(rc == CORE_ATTN_RECOMPUTE, one, 0.0)
    selective = jnp.where(rc == SELECTIVE_RECOMPUTE, one, 0.0) + core_attn
    op = jnp.where(rc == OP_RECOMPUTE, one, 0.0)
    eager = jnp.where(jnp.asarray(p.attention) == EAGER, one, 0.0)
    sp = jnp.where(jnp.asarray(p.sequence_parallel) == SP_ON, one, 0.0)
    # elementwise kernels [compute()]: × the counted eager/fused traffic ratio with kernels = eager /
    # fa1_eager; sub-16-bit GEMMs add their operand casts (bytes per token, layer and rank; 0 at 16 bits)
    kv_ratio = jnp.where(c.n_kv_heads > 0, c.n_kv_heads, c.n_heads) / floor_pos(c.n_heads, 1.0)
    ffn_ratio = c.ffn_dim / floor_pos(c.hidden, 1.0)
    kcode = jnp.asarray(p.kernels)
    unfused = jnp.where((kcode == EAGER_KERNELS[0]) | (kcode == EAGER_KERNELS[1]), one, 0.0)
    flash1 = jnp.where((kcode == FLASH1_KERNELS[0]) | (kcode == FLASH1_KERNELS[1]), one, 0.0)
    elem_factor = 1.0 + unfused * (unfused_elementwise_factor(kv_ratio, ffn_ratio) - 1.0)
    # fp8_scaling = dynamic (torchao tensorwise): each cast operand is read once more for its amax (TITAN2)
    amax_pass = jnp.where(jnp.asarray(p.fp8_scaling) == DYNAMIC_FP8, one, 0.0)
    cast_tok = jnp.where(c.is_cnn, 0.0, parallel.low_precision_cast_bytes(1.0 / tp, c.hidden, kv_ratio, ffn_ratio,
                                                                         c.bpe, full, amax_pass))
    # FP8TP (issue 12, marked): torchao float8 tensorwise TP (PyTorch TP: tp_comm != default, SP on, tp > 1): the four
    # float8-all-gathered operands are copied whole into the weight-gradient layout, and every cast of a TP-sharded
    # DTensor waits for a scalar amax all-reduce [walls.tensor_parallel.float8_tp_transpose_bytes, float8_tp_amax_syncs]
    tp_fp8_sync = jnp.zeros_like(one)
    if torch_tp:    # static (scenarios.static_options): traced only when some row runs PyTorch TP
        fp8_tp = ((jnp.asarray(p.tp_comm) != TP_COMM_DEFAULT) & (sp > 0) & (tp > 1.0) & (c.bpe < 2.0) & (amax_pass > 0)
                  & ~c.is_cnn)
        cast_tok = cast_tok + jnp.where(fp8_tp, tensor_parallel.float8_tp_transpose_bytes(1.0, c.hidden, c.bpe, tp), 0.0)
        tp_node = jnp.minimum(tp, floor_pos(c.apn, 1.0))
        amax_ar = fleet.hierarchical_allreduce(4.0, tp_node, tp / tp_node, group_link_bw(c, c.bw_up, tp_node), c.alpha_up,
                                               c.bw_out, c.alpha_out)
        tp_fp8_sync = jnp.where(fp8_tp, tensor_parallel.float8_tp_amax_syncs(1.0 + full + op) * amax_ar, 0.0)
    # per-op SAC recomputes op_frac of the forward GEMMs and stores op_bytes per token and layer
    # [walls.saved_activations.op_sac_recompute_fraction, op_sac_activation_elements]
    kv_width = jnp.where(c.n_kv_heads > 0, c.n_kv_heads, c.n_heads) * c.head_dim
    op_frac = op * saved_activations.op_sac_recompute_fraction(c.hidden, c.attn_width, kv_width, c.ffn_dim)
    t_sp = jnp.where(sp > 0, tp, 1.0)
    # MEMEAGER: kernels = eager / fa1_eager (torch_compile false) keeps every MUST_SAVE output in the SAC cache;
    # torch.compile's partitioner saves only those its backward reads (not w2's) [walls.saved_activations]
    op_bytes = ACT_BYTES * saved_activations.op_sac_activation_elements(c.hidden, c.attn_width, kv_width, c.ffn_dim,
                                                                        tp=tp, t_sp=t_sp, compiled=1.0 - unfused)
    layers = c.n_layers
    balanced = jnp.asarray(p.stage_balance) == BALANCED
    # stage_balance = on (Llama 3 §3.3.2): the two end stages hold one layer less, so a middle stage,
    # the slowest, runs (L + 2)/pp layers (× (L + 2)/L the even split) and the first stage, which keeps
    # the most micro-batches in flight, stores (L + 2)/pp - 1 layers' activations
    split = balanced & (pp > 1.0)
    stage_scale = jnp.where(split, (layers + 2.0) / floor_pos(layers, 1.0), 1.0)
    layers_first = jnp.where(split, jnp.maximum((layers + 2.0) / pp - 1.0, 1.0), layers / pp)
    # DSV3 (issue 12): last_stage_layers = k > 0 (Megatron-Core --decoder-last-pipeline-num-layers; Megatron-Bridge's
    # DeepSeek-V3 pipeline_model_parallel_layout) puts k layers on the last rank, (L - k)/(pp - 1) on each other one
    k_last = jnp.clip(p.last_stage_layers * one, 0.0, layers)
    layout = (k_last > 0.0) & (pp > 1.0)
    # DUALPIPE (issue 12): DeepSeek's DualPipe puts stages r and pp-1-r on rank r (deepseek-ai/DualPipe examples/
    # example_dualpipe.py: full_modules[rank], full_modules[pp_size - 1 - rank]) and feeds half the micro-batches from
    # each end, so a rank runs each of its two stages for half of them: the end ranks share the last stage's LM head
    # and MTP with the light first stage (hd = 1/2 of the last stage's work, 1/2 of a first/middle stage's)
    # (static dualpipe, scenarios.static_options: without a DualPipe row dual = hd = 1.0, Python constants XLA folds)
    dual = jnp.where((jnp.asarray(p.pp_schedule) == DUALPIPE) & (pp > 1.0), 2.0, 1.0) if dualpipe else 1.0
    hd = 1.0 / dual
    # a stage holds whole layers: the other ranks' (L - k)/(pp - 1) rounded up on the busiest one (HFUS, issue 12:
    # nanotron's 80 layers over 16 stages, 3 on the last, give two ranks 6, not 5.13; torchtitan's 126 over 8 -> 16)
    k_mid = jnp.ceil((layers - k_last) / floor_pos(pp - 1.0, 1.0) - 1e-6)
    stage_scale = jnp.where(layout, k_mid * pp / floor_pos(layers, 1.0), stage_scale)
    layers_first = jnp.where(layout, jnp.maximum(k_mid, k_last), layers_first)   # the larger stage, first's in-flight
    zs = p.zero_stage * one
    # gradients are reduced, and ZeRO/FSDP states sharded, over data × context parallel ranks: CP ranks
    # hold the same weights (Megatron-Core get_data_parallel_group(with_context_parallel=True) for the
    # grad buffers and distributed optimizer; torchtitan's FSDP mesh "dp_shard_cp")
    dpc = dp * cp
    shard = jnp.where(p.shard_group > 0, jnp.minimum(floor_pos(p.shard_group, 1.0), dpc), dpc)
    cap = p.moe_capacity_factor * one
    # capacity c pads every expert's buffer to c·mean tokens (below 1 drops tokens: counted as 1)
    load = jnp.where(is_moe, jnp.where(cap > 0, jnp.maximum(cap, 1.0), floor_pos(p.moe_imbalance, 1.0)), 1.0)

    per_expert = jnp.maximum(c.n_params - c.n_active, 0.0) / floor_pos(c.n_experts - c.top_k, 1.0)
    expert_params = jnp.where(is_moe, c.n_experts * per_expert, 0.0)
    expert_active = jnp.where(is_moe, c.top_k * per_expert, 0.0)
    shared_params = c.n_params - expert_params
    # KEMPNER2 (issue 12): tp_embedding = replicated (KempnerForge's TP plan leaves token_embedding unsharded,
    # kempnerforge/distributed/tensor_parallel.py @01b461a) -- every TP rank holds the whole untied V·h table, so the
    # per-rank parameter count is shared/(tp·pp) + (1 - 1/tp)·E/pp: count the table tp times before dividing by tp·pp
    # (states [memory()], weight traffic [compute()], DP gradients [communication()]; no GEMM FLOPs, EMBED above)
    emb_rep = jnp.where((jnp.asarray(p.tp_embedding) == EMB_REPLICATED) & ~c.is_cnn, (tp - 1.0) * c.untied_emb, 0.0)
    shared_rank = shared_params + emb_rep
    prec = p.precision
    wb, gbytes, ob = (_table(t, prec, one.dtype) * one for t in (parallel.WEIGHT_BYTES, parallel.GRAD_BYTES,
                                                       parallel.OPTIMIZER_BYTES))
    act_scale, gather_b = (_table(t, prec, one.dtype) * one for t in (parallel.ACTIVATION_SCALE, parallel.PARAM_GATHER_BYTES))
    # main_grads = bf16 (Megatron-Core grad_reduce_in_fp32=False): 16-bit grad buffer and reductions
    gbytes = jnp.where(jnp.asarray(p.main_grads) == BF16_GRADS, jnp.minimum(gbytes, 2.0), gbytes)
    # optimizer state = master copy (fp32 / remainders / none / fp32_param) + Adam moments (fp32 / bf16) [memory()]
    ob = parallel.optimizer_state_bytes(wb, p.master_weights, p.optimizer_moments) * one
    # FSDP16: master_weights = fp32_param -- the fp32 parameter is the master and the only persistent weight
    # (PyTorch FSDP2, torch/distributed/fsdp/_fully_shard/_fsdp_param.py @010ae4a: the sharded parameter keeps
    # orig_dtype, all_gather_inputs casts it to param_dtype, free_unsharded_param frees the gathered copy, and
    # ShardedState.SHARDED is 'the only contributor to parameter memory'; MixedPrecisionPolicy (_fsdp_api.py
    # @01d5c2c): 'does not require any extra memory to keep a high-precision copy of the parameters for the
    # optimizer step'; FSDP1, _flat_param.py @01caf79: _local_shard holds the sharded flat parameter, _mp_shard the
    # low-precision shard only between pre_unshard and post_unshard's _free_low_precision_sharded_param).  Its
    # gradient shard has the parameter's dtype whatever reduce_dtype is (FSDP2 foreach_reduce casts the reduce
    # output to orig_dtype, _fsdp_collectives.py @010ae4a; FSDP1 _cast_grad_to_param_dtype).  So at ZeRO-3 the
    # 16-bit weights are only the gathered units (gather_buf below): 4 (param, counted as the master in ob) + 4
    # (grad) + 8 (Adam) = 16 B per sharded parameter where Megatron's distributed optimizer and Megatron-FSDP
    # keep 2 + 4 + 12 = 18 (their model_weight_buffer).  ZeRO <= 2 keeps its unsharded 16-bit weights: FSDP's
    # SHARD_GRAD_OP / reshard_after_forward=False holds the gathered parameters from the forward to the backward.
    # fp32 weights (wb = 4) are their own master already: no change.
    param_master = (jnp.asarray(p.master_weights) == FP32_PARAM_MASTER) & (wb < 4.0)
    wb_state = jnp.where(param_master & (zs > 2.5), 0.0, wb)   # persistent weight bytes per parameter
    gb_state = jnp.where(param_master, 4.0, gbytes)             # stored gradient bytes per parameter

    # DSV3: the core's GEMMs are core_head_dim wide per head (MLA: Q·Kᵀ over 128 + 64, P·V over 128; = head_dim
    # for MHA/GQA) [catalog/shapes.py]; MTP (DeepSeek-V3 §2.2): mtp_layers more blocks, each with its projection
    # and LM-head pass (c.mtp_params GEMM parameters per token), counted in the model FLOPs as Megatron-Core's
    # num_floating_point_operations counts them (mtp_num_layers)
    ac = attention.attention_core(seq, seq, c.n_heads, c.n_kv_heads, c.core_head_dim,
                                  kind=jnp.where(eager > 0, attention.EAGER, attention.FLASH), causal=True)
    layers = c.n_layers
    causal = attention.causal_fraction(seq, seq, True)
    model_flop = (algorithm.training_flop(c.n_eff + c.mtp_params, tokens)
                  + 12.0 * (layers + c.mtp_layers) * c.attn_width * seq * tokens * causal)
    # EMBED (issue 12): an untied input embedding (V·h, c.untied_emb; 0 when tied to the LM head or a CNN) is a row
    # gather forward (torch.nn.Embedding -> aten::embedding = index_select) and a scatter-add backward
    # (aten::embedding_dense_backward: index_add / segmented sum), not 6 FLOP per parameter and token:
    # GEMM FLOPs = 6·T·(P_active - (1 - tied)·V·h + ...); the model FLOPs (MFU, 6·P as the sources count) keep it
    dense = 6.0 * tokens * (c.n_eff - c.untied_emb + (load - 1.0) * expert_active)
    attn = layers * gb * (ac.fwd_flop + ac.bwd_flop)
    # recomputed attention forward: full recomputation; selective (Korthikanti et al. 2022) with eager's
    # score tensor (legacy Megatron-LM ParallelAttention checkpoints only the unfused core: `if not
    # self.use_flash_attn: if self.checkpoint_core_attention:`, megatron/legacy/model/transformer.py:795; MaxText remat
    # 'minimal' saves only dots without batch dims, so the attention einsums are re-run); per-op SAC with
    # eager's score tensor (its batched GEMMs are aten.bmm, outside torchtitan's save list).  RECOMP (issue 12):
    # core_attn, Megatron-Core's selective, checkpoints the core whatever its kernel (megatron/core/transformer/
    # attention.py at core_r0.8.0 baf94af: `if self.checkpoint_core_attention and self.training:` ->
    # _checkpointed_attention_forward), so the FlashAttention / cuDNN forward is re-run as well
    attn_recompute = eff.recompute_flop_scale * (full + (selective + op) * eager + core_attn * (1.0 - eager)) \
        * layers * gb * ac.fwd_flop
    # full_dce: the recomputed forward stops at the last tensor the backward saves, the input of the
    # MLP down-projection, so that GEMM (2·h·ffn FLOP per token, layer and active expert) is not re-run;
    # a parallel block (parallel_block = on) also skips the attention output projection (2·h·a·d): its
    # output, too, only feeds the residual sum (MaxText DecoderLayer: mlp_lnx + attention_lnx + inputs)
    down_fwd = 2.0 * tokens * c.hidden * c.ffn_dim * layers * jnp.where(is_moe, jnp.maximum(c.top_k, 1.0), 1.0)
    down_fwd = down_fwd + jnp.where(jnp.asarray(p.parallel_block) == PARALLEL_BLOCK_ON,
                                    2.0 * tokens * c.hidden * c.attn_width * layers, 0.0)
    head = jnp.where(c.is_cnn, 0.0, 6.0 * tokens * vocab * c.hidden)
    # MOSAIC2 (issue 12): activation checkpointing wraps the transformer blocks only, so the recomputed
    # forward holds no LM-head GEMM (2·V·h per token): llm-foundry MPTForCausalLM.activation_checkpointing_fn
    # (isinstance(module, MPTBlock)), Megatron-LM's recompute over its TransformerLayers, torchtitan's
    # per-TransformerBlock checkpoint_wrapper, MaxText's remat of the decoder layer
    recomputed_fwd = (full * jnp.maximum(dense - head, 0.0) / 3.0
                      - full_dce * jnp.minimum(down_fwd, 0.5 * dense / 3.0))
    extra = eff.recompute_flop_scale * (recomputed_fwd + op_frac * dense / 3.0) + attn_recompute
    # MISC (issue 12): with stage_balance = on the last stage ((L + 2)/pp - 1 layers + the LM head, which the
    # even share holds 1/pp of) is the critical one when the head outweighs a layer (BLOOM: 250,880 x 14,336,
    # ~1.5 layers); otherwise a middle stage ((L + 2)/pp layers) is, as before
    # HFUS (issue 12): the LM head runs on the last stage only, so the stages share the trunk (every FLOP but
    # the head's) and the last adds the whole head; a middle critical stage carries none of it
    trunk = dense + attn + extra - head
    last_scale = jnp.where(split, jnp.maximum((layers + 2.0) / pp - 1.0, 0.0) * pp / floor_pos(layers, 1.0), 1.0)
    # DSV3: with a layout the last rank's k layers + the LM head + the MTP modules (Megatron-Core builds them in
    # the last stage's post-process) race the middle ranks' (L - k)/(pp - 1) layers
    last_scale = jnp.where(layout, k_last * pp / floor_pos(layers, 1.0), last_scale)
    mtp_attn = c.mtp_layers * gb * (ac.fwd_flop + ac.bwd_flop)
    mtp_stage = (6.0 * tokens * c.mtp_params + mtp_attn) * pp     # per-GPU × n: all on the last rank
    # (the head's GEMMs count at their own rate: FP8 training keeps them in 16 bits [training_parts._with_attention_kernel])
    head_slow = (c.peak / floor_pos(jnp.minimum(c.peak_16bit, c.peak), 1.0) - 1.0) * head * pp
    last_crit = (split | layout) & (trunk * last_scale + head * pp + head_slow + mtp_stage > trunk * stage_scale)
    # (DUALPIPE: the last rank's load is hd·last + (1 - hd)·first stage; the comparison with a middle rank is the same)
    crit_scale = jnp.where(last_crit, last_scale if not dualpipe else hd * last_scale + (1.0 - hd) * stage_scale,
                           stage_scale)
    on_last = ~((balanced | layout) & ~last_crit)    # the critical stage runs the LM head and the MTP
    # computed once (parts.materialized): flop_gpu, the attention share, the loss and the EP layers all read them
    last_crit, on_last = materialized((last_crit, on_last), p.hardware)
    flop_gpu = trunk * crit_scale / n + jnp.where(on_last, hd * (head * pp + mtp_stage) / n, 0.0)
    # MoE layers on the critical stage (expert dispatch [communication()]): the dense_layers lead the model (first
    # stage); the MTP block is MoE like the last layer (Megatron-Core mtp spec = the last layer's)
    k_crit_last = k_last if not dualpipe else hd * k_last + (1.0 - hd) * k_mid
    crit_layers = jnp.where(layout, jnp.where(last_crit, k_crit_last, k_mid), layers / pp) + jnp.where(
        on_last, hd * c.mtp_layers, 0.0)
    ep_layers_stage = jnp.minimum(crit_layers, layers - c.dense_layers + c.mtp_layers)
    # DSV3EP (issue 12) [communication(), walls.moe.ep_stage_exposed]: the EP overlap hides dispatch/combine only
    # behind MoE layers' compute, trunk·pp/(L·n) FLOP per GPU each; a middle rank's MoE layers (the dense ones lead
    # rank 0) race a FLOP-critical last rank once their EP time is counted
    ep_layer_frac = jnp.clip(trunk * pp / (floor_pos(layers, 1.0) * n) / floor_pos(flop_gpu, 1.0), 0.0, 1.0)
    ep_alt_layers = jnp.where(layout & last_crit,
                              jnp.maximum(jnp.minimum(k_mid, layers - k_last - c.dense_layers), 0.0), 0.0)
    # the loss over the vocabulary (memory-bound, on the LM-head stage: off the critical one when balanced
    # and a middle stage is slowest) [compute(), walls.algorithm.cross_entropy_bytes]: bytes per token
    head_on_crit = jnp.where(c.is_cnn | ~on_last, 0.0, hd * (1.0 + c.mtp_layers))   # DSV3: + the MTP's own loss
    # MEMPEAK (issue 12): loss_parallel = off all-gathers the logits to every TP rank (output_layouts=Replicate),
    # whose loss then runs over the whole vocabulary; the gather is synchronous (the loss waits for it) [compute()]
    gathered = jnp.asarray(p.loss_parallel) == LOSS_GATHERED
    vocab_loss = jnp.where(gathered, vocab, vocab / tp)
    sharded = ~gathered & (tp > 1.5)    # a vocabulary shard: PyTorch's loss runs DTensor's loss_parallel handlers
    loss_tok = head_on_crit * algorithm.cross_entropy_bytes(1.0, vocab_loss, p.loss_kernel, sharded)
    loss_gather_b_tok = jnp.where(gathered & ~c.is_cnn & on_last, 2.0 * vocab, 0.0)
    # MEMPEAK (issue 12): the loss's buffers alive together when the backward starts, per token [memory()]
    loss_peak_tok = jnp.where(c.is_cnn, 0.0,
                              algorithm.cross_entropy_peak_bytes(1.0, vocab_loss, p.loss_kernel, sharded))
    # the attention core's share (with its recomputed forward): a kernel of its own [compute()]
    attn_flop_gpu = (attn + attn_recompute) * crit_scale / n + jnp.where(on_last, hd * mtp_attn * pp / n, 0.0)
    # the LM head's GEMMs on the critical stage (all of them on the last stage, none on a middle one; + each MTP
    # module's pass through the shared head): kept in 16 bits by FP8 training [compute(), _with_attention_kernel]
    head_flop_gpu = jnp.where(on_last, hd * head * pp * (1.0 + c.mtp_layers) / n, 0.0)
    # DUALPIPE (issue 12): each rank holds two stages, one of each model copy (DeepSeek-V3 Table 2: parameters 2x):
    # twice the weights and gradients, whose optimizer state shards over both copies' ranks (a ZeRO group of 2·d)
    # and whose reductions move twice the bytes over that group [communication()]
    w_shard = dual * (shared_rank / (tp * pp) + expert_params / (tp * pp * ep)) * wb

    # Optimizer states [memory()] and DP collectives [communication()]: independent of b.
    expert_shard = jnp.minimum(shard, floor_pos(dpc / ep, 1.0))
    kw = dict(weight_bytes_per_param=wb_state, grad_bytes_per_param=gb_state, optimizer_bytes_per_param=ob,
              zero_stage=zs)
    m_sh = node.training_memory(dual * shared_rank, 0.0, shard_factor=tp * pp, dp=dual * shard, **kw)
    m_ex = node.training_memory(dual * expert_params, 0.0, shard_factor=tp * pp * ep, dp=dual * expert_shard, **kw)
    # ZeRO-3 holds two gathered units (current + prefetched), L/pp units a stage.  FSDP16: fsdp_runtime = torch_fsdp2
    # (PyTorch FSDP2) gathers them in the all-gather dtype (gather_b: bf16 for fp8 too, torchao Float8Linear casts the
    # gathered bf16 weight itself unless Float8LinearConfig.enable_fsdp_float8_all_gather, off by default: torchtitan
    # @9dec370 --float8.enable_fsdp_float8_all_gather is store_true), not at the fp8 recipe's 3 B (bf16 + TE cache)
    runtime = jnp.asarray(p.fsdp_runtime)
    root_kept = (runtime == TORCH_FSDP2_ROOT) & (zs > 2.5) & ~c.is_cnn
    fsdp2 = ((runtime == TORCH_FSDP2) | root_kept) & (zs > 2.5)
    unit_params = (shared_rank / (tp * pp) + expert_params / (tp * pp * ep)) / (layers / pp)
    # MEMEAGER: fsdp_runtime = torch_fsdp2_root (FSDP2 at torch 1963fc8, torchtitan 9dec370): the root unit
    # (fully_shard(model): the parameters outside the blocks) is never resharded after forward, so it stays gathered
    # through the backward beside the two block units, which no longer carry its share [walls.saved_activations]
    root_params = saved_activations.fsdp2_root_params(vocab, c.hidden, c.untied_emb + emb_rep, tp=tp, pp=pp)
    stage_params = unit_params * (layers / pp)
    unit_params = jnp.where(root_kept, jnp.maximum(stage_params - root_params, 0.0) / (layers / pp), unit_params)
    unit_w = unit_params * jnp.where(fsdp2, gather_b, wb)
    gather_buf = jnp.where(zs > 2.5, 2.0 * unit_w + jnp.where(root_kept, root_params * gather_b, 0.0), 0.0)
    # FSDP16: FSDP2's backward also holds, at the end of a unit's backward, the unit's unsharded gradients (param
    # dtype, gather_b) and the previous unit's reduce-scatter input (reduce dtype: fp32, or bf16 with main_grads =
    # bf16), kept in reduce_scatter_state until this unit's post_backward [walls.parallel.fsdp_backward_buffer_bytes;
    # memory(): a transient of the layers' backward, not of the loss's].  Not for the other runtimes: XLA schedules
    # its own buffers (MaxText's v5e rows, which ran in 16 GB, would not fit with them), FSDP1 not read
    fsdp_bwd = jnp.where(fsdp2, parallel.fsdp_backward_buffer_bytes(unit_params, gather_b, gbytes), 0.0)
    # MEMPEAK (issue 12): grad_sync = last keeps the stage's unsharded gradients, in fp32, between micro-batches
    # (ZeRO 0-1 hold unsharded gradients anyway) [memory(): only when M > 1]; their shards do not exist until the
    # last micro-batch's reduce-scatter writes them (zero_grad(set_to_none=True) freed the last step's), so the
    # unsharded fp32 gradients replace the sharded ones at the peak
    accum_grads = jnp.where((jnp.asarray(p.grad_sync) == SYNC_LAST) & (zs > 1.5),
                            jnp.maximum(ACCUMULATED_GRAD_BYTES * w_shard / floor_pos(wb, 1e-3)
                                        - m_sh.gradients_bytes - m_ex.gradients_bytes, 0.0), 0.0)
    states = (m_sh.weights_bytes + m_sh.gradients_bytes + m_sh.optimizer_bytes + m_ex.weights_bytes
              + m_ex.gradients_bytes + m_ex.optimizer_bytes + gather_buf)
    # FSDP16: a checkpoint holds the weights and the optimizer state: gather_b (16-bit weights) + ob, or with
    # fp32_param only ob, whose 4-byte master is the fp32 parameter itself (torchtitan's DCP saves the model's fp32
    # sharded state_dict and AdamW's exp_avg / exp_avg_sq: 12 B) [reliability()]
    ckpt_b = jnp.where(param_master, 0.0, gather_b) + ob
    # the optimizer step: one memory-bound pass over the rank's optimizer shard, exposed [walls.parallel]
    moments_b = jnp.asarray(parallel.MOMENT_BYTES, one.dtype)[jnp.asarray(p.optimizer_moments, jnp.int32)]
    # (FSDP16: with fp32_param the update is in place on the fp32 shard, no 16-bit weight is written: w = 0)
    opt_update_s = parallel.optimizer_update_bytes(m_sh.optimizer_bytes + m_ex.optimizer_bytes, ob, gb_state,
                                                   jnp.where(param_master, 0.0, wb), moments_b,
                                                   p.optimizer_kernel) / c.mem_bw
    # MESH: on an all-to-all wired node a group of k in-node ranks drives k - 1 of the n - 1 links [parts.group_link_bw]
    def links(dp_local):
        return dict(zero_stage=zs, dp_local=dp_local, bw_intra=group_link_bw(c, c.bw_up, dp_local),
                    alpha_intra=c.alpha_up, bw_inter=c.bw_out, alpha_inter=c.alpha_out,
                    bw_intra_ring=group_link_bw(c, c.bw_up_ring, dp_local))
    sh_grad = dual * shared_rank / (tp * pp)       # DUALPIPE: both copies' stages, over 2·d ranks
    dpc_sh = dual * dpc
    sh_links = links(jnp.clip(c.apn / tp, 1.0, dpc))
    # BUCKETS: ZeRO-1 issues one reduce-scatter and one all-gather per gradient bucket (Megatron-Core's default
    # bucket grows with dp·cp so that the count times the ring latency stays flat) [walls.parallel.bucket_count]
    dp_sh = parallel.data_parallel_collectives(sh_grad * gbytes, sh_grad * gather_b, dp=dpc_sh, shard=dual * shard,
                                               layers=layers / pp, **sh_links,
                                               buckets=parallel.bucket_count(sh_grad, dpc_sh, p.dp_bucket_params))
    f_sh, m_sh_t = dp_sh.fixed_s, dp_sh.per_microbatch_s
    # DSPIPE (issue 12): DeepSpeed's PipelineEngine [walls.deepspeed_pipe]: the BF16Optimizer all-reduces the fp32
    # gradients and all-gathers the 16-bit parameters (where ZeRO-1 reduce-scatters); ReduceTiedGrads all-reduces the
    # tied embedding gradient between the first and last stage after the flush (fp32 hp grads under bf16)
    if deepspeed_engine:    # static (scenarios.static_options): traced only when some row has pipeline_engine != megatron
        engine = jnp.asarray(p.pipeline_engine)
        ds_bf16 = (engine == DS_BF16_ENGINE) & (zs < 2.5)
        f_sh = jnp.where(ds_bf16, deepspeed_pipe.bf16_optimizer_dp_s(
            sh_grad * gbytes, sh_grad * gather_b, dpc, sh_links["dp_local"], sh_links["bw_intra"], c.alpha_up,
            c.bw_out, c.alpha_out, sh_links["bw_intra_ring"]), f_sh)
        tied_out = tp * cp * dp * (pp - 1.0) >= c.apn
        tied = deepspeed_pipe.tied_grad_allreduce_s(vocab, c.hidden, tp, jnp.where(ds_bf16, 4.0, 2.0),
                                                    jnp.where(tied_out, c.bw_out, group_link_bw(c, c.bw_up_ring, 2.0)),
                                                    jnp.where(tied_out, c.alpha_out, c.alpha_up))
        # (TiedLayerSpec only: a model with an untied LM head (EMBED's c.untied_emb > 0) has no tied group)
        tied_group = (engine != MEGATRON_ENGINE) & (pp > 1.0) & ~c.is_cnn & (c.untied_emb <= 0.0)
        f_sh = f_sh + jnp.where(tied_group, tied, 0.0)
    ex_grad = dual * expert_params / (tp * pp * ep)
    edp = dual * floor_pos(dpc / ep, 1.0)
    dp_ex = parallel.data_parallel_collectives(ex_grad * gbytes, ex_grad * gather_b, dp=edp, shard=dual * expert_shard,
                                               layers=layers / pp, **links(jnp.clip(c.apn / (tp * ep), 1.0, edp)),
                                               buckets=parallel.bucket_count(ex_grad, edp, p.dp_bucket_params))
    f_ex, m_ex_t = dp_ex.fixed_s, dp_ex.per_microbatch_s
    # param_sync = broadcast (InternEvo hybrid ZeRO-1/2): gradients all-reduced over dp·cp (overlappable: the
    # reduce-scatter + all-gather above, the all-reduce's two halves when grads and params have the same bytes),
    # then one broadcast per owning rank over the ZeRO group, waited before the next forward: their bytes and
    # NCCL latency exposed; INTERNEVO: owners of the tables' code (fa7337b greedy partition), protocol NCCL's
    # tuner picks (LL / Simple) [walls.zero_sync.broadcast_params_s]
    dp_sync = jnp.zeros_like(one)
    if param_broadcast:    # static (scenarios.static_options): traced only when some row has param_sync = broadcast
        bcast = (jnp.asarray(p.param_sync) == BROADCAST_SYNC) & (zs > 0.5) & (zs < 2.5)
        shard_node = jnp.clip(c.apn / tp, 1.0, shard)
        dp_sync = jnp.where(bcast, zero_sync.broadcast_params_s(sh_grad * gather_b, shard, shard_node, layers / pp,
                                                                group_link_bw(c, c.bw_up_ring, shard_node), c.bw_out),
                            0.0)
    # Activations of one sequence and layer [memory()]: independent of b, so computed here
    s_loc = seq / cp
    rc_act = jnp.where(full > 0, 2.0, 1.0)     # the "selective" form = no score tensor; full keeps inputs
    per_seq = node.transformer_activation_bytes(s_loc, 1.0, c.hidden, c.n_heads, 1.0, tp=tp, recompute_code=rc_act,
                                                sequence_parallel=sp > 0)
    per_seq = jnp.where(op > 0, s_loc * op_bytes, per_seq)
    # NORMRC (issue 12): recompute_norm = on keeps neither RMSNorm's output (the QKV and the MLP input, 2 + 2 of
    # Korthikanti's 10/t' bytes per token and hidden unit; their inputs stay, for the norms' backward) and reruns
    # both norms in the backward [compute()]; full and per-op recomputation store neither anyway
    norm_rc = jnp.where(jnp.asarray(p.recompute_norm) == NORM_RECOMPUTED, (1.0 - full) * (1.0 - op), 0.0)
    per_seq = per_seq - norm_rc * 4.0 * s_loc * c.hidden / t_sp
    core = attention.attention_core(s_loc, seq, c.n_heads, c.n_kv_heads, c.head_dim,
                                    kind=jnp.where(eager > 0, attention.EAGER, attention.FLASH), tp=tp)
    # (RECOMP: with core_attn the checkpointed flash kernel keeps no logsumexp either: only the core's inputs/output)
    kept = jnp.where(eager > 0, (1.0 - full) * (1.0 - selective) * (1.0 - op), (1.0 - full) * (1.0 - core_attn))
    # sub-16-bit GEMM inputs are stored quantized for the weight gradient (Transformer Engine) unless
    # full or per-op recomputation keeps other tensors [walls.parallel.low_precision_activation_scale]
    lp_act = jnp.where(full + op > 0, 1.0, parallel.low_precision_activation_scale(c.bpe))
    act_seq_layer = act_scale * (per_seq * lp_act + kept * core.stored_bytes)
    # MEMPEAK (issue 12): full recomputation rematerialises one layer's activations (the "selective" form: flash
    # keeps no score tensor) during that layer's backward, on top of the stored inputs [memory()]
    recompute_seq_layer = full * act_scale * node.transformer_activation_bytes(
        s_loc, 1.0, c.hidden, c.n_heads, 1.0, tp=tp, recompute_code=1.0, sequence_parallel=sp > 0)
    # consumed by every micro-batch lane: computed once (parts.materialized), not re-fused into each
    elem_factor, cast_tok, op_frac, layers_first, act_seq_layer = materialized(
        (elem_factor, cast_tok, op_frac, layers_first, act_seq_layer), p.hardware)
    return Setup(n=n, tp=tp, cp=cp, pp=pp, v=v, dp=dp, dp_out=dp_out, ep=ep, seq=seq, s_loc=s_loc, gb=gb,
                 dualpipe=dual - 1.0, norm_rc=norm_rc,
                 steps=floor_pos(p.n_tokens, 1.0) / tokens, layers_stage=layers / pp, layers_first=layers_first,
                 full=full,
                 selective=selective, op=op, op_frac=op_frac, act_seq_layer=act_seq_layer, eager=eager, sp=sp,
                 t_sp=t_sp, zs=zs, shard=shard,
                 elem_factor=elem_factor, cast_bytes_per_token=cast_tok, flash1=flash1,
                 is_moe=is_moe, load=load, shared_params=shared_params, expert_params=expert_params,
                 wb=wb, gbytes=gbytes, ob=ob, act_scale=act_scale, gather_b=gather_b, model_flop=model_flop,
                 flop_gpu=flop_gpu, attn_fwd_seq_layer=ac.fwd_flop, attn_bwd_seq_layer=ac.bwd_flop,
                 attn_flop_gpu=attn_flop_gpu, head_flop_gpu=head_flop_gpu, optimizer_update_s=opt_update_s,
                 loss_peak_bytes_per_token=loss_peak_tok, recompute_seq_layer=recompute_seq_layer,
                 loss_gather_bytes_per_token=loss_gather_b_tok, accumulated_grad_bytes=accum_grads,
                 vocab=vocab, w_shard=w_shard, expert_active=expert_active, states_bytes=states,
                 dp_fixed_s=f_sh + jnp.where(is_moe, f_ex, 0.0),
                 dp_per_microbatch_s=m_sh_t + jnp.where(is_moe, m_ex_t, 0.0), dp_sync_s=dp_sync,
                 # TAIL: the shared and the expert groups' last collectives run side by side: the longer one
                 dp_tail_fixed_s=jnp.maximum(dp_sh.tail_fixed_s, jnp.where(is_moe, dp_ex.tail_fixed_s, 0.0)),
                 dp_tail_per_microbatch_s=jnp.maximum(dp_sh.tail_per_microbatch_s,
                                                      jnp.where(is_moe, dp_ex.tail_per_microbatch_s, 0.0)),
                 loss_bytes_per_token=loss_tok, kv_width=kv_width, ep_layers_stage=ep_layers_stage,
                 ep_layer_frac=ep_layer_frac, ep_alt_layers=ep_alt_layers,   # DSV3EP
                 tp_fp8_sync_s=tp_fp8_sync,   # FP8TP
                 fsdp_backward_bytes=fsdp_bwd, ckpt_bytes_per_param=ckpt_b)   # FSDP16
