"""Node size (KEMPNER, issue 12): training parameter accelerators_per_node, setup key gpus_per_node.

KempnerForge's H200 cluster has 4 GPUs per node (benchmarks/mfu_scaling/mfu_scaling.md at 9f3f03a:
'8 nodes, 4x NVIDIA H200 (141 GB) per node'; mfu_bench.sh: srun --gpus-per-node=4) where the catalog's
h200 (HGX board) has 8.  accelerators_per_node > 0 replaces the catalog's node size for every
scale-up / scale-out decision; 0 keeps the catalog's.  Reference: the same configuration on a catalog
whose h200 entry says 4 per node; hand value of the tp_within_node constraint; batched == scalar;
jax.grad vs central differences.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from training_rows import CAT, check_batched_equals_scalar, check_step_time_grad, evaluate, row

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt.calibration.setup import to_settings
from mlsys_opt.scenarios.schema import RECOMPUTE

T64 = CAT.tables(dtype=jnp.float64)
T4 = CAT.with_entries("accelerators", {"h200": {"accelerators_per_node": 4}}).tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
PAD = 8


def kempner(**kw) -> dict:
    """Llama-3-8B on h200, TP4 x FSDP2 over 8 GPUs, 4 x 4096 tokens per micro-batch (KempnerForge exp. 07)."""
    d = row("h200", "llama3_8b", "ib_ndr", n_accelerators=8, tp=4, zero_stage=3, global_batch=16,
            micro_batch_size=4, seq_len=4096, recompute=RECOMPUTE.index("full_dce"), overlap=0.0)
    d.update(kw)
    return d


def run(rows, tables=T64):
    return evaluate(TRAIN, rows, PAD, tables)


CASES = [kempner(),                                                   # FSDP across nodes at 4 per node
         kempner(tp=1, micro_batch_size=2),                           # FSDP8: 2 nodes of 4
         kempner(tp=8, global_batch=8, micro_batch_size=4),           # TP8 spans two 4-GPU nodes
         kempner(n_accelerators=32, global_batch=32, tp=4)]           # TP4 x FSDP8 over 8 nodes


def test_setup_key_gpus_per_node_maps_to_the_parameter():
    assert to_settings("training", {"gpus_per_node": 4}).settings == {"accelerators_per_node": 4}
    from mlsys_opt.calibration.runs import load_runs
    rows = [r for r in load_runs("training") if r.source_key == "kempnerforge_2026"]
    assert len(rows) == 14
    for r in rows:
        assert to_settings("training", dict(r.setup)).settings["accelerators_per_node"] == 4, r.id


def test_node_size_equals_a_catalog_entry_with_that_node_size():
    """accelerators_per_node = 4 on the catalog's h200 == 0 on an h200 whose catalog entry says 4."""
    o, g = run([dict(c, accelerators_per_node=4) for c in CASES])
    o_ref, g_ref = run(CASES, T4)
    for k in o:
        np.testing.assert_allclose(o[k], o_ref[k], rtol=1e-12, atol=0, err_msg=k)
    for k in g:
        np.testing.assert_allclose(g[k], g_ref[k], rtol=1e-12, atol=1e-12, err_msg=k)
    # 0 and the catalog's own value (8) are the same model
    o0, _ = run(CASES)
    o8, _ = run([dict(c, accelerators_per_node=8) for c in CASES])
    np.testing.assert_allclose(o0["step_time_s"], o8["step_time_s"], rtol=1e-12)
    # hand values: tp_within_node = tp / G - 1 (TP8 on 4-GPU nodes: 8/4 - 1 = 1, infeasible; on 8: 0)
    assert g["tp_within_node"][2] == pytest.approx(1.0) and g["tp_within_node"][0] == pytest.approx(0.0)
    _, g8 = run([CASES[2]])
    assert g8["tp_within_node"][0] == pytest.approx(0.0)
    # groups pushed off NVLink onto InfiniBand (DP not overlapped here): every case slows down
    assert (o["step_time_s"] > o0["step_time_s"]).all()


def test_batched_equals_scalar_and_grad():
    check_batched_equals_scalar([dict(c, accelerators_per_node=a) for c, a in zip(CASES, (4, 0, 2, 4))], run)
    grad = check_step_time_grad(dict(CASES[0], accelerators_per_node=4), ["efficiency", "overlap"], T64)
    assert grad[0] < 0.0          # a faster GEMM rate shortens the step


def test_space_check_reads_the_node_size():
    """space.checks: tp above every node size is reported; accelerators_per_node > 0 is that node size."""
    from mlsys_opt.space import load_space
    from mlsys_opt.space.spec import SpecError
    base = {"name": "nodes", "scenario": "training", "fixed": {"model": "llama3_8b", "n_tokens": "1e9 token"},
            "axes": {"hardware": ["h200"], "tp": [16], "n_accelerators": [32]},
            "objectives": {"minimize": ["time_to_train_s"]}}
    with pytest.raises(SpecError, match="at most 8 accelerators per node"):
        load_space(base)                                                        # catalog: 8 per node
    load_space({**base, "fixed": {**base["fixed"], "accelerators_per_node": 16}})    # 16-GPU nodes: fine
    with pytest.raises(SpecError, match="at most 4 accelerators per node"):
        load_space({**base, "axes": {**base["axes"], "tp": [8]},
                    "fixed": {**base["fixed"], "accelerators_per_node": 4}})
