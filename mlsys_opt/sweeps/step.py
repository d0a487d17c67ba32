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
   with ``pareto.merge_fronts``);
5. :func:`update_near_miss`: while no lane so far is feasible, the least-violating
   lane (:func:`total_violation`) and per soft constraint (a limit) the lane closest to
   meeting it (skipped by a ``lax.cond`` from the first feasible lane on: a feasible sweep
   pays one predicate).  argmins are written as two plain min reductions (value, then
   the first lane holding it): XLA's CPU code for jnp.argmin's (value, index) reduction
   is a scalar loop, 4x slower.  Each device folds its own lanes into its own entry of
   the near miss, with no collective (``state.merge_near_miss`` merges them on the host).

Layout: every stage takes the chunk's evaluations as COLUMNS: F, G and aux are
sequences of [L] vectors, one per objective / constraint / aux column (a tuple
of vectors, or the rows of an [n, L] array), and so are the digits (one per axis).  A
scenario's outputs are separate vectors, so nothing is stacked or transposed
per chunk (stacking 18 outputs into a row-major [L, 18] array cost about a
fifth of the training sweep's time on the CPU); only the survivors' and the
best lanes' values are gathered into rows, for the front and the best lists.

Cross-device operations are passed in (``gather``, ``pmax``), so every stage
runs unsharded in a test with the identity; :func:`build_step` wires them to
``lax.all_gather``/``lax.pmax`` over the lane axis inside ``shard_map``.  The near miss
has none: every collective of the step lowers with channel_id 1, and conditional
all-gathers of its own, run by XLA's CPU thunk executor beside the best lists' and the
front's, met them at one rendezvous key ("Unexpected number of participants: all gather
... op_id=1": aborts and hangs).
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

from ..scenarios.parts import materialized
from ..space import indexing
from . import pareto
from .state import BestLists, EngineConfig, NearMissState, Payload, ReducerState

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


def rows_at(X, idx, dtype=None):
    """The values of the column sequence X [n] x [L] at lanes idx [...]: an array [..., n].

    An empty X gives [..., 0] of `dtype` (default: X's own dtype when X is an array)."""
    if len(X):
        return jnp.stack([x[idx] for x in X], axis=-1)
    return jnp.zeros(jnp.shape(idx) + (0,), dtype if dtype is not None else X.dtype)


def most_violated(G):
    """(worst value, index of the most violated constraint — the first on ties) per lane, from the
    constraint vectors G (n_constr >= 1 vectors [L]), one vector at a time: elementwise over lanes."""
    worst, reason = G[0], jnp.zeros(jnp.shape(G[0]), jnp.int32)
    for j in range(1, len(G)):
        more = G[j] > worst
        worst, reason = jnp.where(more, G[j], worst), jnp.where(more, j, reason)
    return worst, reason


def all_finite(F, G, like):
    """bool like `like`: True where every objective in F and constraint in G (vectors [L]) is finite."""
    finite = jnp.ones_like(like, bool)
    for x in (*F, *G):
        finite = finite & jnp.isfinite(x)
    return finite


def feasibility(F, G, in_range, *, scatter: bool = True):
    """Feasible lanes and why the others are not.

    Args:
      F: n_obj vectors float[L]; G: n_constr vectors float[L] (<= 0 feasible) (sequences, or the rows of
        [n, L] arrays); in_range: bool[L], lanes inside the space;
      scatter: count the reasons with one scatter-add of reason codes (the CPU: ~3x faster than
        column sums, which XLA's fusion recomputes per column) or, False, with one-hot column sums
        (accelerators: a scatter into n_constr bins would serialise on its atomics).

    Returns:
      ``(feas bool[L], reasons int32[n_constr + 1])``: a lane is feasible when its
      F and G are finite and every G <= 0.  ``reasons[j]`` counts the in-range
      lanes with finite F and G whose most violated constraint (argmax of G,
      the first on ties) is j; ``reasons[-1]`` (``non_finite``) counts the
      in-range lanes with a NaN or infinite objective or constraint.
      In range = feasible + sum(reasons).
    """
    finite = all_finite(F, G, in_range)
    ok = in_range & finite
    n_constr = len(G)
    if not n_constr:
        return ok, jnp.sum(in_range & ~finite, dtype=jnp.int32)[None]
    worst, reason = most_violated(G)
    feas = ok & (worst <= 0)
    bad = ok & (worst > 0)
    if scatter:
        # codes: 0..n_constr-1 the binding constraint, n_constr non-finite, n_constr + 1 not counted
        code = jnp.where(bad, reason, jnp.where(in_range & ~finite, n_constr, n_constr + 1))
        return feas, jnp.zeros((n_constr + 2,), jnp.int32).at[code].add(1)[:-1]
    non_finite = jnp.sum(in_range & ~finite, dtype=jnp.int32)[None]
    hit = bad[:, None] & (reason[:, None] == jnp.arange(n_constr, dtype=reason.dtype)[None, :])
    return feas, jnp.concatenate([jnp.sum(hit, axis=0, dtype=jnp.int32), non_finite])


def histogram_counts(F, feas, hist: tuple) -> tuple:
    """Per histogram ``(objective, edges)`` of ``hist``: int32[len(edges) + 1] counts of feasible F (columns)."""
    out = []
    for j, edges in hist:
        e = jnp.asarray(edges, F[j].dtype)
        b = jnp.searchsorted(e, F[j], side="right", method="compare_all")
        out.append(jnp.zeros((len(edges) + 1,), jnp.int32).at[b].add(feas.astype(jnp.int32)))
    return tuple(out)


def prefilter(F, lane, surv, AF, Ap, Av):
    """``surv`` less the lanes of F (n_obj column vectors [L]) beaten by any valid anchor (rows of
    AF [K, n_obj] at positions Ap, valid Av).

    Unrolled over the anchors and objectives: one fused pass over the chunk
    (the same relation as ``pareto.beaten_by_anchors``, without its [L, K, n_obj] temporary).
    """
    beaten = jnp.zeros(surv.shape, bool)
    cols = [F[j] for j in range(len(F))]
    for a in range(AF.shape[0]):
        le, lt = Av[a], Ap[a] < lane
        for j, c in enumerate(cols):
            le = le & (AF[a, j] <= c)
            lt = lt | (AF[a, j] < c)
        beaten = beaten | (le & lt)
    return surv & ~beaten


def refine(F, lane, surv, S: int, W):
    """Many survivors: ``surv`` less the lanes of F (columns) beaten by anchors from the chunk's own front.

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
    SF, sp = rows_at(F, sl), lane[sl]
    nd = ~jnp.any(pareto.beats(SF, sp, SF, sp), axis=0)
    lo, inv = pareto.normalizer(SF, nd)
    anchors = pareto.weighted_minimizers(SF, nd, lo, inv, W, sp)
    # pareto's vectorised test on the chunk's rows (a rare path: the copy into rows is cheap here,
    # and `prefilter`'s unrolled form of the same test cost a second of XLA compile time)
    return surv & ~pareto.beaten_by_anchors(jnp.stack(list(F), axis=-1), lane, *anchors)


def merge_survivors(front: pareto.Front, F, lane, surv, payload: Payload, n_iter, M: int, *,
                    gather: Callable = _identity, block: int = BLOCK):
    """Merge the survivors into the front, M per device per loop step, in lane order.

    Args:
      front: the running front; F: n_obj column vectors [L]; lane int32[L] (positions), surv bool[L];
      payload: :class:`Payload` of G, aux and digits (column sequences); n_iter: int32[], loop steps (the largest
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
        rows = (rows_at(F, sel), lane[sel], sv, Payload(rows_at(payload.G, sel, front.payload.G.dtype),
                                                       rows_at(payload.aux, sel, front.payload.aux.dtype),
                                                       rows_at(payload.digits, sel, jnp.int32)))
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
    so ties keep the earlier configuration.  F, G, aux, digits: column sequences (vectors [L]),
    feas bool[L].  gather_k: all-gather along axis 1;
    pmax: max over the devices (both identity on one device).
    """
    n_obj, k = best.valid.shape
    diag = jnp.arange(n_obj)
    thr = jnp.where(best.valid[:, k - 1], best.F[diag, k - 1, diag], jnp.inf)      # [n_obj]
    better = jnp.zeros_like(feas)
    for j in range(n_obj):
        better = better | (feas & (F[j] < thr[j]))
    any_better = pmax(jnp.any(better).astype(jnp.int32)) > 0
    dG, da = best.G.dtype, best.aux.dtype

    def take(_):
        _, idx = lax.top_k(-jnp.where(feas[None, :], jnp.stack(list(F)), jnp.inf), k_loc)   # [n_obj, k_loc]
        return BestLists(rows_at(F, idx), rows_at(G, idx, dG), rows_at(aux, idx, da), rows_at(digits, idx, jnp.int32),
                         feas[idx])

    def none(_):
        z = lambda *shape, dt: jnp.zeros((n_obj, k_loc) + shape, dt)
        return BestLists(z(n_obj, dt=F[0].dtype), z(len(G), dt=dG), z(len(aux), dt=da),
                         z(len(digits), dt=jnp.int32), z(dt=bool))

    cand = jax.tree_util.tree_map(gather_k, lax.cond(any_better, take, none, None))
    both = BestLists(*(jnp.concatenate([o, c], axis=1) for o, c in zip(best, cand)))   # [n_obj, m, ...]
    val = both.F[diag, :, diag]                                                        # [n_obj, m]
    order = _first_k_by_valid_value_position(val, both.valid, k)
    pick = lambda x: jnp.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), axis=1)
    return BestLists(*(pick(x) for x in both))


def total_violation(G):
    """Per lane, the total normalised violation sum_j max(G_j, 0) of the constraint vectors G (n_constr >= 1
    vectors [L], <= 0 met): 0 for a lane that meets every constraint.  pymoo's constraint violation (CV),
    and the MOEA/D penalty's sum (``search.pymoo_problem``); the G columns are dimensionless ratios."""
    v = jnp.maximum(G[0], 0)
    for g in G[1:]:
        v = v + jnp.maximum(g, 0)
    return v


def near_miss_computed(cfg: EngineConfig) -> bool:
    """Whether the step tracks the near miss: constraints to miss (without any, every finite lane is feasible)."""
    return bool(cfg.n_constr)


def state_shardings(rep: NamedSharding) -> ReducerState:
    """The step's state shardings (a pytree prefix of :class:`ReducerState`), from the replicated one: the
    near miss's leading device axis sharded over the mesh (one entry per device), the rest replicated."""
    return ReducerState(rep, rep, rep, NamedSharding(rep.mesh, P(AXIS)))


def _near_keys(G, ok, n_hard: int, dtype):
    """(v [L], keys: n_soft vectors [L]): each candidate's total violation (clamped below +inf, which marks
    the others), and per soft constraint its value where the lane meets every hard constraint (else +inf)."""
    v = jnp.where(ok, jnp.minimum(total_violation(G).astype(dtype), jnp.finfo(dtype).max), jnp.inf)
    hard_ok = ok
    for h in range(n_hard):
        hard_ok = hard_ok & (G[h] <= 0)
    return v, [jnp.where(hard_ok, G[j].astype(dtype), jnp.inf) for j in range(n_hard, len(G))]


def near_miss_minima(G, ok, n_hard: int, dtype):
    """The chunk's smallest total violation [] and per soft constraint its smallest value [n_soft] (+inf: no
    candidate), as plain min reductions (one pass over G; see :func:`update_near_miss`)."""
    v, keys = _near_keys(G, ok, n_hard, dtype)
    return jnp.min(v), jnp.stack([jnp.min(k) for k in keys] or [jnp.zeros((), dtype)])[:len(keys)]


def update_near_miss(near: NearMissState, minima, F, G, aux, digits_of: Callable, ok, n_hard: int) -> NearMissState:
    """Fold the chunk's candidates (one device's lanes) into that device's near miss (``state.NearMissState``).

    `minima` (:func:`near_miss_minima`) are the chunk's smallest total violation and, per soft constraint
    (the columns after the first `n_hard`), its smallest value among the candidates meeting every hard
    constraint.  Only when one of them beats the carried value (a ``lax.cond``: rare after the first
    chunks) are the lanes located (the first on ties) and their rows read; they replace the carried ones
    only when strictly smaller, so ties keep the lower configuration index.  No collective: the
    predicate is this device's own (``state.merge_near_miss`` merges the devices' on the host).

    Args:
      near: the carried state (one device's: no device axis); minima: ``(vmin [], kmin [n_soft])``
        (+inf: nothing to fold); F, G, aux: column sequences (vectors [L]), n_constr >= 1;
      digits_of: lanes int32[k] -> their digits int32[k, n_axes] (the step decodes just those: the
        chunk's digit columns as an operand of the ``lax.cond`` would be materialised every chunk);
      ok: bool[L], the candidates (in range, F and G finite); n_hard: static int in [0, n_constr].
    """
    m, dF, dG, da = len(G), near.F.dtype, near.G.dtype, near.aux.dtype
    vmin, kmin = minima
    soft = jnp.arange(m - n_hard)
    take = vmin < near.violation                                          # +inf while none carried
    better = jnp.isfinite(kmin) & (~near.best_valid | (kmin < near.best_G[soft, n_hard + soft]))   # [n_soft]

    def fold(near):
        v, keys = _near_keys(G, ok, n_hard, dG)
        lane = jnp.arange(ok.shape[0], dtype=jnp.int32)
        i = jnp.min(jnp.where(v == vmin, lane, lane.shape[0] - 1))[None]    # [1], the first lane on ties
        b = jnp.stack([jnp.min(jnp.where(k == km, lane, lane.shape[0] - 1)) for k, km in zip(keys, kmin)]
                      or [jnp.zeros((), jnp.int32)])[:m - n_hard]          # [n_soft]
        pick = lambda new, old: jnp.where(take, new, old)
        pick_j = lambda new, old: jnp.where(better.reshape(better.shape + (1,) * (old.ndim - 1)), new, old)
        return NearMissState(pick(vmin, near.violation), pick(rows_at(F, i, dF)[0], near.F),
                             pick(rows_at(G, i, dG)[0], near.G), pick(rows_at(aux, i, da)[0], near.aux),
                             pick(digits_of(i)[0], near.digits), near.valid | take,
                             pick_j(rows_at(F, b, dF), near.best_F), pick_j(rows_at(G, b, dG), near.best_G),
                             pick_j(rows_at(aux, b, da), near.best_aux), pick_j(digits_of(b), near.best_digits),
                             near.best_valid | better)

    return lax.cond(take | jnp.any(better), fold, lambda nm: nm, near)


def _first_k_by_valid_value_position(val, valid, k: int):
    """Per row of val [r, m]: the positions of its k first entries in (valid first, value, position) order.

    The merged lists are short (m = k + devices·k_loc), so each entry's rank is counted from m²
    pairwise comparisons and scattered into place: the lexicographic sort it replaces cost about a
    second of XLA compile time.  Invalid entries all tie on value (theirs may be NaN) and keep
    their positions' order, so the ranks are a permutation.
    """
    m = val.shape[1]
    v = jnp.where(valid, val, 0.0)
    inv = ~valid
    pos = jnp.arange(m, dtype=jnp.int32)
    vi, vj = v[:, :, None], v[:, None, :]                       # [r, m(i), m(j)]
    ii, ij = inv[:, :, None], inv[:, None, :]
    before = (ij < ii) | ((ij == ii) & ((vj < vi) | ((vj == vi) & (pos[None, None, :] < pos[None, :, None]))))
    rank = jnp.sum(before, axis=2, dtype=jnp.int32)              # [r, m], a permutation of 0..m-1
    rows = jnp.arange(val.shape[0])[:, None]
    order = jnp.zeros(val.shape, jnp.int32).at[rows, rank].set(jnp.broadcast_to(pos[None, :], val.shape))
    return order[:, :k]


@functools.lru_cache(maxsize=16)
def build_step(chunk_fn, cfg: EngineConfig, devices: tuple):
    """The jitted, lane-sharded step ``(state, start_digits, n_valid) -> (state, outputs)`` and its replicated
    sharding (the state's: :func:`state_shardings` of it).

    outputs = (feasible count, histogram counts, overflow flag, front size, survivors, reasons),
    each summed or maxed over the devices.
    """
    L, k_loc = cfg.lanes, min(cfg.top_k, cfg.lanes)
    cpu = devices[0].platform == "cpu"
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
        # the digits as one vector per axis: the evaluator's digits[:, k] folds into them, and only
        # survivors' and best lanes' digits are gathered into rows (cheap to recompute, not kept)
        digits = tuple(indexing.decode_chunk_columns(start_digits, lane, cfg.radices))
        # materialise the evaluation once, so that XLA does not fuse (and duplicate) the
        # evaluator into each reduction that reads it (n_valid >= 0: a runtime value XLA cannot fold)
        F, G, aux = materialized(tuple(chunk_fn(jnp.stack(digits, axis=-1))), n_valid)
        if not cfg.columns:                  # a row-layout evaluator ([L, n]): the stages read columns
            F, G, aux = F.T, G.T, aux.T
        F, G, aux = (tuple(X) if len(X) else X for X in (F, G, aux))
        feas, reasons = feasibility(F, G, lane < n_valid, scatter=cpu)
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
        near = state.near
        if near_miss_computed(cfg):             # (no constraints: every finite lane is feasible, nothing to come close to)
            def digits_of(idx):
                return jnp.stack(indexing.decode_chunk_columns(start_digits, lane[idx], cfg.radices), axis=-1)

            ok = (lane < n_valid) & all_finite(F, G, lane)   # (the same expression as feasibility's: shared)
            dG = state.near.G.dtype
            # the minima pass is skipped once anything is feasible; the cond's operands are G and a mask
            # only (a cond over the whole evaluation cost more than the pass itself)
            minima = lax.cond((state.front.n > 0) | (count > 0),
                              lambda: (jnp.array(jnp.inf, dG), jnp.full((cfg.n_constr - cfg.n_hard,), jnp.inf, dG)),
                              lambda: near_miss_minima(G, ok, cfg.n_hard, dG))
            # this device's entry (the state's near miss is sharded over the devices: [1, ...] here)
            mine = jax.tree_util.tree_map(lambda x: x[0], near)
            mine = update_near_miss(mine, minima, F, G, aux, digits_of, ok, cfg.n_hard)
            near = jax.tree_util.tree_map(lambda x: x[None], mine)
        outs = (count, hists, overflow, front.n, psum(ns), psum(reasons))
        return ReducerState(front, best, overflow, near), outs

    rep = NamedSharding(mesh, P())      # fixed shardings: the first call does not compile twice
    st = state_shardings(rep)           # the near miss: one entry per device
    spec = jax.tree_util.tree_map(lambda sh: sh.spec, st)
    sharded = jax.shard_map(local, mesh=mesh, in_specs=(spec, P(), P()), out_specs=(spec, P()),
                            check_vma=False)
    return jax.jit(sharded, in_shardings=(st, rep, rep), out_shardings=(st, rep)), rep


__all__ = ["AXIS", "build_step", "feasibility", "histogram_counts", "merge_survivors", "most_violated", "prefilter",
           "near_miss_computed", "near_miss_minima", "refine", "rows_at", "state_shardings", "total_violation",
           "update_best", "update_near_miss"]
