"""A published run's `setup` -> scenario parameters: one table per scenario, easy to extend.

Rows of ``training_runs.json`` / ``serving_runs.json`` (and a user's ``--measurements``
file) describe the run in the source's terms (``setup``: tp/cp/pp/dp, sharding,
micro-batch size, attention kernel, KV precision, ...).  `TRAINING_MAP` and
`SERVING_MAP` say, per setup key, which schema parameters (scenarios/schema.py) it
sets and how.  A rule may name parameters the scenarios do not have yet (``cp``,
``attention``, ``micro_batch_size``, ``shard_group``, ``kv_precision``,
``chunk_size`` ...): `to_settings` sets every parameter that exists in
``schema.PARAMS[scenario]`` *at run time* and records the others as pending, so a row
is mapped fully as soon as the parameter is added, with no change here.  Until then a
pending value that changes the physics is emulated with what exists where that is exact
(``micro_batch_size`` -> ``microbatches``) or approximate and flagged (``cp`` folded into
the data-parallel degree: same tokens per GPU, no ring-attention traffic), and the row
carries a flag naming it.

To add a setup key: one entry ``"key": Rule(("param", ...), convert)`` where
``convert(value, setup) -> {param: value}`` returns display-form values
(catalog slugs, choice names, plain numbers).
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

from .._types import PRECISIONS
from ..errors import MlsysOptError, did_you_mean
from ..scenarios import schema


class Rule(NamedTuple):
    """How one setup key feeds schema parameters: convert(value, setup) -> {param: value}.

    any_of: the params are synonyms (a newer name first): the first the schema has is set."""
    params: tuple[str, ...]
    convert: Callable[[Any, dict], dict]
    doc: str = ""
    any_of: bool = False


def _same(*names):
    return lambda v, s: {n: v for n in names}


def _int(name):
    return lambda v, s: {name: int(v)}


def _float(name):
    return lambda v, s: {name: float(v)}


def _precision(v, s) -> dict:
    """bf16 -> fp16 while the schema has no bf16 (same width and peak on every catalog part)."""
    p = str(v).lower()
    return {"precision": p if p in PRECISIONS or p != "bf16" else "fp16"}


def _kv_precision(v, s) -> dict:
    p = str(v).lower()
    choices = (schema.SERVING_PARAMS.get("kv_precision") or schema.ParamSpec("choice", None, "")).choices or ()
    return {"kv_precision": p if p in choices or p != "bf16" else "fp16"}


# sharding name -> ZeRO stage (Rajbhandari et al. 2020; FSDP FULL_SHARD = stage 3)
ZERO_STAGE = {"ddp": 0, "zero1": 1, "zero2": 2, "zero3": 3, "fsdp": 3, "hsdp": 3}


def _sharding(v, s) -> dict:
    """ddp 0, zero1 1, zero2 2, fsdp 3; hsdp = stage 3 inside a shard group, replicated across
    groups: the group is one slice (setup.slices: dp/slices), else one node (gpus_per_node or 8,
    an assumption); 0 = the whole data-parallel group."""
    name = str(v).lower()
    if name not in ZERO_STAGE:
        raise MlsysOptError(f"{v!r} is not a sharding (allowed: {', '.join(ZERO_STAGE)})")
    out = {"zero_stage": ZERO_STAGE[name], "shard_group": 0}
    if name == "hsdp":
        dp = int(s.get("dp") or 1)
        group = dp // int(s["slices"]) if s.get("slices") else int(s.get("gpus_per_node") or 8)
        out["shard_group"] = max(1, min(dp, group))
    return out


def _micro(v, s) -> dict:
    """micro_batch_size b -> micro_batch_size and microbatches M = global_batch/(dp·b) (consistent;
    the schema's first parameter was M).  Unknown (null) -> both 0 where the scenario chooses the
    fastest feasible split, else b = 1 with pipelining (Megatron's default) and one micro-batch
    per replica without (assumptions)."""
    gb, dp, pp = int(s["global_batch"]), max(1, int(s.get("dp") or 1)), int(s.get("pp") or 1)
    if not v and "micro_batch_size" in schema.TRAINING_PARAMS:
        return {"micro_batch_size": 0, "microbatches": 0}     # the scenario picks the fastest feasible
    b = int(v) if v else (1 if pp > 1 else max(1, gb // dp))
    return {"micro_batch_size": int(v) if v else 0, "microbatches": max(1, round(gb / (dp * b)))}


def _virtual(v, s) -> dict:
    return {"virtual_stages": int(v) if v else 1}


def _bool_choice(name):
    return lambda v, s: {name: "on" if v else "off"}


def _kernels(v, s) -> dict:
    """torch_compile and attention_kernel -> kernels: eager elementwise ops when torch_compile is
    false (null: fused, the frameworks' fused kernels); FlashAttention-1-generation attention when
    attention_kernel is fa1 (flash-attn 1.x or the Triton FlashAttention), else FA2-class."""
    eager = s.get("torch_compile") is False
    kernel = str(s.get("attention_kernel") or "fa2").lower()
    return {"kernels": {(False, False): "fused", (False, True): "eager", (True, False): "fa1",
                        (True, True): "fa1_eager"}[(kernel == "fa1", eager)]}


def _attention_kernel(v, s) -> dict:
    if str(v).lower() not in ("fa1", "fa2"):
        raise MlsysOptError(f"{v!r} is not an attention kernel generation (allowed: fa1, fa2)")
    return _kernels(v, s)


def _replicas(v, s) -> dict:
    group = int(s.get("tp") or 1) * int(s.get("pp") or 1)
    return {"replicas": max(1, int(v) // group)}


def _chunk(v, s) -> dict:
    return {"chunk_size": int(v) if v else 0}


def _choice_of(param: str, v, what: str, also: str = "", scenario: str = "training") -> str:
    """v if it is one of the scenario parameter's choices, else the one-line error naming what it is not."""
    choices = schema.PARAMS[scenario][param].choices
    if v not in choices:
        raise MlsysOptError(f"{v!r} is not {what} (allowed: {also}{', '.join(choices)})")
    return v


def _serving_choice(param: str, what: str):
    """A rule mapping v to the serving parameter `param` if it is one of its choices (`_choice_of`)."""
    return lambda v, s: {param: _choice_of(param, v, what, scenario="serving")}


def _async_tp(v, s) -> dict:
    """async_tp true -> tp_comm async, false -> dtensor; a string names the tp_comm choice itself."""
    if not isinstance(v, str):
        return {"tp_comm": "async" if v else "dtensor"}
    return {"tp_comm": _choice_of("tp_comm", v, "async TP", "true, false or a tp_comm choice: ")}


def _pipeline_engine(v, s) -> dict:
    """DSPIPE: deepspeed with precision bf16 -> deepspeed_bf16 (DeepSpeed's BF16Optimizer: the precision maps to
    fp16 in the schema, so the engine choice carries it)."""
    _choice_of("pipeline_engine", v, "a pipeline engine")
    bf16 = str(s.get("precision", "")).lower() == "bf16"
    return {"pipeline_engine": "deepspeed_bf16" if v == "deepspeed" and bf16 else v}


def _pp_schedule(v, s) -> dict:
    """DUALPIPE: a row's printed schedule -> pp_schedule (1F1B and interleaved 1F1B are one choice: the interleaving
    is virtual_stages)."""
    name = str(v).strip().lower()
    if name in ("1f1b", "interleaved 1f1b", "interleaved"):
        return {"pp_schedule": "1f1b"}
    return {"pp_schedule": _choice_of("pp_schedule", name, "a pipeline schedule", "1F1B, interleaved 1F1B or ")}


def _attention_backend(v, s) -> dict:
    """ATTNKERNEL: the fused-attention backend a row ran -> attention_kernel (cudnn: cuDNN's fused SDPA, i.e.
    Transformer Engine's FusedAttention on Hopper+ or PyTorch SDPA's cudnn backend; default: the part's curve)."""
    return {"attention_kernel": _choice_of("attention_kernel", v, "an attention backend")}


def _spec(v, s) -> dict:
    if not v:
        return {"spec_k": 0}
    if isinstance(v, dict):
        return {"spec_k": int(v.get("k", 0)), **({"spec_acceptance": float(v["acceptance"])} if "acceptance" in v else {})}
    raise MlsysOptError(f"{v!r}: expected null/false or a table with k (and acceptance)")


# setup key -> Rule.  Keys whose value is null are skipped (the scenario default applies).
TRAINING_MAP: dict[str, Rule] = {
    "hardware": Rule(("hardware",), _same("hardware"), "catalog slug"),
    "n_accelerators": Rule(("n_accelerators",), _int("n_accelerators")),
    "tp": Rule(("tp",), _int("tp")),
    "pp": Rule(("pp",), _int("pp")),
    "cp": Rule(("cp",), _int("cp"), "context parallel degree (H12)"),
    "ep": Rule(("ep",), _int("ep"), "expert parallel degree, inside the data-parallel group"),
    "virtual_stages": Rule(("virtual_stages",), _virtual, "null -> 1 (not printed)"),
    "sharding": Rule(("zero_stage", "shard_group"), _sharding),
    "micro_batch_size": Rule(("micro_batch_size", "microbatches"), _micro),
    "global_batch": Rule(("global_batch",), _int("global_batch")),
    "seq_len": Rule(("seq_len",), _int("seq_len")),
    "precision": Rule(("precision",), _precision),
    "attention": Rule(("attention",), _same("attention"), "flash | eager (H12)"),
    "recompute": Rule(("recompute",), _same("recompute")),
    "sequence_parallel": Rule(("sequence_parallel",), _bool_choice("sequence_parallel")),
    "fabric": Rule(("fabric",), _same("fabric")),
    "region": Rule(("region",), _same("region")),
    "n_tokens": Rule(("n_tokens",), _float("n_tokens")),
    "torch_compile": Rule(("kernels",), _kernels, "torch.compile off -> PyTorch eager elementwise ops"),
    "attention_kernel": Rule(("kernels",), _attention_kernel, "fa1 | fa2: FlashAttention generation"),
    "stage_balance": Rule(("stage_balance",), _same("stage_balance"), "on: end stages hold fewer layers"),
    "grad_reduce_in_fp32": Rule(("main_grads",), lambda v, s: {"main_grads": "fp32" if v else "bf16"},
                                "Megatron-Core DDP setting -> main_grads fp32 | bf16"),
    "master_weights": Rule(("master_weights",), _same("master_weights"),
                           "fp32 | remainders | none | fp32_param (PyTorch FSDP on an fp32 model: the fp32 "
                           "parameter is the master, no persistent 16-bit copy)"),
    "optimizer_moments": Rule(("optimizer_moments",), _same("optimizer_moments"), "fp32 | bf16"),
    "tp_overlap": Rule(("tp_overlap",), _float("tp_overlap"),
                       "fraction of TP collectives hidden behind GEMMs, as the source documents it "
                       "(Megatron --tp-comm-overlap -> 1)"),
    "dp_overlap": Rule(("overlap",), _float("overlap"),
                       "fraction of DP/FSDP collectives hidden behind compute, as the source documents it "
                       "(Megatron --overlap-grad-reduce/--overlap-param-gather, XLA async collectives -> 1)"),
    "offload_layers": Rule(("offload_layers",), _int("offload_layers"),
                           "Megatron-Core cpu_offloading_num_layers (activations to host memory)"),
    "ep_dispatcher": Rule(("ep_dispatcher",), _same("ep_dispatcher"),
                          "alltoall | deepep (Megatron-Core moe_token_dispatcher_type / flex backend)"),
    "ep_overlap": Rule(("ep_overlap",), _float("ep_overlap"),
                       "Megatron-Core overlap_moe_expert_parallel_comm -> 1"),
    "dp_bucket_params": Rule(("dp_bucket_params",), _float("dp_bucket_params"),
                             "the framework's gradient bucket in parameters (PyTorch DDP bucket_cap_mb 25 MiB over "
                             "4-byte gradients: 6,553,600); absent: Megatron-Core's default"),
    "pp_overlap": Rule(("pp_overlap",), _float("pp_overlap"),
                       "fraction of pipeline sends hidden with the interleaved schedule, as the run's code "
                       "shows it (Megatron overlap_p2p_comm: 1; --no-overlap-p2p-communication: 0)"),
    "cp_overlap": Rule(("cp_overlap",), _float("cp_overlap"),
                       "fraction of the CP K,V exchange hidden behind attention, as the run's code shows it "
                       "(PyTorch CP traced by torch.compile: 0, its collectives are waited at once)"),
    "cp_comm_type": Rule(("cp_comm_type",), _same("cp_comm_type"),
                         "p2p | all_gather (PyTorch context_parallel rotate method; torchtitan default allgather)"),
    "kv_repeat": Rule(("kv_repeat",), _bool_choice("kv_repeat"),
                      "true: K,V repeated to the query heads before SDPA (torchtitan Llama repeat_kv)"),
    "moe_node_limit": Rule(("moe_node_limit",), _int("moe_node_limit"),
                           "nodes a token's experts may span (DeepSeek-V3 node-limited routing)"),
    "parallel_block": Rule(("parallel_block",), _bool_choice("parallel_block"),
                           "true: attention and MLP in parallel on one LayerNorm (PaLM §2, MaxText DecoderLayer)"),
    "fp8_scaling": Rule(("fp8_scaling",), _same("fp8_scaling"),
                        "delayed | dynamic: dynamic tensorwise scaling reads each cast operand once more for "
                        "its amax (torchao float8, torchtitan's float8 default)"),
    "loss_kernel": Rule(("loss_kernel",), _same("loss_kernel"),
                        "fused | torch | megatron | torch16: the cross entropy over the vocabulary (fused "
                        "kernel, F.cross_entropy on fp32 logits, Megatron's unfused vocab_parallel_cross_entropy, "
                        "F.cross_entropy on the 16-bit logits)"),
    "loss_parallel": Rule(("loss_parallel",), _bool_choice("loss_parallel"),
                          "true: the loss over each TP rank's vocabulary shard (vocab-parallel); false: the "
                          "logits all-gathered to every TP rank, the loss over the whole vocabulary"),
    "grad_sync": Rule(("grad_sync",), _same("grad_sync"),
                      "micro_batch | last: sharded gradients reduced after every micro-batch, or only after the "
                      "last with the unsharded gradients accumulated in fp32 in between (FSDP2 no_sync)"),
    "fsdp_runtime": Rule(("fsdp_runtime",), _same("fsdp_runtime"),
                         "default | torch_fsdp2 | torch_fsdp2_root: PyTorch FSDP2 (fully_shard) adds its per-unit backward buffers and gathers in the all-gather dtype (FSDP16); _root: as at torch 1963fc8, the root unit stays gathered from forward to backward (MEMEAGER)"),
    "tp_embedding": Rule(("tp_embedding",), _same("tp_embedding"),
                         "sharded | replicated: the untied token embedding split over the TP ranks, or whole on "
                         "every TP rank (KempnerForge's TP plan)"),
    "optimizer_kernel": Rule(("optimizer_kernel",), _same("optimizer_kernel"),
                             "fused | foreach: the optimizer step's kernels (torch AdamW foreach=True: eight "
                             "passes over the shard; fused: one)"),
    "last_stage_layers": Rule(("last_stage_layers",), _int("last_stage_layers"),
                              "decoder layers on the last pipeline rank (Megatron-Core "
                              "decoder_last_pipeline_num_layers / pipeline_model_parallel_layout)"),
    "async_tp": Rule(("tp_comm",), _async_tp,
                     "PyTorch TP (a row that states async_tp ran torchtitan / DTensor TP): true -> tp_comm = async "
                     "(enable_async_tensor_parallel), false -> dtensor (vanilla DTensor SequenceParallel); a "
                     "string names the tp_comm choice (async_ag: only the all-gather -> matmul fusions)"),
    "zero1_group": Rule(("param_sync", "shard_group"),
                        lambda v, s: {"param_sync": "broadcast", "shard_group": max(0, int(v))},
                        "InternEvo zero1 size -> param_sync = broadcast (HybridZeroOptimizer: gradients "
                        "all-reduced over dp, one broadcast per owning rank over the ZeRO-1 group) and "
                        "shard_group = the size (<= 0: the whole data-parallel group, 0)"),
    # KEMPNER (issue 12): the cluster's node size (it was context only, so 4-GPU nodes ran as the catalog's 8)
    "gpus_per_node": Rule(("accelerators_per_node",), _int("accelerators_per_node"),
                          "node size: which groups stay on the scale-up link (0 = the catalog's)"),
    # DSPIPE (issue 12): the pipeline runtime (DeepSpeed PipelineEngine rows: Megatron-DeepSpeed 2021-22)
    "pipeline_engine": Rule(("pipeline_engine",), _pipeline_engine,
                            "megatron | deepspeed: Megatron-LM's 1F1B or DeepSpeed's PipelineEngine "
                            "(deepspeed with precision bf16 -> deepspeed_bf16: the BF16Optimizer)"),
    # NORMRC (issue 12): RMSNorm outputs recomputed in the backward (DeepSeek-V3 §3.2.3)
    "recompute_norm": Rule(("recompute_norm",), _bool_choice("recompute_norm"),
                           "true: the RMSNorm outputs are recomputed in the backward, not stored"),
    # DUALPIPE (issue 12): the pipeline schedule (1F1B, interleaved through virtual_stages; DeepSeek's DualPipe)
    "pp_schedule": Rule(("pp_schedule",), _pp_schedule,
                        "1F1B / Interleaved 1F1B -> 1f1b (interleaving is virtual_stages); dualpipe -> dualpipe"),
    # ATTNKERNEL (issue 12): which fused-attention kernel's published curve the attention core runs at
    "attention_backend": Rule(("attention_kernel",), _attention_backend,
                              "default | cudnn: cuDNN fused SDPA (TE FusedAttention on Hopper+, PyTorch SDPA "
                              "cudnn) at the part's cuDNN curve"),
}

SERVING_MAP: dict[str, Rule] = {
    "hardware": Rule(("hardware",), _same("hardware")),
    "tp": Rule(("tp",), _int("tp")),
    "pp": Rule(("pp",), _int("pp")),
    "ep": Rule(("ep",), _int("ep")),
    "n_accelerators": Rule(("replicas",), _replicas, "replicas = n_accelerators/(tp·pp)"),
    "weight_precision": Rule(("precision",), _precision),
    "precision": Rule(("precision",), _precision),
    "kv_precision": Rule(("kv_precision",), _kv_precision, "(H13)"),
    "input_len": Rule(("prompt_len", "prompt_tokens"), _same("prompt_len", "prompt_tokens"), any_of=True),
    "output_len": Rule(("output_len", "output_tokens"), _same("output_len", "output_tokens"), any_of=True),
    "batch_size": Rule(("batch",), _int("batch")),
    "request_rate": Rule(("request_rate",), lambda v, s: {"request_rate": f"{float(v)} /s"}),
    "chunk_size": Rule(("chunk_size",), _chunk, "(H13)"),
    "disaggregated": Rule(("disaggregated",), _bool_choice("disaggregated"), "(H13)"),
    "speculative": Rule(("spec_k", "spec_acceptance"), _spec, "(H13)"),
    "engine": Rule(("engine",), _same("engine"), "(H19, only if it exists)"),
    "scheduler": Rule(("scheduler",), _serving_choice("scheduler", "an engine scheduler"),
                      "SERIALHOST: serial for vLLM's V0 engine (0.4-0.7), else overlapped"),
    "scheduler_steps": Rule(("scheduler_steps",), _int("scheduler_steps"), "vLLM --num-scheduler-steps"),
    "region": Rule(("region",), _same("region")),
}
MAPS = {"training": TRAINING_MAP, "serving": SERVING_MAP}

# Keys that are context only (derived from others or not modelled), with why.
CONTEXT_KEYS = {
    "dp": "derived: N/(tp·cp·pp)", "printed_dp": "kept for the record", "grad_accum": "implied by the batch split",
    "model": "catalog entry (setup_model_entry)",
    "slices": "used by sharding (hsdp group)",
    "gpus_per_node": "serving: node size (accelerator entry); training: mapped (accelerators_per_node)",
    "remat_policy": "mapped into recompute by the data",
    "fp8_recipe": "precision detail", "scale_up_fabric": "context",
    "scale_up_domain": "context", "engine_version": "context", "length_distribution": "request mix",
    "mode": "decides the compared quantity", "num_requests": "context", "offered_qps": "context",
    "phase": "decides the compared quantity", "dataset": "context", "batch_size_note": "context",
    "chunked_prefill": "see chunk_size", "name": "context",
    "mem_fraction": "the engine's memory fraction for the KV-capacity batch (runs._kv_batch)",
    "attention_flop_count": "decides the compared quantity (runs.attention_count_ratio)",
    "embedding_flop_count": "decides the compared quantity (runs.flop_count_ratio)",
    "pack_sample_into_one": "InternEvo sample packing (context)",
}

# A pending parameter at this value changes nothing in today's scenario (no flag needed).
NEUTRAL = {"cp": 1, "shard_group": 0, "micro_batch_size": None, "chunk_size": 0, "disaggregated": "off",
           "spec_k": 0, "sequence_parallel": "on", "ep": 1}


class Mapped(NamedTuple):
    settings: dict      # schema parameter -> display-form value (only parameters that exist)
    pending: dict       # parameter the schema lacks -> the value the row asks for
    flags: tuple        # one-line notes: what is approximated or not modelled yet


def to_settings(scenario: str, setup: dict, where: str = "setup") -> Mapped:
    """Schema settings of one setup (see the module docstring); errors name `where` and the key."""
    table, have = MAPS[scenario], schema.PARAMS[scenario]
    settings: dict = {}
    pending: dict = {}
    for key, value in setup.items():
        rule = table.get(key)
        if rule is None and key not in CONTEXT_KEYS and key not in have:   # schema names: the caller's own
            known = sorted(table) + sorted(CONTEXT_KEYS)
            raise MlsysOptError(f"{where}.{key}: unknown setup key{did_you_mean(key, known)} "
                                f"(mapped: {', '.join(sorted(table))}; kept as context: {', '.join(sorted(CONTEXT_KEYS))})")
        if rule is None or value is None:
            continue
        try:
            out = rule.convert(value, setup)
        except MlsysOptError as exc:
            raise MlsysOptError(f"{where}.{key}: {exc}") from None
        except (TypeError, ValueError, KeyError) as exc:
            what = "a whole number" if isinstance(exc, ValueError) and "int()" in str(exc) else f"valid ({exc})"
            raise MlsysOptError(f"{where}.{key}: {value!r} is not {what}") from None
        if rule.any_of:
            first = next((p for p in rule.params if p in have), None)
            if first is None:
                pending[rule.params[0]] = out[rule.params[0]]
            else:
                settings[first] = out[first]
            continue
        for p, v in out.items():
            (settings if p in have else pending)[p] = v
    return Mapped(settings, pending, tuple(_flags(scenario, setup, settings, pending)))


def _flags(scenario: str, setup: dict, settings: dict, pending: dict) -> list[str]:
    flags = []
    for p, v in pending.items():
        if p in NEUTRAL and NEUTRAL[p] == v:
            continue
        if p == "micro_batch_size" and "microbatches" in settings:
            continue                      # exact: microbatches carries it
        if p == "cp":
            flags.append(f"cp={v}: the scenario has no 'cp' yet; folded into data parallelism "
                         "(same tokens per GPU, no ring-attention traffic)")
        elif p == "attention":
            flags.append(f"attention={v}: the scenario has no 'attention' yet (its activation memory and "
                         "traffic include the s² scores of eager attention)")
        elif p == "shard_group":
            flags.append(f"shard_group={v}: hybrid sharding modelled as sharding over the whole DP group")
        else:
            flags.append(f"{p}={v}: not a scenario parameter yet; not modelled")
    if scenario == "training" and int(setup.get("ep") or 1) > 1 and "cp" not in schema.PARAMS["training"]:
        flags.append("ep>1 with the older convention dp = N/(tp·pp·ep) (expert ranks outside DP)")
    return flags


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")


def model_entry(model: dict, seq_len: int, source: str, where: str) -> tuple[str, dict | None]:
    """(catalog name, new models entry or None) for a setup.model table: the catalog model it
    names (catalog_model), else an entry built from its shape (params_B, layers, hidden, heads,
    kv_heads, ffn_hidden, vocab, experts, top_k, head_dim; head_dim = hidden/heads unless given;
    tied_embeddings: input embedding shared with the LM head, absent = the catalog default, true)."""
    if isinstance(model, str):
        return model, None
    if model.get("catalog_model"):
        return str(model["catalog_model"]), None
    need = [k for k in ("params_B", "layers", "hidden", "heads", "vocab") if model.get(k) in (None, "")]
    if need:
        raise MlsysOptError(f"{where}.model: missing {', '.join(need)} (or catalog_model) to build its catalog entry")
    experts, top_k = int(model.get("experts") or 1), int(model.get("top_k") or 1)
    hidden, heads = int(model["hidden"]), int(model["heads"])
    entry = {"display_name": str(model.get("name") or "model of a published run"),
             "kind": "moe" if experts > 1 else "transformer", "year": 2024,
             "params": f"{float(model['params_B']) * 1e9:.6g}", "layers": int(model["layers"]),
             "hidden": hidden, "heads": heads, "kv_heads": int(model.get("kv_heads") or heads),
             "head_dim": int(model.get("head_dim") or hidden // heads),
             "ffn_dim": int(model.get("ffn_hidden") or 4 * hidden), "vocab": int(model["vocab"]),
             "context": int(seq_len), "source": f"{source} (shape as in the row's setup.model)"}
    if experts > 1:
        if not model.get("active_params_B"):
            raise MlsysOptError(f"{where}.model: an MoE model (experts = {experts}) needs active_params_B "
                                "or catalog_model")
        entry.update(experts=experts, top_k=top_k, active_params=f"{float(model['active_params_B']) * 1e9:.6g}")
    if model.get("tied_embeddings") is not None:      # EMBED (issue 12): absent = the catalog default (tied)
        if not isinstance(model["tied_embeddings"], bool):
            raise MlsysOptError(f"{where}.model.tied_embeddings: {model['tied_embeddings']!r} (allowed: true, false)")
        entry["tied_embeddings"] = model["tied_embeddings"]
    shape = "_".join(str(entry[k]) for k in ("params", "layers", "hidden", "heads", "kv_heads", "ffn_dim", "vocab"))
    shape += "_untied" if entry.get("tied_embeddings") is False else ""   # same shape, other entry
    tag = format(zlib.crc32(shape.encode()) % 10**6, "06d")
    entry["display_name"] += f" [shape {tag}]"     # display names must be unique in the catalog
    return f"run_{slug(model.get('name') or 'model')[:40]}_{tag}", entry
