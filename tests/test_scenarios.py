"""Scenarios: seed numbers, batched == scalar, gradients, finiteness, monotonicity.

Compiles are the cost here, so every jitted function is built once per module
and every property runs on one batch in one call.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS, SECONDS_PER_DAY, SECONDS_PER_HOUR, SECONDS_PER_YEAR
from mlsys_opt.catalog import load_catalog
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY, Efficiency
from mlsys_opt.walls import fleet

CAT = load_catalog()
T64 = CAT.tables(dtype=jnp.float64)
T32 = CAT.tables()
_TRAIN = jax.jit(S.training, **jit_options())
_SERVE = jax.jit(S.serving, **jit_options())


def TRAIN(p, tables, eff=DEFAULT_EFFICIENCY):
    """The jitted training scenario, the efficiency always passed (one compile per batch shape, not two)."""
    return _TRAIN(p, tables, eff)


def SERVE(p, tables, eff=DEFAULT_EFFICIENCY):
    """The jitted serving scenario, the efficiency always passed (as TRAIN)."""
    return _SERVE(p, tables, eff)


FP16 = PRECISIONS.index("fp16")


def idx(kind, name):
    return CAT.index(kind, name)


def training_dict(**kw):
    d = dict(hardware=idx("accelerators", "h100_sxm"), model=idx("models", "llama3_70b"),
             region=idx("regions", "quebec"), fabric=idx("fabrics", "ib_ndr"), precision=FP16,
             tp=8, pp=1, efficiency=0.4, pricing=1, depreciation=3 * SECONDS_PER_YEAR,
             maintenance_frac_per_year=0.05, n_tokens=1e12, n_accelerators=512, ep=1,
             microbatches=8, virtual_stages=1, global_batch=2048, seq_len=2048, recompute=1,
             zero_stage=1, overlap=0.5, checkpoint_interval=0.0, checkpoint_bw=100e9, recovery=600.0,
             attention=0, cp=1, sequence_parallel=0, shard_group=0, micro_batch_size=0, tp_overlap=0.0,
             ep_overlap=0.0, cp_overlap=1.0, stage_balance=0, moe_capacity_factor=0.0, moe_imbalance=1.0,
             straggler_factor=1.0, failure_rate_per_gpu_hour=0.0, kernels=0, main_grads=0,
             master_weights=0, optimizer_moments=0, offload_layers=0, ep_dispatcher=0, moe_node_limit=0)
    d.update(kw)
    return d


def serving_dict(**kw):
    d = dict(hardware=idx("accelerators", "h100_sxm"), model=idx("models", "llama3_70b"),
             region=idx("regions", "us_avg"), fabric=idx("fabrics", "ib_ndr"), precision=FP16,
             tp=4, pp=1, efficiency=0.5, pricing=0, depreciation=3 * SECONDS_PER_YEAR,
             maintenance_frac_per_year=0.05, request_rate=5.0, prompt_tokens=1024, output_tokens=256,
             batch=16, replicas=0, max_utilization=0.8, duration=SECONDS_PER_YEAR,
             prompt_cv=0.0, output_cv=0.0, kv_precision=0, chunk_size=0, disaggregated=0, prefill_fraction=0.5,
             spec_k=0, spec_acceptance=0.7, draft_cost_frac=0.05, prefix_hit_rate=0.0, offload=0, ep=1,
             moe_imbalance=1.0, scheduler=0, scheduler_steps=1)
    d.update(kw)
    return d


def stack(dicts):
    """List of param dicts -> one dict of arrays (rows)."""
    return {k: np.asarray([d[k] for d in dicts]) for k in dicts[0]}


def logu(rng, lo, hi, n):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def random_params(scenario, n, seed=0, dtype=np.float64):
    """n configurations over ALL catalog rows and wide parameter ranges (many infeasible)."""
    rng = np.random.default_rng(seed)
    nk = {k: len(CAT.names(k)) for k in ("accelerators", "models", "regions", "fabrics")}
    v = dict(hardware=rng.integers(0, nk["accelerators"], n), model=rng.integers(0, nk["models"], n),
             region=rng.integers(0, nk["regions"], n), fabric=rng.integers(0, nk["fabrics"], n),
             precision=rng.integers(0, len(PRECISIONS), n), tp=2.0 ** rng.integers(0, 7, n),
             pp=rng.integers(1, 129, n).astype(float), efficiency=logu(rng, 1e-4, 1.0, n),
             pricing=rng.integers(0, 2, n), depreciation=logu(rng, 1.0, 10 * SECONDS_PER_YEAR, n),
             maintenance_frac_per_year=rng.uniform(0, 1, n))
    if scenario == "training":
        v.update(n_tokens=logu(rng, 1.0, 1e14, n), n_accelerators=np.round(logu(rng, 1, 1e5, n)),
                 ep=2.0 ** rng.integers(0, 9, n), microbatches=np.round(logu(rng, 1, 256, n)),
                 virtual_stages=rng.integers(1, 5, n).astype(float),
                 global_batch=np.round(logu(rng, 1, 1e5, n)), seq_len=np.round(logu(rng, 1, 131072, n)),
                 recompute=rng.integers(0, 4, n), zero_stage=rng.integers(0, 4, n).astype(float),
                 overlap=rng.uniform(0, 1, n),
                 checkpoint_interval=np.where(rng.uniform(size=n) < 0.5, 0.0, logu(rng, 1.0, 1e8, n)),
                 checkpoint_bw=logu(rng, 1.0, 1e13, n), recovery=rng.uniform(0, 1e5, n),
                 attention=rng.integers(0, 2, n), cp=2.0 ** rng.integers(0, 5, n),
                 sequence_parallel=rng.integers(0, 2, n),
                 shard_group=np.where(rng.uniform(size=n) < 0.5, 0.0, 2.0 ** rng.integers(0, 8, n)),
                 micro_batch_size=np.where(rng.uniform(size=n) < 0.5, 0.0, 2.0 ** rng.integers(0, 5, n)),
                 tp_overlap=rng.uniform(0, 1, n), ep_overlap=rng.uniform(0, 1, n), cp_overlap=rng.uniform(0, 1, n),
                 stage_balance=rng.integers(0, 2, n), moe_capacity_factor=rng.uniform(0, 2, n),
                 moe_imbalance=rng.uniform(1, 3, n), straggler_factor=rng.uniform(1, 2, n),
                 failure_rate_per_gpu_hour=np.where(rng.uniform(size=n) < 0.5, 0.0, logu(rng, 1e-7, 1e-2, n)),
                 kernels=rng.integers(0, 4, n), main_grads=rng.integers(0, 2, n),
                 master_weights=rng.integers(0, 4, n), optimizer_moments=rng.integers(0, 2, n),
                 offload_layers=rng.integers(0, 3, n), ep_dispatcher=rng.integers(0, 2, n),
                 moe_node_limit=rng.integers(0, 9, n), cp_comm_type=rng.integers(0, 2, n),
                 kv_repeat=rng.integers(0, 2, n), param_sync=rng.integers(0, 2, n),
                 parallel_block=rng.integers(0, 2, n), fp8_scaling=rng.integers(0, 2, n),
                 loss_kernel=rng.integers(0, 4, n),
                 last_stage_layers=np.where(rng.uniform(size=n) < 0.5, 0, rng.integers(1, 40, n)),
                 tp_comm=rng.integers(0, 3, n),
                 accelerators_per_node=np.where(rng.uniform(size=n) < 0.5, 0, rng.choice([2, 4, 8], n)),
                 pipeline_engine=rng.integers(0, 2, n),
                 attention_kernel=rng.integers(0, 2, n), optimizer_kernel=rng.integers(0, 2, n),
                 loss_parallel=rng.integers(0, 2, n), grad_sync=rng.integers(0, 2, n), fsdp_runtime=rng.integers(0, 2, n),
                 tp_embedding=rng.integers(0, 2, n), memory_reserve_frac=rng.uniform(0, 0.5, n),
                 pp_overlap=rng.uniform(0, 1, n), pp_schedule=rng.integers(0, 2, n), recompute_norm=rng.integers(0, 2, n),
                 dp_bucket_params=np.where(rng.uniform(size=n) < 0.5, 0.0, logu(rng, 1e5, 1e10, n)))
        v["microbatches"] = np.where(rng.uniform(size=n) < 0.3, 0.0, v["microbatches"])
    else:
        v.update(request_rate=np.where(rng.uniform(size=n) < 0.05, 0.0, logu(rng, 1e-3, 1e6, n)),
                 prompt_tokens=np.round(logu(rng, 1, 131072, n)),
                 output_tokens=np.round(logu(rng, 1, 32768, n)), batch=np.round(logu(rng, 1, 4096, n)),
                 replicas=np.where(rng.uniform(size=n) < 0.5, 0.0, np.round(logu(rng, 1, 1e4, n))),
                 max_utilization=rng.uniform(0.01, 0.999, n), duration=logu(rng, 1.0, 1e10, n),
                 prompt_cv=rng.uniform(0, 3, n), output_cv=rng.uniform(0, 3, n),
                 kv_precision=rng.integers(0, len(PRECISIONS) + 1, n),
                 chunk_size=np.where(rng.uniform(size=n) < 0.5, 0.0, 2.0 ** rng.integers(4, 14, n)),
                 disaggregated=rng.integers(0, 2, n), prefill_fraction=rng.uniform(0.01, 0.99, n),
                 spec_k=np.where(rng.uniform(size=n) < 0.5, 0.0, rng.integers(1, 9, n)),
                 spec_acceptance=rng.uniform(0, 0.999, n), draft_cost_frac=rng.uniform(0, 0.999, n),
                 prefix_hit_rate=rng.uniform(0, 1, n), offload=rng.integers(0, 3, n),
                 ep=2.0 ** rng.integers(0, 5, n), moe_imbalance=rng.uniform(1, 3, n),
                 scheduler=rng.integers(0, 2, n), scheduler_steps=rng.integers(1, 17, n).astype(float))
    ints = S.INT_PARAMS[scenario]
    return S.PARAMS_TYPES[scenario](**{k: jnp.asarray(v[k], jnp.int32 if k in ints else dtype)
                                       for k in S.PARAMS_TYPES[scenario]._fields})


def no_overheads(tables):
    """Tables with communication, HBM traffic and failures switched off (huge bw, MTBF)."""
    big = 1e30
    hw = tables.hw._replace(mem_bw_bytes_per_s=tables.hw.mem_bw_bytes_per_s * 0 + big,
                            scaleup_bw_bytes_per_s=tables.hw.scaleup_bw_bytes_per_s * 0 + big,
                            mtbf_s=tables.hw.mtbf_s * 0 + big)
    fab = tables.fabric._replace(bw_bytes_per_s=tables.fabric.bw_bytes_per_s * 0 + big,
                                 latency_s=tables.fabric.latency_s * 0)
    return tables._replace(hw=hw, fabric=fab)


# The seeds' model: η as given (no GEMM-vs-step split), no tile factor, dispatch or elementwise time,
# and global efficiency factors instead of the per-part achievable rates (issue 19: achievable=0).
IDEAL = DEFAULT_EFFICIENCY._replace(compute_eff_scale=1.0, matmul_rows_half=0.0, dispatch_s_per_layer=0.0,
                                    scaleup_latency_s=0.0, elementwise_traffic_scale=0.0, achievable=0.0)


# --------------------------------------------------------------------------- seed numbers
def test_gpt3_on_1024_a100_is_23_days_without_overheads():
    """Seed 000 §3: 6·175e9·300e9 / (1024·312e12·0.5) = 1.97e6 s ≈ 23 days."""
    p = S.params_from_dict("training", training_dict(
        hardware=idx("accelerators", "a100_80gb"), model=idx("models", "gpt3_175b"), tp=1, pp=1,
        n_accelerators=1024, efficiency=0.5, n_tokens=300e9, global_batch=1536, seq_len=2048,
        microbatches=1, recompute=0, overlap=1.0, checkpoint_bw=1e30, recovery=0.0, attention=1))
    o, g = TRAIN(p, no_overheads(T64), IDEAL)
    six_pd = 6 * 175e9 * 300e9 / (1024 * 312e12 * 0.5)
    assert six_pd == pytest.approx(1.97e6, rel=2e-3)
    # Eager attention executes the full score square: 12·L·(a·d)·s per token on top of 6P
    # (PaLM App. B's count; MFU counts the causal half, see test_training_physics).
    attn = 12 * 96 * (96 * 128) * 2048 / (6 * 175e9)
    assert float(o.time_to_train_s) == pytest.approx(six_pd * (1 + attn), rel=1e-6)
    assert float(o.time_to_train_s) / SECONDS_PER_DAY == pytest.approx(23.0, rel=0.05)
    assert float(o.goodput) == pytest.approx(1.0, abs=1e-9)
    assert float(o.scaling_efficiency) == pytest.approx(1.0, abs=1e-9)
    # MFU counts the causal half of the score square (f = 1 - 2047/4096): below η by that much.
    f = 1 - 2047 / (2 * 2048)
    assert float(o.mfu) == pytest.approx(0.5 * (1 + attn * f) / (1 + attn), rel=1e-9)


def test_llama3_70b_decode_on_one_h100():
    """Seed 000 §4.2: 140 GB / 3.35 TB/s = 41.8 ms per token at batch 1."""
    # The seed's peak bandwidth: the global-factor model (issue 19's achievable rates off).
    eff = DEFAULT_EFFICIENCY._replace(mem_bw_eff=1.0, dispatch_s_per_layer=0.0, achievable=0.0)
    p = S.params_from_dict("serving", serving_dict(tp=1, pp=1, batch=1, prompt_tokens=1,
                                                   output_tokens=1, request_rate=0.1))
    o, g = SERVE(p, T64, eff)
    # Catalog: 70.6e9 params (seed rounds to 140 GB); a step reads the KV at the mean context
    # prompt + output/2 = 1.5 tokens of 327,680 B.
    exact = (70.6e9 * 2 + 1.5 * 327_680) / 3.35e12
    assert float(o.itl_s) == pytest.approx(exact, rel=1e-9)
    assert float(o.itl_s) == pytest.approx(41.8e-3, rel=0.01)
    assert int(o.bottleneck) == 1                       # memory-bound
    assert float(g.memory) > 0                          # 141 GB does not fit in 80 GB


def test_deepseek_v3_serving_kv_uses_the_mla_latent():
    """DeepSeek-V3 caches 512 + 64 = 576 MLA elements per layer per token (arXiv:2412.19437 §2.1.1)."""
    p = S.params_from_dict("serving", serving_dict(model=idx("models", "deepseek_v3"), tp=8, batch=16,
                                                   prompt_tokens=1024, output_tokens=256))
    o, _ = SERVE(p, T64, DEFAULT_EFFICIENCY)
    assert float(o.kv_cache_bytes) == 61 * 576 * (1024 + 256) * 16 * 2         # 70,272 B per token, bf16
    # The same entry without the latent falls back to 2·L·H_kv·d (56.9x more).
    no_mla = T64._replace(model=T64.model._replace(kv_latent_dim=T64.model.kv_latent_dim * 0))
    o0, _ = SERVE(p, no_mla, DEFAULT_EFFICIENCY)
    assert float(o0.kv_cache_bytes) == 2 * 61 * 128 * 128 * (1024 + 256) * 16 * 2
    assert float(o0.itl_s) > float(o.itl_s)


def test_seed003_audit_512_h100_quebec():
    """Seed 003: 512 H100 (64 DGX), TP=8, PP=1, DP=64, batch 4 per GPU, Quebec."""
    d = training_dict()
    o, g = TRAIN(S.params_from_dict("training", d), T64)
    assert float(o.dp) == 64 and float(o.n_accelerators) == 512
    assert int(o.bottleneck) == 0                       # compute-bound per GPU
    assert all(float(x) <= 0 for x in g), g             # a feasible configuration
    assert 0.5 < float(o.scaling_efficiency) < 1.0
    # Cluster MTBF: 50,000 h / 512 = 97.7 h ("~98 h"), and goodput is the steady state with it.
    mtbf = float(fleet.cluster_mtbf_s(T64.hw.mtbf_s[d["hardware"]], 512))
    assert mtbf / SECONDS_PER_HOUR == pytest.approx(50_000 / 512, rel=1e-9)
    delta = 70.6e9 * (2 + 12) / 100e9
    tau = np.sqrt(2 * delta * mtbf)
    assert float(o.goodput) == pytest.approx(1 - delta / tau - (tau / 2 + 600) / mtbf, rel=1e-9)

    # The same job sized to a 30-day run (time is linear in n_tokens).
    n30 = d["n_tokens"] * 30 * SECONDS_PER_DAY / float(o.time_to_train_s)
    # four rows (quebec, poland) x (cloud, on-prem) as [4] region / pricing / tp columns beside scalars: the
    # layout test_scalar_inputs_give_scalar_outputs_and_broadcast compiles (one program for both)
    rows = training_dict(n_tokens=n30, tp=np.full(4, 8.0), pricing=np.array([0, 1, 0, 1]),
                         region=np.array([idx("regions", r) for r in ("quebec", "quebec", "poland", "poland")]))
    o30, _ = TRAIN(S.params_from_dict("training", rows), T64)
    days = np.asarray(o30.time_to_train_s) / SECONDS_PER_DAY
    np.testing.assert_allclose(days, 30.0, rtol=1e-9)
    hours = 30 * 24
    kwh_it = 512 * 700 * hours / 1e3
    carbon = np.asarray(o30.carbon_kg)
    np.testing.assert_allclose(carbon[:2], kwh_it * 1.10 * 20 / 1e3, rtol=1e-9)   # ~5.7 t CO2e
    assert 1e3 < carbon[0] < 1e4
    assert 40 < carbon[2] / carbon[0] < 80                # seed: Poland ~41x carbon (x PUE ratio)
    tco = np.asarray(o30.tco_usd)
    assert tco[0] == pytest.approx(512 * 3.00 * hours, rel=1e-6)          # cloud: $1.1M
    # on-prem: the IT bill (GPU + servers 0.45 + network 0.33) over 3 years and the facility
    # ($10/W of GPU + host power, host 0.8 of TDP) over 15; the seed charges the GPU alone
    # (capex 512·30,000·30/1,095 = $0.42M of a ~$0.5M total)
    it = 512 * 30_000 * 1.78
    capex = it * 30 / (3 * 365)
    maint = 0.05 * it * 30 / 365
    facility = 10.0 * 512 * 700 * 1.8 * 30 / (15 * 365)
    energy = kwh_it * 1.10 * 0.05
    assert tco[1] == pytest.approx(capex + maint + facility + energy, rel=1e-6)   # on-prem: ~$0.9M
    assert 1e5 < tco[1] < tco[0] < 1e7


# --------------------------------------------------------------------------- elementwise time
def test_elementwise_time_is_added_to_compute_and_stretched_by_the_bubble():
    """Non-matmul HBM time t_elem = scale·(3 + full)·M·(L/pp)·A/(bw·mem_bw_eff), A = s·b·h·(10 + 24/t)
    + 5·a·s²·b/t (Korthikanti et al. 2022 Table 2), added to the per-GPU compute time; the
    bubble (pp-1)/(V·M) stretches it; pipeline_overhead_frac scales the whole compute time."""
    tp, pp, mb, v, n, gb, s = 8, 4, 16, 2, 1024, 1024, 2048
    d = training_dict(hardware=idx("accelerators", "a100_80gb"), model=idx("models", "gpt3_175b"), tp=tp,
                      pp=pp, microbatches=mb, virtual_stages=v, n_accelerators=n, global_batch=gb,
                      seq_len=s, recompute=2, fabric=idx("fabrics", "ib_hdr"), attention=1, sequence_parallel=1)
    p = S.params_from_dict("training", d)          # scalar rows: the seed tests' compile is reused
    effs = [DEFAULT_EFFICIENCY, DEFAULT_EFFICIENCY._replace(elementwise_traffic_scale=0.0),
            DEFAULT_EFFICIENCY._replace(pipeline_overhead_frac=0.2)]
    outs = [TRAIN(p, T64, e)[0] for e in effs]
    step = [float(o.step_time_s) for o in outs]
    t_compute = [float(o.scaling_efficiency * o.step_time_s) for o in outs]   # η_scale = T_c/step
    b = gb / (n / (tp * pp) * mb)                       # sequences per micro-batch (dp = 32)
    h, a, layers = 12288, 96, 96
    act = s * b * h * (10 + 24 / tp) + 5 * a * s * s * b / tp
    t_elem = 1.4 * 4 * mb * (layers / pp) * act / (2.0e12 * 0.8)
    assert t_compute[0] - t_compute[1] == pytest.approx(t_elem, rel=1e-9)
    assert 0.05 < t_elem / t_compute[0] < 0.3           # a visible but minor share for GPT-3 shapes
    assert step[0] - step[1] == pytest.approx(t_elem * (1 + (pp - 1) / (v * mb)), rel=1e-9)
    assert t_compute[2] / t_compute[0] == pytest.approx(1 + 0.2 * (1 - 1 / pp), rel=1e-9)
    # A CNN has no activation shape in the catalog: no elementwise time.
    c = S.params_from_dict("training", training_dict(model=idx("models", "resnet50"), tp=1, seq_len=1))
    o0, o1 = (TRAIN(c, T64, e)[0] for e in effs[:2])
    assert float(o0.step_time_s) == pytest.approx(float(o1.step_time_s), rel=1e-12)


def test_mfu_forward_mode_is_finite_in_float32_for_1e22_flop_steps():
    """jvp of MFU for a ~1e22-FLOP step: F/(t·N·peak) overflowed float32 in the division's
    derivative (-ḋ·F/den²) into NaN; the wall now divides F/peak by t·N."""
    d = training_dict(model=idx("models", "llama3_405b"), n_accelerators=16384, tp=8, pp=16,
                      global_batch=2 ** 19, seq_len=8192, microbatches=64)
    with jax.enable_x64(False):
        p = S.params_from_dict("training", {k: np.float32(x) if isinstance(x, float) else x
                                            for k, x in d.items()})

        def mfu(scale):
            return S.training(p, T32, DEFAULT_EFFICIENCY._replace(compute_eff_scale=scale))[0].mfu

        value, tangent = jax.jit(lambda x: jax.jvp(mfu, (x,), (jnp.ones_like(x),)))(jnp.float32(1.3))
    flop = 6 * 405e9 * 2 ** 19 * 8192
    assert flop > 1e22
    assert np.isfinite(float(value)) and np.isfinite(float(tangent)) and float(tangent) > 0


# --------------------------------------------------------------------------- batched == scalar
@pytest.mark.parametrize("scenario", ["training", "serving"])
def test_batched_equals_scalar(scenario):
    fn = S.SCENARIO_FNS[scenario]
    p = random_params(scenario, 10_000, seed=1)
    batched = {"training": TRAIN, "serving": SERVE}[scenario](p, T64)
    scalar = jax.jit(lambda q: jax.lax.map(lambda row: fn(row, T64), q))(p)
    for b, s in zip(jax.tree_util.tree_leaves(batched), jax.tree_util.tree_leaves(scalar)):
        assert b.shape == (10_000,)
        np.testing.assert_allclose(np.asarray(b), np.asarray(s), rtol=1e-9, atol=0)


def test_scalar_inputs_give_scalar_outputs_and_broadcast():
    o, g = TRAIN(S.params_from_dict("training", training_dict()), T64)
    assert all(x.shape == () for x in o) and all(x.shape == () for x in g)
    # (region and pricing as [4] columns too: the layout test_seed003_audit_512_h100_quebec compiles)
    d = training_dict(tp=np.array([1.0, 2.0, 4.0, 8.0]), region=np.full(4, idx("regions", "quebec")),
                      pricing=np.ones(4, int))
    o, g = TRAIN(S.params_from_dict("training", d), T64)
    assert all(x.shape == (4,) for x in o) and all(x.shape == (4,) for x in g)


# --------------------------------------------------------------------------- gradients
def _central_fd(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


N_GRAD = 256


def _log_time(p, tables, eff):
    return jnp.sum(jnp.log(S.training(p, tables, eff)[0].time_to_train_s))


# reverse mode compiled as the package's derivative programs are (mlsys_opt._compile: ~2/3 the compile time)
GRAD_LOG_TIME = jax.jit(jax.grad(_log_time, argnums=(1, 2), allow_int=True), **jit_options())


def test_grad_time_to_train_vs_finite_differences():
    d = training_dict(n_accelerators=1024, tp=8, pp=4, microbatches=16, virtual_stages=2,
                      global_batch=1024, seq_len=4096, efficiency=0.45, fabric=idx("fabrics", "ib_hdr"))
    # N_GRAD identical rows: the loss is N_GRAD·log T, and the compile is shared with
    # test_gradients_finite_over_random_configs.
    p = S.params_from_dict("training", stack([d] * N_GRAD))
    h, prec, f = d["hardware"], d["precision"], d["fabric"]
    gt, ge = GRAD_LOG_TIME(p, T64, DEFAULT_EFFICIENCY)
    one = S.params_from_dict("training", d)

    def loss(tables, eff=DEFAULT_EFFICIENCY):
        # N_GRAD·log T of the one row: the scalar program the seed tests compile (no program of its own)
        return N_GRAD * float(np.log(float(TRAIN(one, tables, eff)[0].time_to_train_s)))

    def set_hw(field, i, value):
        arr = getattr(T64.hw, field)
        return T64._replace(hw=T64.hw._replace(**{field: arr.at[i].set(value)}))

    def set_fab(field, value):
        arr = getattr(T64.fabric, field)
        return T64._replace(fabric=T64.fabric._replace(**{field: arr.at[f].set(value)}))

    cases = [
        ("peak", float(T64.hw.peak_flop_per_s[h, prec]), gt.hw.peak_flop_per_s[h, prec],
         lambda v: set_hw("peak_flop_per_s", (h, prec), v)),
        ("scaleup_bw", float(T64.hw.scaleup_bw_bytes_per_s[h]), gt.hw.scaleup_bw_bytes_per_s[h],
         lambda v: set_hw("scaleup_bw_bytes_per_s", h, v)),
        ("mem_bw", float(T64.hw.mem_bw_bytes_per_s[h]), gt.hw.mem_bw_bytes_per_s[h],
         lambda v: set_hw("mem_bw_bytes_per_s", h, v)),
        ("mtbf", float(T64.hw.mtbf_s[h]), gt.hw.mtbf_s[h], lambda v: set_hw("mtbf_s", h, v)),
        ("fabric_bw", float(T64.fabric.bw_bytes_per_s[f]), gt.fabric.bw_bytes_per_s[f],
         lambda v: set_fab("bw_bytes_per_s", v)),
        ("fabric_latency", float(T64.fabric.latency_s[f]), gt.fabric.latency_s[f],
         lambda v: set_fab("latency_s", v)),
    ]
    nonzero = 0
    for name, x0, grad, make in cases:
        # Relative step 1e-4: the loss sums N_GRAD logs (~3.6e3), so a 1e-5 step leaves a
        # round-off of ~1e-5 relative in the difference for weak inputs (fabric latency).
        fd = _central_fd(lambda v: loss(make(v)), x0, 1e-4 * abs(x0))
        # d(N·log T)/dx: compare relative sensitivities x·dL/dx.
        assert x0 * float(grad) == pytest.approx(x0 * fd, rel=1e-5, abs=1e-8), name
        nonzero += abs(x0 * fd) > 1e-6
    assert nonzero >= 4          # peak, scale-up bw, MTBF and the fabric really matter here

    for name in Efficiency._fields:
        x0 = getattr(DEFAULT_EFFICIENCY, name)
        step = 1e-5 * max(abs(x0), 1e-3)
        fd = _central_fd(lambda v: loss(T64, DEFAULT_EFFICIENCY._replace(**{name: v})), x0, step)
        assert float(getattr(ge, name)) == pytest.approx(fd, rel=1e-5, abs=1e-6), name
    assert float(ge.compute_eff_scale) < 0       # more efficiency, less time


def test_grad_serving_vs_finite_differences():
    d = serving_dict(tp=2, batch=64, replicas=4, scheduler=1, scheduler_steps=2)   # serial: its host time too
    p = S.params_from_dict("serving", d)
    h = d["hardware"]

    def loss_of(o):
        return jnp.log(o.itl_s) + jnp.log(o.p99_latency_s) + jnp.log(o.carbon_kg)

    gt, ge = jax.jit(jax.grad(lambda t, e: loss_of(S.serving(p, t, e)[0]), argnums=(0, 1),
                              allow_int=True), **jit_options())(T64, DEFAULT_EFFICIENCY)
    x0 = float(T64.hw.mem_bw_bytes_per_s[h])
    fd = _central_fd(lambda v: float(loss_of(SERVE(p, T64._replace(hw=T64.hw._replace(
        mem_bw_bytes_per_s=T64.hw.mem_bw_bytes_per_s.at[h].set(v))))[0])), x0, 1e-5 * x0)
    assert fd < 0
    assert float(gt.hw.mem_bw_bytes_per_s[h]) == pytest.approx(fd, rel=1e-5)
    # (scaleup_comm_eff / scaleup_latency_s: this part's measured NVLink curve replaces them, issue 19)
    for name in ("prefill_eff_scale", "mem_bw_eff", "idle_power_frac", "active_power_frac",
                 "dispatch_s_per_layer", "achievable", "serial_host_s_per_seq"):
        assert float(getattr(ge, name)) != 0, name


# --------------------------------------------------------------------------- finiteness
@pytest.mark.parametrize("scenario", ["training", "serving"])
def test_all_outputs_finite_over_1e5_random_configs_float32(scenario):
    with jax.enable_x64(False):
        p = random_params(scenario, 100_000, seed=2, dtype=np.float32)
        out, g = jax.jit(S.SCENARIO_FNS[scenario], **jit_options())(p, T32)
        for name, x in list(out._asdict().items()) + [("g." + k, v) for k, v in g._asdict().items()]:
            x = np.asarray(x)
            assert x.shape == (100_000,), name
            assert x.dtype in (np.float32, np.int32), (name, x.dtype)
            assert np.all(np.isfinite(x)), f"{scenario}.{name}: {np.sum(~np.isfinite(x))} non-finite"
        assert np.all((np.asarray(out.bottleneck) >= 0) & (np.asarray(out.bottleneck) <= 2))
        if scenario == "training":
            mfu = np.asarray(out.mfu)
            assert np.all((mfu >= 0) & (mfu <= 1.0 + 1e-6))
            for k in ("goodput", "scaling_efficiency", "bubble_frac"):
                x = np.asarray(getattr(out, k))
                assert np.all((x >= 0) & (x <= 1 + 1e-6)), k
        else:
            assert np.all(np.asarray(out.p99_latency_s) >= np.asarray(out.ttft_s) * (1 - 1e-5))
        # Some configurations are feasible, some are not.
        feasible = np.all(np.stack([np.asarray(x) for x in g]) <= 0, axis=0)
        assert 0 < feasible.sum() < feasible.size


def test_gradients_finite_over_random_configs():
    p = random_params("training", N_GRAD, seed=4)
    gt, ge = GRAD_LOG_TIME(p, T64, DEFAULT_EFFICIENCY)
    for leaf in jax.tree_util.tree_leaves((gt, ge)):
        a = np.asarray(leaf)
        if a.dtype.kind == "f":
            assert np.all(np.isfinite(a))
    # Every efficiency leaf that can move a training time does so somewhere in the batch
    # (scaleout_comm_eff: every catalog fabric has a measured bus bandwidth, issue 19).
    for name in Efficiency._fields:
        if name not in ("prefill_eff_scale", "active_power_frac", "idle_power_frac", "scaleout_comm_eff",
                        "serial_host_s_per_seq"):        # a serving engine's host time
            assert float(getattr(ge, name)) != 0, name


# --------------------------------------------------------------------------- monotonicity
def test_more_efficiency_is_never_slower():
    p = random_params("training", 10_000, seed=5)
    o1, _ = TRAIN(p, T64)
    o2, _ = TRAIN(p._replace(efficiency=jnp.minimum(p.efficiency * 1.25, 1.0)), T64)
    assert np.all(np.asarray(o2.time_to_train_s) <= np.asarray(o1.time_to_train_s) * (1 + 1e-12))
    assert np.any(np.asarray(o2.time_to_train_s) < np.asarray(o1.time_to_train_s))
    o3, _ = TRAIN(p, T64, DEFAULT_EFFICIENCY._replace(scaleout_comm_eff=0.9, scaleup_comm_eff=0.9))
    assert np.all(np.asarray(o3.time_to_train_s) <= np.asarray(o1.time_to_train_s) * (1 + 1e-12))

    q = random_params("serving", 10_000, seed=6)
    s1, _ = SERVE(q, T64)
    s2, _ = SERVE(q._replace(efficiency=jnp.minimum(q.efficiency * 1.25, 1.0)), T64)
    for k in ("ttft_s", "itl_s"):
        assert np.all(np.asarray(getattr(s2, k)) <= np.asarray(getattr(s1, k)) * (1 + 1e-12)), k


def test_higher_carbon_intensity_means_more_carbon():
    p = random_params("training", 10_000, seed=7)
    dirty = T64._replace(region=T64.region._replace(
        carbon_gco2e_per_kwh=T64.region.carbon_gco2e_per_kwh * 1.5))
    o1, _ = TRAIN(p, T64)
    o2, _ = TRAIN(p, dirty)
    assert np.all(np.asarray(o2.carbon_kg) > np.asarray(o1.carbon_kg))
    np.testing.assert_allclose(np.asarray(o2.time_to_train_s), np.asarray(o1.time_to_train_s))
    # Same job, catalog regions: Poland (820 g/kWh) emits more than Quebec (20 g/kWh).
    qc = p._replace(region=jnp.full_like(p.region, idx("regions", "quebec")))
    pl = p._replace(region=jnp.full_like(p.region, idx("regions", "poland")))
    assert np.all(np.asarray(TRAIN(pl, T64)[0].carbon_kg) > np.asarray(TRAIN(qc, T64)[0].carbon_kg))
    q = random_params("serving", 10_000, seed=8)
    s1, _ = SERVE(q, T64)
    s2, _ = SERVE(q, dirty)
    assert np.all(np.asarray(s2.carbon_kg) > np.asarray(s1.carbon_kg))


def test_more_replicas_lower_p99():
    q = random_params("serving", 10_000, seed=9)
    q = q._replace(replicas=jnp.round(jnp.exp(jnp.linspace(0.0, 6.0, 10_000))))
    a, _ = SERVE(q, T64)
    b, _ = SERVE(q._replace(replicas=q.replicas + 1), T64)
    pa, pb = np.asarray(a.p99_latency_s), np.asarray(b.p99_latency_s)
    # A replica more: the load per replica falls, and the running batch (Little: utilisation x batch), the
    # slots' utilisation and the P99 with it, up to the per-part GEMM curves (interpolated per octave of rows):
    # where one rises faster than the rows, a smaller batch's decode step is slower (seeds 1, 2, 9: a handful
    # of 10,000 rows, at most +5 %; a padded GEMM would not be, a lead in docs/benchmarks.md), so 6 % here.
    ua, ub = np.asarray(a.utilization), np.asarray(b.utilization)
    ba, bb = np.asarray(a.running_batch), np.asarray(b.running_batch)
    for before, after in ((pa, pb), (ua, ub), (ba, bb)):
        assert np.all(after <= before * 1.06) and np.mean(after <= before * (1 + 1e-9)) > 0.99
    stable = np.asarray(a.utilization) < 1
    assert stable.sum() > 100 and np.any(pb[stable] < pa[stable])
    # Auto-sizing keeps utilisation under the cap.
    auto = q._replace(replicas=jnp.zeros_like(q.replicas))
    o, g = SERVE(auto, T64)
    ok = np.asarray(o.replicas) < S.MAX_AUTO_REPLICAS
    assert np.all(np.asarray(o.utilization)[ok] <= np.asarray(q.max_utilization)[ok] * (1 + 1e-9))
    assert np.all(np.asarray(g.queue_stable)[ok] < 0)


def test_package_attributes_stay_the_scenario_functions_after_submodule_imports():
    """Importing the submodule mlsys_opt.scenarios.training (or .serving) first must not leave the package
    attribute the module: `scenarios.training` is the scenario function, whichever import came first
    (a fresh interpreter, since this process has loaded both already)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    child = ("from mlsys_opt.scenarios.training import training_common\n"
             "import mlsys_opt.scenarios.serving\n"
             "from mlsys_opt import scenarios as S\n"
             "from mlsys_opt.scenarios import training, serving\n"
             "assert callable(S.training) and callable(S.serving), (S.training, S.serving)\n"
             "assert training is S.SCENARIO_FNS['training'] and serving is S.SCENARIO_FNS['serving']\n"
             "assert training.__module__ == 'mlsys_opt.scenarios.training'\n"
             "assert callable(training_common)\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", child], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
