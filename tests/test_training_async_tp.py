"""PyTorch tensor parallelism (issue 12, torchtitan rows): DTensor sequence parallelism's layout copies and
async TP's decomposed collectives (walls.tensor_parallel, the training parameter tp_comm).

Reference values hand-computed from the equations on the walls (their sources: torch
distributed/_symmetric_memory, torch _functional_collectives, torchtitan PR #437), batched == scalar,
jax.grad vs central differences (walls and the scenario's log step time), the scenario's step-time
difference against the hand-computed copy time, default tp_comm leaving every output bit-identical where
it cannot apply, and the published-row mapping.  One jitted scenario for the module.
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
from mlsys_opt.walls import tensor_parallel as tpw

CAT = load_catalog()
T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
MODES = TRAINING_PARAMS["tp_comm"].choices
DEFAULT, DTENSOR, ASYNC, ASYNC_AG = (MODES.index(m) for m in ("default", "dtensor", "async", "async_ag"))
RC = TRAINING_PARAMS["recompute"].choices
PAD = 8

# Llama-3-70B block, 16 x 8192 tokens on one TP=8 rank group (torchtitan's 70B rows)
T70, H70, A70, KV70, F70 = 16 * 8192.0, 8192.0, 8192.0, 1024.0, 28672.0


def cfg(**kw):
    """torchtitan's 70B 2D configuration (FSDP 32 x TP 8 on 256 H100 96 GB, local batch 16, full AC, bf16)."""
    return training_rows.row("h100_96gb_500w", "llama3_70b", "eth_400g", **{
        "precision": PRECISIONS.index("fp16"), "n_accelerators": 256, "tp": 8, "pp": 1, "cp": 1,
        "global_batch": 512, "micro_batch_size": 16, "seq_len": 8192, "recompute": RC.index("full"),
        "zero_stage": 3, "overlap": 1.0, **kw})


def run(rows):
    return training_rows.evaluate(TRAIN, rows, PAD, T64)


# --------------------------------------------------------------------------- the walls
def test_block_gemm_reference_values():
    # unit = 2·T·h/(tp·R) per unit of width: 2 x 131072 x 8192 / (8 x 535e12) = 0.50176 µs
    g = tpw.block_gemm_s(T70, H70, A70, KV70, F70, 8.0, 535e12)
    unit = 2.0 * T70 * H70 / (8.0 * 535e12)
    assert float(g.o_s) == pytest.approx(unit * 8192.0) == pytest.approx(4.1104e-3, rel=1e-4)
    assert float(g.qkv_s) == pytest.approx(unit * (8192 + 2048))               # 5.138 ms
    assert float(g.up_s) == pytest.approx(unit * 2 * 28672)                    # 28.77 ms
    assert float(g.down_s) == pytest.approx(unit * 28672)                      # 14.39 ms


def test_decomposed_and_fixed_reference_values():
    # max(comm - (tp-1)/tp·gemm, 0) + fixed: 5.11 - 7/8 x 4.11 = 1.51375 ms; a long GEMM hides it all
    assert float(tpw.decomposed_exposed_s(5.11e-3, 4.11e-3, 8.0)) == pytest.approx(1.51375e-3)
    assert float(tpw.decomposed_exposed_s(5.11e-3, 28.8e-3, 8.0, 0.2e-3)) == pytest.approx(0.2e-3)
    assert float(tpw.decomposed_exposed_s(5.11e-3, 0.0, 1.0, 0.2e-3)) == 0.0         # no TP, no collective
    # shard copy 2·(A/tp)/BW + 3α; partial-sum reduction (tp + 1)·(R/tp)/BW + 2·tp·α
    ag, rs = tpw.symm_mem_fixed_s(2.147e9, 2.147e9, 8.0, 2.0e12, 2e-6)
    assert float(ag) == pytest.approx(2 * 2.147e9 / 8 / 2.0e12 + 6e-6)               # 0.274 ms
    assert float(rs) == pytest.approx(9 * 2.147e9 / 8 / 2.0e12 + 32e-6)              # 1.240 ms
    assert [float(x) for x in tpw.symm_mem_fixed_s(2.147e9, 2.147e9, 1.0, 2.0e12, 2e-6)] == [0.0, 0.0]


