"""float8 tensorwise PyTorch TP (issue 12, FP8TP; torchtitan 820504e + torchao 6243040): the whole-tensor layout
copies of the float8-all-gathered GEMM operands and the scalar amax all-reduces of every cast of a TP-sharded
DTensor (walls.tensor_parallel.float8_tp_transpose_bytes / float8_tp_amax_syncs; training_parts.setup/compute).

Reference values hand-computed from the docstring equations, batched == scalar, jax.grad vs central differences
(the walls, and setup()/compute() through the new terms), the scenario's t_elem difference equal to the
hand-computed bytes and waits, and zero wherever the terms cannot apply (bf16, tp_comm default, tp 1, SP off,
delayed scaling).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import training_rows

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.catalog import load_catalog
from mlsys_opt.scenarios import training_parts as tpart
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY as EFF
from mlsys_opt.scenarios.parts import gather
from mlsys_opt.scenarios.schema import TRAINING_PARAMS
from mlsys_opt.walls import fleet
from mlsys_opt.walls import tensor_parallel as tpw

CAT = load_catalog()
T64 = CAT.tables(dtype=jnp.float64)
MODES = TRAINING_PARAMS["tp_comm"].choices
DEFAULT, DTENSOR, ASYNC = (MODES.index(m) for m in ("default", "dtensor", "async"))
RC = TRAINING_PARAMS["recompute"].choices
FP8 = PRECISIONS.index("fp8")
DYNAMIC = TRAINING_PARAMS["fp8_scaling"].choices.index("dynamic")
TOK8B = 12 * 8192.0


def cfg8(**kw):
    """torchtitan's Jun-2025 8B row: FSDP 8 x TP 8 on 64 H100 96 GB, local batch 12 x 8192, per-op SAC, float8
    tensorwise (dynamic), vanilla (DTensor) TP."""
    return training_rows.row("h100_96gb_500w", "llama3_8b", "eth_400g", **{
        "precision": FP8, "fp8_scaling": DYNAMIC, "n_accelerators": 64, "tp": 8, "pp": 1, "cp": 1,
        "global_batch": 96, "micro_batch_size": 12, "seq_len": 8192, "recompute": RC.index("op"),
        "zero_stage": 3, "overlap": 1.0, "tp_comm": DTENSOR, **kw})


def parts(rows):
    """(p, c, s, compute) of the stacked rows, one micro-batch each (b = micro_batch_size)."""
    p = training_rows.stack(rows, len(rows))
    c = gather(p, T64, EFF)
    s = tpart.setup(p, c, EFF, T64.model.vocab_size[jnp.asarray(p.model, jnp.int32)])
    b = jnp.asarray(p.micro_batch_size, jnp.float64)
    mb = jnp.maximum(s.gb / s.dp / b, 1.0)
    mem = tpart.memory(p, c, s, b, mb)
    return p, c, s, tpart.compute(p, c, EFF, s, mem, b, mb)


# --------------------------------------------------------------------------- the walls
def test_reference_values():
    # 98304 gathered tokens x 4096 x 4 tensors x 1 B x (2 - 1/8) = 3.0199e9 B per block
    assert float(tpw.float8_tp_transpose_bytes(TOK8B, 4096.0, 1.0, 8.0)) == pytest.approx(3.01989888e9, rel=1e-12)
    assert float(tpw.float8_tp_transpose_bytes(TOK8B, 4096.0, 1.0, 1.0)) == 0.0      # no TP: nothing gathered
    assert float(tpw.float8_tp_transpose_bytes(TOK8B, 4096.0, 2.0, 8.0)) == 0.0      # bf16 GEMMs: no float8 gather
    # fp4 (0.5 B): half the bytes
    assert float(tpw.float8_tp_transpose_bytes(TOK8B, 4096.0, 0.5, 8.0)) == pytest.approx(3.01989888e9 / 2)
    # 11 casts per forward (4 activations + 7 weights), 7 output gradients: per-op SAC (F = 2) 29, no recompute 18
    assert float(tpw.float8_tp_amax_syncs(2.0)) == 29.0
    assert float(tpw.float8_tp_amax_syncs(1.0)) == 18.0


def test_walls_batched_equals_scalar_and_nan_rule():
    t = np.array([8192.0, TOK8B, 131072.0, 1.0])
    h = np.array([4096.0, 4096.0, 8192.0, 512.0])
    e = np.array([1.0, 1.0, 0.5, 2.0])
    n = np.array([2.0, 8.0, 16.0, 8.0])
    batched = np.asarray(tpw.float8_tp_transpose_bytes(t, h, e, n))
    for i in range(len(t)):
        assert batched[i] == float(tpw.float8_tp_transpose_bytes(t[i], h[i], e[i], n[i]))
    f = np.array([1.0, 2.0, 3.0])
    assert np.array_equal(np.asarray(tpw.float8_tp_amax_syncs(f)), [float(tpw.float8_tp_amax_syncs(x)) for x in f])
    assert np.isnan(float(tpw.float8_tp_transpose_bytes(TOK8B, 4096.0, 1.0, np.nan)))


def test_walls_grad_matches_finite_differences():
    x0 = jnp.asarray([TOK8B, 4096.0, 1.0, 8.0])

    def f(x):
        return tpw.float8_tp_transpose_bytes(x[0], x[1], x[2], x[3])

    g = np.asarray(jax.grad(f)(x0))
    for i in range(4):
        hh = 1e-6 * float(x0[i])
        fd = (float(f(x0.at[i].add(hh))) - float(f(x0.at[i].add(-hh)))) / (2 * hh)
        assert g[i] == pytest.approx(fd, rel=1e-6)
    # d/dtp = T·h·4·e/tp^2
    assert g[3] == pytest.approx(TOK8B * 4096.0 * 4.0 / 64.0)
    assert float(jax.grad(tpw.float8_tp_amax_syncs)(2.0)) == 11.0


# --------------------------------------------------------------------------- the scenario
def test_scenario_terms_and_scope():
    rows = [cfg8(), cfg8(tp_comm=ASYNC), cfg8(tp_comm=DEFAULT), cfg8(precision=PRECISIONS.index("fp16")),
            cfg8(tp=1, n_accelerators=8), cfg8(sequence_parallel=1), cfg8(fp8_scaling=1 - DYNAMIC),
            cfg8(recompute=RC.index("full"))]
    _, c, s, cmp = parts(rows)
    sync = np.asarray(s.tp_fp8_sync_s)
    ar = float(fleet.hierarchical_allreduce(4.0, 8.0, 1.0, c.bw_up[0], c.alpha_up[0], c.bw_out[0], c.alpha_out[0]))
    assert sync[0] == pytest.approx(29.0 * ar, rel=1e-12) and sync[1] == sync[0]
    assert sync[7] == pytest.approx(29.0 * ar, rel=1e-12)             # full recomputation re-runs the 11 too
    assert np.all(sync[2:7] == 0.0)
    # t_elem(dtensor) - t_elem(default) = L·mb·(M·bytes_per_token/mem_bw + waits): nothing else in compute()
    # depends on tp_comm
    t_elem = np.asarray(cmp.t_elem_s)
    per_tok = float(tpw.float8_tp_transpose_bytes(1.0, 4096.0, 1.0, 8.0))
    expected = 32 * (TOK8B * per_tok / float(c.mem_bw[0]) + 29.0 * ar)
    assert t_elem[0] - t_elem[2] == pytest.approx(expected, rel=1e-9)
    assert float(s.cast_bytes_per_token[0] - s.cast_bytes_per_token[2]) == pytest.approx(per_tok, rel=1e-12)
    # the remaining rows carry no float8-TP bytes: their cast bytes are low_precision_cast_bytes' alone
    assert float(s.cast_bytes_per_token[3]) == 0.0


def test_scenario_batched_equals_scalar():
    rows = [cfg8(), cfg8(tp_comm=ASYNC, micro_batch_size=4), cfg8(tp_comm=DEFAULT), cfg8(recompute=RC.index("full"))]

    def run(rs):
        out, g = jax.jit(S.training, **jit_options())(training_rows.stack(rs, 8), T64)
        return ({k: np.asarray(v)[:len(rs)] for k, v in out._asdict().items()},
                {k: np.asarray(v)[:len(rs)] for k, v in g._asdict().items()})

    training_rows.check_batched_equals_scalar(rows, run)


def test_setup_and_compute_grad_through_the_new_terms():
    p, c, _, _ = parts([cfg8()])
    vocab = T64.model.vocab_size[jnp.asarray(p.model, jnp.int32)]

    def sync(alpha):
        return tpart.setup(p, c._replace(alpha_up=alpha), EFF, vocab).tp_fp8_sync_s[0]

    def elem(bw):
        cc = c._replace(mem_bw=bw)
        ss = tpart.setup(p, cc, EFF, vocab)
        b = jnp.asarray(p.micro_batch_size, jnp.float64)
        return tpart.compute(p, cc, EFF, ss, tpart.memory(p, cc, ss, b, 1.0), b, 1.0).t_elem_s[0]

    for fn, x in ((sync, c.alpha_up), (elem, c.mem_bw)):
        g = float(jax.grad(fn)(x)[0])
        hh = 1e-6 * float(x[0])
        fd = (float(fn(x.at[0].add(hh))) - float(fn(x.at[0].add(-hh)))) / (2 * hh)
        assert np.isfinite(g) and g == pytest.approx(fd, rel=1e-5)
    # each of the 29 all-reduces is 2(g - 1) = 14 ring steps of α (4 B: latency only)
    assert float(jax.grad(sync)(c.alpha_up)[0]) == pytest.approx(29.0 * 14.0, rel=1e-3)
    training_rows.check_step_time_grad(cfg8(), ["efficiency"], T64)
