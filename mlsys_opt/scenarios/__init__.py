"""Scenarios: the walls composed into a training job and a serving deployment.

`training(p, tables, eff)` and `serving(p, tables, eff)` take a NamedTuple of
parameters (fields = `schema.TRAINING_PARAMS` / `schema.SERVING_PARAMS` keys;
catalog and choice parameters are int32 codes, everything else SI floats; all
arrays broadcast to one batch shape `[n]`), the device-resident catalog
`Tables`, and the efficiency model (`mlsys_opt.scenarios.efficiency`).  They return
`(Outputs, Constraints)`: outputs named exactly as `schema.*_OUTPUTS`, finite
for every valid index combination; constraints named as `schema.*_CONSTRAINTS`,
relative margins with g <= 0 feasible (pymoo).  Branch-free, float32-safe,
jit/vmap/grad-able w.r.t. every float parameter, table float and efficiency leaf.

Every equation comes from a wall (`mlsys_opt.walls.*`); this module and its
helpers (`mlsys_opt.scenarios.parts`: catalog gathering, cost, elementwise time)
only gather catalog rows, convert units, and do glue arithmetic (degrees,
counts, byte sizes).  Modelling choices and their sources are documented on
`training` and `serving`.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from ..errors import MlsysOptError, did_you_mean
from .schema import PARAMS
from .serving import MAX_AUTO_REPLICAS, ServingConstraints, ServingOutputs, ServingParams, serving
from .training import OPTIMIZER_BYTES_PER_PARAM, TrainingConstraints, TrainingOutputs, TrainingParams, training

PARAMS_TYPES = {"training": TrainingParams, "serving": ServingParams}
INT_PARAMS = {s: tuple(k for k, v in t.items() if v.kind in ("catalog", "choice"))
              for s, t in PARAMS.items()}


def params_from_dict(scenario: str, values: dict) -> NamedTuple:
    """Build TrainingParams/ServingParams from {name: scalar or array} (SI values, int codes).

    Catalog and choice parameters become int32 arrays; float arrays keep their dtype
    (a float32 sweep stays float32), other numbers become default-float arrays.
    Every schema key must be present; unknown or missing keys raise MlsysOptError.
    (Display-form defaults such as "3 year" are resolved by `space.py`, not here.)
    """
    if scenario not in PARAMS_TYPES:
        raise MlsysOptError(f"unknown scenario {scenario!r}{did_you_mean(scenario, PARAMS_TYPES)} "
                            f"(allowed: {', '.join(PARAMS_TYPES)})")
    cls, keys = PARAMS_TYPES[scenario], PARAMS[scenario]
    unknown = [k for k in values if k not in keys]
    if unknown:
        k = unknown[0]
        raise MlsysOptError(f"{scenario} parameters: unknown parameter {k!r}{did_you_mean(k, keys)} "
                            f"(allowed: {', '.join(keys)})")
    missing = [k for k in keys if k not in values]
    if missing:
        raise MlsysOptError(f"{scenario} parameters: missing {', '.join(missing)} "
                            f"(every parameter of schema.{scenario.upper()}_PARAMS is required)")
    ints = INT_PARAMS[scenario]

    def conv(k):
        a = jnp.asarray(values[k])
        if k in ints:
            return a.astype(jnp.int32)
        return a if jnp.issubdtype(a.dtype, jnp.floating) else a.astype(float)

    return cls(**{k: conv(k) for k in cls._fields})


SCENARIO_FNS = {"training": training, "serving": serving}

__all__ = ["TrainingParams", "ServingParams", "TrainingOutputs", "ServingOutputs",
           "TrainingConstraints", "ServingConstraints", "training", "serving", "SCENARIO_FNS",
           "PARAMS_TYPES", "INT_PARAMS", "params_from_dict", "OPTIMIZER_BYTES_PER_PARAM", "MAX_AUTO_REPLICAS"]
