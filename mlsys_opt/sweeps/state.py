"""The state of a streaming sweep (`mlsys_opt.sweeps.engine`), shared with its checkpoints.

Three layers, each a NamedTuple:

- :class:`EngineConfig`: the static settings one jitted step is compiled for
  (hashable, a jit/lru_cache key);
- :class:`ReducerState`: what the step carries from chunk to chunk ON THE
  DEVICE: the exact Pareto front so far, the per-objective best-k lists, the
  front-overflow flag (replicated over the devices) and, while nothing is feasible, the near miss
  (:class:`NearMissState`: one per device, of its own lanes; :func:`merge_near_miss` merges them
  on the host);
- :class:`HostCounters`: what the host sums in exact Python ints from the
  few scalars each step returns (feasible count, histograms, reasons).

:class:`SweepLoop` bundles the last two with the step outputs not yet read
back, so the host loop rebinds ONE name per chunk (a KeyboardInterrupt never
sees a half-updated state).  `mlsys_opt.sweeps.checkpoint` writes and restores them.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import MlsysOptError
from ..space import indexing
from . import pareto
from .near_miss import smallest


class EngineConfig(NamedTuple):
    """Static settings of one sweep (the jitted step is compiled per value)."""
    radices: tuple        # axis sizes
    n_obj: int
    n_constr: int
    n_aux: int
    chunk: int            # lanes per step (all devices)
    lanes: int            # lanes per device
    capacity: int         # front slots (front_capacity rounded up to whole merge blocks)
    top_k: int
    hist: tuple           # ((objective, edges tuple), ...)
    dtypes: tuple         # (F, G, aux) dtype names
    columns: bool = False  # chunk_fn returns F, G, aux as [n, chunk] (one row per column) instead of [chunk, n]
    n_hard: int = 0       # the first n_hard G columns are hard (structural), the rest soft (NearMissState)


class Payload(NamedTuple):
    """What a front slot carries besides its objectives (rows = slots)."""
    G: jax.Array        # [capacity, n_constr]
    aux: jax.Array      # [capacity, n_aux]
    digits: jax.Array   # int32[capacity, n_axes]


class BestLists(NamedTuple):
    """Per objective j, the top_k feasible rows with the smallest F[:, j], best first."""
    F: jax.Array        # [n_obj, k, n_obj]
    G: jax.Array        # [n_obj, k, n_constr]
    aux: jax.Array      # [n_obj, k, n_aux]
    digits: jax.Array   # int32[n_obj, k, n_axes]
    valid: jax.Array    # bool[n_obj, k]


class NearMissState(NamedTuple):
    """How close the sweep comes while no lane is feasible (``step.update_near_miss``; frozen once one is).

    In the reducer state every field has a leading [D] axis, one entry per device (sharded over the
    mesh like the lanes): each device folds its own lanes, with no collective (gathers in the step's
    conditionals raced the best lists' and the front's: every collective lowers with channel_id 1), and
    :func:`merge_near_miss` merges the D entries on the host into one (the shapes below, what the
    result and a checkpoint hold).

    Candidates: the in-range lanes whose F and G are all finite.  Total violation
    V = sum_j max(G_j, 0) (``step.total_violation``; dimensionless: every G column is normalised, a
    structural margin as a ratio - 1, a limit as (y - L)/|L|).  The columns after the first
    ``EngineConfig.n_hard`` are the soft ones (a space's limits): for each, the closest lane is the one
    with its smallest value among the candidates that meet every hard constraint.  Ties keep the lower
    configuration index.  n_soft = n_constr - n_hard.
    """
    violation: jax.Array     # [] V of the least-violating lane (G's dtype)
    F: jax.Array             # [n_obj]       that lane's objectives (minimize sense)
    G: jax.Array             # [n_constr]    its constraints
    aux: jax.Array           # [n_aux]
    digits: jax.Array        # int32[n_axes]
    valid: jax.Array         # bool[]: a candidate has been seen
    best_F: jax.Array        # [n_soft, n_obj]: row j = the closest lane for soft constraint n_hard + j
    best_G: jax.Array        # [n_soft, n_constr]
    best_aux: jax.Array      # [n_soft, n_aux]
    best_digits: jax.Array   # int32[n_soft, n_axes]
    best_valid: jax.Array    # bool[n_soft]: a candidate meeting every hard constraint has been seen


class ReducerState(NamedTuple):
    """Device-resident reduction of every chunk so far."""
    front: pareto.Front   # payload: a Payload (G, aux, digits)
    best: BestLists
    overflow: jax.Array         # bool[]: the front outgrew its capacity
    near: NearMissState         # meaningful only while the front is empty (nothing feasible so far)


class HostCounters(NamedTuple):
    """Exact host-side totals over the chunks read back so far."""
    next_index: int          # first configuration not yet dispatched
    n_feasible: int          # over folded (read-back) chunks
    hist: tuple              # int64 arrays, folded chunks
    n_chunks: int
    reasons: np.ndarray      # int64[n_constr + 1]: infeasible configurations by most violated
                             # constraint, then non_finite (NaN or infinite F or G)


class SweepLoop(NamedTuple):     # rebound in one statement per chunk (interrupt-safe)
    state: ReducerState
    pending: tuple           # device outputs not yet read back
    acc: HostCounters


def to_host(x) -> np.ndarray:
    """A replicated device array as numpy (works when not every shard is addressable)."""
    if hasattr(x, "addressable_data"):
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def initial_state(cfg: EngineConfig) -> ReducerState:
    """Empty front and best lists in the evaluator's dtypes, as host (numpy) arrays: the engine puts
    them on the devices in one transfer (eager jnp.zeros would compile an executable per array)."""
    dF, dG, da = (jnp.dtype(d) for d in cfg.dtypes)
    n_obj, k, n_axes = cfg.n_obj, cfg.top_k, len(cfg.radices)
    S = jax.ShapeDtypeStruct
    front = pareto.empty_front(cfg.capacity, n_obj, Payload(S((cfg.n_constr,), dG), S((cfg.n_aux,), da),
                                                            S((n_axes,), jnp.int32)), dF, xp=np)
    best = BestLists(np.zeros((n_obj, k, n_obj), dF), np.zeros((n_obj, k, cfg.n_constr), dG),
                     np.zeros((n_obj, k, cfg.n_aux), da), np.zeros((n_obj, k, n_axes), np.int32),
                     np.zeros((n_obj, k), bool))
    return ReducerState(front, best, np.zeros((), bool), initial_near_miss(cfg))


def n_devices(cfg: EngineConfig) -> int:
    """The devices the step shards its lanes over (chunk = devices x lanes)."""
    return cfg.chunk // cfg.lanes


def initial_near_miss(cfg: EngineConfig, n_dev: int | None = None) -> NearMissState:
    """No candidate yet, on each of `n_dev` devices (default :func:`n_devices`; 0: one merged state, without
    the device axis): host arrays, as :func:`initial_state`."""
    dF, dG, da = (jnp.dtype(d) for d in cfg.dtypes)
    n_obj, m, n_axes, s = cfg.n_obj, cfg.n_constr, len(cfg.radices), cfg.n_constr - cfg.n_hard
    D = (n_devices(cfg) if n_dev is None else n_dev,) if n_dev != 0 else ()
    z = lambda *shape, dt: np.zeros(D + shape, dt)
    return NearMissState(np.full(D, np.inf, dG), z(n_obj, dt=dF), z(m, dt=dG), z(cfg.n_aux, dt=da),
                         z(n_axes, dt=np.int32), z(dt=bool), z(s, n_obj, dt=dF), z(s, m, dt=dG), z(s, cfg.n_aux, dt=da),
                         z(s, n_axes, dt=np.int32), z(s, dt=bool))


def merge_near_miss(near: NearMissState, radices) -> NearMissState:
    """The D devices' near misses (fields [D, ...], device or host arrays) as one (host arrays, no device axis).

    The rule of one device (``near_miss.smallest``): the least-violating entry by (violation, configuration
    index), and per soft constraint the closest by (its G value, index), among the valid entries; the
    index comes from the stored digits and `radices`.  Each device's entry is the minimum under that rule
    of its own lanes, so the result is the whole sweep's, bit for bit the one of a 1-device sweep.
    """
    nm = NearMissState(*(np.asarray(x) for x in near))     # every shard (the step's near miss is per device)
    index = lambda digits: np.asarray(indexing.indices_of(digits, radices), np.int64)
    n_soft, n_hard = nm.best_valid.shape[1], nm.G.shape[1] - nm.best_valid.shape[1]
    d = max(smallest(nm.violation, index(nm.digits), nm.valid), 0)     # (none valid: any entry, valid False)
    least = [x[d] for x in nm[:6]]
    picks = [max(smallest(nm.best_G[:, j, n_hard + j], index(nm.best_digits[:, j]), nm.best_valid[:, j]), 0)
             for j in range(n_soft)]
    j = np.arange(n_soft)
    return NearMissState(*least, *(x[picks, j] for x in nm[6:]))


def initial_counters(cfg: EngineConfig) -> HostCounters:
    """Nothing dispatched, nothing counted."""
    return HostCounters(0, 0, tuple(np.zeros(len(e) + 1, np.int64) for _, e in cfg.hist), 0,
                        np.zeros(cfg.n_constr + 1, np.int64))


def fold(acc: HostCounters, outs, capacity: int) -> HostCounters:
    """Add one step's read-back outputs to the host totals; raise if the front overflowed."""
    count, hists, overflow, n_front, _, reasons = outs
    if bool(to_host(overflow)):
        raise MlsysOptError(
            f"the Pareto front has more than front_capacity={capacity} non-dominated configurations; "
            f"rerun with a larger front_capacity (e.g. {4 * capacity}) or fewer objectives/axes")
    return acc._replace(n_feasible=acc.n_feasible + int(to_host(count)),
                        hist=tuple(h + to_host(c).astype(np.int64) for h, c in zip(acc.hist, hists)),
                        reasons=acc.reasons + to_host(reasons).astype(np.int64))


def drain(loop: SweepLoop, cfg: EngineConfig) -> SweepLoop:
    """Fold every pending step output (waits for the device)."""
    a = loop.acc
    for outs in loop.pending:
        a = fold(a, outs, cfg.capacity)
    return SweepLoop(loop.state, (), a)


__all__ = ["BestLists", "EngineConfig", "HostCounters", "NearMissState", "Payload", "ReducerState", "SweepLoop",
           "drain", "fold", "initial_counters", "initial_near_miss", "initial_state", "merge_near_miss", "n_devices",
           "to_host"]
