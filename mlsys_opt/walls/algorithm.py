"""Algorithm walls (11-13): how much compute a model needs, and what compression buys.

Wall 11 (Complexity): training compute C = 6PD and the Chinchilla-optimal split.
Wall 12 (Reasoning): inference-time compute of a chain of reasoning steps.
Wall 13 (Fidelity): quantization and pruning, with storage, speed-up and an
accuracy-delta heuristic.

Every function is pure ``jax.numpy``: arguments are SI floats (scalars or arrays
that broadcast to one batch shape ``[...]``), knobs are keyword-only with
documented defaults, results are arrays or NamedTuples of arrays. Everything
is jit/vmap/grad-able and finite over the valid domain (degenerate
denominators are guarded, never raised on).

Sources: seed 000 (mlsysim "Mathematical Foundations") section 3; seed 002
(the 22 laws) walls 11-13; Hoffmann et al. (2022) Chinchilla; Kaplan et al.
(2020); Gholami et al. (2021) quantization survey; Blalock et al. (2020)
pruning survey; NVIDIA Ampere whitepaper (2020) for 2:4 sparsity.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from mlsys_opt._types import Array
from mlsys_opt.walls._masked import UNBOUNDED, nan_where, nonneg, safe_div, safe_sqrt

__all__ = [
    "Chinchilla", "Reasoning", "Compression",
    "training_flop", "cross_entropy_bytes", "cross_entropy_peak_bytes", "LOSS_KERNELS", "LOSS_BYTES_PER_LOGIT",
    "LOSS_PEAK_BYTES_PER_LOGIT", "chinchilla", "tokens_per_param", "flop_for_budget",
    "reasoning", "quantization", "pruning", "quantization_loss_frac",
    "STRUCTURE_CODES",
]

# Pruning structure codes (int codes, names for reports only).
STRUCTURE_CODES: tuple[str, ...] = ("unstructured", "structured", "n_m_2_4")


# --------------------------------------------------------------------------- wall 11

class Chinchilla(NamedTuple):
    """Compute-optimal model size and data for a budget. Shapes ``[...]``."""

    optimal_params: Array  # P*, parameters
    optimal_tokens: Array  # D*, tokens


def training_flop(n_params: Array, n_tokens: Array, *, flop_per_param_token: float = 6.0) -> Array:
    """Total dense-transformer training compute, C = 6·P·D.

    The 6 is 2 FLOP per parameter per token for the forward multiply-add,
    times 3 for forward + backward-activations + backward-weights.

    Args:
      n_params: P, model parameters (count), broadcastable to ``[...]``.
      n_tokens: D, training tokens (count), broadcastable to ``[...]``.
      flop_per_param_token: the constant 6 (FLOP / (param·token)).

    Returns:
      C, FLOP, shape ``[...]``.

    Source: seed 000 section 3 (6PD rule); Kaplan et al. (2020); Hoffmann et al. (2022).

    Worked example (seed 000 section 3, GPT-3): P = 175e9, D = 300e9 gives
    C = 6 · 175e9 · 300e9 = 3.15e23 FLOP.
    """
    n_params, n_tokens, flop_per_param_token = nonneg(n_params, n_tokens, flop_per_param_token, broadcast=False)
    return flop_per_param_token * n_params * n_tokens


# Loss kernels (schema `loss_kernel` choices, same order) and their HBM bytes per logit element
# (one token x one vocabulary entry of the rank's shard) for forward + backward; counted from the code:
# fused    flash-attn `losses.cross_entropy` (Triton): the forward reads the 16-bit logits once (online
#          log-sum-exp), the backward reads them again and writes the 16-bit gradient: 2 + 2 + 2 = 6.
#          Same traffic: Megatron-Core/TE fused cross entropy, Liger, XLA's fused softmax-xent.
# torch    F.cross_entropy(logits.float()) (torchtitan, HF): cast 2 + 4; log_softmax forward (max, sum-exp,
#          write: cunn_SoftMaxForward, the vocabulary row does not fit shared memory) 12 + 4; nll_loss
#          backward's zero-filled gradient 4; log_softmax backward (sum of the gradient, then gradient and
#          output read, input gradient written) 12 + 4; the cast's backward 4 + 2: 48.
# megatron Megatron-LM/-Core vocab_parallel_cross_entropy (not fused): cast 2 + 4, max 4, subtract max in
#          place 4 + 4, exp in place 4 + 4, sum 4, divide in place 4 + 4; backward mul_ 4 + 4; cast's
#          backward 4 + 2: 52 (megatron/core/tensor_parallel/cross_entropy.py).
# torch16  F.cross_entropy on the 16-bit logits themselves, no fp32 cast (KempnerForge scripts/train.py): log_softmax
#          forward 3 reads + 1 write of 2 B = 8; nll_loss backward's zero-filled gradient 2; log_softmax backward
#          3 reads + 1 write = 8: 18.
LOSS_KERNELS: tuple[str, ...] = ("fused", "torch", "megatron", "torch16")
LOSS_BYTES_PER_LOGIT: tuple[float, ...] = (6.0, 48.0, 52.0, 18.0)


# Peak bytes per logit element the loss holds at once (beyond the stored activations), counted from the same code
# (the allocations alive together; PyTorch frees a tensor when its last reference goes):
# fused    the 16-bit logits, kept for the backward, and their 16-bit gradient written by it: 2 + 2 = 4
#          (flash-attn losses.cross_entropy with inplace_backward=False, its default).
# torch    forward: 16-bit logits 2 + the fp32 copy 4 + log_softmax's output 4 (saved) = 10; backward:
#          log_softmax's saved output 4 + nll_loss's fp32 gradient 4 + log_softmax_backward's input gradient 4 = 12
#          (the bf16 logits are freed before it: torchtitan's train step `del pred` before loss.backward()).
# megatron the 16-bit logits 2 + the fp32 copy that every step then updates in place (max, subtract, exp,
#          divide: the saved softmax) 4 = 6; its backward rewrites the softmax in place into the gradient
#          (grad_input.mul_) and casts it to 16 bits: 4 + 2 = 6 (megatron/core/tensor_parallel/cross_entropy.py).
# torch16  the 16-bit logits (still referenced by the training loop) 2 + log_softmax's saved output 2 + nll_loss's
#          gradient 2 + log_softmax_backward's input gradient 2 = 8.
LOSS_PEAK_BYTES_PER_LOGIT: tuple[float, ...] = (4.0, 12.0, 6.0, 8.0)
# torch on vocabulary-sharded logits (tp > 1): PyTorch runs F.cross_entropy through DTensor's loss_parallel handlers
# (torch/distributed/tensor/parallel/loss.py, read at 02eef6b): _log_softmax on the fp32 shard (amax 4, x - max
# 4 + 4, exp 4 + 4, sum 4, shifted - logsumexp 4 + 4 = 32) and _nll_loss_and_log_softmax_backward (zeros_like 4,
# exp(x) 4 + 4, grad_input + exp 8 + 4, × grad_output 4 + 4 = 32), plus the casts 2 + 4 and 4 + 2: 76 B; alive
# together in that backward: the saved output, grad_input, exp's sum and the product, 4 each: 16 B.
TORCH_VOCAB_PARALLEL_BYTES_PER_LOGIT = 76.0
TORCH_VOCAB_PARALLEL_PEAK_BYTES_PER_LOGIT = 16.0
TORCH_LOSS = LOSS_KERNELS.index("torch")


def cross_entropy_peak_bytes(tokens: Array, vocab_shard: Array, kind: Array, vocab_parallel=False) -> Array:
    """Peak HBM the training loss holds at once: M = T · V_shard · μ(kind), bytes.

    μ (bytes per logit element alive together) is LOSS_PEAK_BYTES_PER_LOGIT[kind]: 4 fused (16-bit logits and
    their gradient), 12 PyTorch eager F.cross_entropy on fp32 logits (log_softmax's saved output, the NLL
    gradient and the input gradient at the start of the backward), 6 Megatron's unfused kernel (the 16-bit
    logits and the fp32 softmax it updates in place), 8 F.cross_entropy on the 16-bit logits; counts
    above.  This buffer is transient: it sits on top of the stored activations when the backward starts
    (the peak of a step that is not pipelined).  vocab_parallel (bool, ``[...]``): the logits are a vocabulary
    shard (tp > 1, loss parallel), which PyTorch's torch kernel runs through DTensor's loss_parallel handlers:
    16 B (TORCH_VOCAB_PARALLEL_PEAK_BYTES_PER_LOGIT); the other kernels are unchanged.

    Args:
      tokens: T, tokens whose logits this rank computes (count), ``[...]``.
      vocab_shard: V_shard, vocabulary entries per rank (count), ``[...]``.
      kind: int code into LOSS_KERNELS, ``[...]``.
      vocab_parallel: bool, ``[...]`` (default False).

    Returns:
      bytes, ``[...]``.

    Worked example: Llama 3 8B, one 8,192-token sequence, V = 128,256, torch: 8192 · 128,256 · 12 = 1.26e10 B
    (11.7 GiB; 3.9 GiB at the fp32 logits alone).
    """
    return _per_logit(tokens, vocab_shard, kind, LOSS_PEAK_BYTES_PER_LOGIT, vocab_parallel,
                      TORCH_VOCAB_PARALLEL_PEAK_BYTES_PER_LOGIT)


def _per_logit(tokens, vocab_shard, kind, bytes_per_logit: tuple[float, ...], vocab_parallel,
               torch_vp: float) -> Array:
    """T · V_shard · bytes_per_logit[kind] (kind clipped to the table), torch_vp for the torch kernel on a
    vocabulary shard (DTensor loss_parallel): the loss kernels' one form."""
    tokens, vocab_shard = nonneg(tokens, vocab_shard, broadcast=False)
    per = jnp.asarray(bytes_per_logit, jnp.result_type(tokens, vocab_shard))
    code = jnp.clip(jnp.asarray(kind, jnp.int32), 0, len(bytes_per_logit) - 1)
    beta = jnp.where(jnp.asarray(vocab_parallel, bool) & (code == TORCH_LOSS), torch_vp, per[code])
    return tokens * vocab_shard * beta


