"""Exhaustive sweep of a design space: spaces + scenarios on the streaming engine.

A space (``space.Space``) is an integer index range in mixed radix; a chunk of
configurations arrives as digits, is decoded to scenario parameters on the
device (``Space.param_values``), the catalog rows are gathered inside jit, the
scenario is evaluated, and ``sweep_engine.stream`` reduces the chunk on the
device (feasible count, exact non-dominated front, best-k per objective)
before anything returns to the host.  Memory stays flat in the size of the
space; several devices are used through the engine's sharding.

Column conventions of the result (`SweepResult.front`):
  axis columns decoded to names / values (``Space.labels``), then every
  scenario output with its unit suffix (``time_to_train_s``, ``tco_usd`` ...),
  ``bottleneck`` as a name, and derived human columns (``time_to_train_days``).

Constraints handed to the engine: the scenario's structural constraints
followed by one column per spec limit, ``(output - limit) / |limit|`` for a
maximum and ``(limit - output) / |limit|`` for a minimum (<= 0 feasible).
The structural ones are the engine's hard constraints (``n_hard``): when nothing
is feasible, ``SweepResult.near_miss`` (``sweeps.near_miss``) says how close the
space comes.
"""
from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import validate
from .._types import BOTTLENECKS, SECONDS_PER_DAY
from ..catalog import load_catalog
from ..errors import MlsysOptError
from ..scenarios import SCENARIO_FNS, params_from_dict, schema, static_options
from ..scenarios.efficiency import DEFAULT_EFFICIENCY, Efficiency
from ..space.spec import Space, load_space
from . import engine as sweep_engine
from .near_miss import NearMiss, g_column, total_violation

if TYPE_CHECKING:
    import pandas as pd


class Evaluation(NamedTuple):
    F: Any             # [n, n_obj] objectives in minimize sense (maximize ones negated)
    G: Any             # [n, n_constr] constraints, <= 0 feasible
    outputs: Any       # scenario Outputs NamedTuple of [n] arrays
    constraints: Any   # scenario Constraints NamedTuple of [n] arrays


class SweepResult(NamedTuple):
    front: pd.DataFrame          # the exact Pareto front (feasible, non-dominated)
    best: dict                   # objective -> DataFrame of its best-k feasible rows
    n_evaluated: int
    n_feasible: int
    elapsed_s: float
    space: Space
    histograms: dict
    # reason -> infeasible configurations: the constraint each binds most, or "non_finite"
    # (a NaN or infinite objective/constraint); read-only default, never shared mutable state
    infeasible_by: Mapping[str, int] = MappingProxyType({})
    # when no configuration is feasible: the least-violating one and each constraint's closest
    # (sweeps.near_miss.NearMiss); None when some configuration is feasible
    near_miss: NearMiss | None = None

    def to_frame(self) -> pd.DataFrame:
        """The front (inputs and outputs, SI units in the column names)."""
        return self.front

    def _repr_html_(self) -> str:
        """Notebook view: one summary line, the binding constraints and the first rows of the front."""
        import html as _html
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(self.infeasible_by.items(), key=lambda kv: -kv[1]) if v)
        head = (f"<p><b>{_html.escape(self.space.name)}</b> ({self.space.scenario}): {self.n_evaluated:,} "
                f"configurations, {self.n_feasible:,} feasible, {len(self.front):,} on the Pareto front, "
                f"{self.elapsed_s:.1f} s." + (f" Infeasible by: {_html.escape(reasons)}." if reasons else "")
                + "</p>")
        return head + self.front.head(20).to_html(index=False)


NON_FINITE = "non_finite"   # reason code of configurations whose objectives or constraints are NaN or inf


def constraint_names(space: Space) -> tuple[str, ...]:
    """Names of the G columns: structural constraints, then `limit:<output>`."""
    return schema.STRUCTURAL_CONSTRAINTS[space.scenario] + tuple(f"limit:{o}" for o in space.limits)


