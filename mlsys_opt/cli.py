"""The `mlsys-opt` command (also `python -m mlsys_opt`).

    mlsys-opt sweep spaces/capstone.toml          exact Pareto front of a whole space
    mlsys-opt search SPACE --algorithm nsga2      evolutionary search (pymoo)
    mlsys-opt evaluate --model llama3_70b ...     one configuration: the full-stack audit
    mlsys-opt sensitivity ... --figure t.png      ranked elasticities, tornado chart
    mlsys-opt synthesize --model M --itl 50ms     a target in, a minimum spec out
    mlsys-opt catalog list|show|add               hardware, models, fabrics, regions
    mlsys-opt spaces list|show                    the ready design spaces
    mlsys-opt validate | calibrate                accuracy against published measurements

Exit codes: 0 ok; 2 bad input (one message on stderr naming the file, key or
flag, no traceback); 3 no feasible configuration (unless --allow-empty);
130 interrupted.  Anything else that escapes is a bug and shows its traceback.
`--json` prints machine-readable output (SI units, unit in every key) on
stdout instead of tables.

User catalog entries: files of ``[accelerators.NAME]``, ``[models.NAME]``,
``[fabrics.NAME]``, ``[regions.NAME]`` tables, given with ``--catalog FILE``
(repeatable) or the environment variable MLSYS_OPT_CATALOG (paths separated
by the OS path separator).  Compiled kernels are cached in
$MLSYS_OPT_CACHE_DIR (default ~/.cache/mlsys_opt/jax; "off" disables it).
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Sequence

from .errors import MlsysOptError

EXIT_OK, EXIT_INPUT, EXIT_INFEASIBLE, EXIT_INTERRUPTED = 0, 2, 3, 130
CATALOG_ENV = "MLSYS_OPT_CATALOG"
CACHE_ENV = "MLSYS_OPT_CACHE_DIR"
PROG = "mlsys-opt"


class UsageError(Exception):
    """A command-line mistake (argparse): printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse hook
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


class _Help(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=32, width=100)


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- shared setup

class _Entries(dict):
    """Entries of one kind from a user file (``label`` names the file in error messages)."""

    def __init__(self, data, label: str):
        super().__init__(data)
        self.label = label


def catalog_paths(args) -> list[str]:
    env = [p for p in os.environ.get(CATALOG_ENV, "").split(os.pathsep) if p.strip()]
    return env + list(getattr(args, "catalog", None) or [])


def load_user_catalog(paths: Sequence[str]):
    """The built-in catalog plus every user file in `paths` (later files override earlier ones)."""
    from .catalog import load_catalog
    from .catalog._load import KINDS, kind_of, read_toml
    cat = load_catalog()
    for path in paths:
        if not Path(path).is_file():
            raise MlsysOptError(f"catalog file {path!r} (from --catalog or ${CATALOG_ENV}) does not exist")
        data = read_toml(path, path)
        for kind, entries in data.items():
            try:
                k = kind_of(kind)
            except MlsysOptError:
                raise MlsysOptError(f"{path}: [{kind}] is not a catalog kind (allowed top-level tables: "
                                    f"{', '.join(KINDS)}, e.g. [accelerators.my_chip])") from None
            if not isinstance(entries, dict):
                raise MlsysOptError(f"{path}: [{kind}] must hold tables of entries, e.g. [{k}.my_entry]")
            cat = cat.with_entries(k, _Entries(entries, path))
    return cat


def _catalog(args):
    if getattr(args, "_catalog", None) is None:
        args._catalog = load_user_catalog(catalog_paths(args))
    return args._catalog


def _space(args, source):
    from .space import load_space
    return load_space(source, catalog=_catalog(args))


def _eff(args):
    path = getattr(args, "calibration", None)
    if not path:
        return None
    from .calibration import load_calibration
    return load_calibration(path)


