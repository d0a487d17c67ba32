"""The device side of ``evaluate_table``: fixed-size chunks of converted rows through the sweep's scenario code.

One jitted function per (scenario, limits, which parameters are columns, chunk
size, dtype, devices): the column parameters arrive as [chunk] arrays sharded
over a 1-D device mesh (``P("rows")``), the other parameters as replicated
scalars broadcast inside jit, the catalog tables and the efficiency model
replicated.  The body is ``sweeps.api.evaluate_params`` -- the code a sweep
runs on decoded digits -- followed by the per-row reductions a table needs
(feasible, reason code, binding constraint).  Elasticities (``sensitivity=``)
use wall 21's forward-mode kernel (``point.sensitivity``) on sub-chunks.

A batch of rows is dispatched chunk by chunk (JAX dispatch is asynchronous:
the device works while the host reads, converts and writes) and collected
later; the last chunk of a batch is padded with copies of its first row and
the padding is cut off on collection.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import MlsysOptError, did_you_mean
from ..scenarios import schema, static_options
from .evaluation import DEFAULT_OBJECTIVES

HOST_OUTPUTS = ("bottleneck", "n_accelerators", "dp", "replicas")   # outputs table_io rounds or decodes
SENS_CHUNK = 8192          # rows per forward-mode Jacobian call (its memory grows with inputs x rows)
_FNS: dict = {}


class _Target(NamedTuple):
    """What ``evaluate_params`` reads of a Space: scenario, objectives, limits, trace-time options."""
    scenario: str
    objectives: tuple
    limits: dict
    options: dict


class TableEvaluator:
    """Evaluates converted rows (``convert_columns`` values) in fixed-size sharded chunks."""

    def __init__(self, plan, limits: dict, catalog, *, eff=None, chunk_size: int = 65536, devices=None,
                 dtype=None, sensitivity: Sequence[str] | str | None = None):
        from jax.sharding import Mesh, NamedSharding
        from jax.sharding import PartitionSpec as P

        from .. import validate
        from ..scenarios.efficiency import DEFAULT_EFFICIENCY
        from ..sweeps.api import _checked_eff

        where = "evaluate_table()"
        self.dtype = jnp.dtype(validate.check_float_dtype("dtype", jnp.float32 if dtype is None else dtype, where))
        self.scenario = plan.scenario
        self.specs = schema.PARAMS[plan.scenario]
        self.eff = _checked_eff(eff, where) if eff is not None else DEFAULT_EFFICIENCY
        self.devices = _devices(devices)
        n_dev = len(self.devices)
        self.chunk = -(-int(chunk_size) // n_dev) * n_dev
        # every parameter travels as a [chunk] array (constants broadcast on the host), as
        # mlsys_opt.evaluate passes them: one compilation per (scenario, limits, chunk, dtype, devices)
        # serves every table layout, and the numbers equal evaluate's bit for bit (compile-time
        # constants would be folded by XLA: ~10-20 % faster on the 2-core CPU, but not the same bits)
        self.col_params = tuple(self.specs)
        self.constants: dict = {}
        self._fill = dict(plan.constants)       # values of the parameters without a column
        # options from the constants only (columns may hold anything): a table whose micro-batch
        # geometry is a constant evaluates one geometry, as a sweep with that constant does
        options = static_options(plan.scenario, {k: [v] for k, v in self._fill.items()})
        self.target = _Target(plan.scenario, tuple((o, "min") for o in DEFAULT_OBJECTIVES[plan.scenario]),
                              dict(limits), options)
        self.output_names = tuple(schema.OUTPUTS[plan.scenario])
        self.constraint_names = tuple(schema.STRUCTURAL_CONSTRAINTS[plan.scenario]) + \
            tuple(f"limit:{o}" for o in limits)
        self.tables = catalog.tables(dtype=self.dtype)
        self.plan_columns = {col: p for col, (p, _) in plan.params.items()}
        self.table_columns = tuple(plan.params) + tuple(plan.extra)       # the caller sets the source order
        self.catalog_names = {s.catalog_kind: tuple(catalog.names(s.catalog_kind))
                              for s in self.specs.values() if s.kind == "catalog"}
        mesh = Mesh(np.array(self.devices), ("rows",))
        self._rows = NamedSharding(mesh, P("rows"))
        self._rep = NamedSharding(mesh, P())
        self._consts: dict = {}                 # (baked constants live in the compiled function)
        self._fn = self._compiled()
        self.sens_outputs, self.sens_inputs, self._sens = self._sensitivity(sensitivity)

    # ------------------------------------------------------------------ compiled functions
    def _np_type(self, param: str):
        return np.int32 if self.specs[param].kind in ("catalog", "choice") else self.dtype

    def _compiled(self):
        from ..sweeps.api import evaluate_columns
        from ..sweeps.step import most_violated

        key = (self.target.scenario, tuple(sorted(self.target.limits.items())),
               tuple(sorted(self.target.options.items())), self.col_params,
               tuple(sorted(self.constants.items())), self.chunk, self.dtype.name, self.devices)
        if key in _FNS:
            return _FNS[key]
        target, dtype, names, n_c = self.target, self.dtype, self.output_names, len(self.constraint_names)
        baked = {k: (v, self._np_type(k)) for k, v in self.constants.items()}

        def run(cols, consts, tables, eff):
            n = next(iter(cols.values())).shape[0]
            p = dict(cols)
            p.update({k: jnp.full((n,), v, t) for k, (v, t) in baked.items()})
            _, G, outputs, _ = evaluate_columns(target, p, tables, eff)
            outs = {k: jnp.broadcast_to(jnp.asarray(getattr(outputs, k), dtype), (n,)) for k in names}
            G = [g.astype(dtype) for g in G]
            binding = most_violated(G)[1] if n_c else jnp.zeros((n,), jnp.int32)
            feasible = jnp.ones((n,), bool)
            for g in G:                       # every constraint <= 0 (a NaN one is not feasible)
                feasible = feasible & (g <= 0)
            reason = jnp.where(feasible, -1, binding)
            G = jnp.stack(G) if n_c else jnp.zeros((0, n), dtype)      # one contiguous row per constraint
            return outs, G, feasible, reason, binding

        fn = jax.jit(run, in_shardings=(self._rows, self._rep, self._rep, self._rep))
        _FNS[key] = fn
        return fn

    def _sensitivity(self, sensitivity):
        if sensitivity is None or (not isinstance(sensitivity, str) and not len(sensitivity)):
            return (), (), None
        import importlib
        sens = importlib.import_module("mlsys_opt.point.sensitivity")    # the module, not the function

        wanted = (sensitivity,) if isinstance(sensitivity, str) else tuple(sensitivity)
        allowed = tuple(n for n, o in schema.OUTPUTS[self.scenario].items() if o.unit != "code")
        for o in wanted:
            if o not in allowed:
                raise MlsysOptError(f"sensitivity: {o!r} is not a numeric output of the {self.scenario} scenario"
                                    f"{did_you_mean(o, allowed)} (allowed: {', '.join(allowed)})")
        from .config import gather_local, parameter_names
        inputs = parameter_names(self.scenario)
        kernel = sens._kernel(self.scenario, inputs, self.dtype)
        sel = np.array([allowed.index(o) for o in wanted])
        eff = type(self.eff)(*[jnp.asarray(x, self.dtype) for x in self.eff])
        sub = min(self.chunk, SENS_CHUNK)
        key = ("sens", self.scenario, self.col_params, tuple(sorted(self.constants.items())), sub, self.dtype.name)
        baked = {k: (v, self._np_type(k)) for k, v in self.constants.items()}
        if key not in _FNS:
            def run(cols, consts, tables, eff):
                n = next(iter(cols.values())).shape[0]
                p = dict(cols)
                p.update({k: jnp.full((n,), v, t) for k, (v, t) in baked.items()})
                local = gather_local(tables, p)
                _, _, _, elast, _ = kernel(p, local, eff, jnp.asarray(p["precision"], jnp.int32))
                return elast
            _FNS[key] = jax.jit(run)
        fn = _FNS[key]

        def evaluate(cols: dict) -> np.ndarray:
            """[m, n_wanted, n_inputs] elasticities of m rows (padded to sub-chunks)."""
            m = len(next(iter(cols.values())))
            pad = -m % sub
            parts = []
            for s in range(0, m + pad, sub):
                piece = {k: _padded(v, s, sub) for k, v in cols.items()}
                parts.append(np.asarray(fn(piece, self._consts, self.tables, eff))[:, sel, :])
            return np.concatenate(parts)[:m]

        self._sens_eff = eff
        return wanted, inputs, evaluate

    # ------------------------------------------------------------------ batches
    def dispatch(self, values: dict, good: np.ndarray) -> Any:
        """Start evaluating the good rows of a converted batch; returns a handle for :meth:`collect`."""
        cols = {}
        n_good = int(good.sum())
        every = bool(good.all())
        for k in self.col_params:
            v = values[k] if k in values else np.full(len(good), self._fill.get(k, 0))
            v = v if every else v[good]
            cols[k] = np.ascontiguousarray(v, dtype=self._np_type(k))
        futures = []
        for s in range(0, n_good, self.chunk):
            piece = {k: _padded(v, s, self.chunk) for k, v in cols.items()}
            futures.append(self._fn(piece, self._consts, self.tables, self.eff))
        return n_good, futures, cols if self._sens is not None else None

    def collect(self, handle) -> dict:
        """{output: [n_good], "G": [n_good, n_constr], "feasible", "reason_code", "binding"[, "elasticity"]}."""
        n_good, futures, cols = handle
        res: dict = {}
        if not futures:
            res.update({k: np.zeros(0, self.dtype) for k in self.output_names})
            res.update(G=[np.zeros(0, self.dtype) for _ in self.constraint_names], feasible=np.zeros(0, bool),
                       reason_code=np.zeros(0, np.int32), binding=np.zeros(0, np.int32))
        else:
            host = [jax.device_get(f) for f in futures]
            for k in self.output_names:       # float columns stay per chunk (Arrow), host-side math needs numpy
                res[k] = _joined([h[0][k] for h in host], n_good, arrow=k not in HOST_OUTPUTS)
            res["G"] = [_joined([h[1][j] for h in host], n_good, arrow=True) for j in range(len(self.constraint_names))]
            res["feasible"] = _joined([h[2] for h in host], n_good)
            res["reason_code"] = _joined([h[3] for h in host], n_good)
            res["binding"] = _joined([h[4] for h in host], n_good)
        if cols is not None:
            res["elasticity"] = self._sens(cols) if n_good else \
                np.zeros((0, len(self.sens_outputs), len(self.sens_inputs)), self.dtype)
        return res


def _padded(v: np.ndarray, start: int, size: int) -> np.ndarray:
    """Rows [start, start + size) of v; past the end, copies of row `start` (a valid configuration)."""
    piece = v[start:start + size]
    if len(piece) == size:
        return piece
    return np.concatenate([piece, np.repeat(piece[:1], size - len(piece))])


def _joined(parts: list, n: int, arrow: bool = False):
    """The first n rows of per-chunk arrays: numpy, or with `arrow` an Arrow ChunkedArray (no copy)."""
    import pyarrow as pa
    if len(parts) == 1:
        return parts[0][:n]
    if not arrow:
        return np.concatenate(parts)[:n]
    cut, out = n, []
    for p in parts:
        if cut <= 0:
            break
        out.append(p[:cut])
        cut -= len(p)
    return pa.chunked_array([pa.array(p) for p in out])


def _devices(devices) -> tuple:
    if devices is None:
        return tuple(jax.devices())
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(jax.devices()):
            raise MlsysOptError(f"evaluate_table(): devices={devices} but jax sees {len(jax.devices())} device(s)")
        return tuple(jax.devices()[:int(devices)])
    devices = tuple(devices)
    if not devices:
        raise MlsysOptError("evaluate_table(): devices is empty; pass None for all of jax.devices()")
    return devices


__all__ = ["SENS_CHUNK", "TableEvaluator"]
