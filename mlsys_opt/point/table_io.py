"""Reading and writing of ``evaluate_table``: table sources in batches, result columns, incremental writers.

Sources (:func:`open_source`): a pandas DataFrame (or dict of columns) or an
Arrow Table / RecordBatch, sliced without copies; a Parquet file read record
batch by record batch (string columns as dictionaries, so a catalog name is
read once per row group, not once per row); a CSV file read block by block by
pyarrow's streaming reader, every column as text (a value in a later block can
not break a type guessed from the first one; the converter reads numbers from
text in one vectorized pass).

Writers (:func:`open_writer`): Parquet (one row group per batch), CSV (one
append per batch), or an in-memory DataFrame; files are written to a temporary
name beside the target and moved into place when complete, so an interrupted
or failed run never leaves a half-written result under the target name.  Bad
rows skipped with ``skip_bad_rows`` go to ``<stem>.bad_rows.csv`` beside it.
"""
from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .._types import BOTTLENECKS
from ..errors import MlsysOptError
from ..scenarios import schema
from ..space.spec import column_name

CSV_BLOCK_BYTES = 1 << 24
# Parquet layout of the results (measured on the 2-core CPU, docs/benchmarks.md): columns whose
# first DICT_SAMPLE_ROWS rows repeat their values >= DICT_MIN_REPEAT times on average (names,
# counts, degrees, most constraint margins) are dictionary-encoded, input_row delta-encoded, the
# rest (the continuous outputs, float32) plain; statistics only for the columns one filters on.
# Compression: see PARQUET_COMPRESSIONS / evaluate_table(compression=).
PARQUET_COMPRESSION = "none"
PARQUET_COMPRESSIONS = ("none", "snappy", "lz4", "zstd", "gzip", "brotli")
DICT_SAMPLE_ROWS = 65536
DICT_MIN_REPEAT = 4
DELTA_MAX_STEP = 1 << 16     # integer columns whose sampled steps stay below it are delta-encoded
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
_COUNT_OUTPUTS = ("n_accelerators", "dp", "replicas")      # counts shown as int64 (sweeps.api.add_human_columns)


# --------------------------------------------------------------------------- sources

class Source:
    """A table read in batches: ``batches(rows)`` yields (batch, first row number, seconds spent reading)."""

    def __init__(self, label: str, columns: list, num_rows: int | None, in_memory: bool, is_csv: bool = False):
        self.label, self.columns, self.num_rows = label, [str(c) for c in columns], num_rows
        self.in_memory, self.is_csv = in_memory, is_csv

    def head(self):                                   # a few rows with the column types of the data
        raise NotImplementedError

    def batches(self, rows: int, columns=None) -> Iterator[tuple[Any, int, float]]:
        """`columns`: a hint (the columns the caller reads); sources may return more."""
        raise NotImplementedError


class _FrameSource(Source):
    def __init__(self, df: pd.DataFrame):
        if not df.columns.is_unique:
            dup = df.columns[df.columns.duplicated()][0]
            raise MlsysOptError(f"table: column {dup!r} appears twice")
        super().__init__("table", list(df.columns), len(df), True)
        self.df = df.set_axis([str(c) for c in df.columns], axis=1)

    def head(self):
        return self.df.iloc[:64]

    def batches(self, rows, columns=None):
        for s in range(0, len(self.df), rows):
            yield self.df.iloc[s:s + rows], s, 0.0


class _ArrowSource(Source):
    def __init__(self, table, label="table"):
        super().__init__(label, table.column_names, table.num_rows, True)
        self.table = table

    def head(self):
        return self.table.slice(0, 64)

    def batches(self, rows, columns=None):
        for s in range(0, self.table.num_rows, rows):
            yield self.table.slice(s, rows), s, 0.0


