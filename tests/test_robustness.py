"""Issue 7 item 1: every bad input gets ONE clear error, at every boundary.

A person meets mlsys_opt through four doors: spec files (space.py), catalog
files (catalog/), the Python API (load_space, sweep, evaluate_digits) and the
CLI.  Every door must answer a mistake with `MlsysOptError` (never a bare
TypeError/ValueError/KeyError, never a silently "fixed" value) whose message
names WHERE (file / function, [section] key / entry field), the VALUE given
and what is ALLOWED (with "did you mean" for names).

Python-API tests never run a sweep: `sweep_engine._build_step` (the jit
compile of the engine) is replaced by a stub, so a valid call stops with
`_ReachedEngine` and a bad argument must be refused before that point -- the
cheap moment, before minutes of sweeping are spent (a checkpoint path that
cannot be written must not be discovered at the end of a sweep).

Docstrings marked "Regression (issue 7)" describe a bug these tests found
(file, function, input, what happened); they keep it fixed.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt import validate
from mlsys_opt.catalog import load_catalog
from mlsys_opt.errors import CatalogError, MlsysOptError, SpecError
from mlsys_opt.point import config as point_config
from mlsys_opt.space.spec import INT64_MAX, load_space
from mlsys_opt.sweeps import engine as sweep_engine
from mlsys_opt.sweeps.api import configurations, evaluate_digits, sweep

ROOT = Path(__file__).resolve().parents[1]

SMALL = {
    "name": "small",
    "scenario": "training",
    "fixed": {"model": "llama3_8b", "n_tokens": "1e9 token"},
    "axes": {"hardware": ["h100_sxm", "a100_80gb"], "tp": [1, 2], "n_accelerators": [8, 16]},
    "objectives": {"minimize": ["time_to_train_s", "tco_usd"]},
}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(x)}' for k, x in v.items()) + " }"
    raise TypeError(v)


def to_toml(data: dict) -> str:
    """A tiny TOML writer for spec-shaped dicts (scalars first, then one [table] per dict)."""
    head = [f'"{k}" = {_toml_value(v)}' for k, v in data.items() if not isinstance(v, dict)]
    body = []
    for k, v in data.items():
        if isinstance(v, dict):
            body.append(f'\n["{k}"]')
            body += [f'"{kk}" = {_toml_value(vv)}' for kk, vv in v.items()]
    return "\n".join(head + body) + "\n"


def spec(**changes) -> dict:
    """SMALL with per-section updates; a value None deletes the key."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SMALL.items()}
    for section, update in changes.items():
        if isinstance(update, dict) and update and isinstance(out.get(section), dict):
            for key, value in update.items():
                if value is None:
                    out[section].pop(key, None)
                else:
                    out[section][key] = value
        elif update is None:
            out.pop(section, None)
        else:
            out[section] = update
    return out


# =========================================================================== validate.py

@pytest.mark.parametrize("call, expected", ids=lambda x: "" if callable(x) else x[:40], argvalues=[
    (lambda: validate.check_int("tp", 2.5, "f()", low=1), "f(): tp: expected an integer >= 1; got 2.5"),
    (lambda: validate.check_int("tp", True, "f()"), "f(): tp: expected an integer; got True"),
    (lambda: validate.check_int("tp", "8", "f()"), "f(): tp: expected an integer; got '8'"),
    (lambda: validate.check_int("tp", float("nan"), "f()"), "got nan"),
    (lambda: validate.check_int("zero_stage", 4, "f()", low=0, high=3),
     "f(): zero_stage: expected an integer >= 0 and <= 3; got 4"),
    (lambda: validate.check_positive_int("chunk_size", 0, "sweep()"),
     "sweep(): chunk_size: expected an integer >= 1; got 0"),
    (lambda: validate.check_number("x", None, "f()"), "f(): x: expected a finite number; got None"),
    (lambda: validate.check_number("x", float("inf")), "x: expected a finite number; got inf"),
    (lambda: validate.check_positive("bw", 0.0, "f()"), "f(): bw: expected a finite number > 0; got 0.0"),
    (lambda: validate.check_positive("bw", -1, "f()"), "got -1"),
    (lambda: validate.check_nonnegative("alpha", -1e-9, "f()"), "f(): alpha: expected a finite number >= 0"),
    (lambda: validate.check_fraction("overlap", 1.5, "f()"), "f(): overlap: expected a fraction in [0, 1]; got 1.5"),
    (lambda: validate.check_fraction("eta", 0, "f()", open_low=True), "expected a fraction in (0, 1]; got 0"),
    (lambda: validate.check_finite("F", np.array([1.0, np.nan, np.inf]), "f()"),
     "f(): F: 2 of 3 values are NaN or infinite (first at index 1: nan)"),
    (lambda: validate.check_finite("F", "abc", "f()"), "f(): F: expected finite numbers; got 'abc'"),
    (lambda: validate.check_choice("algorithm", "nsga_2", ("nsga2", "nsga3", "random"), "search()"),
     "search(): algorithm: 'nsga_2' is not allowed; did you mean 'nsga2'? (allowed: nsga2, nsga3, random)"),
    (lambda: validate.check_choice("algorithm", 3, ("nsga2",), "search()"),
     "search(): algorithm: 3 is not allowed (allowed: nsga2)"),
    (lambda: validate.check_float_dtype("dtype", jnp.float16, "sweep()"),
     "sweep(): dtype: 'float16' is not allowed (allowed: float32, float64)"),
    (lambda: validate.check_float_dtype("dtype", jnp.bfloat16, "sweep()"), "'bfloat16' is not allowed"),
    (lambda: validate.check_float_dtype("dtype", "float61", "sweep()"), "did you mean 'float64'?"),
    (lambda: validate.check_float_dtype("dtype", np.int32, "sweep()"), "'int32' is not allowed"),
    (lambda: validate.check_type("eff", 3, tuple, "sweep()", what="an Efficiency"),
     "sweep(): eff: expected an Efficiency; got 3 (int)"),
    (lambda: validate.check_type("n", True, int, "f()"), "f(): n: expected int; got True (bool)"),
])
def test_validate_messages_name_where_field_value_and_allowed(call, expected):
    with pytest.raises(MlsysOptError) as info:
        call()
    assert expected in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_did_you_mean_composes_cleanly_with_or_without_a_close_name():
    """errors.did_you_mean brings its own separator, so neither case leaves "...; (allowed" behind."""
    from mlsys_opt.errors import did_you_mean
    from mlsys_opt.search.pymoo_algorithms import resolve_algorithm
    assert did_you_mean("tpp", ("tp", "pp")) == "; did you mean 'tp'?"
    assert did_you_mean("zzzzzz", ("tp", "pp")) == ""
    for name, start in (("nsga", "unknown search algorithm 'nsga'; did you mean 'nsga"),
                        ("zzzzzz", "unknown search algorithm 'zzzzzz' (allowed: nsga2, ")):
        with pytest.raises(MlsysOptError) as info:
            resolve_algorithm(name)
        assert str(info.value).startswith(start) and "; (" not in str(info.value), str(info.value)



