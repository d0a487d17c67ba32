"""What a torchtitan step keeps for the backward, eager against torch.compile, and FSDP2's gathered root unit
(MEMEAGER; walls.saved_activations).

References hand-counted from the code at the Dec-2024 benchmarks' commits (torchtitan 9dec370, torch 1963fc8):
- per-op SAC saves the block input and the outputs of wq, wv, SDPA, w1 and w2 (the 1st, 3rd, 5th, 7th mm);
  eager's SAC cache keeps them all, torch.compile's partitioner only those its backward reads (not w2's):
  Llama-3-8B eager 4096 + 4096 + 1024 + 4096 + 14336 + 4096 = 31,744 elements per token and layer,
  compiled 27,648; with TP 8 + SP both reduce-scatter outputs (wo's, w2's: 512 each) are cached eagerly,
  the compiled backward reads wo's only.
- FSDP2's root unit (embedding, final norm, output) stays gathered: Llama-3-8B 2·128,256·4,096 + 4,096.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from training_rows import CAT, breakdown, check_batched_equals_scalar, evaluate, row

from mlsys_opt import scenarios as S
from mlsys_opt.calibration import TRAINING_RUNS_PATH, to_settings
from mlsys_opt.scenarios.schema import TRAINING_PARAMS
from mlsys_opt.walls import parallel, saved_activations

T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training)
PAD = 8
EL = saved_activations.op_sac_activation_elements
ROOT = saved_activations.fsdp2_root_params
KERNELS = TRAINING_PARAMS["kernels"].choices
RUNTIME = TRAINING_PARAMS["fsdp_runtime"].choices
LLAMA8B = (4096.0, 4096.0, 1024.0, 14336.0)


def test_op_sac_elements_reference_values():
    assert float(EL(*LLAMA8B)) == 4096 + 4096 + 1024 + 4096 + 14336 + 4096 == 31744     # eager (the default)
    assert float(EL(*LLAMA8B, compiled=1.0)) == 31744 - 4096 == 27648                   # w2's output not saved
    # tp 8 with SP: block input 512, (2q + kv + ffn)/8 = 2944, w2 partial sum 4096, two reduce-scatters 2 x 512
    assert float(EL(*LLAMA8B, tp=8.0, t_sp=8.0)) == 512 + 2944 + 4096 + 1024
    assert float(EL(*LLAMA8B, tp=8.0, t_sp=8.0, compiled=1.0)) == 512 + 2944 + 512
    # TP without SP: the row-parallel outputs are all-reduced (not in _save_list): no reduce-scatter term
    assert float(EL(*LLAMA8B, tp=8.0)) == 4096 + 2944 + 4096
    assert parallel.op_sac_activation_elements is EL                                    # re-exported
    # 8 KB per token and layer less when compiled: 4 GiB for torchtitan Table 1 (32 layers, 2 x 8192 tokens)
    assert 2 * 8192 * 32 * 2 * (31744 - 27648) == 2**32                    # 4.0 GiB


def test_root_params_reference_values():
    v, h, e = 128256.0, 4096.0, 128256.0 * 4096.0
    assert float(ROOT(v, h, e)) == 2 * 128256 * 4096 + 4096 == 1050677248
    assert float(ROOT(v, h, e, tp=8.0)) == pytest.approx(1050677248 / 8, rel=1e-12)
    assert float(ROOT(v, h, e, pp=8.0)) == 128256 * 4096        # the first stage's embedding
    assert float(ROOT(v, h, 0.0, pp=8.0)) == 128256 * 4096      # tied: the shared table
    assert float(ROOT(v, h, 0.0)) == 128256 * 4096 + 4096       # tied head, one table


def test_walls_batched_equal_scalar_and_gradients():
    w = np.array([[4096.0, 4096.0, 1024.0, 14336.0, 1.0, 1.0, 0.0], [8192.0, 8192.0, 1024.0, 28672.0, 8.0, 8.0, 1.0],
                  [2048.0, 2048.0, 2048.0, 0.0, 2.0, 1.0, 1.0], [16384.0, 16384.0, 1024.0, 53248.0, 8.0, 8.0, 0.0]])
    batched = np.asarray(EL(*w.T[:4], tp=w[:, 4], t_sp=w[:, 5], compiled=w[:, 6]))
    for i, r in enumerate(w):
        assert batched[i] == pytest.approx(float(EL(*r[:4], tp=r[4], t_sp=r[5], compiled=r[6])), rel=1e-12)
    r = np.array([[128256.0, 4096.0, 5.25e8, 1.0, 1.0], [128256.0, 8192.0, 1.05e9, 8.0, 1.0],
                  [32000.0, 4096.0, 0.0, 2.0, 4.0]])
    batched = np.asarray(ROOT(*r.T[:3], tp=r[:, 3], pp=r[:, 4]))
    for i, x in enumerate(r):
        assert batched[i] == pytest.approx(float(ROOT(*x[:3], tp=x[3], pp=x[4])), rel=1e-12)
    # jax.grad vs central differences in the continuous widths (the flag blends linearly: d/dcompiled = -(h + RS))
    x0 = np.array([4096.0, 4096.0, 1024.0, 14336.0, 0.5])
    def f(x):
        return EL(x[0], x[1], x[2], x[3], tp=4.0, t_sp=4.0, compiled=x[4])

    g = np.asarray(jax.grad(f)(jnp.asarray(x0)))
    for i in range(5):
        step = 1e-3 * x0[i]
        up, dn = x0.copy(), x0.copy()
        up[i] += step
        dn[i] -= step
        assert g[i] == pytest.approx((float(f(up)) - float(f(dn))) / (2 * step), rel=1e-9)
    assert g[4] == pytest.approx(-(4096 + 1024))
    y0 = np.array([128256.0, 4096.0, 5.25e8])
    gr = np.asarray(jax.grad(lambda y: ROOT(y[0], y[1], y[2], tp=2.0))(jnp.asarray(y0)))
    np.testing.assert_allclose(gr, [4096 / 2, (128256 + 1) / 2, 0.5], rtol=1e-12)


def _titan_rows():
    """torchtitan Table 1's three rows at their published setup (FSDP 8, Llama 3.1 8B, local batch 2 x 8192, op SAC)."""
    base = {"n_accelerators": 8, "tp": 1, "pp": 1, "cp": 1, "global_batch": 16, "micro_batch_size": 2,
            "seq_len": 8192, "zero_stage": 3, "recompute": TRAINING_PARAMS["recompute"].choices.index("op"),
            "master_weights": TRAINING_PARAMS["master_weights"].choices.index("fp32_param")}
    out = []
    for kern in ("eager", "fused"):
        for runtime in ("torch_fsdp2", "torch_fsdp2_root"):
            out.append(row("h100_96gb_500w", "llama3_8b", "eth_400g", **base, kernels=KERNELS.index(kern),
                           fsdp_runtime=RUNTIME.index(runtime)))
    return out


