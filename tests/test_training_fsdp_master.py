"""master_weights = fp32_param (FSDP16): PyTorch FSDP mixed precision on an fp32 model keeps the fp32 shard as the
only persistent weight -- 16 B per sharded parameter (fp32 param 4 + fp32 gradient 4 + Adam m, v 8) -- where
Megatron's distributed optimizer and Megatron-FSDP keep a persistent 16-bit copy next to the fp32 master (18 B:
2 + 4 + 12).  The 16-bit weights exist only while a unit is all-gathered (FSDP2 _fsdp_param.py all_gather_inputs /
free_unsharded_param; FSDP1 _flat_param.py _mp_shard), which the scenario already counts as the ZeRO-3 gather
buffer (two units of 2-byte weights: current + prefetch).

Reference (hand-computed): Llama 3 8B (P = n_params of the catalog entry, 32 layers), FSDP (ZeRO-3) over 8 H100s,
bf16: Megatron-style states per GPU = 18·P/8 + 2·(2·P)/32; FSDP's = 16·P/8 + the same gather buffer, i.e.
2·P/8 = 2.008e9 B less (P = 8.03e9).  ZeRO-1/2 keep their unsharded 16-bit weights (the gathered parameters live
from the forward to the backward), so only the optimizer step's 16-bit weight write goes.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from training_rows import CAT, breakdown, check_batched_equals_scalar, evaluate, row

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.scenarios.training import training
from mlsys_opt.walls import parallel

T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(training, **jit_options())      # mlsys_opt._compile: ~half the compile time
PAD = 8
MASTER = S.schema.TRAINING_PARAMS["master_weights"].choices
FP32_PARAM, NONE = MASTER.index("fp32_param"), MASTER.index("none")
FP8, FP32 = PRECISIONS.index("fp8"), PRECISIONS.index("fp32")
KW = dict(tp=1, pp=1, cp=1, seq_len=4096, micro_batch_size=1, global_batch=8, n_accelerators=8)
P = float(CAT.entry("models", "llama3_8b")["n_params"])
LAYERS = float(CAT.entry("models", "llama3_8b")["n_layers"])


def _rows():
    llama = lambda **kw: row("h100_sxm", "llama3_8b", "ib_ndr", **{**KW, **kw})   # noqa: E731
    return [llama(zero_stage=3),                                          # 0 Megatron-style 18 B
            llama(zero_stage=3, master_weights=FP32_PARAM),               # 1 FSDP: 16 B
            llama(zero_stage=1),                                          # 2 distributed optimizer
            llama(zero_stage=1, master_weights=FP32_PARAM),               # 3 unsharded 16-bit weights kept
            llama(zero_stage=3, precision=FP8),                           # 4 fp8: bf16 + cached cast, 3 B
            llama(zero_stage=3, precision=FP8, master_weights=FP32_PARAM),  # 5 torchao float8 under FSDP2
            llama(zero_stage=3, master_weights=NONE, optimizer_moments=1),   # 6 KempnerForge: bf16 model
            llama(zero_stage=3, precision=FP32, master_weights=FP32_PARAM)]  # 7 fp32 weights: their own master


def test_fsdp_states_reference_value_and_batched():
    """ZeRO-3 over 8 GPUs: 18·P/8 -> 16·P/8 (+ the same 2-unit gather buffer); fp8 drops its 3 B shard; ZeRO-1,
    a bf16 model (master none) and fp32 training do not change; batched == scalar, every output finite."""
    rows = _rows()
    p, c, s, mem, *_ = breakdown(rows, PAD, T64)
    assert float(c.n_params[0]) == P and P == pytest.approx(8.03e9, rel=1e-2)
    states = np.asarray(s.states_bytes)
    gather = 2.0 * 2.0 * P / LAYERS                      # two gathered layers of 2-byte weights
    assert states[0] == pytest.approx(18.0 * P / 8.0 + gather, rel=1e-12)
    assert states[1] == pytest.approx(16.0 * P / 8.0 + gather, rel=1e-12)
    assert states[0] - states[1] == pytest.approx(2.0 * P / 8.0, rel=1e-12)
    assert states[0] - states[1] == pytest.approx(2.008e9, rel=2e-3)
    assert states[3] == states[2] == pytest.approx(2.0 * P + 4.0 * P + 12.0 * P / 8.0, rel=1e-12)
    assert states[4] - states[5] == pytest.approx(3.0 * P / 8.0, rel=1e-12)   # the bf16 weight and its fp8 cast
    assert states[6] == pytest.approx((2.0 + 4.0 + 4.0) * P / 8.0 + gather, rel=1e-12)   # unchanged by FSDP16
    assert states[7] == pytest.approx((4.0 + 4.0 + 8.0) * P / 8.0 + 2.0 * 4.0 * P / LAYERS, rel=1e-12)
    ob, _ = check_batched_equals_scalar(rows, lambda r: evaluate(TRAIN, r, PAD, T64))
    m = ob["memory_per_accelerator_bytes"]
    assert m[0] - m[1] == pytest.approx(2.0 * P / 8.0, rel=1e-9)
    assert m[3] == m[2]
    # the optimizer step writes no 16-bit weight: fused 2·O + n·g with O = 12 B per local parameter
    opt = np.asarray(s.optimizer_update_s) * np.asarray(c.mem_bw)
    assert opt[0] == pytest.approx((2.0 * 12.0 + 4.0 + 2.0) * P / 8.0, rel=1e-12)
    assert opt[1] == pytest.approx((2.0 * 12.0 + 4.0) * P / 8.0, rel=1e-12)
    assert ob["step_time_s"][1] <= ob["step_time_s"][0]


def test_fp32_param_gradient_shard_in_parameter_dtype():
    """FSDP casts the reduced gradient back to the parameter dtype (fp32) even when it reduces in bf16
    (main_grads = bf16: half the collective bytes), so the stored shard stays 4 B; the distributed optimizer's
    bf16 main grads are 2 B.  ZeRO-2 (FSDP SHARD_GRAD_OP): unsharded 16-bit weights 2·P in both."""
    bf16_grads = S.schema.TRAINING_PARAMS["main_grads"].choices.index("bf16")
    rows = [row("h100_sxm", "llama3_8b", "ib_ndr", zero_stage=2, main_grads=bf16_grads, **KW),
            row("h100_sxm", "llama3_8b", "ib_ndr", zero_stage=2, main_grads=bf16_grads, master_weights=FP32_PARAM,
                **KW)]
    _, _, s, *_ = breakdown(rows, PAD, T64)
    np.testing.assert_allclose(np.asarray(s.states_bytes)[:2], [2.0 * P + (2.0 + 12.0) * P / 8.0,
                                                                2.0 * P + (4.0 + 12.0) * P / 8.0], rtol=1e-12)
    # the collective bytes follow the reduce dtype in both
    assert float(s.dp_fixed_s[0] + s.dp_per_microbatch_s[0]) == pytest.approx(
        float(s.dp_fixed_s[1] + s.dp_per_microbatch_s[1]), rel=1e-12)


def test_fp32_param_memory_gradient_wrt_tp():
    """d memory / d tp under fp32_param at ZeRO-3 (tp as a float): jax.grad vs central differences."""
    r = row("h100_sxm", "llama3_8b", "ib_ndr", **{**KW, "tp": 2, "zero_stage": 3, "master_weights": FP32_PARAM})
    p0 = S.params_from_dict("training", r)
    vg = jax.jit(jax.value_and_grad(lambda x: training(p0._replace(tp=x), T64)[0].memory_per_accelerator_bytes),
                 **jit_options())
    x0, h = 2.0, 1e-4
    g = float(vg(jnp.asarray(x0))[1])
    fd = (float(vg(jnp.asarray(x0 + h))[0]) - float(vg(jnp.asarray(x0 - h))[0])) / (2 * h)
    assert np.isfinite(g) and g < 0 and g == pytest.approx(fd, rel=1e-5)


def test_master_bytes_table():
    """fp32_param counts the fp32 parameter as the 4-byte master (same optimizer bytes as fp32)."""
    assert MASTER == ("fp32", "remainders", "none", "fp32_param")
    got = parallel.optimizer_state_bytes(np.array([2.0, 2.0, 4.0]), np.array([FP32_PARAM, 0, FP32_PARAM]),
                                         np.array([0, 0, 0]))
    np.testing.assert_array_equal(np.asarray(got), [12.0, 12.0, 8.0])
