"""The `mlsys-opt` command (also `python -m mlsys_opt`).

    mlsys-opt sweep spaces/capstone.toml          exact Pareto front of a whole space
    mlsys-opt search SPACE --algorithm nsga2      evolutionary search (pymoo)
    mlsys-opt evaluate --model llama3_70b ...     one configuration: the full-stack audit
    mlsys-opt sensitivity ... --figure t.png      ranked elasticities, tornado chart
    mlsys-opt synthesize --model M --itl 50ms     a target in, a minimum spec out
    mlsys-opt catalog list|show|add               hardware, models, fabrics, regions
    mlsys-opt spaces list|show                    the ready design spaces
    mlsys-opt validate | calibrate                accuracy against published measurements
    mlsys-opt warmup [SPACE ...]                  compile the ready spaces' sweeps into the cache

Exit codes: 0 ok; 2 bad input (one message on stderr naming the file, key or
flag, no traceback); 3 no feasible configuration (unless --allow-empty);
130 interrupted.  Anything else that escapes is a bug: the traceback, a line saying
so, exit 1 (`console_main`, the installed script).
`--json` prints machine-readable output (SI units, unit in every key) on
stdout instead of tables.

User catalog entries: files of ``[accelerators.NAME]``, ``[models.NAME]``,
``[fabrics.NAME]``, ``[regions.NAME]`` tables, given with ``--catalog FILE``
(repeatable) or the environment variable MLSYS_OPT_CATALOG (paths separated
by the OS path separator).  Compiled kernels are cached in
$MLSYS_OPT_CACHE_DIR (default ~/.cache/mlsys_opt/jax; "off" disables it).

Layout: this module holds the parser (global flags, the subcommand registry with
every command's flags and examples) and `main` (error handling, exit codes); the
commands themselves are in mlsys_opt/cli/commands/ (common, front, evaluate,
catalog, synthesize, accuracy, warmup); `--timings` is formatted by mlsys_opt/cli/timings.py.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import traceback
from typing import Sequence

from ..errors import MlsysOptError
from .commands.accuracy import cmd_calibrate, cmd_validate
from .commands.catalog import cmd_catalog, cmd_spaces
from .commands.common import (
    CACHE_ENV,
    CATALOG_ENV,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    PROG,
    _err,
    _nonneg_int,
    _positive_int,
)
from .commands.evaluate import CONFIG_FLAGS, _add_config_args, _add_table_args, cmd_evaluate, cmd_sensitivity  # noqa: F401,E501
from .commands.front import _add_front_outputs, cmd_search, cmd_sweep, space_header  # noqa: F401
from .commands.synthesize import cmd_synthesize, synthesize_target  # noqa: F401
from .commands.warmup import cmd_warmup

# (catalog_paths, load_user_catalog, enable_compile_cache, space_header, synthesize_target, CONFIG_FLAGS and the
# EXIT_* codes are re-exported: they were importable from mlsys_opt.cli before the commands moved out.)


class UsageError(Exception):
    """A command-line mistake (argparse): printed as one line, exit code 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so a sweep saves its checkpoint on the way out (exit 143)."""


def _raise_terminated(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Terminated()


class _Parser(argparse.ArgumentParser):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        # '--itl -5ms', '--set -x': a value that starts with '-' and a digit is a value (no flag of ours
        # looks like a negative number), so it reaches our own message instead of "expected one argument"
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str):  # noqa: D401 - argparse hook
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


class _Help(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=32, width=100)


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
  mlsys-opt sensitivity --space capstone --set hardware=b200 n_accelerators=4096 tp=8 --output tco_usd

reading it: an elasticity of -0.9 means +1 % of the input gives -0.9 % of the output (exact, forward-mode
autodiff).  An input on the edge of its domain (straggler_factor = 1, an overlap of 1, a length cv of 0) gets
the derivative of the side it can move to.  "binding input" is the largest |elasticity|; "of the system"
leaves out the workload (n_tokens, request_rate, duration) and inputs at their ideal floor
(straggler_factor = 1, oversubscription = 1), which can only make the design worse.""",
    "synthesize": """examples:
  mlsys-opt synthesize --model llama3_70b --itl 50ms          # -> HBM bandwidth needed (2.8 TB/s)
  mlsys-opt synthesize --model llama3_70b --itl 50ms --batch 16 --context 4096
  mlsys-opt synthesize --model llama3_70b --ttft 500ms --prompt-tokens 4096
  mlsys-opt synthesize --model llama3_8b --days 14 --tokens 2e12       # -> GPUs, with the layout needing fewest
  mlsys-opt synthesize --model llama3_70b --days 14 --tokens 15e12 --set global_batch=4096   # tp=8 pp=1 would pin""",
    "catalog": """examples:
  mlsys-opt catalog list                 # every kind
  mlsys-opt catalog list accelerators    # or: hardware, models, fabrics, regions
  mlsys-opt catalog show hardware h100_sxm
  mlsys-opt --catalog my_catalog.toml catalog add accelerators my_chips.toml
      # validate my_chips.toml and save its entries into my_catalog.toml (created if missing)
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
  mlsys-opt validate --loo source
  mlsys-opt validate --rows legacy --calibration my_calibration.json --json
  mlsys-opt validate --measurements examples/my_runs.csv   # a template of the columns""",
    "warmup": """examples:
  mlsys-opt warmup                          # every ready space (mlsys-opt spaces list), ~10 s each on 2 cores
  mlsys-opt warmup capstone my_space.toml   # only these
  mlsys-opt --catalog my_catalog.toml warmup my_space.toml --calibration calibration.json

A sweep's first run compiles its program with XLA (the capstone: 5-10 s on a 2-core CPU);
later runs load the compiled step from the compile cache ($MLSYS_OPT_CACHE_DIR, default
~/.cache/mlsys_opt/jax; its step cache: $MLSYS_OPT_STEP_CACHE, "off" disables it) in a fraction
of a second, without tracing.  warmup compiles ahead of time, so the first sweep is a warm one.
The program depends on the catalog, the calibration, --chunk-size and --devices, and on the
versions of mlsys_opt and JAX: warm up with the flags the sweeps will use.""",
    "calibrate": """examples:
  mlsys-opt calibrate -o calibration.json
  mlsys-opt calibrate --measurements examples/my_runs.csv -o my_cluster.json
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


def _add_distributed_args(p) -> None:
    """--distributed and friends, --timings (sweeps.distributed; docs/scale-out.md)."""
    g = p.add_argument_group("several processes (jax.distributed; see docs/scale-out.md)")
    g.add_argument("--distributed", action="store_true", help="sweep across the processes of a jax.distributed "
                   "job (SLURM and Open MPI detected; else give the three flags below); process 0 writes the files")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0 (the coordinator)")
    g.add_argument("--num-processes", type=_positive_int, metavar="N", help="processes in the job")
    g.add_argument("--process-id", type=_nonneg_int, metavar="I", help="this process, 0 .. N-1")
    p.add_argument("--timings", action="store_true", help="print seconds per phase on stderr (import, spec, "
                   "compile, evaluate, reduce, write)")


def build_parser() -> argparse.ArgumentParser:
    sub_common = _common(True)
    parser = _Parser(prog=PROG, formatter_class=_Help, parents=[_common(False)],
                     description="Design-space optimizer for ML systems: sweep, search, evaluate and explain "
                                 "training and serving configurations.",
                     epilog="the main command:\n  mlsys-opt sweep spaces/capstone.toml\n\n"
                            "exit codes: 0 ok, 2 bad input, 3 no feasible configuration, 130 interrupted.\n"
                            f"user catalogs: --catalog FILE or ${CATALOG_ENV}; compile cache: ${CACHE_ENV} "
                            "('mlsys-opt warmup' fills it ahead of a first sweep).\n"
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
    _add_distributed_args(p)

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
    _add_table_args(p)
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
    p.add_argument("--allow-infeasible", action="store_true",
                   help="exit 0 even when the configuration is infeasible (else 3, after printing)")

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
    p.add_argument("--batch", type=_positive_int, metavar="B", help="sequences decoded together, for --itl "
                   "(default 1)")
    p.add_argument("--context", type=_nonneg_int, metavar="TOKENS", help="KV-cache tokens per "
                   "sequence read each step, for --itl (default 0: weights only, as seed 002)")
    p.add_argument("--prompt-tokens", type=_positive_int, metavar="N",
                   help="prompt length for --ttft (default 1024)")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="training settings for the --days check (default: global_batch=2048 seq_len=8192 as "
                        "spaces/capstone.toml, microbatches=0 micro_batch_size=0: the fastest fitting micro-batch "
                        "of 1, 2, 4 or 8 sequences; tp, pp and zero_stage not set here are searched: tp 1-8, "
                        "pp 1-16, ZeRO 1 or 3, and ep 1-64 for a MoE model: the layout needing the fewest devices wins), "
                        "e.g. --set tp=8 "
                        "pp=4 zero_stage=1 (no search) or --set global_batch=4096")

    p = add("catalog", cmd_catalog, "list, show or add hardware, models, fabrics and regions")
    csub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser, required=True)
    c = csub.add_parser("list", help="entries of one kind or all", parents=[sub_common], formatter_class=_Help)
    c.add_argument("kind", nargs="?", metavar="KIND", help="accelerators (hardware), models, fabrics, regions")
    c = csub.add_parser("show", help="every field of one entry", parents=[sub_common], formatter_class=_Help)
    c.add_argument("kind", metavar="KIND")
    c.add_argument("name", metavar="NAME")
    add_help = ("validate a TOML file's entries and save them into the user catalog (the last file named by "
                f"--catalog / ${CATALOG_ENV}, created if missing; with none named it only validates and prints)")
    c = csub.add_parser("add", help=add_help, description=add_help, parents=[sub_common], formatter_class=_Help)
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
    p.add_argument("--calibration", metavar="FILE",
                   help="the calibration to show beside the defaults (default: the shipped one)")
    p.add_argument("--loo", nargs="?", const="source", choices=("source", "org", "row"), metavar="BY",
                   help="also refit with each source (default), organisation or row held out and "
                        "predict it (leave-one-source-out: median/worst per scenario, rows that miss most)")
    p.add_argument("--rows", choices=("all", "legacy", "training", "serving", "runs"), default="all",
                   help="which published rows: all (default), legacy (measurements.json), training / "
                        "serving (training_runs.json / serving_runs.json), runs (both)")
    p.add_argument("--measurements", metavar="FILE",
                   help="your own measured runs (.csv or .toml: setup columns + measured quantities; "
                        "examples/my_runs.csv is a template, mlsys_opt/calibration/user.py the full schema) "
                        "instead of the published rows")
    p.add_argument("--steps", type=_positive_int, default=400, metavar="N",
                   help="Adam steps of each --loo refit (default 400)")
    p = add("warmup", cmd_warmup, "compile the sweeps of the ready spaces (or of the given ones) into the compile "
            "cache, so that a first sweep starts warm")
    p.add_argument("spaces", nargs="*", metavar="SPACE", help="spec files or ready space names (default: every "
                   "ready space, mlsys-opt spaces list)")
    p.add_argument("--calibration", metavar="FILE", help="efficiency parameters the sweeps will use "
                   "(mlsys-opt calibrate -o FILE)")
    p.add_argument("--chunk-size", type=_positive_int, metavar="N", help="the --chunk-size the sweeps will use "
                   "(default: each spec's [sweep] chunk_size)")
    p.add_argument("--devices", type=_positive_int, metavar="N", help="the --devices the sweeps will use "
                   "(default: all)")
    p = add("calibrate", cmd_calibrate, "fit the efficiency model to the measurements (optax)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the calibration (.json or .toml)")
    p.add_argument("--steps", type=_positive_int, default=400, metavar="N", help="Adam steps (default 400)")
    p.add_argument("--rows", choices=("all", "legacy", "training", "serving", "runs"), default="all",
                   help="which published rows to fit (default all)")
    p.add_argument("--measurements", metavar="FILE",
                   help="fit to your own measured runs (.csv or .toml; template: examples/my_runs.csv) instead of "
                        "the published rows")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script passes it to sys.exit)."""
    parser = build_parser()
    # Ctrl-C / kill -INT interrupts a sweep cleanly (checkpoint, exit 130) even when the
    # command was started in the background of a script, which hands it SIGINT ignored;
    # kill / SIGTERM (schedulers, timeouts) does the same and exits 143.  Restored on return.
    saved = {}
    for sig, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, _raise_terminated)):
        try:
            saved[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread (embedded use): leave signals alone
            pass
    try:
        return _run(parser, argv)
    except KeyboardInterrupt as exc:   # Ctrl-C, or SIGTERM (Terminated): the sweep saved its checkpoint
        ck = getattr(getattr(parser, "_args", None), "_checkpoint", None)
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        _err(f"{PROG}: {what}" + (f"; checkpoint saved to {ck}: run the same command with --resume to continue"
                                  if ck and os.path.exists(ck) else ""))
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    finally:
        for sig, handler in saved.items():
            try:
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass


def _run(parser, argv) -> int:
    """Parse and run one command; every error a person can cause becomes one line and exit 2."""
    try:
        args = parser.parse_args(argv)
        parser._args = args
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
    except BrokenPipeError:            # `mlsys-opt ... | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK


EXIT_BUG = 1


def console_main(argv: Sequence[str] | None = None) -> int:
    """The installed `mlsys-opt` script and `python -m mlsys_opt`: :func:`main`, and for anything
    main lets through -- a bug in mlsys_opt, never the user's input -- the traceback, one line
    saying so, and exit 1.  (`main` itself lets bugs propagate, for embedding and tests.)"""
    try:
        return main(argv)
    except Exception:                  # noqa: BLE001 - the last line of defence, and it says so
        traceback.print_exc()
        _err(f"{PROG}: internal error: this is a bug in mlsys_opt, not a problem with your input; "
             "please report it with the traceback above")
        return EXIT_BUG


def exit_now(code: int) -> None:
    """End the process with `code` now: flush stdout/stderr, run the atexit handlers (JAX's
    distributed shutdown, logging), then ``os._exit`` -- skipping the interpreter's teardown of
    every module and of the XLA client (~0.3 s of a warm ``mlsys-opt sweep``).  Returns instead,
    leaving the ordinary exit, while a non-daemon thread other than this one is still running or a
    profiler or tracer (``python -m cProfile``, a debugger, coverage) watches, which writes after us."""
    import atexit
    import threading
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return
    if any(t.is_alive() and not t.daemon and t is not threading.current_thread() for t in threading.enumerate()):
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):   # a closed pipe (`| head`) or a closed stream
            pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code if isinstance(code, int) else EXIT_BUG)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console_main())
