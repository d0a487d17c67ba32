"""Batch benchmark sweeps: every wall's figures for every row of a user's table (issue 17).

``evaluate_table(table, "training")`` takes a pandas DataFrame, an Arrow table,
or a CSV / Parquet path, one configuration per row (not a grid), and returns
(or writes) one result row per input row:

    input_row                    0-based position of the row in the input
    <parameter columns>          the table's parameters, read and normalised: catalog
                                 slugs ("H100" -> h100_sxm) and choices as dictionary-
                                 encoded strings, int64 counts, float64 SI values with
                                 the unit in the name (``recovery_min`` -> ``recovery_s``),
                                 as ``mlsys_opt.evaluate`` shows them
    <other columns>              carried through unchanged (their own type)
    <every scenario output>      ``time_to_train_s``, ``tco_usd``, ... (schema.OUTPUTS,
                                 unit in the name) in the run's float dtype: float32 by
                                 default (the scenario is evaluated in float32; float64
                                 with ``dtype="float64"``); ``bottleneck`` as a name;
                                 counts (n_accelerators, dp, replicas) int64
    g_<constraint>               margins in the run's float dtype, <= 0 feasible
                                 (structural, then ``limit_<output>``)
    feasible, reason_code, infeasible_reason, binding_constraint
                                 feasible: bool (objectives and constraints finite, every
                                 g <= 0, as a sweep and ``evaluate`` decide); reason_code:
                                 int32, the most violated constraint of an infeasible row,
                                 len(constraints) = ``non_finite`` for a NaN/inf objective
                                 or constraint, -1 feasible (a sweep's codes); the two
                                 names dictionary-encoded
    elasticity_<out>_wrt_<in>    with ``sensitivity=[out, ...]``: ∂ln out/∂ln in (wall 21)

A table column that has the name of a result column (``n_accelerators`` is a
training parameter and output) is written as ``<name>_input``.

A Parquet result stores names, counts, degrees and the few-valued outputs
(most constraint margins, micro-batch geometry) dictionary-encoded, ``input_row``
and id-like integer columns delta-encoded and the continuous outputs plain
(``table_io.parquet_layout``; ~58 bytes a row of the benchmark's training table
instead of ~200), every column but the carried-through ones declared not null
(no definition levels to encode), uncompressed unless ``compression=`` names a
codec: only the bytes on disk depend on it, never the values read back.

How (the sweep's path, `sweeps.api`): the rows are read in batches (Parquet
record batches, CSV blocks, DataFrame slices), converted once per batch by
:func:`~mlsys_opt.point.table_convert.convert_table`'s column plan (names ->
catalog rows, units -> SI floats, one parse per distinct value), grouped by
the scenario's trace-time options their values give (a training row with its
micro-batch geometry is evaluated at that one geometry, as ``evaluate`` does),
cut into fixed-size chunks (the last padded with its first row), evaluated by
one jitted ``sweeps.api.evaluate_columns`` per (options, chunk size) with the
chunk's rows sharded over the devices (a 1-D mesh, the catalog tables and the
constant parameters replicated), and written batch by batch (Parquet row
groups, CSV appends).  Three threads and the device overlap: the main thread
reads, converts and dispatches batch k+2 (the device evaluates asynchronously),
an assembling thread waits for batch k+1 and builds its result columns, a writer
thread encodes and writes batch k.  The compilation (or the persistent cache's
load) runs on a thread while the first batches are read and converted.  Host
memory is flat in the number of rows for file inputs: a few batches in flight.

Bad rows (unknown name, wrong unit, negative or fractional value, empty
required cell): by default every row is checked and, if any is bad, NOTHING is
written: :class:`BadRowsError` (an MlsysOptError: exit 2 on the command line)
lists the first 20 (row, column, value, reason) and counts the rest.  A
DataFrame / Arrow table is checked whole before any evaluation; a file is read
once, its batches evaluated as they come until the first bad cell, after which
the rest is only checked and the temporary result removed.  With
``skip_bad_rows=True`` the good rows are evaluated and the bad ones are written
with their reasons to ``<out stem>.bad_rows.csv`` (or ``attrs["bad_rows"]`` of
the returned DataFrame); nothing is dropped silently.
"""
from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import MlsysOptError, did_you_mean
from .table_convert import (
    BadRow,
    ColumnPlan,
    check_units,
    convert_columns,
    convert_table,
    plan_columns,
)
from .table_eval import TableEvaluator
from .table_io import (
    PARQUET_COMPRESSION,
    PARQUET_COMPRESSIONS,
    open_source,
    open_writer,
    result_columns,
    write_bad_rows,
)

