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


__all__ = [
    "ATTENTION_KINDS",
    "EAGER",
    "FLASH",
    "AttentionCost",
    "attention_core",
    "causal_fraction",
    "cp_causal_imbalance",
    "ring_attention_bytes",
]
