"""Row-sharded inputs for batched evaluations: a population spread over every local device.

``shard_rows(x)`` places a host array of independent rows (configurations)
on the local devices split along axis 0 (1-D mesh, replicated elsewhere);
a jitted evaluator whose rows do not interact then runs each device's rows
on that device (GSPMD propagates the sharding) and returns the same numbers
as on one device.  One device, or a row count the device count does not
divide: an ordinary single-device array.  Used by the pymoo problem
(``search.pymoo_problem.batch_evaluator``); the sweep engine shards with
``shard_map`` itself.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


@functools.lru_cache(maxsize=8)
def _row_sharding(devices: tuple) -> NamedSharding:
    return NamedSharding(Mesh(np.array(devices), ("rows",)), P("rows"))


def shard_rows(x, devices=None):
    """`x` [n, ...] on the local devices, rows split evenly (see module docstring)."""
    devices = tuple(jax.local_devices() if devices is None else devices)
    x = np.asarray(x)
    if len(devices) < 2 or x.ndim == 0 or x.shape[0] % len(devices):
        return jnp.asarray(x)
    return jax.device_put(x, _row_sharding(devices))


__all__ = ["shard_rows"]
