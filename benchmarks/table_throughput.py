"""Throughput of batch table evaluation (issue 17): read Parquet -> convert -> evaluate -> write Parquet.

    .venv/bin/python benchmarks/table_throughput.py                 # 10^7 training rows
    .venv/bin/python benchmarks/table_throughput.py --rows 1e6 --scenario serving

Builds a table of mixed training (or serving) configurations -- sampled, not a
grid: accelerator, model, region, fabric and precision names (some as aliases),
counts and parallel degrees, token budgets as numbers, checkpoint intervals in
a unit-suffixed column -- writes it as Parquet (row groups of 2^20 rows, not
timed), then evaluates it with ``mlsys_opt.evaluate_table(path, out=...)`` in a
FRESH process, so the peak RSS printed is the evaluation's alone.  Reports rows/s end
to end (compilation included; with the command line's persistent caches, which
``MLSYS_OPT_CACHE_DIR=off`` disables, a second run loads the compiled chunk function:
``point.table_cache``), the host-side split (read, convert, evaluate
wait, write; the device evaluates while the host reads and writes, so the
evaluate share is the time the host waited for it) and the peak RSS.

Targets (issue 17, 2-core CPU, training, 10^7 rows): >= 2e6 rows/s end to
end, peak RSS < 2 GB, conversion not dominant.  Not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HARDWARE = ["h100_sxm", "H100", "a100_80gb", "A100", "h200", "b200", "mi300x", "tpu_v5p", "gaudi3", "l4"]
MODELS = ["llama3_8b", "llama3_70b", "llama3_405b", "gpt3_175b", "mixtral_8x7b", "bert_large"]
REGIONS = ["quebec", "norway", "us_avg", "california", "texas", "poland", "germany", "india"]
FABRICS = ["ib_ndr", "ib_hdr", "eth_400g", "ib_xdr"]
PRECISIONS = ["fp16", "bf16", "fp8", "fp32"]


def build(path: str, rows: int, scenario: str, seed: int = 0, microbatches: bool = False) -> None:
    """Write `rows` sampled configurations to `path` (Parquet), 2^20 rows at a time.

    microbatches: add a ``microbatches`` column (4, 8, 16 or 32 per row, as the sweep
    benchmark's axis): rows that give their micro-batch geometry are evaluated at that one
    geometry, the others at the candidate set (``scenarios.static_options``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = np.random.default_rng(seed)
    writer = None
    block = 1 << 20
    for s in range(0, rows, block):
        m = min(block, rows - s)

        def pick(names, m=m):
            return pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, len(names), m, dtype=np.int32)),
                                                  pa.array(names))
        cols = {"hardware": pick(HARDWARE), "model": pick(MODELS), "region": pick(REGIONS),
                "fabric": pick(FABRICS), "precision": pick(PRECISIONS),
                "tp": 2 ** rng.integers(0, 4, m), "pp": 2 ** rng.integers(0, 4, m)}
        if scenario == "training":
            cols.update({"n_accelerators": 2 ** rng.integers(3, 15, m),
                         "n_tokens": np.round(10 ** rng.uniform(11, 13.3, m), -9),
                         "global_batch": 2 ** rng.integers(8, 12, m),
                         "seq_len": 2 ** rng.integers(11, 14, m),
                         "checkpoint_interval_min": rng.choice([0.0, 30.0, 60.0, 120.0], m),
                         "efficiency": np.round(rng.uniform(0.3, 0.6, m), 3)})
            if microbatches:
                cols["microbatches"] = rng.choice([4, 8, 16, 32], m)
        else:
            cols.update({"request_rate_per_s": np.round(10 ** rng.uniform(0, 3, m), 2),
                         "batch": 2 ** rng.integers(0, 7, m), "prompt_tokens": 2 ** rng.integers(7, 13, m),
                         "output_tokens": 2 ** rng.integers(5, 11, m)})
        cols["job_id"] = np.arange(s, s + m, dtype=np.int64)
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="snappy")
        writer.write_table(table, row_group_size=block)
    writer.close()