def enable_compile_cache() -> str | None:
    """Persist compiled XLA programs across runs (a sweep compiles in ~10-20 s, loads in ~1 s)."""
    raw = os.environ.get(CACHE_ENV)
    if raw is not None and raw.strip().lower() in ("", "0", "off", "none", "false", "no"):
        return None
    import jax
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    base = raw or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mlsys_opt", "jax")
    try:
        os.makedirs(base, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", base)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return base


def _print_json(obj: Any) -> None:
    from .report import dumps
    _out(dumps(obj))


def _progress(args):
    return False if getattr(args, "quiet", False) or getattr(args, "json", False) else None


def _note(args, text: str) -> None:
    """A progress note on stderr: only on a terminal, and not with --quiet/--json."""
    if sys.stderr.isatty() and not getattr(args, "quiet", False) and not getattr(args, "json", False):
        _err(text)


# --------------------------------------------------------------------------- front output (sweep, search)

def space_header(space) -> list[str]:
    """A space in a few readable lines: size and axes, fixed values, limits, objectives, question."""
    from .plots import limits_caption
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
        from .report import dumps
        path.write_text(dumps(df) + "\n", encoding="utf-8")
    else:
        raise MlsysOptError(f"output {str(path)!r}: unknown format {suffix or '(none)'!r} "
                            "(allowed: .csv, .parquet, .json)")
    return path


def _outputs(args, space, default_suffix: str) -> tuple[Path | None, Path | None]:
    """(table path, figure path) from -o/--figure/--out-dir/--no-save/--no-figure; checked before running."""
    from .plots import check_path
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
    from . import report
    files = {}
    if table_path is not None:
        files["table"] = str(_write_front(front, table_path))
    if figure_path is not None and len(front):
        from .plots import pareto_front
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


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


# --------------------------------------------------------------------------- sweep / search

def cmd_sweep(args) -> int:
    from . import report
    from .sweep import sweep
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
    if checkpoint:
        header.append(f"checkpoint: {checkpoint}")
    return _front_report(args, space, res.front, header=header, table_path=table_path, figure_path=figure_path,
                         extra_json={"n_evaluated": res.n_evaluated, "n_feasible": res.n_feasible,
                                     "elapsed_s": res.elapsed_s,
                                     "best": {k: v for k, v in res.best.items()}})


def cmd_search(args) -> int:
    space = _space(args, args.space)
    table_path, figure_path = _outputs(args, space, "search")
    enable_compile_cache()
    from .search.pymoo_problem import run_search
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


# --------------------------------------------------------------------------- configuration flags

# flag -> (parameter, help); values are read like spec values (names, numbers, "10 min", ...)
CONFIG_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--model", "model", "model to train or serve, e.g. llama3_70b"),
    ("--hardware", "hardware", "accelerator, e.g. h100_sxm (default h100_sxm)"),
    ("--n-accelerators", "n_accelerators", "accelerators in the fleet (training)"),
    ("--tp", "tp", "tensor-parallel degree"),
    ("--pp", "pp", "pipeline-parallel degree"),
    ("--ep", "ep", "expert-parallel degree (training)"),
    ("--region", "region", "grid region, e.g. quebec (default us_avg)"),
    ("--precision", "precision", "fp32, tf32, fp16 (bf16), fp8, int8, int4"),
    ("--fabric", "fabric", "scale-out network, e.g. ib_ndr"),
    ("--pricing", "pricing", "cloud or onprem"),
    ("--tokens", "n_tokens", "training tokens, e.g. 15e12 (training)"),
    ("--efficiency", "efficiency", "matmul fraction of peak η, e.g. 0.4"),
    ("--global-batch", "global_batch", "sequences per optimizer step (training)"),
    ("--seq-len", "seq_len", "tokens per sequence (training)"),
    ("--microbatches", "microbatches", "micro-batches per step (training)"),
    ("--zero-stage", "zero_stage", "ZeRO stage 0-3 (training)"),
    ("--request-rate", "request_rate", "requests per second, e.g. 1000 (serving)"),
    ("--batch", "batch", "concurrent sequences per replica (serving)"),
    ("--prompt-tokens", "prompt_tokens", "input tokens per request (serving)"),
    ("--output-tokens", "output_tokens", "generated tokens per request (serving)"),
    ("--replicas", "replicas", "model replicas, 0 = enough for the load (serving)"),
    ("--duration", "duration", "deployment period, e.g. '1 year' (serving)"),
)
SERVING_ONLY = {"request_rate", "batch", "prompt_tokens", "output_tokens", "replicas", "duration",
                "max_utilization"}
_LISTABLE = ("catalog", "choice", "int")


def _add_config_args(p) -> None:
    g = p.add_argument_group("configuration (use --space SPACE with --set, or a scenario with direct flags)")
    g.add_argument("--space", metavar="SPACE", help="a spec file or ready space name; --set picks axis values "
                   "and overrides constants (axes left out take their first value)")
    g.add_argument("--scenario", choices=("training", "serving"),
                   help="scenario without a space (default: serving if a serving flag is given, else training)")
    g.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="any scenario parameter, e.g. --set hardware=b200 tp=8 checkpoint_interval='30 min'")
    g.add_argument("--limit", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="[constraints] limits for a scenario, e.g. --limit max_time='30 day' budget=2e7USD")
    for flag, param, help_ in CONFIG_FLAGS:
        g.add_argument(flag, dest=f"p_{param}", metavar="V", help=help_)
    p.add_argument("--calibration", metavar="FILE", help="efficiency parameters from a calibration file")


