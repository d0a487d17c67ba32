"""DeepSpeed's PipelineEngine (0.5-0.6, 2021-22: Megatron-DeepSpeed, BLOOM, MT-NLG, GLM-130B) vs Megatron-LM's.

Both run the same 1F1B order (DeepSpeed ``TrainSchedule`` in deepspeed/runtime/pipe/schedule.py:
stage s runs p - s forwards before its first backward, then alternates; one instruction list per
step, 2·(M + p - 1) steps), so the bubble is the same.  What differs, read from the code at v0.6.1
(microsoft/DeepSpeed tag v0.6.1) and v0.6.5 (the first tag with the BF16Optimizer that BigScience's
fork ran for BLOOM, PR #1801 "bf16+pipeline parallelism", 2022-04-19):

- p2p [pipe/p2p.py send/recv: ``dist.send`` / ``dist.recv``, blocking, ``async_op`` asserted False;
  schedule.py TrainSchedule.steps: a forward step is RecvActivation then SendGrad, a backward step
  SendActivation then RecvGrad]: the two transfers of a step run one after the other, so a stage
  waits for 4 transfers per micro-batch, where Megatron-LM's ``send_forward_recv_backward`` /
  ``send_backward_recv_forward`` (torch.distributed.batch_isend_irecv) overlap the two directions
  (2 per micro-batch, `training_comm.communication`).  Each transfer is two sends: the
  PartitionedTensor's meta tensor, then the rank's 1/t share (pipe/engine.py
  ``_exec_send_activations`` / ``_exec_send_grads`` send every tensor of the tuple
  ``(part.to_meta(), part.data(), ...)``; ``is_pipe_partitioned = is_grad_partitioned =
  is_model_parallel``, engine.py:131-132).
- all-gathers over the tensor-parallel group [utils.PartitionedTensor.full]: the received
  activation (``_exec_forward_pass``), the received gradient and the stage's own output, whose data
  was dropped after the send (``first_output.data = torch.zeros(1)``) and is re-gathered before
  ``torch.autograd.backward`` (``_exec_backward_pass``, ``if self.is_grad_partitioned``): 3 per
  micro-batch, Megatron-LM's scatter/gather 2.
- ReduceTiedGrads [engine.py ``_exec_reduce_tied_grads`` -> module.allreduce_tied_weight_gradients;
  v0.6.5: ``grad = weight._hp_grad if self.bfloat16_enabled() else weight.grad``]: the tied word
  embedding's gradient (V·h/t elements) all-reduced between the first and the last stage after the
  flush, fp32 under the BF16Optimizer, 16-bit otherwise.
- ReduceGrads after the flush [engine.py: ``self.enable_backward_allreduce = False``; the schedule
  appends ReduceTiedGrads, ReduceGrads, OptimizerStep after the last BackwardPass]: nothing of the
  data-parallel reduction overlaps compute (exposed in full).
- bf16 [v0.6.5 pipe/engine.py ``_exec_reduce_grads`` -> ``_bf16_reduce_grads`` ->
  ``buffered_allreduce_fallback(grads=self.optimizer.get_grads_for_reduction())``, the fp32 hp
  gradients; bf16_optimizer.py step() -> ``all_gather_dp_groups`` of the bf16 partitions]: an fp32
  all-reduce of the gradients + a 16-bit all-gather of the parameters, where ZeRO-1 reduce-scatters.

All functions are pure jnp, branch-free, float32-safe and jit/vmap/grad-able.
"""
from __future__ import annotations

import jax.numpy as jnp

from mlsys_opt._types import Array
from mlsys_opt.walls import fleet, parallel
from mlsys_opt.walls._masked import as_float as _f
from mlsys_opt.walls._masked import floor_pos

SENDS_PER_TRANSFER = 2.0        # PartitionedTensor meta + the rank's share (engine._exec_send_activations)
TRANSFERS_PER_MICROBATCH = 4.0  # Recv/Send at the forward step + Send/Recv at the backward step, serial
GATHERS_PER_MICROBATCH = 3.0    # received activation, received gradient, own output before backward