def cross_entropy_bytes(tokens: Array, vocab_shard: Array, kind: Array, vocab_parallel=False) -> Array:
    """HBM bytes of the training loss over the vocabulary: B = T · V_shard · β(kind).

    The LM head's logits [T, V_shard] (V_shard = V / tp for a vocabulary-parallel head) go
    through the softmax cross entropy in forward and backward; these kernels are memory-bound
    (O(1) FLOP per byte), so their time is B / HBM bandwidth.  β (bytes per logit element,
    forward + backward) is LOSS_BYTES_PER_LOGIT[kind]: 6 fused, 48 PyTorch eager on fp32
    logits, 52 Megatron's unfused vocabulary-parallel kernel, 18 PyTorch eager on the 16-bit
    logits (counts above); 76 for PyTorch's kernel on a vocabulary shard (vocab_parallel: DTensor's
    loss_parallel handlers, TORCH_VOCAB_PARALLEL_BYTES_PER_LOGIT).  For a small
    model with a large vocabulary this is several per cent of the step: Llama 3.2 1B
    (h = 2048, V = 128,256) reads/writes 52 · 128,256 ≈ 6.7 MB per token unfused against
    ≈ 7.4 GFLOP per token of GEMMs.

    Args:
      tokens: T, tokens whose logits this rank computes (count), ``[...]``.
      vocab_shard: V_shard, vocabulary entries per rank (count), ``[...]``.
      kind: int code into LOSS_KERNELS, ``[...]``.
      vocab_parallel: bool, ``[...]`` (default False): the logits are a vocabulary shard (tp > 1).

    Returns:
      bytes, ``[...]``.

    Worked example: T = 4096, V_shard = 131,072, megatron: 4096 · 131,072 · 52 = 2.79e10 B
    (≈ 9.4 ms at 2.97 TB/s).
    """
    return _per_logit(tokens, vocab_shard, kind, LOSS_BYTES_PER_LOGIT, vocab_parallel,
                      TORCH_VOCAB_PARALLEL_BYTES_PER_LOGIT)


