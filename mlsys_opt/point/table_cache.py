"""Compiled table functions kept across runs: a warm ``evaluate_table`` loads its executable.

Why: JAX's persistent compilation cache is keyed by the LOWERED program, so a warm run still
traced the training scenario and lowered it before finding the executable: ~0.4 CPU-s and
0.4-0.9 s of wall time on the 2-core CPU, most of the start of a run (and of a small table's
whole run).  Here the chunk function of a table is stored in the sweep's compiled-step cache
(``sweeps.executables``: the same folder, entry format, checksum, atomic writes and pruning, and
the same environment in the key: the package's source, jax/jaxlib, backend, devices, JAX config,
$XLA_FLAGS), keyed by what determines its program:

- what is baked into it: scenario, limits (values), trace-time options (the micro-batch set),
  objectives, outputs, constraints, chunk size, dtype;
- the structure of its arguments: the names of the column parameters and the tree structure,
  shapes and dtypes of every argument (the columns, the constant parameters, the catalog tables,
  the efficiency model) -- their VALUES are run-time inputs, never in the program.

A hit loads the executable (``jax.experimental.serialize_executable``) and skips tracing,
lowering and XLA; a miss lowers, compiles with JAX's own cache off (an executable JAX loaded from
its cache does not serialize into a loadable entry on the CPU: ``executables._compile_bypassing_jax_cache``)
and stores it.  An entry that is missing, corrupt, or fails to load is rebuilt: never a crash,
never another program.  Off when the step cache is off (``executables.cache_dir()`` is None), in a
multi-process run, with jit disabled, or when the scenario function is not the package's own (a
function put into ``SCENARIO_FNS`` at run time is not in the source hash): then the jitted
function is used as it is.  Loaded executables are kept per process (``_LOADED``).
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ..sweeps import executables

KEEP = executables.KEEP
_LOADED: dict = {}                 # key -> executable, this process
STATS = {"loaded": 0, "compiled": 0, "reused": 0}     # what load_or_compile did, this process


def usable(scenario: str) -> bool:
    """Whether a table of `scenario` may use the cache now (``executables.folder_for``)."""
    return executables.folder_for(scenario) is not None


def _signature(args) -> dict:
    """The tree structure, shapes and dtypes of the arguments (their values are not in the program)."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    return {"tree": str(tree),
            "leaves": [[list(np.shape(x)), str(getattr(x, "dtype", None) or np.asarray(x).dtype)] for x in leaves]}


def load_or_compile(jitted, args: tuple, program: dict, devices: tuple) -> tuple[Any, str]:
    """(callable executable of ``jitted`` for `args`, status): "reused" (this process), "loaded"
    (the folder), "compiled and stored", or "compiled (not stored: ...)"."""
    folder = executables.cache_dir()
    cache = executables.StepCache(folder, devices, {**program, "arguments": _signature(args)},
                                  {"kind": "evaluate_table"})
    if cache.key in _LOADED:
        STATS["reused"] += 1
        return _LOADED[cache.key], "reused"
    if cache.has_entry:
        try:
            exe = cache.load()
            _LOADED[cache.key] = exe
            STATS["loaded"] += 1
            return exe, "loaded"
        except Exception:              # noqa: BLE001, S110 - any failure to load means: compile it again
            pass
    exe = executables._compile_bypassing_jax_cache(jitted.lower(*args))
    _LOADED[cache.key] = exe
    STATS["compiled"] += 1
    failed = cache.store(exe, None)
    return exe, "compiled and stored" if failed is None else f"compiled (not stored: {failed})"


__all__ = ["STATS", "load_or_compile", "usable"]
