"""The serving scenario as deployed today (issue 13): techniques, percentiles, zero load,
hand-computed references, gradients vs finite differences, finiteness, bad input (batched ==
scalar and float32 finiteness with every new parameter: tests/test_scenarios.py).  One jitted scenario for the module; cases are batched into few calls."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.catalog import load_catalog
from mlsys_opt.errors import MlsysOptError
from mlsys_opt.scenarios import schema
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
from mlsys_opt.walls._masked import UNBOUNDED

CAT = load_catalog()
T64 = CAT.tables(dtype=jnp.float64)
T32 = CAT.tables()
SERVE = jax.jit(S.serving, **jit_options())      # mlsys_opt._compile: ~half the compile time
YEAR = 365 * 86400.0
# The seeds' efficiency model for hand-computed values: no achievable-rate curves, no dispatch,
# full HBM bandwidth.
PLAIN = DEFAULT_EFFICIENCY._replace(mem_bw_eff=1.0, dispatch_s_per_layer=0.0, achievable=0.0) \
    if "achievable" in DEFAULT_EFFICIENCY._fields else DEFAULT_EFFICIENCY._replace(mem_bw_eff=1.0,
                                                                                  dispatch_s_per_layer=0.0)


def idx(kind, name):
    return CAT.index(kind, name)


def row(**kw):
    d = {k: v.default for k, v in schema.SERVING_PARAMS.items()}
    d.update(hardware=idx("accelerators", "h100_sxm"), model=idx("models", "llama3_70b"),
             region=idx("regions", "us_avg"), fabric=idx("fabrics", "ib_ndr"),
             precision=PRECISIONS.index("fp16"), pricing=0, depreciation=3 * YEAR, duration=YEAR,
             tp=8, request_rate=50.0, prompt_tokens=2000, output_tokens=250, batch=64,
             kv_precision=0, disaggregated=0, offload=0, scheduler=0)
    d.update(kw)
    return d


N = 4096          # every batched call has this many rows: one compile for the module


def run(rows, tables=T64, eff=DEFAULT_EFFICIENCY):
    """Evaluate a list of row dicts in one call (padded to N rows); (outputs, constraints) as numpy dicts."""
    n = len(rows)
    rows = list(rows) + [rows[-1]] * (N - n)
    p = S.params_from_dict("serving", {k: np.asarray([r[k] for r in rows]) for k in rows[0]})
    p = p._replace(**{k: getattr(p, k).astype(jnp.float64) for k in p._fields
                      if k not in S.INT_PARAMS["serving"]})
    o, g = SERVE(p, tables, eff)
    return ({k: np.asarray(v)[:n] for k, v in o._asdict().items()},
            {k: np.asarray(v)[:n] for k, v in g._asdict().items()})


# --------------------------------------------------------------------------- techniques
def test_techniques_move_the_outputs_they_should():
    base = row(prompt_cv=0.3, output_cv=0.5)
    cases = [base, row(**{**base, "chunk_size": 512}), row(**{**base, "chunk_size": 256}),
             row(**{**base, "disaggregated": 1}), row(**{**base, "spec_k": 4, "spec_acceptance": 0.8}),
             row(**{**base, "prefix_hit_rate": 0.5}), row(**{**base, "kv_precision": 1 + PRECISIONS.index("fp8")}),
             row(**{**base, "request_rate": 0.0})]
    o, g = run(cases)
    plain, c512, c256, dis, spec, prefix, kv8, idle = range(8)
    # Chunked prefill: the Sarathi-Serve trade-off (smaller chunks: lower P99 ITL, higher TTFT).
    assert o["itl_p99_s"][c256] < o["itl_p99_s"][c512] < o["itl_p99_s"][plain]
    assert o["ttft_p99_s"][c256] > o["ttft_p99_s"][c512] > o["ttft_p99_s"][plain]
    # Disaggregation: no prefill interference on ITL, KV over the fabric, a prefill pool.
    assert o["itl_p99_s"][dis] == pytest.approx(o["itl_p50_s"][dis], rel=1e-12)
    assert o["itl_mean_s"][dis] == pytest.approx(o["itl_p50_s"][dis], rel=1e-12)
    assert o["itl_p99_s"][plain] > o["itl_p50_s"][plain]          # colocated: a chunk on some iterations
    assert o["kv_transfer_s"][dis] > 0 and o["kv_transfer_s"][plain] == 0
    assert o["prefill_replicas"][dis] >= 1 and o["prefill_replicas"][plain] == 0
    # Speculation: (1 − α^(k+1))/(1 − α) tokens per step; a memory-bound step gets faster per token.
    assert o["spec_tokens_per_step"][spec] == pytest.approx((1 - 0.8 ** 5) / 0.2)
    assert o["itl_s"][spec] < o["itl_s"][plain]
    assert o["memory_per_accelerator_bytes"][spec] > o["memory_per_accelerator_bytes"][plain]   # the draft
    # Prefix caching cuts the prefill; an fp8 KV cache halves the cache and its read.
    assert o["ttft_s"][prefix] < o["ttft_s"][plain]
    assert o["kv_cache_bytes"][kv8] == pytest.approx(0.5 * o["kv_cache_bytes"][plain])
    assert o["itl_s"][kv8] < o["itl_s"][plain]
    # Zero load: cost per Mtok is undefined -> UNBOUNDED; P99s are service times (no wait).
    assert o["cost_per_mtok_usd"][idle] == UNBOUNDED and o["carbon_per_mtok_kg"][idle] == UNBOUNDED
    assert o["replicas"][idle] == 1 and o["utilization"][idle] == 0
    assert np.all(np.isfinite(np.stack(list(o.values()))))


def test_zero_load_p99_is_the_service_time():
    """request_rate = 0, fixed lengths: TTFT P99 = P50 = the prefill service (one decode
    iteration with the whole prompt on it); ITL P99 = the decode step of the one sequence in
    flight (continuous batching: the running batch is 1 + 0), below the full batch's
    `itl_s` and equal to it when the cap is 1."""
    o, _ = run([row(request_rate=0.0, prompt_cv=0.0, output_cv=0.0),
                row(request_rate=0.0, prompt_cv=0.0, output_cv=0.0, batch=1)])
    assert o["ttft_p99_s"][0] == pytest.approx(o["ttft_p50_s"][0], rel=1e-12)
    assert o["ttft_p99_s"][0] >= o["ttft_s"][0]
    assert o["running_batch"][0] == 0.0
    assert o["itl_p99_s"][0] == pytest.approx(o["itl_mean_s"][0], rel=1e-12)
    assert o["itl_p99_s"][0] == pytest.approx(o["itl_s"][1], rel=1e-12) and o["itl_s"][0] > o["itl_s"][1]
    assert o["p99_latency_s"][0] == pytest.approx(o["ttft_p99_s"][0] + 249 * o["itl_mean_s"][0], rel=1e-9)


def test_the_running_batch_follows_the_load():
    """Continuous batching (walls.serving.running_batch): the batch a replica runs is Little's
    λ/R·S (S = TTFT + (out − 1)·ITL at that batch), below the cap at a light load and at the
    cap when the load exceeds it; the ITL at the load rises with it, never above a full batch's
    beyond the chunk interference, and the queue's utilisation is running_batch / cap."""
    rates = [0.5, 5.0, 5000.0]
    o, _ = run([row(request_rate=lam, replicas=1, prompt_cv=0.0, output_cv=0.0, disaggregated=1,
                    prefill_fraction=0.5) for lam in rates])
    b = o["running_batch"]
    assert np.all(np.diff(b) > 0) and b[-1] == 64.0 and 0 < b[0] < 2
    assert np.all(np.diff(o["itl_mean_s"]) >= 0)
    assert np.all(o["itl_mean_s"] <= o["itl_s"] * (1 + 1e-9))
    assert o["itl_mean_s"][-1] == pytest.approx(o["itl_s"][-1], rel=1e-9)
    # Little's law on the disaggregated decode pool (no chunks): B = λ/R_d·S at the batch 1 + B
    lam, r_d = rates[1], o["replicas"][1] - o["prefill_replicas"][1]
    s = o["kv_transfer_s"][1] + 249 * o["itl_mean_s"][1]
    assert b[1] == pytest.approx(lam / r_d * s, rel=0.05)           # affine step vs its exact value
    assert o["utilization"][1] >= b[1] / 64 * 0.95


