"""One configuration at a time: evaluation (and small grids) and exact sensitivities.

- ``evaluation``: `evaluate(scenario or space, **params)` -> a DataFrame row per configuration.
- ``sensitivity``: `sensitivity(...)` elasticities by autodiff (wall 21), `binding`.
"""
from __future__ import annotations

from .evaluation import evaluate
from .sensitivity import binding, sensitivity

__all__ = ["evaluate", "sensitivity", "binding"]
