"""`mlsys-opt sweep` and `mlsys-opt search`: a space's Pareto front, printed and saved.

Both end in :func:`_front_report`: a header describing the space, the front
table (human units), the best row per objective, and the table (.csv/.parquet/
.json, SI units) and figure files.  Exit 3 when nothing is feasible (unless
--allow-empty).
"""
from __future__ import annotations

import contextlib
import os
import textwrap
from pathlib import Path

from ...errors import MlsysOptError, did_you_mean
from .common import (
    EXIT_INFEASIBLE,
    EXIT_INPUT,
    EXIT_OK,
    PROG,
    _eff,
    _err,
    _note,
    _out,
    _positive_float,
    _positive_int,
    _print_json,
    _progress,
    _space,
    check_writable,
    enable_compile_cache,
    write_or_fallback,
)


def space_header(space) -> list[str]:
    """A space in a few readable lines: size and axes, fixed values, limits, objectives, question."""
    from ..plots import limits_caption
    axes = " × ".join(f"{a.name} {len(a.labels)}" for a in space.axes)
    fixed = ", ".join(f"{k}={v}" for k, v in space.fixed_labels.items())
    objs = ", ".join(f"{s}imize {n}" for n, s in space.objectives)
    lines = [f"{space.name} ({space.scenario}, {space.source}): {space.size:,} configurations = {axes}"]
    if fixed:
        lines += textwrap.wrap(f"fixed: {fixed}", width=100, subsequent_indent="  ")
    lines.append((limits_caption(space) or "limits: none") + f"; {objs}")
    if space.description:
        from ...space.spec import short_description
        lines += textwrap.wrap(short_description(space.description), width=100)
    return lines


def _write_front(df, path: Path, meta: dict | None = None) -> Path:
    """The front table; .csv gets a ``.meta.json`` sidecar and .parquet key-value metadata saying what
    produced it (spec, fixed parameters, catalog fingerprint, efficiency model, version; sweeps.results)."""
    suffix = path.suffix.lower()
    if not path.parent.exists():
        raise MlsysOptError(f"output {str(path)!r}: folder {str(path.parent)!r} does not exist")
    if suffix in (".csv", ".parquet", ".pq"):
        from ...sweeps.results import write_table
        write_table(df, path, meta or {})
    elif suffix == ".json":
        from ..report import dumps
        path.write_text(dumps(df) + "\n", encoding="utf-8")
    else:
        raise MlsysOptError(f"output {str(path)!r}: unknown format {suffix or '(none)'!r} "
                            "(allowed: .csv, .parquet, .json)")
    return path


def _outputs(args, space, default_suffix: str) -> tuple[Path | None, Path | None]:
    """(table path, figure path) from -o/--figure/--out-dir/--no-save/--no-figure; checked before running."""
    from ..plots import check_path
    out_dir = Path(args.out_dir) if args.out_dir else Path(".")
    if args.out_dir and not out_dir.is_dir():
        raise MlsysOptError(f"--out-dir {args.out_dir!r}: no such folder")
    table = None if args.no_save else Path(args.output) if args.output else out_dir / f"{space.name}_{default_suffix}.csv"
    figure = None if (args.no_save or args.no_figure) else (
        Path(args.figure) if args.figure else out_dir / f"{space.name}_{default_suffix}.png")
    if table is not None and table.suffix.lower() not in (".csv", ".parquet", ".pq", ".json"):
        raise MlsysOptError(f"-o {str(table)!r}: unknown format {table.suffix or '(none)'!r} "
                            "(allowed: .csv, .parquet, .json)")
    if figure is not None:
        check_path(figure)
    if Path(space.name).name != space.name or space.name in ("", ".", ".."):   # load_space refuses these too
        raise MlsysOptError(f"space name {space.name!r} cannot name output files inside --out-dir")
    for flag, given, p in (("-o", args.output, table), ("--figure", args.figure, figure),
                           ("--html", getattr(args, "html", None), Path(args.html) if getattr(args, "html", None)
                            else None)):
        if p is not None:
            check_writable(p, flag if given else "--out-dir")
    if args.columns:
        _check_columns(args.columns, space)
    return table, figure


