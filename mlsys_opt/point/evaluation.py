"""One configuration (or a small grid) of a scenario or a space -> every output, as pandas.

- :func:`evaluate`: the public entry point (``mlsys_opt.evaluate``): a pandas
  Series for one configuration, a DataFrame for a grid (lists of values).
- :func:`evaluate_frame`: (DataFrame, Space) behind it (used by ``mlsys-opt evaluate``).
- :func:`point_space`: a validated ``Space`` of given parameter values (scalars
  fixed, lists as axes), e.g. for sensitivity or synthesis of one configuration.

Every parameter comes back in display form (catalog names, SI floats with the unit
in the column name), every scenario output, the constraint margins ``g_<name>``
(<= 0 feasible), ``feasible`` and ``binding_constraint``.  The scenario
equations are the seed 003 full-stack audit's (training) and seed 002's serving
walls, through ``mlsys_opt.sweeps.api.evaluate_params`` (the same jitted code a sweep runs).
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import MlsysOptError, SpecError
from ..scenarios import schema

DEFAULT_OBJECTIVES = {"training": ("time_to_train_s", "tco_usd", "carbon_kg"),
                      "serving": ("cost_per_mtok_usd", "carbon_per_mtok_kg", "p99_latency_s")}
MAX_GRID = 100_000
_EVAL_FNS: dict = {}


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _is_list(v: Any) -> bool:
    return isinstance(v, (list, tuple, np.ndarray, pd.Series))


def point_space(scenario: str, params: Mapping[str, Any], *, catalog=None, limits: Mapping[str, Any] | None = None):
    """A validated `Space` of the given parameters: scalars fixed, lists as axes.

    params: display values as in a spec ({"hardware": "h100_sxm", "n_tokens": "15e12 token",
    "tp": [4, 8]}).  limits: [constraints] keys ({"max_time": "30 day"}).
    """
    from ..space.spec import load_space
    if scenario not in schema.PARAMS:
        from ..errors import did_you_mean
        raise MlsysOptError(f"unknown scenario {scenario!r}{did_you_mean(str(scenario), schema.SCENARIOS)} "
                            f"(allowed: {', '.join(schema.SCENARIOS)})")
    fixed, axes = {}, {}
    for k, v in params.items():
        if _is_list(v):
            axes[k] = [_plain(x) for x in v]
        else:
            fixed[k] = _plain(v)
    if not axes:      # a space needs one axis: a one-value axis of a parameter left at its default
        key = next((k for k, spec in schema.PARAMS[scenario].items() if k not in fixed and spec.default is not None),
                   next(iter(fixed), "hardware"))
        axes[key] = [fixed.pop(key)] if key in fixed else [schema.PARAMS[scenario][key].default]
    spec = {"name": f"{scenario}", "scenario": scenario, "fixed": fixed, "axes": axes,
            "constraints": dict(limits or {}),
            "objectives": {"minimize": list(DEFAULT_OBJECTIVES[scenario])}}
    try:
        return load_space(spec, catalog=catalog)
    except SpecError as exc:     # name the parameter, not the internal spec tables
        msg = str(exc)
        for table, word in (("fixed", ""), ("axes", ""), ("constraints", "limit ")):
            msg = msg.replace(f"<dict>: [{table}] ", word)
        raise SpecError(msg.replace("<dict>: ", "")) from None


def _eval_fn(space, dtype):
    """jit(evaluate_params) for the space's scenario, objectives and limits (cached)."""
    import jax
    import jax.numpy as jnp

    from .._compile import jit_options
    from ..sweeps.api import evaluate_params, scenario_options
    # everything the traced program depends on: the scenario's trace-time options too (one
    # micro-batch geometry when the space gives `microbatches`, the candidate set otherwise)
    key = (space.scenario, space.objectives, tuple(sorted(space.limits.items())), jnp.dtype(dtype).name,
           tuple(sorted(scenario_options(space).items())))
    if key not in _EVAL_FNS:     # a point or a small grid: compiled as the sensitivity kernels (mlsys_opt._compile)
        _EVAL_FNS[key] = jax.jit(lambda p, tables, eff: evaluate_params(space, p, tables, eff), **jit_options())
    return _EVAL_FNS[key]


def _grid_digits(space, params: Mapping[str, Any]) -> np.ndarray:
    """Digits of every combination of the axis values given (lists) - all of an axis when not given."""
    choices = []
    for axis in space.axes:
        raw = params.get(axis.name)
        if raw is None:                   # not given: the axis's first value (sweep.configurations)
            choices.append([{}])
        else:
            choices.append([{axis.name: _plain(v)} for v in (raw if _is_list(raw) else [raw])])
    combos = list(itertools.product(*choices))
    if len(combos) > MAX_GRID:
        raise MlsysOptError(f"evaluate: {len(combos):,} configurations; at most {MAX_GRID:,} "
                            "(use mlsys_opt.sweep for whole spaces)")
    return np.stack([space.digits_for({k: v for part in c for k, v in part.items()}) for c in combos])


