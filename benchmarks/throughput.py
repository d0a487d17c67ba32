"""Configurations per second of the full scenarios, and peak memory while sweeping.

For each scenario (training, serving) a design space of the requested size is
built from the real catalog (every accelerator, every region, parallelism,
batch, precision, ...; a continuous `efficiency` axis stretches it to the
size), swept with ``mlsys_opt.sweep`` (decode -> catalog gather -> scenario ->
constraints -> on-device exact Pareto reduction), and timed.  "steady" is the
rate between the first and the last chunk (compile excluded); "total" includes
compilation.  Peak RSS is measured in a fresh subprocess per size so each row
has its own high-water mark.  It prints a table; it is not a test.

    python benchmarks/throughput.py                          # chunk-size table at 10^6, both scenarios
    python benchmarks/throughput.py --sizes 1e6 1e7 1e8 1e9  # RSS + rate while streaming those sizes
    python benchmarks/throughput.py --scenario training --chunks 16 18 20 22 --sizes 1e7
    python benchmarks/throughput.py --cpu-devices 2 ...       # one JAX CPU device per core, lanes sharded

``--processes P`` runs each measurement as a jax.distributed job of P processes on
localhost (``sweep(..., distributed=True)``, gloo collectives), each with
``--cpu-devices / P`` host devices (default 1), and prints the distributed rate
next to the 1-process rate on the same total number of devices: "sweep s" is
wall time from the last process's first chunk (compile excluded) to the end of
the merge, and "overhead" its excess over the single process's.

``--cpu-devices N`` starts each measurement with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``: the engine then shards every
chunk's lanes over N host devices with ``shard_map`` (one thread each), the same code
path as several GPUs.  The device column says which was used.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

SERVING_BASE = {
    "name": "bench_serving", "scenario": "serving",
    "fixed": {"model": "llama3_70b", "request_rate": "1000 /s", "prompt_tokens": 1024, "output_tokens": 256},
    "axes": {"hardware": "*", "region": "*", "tp": [1, 2, 4, 8], "pp": [1, 2],
             "batch": {"pow2": [1, 256]}, "precision": ["fp16", "fp8", "int8", "int4"],
             "pricing": ["cloud", "onprem"]},
    "constraints": {"max_itl": "50 ms", "p99_latency": "30 s"},
    "objectives": {"minimize": ["p99_latency_s", "cost_per_mtok_usd", "carbon_per_mtok_kg"]},
}
TRAINING_BASE = {
    "name": "bench_training", "scenario": "training",
    "fixed": {"model": "llama3_70b", "n_tokens": "15e12 token", "fabric": "ib_ndr", "global_batch": 2048,
              "seq_len": 8192},
    "axes": {"hardware": "*", "region": "*", "n_accelerators": {"pow2": [64, 65536]}, "tp": [1, 2, 4, 8],
             "pp": [1, 2, 4, 8, 16], "microbatches": [4, 8, 16, 32], "precision": ["fp16", "fp8"],
             "pricing": ["cloud", "onprem"]},
    "constraints": {"max_time": "90 day"},
    "objectives": {"minimize": ["time_to_train_s", "tco_usd", "carbon_kg"]},
}


def space_dict(scenario: str, n_target: float) -> dict:
    """A spec dict of at least n_target configurations (efficiency axis sized to fit)."""
    from mlsys_opt.space.spec import load_space

    base = json.loads(json.dumps(SERVING_BASE if scenario == "serving" else TRAINING_BASE))
    size = load_space(base).size
    count = max(1, math.ceil(n_target / size))
    if count > 1:
        base["axes"]["efficiency"] = {"linspace": [0.2, 0.7], "count": count}
    return base


def run_one(scenario: str, n_target: float, chunk_log2: int, dist: tuple | None = None) -> dict:
    if dist is not None:              # (process id, process count, port): join before JAX starts
        from mlsys_opt.sweeps import distributed
        distributed.initialize(f"127.0.0.1:{dist[2]}", dist[1], dist[0])
    import jax

    from mlsys_opt.space.spec import load_space
    from mlsys_opt.sweeps.api import sweep

    space = load_space(space_dict(scenario, n_target))
    stamps = []

    def progress(done, total):
        stamps.append((time.perf_counter(), done))
        if len(stamps) == 1:
            first_chunk.append(time.time())

    first_chunk: list = []
    t0 = time.perf_counter()
    # the sweep's default front capacity (4096 slots), as users get it: the step computes the
    # front's anchors over every slot each chunk, so a larger capacity is a fixed cost per chunk
    res = sweep(space, chunk_size=2 ** chunk_log2, progress=progress,
                distributed=dist is not None)
    total_s = time.perf_counter() - t0
    t_end = time.time()
    steady = float("nan")
    if len(stamps) >= 3:
        (t1, d1), (t2, d2) = stamps[0], stamps[-1]
        steady = (d2 - d1) / max(t2 - t1, 1e-9)
    return {"scenario": scenario, "n": res.n_evaluated, "chunk": 2 ** chunk_log2,
            "total_s": total_s, "total_rate": res.n_evaluated / total_s, "steady_rate": steady,
            "feasible": res.n_feasible, "front": len(res.front),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "device": str(jax.devices()[0].platform) + f" x{len(jax.local_devices())}",
            "t_first_chunk": first_chunk[0] if first_chunk else t_end, "t_end": t_end,
            "processes": 1 if dist is None else dist[1]}


def run_job(scenario: str, n: float, chunk_log2: int, processes: int, devices_per_process: int) -> dict:
    """P processes of one distributed sweep (or one plain process); their merged timing."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={devices_per_process}").strip()
    procs = []
    for pid in range(processes):
        cmd = [sys.executable, os.path.abspath(__file__), "--one", scenario, repr(n), str(chunk_log2)]
        if processes > 1:
            cmd += ["--dist", str(pid), str(processes), str(port)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    rows = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError((err.strip().splitlines() or ["?"])[-1])
        rows.append(json.loads(out.strip().splitlines()[-1]))
    r = dict(rows[0])
    r["sweep_s"] = max(x["t_end"] for x in rows) - max(x["t_first_chunk"] for x in rows)
    r["processes"] = processes
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=["training", "serving", "both"], default="both")
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e6])
    ap.add_argument("--chunks", type=int, nargs="+", default=[14, 16, 18, 20],
                    help="log2 chunk sizes (default 14 16 18 20)")
    ap.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                    help="run on N JAX CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=N)")
    ap.add_argument("--processes", type=int, default=1, metavar="P",
                    help="also run each measurement as a jax.distributed job of P local processes")
    ap.add_argument("--one", nargs=3, metavar=("SCENARIO", "N", "CHUNK_LOG2"), help=argparse.SUPPRESS)
    ap.add_argument("--dist", nargs=3, type=int, metavar=("PID", "P", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], float(args.one[1]), int(args.one[2]),
                                 tuple(args.dist) if args.dist else None)))
        return 0
    if args.processes > 1:
        return _processes_table(args)
    scenarios = ["training", "serving"] if args.scenario == "both" else [args.scenario]
    print(f"{'scenario':9} {'configs':>14} {'chunk':>9} {'total s':>9} {'total cfg/s':>13} "
          f"{'steady cfg/s':>13} {'feasible':>13} {'front':>6} {'peak RSS MB':>11}  device", flush=True)
    for scenario in scenarios:
        for n in args.sizes:
            for c in args.chunks:
                cmd = [sys.executable, os.path.abspath(__file__), "--one", scenario, repr(n), str(c)]
                env = dict(os.environ)
                if args.cpu_devices:
                    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                                        f" --xla_force_host_platform_device_count={args.cpu_devices}").strip()
                out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    print(f"{scenario:9} {n:>14.3g} {2**c:>9} failed: {out.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{r['scenario']:9} {r['n']:>14,} {r['chunk']:>9,} {r['total_s']:>9.1f} "
                      f"{r['total_rate']:>13.3e} {r['steady_rate']:>13.3e} {r['feasible']:>13,} "
                      f"{r['front']:>6} {r['peak_rss_mb']:>11.0f}  {r['device']}", flush=True)
    return 0


