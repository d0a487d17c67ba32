"""Achievable rates per accelerator and fabric (issue 19): from published microbenchmarks to tables.

``accelerators.toml`` / ``fabrics.toml`` hold datasheet peaks; ``achievable.toml``
(see ``achievable_README.md``) holds what published microbenchmarks reached, as
fractions of those peaks, each with its source.  This module

1. translates ``achievable.toml`` into a few optional catalog fields per entry
   (`builtin_fields`), which the default catalog merges into its raw entries, so
   user entries override them field by field and ``based_on`` copies inherit them
   (marked ``family:<base>``, `as_family`);
2. resolves those fields of one validated row into fixed-size arrays on fixed
   grids (`resolve`), the small tables gathered inside jit like the rest of the
   catalog (``tables.AcceleratorTable`` / ``FabricTable``).

Fields a user entry may set (all optional; fractions are of the entry's own peak):

accelerators
  ``sustained_mem_bw_frac``  STREAM-triad bandwidth / ``mem_bw``;
  ``gemm_sizes`` + ``gemm_eff_<prec>``  dense GEMM efficiency at M = N = K;
  ``gemm_max_eff_<prec>``  best-shape GEMM efficiency (Bekman's MAMF);
  ``attention_seqlens`` + ``attention_fwdbwd_eff`` / ``attention_fwd_eff``
  (FlashAttention TFLOP/s / fp16 peak, head dim 128; the built-in forward+backward
  curve is FA2's causal series where it was read, since training is causal, the
  forward curve non-causal);
  ``attention_cudnn_seqlens`` + ``attention_cudnn_fwdbwd_eff`` (cuDNN fused SDPA, causal
  forward+backward; the curve training uses with ``attention_kernel = cudnn``; default: the
  part's ``attention_fwdbwd_eff`` curve) + ``attention_cudnn_provenance`` / ``_source``;
  ``scaleup_busbw_msg_bytes`` + ``scaleup_busbw_frac`` (nccl-tests all-reduce bus
  bandwidth / ``scaleup_bw`` per message size), ``scaleup_busbw_gpus``,
  ``scaleup_busbw_frac_large``, ``scaleup_allreduce_step_latency`` (α per ring step);
  ``scaleup_busbw_frac_ring_large`` (NVLink SHARP parts: the ring all-reduce fraction with
  NCCL_NVLS_ENABLE=0, the rate of the collectives NVLS does not reduce in-switch; default:
  ``scaleup_busbw_frac_large``);
  ``hbm_`` / ``gemm_`` / ``attention_`` / ``scaleup_comm_`` + ``provenance`` / ``source``.
fabrics
  ``busbw_msg_bytes`` + ``busbw_curve``, ``busbw_gpus``, ``busbw_frac_large``,
  ``busbw_frac_ring_large`` (NVLS fabrics: the ring figure), ``allreduce_step_latency``,
  ``busbw_provenance``, ``busbw_source``.

Fallback rule (the same for built-in and user entries), per quantity:
measured on the part > copied from a family member (provenance ``family:<slug>``,
written so in the data) > the documented default below (provenance ``none (...)``;
a built-in part with neither states why in ``hbm_default_reason`` /
``gemm_default_reason`` (+ ``_source``), shown as ``none (default kept: <reason>)``).

Defaults (how set):
- HBM: ``SUSTAINED_REF_FRAC`` = 0.85, the reference part's (A100-SXM4-80GB) own
  triad fraction; the efficiency model scales ``mem_bw_eff`` by frac / reference,
  so a part without data behaves exactly as before this issue.
- GEMM: a part with only MAMF maxima takes the reference curve (A100 fp16,
  cuBLASLt, Azure) rescaled to its maximum; a part with nothing takes the
  reference curve itself.  A precision without its own series uses the part's
  measured series of another precision, rescaled by the ratio of the two MAMF
  maxima when both exist: shape transfer, shown in ``gemm_method``.  Where only the
  precision itself has a MAMF (MI300X: a hipBLASLt FP8 series, a BF16 MAMF), its
  own measured maximum is used, on the reference shape as for a part with only
  maxima, rather than the other precision's fractions of peak; where neither has
  one, the other series is copied.  A measured point that timed the harness's fixed
  per-call cost rather than the kernel (doubling M = N = K, 8x the work, lengthens the
  time by less than `FLOOR_TIME_RATIO`) takes the next size's efficiency
  (`timing_floor_held`; MI300X's FP8 1024³, shown in ``gemm_method``).
- Attention: the reference part's FA2 forward+backward curve; forward = the
  forward+backward curve where no forward series exists.
- Collectives: 0 in the table = "no data"; the model then uses the global
  ``scaleup_comm_eff`` / ``scaleout_comm_eff`` and ``scaleup_latency_s`` / the
  fabric's catalog latency (the previous model).

Collective α: where a message-size curve exists, the per-ring-step latency α is
fitted (least squares in log time over the measured points, β fixed at the
large-message bus bandwidth) to t(m) = 2(n-1)·α + 2(n-1)/n · m / (β·bw), the
ring all-reduce of `walls.fleet.ring_allreduce`; the fit reproduces the curves
within a factor 1.55 at every measured size (tests/test_achievable.py).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._types import PRECISIONS
from ..errors import CatalogError
from ._files import read_toml

PATH = Path(__file__).resolve().parent / "achievable.toml"

GEMM_SIZES: tuple[float, ...] = (1024.0, 2048.0, 4096.0, 8192.0, 16384.0)   # M = N = K, log2-uniform
ATTENTION_SEQLENS: tuple[float, ...] = (512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0)
MSG_BYTES: tuple[float, ...] = tuple(float(2 ** k) for k in range(10, 35))   # 1 KiB .. 16 GiB

REFERENCE = "a100_80gb"
# The reference part's numbers (achievable.toml [accelerators.a100_80gb]; a test checks them).
# The GEMM reference is its Azure cuBLASLt FP16 sweep (``gemm_eff_fp16_azure``): the previous
# model's asymptote maps to it and parts without a series take its shape.  Since issue 12 the
# A100's *own* curve (``gemm_eff_fp16``) is per size the faster of that sweep and NVIDIA's BF16
# cuBLAS figure (0.827 at 4096, 0.929 at 8192; why: its ``gemm_eff_fp16_conditions``), so A100
# GEMMs at 8192 run 0.929/0.813 of their previous rate; no other part moves.
GEMM_REF_CURVE: tuple[float, ...] = (0.383, 0.711, 0.731, 0.813, 0.822)   # cuBLASLt fp16, Azure ND A100 v4
GEMM_REF_EFF = 0.822          # its value at 16384^3: the previous model's asymptote maps to it
GEMM_REF_MAX = 0.869          # its MAMF (Bekman), to rescale the curve to another part's maximum
SUSTAINED_REF_FRAC = 0.85     # its triad / 2.0 TB/s (Azure ND A100 v4)
ATTENTION_REF_SEQLENS: tuple[float, ...] = (2048.0, 4096.0, 8192.0, 16384.0)
ATTENTION_REF_FWDBWD: tuple[float, ...] = (0.599, 0.628, 0.644, 0.651)   # FA2 fwd+bwd hdim128, A100

GROUPS = {"accelerators": ("hbm", "gemm", "attention", "scaleup_comm"), "fabrics": ("busbw",)}
# Resolved summary columns of the DataFrames (`resolve` fills them; `catalog show` prints them).
ACHIEVABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "accelerators": ("sustained_mem_bw_frac", "gemm_eff_16k_fp16", "gemm_eff_16k_fp8", "attention_fwdbwd_eff_8k",
                     "scaleup_busbw_frac_large", "scaleup_allreduce_step_latency_s", "hbm_provenance",
                     "gemm_provenance", "attention_provenance", "scaleup_comm_provenance", "gemm_method",
                     "hbm_source", "gemm_source", "attention_source", "scaleup_comm_source"),
    "fabrics": ("busbw_frac_large", "allreduce_step_latency_s", "busbw_provenance", "busbw_source"),
}

# Scale-up all-reduce data of each accelerator: (where the curve is, provenance).
SCALEUP_SOURCE: dict[str, tuple[str, str]] = {
    "a100_80gb": ("fabrics.nvlink3", "measured"),
    "a100_40gb": ("fabrics.nvlink3", "family:a100_80gb"),
    "v100": ("fabrics.nvlink3", "family:a100_80gb"),
    "h100_sxm": ("fabrics.nvlink4", "measured"),
    "h100_96gb_500w": ("fabrics.nvlink4", "family:h100_sxm"),
    "h800": ("fabrics.nvlink4", "family:h100_sxm"),
    "h200": ("fabrics.nvlink4", "measured"),
    "b200": ("fabrics.nvlink5", "measured"),
    "gb200": ("fabrics.nvlink5", "family:b200"),
    "mi300x": ("accelerators.mi300x", "measured"),
    "mi250x": ("accelerators.mi300x", "family:mi300x"),
    "tpu_v5e": ("fabrics.tpu_ici", "measured"),
    "tpu_v4": ("fabrics.tpu_ici", "family:tpu_v5e"),
    "tpu_v5p": ("fabrics.tpu_ici", "family:tpu_v5e"),
    "tpu_v3": ("fabrics.tpu_ici", "family:tpu_v5e"),
}


# --------------------------------------------------------------------------- catalog fields

def schema_fields(kind: str) -> list[tuple]:
    """The optional fields a user entry may set, as ``_load.Field`` arguments
    (key, column, type, dimension, rule, required=False); none for other kinds."""
    def opt(key, typ="floats", rule="frac", column=None, dim=""):
        return (key, column or key, typ, dim, rule, False)
    if kind == "fabrics":
        return [opt("busbw_msg_bytes", rule="pos"), opt("busbw_curve", rule="pos"),
                opt("busbw_frac_large", "float", "pos"), opt("busbw_gpus", "int", "pos"),
                opt("busbw_frac_ring_large", "float", "pos"),
                opt("allreduce_step_latency", "qty", "pos", "allreduce_step_latency_s", "time"),
                opt("busbw_provenance", "str", ""), opt("busbw_source", "str", "")]
    if kind != "accelerators":
        return []
    return ([opt("sustained_mem_bw_frac", "float"), opt("gemm_sizes", rule="pos")]
            + [opt(f"gemm_eff_{p}") for p in PRECISIONS] + [opt(f"gemm_max_eff_{p}", "float") for p in PRECISIONS]
            + [opt("attention_seqlens", rule="pos"), opt("attention_fwdbwd_eff"), opt("attention_fwd_eff"),
               # ATTNKERNEL (issue 12): cuDNN SDPA forward+backward (causal), selected by attention_kernel = cudnn
               opt("attention_cudnn_seqlens", rule="pos"), opt("attention_cudnn_fwdbwd_eff"),
               opt("attention_cudnn_provenance", "str", ""), opt("attention_cudnn_source", "str", ""),
               opt("scaleup_busbw_msg_bytes", rule="pos"), opt("scaleup_busbw_frac", rule="pos"),
               opt("scaleup_busbw_frac_large", "float", "pos"), opt("scaleup_busbw_gpus", "int", "pos"),
               opt("scaleup_busbw_frac_ring_large", "float", "pos"),
               opt("scaleup_allreduce_step_latency", "qty", "pos", "scaleup_allreduce_step_latency_s", "time")]
            + [opt(f"{g}_{w}", "str", "") for g in GROUPS["accelerators"] for w in ("provenance", "source")])


# --------------------------------------------------------------------------- reading achievable.toml

def _src(e: Mapping[str, Any], key: str) -> str:
    parts = [e.get(f"{key}_source", ""), e.get(f"{key}_conditions", "")]
    return " -- ".join(p for p in parts if p)


def _combine(provs) -> str:
    uniq = list(dict.fromkeys(p for p in provs if p))
    if not uniq:
        return ""
    return uniq[0] if len(uniq) == 1 else "mixed: " + ", ".join(uniq)


def _accelerator(name: str, e: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "sustained_mem_bw_frac" in e:
        out["sustained_mem_bw_frac"] = e["sustained_mem_bw_frac"]
        out["hbm_provenance"] = e.get("sustained_mem_bw_provenance", e.get("provenance", ""))
        out["hbm_source"] = _src(e, "sustained_mem_bw")
    gkeys = [k for p in PRECISIONS for k in (f"gemm_eff_{p}", f"gemm_max_eff_{p}") if k in e]
    if gkeys:
        if any(k.startswith("gemm_eff_") for k in gkeys):
            out["gemm_sizes"] = e["gemm_sizes"]
        for k in gkeys:
            out[k] = e[k]
        out["gemm_provenance"] = _combine(e.get(f"{k}_provenance", "") for k in gkeys)
        out["gemm_source"] = " | ".join(dict.fromkeys(_src(e, k) for k in gkeys))
    if "attention_cudnn_fwdbwd_causal_eff_fp16_hdim128" in e:
        # ATTNKERNEL (issue 12): cuDNN's fused SDPA (Transformer Engine's F16_arbitrary_seqlen backend, PyTorch
        # SDPA's cudnn backend), causal forward+backward, half-square FLOP count: the attention_kernel = cudnn curve
        out["attention_cudnn_seqlens"] = e["attention_cudnn_seqlens"]
        out["attention_cudnn_fwdbwd_eff"] = e["attention_cudnn_fwdbwd_causal_eff_fp16_hdim128"]
        out["attention_cudnn_provenance"] = e.get("attention_cudnn_fwdbwd_causal_provenance", "")
        out["attention_cudnn_source"] = _src(e, "attention_cudnn_fwdbwd_causal")
    if "attention_fwdbwd_eff_fp16_hdim128" in e or "attention_fwdbwd_causal_eff_fp16_hdim128" in e:
        # a causal-only series (cuDNN's Blackwell benchmark runs causal only) serves training alone
        out["attention_seqlens"] = e["attention_seqlens"]
        out["attention_fwdbwd_eff"] = e.get("attention_fwdbwd_eff_fp16_hdim128")
        keys = ["attention_fwdbwd"] if "attention_fwdbwd_eff_fp16_hdim128" in e else []
        if "attention_fwdbwd_causal_eff_fp16_hdim128" in e:
            # forward+backward runs in training, which is always causal: the causal series (FA2
            # counts causal FLOPs as half the square, as walls.attention does); the forward of
            # serving prefill keeps the non-causal series where no forward series was read
            out["attention_fwdbwd_eff"] = e["attention_fwdbwd_causal_eff_fp16_hdim128"]
            if "attention_fwdbwd_eff_fp16_hdim128" in e:
                out.setdefault("attention_fwd_eff", e["attention_fwdbwd_eff_fp16_hdim128"])
            keys = ["attention_fwdbwd_causal"] + keys
        if "attention_fwd_eff_fp16_hdim128" in e:
            out["attention_fwd_eff"] = e["attention_fwd_eff_fp16_hdim128"]
            keys.append("attention_fwd")
        out["attention_provenance"] = _combine(e.get(f"{k}_provenance", "") for k in keys)
        out["attention_source"] = " | ".join(_src(e, k) for k in keys)
    elif "attention_fa2_azure_eff" in e:
        # One FA2 point (seqlen 8192, batch 2; head dim 128 on H100, 64 on A100 per the result
        # pages).  Read as forward+backward: on H100 the guide's 327.9 TFLOP/s matches the FA2
        # fwd+bwd series at 8k (335), not FA3 forward (646); on A100 179.5 vs 175 (hdim 64).
        out["attention_seqlens"] = [8192]
        out["attention_fwdbwd_eff"] = [e["attention_fa2_azure_eff"]]
        out["attention_provenance"] = e.get("attention_fa2_azure_provenance", "")
        out["attention_source"] = _src(e, "attention_fa2_azure")
    where = SCALEUP_SOURCE.get(name)
    if where is not None:
        kind, slug = where[0].split(".")
        src = data[kind][slug]
        if kind == "accelerators":
            msg, frac = src["scaleup_allreduce_msg_bytes"], src["scaleup_allreduce_busbw_frac"]
            out.update(scaleup_busbw_msg_bytes=msg, scaleup_busbw_frac=frac, scaleup_busbw_gpus=8)
            out["scaleup_comm_source"] = f"{_src(src, 'scaleup_allreduce')} (accelerators.{slug})".strip()
        else:
            fab = _fabric(slug, src)
            for a, b in (("busbw_msg_bytes", "scaleup_busbw_msg_bytes"), ("busbw_curve", "scaleup_busbw_frac"),
                         ("busbw_gpus", "scaleup_busbw_gpus"), ("busbw_frac_large", "scaleup_busbw_frac_large"),
                         ("allreduce_step_latency", "scaleup_allreduce_step_latency"),
                         ("busbw_frac_ring_large", "scaleup_busbw_frac_ring_large")):
                if a in fab:
                    out[b] = fab[a]
            out["scaleup_comm_source"] = f"fabrics.{slug}: {fab['busbw_source']}"
        out["scaleup_comm_provenance"] = where[1]
    for g in ("hbm", "gemm"):
        # no data and no family member: the documented default is kept, with the reason stated in the data
        why = e.get(f"{g}_default_reason")
        if why and f"{g}_provenance" not in out:
            out[f"{g}_provenance"] = f"none (default kept: {why})"
            out[f"{g}_source"] = e.get(f"{g}_default_source", "")
    return out


def _fabric(name: str, e: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(e.get("busbw_frac"), list):
        out.update(busbw_msg_bytes=e["msg_bytes"], busbw_curve=e["busbw_frac"], busbw_gpus=int(e["n_gpus"]))
    if "busbw_frac_large" in e:
        out["busbw_frac_large"] = e["busbw_frac_large"]
    if "busbw_frac_ring_large" in e:        # NVLink SHARP parts: the ring (NCCL_NVLS_ENABLE=0) figure
        out["busbw_frac_ring_large"] = e["busbw_frac_ring_large"]
    if "busbw_curve" not in out and "latency_s" in e and "n_gpus" in e:
        # tpu_ici: an all-gather over n chips, n - 1 steps: α per step = time / (n - 1).
        out["allreduce_step_latency"] = f"{e['latency_s'] / (int(e['n_gpus']) - 1)} s"
    if out:
        out["busbw_provenance"] = e.get("provenance", "")
        out["busbw_source"] = " -- ".join(x for x in (e.get("source", ""), e.get("conditions", ""),
                                                      e.get("busbw_frac_large_source", "")) if x)
    return out


@functools.lru_cache(maxsize=1)
def _builtin() -> dict[str, dict[str, dict[str, Any]]]:
    data = read_toml(PATH, PATH.name)
    return {"accelerators": {n: _accelerator(n, e, data) for n, e in data.get("accelerators", {}).items()},
            "fabrics": {n: _fabric(n, e) for n, e in data.get("fabrics", {}).items()}}


def builtin_fields(kind: str) -> dict[str, dict[str, Any]]:
    """name -> the catalog fields achievable.toml gives that built-in entry ({} for other kinds)."""
    return {n: dict(v) for n, v in _builtin().get(kind, {}).items()}


def raw_entry(kind: str, name: str) -> dict[str, Any]:
    """The achievable.toml table of one built-in entry, as written (sources, measured numbers)."""
    return dict(read_toml(PATH, PATH.name).get(kind, {}).get(name, {}))


# --------------------------------------------------------------------------- user entries

def _is_field(kind: str, key: str) -> str | None:
    """The group of an achievable field of `kind`, or None."""
    if kind == "accelerators":
        if key.startswith(("sustained_mem_bw", "hbm_")):
            return "hbm"
        if key.startswith("gemm_"):
            return "gemm"
        if key.startswith("attention_"):
            return "attention"
        if key.startswith("scaleup_busbw") or key.startswith(("scaleup_allreduce", "scaleup_comm_")):
            return "scaleup_comm"
    elif kind == "fabrics" and key.startswith(("busbw_", "allreduce_step")):
        return "busbw"
    return None


def mark_user(kind: str, fields: dict[str, Any], label: str) -> dict[str, Any]:
    """Fields a user sets without a provenance get ``user (<file>)`` for that quantity."""
    out = dict(fields)
    for g in {_is_field(kind, k) for k in fields} - {None}:
        out.setdefault(f"{g}_provenance", f"user ({label})")
        out.setdefault(f"{g}_source", f"user entry in {label}")
    return out


def as_family(kind: str, base: dict[str, Any], base_name: str) -> dict[str, Any]:
    """A based_on copy: quantities the base has data for become ``family:<base>``."""
    out = dict(base)
    for g in GROUPS.get(kind, ()):
        key = f"{g}_provenance"
        if key in out and not str(out[key]).startswith("none"):
            out[key] = f"family:{base_name}"
    return out


# --------------------------------------------------------------------------- resolution

def _curve(ctx: str, xkey: str, ykey: str, x, y, grid) -> np.ndarray:
    """Resample y(x) onto `grid`, linear in log2 x, flat beyond the measured ends."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape:
        raise CatalogError(f"{ctx} {ykey}: has {y.size} values but {xkey} has {x.size}; give one per size")
    if x.size > 1 and not np.all(np.diff(x) > 0):
        raise CatalogError(f"{ctx} {xkey}: must be strictly increasing, got {list(x)}")
    return np.interp(np.log2(np.asarray(grid)), np.log2(x), y)


