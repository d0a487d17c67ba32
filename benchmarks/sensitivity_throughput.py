"""Throughput of exact sensitivities: elasticities of every output w.r.t. every input.

For N random configurations of a space (default: spaces/capstone.toml,
N = 100,000) ``mlsys_opt.point.sensitivity.sensitivity_arrays`` computes, per
configuration, the full Jacobian of all numeric scenario outputs (17 for
training) w.r.t. every continuous input (55: catalog fields of the chosen
rows, float parameters, efficiency leaves), with the derivative and the
elasticity of each entry, in chunks.  Reported: cold time (compilation
included), warm time, configurations/s (wall) and per CPU-second (user + sys
of this process: less sensitive to other processes on a shared machine), the
load average, and XLA's cost analysis of the compiled chunk kernel (element
operations and bytes accessed per configuration: deterministic, a proxy that
does not depend on the load).  float32 (the package default) unless --x64.
Not a test: nothing depends on the speed it prints.

Usage:
  .venv/bin/python benchmarks/sensitivity_throughput.py [--space capstone] [--n 100000] [--chunk 512]
      [--method sparse|dense] [--no-derivative] [--x64] [--repeat 7]
"""
from __future__ import annotations

import argparse
import importlib
import os
import resource
import time

import numpy as np


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="capstone")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=None, help="rows per kernel call (default: the package's)")
    ap.add_argument("--method", default="sparse", choices=("sparse", "dense"))
    ap.add_argument("--repeat", type=int, default=7,
                    help="warm runs; the best and the median are printed (the first warm run also pays "
                         "for touching fresh memory: ~0.4 s per 750 MB on the shared VM)")
    ap.add_argument("--no-derivative", action="store_true",
                    help="elasticities only (derivative=False): half the [n, n_out, n_in] output")
    ap.add_argument("--x64", action="store_true")
    args = ap.parse_args(argv)

    import jax
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from mlsys_opt.point.config import padded_chunks, resolve_config, select_parameters
    from mlsys_opt.scenarios import static_options
    from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
    from mlsys_opt.space.spec import load_space
    sens = importlib.import_module("mlsys_opt.point.sensitivity")    # the module, not the function

    chunk = args.chunk or sens.CHUNK
    space = load_space(args.space)
    rng = np.random.default_rng(0)
    digits = np.column_stack([rng.integers(0, r, args.n) for r in space.radices]).astype(np.int32)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    kw = {"chunk": chunk, "method": args.method, "derivative": not args.no_derivative}
    s = sens.sensitivity_arrays(space, digits[:chunk], **kw)
    cold = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(max(1, args.repeat)):
        t0, c0 = time.perf_counter(), _cpu_s()
        s = sens.sensitivity_arrays(space, digits, **kw)
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu_s() - c0)
    load1 = os.getloadavg()
    n_out, n_in = len(s.outputs), len(s.parameters)
    finite = np.isfinite(s.elasticity).mean()

    # XLA's own count for one chunk of the kernel (the same compilation as above)
    dtype = jnp.float64 if args.x64 else jnp.float32
    scenario, _, p, catalog = resolve_config(space, digits[:chunk], dtype)
    options = static_options(scenario, {k: np.asarray(v) for k, v in p.items()})
    kernel = sens._batch_kernel(scenario, select_parameters(scenario, None), dtype, options, args.method,
                                not args.no_derivative)
    pc, _ = next(padded_chunks(p, chunk))
    eff = type(DEFAULT_EFFICIENCY)(*[jnp.asarray(x, dtype) for x in DEFAULT_EFFICIENCY])
    cost = kernel.lower(pc, catalog.tables(dtype=dtype), eff).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    rows = int(np.shape(pc["hardware"])[0])

    best, med = min(walls), sorted(walls)[len(walls) // 2]
    print(f"{space.name}: {args.n:,} configs x {n_out} outputs x {n_in} inputs "
          f"({'float64' if args.x64 else 'float32'}, {args.method}, "
          f"{'elasticities only' if args.no_derivative else 'derivatives and elasticities'}, chunk {chunk}, {jax.devices()[0].platform}, "
          f"{os.cpu_count()} CPUs, load average {load0[0]:.2f} -> {load1[0]:.2f})")
    print(f"  first chunk (compile + run): {cold:.1f} s")
    print(f"  {args.n:,} configs: best {best:.2f} s, median {med:.2f} s  ->  {args.n / best:,.0f} configs/s "
          f"(median {args.n / med:,.0f}), {args.n * n_out * n_in / best:,.0f} elasticities/s; "
          f"{args.n / min(cpus):,.0f} configs per CPU-second; finite: {100 * finite:.2f} %")
    print(f"  XLA cost analysis per configuration: {cost.get('flops', 0) / rows:,.0f} operations, "
          f"{cost.get('bytes accessed', 0) / rows:,.0f} bytes accessed")
    return args.n / best


if __name__ == "__main__":
    main()
