"""Context parallelism as PyTorch runs it (issue 12, torchtitan rows): pass-KV all-gather exposure,
K,V heads repeated before SDPA, fp32 merge traffic (walls.attention cp_* functions and the CP lines
of scenarios.training_comm.communication).

Reference values hand-computed in the walls' docstrings, batched == scalar, jax.grad vs finite
differences, the published-row mapping.  One jitted scenario for the module.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import training_rows

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.calibration import setup as setup_map
from mlsys_opt.catalog import load_catalog
from mlsys_opt.scenarios.schema import CP_COMM_TYPES, ON_OFF, TRAINING_PARAMS
from mlsys_opt.walls import attention

CAT = load_catalog()
T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
ALL_GATHER, ON = CP_COMM_TYPES.index("all_gather"), ON_OFF.index("on")
PAD = 8


def cfg(**kw):
    """torchtitan Dec-2024 Table 2 shape: Llama 3.1 8B on 8 H100 (96 GB, 500 W), FSDP over dp·cp, full AC,
    fp8 GEMMs, one 262,144-token sequence over cp = 8; parameters not named take the schema defaults."""
    return training_rows.row("h100_96gb_500w", "llama3_8b", "eth_400g", **{
        **dict(precision=PRECISIONS.index("fp8"), n_accelerators=8, tp=1, pp=1, cp=8, global_batch=1,
               micro_batch_size=1, seq_len=262144, recompute=TRAINING_PARAMS["recompute"].choices.index("full"),
               zero_stage=3, overlap=1.0, cp_comm_type=ALL_GATHER, kv_repeat=ON, cp_overlap=0.0), **kw})


def stack(rows):
    return training_rows.stack(rows, PAD)


def step(rows):
    assert len(rows) <= PAD
    out, _ = TRAIN(stack(rows), T64)
    return np.asarray(out.step_time_s)[:len(rows)]


# --------------------------------------------------------------------------- walls: reference values
def test_exchange_heads_reference_values():
    # Llama 3.1 405B: 128 query heads, 8 KV heads, tp 8: one KV head per rank, 16 once repeated (repeat_kv)
    assert float(attention.cp_exchange_heads(128, 8, 8, 0)) == 1.0
    assert float(attention.cp_exchange_heads(128, 8, 8, 1)) == 16.0
    assert float(attention.cp_exchange_heads(32, 8, 1, 1)) == 32.0     # 8B, tp 1
    assert float(attention.cp_exchange_heads(32, 8, 16, 0)) == 1.0     # tp beyond the KV heads: replicated
    # the p2p ring with the repeated heads moves 16x the bytes (ring_attention_bytes, tp already applied)
    one = float(attention.ring_attention_bytes(262144, 1, 1, 128, 8))
    assert float(attention.ring_attention_bytes(262144, 1, 16, 128, 8)) == pytest.approx(16 * one, rel=1e-12)
    assert one == pytest.approx(3 * 7 * 2 * 32768 * 128 * 2, rel=1e-12)


def test_allgather_exposure_reference_values():
    """Docstring example: C = 0.268 GB, cp 8, 45 GB/s, T_f = 0.12 s, T_b = 0.3 s, overlap 1, 2 forward passes."""
    c, bw = 0.268e9, 45e9
    t_ag, t_kv = 7 * c / bw, 2 * c / bw
    want = 2 * (t_ag - 0.12 / 8) + (t_ag - 0.3 / 8) + 0.0 + t_kv
    got = float(attention.cp_allgather_exposed_s(c, 8, bw, 0.0, 0.12, 0.3, overlap=1.0, forward_passes=2.0))
    assert got == pytest.approx(want, rel=1e-12)
    assert got == pytest.approx(0.069478, rel=1e-4)
    # nothing hidden (overlap 0: torch.compile-traced collectives wait at once): every byte on the path
    none = float(attention.cp_allgather_exposed_s(c, 8, bw, 5e-6, 0.12, 0.3, overlap=0.0, forward_passes=2.0))
    assert none == pytest.approx(3 * 7 * (c / bw + 5e-6) + 8 * (2 * c / bw + 5e-6), rel=1e-12)
    # a wide window hides all but the last dK,dV send; cp = 1 has no ring
    wide = float(attention.cp_allgather_exposed_s(c, 8, bw, 0.0, 10.0, 30.0, overlap=1.0, forward_passes=2.0))
    assert wide == pytest.approx(t_kv, rel=1e-12)
    assert float(attention.cp_allgather_exposed_s(c, 1, bw, 5e-6, 0.12, 0.3, overlap=0.0)) == 0.0


def test_merge_bytes_reference_values():
    e = 32768 * 32 * 128          # Llama 3 8B at s/cp = 32768: output (= K or V, repeated) elements
    assert float(attention.cp_merge_bytes(e, e, 8, forward_passes=2.0)) == pytest.approx(380 * e, rel=1e-12)
    assert float(attention.cp_merge_bytes(e, e, 8, forward_passes=2.0)) == pytest.approx(5.10e10, rel=1e-3)
    # 405B at tp 8 without repeat: E_kv = E_q/16
    assert float(attention.cp_merge_bytes(16.0, 1.0, 2)) == pytest.approx(10 * 16 + 2 * 10 * (16 + 2), rel=1e-12)
    assert float(attention.cp_merge_bytes(e, e, 1, forward_passes=2.0)) == 0.0


def test_p2p_bookkeeping_bytes_reference_values():
    """Transformer Engine's p2p ring (bee4649c): K,V packing, output merges, dQ and dK,dV accumulations."""
    e_q = 16384 * 32 * 128          # Llama 3 8B, s = 65,536, cp 4, tp 1 (docstring example): E_kv = E_q / 4
    e_kv = e_q / 4
    k = 2 * (2 + 2.25 * 3)          # 17.5 B per output / gradient element
    want = (2 * 2 * 2 * e_kv + k * e_q) + 2 * 2 * 2 * e_kv + k * (e_q + 2 * e_kv)
    assert k == 17.5
    got = float(attention.cp_p2p_bookkeeping_bytes(e_q, e_kv, 4))
    assert got == pytest.approx(want, rel=1e-12)
    assert got == pytest.approx(3.204e9, rel=1e-3)
    # cp = 2, hand count: forward 8·E_kv (pack) + 4·E_q (step 0) + 6·E_q·(1 + 1/2)/2 (step 1, whole on rank 1,
    # second half on rank 0) = 8·E_kv + 8.5·E_q; backward the same on dQ and 2·E_kv, + 8·E_kv; full recompute:
    # the forward twice
    one = float(attention.cp_p2p_bookkeeping_bytes(1.0, 1.0, 2, forward_passes=2.0))
    assert one == pytest.approx(2 * (8 + 8.5) + 8 + 8.5 * 3, rel=1e-12)
    # fp32 activations: twice the bytes; no ring at cp = 1
    assert float(attention.cp_p2p_bookkeeping_bytes(1.0, 1.0, 2, forward_passes=2.0,
                                                    bytes_per_element=4.0)) == pytest.approx(2 * one, rel=1e-12)
    assert float(attention.cp_p2p_bookkeeping_bytes(e_q, e_kv, 1, forward_passes=2.0)) == 0.0


