"""What a torchtitan step keeps in HBM for the backward: per-op SAC's activations (eager or compiled), FSDP2's root unit.

torchtitan's op-level selective activation checkpointing (`selective_ac_option = 'op'`) wraps each Llama
TransformerBlock in ``checkpoint_wrapper(context_fn=create_selective_checkpoint_contexts(policy))`` whose
policy marks MUST_SAVE the outputs of the ops in ``_save_list`` (aten.mm, the SDPA flash / efficient kernels,
``_c10d_functional.reduce_scatter_tensor``, aten.abs / aten.max) "except every second mm", and
PREFER_RECOMPUTE everything else (torchtitan/parallelisms/parallelize_llama.py ``_save_list`` and
``_apply_ac_to_transformer_block`` at 9dec370, the commit of the Dec-2024 H100 benchmarks).  What stays in HBM
between a block's forward and its backward depends on who executes that policy:

- **eager** (no torch.compile): ``torch.utils.checkpoint``'s ``_CachingTorchDispatchMode`` stores the output of
  *every* MUST_SAVE op as the forward runs it (``storage[func].append(...)`` when the policy is MUST_SAVE),
  whether or not the recomputation will ask for it, and the store lives as long as the block's checkpoint frame,
  i.e. until the block's backward; the autograd-saved tensors themselves are replaced by ``_Holder`` handles
  (non-reentrant checkpoint) and the block input is kept by the frame.
- **compiled** (torchtitan ``apply_compile``: ``torch.compile(block, fullgraph=True)`` after the AC wrap):
  Dynamo traces the checkpoint as a tagged region, the policy becomes each node's ``meta["recompute"]``, and
  AOTAutograd's min-cut partitioner (torch/_functorch/partitioners.py) never recomputes a MUST_SAVE node
  (``should_ban_recomputation``) and always recomputes a PREFER_RECOMPUTE one (``must_recompute``), but it saves
  only forward values the *backward graph uses*.  A MUST_SAVE output no backward op reads is not saved.

A block issues its mm in the order wq, wk, wv, wo, w1, w3, w2 (torchtitan/models/llama/model.py at 9dec370:
``xq, xk, xv = self.wq(x), self.wk(x), self.wv(x)``, ``self.wo(output)``, ``self.w2(F.silu(self.w1(x)) *
self.w3(x))``), so the MUST_SAVE mm are the 1st, 3rd, 5th and 7th: wq, wv, w1, w2.  Which of them the backward
reads: q (wq) -> RoPE -> SDPA's query (flash backward reads q, k, v, out, logsumexp); v (wv) -> SDPA's value;
w1 -> SiLU's backward; SDPA's out -> its own backward and wo's weight gradient; with TP + SP, wo's
reduce-scatter output -> h = x + attention, the input of ffn_norm, whose backward reads it (recomputing h from
it spares re-running wo).  w2's output (and, with TP + SP, its reduce-scatter) feeds only the residual sum
``out = h + ffn``, whose backward reads nothing: eager keeps it, compiled does not.  Float8 linears (torchao
Float8Linear, ``torch.mm`` on Float8Tensors) reach the policy as aten.mm too (a dispatch mode runs before the
tensor subclass's ``__torch_dispatch__``), so the same mm are saved in fp8 runs; their abs outputs are
MUST_SAVE as well, which eager would keep (not counted: no published eager float8 run) and the compiled
backward does not read (only the amax scalars).

Pure, elementwise, branch-free; elements per token per layer (bytes = 2·elements in 16 bits).
"""
from __future__ import annotations

import jax.numpy as jnp

from mlsys_opt._types import Array
from mlsys_opt.walls._masked import as_float as _f
from mlsys_opt.walls._masked import floor_pos


