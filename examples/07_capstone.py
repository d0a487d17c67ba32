"""The capstone (seed 004): which fleet trains Llama-3-70B on 15T tokens within
30 days, $20M and 1,000 t CO2e, for the least time, money and carbon?

    spaces/capstone.toml: 5 accelerators × 8 fleet sizes × TP × PP × every region
    × fp16/fp8 × cloud/on-prem × micro-batches = 143,360 configurations

`mlsys_opt.sweep` evaluates every one of them (jitted, chunked) and keeps the
exact Pareto front; this script prints the front, the fastest / cheapest /
cleanest fleets, and draws the front (days vs $M, coloured by t CO2e).  Same
as `mlsys-opt sweep spaces/capstone.toml`.

Run:  python examples/07_capstone.py [--out-dir DIR] [--quick]
      --quick sweeps a smaller slice (4 regions, 1,024-16,384 devices) for tests.
"""
import argparse
from pathlib import Path

import tomllib

import mlsys_opt
from mlsys_opt.cli import report
from mlsys_opt.cli.plots import pareto_front

SPACES = Path(__file__).resolve().parents[1] / "spaces"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=".", help="folder for capstone_front.png (default: .)")
    ap.add_argument("--quick", action="store_true", help="a smaller slice of the space (seconds)")
    args = ap.parse_args()

    spec = tomllib.loads((SPACES / "capstone.toml").read_text(encoding="utf-8"))
    if args.quick:
        spec["axes"]["region"] = ["quebec", "norway", "us_avg", "poland"]
        spec["axes"]["n_accelerators"] = {"pow2": [1024, 16384]}
        spec["axes"]["microbatches"] = [4, 8]
        spec["sweep"] = {"chunk_size": 8192}
    space = mlsys_opt.load_space(spec)
    res = mlsys_opt.sweep(space, progress=False)
    print(f"{space.name}: {res.n_evaluated:,} configurations evaluated in {res.elapsed_s:.1f} s, "
          f"{res.n_feasible:,} feasible (30 days, $20M, 1,000 t CO2e), {len(res.front)} on the Pareto front")
    print()
    front = res.front
    print(report.format_table(front, report.front_columns(space, front)[:11]))
    print()
    objs = [n for n, _ in space.objectives]
    for label, i in report.best_rows(front, space.objectives):       # fastest, cheapest, cleanest
        row = front.loc[i]
        print(f"{label + ':':<10} {report.describe_row(row, report.axis_columns(space))}  ->  "
              f"{report.headline(row, objs)}")
    path = Path(args.out_dir) / "capstone_front.png"
    pareto_front(front, space=space, path=path)
    print()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
