"""The loss over the vocabulary as a memory-bound kernel (issue 12, `loss_kernel`).

The softmax cross entropy reads and writes the [tokens, V/tp] logits several times in forward and
backward (walls.algorithm.cross_entropy_bytes: 6 B per logit fused, 48 B PyTorch on fp32 logits, 52 B
Megatron's unfused vocab_parallel_cross_entropy); the training scenario adds B / HBM bandwidth to
the LM-head stage's compute.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_training_physics import T64, cfg, idx, run, stack
from training_rows import check_batched_equals_scalar, check_step_time_grad

from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
from mlsys_opt.scenarios.parts import gather
from mlsys_opt.scenarios.schema import TRAINING_PARAMS
from mlsys_opt.walls import algorithm

FUSED, TORCH, MEGATRON = (TRAINING_PARAMS["loss_kernel"].choices.index(k) for k in ("fused", "torch", "megatron"))
# one H100 running Llama 3 8B (V = 128,256): no DP, TP or PP, so the step is the compute alone
ONE = dict(model=idx("models", "llama3_8b"), tp=1, pp=1, n_accelerators=1, global_batch=4, seq_len=4096,
           micro_batch_size=1, zero_stage=0, recompute=1, overlap=0.0)


def test_cross_entropy_bytes_reference_batched_and_grad():
    """4096 tokens x 131,072 vocabulary entries: 2.79e10 B unfused (Megatron), 6 B per logit fused,
    48 B PyTorch; linear, so d/dT = V·β and d/dV = T·β exactly; a batch equals its rows."""
    assert algorithm.LOSS_KERNELS == TRAINING_PARAMS["loss_kernel"].choices
    t, v = 4096.0, 131072.0
    assert float(algorithm.cross_entropy_bytes(t, v, MEGATRON)) == pytest.approx(2.7917287424e10, rel=1e-12)
    assert float(algorithm.cross_entropy_bytes(t, v, FUSED)) == t * v * 6.0
    assert float(algorithm.cross_entropy_bytes(t, v, TORCH)) == t * v * 48.0
    tb, vb = jnp.asarray([1.0, 4096.0, 8192.0]), jnp.asarray([50368.0, 131072.0, 16032.0])
    kb = jnp.asarray([FUSED, MEGATRON, TORCH])
    batched = np.asarray(algorithm.cross_entropy_bytes(tb, vb, kb))
    for i in range(3):
        assert batched[i] == float(algorithm.cross_entropy_bytes(tb[i], vb[i], kb[i]))
    g = jax.grad(lambda x: algorithm.cross_entropy_bytes(x[0], x[1], MEGATRON))(jnp.asarray([t, v]))
    h = 1e-3
    fd = [(float(algorithm.cross_entropy_bytes(t + h, v, MEGATRON)) - float(algorithm.cross_entropy_bytes(t - h, v, MEGATRON))) / (2 * h),
          (float(algorithm.cross_entropy_bytes(t, v + h, MEGATRON)) - float(algorithm.cross_entropy_bytes(t, v - h, MEGATRON))) / (2 * h)]
    np.testing.assert_allclose(np.asarray(g), [v * 52.0, t * 52.0], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-6)


def test_loss_kernel_adds_its_bytes_over_hbm_to_the_step():
    """Hand-computed: one GPU, 4 sequences x 4096 tokens, V = 128,256, tp = 1: the step grows by
    tokens · V · (β - 6) / mem_bw over the fused kernel, and nothing else moves."""
    rows = [cfg(**ONE, loss_kernel=k) for k in (FUSED, TORCH, MEGATRON)]
    o, _ = run(rows)
    c = gather(stack(rows[:1]), T64, DEFAULT_EFFICIENCY)
    mem_bw = float(np.asarray(c.mem_bw)[0])
    tokens, vocab = 4.0 * 4096.0, 128256.0
    assert float(np.asarray(T64.model.vocab_size)[idx("models", "llama3_8b")]) == vocab
    step = o["step_time_s"]
    for k, beta in ((1, 48.0), (2, 52.0)):
        assert step[k] - step[0] == pytest.approx(tokens * vocab * (beta - 6.0) / mem_bw, rel=1e-9)
    # ~1.7 % of an 8B step on one H100 for the unfused kernel: small for 8B, large for a 1B model
    assert 0.005 < (step[2] - step[0]) / step[0] < 0.05
    assert o["mfu"][2] < o["mfu"][0]


def test_loss_off_the_critical_stage_costs_nothing():
    """stage_balance = on with a middle stage binding (Llama 3 405B, pp 16: the head is 0.66 of a layer):
    the LM-head stage is not the slowest, so the loss kernel does not change the step."""
    big = dict(model=idx("models", "llama3_405b"), tp=8, pp=16, n_accelerators=16384, global_batch=2048,
               micro_batch_size=1, virtual_stages=8, zero_stage=2, stage_balance=1)
    o, _ = run([cfg(**big, loss_kernel=FUSED), cfg(**big, loss_kernel=MEGATRON),
                cfg(**dict(big, stage_balance=0), loss_kernel=FUSED),
                cfg(**dict(big, stage_balance=0), loss_kernel=MEGATRON)])
    assert o["step_time_s"][1] == o["step_time_s"][0]
    assert o["step_time_s"][3] > o["step_time_s"][2]


def test_loss_kernel_batched_equals_scalar_and_grad():
    rows = [cfg(**ONE, loss_kernel=MEGATRON), cfg(loss_kernel=TORCH), cfg(**dict(ONE, tp=2, n_accelerators=2),
                                                                          loss_kernel=MEGATRON)]
    check_batched_equals_scalar(rows, run)
    # straggler_factor off its domain edge (1): central differences straddle no floor there
    check_step_time_grad(cfg(**ONE, loss_kernel=MEGATRON, straggler_factor=1.05), ("efficiency", "straggler_factor"),
                         T64)


def test_published_rows_map_the_loss_kernel_their_code_ran():
    """Data rule: Megatron-LM defaults (the 2024 scaling study, the 2021 Table 1 rows through cases.toml)
    run the unfused vocab_parallel_cross_entropy; torchtitan's Dec-2024 rows the eager F.cross_entropy over
    fp32 logits (9dec370: its torch.compile commented out); the June-2025 rows compile it (default fused).
    The 2024 Megatron-Core PP rows ran interleaved (the README's PP comm overlap needs it), V = the smallest
    divisor >= 2 of the layers per stage."""
    from mlsys_opt.calibration import dataset
    from mlsys_opt.calibration.rows import build
    rows = dataset("all").rows
    kernel = {r.id: r.setup.get("loss_kernel") for r in rows if r.setup}
    assert {k for i, k in kernel.items() if i.startswith("mcore24_")} == {"megatron"}
    assert {k for i, k in kernel.items() if i.startswith("titan24_")} == {"torch"}
    assert {k for i, k in kernel.items() if i.startswith(("titan25_", "mosaic_"))} == {None}
    for r in rows:
        if r.id.startswith("mcore24_") and int(r.setup["pp"]) > 1:
            per = int(r.setup["model"]["layers"]) // int(r.setup["pp"])
            assert r.setup["virtual_stages"] == min(d for d in range(2, per + 1) if per % d == 0), r.id
    plan = build([r for r in rows if r.id.startswith("megatron21_t1_1.7B")])
    p = plan.batch.params["training"]
    assert int(np.asarray(p.loss_kernel)[0]) == MEGATRON


def test_small_model_large_vocabulary_pays_most():
    """Llama 3.2 1B (h 2048, V 128,256, catalog entry from the HF config): the unfused loss is ~9 % of a
    one-GPU step against ~2 % for Llama 3 8B: 52 B per logit against ~2.5 GFLOP per token of GEMMs."""
    one = dict(ONE, model=idx("models", "llama3_2_1b"))
    o, _ = run([cfg(**one, loss_kernel=FUSED), cfg(**one, loss_kernel=MEGATRON),
                cfg(**ONE, loss_kernel=FUSED), cfg(**ONE, loss_kernel=MEGATRON)])
    s = o["step_time_s"]
    small, big = (s[1] - s[0]) / s[0], (s[3] - s[2]) / s[2]
    assert 0.05 < small < 0.2 and small > 3 * big
