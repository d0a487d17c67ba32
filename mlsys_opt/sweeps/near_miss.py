"""How close a space with no feasible configuration comes: the near miss of a sweep or a search.

Two questions a capacity planner asks when every configuration breaks a constraint or limit:

1. which configuration comes closest overall?  The LEAST-VIOLATING one: the smallest total
   violation V = sum_j max(g_j, 0) over the constraint columns (pymoo's constraint violation).
   The columns are dimensionless already (``sweeps.api.limit_columns``: a limit as (y - L)/|L|;
   structural margins as ratios - 1), so V adds a 20 % overshoot of a latency SLO and a 20 %
   overshoot of a budget alike;
2. how far must each limit move?  Per limit j, the CLOSEST configuration: the smallest g_j among
   the configurations that meet every structural constraint (a configuration that does not fit in
   memory achieves no latency worth quoting), so its output is the best value the space achieves:
   loosening the limit to it makes that configuration meet it.

Ties keep the lower configuration index; configurations whose objectives or constraints are NaN or
infinite are never picked.  The sweep reduces both on each device while streaming
(``sweeps.step.update_near_miss``) and merges the devices' on the host (``sweeps.state.merge_near_miss``);
a search picks them from its archive with :func:`select`.  :func:`smallest` is the one tie rule of all three.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class NearMiss(NamedTuple):
    """``SweepResult.near_miss`` / ``SearchResult.near_miss`` (None when a configuration is feasible).

    violation: total violation sum_j max(g_j, 0) of `least` (dimensionless; inf when no
      configuration had finite objectives and constraints).
    least: one-row DataFrame (no row when violation is inf): the least-violating configuration, with
      the front's columns (axes, every output in SI units, human columns) plus one ``g_<constraint>``
      column per constraint (<= 0 met; ``limit:`` written ``limit_``) and ``violation``.
    closest: dict limit constraint name (``limit:<output>``, as ``sweeps.api.constraint_names``) ->
      one-row DataFrame (same columns): the configuration with the smallest g of that limit among
      those meeting every structural constraint; absent when no configuration meets them all.
    """
    violation: float
    least: pd.DataFrame
    closest: dict


def g_column(name: str) -> str:
    """'g_memory', 'g_limit_ttft_p99_s': the column of constraint `name` in a result frame (as `evaluate`'s)."""
    return "g_" + name.replace("limit:", "limit_")


def total_violation(G: np.ndarray) -> np.ndarray:
    """sum_j max(G_j, 0) per row of G [n, n_constr] (0 for a row that meets every constraint)."""
    return np.maximum(np.asarray(G), 0).sum(axis=1)


def select(G: np.ndarray, ok: np.ndarray, position: np.ndarray, n_hard: int) -> tuple[int, np.ndarray]:
    """The near miss among rows, on the host (a search's archive): the rule of the module docstring.

    Args:
      G: [n, n_constr] constraints (<= 0 met); ok: bool[n], rows whose objectives and constraints
        are finite; position: int64[n], each row's configuration index (the tie-break; repeats allowed);
      n_hard: the first n_hard columns are the structural constraints.

    Returns:
      ``(least, closest)``: the row of the least-violating configuration (-1 when no row is ok) and
      int64[n_constr - n_hard] the row of each soft constraint's (limit's) closest configuration (-1
      where no ok row meets every hard constraint).
    """
    G, ok = np.asarray(G, np.float64), np.asarray(ok, bool)
    hard_ok = ok & (G[:, :n_hard] <= 0).all(axis=1)
    least = smallest(total_violation(G), position, ok)
    closest = np.array([smallest(G[:, j], position, hard_ok) for j in range(n_hard, G.shape[1])], np.int64)
    return least, closest


def smallest(key: np.ndarray, position: np.ndarray, ok: np.ndarray | None = None) -> int:
    """The row with the smallest key among the rows `ok` (default: all), the smallest position on ties; -1 when
    there is none: the near miss's one rule, used by :func:`select`, by the merge of a sweep's per-device
    near misses (``sweeps.state.merge_near_miss``) and by that of its processes' (``sweeps.distributed_merge``).

    Args: key [n] (float, compared as stored: no NaN among the rows `ok`); position int64[n], the rows'
    configuration indices; ok bool[n] or None.
    """
    key, position = np.asarray(key), np.asarray(position, np.int64)
    rows = np.arange(len(key)) if ok is None else np.flatnonzero(ok)
    return int(rows[np.lexsort((position[rows], key[rows]))[0]]) if len(rows) else -1


__all__ = ["NearMiss", "g_column", "select", "smallest", "total_violation"]