def test_p2p_bookkeeping_batched_equals_scalar_and_gradient():
    q = np.array([6.7e7, 1.68e7, 4.2e6, 1e6])
    kv = np.array([1.68e7, 1.68e7, 2.6e5, 1e6])
    cp = np.array([4.0, 16.0, 2.0, 1.0])
    passes = np.array([1.0, 2.0, 1.0, 2.0])
    batched = np.asarray(attention.cp_p2p_bookkeeping_bytes(q, kv, cp, forward_passes=passes))
    for i in range(4):
        one = float(attention.cp_p2p_bookkeeping_bytes(q[i], kv[i], cp[i], forward_passes=passes[i]))
        assert batched[i] == pytest.approx(one, rel=1e-12)
    assert np.all(np.isfinite(batched)) and batched[3] == 0.0 and np.all(batched[:3] > 0.0)

    def f(x):   # E_q, E_kv, cp, bytes per element
        return attention.cp_p2p_bookkeeping_bytes(x[0], x[1], x[2], forward_passes=2.0, bytes_per_element=x[3])

    x0 = jnp.array([6.7e7, 1.68e7, 8.0, 2.0])
    g = np.asarray(jax.grad(f)(x0))
    for i in range(4):
        h = float(x0[i]) * 1e-6
        fd = (float(f(x0.at[i].add(h))) - float(f(x0.at[i].add(-h)))) / (2 * h)
        assert g[i] == pytest.approx(fd, rel=1e-6)
    assert g[2] > 0.0                   # more ring steps, more merges


