"""The catalog: hardware, models, fabrics and regions with provenance.

Data lives in human-editable TOML next to this file (``accelerators.toml``,
``models.toml``, ``fabrics.toml``, ``regions.toml``); units are strings read by
`mlsys_opt.units.parse`, every entry has a ``source``.  `load_catalog()`
validates everything once (see ``_load.py`` for the rules and messages) and
gives a `Catalog`:

>>> cat = load_catalog()
>>> i = cat.index("accelerators", "H100")          # -> row of 'h100_sxm'
>>> cat.frames["accelerators"].loc[i, "mem_bw_bytes_per_s"]
3350000000000.0
>>> t = cat.tables()                                 # jnp struct-of-arrays, float32
>>> t.hw.mem_bw_bytes_per_s[i]                       # gathered by integer row inside jit

User entries override by name (field by field) and extend, from a dict or a
TOML file of their own, validated the same way; errors name the user's file:

>>> mine = cat.with_entries("accelerators", {"h100_sxm": {"price": "25000 USD"},
...                                          "h100_cheap": {"based_on": "h100_sxm", "price": "20000 USD",
...                                                         "source": "my quote"}})

Row order is stable: built-in rows keep their index when entries are
overridden or appended, so integer indices in a jitted sweep stay valid.
"""
from __future__ import annotations

import copy
import difflib
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .. import validate
from .._types import MODEL_KINDS, TOPOLOGIES
from ..errors import CatalogError
from . import _cached, _load, achievable
from ._load import COLUMNS, KINDS, kind_of
from .tables import AcceleratorTable, FabricTable, ModelTable, RegionTable, Tables

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["KINDS", "Catalog", "load_catalog", "Tables", "AcceleratorTable", "ModelTable",
           "FabricTable", "RegionTable"]

_DATA_DIR = Path(__file__).resolve().parent
_FILES = {kind: f"{kind}.toml" for kind in KINDS}


