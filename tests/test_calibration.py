"""Fidelity and calibration (mlsys_opt.calibration): measurements -> predictions -> fit.

Compile-heavy (one scenario jit for predictions, one for the Adam scan, one for
the Jacobian), so every test shares the same batch shapes and step count.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mlsys_opt import calibration as C
from mlsys_opt.calibration import rows as R
from mlsys_opt.errors import MlsysOptError
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY, Efficiency

STEPS = 300


def test_package_exports_the_public_api():
    """mlsys_opt.calibration is a package (rows, fit, report, files); the CLI's names stay put."""
    import inspect

    for name in ("load_measurements", "to_scenario", "validate", "summarize", "check_targets",
                 "format_validation_table", "calibrate", "leave_one_out", "synthetic_rows",
                 "save_calibration", "load_calibration", "Calibration", "DEFAULT_EFFICIENCY", "FIT_PARAMS"):
        assert hasattr(C, name), name
    assert list(inspect.signature(C.calibrate).parameters)[:4] == ["rows", "eff0", "steps", "learning_rate"]
    assert "calibrated" in inspect.signature(C.validate).parameters
    assert C.DEFAULT_CALIBRATION_PATH.parent.name == "calibration_data" and C.DEFAULT_CALIBRATION_PATH.is_file()
    assert C.MEASUREMENTS_PATH.is_file() and C.CASES_PATH.is_file()


@pytest.fixture(scope="module")
def rows():
    return C.load_measurements()


@pytest.fixture(scope="module")
def table():
    return C.validate()


def test_measurements_load_and_match_shared_copy(rows):
    assert len(rows) == 25
    assert len({r.id for r in rows}) == 25
    assert all(isinstance(r.measured, dict) and r.measured for r in rows)


def test_every_row_predicts_a_finite_positive_figure(rows, table):
    assert set(table["id"]) == {r.id for r in rows}            # every row becomes >= 1 target
    for col in ("predicted", "baseline"):
        vals = table[col].to_numpy(float)
        assert np.all(np.isfinite(vals)) and np.all(vals > 0), table.loc[~(vals > 0), ["id", "metric"]]
    assert table["fit"].sum() >= 12
    summary = table.attrs["summary"]
    assert {"training_throughput", "energy_carbon", "target:megatron"} <= set(summary.index)
    text = C.format_validation_table(table)
    assert "megatron21_t1_1008B" in text and "targets:" in text


def test_megatron_convention_is_eq3_over_step_time(rows):
    """tflops_per_gpu = eq.(3) / (step · N): 96·B·s·l·h²·(1 + s/6h + V/16lh), hand-checked for 1.7B."""
    row = next(r for r in rows if r.id == "megatron21_t1_1.7B")
    b, s, l, h, v = 512, 2048, 24, 2304, 51200
    assert R._eq3_flop(row) == pytest.approx(96 * b * s * l * h * h * (1 + s / (6 * h) + v / (16 * l * h)))
    plan = C.plan_row(row)
    (t,) = plan.targets
    assert t.metric == "tflops_per_gpu" and t.fit and t.target == "megatron"
    assert t.coef == pytest.approx(R._eq3_flop(row) / (32 * 1e12))
    assert plan.evaluations[0][1]["virtual_stages"] == 1 and plan.evaluations[0][1]["recompute"] == "full"


