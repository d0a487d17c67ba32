"""Training memory per GPU (issue 12, "every published configuration feasible"): optimizer-state bytes
(master_weights, optimizer_moments), FP8 activation storage, activation offload to host memory (and its
host-link time), the exposed HBM of GB200.

Reference values hand-computed (equations in walls/parallel.py docstrings), batched == scalar, jax.grad vs
finite differences, float32 stays float32, the scenario's wiring against hand-computed bytes, and the ten
published rows that were infeasible before.  One jitted scenario for the module (padded batches).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.catalog import load_catalog
from mlsys_opt.scenarios import schema
from mlsys_opt.scenarios import training_parts as tparts
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY as EFF
from mlsys_opt.scenarios.training import training_common
from mlsys_opt.walls import parallel
from test_training_physics import cfg as physics_cfg

CAT = load_catalog()
T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
FP16, FP8 = PRECISIONS.index("fp16"), PRECISIONS.index("fp8")
MASTER = schema.TRAINING_PARAMS["master_weights"].choices
MOMENTS = schema.TRAINING_PARAMS["optimizer_moments"].choices
FULL, SELECTIVE = schema.RECOMPUTE.index("full"), schema.RECOMPUTE.index("selective")
PAD = 8


def idx(kind, name):
    return CAT.index(kind, name)


def cfg(**kw):
    """One Llama-3-8B GPU (tp = pp = 1, no DP): step = compute time, memory = states + activations + logits.

    Every other parameter as in test_training_physics.cfg (one list of the scenario's parameters)."""
    return physics_cfg(**{**dict(model=idx("models", "llama3_8b"), tp=1, pp=1, n_tokens=1e9, n_accelerators=1,
                                 global_batch=8, seq_len=4096, recompute=SELECTIVE, zero_stage=0,
                                 micro_batch_size=1), **kw})


def run(rows):
    """Evaluate up to PAD config dicts in one call (one compile for the module); numpy outputs."""
    assert len(rows) <= PAD
    padded = list(rows) + [rows[0]] * (PAD - len(rows))
    p = S.params_from_dict("training", {k: np.asarray([r[k] for r in padded]) for k in padded[0]})
    o, g = TRAIN(p, T64)
    return {k: np.asarray(v)[:len(rows)] for k, v in o._asdict().items()}, \
        {k: np.asarray(v)[:len(rows)] for k, v in g._asdict().items()}


# --------------------------------------------------------------------------- walls: reference values
def test_optimizer_state_bytes_reference_values():
    """master (fp32 4 / remainders 2 / none 0 / fp32_param 4, 0 when the weights are fp32) + moments (fp32 8 /
    bf16 4)."""
    assert MASTER == ("fp32", "remainders", "none", "fp32_param") and MOMENTS == ("fp32", "bf16")
    cases = [(2.0, 0, 0, 12.0),   # Megatron distributed optimizer (distrib_optimizer.md: 4 + 4 + 4)
             (2.0, 1, 0, 10.0),   # Apex store_param_remainders (NeMo 1.x with bf16 O2)
             (2.0, 2, 1, 4.0),    # pure-bf16 AdamW / Apex dtype=bf16
             (2.0, 0, 1, 8.0),    # precision-aware optimizer, bf16 moments
             (2.0, 2, 0, 8.0),    # Gopher: bf16 parameters, fp32 Adam state
             (2.0, 3, 0, 12.0),   # PyTorch FSDP on an fp32 model: the fp32 parameter is the master (FSDP16)
             (3.0, 0, 0, 12.0),   # fp8 (bf16 weight + cached cast) keeps the 12 B default
             (4.0, 0, 0, 8.0), (4.0, 1, 0, 8.0), (4.0, 2, 1, 4.0), (4.0, 3, 0, 8.0)]   # fp32 weights are the master
    w, m, v, want = (np.array(c) for c in zip(*cases))
    got = parallel.optimizer_state_bytes(w, m.astype(np.int32), v.astype(np.int32))
    np.testing.assert_array_equal(np.asarray(got), want)
    # the default reproduces the precision table the scenario used before (OPTIMIZER_BYTES)
    np.testing.assert_array_equal(np.asarray(parallel.optimizer_state_bytes(np.array(parallel.WEIGHT_BYTES), 0, 0)),
                                  np.array(parallel.OPTIMIZER_BYTES))


def test_low_precision_activation_scale_reference_values():
    """(22 + 7e)/34 below 16 bits: fp8 29/34 (GEMM inputs QKV 2 -> 1, MLP 2 -> 1, down 8 -> 4, + a 1-byte
    copy of the projection input next to the BF16 attention output); fp4 25.5/34 = 0.75; 16/32 bit: 1."""
    e = np.array([1.0, 0.5, 2.0, 4.0])
    np.testing.assert_allclose(np.asarray(parallel.low_precision_activation_scale(e)),
                               [29.0 / 34.0, 0.75, 1.0, 1.0], rtol=1e-15)


def test_offload_walls_reference_values():
    """resident = F·(L - k) + min(k, 1) (k clipped to [0, L]); exposed = max(0, X - t/3) + max(0, X - 2t/3)."""
    r = parallel.offload_resident_layers(np.array([80.0, 80.0, 8.0, 10.0, 7.0]), np.array([40.0, 0.0, 3.0, 20.0, 1.0]),
                                         np.array([1.0, 1.0, 4.0, 2.0, 19.75]))
    np.testing.assert_allclose(np.asarray(r), [41.0, 80.0, 21.0, 1.0, 19.75 * 6 + 1], rtol=1e-15)
    x = 182e9 / 450e9
    e = parallel.offload_exposed_s(np.array([182e9, 182e9, 182e9, 0.0]), np.array([450e9, 450e9, 450e9, 450e9]),
                                   np.array([4.0, 0.6, 0.0, 1.0]))
    np.testing.assert_allclose(np.asarray(e), [0.0, (x - 0.2) + (x - 0.4), 2 * x, 0.0], rtol=1e-12)
    # no host link in the catalog (0 B/s): read as 1 B/s, finite
    assert np.isfinite(float(parallel.offload_exposed_s(1e9, 0.0, 1.0)))


def test_walls_batched_equals_scalar_and_float32_stays_float32():
    rng = np.random.default_rng(3)
    n = 16
    w = rng.choice([2.0, 3.0, 4.0], n)
    m, v = rng.integers(0, 3, n), rng.integers(0, 2, n)
    e = rng.choice([0.5, 1.0, 2.0, 4.0], n)
    layers, k, f = rng.uniform(1, 80, n), rng.uniform(0, 90, n), rng.uniform(1, 20, n)
    xb, bw, t = rng.uniform(0, 1e12, n), rng.uniform(1e9, 1e12, n), rng.uniform(0, 10, n)
    batched = [parallel.optimizer_state_bytes(w, m, v), parallel.low_precision_activation_scale(e),
               parallel.offload_resident_layers(layers, k, f), parallel.offload_exposed_s(xb, bw, t)]
    for i in range(n):
        one = [parallel.optimizer_state_bytes(w[i], int(m[i]), int(v[i])),
               parallel.low_precision_activation_scale(e[i]),
               parallel.offload_resident_layers(layers[i], k[i], f[i]),
               parallel.offload_exposed_s(xb[i], bw[i], t[i])]
        for b, s in zip(batched, one):
            assert float(np.asarray(b)[i]) == pytest.approx(float(s), rel=1e-12)
    f32 = jnp.float32
    outs = [parallel.optimizer_state_bytes(jnp.asarray(w, f32), m, v),
            parallel.low_precision_activation_scale(jnp.asarray(e, f32)),
            parallel.offload_resident_layers(jnp.asarray(layers, f32), jnp.asarray(k, f32), jnp.asarray(f, f32)),
            parallel.offload_exposed_s(jnp.asarray(xb, f32), jnp.asarray(bw, f32), jnp.asarray(t, f32))]
    assert all(o.dtype == f32 and bool(jnp.all(jnp.isfinite(o))) for o in outs)


def test_new_continuous_terms_grad_vs_finite_differences():
    """jax.grad against central differences, away from the kinks (max, min, clip, e < 2)."""
    def fd(fn, x, h):
        return (fn(x + h) - fn(x - h)) / (2 * h)

    checks = [
        (lambda e: parallel.low_precision_activation_scale(e), 0.8, 1e-4),
        (lambda f: parallel.offload_resident_layers(80.0, 40.0, f), 3.0, 1e-4),
        (lambda n: parallel.offload_resident_layers(n, 10.0, 2.5), 40.0, 1e-4),
        (lambda k: parallel.offload_resident_layers(40.0, k, 2.5), 12.3, 1e-4),
        (lambda x: parallel.offload_exposed_s(x, 450e9, 0.6), 182e9, 1e6),       # both phases exposed
        (lambda b: parallel.offload_exposed_s(182e9, b, 0.9), 450e9, 1e6),       # forward phase only
        (lambda t: parallel.offload_exposed_s(182e9, 450e9, t), 0.6, 1e-6),
    ]
    for fn, x0, h in checks:
        g = float(jax.grad(fn)(jnp.asarray(x0, jnp.float64)))
        num = float(fd(fn, jnp.asarray(x0, jnp.float64), h))
        assert g == pytest.approx(num, rel=1e-6, abs=1e-12), fn
    # the exposure's derivative in the bytes is 1/β per exposed phase (2 here, 1 behind t = 0.9 s)
    assert float(jax.grad(lambda x: parallel.offload_exposed_s(x, 450e9, 0.6))(182e9)) == pytest.approx(2 / 450e9)


# --------------------------------------------------------------------------- scenario wiring
def test_scenario_optimizer_bytes_hand_computed():
    """One GPU, no sharding, full recomputation (Kempner single-H200 shape): memory =
    P·(w + g + o) + L·b·2·s·h (layer inputs) + 4·s·b·V (fp32 logits); each choice moves P·Δo."""
    m = CAT.entry("models", "llama3_8b")
    p, layers, h, v = (float(m[k]) for k in ("n_params", "n_layers", "hidden_dim", "vocab_size"))
    s, b = 4096.0, 4.0
    kem = dict(hardware=idx("accelerators", "h200"), recompute=FULL, micro_batch_size=4)
    o, g = run([cfg(**kem), cfg(**kem, master_weights=1), cfg(**kem, optimizer_moments=1),
                cfg(**kem, master_weights=2, optimizer_moments=1, main_grads=1)])
    mem = o["memory_per_accelerator_bytes"]
    act = layers * b * 2.0 * s * h + 4.0 * s * b * v
    np.testing.assert_allclose(mem, [p * 18 + act, p * 16 + act, p * 14 + act, p * 8 + act], rtol=1e-12)
    # KempnerForge's single-H200 run (bf16 model, torch AdamW): 80.7 GB reported; the model 77.0e9 B fits
    assert g["memory"][3] < 0 < g["memory"][0]


def test_scenario_fp8_stores_gemm_inputs_in_8_bits():
    """Per-sequence activations (memory(b = 2) - memory(b = 1)) at fp8 / at fp16, selective recomputation:
    (29·s·h + LSE)/(34·s·h + LSE) after removing the per-sequence logits 4·s·V; full recomputation: equal."""
    m = CAT.entry("models", "llama3_8b")
    h, v, a = (float(m[k]) for k in ("hidden_dim", "vocab_size", "n_heads"))
    s = 4096.0
    rows = [cfg(precision=pr, micro_batch_size=bb, recompute=rc) for rc in (SELECTIVE, FULL)
            for pr in (FP16, FP8) for bb in (1, 2)]
    mem = run(rows)[0]["memory_per_accelerator_bytes"]
    logits = 4.0 * s * v
    lse = 4.0 * a * s
    ratio = (mem[3] - mem[2] - logits) / (mem[1] - mem[0] - logits)
    assert ratio == pytest.approx((29.0 * s * h + lse) / (34.0 * s * h + lse), rel=1e-12)
    assert mem[7] - mem[6] == pytest.approx(mem[5] - mem[4], rel=1e-12)


def test_scenario_activation_offload_memory_and_host_time():
    """k offloaded layers (pp = 1, one micro-batch in flight): k = 1 saves nothing (one layer in transit),
    memory falls by (k - 1) layers, the step grows by offload_exposed_s(M·k·b·A, host_bw, t) with A the
    bytes of one sequence and layer (34·s·h + LSE, 16-bit, selective, flash); on GB200's C2C link
    behind a long compute nothing is exposed."""
    m = CAT.entry("models", "llama3_8b")
    h, a, layers = (float(m[k]) for k in ("hidden_dim", "n_heads", "n_layers"))
    s, mb = 4096.0, 8.0
    per_layer = 34.0 * s * h + 4.0 * a * s
    gb200 = dict(hardware=idx("accelerators", "gb200"), model=idx("models", "llama3_70b"), seq_len=8192,
                 micro_batch_size=2, global_batch=4)
    o, _ = run([cfg(), cfg(offload_layers=1), cfg(offload_layers=2), cfg(offload_layers=4),
                cfg(offload_layers=32), cfg(offload_layers=99), cfg(**gb200), cfg(**gb200, offload_layers=40)])
    mem, step = o["memory_per_accelerator_bytes"], o["step_time_s"]
    assert mem[1] == mem[0]
    assert mem[0] - mem[2] == pytest.approx(per_layer, rel=1e-12)
    assert mem[0] - mem[3] == pytest.approx(3 * per_layer, rel=1e-12)
    assert mem[5] == mem[4] == pytest.approx(mem[0] - (layers - 1) * per_layer, rel=1e-12)   # k clipped to L
    host_bw = float(CAT.entry("accelerators", "h100_sxm")["host_bw_bytes_per_s"])
    # the window is the compute: the step less the optimizer's pass over the 8B states (fused Adam, one GPU:
    # 2·12 + 4 + 2 B per parameter at the achieved HBM rate; walls.parallel.optimizer_update_bytes)
    p1 = S.params_from_dict("training", {k: np.asarray([v]) for k, v in cfg().items()})
    c1 = training_common(p1, T64, EFF)
    t_opt = float(parallel.optimizer_update_bytes(float(m["n_params"]) * 12.0, 12.0, 4.0, 2.0) / c1.mem_bw[0])
    assert t_opt == pytest.approx(float(tparts.setup(p1, c1, EFF, float(m["vocab_size"])).optimizer_update_s[0]),
                                  rel=1e-9)
    t_c = step[0] - t_opt
    want = float(parallel.offload_exposed_s(mb * 32 * per_layer, host_bw, t_c))
    assert want > 0 and step[4] - step[0] == pytest.approx(want, rel=1e-9)
    assert step[1] - step[0] == pytest.approx(float(parallel.offload_exposed_s(mb * per_layer, host_bw, t_c)),
                                              rel=1e-9, abs=1e-15)
    assert step[7] == step[6] and mem[7] < mem[6]


def test_gb200_exposes_189471_mib():
    """Catalog memory is what the device exposes (issue 12 item 11): nvidia-smi 189,471 MiB per GB200 GPU."""
    assert float(CAT.entry("accelerators", "gb200")["mem_capacity_bytes"]) == 189471 * 2.0 ** 20


def test_setup_keys_map_onto_the_new_parameters():
    from mlsys_opt.calibration import setup as SU
    mapped = SU.to_settings("training", {"master_weights": "remainders", "optimizer_moments": "bf16",
                                         "offload_layers": 40})
    assert mapped.settings == {"master_weights": "remainders", "optimizer_moments": "bf16", "offload_layers": 40}
    assert not mapped.pending and not mapped.flags


# --------------------------------------------------------------------------- the published rows
INFEASIBLE_BEFORE = ("palm_t3_gopher_280b", "nemo2407_gpt3_20b_n64", "nemo2407_gpt3_175b_n512",
                     "nemo2407_nemotron_340b_n128", "nemo2407_llama3_8b_n8", "nemo_longseq_h100_llama2_7b_s4k_n4",
                     "mbridge2604_llama3_70b_gb200_fp8_n64", "mbridge2604_llama3_1_405b_gb200_fp8_n256",
                     "mbridge2604_llama3_1_405b_gb200_mxfp8_n256", "kempner26_h200_7b_n1_single")


def test_the_ten_rows_infeasible_before_fit_with_their_published_settings():
    from mlsys_opt import calibration as C
    rows = [r for r in C.dataset("all").rows if r.id in INFEASIBLE_BEFORE]
    assert sorted(r.id for r in rows) == sorted(INFEASIBLE_BEFORE)
    diag = C.diagnostics(C.DEFAULT_EFFICIENCY, C.build(rows))
    assert diag["feasible"].all(), diag[["memory_gib", "capacity_gib"]]