def fit_step_latency_s(msg_bytes, busbw_frac, n_gpus: float, bw_bytes_per_s: float, frac_large: float) -> float:
    """α per ring step (s) fitting t(m) = 2(n-1)α + 2(n-1)/n·m/(β·bw) to a measured curve (log LSQ)."""
    m = np.asarray(msg_bytes, np.float64)
    n = max(float(n_gpus), 2.0)
    k = 2.0 * (n - 1.0) / n
    t = k * m / (np.asarray(busbw_frac, np.float64) * bw_bytes_per_s)
    c = k * m / (frac_large * bw_bytes_per_s)
    alphas = np.logspace(-9, -2, 3501)
    err = ((np.log(2.0 * (n - 1.0) * alphas[:, None] + c[None, :]) - np.log(t)[None, :]) ** 2).sum(axis=1)
    return float(alphas[int(np.argmin(err))])


def _gemm(row: dict[str, Any], ctx: str) -> tuple[np.ndarray, str]:
    curves = {p: row[f"gemm_eff_{p}"] for p in PRECISIONS if row.get(f"gemm_eff_{p}") is not None}
    maxes = {p: row[f"gemm_max_eff_{p}"] for p in PRECISIONS if row.get(f"gemm_max_eff_{p}") is not None}
    grid, held = {}, {}
    if curves:
        if row.get("gemm_sizes") is None:
            raise CatalogError(f"{ctx} gemm_sizes: missing (required with gemm_eff_<precision>: the M = N = K "
                               "sizes of the series, e.g. [1024, 4096, 16384])")
        for p, y in curves.items():
            y, floored = timing_floor_held(row["gemm_sizes"], y)
            grid[p] = _curve(ctx, "gemm_sizes", f"gemm_eff_{p}", row["gemm_sizes"], y, GEMM_SIZES)
            if floored:
                held[p] = floored
    out, how = np.zeros((len(PRECISIONS), len(GEMM_SIZES))), []
    ref = np.asarray(GEMM_REF_CURVE)
    for i, p in enumerate(PRECISIONS):
        series = None               # the measured series this precision's curve comes from (its own or copied)
        if p in grid:
            out[i], h, series = grid[p], "measured series", p
        elif grid and (p not in maxes or next(iter(grid)) in maxes):
            q = series = next(iter(grid))
            if p in maxes:
                out[i], h = grid[q] * maxes[p] / maxes[q], f"{q} series x MAMF {p}/{q}"
            else:
                out[i], h = grid[q], f"{q} series"
        elif maxes:     # (also: p has its own MAMF, the other series none to relate them: the MAMF wins)
            m = maxes.get(p, maxes.get("fp16", next(iter(maxes.values()))))
            src = p if p in maxes else ("fp16" if "fp16" in maxes else next(iter(maxes)))
            out[i], h = ref * m / GEMM_REF_MAX, f"{REFERENCE} fp16 shape x MAMF {src}"
        else:
            out[i], h = ref, f"default ({REFERENCE} fp16 series)"
        if series in held:
            h += (f" ({series} at {', '.join(f'{n:g}' for n in held[series])}: a timing floor, held at the next "
                  "size's efficiency)")
        how.append(f"{p}: {h}")
    return np.clip(out, 1e-3, 1.0), "; ".join(how)


