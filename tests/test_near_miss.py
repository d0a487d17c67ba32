"""The near miss of a sweep with no feasible configuration (engine step 5): the least-violating
configuration and, per constraint, the configuration closest to meeting it, reduced on the device
across chunks (and devices, processes, checkpoints), against a brute-force numpy argmin over every row.

The toy's values are multiples of 1/8 (exact in float32), so argmins tie often: the rule "ties keep
the lower configuration index" is checked, not only the values.
"""
import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt.sweeps import engine as sweep_engine

R = (6, 7, 8, 9)                        # 3,024 configurations
N = 6 * 7 * 8 * 9
KW = dict(n_obj=2, n_constr=4, n_aux=1, n_hard=1, top_k=3, progress=False)


def toy(d):
    """Two objectives, four constraints (the first hard); every configuration breaks g3; d3 = 8 is NaN."""
    x = [d[:, k].astype(jnp.float32) for k in range(4)]
    f1 = x[0] / 8 + x[1] / 4 + jnp.where(d[:, 3] == 8, jnp.nan, 0.0).astype(jnp.float32)
    f2 = (7 - x[0]) / 8 + x[2] / 2
    G = jnp.stack([(x[0] - 3) / 2,                          # hard: met for d0 <= 3
                   (6 - x[1]) / 4 - x[2] / 8 - x[0] / 4,            # smallest at d0 = 5 (breaks the hard one)
                   (x[2] - x[3]) / 8 + 1 / 8,
                   1 / 8 + jnp.remainder(x[3], 2) / 4 + jnp.maximum(x[1] - 5, 0) / 8], 1)   # > 0 everywhere
    return jnp.stack([f1, f2], 1), G, (f1 + f2)[:, None]


def brute(n_hard: int = 1):
    """(least index, its violation, per-constraint best index or -1) by numpy over every row."""
    d = np.stack(np.unravel_index(np.arange(N), R), 1).astype(np.int32)
    F, G, aux = (np.asarray(a) for a in jax.jit(toy)(jnp.asarray(d)))
    ok = np.isfinite(F).all(1) & np.isfinite(G).all(1)
    idx = np.arange(N)
    V = np.maximum(G, 0).sum(1)
    cand = idx[ok]
    least = cand[np.lexsort((cand, V[cand]))[0]]
    bad_hard = (G[:, :n_hard] > 0).sum(1)
    best = []
    for j in range(G.shape[1]):
        others = bad_hard - (G[:, j] > 0) if j < n_hard else bad_hard
        c = idx[ok & (others == 0)]
        best.append(int(c[np.lexsort((c, G[c, j]))[0]]) if len(c) else -1)
    return int(least), float(V[least]), best, (d, F, G, aux)


def check(res, n_hard: int = 1):
    least, v, best, (d, F, G, aux) = brute(n_hard)
    nm = res.near_miss
    assert res.n_feasible == 0 and nm is not None
    assert nm.least.index.tolist() == [least] and nm.violation == v
    np.testing.assert_array_equal(nm.least.digits[0], d[least])
    np.testing.assert_array_equal(nm.least.F[0], F[least])
    np.testing.assert_array_equal(nm.least.G[0], G[least])
    np.testing.assert_array_equal(nm.least.aux[0], aux[least])
    assert [r.index.tolist() for r in nm.closest] == [[b] if b >= 0 else [] for b in best]
    for j, (r, b) in enumerate(zip(nm.closest, best)):
        np.testing.assert_array_equal(r.G, G[[b]])
        np.testing.assert_array_equal(r.aux, aux[[b]])


@functools.lru_cache(maxsize=None)
def reference():
    return sweep_engine.stream(R, toy, chunk_size=256, **KW)


@pytest.mark.parametrize("chunk", [256, 1000])       # 12 and 4 chunks (the last one padded)
def test_near_miss_equals_brute_force_across_chunks(chunk):
    res = reference() if chunk == 256 else sweep_engine.stream(R, toy, chunk_size=chunk, **KW)
    check(res)
    assert res.infeasible_by[-1] == N // 9           # the NaN lanes: non-finite, never a near miss
    # the least-violating configuration violates only g3 by 1/8; the hard constraint's closest is met
    assert res.near_miss.violation == 0.125 and res.near_miss.closest[0].G[0, 0] < 0


def test_no_hard_constraints_takes_every_finite_configuration():
    res = sweep_engine.stream(R, toy, chunk_size=256, **{**KW, "n_hard": 0})
    check(res, n_hard=0)
    assert res.near_miss.closest[1].digits[0, 0] == 5       # with n_hard=1 the hard constraint holds
    assert reference().near_miss.closest[1].digits[0, 0] <= 3


def test_a_feasible_sweep_has_no_near_miss():
    def relaxed(d):
        F, G, aux = toy(d)
        return F, G - 10.0, aux
    res = sweep_engine.stream(R, relaxed, chunk_size=256, **KW)
    assert res.n_feasible > 0 and res.near_miss is None