def test_decode_and_prefill_hand_computed():
    """One H100, batch 1, seeds' efficiency: decode = weights + KV over 3.35 TB/s; the prefill
    adds the causal attention FLOPs 4·L·(h·d)·n(n+1)/2 to the 2·P·n GEMM FLOPs."""
    n = 8192.0
    one = dict(tp=1, batch=1, request_rate=0.1, prompt_tokens=n, output_tokens=2)
    o, _ = run([row(**one)], eff=PLAIN)
    kv_tok = 2 * 80 * 8 * 128 * 2
    assert o["itl_s"][0] == pytest.approx((70.6e9 * 2 + (n + 1) * kv_tok) / 3.35e12, rel=1e-9)
    no_heads = T64._replace(model=T64.model._replace(n_heads=T64.model.n_heads * 0))
    o0, _ = run([row(**one)], tables=no_heads, eff=PLAIN)
    eta = 0.5 * PLAIN.prefill_eff_scale * n / (n + PLAIN.matmul_rows_half)
    attn = 4 * 80 * (64 * 128) * n * (n + 1) / 2
    assert o["ttft_s"][0] - o0["ttft_s"][0] == pytest.approx(attn / (989e12 * eta), rel=1e-6)
    assert 0.05 < attn / (2 * 70.6e9 * n) < 0.1                  # +7.6 % FLOPs at 8k tokens


