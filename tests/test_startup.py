"""Start-up: the light commands never import JAX (issue 15, "fast start").

`mlsys-opt --help`, an argument error, `catalog list|show`, `spaces list|show` and `warmup --help`
run in one fresh interpreter (one subprocess, ~1 s), each through `mlsys_opt.cli.main` (given argv,
it returns instead of ending the process); afterwards neither JAX nor the other heavy optional
layers (optax, pymoo, matplotlib) may be in sys.modules.
The wall times are measured by benchmarks/startup.py (a table, not a timed test).
Also: the sweep's default progress display is a tqdm bar, shown only to someone watching;
`mlsys-opt warmup` fills the compile cache so that the next sweep loads its program (`--timings`
says so); the script's early exit keeps the output and the exit code; `--timings` arithmetic.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LIGHT = {
    "--help": ["--help"],
    "argument error": ["sweep"],
    "catalog list": ["catalog", "list"],
    "catalog show": ["catalog", "show", "hardware", "h100_sxm"],
    "spaces list": ["spaces", "list"],
    "spaces list --json": ["spaces", "list", "--json"],
    "spaces show": ["spaces", "show", "capstone"],
    "warmup --help": ["warmup", "--help"],
}
HEAVY = ("jax", "jaxlib", "optax", "pymoo", "matplotlib")

CHILD = """
import contextlib, io, json, sys
from mlsys_opt.cli import main      # the script's entry: with argv given it must return, not exit
heavy = {heavy!r}
report = {{}}
for name, argv in json.loads(sys.argv[1]).items():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    report[name] = {{"code": code, "stdout": out.getvalue()[:20000], "stderr": err.getvalue()[:500],
                    "loaded": [m for m in heavy if m in sys.modules]}}
print(json.dumps(report))
"""


def test_light_commands_do_not_import_jax(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CHILD.format(heavy=HEAVY), json.dumps(LIGHT)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    expected_codes = {"argument error": 2}
    for name, argv in LIGHT.items():
        r = report[name]
        assert r["code"] == expected_codes.get(name, 0), (name, r)
        assert r["loaded"] == [], f"`mlsys-opt {' '.join(argv)}` imported {r['loaded']}"
    # the commands did their work (not an early exit that would pass the check trivially)
    assert "capstone" in report["spaces list"]["stdout"] and "286,720" in report["spaces list"]["stdout"]
    spaces = json.loads(report["spaces list --json"]["stdout"])
    assert {s["name"] for s in spaces} >= {"capstone", "llama3_serving"}
    assert all(not str(s["configurations"]).startswith("invalid") for s in spaces), spaces
    assert "h100_sxm" in report["catalog list"]["stdout"]
    assert "tp" in report["spaces show"]["stdout"]
    assert "usage: mlsys-opt" in report["--help"]["stdout"]
    assert "warmup" in report["--help"]["stdout"] and "compile cache" in report["warmup --help"]["stdout"]


def test_default_progress_is_a_tqdm_bar_only_when_someone_watches(monkeypatch):
    """progress=None: tqdm (tqdm.auto) on a terminal or in a Jupyter kernel, nothing in a pipe or a test."""
    import io

    from tqdm import tqdm as std_tqdm

    from mlsys_opt.sweeps import engine

    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert engine.progress_bar(100) is None
    monkeypatch.setattr(sys, "stderr", Tty())
    bar = engine.progress_bar(100)
    assert isinstance(bar, std_tqdm)
    bar.update(100)
    bar.close()
    assert "100/100" in sys.stderr.getvalue()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setitem(sys.modules, "ipykernel", object())       # a notebook without a terminal
    bar = engine.progress_bar(10)
    assert isinstance(bar, std_tqdm)
    bar.close()


SMALL = """\
name = "warm_small"
scenario = "training"

[fixed]
model = "llama3_70b"
n_tokens = "1e12 token"
global_batch = 2048

[axes]
hardware = ["h100_sxm", "b200"]
n_accelerators = [256, 512]
tp = [4, 8]

