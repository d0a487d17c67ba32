"""Design-space specs (mlsys_opt/space/spec.py): axis forms, decoding, and every class of bad spec.

Most tests run against a small stand-in catalog (`FakeCatalog`) so they do not
move when catalog data changes; the ready spaces in spaces/ are checked
against the real catalog.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys_opt import units
from mlsys_opt._types import PRECISIONS
from mlsys_opt.errors import SpecError
from mlsys_opt.scenarios import schema
from mlsys_opt.space.spec import AXIS_FORMS, SPACES_DIR, TOP_KEYS, Space, list_spaces, load_space


class FakeCatalog:
    """The slice of the catalog API space.py uses: names, index, frames (tables for the sweeps)."""
    NAMES = {
        "accelerators": ["h100_sxm", "h100_pcie", "a100_80gb", "b200", "l4"],
        "models": ["llama3_8b", "llama3_70b", "resnet50"],
        "fabrics": ["ib_ndr", "nvlink4"],
        "regions": ["quebec", "us_avg", "poland"],
    }

    def names(self, kind):
        return list(self.NAMES[kind])

    def index(self, kind, name):
        return self.NAMES[kind].index(name)

    def tables(self):
        has = np.ones((5, len(PRECISIONS)), bool)
        has[2, PRECISIONS.index("fp8")] = False            # a100_80gb: no fp8
        return SimpleNamespace(
            hw=SimpleNamespace(accelerators_per_node=np.array([8, 8, 8, 8, 1.0]), has_precision=has),
            model=SimpleNamespace(n_layers=np.array([32, 80, 50.0]), n_experts=np.array([1, 1, 1.0])))

    @property
    def frames(self):
        """The columns the spec checks read (space/checks.py reads frames, not the JAX tables)."""
        import pandas as pd
        t = self.tables()
        acc = pd.DataFrame({"name": self.NAMES["accelerators"], "accelerators_per_node": t.hw.accelerators_per_node,
                            **{f"has_{p}": t.hw.has_precision[:, i] for i, p in enumerate(PRECISIONS)}})
        models = pd.DataFrame({"name": self.NAMES["models"], "n_layers": t.model.n_layers,
                               "n_experts": t.model.n_experts, "n_heads": [32, 64, 0], "n_kv_heads": [8, 8, 0],
                               "context_len": [8192, 8192, 0]})
        return {"accelerators": acc, "models": models}


CAT = FakeCatalog()
BASE = {
    "name": "t",
    "scenario": "training",
    "fixed": {"model": "llama3_70b", "n_tokens": "1e12 token"},
    "axes": {"hardware": ["h100_sxm", "b200"], "n_accelerators": {"pow2": [8, 64]}, "tp": [1, 8]},
    "objectives": {"minimize": ["time_to_train_s", "tco_usd"]},
}


def spec(**changes) -> dict:
    """BASE with section updates: spec(axes={"pp": [1, 2]}) adds an axis; value None deletes a key."""
    out = copy.deepcopy(BASE)
    for section, update in changes.items():
        if not isinstance(update, dict) or section not in out or not isinstance(out[section], dict):
            out[section] = update
            continue
        for key, value in update.items():
            if value is None:
                out[section].pop(key, None)
            else:
                out[section][key] = value
    return {k: v for k, v in out.items() if v is not None}


def load(data) -> Space:
    return load_space(data, catalog=CAT)


def axis(space: Space, name: str):
    return next(a for a in space.axes if a.name == name)


# --------------------------------------------------------------------------- ready spaces

def test_ready_spaces_parse_with_the_real_catalog():
    infos = {i.name: i for i in list_spaces()}
    assert {"llama3_70b_training", "llama3_serving", "capstone"} <= set(infos)
    for name, info in infos.items():
        space = load_space(info.path)
        assert space.name == name and space.scenario == info.scenario and info.description
        assert space.size == math.prod(space.radices) > 1
        assert space.objectives and space.describe().startswith(name)
    cap = load_space("capstone")              # by name, from spaces/
    assert 10**5 <= cap.size <= 10**6
    assert axis(cap, "region").labels == tuple(cap.catalog.names("regions"))
    assert cap.limits["time_to_train_s"] == ("max", 30 * 86400.0)
    assert cap.limits["carbon_kg"] == ("max", 1e6)
    assert {o for o, _ in cap.objectives} == {"time_to_train_s", "tco_usd", "carbon_kg"}
    alias = load_space(spec(axes={"hardware": ["H100", "b200"]}))     # catalog aliases are accepted
    assert axis(alias, "hardware").labels == ("h100_sxm", "b200")
    serving = load_space("llama3_serving")
    assert serving.fixed["request_rate"] == 1000.0
    assert serving.limits["itl_s"] == ("max", pytest.approx(0.05))


# --------------------------------------------------------------------------- axis forms

def test_axis_forms_expand():
    s = load(spec(axes={
        "n_accelerators": {"pow2": [3, 100]},
        "pp": {"range": [1, 8]},
        "microbatches": {"range": [4, 64], "step": 4},
        "efficiency": {"linspace": [0.3, 0.6], "count": 4},
        "checkpoint_interval": {"range": ["10 min", "2 h"], "step": "10 min"},
        "overlap": {"values": [0, 0.5, 0.9]},
        "global_batch": {"log": [1, 100], "count": 20},
        "seq_len": {"log": [1024, 8192], "count": 4},
        "region": "*",
        "precision": ["bf16", "fp8"],
    }))
    np.testing.assert_array_equal(axis(s, "n_accelerators").values, [4, 8, 16, 32, 64])
    np.testing.assert_array_equal(axis(s, "pp").values, np.arange(1, 9))
    np.testing.assert_array_equal(axis(s, "microbatches").values, np.arange(4, 65, 4))
    np.testing.assert_allclose(axis(s, "efficiency").values, [0.3, 0.4, 0.5, 0.6])
    ck = axis(s, "checkpoint_interval")
    np.testing.assert_allclose(ck.values, 600.0 * np.arange(1, 13))     # SI seconds
    assert ck.labels[0] == "600 s" and ck.labels[-1] == "7200 s"
    assert axis(s, "overlap").labels == ("0", "0.5", "0.9")
    gb = axis(s, "global_batch").values                                  # rounded, deduplicated, sorted
    assert gb[0] == 1 and gb[-1] == 100 and len(set(gb)) == len(gb) < 20 and np.all(np.diff(gb) > 0)
    np.testing.assert_array_equal(axis(s, "seq_len").values, [1024, 2048, 4096, 8192])
    region = axis(s, "region")
    assert region.labels == ("quebec", "us_avg", "poland") and list(region.values) == [0, 1, 2]
    prec = axis(s, "precision")                                          # alias bf16 -> fp16
    assert prec.labels == ("fp16", "fp8") and list(prec.values) == [2, 3]
    assert s.radices == tuple(len(a.labels) for a in s.axes)
    assert list(s.axis_names)[:3] == ["hardware", "n_accelerators", "tp"]   # file order
    plain = load(spec(axes={"overlap": [0, 0.5, 0.9]}))
    np.testing.assert_array_equal(axis(plain, "overlap").values, axis(s, "overlap").values)


def test_fixed_defaults_limits_and_settings():
    s = load(spec(fixed={"checkpoint_interval": "30 min", "recompute": "FULL"},
                  constraints={"max_time": "30 day", "budget": "$5e6", "max_carbon": "500 t",
                               "max_water": "1e6 L", "min_mfu": 0.3},
                  objectives={"maximize": ["mfu"], "report": ["goodput", "tco_usd"]},
                  search={"evals": 500, "pop_size": 50}))
    assert s.fixed["checkpoint_interval"] == 1800.0
    assert s.fixed["recompute"] == schema.RECOMPUTE.index("full")
    assert s.fixed["model"] == CAT.index("models", "llama3_70b") and s.fixed["n_tokens"] == 1e12
    assert set(s.fixed) | set(s.defaults) | set(s.axis_names) == set(schema.TRAINING_PARAMS)
    assert s.defaults["seq_len"] == 4096 and s.defaults["recovery"] == 600.0
    assert s.defaults["depreciation"] == units.parse("3 year", "time")
    assert s.defaults["region"] == CAT.index("regions", "us_avg")
    assert s.limits == {"time_to_train_s": ("max", 2592000.0), "tco_usd": ("max", 5e6),
                        "carbon_kg": ("max", 5e5), "water_l": ("max", 1e6), "mfu": ("min", 0.3)}
    assert s.objectives == (("time_to_train_s", "min"), ("tco_usd", "min"), ("mfu", "max"))
    assert s.report == ("goodput",)           # objectives are not repeated as report columns
    assert s.search == {"algorithm": "nsga2", "evals": 500, "pop_size": 50, "seed": 0}
    assert s.sweep == {"chunk_size": 65536, "front_capacity": 4096}
    text = s.describe()
    assert "hardware 2 × n_accelerators 4 × tp 2" in text and "16 configurations" in text


# --------------------------------------------------------------------------- decoding

def test_param_values_under_jit_and_labels_round_trip():
    s = load(spec(axes={"checkpoint_interval": {"range": ["10 min", "1 h"], "step": "10 min"},
                        "precision": ["fp16", "fp8"], "efficiency": [0.25, 0.5]}))
    rng = np.random.default_rng(0)
    digits = np.stack([rng.integers(0, r, 64) for r in s.radices], axis=1).astype(np.int32)
    f64 = jax.jit(lambda d: s.param_values(d, jnp.float64))(digits)
    f32 = jax.jit(s.param_values)(digits)
    assert set(f64) == set(schema.TRAINING_PARAMS)
    for k, a in enumerate(s.axes):
        coded = a.kind in ("catalog", "choice")
        np.testing.assert_array_equal(np.asarray(f64[a.name]), a.values[digits[:, k]])
        assert f64[a.name].dtype == (jnp.int32 if coded else jnp.float64)
        assert f32[a.name].dtype == (jnp.int32 if coded else jnp.float32)
    np.testing.assert_array_equal(f64["seq_len"], np.full(64, 4096.0))
    np.testing.assert_array_equal(f64["model"], np.full(64, 1))
    assert f64["n_tokens"].shape == (64,) and float(f64["n_tokens"][0]) == 1e12

    frame = s.labels(digits)
    assert list(frame.columns) == ["hardware", "n_accelerators", "tp", "checkpoint_interval_s",
                                   "precision", "efficiency"]
    np.testing.assert_array_equal(frame["checkpoint_interval_s"], np.asarray(f64["checkpoint_interval"]))
    assert frame["n_accelerators"].dtype == np.int64
    for row, d in zip(frame.head(8).to_dict("records"), digits[:8]):
        back = {"checkpoint_interval": f"{row.pop('checkpoint_interval_s')} s", **row}
        np.testing.assert_array_equal(s.digits_for(back), d)
    with pytest.raises(SpecError, match="<dict>: tpp: not an axis of t; did you mean 'tp'"):
        s.digits_for({"tpp": 8})
    with pytest.raises(SpecError, match=r"tp: 4 is not on the axis \(axis values: 1, 8\)"):
        s.digits_for({"tp": 4})


# --------------------------------------------------------------------------- bad specs

BAD = {
    "top_level": (dict(axis={"tp": [1]}), ["axis: unknown top-level key; did you mean 'axes'?",
                                           "allowed: name, description, scenario"]),
    "scenario": (dict(scenario="trainig"), ["scenario: unknown scenario 'trainig'; did you mean 'training'?",
                                            "allowed: training, serving"]),
    "axes_param": (dict(axes={"hardwre": ["b200"]}), ["[axes] hardwre: not a parameter of the training "
                                                      "scenario; did you mean 'hardware'?", "allowed: hardware"]),
    "fixed_param": (dict(fixed={"seq_length": 8}), ["[fixed] seq_length", "did you mean 'seq_len'?"]),
    "fixed_and_axis": (dict(fixed={"tp": 8}), ["[axes] tp: is both fixed and an axis"]),
    "required": (dict(fixed={"model": None}), ["[fixed] model: required for the training scenario",
                                               'e.g. model = "llama3_70b"']),
    "required_serving": (dict(scenario="serving", fixed={"n_tokens": None}, axes={"n_accelerators": None},
                              objectives={"minimize": ["p99_latency_s"]}), ["[fixed] request_rate: required"]),
    "empty_axis": (dict(axes={"pp": []}), ["[axes] pp: empty axis"]),
    "catalog_name": (dict(axes={"hardware": ["h1000", "b200"]}),
                     ["[axes] hardware: 'h1000' is not a known accelerator; did you mean 'h100_sxm'?",
                      "allowed: h100_sxm, h100_pcie, a100_80gb, b200, l4"]),
    "region_name": (dict(fixed={"region": "quebek"}), ["[fixed] region: 'quebek' is not a known region; "
                                                       "did you mean 'quebec'?"]),
    "choice": (dict(fixed={"precision": "fp9"}), ["[fixed] precision: 'fp9' is not an allowed choice",
                                                  "allowed: fp32, tf32, fp16, fp8, int8, int4", "bf16=fp16"]),
    "choice_type": (dict(fixed={"recompute": 1}), ["[fixed] recompute: expected a name (string); got 1"]),
    "unit": (dict(fixed={"checkpoint_interval": "10 GB"}), ["[fixed] checkpoint_interval: expected time",
                                                            "'10 GB'"]),
    "unit_missing": (dict(fixed={"recovery": 600}), ["[fixed] recovery: expected time", "needs a unit"]),
    "non_integer": (dict(axes={"tp": [1, 2.5]}), ["[axes] tp: expected an integer; got 2.5"]),
    "above_high": (dict(fixed={"efficiency": 1.5}), ["[fixed] efficiency: 1.5 is above the maximum 1"]),
    "nan": (dict(fixed={"overlap": float("nan")}), ["[fixed] overlap", "not a finite number"]),
    "inf_int": (dict(fixed={"seq_len": float("inf")}), ["[fixed] seq_len: inf is not a finite number"]),
    "negative_size": (dict(axes={"n_accelerators": [-8, 8]}), ["[axes] n_accelerators: -8 is below the minimum 1"]),
    "zero_stage_high": (dict(fixed={"zero_stage": 4}), ["[fixed] zero_stage: 4 is above the maximum 3"]),
    "star_non_catalog": (dict(axes={"pp": "*"}), ["[axes] pp: '*' (a whole catalog class) only works for "
                                                  "catalog parameters (hardware, model, region, fabric); this one takes a list or pow2/range/log"]),
    "fixed_list": (dict(fixed={"pp": [1, 2]}), ["[fixed] pp: a fixed value is one value", "move it to [axes]"]),
    "scalar_axis": (dict(axes={"pp": 4}), ["[axes] pp: an axis is a list", "put it under [fixed]"]),
    "low_gt_high": (dict(axes={"pp": {"range": [8, 1]}}), ["[axes] pp: range low 8 is greater than high 1"]),
    "step_zero": (dict(axes={"pp": {"range": [1, 8], "step": 0}}), ["[axes] pp: range step must be > 0"]),
    "count_zero": (dict(axes={"efficiency": {"linspace": [0.1, 0.5], "count": 0}}),
                   ["[axes] efficiency: linspace needs count = a positive integer; got 0"]),
    "pow2_bounds": (dict(axes={"n_accelerators": {"pow2": [0, 64]}}),
                    ["[axes] n_accelerators: pow2 bounds must be positive"]),
    "pow2_empty": (dict(axes={"n_accelerators": {"pow2": [5, 7]}}), ["no power of two lies in [5, 7]"]),
    "two_forms": (dict(axes={"pp": {"range": [1, 2], "values": [1]}}), ["needs exactly one of values, pow2"]),
    "quantity_step": (dict(axes={"recovery": {"range": ["1 min", "5 min"]}}), ["needs step = a quantity"]),
    "duplicate": (dict(axes={"tp": [1, 2, 2]}), ["[axes] tp: '2' appears twice"]),
    "duplicate_units": (dict(axes={"recovery": ["1 h", "60 min"]}), ["'60 min' repeats '1 h'"]),
    "duplicate_alias": (dict(axes={"precision": ["fp16", "bf16"]}), ["'fp16' appears twice"]),
    "objective": (dict(objectives={"minimize": ["time_to_train"]}),
                  ["[objectives] minimize: 'time_to_train' is not an output of the training scenario; "
                   "did you mean 'time_to_train_s'?", "allowed: time_to_train_s, tco_usd"]),
    "report": (dict(objectives={"report": ["mfuu"]}), ["[objectives] report: 'mfuu'", "did you mean 'mfu'?"]),
    "code_objective": (dict(objectives={"minimize": ["bottleneck"]}), ["'bottleneck' is a category code"]),
    "no_objectives": (dict(objectives={"minimize": []}), ["[objectives] minimize: no objectives",
                                                          "allowed: time_to_train_s"]),
    "constraint_key": (dict(constraints={"max_tim": "3 day"}),
                       ["[constraints] max_tim: unknown constraint for the training scenario; "
                        "did you mean 'max_time'?", "allowed: max_time, budget, max_carbon"]),
    "constraint_unit": (dict(constraints={"max_carbon": "5 h"}), ["[constraints] max_carbon: expected carbon"]),
    "min_mfu": (dict(constraints={"min_mfu": 1.5}), ["[constraints] min_mfu: no configuration can satisfy "
                                                     "mfu >= 1.5"]),
    "negative_budget": (dict(constraints={"budget": "-5 USD"}), ["[constraints] budget: no configuration can "
                                                                 "satisfy tco_usd <= -5 USD"]),
    "max_acc": (dict(constraints={"max_accelerators": 4}), ["[constraints] max_accelerators: no configuration "
                                                            "can satisfy n_accelerators <= 4"]),
    "too_large": (dict(axes={k: {"range": [1, 10000]} for k in ("pp", "microbatches", "virtual_stages",
                                                                  "global_batch", "seq_len")}),
                  ["[axes]: the space has 1.600e+21 configurations, more than an int64 index allows"]),
    "divisibility": (dict(fixed={"pp": 8}, axes={"tp": [8], "n_accelerators": [8, 16, 32]}),
                     ["[axes] n_accelerators: no configuration can satisfy tp·cp·pp dividing n_accelerators",
                      "tp·cp·pp takes {64}"]),
    "tp_node": (dict(axes={"tp": [16, 32], "n_accelerators": {"pow2": [64, 128]}}),
                ["[axes] tp: no configuration can satisfy tp <= accelerators_per_node"]),
    "tp_node_one_value_axis": (dict(axes={"tp": [16]}), ["[axes] tp: no configuration can satisfy tp <= "
                                                          "accelerators_per_node: the smallest tp is 16"]),
    "pp_layers": (dict(fixed={"model": "llama3_8b", "pp": 64}, axes={"n_accelerators": [512]}),
                  ["[fixed] pp: no configuration can satisfy pp <= n_layers"]),
    "precision_hw": (dict(fixed={"precision": "fp8"}, axes={"hardware": ["a100_80gb"]}),
                     ["[fixed] precision: no configuration can satisfy the precision constraint: none of "
                      "a100_80gb supports fp8"]),
    "search": (dict(search={"algorithm": "nsga", "evals": -1}),
               ["[search] algorithm: unknown algorithm 'nsga'", "allowed: nsga2, nsga3",
                "[search] evals: must be a positive integer; got -1"]),
    "sweep": (dict(sweep={"chunk": 10}), ["[sweep] chunk: unknown key; did you mean 'chunk_size'?"]),
    "no_axes": (dict(axes={"hardware": None, "n_accelerators": None, "tp": None}), ["[axes]: no axes"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_spec_message(case):
    changes, expected = BAD[case]
    with pytest.raises(SpecError) as info:
        load(spec(**changes))
    message = str(info.value)
    for text in expected:
        assert text in message, message
    assert all(line.startswith("<dict>: ") for line in message.splitlines()), message


def test_unknown_hardware_gets_the_catalogs_alias_aware_suggestion():
    """'h1000' is one edit from the slug 'v100' but one from the alias 'H100': the real catalog's
    lookup (which knows aliases) suggests h100_sxm, and the spec parser passes that on."""
    with pytest.raises(SpecError) as info:
        load_space(spec(axes={"hardware": ["h1000", "b200"]}))     # the real catalog
    message = str(info.value)
    assert "[axes] hardware: 'h1000' is not a known accelerator; did you mean 'h100_sxm'?" in message, message
    assert "v100'?" not in message and "allowed: h100_sxm" in message, message


# (changes to BASE) whose messages have no close name to suggest: no stray "; (" or ";;" may be left
NOTHING_CLOSE = {
    "top_level": dict(zzzzzz={"tp": [1]}),
    "scenario": dict(scenario="qqqqqq"),
    "scenario_missing": dict(scenario=None),
    "param": dict(axes={"qqqqqq": [1]}),
    "catalog_name": dict(axes={"hardware": ["qqqqqq"]}),
    "choice": dict(fixed={"precision": "qqqqqq"}),
    "objective": dict(objectives={"minimize": ["qqqqqq"]}),
    "objective_key": dict(objectives={"zzzzzz": ["tco_usd"]}),
    "constraint": dict(constraints={"qqqqqq": "1 day"}),
    "search_key": dict(search={"zzzzzz": 3}),
    "algorithm": dict(search={"algorithm": "qqqqqq"}),
}


@pytest.mark.parametrize("case", list(NOTHING_CLOSE))
def test_messages_without_a_suggestion_read_cleanly(case):
    with pytest.raises(SpecError) as info:
        load(spec(**NOTHING_CLOSE[case]))
    message = str(info.value)
    assert "did you mean" not in message and "(allowed: " in message, message
    for stray in ("; (", ";;", ";  ", "; ;", " ;"):
        assert stray not in message, message
    if case == "top_level":
        assert message == ("<dict>: zzzzzz: unknown top-level key (allowed: name, description, scenario, "
                           "fixed, axes, constraints, objectives, search, sweep)")
    if case == "scenario_missing":
        assert message == f"<dict>: scenario: missing (allowed: {', '.join(schema.SCENARIOS)})", message


def test_all_mistakes_of_a_file_reported_together(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('scenario = "training"\n[fixed]\nn_tokens = "1e12 token"\n'
                    '[axes]\nhardware = ["h1000"]\ntp = []\nregion = "*"\n'
                    '[objectives]\nminimize = ["cost"]\n[constraints]\nbudget = "5 h"\n')
    with pytest.raises(SpecError) as info:
        load(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 5, lines
    assert all(line.startswith(f"{path}: ") for line in lines)
    joined = "\n".join(lines)
    for text in ("[axes] hardware: 'h1000'", "[axes] tp: empty axis", "[fixed] model: required",
                 "[objectives] minimize: 'cost'", "[constraints] budget: expected usd"):
        assert text in joined


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('scenario = "training"\n[axes]\ntp = = [1, 2]\n')
    with pytest.raises(SpecError, match=r"broken\.toml: TOML syntax error: .*line 3"):
        load(path)
    with pytest.raises(SpecError, match="no such spec file"):
        load(tmp_path / "missing.toml")
    with pytest.raises(SpecError, match="did you mean 'capstone'"):
        load("capstonee")


def test_file_and_dict_give_the_same_space(tmp_path):
    path = tmp_path / "same.toml"
    path.write_text('scenario = "training"\n[fixed]\nmodel = "llama3_70b"\nn_tokens = "1e12 token"\n'
                    '[axes]\nhardware = ["h100_sxm", "b200"]\nn_accelerators = { pow2 = [8, 64] }\ntp = [1, 8]\n'
                    '[objectives]\nminimize = ["time_to_train_s", "tco_usd"]\n')
    a, b = load(path), load(spec(name=None))
    assert a.name == "same" and b.name == "space" and b.source == "<dict>" and a.source == str(path)
    assert a.radices == b.radices and a.fixed == b.fixed and a.defaults == b.defaults
    for x, y in zip(a.axes, b.axes):
        assert x.labels == y.labels and np.array_equal(x.values, y.values)
    listed = list_spaces(tmp_path)
    assert [(i.name, i.scenario) for i in listed] == [("same", "training")]


# --------------------------------------------------------------------------- fuzz (issue 7 item 4)


_WORDS = ["h100_sxm", "b200", "llama3_70b", "quebec", "*", "10 min", "fp8", "bf16", "1e12 token", "5 h",
          "30 day", "1000 /s", "nan", "-3", "full", "cloud", "", "time_to_train_s", "tco_usd"]
_SCALARS = (st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats()
            | st.text(max_size=6) | st.sampled_from(_WORDS))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["pow2", "range", "step", "count", "values", "log", "linspace", "junk"]), inner, max_size=3),
    max_leaves=8)
_PARAMS = st.sampled_from(list(schema.TRAINING_PARAMS) + list(schema.SERVING_PARAMS) + ["junk"])
_SECTION = st.dictionaries(_PARAMS | st.sampled_from(list(schema.LIMITS["training"]) + ["minimize", "report"]),
                           _VALUES, max_size=5)
_SPECS = st.fixed_dictionaries(
    {"scenario": st.sampled_from(["training", "serving", "x"])},
    optional={"fixed": _SECTION, "axes": _SECTION, "constraints": _SECTION, "objectives": _SECTION,
              "search": _SECTION, "sweep": _SECTION, "name": _SCALARS})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_SPECS, base=st.booleans())
def test_fuzz_dict_specs_parse_or_raise_spec_error(data, base):
    if base:    # start from a valid spec so that deeper checks are reached too
        merged = copy.deepcopy(BASE)
        for key, value in data.items():
            merged[key] = {**merged[key], **value} if isinstance(merged.get(key), dict) else value
        data = merged
    try:
        space = load(data)
    except SpecError as exc:
        assert str(exc).startswith("<dict>: ")
    else:
        assert space.size >= 1 and space.objectives


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 10**6), length=st.integers(0, 12), junk=st.text(max_size=6))
def test_fuzz_mutated_toml_parses_or_raises_spec_error(tmp_path_factory, cut, length, junk):
    text = (Path(__file__).parents[1] / "spaces" / "llama3_serving.toml").read_text()
    cut %= len(text)
    path = tmp_path_factory.mktemp("fuzz") / "m.toml"
    path.write_text(text[:cut] + junk + text[cut + length:])
    try:
        load_space(path)
    except SpecError as exc:
        assert str(exc).startswith(str(path))


def test_readme_documents_every_parameter_output_and_limit():
    text = (SPACES_DIR / "README.md").read_text()
    params = text[text.index("## Parameters"):text.index("## Constraints")]
    limits = text[text.index("## Constraints"):text.index("## Objectives")]
    outputs = text[text.index("## Objectives"):text.index("## Errors")]
    for scenario in schema.SCENARIOS:
        rows = {}
        for section in params.split("### ")[1:]:
            if section.startswith(scenario):
                rows = {c[1].strip("` "): c[3].strip("` ") for c in
                        (line.split("|") for line in section.splitlines() if line.startswith("| `"))}
        for name, p in schema.PARAMS[scenario].items():        # name and default as in schema.py
            assert rows.get(name) == ("**required**" if p.default is None else str(p.default)), (scenario, name)
        assert set(rows) == set(schema.PARAMS[scenario])
        for key, (output, sense, _) in schema.LIMITS[scenario].items():
            assert f"| `{key}` | `{output}` {'≤' if sense == 'max' else '≥'} value |" in limits
        for name in schema.OUTPUTS[scenario]:
            assert f"| `{name}` |" in outputs
    for form in AXIS_FORMS + tuple(TOP_KEYS):
        assert f"`{form}`" in text or f"`[{form}]`" in text, form
