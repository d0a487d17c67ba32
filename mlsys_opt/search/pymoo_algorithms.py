"""pymoo algorithms by name, with the integer operators of a design-space search.

Used by ``pymoo_problem``.  The variables
are axis digits ``0 <= x_k <= radix_k - 1`` (see ``pymoo_problem``):

- ordinal digits (int/float axes): SBX crossover and polynomial mutation,
  rounded (pymoo's ``RoundingRepair``), distribution indices η_c = η_m = 5 by
  default (tuned on spaces/capstone.toml, see benchmarks/pareto_quality.py);
- categorical digits (catalog names, choices): uniform resampling, since
  "h100 + 1 = h200" carries no meaning (:class:`MixedMutation`);
- the reference-direction algorithms (NSGA-III, U-NSGA-III, RVEA, C-TAEA,
  MOEA/D) get the largest Das-Dennis set that fits the population.

Source: pymoo 0.6 (Blank & Deb 2020) mixed-integer guide and algorithm modules.
"""
from __future__ import annotations

import numpy as np
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.core.sampling import Sampling
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling

from ..errors import MlsysOptError, did_you_mean
from ..scenarios import schema

# canonical name -> aliases accepted by run_search
ALGORITHMS = schema.SEARCH_ALGORITHMS
_ALIAS = {alias: name for name, aliases in ALGORITHMS.items() for alias in (name, *aliases)}


def resolve_algorithm(name: str) -> str:
    """Canonical algorithm name, or MlsysOptError listing the allowed ones."""
    key = str(name).strip().lower()
    if key not in _ALIAS:
        raise MlsysOptError(f"unknown search algorithm {name!r}{did_you_mean(str(name), list(_ALIAS))} "
                            f"(allowed: {', '.join(ALGORITHMS)}; aliases: "
                            f"{', '.join(a for n, al in ALGORITHMS.items() for a in al)})")
    return _ALIAS[key]


class MixedMutation(Mutation):
    """Polynomial mutation (rounded) on ordinal digits, uniform resampling on categorical ones.

    Each variable mutates with probability ``prob_var`` (default 1/n_var), at
    least one per individual.  Ordinal digits (int/float axes) take pymoo's
    polynomial mutation with distribution index ``eta``, rounded and clipped;
    categorical digits (catalog names, choices), which have no order, are
    redrawn uniformly among the other values.
    """

    def __init__(self, categorical, prob_var: float | None = None, eta: float = 5.0):
        super().__init__(prob=1.0)
        self.categorical = np.asarray(categorical, bool)
        self.prob_var_value = prob_var
        self.pm = PM(prob=1.0, prob_var=prob_var, eta=eta, vtype=float, repair=RoundingRepair())

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        X = np.rint(np.asarray(X, np.float64)).astype(np.int64)
        hi = np.asarray(problem.xu, np.int64)
        out = np.asarray(self.pm._do(problem, X.astype(np.float64), random_state=random_state))
        out = np.clip(np.rint(out), 0, hi[None, :]).astype(np.int64)
        if self.categorical.any():
            n, m = X.shape
            p = self.prob_var_value if self.prob_var_value is not None else 1.0 / m
            hit = random_state.random((n, m)) < p
            none = ~hit.any(axis=1)
            hit[none, random_state.integers(0, m, size=int(none.sum()))] = True
            shift = random_state.integers(1, np.maximum(hi, 1)[None, :] + 1, size=(n, m))
            cat = np.where(hit & (hi[None, :] > 0), (X + shift) % (hi[None, :] + 1), X)
            out = np.where(self.categorical[None, :], cat, out)
        return out


class SeededSampling(Sampling):
    """Initial population = given rows first, then integer random rows."""

    def __init__(self, rows: np.ndarray):
        super().__init__()
        self.rows = np.asarray(rows, np.int64)

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        rows = self.rows[:n_samples]
        rest = IntegerRandomSampling()._do(problem, n_samples - len(rows), random_state=random_state)
        return np.concatenate([rows, np.asarray(rest, np.int64).reshape(-1, problem.n_var)])


def make_algorithm(name: str, problem: Problem, *, pop_size: int, seed_rows=None,
                   mutation_prob: float | None = None, crossover_prob: float = 0.9,
                   eta_c: float = 5.0, eta_m: float = 5.0):
    """A pymoo algorithm object by name (see ``ALGORITHMS``) with integer operators."""
    from pymoo.util.ref_dirs import get_reference_directions

    sampling = SeededSampling(seed_rows) if seed_rows is not None and len(seed_rows) else IntegerRandomSampling()
    crossover = SBX(prob=crossover_prob, eta=eta_c, vtype=float, repair=RoundingRepair())
    mutation = MixedMutation(problem.categorical, mutation_prob, eta_m)
    common = dict(sampling=sampling, crossover=crossover, mutation=mutation, eliminate_duplicates=True)
    n_obj = problem.n_obj

    def ref_dirs():
        # Das-Dennis: the largest partition count whose direction count fits pop_size
        p = 1
        while _n_dirs(n_obj, p + 1) <= pop_size:
            p += 1
        return get_reference_directions("das-dennis", n_obj, n_partitions=p)

    if name == "nsga2":
        from pymoo.algorithms.moo.nsga2 import NSGA2
        return NSGA2(pop_size=pop_size, **common)
    if name == "nsga3":
        from pymoo.algorithms.moo.nsga3 import NSGA3
        return NSGA3(ref_dirs=ref_dirs(), pop_size=pop_size, **common)
    if name == "unsga3":
        from pymoo.algorithms.moo.unsga3 import UNSGA3
        return UNSGA3(ref_dirs=ref_dirs(), pop_size=pop_size, **common)
    if name in ("age", "age2"):
        try:
            if name == "age":
                from pymoo.algorithms.moo.age import AGEMOEA as cls
            else:
                from pymoo.algorithms.moo.age2 import AGEMOEA2 as cls
        except Exception as exc:   # pymoo raises a bare Exception when numba is missing
            raise MlsysOptError(f"algorithm {name!r} (pymoo AGE-MOEA) needs the optional package numba "
                                f"({exc}); install it or use nsga2/nsga3/spea2/smsemoa") from None
        return cls(pop_size=pop_size, **common)
    if name == "spea2":
        from pymoo.algorithms.moo.spea2 import SPEA2
        return SPEA2(pop_size=pop_size, **common)
    if name == "smsemoa":
        from pymoo.algorithms.moo.sms import SMSEMOA
        return SMSEMOA(pop_size=pop_size, **common)
    if name == "rvea":
        from pymoo.algorithms.moo.rvea import RVEA
        return RVEA(ref_dirs=ref_dirs(), pop_size=pop_size, **common)
    if name == "ctaea":
        from pymoo.algorithms.moo.ctaea import CTAEA
        return CTAEA(ref_dirs=ref_dirs(), sampling=common["sampling"], crossover=crossover,
                     mutation=mutation, eliminate_duplicates=True)
    if name == "moead":
        from pymoo.algorithms.moo.moead import MOEAD
        return MOEAD(ref_dirs=ref_dirs(), sampling=common["sampling"], crossover=crossover, mutation=mutation)
    if name == "ga":
        from pymoo.algorithms.soo.nonconvex.ga import GA
        return GA(pop_size=pop_size, **common)
    raise AssertionError(name)


def _n_dirs(n_obj: int, p: int) -> int:
    from math import comb
    return comb(n_obj + p - 1, p)


__all__ = ["ALGORITHMS", "MixedMutation", "SeededSampling", "make_algorithm", "resolve_algorithm"]
