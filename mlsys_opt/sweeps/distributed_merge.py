"""The host-side merge of a distributed sweep: P local results -> the one result every process returns.

Pure numpy (no JAX collectives): each process packs its EngineResult as npz
bytes (``pack_result``), the bytes are all-gathered through the
coordinator's key-value store (``sweeps.distributed``), and every process
runs the same deterministic ``merge_results``: counts, histograms and
reasons add; the front is the non-dominated subset of the union of the
local fronts under ``pareto.beats`` (a lower configuration index wins among
identical objective vectors); the best-k lists merge by (value, index); when no
process found a feasible configuration, the near misses merge by (total
violation, index) and, per soft constraint, by (its value, index) (``near_miss.smallest``,
the rule that also merges one process's devices) -- each local pick is its share's minimum
under the same rule, so the smallest of them is the global one (a process with a feasible
configuration has none: the merged result then has none either).
Exact: a configuration on the global front is beaten by nothing, so it is on
its own process's front; a configuration beaten globally is beaten by some
member of the union (transitivity), so the filter removes it.

``split_range`` cuts the index range into the processes' shares.
"""
from __future__ import annotations

import io

import numpy as np

from .near_miss import smallest
from .pareto import nondominated_host


def split_range(n: int, n_proc: int, chunk: int) -> list[tuple[int, int]]:
    """P contiguous shares of [0, n): whole chunks each (the last share takes the remainder)."""
    grain = max(1, min(int(chunk), -(-n // n_proc)))
    n_grains = -(-n // grain)                       # ceil(n / grain)
    per = -(-n_grains // n_proc) * grain            # whole grains per process
    return [(min(n, j * per), min(n, (j + 1) * per)) for j in range(n_proc)]


# --------------------------------------------------------------------------- results

_ROW_KEYS = ("index", "digits", "F", "G", "aux")


def pack_result(res) -> bytes:
    """An EngineResult as npz bytes (no pickles)."""
    arrs = {f"front_{k}": np.asarray(getattr(res.front, k)) for k in _ROW_KEYS}
    for j, b in enumerate(res.best):
        arrs.update({f"best{j}_{k}": np.asarray(getattr(b, k)) for k in _ROW_KEYS})
    for j, (edges, counts) in res.histograms.items():
        arrs[f"hist{j}_edges"], arrs[f"hist{j}_counts"] = np.asarray(edges), np.asarray(counts, np.int64)
    arrs.update(n_feasible=np.array(str(res.n_feasible)), n_evaluated=np.array(str(res.n_evaluated)),
                reasons=np.asarray(res.infeasible_by, np.int64), n_best=np.int64(len(res.best)))
    nm = res.near_miss
    if nm is not None:
        arrs.update(near_violation=np.float64(nm.violation), near_n=np.int64(len(nm.closest)))
        arrs.update({f"near_least_{k}": np.asarray(getattr(nm.least, k)) for k in _ROW_KEYS})
        for j, r in enumerate(nm.closest):
            arrs.update({f"near{j}_{k}": np.asarray(getattr(r, k)) for k in _ROW_KEYS})
    buf = io.BytesIO()
    np.savez(buf, **arrs)
    return buf.getvalue()


def _unpack(blob: bytes) -> dict:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def merge_results(blobs: list[bytes], top_k: int, n_evaluated: int, elapsed_s: float):
    """One EngineResult from every process's packed local result (see module docstring, step 4)."""
    from .engine import EngineResult, FrontRows
    parts = [_unpack(b) for b in blobs]
    cat = {k: np.concatenate([p[f"front_{k}"] for p in parts]) for k in _ROW_KEYS}
    keep = nondominated_host(cat["F"], cat["index"])
    front = {k: v[keep] for k, v in cat.items()}
    order = np.lexsort(front["digits"].T[::-1]) if len(front["index"]) else np.zeros(0, int)
    front = {k: v[order] for k, v in front.items()}
    best = []
    for j in range(int(parts[0]["n_best"])):
        rows = {k: np.concatenate([p[f"best{j}_{k}"] for p in parts]) for k in _ROW_KEYS}
        o = np.lexsort((rows["index"], rows["F"][:, j]))[:top_k]
        best.append(FrontRows(**{k: v[o] for k, v in rows.items()}))
    hists = {}
    for key in parts[0]:
        if key.startswith("hist") and key.endswith("_edges"):
            j = int(key[4:-6])
            hists[j] = (parts[0][key], sum(p[f"hist{j}_counts"] for p in parts))
    n_feasible = sum(int(str(p["n_feasible"])) for p in parts)
    reasons = sum(p["reasons"] for p in parts)
    near = _merge_near_misses(parts) if n_feasible == 0 and all("near_n" in p for p in parts) else None
    return EngineResult(n_evaluated, n_feasible, FrontRows(**front), tuple(best), hists, elapsed_s,
                        np.asarray(reasons, np.int64), near)


def _merge_near_misses(parts: list[dict]):
    """One NearMissRows from every process's (see the module docstring)."""
    from .engine import FrontRows, NearMissRows

    def first(rows: dict, key: np.ndarray) -> FrontRows:      # rows of 0 or 1 per process
        o = [smallest(key, rows["index"])] if len(key) else []    # (the near miss's tie rule)
        return FrontRows(**{k: v[o] for k, v in rows.items()})
    least = {k: np.concatenate([p[f"near_least_{k}"] for p in parts]) for k in _ROW_KEYS}
    v = np.concatenate([np.full(len(p["near_least_index"]), float(p["near_violation"])) for p in parts])
    closest = []
    n_soft = int(parts[0]["near_n"])
    for j in range(n_soft):          # soft constraint j is G column n_constr - n_soft + j
        rows = {k: np.concatenate([p[f"near{j}_{k}"] for p in parts]) for k in _ROW_KEYS}
        closest.append(first(rows, rows["G"][:, rows["G"].shape[1] - n_soft + j]))
    return NearMissRows(float(v[smallest(v, least["index"])]) if len(v) else float("inf"), first(least, v),
                        tuple(closest))