def test_serial_scheduler_adds_host_time_per_running_sequence():
    """scheduler = serial (vLLM V0): each decode iteration waits serial_host_s_per_seq (0.1 ms,
    vLLM #6801: ~20 ms at batch 200) per running sequence, once per scheduler_steps; an
    overlapped engine pays none.  Exact on the full-batch ITL (batch 64: +6.4 ms; 10 steps per
    call: +0.64 ms); at the offered load it slows the running batch's step, so the batch grows."""
    base = dict(tp=8, batch=64, request_rate=20.0, prompt_cv=0.0, output_cv=0.0)
    o, _ = run([row(**base), row(**base, scheduler=1), row(**base, scheduler=1, scheduler_steps=10),
                row(**base, scheduler=0, scheduler_steps=10)])
    over, serial, multi, over10 = range(4)
    assert o["itl_s"][serial] - o["itl_s"][over] == pytest.approx(64 * 1e-4, rel=1e-9)
    assert o["itl_s"][multi] - o["itl_s"][over] == pytest.approx(6.4e-4, rel=1e-9)
    assert o["itl_s"][over10] == o["itl_s"][over]
    assert o["running_batch"][serial] > o["running_batch"][over]
    assert o["itl_mean_s"][serial] > o["itl_mean_s"][over]
    # linear in the per-sequence time: doubling it doubles the added ITL (the same compiled call)
    o2, _ = run([row(**base), row(**base, scheduler=1)],
                eff=DEFAULT_EFFICIENCY._replace(serial_host_s_per_seq=2e-4))
    assert o2["itl_s"][1] - o2["itl_s"][0] == pytest.approx(128 * 1e-4, rel=1e-9)


def test_audit_breakdown_parts_sum_to_the_totals():
    """The serving audit's decomposition (scenarios.serving_breakdown, `mlsys-opt evaluate`) sums to the
    scenario's own P99 TTFT and P99 ITL, and shows a serial engine's host time as its own part."""
    from mlsys_opt.scenarios.serving_breakdown import breakdown
    rows = [row(), row(scheduler=1, scheduler_steps=2), row(chunk_size=512, prompt_cv=0.3, output_cv=0.5),
            row(disaggregated=1, prefill_fraction=0.3), row(spec_k=3, spec_acceptance=0.8)]
    p = S.params_from_dict("serving", {k: np.asarray([r[k] for r in rows]) for k in rows[0]})
    p = p._replace(**{k: getattr(p, k).astype(jnp.float64) for k in p._fields if k not in S.INT_PARAMS["serving"]})
    b = {k: np.asarray(v) for k, v in jax.jit(breakdown)(p, T64, DEFAULT_EFFICIENCY)._asdict().items()}
    o, _ = run(rows)
    ttft = sum(b[k] for k in ("ttft_wait_s", "ttft_gemm_s", "ttft_attention_s", "ttft_weights_s", "ttft_overhead_s",
                              "ttft_batching_s", "ttft_kv_transfer_s", "ttft_long_prompt_s"))
    itl = sum(b[k] for k in ("itl_weights_s", "itl_compute_s", "itl_kv_s", "itl_overhead_s", "itl_host_s",
                             "itl_draft_s", "itl_prefill_s"))
    np.testing.assert_allclose(ttft, b["ttft_p99_s"], rtol=1e-9)
    np.testing.assert_allclose(itl, b["itl_p99_s"], rtol=1e-9)
    np.testing.assert_allclose(b["ttft_p99_s"], o["ttft_p99_s"], rtol=1e-9)
    np.testing.assert_allclose(b["itl_p99_s"], o["itl_p99_s"], rtol=1e-9)
    assert b["itl_host_s"][1] > 0 and np.all(np.delete(b["itl_host_s"], 1) == 0)