# A doubling of M, N and K is 8x the work: a measured time that grows by less than this
# factor over it is a fixed per-call time of the harness (launch, synchronisation), not the
# kernel's throughput (physics: even a fully latency-hidden kernel takes 8x the tensor-core time).
FLOOR_TIME_RATIO = 1.1


def timing_floor_held(sizes, eff) -> tuple[list[float], list[float]]:
    """(eff with timing-floor points held at the next size's efficiency, the sizes so held).

    A square GEMM of size n takes t = 2n³/(eff·peak).  Where doubling the size lengthens
    the measured time by less than `FLOOR_TIME_RATIO` (the work grew 8x), the smaller
    point timed the harness's fixed per-call cost, not the kernel: as an efficiency it
    would charge a same-work GEMM of another shape (a decode step's M = batch rows) that
    fixed time.  Such a point takes the next size's efficiency (flat below the first
    point that resolves throughput, as beyond every curve's ends).  Read from the top
    down, so a run of floor points all take the first resolved value.
    Example (MI300X hipBLASLt FP8, Azure): 1024³ at 53.13 TFLOP/s is 40.4 µs, 2048³ at
    427.74 TFLOP/s is 40.2 µs: 1024 is held at 2048's 0.164 (was 0.020).
    """
    n = np.asarray(sizes, np.float64)
    e = np.asarray(eff, np.float64).copy()
    held = []
    for i in range(len(e) - 2, -1, -1):
        if n[i + 1] ** 3 / e[i + 1] < FLOOR_TIME_RATIO * n[i] ** 3 / e[i]:
            e[i] = e[i + 1]
            held.append(float(n[i]))
    return e.tolist(), sorted(held)


