"""DSV3EP (issue 12): DeepEP's internode rate, the EP overlap window and the slowest pipeline stage.

walls.moe.DEEPEP_RDMA_OF_NCCL from DeepEP's legacy README (normal kernels, H800 + CX7 400 Gb/s, EP 32:
dispatch 58 / combine 57 GB/s counted over every (token, node) pair, own node included) over NCCL's 48 GB/s
all-reduce bus bandwidth on 400 Gb RDMA; walls.moe.ep_stage_exposed (Megatron-Core combined 1F1B: the EP
comm hides only behind MoE layers' compute; a middle rank with more MoE layers can be the slower stage)
against hand-computed values, batched == scalar, jax.grad vs finite differences, and its wiring in the
training scenario on the Megatron-Bridge 26.04 DeepSeek-V3 B200 shape (PP 8 x VP 2, EP 32, layout 8 / 5 + MTP).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_training_mla import B200     # Megatron-Bridge 26.04 DeepSeek-V3 on 256 B200
from training_rows import CAT, breakdown, check_batched_equals_scalar, check_step_time_grad, evaluate, row

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt.walls import moe

T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
PAD = 8
F = 20.0 / 132.0
H = 7168
GB200 = B200 | {"pp": 4, "ep": 64, "virtual_stages": 4, "last_stage_layers": 13, "ep_overlap": 0.0}


def hit(n, k=8):
    return 1.0 - (1.0 - 1.0 / n) ** k


# --------------------------------------------------------------------------- reference values
def test_deepep_rdma_rate_from_the_legacy_readme():
    """EP 32 = 4 nodes x 8 GPUs, top-8 of 256 over 4 groups: 3 of 4 (token, node) pairs cross the NIC, so
    0.75·(58 + 57)/2 = 43.125 GB/s of payload, / 48 GB/s NCCL = 0.8984375; EP 64 (M = 4 of 8): 7/8 remote,
    0.875·50.5 = 44.19 GB/s (0.92), within 3 % of it."""
    inter, _ = moe.dispatch_copies(8.0, 32.0, 8.0, node_limit=4.0)
    assert float(inter) / (4.0 * hit(4)) == pytest.approx(0.75, rel=1e-12)
    assert moe.DEEPEP_RDMA_OF_NCCL == pytest.approx(43.125 / 48.0, rel=1e-15) == 0.8984375
    inter64, _ = moe.dispatch_copies(8.0, 64.0, 8.0, node_limit=4.0)
    share64 = float(inter64) / (4.0 * hit(4))
    assert share64 == pytest.approx(0.875, rel=1e-12)
    assert share64 * 50.5 / 48.0 == pytest.approx(moe.DEEPEP_RDMA_OF_NCCL, rel=0.03)


def test_stage_exposed_hand_values():
    """T_l = 1.9 s, C = 12.5 s, λ = 0.12, m = 6, m_a = 8, o = p = 0.9, f = 20/132 (docstring example)."""
    crit = 0.1 * 11.4 + max(F * 0.9 * 11.4, 0.9 * 11.4 - 0.9 * 6 * 1.5)            # 1.14 + 2.16 = 3.30
    alt = 12.0 + 0.1 * 15.2 + max(F * 0.9 * 15.2, 0.9 * 15.2 - 0.9 * 12.0) - 12.5  # 12 + 1.52 + 2.88 - 12.5
    assert crit == pytest.approx(3.30, abs=1e-12) and alt == pytest.approx(3.90, abs=1e-12)
    got = moe.ep_stage_exposed(1.9, 12.5, 6.0, 0.12, 0.9, 0.9, alt_layers=8.0)
    assert float(got) == pytest.approx(3.90, rel=1e-12)
    assert float(moe.ep_stage_exposed(1.9, 12.5, 6.0, 0.12, 0.9, 0.9)) == pytest.approx(3.30, rel=1e-12)
    # no overlap: the whole comm; the middle rank: 8 layers' compute + comm beyond C = 12 + 15.2 - 12.5
    assert float(moe.ep_stage_exposed(1.9, 12.5, 6.0, 0.12, 0.0, 0.9)) == pytest.approx(11.4, rel=1e-12)
    assert float(moe.ep_stage_exposed(1.9, 12.5, 6.0, 0.12, 0.0, 0.9, alt_layers=8.0)) == pytest.approx(
        14.7, rel=1e-12)
    # the whole stage as window (λ·m = 1) is the previous overlapped_exposed(t, o, p·C)
    assert float(moe.ep_stage_exposed(1.9, 12.5, 6.0, 1.0 / 6.0, 0.9, 0.9)) == pytest.approx(
        float(moe.overlapped_exposed(11.4, 0.9, 0.9 * 12.5)), rel=1e-12)
    # comm short against the MoE compute: only the SM share of the overlapped part + the unpaired part
    assert float(moe.ep_stage_exposed(0.1, 12.5, 6.0, 0.12, 0.9, 0.9)) == pytest.approx(
        0.1 * 0.6 + F * 0.9 * 0.6, rel=1e-12)


# --------------------------------------------------------------------------- batched, grad
def test_stage_exposed_batched_equals_scalar_and_grad():
    rng = np.random.default_rng(7)
    n = 16
    args = [rng.uniform(0.1, 3.0, n), rng.uniform(5.0, 20.0, n), rng.integers(1, 9, n).astype(float),
            rng.uniform(0.02, 0.15, n), rng.uniform(0.0, 1.0, n), rng.uniform(0.5, 1.0, n)]
    alt = rng.integers(0, 12, n).astype(float)
    batched = np.asarray(moe.ep_stage_exposed(*args, alt_layers=alt))
    scalar = [float(moe.ep_stage_exposed(*(a[i] for a in args), alt_layers=alt[i])) for i in range(n)]
    np.testing.assert_allclose(batched, scalar, rtol=1e-12)
    assert np.all(batched >= 0.0) and np.all(np.isfinite(batched))

    def f(x):
        return moe.ep_stage_exposed(x[0], x[1], 6.0, x[2], x[3], x[4], alt_layers=8.0)

    for x0 in (jnp.asarray([1.9, 12.5, 0.12, 0.9, 0.9]),      # alt binds, comm-bound window
               jnp.asarray([0.3, 12.5, 0.12, 0.7, 0.9])):     # SM-share branch
        g = np.asarray(jax.grad(f)(x0))
        for i in range(5):
            h = 1e-6 * max(abs(float(x0[i])), 1e-3)
            fd = (float(f(x0.at[i].add(h))) - float(f(x0.at[i].add(-h)))) / (2 * h)
            assert g[i] == pytest.approx(fd, rel=1e-6, abs=1e-9), i


# --------------------------------------------------------------------------- the scenario
def _parts(rows):
    p, c, s, _, cmp, cm, mb = breakdown(rows, PAD, T64)
    return p, c, s, cmp, mb, cm


def _run(rows):
    return evaluate(TRAIN, rows, PAD, T64)


def test_scenario_window_alt_stage_and_deepep_rate_on_the_b200_row():
    """B200 row: λ = one layer's FLOPs / the last rank's, m = 6 (5 + MTP), m_a = 8 (a middle rank), the NIC at
    0.898·48 GB/s; the EP term is ep_stage_exposed of those.  With 1 layer on the last
    rank a middle rank (⌈60/7⌉ = 9 whole layers, HFUS) is FLOP-critical: its FLOPs / 9 are one layer's, λ = 1/9
    there, m_a = 0; without a layout nothing changes (m_a = 0)."""
    rows = [row("b200", "deepseek_v3", "ib_ndr", **B200),
            row("b200", "deepseek_v3", "ib_ndr", **(B200 | {"last_stage_layers": 0})),
            row("gb200", "deepseek_v3", "ib_ndr", **GB200),
            row("b200", "deepseek_v3", "ib_ndr", **(B200 | {"last_stage_layers": 1}))]
    _, c, s, cmp, mb, cm = _parts(rows)
    layer_flop = float(s.flop_gpu[3]) / 9.0                                 # one layer's FLOPs per GPU
    assert float(s.ep_layer_frac[3]) == pytest.approx(1.0 / 9.0, rel=1e-12)
    assert float(s.flop_gpu[0]) > 8.0 * layer_flop                         # the last rank is FLOP-critical
    assert float(s.ep_layer_frac[0]) == pytest.approx(layer_flop / float(s.flop_gpu[0]), rel=1e-12)
    assert float(s.ep_alt_layers[0]) == 8.0 and float(s.ep_alt_layers[1]) == 0.0
    assert float(s.ep_alt_layers[2]) == 16.0                               # GB200: 16 vs 13 + MTP
    assert float(s.ep_alt_layers[3]) == 0.0
    i = 0
    bw = float(c.bw_out[i]) * moe.DEEPEP_RDMA_OF_NCCL
    one = float(moe.expert_dispatch(4096 * H * 2.0, 8.0, 32.0, 8.0, float(c.bw_up_ring[i]), float(c.alpha_up[i]),
                                    bw, float(c.alpha_out[i]), node_limit=4.0))
    t_layer = float(mb[i]) * 4.0 * one
    partner = float(moe.ep_overlap_partner_frac(8.0, 2.0, float(mb[i])))
    args = (t_layer, float(cmp.t_compute_s[i]), 6.0, float(s.ep_layer_frac[i]), partner, partner)
    want = float(moe.ep_stage_exposed(*args, alt_layers=8.0))
    assert float(cm.t_ep_s[i]) == pytest.approx(want, rel=1e-12)
    # the 8-layer middle rank is taken into account; it no longer binds here since the last rank runs its LM head
    # and MTP head passes at the 16-bit rate (stop 19: fp8 training keeps the head in BF16), a longer window
    # (the walls test above covers the binding case)
    assert want >= float(moe.ep_stage_exposed(*args)) * (1.0 - 1e-12)
    # the window is the 6 MoE layers' compute, not the whole stage's (LM heads, MTP projection, loss)
    assert 6.0 * float(s.ep_layer_frac[i]) < 0.75


def test_scenario_batched_equals_scalar_and_grad():
    rows = [row("b200", "deepseek_v3", "ib_ndr", **B200),
            row("b200", "deepseek_v3", "ib_ndr", **(B200 | {"ep_overlap": 0.4})),
            row("gb200", "deepseek_v3", "ib_ndr", **GB200),
            row("h100_sxm", "llama3_70b", "ib_ndr", tp=8, pp=4, n_accelerators=512, last_stage_layers=17)]
    check_batched_equals_scalar(rows, _run)
    check_step_time_grad(rows[0] | {"ep_overlap": 0.8}, ("efficiency", "ep_overlap"), T64)
