"""Self-describing result files (issue 14 item 4): a table that says what produced it.

`write_table(df, path, meta)` writes CSV (+ a sidecar ``<path>.meta.json``), Parquet (the metadata as
the file's key-value metadata under ``mlsys_opt``) or JSON (``{"meta": ..., "rows": [...]}``);
`load_result(path)` reads any of them back as a `LoadedResult` (front DataFrame + metadata).

`describe(space, eff=..., kind=...)` builds the metadata: the spec as parsed (scenario, axes with
their labels, fixed parameters as written and in SI, limits, objectives, the spec file's text), the
catalog fingerprint (``Catalog.fingerprint()``: SHA-256 of every catalog row the run could gather), the efficiency model, the
package version and the UTC time.  Numbers are JSON numbers with the unit in the key.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..errors import MlsysOptError

META_KEY = "mlsys_opt"          # Parquet key-value metadata key
SIDECAR_SUFFIX = ".meta.json"   # CSV sidecar: results.csv -> results.csv.meta.json


class LoadedResult(NamedTuple):
    """A result file read back: the table and what produced it."""
    front: pd.DataFrame
    meta: dict
    path: Path

    def to_frame(self) -> pd.DataFrame:
        return self.front

    def _repr_html_(self) -> str:
        spec = self.meta.get("spec", {})
        head = (f"<p><b>{spec.get('name', '?')}</b> ({spec.get('scenario', '?')}): {len(self.front):,} rows "
                f"from {self.path.name}, mlsys_opt {self.meta.get('version', '?')}, {self.meta.get('created_utc', '')}</p>")
        return head + self.front.head(20).to_html(index=False)


def _plain(x: Any) -> Any:
    """JSON-safe plain numbers (numpy scalars -> Python; non-finite floats -> None)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, str)) or x is None:
        return x
    return str(x)


def describe(space, *, eff=None, kind: str = "sweep", extra: dict | None = None) -> dict:
    """Metadata of a result of `space` (see the module docstring)."""
    from .. import __version__
    from ..catalog import load_catalog
    from ..scenarios.efficiency import DEFAULT_EFFICIENCY

    eff = DEFAULT_EFFICIENCY if eff is None else eff
    catalog = space.catalog if getattr(space, "catalog", None) is not None else load_catalog()
    text = None
    try:
        src = Path(str(space.source))
        if src.is_file() and src.stat().st_size < 1_000_000:
            text = src.read_text(encoding="utf-8-sig", errors="replace")
    except OSError:
        text = None
    meta = {
        "kind": kind,
        "version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "spec": {
            "name": space.name, "scenario": space.scenario, "source": str(space.source),
            "description": space.description,
            "axes": {a.name: [str(x) for x in a.labels] for a in space.axes},
            "fixed": dict(space.fixed_labels),
            "fixed_si": _plain(dict(space.fixed)),
            "limits": {out: {"sense": s, "value_si": _plain(v)} for out, (s, v) in space.limits.items()},
            "objectives": [{"name": n, "sense": s} for n, s in space.objectives],
            "text": text,
        },
        "catalog_sha256": catalog.fingerprint(),
        "efficiency": _plain(dict(eff._asdict())) if hasattr(eff, "_asdict") else str(eff),
    }
    if extra:
        meta.update(_plain(extra))
    return meta


def write_table(df: pd.DataFrame, path, meta: dict) -> Path:
    """Write `df` with `meta` to .csv (+ sidecar), .parquet/.pq (key-value metadata) or .json."""
    path = Path(path)
    suffix = path.suffix.lower()
    blob = json.dumps(_plain(meta), sort_keys=True)
    if suffix == ".csv":
        df.to_csv(path, index=False)
        Path(str(path) + SIDECAR_SUFFIX).write_text(blob + "\n", encoding="utf-8")
    elif suffix in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY.encode(): blob.encode()})
        pq.write_table(table, path)
    elif suffix == ".json":
        rows = json.loads(df.to_json(orient="records", double_precision=15))
        path.write_text(json.dumps({"meta": json.loads(blob), "rows": rows}, indent=1) + "\n", encoding="utf-8")
    else:
        raise MlsysOptError(f"output {str(path)!r}: unknown format {suffix or '(none)'!r} "
                            "(allowed: .csv, .parquet, .json)")
    return path


def load_result(path) -> LoadedResult:
    """Read a result written by `write_table` (a sweep/search front or an evaluate table) back."""
    path = Path(path)
    if not path.is_file():
        raise MlsysOptError(f"load_result: {str(path)!r}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            front = pd.read_csv(path)
            side = Path(str(path) + SIDECAR_SUFFIX)
            meta = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
        elif suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(META_KEY.encode())
            meta = json.loads(raw.decode()) if raw else {}
            front = table.to_pandas()
        elif suffix == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(doc, dict) and "rows" in doc:
                front, meta = pd.DataFrame(doc["rows"]), doc.get("meta", {})
            else:
                front, meta = pd.DataFrame(doc), {}
        else:
            raise MlsysOptError(f"load_result: {str(path)!r}: unknown format {suffix or '(none)'!r} "
                                "(allowed: .csv, .parquet, .json)")
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise MlsysOptError(f"load_result: {str(path)!r}: not a readable result file ({type(e).__name__}: {e})") from None
    return LoadedResult(front, meta, path)


__all__ = ["LoadedResult", "describe", "load_result", "write_table", "META_KEY",
           "SIDECAR_SUFFIX"]
