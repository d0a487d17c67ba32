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

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..errors import MlsysOptError, did_you_mean
from ..scenarios import schema
from ..walls._masked import safe_div
from .config import (
    TABLE_FIELDS,
    gather_local,
    input_value,
    limit_g,
    one_config,
    output_names,
    output_vector,
    padded_chunks,
    parameter_names,
    read_input,
    resolve_config,
    run_scenario,
    select_parameters,
    with_inputs,
)

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

# --------------------------------------------------------------------------- kernel

def _kernel(scenario: str, in_names: tuple, dtype):
    """jit(vmap(one-config Jacobian)); cached per (scenario, inputs, dtype).

    Returns per config, for EVERY numeric output (forward mode costs one pass
    per input whatever the number of outputs; selecting outputs happens on the
    host so every selection shares one compilation): y [n_out], values [n_in],
    derivative and elasticity [n_out, n_in], structural g [n_constr].  Spec
    limits are applied on the host too, so all spaces of a scenario share it.
    """
    return _kernel_cached(scenario, in_names, jnp.dtype(dtype).name)


@functools.lru_cache(maxsize=32)
def _kernel_cached(scenario: str, in_names: tuple, dtype):
    out_names = output_names(scenario, None)

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
        # ∂y/∂x = D / x: not capped at UNBOUNDED (a derivative in SI units may exceed 1e18), so not safe_div
        deriv = jnp.where(nz_x[None, :], D / jnp.where(nz_x, values, 1.0)[None, :], D)
        elast = jnp.where(nz_x[None, :], safe_div(jnp.sign(y)[:, None] * D, jnp.abs(y)[:, None], fill=0.0), 0.0)
        return y, values, deriv, elast, g

    def batch(p, local, eff, prec):
        return jax.vmap(one, in_axes=(0, 0, None, 0))(p, local, eff, prec)

    return jax.jit(batch)


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
    out_names = output_names(scenario, outputs)
    in_names = select_parameters(scenario, parameters)
    tables = catalog.tables(dtype=dtype) if tables is None else tables
    eff = DEFAULT_EFFICIENCY if eff is None else eff
    eff = type(eff)(*[jnp.asarray(x, dtype) for x in eff])
    cnames = (constraint_names(space) if space is not None else schema.STRUCTURAL_CONSTRAINTS[scenario])
    kernel = _kernel(scenario, in_names, dtype)
    parts = []
    for pc, m in padded_chunks(p, chunk):
        local = gather_local(tables, pc)
        prec = jnp.asarray(pc["precision"], jnp.int32)
        res = kernel(pc, local, eff, prec)
        parts.append([np.asarray(r)[:m] for r in res])
    y, value, deriv, elast, G = (np.concatenate([q[i] for q in parts]) for i in range(5))
    all_names = output_names(scenario, None)
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


__all__ = [
    "TABLE_FIELDS",
    "Binding",
    "Sensitivities",
    "binding",
    "parameter_names",
    "sensitivity",
    "sensitivity_arrays",
]
