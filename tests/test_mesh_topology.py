"""In-node wiring of the scale-up link (MESH, issue 12): a full mesh of direct links splits the part's
scale-up rate over its n - 1 links, so a group of k in-node ranks reaches (k - 1)/(n - 1) of it.

MI300X (one xGMI link to each of 7 peers) and Gaudi 2/3 (3 RoCE ports to each of 7 peers) are meshes;
NVSwitch parts are not.  Reference values by hand and from a published measurement, the scenario on a
mesh equal to the scenario on a switch part with the group's share of the bandwidth, batched == scalar,
jax.grad vs finite differences.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import training_rows as R

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.catalog import load_catalog
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
from mlsys_opt.scenarios.parts import gather, group_link_bw

CAT = load_catalog()
T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())
PAD = 4


def _hw(name):
    return CAT.index("accelerators", name)


def _row(hw, n, tp, **kw):
    return R.row(hw, "llama3_8b", "eth_400g", **{
        **dict(precision=PRECISIONS.index("fp16"), n_accelerators=n, tp=tp, pp=1, cp=1, ep=1, zero_stage=1,
               global_batch=8 * n // tp, seq_len=4096, micro_batch_size=1, microbatches=8, recompute=0,
               efficiency=0.5, sequence_parallel=1), **kw})


def test_catalog_marks_the_mesh_parts():
    mesh = dict(zip(CAT.names("accelerators"), np.asarray(T64.hw.scaleup_mesh)))
    assert {k for k, v in mesh.items() if v} == {"mi300x", "gaudi2", "gaudi3"}


def test_group_share_reference_values():
    rows = [_row(hw, 8, 1) for hw in ("mi300x", "h100_sxm")]
    c = gather(R.stack(rows, 2), T64, DEFAULT_EFFICIENCY)
    bw = jnp.asarray([7e9, 7e9])
    for k, want in ((1, 1 / 7), (2, 1 / 7), (4, 3 / 7), (8, 1.0), (16, 1.0)):
        got = np.asarray(group_link_bw(c, bw, float(k)))
        np.testing.assert_allclose(got, [7e9 * want, 7e9], rtol=1e-12, err_msg=str(k))
    # d bw_k / d bw = the share: linear in the link rate, so the scenario stays differentiable in it
    g = jax.grad(lambda x: group_link_bw(c, x, 2.0)[0])(jnp.asarray([7e9, 7e9]))
    np.testing.assert_allclose(np.asarray(g), [1 / 7, 0.0], rtol=1e-12)


def test_rule_against_the_measured_two_gpu_all_reduce():
    """Bekman, ml-engineering network/README.md all_reduce_bench on 8 x MI300X (4 GiB): busbw 312.912 GB/s
    over 8 GPUs, 47.671 over 2; the rule predicts 312.912 / 7 = 44.7 (within 7 %)."""
    assert 312.912 / 7 == pytest.approx(47.671, rel=0.07)


def _switch_with_share(tables, hw, share):
    """The catalog with `hw` made a switch part whose scale-up link has `share` of its rate."""
    i = _hw(hw)
    h = tables.hw
    return tables._replace(hw=h._replace(scaleup_mesh=h.scaleup_mesh.at[i].set(False),
                                         scaleup_bw_bytes_per_s=h.scaleup_bw_bytes_per_s.at[i].mul(share)))


@pytest.mark.parametrize("hw", ["mi300x", "gaudi2"])
def test_tp2_on_a_mesh_equals_a_switch_with_one_link(hw):
    """Two accelerators, tp 2: the only in-node group is the TP pair, which drives 1 of the 7 links."""
    rows = [_row(hw, 2, 2), _row(hw, 2, 2, sequence_parallel=0), _row(hw, 2, 2, recompute=2)]
    mesh, _ = R.evaluate(TRAIN, rows, PAD, T64)
    one_link, _ = R.evaluate(TRAIN, rows, PAD, _switch_with_share(T64, hw, 1 / 7))
    full, _ = R.evaluate(TRAIN, rows, PAD, _switch_with_share(T64, hw, 1.0))
    for k in mesh:
        np.testing.assert_allclose(mesh[k], one_link[k], rtol=1e-12, err_msg=k)
    assert np.all(mesh["step_time_s"] > full["step_time_s"])


def test_a_full_node_group_sees_the_whole_link_and_switch_parts_do_not_move():
    rows = [_row("mi300x", 8, 8), _row("h100_sxm", 8, 2), _row("h100_sxm", 16, 4)]
    mesh, _ = R.evaluate(TRAIN, rows, PAD, T64)
    h = T64.hw
    switch = T64._replace(hw=h._replace(scaleup_mesh=jnp.zeros_like(h.scaleup_mesh)))
    flat, _ = R.evaluate(TRAIN, rows, PAD, switch)
    for k in mesh:
        np.testing.assert_allclose(mesh[k], flat[k], rtol=1e-12, err_msg=k)


def test_data_parallel_group_inside_the_node():
    """tp 2 x dp 4 in one Gaudi 2 node: the DP group of 4 drives 3 of the 7 links; on a switch it would
    drive all of them, so the mesh can only be slower, and equals the switch at 3/7 when tp is 1 x dp 4."""
    rows = [_row("gaudi2", 4, 1, zero_stage=3)]
    mesh, _ = R.evaluate(TRAIN, rows, PAD, T64)
    three, _ = R.evaluate(TRAIN, rows, PAD, _switch_with_share(T64, "gaudi2", 3 / 7))
    np.testing.assert_allclose(mesh["step_time_s"], three["step_time_s"], rtol=1e-12)
    both, _ = R.evaluate(TRAIN, [_row("gaudi2", 8, 2, zero_stage=3)], PAD, T64)
    switched, _ = R.evaluate(TRAIN, [_row("gaudi2", 8, 2, zero_stage=3)], PAD, _switch_with_share(T64, "gaudi2", 1.0))
    assert both["step_time_s"][0] > switched["step_time_s"][0]


def test_batched_equals_scalar_and_gradient():
    rows = [_row("mi300x", 2, 2), _row("gaudi2", 8, 4), _row("h100_sxm", 8, 2), _row("gaudi3", 4, 1, zero_stage=3)]
    R.check_batched_equals_scalar(rows, lambda rs: R.evaluate(TRAIN, rs, PAD, T64))
    i = _hw("gaudi2")

    def with_bw(tables, x):
        return tables._replace(hw=tables.hw._replace(
            scaleup_bw_bytes_per_s=tables.hw.scaleup_bw_bytes_per_s.at[i].set(x)))
    g = R.check_table_grad(_row("gaudi2", 2, 2), T64, with_bw, float(T64.hw.scaleup_bw_bytes_per_s[i]))
    assert g < 0        # a faster link, a shorter step


def test_serving_tp_all_reduce_on_a_mesh():
    """Serving's TP all-reduces (2 per layer) on MI300X: tp 2 at one link's rate, tp 8 at the whole; the
    pipeline hop is one link."""
    from types import SimpleNamespace

    from mlsys_opt.scenarios import serving_steps as ST
    from mlsys_opt.walls import fleet
    c = gather(R.stack([_row("mi300x", 8, 1)], 1), T64, DEFAULT_EFFICIENCY)
    tokens = jnp.asarray([4096.0])
    msg = 4096.0 * 4096.0 * 2.0                     # tokens x hidden (llama3_8b) x 16-bit
    layers = 32.0
    for tp, share in ((2.0, 1 / 7), (8.0, 1.0)):
        r = SimpleNamespace(in_node=jnp.asarray([True]), tp=jnp.asarray([tp]), ep=jnp.asarray([1.0]),
                            pp=jnp.asarray([1.0]), imbalance=jnp.asarray([1.0]))
        want = 2.0 * layers * fleet.ring_allreduce(msg, tp, c.bw_up * share, c.alpha_up)
        np.testing.assert_allclose(np.asarray(ST.comm_s(r, c, tokens)), np.asarray(want), rtol=1e-12)
    r = SimpleNamespace(in_node=jnp.asarray([True]), tp=jnp.asarray([1.0]), ep=jnp.asarray([1.0]),
                        pp=jnp.asarray([2.0]), imbalance=jnp.asarray([1.0]))
    np.testing.assert_allclose(np.asarray(ST.comm_s(r, c, tokens)), np.asarray(c.alpha_up + msg / (c.bw_up / 7)),
                               rtol=1e-12)


def test_a_smaller_node_keeps_the_boards_link_count():
    """A training row that sets accelerators_per_node = 4 on MI300X (a 4-GPU slice of the 8-GPU board):
    its tp-4 group drives 3 of the board's 7 links, not all of a 3-link mesh."""
    rows = [_row("mi300x", 4, 4, accelerators_per_node=4)]
    mesh, _ = R.evaluate(TRAIN, rows, PAD, T64)
    three, _ = R.evaluate(TRAIN, rows, PAD, _switch_with_share(T64, "mi300x", 3 / 7))
    for k in mesh:
        np.testing.assert_allclose(mesh[k], three[k], rtol=1e-12, err_msg=k)
