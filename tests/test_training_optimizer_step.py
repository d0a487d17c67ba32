"""The optimizer step's own HBM pass (issue 12, stop 19): walls.parallel.optimizer_update_bytes.

A fused Adam reads each local parameter's state (master + m + v), its gradient, and writes the state and
the updated model weight back, after the gradient reduction: bytes / HBM bandwidth adds to the step;
PyTorch's foreach AdamW (optimizer_kernel = foreach) makes eight passes.
Reference (the docstring's): Llama-3-8B under ZeRO-1 over 8 ranks, 1.0e9 parameters a rank, o = 12,
g = 4, w = 2: 2·12e9 + 1e9·6 = 3.0e10 B.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from training_rows import CAT, check_batched_equals_scalar, check_table_grad, evaluate, row, stack

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt.scenarios import training_parts as tparts
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY as EFF
from mlsys_opt.scenarios.training import training_common
from mlsys_opt.walls import parallel

T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
PAD = 8
P8 = 8.03e9


@jax.jit
def _setup(p):
    c = training_common(p, T64, EFF)
    return c, tparts.setup(p, c, EFF, T64.model.vocab_size[jnp.asarray(p.model, jnp.int32)])


def test_reference_values_and_gradient():
    f = parallel.optimizer_update_bytes
    assert float(f(12e9, 12.0, 4.0, 2.0)) == pytest.approx(3.0e10, rel=1e-12)
    assert float(f(4e9, 4.0, 2.0, 2.0)) == pytest.approx(2 * 4e9 + 1e9 * 4.0, rel=1e-12)   # bf16 AdamW, no master
    assert float(f(0.0, 12.0, 4.0, 2.0)) == 0.0
    # foreach (torch multi-tensor AdamW, eight kernels): n·(4p + 7·M + 3g), p the master copy (else the weight)
    assert float(f(12e9, 12.0, 4.0, 2.0, 8.0, 1)) == pytest.approx(1e9 * (16 + 56 + 12), rel=1e-12)
    assert float(f(4e9, 4.0, 2.0, 2.0, 4.0, 1)) == pytest.approx(1e9 * (4 * 2 + 7 * 4 + 3 * 2), rel=1e-12)
    assert parallel.OPTIMIZER_KERNELS == S.schema.TRAINING_PARAMS["optimizer_kernel"].choices
    x = np.asarray([[12e9, 12.0, 4.0, 2.0, 8.0, 0], [6e9, 6.0, 2.0, 2.0, 4.0, 1]])   # (remainders 2 + bf16 moments)
    np.testing.assert_allclose(np.asarray(f(*x.T)), [float(f(*r)) for r in x], rtol=1e-12)   # batched == scalar
    for r in x:                                           # both kernels: jax.grad vs central differences
        g = np.asarray(jax.grad(lambda v, k=r[5]: f(*v, k))(jnp.asarray(r[:5])))
        for i in range(5):
            h = 1e-6 * r[i]
            up, dn = r[:5].copy(), r[:5].copy()
            up[i] += h
            dn[i] -= h
            assert g[i] == pytest.approx((float(f(*up, r[5])) - float(f(*dn, r[5]))) / (2 * h), rel=1e-6, abs=1e-3)


def test_scenario_shard_and_step():
    """ZeRO-1 over 8 ranks shards the pass 8 ways; ZeRO-0 runs it whole on every rank; the step grows by it."""
    kw = dict(tp=1, pp=1, n_accelerators=8, global_batch=64, seq_len=8192, micro_batch_size=1)
    rows = [row("h100_sxm", "llama3_8b", "ib_ndr", zero_stage=1, **kw),
            row("h100_sxm", "llama3_8b", "ib_ndr", zero_stage=0, **kw)]
    c, s = _setup(stack(rows, PAD))
    bw = float(c.mem_bw[0])
    want = float(parallel.optimizer_update_bytes(P8 / 8 * 12.0, 12.0, 4.0, 2.0)) / bw
    assert float(s.optimizer_update_s[0]) == pytest.approx(want, rel=1e-9)
    assert float(s.optimizer_update_s[1]) == pytest.approx(8 * want, rel=1e-9)
    assert 5e-3 < want < 2e-2                                                  # ~10 ms on an H100
    rows.append(row("h100_sxm", "llama3_8b", "ib_ndr", zero_stage=1, optimizer_kernel=1, **kw))
    c, s = _setup(stack(rows, PAD))
    assert float(s.optimizer_update_s[2]) == pytest.approx(
        float(parallel.optimizer_update_bytes(P8 / 8 * 12.0, 12.0, 4.0, 2.0, 8.0, 1)) / bw, rel=1e-9)
    o, _ = check_batched_equals_scalar(rows, lambda r: evaluate(TRAIN, r, PAD, T64))
    assert o["step_time_s"][1] > o["step_time_s"][0]
    assert o["step_time_s"][2] - o["step_time_s"][0] == pytest.approx(
        float(s.optimizer_update_s[2] - s.optimizer_update_s[0]), rel=1e-6)


def test_grad_of_step_time_wrt_hbm_bandwidth_includes_the_pass():
    """d log(step)/d(HBM bandwidth) on one GPU without sharding (the pass is ~3 % of the step): jax.grad vs FD."""
    base = row("h100_sxm", "llama3_8b", "ib_ndr", tp=1, pp=1, n_accelerators=1, global_batch=8, seq_len=4096,
               micro_batch_size=1, zero_stage=0)
    h = CAT.index("accelerators", "h100_sxm")

    def with_bw(t, x):
        return t._replace(hw=t.hw._replace(mem_bw_bytes_per_s=t.hw.mem_bw_bytes_per_s.at[h].set(x)))

    assert check_table_grad(base, T64, with_bw, float(T64.hw.mem_bw_bytes_per_s[h])) < 0
