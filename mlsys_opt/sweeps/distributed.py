"""Multi-process sweeps on ``jax.distributed``: every process sweeps its share of the index range.

    mlsys-opt sweep SPACE --distributed                      # SLURM / Open MPI: detected as JAX does
    mlsys-opt sweep SPACE --distributed --coordinator HOST:PORT --num-processes N --process-id I
    mlsys_opt.sweep(space, distributed=True)                 # after initialize(...) or auto-detection

How a distributed sweep runs (``stream``):
  1. ``initialize``: ``jax.distributed.initialize`` (CPU collectives: gloo), then a
     heartbeat thread on the coordination service's key-value store (``_Watchdog``);
  2. fingerprint exchange: every process publishes what it is about to compute (the
     sweep's run key -- a hash of the spec, catalog rows, efficiency, dtype -- the
     axis sizes, the process count and the engine options); any difference is one
     MlsysOptError naming the differing field on EVERY process (CLI exit 2);
  3. the index range [0, N) is cut into P contiguous shares aligned to whole chunks
     (``split_range``); each process streams its share on its LOCAL devices with the
     single-process engine (``engine.stream(index_range=...)``), so nothing crosses
     the network while sweeping;
  4. all-gather + re-reduce: each process publishes its reduced state (front rows,
     best-k lists, counts, histograms, reasons) and merges all P of them on the host
     (``merge_results``): counts add; the front is the non-dominated subset of the
     union of the local fronts (exact: a configuration of the global front is beaten
     by nothing, so it is on its own process's front; anything beaten globally is
     beaten by a member of the union, by transitivity); best-k lists merge by
     (value, index).  Every process ends with the identical result;
  5. checkpoints (``_Saver``): every process hands its state to process 0 through the
     key-value store; only process 0 writes the file (a bundle of one engine
     checkpoint per process, its ranges and the process count).  ``--resume``
     redistributes the parts; a different process count is refused.

Faults: a process that dies or hangs stops heartbeating; the others print one
line naming it and exit 1 within ``MLSYS_OPT_HEARTBEAT_S`` seconds (default 30).
A wrong coordinator address, a port in use, mismatched process counts or a
process given another spec: one-line MlsysOptError (exit 2), bounded by
``MLSYS_OPT_INIT_TIMEOUT_S`` (default 60) for the connection.
"""
from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..errors import MlsysOptError
from .distributed_merge import merge_results, pack_result, split_range

HEARTBEAT_ENV = "MLSYS_OPT_HEARTBEAT_S"
INIT_TIMEOUT_ENV = "MLSYS_OPT_INIT_TIMEOUT_S"
EXIT_PEER_LOST = 1
_NS = "mlsys_opt"
_PART = 1 << 20                    # bytes per key-value entry


class Cluster(NamedTuple):
    process_id: int
    num_processes: int
    client: Any                    # the coordination service client (key-value store)
    heartbeat_s: float
    requested: int                 # --num-processes as given (exchanged: a mismatch fails every process)


_CLUSTER: list = [None]
_SEQ = [0]                         # exchanges so far (the same on every process)


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        v = float(raw)
    except ValueError:
        v = float("nan")
    if not v > 0 or v == float("inf"):
        raise MlsysOptError(f"${name}={raw!r}: expected a positive number of seconds")
    return v


def _parse_coordinator(coordinator: str) -> tuple[str, int]:
    host, sep, port = str(coordinator).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MlsysOptError(f"--coordinator {coordinator!r}: expected HOST:PORT with a port in 1..65535, "
                            "e.g. 10.0.0.1:12345")
    return host.strip("[]"), int(port)


