"""Parallel transformer blocks, and the rows that ran before 2022 (issue 12, helper MAXTEXT).

`parallel_block = on` (PaLM §2 "Parallel Layers"; MaxText's DecoderLayer at e47fa1b / 76bd53b:
next_layer_addition = mlp_lnx + attention_lnx on one normalised input):
(a) reference values: full_dce recomputation also skips the attention output projection,
    2·T·h·(a·d)·L FLOP less per step (hand-computed); the TP collectives halve (one input
    all-gather and one output reduce-scatter shared by attention and MLP); plain full
    recomputation and tp = 1 are unchanged;
(b) batched = scalar; (c) jax.grad vs finite differences with the block on;
(d) the MaxText and PaLM rows map onto it.
Plus: the rows that ran before FlashAttention / Megatron sequence parallelism existed carry eager
attention (and no sequence parallelism); the MT-NLG MFU agrees with its paper's iteration time.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tomllib
from test_training_physics import T64, cfg, idx, run
from training_rows import breakdown, check_batched_equals_scalar, check_step_time_grad

from mlsys_opt import scenarios as S
from mlsys_opt.calibration import runs as R
from mlsys_opt.calibration.rows import CASES_PATH, load_measurements, plan_row
from mlsys_opt.catalog import load_catalog

FULL = S.schema.RECOMPUTE.index("full")
FULL_DCE = S.schema.RECOMPUTE.index("full_dce")
ON = S.schema.ON_OFF.index("on")
SP_ON = S.schema.SEQUENCE_PARALLEL.index("on")


def tpu(**kw):
    """Llama-3-70B shape (h 8192, 64 x 128 heads, 80 layers) on 256 TPU v5p, tp 8, FSDP, one micro-batch."""
    base = dict(hardware=idx("accelerators", "tpu_v5p"), fabric=idx("fabrics", "tpu_ici"), tp=8, pp=1,
                n_accelerators=256, global_batch=256, seq_len=2048, micro_batch_size=8, zero_stage=3,
                recompute=FULL_DCE, sequence_parallel=SP_ON)
    d = cfg(**{**base, **kw})
    for k, spec in S.schema.TRAINING_PARAMS.items():     # every key present in every row (parallel_block off)
        if k not in d:
            d[k] = spec.choices.index(spec.default) if spec.kind == "choice" else spec.default
    return d


def _parts(rows):
    """setup and communication of each config dict (one micro-batch size b, as the scenario evaluates)."""
    _, _, s, _, _, cm, _ = breakdown(rows, len(rows), T64)
    return s, cm


def test_parallel_block_reference_values():
    rows = [tpu(), tpu(parallel_block=ON), tpu(recompute=FULL), tpu(recompute=FULL, parallel_block=ON)]
    s, cm = _parts(rows)
    flop = np.asarray(s.flop_gpu)
    # full_dce: the recomputed forward skips the attention output projection too:
    # 2 · T · h · (a·d) · L / N = 2 · (256 · 2048) · 8192 · (64 · 128) · 80 / 256 FLOP per chip
    want = 2.0 * (256 * 2048) * 8192 * (64 * 128) * 80 / 256
    assert want == pytest.approx(2.199e13, rel=1e-3)
    assert flop[0] - flop[1] == pytest.approx(want, rel=1e-12)
    assert flop[2] == pytest.approx(flop[3], rel=1e-12)             # plain full recomputation: no DCE
    t_tp = np.asarray(cm.t_tp_s)
    assert t_tp[0] > 0 and t_tp[1] == pytest.approx(0.5 * t_tp[0], rel=1e-12)
    assert t_tp[3] == pytest.approx(0.5 * t_tp[2], rel=1e-12)
    # the model FLOPs (MFU numerator) do not change, and without TP only the recompute FLOPs differ
    np.testing.assert_allclose(np.asarray(s.model_flop)[1], np.asarray(s.model_flop)[0], rtol=1e-12)
    s1, cm1 = _parts([tpu(tp=1, micro_batch_size=1), tpu(tp=1, micro_batch_size=1, parallel_block=ON)])
    assert np.asarray(cm1.t_tp_s).tolist() == [0.0, 0.0]


def test_parallel_block_scenario_batched_equals_scalar():
    rows = [tpu(), tpu(parallel_block=ON), tpu(recompute=FULL, parallel_block=ON),
            tpu(parallel_block=ON, hardware=idx("accelerators", "tpu_v5e"), tp=16, micro_batch_size=16,
                n_accelerators=256)]
    ob, gb = check_batched_equals_scalar(rows, run)
    assert ob["step_time_s"][1] < ob["step_time_s"][0]          # fewer FLOPs and half the TP collectives
    assert ob["mfu"][1] > ob["mfu"][0]


GRAD = ("efficiency", "tp_overlap", "overlap")


def test_parallel_block_grad_matches_finite_differences():
    grad = check_step_time_grad(tpu(parallel_block=ON, tp_overlap=0.3, overlap=0.7), GRAD, T64)
    assert grad[GRAD.index("tp_overlap")] < 0          # hiding TP collectives shortens the step


def test_maxtext_and_palm_rows_use_the_parallel_block():
    mt = [r for r in R.load_runs("training") if r.source_key == "maxtext_tpu_2023"]
    assert len(mt) == 40
    for r in mt:
        assert r.setup["parallel_block"] is True, r.id
        settings = R.plan_setup_row(r).evaluations[0][1]
        assert settings["parallel_block"] == "on", r.id
    palm = next(r for r in load_measurements() if r.id == "palm_540b_6144tpuv4")
    (_, settings), = plan_row(palm).evaluations
    assert settings["parallel_block"] == "on"


PRE_FLASH = ("palm_540b_6144tpuv4", "palm_t3_mtnlg_530b", "palm_t3_gpt3_175b", "palm_t3_gopher_280b")
PRE_SP = ("palm_t3_mtnlg_530b", "palm_t3_gpt3_175b")


def test_pre_2022_rows_run_eager_attention_without_sequence_parallelism():
    """FlashAttention (arXiv 2205.14135) and Megatron sequence parallelism (arXiv 2205.05198) date from
    May 2022, after these runs; the scenario evaluations carry that."""
    with open(CASES_PATH, "rb") as fh:
        cases = tomllib.load(fh)["rows"]
    rows = {r.id: r for r in load_measurements() if r.id in PRE_FLASH}
    assert set(rows) == set(PRE_FLASH)
    for rid in PRE_FLASH:
        assert cases[rid]["set"]["attention"] == "eager", rid
        assert "2205.14135" in cases[rid]["assumptions"], rid
        (_, settings), = plan_row(rows[rid]).evaluations
        assert settings["attention"] == "eager", rid
        assert settings.get("sequence_parallel", "on") == ("off" if rid in PRE_SP else "on"), rid


def test_mtnlg_mfu_agrees_with_its_iteration_time():
    """Smith et al. 2022 Sec. 2.4: 60.1 s per iteration, batch 1920 x 2048, 280 DGX A100 (2240 GPUs)."""
    tokens = 1920 * 2048
    flop_per_token = 6.0 * 530e9 + 12.0 * 105 * 20480 * 2048        # PaLM App. B
    mfu = flop_per_token * tokens / (60.1 * 2240 * 312e12)
    measured = next(r for r in load_measurements() if r.id == "palm_t3_mtnlg_530b").measured["mfu"]
    assert mfu == pytest.approx(measured, abs=2e-3)
    assert mfu == pytest.approx(0.3026, abs=1e-3)


def test_parallel_block_float32_stays_float32_and_finite():
    from mlsys_opt.catalog import load_catalog
    t32 = load_catalog().tables(dtype=jnp.float32)
    rows = [tpu(parallel_block=ON), tpu(parallel_block=ON, recompute=FULL)]
    rows += [rows[0]] * 6                    # 8 rows: the float32 [8] program other training tests use
    ints = S.INT_PARAMS["training"]          # catalog rows and choice codes stay int32
    p = S.params_from_dict("training", {k: np.asarray([r[k] for r in rows], None if k in ints else np.float32)
                                        for k in rows[0]})
    out, _ = jax.jit(S.training)(p, t32)
    assert out.step_time_s.dtype == jnp.float32 and out.mfu.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(out.step_time_s))) and np.all(np.asarray(out.mfu) > 0)


def test_multislice_rows_cross_slices_over_the_data_center_network():
    """Cloud TPU Multislice: ICI inside a slice, the data-center network between slices (Google Cloud TPU
    docs: v5e 2 x 100 Gbps NICs per 8-chip host = 25 Gb/s per chip; v5p 50 Gb/s per chip; a v5p job's
    largest slice is 6,144 chips).  The MaxText multislice rows name the DCN fabric and, on v5p, the slice
    as the node; in the scenario the data-parallel collectives across two slices take longer over DCN than
    the ICI stand-in, and a single slice does not see the scale-out fabric at all."""
    cat = load_catalog()
    f = cat.frames["fabrics"].set_index("name")
    assert f.loc["tpu_dcn_v5e", "bw_bytes_per_s"] == 25e9 / 8 and f.loc["tpu_dcn_v5p", "bw_bytes_per_s"] == 50e9 / 8
    assert (f.loc[["tpu_dcn_v5e", "tpu_dcn_v5p"], "scope"] == "scale_out").all()
    assert cat.entry("accelerators", "tpu_v5p")["accelerators_per_node"] == 6144
    mt = [r for r in R.load_runs("training") if r.source_key == "maxtext_tpu_2023"]
    multi = [r for r in mt if (r.setup.get("slices") or 1) > 1]
    assert len(multi) == 28
    for r in multi:
        gen = r.setup["hardware"].split("_")[-1]
        assert r.setup["fabric"] == f"tpu_dcn_{gen}", r.id
        settings = R.plan_setup_row(r).evaluations[0][1]
        if gen == "v5p":
            assert settings["accelerators_per_node"] == r.setup["n_accelerators"] // r.setup["slices"], r.id
    for r in mt:
        if (r.setup.get("slices") or 1) == 1:
            assert r.setup["fabric"] == "tpu_ici", r.id
    two = dict(n_accelerators=512, global_batch=512, shard_group=256, accelerators_per_node=256, overlap=0.0)
    one = dict(n_accelerators=256, global_batch=256, shard_group=256, accelerators_per_node=256, overlap=0.0)
    dcn, ici = idx("fabrics", "tpu_dcn_v5p"), idx("fabrics", "tpu_ici")
    _, cm = _parts([tpu(**two, fabric=dcn), tpu(**two, fabric=ici), tpu(**one, fabric=dcn), tpu(**one, fabric=ici)])
    t_dp = np.asarray(cm.t_dp_s)
    assert t_dp[0] > 1.5 * t_dp[1] > 0.0
    assert t_dp[2] == t_dp[3] > 0.0
