"""Exact sensitivities of every scenario output to every continuous input (wall 21).

For a configuration c and an output y, the elasticity of y to an input x is

    e = ∂ln y / ∂ln x = (x / y) · ∂y/∂x        ("1 % more x gives e % more y")

computed exactly with forward-mode autodiff on the batch itself.  Inputs
("parameters") are

- catalog values of the rows the configuration uses: ``hardware.<field>``
  (peak FLOP/s at the chosen precision, HBM bandwidth and capacity, scale-up
  bandwidth, TDP, price, cloud $/h, MTBF, ...), ``fabric.<field>`` (bandwidth,
  latency, ...), ``region.<field>`` (carbon intensity, PUE, WUE, $/kWh);
- the scenario's continuous parameters (schema kind "float": efficiency,
  overlap, checkpoint_bw, recovery, checkpoint_interval, n_tokens,
  request_rate, ...);
- the efficiency model's leaves, ``eff.<field>``.

How derivatives stay per configuration: input k is perturbed along
t_k = x_k (t_k = 1 where x_k = 0) on the WHOLE input: every row of a catalog
table field, the scalar efficiency leaf, the [n] parameter column.  A
configuration reads only its own catalog rows and is computed independently
of the others, so the forward derivative of its outputs along t_k is
D_k = x_k ∂y/∂x_k for its own x_k: the elasticity is D_k / y and the
derivative D_k / x_k.  For a table row with one column per precision (peak
FLOP/s), t is the whole row, i.e. the elasticity of scaling every
precision's peak together, which equals the chosen precision's elasticity.
Where y = 0 the elasticity is 0; where x = 0 the elasticity is 0 and the
derivative is ∂y/∂x.  An input on the edge of its domain (straggler_factor = 1,
a fabric's oversubscription = 1, an overlap fraction of 1, a length cv of 0) gets
the derivative of its admissible side: the walls floor with ``_masked.floor_pos``,
whose derivative at the floor is 1, where ``jnp.maximum``'s balanced tie would
report half of it (docs/CONTRACTS.md).

Cost (issue 15 item 6, sweep scale): the primal is computed once
(``jax.linearize``) and the columns are JVPs of that linear map, one input
(or a small group) at a time, skipping every operation an input does not
reach (:mod:`mlsys_opt.point.linear`): a region's carbon intensity touches one
multiplication, not the step-time expression.  The scenario runs with the
trace-time options its values allow (``scenarios.static_options``: one
micro-batch geometry when every configuration gives ``microbatches``).
XLA's cost analysis of the capstone kernel (17 outputs x 55 inputs, float32):
~140,600 operations per configuration for the former ``vmap(jacfwd)`` on
per-configuration table copies, ~17,500 now.  ``method="dense"`` keeps
``jax.jacfwd`` (the whole tangent basis through every operation) as the
reference the tests compare against.  The sparse kernel is a larger program
(one JVP per input): it compiles in about three times the time of the dense
one (capstone, float32: 18.5 vs 11.6 CPU-s; the serving scenario: 72 vs 28 s
wall, 2-core CPU under load; measured with XLA's default CPU emitters: the
kernels now compile with :func:`mlsys_opt._compile.jit_options`, serving
63 -> 44 CPU-s sparse and 25 -> 14 dense, the same run time), and saves ~28 us per configuration (17.7 vs
45.6 CPU-us), so it pays from ~2.5e5 configurations on.  ``method="auto"``
(the default) takes the dense kernel below ``AUTO_SPARSE_ROWS``
configurations (one point, a front, a table of a few thousand rows) and the
sparse kernel above.

Source: seed 002 wall 21 ("∂Time/∂parameter ... the parameter with the
largest derivative is your bottleneck"); mlsysim SensitivitySolver (which
uses ±10 % finite differences; these are exact).
"""
from __future__ import annotations

import concurrent.futures
import functools
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._compile import jit_options
from ..errors import MlsysOptError, did_you_mean
from ..scenarios import SCENARIO_FNS, params_from_dict, schema, static_options
from ..walls._masked import UNBOUNDED
from .config import (
    TABLE_FIELDS,
    TABLE_PARAM,
    config_value,
    limit_g,
    output_names,
    parameter_names,
    read_input,
    resolve_config,
    select_parameters,
    with_inputs,
)
from .linear import ZERO, jvp_columns

