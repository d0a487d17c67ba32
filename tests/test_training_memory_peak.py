"""The transient peak of a training step's memory (issue 12, MEMPEAK): the loss's buffers when the backward
starts (walls.algorithm.cross_entropy_peak_bytes), one rematerialised layer under full recomputation,
loss_parallel = off (logits gathered to every TP rank) and grad_sync = last (FSDP2's fp32 accumulation of
unsharded gradients between micro-batches).

References (hand-computed from the counts in walls.algorithm and the FSDP2 code named there):
Llama 3 8B, one 8,192-token sequence, V = 128,256, torch: 8192 · 128,256 · 12 = 1.26e10 B.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from training_rows import CAT, breakdown, check_batched_equals_scalar, evaluate, row

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt.scenarios.training import training
from mlsys_opt.walls import algorithm

T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(training, **jit_options())      # mlsys_opt._compile: ~half the compile time
PAD = 8
V3 = 128256.0
RECOMPUTE = S.schema.TRAINING_PARAMS["recompute"].choices
KW = dict(pp=1, cp=1, seq_len=8192, micro_batch_size=1, recompute=RECOMPUTE.index("none"))


def _kind(name):
    return algorithm.LOSS_KERNELS.index(name)


def _code(param, name):
    return S.schema.TRAINING_PARAMS[param].choices.index(name)


def test_peak_bytes_reference_values_batched_and_gradient():
    f = algorithm.cross_entropy_peak_bytes
    assert float(f(8192.0, V3, _kind("torch"))) == pytest.approx(8192 * V3 * 12, rel=1e-12)
    assert float(f(8192.0, V3, _kind("torch"))) == pytest.approx(1.26e10, rel=1e-3)
    for name, mu in (("fused", 4.0), ("torch", 12.0), ("megatron", 6.0), ("torch16", 8.0)):
        assert float(f(1.0, 1.0, _kind(name))) == mu
        # a vocabulary shard changes only PyTorch's kernel (DTensor loss_parallel: 16 B peak, 76 B traffic)
        assert float(f(1.0, 1.0, _kind(name), True)) == (16.0 if name == "torch" else mu)
        beta = float(algorithm.cross_entropy_bytes(1.0, 1.0, _kind(name)))
        assert float(algorithm.cross_entropy_bytes(1.0, 1.0, _kind(name), True)) == (76.0 if name == "torch" else beta)
    assert algorithm.LOSS_KERNELS == S.schema.TRAINING_PARAMS["loss_kernel"].choices
    assert float(algorithm.cross_entropy_bytes(1.0, 1.0, _kind("torch16"))) == 18.0
    x = np.asarray([[8192.0, V3, 1], [4096.0, V3 / 8, 0], [2048.0, 50257.0, 2], [1.0, 32000.0, 3]])
    np.testing.assert_allclose(np.asarray(f(x[:, 0], x[:, 1], x[:, 2].astype(int))),
                               [float(f(*r[:2], int(r[2]))) for r in x], rtol=1e-12)   # batched == scalar
    for r in x:                                        # d/dT = V·μ: jax.grad vs central differences
        g = float(jax.grad(lambda t, r=r: f(t, r[1], int(r[2])))(r[0]))
        h = 1e-6 * r[0]
        fd = (float(f(r[0] + h, r[1], int(r[2]))) - float(f(r[0] - h, r[1], int(r[2])))) / (2 * h)
        assert g == pytest.approx(fd, rel=1e-6)


def test_loss_peak_and_recompute_layer_on_top_of_states_and_activations():
    """total = states + activations + b·max(s·μ·V/tp, full·one layer's selective-form activations)."""
    rows = [row("h100_sxm", "llama3_8b", "ib_ndr", tp=1, n_accelerators=8, global_batch=8, zero_stage=1,
                loss_kernel=_kind("torch"), **KW),
            row("h100_sxm", "llama3_8b", "ib_ndr", tp=1, n_accelerators=8, global_batch=8, zero_stage=1,
                loss_kernel=_kind("fused"), **KW),
            # GPT-3 175B at tp 8 with SP: the loss shard (50,257/8 entries) is smaller than one layer
            row("h100_sxm", "gpt3_175b", "ib_ndr", tp=8, n_accelerators=64, global_batch=8, zero_stage=1,
                **{**KW, "seq_len": 2048, "recompute": RECOMPUTE.index("full")})]
    p, c, s, mem, *_ = breakdown(rows, PAD, T64)
    transient = np.asarray(mem.total_bytes - mem.states_bytes - mem.act_micro_bytes)[:3]
    assert transient[0] == pytest.approx(8192 * V3 * 12, rel=1e-9)
    assert transient[1] == pytest.approx(8192 * V3 * 4, rel=1e-9)
    h = float(c.hidden[2])
    layer = 2048 * h * (10 / 8 + 24 / 8)                          # Korthikanti Table 2, selective form, t = t' = 8
    assert 2048 * 50257 / 8 * 4 < layer                           # the layer dominates the fused loss shard
    assert transient[2] == pytest.approx(layer, rel=1e-9)
    ob, _ = check_batched_equals_scalar(rows, lambda r: evaluate(TRAIN, r, PAD, T64))
    assert ob["memory_per_accelerator_bytes"][0] - ob["memory_per_accelerator_bytes"][1] == pytest.approx(
        8192 * V3 * 8, rel=1e-9)


def test_loss_parallel_off_gathers_the_logits():
    """tp = 4, loss over the whole vocabulary: the loss memory and traffic × 4, + one all-gather of T·V·2 B."""
    kw = dict(tp=4, n_accelerators=8, global_batch=8, zero_stage=1, loss_kernel=_kind("torch"), **KW)
    rows = [row("h100_sxm", "llama3_8b", "ib_ndr", **kw),
            row("h100_sxm", "llama3_8b", "ib_ndr", loss_parallel=_code("loss_parallel", "off"), **kw),
            row("h100_sxm", "llama3_8b", "ib_ndr", **{**kw, "tp": 1}),
            row("h100_sxm", "llama3_8b", "ib_ndr", loss_parallel=_code("loss_parallel", "off"), **{**kw, "tp": 1})]
    p, c, s, mem, cmp, *_ = breakdown(rows, PAD, T64)
    # on: PyTorch's loss on the V/4 shard runs DTensor's loss_parallel handlers (16 B peak, 76 B traffic);
    # off: F.cross_entropy over the whole vocabulary (12 B, 48 B)
    assert float(s.loss_peak_bytes_per_token[0]) == pytest.approx(16 * V3 / 4)
    assert float(s.loss_bytes_per_token[0]) == pytest.approx(76 * V3 / 4)
    assert float(s.loss_peak_bytes_per_token[1]) == pytest.approx(12 * V3)
    assert float(s.loss_bytes_per_token[1]) == pytest.approx(48 * V3)
    assert float(s.loss_peak_bytes_per_token[2]) == pytest.approx(12 * V3)      # tp = 1: no shard
    assert float(s.loss_gather_bytes_per_token[1]) == 2 * V3 and float(s.loss_gather_bytes_per_token[0]) == 0.0
    bw, alpha = float(c.bw_up_ring[1]), float(c.alpha_up[1])
    gather = 3 * alpha + 0.75 * 8192 * V3 * 2 / bw               # ring all-gather of 8192·V·2 B over 4 ranks
    extra = 8192 * (48 * V3 - 76 * V3 / 4) / float(c.mem_bw[1])   # the loss over V instead of its V/4 shard
    mb = 8 / 2                                                    # global batch 8 over dp = 2: M = 4
    assert float(cmp.t_elem_s[1] - cmp.t_elem_s[0]) == pytest.approx(mb * (gather + extra), rel=1e-6)
    ob, _ = check_batched_equals_scalar(rows, lambda r: evaluate(TRAIN, r, PAD, T64))
    assert ob["step_time_s"][1] > ob["step_time_s"][0]
    assert ob["step_time_s"][3] == ob["step_time_s"][2]           # no effect at tp = 1
    assert ob["memory_per_accelerator_bytes"][3] == ob["memory_per_accelerator_bytes"][2]


def test_grad_sync_last_holds_unsharded_fp32_gradients():
    """FSDP over 8 ranks, M = 4 micro-batches: 4·P in place of the P/8 gradient shards (4 B); M = 1 or
    ZeRO-1: unchanged."""
    last = _code("grad_sync", "last")
    kw = dict(tp=1, n_accelerators=8, zero_stage=3, **KW)
    rows = [row("h100_sxm", "llama3_8b", "ib_ndr", global_batch=32, **kw),
            row("h100_sxm", "llama3_8b", "ib_ndr", global_batch=32, grad_sync=last, **kw),
            row("h100_sxm", "llama3_8b", "ib_ndr", global_batch=8, grad_sync=last, **kw),
            row("h100_sxm", "llama3_8b", "ib_ndr", global_batch=32, grad_sync=last, **{**kw, "zero_stage": 1})]
    ob, _ = check_batched_equals_scalar(rows, lambda r: evaluate(TRAIN, r, PAD, T64))
    m = ob["memory_per_accelerator_bytes"]
    n_params = float(breakdown(rows[:1], PAD, T64)[2].w_shard[0]) / 2.0    # 16-bit weights
    assert ob["n_microbatches"][0] == 4 and ob["n_microbatches"][2] == 1
    assert m[1] - m[0] == pytest.approx(4 * n_params - 4 * n_params / 8, rel=1e-9)
    row_m1 = evaluate(TRAIN, [row("h100_sxm", "llama3_8b", "ib_ndr", global_batch=8, **kw)], PAD, T64)[0]
    assert m[2] == pytest.approx(row_m1["memory_per_accelerator_bytes"][0], rel=1e-12)
    zero1 = evaluate(TRAIN, [row("h100_sxm", "llama3_8b", "ib_ndr", global_batch=32,
                                 **{**kw, "zero_stage": 1})], PAD, T64)[0]
    assert m[3] == pytest.approx(zero1["memory_per_accelerator_bytes"][0], rel=1e-12)


def test_memory_gradient_wrt_sequence_length():
    """d memory / d seq_len with the transient peak (loss-dominated and layer-dominated rows): jax.grad vs FD."""
    for r in (row("h100_sxm", "llama3_8b", "ib_ndr", tp=1, n_accelerators=8, global_batch=8, zero_stage=1,
                  loss_kernel=_kind("torch"), **KW),
              row("h100_sxm", "gpt3_175b", "ib_ndr", tp=8, n_accelerators=64, global_batch=8, zero_stage=1,
                  **{**KW, "seq_len": 2048, "recompute": RECOMPUTE.index("full")})):
        p0 = S.params_from_dict("training", r)
        vg = jax.jit(jax.value_and_grad(
            lambda x, p0=p0: training(p0._replace(seq_len=x), T64)[0].memory_per_accelerator_bytes), **jit_options())
        x0 = float(r["seq_len"])
        g = float(vg(jnp.asarray(x0))[1])
        h = 1e-3
        fd = (float(vg(jnp.asarray(x0 + h))[0]) - float(vg(jnp.asarray(x0 - h))[0])) / (2 * h)
        assert g > 0 and g == pytest.approx(fd, rel=1e-5)


def test_published_peaks():
    """The rows that publish their peak memory (torchtitan's max_memory_reserved, KempnerForge's
    max_memory_allocated): median |error| <= 12 %; before MEMPEAK (fp32 logits only, no recompute layer,
    KempnerForge's memory_gb read as decimal GB with fp32 master states) it was 38 %.  MEMEAGER (torch.compile's
    partitioner saves fewer SAC outputs than eager; FSDP2's root unit stays gathered) moved the median from 8.9 to
    11.2 %: the model counts allocations, and torchtitan's 8B rows now sit together 11-14 % under its
    max_memory_reserved figure (eager and compiled alike, 7.3 points apart before), the caching allocator's
    reserve that the model does not count."""
    from mlsys_opt import calibration as C
    # Hugging Face's heatmap memory figure (stop 27) is left out here: it does not say whether it is allocated or
    # reserved, and nanotron holds buffers the model does not (training_runs_README.md); validation reports it
    rows = [r for r in C.load_runs("training") if "memory_gib" in r.measured and r.source_key != "hf_ultrascale_2025"]
    assert len(rows) >= 30 and len({r.source_key for r in rows}) >= 3
    mem = C.memory_check(rows, C.diagnostics(C.DEFAULT_EFFICIENCY, C.build(rows)))
    assert len(mem) == len(rows) and np.isfinite(mem.error_pct).all()
    assert mem.error_pct.abs().median() <= 12.0
    by_id = mem.set_index("id").error_pct
    # MEMEAGER: torchtitan's 8B rows (Tables 1-3: eager, compiled, float8, op SAC and full AC) within 4 points
    titan8 = by_id[[i for i in by_id.index if i.startswith(("titan24_t1", "titan24_t2", "titan24_t3"))]]
    assert len(titan8) == 10 and titan8.max() - titan8.min() <= 4.0
    # FSDP2 no_sync rows: fp32 unsharded gradients between micro-batches, 16-bit loss over the whole vocabulary
    for rid in ("kempner26_h200_7b_n2_FSDP2", "kempner26_h200_13b_n8_FSDP8", "kempner26_h200_70b_n32_TP4_FSDP8"):
        assert abs(by_id[rid]) <= 10.0, rid