def op_sac_activation_elements(hidden, q_width, kv_width, ffn, *, tp=1.0, t_sp=1.0, compiled=0.0) -> Array:
    """Elements per token per layer that torchtitan's per-op SAC keeps for the backward (module docstring).

    Eager (``compiled`` = 0): the block input (h/t', kept by the checkpoint frame), the cached MUST_SAVE outputs
    wq (q), wv (kv), SDPA (q; its logsumexp is counted by walls.attention), w1 (ffn), w2 (h: a row-parallel
    partial sum, full width on every rank) and, with sequence parallelism (t' = tp > 1), both reduce-scatter
    outputs (wo's and w2's, h/t' each)::

        eager    = h/t' + (2·q + kv + ffn)/tp + h + [t' > 1]·2·h/t'
        compiled = h/t' + (2·q + kv + ffn)/tp     + [t' > 1]·h/t'

    Compiled (``compiled`` = 1, torch.compile's partitioner): the same less what the backward never reads,
    w2's output and its reduce-scatter.  h = hidden, q = heads·head_dim, kv = kv_heads·head_dim, ffn = MLP
    width (gated MLP; 0 = unknown, counted as 4·h); t' = tp with sequence parallelism else 1 (without it the
    row-parallel outputs are all-reduced, not in the save list).  ``compiled`` is a 0/1 flag (fractions blend).
    Example: Llama-3-8B (h = q = 4096, kv = 1024, ffn = 14336), tp 1: eager 4096 + 9216 + 14336 + 4096 =
    31,744 elements (63.5 KB per token and layer), compiled 27,648 (55.3 KB): 8 KB less per token and layer,
    2^32 B = 4.0 GiB over 32 layers at 2 x 8,192 tokens (torchtitan Table 1: 82.4 GiB eager, 77.0 compiled).
    Units: elements (dimensionless widths), tp / t_sp counts.
    """
    h, q, kv, f, t, tsp, comp = _f(hidden, q_width, kv_width, ffn, tp, t_sp, compiled)
    f = jnp.where(f > 0, f, 4.0 * h)
    t, tsp = floor_pos(t, 1.0), floor_pos(tsp, 1.0)
    reduce_scatter = jnp.where(tsp > 1.0, h / tsp, 0.0)       # one reduce-scatter output (SP), h/t'
    eager = h / tsp + (2.0 * q + kv + f) / t + h + 2.0 * reduce_scatter
    return eager - comp * (h + reduce_scatter)


def op_sac_recompute_fraction(hidden, q_width, kv_width, ffn) -> Array:
    """Share of a Llama block's forward matmul FLOPs that per-op SAC recomputes (dimensionless).

    The recomputed mm are wk, wo and w3 (`op_sac_activation_elements`)::

        f = (h·kv + q·h + h·ffn) / (2·h·q + 2·h·kv + 3·h·ffn)

    Example: Llama-3-8B: (4.19e6 + 1.68e7 + 5.87e7) / (3.36e7 + 8.39e6 + 1.76e8) = 0.365
    (the backward then adds 0.365 of the forward GEMMs: +12 % of 6·P·T).  ffn 0 counts as 4·h.
    """
    h, q, kv, f = _f(hidden, q_width, kv_width, ffn)
    f = jnp.where(f > 0, f, 4.0 * h)
    den = 2.0 * h * q + 2.0 * h * kv + 3.0 * h * f
    return (h * kv + q * h + h * f) / floor_pos(den, 1e-30)


def fsdp2_root_params(vocab, hidden, untied_embedding_params, *, tp=1.0, pp=1.0) -> Array:
    """Parameters per rank of FSDP2's root unit, which torchtitan's step keeps gathered from forward to backward.

    torchtitan 9dec370 ``apply_fsdp`` shards each TransformerBlock, then ``fully_shard(model,
    reshard_after_forward=not pp_enabled)``: the root unit holds what no block owns, the token embedding, the
    final norm and the output projection.  PyTorch FSDP2 at torch 1963fc8 (the benchmarks' commit) overrides the
    root's choice: ``FSDPState._lazy_init`` sets ``post_forward_mesh_info = None`` on the root's parameter group
    ("For the root, do not reshard after forward since for training, the parameters would be freed and
    all-gathered immediately"; torch/distributed/_composable/fsdp/_fsdp_state.py), so the root's unsharded
    parameters stay from its pre-forward to its post-backward, which the final callback runs at the end of the
    backward (the root's inputs, token ids, carry no gradient).  Later releases apply the override only when
    ``reshard_after_forward`` is left unset (``_auto_reshard_after_forward``), so a root sharded with an explicit
    True (KempnerForge @01b461a on torch 2.11) reshards::

        root = (V·h + E + h)/tp           pp = 1 (head, untied embedding E = V·h or 0, final norm)
        root = (E if E > 0 else V·h)/tp   pp > 1 (the first stage's embedding; tied: the shared table)

    TP shards the embedding (RowwiseParallel over the vocabulary) and the output (ColwiseParallel) over tp.
    Example: Llama-3-8B (V 128,256, h 4,096, untied), tp 1: 2·525,336,576 + 4,096 = 1.0507e9 parameters,
    2.10e9 B gathered in bf16 (the blocks: (8.03e9 - 1.05e9)/32 = 2.18e8 each).
    Units: counts (vocab, widths, parameters); tp, pp counts.
    """
    v, h, e, t, p = _f(vocab, hidden, untied_embedding_params, tp, pp)
    t = floor_pos(t, 1.0)
    first_stage = jnp.where(e > 0.0, e, v * h)
    return jnp.where(p > 1.0, first_stage, v * h + e + h) / t


__all__ = ["fsdp2_root_params", "op_sac_activation_elements", "op_sac_recompute_fraction"]
