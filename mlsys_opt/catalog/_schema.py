"""The catalog's schema as data: every TOML field of every kind (`Field`: column, type, unit, rule, which
model kinds need or may set it) and the DataFrame column order per kind.

Split from `_load.py`, which reads and validates entries against it (the rules and messages are there).
"""
from __future__ import annotations

from typing import Any, NamedTuple

from .._types import MODEL_KINDS, PRECISIONS, TOPOLOGIES
from ._files import KINDS  # noqa: F401  (re-exported)
from .achievable import ACHIEVABLE_COLUMNS  # issue 19: achievable-rate columns, after ridge

SEGMENTS: tuple[str, ...] = ("datacenter", "edge", "mobile", "tiny")
SCOPES: tuple[str, ...] = ("scale_up", "scale_out")
SCALEUP_TOPOLOGIES: tuple[str, ...] = ("switch", "mesh")
DEFAULT_MTBF = "50000 hour"  # seed 000, Sec. 7.1: 50,000 h per GPU
DEFAULT_HOST_BW = "32 GB/s"  # PCIe Gen4 x16, one direction (PCI-SIG: 16 GT/s x 16 lanes, 128b/130b)
_ALL = None  # "allowed for every model kind"


class Field(NamedTuple):
    """One TOML field: its column, type and rule.

    type: "qty" (units.parse with `dim`), "int", "float" (plain number), "str",
    "enum", "aliases", "year", "peak", "bool" (true / false).  rule: "pos" (> 0), "nonneg" (>= 0),
    "ge1" (>= 1), "frac" (in (0, 1]).  required: True, False, or the model kinds
    that require it; allowed: None (all kinds) or the model kinds that may set it.
    """

    key: str
    column: str | None
    type: str
    dim: str = ""
    rule: str = ""
    required: bool | tuple[str, ...] = True
    default: Any = None
    choices: tuple[str, ...] = ()
    allowed: tuple[str, ...] | None = _ALL
    example: str = ""


def _common() -> list[Field]:
    return [
        Field("display_name", "display_name", "str"),
        Field("aliases", "aliases", "aliases", required=False, default=[]),
        Field("year", "year", "year"),
        Field("source", "source", "str"),
        Field("notes", "notes", "str", required=False, default=""),
    ]


_TF = ("transformer", "moe")


def _achievable(kind: str) -> list[Field]:
    """Optional achievable-rate fields (issue 19): catalog/achievable.py defines and resolves them."""
    from .achievable import schema_fields
    return [Field(*f) for f in schema_fields(kind)]


