"""Checkpoints of a streaming sweep: one ``.npz`` file, written atomically, refused when foreign.

File layout (``np.savez``, no pickles): the front members ``front_F``,
``front_G``, ``front_aux``, ``front_digits`` [n, ...]; the best lists
``best_F`` ... ``best_valid`` [n_obj, k, ...]; the near miss ``near_violation`` ...
``near_best_valid`` (``state.NearMissState``'s fields: the devices' entries merged into one, so
a checkpoint does not depend on the device count; a resume puts it on the first device);
``hist_<i>`` and ``reasons``
(int64 counts); ``next_index`` and ``n_feasible`` as decimal strings (exact
for any space size); ``n_chunks``; ``version``; ``radices``; and ``config``
(the JSON run description) with its SHA-256 ``fingerprint``.  A run resumes a
checkpoint only when the fingerprints match: same axes, evaluator output
shapes and dtypes, top_k, histograms, hard constraints and run_key (chunk size and device
count may differ).

Crash safety: a save writes ``<path>.tmp.<pid>``, flushes and fsyncs it,
renames it over ``<path>`` (atomic: readers see the old or the new file,
never a mix) and fsyncs the directory where the platform allows, so a kill or
a power cut leaves the previous checkpoint or the new one.  A process killed
mid-write leaves its temporary file behind; :func:`remove_stale_temp_files`
deletes those of dead processes when the next sweep on the path starts.
Every defect of a file to resume is an MlsysOptError that names the file.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..errors import MlsysOptError
from ..space import indexing
from . import pareto
from .state import (
    BestLists,
    EngineConfig,
    HostCounters,
    NearMissState,
    ReducerState,
    SweepLoop,
    initial_near_miss,
    merge_near_miss,
    to_host,
)

CHECKPOINT_VERSION = 2        # 2: the near miss (near_*) entries
_TEMP_INFIX = ".tmp."


def describe_run(cfg: EngineConfig, run_key: str) -> dict:
    """What a checkpoint must agree on to be resumed (JSON-able; floats as exact hex)."""
    return {"radices": list(cfg.radices), "n_obj": cfg.n_obj, "n_constr": cfg.n_constr,
            "n_aux": cfg.n_aux, "top_k": cfg.top_k, "dtypes": list(cfg.dtypes),
            "histograms": [[j, [float(e).hex() for e in edges]] for j, edges in cfg.hist],
            "run_key": run_key, "reasons": "constraints+non_finite",   # reason columns: n_constr + 1
            "near_miss_hard_constraints": cfg.n_hard}    # (absent before the near_* entries: refused)


# What each part of a composed run_key (`compose_run_key`) stands for, in a refusal's words.
RUN_KEY_PARTS = {
    "scenario": "the scenario", "axes": "the axes (names or values)", "constants": "the fixed values or defaults",
    "limits": "the [constraints] limits", "objectives": "the objectives",
    "catalog_sha256": "the catalog entries (--catalog files, $MLSYS_OPT_CATALOG or the built-in catalog)",
    "efficiency": "the efficiency model (--calibration)", "dtype": "the float dtype", "code": "the mlsys_opt version",
}
_RESTART = "delete it, or run again without --resume or with another --checkpoint path to start over"


def compose_run_key(parts: dict) -> str:
    """'scenario=1a2b... axes=... catalog=...': one short SHA-256 per input of the result (JSON-able values),
    so a checkpoint refusal can say WHICH input changed (see RUN_KEY_PARTS)."""
    return " ".join(f"{k}={hashlib.sha256(json.dumps(v, sort_keys=True, default=str).encode()).hexdigest()[:12]}"
                    for k, v in parts.items())


def _run_key_changes(saved: str, now: str) -> list[str]:
    """The parts of two composed run_keys that differ, in words ([] when they are not composed keys)."""
    def split(key):
        pairs = [p.split("=", 1) for p in str(key).split()]
        return dict(pairs) if pairs and all(len(p) == 2 for p in pairs) else None
    a, b = split(saved), split(now)
    if a is None or b is None:
        return []
    if set(a) != set(b):             # a run key of another layout: its parts cannot be compared
        return [f"the run-key layout (the checkpoint was written by an earlier mlsys_opt that recorded "
                f"{', '.join(sorted(set(a) - set(b)))} instead of {', '.join(sorted(set(b) - set(a)))}, "
                "so it cannot be checked against this run)"]
    return [RUN_KEY_PARTS.get(k, k) for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


def fingerprint(desc: dict) -> str:
    """SHA-256 hex digest of the run description (key order does not matter)."""
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()


def temp_path(path: str, pid: int | None = None) -> str:
    """``<path>.tmp.<pid>``: where process `pid` (default: this one) writes a checkpoint before the rename."""
    return f"{path}{_TEMP_INFIX}{os.getpid() if pid is None else pid}"


# --------------------------------------------------------------------------- writing

def save(path: str, loop: SweepLoop, cfg: EngineConfig, desc: dict) -> None:
    """Write the (drained) loop state to `path` atomically (see module docstring)."""
    st = loop.state
    mem = to_host(st.front.member)
    arrs = {f"front_{name}": to_host(x)[mem] for name, x in
            (("F", st.front.F), ("G", st.front.payload[0]), ("aux", st.front.payload[1]),
             ("digits", st.front.payload[2]))}
    arrs.update({f"best_{name}": to_host(x) for name, x in zip(BestLists._fields, st.best)})
    # the devices' near misses merged (a mesh over several processes' devices -- engine.stream's untested
    # multi-host path, which reports no near miss -- holds other processes' entries: none is saved)
    near = (merge_near_miss(st.near, cfg.radices) if all(getattr(x, "is_fully_addressable", True) for x in st.near)
            else initial_near_miss(cfg, 0))
    arrs.update({f"near_{name}": x for name, x in zip(NearMissState._fields, near)})
    for i, h in enumerate(loop.acc.hist):
        arrs[f"hist_{i}"] = h
    arrs["reasons"] = loop.acc.reasons
    arrs.update(version=np.int64(CHECKPOINT_VERSION), radices=np.array(cfg.radices, np.int64),
                fingerprint=np.array(fingerprint(desc)), config=np.array(json.dumps(desc, sort_keys=True)),
                next_index=np.array(str(loop.acc.next_index)), n_feasible=np.array(str(loop.acc.n_feasible)),
                n_chunks=np.int64(loop.acc.n_chunks))
    write_atomically(path, arrs)


def write_atomically(path: str, arrays: dict) -> None:
    """``np.savez`` to a temporary file, fsync, rename over `path`, fsync the directory.

    Raises MlsysOptError naming `path` when the file cannot be written (the
    temporary file is removed, the previous checkpoint stays).
    """
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            _fsync(fh.fileno())        # the data is on disk before the rename makes it the checkpoint
        os.replace(tmp, path)          # atomic: readers see the old or the new file, never a mix
    except OSError as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise MlsysOptError(f"checkpoint {path}: cannot write the checkpoint ({exc.strerror or exc})") from None
    _fsync_directory(os.path.dirname(os.path.abspath(path)))


def _fsync(fd: int) -> None:
    """os.fsync, except on file systems that do not support it (EINVAL/ENOTSUP: nothing to wait for)."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise


def _fsync_directory(directory: str) -> None:
    """Persist a rename in `directory` (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass                           # the checkpoint is written; a directory that refuses fsync is no error
    finally:
        os.close(fd)


def remove_stale_temp_files(path: str) -> list[str]:
    """Delete ``<path>.tmp.<pid>`` files whose process is gone (left by a killed sweep); return them.

    A file of a live process (another sweep writing the same checkpoint right
    now) is kept.  This process's own pid counts as gone: no save of this
    process is in progress when a sweep starts, so such a file is from an
    earlier process that had the same pid.  Where liveness cannot be checked
    safely (not POSIX), nothing is deleted.  Files that cannot be deleted are
    left in place: cleaning up never fails a sweep.
    """
    folder = Path(path).resolve().parent
    prefix = Path(path).name + _TEMP_INFIX
    removed = []
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for p in candidates:
        pid = p.name[len(prefix):]
        if not pid.isdigit() or (int(pid) != os.getpid() and _process_alive(int(pid))):
            continue
        try:
            p.unlink()
            removed.append(str(p))
        except OSError:
            pass
    return removed


def _process_alive(pid: int) -> bool:
    """Whether process `pid` exists (signal 0 probes without signalling); True where unknown."""
    if os.name != "posix":
        return True                    # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True                    # exists under another user, or cannot tell: keep its file
    return True


# --------------------------------------------------------------------------- reading

def load(path: str, cfg: EngineConfig, desc: dict, init: ReducerState) -> tuple[ReducerState, HostCounters]:
    """Reducer state and counters from a checkpoint; every defect is an MlsysOptError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as f:
            z = {k: f[k] for k in f.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        # numpy's own text can advise loading the file with pickles allowed: never repeat that advice
        what = "not a NumPy .npz archive" if "pickle" in str(exc) or "zip" in str(exc).lower() \
            else f"{type(exc).__name__}: {exc}"
        raise MlsysOptError(f"checkpoint {path}: cannot be read ({what}; a sweep checkpoint is an .npz "
                            f"file written by 'mlsys-opt sweep --checkpoint'); {_RESTART}") from None
    if "fingerprint" not in z or "config" not in z:
        raise MlsysOptError(f"checkpoint {path} is not a sweep checkpoint (no 'fingerprint'/'config' "
                            f"entries); {_RESTART}")
    if str(z["fingerprint"]) != fingerprint(desc):
        try:
            saved = json.loads(str(z["config"]))
            changed = _run_key_changes(saved.get("run_key", ""), desc.get("run_key", ""))
            diff = [f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in desc.items()
                    if saved.get(k) != v and not (k == "run_key" and changed)]
        except (ValueError, AttributeError):
            changed, diff = [], []
        what = "; ".join(([f"changed since it was written: {', '.join(changed)}"] if changed else []) + diff)
        raise MlsysOptError(
            f"checkpoint {path} was written by a different run ({what or 'fingerprint differs'}); "
            f"resume only with the same space, catalog, calibration and settings, or {_RESTART}")
    if _near_miss_untracked(z):
        raise MlsysOptError(
            f"checkpoint {path} holds no near miss although its configurations so far are all infeasible: it was "
            f"written by a sweep that did not track it (over several devices of an earlier mlsys_opt, or over "
            f"several processes' devices in one mesh), and a resumed sweep would report one of the later "
            f"configurations only; {_RESTART}")
    try:
        return _restore(z, cfg, init)
    except MlsysOptError as exc:
        raise MlsysOptError(f"checkpoint {path} is damaged: {exc}; {_RESTART}") from None
    except Exception as exc:  # noqa: BLE001
        raise MlsysOptError(f"checkpoint {path} is damaged ({type(exc).__name__}: {exc}); {_RESTART}") from None


def _near_miss_untracked(z: dict) -> bool:
    """Nothing feasible, some configuration with finite F and G counted (a reason other than non_finite), yet
    no near miss: the near_* entries of a sweep that did not track it (see :func:`save`, and earlier mlsys_opt
    versions on several devices)."""
    try:
        return (int(str(z["n_feasible"])) == 0 and not bool(z["near_valid"])
                and int(np.sum(np.asarray(z["reasons"])[:-1])) > 0)
    except (KeyError, ValueError, TypeError, IndexError):
        return False                 # (_restore names the defect)


def _restore(z: dict, cfg: EngineConfig, init: ReducerState) -> tuple[ReducerState, HostCounters]:
    n_axes, k = len(cfg.radices), cfg.top_k
    fF = np.asarray(z["front_F"])
    n = fF.shape[0]
    want = {"front_F": (n, cfg.n_obj), "front_G": (n, cfg.n_constr), "front_aux": (n, cfg.n_aux),
            "front_digits": (n, n_axes), "best_F": (cfg.n_obj, k, cfg.n_obj),
            "best_G": (cfg.n_obj, k, cfg.n_constr), "best_aux": (cfg.n_obj, k, cfg.n_aux),
            "best_digits": (cfg.n_obj, k, n_axes), "best_valid": (cfg.n_obj, k)}
    want.update({f"near_{name}": np.shape(x)[1:] for name, x in zip(NearMissState._fields, init.near)})
    want.update({f"hist_{i}": (len(e) + 1,) for i, (_, e) in enumerate(cfg.hist)})
    for key, shape in want.items():
        if key not in z:
            raise MlsysOptError(f"entry '{key}' is missing")
        if tuple(z[key].shape) != shape:
            raise MlsysOptError(f"entry '{key}' has shape {tuple(z[key].shape)}, expected {shape}")
    for key in ("front_digits", "best_digits", "near_digits", "near_best_digits"):
        if np.any(z[key] < 0) or np.any(z[key] >= np.array(cfg.radices)):
            raise MlsysOptError(f"entry '{key}' holds digits outside the axes {list(cfg.radices)}")
    next_index, n_feasible = int(str(z["next_index"])), int(str(z["n_feasible"]))
    N = indexing.space_size(cfg.radices)
    if not 0 <= next_index <= N or not 0 <= n_feasible <= next_index:
        raise MlsysOptError(f"counters next_index={next_index}, n_feasible={n_feasible} do not fit a space of {N}")
    if n > cfg.capacity:
        raise MlsysOptError(f"it holds a front of {n} configurations; front_capacity={cfg.capacity} is too small")

    def put(dst, src):               # host arrays (the engine puts the state on the devices)
        out = np.array(dst)
        out[:n] = np.asarray(src, out.dtype)
        return out
    fr = init.front
    front = pareto.Front(put(fr.F, fF), np.asarray(fr.pos),
                         type(fr.payload)(*(put(a, z[f"front_{key}"]) for a, key in zip(fr.payload, ("G", "aux", "digits")))),
                         np.arange(cfg.capacity) < n, np.asarray(n, np.int32), np.asarray(n, np.int32))
    best = BestLists(*(np.asarray(z[f"best_{name}"], x.dtype) for name, x in zip(BestLists._fields, init.best)))
    # the saved (merged) near miss as the first device's entry, the others' empty (its configurations come
    # before every one still to sweep: a tie keeps it, as on one device)
    near = NearMissState(*(np.concatenate([np.asarray(z[f"near_{name}"], x.dtype)[None], np.asarray(x)[1:]])
                           for name, x in zip(NearMissState._fields, init.near)))
    acc = HostCounters(next_index, n_feasible, tuple(z[f"hist_{i}"].astype(np.int64) for i in range(len(cfg.hist))),
                       int(z.get("n_chunks", 0)),
                       z["reasons"].astype(np.int64) if "reasons" in z else np.zeros(cfg.n_constr + 1, np.int64))
    return ReducerState(front, best, np.zeros((), bool), near), acc


__all__ = ["CHECKPOINT_VERSION", "RUN_KEY_PARTS", "compose_run_key", "describe_run", "fingerprint", "load", "remove_stale_temp_files", "save",
           "temp_path", "write_atomically"]