def p2p_time_s(share_bytes, microbatches, alpha_s, bw_bytes_per_s, gather_s) -> Array:
    """Pipeline send/recv time of one step on a stage under DeepSpeed's PipelineEngine, s.

        t = M · (4·(2·α + m/β) + 3·t_gather)

    m = bytes of the rank's 1/t share of one micro-batch's activation (b·s·h·bytes/t), β and α the
    link between adjacent stages (per GPU), t_gather the tensor-parallel all-gather of the whole
    activation, M micro-batches.  4 transfers of 2 blocking sends each and 3 all-gathers per
    micro-batch: see the module docstring (schedule.py TrainSchedule.steps, p2p.py send/recv,
    engine.py _exec_forward_pass / _exec_backward_pass at v0.6.1).  Units: B, count, s, B/s, s.
    Example: m = 29.36e6 B (BLOOM: 2·2048·14336·2 B / 4), M = 128, α = 10 µs, β = 6.25e9 B/s,
    t_gather = 0.4 ms: 128·(4·(20e-6 + 4.6976e-3) + 1.2e-3) = 2.5690112 s.
    """
    m, n, a, bw, g = _f(share_bytes, microbatches, alpha_s, bw_bytes_per_s, gather_s)
    per_transfer = SENDS_PER_TRANSFER * a + m / floor_pos(bw, 1e-30)
    return n * (TRANSFERS_PER_MICROBATCH * per_transfer + GATHERS_PER_MICROBATCH * g)


def tied_grad_allreduce_s(vocab, hidden, tp, bytes_per_element, bw_bytes_per_s, alpha_s) -> Array:
    """ReduceTiedGrads: the tied embedding gradient all-reduced by the first and last stage, s.

    A ring all-reduce over n = 2 ranks (`walls.fleet.ring_allreduce`) moves 2·(n-1)/n·B = B bytes per rank
    in 2·(n-1) = 2 steps::

        t = B/β + 2·α,   B = V·h/t · e

    e = 4 B (fp32 ``_hp_grad`` under the BF16Optimizer, DeepSpeed v0.6.5 pipe/engine.py
    _exec_reduce_tied_grads) or 2 B (16-bit ``weight.grad``, v0.6.1 module.allreduce_tied_weight_gradients).
    Units: count, count, count, B, B/s, s.  Example: BLOOM V = 250,880, h = 14,336, t = 4, e = 4,
    β = 6.25e9 B/s, α = 10 µs: 250880·14336/4·4/6.25e9 + 20e-6 = 0.5754785 s.
    """
    v, h, t, e, bw, a = _f(vocab, hidden, tp, bytes_per_element, bw_bytes_per_s, alpha_s)
    return fleet.ring_allreduce(v * h / floor_pos(t, 1.0) * e, 2.0, bw, a)


def bf16_optimizer_dp_s(grad_bytes, param_bytes, dp, dp_local, bw_intra, alpha_intra, bw_inter, alpha_inter,
                        bw_intra_ring) -> Array:
    """Data-parallel time of DeepSpeed's BF16Optimizer (ZeRO-1 equivalent) under the PipelineEngine, s.

        t = AR(G) + AG(W)
        AR(G) = 2·RS_2level(G, g, dp/g)                (walls.parallel.hierarchical_reduce_scatter)
        AG(W) = flat_ring_bytes_s(W, dp, g) + ring_latency_s(dp, g)

    G = fp32 gradient bytes of the rank's model shard (``buffered_allreduce_fallback`` over
    ``get_grads_for_reduction()``, the fp32 hp gradients: v0.6.5 pipe/engine.py _bf16_reduce_grads),
    W = its 16-bit parameter bytes (bf16_optimizer.py step(): ``all_gather_dp_groups`` of the bf16
    partitions), g = dp ranks per node.  The all-reduce is timed as the ZeRO-0 all-reduce of
    walls.parallel.data_parallel_times, the all-gather as its ZeRO all-gather.  Units: B, B, counts, B/s,
    s, B/s, s, B/s.  Example: G = 4e9 B, W = 2e9 B, dp = 8, g = 2, β_i = β_ring = 240e9, β_e = 6.25e9 B/s,
    α = 0: AR = 2·(0.5·4e9/240e9) + 2·(0.75·2e9/6.25e9) = 0.496667, AG = 7/8·2e9·max(0.5/240e9,
    0.5/6.25e9) = 0.14, t = 0.636667 s.
    """
    g, w, d, loc, bi, ai, be, ae, br = _f(grad_bytes, param_bytes, dp, dp_local, bw_intra, alpha_intra, bw_inter,
                                          alpha_inter, bw_intra_ring)
    d = floor_pos(d, 1.0)
    loc = jnp.clip(loc, 1.0, d)
    ar = 2.0 * parallel.hierarchical_reduce_scatter(g, loc, d / loc, bi, ai, be, ae)
    ag = parallel.flat_ring_bytes_s(w, d, loc, br, be) + parallel.ring_latency_s(d, loc, ai, ae)
    return ar + ag


__all__ = ["GATHERS_PER_MICROBATCH", "SENDS_PER_TRANSFER", "TRANSFERS_PER_MICROBATCH", "bf16_optimizer_dp_s",
           "p2p_time_s", "tied_grad_allreduce_s"]
