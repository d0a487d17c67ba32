"""DUALPIPE (issue 12): DeepSeek-V3's DualPipe schedule (pp_schedule = dualpipe); NORMRC: its RMSNorm recomputation.

DeepSeek-V3 Technical Report (arXiv 2412.19437) §3.2.1 Table 2: bubble (PP/2 - 1)(F&B + B - 3W), parameters
2x, activations PP + 1; deepseek-ai/DualPipe examples/example_dualpipe.py: rank r holds stages r and PP-1-r.
Reference values by hand, the scenario's wiring against the 1F1B schedule on DeepSeek-V3's own layout
(2,048 H800, PP 16, EP 64, last stage 1 layer + MTP), batched == scalar and jax.grad vs finite differences.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from training_rows import CAT, breakdown, check_batched_equals_scalar, check_step_time_grad, evaluate, row

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.calibration import setup as calsetup
from mlsys_opt.errors import MlsysOptError
from mlsys_opt.scenarios.schema import ON_OFF, PP_SCHEDULES, RECOMPUTE
from mlsys_opt.walls import parallel

T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())
PAD = 4
DUAL = PP_SCHEDULES.index("dualpipe")
# DeepSeek-V3's pre-training layout (training_runs.json deepseekv3_h800_pretrain_n2048_gb15360)
DSV3 = dict(tp=1, pp=16, ep=64, virtual_stages=1, n_accelerators=2048, global_batch=15360, seq_len=4096,
            micro_batch_size=1, precision=PRECISIONS.index("fp8"), recompute=RECOMPUTE.index("none"),
            zero_stage=1, ep_dispatcher=1, ep_overlap=1.0, moe_node_limit=4, last_stage_layers=1, overlap=1.0)


def _rows(**kw):
    base = row("h800", "deepseek_v3", "ib_ndr", **(DSV3 | kw))
    return [base, base | dict(pp_schedule=DUAL)]


def test_bubble_and_in_flight_reference_values():
    """(PP/2 - 1)(F&B + B - 3W) with B = 2F, W = F: PP 16 -> 7·2F = 14F = 4.667 slots of F + B (1F1B: 15);
    PP 2 and 1: none.  Activations: PP + 1 micro-batches (1F1B PP), at most M."""
    assert float(parallel.dualpipe_bubble_slots(16.0)) == pytest.approx(7 * 2 / 3, rel=1e-15)
    assert float(parallel.dualpipe_bubble_slots(2.0)) == 0.0 and float(parallel.dualpipe_bubble_slots(1.0)) == 0.0
    np.testing.assert_allclose(np.asarray(parallel.dualpipe_bubble_slots(np.array([4.0, 8.0, 16.0]))),
                               [2 / 3, 2.0, 14 / 3], rtol=1e-15)
    # the bubble in slots, per schedule: 1F1B / interleaved (pp - 1)/V, DualPipe whatever V
    np.testing.assert_allclose(np.asarray(parallel.bubble_slots(np.array([16.0, 16.0, 16.0]), np.array([1.0, 2.0, 2.0]),
                                                                np.array([0.0, 0.0, 1.0]))), [15.0, 7.5, 14 / 3], rtol=1e-15)
    assert float(parallel.pipeline_in_flight(16.0, 1.0, 120.0, 1.0)) == 17.0
    assert float(parallel.pipeline_in_flight(16.0, 1.0, 120.0, 0.0)) == 16.0
    assert float(parallel.pipeline_in_flight(16.0, 1.0, 10.0, 1.0)) == 10.0
    assert float(parallel.pipeline_in_flight(16.0, 5.0, 32.0, 0.0)) == pytest.approx(16 * (1 + 15 / 80))


def test_scenario_bubble_memory_and_end_rank_load():
    """Against 1F1B on the same layout: the bubble is 14/3 slots instead of 15 of the (end) rank's micro-batch
    slot; weights and gradients double while the optimizer state (sharded over both copies) does not; the
    end ranks carry half the last stage (1 layer + LM head + MTP) and half the first (4 layers), so the
    critical rank's FLOPs are the mean of the two; the pipeline sends are hidden."""
    p, c, s, mem, cmp, comm, mb = breakdown(_rows(), PAD, T64)
    assert float(s.dualpipe[0]) == 0.0 and float(s.dualpipe[1]) == 1.0
    for i, slots in ((0, 15.0), (1, 14.0 / 3.0)):
        slot = float(cmp.t_compute_s[i] + comm.t_tp_s[i] + comm.t_cp_s[i] + comm.t_ep_s[i]) / float(mb[i])
        assert float(comm.t_bubble_s[i]) == pytest.approx(slots * slot, rel=1e-12)
    # the critical (end) rank: half the last stage (1 layer + LM head + MTP), half the first (4 layers)
    assert float(s.head_flop_gpu[1]) == pytest.approx(0.5 * float(s.head_flop_gpu[0]), rel=1e-12)
    assert float(s.flop_gpu[1]) < float(s.flop_gpu[0])
    # states: 2x weights and gradients, the optimizer shard unchanged
    assert float(s.w_shard[1]) == pytest.approx(2.0 * float(s.w_shard[0]), rel=1e-12)
    assert float(s.states_bytes[1]) > float(s.states_bytes[0])
    assert float(mem.total_bytes[1]) > float(mem.total_bytes[0])
    # pipeline sends: fully hidden with pp_overlap = 1 (1F1B without virtual stages waits for every one)
    assert float(comm.t_pp_s[1]) == 0.0 and float(comm.t_pp_s[0]) > 0.0


