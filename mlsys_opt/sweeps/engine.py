"""Streaming sweep engine: evaluate every configuration of a mixed-radix space
in fixed-size chunks and reduce each chunk ON THE DEVICE to an exact Pareto
front, best-k lists, a feasible count and histograms.  Generic: it knows only
a chunk evaluator

    chunk_fn(digits: int32[chunk, n_axes]) -> (F [chunk, n_obj]   minimize sense,
                                               G [chunk, n_constr] <= 0 feasible,
                                               aux [chunk, n_aux]  extra columns)

A point is FEASIBLE when its lane is inside the space, every G <= 0 and no F
is NaN.  Only feasible points are counted, ranked, binned and fronted.

How one chunk is reduced (one jitted step; lanes sharded over the devices
with shard_map on a 1-D mesh, the reducer state replicated):
  1. decode digits (indexing.decode_chunk), evaluate, mask feasibility;
  2. feasible count and histograms: per-device counts, psum, int32 per chunk,
     summed on the host in Python ints (exact for any space size);
  3. best-k per objective: skipped unless some point beats the current k-th
     value; else per-device top_k, all-gather, lexicographic merge (valid,
     value, position) with the running list;
  4. Pareto front, exact under pareto.py's "beats" relation (position = lane
     in the chunk, -1 for members kept from earlier chunks):
     (a) prefilter: drop every point beaten by one of K_f anchors, the front
         members minimising positive weighted sums of the normalised
         objectives (K_f·n_obj comparisons per point, one fused pass);
     (b) if more than 2M points survive on a device: S survivors spread over
         the device's survivor list are filtered exactly among themselves and
         K_c of their non-dominated points (weighted-sum minimisers) prefilter
         the chunk again.  Anchors are always data points, so (a) and (b)
         never drop a point of the final front (transitivity of "beats");
     (c) the survivors are compacted (prefix count) and merged in lane order,
         M per device per step, all-gathered so that every device applies the
         same exact merge (pareto.merge_fronts) to its copy of the front; a
         while loop runs as many steps as needed, so nothing is dropped for
         lack of buffer room;
     (d) a front larger than ``front_capacity`` sets a flag; the host raises
         MlsysOptError asking for a larger capacity (never a silent drop).
Several hosts: after ``jax.distributed.initialize()`` every process calls
stream() with the same arguments; jax.devices() then spans all hosts, the
reduced state is replicated and only process 0 writes checkpoints (this path
is written for, not tested: the tests force 4 CPU devices in one process).

Only a few scalars per chunk come back to the host, read two chunks late so
the device never waits; device memory is fixed by chunk_size and
front_capacity, host memory is flat in the number of chunks.

Exactness: the front is the set of feasible configurations that no feasible
configuration beats; of identical objective vectors only the lowest
configuration index is kept.  It does not depend on chunk size, on the device
count or on the anchors chosen (those only change the speed).

Modules: this one holds the jitted step and the host loop; the state types
(reducer state, host counters) are in ``sweep_state``, the checkpoint files
(atomic, fsynced writes; fingerprinted resume; stale temporary files of a
killed run removed when the next run starts) in ``checkpoint``.

Source: docs/CONTRACTS.md "Sweep engine"; Deb (2001) ch. 2 for domination.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .. import validate
from ..errors import MlsysOptError
from ..space import indexing
from . import checkpoint, pareto
from .state import (
    BestLists,
    EngineConfig,
    ReducerState,
    SweepLoop,
    drain,
    fold,
    initial_counters,
    initial_state,
    to_host,
)

_AXIS = "lanes"
_LAG = 2                      # chunks between dispatch and host read-back
_BLOCK = 256                  # front slots compared per merge loop step
_FRONT_ANCHORS = 16           # K_f
_CHUNK_ANCHORS = 32           # K_c (only for chunks with many survivors)
# per platform: (M survivors merged per device per loop step, S survivors sampled for chunk anchors);
# accelerators pay a host round trip per loop step, so they take bigger bites
_TUNING = {"cpu": (1024, 1024)}
_TUNING_ACCEL = (2048, 4096)


class ChunkEval(NamedTuple):
    """What a chunk evaluator returns (rows = configurations of the chunk)."""
    F: Any    # float[chunk, n_obj], minimize sense
    G: Any    # float[chunk, n_constr], <= 0 feasible
    aux: Any  # float[chunk, n_aux]


class EngineResult(NamedTuple):
    """Outcome of :func:`stream`.

    Attributes:
      n_evaluated: configurations evaluated (the space size N), Python int.
      n_feasible: feasible configurations, Python int (exact).
      front: dict of numpy arrays for the exact Pareto front, rows sorted by
        configuration index: ``index`` int64[n], ``digits`` int32[n, n_axes],
        ``F`` [n, n_obj], ``G`` [n, n_constr], ``aux`` [n, n_aux].
      best: list (one per objective j) of dicts with the same keys: the
        <= top_k feasible configurations with the smallest F[:, j] (ties: lower
        index first), sorted best first.
      histograms: dict objective -> (edges float64[nb+1], counts int64[nb+2])
        over feasible points; counts[0] counts F < edges[0], counts[i] counts
        edges[i-1] <= F < edges[i], counts[-1] counts F >= edges[-1].
      elapsed_s: wall time of this call, seconds.
      infeasible_by: int64[n_constr]; entry j counts the infeasible
        configurations whose most violated constraint (argmax of G) is j --
        the reason code of each infeasible configuration, aggregated.
    """
    n_evaluated: int
    n_feasible: int
    front: dict
    best: list
    histograms: dict
    elapsed_s: float
    infeasible_by: np.ndarray


# --------------------------------------------------------------------------- helpers

def _gather(x):
    return lax.all_gather(x, _AXIS, tiled=True)


# --------------------------------------------------------------------------- the jitted step

@functools.lru_cache(maxsize=16)
def _build_step(chunk_fn, cfg: EngineConfig, devices: tuple):
    n_axes = len(cfg.radices)
    L, k_loc = cfg.lanes, min(cfg.top_k, cfg.lanes)
    M, S = _TUNING.get(devices[0].platform, _TUNING_ACCEL)
    M, S = min(M, L), min(S, L)
    n_pad = -(-L // M) * M
    W_front = pareto.positive_weights(cfg.n_obj, _FRONT_ANCHORS if cfg.n_obj > 1 else 1)
    W_chunk = pareto.positive_weights(cfg.n_obj, _CHUNK_ANCHORS if cfg.n_obj > 1 else 1)
    mesh = Mesh(np.array(devices), (_AXIS,))

    def local(state: ReducerState, start_digits, n_valid):
        d = lax.axis_index(_AXIS)
        lane = d.astype(jnp.int32) * L + jnp.arange(L, dtype=jnp.int32)
        digits = indexing.decode_chunk(start_digits, lane, cfg.radices)
        # materialise the evaluation once, so that XLA does not fuse (and
        # duplicate) the evaluator into each reduction that reads it
        F, G, aux, digits = lax.optimization_barrier(tuple(chunk_fn(digits)) + (digits,))
        feas = (lane < n_valid) & jnp.all(G <= 0, axis=1) & ~jnp.any(jnp.isnan(F), axis=1)
        count = lax.psum(jnp.sum(feas, dtype=jnp.int32), _AXIS)
        # why the others are infeasible: the most violated constraint of each
        # valid lane with some G > 0 (reason code = its column; NaN F: not counted)
        bad = (lane < n_valid) & jnp.any(G > 0, axis=1)
        if cfg.n_constr:
            reason = jnp.argmax(G, axis=1)
            # one-hot column sums, not a scatter-add: n_constr bins would serialise the
            # scatter's atomics on a GPU (and it is a scalar loop on the CPU)
            hit = bad[:, None] & (reason[:, None] == jnp.arange(cfg.n_constr, dtype=reason.dtype)[None, :])
            reasons = lax.psum(jnp.sum(hit, axis=0, dtype=jnp.int32), _AXIS)
        else:
            reasons = jnp.zeros((0,), jnp.int32)

        hists = []
        for j, edges in cfg.hist:
            e = jnp.asarray(edges, F.dtype)
            b = jnp.searchsorted(e, F[:, j], side="right", method="compare_all")
            h = jnp.zeros((len(edges) + 1,), jnp.int32).at[b].add(feas.astype(jnp.int32))
            hists.append(lax.psum(h, _AXIS))

        best = _update_best(state.best, F, G, aux, digits, feas)

        # ---- front: prefilter by anchors, then exact merges of the survivors
        cols = [F[:, j] for j in range(cfg.n_obj)]

        def prefilter(surv, AF, Ap, Av):
            """Drop the points beaten by any anchor (rows of AF at positions Ap, valid Av)."""
            beaten = jnp.zeros((L,), bool)
            for a in range(AF.shape[0]):        # unrolled: one fused pass over the chunk
                le, lt = Av[a], Ap[a] < lane
                for j in range(cfg.n_obj):
                    le = le & (AF[a, j] <= cols[j])
                    lt = lt | (AF[a, j] < cols[j])
                beaten = beaten | (le & lt)
            return surv & ~beaten

        front = state.front._replace(pos=jnp.full_like(state.front.pos, -1))
        lo, inv = pareto.normalizer(front.F, front.member)
        surv = lax.optimization_barrier(
            prefilter(feas, *pareto.weighted_minimizers(front.F, front.member, lo, inv, W_front, front.pos)))
        ns = jnp.sum(surv, dtype=jnp.int32)

        def refine(surv):
            """Many survivors: anchors from the chunk's own front, estimated on an even sample.

            S survivors spread evenly over the survivor list are filtered exactly
            among themselves (S² comparisons); the sample's non-dominated points
            that minimise K_c weighted sums then prefilter the whole chunk.
            """
            ns_ = jnp.sum(surv, dtype=jnp.int32)
            dest = jnp.where(surv, pareto.prefix_count(surv) - 1, L)
            buf = jnp.zeros((L,), jnp.int32).at[dest].set(jnp.arange(L, dtype=jnp.int32), mode="drop")
            pick = jnp.floor(jnp.arange(S, dtype=jnp.float32) * (ns_.astype(jnp.float32) / S)).astype(jnp.int32)
            sl = buf[jnp.clip(pick, 0, L - 1)]
            SF, sp = F[sl], lane[sl]
            nd = ~jnp.any(pareto.beats(SF, sp, SF, sp), axis=0)
            lo_s, inv_s = pareto.normalizer(SF, nd)
            anchors = pareto.weighted_minimizers(SF, nd, lo_s, inv_s, W_chunk, sp)
            return surv & ~pareto.beaten_by_anchors(F, lane, *anchors)

        surv = lax.optimization_barrier(lax.cond(ns > 2 * M, refine, lambda s_: s_, surv))
        ns = jnp.sum(surv, dtype=jnp.int32)
        n_iter = lax.pmax((ns + M - 1) // M, _AXIS)

        def merge_all(front):
            dest = jnp.where(surv, pareto.prefix_count(surv) - 1, n_pad)
            buf = jnp.zeros((n_pad,), jnp.int32).at[dest].set(jnp.arange(L, dtype=jnp.int32), mode="drop")

            def body(carry):
                t, fr, ovf = carry
                sel = lax.dynamic_slice_in_dim(buf, t * M, M)
                sv = t * M + jnp.arange(M, dtype=jnp.int32) < ns
                rows = (F[sel], lane[sel], sv, (G[sel], aux[sel], digits[sel]))
                cF_, cp_, cv_, pay = jax.tree_util.tree_map(_gather, rows)
                fr, o = pareto.merge_fronts(fr, cF_, cp_, cv_, pay, block=_BLOCK)
                return t + 1, fr, ovf | o

            _, fr, ovf = lax.while_loop(lambda c: c[0] < n_iter, body,
                                        (jnp.zeros((), jnp.int32), front, jnp.zeros((), bool)))
            return fr, ovf

        front, ovf = lax.cond(n_iter > 0, merge_all, lambda fr: (fr, jnp.zeros((), bool)), front)
        ns = lax.psum(ns, _AXIS)
        overflow = state.overflow | ovf
        outs = (count, tuple(hists), overflow, front.n, ns, reasons)
        return ReducerState(front, best, overflow), outs

    def _update_best(best: BestLists, F, G, aux, digits, feas):
        k, n_obj = cfg.top_k, cfg.n_obj
        diag = jnp.arange(n_obj)
        thr = jnp.where(best.valid[:, k - 1], best.F[diag, k - 1, diag], jnp.inf)      # [n_obj]
        any_better = lax.pmax(jnp.any(feas[:, None] & (F < thr[None, :])).astype(jnp.int32), _AXIS) > 0

        def take(_):
            _, idx = lax.top_k(-jnp.where(feas[:, None], F, jnp.inf).T, k_loc)        # [n_obj, k_loc]
            return F[idx], G[idx], aux[idx], digits[idx], feas[idx]

        def none(_):
            z = lambda *shape, dt: jnp.zeros((n_obj, k_loc) + shape, dt)          # noqa: E731
            return (z(n_obj, dt=F.dtype), z(cfg.n_constr, dt=G.dtype), z(cfg.n_aux, dt=aux.dtype),
                    z(n_axes, dt=jnp.int32), z(dt=bool))

        cand = lax.cond(any_better, take, none, None)
        cand = jax.tree_util.tree_map(lambda x: lax.all_gather(x, _AXIS, axis=1, tiled=True), cand)
        both = [jnp.concatenate([o, c], axis=1) for o, c in zip(best, cand)]    # [n_obj, m, ...]
        val, ok = both[0][diag, :, diag], both[4]                                 # [n_obj, m]
        order = jax.vmap(lambda v, o: jnp.lexsort((jnp.arange(v.shape[0]), v, ~o))[:k])(val, ok)
        pick = lambda x: jnp.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), axis=1)  # noqa: E731
        return BestLists(*(pick(x) for x in both))

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P()), out_specs=(P(), P()),
                            check_vma=False)
    rep = NamedSharding(mesh, P())      # fixed shardings: the first call does not compile twice
    return jax.jit(sharded, in_shardings=(rep, rep, rep), out_shardings=(rep, rep)), rep


# --------------------------------------------------------------------------- host side

def _stderr_bar():
    if not sys.stderr.isatty():
        return None
    t0, last = time.perf_counter(), [0.0]

    def bar(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] < 0.2 and done < total:
            return
        last[0] = now
        frac = done / max(total, 1)
        rate = done / max(now - t0, 1e-9)
        eta = (total - done) / rate if rate > 0 else float("inf")
        n = int(30 * frac)
        sys.stderr.write(f"\r[{'#' * n}{'.' * (30 - n)}] {100 * frac:5.1f}% {rate:.3g} cfg/s ETA {eta:.0f}s")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return bar


def _rows(st: ReducerState, cfg: EngineConfig) -> tuple[dict, list]:
    radices = cfg.radices
    mem = to_host(st.front.member)
    n = int(mem.sum())
    fr = {"digits": to_host(st.front.payload[2])[mem], "F": to_host(st.front.F)[mem],
          "G": to_host(st.front.payload[0])[mem], "aux": to_host(st.front.payload[1])[mem]}
    order = np.lexsort(fr["digits"].T[::-1]) if n else np.zeros(0, int)
    fr = {k: v[order] for k, v in fr.items()}
    fr["index"] = np.array(indexing.indices_of(fr["digits"], radices), dtype=np.int64)
    b = BestLists(*(to_host(x) for x in st.best))
    best = []
    for j in range(cfg.n_obj):
        v = b.valid[j]
        d = {"digits": b.digits[j][v], "F": b.F[j][v], "G": b.G[j][v], "aux": b.aux[j][v]}
        d["index"] = np.array(indexing.indices_of(d["digits"], radices), dtype=np.int64)
        best.append(d)
    return fr, best


def stream(radices: Sequence[int], chunk_fn: Callable, *, n_obj: int, n_constr: int, n_aux: int,
           chunk_size: int = 2**16, front_capacity: int = 4096, top_k: int = 16,
           histograms: Mapping[int, Sequence[float]] | None = None, devices=None,
           progress: Callable[[int, int], None] | bool | None = None,
           checkpoint_path: str | os.PathLike | None = None, resume: bool = False,
           checkpoint_every: int = 64, run_key: str = "") -> EngineResult:
    """Evaluate every configuration of the space and reduce on the device.

    Args:
      radices: axis sizes (ints >= 1, each < 2**31, product <= 2**63 - 1).
      chunk_fn: pure, jit-able ``digits int32[chunk, n_axes] -> (F, G, aux)``
        (see module docstring; a :class:`ChunkEval` or any 3-sequence),
        rows independent of each other.  Objectives must be finite.
      n_obj, n_constr, n_aux: column counts of F, G, aux (n_obj >= 1).
      chunk_size: configurations per jitted step (rounded up to a multiple of
        the device count).  Does not change the result.
      front_capacity: most front members kept; exceeding it raises.
      top_k: length of each per-objective best list.
      histograms: ``{objective: increasing bin edges}`` over feasible points.
      devices: jax devices to shard lanes over (default: ``jax.devices()``),
        or an int n for the first n.
      progress: ``callable(done, total)`` after each chunk; None: a stderr bar
        when stderr is a terminal; False: silent.
      checkpoint_path: ``.npz`` written atomically (fsynced, then renamed) every
        ``checkpoint_every`` chunks, on KeyboardInterrupt and at the end; the
        temporary files of killed earlier runs on this path are deleted at the
        start (``checkpoint.remove_stale_temp_files``).
      resume: continue from ``checkpoint_path`` when it exists (chunk_size and
        devices may differ from the interrupted run).
      run_key: text mixed into the checkpoint fingerprint (e.g. a hash of the
        spec and scenario) so a checkpoint of another problem is refused.

    Returns:
      :class:`EngineResult`.
    """
    t_start = time.perf_counter()
    devices = _devices(devices)
    cfg = _config(radices, chunk_fn, n_obj, n_constr, n_aux, chunk_size, front_capacity, top_k,
                  histograms, checkpoint_every, len(devices))
    N = indexing.space_size(cfg.radices)
    # every check before the compile: a bad argument costs nothing
    if progress is not None and not isinstance(progress, bool) and not callable(progress):
        raise MlsysOptError(f"stream: progress must be a callable(done, total), None (a stderr bar on a "
                            f"terminal) or False (silent); got {progress!r}")
    if progress is True:
        progress = None
    path = None
    if checkpoint_path is not None:
        path = os.fspath(validate.check_output_path("checkpoint_path", checkpoint_path, "stream"))
    elif resume:
        raise MlsysOptError("stream: resume=True needs a checkpoint_path to resume from")
    writer = path is not None and jax.process_index() == 0
    if writer:
        checkpoint.remove_stale_temp_files(path)     # half-written files of a killed earlier run
    init, acc = initial_state(cfg), initial_counters(cfg)
    desc = checkpoint.describe_run(cfg, run_key)
    if resume and os.path.exists(path):
        init, acc = checkpoint.load(path, cfg, desc, init)
    step, rep = _build_step(chunk_fn, cfg, devices)
    init = jax.device_put(init, rep)     # the step's output sharding: the step compiles once
    if progress is None:
        progress = _stderr_bar()
    elif progress is False:
        progress = None

    def save(loop: SweepLoop) -> SweepLoop:
        loop = drain(loop, cfg)
        checkpoint.save(path, loop, cfg, desc)
        return loop

    loop = SweepLoop(init, (), acc)
    try:
        while loop.acc.next_index < N or loop.pending:
            a, state, pending = loop.acc, loop.state, loop.pending
            if a.next_index < N:
                nv = min(cfg.chunk, N - a.next_index)
                state, outs = step(state, jax.device_put(indexing.digits_of(a.next_index, cfg.radices), rep),
                                   jax.device_put(np.int32(nv), rep))
                pending = pending + (outs,)
                a = a._replace(next_index=a.next_index + nv, n_chunks=a.n_chunks + 1)
            while pending and (len(pending) > _LAG or a.next_index >= N):
                a = fold(a, pending[0], cfg.capacity)
                pending = pending[1:]
            loop = SweepLoop(state, pending, a)          # the one rebinding: interrupt-safe
            if progress is not None:
                progress(loop.acc.next_index, N)
            if writer and loop.acc.n_chunks % checkpoint_every == 0 and loop.acc.next_index < N:
                loop = save(loop)
    except KeyboardInterrupt:
        if writer:
            save(loop)
        raise
    if writer:
        loop = save(loop)
    front, best = _rows(loop.state, cfg)
    hists = {j: (np.asarray(e, np.float64), h) for (j, e), h in zip(cfg.hist, loop.acc.hist)}
    return EngineResult(N, loop.acc.n_feasible, front, best, hists, time.perf_counter() - t_start,
                        loop.acc.reasons.copy())


def _devices(devices) -> tuple:
    if devices is None:
        return tuple(jax.devices())
    if isinstance(devices, int):
        if not 1 <= devices <= len(jax.devices()):
            raise MlsysOptError(f"stream: devices={devices} but jax sees {len(jax.devices())} device(s)")
        return tuple(jax.devices()[:devices])
    devices = tuple(devices)
    if not devices:
        raise MlsysOptError("stream: devices is empty; pass None for all of jax.devices()")
    return devices


def _config(radices, chunk_fn, n_obj, n_constr, n_aux, chunk_size, front_capacity, top_k,
            histograms, checkpoint_every, n_dev: int) -> EngineConfig:
    """Validate the arguments of :func:`stream` and check chunk_fn's output shapes."""
    N = indexing.space_size(radices)              # validates the axis sizes
    radices = tuple(int(r) for r in radices)
    for name, v, lo in (("n_obj", n_obj, 1), ("n_constr", n_constr, 0), ("n_aux", n_aux, 0),
                        ("chunk_size", chunk_size, 1), ("front_capacity", front_capacity, 1),
                        ("top_k", top_k, 1), ("checkpoint_every", checkpoint_every, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise MlsysOptError(f"stream: {name}={v!r} must be an int >= {lo}")
    # chunk: a multiple of the device count, no larger than the space needs
    chunk = -(-min(int(chunk_size), -(-N // n_dev) * n_dev) // n_dev) * n_dev
    if chunk >= 2**31:
        raise MlsysOptError(f"stream: chunk_size={chunk_size} must be below 2**31 (int32 lanes)")
    lanes = chunk // n_dev
    spec = jax.ShapeDtypeStruct((lanes, len(radices)), jnp.int32)
    try:
        out = jax.eval_shape(lambda d: tuple(chunk_fn(d)), spec)
    except MlsysOptError:
        raise
    except Exception as exc:  # noqa: BLE001 - report any evaluator failure as bad input
        raise MlsysOptError(f"stream: chunk_fn failed on digits int32{list(spec.shape)}: {exc}") from exc
    want = ((lanes, n_obj), (lanes, n_constr), (lanes, n_aux))
    if len(out) != 3 or any(tuple(o.shape) != w for o, w in zip(out, want)):
        raise MlsysOptError(
            f"stream: chunk_fn must return (F, G, aux) of shapes {want} for a chunk of {lanes} "
            f"configurations; got {[tuple(o.shape) for o in out]}")
    capacity = int(front_capacity)
    if capacity > _BLOCK:
        capacity = -(-capacity // _BLOCK) * _BLOCK
    return EngineConfig(radices, int(n_obj), int(n_constr), int(n_aux), chunk, lanes, capacity, int(top_k),
                _check_hist(histograms, n_obj), tuple(str(o.dtype) for o in out))



def _check_hist(histograms, n_obj: int) -> tuple:
    if not histograms:
        return ()
    out = []
    for j, edges in sorted(dict(histograms).items()):
        if int(j) != j or not 0 <= j < n_obj:
            raise MlsysOptError(f"histograms: objective {j!r} is not an objective index in [0, {n_obj})")
        e = np.asarray(edges, dtype=np.float64).reshape(-1)
        if e.size < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
            raise MlsysOptError(f"histograms[{j}]: bin edges must be >= 2 finite, strictly increasing "
                                f"numbers; got {np.asarray(edges).tolist()}")
        out.append((int(j), tuple(float(x) for x in e)))
    return tuple(out)
