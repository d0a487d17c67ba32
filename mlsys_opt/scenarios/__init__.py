"""Scenarios: the walls composed into a training job and a serving deployment.

`training(p, tables, eff)` and `serving(p, tables, eff)` take a NamedTuple of
parameters (fields = `schema.TRAINING_PARAMS` / `schema.SERVING_PARAMS` keys;
catalog and choice parameters are int32 codes, everything else SI floats; all
arrays broadcast to one batch shape `[n]`), the device-resident catalog
`Tables`, and the efficiency model (`mlsys_opt.scenarios.efficiency`).  They return
`(Outputs, Constraints)`: outputs named exactly as `schema.*_OUTPUTS`, finite
for every valid index combination; constraints named as `schema.*_CONSTRAINTS`,
relative margins with g <= 0 feasible (pymoo).  Keyword options fixed at trace
time (`static_options`: what the caller knows about the values its parameters take)
may follow the three arguments.  Branch-free, float32-safe,
jit/vmap/grad-able w.r.t. every float parameter, table float and efficiency leaf.

Every equation comes from a wall (`mlsys_opt.walls.*`); this module and its
helpers (`mlsys_opt.scenarios.parts`: catalog gathering, cost, elementwise time)
only gather catalog rows, convert units, and do glue arithmetic (degrees,
counts, byte sizes).  Modelling choices and their sources are documented on
`training` and `serving`.
"""
from __future__ import annotations

import sys
import types
from typing import Any, NamedTuple

from ..errors import MlsysOptError, did_you_mean
from .schema import PARAMS

# the scenario functions and their types import JAX: loaded on first access (module __getattr__),
# so `schema` (spec files, `mlsys-opt spaces list`, `catalog`) is read without JAX
_FROM_TRAINING = ("OPTIMIZER_BYTES_PER_PARAM", "TrainingConstraints", "TrainingOutputs", "TrainingParams", "training")
_FROM_SERVING = ("MAX_AUTO_REPLICAS", "ServingConstraints", "ServingOutputs", "ServingParams", "serving")