def _check_columns(text: str, space) -> None:
    """--columns names columns a front of `space` has (checked before the work, on an empty front)."""
    import numpy as np

    from ...sweeps.api import add_human_columns, output_names
    empty = space.labels(np.zeros((0, len(space.axes)), np.int32))
    for name in output_names(space):
        empty[name] = np.zeros(0)
    have = [str(c) for c in add_human_columns(empty).columns]
    for name in (c.strip() for c in text.split(",") if c.strip()):
        if name not in have:
            raise MlsysOptError(f"--columns {name!r}: not a column of the front{did_you_mean(name, have)} "
                                f"(columns: {', '.join(have)})")


# configurations per second a sweep reaches per CPU core (README: 1.2e7/s steady on 2 cores for the
# training and serving scenarios; halved for margin and compile) and on an accelerator (a guess on the
# safe side: the full scenarios have not been timed on a GPU yet); a search runs pymoo on the host.
SWEEP_RATE_PER_CPU_CORE, SWEEP_RATE_PER_ACCELERATOR, SEARCH_RATE = 3e6, 1e8, 2e4


def estimate_s(n: int, *, search: bool = False) -> tuple[float, float]:
    """(estimated seconds, configurations per second) to evaluate `n` configurations here."""
    if search:
        return n / SEARCH_RATE, SEARCH_RATE
    import jax
    devs = jax.devices()
    rate = (SWEEP_RATE_PER_CPU_CORE * (os.cpu_count() or 1) if devs[0].platform == "cpu"
            else SWEEP_RATE_PER_ACCELERATOR * len(devs))
    return n / rate, rate


def _duration(s: float) -> str:
    for div, unit in ((86400 * 365, "years"), (86400, "days"), (3600, "hours"), (60, "min")):
        if s >= div:
            return f"{s / div:,.3g} {unit}"
    return f"{s:.2g} s"


def check_size(args, space, *, n: int, what: str) -> None:
    """Print the size and the time estimate (stderr, unless --quiet); refuse beyond --max-hours unless --force."""
    sec, rate = estimate_s(n, search=what == "search")
    if sec > 3600 * args.max_hours and not args.force:
        raise MlsysOptError(f"{what} of {space.name}: {n:,} configurations would take about {_duration(sec)} "
                            f"(at ~{rate:.2g} configurations/s here), more than --max-hours {args.max_hours:g}; "
                            "shrink the axes, raise --max-hours or pass --force")
    if not getattr(args, "quiet", False):
        axes = " × ".join(f"{a.name} {len(a.labels)}" for a in space.axes)
        _err(f"size: {space.size:,} configurations ({axes}); {what} of {n:,}: estimated {_duration(sec)} at "
             f"~{rate:.2g}/s plus compiling (--max-hours {args.max_hours:g})")


def _front_report(args, space, front, *, header: list[str], table_path, figure_path, extra_json: dict,
                  result=None, kind: str = "sweep", title: str | None = None) -> int:
    from .. import report
    files, failed = {}, []           # a file that cannot be written never loses the front: it is printed,
    if table_path is not None:       # saved to a fallback path where possible, and the exit code is 2
        from ...sweeps.results import describe
        meta = describe(space, eff=_eff(args), kind=kind, extra={k: v for k, v in extra_json.items() if k != "best"})
        got, msg = write_or_fallback(lambda p: _write_front(front, p, meta), table_path, "-o")
        if got:
            files["table"] = str(got)
        if msg:
            failed.append(msg)
    if figure_path is not None and len(front):
        from ..plots import pareto_front
        got, msg = write_or_fallback(lambda p: pareto_front(front, space=space, color=args.color, path=p,
                                                            title=title), figure_path, "--figure")
        if got:
            files["figure"] = str(got)
        if msg:
            failed.append(msg)
    if getattr(args, "html", None) and result is not None:
        from ..html import html
        got, msg = write_or_fallback(lambda p: html(result, p, space=space), Path(args.html), "--html")
        if got:
            files["report"] = str(got)
        if msg:
            failed.append(msg)
    near = getattr(result, "near_miss", None)       # nothing feasible: how close the space comes
    if args.json:
        from ..near_miss import near_miss_json
        _print_json({**extra_json, "space": space.name, "scenario": space.scenario,
                     "objectives": [{"name": n, "sense": s} for n, s in space.objectives],
                     "front": front, "files": files,
                     "near_miss": None if near is None else near_miss_json(space, near)})
    else:
        for line in header:
            _out(line)
        _out()
        if len(front):
            cols = report.front_columns(space, front) if not args.columns else \
                [c.strip() for c in args.columns.split(",") if c.strip()]
            _out(f"Pareto front ({len(front)} configuration{'s' if len(front) != 1 else ''}, "
                 f"sorted by {space.objectives[0][0]}):")
            _out(report.format_table(front, cols, max_rows=args.top, width=report.terminal_width()))
            _out()
            axes, objs = report.axis_columns(space), [n for n, _ in space.objectives]
            for label, i in report.best_rows(front, space.objectives):
                _out(f"{label + ':':<11} {report.describe_row(front.loc[i], axes)}  ->  "
                     f"{report.headline(front.loc[i], objs)}")
            if space.scenario == "serving":
                _out()
                _out(serving_winner_sentence(front.loc[report.best_rows(front, space.objectives)[0][1]], space))
        else:
            _out("no feasible configuration: every configuration breaks a constraint or limit "
                 "(loosen [constraints] or widen the axes)")
            if near is not None:
                from ..near_miss import near_miss_lines, sampled
                for line in near_miss_lines(space, near, sampled=sampled(result)):
                    _out(line)
        if files:
            _out()
        for kind, path in files.items():
            what = {"table": f"{len(front)} rows, SI units in the column names", "figure": "Pareto-front figure",
                    "report": "interactive HTML report, works offline"}.get(kind, kind)
            _out(f"wrote {path} ({what})")
    for msg in failed:
        _err(f"{PROG}: error: {msg}")
    if failed:
        return EXIT_INPUT
    if len(front) == 0 and not args.allow_empty:
        return EXIT_INFEASIBLE
    return EXIT_OK