def test_async_layer_reference_value():
    # the docstring's worked example: Llama-3-70B, bf16, ag = rs = 5.11 ms, full recomputation (F = 2): the
    # forward's and re-run forward's collectives fused, the backward's 2 all-gathers (+ their 2.15 ms cat copies)
    # and 2 reduce-scatters whole
    g = tpw.block_gemm_s(T70, H70, A70, KV70, F70, 8.0, 535e12)
    fa, fr, cat = 0.268e-3, 1.208e-3, 2.15e-3

    def x(comm, window, fixed):
        return max(comm - 7 / 8 * window, 0.0) + fixed

    c = 5.11e-3
    fwd = x(c, float(g.qkv_s), fa) + x(c, float(g.o_s), fr) + x(c, float(g.up_s), fa) + x(c, float(g.down_s), fr)
    bwd = 2 * (c + cat) + 2 * c
    got = float(tpw.async_tp_layer_s(c, c, g, 8.0, fa, fr, forward_passes=2.0, ag_copy_s=cat))
    assert got == pytest.approx(2 * fwd + bwd) == pytest.approx(34.90e-3, rel=2e-3)
    assert fwd == pytest.approx(5.08e-3, rel=2e-3)
    assert got < 12 * c + 10 * cat                          # DTensor without overlap: 82.8 ms
    # per-op SAC's two recomputed all-gathers run unfused, with their copies
    op = float(tpw.async_tp_layer_s(c, c, g, 8.0, fa, fr, forward_passes=1.0, op_passes=1.0, ag_copy_s=cat))
    assert op == pytest.approx(fwd + 2 * (c + cat) + bwd)
    # ASYNCTP2, rs_fused = 0 (torchao <= 0.8 float8: only the all-gather -> matmul fusions): the forward's two
    # reduce-scatters whole, each with its cat copy: 2 x [0.882 + 0.268 + 2·(5.11 + 2.15)] + 24.74 = 56.1 ms
    fwd_ag = x(c, float(g.qkv_s), fa) + x(c, float(g.up_s), fa) + 2 * (c + cat)
    ag_only = float(tpw.async_tp_layer_s(c, c, g, 8.0, fa, fr, forward_passes=2.0, ag_copy_s=cat, rs_fused=0.0,
                                         rs_copy_s=cat))
    assert ag_only == pytest.approx(2 * fwd_ag + bwd) == pytest.approx(56.08e-3, rel=2e-3)
    assert got < ag_only < 12 * c + 10 * cat
    # rs_fused is a weight: halfway is the mean of the two
    half = float(tpw.async_tp_layer_s(c, c, g, 8.0, fa, fr, forward_passes=2.0, ag_copy_s=cat, rs_fused=0.5,
                                      rs_copy_s=cat))
    assert half == pytest.approx(0.5 * (got + ag_only))


def test_layout_copy_reference_value():
    # Llama-3-8B, 12 x 8192 tokens, bf16, per-op SAC: 2·N·((2 + 2 + 2)·2 + 2·2) = 32·N bytes = 12.9 GB
    n = 12 * 8192 * 4096.0
    assert float(tpw.dtensor_layout_copy_bytes(n, 2.0, 2.0, 8.0, forward_passes=1.0, op_passes=1.0)) == \
        pytest.approx(32 * n)
    # float8 all-gathers move 1 B; full recomputation: 2·N·((4 + 2)·1 + 4·2) = 28·N
    assert float(tpw.dtensor_layout_copy_bytes(n, 1.0, 2.0, 8.0, forward_passes=2.0)) == pytest.approx(28 * n)
    assert float(tpw.dtensor_layout_copy_bytes(n, 2.0, 2.0, 1.0)) == 0.0


