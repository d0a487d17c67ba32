"""Sweep-engine throughput: configurations/second vs chunk size, and peak RSS.

A synthetic ~300-flop evaluator (roofline-like time, cost and carbon of a
training step over 8 axes: variant, hardware, tensor/pipeline/data parallel
degree, batch (doubling as a DVFS clock), sequence length, region;
3 objectives, 2 constraints, 2 aux columns)
is streamed through ``mlsys_opt.sweeps.engine.stream`` on whatever device JAX
has.  It prints a table; it is not a test.

    python benchmarks/engine_throughput.py                    # chunk-size table, 10^6 + 10^7
    python benchmarks/engine_throughput.py --sizes 1e6 1e8    # RSS while streaming 10^8
    python benchmarks/engine_throughput.py --chunks 16 18 20 --sizes 1e7

Peak RSS is the process high-water mark (resource.getrusage ru_maxrss),
which must stay flat as the number of streamed configurations grows.
"""
from __future__ import annotations

import argparse
import math
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from mlsys_opt.sweeps import engine as sweep_engine
from mlsys_opt.sweeps import pareto

# hardware table: peak FLOP/s, HBM B/s, HBM bytes, W, USD/h   (illustrative numbers)
_HW = np.array([[989e12, 3.35e12, 80e9, 700.0, 4.0],
                [312e12, 2.0e12, 80e9, 400.0, 2.0],
                [2250e12, 8.0e12, 192e9, 1000.0, 8.0],
                [125e12, 0.9e12, 32e9, 300.0, 1.0]], np.float32)
_REGION_G_PER_KWH = np.array([20.0, 429.0, 820.0, 30.0, 250.0], np.float32)
_REGION_PRICE = np.array([1.3, 1.0, 0.7, 1.2, 0.85], np.float32)   # price multiplier


def radices_for(n_target: float) -> tuple[int, ...]:
    """8 axes (variant, hw, tp, pp, dp, batch, seq, region) whose product is close to (>=) n_target.

    Up to 10.5 M configurations the physical axes shrink; beyond, the slowest
    axis ``variant`` grows: variant v scales every objective by (1 + 0.002 v),
    so the front keeps a realistic size (a few hundred) at any scale while
    near-front points keep the reducer busy.
    """
    base = [4, 8, 8, 16, 32, 16, 5]          # hw, tp, pp, dp, batch, seq, region = 10.5 M
    for i in (4, 5, 3, 2, 1):
        while math.prod(base) / 2 >= n_target and base[i] > 1:
            base[i] //= 2
    return (max(1, math.ceil(n_target / math.prod(base))),) + tuple(base)


def make_chunk_fn(dtype=jnp.float32):
    hw = jnp.asarray(_HW, dtype)
    reg = jnp.asarray(_REGION_G_PER_KWH, dtype)
    rprice = jnp.asarray(_REGION_PRICE, dtype)

    def chunk_fn(dv):
        variant, d = dv[:, 0].astype(dtype), dv[:, 1:]
        h = hw[d[:, 0] % hw.shape[0]]
        tp = 2.0 ** d[:, 1].astype(dtype)
        pp = 2.0 ** d[:, 2].astype(dtype)
        dp = 1.0 + d[:, 3].astype(dtype)
        batch = 1.0 + d[:, 4].astype(dtype)
        seq = 512.0 * (1.0 + d[:, 5].astype(dtype))
        g_per_kwh = reg[d[:, 6] % reg.shape[0]]
        price = rprice[d[:, 6] % rprice.shape[0]]
        clock = 0.5 + 0.5 * d[:, 4].astype(dtype) / 31.0        # DVFS: batch axis doubles as clock
        params = 70e9
        n_gpu = tp * pp * dp
        tokens = batch * seq
        flop = 6.0 * params * tokens
        t_comp = flop / (n_gpu * h[:, 0] * 0.5)
        weight_bytes = 2.0 * params / (tp * pp)
        act_bytes = 34.0 * seq * 8192.0 * batch / (tp * dp)
        t_mem = (weight_bytes + act_bytes) / h[:, 1]
        t_tp = 2.0 * (tp - 1.0) / tp * act_bytes / 450e9
        t_dp = 2.0 * (dp - 1.0) / dp * weight_bytes / 50e9
        bubble = (pp - 1.0) / (pp - 1.0 + 8.0)
        t = (jnp.maximum(t_comp, t_mem) + t_tp + t_dp) / (1.0 - bubble)
        # a few refinement stages to reach ~300 flops per configuration
        eff = jnp.ones_like(t)
        for s in range(12):
            eff = eff * (1.0 - 0.01 * jnp.tanh(t * (s + 1.0) * 1e-3)) + 1e-4 * eff * eff
        t = t / (eff * clock)
        energy_j = t * n_gpu * h[:, 3] * 1.2 * clock * clock * clock
        cost_usd = t / 3600.0 * n_gpu * h[:, 4] * price
        carbon_kg = energy_j / 3.6e6 * g_per_kwh / 1000.0
        tok_per_s = tokens / t
        # columns ([n, chunk]: the engine's layout="columns", as sweeps use it)
        F = jnp.stack([t / tokens * 1e6, cost_usd / tokens * 1e6, carbon_kg / tokens * 1e9], 0)
        F = F * (1.0 + 0.002 * variant)[None, :]
        mem = weight_bytes * 3.0 + act_bytes
        G = jnp.stack([mem / h[:, 2] - 1.0, n_gpu / 4096.0 - 1.0], 0)
        aux = jnp.stack([tok_per_s, n_gpu], 0)
        return F.astype(dtype), G.astype(dtype), aux.astype(dtype)

    return chunk_fn


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def run(n_target: float, chunk: int, fn):
    """Stream ~n_target configurations; returns (radices, result, first-chunk seconds, steady configs/s).

    The first chunk's step includes tracing and XLA compilation; the rate is
    measured from the end of the first dispatch to the end of the stream.
    """
    rad = radices_for(n_target)
    marks = []

    def progress(done, total):
        if not marks:
            marks.append((time.perf_counter(), done))

    t0 = time.perf_counter()
    res = sweep_engine.stream(rad, fn, n_obj=3, n_constr=2, n_aux=2, chunk_size=chunk, progress=progress,
                              front_capacity=8192, layout="columns")
    t1 = time.perf_counter()
    t_first, done_first = marks[0]
    rate = (res.n_evaluated - done_first) / max(t1 - t_first, 1e-9)
    return rad, res, t_first - t0, rate, t1 - t0


