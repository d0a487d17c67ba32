"""FP8 training keeps the LM head in 16 bits (issue 12).

torchtitan converts every nn.Linear but the output (`module_filter_fn=lambda mod, fqn: fqn != "output"`),
Megatron-Core's output_layer is a ColumnParallelLinear outside Transformer Engine's fp8_autocast, llm-foundry's
MPT calls F.linear on the tied wte, and DeepSeek-V3 (§3.3.1) keeps "the output head" in its original precision.
So the head's 6·T·V·h GEMM FLOPs (s.head_flop_gpu, on the stage that runs them) are timed at the 16-bit peak
at the GEMM efficiency, the rest of the GEMMs at the precision's peak, the attention core as before.

Reference: Llama-3-8B on 8 H100-SXM, pp = 1: the head is 6·T·128,256·4,096/8 FLOP per GPU, and at fp8
(1,979 TFLOP/s dense vs 989 at 16 bits) it takes (1/989e12 − 1/1979e12)/η of the time per FLOP more.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from training_rows import CAT, check_batched_equals_scalar, check_step_time_grad, check_table_grad, evaluate, row, stack

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.scenarios import training_parts as tparts
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY as EFF
from mlsys_opt.scenarios.efficiency import matmul_efficiency
from mlsys_opt.scenarios.training import training_common

T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
PAD = 8
FP8, BF16 = PRECISIONS.index("fp8"), PRECISIONS.index("fp16")    # fp16 = the 16-bit (bf16) column
V8, H8 = 128256, 4096


@jax.jit
def _parts(p, tables):
    c = training_common(p, tables, EFF)
    vocab = tables.model.vocab_size[jnp.asarray(p.model, jnp.int32)]
    return c, tparts.setup(p, c, EFF, vocab)


def _eta(p, c, s, b):
    """(η with the head at 16 bits, η with the head at the row's peak) for micro-batch b."""
    eta_gemm = matmul_efficiency(p.efficiency, b * s.s_loc * c.reuse_per_item, EFF, part=c, tp=s.tp)
    return (tparts._with_attention_kernel(eta_gemm, c, EFF, s),
            tparts._with_attention_kernel(eta_gemm, c, EFF, s._replace(head_flop_gpu=s.head_flop_gpu * 0.0)),
            eta_gemm)


def _run(rows):
    return evaluate(TRAIN, rows, PAD, T64)


def test_llama3_8b_head_flops_and_time_hand_computed():
    kw = dict(tp=1, pp=1, n_accelerators=8, global_batch=64, seq_len=8192, micro_batch_size=1)
    rows = [row("h100_sxm", "llama3_8b", "ib_ndr", precision=FP8, **kw),
            row("h100_sxm", "llama3_8b", "ib_ndr", precision=BF16, **kw)]
    p = stack(rows, PAD)
    c, s = _parts(p, T64)
    tokens = 64 * 8192.0
    head = 6.0 * tokens * V8 * H8 / 8
    np.testing.assert_allclose(np.asarray(s.head_flop_gpu)[:2], [head, head], rtol=1e-12)
    new, old, eta_g = _eta(p, c, s, 1.0)
    peak, p16 = np.asarray(c.peak)[:2], np.asarray(c.peak_16bit)[:2]
    assert peak[0] == pytest.approx(1979e12, rel=1e-3) and p16[0] == pytest.approx(989e12, rel=1e-3)
    flop = np.asarray(s.flop_gpu)[:2]
    t_new, t_old = flop / (peak * np.asarray(new)[:2]), flop / (peak * np.asarray(old)[:2])
    # fp8: the head's FLOPs cost 1/P16 - 1/P more per FLOP at η_gemm
    assert t_new[0] - t_old[0] == pytest.approx(head * (1 / p16[0] - 1 / peak[0]) / float(eta_g[0]), rel=1e-9)
    assert t_new[0] - t_old[0] > 0.0
    # 16 bits: the same rate either way
    assert t_new[1] == pytest.approx(t_old[1], rel=1e-12)


def test_pipeline_stage_and_mtp_shares():
    """pp = 4 without rebalancing: the last stage runs the whole head (6TVh·pp/N); DeepSeek-V3 with a layout
    whose last rank is critical adds one pass per MTP module through the shared head."""
    rows = [row("h100_sxm", "llama3_70b", "ib_ndr", tp=8, pp=4, n_accelerators=512, precision=FP8),
            row("b200", "deepseek_v3", "ib_ndr", tp=1, pp=8, ep=32, n_accelerators=256, precision=FP8,
                last_stage_layers=5)]
    p = stack(rows, PAD)
    c, s = _parts(p, T64)
    gbt = float(rows[0]["global_batch"]) * float(rows[0]["seq_len"])
    vh70 = 128256 * 8192.0
    assert float(s.head_flop_gpu[0]) == pytest.approx(6.0 * gbt * vh70 * 4 / 512, rel=1e-12)
    mtp = float(T64.model.mtp_layers[CAT.index("models", "deepseek_v3")])
    assert mtp == 1.0
    tokens = float(rows[1]["global_batch"]) * float(rows[1]["seq_len"])
    head = 6.0 * tokens * 129280 * 7168.0
    n, pp = 256.0, 8.0
    # head·pp·(1 + mtp)/n on the last rank when it is critical (HFUS: no even share of the head on the stages)
    assert float(s.head_flop_gpu[1]) == pytest.approx(head * pp * (1 + mtp) / n, rel=1e-9)


def test_scenario_batched_equals_scalar_and_grads():
    rows = [row("h100_sxm", "llama3_8b", "ib_ndr", tp=1, pp=1, n_accelerators=8, seq_len=8192, precision=FP8),
            row("h100_sxm", "llama3_70b", "ib_ndr", tp=4, pp=8, n_accelerators=64, precision=FP8, virtual_stages=5),
            row("h100_sxm", "llama3_8b", "ib_ndr", tp=1, pp=1, n_accelerators=8, seq_len=8192),
            row("b200", "deepseek_v3", "ib_ndr", tp=1, pp=8, ep=32, n_accelerators=256, precision=FP8,
                last_stage_layers=5),
            row("a100_80gb", "resnet50", "ib_hdr", n_accelerators=64, global_batch=2048)]
    o, _ = check_batched_equals_scalar(rows, _run)
    # fp8 is still faster than bf16 for the same Llama-3-8B run, by less than the GEMM peaks' ratio
    assert 1.0 < o["step_time_s"][2] / o["step_time_s"][0] < 2.0
    check_step_time_grad(rows[0], ["efficiency"], T64)
    # d log(step) / d (the 16-bit peak of H100-SXM) at fp8: the head and attention now read it (jax.grad vs FD)
    h, col = CAT.index("accelerators", "h100_sxm"), PRECISIONS.index("fp16")

    def with_peak(t, x):
        return t._replace(hw=t.hw._replace(peak_flop_per_s=t.hw.peak_flop_per_s.at[h, col].set(x)))

    assert check_table_grad(rows[0], T64, with_peak, float(T64.hw.peak_flop_per_s[h, col])) < 0
