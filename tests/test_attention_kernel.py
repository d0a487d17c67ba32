"""Attention kernel (ATTNKERNEL, issue 12): training parameter attention_kernel, setup key attention_backend.

attention_kernel = default keeps each part's catalog forward+backward attention curve (FlashAttention-2's
causal H100 series on A100 / H100 / H200, cuDNN's series on B200 / GB200); cudnn selects the part's
cuDNN fused-SDPA curve (catalog achievable.toml attention_cudnn_*: cudnn-frontend df73764, H200, cuDNN
9.19.1, causal, head dim 128, copied to H100; the default curve on parts without one).  Tests: the
catalog reads back the published points; default is bit-identical (never reads the cuDNN table) and
cudnn equals the default kernel on a catalog whose curve is the cuDNN one; batched == scalar;
jax.grad vs central differences (parameters and the table itself).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from training_rows import CAT, check_batched_equals_scalar, check_step_time_grad, evaluate, row

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt.calibration.setup import to_settings
from mlsys_opt.catalog import achievable as A
from mlsys_opt.errors import MlsysOptError
from mlsys_opt.scenarios.schema import RECOMPUTE

T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
PAD = 8
H = {n: CAT.index("accelerators", n) for n in ("h100_sxm", "h100_96gb_500w", "h200", "b200", "gb200", "a100_80gb")}
PEAK16 = 989e12
# cudnn-frontend df73764 results/h200_919_only_cudnn/llama3.1_20260227_034703.csv, bfloat16, top_left (causal),
# batch 1, 64 query / 8 KV heads, head dim 128: (seqlen, fwd ms, bwd ms, fwd TFLOP/s, bwd TFLOP/s) as printed
CSV = [(2048, 0.142, 0.464, 484, 370), (4096, 0.465, 1.450, 591, 474), (8192, 1.708, 5.083, 644, 541),
       (16384, 6.531, 19.002, 673, 579), (32768, 25.566, 75.688, 688, 581)]


def case(hw: str, **kw) -> dict:
    """Llama-3-8B, 8 GPUs, FSDP, 2 x 4096-token sequences per micro-batch, full recomputation."""
    d = row(hw, "llama3_8b", "ib_ndr", n_accelerators=8, tp=1, zero_stage=3, global_batch=16,
            micro_batch_size=2, seq_len=4096, recompute=RECOMPUTE.index("full_dce"), overlap=0.5)
    d.update(kw)
    return d


def run(rows, tables=T64):
    return evaluate(TRAIN, rows, PAD, tables)


CASES = [case(h) for h in ("h200", "h100_sxm", "h100_96gb_500w", "b200", "gb200", "a100_80gb")] + [
    case("h200", seq_len=16384, global_batch=8, micro_batch_size=1),        # 16k: the curve's 0.610
    case("h100_sxm", seq_len=1024, global_batch=64, micro_batch_size=8)]    # below the first published point
HOPPER = np.asarray([True, True, True, False, False, False, True, True])


def with_hw(**fields):
    return T64._replace(hw=T64.hw._replace(**fields))


def test_catalog_reads_back_the_published_cudnn_points():
    # the benchmark's own count: causal F = 4·s²·h·d/2 forward, backward 2.5·F (fwd TFLOP/s = F / t_fwd)
    for s, tf, tb, f, b in CSV:
        flop = 4.0 * s * s * 64 * 128 / 2.0
        assert flop / (tf * 1e-3) / 1e12 == pytest.approx(f, rel=2e-3)
        assert 2.5 * flop / (tb * 1e-3) / 1e12 == pytest.approx(b, rel=3e-3)
    combined = [3.5 * 4.0 * s * s * 64 * 128 / 2.0 / ((tf + tb) * 1e-3) / PEAK16 for s, tf, tb, _, _ in CSV]
    e = A.raw_entry("accelerators", "h200")
    np.testing.assert_allclose(e["attention_cudnn_fwdbwd_causal_eff_fp16_hdim128"], combined, atol=6e-4)
    np.testing.assert_allclose(np.asarray(e["attention_cudnn_fwdbwd_causal_measured_tflops_hdim128"]) * 1e12 / PEAK16,
                               e["attention_cudnn_fwdbwd_causal_eff_fp16_hdim128"], atol=6e-4)
    assert e["attention_cudnn_fwdbwd_causal_provenance"] == "measured"
    # the table on the model grid 512..16k: published points exact, flat below 2k (no point published)
    got = np.asarray(T64.hw.attention_cudnn_fwdbwd_eff[H["h200"]])
    assert A.ATTENTION_SEQLENS == (512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0)
    np.testing.assert_allclose(got, [0.401, 0.401, 0.401, 0.508, 0.573, 0.610], rtol=0, atol=1e-12)
    for n in ("h100_sxm", "h100_96gb_500w"):                 # family:h200 copies (same GH100 compute)
        np.testing.assert_array_equal(np.asarray(T64.hw.attention_cudnn_fwdbwd_eff[H[n]]), got)
        assert A.raw_entry("accelerators", n)["attention_cudnn_fwdbwd_causal_provenance"] == "family:h200"
    for n in ("b200", "gb200", "a100_80gb"):                 # no separate cuDNN series: the default curve
        np.testing.assert_array_equal(np.asarray(T64.hw.attention_cudnn_fwdbwd_eff[H[n]]),
                                      np.asarray(T64.hw.attention_fwdbwd_eff[H[n]]))
    # 4k: cuDNN 9.19 at 502 TFLOP/s vs FlashAttention-2's 294 (the default H200 curve)
    assert float(T64.hw.attention_fwdbwd_eff[H["h200"], 3]) == pytest.approx(0.297)


def test_default_is_bit_identical_and_cudnn_is_the_curve_swap():
    base, gbase = run(CASES)
    # default never reads the cuDNN table: scrambling it changes nothing, bit for bit
    scrambled = with_hw(attention_cudnn_fwdbwd_eff=T64.hw.attention_cudnn_fwdbwd_eff * 0.37)
    o, g = run(CASES, scrambled)
    for k in base:
        np.testing.assert_array_equal(o[k], base[k], err_msg=k)
    for k in gbase:
        np.testing.assert_array_equal(g[k], gbase[k], err_msg=k)
    # cudnn on a catalog whose cuDNN table equals the default curve: bit-identical to default
    same = with_hw(attention_cudnn_fwdbwd_eff=T64.hw.attention_fwdbwd_eff)
    o, _ = run([dict(c, attention_kernel=1) for c in CASES], same)
    for k in base:
        np.testing.assert_array_equal(o[k], base[k], err_msg=k)
    # reference: cudnn == default on a catalog whose default curve IS the cuDNN curve
    cud, _ = run([dict(c, attention_kernel=1) for c in CASES])
    swapped, _ = run(CASES, with_hw(attention_fwdbwd_eff=T64.hw.attention_cudnn_fwdbwd_eff))
    for k in base:
        np.testing.assert_allclose(cud[k], swapped[k], rtol=1e-13, atol=0, err_msg=k)
    # Hopper: cuDNN's faster core shortens the step; parts without a cuDNN series are unchanged
    assert (cud["step_time_s"][HOPPER] < base["step_time_s"][HOPPER]).all()
    np.testing.assert_array_equal(cud["step_time_s"][~HOPPER], base["step_time_s"][~HOPPER])


def test_batched_equals_scalar_and_grad():
    kernels = (1, 0, 1, 1, 0, 1, 1, 0)
    check_batched_equals_scalar([dict(c, attention_kernel=k) for c, k in zip(CASES, kernels)], run)
    grad = check_step_time_grad(dict(CASES[0], attention_kernel=1), ["efficiency", "overlap"], T64)
    assert grad[0] < 0.0          # a faster GEMM rate shortens the step


def test_grad_wrt_the_cudnn_curve_matches_finite_differences():
    """d log(step) / d (the h200 cuDNN curve at 4k): negative with cudnn, exactly 0 with default."""
    h, k = H["h200"], 3                                         # 4096 tokens: the rows' sequence length
    curve = T64.hw.attention_cudnn_fwdbwd_eff

    def loss(x, kern):
        p = S.params_from_dict("training", dict(CASES[0], attention_kernel=kern))
        t = with_hw(attention_cudnn_fwdbwd_eff=curve.at[h, k].set(x))
        return jnp.log(S.training(p, t)[0].step_time_s)

    x0 = float(curve[h, k])
    vg = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    g1 = float(vg(x0, 1)[1])
    eps = 1e-6 * x0
    fd = (float(vg(x0 + eps, 1)[0]) - float(vg(x0 - eps, 1)[0])) / (2 * eps)
    assert g1 < 0.0 and g1 == pytest.approx(fd, rel=1e-4)
    assert float(vg(x0, 0)[1]) == 0.0


def test_setup_key_attention_backend():
    assert to_settings("training", {"attention_backend": "cudnn"}).settings == {"attention_kernel": "cudnn"}
    assert to_settings("training", {"attention_backend": "default"}).settings == {"attention_kernel": "default"}
    with pytest.raises(MlsysOptError, match=r"setup\.attention_backend: 'fa3' is not an attention backend "
                                            r"\(allowed: default, cudnn\)"):
        to_settings("training", {"attention_backend": "fa3"})
    from mlsys_opt.calibration.runs import load_runs
    mapped = {r.id for r in load_runs("training")
              if to_settings("training", dict(r.setup)).settings.get("attention_kernel") == "cudnn"}
    assert {i for i in mapped if i.startswith("kempner26_")} and len(mapped) == 129
    # + Ai2's 8 OLMo-core rows: PyTorch SDPA on the nightly torch 2.6.0.dev20241009, before cuDNN became opt-in
    assert {i for i in mapped if i.startswith("olmo24_")} == {r.id for r in load_runs("training")
                                                            if r.source_key == "olmo_core_2024"}
    assert all(i.startswith(("kempner26_h200", "olmo24_")) or "_h100_sxm_" in i for i in mapped
               if not i.startswith(("dgxc2411_", "dgxc2502_", "mlperf_")))
    # stop 28: Transformer Engine's fused (cuDNN) attention, its default on Hopper, for NVIDIA's DGX Cloud and MLPerf
    # H100 / H200 rows (the rows' assumptions cite it); Blackwell rows keep the part's cuDNN default curve unset
    hw = {r.id: r.setup["hardware"] for r in load_runs("training")}
    assert all(hw[i] in ("h100_sxm", "h200") for i in mapped if i.startswith(("dgxc2411_", "dgxc2502_", "mlperf_")))