def check_exact() -> bool:
    """Stream a 10^5-configuration toy on the default device and compare with a brute-force filter."""
    R = (10, 20, 25, 20)

    def toy(d):
        x = [d[:, k].astype(jnp.float32) / (R[k] - 1) for k in range(4)]
        f1 = x[0] + 0.5 * (x[1] - 0.3) ** 2 + 0.1 * x[3]
        f2 = (1 - x[0]) ** 2 + 0.5 * x[2] + 0.2 * jnp.sin(3 * x[1]) + 0.1 * (1 - x[3])
        f3 = x[2] ** 2 + 0.3 * (1 - x[1]) + x[3] * x[0]
        return jnp.stack([f1, f2, f3], 1), (x[0] + x[1] - 1.6)[:, None], jnp.stack([f1 + f2], 1)

    n = math.prod(R)
    d = jnp.asarray(np.stack(np.unravel_index(np.arange(n), R), 1).astype(np.int32))
    F, G, _ = jax.jit(toy)(d)
    feas = jnp.all(G <= 0, axis=1)
    want = set(np.nonzero(np.asarray(jax.jit(pareto.nondominated_mask)(F, feas)))[0].tolist())
    ok = True
    for chunk in (4096, 7777, 2**16):
        res = sweep_engine.stream(R, toy, n_obj=3, n_constr=1, n_aux=1, chunk_size=chunk, progress=False)
        got = set(res.front.index.tolist())
        print(f"check chunk {chunk}: front {len(got)} (brute force {len(want)}), exact: {got == want}, "
              f"feasible {res.n_feasible} (brute force {int(feas.sum())})")
        ok &= got == want and res.n_feasible == int(feas.sum())
    return ok


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, nargs="*", default=[12, 14, 16, 18],
                    help="log2 chunk sizes for the throughput table (default 12 14 16 18)")
    ap.add_argument("--table-size", type=float, default=4e6, help="configurations per table row")
    ap.add_argument("--sizes", type=float, nargs="*", default=[1e6, 1e7],
                    help="space sizes for the RSS rows (e.g. 1e6 1e7 1e8)")
    ap.add_argument("--rss-chunk", type=int, default=16, help="log2 chunk size for the RSS rows")
    ap.add_argument("--check", action="store_true",
                    help="first verify the streamed front against a brute-force filter on this device")
    args = ap.parse_args(argv)
    fn = make_chunk_fn()
    print(f"jax {jax.__version__}, devices: {jax.devices()}")
    if args.check and not check_exact():
        sys.exit("engine front differs from brute force on this device")
    print(f"\nthroughput vs chunk size, space of ~{args.table_size:.0e} configurations")
    print("(configs/s after the first chunk; 'first s' = first chunk incl. trace + compile)")
    hdr = f"{'configs':>12} {'chunk':>9} {'configs/s':>11} {'first s':>8} {'total s':>8} {'front':>6} {'feasible':>10}"
    print(hdr)
    for c in args.chunks:
        rad, res, first, rate, total = run(args.table_size, 2**c, fn)
        print(f"{res.n_evaluated:>12} {2**c:>9} {rate:>11.3e} {first:>8.2f} {total:>8.2f} "
              f"{len(res.front.index):>6} {res.n_feasible:>10}")
    print(f"\npeak RSS (process high-water mark) while streaming, chunk 2^{args.rss_chunk}")
    print(hdr + f" {'peak RSS MB':>12}")
    for n in args.sizes:
        rad, res, first, rate, total = run(n, 2**args.rss_chunk, fn)
        print(f"{res.n_evaluated:>12} {2**args.rss_chunk:>9} {rate:>11.3e} {first:>8.2f} {total:>8.2f} "
              f"{len(res.front.index):>6} {res.n_feasible:>10} {peak_rss_mb():>12.1f}")


if __name__ == "__main__":
    main()