def chinchilla(compute_flop: Array, *, tokens_per_param: float = 20.0,
               flop_per_param_token: float = 6.0) -> Chinchilla:
    """Chinchilla compute-optimal allocation: D* = r·P*, C = 6·P*·D* so P* = sqrt(C / (6 r)).

    With r = 20 tokens/parameter this is P* = sqrt(C / 120).

    Args:
      compute_flop: C, training budget in FLOP, ``[...]``; valid domain C >= 0
        (negative values are treated as 0).
      tokens_per_param: r, compute-optimal tokens per parameter (Hoffmann 2022: ~20).
      flop_per_param_token: the 6 of C = 6PD.

    Returns:
      Chinchilla(optimal_params [params], optimal_tokens [tokens]), each ``[...]``.

    Source: seed 002 wall 11 and seed 004 ("P* = sqrt(C/120)"); Hoffmann et al. (2022).

    Worked example (seed 002 wall 11): C = 9.72e23 FLOP gives
    P* = sqrt(9.72e23 / 120) = 9.0e10 (90B) and D* = 20 · 90e9 = 1.8e12 tokens.
    (The seed states the budget as "$10M"; 9.72e23 FLOP is the C its own
    90B / 1.8T answer implies, i.e. ~9.7e16 FLOP per dollar.)
    """
    c, r, f = nonneg(compute_flop, tokens_per_param, flop_per_param_token, broadcast=False)
    # P* = sqrt(C) / sqrt(f·r), D* = sqrt(C·r) / sqrt(f): r -> 0 gives P* -> UNBOUNDED, D* -> 0
    p = safe_div(safe_sqrt(c), safe_sqrt(f * r), fill=UNBOUNDED)
    return Chinchilla(optimal_params=p, optimal_tokens=safe_div(safe_sqrt(c * r), safe_sqrt(f), fill=UNBOUNDED))


