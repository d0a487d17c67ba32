"""Training communication as the frameworks issue it (issue 12, helper COMM).

- InternEvo's hybrid ZeRO gathers updated parameters with one NCCL broadcast per owning rank
  (param_sync = broadcast): the scenario's exposed term (the owners and NCCL's protocol per broadcast:
  walls.zero_sync, tests/test_zero_sync.py).
- The calibration map of InternEvo's zero1 size, and the Narayanan et al. 2021 rows' pre-2022 settings.
- NVLink SHARP accelerates all-reduce only: reduce-scatter / all-gather / all-to-all / send-recv at the
  part's ring rate (Common.bw_up_ring); the pipeline bubble holds the stage's exposed TP/CP/EP comm (helper COMM2).

Reference values by hand, batched == scalar, jax.grad vs finite differences; one jitted scenario.
"""
import jax
import jax.numpy as jnp
import numpy as np
import training_rows

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.calibration import setup as calsetup
from mlsys_opt.catalog import load_catalog
from mlsys_opt.walls import parallel, zero_sync

CAT = load_catalog()
T64 = CAT.tables(dtype=jnp.float64)
T32 = CAT.tables(dtype=jnp.float32)
# compiled as the package's small-batch programs are (mlsys_opt._compile: ~half the compile time)
TRAIN = jax.jit(S.training, **jit_options())
BROADCAST = S.schema.TRAINING_PARAMS["param_sync"].choices.index("broadcast")
PAD = 8


def cfg(**kw):
    """InternEvo's 7B throughput test shape: A100, tp 1, ZeRO-1 over every GPU, 4 x 2 sequences of 2048."""
    return training_rows.row("a100_80gb", "llama2_7b", "eth_100g", **{
        **dict(precision=PRECISIONS.index("fp16"), tp=1, pp=1, efficiency=0.5, n_accelerators=1024, ep=1,
               microbatches=4, virtual_stages=1, global_batch=8192, seq_len=2048, recompute=0, zero_stage=1,
               overlap=0.5, attention=0, cp=1, sequence_parallel=1, micro_batch_size=2, cp_overlap=1.0,
               main_grads=1, param_sync=0), **kw})


def run(rows, tables=T64):
    n = len(rows)
    rows = list(rows) + [rows[0]] * (PAD - n)
    vals = {k: np.asarray([r[k] for r in rows]) for k in rows[0]}
    if tables is T32:       # a float32 evaluation: float32 parameters too
        vals = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in vals.items()}
    p = S.params_from_dict("training", vals)
    o, _ = TRAIN(p, tables)
    return {k: np.asarray(v)[:n] for k, v in o._asdict().items()}


def _common(rows):
    from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
    from mlsys_opt.scenarios.parts import gather
    p = S.params_from_dict("training", {k: np.asarray([r[k] for r in rows]) for k in rows[0]})
    c = gather(p, T64, DEFAULT_EFFICIENCY)
    return c._replace(bw_up=np.asarray(c.bw_up), bw_up_ring=np.asarray(c.bw_up_ring), bw_out=np.asarray(c.bw_out))


def test_param_sync_broadcast_in_the_scenario():
    """The step grows by exactly the broadcasts' latency for ZeRO-1/2 and not for DDP or FSDP."""
    rows = [cfg(), cfg(param_sync=BROADCAST),
            cfg(n_accelerators=8, global_batch=64), cfg(n_accelerators=8, global_batch=64, param_sync=BROADCAST),
            cfg(zero_stage=0), cfg(zero_stage=0, param_sync=BROADCAST),
            cfg(zero_stage=3), cfg(zero_stage=3, param_sync=BROADCAST)]
    o = run(rows)
    d = o["step_time_s"][1::2] - o["step_time_s"][0::2]
    # llama2_7b: 32 layers -> InternEvo fa7337b greedy owners (INTERNEVO, walls.zero_sync): 1024 ranks: 162 large
    # + 129 small-only, 8 ranks (one node): 8; bytes and NCCL latency at the protocol NCCL picks, exposed
    c = _common(rows[:1])
    w = 2.0 * CAT.entry("models", "llama2_7b")["n_params"]
    np.testing.assert_allclose(d[0], float(zero_sync.broadcast_params_s(w, 1024.0, 8.0, 32.0, c.bw_up_ring[0],
                                                                        c.bw_out[0])),
                               rtol=1e-9)
    np.testing.assert_allclose(d[1], float(zero_sync.broadcast_params_s(w, 8.0, 8.0, 32.0, c.bw_up_ring[0],
                                                                        c.bw_out[0])),
                               rtol=1e-9)
    # at 1024 ranks NCCL's tuner picks LL (cheaper fill) over Simple's 28 us chunk steps
    assert 291 * (3.6e-6 + 1024 * 2.7e-6) < d[0] < 162 * (8.4e-6 + 1024 * 28e-6)
    np.testing.assert_allclose(d[2:], 0.0, atol=1e-12)
    assert np.all(np.isfinite(o["step_time_s"]))
    # float32 tables stay float32 and give the same term
    with jax.enable_x64(False):
        o32 = run(rows[:2], T32)
    assert o32["step_time_s"].dtype == np.float32
    np.testing.assert_allclose(o32["step_time_s"][1] - o32["step_time_s"][0], d[0], rtol=1e-4)