def limit_columns(outputs, limits: Mapping) -> list:
    """Spec-limit constraint columns (<= 0 feasible), one per limit in order: (y - L) / |L| for a
    maximum, (L - y) / |L| for a minimum (|L| floored at 1e-30; the one formula for every caller).

    outputs: the scenario's Outputs NamedTuple (any object with the outputs as attributes) or a
    mapping name -> array (jax or numpy); limits: {output: (sense "max"|"min", L)}.
    """
    get = outputs.__getitem__ if isinstance(outputs, Mapping) else functools.partial(getattr, outputs)
    cols = []
    for out, (sense, limit) in limits.items():
        y, scale = get(out), max(abs(float(limit)), 1e-30)
        cols.append((y - limit) / scale if sense == "max" else (limit - y) / scale)
    return cols


def output_names(space: Space) -> tuple[str, ...]:
    return tuple(schema.OUTPUTS[space.scenario])


def scenario_options(space) -> dict:
    """The scenario's trace-time options (`scenarios.static_options`) for a Space's axes and constants.

    Objects that are not a Space (the table evaluator's target) carry them as `.options`.
    """
    if not hasattr(space, "axes"):
        return dict(getattr(space, "options", {}))
    possible = {k: [v] for k, v in space.constants.items()}
    possible.update({a.name: a.values for a in space.axes})
    return static_options(space.scenario, possible)


def evaluate_columns(space: Space, p: dict, tables, eff):
    """Scenario on decoded parameters -> (F columns (min sense), G columns, outputs, structural)."""
    outputs, structural = SCENARIO_FNS[space.scenario](params_from_dict(space.scenario, p), tables, eff,
                                                       **scenario_options(space))
    cols = [jnp.asarray(getattr(outputs, name)) for name, _ in space.objectives]
    F = [c if sense == "min" else -c for c, (_, sense) in zip(cols, space.objectives)]
    n = F[0].shape[0]
    g = [jnp.asarray(x) for x in structural] + [jnp.asarray(c) for c in limit_columns(outputs, space.limits)]
    G = [jnp.broadcast_to(x, (n,)).astype(F[0].dtype) for x in g]
    return F, G, outputs, structural


def evaluate_params(space: Space, p: dict, tables, eff) -> Evaluation:
    """Scenario on decoded parameters -> objectives (min sense) and constraints."""
    F, G, outputs, structural = evaluate_columns(space, p, tables, eff)
    n, dtype = F[0].shape[0], F[0].dtype
    return Evaluation(_as_rows(F, n, dtype), _as_rows(G, n, dtype), outputs, structural)


def _as_rows(cols: list, n: int, dtype) -> jax.Array:
    """Column vectors [n] stacked into a row-major [n, len(cols)] array ([n, 0] for none)."""
    return jnp.stack(cols, axis=-1) if cols else jnp.zeros((n, 0), dtype)


def make_chunk_fn(space: Space, tables, eff, dtype=jnp.float32, *, layout: str = "rows") -> Callable:
    """digits int32[chunk, n_axes] -> (F, G, aux) for the engine; aux = every output.

    layout "rows": [chunk, n] arrays; "columns": tuples of n vectors [chunk] (the engine's
    ``layout="columns"``: nothing is stacked per chunk).
    """
    names = output_names(space)
    columns = layout == "columns"

    def chunk_fn(digits):
        F, G, outputs, _ = evaluate_columns(space, space.param_values(digits, dtype), tables, eff)
        n = F[0].shape[0]
        F, G = [c.astype(dtype) for c in F], [g.astype(dtype) for g in G]
        aux = [jnp.broadcast_to(jnp.asarray(getattr(outputs, k), dtype), (n,)) for k in names]
        if columns:
            return tuple(F), tuple(G), tuple(aux)
        return tuple(_as_rows(x, n, dtype) for x in (F, G, aux))

    return chunk_fn