class _ParquetSource(Source):
    def __init__(self, path: Path):
        import pyarrow.parquet as pq
        try:
            schema_ = pq.read_schema(path)
        except (OSError, pa.ArrowException) as exc:
            raise MlsysOptError(f"{path}: cannot read the Parquet file: {exc}") from None
        strings = [f.name for f in schema_ if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        self.path, self.strings = path, strings
        meta = pq.read_metadata(path)
        super().__init__(str(path), schema_.names, meta.num_rows, False)
        self.schema = schema_

    def head(self):
        return self.schema.empty_table()

    def batches(self, rows, columns=None):
        import pyarrow.parquet as pq
        f = pq.ParquetFile(self.path, read_dictionary=self.strings)
        # one thread: the reading overlaps the device and the writer thread, and pyarrow's pool
        # costs ~1.5-2x the CPU time per row on the 2-core CPU for no shorter wall time
        it = f.iter_batches(batch_size=rows, columns=columns, use_threads=False)
        return _timed_batches(lambda: next(it), lambda _: f"{self.path}: cannot read the Parquet file")


class _CsvSource(Source):
    def __init__(self, path: Path):
        import pyarrow.csv as pacsv
        try:
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES))
            self._head = reader.read_next_batch() if reader.schema.names else None
        except StopIteration:
            self._head = None
        except (OSError, pa.ArrowException) as exc:
            raise MlsysOptError(f"{path}: cannot read the CSV file: {exc}") from None
        names = reader.schema.names
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise MlsysOptError(f"{path}: column {dup!r} appears twice")
        self.path = path
        super().__init__(str(path), names, None, False, is_csv=True)

    def head(self):
        return self._head if self._head is not None else pa.table({c: pa.array([], pa.string()) for c in self.columns})

    def batches(self, rows, columns=None):
        import pyarrow.csv as pacsv
        convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in self.columns},
                                       strings_can_be_null=True)
        reader = pacsv.open_csv(self.path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                                convert_options=convert)
        return _timed_batches(reader.read_next_batch,
                              lambda offset: f"{self.path}: cannot read the CSV file near data row {offset}")


def _timed_batches(read_next: Callable[[], Any], what: Callable[[int], str]) -> Iterator[tuple[Any, int, float]]:
    """The file sources' loop: (batch, first row number, seconds spent reading it) from ``read_next()``
    until StopIteration; a read error becomes one MlsysOptError, ``what(first row of the batch)``: error."""
    offset = 0
    while True:
        t = time.perf_counter()
        try:
            batch = read_next()
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as exc:
            raise MlsysOptError(f"{what(offset)}: {exc}") from None
        yield batch, offset, time.perf_counter() - t
        offset += batch.num_rows


def open_source(table) -> Source:
    """A Source for a DataFrame, dict of columns, Arrow Table / RecordBatch, or a .parquet / .csv path."""
    if isinstance(table, pd.DataFrame):
        return _FrameSource(table)
    if isinstance(table, dict):
        return _FrameSource(pd.DataFrame(table))
    if isinstance(table, pa.RecordBatch):
        return _ArrowSource(pa.Table.from_batches([table]))
    if isinstance(table, pa.Table):
        return _ArrowSource(table)
    if isinstance(table, (str, os.PathLike)):
        path = Path(table)
        if not path.is_file():
            raise MlsysOptError(f"table file {str(table)!r} does not exist")
        return (_ParquetSource if _file_format(path, "table file") == "parquet" else _CsvSource)(path)
    raise MlsysOptError(f"evaluate_table(): expected a pandas DataFrame, a pyarrow Table, or a .csv / .parquet "
                        f"path; got {type(table).__name__}")


def _file_format(path: Path, what: str) -> str:
    """"parquet" or "csv" from the suffix of `path` (sources and writers alike), else MlsysOptError."""
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise MlsysOptError(f"{what} {str(path)!r}: unknown format {suffix or '(no suffix)'!r} "
                        f"(allowed: {', '.join(PARQUET_SUFFIXES + CSV_SUFFIXES)})")


# --------------------------------------------------------------------------- result columns

def _dict_array(codes: np.ndarray, names) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(codes, np.int32)), pa.array(list(names), pa.string()))


def _passthrough(batch, col: str, good: np.ndarray, every: bool) -> pa.Array:
    if isinstance(batch, pd.DataFrame):
        arr = pa.array(batch[col] if every else batch[col].to_numpy()[good], from_pandas=True)
    else:
        arr = batch.column(col)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if not every:
            arr = arr.filter(pa.array(good))
    return arr


def _own_int64(batch, col: str):
    """The batch's own int64 column when it has no missing cell (the converter checked every one, and a
    whole number of an int64 column is that number): no rounding pass; else None."""
    if isinstance(batch, pd.DataFrame):
        c = batch[col]
        return c.to_numpy() if c.dtype == np.int64 else None
    arr = batch.column(col)
    return arr if arr.type == pa.int64() and arr.null_count == 0 else None


