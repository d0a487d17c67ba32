"""Start-up times of the command line and the Python API (wall seconds, fresh processes).

Rows (targets from issue 15, on the 2-core CPU):
  --help, an argument error, `catalog list`, `spaces list`     (no JAX; < 0.5 s); "first s" is the
      first run in an empty $MLSYS_OPT_CACHE_DIR (the built-in catalog and the specs are validated,
      with pint, and cached), best and median the runs after it (read from the caches: no pint, no pandas)
  capstone sweep, truly cold: MLSYS_OPT_CACHE_DIR=off (XLA compiles, nothing cached, nothing read)
  capstone sweep, cold cache: an empty cache folder                (< 6 s)
  `mlsys-opt warmup capstone` into an empty cache, then the first capstone sweep
  capstone sweep warm (--no-save), and warm as typed (writes capstone_front.csv
  and .png): the compiled step loaded from the step cache
  (mlsys_opt.sweeps.executables), no tracing                      (< 2 s)
  README Python snippet (sweep + evaluate + sensitivity), run as written (the Python
  API uses $MLSYS_OPT_CACHE_DIR too): a first run (its point kernels not yet
  cached), then warm                                             (warm < 8 s)
Each repeated row runs `--repeat` times in a fresh process; the table shows the
best and the median, the process's CPU seconds (user + sys: less sensitive to
other work on the machine than the wall time), whether JAX was imported (for the
light commands) and the `--timings` breakdown of the last capstone run (import,
spec, compile = trace + lower + xla or the step cache's load, evaluate, reduce, frame,
write).  The load average is printed before and after.  It prints a table; it is not a test.
The caches are keyed by a hash of mlsys_opt's source files: run it on a tree nobody is editing.

    python benchmarks/startup.py [--repeat 3] [--skip-sweeps]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_SNIPPET = """
import mlsys_opt as mo
res = mo.sweep("spaces/capstone.toml")
print(res.front[["hardware", "n_accelerators", "region", "time_to_train_days", "tco_usd", "carbon_kg"]])
row = mo.evaluate("training", model="llama3_70b", hardware="h100_sxm", n_accelerators=512, tp=8,
                  region="quebec", n_tokens=1.24e12)
sens = mo.sensitivity("training", {"model": "llama3_70b", "hardware": "h100_sxm", "n_accelerators": 512,
                                   "tp": 8, "n_tokens": 1.24e12})
"""
JAX_PROBE = ("import sys, mlsys_opt.cli.app as a\n"
             "try:\n    a.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "sys.stderr.write('JAX=%s\\n' % ('jax' in sys.modules))\n")


def _cli() -> list[str]:
    exe = shutil.which("mlsys-opt", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "mlsys_opt"]


_CPU = [0.0]


def timed(cmd, env, cwd) -> tuple[float, str, int]:
    """(wall s, stderr, exit code); the child's CPU seconds (user + sys) go to _CPU[0]."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    _CPU[0] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, out.stderr, out.returncode


