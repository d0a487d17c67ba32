"""Search over design spaces: evolutionary (pymoo), gradient (optax) and inverse synthesis.

- :func:`run_search` (``pymoo_problem``): Pareto search of a ``Space`` with a
  vectorised pymoo problem (NSGA-II/III, AGE-MOEA, SPEA2, MOEA/D, ...).
- ``synthesis``: the walls run backwards, closed forms (required bandwidth,
  FLOP/s, memory, devices) and a batched gradient solve (:func:`synthesize`);
  ``fleet_layouts``: the fewest devices for a deadline over parallelism layouts
  (:func:`min_devices_over_layouts`).
- ``gradient``: optax optimisation of continuous knobs with the discrete axes
  of a space enumerated around them (:func:`optimize_continuous`).
"""
from __future__ import annotations

from importlib import import_module

# name -> module, imported on first access: `mlsys_opt.search.optim` (the shared Adam loop and
# bounded reparametrisation, used by calibration) loads neither pymoo nor the scenarios
_LAZY = {"ALGORITHMS": "pymoo_algorithms", "SearchResult": "pymoo_problem", "SpaceProblem": "pymoo_problem",
         "front_at": "pymoo_problem", "run_search": "pymoo_problem",
         "synthesize": "synthesis", "SynthesisResult": "synthesis", "inverse_roofline": "synthesis",
         "min_devices_for_time": "synthesis", "min_devices_over_layouts": "fleet_layouts",
         "LayoutsResult": "fleet_layouts", "best_layout_at": "fleet_layouts", "LayoutAtFleet": "fleet_layouts",
         "optimize_continuous": "gradient", "OptimizeResult": "gradient"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'mlsys_opt.search' has no attribute {name!r}")


__all__ = ["run_search", "SpaceProblem", "SearchResult", "ALGORITHMS", "front_at", "synthesize",
           "inverse_roofline", "min_devices_for_time", "min_devices_over_layouts", "best_layout_at",
           "optimize_continuous"]
