"""Expert-parallel communication as the MoE frameworks run it (issue 12 item 5): walls.moe and the
EP lines of the training scenario.

Reference values from the DeepEP README / legacy.md (logical bottleneck bandwidths) and hand
counts, batched == scalar, jax.grad vs finite differences, and the scenario's EP term against
the walls on DeepSeek-V3 on 256 B200 (Megatron-Bridge 26.04 shape).  One jitted scenario.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS, SECONDS_PER_YEAR
from mlsys_opt.catalog import load_catalog
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
from mlsys_opt.scenarios.parts import gather
from mlsys_opt.scenarios.schema import EP_DISPATCHERS
from mlsys_opt.walls import fleet, moe, parallel

CAT = load_catalog()
T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
DEEPEP = EP_DISPATCHERS.index("deepep")
B_TOK = 4096 * 7168 * 2.0          # one micro-batch of DeepSeek-V3 tokens in BF16, bytes


def hit(n, k=8):
    return 1.0 - (1.0 - 1.0 / n) ** k


# --------------------------------------------------------------------------- reference values
def test_dispatch_copies_hand_counts():
    # EP 32 = 4 nodes x 8 (DeepSeek-V3 on DGX B200): 3 remote nodes, each reached w.p. 1 - (3/4)^8
    inter, intra = moe.dispatch_copies(8.0, 32.0, 8.0)
    assert float(inter) == pytest.approx(3 * hit(4), rel=1e-12)                 # 2.6997
    assert float(intra) == pytest.approx(4 * (8 - 0.25) * hit(32), rel=1e-12)  # 6.9533
    # EP 64 over 8 nodes: node-limited routing M = 4 (DeepSeek-V3 §3.2.2) vs unlimited
    lim, _ = moe.dispatch_copies(8.0, 64.0, 8.0, node_limit=4.0)
    free, _ = moe.dispatch_copies(8.0, 64.0, 8.0)
    assert float(lim) == pytest.approx(4 * (7 / 8) * hit(4), rel=1e-12)         # 3.1496
    assert float(free) == pytest.approx(7 * hit(8), rel=1e-12)                  # 4.5947
    # one copy per (token, expert) (Megatron-Core alltoall): k·(1 - 1/n) over the NIC, k·(g-1)/ep in the node;
    # the node limit does not change that volume
    for nl in (0.0, 4.0):
        flat = moe.dispatch_copies(8.0, 64.0, 8.0, node_limit=nl, dedup=0.0)
        assert [float(x) for x in flat] == pytest.approx([8 * 7 / 8, 8 * 7 / 64], rel=1e-12)
    # a limit above the node count does not bind; EP inside one node: nothing over the NIC
    assert float(moe.dispatch_copies(8.0, 32.0, 8.0, node_limit=9.0)[0]) == pytest.approx(float(inter), rel=1e-12)
    assert float(moe.dispatch_copies(8.0, 8.0, 8.0)[0]) == 0.0


def test_deepep_logical_bandwidths_are_one_nic_rate():
    """DeepEP counts RDMA bytes per (token, node) pair *including* the local node
    (tests/legacy/test_internode.py: num_rdma_token_sent); the NIC carries only the remote ones.
    Published logical bottleneck bandwidths, k = 8, 8 GPUs per node, up to 4 groups = nodes:
    EP 8x2 90 GB/s and EP 8x4 61 GB/s (README, V2, SM90 + CX7), EP 64 51 GB/s (legacy.md, V1).
    Divided by pairs/remote they give one physical rate, 44.6-45.8 GB/s, 0.89-0.92 of the
    400 Gb/s NIC's 50 GB/s: the deduplicated count explains all three.  (Without dedup the NIC
    would carry k·(1 - 1/n) copies: 4, 6, 7 per token, and the logical rates could not exceed
    50·pairs/4 = 25, 45, 45 GB/s.)"""
    published = {(16.0, 0.0): 90.0, (32.0, 0.0): 61.0, (64.0, 4.0): 51.0}
    rates = []
    for (ep, nl), logical in published.items():
        inter, _ = moe.dispatch_copies(8.0, ep, 8.0, node_limit=nl)
        n = ep / 8
        m = min(nl, n) if nl else n
        pairs = m * hit(m)
        rates.append(logical * float(inter) / pairs)
        flat, _ = moe.dispatch_copies(8.0, ep, 8.0, node_limit=nl, dedup=0.0)
        assert 50.0 * pairs / float(flat) < logical            # impossible without deduplication
    assert max(rates) / min(rates) < 1.03
    assert 0.85 * 50.0 < min(rates) and max(rates) <= 50.0


def test_expert_dispatch_worked_example_and_limits():
    # docstring: DeepSeek-V3 micro-batch on DGX B200, EP 32, NIC 48 GB/s, NVLink 846 GB/s, alpha 0
    t = moe.expert_dispatch(B_TOK, 8.0, 32.0, 8.0, 846e9, 0.0, 48e9, 0.0)
    assert float(t) == pytest.approx(B_TOK * 3 * hit(4) / 48e9, rel=1e-12)      # 3.303 ms, the NIC binds
    assert float(t) == pytest.approx(3.3026e-3, rel=1e-4)
    t0 = moe.expert_dispatch(B_TOK, 8.0, 32.0, 8.0, 846e9, 0.0, 48e9, 0.0, dedup=0.0)
    assert float(t0) == pytest.approx(B_TOK * 6.0 / 48e9, rel=1e-12)            # 7.340 ms
    # the flat all-to-all this replaces: 8·31/32 copies over the NIC, 9.48 ms
    assert float(fleet.all_to_all(8 * B_TOK, 32.0, 48e9, 0.0)) == pytest.approx(9.4809e-3, rel=1e-4)
    # limits: one node, or one rank per node, without dedup: exactly fleet.all_to_all (alpha included)
    one_node = moe.expert_dispatch(B_TOK, 8.0, 8.0, 8.0, 846e9, 4e-6, 48e9, 2e-6, dedup=0.0)
    assert float(one_node) == pytest.approx(float(fleet.all_to_all(8 * B_TOK, 8.0, 846e9, 4e-6)), rel=1e-12)
    spread = moe.expert_dispatch(B_TOK, 8.0, 8.0, 1.0, 846e9, 4e-6, 48e9, 2e-6, dedup=0.0)
    assert float(spread) == pytest.approx(float(fleet.all_to_all(8 * B_TOK, 8.0, 48e9, 2e-6)), rel=1e-12)
    # NVLink binds when the NIC is fast enough: B·c_i/β_i
    fast_nic = moe.expert_dispatch(B_TOK, 8.0, 32.0, 8.0, 846e9, 0.0, 10e12, 0.0)
    assert float(fast_nic) == pytest.approx(B_TOK * 4 * 7.75 * hit(32) / 846e9, rel=1e-12)


def test_overlap_partner_and_exposed_reference_values():
    assert float(moe.ep_overlap_partner_frac(8.0, 2.0, 128.0)) == pytest.approx(1 - 22 / 256, rel=1e-12)
    assert float(moe.ep_overlap_partner_frac(1.0, 1.0, 16.0)) == pytest.approx(15 / 16, rel=1e-12)
    assert float(moe.ep_overlap_partner_frac(4.0, 1.0, 8.0)) == pytest.approx(1 - 3 / 8, rel=1e-12)
    assert float(moe.ep_overlap_partner_frac(4.0, 1.0, 2.0)) == 0.0             # all warm-up: nothing paired
    # docstring: t = 13 s, o = 0.914, W = 11.33 s, f = 20/132
    assert float(moe.overlapped_exposed(13.0, 0.914, 11.33)) == pytest.approx(
        0.086 * 13 + 20 / 132 * 0.914 * 13, rel=1e-12)
    assert float(moe.overlapped_exposed(13.0, 0.914, 11.33)) == pytest.approx(2.918, abs=1e-3)
    # f = 0 is walls.parallel.exposed; o = 0 exposes everything; the window caps what hides
    rng = np.random.default_rng(0)
    t, o, w = rng.uniform(0, 2, 64), rng.uniform(0, 1, 64), rng.uniform(0, 2, 64)
    np.testing.assert_allclose(moe.overlapped_exposed(t, o, w, 0.0), parallel.exposed(t, o, w), rtol=1e-12)
    np.testing.assert_allclose(moe.overlapped_exposed(t, 0.0, w), t, rtol=1e-12)
    assert float(moe.overlapped_exposed(1.0, 1.0, 0.5)) == pytest.approx(0.5, rel=1e-12)


# --------------------------------------------------------------------------- batched == scalar, gradients
def _random_args(n, seed=1):
    rng = np.random.default_rng(seed)
    return dict(token_bytes=10 ** rng.uniform(5, 9, n), top_k=rng.integers(1, 9, n).astype(float),
                ep=2.0 ** rng.integers(0, 9, n), ranks_per_node=2.0 ** rng.integers(0, 7, n),
                bw_intra_bytes_per_s=10 ** rng.uniform(10, 12, n), alpha_intra_s=rng.uniform(0, 1e-5, n),
                bw_inter_bytes_per_s=10 ** rng.uniform(9.5, 11, n), alpha_inter_s=rng.uniform(0, 1e-5, n),
                node_limit=rng.integers(0, 9, n).astype(float), dedup=rng.uniform(0, 1, n))


def _dispatch(a):
    return moe.expert_dispatch(a["token_bytes"], a["top_k"], a["ep"], a["ranks_per_node"],
                               a["bw_intra_bytes_per_s"], a["alpha_intra_s"], a["bw_inter_bytes_per_s"],
                               a["alpha_inter_s"], node_limit=a["node_limit"], dedup=a["dedup"])


def test_walls_batched_equals_scalar():
    a = _random_args(12)
    batched = np.asarray(_dispatch(a))
    assert np.all(np.isfinite(batched)) and np.all(batched >= 0)
    scalars = [float(_dispatch({k: float(v[i]) for k, v in a.items()})) for i in range(12)]
    np.testing.assert_allclose(batched, scalars, rtol=1e-12)
    pp, v, m = np.array([1.0, 4, 8, 16]), np.array([1.0, 2, 2, 5]), np.array([8.0, 16, 128, 64])
    np.testing.assert_allclose(moe.ep_overlap_partner_frac(pp, v, m),
                               [float(moe.ep_overlap_partner_frac(*x)) for x in zip(pp, v, m)], rtol=1e-12)
    t, o, w = np.array([1.0, 5, 0.1]), np.array([0.0, 0.7, 1.0]), np.array([2.0, 1.0, 0.3])
    np.testing.assert_allclose(moe.overlapped_exposed(t, o, w),
                               [float(moe.overlapped_exposed(*x)) for x in zip(t, o, w)], rtol=1e-12)


def test_walls_grad_vs_finite_differences():
    names = ("token_bytes", "ep", "ranks_per_node", "bw_intra_bytes_per_s", "bw_inter_bytes_per_s",
             "node_limit", "dedup", "top_k")
    # interior point: EP 48 over 6 nodes of 8, limit 4 binds, NIC binds
    base = dict(token_bytes=5e7, top_k=8.0, ep=48.0, ranks_per_node=8.0, bw_intra_bytes_per_s=846e9,
                alpha_intra_s=4e-6, bw_inter_bytes_per_s=48e9, alpha_inter_s=2e-6, node_limit=4.0, dedup=0.6)

    def f(x):
        return jnp.log(_dispatch({**base, **{k: x[i] for i, k in enumerate(names)}}))

    x0 = jnp.asarray([base[k] for k in names])
    g = np.asarray(jax.grad(f)(x0))
    for i, k in enumerate(names):
        h = 1e-6 * abs(float(x0[i]))
        fd = (float(f(x0.at[i].add(h))) - float(f(x0.at[i].add(-h)))) / (2 * h)
        assert np.isfinite(g[i]) and g[i] == pytest.approx(fd, rel=1e-5, abs=1e-12), k
    assert g[names.index("node_limit")] > 0 and g[names.index("dedup")] < 0

    def e(x):
        return moe.overlapped_exposed(x[0], x[1], x[2], x[3]) + moe.ep_overlap_partner_frac(4.0, x[4], 64.0)

    for y0 in (jnp.asarray([3.0, 0.8, 1.5, 0.15, 2.0]), jnp.asarray([3.0, 0.8, 2.5, 0.15, 3.0])):
        g = np.asarray(jax.grad(e)(y0))
        for i in range(5):
            h = 1e-6
            fd = (float(e(y0.at[i].add(h))) - float(e(y0.at[i].add(-h)))) / (2 * h)
            assert np.isfinite(g[i]) and g[i] == pytest.approx(fd, rel=1e-6, abs=1e-9), i
    # finite gradients at the degenerate points too (ep = 1, one node, o = 0)
    g = jax.grad(lambda x: moe.expert_dispatch(x, 8.0, 1.0, 8.0, 846e9, 0.0, 48e9, 0.0))(1e6)
    assert np.isfinite(float(g))
    g = jax.grad(lambda n: jnp.sum(jnp.stack(moe.dispatch_copies(8.0, n, 8.0))))(8.0)
    assert np.isfinite(float(g))


# --------------------------------------------------------------------------- the scenario
def idx(kind, name):
    return CAT.index(kind, name)


def cfg(**kw):
    """DeepSeek-V3 on 256 DGX B200 as Megatron-Bridge 26.04 ran it (TP 1, PP 8, VP 2, EP 32, MBS 1, GBS 4096)."""
    d = dict(hardware=idx("accelerators", "b200"), model=idx("models", "deepseek_v3"),
             region=idx("regions", "us_avg"), fabric=idx("fabrics", "ib_ndr"), precision=PRECISIONS.index("fp8"),
             tp=1, pp=8, efficiency=0.5, pricing=0, depreciation=3 * SECONDS_PER_YEAR,
             maintenance_frac_per_year=0.05, n_tokens=1e12, n_accelerators=256, ep=32, microbatches=0,
             virtual_stages=2, global_batch=4096, seq_len=4096, recompute=1, zero_stage=1, overlap=1.0,
             checkpoint_interval=0.0, checkpoint_bw=100e9, recovery=600.0, attention=0, cp=1, sequence_parallel=0,
             shard_group=0, micro_batch_size=1, tp_overlap=0.0, ep_overlap=0.0, cp_overlap=1.0, stage_balance=0,
             moe_capacity_factor=0.0, moe_imbalance=1.0, straggler_factor=1.0, failure_rate_per_gpu_hour=0.0,
             kernels=0, main_grads=1, master_weights=0, optimizer_moments=0, offload_layers=0,
             ep_dispatcher=0, moe_node_limit=0)
    d.update(kw)
    return d


PAD = 8


def run(rows):
    rows = list(rows) + [rows[0]] * (PAD - len(rows))
    p = S.params_from_dict("training", {k: np.asarray([r[k] for r in rows]) for k in rows[0]})
    return p, TRAIN(p, T64)[0]


def test_scenario_ep_term_matches_the_walls_and_the_framework_settings_order():
    dense = dict(model=idx("models", "llama3_8b"), ep=1, pp=1, virtual_stages=1, n_accelerators=64, global_batch=256)
    rows = [cfg(), cfg(ep_dispatcher=DEEPEP), cfg(ep_dispatcher=DEEPEP, ep_overlap=1.0),
            cfg(ep_dispatcher=DEEPEP, ep_overlap=1.0, moe_node_limit=4), cfg(ep_dispatcher=DEEPEP, ep_overlap=0.5),
            cfg(**dense), cfg(**dense, ep_dispatcher=DEEPEP, moe_node_limit=2, ep_overlap=1.0)]
    p, o = run(rows)
    step = np.asarray(o.step_time_s)[:len(rows)]
    # one micro-batch of 4096 tokens per GPU, M = 4096/32 = 128, L/pp = 61/8 layers + the MTP block (MoE, on the
    # last stage with the LM head: the critical one; DSV3, tests/test_training_mla.py), 4 dispatch/combine each
    c = gather(jax.tree_util.tree_map(lambda x: x[0], p), T64, DEFAULT_EFFICIENCY)
    calls = 128 * (61 / 8 + 1) * 4

    def one(dedup):     # DSV3EP: DeepEP's NIC rate is DEEPEP_RDMA_OF_NCCL of NCCL's
        bw = c.bw_out * (1.0 - dedup * (1.0 - moe.DEEPEP_RDMA_OF_NCCL))
        return float(moe.expert_dispatch(B_TOK, 8.0, 32.0, 8.0, c.bw_up_ring, c.alpha_up, bw, c.alpha_out,
                                         dedup=dedup))
    t_a2a, t_deepep = calls * one(0.0), calls * one(1.0)
    assert t_a2a / t_deepep == pytest.approx(6.0 / (3 * hit(4)) * moe.DEEPEP_RDMA_OF_NCCL, rel=0.02)   # NIC-bound
    # nothing hidden: the whole EP term, also in each of the (pp - 1)/(v·M) bubble slots (pp 8, v 2, M 128)
    bubble = 1.0 + 7.0 / (2.0 * 128.0)
    assert step[0] - step[1] == pytest.approx((t_a2a - t_deepep) * bubble, rel=1e-9)
    # ep_overlap = 1: exposed = (1 - o)·t + max(f·o·t, o·t - W) with o = partner share, W = compute × it
    partner = 1 - 22 / 256
    t_rest = step[1] - t_deepep * bubble                                       # compute, bubble, PP, DP
    hidden = (step[1] - step[2]) / bubble
    assert 0 < hidden < t_deepep
    exposed = t_deepep - hidden
    assert exposed >= (1 - partner) * t_deepep + moe.EP_COMM_SM_FRAC * partner * t_deepep - 1e-9
    assert t_rest > 0
    assert step[3] == pytest.approx(step[2], rel=1e-12)        # M = 4 nodes does not bind at 4 nodes
    assert step[1] > step[4] > step[2]                          # half the overlap hides less
    assert step[5] == pytest.approx(step[6], rel=1e-12)         # dense: no EP term whatever the settings
    assert np.all(np.isfinite(step))


def test_scenario_batched_equals_scalar_and_grad_of_ep_overlap():
    rows = [cfg(ep_dispatcher=DEEPEP, ep_overlap=x, moe_node_limit=nl, ep=e, n_accelerators=n)
            for x, nl, e, n in ((0.0, 0, 32, 256), (1.0, 4, 32, 256), (0.3, 2, 64, 512), (0.9, 0, 64, 512))]
    _, o = run(rows)
    batched = np.asarray(o.step_time_s)[:len(rows)]
    scalar = [float(run([r])[1].step_time_s[0]) for r in rows]     # the same compiled batch, one row at a time
    np.testing.assert_allclose(batched, scalar, rtol=1e-12)
    assert batched[2] < float(run([cfg(ep_dispatcher=0, ep_overlap=0.3, ep=64, n_accelerators=512)])[1].step_time_s[0])

    p0 = S.params_from_dict("training", cfg(ep_dispatcher=DEEPEP, ep_overlap=0.6, moe_node_limit=2, ep=64,
                                            n_accelerators=512))

    def loss(x):
        return jnp.log(S.training(p0._replace(ep_overlap=x), T64)[0].step_time_s)

    vg = jax.jit(jax.value_and_grad(loss), **jit_options())
    g = float(vg(0.6)[1])
    h = 1e-6
    fd = (float(vg(0.6 + h)[0]) - float(vg(0.6 - h)[0])) / (2 * h)
    assert np.isfinite(g) and g < 0
    assert g == pytest.approx(fd, rel=1e-4)
