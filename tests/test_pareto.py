"""Non-dominated filter, bounded merges and hypervolume against pymoo."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from mlsys_opt.errors import MlsysOptError
from mlsys_opt.sweeps import pareto


def pymoo_front(F, valid=None):
    """Our convention from pymoo's: first front, one (lowest-index) row per identical vector."""
    idx = np.arange(len(F)) if valid is None else np.nonzero(valid)[0]
    if len(idx) == 0:
        return set()
    nd = idx[NonDominatedSorting().do(F[idx], only_non_dominated_front=True)]
    first = {}
    for i in sorted(nd.tolist()):
        first.setdefault(tuple(F[i]), i)
    return set(first.values())


def random_sets(rng, n, n_obj, n_cases):
    """Mixed cases: integer grids (many ties and duplicates), continuous, and a conflicting band."""
    out = []
    for c in range(n_cases):
        kind = c % 3
        if kind == 0:
            F = rng.integers(0, 6, (n, n_obj)).astype(np.float64)
        elif kind == 1:
            F = rng.random((n, n_obj))
        else:
            x = rng.random((n, 1))
            F = np.concatenate([x, 1 - x] + [rng.random((n, 1)) * 0.1 for _ in range(n_obj - 2)], 1)
            F = np.round(F * 20) / 20                    # ties on the front
        F[rng.integers(0, n, n // 10)] = F[rng.integers(0, n, n // 10)]   # exact duplicates
        valid = rng.random(n) < 0.9
        out.append((F, valid))
    return out


@pytest.mark.parametrize("n_obj", [2, 3])
def test_nondominated_mask_matches_pymoo_with_ties_and_duplicates(n_obj):
    rng = np.random.default_rng(n_obj)
    n = 300
    cases = random_sets(rng, n, n_obj, 9)
    mask_fn = jax.jit(jax.vmap(lambda F, v: pareto.nondominated_mask(F, v, block=128)))
    masks = np.asarray(mask_fn(jnp.asarray(np.stack([c[0] for c in cases])),
                               jnp.asarray(np.stack([c[1] for c in cases]))))
    for (F, valid), m in zip(cases, masks):
        assert set(np.nonzero(m)[0].tolist()) == pymoo_front(F, valid)


def test_beats_is_a_strict_partial_order():
    rng = np.random.default_rng(5)
    F = rng.integers(0, 3, (60, 3)).astype(np.float32)
    pos = np.arange(60, dtype=np.int32)
    B = np.asarray(pareto.beats(jnp.asarray(F), jnp.asarray(pos), jnp.asarray(F), jnp.asarray(pos)))
    assert not B.diagonal().any()                                       # irreflexive
    assert not (B & B.T).any()                                          # asymmetric
    two_step = (B.astype(int) @ B.astype(int)) > 0
    assert not (two_step & ~B).any()                                    # transitive


def test_merge_fronts_streaming_equals_one_shot():
    """Batches merged one after another into a bounded front = one exact filter of everything."""
    rng = np.random.default_rng(7)
    m, cap, n_batches = 64, 512, 12

    @jax.jit
    def stream(Fs, valids):
        fr = pareto.empty_front(cap, 3, (jax.ShapeDtypeStruct((2,), jnp.int32),), jnp.float32)

        def body(fr, xs):
            F, v, b = xs
            pos = b * m + jnp.arange(m, dtype=jnp.int32)
            fr, o = pareto.merge_fronts(fr, F, pos, v, (jnp.stack([pos, -pos], 1),), block=128)
            return fr, o
        fr, ovf = jax.lax.scan(body, fr, (Fs, valids, jnp.arange(n_batches)))
        return fr, jnp.any(ovf)

    for case in range(3):
        if case == 0:
            F = rng.integers(0, 5, (n_batches * m, 3)).astype(np.float32)
        else:
            x = rng.random((n_batches * m, 2))
            F = np.concatenate([x, (1.5 - x.sum(1, keepdims=True)) + 0.3 * rng.random((len(x), 1))], 1)
            F = (np.round(F * 10) / 10).astype(np.float32)
        valid = rng.random(len(F)) < 0.95
        fr, ovf = stream(jnp.asarray(F.reshape(n_batches, m, 3)), jnp.asarray(valid.reshape(n_batches, m)))
        assert not bool(ovf)
        mem = np.asarray(fr.member)
        got = np.asarray(fr.pos)[mem]
        assert int(fr.n) == mem.sum() and np.all(np.nonzero(mem)[0] < int(fr.hw))
        assert set(got.tolist()) == pymoo_front(F.astype(np.float64), valid)
        np.testing.assert_array_equal(np.asarray(fr.payload[0])[mem][:, 0], got)     # payload follows
        np.testing.assert_array_equal(np.asarray(fr.F)[mem], F[got])


def test_merge_fronts_reuses_holes_by_compacting():
    """Each batch beats the whole front: removed members leave holes above which new ones are
    appended, until the high-water mark forces a compaction; the result stays exact."""
    cap, m, n_batches = 96, 32, 10
    x = np.linspace(0, 1, m, dtype=np.float32)
    base = np.stack([x, 1 - x], 1)

    @jax.jit
    def stream(fr):
        def body(fr, b):
            F = jnp.asarray(base) - 0.01 * b.astype(jnp.float32)
            fr, o = pareto.merge_fronts(fr, F, b * m + jnp.arange(m, dtype=jnp.int32), jnp.ones(m, bool), (),
                                        block=32)
            return fr, (o, fr.hw)
        return jax.lax.scan(body, fr, jnp.arange(n_batches))

    fr, (ovf, hw) = stream(pareto.empty_front(cap, 2, (), jnp.float32))
    hw = np.asarray(hw)
    assert not np.asarray(ovf).any() and hw.max() <= cap and np.any(np.diff(hw) < 0)   # compacted
    mem = np.asarray(fr.member)
    assert sorted(np.asarray(fr.pos)[mem].tolist()) == list(range((n_batches - 1) * m, n_batches * m))


def test_merge_fronts_reports_overflow():
    cap = 16
    fr = pareto.empty_front(cap, 2, (), jnp.float32)
    x = jnp.linspace(0, 1, 40)
    F = jnp.stack([x, 1 - x], 1)                          # 40 mutually non-dominated points
    fr2, ovf = jax.jit(pareto.merge_fronts)(fr, F, jnp.arange(40, dtype=jnp.int32), jnp.ones(40, bool), ())
    assert bool(ovf) and int(fr2.n) == cap


def test_prefix_count_and_anchor_helpers():
    rng = np.random.default_rng(3)
    pc = jax.jit(pareto.prefix_count)
    for n in (1, 7, 70001):
        m = rng.random(n) < 0.3
        np.testing.assert_array_equal(np.asarray(pc(jnp.asarray(m))), np.cumsum(m))
    F = rng.random((500, 3)).astype(np.float32)
    mask = rng.random(500) < 0.8
    W = pareto.positive_weights(3, 8)
    assert W.shape == (8, 3) and np.all(W > 0) and np.allclose(W.sum(1), 1)

    @jax.jit
    def anchors_and_beaten(F, mask):
        pos = jnp.arange(F.shape[0], dtype=jnp.int32)
        lo, inv = pareto.normalizer(F, mask)
        AF, Ap, Av = pareto.weighted_minimizers(F, mask, lo, inv, W, pos)
        return Ap, Av, pareto.beaten_by_anchors(F, pos, AF, Ap, Av)

    Ap, Av, beaten = (np.asarray(x) for x in anchors_and_beaten(jnp.asarray(F), jnp.asarray(mask)))
    front = pymoo_front(F.astype(np.float64), mask)
    assert Av.all() and set(Ap.tolist()) <= front                              # minimisers are Pareto
    assert not any(beaten[i] for i in front)                                  # never drops a front point


@pytest.mark.parametrize("n_obj,n", [(2, 200), (3, 150), (4, 25)])
def test_hypervolume_matches_pymoo(n_obj, n):
    rng = np.random.default_rng(n_obj)
    for case in range(3):
        if case == 0:
            F = rng.random((n, n_obj))
        elif case == 1:
            x = rng.dirichlet(np.ones(n_obj), n)
            F = np.sqrt(x)                                    # a concave front, all non-dominated
        else:
            F = rng.integers(0, 4, (n, n_obj)).astype(float)  # ties and duplicates
        ref = F.max(0) + 0.5
        ours = pareto.hypervolume(F, ref)
        theirs = HV(ref_point=ref)(F)
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    assert pareto.hypervolume(np.zeros((0, 2)), [1, 1]) == 0.0
    assert pareto.hypervolume([[2.0, 0.0]], [1, 1]) == 0.0        # outside the reference box
    assert pareto.hypervolume([[0.5, 0.5]], [1, 1]) == pytest.approx(0.25)
    with pytest.raises(MlsysOptError, match="ref"):
        pareto.hypervolume(np.ones((3, 2)), [1, 1, 1])