def serving_winner_sentence(row, space) -> str:
    """The serving front's best row on the first objective as one sentence a capacity planner can act
    on (hardware, count, parallelism, batch, techniques, $/Mtok, P99s); owner of the wording: H13."""
    from ...scenarios import schema

    def val(name):
        if name in row.index:
            return row[name]
        if name in space.fixed_labels:
            return space.fixed_labels[name]
        spec, v = schema.SERVING_PARAMS[name], {**space.defaults, **space.fixed}.get(name)
        if spec.kind == "catalog":
            return space.catalog.names(spec.catalog_kind)[int(v)]
        return spec.choices[int(v)] if spec.kind == "choice" else v

    def num(name, fmt):
        return fmt.format(float(row[name])) if name in row.index else "?"

    tp, pp, ep = int(float(val("tp"))), int(float(val("pp"))), int(float(val("ep")))
    par = f"tp {tp}" + (f", pp {pp}" if pp > 1 else "") + (f", ep {ep}" if ep > 1 else "")
    chunk, k = int(float(val("chunk_size"))), int(float(val("spec_k")))
    tech = [f"chunked prefill of {chunk} tokens" if chunk else "whole-prompt prefill",
            f"{val('precision')} weights", f"KV cache in {val('kv_precision')}".replace("in auto", "at the weight precision"),
            f"speculative decoding (k = {k})" if k else "no speculation"]
    if str(val("disaggregated")) == "on":
        tech.insert(0, f"disaggregated prefill/decode ({num('prefill_replicas', '{:,.0f}')} prefill replicas)")
    if str(val("offload")) != "off":
        tech.append(f"{val('offload')} offload to host memory")
    rate = float(space.fixed.get("request_rate", float("nan")))
    return (f"Winner: serve {val('model')} at {rate:g} requests/s on {num('n_accelerators', '{:,.0f}')} x "
            f"{val('hardware')} ({num('replicas', '{:,.0f}')} replicas of {par}) in {val('region')}, batch cap "
            f"{int(float(val('batch')))}, {', '.join(tech)}: ${num('cost_per_mtok_usd', '{:.3g}')}/Mtok, "
            f"{1e3 * float(row['carbon_per_mtok_kg']) if 'carbon_per_mtok_kg' in row.index else float('nan'):.3g}"
            f" g CO2e/Mtok, P99 TTFT {num('ttft_p99_s', '{:.3g}')} s, P99 ITL "
            f"{1e3 * float(row['itl_p99_s']) if 'itl_p99_s' in row.index else float('nan'):.3g} ms.")