def _split_kv(items: Sequence[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise MlsysOptError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} tp=8")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def _config(args) -> tuple[Any, dict, dict]:
    """(target: scenario name or Space, params, limits) from the configuration flags."""
    from . import schema
    params = {param: getattr(args, f"p_{param}") for _, param, _ in CONFIG_FLAGS
              if getattr(args, f"p_{param}") is not None}
    params.update(_split_kv(args.set, "--set"))
    limits = _split_kv(args.limit, "--limit")
    if args.space:
        if args.scenario:
            raise MlsysOptError("--space and --scenario: give one (the space names its scenario)")
        target = _space(args, args.space)
        scenario = target.scenario
    else:
        scenario = args.scenario or ("serving" if SERVING_ONLY & set(params) else "training")
        target = scenario
    allowed = schema.PARAMS[scenario]
    out = {}
    for k, v in params.items():
        spec = allowed.get(k)
        if spec is None:
            from .errors import suggest
            raise MlsysOptError(f"{k!r} is not a parameter of the {scenario} scenario;{suggest(k, allowed)} "
                                f"(allowed: {', '.join(allowed)})")
        if spec.kind in _LISTABLE and "," in v:
            out[k] = [x.strip() for x in v.split(",") if x.strip()]
        elif k == "request_rate" and _is_number(v):
            out[k] = f"{v} /s"
        else:
            out[k] = v
    if scenario == "training" and "n_tokens" not in out and not args.space:
        raise MlsysOptError("the training scenario needs the number of tokens: --tokens 15e12 "
                            "(or --set n_tokens=15e12)")
    if scenario == "serving" and "request_rate" not in out and not args.space:
        raise MlsysOptError("the serving scenario needs a request rate: --request-rate 1000 "
                            "(requests per second)")
    if "model" not in out and not args.space:
        raise MlsysOptError(f"the {scenario} scenario needs a model: --model llama3_70b "
                            "(list: mlsys-opt catalog list models)")
    return target, out, limits


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _first_objective(space) -> str:
    return space.objectives[0][0]


# --------------------------------------------------------------------------- evaluate

def cmd_evaluate(args) -> int:
    from . import report
    from .plots import check_path
    target, params, limits = _config(args)
    if args.figure:
        check_path(args.figure)
    enable_compile_cache()
    df, space = report.evaluate_frame(target, params, eff=_eff(args), catalog=_catalog(args),
                                      limits=limits or None)
    grid = any(isinstance(v, list) for v in params.values())
    if grid or len(df) > 1:
        if args.json:
            _print_json({"scenario": space.scenario, "configurations": df})
        else:
            varying = [c for c in df.columns if c in params and isinstance(params[c], list)]
            extra = ["time_to_train_s", "tco_usd", "carbon_kg", "mfu"] if space.scenario == "training" else \
                ["ttft_s", "itl_s", "p99_latency_s", "cost_per_mtok_usd", "carbon_per_mtok_kg"]
            cols = list(dict.fromkeys(varying + [n for n, _ in space.objectives] + extra))
            cols += ["feasible", "binding_constraint"]
            _out(report.format_table(df, cols, width=report.terminal_width()))
        return EXIT_OK if df["feasible"].any() or args.allow_infeasible else EXIT_INFEASIBLE
    row = df.iloc[0]
    binding = None
    if not args.no_sensitivity:
        from .sensitivity import binding as find_binding, sensitivity
        sens = sensitivity(space, _config_of(space, row, params), outputs=[_first_objective(space)],
                           eff=_eff(args), tables=space.catalog.tables())
        system = sens[~sens["parameter"].isin(WORKLOAD_INPUTS)]      # the workload size is not a lever
        system.attrs.update(sens.attrs)
        binding = find_binding(system, _first_objective(space))
    audit = report.audit(row, space, sensitivity_binding=binding)
    if args.figure:
        from .plots import evaluation_figure
        evaluation_figure(row, space, path=args.figure)
    if args.json:
        _print_json({"scenario": space.scenario, "configuration": _param_dict(row, space),
                     "outputs": {k: row[k] for k in _output_cols(space) if k in row},
                     "constraints": {k[2:]: row[k] for k in row.index if k.startswith("g_")},
                     "feasible": bool(row["feasible"]), "binding_constraint": row["binding_constraint"],
                     "audit": audit, "figure": args.figure})
    else:
        _out(_title(row, space))
        _out()
        _out(report.format_audit(audit))
        _out()
        outs = [c for c in _output_cols(space) if c in row and c not in report.HIDDEN]
        _out("All outputs (SI value in the last column):")
        _out(_outputs_table(row, outs, space.scenario))
        _out()
        if row["feasible"]:
            _out(f"feasible: yes (tightest constraint: {row['binding_constraint']}, "
                 f"g = {row['g_' + row['binding_constraint'].replace('limit:', 'limit_')]:+.3f})")
        else:
            bad = [k[2:].replace("limit_", "limit:", 1) for k in row.index if k.startswith("g_") and row[k] > 0]
            _out(f"feasible: NO, violated: {', '.join(bad)}")
        if args.figure:
            _out(f"wrote {args.figure} (iron-law loss cascade)" if space.scenario == "training"
                 else f"wrote {args.figure} (decode step on the roofline)")
    return EXIT_OK if bool(row["feasible"]) or args.allow_infeasible else EXIT_INFEASIBLE


WORKLOAD_INPUTS = ("n_tokens", "request_rate", "duration")   # what is asked, not how the system answers


def _config_of(space, row, params: dict) -> dict:
    """The sensitivity config of an evaluated row: its axis labels plus the non-axis overrides."""
    config = {a.name: str(row[a.name]) if a.kind in ("catalog", "choice") else a.labels[0]
              for a in space.axes if a.name in row}
    for a in space.axes:
        if a.name in params and not isinstance(params[a.name], list):
            config[a.name] = params[a.name]
    config.update({k: v for k, v in params.items() if k not in space.axis_names})
    return config


def _output_cols(space) -> list[str]:
    from . import schema
    return list(schema.OUTPUTS[space.scenario]) + (["time_to_train_days"] if space.scenario == "training" else [])


def _param_dict(row, space) -> dict:
    from . import schema
    from .space import column_name
    return {column_name(space.scenario, k): row[column_name(space.scenario, k)]
            for k in schema.PARAMS[space.scenario] if column_name(space.scenario, k) in row}


def _title(row, space) -> str:
    if space.scenario == "training":
        return (f"training {row['model']} on {int(row['n_accelerators']):,} × {row['hardware']} "
                f"(tp {int(row['tp'])}, pp {int(row['pp'])}, dp {int(row['dp']):,}), {row['region']}, "
                f"{row['precision']}, {row['pricing']}, {_count(float(row['n_tokens']))} tokens")
    return (f"serving {row['model']} on {row['hardware']} (tp {int(row['tp'])}, pp {int(row['pp'])}, batch "
            f"{int(row['batch'])}, {int(row['replicas']):,} replicas), {row['region']}, {row['precision']}, "
            f"{float(row['request_rate_per_s']):,.4g} requests/s")


def _outputs_table(row, names, scenario: str) -> str:
    import pandas as pd

    from . import report
    from .schema import OUTPUTS
    docs = OUTPUTS[scenario]
    rows = [{"output": n, "value": report.value_text(n, row[n]), "meaning": docs[n].doc if n in docs else "",
             "SI": _si(row[n])} for n in names]
    return report.format_table(pd.DataFrame(rows), human=False)


def _si(v) -> str:
    if isinstance(v, str):
        return v
    return f"{float(v):.6g}"


# --------------------------------------------------------------------------- sensitivity

def cmd_sensitivity(args) -> int:
    import pandas as pd

    from . import report
    from .sensitivity import binding, sensitivity
    target, params, limits = _config(args)
    if any(isinstance(v, list) for v in params.values()):
        raise MlsysOptError("sensitivity takes one configuration; give single values (no comma lists)")
    if args.figure:
        from .plots import check_path
        check_path(args.figure)
    enable_compile_cache()
    space = target if not isinstance(target, str) else report.point_space(target, params, catalog=_catalog(args),
                                                                           limits=limits or None)
    config = _config_of(space, {a.name: a.labels[0] for a in space.axes}, params) if isinstance(target, str) \
        else dict(params)
    outputs = args.output or [n for n, _ in space.objectives]
    df = sensitivity(space, config, outputs=outputs, eff=_eff(args), tables=space.catalog.tables())
    if args.figure:
        from .plots import tornado
        tornado(df, outputs[0], top=args.top, path=args.figure)
    if args.json:
        _print_json({"scenario": space.scenario, "configuration": config, "sensitivities": df,
                     "binding": {o: binding(df, o)._asdict() for o in outputs}, "figure": args.figure})
        return EXIT_OK
    for o in outputs:
        rows = df[df["output"] == o].sort_values("rank").head(args.top)
        _out(f"{o} = {report.value_text(o, rows['output_value'].iloc[0])}: elasticities ∂ln y/∂ln x "
             "(+1 % of the input changes the output by this many %)")
        table = pd.DataFrame({"rank": rows["rank"], "input": rows["parameter"],
                              "value": [report.quantity_text(p, v) for p, v in zip(rows["parameter"], rows["value"])],
                              "elasticity": [f"{e:+.3f}" for e in rows["elasticity"]],
                              "derivative (SI)": [f"{d:.4g}" for d in rows["derivative"]]})
        _out(report.format_table(table, human=False))
        b = binding(df, o)
        system = df[~df["parameter"].isin(WORKLOAD_INPUTS)]
        system.attrs.update(df.attrs)
        bs = binding(system, o)
        _out(f"binding input: {b.parameter} ({b.elasticity:+.2f})"
             + (f"; of the system: {bs.parameter} ({bs.elasticity:+.2f})" if bs.parameter != b.parameter else "")
             + f"; tightest constraint: {b.constraint} (g = {b.g:+.3f}, <= 0 feasible)")
        _out()
    if args.figure:
        _out(f"wrote {args.figure} (tornado chart of {outputs[0]})")
    return EXIT_OK


# --------------------------------------------------------------------------- catalog / spaces

def cmd_catalog(args) -> int:
    from . import report
    from .catalog._load import KINDS, kind_of
    cat = _catalog(args)
    if args.action == "list":
        kinds = [kind_of(args.kind)] if args.kind else list(KINDS)
        if args.json:
            _print_json({k: cat.frames[k] for k in kinds})
            return EXIT_OK
        for k in kinds:
            _out(f"{k} ({len(cat.names(k))}):")
            _out(report.catalog_table(cat, k, width=report.terminal_width()))
            _out()
        _out(f"user entries: --catalog FILE or ${CATALOG_ENV}=FILE{os.pathsep}FILE... "
             "([accelerators.NAME] / [models.NAME] / [fabrics.NAME] / [regions.NAME] tables); "
             "'*' marks entries from user files")
        return EXIT_OK
    if args.action == "show":
        k = kind_of(args.kind)
        entry = cat.entry(k, args.name)
        if args.json:
            _print_json({"kind": k, "source_file": cat.source_of(k, args.name), "entry": entry})
        else:
            _out(f"{k}: {entry['name']} ({entry['display_name']}), from {cat.source_of(k, args.name)}")
            _out(report.entry_table(entry))
        return EXIT_OK
    # add
    from .catalog._load import entries_from
    k = kind_of(args.kind)
    path = args.file
    if not Path(path).is_file():
        raise MlsysOptError(f"catalog add: {path!r} does not exist")
    new = cat.with_entries(k, path)
    names, _ = entries_from(path, k)
    shown = [new.names(k)[new.index(k, n)] for n in names]
    added = [n for n in shown if n not in cat.names(k)]
    if args.json:
        _print_json({"kind": k, "file": path, "added": added, "overridden": [n for n in shown if n not in added],
                     "entries": [new.entry(k, n) for n in shown]})
        return EXIT_OK
    _out(f"{path}: valid. {len(shown)} {k} entr{'y' if len(shown) == 1 else 'ies'}: "
         f"{len(added)} new ({', '.join(added) or '-'}), {len(shown) - len(added)} overriding built-in ones.")
    for n in shown:
        _out()
        _out(f"{n} (merged):")
        _out(report.entry_table(new.entry(k, n)))
    _out()
    _out(f"To use them in other commands: mlsys-opt --catalog FILE ... or export {CATALOG_ENV}=FILE, "
         f"with the tables written as [{k}.NAME] (the file here may use [NAME] or [{k}.NAME]).")
    return EXIT_OK


def cmd_spaces(args) -> int:
    import pandas as pd

    from . import report
    from .space import list_spaces
    if args.action == "show":
        space = _space(args, args.name)
        if args.json:
            _print_json({"name": space.name, "scenario": space.scenario, "size": space.size,
                         "axes": {a.name: list(a.labels) for a in space.axes}, "fixed": space.fixed_labels,
                         "limits": {k: {"sense": s, "value": v} for k, (s, v) in space.limits.items()},
                         "objectives": [{"name": n, "sense": s} for n, s in space.objectives]})
            return EXIT_OK
        _out(textwrap.fill(space.describe(), width=100))
        _out()
        _out(report.format_table(pd.DataFrame({"axis": [a.name for a in space.axes],
                                               "values": [len(a.labels) for a in space.axes],
                                               "labels": [", ".join(a.labels[:12]) + (" ..." if len(a.labels) > 12
                                                                                      else "") for a in space.axes]}),
                                 human=False))
        return EXIT_OK
    infos = list_spaces(args.dir)
    rows = []
    for info in infos:
        try:
            size = f"{_space(args, info.path).size:,}"
        except MlsysOptError as exc:
            size = f"invalid ({str(exc).splitlines()[0][:60]})"
        rows.append({"name": info.name, "scenario": info.scenario, "configurations": size,
                     "file": str(info.path), "description": info.description})
    if args.json:
        _print_json(rows)
        return EXIT_OK
    if not rows:
        _out(f"no spec files (*.toml) in {args.dir or 'spaces/'}")
        return EXIT_OK
    df = pd.DataFrame(rows)
    df["description"] = [d[:90] + ("..." if len(d) > 90 else "") for d in df["description"]]
    _out(report.format_table(df[["name", "scenario", "configurations", "description"]], human=False))
    _out()
    _out("run one: mlsys-opt sweep NAME (or a path to your own .toml; format: spaces/README.md)")
    return EXIT_OK


# --------------------------------------------------------------------------- synthesize

def cmd_synthesize(args) -> int:
    res = synthesize_target(args, _catalog(args))
    if args.json:
        _print_json({k: v for k, v in res.items() if k != "lines"})
    else:
        for line in res["lines"]:
            _out(line)
    return EXIT_OK


def _count(n: float) -> str:
    """15T, 70.6B, 512 for a count."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:,.0f}"


# the training settings --days checks the iron-law answer with (spaces/capstone.toml's, overridable by --set)
DAYS_DEFAULTS = {"tp": 8, "pp": 4, "global_batch": 2048, "seq_len": 8192, "microbatches": 4}


def synthesize_target(args, catalog) -> dict:
    """Wall 22 (mlsys_opt.search.synthesis): --itl -> HBM bandwidth, --ttft -> FLOP/s, --days -> devices.

    Returns SI numbers, a `candidates` table (datacenter accelerators, fewest needed first) and `lines`.
    """
    import math

    import numpy as np
    import pandas as pd

    from . import report, units
    from ._types import BYTES_PER_ELEMENT, PRECISION_ALIASES, PRECISIONS, SECONDS_PER_DAY
    from .search import synthesis as S
    from .walls import analysis, node
    m = catalog.entry("models", args.model)
    key = PRECISION_ALIASES.get(args.precision.strip().lower(), args.precision.strip().lower())
    if key not in PRECISIONS:
        from .errors import suggest
        raise MlsysOptError(f"--precision {args.precision!r}: not a precision;{suggest(args.precision, PRECISIONS)} "
                            f"(allowed: {', '.join(PRECISIONS)}; bf16 = fp16)")
    prec = key
    if not 0 < args.mfu <= 1:
        raise MlsysOptError(f"--mfu {args.mfu!r}: expected a fraction in (0, 1]")
    hw = catalog.frames["accelerators"]
    hw = hw[(hw["segment"] == "datacenter") & (hw[f"peak_{prec}_flop_per_s"] > 0) & ~hw["is_wafer_scale"].astype(bool)]
    peaks, bws, caps = (hw[c].to_numpy(float) for c in (f"peak_{prec}_flop_per_s", "mem_bw_bytes_per_s",
                                                           "mem_capacity_bytes"))
    q = report.quantity_text
    name, out, lines = str(m["name"]), {"model": str(m["name"]), "precision": prec}, []
    if args.itl or args.ttft:
        flag = "--itl" if args.itl else "--ttft"
        t = units.parse(args.itl or args.ttft, "time", positive=True, field=flag)
        tokens = args.batch if args.itl else args.prompt_tokens
        spec = S.inverse_roofline(name, t, precision=prec, efficiency=args.mfu, tokens=float(tokens), catalog=catalog)
        kv = float(node.kv_cache_bytes(float(m["n_layers"]), float(m["n_kv_heads"]), float(m["head_dim"]),
                                       float(args.context), float(args.batch), BYTES_PER_ELEMENT[PRECISIONS.index(prec)]))
        kv = kv if args.itl else 0.0
        bw = spec.required_bw_bytes_per_s + float(analysis.required_bandwidth(kv, t))
        mem = spec.required_memory_bytes + kv
        out.update(target=flag[2:], target_s=t, required_bandwidth_bytes_per_s=bw, required_memory_bytes=mem,
                   required_flop_per_s=spec.required_flop_per_s, kv_cache_bytes=kv)
        if args.itl:
            lines += [f"{name} decode at {1e3 * t:g} ms per token ({prec}, batch {args.batch}, {args.context:,} KV "
                      f"tokens per sequence):",
                      f"  bytes read per token: {q('w_bytes', spec.weight_bytes)} weights + {q('k_bytes', kv)} KV",
                      f"  required HBM bandwidth: {q('b_bytes_per_s', bw)}  (= {spec.weight_bytes + kv:.4g} B / "
                      f"{t:g} s, inverse memory roofline)",
                      f"  required memory: {q('m_bytes', mem)}; compute: {q('f_flop_per_s', spec.required_flop_per_s)}"
                      f" at η = {args.mfu:g} (decode is memory-bound)"]
            need = np.maximum(1, np.ceil(np.maximum(bw / bws, mem / caps))).astype(int)
            got = [f"{1e3 * (spec.weight_bytes + kv) / (n * b):.1f} ms" for n, b in zip(need, bws)]
            cand = pd.DataFrame({"hardware": hw["name"].to_numpy(), "HBM BW": [q("b_bytes_per_s", v) for v in bws],
                                 "HBM": [q("c_bytes", v) for v in caps], "devices (tp)": need, "ITL at that tp": got})
        else:
            lines += [f"{name} prefill of {tokens:,} tokens in {1e3 * t:g} ms ({prec}):",
                      f"  work: 2·P·prompt = {spec.flop:.4g} FLOP",
                      f"  required peak: {q('p_flop_per_s', spec.required_flop_per_s)} at η = {args.mfu:g} (inverse "
                      f"compute roofline); weights {q('w_bytes', spec.weight_bytes)}"]
            need = np.maximum(1, np.ceil(np.maximum(spec.required_flop_per_s / peaks, mem / caps))).astype(int)
            got = [f"{1e3 * spec.flop / (n * pk * args.mfu):.0f} ms" for n, pk in zip(need, peaks)]
            cand = pd.DataFrame({"hardware": hw["name"].to_numpy(), "peak": [q("p_flop_per_s", v) for v in peaks],
                                 "devices (tp)": need, "TTFT at that tp": got})
        cand = cand.sort_values(["devices (tp)", cand.columns[-1]], kind="stable")
    else:
        try:
            days = float(args.days)
        except ValueError:
            raise MlsysOptError(f"--days {args.days!r}: expected a number of days, e.g. 14") from None
        if not days > 0:
            raise MlsysOptError(f"--days {args.days!r}: expected a positive number of days")
        n_tok = units.parse(args.tokens, "tokens", positive=True, field="--tokens") if args.tokens \
            else 20.0 * float(m["n_params"])
        config = {**DAYS_DEFAULTS, **_split_kv(args.set, "--set"), "model": name,
                  "hardware": args.hardware or "h100_sxm", "n_tokens": n_tok, "efficiency": args.mfu,
                  "precision": prec}
        try:            # a placeholder fleet of one tp·pp·ep group: min_devices_for_time sweeps N itself
            config["n_accelerators"] = int(config["tp"]) * int(config["pp"]) * int(config.get("ep", 1))
        except (TypeError, ValueError):
            raise MlsysOptError("--set tp/pp/ep: expected integers") from None
        space = report.point_space("training", config, catalog=catalog)
        res = S.min_devices_for_time(space, {space.axes[0].name: space.axes[0].labels[0]}, days * SECONDS_PER_DAY)
        hw_name = str(catalog.entry("accelerators", config["hardware"])["name"])
        flop = 6.0 * float(m["n_active_params"]) * n_tok
        out.update(target="days", target_s=days * SECONDS_PER_DAY, hardware=hw_name, n_tokens=n_tok,
                   training_flop=flop, iron_law_devices=math.ceil(res.iron_law_n), scenario_devices=res.n,
                   scenario_time_s=res.time_s)
        settings = ", ".join(f"{k} {v}" for k, v in config.items() if k in DAYS_DEFAULTS or k in _split_kv(args.set,
                                                                                                        "--set"))
        lines += [f"train {name} on {_count(n_tok)} tokens{'' if args.tokens else ' (Chinchilla: 20 per parameter)'}"
                  f" in {days:g} days on {hw_name} ({prec}, MFU {args.mfu:g}):",
                  f"  iron law: N ≥ 6PD / (T · peak · MFU) = {flop:.4g} FLOP / ({days:g} d · "
                  f"{q('p_flop_per_s', float(catalog.entry('accelerators', hw_name)[f'peak_{prec}_flop_per_s']))}"
                  f" · {args.mfu:g}) = {math.ceil(res.iron_law_n):,} devices (a lower bound)",
                  (f"  training scenario ({settings}): {res.n:,} devices train in {res.time_s / SECONDS_PER_DAY:.1f} "
                   f"days (communication, bubbles, failures included)" if res.n else
                   f"  training scenario ({settings}): no fleet up to 8× the bound meets {days:g} days "
                   "(scaling losses, memory or the batch split bind; change them with --set, e.g. "
                   "--set global_batch=4096 pp=8)")]
        need = [math.ceil(float(analysis.required_devices(flop, days * SECONDS_PER_DAY, pk, args.mfu, 1.0, 1.0)))
                for pk in peaks]
        cand = pd.DataFrame({"hardware": hw["name"].to_numpy(), "peak": [q("p_flop_per_s", v) for v in peaks],
                             "devices (iron law)": need}).sort_values("devices (iron law)", kind="stable")
    key = [c for c in cand.columns if c.startswith("devices")][0]
    cand[key] = [f"{int(v):,}" for v in cand[key]]
    out["candidates"] = cand
    out["lines"] = lines + ["", "datacenter accelerators in the catalog, fewest needed first:",
                            report.format_table(cand.head(12), human=False)]
    return out


# --------------------------------------------------------------------------- validate / calibrate

def cmd_validate(args) -> int:
    from .calibration import format_validation_table, validate
    enable_compile_cache()
    eff = _eff(args)
    df = validate(calibrated=eff) if eff is not None else validate()
    if args.json:
        _print_json({"rows": df, "summary": df.attrs.get("summary")})
    else:
        _out("Predictions vs published measurements (error % = predicted / measured - 1):")
        _out(format_validation_table(df))
    return EXIT_OK


def cmd_calibrate(args) -> int:
    from . import calibration as C
    if args.output and Path(args.output).suffix.lower() not in (".json", ".toml"):
        raise MlsysOptError(f"-o {args.output!r}: a calibration is written as .json or .toml")
    enable_compile_cache()
    cal = C.calibrate(steps=args.steps)
    df = C.validate(calibrated=cal.eff)
    if args.output:
        C.save_calibration(cal, args.output)
    if args.json:
        _print_json({"parameters": cal.eff._asdict(), "fitted": list(cal.fitted), "loss_before": cal.loss_before,
                     "loss_after": cal.loss_after, "validation": df, "file": args.output})
        return EXIT_OK
    _out(f"fitted {', '.join(cal.fitted)} on {len(cal.fitted_on)} measurements: log-loss "
         f"{cal.loss_before:.4g} -> {cal.loss_after:.4g}")
    for name in cal.fitted:
        _out(f"  {name:<24} {float(getattr(C.DEFAULT_EFFICIENCY, name)):>10.4g} -> {float(getattr(cal.eff, name)):.4g}")
    _out()
    _out(C.format_validation_table(df))
    if args.output:
        _out()
        _out(f"wrote {args.output}; use it with --calibration {args.output}")
    return EXIT_OK


# --------------------------------------------------------------------------- parser

EXAMPLES = {
    "sweep": """examples:
  mlsys-opt sweep spaces/capstone.toml                     # front table + capstone_front.csv/.png here
  mlsys-opt sweep capstone -o front.parquet --figure front.svg
  mlsys-opt sweep my_space.toml --out-dir results --color region --top 10
  mlsys-opt sweep big.toml --checkpoint big.ckpt.npz --resume   # continue an interrupted sweep
  mlsys-opt sweep capstone --json > front.json""",
    "search": """examples:
  mlsys-opt search spaces/capstone.toml --algorithm nsga2 --evals 20000 --pop 200 --seed 0
  mlsys-opt search llama3_serving --algorithm nsga3 --evals 5000 -o front.csv""",
    "evaluate": """examples:
  # seed 003: Llama-3-70B on 512 H100s (TP 8) in Quebec, with a 30-day limit
  mlsys-opt evaluate --model llama3_70b --hardware h100_sxm --n-accelerators 512 --tp 8 \\
      --region quebec --tokens 1.24e12 --global-batch 2048 --seq-len 2048 --efficiency 0.4 \\
      --set overlap=0.9 --limit max_time='30 day'
  mlsys-opt evaluate --space capstone --set hardware=b200 n_accelerators=4096 tp=8 region=norway
  mlsys-opt evaluate --model llama3_70b --request-rate 100 --batch 16 --tp 4,8 --limit max_itl='50 ms'
  mlsys-opt evaluate ... --figure cascade.png     # iron-law loss cascade (training)""",
    "sensitivity": """examples:
  mlsys-opt sensitivity --model llama3_70b --hardware h100_sxm --n-accelerators 512 --tp 8 \\
      --region quebec --tokens 1.24e12 --figure tornado.png
  mlsys-opt sensitivity --space capstone --set hardware=b200 n_accelerators=4096 tp=8 --output tco_usd""",
    "synthesize": """examples:
  mlsys-opt synthesize --model llama3_70b --itl 50ms          # -> HBM bandwidth needed (2.8 TB/s)
  mlsys-opt synthesize --model llama3_70b --itl 50ms --batch 16 --context 4096
  mlsys-opt synthesize --model llama3_70b --ttft 500ms --prompt-tokens 4096
  mlsys-opt synthesize --model llama3_70b --days 14 --hardware h100_sxm --tokens 15e12   # -> GPUs""",
    "catalog": """examples:
  mlsys-opt catalog list                 # every kind
  mlsys-opt catalog list accelerators    # or: hardware, models, fabrics, regions
  mlsys-opt catalog show hardware h100_sxm
  mlsys-opt catalog add accelerators my_chips.toml     # validate and print the merged entries
  mlsys-opt --catalog my_catalog.toml sweep my_space.toml   # use user entries

a user catalog file:
  [accelerators.h100_cheap]
  based_on = "h100_sxm"
  price = "20000 USD"
  source = "my quote, 2025"
""",
    "spaces": """examples:
  mlsys-opt spaces list
  mlsys-opt spaces show capstone""",
    "validate": """examples:
  mlsys-opt validate
  mlsys-opt validate --calibration my_calibration.json --json""",
    "calibrate": """examples:
  mlsys-opt calibrate -o calibration.json
  mlsys-opt sweep capstone --calibration calibration.json""",
}


