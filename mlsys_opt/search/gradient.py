"""Gradient optimisation (optax) of continuous knobs, with the discrete axes enumerated around it.

Mixed problems split naturally: categorical/discrete choices (hardware,
region, tp, pp, precision, ...) are enumerated, and for EACH combination the
continuous knobs (checkpoint interval, efficiency, overlap, fleet size treated
as a real number, catalog fields, efficiency leaves) are optimised by Adam on

    L(z) = s · ln J(x) + μ Σ_c relu(g_c(x))²,   x = reparam(z)

(s = +1 to minimise J, -1 to maximise; g = structural constraints and spec
limits, relative margins, <= 0 feasible; μ = 1e4; the integrality constraint
"divisibility" is left to the rounding step, its sawtooth would trap the
real-valued solve between multiples), vmapped over all
combinations in one jitted ``lax.scan``.  Knobs use the log / bounded-sigmoid
reparametrisation of ``synthesis.reparam``.  Integer knobs are optimised as
reals, then the floor and ceiling on their grid (1; tp·pp·ep for
n_accelerators, so the divisibility constraint can hold) are both evaluated
and the best feasible neighbour kept.

Source: Kingma & Ba (2015) Adam via optax; the first-order Young/Daly
optimum sqrt(2δM) (seed 000 section 7) is the test's closed form.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._compile import jit_options
from ..errors import MlsysOptError, did_you_mean
from ..point.config import (
    gather_local,
    input_value,
    one_config,
    output_names,
    parse_param,
    read_input,
    resolve_config,
    run_scenario,
    with_inputs,
)
from ..scenarios import schema
from ..walls._masked import safe_div
from .optim import adam_scan, decaying_adam
from .synthesis import PENALTY, _resolve_free, penalty_weights, reparam


class OptimizeResult(NamedTuple):
    """Per discrete combination: the optimised knobs, sorted best first.

    frame: DataFrame (axis columns of the enumerated combinations, knob
      values, objective, feasible, and the knob values before rounding with a
      ``_continuous`` suffix); best: its first row.
    knobs: knob names; values: [n, n_knobs] (integer knobs rounded);
    continuous: [n, n_knobs] the real-valued optimum; objective: [n];
    feasible: bool [n].
    """
    frame: pd.DataFrame
    best: pd.Series
    knobs: tuple[str, ...]
    values: np.ndarray
    continuous: np.ndarray
    objective: np.ndarray
    feasible: np.ndarray


def _start_values(space, scenario, p, knobs, base_config, catalog):
    """Starting value of every knob that is a scenario parameter (config, axis mean, constant)."""
    out = {}
    for k in knobs:
        if k not in schema.PARAMS[scenario]:
            continue
        if base_config and k in base_config:
            out[k] = float(parse_param(scenario, k, base_config[k], catalog))
        elif space is not None and k in space.axis_names:
            vals = space.axes[space.axis_names.index(k)].values.astype(float)
            pos = vals[vals > 0]
            out[k] = float(np.exp(np.mean(np.log(pos)))) if len(pos) else 0.0
        else:
            out[k] = float(np.asarray(p[k])[0])
    return out


def optimize_continuous(target, knobs: Sequence[str], *, base_config: dict | None = None,
                        objective: str | None = None, sense: str | None = None, limits: dict | None = None,
                        steps: int = 600, learning_rate: float = 0.05, eff=None, dtype=None,
                        max_combos: int = 4096) -> OptimizeResult:
    """Optimise continuous knobs for every combination of the discrete axes of a space.

    Args:
      target: a ``Space`` (or spec path/dict): its axes that are not knobs are
        enumerated (at most `max_combos` combinations), its limits apply and
        its first objective is the default; or a scenario name with
        `base_config` (one combination).
      knobs: inputs to optimise: scenario parameters ("checkpoint_interval",
        "n_accelerators", "efficiency", ...), catalog fields of the chosen rows
        ("hardware.mem_bw_bytes_per_s") or efficiency leaves ("eff.mem_bw_eff").
      base_config: display values overriding the space's constants / giving
        the scenario's parameters, and knob starting values (a knob that is an
        axis starts at the geometric mean of the axis; starts must be > 0).
      objective, sense: output to optimise and "min"/"max" (default: the
        space's first objective, else "time_to_train_s"/"p99_latency_s"; the
        output's schema sense).
      limits: extra {output: (sense, SI value)} limits ("max": y <= value).
      steps, learning_rate: Adam steps and initial rate (decays ×0.01).

    Returns:
      OptimizeResult, best combination first (feasible before infeasible).

    Steps (one function each): the discrete combinations and their parameters
    (:func:`_combinations`), the objective (:func:`_objective`), the per-combination
    kernels (:func:`_kernels`), the vmapped Adam solve (:func:`_solve`), the
    integer candidates (:func:`_integer_candidates`), the pick among them
    (:func:`_pick`) and the result frame (:func:`_frame`).
    """
    from ..scenarios.efficiency import DEFAULT_EFFICIENCY
    from ..space.spec import Space, load_space

    dtype = jnp.float64 if dtype is None and jax.config.jax_enable_x64 else (dtype or jnp.float32)
    if isinstance(target, (dict, str)) and not (isinstance(target, str) and target in schema.PARAMS):
        target = load_space(target)
    space = target if isinstance(target, Space) else None
    scenario = space.scenario if space is not None else str(target)
    knobs = _resolve_free(scenario, knobs)
    if space is not None:
        digits, p, catalog = _combinations(space, knobs, base_config, dtype, max_combos)
        lim = dict(space.limits)
        if objective is None:
            objective, sense = space.objectives[0] if sense is None else (space.objectives[0][0], sense)
    else:
        if base_config is None:
            raise MlsysOptError("optimize_continuous: with a scenario name, give base_config")
        _, _, p, catalog = resolve_config(scenario, base_config, dtype)
        digits, lim = None, {}
    lim.update(limits or {})
    objective, sign = _objective(scenario, objective, sense)
    starts = _start_values(space, scenario, p, knobs, base_config, catalog)
    n = int(np.shape(p["hardware"])[0])
    for k, v in starts.items():
        p[k] = jnp.full((n,), v, dtype)
    eff = DEFAULT_EFFICIENCY if eff is None else eff
    eff = type(eff)(*[jnp.asarray(x, dtype) for x in eff])
    args = (p, gather_local(catalog.tables(dtype=dtype), p), jnp.asarray(p["precision"], jnp.int32))
    limits_t = tuple((o, s, float(v)) for o, (s, v) in lim.items())
    setup, evaluate = _kernels(scenario, knobs, eff, objective, limits_t, dtype)
    x_cont = _solve(scenario, knobs, setup, evaluate, args, sign, limits_t, steps, learning_rate, dtype)
    C = _integer_candidates(scenario, knobs, x_cont, p)

    def score(pc, lc, pr, xc):
        p1, xs, x0_ = setup(pc, lc, pr)
        return jax.vmap(lambda x: evaluate(x, p1, lc, xs, x0_))(xc)

    J, G = jax.jit(jax.vmap(score), **jit_options())(*args, jnp.asarray(C, dtype))
    values, obj, feas = _pick(C, np.asarray(J, np.float64), np.asarray(G, np.float64), sign)
    frame = _frame(space, digits, n, knobs, values, x_cont, objective, obj, feas)
    order = np.lexsort((sign * obj, ~feas))
    frame = frame.iloc[order].reset_index(drop=True)
    return OptimizeResult(frame, frame.iloc[0], tuple(knobs), values[order], x_cont[order], obj[order],
                          feas[order])


def _combinations(space, knobs, base_config, dtype, max_combos: int):
    """(digits [n, n_axes], parameters {param: [n]}, catalog) of the discrete combinations: every
    value of the axes that are not knobs, less those base_config fixes; base_config's other
    entries override the space's constants."""
    free_axes = [k for k, a in enumerate(space.axes) if a.name not in knobs]
    n_combo = int(np.prod([space.radices[k] for k in free_axes])) if free_axes else 1
    if n_combo > max_combos:
        raise MlsysOptError(f"optimize_continuous: {n_combo:,} discrete combinations of "
                            f"{', '.join(space.axes[k].name for k in free_axes)} exceed max_combos="
                            f"{max_combos:,}; fix some axes in base_config or raise max_combos")
    grid = list(itertools.product(*[range(space.radices[k]) for k in free_axes]))
    digits = np.zeros((len(grid), len(space.axes)), np.int32)
    if free_axes:
        digits[:, free_axes] = np.asarray(grid, np.int32)
    overrides = {k: v for k, v in (base_config or {}).items() if k not in space.axis_names}
    axis_fixed = {k: v for k, v in (base_config or {}).items() if k in space.axis_names and k not in knobs}
    if axis_fixed:
        d0 = space.digits_for(axis_fixed)
        keep = np.all([digits[:, space.axis_names.index(k)] == d0[space.axis_names.index(k)]
                       for k in axis_fixed], axis=0)
        digits = digits[keep]
    _, _, p, catalog = resolve_config(space, digits, dtype)
    _, _, p_over, _ = (resolve_config(space, overrides, dtype) if overrides else (0, 0, {}, 0))
    for k in overrides:
        p[k] = jnp.full_like(p[k], np.asarray(p_over[k])[0])
    return digits, p, catalog


def _objective(scenario: str, objective: str | None, sense: str | None) -> tuple[str, float]:
    """(objective, sign): +1 to minimise, -1 to maximise; MlsysOptError for an unknown output."""
    outs_allowed = output_names(scenario, None)
    if objective is None:
        objective = "time_to_train_s" if scenario == "training" else "p99_latency_s"
    if objective not in outs_allowed:
        raise MlsysOptError(f"optimize_continuous: objective {objective!r} is not an output of the "
                            f"{scenario} scenario{did_you_mean(objective, outs_allowed)} "
                            f"(allowed: {', '.join(outs_allowed)})")
    sense = sense or schema.OUTPUTS[scenario][objective].sense
    return objective, 1.0 if sense == "min" else -1.0


def _kernels(scenario: str, knobs, eff, objective: str, limits_t: tuple, dtype):
    """(setup, evaluate) of one combination: ``setup(p, local tables, precision) -> (p1, xs, x0)``
    (its one-config parameters, the knobs' inputs and start values) and ``evaluate(x, p1, lc, xs, x0)
    -> (objective, constraints g)`` with the knobs scaled from x0 to x."""
    def setup(pc, lc, pr):
        p1 = one_config(pc)
        xs = [jnp.asarray(read_input(k, p1, lc, eff), dtype) for k in knobs]
        x0 = jnp.stack([input_value(k, x, pr) for k, x in zip(knobs, xs)])
        return p1, xs, x0

    def evaluate(x, p1, lc, xs, x0):
        new = {k: xs[i] * safe_div(x[i], x0[i], fill=1.0) for i, k in enumerate(knobs)}   # x0 <= 0: refused below
        outs, g = run_scenario(scenario, *with_inputs(new, p1, lc, eff), limits_t, dtype)
        return jnp.reshape(getattr(outs, objective), (-1,))[0].astype(dtype), g

    return setup, evaluate


def _solve(scenario: str, knobs, setup, evaluate, args, sign: float, limits_t: tuple, steps: int,
           learning_rate: float, dtype) -> np.ndarray:
    """The real-valued optimum [n, n_knobs] of every combination: Adam on the penalised log-objective
    (module docstring), vmapped over the combinations in one jitted lax.scan."""
    x_of = reparam(scenario, knobs)
    tiny = float(jnp.finfo(dtype).tiny)
    w_g = jnp.asarray(penalty_weights(scenario, len(limits_t)), dtype)
    opt = decaying_adam(learning_rate, steps)

    def solve(pc, lc, pr):
        p1, xs, x0 = setup(pc, lc, pr)

        def loss(z):
            j, g = evaluate(x_of(z, x0), p1, lc, xs, x0)
            return sign * jnp.log(jnp.maximum(j, tiny)) + PENALTY * jnp.sum(w_g * jax.nn.relu(g) ** 2)

        z, _, _ = adam_scan(loss, jnp.zeros((len(knobs),), dtype), opt, steps)
        return x_of(z, x0), x0

    x_cont, x0 = jax.jit(jax.vmap(solve), **jit_options())(*args)     # small batches: mlsys_opt._compile
    x_cont, x0 = np.asarray(x_cont, np.float64), np.asarray(x0, np.float64)
    if np.any(x0 <= 0):
        bad = knobs[int(np.argmax(np.any(x0 <= 0, axis=0)))]
        raise MlsysOptError(f"optimize_continuous: knob {bad!r} starts at 0; give a positive start in "
                            "base_config (e.g. checkpoint_interval = \"1 h\")")
    return x_cont


def _integer_candidates(scenario: str, knobs, x_cont: np.ndarray, p: dict) -> np.ndarray:
    """[n, n_cand, n_knobs]: every floor / ceiling choice of the integer knobs on their grid (1;
    tp·pp·ep for n_accelerators), the real knobs as solved."""
    n = x_cont.shape[0]
    int_knobs = [i for i, k in enumerate(knobs) if schema.PARAMS[scenario].get(k) is not None
                 and schema.PARAMS[scenario][k].kind == "int"]
    pn = {k: np.asarray(v) for k, v in p.items()}
    stepv = np.ones((n, len(knobs)))
    for i in int_knobs:
        if knobs[i] == "n_accelerators":
            stepv[:, i] = np.rint(pn["tp"] * pn["pp"] * pn.get("ep", np.ones(n)))
    cands = []
    for bits in itertools.product(*[(0, 1)] * len(int_knobs)):
        c = x_cont.copy()
        for b, i in zip(bits, int_knobs):
            lo = schema.PARAMS[scenario][knobs[i]].low or 0.0
            q = np.floor(x_cont[:, i] / stepv[:, i]) if b == 0 else np.ceil(x_cont[:, i] / stepv[:, i])
            c[:, i] = np.maximum(q * stepv[:, i], max(lo, 1.0) if lo else 0.0)
        cands.append(c)
    return np.stack(cands, axis=1)


def _pick(C: np.ndarray, J: np.ndarray, G: np.ndarray, sign: float):
    """(values [n, n_knobs], objective [n], feasible [n]) of each combination's best candidate:
    the best feasible one, else the one of least total violation."""
    ok = np.all(G <= 0, axis=2) if G.shape[2] else np.ones(J.shape, bool)
    cv = np.maximum(G, 0).sum(axis=2) if G.shape[2] else np.zeros(J.shape)
    key = np.where(ok, sign * J, np.inf)
    pick = np.where(ok.any(axis=1), np.argmin(key, axis=1), np.argmin(cv, axis=1))
    rows = np.arange(len(C))
    return C[rows, pick], J[rows, pick], ok[rows, pick]


def _frame(space, digits, n: int, knobs, values, x_cont, objective: str, obj, feas) -> pd.DataFrame:
    """Axis columns of the combinations (not the knobs), knob values and their continuous optimum,
    objective and feasibility, in combination order."""
    frame = space.labels(digits) if space is not None else pd.DataFrame(index=range(n))
    if space is not None:
        frame = frame[[c for c in frame.columns if c not in knobs]]
    for i, k in enumerate(knobs):
        frame[k] = values[:, i]
        frame[f"{k}_continuous"] = x_cont[:, i]
    frame[objective] = obj
    frame["feasible"] = feas
    return frame


__all__ = ["OptimizeResult", "optimize_continuous"]
