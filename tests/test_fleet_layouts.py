"""search.fleet_layouts: the fewest accelerators for a deadline over tp × pp × ZeRO-stage layouts, and the best
layout of one configuration (training: fastest on its fleet; serving: cheapest for its load).

Checked against brute force (synthesis.min_devices_for_time, the exhaustive scan of one layout, run for every
layout; mlsys_opt.evaluate of every layout), and through `mlsys-opt synthesize --days` (searches the layouts --set
leaves open) and `mlsys-opt evaluate` (names the best layout when none was given).
"""
from __future__ import annotations

import itertools
import json

import pytest

from mlsys_opt import cli
from mlsys_opt.errors import MlsysOptError
from mlsys_opt.search.fleet_layouts import LAYOUT_AXES, best_layout_at, min_devices_over_layouts
from mlsys_opt.search.synthesis import min_devices_for_time

DAY = 86400.0
BASE = {"model": "llama3_8b", "hardware": "h100_sxm", "n_tokens": 2e12, "efficiency": 0.4, "precision": "fp16",
        "global_batch": 2048, "seq_len": 8192, "microbatches": 0, "tp": 1, "pp": 1, "n_accelerators": 1}


def _one_layout(layout: dict, days: float):
    cfg = {**BASE, **layout, "n_accelerators": layout["tp"] * layout["pp"]}
    return min_devices_for_time("training", cfg, days * DAY)


def test_the_search_equals_brute_force_over_every_layout():
    axes = {"tp": (1, 2, 8), "pp": (1, 4), "zero_stage": (1, 3)}
    r = min_devices_over_layouts("training", BASE, 14 * DAY, axes=axes)
    brute = {}
    for combo in itertools.product(*axes.values()):
        lay = dict(zip(axes, combo))
        d = _one_layout(lay, 14)
        if d.n:
            brute[combo] = (d.n, d.time_s)
    best = min(brute.items(), key=lambda kv: kv[1])
    assert r.n_layouts == 12
    assert (r.best.n, tuple(r.layout.values())) == (best[1][0], best[0])
    assert r.best.time_s == pytest.approx(best[1][1], rel=1e-6) and r.best.time_s <= 14 * DAY
    assert r.best.time_below_s > 14 * DAY                     # one group fewer misses the deadline
    # every tabled runner-up is that layout's exact answer, fewest first
    assert list(r.table["devices"]) == sorted(r.table["devices"])
    for _, row in r.table.iterrows():
        assert brute[(row["tp"], row["pp"], row["zero_stage"])][0] == row["devices"]
    # the capstone's tp 8 × pp 4 (the fixed default before the search) needs far more H100s for an 8B model
    assert brute[(8, 4, 1)][0] > 1.3 * r.best.n
    assert r.best.outputs["n_accelerators"] == r.best.n


def test_no_layout_meets_an_impossible_deadline_and_bad_axes_are_refused():
    r = min_devices_over_layouts("training", {**BASE, "model": "llama3_70b", "n_tokens": 15e12}, 14 * DAY)
    assert r.best.n == 0 and r.layout == {} and r.table.empty and r.n_layouts == 40
    with pytest.raises(MlsysOptError, match="not a training parameter"):
        min_devices_over_layouts("training", BASE, 14 * DAY, axes={"tensor_parallel": (1, 2)})
    with pytest.raises(MlsysOptError, match="at least one value"):
        min_devices_over_layouts("training", BASE, 14 * DAY, axes={"tp": ()})