def tokens_per_param(n_tokens: Array, n_params: Array) -> Array:
    """Training tokens per parameter, D / P (compare with the Chinchilla ~20).

    Args:
      n_tokens: D, tokens, ``[...]``.
      n_params: P, parameters, ``[...]``; P <= 0 returns 0.

    Returns:
      D / P, tokens per parameter (dimensionless), ``[...]``.

    Source: seed 003 section 4 (tokens-per-parameter check); Hoffmann et al. (2022).

    Worked example: Llama-3-70B on 15e12 tokens: 15e12 / 70e9 = 214 tokens/param
    (about 10.7x over the Chinchilla ratio of 20).
    """
    n_tokens, n_params = nonneg(n_tokens, n_params, broadcast=False)
    return safe_div(n_tokens, n_params, fill=UNBOUNDED)


def flop_for_budget(budget_usd: Array, usd_per_device_s: Array, peak_flop_per_s: Array,
                    mfu_frac: Array) -> Array:
    """Useful training FLOP a dollar budget buys: C = (budget / price) · peak · MFU.

    Args:
      budget_usd: money to spend, USD, ``[...]``.
      usd_per_device_s: rental price of one accelerator, USD per device-second
        (a $/GPU-hour price divided by 3600), ``[...]``; <= 0 returns 0.
      peak_flop_per_s: peak FLOP/s of one accelerator, ``[...]``.
      mfu_frac: model FLOP utilization (0-1), ``[...]``.

    Returns:
      C, FLOP, ``[...]``.

    Source: seed 003 section 4 (budget = GPUs · peak · time · MFU).

    Worked example: $10M at $2.40/GPU-hour on H100 (989e12 FLOP/s) at MFU 0.4:
    device-seconds = 1e7 / (2.40/3600) = 1.5e10 s, C = 1.5e10 · 989e12 · 0.4 = 5.93e24 FLOP.
    """
    (budget_usd, usd_per_device_s, peak_flop_per_s, mfu_frac) = nonneg(
        budget_usd, usd_per_device_s, peak_flop_per_s, mfu_frac, broadcast=False)
    return safe_div(budget_usd, usd_per_device_s, fill=UNBOUNDED) * peak_flop_per_s * mfu_frac


