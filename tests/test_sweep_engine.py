"""Streaming sweep engine: exact against brute force + pymoo, chunk-size and dtype
invariance, best-k, histograms, checkpoint/resume, errors.

Compiles are the cost here (~3 s each on the 2-core box), so one toy evaluator
with one settings tuple is shared by most tests (the engine caches its jitted
step per (chunk_fn, settings)).
"""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from mlsys_opt import indexing, sweep_engine
from mlsys_opt.errors import MlsysOptError

R = (10, 20, 25, 20)                      # 10^5 configurations
N = 100_000
HIST = {0: np.linspace(0.0, 60.0, 13), 2: [0.0, 5.0, 10.0, 50.0]}
KW = dict(n_obj=3, n_constr=1, n_aux=2, top_k=5, histograms=HIST, progress=False)


def toy(d, dtype=jnp.float32):
    """Three conflicting objectives on multiples of 1/8 (exact in float32 and float64).

    Objectives 1 and 3 see only d3 // 2, so identical objective vectors come in
    pairs: the front must keep the lower index of each pair.
    """
    x = [d[:, k].astype(dtype) for k in range(4)]
    h = (d[:, 3] // 2).astype(dtype)
    f1 = 4 * x[0] + (x[1] - 6) ** 2 / 4 + h
    f2 = 3 * (9 - x[0]) + x[2] + (d[:, 1] % 7).astype(dtype)
    f3 = (x[2] - 12) ** 2 / 8 + 2 * h * (d[:, 0] % 3).astype(dtype) + (19 - x[1])
    G = (x[0] + x[1] - 20)[:, None]
    aux = jnp.stack([x[0] * x[1], f1 + f2], 1)
    return jnp.stack([f1, f2, f3], 1), G, aux


toy32 = toy
toy64 = functools.partial(toy, dtype=jnp.float64)


@functools.lru_cache(maxsize=None)
def brute():
    d = np.stack(np.unravel_index(np.arange(N), R), 1).astype(np.int32)
    F, G, aux = (np.asarray(a) for a in jax.jit(toy32)(jnp.asarray(d)))
    feas = np.all(G <= 0, 1)
    idx = np.nonzero(feas)[0]
    nd = idx[NonDominatedSorting().do(F[idx].astype(np.float64), only_non_dominated_front=True)]
    first = {}
    for i in sorted(nd.tolist()):                  # one (lowest-index) row per identical vector
        first.setdefault(tuple(F[i]), i)
    return F, G, aux, feas, np.array(sorted(first.values()))


@functools.lru_cache(maxsize=None)
def reference():
    return sweep_engine.stream(R, toy32, chunk_size=4096, **KW)


def same_result(a, b):
    assert (a.n_evaluated, a.n_feasible) == (b.n_evaluated, b.n_feasible)
    for k in ("index", "digits", "F", "G", "aux"):
        np.testing.assert_array_equal(a.front[k], b.front[k])
    for x, y in zip(a.best, b.best):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    for j in a.histograms:
        np.testing.assert_array_equal(a.histograms[j][1], b.histograms[j][1])


@pytest.mark.parametrize("chunk", [4096, 7777, 2**16])     # 7777 and 65536 do not divide 10^5
def test_exact_against_brute_force_for_any_chunk_size(chunk):
    F, G, aux, feas, want = brute()
    calls = []
    res = reference() if chunk == 4096 else sweep_engine.stream(
        R, toy32, chunk_size=chunk, **{**KW, "progress": lambda done, total: calls.append((done, total))})
    assert res.n_evaluated == N and res.n_feasible == int(feas.sum())
    np.testing.assert_array_equal(res.front["index"], want)
    np.testing.assert_array_equal(res.front["digits"], np.stack(np.unravel_index(want, R), 1))
    np.testing.assert_array_equal(res.front["F"], F[want])
    np.testing.assert_array_equal(res.front["G"], G[want])
    np.testing.assert_array_equal(res.front["aux"], aux[want])
    assert len(want) == 448 and res.front["index"].dtype == np.int64
    if calls:
        assert [c[0] for c in calls] == sorted(c[0] for c in calls) and calls[-1] == (N, N)
        assert len(calls) == -(-N // chunk)
    same_result(res, reference())


def test_best_k_and_histograms_match_numpy():
    F, G, aux, feas, _ = brute()
    res = reference()
    idx = np.nonzero(feas)[0]
    for j in range(3):
        order = idx[np.lexsort((idx, F[idx, j]))][:5]        # smallest F_j, ties -> lower index
        np.testing.assert_array_equal(res.best[j]["index"], order)
        np.testing.assert_array_equal(res.best[j]["F"], F[order])
        np.testing.assert_array_equal(res.best[j]["aux"], aux[order])
    for j, edges in HIST.items():
        e, counts = res.histograms[j]
        np.testing.assert_array_equal(e, np.asarray(edges, float))
        b = np.searchsorted(e, F[feas, j], side="right")
        np.testing.assert_array_equal(counts, np.bincount(b, minlength=len(e) + 1))
        assert counts.sum() == feas.sum() and counts.dtype == np.int64


def test_float64_gives_the_same_front():
    res64 = sweep_engine.stream(R, toy64, chunk_size=4096, **KW)
    assert res64.front["F"].dtype == np.float64
    same_result(res64, reference())


def test_resume_after_interrupt_equals_uninterrupted(tmp_path):
    path = tmp_path / "sweep.npz"

    def stop_after(n_chunks, exc):
        seen = []

        def progress(done, total):
            seen.append(done)
            if len(seen) == n_chunks:
                raise exc
        return progress

    kw = {**KW, "checkpoint_path": path}
    # Ctrl-C after 7 chunks: the engine writes the state of the last completed chunk
    with pytest.raises(KeyboardInterrupt):
        sweep_engine.stream(R, toy32, chunk_size=4096, **{**kw, "progress": stop_after(7, KeyboardInterrupt())})
    assert path.exists() and not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    with np.load(path) as z:
        assert int(str(z["next_index"])) == 7 * 4096
    same_result(sweep_engine.stream(R, toy32, chunk_size=4096, resume=True, **kw), reference())

    # a crash (no handler) after 9 chunks: resume from the periodic checkpoint of chunk 8,
    # with another chunk size
    path.unlink()
    with pytest.raises(RuntimeError):
        sweep_engine.stream(R, toy32, chunk_size=4096, checkpoint_every=4,
                            **{**kw, "progress": stop_after(9, RuntimeError("boom"))})
    with np.load(path) as z:
        assert int(str(z["next_index"])) == 8 * 4096
    same_result(sweep_engine.stream(R, toy32, chunk_size=7777, resume=True, **kw), reference())
    # a finished checkpoint: resuming returns the result without evaluating again
    same_result(sweep_engine.stream(R, toy32, chunk_size=4096, resume=True, **kw), reference())

    # another run must not pick up this checkpoint
    with pytest.raises(MlsysOptError, match="different run.*run_key"):
        sweep_engine.stream(R, toy32, chunk_size=4096, resume=True, run_key="other space", **kw)
    with pytest.raises(MlsysOptError, match="different run.*radices"):
        sweep_engine.stream((10, 20, 25, 21), toy32, chunk_size=4096, resume=True, **kw)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(MlsysOptError, match="cannot be read"):
        sweep_engine.stream(R, toy32, chunk_size=4096, resume=True, **kw)


def test_front_overflow_raises_with_advice():
    with pytest.raises(MlsysOptError, match="front_capacity=64.*larger front_capacity"):
        sweep_engine.stream(R, toy32, chunk_size=4096, front_capacity=64, **KW)


def test_nan_objectives_are_infeasible_and_duplicates_keep_lowest_index():
    def fn(d):
        x = d[:, 0].astype(jnp.float32)
        F = jnp.stack([x, -x], 1)
        F = jnp.where((d[:, 1] == 0)[:, None], jnp.nan, F)      # NaN objectives: not feasible
        return F, (x - 3)[:, None], jnp.zeros((d.shape[0], 0))
    res = sweep_engine.stream((7, 9), fn, n_obj=2, n_constr=1, n_aux=0, chunk_size=16, progress=False)
    assert res.n_feasible == 4 * 8
    np.testing.assert_array_equal(res.front["digits"], [[0, 1], [1, 1], [2, 1], [3, 1]])
    assert res.front["aux"].shape == (4, 0)
    np.testing.assert_array_equal(res.best[0]["digits"][:3], [[0, 1], [0, 2], [0, 3]])
    np.testing.assert_array_equal(res.best[1]["digits"][:2], [[3, 1], [3, 2]])

    def none_feasible(d):
        x = d.astype(jnp.float32)
        return x, jnp.ones((d.shape[0], 1)), x[:, :1]
    res = sweep_engine.stream((5, 3), none_feasible, n_obj=2, n_constr=1, n_aux=1, progress=False)
    assert res.n_feasible == 0 and res.front["index"].shape == (0,) and res.front["digits"].shape == (0, 2)
    assert all(len(b["index"]) == 0 for b in res.best)


def test_bad_arguments_are_reported():
    with pytest.raises(MlsysOptError, match="shapes"):
        sweep_engine.stream(R, toy32, n_obj=2, n_constr=1, n_aux=2, progress=False)
    with pytest.raises(MlsysOptError, match="chunk_fn failed"):
        sweep_engine.stream(R, lambda d: d.undefined, n_obj=2, n_constr=1, n_aux=2, progress=False)
    with pytest.raises(MlsysOptError, match="top_k=0"):
        sweep_engine.stream(R, toy32, **{**KW, "top_k": 0})
    with pytest.raises(MlsysOptError, match=r"histograms\[0\]"):
        sweep_engine.stream(R, toy32, **{**KW, "histograms": {0: [3.0, 1.0]}})
    with pytest.raises(MlsysOptError, match="objective 5"):
        sweep_engine.stream(R, toy32, **{**KW, "histograms": {5: [0.0, 1.0]}})
    with pytest.raises(MlsysOptError, match="int64"):
        sweep_engine.stream((2**31 - 1,) * 3, toy32, **KW)
    with pytest.raises(MlsysOptError, match="devices"):
        sweep_engine.stream(R, toy32, devices=99, **KW)
    assert indexing.space_size(R) == N
