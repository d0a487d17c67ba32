"""Pipeline schedules: the in-flight activations of 1F1B / interleaved 1F1B and DeepSeek-V3's DualPipe.

Pure functions of the pipeline degree, virtual stages and micro-batch count (counts in, counts out);
`walls.parallel` re-exports them.
"""
from __future__ import annotations

import jax.numpy as jnp

from mlsys_opt._types import Array
from mlsys_opt.walls._masked import as_float as _f
from mlsys_opt.walls._masked import floor_pos


def interleaved_activation_factor(pp, virtual_stages, microbatches) -> Array:
    """In-flight activation memory of the first pipeline stage, in micro-batches of one stage.

    1F1B keeps min(pp, M) micro-batches in flight (Narayanan et al. 2021 §2.2); the
    interleaved schedule with V virtual stages keeps (1 + (pp-1)/(pp·V)) times more
    (Korthikanti et al. 2022 §4.2.3: L·(1 + (p-1)/(p·m)) layers' activations).
    Example: pp = 16, V = 1, M = 32: 16; V = 5: 16·(1 + 15/80) = 19.
    """
    p, v, m = _f(pp, virtual_stages, microbatches)
    p, v = floor_pos(p, 1.0), floor_pos(v, 1.0)
    inter = jnp.where(v > 1.0, 1.0 + (p - 1.0) / (p * v), 1.0)
    return jnp.minimum(p, floor_pos(m, 1.0)) * inter


# DUALPIPE: DeepSeek-V3 Technical Report (arXiv 2412.19437) §3.2.1 Table 2: bubble (PP/2 - 1)(F&B + B - 3W),
# parameters 2x, activations PP + 1, for a forward chunk F, a full backward chunk B (input and weight
# gradients), its weight-gradient part W and a pair of overlapped forward and backward chunks F&B (= F + B
# of compute: the pair overlaps communication, not compute).  With the usual B = 2F, W = B/2 (zero-bubble
# pipeline parallelism, Qi et al. 2023, whose W split DualPipe uses): F&B + B - 3W = 3F + 2F - 3F = 2F,
# i.e. 2/3 of a micro-batch slot F + B.
DUALPIPE_SLOT_FRAC = 2.0 / 3.0


def dualpipe_bubble_slots(pp) -> Array:
    """DualPipe's bubble in micro-batch slots of one stage's F + B: max(pp/2 - 1, 0)·2/3, count.

    DeepSeek-V3 Table 2: (PP/2 - 1)(F&B + B - 3W) = (PP/2 - 1)·2F with B = 2F, W = F
    (`DUALPIPE_SLOT_FRAC`); 1F1B's is (PP - 1)(F + B) = (PP - 1) slots.  Independent of the
    micro-batch count (the schedule needs M >= PP).  Example: pp = 16: 7·2/3 = 4.667 slots
    (1F1B: 15).  pp <= 2: 0.
    """
    (p,) = _f(pp)
    return jnp.maximum(0.5 * floor_pos(p, 1.0) - 1.0, 0.0) * DUALPIPE_SLOT_FRAC


def pipeline_in_flight(pp, virtual_stages, microbatches, dualpipe=0.0) -> Array:
    """Micro-batches of one stage's activations the busiest rank holds: `interleaved_activation_factor`
    (1F1B, interleaved), or with DualPipe (dualpipe = 1) min(pp + 1, M) (DeepSeek-V3 Table 2: PP + 1).
    Example: pp = 16, M = 120: 1F1B 16, DualPipe 17."""
    p, m, d = _f(pp, microbatches, dualpipe)
    return jnp.where(d > 0.5, jnp.minimum(floor_pos(p, 1.0) + 1.0, floor_pos(m, 1.0)),
                     interleaved_activation_factor(pp, virtual_stages, microbatches))


def bubble_slots(pp, virtual_stages, dualpipe=0.0) -> Array:
    """The pipeline bubble in micro-batch slots of one stage's F + B: 1F1B / interleaved (pp - 1)/V, or with
    DualPipe (dualpipe = 1) `dualpipe_bubble_slots`.  A constant dualpipe = 0 (the scenario's static option off)
    leaves a select on a constant, which XLA folds away.  Example: pp = 16, V = 2: 7.5; DualPipe: 4.667."""
    p, v, d = _f(pp, virtual_stages, dualpipe)
    return jnp.where(d > 0.5, dualpipe_bubble_slots(p), (floor_pos(p, 1.0) - 1.0) / floor_pos(v, 1.0))


__all__ = ["DUALPIPE_SLOT_FRAC", "bubble_slots", "dualpipe_bubble_slots", "interleaved_activation_factor",
           "pipeline_in_flight"]
