"""Cost and float32 accuracy of the queue wall's Erlang B: fixed-cost series + Temme
(`mlsys_opt.walls.erlang.poisson_logs`) against `jax.scipy.special.gammaincc`.

Times one jitted call on `--n` float32 queues (CPU seconds per call, the mean of
`--reps`), with servers c log-uniform in [1, e^9] and load ρ uniform in [0.3, 0.95];
then the worst relative error of float32 Erlang C (where C > 1e-6) of both, against
the float64 fixed-cost form.  It prints a few lines; it is not a test.

    python benchmarks/erlang_cost.py
"""
from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)   # the float64 reference; the timed calls are float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.scipy.special import gammaincc, gammaln  # noqa: E402

from mlsys_opt.walls.erlang import poisson_logs  # noqa: E402


def _cpu_ms(f, *args, reps):
    jax.block_until_ready(f(*args))
    t0 = time.process_time()
    for _ in range(reps):
        jax.block_until_ready(f(*args))
    return (time.process_time() - t0) / reps * 1e3


def _erlang_c(log_b, rho):
    b = np.exp(np.minimum(np.asarray(log_b, np.float64), 0.0))
    return b / (1.0 - rho * (1.0 - b))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=65536, help="queues per call (default 65536)")
    ap.add_argument("--reps", type=int, default=50, help="timed calls (default 50)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    c64 = np.exp(rng.uniform(0.0, 9.0, args.n))
    rho = rng.uniform(0.3, 0.95, args.n)
    c, a = jnp.asarray(c64, jnp.float32), jnp.asarray(rho * c64, jnp.float32)

    fixed = jax.jit(lambda c, a: (lambda r: r.log_pmf - r.log_cdf)(poisson_logs(c, a)))
    loop = jax.jit(lambda c, a: c * jnp.log(a) - a - gammaln(c + 1.0) - jnp.log(gammaincc(c + 1.0, a)))
    print(f"{args.n:,} float32 queues per call, {jax.devices()[0].platform} "
          f"({jax.devices()[0].device_kind}), CPU ms per call (mean of {args.reps}):")
    print(f"  fixed-cost series + Temme : {_cpu_ms(fixed, c, a, reps=args.reps):8.2f} ms")
    print(f"  gammaincc (while_loop)    : {_cpu_ms(loop, c, a, reps=args.reps):8.2f} ms")

    rho32 = np.asarray(a, np.float64) / np.asarray(c, np.float64)
    want = _erlang_c(fixed(jnp.asarray(c, jnp.float64), jnp.asarray(a, jnp.float64)), rho32)
    big = want > 1e-6
    for name, f in (("fixed-cost", fixed), ("gammaincc", loop)):
        got = _erlang_c(f(c, a), rho32)
        print(f"  float32 Erlang C, worst relative error ({name}): "
              f"{np.max(np.abs(got[big] - want[big]) / want[big]):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
