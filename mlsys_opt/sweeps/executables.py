"""A cache of compiled sweep steps: the engine's jitted step, serialized once compiled, loaded by later runs.

Why: JAX's persistent compilation cache is keyed by the LOWERED program, so even a warm run traces
the scenario and lowers the engine step before it finds the executable (about 2 s of the capstone's
warm run on the 2-core CPU).  This cache is keyed by what DETERMINES the program instead, so a hit
skips tracing, lowering and XLA and loads the executable (``jax.experimental.serialize_executable``):

- the code: a SHA-256 of every ``*.py`` file of the mlsys_opt package (:func:`source_hash`), the
  jax and jaxlib versions, the backend (platform, its version), the devices (kinds, ids, count),
  every JAX config value that can change a program (all but the cache, logging and dump settings)
  and $XLA_FLAGS;
- the problem (``program`` from ``sweeps.api``): scenario, axes (kinds, the exact values), constants,
  limits, objectives, outputs, the catalog fingerprint (or the bytes of tables given by the
  caller), the efficiency model and the dtype -- the constants baked into the program;
- the engine's settings: radices, column counts, chunk size, front capacity, top-k, histograms,
  layout; and the resulting ``EngineConfig`` must equal the stored one.

An entry is one file ``<key>.step`` in the folder: a magic line, the SHA-256 of the rest, then a
JSON header (the key parts, the engine config, the evaluator's output shapes) and the payload
(the serialized executable with its argument / result tree structures; it is a pickle, like JAX's
own cache entries: the folder is the user's, never load entries from elsewhere).  Writes are
atomic (``<file>.tmp.<pid>``, fsync, ``os.replace``).  An entry that is truncated, corrupt,
written for other key parts or another engine config, or that fails to load, is ignored and
rebuilt (compiled and written again): never a crash, never another program.

The folder keeps the 32 most recently written entries (every edit of the package's source is a new
key).  Where: ``$MLSYS_OPT_STEP_CACHE`` (a folder; "off", "0", "no", "none", "false" or "" disables it),
else ``<JAX's compilation cache dir>/mlsys_opt_steps`` while JAX's persistent cache is on (the
command line and ``mlsys_opt.sweep`` turn it on at $MLSYS_OPT_CACHE_DIR, default
~/.cache/mlsys_opt/jax), else off.  Single-process runs only (a jax.distributed sweep compiles).
``mlsys-opt warmup`` fills it; ``--timings`` says whether the step was loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._cache import OFF as _OFF
from .._cache import prune, source_hash, write_atomically

ENV = "MLSYS_OPT_STEP_CACHE"
FORMAT = 1
MAGIC = b"mlsys_opt compiled sweep step\n"
KEEP = 32              # entries kept in the folder (~2.5 MB each for the capstone), the most recent ones
# JAX config values that do not change a compiled program (caches, logs, dumps, tracebacks)
_IGNORED_CONFIG = ("compilation_cache", "persistent_cache", "log", "dump", "traceback", "pprint", "explain",
                   "debug_info", "source_url", "source_file")


def cache_dir() -> Path | None:
    """The folder of the step cache, or None when it is off (see the module docstring)."""
    raw = os.environ.get(ENV)
    if raw is not None:
        return None if raw.strip().lower() in _OFF else Path(raw)
    import jax
    base = jax.config.jax_compilation_cache_dir
    if not base or not jax.config.jax_enable_compilation_cache:
        return None
    return Path(base) / "mlsys_opt_steps"


def folder_for(scenario: str) -> Path | None:
    """The cache folder a compile of `scenario` may use now, or None: the cache is off, several
    processes run (a jax.distributed run compiles), jit is disabled, or the scenario function is not
    the package's own (a function put into ``SCENARIO_FNS`` at run time -- a test's deliberately broken
    one, a user's own -- is not in the key's source hash)."""
    import jax

    from .. import scenarios
    folder = cache_dir()
    if folder is None or jax.process_count() > 1 or jax.config.jax_disable_jit:
        return None
    if scenarios.SCENARIO_FNS[scenario] is not getattr(scenarios, scenario, None):
        return None
    return folder


def exact(x: Any) -> Any:
    """JSON-able, exact form of key parts: floats as hex, arrays by dtype, shape and SHA-256 of the bytes."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x).hex()
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, dict):
        return {str(k): exact(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
    if isinstance(x, (list, tuple)):
        return [exact(v) for v in x]
    if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        a = np.ascontiguousarray(np.asarray(x))
        return ["array", a.dtype.str, list(a.shape), hashlib.sha256(a.tobytes()).hexdigest()]
    return repr(x)


def _environment(devices: tuple) -> dict:
    """The key parts of the code, the JAX build and configuration, and the devices."""
    import jax
    import jaxlib
    client = devices[0].client
    config = {k: repr(v) for k, v in sorted(jax.config.values.items())
              if not any(word in k for word in _IGNORED_CONFIG)}
    return {"format": FORMAT, "source_sha256": source_hash(), "jax": jax.__version__,
            "jaxlib": getattr(jaxlib, "__version__", "?"), "platform": devices[0].platform,
            "platform_version": str(getattr(client, "platform_version", "")),
            "devices": [[str(d.device_kind), int(d.id), int(d.process_index)] for d in devices],
            "process_count": int(jax.process_count()), "config": config,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def _shapes_from(config: dict, lanes: int) -> tuple:
    """The evaluator's (F, G, aux) output shapes that the stored engine config was built from."""
    import jax
    counts = [config["n_obj"], config["n_constr"], config["n_aux"]]
    shape = (lambda n: (n, lanes)) if config["columns"] else (lambda n: (lanes, n))
    return tuple(jax.ShapeDtypeStruct(shape(int(n)), np.dtype(d)) for n, d in zip(counts, config["dtypes"]))


class StepCache:
    """The compiled-step cache of one sweep (``engine.stream(..., steps=this)``).

    ``shapes(lanes)``: the evaluator's output shapes from the entry (None on a miss: the engine
    traces); ``step(cfg, build)``: the loaded executable and its sharding, or ``build()``'s jitted
    step compiled here and stored.  ``status`` says what happened ("loaded", "compiled and stored",
    "compiled (not stored: ...)", "rebuilt (...)"), ``load_s`` the seconds spent reading and loading.
    """

    def __init__(self, folder: Path, devices: tuple, program: dict, engine_args: dict):
        self.folder, self.devices = Path(folder), tuple(devices)
        self.parts = exact({"environment": _environment(self.devices), "program": program, "engine": engine_args})
        self.key = hashlib.sha256(json.dumps(self.parts, sort_keys=True).encode()).hexdigest()
        self.path = self.folder / f"{self.key[:40]}.step"
        self.status, self.load_s, self.compile_s = "miss", 0.0, 0.0
        self._header: dict | None = None
        self._payload: bytes | None = None
        self._read()

    # ------------------------------------------------------------------ reading
    def _read(self) -> None:
        t0 = time.perf_counter()
        try:
            blob = self.path.read_bytes()
        except OSError:
            return                                   # no entry: a miss
        try:
            if not blob.startswith(MAGIC):
                raise ValueError("not a step cache entry")
            digest, rest = blob[len(MAGIC):len(MAGIC) + 64], blob[len(MAGIC) + 64:]
            if hashlib.sha256(rest).hexdigest().encode() != digest:
                raise ValueError("checksum mismatch (truncated or corrupt)")
            n = int.from_bytes(rest[:8], "little")
            header = json.loads(rest[8:8 + n].decode())
            if header.get("parts") != self.parts:
                raise ValueError("written for other key parts")
            self._header, self._payload = header, rest[8 + n:]
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
            self.status = f"rebuilt (entry ignored: {exc})"
        self.load_s += time.perf_counter() - t0

    def shapes(self, lanes: int):
        """The evaluator's output shapes for `lanes` lanes from the entry, or None (the engine traces)."""
        if self._header is None or self._header.get("config", {}).get("lanes") != lanes:
            return None
        try:
            return _shapes_from(self._header["config"], lanes)
        except (KeyError, TypeError, ValueError, IndexError):
            self._header = None
            return None

    # ------------------------------------------------------------------ one executable
    @property
    def has_entry(self) -> bool:
        """Whether a valid entry for these key parts was read (its config is the caller's to check)."""
        return self._payload is not None

    def load(self):
        """The entry's executable, loaded onto the cache's devices (raises when it cannot be loaded)."""
        from jax.experimental import serialize_executable as se
        payload, in_tree, out_tree = pickle.loads(self._payload)
        return se.deserialize_and_load(payload, in_tree, out_tree, backend=self.devices[0].client,
                                       execution_devices=list(self.devices))

    def store(self, compiled, config: dict | None) -> str | None:
        """Serialize `compiled` into this key's entry (with `config` in its header) and prune the folder;
        None when stored, else why not (the caller goes on with `compiled`)."""
        try:
            from jax.experimental import serialize_executable as se
            payload = pickle.dumps(se.serialize(compiled), protocol=pickle.HIGHEST_PROTOCOL)
            header = {"parts": self.parts, "config": config, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            write_entry(self.path, header, payload)
            prune(self.folder, "*.step", KEEP)
            return None
        except Exception as exc:            # noqa: BLE001 - a failed store never stops the run
            return f"{type(exc).__name__}: {str(exc)[:80]}"

    # ------------------------------------------------------------------ the step
    def step(self, cfg, build):
        """(step, replicated sharding): the stored executable when the entry matches `cfg`, else
        ``build()`` (the engine's default: trace and jit) compiled here and stored."""
        from jax.sharding import Mesh, NamedSharding
        from jax.sharding import PartitionSpec as P

        from .step import AXIS
        if self._header is not None and self._header.get("config") == exact(cfg._asdict()):
            t0 = time.perf_counter()
            try:
                compiled = self.load()
                self.status = "loaded"
                self.load_s += time.perf_counter() - t0
                return compiled, NamedSharding(Mesh(np.array(self.devices), (AXIS,)), P())
            except Exception as exc:        # noqa: BLE001 - any failure to load means: compile it again
                self.status = f"rebuilt (entry failed to load: {type(exc).__name__})"
                self.load_s += time.perf_counter() - t0
        elif self._header is not None:
            self.status = "rebuilt (entry for another engine configuration)"
        return self._compile_and_store(cfg, build)

    def _compile_and_store(self, cfg, build):
        import jax

        from .state import initial_state
        from .step import state_shardings
        t0 = time.perf_counter()
        step, rep = build()
        args = (initial_state(cfg), np.zeros(len(cfg.radices), np.int32), np.int32(1))
        shardings = (state_shardings(rep), rep, rep)       # (the near miss: one entry per device)
        spec = jax.tree_util.tree_map(lambda sh, a: jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype, sharding=sh), a), shardings, args)
        compiled = _compile_bypassing_jax_cache(step.lower(*spec))
        self.compile_s = time.perf_counter() - t0
        failed = self.store(compiled, exact(cfg._asdict()))
        if failed is not None:
            self.status = f"compiled (not stored: {failed})"
        elif not self.status.startswith("rebuilt"):
            self.status = "compiled and stored"
        return compiled, rep


def _compile_bypassing_jax_cache(lowered):
    """``lowered.compile()`` by XLA itself, with JAX's persistent compilation cache off meanwhile.

    An executable that JAX loaded from its own cache serializes into an entry that loads but fails
    when run on the CPU ("Function ... not found"): so the step cache stores only executables XLA
    compiled in this process.  (JAX's cache is keyed by the lowered program: it is still used by every
    other compile, and a step-cache hit never lowers.)
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc
    was = jax.config.jax_enable_compilation_cache
    cc.reset_cache()                    # JAX decides once per process whether its cache is used
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        return lowered.compile()
    finally:
        jax.config.update("jax_enable_compilation_cache", was)
        cc.reset_cache()


def write_entry(path: Path, header: dict, payload: bytes) -> None:
    """Write one entry atomically (``_cache.write_atomically``): magic, SHA-256 of the rest, header, payload."""
    head = json.dumps(header, sort_keys=True).encode()
    rest = len(head).to_bytes(8, "little") + head + payload
    write_atomically(Path(path), MAGIC + hashlib.sha256(rest).hexdigest().encode() + rest)


__all__ = ["ENV", "StepCache", "cache_dir", "exact", "folder_for", "source_hash", "write_entry"]
