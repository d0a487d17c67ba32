"""How close does the evolutionary search get to the exact Pareto front?

For spaces small enough to enumerate, the exact front comes from the sweep
(`mlsys_opt.sweeps.api.sweep`, every configuration evaluated).  Each algorithm then
runs once per seed with the largest budget; the front it has found after the
first b evaluations (b = 2,000 / 5,000 / 10,000 / 20,000, read from the run's
archive, `search.pymoo_problem.front_at`) is scored by

    quality(b) = HV(search front after b evals) / HV(exact front)

(also "recall": the fraction of the exact front's points found exactly),
with objectives normalized by the EXACT front's ideal and nadir points,
f' = (f - ideal) / (nadir - ideal), and the reference point r = 1.1 in every
normalized objective (i.e. 10 % beyond the exact nadir).  Only feasible
configurations count (the search front is feasible by construction).

Timing: wall seconds of the whole run (compilation included, this machine),
and of the exhaustive sweep.

Usage:
  .venv/bin/python benchmarks/pareto_quality.py                       # capstone + serving_xl
  .venv/bin/python benchmarks/pareto_quality.py --spaces capstone --seeds 0 1 2 3 4 --algorithms nsga2 nsga3
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from mlsys_opt.search.pymoo_problem import front_at, run_search
from mlsys_opt.space.spec import load_space
from mlsys_opt.sweeps.api import sweep
from mlsys_opt.sweeps.pareto import hypervolume

# A second, larger space (834,624 configurations, 44-point exact front): every
# accelerator and region of the catalog serving three models at 1,000 req/s.
SERVING_XL = {
    "name": "serving_xl", "scenario": "serving",
    "description": "every accelerator x region serving Llama-3-8B/70B and Mixtral at 1,000 req/s",
    "fixed": {"request_rate": "1000 /s", "prompt_tokens": 1024, "output_tokens": 256, "efficiency": 0.5,
              "duration": "1 year"},
    "axes": {"model": ["llama3_8b", "llama3_70b", "mixtral_8x7b"], "hardware": "*", "tp": [1, 2, 4, 8],
             "pp": [1, 2, 4], "batch": {"log": [1, 256], "count": 9},
             "precision": ["fp16", "fp8", "int8", "int4"], "region": "*", "pricing": ["cloud", "onprem"]},
    "constraints": {"max_itl": "50 ms", "max_ttft": "1 s", "p99_latency": "20 s"},
    "objectives": {"minimize": ["cost_per_mtok_usd", "carbon_per_mtok_kg", "p99_latency_s"]},
    "search": {"pop_size": 64, "evals": 20000},
}
NAMED = {"serving_xl": SERVING_XL}


def exact_front(space):
    t0 = time.perf_counter()
    res = sweep(space, progress=False)
    objs = [o for o, _ in space.objectives]
    F = res.front[objs].to_numpy(np.float64)
    F = F * np.array([1.0 if s == "min" else -1.0 for _, s in space.objectives])
    return F, time.perf_counter() - t0, res


def quality(F_found: np.ndarray, F_exact: np.ndarray) -> float:
    ideal, nadir = F_exact.min(axis=0), F_exact.max(axis=0)
    span = np.where(nadir > ideal, nadir - ideal, 1.0)
    ref = np.full(F_exact.shape[1], 1.1)
    hv_exact = hypervolume((F_exact - ideal) / span, ref)
    if len(F_found) == 0:
        return 0.0
    return hypervolume((F_found - ideal) / span, ref) / hv_exact


def recall(F_found: np.ndarray, F_exact: np.ndarray) -> float:
    """Fraction of the exact front's points found exactly (objective vectors equal to 1e-9)."""
    if len(F_found) == 0:
        return 0.0
    close = np.all(np.isclose(F_exact[:, None, :], F_found[None, :, :], rtol=1e-9, atol=0), axis=-1)
    return float(close.any(axis=1).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spaces", nargs="+", default=["capstone", "serving_xl"],
                    help="spaces/ names or paths, or serving_xl (defined here)")
    ap.add_argument("--algorithms", nargs="+", default=["nsga2", "nsga3"])
    ap.add_argument("--budgets", nargs="+", type=int, default=[2000, 5000, 10000, 20000])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--pop-size", type=int, default=None, help="default: the spec's [search] pop_size")
    args = ap.parse_args(argv)

    rows = []
    for name in args.spaces:
        space = load_space(NAMED.get(name, name))
        F_exact, t_sweep, res = exact_front(space)
        pop = args.pop_size or space.search.get("pop_size")
        print(f"\n{space.name}: {space.size:,} configurations, {res.n_feasible:,} feasible, exact front "
              f"{len(F_exact)} points; sweep {t_sweep:.1f} s; pop_size {pop}; {len(args.seeds)} seeds")
        header = "  ".join(f"{b:>14,}" for b in args.budgets)
        print(f"{'algorithm':<9} {'evals →':>17} {header}   wall s (at {max(args.budgets):,})")
        for algo in args.algorithms:
            q = {b: [] for b in args.budgets}
            rc = {b: [] for b in args.budgets}
            walls = []
            for seed in args.seeds:
                r = run_search(space, algorithm=algo, evals=max(args.budgets), seed=seed,
                               pop_size=args.pop_size)
                walls.append(r.elapsed_s)
                for b, F in front_at(r, args.budgets).items():
                    key = min(args.budgets, key=lambda x: abs(x - b))
                    q[key].append(quality(F, F_exact))
                    rc[key].append(recall(F, F_exact))
            cells = "  ".join(f"{100 * np.mean(q[b]):6.1f}% ({100 * np.min(q[b]):5.1f})" for b in args.budgets)
            print(f"{algo:<9} {'HV mean (min)':>17} {cells}   {np.mean(walls):6.1f}")
            cells = "  ".join(f"{100 * np.mean(rc[b]):6.1f}% ({100 * np.min(rc[b]):5.1f})" for b in args.budgets)
            print(f"{'':<9} {'recall mean (min)':>17} {cells}")
            rows.append((space.name, algo, {b: (np.mean(q[b]), np.min(q[b])) for b in args.budgets},
                         np.mean(walls), t_sweep))
    return rows


if __name__ == "__main__":
    main()