# --------------------------------------------------------------------------- wall 12

class Reasoning(NamedTuple):
    """Cost of one reasoning query. Shapes ``[...]``."""

    time_s: Array    # wall-clock time of the query, s
    flop: Array      # inference FLOP spent on generated reasoning tokens
    n_tokens: Array  # generated reasoning tokens


def reasoning(n_steps: Array, step_time_s: Array, n_params: Array, *,
              tokens_per_step: float = 50.0, ttft_s: Array = 0.0) -> Reasoning:
    """Inference-time (chain-of-thought) compute: T = TTFT + K · T_step, F = K · t · 2P.

    Args:
      n_steps: K, reasoning steps, ``[...]``.
      step_time_s: T_step, time to generate one step, s (typically
        tokens_per_step x inter-token latency), ``[...]``.
      n_params: P, parameters active per token (for an MoE: the active ones), ``[...]``.
      tokens_per_step: t, generated tokens per step (mlsysim's heuristic
        default is 50; real chains range 10-1000+).
      ttft_s: prefill time before the first step, s (default 0).

    Returns:
      Reasoning(time_s [s], flop [FLOP], n_tokens [tokens]), each ``[...]``.
      FLOP counts 2 FLOP per active parameter per generated token (decode;
      attention over the context is not included).

    Source: seed 002 wall 12 ("Time = Steps x Time_per_Step"); Wei et al. (2022)
    chain-of-thought; Snell et al. (2024) test-time compute.

    Worked example: K = 8 steps of 50 tokens at 20 ms/token (T_step = 1 s) on a
    70e9-parameter model: time 8 s, 400 tokens, F = 400 · 2 · 70e9 = 5.6e13 FLOP.
    """
    (n_steps, step_time_s, n_params, tokens_per_step, ttft_s) = nonneg(
        n_steps, step_time_s, n_params, tokens_per_step, ttft_s, broadcast=False)
    n_steps, step_time_s, n_params = (jnp.asarray(x) for x in (n_steps, step_time_s, n_params))
    n_tokens = n_steps * tokens_per_step
    return Reasoning(time_s=ttft_s + n_steps * step_time_s,
                     flop=n_tokens * 2.0 * n_params,
                     n_tokens=n_tokens)


# --------------------------------------------------------------------------- wall 13

class Compression(NamedTuple):
    """Result of compressing a model. Shapes ``[...]``."""

    ratio: Array                # storage compression ratio (>= 1 when shrinking)
    size_bytes: Array           # compressed weight bytes
    speedup: Array              # inference speed-up factor (1 = none)
    accuracy_delta_frac: Array  # signed accuracy change, fraction (-0.005 = -0.5 points); HEURISTIC