def evaluate_digits(space: Space, digits, *, tables=None, eff=None, dtype=jnp.float32) -> Evaluation:
    """Evaluate explicit configurations (digits int[n, n_axes]) in one jitted call.

    Returns numpy arrays; used by the pymoo adapter, the CLI's `evaluate` and tests.
    Raises MlsysOptError for digits of the wrong shape, fractional or outside an axis
    (the jitted gather would clip them and evaluate another configuration).
    """
    digits = _checked_digits(space, digits, "evaluate_digits()")
    tables = _tables(space, tables, dtype)
    eff = DEFAULT_EFFICIENCY if eff is None else eff
    fn = _jitted_eval(space, dtype)
    ev = fn(jnp.asarray(digits), tables, eff)
    return jax.tree_util.tree_map(np.asarray, ev)


def _checked_digits(space: Space, digits, where: str) -> np.ndarray:
    """int32 [n, n_axes] digits with 0 <= d_k < radix_k, else MlsysOptError naming the axis (host side)."""
    arr = np.asarray(digits)
    n_axes = len(space.axes)
    if arr.ndim != 2 or arr.shape[1] != n_axes or arr.dtype.kind not in "iuf":
        raise MlsysOptError(f"{where}: digits: expected integers of shape [n, {n_axes}] (one digit per axis: "
                            f"{', '.join(space.axis_names)}); got shape {list(arr.shape)} of {arr.dtype}")
    radices = np.asarray(space.radices, np.int64)
    whole = np.isfinite(arr) & (arr == np.round(arr)) if arr.dtype.kind == "f" else np.ones(arr.shape, bool)
    bad = ~whole | (arr < 0) | (arr >= radices)
    if bad.any():
        i, k = (int(x) for x in np.argwhere(bad)[0])
        raise MlsysOptError(f"{where}: digits[{i}, {k}] = {arr[i, k]!r} on axis {space.axes[k].name!r}: "
                            f"expected an integer digit in [0, {radices[k] - 1}] ({int(bad.sum())} bad digit(s))")
    return arr.astype(np.int32)


def _jitted_eval(space: Space, dtype) -> Callable:
    return _jitted_eval_cached(space, jnp.dtype(dtype).name)


@functools.lru_cache(maxsize=8)      # Space hashes by identity; at most 8 kept alive
def _jitted_eval_cached(space: Space, dtype_name: str) -> Callable:
    def run(digits, tables, eff):
        return evaluate_params(space, space.param_values(digits, dtype_name), tables, eff)
    return jax.jit(run)


def _tables(space: Space, tables, dtype):
    if tables is not None:
        return tables
    catalog = space.catalog if space.catalog is not None else load_catalog()
    return catalog.tables(dtype=dtype)


def run_key(space: Space, eff, dtype, tables=None) -> str:
    """Fingerprint of what a sweep computes, so --resume refuses another problem.

    One hash per input (sweeps.checkpoint.compose_run_key): scenario, axes, constants, limits,
    objectives, the catalog (``Catalog.fingerprint()``, the same digest as the results' metadata;
    tables given by the caller instead: their bytes), efficiency model, dtype and package version;
    a refusal names the inputs that changed.
    """
    from importlib import metadata

    from .checkpoint import compose_run_key
    try:
        version = metadata.version("mlsys_opt")
    except metadata.PackageNotFoundError:   # a source tree that was not installed
        version = "unknown"
    catalog_part = _catalog_digest(space, tables)
    return compose_run_key({
        "scenario": space.scenario, "axes": [(a.name, list(map(str, a.labels))) for a in space.axes],
        "constants": {k: float(v) for k, v in space.constants.items()},
        "limits": {k: [s, float(v)] for k, (s, v) in space.limits.items()},
        "objectives": space.objectives, "catalog_sha256": catalog_part, "efficiency": [float(x) for x in eff],
        "dtype": jnp.dtype(dtype).name, "code": version})


