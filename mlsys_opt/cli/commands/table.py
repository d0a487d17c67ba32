"""`mlsys-opt evaluate --table FILE`: every row of a table of configurations (issue 17).

    mlsys-opt evaluate --table configs.parquet -o results.parquet
    mlsys-opt evaluate --table jobs.csv -o results.csv --set region=quebec --limit max_time='30 day'
    mlsys-opt evaluate --table jobs.csv -o results.parquet --skip-bad-rows --sensitivity time_to_train_s
    mlsys-opt evaluate --table jobs.parquet -o results.parquet --compression zstd

Rows go through ``mlsys_opt.evaluate_table`` (see ``mlsys_opt.point.table``);
a progress bar and a summary (rows, feasible share, top infeasibility reasons,
rows/s) go to stderr.  Configuration flags (``--model``, ``--hardware`` ...) and
``--set`` give parameters the table has no column for.  Exit codes: 2 for bad
input (a bad row lists row, column, value and reason; nothing is written
unless ``--skip-bad-rows``), 3 when no row is feasible (unless
``--allow-infeasible``), else 0.  Without ``-o`` the results go to stdout as CSV.
"""
from __future__ import annotations

import sys

from ...errors import MlsysOptError
from .common import (
    EXIT_INFEASIBLE,
    EXIT_OK,
    _catalog,
    _eff,
    _err,
    _split_kv,
    enable_compile_cache,
)


def add_table_args(p) -> None:
    """The --table flags of `mlsys-opt evaluate` (the configuration flags come from _add_config_args)."""
    from .common import _positive_int
    g = p.add_argument_group("a table of configurations (CSV or Parquet, one row per configuration)")
    g.add_argument("--table", metavar="FILE", help="evaluate every row of FILE (.csv / .parquet): columns are "
                   "parameter names (units in the name or the values: recovery_min, '15e12 token')")
    g.add_argument("-o", "--out", metavar="FILE", help="write the results here (.parquet or .csv; default: CSV "
                   "on stdout)")
    g.add_argument("--skip-bad-rows", action="store_true", help="evaluate the good rows; write the bad ones "
                   "with their reason to <out stem>.bad_rows.csv (default: exit 2 and write nothing)")
    g.add_argument("--sensitivity", action="append", metavar="OUTPUT", help="add the elasticities of OUTPUT "
                   "to every continuous input as columns (repeatable; slower)")
    g.add_argument("--chunk-size", dest="table_chunk", type=_positive_int, metavar="N",
                   help="rows per jitted evaluation (default 16384); does not change the result")
    g.add_argument("--compression", metavar="CODEC", default=None,
                   help="codec of a Parquet result: none (default: the float outputs do not compress with a "
                   "fast codec; snappy costs ~10 %% more writing CPU for 5 %% smaller), snappy, lz4, zstd (14 %% "
                   "smaller, ~70 %% more writing CPU), gzip, brotli")


def cmd_evaluate_table(args) -> int:
    from ...point.table import evaluate_table
    from ...point.table_io import open_source
    from .evaluate import CONFIG_FLAGS

    if getattr(args, "space", None):
        raise MlsysOptError("--table takes --scenario (training or serving), not --space")
    if getattr(args, "figure", None):
        raise MlsysOptError("--figure draws one configuration; it does not apply to --table")
    settings = {param: getattr(args, f"p_{param}") for _, param, _ in CONFIG_FLAGS
                if getattr(args, f"p_{param}", None) is not None}
    settings.update(_split_kv(args.set, "--set"))
    limits = _split_kv(args.limit, "--limit")
    scenario = args.scenario
    if scenario is None:           # a request-rate column or setting makes it a serving table
        columns = open_source(args.table).columns
        scenario = "serving" if any(c.startswith("request_rate") for c in list(columns) + list(settings)) \
            else "training"
    enable_compile_cache()
    quiet = bool(getattr(args, "quiet", False))
    kw = {"catalog": _catalog(args), "eff": _eff(args), "sensitivity": args.sensitivity, "set": settings or None,
          "skip_bad_rows": args.skip_bad_rows, "limits": limits or None, "progress": None if not quiet else False}
    if args.table_chunk:
        kw["chunk_size"] = args.table_chunk
    if args.compression:
        kw["compression"] = args.compression
    if args.out:
        summary = evaluate_table(args.table, scenario, out=args.out, **kw)
    else:
        frame = evaluate_table(args.table, scenario, **kw)
        summary = frame.attrs["summary"]
        frame.attrs.clear()
        frame.to_csv(sys.stdout, index=False)
    if not quiet:
        _err(f"{scenario} table {args.table}: " + summary.describe()
             + (f"\nwrote {args.out}" if args.out else ""))
    if summary.n_bad_rows:
        where = summary.bad_rows_path or "stderr"
        _err(f"skipped {summary.n_bad_rows:,} bad row(s) (reasons in {where})")
        if summary.bad_rows_path is None:
            from ...point.table import describe_bad
            _err(describe_bad(summary.bad, summary.n_bad_rows))
    if summary.n_feasible == 0 and not args.allow_infeasible:
        _err("no feasible row (exit 3; --allow-infeasible exits 0)")
        return EXIT_INFEASIBLE
    return EXIT_OK
