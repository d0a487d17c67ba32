"""Self-describing result files (issue 14 item 4): CSV sidecar, Parquet metadata, JSON; read back."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mlsys_opt
from mlsys_opt.errors import MlsysOptError
from mlsys_opt.space import load_space
from mlsys_opt.sweeps.results import SIDECAR_SUFFIX, describe, load_result, write_table

FRONT = pd.DataFrame({"hardware": ["b200", "h100_sxm"], "n_accelerators": np.array([16384, 8192], np.int64),
                      "tco_usd": [7.2e6, 5.1e6], "time_to_train_s": [882118.375, 1238858.375]})


@pytest.fixture(scope="module")
def meta():
    return describe(load_space("capstone"), kind="sweep")


def test_metadata_names_spec_catalog_efficiency_version(meta):
    assert meta["spec"]["name"] == "capstone" and meta["spec"]["scenario"] == "training"
    assert meta["spec"]["fixed"] and "n_tokens" in meta["spec"]["fixed"]
    assert isinstance(meta["spec"]["fixed_si"]["n_tokens"], float)       # a number, not a display string
    assert "[axes]" in meta["spec"]["text"]                                # the spec file itself
    assert len(meta["catalog_sha256"]) == 64 and meta["version"] == mlsys_opt.__version__
    assert "compute_eff_scale" in meta["efficiency"]
    json.dumps(meta)                                                       # plain JSON


def test_catalog_fingerprint_sees_one_changed_price():
    base = mlsys_opt.load_catalog()
    cheap = base.with_entries("accelerators", {"h100_sxm": {"price_usd": 1000.0}})
    assert base.fingerprint() == mlsys_opt.load_catalog().fingerprint()
    assert base.fingerprint() != cheap.fingerprint()
    assert describe(mlsys_opt.load_space("capstone"))["catalog_sha256"] == base.fingerprint()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_round_trip(tmp_path, meta, suffix):
    path = write_table(FRONT, tmp_path / f"front{suffix}", meta)
    back = load_result(path)
    assert back.meta["spec"]["name"] == "capstone" and back.meta["catalog_sha256"] == meta["catalog_sha256"]
    pd.testing.assert_frame_equal(back.front.reset_index(drop=True), FRONT, check_dtype=False)
    assert back.front["n_accelerators"].tolist() == [16384, 8192]
    assert "capstone" in back._repr_html_() and back.to_frame() is back.front
    if suffix == ".csv":
        assert (tmp_path / f"front.csv{SIDECAR_SUFFIX}").is_file()


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(MlsysOptError, match="no such file"):
        load_result(tmp_path / "missing.csv")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(MlsysOptError, match="not a readable result file"):
        load_result(bad)
    with pytest.raises(MlsysOptError, match="unknown format"):
        write_table(FRONT, tmp_path / "front.xlsx", {})


def test_sweep_result_notebook_view():
    from mlsys_opt.sweeps.api import SweepResult
    res = SweepResult(front=FRONT, best={}, n_evaluated=10, n_feasible=2, elapsed_s=0.5,
                      space=load_space("capstone"), histograms={}, infeasible_by={"memory": 8})
    page = res._repr_html_()
    assert "capstone" in page and "memory 8" in page and "<table" in page and res.to_frame() is FRONT