def sweep(space: Space | str, *, chunk_size: int | None = None, front_capacity: int | None = None,
          top_k: int = 5, devices=None, progress=None, checkpoint_path=None, resume: bool = False,
          eff=None, tables=None, dtype=jnp.float32, distributed: bool = False,
          timings: dict | None = None) -> SweepResult:
    """Evaluate every configuration of `space` and return its exact Pareto front.

    Args:
      space: a Space or a path / dict accepted by ``load_space``.
      chunk_size, front_capacity: engine settings (default: the spec's [sweep]
        table, else 65,536 and 4,096).  They do not change the result.
      top_k: rows kept per objective in ``SweepResult.best``.
      devices: jax devices (or a count) to shard each chunk over; default all.
      progress: engine progress callback / False for silence / None for a
        tqdm bar on a terminal or in a Jupyter notebook.
      checkpoint_path, resume: write the reducer state atomically while
        sweeping and continue an interrupted sweep from its last chunk.
      eff: an ``Efficiency`` (e.g. a calibration); default DEFAULT_EFFICIENCY.
      dtype: float32 (fast) or float64 (needs jax x64).
      distributed: sweep across the processes of a jax.distributed job
        (``sweeps.distributed``: joined here if not yet, e.g. under SLURM);
        each process sweeps a share on its local devices, all return the
        same result, only process 0 writes the checkpoint.
      timings: a dict that receives seconds per phase (spec, compile,
        evaluate, reduce, gather, frame).
    """
    return _sweep(space, chunk_size=chunk_size, front_capacity=front_capacity, top_k=top_k, devices=devices,
                  progress=progress, checkpoint_path=checkpoint_path, resume=resume, eff=eff, tables=tables,
                  dtype=dtype, distributed=distributed, timings=timings)


def warm(space: Space | str, *, chunk_size: int | None = None, front_capacity: int | None = None,
         top_k: int = 5, devices=None, eff=None, tables=None, dtype=jnp.float32) -> dict:
    """Compile the sweep of `space` without sweeping it: fills JAX's persistent compilation cache.

    Builds and runs the very program :func:`sweep` with the same arguments runs (the engine's
    jitted step over the spec's chunk size, catalog, efficiency model, dtype and devices), on
    the first configuration only, so a later ``sweep`` in another process -- with the cache
    enabled, e.g. by the CLI (``mlsys-opt warmup``) or ``jax.config.update(
    "jax_compilation_cache_dir", ...)`` -- loads the executable instead of compiling it.

    Returns the sweep's ``timings`` dict (spec, compile, evaluate, ...: seconds).
    """
    timings: dict = {}
    _sweep(space, chunk_size=chunk_size, front_capacity=front_capacity, top_k=top_k, devices=devices,
           progress=False, eff=eff, tables=tables, dtype=dtype, timings=timings, first_only=True)
    return timings


