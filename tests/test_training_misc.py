"""stage_balance = on when the LM head outweighs a transformer layer (issue 12, helper MISC).

Megatron-DeepSpeed's `--pp-partition-method 'type:transformer|embedding'` (BigScience tr11-176B-ml)
counts the tied embedding as a block: ranks 0 and pp-1 hold it + (L+2)/pp - 1 blocks, the others
(L+2)/pp.  The critical stage is a middle one unless the LM head (6·V·h FLOP per token) outweighs a
layer, when the last one is: per-GPU FLOPs max(body·(L+2)/L, body·((L+2)/pp - 1)·pp/L + head·(pp-1))/N
(body = the step's FLOPs spread evenly, which already holds 1/pp of the head on each stage).
"""
import jax.numpy as jnp
import numpy as np
import pytest
from test_training_physics import CAT, T64, cfg, idx, run, stack
from training_rows import check_step_time_grad

from mlsys_opt.scenarios import training_parts as tparts
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
from mlsys_opt.scenarios.parts import gather

BLOOM = dict(model=idx("models", "bloom_176b"), tp=4, pp=12, n_accelerators=384, global_batch=2048, seq_len=2048,
             micro_batch_size=2, recompute=0, zero_stage=1, attention=1, sequence_parallel=1,
             hardware=idx("accelerators", "a100_80gb"))
LLAMA = dict(model=idx("models", "llama3_405b"), tp=8, pp=16, n_accelerators=16384, global_batch=2048,
             micro_batch_size=1, virtual_stages=8, zero_stage=2)


def _setup(rows):
    p = stack(rows)
    c = gather(p, T64, DEFAULT_EFFICIENCY)
    vocab = T64.model.vocab_size[jnp.asarray(p.model, jnp.int32)]
    return tparts.setup(p, c, DEFAULT_EFFICIENCY, vocab), vocab


def test_balanced_critical_stage_reference_values():
    """Hand-computed: BLOOM-176B (70 layers, V 250,880, h 14,336, pp 12, no recomputation): the head is
    6·V·h = 2.16e10 FLOP per token against ~6·2.47e9 = 1.48e10 for a layer, so rank 11 (5 layers +
    head, ~5 % more than a middle rank's 6 layers) is critical; Llama-3-405B (126 layers, pp 16, V 128,256, h 16,384): head 0.66 layer, a middle
    stage (8 layers) is, as before."""
    rows = [cfg(**BLOOM), cfg(**BLOOM, stage_balance=1), cfg(**LLAMA), cfg(**LLAMA, stage_balance=1)]
    s, vocab = _setup(rows)
    f = np.asarray(s.flop_gpu)[:4]
    n = np.asarray(s.n)[:4]
    for k, (L, pp, v, h) in ((0, (70.0, 12.0, 250880.0, 14336.0)), (2, (126.0, 16.0, 128256.0, 16384.0))):
        assert float(np.asarray(vocab)[k]) == v and float(CAT.entry("models", ["bloom_176b", "llama3_405b"][k // 2])
                                                            ["n_layers"]) == L
        tokens = 2048.0 * (2048.0 if k == 0 else 8192.0)
        head = 6.0 * tokens * v * h
        trunk = f[k] * n[k] - head * pp                 # stage_balance = off: the trunk's even share + the head
        middle = trunk * (L + 2.0) / L                   # HFUS: a middle stage runs none of the head
        last = trunk * ((L + 2.0) / pp - 1.0) * pp / L + head * pp
        assert f[k + 1] * n[k + 1] == pytest.approx(max(middle, last), rel=1e-12)
        if k == 0:
            assert last > middle * 1.04                 # BLOOM: the head stage binds, by ~5 %
        else:
            assert middle > last                         # Llama 3: unchanged rule (L + 2)/pp
            assert f[k + 1] * n[k + 1] == pytest.approx(trunk * 128.0 / 126.0, rel=1e-12)


def test_balanced_head_stage_batched_equals_scalar_and_finite():
    rows = [cfg(**BLOOM, stage_balance=1), cfg(**LLAMA, stage_balance=1), cfg(**dict(BLOOM, recompute=2), stage_balance=1),
            cfg(**BLOOM)]
    o, g = run(rows)
    for i, r in enumerate(rows):
        o1, g1 = run([r])
        for k in ("step_time_s", "mfu", "memory_per_accelerator_bytes"):
            assert o1[k][0] == pytest.approx(o[k][i], rel=1e-12), (i, k)
    assert all(np.all(np.isfinite(v)) for v in o.values())
    # balancing never makes the step slower than the unbalanced split with the head on the last stage
    assert o["step_time_s"][0] < o["step_time_s"][3]


def test_grad_through_the_head_stage_vs_finite_differences():
    check_step_time_grad(cfg(**BLOOM, stage_balance=1, overlap=0.6, straggler_factor=1.1),
                         ("overlap", "straggler_factor", "efficiency"), T64)