def test_param_sync_gradient_vs_finite_differences():
    """jax.grad of the step in n_accelerators (the broadcast term's n·28 µs included) vs central differences."""
    base = cfg(param_sync=BROADCAST)
    p0 = S.params_from_dict("training", {k: np.asarray([v] * PAD) for k, v in base.items()})

    def step(n):
        return S.training(p0._replace(n_accelerators=jnp.full((PAD,), n)), T64)[0].step_time_s[0]
    g = float(jax.jit(jax.grad(step), **jit_options())(1024.0))
    h = 0.5
    o = run([cfg(param_sync=BROADCAST, n_accelerators=1024.0 + h), cfg(param_sync=BROADCAST, n_accelerators=1024.0 - h),
             cfg(n_accelerators=1024.0 + h), cfg(n_accelerators=1024.0 - h)])
    fd = (o["step_time_s"][0] - o["step_time_s"][1]) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-4)
    # the broadcasts add the slope of walls.zero_sync.broadcast_params_s in n (INTERNEVO: 291 owners at NCCL's LL,
    # 2.7 µs per rank each, + bytes)
    c = _common([base])
    w = 2.0 * CAT.entry("models", "llama2_7b")["n_params"]
    slope = float(jax.grad(lambda n: zero_sync.broadcast_params_s(w, n, 8.0, 32.0, c.bw_up_ring[0],
                                                                  c.bw_out[0]))(1024.0))
    np.testing.assert_allclose(fd - (o["step_time_s"][2] - o["step_time_s"][3]) / (2 * h), slope, rtol=1e-5)
    assert slope > 291 * 2.7e-6


def test_internevo_zero1_group_mapping():
    base = {"hardware": "a100_80gb", "n_accelerators": 1024, "tp": 1, "pp": 1, "global_batch": 8192,
            "seq_len": 2048, "micro_batch_size": 2, "sharding": "zero1", "dp": 1024}
    whole = calsetup.to_settings("training", {**base, "zero1_group": -1}).settings
    node = calsetup.to_settings("training", {**base, "zero1_group": 8}).settings
    assert whole["param_sync"] == node["param_sync"] == "broadcast"
    assert whole["shard_group"] == 0 and node["shard_group"] == 8


def test_narayanan_2021_rows_predate_flash_attention_and_sequence_parallelism():
    from mlsys_opt.calibration import dataset
    from mlsys_opt.calibration.rows import plan_row
    rows = [r for r in dataset("legacy").rows if r.id.startswith("megatron21_t1_")]
    assert len(rows) == 10
    for r in rows:
        (_, settings), = plan_row(r).evaluations
        assert settings["attention"] == "eager" and settings["sequence_parallel"] == "off", r.id


