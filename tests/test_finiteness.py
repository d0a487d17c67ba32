"""Issue 7 item 2: no silent NaN.  Random spaces of the real catalog, extreme but valid knobs.

Random design spaces (random subsets of catalog rows -- datacenter GPUs, TPUs,
Cerebras wafers, Jetson, a phone NPU and an nRF52840 microcontroller --,
random parallel degrees, batch, precision, regions, and knobs at the edges of
what the schema allows) are parsed by `load_space`, decoded by
`Space.param_values` and evaluated by the scenarios, in float32 the way
production runs (`jax.enable_x64(False)`: under the tests' x64 mode the walls
promote to float64) and in float64.  Every output and every constraint must
be finite, every structurally impossible configuration must carry a
constraint > 0 (and the right one), and feasible configurations must have
sane outputs.

The scenarios record no reason code for infeasibility yet; `reason_codes`
below is the proposal (argmax of the positive constraints, -1 = feasible) and
`test_reason_code_of_single_violations` pins what it must say.

Cost: one jit per scenario and precision (batches padded to `M` rows).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mlsys_opt import scenarios
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.catalog import load_catalog
from mlsys_opt.errors import SpecError
from mlsys_opt.scenarios import schema
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
from mlsys_opt.space.spec import load_space

M = 1024                                   # rows per jitted call (padded)
CAT = load_catalog()
HW = CAT.names("accelerators")
MODELS = CAT.names("models")
REGIONS = CAT.names("regions")
FABRICS = CAT.names("fabrics")
A = CAT.frames["accelerators"]
MO = CAT.frames["models"]
APN = A["accelerators_per_node"].to_numpy(float)
CAPACITY = A["mem_capacity_bytes"].to_numpy(float)
HAS = A[[f"has_{p}" for p in PRECISIONS]].to_numpy(bool)
LAYERS = MO["n_layers"].to_numpy(float)
EXPERTS = MO["n_experts"].to_numpy(float)
SPECIAL_HW = ("cerebras_wse2", "cerebras_wse3", "jetson_orin", "mobile_npu", "nrf52840", "tpu_v5p", "gb200")

# Values at the edges of the schema bounds (spec display forms).
TRAIN_KNOBS = {
    "tp": [1, 2, 8, 16, 64, 4096], "pp": [1, 2, 3, 16, 128], "ep": [1, 2, 8, 256, 512],
    "n_accelerators": [1, 3, 8, 512, 65536, 2**20, 2**24],
    "global_batch": [1, 7, 1024, 2**22], "seq_len": [1, 128, 8192, 2**20], "microbatches": [1, 8, 1024],
    "virtual_stages": [1, 4, 16], "zero_stage": [0, 1, 2, 3], "recompute": ["none", "selective", "full"],
    "cp": [1, 2, 16], "micro_batch_size": [0, 1, 4], "attention": ["flash", "eager"],
    "sequence_parallel": ["on", "off"], "shard_group": [0, 8], "straggler_factor": [1.0, 1.5],
    "overlap": [0.0, 0.5, 1.0], "efficiency": [1e-4, 0.3, 1.0],
    "checkpoint_interval": ["0 s", "1 s", "1 year"], "checkpoint_bw": ["1 B/s", "1 TB/s", "1 PB/s"],
    "recovery": ["0 s", "1 h", "1 year"], "n_tokens": ["1 token", "1e12 token", "1e16 token"],
    "pricing": ["cloud", "onprem"], "depreciation": ["1 s", "3 year", "100 year"],
    "maintenance_frac_per_year": [0.0, 0.05, 1.0],
}
SERVE_KNOBS = {
    "tp": [1, 2, 8, 16, 256], "pp": [1, 2, 16, 128],
    "request_rate": ["0 /s", "1e-3 /s", "1000 /s", "1e8 /s"], "prompt_tokens": [1, 1024, 2**20],
    "output_tokens": [1, 256, 2**17], "batch": [1, 64, 2**16], "replicas": [0, 1, 1000, 10**7],
    "max_utilization": [0.01, 0.8, 0.999], "duration": ["1 s", "1 year", "100 year"],
    "efficiency": [1e-4, 0.5, 1.0], "pricing": ["cloud", "onprem"], "depreciation": ["1 s", "3 year"],
    "maintenance_frac_per_year": [0.0, 1.0],
}
OBJECTIVES = {"training": ["time_to_train_s", "tco_usd", "carbon_kg"],
              "serving": ["cost_per_mtok_usd", "carbon_per_mtok_kg", "p99_latency_s"]}


@functools.lru_cache(maxsize=None)
def _jitted(scenario: str):
    return jax.jit(scenarios.SCENARIO_FNS[scenario], **jit_options())


def evaluate(space, digits: np.ndarray, dtype, tables=None) -> tuple[dict, dict, dict]:
    """(params, outputs, constraints) as float64 numpy dicts for `digits` [n <= M, n_axes].

    One jitted program per scenario and precision (also used by test_dimensions / test_determinism).
    """
    n = len(digits)
    assert 0 < n <= M
    padded = np.concatenate([digits, np.repeat(digits[:1], M - n, 0)]).astype(np.int32)
    with jax.enable_x64(dtype == jnp.float64):
        p = space.param_values(padded, dtype)
        cls = scenarios.PARAMS_TYPES[space.scenario]
        tables = CAT.tables(dtype) if tables is None else tables
        out, g = _jitted(space.scenario)(cls(**p), tables, DEFAULT_EFFICIENCY)
        if dtype == jnp.float32:        # the production path really is float32
            assert all(np.asarray(x).dtype in (np.float32, np.int32, np.bool_) for x in (*out, *g))
    cut = lambda tup: {k: np.asarray(v)[:n].astype(np.float64) for k, v in tup._asdict().items()}  # noqa: E731
    return {k: np.asarray(v)[:n] for k, v in p.items()}, cut(out), cut(g)


def reason_codes(g: dict, scenario: str) -> np.ndarray:
    """Proposed reason code: index (into schema.STRUCTURAL_CONSTRAINTS) of the most violated
    constraint, -1 when every constraint is <= 0."""
    names = schema.STRUCTURAL_CONSTRAINTS[scenario]
    G = np.stack([g[k] for k in names], axis=-1)
    return np.where(G.max(axis=1) > 0, G.argmax(axis=1), -1)


def check_rows(space, params: dict, out: dict, g: dict, label: str) -> None:
    """Every invariant of issue 7 item 2 on one evaluated batch."""
    scen = space.scenario
    for name, col in {**out, **{f"g.{k}": v for k, v in g.items()}}.items():
        bad = ~np.isfinite(col)
        assert not bad.any(), f"{label}: {name} is NaN/inf for {bad.sum()} rows, e.g. {_row(space, params, bad)}"
    hw, model = params["hardware"].astype(int), params["model"].astype(int)
    prec = params["precision"].astype(int)
    tp, pp = params["tp"].astype(float), params["pp"].astype(float)
    expect = {
        "precision": ~HAS[hw, prec],
        "tp_within_node": tp > APN[hw],
        "pipeline_depth": pp > LAYERS[model],
    }
    if scen == "training":
        # N = tp·cp·pp·dp with ep inside dp (issue 12); a dense model never violates `experts`.
        ep, n = params["ep"].astype(float), params["n_accelerators"].astype(float)
        cp = params["cp"].astype(float)
        group = tp * cp * pp
        dp = np.maximum(n / group, 1.0)
        moe = EXPERTS[model] > 1
        expect["experts"] = moe & ((ep > EXPERTS[model]) | (np.mod(EXPERTS[model], ep) != 0)
                                   | (np.abs(n / group - ep * np.round(n / group / ep)) > 0.5))
        expect["divisibility"] = np.mod(n, group) != 0
        expect["context_split"] = np.mod(np.where(MO["kind"].to_numpy()[model] == "cnn", 1.0,
                                                  params["seq_len"]), cp) != 0
        mbs, mb, gb = params["micro_batch_size"], params["microbatches"], params["global_batch"]
        b = np.where(mbs > 0, mbs, gb / (dp * np.maximum(mb, 1.0)))
        m = np.where(mbs > 0, gb / (dp * np.maximum(mbs, 1e-9)), mb)
        given = (mbs > 0) | (mb > 0)          # auto rows pick the least violating lane: not checked here
        split = np.minimum(b, m)
        tie = np.isclose(split, 1.0, rtol=1e-5) | ~given
        assert ((g["batch_split"] > 0) == (split < 1))[~tie].all(), f"{label}: batch_split disagrees"
    else:
        util = out["utilization"]
        tie = np.isclose(util, 1.0 - 1e-6, rtol=1e-5)
        assert ((g["queue_stable"] > 0) == (util > 1.0 - 1e-6))[~tie].all(), f"{label}: queue_stable disagrees"
    for name, bad in expect.items():
        wrong = (g[name] > 0) != bad
        assert not wrong.any(), (f"{label}: constraint {name} is {g[name][wrong][:3]} where the configuration "
                                 f"{'violates' if bad[wrong][0] else 'satisfies'} it: {_row(space, params, wrong)}")
    mem, cap = out["memory_per_accelerator_bytes"], CAPACITY[hw]
    tie = np.isclose(mem, cap, rtol=1e-4)
    assert ((g["memory"] > 0) == (mem > cap))[~tie].all(), f"{label}: memory constraint vs output disagree"

    G = np.stack([g[k] for k in schema.STRUCTURAL_CONSTRAINTS[scen]], axis=-1)
    structural_bad = np.any(np.stack(list(expect.values())), axis=0)
    assert (G.max(axis=1)[structural_bad] > 0).all()
    codes = reason_codes(g, scen)
    assert ((codes >= 0) == (G.max(axis=1) > 0)).all()

    ok = G.max(axis=1) <= 0                       # feasible rows: sane values
    if not ok.any():
        return
    o = {k: v[ok] for k, v in out.items()}
    rtol = 1e-4
    for k in ("tco_usd", "carbon_kg", "memory_per_accelerator_bytes"):
        assert (o[k] >= 0).all(), f"{label}: negative {k} on a feasible row"
    if scen == "training":
        for k in ("time_to_train_s", "step_time_s", "energy_j"):
            assert (o[k] > 0).all(), f"{label}: {k} <= 0 on a feasible row"
        assert (o["water_l"] >= 0).all()
        assert ((o["goodput"] > 0) & (o["goodput"] <= 1)).all()
        assert ((o["bubble_frac"] >= 0) & (o["bubble_frac"] < 1)).all()
        assert ((o["scaling_efficiency"] > 0) & (o["scaling_efficiency"] <= 1 + rtol)).all()
        assert ((o["mfu"] >= 0) & (o["mfu"] <= 1 + rtol)).all(), f"{label}: MFU above 1: {o['mfu'].max()}"
        assert (o["dp"] >= 1 - rtol).all()
    else:
        for k in ("ttft_s", "itl_s", "p99_latency_s"):
            assert (o[k] > 0).all(), f"{label}: {k} <= 0 on a feasible row"
        assert (o["p99_latency_s"] >= o["ttft_s"] * (1 - rtol)).all(), f"{label}: p99 below TTFT"
        lam_out = params["request_rate"][ok] * params["output_tokens"][ok]
        assert (o["throughput_tok_per_s"] <= lam_out * (1 + rtol) + 1e-6).all(), "serves more than is offered"
        assert (o["replicas"] >= 1 - rtol).all()
        assert np.allclose(o["n_accelerators"], o["replicas"] * params["tp"][ok] * params["pp"][ok], rtol=rtol)
        assert ((o["utilization"] >= 0) & (o["utilization"] < 1)).all()
        assert (o["cost_per_mtok_usd"] >= 0).all() and (o["carbon_per_mtok_kg"] >= 0).all()


def _row(space, params: dict, mask: np.ndarray) -> str:
    i = int(np.flatnonzero(mask)[0])
    parts = []
    for k, v in params.items():
        spec = space.params[k]
        x = v[i]
        if spec.kind == "catalog":
            x = CAT.names(spec.catalog_kind)[int(x)]
        elif spec.kind == "choice":
            x = spec.choices[int(x)]
        parts.append(f"{k}={x}")
    return ", ".join(parts)


def _all_digits(space) -> np.ndarray:
    return np.array(np.unravel_index(np.arange(space.size), space.radices)).T.astype(np.int32)


def _sample_digits(space, rng: np.random.Generator) -> np.ndarray:
    """M digit rows: both corners plus uniform random configurations (or all if the space is small)."""
    if space.size <= M:
        return _all_digits(space)
    r = np.array(space.radices)
    rows = [np.zeros_like(r), r - 1] + [rng.integers(0, r) for _ in range(M - 2)]
    return np.array(rows, np.int32)


# --------------------------------------------------------------------------- random spaces

def _subset(draw, values, max_size=4):
    return draw(st.lists(st.sampled_from(values), min_size=1, max_size=max_size, unique=True))


@st.composite
def random_specs(draw, scenario: str):
    knobs = TRAIN_KNOBS if scenario == "training" else SERVE_KNOBS
    hw = _subset(draw, HW, 6)
    if draw(st.booleans()):
        hw = list(dict.fromkeys(hw + [draw(st.sampled_from(SPECIAL_HW))]))
    axes = {"hardware": hw, "model": _subset(draw, MODELS, 4), "region": _subset(draw, REGIONS, 3),
            "fabric": _subset(draw, FABRICS, 2),
            "precision": _subset(draw, list(PRECISIONS) + ["bf16"], 3)}
    fixed = {}
    for name, values in knobs.items():
        pick = _subset(draw, values, 3)
        if name in ("tp", "pp", "ep") and draw(st.booleans()):
            pick = list(dict.fromkeys([1] + pick))
        if len(pick) == 1 and draw(st.booleans()):
            fixed[name] = pick[0]
        else:
            axes[name] = pick
    if scenario == "training" and "n_tokens" not in fixed and "n_tokens" not in axes:
        fixed["n_tokens"] = "1e12 token"
    if scenario == "serving" and "request_rate" not in fixed and "request_rate" not in axes:
        fixed["request_rate"] = "10 /s"
    for name in list(axes):                 # duplicates after alias resolution (bf16 == fp16)
        if name == "precision" and {"fp16", "bf16"} <= set(axes[name]):
            axes[name].remove("bf16")
    return {"name": "random", "scenario": scenario, "fixed": fixed, "axes": axes,
            "objectives": {"minimize": OBJECTIVES[scenario]}}


def _run_random(data: dict, seed: int) -> None:
    try:
        space = load_space(data)
    except SpecError as exc:                  # every configuration impossible: refused with a message
        assert str(exc).startswith("<dict>: "), str(exc)
        # (a whole space at zero request rate is refused too: issue 16, nothing to price at zero load)
        assert "no configuration can satisfy" in str(exc) or "needs requests to serve" in str(exc), str(exc)
        return
    digits = _sample_digits(space, np.random.default_rng(seed))
    for dtype in (jnp.float32, jnp.float64):
        params, out, g = evaluate(space, digits, dtype)
        check_rows(space, params, out, g, f"{space.scenario}/{jnp.dtype(dtype).name}")


# No shrinking: a failure prints its (already readable) spec; shrinking would cost minutes in CI.
_SETTINGS = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                     phases=[Phase.explicit, Phase.generate],
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_SETTINGS
@given(data=random_specs("training"), seed=st.integers(0, 2**32 - 1))
def test_random_training_spaces_are_finite_and_flag_infeasibility(data, seed):
    _run_random(data, seed)


@_SETTINGS
@given(data=random_specs("serving"), seed=st.integers(0, 2**32 - 1))
def test_random_serving_spaces_are_finite_and_flag_infeasibility(data, seed):
    _run_random(data, seed)


def test_float32_no_overflow_of_energy_cost_carbon_at_extreme_valid_inputs():
    """Regression (found by the random spaces): 1e16 tokens, 1 B/s checkpoint bandwidth, efficiency 1e-4
    and 2**24 accelerators made time_to_train_s ~3.7e29 s and energy_j = N·P·t·PUE overflow float32 to
    inf.  scenarios.training now caps the time at node.UNBOUNDED (1e18 s)."""
    space = load_space({"scenario": "training",
                        "fixed": {"model": "llama3_405b", "hardware": "h100_sxm", "precision": "fp32",
                                  "n_tokens": "1e16 token", "checkpoint_bw": "1 B/s", "efficiency": 1e-4,
                                  "global_batch": 1, "seq_len": 1, "microbatches": 1, "region": "india"},
                        "axes": {"n_accelerators": [2**20, 2**24]},
                        "objectives": {"minimize": ["time_to_train_s"]}})
    params, out, g = evaluate(space, _all_digits(space), jnp.float32)
    bad = sorted(k for k, v in out.items() if not np.isfinite(v).all())
    assert not bad, f"float32 outputs not finite: {bad} (time_to_train_s = {out['time_to_train_s']})"


# --------------------------------------------------------------------------- exhaustive corners

@pytest.mark.parametrize("scenario", ["training", "serving"])
def test_every_hardware_model_precision_combination_is_finite(scenario):
    """The whole catalog (every accelerator incl. MCU/mobile/wafer x every model x every precision)
    at small and huge parallelism, in float32."""
    fixed = {"n_tokens": "1e13 token"} if scenario == "training" else {"request_rate": "100 /s"}
    axes = {"hardware": "*", "model": "*", "precision": list(PRECISIONS), "tp": [1, 64]}
    if scenario == "training":
        axes["n_accelerators"] = [1, 4096]
    else:
        axes["batch"] = [1, 4096]
    space = load_space({"scenario": scenario, "fixed": fixed, "axes": axes,
                        "objectives": {"minimize": OBJECTIVES[scenario][:1]}})
    digits = _all_digits(space)
    for start in range(0, len(digits), M):
        chunk = digits[start:start + M]
        params, out, g = evaluate(space, chunk, jnp.float32)
        check_rows(space, params, out, g, f"{scenario}/catalog[{start}:]")


AGREE_SPACES = {
    "training": {"scenario": "training", "fixed": {"n_tokens": "1e12 token", "model": "llama3_8b"},
                 "axes": {"hardware": ["h100_sxm", "b200", "mi300x", "tpu_v5p", "cerebras_wse3"],
                          "tp": [1, 2, 8], "pp": [1, 4], "n_accelerators": [64, 1024], "zero_stage": [1, 3],
                          "region": ["quebec", "poland"]}},
    "serving": {"scenario": "serving", "fixed": {"request_rate": "1000 /s"},
                "axes": {"hardware": ["h100_sxm", "b200", "mi300x", "tpu_v5e", "cerebras_wse3", "l4"],
                         "model": ["llama3_8b", "llama3_70b", "mixtral_8x7b"], "tp": [1, 2, 8],
                         "batch": [1, 16, 128], "precision": ["fp16", "fp8"], "region": ["quebec", "poland"]}},
}


@pytest.mark.parametrize("scenario", ["training", "serving"])
def test_float32_agrees_with_float64_on_comfortably_feasible_configurations(scenario):
    """Where every constraint has a margin, the float32 production path matches float64 to 1e-3."""
    space = load_space({**AGREE_SPACES[scenario], "objectives": {"minimize": OBJECTIVES[scenario]}})
    digits = _all_digits(space)[:M]
    _, o32, g32 = evaluate(space, digits, jnp.float32)
    _, o64, g64 = evaluate(space, digits, jnp.float64)
    G = np.stack(list(g64.values()))
    margin = (G <= 0).all(axis=0) & ~((G > -1e-3) & (G != 0)).any(axis=0)   # ep/n_experts - 1 is exactly 0
    assert margin.sum() > 20
    for k in o64:
        np.testing.assert_allclose(o32[k][margin], o64[k][margin], rtol=1e-3, err_msg=k)


def test_gradients_are_finite():
    """d log(objective) / d(every float parameter and efficiency knob) is finite (CONTRACTS: safe
    denominators keep gradients finite too), including at infeasible rows.

    One forward-mode derivative along a random positive direction through every input at once: it is
    finite if and only if every partial derivative is (an inf or NaN partial makes it inf or NaN;
    finite partials only overflow for values far beyond float64's range), and its program is a
    fraction of reverse mode's.  On a failure the per-input gradients name the input."""
    for scenario, obj in (("training", "time_to_train_s"), ("serving", "p99_latency_s")):
        fixed = {"n_tokens": "1e12 token"} if scenario == "training" else {"request_rate": "1000 /s"}
        space = load_space({"scenario": scenario, "fixed": fixed,
                            "axes": {"hardware": ["h100_sxm", "cerebras_wse3", "nrf52840", "mobile_npu"],
                                     "model": ["llama3_70b", "ds_cnn", "mixtral_8x7b"],
                                     "precision": ["fp16", "fp8", "int4"], "tp": [1, 8, 16]},
                            "objectives": {"minimize": [obj]}})
        digits = _all_digits(space)
        cls = scenarios.PARAMS_TYPES[scenario]
        p = space.param_values(digits, jnp.float64)
        floats = {k: v for k, v in p.items() if space.params[k].kind in ("float", "int")}
        codes = {k: v for k, v in p.items() if k not in floats}
        tables = CAT.tables(jnp.float64)

        def log_objective(fl, eff):         # [n]: one row per configuration
            out, _ = scenarios.SCENARIO_FNS[scenario](cls(**fl, **codes), tables, eff)
            return jnp.log(jnp.maximum(getattr(out, obj), 1e-30))

        eff64 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), DEFAULT_EFFICIENCY)
        rng = np.random.default_rng(0)
        tangent = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.uniform(0.5, 1.5, np.shape(x)), jnp.float64),
                                         (floats, eff64))
        # compiled as the package's derivative programs are (mlsys_opt._compile)
        _, d = jax.jit(lambda args, t: jax.jvp(lambda a: log_objective(*a), (args,), (t,)),
                       **jit_options())((floats, eff64), tangent)
        if np.isfinite(np.asarray(d)).all():
            continue
        grads = jax.jit(jax.grad(lambda fl, eff: jnp.sum(log_objective(fl, eff)), argnums=(0, 1)))(floats, eff64)
        for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
            assert np.isfinite(np.asarray(leaf)).all(), f"{scenario}: gradient wrt {jax.tree_util.keystr(path)}"
        raise AssertionError(f"{scenario}: the directional derivative is not finite (rows "
                             f"{np.flatnonzero(~np.isfinite(np.asarray(d))).tolist()})")


def test_reason_code_of_single_violations():
    """The proposed reason code names the one violated constraint."""
    space = load_space({"scenario": "training",
                        "fixed": {"n_tokens": "1e12 token", "model": "llama3_8b", "n_accelerators": 64},
                        "axes": {"hardware": ["h100_sxm", "a100_80gb"], "precision": ["fp16", "fp8"],
                                 "tp": [8, 16], "ep": [1, 2]},
                        "objectives": {"minimize": ["time_to_train_s"]}})
    names = schema.TRAINING_CONSTRAINTS
    cases = {("h100_sxm", "fp16", 8, 1): -1, ("a100_80gb", "fp8", 8, 1): names.index("precision"),
             ("h100_sxm", "fp16", 16, 1): names.index("tp_within_node"),
             ("h100_sxm", "fp16", 8, 2): -1}    # a dense model ignores ep: never the experts constraint (issue 12)
    digits = np.array([space.digits_for(dict(zip(("hardware", "precision", "tp", "ep"), k))) for k in cases])
    _, _, g = evaluate(space, digits, jnp.float32)
    assert reason_codes(g, "training").tolist() == list(cases.values())