def _far_name_calls():
    """Call sites that append errors.did_you_mean: each called with a name nothing is close to."""
    import pandas as pd

    from mlsys_opt import scenarios
    from mlsys_opt.point import evaluation
    from mlsys_opt.search import synthesis
    sensitivity = importlib.import_module("mlsys_opt.point.sensitivity")   # the package re-exports a function of that name
    from mlsys_opt.walls import registry
    far = "qqqqqqqq"
    df = pd.DataFrame({"config": [0], "output": ["time_to_train_s"], "parameter": ["x"], "elasticity": [1.0]})
    return {
        "evaluation.point_space": lambda: evaluation.point_space(far, {}),
        "scenarios.unknown_scenario": lambda: scenarios.params_from_dict(far, {}),
        "scenarios.unknown_param": lambda: scenarios.params_from_dict("training", {far: 1.0}),
        "walls.domain": lambda: registry.walls_in_domain(far),
        "walls.law": lambda: registry.law(far),
        "synthesis.precision": lambda: synthesis._precision_code(far),
        "synthesis.free": lambda: synthesis._resolve_free("training", [far]),
        "sensitivity.parameters": lambda: point_config.select_parameters("training", [far]),
        "sensitivity.outputs": lambda: point_config.output_names("training", [far]),
        "sensitivity.parse": lambda: point_config.parse_param("training", far, 1, None),
        "sensitivity.binding": lambda: sensitivity.binding(df, far),
    }


@pytest.mark.parametrize("site", sorted(_far_name_calls()))
def test_messages_without_a_suggestion_leave_no_stray_semicolon(site):
    with pytest.raises(MlsysOptError) as info:
        _far_name_calls()[site]()
    msg = str(info.value)
    assert "qqqqqqqq" in msg and "did you mean" not in msg, msg
    assert "; (" not in msg and ";;" not in msg and not msg.rstrip().endswith(";"), msg
    assert "(allowed: " in msg or "(outputs: " in msg, msg


def test_messages_with_a_suggestion_keep_it():
    from mlsys_opt import scenarios
    from mlsys_opt.walls import registry
    for call, start in ((lambda: scenarios.params_from_dict("trainig", {}),
                         "unknown scenario 'trainig'; did you mean 'training'? (allowed: "),
                        (lambda: registry.law("amdahls"), "law 'amdahls' is not known; did you mean 'amdahl"),
                        (lambda: point_config.output_names("training", ["time_to_train"]),
                         "sensitivity: 'time_to_train' is not a numeric output of the training scenario; "
                         "did you mean 'time_to_train_s'? (allowed: ")):
        with pytest.raises(MlsysOptError) as info:
            call()
        assert str(info.value).startswith(start), str(info.value)


def test_validate_returns_canonical_values(tmp_path):
    assert validate.check_int("n", np.int64(3)) == 3 and type(validate.check_int("n", 4.0)) is int
    assert validate.check_positive("x", np.float32(2.5)) == 2.5
    assert validate.check_choice("p", "FP16", ("fp16", "fp8")) == "fp16"
    assert validate.check_float_dtype("d", jnp.float32) == np.float32
    assert validate.check_float_dtype("d", "float64") == np.float64
    arr = np.arange(3.0)
    assert validate.check_finite("a", arr) is arr
    assert validate.check_output_path("p", tmp_path / "x.npz") == tmp_path / "x.npz"
    for bad, text in ((tmp_path, "is a directory"), (tmp_path / "no" / "x.npz", "does not exist"),
                      (3, "expected a file path"), ("", "expected a file path")):
        with pytest.raises(MlsysOptError, match=text):
            validate.check_output_path("checkpoint_path", bad, "sweep()")
    with pytest.raises(MlsysOptError, match="does not exist"):
        validate.check_existing_file("checkpoint", tmp_path / "missing.npz", "sweep()")
    with pytest.raises(MlsysOptError, match="not a regular file"):
        validate.check_existing_file("checkpoint", tmp_path, "sweep()")


# =========================================================================== spec files

def _load_text(tmp_path, data: dict, name="bad.toml"):
    path = tmp_path / name
    path.write_text(to_toml(data))
    return path, load_space(path)