def test_flat_ring_latency_and_per_block_fsdp_collectives():
    """NCCL's ReduceScatter/AllGather ring: n - 1 steps, nodes - 1 of them on the network; ZeRO-2/3 issue one
    collective per block (FSDP units), ZeRO-1 one per step, all-reduces keep the two-level latency."""
    ref = 448 * 2.45e-6 + 63 * 2e-6
    np.testing.assert_allclose(float(parallel.ring_latency_s(512.0, 8.0, 2.45e-6, 2e-6)), ref, rtol=1e-12)
    assert float(parallel.ring_latency_s(1.0, 8.0, 2.45e-6, 2e-6)) == 0.0
    np.testing.assert_allclose(float(parallel.ring_latency_s(8.0, 8.0, 2.45e-6, 2e-6)), 7 * 2.45e-6, rtol=1e-12)
    n = np.array([1.0, 8.0, 64.0, 512.0])
    np.testing.assert_allclose(np.asarray(parallel.ring_latency_s(n, 8.0, 2.45e-6, 2e-6)),
                               [float(parallel.ring_latency_s(x, 8.0, 2.45e-6, 2e-6)) for x in n], rtol=1e-12)
    f = lambda x: parallel.ring_latency_s(x[0], 8.0, x[1], x[2])     # noqa: E731
    x0 = jnp.asarray([512.0, 2.45e-6, 2e-6])
    g = np.asarray(jax.grad(f)(x0))
    np.testing.assert_allclose(g, [(7 / 8) * 2.45e-6 + (1 / 8) * 2e-6, 448.0, 63.0], rtol=1e-9)
    kw = dict(dp=512, shard=512, dp_local=8, bw_intra=400e9, alpha_intra=2.45e-6, bw_inter=48e9, alpha_inter=2e-6)
    g_b, w_b = 4e9, 2e9
    one = [parallel.data_parallel_times(g_b, w_b, zero_stage=z, layers=1.0, **kw) for z in range(4)]
    many = [parallel.data_parallel_times(g_b, w_b, zero_stage=z, layers=32.0, **kw) for z in range(4)]
    for z in (0, 1):                                        # all-reduce / bucketed distributed optimizer
        assert float(many[z][0]) == float(one[z][0]) and float(many[z][1]) == float(one[z][1])
    np.testing.assert_allclose(float(many[2][0] - one[2][0]), 2 * 31 * ref, rtol=1e-9)      # RS + AG per block
    np.testing.assert_allclose(float(many[3][1] - one[3][1]), 3 * 31 * ref, rtol=1e-9)      # 2 AG + RS per block
    # bytes: the flat ring's (the NIC share 1/8 of 511/512·M at 48e9 B/s), independent of the issue count
    rs_bytes = 511 / 512 * g_b / 8 / 48e9
    ag_bytes = 511 / 512 * w_b / 8 / 48e9
    np.testing.assert_allclose(float(one[1][0]), rs_bytes + ag_bytes + 2 * ref, rtol=1e-9)


def test_pipeline_p2p_sends_a_tensor_parallel_share():
    """Without sequence parallelism Megatron splits the p2p tensor over the t ranks for the network and
    all-gathers it over NVLink (Narayanan et al. 2021 §4.1): 2·M·V·(α + m/t/β + AG(m, t)); with SP the
    shard is already 1/t: 2·M·V·(α + m/t/β)."""
    from mlsys_opt.scenarios import training_comm as tcomm
    from mlsys_opt.scenarios import training_parts as tparts
    from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY as eff
    from mlsys_opt.scenarios.parts import gather
    rows = [cfg(model=CAT.index("models", "llama3_70b"), tp=8, pp=4, n_accelerators=256, global_batch=256,
                micro_batch_size=1, microbatches=0, virtual_stages=2, sequence_parallel=sp, fabric=CAT.index("fabrics", "ib_ndr"),
                hardware=CAT.index("accelerators", "h100_sxm"), pp_overlap=0.0) for sp in (0, 1)]
    p = S.params_from_dict("training", {k: np.asarray([r[k] for r in rows]) for k in rows[0]})
    c = gather(p, T64, eff)
    s = tparts.setup(p, c, eff, T64.model.vocab_size[np.asarray(p.model)])
    b, mb = np.array([1.0, 1.0]), np.array([32.0, 32.0])
    mem = tparts.memory(p, c, s, b, mb)
    cm = tcomm.communication(p, c, eff, s, tparts.compute(p, c, eff, s, mem, b, mb), b, mb)
    h, seq = 8192.0, 2048.0
    msg = 1.0 * seq * h * 2.0
    bw_out, a_out, bw_up, a_up = (np.asarray(x)[0] for x in (c.bw_out, c.alpha_out, c.bw_up_ring, c.alpha_up))
    send = a_out + msg / 8 / bw_out                         # stages are nodes apart: the network
    ag = float(parallel.reduce_scatter(msg, 8.0, bw_up, a_up))
    on_off = S.schema.SEQUENCE_PARALLEL                     # rows: sequence_parallel codes 0, 1
    expect = {"off": 2 * 32 * 2 * (send + ag), "on": 2 * 32 * 2 * send}
    np.testing.assert_allclose(np.asarray(cm.t_pp_s), [expect[on_off[0]], expect[on_off[1]]], rtol=1e-9)


def _parts(rows, b, mb):
    from mlsys_opt.scenarios import training_comm as tcomm
    from mlsys_opt.scenarios import training_parts as tparts
    from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY as eff
    from mlsys_opt.scenarios.parts import gather
    p = S.params_from_dict("training", {k: np.asarray([r[k] for r in rows]) for k in rows[0]})
    c = gather(p, T64, eff)
    s = tparts.setup(p, c, eff, T64.model.vocab_size[np.asarray(p.model)])
    mem = tparts.memory(p, c, s, b, mb)
    cmp = tparts.compute(p, c, eff, s, mem, b, mb)
    return c, s, cmp, tcomm.communication(p, c, eff, s, cmp, b, mb)


