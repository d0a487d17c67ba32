"""mlsys_opt: a vectorized design-space optimizer for ML systems.

The analytical walls of ML systems as batched, differentiable JAX functions,
swept exhaustively or searched for Pareto fronts over time, cost and carbon.

    >>> import mlsys_opt
    >>> res = mlsys_opt.sweep("capstone")                # exact Pareto front of spaces/capstone.toml
    >>> res.front[["hardware", "n_accelerators", "region", "time_to_train_days", "tco_usd"]]
    >>> mlsys_opt.evaluate("training", model="llama3_70b", hardware="h100_sxm", n_accelerators=512,
    ...                    tp=8, region="quebec", n_tokens="1.24e12 token")["time_to_train_days"]
    >>> mlsys_opt.sensitivity("training", {"model": "llama3_70b", "n_tokens": 1.24e12,
    ...                                    "n_accelerators": 512, "tp": 8})

The command line is `mlsys-opt` (``python -m mlsys_opt``); see mlsys_opt/cli/app.py.

Public API (explicit re-exports, each imported on first use, so ``import
mlsys_opt`` loads no JAX, pandas, pymoo or optax until a name is touched):
  sweep, SweepResult, evaluate, sensitivity, binding, run_search, SearchResult,
  synthesize, load_space, list_spaces, Space, load_catalog, Catalog, calibrate,
  load_calibration, Efficiency, DEFAULT_EFFICIENCY, MlsysOptError, CatalogError,
  SpecError.  (The validation table is ``mlsys_opt.calibration.validate``;
  ``mlsys_opt.validate`` is the argument-checking module.)

Note: ``mlsys_opt.sweep`` and ``mlsys_opt.sensitivity`` are the functions;
import the modules by their full names (``from mlsys_opt.sweeps.api import ...``).

Compiled programs persist across processes, for the Python API as for the command
line: the first use of a function that compiles (``sweep``, ``evaluate``,
``sensitivity``, ...) through this module points JAX's persistent compilation
cache at $MLSYS_OPT_CACHE_DIR (default ~/.cache/mlsys_opt/jax; "off" disables
it), unless JAX's cache directory is set already (``jax_compilation_cache_dir``
or $JAX_COMPILATION_CACHE_DIR), which is then used as it is.  A sweep's compiled engine step is kept
there too (``sweeps.executables``: loaded by a later sweep of the same problem without tracing;
$MLSYS_OPT_STEP_CACHE=off disables it), as are the validated built-in catalog and the command line's
validated specs (``catalog._cached``, ``cli.spec_cache``; see ``mlsys_opt._cache``).
"""
from __future__ import annotations

import os
from importlib import import_module
from typing import Any

from .errors import CatalogError, MlsysOptError, SpecError

__version__ = "0.1.0"

# name -> (module, attribute), imported on first access: ``import mlsys_opt`` (and so
# ``mlsys-opt --help``) loads neither JAX nor pandas, pymoo or optax until a name is used
_LAZY = {
    "Catalog": ("mlsys_opt.catalog", "Catalog"),
    "load_catalog": ("mlsys_opt.catalog", "load_catalog"),
    "evaluate": ("mlsys_opt.point.evaluation", "evaluate"),
    "binding": ("mlsys_opt.point.sensitivity", "binding"),
    "sensitivity": ("mlsys_opt.point.sensitivity", "sensitivity"),
    "DEFAULT_EFFICIENCY": ("mlsys_opt.scenarios.efficiency", "DEFAULT_EFFICIENCY"),
    "Efficiency": ("mlsys_opt.scenarios.efficiency", "Efficiency"),
    "Space": ("mlsys_opt.space.spec", "Space"),
    "list_spaces": ("mlsys_opt.space.spec", "list_spaces"),
    "load_space": ("mlsys_opt.space.spec", "load_space"),
    "SweepResult": ("mlsys_opt.sweeps.api", "SweepResult"),
    "sweep": ("mlsys_opt.sweeps.api", "sweep"),
    "run_search": ("mlsys_opt.search.pymoo_problem", "run_search"),
    "SearchResult": ("mlsys_opt.search.pymoo_problem", "SearchResult"),
    "synthesize": ("mlsys_opt.search.synthesis", "synthesize"),
    "calibrate": ("mlsys_opt.calibration", "calibrate"),
    "load_calibration": ("mlsys_opt.calibration", "load_calibration"),
    "load_result": ("mlsys_opt.sweeps.results", "load_result"),
    "html_report": ("mlsys_opt.cli.html", "html"),
    "evaluate_table": ("mlsys_opt.point.table", "evaluate_table"),
}


# the names whose functions compile XLA programs: their first access turns the persistent cache on
_COMPILING = frozenset({"evaluate", "binding", "sensitivity", "sweep", "run_search", "synthesize", "calibrate",
                        "evaluate_table"})
CACHE_ENV = "MLSYS_OPT_CACHE_DIR"


def _enable_compile_cache() -> str | None:
    """Persist compiled XLA programs across runs (the capstone's sweep compiles in ~10 s, loads in ~0.3 s).

    Returns the cache folder, or None when $MLSYS_OPT_CACHE_DIR is "off" (also "", "0", "none",
    "false", "no") or the folder cannot be created.  A cache directory already given to JAX
    (``jax_compilation_cache_dir``, $JAX_COMPILATION_CACHE_DIR) is kept as it is, with its settings.
    """
    raw = os.environ.get(CACHE_ENV)
    if raw is not None and raw.strip().lower() in ("", "0", "off", "none", "false", "no"):
        return None
    import jax
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    base = raw or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mlsys_opt", "jax")
    try:
        os.makedirs(base, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", base)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return base


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        if name in _COMPILING:
            _enable_compile_cache()
        value = getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlsys_opt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["sweep", "SweepResult", "evaluate", "evaluate_table", "sensitivity", "binding", "run_search", "SearchResult",
           "synthesize", "load_space", "list_spaces", "Space", "load_catalog", "Catalog", "calibrate", "load_calibration", "load_result", "html_report", "Efficiency", "DEFAULT_EFFICIENCY", "MlsysOptError",
           "CatalogError", "SpecError", "__version__"]