def test_moe_decode_reads_only_the_touched_experts():
    """Mixtral 8x7B (46.7B total, 12.9B active, top-2 of 8), one H100, batch 1: a decode step
    reads shared + 2 experts = the active parameters; at batch 64 every expert."""
    mix = dict(model=idx("models", "mixtral_8x7b"), tp=1, request_rate=0.1, prompt_tokens=1, output_tokens=2)
    o, _ = run([row(batch=1, **mix), row(batch=64, **mix)], eff=PLAIN)
    kv_tok = 2 * 32 * 8 * 128 * 2
    assert o["itl_s"][0] == pytest.approx((12.9e9 * 2 + 2 * kv_tok) / 3.35e12, rel=1e-6)
    touched = 8 * (1 - 0.75 ** 64)
    expert = (46.7e9 - 12.9e9) / 6
    w64 = 2 * (46.7e9 - 8 * expert + expert * touched)
    assert o["itl_s"][1] >= w64 / 3.35e12
    # expert parallelism with routing imbalance: the busiest rank sets the pace
    ep = dict(mix, tp=2, ep=4, batch=256)
    oe, ge = run([row(**ep, moe_imbalance=1.0), row(**ep, moe_imbalance=1.5), row(**{**ep, "ep": 16})], eff=PLAIN)
    assert oe["itl_s"][1] > oe["itl_s"][0]
    assert ge["experts"][0] <= 0 and ge["experts"][2] > 0       # 16 ranks for 8 experts
    # a dense model: off the experts boundary at ep = 1 (never shown as the tightest constraint), and
    # ep > 1 refused (same batch shape as above: no new compilation)
    dense = dict(tp=2, batch=256, request_rate=0.1, prompt_tokens=1, output_tokens=2)
    _, gd = run([row(**dense), row(**dense, ep=2), row(**dense)], eff=PLAIN)
    assert gd["experts"][0] == -1.0 and gd["experts"][1] > 0


def test_offload_only_spills_what_does_not_fit():
    """Llama-3-70B fp16 on 2 H100s at batch 256 does not fit; KV offload spills the excess over
    PCIe Gen5 (64 GB/s, catalog host_bw) and makes it fit at a large ITL cost."""
    big = dict(tp=2, batch=256, prompt_tokens=2000, output_tokens=250, request_rate=1.0)
    o, g = run([row(**big, offload=0), row(**big, offload=1), row(**{**big, "batch": 128}, offload=2),
                row(offload=1)])
    assert g["memory"][0] > 0 and o["offload_bytes"][0] == 0
    assert g["memory"][1] <= 1e-9 and o["offload_bytes"][1] > 0 and o["itl_s"][1] > 5 * o["itl_s"][0]
    w_dev, cap = 70.6e9, float(T64.hw.mem_capacity_bytes[idx("accelerators", "h100_sxm")])
    kv_dev = 2 * 80 * 8 * 128 * 2 * 2250 * 256 / 2
    assert o["offload_bytes"][1] == pytest.approx(w_dev + kv_dev - cap, rel=1e-9)
    assert g["memory"][2] <= 1e-9 and o["offload_bytes"][2] > 0
    assert o["offload_bytes"][3] == 0                               # fits: nothing moves
    assert float(T64.hw.host_bw_bytes_per_s[idx("accelerators", "h100_sxm")]) == 64e9