def _step_grad_checked(row, field, x0):
    """d step_time / d `field` at x0 for one row (jax.grad), checked against central differences; returns it."""
    p0 = S.params_from_dict("training", {k: np.asarray([v_] * PAD) for k, v_ in row.items()})

    def step(x, train=TRAIN):
        return train(p0._replace(**{field: jnp.full((PAD,), x)}), T64)[0].step_time_s[0]
    g = float(jax.jit(jax.grad(lambda x: step(x, S.training)), **jit_options())(x0))
    h = 1e-4
    fd = (float(step(x0 + h)) - float(step(x0 - h))) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6)
    return g


def test_nvlink_sharp_serves_all_reduce_only():
    """NVLS (NVLink SHARP) reduces in the switch for all-reduce; NCCL runs reduce-scatter, all-gather, all-to-all
    and send/recv over the links (NVIDIA/nccl#1083, #1506): those get the ring all-reduce fraction
    (catalog achievable.toml fabrics.nvlink4/5 busbw_frac_ring_large 0.817 / 0.758, Bekman NCCL_NVLS_ENABLE=0);
    parts without NVLS (A100, NVLink3: its curve is a ring curve) keep one rate."""
    parts = ("h100_sxm", "h200", "b200", "a100_80gb")
    c = _common([cfg(hardware=CAT.index("accelerators", h)) for h in parts])
    up, ring = np.asarray(c.bw_up), np.asarray(c.bw_up_ring)
    # eff.achievable = 1: bw = scaleup_bw · f (H100/H200 450 GB/s one way, B200 900 GB/s)
    np.testing.assert_allclose(up[:3], [450e9 * 1.06, 450e9 * 1.06, 900e9 * 0.94], rtol=1e-9)
    np.testing.assert_allclose(ring[:3], [450e9 * 0.817, 450e9 * 0.817, 900e9 * 0.758], rtol=1e-9)
    assert ring[3] == up[3]
    # batched (four parts at once) == one part at a time
    for i, h in enumerate(parts):
        assert float(_common([cfg(hardware=CAT.index("accelerators", h))]).bw_up_ring[0]) == ring[i]
    # TP with sequence parallelism (reduce-scatter + all-gather) at the ring rate, without SP (all-reduce) at NVLS
    rows = [cfg(model=CAT.index("models", "llama3_70b"), tp=8, pp=1, n_accelerators=64, global_batch=64,
                micro_batch_size=1, microbatches=0, sequence_parallel=sp, fabric=CAT.index("fabrics", "ib_ndr"),
                hardware=CAT.index("accelerators", "h100_sxm")) for sp in (0, 1)]
    on_off = S.schema.SEQUENCE_PARALLEL
    b, mb = np.array([1.0, 1.0]), np.array([8.0, 8.0])
    c, _, _, cm = _parts(rows, b, mb)
    msg = 2048.0 * 8192.0 * 2.0
    from mlsys_opt.walls import fleet
    one = {sp: float(fleet.ring_allreduce(msg, 8.0, 450e9 * (0.817 if on_off[sp] == "on" else 1.06),
                                          float(np.asarray(c.alpha_up)[0]))) for sp in (0, 1)}
    layers = 80.0
    for i in (0, 1):
        np.testing.assert_allclose(float(cm.t_tp_s[i]), mb[i] * layers * 4.0 * one[i], rtol=1e-9)