def _processes_table(args) -> int:
    """1 process x D devices vs P processes x D/P devices, same total devices (D = --cpu-devices or P)."""
    total = args.cpu_devices or args.processes
    per = max(1, total // args.processes)
    scenarios = ["training", "serving"] if args.scenario == "both" else [args.scenario]
    print(f"{'scenario':9} {'configs':>14} {'chunk':>9} {'processes':>9} {'devices':>7} {'total s':>8} "
          f"{'sweep s':>8} {'sweep cfg/s':>12} {'overhead':>8}  feasible / front", flush=True)
    for scenario in scenarios:
        for n in args.sizes:
            for c in args.chunks:
                base = None
                for procs, dev in ((1, per * args.processes), (args.processes, per)):
                    try:
                        r = run_job(scenario, n, c, procs, dev)
                    except RuntimeError as exc:
                        print(f"{scenario:9} {n:>14.3g} {2**c:>9} {procs:>9} failed: {exc}")
                        continue
                    base = r["sweep_s"] if procs == 1 else base
                    over = "" if procs == 1 or base is None else f"{100 * (r['sweep_s'] / base - 1):+.1f} %"
                    print(f"{scenario:9} {r['n']:>14,} {r['chunk']:>9,} {procs:>9} {procs * dev:>7} "
                          f"{r['total_s']:>8.1f} {r['sweep_s']:>8.1f} {r['n'] / r['sweep_s']:>12.3e} {over:>8}  "
                          f"{r['feasible']:,} / {r['front']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