def resolve(kind: str, row: dict[str, Any], ctx: str) -> None:
    """Fill `row` (a validated catalog row, in place) with the resolved achievable columns and arrays.

    Scalar columns (the DataFrame shows them): accelerators ``sustained_mem_bw_frac``,
    ``gemm_eff_16k_fp16``, ``gemm_eff_16k_fp8``, ``attention_fwdbwd_eff_8k``,
    ``scaleup_busbw_frac_large`` / ``scaleup_allreduce_step_latency_s`` (0 = no data),
    ``<group>_provenance`` / ``<group>_source``, ``gemm_method``; fabrics
    ``busbw_frac_large`` / ``allreduce_step_latency_s`` (0 = no data), ``busbw_provenance``,
    ``busbw_source``.  Arrays (for the jnp tables): ``ach_*``.
    """
    if kind == "accelerators":
        none = "none (default: {})"
        if row.get("sustained_mem_bw_frac") is None:
            row["sustained_mem_bw_frac"] = SUSTAINED_REF_FRAC
            if not str(row.get("hbm_provenance") or "").startswith("none"):
                row["hbm_provenance"] = none.format(f"{REFERENCE}'s {SUSTAINED_REF_FRAC}, i.e. mem_bw_eff as before")
        row["ach_gemm_eff"], row["gemm_method"] = _gemm(row, ctx)
        if row.get("gemm_provenance") is None:
            row["gemm_provenance"] = none.format(f"{REFERENCE} fp16 series; see gemm_method")
        row["gemm_eff_16k_fp16"] = float(row["ach_gemm_eff"][PRECISIONS.index("fp16"), -1])
        row["gemm_eff_16k_fp8"] = float(row["ach_gemm_eff"][PRECISIONS.index("fp8"), -1])
        if row.get("attention_fwdbwd_eff") is not None:
            s = row.get("attention_seqlens") or [8192]
            fb = _curve(ctx, "attention_seqlens", "attention_fwdbwd_eff", s, row["attention_fwdbwd_eff"],
                        ATTENTION_SEQLENS)
        else:
            fb = _curve(ctx, "", "", ATTENTION_REF_SEQLENS, ATTENTION_REF_FWDBWD, ATTENTION_SEQLENS)
            row["attention_provenance"] = none.format(f"{REFERENCE} FA2 forward+backward")
        fw = fb if row.get("attention_fwd_eff") is None else _curve(
            ctx, "attention_seqlens", "attention_fwd_eff", row.get("attention_seqlens") or [8192],
            row["attention_fwd_eff"], ATTENTION_SEQLENS)
        row["ach_attention_fwdbwd_eff"], row["ach_attention_fwd_eff"] = fb, fw
        # ATTNKERNEL (issue 12): the cuDNN SDPA curve (attention_kernel = cudnn); a part without one keeps its
        # default curve (on b200 / gb200 that default is cuDNN's series already)
        if row.get("attention_cudnn_fwdbwd_eff") is not None:
            row["ach_attention_cudnn_fwdbwd_eff"] = _curve(
                ctx, "attention_cudnn_seqlens", "attention_cudnn_fwdbwd_eff", row.get("attention_cudnn_seqlens") or [8192],
                row["attention_cudnn_fwdbwd_eff"], ATTENTION_SEQLENS)
        else:
            row["ach_attention_cudnn_fwdbwd_eff"] = fb
            row["attention_cudnn_provenance"] = "none (default: the part's attention_fwdbwd_eff curve)"
        row["attention_fwdbwd_eff_8k"] = float(fb[ATTENTION_SEQLENS.index(8192.0)])
        _collective(row, ctx, "scaleup_", row["scaleup_bw_bytes_per_s"], "scaleup_comm",
                    "global scaleup_comm_eff / scaleup_latency_s")
        # Collectives NVLink SHARP does not accelerate (all-gather, reduce-scatter, all-to-all, send/recv:
        # NCCL runs them over the links) get the ring all-reduce fraction; where the part has no separate
        # ring figure its curve is a ring curve already (0 = same as scaleup_busbw_frac_large).
        ring = row.get("scaleup_busbw_frac_ring_large")
        row["ach_scaleup_busbw_frac_ring"] = float(ring) if ring else row["scaleup_busbw_frac_large"]
    elif kind == "fabrics":
        _collective(row, ctx, "", row["bw_bytes_per_s"], "busbw", "global scaleout_comm_eff, catalog latency",
                    latency_s=row["latency_s"])
    for g in GROUPS.get(kind, ()):
        row[f"{g}_source"] = row.get(f"{g}_source") or ""


