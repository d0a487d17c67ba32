"""Search over design spaces: evolutionary (pymoo), gradient (optax) and inverse synthesis.

- :func:`run_search` (``pymoo_problem``): Pareto search of a ``Space`` with a
  vectorised pymoo problem (NSGA-II/III, AGE-MOEA, SPEA2, MOEA/D, ...).
- ``synthesis``: the walls run backwards, closed forms (required bandwidth,
  FLOP/s, memory, devices) and a batched gradient solve (:func:`synthesize`).
- ``gradient``: optax optimisation of continuous knobs with the discrete axes
  of a space enumerated around them (:func:`optimize_continuous`).
"""
from __future__ import annotations

from .pymoo_algorithms import ALGORITHMS
from .pymoo_problem import SearchResult, SpaceProblem, front_at, run_search


def __getattr__(name):   # lazy: synthesis/gradient pull in optax only when used
    if name in ("synthesize", "SynthesisResult", "inverse_roofline", "min_devices_for_time"):
        from . import synthesis
        return getattr(synthesis, name)
    if name in ("optimize_continuous", "OptimizeResult"):
        from . import gradient
        return getattr(gradient, name)
    raise AttributeError(f"module 'mlsys_opt.search' has no attribute {name!r}")


__all__ = ["run_search", "SpaceProblem", "SearchResult", "ALGORITHMS", "front_at", "synthesize",
           "inverse_roofline", "min_devices_for_time", "optimize_continuous"]