def run(path: str, out: str, scenario: str, chunk: int, compression: str) -> dict:
    import mlsys_opt
    from mlsys_opt.cli.commands.common import enable_compile_cache
    enable_compile_cache()          # as the command line does ($MLSYS_OPT_CACHE_DIR=off: compile every run)
    t = time.perf_counter()
    s = mlsys_opt.evaluate_table(path, scenario, out=out, chunk_size=chunk, progress=False, compression=compression)
    wall = time.perf_counter() - t
    use = resource.getrusage(resource.RUSAGE_SELF)
    rss = use.ru_maxrss / 1024     # KiB -> MiB (Linux)
    return {"rows": s.n_rows, "feasible": s.n_feasible, "wall_s": wall, "rows_per_s": s.n_rows / wall,
            "compile_status": s.compile_status,
            "cpu_s": use.ru_utime + use.ru_stime, "load": os.getloadavg()[0],
            "split_s": s.timings_s, "cpu_split_s": s.cpu_s, "peak_rss_mib": rss, "out_bytes": os.path.getsize(out)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=float, default=1e7)
    ap.add_argument("--scenario", default="training", choices=("training", "serving"))
    ap.add_argument("--chunk", type=int, default=16384, help="rows per jitted call (evaluate_table's default)")
    ap.add_argument("--microbatches", action="store_true", help="training rows give their microbatches "
                    "(one micro-batch geometry each, as the sweep benchmark's space) instead of leaving the "
                    "scenario to choose among its candidates")
    ap.add_argument("--compression", default="none", help="Parquet codec of the results (none, snappy, lz4, zstd)")
    ap.add_argument("--dir", default=None, help="folder for the input and output files (default: a temp dir)")
    ap.add_argument("--_run", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._run:
        print(json.dumps(run(args._run[0], args._run[1], args.scenario, args.chunk, args.compression)))
        return
    if args.dir:
        bench(args, args.dir)
    else:                       # a temp folder holds ~0.7 GB per 10^7 rows: removed after the run
        with tempfile.TemporaryDirectory(prefix="table_bench_") as folder:
            bench(args, folder)


def bench(args, folder: str) -> None:
    """Build the input table in `folder` (unless it is there), evaluate it in a fresh process, print the figures."""
    rows = int(args.rows)
    mb = args.microbatches and args.scenario == "training"
    src = os.path.join(folder, f"{args.scenario}{'_mb' if mb else ''}_{rows}.parquet")
    if not os.path.exists(src):
        t = time.perf_counter()
        build(src, rows, args.scenario, microbatches=mb)
        print(f"built {src} ({os.path.getsize(src) / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s", flush=True)
    out = os.path.join(folder, f"{args.scenario}{'_mb' if mb else ''}_{rows}.results.parquet")
    if os.path.exists(out):     # a run writes a new result: replacing the last one costs ext4 ~0.4 s more
        os.remove(out)          # (the rename over it flushes the new file, and the old one is freed)
    proc = subprocess.run([sys.executable, __file__, "--scenario", args.scenario, "--chunk", str(args.chunk),
                           "--compression", args.compression, "--_run", src, out],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(proc.stderr)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    split = ", ".join(f"{k} {v:.2f} s" for k, v in r["split_s"].items())
    threads = sum(r["cpu_split_s"].values())
    cpu_split = ", ".join(f"{k} {v:.2f} s" for k, v in r["cpu_split_s"].items()) + \
        f"; device (the rest) {r['cpu_s'] - threads:.2f} s"
    print(f"{args.scenario}: {r['rows']:,} rows in {r['wall_s']:.2f} s = {r['rows_per_s']:.3g} rows/s end to end "
          f"(compile included: {r['compile_status']}; chunk {args.chunk}{'; microbatches given' if mb else ''}; "
          f"compression "
          f"{args.compression}); wall split (overlapping threads): {split}; CPU split: {cpu_split}; "
          f"peak RSS {r['peak_rss_mib']:.0f} MiB; "
          f"output {r['out_bytes'] / 1e6:.0f} MB; {r['feasible']:,} feasible; process CPU time {r['cpu_s']:.1f} s "
          f"(load average {r['load']:.1f} on {os.cpu_count()} cores at the end)")


if __name__ == "__main__":
    main()