def test_energy_rows_reproduce_published_bookkeeping(table):
    """With the source's power, duration, PUE and grid, the energy/carbon chain matches to ~2 %
    (BLOOM dynamic energy 1,082,990 GPU-h x 400 W = 433,196 kWh exactly) on every row whose
    stated figures agree with each other; llama1_family's do not and is flagged so."""
    energy = table[table["target"] == "energy"]
    e = energy[energy["source_inconsistent"] == ""]
    assert len(e) >= 12
    assert e["error_pct"].abs().max() < 2.0
    bloom = table[(table["id"] == "bloom_176b_final_run") & (table["metric"] == "energy_mwh")]
    assert float(bloom["predicted"].iloc[0]) == pytest.approx(433.196, rel=1e-4)
    # Touvron et al. 2023a §6.1: 2048 GPUs x 5 x 30.44 days x 24 h x 0.4 kW x PUE 1.1 = 3,291.6 MWh,
    # where the paper prints 2,638 MWh: the prediction is the stated figures' own arithmetic
    llama = energy[energy["id"] == "llama1_family"]
    assert set(energy.loc[energy["source_inconsistent"] != "", "id"]) == {"llama1_family"}
    mwh = llama[llama["metric"] == "energy_mwh"]
    assert float(mwh["predicted"].iloc[0]) == pytest.approx(2048 * 5 * 30.44 * 24 * 0.4 * 1.1 / 1e3, rel=1e-3)
    assert "3,292 MWh" in mwh["source_inconsistent"].iloc[0]


def test_targets_report_all_and_self_consistent_energy_rows(table):
    """check_targets: the energy target over all rows (llama1_family: +24.9 %, not met) and over
    the self-consistent ones (met); the text says which row is left out and why."""
    t = C.check_targets(table).set_index("target")
    (every,) = [k for k in t.index if k.startswith("energy/carbon worst |err|, all")]
    (consistent,) = [k for k in t.index if "self-consistent" in k]
    assert not t.loc[every, "met"] and t.loc[every, "value_pct"] == pytest.approx(24.9, abs=0.2)
    assert t.loc[consistent, "met"] and t.loc[consistent, "value_pct"] < 2.0
    assert "llama1_family" in consistent
    text = C.format_validation_table(table)
    assert "[not run] held-out" in text and "llama1_family: Touvron et al. 2023a" in text
    fake = pd.DataFrame({"before_abs_error_pct": [3.0, 1.0, 5.0], "after_abs_error_pct": [2.0, 1.0, 6.0]})
    held = C.check_targets(table, {"row": fake, "source": fake.assign(after_abs_error_pct=[3.0, 4.0, 5.0])})
    assert list(held["met"].iloc[-2:]) == [True, False]          # medians 2.0 < 3.0; 4.0 !< 3.0


def test_to_scenario_one_row_adds_its_model_and_predicts(rows):
    row = next(r for r in rows if r.id == "megatron21_t1_18.4B")
    df = C.to_scenario(row)
    assert list(df["metric"]) == ["tflops_per_gpu"]
    assert 50 < float(df["predicted"].iloc[0]) < 312          # below the A100 fp16 peak
    cat = df.attrs["catalog"]
    model = cat.entry("models", "megatron21_t1_18_4b")
    assert model["hidden_dim"] == 6144 and model["n_layers"] == 40
    (sc, settings), = [(s, v) for _, s, v in df.attrs["evaluations"]]
    assert sc == "training" and settings["tp"] == 8 and settings["microbatches"] == 1024 // 32


def test_unknown_row_without_a_plan_raises_clearly(rows):
    bad = rows[0]._replace(id="mystery_run", model={"layers": 2})
    with pytest.raises(MlsysOptError, match="mystery_run.*missing"):
        C.plan_row(bad)


@pytest.fixture(scope="module")
def fitted():
    return C.calibrate(steps=STEPS)


def test_calibration_fits_what_two_sources_measure(fitted):
    """Default fit: only compute_eff_scale, the one candidate that rows of >= 2 sources lead
    (Narayanan et al., PaLM, MT-NLG); each serving parameter is led by the TensorRT-LLM page alone."""
    ident = C.identification()
    assert list(ident.index) == list(C.FIT_PARAMS)
    assert ident.loc["compute_eff_scale", "n_sources"] == 3 and ident["fitted"].sum() == 1
    # The batch-256 throughput is led by prefill_eff_scale too: its 32k-token prefill and its
    # compute-bound decode GEMMs (the KV read is a separate kernel, node.decode kv_separate)
    # run at η·prefill_eff_scale; the batch-32 row stays decode-bound (mem_bw_eff).
    assert ident.loc["prefill_eff_scale", "rows"] == ("trtllm_a100_llama7b_bs256_128_128, "
                                                      "trtllm_a100_llama7b_ttft_128")
    assert ident.loc["mem_bw_eff", "n_sources"] == 1 and ident.loc["matmul_rows_half", "n_sources"] == 0
    assert fitted.fitted == ("compute_eff_scale",)
    assert list(C.identification(min_sources=1)["fitted"]) == [True, True, True, False]


