"""The command line's validated specs, cached on disk: a warm `mlsys-opt sweep` or `spaces list` needs no pint.

Loading a spec (``space.spec.load_space``) parses its quantities ("15e12 token", "30 day") with pint,
which costs ~0.3 s to import and build -- a sixth of a warm capstone sweep.  A validated ``Space`` is a
pure function of the spec file's bytes, the name it was given by, the catalog (its fingerprint: user
entries included) and mlsys_opt's code (``_cache.source_hash``), so the command line keeps it under a
key of exactly those in ``$MLSYS_OPT_CACHE_DIR/mlsys_opt_spaces/`` (off with the other caches): one
JSON file per key, written atomically, every field with its exact type (Python and numpy scalars,
tuples, arrays by dtype and shape).  A file that does not decode into a Space whose fields have the
stored types is ignored and the spec loaded again; a spec that does not validate is never cached (its
error is raised every time).  The Python API (``mlsys_opt.load_space``) always parses.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from .. import _cache

FORMAT = 1
FOLDER = "mlsys_opt_spaces"


def encode_space(space) -> dict:
    """The fields of a Space (all but its catalog) as JSON; Axis tuples by their fields."""
    out = {}
    for f in dataclasses.fields(space):
        if f.name == "catalog":
            continue
        value = getattr(space, f.name)
        out[f.name] = ([[_cache.encode(getattr(a, k)) for k in a._fields] for a in value] if f.name == "axes"
                       else _cache.encode(value))
    return out


def decode_space(data: dict, catalog):
    """The Space of :func:`encode_space`'s output, with `catalog` attached."""
    from ..space.spec import Axis, Space
    fields = {f.name for f in dataclasses.fields(Space)} - {"catalog"}
    if set(data) != fields:
        raise ValueError("fields differ")
    kw = {k: _cache.decode(v) for k, v in data.items() if k != "axes"}
    kw["axes"] = tuple(Axis(*(_cache.decode(x) for x in a)) for a in data["axes"])
    return Space(**kw, catalog=catalog)


def _key(path: Path, source: str, catalog) -> str:
    h = hashlib.sha256(f"spec {FORMAT}\0{_cache.source_hash()}\0{catalog.fingerprint()}\0{source}\0"
                       f"{path.resolve()}\0".encode())
    h.update(path.read_bytes())
    return h.hexdigest()


def load_space_cached(source, catalog):
    """``load_space(source, catalog=catalog)``, from the cache when this file was validated before."""
    from ..space.spec import load_space
    folder = _cache.root()
    path = Path(source) if isinstance(source, (str, Path)) else None
    if folder is None or path is None or not path.is_file():     # names ("capstone"), dicts: parsed
        return load_space(source, catalog=catalog)
    try:
        entry = folder / FOLDER / f"{_key(path, str(source), catalog)[:40]}.json"
    except OSError:
        return load_space(source, catalog=catalog)
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
        if data.get("format") == FORMAT:
            return decode_space(data["space"], catalog)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass                          # none yet, or damaged: parse the spec (and write it again)
    space = load_space(source, catalog=catalog)
    try:
        _cache.write_atomically(entry, json.dumps({"format": FORMAT, "space": encode_space(space)}).encode())
        _cache.prune(entry.parent, "*.json", 256)
    except (OSError, TypeError, ValueError):
        pass
    return space
