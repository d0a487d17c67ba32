"""PyTorch FSDP2's backward buffers and gathered-unit dtype (fsdp_runtime = torch_fsdp2) and the checkpoint bytes of
master_weights = fp32_param (FSDP16).

- At the end of a unit's backward FSDP2 holds the unit's unsharded gradients (param_dtype, 2 B) and the previous
  unit's reduce-scatter input (reduce_dtype: 4 B in fp32, 2 in bf16), kept in ``reduce_scatter_state`` until this
  unit's post_backward (torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py foreach_reduce,
  _fsdp_param_group.py post_backward).  The unit's gathered weights and the prefetched next unit are the two
  gathered units the scenario already counts.  The buffers are a transient of the layers' backward, beside the
  rematerialised layer, not of the loss: transient = max(b·s·loss per token, b·layer + n_u·(2 + r)).
- The gathered units are in the all-gather dtype (bf16 for an fp8 recipe: torchao's float8 all-gather is off by
  default), not the fp8 recipe's 3 B (bf16 weight + TE's cached cast).
- A checkpoint of an fp32_param run holds the fp32 parameters and the Adam moments, 4 + 8 = 12 B per parameter, no
  16-bit copy (14 B before).

Reference (hand-computed): one Llama-3-8B layer, n_u = 2·4096² + 2·4096·1024 + 3·4096·14336 + 2·4096 = 218,112,000
parameters, bf16 parameters and fp32 reduction: 218,112,000·(2 + 4) = 1.308672e9 B (1.22 GiB).  The scenario's unit
is P/L = 8.03e9/32 parameters (the embeddings spread over the layers).
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
FP32_PARAM, FP32_MASTER = MASTER.index("fp32_param"), MASTER.index("fp32")
FSDP2 = S.schema.TRAINING_PARAMS["fsdp_runtime"].choices.index("torch_fsdp2")
BF16_GRADS = S.schema.TRAINING_PARAMS["main_grads"].choices.index("bf16")
FUSED_LOSS = S.schema.TRAINING_PARAMS["loss_kernel"].choices.index("fused")
FP8 = PRECISIONS.index("fp8")
P = float(CAT.entry("models", "llama3_8b")["n_params"])
LAYERS = float(CAT.entry("models", "llama3_8b")["n_layers"])
UNIT = P / LAYERS
# a short sequence and the fused loss: the loss's buffers (1024·4·V = 0.53 GB) stay under the FSDP buffers (1.5 GB)
KW = dict(tp=1, pp=1, cp=1, seq_len=1024, micro_batch_size=1, global_batch=8, n_accelerators=8, zero_stage=3,
          loss_kernel=FUSED_LOSS, recompute=S.schema.RECOMPUTE.index("none"))


def llama(**kw):
    return row("h100_sxm", "llama3_8b", "ib_ndr", **{**KW, **kw})


def test_fsdp_backward_buffer_reference_value():
    """One Llama-3-8B layer: 218,112,000·(2 + 4) = 1.308672e9 B; bf16 reduction: ·(2 + 2); broadcasts."""
    n_u = 2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096
    assert n_u == 218_112_000
    got = parallel.fsdp_backward_buffer_bytes(np.array([n_u, n_u]), 2.0, np.array([4.0, 2.0]))
    np.testing.assert_allclose(np.asarray(got), [1.308672e9, 8.72448e8], rtol=1e-15)
    assert float(got[0]) / 2**30 == pytest.approx(1.2188, abs=1e-4)


def _rows():
    f = dict(master_weights=FP32_PARAM, fsdp_runtime=FSDP2)
    return [llama(master_weights=FP32_PARAM),                  # 0 another runtime (MaxText, FSDP1): no FSDP2 buffers
            llama(**f),                                        # 1 PyTorch FSDP2: + n_u·(2 + 4)
            llama(**f, main_grads=BF16_GRADS),                 # 2 reduce_dtype bf16: + n_u·(2 + 2)
            llama(**f, zero_stage=2),                          # 3 ZeRO-2: no gathered units, no term
            llama(**f, seq_len=8192),                          # 4 the loss's buffers dominate
            llama(**f, precision=FP8),                         # 5 fp8 under FSDP2: bf16 gathered units
            llama(master_weights=FP32_PARAM, precision=FP8)]   # 6 another runtime: 3 B gathered units (TE recipe)


def test_fsdp_backward_buffers_in_the_layers_backward():
    """The term, where it applies; the transient is the larger of the loss's buffers and the layer's backward."""
    rows = _rows()
    _, _, s, mem, *_ = breakdown(rows, PAD, T64)
    fb = np.asarray(s.fsdp_backward_bytes)[:len(rows)]
    np.testing.assert_allclose(fb, [0.0, 6.0 * UNIT, 4.0 * UNIT, 0.0, 6.0 * UNIT, 6.0 * UNIT, 0.0], rtol=1e-12)
    assert 6.0 * UNIT == pytest.approx(1.506e9, rel=2e-3)
    transient = np.asarray(mem.total_bytes - mem.states_bytes)
    loss = np.asarray(s.loss_peak_bytes_per_token * s.s_loc)       # b = 1, no recomputation
    # rows 0 and 1 store the same activations and states: their transients differ by (FSDP2 buffers - the loss's)
    assert loss[1] < fb[1]
    assert transient[1] - transient[0] == pytest.approx(fb[1] - loss[0], rel=1e-9)
    # at 8192 tokens the loss's buffers (8192·4·V = 4.2 GB) exceed them: the total is unchanged by the term
    assert loss[4] > fb[4]
    _, _, _, mem_a, *_ = breakdown([llama(master_weights=FP32_PARAM, seq_len=8192)], PAD, T64)
    assert transient[4] == pytest.approx(float(mem_a.total_bytes[0] - mem_a.states_bytes[0]), rel=1e-12)
    # fp8 under FSDP: two units gathered in bf16 (2 B), not 3 B
    states = np.asarray(s.states_bytes)
    assert states[5] == pytest.approx(16.0 * P / 8.0 + 2.0 * 2.0 * UNIT, rel=1e-12)
    assert states[6] == pytest.approx(16.0 * P / 8.0 + 2.0 * 3.0 * UNIT, rel=1e-12)
    assert states[1] == states[0]      # bf16: the same gathered bytes, the same states


def test_fp32_param_checkpoint_bytes():
    """fp32_param checkpoints 12 B per parameter (fp32 weight + m + v), the 16-bit-weight masters 2 + 12."""
    rows = [llama(master_weights=FP32_MASTER), llama(master_weights=FP32_PARAM),
            llama(master_weights=FP32_PARAM, precision=PRECISIONS.index("fp32"))]
    _, _, s, *_ = breakdown(rows, PAD, T64)
    np.testing.assert_allclose(np.asarray(s.ckpt_bytes_per_param)[:3], [14.0, 12.0, 12.0], rtol=1e-15)


def test_batched_equals_scalar():
    ob, _ = check_batched_equals_scalar(_rows(), lambda r: evaluate(TRAIN, r, PAD, T64))
    assert np.all(np.isfinite(ob["memory_per_accelerator_bytes"]))


def test_memory_gradient_wrt_tp_where_the_buffers_bind():
    """d memory / d tp (tp as a float) with the FSDP buffers binding: jax.grad vs central differences."""
    p0 = S.params_from_dict("training", llama(tp=2, master_weights=FP32_PARAM, fsdp_runtime=FSDP2))
    vg = jax.jit(jax.value_and_grad(lambda x: training(p0._replace(tp=x), T64)[0].memory_per_accelerator_bytes),
                 **jit_options())
    x0, h = 2.0, 1e-4
    g = float(vg(jnp.asarray(x0))[1])
    fd = (float(vg(jnp.asarray(x0 + h))[0]) - float(vg(jnp.asarray(x0 - h))[0])) / (2 * h)
    assert np.isfinite(g) and g < 0 and g == pytest.approx(fd, rel=1e-5)