def test_calibration_lowers_the_loss(fitted):
    assert np.all(np.isfinite(fitted.loss_history))
    assert fitted.loss_after < fitted.loss_before
    assert fitted.loss_history[-1] < fitted.loss_history[0]
    for name in Efficiency._fields:                     # unfitted parameters are untouched
        if name not in fitted.fitted:
            assert getattr(fitted.eff, name) == float(getattr(DEFAULT_EFFICIENCY, name))
    sens = fitted.sensitivity
    assert sens.loc["compute_eff_scale", "elasticity_mean_abs"] > 0.3      # the level of training throughput
    assert (sens.loc[list(fitted.fitted), "rel_std_err"] < 1.0).all()      # the rows pin every fitted one
    assert sens.loc["tp_comm_overlap", "elasticity_max_abs"] == 0.0         # no fit row can see it at 0
    df = C.validate(calibrated=fitted.eff)
    meg = df[df["target"] == "megatron"]
    # The fit moves compute_eff_scale for all 15 fit rows (Megatron, PaLM, MT-NLG, serving): the
    # Megatron rows alone need not improve (with the shape-aware GEMM curves of issue 19 the
    # defaults are already within 3 % on them), but stay within the 5 % target.
    assert meg["calibrated_error_pct"].abs().median() <= 5.0
    # All four candidates: a lower in-sample loss than compute_eff_scale alone.  (It used to
    # halve the loss; since the serving model adds the KV read to the decode GEMMs and runs
    # prefill at the training GEMM level, the defaults start 2.5x lower, 0.0044 against
    # 0.0112, and the four-parameter fit ends at 0.0031.  Stop 16: the fit rows' physics (InternEvo
    # broadcasts, NVLink ring rates, setups read from the runs' code) brings the defaults to 0.0062,
    # and the four-parameter fit ends at 0.0053, compute_eff_scale alone at 0.0062.)
    every = C.calibrate(steps=STEPS, fit=C.FIT_PARAMS)
    assert every.fitted == C.FIT_PARAMS and every.loss_after < 0.9 * every.loss_before
    assert every.loss_after < fitted.loss_after


def test_held_out_rows_stay_near_the_defaults():
    """Leave-one-row-out and leave-one-source-out on the 15 legacy fit rows, each fold choosing
    its parameters on its own training rows: a fold fits compute_eff_scale alone, or nothing when
    its rows come from one organisation (no fold fits a parameter one organisation measures, so
    the serving rows keep their defaults), and
    the held-out median is within two points of the defaults'.  (It used to improve by > 0.5 point;
    with the shape-aware GEMM curves the defaults are within 3 % on the Megatron rows and the
    fit, pulled by PaLM's and the serving rows, no longer helps them.  Stop 14's TPU GEMM curve
    (measured on a v5e, family for v4) moved PaLM's default from -10 % to 0 %; the one fitted
    scale, pulled by the other rows, now costs the held-out rows 1.7 points of median (3.2 -> 4.9 %,
    leave-one-row-out), hence two points, not one.  On the 297 published rows of
    benchmarks/validation.py the same change lowered the held-out median from 10.9 to 9.0 %.)"""
    for by in ("row", "source"):
        loo = C.leave_one_out(steps=STEPS, by=by)
        fitted = loo.groupby("fold")["fitted"].first()
        if by == "row":
            assert len(loo) == 15 and set(fitted) == {"compute_eff_scale"}, by
        else:   # without Narayanan et al. only Google's PaLM rows lead it: one organisation, not fitted
            assert len(loo) == 15 and fitted["Narayanan et al."] == "(none)", by
            assert set(fitted.drop("Narayanan et al.")) == {"compute_eff_scale"}, by
        assert loo["after_abs_error_pct"].median() <= loo["before_abs_error_pct"].median() + 2.0, by
        serving = loo[loo["id"].str.startswith("trtllm")]       # no fold fits a serving parameter
        np.testing.assert_allclose(serving["after_abs_error_pct"], serving["before_abs_error_pct"], rtol=1e-5)


