"""DeepSpeed's PipelineEngine (DSPIPE, issue 12): walls.deepspeed_pipe and training parameter pipeline_engine.

DeepSpeed 0.5-0.6 (Megatron-DeepSpeed: BLOOM, MT-NLG, GLM-130B) blocks on a step's receive then send (4
transfers of meta + 1/t share per micro-batch, schedule.py / p2p.py), all-gathers 3 PartitionedTensors per
micro-batch, all-reduces the tied embedding gradient between the first and last stage and reduces the
gradients after the flush (pipe/engine.py); with bf16 its BF16Optimizer all-reduces fp32 gradients and
all-gathers bf16 parameters.  Hand references, the scenario wiring, the setup-key rule, batched == scalar,
jax.grad vs central differences.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from training_rows import CAT, breakdown, check_batched_equals_scalar, check_step_time_grad, evaluate, row

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt.calibration.setup import to_settings
from mlsys_opt.errors import MlsysOptError
from mlsys_opt.scenarios.schema import RECOMPUTE, TRAINING_PARAMS
from mlsys_opt.walls import deepspeed_pipe as D
from mlsys_opt.walls import parallel

T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
PAD = 8
ENGINES = TRAINING_PARAMS["pipeline_engine"].choices
MEG, DS, DS_BF16 = (ENGINES.index(x) for x in ("megatron", "deepspeed", "deepspeed_bf16"))


def test_hand_references():
    # BLOOM: m = 2·2048·14336·2 B / 4, M = 128, α = 10 µs, β = 6.25e9 B/s, all-gather 0.4 ms
    m = 2 * 2048 * 14336 * 2 / 4
    assert m == pytest.approx(29.36e6, rel=1e-3)
    assert float(D.p2p_time_s(29.36e6, 128, 10e-6, 6.25e9, 0.4e-3)) == pytest.approx(
        128 * (4 * (2 * 10e-6 + 29.36e6 / 6.25e9) + 3 * 0.4e-3), rel=1e-12)
    assert float(D.p2p_time_s(29.36e6, 128, 10e-6, 6.25e9, 0.4e-3)) == pytest.approx(2.5690112, rel=1e-9)
    # tied embedding: 250,880 x 14,336 / 4 fp32 elements, 2-rank ring = B/β + 2α
    assert float(D.tied_grad_allreduce_s(250880, 14336, 4, 4, 6.25e9, 10e-6)) == pytest.approx(0.5754785088, rel=1e-9)
    # BF16Optimizer: AR(4e9 B) two-level over 2 x 4 + flat-ring AG(2e9 B), α = 0
    ar = 2 * (0.5 * 4e9 / 240e9) + 2 * (0.75 * 2e9 / 6.25e9)
    ag = 7 / 8 * 2e9 * max(0.5 / 240e9, 0.5 / 6.25e9)
    assert float(D.bf16_optimizer_dp_s(4e9, 2e9, 8, 2, 240e9, 0.0, 6.25e9, 0.0, 240e9)) == pytest.approx(
        ar + ag, rel=1e-12)
    assert ar + ag == pytest.approx(0.6366667, rel=1e-6)
    # dp = 1: nothing to reduce
    assert float(D.bf16_optimizer_dp_s(4e9, 2e9, 1, 1, 240e9, 1e-6, 6.25e9, 1e-5, 240e9)) == 0.0


def test_wall_functions_batched_float32_and_grad():
    args = (np.array([29.36e6, 1e6, 5e7]), np.array([128.0, 8.0, 1.0]), np.array([1e-5, 2e-6, 0.0]),
            np.array([6.25e9, 25e9, 300e9]), np.array([4e-4, 0.0, 1e-3]))
    batched = np.asarray(D.p2p_time_s(*args))
    for i in range(3):
        assert batched[i] == pytest.approx(float(D.p2p_time_s(*(a[i] for a in args))), rel=1e-12)
    f32 = D.tied_grad_allreduce_s(jnp.float32(250880), jnp.float32(14336), jnp.float32(4), jnp.float32(4),
                                  jnp.float32(6.25e9), jnp.float32(1e-5))
    assert f32.dtype == jnp.float32 and bool(jnp.isfinite(f32))
    b32 = D.bf16_optimizer_dp_s(*(jnp.float32(x) for x in (4e9, 2e9, 8, 2, 240e9, 2e-6, 6.25e9, 1e-5, 240e9)))
    assert b32.dtype == jnp.float32
    # jax.grad vs central differences (bytes, bandwidths)
    for fn, x0, rest in ((lambda x: D.p2p_time_s(x[0], 128.0, 1e-5, x[1], 4e-4), [29.36e6, 6.25e9], None),
                         (lambda x: D.tied_grad_allreduce_s(250880.0, 14336.0, 4.0, 4.0, x[1], x[0]),
                          [1e-5, 6.25e9], None),
                         (lambda x: D.bf16_optimizer_dp_s(x[0], x[1], 8.0, 2.0, 240e9, 2e-6, 6.25e9, 1e-5, 240e9),
                          [4e9, 2e9], None)):
        x0 = jnp.asarray(x0)
        g = np.asarray(jax.grad(lambda x: jnp.log(fn(x)))(x0))
        for i in range(len(x0)):
            h = 1e-6 * float(x0[i])
            fd = (float(jnp.log(fn(x0.at[i].add(h)))) - float(jnp.log(fn(x0.at[i].add(-h))))) / (2 * h)
            assert g[i] == pytest.approx(fd, rel=1e-5)


def bloomish(**kw) -> dict:
    """BLOOM-176B shape on 384 A100-80GB: TP4 x PP12 x DP8, 2 x 2048 tokens per micro-batch, full recompute."""
    d = row("a100_80gb", "bloom_176b", "eth_100g", n_accelerators=384, tp=4, pp=12, global_batch=2048,
            micro_batch_size=2, seq_len=2048, recompute=RECOMPUTE.index("full"), zero_stage=1, overlap=0.5,
            attention=TRAINING_PARAMS["attention"].choices.index("eager"),
            sequence_parallel=TRAINING_PARAMS["sequence_parallel"].choices.index("off"))
    d.update(kw)
    return d


CASES = [bloomish(), bloomish(pipeline_engine=DS), bloomish(pipeline_engine=DS_BF16),
         bloomish(pipeline_engine=DS, pp=1, n_accelerators=32, global_batch=256)]


def parts(rows):
    """Setup and Comm of the rows (the row_parts breakdown), float64."""
    p, c, s, _, _, cm, mb = breakdown(rows, PAD, T64)
    return p, c, s, mb, cm


def test_scenario_wiring():
    p, c, s, mb, cm = parts(CASES)
    n = len(CASES)
    t_pp, t_dp, t_exp = (np.asarray(x)[:n] for x in (cm.t_pp_s, cm.t_dp_s, cm.t_dp_exposed_s))
    # megatron: DP partly hidden (overlap 0.5); deepspeed: reduced after the flush, all exposed
    assert t_exp[0] < t_dp[0] and t_exp[1] == pytest.approx(t_dp[1], rel=1e-12)
    # p2p: 4 transfers of 2 sends + 3 TP all-gathers per micro-batch
    act = 2 * 2048 * 14336 * 2.0
    a_pp, bw_pp = float(c.alpha_out[1]), float(c.bw_out[1])
    gath = float(parallel.reduce_scatter(act, 4.0, c.bw_up_ring[1], c.alpha_up[1]))
    assert float(mb[1]) == pytest.approx(128.0)
    assert t_pp[1] == pytest.approx(128 * (4 * (2 * a_pp + act / 4 / bw_pp) + 3 * gath), rel=1e-12)
    assert t_pp[2] == pytest.approx(t_pp[1], rel=1e-12)
    assert t_pp[1] > 1.9 * t_pp[0]
    # DP: deepspeed adds the tied embedding all-reduce (16-bit), deepspeed_bf16 the fp32 one + fp32 AR + bf16 AG
    tied16 = float(D.tied_grad_allreduce_s(250880, 14336, 4, 2.0, c.bw_out[1], c.alpha_out[1]))
    tied32 = float(D.tied_grad_allreduce_s(250880, 14336, 4, 4.0, c.bw_out[1], c.alpha_out[1]))
    assert t_dp[1] - t_dp[0] == pytest.approx(tied16, rel=1e-9)
    sh = float(s.shared_params[2]) / 48.0
    bf16 = float(D.bf16_optimizer_dp_s(sh * float(s.gbytes[2]), sh * float(s.gather_b[2]), 8.0, 2.0, c.bw_up[2],
                                       c.alpha_up[2], c.bw_out[2], c.alpha_out[2], c.bw_up_ring[2]))
    assert t_dp[2] == pytest.approx(bf16 + tied32, rel=1e-9)
    assert t_dp[2] > t_dp[0]
    # pp = 1: no pipeline sends, no tied all-reduce (one stage holds both ends)
    ref, _, _, _, cm1 = parts([bloomish(pp=1, n_accelerators=32, global_batch=256)])
    assert t_pp[3] == 0.0
    assert t_dp[3] == pytest.approx(float(cm1.t_dp_s[0]), rel=1e-12)


def test_step_time_order_batched_equals_scalar_and_grad():
    def run(rows):
        return evaluate(TRAIN, rows, PAD, T64)

    o, _ = run(CASES[:3])
    assert o["step_time_s"][0] < o["step_time_s"][1] < o["step_time_s"][2]
    check_batched_equals_scalar(CASES, run)
    check_step_time_grad(CASES[2], ["efficiency", "overlap", "tp_overlap"], T64)


def test_setup_rule_and_rows_opt_in():
    assert to_settings("training", {"pipeline_engine": "deepspeed"}).settings == {"pipeline_engine": "deepspeed"}
    got = to_settings("training", {"pipeline_engine": "deepspeed", "precision": "bf16"}).settings
    assert got["pipeline_engine"] == "deepspeed_bf16"
    assert to_settings("training", {"pipeline_engine": "megatron", "precision": "bf16"}).settings[
        "pipeline_engine"] == "megatron"
    with pytest.raises(MlsysOptError, match="pipeline engine"):
        to_settings("training", {"pipeline_engine": "pipedream"})
    from mlsys_opt.calibration.runs import load_runs
    want = {"bloom176b_384xa100_gb2048": "deepspeed_bf16", "glm130b_768xa100_40gb_gb4224": "deepspeed",
            "glm130b_768xa100_40gb_gb6144": "deepspeed"}
    rows = {r.id: r for r in load_runs("training") if r.id in want}
    assert set(rows) == set(want)
    for i, e in want.items():
        assert to_settings("training", dict(rows[i].setup)).settings["pipeline_engine"] == e, i