def result_columns(batch, offset: int, values: dict, good: np.ndarray, res: dict, ev) -> tuple[dict, set]:
    """(ordered {column: Arrow array or numpy} of the good rows of one batch (see ``point.table`` for the
    layout), the names of the columns carried through from the input (the only ones that may hold nulls))."""
    scenario, specs = ev.scenario, ev.specs
    every = bool(good.all())
    n = len(good)
    plan_cols = ev.plan_columns
    out: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    passed = set()                        # carried-through columns (their own type; may hold nulls)
    rows = np.arange(offset, offset + n, dtype=np.int64)
    out["input_row"] = rows if every else rows[good]
    for col in ev.table_columns:
        if col in plan_cols:
            param = plan_cols[col]
            v = values[param] if every else values[param][good]
            spec = specs[param]
            if spec.kind == "catalog":
                inputs[param] = _dict_array(v, ev.catalog_names[spec.catalog_kind])
            elif spec.kind == "choice":
                inputs[param] = _dict_array(v, spec.choices)
            elif spec.kind == "int":
                own = _own_int64(batch, col) if every and col == param else None
                inputs[param] = own if own is not None else np.rint(v).astype(np.int64)
            else:
                inputs[column_name(scenario, param)] = v
        else:
            inputs[col] = _passthrough(batch, col, good, every)
            passed.add(col)
    results: dict[str, Any] = {}
    for k in ev.output_names:
        v = res[k]
        if k == "bottleneck":
            results[k] = _dict_array(np.clip(np.rint(v), 0, len(BOTTLENECKS) - 1), BOTTLENECKS)
        elif k in _COUNT_OUTPUTS:
            results[k] = np.rint(v).astype(np.int64)
        else:
            results[k] = v
    for j, name in enumerate(ev.constraint_names):
        results["g_" + name.replace("limit:", "limit_")] = res["G"][j]
    results["feasible"] = res["feasible"]
    results["reason_code"] = res["reason_code"]
    results["infeasible_reason"] = _dict_array(res["reason_code"] + 1, ("",) + ev.reason_names)
    results["binding_constraint"] = _dict_array(res["binding"], ev.constraint_names) if ev.constraint_names \
        else _dict_array(np.zeros(len(res["binding"]), np.int32), ("",))
    if "elasticity" in res:
        E = res["elasticity"]
        for i, o in enumerate(ev.sens_outputs):
            for j, p in enumerate(ev.sens_inputs):
                results[f"elasticity_{o}_wrt_{p}"] = np.ascontiguousarray(E[:, i, j])
    carried = set()
    for k, v in inputs.items():
        name = f"{k}_input" if k in results or k == "input_row" else k
        out[name] = v
        if k in passed:
            carried.add(name)
    out.update(results)
    return out, carried


# --------------------------------------------------------------------------- writers

class _Writer:
    """Collects result batches: to a file (parquet / csv) or into a DataFrame; bad rows to a side file."""

    def __init__(self, out, skip_bad_rows: bool, compression: str = PARQUET_COMPRESSION):
        self.compression = compression
        self.out = None if out is None else Path(out)
        self.fmt = None
        if self.out is not None:
            self.fmt = _file_format(self.out, "output")
            if not self.out.parent.exists():
                raise MlsysOptError(f"output {str(out)!r}: the folder {str(self.out.parent)!r} does not exist")
            self.tmp = self.out.with_name(f"{self.out.name}.tmp.{os.getpid()}")
        self.schema = None
        self.file_writer = None
        self.parts: list = []
        self.bad_path = None if self.out is None or not skip_bad_rows else \
            str(self.out.with_name(self.out.stem + ".bad_rows.csv"))
        self._bad_file = None
        self._bad_rows: list = []

    def assemble(self, cols: dict, nullable=frozenset()) -> pa.Table:
        """The Arrow table of one batch's result columns, in the schema of the first batch.

        Every column but those named in `nullable` (the carried-through input columns) is
        declared not null (the writer then keeps no definition levels: ~15 % less encoding time)."""
        arrays = [v if isinstance(v, (pa.Array, pa.ChunkedArray)) else pa.array(v) for v in cols.values()]
        if self.schema is None:
            self.schema = pa.schema([pa.field(k, a.type, nullable=k in nullable) for k, a in zip(cols, arrays)])
        try:
            if list(cols) != self.schema.names:
                raise ValueError(f"columns {list(cols)} instead of {self.schema.names}")
            return pa.Table.from_arrays(arrays, schema=self.schema)     # a type that differs is cast
        except (pa.ArrowException, ValueError) as exc:
            raise MlsysOptError(f"table: a column changes type between batches ({exc}); give it one type") \
                from None

    def write_table(self, table: pa.Table) -> None:
        """Append one assembled batch (a Parquet row group, a CSV block, or a part of the DataFrame)."""
        if self.out is None:
            self.parts.append(table)
            return
        if self.fmt == "parquet":
            import pyarrow.parquet as pq
            if self.file_writer is None:
                dict_cols, encodings = parquet_layout(table)
                stats = [c for c in ("input_row", "feasible", "reason_code") if c in self.schema.names]
                self.file_writer = pq.ParquetWriter(self.tmp, self.schema, compression=self.compression,
                                                    use_dictionary=dict_cols or False, write_statistics=stats,
                                                    column_encoding=encodings or None)
            self.file_writer.write_table(table, row_group_size=max(1, table.num_rows))
        else:
            import pyarrow.csv as pacsv
            table = _decoded(table)
            if self.file_writer is None:
                self.file_writer = pacsv.CSVWriter(self.tmp, table.schema)
            self.file_writer.write_table(table)

    def close(self, meta: dict) -> pd.DataFrame | None:
        import json
        if self._bad_file is not None:
            self._bad_file.close()
        if self.out is None:
            if not self.parts:
                return pd.DataFrame()
            return pa.concat_tables(self.parts).to_pandas()
        if self.file_writer is None:         # no good rows: an empty file with no columns is still written
            if self.fmt == "parquet":
                import pyarrow.parquet as pq
                pq.write_table(pa.table({"input_row": pa.array([], pa.int64())}), self.tmp)
            else:
                self.tmp.write_text("input_row\n", encoding="utf-8")
        else:
            if self.fmt == "parquet":
                self.file_writer.add_key_value_metadata({"mlsys_opt": json.dumps(meta)})
            self.file_writer.close()
        os.replace(self.tmp, self.out)
        return None

    def abort(self) -> None:
        try:
            if self.file_writer is not None:
                self.file_writer.close()
        except Exception:       # noqa: BLE001, S110 - the original error is what matters
            pass
        if self.out is not None and self.tmp.exists():
            self.tmp.unlink()
        if self._bad_file is not None:
            self._bad_file.close()

    def add_bad(self, bad: list) -> None:
        if not bad:
            return
        if self.bad_path is None:
            self._bad_rows += bad
            return
        if self._bad_file is None:
            self._bad_file = open(self.bad_path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._bad_csv = csv.writer(self._bad_file)
            self._bad_csv.writerow(["row", "column", "value", "reason"])
        self._bad_csv.writerows([(b.row, b.column, "" if b.value is None else b.value, b.reason) for b in bad])

    def bad_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self._bad_rows, columns=["row", "column", "value", "reason"])


