"""A design space as ONE vectorised pymoo ``Problem``, and ``run_search`` over it.

Encoding (STYLE.md §3.3): the variables are the axis digits of the space,
integers ``0 <= x_k <= radix_k - 1`` (axes with a single value are held at
digit 0 and are not variables).  ``_evaluate`` receives the whole population
``X[n_pop, n_var]`` and evaluates it in one jitted call (digits ->
``Space.param_values`` -> scenario -> F, G).  Every call is padded to one
batch size, the next power of two >= pop_size (>= 32), so a run compiles
once, and later runs on the same space and size reuse the compilation.

    F = objectives in minimize sense (maximized outputs negated)
    G = structural constraints, then one column per spec limit
        ((out - limit)/|limit| for a maximum), <= 0 feasible (pymoo convention)

exactly as the sweep computes them (``mlsys_opt.sweeps.api.evaluate_params``), so
a search front and a sweep front are directly comparable.

Every evaluated configuration is kept in an archive (digits, F, G, feasibility),
and the returned front is the exact non-dominated set of the FEASIBLE points
evaluated over the whole run, not only of the final population.  Ties
(identical objective vectors) keep the configuration with the lowest index in
the space, the sweep's rule (``mlsys_opt.sweeps.pareto``).  When none was
feasible, ``near_miss`` holds the least-violating configuration evaluated and
each constraint's closest one, by the sweep's rule (``sweeps.near_miss``) over
the whole archive: pymoo's own answer (``Result.opt``, the least infeasible of
the final population, by the same total violation) can only be as close.

Operators (pymoo mixed-integer guide; ``pymoo_algorithms``): integer random
sampling, SBX and polynomial mutation on the digits with ``RoundingRepair``,
duplicate elimination; categorical axes (catalog names, choices) get a
uniform resampling mutation instead, since "h100 + 1 = h200" carries no
meaning.  Distribution indices η_c = η_m = 5 (tuned on spaces/capstone.toml,
see benchmarks/pareto_quality.py).
Optionally (``seed_frac`` > 0) the initial population is seeded with the
per-objective best and the non-dominated feasible points of a random sample,
which the evaluation count includes.

Source: Deb et al. 2002 (NSGA-II), Deb & Jain 2014 (NSGA-III), pymoo 0.6
(Blank & Deb 2020) ``core/problem.py`` vectorised ``_evaluate`` contract.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from pymoo.core.problem import Problem

from ..errors import MlsysOptError
from ..sweeps.near_miss import total_violation
from ..sweeps.pareto import nondominated_host
from .pymoo_algorithms import make_algorithm, resolve_algorithm

MIN_BUCKET = 32
MOEAD_PENALTY = 1e3   # MOEA/D has no constraint handling: F + penalty · total violation


class SearchResult(NamedTuple):
    """What ``run_search`` returns.

    front: DataFrame like ``SweepResult.front`` (axis columns decoded, every
      scenario output with its unit suffix, human columns), one row per
      non-dominated feasible configuration found, sorted by the first objective.
    digits: int32 [n_front, n_axes] of those rows.  F: float64 [n_front, n_obj]
      their objectives in minimize sense.
    n_evaluated: configurations evaluated (seeding sample included; padding not).
    n_feasible: feasible configurations among them (with repeats).
    elapsed_s: wall time of the whole call, s (compilation included).
    algorithm, seed: as run.
    archive: (digits int32 [n, n_axes], F float64 [n, n_obj], feasible bool [n],
      position int64 [n]) of every evaluation in order, for anytime analysis
      (``front_at``); position = the configuration's index in the space.
    near_miss: when no evaluated configuration is feasible, the least-violating one and each
      constraint's closest (``sweeps.near_miss.NearMiss``, the sweep's rule over the archive); else None.
    """
    front: pd.DataFrame
    digits: np.ndarray
    F: np.ndarray
    n_evaluated: int
    n_feasible: int
    elapsed_s: float
    algorithm: str
    seed: int
    archive: tuple
    exhaustive: bool = False    # the space had <= evals configurations: every one was evaluated (exact front)
    near_miss: object = None    # sweeps.near_miss.NearMiss | None


# --------------------------------------------------------------------------- evaluation

_EVAL_CACHE: dict = {}


def _bucket(n: int) -> int:
    return max(MIN_BUCKET, 1 << max(0, int(n - 1).bit_length()))


def batch_evaluator(space, tables=None, eff=None, dtype=jnp.float32, batch_size: int | None = None) -> Callable:
    """Host callable ``digits int[n, n_axes] -> (F, G, aux)`` as float64 numpy arrays.

    F [n, n_obj] minimize sense, G [n, n_constr] (<= 0 feasible), aux [n,
    n_outputs] every scenario output in ``sweep.output_names(space)`` order.
    One jitted call per batch.  With `batch_size`, every call is cut into
    chunks of exactly that many rows (the last one padded by repeating its
    first row): one compilation for the whole run.  Without it, a call is
    padded to the next power of two (>= 32).
    """
    from ..catalog import load_catalog
    from ..scenarios.efficiency import DEFAULT_EFFICIENCY
    from ..sweeps.api import evaluate_params, output_names

    if tables is None:
        tables = (space.catalog if space.catalog is not None else load_catalog()).tables(dtype=dtype)
    eff = DEFAULT_EFFICIENCY if eff is None else eff
    key = (id(space), jnp.dtype(dtype).name)
    if key not in _EVAL_CACHE:
        names = output_names(space)

        def run(digits, tables, eff):
            ev = evaluate_params(space, space.param_values(digits, dtype), tables, eff)
            n = ev.F.shape[0]
            aux = jnp.stack([jnp.broadcast_to(jnp.asarray(getattr(ev.outputs, k), dtype), (n,))
                             for k in names], axis=-1)
            return ev.F.astype(dtype), ev.G.astype(dtype), aux

        _EVAL_CACHE[key] = (space, jax.jit(run))   # holding `space` keeps its id unique
    fn = _EVAL_CACHE[key][1]

    def call(digits):
        n = len(digits)
        m = batch_size if batch_size is not None else _bucket(n)
        padded = np.concatenate([digits, np.repeat(digits[:1], m - n, axis=0)]) if m > n else digits
        from ..sweeps.sharding import shard_rows      # rows split over the local devices (same numbers)
        F, G, aux = fn(shard_rows(padded), tables, eff)
        return (np.asarray(F, np.float64)[:n], np.asarray(G, np.float64)[:n],
                np.asarray(aux, np.float64)[:n])

    def evaluate(digits):
        digits = np.asarray(digits, np.int32).reshape(-1, len(space.axes))
        if len(digits) == 0:
            z = np.zeros((0, 0))
            return z, z, z
        step = batch_size if batch_size is not None else max(len(digits), 1)
        parts = [call(digits[s:s + step]) for s in range(0, len(digits), step)]
        return tuple(np.concatenate([q[i] for q in parts]) for i in range(3))

    return evaluate


class SpaceProblem(Problem):
    """Vectorised pymoo problem over the digits of a ``Space`` (never elementwise).

    Args:
      space: a ``mlsys_opt.space.Space``.
      tables: catalog ``Tables`` (default: the space's catalog, float32).
      eff: ``Efficiency`` (default ``DEFAULT_EFFICIENCY``).
      batch_size: rows per jitted call (one compilation; populations of up to
        this many rows take one call).
      penalty: if set, constraints are folded into the objectives,
        F + penalty · Σ max(G, 0), and the problem has no constraints (for
        algorithms without constraint handling, e.g. MOEA/D).  The archive
        keeps the raw F and the true feasibility.

    Attributes:
      active: indices of the axes that are variables (radix > 1).
      archive_digits / archive_F / archive_feasible: every evaluation, in order.
    """

    def __init__(self, space, tables=None, eff=None, batch_size: int = 256, penalty: float | None = None):
        from ..sweeps.api import constraint_names

        self.space = space
        self.radices = np.asarray(space.radices, np.int64)
        self.active = np.flatnonzero(self.radices > 1)
        if len(self.active) == 0:
            raise MlsysOptError(f"{space.source}: every axis of {space.name} has one value; "
                                "there is nothing to search (use the sweep or evaluate)")
        self.categorical = np.array([space.axes[k].kind in ("catalog", "choice") for k in self.active])
        self._eval = batch_evaluator(space, tables, eff, batch_size=batch_size)
        self._strides = _strides(space.radices)
        n_constr = len(constraint_names(space)) if penalty is None else 0
        self.penalty = penalty
        self._archive: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []   # digits, F, feasible, G
        self.on_evaluated = None           # callable(n) after each batch (run_search's progress bar)
        super().__init__(n_var=len(self.active), n_obj=len(space.objectives), n_ieq_constr=n_constr,
                         xl=np.zeros(len(self.active)), xu=(self.radices[self.active] - 1).astype(float),
                         vtype=int)

    def digits(self, X) -> np.ndarray:
        """Full digits int32 [n, n_axes] of population X [n, n_var] (inactive axes at 0)."""
        X = np.clip(np.rint(np.asarray(X, np.float64)), 0, self.radices[self.active] - 1).astype(np.int32)
        D = np.zeros((len(X), len(self.radices)), np.int32)
        D[:, self.active] = X
        return D

    def evaluate_digits(self, digits):
        """(F, G) of digits [n, n_axes], recorded in the archive."""
        F, G, _ = self._eval(digits)
        feasible = np.all(G <= 0, axis=1) if G.shape[1] else np.ones(len(F), bool)
        self._archive.append((np.asarray(digits, np.int32), F, feasible, G))
        if self.on_evaluated is not None:
            self.on_evaluated(len(F))
        return F, G

    def _evaluate(self, X, out, *args, **kwargs):
        F, G = self.evaluate_digits(self.digits(X))
        if self.penalty is not None and G.shape[1]:
            F = F + self.penalty * total_violation(G)[:, None]
        out["F"] = F
        if self.n_ieq_constr:
            out["G"] = G

    def archive(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(digits [n, n_axes], F [n, n_obj], feasible [n]) of every evaluation so far."""
        if not self._archive:
            return (np.zeros((0, len(self.radices)), np.int32), np.zeros((0, self.n_obj)), np.zeros(0, bool))
        d, f, ok, _ = zip(*self._archive)
        return np.concatenate(d), np.concatenate(f), np.concatenate(ok)

    def archive_G(self) -> np.ndarray:
        """G [n, n_constr] of every evaluation so far, in the order of :meth:`archive`."""
        return np.concatenate([a[3] for a in self._archive]) if self._archive else np.zeros((0, 0))

    def positions(self, digits) -> np.ndarray:
        """Index of each configuration in the space (int64; the sweep's tie-break key)."""
        return np.asarray(digits, np.int64) @ self._strides


def _strides(radices) -> np.ndarray:
    s = np.ones(len(radices), np.int64)
    for k in range(len(radices) - 2, -1, -1):
        s[k] = s[k + 1] * int(radices[k + 1])
    return s


def front_at(result: SearchResult, budgets) -> dict[int, np.ndarray]:
    """Non-dominated feasible F [m, n_obj] after the first b evaluations, for each b in budgets.

    Anytime view of a run from ``result.archive`` (used by the quality benchmark).
    """
    _, F, ok, pos = result.archive
    out, front_idx, start = {}, np.zeros(0, np.int64), 0
    for b in sorted(int(x) for x in budgets):
        b = min(b, len(F))
        new = np.arange(start, b)
        new = new[ok[new]]
        cand = np.concatenate([front_idx, new])
        front_idx = cand[nondominated_host(F[cand], pos[cand])]
        start = b
        out[b] = F[front_idx]
    return out


# --------------------------------------------------------------------------- initial population

def _seed_rows(problem: SpaceProblem, n_sample: int, pop_size: int, rng) -> np.ndarray:
    """Rows X [<= pop_size, n_var]: best of a random sample per objective, then its feasible front."""
    X = np.column_stack([rng.integers(0, int(h) + 1, size=n_sample) for h in problem.xu])
    X = np.unique(X, axis=0)
    rng.shuffle(X)
    F, G = problem.evaluate_digits(problem.digits(X))
    ok = np.all(G <= 0, axis=1) if G.shape[1] else np.ones(len(F), bool)
    cv = total_violation(G)                # (0 for every row when there are no constraints)
    picks: list[int] = []
    for j in range(F.shape[1]):           # per objective: best feasible, else least violating
        order = np.lexsort((F[:, j], cv)) if not ok.any() else np.flatnonzero(ok)[np.argsort(F[ok, j])]
        picks.extend(int(i) for i in order[:1])
    if ok.any():
        idx = np.flatnonzero(ok)
        nd = idx[nondominated_host(F[idx], problem.positions(problem.digits(X[idx])))]
        picks.extend(int(i) for i in nd)
    seen, rows = set(), []
    for i in picks:
        if i not in seen:
            seen.add(i)
            rows.append(X[i])
    return np.asarray(rows[:pop_size], np.int64).reshape(-1, problem.n_var)


# --------------------------------------------------------------------------- entry point

def _run(problem, name, space, evals, pop_size, seed, rng, exhaustive, verbose, seed_frac, mutation_prob,
         crossover_prob, eta_c, eta_m) -> None:
    """Evaluate the space (exhaustive), a random sample, or run the pymoo algorithm; results in the archive."""
    from pymoo.optimize import minimize

    if exhaustive:
        everything = np.stack(np.unravel_index(np.arange(space.size), space.radices), axis=1).astype(np.int32)
        for s in range(0, len(everything), 65536):
            problem.evaluate_digits(everything[s:s + 65536])
    elif name == "random":
        X = np.column_stack([rng.integers(0, int(h) + 1, size=evals) for h in problem.xu])
        for s in range(0, evals, 65536):
            problem.evaluate_digits(problem.digits(X[s:s + 65536]))
    else:
        n_seed = int(seed_frac * evals) if seed_frac > 0 else 0
        rows = _seed_rows(problem, n_seed, pop_size, rng) if n_seed >= 1 else None
        algo = make_algorithm(name, problem, pop_size=pop_size, seed_rows=rows, mutation_prob=mutation_prob,
                              crossover_prob=crossover_prob, eta_c=eta_c, eta_m=eta_m)
        remaining = max(1, evals - sum(len(a[1]) for a in problem._archive))
        minimize(problem, algo, ("n_eval", remaining), seed=seed, verbose=verbose)


def run_search(space, *, algorithm: str | None = None, evals: int | None = None, pop_size: int | None = None,
               seed: int | None = None, verbose: bool = False, tables=None, eff=None,
               progress: bool | None = None, seed_frac: float = 0.0, mutation_prob: float | None = None, crossover_prob: float = 0.9,
               eta_c: float = 5.0, eta_m: float = 5.0) -> SearchResult:
    """Evolutionary search of a design space's Pareto front with pymoo.

    Args:
      space: a ``Space`` or anything ``load_space`` accepts (path, name, dict).
      algorithm: one of ``ALGORITHMS`` (aliases allowed); default the spec's
        ``[search] algorithm``, else "nsga2".  "random" evaluates ``evals``
        uniform random configurations (a baseline).  "ga" needs one objective.
      evals: evaluation budget (default ``[search] evals``, else 20,000); a space of at most
        ``evals`` configurations is enumerated instead (``exhaustive``: the exact front).  The
        run may exceed it by less than one generation (RVEA converts it to a
        generation count and may stop short); ``n_evaluated`` is exact.
      pop_size: population size (default ``[search] pop_size``, else 200; the
        reference-direction algorithms use the largest Das-Dennis set that fits).
      seed: random seed (default ``[search] seed``, else 0); equal seeds give
        equal results.
      verbose: pymoo's per-generation log.
      progress: None (default): a tqdm bar of evaluations when stderr is a terminal or in a
        Jupyter kernel (as the sweep's); False: silent; True: always.
      tables, eff: catalog tables / efficiency model (defaults as the sweep).
      seed_frac: fraction of the budget spent on a random sample whose
        per-objective best and feasible front seed the initial population
        (default 0: off; it helped only with large populations, see
        benchmarks/pareto_quality.py).
      mutation_prob: per-variable mutation probability (default 1/n_var).
      crossover_prob, eta_c, eta_m: SBX probability and the SBX / polynomial
        mutation distribution indices.  Defaults (0.9, 5, 5) were tuned on the
        capstone space: low η spreads children over the short integer axes
        (η 15-20, pymoo's real-valued defaults, mostly reproduces the parents).

    Returns:
      SearchResult; ``front`` has the sweep front's columns.
    """
    from ..space.spec import Space, load_space
    from ..sweeps.api import add_human_columns, output_names
    from ..sweeps.engine import progress_bar

    t0 = time.perf_counter()
    if not isinstance(space, Space):
        space = load_space(space)
    settings = dict(getattr(space, "search", None) or {})
    name = resolve_algorithm(algorithm if algorithm is not None else settings.get("algorithm", "nsga2"))
    evals = int(evals if evals is not None else settings.get("evals", 20000))
    pop_size = int(pop_size if pop_size is not None else settings.get("pop_size", 200))
    seed = int(seed if seed is not None else settings.get("seed", 0))
    if progress not in (None, True, False):
        raise MlsysOptError(f"run_search: progress must be None (a bar when someone watches), True or False; "
                            f"got {progress!r}")
    if evals < 1 or pop_size < 2:
        raise MlsysOptError(f"run_search: evals must be >= 1 and pop_size >= 2; got evals={evals}, "
                            f"pop_size={pop_size}")
    pop_size = min(pop_size, max(2, evals))
    problem = SpaceProblem(space, tables, eff, batch_size=_bucket(pop_size),
                           penalty=MOEAD_PENALTY if name == "moead" else None)
    if name == "ga" and problem.n_obj != 1:
        raise MlsysOptError(f"algorithm 'ga' optimizes one objective; {space.name} has {problem.n_obj} "
                            f"({', '.join(n for n, _ in space.objectives)}); use nsga2/nsga3/... or keep one")
    rng = np.random.default_rng(seed)
    exhaustive = space.size <= evals       # a budget that covers the space: enumerate it, the front is exact
    bar = progress_bar(space.size if exhaustive else evals, progress, unit="eval", desc="search")
    problem.on_evaluated = bar.update if bar is not None else None
    try:
        _run(problem, name, space, evals, pop_size, seed, rng, exhaustive, verbose, seed_frac, mutation_prob,
             crossover_prob, eta_c, eta_m)
    finally:
        if bar is not None:
            bar.close()
    digits, F, ok = problem.archive()
    idx = np.flatnonzero(ok)
    front_idx = idx[nondominated_host(F[idx], problem.positions(digits[idx]))]
    fd = digits[front_idx]
    _, _, aux = problem._eval(fd)
    df = space.labels(fd)
    for k, col in enumerate(output_names(space)):
        df[col] = aux[:, k] if len(fd) else np.zeros(0)
    df = add_human_columns(df)
    order = np.argsort(F[front_idx, 0], kind="stable") if len(fd) else np.zeros(0, np.int64)
    df = df.iloc[order].reset_index(drop=True)
    near = None if ok.any() else _near_miss(problem, space, digits, F)
    return SearchResult(front=df, digits=fd[order], F=F[front_idx][order], n_evaluated=int(len(F)),
                        n_feasible=int(ok.sum()), elapsed_s=time.perf_counter() - t0, algorithm=name,
                        seed=seed, archive=(digits, F, ok, problem.positions(digits)), exhaustive=exhaustive,
                        near_miss=near)


def _near_miss(problem: SpaceProblem, space, digits, F):
    """The archive's near miss (``sweeps.near_miss``): its rows evaluated again for their outputs."""
    from ..scenarios import schema
    from ..sweeps.api import constraint_names, near_miss_frame
    from ..sweeps.near_miss import NearMiss, select, total_violation
    G = problem.archive_G()
    if not len(F) or not G.shape[1]:
        return None
    finite = np.isfinite(F).all(axis=1) & np.isfinite(G).all(axis=1)
    least, closest = select(G, finite, problem.positions(digits), len(schema.STRUCTURAL_CONSTRAINTS[space.scenario]))
    if least < 0:                    # no row with finite objectives and constraints
        return NearMiss(float("inf"), near_miss_frame(space, digits[:0], G[:0], np.zeros((0, 0))), {})
    picks = [least, *(int(i) for i in closest if i >= 0)]
    _, Gp, aux = problem._eval(digits[picks])
    frame = lambda k: near_miss_frame(space, digits[[picks[k]]], Gp[[k]], aux[[k]])
    n_hard = len(schema.STRUCTURAL_CONSTRAINTS[space.scenario])
    named = [c for c, i in zip(constraint_names(space)[n_hard:], closest) if i >= 0]
    return NearMiss(float(total_violation(G[[least]])[0]), frame(0), {c: frame(k + 1) for k, c in enumerate(named)})


__all__ = ["SpaceProblem", "SearchResult", "run_search", "batch_evaluator", "front_at"]