# rows per jitted call: the candidate micro-batch set keeps 4 lanes of every intermediate, which stay
# in the 2-core CPU's caches at 16,384 rows (0.65-0.73 CPU-s per 10^6 training rows) and not at
# 65,536 (1.09; one geometry: 0.30 vs 0.38); docs/benchmarks.md
DEFAULT_CHUNK = 16384
BATCH_ROWS = 1 << 18       # rows read, converted and written together (a Parquet row group), in whole chunks
WRITE_QUEUE = 1            # evaluated batches waiting for the writer thread (host memory in flight)
READ_AHEAD = 4             # batches read and converted while the first compilation runs
MAX_LISTED = 20            # bad rows named in the error; the rest are counted


class BadRowsError(MlsysOptError):
    """Rows that cannot be read (``.bad``: the first BadRows, ``.n_bad``: how many cells in all)."""

    def __init__(self, message: str, bad: list, n_bad: int):
        super().__init__(message)
        self.bad = bad
        self.n_bad = n_bad


class TableSummary(NamedTuple):
    """What an ``evaluate_table`` run did (``attrs["summary"]`` of a returned DataFrame).

    n_rows: rows read; n_evaluated: rows evaluated (n_rows - n_bad_rows);
    n_feasible: feasible rows; infeasible_by: constraint -> infeasible rows it
    binds most (reason codes; ``non_finite``: rows with a NaN/inf objective or
    constraint); bad: the first BadRows (all of them in the side file);
    timings_s: wall seconds of the main thread's read / convert / dispatch,
    its wait for the compilation (compile, overlapping the reading of the
    first batches) and for the next stage (queue), of the assembling thread's wait
    for the device (evaluate) and building of the result columns (assemble),
    and of the writer thread's encoding + writing (write) -- the threads and
    the device overlap; cpu_s: CPU seconds of those threads per stage
    (``time.thread_time``; the device's work is the process's CPU time less these);
    compile_status: how the chunk function was obtained ("loaded" from the compiled-table cache,
    "compiled and stored", "reused" in this process; ``point.table_cache``).
    """
    n_rows: int
    n_evaluated: int
    n_bad_rows: int
    n_feasible: int
    infeasible_by: dict
    elapsed_s: float
    rows_per_s: float
    timings_s: dict
    bad: list
    out: str | None
    bad_rows_path: str | None
    extra_columns: tuple
    cpu_s: dict
    compile_status: str = ""

    def describe(self) -> str:
        """A few lines for stderr: rows, feasible share, top infeasibility reasons, rows/s."""
        share = self.n_feasible / self.n_evaluated if self.n_evaluated else 0.0
        skipped = f" (skipped: {self.bad_rows_path})" if self.n_bad_rows and self.bad_rows_path else ""
        split = ", ".join(f"{k} {v:.2f} s" for k, v in self.timings_s.items())
        lines = [(f"{self.n_rows:,} rows: {self.n_evaluated:,} evaluated, {self.n_bad_rows:,} bad{skipped}; "
                  f"{self.n_feasible:,} feasible ({100 * share:.1f} %)"),
                 (f"{self.rows_per_s:,.0f}" if self.rows_per_s >= 100 else f"{self.rows_per_s:.3g}")
                 + f" rows/s end to end ({self.elapsed_s:.2f} s; {split})"]
        top = sorted(((v, k) for k, v in self.infeasible_by.items() if v), reverse=True)[:5]
        if top:
            lines.append("infeasible because of: " + ", ".join(f"{k} {v:,}" for v, k in top))
        if self.extra_columns:
            lines.append("carried through (not parameters): " + ", ".join(self.extra_columns))
        return "\n".join(lines)


def describe_bad(bad: Sequence[BadRow], n_bad: int, *, csv_lines: bool = False) -> str:
    """'row 12, column hardware: 'h1000' is not a known accelerator ...' lines (first MAX_LISTED) + count."""
    lines = []
    for b in bad[:MAX_LISTED]:
        line = f" (CSV line {b.row + 2})" if csv_lines else ""
        lines.append(f"  row {b.row}{line}, column {b.column}, value {b.value!r}: {b.reason}")
    rest = n_bad - len(lines)
    if rest > 0:
        lines.append(f"  ... and {rest:,} more bad cell(s)")
    return "\n".join(lines)


def _limits(scenario: str, limits: Mapping[str, Any] | None) -> dict:
    from ..space.checks import parse_limits
    errors = []
    out = parse_limits(scenario, dict(limits or {}), lambda section, key, msg: errors.append(f"limit {key}: {msg}"))
    if errors:
        raise MlsysOptError("; ".join(errors))
    return out


