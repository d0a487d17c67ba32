"""Streaming sweep engine: exact against brute force + pymoo, chunk-size and dtype
invariance, best-k, histograms, checkpoint/resume (fsynced writes, stale
temporary files of killed runs removed), errors.

Compiles are the cost here (~3 s each on the 2-core box), so one toy evaluator
with one settings tuple is shared by most tests (the engine caches its jitted
step per (chunk_fn, settings)).
"""
import functools
import os
import stat
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from mlsys_opt.errors import MlsysOptError
from mlsys_opt.space import indexing
from mlsys_opt.sweeps import checkpoint
from mlsys_opt.sweeps import engine as sweep_engine

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
    for x, y in zip(a.front, b.front):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.best, b.best):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    for j in a.histograms:
        np.testing.assert_array_equal(a.histograms[j][1], b.histograms[j][1])


@pytest.mark.parametrize("chunk", [4096, 7777, 2**16])     # 7777 and 65536 do not divide 10^5
def test_exact_against_brute_force_for_any_chunk_size(chunk):
    F, G, aux, feas, want = brute()
    calls = []
    res = reference() if chunk == 4096 else sweep_engine.stream(
        R, toy32, chunk_size=chunk, **{**KW, "progress": lambda done, total: calls.append((done, total))})
    assert res.n_evaluated == N and res.n_feasible == int(feas.sum())
    np.testing.assert_array_equal(res.front.index, want)
    np.testing.assert_array_equal(res.front.digits, np.stack(np.unravel_index(want, R), 1))
    np.testing.assert_array_equal(res.front.F, F[want])
    np.testing.assert_array_equal(res.front.G, G[want])
    np.testing.assert_array_equal(res.front.aux, aux[want])
    assert len(want) == 448 and res.front.index.dtype == np.int64
    if calls:
        assert [c[0] for c in calls] == sorted(c[0] for c in calls) and calls[-1] == (N, N)
        assert len(calls) == -(-N // chunk)
    same_result(res, reference())


def test_column_layout_gives_the_same_result():
    """layout="columns" (chunk_fn returns [n, chunk] arrays, what sweeps use) equals the row layout,
    with a chunk size that leaves a padded last chunk; a wrong shape for the layout is refused."""
    def toy_columns(d):
        return tuple(x.T for x in toy32(d))
    same_result(sweep_engine.stream(R, toy_columns, chunk_size=7777, layout="columns", **KW), reference())
    res = sweep_engine.stream(R, toy_columns, chunk_size=7777, layout="columns", **KW)
    np.testing.assert_array_equal(res.infeasible_by, reference().infeasible_by)
    with pytest.raises(MlsysOptError, match="must return"):
        sweep_engine.stream(R, toy32, chunk_size=7777, layout="columns", **KW)
    # no constraints and no aux columns: empty sequences
    unconstrained = sweep_engine.stream(R, lambda d: (tuple(toy32(d)[0].T), (), ()), chunk_size=7777,
                                        layout="columns", **{**KW, "n_constr": 0, "n_aux": 0})
    assert unconstrained.n_feasible == N and unconstrained.front.G.shape == (len(unconstrained.front.index), 0)
    with pytest.raises(MlsysOptError, match="layout"):
        sweep_engine.stream(R, toy32, chunk_size=7777, layout="diagonal", **KW)


def test_best_k_and_histograms_match_numpy():
    F, G, aux, feas, _ = brute()
    res = reference()
    idx = np.nonzero(feas)[0]
    for j in range(3):
        order = idx[np.lexsort((idx, F[idx, j]))][:5]        # smallest F_j, ties -> lower index
        np.testing.assert_array_equal(res.best[j].index, order)
        np.testing.assert_array_equal(res.best[j].F, F[order])
        np.testing.assert_array_equal(res.best[j].aux, aux[order])
    for j, edges in HIST.items():
        e, counts = res.histograms[j]
        np.testing.assert_array_equal(e, np.asarray(edges, float))
        b = np.searchsorted(e, F[feas, j], side="right")
        np.testing.assert_array_equal(counts, np.bincount(b, minlength=len(e) + 1))
        assert counts.sum() == feas.sum() and counts.dtype == np.int64


def test_float64_gives_the_same_front():
    res64 = sweep_engine.stream(R, toy64, chunk_size=4096, **KW)
    assert res64.front.F.dtype == np.float64
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


def test_checkpoint_is_fsynced_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    """The data must be on disk before the rename publishes it (else a power cut can leave an empty
    checkpoint under the final name), and the rename itself is made durable by fsyncing the folder."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        return real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        return real_replace(src, dst)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = str(tmp_path / "c.npz")
    checkpoint.write_atomically(path, {"a": np.arange(5), "next_index": np.array("12")})
    assert events == ["fsync file", "replace", "fsync dir"], events
    with np.load(path) as z:
        np.testing.assert_array_equal(z["a"], np.arange(5))
    assert os.listdir(tmp_path) == ["c.npz"]


def test_stale_temp_files_of_killed_runs_are_removed_when_a_sweep_resumes(tmp_path):
    """A process killed while saving leaves `<name>.tmp.<pid>`; the next run on that checkpoint deletes
    the ones whose process is gone (and this process's own pid: no save of it is in flight), keeps those
    of live processes and anything that is not such a file, and still resumes the checkpoint."""
    path = tmp_path / "sweep.npz"

    def stop_after_3(done, total):
        if done >= 3 * 4096:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        sweep_engine.stream(R, toy32, chunk_size=4096, **{**KW, "checkpoint_path": path, "progress": stop_after_3})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                                                  # reaped: its pid names no process
    stale = [tmp_path / f"sweep.npz.tmp.{pid}" for pid in (dead.pid, os.getpid())]
    kept = [tmp_path / f"sweep.npz.tmp.{os.getppid()}",          # a live process may be writing it
            tmp_path / "sweep.npz.tmp.notapid", tmp_path / f"other.npz.tmp.{dead.pid}"]
    for p in stale + kept:
        p.write_bytes(b"PK\x03\x04 half a zip")                # what a save cut short leaves
    res = sweep_engine.stream(R, toy32, chunk_size=4096, resume=True, **{**KW, "checkpoint_path": path})
    same_result(res, reference())
    assert not any(p.exists() for p in stale), os.listdir(tmp_path)
    assert all(p.exists() for p in kept), os.listdir(tmp_path)
    with np.load(path) as z:                                     # the checkpoint itself is whole
        assert int(str(z["next_index"])) == N
    same_result(sweep_engine.stream(R, toy32, chunk_size=4096, resume=True, **{**KW, "checkpoint_path": path}),
                reference())
    assert checkpoint.remove_stale_temp_files(str(path)) == []   # nothing stale left; live and foreign kept


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
    np.testing.assert_array_equal(res.front.digits, [[0, 1], [1, 1], [2, 1], [3, 1]])
    assert res.front.aux.shape == (4, 0)
    np.testing.assert_array_equal(res.best[0].digits[:3], [[0, 1], [0, 2], [0, 3]])
    np.testing.assert_array_equal(res.best[1].digits[:2], [[3, 1], [3, 2]])

    def none_feasible(d):
        x = d.astype(jnp.float32)
        return x, jnp.ones((d.shape[0], 1)), x[:, :1]
    res = sweep_engine.stream((5, 3), none_feasible, n_obj=2, n_constr=1, n_aux=1, progress=False)
    assert res.n_feasible == 0 and res.front.index.shape == (0,) and res.front.digits.shape == (0, 2)
    assert all(len(b.index) == 0 for b in res.best)


def test_bad_arguments_are_reported():
    with pytest.raises(MlsysOptError, match="shapes"):
        sweep_engine.stream(R, toy32, n_obj=2, n_constr=1, n_aux=2, progress=False)
    # a bug in the evaluator is not the user's mistake: it arrives unchanged, traceback and all
    with pytest.raises(AttributeError, match="undefined"):
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