def repeated(cmd, env, cwd, n: int):
    """`timed` n times in fresh processes: (wall seconds, CPU seconds, last stderr, last exit code)."""
    walls, cpus = [], []
    for _ in range(n):
        t, err, rc = timed(cmd, env, cwd)
        walls.append(t)
        cpus.append(_CPU[0])
    return walls, cpus, err, rc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-sweeps", action="store_true", help="only the light commands")
    args = ap.parse_args(argv)
    cache = tempfile.mkdtemp(prefix="mlsys_opt_startup_cache_")
    work = tempfile.mkdtemp(prefix="mlsys_opt_startup_")
    env = dict(os.environ, MLSYS_OPT_CACHE_DIR=cache)
    cli = _cli()
    light = [("--help", ["--help"], 0.5), ("argument error", ["sweep"], 0.5),
             ("catalog list", ["catalog", "list"], 0.5), ("spaces list", ["spaces", "list"], 0.5)]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times grow with the load; "
          "'cpu' is the process's own CPU seconds)")
    print(f"{'what':34} {'best s':>8} {'median s':>9} {'target s':>9}  notes")
    for name, a, target in light:
        first, _, _ = timed(cli + a, env, work)          # the first run fills the catalog / spec caches
        first_cpu = _CPU[0]
        times, cpu, _, _ = repeated(cli + a, env, work, args.repeat)
        _, err, _ = timed([sys.executable, "-c", JAX_PROBE] + a, env, work)
        jax_loaded = "JAX=True" in err
        print(f"{'mlsys-opt ' + name:34} {min(times):8.2f} {statistics.median(times):9.2f} "
              f"{target if target else '':>9}  {'imports JAX' if jax_loaded else 'no JAX'}; "
              f"cpu {min(cpu):.2f} s; first run {first:.2f} s (cpu {first_cpu:.2f} s)")
    if args.skip_sweeps:
        return 0
    capstone = os.path.join(ROOT, "spaces", "capstone.toml")
    sweep = cli + ["sweep", capstone, "--no-save", "--timings", "-q"]
    t, err, rc = timed(sweep, dict(env, MLSYS_OPT_CACHE_DIR="off"), work)
    print(f"{'capstone sweep, truly cold (off)':34} {t:8.2f} {'':>9} {'':>9}  rc {rc}; cpu {_CPU[0]:.1f} s; "
          f"{_breakdown(err)}")
    cold, err, rc = timed(sweep, env, work)
    print(f"{'capstone sweep, cold cache':34} {cold:8.2f} {'':>9} {6:>9}  rc {rc}; cpu {_CPU[0]:.1f} s; "
          f"{_breakdown(err)}")
    cache2 = tempfile.mkdtemp(prefix="mlsys_opt_startup_warmup_")
    env2 = dict(env, MLSYS_OPT_CACHE_DIR=cache2)
    t, err, rc = timed(cli + ["warmup", capstone, "-q"], env2, work)
    print(f"{'mlsys-opt warmup capstone':34} {t:8.2f} {'':>9} {'':>9}  rc {rc}; cpu {_CPU[0]:.1f} s (empty cache)")
    t, err, rc = timed(sweep, env2, work)
    print(f"{'capstone sweep, after warmup':34} {t:8.2f} {'':>9} {6:>9}  rc {rc}; cpu {_CPU[0]:.1f} s; "
          f"{_breakdown(err)}")
    shutil.rmtree(cache2, ignore_errors=True)
    for label, cmd in (("capstone sweep, warm (--no-save)", sweep),
                       ("capstone sweep, warm, csv + png", cli + ["sweep", capstone, "--timings", "-q"])):
        warm, cpu, err, rc = repeated(cmd, env, work, args.repeat)
        print(f"{label:34} {min(warm):8.2f} {statistics.median(warm):9.2f} {2:>9}  "
              f"rc {rc}; cpu {min(cpu):.1f} s; {_breakdown(err)}")
    snippet = [sys.executable, "-c", README_SNIPPET]     # as a user runs it: mlsys_opt turns the cache on
    t, err, rc = timed(snippet, env, ROOT)       # its evaluate / sensitivity kernels are not cached yet
    print(f"{'README snippet, first run':34} {t:8.2f} {'':>9} {'':>9}  rc {rc}; cpu {_CPU[0]:.1f} s")
    warm, cpu, err, rc = repeated(snippet, env, ROOT, args.repeat)
    print(f"{'README snippet, warm cache':34} {min(warm):8.2f} {statistics.median(warm):9.2f} {8:>9}  rc {rc}; "
          f"cpu {min(cpu):.1f} s")
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


def _breakdown(stderr: str) -> str:
    parts = []
    for line in stderr.splitlines():
        bits = line.split()
        if len(bits) == 2 and bits[0] in ("import", "spec", "compile", "evaluate", "reduce", "frame", "write"):
            parts.append(f"{bits[0]} {float(bits[1]):.2f}")
        elif len(bits) > 2 and bits[0] in ("trace", "lower", "xla", "load"):   # the compile split, indented
            parts.append(f"({bits[0]} {float(bits[1]):.2f})")
    return ", ".join(parts) or "(no --timings output)"


if __name__ == "__main__":
    raise SystemExit(main())
