"""The training step's breakdown (scenarios.training_breakdown): its terms sum to the scenario's step time,
each term is the scenario's own (hand-checked where it is simple), and a batch equals its rows alone."""
from __future__ import annotations

import numpy as np
import pytest

from mlsys_opt import scenarios as S
from mlsys_opt.scenarios import schema
from mlsys_opt.scenarios.training_breakdown import PARTS, TrainingBreakdown, breakdown, format_breakdown
from training_rows import CAT, row, stack

T = CAT.tables()
PAD = 8
FSDP = schema.TRAINING_PARAMS["zero_stage"]
ALL_GATHER = schema.TRAINING_PARAMS["cp_comm_type"].choices.index("all_gather")

ROWS = [
    # one GPU: compute + optimizer step only
    row("h100_sxm", "llama3_8b", "ib_ndr", n_accelerators=1, global_batch=8, micro_batch_size=2, seq_len=4096),
    # 3D: tp 8, pp 4 (bubble, PP sends, TP), dp 4
    row("h100_sxm", "llama3_70b", "ib_ndr", n_accelerators=128, tp=8, pp=4, global_batch=256, micro_batch_size=1,
        seq_len=8192, recompute=schema.RECOMPUTE.index("full")),
    # FSDP over 64 GPUs, a 10 % straggler
    row("h100_sxm", "llama3_8b", "ib_ndr", n_accelerators=64, zero_stage=3, global_batch=128, micro_batch_size=2,
        seq_len=8192, straggler_factor=1.1),
    # context parallelism (PyTorch all-gather ring)
    row("h100_sxm", "llama3_8b", "ib_ndr", n_accelerators=8, cp=4, global_batch=2, micro_batch_size=1,
        seq_len=131072, cp_comm_type=ALL_GATHER, recompute=schema.RECOMPUTE.index("full")),
    # MoE with expert parallelism, micro-batch size chosen by the scenario
    row("h100_sxm", "mixtral_8x7b", "ib_ndr", n_accelerators=64, tp=2, ep=8, global_batch=256, seq_len=4096,
        micro_batch_size=0),
]


def _run(rows):
    p = stack(rows, PAD)
    bd = breakdown(p, T)
    out, _ = S.training(p, T)
    n = len(rows)
    return ({k: np.asarray(v)[:n] for k, v in bd._asdict().items()},
            {k: np.asarray(v)[:n] for k, v in out._asdict().items()})


def test_the_terms_sum_to_the_scenarios_step_time():
    bd, out = _run(ROWS)
    np.testing.assert_allclose(bd["step_s"], out["step_time_s"], rtol=1e-6)
    np.testing.assert_allclose(bd["micro_batch_seqs"], out["micro_batch_seqs"], rtol=1e-6)
    total = sum(bd[f] for f, _ in PARTS)
    np.testing.assert_allclose(total, bd["step_s"], rtol=1e-5)
    kernels = bd["gemm_s"] + bd["lm_head_s"] + bd["attention_s"] + bd["elementwise_s"]
    np.testing.assert_allclose(kernels, bd["compute_s"], rtol=1e-5)
    for f in TrainingBreakdown._fields:
        assert np.all(np.isfinite(bd[f])), f
        assert np.all(bd[f] >= -1e-6 * bd["step_s"]), f


def test_each_term_appears_where_the_configuration_has_it():
    bd, _ = _run(ROWS)
    one, three_d, fsdp, cp, moe = range(len(ROWS))
    # one GPU: no communication, no bubble
    for f in ("bubble_s", "tp_s", "cp_s", "ep_s", "pp_s", "dp_exposed_s", "dp_total_s", "straggler_s"):
        assert bd[f][one] == 0.0, f
    assert bd["optimizer_s"][one] > 0
    # pipeline: a bubble of (pp - 1)/M of the stage's compute and exposed per-micro-batch comm (training_comm)
    m = bd["n_microbatches"][three_d]
    assert m == 256 / 4
    per_mb = bd["compute_s"][three_d] + bd["tp_s"][three_d]
    assert bd["bubble_s"][three_d] == pytest.approx(per_mb * 3 / m, rel=1e-5)
    assert bd["pp_s"][three_d] > 0 and bd["tp_s"][three_d] > 0
    # straggler: 10 % of the healthy step
    healthy = bd["step_s"][fsdp] - bd["straggler_s"][fsdp]
    assert bd["straggler_s"][fsdp] == pytest.approx(0.1 * healthy, rel=1e-5)
    assert 0 < bd["dp_exposed_s"][fsdp] <= bd["dp_total_s"][fsdp]
    assert bd["cp_s"][cp] > 0 and bd["attention_s"][cp] > bd["gemm_s"][cp]     # 131k tokens: attention dominates
    assert bd["ep_s"][moe] > 0 and bd["micro_batch_seqs"][moe] >= 1


def test_the_attention_share_at_a_long_sequence_is_its_flop_time():
    """cp row: attention_s is the attention FLOPs at the part's FlashAttention rate (kernel_times), so
    doubling the sequence at fixed tokens per rank (cp × 2) doubles it."""
    r2 = dict(ROWS[3], cp=8, seq_len=262144, n_accelerators=16, global_batch=2)
    bd, _ = _run([ROWS[3], r2])
    assert bd["attention_s"][1] / bd["attention_s"][0] == pytest.approx(2.0, rel=1e-3)
    assert bd["gemm_s"][1] == pytest.approx(bd["gemm_s"][0], rel=1e-4)   # the dispatch share moves


def test_batched_equals_scalar():
    bd, _ = _run(ROWS)
    for i, r in enumerate(ROWS):
        alone, _ = _run([r])
        for f in TrainingBreakdown._fields:
            np.testing.assert_allclose(bd[f][i], alone[f][0], rtol=1e-6, err_msg=f)


def test_format_names_the_parts_and_the_dp_share():
    p = stack(ROWS, PAD)
    bd = breakdown(p, T)
    text = format_breakdown(bd, 2)
    assert text.split(" = ")[0].endswith(" s") and "GEMMs" in text and "DP exposed" in text and "straggler" in text
    assert "% exposed)" in text
    assert "CP" in format_breakdown(bd, 3)