def _common(suppress: bool) -> argparse.ArgumentParser:
    """--json / --catalog / --quiet, accepted before or after the command."""
    p = argparse.ArgumentParser(add_help=False)
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--json", action="store_true", default=d(False),
                   help="machine-readable JSON on stdout (SI units) instead of tables")
    p.add_argument("--catalog", action="append", metavar="FILE", default=d(None),
                   help=f"user catalog entries (repeatable; also ${CATALOG_ENV})")
    p.add_argument("-q", "--quiet", action="store_true", default=d(False), help="no progress messages on stderr")
    return p


def build_parser() -> argparse.ArgumentParser:
    sub_common = _common(True)
    parser = _Parser(prog=PROG, formatter_class=_Help, parents=[_common(False)],
                     description="Design-space optimizer for ML systems: sweep, search, evaluate and explain "
                                 "training and serving configurations.",
                     epilog="the main command:\n  mlsys-opt sweep spaces/capstone.toml\n\n"
                            "exit codes: 0 ok, 2 bad input, 3 no feasible configuration, 130 interrupted.\n"
                            f"user catalogs: --catalog FILE or ${CATALOG_ENV}; compile cache: ${CACHE_ENV}.\n"
                            "'mlsys-opt COMMAND --help' shows each command's flags and examples.")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name, func, help_, description=None):
        p = subs.add_parser(name, help=help_, description=description or help_, parents=[sub_common],
                            formatter_class=_Help, epilog=EXAMPLES.get(name))
        p.set_defaults(func=func)
        return p

    p = add("sweep", cmd_sweep, "evaluate every configuration of a space; print and save its exact Pareto front")
    p.add_argument("space", metavar="SPACE", help="spec file (.toml) or a ready space name (mlsys-opt spaces list)")
    _add_front_outputs(p, "front")
    p.add_argument("--chunk-size", type=_positive_int, metavar="N", help="configurations per jitted step "
                   "(default: the spec's [sweep] chunk_size, else 65536); does not change the result")
    p.add_argument("--devices", type=_positive_int, metavar="N", help="shard chunks over the first N devices "
                   "(default: all)")
    p.add_argument("--checkpoint", metavar="PATH", help="save the sweep state here while running (.npz)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint (default "
                   "OUT_DIR/<space name>.ckpt.npz) if it exists")

    p = add("search", cmd_search, "evolutionary search of a space's Pareto front (pymoo)")
    p.add_argument("space", metavar="SPACE", help="spec file (.toml) or a ready space name")
    p.add_argument("--algorithm", metavar="NAME", help="nsga2, nsga3, unsga3, age, age2, spea2, smsemoa, rvea, "
                   "ctaea, moead, random (default: the spec's [search] algorithm, else nsga2)")
    p.add_argument("--evals", type=_positive_int, metavar="N", help="evaluation budget (default: [search] evals)")
    p.add_argument("--pop", type=_positive_int, metavar="N", help="population size (default: [search] pop_size)")
    p.add_argument("--seed", type=_nonneg_int, metavar="S", help="random seed (default: [search] seed)")
    _add_front_outputs(p, "search")

    p = add("evaluate", cmd_evaluate, "one configuration: every wall's figures (seed 003 full-stack audit)")
    _add_config_args(p)
    p.add_argument("--figure", metavar="PATH", help="iron-law loss cascade figure (training), .png/.svg/.pdf")
    p.add_argument("--no-sensitivity", action="store_true", help="skip the wall-21 sensitivity row (faster)")
    p.add_argument("--allow-infeasible", "--allow-empty", dest="allow_infeasible", action="store_true",
                   help="exit 0 even when the configuration is infeasible (else 3)")

    p = add("sensitivity", cmd_sensitivity, "ranked elasticities of outputs to every continuous input (wall 21)")
    _add_config_args(p)
    p.add_argument("--output", action="append", metavar="NAME", help="output to explain (repeatable; default: "
                   "the objectives, e.g. time_to_train_s, tco_usd, carbon_kg)")
    p.add_argument("--top", type=_positive_int, default=12, metavar="N", help="rows per output (default 12)")
    p.add_argument("--figure", metavar="PATH", help="tornado chart of the first output, .png/.svg/.pdf")

    p = add("synthesize", cmd_synthesize, "inverse walls: a target in, the minimum spec out (wall 22)")
    p.add_argument("--model", required=True, metavar="NAME", help="catalog model, e.g. llama3_70b")
    t = p.add_mutually_exclusive_group(required=True)
    t.add_argument("--itl", metavar="TIME", help="inter-token latency target, e.g. 50ms -> HBM bandwidth")
    t.add_argument("--ttft", metavar="TIME", help="time-to-first-token target, e.g. 500ms -> FLOP/s")
    t.add_argument("--days", metavar="DAYS", help="training time target in days -> accelerators")
    p.add_argument("--hardware", metavar="NAME", help="accelerator for --days (default h100_sxm)")
    p.add_argument("--tokens", metavar="N", help="training tokens for --days (default: 20 per parameter, "
                   "Chinchilla)")
    p.add_argument("--mfu", type=float, default=0.4, metavar="F", help="MFU / η: achieved fraction of peak "
                   "(default 0.4)")
    p.add_argument("--precision", default="fp16", metavar="P", help="weights/KV precision (default fp16)")
    p.add_argument("--batch", type=_positive_int, default=1, metavar="B", help="sequences decoded together "
                   "(default 1)")
    p.add_argument("--context", type=_nonneg_int, default=0, metavar="TOKENS", help="KV-cache tokens per "
                   "sequence read each step (default 0: weights only, as seed 002)")
    p.add_argument("--prompt-tokens", type=_positive_int, default=1024, metavar="N",
                   help="prompt length for --ttft (default 1024)")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="training settings for the --days check (default: tp=8 pp=4 global_batch=2048 "
                        "seq_len=8192 microbatches=4, as spaces/capstone.toml)")

    p = add("catalog", cmd_catalog, "list, show or add hardware, models, fabrics and regions")
    csub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser, required=True)
    c = csub.add_parser("list", help="entries of one kind or all", parents=[sub_common], formatter_class=_Help)
    c.add_argument("kind", nargs="?", metavar="KIND", help="accelerators (hardware), models, fabrics, regions")
    c = csub.add_parser("show", help="every field of one entry", parents=[sub_common], formatter_class=_Help)
    c.add_argument("kind", metavar="KIND")
    c.add_argument("name", metavar="NAME")
    c = csub.add_parser("add", help="validate a user TOML file and print the merged entries",
                        parents=[sub_common], formatter_class=_Help)
    c.add_argument("kind", metavar="KIND")
    c.add_argument("file", metavar="FILE.toml")

    p = add("spaces", cmd_spaces, "the ready design spaces")
    ssub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser, required=True)
    s = ssub.add_parser("list", help="spec files with size and question", parents=[sub_common],
                        formatter_class=_Help)
    s.add_argument("--dir", metavar="DIR", help="folder of spec files (default: the repository's spaces/)")
    s = ssub.add_parser("show", help="one space's axes, limits and objectives", parents=[sub_common],
                        formatter_class=_Help)
    s.add_argument("name", metavar="SPACE")

    p = add("validate", cmd_validate, "predictions vs published measurements (Megatron-LM, PaLM, ...)")
    p.add_argument("--calibration", metavar="FILE", help="also show a calibration's predictions")
    p = add("calibrate", cmd_calibrate, "fit the efficiency model to the measurements (optax)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the calibration (.json or .toml)")
    p.add_argument("--steps", type=_positive_int, default=400, metavar="N", help="Adam steps (default 400)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script passes it to sys.exit)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return EXIT_INPUT
        return int(args.func(args))
    except SystemExit as exc:          # --help / --version
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else EXIT_INPUT
    except UsageError as exc:
        _err(str(exc))
        return EXIT_INPUT
    except MlsysOptError as exc:
        _err(f"{PROG}: error: {exc}")
        return EXIT_INPUT
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        _err(f"{PROG}: error: {exc.filename or ''}: {exc.strerror or exc}")
        return EXIT_INPUT
    except KeyboardInterrupt:
        _err(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:            # `mlsys-opt ... | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
