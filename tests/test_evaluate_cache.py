"""`evaluate`'s compiled-function cache is keyed by everything the traced program depends on.

A configuration that gives `microbatches` traces one micro-batch geometry; one that does not
traces the candidate set (scenarios.static_options).  Reusing the first program for the second
configuration evaluated 1 sequence per micro-batch (a wrong step time), found by the table work.
"""
from __future__ import annotations

import importlib

import mlsys_opt

evaluation = importlib.import_module("mlsys_opt.point.evaluation")

BASE = dict(model="llama3_70b", hardware="h100_sxm", n_accelerators=1024, tp=8, pp=4, n_tokens="1e12 token")


def test_options_are_part_of_the_cache_key():
    given = mlsys_opt.evaluate("training", microbatches=8, **BASE)
    after = mlsys_opt.evaluate("training", **BASE)
    evaluation._EVAL_FNS.clear()
    fresh = mlsys_opt.evaluate("training", **BASE)
    assert after["step_time_s"] == fresh["step_time_s"]
    assert given["step_time_s"] != fresh["step_time_s"]          # the two programs differ here
