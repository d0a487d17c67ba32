"""torchtitan's float8 as it runs (issue 12, torchtitan rows): dynamic tensorwise scaling reads every cast
GEMM operand once more for its amax (walls.parallel.low_precision_cast_bytes amax_pass, the training
parameter fp8_scaling).

Reference values hand-computed from torchao's own roofline byte count (torchao/testing/float8/
roofline_utils.py, tensorwise input / grad_output: amax kernel 2 B + cast kernel 2 B read, 2 x 1 B
written), batched == scalar, jax.grad vs finite differences, the scenario's step-time difference against
the hand-computed HBM time, and the published-row mapping.  One jitted scenario for the module.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import training_rows

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.calibration import TRAINING_RUNS_PATH, to_settings
from mlsys_opt.catalog import load_catalog
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
from mlsys_opt.scenarios.parts import gather
from mlsys_opt.scenarios.schema import TRAINING_PARAMS
from mlsys_opt.walls import parallel

CAT = load_catalog()
T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
DYNAMIC = TRAINING_PARAMS["fp8_scaling"].choices.index("dynamic")
PAD = 8


def cfg(**kw):
    """One H100 (96 GB, 500 W) running Llama 3.1 8B, one 8,192-token sequence per step, fp8 GEMMs,
    per-op SAC (torchtitan Table 1's block, on a single GPU so no collective enters the step)."""
    return training_rows.row("h100_96gb_500w", "llama3_8b", "eth_400g", **{
        **dict(precision=PRECISIONS.index("fp8"), n_accelerators=1, tp=1, pp=1, cp=1, global_batch=1,
               micro_batch_size=1, seq_len=8192, recompute=TRAINING_PARAMS["recompute"].choices.index("op"),
               zero_stage=0, overlap=1.0), **kw})


def stack(rows):
    return training_rows.stack(rows, PAD)


# --------------------------------------------------------------------------- the wall
def test_cast_bytes_reference_values():
    # Llama-3-8B block (h 4096, GQA 1/4, SwiGLU 3.5 h), 16,384 tokens, fp8: count = 6.5 + 10.5 = 17 operands·h
    delayed = float(parallel.low_precision_cast_bytes(16384.0, 4096.0, 0.25, 3.5, 1.0))
    dynamic = float(parallel.low_precision_cast_bytes(16384.0, 4096.0, 0.25, 3.5, 1.0, 0.0, 1.0))
    assert delayed == pytest.approx(16384 * 4096 * 4 * 17)          # 4.56e9 B: 2 read + 2 x 1 written
    assert dynamic == pytest.approx(16384 * 4096 * 6 * 17)          # 6.85e9 B: + 2 B amax read
    # full recomputation casts the forward inputs again: count = 6.5·2 + 10.5 = 23.5
    assert float(parallel.low_precision_cast_bytes(16384.0, 4096.0, 0.25, 3.5, 1.0, 1.0, 1.0)) == pytest.approx(
        16384 * 4096 * 6 * 23.5)
    # 16-bit GEMMs cast nothing, with either scaling
    assert float(parallel.low_precision_cast_bytes(16384.0, 4096.0, 0.25, 3.5, 2.0, 0.0, 1.0)) == 0.0


def test_cast_bytes_batched_equals_scalar():
    tokens = np.array([1.0, 2048.0, 16384.0, 5.0e4])
    amax = np.array([0.0, 1.0, 1.0, 0.5])
    e = np.array([1.0, 0.5, 1.0, 2.0])
    full = np.array([0.0, 1.0, 0.0, 1.0])
    batched = np.asarray(parallel.low_precision_cast_bytes(tokens, 4096.0, 0.25, 3.5, e, full, amax))
    scalar = [float(parallel.low_precision_cast_bytes(t, 4096.0, 0.25, 3.5, ei, f, a))
              for t, ei, f, a in zip(tokens, e, full, amax)]
    np.testing.assert_allclose(batched, scalar, rtol=1e-12)


def test_cast_bytes_grad_matches_finite_differences():
    def f(x):
        tokens, amax = x[0], x[1]
        return parallel.low_precision_cast_bytes(tokens, 4096.0, 0.25, 3.5, 1.0, 0.0, amax)

    x0 = jnp.asarray([16384.0, 0.5], jnp.float64)
    g = np.asarray(jax.grad(f)(x0))
    for i, hstep in enumerate((1.0, 1e-3)):
        dx = np.zeros(2)
        dx[i] = hstep
        fd = (float(f(x0 + dx)) - float(f(x0 - dx))) / (2 * hstep)
        assert g[i] == pytest.approx(fd, rel=1e-8)
    # d bytes / d amax_pass = tokens·h·2·count
    assert g[1] == pytest.approx(16384 * 4096 * 2 * 17)


# --------------------------------------------------------------------------- the scenario
def test_dynamic_scaling_adds_the_amax_read_to_the_step():
    rows = [cfg(), cfg(fp8_scaling=DYNAMIC), cfg(precision=PRECISIONS.index("fp16")),
            cfg(precision=PRECISIONS.index("fp16"), fp8_scaling=DYNAMIC)]
    p = stack(rows)
    out, _ = TRAIN(p, T64)
    t = np.asarray(out.step_time_s)
    # hand count: 32 layers x 8,192 tokens x h 4096 x 2 B x 17 operands, at the part's achieved HBM rate
    mem_bw = float(np.asarray(gather(p, T64, DEFAULT_EFFICIENCY).mem_bw)[0])
    expected = 32 * 8192 * 4096 * 2 * 17 / mem_bw
    assert 0.01 < expected < 0.05
    assert t[1] - t[0] == pytest.approx(expected, rel=1e-9)
    assert t[3] == t[2]                       # 16-bit: nothing is cast, the scaling changes nothing


def test_torchtitan_fp8_rows_use_dynamic_scaling():
    rows = json.loads(TRAINING_RUNS_PATH.read_text())["rows"]
    titan = [r for r in rows if r.get("source_key") == "torchtitan_2024_2025"]
    assert len(titan) == 26
    for r in titan:
        settings = to_settings("training", r["setup"], r["id"]).settings
        want = "dynamic" if r["setup"]["precision"] == "fp8" else None
        assert settings.get("fp8_scaling") == want, r["id"]
        if want:
            assert any("roofline_utils" in a for a in r["assumptions"]), r["id"]
    # the other sources that scale each tensor from its own amax: Ai2's OLMo-core (torchao Float8Config defaults,
    # read at e27ba74) and the Megatron-Bridge FP8-CS presets (Transformer Engine Float8CurrentScaling: Together
    # AI's B200 runs, Megatron-Bridge's own *_FP8_CS_V2 rows, MLPerf v5.1's Llama 3.1 8B FP8_RECIPE="tensorwise");
    # Transformer Engine's default (and AMD's TE rows), the MXFP8 presets (per-block scale inside the cast) and
    # NeMo 24.x's are delayed
    others = [r for r in rows if r not in titan]
    dynamic = {r["id"] for r in others if (r.get("setup") or {}).get("fp8_scaling", "delayed") != "delayed"}
    olmo_fp8 = {r["id"] for r in others if r.get("source_key") == "olmo_core_2024" and r["setup"]["precision"] == "fp8"}
    te_cs = {r["id"] for r in others if r["setup"]["precision"] == "fp8" and (
        r.get("source_key") == "together_dgxc_2026"
        or (r.get("source_key") == "megatron_bridge_2604" and "mxfp8" not in r["id"])
        or r["id"].startswith("mlperf_nv_v51_llama8b")
        or r.get("source_key") == "nemo_perf_2504"     # NeMo 25.04 FP8 per-tensor current scaling
        or r["id"] in ("mlperf_oracle_v51_llama8b_b200_n64", "mlperf_uflorida_v51_llama8b_b200_n256",
                       "mlperf_uflorida_v51_llama405b_b200_n256"))}
    assert dynamic == olmo_fp8 | te_cs and len(olmo_fp8) == 4 and len(te_cs) == 23
    assert all(any("torchao" in a for a in r["assumptions"]) for r in others if r["id"] in olmo_fp8)
    assert all((r.get("setup") or {}).get("fp8_scaling") == "dynamic" for r in others if r["id"] in olmo_fp8)


def test_torchtitan_pipeline_rows_gather_once_per_step():
    """FSDP2 with pipeline parallelism in torchtitan (reshard_after_forward = False; PyTorch pipelining syncs
    gradients on the last backward only): one all-gather and one reduce-scatter per step = the model's zero2,
    not zero3's per-micro-batch gathers.  Rows without pipelining keep FSDP (zero3)."""
    rows = json.loads(TRAINING_RUNS_PATH.read_text())["rows"]
    titan = [r for r in rows if r.get("source_key") == "torchtitan_2024_2025"]
    for r in titan:
        zs = to_settings("training", r["setup"], r["id"]).settings["zero_stage"]
        pipelined = int(r["setup"].get("pp") or 1) > 1
        assert zs == (2 if pipelined else 3), r["id"]
        if pipelined:
            assert any("reshard_after_forward = False" in a for a in r["assumptions"]), r["id"]
    assert sum(int(r["setup"].get("pp") or 1) > 1 for r in titan) == 6