def evaluate_table(table, scenario: str = "training", *, catalog=None, eff=None, chunk_size: int = DEFAULT_CHUNK,
                   sensitivity: Sequence[str] | str | None = None, set: Mapping[str, Any] | None = None,
                   skip_bad_rows: bool = False, out: str | os.PathLike | None = None,
                   limits: Mapping[str, Any] | None = None, devices=None, dtype=None, progress=None,
                   batch_rows: int | None = None, compression: str = PARQUET_COMPRESSION):
    """Evaluate every row of a table of configurations at sweep speed.

    Args:
      table: a pandas DataFrame, a pyarrow Table / RecordBatch, a dict of
        columns, or a path to a ``.csv`` or ``.parquet`` file; one configuration
        per row, columns named after the scenario's parameters (see
        ``mlsys_opt.point.table_convert`` for units in names and values).
      scenario: "training" or "serving".
      catalog: a ``Catalog`` with user entries (default the built-in one).
      eff: an ``Efficiency`` (e.g. a calibration); default DEFAULT_EFFICIENCY.
      chunk_size: rows per jitted evaluation (rounded up to a multiple of the
        device count); does not change the result.
      sensitivity: output name(s) whose elasticities to every continuous input
        are added as columns ``elasticity_<output>_wrt_<input>`` (slower: one
        forward-mode Jacobian per row).
      set: {parameter: display value} for parameters without a column.
      skip_bad_rows: evaluate the good rows and report the bad ones (side file
        ``<out stem>.bad_rows.csv`` / ``attrs["bad_rows"]``) instead of raising.
      out: a ``.parquet`` or ``.csv`` path to write the results to (written
        batch by batch, moved into place when complete); None returns a DataFrame.
      limits: [constraints] limits, e.g. ``{"max_time": "30 day"}`` (``g_limit_*`` columns).
      devices: jax devices (or a count) to shard chunks over; default all.
      dtype: float32 (default) or float64 (needs jax x64).
      progress: a stderr progress bar: None on a terminal, True / False to force.
      batch_rows: rows read and written together (one Parquet row group; default
        BATCH_ROWS rows, rounded to whole chunks).
      compression: Parquet codec of the results, one of PARQUET_COMPRESSIONS
        (default "none": the continuous float32 outputs, most of the bytes, do
        not compress with a fast codec and the dictionary indices are already
        bit-packed; measured per 10^7 training rows on the 2-core CPU, snappy
        costs the writer ~10 % more CPU for a 5 % smaller file, zstd (level 1)
        ~70 % more for 14 % smaller; any codec gives a standard Parquet file).

    Returns:
      a DataFrame of results (``attrs["summary"]``: :class:`TableSummary`;
      ``attrs["bad_rows"]``: DataFrame of bad cells) when ``out`` is None, else
      the :class:`TableSummary`.

    Raises:
      BadRowsError (an MlsysOptError) listing the first 20 bad cells when some
      row cannot be read and ``skip_bad_rows`` is False -- nothing is written
      (an in-memory table: nothing is evaluated either); MlsysOptError for a
      column mistake, an unknown output for ``sensitivity``, an unreadable
      file or a bad argument.
    """
    from .. import validate
    from ..catalog import load_catalog

    where = "evaluate_table()"
    t0 = time.perf_counter()
    chunk_size = validate.check_positive_int("chunk_size", chunk_size, where)
    if compression not in PARQUET_COMPRESSIONS:
        raise MlsysOptError(f"{where}: compression={compression!r}{did_you_mean(str(compression), PARQUET_COMPRESSIONS)}"
                            f" (allowed: {', '.join(PARQUET_COMPRESSIONS)})")
    catalog = load_catalog() if catalog is None else catalog
    source = open_source(table)
    plan = plan_columns(source.columns, scenario, catalog, set=set)
    limit_values = _limits(scenario, limits)
    if source.num_rows is not None:           # a small table compiles a small chunk (as sweeps.api.sweep does)
        chunk_size = min(chunk_size, 1 << max(3, int(source.num_rows - 1).bit_length()))
    evaluator = TableEvaluator(plan, limit_values, catalog, eff=eff, chunk_size=chunk_size, devices=devices,
                               dtype=dtype, sensitivity=sensitivity)
    batch_rows = evaluator.chunk * max(1, BATCH_ROWS // evaluator.chunk) if batch_rows is None else \
        validate.check_positive_int("batch_rows", batch_rows, where)
    check_units(plan, source.head())
    evaluator.table_columns = tuple(source.columns)
    timings = {"read": 0.0, "convert": 0.0, "compile": 0.0, "dispatch": 0.0, "queue": 0.0, "evaluate": 0.0,
               "assemble": 0.0, "write": 0.0}
    cpu = {"read": 0.0, "convert": 0.0, "dispatch": 0.0, "collect": 0.0, "assemble": 0.0, "write": 0.0}

    # Every row is checked as it is read.  A file is read once: its batches are evaluated as they come
    # and, without skip_bad_rows, the first bad cell stops the evaluation: the rest is only checked,
    # the temporary result is removed and BadRowsError lists the first bad cells -- nothing is written
    # (a second reading pass before any evaluation cost ~1.5 s of 7 per 10^7 Parquet rows).  An
    # in-memory table is checked whole before anything is evaluated (its converted values are kept,
    # so that costs no second conversion).  The jitted functions the first batch needs compile on a
    # thread meanwhile; up to READ_AHEAD batches are read and converted while it runs.
    strict = not skip_bad_rows
    cached, compiling = None, None
    if strict and source.in_memory:
        cached, bad, n_bad = [], [], 0
        for batch, offset, values, mask, b, nb in _converted(source.batches(batch_rows), plan, catalog, timings,
                                                              cpu, lambda: MAX_LISTED - len(bad)):  # noqa: B023
            if offset == 0 and not nb:      # (a run that will be refused does not wait for a compilation)
                compiling = evaluator.prepare(values, ~mask)
            bad += b
            n_bad += nb
            cached.append((batch, offset, values, mask, [], 0))
        if n_bad:
            raise _bad_rows_error(source, bad, n_bad)

    writer = open_writer(out, skip_bad_rows, compression)
    counts = np.zeros(len(evaluator.reason_names) + 1, np.int64)     # feasible, then per reason code
    n_rows = n_bad_rows = n_bad_cells = 0
    n_eval = [0]
    first_bad: list = []
    from ..sweeps.engine import progress_bar
    bar = progress_bar(source.num_rows, progress, unit="row", desc="table")

    def assemble(item):
        n_eval[0] += _assemble(item, evaluator, writer, counts, timings, cpu, write_drain)

    def write(item):
        table, n = item
        t, c = time.perf_counter(), time.thread_time()
        writer.write_table(table)
        timings["write"] += time.perf_counter() - t
        cpu["write"] += time.thread_time() - c
        if bar is not None:
            bar.update(n)

    def evaluate(item) -> None:
        """Dispatch one converted batch (its good rows) and queue it for the assembling thread."""
        nonlocal n_rows, n_bad_rows, n_bad_cells, compiling
        batch, offset, values, mask, bad, nb = item
        n_rows += len(mask)
        first_bad.extend(bad[:max(0, MAX_LISTED - len(first_bad))])
        if strict:
            n_bad_cells += nb
            if n_bad_cells:             # refused: nothing more is evaluated, the rest is only checked
                return
        else:
            write_bad_rows(writer, bad)
            n_bad_rows += int(mask.sum())
        if compiling is not None:
            t = time.perf_counter()
            compiling.join()
            timings["compile"] += time.perf_counter() - t
            compiling = None
        t, c = time.perf_counter(), time.thread_time()
        handle = evaluator.dispatch(values, ~mask)          # asynchronous: the device works from here on
        timings["dispatch"] += time.perf_counter() - t
        cpu["dispatch"] += time.thread_time() - c
        t = time.perf_counter()
        drain.put((batch, offset, values, mask, handle))
        timings["queue"] += time.perf_counter() - t

    # three stages overlap (with the device, which evaluates asynchronously): the main thread reads,
    # converts and dispatches batch k+2; an assembling thread waits for batch k+1 and builds its result
    # columns; a writer thread encodes and writes batch k (pyarrow, numpy and the device copy release
    # the GIL); at most WRITE_QUEUE batches wait between two stages (host memory stays flat)
    write_drain = _Drain(write, WRITE_QUEUE, "writer")
    drain = _Drain(assemble, WRITE_QUEUE, "assembler")
    try:
        batches = iter(cached) if cached is not None else \
            _converted(source.batches(batch_rows), plan, catalog, timings, cpu,
                       (lambda: MAX_LISTED - len(first_bad)) if strict else (lambda: None))
        pending: deque = deque()
        first = True
        for item in batches:
            if first and cached is None and (skip_bad_rows or not item[5]):
                compiling = evaluator.prepare(item[2], ~item[3])
            first = False
            pending.append(item)
            while pending and (compiling is None or not compiling.is_alive() or len(pending) > READ_AHEAD):
                evaluate(pending.popleft())
        while pending:
            evaluate(pending.popleft())
        if n_bad_cells:
            raise _bad_rows_error(source, first_bad, n_bad_cells)
        drain.close()
        write_drain.close()
        frame = writer.close(meta=_metadata(plan, limits, set))
    except BaseException:
        drain.stop()
        write_drain.stop()
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t0
    summary = TableSummary(
        n_rows=n_rows, n_evaluated=n_eval[0], n_bad_rows=n_bad_rows, n_feasible=int(counts[0]),
        infeasible_by=dict(zip(evaluator.reason_names, (int(c) for c in counts[1:]))),
        elapsed_s=elapsed, rows_per_s=n_rows / elapsed if elapsed > 0 else 0.0, timings_s=timings,
        bad=first_bad, out=None if out is None else str(out), bad_rows_path=writer.bad_path,
        extra_columns=plan.extra, cpu_s=cpu, compile_status=evaluator.compile_status)
    if frame is None:
        return summary
    frame.attrs["summary"] = summary
    frame.attrs["bad_rows"] = writer.bad_frame()
    return frame


def _bad_rows_error(source, bad: list, n_bad: int) -> BadRowsError:
    return BadRowsError(f"{source.label}: {n_bad:,} bad cell(s); nothing was written "
                        f"(fix them, or skip those rows with --skip-bad-rows / skip_bad_rows=True):\n"
                        + describe_bad(bad, n_bad, csv_lines=source.is_csv), bad, n_bad)


def _converted(reading: Iterator, plan: ColumnPlan, catalog, timings: dict, cpu: dict, room) -> Iterator:
    """(batch, offset, values, bad-row mask, BadRows (at most room() of them), bad cells) per batch of
    `reading` (a source's (batch, offset, seconds) iterator)."""
    c = time.thread_time()
    for batch, offset, t_read in reading:
        timings["read"] += t_read
        cpu["read"] += time.thread_time() - c
        t, c = time.perf_counter(), time.thread_time()
        values, bad, mask, n_bad = convert_columns(batch, plan, catalog, row_offset=offset, max_reported=room())
        timings["convert"] += time.perf_counter() - t
        cpu["convert"] += time.thread_time() - c
        yield batch, offset, values, mask, bad, n_bad
        c = time.thread_time()


def _assemble(pending, evaluator: TableEvaluator, writer, counts: np.ndarray, timings: dict, cpu: dict,
              out: _Drain) -> int:
    """Wait for a dispatched batch, assemble its result table and hand it to `out`; returns rows evaluated."""
    batch, offset, values, mask, handle = pending
    t, c = time.perf_counter(), time.thread_time()
    res = evaluator.collect(handle)
    timings["evaluate"] += time.perf_counter() - t
    cpu["collect"] += time.thread_time() - c
    t, c = time.perf_counter(), time.thread_time()
    good = ~mask
    n_good = int(good.sum())
    counts += np.bincount(res["reason_code"] + 1, minlength=len(counts))[:len(counts)]
    table = writer.assemble(*result_columns(batch, offset, values, good, res, evaluator))
    timings["assemble"] += time.perf_counter() - t
    cpu["assemble"] += time.thread_time() - c
    out.put((table, len(mask)))
    return n_good


class _Drain:
    """Runs ``fn(item)`` on a writer thread for the items put, in order; at most `depth` wait.

    The thread's first exception is raised again by the next :meth:`put` or by
    :meth:`close` (the items after it are dropped); :meth:`stop` ends the thread
    after the item it is working on, dropping the queue.
    """

    def __init__(self, fn, depth: int, name: str):
        import queue
        import threading
        self.fn, self.error, self._stopping = fn, None, False
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, name=f"mlsys_opt-table-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is None and not self._stopping:
                try:
                    self.fn(item)
                except BaseException as exc:     # noqa: BLE001 - handed to the main thread
                    self.error = exc

    def put(self, item) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        import queue
        self._stopping = True
        while True:                  # drop what waits, so that the end marker fits
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.queue.put(None)
        self.thread.join()


def _metadata(plan: ColumnPlan, limits, set) -> dict:
    return {"scenario": plan.scenario, "set": {k: str(v) for k, v in (set or {}).items()},
            "limits": {k: str(v) for k, v in (limits or {}).items()},
            "constants": {k: str(v) for k, v in plan.constant_labels.items() if k not in
                          {p for p, _ in plan.params.values()}}}


__all__ = [
    "DEFAULT_CHUNK",
    "MAX_LISTED",
    "BadRow",
    "BadRowsError",
    "TableSummary",
    "convert_table",
    "describe_bad",
    "evaluate_table",
]