def _collective(row, ctx, pre, bw, group, default, latency_s=0.0):
    """Bus-bandwidth curve, large-message fraction and α of one link (scale-up: pre='scaleup_')."""
    msg_key, curve_key = f"{pre}busbw_msg_bytes", (f"{pre}busbw_frac" if pre else "busbw_curve")
    large_key, alpha_col = f"{pre}busbw_frac_large", f"{pre}allreduce_step_latency_s"
    gpus = row.get(f"{pre}busbw_gpus") or 8
    large = row.get(large_key)
    alpha = row.get(alpha_col)
    if row.get(curve_key) is not None:
        if row.get(msg_key) is None:
            raise CatalogError(f"{ctx} {msg_key}: missing (required with {curve_key}: the message sizes)")
        curve = _curve(ctx, msg_key, curve_key, row[msg_key], row[curve_key], MSG_BYTES)
        large = float(row[curve_key][-1]) if large is None else large
        if alpha is None and bw > 0:
            alpha = fit_step_latency_s(row[msg_key], row[curve_key], gpus, bw, large)
    elif large is not None:
        a = alpha if alpha is not None else latency_s
        m = np.asarray(MSG_BYTES)
        k = 2.0 * (gpus - 1.0) / gpus
        # The alpha-beta curve implied by (β, α): busbw(m) = k·m / t(m).
        curve = (k * m / (2.0 * (gpus - 1.0) * a + k * m / (large * max(bw, 1.0)))) / max(bw, 1.0) \
            if a > 0 else np.full(len(MSG_BYTES), large)
    else:
        curve = np.zeros(len(MSG_BYTES))
        row[f"{group}_provenance"] = f"none (default: {default})"
    row[large_key] = 0.0 if large is None else float(large)
    row[alpha_col] = 0.0 if alpha is None else float(alpha)
    row[f"ach_{pre or ''}busbw_curve"] = curve
