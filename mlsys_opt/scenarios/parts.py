"""Scenario building blocks: catalog gathering, cost, and the elementwise (non-matmul) time.

Helpers of `mlsys_opt.scenarios` kept apart so that module stays readable:
`gather` turns the integer catalog codes of a batch into SI arrays with safe
(positive) denominators, `fleet_cost` picks cloud or on-prem pricing (the run's cost),
`fleet_upfront_capex` the purchase of an on-prem fleet (0 in the cloud), and
`elementwise_time_s` is the memory-bound time of a training step's non-matrix
operations.  Branch-free, float32-safe, jit/vmap/grad-able like the scenarios.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._types import BOTTLENECKS, BYTES_PER_ELEMENT, MODEL_KINDS, PRECISIONS, SECONDS_PER_HOUR, Array
from ..catalog.tables import Tables
from ..walls import data, node, ops
from ..walls._masked import floor_pos
from ..catalog.achievable import SUSTAINED_REF_FRAC
from .efficiency import Efficiency
from .schema import PRICING

CNN = MODEL_KINDS.index("cnn")
CLOUD = PRICING.index("cloud")
FP16 = PRECISIONS.index("fp16")
COMPUTE, MEMORY = BOTTLENECKS.index("compute"), BOTTLENECKS.index("memory")


def batch_shape(p: NamedTuple):
    """The broadcast shape of every field of a parameter NamedTuple."""
    return jnp.broadcast_shapes(*(jnp.shape(x) for x in p))


def broadcast_all(shape, tup):
    """Broadcast every field of a NamedTuple to `shape` (the sweep stacks columns)."""
    return type(tup)(*(jnp.broadcast_to(x, shape) for x in tup))


def take(table, *codes):
    """``table[codes]`` for integer code arrays (one per leading axis), as one-dimensional gathers.

    Same values as ``table[c0, c1, ...]`` for in-range codes (codes are clamped into range, as
    JAX clamps an out-of-range gather).  A row of a curve (``table [R, n]`` by one code) comes
    back as n gathers of columns stacked on the last axis, so a consumer's ``row[..., k]`` reads
    column k directly.  Why: XLA's CPU code for a multi-dimensional gather (a row, or two
    codes) inside a fused loop is scalar and re-gathered per use — one such fusion took a
    quarter of the training scenario's time; one-dimensional gathers vectorise (about 15x
    faster per element in isolation).
    """
    table = jnp.asarray(table)
    lead, rest = table.shape[:len(codes)], table.shape[len(codes):]
    codes = [jnp.clip(jnp.asarray(c, jnp.int32), 0, n - 1) for c, n in zip(codes, lead)]
    shape = jnp.broadcast_shapes(*(c.shape for c in codes))
    flat = jnp.zeros(shape, jnp.int32)
    for c, n in zip(codes, lead):
        flat = flat * n + jnp.broadcast_to(c, shape)
    cols = table.reshape((-1, int(np.prod(rest, dtype=np.int64))))
    if not rest:
        return cols[:, 0][flat]
    out = jnp.stack([cols[:, j][flat] for j in range(cols.shape[1])], axis=-1)
    return out.reshape(shape + rest)


def materialized(tree, codes):
    """`tree` itself, computed once: a compiler hint, not arithmetic.

    A quantity with many consumers (the training step time feeds time to train, cost, carbon,
    energy, water, MFU and scaling) is recomputed by XLA's CPU fusion inside each consumer's
    loop: the training scenario ran ~1.65x the operations it needs (XLA cost analysis 1,352 →
    817 per configuration with this hint), and `lax.optimization_barrier` is dropped by the CPU
    pipeline.  A conditional whose predicate XLA cannot fold ends the fusion there: `codes`
    are runtime integers >= 0 by construction (catalog codes; the sweep step passes its count
    of valid lanes, to materialise the chunk's evaluation before the reduction reads it), so
    the second branch never runs.  Values and gradients are those of `tree`; under vmap the
    predicate becomes a select of both branches.
    """
    keep = jnp.sum(jnp.ravel(codes)[:1]) >= 0
    return jax.lax.cond(keep, lambda x: x, lambda x: jax.tree.map(jnp.zeros_like, x), tree)


class Common(NamedTuple):
    """Catalog rows gathered for a batch, in SI units, with safe (positive) denominators."""
    # accelerator
    peak: Array                # FLOP/s at the precision (row's best if unsupported)
    peak_16bit: Array          # FLOP/s of the 16-bit tensor path (attention kernels; the row's peak if none)
    has_precision: Array       # bool
    bpe: Array                 # bytes per element of the precision
    apn: Array                 # accelerators per node (scale-up domain)
    mesh_links: Array          # direct scale-up links per accelerator on an all-to-all wired node, 0 = a switch (MESH)
    capacity: Array            # bytes
    mem_bw: Array              # achieved HBM B/s (× mem_bw_eff)
    inj_bw: Array              # weight-streaming injection B/s (wafer-scale)
    wafer: Array               # bool
    tdp: Array                 # W
    price: Array               # USD per accelerator
    cloud_usd_per_s: Array     # USD per accelerator-second
    mtbf: Array                # s per accelerator
    bw_up: Array               # achieved scale-up B/s (× scaleup_comm_eff): all-reduce (NVLS where the part has it)
    bw_up_ring: Array          # achieved scale-up B/s of what NVLS does not reduce in-switch (RS, AG, a2a, p2p)
    alpha_up: Array            # s
    bw_out: Array              # achieved scale-out B/s (locality × scaleout_comm_eff)
    alpha_out: Array           # s
    # model
    is_cnn: Array
    n_params: Array            # total parameters
    n_active: Array            # parameters per token
    n_eff: Array               # forward FLOP / 2 per item (token; CNN sample)
    n_layers: Array
    hidden: Array
    n_heads: Array
    attn_width: Array          # heads · core_head_dim (heads · head_dim for MHA/GQA; MLA: heads·((d + r) + d_v)/2)
    n_kv_heads: Array
    head_dim: Array
    kv_latent_dim: Array       # MLA elements cached per token per layer (0: 2·n_kv_heads·head_dim)
    n_experts: Array
    top_k: Array
    reuse_per_item: Array      # GEMM rows per item (1 per token)
    # region
    carbon: Array              # g CO2e / kWh
    pue: Array
    wue: Array                 # L / kWh
    elec: Array                # USD / kWh
    # achievable rates (issue 19; catalog/achievable.py, efficiency.py)
    gemm_eff: Array            # [..., 5] the part's GEMM efficiency at GEMM_SIZES, at the precision
    attention_fwdbwd_eff: Array  # [..., 6] FlashAttention fwd+bwd / fp16 peak at ATTENTION_SEQLENS
    attention_fwd_eff: Array   # [..., 6] forward only
    ffn_dim: Array             # model MLP width (GEMM shapes; 0 for CNNs)
    vocab: Array               # vocabulary size (tokens; 0 for CNNs)
    up_busbw_curve: Array      # [..., 25] scale-up busbw / scaleup_bw at MSG_BYTES (0: no data)
    out_busbw_curve: Array     # [..., 25] scale-out busbw / fabric bw at MSG_BYTES (0: no data)
    host_bw: Array             # accelerator <-> host-memory link B/s, one direction (0: none in the catalog)
    # DSV3 (issue 12): per-model columns from catalog/shapes.py (0 for every model without the fields)
    core_head_dim: Array       # attention-core GEMM width per head, ((d + rope) + d_v)/2 (= head_dim for MHA/GQA)
    mtp_layers: Array          # multi-token-prediction depths (DeepSeek-V3 §2.2)
    mtp_params: Array          # GEMM parameters per token of the MTP modules, their LM-head pass included
    dense_layers: Array        # leading dense-MLP layers of a MoE model (no expert dispatch)
    # EMBED (issue 12): the untied input embedding is a gather + scatter-add, not a GEMM (catalog/shapes.py)
    untied_emb: Array          # (1 - tied)·V·h parameters left out of the hardware GEMM FLOPs (0: tied, CNN)


def group_link_bw(c: Common, bw, group):
    """Scale-up B/s of a collective among `group` ranks of one node (MESH, issue 12).

    Through a switch (NVSwitch) or a torus every in-node group reaches the part's whole scale-up
    rate.  On a full mesh of direct links (catalog ``scaleup_topology = "mesh"``: MI300X, one
    64 GB/s xGMI link to each of 7 peers; Gaudi 2/3, 3 RoCE ports to each of 7 peers) the rate is
    split over the n - 1 links, and a group of k ranks drives only its k - 1 of them::

        bw_k = bw · clip(k - 1, 1, n - 1) / (n - 1)            (n = the catalog's accelerators per node)

    Measured (Bekman, ml-engineering network/README.md all_reduce_bench, 8 x MI300X): 312.9 GB/s
    busbw over 8 GPUs, 47.7 GB/s over 2 (0.152 of it; the rule: 1/7 = 0.143).  A pipeline's
    send/recv is a group of 2.  n - 1 is the board's link count (`Common.mesh_links`), also where a
    training row sets a smaller `accelerators_per_node` (a group of 4 of the 8 still drives 3 of 7 links).
    Units: B/s, counts.
    """
    links = floor_pos(c.mesh_links, 1.0)
    share = jnp.clip(jnp.asarray(group, c.apn.dtype) - 1.0, 1.0, links) / links
    return bw * jnp.where(c.mesh_links > 0, share, 1.0)


def gather(p, t: Tables, eff: Efficiency) -> Common:
    """Gather catalog rows and derive achieved link rates (safe against zero rows).

    Achieved rates (efficiency.py module docstring), blended by eff.achievable a ∈ [0, 1]:
      mem_bw = mem_bw_peak · mem_bw_eff · (1 - a + a · s / SUSTAINED_REF_FRAC)   (s: STREAM-triad fraction)
      bw_up  = scaleup_bw · ((1 - a) · scaleup_comm_eff + a · f_up),  alpha_up = (1 - a)·scaleup_latency_s + a·α_up
      bw_out = locality(bw) · ((1 - a) · scaleout_comm_eff + a · f_out), alpha_out = (1 - a)·latency + a·α_out
    f / α: the part's (scale-up) or fabric's (scale-out) measured large-message all-reduce
    bus-bandwidth fraction and fitted per-step latency; where the catalog has none (0) they
    fall back to the global factor and the previous α.
      bw_up_ring: the same with the part's RING fraction (NCCL_NVLS_ENABLE=0; catalog
    scaleup_busbw_frac_ring, = f_up on parts without NVLink SHARP): NVLS reduces in the switch
    for all-reduce only; all-gather / reduce-scatter / all-to-all / send-recv move (n-1)/n·S per
    GPU over the links either way (NVIDIA/nccl#1083, #1506, sjeaugey) and NCCL runs them as rings.
    """
    h, m = jnp.asarray(p.hardware, jnp.int32), jnp.asarray(p.model, jnp.int32)
    r, f = jnp.asarray(p.region, jnp.int32), jnp.asarray(p.fabric, jnp.int32)
    prec = jnp.asarray(p.precision, jnp.int32)
    # Rates that depend on catalog rows alone are computed on the small tables, then gathered once.
    peak_t = t.hw.peak_flop_per_s
    has_t = t.hw.has_precision & (peak_t > 0)
    # Unsupported precision: a finite stand-in peak (the row's best), flagged by the constraint.
    peak_t = jnp.where(has_t, peak_t, floor_pos(jnp.max(peak_t, axis=-1, keepdims=True), 1.0))
    peak, has = take(peak_t, h, prec), take(has_t, h, prec)
    peak16 = take(t.hw.peak_flop_per_s[:, FP16], h)
    bpe = jnp.asarray(BYTES_PER_ELEMENT, t.hw.peak_flop_per_s.dtype)[prec]
    is_cnn = t.model.kind[m] == CNN
    n_params = floor_pos(t.model.n_params[m], 1.0)
    fps = t.model.flop_per_sample[m]
    # Parameters "used per item": a CNN sample costs flop_per_sample = 2·n_eff forward FLOP.
    n_eff = jnp.where(is_cnn, 0.5 * fps, t.model.n_active_params[m])
    # GEMM rows per item (weight reuse): 1 per token; fps/(2·params) per CNN sample.
    reuse = jnp.where(is_cnn, fps / (2.0 * n_params), 1.0)
    bw_out = data.locality(t.fabric.bw_bytes_per_s[f], t.fabric.bisection_frac[f],
                           floor_pos(t.fabric.oversubscription[f], 1.0))
    a = eff.achievable
    mem_frac = eff.mem_bw_eff * (1.0 - a + a * t.hw.sustained_mem_bw_frac / SUSTAINED_REF_FRAC)   # per part
    # "no data" is a flag, not a value, so a perturbed 0 (sensitivity) never switches branches
    f_up = jnp.where(t.hw.scaleup_has_busbw, t.hw.scaleup_busbw_frac, eff.scaleup_comm_eff)         # per part
    a_up = jnp.where(t.hw.scaleup_has_latency, t.hw.scaleup_step_latency_s, eff.scaleup_latency_s)  # per part
    f_out = jnp.where(t.fabric.has_busbw[f], t.fabric.busbw_frac[f], eff.scaleout_comm_eff)
    a_out = jnp.where(t.fabric.has_step_latency[f], t.fabric.step_latency_s[f], t.fabric.latency_s[f])
    up_frac = eff.scaleup_comm_eff + a * (f_up - eff.scaleup_comm_eff)
    f_ring = jnp.where(t.hw.scaleup_has_busbw, t.hw.scaleup_busbw_frac_ring, eff.scaleup_comm_eff)   # per part
    ring_frac = eff.scaleup_comm_eff + a * (f_ring - eff.scaleup_comm_eff)
    out_frac = eff.scaleout_comm_eff + a * (f_out - eff.scaleout_comm_eff)
    return Common(
        peak=peak, peak_16bit=jnp.where(peak16 > 0, peak16, peak), has_precision=has, bpe=bpe,
        apn=floor_pos(t.hw.accelerators_per_node[h], 1.0),
        mesh_links=jnp.where(t.hw.scaleup_mesh, t.hw.accelerators_per_node - 1.0, 0.0)[h],
        capacity=floor_pos(t.hw.mem_capacity_bytes[h], 1.0),
        mem_bw=take(floor_pos(t.hw.mem_bw_bytes_per_s * mem_frac, 1.0), h),
        inj_bw=floor_pos(t.hw.injection_bw_bytes_per_s[h], 1.0),
        wafer=t.hw.is_wafer_scale[h], tdp=t.hw.tdp_w[h], price=t.hw.price_usd[h],
        cloud_usd_per_s=t.hw.cloud_usd_per_hour[h] / SECONDS_PER_HOUR,
        mtbf=floor_pos(t.hw.mtbf_s[h], 1.0),
        bw_up=take(floor_pos(t.hw.scaleup_bw_bytes_per_s * up_frac, 1.0), h),
        bw_up_ring=take(floor_pos(t.hw.scaleup_bw_bytes_per_s * ring_frac, 1.0), h),
        alpha_up=take(eff.scaleup_latency_s + a * (a_up - eff.scaleup_latency_s), h),
        bw_out=floor_pos(bw_out * out_frac, 1.0),
        alpha_out=t.fabric.latency_s[f] + a * (a_out - t.fabric.latency_s[f]),
        is_cnn=is_cnn, n_params=n_params, n_active=t.model.n_active_params[m], n_eff=n_eff,
        n_layers=floor_pos(t.model.n_layers[m], 1.0), hidden=t.model.hidden_dim[m],
        # attn_width: the product on the per-model table, then one gather (MLA: 128·160)
        n_heads=t.model.n_heads[m], attn_width=(t.model.n_heads * t.model.core_head_dim)[m],
        n_kv_heads=t.model.n_kv_heads[m], head_dim=t.model.head_dim[m],
        kv_latent_dim=t.model.kv_latent_dim[m],
        n_experts=floor_pos(t.model.n_experts[m], 1.0), top_k=t.model.top_k[m],
        reuse_per_item=reuse,
        carbon=t.region.carbon_gco2e_per_kwh[r], pue=t.region.pue[r],
        wue=t.region.wue_l_per_kwh[r], elec=t.region.electricity_usd_per_kwh[r],
        gemm_eff=take(t.hw.gemm_eff, h, prec), attention_fwdbwd_eff=take(t.hw.attention_fwdbwd_eff, h),
        attention_fwd_eff=take(t.hw.attention_fwd_eff, h), ffn_dim=t.model.ffn_dim[m],
        vocab=jnp.where(is_cnn, 0.0, t.model.vocab_size[m]),
        up_busbw_curve=take(t.hw.scaleup_busbw_curve, h), out_busbw_curve=take(t.fabric.busbw_curve, f),
        host_bw=take(t.hw.host_bw_bytes_per_s, h),
        core_head_dim=t.model.core_head_dim[m], mtp_layers=t.model.mtp_layers[m],
        mtp_params=t.model.mtp_active_params[m], dense_layers=t.model.dense_layers[m],
        untied_emb=t.model.untied_embedding_params[m])


# Facility (power, cooling, shell) amortization period: 15 years, the middle of the IRS
# recovery classes data-centre facility assets fall into (Rev. Proc. 87-56 / Pub. 5653:
# 5-year process equipment such as UPS, PDUs, CRAHs; 15-year site plant such as generators
# and cooling towers; 39-year building shell).
FACILITY_LIFE_S = 15 * 365 * 86400.0


def fleet_cost(c: Common, pricing, n_dev, duration_s, power_w, depreciation_s, maint):
    """The run's cost `tco_usd` (ops walls, wall 17): cloud device-seconds (energy included),
    or on-prem the run's AMORTIZED share of what was bought plus energy and maintenance.

    On-prem [ops.tco with the IT price per accelerator]: the accelerators WITH their servers
    and network share, price·(1 + s + n) (ops.SYSTEM_FRAC, ops.NETWORK_FRAC: the same bill as
    `fleet_upfront_capex`), amortized over `depreciation`, maintenance as a fraction of that
    IT price, energy at the PUE; plus the facility f·N·TDP·(1 + h) amortized over
    FACILITY_LIFE_S (15 years).  The seeds' worked examples charge the accelerator price
    alone (seed 004: $30K per H100): the servers, network and building a run needs are costs
    an owner pays, and leaving them out made on-prem look 1.8x cheaper than it is against
    cloud prices that include them.  Not the purchase: see `fleet_upfront_capex`.
    """
    # the bill of ops.upfront_capex_usd, split: IT per accelerator (no power: no facility) and
    # the facility alone (no price: no IT)
    it_price = ops.upfront_capex_usd(c.price, 1.0, 0.0)
    onprem = ops.tco(it_price, n_dev, duration_s, power_w, c.elec, c.pue,
                     depreciation_s=floor_pos(depreciation_s, 1.0),
                     maintenance_frac_per_year=maint).tco_usd
    facility = ops.upfront_capex_usd(0.0, n_dev, c.tdp) * duration_s / FACILITY_LIFE_S
    cloud = ops.cloud_cost(c.cloud_usd_per_s, n_dev, duration_s)
    return jnp.where(jnp.asarray(pricing) == CLOUD, cloud, onprem + facility)


def fleet_upfront_capex(c: Common, pricing, n_dev):
    """`upfront_capex_usd`: what must be bought before the run, USD (ops.upfront_capex_usd).

    On-prem: N accelerators at the catalog price with their servers, network share and
    facility (power and cooling per W of TDP + host), at the wall's documented defaults;
    cloud: 0 (renting buys nothing).  Finite; linear in price, N and TDP.
    """
    onprem = ops.upfront_capex_usd(c.price, n_dev, c.tdp)
    return jnp.where(jnp.asarray(pricing) == CLOUD, jnp.zeros_like(onprem), onprem)


def elementwise_time_s(c: Common, eff: Efficiency, *, seq, micro_seqs, tp, layers_stage, microbatches,
                       full, selective) -> node.Roofline:
    """Memory-bound time of a training step's non-matrix operations, per GPU (`.t_memory_s`, s).

    Layernorm, dropout, residual adds, softmax (+ its dropout) and GeLU stream their
    16-bit operands through HBM at mem_bw·mem_bw_eff and cannot hide behind the GEMMs
    they sit between, so the scenario ADDS this time to the per-GPU compute time (not to
    the roofline's max).  Per step, over the L/pp layers of a stage and M micro-batches::

        bytes = elementwise_traffic_scale · M · (L/pp) · ((3 + full) · A + selective · A_attn)
        A      = s·b·h·(10 + 24/tp) + 5·a·s²·b/tp   (Korthikanti et al. 2022, arXiv:2205.05198,
                                                    Table 2: activation bytes per layer, no
                                                    recomputation, no sequence parallelism)
        A_attn = 5·a·s²·b/tp                        (the attention core selective recompute reruns)
        t      = bytes / (mem_bw · mem_bw_eff)

    3 passes (forward writes A, backward reads it and writes its gradient), 4 with full
    recomputation (one more forward).  `elementwise_traffic_scale` (efficiency.py) is the
    traffic in units of A, physically 1–2.  A uses no sequence parallelism: the measured
    Megatron-LM 2021 runs replicate layernorm/dropout over the tensor-parallel group (with
    it, the 10 becomes 10/tp), whereas the memory model assumes it (capacity is the
    binding limit there).  CNN rows have no activation shape in the catalog (h = 0): 0 s.

    Args: c (gathered catalog rows: hidden h, heads a, mem_bw); eff; seq s (tokens);
      micro_seqs b (sequences per micro-batch); tp (count); layers_stage L/pp (count);
      microbatches M (count); full, selective (0/1 floats: the recompute mode).
    Returns the `node.roofline` of 0 FLOP and those bytes (finite; capped like every wall).
    Example: s = 2048, b = 1, h = 2304, a = 24, tp = 1, 24 layers, M = 16, full recompute,
      scale 1.4, A100 at 2.0e12·0.8 B/s: A = 1.61e8 + 5.03e8 = 6.64e8 B per layer,
      bytes = 1.4·16·24·4·6.64e8 = 1.43e12 B, t = 0.892 s.
    """
    a_none = node.transformer_activation_bytes(seq, micro_seqs, c.hidden, c.n_heads, 1.0, tp=tp,
                                               recompute_code=0, sequence_parallel=False)
    a_sel = node.transformer_activation_bytes(seq, micro_seqs, c.hidden, c.n_heads, 1.0, tp=tp,
                                              recompute_code=1, sequence_parallel=False)
    per_layer = (3.0 + full) * a_none + selective * (a_none - a_sel)
    traffic = eff.elementwise_traffic_scale * microbatches * layers_stage * per_layer
    return node.roofline(0.0, traffic, c.peak, c.mem_bw)

