"""Device-resident struct-of-arrays catalog tables (the contract jitted code sees).

Every field is a jnp array indexed by an integer row (the entry's position in
the catalog, see `Catalog.index(kind, name)`), in SI units unless the name says
otherwise.  Missing values are explicit: a precision an accelerator lacks has
`has_precision[i, p] == False` and `peak_flop_per_s[i, p] == 0.0`; scenarios
turn that into an infeasible configuration, never a division by zero.
"""
from __future__ import annotations

from typing import NamedTuple

from .._types import Array


class AcceleratorTable(NamedTuple):
    peak_flop_per_s: Array        # [n_hw, n_precision] dense peak per precision (0 where missing)
    has_precision: Array          # [n_hw, n_precision] bool
    mem_capacity_bytes: Array     # [n_hw] HBM/DRAM capacity (wafer-scale: on-chip SRAM)
    mem_bw_bytes_per_s: Array     # [n_hw] HBM/DRAM bandwidth
    sram_bytes: Array             # [n_hw] on-chip SRAM (L2 / SRAM)
    tdp_w: Array                  # [n_hw] board power
    scaleup_bw_bytes_per_s: Array  # [n_hw] per-accelerator scale-up link bw (NVLink/ICI/xGMI), unidirectional
    accelerators_per_node: Array  # [n_hw] typical scale-up domain size (8 for DGX, 1 for a card)
    scaleup_mesh: Array           # [n_hw] bool: in-node all-to-all links, not a switch (scaleup_topology = "mesh")
    price_usd: Array              # [n_hw] purchase price per accelerator
    cloud_usd_per_hour: Array     # [n_hw] on-demand cloud price per accelerator-hour
    mtbf_s: Array                 # [n_hw] component MTBF per accelerator
    injection_bw_bytes_per_s: Array  # [n_hw] weight-streaming injection bw (wafer-scale; 0 otherwise)
    is_wafer_scale: Array         # [n_hw] bool
    host_bw_bytes_per_s: Array    # [n_hw] accelerator <-> host memory link (PCIe / NVLink-C2C), one direction
    # Achievable rates (issue 19, catalog/achievable.py; fractions of this row's own peaks):
    sustained_mem_bw_frac: Array  # [n_hw] STREAM-triad bandwidth / mem_bw (default: the reference part's)
    gemm_eff: Array               # [n_hw, n_precision, 5] GEMM efficiency at M=N=K = achievable.GEMM_SIZES
    attention_fwdbwd_eff: Array   # [n_hw, 6] FlashAttention fwd+bwd / fp16 peak at achievable.ATTENTION_SEQLENS
    attention_fwd_eff: Array      # [n_hw, 6] forward only (= fwd+bwd where not measured)
    scaleup_busbw_frac: Array     # [n_hw] large-message all-reduce busbw / scaleup_bw (0 = no data)
    scaleup_step_latency_s: Array  # [n_hw] α per ring step of the scale-up all-reduce (0 = no data)
    scaleup_busbw_curve: Array    # [n_hw, 25] busbw / scaleup_bw at achievable.MSG_BYTES (0 = no data)
    scaleup_has_busbw: Array      # [n_hw] bool: scaleup_busbw_frac is data (else the global factor)
    scaleup_has_latency: Array    # [n_hw] bool: scaleup_step_latency_s is data (else the global α)
    scaleup_busbw_frac_ring: Array  # [n_hw] large-message RING busbw / scaleup_bw (NVLS off; = scaleup_busbw_frac
    #                                 where the part has no NVLink SHARP figure; 0 = no data)
    attention_cudnn_fwdbwd_eff: Array  # [n_hw, 6] cuDNN SDPA causal fwd+bwd / fp16 peak at ATTENTION_SEQLENS
    #                                 (training's attention_kernel = cudnn; = attention_fwdbwd_eff where none; ATTNKERNEL)


class ModelTable(NamedTuple):
    kind: Array                   # [n_model] int code into _types.MODEL_KINDS
    n_params: Array               # [n_model] total parameters
    n_active_params: Array        # [n_model] parameters used per token (== n_params for dense)
    n_layers: Array
    hidden_dim: Array
    n_heads: Array
    n_kv_heads: Array
    head_dim: Array
    kv_latent_dim: Array          # [n_model] MLA elements cached per token per layer; 0 = 2·n_kv_heads·head_dim
    ffn_dim: Array
    vocab_size: Array
    context_len: Array            # max context, tokens
    n_experts: Array              # 1 for dense
    top_k: Array                  # experts per token, 1 for dense
    flop_per_sample: Array        # forward FLOP per sample (CNNs); 0 for transformers (use 2·active params per token)
    # DSV3 (issue 12), catalog/shapes.py; 0 = absent (every model without the fields is unchanged)
    q_lora_rank: Array            # [n_model] MLA query compression width (0: one q projection)
    kv_lora_rank: Array           # [n_model] MLA key/value compression width (0: MHA/GQA)
    qk_rope_head_dim: Array       # [n_model] decoupled RoPE width added to each Q/K head (0: none)
    v_head_dim: Array             # [n_model] value head width (0: head_dim)
    mtp_layers: Array             # [n_model] multi-token-prediction depths (DeepSeek-V3 §2.2; 0: none)
    dense_layers: Array           # [n_model] leading dense-MLP layers of a MoE model (first_k_dense_replace)
    dense_ffn_dim: Array          # [n_model] their MLP width (0: ffn_dim)
    shared_experts: Array         # [n_model] always-active experts per MoE layer
    core_head_dim: Array          # [n_model] ((head_dim + rope) + v_head_dim)/2: attention-core GEMM width per head
    mtp_active_params: Array      # [n_model] GEMM parameters per token of the MTP modules (+ their LM-head pass)
    # EMBED (issue 12), catalog/shapes.py: the input embedding is a gather, not a GEMM
    tied_embeddings: Array        # [n_model] 1.0 = input embedding shared with the LM head (tie_word_embeddings)
    untied_embedding_params: Array  # [n_model] (1 - tied)·V·h: parameters left out of the hardware GEMM FLOPs


class FabricTable(NamedTuple):
    bw_bytes_per_s: Array         # [n_fabric] per-link, per-accelerator unidirectional bandwidth
    latency_s: Array              # [n_fabric] alpha, per-message latency
    topology: Array               # [n_fabric] int code into _types.TOPOLOGIES
    bisection_frac: Array         # [n_fabric] bisection bandwidth fraction (1 for full fat tree)
    oversubscription: Array       # [n_fabric] >= 1
    busbw_frac: Array             # [n_fabric] large-message all-reduce busbw / bw (0 = no data; issue 19)
    step_latency_s: Array         # [n_fabric] α per ring step fitted to the busbw curve (0 = no data)
    busbw_curve: Array            # [n_fabric, 25] busbw / bw at achievable.MSG_BYTES (0 = no data)
    has_busbw: Array              # [n_fabric] bool: busbw_frac is data (else the global factor)
    has_step_latency: Array       # [n_fabric] bool: step_latency_s is data (else latency_s)


class RegionTable(NamedTuple):
    carbon_gco2e_per_kwh: Array   # [n_region] grid carbon intensity
    pue: Array                    # [n_region] typical datacenter PUE (>= 1)
    wue_l_per_kwh: Array          # [n_region] water usage effectiveness
    electricity_usd_per_kwh: Array  # [n_region]


class Tables(NamedTuple):
    hw: AcceleratorTable
    model: ModelTable
    fabric: FabricTable
    region: RegionTable