SCHEMA: dict[str, list[Field]] = {
    "accelerators": _common() + [
        Field("vendor", "vendor", "str"),
        Field("segment", "segment", "enum", choices=SEGMENTS),
        Field("peak", None, "peak"),
        Field("mem_capacity", "mem_capacity_bytes", "qty", "bytes", "pos"),
        Field("mem_bw", "mem_bw_bytes_per_s", "qty", "bandwidth", "pos"),
        Field("sram", "sram_bytes", "qty", "bytes", "pos"),
        Field("tdp", "tdp_w", "qty", "power", "pos"),
        Field("scaleup_bw", "scaleup_bw_bytes_per_s", "qty", "bandwidth", "nonneg"),
        Field("accelerators_per_node", "accelerators_per_node", "int", rule="pos"),
        # MESH: how the node's accelerators are wired: "switch" (NVSwitch, ICI torus: every in-node group reaches
        # the whole scaleup_bw) or "mesh" (direct all-to-all links, MI300X Infinity Fabric, Gaudi RoCE: a group
        # of k of the node's n reaches (k - 1)/(n - 1) of it; scenarios.parts.group_link_bw)
        Field("scaleup_topology", "scaleup_topology", "enum", required=False, default="switch",
              choices=SCALEUP_TOPOLOGIES),
        Field("price", "price_usd", "qty", "usd", "pos"),
        Field("cloud_price", "cloud_usd_per_hour", "qty", "usd_per_hour", "pos"),
        Field("price_source", "price_source", "str"),
        Field("mtbf", "mtbf_s", "qty", "time", "pos", required=False, default=DEFAULT_MTBF),
        Field("injection_bw", "injection_bw_bytes_per_s", "qty", "bandwidth", "pos", required=False),
        Field("host_bw", "host_bw_bytes_per_s", "qty", "bandwidth", "pos", required=False,
              default=DEFAULT_HOST_BW),
    ] + _achievable("accelerators"),
    "models": _common() + [
        Field("kind", "kind", "enum", choices=MODEL_KINDS),
        Field("params", "n_params", "qty", "params", "pos"),
        Field("active_params", "n_active_params", "qty", "params", "pos", required=("moe",)),
        Field("layers", "n_layers", "int", rule="pos"),
        Field("hidden", "hidden_dim", "int", rule="pos", required=_TF, default=0, allowed=_TF),
        Field("heads", "n_heads", "int", rule="pos", required=_TF, default=0, allowed=_TF),
        Field("kv_heads", "n_kv_heads", "int", rule="pos", required=_TF, default=0, allowed=_TF),
        Field("head_dim", "head_dim", "int", rule="pos", required=_TF, default=0, allowed=_TF),
        # MLA (DeepSeek-V2/V3): elements cached per token per layer; 0 = 2·kv_heads·head_dim.
        Field("kv_latent_dim", "kv_latent_dim", "int", rule="nonneg", required=False, default=0, allowed=_TF),
        Field("ffn_dim", "ffn_dim", "int", rule="pos", required=_TF, default=0, allowed=_TF),
        Field("vocab", "vocab_size", "int", rule="pos", required=_TF, default=0, allowed=_TF),
        Field("context", "context_len", "int", rule="pos", required=_TF, default=0, allowed=_TF),
        Field("experts", "n_experts", "int", rule="pos", required=("moe",), default=1, allowed=("moe",)),
        Field("top_k", "top_k", "int", rule="pos", required=("moe",), default=1, allowed=("moe",)),
        Field("flop_per_sample", "flop_per_sample", "qty", "flop", "pos", required=("cnn",),
              default=0.0, allowed=("cnn",)),
        # DSV3 (issue 12): optional shapes of MLA / shared experts / leading dense layers / MTP, 0 = absent
        # (catalog/shapes.py; DeepSeek-V3 HF config.json names in the comments of models.toml)
        *(Field(k, k, "int", rule="nonneg", required=False, default=0, allowed=_TF)
          for k in ("q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "v_head_dim", "mtp_layers")),
        *(Field(k, k, "int", rule="nonneg", required=False, default=0, allowed=("moe",))
          for k in ("dense_layers", "dense_ffn_dim", "shared_experts")),
        # EMBED (issue 12): input embedding shared with the LM head (HF config.json tie_word_embeddings);
        # default true = the matrix counted once, as the LM-head GEMM (catalog/shapes.py untied_embedding_params)
        Field("tied_embeddings", "tied_embeddings", "bool", required=False, default=True, allowed=_TF),
    ],
    "fabrics": _common() + [
        Field("scope", "scope", "enum", choices=SCOPES),
        Field("bw", "bw_bytes_per_s", "qty", "bandwidth", "pos"),
        Field("latency", "latency_s", "qty", "time", "pos"),
        Field("topology", "topology", "enum", choices=TOPOLOGIES),
        Field("bisection_frac", "bisection_frac", "float", rule="frac"),
        Field("oversubscription", "oversubscription", "float", rule="ge1"),
    ] + _achievable("fabrics"),
    "regions": _common() + [
        Field("carbon_intensity", "carbon_gco2e_per_kwh", "qty", "carbon_intensity", "nonneg"),
        Field("pue", "pue", "float", rule="ge1"),
        Field("wue", "wue_l_per_kwh", "qty", "water_per_energy", "nonneg"),
        Field("electricity_price", "electricity_usd_per_kwh", "qty", "usd_per_kwh", "pos"),
    ],
}

PEAK_COLUMNS = tuple(f"peak_{p}_flop_per_s" for p in PRECISIONS)
HAS_COLUMNS = tuple(f"has_{p}" for p in PRECISIONS)

# DataFrame column order per kind (name first, provenance last).
COLUMNS: dict[str, tuple[str, ...]] = {
    "accelerators": ("name", "display_name", "vendor", "segment", "year", *PEAK_COLUMNS, *HAS_COLUMNS,
                     "mem_capacity_bytes", "mem_bw_bytes_per_s", "sram_bytes", "tdp_w",
                     "scaleup_bw_bytes_per_s", "accelerators_per_node", "scaleup_topology", "price_usd", "cloud_usd_per_hour",
                     "mtbf_s", "injection_bw_bytes_per_s", "host_bw_bytes_per_s", "is_wafer_scale", "ridge_flop_per_byte",
                     *ACHIEVABLE_COLUMNS["accelerators"], "aliases", "price_source", "source", "notes"),
    "models": ("name", "display_name", "kind", "year", "n_params", "n_active_params", "n_layers",
               "hidden_dim", "n_heads", "n_kv_heads", "head_dim", "kv_latent_dim", "ffn_dim", "vocab_size",
               "context_len", "n_experts", "top_k", "flop_per_sample", "q_lora_rank", "kv_lora_rank",
               "qk_rope_head_dim", "v_head_dim", "mtp_layers", "dense_layers", "dense_ffn_dim", "shared_experts",
               "core_head_dim", "mtp_active_params", "tied_embeddings", "untied_embedding_params",
               "aliases", "source", "notes"),
    "fabrics": ("name", "display_name", "scope", "year", "bw_bytes_per_s", "latency_s", "topology",
                "bisection_frac", "oversubscription", *ACHIEVABLE_COLUMNS["fabrics"], "aliases", "source", "notes"),
    "regions": ("name", "display_name", "year", "carbon_gco2e_per_kwh", "pue", "wue_l_per_kwh",
                "electricity_usd_per_kwh", "aliases", "source", "notes"),
}

# SI column name -> (TOML key, units dimension), accepted in dict overrides with a bare SI float.
_COLUMN_KEYS: dict[str, dict[str, tuple[str, str]]] = {
    kind: {f.column: (f.key, f.dim) for f in fields if f.type == "qty" and f.column}
    for kind, fields in SCHEMA.items()
}
