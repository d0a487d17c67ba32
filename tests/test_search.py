"""Search invariants (STYLE.md §3.6 item 6), not golden fronts.

On spaces/llama3_serving.toml (13,824 configurations, enumerated exactly
here with the same evaluator): the returned set is non-dominated, every
member is feasible (G <= 0), runs are seed-deterministic, NSGA-II reaches
>= 0.9 of the exact front's hypervolume within a modest budget, and the
pymoo problem is vectorised (one call per population).
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from pymoo.core.problem import Problem

from mlsys_opt.errors import MlsysOptError
from mlsys_opt.search import ALGORITHMS, SpaceProblem, front_at, run_search
from mlsys_opt.search.pymoo_problem import batch_evaluator
from mlsys_opt.sweeps.pareto import nondominated_host as nondominated
from mlsys_opt.space.spec import load_space
from mlsys_opt.sweeps.api import output_names
from mlsys_opt.sweeps.pareto import hypervolume


@pytest.fixture(scope="module")
def space():
    return load_space("llama3_serving")


@pytest.fixture(scope="module")
def exact(space):
    """Exact feasible front of the whole space (every configuration evaluated)."""
    grids = np.meshgrid(*[np.arange(r) for r in space.radices], indexing="ij")
    digits = np.stack([g.ravel() for g in grids], axis=1).astype(np.int32)
    F, G, _ = batch_evaluator(space, batch_size=64)(digits)
    ok = np.all(G <= 0, axis=1)
    pos = np.arange(len(digits), dtype=np.int64)
    idx = np.flatnonzero(ok)
    return F[idx[nondominated(F[idx], pos[idx])]]


@pytest.fixture(scope="module")
def result(space):
    return run_search(space, algorithm="nsga2", evals=3000, pop_size=64, seed=1)


def _hv_ratio(F, F_exact):
    ideal, nadir = F_exact.min(0), F_exact.max(0)
    span = np.where(nadir > ideal, nadir - ideal, 1.0)
    ref = np.full(F_exact.shape[1], 1.1)
    return hypervolume((F - ideal) / span, ref) / hypervolume((F_exact - ideal) / span, ref)


def test_front_is_nondominated_and_feasible(space, result):
    F = result.F
    assert len(F) > 0 and result.n_evaluated >= 3000
    le = np.all(F[:, None, :] <= F[None, :, :], axis=-1)
    lt = np.any(F[:, None, :] < F[None, :, :], axis=-1)
    assert not np.any(le & lt), "a front member dominates another"
    F2, G2, _ = batch_evaluator(space, batch_size=64)(result.digits)
    assert np.all(G2 <= 0), "an infeasible configuration on the front"
    np.testing.assert_allclose(F2, F, rtol=1e-6)
    assert len({tuple(d) for d in result.digits}) == len(result.digits)


def test_front_frame_matches_sweep_columns(space, result):
    df = result.front
    assert len(df) == len(result.F)
    expected = list(space.labels(result.digits[:1]).columns) + list(output_names(space))
    assert list(df.columns[:len(expected)]) == expected
    for j, (name, sense) in enumerate(space.objectives):
        sign = 1.0 if sense == "min" else -1.0
        np.testing.assert_allclose(sign * df[name].to_numpy(), result.F[:, j], rtol=1e-6)
    assert set(df["bottleneck"]) <= {"compute", "memory", "overhead"}


def test_reaches_exact_hypervolume(result, exact):
    assert _hv_ratio(result.F, exact) >= 0.9
    # anytime view: quality never decreases with the budget
    q = [_hv_ratio(F, exact) for F in front_at(result, [500, 1500, 3000]).values()]
    assert q == sorted(q)


def test_seed_determinism(space, result):
    again = run_search(space, algorithm="nsga2", evals=3000, pop_size=64, seed=1)
    np.testing.assert_array_equal(again.digits, result.digits)
    np.testing.assert_array_equal(again.archive[0], result.archive[0])
    other = run_search(space, algorithm="nsga2", evals=600, pop_size=64, seed=2)
    assert not np.array_equal(other.archive[0][:600], result.archive[0][:600])


def test_problem_is_vectorised(space):
    prob = SpaceProblem(space, batch_size=64)
    assert isinstance(prob, Problem) and not prob.elementwise
    calls = []
    inner = prob._eval
    prob._eval = lambda d: (calls.append(len(d)), inner(d))[1]
    X = np.random.default_rng(0).integers(0, prob.xu.astype(int) + 1, size=(50, prob.n_var))
    out = prob.evaluate(X, return_as_dictionary=True)
    assert calls == [50]
    assert out["F"].shape == (50, len(space.objectives)) and out["G"].shape[0] == 50
    assert np.all(prob.xl == 0) and np.all(prob.xu == np.asarray(space.radices)[prob.active] - 1)


HAS_NUMBA = importlib.util.find_spec("numba") is not None


@pytest.mark.parametrize("algo", ["nsga3", "unsga3", "spea2", "smsemoa", "moead", "random", "rvea",
                                  pytest.param("age", marks=pytest.mark.skipif(not HAS_NUMBA,
                                                                               reason="AGE-MOEA needs numba"))])
def test_algorithms_by_name(space, algo):
    # pop_size 64 everywhere in this file: one compiled batch shape for every run
    r = run_search(space, algorithm=algo, evals=256, pop_size=64, seed=0)
    # RVEA turns the budget into generations of pop_size children; duplicate elimination
    # can leave generations short, so it may stop below the budget
    assert r.algorithm == algo and r.n_evaluated >= (128 if algo == "rvea" else 256)
    if len(r.digits):
        _, G, _ = batch_evaluator(space, batch_size=64)(r.digits)
        assert np.all(G <= 0)


def test_unknown_algorithm_lists_allowed(space):
    with pytest.raises(MlsysOptError) as exc:
        run_search(space, algorithm="nsga22", evals=100)
    msg = str(exc.value)
    assert "nsga2" in msg and all(name in msg for name in ALGORITHMS)
    with pytest.raises(MlsysOptError, match="one objective"):
        run_search(space, algorithm="ga", evals=100)
    if HAS_NUMBA:
        assert run_search(space, algorithm="AGEMOEA", evals=64, pop_size=64).algorithm == "age"
    else:
        with pytest.raises(MlsysOptError, match="numba"):
            run_search(space, algorithm="AGEMOEA", evals=64, pop_size=64)