def test_walls_batched_equal_scalar_and_gradients():
    args = (np.array([0.268e9, 0.537e9, 0.1e9, 1e8]), np.array([8.0, 8.0, 2.0, 1.0]),
            np.array([45e9, 360e9, 45e9, 45e9]), np.array([5e-6, 2e-6, 5e-6, 5e-6]),
            np.array([0.12, 0.24, 0.01, 0.1]), np.array([0.3, 0.6, 0.025, 0.25]))
    batched = np.asarray(attention.cp_allgather_exposed_s(*args, overlap=0.5, forward_passes=2.0))
    for i in range(4):
        one = float(attention.cp_allgather_exposed_s(*(a[i] for a in args), overlap=0.5, forward_passes=2.0))
        assert batched[i] == pytest.approx(one, rel=1e-12)
    assert np.all(np.isfinite(batched)) and np.all(batched >= 0.0)

    def f(x):   # chunk bytes, bandwidth, forward and backward attention time, overlap (smooth point)
        return attention.cp_allgather_exposed_s(x[0], 8.0, x[1], 5e-6, x[2], x[3], overlap=x[4], forward_passes=2.0)

    x0 = jnp.array([0.268e9, 45e9, 0.12, 0.3, 0.6])
    g = np.asarray(jax.grad(f)(x0))
    for i in range(5):
        h = float(x0[i]) * 1e-6
        fd = (float(f(x0.at[i].add(h))) - float(f(x0.at[i].add(-h)))) / (2 * h)
        assert g[i] == pytest.approx(fd, rel=1e-5, abs=1e-12)
    gm = jax.grad(lambda e: attention.cp_merge_bytes(e, e / 4.0, 4.0, forward_passes=2.0))(1e6)
    assert float(gm) == pytest.approx(2 * 3 * 10 + 4 * 10 * (1 + 0.5), rel=1e-12)


# --------------------------------------------------------------------------- the scenario
def test_scenario_cp_terms_order_and_batched_equals_scalar():
    rows = [cfg(), cfg(cp_comm_type=0), cfg(kv_repeat=0), cfg(cp_overlap=1.0),
            cfg(cp=1, seq_len=32768, global_batch=8), cfg(cp=1, seq_len=32768, global_batch=8, cp_comm_type=0,
                                                          kv_repeat=0),
            cfg(cp=2, seq_len=65536, global_batch=4), cfg(cp=2, seq_len=65536, global_batch=4, cp_comm_type=0)]
    batched = step(rows)
    assert np.all(np.isfinite(batched))
    for i, r in enumerate(rows):
        assert step([r])[0] == pytest.approx(batched[i], rel=1e-12)
    ag, p2p, kv, hidden, cp1, cp1_plain, ag2, p2p2 = batched
    assert ag > p2p                     # pass-KV with nothing hidden (compiled torch CP) vs Megatron's p2p ring
    assert ag > kv                      # repeated K,V heads: 4x the bytes for Llama 3 8B
    assert ag > hidden                  # overlap 1: only the windows' excess and the merges stay
    assert cp1 == pytest.approx(cp1_plain, rel=1e-12)    # no ring at cp = 1, whatever its settings
    assert ag2 > p2p2
    # the added time is a few percent of the step on NVLink (attention dominates at 262k tokens)
    assert 1.0 < ag / p2p < 1.2


def test_scenario_gradient_vs_finite_differences():
    """d step / d cp_overlap on the pass-KV path (the window-limited branch is smooth at o = 0.5)."""
    base = S.params_from_dict("training", {k: np.asarray([v]) for k, v in cfg(cp_overlap=0.5, fabric=CAT.index(
        "fabrics", "eth_400g"), tp=8, n_accelerators=64, model=CAT.index("models", "llama3_70b")).items()})

    def f(o):
        out, _ = S.training(base._replace(cp_overlap=jnp.asarray([o])), T64)
        return jnp.log(out.step_time_s[0])

    vg = jax.jit(jax.value_and_grad(f), **jit_options())
    v, g = vg(0.5)
    h = 1e-4
    fd = (float(vg(0.5 + h)[0]) - float(vg(0.5 - h)[0])) / (2 * h)
    assert np.isfinite(float(v))
    assert float(g) == pytest.approx(fd, rel=1e-4, abs=1e-9)
    assert float(g) < 0.0               # hiding more of the exchange shortens the step


def test_published_rows_map_onto_the_cp_parameters():
    st = setup_map.to_settings("training", {"hardware": "h100_96gb_500w", "n_accelerators": 8, "tp": 1, "cp": 8,
                                            "pp": 1, "seq_len": 262144, "global_batch": 1, "cp_comm_type":
                                                "all_gather", "kv_repeat": True, "cp_overlap": 0.0,
                                            "model": {"catalog_model": "llama3_8b"}}).settings
    assert st["cp_comm_type"] == "all_gather" and st["kv_repeat"] == "on" and st["cp_overlap"] == 0.0
    import json
    from importlib import resources
    runs = json.loads(resources.files("mlsys_opt.calibration_data").joinpath("training_runs.json").read_text())
    cp_rows = [r for r in runs["rows"] if r["id"].startswith(("titan24_t2_", "titan24_t6_"))]
    assert len(cp_rows) == 8
    assert all(r["setup"]["cp_comm_type"] == "all_gather" and r["setup"]["kv_repeat"] is True
               and r["setup"]["cp_overlap"] == 0.0 for r in cp_rows)