[objectives]
minimize = ["time_to_train_s", "tco_usd"]
"""


def _cli(args, env, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "mlsys_opt", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_warmup_fills_the_cache_and_the_next_sweep_loads_it(tmp_path):
    """`warmup SPEC` compiles the sweep's one program into $MLSYS_OPT_CACHE_DIR; a sweep of the same spec
    in a new process then loads the compiled step from the step cache: nothing traced or compiled."""
    spec = tmp_path / "small.toml"
    spec.write_text(SMALL)
    cache = tmp_path / "cache"
    env = {**{k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR")},
           "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "MLSYS_OPT_CACHE_DIR": str(cache),
           "MLSYS_OPT_CATALOG": ""}
    warm = _cli(["warmup", str(spec), "--json"], env, tmp_path)
    assert warm.returncode == 0, warm.stderr
    report = json.loads(warm.stdout)
    assert report["cache_dir"] == str(cache)
    [row] = report["spaces"]
    assert row["space"] == "warm_small" and row["status"] == "compiled" and row["programs"] >= 1, row
    assert any(cache.iterdir()), "warmup wrote nothing into the cache"
    run = _cli(["sweep", str(spec), "--no-save", "--timings"], env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "on the Pareto front" in run.stdout
    lines = {ln.split()[0]: ln for ln in run.stderr.splitlines() if ln.startswith("  ") and ln.split()}
    for phase in ("import", "spec", "compile", "trace", "lower", "xla", "load", "evaluate", "write", "total"):
        assert phase in lines, (phase, run.stderr)
    assert "loaded from the compile cache, 0 compiled" in lines["xla"], run.stderr
    # the step cache (sweeps.executables) held the compiled step: no tracing, lowering or XLA at all
    assert "the step loaded from the step cache" in lines["load"], run.stderr
    assert lines["trace"].split()[1] == "0.000" and lines["xla"].split()[1] == "0.000", run.stderr
    # warming again finds everything in the cache
    again = _cli(["warmup", str(spec)], env, tmp_path)
    assert again.returncode == 0 and "already in the cache" in again.stdout, again.stdout + again.stderr


def test_warmup_refuses_a_disabled_cache_and_a_bad_space(tmp_path, monkeypatch, capsys):
    from mlsys_opt.cli import app
    monkeypatch.setenv("MLSYS_OPT_CACHE_DIR", "off")
    spec = tmp_path / "small.toml"
    spec.write_text(SMALL)
    assert app.main(["warmup", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "compile cache" in err and "MLSYS_OPT_CACHE_DIR" in err and err.count("\n") == 1, err
    assert app.main(["warmup", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_the_script_exits_early_with_its_output_and_exit_code(tmp_path):
    """`python -m mlsys_opt` ends with os._exit after the command: stdout complete, exit codes kept."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = _cli(["spaces", "list", "--json"], env, tmp_path, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert {s["name"] for s in json.loads(ok.stdout)} >= {"capstone"}      # flushed before the early exit
    bad = _cli(["sweep"], env, tmp_path, timeout=120)
    assert bad.returncode == 2 and "usage" not in bad.stdout and "error" in bad.stderr
    # the atexit handlers still run (JAX's distributed shutdown, logging), and nothing after main() does
    child = ("import atexit, sys\n"
             "flag = sys.argv[1]\n"
             "atexit.register(lambda: open(flag, 'w').write('atexit ran'))\n"
             "sys.argv = ['mlsys-opt', 'spaces', 'list']\n"
             "from mlsys_opt.cli import main\n"
             "main()\n"
             "open(flag + '.after', 'w').write('main returned')\n")
    flag = tmp_path / "flag"
    proc = subprocess.run([sys.executable, "-c", child, str(flag)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "capstone" in proc.stdout, proc.stderr
    assert flag.read_text() == "atexit ran" and not (tmp_path / "flag.after").exists()


def test_timings_table_and_nested_spans_counted_once():
    from mlsys_opt.cli.timings import CompileEvents, _union, format_timings
    assert _union([]) == 0.0
    assert _union([(0.0, 1.0), (0.25, 0.5), (2.0, 3.0)]) == 2.0            # nested span inside the first
    assert _union([(1.0, 2.0), (0.0, 1.5)]) == 2.0                          # overlapping, out of order
    ev = CompileEvents()
    ev._span("/jax/core/compile/jaxpr_trace_duration", 0.0, 0.5)
    ev._span("/jax/core/compile/jaxpr_trace_duration", 0.1, 0.2)            # a nested jit's trace
    ev._span("/jax/core/compile/backend_compile_duration", 1.0, 1.25)
    ev._span("/jax/something/else", 0.0, 9.0)                               # not ours: ignored
    ev._event("/jax/compilation_cache/cache_hits")
    assert ev.seconds == {"trace": 0.5, "xla": 0.25} and ev.counts["xla"] == 1
    text = format_timings({"write": 0.5, "import": 1.0, "compile": 0.75}, ev)
    lines = text.splitlines()
    assert lines[0] == "timings (s):"
    assert [ln.split()[0] for ln in lines[1:]] == ["import", "compile", "trace", "lower", "xla", "write", "total"]
    assert lines[-1].split() == ["total", "2.250"]                          # phases only, not the split
    assert "1 loaded from the compile cache, 0 compiled" in text
    with_cpu = format_timings({"import": 1.0}, None, cpu_s=1.5).splitlines()[-1]
    assert with_cpu.split()[:2] == ["total", "1.000"] and "process CPU 1.500 s" in with_cpu


CACHE_CHILD = """
import os, sys
import jax
import mlsys_opt as mo
cache, other = sys.argv[1], sys.argv[2]
os.environ["MLSYS_OPT_CACHE_DIR"] = "off"
assert mo._enable_compile_cache() is None and not jax.config.jax_compilation_cache_dir
os.environ["MLSYS_OPT_CACHE_DIR"] = cache
assert callable(mo.sweep)              # the first access of a compiling function turns the cache on
assert jax.config.jax_compilation_cache_dir == cache and os.path.isdir(cache), jax.config.jax_compilation_cache_dir
jax.config.update("jax_compilation_cache_dir", other)      # one the user chose is kept
assert mo._enable_compile_cache() == other
print("OK")
"""


def test_the_python_api_uses_the_persistent_compile_cache(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "MLSYS_OPT_CACHE_DIR")},
           "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", CACHE_CHILD, str(tmp_path / "c"), str(tmp_path / "user")],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stderr
