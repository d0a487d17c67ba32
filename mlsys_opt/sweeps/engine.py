"""Streaming sweep engine: evaluate every configuration of a mixed-radix space
in fixed-size chunks and reduce each chunk ON THE DEVICE to an exact Pareto
front, best-k lists, a feasible count and histograms.  Generic: it knows only
a chunk evaluator

    chunk_fn(digits: int32[chunk, n_axes]) -> (F [chunk, n_obj]   minimize sense,
                                               G [chunk, n_constr] <= 0 feasible,
                                               aux [chunk, n_aux]  extra columns)

or, with ``layout="columns"``, each of F, G, aux as its columns: a sequence of
n vectors [chunk] (or an [n, chunk] array).  A scenario's outputs are separate
vectors, and stacking them into a row-major [chunk, n] array cost about a fifth
of the training sweep's time on the CPU; the step reads columns anyway (it
gathers rows only for survivors and best lanes).

A point is FEASIBLE when its lane is inside the space, every F and G is finite
and every G <= 0.  Only feasible points are counted, ranked, binned and
fronted; every other point gets ONE reason code: its most violated constraint,
or ``non_finite`` when an objective or constraint is NaN or infinite (a wall
fed an impossible value), so n_evaluated = n_feasible + sum(infeasible_by).

How one chunk is reduced (one jitted step; lanes sharded over the devices
with shard_map on a 1-D mesh, the reducer state replicated):
  1. decode digits (indexing.decode_chunk_columns), evaluate, mask feasibility;
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
         MlsysOptError asking for a larger capacity (never a silent drop);
  5. near miss, only while nothing so far is feasible (a ``lax.cond``): the
     least-violating configuration (smallest sum_j max(G_j, 0)) and per soft
     constraint (the columns after the first ``n_hard``) the configuration with
     its smallest G_j among those meeting every hard one: each device folds its
     own lanes into its own entry (no collective; per-device mins, and only when
     one beats the carried value the lanes' rows), kept across chunks when not
     strictly beaten (ties: the lower index); the host merges the entries by
     (value, index) when the result is built or a checkpoint written.
Several hosts: after ``jax.distributed.initialize()`` every process calls
stream() with the same arguments; jax.devices() then spans all hosts, the
reduced state is replicated (the near miss's entries are per device: this path
reports none) and only process 0 writes checkpoints (this path is written for,
not tested: the tests force 4 CPU devices in one process; ``sweeps.distributed``
has each process sweep a share on its local devices instead).

Only a few scalars per chunk come back to the host, read two chunks late so
the device never waits; device memory is fixed by chunk_size and
front_capacity, host memory is flat in the number of chunks.

Exactness: the front is the set of feasible configurations that no feasible
configuration beats; of identical objective vectors only the lowest
configuration index is kept.  It does not depend on chunk size, on the device
count or on the anchors chosen (those only change the speed).

Modules: this one holds the host loop; the jitted step's stages are module-level
functions in ``step``; the state types (reducer state, host counters) are in ``state``, the checkpoint files
(atomic, fsynced writes; fingerprinted resume; stale temporary files of a
killed run removed when the next run starts) in ``checkpoint``.

Source: docs/CONTRACTS.md "Sweep engine"; Deb (2001) ch. 2 for domination.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import jaxpr_as_fun

from .. import validate
from ..errors import MlsysOptError
from ..space import indexing
from . import checkpoint
from .state import (
    BestLists,
    EngineConfig,
    NearMissState,
    Payload,
    ReducerState,
    SweepLoop,
    drain,
    fold,
    initial_counters,
    initial_state,
    merge_near_miss,
    to_host,
)
from .step import BLOCK, build_step, near_miss_computed, state_shardings

_LAG = 2                      # chunks between dispatch and host read-back
_build_step = build_step      # (the name tests stub to run the host loop without compiling)


class ChunkEval(NamedTuple):
    """What a chunk evaluator returns (rows = configurations of the chunk)."""
    F: jax.Array    # float[chunk, n_obj], minimize sense
    G: jax.Array    # float[chunk, n_constr], <= 0 feasible
    aux: jax.Array  # float[chunk, n_aux]


class FrontRows(NamedTuple):
    """Rows of configurations on the host (numpy), sorted as documented where used.

    index: int64[n] configuration indices; digits: int32[n, n_axes]; F: [n, n_obj];
    G: [n, n_constr]; aux: [n, n_aux].
    """
    index: np.ndarray
    digits: np.ndarray
    F: np.ndarray
    G: np.ndarray
    aux: np.ndarray


class NearMissRows(NamedTuple):
    """How close a sweep with no feasible configuration comes (rows as :class:`FrontRows`, 0 or 1 each).

    violation: float, sum_j max(G_j, 0) of `least` (inf when no configuration had finite F and G).
    least: the configuration with the smallest total violation (ties: the lower index).
    closest: tuple (one per soft constraint j, the columns after the first ``n_hard``) of FrontRows: the
      configuration with the smallest G_j among those whose F and G are finite and that meet every
      hard constraint (ties: the lower index); no row when there is none.
    """
    violation: float
    least: FrontRows
    closest: tuple


class EngineResult(NamedTuple):
    """Outcome of :func:`stream`.

    Attributes:
      n_evaluated: configurations evaluated (the space size N), Python int.
      n_feasible: feasible configurations, Python int (exact).
      front: :class:`FrontRows` of the exact Pareto front, rows sorted by configuration index.
      best: tuple (one per objective j) of :class:`FrontRows`: the <= top_k
        feasible configurations with the smallest F[:, j] (ties: lower index
        first), sorted best first.
      histograms: dict objective -> (edges float64[nb+1], counts int64[nb+2])
        over feasible points; counts[0] counts F < edges[0], counts[i] counts
        edges[i-1] <= F < edges[i], counts[-1] counts F >= edges[-1].
      elapsed_s: wall time of this call, seconds.
      infeasible_by: int64[n_constr + 1]; entry j < n_constr counts the
        infeasible configurations whose most violated constraint (argmax of G)
        is j -- the reason code of each infeasible configuration, aggregated;
        the last entry (``non_finite``) counts the configurations whose F or G
        is NaN or infinite.  n_evaluated = n_feasible + sum(infeasible_by).
      near_miss: :class:`NearMissRows` when no configuration is feasible (and
        the evaluator has constraints), else None.
    """
    n_evaluated: int
    n_feasible: int
    front: FrontRows
    best: tuple
    histograms: dict
    elapsed_s: float
    infeasible_by: np.ndarray
    near_miss: NearMissRows | None = None


# --------------------------------------------------------------------------- host side

def progress_bar(total: int, progress: bool | None = None, *, unit: str = "cfg", desc: str = "sweep"):
    """The one progress bar of sweeps, searches and tables: a tqdm bar, or None when silent.

    progress None: a bar when someone watches -- stderr is a terminal, or a Jupyter kernel runs
    us (tqdm.auto draws a widget there when ipywidgets is installed, else text) -- and None
    otherwise (a pipe, a log file, a test); True: always; False: None.
    """
    watched = sys.stderr.isatty() or "ipykernel" in sys.modules
    if progress is False or (progress is None and not watched):
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, unit=unit, unit_scale=True, dynamic_ncols=True, smoothing=0.1, mininterval=0.2,
                desc=desc, file=sys.stderr)


def _rows(st: ReducerState, cfg: EngineConfig) -> tuple[FrontRows, tuple]:
    """The front (sorted by configuration index) and the best lists as host rows."""
    def rows(digits, F, G, aux, order=None):
        if order is None:
            order = np.lexsort(digits.T[::-1]) if len(digits) else np.zeros(0, int)
        digits, F, G, aux = (x[order] for x in (digits, F, G, aux))
        return FrontRows(np.array(indexing.indices_of(digits, cfg.radices), dtype=np.int64), digits, F, G, aux)

    mem = to_host(st.front.member)
    pay = Payload(*(to_host(x)[mem] for x in st.front.payload))
    front = rows(pay.digits, to_host(st.front.F)[mem], pay.G, pay.aux)
    b = BestLists(*(to_host(x) for x in st.best))
    best = tuple(rows(b.digits[j], b.F[j], b.G[j], b.aux[j], order=np.flatnonzero(b.valid[j]))
                 for j in range(cfg.n_obj))
    return front, best


def _near_miss_rows(near: NearMissState, cfg: EngineConfig) -> NearMissRows:
    """The devices' near misses (``state.NearMissState``, fields [D, ...]), merged, as host rows (see
    :class:`NearMissRows`)."""
    nm = merge_near_miss(near, cfg.radices)

    def rows(keep, digits, F, G, aux):
        digits, F, G, aux = (np.asarray(x)[None][:int(bool(keep))] for x in (digits, F, G, aux))
        return FrontRows(np.array(indexing.indices_of(digits, cfg.radices), dtype=np.int64), digits, F, G, aux)
    closest = tuple(rows(nm.best_valid[j], nm.best_digits[j], nm.best_F[j], nm.best_G[j], nm.best_aux[j])
                    for j in range(cfg.n_constr - cfg.n_hard))
    return NearMissRows(float(nm.violation) if nm.valid else float("inf"),
                        rows(nm.valid, nm.digits, nm.F, nm.G, nm.aux), closest)


def stream(radices: Sequence[int], chunk_fn: Callable, *, n_obj: int, n_constr: int, n_aux: int,
           chunk_size: int = 2**16, front_capacity: int = 4096, top_k: int = 16,
           histograms: Mapping[int, Sequence[float]] | None = None, devices=None,
           progress: Callable[[int, int], None] | bool | None = None,
           checkpoint_path: str | os.PathLike | None = None, resume: bool = False,
           checkpoint_every: int = 64, run_key: str = "", index_range: tuple[int, int] | None = None,
           saver=None, timings: dict | None = None, layout: str = "rows", steps=None,
           n_hard: int = 0) -> EngineResult:
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
      progress: ``callable(done, total)`` after each chunk; None: a tqdm bar
        when stderr is a terminal or in a Jupyter notebook; False: silent.
      checkpoint_path: ``.npz`` written atomically (fsynced, then renamed) every
        ``checkpoint_every`` chunks, on KeyboardInterrupt and at the end; the
        temporary files of killed earlier runs on this path are deleted at the
        start (``checkpoint.remove_stale_temp_files``).
      resume: continue from ``checkpoint_path`` when it exists (chunk_size and
        devices may differ from the interrupted run).
      run_key: text mixed into the checkpoint fingerprint (e.g. a hash of the
        spec and scenario) so a checkpoint of another problem is refused.
      index_range: ``(lo, hi)``: sweep only configurations lo..hi-1 (one
        process's share in ``sweeps.distributed``); default the whole space.
      saver: checkpoint hook of ``sweeps.distributed`` (``.start(cfg, desc,
        init, acc)`` and ``.save(loop, cfg, desc)``) replacing the file here.
      layout: ``"rows"`` (chunk_fn returns [chunk, n] arrays) or ``"columns"`` (sequences of n
        vectors [chunk], or [n, chunk] arrays).
      n_hard: the first n_hard constraint columns are hard (a space's structural constraints), the others
        soft (its limits): the near miss's closest configuration per soft constraint is taken among
        those meeting every hard one (0: every column is soft).
      steps: a compiled-step cache (``sweeps.executables.StepCache``) or None: ``steps.shapes(lanes)``
        gives chunk_fn's output shapes without tracing it (None: trace), ``steps.step(cfg, build)`` the
        step and its sharding (a loaded executable, or ``build()``, the default below, compiled and stored).
      timings: a dict that receives seconds spent: ``compile`` (tracing and the
        first step's compile), ``evaluate`` (the chunks, evaluation and the
        on-device reduction together), ``reduce`` (front rows to the host).

    Returns:
      :class:`EngineResult`.
    """
    t_start = time.perf_counter()
    devices = _devices(devices)
    cfg = _config(radices, chunk_fn, n_obj, n_constr, n_aux, chunk_size, front_capacity, top_k,
                  histograms, checkpoint_every, len(devices), layout, None if steps is None else steps.shapes, n_hard)
    N = indexing.space_size(cfg.radices)
    lo, hi = (0, N) if index_range is None else (int(index_range[0]), int(index_range[1]))
    if not 0 <= lo <= hi <= N:
        raise MlsysOptError(f"stream: index_range=({lo}, {hi}) must lie within [0, {N}]")
    # every check before the compile: a bad argument costs nothing
    if progress is not None and not isinstance(progress, bool) and not callable(progress):
        raise MlsysOptError(f"stream: progress must be a callable(done, total), None (a tqdm bar on a "
                            f"terminal or in a notebook) or False (silent); got {progress!r}")
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
    init, acc = initial_state(cfg), initial_counters(cfg)._replace(next_index=lo)
    desc = checkpoint.describe_run(cfg, run_key)
    if saver is not None:            # sweeps.distributed: every process's state goes to process 0
        writer, path = True, None
        init, acc = saver.start(cfg, desc, init, acc)
    elif resume and os.path.exists(path):
        init, acc = checkpoint.load(path, cfg, desc, init)
    def build():
        return _build_step(_traced(chunk_fn, cfg.lanes, len(cfg.radices))[0], cfg, devices)
    step, rep = build() if steps is None else steps.step(cfg, build)
    init = jax.device_put(init, state_shardings(rep))     # the step's output sharding: the step compiles once
    # one process: the two small per-chunk inputs go in as numpy (jit's own transfer, ~0.2 ms a chunk
    # less than device_put; always numpy, so one compile); several processes: global device arrays
    put = (lambda x: x) if jax.process_count() == 1 else (lambda x: jax.device_put(x, rep))
    bar = progress_bar(hi - lo) if progress is None else None
    if bar is not None:
        def progress(done: int, total: int) -> None:     # (done, total): the callback signature
            bar.update(done - bar.n)
    elif progress is None or progress is False:
        progress = None

    def save(loop: SweepLoop) -> SweepLoop:
        loop = drain(loop, cfg)
        if saver is not None:
            saver.save(loop, cfg, desc)
        else:
            checkpoint.save(path, loop, cfg, desc)
        return loop

    loop = SweepLoop(init, (), acc)
    t_loop = time.perf_counter()
    try:
        while loop.acc.next_index < hi or loop.pending:
            a, state, pending = loop.acc, loop.state, loop.pending
            if a.next_index < hi:
                nv = min(cfg.chunk, hi - a.next_index)
                state, outs = step(state, put(indexing.digits_of(a.next_index, cfg.radices)), put(np.int32(nv)))
                pending = pending + (outs,)
                a = a._replace(next_index=a.next_index + nv, n_chunks=a.n_chunks + 1)
                if timings is not None and "compile" not in timings:     # the first dispatch compiles
                    timings["compile"] = time.perf_counter() - t_start
                    t_loop = time.perf_counter()
            while pending and (len(pending) > _LAG or a.next_index >= hi):
                a = fold(a, pending[0], cfg.capacity)
                pending = pending[1:]
            loop = SweepLoop(state, pending, a)          # the one rebinding: interrupt-safe
            if progress is not None:
                progress(loop.acc.next_index - lo, hi - lo)
            if writer and loop.acc.n_chunks % checkpoint_every == 0 and loop.acc.next_index < hi:
                loop = save(loop)
    except KeyboardInterrupt:
        if writer and saver is None:
            save(loop)
        raise
    finally:
        if bar is not None:
            bar.close()
    if writer:
        loop = save(loop)
    t_rows = time.perf_counter()
    front, best = _rows(loop.state, cfg)
    if timings is not None:
        timings.setdefault("compile", 0.0)
        timings["evaluate"] = timings.get("evaluate", 0.0) + t_rows - t_loop
        timings["reduce"] = timings.get("reduce", 0.0) + time.perf_counter() - t_rows
    hists = {j: (np.asarray(e, np.float64), h) for (j, e), h in zip(cfg.hist, loop.acc.hist)}
    # (a mesh over several processes' devices -- the multi-host path above -- leaves other processes'
    # near-miss entries out of reach: no near miss there; sweeps.distributed sweeps local devices)
    spans = any(d.process_index != jax.process_index() for d in devices)
    near = (_near_miss_rows(loop.state.near, cfg) if loop.acc.n_feasible == 0 and near_miss_computed(cfg)
            and not spans else None)
    return EngineResult(N, loop.acc.n_feasible, front, best, hists, time.perf_counter() - t_start,
                        loop.acc.reasons.copy(), near)


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
            histograms, checkpoint_every, n_dev: int, layout: str = "rows", shapes=None,
            n_hard: int = 0) -> EngineConfig:
    """Validate the arguments of :func:`stream` and check chunk_fn's output shapes."""
    if layout not in ("rows", "columns"):
        raise MlsysOptError(f"stream: layout={layout!r} must be 'rows' ([chunk, n] arrays) or 'columns' ([n, chunk])")
    columns = layout == "columns"
    N = indexing.space_size(radices)              # validates the axis sizes
    radices = tuple(int(r) for r in radices)
    for name, v, lo in (("n_obj", n_obj, 1), ("n_constr", n_constr, 0), ("n_aux", n_aux, 0),
                        ("chunk_size", chunk_size, 1), ("front_capacity", front_capacity, 1),
                        ("top_k", top_k, 1), ("checkpoint_every", checkpoint_every, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise MlsysOptError(f"stream: {name}={v!r} must be an int >= {lo}")
    if isinstance(n_hard, bool) or not isinstance(n_hard, (int, np.integer)) or not 0 <= n_hard <= n_constr:
        raise MlsysOptError(f"stream: n_hard={n_hard!r} must be an int in [0, n_constr={n_constr}]")
    # chunk: a multiple of the device count, no larger than the space needs
    chunk = -(-min(int(chunk_size), -(-N // n_dev) * n_dev) // n_dev) * n_dev
    if chunk >= 2**31:
        raise MlsysOptError(f"stream: chunk_size={chunk_size} must be below 2**31 (int32 lanes)")
    lanes = chunk // n_dev
    # an evaluator that raises is a bug (or, for MlsysOptError, a bad input it diagnosed):
    # either way the exception goes to the caller unchanged, with its traceback
    out = (shapes(lanes) if shapes is not None else None) or _traced(chunk_fn, lanes, len(radices))[1]
    want = ((lanes, n_obj), (lanes, n_constr), (lanes, n_aux))
    if columns:         # sequences of vectors [lanes] are read as the rows of an [n, lanes] array
        want = tuple(w[::-1] for w in want)
        out = tuple(o if hasattr(o, "shape") else _stacked_shape(o, out, lanes) for o in out) if len(out) == 3 else out
    if len(out) != 3 or any(tuple(o.shape) != w for o, w in zip(out, want)):
        raise MlsysOptError(
            f"stream: chunk_fn must return (F, G, aux) of shapes {want} for a chunk of {lanes} "
            f"configurations; got {[tuple(getattr(o, 'shape', ())) for o in out]}")
    capacity = int(front_capacity)
    if capacity > BLOCK:
        capacity = -(-capacity // BLOCK) * BLOCK
    return EngineConfig(radices, int(n_obj), int(n_constr), int(n_aux), chunk, lanes, capacity, int(top_k),
                _check_hist(histograms, n_obj), tuple(str(o.dtype) for o in out), columns, int(n_hard))



@functools.lru_cache(maxsize=8)
def _traced(chunk_fn: Callable, lanes: int, n_axes: int) -> tuple[Callable, tuple]:
    """chunk_fn traced once for int32[lanes, n_axes] digits: (a replay of its jaxpr, its output shapes).

    The step's trace replays the jaxpr (primitives re-bound, the scenario's Python not run again)
    instead of tracing the scenario a second time after the shape check: the same program, about
    a tenth of a second less start-up for the capstone.  Cached per chunk_fn, like build_step.
    """
    closed, out = jax.make_jaxpr(lambda d: tuple(chunk_fn(d)), return_shape=True)(
        jax.ShapeDtypeStruct((lanes, n_axes), jnp.int32))

    run = jaxpr_as_fun(closed)
    tree = jax.tree_util.tree_structure(out)

    def replay(digits):
        return jax.tree_util.tree_unflatten(tree, run(digits))
    return replay, out


def _stacked_shape(seq, out, lanes: int) -> jax.ShapeDtypeStruct:
    """The [n, lanes] array a sequence of n vectors stands for (an empty one: [0, lanes] of F's dtype)."""
    seq = tuple(seq)
    shapes = {tuple(x.shape) for x in seq}
    if len(shapes) > 1:
        return jax.ShapeDtypeStruct((len(seq), -1), jnp.float32)        # refused by the caller's shape check
    dtype = seq[0].dtype if seq else next((x.dtype for o in out for x in (o if not hasattr(o, "shape") else [o])),
                                          jnp.float32)
    return jax.ShapeDtypeStruct((len(seq),) + (shapes.pop() if shapes else (lanes,)), dtype)


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