def test_cp_lines_of_communication_reference_values():
    """Nothing hidden (cp_overlap = 0), Llama 3 8B, s = 262,144, cp 8 on one node, one sequence:
    t_cp = L·(exposed pass-KV comm + fp32 merge bytes / mem_bw) for all_gather and
    L·((1 + full/3)·(3·(cp-1)·(C/bw + α)) + TE bookkeeping bytes / mem_bw) for p2p,
    C = 2·(s/cp)·h_x·d·2 B (h_x 32 with kv_repeat, 8 without)."""
    from mlsys_opt.scenarios import training_comm as tcomm
    from mlsys_opt.scenarios import training_parts as tp
    from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY as E
    from mlsys_opt.scenarios.parts import gather
    rows = [cfg(), cfg(cp_comm_type=0), cfg(cp_comm_type=0, kv_repeat=0)]
    p = stack(rows)
    c = gather(p, T64, E)
    s = tp.setup(p, c, E, T64.model.vocab_size[jnp.asarray(p.model, jnp.int32)])
    b, mb = jnp.ones(PAD), jnp.ones(PAD)
    mem = tp.memory(p, c, s, b, mb)
    cmp = tp.compute(p, c, E, s, mem, b, mb)
    t_cp = np.asarray(tcomm.communication(p, c, E, s, cmp, b, mb).t_cp_s)[:3]
    # the in-node CP exchange (all-gather, send/recv) runs at the ring rate: NVLS reduces only all-reduces
    bw, alpha, hbm = float(c.bw_up_ring[0]), float(c.alpha_up[0]), float(c.mem_bw[0])
    layers, n, d, s_loc = 32, 8, 128, 262144 / 8
    chunk = 2 * s_loc * 32 * d * 2
    ag = 3 * (n - 1) * (chunk / bw + alpha) + n * (2 * chunk / bw + alpha)
    e = s_loc * 32 * d
    merge = (2 * (n - 1) * 10 * e + n * 10 * 3 * e) / hbm
    assert t_cp[0] == pytest.approx(layers * (ag + merge), rel=1e-9)
    # p2p (Transformer Engine's ring): + its bf16 K,V packing, merges and accumulations, forward twice (full AC)
    k = 2 * (2 + 2.25 * (n - 1))
    book = 2 * (2 * 2 * 2 * e + k * e) + 2 * 2 * 2 * e + k * 3 * e
    p2p = (1 + 1 / 3) * 3 * (n - 1) * (chunk / bw + alpha) + book / hbm
    assert t_cp[1] == pytest.approx(layers * p2p, rel=1e-9)
    e_kv = s_loc * 8 * d
    book_kv = 2 * (2 * 2 * 2 * e_kv + k * e) + 2 * 2 * 2 * e_kv + k * (e + 2 * e_kv)
    p2p_kv = (1 + 1 / 3) * 3 * (n - 1) * (chunk / 4 / bw + alpha) + book_kv / hbm
    assert t_cp[2] == pytest.approx(layers * p2p_kv, rel=1e-9)


def test_static_option_context_parallel_off_is_exact_at_cp_1():
    """scenarios.static_options gives context_parallel=False only when every row has cp <= 1, and the
    scenario traced without the CP terms returns the same outputs bit for bit on cp = 1 rows (the CP
    terms are exactly 0 there), in both CP exchange modes and with or without full recomputation."""
    assert S.static_options("training", {"cp": [1]})["context_parallel"] is False
    assert S.static_options("training", {"cp": [1, 2]})["context_parallel"] is True
    assert S.static_options("training", {})["context_parallel"] is True            # unknown: traced
    full = TRAINING_PARAMS["recompute"].choices.index("full")
    rows = [cfg(cp=1, seq_len=8192, cp_comm_type=t, recompute=r, micro_batch_size=m, kv_repeat=k)
            for t in (0, ALL_GATHER) for r in (0, full) for m, k in ((1, ON), (0, 0))]
    p = stack(rows)
    on = TRAIN(p, T64)
    off = jax.jit(functools.partial(S.training, context_parallel=False), **jit_options())(p, T64)
    for a, b in zip(jax.tree_util.tree_leaves(on), jax.tree_util.tree_leaves(off)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(np.max(np.asarray(on[0].step_time_s))) > 0