def test_data_parallel_reduce_scatter_and_all_gather_at_the_ring_rate():
    """ZeRO-1..3 move reduce-scatter / all-gather bytes at bw_intra_ring; ZeRO-0's all-reduce keeps bw_intra;
    without bw_intra_ring (default) nothing changes.  Batched == scalar; jax.grad vs finite differences."""
    kw = dict(dp=512, shard=512, dp_local=8, alpha_intra=2.45e-6, bw_inter=48e9, alpha_inter=2e-6)
    g_b, w_b = 4e9, 2e9
    lat = float(parallel.ring_latency_s(512.0, 8.0, 2.45e-6, 2e-6))
    for z in range(4):
        a = parallel.data_parallel_times(g_b, w_b, zero_stage=z, bw_intra=477e9, bw_intra_ring=368e9, **kw)
        same = parallel.data_parallel_times(g_b, w_b, zero_stage=z, bw_intra=477e9, **kw)
        ring = parallel.data_parallel_times(g_b, w_b, zero_stage=z, bw_intra=368e9, **kw)
        if z == 0:
            assert float(a[0]) == float(same[0])               # the all-reduce: NVLS rate
        else:
            assert float(a[0]) == float(ring[0]) and float(a[1]) == float(ring[1])
    rs = float(parallel.flat_ring_bytes_s(g_b, 512.0, 8.0, 368e9, 48e9))
    ag = float(parallel.flat_ring_bytes_s(w_b, 512.0, 8.0, 368e9, 48e9))
    z1 = parallel.data_parallel_times(g_b, w_b, zero_stage=1, bw_intra=477e9, bw_intra_ring=368e9, **kw)
    np.testing.assert_allclose(float(z1[0]), rs + ag + 2 * lat, rtol=1e-12)
    # the ring rate decides once the scale-up share is the slower one: 7/8 of 511/512 · 4e9 at 40e9 B/s
    # (8 per node) against the NIC's 1/8 at 48e9 B/s
    z1_slow = parallel.data_parallel_times(g_b, w_b, zero_stage=1, bw_intra=477e9, bw_intra_ring=40e9, **kw)
    np.testing.assert_allclose(float(z1_slow[0]), 511 / 512 * (g_b + w_b) * 7 / 8 / 40e9 + 2 * lat, rtol=1e-12)
    zs = np.array([0.0, 1.0, 2.0, 3.0])
    ringbw = np.array([300e9, 368e9, 400e9, 368e9])
    bf, bm = parallel.data_parallel_times(g_b, w_b, zero_stage=zs, bw_intra=477e9, bw_intra_ring=ringbw, **kw)
    for i in range(4):
        f1, m1 = parallel.data_parallel_times(g_b, w_b, zero_stage=zs[i], bw_intra=477e9, bw_intra_ring=ringbw[i], **kw)
        np.testing.assert_allclose([float(bf[i]), float(bm[i])], [float(f1), float(m1)], rtol=1e-12)

    def f(x):
        return parallel.data_parallel_times(g_b, w_b, zero_stage=3.0, bw_intra=477e9, bw_intra_ring=x, **kw)[1]
    x0 = 100e9          # the scale-up share is the slower one here (7/8 / 100e9 > 1/8 / 48e9)
    g = float(jax.grad(f)(x0))
    h = 1e6
    np.testing.assert_allclose(g, (float(f(x0 + h)) - float(f(x0 - h))) / (2 * h), rtol=1e-6)
    assert g < 0
    assert float(jax.grad(f)(368e9)) == 0.0     # ... and not at 368e9: the NIC share sets the time


def test_flat_ring_bytes_take_the_slower_link_share():
    """NCCL's ReduceScatter/AllGather ring moves (n-1)/n·M per rank, 1/g of it through the NIC and the rest
    over the scale-up links at the same time (tuning.cc: ring busBw = nChannels·bwInter beyond two nodes, one
    term): t = (n-1)/n·M·max((g-1)/g/β_i, 1/(g·β_e)); one node: (n-1)/n·M/β_i.  Reference values by hand;
    batched == scalar; jax.grad vs finite differences."""
    f = parallel.flat_ring_bytes_s
    # docstring example: the NIC share sets it (0.0103963 s), about half the two-level sum (0.0197648 s)
    np.testing.assert_allclose(float(f(4e9, 512.0, 8.0, 368e9, 48e9)), 511 / 512 * 4e9 / 8 / 48e9, rtol=1e-12)
    np.testing.assert_allclose(float(f(4e9, 512.0, 8.0, 368e9, 48e9)), 0.0103963, rtol=1e-5)
    np.testing.assert_allclose(float(parallel.hierarchical_reduce_scatter(4e9, 8.0, 64.0, 368e9, 0.0, 48e9, 0.0)),
                               0.0197648, rtol=1e-5)
    # slow scale-up (PCIe-class 20e9 B/s): its 7/8 share sets it
    np.testing.assert_allclose(float(f(4e9, 512.0, 8.0, 20e9, 48e9)), 511 / 512 * 4e9 * 7 / 8 / 20e9, rtol=1e-12)
    # one node: the ring inside it, = walls.parallel.reduce_scatter without latency; one rank per node: the NIC ring
    np.testing.assert_allclose(float(f(4e9, 8.0, 8.0, 368e9, 48e9)), float(parallel.reduce_scatter(4e9, 8, 368e9, 0.0)),
                               rtol=1e-12)
    np.testing.assert_allclose(float(f(4e9, 4.0, 8.0, 368e9, 48e9)), 3 / 4 * 4e9 / 368e9, rtol=1e-12)
    np.testing.assert_allclose(float(f(4e9, 64.0, 1.0, 368e9, 48e9)), float(parallel.reduce_scatter(4e9, 64, 48e9, 0.0)),
                               rtol=1e-12)
    assert float(f(4e9, 1.0, 8.0, 368e9, 48e9)) == 0.0
    # batched == scalar
    m = np.array([4e9, 4e9, 1e9, 2e9, 4e9])
    n = np.array([512.0, 8.0, 64.0, 16.0, 1.0])
    loc = np.array([8.0, 8.0, 1.0, 4.0, 8.0])
    bi = np.array([368e9, 368e9, 368e9, 20e9, 368e9])
    batched = np.asarray(f(m, n, loc, bi, 48e9))
    for i in range(len(m)):
        np.testing.assert_allclose(float(f(m[i], n[i], loc[i], bi[i], 48e9)), batched[i], rtol=1e-12)
    # jax.grad vs central finite differences in M, β_e (NIC share binding) and β_i (scale-up share binding)
    x0 = jnp.asarray([4e9, 48e9, 20e9])

    def g(x):
        return f(x[0], 512.0, 8.0, x[2], x[1]) + f(x[0], 512.0, 8.0, 368e9, x[1]) + f(x[0], 512.0, 8.0, x[2], 1e12)
    grad = np.asarray(jax.grad(g)(x0))
    for k, h in enumerate((1e3, 1e3, 1e3)):
        e = np.zeros(3)
        e[k] = h
        fd = (float(g(x0 + e)) - float(g(x0 - e))) / (2 * h)
        np.testing.assert_allclose(grad[k], fd, rtol=1e-6)