# (changes to SMALL, texts the message must contain, in the file-written form)
SPEC_CASES = {
    # unknown names, with suggestions and the allowed list
    "hardware_name": (dict(axes={"hardware": ["h100_sx", "b200"]}),
                      ["[axes] hardware: 'h100_sx' is not a known accelerator; did you mean 'h100_sxm'?",
                       "allowed: h100_sxm, h100_pcie", "nrf52840"]),
    "model_name": (dict(fixed={"model": "lama3_8b"}), ["[fixed] model: 'lama3_8b' is not a known model; did you mean",
                                                       "allowed: resnet50"]),
    "region_name": (dict(axes={"region": ["quebec", "quebek"]}), ["[axes] region: 'quebek' is not a known region",
                                                                  "did you mean 'quebec'?"]),
    "fabric_name": (dict(fixed={"fabric": "ib_nd"}), ["[fixed] fabric: 'ib_nd' is not a known fabric",
                                                      "did you mean 'ib_ndr'?"]),
    "precision_name": (dict(fixed={"precision": "fp9"}), ["[fixed] precision: 'fp9' is not an allowed choice",
                                                          "allowed: fp32, tf32, fp16, fp8, int8, int4"]),
    "param_name": (dict(axes={"tensor_parallel": [1, 2]}),
                   ["[axes] tensor_parallel: not a parameter of the training scenario", "allowed: hardware"]),
    "section_name": (dict(constraint={"max_time": "1 day"}), ["constraint: unknown top-level key; did you mean "
                                                              "'constraints'?"]),
    "objective_name": (dict(objectives={"minimize": ["cost_usd"]}),
                       ["[objectives] minimize: 'cost_usd' is not an output of the training scenario",
                        "allowed: time_to_train_s"]),
    # wrong types
    "int_as_text": (dict(axes={"tp": ["eight"]}), ["[axes] tp: expected an integer; got 'eight'"]),
    "name_as_number": (dict(fixed={"region": 5}), ["[fixed] region: expected a name (string); got 5"]),
    "bool_as_int": (dict(fixed={"pp": True}), ["[fixed] pp: expected an integer; got True"]),
    "list_in_fixed": (dict(fixed={"pp": [1, 2]}), ["[fixed] pp: a fixed value is one value", "move it to [axes]"]),
    "table_objectives": (dict(objectives={"minimize": {"x": 1}}), ["[objectives] minimize: must be a list"]),
    # wrong units
    "bandwidth_unit": (dict(fixed={"checkpoint_bw": "100 GB"}),
                       ["[fixed] checkpoint_bw: expected bandwidth (bytes/second), got '100 GB'"]),
    "time_unit": (dict(fixed={"recovery": "10 GB"}), ["[fixed] recovery: expected time (seconds), got '10 GB'"]),
    "unit_missing": (dict(fixed={"recovery": 600}), ["[fixed] recovery: expected time", "needs a unit"]),
    "unknown_unit": (dict(fixed={"recovery": "10 blorps"}), ["[fixed] recovery: expected time",
                                                                 "is not a known unit"]),
    "token_unit": (dict(fixed={"n_tokens": "1e12 GB"}), ["[fixed] n_tokens: expected tokens", "'1e12 GB'"]),
    "limit_unit": (dict(constraints={"max_time": "30 USD"}), ["[constraints] max_time: expected time", "'30 USD'"]),
    # negative / zero sizes
    "zero_accelerators": (dict(axes={"n_accelerators": [0, 8]}), ["[axes] n_accelerators: 0 is below the minimum 1"]),
    "negative_tp": (dict(axes={"tp": [-2, 2]}), ["[axes] tp: -2 is below the minimum 1"]),
    "zero_batch": (dict(fixed={"global_batch": 0}), ["[fixed] global_batch: 0 is below the minimum 1"]),
    "zero_seq": (dict(fixed={"seq_len": 0}), ["[fixed] seq_len: 0 is below the minimum 1"]),
    "negative_tokens": (dict(fixed={"n_tokens": "-1e12 token"}), ["[fixed] n_tokens:", "below the minimum"]),
    "zero_ckpt_bw": (dict(fixed={"checkpoint_bw": "0 GB/s"}), ["[fixed] checkpoint_bw: 0 GB/s is below the minimum"]),
    "negative_recovery": (dict(fixed={"recovery": "-1 s"}), ["[fixed] recovery: -1 s is below the minimum 0 s"]),
    "efficiency_zero": (dict(fixed={"efficiency": 0.0}), ["[fixed] efficiency: 0 is below the minimum"]),
    "zero_stage_5": (dict(fixed={"zero_stage": 5}), ["[fixed] zero_stage: 5 is above the maximum 3"]),
    # NaN / inf written as TOML literals
    "nan_float": (dict(fixed={"efficiency": float("nan")}), ["[fixed] efficiency", "not a finite number"]),
    "inf_float": (dict(fixed={"overlap": float("inf")}), ["[fixed] overlap", "not a finite number"]),
    "nan_int": (dict(axes={"tp": [1, float("nan")]}), ["[axes] tp", "nan is not a finite number"]),
    "inf_int": (dict(fixed={"n_accelerators": float("-inf")}), ["[fixed] n_accelerators", "not a finite number"]),
    "nan_quantity": (dict(fixed={"recovery": "nan s"}), ["[fixed] recovery", "not a finite number"]),
    "inf_limit": (dict(constraints={"max_time": "inf s"}), ["[constraints] max_time", "not a finite number"]),
    # impossible parallelism (every configuration)
    "divisibility": (dict(fixed={"pp": 3}, axes={"tp": [8], "n_accelerators": [8, 16, 32]}),
                     ["[axes] n_accelerators: no configuration can satisfy tp·cp·pp dividing n_accelerators",
                      "tp·cp·pp takes {24}", "n_accelerators takes {8, 16, 32}"]),
    "tp_beyond_node": (dict(axes={"tp": [16, 32], "n_accelerators": [64]}),
                       ["[axes] tp: no configuration can satisfy tp <= accelerators_per_node",
                        "the smallest tp is 16", "at most 8 accelerators per node"]),
    "pp_beyond_layers": (dict(fixed={"model": "ds_cnn"}, axes={"pp": [16], "n_accelerators": [16]}),
                         ["[axes] pp: no configuration can satisfy pp <= n_layers", "at most 10 layers"]),
    # a precision no hardware of the axis has
    "precision_missing": (dict(fixed={"precision": "fp8"}, axes={"hardware": ["a100_80gb", "v100"]}),
                          ["[fixed] precision: no configuration can satisfy the precision constraint",
                           "none of a100_80gb, v100 supports fp8"]),
    "precision_axis_missing": (dict(axes={"hardware": ["h100_sxm"], "precision": ["int4", "fp4"]}),
                               ["[axes] precision: 'int4' appears twice"]),    # fp4 is an alias of int4
    "precision_tpu": (dict(axes={"hardware": ["tpu_v4", "tpu_v5e"], "precision": ["fp32", "tf32"]}),
                      ["[axes] precision: no configuration can satisfy the precision constraint",
                       "supports fp32 or tf32"]),
    # empty spaces
    "empty_axis": (dict(axes={"hardware": []}), ["[axes] hardware: empty axis"]),
    "no_axes": (dict(axes={}), ["[axes]: no axes"]),
    "empty_pow2": (dict(axes={"n_accelerators": {"pow2": [5, 7]}}), ["no power of two lies in [5, 7]"]),
    "reversed_range": (dict(axes={"tp": {"range": [4, 2]}}), ["[axes] tp: range low 4 is greater than high 2"]),
    "zero_count": (dict(axes={"efficiency": {"linspace": [0.1, 0.5], "count": 0}}),
                   ["linspace needs count = a positive integer; got 0"]),
    # contradictory limits and objectives
    "min_mfu_above_one": (dict(constraints={"min_mfu": 1.5}), ["[constraints] min_mfu: no configuration can "
                                                               "satisfy mfu >= 1.5"]),
    "min_mfu_negative": (dict(constraints={"min_mfu": -0.1}), ["[constraints] min_mfu", "must lie in [0, 1]"]),
    "zero_budget": (dict(constraints={"budget": "0 USD"}), ["[constraints] budget: no configuration can satisfy "
                                                            "tco_usd <= 0"]),
    "negative_time": (dict(constraints={"max_time": "-1 day"}), ["[constraints] max_time", "must be > 0"]),
    "max_accelerators": (dict(constraints={"max_accelerators": 4}),
                         ["[constraints] max_accelerators: no configuration can satisfy n_accelerators <= 4",
                          "smallest n_accelerators in the space is 8"]),
    "min_and_max_same": (dict(objectives={"minimize": ["mfu"], "maximize": ["mfu"]}),
                         ["[objectives] maximize: 'mfu' is both minimized and maximized"]),
    "code_objective": (dict(objectives={"minimize": ["bottleneck"]}), ["'bottleneck' is a category code"]),
}