CHUNK = 1024       # rows per kernel call: small chunks keep the intermediates in cache (2-core CPU: 1024 beat 4096 and 8192)
# size of the sparse kernel's program as a multiple of jacfwd's (point.linear.plan_groups): 4 keeps
# the run time within ~6 % of one-input-at-a-time columns at about half their compile time
GROUP_BUDGET = 4.0
WORKERS = 2           # chunk streams run side by side (threads; each waits for its own program)


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
    derivative: np.ndarray | None         # None when not asked for (sensitivity_arrays(derivative=False))
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

METHODS = ("sparse", "dense")
# method "auto": the sparse kernel from this many configurations on (its extra compile time, ~7-40 s
# on the 2-core CPU, is repaid at ~28 us per configuration; measured, see the module docstring)
AUTO_SPARSE_ROWS = 100_000


def _batch_kernel(scenario: str, in_names: tuple, dtype, options: dict | None = None, method: str = "sparse",
                  derivative: bool = True, *, jit: bool = True):
    """jit: ``(p, tables, eff) -> (y, values, derivative, elasticity, g)`` for a batch; cached.

    p: {param: [n]} (catalog codes index `tables`, the full catalog tables); tables and eff
    as the sweep passes them.  Returns per configuration, for EVERY numeric output (selecting
    outputs happens on the host, so every selection shares one compilation): y [n, n_out],
    values [n, n_in], derivative and elasticity [n, n_out, n_in], structural g [n, n_constr].

    Forward mode on the batch itself: the tangent of input k is t_k = x_k (1 where x_k = 0)
    on the WHOLE input (every catalog row of a table field, the scalar efficiency leaf, the
    [n] parameter column); configuration c's outputs read only its own rows, so the JVP gives
    D_k = x_k ∂y_c/∂x_k per configuration, with no per-configuration copy of the tables.
    method "sparse" (default): one JVP per input on the shared linearization, skipping what
    input k does not reach (:mod:`mlsys_opt.point.linear`); "dense": ``jax.jacfwd`` (the whole
    tangent basis through every operation; the reference the tests compare against).
    options: the scenario's trace-time options (``scenarios.static_options``).  derivative=False:
    None in its place (the elasticities alone: half the output).  Compiled with
    ``_compile.jit_options()`` (the older CPU fusion emitters: about half the compile time, same
    run time); jit=False: the function itself, for a caller that traces it inside its own
    ``jax.jit`` (which then passes those options: a nested jit cannot).
    """
    if method not in METHODS:
        raise MlsysOptError(f"sensitivity: method {method!r} is not known (allowed: {', '.join(METHODS)})")
    key = (scenario, tuple(in_names), jnp.dtype(dtype).name, tuple(sorted((options or {}).items())), method,
           bool(derivative))
    return _batch_jit(*key) if jit else _batch_fn(*key)


@functools.lru_cache(maxsize=32)
def _batch_jit(*key):
    return jax.jit(_batch_fn(*key), **jit_options())


@functools.lru_cache(maxsize=32)
def _batch_fn(scenario: str, in_names: tuple, dtype, options: tuple, method: str, derivative: bool):
    out_names = output_names(scenario, None)
    opts = dict(options)
    n_out, n_in = len(out_names), len(in_names)

    def batch(p, tables, eff):
        n = jnp.shape(p["hardware"])[0]
        xs = [jnp.asarray(read_input(k, p, tables, eff), dtype) for k in in_names]
        ts = [jnp.where(x != 0, x, jnp.ones_like(x)) for x in xs]

        def f(*inputs):
            pp, tt, ee = with_inputs(dict(zip(in_names, inputs)), p, tables, eff)
            outs, cons = SCENARIO_FNS[scenario](params_from_dict(scenario, pp), tt, ee, **opts)
            y = jnp.stack([jnp.broadcast_to(jnp.asarray(getattr(outs, o), dtype), (n,)) for o in out_names], axis=1)
            g = [jnp.broadcast_to(jnp.asarray(c, dtype), (n,)) for c in cons]
            return y, (jnp.stack(g, axis=1) if g else jnp.zeros((n, 0), dtype))

        values = jnp.stack([config_value(k, x, p, n) for k, x in zip(in_names, xs)], axis=1)
        if method == "sparse":
            y, cols, g = jvp_columns(f, xs, ts, has_aux=True, budget=GROUP_BUDGET)
            zero = jnp.zeros((n, n_out), dtype)
            D = jnp.stack([zero if c is ZERO else c for c in cols], axis=2)             # x ∂y/∂x
        else:
            def along(delta):
                y, g = f(*[x + delta[i] * t for i, (x, t) in enumerate(zip(xs, ts))])
                return y, (y, g)
            D, (y, g) = jax.jacfwd(along, has_aux=True)(jnp.zeros((n_in,), dtype))
        inv_x, scale = _reciprocals(y, values)
        deriv = D * inv_x[:, None, :] if derivative else None
        return y, values, deriv, jnp.clip(D * scale, -UNBOUNDED, UNBOUNDED), g

    return batch