def parquet_layout(table: pa.Table) -> tuple[list, dict]:
    """(dictionary-encoded columns, {column: encoding}) for the results, from the first batch written.

    Dictionary: names (dictionary / string columns) and every column whose first
    DICT_SAMPLE_ROWS values repeat >= DICT_MIN_REPEAT times on average (a later
    row group whose dictionary outgrows Parquet's page limit falls back to plain by
    itself); input_row and the other integer columns whose sampled consecutive
    differences stay below DELTA_MAX_STEP (ids, counters, timestamps):
    DELTA_BINARY_PACKED (input_row ~0 bytes a row instead of 8; a later jump only
    costs bits); the rest plain.  Only the bytes on disk depend on it, never the
    values read back.
    """
    import pyarrow.compute as pc
    sample = table.slice(0, DICT_SAMPLE_ROWS)
    dict_cols, encodings = [], {}
    def dictionary(f: pa.Field) -> bool:
        if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            return True
        numeric = pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
        return numeric and bool(sample.num_rows) and \
            pc.count_distinct(sample.column(f.name)).as_py() * DICT_MIN_REPEAT <= sample.num_rows

    def small_steps(f: pa.Field) -> bool:
        if not pa.types.is_integer(f.type) or sample.num_rows < 2:
            return False
        col = sample.column(f.name)
        if col.null_count:
            return False
        d = np.diff(col.to_numpy().astype(np.float64))          # exact enough to compare with the step
        return bool((np.abs(d) < DELTA_MAX_STEP).all())

    for f in table.schema:
        if f.name == "input_row" and pa.types.is_integer(f.type):
            encodings[f.name] = "DELTA_BINARY_PACKED"
        elif dictionary(f):
            dict_cols.append(f.name)
        elif small_steps(f):
            encodings[f.name] = "DELTA_BINARY_PACKED"
    return dict_cols, encodings


def _decoded(table: pa.Table) -> pa.Table:
    """Dictionary columns as plain strings (the CSV writer takes no dictionaries)."""
    cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.table(cols, names=table.column_names)


def open_writer(out, skip_bad_rows: bool, compression: str = PARQUET_COMPRESSION) -> _Writer:
    return _Writer(out, skip_bad_rows, compression)


def write_bad_rows(writer: _Writer, bad: list) -> None:
    writer.add_bad(bad)


__all__ = ["CSV_BLOCK_BYTES", "PARQUET_COMPRESSION", "PARQUET_COMPRESSIONS", "Source", "open_source", "open_writer",
           "parquet_layout", "result_columns", "write_bad_rows"]
_ = schema
