"""Batch tables (issue 17), the fast path: rows grouped by micro-batch geometry, the Parquet layout and
codecs of the results, the writer thread.

Compilations dominate (~10-15 s each on the 2-core CPU): the layout and writer tests reuse test_table's
chunk-8 function; the geometry test compiles two (the one-geometry group and `evaluate`'s).
A table's constant parameters are run-time scalars, so each set of columns (a layout) compiles once.
"""
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from test_table import CHUNK, _mixed, _text

import mlsys_opt
from mlsys_opt.errors import MlsysOptError
from mlsys_opt.point.table import evaluate_table
from mlsys_opt.point.table_io import parquet_layout

# a limit gives `evaluate` a jitted function of its own (its cache is keyed by scenario, objectives,
# limits and dtype, not by the micro-batch option: see the report of stop 14)
LIMITS = {"max_time": "1000 day"}


def test_rows_that_give_their_micro_batch_geometry_are_evaluated_as_evaluate_does():
    grid = mlsys_opt.evaluate("training", model="llama3_70b", n_tokens="2e12 token", microbatches=8,
                              hardware=["h100_sxm", "b200"], tp=[4, 8], n_accelerators=[64, 1024],
                              precision="fp8", limits=LIMITS)
    rows = grid[["hardware", "tp", "n_accelerators", "precision"]].astype({"hardware": str, "precision": str})
    rows = rows.assign(model="llama3_70b", n_tokens=2e12)
    # the same 8 configurations twice, interleaved: with microbatches 8 (one geometry, as evaluate
    # compiles it for them) and 0 (the scenario's candidate set); the layout of test_table's
    # equality test, whose candidate-set function this reuses
    table = pd.concat([rows.assign(microbatches=8), rows.assign(microbatches=0)]).sort_index(kind="stable")
    table = table.reset_index(drop=True)
    given = table["microbatches"].to_numpy() > 0
    res = evaluate_table(table, "training", chunk_size=CHUNK)
    gcols = [c for c in grid.columns if c.startswith("g_") and c in res]          # (the limit is evaluate's own)
    outputs = [c for c in mlsys_opt.scenarios.schema.TRAINING_OUTPUTS if c != "bottleneck"]
    for col in outputs + gcols:
        want = grid[col].to_numpy().astype(res[col].dtype)
        np.testing.assert_array_equal(res[col].to_numpy()[given], want, err_msg=col)
    # the candidate-set rows, put back in table order, are what a table of them alone gives (one group)
    auto = evaluate_table(table[~given], "training", chunk_size=CHUNK)
    for col in res.columns:
        if col != "input_row":
            assert (_text(res[col])[~given] == _text(auto[col])).all(), col
    assert (res["n_microbatches"].to_numpy()[given] == 8).all()
    # batches that cut the two groups elsewhere give the same bits
    for b in (3, 5):
        other = evaluate_table(table, "training", chunk_size=CHUNK, batch_rows=b)
        for col in res.columns:
            assert (_text(res[col]) == _text(other[col])).all(), f"batch {b}: {col}"


def test_parquet_layout_and_codecs_keep_the_values(tmp_path):
    df = _mixed(40, seed=6)
    ref = evaluate_table(df, "training", chunk_size=CHUNK)
    for codec in ("none", "zstd", "snappy"):
        out = tmp_path / f"r_{codec}.parquet"
        evaluate_table(df, "training", chunk_size=CHUNK, out=out, compression=codec, batch_rows=16)
        got = pd.read_parquet(out)
        assert list(got.columns) == list(ref.columns)
        for col in ref.columns:
            assert (_text(ref[col]) == _text(got[col])).all(), f"{codec}: {col}"
        meta = pq.read_metadata(out)
        assert meta.num_row_groups == 3                                     # one per batch of 16 rows
        col = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i)
               for i in range(meta.num_columns)}
        assert col["input_row"].compression == ("UNCOMPRESSED" if codec == "none" else codec.upper())
        assert "DELTA_BINARY_PACKED" in col["input_row"].encodings
        assert "RLE_DICTIONARY" in col["tp"].encodings                      # 4 distinct degrees
        assert "RLE_DICTIONARY" in col["hardware"].encodings
    assert str(ref["time_to_train_s"].dtype) == "float32" and str(ref["g_memory"].dtype) == "float32"
    assert ref["feasible"].dtype == bool and ref["tp"].dtype == np.int64
    with pytest.raises(MlsysOptError, match="compression='zstdd'; did you mean 'zstd'"):
        evaluate_table(df, "training", chunk_size=CHUNK, out=tmp_path / "x.parquet", compression="zstdd")