@pytest.mark.parametrize("case", list(SPEC_CASES))
def test_bad_spec_file_message_names_file_key_value_allowed(tmp_path, case):
    changes, expected = SPEC_CASES[case]
    with pytest.raises(SpecError) as info:
        _load_text(tmp_path, spec(**changes))
    message = str(info.value)
    for text in expected:
        assert text in message, f"{case}: {text!r} not in\n{message}"
    path = str(tmp_path / "bad.toml")
    for line in message.splitlines():            # one mistake per line, each naming the file
        assert line.startswith(f"{path}: "), line
    assert "Traceback" not in message


def test_every_mistake_of_a_file_is_reported_in_one_error(tmp_path):
    data = spec(fixed={"model": "lama3_8b", "efficiency": float("nan")},
                axes={"hardware": ["h1000"], "tp": [0]}, constraints={"max_time": "30 USD"})
    with pytest.raises(SpecError) as info:
        _load_text(tmp_path, data)
    lines = str(info.value).splitlines()
    assert len(lines) == 5, lines
    for key in ("[fixed] model", "[fixed] efficiency", "[axes] hardware", "[axes] tp", "[constraints] max_time"):
        assert sum(key in line for line in lines) == 1, (key, lines)


@pytest.mark.parametrize("changes, key", [
    (dict(axes={"ep": [2, 4]}), "ep"),                                            # a dense model has 1 expert
    (dict(fixed={"global_batch": 8}, axes={"microbatches": [16, 32]}), "microbatches"),
])
def test_spec_refuses_spaces_where_experts_or_batch_split_always_fail(changes, key):
    """Regression (issue 7): found failing, since fixed.

    Was: mlsys_opt/space/spec.py _feasibility(): its docstring says it rejects spaces "where a structural
    constraint fails for EVERY configuration", and it does for tp, pp, precision, divisibility and
    max_accelerators -- but not for `experts` (ep > n_experts for every model: ep = [2, 4] with a dense
    llama3_8b) nor `batch_split` (dp·ep·microbatches > global_batch for every configuration: dp >= 1, so
    microbatches > global_batch always fails).  Such a space parses, sweeps, and returns an EMPTY front
    with no explanation.  Must be a SpecError like the others ("no configuration can satisfy ...")."""
    with pytest.raises(SpecError, match=rf"\[(axes|fixed)\] ({key}|ep|microbatches|global_batch): no configuration"):
        load_space(spec(**changes))


def test_space_too_large_for_int64_is_refused_and_the_largest_is_accepted():
    # 2**63 - 1 = 7^2 · 73 · 127 · 337 · 92737 · 649657: the largest space an int64 index addresses.
    lengths = {"efficiency": 649657, "overlap": 92737, "maintenance_frac_per_year": 337,
               "recovery": 127, "checkpoint_bw": 73, "checkpoint_interval": 49}
    bounds = {"efficiency": [0.01, 1.0], "overlap": [0.0, 1.0], "maintenance_frac_per_year": [0.0, 1.0],
              "recovery": ["1 s", "1 h"], "checkpoint_bw": ["1 GB/s", "100 GB/s"], "checkpoint_interval": ["1 s", "10 h"]}
    axes = {k: {"linspace": bounds[k], "count": n} for k, n in lengths.items()}
    base = {"scenario": "training", "fixed": {"model": "llama3_8b", "n_tokens": "1e12 token"},
            "objectives": {"minimize": ["time_to_train_s"]}}
    space = load_space({**base, "axes": axes})
    assert space.size == INT64_MAX == 2**63 - 1
    axes["checkpoint_interval"]["count"] = 50      # one more value: 2**63 - 1 + (2**63 - 1)/49 configurations
    with pytest.raises(SpecError, match=r"<dict>: \[axes\]: the space has 9\.[0-9]+e\+18 configurations, more than "
                                        r"an int64 index allows"):
        load_space({**base, "axes": axes})


