"""Where a training step's time goes: the scenario's step time split into its terms (`breakdown`).

The audit (`mlsys-opt evaluate`), `mlsys-opt validate --measurements` and `benchmarks/validation.py`
(under the rows that miss most) print it: the question "what binds my design?" asked of the step itself.  Same model as
`training.training`: the micro-batch size the scenario chose, then its setup, memory, compute and
communication (`training_parts`, `training_comm`) evaluated at that size.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._compile import jit_options
from .._types import Array
from ..catalog.tables import Tables
from ..walls._masked import floor_pos
from . import training_comm as tcomm
from . import training_parts as tparts
from .efficiency import DEFAULT_EFFICIENCY, Efficiency
from .training import TrainingParams, micro_batch_geometry, training, training_common


class TrainingBreakdown(NamedTuple):
    """One step's time, s, per GPU of the slowest stage (every field shaped like the batch).

    step_s = compute_s + bubble_s + tp_s + cp_s + ep_s + pp_s + dp_exposed_s + optimizer_s + straggler_s;
    compute_s = gemm_s + lm_head_s + attention_s + elementwise_s.
    """
    step_s: Array
    compute_s: Array        # the kernels: bubble and exposed communication excluded
    gemm_s: Array           # the blocks' GEMMs (with their share of dispatch and memory-bound excess)
    lm_head_s: Array        # the output layer's GEMMs (16-bit even in FP8 runs)
    attention_s: Array      # the attention core (FlashAttention / cuDNN curve, or eager's batched GEMMs)
    elementwise_s: Array    # memory-bound non-matmul kernels, the loss, FP8 casts
    bubble_s: Array         # pipeline fill and drain
    tp_s: Array             # exposed tensor-parallel collectives
    cp_s: Array             # exposed context-parallel exchange and merges
    ep_s: Array             # exposed expert all-to-all
    pp_s: Array             # pipeline sends
    dp_exposed_s: Array     # data-parallel / ZeRO / FSDP collectives not hidden
    dp_total_s: Array       # their whole time, hidden or not
    optimizer_s: Array      # the optimizer step's pass over its shard
    straggler_s: Array      # (straggler_factor - 1) × the rest
    micro_batch_seqs: Array
    n_microbatches: Array


def _breakdown(p: TrainingParams, tables: Tables, eff: Efficiency, options: tuple) -> TrainingBreakdown:
    opts = dict(options)
    auto = opts.get("auto_micro_batch", True)
    c = training_common(p, tables, eff)
    s = tparts.setup(p, c, eff, tables.model.vocab_size[jnp.asarray(p.model, jnp.int32)],
                     **{k: opts[k] for k in ("torch_tp", "deepspeed_engine", "param_broadcast", "dualpipe") if k in opts})
    # the scenario's choice among the candidates, or (auto_micro_batch = False) the given geometry, else 1 sequence
    b_cand = (training(p, tables, eff, **opts)[0].micro_batch_seqs if auto
              else jnp.asarray(tparts.MICRO_BATCH_CANDIDATES[0], c.peak.dtype))
    b, _, mb = micro_batch_geometry(p, s, b_cand)
    mem = tparts.memory(p, c, s, b, mb)
    cmp = tparts.compute(p, c, eff, s, mem, b, mb)
    cm = tcomm.communication(p, c, eff, s, cmp, b, mb,
                             **{k: opts[k] for k in ("context_parallel", "torch_tp", "deepspeed_engine") if k in opts})
    t_gemm, t_head, t_attn = tparts.kernel_times(cmp.eta_gemm, c, eff, s)
    matmul = cmp.t_compute_s - cmp.t_elem_s
    total = floor_pos(t_gemm + t_head + t_attn, 1e-30)
    healthy = (cmp.t_compute_s + cm.t_bubble_s + cm.t_tp_s + cm.t_cp_s + cm.t_ep_s + cm.t_pp_s + cm.t_dp_exposed_s
               + s.optimizer_update_s)
    return TrainingBreakdown(
        step_s=cm.step_s, compute_s=cmp.t_compute_s, gemm_s=matmul * t_gemm / total,
        lm_head_s=matmul * t_head / total, attention_s=matmul * t_attn / total, elementwise_s=cmp.t_elem_s,
        bubble_s=cm.t_bubble_s, tp_s=cm.t_tp_s, cp_s=cm.t_cp_s, ep_s=cm.t_ep_s, pp_s=cm.t_pp_s,
        dp_exposed_s=cm.t_dp_exposed_s, dp_total_s=cm.t_dp_s, optimizer_s=s.optimizer_update_s,
        straggler_s=cm.step_s - healthy, micro_batch_seqs=b, n_microbatches=mb)


@functools.cache
def _compiled(options: tuple):
    return jax.jit(functools.partial(_breakdown, options=options), **jit_options())


def breakdown(p: TrainingParams, tables: Tables, eff: Efficiency = DEFAULT_EFFICIENCY, **options) -> TrainingBreakdown:
    """The terms of `training`'s step_time_s for each configuration (jitted).  The terms sum to step_s.

    options: `training`'s static keyword options (`scenarios.static_options`).  auto_micro_batch = True
    (the default) evaluates `training` first for the micro-batch size it chooses; False takes the given
    geometry (b = 1 sequence where neither micro_batch_size nor microbatches is given) and skips that
    evaluation: the audit passes the evaluated row's micro_batch_seqs as micro_batch_size, with the
    row's own options (~0.5 s of tracing per CLI call instead of ~1.4 s).
    """
    return _compiled(tuple(sorted((k, bool(v)) for k, v in options.items())))(p, tables, eff)


# the parts in the order the audit and the validation report print them: (field, label)
PARTS = (("gemm_s", "GEMMs"), ("attention_s", "attention"), ("lm_head_s", "LM head"),
         ("elementwise_s", "elementwise"), ("bubble_s", "bubble"), ("tp_s", "TP"), ("cp_s", "CP"),
         ("ep_s", "EP"), ("pp_s", "PP sends"), ("dp_exposed_s", "DP exposed"), ("optimizer_s", "optimizer"),
         ("straggler_s", "straggler"))


def format_breakdown(bd: TrainingBreakdown, i: int = 0, *, min_frac: float = 0.005) -> str:
    """'12.9 s = GEMMs 3.1 + attention 8.2 + ... (DP 2.0 of which 0.4 exposed)': one configuration's
    step, parts under min_frac of it left out (the split of the communication terms named)."""
    at = lambda field: float(np.ravel(np.asarray(getattr(bd, field)))[i])       # noqa: E731  (host-side)
    step = at("step_s")
    unit, scale = ("s", 1.0) if step >= 1.0 else ("ms", 1e3)
    shown = [f"{label} {scale * at(field):,.3g}" for field, label in PARTS if abs(at(field)) >= min_frac * step]
    dp_total = at("dp_total_s")
    tail = (f" (DP collectives {scale * dp_total:,.3g} {unit}, "
            f"{100 * at('dp_exposed_s') / dp_total:.0f} % exposed)") if dp_total >= min_frac * step else ""
    return f"{scale * step:,.4g} {unit} = " + " + ".join(shown) + f" {unit}{tail}"


__all__ = ["PARTS", "TrainingBreakdown", "breakdown", "format_breakdown"]
