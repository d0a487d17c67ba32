"""Exact elasticities (wall 21) against central finite differences in float64.

The finite differences here are independent of ``sensitivity.py``'s
local-table trick: each input is scaled by e^{±h} directly in the full catalog
tables / the parameter dict / the efficiency tuple and the scenario is
re-evaluated; e_fd = (ln y(+h) - ln y(-h)) / 2h with h = 1e-6.  Configurations
are chosen away from max()/min() kinks (no roofline tie, η·scale < 1, no
auto-replica step), where both must agree to 1e-6 relative.  Inputs whose default
sits on the edge of their domain (EDGE_INPUTS: straggler_factor = 1, a fabric's
oversubscription = 1; nothing below is admissible) are compared with the forward
difference (ln y(+h) - ln y) / h: the derivative there is the upward one, not the
average of a kink's two sides (what jnp.maximum's balanced tie gave before).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt._compile import jit_options
from mlsys_opt.errors import MlsysOptError
from mlsys_opt.point.config import TABLE_PARAM, parameter_names, resolve_config
from mlsys_opt.point.sensitivity import binding, sensitivity, sensitivity_arrays
from mlsys_opt.scenarios import SCENARIO_FNS, params_from_dict
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
from mlsys_opt.scenarios import schema
from mlsys_opt.space.spec import load_space

H = 1e-6
RTOL = 1e-6
# inputs of each kind (table field, region, float parameter, efficiency leaf) for the sparse-kernel check
SPARSE_CHECK = ("hardware.mem_bw_bytes_per_s", "region.carbon_gco2e_per_kwh", "prompt_cv", "eff.dispatch_s_per_layer")
# central differences at H = 1e-6 carry ~1e-9 of rounding noise on long chains (energy_j wrt
# fabric.latency_s: AD 2.926306e-5; FD 2.926199e-5 at H = 1e-6, 2.926306e-5 at H = 1e-4)
ATOL = 1e-8
# inputs at the lower edge of their domain at these configurations: one-sided (forward) differences
EDGE_INPUTS = ("straggler_factor", "fabric.oversubscription")

TRAINING = {"hardware": "h100_sxm", "model": "llama3_70b", "n_accelerators": 2048, "tp": 8, "pp": 4,
            "microbatches": 16, "global_batch": 2048, "n_tokens": "1.24e12 token", "zero_stage": 1,
            "checkpoint_interval": "30 min", "efficiency": 0.4, "region": "quebec", "pricing": "onprem"}
SERVING = {"hardware": "h100_sxm", "model": "llama3_70b", "tp": 4, "request_rate": "50 /s", "batch": 16,
           "replicas": 8, "prompt_tokens": 1024, "output_tokens": 256, "region": "us_avg"}


def _fd_elasticities(scenario, config, names, outputs):
    """[n_out, n_in] central-difference elasticities on the full tables."""
    _, _, p, catalog = resolve_config(scenario, config, jnp.float64)
    tables = catalog.tables(dtype=jnp.float64)
    eff = type(DEFAULT_EFFICIENCY)(*[jnp.asarray(x, jnp.float64) for x in DEFAULT_EFFICIENCY])
    rows = {t: int(np.asarray(p[param])[0]) for t, param in TABLE_PARAM.items()}

    @functools.partial(jax.jit, **jit_options())      # as the package's small-batch programs
    def run(p, tables, eff):
        outs, _ = SCENARIO_FNS[scenario](params_from_dict(scenario, p), tables, eff)
        return jnp.stack([jnp.asarray(getattr(outs, o), jnp.float64)[0] for o in outputs])

    def scaled(name, f):
        pp, tt, ee = dict(p), tables, eff
        if name.startswith("eff."):
            ee = eff._replace(**{name[4:]: getattr(eff, name[4:]) * f})
        elif "." in name:
            prefix, field = name.split(".")
            t = {v: k for k, v in TABLE_PARAM.items()}[prefix]
            tab = getattr(tables, t)
            arr = getattr(tab, field)
            tt = tables._replace(**{t: tab._replace(**{field: arr.at[rows[t]].multiply(f)})})
        else:
            pp[name] = p[name] * f
        return run(pp, tt, ee)

    central, fwd, bwd = (np.zeros((len(outputs), len(names))) for _ in range(3))
    y0 = np.asarray(scaled(names[0], 1.0))
    lg = lambda y, ok: np.log(np.where(ok, y, 1))      # noqa: E731
    for j, name in enumerate(names):
        yp, ym = np.asarray(scaled(name, np.exp(H))), np.asarray(scaled(name, np.exp(-H)))
        ok = (yp > 0) & (ym > 0) & (y0 > 0)
        central[:, j] = np.where(ok, (lg(yp, ok) - lg(ym, ok)) / (2 * H), 0.0)
        fwd[:, j] = np.where(ok, (lg(yp, ok) - lg(y0, ok)) / H, 0.0)
        bwd[:, j] = np.where(ok, (lg(y0, ok) - lg(ym, ok)) / H, 0.0)
    return central, fwd, bwd


@pytest.mark.parametrize("scenario, config", [("training", TRAINING), ("serving", SERVING)])
def test_elasticities_match_finite_differences(scenario, config):
    s = sensitivity_arrays(scenario, config)
    assert s.elasticity.shape == (1, len(s.outputs), len(s.parameters))
    assert np.all(np.isfinite(s.elasticity)) and np.all(np.isfinite(s.derivative))
    central, fwd, bwd = _fd_elasticities(scenario, config, s.parameters, s.outputs)
    ad = s.elasticity[0]
    # a kink at the configuration (the one-sided differences disagree): the derivative must be one
    # side's, never their average (jnp.maximum's balanced tie); inputs on the lower edge of their
    # domain (EDGE_INPUTS) take the upward side, and no other input may sit on a kink here
    kink = np.abs(fwd - bwd) > 1e-3 * np.maximum(np.abs(fwd), np.abs(bwd)) + 1e-6
    edge = np.isin(np.asarray(s.parameters), EDGE_INPUTS)[None, :]
    assert not np.any(kink & ~edge), [(s.outputs[i], s.parameters[j]) for i, j in zip(*np.nonzero(kink & ~edge))]
    onesided = np.abs(ad - fwd) <= 1e-4 * np.abs(fwd) + ATOL
    assert np.all(onesided | ~(kink & edge)), "an edge input's derivative is not the upward one"
    fd = np.where(edge, fwd, central)
    zero_x = s.value[0] == 0            # e = 0 by definition; FD on log scale undefined
    rtol = np.where(edge, 1e-4, RTOL)[:, ~zero_x]      # forward differences: O(h) truncation
    err = np.abs(ad - fd)[:, ~zero_x]
    tol = ATOL + rtol * np.abs(fd[:, ~zero_x])
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert np.all(err <= tol), (s.outputs[worst[0]], np.asarray(s.parameters)[~zero_x][worst[1]],
                                ad[:, ~zero_x][worst], fd[:, ~zero_x][worst])
    if scenario == "serving":   # the sparse kernel (method "auto" took jacfwd here) on a few inputs of each kind
        sparse = sensitivity_arrays(scenario, config, parameters=SPARSE_CHECK, method="sparse")
        cols = [s.parameters.index(k) for k in SPARSE_CHECK]
        np.testing.assert_allclose(sparse.elasticity[0], s.elasticity[0][:, cols], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(sparse.y, s.y, rtol=1e-12)
    # the physics the seeds state, as a sanity anchor
    i = s.outputs.index("time_to_train_s" if scenario == "training" else "itl_s")
    e = dict(zip(s.parameters, s.elasticity[0, i]))
    if scenario == "training":
        assert e["n_tokens"] == pytest.approx(1.0, abs=1e-9)           # T ∝ D
        assert -1.0 < e["hardware.peak_flop_per_s"] < 0.0
    else:
        assert e["hardware.mem_bw_bytes_per_s"] < -0.5                  # decode is memory-bound
        assert e["hardware.mem_bw_bytes_per_s"] == pytest.approx(e["eff.mem_bw_eff"], rel=1e-9)


def test_derivative_is_elasticity_times_ratio():
    s = sensitivity_arrays("training", TRAINING)
    y, x = s.y[0][:, None], s.value[0][None, :]
    nz = (x != 0) & (y != 0)
    np.testing.assert_allclose(s.derivative[0][nz[0:1].repeat(len(y), 0) & nz],
                               (s.elasticity[0] * y / np.where(x == 0, 1, x))[nz], rtol=1e-12)


def test_batch_equals_single_and_long_frame():
    space = load_space("llama3_70b_training")
    configs = [{"hardware": "h100_sxm", "n_accelerators": 1024, "tp": 8, "pp": 4, "region": "quebec"},
               {"hardware": "b200", "n_accelerators": 512, "tp": 4, "pp": 2, "region": "poland"},
               {"hardware": "a100_80gb", "n_accelerators": 2048, "tp": 8, "pp": 8, "region": "texas"}]
    digits = np.stack([space.digits_for(c) for c in configs])
    batch = sensitivity_arrays(space, digits)
    single = sensitivity_arrays(space, configs[1])
    np.testing.assert_allclose(batch.elasticity[1], single.elasticity[0], rtol=1e-12, atol=1e-15)
    n_g = len(schema.STRUCTURAL_CONSTRAINTS["training"]) + len(space.limits)
    assert batch.G.shape == (3, n_g) and batch.constraints[-1] == "limit:time_to_train_s"
    df = sensitivity(space, digits, outputs=["time_to_train_s", "tco_usd"])
    n_in = len(parameter_names("training"))
    assert len(df) == 3 * 2 * n_in
    assert list(df.columns) == ["config", "output", "output_value", "parameter", "value", "derivative",
                                "elasticity", "rank"]
    top = df[(df.config == 0) & (df.output == "time_to_train_s")].sort_values("rank")
    assert top["rank"].tolist() == list(range(1, n_in + 1))
    assert np.all(np.diff(top["elasticity"].abs().to_numpy()) <= 0)
    b = binding(df, "time_to_train_s", config=2)
    assert b.parameter == "n_tokens" and b.elasticity == pytest.approx(1.0)
    g = df.attrs["constraints"].iloc[2]
    assert b.constraint == g.idxmax() and b.g == g.max()


def test_binding_names_memory_bandwidth_for_decode():
    df = sensitivity("serving", SERVING, outputs=["itl_s"])
    b = binding(df, "itl_s")
    assert b.parameter in ("hardware.mem_bw_bytes_per_s", "eff.mem_bw_eff")
    assert b.elasticity < -0.5
    assert b.constraint in df.attrs["constraints"].columns


def test_bad_names_raise():
    with pytest.raises(MlsysOptError, match="did you mean"):
        sensitivity("training", TRAINING, outputs=["time_to_trian_s"])
    with pytest.raises(MlsysOptError, match="not a continuous input"):
        sensitivity("training", TRAINING, parameters=["hardware.mem_bw"])
    with pytest.raises(MlsysOptError, match="n_tokens"):
        sensitivity("training", {"model": "llama3_70b"})
    df = sensitivity("training", TRAINING, outputs=["mfu"])
    with pytest.raises(MlsysOptError, match="no rows"):
        binding(df, "tco_usd")


def test_an_input_on_the_edge_of_its_domain_gets_its_upward_derivative():
    """straggler_factor = 1 (no fail-slow) is the lower edge of its domain and the step time is
    proportional to it: +1 % of it is +1 % of the step (elasticity 1), not the ½ of jnp.maximum's
    balanced tie that walls._masked.floor_pos used to give.  floor_pos itself: derivative 1 at and
    above the floor, 0 below."""
    from mlsys_opt.walls._masked import floor_pos
    s = sensitivity_arrays("training", TRAINING, parameters=("straggler_factor", "fabric.oversubscription"))
    e = dict(zip(s.parameters, s.elasticity[0, s.outputs.index("step_time_s")]))
    assert e["straggler_factor"] == pytest.approx(1.0, rel=1e-9)
    assert e["fabric.oversubscription"] > 0.0        # a tapered fabric slows the exposed collectives
    g = jax.vmap(jax.grad(lambda x: floor_pos(x, 1.0)))(jnp.array([0.5, 1.0, 2.0]))
    np.testing.assert_array_equal(np.asarray(g), [0.0, 1.0, 1.0])
    assert np.isnan(floor_pos(jnp.nan, 1.0))
    # an overlap fraction at its upper edge (cp_overlap = 1 by default): exposure max((1-o)·t, t - w, 0) is 0
    # for t <= w, and lowering o exposes (1-o)·t: d/do = -t (jnp.maximum's tie at 0 gave -t/2)
    from mlsys_opt.walls import parallel
    assert float(jax.grad(lambda o: parallel.exposed(0.1, o, 0.2))(1.0)) == pytest.approx(-0.1, rel=1e-12)
    assert float(jax.grad(lambda o: parallel.exposed(0.1, o, 0.04))(1.0)) == 0.0     # t > w: t - w binds
