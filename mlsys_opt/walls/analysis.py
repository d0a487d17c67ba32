"""Analysis walls (21-22) and the iron law: sensitivities, inverse roofline, the master equation.

Wall 21 (Sensitivity): exact elasticities ∂ln y/∂ln x of any wall by forward-mode
autodiff, and the binding input (largest |elasticity|).
Wall 22 (Synthesis): the roofline run backwards, in closed form: bandwidth,
FLOP/s, memory and device count required to meet a target.
Iron law: T = FLOP / (N · peak · MFU · η_scaling · goodput) and its loss cascade.

Conventions: pure ``jax.numpy``/``jax``; SI floats broadcasting to ``[...]``;
jit/vmap/grad-able; finite everywhere (targets floored at 1 ns, efficiencies
at 1e-6, delivered rates at 1 FLOP/s).

Sources: seed 000 section 9; seed 002 walls 21-22 and "The Iron Law"; seed 004
cheat sheet; Williams, Waterman & Patterson (2009) roofline.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mlsys_opt._types import Array
from mlsys_opt.walls._masked import floor_pos, nonneg, safe_div

__all__ = [
    "LossCascade",
    "elasticities", "binding", "binding_name", "leaf_names",
    "iron_law", "loss_cascade",
    "required_bandwidth", "required_flop_per_s", "required_memory_bytes", "required_devices",
]

_TIME_FLOOR = 1e-9
_FRAC_FLOOR = 1e-6      # efficiency / usable-fraction floor
_RATE_FLOOR = 1.0       # FLOP/s floor of a delivered rate


# --------------------------------------------------------------------------- wall 21: sensitivity

def leaf_names(params: Any) -> tuple[str, ...]:
    """Input names in elasticity order: NamedTuple fields, or dict keys in insertion order."""
    if isinstance(params, dict):
        return tuple(params.keys())
    if hasattr(params, "_fields"):
        return tuple(params._fields)
    raise TypeError("elasticities: params must be a NamedTuple or a dict of arrays; "
                    f"got {type(params).__name__}")


def _items(params: Any) -> list[tuple[str, Any]]:
    names = leaf_names(params)
    if isinstance(params, dict):
        return [(k, params[k]) for k in names]
    return [(k, getattr(params, k)) for k in names]


def _rebuild(params: Any, values: dict[str, Any]) -> Any:
    if isinstance(params, dict):
        return {k: values[k] for k in leaf_names(params)}
    return type(params)(**values)


def _select(out: Any, field: str | None, output_index: int | None) -> Array:
    if field is not None:
        out = out[field] if isinstance(out, dict) else getattr(out, field)
    if output_index is not None:
        out = out[output_index]
    return out


def elasticities(fn: Callable[[Any], Any], params: Any, *, field: str | None = None,
                 output_index: int | None = None) -> Any:
    """Exact elasticities e_i = ∂ln y/∂ln x_i = (x_i / y) · ∂y/∂x_i of y = fn(params).

    One forward-mode pass per float input (``jax.jvp`` with a ones tangent,
    i.e. the diagonal of ``jax.jacfwd`` for the elementwise walls), so batched
    inputs give batched elasticities directly; the function is also jit- and
    vmap-able. e = -1 means "1 % more x gives 1 % less y" (y ∝ 1/x); |e| ranks
    which input binds. Integer inputs (codes, degrees given as ints) are held
    fixed and get elasticity 0. Where y = 0 the elasticity is reported as 0.

    Args:
      fn: ``fn(params) -> array | NamedTuple | dict`` (a wall or a composition).
      params: a NamedTuple or dict of inputs (scalars or arrays, ``[...]``).
      field: which field of fn's NamedTuple/dict output to differentiate.
      output_index: which element of a tuple output (or of the selected array) to use.

    Returns:
      the same container type as ``params`` holding e_i (dimensionless), each
      shaped like the broadcast of y and x_i.

    Source: seed 002 wall 21 ("∂Time/∂parameter"); mlsysim SensitivitySolver
    (which uses +10 % finite differences; these are exact derivatives).

    Worked example: the memory-bound roofline T = B / BW has e_BW = -1, e_B = +1,
    e_peak = 0, so bandwidth (tie-broken by order) binds.
    """
    items = _items(params)
    base = dict(items)

    def y_of(p: Any) -> Array:
        return _select(fn(p), field, output_index)

    y0 = y_of(params)
    out: dict[str, Array] = {}
    for name, x in items:
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            out[name] = jnp.zeros(jnp.shape(y0), dtype=jnp.result_type(float))
            continue

        def y_at(xk: Array, name: str = name) -> Array:
            vals = dict(base)
            vals[name] = xk
            return y_of(_rebuild(params, vals))

        y, dy = jax.jvp(y_at, (x,), (jnp.ones_like(x),))
        out[name] = safe_div(jnp.sign(y) * dy * x, jnp.abs(y), fill=0.0)   # y = 0: elasticity 0
    return _rebuild(params, out)


def binding(elast: Any) -> Array:
    """Index (into :func:`leaf_names`) of the largest |elasticity|, elementwise.

    Args:
      elast: the output of :func:`elasticities` (NamedTuple or dict).

    Returns:
      int32 index, ``[...]`` (ties go to the earlier input).

    Source: seed 002 wall 21 ("the parameter with the largest derivative is your bottleneck").

    Worked example: {peak: 0, bw: -1, bytes: 1} -> 1 ("bw").
    """
    vals = jnp.broadcast_arrays(*[jnp.abs(jnp.asarray(v)) for _, v in _items(elast)])
    return jnp.argmax(jnp.stack(vals, axis=0), axis=0).astype(jnp.int32)


def binding_name(elast: Any) -> Any:
    """Name of the binding input (host side, not jittable): a str, or an array of str for a batch.

    Worked example: {peak: 0, bw: -1, bytes: 1} -> "bw".
    """
    idx = np.asarray(binding(elast))
    names = np.asarray(leaf_names(elast), dtype=object)
    return str(names[idx]) if idx.ndim == 0 else names[idx]


# --------------------------------------------------------------------------- iron law

class LossCascade(NamedTuple):
    """Fleet FLOP/s after each loss factor (seed 000 section 9). Shapes ``[...]``, FLOP/s."""

    peak_flop_per_s: Array            # N · peak
    after_mfu_flop_per_s: Array       # x MFU
    after_scaling_flop_per_s: Array   # x η_scaling
    effective_flop_per_s: Array       # x goodput


def loss_cascade(n_devices: Array, peak_flop_per_s: Array, mfu_frac: Array,
                 eta_scaling_frac: Array, goodput_frac: Array) -> LossCascade:
    """Effective FLOP/s = N · peak · MFU · η_scaling · goodput, with every intermediate.

    Args:
      n_devices: N, ``[...]``.
      peak_flop_per_s: per-device peak, FLOP/s, ``[...]``.
      mfu_frac: MFU (0-1), ``[...]``.
      eta_scaling_frac: η_scaling (0-1), ``[...]``.
      goodput_frac: goodput (0-1), ``[...]``.

    Returns:
      LossCascade (FLOP/s at each stage), ``[...]``.

    Source: seed 000 section 9; seed 002 "The Iron Law".

    Worked example: 1024 A100 (312e12) at MFU 0.5, η 0.6, goodput 0.9:
    3.19e17 -> 1.60e17 -> 9.58e16 -> 8.63e16 FLOP/s (27.6 % of peak).
    """
    (n_devices, peak_flop_per_s, mfu_frac, eta_scaling_frac, goodput_frac) = nonneg(
        n_devices, peak_flop_per_s, mfu_frac, eta_scaling_frac, goodput_frac, broadcast=False)
    peak = jnp.asarray(n_devices) * peak_flop_per_s
    a = peak * mfu_frac
    b = a * eta_scaling_frac
    return LossCascade(peak_flop_per_s=peak, after_mfu_flop_per_s=a,
                       after_scaling_flop_per_s=b, effective_flop_per_s=b * goodput_frac)


def iron_law(total_flop: Array, n_devices: Array, peak_flop_per_s: Array, mfu_frac: Array,
             eta_scaling_frac: Array, goodput_frac: Array) -> Array:
    """The iron law of ML training, T = FLOP / (N · peak · MFU · η_scaling · goodput).

    The delivered rate is floored at 1 FLOP/s so a zero factor gives a huge
    finite time.

    Args:
      total_flop: work, FLOP (6PD for training), ``[...]``; the other five as in
      :func:`loss_cascade` (N, per-device peak FLOP/s, MFU, η_scaling, goodput).

    Returns:
      T, s, ``[...]``.

    Source: seed 002 "The Iron Law"; seed 004 cheat sheet; seed 000 sections 3 and 9.

    Worked example (seed 000 section 3): GPT-3, 3.15e23 FLOP on 1024 A100 at
    312e12 FLOP/s and MFU 0.5 (η = goodput = 1): 1.97e6 s ≈ 22.8 days.
    """
    (total_flop, n_devices, peak_flop_per_s, mfu_frac, eta_scaling_frac, goodput_frac) = nonneg(
        total_flop, n_devices, peak_flop_per_s, mfu_frac, eta_scaling_frac, goodput_frac, broadcast=False)
    rate = loss_cascade(n_devices, peak_flop_per_s, mfu_frac, eta_scaling_frac,
                        goodput_frac).effective_flop_per_s
    return total_flop / floor_pos(rate, _RATE_FLOOR)


# --------------------------------------------------------------------------- wall 22: synthesis

def required_bandwidth(bytes_per_token: Array, target_latency_s: Array) -> Array:
    """Inverse memory roofline, BW_req = bytes moved per token / target latency.

    Args:
      bytes_per_token: bytes read per generated token (weights + KV), bytes, ``[...]``.
      target_latency_s: per-token latency target, s, ``[...]`` (floored at 1 ns).

    Returns:
      BW_req, B/s, ``[...]``.

    Source: seed 002 wall 22; mlsysim SynthesisSolver.

    Worked example (seed 002): 140 GB at 50 ms -> 140e9 / 0.05 = 2.8e12 B/s (2.8 TB/s).
    """
    bytes_per_token, target_latency_s = nonneg(bytes_per_token, target_latency_s, broadcast=False)
    return bytes_per_token / floor_pos(target_latency_s, _TIME_FLOOR)


def required_flop_per_s(flop: Array, target_s: Array, efficiency_frac: Array) -> Array:
    """Inverse compute roofline, peak_req = F / (T_target · η).

    Args:
      flop: work to finish, FLOP, ``[...]``.
      target_s: time target, s, ``[...]`` (floored at 1 ns).
      efficiency_frac: η, achievable fraction of peak (0-1], ``[...]`` (floored at 1e-6).

    Returns:
      required peak, FLOP/s, ``[...]``.

    Source: seed 002 wall 22; mlsysim SynthesisSolver.

    Worked example: one decode token of a 70B model (2 · 70e9 = 1.4e11 FLOP) in 50 ms at η 0.5:
    1.4e11 / (0.05 · 0.5) = 5.6e12 FLOP/s.
    """
    flop, target_s, efficiency_frac = nonneg(flop, target_s, efficiency_frac, broadcast=False)
    return flop / (floor_pos(target_s, _TIME_FLOOR) * floor_pos(efficiency_frac, _FRAC_FLOOR))


def required_memory_bytes(weight_bytes: Array, kv_cache_bytes: Array = 0.0,
                          activation_bytes: Array = 0.0, *, usable_frac: Array = 1.0) -> Array:
    """Memory capacity needed, (W + KV + activations) / usable fraction.

    Args:
      weight_bytes: W, bytes, ``[...]``.
      kv_cache_bytes: KV cache, bytes (default 0), ``[...]``.
      activation_bytes: activations/workspace, bytes (default 0), ``[...]``.
      usable_frac: fraction of capacity usable after fragmentation and runtime
        reserve (default 1; e.g. 0.9), floored at 1e-6.

    Returns:
      capacity required, bytes, ``[...]``.

    Source: seed 002 walls 2, 5, 22; mlsysim SynthesisSolver (weights only).

    Worked example: 140 GB weights + 20 GB KV at 90 % usable: 160e9 / 0.9 = 177.8 GB.
    """
    (weight_bytes, kv_cache_bytes, activation_bytes, usable_frac) = nonneg(
        weight_bytes, kv_cache_bytes, activation_bytes, usable_frac, broadcast=False)
    return (weight_bytes + kv_cache_bytes + activation_bytes) / floor_pos(usable_frac, _FRAC_FLOOR)


def required_devices(total_flop: Array, target_s: Array, peak_flop_per_s: Array, mfu_frac: Array,
                     eta_scaling_frac: Array, goodput_frac: Array) -> Array:
    """Iron law solved for N: N = FLOP / (T_target · peak · MFU · η · goodput).

    Continuous (differentiable); take ``jnp.ceil`` for a device count. η and
    goodput themselves fall with N, so treat this as a lower bound or iterate.

    Args:
      total_flop: FLOP, ``[...]``.
      target_s: time target, s, ``[...]`` (floored at 1 ns).
      peak_flop_per_s: per-device peak, FLOP/s, ``[...]``.
      mfu_frac, eta_scaling_frac, goodput_frac: efficiency factors (0-1], ``[...]``.

    Returns:
      N (real-valued), ``[...]``.

    Source: seed 002 "The Iron Law"; seed 003 exercise 3.

    Worked example (seed 003 exercise 3): Llama-3 70B on 15T tokens, 6.3e24 FLOP,
    14 days on H100 (989e12) at MFU 0.4: N = 6.3e24 / (1,209,600 · 989e12 · 0.4) = 13,166.
    """
    (total_flop, target_s, peak_flop_per_s, mfu_frac, eta_scaling_frac, goodput_frac) = nonneg(
        total_flop, target_s, peak_flop_per_s, mfu_frac, eta_scaling_frac, goodput_frac, broadcast=False)
    rate = peak_flop_per_s * mfu_frac * eta_scaling_frac * goodput_frac
    return total_flop / (floor_pos(target_s, _TIME_FLOOR) * floor_pos(rate, _RATE_FLOOR))
