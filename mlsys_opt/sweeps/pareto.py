"""Non-dominated filtering, bounded front merging and hypervolume (minimize sense).

Domination (weak Pareto, minimization): ``a`` dominates ``b`` iff
``all(a <= b) and any(a < b)``.  Identical objective vectors do not dominate
each other; to keep fronts free of duplicates every point carries a POSITION
(an int key; in a sweep, its order in the space) and of several identical
vectors only the one with the LOWEST position is kept.  Both rules together are
the relation "a beats b"::

    beats(a, b) = all(a <= b) and (any(a < b) or pos_a < pos_b)

``beats`` is a strict partial order (irreflexive, transitive), so "the points
no point beats" is well defined, and it is the same whatever order the points
are streamed in and whatever subset of the data is used to eliminate points
early: a point beaten by anything is beaten by some unbeaten point.  This is
what makes the streaming sweep exact (see sweep_engine.py).  pymoo's
NonDominatedSorting keeps every copy of a duplicated vector; our front is its
first front with duplicates reduced to the lowest-position copy.

Device functions (jit-able, fixed shapes): :func:`beats`,
:func:`nondominated_mask`, :func:`merge_fronts` (bounded :class:`Front`),
anchor helpers :func:`weighted_minimizers` / :func:`beaten_by_anchors`,
:func:`prefix_count`.  Host functions: :func:`nondominated_host` and
:func:`hypervolume` (pymoo's exact indicator).

References: Deb, "Multi-Objective Optimization using Evolutionary Algorithms"
(2001), ch. 2 (domination); pymoo ``indicators.hv`` (Blank & Deb 2020).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..errors import MlsysOptError
from ..walls._masked import safe_div


def beats(Fa, pos_a, Fb, pos_b):
    """Pairwise "a beats b" matrix (see module docstring).

    Args:
      Fa: float[na, n_obj], objectives (minimize) of the candidate dominators.
      pos_a: int[na], positions of ``Fa`` rows (lower wins among identical vectors).
      Fb: float[nb, n_obj]; pos_b: int[nb].

    Returns:
      bool[na, nb]: ``out[i, j]`` is True iff row i of Fa beats row j of Fb.
    """
    le = None
    lt = pos_a[:, None] < pos_b[None, :]
    for j in range(Fa.shape[1]):          # per objective: no [na, nb, n_obj] temporary
        a = Fa[:, j][:, None]
        b = Fb[:, j][None, :]
        le = (a <= b) if le is None else (le & (a <= b))
        lt = lt | (a < b)
    return le & lt


def nondominated_mask(F, valid=None, *, block: int = 512):
    """Exact non-dominated filter of one set (O(n²) comparisons, blocked).

    Args:
      F: float[n, n_obj], objectives in minimize sense.
      valid: optional bool[n]; invalid rows are never kept and never dominate.
      block: rows compared at a time (memory ``block × n``).

    Returns:
      bool[n]: True for the rows no valid row beats, i.e. the non-dominated
      rows, with exactly one (the lowest-index) row of each group of identical
      objective vectors.
    """
    F = jnp.asarray(F)
    n = F.shape[0]
    valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)
    pos = jnp.arange(n, dtype=jnp.int32)
    nb = max(1, -(-n // block))
    pad = nb * block - n
    Fp = jnp.pad(F, ((0, pad), (0, 0)))
    vp = jnp.pad(valid, (0, pad))
    pp = jnp.pad(pos, (0, pad), constant_values=n)

    def body(i, beaten):
        Fa = lax.dynamic_slice_in_dim(Fp, i * block, block)
        pa = lax.dynamic_slice_in_dim(pp, i * block, block)
        va = lax.dynamic_slice_in_dim(vp, i * block, block)
        return beaten | jnp.any(beats(Fa, pa, F, pos) & va[:, None], axis=0)

    beaten = lax.fori_loop(0, nb, body, jnp.zeros((n,), bool))
    return valid & ~beaten


def prefix_count(mask):
    """Inclusive running count of True in ``mask`` (bool[n] -> int32[n]), i.e. cumsum.

    Blocked as two small triangular float32 matmuls (exact: counts < 2**24),
    which XLA compiles and runs faster on CPU than its cumsum lowering.
    """
    n = mask.shape[0]
    if n >= 2**24:
        return jnp.cumsum(mask, dtype=jnp.int32)
    b = max(1, int(np.ceil(np.sqrt(n))))
    rows = -(-n // b)
    x = jnp.pad(mask.astype(jnp.float32), (0, rows * b - n)).reshape(rows, b)
    hi = lax.Precision.HIGHEST
    within = jnp.dot(x, jnp.asarray(np.triu(np.ones((b, b), np.float32))), precision=hi)
    offset = jnp.dot(within[:, -1], jnp.asarray(np.triu(np.ones((rows, rows), np.float32), 1)), precision=hi)
    return (within + offset[:, None]).reshape(-1)[:n].astype(jnp.int32)


# --------------------------------------------------------------------------- anchors (device)

def positive_weights(n_obj: int, k: int) -> np.ndarray:
    """``k`` strictly positive weight vectors [k, n_obj] (host, deterministic; rows sum to 1).

    A minimiser of w·F with every w_j > 0 is Pareto-optimal (nothing can
    dominate it without having a smaller weighted sum), so such minimisers are
    good anchors.  2-D: evenly spaced; more objectives: the centroid, the
    near-corners, then Dirichlet draws from a fixed seed.
    """
    eps = 1e-3
    if n_obj == 1:
        return np.ones((1, 1))
    if n_obj == 2:
        t = np.linspace(eps, 1 - eps, k)
        return np.stack([t, 1 - t], 1)
    rows = [np.full(n_obj, 1.0 / n_obj)]
    for j in range(n_obj):
        e = np.full(n_obj, eps)
        e[j] = 1.0
        rows.append(e)
    rng = np.random.default_rng(0)
    while len(rows) < k:
        rows.append(rng.dirichlet(np.ones(n_obj)) + eps)
    w = np.array(rows[:k])
    return w / w.sum(1, keepdims=True)


def normalizer(F, mask):
    """``(lo, inv)`` [n_obj] with (F - lo)·inv in [0, 1] over the rows in ``mask``.

    Objectives with no spread (or no rows) get lo = 0, inv = 1.
    """
    big = jnp.asarray(jnp.finfo(F.dtype).max, F.dtype)
    lo = jnp.min(jnp.where(mask[:, None], F, big), axis=0)
    hi = jnp.max(jnp.where(mask[:, None], F, -big), axis=0)
    span = hi - lo
    ok = jnp.isfinite(span) & (span > 0)
    return jnp.where(ok, lo, 0), jnp.where(ok, safe_div(1.0, span, fill=1.0), 1)


def weighted_minimizers(F, mask, lo, inv, W, pos):
    """Rows minimising each weighted sum Σ_j w_j (F_j - lo_j) inv_j over ``mask`` (ties -> first row).

    Args:
      F: float[n, n_obj]; mask: bool[n], rows allowed; lo, inv: [n_obj] (see
        :func:`normalizer`); W: numpy [K, n_obj] positive weights (static);
      pos: int32[n], the rows' positions.

    Returns:
      ``(F[idx] [K, n_obj], pos[idx] [K], found bool[K])``; found is False
      where ``mask`` has no row.
    """
    n = F.shape[0]
    Wj = jnp.asarray(W, F.dtype)
    s = sum(((F[:, j] - lo[j]) * inv[j])[:, None] * Wj[None, :, j] for j in range(F.shape[1]))  # [n, K]
    s = jnp.where(mask[:, None], s, jnp.inf)
    hit = mask[:, None] & (s == jnp.min(s, axis=0)[None, :])
    i = jnp.min(jnp.where(hit, jnp.arange(n, dtype=jnp.int32)[:, None], n), axis=0)
    idx = jnp.minimum(i, n - 1)
    return F[idx], pos[idx], i < n


def beaten_by_anchors(F, pos, AF, Ap, Av):
    """bool[n]: True where some valid anchor beats the row (n × K comparisons).

    Args: F [n, n_obj] and pos int32[n] (the points); AF [K, n_obj], Ap int32[K],
    Av bool[K] (the anchors: objectives, positions, validity).  Any anchor that
    is a data point of the same set is a sound eliminator.
    """
    le = jnp.all(AF[None, :, :] <= F[:, None, :], axis=2) & Av[None, :]
    lt = jnp.any(AF[None, :, :] < F[:, None, :], axis=2) | (Ap[None, :] < pos[:, None])
    return jnp.any(le & lt, axis=1)


# --------------------------------------------------------------------------- bounded fronts (device)

class Front(NamedTuple):
    """A bounded non-dominated set living on the device (rows = slots).

    Attributes:
      F: float[capacity, n_obj], objectives (minimize sense).
      pos: int32[capacity], positions (lower wins among identical vectors).
      payload: pytree of arrays with leading dim ``capacity`` (e.g. G, aux, digits).
      member: bool[capacity], which slots hold a member (others are holes).
      n: int32[], number of members.
      hw: int32[], high-water mark: every member sits in a slot < hw.
    """
    F: Any
    pos: Any
    payload: Any
    member: Any
    n: Any
    hw: Any


def empty_front(capacity: int, n_obj: int, payload_like, dtype=jnp.float32, *, xp=jnp) -> Front:
    """An empty :class:`Front`; ``payload_like`` is a pytree of ShapeDtypeStructs (shape without the lead dim).

    xp: ``jax.numpy`` (default; inside jit) or ``numpy`` (host arrays: no eager device op, each of
    which would compile -- or look up -- an executable of its own at start-up).
    """
    payload = jax.tree_util.tree_map(
        lambda sd: xp.zeros((capacity,) + tuple(sd.shape), sd.dtype), payload_like)
    return Front(xp.zeros((capacity, n_obj), dtype), xp.full((capacity,), -1, jnp.int32),
                 payload, xp.zeros((capacity,), bool), xp.zeros((), jnp.int32), xp.zeros((), jnp.int32))


def merge_fronts(front: Front, F, pos, valid, payload, *, block: int = 256):
    """Merge candidate points into a bounded front, exactly.

    The result holds the points of ``front ∪ candidates`` that no point of the
    union beats (candidates that are themselves beaten may still eliminate
    front members: by transitivity this never removes a point that should
    stay).  Pass 1 compares the m candidates with the members (m · hw, hw the
    front's high-water mark, in blocks of ``block`` slots); only if some
    candidate survives does pass 2 compare the survivors with each other
    (m²) and with the members, and place them (see :func:`_place`).

    Args:
      front: a :class:`Front` (members mutually non-dominated).
      F: float[m, n_obj] candidate objectives; pos: int32[m] their positions
        (distinct from each other and from the members' positions).
      valid: bool[m], which candidates exist (e.g. feasible, not padding).
      payload: pytree like ``front.payload`` with leading dim m.
      block: front slots compared per loop step.

    Returns:
      ``(new_front, overflow)``: overflow (bool[]) is True when the union's
      non-dominated set has more than ``capacity`` points; the candidates that
      find no free slot are then dropped and the caller must report it.
    """
    cap = front.F.shape[0]
    m = F.shape[0]
    block = min(block, cap)
    nblk_max = -(-cap // block)
    padc = nblk_max * block - cap
    if padc:
        fF = jnp.pad(front.F, ((0, padc), (0, 0)))
        fpos = jnp.pad(front.pos, (0, padc))
        fmem = jnp.pad(front.member, (0, padc))
    else:
        fF, fpos, fmem = front.F, front.pos, front.member

    nblk = (front.hw + block - 1) // block

    def block_of(i):
        return (lax.dynamic_slice_in_dim(fF, i * block, block), lax.dynamic_slice_in_dim(fpos, i * block, block),
                lax.dynamic_slice_in_dim(fmem, i * block, block))

    # pass 1: candidates beaten by a member ([block, m] comparisons per step)
    def beaten_by_members(i, cb):
        bF, bp, bm = block_of(i)
        return cb | jnp.any(beats(bF, bp, F, pos) & bm[:, None], axis=0)

    alive = valid & ~lax.fori_loop(0, nblk, beaten_by_members, jnp.zeros((m,), bool))

    # A candidate beaten by a member can beat neither a member nor a surviving
    # candidate (transitivity; members are mutually unbeaten), so without
    # survivors the front is unchanged and pass 2 only needs the survivors.
    def update(front):
        cand_beaten = jnp.any(beats(F, pos, F, pos) & alive[:, None], axis=0)

        def members_beaten(i, fb):          # [block, m] again: reducing over m is the fast way on CPU
            bF, bp, _ = block_of(i)
            hit = jnp.any(beats(F, pos, bF, bp).T & alive[None, :], axis=1)
            return lax.dynamic_update_index_in_dim(fb, hit, i, axis=0)

        fb = lax.fori_loop(0, nblk, members_beaten, jnp.zeros((nblk_max, block), bool)).reshape(-1)
        return _place(front, F, pos, payload, front.member & ~fb[:cap], alive & ~cand_beaten)

    return lax.cond(jnp.any(alive), update, lambda fr: (fr, jnp.zeros((), bool)), front)


def _place(front: Front, F, pos, payload, keep_f, keep_c):
    """Drop the members not in keep_f and add the candidates in keep_c.

    Fast path (room for m rows above the high-water mark): the kept
    candidates, compacted, are written as one block at ``hw`` (O(m) work;
    dropped members leave holes).  Otherwise the front is compacted: members
    to the lowest slots, then the candidates (O(capacity) gathers), which
    resets ``hw`` to the member count.
    """
    cap, m = front.F.shape[0], F.shape[0]
    n_kf = jnp.sum(keep_f, dtype=jnp.int32)
    n_kc = jnp.sum(keep_c, dtype=jnp.int32)
    overflow = n_kf + n_kc > cap
    new_rows = (F, pos, payload)

    def append(_):
        rank = jnp.where(keep_c, prefix_count(keep_c) - 1, m)
        first = jnp.zeros((m + 1,), jnp.int32).at[rank].set(jnp.arange(m, dtype=jnp.int32), mode="drop")[:m]
        rows = jax.tree_util.tree_map(lambda x: x[first], new_rows)
        ok = jnp.arange(m, dtype=jnp.int32) < n_kc

        def put(old, new):
            start = (front.hw,) + (jnp.int32(0),) * (old.ndim - 1)
            return lax.dynamic_update_slice(old, new.astype(old.dtype), start)
        nF, npos, npay = jax.tree_util.tree_map(put, (front.F, front.pos, front.payload), rows)
        return Front(nF, npos, npay, put(keep_f, ok), n_kf + n_kc, front.hw + n_kc)

    def compact(_):
        keep = jnp.concatenate([keep_f, keep_c])
        rank = prefix_count(keep)                       # members first, then candidates
        src = jnp.zeros((cap,), jnp.int32).at[jnp.where(keep, rank - 1, cap)].set(
            jnp.arange(cap + m, dtype=jnp.int32), mode="drop")
        take = lambda old, new: jnp.concatenate([old, new.astype(old.dtype)])[src]   # noqa: E731
        nF, npos, npay = jax.tree_util.tree_map(take, (front.F, front.pos, front.payload), new_rows)
        n = jnp.minimum(n_kf + n_kc, cap)
        return Front(nF, npos, npay, jnp.arange(cap, dtype=jnp.int32) < n, n, n)

    if m > cap:                       # a block of m rows never fits: always compact
        return compact(None), overflow
    return lax.cond(front.hw + m <= cap, append, compact, None), overflow


# --------------------------------------------------------------------------- host (numpy)

def nondominated_host(F, pos) -> np.ndarray:
    """bool[n]: rows no other row beats (:func:`beats` on the host, blocked O(n²)).

    F float [n, d] minimize sense; pos int [n] positions (distinct per configuration;
    repeated evaluations of one configuration share a position and collapse to their
    first row).  The one host non-dominated filter (search results, merged process fronts).
    """
    F, pos = np.asarray(F), np.asarray(pos)
    n = len(F)
    if n == 0:
        return np.zeros(0, bool)
    _, first = np.unique(pos, return_index=True)        # repeated configurations: first row only
    idx = np.sort(first)
    Fi, pi = F[idx], pos[idx]
    beaten = np.zeros(len(idx), bool)
    block = max(1, 4_000_000 // max(1, len(idx) * F.shape[1]))
    for s in range(0, len(idx), block):
        a, pa = Fi[s:s + block], pi[s:s + block]
        le = np.all(a[:, None, :] <= Fi[None, :, :], axis=-1)
        lt = np.any(a[:, None, :] < Fi[None, :, :], axis=-1) | (pa[:, None] < pi[None, :])
        beaten |= np.any(le & lt, axis=0)
    out = np.zeros(n, bool)
    out[idx[~beaten]] = True
    return out


def hypervolume(F, ref) -> float:
    """Exact hypervolume dominated by ``F`` and bounded by ``ref`` (minimize sense), by pymoo.

    HV(F, r) = λ( ∪_{f ∈ F, f < r} [f_1, r_1] × ... × [f_d, r_d] ); points not strictly
    better than ``ref`` in every objective add nothing.  Units: product of the objectives'.

    Args:
      F: array-like [n, d] (host or device), minimize sense.
      ref: array-like [d], reference (nadir-side) point.

    Returns:
      float hypervolume (0.0 for an empty front).
    """
    from pymoo.indicators.hv import HV     # pymoo is a dependency; imported on use (start-up time)

    P = np.asarray(F, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    if P.ndim != 2 or P.shape[1] != r.shape[0]:
        raise MlsysOptError(
            f"hypervolume: F has shape {P.shape} and ref has {r.shape[0]} entries; "
            "F must be [n, d] with d == len(ref)")
    if not np.all(np.isfinite(r)):
        raise MlsysOptError(f"hypervolume: reference point {r.tolist()} must be finite")
    P = P[np.all(P < r, axis=1)]
    return float(HV(ref_point=r)(P)) if len(P) else 0.0
