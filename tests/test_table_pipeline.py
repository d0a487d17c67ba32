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
from mlsys_opt.point.table import BadRowsError, evaluate_table
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


def test_a_bad_cell_late_in_a_parquet_file_leaves_nothing_written(tmp_path):
    # a file is read once: the batches before the bad one are evaluated, then the rest only checked
    df = _mixed(30, seed=8)
    df.loc[25, "tp"] = 0                                               # below tp's minimum 1, in the last batch
    df.loc[27, "model"] = "llama99"
    df.to_parquet(tmp_path / "t.parquet", index=False, row_group_size=10)
    out = tmp_path / "r.parquet"
    with pytest.raises(BadRowsError) as exc:
        evaluate_table(tmp_path / "t.parquet", "training", chunk_size=CHUNK, out=out, batch_rows=8)
    assert exc.value.n_bad == 2 and "row 25, column tp, value 0" in str(exc.value)
    assert "row 27, column model, value 'llama99'" in str(exc.value) and "nothing was written" in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]          # no result, no temporary file
    s = evaluate_table(tmp_path / "t.parquet", "training", chunk_size=CHUNK, out=out, batch_rows=8,
                       skip_bad_rows=True)
    assert (s.n_rows, s.n_bad_rows, s.n_evaluated) == (30, 2, 28)
    assert sorted(pd.read_parquet(out)["input_row"]) == [i for i in range(30) if i not in (25, 27)]


def test_non_finite_objectives_or_constraints_are_infeasible_as_in_a_sweep():
    import jax.numpy as jnp

    from mlsys_opt.point.table_eval import row_feasibility
    from mlsys_opt.sweeps.step import feasibility
    nan, inf = float("nan"), float("inf")
    # rows: feasible; violated (constraint 1); NaN objective with satisfied constraints; -inf margin;
    # +inf margin; NaN margin
    F = [jnp.array([1.0, 1.0, nan, 1.0, 1.0, 1.0]), jnp.array([2.0, 2.0, 2.0, 2.0, 2.0, 2.0])]
    G = [jnp.array([-1.0, -1.0, -1.0, -inf, -1.0, nan]), jnp.array([-1.0, 0.5, -1.0, -1.0, inf, -1.0])]
    feas, reason, binding = row_feasibility(F, G, 6)
    assert np.asarray(feas).tolist() == [True, False, False, False, False, False]
    assert np.asarray(reason).tolist() == [-1, 1, 2, 2, 2, 2]                   # 2 = len(G) = non_finite
    assert np.asarray(binding)[1] == 1
    # the sweep's counts of the same lanes: feasible, then per constraint, then non_finite
    sweep_feas, counts = feasibility(F, G, jnp.ones(6, bool))
    assert np.asarray(sweep_feas).tolist() == np.asarray(feas).tolist()
    assert np.asarray(counts).tolist() == np.bincount(np.asarray(reason)[np.asarray(reason) >= 0], minlength=3).tolist()
    feas, reason, _ = row_feasibility([jnp.array([nan, 1.0])], [], 2)           # no constraint at all
    assert np.asarray(feas).tolist() == [False, True] and np.asarray(reason).tolist() == [0, -1]


def test_results_declare_their_columns_not_null_and_delta_encode_id_columns(tmp_path):
    df = _mixed(40, seed=9).assign(job_id=np.arange(1000, 1040), note=[None, "x"] * 20)
    out = tmp_path / "r.parquet"
    evaluate_table(df, "training", chunk_size=CHUNK, out=out, batch_rows=16)
    schema = pq.read_schema(out)
    carried = {"job", "job_id", "note"}                                   # the input's own columns
    assert all(schema.field(c).nullable for c in carried)
    assert not any(f.nullable for f in schema if f.name not in carried)
    assert pd.read_parquet(out)["note"].isna().sum() == 20
    meta = pq.read_metadata(out)
    col = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i) for i in range(meta.num_columns)}
    assert "DELTA_BINARY_PACKED" in col["job_id"].encodings                # consecutive ids: a few bits a row
    summary = evaluate_table(df, "training", chunk_size=CHUNK).attrs["summary"]
    assert "non_finite" in summary.infeasible_by                          # counted as a sweep's infeasible_by


