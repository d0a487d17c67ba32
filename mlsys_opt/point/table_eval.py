"""The device side of ``evaluate_table``: fixed-size chunks of converted rows through the sweep's scenario code.

One jitted function per (scenario, limits, trace-time options, chunk size,
dtype, devices) and set of columns: the column parameters arrive as [chunk]
arrays sharded over a 1-D device mesh (``P("rows")``), the other parameters as
replicated 0-d arrays (put on the devices once) broadcast inside jit, the
catalog tables and the efficiency model replicated.  The body is
``sweeps.api.evaluate_columns`` -- the code a sweep runs on decoded digits --
followed by the per-row reductions a table needs (feasible, reason code,
binding constraint).  Elasticities (``sensitivity=``) use wall 21's
forward-mode kernel (``point.sensitivity``) on sub-chunks.

Rows are grouped by the options ``scenarios.static_options`` gives for each row
alone (what ``mlsys_opt.evaluate`` compiles for that configuration): a training
row that gives micro_batch_size or microbatches is evaluated at its one
micro-batch geometry, the others at the candidate set (~4x the work); each
group is chunked on its own and the results are put back in table order, so
nothing depends on which rows share a chunk.

A batch of rows is dispatched chunk by chunk (JAX dispatch is asynchronous:
the device works while the host reads, converts and writes) and collected
later; the last chunk of a group is padded with copies of its first row and
the padding is cut off on collection.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._compile import jit_options
from ..errors import MlsysOptError, did_you_mean
from ..scenarios import STATIC_OPTION_PARAMS, schema, static_options
from ..sweeps.api import NON_FINITE
from .evaluation import DEFAULT_OBJECTIVES

HOST_OUTPUTS = ("bottleneck", "n_accelerators", "dp", "replicas")   # outputs table_io rounds or decodes
# the parameters ``scenarios.static_options`` reads: rows are grouped by the options their values give
OPTION_PARAMS = STATIC_OPTION_PARAMS
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

    def __init__(self, plan, limits: dict, catalog, *, eff=None, chunk_size: int = 16384, devices=None,
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
        # every parameter is a run-time value, as mlsys_opt.evaluate passes them: the columns as
        # [chunk] arrays, the parameters without a column as replicated 0-d arrays (put on the
        # devices once) broadcast inside jit -- XLA then computes what depends on them alone once
        # per chunk (~20 % less work with the candidate micro-batch set), with the same
        # operations, so the numbers equal evaluate's bit for bit (compile-time constants would
        # be folded by XLA's own evaluator: not the same bits).  One compilation per (scenario,
        # limits, options, which parameters are columns, chunk, dtype, devices).
        self.col_params = tuple(self.specs)
        self._fill = dict(plan.constants)       # values of the parameters without a column
        self._given = {p for p, _ in plan.params.values()}
        self.target = _Target(plan.scenario, tuple((o, "min") for o in DEFAULT_OBJECTIVES[plan.scenario]),
                              dict(limits), {})
        self.output_names = tuple(schema.OUTPUTS[plan.scenario])
        self.constraint_names = tuple(schema.STRUCTURAL_CONSTRAINTS[plan.scenario]) + \
            tuple(f"limit:{o}" for o in limits)
        # reason codes: -1 feasible, j < n_constr the most violated constraint, n_constr non_finite
        self.reason_names = self.constraint_names + (NON_FINITE,)
        self.tables = catalog.tables(dtype=self.dtype)
        self.plan_columns = {col: p for col, (p, _) in plan.params.items()}
        self.table_columns = tuple(plan.params) + tuple(plan.extra)       # the caller sets the source order
        self.catalog_names = {s.catalog_kind: tuple(catalog.names(s.catalog_kind))
                              for s in self.specs.values() if s.kind == "catalog"}
        mesh = Mesh(np.array(self.devices), ("rows",))
        self._rows = NamedSharding(mesh, P("rows"))
        self._rep = NamedSharding(mesh, P())
        self._fns: dict = {}                    # options -> compiled function
        self.compile_status = "not compiled"   # how the last chunk function was obtained (table_cache)
        self._const_dev: dict | None = None     # parameters without a column, on the devices
        self.sens_outputs, self.sens_inputs, self._sens = self._sensitivity(sensitivity)

    # ------------------------------------------------------------------ compiled functions
    def _np_type(self, param: str):
        return np.int32 if self.specs[param].kind in ("catalog", "choice") else self.dtype

    def _compiled(self, options: tuple, ahead: bool = False):
        """The chunk function for trace-time `options` (sorted (name, value) pairs): the executable of the
        compiled-table cache (``point.table_cache``: loaded, or compiled and stored), else the jitted
        function (compiled here with `ahead`, else on its first call)."""
        if options in self._fns:
            return self._fns[options]
        fn = self._jitted(options)
        from . import table_cache
        if table_cache.usable(self.scenario):
            program = {"scenario": self.scenario, "limits": self.target.limits, "options": options,
                       "objectives": self.target.objectives, "outputs": self.output_names,
                       "constraints": self.constraint_names, "chunk": self.chunk, "dtype": self.dtype.name}
            fn, self.compile_status = table_cache.load_or_compile(fn, self._arg_specs(), program, self.devices)
        elif ahead:
            fn.lower(*self._arg_specs()).compile()
            self.compile_status = "compiled (the compiled-table cache is off)"
        self._fns[options] = fn
        return fn

    def _arg_specs(self) -> tuple:
        """Arguments of the shape dispatch passes: [chunk] zeros for every column parameter, the constants,
        the catalog tables, the efficiency model."""
        shapes = {k: np.zeros(self.chunk, self._np_type(k)) for k in self.col_params if k in self._given}
        return shapes, self._constants(), self.tables, self.eff

    def _jitted(self, options: tuple):
        """The jitted chunk function for `options` (one per scenario, limits, options, chunk, dtype, devices)."""
        from ..sweeps.api import evaluate_columns

        key = (self.target.scenario, tuple(sorted(self.target.limits.items())), options, self.chunk,
               self.dtype.name, self.devices)
        if key not in _FNS:
            target = self.target._replace(options=dict(options))
            dtype, names, n_c = self.dtype, self.output_names, len(self.constraint_names)

            def run(cols, consts, tables, eff):
                n = next(iter(cols.values())).shape[0]
                p = dict(cols)
                p.update({k: jnp.broadcast_to(v, (n,)) for k, v in consts.items()})
                F, G, outputs, _ = evaluate_columns(target, p, tables, eff)
                outs = {k: jnp.broadcast_to(jnp.asarray(getattr(outputs, k), dtype), (n,)) for k in names}
                G = [g.astype(dtype) for g in G]
                feasible, reason, binding = row_feasibility(F, G, n)
                G = jnp.stack(G) if n_c else jnp.zeros((0, n), dtype)      # one contiguous row per constraint
                return outs, G, feasible, reason, binding

            _FNS[key] = jax.jit(run, in_shardings=(self._rows, self._rep, self._rep, self._rep))
        return _FNS[key]

    def _groups(self, cols: dict, n: int) -> list:
        """[(options, row indices or None for all n rows)]: rows grouped by the scenario's trace-time options.

        A row's options are what ``scenarios.static_options`` gives for that row alone -- what
        ``mlsys_opt.evaluate`` compiles for it -- so a training row that gives its micro-batch
        geometry (micro_batch_size or microbatches > 0) is evaluated at that one geometry (~5x
        cheaper than the candidate set) and a row that gives neither at the candidate set,
        whatever the other rows of its chunk are: the results do not depend on the chunking.
        """
        names = OPTION_PARAMS.get(self.scenario, ())
        fixed = {k: [self._fill[k]] for k in names if k not in cols}
        varying = [k for k in names if k in cols]
        if not varying or not n:
            return [(_options_key(self.scenario, fixed), None)]
        import pandas as pd
        if len(varying) == 1:                       # (the usual case) the distinct values, then their rows
            k = varying[0]
            by_value: dict = {}
            for u in _distinct(cols[k]).tolist():
                by_value.setdefault(_options_key(self.scenario, {**fixed, k: [u]}), []).append(u)
            if len(by_value) == 1:
                return [(next(iter(by_value)), None)]
            return [(key, np.flatnonzero(np.isin(cols[k], vals))) for key, vals in by_value.items()]
        combo = np.zeros(n, np.int64)               # one code per distinct combination of their values
        distinct = []
        for k in varying:                           # hashing (pandas), not sorting: ~40x faster than np.unique
            codes, uniques = pd.factorize(cols[k])
            combo = combo * len(uniques) + codes
            distinct.append(np.asarray(uniques))
        combo, combos = pd.factorize(combo)
        by_key: dict = {}
        for i, code in enumerate(np.asarray(combos).tolist()):
            row = {}
            for k, uniques in zip(reversed(varying), reversed(distinct)):
                code, j = divmod(code, len(uniques))
                row[k] = [uniques[j].item()]
            by_key.setdefault(_options_key(self.scenario, {**fixed, **row}), []).append(i)
        if len(by_key) == 1:
            return [(next(iter(by_key)), None)]
        return [(key, np.flatnonzero(np.isin(combo, codes))) for key, codes in by_key.items()]

    def _constants(self) -> dict:
        """{parameter: replicated 0-d device array} of the parameters without a column (made once)."""
        if self._const_dev is None:
            self._const_dev = {k: jax.device_put(np.asarray(self._fill.get(k, 0), self._np_type(k)), self._rep)
                               for k in self.col_params if k not in self._given}
        return self._const_dev

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
        kernel = sens._kernel(self.scenario, inputs, self.dtype, jit=False)
        sel = np.array([allowed.index(o) for o in wanted])
        eff = type(self.eff)(*[jnp.asarray(x, self.dtype) for x in self.eff])
        sub = min(self.chunk, SENS_CHUNK)
        key = ("sens", self.scenario, self.col_params, sub, self.dtype.name)
        if key not in _FNS:
            def run(p, tables, eff):
                local = gather_local(tables, p)
                _, _, _, elast, _ = kernel(p, local, eff, jnp.asarray(p["precision"], jnp.int32))
                return elast
            _FNS[key] = jax.jit(run, **jit_options())     # as point.sensitivity's kernels (mlsys_opt._compile)
        fn = _FNS[key]

        def evaluate(cols: dict) -> np.ndarray:
            """[m, n_wanted, n_inputs] elasticities of m rows (padded to sub-chunks)."""
            m = len(next(iter(cols.values())))
            pad = -m % sub
            parts = []
            for s in range(0, m + pad, sub):
                piece = {k: _padded(v, s, sub) for k, v in cols.items()}
                parts.append(np.asarray(fn(piece, self.tables, eff))[:, sel, :])
            return np.concatenate(parts)[:m]

        self._sens_eff = eff
        return wanted, inputs, evaluate

    def prepare(self, values: dict, good: np.ndarray):
        """Compile (ahead of time, nothing is evaluated) the functions the good rows of a converted batch
        need, on a thread; returns it (join before dispatching) or None.  ``evaluate_table`` calls it
        with its first batch, so that the compilation (or the persistent cache's load) overlaps the
        check of every row."""
        import threading
        cols = {k: np.asarray(values[k])[good] for k in OPTION_PARAMS.get(self.scenario, ()) if k in values}
        n_good = int(good.sum())
        if not n_good:
            return None
        keys = [options for options, _ in self._groups(cols, n_good)]
        self._constants()                     # (made here: the thread only reads them)

        def compile_all():
            for options in keys:
                try:
                    self._compiled(options, ahead=True)
                except Exception:      # noqa: BLE001, S110 - dispatch compiles again and raises there
                    pass

        # not a daemon: a run refused for bad rows does not wait for it, but the interpreter does at
        # exit (a daemon thread inside XLA's compiler at shutdown aborts the process)
        thread = threading.Thread(target=compile_all, name="mlsys_opt-table-compile", daemon=False)
        thread.start()
        return thread

    # ------------------------------------------------------------------ batches
    def dispatch(self, values: dict, good: np.ndarray) -> Any:
        """Start evaluating the good rows of a converted batch; returns a handle for :meth:`collect`."""
        cols = {}
        n_good = int(good.sum())
        every = bool(good.all())
        for k in self.col_params:
            if k in values:
                cols[k] = np.ascontiguousarray(values[k] if every else values[k][good], dtype=self._np_type(k))
        consts = self._constants()
        parts = []
        for options, idx in self._groups(cols, n_good):
            fn = self._compiled(options)
            rows = cols if idx is None else {k: v[idx] for k, v in cols.items()}
            m = n_good if idx is None else len(idx)
            futures = []
            for s in range(0, m, self.chunk):
                piece = {k: _padded(v, s, self.chunk) for k, v in rows.items()}
                futures.append(fn(piece, consts, self.tables, self.eff))
            parts.append((idx, m, futures))
        if self._sens is not None:          # the kernel takes every parameter as a host array
            cols.update({k: np.full(n_good, self._fill.get(k, 0), self._np_type(k))
                         for k in self.col_params if k not in cols})
        return n_good, parts, cols if self._sens is not None else None

    def collect(self, handle) -> dict:
        """{output: [n_good], "G": [n_constr] x [n_good], "feasible", "reason_code", "binding"[, "elasticity"]}.

        Float columns of one group of rows stay per chunk (Arrow ChunkedArrays, no copy); rows
        of several option groups are put back in table order (numpy).
        """
        n_good, parts, cols = handle
        res: dict = {}
        n_c = len(self.constraint_names)
        if not n_good:
            res.update({k: np.zeros(0, self.dtype) for k in self.output_names})
            res.update(G=[np.zeros(0, self.dtype) for _ in self.constraint_names], feasible=np.zeros(0, bool),
                       reason_code=np.zeros(0, np.int32), binding=np.zeros(0, np.int32))
        else:
            fields = [(("o", k), (lambda h, k=k: h[0][k]), k not in HOST_OUTPUTS) for k in self.output_names]
            fields += [(("g", j), (lambda h, j=j: h[1][j]), True) for j in range(n_c)]
            fields += [((name, None), (lambda h, i=i: h[i]), False)
                       for i, name in ((2, "feasible"), (3, "reason_code"), (4, "binding"))]
            got: dict = {}
            if len(parts) == 1:
                _, m, futures = parts[0]
                host = [jax.device_get(f) for f in futures]
                for key, pick, arrow in fields:
                    got[key] = _joined([pick(h) for h in host], m, arrow=arrow)
            else:                             # several option groups: scatter each into table order
                for idx, m, futures in parts:
                    host = [jax.device_get(f) for f in futures]
                    for key, pick, _ in fields:
                        v = _joined([pick(h) for h in host], m)
                        if key not in got:
                            got[key] = np.empty(n_good, v.dtype)
                        got[key][idx] = v
            res.update({k: got[("o", k)] for k in self.output_names})
            res["G"] = [got[("g", j)] for j in range(n_c)]
            res.update({name: got[(name, None)] for name in ("feasible", "reason_code", "binding")})
        if cols is not None:
            res["elasticity"] = self._sens(cols) if n_good else \
                np.zeros((0, len(self.sens_outputs), len(self.sens_inputs)), self.dtype)
        return res


def row_feasibility(F, G, n: int):
    """(feasible bool[n], reason_code int32[n], binding int32[n]) from objective and constraint columns.

    As a sweep (``sweeps.step.feasibility``) and ``mlsys_opt.evaluate`` decide: a row is feasible
    when its objectives F and constraints G (vectors [n], <= 0 feasible) are all finite and every
    G <= 0.  reason_code: -1 feasible; len(G) (``non_finite``) for a NaN/inf objective or
    constraint, whatever the constraints say (a -inf margin does not make a row feasible); else
    the most violated constraint (the first on ties), which ``binding`` gives for every row.
    """
    from ..sweeps.step import all_finite, most_violated
    n_c = len(G)
    finite = all_finite(F, G, jnp.ones((n,), bool))
    if n_c:
        worst, binding = most_violated(G)
        feasible = finite & (worst <= 0)          # with finite G: every g <= 0
    else:
        binding, feasible = jnp.zeros((n,), jnp.int32), finite
    reason = jnp.where(feasible, -1, jnp.where(finite, binding, n_c)).astype(jnp.int32)
    return feasible, reason, binding


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


def _distinct(v: np.ndarray) -> np.ndarray:
    """The distinct values of a column: for whole numbers in [0, 2^16) (counts, geometries) by one
    bincount (~4x faster than hashing them), else pandas' hashing (~40x faster than np.unique)."""
    import pandas as pd
    if v.size and v.dtype.kind in "fiu":
        lo, hi = v.min(), v.max()
        if lo >= 0 and hi < 65536:                  # (False for NaN)
            iv = v.astype(np.int64)
            if (iv == v).all():
                return np.flatnonzero(np.bincount(iv)).astype(v.dtype)
    return np.asarray(pd.unique(v))


def _options_key(scenario: str, possible: dict) -> tuple:
    """``scenarios.static_options`` as a hashable key (sorted (name, value) pairs)."""
    return tuple(sorted(static_options(scenario, possible).items()))


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


__all__ = ["SENS_CHUNK", "TableEvaluator", "row_feasibility"]