def evaluate_frame(target: Any = "training", params: Mapping[str, Any] | None = None, *, eff=None,
                   catalog=None, limits: Mapping[str, Any] | None = None, dtype=None):
    """(DataFrame, Space): every configuration of `params` evaluated (see :func:`evaluate`)."""
    import jax.numpy as jnp

    from ..space.spec import Space, load_space
    from ..sweeps.api import NON_FINITE, add_human_columns, constraint_names, output_names
    from .config import resolve_config

    params = dict(params or {})
    dtype = jnp.float32 if dtype is None else dtype
    if isinstance(target, str) and target in schema.PARAMS:
        space = point_space(target, params, catalog=catalog, limits=limits)
        n = math.prod(space.radices)
        if n > MAX_GRID:
            raise MlsysOptError(f"evaluate: {n:,} configurations; at most {MAX_GRID:,} (use mlsys_opt.sweep)")
        digits = np.stack(np.unravel_index(np.arange(n), space.radices), axis=-1).astype(np.int32)
        p = space.param_values(digits, dtype)
    else:
        space = target if isinstance(target, Space) else load_space(target, catalog=catalog)
        if limits:
            raise MlsysOptError("evaluate: limits= applies to a scenario name; a space has its own [constraints]")
        overrides = {k: v for k, v in params.items() if k not in space.axis_names}
        for k, v in overrides.items():
            if _is_list(v):
                raise MlsysOptError(f"evaluate: {k} is not an axis of {space.name}; give one value "
                                    f"(axes: {', '.join(space.axis_names)})")
        digits = _grid_digits(space, params)
        if overrides:
            parts = [resolve_config(space, {**_labels_of(space, d), **overrides}, dtype)[2] for d in digits]
            p = {k: jnp.concatenate([q[k] for q in parts]) for k in parts[0]}
        else:
            p = space.param_values(digits, dtype)
    from ..scenarios.efficiency import DEFAULT_EFFICIENCY
    tables = space.catalog.tables(dtype=dtype)
    ev = _eval_fn(space, dtype)(p, tables, DEFAULT_EFFICIENCY if eff is None else eff)
    df = _param_frame(space, p)
    for name in output_names(space):
        df[name] = np.asarray(getattr(ev.outputs, name), np.float64).reshape(-1)
    df = add_human_columns(df)
    G = np.asarray(ev.G, np.float64).reshape(len(df), -1)
    cnames = constraint_names(space)
    for j, name in enumerate(cnames):
        df["g_" + name.replace("limit:", "limit_")] = G[:, j]
    finite = np.isfinite(np.asarray(ev.F, np.float64).reshape(len(df), -1)).all(axis=1) & np.isfinite(G).all(axis=1)
    df["feasible"] = finite & ((G <= 0).all(axis=1) if G.shape[1] else True)
    df["binding_constraint"] = [cnames[int(j)] for j in G.argmax(axis=1)] if G.shape[1] else ""
    # reason code of an infeasible configuration: index of its most violated constraint, or
    # len(constraints) = non_finite (a NaN/inf objective or constraint); -1 feasible -- the same
    # codes a sweep aggregates into SweepResult.infeasible_by
    code = np.where(df["feasible"].to_numpy(bool), -1,
                    np.where(finite, G.argmax(axis=1) if G.shape[1] else -1, len(cnames)))
    df["reason_code"] = code.astype(np.int64)
    reasons = tuple(cnames) + (NON_FINITE,)
    df["infeasible_reason"] = ["" if c < 0 else reasons[int(c)] for c in code]
    return df, space


def _labels_of(space, digits) -> dict:
    return {a.name: a.labels[int(d)] for a, d in zip(space.axes, digits)}


def _param_frame(space, p: Mapping[str, Any]) -> pd.DataFrame:
    """Every scenario parameter in display form: names for catalog/choice, SI floats (unit-suffixed)."""
    from ..space.spec import column_name
    cols = {}
    for name, spec in schema.PARAMS[space.scenario].items():
        values = np.asarray(p[name]).reshape(-1)
        if spec.kind == "catalog":
            names = space.catalog.names(spec.catalog_kind)
            cols[name] = [names[int(v)] for v in values]
        elif spec.kind == "choice":
            cols[name] = [spec.choices[int(v)] for v in values]
        elif spec.kind == "int":
            cols[name] = np.rint(values.astype(np.float64)).astype(np.int64)
        else:
            cols[column_name(space.scenario, name)] = values.astype(np.float64)
    return pd.DataFrame(cols)


def evaluate(target: Any = "training", *, eff=None, catalog=None, limits: Mapping[str, Any] | None = None,
             dtype=None, **params):
    """Evaluate one configuration (or a small grid) and return every output.

    Args:
      target: a scenario name ("training", "serving"), a ``Space``, or a spec
        path / name / dict (``load_space``).
      **params: parameter values as in a spec file: catalog names, choices,
        numbers or unit strings, e.g. ``hardware="h100_sxm", model="llama3_70b",
        n_accelerators=512, tp=8, region="quebec", n_tokens="1.24e12 token"``.
        With a scenario name, every required parameter (model, n_tokens /
        request_rate) must be given; the rest take their schema defaults.
        With a space, axis parameters pick values on the axes and other
        parameters override the space's constants.  A list makes a grid.
      limits: with a scenario name, [constraints] keys such as ``max_time="30 day"``.
      eff: an ``Efficiency`` (e.g. a calibration); catalog: a ``Catalog`` with user entries.

    Returns:
      a pandas Series (one configuration) or DataFrame (a grid, one row per
      configuration): every parameter (SI, unit in the column name), every
      scenario output (``time_to_train_s``, ``tco_usd``, ``carbon_kg``, ...),
      ``time_to_train_days``, the constraint margins ``g_<name>`` (<= 0 is
      feasible), ``feasible`` and ``binding_constraint`` (the largest g).

    Example:
      >>> mlsys_opt.evaluate("training", model="llama3_70b", hardware="h100_sxm",
      ...                    n_accelerators=512, tp=8, region="quebec",
      ...                    n_tokens="1.24e12 token")["time_to_train_days"]
    """
    df, _ = evaluate_frame(target, params, eff=eff, catalog=catalog, limits=limits, dtype=dtype)
    grid = any(_is_list(v) for v in params.values())
    return df if grid or len(df) != 1 else df.iloc[0]


__all__ = ["evaluate", "evaluate_frame", "point_space", "DEFAULT_OBJECTIVES", "MAX_GRID"]