def _add_front_outputs(p, default_suffix: str) -> None:
    p.add_argument("-o", "--output", metavar="PATH", help="write the front table here: .csv, .parquet or .json "
                   f"(default: OUT_DIR/<space name>_{default_suffix}.csv)")
    p.add_argument("--out-dir", metavar="DIR", help="folder for the default table and figure (default: .)")
    p.add_argument("--figure", metavar="PATH", help="Pareto-front figure, .png/.svg/.pdf "
                   f"(default: OUT_DIR/<space name>_{default_suffix}.png)")
    p.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    p.add_argument("--html", metavar="PATH", help="also write an interactive HTML report (one file, works offline): "
                   "sortable front table, scatter of any two objectives, parallel coordinates, infeasibility")
    p.add_argument("--no-save", action="store_true", help="write no files (print only)")
    p.add_argument("--color", metavar="COLUMN", help="colour the figure by this column, e.g. region "
                   "(default: the third objective)")
    p.add_argument("--top", type=_positive_int, default=30, metavar="N", help="print at most N rows (default 30)")
    p.add_argument("--columns", metavar="A,B,...", help="columns to print (default: varying axes, objectives, "
                   "[objectives] report)")
    p.add_argument("--allow-empty", action="store_true", help="exit 0 even when nothing is feasible (else 3)")
    p.add_argument("--calibration", metavar="FILE", help="efficiency parameters from a calibration file "
                   "(mlsys-opt calibrate -o FILE)")
    p.add_argument("--max-hours", type=_positive_float, default=24.0, metavar="H", help="refuse work estimated "
                   "to take longer than this (default 24; the size and estimate are printed first)")
    p.add_argument("--force", action="store_true", help="run even beyond --max-hours")


def cmd_sweep(args) -> int:
    import time
    cluster = _join_cluster(args)        # before anything touches JAX
    from ...sweeps.api import sweep
    from ..timings import CompileEvents, print_timings, since_process_start
    timings = {"import": since_process_start()} if getattr(args, "timings", False) else None
    t0 = time.perf_counter()
    space = _space(args, args.space)
    table_path, figure_path = _outputs(args, space, "front")
    if cluster is not None and cluster.process_id != 0:    # process 0 writes the files
        table_path = figure_path = None
    checkpoint = args.checkpoint
    if args.resume and not checkpoint:
        checkpoint = str((Path(args.out_dir) if args.out_dir else Path(".")) / f"{space.name}.ckpt.npz")
    if checkpoint:                   # fail before sweeping, naming the flag
        ck = Path(checkpoint)
        if ck.is_dir():
            raise MlsysOptError(f"--checkpoint {checkpoint!r}: is a folder; give a file path, e.g. "
                                f"{str(ck / (space.name + '.ckpt.npz'))!r}")
        if not ck.parent.is_dir():
            raise MlsysOptError(f"--checkpoint {checkpoint!r}: folder {str(ck.parent)!r} does not exist")
    eff = _eff(args)
    resumed = resumed_from(checkpoint) if args.resume and checkpoint else 0
    check_size(args, space, n=space.size - resumed, what="sweep")
    args._checkpoint = checkpoint    # main() names it when the sweep is interrupted
    enable_compile_cache()
    _note(args, f"sweeping {space.size:,} configurations of {space.name} (the first chunk includes compiling; "
                f"compiled kernels are cached for the next run) ...")
    if timings is not None:
        timings["spec"] = time.perf_counter() - t0
    if figure_path is not None:      # matplotlib loads while the sweep runs in XLA
        from ..plots import preload
        preload()
    events = CompileEvents() if timings is not None else None
    with events if events is not None else contextlib.nullcontext():
        res = sweep(space, chunk_size=args.chunk_size, devices=args.devices, progress=_progress(args),
                    checkpoint_path=checkpoint, resume=args.resume, eff=eff,
                    distributed=cluster is not None, timings=timings)
    t_write = time.perf_counter()
    ran = res.n_evaluated - resumed          # after a resume, the rate is of this run's configurations
    rate = ran / max(res.elapsed_s, 1e-9)
    done = (f"evaluated {res.n_evaluated:,} configurations ({ran:,} in this run in {res.elapsed_s:.1f} s, "
            f"{rate:,.0f}/s; {resumed:,} from the checkpoint)" if resumed else
            f"evaluated {res.n_evaluated:,} configurations in {res.elapsed_s:.1f} s ({rate:,.0f}/s)")
    header = space_header(space) + [
              f"{done}: {res.n_feasible:,} feasible, {len(res.front):,} on the Pareto front"]
    why = infeasible_summary(res.infeasible_by, res.n_evaluated)
    if why:
        header.append(f"infeasible, by most violated constraint: {why}")
    if checkpoint:
        header.append(f"checkpoint: {checkpoint}")
    if cluster is not None:
        header.append(f"process {cluster.process_id} of {cluster.num_processes} (jax.distributed); "
                      + ("this process writes the files" if cluster.process_id == 0 else
                         "the same front as process 0, which writes the files"))
    code = _front_report(args, space, res.front, header=header, table_path=table_path, figure_path=figure_path,
                         extra_json={"n_evaluated": res.n_evaluated, "n_feasible": res.n_feasible,
                                     "infeasible_by": res.infeasible_by, "elapsed_s": res.elapsed_s,
                                     "best": {k: v for k, v in res.best.items()}}, result=res)
    if timings is not None:
        timings["write"] = time.perf_counter() - t_write
        print_timings(timings, events)
    return code


