"""Reason codes of infeasible configurations (issue 7): per configuration in
`evaluate`, aggregated per constraint in `SweepResult.infeasible_by`."""
import numpy as np

import mlsys_opt as mo
from mlsys_opt.sweeps.api import constraint_names, evaluate_digits

SPEC = {
    "name": "reasons", "scenario": "training",
    "fixed": {"model": "llama3_70b", "n_tokens": "1e12 token", "global_batch": 64},
    "axes": {"hardware": ["h100_sxm", "a100_40gb"], "n_accelerators": [8, 24, 64],
             "tp": [1, 8], "microbatches": [1, 16]},
    "constraints": {"max_time": "60 day"},
    "objectives": {"minimize": ["time_to_train_s", "tco_usd"]},
}


def test_infeasible_counts_partition_the_space_and_match_per_configuration_codes():
    space = mo.load_space(SPEC)
    res = mo.sweep(space, progress=False, chunk_size=16)
    names = constraint_names(space)
    assert set(res.infeasible_by) == set(names) | {"non_finite"}
    assert res.infeasible_by["non_finite"] == 0
    assert res.n_feasible + sum(res.infeasible_by.values()) == res.n_evaluated == space.size

    digits = np.array(np.unravel_index(np.arange(space.size), space.radices)).T.astype(np.int32)
    G = np.asarray(evaluate_digits(space, digits).G, np.float64)
    bad = (G > 0).any(axis=1)
    expected = np.bincount(G[bad].argmax(axis=1), minlength=len(names))
    assert [res.infeasible_by[n] for n in names] == expected.tolist()
    assert res.infeasible_by["memory"] > 0 and sum(v > 0 for v in res.infeasible_by.values()) >= 2


def test_evaluate_names_the_reason():
    row = mo.evaluate("training", model="llama3_70b", hardware="h100_sxm", n_accelerators=8, tp=1,
                      n_tokens=1e12)
    assert not row["feasible"] and row["reason_code"] == 0 and row["infeasible_reason"] == "memory"
    ok = mo.evaluate("training", model="llama3_8b", hardware="h100_sxm", n_accelerators=8, tp=8,
                     n_tokens=1e11, global_batch=64, microbatches=64)
    assert ok["feasible"] and ok["reason_code"] == -1 and ok["infeasible_reason"] == ""
