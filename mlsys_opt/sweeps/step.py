"""The jitted step of the streaming sweep (`sweeps.engine`), as module-level pure functions.

One step evaluates a chunk of configurations and folds it into the reducer
state; each stage below is a pure function of arrays plus static ints, tested
on its own (tests/test_engine_step.py) like ``pareto.py``'s functions:

1. :func:`feasibility`: feasible mask and the one-hot reason counts (the most
   violated constraint of each infeasible lane; a last ``non_finite`` column
   for lanes whose objectives or constraints are NaN or infinite);
2. :func:`histogram_counts`: per-objective bin counts of the feasible lanes;
3. :func:`update_best`: the per-objective best-k lists;
4. the exact front: :func:`prefilter` (drop lanes beaten by front anchors),
   :func:`refine` (anchors from the chunk's own front when many lanes
   survive), :func:`merge_survivors` (compacted survivors merged M at a time
   with ``pareto.merge_fronts``).

Cross-device operations are passed in (``gather``, ``pmax``), so every stage
runs unsharded in a test with the identity; :func:`build_step` wires them to
``lax.all_gather``/``lax.pmax`` over the lane axis inside ``shard_map``.
The module docstring of ``sweeps.engine`` explains why the front is exact.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..space import indexing
from . import pareto
from .state import BestLists, EngineConfig, Payload, ReducerState

AXIS = "lanes"
BLOCK = 256                  # front slots compared per merge loop step
FRONT_ANCHORS = 16           # K_f
CHUNK_ANCHORS = 32           # K_c (only for chunks with many survivors)
# per platform: (M survivors merged per device per loop step, S survivors sampled for chunk anchors);
# accelerators pay a host round trip per loop step, so they take bigger bites
TUNING = {"cpu": (1024, 1024)}
TUNING_ACCEL = (2048, 4096)


def _identity(x):
    return x


def feasibility(F, G, in_range):
    """Feasible lanes and why the others are not.

    Args:
      F: float[L, n_obj]; G: float[L, n_constr] (<= 0 feasible); in_range: bool[L], lanes inside the space.

    Returns:
      ``(feas bool[L], reasons int32[n_constr + 1])``: a lane is feasible when its
      F and G are finite and every G <= 0.  ``reasons[j]`` counts the in-range
      lanes with finite F and G whose most violated constraint (argmax of G) is
      j; ``reasons[-1]`` (``non_finite``) counts the in-range lanes with a NaN or
      infinite objective or constraint.  In range = feasible + sum(reasons).
    """
    finite = jnp.all(jnp.isfinite(F), axis=1) & jnp.all(jnp.isfinite(G), axis=1)
    ok = in_range & finite
    feas = ok & jnp.all(G <= 0, axis=1)
    non_finite = jnp.sum(in_range & ~finite, dtype=jnp.int32)[None]
    n_constr = G.shape[1]
    if not n_constr:
        return feas, non_finite
    bad = ok & jnp.any(G > 0, axis=1)
    reason = jnp.argmax(G, axis=1)
    # one-hot column sums, not a scatter-add: n_constr bins would serialise the
    # scatter's atomics on a GPU (and it is a scalar loop on the CPU)
    hit = bad[:, None] & (reason[:, None] == jnp.arange(n_constr, dtype=reason.dtype)[None, :])
    return feas, jnp.concatenate([jnp.sum(hit, axis=0, dtype=jnp.int32), non_finite])


def histogram_counts(F, feas, hist: tuple) -> tuple:
    """Per histogram ``(objective, edges)`` of ``hist``: int32[len(edges) + 1] counts of feasible F."""
    out = []
    for j, edges in hist:
        e = jnp.asarray(edges, F.dtype)
        b = jnp.searchsorted(e, F[:, j], side="right", method="compare_all")
        out.append(jnp.zeros((len(edges) + 1,), jnp.int32).at[b].add(feas.astype(jnp.int32)))
    return tuple(out)


def prefilter(F, lane, surv, AF, Ap, Av):
    """``surv`` less the lanes beaten by any valid anchor (rows of AF at positions Ap, valid Av).

    Unrolled over the anchors and objectives: one fused pass over the chunk
    (the same relation as ``pareto.beaten_by_anchors``, without its [L, K, n_obj] temporary).
    """
    beaten = jnp.zeros(surv.shape, bool)
    cols = [F[:, j] for j in range(F.shape[1])]
    for a in range(AF.shape[0]):
        le, lt = Av[a], Ap[a] < lane
        for j, c in enumerate(cols):
            le = le & (AF[a, j] <= c)
            lt = lt | (AF[a, j] < c)
        beaten = beaten | (le & lt)
    return surv & ~beaten


def refine(F, lane, surv, S: int, W):
    """Many survivors: ``surv`` less the lanes beaten by anchors from the chunk's own front.

    S survivors spread evenly over the survivor list are filtered exactly among
    themselves (S² comparisons); the sample's non-dominated points that
    minimise the weighted sums W [K, n_obj] then prefilter the whole chunk.
    Anchors are data points, so no lane of the final front is dropped.
    """
    L = surv.shape[0]
    ns = jnp.sum(surv, dtype=jnp.int32)
    dest = jnp.where(surv, pareto.prefix_count(surv) - 1, L)
    buf = jnp.zeros((L,), jnp.int32).at[dest].set(jnp.arange(L, dtype=jnp.int32), mode="drop")
    pick = jnp.floor(jnp.arange(S, dtype=jnp.float32) * (ns.astype(jnp.float32) / S)).astype(jnp.int32)
    sl = buf[jnp.clip(pick, 0, L - 1)]
    SF, sp = F[sl], lane[sl]
    nd = ~jnp.any(pareto.beats(SF, sp, SF, sp), axis=0)
    lo, inv = pareto.normalizer(SF, nd)
    anchors = pareto.weighted_minimizers(SF, nd, lo, inv, W, sp)
    return surv & ~pareto.beaten_by_anchors(F, lane, *anchors)


def merge_survivors(front: pareto.Front, F, lane, surv, payload: Payload, n_iter, M: int, *,
                    gather: Callable = _identity, block: int = BLOCK):
    """Merge the survivors into the front, M per device per loop step, in lane order.

    Args:
      front: the running front; F [L, n_obj], lane int32[L] (positions), surv bool[L];
      payload: :class:`Payload` rows [L, ...]; n_iter: int32[], loop steps (the largest
      ceil(survivors / M) over the devices); M: rows per step (static);
      gather: all-gather over the devices (identity on one device).

    Returns:
      ``(front, overflow bool[])``.
    """
    L = surv.shape[0]
    n_pad = -(-L // M) * M
    ns = jnp.sum(surv, dtype=jnp.int32)
    dest = jnp.where(surv, pareto.prefix_count(surv) - 1, n_pad)
    buf = jnp.zeros((n_pad,), jnp.int32).at[dest].set(jnp.arange(L, dtype=jnp.int32), mode="drop")

    def body(carry):
        t, fr, ovf = carry
        sel = lax.dynamic_slice_in_dim(buf, t * M, M)
        sv = t * M + jnp.arange(M, dtype=jnp.int32) < ns
        rows = (F[sel], lane[sel], sv, jax.tree_util.tree_map(lambda x: x[sel], payload))
        cF, cp, cv, pay = jax.tree_util.tree_map(gather, rows)
        fr, o = pareto.merge_fronts(fr, cF, cp, cv, pay, block=block)
        return t + 1, fr, ovf | o

    _, fr, ovf = lax.while_loop(lambda c: c[0] < n_iter, body,
                                (jnp.zeros((), jnp.int32), front, jnp.zeros((), bool)))
    return fr, ovf


def update_best(best: BestLists, F, G, aux, digits, feas, k_loc: int, *,
                gather_k: Callable = _identity, pmax: Callable = _identity) -> BestLists:
    """Merge the chunk's k_loc best feasible lanes per objective into the best-k lists.

    Skipped (no top_k) unless some feasible lane beats a current k-th value.
    The merge is lexicographic on (valid, value, position in the merged list),
    so ties keep the earlier configuration.  gather_k: all-gather along axis 1;
    pmax: max over the devices (both identity on one device).
    """
    n_obj, k = best.valid.shape
    diag = jnp.arange(n_obj)
    thr = jnp.where(best.valid[:, k - 1], best.F[diag, k - 1, diag], jnp.inf)      # [n_obj]
    any_better = pmax(jnp.any(feas[:, None] & (F < thr[None, :])).astype(jnp.int32)) > 0

    def take(_):
        _, idx = lax.top_k(-jnp.where(feas[:, None], F, jnp.inf).T, k_loc)        # [n_obj, k_loc]
        return BestLists(F[idx], G[idx], aux[idx], digits[idx], feas[idx])

    def none(_):
        z = lambda *shape, dt: jnp.zeros((n_obj, k_loc) + shape, dt)
        return BestLists(z(n_obj, dt=F.dtype), z(G.shape[1], dt=G.dtype), z(aux.shape[1], dt=aux.dtype),
                         z(digits.shape[1], dt=digits.dtype), z(dt=bool))

    cand = jax.tree_util.tree_map(gather_k, lax.cond(any_better, take, none, None))
    both = BestLists(*(jnp.concatenate([o, c], axis=1) for o, c in zip(best, cand)))   # [n_obj, m, ...]
    val = both.F[diag, :, diag]                                                        # [n_obj, m]
    order = jax.vmap(lambda v, o: jnp.lexsort((jnp.arange(v.shape[0]), v, ~o))[:k])(val, both.valid)
    pick = lambda x: jnp.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), axis=1)
    return BestLists(*(pick(x) for x in both))


@functools.lru_cache(maxsize=16)
def build_step(chunk_fn, cfg: EngineConfig, devices: tuple):
    """The jitted, lane-sharded step ``(state, start_digits, n_valid) -> (state, outputs)`` and its sharding.

    outputs = (feasible count, histogram counts, overflow flag, front size, survivors, reasons),
    each summed or maxed over the devices.
    """
    L, k_loc = cfg.lanes, min(cfg.top_k, cfg.lanes)
    M, S = TUNING.get(devices[0].platform, TUNING_ACCEL)
    M, S = min(M, L), min(S, L)
    W_front = pareto.positive_weights(cfg.n_obj, FRONT_ANCHORS if cfg.n_obj > 1 else 1)
    W_chunk = pareto.positive_weights(cfg.n_obj, CHUNK_ANCHORS if cfg.n_obj > 1 else 1)
    mesh = Mesh(np.array(devices), (AXIS,))
    gather = functools.partial(lax.all_gather, axis_name=AXIS, tiled=True)
    gather_k = functools.partial(lax.all_gather, axis_name=AXIS, axis=1, tiled=True)
    pmax = functools.partial(lax.pmax, axis_name=AXIS)
    psum = functools.partial(lax.psum, axis_name=AXIS)

    def local(state: ReducerState, start_digits, n_valid):
        lane = lax.axis_index(AXIS).astype(jnp.int32) * L + jnp.arange(L, dtype=jnp.int32)
        digits = indexing.decode_chunk(start_digits, lane, cfg.radices)
        # materialise the evaluation once, so that XLA does not fuse (and
        # duplicate) the evaluator into each reduction that reads it
        F, G, aux, digits = lax.optimization_barrier(tuple(chunk_fn(digits)) + (digits,))
        feas, reasons = feasibility(F, G, lane < n_valid)
        count = psum(jnp.sum(feas, dtype=jnp.int32))
        hists = tuple(psum(h) for h in histogram_counts(F, feas, cfg.hist))
        best = update_best(state.best, F, G, aux, digits, feas, k_loc, gather_k=gather_k, pmax=pmax)

        # front: prefilter by the front's anchors, refine by the chunk's own, then exact merges
        front = state.front._replace(pos=jnp.full_like(state.front.pos, -1))
        lo, inv = pareto.normalizer(front.F, front.member)
        anchors = pareto.weighted_minimizers(front.F, front.member, lo, inv, W_front, front.pos)
        surv = lax.optimization_barrier(prefilter(F, lane, feas, *anchors))
        ns = jnp.sum(surv, dtype=jnp.int32)
        surv = lax.optimization_barrier(
            lax.cond(ns > 2 * M, lambda s_: refine(F, lane, s_, S, W_chunk), lambda s_: s_, surv))
        ns = jnp.sum(surv, dtype=jnp.int32)
        n_iter = pmax((ns + M - 1) // M)
        front, ovf = lax.cond(
            n_iter > 0,
            lambda fr: merge_survivors(fr, F, lane, surv, Payload(G, aux, digits), n_iter, M, gather=gather),
            lambda fr: (fr, jnp.zeros((), bool)), front)
        overflow = state.overflow | ovf
        outs = (count, hists, overflow, front.n, psum(ns), psum(reasons))
        return ReducerState(front, best, overflow), outs

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P()), out_specs=(P(), P()),
                            check_vma=False)
    rep = NamedSharding(mesh, P())      # fixed shardings: the first call does not compile twice
    return jax.jit(sharded, in_shardings=(rep, rep, rep), out_shardings=(rep, rep)), rep


__all__ = ["AXIS", "build_step", "feasibility", "histogram_counts", "merge_survivors", "prefilter", "refine",
           "update_best"]
