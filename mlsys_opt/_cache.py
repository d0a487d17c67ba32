"""What mlsys_opt's on-disk caches share: the folder, the package's source hash, atomic writes.

The folder is $MLSYS_OPT_CACHE_DIR (default ~/.cache/mlsys_opt/jax; "off", "0", "none", "false",
"no" or "" turns every cache off): JAX's persistent compilation cache (``mlsys_opt._enable_compile_cache``)
and, in sub-folders, the compiled sweep steps (``sweeps.executables``) and the validated built-in
catalog (``catalog._cached``).  Nothing here imports JAX, pandas or pint.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

CACHE_ENV = "MLSYS_OPT_CACHE_DIR"
OFF = ("", "0", "off", "none", "false", "no")


def root() -> Path | None:
    """$MLSYS_OPT_CACHE_DIR, default ~/.cache/mlsys_opt/jax (XDG_CACHE_HOME honoured); None when off."""
    raw = os.environ.get(CACHE_ENV)
    if raw is not None and raw.strip().lower() in OFF:
        return None
    return Path(raw or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                    "mlsys_opt", "jax"))


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """SHA-256 of every ``*.py`` file of the mlsys_opt package (relative paths and bytes, sorted; ~4 ms)."""
    base = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(base.rglob("*.py")):
        h.update(b"\0" + str(p.relative_to(base)).encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path`: ``<path>.tmp.<pid>``, fsync, ``os.replace`` (readers see the old file or the
    new one, never half of one).  OSError goes to the caller (a cache skips the write)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def prune(folder: Path, pattern: str, keep: int) -> None:
    """Delete all but the `keep` most recently written files matching `pattern` in `folder` (best effort):
    every edit of the package's source is a new key, so old entries would otherwise pile up."""
    try:
        files = sorted(Path(folder).glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
        for p in files[keep:]:
            p.unlink()
    except OSError:
        pass


def encode(v: Any) -> Any:
    """A JSON-able form of `v` that :func:`decode` turns back into the same types: numpy arrays (dtype,
    shape) and scalars, tuples, lists, str-keyed dicts, None, bool, int, float, str.  Anything else (or a
    dict key that is not a str) raises TypeError: the caller skips writing that cache entry."""
    import numpy as np
    if isinstance(v, np.ndarray):
        return {"a": [v.dtype.str, list(v.shape), v.ravel().tolist()]}
    if isinstance(v, np.generic):
        return {"n": [v.dtype.str, v.item()]}
    if isinstance(v, tuple):
        return {"t": [encode(x) for x in v]}
    if isinstance(v, list):
        return {"l": [encode(x) for x in v]}
    if isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            raise TypeError("dict keys must be str")
        return {"d": {k: encode(x) for k, x in v.items()}}
    if v is None or type(v) in (bool, int, float, str):
        return v
    raise TypeError(f"cannot cache a value of type {type(v).__name__}")


def decode(v: Any) -> Any:
    """The inverse of :func:`encode` (ValueError on an unknown tag: a damaged entry)."""
    import numpy as np
    if isinstance(v, dict):
        (tag, x), = v.items()
        if tag == "a":
            return np.asarray(x[2], dtype=np.dtype(x[0])).reshape(x[1])
        if tag == "n":
            return np.dtype(x[0]).type(x[1])
        if tag == "t":
            return tuple(decode(y) for y in x)
        if tag == "l":
            return [decode(y) for y in x]
        if tag == "d":
            return {k: decode(y) for k, y in x.items()}
        raise ValueError(f"unknown tag {tag!r}")
    return v