def _port_free(port: int) -> bool:
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            s.bind((addr, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def _wait_for_coordinator(host: str, port: int, timeout_s: float) -> None:
    """Return once HOST:PORT accepts TCP connections; MlsysOptError after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    err: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, timeout_s)):
                return
        except OSError as exc:
            err = exc
            time.sleep(0.2)
    raise MlsysOptError(f"--coordinator {host}:{port}: could not join: nothing accepted connections there within "
                        f"{timeout_s:g} s ({err}); check the address and that process 0 runs "
                        f"(${INIT_TIMEOUT_ENV} sets the wait)")


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, init_timeout_s: float | None = None, heartbeat_s: float | None = None) -> Cluster:
    """Join (or reuse) the jax.distributed job; returns this process's :class:`Cluster`.

    With no arguments JAX detects the cluster (SLURM, Open MPI, ...).  Call it before
    anything else touches JAX (the CLI and ``sweep(distributed=True)`` do).
    Raises MlsysOptError (one line) for bad arguments, a port in use, an unreachable
    coordinator (after ``init_timeout_s``) or a process id the coordinator refuses.
    """
    if _CLUSTER[0] is not None:
        return _CLUSTER[0]
    hb = heartbeat_s if heartbeat_s is not None else _env_seconds(HEARTBEAT_ENV, 30.0)
    init_timeout = init_timeout_s if init_timeout_s is not None else _env_seconds(INIT_TIMEOUT_ENV, 60.0)
    given = [x is not None for x in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise MlsysOptError("--coordinator, --num-processes and --process-id go together (give all three, "
                            "or none to let JAX detect SLURM / Open MPI)")
    if coordinator is not None:
        host, port = _parse_coordinator(coordinator)
        for name, v in (("--num-processes", num_processes), ("--process-id", process_id)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise MlsysOptError(f"{name} {v!r}: expected an integer >= 0")
        if num_processes < 1 or process_id >= num_processes:
            raise MlsysOptError(f"--process-id {process_id} must be in [0, {num_processes - 1}] "
                                f"(--num-processes {num_processes})")
        if process_id == 0 and not _port_free(port):
            raise MlsysOptError(f"--coordinator {coordinator}: port {port} is already in use on this host "
                                "(another sweep or service); pick a free port")
        if process_id != 0:          # JAX aborts the process (no exception) when it cannot register
            _wait_for_coordinator(host, port, init_timeout)
    import jax
    from jax._src import distributed as jd
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if jd.global_state.client is None:
        try:
            jax.distributed.initialize(coordinator, num_processes, process_id,
                                       initialization_timeout=max(1, round(init_timeout)),
                                       heartbeat_timeout_seconds=max(10, int(3 * hb) + 5),
                                       shutdown_timeout_seconds=max(5, int(2 * hb)))
        except MlsysOptError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to join is a setup error
            text = " ".join(str(exc).split())
            if len(text) > 300:
                text = text[:297] + "..."
            where = f"coordinator {coordinator}" if coordinator else "the detected cluster"
            raise MlsysOptError(f"jax.distributed.initialize could not join {where} within {init_timeout:g} s "
                                f"(wrong address, coordinator not started, or a process id/count the coordinator "
                                f"refuses): {type(exc).__name__}: {text}") from None
    cl = Cluster(int(jax.process_index()), int(jax.process_count()), jd.global_state.client, float(hb),
                 int(num_processes) if num_processes is not None else int(jax.process_count()))
    _CLUSTER[0] = cl
    dog = _Watchdog(cl)
    dog.start()
    # Stop the heartbeat thread before JAX's own atexit shutdown (atexit runs last-registered
    # first): a daemon thread still inside a store call at interpreter finalization is ended by
    # pthread_exit, whose forced unwind through the client's C++ aborts the process (SIGABRT,
    # "FATAL: exception not rethrown") after the sweep had succeeded.
    atexit.register(dog.stop)
    return cl


def current() -> Cluster | None:
    """The cluster joined by :func:`initialize`, or None."""
    return _CLUSTER[0]


# --------------------------------------------------------------------------- liveness

class _Watchdog(threading.Thread):
    """Heartbeats through the key-value store; a peer silent for heartbeat_s ends this process.

    Peers that published ``done`` for the exchange in progress are not watched (they
    may exit while this process writes its outputs).  Exit code EXIT_PEER_LOST, one
    line on stderr; os._exit because the main thread may be blocked in XLA.
    """

    def __init__(self, cl: Cluster):
        super().__init__(name="mlsys_opt-heartbeat", daemon=True)
        self.cl = cl
        self._stopped = threading.Event()

    def stop(self) -> None:
        """End the loop and wait for the store call in flight (bounded by one heartbeat period)."""
        self._stopped.set()
        self.join(timeout=max(1.0, self.cl.heartbeat_s))

    def run(self) -> None:
        cl, me = self.cl, self.cl.process_id
        period = max(0.05, cl.heartbeat_s / 6)
        seen = {j: (None, time.monotonic()) for j in range(cl.num_processes) if j != me}
        beat, store_error_since = 0, None
        while not self._stopped.wait(period):
            beat += 1
            now = time.monotonic()
            try:
                cl.client.key_value_set(f"{_NS}/hb/{me}", str(beat), allow_overwrite=True)
                active = _ACTIVE[0]
                for j, (last, t) in list(seen.items()):
                    v = _try_get(cl, f"{_NS}/hb/{j}")
                    if v != last:
                        seen[j] = (v, now)
                    if active is None or _try_get(cl, f"{_NS}/{active}/done/{j}") == "1":
                        continue
                    failed = _try_get(cl, f"{_NS}/{active}/error/{j}")
                    if failed is not None:
                        _die(f"process {j} of {cl.num_processes} stopped: {failed}; process {me} stops too")
                    if v == last and now - t > cl.heartbeat_s:
                        _die(f"process {j} of {cl.num_processes} sent no heartbeat for {now - t:.1f} s "
                             f"(it died or hangs); process {me} stops too")
                store_error_since = None
            except Exception as exc:  # noqa: BLE001 - the coordinator (process 0) is gone
                store_error_since = store_error_since or now
                if now - store_error_since > cl.heartbeat_s and _ACTIVE[0] is not None:
                    _die(f"lost the coordinator (process 0) for {now - store_error_since:.1f} s "
                         f"({type(exc).__name__}); process {me} of {cl.num_processes} stops")


_ACTIVE: list = [None]            # tag of the distributed sweep in progress (None: nothing to watch)


def _try_get(cl: Cluster, key: str) -> str | None:
    """The value under `key`, None when it is not set (other store errors propagate)."""
    try:
        return cl.client.key_value_try_get(key)
    except Exception as exc:  # the client raises a generic error for NOT_FOUND
        if "NOT_FOUND" in str(exc) or "not found" in str(exc).lower():
            return None
        raise


def _die(message: str) -> None:
    sys.stderr.write(f"mlsys-opt: error: {message}\n")
    sys.stderr.flush()
    os._exit(EXIT_PEER_LOST)


# --------------------------------------------------------------------------- exchanges

def _put(cl: Cluster, key: str, data: bytes) -> None:
    parts = [data[i:i + _PART] for i in range(0, len(data), _PART)] or [b""]
    for i, p in enumerate(parts):
        cl.client.key_value_set_bytes(f"{key}/p{i}", p)
    cl.client.key_value_set(f"{key}/n", str(len(parts)))


def _get(cl: Cluster, key: str, block: bool = True) -> bytes | None:
    """The bytes published under `key`; blocks (the watchdog ends a wait on a dead peer)."""
    if not block:
        n = _try_get(cl, f"{key}/n")
        if n is None:
            return None
        n = int(n)
    while block:
        try:
            n = int(cl.client.blocking_key_value_get(f"{key}/n", 1000))
            break
        except Exception:  # noqa: BLE001, S110 - not there yet: wait on (the watchdog ends a wait on the dead)
            pass
    return b"".join(cl.client.blocking_key_value_get_bytes(f"{key}/p{i}", 60_000) for i in range(n))


def allgather(cl: Cluster, tag: str, data: bytes) -> list[bytes]:
    """Every process's `data` for exchange `tag`, in process order (identical on all)."""
    _put(cl, f"{_NS}/{tag}/{cl.process_id}", data)
    return [data if j == cl.process_id else _get(cl, f"{_NS}/{tag}/{j}") for j in range(cl.num_processes)]


def check_same_problem(cl: Cluster, tag: str, fingerprint: dict) -> None:
    """Raise the same MlsysOptError on every process when any process computes something else."""
    mine = json.dumps(fingerprint, sort_keys=True, default=str)
    all_ = [json.loads(b) for b in allgather(cl, f"{tag}/fp", mine.encode())]
    for j, fp in enumerate(all_):
        diff = sorted(k for k in set(fp) | set(all_[0]) if fp.get(k) != all_[0].get(k))
        if diff:
            raise MlsysOptError(f"distributed sweep: process {j} was given a different problem than process 0 "
                                f"(differs in {', '.join(diff)}); every process must run the same spec, catalog, "
                                "calibration and options")


# --------------------------------------------------------------------------- checkpoints

_BUNDLE_KEY = "distributed_num_processes"


def _prepare_resume(cl: Cluster, tag: str, path: str | None, resume: bool):
    """Process 0 reads the bundle at `path` and hands out the parts: (ranges or None, my part or None).

    Raises the same MlsysOptError on every process for a bundle of another process
    count, a single-process checkpoint or an unreadable file.
    """
    key = f"{_NS}/{tag}/resume"
    if cl.process_id == 0:
        verdict, parts = {"ranges": None}, {}
        if resume and path is not None and os.path.exists(path):
            try:
                with np.load(path, allow_pickle=False) as z:
                    zz = {k: z[k] for k in z.files}
            except Exception as exc:  # noqa: BLE001
                zz, verdict = {}, {"error": f"checkpoint {path}: cannot be read ({type(exc).__name__}: {exc}); "
                                            "delete it or start without --resume"}
            if "error" not in verdict:
                if _BUNDLE_KEY not in zz:
                    verdict = {"error": f"checkpoint {path} was written by a single-process sweep; resume it "
                                        "without --distributed, or start over without --resume"}
                elif int(zz[_BUNDLE_KEY]) != cl.num_processes:
                    verdict = {"error": f"checkpoint {path} was written by a sweep of {int(zz[_BUNDLE_KEY])} "
                                        f"processes; resume it with {int(zz[_BUNDLE_KEY])} processes (this run has "
                                        f"{cl.num_processes}), or start over without --resume"}
                else:
                    verdict = {"ranges": [[int(a), int(b)] for a, b in zz["ranges"]]}
                    parts = {j: zz[f"part_{j}"].tobytes() for j in range(cl.num_processes) if f"part_{j}" in zz}
                    verdict["parts"] = sorted(parts)
        for j, blob in parts.items():
            if j:
                _put(cl, f"{key}/part{j}", blob)
        _put(cl, f"{key}/verdict", json.dumps(verdict).encode())
        mine = parts.get(0)
    else:
        verdict = json.loads(_get(cl, f"{key}/verdict"))
        mine = _get(cl, f"{key}/part{cl.process_id}") if cl.process_id in verdict.get("parts", []) else None
    if "error" in verdict:
        raise MlsysOptError(verdict["error"])
    ranges = verdict["ranges"]
    return (None if ranges is None else [tuple(r) for r in ranges]), mine


class _Saver:
    """The engine's checkpoint hook in a distributed sweep (``engine.stream(saver=...)``).

    ``start`` restores this process's part of a resumed bundle; ``save`` publishes
    this process's state (npz bytes of ``checkpoint.save``) and, on process 0,
    writes the bundle: every process's latest published state, its range and the
    process count.  The final save of process 0 waits for every final state, so
    the last file holds the finished sweep.
    """

    def __init__(self, cl: Cluster, tag: str, path: str | None, ranges: list, resume_part: bytes | None):
        self.cl, self.tag, self.path, self.ranges = cl, tag, path, ranges
        self.part, self.version, self.known = resume_part, 0, {}
        self.tmp = tempfile.mkdtemp(prefix="mlsys_opt_ckpt_")

    def _file(self) -> str:
        return os.path.join(self.tmp, "part.npz")

    def start(self, cfg, desc, init, acc):
        from . import checkpoint
        lo, hi = self.ranges[self.cl.process_id]
        if self.part is None:
            return init, acc._replace(next_index=lo)
        with open(self._file(), "wb") as fh:
            fh.write(self.part)
        try:
            init, acc = checkpoint.load(self._file(), cfg, desc, init)
        except MlsysOptError as exc:
            raise MlsysOptError(str(exc).replace(self._file(), f"{self.path} (part {self.cl.process_id})")) from None
        if not lo <= acc.next_index <= hi:
            raise MlsysOptError(f"checkpoint {self.path} is damaged: part {self.cl.process_id} stopped at index "
                                f"{acc.next_index}, outside its range [{lo}, {hi})")
        self.known[self.cl.process_id] = self.part
        return init, acc

    def save(self, loop, cfg, desc) -> None:
        if self.path is None:
            return
        from . import checkpoint
        cl, me = self.cl, self.cl.process_id
        final = loop.acc.next_index >= self.ranges[me][1]
        checkpoint.save(self._file(), loop, cfg, desc)
        with open(self._file(), "rb") as fh:
            blob = fh.read()
        base = f"{_NS}/{self.tag}/ck"
        if final:
            _put(cl, f"{base}/{me}/final", blob)
        else:
            self.version += 1
            _put(cl, f"{base}/{me}/v{self.version}", blob)
            cl.client.key_value_set(f"{base}/{me}/latest", str(self.version), allow_overwrite=True)
        if me != 0:
            return
        self.known[0] = blob
        for j in range(1, cl.num_processes):
            got = _get(cl, f"{base}/{j}/final", block=final)
            if got is None:
                v = _try_get(cl, f"{base}/{j}/latest")
                got = _get(cl, f"{base}/{j}/v{v}") if v is not None else None
            if got is not None:
                self.known[j] = got
        arrs = {f"part_{j}": np.frombuffer(b, np.uint8) for j, b in self.known.items()}
        arrs.update({_BUNDLE_KEY: np.int64(cl.num_processes), "ranges": np.array(self.ranges, np.int64),
                     "fingerprint": np.array(checkpoint.fingerprint(desc))})
        checkpoint.write_atomically(self.path, arrs)


# --------------------------------------------------------------------------- the distributed sweep

def stream(radices, chunk_fn: Callable, *, run_key: str, chunk_size: int, top_k: int, devices=None,
           progress=None, checkpoint_path=None, resume: bool = False, options: dict | None = None,
           timings: dict | None = None, **engine_kw):
    """``engine.stream`` over every process of the job; the identical EngineResult on each.

    `options` (JSON-able) join the fingerprint exchanged at the start; `engine_kw`
    go to ``engine.stream`` unchanged.  Only process 0 writes the checkpoint.
    """
    import jax

    from ..space import indexing
    from . import engine
    t0 = time.perf_counter()
    cl = initialize()
    _SEQ[0] += 1
    tag = f"sweep{_SEQ[0]}"
    N = indexing.space_size(radices)
    me, P = cl.process_id, cl.num_processes
    path = None if checkpoint_path is None else os.fspath(checkpoint_path)
    _ACTIVE[0] = tag
    try:
        check_same_problem(cl, tag, {"run_key": run_key, "radices": [int(r) for r in radices],
                                     "num_processes": cl.requested,
                                     "chunk_size": int(chunk_size), "top_k": int(top_k),
                                     "checkpoint": path is not None, "resume": bool(resume), **(options or {})})
        local = jax.local_devices()
        if devices is not None:
            if isinstance(devices, int) and not isinstance(devices, bool):
                if not 1 <= devices <= len(local):
                    raise MlsysOptError(f"devices={devices} but process {me} has {len(local)} local device(s)")
                local = local[:devices]
            else:
                local = list(devices)
        try:
            ranges, part = _prepare_resume(cl, tag, path, resume)
            if ranges is None:
                ranges = split_range(N, P, chunk_size)
            saver = _Saver(cl, tag, path, ranges, part)
            res = engine.stream(radices, chunk_fn, chunk_size=chunk_size, top_k=top_k, devices=tuple(local),
                                progress=progress if me == 0 or callable(progress) else False, index_range=ranges[me], saver=saver,
                                run_key=run_key, timings=timings, **engine_kw)
        except BaseException as exc:
            try:               # the others stop at once instead of waiting for a heartbeat timeout
                cl.client.key_value_set(f"{_NS}/{tag}/error/{me}", " ".join(str(exc).split())[:300]
                                        or type(exc).__name__)
            except Exception:  # noqa: BLE001, S110 - best effort: the heartbeat timeout still stops the others
                pass
            raise
        t1 = time.perf_counter()
        out = merge_results(allgather(cl, f"{tag}/result", pack_result(res)), top_k, N, 0.0)
        cl.client.key_value_set(f"{_NS}/{tag}/done/{me}", "1")
        if timings is not None:
            timings["gather"] = timings.get("gather", 0.0) + time.perf_counter() - t1
        return out._replace(elapsed_s=time.perf_counter() - t0)
    finally:
        _ACTIVE[0] = None