def __getattr__(name: str) -> Any:
    if name in _FROM_TRAINING + _FROM_SERVING + ("PARAMS_TYPES", "SCENARIO_FNS"):
        if name in globals():              # loaded already: the same objects (SCENARIO_FNS is one dict)
            return globals()[name]
        from importlib import import_module
        _serving_module = import_module(f"{__name__}.serving")      # not `from . import`: that asks
        _training_module = import_module(f"{__name__}.training")    # this __getattr__ again
        g = globals()
        g.update({k: getattr(_training_module, k) for k in _FROM_TRAINING})
        g.update({k: getattr(_serving_module, k) for k in _FROM_SERVING})
        g["PARAMS_TYPES"] = {"training": g["TrainingParams"], "serving": g["ServingParams"]}
        g["SCENARIO_FNS"] = {"training": g["training"], "serving": g["serving"]}
        return g[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """This package's module type: `scenarios.training` and `scenarios.serving` stay the scenario functions.

    Loading a submodule (`from mlsys_opt.scenarios.training import training_common`) makes the import
    system set the package attribute of the same name to that submodule (importlib's
    `_find_and_load_unlocked`: setattr(parent, child, module)), which would hide the function
    `training` until the first module `__getattr__` call, and for good once that has run.  The
    submodules stay in sys.modules, so from-imports of their names work; only the package attribute
    is the function's."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("training", "serving") and isinstance(value, types.ModuleType):
            return        # the function is loaded by __getattr__ on first access
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


INT_PARAMS = {s: tuple(k for k, v in t.items() if v.kind in ("catalog", "choice"))
              for s, t in PARAMS.items()}


def params_from_dict(scenario: str, values: dict) -> NamedTuple:
    """Build TrainingParams/ServingParams from {name: scalar or array} (SI values, int codes).

    Catalog and choice parameters become int32 arrays; float arrays keep their dtype
    (a float32 sweep stays float32), other numbers become default-float arrays.
    A missing parameter takes its schema default when that is a plain number (a choice's code, an
    int or a unit-less float, broadcast to the given arrays' shape); catalog parameters and
    defaults with units ("3 year") must be given.  Unknown or missing keys raise MlsysOptError.
    (Display-form defaults such as "3 year" are resolved by `space.py`, not here.)
    """
    import jax.numpy as jnp
    types = __getattr__("PARAMS_TYPES")
    if scenario not in types:
        raise MlsysOptError(f"unknown scenario {scenario!r}{did_you_mean(scenario, types)} "
                            f"(allowed: {', '.join(types)})")
    cls, keys = types[scenario], PARAMS[scenario]
    unknown = [k for k in values if k not in keys]
    if unknown:
        k = unknown[0]
        raise MlsysOptError(f"{scenario} parameters: unknown parameter {k!r}{did_you_mean(k, keys)} "
                            f"(allowed: {', '.join(keys)})")
    defaults = {k: _plain_default(PARAMS[scenario][k]) for k in keys if k not in values}
    missing = [k for k, d in defaults.items() if d is None]
    if missing:
        raise MlsysOptError(f"{scenario} parameters: missing {', '.join(missing)} "
                            f"(every parameter of schema.{scenario.upper()}_PARAMS without a plain default "
                            f"is required)")
    shape = jnp.broadcast_shapes(*(jnp.shape(v) for v in values.values())) if values else ()
    values = {**{k: jnp.full(shape, d) for k, d in defaults.items()}, **values}
    ints = INT_PARAMS[scenario]

    def conv(k):
        a = jnp.asarray(values[k])
        if k in ints:
            return a.astype(jnp.int32)
        return a if jnp.issubdtype(a.dtype, jnp.floating) else a.astype(float)

    return cls(**{k: conv(k) for k in cls._fields})


def _plain_default(spec):
    """A parameter's default as a number when it has one without units or a catalog lookup: a
    choice's code, an int or a unit-less float; None otherwise (then the caller must give it)."""
    if spec.kind == "choice":
        return spec.choices.index(spec.default)
    if spec.kind in ("int", "float") and isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
        return spec.default
    return None


# the parameters `static_options` reads, per scenario: a caller that groups rows by their options (the table
# evaluator) groups by exactly these
STATIC_OPTION_PARAMS: dict[str, tuple[str, ...]] = {
    "training": ("micro_batch_size", "microbatches", "cp", "tp_comm", "pipeline_engine", "param_sync", "pp_schedule"),
    "serving": ()}


def static_options(scenario: str, possible: dict) -> dict:
    """Trace-time keyword options of a scenario function, from the values its parameters can take.

    possible: {parameter: array-like of every value it takes in the batch (an axis's values,
    a constant)}; parameters not given may take any value.  Training: auto_micro_batch=False
    when every row gives micro_batch_size > 0 or microbatches > 0 (then one micro-batch
    geometry is evaluated instead of the candidate set); context_parallel=False when every row
    has cp <= 1 (the context-parallel terms, 0 there, are not traced); torch_tp=False when every
    row has tp_comm = default (the PyTorch TP terms are not traced); deepspeed_engine=False when every row has
    pipeline_engine = megatron; param_broadcast=False when every row has param_sync = all_gather; dualpipe=False
    when every row has pp_schedule = 1f1b.  Serving: no options.
    """
    if scenario != "training":
        return {}
    import numpy as np

    def all_positive(name):
        v = possible.get(name)
        return v is not None and np.size(v) > 0 and bool(np.all(np.asarray(v, float) > 0))

    cp = possible.get("cp")
    no_cp = cp is not None and np.size(cp) > 0 and bool(np.all(np.asarray(cp, float) <= 1))
    tpc = possible.get("tp_comm")     # ASYNCTP: PyTorch TP terms only where some row has tp_comm != default (0)
    no_torch_tp = tpc is not None and np.size(tpc) > 0 and bool(np.all(np.asarray(tpc, float) == 0))
    def all_code(name, code):     # every row takes the choice with this code (the default's: 0)
        v = possible.get(name)
        return v is not None and np.size(v) > 0 and bool(np.all(np.asarray(v, float) == code))

    return {"auto_micro_batch": not (all_positive("micro_batch_size") or all_positive("microbatches")),
            "context_parallel": not no_cp, "torch_tp": not no_torch_tp,
            "deepspeed_engine": not all_code("pipeline_engine", 0), "param_broadcast": not all_code("param_sync", 0),
            "dualpipe": not all_code("pp_schedule", 0)}


__all__ = ["static_options", "STATIC_OPTION_PARAMS", "TrainingParams", "ServingParams", "TrainingOutputs", "ServingOutputs",
           "TrainingConstraints", "ServingConstraints", "training", "serving", "SCENARIO_FNS",
           "PARAMS_TYPES", "INT_PARAMS", "params_from_dict", "OPTIMIZER_BYTES_PER_PARAM", "MAX_AUTO_REPLICAS"]
