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

Public API (explicit re-exports; `run_search`, `synthesize`, `calibrate` and
`load_calibration` are imported on first use, so ``import mlsys_opt`` does not
load pymoo or optax):
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

from .catalog import Catalog, load_catalog
from .errors import CatalogError, MlsysOptError, SpecError
from .point.evaluation import evaluate
from .point.sensitivity import binding, sensitivity
from .scenarios.efficiency import DEFAULT_EFFICIENCY, Efficiency
from .space.spec import Space, list_spaces, load_space
from .sweeps.api import SweepResult, sweep

__version__ = "0.1.0"

# name -> (module, attribute), imported on first access (heavy optional dependencies)
_LAZY = {
    "run_search": ("mlsys_opt.search.pymoo_problem", "run_search"),
    "SearchResult": ("mlsys_opt.search.pymoo_problem", "SearchResult"),
    "synthesize": ("mlsys_opt.search.synthesis", "synthesize"),
    "calibrate": ("mlsys_opt.calibration", "calibrate"),
    "load_calibration": ("mlsys_opt.calibration", "load_calibration"),
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


__all__ = ["sweep", "SweepResult", "evaluate", "sensitivity", "binding", "run_search", "SearchResult",
           "synthesize", "load_space", "list_spaces", "Space", "load_catalog", "Catalog", "calibrate", "load_calibration", "Efficiency", "DEFAULT_EFFICIENCY", "MlsysOptError",
           "CatalogError", "SpecError", "__version__"]
