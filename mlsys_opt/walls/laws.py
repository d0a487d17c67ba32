"""Cross-cutting laws: Amdahl, Gustafson, Little, the Iron Law and the 6PD
training-time equation, as pure elementwise JAX functions (single arrays out).
The Iron Law and 6PD delegate to walls.analysis.iron_law and
walls.algorithm.training_flop (one implementation each); this module gives
them the names and defaults of seeds 001 and 004.

SI floats, broadcastable arguments, finite outputs (x / 0 is ``UNBOUNDED``).
Sources: seed 001 (Machine Foundations: Amdahl's and Gustafson's laws, Little's
law, the Training Time Equation), seed 000 §3 and §9, seed 002/004 (Iron Law).
"""
from __future__ import annotations

import jax.numpy as jnp

from mlsys_opt._types import Array
from mlsys_opt.walls import algorithm, analysis
from mlsys_opt.walls._masked import UNBOUNDED, nonneg, safe_div


def amdahl(serial_frac, n) -> Array:
    """Strong-scaling speedup S(n) = 1 / (s + (1 - s)/n) (Amdahl 1967; seed 001).

    serial_frac s in [0, 1]; n processors (count, may be jnp.inf: limit 1/s).
    Example: s = 0.05: n = 8 -> 5.93x; n -> inf -> 20x.
    """
    s, n_ = nonneg(serial_frac, n)
    return safe_div(jnp.ones_like(s), s + safe_div(1.0 - s, n_, fill=UNBOUNDED), fill=UNBOUNDED)


def gustafson(serial_frac, n) -> Array:
    """Weak-scaling (scaled) speedup S(n) = n - s·(n - 1) (Gustafson 1988; seed 001).

    Example: s = 0.05: n = 8 -> 7.65x; n = 1000 -> 950.05x.
    """
    s, n_ = nonneg(serial_frac, n)
    return n_ - s * (n_ - 1.0)


def little(arrival_rate_per_s, latency_s) -> Array:
    """Little's law concurrency L = λ·W, requests in the system (Little 1961; seed 001).

    arrival_rate_per_s λ (1/s), latency_s W (s).  Example: 1000 QPS × 0.05 s = 50.
    """
    lam, w = nonneg(arrival_rate_per_s, latency_s)
    return lam * w


def little_throughput_per_s(concurrency, latency_s) -> Array:
    """Little's law solved for throughput λ = L / W, 1/s (seed 001).

    Example: 24 concurrent requests (24 GB / 1 GB each) at 0.05 s -> 480 QPS.
    """
    l_, w = nonneg(concurrency, latency_s)
    return safe_div(l_, w, fill=UNBOUNDED)


def effective_flop_per_s(peak_flop_per_s, mfu, eta_scaling=1.0, goodput=1.0) -> Array:
    """Per-device delivered FLOP/s = Peak·MFU·η_scaling·Goodput (seed 000 §9).

    Example: 989e12 × 0.4 × 0.85 × 0.95 = 3.195e14 FLOP/s.
    """
    return analysis.loss_cascade(1.0, *nonneg(peak_flop_per_s, mfu, eta_scaling, goodput)).effective_flop_per_s


def iron_law_time_s(total_flop, n_devices, peak_flop_per_s, mfu, eta_scaling=1.0,
                    goodput=1.0) -> Array:
    """The Iron Law: T = FLOPs / (N·Peak·MFU·η_scaling·Goodput), s (seeds 002, 004).

    total_flop (FLOP), n_devices (count), peak_flop_per_s (per device), mfu,
    eta_scaling, goodput (fractions).
    Example: GPT-3 3.15e23 FLOP on 1024 A100s (312e12) at MFU 0.5: 1.97e6 s = 22.8 days
      (seed 000 §3: "~23 days").
    """
    return analysis.iron_law(*nonneg(total_flop, n_devices, peak_flop_per_s, mfu, eta_scaling, goodput))


def training_flop(n_params, n_tokens) -> Array:
    """C = 6·P·D, FLOP (Kaplan et al. 2020; seed 000 §3). Example: 1e9 × 20e9 -> 1.2e20."""
    return algorithm.training_flop(*nonneg(n_params, n_tokens))


def training_time_s(n_params, n_tokens, peak_flop_per_s, efficiency, n_devices=1.0) -> Array:
    """Training Time Equation T = 6·P·D / (N·X·U), s (seed 001; seed 000 §3).

    n_params P, n_tokens D (counts), peak_flop_per_s X (per device), efficiency U (MFU),
    n_devices N.
    Example (seed 001): 1B params, 20B tokens, one A100 (312e12) at 40 %:
      1.2e20 / 1.248e14 = 961,538 s = 16,026 min = 11.1 days.
    """
    return iron_law_time_s(training_flop(n_params, n_tokens), n_devices, peak_flop_per_s, efficiency)


__all__ = ["amdahl", "gustafson", "little", "little_throughput_per_s", "effective_flop_per_s",
           "iron_law_time_s", "training_flop", "training_time_s"]