def test_request_mix_spread_raises_the_tails_not_the_medians_much():
    o, _ = run([row(prompt_cv=0.0, output_cv=0.0), row(prompt_cv=0.8, output_cv=1.0)])
    assert o["ttft_p99_s"][1] > 1.5 * o["ttft_p99_s"][0]
    assert o["p99_latency_s"][1] > o["p99_latency_s"][0]
    assert o["ttft_s"][1] == o["ttft_s"][0]                       # the mean prompt's prefill


def test_power_at_utilisation_energy_per_mtok():
    """Energy per Mtok = facility energy / tokens; an idler fleet (more replicas) costs more per token."""
    o, _ = run([row(replicas=8, request_rate=20.0), row(replicas=32, request_rate=20.0)])
    assert o["energy_per_mtok_j"][1] > o["energy_per_mtok_j"][0]
    tokens = 20.0 * 250 * YEAR
    us = T64.region
    r = idx("regions", "us_avg")
    kwh = o["energy_per_mtok_j"][0] * tokens / 1e6 / 3.6e6
    assert o["carbon_kg"][0] == pytest.approx(kwh * float(us.carbon_gco2e_per_kwh[r]) / 1000, rel=1e-9)


# --------------------------------------------------------------------------- properties
def random_rows(n, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    nk = {k: len(CAT.names(k)) for k in ("accelerators", "models", "regions", "fabrics")}

    def logu(lo, hi):
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n))

    v = dict(hardware=rng.integers(0, nk["accelerators"], n), model=rng.integers(0, nk["models"], n),
             region=rng.integers(0, nk["regions"], n), fabric=rng.integers(0, nk["fabrics"], n),
             precision=rng.integers(0, len(PRECISIONS), n), tp=2.0 ** rng.integers(0, 4, n),
             pp=rng.integers(1, 4, n).astype(float), efficiency=rng.uniform(0.05, 1, n),
             pricing=rng.integers(0, 2, n), depreciation=np.full(n, 3 * YEAR),
             maintenance_frac_per_year=np.full(n, 0.05),
             request_rate=np.where(rng.uniform(size=n) < 0.05, 0.0, logu(1e-2, 1e4)),
             prompt_tokens=np.round(logu(1, 32768)), output_tokens=np.round(logu(1, 4096)),
             batch=np.round(logu(1, 512)), replicas=np.where(rng.uniform(size=n) < 0.7, 0.0, np.round(logu(1, 1e3))),
             max_utilization=rng.uniform(0.3, 0.95, n), duration=np.full(n, YEAR),
             prompt_cv=rng.uniform(0, 2, n), output_cv=rng.uniform(0, 2, n),
             kv_precision=rng.integers(0, len(schema.KV_PRECISIONS), n),
             chunk_size=np.where(rng.uniform(size=n) < 0.5, 0.0, 2.0 ** rng.integers(5, 13, n)),
             disaggregated=rng.integers(0, 2, n), prefill_fraction=rng.uniform(0.1, 0.9, n),
             spec_k=np.where(rng.uniform(size=n) < 0.5, 0.0, rng.integers(1, 8, n)),
             spec_acceptance=rng.uniform(0, 0.99, n), draft_cost_frac=rng.uniform(0, 0.5, n),
             prefix_hit_rate=rng.uniform(0, 1, n), offload=rng.integers(0, 3, n),
             ep=2.0 ** rng.integers(0, 3, n), moe_imbalance=rng.uniform(1, 2, n),
             scheduler=rng.integers(0, 2, n), scheduler_steps=rng.integers(1, 17, n).astype(float))
    ints = S.INT_PARAMS["serving"]
    return S.ServingParams(**{k: jnp.asarray(v[k], jnp.int32 if k in ints else dtype)
                              for k in S.ServingParams._fields})