def _sweep(space, *, chunk_size=None, front_capacity=None, top_k=5, devices=None, progress=None,
           checkpoint_path=None, resume=False, eff=None, tables=None, dtype=jnp.float32, distributed=False,
           timings=None, first_only: bool = False) -> SweepResult:
    """:func:`sweep`; with `first_only`, the same compiled step run on configuration 0 alone (:func:`warm`)."""
    t0 = time.perf_counter()
    if distributed:                  # before anything touches a JAX backend
        from . import distributed as _dist
        _dist.initialize()
    if not isinstance(space, Space):
        space = load_space(space)
    where = "sweep()"
    dtype = validate.check_float_dtype("dtype", dtype, where)
    eff = _checked_eff(eff, where)
    settings = space.sweep or {}
    chunk_size = validate.check_positive_int(
        "chunk_size", settings.get("chunk_size", 65536) if chunk_size is None else chunk_size, where)
    front_capacity = validate.check_positive_int(
        "front_capacity", settings.get("front_capacity", 4096) if front_capacity is None else front_capacity, where)
    given_tables = tables
    chunk_size = min(chunk_size, _pow2_at_least(space.size))
    names = output_names(space)
    if timings is not None:
        timings["spec"] = timings.get("spec", 0.0) + time.perf_counter() - t0
    stream = _dist.stream if distributed else sweep_engine.stream
    counts = engine_counts(space, names)
    extra = {"index_range": (0, min(1, space.size))} if first_only else {}
    steps = None if distributed else _step_cache(space, eff, dtype, given_tables, names, devices, counts,
                                                 chunk_size=chunk_size, front_capacity=front_capacity, top_k=top_k)
    if steps is not None:
        devices, extra["steps"] = steps.devices, steps
    _preload_pandas()                # the front's DataFrame: imported while XLA loads and runs the step
    res = stream(
        space.radices, _lazy_chunk_fn(space, given_tables, eff, dtype), layout="columns", **counts,
        chunk_size=chunk_size, front_capacity=front_capacity, top_k=top_k, devices=devices,
        progress=progress, checkpoint_path=checkpoint_path, resume=resume,
        run_key=run_key(space, eff, dtype, given_tables), timings=timings, **extra)
    if timings is not None and steps is not None:
        timings["_step_cache"] = (steps.status, steps.load_s, str(steps.folder))
    t1 = time.perf_counter()
    front = _frame(space, res.front.digits, res.front.aux, names)
    front = front.sort_values([_sort_column(space)], kind="stable").reset_index(drop=True)
    best = {}
    for j, (obj, _) in enumerate(space.objectives):
        best[obj] = _frame(space, res.best[j].digits, res.best[j].aux, names)
    reasons = dict(zip(constraint_names(space) + (NON_FINITE,), (int(c) for c in res.infeasible_by)))
    near = None
    if res.near_miss is not None:
        nm = res.near_miss
        near = NearMiss(nm.violation, near_miss_frame(space, nm.least.digits, nm.least.G, nm.least.aux),
                        {c: near_miss_frame(space, r.digits, r.G, r.aux)
                         for c, r in zip(constraint_names(space)[counts["n_hard"]:], nm.closest) if len(r.index)})
    if timings is not None:
        timings["frame"] = timings.get("frame", 0.0) + time.perf_counter() - t1
    return SweepResult(front, best, res.n_evaluated, res.n_feasible, res.elapsed_s, space, res.histograms,
                       reasons, near)


def engine_counts(space: Space, names) -> dict:
    """The engine's column counts for a sweep of `space` with aux columns `names` (objectives, constraints:
    structural then limits, aux, and how many of the constraints are structural: ``n_hard``)."""
    return {"n_obj": len(space.objectives), "n_constr": len(constraint_names(space)), "n_aux": len(names),
            "n_hard": len(schema.STRUCTURAL_CONSTRAINTS[space.scenario])}


def near_miss_frame(space: Space, digits, G, aux) -> pd.DataFrame:
    """Rows of a near miss (``sweeps.near_miss.NearMiss``): the front's columns, then ``g_<constraint>``
    per constraint column of G [n, n_constr] and ``violation`` (sum of the positive g)."""
    df = _frame(space, digits, aux, output_names(space))
    names = constraint_names(space)
    G = np.asarray(G, np.float64).reshape(len(df), len(names))
    for j, name in enumerate(names):
        df[g_column(name)] = G[:, j]
    df["violation"] = total_violation(G)
    return df


def _preload_pandas() -> None:
    """Import pandas on a daemon thread (unless it is imported already): ~0.35 s of CPU that overlaps the
    step's loading and evaluation, which release the GIL; the front's frame then finds it imported (an
    import that fails here fails again, with its message, where the frame is built)."""
    import sys
    import threading
    if "pandas" in sys.modules:
        return

    def load():
        try:
            import pandas  # noqa: F401
        except Exception:  # noqa: BLE001 - reported by the import where the frame is built
            pass
    threading.Thread(target=load, name="mlsys-opt-preload-pandas", daemon=True).start()