def test_parquet_layout_rule():
    import pyarrow as pa
    n = 4096
    table = pa.table({"input_row": np.arange(n), "few": np.arange(n) % 7, "many": np.random.default_rng(0).random(n),
                      "name": pa.array(["a", "b"] * (n // 2)), "quarter": np.arange(n) // 4})
    dict_cols, enc = parquet_layout(table)
    assert enc == {"input_row": "DELTA_BINARY_PACKED"}
    assert dict_cols == ["few", "name", "quarter"]               # repeated >= 4 times on average; not "many"


def test_an_error_on_the_writer_thread_is_raised_and_leaves_no_file(tmp_path):
    df = _mixed(24, seed=7)
    df["note"] = [1] * 16 + ["x"] * 8           # a carried-through column that changes type in the second batch
    out = tmp_path / "r.parquet"
    with pytest.raises(MlsysOptError, match="changes type between batches"):
        evaluate_table(df, "training", chunk_size=CHUNK, out=out, batch_rows=16)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_parquet_statistics_spare_reading_good_integer_columns_but_not_bad_ones(tmp_path):
    from mlsys_opt.point.table_convert import plan_columns
    from mlsys_opt.point.table_io import open_source
    df = _mixed(30, seed=8).assign(microbatches=4)
    df.to_parquet(tmp_path / "t.parquet", index=False, row_group_size=10)
    src = open_source(tmp_path / "t.parquet")
    plan = plan_columns(src.columns, "training", mlsys_opt.load_catalog())
    # int64 columns within bounds; not the floats (NaN escapes statistics), names, or the option column
    assert src.valid_by_statistics(plan) == {"n_accelerators", "tp"}
    df.loc[25, "tp"] = 0                                               # below tp's minimum 1, in row group 3
    df.to_parquet(tmp_path / "t.parquet", index=False, row_group_size=10)
    src = open_source(tmp_path / "t.parquet")
    assert src.valid_by_statistics(plan) == {"n_accelerators"}
    with pytest.raises(MlsysOptError, match="row 25, column tp, value 0"):
        evaluate_table(tmp_path / "t.parquet", "training", chunk_size=CHUNK, out=tmp_path / "r.parquet")


def test_a_parquet_run_compiles_once_for_its_columns(tmp_path):
    # the check skips integer columns its statistics prove good; the compilation started during the
    # check must still be the one the run calls (every column parameter an array), not a second one
    from mlsys_opt.point import table_eval
    rows = pd.DataFrame({"hardware": ["h100_sxm", "b200"] * 4, "tp": [4, 8] * 4, "n_accelerators": [64] * 8,
                         "precision": ["fp8"] * 8, "model": "llama3_70b", "n_tokens": 2e12, "microbatches": 8})
    evaluate_table(rows, "training", chunk_size=CHUNK)            # compiled here (or by an earlier test)
    sizes = {k: f._cache_size() for k, f in table_eval._FNS.items() if k[0] != "sens"}
    rows.to_parquet(tmp_path / "t.parquet", index=False)
    s = evaluate_table(tmp_path / "t.parquet", "training", chunk_size=CHUNK, out=tmp_path / "r.parquet")
    assert s.n_evaluated == 8
    assert {k: f._cache_size() for k, f in table_eval._FNS.items() if k[0] != "sens"} == sizes
