"""`evaluate`'s compiled-function cache is keyed by everything the traced program depends on.

A configuration that gives `microbatches` traces one micro-batch geometry; one that does not
traces the candidate set (scenarios.static_options): two programs, two cache entries.  (The table
work found a wrong step time from the reused program; on the configuration below the two programs
happen to agree, so the entries themselves are checked, and the values once more.)
"""
from __future__ import annotations

import importlib

import mlsys_opt

evaluation = importlib.import_module("mlsys_opt.point.evaluation")

BASE = dict(model="llama3_70b", hardware="h100_sxm", n_accelerators=1024, tp=8, pp=4, n_tokens="1e12 token")


def test_options_are_part_of_the_cache_key():
    import jax.numpy as jnp

    from mlsys_opt.sweeps.api import scenario_options
    one, candidates = (evaluation.point_space("training", dict(BASE, **extra)) for extra in ({"microbatches": 8}, {}))
    assert scenario_options(one) != scenario_options(candidates)
    assert evaluation._eval_fn(one, jnp.float32) is not evaluation._eval_fn(candidates, jnp.float32)
    given = mlsys_opt.evaluate("training", microbatches=8, **BASE)
    after = mlsys_opt.evaluate("training", **BASE)
    evaluation._EVAL_FNS.clear()
    fresh = mlsys_opt.evaluate("training", **BASE)
    assert after["step_time_s"] == fresh["step_time_s"]
    assert given["step_time_s"] != fresh["step_time_s"]          # the two programs differ here
