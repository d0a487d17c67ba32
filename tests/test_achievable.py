"""Achievable rates (issue 19): catalog/achievable.toml -> catalog tables -> efficiency model.

(a) The microbenchmark layer reproduces its own sources: every fraction equals its
    quoted absolute number over the catalog peak, and the jitted curves give back the
    measured points; the fitted collective α reproduces the measured curves within 1.55x.
Plus: fallbacks marked, user catalogs (override / based_on / new / bad), reference
values of the interpolation, batched = scalar, jax.grad vs finite differences,
float32 stays float32, `catalog show` prints provenance, `sensitivity` exposes the inputs.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt.catalog import achievable as A
from mlsys_opt.catalog import load_catalog
from mlsys_opt.catalog._load import read_toml
from mlsys_opt.errors import CatalogError
from mlsys_opt.scenarios import efficiency as E
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY, Efficiency

CAT = load_catalog()
T64 = CAT.tables(jnp.float64)
T32 = CAT.tables(jnp.float32)
DATA = read_toml(A.PATH)
ACC = CAT.frames["accelerators"].set_index("name")
FAB = CAT.frames["fabrics"].set_index("name")
PREC = ("fp32", "tf32", "fp16", "fp8", "int8", "int4")


def _hw(name):
    return CAT.index("accelerators", name)


# --------------------------------------------------------------------------- loader and provenance

def test_every_entry_resolved_with_provenance():
    assert set(DATA["accelerators"]) == set(CAT.names("accelerators"))
    assert set(DATA["fabrics"]) == set(CAT.names("fabrics"))
    for col in ("hbm_provenance", "gemm_provenance", "attention_provenance", "scaleup_comm_provenance"):
        assert all(isinstance(v, str) and v for v in ACC[col]), col
    assert all(FAB["busbw_provenance"])
    g = np.asarray(T64.hw.gemm_eff)
    assert g.shape == (len(CAT.names("accelerators")), len(PREC), len(A.GEMM_SIZES))
    assert np.all((g > 0) & (g <= 1)) and np.all(np.isfinite(np.asarray(T64.fabric.busbw_curve)))


def test_fallbacks_are_marked():
    assert ACC.loc["h100_sxm", "gemm_provenance"] == "measured"
    assert ACC.loc["h100_pcie", "gemm_provenance"] == "family:h100_sxm"
    assert ACC.loc["a100_40gb", "gemm_provenance"] == "family:a100_80gb"
    assert ACC.loc["b200", "hbm_provenance"] == "family:h200"
    assert ACC.loc["mi250x", "scaleup_comm_provenance"] == "family:mi300x"
    assert ACC.loc["gb200", "scaleup_comm_provenance"] == "family:b200"
    assert FAB.loc["ib_xdr", "busbw_provenance"] == "family:ib_ndr"
    assert ACC.loc["tpu_v5e", "gemm_provenance"] == "measured"
    assert ACC.loc["tpu_v4", "gemm_provenance"] == "family:tpu_v5e"
    assert ACC.loc["tpu_v4", "hbm_provenance"] == "family:v100"          # HBM2, by DRAM generation
    assert ACC.loc["gaudi2", "hbm_provenance"] == "family:a100_80gb"     # HBM2e
    assert ACC.loc["l4", "hbm_provenance"] == "measured" and ACC.loc["l4", "gemm_provenance"] == "family:a100_80gb"
    for name in ("mobile_npu", "cerebras_wse2", "nrf52840"):   # no data, no family: the default, reason stated
        assert ACC.loc[name, "hbm_provenance"].startswith("none (default kept: ")
        assert ACC.loc[name, "gemm_provenance"].startswith("none (default kept: ")
        assert ACC.loc[name, "sustained_mem_bw_frac"] == A.SUSTAINED_REF_FRAC
        np.testing.assert_allclose(np.asarray(T64.hw.gemm_eff[_hw(name), 2]), A.GEMM_REF_CURVE)
    assert ACC.loc["jetson_orin", "hbm_provenance"].startswith("none (default kept: ")
    # no scale-up data: 0 in the table = the global factors (the previous model)
    assert ACC.loc["gaudi2", "scaleup_comm_provenance"].startswith("none")
    assert float(T64.hw.scaleup_busbw_frac[_hw("gaudi2")]) == 0.0


def test_no_builtin_part_sits_on_an_unexplained_default():
    """Issue 19: every built-in part is measured, a marked family copy, or states why the default is kept."""
    for col in ("hbm_provenance", "gemm_provenance"):
        for name, prov in ACC[col].items():
            ok = prov == "measured" or prov.startswith(("family:", "mixed: ", "none (default kept: "))
            assert ok, (name, col, prov)
            fam = prov[len("family:"):] if prov.startswith("family:") else None
            assert fam is None or fam in ACC.index, (name, prov)


def test_reference_constants_are_the_catalogs():
    a = DATA["accelerators"][A.REFERENCE]
    # the GEMM reference is the Azure FP16 sweep, kept beside the A100's own (NVIDIA BF16) curve
    assert tuple(a["gemm_eff_fp16_azure"]) == A.GEMM_REF_CURVE
    assert a["gemm_eff_fp16_azure_sizes"] == list(map(int, A.GEMM_SIZES))
    assert a["gemm_eff_fp16_azure"][-1] == A.GEMM_REF_EFF == E.GEMM_REF_EFF
    np.testing.assert_allclose(np.asarray(a["gemm_eff_fp16_azure_measured_tflops"]) / 312.0, A.GEMM_REF_CURVE,
                               atol=6e-3)
    assert a["gemm_max_eff_fp16"] == A.GEMM_REF_MAX
    assert a["sustained_mem_bw_frac"] == A.SUSTAINED_REF_FRAC
    assert tuple(a["attention_fwdbwd_eff_fp16_hdim128"]) == A.ATTENTION_REF_FWDBWD


# --------------------------------------------------------------------------- (a) consistency with the sources

def test_fractions_are_measured_over_catalog_peaks():
    for name, e in DATA["accelerators"].items():
        row = ACC.loc[name]
        if e.get("sustained_mem_bw_provenance") == "measured":
            assert e["sustained_mem_bw_measured_bytes_per_s"] / row["mem_bw_bytes_per_s"] == \
                pytest.approx(e["sustained_mem_bw_frac"], abs=6e-3), name
        for p in PREC:      # family copies quote the other part's TFLOPS: check the measured ones
            peak = row[f"peak_{p}_flop_per_s"]
            if e.get(f"gemm_eff_{p}_provenance") == "measured":
                got = np.asarray(e[f"gemm_eff_{p}_measured_tflops"]) * 1e12 / peak
                np.testing.assert_allclose(got, e[f"gemm_eff_{p}"], atol=6e-3, err_msg=name)
            if e.get(f"gemm_max_eff_{p}_provenance") == "measured":
                assert e[f"gemm_max_eff_{p}_measured_tflops"] * 1e12 / peak == \
                    pytest.approx(e[f"gemm_max_eff_{p}"], abs=6e-3), (name, p)
    for name, e in DATA["fabrics"].items():
        if "busbw_bytes_per_s" in e and "busbw_frac" in e:     # eth_400g: hierarchical, NIC-rate curve
            np.testing.assert_allclose(np.asarray(e["busbw_bytes_per_s"]) / FAB.loc[name, "bw_bytes_per_s"],
                                       e["busbw_frac"], rtol=0.02, atol=2e-4, err_msg=name)


def test_jitted_curves_give_back_the_measured_points():
    for name, e in DATA["accelerators"].items():
        for p in PREC:
            if f"gemm_eff_{p}" in e:
                sizes = jnp.asarray(e["gemm_sizes"], jnp.float64)      # tpu_v5e: 4096 and 8192 only
                table = T64.hw.gemm_eff[_hw(name), PREC.index(p)]
                want, _ = A.timing_floor_held(e["gemm_sizes"], e[f"gemm_eff_{p}"])   # MI300X fp8 1024: held
                np.testing.assert_allclose(np.asarray(E.gemm_curve(table, sizes)), want, atol=1e-12)
        if "attention_fwdbwd_eff_fp16_hdim128" in e and ACC.loc[name, "attention_provenance"] == "measured":
            s = jnp.asarray(e["attention_seqlens"], jnp.float64)
            got = E.attention_efficiency(T64.hw.attention_fwdbwd_eff[_hw(name)], s)
            # training is causal: the causal FA2 series where it was read (FA2 figures, panel d)
            want = e.get("attention_fwdbwd_causal_eff_fp16_hdim128", e["attention_fwdbwd_eff_fp16_hdim128"])
            np.testing.assert_allclose(np.asarray(got), want, atol=1e-12)
            if "attention_fwd_eff_fp16_hdim128" not in e:       # serving prefill keeps the non-causal series
                fwd = E.attention_efficiency(T64.hw.attention_fwd_eff[_hw(name)], s)
                np.testing.assert_allclose(np.asarray(fwd), e["attention_fwdbwd_eff_fp16_hdim128"], atol=1e-12)
    for name in ("nvlink3", "nvlink4", "nvlink5"):
        e = DATA["fabrics"][name]
        got = E.busbw_fraction(T64.fabric.busbw_curve[CAT.index("fabrics", name)], jnp.asarray(e["msg_bytes"], float))
        np.testing.assert_allclose(np.asarray(got), e["busbw_frac"], atol=1e-12)


def test_alpha_beta_fit_reproduces_the_collective_curves():
    from mlsys_opt.walls import fleet
    curves = [(FAB.loc[n, "bw_bytes_per_s"], DATA["fabrics"][n]["msg_bytes"], DATA["fabrics"][n]["busbw_frac"],
               FAB.loc[n, "busbw_frac_large"], FAB.loc[n, "allreduce_step_latency_s"])
              for n in ("nvlink3", "nvlink4", "nvlink5")]
    m = DATA["accelerators"]["mi300x"]
    curves.append((ACC.loc["mi300x", "scaleup_bw_bytes_per_s"], m["scaleup_allreduce_msg_bytes"],
                   m["scaleup_allreduce_busbw_frac"], ACC.loc["mi300x", "scaleup_busbw_frac_large"],
                   ACC.loc["mi300x", "scaleup_allreduce_step_latency_s"]))
    for bw, msg, frac, large, alpha in curves:
        msg, frac = np.asarray(msg, float), np.asarray(frac)
        measured = 2 * 7 / 8 * msg / (frac * bw)
        model = np.asarray(fleet.ring_allreduce(jnp.asarray(msg), 8.0, large * bw, alpha))
        assert 1e-6 < alpha < 1e-5
        assert np.max(np.abs(np.log(model / measured))) < math.log(1.55)
        assert model[-1] == pytest.approx(measured[-1], rel=0.01)       # large messages: at β


def test_timing_floor_points_are_held_at_the_next_size():
    """A doubling of M = N = K (8x the work) that the harness times no longer is a per-call floor."""
    mi = DATA["accelerators"]["mi300x"]
    t_us = [2 * n**3 / (tf * 1e12) * 1e6 for n, tf in zip(mi["gemm_sizes"], mi["gemm_eff_fp8_measured_tflops"])]
    assert t_us[0] == pytest.approx(40.4, abs=0.1) and t_us[1] == pytest.approx(40.2, abs=0.1)
    eff, held = A.timing_floor_held(mi["gemm_sizes"], mi["gemm_eff_fp8"])
    assert held == [1024.0] and eff == [0.164, 0.164, 0.365, 0.443, 0.388]
    assert "fp8 at 1024: a timing floor" in ACC.loc["mi300x", "gemm_method"]
    # a run of floor points takes the first size that resolves throughput
    assert A.timing_floor_held([1, 2, 4, 8], [1 / 64, 1 / 8, 1.0, 1.0]) == ([1.0, 1.0, 1.0, 1.0], [1.0, 2.0])
    for name in ("h100_sxm", "h200", "b200", "a100_80gb", "v100"):     # every NVIDIA series resolves at 1024
        e = DATA["accelerators"][name]
        for p in PREC:
            if f"gemm_eff_{p}" in e:
                assert A.timing_floor_held(e["gemm_sizes"], e[f"gemm_eff_{p}"]) == (e[f"gemm_eff_{p}"], []), name


def test_nonsquare_gemms_cross_check():
    """Azure/AI-benchmarking-guide ND A100 v4 (fp16) and ND H100 v5 (fp8) result pages: the three
    non-square cuBLASLt shapes, not used to build the curves (TFLOPS as published)."""
    cases = [("a100_80gb", "fp16", (1024, 2145, 1024), 132.8), ("a100_80gb", "fp16", (6144, 12288, 12288), 250.8),
             ("a100_80gb", "fp16", (802816, 192, 768), 157.8), ("h100_sxm", "fp8", (1024, 2145, 1024), 410.7),
             ("h100_sxm", "fp8", (6144, 12288, 12288), 1351.4), ("h100_sxm", "fp8", (802816, 192, 768), 663.8)]
    for hw, p, (m, n, k), tflops in cases:
        g = T64.hw.gemm_eff[_hw(hw), PREC.index(p)]
        pred = float(E.gemm_mnk_efficiency(g, m, k, n)) * ACC.loc[hw, f"peak_{p}_flop_per_s"] / 1e12
        assert abs(math.log(pred / tflops)) < math.log(1.3), (hw, m, n, k, pred, tflops)


# --------------------------------------------------------------------------- reference values

def test_interpolation_reference_values():
    g = jnp.asarray(A.GEMM_REF_CURVE)
    # log2-linear: halfway between 1024 and 2048 in log2 is 1024·√2; flat outside 1024..16384
    assert float(E.gemm_curve(g, 1024 * math.sqrt(2))) == pytest.approx((0.383 + 0.711) / 2)
    assert float(E.gemm_curve(g, 3000.0)) == pytest.approx(0.711 + (math.log2(3000) - 11) * 0.020)
    assert float(E.gemm_curve(g, 100.0)) == pytest.approx(0.383)
    assert float(E.gemm_curve(g, 1e6)) == pytest.approx(0.822)
    assert float(E.gemm_size(2048.0, 12288.0, 49152.0, 8.0)) == pytest.approx(5367.28, rel=1e-5)
    # A square 16384 GEMM on the reference part reproduces the previous asymptote η·compute_eff_scale
    assert float(E.matmul_efficiency(0.5, 16384.0, gemm=g, hidden=16384.0, ffn=16384.0)) == pytest.approx(0.65)
    # ... and on H100 fp16 it is the fp8 series x MAMF fp16/fp8, relative to the reference
    h = T64.hw.gemm_eff[_hw("h100_sxm"), 2]
    assert float(h[-1]) == pytest.approx(0.696 * 0.803 / 0.709)
    assert float(E.matmul_efficiency(0.5, 16384.0, gemm=h, hidden=16384.0, ffn=16384.0)) == \
        pytest.approx(0.65 * 0.696 * 0.803 / 0.709 / 0.822)
    # ... and on MI300X fp16 (own MAMF 0.511, an fp8 series without one) the reference shape x its own MAMF,
    # not the fp8 fractions of peak (max 0.443, below the part's own measured BF16 maximum)
    amd = np.asarray(T64.hw.gemm_eff[_hw("mi300x"), 2])
    np.testing.assert_allclose(amd, np.asarray(A.GEMM_REF_CURVE) * 0.511 / A.GEMM_REF_MAX, rtol=1e-12)
    assert "fp16: a100_80gb fp16 shape x MAMF fp16" in ACC.loc["mi300x", "gemm_method"]
    # skinny M: tile(128)/tile(n_eq) with n_eq = (128·4096·4096)^(1/3) = 1290.2
    n_eq = (128 * 4096 * 4096) ** (1 / 3)
    q = (128 / 256) / (n_eq / (n_eq + 128))
    want = 0.5 * 1.3 * (0.383 + (math.log2(n_eq) - 10) * 0.328) * q / 0.822
    assert float(E.prefill_efficiency(0.5, 128.0, gemm=g, hidden=4096.0, ffn=4096.0)) == pytest.approx(want)
    # decode compute term: no tile factor
    assert float(E.decode_compute_efficiency(0.5, rows=16384.0, gemm=g, hidden=16384.0, ffn=16384.0)) == \
        pytest.approx(0.65)
    # achievable = 0 is the previous model exactly
    off = Efficiency(achievable=0.0)
    assert float(E.matmul_efficiency(0.5, 128.0, off, gemm=h, hidden=4096.0)) == \
        pytest.approx(float(E.matmul_efficiency(0.5, 128.0, off))) == pytest.approx(0.65 * 0.5)


def test_gather_achieved_rates():
    from mlsys_opt.scenarios.parts import gather

    class P:   # the fields gather reads
        hardware = jnp.asarray([_hw("h100_sxm"), _hw("gaudi2"), _hw("mi300x")])
        model = jnp.zeros(3, jnp.int32)
        region = jnp.zeros(3, jnp.int32)
        fabric = jnp.asarray([CAT.index("fabrics", "ib_ndr")] * 3)
        precision = jnp.full(3, 2)
    on, off = gather(P, T64, DEFAULT_EFFICIENCY), gather(P, T64, Efficiency(achievable=0.0))
    bw = np.asarray(T64.hw.mem_bw_bytes_per_s)[np.asarray(P.hardware)]
    np.testing.assert_allclose(np.asarray(off.mem_bw), bw * 0.8)
    np.testing.assert_allclose(np.asarray(on.mem_bw), bw * 0.8 * np.array([0.887, 0.85, 0.772]) / 0.85)
    up = np.asarray(T64.hw.scaleup_bw_bytes_per_s)[np.asarray(P.hardware)]
    np.testing.assert_allclose(np.asarray(on.bw_up), up * np.array([1.06, 0.8, 0.707]))   # gaudi2: global 0.8
    assert float(on.alpha_up[1]) == pytest.approx(1e-6) and float(on.alpha_up[0]) == pytest.approx(
        ACC.loc["h100_sxm", "scaleup_allreduce_step_latency_s"])
    np.testing.assert_allclose(np.asarray(on.bw_out), np.asarray(off.bw_out) / 0.75 * 0.96)
    np.testing.assert_allclose(np.asarray(on.alpha_out), np.asarray(off.alpha_out))   # ib_ndr: catalog α


# --------------------------------------------------------------------------- batched, gradients, dtype

def test_batched_equals_scalar():
    rows = np.array([1.0, 37.0, 512.0, 3000.0, 70000.0])
    hidden = np.array([4096.0, 8192.0, 0.0, 12288.0, 2048.0])
    hw = np.array([_hw(n) for n in ("h100_sxm", "a100_80gb", "mi300x", "gaudi2", "tpu_v4")])
    g = T64.hw.gemm_eff[hw, 2]
    f = jax.jit(lambda r, h, gg: (E.matmul_efficiency(0.5, r, gemm=gg, hidden=h, tp=2.0),
                                  E.decode_compute_efficiency(0.5, rows=r, gemm=gg, hidden=h),
                                  E.busbw_fraction(T64.fabric.busbw_curve[1], r * 1e4)))
    batched = f(jnp.asarray(rows), jnp.asarray(hidden), g)
    for i in range(len(rows)):
        single = f(jnp.asarray(rows[i]), jnp.asarray(hidden[i]), g[i])
        for b, s in zip(batched, single):
            assert float(b[i]) == pytest.approx(float(s), rel=1e-12)


def test_grad_matches_finite_differences():
    g = T64.hw.gemm_eff[_hw("h100_sxm"), 2]

    def f(rows, hidden, scale, ach, table):
        eff = DEFAULT_EFFICIENCY._replace(compute_eff_scale=scale, achievable=ach)
        return (E.matmul_efficiency(0.4, rows, eff, gemm=table, hidden=hidden, ffn=3.5 * hidden, tp=4.0)
                + E.busbw_fraction(T64.fabric.busbw_curve[1], rows * 3e3))
    x = (300.0, 5000.0, 1.3, 0.7, g)
    grads = jax.grad(f, argnums=(0, 1, 2, 3, 4))(*x)
    for i in range(4):
        h = 1e-6 * abs(x[i])
        up, dn = list(x), list(x)
        up[i], dn[i] = x[i] + h, x[i] - h
        fd = (f(*up) - f(*dn)) / (2 * h)
        assert float(grads[i]) == pytest.approx(float(fd), rel=1e-5, abs=1e-9), i
    direction = jnp.linspace(0.1, 0.5, 5)
    fd = (f(*x[:4], g + 1e-6 * direction) - f(*x[:4], g - 1e-6 * direction)) / 2e-6
    assert float(jnp.vdot(grads[4], direction)) == pytest.approx(float(fd), rel=1e-5)


def test_float32_stays_float32():
    from mlsys_opt.scenarios.parts import gather

    class P:
        hardware = jnp.asarray([0, 2], jnp.int32)
        model = jnp.zeros(2, jnp.int32)
        region = jnp.zeros(2, jnp.int32)
        fabric = jnp.asarray([0, 4], jnp.int32)
        precision = jnp.asarray([2, 3], jnp.int32)
    eff = Efficiency(*(jnp.float32(x) for x in DEFAULT_EFFICIENCY))
    c = gather(P, T32, eff)
    for name in ("mem_bw", "bw_up", "alpha_up", "bw_out", "alpha_out", "gemm_eff"):
        assert getattr(c, name).dtype == jnp.float32, name
    rows = jnp.asarray([64.0, 4096.0], jnp.float32)
    outs = (E.matmul_efficiency(jnp.float32(0.5), rows, eff, part=c, tp=jnp.float32(2.0)),
            E.prefill_efficiency(jnp.float32(0.5), rows, eff, part=c),
            E.decode_compute_efficiency(jnp.float32(0.5), eff, part=c, rows=rows),
            E.attention_efficiency(c.attention_fwdbwd_eff, rows),
            E.busbw_fraction(c.out_busbw_curve, rows))
    for o in outs:
        assert o.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(o)))


# --------------------------------------------------------------------------- user catalogs, CLI, sensitivity

def test_user_entries_follow_the_fallback_rule(tmp_path):
    mine = CAT.with_entries("accelerators", {
        "h100_sxm": {"sustained_mem_bw_frac": 0.8},
        "h100_copy": {"based_on": "h100_sxm", "price": "1 USD", "source": "test"},
        "chip_x": {"based_on": "mobile_npu", "display_name": "chip x", "source": "test",
                   "gemm_sizes": [1024, 16384], "gemm_eff_fp16": [0.5, 0.9]},
        "chip_y": {"based_on": "tpu_v4", "display_name": "chip y", "source": "test"}})
    f = mine.frames["accelerators"].set_index("name")
    assert f.loc["h100_sxm", "hbm_provenance"].startswith("user (")
    assert f.loc["h100_sxm", "gemm_provenance"] == "measured"
    assert f.loc["h100_copy", "gemm_provenance"] == "family:h100_sxm"
    assert f.loc["h100_copy", "hbm_provenance"] == "family:h100_sxm"
    assert f.loc["chip_x", "gemm_provenance"].startswith("user (")
    assert f.loc["chip_x", "hbm_provenance"].startswith("none (default")
    assert f.loc["chip_y", "hbm_provenance"] == "family:tpu_v4" == f.loc["chip_y", "gemm_provenance"]
    t = mine.tables(jnp.float64)
    assert float(t.hw.sustained_mem_bw_frac[mine.index("accelerators", "h100_sxm")]) == 0.8
    np.testing.assert_allclose(t.hw.gemm_eff[mine.index("accelerators", "h100_copy")], T64.hw.gemm_eff[_hw("h100_sxm")])
    np.testing.assert_allclose(t.hw.gemm_eff[mine.index("accelerators", "chip_x"), 2],
                               np.interp(np.log2(A.GEMM_SIZES), [10, 14], [0.5, 0.9]))
    # a TOML file (the --catalog path) with the new fields, and one without them
    path = tmp_path / "mine.toml"
    path.write_text('[accelerators.h100_sxm]\nsustained_mem_bw_frac = 0.7\n'
                    '[fabrics.ib_ndr]\nbusbw_frac_large = 0.5\nallreduce_step_latency = "3 us"\n', encoding="utf-8")
    cat = load_catalog(extra=path)
    assert cat.entry("accelerators", "h100_sxm")["sustained_mem_bw_frac"] == 0.7
    fab = cat.entry("fabrics", "ib_ndr")
    assert fab["busbw_frac_large"] == 0.5 and fab["allreduce_step_latency_s"] == pytest.approx(3e-6)
    assert fab["busbw_provenance"] == f"user ({path})"


@pytest.mark.parametrize("fields, match", [
    ({"gemm_sizes": [1024, 2048], "gemm_eff_fp16": [0.5]}, "gemm_eff_fp16: has 1 values but gemm_sizes has 2"),
    ({"gemm_eff_fp16": [0.5, 0.6]}, "gemm_sizes: missing"),
    ({"gemm_sizes": [2048, 1024], "gemm_eff_fp16": [0.5, 0.6]}, "gemm_sizes: must be strictly increasing"),
    ({"sustained_mem_bw_frac": 1.5}, r"sustained_mem_bw_frac: must be in \(0, 1\]"),
    ({"gemm_sizes": "big"}, "gemm_sizes: expected a list of numbers"),
    ({"gemm_max_eff_fp99": 0.5}, "gemm_max_eff_fp99: unknown field"),
])
def test_bad_user_fields_raise_one_line(fields, match):
    with pytest.raises(CatalogError, match=match) as exc:
        CAT.with_entries("accelerators", {"chip_y": {"based_on": "mobile_npu", "source": "test", **fields}})
    assert "\n" not in str(exc.value) and "[chip_y]" in str(exc.value)


def test_catalog_show_prints_provenance(capsys):
    from mlsys_opt.cli import app as cli
    assert cli.main(["catalog", "show", "accelerators", "h100_sxm"]) == 0
    out = capsys.readouterr().out
    assert "achievable rates" in out and "HBM sustained" in out and "measured" in out
    assert "Triad 2.97 TB/s" in out                                  # the source is quoted
    assert cli.main(["catalog", "show", "accelerators", "h100_pcie"]) == 0
    assert "family:h100_sxm" in capsys.readouterr().out
    assert cli.main(["catalog", "show", "fabrics", "nvlink4"]) == 0
    assert "us/step" in capsys.readouterr().out


def test_sensitivity_exposes_the_achievable_inputs():
    from mlsys_opt.point.sensitivity import parameter_names
    for scenario in ("training", "serving"):
        names = parameter_names(scenario)
        for n in ("hardware.sustained_mem_bw_frac", "hardware.gemm_eff", "hardware.scaleup_busbw_frac",
                  "hardware.scaleup_step_latency_s", "fabric.busbw_frac", "fabric.step_latency_s",
                  "eff.achievable"):
            assert n in names, (scenario, n)


def test_causal_flash_attention_series_published_values():
    """FA2 fwd+bwd, head dim 128, causal (flash-attention assets, panel d), TFLOP/s / fp16 peak."""
    h = DATA["accelerators"]["h100_sxm"]
    np.testing.assert_allclose(np.asarray(h["attention_fwdbwd_causal_measured_tflops_hdim128"]) / 989.0,
                               h["attention_fwdbwd_causal_eff_fp16_hdim128"], atol=6e-4)
    assert h["attention_fwdbwd_causal_measured_tflops_hdim128"] == [163, 221, 265, 294, 308, 328]
    a = DATA["accelerators"]["a100_80gb"]
    assert a["attention_fwdbwd_causal_measured_tflops_hdim128"] == [155, 173, 182, 189]
    np.testing.assert_allclose(np.asarray(a["attention_fwdbwd_causal_measured_tflops_hdim128"]) / 312.0,
                               a["attention_fwdbwd_causal_eff_fp16_hdim128"], atol=6e-4)
    # causal below non-causal at every length, the gap closing with length (masked tiles ~ 1/s)
    for e in (h, a):
        ratio = np.asarray(e["attention_fwdbwd_causal_eff_fp16_hdim128"]) / np.asarray(e["attention_fwdbwd_eff_fp16_hdim128"])
        assert (ratio < 1).all() and (np.diff(ratio) > 0).all()
    assert ACC.loc["h100_96gb_500w", "attention_provenance"] == "family:h100_sxm"


def test_a100_bf16_gemm_curve_published_values():
    """Per size the faster of the Azure FP16 cuBLASLt sweep (1024, 2048: 119.4, 221.8 TFLOP/s) and
    NVIDIA 'CUDA 11 Features Revealed' Fig. 6 BF16 cuBLAS (4096, 8192: ~258, ~290, plot-read), / 312."""
    a = DATA["accelerators"]["a100_80gb"]
    assert a["gemm_eff_fp16_measured_tflops"] == [119.4, 221.8, 258, 290] and a["gemm_sizes"] == [1024, 2048, 4096, 8192]
    azure = dict(zip(a["gemm_eff_fp16_azure_sizes"], a["gemm_eff_fp16_azure_measured_tflops"]))
    nvidia = {1024: 88, 2048: 195, 4096: 258, 8192: 290}
    assert a["gemm_eff_fp16_measured_tflops"] == [max(azure[n], nvidia[n]) for n in a["gemm_sizes"]]
    g = T64.hw.gemm_eff[_hw("a100_80gb"), PREC.index("fp16")]
    assert float(E.gemm_curve(g, 8192.0)) == pytest.approx(290 / 312, abs=6e-4)
    assert float(E.gemm_curve(g, 16384.0)) == pytest.approx(0.929)          # flat beyond the plot
    assert float(E.gemm_curve(g, 4096 * math.sqrt(2))) == pytest.approx((0.827 + 0.929) / 2)
    # the 40 GB part copies it; the reference shape (other parts' fallback) stays the Azure sweep
    np.testing.assert_allclose(np.asarray(T64.hw.gemm_eff[_hw("a100_40gb"), PREC.index("fp16")]), np.asarray(g))
    np.testing.assert_allclose(np.asarray(T64.hw.gemm_eff[_hw("nrf52840"), PREC.index("fp16")]), A.GEMM_REF_CURVE)
    # an 8192-square GEMM now runs at 0.929/0.813 of the previous A100 rate (same η, same scale)
    assert float(E.matmul_efficiency(0.5, 8192.0, gemm=g, hidden=8192.0, ffn=8192.0)) == \
        pytest.approx(0.65 * 0.929 / 0.822, rel=1e-3)


def test_blackwell_cudnn_attention_series_published_values():
    """cuDNN SDPA training benchmark (NVIDIA/cudnn-frontend), BF16, causal, head dim 128:
    fwd+bwd = 3.5 / (1/fwd + 2.5/bwd) of the printed TFLOP/s, / the catalog 16-bit peak."""
    printed = {"b200": (2250.0, [83.991, 254.501, 478.921, 855.678, 1171.278, 1332.415],
                        [134.164, 308.529, 371.486, 701.265, 942.509, 1074.776]),
               "gb200": (2500.0, [408, 733, 1069, 1386, 1584, 1668], [329, 527, 655, 1054, 1211, 1304])}
    for name, (peak, fwd, bwd) in printed.items():
        e = DATA["accelerators"][name]
        both = 3.5 / (1.0 / np.asarray(fwd, float) + 2.5 / np.asarray(bwd, float))
        np.testing.assert_allclose(both, e["attention_fwdbwd_causal_measured_tflops_hdim128"], atol=0.06)
        np.testing.assert_allclose(both / peak, e["attention_fwdbwd_causal_eff_fp16_hdim128"], atol=6e-4)
        np.testing.assert_allclose(np.asarray(fwd, float) / peak, e["attention_fwd_eff_fp16_hdim128"], atol=6e-4)
        assert ACC.loc[name, "peak_fp16_flop_per_s"] == pytest.approx(peak * 1e12)
        assert ACC.loc[name, "attention_provenance"] == "measured"
        got = E.attention_efficiency(T64.hw.attention_fwdbwd_eff[_hw(name)], jnp.asarray(A.ATTENTION_SEQLENS))
        np.testing.assert_allclose(np.asarray(got), e["attention_fwdbwd_causal_eff_fp16_hdim128"], atol=1e-12)
    # B200 16k: 1137.6 TFLOP/s = 0.506 of 2250, below the A100 FA2 default (0.606) it used to fall back to
    assert float(T64.hw.attention_fwdbwd_eff[_hw("b200"), -1]) == pytest.approx(0.506)
