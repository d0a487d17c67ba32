"""Attention as its own kernel: fused (FlashAttention) vs eager (materialised scores).

The attention *core* of one transformer layer, softmax(Q·Kᵀ/√d)·V, for one sequence
of ``s`` query tokens attending to ``s_kv`` key tokens (``s_kv = s`` unless the
sequence is split by context parallelism), with ``a`` query heads, ``g`` KV heads
(GQA/MQA) of dimension ``d`` on one tensor-parallel rank (heads already divided by
tp by the caller or via ``tp``).  The projections (QKV, output) are ordinary GEMMs
counted with the model's parameters; only the core is here.

Eager (PyTorch ``softmax(q@k.T)@v``, Megatron-LM's unfused path): Q·Kᵀ writes the
``a·s·s_kv`` score tensor to HBM, softmax and dropout read and write it again, and
the backward keeps it: 5·a·s·s_kv bytes of 16-bit scores, softmax output and 1-byte
dropout mask per sequence (Korthikanti et al. 2022, arXiv:2205.05198, Table 2,
the "5as²b" term).  A causal mask is applied *after* the full Q·Kᵀ, so eager pays
every FLOP of the square.

Flash (Dao et al. 2022, arXiv:2205.14135; Dao 2023 FlashAttention-2,
arXiv:2307.08691): the scores live in SRAM tiles; HBM sees Q, K, V, O (and dO, dQ,
dK, dV in the backward) plus the fp32 log-sum-exp row statistics (4·a·s bytes)
that the backward keeps to recompute the scores.  Causal masking skips the fully
masked tiles, so the causal FLOPs are the lower triangle, s·(s+1)/2 of s².  The
backward recomputes S = Q·Kᵀ: 5 matmuls against the forward's 2, i.e. 2.5× the
forward FLOPs (FlashAttention-2 §3.2), where eager's backward is 2× (4 matmuls).

All functions are pure, elementwise and branch-free (flags are 0/1 floats or
bools, broadcast like the rest); counts are floats; bytes per element default to
2 (bf16/fp16).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from mlsys_opt._types import Array
from mlsys_opt.walls import parallel
from mlsys_opt.walls._masked import as_float as _f
from mlsys_opt.walls._masked import floor_pos, safe_div

ATTENTION_KINDS: tuple[str, ...] = ("flash", "eager")
FLASH, EAGER = 0, 1
LSE_BYTES = 4.0            # fp32 log-sum-exp per query row and head (FlashAttention-2 Algorithm 1)
EAGER_SCORE_BYTES = 5.0    # bytes per score element kept for backward: 2 (softmax out) + 1 (mask) + 2 (dropout out)


class AttentionCost(NamedTuple):
    """One attention core, one sequence, one layer, one tensor-parallel rank."""
    fwd_flop: Array          # FLOP of the forward pass (Q·Kᵀ and P·V)
    bwd_flop: Array          # FLOP of the backward pass (incl. flash's score recomputation)
    fwd_bytes: Array         # HBM traffic of the forward, bytes
    bwd_bytes: Array         # HBM traffic of the backward, bytes
    stored_bytes: Array      # bytes kept for the backward beyond Q, K, V, O (scores or LSE)


def causal_fraction(s_q, s_kv, causal) -> Array:
    """Share of the s_q × s_kv score square a causal flash kernel computes (1 for non-causal).

    Queries are the last s_q of the s_kv keys (s_q = s_kv: self-attention).  The
    unmasked elements are Σ_{i=1..s_q} (s_kv - s_q + i) = s_q·(s_kv - s_q) + s_q(s_q+1)/2, so
    fraction = 1 - (s_q - 1)/(2·s_kv).  Example: s_q = s_kv = 8192: 0.50006.  Context-parallel
    ranks with a load-balanced split see the same average (`cp_causal_imbalance`).
    """
    sq, skv, c = _f(s_q, s_kv, causal)
    frac = 1.0 - safe_div(jnp.maximum(sq - 1.0, 0.0), 2.0 * skv, fill=0.0)
    return jnp.where(c > 0.5, jnp.clip(frac, 0.0, 1.0), jnp.ones_like(frac))


def attention_core(s_q, s_kv, n_heads, n_kv_heads, head_dim, *, kind=FLASH, causal=True, tp=1.0,
                   bytes_per_element=2.0) -> AttentionCost:
    """FLOPs, HBM traffic and stored bytes of one attention core (see module docstring).

    With a = n_heads/tp query heads, g = max(n_kv_heads/tp, 1) KV heads (a KV head is
    replicated when tp exceeds the KV heads, Megatron-LM's GQA rule), d = head_dim,
    b = bytes_per_element, f = causal_fraction (flash only; eager computes the square)::

        fwd_flop  = 4·a·d·s_q·s_kv·f                      (2 for Q·Kᵀ, 2 for P·V)
        bwd_flop  = 2.5·fwd (flash: 5 matmuls) | 2·fwd (eager: 4 matmuls)
        fwd_bytes = b·d·(2·a·s_q + 2·g·s_kv) + LSE          flash: read Q,K,V, write O, LSE 4·a·s_q
                  + b·a·s_q·s_kv·(1 + 2 + 2 + 1 + 1)         eager adds: write S, softmax r/w,
                                                            dropout r/w + mask, P·V reads P'
        bwd_bytes = 2·fwd_bytes                             (reads the forward's tensors, writes grads)
        stored    = LSE_BYTES·a·s_q (flash) | EAGER_SCORE_BYTES·a·s_q·s_kv (eager)

    Args: s_q, s_kv (tokens); n_heads, n_kv_heads, head_dim (counts); kind 0 flash, 1 eager
      (int code into ATTENTION_KINDS, may be an array); causal (bool/0-1); tp (count);
      bytes_per_element (bytes).
    Returns AttentionCost (FLOP and bytes, per sequence per layer per rank).
    Sources: Dao et al. 2022 §3 (IO complexity), Dao 2023 (FlashAttention-2) §3.1-3.2;
      Korthikanti et al. 2022 Table 2 (5as² stored bytes of eager attention).
    Example (Llama-3-70B shapes, s = 8192, 64 heads, 8 KV heads, d = 128, tp = 8, causal):
      flash fwd = 4·8·128·8192²·0.50006 = 1.3746e11 FLOP, bwd 3.4365e11; stored 4·8·8192 = 262,144 B;
      eager fwd = 2.7488e11 FLOP, stored 5·8·8192² = 2.684e9 B.
    """
    sq, skv, a_all, g_all, d, k, c, t, b = _f(s_q, s_kv, n_heads, n_kv_heads, head_dim, kind, causal,
                                              tp, bytes_per_element)
    eager = k > 0.5
    a = safe_div(a_all, t, fill=0.0)
    g = jnp.where(g_all > 0, floor_pos(safe_div(g_all, t, fill=0.0), 1.0), 0.0)
    f = jnp.where(eager, jnp.ones_like(sq), causal_fraction(sq, skv, c))
    fwd = 4.0 * a * d * sq * skv * f
    bwd = jnp.where(eager, 2.0, 2.5) * fwd
    io = b * d * (2.0 * a * sq + 2.0 * g * skv)
    scores = a * sq * skv
    fwd_bytes = io + jnp.where(eager, 7.0 * b * scores, LSE_BYTES * a * sq)
    stored = jnp.where(eager, EAGER_SCORE_BYTES * scores, LSE_BYTES * a * sq)
    return AttentionCost(fwd, bwd, fwd_bytes, 2.0 * fwd_bytes, stored)


def cp_causal_imbalance(cp, *, load_balanced=True) -> Array:
    """Slowest / average attention work of cp context-parallel ranks under a causal mask.

    A contiguous split gives rank r the queries [r·s/cp, (r+1)·s/cp), whose work is
    ∝ 2r + 1: max/mean = (2·cp - 1)/cp.  The load-balanced split (2·cp chunks, rank r
    holds chunks r and 2cp-1-r; Megatron-Core context parallelism, Llama 3 paper §3.3.2)
    gives every rank the same work: 1.
    Example: cp = 4, contiguous: 7/4 = 1.75; balanced: 1.
    """
    (n,) = _f(cp)
    n = floor_pos(n, 1.0)
    return jnp.where(jnp.asarray(load_balanced), jnp.ones_like(n), (2.0 * n - 1.0) / n)


def ring_attention_bytes(s, micro_seqs, n_kv_heads, head_dim, cp, *, tp=1.0, bytes_per_element=2.0) -> Array:
    """Bytes one context-parallel rank sends per layer per micro-batch (forward + backward).

    Ring attention (Liu et al. 2023, arXiv:2310.01889; Megatron-Core context parallelism)
    passes each rank's K,V chunk around the cp ranks: cp - 1 sends of
    2·(s/cp)·b_mb·g·d·bytes forward, and K,V plus their gradients (twice that) backward::

        bytes = 3·(cp - 1)·2·(s/cp)·b_mb·g·d·bytes,   g = max(n_kv_heads/tp, 1)

    Llama 3's all-gather form (§3.3.2) moves the same (cp-1)/cp of the K,V per rank.
    Example: s = 131072, b_mb = 1, 8 KV heads, d = 128, cp = 16, tp = 8, bf16:
      chunk 2·8192·128·2 = 4.19e6 B, bytes = 3·15·4.19e6 = 1.887e8 B.
    """
    s_, b, g_all, d, n, t, e = _f(s, micro_seqs, n_kv_heads, head_dim, cp, tp, bytes_per_element)
    n = floor_pos(n, 1.0)
    g = jnp.where(g_all > 0, floor_pos(safe_div(g_all, t, fill=0.0), 1.0), 0.0)
    chunk = 2.0 * (s_ / n) * b * g * d * e
    return 3.0 * (n - 1.0) * chunk


# ---------------------------------------------------------------- context parallelism as PyTorch runs it
CP_COMM_TYPES: tuple[str, ...] = ("p2p", "all_gather")
P2P, ALL_GATHER = 0, 1
# fp32 bytes per element that a ring step's merge/accumulation reads and writes at the least, whatever
# the kernel fusion (PyTorch _SDPAMerger / _templated_ring_attention_backward, convert_to_f32 = True):
MERGE_FWD_BYTES = 10.0     # forward, per output element per merged step: read the block output (2 B bf16),
                           # read and write the running fp32 output (4 + 4 B)
ACCUM_BWD_BYTES = 10.0     # backward, per dQ/dK/dV element per step: read the block gradient (2 B),
                           # read and write the fp32 accumulator (4 + 4 B)


def cp_exchange_heads(n_heads, n_kv_heads, tp, kv_repeat) -> Array:
    """K,V heads one context-parallel rank exchanges: max(n_kv_heads/tp, 1), or n_heads/tp when the
    model repeats K,V to the query heads before the attention call (kv_repeat = 1).

    torchtitan's Llama (torchtitan/models/llama/model.py at 9dec370, Dec 2024, and at 820504e,
    Jun 2025) calls ``repeat_kv`` on xk, xv before ``F.scaled_dot_product_attention``, so the
    context-parallel SDPA wrapper receives, and rotates, n_heads/tp heads: 4× the KV bytes for
    Llama 3 8B/70B (32/8, 64/8), 16× for 405B (128/8).
    Example: 128 heads, 8 KV heads, tp 8: 1 (kv_repeat 0) or 16 (kv_repeat 1).
    """
    a, g, t, r = _f(n_heads, n_kv_heads, tp, kv_repeat)
    t = floor_pos(t, 1.0)
    kv = jnp.where(g > 0, floor_pos(safe_div(g, t, fill=0.0), 1.0), 0.0)
    return jnp.where(r > 0.5, floor_pos(safe_div(a, t, fill=0.0), 1.0), kv)


def cp_allgather_exposed_s(chunk_bytes, cp, bw, alpha, attn_fwd_s, attn_bwd_s, *, overlap=1.0,
                           forward_passes=1.0) -> Array:
    """Exposed time (s) of PyTorch's pass-KV context parallelism, per layer and micro-batch.

    PyTorch ``context_parallel`` (torch/distributed/tensor/experimental/_attention.py, Dec 2024,
    the torch commit 1963fc8 of torchtitan's Dec-2024 benchmarks; ``_ContextParallelOptions``:
    rotate_method = ALL_GATHER, enable_load_balance = True, convert_to_f32 = True; torchtitan's
    ``--experimental.context_parallel_rotate_method`` default "allgather": "all-gather all kv
    shards on ranks after the first sub-SDPA computation") runs cp load-balanced steps of equal
    work, T/cp each (T: the rank's attention time of that pass), and:
    - forward (and its re-run under full recomputation: ``forward_passes`` = 2): one all-gather
      of the cp - 1 remote K,V chunks, hidden only behind the first, local sub-SDPA (T_f/cp);
    - backward: the same all-gather behind the first backward step (T_b/cp), then dK,dV
      accumulated in fp32 (2× the bf16 chunk) passed to the next rank after every step: cp - 1
      sends hidden behind one step each, the last one waited for at once (exposed whole).

        t_ag = (cp - 1)·(C/bw + α),   t_kv = 2C/bw + α,   x(t, W) = max((1 - o)·t, t - W, 0)
        exposed = passes·x(t_ag, T_f/cp) + x(t_ag, T_b/cp) + (cp - 1)·x(t_kv, T_b/cp) + t_kv

    0 when cp = 1.  Args: chunk_bytes C (one rank's K+V, bytes), cp (count), bw (B/s), alpha (s),
    attn_fwd_s / attn_bwd_s (s), overlap o (fraction the framework tries to hide), forward_passes.
    Example: C = 0.268 GB, cp 8, bw 45 GB/s, α 0, T_f = 0.12 s, T_b = 0.3 s, o = 1, passes 2:
      t_ag = 41.7 ms, t_kv = 11.9 ms, fwd 2·(41.7 - 15) = 53.4 ms, bwd (41.7 - 37.5) + 0 + 11.9 = 16.1 ms.
    """
    c, n, b, al, tf, tb, o, k = _f(chunk_bytes, cp, bw, alpha, attn_fwd_s, attn_bwd_s, overlap, forward_passes)
    n = floor_pos(n, 1.0)
    b = floor_pos(b, 1.0)

    t_ag = (n - 1.0) * (c / b + al)
    t_kv = 2.0 * c / b + al
    fwd = k * parallel.exposed(t_ag, o, tf / n)           # x(t, W) above
    bwd = parallel.exposed(t_ag, o, tb / n) + (n - 1.0) * parallel.exposed(t_kv, o, tb / n) + t_kv
    return jnp.where(n > 1.0, fwd + bwd, 0.0)


def cp_merge_bytes(q_elements, kv_elements, cp, *, forward_passes=1.0) -> Array:
    """HBM bytes of the fp32 merges of a load-balanced ring (per layer, micro-batch and rank).

    Each forward step after the first merges its block output into the running fp32 output
    (PyTorch ``_SDPAMerger``, convert_to_f32 = True): at least MERGE_FWD_BYTES per output
    element; each of the cp backward steps accumulates dQ, dK, dV in fp32
    (``_templated_ring_attention_backward``): at least ACCUM_BWD_BYTES per element.  The
    bound holds for fused kernels; PyTorch's unfused ops (casts, torch.cat of the partial
    updates and of the dK,dV send buffer) move more, not counted::

        bytes = passes·(cp - 1)·10·E_q + cp·10·(E_q + 2·E_kv)   (0 when cp = 1)

    E_q = b·(s/cp)·(n_heads/tp)·d output (= dQ) elements, E_kv = b·(s/cp)·h_x·d per K or V.
    Example: E_q = E_kv = 1.342e8 (Llama 3 8B at s/cp = 32768), cp 8, 2 passes:
      2·7·10·E_q + 8·10·3·E_q = 380·E_q = 5.10e10 B.
    """
    q, kv, n, k = _f(q_elements, kv_elements, cp, forward_passes)
    n = floor_pos(n, 1.0)
    fwd = k * (n - 1.0) * MERGE_FWD_BYTES * q
    bwd = n * ACCUM_BWD_BYTES * (q + 2.0 * kv)
    return jnp.where(n > 1.0, fwd + bwd, 0.0)


def cp_p2p_bookkeeping_bytes(q_elements, kv_elements, cp, *, forward_passes=1.0, bytes_per_element=2.0) -> Array:
    """HBM bytes of Transformer Engine's p2p ring beyond its attention kernels (per layer, micro-batch, rank).

    Transformer Engine's ``AttnFuncWithCPAndKVP2P`` (transformer_engine/pytorch/attention.py at
    bee4649c, the TE of NeMo 25.04; Megatron-Core's default cp_comm_type "p2p") with the
    load-balanced causal split runs cp steps per pass and, in the activation dtype (e bytes):
    - forward: packs K and V into one send buffer (``torch.cat``: read + write, 2e per K or V
      element); after the ring, merges the cp partial outputs into the running output, step 0 by
      ``flash_attn_fwd_out_correction_init`` (read + write, 2e per output element), each later
      step by ``flash_attn_fwd_out_correction`` (read the step output, read and write the running
      output: 3e), over the whole output when the step used both query halves (step i <= rank)
      and over its second half otherwise (3e/2): averaged over the cp ranks (step i is whole on
      cp - i of them), Σ_i 3e·(1 + (cp - i)/cp)/2 = 2.25·(cp - 1)·e per output element;
    - backward: copies K,V into the ring buffer (2e per K or V element) and accumulates dQ and
      dK,dV after every step with the same first-step copy / later-step add pattern
      (``dq.copy_``/``dq.add_``, ``dkv.copy_``/``dkv.add_``, full or second half).
    Under full recomputation the forward runs ``forward_passes`` = 2 times.  The softmax
    statistics (one fp32/fp64 number per query row and head) are d = 128 times smaller and not
    counted; every K,V transfer overlaps one step's kernel, so no send is exposed here::

        k     = e·(2 + 2.25·(cp - 1))                         (bytes per output or gradient element)
        bytes = passes·(2e·2·E_kv + k·E_q) + 2e·2·E_kv + k·(E_q + 2·E_kv)     (0 when cp = 1)

    E_q = b·(s/cp)·(n_heads/tp)·d output (= dQ) elements, E_kv = b·(s/cp)·(n_kv_heads/tp)·d per K or V.
    Args: q_elements E_q, kv_elements E_kv (counts), cp (count), forward_passes (count), bytes_per_element e
      (bytes).  Returns bytes; the caller divides by the HBM bandwidth (memory-bound, not overlapped: the
      merges follow the last forward step, the accumulations each backward step on the same stream).
    Example: Llama 3 8B on B200 at s = 65,536, cp 4, tp 1 (E_q = 16384·32·128 = 6.711e7, E_kv = E_q/4),
      e = 2, one pass: k = 17.5, bytes = (8·1.678e7 + 17.5·6.711e7) + 8·1.678e7 + 17.5·1.007e8 = 3.204e9 B
      (0.46 ms at 6.9 TB/s, ~1.7 % of that layer's attention kernels).
    """
    q, kv, n, k_pass, e = _f(q_elements, kv_elements, cp, forward_passes, bytes_per_element)
    n = floor_pos(n, 1.0)
    k = e * (2.0 + 2.25 * (n - 1.0))
    pack = 4.0 * e * kv
    total = k_pass * (pack + k * q) + pack + k * (q + 2.0 * kv)
    return jnp.where(n > 1.0, total, 0.0)


__all__ = [
    "ACCUM_BWD_BYTES",
    "ALL_GATHER",
    "ATTENTION_KINDS",
    "AttentionCost",
    "CP_COMM_TYPES",
    "EAGER",
    "FLASH",
    "MERGE_FWD_BYTES",
    "P2P",
    "attention_core",
    "causal_fraction",
    "cp_allgather_exposed_s",
    "cp_causal_imbalance",
    "cp_exchange_heads",
    "cp_merge_bytes",
    "cp_p2p_bookkeeping_bytes",
    "ring_attention_bytes",
]