def test_end_rank_flops_are_the_mean_of_the_first_and_last_stage():
    """With an even split (no layout, no MTP: Llama 3 70B, PP 8) the 1F1B last rank runs trunk/pp + the head;
    the DualPipe end rank runs trunk/pp + head/2 (the first stage's trunk share equals the last's)."""
    base = row("h100_sxm", "llama3_70b", "ib_ndr", tp=8, pp=8, n_accelerators=512, global_batch=512,
               micro_batch_size=1, virtual_stages=1)
    _, _, s, _, _, _, _ = breakdown([base, base | dict(pp_schedule=DUAL)], PAD, T64)
    head = float(s.head_flop_gpu[0])
    assert float(s.head_flop_gpu[1]) == pytest.approx(0.5 * head, rel=1e-12)
    assert float(s.flop_gpu[0] - s.flop_gpu[1]) == pytest.approx(0.5 * head, rel=1e-9)


def test_pp_one_and_setup_mapping():
    """pp = 1: DualPipe is the same as 1F1B; a row's 'DualPipe' / '1F1B' / 'Interleaved 1F1B' map, others fail."""
    o, g = evaluate(TRAIN, _rows(pp=1, ep=64, n_accelerators=64, global_batch=512, last_stage_layers=0), PAD, T64)
    np.testing.assert_allclose(o["step_time_s"][0], o["step_time_s"][1], rtol=1e-12)
    for v, want in (("dualpipe", "dualpipe"), ("DualPipe", "dualpipe"), ("1F1B", "1f1b"),
                    ("Interleaved 1F1B", "1f1b")):
        assert calsetup._pp_schedule(v, {}) == {"pp_schedule": want}
    with pytest.raises(MlsysOptError, match="not a pipeline schedule"):
        calsetup._pp_schedule("zero-bubble", {})


def test_dualpipe_is_faster_here_batched_equals_scalar_and_grads():
    rows = _rows() + _rows(pp=8, n_accelerators=1024, last_stage_layers=5)
    o, _ = check_batched_equals_scalar(rows, lambda r: evaluate(TRAIN, r, PAD, T64))
    assert o["step_time_s"][1] < o["step_time_s"][0] and o["step_time_s"][3] < o["step_time_s"][2]
    # the reported bubble fraction: 1F1B (P - 1)/(M + P - 1), DualPipe k/(M + k) with k = (P/2 - 1)·2/3 slots
    m = o["n_microbatches"][0]
    assert o["bubble_frac"][0] == pytest.approx(15.0 / (m + 15.0), rel=1e-12)
    assert o["bubble_frac"][1] == pytest.approx((14.0 / 3.0) / (m + 14.0 / 3.0), rel=1e-12)
    check_step_time_grad(rows[1] | dict(straggler_factor=1.05, pp_overlap=0.6),
                         ("efficiency", "ep_overlap", "pp_overlap", "straggler_factor"), T64)


def test_recompute_norm_drops_both_norm_outputs_and_reruns_them():
    """NORMRC (DeepSeek-V3 §3.2.3): recompute_norm = on stores 4·s·h/t' bytes less per sequence and layer (the two
    RMSNorm outputs, 16-bit, × the precision's activation scale; t' = tp with sequence parallelism) and adds one
    read + write of both norms to the elementwise traffic; with full recomputation it changes nothing."""
    on = ON_OFF.index("on")
    base = row("h100_sxm", "llama3_70b", "ib_ndr", tp=8, pp=4, n_accelerators=256, global_batch=256,
               micro_batch_size=1, virtual_stages=1, recompute=RECOMPUTE.index("selective"))
    full = base | dict(recompute=RECOMPUTE.index("full"))
    rows = [base, base | dict(recompute_norm=on), full, full | dict(recompute_norm=on)]
    _, c, s, mem, cmp, comm, mb = breakdown(rows, PAD, T64)
    from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY as eff
    s_loc, h, t = float(s.s_loc[0]), 8192.0, 8.0                 # Llama 3 70B, tp 8 with sequence parallelism
    saved = float(s.act_scale[0]) * 4.0 * s_loc * h / t
    assert float(s.act_seq_layer[0] - s.act_seq_layer[1]) == pytest.approx(saved, rel=1e-12)
    assert float(s.act_seq_layer[2]) == float(s.act_seq_layer[3])
    # elementwise time: + scale·factor·act_scale·8·s·b·h/t' per layer and micro-batch, at the achieved HBM rate
    rerun = eff.elementwise_traffic_scale * float(s.elem_factor[0]) * float(s.act_scale[0]) * 8.0 * s_loc * h / t
    want = rerun * float(s.layers_stage[0]) * float(mb[0]) / float(c.mem_bw[0])
    assert float(cmp.t_elem_s[1] - cmp.t_elem_s[0]) == pytest.approx(want, rel=1e-9)
    assert float(cmp.t_elem_s[3]) == float(cmp.t_elem_s[2])
    o, _ = check_batched_equals_scalar(rows, lambda r: evaluate(TRAIN, r, PAD, T64))
    assert o["memory_per_accelerator_bytes"][1] < o["memory_per_accelerator_bytes"][0]
    assert o["step_time_s"][1] > o["step_time_s"][0]
    check_step_time_grad(rows[1] | dict(straggler_factor=1.05), ("efficiency", "straggler_factor"), T64)