def test_precision_some_hardware_lacks_is_an_infeasible_value_not_an_error():
    """Parse-time only when EVERY hardware of the axis lacks it; otherwise the rows are flagged
    by the `precision` constraint (> 0) and the other rows stay feasible on that constraint."""
    space = load_space(spec(axes={"hardware": ["h100_sxm", "a100_80gb", "v100"], "precision": ["fp8", "fp16"],
                                  "tp": [1], "n_accelerators": [8]}))
    from test_finiteness import evaluate  # the float32 program test_finiteness compiles anyway
    digits = np.array([space.digits_for({"hardware": h, "precision": p})
                       for h in ("h100_sxm", "a100_80gb", "v100") for p in ("fp8", "fp16")])
    _, out, g = evaluate(space, digits, jnp.float32)
    assert g["precision"].tolist() == [-1.0, -1.0, 1.0, -1.0, 1.0, -1.0]
    assert all(np.isfinite(v).all() for v in (*out.values(), *g.values()))


# =========================================================================== Python API

class _ReachedEngine(Exception):
    """Raised by the stubbed engine compile: the call was accepted."""


@pytest.fixture
def no_engine(monkeypatch):
    if not hasattr(sweep_engine, "_build_step"):
        pytest.skip("sweep_engine._build_step is gone; update the stub point of these tests")

    def stub(*args, **kwargs):
        raise _ReachedEngine()
    monkeypatch.setattr(sweep_engine, "_build_step", stub)


@pytest.fixture(scope="module")
def small_space():
    return load_space(SMALL)


def _refused(call, field: str):
    """`call` must raise MlsysOptError naming `field` before the engine compiles."""
    try:
        call()
    except _ReachedEngine:
        pytest.fail(f"{field}: the bad value was accepted silently and the sweep started")
    except MlsysOptError as exc:
        assert field in str(exc), f"message does not name {field!r}: {exc}"
        assert not isinstance(exc.__cause__, _ReachedEngine), "the engine started before the check"
        return str(exc)
    except Exception as exc:   # noqa: BLE001
        pytest.fail(f"{field}: raised {type(exc).__name__} instead of MlsysOptError: {exc}")
    pytest.fail(f"{field}: no error at all")


def test_valid_call_reaches_the_engine(no_engine, small_space, tmp_path):
    for kwargs in ({}, dict(chunk_size=4, front_capacity=8, top_k=2, devices=1),
                   dict(dtype=jnp.float64, checkpoint_path=tmp_path / "c.npz"),
                   dict(checkpoint_path=str(tmp_path / "c.npz"), resume=True)):
        with pytest.raises(_ReachedEngine):
            sweep(small_space, progress=False, **kwargs)
    with pytest.raises(_ReachedEngine):
        sweep(SMALL, progress=False)                 # a dict spec is accepted too


@pytest.mark.parametrize("kwargs, field", [
    (dict(top_k=0), "top_k"), (dict(top_k=-1), "top_k"), (dict(top_k=2.5), "top_k"),
    (dict(front_capacity=-3), "front_capacity"),
    (dict(devices=0), "devices"), (dict(devices=10**6), "devices"), (dict(devices=[]), "devices"),
])
def test_sweep_refuses_bad_engine_settings(no_engine, small_space, kwargs, field):
    _refused(lambda: sweep(small_space, progress=False, **kwargs), field)


@pytest.mark.parametrize("kwargs, field", [
    (dict(chunk_size=0), "chunk_size"), (dict(chunk_size=-1), "chunk_size"), (dict(chunk_size=1.5), "chunk_size"),
    (dict(chunk_size="abc"), "chunk_size"), (dict(chunk_size=True), "chunk_size"),
    (dict(front_capacity=0), "front_capacity"), (dict(front_capacity=2.5), "front_capacity"),
])
def test_sweep_refuses_bad_chunk_size_and_capacity(no_engine, small_space, kwargs, field):
    """Regression (issue 7): found failing, since fixed.

    Was: mlsys_opt/sweeps/api.py sweep(): `int(chunk_size or default)` turns 0 into the default, 1.5 into 1,
    -1 into 1 (via max(1, ...)) and 'abc' into a ValueError; front_capacity=0 becomes the default.
    Must raise MlsysOptError naming the argument (validate.check_positive_int)."""
    _refused(lambda: sweep(small_space, progress=False, **kwargs), field)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.int32, "banana"])
def test_sweep_refuses_dtypes_that_would_turn_results_into_nan(no_engine, small_space, dtype):
    """Regression (issue 7): found failing, since fixed.

    Was: mlsys_opt/sweeps/api.py sweep(): dtype=float16/bfloat16 runs and returns an EMPTY front (every
    objective overflows to NaN/inf and NaN points count as infeasible: silent NaN); int32/'banana'
    raise ValueError/TypeError.  Must raise MlsysOptError (validate.check_float_dtype)."""
    _refused(lambda: sweep(small_space, progress=False, dtype=dtype), "dtype")


def test_sweep_checks_the_checkpoint_path_before_sweeping(no_engine, small_space, tmp_path):
    """A checkpoint path that is a directory or lies in a missing directory must be refused up front,
    not discovered at the first save (after 64 chunks or at the end of the sweep, losing the run)."""
    _refused(lambda: sweep(small_space, progress=False, checkpoint_path=tmp_path), "checkpoint")
    _refused(lambda: sweep(small_space, progress=False, checkpoint_path=tmp_path / "no" / "x.npz"), "checkpoint")
    _refused(lambda: sweep(small_space, progress=False, checkpoint_path=""), "checkpoint")


def test_sweep_resume_needs_a_checkpoint_path(no_engine, small_space):
    """resume=True with checkpoint_path=None must not silently start from scratch."""
    _refused(lambda: sweep(small_space, progress=False, resume=True), "checkpoint_path")


def test_sweep_refuses_a_progress_that_is_not_callable(no_engine, small_space):
    """progress='yes' would only fail after the first chunk (TypeError mid-sweep)."""
    _refused(lambda: sweep(small_space, progress="yes"), "progress")


@pytest.mark.parametrize("eff", [3, "calibrated", {"mem_bw_eff": 0.8}])
def test_sweep_refuses_a_bad_eff(no_engine, small_space, eff):
    """Regression (issue 7): found failing, since fixed.

    Was: mlsys_opt/sweeps/api.py sweep(): eff=3 / 'calibrated' / a dict is passed on unchecked and fails deep
    inside the scenario while tracing (TypeError: 'int' object is not iterable, AttributeError ...).
    Must raise MlsysOptError "sweep(): eff: expected an Efficiency (mlsys_opt.scenarios.efficiency) ..."."""
    _refused(lambda: sweep(small_space, progress=False, eff=eff), "eff")


