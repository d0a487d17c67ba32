"""Streaming sweeps: every configuration of a space, evaluated in jitted chunks with exact on-device reduction.

- ``api``: `sweep(space) -> SweepResult` (the public entry point), `evaluate_params`.
- ``engine``: `stream`, the chunked, sharded host loop and its jitted step.
- ``state``: the engine's state types (config, reducer state, host counters, loop).
- ``pareto``: the exact streaming Pareto front and best-k lists.
- ``near_miss``: when nothing is feasible, how close the space comes (least-violating configuration,
  the closest one per constraint).
- ``checkpoint``: atomic, fingerprinted checkpoints and resume.

(The package is ``sweeps`` so that ``mlsys_opt.sweep``, the function, shadows no module.)
"""
from __future__ import annotations

from .api import SweepResult, sweep

__all__ = ["SweepResult", "sweep"]