def _reciprocals(y, values):
    """(1/x [n, n_in], (1/y)·[x != 0] [n, n_out, n_in]): derivative = D·(1/x), elasticity = D·scale.

    With D = x ∂y/∂x: derivative = D / x (D where x = 0: the tangent there was 1), not capped (a
    derivative in SI units may exceed 1e18); elasticity = D / y, 0 where y = 0 or x = 0 (the caller
    caps it at ±UNBOUNDED).  Products with per-row reciprocals, clipped to the largest finite
    float so that a subnormal denominator gives a capped, not an infinite, quotient: one or two
    operations per Jacobian entry instead of a masked division (the [n, n_out, n_in] arrays are
    most of the kernel's memory traffic).
    """
    big = jnp.finfo(values.dtype).max
    inv_x = jnp.where(values != 0, jnp.clip(1 / jnp.where(values != 0, values, 1), -big, big), 1)
    inv_y = jnp.where(y != 0, jnp.clip(1 / jnp.where(y != 0, y, 1), -big, big), 0)
    return inv_x, inv_y[:, :, None] * (values != 0).astype(values.dtype)[:, None, :]


def _packed_rows(host: dict, dtype, chunk: int):
    """(F, names_f, I, names_i, size, n): the batch's parameters as two row-major matrices, padded.

    F [n_pad, n_float] holds the float parameters (as `dtype`), I [n_pad, n_int] the int32
    codes; n_pad is a multiple of the chunk size (the smallest power of two >= n, at least 8, at
    most `chunk`), padding rows copy row 0 (a valid configuration).  Each chunk goes to the
    device as two contiguous arrays instead of one per parameter (a transfer of ~40 arrays cost
    ~5-10 ms per chunk).
    """
    n = int(np.shape(host["hardware"])[0])
    size = min(chunk, max(8, 1 << max(0, (n - 1).bit_length())))
    rows = n + (-n % size)
    names_i = tuple(k for k, v in host.items() if not np.issubdtype(v.dtype, np.floating))
    names_f = tuple(k for k in host if k not in names_i)
    mats = []
    for names, dt in ((names_f, np.dtype(dtype)), (names_i, np.dtype(np.int32))):
        m = np.empty((rows, len(names)), dt)
        for j, k in enumerate(names):
            v = np.broadcast_to(host[k], (n,))
            m[:n, j] = v
            m[n:, j] = v[0]
        mats.append(m)
    return mats[0], names_f, mats[1], names_i, size, n


@functools.lru_cache(maxsize=32)
def _packed_kernel(scenario: str, in_names: tuple, dtype: str, options: tuple, method: str, derivative: bool,
                   names_f: tuple, names_i: tuple):
    """:func:`_batch_kernel` on a chunk given as F [m, n_float] and I [m, n_int] (:func:`_packed_rows`)."""
    kernel = _batch_kernel(scenario, in_names, dtype, dict(options), method, derivative, jit=False)

    def run(F, I, tables, eff):
        p = {k: F[:, j] for j, k in enumerate(names_f)}
        p.update({k: I[:, j] for j, k in enumerate(names_i)})
        return kernel(p, tables, eff)

    return jax.jit(run, **jit_options())


def _kernel(scenario: str, in_names: tuple, dtype, options: dict | None = None, *, jit: bool = True):
    """The per-configuration-tables form: ``(p, local, eff, prec) -> (y, values, derivative, elasticity, g)``.

    local: tables whose fields are [n, 1, ...] (``config.gather_local``: the rows each
    configuration selects); p's catalog codes are ignored (row i of local is configuration
    i's).  options: the scenario's (default: automatic).  Kept for callers that gather rows
    themselves (``point.table_eval``); :func:`_batch_kernel` reads the full tables and costs less.
    jit=False: not compiled, for tracing inside the caller's ``jax.jit(..., **jit_options())``.
    """
    kernel = _batch_kernel(scenario, in_names, dtype, options, jit=False)

    def run(p, local, eff, prec):
        n = jnp.shape(p["hardware"])[0]
        codes = jnp.arange(n, dtype=jnp.int32)
        pp = {k: (codes if k in TABLE_PARAM.values() else v) for k, v in p.items()}
        tables = jax.tree_util.tree_map(lambda a: a[:, 0], local)
        return kernel(pp, tables, eff)

    return jax.jit(run, **jit_options()) if jit else run