@pytest.mark.parametrize("source", [123, None, ["capstone"], b"capstone", 1.5])
def test_load_space_refuses_a_non_path_non_dict(source):
    """Regression (issue 7): found failing, since fixed.

    Was: mlsys_opt/space/spec.py load_space(): a source that is neither a path nor a mapping raises a
    bare TypeError from pathlib.  Must raise SpecError naming what is accepted; sweep(123) likewise."""
    with pytest.raises(SpecError, match="spec"):
        load_space(source)


EVAL_BASE = dict(model="llama3_70b", hardware="h100_sxm", n_accelerators=512, tp=8, region="quebec",
                 n_tokens="1.24e12 token")


@pytest.mark.parametrize("call, texts", [
    (lambda m: m.evaluate("training", **{**EVAL_BASE, "hardwre": "b200"}), ["hardwre", "did you mean 'hardware'?"]),
    (lambda m: m.evaluate("training", **{**EVAL_BASE, "hardware": "h100_sx"}), ["did you mean 'h100_sxm'?"]),
    (lambda m: m.evaluate("training", **{**EVAL_BASE, "tp": 0}), ["tp: 0 is below the minimum 1"]),
    (lambda m: m.evaluate("training", **{**EVAL_BASE, "tp": float("nan")}), ["tp: nan is not a finite number"]),
    (lambda m: m.evaluate("training", **{**EVAL_BASE, "n_tokens": "1e12 GB"}), ["n_tokens: expected tokens", "1e12 GB"]),
    (lambda m: m.evaluate("training", **{k: v for k, v in EVAL_BASE.items() if k != "n_tokens"}),
     ["n_tokens: required"]),
    (lambda m: m.sensitivity("training", {"model": "llama3_70b", "n_tokens": float("nan")}), ["n_tokens", "finite"]),
    (lambda m: m.sensitivity("training", {"model": "llama3_70b", "n_tokens": 1e12, "tpp": 8}), ["did you mean 'tp'?"]),
    (lambda m: m.sensitivity("training", 5), ["config must be a dict"]),
], ids=["param", "hardware", "tp0", "tp_nan", "unit", "missing", "sens_nan", "sens_param", "sens_type"])
def test_public_api_evaluate_and_sensitivity_refuse_bad_parameters(call, texts):
    """mlsys_opt.evaluate / mlsys_opt.sensitivity: the same messages as spec files, before any compile."""
    import mlsys_opt
    if not hasattr(mlsys_opt, "evaluate") or not hasattr(mlsys_opt, "sensitivity"):
        pytest.skip("mlsys_opt.evaluate / sensitivity are not exported")
    with pytest.raises(MlsysOptError) as info:
        call(mlsys_opt)
    for t in texts:
        assert t in str(info.value), str(info.value)