def quantization_loss_frac(bits: Array, *, loss_8bit_frac: float = 0.005,
                           loss_4bit_frac: float = 0.025) -> Array:
    """Heuristic accuracy loss of weights at ``bits`` relative to 16-bit (fraction, >= 0).

    HEURISTIC, not a law. Form: L(b) = A · (exp(λ · max(16 - b, 0)) - 1), i.e. 0 at
    16 bits and above, growing exponentially as bits drop. A and λ are fitted in
    closed form through the two anchors L(8) = loss_8bit_frac and
    L(4) = loss_4bit_frac (with x = exp(4λ), r = L4/L8 > 1:
    x = ((r-1) + sqrt((r-1)^2 + 4(r-1))) / 2, A = L8 / (x^2 - 1)).

    Anchors: the Gholami et al. (2021) survey medians that mlsysim's defaults
    use (INT8 PTQ -0.5 points, INT4 GPTQ -2.5 points). With these, 2 bits gives
    ~5.5 points (mlsysim uses a flat -5% below 4 bits). For FP8 pass
    loss_8bit_frac=0.002 (mlsysim's FP8 value).

    Args:
      bits: bit width, ``[...]``.
      loss_8bit_frac, loss_4bit_frac: the two anchors (fractions, L4 > L8 > 0).

    Returns:
      L(bits), fraction, ``[...]``.

    Source: Gholami et al. (2021) survey medians via mlsysim ``defaults.py``
    (QUANT_ACCURACY_DELTA_INT8 / _INT4 / _FP8); the exponential form is ours.

    Worked example: L(16) = 0, L(8) = 0.005, L(4) = 0.025, L(2) ≈ 0.055.
    """
    [bits] = nonneg(bits, broadcast=False)
    r = loss_4bit_frac / loss_8bit_frac
    x = 0.5 * ((r - 1.0) + jnp.sqrt((r - 1.0) ** 2 + 4.0 * (r - 1.0)))
    lam = jnp.log(x) / 4.0
    a = loss_8bit_frac / (x * x - 1.0)
    return a * jnp.expm1(lam * jnp.maximum(16.0 - bits, 0.0))


def quantization(n_params: Array, bits_from: Array, bits_to: Array, *,
                 memory_bound_frac: Array = 1.0, hw_compute_speedup: Array = 1.0,
                 loss_8bit_frac: float = 0.005, loss_4bit_frac: float = 0.025) -> Compression:
    """Quantize weights from ``bits_from`` to ``bits_to`` bits.

    ratio r = b_from / b_to;  size = P · b_to / 8;
    speedup = 1 / (f / r + (1 - f) / min(s_hw, r))   (Amdahl blend of the two regimes);
    accuracy_delta = L(b_from) - L(b_to)   (see :func:`quantization_loss_frac`; HEURISTIC).

    The memory-bound share f of the run time (weight streaming: decode, small
    batch) speeds up by the full byte ratio r; the compute-bound share speeds
    up only as far as the hardware has a faster low-precision path, s_hw =
    peak(b_to) / peak(b_from) (1 when there is none), capped at r. f = 1 and
    f = 0 reproduce mlsysim's two roofline branches.

    Args:
      n_params: P, parameters, ``[...]``.
      bits_from: original bit width (e.g. 32 or 16), ``[...]``.
      bits_to: target bit width (e.g. 8 or 4), ``[...]``; must be > 0.
      memory_bound_frac: f, fraction of inference time that is memory-bound (0-1).
        Default 1 (LLM decode is weight-bandwidth bound).
      hw_compute_speedup: s_hw, low-precision peak over original-precision peak
        (e.g. H100 fp8/fp16 = 2). Default 1 (no faster path).
      loss_8bit_frac, loss_4bit_frac: accuracy anchors of the heuristic.

    Returns:
      Compression(ratio, size_bytes [bytes], speedup, accuracy_delta_frac), ``[...]``.

    Source: seed 002 wall 13 ("Compression = 32/bits"); Gholami et al. (2021);
    mlsysim CompressionModel (FP32 baseline there; here the baseline is an argument).

    Worked example: 8e9 parameters FP16 -> INT4, decode (f = 1): r = 4,
    size = 8e9 · 4 / 8 = 4e9 bytes, speedup 4, accuracy delta -0.025.
    FP32 -> INT8 (seed 002): r = 32/8 = 4.
    """
    n_params, bits_from, bits_to = nonneg(n_params, bits_from, bits_to, broadcast=False)
    ratio = safe_div(bits_from, bits_to, fill=UNBOUNDED)
    gain_compute = jnp.minimum(hw_compute_speedup, ratio)
    f = memory_bound_frac
    speedup = safe_div(1.0, safe_div(f, ratio, fill=UNBOUNDED) + safe_div(1.0 - f, gain_compute, fill=UNBOUNDED),
                       fill=UNBOUNDED)
    delta = (quantization_loss_frac(bits_from, loss_8bit_frac=loss_8bit_frac, loss_4bit_frac=loss_4bit_frac)
             - quantization_loss_frac(bits_to, loss_8bit_frac=loss_8bit_frac, loss_4bit_frac=loss_4bit_frac))
    return Compression(ratio=ratio, size_bytes=n_params * bits_to / 8.0,
                       speedup=speedup, accuracy_delta_frac=delta)