# --------------------------------------------------------------------------- public API

def sensitivity_arrays(target, config, *, outputs=None, parameters=None, eff=None, tables=None,
                       dtype=None, chunk: int = CHUNK, options: dict | None = None,
                       method: str = "auto", derivative: bool = True) -> Sensitivities:
    """Exact derivatives and elasticities as arrays (see :class:`Sensitivities`).

    Args: as :func:`sensitivity`.  Configurations are processed in padded
    chunks of `chunk` rows (one compilation per chunk size).  options: the
    scenario's trace-time options (default: ``scenarios.static_options`` of the
    values the batch takes, e.g. one micro-batch geometry when every
    configuration gives ``microbatches``).  method: "sparse", "dense"
    (``jax.jacfwd``; same numbers, slower per configuration, faster to
    compile) — see :func:`_batch_kernel` — or "auto" (default): dense below
    ``AUTO_SPARSE_ROWS`` configurations, sparse from there on.
    derivative=False: the ``derivative`` field is None (elasticities only; the
    [n, n_out, n_in] arrays are most of the memory a large batch writes).
    """
    from ..scenarios.efficiency import DEFAULT_EFFICIENCY
    from ..sweeps.api import constraint_names

    if method not in ("auto",) + METHODS:
        raise MlsysOptError(f"sensitivity: method {method!r} is not known (allowed: auto, {', '.join(METHODS)})")
    dtype = jnp.float64 if dtype is None and jax.config.jax_enable_x64 else (dtype or jnp.float32)
    scenario, space, p, catalog = resolve_config(target, config, dtype)
    out_names = output_names(scenario, outputs)
    in_names = select_parameters(scenario, parameters)
    tables = catalog.tables(dtype=dtype) if tables is None else tables
    eff = DEFAULT_EFFICIENCY if eff is None else eff
    eff = type(eff)(*[jnp.asarray(x, dtype) for x in eff])
    cnames = (constraint_names(space) if space is not None else schema.STRUCTURAL_CONSTRAINTS[scenario])
    host = {k: np.asarray(v) for k, v in p.items()}
    if options is None:                      # what the batch's values allow (exact for every row)
        options = static_options(scenario, host)
    all_names = output_names(scenario, None)
    sel = [all_names.index(o) for o in out_names]
    pick = slice(None) if sel == list(range(len(all_names))) else np.asarray(sel)
    F, names_f, I, names_i, size, n = _packed_rows(host, dtype, chunk)
    if method == "auto":
        method = "sparse" if n >= AUTO_SPARSE_ROWS else "dense"
    kernel = _packed_kernel(scenario, in_names, jnp.dtype(dtype).name, tuple(sorted(options.items())), method,
                            bool(derivative), names_f, names_i)
    starts = range(0, n, size)
    first = kernel(F[:size], I[:size], tables, eff)
    out = [None if r is None else np.empty((n,) + r.shape[1:], r.dtype) for r in first]
    for i in (2, 3):
        if first[i] is not None:
            out[i] = np.empty((n, len(sel)) + first[i].shape[2:], first[i].dtype)

    def work(s):
        # one chunk: run, then copy into the preallocated arrays (outputs selected here)
        res = first if s == 0 else kernel(F[s:s + size], I[s:s + size], tables, eff)
        m = min(size, n - s)
        for o, r in zip(out, res):
            if r is not None:
                r = np.asarray(r)
                o[s:s + m] = r[:m, pick] if r.ndim == 3 else r[:m]

    workers = min(WORKERS, os.cpu_count() or 1, len(starts))
    if workers > 1:       # the XLA CPU client runs one program per calling thread: one stream per core
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, starts))
    else:
        for s in starts:
            work(s)
    y_all, value, deriv, elast, G = out
    if space is not None:
        G = np.concatenate([G, limit_g(space.limits, y_all, all_names)], axis=1)
    return Sensitivities(out_names, in_names, tuple(cnames), y_all[:, pick], value, deriv, elast, G)


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