def _join_cluster(args):
    """jax.distributed for --distributed (None without it); the flags without --distributed are an error."""
    flags = [f for f, v in (("--coordinator", args.coordinator), ("--num-processes", args.num_processes),
                            ("--process-id", args.process_id)) if v is not None]
    if not args.distributed:
        if flags:
            raise MlsysOptError(f"{', '.join(flags)} need(s) --distributed")
        return None
    from ...sweeps import distributed
    return distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def cmd_search(args) -> int:
    space = _space(args, args.space)
    table_path, figure_path = _outputs(args, space, "search")
    evals = args.evals if args.evals is not None else space.search.get("evals", 20000)
    if args.pop is not None and args.pop > evals:     # (a spec's pop_size is shrunk to a smaller --evals)
        raise MlsysOptError(f"--pop {args.pop} exceeds --evals {evals}: the first generation alone would use "
                            f"{args.pop} evaluations; raise --evals or lower --pop")
    eff = _eff(args)
    check_size(args, space, n=min(evals, space.size), what="search")
    enable_compile_cache()
    from ...search import pymoo_problem
    _note(args, f"searching {space.name} ({space.size:,} configurations) ...")
    res = pymoo_problem.run_search(space, algorithm=args.algorithm, evals=args.evals, pop_size=args.pop,
                                   seed=args.seed, eff=eff, progress=_progress(args))
    if getattr(res, "exhaustive", False):
        found = [f"the space has {space.size:,} configurations, no more than --evals {evals:,}: evaluated every "
                 f"configuration in {res.elapsed_s:.1f} s instead of searching: {res.n_feasible:,} feasible, "
                 f"{len(res.front):,} on the Pareto front (exact)"]
    else:
        found = [f"{res.algorithm}, seed {res.seed}: evaluated {res.n_evaluated:,} configurations "
                 f"({100 * res.n_evaluated / max(space.size, 1):.2g} % of the space) in {res.elapsed_s:.1f} s: "
                 f"{res.n_feasible:,} feasible, {len(res.front):,} non-dominated found",
                 "(a search front approximates the exact one; 'mlsys-opt sweep' gives the exact front)"]
    header = space_header(space) + found
    title = (f"{space.name}: exact front by enumeration ({len(res.front)} configurations)"
             if getattr(res, "exhaustive", False) else
             f"{space.name}: {res.algorithm} search front ({len(res.front)} non-dominated of "
             f"{res.n_evaluated:,} evaluated)")
    return _front_report(args, space, res.front, header=header, table_path=table_path, figure_path=figure_path,
                         extra_json={"algorithm": res.algorithm, "seed": res.seed, "n_evaluated": res.n_evaluated,
                                     "n_feasible": res.n_feasible, "elapsed_s": res.elapsed_s},
                         result=res, kind="search", title=title)


def resumed_from(checkpoint: str) -> int:
    """Configurations an existing checkpoint already covers (0 when there is none or it is unreadable:
    the sweep's own checks then refuse a bad file with the full message)."""
    if not os.path.isfile(checkpoint):
        return 0
    try:
        import numpy as np
        with np.load(checkpoint, allow_pickle=False) as z:
            return max(0, int(str(z["next_index"])))
    except Exception:  # noqa: BLE001 - any defect is reported by the sweep's checkpoint.load
        return 0


def infeasible_summary(infeasible_by: dict, n_evaluated: int) -> str:
    """'batch_split 30 %, limit:time_to_train_s 61 %, ...' (largest first; empty when none)."""
    items = sorted(((n, c) for n, c in infeasible_by.items() if c), key=lambda kv: -kv[1])
    return ", ".join(f"{n} {100 * c / max(n_evaluated, 1):.0f} %" for n, c in items)