def test_pipeline_bubble_holds_the_stage_exposed_communication():
    """1F1B / interleaved: the bubble is (pp - 1) micro-batch slots of a stage's forward + backward, and a slot
    holds the micro-batch's exposed TP / CP / EP communication as well as its kernels:
    t_bubble = (t_compute + t_tp + t_cp + t_ep)·(pp - 1)/(V·M).  Reference, batched == scalar, jax.grad vs FD."""
    rows = [cfg(model=CAT.index("models", "llama3_70b"), tp=8, pp=pp, n_accelerators=64 * pp, global_batch=64,
                micro_batch_size=1, microbatches=0, virtual_stages=v, sequence_parallel=0, tp_overlap=0.0,
                fabric=CAT.index("fabrics", "ib_ndr"), hardware=CAT.index("accelerators", "h100_sxm"))
            for pp, v in ((4, 1), (4, 2), (1, 1), (8, 5))]
    b, mb = np.ones(4), np.array([8.0, 8.0, 8.0, 16.0])
    _, _, cmp, cm = _parts(rows, b, mb)
    pp, v = np.array([4.0, 4.0, 1.0, 8.0]), np.array([1.0, 2.0, 1.0, 5.0])
    slot = (np.asarray(cmp.t_compute_s) + np.asarray(cm.t_tp_s) + np.asarray(cm.t_cp_s) + np.asarray(cm.t_ep_s))
    np.testing.assert_allclose(np.asarray(cm.t_bubble_s), slot * (pp - 1) / (v * mb), rtol=1e-12)
    assert np.all(np.asarray(cm.t_tp_s) > 0) and float(cm.t_bubble_s[2]) == 0.0
    for i in range(4):
        _, _, _, one = _parts(rows[i:i + 1], b[i:i + 1], mb[i:i + 1])
        np.testing.assert_allclose(float(one.t_bubble_s[0]), float(cm.t_bubble_s[i]), rtol=1e-12)
    # d step / d tp_overlap: the exposed TP enters M·L·k·t_one·(1 - o) in the step and (pp-1)/(V·M) of it again
    g = _step_grad_checked(rows[0], "tp_overlap", 0.3)
    t_tp_full = float(cm.t_tp_s[0])                  # tp_overlap 0, efficiency.tp_comm_overlap 0: nothing hidden
    # ... less the 1/M of it that widens the DP window (ZeRO-1: the last micro-batch's compute + exposed TP; this
    # row's DP collectives outlast that window, so each second of TP wait hides 1/M second of DP traffic)
    assert float(cm.t_dp_exposed_s[0]) > 0.0
    np.testing.assert_allclose(-g, t_tp_full * (1 + 3 / 8 - 1 / 8), rtol=1e-6)


