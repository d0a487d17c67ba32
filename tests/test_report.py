"""report.py (tables, units, JSON, audit) and plots.py (figures) on synthetic data: no sweeps, fast."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mlsys_opt.cli import audit as audit_table
from mlsys_opt.cli import plots, report
from mlsys_opt.point.evaluation import point_space
from mlsys_opt.errors import MlsysOptError

DAY = 86400.0


def _front() -> pd.DataFrame:
    return pd.DataFrame({
        "hardware": pd.Categorical(["b200", "b200", "mi300x", "h100_sxm"]),
        "n_accelerators": np.array([16384, 8192, 4096, 2048], np.int64),
        "region": pd.Categorical(["quebec", "norway", "quebec", "poland"]),
        "time_to_train_s": np.array([6.9, 9.8, 27.0, 29.5]) * DAY,
        "tco_usd": [4.89e6, 3.50e6, 1.85e6, 2.2e6],
        "carbon_kg": [59_600.0, 21_200.0, 43_800.0, 900_000.0],
        "mfu": [0.184, 0.249, 0.303, 0.35],
        "memory_per_accelerator_bytes": [27.3e9, 31.7e9, 40.7e9, 70e9],
        "bottleneck": ["compute"] * 4,
        "time_to_train_days": [6.9, 9.8, 27.0, 29.5],
    })


def test_format_table_human_units_and_headers():
    text = report.format_table(_front(), ["hardware", "n_accelerators", "time_to_train_s", "tco_usd",
                                          "carbon_kg", "mfu", "memory_per_accelerator_bytes"])
    head, rule, first = text.splitlines()[:3]
    for h in ("hardware", "N", "days", "$M", "t CO2e", "MFU %", "mem/dev GB"):
        assert h in head
    assert set(rule) <= {"-", " "}
    # 6.9 days, $4.89M, 59.6 t CO2e, 18.4 %, 27.3 GB, thousands separators
    for cell in ("b200", "16,384", "6.9", "4.89", "59.6", "18.4", "27.3"):
        assert cell in first.split()
    assert "time_to_train_days" not in text            # hidden duplicate of the SI column


def test_format_table_alignment_rows_and_width():
    df = _front()
    text = report.format_table(df, ["hardware", "tco_usd"], max_rows=2)
    lines = text.splitlines()
    assert lines[-1] == "... 2 more rows"
    assert lines[2].endswith("4.89") and lines[3].endswith("3.50")          # numbers right-aligned
    narrow = report.format_table(df, ["hardware", "n_accelerators", "time_to_train_s", "tco_usd"], width=20)
    assert "not shown for width" in narrow and "$M" not in narrow.splitlines()[0]
    with pytest.raises(MlsysOptError, match="no column 'nope'"):
        report.format_table(df, ["nope"])


@pytest.mark.parametrize("name, value, text", [
    ("time_to_train_s", 30 * DAY, "30.0 days"), ("tco_usd", 20e6, "$20.00M"), ("carbon_kg", 1e6, "1,000.0 t CO2e"),
    ("itl_s", 0.0418, "41.80 ms"), ("mfu", 0.326, "32.6 %"), ("memory_per_accelerator_bytes", 80e9, "80.0 GB"),
    ("n_accelerators", 13279, "13,279"), ("bottleneck", "memory", "memory"),
])
def test_value_text(name, value, text):
    assert report.value_text(name, value) == text


def test_value_text_custom_format_and_quantities():
    assert report.value_text("time_to_train_s", 30 * DAY, "{:,.4g}") == "30 days"
    assert report.value_text("tco_usd", 20e6, "{:,.4g}") == "$20M"
    assert report.quantity_text("hardware.peak_flop_per_s", 989e12) == "989 TFLOP/s"
    assert report.quantity_text("mem_bw_bytes_per_s", 3.35e12) == "3.35 TB/s"
    assert report.quantity_text("mem_capacity_bytes", 80e9) == "80 GB"
    assert report.quantity_text("region.carbon_gco2e_per_kwh", 20.0) == "20 g CO2e/kWh"
    assert report.quantity_text("price_usd", 30000.0) == "$30,000"
    assert report.quantity_text("cloud_usd_per_hour", 3.0) == "$3/h"
    assert report.quantity_text("mtbf_s", 1.8e8) == "50,000 h"


def test_json_handles_numpy_nan_and_frames():
    df = _front()
    df.loc[0, "mfu"] = float("nan")
    out = json.loads(report.dumps({"front": df, "n": np.int64(3), "x": np.float32(1.5), "ok": np.bool_(True),
                                   "inf": float("inf"), "arr": np.arange(3)}))
    assert out["n"] == 3 and out["x"] == 1.5 and out["ok"] is True and out["inf"] is None
    assert out["arr"] == [0, 1, 2]
    assert out["front"][0]["mfu"] is None and out["front"][0]["hardware"] == "b200"
    assert math.isclose(out["front"][1]["tco_usd"], 3.5e6)


def _training_row(space, **over) -> dict:
    row = {"hardware": "h100_sxm", "model": "llama3_70b", "region": "quebec", "precision": "fp16",
           "pricing": "cloud", "tp": 8, "pp": 1, "dp": 64, "n_accelerators": 512, "efficiency": 0.4,
           "global_batch": 2048, "seq_len": 2048, "n_tokens": 1.24e12, "checkpoint_bw_bytes_per_s": 1e11,
           "checkpoint_interval_s": 0.0, "step_time_s": 11.2, "bottleneck": "compute", "mfu": 0.326,
           "scaling_efficiency": 0.839, "goodput": 0.991, "bubble_frac": 0.0, "time_to_train_s": 38.6 * DAY,
           "memory_per_accelerator_bytes": 59.8e9, "tco_usd": 1.42e6, "energy_j": 1.315e12, "carbon_kg": 7305.0,
           "water_l": 66_400.0, "g_memory": -0.25, "g_limit_time_to_train_s": 0.29}
    row.update(over)
    return row


def test_audit_training_rows_and_statuses():
    space = point_space("training", {"model": "llama3_70b", "n_tokens": "1.24e12 token"},
                        limits={"max_time": "30 day"})
    audit = audit_table.audit(pd.Series(_training_row(space)), space)
    assert list(audit.columns) == list(audit_table.AUDIT_COLUMNS)
    walls = list(audit["wall"])
    for w in ("1 Compute", "2 Memory (capacity)", "3 Software", "8 Ingestion", "11 Complexity",
              "14 Communication", "15 Fragility", "19 Checkpoint", "17 Capital", "18 Sustainability",
              "Iron law", "22 Synthesis"):
        assert w in walls
    by = audit.set_index("wall")
    assert by.loc["2 Memory (capacity)", "status"].startswith("not binding")
    assert by.loc["Iron law", "status"].startswith("VIOLATED")
    assert "largest loss" in by.loc["3 Software", "status"]                  # 39 % kernel < 84 % < 99 %
    assert "98 h" in by.loc["15 Fragility", "metric"]                        # 50,000 h / 512
    assert "17.6 tokens/param" in by.loc["11 Complexity", "metric"]          # 1.24e12 / 70.6e9
    assert "989 TFLOP/s" in by.loc["1 Compute", "metric"]
    # 6PD / (30 d · 989e12 · 0.326 · 0.991) ≈ 634.5 -> 635 devices
    assert "N ≥ 635" in by.loc["22 Synthesis", "metric"]
    tight = audit_table.audit(pd.Series(_training_row(space, g_memory=-0.05)), space).set_index("wall")
    assert tight.loc["2 Memory (capacity)", "status"].startswith("binding")
    over = audit_table.audit(pd.Series(_training_row(space, g_memory=0.2)), space).set_index("wall")
    assert over.loc["2 Memory (capacity)", "status"].startswith("VIOLATED")
    text = audit_table.format_audit(audit)
    assert text.splitlines()[0].split()[:3] == ["Domain", "Wall", "Key"]


def test_point_space_messages_name_the_parameter():
    with pytest.raises(MlsysOptError) as exc:
        point_space("training", {"model": "llama3_7b", "n_tokens": 1e12})
    msg = str(exc.value)
    assert msg.startswith("model: 'llama3_7b' is not a known model") and "did you mean 'llama3_70b'" in msg
    assert "<dict>" not in msg
    with pytest.raises(MlsysOptError, match="unknown scenario 'trainig'; did you mean 'training'"):
        point_space("trainig", {})


# --------------------------------------------------------------------------- figures

def _png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    return data


def test_pareto_front_figures(tmp_path):
    space = point_space("training", {"model": "llama3_70b", "n_tokens": "15e12 token"},
                        limits={"max_time": "30 day", "budget": "20e6 USD"})
    fig = plots.pareto_front(_front(), space=space, path=tmp_path / "f.png")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time to train (days)" and ax.get_ylabel() == "cost, TCO ($M)"
    assert fig.axes[1].get_ylabel() == "carbon (t CO2e)"                      # colour bar
    _png(tmp_path / "f.png")
    plots.pareto_front(_front(), space=space, color="region", path=tmp_path / "f.svg")
    assert (tmp_path / "f.svg").read_text().lstrip().startswith("<?xml")
    plots.pareto_front(_front(), space=space, three_d=True, path=tmp_path / "f3.png")
    _png(tmp_path / "f3.png")
    with pytest.raises(MlsysOptError, match="empty"):
        plots.pareto_front(_front().iloc[:0], space=space)
    with pytest.raises(MlsysOptError, match="unknown format '.gif'"):
        plots.pareto_front(_front(), space=space, path=tmp_path / "f.gif")


def test_roofline_tornado_cascade(tmp_path):
    fig = plots.roofline(["h100_sxm", "a100_80gb"], [{"label": "decode", "intensity": 1.0, "hardware": "h100_sxm"}],
                         path=tmp_path / "r.png")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert any("ridge 295 FLOP/B" in t.get_text() for t in ax.texts)
    _png(tmp_path / "r.png")
    sens = pd.DataFrame({"config": 0, "output": "time_to_train_s", "output_value": 1.0,
                         "parameter": ["hardware.peak_flop_per_s", "n_tokens", "region.pue", "fabric.bw_bytes_per_s"],
                         "value": 1.0, "derivative": 1.0, "elasticity": [-0.78, 1.0, 0.0, -0.05], "rank": [2, 1, 4, 3]})
    fig = plots.tornado(sens, "time_to_train_s", path=tmp_path / "t.png")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    # zero dropped, largest on top, inputs in words (issue 14: no internal names such as eff.compute_eff_scale)
    assert labels == ["network: bw bytes per s", "accelerator: peak flop per s", "n tokens"]
    assert plots.input_label("eff.compute_eff_scale") == "efficiency model: compute eff scale"
    fig = plots.tornado(sens, "time_to_train_s", configuration="training: model=llama3_70b, tp=8")
    assert "model=llama3_70b" in fig.axes[0].get_title()
    with pytest.raises(MlsysOptError, match="no sensitivities of 'tco_usd'"):
        plots.tornado(sens, "tco_usd")
    fig = plots.loss_cascade(1024, 312e12, 0.5, 0.6, 0.9, path=tmp_path / "c.png")
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    # seed 000 §9 worked example: 3.19e17 -> 1.60e17 -> 9.58e16 -> 8.63e16 FLOP/s (27 % of peak)
    assert "319 PFLOP/s" in texts and "86.3 PFLOP/s" in texts and "27 % of peak" in texts
    _png(tmp_path / "c.png")
