"""The stages of the sweep's jitted step (sweeps/step.py), each on its own against brute force.

Unsharded (identity gather / pmax), small chunks with ties, NaNs, infinities and
lanes past the end of the space; float64 (tests run with x64).  The stages take the
evaluations as columns (F [n_obj, L], ...): the chunks are built as rows here and
passed transposed.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt.sweeps import pareto, step
from mlsys_opt.sweeps.state import BestLists, Payload

L, N_OBJ, N_CONSTR = 256, 2, 3


def _chunk(seed: int):
    rng = np.random.default_rng(seed)
    F = rng.integers(0, 12, (L, N_OBJ)).astype(np.float64)        # small integers: many ties
    G = rng.normal(-0.5, 1.0, (L, N_CONSTR))
    F[rng.random(L) < 0.05, 0] = np.nan
    G[rng.random(L) < 0.05, 1] = np.inf
    in_range = np.arange(L) < L - 17                              # the last lanes are past the space
    return F, G, in_range


@pytest.mark.parametrize("seed,scatter", [(0, True), (1, True), (0, False), (1, False)])
def test_feasibility_partitions_the_lanes_in_range(seed, scatter):
    F, G, in_range = _chunk(seed)
    feas, reasons = jax.jit(step.feasibility, static_argnames="scatter")(F.T, G.T, in_range, scatter=scatter)
    feas, reasons = np.asarray(feas), np.asarray(reasons)
    finite = np.isfinite(F).all(1) & np.isfinite(G).all(1)
    np.testing.assert_array_equal(feas, in_range & finite & (G <= 0).all(1))
    bad = in_range & finite & (G > 0).any(1)
    want = np.bincount(np.argmax(np.where(np.isfinite(G), G, 0), 1)[bad], minlength=N_CONSTR)
    np.testing.assert_array_equal(reasons[:N_CONSTR], want)
    assert reasons[-1] == int((in_range & ~finite).sum()) > 0          # non_finite
    assert feas.sum() + reasons.sum() == in_range.sum()


@pytest.mark.parametrize("scatter", [True, False])
def test_feasibility_without_constraints_counts_only_non_finite(scatter):
    F, _, in_range = _chunk(2)
    feas, reasons = step.feasibility(F.T, np.zeros((0, L)), in_range, scatter=scatter)
    assert reasons.shape == (1,) and int(reasons[0]) == int((in_range & ~np.isfinite(F).all(1)).sum())
    assert int(np.sum(feas)) + int(reasons[0]) == int(in_range.sum())


def test_histogram_counts_feasible_values_only():
    F, G, in_range = _chunk(3)
    feas = np.asarray(step.feasibility(F.T, G.T, in_range)[0])
    edges = (2.0, 5.0, 9.0)
    (h,) = step.histogram_counts(jnp.asarray(F.T), jnp.asarray(feas), ((1, edges),))
    want = np.bincount(np.searchsorted(edges, F[feas, 1], side="right"), minlength=len(edges) + 1)
    np.testing.assert_array_equal(np.asarray(h), want)


def test_prefilter_drops_exactly_the_lanes_an_anchor_beats():
    F, _, _ = _chunk(4)
    F = np.nan_to_num(F, nan=11.0)
    lane = np.arange(L, dtype=np.int32)
    surv = np.ones(L, bool)
    AF, Ap, Av = F[:5], np.array([-1, -1, 3, 200, -1], np.int32), np.array([True, True, True, True, False])
    got = np.asarray(jax.jit(step.prefilter)(F.T, lane, surv, AF, Ap, Av))
    beaten = np.asarray(pareto.beaten_by_anchors(jnp.asarray(F), lane, AF, Ap, Av))
    np.testing.assert_array_equal(got, surv & ~beaten)


@pytest.mark.parametrize("seed", [5, 6])
def test_refine_never_drops_a_nondominated_lane(seed):
    F, _, _ = _chunk(seed)
    F = np.nan_to_num(F, nan=11.0)
    lane = np.arange(L, dtype=np.int32)
    surv = np.random.default_rng(seed).random(L) < 0.8
    W = pareto.positive_weights(N_OBJ, 8)
    got = np.asarray(jax.jit(step.refine, static_argnums=3)(F.T, lane, surv, 32, W))
    nd = np.asarray(pareto.nondominated_mask(F, surv))
    assert not np.any(got & ~surv)                     # only removes
    assert not np.any(nd & ~got)                       # never a front member
    assert got.sum() < surv.sum()                      # and does remove something


def test_merge_survivors_builds_the_exact_front():
    F, G, in_range = _chunk(7)
    feas = np.asarray(step.feasibility(F.T, G.T, in_range)[0])
    lane = np.arange(L, dtype=np.int32)
    digits = np.stack([lane, 2 * lane], 1).astype(np.int32)
    aux = np.zeros((L, 1))
    front = pareto.empty_front(64, N_OBJ, Payload(jax.ShapeDtypeStruct((N_CONSTR,), jnp.float64),
                                                  jax.ShapeDtypeStruct((1,), jnp.float64),
                                                  jax.ShapeDtypeStruct((2,), jnp.int32)), jnp.float64)
    M = 16
    n_iter = jnp.int32(-(-int(feas.sum()) // M))
    fr, ovf = jax.jit(step.merge_survivors, static_argnums=6)(front, F.T, lane, feas,
                                                              Payload(G.T, aux.T, digits.T), n_iter, M)
    assert not bool(ovf)
    mem = np.asarray(fr.member)
    want = np.flatnonzero(np.asarray(pareto.nondominated_mask(F, feas)))
    got = np.sort(np.asarray(fr.payload.digits)[mem][:, 0])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.asarray(fr.payload.G)[mem][np.argsort(np.asarray(fr.payload.digits)[mem][:, 0])],
                                  G[want])


def test_update_best_keeps_the_k_smallest_feasible_per_objective():
    F, G, in_range = _chunk(8)
    feas = np.asarray(step.feasibility(F.T, G.T, in_range)[0])
    lane = np.arange(L, dtype=np.int32)
    digits = lane[:, None].astype(np.int32)
    k = 5
    empty = BestLists(jnp.zeros((N_OBJ, k, N_OBJ)), jnp.zeros((N_OBJ, k, N_CONSTR)), jnp.zeros((N_OBJ, k, 0)),
                      jnp.zeros((N_OBJ, k, 1), jnp.int32), jnp.zeros((N_OBJ, k), bool))
    upd = jax.jit(step.update_best, static_argnums=6)
    # two halves of the chunk, one after the other: the merge with the running list is exercised
    half = L // 2
    best = empty
    for sl in (slice(0, half), slice(half, L)):
        sub = (F[sl].T, G[sl].T, np.zeros((0, half)), digits[sl].T, feas[sl])
        best = upd(best, *sub, k)
    for j in range(N_OBJ):
        idx = np.flatnonzero(feas)
        want = idx[np.lexsort((idx, F[idx, j]))][:k]         # smallest value, then lowest lane
        np.testing.assert_array_equal(np.asarray(best.digits)[j, :, 0], want)
        assert np.asarray(best.valid)[j].all()
