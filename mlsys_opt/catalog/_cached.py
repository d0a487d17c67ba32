"""The validated rows of the built-in catalog, cached on disk so that loading it needs no pint.

Validating the catalog parses ~500 quantity strings through pint (importing pint and building its
registry included, ~0.4 s of the 0.5 s that `mlsys-opt catalog list` may take).  The rows are a pure
function of the catalog's TOML files, pint's unit definitions and mlsys_opt's code, so they are
cached under a key made of exactly those: the SHA-256 of ``accelerators.toml``, ``models.toml``,
``fabrics.toml``, ``regions.toml``, ``achievable.toml``, pint's ``default_en.txt`` and
``constants_en.txt`` (what ``units`` builds its registry from) and of every ``*.py`` file of the
package (``_cache.source_hash``).  One JSON file per key in ``$MLSYS_OPT_CACHE_DIR/mlsys_opt_catalog/``
(off with the other caches), written atomically; floats as JSON numbers (Python writes the shortest
text that reads back to the same float), tuples and arrays tagged.  A file that does not parse, or
whose rows do not give back the catalog fingerprint stored with them, is ignored (the catalog is
validated again and the file rewritten).  User entries (``with_entries``, ``--catalog``) are
validated every time.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

from .. import _cache

FORMAT = 1
FOLDER = "mlsys_opt_catalog"


def key(data_files: list[Path]) -> str:
    """SHA-256 of what the validated rows depend on (see the module docstring)."""
    h = hashlib.sha256(f"catalog rows {FORMAT}\0{_cache.source_hash()}\0".encode())
    pint_dir = None
    spec = importlib.util.find_spec("pint")
    if spec is not None and spec.origin:
        pint_dir = Path(spec.origin).parent
    for p in [*data_files, *(pint_dir / n for n in ("default_en.txt", "constants_en.txt") if pint_dir)]:
        h.update(b"\0" + p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def cached_rows(data_files: list[Path], validate: Callable[[], dict], fingerprint: Callable[[dict], str]) -> dict:
    """``validate()`` (kind -> name -> row), from the cache when an entry for `data_files` is there and intact."""
    folder = _cache.root()
    if folder is None:
        return validate()
    try:
        path = folder / FOLDER / f"{key(data_files)[:40]}.json"
    except OSError:
        return validate()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = {kind: {name: {k: _cache.decode(v) for k, v in row.items()} for name, row in entries.items()}
                for kind, entries in data["rows"].items()}
        if data.get("format") == FORMAT and fingerprint(rows) == data["fingerprint"]:
            return rows
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass                         # missing, unreadable or damaged: validate and write it again
    rows = validate()
    try:
        payload = {"format": FORMAT, "fingerprint": fingerprint(rows),
                   "rows": {kind: {name: {k: _cache.encode(v) for k, v in row.items()} for name, row in entries.items()}
                            for kind, entries in rows.items()}}
        _cache.write_atomically(path, json.dumps(payload).encode())
        _cache.prune(path.parent, "*.json", 16)
    except (OSError, TypeError):
        pass                         # a read-only or full disk: the next run validates again
    return rows
