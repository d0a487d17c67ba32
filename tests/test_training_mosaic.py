"""Recomputation FLOPs of whole-block activation checkpointing (issue 12, helper MOSAIC2).

Checkpointing wraps the transformer blocks, never the LM head, so full recomputation re-runs the blocks'
forward, 2·T·(P_active - V·h) FLOP, not 2·T·P_active: llm-foundry MPTForCausalLM.activation_checkpointing_fn
returns isinstance(module, MPTBlock) (llmfoundry/models/mpt/modeling_mpt.py at 300cc5c and b2a43a1, the
commits of the MPT benchmark tables); Megatron-LM recomputes its TransformerLayers, torchtitan wraps each
TransformerBlock, MaxText remats the decoder layer.

Reference value by hand, batched == scalar, jax.grad vs finite differences; one jitted scenario.
"""
import jax
import jax.numpy as jnp
import numpy as np
import training_rows

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.catalog import load_catalog
from mlsys_opt.scenarios import training_parts as tparts
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY as EFF
from mlsys_opt.scenarios.parts import gather

CAT = load_catalog()
T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
RC = S.schema.RECOMPUTE


def cfg(**kw):
    """llm-foundry's A100-40GB MPT-7B shape as a catalog Llama-2-7B: 32 GPUs, FSDP, 18 x 2048 tokens per GPU (16-bit)."""
    return training_rows.row("a100_40gb", "llama2_7b", "ib_hdr", **{
        **dict(precision=PRECISIONS.index("fp16"), tp=1, pp=1, efficiency=0.5, n_accelerators=32, ep=1,
               microbatches=0, virtual_stages=1, global_batch=576, seq_len=2048, recompute=RC.index("full"),
               zero_stage=3, overlap=0.5, micro_batch_size=18), **kw})


def _params(rows):
    return S.params_from_dict("training", {k: np.asarray([r[k] for r in rows]) for k in rows[0]})


def _setup(p):
    c = gather(p, T64, EFF)
    return c, tparts.setup(p, c, EFF, T64.model.vocab_size[jnp.asarray(p.model, jnp.int32)])


def test_full_recompute_reruns_the_blocks_not_the_lm_head():
    rows = [cfg(recompute=RC.index(r)) for r in ("none", "full")]
    c, s = _setup(_params(rows))
    m = CAT.index("models", "llama2_7b")
    p_act, vocab, h = (float(np.asarray(x)[m]) for x in (T64.model.n_active_params, T64.model.vocab_size,
                                                         T64.model.hidden_dim))
    assert (vocab, h) == (32000.0, 4096.0)
    tokens, n = 576.0 * 2048.0, 32.0
    # by hand: one more forward of the blocks, 2·T·(P - V·h)/N (Llama-2-7B: V·h = 131,072,000 of 6.74e9);
    # the recomputed FlashAttention forward is the attention kernel's own share (attn_flop_gpu)
    # EMBED (issue 12): Llama 2 is untied, its input embedding (V·h more) a gather: the blocks are P - 2·V·h
    blocks = 2.0 * tokens * (p_act - 2.0 * 32000.0 * 4096.0) / n
    flop, attn = np.asarray(s.flop_gpu), np.asarray(s.attn_flop_gpu)
    np.testing.assert_allclose((flop[1] - attn[1]) - (flop[0] - attn[0]), blocks, rtol=1e-12)
    # the head's forward (2·T·V·h/N, 2 % of Llama-2-7B's forward) is what the old count charged on top
    assert 2.0 * tokens * 32000.0 * 4096.0 / n / blocks > 0.019


def test_batched_equals_scalar_and_recompute_kinds():
    rows = [cfg(recompute=RC.index(r)) for r in ("none", "full", "full_dce", "selective")]
    o, _ = TRAIN(training_rows.stack(rows, 8), T64)     # padded: the [8] program other training tests use
    step = np.asarray(o.step_time_s)
    for i, r in enumerate(rows):
        one, _ = TRAIN(training_rows.stack([r], 8), T64)
        assert float(np.asarray(one.step_time_s)[0]) == step[i]
    assert step[0] < step[2] < step[1]            # none < full_dce (no down-projection) < full
    assert np.all(np.isfinite(step))


def test_grad_of_recompute_flops_matches_finite_differences():
    """d(flop_gpu)/d(global_batch) with full recomputation = (6·(P - E) + 2·(P - E - V·h))·s/N + attention (E: the
    untied input embedding, V·h for Llama 2), checked by FD."""
    base = _params([cfg()])

    def flop(gb, scale):
        p = base._replace(global_batch=jnp.reshape(gb, (1,)))
        c = gather(p, T64, EFF)
        s = tparts.setup(p, c, EFF._replace(recompute_flop_scale=scale),
                         T64.model.vocab_size[jnp.asarray(p.model, jnp.int32)])
        return s.flop_gpu[0] - s.attn_flop_gpu[0]

    g_gb, g_scale = jax.grad(flop, argnums=(0, 1))(576.0, 1.0)
    eps = 1e-3
    fd_gb = (flop(576.0 + eps, 1.0) - flop(576.0 - eps, 1.0)) / (2 * eps)
    fd_scale = (flop(576.0, 1.0 + eps) - flop(576.0, 1.0 - eps)) / (2 * eps)
    np.testing.assert_allclose(float(g_gb), float(fd_gb), rtol=1e-7)
    np.testing.assert_allclose(float(g_scale), float(fd_scale), rtol=1e-7)
    m = CAT.index("models", "llama2_7b")
    p_act = float(np.asarray(T64.model.n_active_params)[m])
    # the recomputed forward, per unit of recompute_flop_scale: 2·T·(P - V·h)/N, less the untied input
    # embedding's V·h (EMBED, issue 12: a gather, not a GEMM; Llama 2 is untied), also out of the 6·P
    vh = 32000.0 * 4096.0
    np.testing.assert_allclose(float(g_scale), 2.0 * 576.0 * 2048.0 * (p_act - 2.0 * vh) / 32.0,
                               rtol=1e-12)
    np.testing.assert_allclose(float(g_gb), 2048.0 * (6.0 * (p_act - vh) + 2.0 * (p_act - 2.0 * vh)) / 32.0,
                               rtol=1e-12)