def test_load_space_missing_or_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(SpecError, match=r"no such spec file; did you mean 'capstone'\?"):
        load_space("capstne")
    with pytest.raises(SpecError, match=r"cannot read the spec"):
        load_space(tmp_path)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'scenario = "training"\nname = "caf\xe9"\n')
    with pytest.raises(SpecError, match=r"latin1\.toml: cannot read the spec"):
        load_space(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text('scenario = "training"\n[axes]\ntp = [1, 2\n')
    with pytest.raises(SpecError, match=r"broken\.toml: TOML syntax error"):
        load_space(broken)


def test_explicit_configurations_are_validated(small_space):
    with pytest.raises(MlsysOptError, match="no configurations given"):
        configurations(small_space, [])
    with pytest.raises(SpecError, match=r"tp: 3 is not on the axis \(axis values: 1, 2\)"):
        configurations(small_space, [{"tp": 3}])
    with pytest.raises(SpecError, match=r"hardwre: not an axis of small; did you mean 'hardware'\?"):
        configurations(small_space, [{"hardwre": "b200"}])
    with pytest.raises(SpecError, match="'h1000' is not a known accelerator"):
        configurations(small_space, [{"hardware": "h1000"}])


@pytest.mark.parametrize("digits", [[[5, 0, 0]], [[0, -1, 0]], [[0, 0]], [[0.5, 0, 0]]])
def test_evaluate_digits_refuses_out_of_range_digits(small_space, digits, monkeypatch):
    """Regression (issue 7): found failing, since fixed.

    Was: mlsys_opt/sweeps/api.py evaluate_digits() (and Space.param_values): digits outside an axis are
    CLIPPED (jnp.take mode="clip"), so [5, 0, 0] on a 2-value axis silently evaluates digit 1; a row of
    the wrong length and fractional digits are not refused either.  Must raise MlsysOptError naming the
    axis, the digit and its range (host-side check before the jitted call)."""
    sweep_module = importlib.import_module("mlsys_opt.sweeps.api")   # (mlsys_opt.sweep is also a function)

    def evaluated(*args, **kwargs):
        raise AssertionError(f"digits {digits} were evaluated (clipped) instead of refused")
    if hasattr(sweep_module, "_jitted_eval"):       # no compile: the check must come before the jitted call
        monkeypatch.setattr(sweep_module, "_jitted_eval", lambda *a, **k: evaluated)
    with pytest.raises(MlsysOptError, match="digit|axis|axes"):
        evaluate_digits(small_space, np.asarray(digits))


# =========================================================================== catalog

CATALOG_CASES = {
    "nan_literal": ("[accelerators.chip]\nbased_on = \"h100_sxm\"\nsource = \"t\"\nmem_bw = nan\n",
                    ["[chip] mem_bw: expected bandwidth (bytes/second)", "not a finite number"]),
    "negative_power": ("[accelerators.chip]\nbased_on = \"h100_sxm\"\nsource = \"t\"\ntdp = \"-700 W\"\n",
                       ["[chip] tdp: expected power (watts) > 0, got '-700 W'"]),
    "zero_memory": ("[accelerators.h100_sxm]\nmem_capacity = \"0 GB\"\n",
                    ["[h100_sxm] mem_capacity:", "> 0, got '0 GB'"]),
    "wrong_unit": ("[accelerators.h100_sxm]\nmem_bw = \"3.35 TB\"\n",
                   ["[h100_sxm] mem_bw: expected bandwidth (bytes/second), got '3.35 TB'"]),
    "plural_flops": ("[accelerators.h100_sxm]\npeak = { fp16 = \"989 TFLOPs\" }\n",
                     ["[h100_sxm] peak.fp16", "that is a FLOP count"]),
    "negative_peak": ("[accelerators.h100_sxm]\npeak = { fp16 = \"-1 TFLOP/s\" }\n",
                      ["[h100_sxm] peak.fp16", "must be > 0", "write fp16 = \"none\""]),
    "unknown_field": ("[accelerators.h100_sxm]\nmem_bandwith = \"3 TB/s\"\n",
                      ["[h100_sxm] mem_bandwith: unknown field; did you mean 'mem_bw'?", "allowed: display_name"]),
    "fractional_count": ("[accelerators.h100_sxm]\naccelerators_per_node = 2.5\n",
                         ["[h100_sxm] accelerators_per_node: expected a whole number, got 2.5"]),
    "text_count": ("[models.llama3_8b]\nlayers = \"many\"\n", ["[llama3_8b] layers:"]),
    "zero_layers": ("[models.llama3_8b]\nlayers = 0\n", ["[llama3_8b] layers: must be > 0, got 0"]),
    "pue_below_one": ("[regions.quebec]\npue = 0.5\n", ["[quebec] pue: must be >= 1, got 0.5"]),
    "negative_carbon": ("[regions.quebec]\ncarbon_intensity = \"-5 g/kWh\"\n",
                        ["[quebec] carbon_intensity:", ">= 0, got '-5 g/kWh'"]),
    "unknown_base": ("[accelerators.chip]\nbased_on = \"h1000\"\nsource = \"t\"\n",
                     ["[chip] based_on: 'h1000' is not a known accelerator; did you mean 'h100_sxm'?"]),
    "missing_fields": ("[accelerators.chip]\nmem_bw = \"3 TB/s\"\n", ["[chip]", "missing (required"]),
    "bad_name": ("[accelerators.\"My Chip\"]\nbased_on = \"h100_sxm\"\nsource = \"t\"\n",
                 ["[My Chip] is not a valid name", "e.g. 'mychip'"]),
    "unknown_kind": ("[acelerators.chip]\nbased_on = \"h100_sxm\"\n",
                     ["[acelerators] is not a catalog kind; did you mean 'accelerators'?"]),
    "duplicate": ("[accelerators.chip]\nbased_on = \"h100_sxm\"\n[accelerators.chip]\nsource = \"x\"\n",
                  ["[chip] is defined twice (lines 1 and 3)"]),
    "syntax": ("[accelerators.chip\nbased_on = \"h100_sxm\"\n", ["not valid TOML"]),
    "type_table": ("[accelerators.h100_sxm]\nmem_bw = [\"3 TB/s\"]\n", ["[h100_sxm] mem_bw:"]),
    "moe_topk": ("[models.mixtral_8x7b]\ntop_k = 9\n", ["[mixtral_8x7b] top_k: must be <= experts (8), got 9"]),
    "kv_heads": ("[models.llama3_8b]\nkv_heads = 5\n", ["[llama3_8b] kv_heads: must divide heads"]),
}


@pytest.mark.parametrize("case", list(CATALOG_CASES))
def test_bad_catalog_file_message_names_file_entry_field(tmp_path, case):
    text, expected = CATALOG_CASES[case]
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(CatalogError) as info:
        load_catalog(extra=path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    for t in expected:
        assert t in message, f"{case}: {t!r} not in {message}"


def test_catalog_dict_entries_refuse_nan_and_negative_si_values():
    cat = load_catalog()
    for fields, text in (({"mem_bw_bytes_per_s": float("nan")}, "not a finite number"),
                         ({"mem_bw_bytes_per_s": -1.0}, "> 0"),
                         ({"mem_capacity_bytes": float("inf")}, "not a finite number"),
                         ({"tdp": "nan W"}, "not a finite number")):
        with pytest.raises(CatalogError, match=re.escape(text)) as info:
            cat.with_entries("accelerators", {"h100_sxm": fields})
        assert str(info.value).startswith("accelerators (dict): [h100_sxm] ")


@pytest.mark.parametrize("value", [float("nan"), -1.0, -np.inf])
def test_catalog_si_peak_nan_or_negative_is_refused(value):
    """Regression (issue 7): found failing, since fixed.

    Was: mlsys_opt/catalog/_load.py apply_si_columns(): a peak given by SI column
    ({"peak_fp16_flop_per_s": nan} or -1.0) becomes "none" (`value > 0 else "none"`), i.e. the device
    silently LOSES fp16 instead of an error.  Only 0 may mean "none" (as documented); NaN and negative
    values should raise CatalogError like the TOML path does ("must be > 0 ... write fp16 = \"none\"")."""
    with pytest.raises(CatalogError, match="peak"):
        load_catalog().with_entries("accelerators", {"h100_sxm": {"peak_fp16_flop_per_s": value}})


@pytest.mark.parametrize("dtype", [jnp.int32, "banana", jnp.float16])
def test_catalog_tables_dtype_is_checked(dtype):
    """Regression (issue 7): found failing, since fixed.

    Was: mlsys_opt/catalog/__init__.py Catalog.tables(dtype=): int32 silently truncates every
    float (PUE 1.1 -> 1, 0.8 efficiencies -> 0), float16 overflows FLOP/s peaks (989e12 > 65504) to inf,
    'banana' raises TypeError.  Must raise CatalogError/MlsysOptError (validate.check_float_dtype)."""
    with pytest.raises(MlsysOptError, match="dtype"):
        load_catalog().tables(dtype=dtype)


def test_catalog_lookups_suggest():
    cat = load_catalog()
    with pytest.raises(CatalogError, match=r"'h1000' is not a known accelerator; did you mean 'h100_sxm'\?"):
        cat.index("accelerators", "h1000")
    with pytest.raises(CatalogError, match=r"unknown catalog kind 'acelerators'; did you mean 'accelerators'\?"):
        cat.names("acelerators")
    for bad in (None, 3, ""):
        with pytest.raises(CatalogError, match="is not a known accelerator"):
            cat.index("accelerators", bad)


# =========================================================================== CLI

_HAS_CLI = importlib.util.find_spec("mlsys_opt.cli.app") is not None
needs_cli = pytest.mark.skipif(not _HAS_CLI, reason="mlsys_opt/cli/app.py does not exist yet (issue 7: test the CLI "
                                                    "once `mlsys-opt sweep SPACE --checkpoint PATH --resume` lands)")


@pytest.fixture(scope="module")
def cli_cache(tmp_path_factory):
    """The compile cache shared by the robustness tests' subprocesses (never the user's ~/.cache)."""
    cache = tmp_path_factory.getbasetemp() / "robustness_jax_cache"
    cache.mkdir(exist_ok=True)
    return str(cache)


def _cli_env(cache: str) -> dict:
    return {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu",
            "MLSYS_OPT_CACHE_DIR": cache, "JAX_COMPILATION_CACHE_DIR": cache, "MLSYS_OPT_CATALOG": ""}


# Many command lines in ONE interpreter (cli.main(argv), stdout/stderr captured): one start-up.
CLI_DRIVER = """
import contextlib, io, json, sys, traceback
from mlsys_opt.cli import main
results = {}
for name, argv in json.loads(sys.argv[1]).items():
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(argv)
    except BaseException:
        rc = "escaped"
        err.write(traceback.format_exc())
    results[name] = {"rc": rc, "stderr": err.getvalue(), "stdout": out.getvalue()}
print("RESULT " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, cli_cache):
    if not _HAS_CLI:
        pytest.skip("mlsys_opt/cli/app.py does not exist yet")
    d = tmp_path_factory.mktemp("cli")
    (d / "small.toml").write_text(to_toml(SMALL))
    (d / "one.toml").write_text(to_toml(spec(axes={"hardware": ["h100_sx"]})))
    (d / "three.toml").write_text(to_toml(spec(axes={"hardware": ["h1000"], "tp": [0]},
                                               constraints={"max_time": "3 USD"})))
    (d / "garbage.npz").write_text("not a checkpoint")
    (d / "ckpt").mkdir()
    (d / "mycat.toml").write_text("[accelerators.h100_sxm]\nmem_bw = \"3.35 TB\"\n")
    ok = ["sweep", "small.toml", "-q", "--no-save"]
    cases = {"missing": ["sweep", "nope.toml"], "one": ["sweep", "one.toml"], "three": ["sweep", "three.toml"],
             "chunk0": ok + ["--chunk-size", "0"], "chunk_abc": ok + ["--chunk-size", "abc"],
             "devices": ok + ["--devices", "-1"], "flag_typo": ok + ["--chekpoint", "x.npz"],
             "command_typo": ["sweeep", "small.toml"], "catalog": ["--catalog", "mycat.toml"] + ok,
             "garbage": ok + ["--checkpoint", "garbage.npz", "--resume"], "ckpt_dir": ok + ["--checkpoint", "ckpt"]}
    res = subprocess.run([sys.executable, "-c", CLI_DRIVER, json.dumps(cases)], capture_output=True, text=True,
                         timeout=600, env=_cli_env(cli_cache), cwd=d)
    line = next((s for s in res.stdout.splitlines() if s.startswith("RESULT ")), None)
    assert line is not None, res.stderr[-3000:]
    return d, json.loads(line[len("RESULT "):])


def _clean(r: dict, *texts, lines: int | None = None) -> list[str]:
    """Exit code 2, no traceback, the texts on stderr (and exactly `lines` non-empty lines)."""
    assert r["rc"] == 2, (r["rc"], r["stderr"][-2000:])
    assert "Traceback" not in r["stderr"] + r["stdout"], r["stderr"]
    got = [line for line in r["stderr"].splitlines() if line.strip()]
    for t in texts:
        assert t in r["stderr"], (t, r["stderr"])
    if lines is not None:
        assert len(got) == lines, got
    return got


@needs_cli
def test_cli_console_script_end_to_end(tmp_path, cli_cache):
    exe = Path(sys.executable).with_name("mlsys-opt")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlsys_opt"]
    res = subprocess.run(cmd + ["sweep", "nope.toml"], capture_output=True, text=True, timeout=180,
                         env=_cli_env(cli_cache), cwd=tmp_path)
    _clean({"rc": res.returncode, "stderr": res.stderr, "stdout": res.stdout}, "nope.toml", "no such spec file",
           lines=1)


@pytest.mark.parametrize("case, texts, lines", [
    ("missing", ["nope.toml", "no such spec file"], 1),
    ("one", ["one.toml: [axes] hardware: 'h100_sx'", "did you mean 'h100_sxm'?"], 1),
    ("three", ["[axes] hardware", "[axes] tp", "[constraints] max_time"], 3),
    ("chunk0", ["--chunk-size"], 1), ("chunk_abc", ["--chunk-size", "abc"], 1), ("devices", ["--devices"], 1),
    ("flag_typo", ["--chekpoint"], 1), ("command_typo", ["sweeep"], 1),
    ("catalog", ["mycat.toml: [h100_sxm] mem_bw: expected bandwidth", "'3.35 TB'"], 1),
    ("garbage", ["garbage.npz", "cannot be read"], 1),
])
def test_cli_bad_input_exits_2_with_one_line_per_mistake(cli_runs, case, texts, lines):
    _, results = cli_runs
    _clean(results[case], *texts, lines=lines)


def test_cli_checkpoint_path_that_is_a_directory(cli_runs):
    """Refused before sweeping, naming --checkpoint, with no temporary file left behind."""
    d, results = cli_runs
    assert not list(d.glob("ckpt.tmp.*")), "a temporary checkpoint file was left behind"
    got = _clean(results["ckpt_dir"], lines=1)
    assert re.search(r"--checkpoint|checkpoint_path|checkpoint (path|file)", got[0]) and ".tmp." not in got[0], got