def test_interleaved_schedule_hides_its_steady_phase_sends():
    """PPOVL: Megatron's interleaved schedule waits for a chunk's sends a chunk later (overlap_p2p_comm, on by
    default, forced off without virtual stages): the steady 1F1B phase's share of the transfers, partner =
    1 - w/(V·M), w = 2(pp - 1) + (V - 1)·pp warm-up chunks, hides behind the stage's compute:
    t_pp = max((1 - o·partner)·t, t - t_compute - t_tp).  pp 4, V 2, M 32: partner = 1 - 10/64.
    Reference, V = 1 unchanged, batched == scalar, jax.grad vs finite differences."""
    base = dict(model=CAT.index("models", "llama3_70b"), tp=8, pp=4, n_accelerators=256, global_batch=256,
                micro_batch_size=1, microbatches=0, sequence_parallel=1, fabric=CAT.index("fabrics", "ib_ndr"),
                hardware=CAT.index("accelerators", "h100_sxm"))
    rows = [cfg(**base, virtual_stages=v, pp_overlap=o) for v, o in ((2, 0.0), (2, 1.0), (2, 0.5), (1, 0.0), (1, 1.0))]
    b, mb = np.ones(5), np.full(5, 32.0)
    _, _, cmp, cm = _parts(rows, b, mb)
    t_pp = np.asarray(cm.t_pp_s)
    partner = 1.0 - (2 * 3 + 1 * 4) / (2 * 32)
    assert float(cmp.t_compute_s[1]) > t_pp[0]                      # the window is not the limit here
    np.testing.assert_allclose(t_pp[1:3], t_pp[0] * (1.0 - np.array([1.0, 0.5]) * partner), rtol=1e-12)
    assert t_pp[3] == t_pp[4] > 0.0                                  # no virtual stages: every send waited
    for i in range(5):
        _, _, _, one = _parts(rows[i:i + 1], b[i:i + 1], mb[i:i + 1])
        np.testing.assert_allclose(float(one.t_pp_s[0]), t_pp[i], rtol=1e-12)
    assert _step_grad_checked(rows[2], "pp_overlap", 0.5) < 0.0


def test_zero1_issues_one_collective_per_gradient_bucket():
    """BUCKETS: Megatron-Core's default bucket is max(40e6, 1e6·dp) parameters (DistributedDataParallelConfig.
    bucket_size), so a ZeRO-1 step reduce-scatters and all-gathers ⌈P/B⌉ buckets, each paying the flat ring's
    latency; a framework's own bucket (PyTorch DDP's 25 MiB of fp32 gradients = 6,553,600) replaces it."""
    assert float(parallel.bucket_count(4e9, 128.0)) == 32.0            # B = 1.28e8
    assert float(parallel.bucket_count(4e9, 16.0)) == 100.0            # B = 4e7 (the floor)
    assert float(parallel.bucket_count(1e6, 16.0)) == 1.0
    assert float(parallel.bucket_count(0.0, 16.0)) == 1.0
    assert float(parallel.bucket_count(1.34e9, 128.0, 6553600.0)) == 205.0
    np.testing.assert_array_equal(np.asarray(parallel.bucket_count(np.array([4e9, 4e9, 1.34e9]), np.array([128.0, 16.0, 128.0]),
                                                                   np.array([0.0, 0.0, 6553600.0]))), [32.0, 100.0, 205.0])
    kw = dict(dp=128.0, shard=128.0, dp_local=8.0, bw_intra=4e11, alpha_intra=2.5e-6, bw_inter=4.8e10, alpha_inter=2e-6)
    lat = float(parallel.ring_latency_s(128.0, 8.0, 2.5e-6, 2e-6))
    for zs, want in ((1.0, 2 * (32 - 1) * lat), (3.0, 0.0), (0.0, 0.0)):   # ZeRO-1 only (ZeRO-3: per layer)
        one = parallel.data_parallel_times(8e9, 4e9, zero_stage=zs, **kw)
        many = parallel.data_parallel_times(8e9, 4e9, zero_stage=zs, buckets=32.0, **kw)
        np.testing.assert_allclose(float(many[0]) - float(one[0]), want, rtol=1e-12, atol=1e-15)
    # in the scenario: a row's own bucket (more, smaller buckets) lengthens the ZeRO-1 DP time by the latencies
    rows = [cfg(n_accelerators=1024, dp_bucket_params=b) for b in (0.0, 6553600.0)]
    _, s, _, _ = _parts(rows, np.array([2.0, 2.0]), np.array([4.0, 4.0]))
    assert float(s.dp_fixed_s[1]) > float(s.dp_fixed_s[0])


