"""What a scenario takes and gives, as plain data (no JAX, no pint).

`space.py` validates spec files against these tables, `scenarios.py` computes
exactly these parameters/objectives/constraints, `sweep.py` and the search
glue them together, `report.py` names the columns.  Keep the three in step:
adding a parameter here means the scenario reads it; adding an objective here
means the scenario returns it (tests/test_schema.py checks both ways).

Parameter kinds
- "catalog": a catalog entry name of `catalog_kind` (accelerators, models,
  fabrics, regions); the sweep passes its integer row index.
- "choice": one of `choices`; the sweep passes the position (int code).
- "int":   an integer count/degree (passed as float inside JAX).
- "float": a physical quantity of `dimension` (a units.parse dimension name,
  e.g. "time", "bandwidth", "dimensionless"); SI float inside JAX.
`default` is used when a spec neither fixes the parameter nor makes it an axis;
`None` means the spec must give it.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from .._types import PRECISIONS


class ParamSpec(NamedTuple):
    kind: str                       # "catalog" | "choice" | "int" | "float"
    default: Any                    # in the parameter's display form (name, choice, number or "3 h" string)
    doc: str
    catalog_kind: str | None = None
    choices: tuple[str, ...] | None = None
    dimension: str | None = None    # units.parse dimension for "float"
    low: float | None = None        # inclusive bounds in SI (validation)
    high: float | None = None


class OutputSpec(NamedTuple):
    unit: str                       # SI unit written in the column name
    doc: str
    sense: str = "min"              # "min" or "max" when used as an objective


RECOMPUTE = ("none", "selective", "full", "op", "full_dce", "core_attn")
# op: torchtitan per-op SAC (walls.parallel.op_sac_*); full_dce: full, re-running only what the backward needs
# (JAX remat, torch non-reentrant checkpoint);
# core_attn (RECOMP, issue 12): Megatron-Core's selective granularity (recompute_modules ["core_attn"], its default):
# as selective, and the core attention is checkpointed whatever its kernel, so a flash forward is re-run too
ATTENTION = ("flash", "eager")           # walls.attention.ATTENTION_KINDS
SEQUENCE_PARALLEL = ("on", "off")
ON_OFF = ("off", "on")
PRICING = ("cloud", "onprem")
KV_PRECISIONS = ("auto", *PRECISIONS)     # serving kv_precision; "auto" = the weight precision
OFFLOAD = ("off", "kv", "weights")        # serving offload
SCHEDULERS = ("overlapped", "serial")     # serving: does the engine's CPU work per iteration hide behind the GPU
EP_DISPATCHERS = ("alltoall", "deepep")   # training ep_dispatcher (walls.moe.dispatch_copies dedup 0 / 1)
CP_COMM_TYPES = ("p2p", "all_gather")     # training cp_comm_type (walls.attention.CP_COMM_TYPES)
PP_SCHEDULES = ("1f1b", "dualpipe")       # training pp_schedule (walls.parallel.dualpipe_bubble_slots)

_COMMON: dict[str, ParamSpec] = {
    "hardware": ParamSpec("catalog", "h100_sxm", "accelerator", catalog_kind="accelerators"),
    "model": ParamSpec("catalog", None, "model to train or serve", catalog_kind="models"),
    "region": ParamSpec("catalog", "us_avg", "grid region (carbon, PUE, WUE, electricity price)",
                        catalog_kind="regions"),
    "fabric": ParamSpec("catalog", "ib_ndr", "scale-out network between nodes", catalog_kind="fabrics"),
    "precision": ParamSpec("choice", "fp16", "numeric precision of weights and math", choices=PRECISIONS),
    "tp": ParamSpec("int", 1, "tensor-parallel degree (within a node)", low=1),
    "pp": ParamSpec("int", 1, "pipeline-parallel degree", low=1),
    "efficiency": ParamSpec("float", 0.5, "achieved fraction of peak FLOP/s on matmuls (η / MFU knob)",
                            dimension="dimensionless", low=1e-4, high=1.0),
    "pricing": ParamSpec("choice", "cloud", "cloud on-demand $/h or on-prem purchase amortized",
                         choices=PRICING),
    "depreciation": ParamSpec("float", "3 year", "on-prem depreciation period", dimension="time", low=1.0),
    "maintenance_frac_per_year": ParamSpec("float", 0.05, "on-prem maintenance per year as a fraction of price",
                                           dimension="dimensionless", low=0.0, high=1.0),
}

TRAINING_PARAMS: dict[str, ParamSpec] = {
    **_COMMON,
    "n_tokens": ParamSpec("float", None, "training tokens", dimension="tokens", low=1.0),
    "n_accelerators": ParamSpec("int", 8, "accelerators in the fleet", low=1),
    "ep": ParamSpec("int", 1, "expert-parallel degree (MoE), inside the data-parallel group: ep divides "
                    "dp = N/(tp·cp·pp); ignored (1) for a dense model", low=1),
    "microbatches": ParamSpec("int", 0, "microbatches per step per pipeline (M); 0 = from micro_batch_size, "
                              "or the fastest feasible when both are 0", low=0),
    "virtual_stages": ParamSpec("int", 1, "interleaved virtual stages per GPU (V)", low=1),
    "global_batch": ParamSpec("int", 1024, "sequences per optimizer step", low=1),
    "seq_len": ParamSpec("int", 4096, "tokens per sequence", low=1),
    "recompute": ParamSpec("choice", "selective", "activation recomputation", choices=RECOMPUTE),
    "zero_stage": ParamSpec("int", 1, "ZeRO stage: 0 none, 1 optimizer, 2 +gradients, 3 +weights sharded over DP",
                            low=0, high=3),
    "overlap": ParamSpec("float", 0.5, "fraction of DP communication hidden behind compute",
                         dimension="dimensionless", low=0.0, high=1.0),
    "checkpoint_interval": ParamSpec("float", "0 s", "time between checkpoints; 0 = Young-Daly optimum",
                                     dimension="time", low=0.0),
    "checkpoint_bw": ParamSpec("float", "100 GB/s", "aggregate storage write bandwidth for checkpoints",
                               dimension="bandwidth", low=1.0),
    "recovery": ParamSpec("float", "10 min", "restart time after a failure", dimension="time", low=0.0),
    "attention": ParamSpec("choice", "flash", "attention kernel: flash (fused, no s² scores in HBM) or eager",
                           choices=ATTENTION),
    "cp": ParamSpec("int", 1, "context-parallel degree (sequence split, ring attention); N = tp·cp·pp·dp", low=1),
    "sequence_parallel": ParamSpec("choice", "on", "Megatron sequence parallelism with TP (activations and "
                                   "elementwise work ÷ tp; RS+AG instead of AR)", choices=SEQUENCE_PARALLEL),
    "shard_group": ParamSpec("int", 0, "ZeRO/FSDP sharding group (hybrid sharding: shard inside, replicate "
                             "across); 0 = the whole data-parallel group", low=0),
    "micro_batch_size": ParamSpec("int", 0, "sequences per micro-batch (takes precedence over microbatches); "
                                  "0 = from microbatches, or the fastest feasible of 1, 2, 4, 8", low=0),
    "tp_overlap": ParamSpec("float", 0.0, "fraction of TP collectives hidden behind GEMMs (needs sequence "
                            "parallelism; Megatron-LM --tp-comm-overlap is off by default)",
                            dimension="dimensionless", low=0.0, high=1.0),
    "ep_overlap": ParamSpec("float", 0.0, "fraction of MoE all-to-all hidden behind compute (Megatron-Core "
                            "default: not overlapped)", dimension="dimensionless", low=0.0, high=1.0),
    "cp_overlap": ParamSpec("float", 1.0, "fraction of ring-attention sends hidden behind the attention "
                            "compute (Megatron-Core CP overlaps by design; capped by that compute)",
                            dimension="dimensionless", low=0.0, high=1.0),
    "stage_balance": ParamSpec("choice", "off", "off: the last pipeline stage also runs the LM head "
                               "(Megatron default); on: end stages hold fewer layers (Llama 3 §3.3.2)",
                               choices=ON_OFF),
    "moe_capacity_factor": ParamSpec("float", 0.0, "MoE expert capacity factor (tokens padded to it); "
                                     "0 = dropless (Megatron-Core default)", dimension="dimensionless",
                                     low=0.0, high=64.0),
    "moe_imbalance": ParamSpec("float", 1.0, "dropless routing imbalance: busiest expert rank / mean "
                               "tokens (1 = perfectly balanced)", dimension="dimensionless", low=1.0, high=64.0),
    "straggler_factor": ParamSpec("float", 1.0, "fail-slow: synchronous step time / healthy step time",
                                  dimension="dimensionless", low=1.0, high=100.0),
    "failure_rate_per_gpu_hour": ParamSpec("float", 0.0, "interruptions per GPU-hour; 0 = the catalog MTBF",
                                           dimension="dimensionless", low=0.0, high=1.0),
    "kernels": ParamSpec("choice", "fused", "software kernels: fused = FlashAttention-2-class attention and fused "
                         "norm/residual/RoPE/SwiGLU (Megatron, Transformer Engine, torch.compile); eager = PyTorch "
                         "eager elementwise ops (HBM traffic × efficiency.unfused_elementwise_factor, ~3.4; with "
                         "recompute = op the SAC cache keeps every MUST_SAVE output, torch.compile only those its "
                         "backward reads: walls.saved_activations, MEMEAGER); fa1 = "
                         "FlashAttention-1-generation attention (× efficiency.FLASH1_OF_FLASH2 = 0.43); fa1_eager = both",
                         choices=("fused", "eager", "fa1", "fa1_eager")),
    "main_grads": ParamSpec("choice", "fp32", "main-gradient precision (accumulated and reduced): fp32 = Megatron-LM "
                            "with bf16 (fp32 accumulation forced on), FSDP reduce_dtype fp32; bf16 = Megatron-Core "
                            "grad_reduce_in_fp32=False (Megatron-Bridge perf configs): 2 B per parameter and half "
                            "the gradient collective bytes", choices=("fp32", "bf16")),
    "master_weights": ParamSpec("choice", "fp32", "optimizer master copy of 16-bit or lower weights "
                                "(walls.parallel.optimizer_state_bytes): fp32 = 4 B beside persistent 16-bit "
                                "weights (Megatron-LM distributed optimizer, Megatron-FSDP, DeepSpeed); "
                                "remainders = 2 B (Apex DistributedFusedAdam store_param_remainders, NeMo 1.x "
                                "default with bf16); none = 0 B (update applied to the bf16 weights: Apex "
                                "dtype=bf16, torch AdamW on a bf16 model); fp32_param = 4 B, the fp32 parameter "
                                "itself (PyTorch FSDP1/FSDP2 mixed precision on an fp32 model, MaxText fp32 "
                                "weights): no persistent 16-bit copy, so ZeRO-3 holds 16 B per parameter (4 "
                                "param + 4 grad in its dtype + 8 Adam) plus the gathered 16-bit units, and the "
                                "optimizer step writes no 16-bit weight [FSDP16]",
                                choices=("fp32", "remainders", "none", "fp32_param")),
    "optimizer_moments": ParamSpec("choice", "fp32", "Adam m and v precision: fp32 = 8 B, bf16 = 4 B per "
                                   "parameter (Megatron-Core precision-aware optimizer exp_avg_dtype; torch "
                                   "AdamW on bf16 parameters)", choices=("fp32", "bf16")),
    "offload_layers": ParamSpec("int", 0, "transformer layers per pipeline stage whose activations are "
                                "offloaded to host memory (Megatron-Core cpu_offloading_num_layers; the host "
                                "link time not hidden by compute is added to the step)", low=0),
    "ep_dispatcher": ParamSpec("choice", "alltoall", "MoE token dispatcher: alltoall = one copy per (token, "
                               "expert), NIC and NVLink shares concurrently (Megatron-Core alltoall, the "
                               "default); deepep = one copy per distinct remote node then NVLink forwarding "
                               "(Megatron-Core flex dispatcher with DeepEP or HybridEP) [walls.moe]",
                               choices=EP_DISPATCHERS),
    "moe_node_limit": ParamSpec("int", 0, "nodes one token's experts may span (node-limited routing: DeepSeek-V3 "
                                "M = 4, Megatron-Core moe_router_group_topk with one group per node); 0 = "
                                "unlimited (Megatron-Core default)", low=0),
    "cp_comm_type": ParamSpec("choice", "p2p", "context-parallel K,V exchange: p2p = ring send/recv, each "
                              "step hidden behind one step's attention (Megatron-Core cp_comm_type default); "
                              "all_gather = PyTorch context_parallel's pass-KV (torchtitan default): one "
                              "all-gather hidden only behind the first local sub-SDPA, fp32 dK/dV passed "
                              "after every backward step, fp32 merges [walls.attention.cp_allgather_exposed_s]",
                              choices=CP_COMM_TYPES),
    "kv_repeat": ParamSpec("choice", "off", "on: the model repeats K,V to the query heads before the attention "
                           "call (torchtitan's Llama repeat_kv), so context parallelism exchanges n_heads/tp "
                           "heads instead of n_kv_heads/tp [walls.attention.cp_exchange_heads]", choices=ON_OFF),
    "param_sync": ParamSpec("choice", "all_gather", "how ZeRO-1/2 gathers the updated parameters: all_gather = "
                            "one all-gather (Megatron-LM distributed optimizer, DeepSpeed); broadcast = one "
                            "broadcast per owning rank, waited before the next forward (InternEvo hybrid ZeRO): "
                            "+ NCCL's ring-broadcast time per owner [walls.zero_sync.broadcast_params_s]",
                            choices=("all_gather", "broadcast")),
    "parallel_block": ParamSpec("choice", "off", "on: parallel transformer block y = x + Attn(LN(x)) + MLP(LN(x)) "
                                "(PaLM §2 'Parallel Layers'; MaxText DecoderLayer, GPT-J): attention and MLP share "
                                "one TP input all-gather and one output reduce-scatter (half the TP collectives), "
                                "and full_dce recomputation also skips the attention output projection",
                                choices=ON_OFF),
    "fp8_scaling": ParamSpec("choice", "delayed", "how sub-16-bit GEMM operands get their scale: delayed = "
                             "amax taken in the cast kernel's own pass (Transformer Engine DelayedScaling, its "
                             "default); dynamic = tensorwise scale from this tensor's amax, one more bf16 read "
                             "per cast operand (torchao float8 dynamic tensorwise, torchtitan's default) "
                             "[walls.parallel.low_precision_cast_bytes]; no effect at 16 bits",
                             choices=("delayed", "dynamic")),
    "loss_kernel": ParamSpec("choice", "fused", "the softmax cross entropy over the vocabulary, a memory-bound "
                             "kernel on the LM-head stage: fused = one kernel over 16-bit logits, 6 B per logit "
                             "(flash-attn cross_entropy, Megatron-Core --cross-entropy-loss-fusion, Liger, XLA); "
                             "torch = F.cross_entropy on fp32 logits, 48 B (torchtitan); megatron = Megatron's "
                             "unfused vocab_parallel_cross_entropy, 52 B (its default); torch16 = "
                             "F.cross_entropy on the 16-bit logits without an fp32 cast, 18 B (KempnerForge) "
                             "[walls.algorithm.cross_entropy_bytes]",
                             choices=("fused", "torch", "megatron", "torch16")),
    "last_stage_layers": ParamSpec("int", 0, "decoder layers on the last pipeline rank, all its virtual stages "
                                   "together (Megatron-Core --decoder-last-pipeline-num-layers, or the last "
                                   "rank's share of pipeline_model_parallel_layout); the other pp - 1 ranks "
                                   "split the rest evenly; the last rank also runs the LM head and the model's "
                                   "MTP modules; 0 = even split L/pp", low=0),
    "tp_comm": ParamSpec("choice", "default", "how the tensor-parallel collectives run (with sequence parallelism; "
                         "ASYNCTP): default = NCCL all-gather / reduce-scatter on sequence-first activations, "
                         "hidden only by tp_overlap (Megatron-LM, NeMo, MaxText); dtensor = PyTorch DTensor "
                         "SequenceParallel on batch-first activations (torchtitan vanilla TP): + one torch.cat "
                         "copy of the whole activation per collective, float8 all-gathers in fp8; async = "
                         "PyTorch async TP (torch symm_mem fused all-gather-matmul / matmul-reduce-scatter, "
                         "torchtitan enable_async_tensor_parallel): each fused collective decomposed into tp "
                         "chunks pipelined with its GEMM, backward reduce-scatters unfused; async_ag = async "
                         "with only the all-gather -> matmul fusions, the forward reduce-scatters as dtensor "
                         "(torchao <= 0.8 float8 tensorwise: torchtitan Dec 2024; ASYNCTP2) "
                         "[walls.tensor_parallel]", choices=("default", "dtensor", "async", "async_ag")),
    # KEMPNER (issue 12): a cluster's node size where it differs from the part's usual board (HGX 4-GPU)
    "accelerators_per_node": ParamSpec("int", 0, "accelerators sharing one node's scale-up link (NVLink), "
                                       "where the cluster's nodes differ from the catalog part's usual "
                                       "board (e.g. 4-GPU HGX H200 nodes: KempnerForge's cluster); decides "
                                       "which TP / CP / EP / PP / FSDP groups stay on the scale-up link "
                                       "and which cross the scale-out fabric; 0 = the catalog's "
                                       "accelerators_per_node", low=0),
    # DSPIPE (issue 12): DeepSpeed's PipelineEngine (Megatron-DeepSpeed 2021-22) vs Megatron-LM's schedule
    "pipeline_engine": ParamSpec("choice", "megatron", "the pipeline runtime: megatron = Megatron-LM's 1F1B "
                                 "(send and receive of a step batched, scatter/gather over TP); deepspeed = "
                                 "DeepSpeed 0.5-0.6 PipelineEngine: blocking send then receive (4 transfers "
                                 "and 3 TP all-gathers per micro-batch), tied-embedding gradient all-reduce "
                                 "between the first and last stage and the data-parallel reduction after the "
                                 "flush, not overlapped; deepspeed_bf16 = deepspeed with its BF16Optimizer "
                                 "(bf16 with ZeRO stage 0: fp32 gradient all-reduce + 16-bit parameter "
                                 "all-gather, fp32 tied gradients) [walls.deepspeed_pipe]",
                                 choices=("megatron", "deepspeed", "deepspeed_bf16")),
    # ATTNKERNEL (issue 12): which fused-attention kernel's published rate the attention core runs at
    "attention_kernel": ParamSpec("choice", "default", "the fused attention kernel (attention = flash): default = "
                                  "the part's catalog forward+backward curve (FlashAttention-2 on A100 / H100 / "
                                  "H200, cuDNN SDPA on B200 / GB200); cudnn = cuDNN's fused SDPA (Transformer "
                                  "Engine's FusedAttention F16_arbitrary_seqlen backend, its choice on Hopper+ "
                                  "since TE 1.2; PyTorch SDPA's cudnn backend), at the part's published cuDNN "
                                  "curve (catalog achievable attention_cudnn_*; H200 cuDNN 9.19, copied to H100; "
                                  "the default curve on parts without one)", choices=("default", "cudnn")),
    # stop 19 (issue 12): the optimizer step's kernels, one pass over the rank's optimizer shard or eight
    "optimizer_kernel": ParamSpec("choice", "fused", "the optimizer step, a memory-bound pass over the rank's "
                                  "optimizer shard after the gradient reduction: fused = one kernel, 2·O + "
                                  "n·(g + w) bytes (Apex FusedAdam under Megatron / NeMo / DeepSpeed, torch "
                                  "AdamW(fused=True), XLA); foreach = PyTorch's multi-tensor AdamW, eight "
                                  "kernels, n·(4p + 7·M + 3g) bytes (torchtitan until its 2025 'fused' default) "
                                  "[walls.parallel.optimizer_update_bytes]", choices=("fused", "foreach")),
    # MEMPEAK (issue 12): where the loss runs under tensor parallelism
    "loss_parallel": ParamSpec("choice", "on", "the loss under tensor parallelism: on = each TP rank runs the "
                               "cross entropy over its vocabulary shard V/tp (Megatron's vocab-parallel cross "
                               "entropy; torchtitan loss_parallel, its default); off = the LM head's logits are "
                               "all-gathered to every TP rank (output_layouts=Replicate) and each runs the loss "
                               "over the whole vocabulary (KempnerForge, HF-style TP plans): one all-gather of "
                               "T·V·2 B per micro-batch, and the loss's traffic and transient memory over V "
                               "[walls.algorithm.cross_entropy_bytes, cross_entropy_peak_bytes]; no effect at tp = 1",
                               choices=("on", "off")),
    "grad_sync": ParamSpec("choice", "micro_batch", "when sharded gradients (ZeRO-2/3, FSDP) are reduced under "
                           "gradient accumulation: micro_batch = reduce-scattered after every micro-batch's "
                           "backward (DeepSpeed ZeRO-2/3, FSDP without no_sync); last = only after the last "
                           "one, the others accumulate the unsharded gradients in fp32 on every rank (FSDP2 "
                           "set_requires_gradient_sync(False) with reduce_dtype float32: FSDPParam."
                           "to_accumulated_grad_if_needed; torchtitan's pipeline schedules, KempnerForge's "
                           "maybe_no_sync): 4 B per unsharded parameter of the rank's stage held through the "
                           "step when M > 1, in place of the gradient shards (written only by the last "
                           "reduce-scatter); memory only, no effect at ZeRO 0-1",
                           choices=("micro_batch", "last")),
    # KEMPNER2 (issue 12): whether tensor parallelism shards the token embedding
    "tp_embedding": ParamSpec("choice", "sharded", "the untied input embedding (V·h) under tensor parallelism: "
                              "sharded = split over the TP ranks (Megatron's VocabParallelEmbedding, torchtitan's "
                              "RowwiseParallel tok_embeddings); replicated = every TP rank holds the whole table "
                              "(KempnerForge's TP plan leaves token_embedding unparallelized, kempnerforge/"
                              "distributed/tensor_parallel.py @01b461a): its weights, gradients and optimizer "
                              "state, and its data-parallel gradient traffic, count once per TP rank instead of "
                              "1/tp; no FLOP change (a row gather); no effect at tp = 1 or with tied embeddings",
                              choices=("sharded", "replicated")),
    # FSDP16: PyTorch FSDP2's transient buffers
    "fsdp_runtime": ParamSpec("choice", "default", "the ZeRO-3 / FSDP runtime, for its transient memory: default = "
                              "two gathered units (current + prefetched) at the weight bytes (Megatron-FSDP, "
                              "DeepSpeed, XLA / MaxText, FSDP1: not read); torch_fsdp2 = PyTorch FSDP2 "
                              "(fully_shard): the units gathered in the all-gather dtype (bf16 under an fp8 recipe: "
                              "torchao enable_fsdp_float8_all_gather is off by default), and a layer's backward "
                              "holds the unit's unsharded param-dtype gradients and the previous unit's "
                              "reduce-scatter input in the reduce dtype (foreach_reduce, reduce_scatter_state) "
                              "[walls.parallel.fsdp_backward_buffer_bytes]; memory only, no effect below ZeRO-3 "
                              "[FSDP16]; torch_fsdp2_root = torch_fsdp2 as at torch 1963fc8 (Dec 2024, torchtitan's "
                              "benchmarks): the root unit (embedding, final norm, output) is never resharded after "
                              "forward and stays gathered through the backward beside the two blocks "
                              "[walls.saved_activations.fsdp2_root_params, MEMEAGER]",
                              choices=("default", "torch_fsdp2", "torch_fsdp2_root")),
    "memory_reserve_frac": ParamSpec("float", 0.0, "fraction of each accelerator's HBM held back from the memory "
                                     "constraint: the model counts allocated bytes, while the framework's caching "
                                     "allocator reserves more (torchtitan's published max_memory_reserved sits "
                                     "11-14 % above the model's allocations), and the CUDA context and NCCL "
                                     "buffers take some; 0 = the whole exposed HBM (the catalog's capacity). "
                                     "Fits need memory <= capacity × (1 - memory_reserve_frac); also used to "
                                     "choose the micro-batch", dimension="dimensionless", low=0.0, high=0.9),
    "pp_overlap": ParamSpec("float", 1.0, "fraction of pipeline sends hidden behind another chunk's compute "
                            "with the interleaved schedule (virtual_stages > 1), in its steady 1F1B phase: "
                            "Megatron-LM overlap_p2p_comm, on by default and forced off without virtual "
                            "stages; 0 = every send waited", dimension="dimensionless", low=0.0, high=1.0),
    "dp_bucket_params": ParamSpec("float", 0.0, "ZeRO-1 gradient bucket in parameters: one reduce-scatter and "
                                  "one all-gather per bucket, each paying the ring's latency; 0 = Megatron-Core's "
                                  "default max(40e6, 1e6·dp·cp) (PyTorch DDP's 25 MiB of fp32 gradients: 6,553,600)",
                                  dimension="dimensionless", low=0.0),
    # NORMRC (issue 12): DeepSeek-V3 §3.2.3 "We recompute all RMSNorm operations ... during back-propagation"
    "recompute_norm": ParamSpec("choice", "off", "on: the RMSNorm outputs (the QKV and MLP inputs, 4·s·b·h/t' of "
                                "Korthikanti's 34·s·b·h bytes per layer) are not stored but recomputed in the "
                                "backward, one more read and write of both norms (DeepSeek-V3 §3.2.3); no effect "
                                "with full or per-op recomputation", choices=ON_OFF),
    # DUALPIPE (issue 12): DeepSeek-V3's bidirectional pipeline schedule
    "pp_schedule": ParamSpec("choice", "1f1b", "pipeline schedule: 1f1b = Megatron-LM's one-forward-one-backward "
                             "(interleaved with virtual_stages > 1); dualpipe = DeepSeek-V3's DualPipe (micro-"
                             "batches fed from both ends, each rank holding two stages of two model copies): "
                             "bubble (pp/2 - 1)(F&B + B - 3W) = (pp/2 - 1)·2/3 of a micro-batch's F + B, "
                             "pp + 1 micro-batches of activations, 2x weights and gradients (optimizer "
                             "shards over both copies), the end ranks sharing the last stage's LM head and MTP "
                             "with the first stage, pipeline sends and the EP all-to-all overlappable in every "
                             "chunk pair; virtual_stages is not used [walls.parallel.dualpipe_bubble_slots]", choices=PP_SCHEDULES),
}

SERVING_PARAMS: dict[str, ParamSpec] = {
    **_COMMON,
    "request_rate": ParamSpec("float", None, "arriving requests per second", dimension="rate", low=0.0),
    "prompt_tokens": ParamSpec("int", 1024, "input tokens per request", low=1),
    "output_tokens": ParamSpec("int", 256, "generated tokens per request", low=1),
    "batch": ParamSpec("int", 16, "concurrent sequences per replica (continuous batching slots)", low=1),
    "replicas": ParamSpec("int", 0, "model replicas; 0 = fewest that keep utilisation <= max_utilization", low=0),
    "max_utilization": ParamSpec("float", 0.8, "utilisation cap used when replicas = 0",
                                 dimension="dimensionless", low=0.01, high=0.999),
    "duration": ParamSpec("float", "1 year", "deployment period for TCO and carbon", dimension="time", low=1.0),
    # Request mix, techniques of today's servers (issue 13).  prompt_tokens / output_tokens are the
    # MEANS of the length mix (the team brief's `prompt_len` / `output_len`: the existing names are
    # kept, every space, test and calibration row uses them); lengths are log-normal with these CVs.
    "prompt_cv": ParamSpec("float", 0.0, "coefficient of variation of prompt length (0 = fixed)",
                           dimension="dimensionless", low=0.0, high=10.0),
    "output_cv": ParamSpec("float", 0.0, "coefficient of variation of output length (0 = fixed)",
                           dimension="dimensionless", low=0.0, high=10.0),
    "kv_precision": ParamSpec("choice", "auto", "KV-cache precision (auto = the weight precision)",
                              choices=KV_PRECISIONS),
    "chunk_size": ParamSpec("int", 0, "chunked-prefill tokens per iteration; 0 = whole prompt in one",
                            low=0, high=1048576),
    "disaggregated": ParamSpec("choice", "off", "separate prefill and decode pools (KV over the fabric)",
                               choices=ON_OFF),
    "prefill_fraction": ParamSpec("float", 0.5, "share of replicas in the prefill pool when disaggregated",
                                  dimension="dimensionless", low=0.01, high=0.99),
    "spec_k": ParamSpec("int", 0, "speculative decoding: drafted tokens per step; 0 = off", low=0, high=64),
    "spec_acceptance": ParamSpec("float", 0.7, "probability a drafted token is accepted (alpha, in [0, 1))",
                                 dimension="dimensionless", low=0.0, high=0.999),
    "draft_cost_frac": ParamSpec("float", 0.05, "draft forward pass cost / target decode step (< 1)",
                                 dimension="dimensionless", low=0.0, high=0.999),
    "prefix_hit_rate": ParamSpec("float", 0.0, "fraction of prompt tokens found in the prefix cache",
                                 dimension="dimensionless", low=0.0, high=1.0),
    "offload": ParamSpec("choice", "off", "spill what does not fit (KV or weights) to host memory",
                         choices=OFFLOAD),
    "ep": ParamSpec("int", 1, "expert-parallel degree inside a replica (MoE; 1 for dense)", low=1),
    "moe_imbalance": ParamSpec("float", 1.0, "busiest expert-parallel rank's routed tokens / mean "
                               "(1 = perfectly balanced)", dimension="dimensionless", low=1.0, high=64.0),
    # SERIALHOST: the engine's per-iteration CPU work (scheduling, input preparation, output processing)
    "scheduler": ParamSpec("choice", "overlapped", "engine scheduler: overlapped = the CPU work of an iteration "
                           "runs while the GPU computes the previous one (SGLang >= 0.4, TensorRT-LLM, vLLM V1: "
                           "only the kernel dispatch is charged); serial = it runs between GPU steps (vLLM's V0 "
                           "engine, 0.4-0.7): each decode step also waits serial_host_s_per_seq (0.1 ms) per "
                           "running sequence [efficiency.Efficiency.serial_host_s_per_seq]", choices=SCHEDULERS),
    "scheduler_steps": ParamSpec("int", 1, "decode steps per scheduler call (vLLM 0.6-0.7 --num-scheduler-steps, "
                                 "multi-step scheduling): a serial engine's host time is paid once per this many "
                                 "steps; no effect when scheduler = overlapped", low=1, high=256),
}

PARAMS: dict[str, dict[str, ParamSpec]] = {"training": TRAINING_PARAMS, "serving": SERVING_PARAMS}

TRAINING_OUTPUTS: dict[str, OutputSpec] = {
    "time_to_train_s": OutputSpec("s", "wall-clock time including failures and checkpoints"),
    "tco_usd": OutputSpec("usd", "cost of the run: cloud hours, or on-prem the run's share of the accelerator "
                          "price over `depreciation` + energy + maintenance (not the purchase: upfront_capex_usd)"),
    "carbon_kg": OutputSpec("kgCO2e", "operational carbon of the run"),
    "energy_j": OutputSpec("J", "facility energy of the run (IT × PUE)"),
    "water_l": OutputSpec("L", "water of the run (energy × WUE)"),
    "step_time_s": OutputSpec("s", "one optimizer step"),
    "mfu": OutputSpec("frac", "model FLOPs utilisation of the fleet (6PT + causal attention, PaLM App. B)", "max"),
    "scaling_efficiency": OutputSpec("frac", "T_compute / T_step", "max"),
    "goodput": OutputSpec("frac", "useful fraction of wall-clock time (checkpoints + failures)", "max"),
    "bubble_frac": OutputSpec("frac", "pipeline bubble fraction"),
    "memory_per_accelerator_bytes": OutputSpec("bytes", "peak per GPU: weights + grads + optimizer + activations "
                                               "+ the loss buffers or a recomputed layer"),
    "n_accelerators": OutputSpec("count", "accelerators used"),
    "dp": OutputSpec("count", "data-parallel degree N/(tp·cp·pp) (ep ranks are inside it)"),
    "bottleneck": OutputSpec("code", "roofline regime of the per-GPU step (BOTTLENECKS)"),
    "expected_interruptions": OutputSpec("count", "expected failures over the run (time / cluster MTBF)"),
    "micro_batch_seqs": OutputSpec("count", "sequences per micro-batch used (given or chosen)"),
    "n_microbatches": OutputSpec("count", "micro-batches per step per pipeline used (given or chosen)"),
    "upfront_capex_usd": OutputSpec("usd", "purchase of the fleet: accelerators, servers, network share and "
                                    "facility (on-prem; 0 for cloud); tco_usd is only the run's amortized share"),
}

SERVING_OUTPUTS: dict[str, OutputSpec] = {
    "p99_latency_s": OutputSpec("s", "99th percentile request latency (queue wait + service)"),
    "ttft_s": OutputSpec("s", "time to first token (prefill)"),
    "itl_s": OutputSpec("s", "inter-token latency of a full batch (one decode step of `batch` sequences, "
                        "no load); the latencies at the offered load: itl_mean_s, itl_p50_s, itl_p99_s"),
    "cost_per_mtok_usd": OutputSpec("usd", "cost per million generated tokens"),
    "carbon_per_mtok_kg": OutputSpec("kgCO2e", "carbon per million generated tokens"),
    "tco_usd": OutputSpec("usd", "cost of the deployment over `duration` (on-prem: amortized over "
                          "`depreciation`, not the purchase: upfront_capex_usd)"),
    "carbon_kg": OutputSpec("kgCO2e", "operational carbon over `duration`"),
    "n_accelerators": OutputSpec("count", "accelerators in all replicas"),
    "replicas": OutputSpec("count", "model replicas"),
    "throughput_tok_per_s": OutputSpec("token/s", "generated tokens per second at the offered load", "max"),
    "utilization": OutputSpec("frac", "offered load per batch slot"),
    "kv_cache_bytes": OutputSpec("bytes", "KV cache per replica at full batch"),
    "memory_per_accelerator_bytes": OutputSpec("bytes", "weights + KV per accelerator"),
    "bottleneck": OutputSpec("code", "roofline regime of a decode step of a full batch"),
    "ttft_p50_s": OutputSpec("s", "median time to first token (queue wait + prefill, chunking, KV transfer)"),
    "ttft_p99_s": OutputSpec("s", "99th percentile time to first token"),
    "itl_p50_s": OutputSpec("s", "median inter-token latency (decode step with prefill interference)"),
    "itl_p99_s": OutputSpec("s", "99th percentile inter-token latency"),
    "energy_per_mtok_j": OutputSpec("J", "facility energy per million generated tokens"),
    "kv_transfer_s": OutputSpec("s", "KV transfer prefill -> decode per request (exposed part; 0 colocated)"),
    "offload_bytes": OutputSpec("bytes", "bytes per accelerator spilled to host memory (0 = no offload)"),
    "spec_tokens_per_step": OutputSpec("count", "expected tokens per target decode step (1 = no speculation)"),
    "prefill_replicas": OutputSpec("count", "replicas in the prefill pool (0 colocated)"),
    "upfront_capex_usd": OutputSpec("usd", "purchase of the fleet: accelerators, servers, network share and "
                                    "facility (on-prem; 0 for cloud); tco_usd is only the period's amortized share"),
    "ttft_mean_s": OutputSpec("s", "mean time to first token (queue wait + prefill, chunking, KV transfer)"),
    "itl_mean_s": OutputSpec("s", "mean time per generated token at the offered load (the running batch's "
                             "decode step with prefill interference, over the tokens per step)"),
    "running_batch": OutputSpec("count", "mean sequences in a decode replica's batch at the offered load "
                                "(continuous batching, Little's law; `batch` is the cap)"),
}

OUTPUTS: dict[str, dict[str, OutputSpec]] = {"training": TRAINING_OUTPUTS, "serving": SERVING_OUTPUTS}

# Constraint names (g <= 0 feasible).  Structural ones are always applied; the
# limit ones are applied when a spec's [constraints] table sets the limit key.
TRAINING_CONSTRAINTS: tuple[str, ...] = (
    "memory",            # memory_per_accelerator - capacity
    "divisibility",      # tp·cp·pp must divide n_accelerators
    "tp_within_node",    # tp <= accelerators_per_node
    "pipeline_depth",    # pp <= n_layers
    "experts",           # MoE: ep <= n_experts, ep | n_experts, ep | dp (always met by a dense model)
    "batch_split",       # micro-batch >= 1 sequence and >= 1 micro-batch per step
    "precision",         # hardware supports the precision
    "context_split",     # cp divides seq_len
    "heads",             # tp <= heads, tp | heads, KV heads divisible by tp or tp by them
)
SERVING_CONSTRAINTS: tuple[str, ...] = (
    "memory", "tp_within_node", "pipeline_depth", "precision",
    "queue_stable",      # utilisation < 1 (both pools when disaggregated)
    "experts",           # ep <= n_experts
    "context",           # P99 prompt + output <= the model's context
)
STRUCTURAL_CONSTRAINTS: dict[str, tuple[str, ...]] = {
    "training": TRAINING_CONSTRAINTS, "serving": SERVING_CONSTRAINTS}

# [constraints] keys of a spec: key -> (output it limits, "max"/"min", units.parse dimension)
LIMITS: dict[str, dict[str, tuple[str, str, str]]] = {
    "training": {
        "max_time": ("time_to_train_s", "max", "time"),
        "budget": ("tco_usd", "max", "usd"),
        "max_carbon": ("carbon_kg", "max", "carbon_mass"),
        "max_energy": ("energy_j", "max", "energy"),
        "max_water": ("water_l", "max", "volume"),
        "min_mfu": ("mfu", "min", "dimensionless"),
        "max_accelerators": ("n_accelerators", "max", "count"),
        "max_upfront_capex": ("upfront_capex_usd", "max", "usd"),   # the purchase (budget: the run's cost)
    },
    "serving": {
        "p99_latency": ("p99_latency_s", "max", "time"),
        "max_ttft": ("ttft_s", "max", "time"),
        "max_itl": ("itl_s", "max", "time"),
        "max_ttft_p99": ("ttft_p99_s", "max", "time"),
        "max_itl_p99": ("itl_p99_s", "max", "time"),
        "budget": ("tco_usd", "max", "usd"),
        "max_carbon": ("carbon_kg", "max", "carbon_mass"),
        "max_cost_per_mtok": ("cost_per_mtok_usd", "max", "usd"),
        "max_accelerators": ("n_accelerators", "max", "count"),
        "max_upfront_capex": ("upfront_capex_usd", "max", "usd"),   # the purchase (budget: the run's cost)
    },
}

SCENARIOS: tuple[str, ...] = ("training", "serving")

# pymoo algorithms a spec's [search] table or `mlsys-opt search --algorithm`
# may name: canonical name -> accepted aliases (search/pymoo_problem.py maps
# each to its pymoo class).
SEARCH_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "nsga2": (), "nsga3": (), "unsga3": (), "age": ("agemoea",), "age2": ("agemoea2",),
    "spea2": (), "smsemoa": ("sms", "sms-emoa"), "rvea": (), "ctaea": (), "moead": (),
    "ga": (), "random": (),
}
SEARCH_ALGORITHM_NAMES: tuple[str, ...] = tuple(
    alias for name, aliases in SEARCH_ALGORITHMS.items() for alias in (name, *aliases))
