"""`mlsys-opt sweep` and `mlsys-opt search`: a space's Pareto front, printed and saved.

Both end in :func:`_front_report`: a header describing the space, the front
table (human units), the best row per objective, and the table (.csv/.parquet/
.json, SI units) and figure files.  Exit 3 when nothing is feasible (unless
--allow-empty).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

from ...errors import MlsysOptError
from .common import (
    EXIT_INFEASIBLE,
    EXIT_OK,
    _eff,
    _note,
    _out,
    _positive_int,
    _print_json,
    _progress,
    _space,
    enable_compile_cache,
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
        lines += textwrap.wrap(space.description, width=100)
    return lines


def _write_front(df, path: Path) -> Path:
    suffix = path.suffix.lower()
    if not path.parent.exists():
        raise MlsysOptError(f"output {str(path)!r}: folder {str(path.parent)!r} does not exist")
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix in (".parquet", ".pq"):
        df.to_parquet(path, index=False)
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
    for p in (table, figure):
        if p is not None and not p.parent.exists():
            raise MlsysOptError(f"{str(p)!r}: folder {str(p.parent)!r} does not exist")
    return table, figure


def _front_report(args, space, front, *, header: list[str], table_path, figure_path, extra_json: dict) -> int:
    from .. import report
    files = {}
    if table_path is not None:
        files["table"] = str(_write_front(front, table_path))
    if figure_path is not None and len(front):
        from ..plots import pareto_front
        pareto_front(front, space=space, color=args.color, path=figure_path)
        files["figure"] = str(figure_path)
    if args.json:
        _print_json({**extra_json, "space": space.name, "scenario": space.scenario,
                     "objectives": [{"name": n, "sense": s} for n, s in space.objectives],
                     "front": front, "files": files})
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
        else:
            _out("no feasible configuration: every configuration breaks a constraint or limit "
                 "(loosen [constraints] or widen the axes)")
        if files:
            _out()
        for kind, path in files.items():
            what = f"{len(front)} rows, SI units in the column names" if kind == "table" else "Pareto-front figure"
            _out(f"wrote {path} ({what})")
    if len(front) == 0 and not args.allow_empty:
        return EXIT_INFEASIBLE
    return EXIT_OK


def _add_front_outputs(p, default_suffix: str) -> None:
    p.add_argument("-o", "--output", metavar="PATH", help="write the front table here: .csv, .parquet or .json "
                   f"(default: OUT_DIR/<space name>_{default_suffix}.csv)")
    p.add_argument("--out-dir", metavar="DIR", help="folder for the default table and figure (default: .)")
    p.add_argument("--figure", metavar="PATH", help="Pareto-front figure, .png/.svg/.pdf "
                   f"(default: OUT_DIR/<space name>_{default_suffix}.png)")
    p.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    p.add_argument("--no-save", action="store_true", help="write no files (print only)")
    p.add_argument("--color", metavar="COLUMN", help="colour the figure by this column, e.g. region "
                   "(default: the third objective)")
    p.add_argument("--top", type=_positive_int, default=30, metavar="N", help="print at most N rows (default 30)")
    p.add_argument("--columns", metavar="A,B,...", help="columns to print (default: varying axes, objectives, "
                   "[objectives] report)")
    p.add_argument("--allow-empty", action="store_true", help="exit 0 even when nothing is feasible (else 3)")
    p.add_argument("--calibration", metavar="FILE", help="efficiency parameters from a calibration file "
                   "(mlsys-opt calibrate -o FILE)")


def cmd_sweep(args) -> int:
    from ...sweeps.api import sweep
    space = _space(args, args.space)
    table_path, figure_path = _outputs(args, space, "front")
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
    enable_compile_cache()
    _note(args, f"sweeping {space.size:,} configurations of {space.name} (the first chunk includes compiling; "
                f"compiled kernels are cached for the next run) ...")
    res = sweep(space, chunk_size=args.chunk_size, devices=args.devices, progress=_progress(args),
                checkpoint_path=checkpoint, resume=args.resume, eff=_eff(args))
    rate = res.n_evaluated / max(res.elapsed_s, 1e-9)
    header = space_header(space) + [
              f"evaluated {res.n_evaluated:,} configurations in {res.elapsed_s:.1f} s ({rate:,.0f}/s): "
              f"{res.n_feasible:,} feasible, {len(res.front):,} on the Pareto front"]
    why = infeasible_summary(res.infeasible_by, res.n_evaluated)
    if why:
        header.append(f"infeasible, by most violated constraint: {why}")
    if checkpoint:
        header.append(f"checkpoint: {checkpoint}")
    return _front_report(args, space, res.front, header=header, table_path=table_path, figure_path=figure_path,
                         extra_json={"n_evaluated": res.n_evaluated, "n_feasible": res.n_feasible,
                                     "infeasible_by": res.infeasible_by, "elapsed_s": res.elapsed_s,
                                     "best": {k: v for k, v in res.best.items()}})


def cmd_search(args) -> int:
    space = _space(args, args.space)
    table_path, figure_path = _outputs(args, space, "search")
    enable_compile_cache()
    from ...search.pymoo_problem import run_search
    _note(args, f"searching {space.name} ({space.size:,} configurations) ...")
    res = run_search(space, algorithm=args.algorithm, evals=args.evals, pop_size=args.pop, seed=args.seed,
                     eff=_eff(args))
    header = space_header(space) + [
              f"{res.algorithm}, seed {res.seed}: evaluated {res.n_evaluated:,} configurations "
              f"({100 * res.n_evaluated / max(space.size, 1):.2g} % of the space) in {res.elapsed_s:.1f} s: "
              f"{res.n_feasible:,} feasible, {len(res.front):,} non-dominated found",
              "(a search front approximates the exact one; 'mlsys-opt sweep' gives the exact front)"]
    return _front_report(args, space, res.front, header=header, table_path=table_path, figure_path=figure_path,
                         extra_json={"algorithm": res.algorithm, "seed": res.seed, "n_evaluated": res.n_evaluated,
                                     "n_feasible": res.n_feasible, "elapsed_s": res.elapsed_s})


def infeasible_summary(infeasible_by: dict, n_evaluated: int) -> str:
    """'batch_split 30 %, limit:time_to_train_s 61 %, ...' (largest first; empty when none)."""
    items = sorted(((n, c) for n, c in infeasible_by.items() if c), key=lambda kv: -kv[1])
    return ", ".join(f"{n} {100 * c / max(n_evaluated, 1):.0f} %" for n, c in items)
