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
"""
from __future__ import annotations

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlsys_opt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["sweep", "SweepResult", "evaluate", "evaluate_table", "sensitivity", "binding", "run_search", "SearchResult",
           "synthesize", "load_space", "list_spaces", "Space", "load_catalog", "Catalog", "calibrate", "load_calibration", "load_result", "html_report", "Efficiency", "DEFAULT_EFFICIENCY", "MlsysOptError",
           "CatalogError", "SpecError", "__version__"]