def test_walls_batched_equals_scalar_and_nan_rule():
    comm = np.array([1e-3, 5.11e-3, 2e-3, 0.0])
    gemm = np.array([4e-3, 4.11e-3, 0.5e-3, 1e-3])
    tp = np.array([8.0, 8.0, 2.0, 4.0])
    batched = np.asarray(tpw.async_tp_layer_s(comm, comm / 2, tpw.block_gemm_s(gemm * 1e15, 1.0, 1.0, 0.1, 3.5, tp,
                                                                                1e15), tp, 1e-4, 2e-4))
    for i in range(4):
        one = tpw.async_tp_layer_s(comm[i], comm[i] / 2, tpw.block_gemm_s(gemm[i] * 1e15, 1.0, 1.0, 0.1, 3.5, tp[i],
                                                                          1e15), tp[i], 1e-4, 2e-4)
        assert float(one) == pytest.approx(batched[i], rel=1e-12)
    u = np.array([1.0, 0.0, 0.0, 1.0])
    g4 = tpw.block_gemm_s(gemm * 1e15, 1.0, 1.0, 0.1, 3.5, tp, 1e15)
    batched = np.asarray(tpw.async_tp_layer_s(comm, comm / 2, g4, tp, 1e-4, 2e-4, rs_fused=u, rs_copy_s=comm / 3))
    for i in range(4):
        gi = tpw.block_gemm_s(gemm[i] * 1e15, 1.0, 1.0, 0.1, 3.5, tp[i], 1e15)
        one = tpw.async_tp_layer_s(comm[i], comm[i] / 2, gi, tp[i], 1e-4, 2e-4, rs_fused=u[i], rs_copy_s=comm[i] / 3)
        assert float(one) == pytest.approx(batched[i], rel=1e-12)
    copies = np.asarray(tpw.dtensor_layout_copy_bytes(np.array([1e6, 2e6]), np.array([1.0, 2.0]), 2.0, 8.0))
    assert copies[1] == pytest.approx(float(tpw.dtensor_layout_copy_bytes(2e6, 2.0, 2.0, 8.0)))
    # a negative (impossible) bandwidth, time or count is NaN, never a plausible number
    assert np.isnan(float(tpw.decomposed_exposed_s(-1.0, 1.0, 8.0)))
    assert all(np.isnan(float(x)) for x in tpw.symm_mem_fixed_s(1e9, 1e9, 8.0, -1.0, 0.0))
    assert np.isnan(float(tpw.dtensor_layout_copy_bytes(1e6, 2.0, 2.0, -8.0)))


def test_walls_grad_matches_finite_differences():
    def f(x):
        g = tpw.block_gemm_s(T70, H70, A70, KV70, F70, 8.0, x[2])
        fa, fr = tpw.symm_mem_fixed_s(x[0] * 420e9, x[1] * 420e9, 8.0, x[3], 2e-6)
        return tpw.async_tp_layer_s(x[0], x[1], g, 8.0, fa, fr, forward_passes=2.0)

    x0 = jnp.asarray([5.11e-3, 4.7e-3, 535e12, 2.0e12])    # away from the max() kinks
    grad = np.asarray(jax.grad(f)(x0))
    for i in range(4):
        h = 1e-6 * float(x0[i])
        fd = (float(f(x0.at[i].add(h))) - float(f(x0.at[i].add(-h)))) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-5), i
    # a rate more makes the GEMMs shorter: less hidden, more exposed
    assert grad[2] > 0

    def f_ag(y):                         # ASYNCTP2: the rs_fused weight and the reduce-scatter's cat copy
        g = tpw.block_gemm_s(T70, H70, A70, KV70, F70, 8.0, 535e12)
        return tpw.async_tp_layer_s(y[0], y[0], g, 8.0, 0.27e-3, 1.2e-3, forward_passes=2.0, rs_fused=y[1],
                                    rs_copy_s=y[2])

    y0 = jnp.asarray([5.11e-3, 0.3, 2.15e-3])
    grad = np.asarray(jax.grad(f_ag)(y0))
    for i in range(3):
        h = 1e-6 * float(y0[i])
        fd = (float(f_ag(y0.at[i].add(h))) - float(f_ag(y0.at[i].add(-h)))) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-5), i
    assert grad[1] < 0 and grad[2] == pytest.approx(2 * 2 * (1 - 0.3))   # F·2 copies·(1 - u)