def _json(capsys, *argv):
    code = cli.main(["--json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_synthesize_days_searches_the_layouts_set_leaves_open(capsys):
    argv = ("synthesize", "--model", "llama3_8b", "--days", "14", "--tokens", "2e12")
    free = _json(capsys, *argv)
    assert set(free["layout"]) == set(LAYOUT_AXES) and free["scenario_devices"] >= free["iron_law_devices"]
    pinned = _json(capsys, *argv, "--set", "tp=8", "pp=4", "zero_stage=1")
    assert "layout" not in pinned and pinned["scenario_devices"] > free["scenario_devices"]
    assert pinned["scenario_devices"] == _one_layout({"tp": 8, "pp": 4, "zero_stage": 1}, 14).n
    half = _json(capsys, *argv, "--set", "tp=2")          # tp pinned: pp × ZeRO stage searched
    assert set(half["layout"]) == {"pp", "zero_stage"} and half["scenario_devices"] >= free["scenario_devices"]
    code = cli.main(list(argv))
    out = capsys.readouterr().out
    assert code == 0 and "the fewest over 40 layouts of tp × pp × zero_stage" in out
    assert "fewest devices per layout" in out and f"{free['scenario_devices']:,} devices train in" in out


def test_the_fastest_layout_on_a_fleet_equals_evaluating_each_layout():
    import mlsys_opt
    cfg = {"model": "llama3_70b", "hardware": "h100_sxm", "n_tokens": 1.4e12, "n_accelerators": 96}
    axes = {"tp": (1, 4, 8), "pp": (1, 2, 5), "zero_stage": (1, 3)}       # pp 5 does not divide 96: skipped
    r = best_layout_at("training", cfg, axes=axes)
    times = {}
    for tp, pp, z in itertools.product(*axes.values()):
        if 96 % (tp * pp):
            continue
        out = mlsys_opt.evaluate("training", **cfg, tp=tp, pp=pp, zero_stage=z)
        if bool(out["feasible"]):
            times[(tp, pp, z)] = float(out["time_to_train_s"])
    assert len(r.table) == len(times) > 1
    assert tuple(r.layout.values()) == min(times, key=times.get)
    assert r.outputs["time_to_train_s"] == pytest.approx(min(times.values()), rel=1e-5)
    assert list(r.table["time_to_train_s"]) == sorted(r.table["time_to_train_s"])
    assert best_layout_at("training", {**cfg, "n_accelerators": 8}).layout == {}   # 70B fits no 8 H100s


def test_evaluate_names_the_fastest_layout_when_none_was_given(capsys):
    argv = ["evaluate", "--model", "llama3_70b", "--hardware", "h100_sxm", "--n-accelerators", "512",
            "--tokens", "1.4e12", "--no-sensitivity"]
    code = cli.main(argv)
    out = capsys.readouterr().out
    assert code == 3 and "feasible: NO" in out          # tp 1, pp 1: 70B states do not fit one GPU
    line = [x for x in out.splitlines() if x.startswith("layout: ")]
    assert len(line) == 1 and "feasible layouts on 512 × h100_sxm is tp " in line[0], out
    data = _json(capsys, *argv, "--allow-infeasible")
    hint = data["layout_hint"]
    flags = [f"--{k.replace('_', '-')}" if i % 2 == 0 else str(v) for k, v in hint["layout"].items() for i in (0, 1)]
    again = _json(capsys, *argv[:-1], *flags, "--no-sensitivity")
    assert again["feasible"] and again["layout_hint"] is None         # the layout named, then evaluated
    assert hint["objective"] == "time_to_train_s"
    assert again["outputs"]["time_to_train_s"] == pytest.approx(hint["value"], rel=1e-5)
    pinned = _json(capsys, *argv, "--tp", "1", "--allow-infeasible")
    assert pinned["layout_hint"] is None                               # a layout given: no hint


def test_serving_names_the_cheapest_layout_for_the_load(capsys):
    import mlsys_opt
    cfg = {"model": "llama3_70b", "hardware": "h100_sxm", "request_rate": "50 /s"}
    r = best_layout_at("serving", cfg)
    cost = {}
    for tp, pp in itertools.product((1, 2, 4, 8), (1, 2)):
        out = mlsys_opt.evaluate("serving", **cfg, tp=tp, pp=pp)
        if bool(out["feasible"]):
            cost[(tp, pp)] = float(out["cost_per_mtok_usd"])
    assert r.objective == "cost_per_mtok_usd" and len(r.table) == len(cost) and (1, 1) not in cost
    assert tuple(r.layout.values()) == min(cost, key=cost.get)
    assert r.outputs["cost_per_mtok_usd"] == pytest.approx(min(cost.values()), rel=1e-5)
    data = _json(capsys, "evaluate", "--model", "llama3_70b", "--hardware", "h100_sxm", "--request-rate", "50",
                 "--no-sensitivity", "--allow-infeasible")
    assert not data["feasible"] and data["layout_hint"]["layout"] == r.layout


def test_synthesize_days_searches_expert_parallelism_for_a_moe_model(capsys):
    moe = _json(capsys, "synthesize", "--model", "mixtral_8x7b", "--days", "30")
    assert set(moe["layout"]) == {*LAYOUT_AXES, "ep"} and moe["scenario_devices"] > 0
    assert moe["scenario_devices"] % (moe["layout"]["tp"] * moe["layout"]["pp"] * moe["layout"]["ep"]) == 0
    fixed = _json(capsys, "synthesize", "--model", "mixtral_8x7b", "--days", "30", "--set", "ep=1")
    assert "ep" not in fixed["layout"] and fixed["scenario_devices"] >= moe["scenario_devices"]


def test_the_window_starts_below_the_iron_law_when_the_scenario_beats_its_mfu(capsys):
    """The iron law at the user's MFU (0.4) is no lower bound: on TPU v5p the scenario trains Llama-3-70B in 14 days
    on fewer chips than 6PD/(T·peak·0.4).  The search starts at the physical bound (MFU = 1), so it finds them, and
    one group fewer misses the deadline."""
    cfg = {**BASE, "model": "llama3_70b", "n_tokens": 1.41e12, "hardware": "tpu_v5p", "tp": 4, "pp": 1,
           "zero_stage": 3, "n_accelerators": 4}
    d = min_devices_for_time("training", cfg, 14 * DAY)
    assert 0 < d.n < d.iron_law_n and d.time_s <= 14 * DAY < d.time_below_s
    data = _json(capsys, "synthesize", "--model", "llama3_70b", "--days", "14", "--tokens", "1.41e12")
    cand = {r["hardware"]: r for r in data["candidates"]}
    assert cand["h100_sxm"]["scenario_devices"] == data["scenario_devices"]
    assert cand["tpu_v5p"]["scenario_devices"] <= d.n
    assert cand["tpu_v5p"]["scenario_devices"] < cand["tpu_v5p"]["iron_law_devices"]
    found = [r["scenario_devices"] for r in data["candidates"] if r["scenario_devices"]]
    assert found == sorted(found) and all(r["layout"] for r in data["candidates"] if r["scenario_devices"])


def test_a_cnn_run_counts_its_flop_per_sample(capsys):
    """ResNet-50: 6·P·D (P = 25.6M parameters) undercounts a sample 160×; the scenario charges flop_per_sample
    (8.2 GFLOP forward) = 2·P_eff, so the iron law and the search window use 6·P_eff·D = 3 × 8.2e9 × D."""
    data = _json(capsys, "synthesize", "--model", "resnet50", "--days", "1", "--tokens", "1e9")
    assert data["training_flop"] == pytest.approx(3 * 8.2e9 * 1e9, rel=1e-9)
    assert data["scenario_time_s"] <= DAY and data["scenario_devices"] >= 2          # one H100 is not enough
    lay = data["layout"]
    d = min_devices_for_time("training", {**BASE, **lay, "model": "resnet50", "n_tokens": 1e9,
                                          "n_accelerators": lay["tp"] * lay["pp"]}, DAY)
    assert d.n == data["scenario_devices"] and d.time_s <= DAY < d.time_below_s


def test_absurd_deadlines_and_token_counts_answer_or_refuse_without_a_traceback(capsys):
    """A deadline no fleet can meet answers 'no fleet' at once (the refinement would otherwise scan millions of
    fleet sizes); a token count past 1e18 overflowed float32 to an infinite fleet (a traceback) and is refused."""
    for argv in (["--days", "1e-30"], ["--days", "1e-30", "--set", "tp=8", "pp=4", "zero_stage=1"]):
        data = _json(capsys, "synthesize", "--model", "llama3_70b", *argv)
        assert data["scenario_devices"] == 0
    code = cli.main(["synthesize", "--model", "llama3_70b", "--days", "30", "--tokens", "1e30"])
    err = capsys.readouterr().err
    assert code == 2 and "at most 1e+18 tokens" in err and "Traceback" not in err