def test_dp_tail_is_one_issue_no_overlap_can_hide():
    """TAIL: the last gradient bucket's reduce-scatter runs after the backward's last kernel and the first
    parameter bucket's all-gather before the first forward (Megatron-Core overlap_grad_reduce /
    overlap_param_gather; FSDP per micro-batch): one issue's share of the collectives stays exposed."""
    kw = dict(dp=128.0, shard=128.0, dp_local=8.0, bw_intra=4e11, alpha_intra=2.5e-6, bw_inter=4.8e10, alpha_inter=2e-6)
    g_b, w_b = 8e9, 4e9
    lat = float(parallel.ring_latency_s(128.0, 8.0, 2.5e-6, 2e-6))
    rs = 127 / 128 * g_b / 8 / 4.8e10 + lat          # flat ring: the NIC share 1/8 of 127/128·M
    ag = 127 / 128 * w_b / 8 / 4.8e10 + lat
    z1 = parallel.data_parallel_collectives(g_b, w_b, zero_stage=1.0, buckets=32.0, **kw)
    np.testing.assert_allclose(float(z1.tail_fixed_s), (rs - lat + ag - lat) / 32 + 2 * lat, rtol=1e-12)
    assert float(z1.tail_per_microbatch_s) == 0.0
    z3 = parallel.data_parallel_collectives(g_b, w_b, zero_stage=3.0, layers=32.0, **kw)
    # ZeRO-3: per micro-batch one unit's AG + RS of the 32 (each unit pays the latency)
    np.testing.assert_allclose(float(z3.tail_per_microbatch_s), (rs - lat + ag - lat) / 32 + 2 * lat, rtol=1e-12)
    np.testing.assert_allclose(float(z3.tail_fixed_s), float(z3.fixed_s) / 32, rtol=1e-12)   # replication AR: 0 here
    z0 = parallel.data_parallel_collectives(g_b, w_b, zero_stage=0.0, buckets=10.0, **kw)
    np.testing.assert_allclose(float(z0.tail_fixed_s), float(z0.fixed_s) / 10, rtol=1e-12)
    # data_parallel_times is the (fixed, per micro-batch) pair of the same computation
    assert tuple(map(float, parallel.data_parallel_times(g_b, w_b, zero_stage=1.0, buckets=32.0, **kw))) == (
        float(z1.fixed_s), float(z1.per_microbatch_s))
    # batched = scalar
    zs, nb = np.array([0.0, 1.0, 2.0, 3.0]), np.array([10.0, 32.0, 1.0, 1.0])
    many = parallel.data_parallel_collectives(g_b, w_b, zero_stage=zs, buckets=nb, layers=32.0, **kw)
    for i in range(4):
        one = parallel.data_parallel_collectives(g_b, w_b, zero_stage=zs[i], buckets=nb[i], layers=32.0, **kw)
        np.testing.assert_allclose([float(many.tail_fixed_s[i]), float(many.tail_per_microbatch_s[i])],
                                   [float(one.tail_fixed_s), float(one.tail_per_microbatch_s)], rtol=1e-12)
    # jax.grad vs central differences (d tail / d gradient bytes)
    f = lambda x: parallel.data_parallel_collectives(x, w_b, zero_stage=1.0, buckets=32.0, **kw).tail_fixed_s  # noqa: E731
    h = 1e6
    np.testing.assert_allclose(float(jax.grad(f)(g_b)), (float(f(g_b + h)) - float(f(g_b - h))) / (2 * h), rtol=1e-6)
    np.testing.assert_allclose(float(jax.grad(f)(g_b)), 127 / 128 / 8 / 4.8e10 / 32, rtol=1e-9)


def test_dp_tail_stays_exposed_in_the_step():
    """With full overlap and a window far longer than the collectives, the step still waits for the tail; it
    never exceeds the collectives themselves, and the larger bucket of a larger dp (Megatron-Core's
    max(40M, 1M·dp)) exposes more."""
    rows = [cfg(overlap=1.0, n_accelerators=n, global_batch=8 * n) for n in (64, 1024)]
    _, s, _, comm = _parts(rows, np.array([2.0, 2.0]), np.array([4.0, 4.0]))
    tail = np.asarray(s.dp_tail_fixed_s)
    np.testing.assert_allclose(np.asarray(comm.t_dp_exposed_s), tail, rtol=1e-12)
    assert np.all(tail > 0) and np.all(tail < np.asarray(comm.t_dp_s))
    assert tail[1] > tail[0]
    no = [cfg(overlap=0.0, n_accelerators=64, global_batch=512)]
    _, _, _, c0 = _parts(no, np.array([2.0]), np.array([4.0]))
    np.testing.assert_allclose(np.asarray(c0.t_dp_exposed_s), np.asarray(c0.t_dp_s), rtol=1e-12)
