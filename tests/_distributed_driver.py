"""Child process of tests/test_distributed.py: one process of a (distributed) sweep, result as JSON.

    python _distributed_driver.py PID NPROC PORT SPACES CHUNK [CHECKPOINT] [--resume] [--die-after K] [--wait]

SPACES: comma-separated space names, swept one after the other (one JSON line
each).  NPROC 0: plain single-process sweeps.  --wait: join, print "joined",
sleep (the test kills a process).  Two host CPU devices per process
(XLA_FLAGS is set before jax is imported); the compile cache is
$MLSYS_OPT_CACHE_DIR so the processes of one test share compiled steps.
"""
import json
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"


def main(argv):
    pid, nproc, port, space, chunk = int(argv[0]), int(argv[1]), argv[2], argv[3], int(argv[4])

    rest = argv[5:]
    ckpt = rest[0] if rest and not rest[0].startswith("--") else None
    die_after = int(rest[rest.index("--die-after") + 1]) if "--die-after" in rest else None
    from mlsys_opt.errors import MlsysOptError
    from mlsys_opt.sweeps import distributed
    try:
        if nproc:
            distributed.initialize(f"127.0.0.1:{port}", nproc, pid)
        import jax
        cache = os.environ.get("MLSYS_OPT_CACHE_DIR")
        if cache:
            jax.config.update("jax_compilation_cache_dir", cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        import mlsys_opt

        def progress(done, total):
            print(f"progress {done} {total}", file=sys.stderr, flush=True)
            if die_after is not None and done >= die_after:
                os._exit(9)

        if "--wait" in rest:
            print("joined", flush=True)
            import time
            time.sleep(120)
        for name in space.split(","):
            timings = {}
            res = mlsys_opt.sweep(name, chunk_size=chunk, progress=progress, distributed=bool(nproc),
                                  checkpoint_path=ckpt, resume="--resume" in rest, timings=timings)
            print("timings", json.dumps(timings), file=sys.stderr, flush=True)
            front = res.front.astype(str).values.tolist()
            best = {k: v.astype(str).values.tolist() for k, v in res.best.items()}
            print(json.dumps({"space": name, "n_evaluated": res.n_evaluated, "n_feasible": res.n_feasible,
                              "infeasible_by": res.infeasible_by, "front": front,
                              "columns": list(res.front.columns), "best": best}), flush=True)
    except MlsysOptError as exc:
        print(f"mlsys-opt: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
