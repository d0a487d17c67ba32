"""Batch benchmark sweep: every wall's figures for a table of 100,000 mixed training jobs.  (issue 17)

A team's scheduler sampled 10^5 training configurations -- not a grid: each
row picks its own accelerator (written as the team writes it, "H100" or
"h100_sxm"), model, fleet size, tensor/pipeline degrees, precision ("bf16"),
region, token budget and checkpoint interval (a unit-suffixed column,
``checkpoint_interval_min``).  ``mlsys_opt.evaluate_table`` converts the
columns once (names -> catalog rows, units -> SI), streams the rows through
the sweep's jitted scenario in fixed-size chunks and returns one result row
per job: every output with its unit, every constraint margin, ``feasible`` and
the reason of the infeasible ones.  The figure: time to train vs cost of the
feasible jobs, one colour per accelerator.

The same from the command line, on a CSV or Parquet file:

    mlsys-opt evaluate --table jobs.parquet -o results.parquet

Run:  python examples/08_batch_table.py [--rows 100000] [--figure batch_table.png]
"""
import argparse
import time

import numpy as np
import pandas as pd

import mlsys_opt
from mlsys_opt.cli.commands.common import enable_compile_cache

HARDWARE = np.array(["h100_sxm", "H100", "a100_80gb", "h200", "b200", "mi300x"])
MODELS = np.array(["llama3_8b", "llama3_70b", "llama3_405b"])
REGIONS = np.array(["quebec", "norway", "us_avg", "texas", "poland"])


def jobs(n: int, seed: int = 0) -> pd.DataFrame:
    """n sampled training jobs (a table, not a Cartesian grid)."""
    rng = np.random.default_rng(seed)
    model = MODELS[rng.integers(0, len(MODELS), n)]
    params = np.where(model == "llama3_8b", 8e9, np.where(model == "llama3_70b", 70e9, 405e9))
    return pd.DataFrame({
        "job_id": np.arange(n),
        "hardware": HARDWARE[rng.integers(0, len(HARDWARE), n)],
        "model": model,
        "n_accelerators": 2 ** rng.integers(6, 14, n),
        "tp": 2 ** rng.integers(0, 4, n),
        "pp": 2 ** rng.integers(0, 4, n),
        "precision": np.array(["bf16", "fp8"])[rng.integers(0, 2, n)],
        "region": REGIONS[rng.integers(0, len(REGIONS), n)],
        "n_tokens": np.round(params * rng.uniform(10, 40, n), -9),       # 10-40 tokens per parameter
        "checkpoint_interval_min": rng.choice([0.0, 30.0, 60.0], n),     # 0 = the Young-Daly optimum
    })


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--figure", default="batch_table.png")
    args = ap.parse_args()
    enable_compile_cache()
    table = jobs(args.rows)
    t = time.perf_counter()
    res = mlsys_opt.evaluate_table(table, "training", progress=False)
    s = res.attrs["summary"]
    print(f"{s.n_rows:,} jobs evaluated in {time.perf_counter() - t:.1f} s (compilation included): "
          f"{s.n_feasible:,} feasible ({100 * s.n_feasible / s.n_rows:.1f} %)")
    reasons = sorted(((v, k) for k, v in s.infeasible_by.items() if v), reverse=True)[:4]
    print("infeasible because of: " + ", ".join(f"{k} {v:,}" for v, k in reasons))
    ok = res[res["feasible"]].copy()
    ok["days"] = ok["time_to_train_s"] / 86400
    print("\ncheapest feasible job per accelerator (H100 rows merged: 'H100' is an alias of h100_sxm):")
    best = ok.loc[ok.groupby("hardware", observed=True)["tco_usd"].idxmin()].sort_values("tco_usd")
    cols = ["job_id", "hardware", "model", "n_accelerators", "tp", "pp", "precision", "region", "days", "tco_usd",
            "carbon_kg", "mfu"]
    print(best[cols].to_string(index=False, float_format=lambda v: f"{v:,.3g}"))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for hw, part in ok.groupby("hardware", observed=True):
        ax.scatter(part["days"], part["tco_usd"], s=2, alpha=0.4, label=f"{hw} ({len(part):,})")
    ax.set(xscale="log", yscale="log", xlabel="time to train (days)", ylabel="cost of the run (USD)",
           title=f"{len(ok):,} feasible of {s.n_rows:,} sampled training jobs")
    ax.legend(markerscale=5, fontsize=8)
    fig.tight_layout()
    fig.savefig(args.figure, dpi=110)
    print(f"\nwrote {args.figure}")


if __name__ == "__main__":
    main()