def test_calibration_recovers_known_parameters_on_synthetic_data():
    """Measurements generated by the model itself under perturbed parameters: the fit from the
    defaults recovers them (no prior, the four parameters the fit rows identify best)."""
    # (scaleup_comm_eff is no longer recoverable: on parts with measured collective bandwidth,
    # every legacy row's, issue 19's per-fabric curves replace the global factor.)
    true = DEFAULT_EFFICIENCY._replace(compute_eff_scale=1.2, prefill_eff_scale=0.9, mem_bw_eff=0.85)
    names = ("compute_eff_scale", "prefill_eff_scale", "mem_bw_eff")
    cal = C.calibrate(C.synthetic_rows(true), fit=names, prior=0.0, steps=STEPS, learning_rate=0.1)
    for n in names:
        assert getattr(cal.eff, n) == pytest.approx(getattr(true, n), rel=0.02), n
    assert cal.loss_after < 1e-6


def test_save_load_round_trip(tmp_path, fitted):
    for name in ("cal.json", "cal.toml"):
        path = C.save_calibration(fitted, tmp_path / name)
        assert C.load_calibration(path) == fitted.eff
    data = json.loads((tmp_path / "cal.json").read_text())
    assert data["fitted_on"] and "megatron21_t1_1008B" in data["fitted_on"]
    assert data["parameters"]["compute_eff_scale"]["fitted_on"].startswith("the rows in fitted_on")
    shipped = C.load_calibration()                        # the packaged default calibration
    assert isinstance(shipped, Efficiency) and all(math.isfinite(float(x)) for x in shipped)


@pytest.mark.parametrize("content, message", [
    ('{"parameters": {"compute_eff_scale": {"value": "fast"}}}', r"parameters\.compute_eff_scale\.value: expected a finite number"),
    ('{"parameters": {"compute_eff_scal": {"value": 1.1}}}', r"parameters\.compute_eff_scal: not an efficiency parameter; did you mean 'compute_eff_scale'"),
    ('{"parameters": {"mem_bw_eff": 1.7}}', r"parameters\.mem_bw_eff\.value: 1\.7 is out of range"),
    ('{"parameters": {"zzz": {"value": 1.1}}}', r"parameters\.zzz: not an efficiency parameter \(allowed: "),
    ('{"params": {}}', r"parameters: missing"),
    ('{"parameters": ', r"not valid JSON"),
])
def test_bad_calibration_file_names_file_and_field(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(MlsysOptError, match=message) as exc:
        C.load_calibration(path)
    assert str(path) in str(exc.value)


def test_missing_calibration_file(tmp_path):
    with pytest.raises(MlsysOptError, match="cannot read calibration file"):
        C.load_calibration(tmp_path / "nope.toml")


def test_bad_fit_parameter_name():
    with pytest.raises(MlsysOptError, match="parameter; did you mean 'compute_eff_scale'\\? \\(allowed"):
        C.calibrate(fit=("compute_eff_scal",))
    with pytest.raises(MlsysOptError, match="'zzz' is not an efficiency parameter \\(allowed") as exc:
        C.calibrate(fit=("zzz",))
    assert "; (" not in str(exc.value) and "did you mean" not in str(exc.value)


@pytest.mark.parametrize("measured, message", [
    ({"first_token_latency_mss": 16.1}, r"convention; did you mean 'first_token_latency_mss'\? \(known: none\)"),
    ({"zzz": 16.1}, r"convention \(known: none\)"),
])
def test_unknown_metric_key_reads_cleanly(rows, measured, message):
    row = next(r for r in rows if r.id == "trtllm_a100_llama7b_ttft_128")._replace(measured=measured)
    with pytest.raises(MlsysOptError, match=message) as exc:
        C.plan_row(row)
    assert "; (" not in str(exc.value) and not str(exc.value).rstrip().endswith(";")