def _lazy_chunk_fn(space: Space, tables, eff, dtype) -> Callable:
    """``make_chunk_fn(space, tables, ...)`` (columns) whose catalog device tables are built when it is first
    traced: a sweep whose compiled step comes from the step cache never traces it, nor builds them."""
    built: list = []

    def chunk_fn(digits):
        if not built:
            with jax.ensure_compile_time_eval():     # concrete device tables (the catalog caches them), not tracers
                built.append(make_chunk_fn(space, _tables(space, tables, dtype), eff, dtype, layout="columns"))
        return built[0](digits)
    return chunk_fn


def _catalog_digest(space: Space, tables=None):
    """What a sweep gathers from: the catalog's fingerprint, or the SHA-256 of each leaf of the device
    tables the caller gave instead."""
    if tables is not None:
        return [hashlib.sha256(np.ascontiguousarray(np.asarray(x)).tobytes()).hexdigest()
                for x in jax.tree_util.tree_leaves(tables)]
    return (space.catalog if space.catalog is not None else load_catalog()).fingerprint()


def _step_cache(space: Space, eff, dtype, given_tables, names, devices, counts: dict, **engine):
    """The compiled-step cache of this sweep (``sweeps.executables``), or None when it is off (no folder,
    several processes, jit disabled).  Its key: the code and JAX (there), and here everything of the
    problem that is baked into the program."""
    from . import executables
    folder = executables.folder_for(space.scenario)     # None: off, several processes, no jit, a foreign scenario
    if folder is None:
        return None
    program = {"scenario": space.scenario, "axes": [(a.name, a.kind, a.values) for a in space.axes],
               "constants": space.constants, "kinds": {k: p.kind for k, p in space.params.items()},
               "limits": space.limits, "objectives": space.objectives, "outputs": names,
               "catalog": _catalog_digest(space, given_tables),
               "efficiency": list(eff), "dtype": jnp.dtype(dtype).name}
    engine_args = {"radices": space.radices, **counts, **engine, "histograms": None, "layout": "columns"}
    return executables.StepCache(folder, sweep_engine._devices(devices), program, engine_args)


def _checked_eff(eff, where: str):
    """DEFAULT_EFFICIENCY for None, else `eff` if it is an Efficiency of finite numbers (MlsysOptError otherwise)."""
    if eff is None:
        return DEFAULT_EFFICIENCY
    validate.check_type("eff", eff, Efficiency, where,
                        what="an Efficiency (mlsys_opt.scenarios.efficiency.Efficiency, e.g. a calibration's) or None")
    for name, value in eff._asdict().items():
        validate.check_finite(f"eff.{name}", value, where)
    return eff


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def _sort_column(space: Space) -> str:
    return space.objectives[0][0]


def _frame(space: Space, digits, aux, names) -> pd.DataFrame:
    digits = np.asarray(digits).reshape(-1, len(space.axes))
    df = space.labels(digits)
    aux = np.asarray(aux, np.float64).reshape(len(df), len(names))
    for k, name in enumerate(names):
        df[name] = aux[:, k]
    return add_human_columns(df)


def add_human_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Decode codes and add convenience columns (days, tonnes) next to SI ones."""
    if "bottleneck" in df:
        codes = np.clip(np.rint(df["bottleneck"].to_numpy()).astype(int), 0, len(BOTTLENECKS) - 1)
        df["bottleneck"] = [BOTTLENECKS[c] for c in codes]
    for col in ("n_accelerators", "dp", "replicas"):
        if col in df and df[col].dtype.kind == "f":
            df[col] = np.rint(df[col]).astype(np.int64)
    if "time_to_train_s" in df:
        df["time_to_train_days"] = df["time_to_train_s"] / SECONDS_PER_DAY
    return df


def configurations(space: Space, assignments: list[dict]) -> np.ndarray:
    """Digits [n, n_axes] for explicit {axis: value} assignments (missing axes: first value)."""
    if not assignments:
        raise MlsysOptError("no configurations given")
    return np.stack([space.digits_for(a) for a in assignments])