# --------------------------------------------------------------------------- the scenario
def test_default_is_bit_identical_where_torch_tp_cannot_apply():
    # tp = 1 (no TP), sequence parallelism off (DTensor TP without SP all-reduces), a CNN: all three modes equal;
    # and tp_comm left out equals tp_comm = default
    rows = []
    for mode in (DEFAULT, DTENSOR, ASYNC, ASYNC_AG):
        rows += [cfg(tp=1, tp_comm=mode), cfg(sequence_parallel=1, tp_comm=mode),
                 training_rows.row("h100_sxm", "resnet50", "ib_ndr", tp=2, tp_comm=mode)]
    out, _ = run(rows)
    for k in out:
        for i in range(3):
            assert out[k][i] == out[k][i + 3] == out[k][i + 6] == out[k][i + 9], k
    base = {k: v for k, v in cfg().items() if k != "tp_comm"}
    o1 = TRAIN(training_rows.stack([base], PAD), T64)[0]          # tp_comm missing: the schema default
    o2 = TRAIN(training_rows.stack([{**base, "tp_comm": DEFAULT}], PAD), T64)[0]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(o1, o2))


def test_dtensor_step_difference_is_the_layout_copies():
    # bf16: the all-gathers keep 2 B, so dtensor - default = L·copies/mem_bw exactly (pp = 1: no bubble term)
    rows = [cfg(tp_comm=DEFAULT), cfg(tp_comm=DTENSOR), cfg(tp_comm=ASYNC)]
    out, _ = run(rows)
    c = gather(training_rows.stack(rows[:1], 1), T64, DEFAULT_EFFICIENCY)
    n_act = 16 * 8192 * 8192.0
    copies = float(tpw.dtensor_layout_copy_bytes(n_act, 2.0, 2.0, 8.0, forward_passes=2.0))
    assert copies == pytest.approx(2 * n_act * (6 * 2 + 4 * 2))
    expected = 80 * copies / float(np.asarray(c.mem_bw).ravel()[0])
    assert out["step_time_s"][1] - out["step_time_s"][0] == pytest.approx(expected, rel=1e-9)
    assert out["step_time_s"][2] < out["step_time_s"][0] < out["step_time_s"][1]
    assert out["mfu"][2] > out["mfu"][0]


def test_async_float8_gathers_and_scope():
    # float8: dtensor's all-gathers move 1 B (cheaper than default's 2 B despite the copies for this block);
    # async needs one scale-up domain: tp = 16 over two nodes runs DTensor's NCCL path
    fp8 = {"precision": PRECISIONS.index("fp8"), "fp8_scaling": 1}
    rows = [cfg(tp_comm=DEFAULT, **fp8), cfg(tp_comm=DTENSOR, **fp8), cfg(tp_comm=ASYNC, **fp8),
            cfg(tp=16, tp_comm=DTENSOR), cfg(tp=16, tp_comm=ASYNC), cfg(tp_comm=ASYNC_AG, **fp8),
            cfg(tp=16, tp_comm=ASYNC_AG)]
    out, _ = run(rows)
    s = out["step_time_s"]
    assert s[2] < s[0] and s[1] != s[0]
    assert s[3] == s[4] == s[6]
    # async_ag (ASYNCTP2): the forward reduce-scatters unfused, between async and vanilla DTensor
    assert s[2] < s[5] < s[1]
    assert np.all(np.isfinite(s))


def test_scenario_batched_equals_scalar():
    rows = [cfg(tp_comm=m, recompute=RC.index(r), micro_batch_size=b)
            for m, r, b in ((ASYNC, "full", 16), (ASYNC, "op", 4), (DTENSOR, "op", 8), (DTENSOR, "full", 2),
                            (DEFAULT, "full", 16), (ASYNC_AG, "full", 16), (ASYNC_AG, "op", 2))]
    training_rows.check_batched_equals_scalar(rows, run)