def test_a_parquet_run_compiles_once_for_its_columns(tmp_path):
    # the compilation started on the first batch must be the one the run calls (every column
    # parameter an array, as dispatch passes them), not a second one
    from mlsys_opt.point import table_cache
    rows = pd.DataFrame({"hardware": ["h100_sxm", "b200"] * 4, "tp": [4, 8] * 4, "n_accelerators": [64] * 8,
                         "precision": ["fp8"] * 8, "model": "llama3_70b", "n_tokens": 2e12, "microbatches": 8})
    evaluate_table(rows, "training", chunk_size=CHUNK)            # compiled here (or by an earlier test)
    assert table_cache.usable("training")                          # (tests/conftest.py: a cache folder of its own)
    before = dict(table_cache.STATS)
    rows.to_parquet(tmp_path / "t.parquet", index=False)
    s = evaluate_table(tmp_path / "t.parquet", "training", chunk_size=CHUNK, out=tmp_path / "r.parquet")
    assert s.n_evaluated == 8 and s.compile_status == "reused"
    assert table_cache.STATS["compiled"] == before["compiled"] and table_cache.STATS["loaded"] == before["loaded"]


def test_a_later_process_loads_the_stored_executable_and_gets_the_same_bits(monkeypatch):
    # a new process has none in memory: it loads the entry instead of tracing, lowering, compiling
    from mlsys_opt.point import table_cache, table_eval
    df = _mixed(20, seed=10)
    ref = evaluate_table(df, "training", chunk_size=CHUNK)
    monkeypatch.setattr(table_cache, "_LOADED", {})
    monkeypatch.setattr(table_eval, "_FNS", {})
    got = evaluate_table(df, "training", chunk_size=CHUNK)
    assert got.attrs["summary"].compile_status == "loaded"
    for col in ref.columns:
        assert (_text(ref[col]) == _text(got[col])).all(), col
    # a scenario function that is not the package's own is never stored nor loaded
    from mlsys_opt import scenarios
    monkeypatch.setitem(scenarios.SCENARIO_FNS, "training", lambda *a, **k: scenarios.training(*a, **k))
    assert not table_cache.usable("training")


def test_the_compiled_table_cache_stores_loads_and_rebuilds_a_corrupt_entry(tmp_path, monkeypatch):
    import jax

    from mlsys_opt.point import table_cache
    monkeypatch.setenv("MLSYS_OPT_STEP_CACHE", str(tmp_path))
    monkeypatch.setattr(table_cache, "_LOADED", {})
    fn = jax.jit(lambda x, c: x * c + 1.0)
    args = (np.arange(4, dtype=np.float32), np.float32(3.0))
    devices = tuple(jax.devices()[:1])
    program = {"test": "a tiny program"}
    exe, status = table_cache.load_or_compile(fn, args, program, devices)
    [entry] = tmp_path.glob("*.step")
    assert status == "compiled and stored"
    want = np.asarray(exe(*args))
    assert table_cache.load_or_compile(fn, args, program, devices)[1] == "reused"
    table_cache._LOADED.clear()                                          # a new process: loads the entry
    exe, status = table_cache.load_or_compile(fn, args, program, devices)
    assert status == "loaded" and (np.asarray(exe(*args)) == want).all()
    # another shape or program is another entry
    assert table_cache.load_or_compile(fn, (np.arange(8, dtype=np.float32), args[1]), program, devices)[1] \
        == "compiled and stored"
    entry.write_bytes(entry.read_bytes()[:-10] + b"corrupted!")                # a truncated / damaged entry
    table_cache._LOADED.clear()
    exe, status = table_cache.load_or_compile(fn, args, program, devices)
    assert status == "compiled and stored" and (np.asarray(exe(*args)) == want).all()

