"""Exact sensitivities of every scenario output to every continuous input (wall 21).

For a configuration c and an output y, the elasticity of y to an input x is

    e = ∂ln y / ∂ln x = (x / y) · ∂y/∂x        ("1 % more x gives e % more y")

computed exactly with forward-mode autodiff (``jax.jacfwd``), vmapped over
configurations.  Inputs ("parameters") are

- catalog values of the rows the configuration uses: ``hardware.<field>``
  (peak FLOP/s at the chosen precision, HBM bandwidth and capacity, scale-up
  bandwidth, TDP, price, cloud $/h, MTBF, ...), ``fabric.<field>`` (bandwidth,
  latency, ...), ``region.<field>`` (carbon intensity, PUE, WUE, $/kWh);
- the scenario's continuous parameters (schema kind "float": efficiency,
  overlap, checkpoint_bw, recovery, checkpoint_interval, n_tokens,
  request_rate, ...);
- the efficiency model's leaves, ``eff.<field>``.

How derivatives stay per configuration: the catalog rows a configuration
selects are gathered into a one-row "local tables" pytree and its catalog
codes are set to 0, so the scenario reads the same numbers but each
configuration owns its copy; ``jacfwd`` then differentiates w.r.t. those
copies.  Each input k is perturbed along t_k = x_k (t_k = 1 where x_k = 0),
so one Jacobian column is D_k = x_k ∂y/∂x_k: the elasticity is D_k / y and
the derivative D_k / x_k.  For a table row with one column per precision
(peak FLOP/s), t is the whole row, i.e. the elasticity of scaling every
precision's peak together, which equals the chosen precision's elasticity.
Where y = 0 the elasticity is 0; where x = 0 the elasticity is 0 and the
derivative is ∂y/∂x.

Source: seed 002 wall 21 ("∂Time/∂parameter ... the parameter with the
largest derivative is your bottleneck"); mlsysim SensitivitySolver (which
uses ±10 % finite differences; these are exact).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..errors import MlsysOptError, did_you_mean
from ..scenarios import schema

# table attribute of `Tables` -> catalog parameter that selects its row, and display prefix
TABLE_PARAM = {"hw": "hardware", "model": "model", "fabric": "fabric", "region": "region"}
# continuous catalog fields differentiated by default (booleans, codes and
# model-architecture integers are not continuous inputs)
TABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "hw": ("peak_flop_per_s", "mem_bw_bytes_per_s", "mem_capacity_bytes", "scaleup_bw_bytes_per_s",
           "tdp_w", "price_usd", "cloud_usd_per_hour", "mtbf_s", "injection_bw_bytes_per_s", "sram_bytes"),
    "fabric": ("bw_bytes_per_s", "latency_s", "bisection_frac", "oversubscription"),
    "region": ("carbon_gco2e_per_kwh", "pue", "wue_l_per_kwh", "electricity_usd_per_kwh"),
    "model": (),
}
CHUNK = 8192


class Sensitivities(NamedTuple):
    """Array form of a sensitivity run (what the DataFrame is built from).

    outputs: names [n_out]; parameters: names [n_in]; constraints: names [n_constr].
    y: [n, n_out] output values; value: [n, n_in] input values (SI);
    derivative: [n, n_out, n_in] ∂y/∂x (SI per SI); elasticity: [n, n_out, n_in];
    G: [n, n_constr] constraint values (<= 0 feasible; structural then limits).
    """
    outputs: tuple[str, ...]
    parameters: tuple[str, ...]
    constraints: tuple[str, ...]
    y: np.ndarray
    value: np.ndarray
    derivative: np.ndarray
    elasticity: np.ndarray
    G: np.ndarray


class Binding(NamedTuple):
    output: str
    parameter: str          # input with the largest |elasticity|
    elasticity: float
    constraint: str         # constraint with the largest g (closest to / beyond violation)
    g: float                # its value (<= 0 feasible)


# --------------------------------------------------------------------------- inputs

def parameter_names(scenario: str, tables=None) -> tuple[str, ...]:
    """Every differentiable input of `scenario`, in report order."""
    from ..scenarios.efficiency import Efficiency

    names = [f"{TABLE_PARAM[t]}.{f}" for t, fields in TABLE_FIELDS.items() for f in fields]
    names += [k for k, s in schema.PARAMS[scenario].items() if s.kind == "float"]
    names += [f"eff.{f}" for f in Efficiency._fields]
    return tuple(names)


def _select(scenario: str, parameters: Sequence[str] | None) -> tuple[str, ...]:
    allowed = parameter_names(scenario)
    if parameters is None:
        return allowed
    bad = [p for p in parameters if p not in allowed]
    if bad:
        raise MlsysOptError(f"sensitivity: {bad[0]!r} is not a continuous input of the {scenario} scenario"
                            f"{did_you_mean(bad[0], allowed)} (allowed: {', '.join(allowed)})")
    return tuple(parameters)


def _output_names(scenario: str, outputs: Sequence[str] | None) -> tuple[str, ...]:
    allowed = tuple(n for n, o in schema.OUTPUTS[scenario].items() if o.unit != "code")
    if outputs is None:
        return allowed
    if isinstance(outputs, str):
        outputs = (outputs,)
    bad = [o for o in outputs if o not in allowed]
    if bad:
        raise MlsysOptError(f"sensitivity: {bad[0]!r} is not a numeric output of the {scenario} scenario"
                            f"{did_you_mean(bad[0], allowed)} (allowed: {', '.join(allowed)})")
    return tuple(outputs)


# --------------------------------------------------------------------------- kernel

_KERNELS: dict = {}

_PREFIX_TABLE = {v: k for k, v in TABLE_PARAM.items()}


def one_config(p: dict) -> dict:
    """Scenario inputs of ONE configuration as [1] arrays with catalog codes set to row 0.

    p: {param: scalar} (one row of ``Space.param_values``); pairs with the
    one-row tables of :func:`gather_local`.
    """
    return {k: (jnp.zeros((1,), jnp.int32) if k in TABLE_PARAM.values() else jnp.reshape(v, (1,)))
            for k, v in p.items()}


def read_input(name: str, p1: dict, local, eff, prec=None):
    """Array of input `name` (table field [1, ...], parameter [1] or efficiency leaf [])."""
    if name.startswith("eff."):
        return jnp.asarray(getattr(eff, name[4:]))
    if "." in name:
        prefix, field = name.split(".", 1)
        return getattr(getattr(local, _PREFIX_TABLE[prefix]), field)
    return p1[name]


def input_value(name: str, x, prec):
    """The scalar value of an input array as people read it (peak: at the chosen precision)."""
    if name == "hardware.peak_flop_per_s":
        return x[0, prec]
    return jnp.reshape(x, (-1,))[0]


def with_inputs(new: dict, p1: dict, local, eff):
    """(p1, local, eff) with inputs replaced by `new` {name: array of the same shape}."""
    pp = dict(p1)
    tabs = {t: getattr(local, t) for t in TABLE_PARAM}
    e = dict(eff._asdict())
    for name, x in new.items():
        if name.startswith("eff."):
            e[name[4:]] = x
        elif "." in name:
            prefix, field = name.split(".", 1)
            t = _PREFIX_TABLE[prefix]
            tabs[t] = tabs[t]._replace(**{field: x})
        else:
            pp[name] = x
    return pp, type(local)(**tabs), type(eff)(**e)


def run_scenario(scenario: str, p1: dict, local, eff, limits=(), dtype=jnp.float32):
    """(outputs NamedTuple, g [n_constr]) of one configuration (structural, then limits)."""
    from ..scenarios import SCENARIO_FNS, params_from_dict

    outs, cons = SCENARIO_FNS[scenario](params_from_dict(scenario, p1), local, eff)
    g = [jnp.reshape(jnp.asarray(c, dtype), (-1,))[0] for c in cons]
    for out, sense, limit in limits:
        v = jnp.reshape(jnp.asarray(getattr(outs, out), dtype), (-1,))[0]
        scale = max(abs(float(limit)), 1e-30)
        g.append((v - limit) / scale if sense == "max" else (limit - v) / scale)
    return outs, (jnp.stack(g) if g else jnp.zeros((0,), dtype))


def output_vector(outs, names, dtype):
    return jnp.stack([jnp.reshape(jnp.asarray(getattr(outs, o), dtype), (-1,))[0] for o in names])


def _kernel(scenario: str, in_names: tuple, dtype):
    """jit(vmap(one-config Jacobian)); cached per (scenario, inputs, dtype).

    Returns per config, for EVERY numeric output (forward mode costs one pass
    per input whatever the number of outputs; selecting outputs happens on the
    host so every selection shares one compilation): y [n_out], values [n_in],
    derivative and elasticity [n_out, n_in], structural g [n_constr].  Spec
    limits are applied on the host too, so all spaces of a scenario share it.
    """
    key = (scenario, in_names, jnp.dtype(dtype).name)
    if key in _KERNELS:
        return _KERNELS[key]
    out_names = _output_names(scenario, None)

    def one(p, local, eff, prec):
        # p: {param: scalar}; local: one-row Tables (leading dim 1); prec: int32 scalar
        p1 = one_config(p)
        xs = [jnp.asarray(read_input(k, p1, local, eff), dtype) for k in in_names]
        values = jnp.stack([input_value(k, x, prec) for k, x in zip(in_names, xs)])
        tangents = [jnp.where(x != 0, x, jnp.ones_like(x)) for x in xs]

        def f(delta):
            new = {k: x + delta[i] * t for i, (k, x, t) in enumerate(zip(in_names, xs, tangents))}
            outs, g = run_scenario(scenario, *with_inputs(new, p1, local, eff), (), dtype)
            y = output_vector(outs, out_names, dtype)
            return y, (y, g)

        D, (y, g) = jax.jacfwd(f, has_aux=True)(jnp.zeros((len(in_names),), dtype))  # x ∂y/∂x
        nz_x = values != 0
        deriv = jnp.where(nz_x[None, :], D / jnp.where(nz_x, values, 1.0)[None, :], D)
        nz_y = y != 0
        elast = jnp.where(nz_y[:, None] & nz_x[None, :], D / jnp.where(nz_y, y, 1.0)[:, None], 0.0)
        return y, values, deriv, elast, g

    def batch(p, local, eff, prec):
        return jax.vmap(one, in_axes=(0, 0, None, 0))(p, local, eff, prec)

    _KERNELS[key] = jax.jit(batch)
    return _KERNELS[key]


def limit_g(limits, y_all: np.ndarray, all_names) -> np.ndarray:
    """Spec-limit constraint columns [n, n_limits] from output values (sweep convention)."""
    cols = []
    for out, (sense, limit) in limits.items():
        v = y_all[:, list(all_names).index(out)]
        scale = max(abs(float(limit)), 1e-30)
        cols.append((v - limit) / scale if sense == "max" else (limit - v) / scale)
    return np.stack(cols, axis=1) if cols else np.zeros((len(y_all), 0))


def gather_local(tables, p: dict) -> Any:
    """Tables whose every field is [n, 1, ...]: the rows each configuration selects.

    p: {param: [n]} with int32 catalog codes (``Space.param_values``).  vmapped
    over n, each configuration sees one-row tables and code 0 (:func:`one_config`).
    """
    out = {}
    for t, param in TABLE_PARAM.items():
        tab = getattr(tables, t)
        idx = jnp.asarray(p[param], jnp.int32)
        out[t] = type(tab)(*[jnp.take(jnp.asarray(f), idx, axis=0)[:, None] for f in tab])
    return type(tables)(**out)


# --------------------------------------------------------------------------- configuration handling

def resolve_config(target, config, dtype):
    """-> (scenario, space | None, p dict of [n] arrays, catalog)."""
    from ..catalog import load_catalog
    from ..space.spec import Space, load_space

    if isinstance(target, (str, dict)) and not (isinstance(target, str) and target in schema.PARAMS):
        target = load_space(target)
    if isinstance(target, Space):
        space = target
        catalog = space.catalog if space.catalog is not None else load_catalog()
        if isinstance(config, dict):
            axis_part = {k: v for k, v in config.items() if k in space.axis_names}
            digits = space.digits_for(axis_part)[None, :]
            p = space.param_values(digits, dtype)
            for k, raw in config.items():
                if k not in space.axis_names:
                    p[k] = jnp.full((1,), _parse(space.scenario, k, raw, catalog), p[k].dtype
                                    if k in p else dtype)
        else:
            digits = np.asarray(config, np.int32).reshape(-1, len(space.axes))
            p = space.param_values(digits, dtype)
        return space.scenario, space, p, catalog
    if isinstance(target, str):
        scenario, catalog = target, load_catalog()
        if not isinstance(config, dict):
            raise MlsysOptError("sensitivity: with a scenario name, config must be a dict of parameter values "
                                "(digits need a space)")
        params = schema.PARAMS[scenario]
        missing = [k for k, s in params.items() if s.default is None and k not in config]
        if missing:
            raise MlsysOptError(f"sensitivity: the {scenario} scenario needs {', '.join(missing)} in config")
        p = {}
        for k, spec in params.items():
            v = _parse(scenario, k, config.get(k, spec.default), catalog)
            p[k] = jnp.full((1,), v, jnp.int32 if spec.kind in ("catalog", "choice") else dtype)
        for k in config:
            if k not in params:
                _parse(scenario, k, config[k], catalog)     # raises with a suggestion
        return scenario, None, p, catalog
    raise MlsysOptError(f"sensitivity: expected a Space, a spec path/dict or a scenario name "
                        f"({', '.join(schema.SCENARIOS)}); got {type(target).__name__}")


def _parse(scenario: str, name: str, raw, catalog):
    """SI value / code of one display value (spec rules of ``space.py``)."""
    from ..space.values import BadValue, parse_value

    params = schema.PARAMS[scenario]
    if name not in params:
        raise MlsysOptError(f"{name!r} is not a parameter of the {scenario} scenario"
                            f"{did_you_mean(name, params)} (allowed: {', '.join(params)})")
    try:
        return parse_value(params[name], raw, catalog)[1]
    except BadValue as exc:
        raise MlsysOptError(f"{name}: {exc}") from None


# --------------------------------------------------------------------------- public API

def sensitivity_arrays(target, config, *, outputs=None, parameters=None, eff=None, tables=None,
                       dtype=None, chunk: int = CHUNK) -> Sensitivities:
    """Exact derivatives and elasticities as arrays (see :class:`Sensitivities`).

    Args: as :func:`sensitivity`.  Configurations are processed in padded
    chunks of `chunk` rows (one compilation per chunk size).
    """
    from ..scenarios.efficiency import DEFAULT_EFFICIENCY
    from ..sweeps.api import constraint_names

    dtype = jnp.float64 if dtype is None and jax.config.jax_enable_x64 else (dtype or jnp.float32)
    scenario, space, p, catalog = resolve_config(target, config, dtype)
    out_names = _output_names(scenario, outputs)
    in_names = _select(scenario, parameters)
    tables = catalog.tables(dtype=dtype) if tables is None else tables
    eff = DEFAULT_EFFICIENCY if eff is None else eff
    eff = type(eff)(*[jnp.asarray(x, dtype) for x in eff])
    cnames = (constraint_names(space) if space is not None else schema.STRUCTURAL_CONSTRAINTS[scenario])
    kernel = _kernel(scenario, in_names, dtype)
    n = int(np.shape(p["hardware"])[0])
    size = min(chunk, max(8, 1 << max(0, (n - 1).bit_length())))   # >= 8: small batches share a shape
    parts = []
    for s in range(0, n, size):
        m = min(size, n - s)
        pc = {k: jnp.asarray(v)[s:s + m] for k, v in p.items()}
        if m < size:
            pc = {k: jnp.concatenate([v, jnp.repeat(v[:1], size - m, axis=0)]) for k, v in pc.items()}
        local = gather_local(tables, pc)
        prec = jnp.asarray(pc["precision"], jnp.int32)
        res = kernel(pc, local, eff, prec)
        parts.append([np.asarray(r)[:m] for r in res])
    y, value, deriv, elast, G = (np.concatenate([q[i] for q in parts]) for i in range(5))
    all_names = _output_names(scenario, None)
    if space is not None:
        G = np.concatenate([G, limit_g(space.limits, y, all_names)], axis=1)
    sel = [all_names.index(o) for o in out_names]
    return Sensitivities(out_names, in_names, tuple(cnames), y[:, sel], value, deriv[:, sel], elast[:, sel], G)


def sensitivity(target, config, *, outputs=None, parameters=None, eff=None, tables=None,
                dtype=None) -> pd.DataFrame:
    """Elasticities ∂ln y/∂ln x of scenario outputs to every continuous input, long form.

    Args:
      target: a ``Space`` (or spec path/dict) or a scenario name ("training", "serving").
      config: one configuration as a dict of display values, e.g.
        ``{"hardware": "h100_sxm", "model": "llama3_70b", "n_accelerators": 512, "tp": 8}``
        (with a space: axis values pick the digits, other keys override the
        space's constants; with a scenario name: every required parameter),
        or, with a space, digits int[n, n_axes] (a batch).
      outputs: output names (default every numeric output of the scenario).
      parameters: input names (default :func:`parameter_names`).
      eff: an ``Efficiency`` (default ``DEFAULT_EFFICIENCY``); tables: catalog tables.
      dtype: float32/float64 (default float64 when jax x64 is on, else float32).

    Returns:
      DataFrame with columns config (row of the batch), output, output_value,
      parameter, value (SI), derivative (∂y/∂x, SI/SI), elasticity (∂ln y/∂ln x),
      rank (1 = largest |elasticity| for that config and output).
      ``df.attrs["constraints"]`` holds the constraint values (DataFrame, one
      row per config, <= 0 feasible) used by :func:`binding`.
    """
    s = sensitivity_arrays(target, config, outputs=outputs, parameters=parameters, eff=eff,
                           tables=tables, dtype=dtype)
    n, n_out, n_in = s.elasticity.shape
    absd = np.abs(s.elasticity)
    order = np.argsort(-absd, axis=2, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(1, n_in + 1)[None, None, :].repeat(n, 0).repeat(n_out, 1), axis=2)
    df = pd.DataFrame({
        "config": np.repeat(np.arange(n), n_out * n_in),
        "output": np.tile(np.repeat(np.asarray(s.outputs, object), n_in), n),
        "output_value": np.repeat(s.y.reshape(-1), n_in),
        "parameter": np.tile(np.asarray(s.parameters, object), n * n_out),
        "value": np.repeat(s.value[:, None, :], n_out, axis=1).reshape(-1),
        "derivative": s.derivative.reshape(-1),
        "elasticity": s.elasticity.reshape(-1),
        "rank": rank.reshape(-1),
    })
    df.attrs["constraints"] = pd.DataFrame(s.G, columns=list(s.constraints))
    return df


def binding(df: pd.DataFrame, output: str, *, config: int = 0) -> Binding:
    """The binding input of `output` (largest |elasticity|) and the binding constraint.

    The binding constraint is the one with the largest g (closest to, or
    furthest beyond, violation; g <= 0 is feasible).
    """
    rows = df[(df["config"] == config) & (df["output"] == output)]
    if rows.empty:
        outs = sorted(set(df["output"]))
        raise MlsysOptError(f"binding: no rows for output {output!r} (config {config})"
                            f"{did_you_mean(output, outs)} (outputs: {', '.join(outs)})")
    top = rows.loc[rows["elasticity"].abs().idxmax()]
    cons = df.attrs.get("constraints")
    if cons is not None and cons.shape[1]:
        g = cons.iloc[config]
        name = str(g.idxmax())
        gv = float(g.max())
    else:
        name, gv = "", float("nan")
    return Binding(output, str(top["parameter"]), float(top["elasticity"]), name, gv)


__all__ = ["sensitivity", "sensitivity_arrays", "binding", "parameter_names", "Sensitivities", "Binding",
           "TABLE_FIELDS"]
