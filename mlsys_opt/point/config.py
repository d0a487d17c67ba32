"""One configuration (or a batch) as scenario inputs: the plumbing shared by the point tools.

Used by ``point.sensitivity`` and ``point.elasticity`` (derivatives), ``point.evaluation``,
and ``search.gradient`` / ``search.synthesis`` (gradient solves):

- :func:`resolve_config`: a Space / spec / scenario name plus display values
  or digits -> ``(scenario, space, p, catalog)``, p = {param: [n] array};
  :func:`parse_param` one display value -> SI value / code;
- :func:`gather_local`: the catalog rows each configuration selects, as
  one-row tables, and :func:`one_config`: its parameters with codes set to row 0,
  so each configuration owns the inputs it is differentiated by;
- :func:`read_input` / :func:`input_value` / :func:`with_inputs`: named
  inputs ("hardware.mem_bw_bytes_per_s", "checkpoint_bw", "eff.mem_bw_eff")
  read and replaced; :func:`run_scenario`: outputs and constraints of one
  configuration; :func:`parameter_names` / :func:`select_parameters` /
  :func:`output_names`: the names allowed.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..catalog import load_catalog
from ..errors import MlsysOptError, did_you_mean
from ..scenarios import SCENARIO_FNS, params_from_dict, schema
from ..scenarios.efficiency import Efficiency
from ..space.spec import Space, load_space
from ..space.values import BadValue, parse_value
from ..sweeps.api import limit_columns

# table attribute of `Tables` -> catalog parameter that selects its row, and display prefix
TABLE_PARAM = {"hw": "hardware", "model": "model", "fabric": "fabric", "region": "region"}
# continuous catalog fields differentiated by default (booleans, codes and
# model-architecture integers are not continuous inputs)
TABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "hw": ("peak_flop_per_s", "mem_bw_bytes_per_s", "mem_capacity_bytes", "scaleup_bw_bytes_per_s",
           "tdp_w", "price_usd", "cloud_usd_per_hour", "mtbf_s", "injection_bw_bytes_per_s", "sram_bytes",
           # achievable rates (issue 19): STREAM fraction, GEMM curve (whole row), scale-up busbw and α
           "sustained_mem_bw_frac", "gemm_eff", "scaleup_busbw_frac", "scaleup_step_latency_s"),
    "fabric": ("bw_bytes_per_s", "latency_s", "bisection_frac", "oversubscription", "busbw_frac",
               "step_latency_s"),
    "region": ("carbon_gco2e_per_kwh", "pue", "wue_l_per_kwh", "electricity_usd_per_kwh"),
    "model": (),
}

def parameter_names(scenario: str, tables=None) -> tuple[str, ...]:
    """Every differentiable input of `scenario`, in report order."""
    names = [f"{TABLE_PARAM[t]}.{f}" for t, fields in TABLE_FIELDS.items() for f in fields]
    names += [k for k, s in schema.PARAMS[scenario].items() if s.kind == "float"]
    names += [f"eff.{f}" for f in Efficiency._fields]
    return tuple(names)


def select_parameters(scenario: str, parameters: Sequence[str] | None) -> tuple[str, ...]:
    allowed = parameter_names(scenario)
    if parameters is None:
        return allowed
    bad = [p for p in parameters if p not in allowed]
    if bad:
        raise MlsysOptError(f"sensitivity: {bad[0]!r} is not a continuous input of the {scenario} scenario"
                            f"{did_you_mean(bad[0], allowed)} (allowed: {', '.join(allowed)})")
    return tuple(parameters)


def output_names(scenario: str, outputs: Sequence[str] | None) -> tuple[str, ...]:
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
    if name == "hardware.gemm_eff":          # the chosen precision's curve, shown at 16384^3
        return x[0, prec, -1]
    return jnp.reshape(x, (-1,))[0]


def config_value(name: str, x, p: dict, n):
    """Input `name` of each configuration of a batch, [n], as people read it (see :func:`input_value`).

    x: the whole input (:func:`read_input` on the full tables: a table field [rows, ...], an
    efficiency leaf [], a parameter [n]); p: {param: [n]} with the catalog codes.
    """
    if name.startswith("eff.") or "." not in name:
        return jnp.broadcast_to(x, (n,))
    rows = jnp.asarray(p[name.split(".", 1)[0]], jnp.int32)
    if name == "hardware.peak_flop_per_s":
        return x[rows, jnp.asarray(p["precision"], jnp.int32)]
    if name == "hardware.gemm_eff":          # the chosen precision's curve, shown at 16384^3
        return x[rows, jnp.asarray(p["precision"], jnp.int32), -1]
    return jnp.reshape(x[rows], (n, -1))[:, 0]


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
    outs, cons = SCENARIO_FNS[scenario](params_from_dict(scenario, p1), local, eff)
    g = [jnp.reshape(jnp.asarray(c, dtype), (-1,))[0] for c in cons]
    y = {out: jnp.reshape(jnp.asarray(getattr(outs, out), dtype), (-1,))[0] for out, _, _ in limits}
    g += limit_columns(y, {out: (sense, limit) for out, sense, limit in limits})
    return outs, (jnp.stack(g) if g else jnp.zeros((0,), dtype))


def output_vector(outs, names, dtype):
    return jnp.stack([jnp.reshape(jnp.asarray(getattr(outs, o), dtype), (-1,))[0] for o in names])


def limit_g(limits, y_all: np.ndarray, all_names) -> np.ndarray:
    """Spec-limit constraint columns [n, n_limits] from output values (sweep convention)."""
    cols = limit_columns({out: y_all[:, list(all_names).index(out)] for out in limits}, limits)
    return np.stack(cols, axis=1) if cols else np.zeros((len(y_all), 0))


def padded_chunks(p: dict, chunk: int):
    """Yield ``(pc, m)``: rows of ``p`` ({param: [n]}) in chunks of one fixed size (the smallest
    power of two >= n, at least 8, at most ``chunk``), the last padded with copies of its first
    row, so one compilation serves every chunk; ``m`` rows of each are real."""
    n = int(np.shape(p["hardware"])[0])
    size = min(chunk, max(8, 1 << max(0, (n - 1).bit_length())))
    if _concrete(p.values()):
        # concrete inputs: sliced and padded in numpy, one transfer per chunk (one eager jnp op per
        # parameter compiled a small program each on the first call: ~0.1 s of start-up)
        host = {k: np.asarray(v) for k, v in p.items()}
        for s in range(0, n, size):
            m = min(size, n - s)
            pc = {k: np.concatenate([v[s:s + m], np.repeat(v[s:s + 1], size - m, axis=0)])
                  for k, v in host.items()}
            yield jax.device_put(pc), m
        return
    for s in range(0, n, size):
        m = min(size, n - s)
        pc = {k: jnp.asarray(v)[s:s + m] for k, v in p.items()}
        if m < size:
            pc = {k: jnp.concatenate([v, jnp.repeat(v[:1], size - m, axis=0)]) for k, v in pc.items()}
        yield pc, m


def _concrete(values) -> bool:
    """True when no value is a JAX tracer (inside jit/vmap the host paths below do not apply)."""
    return not any(isinstance(v, jax.core.Tracer) for v in values)


def gather_local(tables, p: dict) -> Any:
    """Tables whose every field is [n, 1, ...]: the rows each configuration selects.

    p: {param: [n]} with int32 catalog codes (``Space.param_values``).  vmapped
    over n, each configuration sees one-row tables and code 0 (:func:`one_config`).
    """
    if _concrete([p[param] for param in TABLE_PARAM.values()]) and _concrete(jax.tree_util.tree_leaves(tables)):
        host = _gather_host(tables, p)
        if host is not None:
            return host
    out = {}
    for t, param in TABLE_PARAM.items():
        tab = getattr(tables, t)
        idx = jnp.asarray(p[param], jnp.int32)
        out[t] = type(tab)(*[jnp.take(jnp.asarray(f), idx, axis=0)[:, None] for f in tab])
    return type(tables)(**out)


def _gather_host(tables, p: dict) -> Any:
    """:func:`gather_local` of concrete arrays: gathered in numpy, put on the device in ONE transfer
    (one eager ``jnp.take`` per table field compiled a small program each: ~0.6 s of the first call).

    The same numbers and dtypes as the jnp path; None (use that path) when a code is out of range,
    where ``jnp.take`` fills and ``np.take`` would raise or wrap.
    """
    out = {}
    for t, param in TABLE_PARAM.items():
        tab = getattr(tables, t)
        idx = np.asarray(p[param]).astype(np.int32)
        fields = [np.asarray(f) for f in tab]
        rows = fields[0].shape[0] if fields else 0
        if idx.size and (idx.min() < 0 or idx.max() >= rows):
            return None
        out[t] = type(tab)(*[np.take(f, idx, axis=0)[:, None] for f in fields])
    return jax.device_put(type(tables)(**out))


# --------------------------------------------------------------------------- configuration handling

def plain_value(v: Any) -> Any:
    """A numpy scalar or 0-d array as the Python int/float/str/bool it holds; anything else as is.

    Front rows (pandas/numpy) carry np.int64 / np.float32 values; the spec rules accept
    Python numbers, so `sensitivity(space, {k: row[k] ...})` converts first.
    """
    if isinstance(v, np.generic) or (isinstance(v, np.ndarray) and v.ndim == 0):
        return v.item()
    return v


def resolve_config(target, config, dtype):
    """-> (scenario, space | None, p dict of [n] arrays, catalog).

    config: {param: display value} (numpy scalars accepted, e.g. a front row's values) or digits.
    """
    if isinstance(config, dict):
        config = {k: plain_value(v) for k, v in config.items()}
    if isinstance(target, (str, dict)) and not (isinstance(target, str) and target in schema.PARAMS):
        target = load_space(target)
    if isinstance(target, Space):
        space = target
        catalog = space.catalog if space.catalog is not None else load_catalog()
        if isinstance(config, dict):
            axis_part = {k: v for k, v in config.items() if k in space.axis_names}
            digits = space.digits_for(axis_part)[None, :]
            p = space.param_values(digits, dtype)
            over = {}                            # built in numpy, one transfer (as param_values)
            for k, raw in config.items():
                if k not in space.axis_names:
                    over[k] = np.full((1,), parse_param(space.scenario, k, raw, catalog),
                                      np.dtype(p[k].dtype if k in p else dtype))
            p.update(jax.device_put(over))
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
            v = parse_param(scenario, k, config.get(k, spec.default), catalog)
            p[k] = np.full((1,), v, np.int32 if spec.kind in ("catalog", "choice") else np.dtype(dtype))
        for k in config:
            if k not in params:
                parse_param(scenario, k, config[k], catalog)     # raises with a suggestion
        # built in numpy and put on the device in one transfer (as Space.param_values): one eager
        # jnp.full per parameter compiled a small program each on the first call
        return scenario, None, jax.device_put(p), catalog
    raise MlsysOptError(f"sensitivity: expected a Space, a spec path/dict or a scenario name "
                        f"({', '.join(schema.SCENARIOS)}); got {type(target).__name__}")


def parse_param(scenario: str, name: str, raw, catalog):
    """SI value / code of one display value (spec rules of ``space.py``)."""
    params = schema.PARAMS[scenario]
    if name not in params:
        raise MlsysOptError(f"{name!r} is not a parameter of the {scenario} scenario"
                            f"{did_you_mean(name, params)} (allowed: {', '.join(params)})")
    try:
        return parse_value(params[name], plain_value(raw), catalog)[1]
    except BadValue as exc:
        raise MlsysOptError(f"{name}: {exc}") from None