def test_scenario_memory_moves_as_counted():
    rows = _titan_rows()
    o, _ = check_batched_equals_scalar(rows, lambda r: evaluate(TRAIN, r, PAD, T64))
    mem = o["memory_per_accelerator_bytes"]
    tokens, layers = 2 * 8192, 32
    # eager - compiled: w2's output, 4096 bf16 elements per token and layer, whatever the runtime
    assert mem[0] - mem[2] == pytest.approx(tokens * layers * 2 * 4096, rel=1e-9)
    assert mem[1] - mem[3] == pytest.approx(tokens * layers * 2 * 4096, rel=1e-9)
    # the root unit gathered in bf16 beside two blocks that no longer carry its share
    _, c, _, m, *_ = breakdown(rows, PAD, T64)
    p_total = float(c.n_params[0])
    root = 2 * 128256 * 4096 + 4096
    want = 2 * (2 * (p_total - root) / layers + root) - 2 * 2 * p_total / layers
    assert float(m.states_bytes[1] - m.states_bytes[0]) == pytest.approx(want, rel=1e-9)
    assert mem[1] - mem[0] == pytest.approx(want, rel=1e-9)
    assert 1.8 * 2**30 < want < 1.9 * 2**30
    # and nothing else: step times move only through the activation bytes' HBM traffic (compiled a bit faster)
    assert o["step_time_s"][2] <= o["step_time_s"][0]


def test_published_rows_carry_their_setup():
    """Each torchtitan Dec-2024 row says eager or torch.compile (id, verification); the setup maps it to kernels,
    and the rows ran torch 1963fc8's FSDP2 (root kept gathered)."""
    rows = [r for r in json.loads(TRAINING_RUNS_PATH.read_text())["rows"] if r["id"].startswith("titan24")]
    assert len(rows) == 18
    for r in rows:
        settings = to_settings("training", r["setup"]).settings
        compiled = "torch.compile" in r["verification"]
        assert settings["kernels"] == ("fused" if compiled else "eager"), r["id"]
        assert r["id"].endswith("_eager") == (not compiled), r["id"]
        assert settings["fsdp_runtime"] == "torch_fsdp2_root", r["id"]


def test_fsdp_runtime_is_validated_at_the_boundary():
    """The new choice parses from a spec (TOML / CLI / Python share load_space) and a wrong one is refused
    naming the allowed values."""
    from mlsys_opt.errors import MlsysOptError
    from mlsys_opt.space.spec import load_space
    setup = next(r for r in json.loads(TRAINING_RUNS_PATH.read_text())["rows"] if r["id"] == "titan24_t1_8b_n8_eager")
    fixed = {k: v for k, v in to_settings("training", setup["setup"]).settings.items() if k != "tp"}
    spec = {"scenario": "training", "axes": {"tp": [1]}, "objectives": {"minimize": ["step_time_s"]}}
    fixed.update(model="llama3_8b", n_tokens="1e9 token")
    space = load_space({**spec, "fixed": fixed})
    assert space.constants["fsdp_runtime"] == RUNTIME.index("torch_fsdp2_root") == 2
    assert space.constants["kernels"] == KERNELS.index("eager")
    with pytest.raises(MlsysOptError, match="torch_fsdp2_root"):
        load_space({**spec, "fixed": {**fixed, "fsdp_runtime": "torch_fsdp3"}})
