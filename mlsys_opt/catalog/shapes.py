"""Parameter counts of a transformer from its catalog shape fields (host-side, plain Python floats).

Used by the catalog loader to derive the per-model columns the training and serving scenarios
read (`core_head_dim`, `mtp_active_params`: computed once per model, never per configuration),
and by the tests to reproduce published totals from the fields.  One multiply-accumulate is
2 FLOP; a GEMM of P parameters costs 2·P FLOP per token forward, 6·P forward + backward.

Attention projections per layer, a query heads, g KV heads, d = head_dim (the per-head Q/K
width WITHOUT the rotary part), r = qk_rope_head_dim, d_v = v_head_dim (0: d), h = hidden:
  MHA / GQA            h·a·d + 2·h·g·d + a·d·h                (q, k, v, o)
  MLA (kv_lora_rank c_kv > 0; DeepSeek-V2 arXiv:2405.04434 §2.1.2, DeepSeek-V3 arXiv:2412.19437
  §2.1.1 eqs. 1-11):
      q:  h·c_q + c_q·a·(d + r)          (c_q = q_lora_rank > 0: down W^DQ, up W^UQ + W^QR)
          h·a·(d + r)                    (c_q = 0: one projection)
      kv: h·(c_kv + r) + c_kv·a·(d + d_v) (down W^DKV + shared rope key W^KR, up W^UK + W^UV)
      o:  a·d_v·h
  The norms (q_a/kv_a layernorm, 1536 + 512 per layer) are left out, as Megatron-Core's FLOP
  count leaves them out of the GEMMs.
MLP (gated, SwiGLU: 3 matrices of h × width, as DeepSeek-V3, Mixtral, Llama): dense layers
  3·h·dense_ffn_dim; MoE layers 3·h·ffn_dim per expert, (experts + shared_experts) stored and
  (top_k + shared_experts) used per token; the router (experts·h) is stored, its GEMM is not
  counted (Megatron-Core num_floating_point_operations leaves it out too).
Embedding V·h and an untied LM head V·h (tied_embeddings = true: one V·h matrix, both).
Input embedding (EMBED, issue 12): the forward is a row gather (torch.nn.Embedding -> F.embedding ->
  aten::embedding = index_select of the weight rows), the backward a scatter-add of the output gradient
  rows (aten::embedding_dense_backward = index_add / embedding_backward_cuda_kernel's segmented sum): no
  GEMM, so an untied input matrix (V·h parameters) does no 6·V·h FLOP per token.  Tied, the same matrix
  is the LM head's GEMM weight (2·V·h per token forward) and counts once, as the head.
  untied_embedding_params = (1 - tied)·min(V·h, active): the parameters the hardware-FLOP count leaves out.
MTP (DeepSeek-V3 §2.2, mtp_layers = D): per depth one transformer block of the last layer's
  kind (MoE), a projection M_k ∈ R^{h×2h} and an LM-head pass with the shared output head;
  per token the block's active GEMM parameters + 2·h² + V·h (Megatron-Core / Megatron-Bridge
  `num_floating_point_operations`: `mtp_num_layers` more layers, 2·h² "eh proj", and
  `(mtp_num_layers + 1)` logit GEMMs).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple


class ParamCounts(NamedTuple):
    """Parameters (counts) derived from the shape fields."""
    attn_per_layer: float      # attention projections of one layer
    total: float               # stored, main model (embedding + head + L layers; no MTP)
    active: float              # used per token, main model (embedding + head included)
    mtp_total: float           # stored by the MTP modules (embedding / head shared, not counted)
    mtp_active: float          # GEMM parameters per token of the MTP modules, their LM-head pass included


def _g(row: Mapping, key: str) -> float:
    v = row.get(key, 0)
    return float(v) if v is not None else 0.0


def attention_params(row: Mapping) -> float:
    """Attention projection parameters of one layer (module docstring: MHA/GQA or MLA)."""
    h, a, d = _g(row, "hidden_dim"), _g(row, "n_heads"), _g(row, "head_dim")
    g = _g(row, "n_kv_heads") or a
    r, c_q, c_kv = _g(row, "qk_rope_head_dim"), _g(row, "q_lora_rank"), _g(row, "kv_lora_rank")
    dv = _g(row, "v_head_dim") or d
    if c_kv <= 0:
        return h * a * (d + r) + 2.0 * h * g * d + a * dv * h
    q = h * c_q + c_q * a * (d + r) if c_q > 0 else h * a * (d + r)
    kv = h * (c_kv + r) + c_kv * a * (d + dv)
    return q + kv + a * dv * h


def core_head_dim(row: Mapping) -> float:
    """Mean head width of the attention core's two batched GEMMs: ((d + r) + d_v)/2.

    Q·Kᵀ contracts over d + r, P·V over d_v, so 4·a·core_head_dim·s² FLOP per sequence (before
    the causal fraction) is the core's forward count (Megatron-Core MLA: s·a·(d + r)/2 +
    s·a·d_v/2 per token and layer, × 2·3); = head_dim exactly for MHA/GQA (r = 0, d_v = d).
    """
    d = _g(row, "head_dim")
    return ((d + _g(row, "qk_rope_head_dim")) + (_g(row, "v_head_dim") or d)) / 2.0


def param_counts(row: Mapping) -> ParamCounts:
    """Parameter counts from the catalog row's shape columns (SI row keys, see catalog._load.COLUMNS)."""
    h, layers, vocab = _g(row, "hidden_dim"), _g(row, "n_layers"), _g(row, "vocab_size")
    ffn = _g(row, "ffn_dim")
    moe = row.get("kind") == "moe"
    experts, top_k = (_g(row, "n_experts"), _g(row, "top_k")) if moe else (1.0, 1.0)
    shared = _g(row, "shared_experts") if moe else 0.0
    dense = _g(row, "dense_layers") if moe else 0.0
    dense_ffn = _g(row, "dense_ffn_dim") or ffn
    attn = attention_params(row)
    expert = 3.0 * h * ffn
    router = experts * h if moe else 0.0
    moe_layers = layers - dense
    dense_mlp = 3.0 * h * dense_ffn
    emb = (1.0 if row.get("tied_embeddings", True) else 2.0) * vocab * h     # tied: one V·h matrix
    total = emb + layers * attn + dense * dense_mlp + moe_layers * ((experts + shared) * expert + router)
    active = emb + layers * attn + dense * dense_mlp + moe_layers * ((top_k + shared) * expert + router)
    mtp = _g(row, "mtp_layers")
    block_total = attn + ((experts + shared) * expert + router if moe else dense_mlp)
    block_active = attn + ((top_k + shared) * expert if moe else dense_mlp)
    proj = 2.0 * h * h
    return ParamCounts(attn, total, active, mtp * (block_total + proj), mtp * (block_active + proj + vocab * h))


def derived_columns(row: Mapping) -> dict[str, float]:
    """The per-model columns the scenarios read: core_head_dim, mtp_active_params (0 without MTP),
    untied_embedding_params ((1 - tied)·V·h, at most the active parameters; 0 tied and for CNNs)."""
    if row.get("kind") not in ("transformer", "moe"):
        return {"core_head_dim": 0.0, "mtp_active_params": 0.0, "untied_embedding_params": 0.0}
    mtp = param_counts(row).mtp_active if _g(row, "mtp_layers") > 0 else 0.0
    untied = 0.0 if row.get("tied_embeddings", True) else min(
        _g(row, "vocab_size") * _g(row, "hidden_dim"), _g(row, "n_active_params"))
    return {"core_head_dim": core_head_dim(row), "mtp_active_params": mtp, "untied_embedding_params": untied}


__all__ = ["ParamCounts", "attention_params", "core_head_dim", "derived_columns", "param_counts"]