def test_finite_and_ordered_percentiles_over_random_spaces():
    """(float32 finiteness over 10^5 random configurations with every new parameter:
    tests/test_scenarios.py::test_all_outputs_finite_over_1e5_random_configs_float32.)"""
    p = random_rows(N, seed=11)
    o, g = SERVE(p, T64, DEFAULT_EFFICIENCY)
    for name, x in list(o._asdict().items()) + [("g." + k, v) for k, v in g._asdict().items()]:
        assert np.all(np.isfinite(np.asarray(x))), f"{name}: {np.sum(~np.isfinite(np.asarray(x)))} non-finite"
    t50, t99 = np.asarray(o.ttft_p50_s), np.asarray(o.ttft_p99_s)
    i50, i99 = np.asarray(o.itl_p50_s), np.asarray(o.itl_p99_s)
    assert np.all(t99 >= t50 * (1 - 1e-5)) and np.all(i99 >= i50 * (1 - 1e-5))
    assert np.all(np.asarray(o.p99_latency_s) >= np.asarray(o.ttft_s) * (1 - 1e-5))
    feasible = np.all(np.stack([np.asarray(x) for x in g]) <= 0, axis=0)
    assert 0 < feasible.sum() < feasible.size


def test_gradients_of_new_parameters_match_finite_differences():
    base = row(prompt_cv=0.4, output_cv=0.6, spec_k=3, spec_acceptance=0.7, draft_cost_frac=0.1,
               prefix_hit_rate=0.3, chunk_size=512, replicas=12, request_rate=40.0)
    p0 = S.params_from_dict("serving", base)

    names = ("prompt_cv", "output_cv", "spec_acceptance", "draft_cost_frac", "prefix_hit_rate", "request_rate")

    def loss(x):            # forward mode over the six inputs (cheaper to compile than reverse)
        o, _ = S.serving(p0._replace(**dict(zip(names, x))), T64)
        return jnp.log(o.ttft_p99_s) + jnp.log(o.itl_s) + jnp.log(o.p99_latency_s) + jnp.log(o.carbon_kg)

    x0 = jnp.asarray([float(getattr(p0, k)) for k in names])
    g = dict(zip(names, np.asarray(jax.jit(jax.jacfwd(loss))(x0))))
    steps = [1e-5 * max(abs(float(base[k])), 1e-2) for k in names]
    rows = [row(**{**base, k: base[k] + s * h}) for k, h in zip(names, steps) for s in (1, -1)]
    o, _ = run(rows)
    lo = np.log(o["ttft_p99_s"]) + np.log(o["itl_s"]) + np.log(o["p99_latency_s"]) + np.log(o["carbon_kg"])
    for i, (name, h) in enumerate(zip(names, steps)):
        fd = (lo[2 * i] - lo[2 * i + 1]) / (2 * h)
        assert np.isfinite(g[name])
        assert g[name] == pytest.approx(fd, rel=1e-4, abs=1e-8), name
    assert g["spec_acceptance"] < 0 and g["prefix_hit_rate"] < 0 and g["prompt_cv"] > 0


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("key,value,allowed", [
    ("spec_acceptance", 1.0, "0.999"), ("spec_acceptance", -0.1, "0"), ("draft_cost_frac", 1.0, "0.999"),
    ("chunk_size", 200_000, "context"), ("scheduler", "async", "overlapped, serial"), ("scheduler_steps", 0, "1")])
def test_bad_serving_input_is_a_one_line_error(key, value, allowed):
    from mlsys_opt.space.spec import load_space
    spec = {"name": "bad", "scenario": "serving",
            "fixed": {"model": "llama3_70b", "request_rate": "5 /s", key: value},
            "axes": {"tp": [4, 8]}, "objectives": {"minimize": ["cost_per_mtok_usd"]}}
    with pytest.raises(MlsysOptError) as e:
        load_space(spec)
    msg = str(e.value)
    assert key in msg and allowed in msg and "\n" not in msg.strip()


def test_slo_space_loads_and_its_winner_meets_the_slo():
    from mlsys_opt.space.spec import load_space
    from mlsys_opt.sweeps.api import sweep
    space = load_space("llama3_70b_serving_slo")
    assert len(space.axes[0].labels) == len(CAT.names("accelerators"))
    assert space.size < 60_000
    res = sweep(space, progress=False)
    front = res.front
    assert len(front) > 0
    assert np.all(front["ttft_p99_s"] <= 0.5 + 1e-6) and np.all(front["itl_p99_s"] <= 0.05 + 1e-6)