def test_scenario_grad_matches_finite_differences():
    g = training_rows.check_step_time_grad(cfg(tp_comm=ASYNC), ["efficiency", "tp_overlap"], T64)
    assert g[0] < 0                      # faster GEMMs: shorter step
    training_rows.check_step_time_grad(cfg(tp_comm=DTENSOR, recompute=RC.index("op")), ["efficiency"], T64)
    training_rows.check_step_time_grad(cfg(tp_comm=ASYNC_AG), ["efficiency", "tp_overlap"], T64)


def test_finite_over_random_configurations():
    # every tp_comm over wide random training configurations (tests/test_scenarios.random_params' ranges)
    rng = np.random.default_rng(7)
    n = 64
    rows = [cfg(tp=float(2 ** rng.integers(0, 5)), seq_len=float(2 ** rng.integers(4, 16)),
                micro_batch_size=float(2 ** rng.integers(0, 5)), recompute=int(rng.integers(0, 5)),
                precision=int(rng.integers(0, len(PRECISIONS))), sequence_parallel=int(rng.integers(0, 2)),
                tp_overlap=float(rng.uniform()), tp_comm=int(rng.integers(0, len(MODES)))) for _ in range(n)]
    out, g = TRAIN(training_rows.stack(rows, n), T64)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in out)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in g)


def test_float32_stays_float32():
    rows = [cfg(tp_comm=m) for m in (DEFAULT, DTENSOR, ASYNC, ASYNC_AG)]
    p32 = jax.tree.map(lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                       training_rows.stack(rows, PAD))
    out = TRAIN(p32, CAT.tables())[0]
    assert out.step_time_s.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out.step_time_s)[:4], run(rows)[0]["step_time_s"], rtol=1e-4)


# --------------------------------------------------------------------------- the published rows
def test_published_rows_map_async_tp():
    assert to_settings("training", {"async_tp": True}).settings["tp_comm"] == "async"
    assert to_settings("training", {"async_tp": False}).settings["tp_comm"] == "dtensor"
    assert to_settings("training", {"async_tp": "async_ag"}).settings["tp_comm"] == "async_ag"
    rows = json.loads(TRAINING_RUNS_PATH.read_text())["rows"]
    pairs = [r for r in rows if r["id"].startswith(("titan25_asynctp", "titan24_t4"))]
    assert len(pairs) == 10
    for r in pairs:
        # Dec 2024 (torchao eab345c, float8): only the all-gather fusions (ASYNCTP2); Jun 2025: both
        want = ("async_ag" if r["id"].startswith("titan24") else "async") if r["id"].endswith(("_async", "_asynctp")) \
            else "dtensor"
        assert to_settings("training", r["setup"]).settings["tp_comm"] == want, r["id"]
    # the Dec-2024 405B tables (Tables 5, 6: "+ Float8 + AsyncTP") ran the same stack
    dec = [r for r in rows if r["id"].startswith(("titan24_t5", "titan24_t6"))]
    assert len(dec) == 6
    assert all(to_settings("training", r["setup"]).settings["tp_comm"] == "async_ag" for r in dec)


def test_async_tp_setup_key_maps_or_names_the_bad_value():
    """The setup key async_tp: true -> async, false -> dtensor, a tp_comm choice by name; anything else is a
    one-line error naming the value and what is allowed (the file reader adds the row and column)."""
    from mlsys_opt.calibration.setup import TRAINING_MAP
    from mlsys_opt.errors import MlsysOptError
    convert = TRAINING_MAP["async_tp"].convert
    assert convert(True, {}) == {"tp_comm": "async"} and convert(False, {}) == {"tp_comm": "dtensor"}
    assert convert("async_ag", {}) == {"tp_comm": "async_ag"}
    with pytest.raises(MlsysOptError, match=r"'bogus' is not async TP \(allowed: true, false or a tp_comm choice: "
                                            r"default, dtensor, async, async_ag\)"):
        convert("bogus", {})