def _merge(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Field-by-field override; the peak table merges per precision."""
    out = copy.deepcopy(dict(base))
    for key, value in new.items():
        if key == "peak" and isinstance(value, Mapping) and isinstance(out.get("peak"), Mapping):
            out["peak"] = {**out["peak"], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


class Catalog:
    """Validated catalog: per kind, raw entries, SI rows, DataFrames and lookups.

    Build it with `load_catalog`; it is immutable (`with_entries` returns a new one).
    """

    def __init__(self, raw: dict[str, dict[str, dict]], rows: dict[str, dict[str, dict]],
                 labels: dict[str, dict[str, str]]):
        self._raw = raw        # kind -> name -> raw TOML-level fields (for merging)
        self._rows = rows      # kind -> name -> {column: SI value}
        self._labels = labels  # kind -> name -> file/dict label the entry came from
        self._frames: dict[str, pd.DataFrame] = {}      # built on first use (pandas: ~0.4 s to import)
        self._lookup: dict[str, dict[str, int]] = {}
        for kind in KINDS:
            self._lookup[kind] = _load.check_names(kind, list(rows[kind].values()), labels[kind])
        self._tables: dict[str, Tables] = {}
        self._fingerprint: str | None = None

    # ------------------------------------------------------------ queries
    def _frame(self, kind: str) -> pd.DataFrame:
        """The DataFrame of `kind` (this catalog's own, not a copy), built on first use."""
        if kind not in self._frames:
            import pandas as pd
            self._frames[kind] = pd.DataFrame(list(self._rows[kind].values()), columns=list(COLUMNS[kind]))
        return self._frames[kind]

    @property
    def frames(self) -> dict[str, pd.DataFrame]:
        """kind -> DataFrame (a copy: SI columns with unit suffixes, name, display_name, source, ...)."""
        return {kind: self._frame(kind).copy() for kind in KINDS}

    def rows(self, kind: str) -> list[dict[str, Any]]:
        """The entries of `kind` in row order as dicts {column: SI value} (copies; no pandas needed)."""
        return [dict(r) for r in self._rows[kind_of(kind)].values()]

    def names(self, kind: str) -> list[str]:
        """Entry slugs of `kind` in row order (row i of frames/tables)."""
        return list(self._rows[kind_of(kind)])

    def index(self, kind: str, name: str) -> int:
        """Row of `name` in `kind`: slug, display name or alias, case/punctuation-insensitive.

        index("accelerators", "H100") == index("accelerators", "h100_sxm").
        Raises CatalogError with a suggestion on a miss.
        """
        kind = kind_of(kind)
        key = _load.norm_key(name)
        lookup = self._lookup[kind]
        if key in lookup:
            return lookup[key]
        choices = self.names(kind)
        close = difflib.get_close_matches(key, list(lookup), n=1, cutoff=0.6) if key else []
        hint = f"; did you mean '{choices[lookup[close[0]]]}'?" if close else _load.hint(str(name), choices)
        raise CatalogError(f"{name!r} is not a known {kind[:-1]}{hint} "
                           f"(allowed: {', '.join(choices)})")

    def entry(self, kind: str, name: str) -> pd.Series:
        """The DataFrame row of `name` (a copy), indexed by column."""
        kind = kind_of(kind)
        row = self._frame(kind).iloc[self.index(kind, name)].copy()
        row.name = row["name"]
        return row

    def fingerprint(self) -> str:
        """SHA-256 of every entry (names, row order, every SI field; ``catalog._load.fingerprint``):
        the one catalog fingerprint, in result metadata and checkpoint run keys."""
        if self._fingerprint is None:
            self._fingerprint = _load.fingerprint(self._rows)
        return self._fingerprint

    def source_of(self, kind: str, name: str) -> str:
        """The file (or dict label) that defined entry `name`."""
        kind = kind_of(kind)
        return self._labels[kind][self.names(kind)[self.index(kind, name)]]

    def tables(self, dtype: Any = "float32") -> Tables:
        """Device-resident struct-of-arrays (catalog/tables.py); floats in `dtype`, codes int32, flags bool.

        dtype: float32 or float64 (MlsysOptError otherwise: ints truncate, float16 overflows the FLOP/s peaks).
        """
        key = validate.check_float_dtype("dtype", dtype, "Catalog.tables()").name
        if key not in self._tables:
            import jax
            # concrete arrays even when first asked for inside a jit trace (device_put there would
            # give tracers, kept in this cache and leaked into every later call)
            with jax.ensure_compile_time_eval():
                self._tables[key] = _build_tables({k: self._frame(k) for k in KINDS}, key, self._rows)
        return self._tables[key]

    # ------------------------------------------------------------ user entries
    def with_entries(self, kind: str, entries: Mapping[str, Any] | str | Path) -> "Catalog":
        """A new Catalog with `entries` of `kind` overriding (by name, field by field) and extending.

        entries: {name: {field: value}} or a TOML file of [name] tables (or of
        [kind.name] tables of this kind).  A name that `index` resolves (slug,
        display name, alias: "H100") overrides that entry.  A new name needs every required field,
        or ``based_on = "<existing name>"`` to start from a copy of that entry.
        SI column names with bare floats are accepted too ({"mem_bw_bytes_per_s": 4e12}).
        Errors name the user's file (or "<kind> (dict)").
        """
        kind = kind_of(kind)
        new_entries, label = _load.entries_from(entries, kind)
        raw = {k: dict(v) for k, v in self._raw.items()}
        rows = {k: dict(v) for k, v in self._rows.items()}
        labels = {k: dict(v) for k, v in self._labels.items()}
        for name, fields in new_entries.items():
            fields = achievable.mark_user(kind, _load.apply_si_columns(kind, fields), label)
            base_name = fields.pop("based_on", None)
            if name not in raw[kind] and base_name is None:
                # {"H100": {...}} overrides h100_sxm: names resolve like index() does.
                j = self._lookup[kind].get(_load.norm_key(name))
                name = self.names(kind)[j] if j is not None else name
            if name in raw[kind]:
                if base_name is not None:
                    raise CatalogError(f"{label}: [{name}] based_on: {name!r} already exists; "
                                       "override its fields directly")
                merged = _merge(raw[kind][name], fields)
                if "source" not in fields:
                    merged["source"] = f"{raw[kind][name]['source']} [overridden by {label}: " \
                                       f"{', '.join(sorted(fields)) or 'nothing'}]"
            elif base_name is not None:
                try:
                    base_key = self.names(kind)[self.index(kind, str(base_name))]
                except CatalogError as exc:
                    raise CatalogError(f"{label}: [{name}] based_on: {exc}") from None
                base = {k: v for k, v in raw[kind][base_key].items() if k not in ("aliases", "display_name")}
                base = achievable.as_family(kind, base, base_key)
                merged = _merge(base, fields)
                merged.setdefault("display_name", name)
                if "source" not in fields:
                    merged["source"] = f"based on {base_key} ({raw[kind][base_key]['source']}) " \
                                       f"with {', '.join(sorted(fields)) or 'no changes'} from {label}"
            else:
                merged = fields
            rows[kind][name] = _load.validate_entry(kind, name, merged, label)
            raw[kind][name] = merged
            labels[kind][name] = label
        return Catalog(raw, rows, labels)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(self._rows[k])}" for k in KINDS)
        return f"Catalog({sizes})"


def _build_tables(frames: Mapping[str, pd.DataFrame], dtype: Any, rows: Mapping[str, Mapping] | None = None) -> Tables:
    import jax                       # here, not at the top: `mlsys-opt catalog` runs without JAX

    # built in numpy, put on the device at the end: a dtype conversion or a list stacked by jnp
    # would run (and compile) one small XLA program per column at start-up
    def f(frame: pd.DataFrame, col: str) -> np.ndarray:
        return frame[col].to_numpy(dtype=np.float64).astype(dtype)

    def arr(kind: str, key: str) -> np.ndarray:   # achievable arrays, stacked in row order
        return np.stack([np.asarray(r[key], np.float64) for r in rows[kind].values()]).astype(dtype)

    a, m, fb, r = (frames[k] for k in KINDS)
    hw = AcceleratorTable(
        peak_flop_per_s=a[list(_load.PEAK_COLUMNS)].to_numpy(dtype=np.float64).astype(dtype),
        has_precision=a[list(_load.HAS_COLUMNS)].to_numpy(dtype=bool),
        mem_capacity_bytes=f(a, "mem_capacity_bytes"),
        mem_bw_bytes_per_s=f(a, "mem_bw_bytes_per_s"),
        sram_bytes=f(a, "sram_bytes"),
        tdp_w=f(a, "tdp_w"),
        scaleup_bw_bytes_per_s=f(a, "scaleup_bw_bytes_per_s"),
        accelerators_per_node=f(a, "accelerators_per_node"),
        scaleup_mesh=(a["scaleup_topology"] == "mesh").to_numpy(dtype=bool),
        price_usd=f(a, "price_usd"),
        cloud_usd_per_hour=f(a, "cloud_usd_per_hour"),
        mtbf_s=f(a, "mtbf_s"),
        injection_bw_bytes_per_s=f(a, "injection_bw_bytes_per_s"),
        is_wafer_scale=a["is_wafer_scale"].to_numpy(dtype=bool),
        host_bw_bytes_per_s=f(a, "host_bw_bytes_per_s"),
        sustained_mem_bw_frac=f(a, "sustained_mem_bw_frac"),
        gemm_eff=arr("accelerators", "ach_gemm_eff"),
        attention_fwdbwd_eff=arr("accelerators", "ach_attention_fwdbwd_eff"),
        attention_fwd_eff=arr("accelerators", "ach_attention_fwd_eff"),
        scaleup_busbw_frac=f(a, "scaleup_busbw_frac_large"),
        scaleup_step_latency_s=f(a, "scaleup_allreduce_step_latency_s"),
        scaleup_busbw_curve=arr("accelerators", "ach_scaleup_busbw_curve"),
        scaleup_has_busbw=a["scaleup_busbw_frac_large"].to_numpy(np.float64) > 0,
        scaleup_has_latency=a["scaleup_allreduce_step_latency_s"].to_numpy(np.float64) > 0,
        scaleup_busbw_frac_ring=arr("accelerators", "ach_scaleup_busbw_frac_ring"),
        attention_cudnn_fwdbwd_eff=arr("accelerators", "ach_attention_cudnn_fwdbwd_eff"),   # ATTNKERNEL
    )
    model = ModelTable(
        kind=np.asarray([MODEL_KINDS.index(k) for k in m["kind"]], dtype=np.int32),
        n_params=f(m, "n_params"), n_active_params=f(m, "n_active_params"), n_layers=f(m, "n_layers"),
        hidden_dim=f(m, "hidden_dim"), n_heads=f(m, "n_heads"), n_kv_heads=f(m, "n_kv_heads"),
        head_dim=f(m, "head_dim"), kv_latent_dim=f(m, "kv_latent_dim"), ffn_dim=f(m, "ffn_dim"),
        vocab_size=f(m, "vocab_size"),
        context_len=f(m, "context_len"), n_experts=f(m, "n_experts"), top_k=f(m, "top_k"),
        flop_per_sample=f(m, "flop_per_sample"),
        **{k: f(m, k) for k in ModelTable._fields[ModelTable._fields.index("q_lora_rank"):]},   # DSV3 shape columns
    )
    fabric = FabricTable(
        bw_bytes_per_s=f(fb, "bw_bytes_per_s"), latency_s=f(fb, "latency_s"),
        topology=np.asarray([TOPOLOGIES.index(t) for t in fb["topology"]], dtype=np.int32),
        bisection_frac=f(fb, "bisection_frac"), oversubscription=f(fb, "oversubscription"),
        busbw_frac=f(fb, "busbw_frac_large"), step_latency_s=f(fb, "allreduce_step_latency_s"),
        busbw_curve=arr("fabrics", "ach_busbw_curve"),
        has_busbw=fb["busbw_frac_large"].to_numpy(np.float64) > 0,
        has_step_latency=fb["allreduce_step_latency_s"].to_numpy(np.float64) > 0,
    )
    region = RegionTable(
        carbon_gco2e_per_kwh=f(r, "carbon_gco2e_per_kwh"), pue=f(r, "pue"),
        wue_l_per_kwh=f(r, "wue_l_per_kwh"), electricity_usd_per_kwh=f(r, "electricity_usd_per_kwh"),
    )
    return jax.device_put(Tables(hw=hw, model=model, fabric=fabric, region=region))   # (jnp.asarray compiles a copy)


@functools.lru_cache(maxsize=1)
def _default_catalog() -> Catalog:
    raw: dict[str, dict[str, dict]] = {}
    labels: dict[str, dict[str, str]] = {}
    for kind in KINDS:
        label = _FILES[kind]
        entries, _ = _load.entries_from(_DATA_DIR / label, kind)
        for name, fields in achievable.builtin_fields(kind).items():   # issue 19: achievable.toml
            if name not in entries:
                raise CatalogError(f"{achievable.PATH.name}: [{kind}.{name}] is not an entry of {label}")
            entries[name] = {**fields, **entries[name]}
        raw[kind] = entries
        labels[kind] = {name: label for name in entries}

    def validate_all() -> dict[str, dict[str, dict]]:
        return {kind: {name: _load.validate_entry(kind, name, fields, _FILES[kind]) for name, fields in raw[kind].items()}
                for kind in KINDS}
    # the validated rows come from the on-disk cache when these files were validated before (no pint)
    files = [_DATA_DIR / _FILES[kind] for kind in KINDS] + [achievable.PATH]
    rows = _cached.cached_rows(files, validate_all, _load.fingerprint)
    return Catalog(raw, rows, labels)


def load_catalog(extra: Mapping[str, Any] | str | Path | None = None) -> Catalog:
    """The built-in catalog (cached), plus `extra` user entries.

    extra: None; a TOML file path whose tables are ``[accelerators.my_chip]``,
    ``[models.my_model]``, ...; or a dict {kind: {name: fields} or path}.
    Raises CatalogError (one message naming file, entry and field) on bad data.
    """
    cat = _default_catalog()
    if extra is None:
        return cat
    if isinstance(extra, (str, Path)):
        label = str(extra)
        data = _load.read_toml(extra, label)
        for kind, entries in data.items():
            if kind_of_or_none(kind) is None or not isinstance(entries, Mapping):
                raise CatalogError(f"{label}: [{kind}] is not a catalog kind{_load.hint(kind, KINDS)} "
                                   f"(allowed top-level tables: {', '.join(KINDS)})")
            cat = cat.with_entries(kind_of(kind), _Labelled(entries, label))
        return cat
    if not isinstance(extra, Mapping):
        raise CatalogError(f"load_catalog(extra=...) takes a TOML path or a dict of kind -> entries, "
                           f"got {type(extra).__name__}")
    for kind, entries in extra.items():
        cat = cat.with_entries(kind_of(kind), entries)
    return cat


def kind_of_or_none(kind: str) -> str | None:
    try:
        return kind_of(kind)
    except CatalogError:
        return None


class _Labelled(dict):
    """A dict of entries that remembers the file it came from (for error messages)."""

    def __init__(self, data: Mapping[str, Any], label: str):
        super().__init__(data)
        self.label = label
