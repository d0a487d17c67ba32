"""Throughput of exact sensitivities: elasticities of every output w.r.t. every input.

For N random configurations of a space (default: spaces/capstone.toml,
N = 100,000) ``mlsys_opt.point.sensitivity.sensitivity_arrays`` computes, per
configuration, the full Jacobian of all numeric scenario outputs (14 for
training) w.r.t. every continuous input (~40: catalog fields of the chosen
rows, float parameters, efficiency leaves) with ``jax.jacfwd``, vmapped in
chunks.  Reported: cold time (compilation included), warm time, configs/s and
Jacobian entries/s, float32 (the package default) unless --x64.

Usage:
  .venv/bin/python benchmarks/sensitivity_throughput.py [--space capstone] [--n 100000] [--chunk 2048] [--x64]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="capstone")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=8192)
    ap.add_argument("--x64", action="store_true")
    args = ap.parse_args(argv)

    import jax
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    from mlsys_opt.point.sensitivity import sensitivity_arrays
    from mlsys_opt.space.spec import load_space

    space = load_space(args.space)
    rng = np.random.default_rng(0)
    digits = np.column_stack([rng.integers(0, r, args.n) for r in space.radices]).astype(np.int32)
    t0 = time.perf_counter()
    s = sensitivity_arrays(space, digits[: args.chunk], chunk=args.chunk)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = sensitivity_arrays(space, digits, chunk=args.chunk)
    warm = time.perf_counter() - t0
    n_out, n_in = len(s.outputs), len(s.parameters)
    finite = np.isfinite(s.elasticity).mean()
    print(f"{space.name}: {args.n:,} configs x {n_out} outputs x {n_in} inputs "
          f"({'float64' if args.x64 else 'float32'}, chunk {args.chunk}, {jax.devices()[0].platform})")
    print(f"  first chunk (compile + run): {cold:.1f} s")
    print(f"  {args.n:,} configs: {warm:.1f} s  ->  {args.n / warm:,.0f} configs/s, "
          f"{args.n * n_out * n_in / warm:,.0f} elasticities/s; finite: {100 * finite:.2f} %")
    return args.n / warm


if __name__ == "__main__":
    main()