def pruning(n_params: Array, sparsity: Array, structured_code: Array, *,
            bytes_per_param: Array = 2.0, nm_speedup: float = 2.0, max_sparsity: float = 0.99,
            mild_loss_frac: float = 0.001, knee_sparsity: float = 0.5,
            steep_coef: float = 0.01, steep_exp: float = 2.0) -> Compression:
    """Prune a fraction ``sparsity`` of the weights.

    ratio = 1 / (1 - s)  for every pattern (storage shrinks; index/metadata
    overhead ignored);  size = P · bytes_per_param / ratio;
    speedup = 1 (unstructured: dense GEMM on a GPU skips nothing),
              ratio (structured: whole rows/channels removed),
              min(ratio, 2) (N:M 2:4 on Ampere+ sparse tensor cores, 2x at s = 0.5,
              no further gain past the 2:4 pattern);
    accuracy_delta = -( mild · min(s, s_k)/s_k + c · max(exp(k s) - exp(k s_k), 0) ).

    The accuracy term is a HEURISTIC, not a law: a continuous version of
    mlsysim's step rule (-0.1 % up to the 50 % knee, then -c·exp(k s), from
    Blalock et al. 2020: degradation accelerates past ~50 % sparsity).
    mlsysim's rule jumps from -0.1 % to -2.7 % at s = 0.5; this one rises
    linearly to -0.1 % at the knee and then exponentially, with no jump
    (at s = 0.9 it gives -3.4 % where mlsysim gives -6.0 %).

    Args:
      n_params: P, parameters, ``[...]``.
      sparsity: s, fraction of weights removed, ``[...]``; clipped to [0, max_sparsity].
      structured_code: 0 unstructured, 1 structured, 2 N:M (2:4) (see
        ``STRUCTURE_CODES``); int or integer-valued float, ``[...]``.
      bytes_per_param: bytes per stored weight before pruning (default 2, FP16/BF16).
      nm_speedup: hardware speed-up cap of the N:M pattern (2 for 2:4).
      max_sparsity: clip for s, so the ratio stays finite (0.99 -> 100x, mlsysim's cap).
      mild_loss_frac, knee_sparsity, steep_coef, steep_exp: heuristic constants
        (mlsysim defaults: 0.001, 0.5, 0.01, 2.0).

    Returns:
      Compression(ratio, size_bytes [bytes], speedup, accuracy_delta_frac), ``[...]``.

    Source: seed 002 wall 13 ("1/(1-sparsity)"; unstructured pruning gives zero
    GEMM speed-up); Han et al. (2015); Blalock et al. (2020); NVIDIA Ampere (2020).

    Worked example: 8e9 params FP16 at s = 0.5: ratio 2, 8e9 bytes;
    speedup 1 / 2 / 2 for codes 0 / 1 / 2; accuracy delta -0.001.
    """
    n_params, sparsity, code = nonneg(n_params, sparsity, structured_code, broadcast=False)
    s = jnp.clip(sparsity, 0.0, max_sparsity)
    ratio = 1.0 / (1.0 - s)
    code = jnp.round(code)
    speedup = jnp.where(code == 1, ratio, jnp.where(code == 2, jnp.minimum(ratio, nm_speedup), 1.0))
    speedup = nan_where(jnp.isnan(code), speedup)
    mild = mild_loss_frac * jnp.minimum(s, knee_sparsity) / knee_sparsity
    steep = steep_coef * jnp.maximum(jnp.exp(steep_exp * s) - jnp.exp(steep_exp * knee_sparsity), 0.0)
    return Compression(ratio=ratio, size_bytes=n_params * bytes_per_param / ratio,
                       speedup=speedup, accuracy_delta_frac=-(mild + steep))
