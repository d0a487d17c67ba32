"""Batch table evaluation (issue 17): conversion of every column kind, bad rows, chunk and input-format
independence, equality with `mlsys_opt.evaluate`, the `evaluate --table` command.

Compilations are the cost here (~15 s each for the training scenario on the 2-core CPU), so every fast
test evaluates with chunk_size=8 (one compilation) except the chunk-size check (a second one) and the
reference `evaluate` call (a third); elasticities and several devices are `slow`.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mlsys_opt
from mlsys_opt.errors import MlsysOptError
from mlsys_opt.point.table import BadRowsError, convert_table, evaluate_table
from mlsys_opt.point.table_io import open_source

CHUNK = 8
CAT = mlsys_opt.load_catalog()


def _mixed(n: int, seed: int = 0) -> pd.DataFrame:
    """n sampled training configurations (not a grid), names partly as aliases."""
    rng = np.random.default_rng(seed)
    hw = np.array(["h100_sxm", "H100", "b200", "a100_80gb", "h200"])
    return pd.DataFrame({
        "job": [f"j{i}" for i in range(n)],
        "hardware": hw[rng.integers(0, len(hw), n)],
        "model": np.array(["llama3_8b", "llama3_70b"])[rng.integers(0, 2, n)],
        "n_accelerators": 2 ** rng.integers(3, 11, n),
        "tp": 2 ** rng.integers(0, 4, n),
        "precision": np.array(["bf16", "fp8", "fp16"])[rng.integers(0, 3, n)],
        "n_tokens": np.round(10 ** rng.uniform(11, 13, n), -6),
        "recovery_min": rng.choice([5.0, 10.0, 30.0], n),
    })


def _text(col: pd.Series) -> np.ndarray:
    """Values as strings, empty for missing (a CSV reads an empty reason back as NaN)."""
    obj = col.astype(object)
    return np.array(["" if pd.isna(v) else str(v) for v in obj], dtype=object)


# --------------------------------------------------------------------------- conversion (no compilation)

def test_convert_every_column_kind_units_and_aliases():
    df = pd.DataFrame({
        "hardware": ["H100", "h100 sxm", "b200", None],                     # alias, display-ish, slug, blank
        "model": ["llama3_70b"] * 4,
        "precision": ["bf16", "FP8", "fp16", "fp32"],                       # choice with alias, any case
        "tp": [8, "4", 2.0, 1],                                             # ints as numbers and text
        "n_tokens": ["15e12 token", 1e12, "2e12", "1.5 trillion"],          # unit strings and numbers
        "recovery_min": [10, 5, np.nan, 1],                                 # unit in the column name
        "checkpoint_bw_GB_per_s": [100, 50, 25, 10],
        "checkpoint_interval": ["30 min", "0 s", "1 h", "2 day"],           # units in the values
        "note": ["a", "b", "c", "d"],                                       # carried through
    })
    p, bad = convert_table(df, "training", CAT, set={"region": "quebec"})
    assert bad == []
    h100, b200 = CAT.index("accelerators", "h100_sxm"), CAT.index("accelerators", "b200")
    assert p["hardware"].tolist() == [h100, h100, b200, h100]               # blank -> the default h100_sxm
    assert p["hardware"].dtype == np.int32
    assert p["region"].tolist() == [CAT.index("regions", "quebec")] * 4
    prec = mlsys_opt.scenarios.schema.PRECISIONS
    assert p["precision"].tolist() == [prec.index(x) for x in ("fp16", "fp8", "fp16", "fp32")]
    np.testing.assert_array_equal(p["tp"], [8, 4, 2, 1])
    np.testing.assert_array_equal(p["n_tokens"], [15e12, 1e12, 2e12, 1.5e12])
    np.testing.assert_array_equal(p["recovery"], [600, 300, 600, 60])         # NaN -> default "10 min"
    np.testing.assert_allclose(p["checkpoint_bw"], [100e9, 50e9, 25e9, 10e9])
    np.testing.assert_array_equal(p["checkpoint_interval"], [1800, 0, 3600, 2 * 86400])
    assert set(p) == set(mlsys_opt.scenarios.schema.TRAINING_PARAMS)
    # the same table as Arrow (strings dictionary-encoded), Parquet and CSV: the same numbers
    arrow = pa.Table.from_pandas(df.astype({"tp": str, "n_tokens": str}), preserve_index=False)
    arrow = arrow.set_column(0, "hardware", arrow.column("hardware").dictionary_encode())
    q, bad = convert_table(arrow, "training", CAT, set={"region": "quebec"})
    assert bad == [] and all(np.array_equal(p[k], q[k]) for k in p)


def test_convert_serving_rates_and_csv_text():
    # a CSV reads every cell as text: "10" in a unit-suffixed column is 10 of that unit, "5 /s" keeps its own
    df = pd.DataFrame({"model": ["llama3_8b"] * 3, "request_rate_per_s": ["10", "5 /s", "0.5"],
                       "duration_day": ["30", "7", None], "batch": ["16", "8", "1"]})
    p, bad = convert_table(df, "serving", CAT)
    assert bad == []
    np.testing.assert_array_equal(p["request_rate"], [10, 5, 0.5])
    np.testing.assert_array_equal(p["duration"], [30 * 86400, 7 * 86400, 365.25 * 86400])   # blank: "1 year"
    np.testing.assert_array_equal(p["batch"], [16, 8, 1])
    _, bad = convert_table(df.assign(request_rate_per_s=["10", "-1", "3 GB"]), "serving", CAT)
    assert [(b.row, b.value) for b in bad] == [(1, "-1"), (2, "3 GB")]


def test_convert_formats_read_the_same(tmp_path):
    df = _mixed(30)
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet", index=False)
    ref, _ = convert_table(df, "training", CAT)
    for path in ("t.csv", "t.parquet"):
        src = open_source(tmp_path / path)
        (batch, offset, _), = list(src.batches(1000))
        got, bad = convert_table(batch, "training", CAT)
        assert bad == [] and offset == 0
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{path}: {k}")


def test_bad_cells_name_row_column_value_reason():
    df = pd.DataFrame({"hardware": ["H100", "h1000", "b200"], "model": ["llama3_70b"] * 3,
                       "n_tokens": ["1e12", "5 GB", "1e12"], "tp": [8, -1, 2.5],
                       "precision": ["fp16", "fp16", "fp5"]})
    _, bad = convert_table(df, "training", CAT, row_offset=100)
    got = {(b.row, b.column): (b.value, b.reason) for b in bad}
    assert set(got) == {(101, "hardware"), (101, "n_tokens"), (101, "tp"), (102, "tp"), (102, "precision")}
    assert "did you mean 'h100_sxm'" in got[(101, "hardware")][1]
    assert got[(101, "n_tokens")] == ("5 GB", "expected tokens (tokens), got '5 GB'")
    assert "below the minimum 1" in got[(101, "tp")][1]
    assert "expected an integer" in got[(102, "tp")][1]
    assert "not an allowed choice" in got[(102, "precision")][1]


@pytest.mark.parametrize("df, set_, message", [
    (pd.DataFrame({"hardware": ["h100_sxm"], "n_tokens": [1e12]}), None, "missing required column 'model'"),
    (pd.DataFrame({"model": ["llama3_70b"], "n_tokens": [1e12], "n_acelerators": [8]}), None,
     "did you mean 'n_accelerators'"),
    (pd.DataFrame({"model": ["llama3_70b"], "n_tokens": [1e12], "recovery": [600]}), None,
     "put the unit in the column name (recovery_s)"),
    (pd.DataFrame({"model": ["llama3_70b"], "n_tokens": [1e12], "tp": [8]}), {"tp": 4},
     "both a table column"),
    (pd.DataFrame({"model": ["llama3_70b"], "n_tokens": [1e12], "recovery_s": [1], "recovery_min": [1]}), None,
     "both give recovery"),
])
def test_column_mistakes_are_one_error(df, set_, message):
    from mlsys_opt.point.table_convert import check_units, plan_columns
    with pytest.raises(MlsysOptError) as exc:
        convert_table(df, "training", CAT, set=set_)
        check_units(plan_columns(list(df.columns), "training", CAT, set=set_), df)
    assert message in str(exc.value)


# --------------------------------------------------------------------------- evaluation

def test_bad_rows_refused_before_evaluation_or_skipped(tmp_path):
    df = _mixed(40)
    df.loc[[3, 7], "hardware"] = "h1000"
    df.loc[range(10, 35), "tp"] = -2                      # 25 more bad cells: 27 in all
    with pytest.raises(BadRowsError) as exc:
        evaluate_table(df, "training", chunk_size=CHUNK, out=tmp_path / "r.parquet")
    msg = str(exc.value)
    assert exc.value.n_bad == 27 and len(exc.value.bad) == 20
    assert "row 3, column hardware, value 'h1000'" in msg and "... and 7 more bad cell(s)" in msg
    assert not (tmp_path / "r.parquet").exists() and os.listdir(tmp_path) == []

    s = evaluate_table(df, "training", chunk_size=CHUNK, out=tmp_path / "r.parquet", skip_bad_rows=True)
    assert (s.n_rows, s.n_bad_rows, s.n_evaluated) == (40, 27, 13)
    side = pd.read_csv(tmp_path / "r.bad_rows.csv")
    assert len(side) == 27 and set(side["row"]) == {3, 7, *range(10, 35)}
    res = pd.read_parquet(tmp_path / "r.parquet")
    assert sorted(res["input_row"].tolist() + sorted(set(side["row"]))) == list(range(40))   # nothing dropped
    ok = evaluate_table(df.drop(index=[3, 7, *range(10, 35)]), "training", chunk_size=CHUNK)
    for col in ("time_to_train_s", "tco_usd", "g_memory", "feasible"):
        np.testing.assert_array_equal(res[col].to_numpy(), ok[col].to_numpy())


def test_cli_exit_codes(tmp_path, capsys):
    from mlsys_opt.cli.app import main
    df = _mixed(12, seed=2)
    df.to_csv(tmp_path / "good.csv", index=False)
    bad = df.copy()
    bad.loc[4, "model"] = "llama99"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert main(["evaluate", "--table", str(tmp_path / "good.csv"), "-o", str(tmp_path / "r.parquet"),
                 "--chunk-size", str(CHUNK), "--set", "region=norway", "-q"]) == 0
    res = pd.read_parquet(tmp_path / "r.parquet")
    assert len(res) == 12 and "region" not in res              # a --set value is a setting, not a column
    capsys.readouterr()
    assert main(["evaluate", "--table", str(tmp_path / "bad.csv"), "-o", str(tmp_path / "b.parquet"),
                 "--chunk-size", str(CHUNK)]) == 2
    err = capsys.readouterr().err
    assert "row 4 (CSV line 6), column model, value 'llama99'" in err and not (tmp_path / "b.parquet").exists()
    assert main(["evaluate", "--table", str(tmp_path / "bad.csv"), "-o", str(tmp_path / "b.csv"),
                 "--chunk-size", str(CHUNK), "--skip-bad-rows"]) == 0
    err = capsys.readouterr().err
    assert "11 evaluated, 1 bad" in err and "feasible" in err and "rows/s" in err
    assert pd.read_csv(tmp_path / "b.bad_rows.csv")["row"].tolist() == [4]
    infeasible = df.assign(tp=8, n_accelerators=12)            # tp does not divide the fleet
    infeasible.to_parquet(tmp_path / "inf.parquet", index=False)
    assert main(["evaluate", "--table", str(tmp_path / "inf.parquet"), "-o", str(tmp_path / "i.csv"),
                 "--chunk-size", str(CHUNK), "-q"]) == 3
    assert main(["evaluate", "--table", str(tmp_path / "inf.parquet"), "-o", str(tmp_path / "i.csv"),
                 "--chunk-size", str(CHUNK), "-q", "--allow-infeasible"]) == 0
    assert main(["evaluate", "--table", str(tmp_path / "good.csv"), "-o", str(tmp_path / "x.json")]) == 2
    assert main(["evaluate", "--table", str(tmp_path / "missing.csv")]) == 2
    df.rename(columns={"n_accelerators": "n_acelerators"}).to_csv(tmp_path / "typo.csv", index=False)
    assert main(["evaluate", "--table", str(tmp_path / "typo.csv"), "-q"]) == 2
    assert "did you mean 'n_accelerators'" in capsys.readouterr().err


def test_equal_to_evaluate_row_for_row():
    grid = mlsys_opt.evaluate("training", model="llama3_70b", n_tokens="2e12 token",
                              hardware=["h100_sxm", "b200"], tp=[4, 8], n_accelerators=[64, 1024],
                              precision=["fp16", "fp8"])
    assert len(grid) == 16
    table = grid[["hardware", "tp", "n_accelerators", "precision"]].astype({"hardware": str, "precision": str})
    # (microbatches 0, the default: the scenario picks the micro-batch; test_table_pipeline reuses this layout)
    res = evaluate_table(table.assign(model="llama3_70b", n_tokens=2e12, microbatches=0), "training",
                         chunk_size=CHUNK)
    assert len(res) == 16
    outputs = [c for c in mlsys_opt.scenarios.schema.TRAINING_OUTPUTS if c not in ("bottleneck",)]
    gcols = [c for c in grid.columns if c.startswith("g_")]
    for col in outputs + gcols + ["feasible", "reason_code"]:
        # the table stores the run's dtype (float32); evaluate's frame holds the same numbers as float64
        # (under the tests' x64 the efficiency leaves promote both computations alike)
        want = grid[col].to_numpy().astype(res[col].dtype)
        np.testing.assert_array_equal(res[col].to_numpy(), want, err_msg=col)
    assert (res["bottleneck"].astype(str).to_numpy() == grid["bottleneck"].astype(str).to_numpy()).all()
    assert (res["infeasible_reason"].astype(str).to_numpy() == grid["infeasible_reason"].to_numpy()).all()
    assert (res["binding_constraint"].astype(str).to_numpy() == grid["binding_constraint"].to_numpy()).all()


def test_identical_across_chunks_batches_and_formats(tmp_path):
    df = _mixed(37, seed=1)
    ref = evaluate_table(df, "training", chunk_size=CHUNK)
    assert ref["input_row"].tolist() == list(range(37)) and ref["job"].tolist() == df["job"].tolist()
    assert "recovery_s" in ref and "n_accelerators_input" in ref and ref["feasible"].any()
    others = {f"batch {b}": evaluate_table(df, "training", chunk_size=CHUNK, batch_rows=b) for b in (5, 13)}
    others["chunk 16"] = evaluate_table(df, "training", chunk_size=16, batch_rows=21)
    others["arrow"] = evaluate_table(pa.Table.from_pandas(df, preserve_index=False), "training", chunk_size=CHUNK)
    df.to_csv(tmp_path / "in.csv", index=False)
    df.to_parquet(tmp_path / "in.parquet", index=False, row_group_size=10)
    others["csv"] = evaluate_table(tmp_path / "in.csv", "training", chunk_size=CHUNK)
    s = evaluate_table(str(tmp_path / "in.parquet"), "training", chunk_size=CHUNK, out=tmp_path / "o.parquet",
                       batch_rows=16)
    assert s.n_rows == 37 and s.n_feasible == int(ref["feasible"].sum())
    assert sum(s.infeasible_by.values()) == 37 - s.n_feasible
    others["parquet -> parquet"] = pd.read_parquet(tmp_path / "o.parquet")
    evaluate_table(tmp_path / "in.parquet", "training", chunk_size=CHUNK, out=tmp_path / "o.csv")
    others["parquet -> csv"] = pd.read_csv(tmp_path / "o.csv")
    meta = json.loads(pq.read_metadata(tmp_path / "o.parquet").metadata[b"mlsys_opt"])
    assert meta["scenario"] == "training"
    for name, got in others.items():
        assert list(got.columns) == list(ref.columns), name
        for col in ref.columns:
            a, b = ref[col], got[col]
            if a.dtype.kind in "fiub" and b.dtype.kind in "fiub":
                # a CSV holds float32 values in their shortest decimal form: read back, they round to the same float32
                np.testing.assert_array_equal(a.to_numpy(), b.to_numpy().astype(a.dtype), err_msg=f"{name}: {col}")
            else:
                assert (_text(a) == _text(b)).all(), f"{name}: {col}"


# --------------------------------------------------------------------------- slow: elasticities, devices

@pytest.mark.slow
def test_sensitivity_columns_equal_wall21():
    df = _mixed(6, seed=3)
    res = evaluate_table(df, "training", chunk_size=CHUNK, sensitivity=["time_to_train_s"], dtype="float64")
    cfg = df.drop(columns=["job", "recovery_min"]).iloc[2].to_dict()
    cfg["recovery"] = f"{df['recovery_min'].iloc[2]} min"
    ref = mlsys_opt.sensitivity("training", cfg, outputs=["time_to_train_s"], dtype="float64")
    for _, r in ref.iterrows():
        got = res[f"elasticity_time_to_train_s_wrt_{r['parameter']}"].iloc[2]
        np.testing.assert_allclose(got, r["elasticity"], rtol=1e-9, atol=1e-12, err_msg=r["parameter"])


@pytest.mark.slow
def test_identical_across_device_counts():
    script = textwrap.dedent("""
        import json, sys
        import numpy as np, pandas as pd, jax
        sys.path.insert(0, sys.argv[1])
        from test_table import _mixed
        from mlsys_opt.point.table import evaluate_table
        df = _mixed(29, seed=4)
        a = evaluate_table(df, "training", chunk_size=8, devices=2)
        b = evaluate_table(df, "training", chunk_size=8, devices=1)
        same = all(np.array_equal(a[c].astype(str), b[c].astype(str)) for c in a.columns)
        print(json.dumps({"devices": len(jax.devices()), "same": same, "rows": len(a)}))
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__)], env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r == {"devices": 2, "same": True, "rows": 29}
