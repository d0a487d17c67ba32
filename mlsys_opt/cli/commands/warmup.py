"""`mlsys-opt warmup`: compile the sweeps of the ready spaces (or of given ones) ahead of time.

A sweep's first run in a fresh compile cache spends most of its time in XLA
compiling the engine's jitted step (5-10 s for the capstone on the 2-core CPU, more under load);
later runs load the compiled step from the step cache (``sweeps.executables``, in
$MLSYS_OPT_CACHE_DIR, default ~/.cache/mlsys_opt/jax) in a fraction of a second, without tracing.  `warmup` builds and
runs each space's sweep program on one configuration (``sweeps.api.warm``), so
the first real `mlsys-opt sweep` is already a warm one.  The program depends on
the catalog (--catalog), the efficiency model (--calibration), the chunk size
and device count, mlsys_opt's and JAX's versions: warm up with the flags the
sweeps will use.
"""
from __future__ import annotations

import time

from ...errors import MlsysOptError
from .common import CACHE_ENV, EXIT_OK, _eff, _out, _print_json, _space, enable_compile_cache


def cmd_warmup(args) -> int:
    from ...space.spec import list_spaces
    sources = list(args.spaces) if args.spaces else [str(info.path) for info in list_spaces()]
    spaces = [_space(args, s) for s in sources]          # every spec checked before any compiling
    eff = _eff(args)
    cache = enable_compile_cache()
    if cache is None:
        raise MlsysOptError(f"warmup fills the compile cache, but it is off (${CACHE_ENV}); unset ${CACHE_ENV} "
                            "or set it to a folder")
    import jax

    from ...sweeps.api import warm
    from ..timings import CompileEvents
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)   # keep every program it compiles
    if not args.quiet and not args.json:
        _out(f"compile cache: {cache}")
    rows, t_all = [], time.perf_counter()
    for space in spaces:
        t0 = time.perf_counter()
        with CompileEvents() as ev:
            timings = warm(space, chunk_size=args.chunk_size, devices=args.devices, eff=eff)
        n = ev.counts.get("xla", 0)
        hits = ev.counts.get("cache_hits", 0)
        step = timings.get("_step_cache", ("off",))[0]       # sweeps.executables: "loaded", "compiled and stored", ...
        cached = step == "loaded" or (n > 0 and hits == n)
        row = {"space": space.name, "file": str(space.source), "status": "cached" if cached else "compiled",
               "programs": n, "cache_hits": hits, "step_cache": step, "elapsed_s": time.perf_counter() - t0,
               "xla_s": ev.seconds.get("xla", 0.0)}
        rows.append(row)
        if not args.json:
            what = ("already in the cache (loaded)" if row["status"] == "cached" else
                    f"compiled {n - hits} program(s) in {row['xla_s']:.1f} s of XLA; step cache: {step}")
            _out(f"{space.name:<28} {row['elapsed_s']:6.1f} s  {what}")
    total = time.perf_counter() - t_all
    if args.json:
        _print_json({"cache_dir": cache, "spaces": rows, "elapsed_s": total})
    else:
        _out(f"done in {total:.1f} s: `mlsys-opt sweep SPACE` of {'these spaces' if len(rows) > 1 else 'this space'} "
             "now loads its program from the cache instead of compiling it (with the same --catalog, "
             "--calibration, --chunk-size and --devices)")
    return EXIT_OK
