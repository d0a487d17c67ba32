"""Issue 14: honest cost semantics and the answers a user can reuse.

- `walls.ops.upfront_capex_usd` (the purchase of an on-prem fleet) against hand arithmetic,
  batched == scalar, jax.grad == finite differences, float32 stays float32;
- the `upfront_capex_usd` output of both scenarios (the wall on the catalog row on-prem, 0 in the
  cloud) and the `max_upfront_capex` limit in a sweep;
- `sensitivity` fed a sweep front row (numpy scalars);
- `synthesize --days` reading `--set n_tokens`, and --days 14 / 30 both answering;
- `catalog add` saving into the user catalog file.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from wallcheck import Sampler, assert_batched_equals_scalar, fd_check

import mlsys_opt as mo
from mlsys_opt.catalog import load_catalog
from mlsys_opt.cli import app as cli
from mlsys_opt.cli.commands.common import load_user_catalog
from mlsys_opt.space.spec import load_space
from mlsys_opt.sweeps.api import constraint_names, evaluate_digits
from mlsys_opt.walls import ops

CAT = load_catalog()
H100 = CAT.entry("accelerators", "h100_sxm")          # $30,000, 700 W
IT_MULT = 1.0 + ops.SYSTEM_FRAC + ops.NETWORK_FRAC    # 1.78
HOST_MULT = 1.0 + ops.HOST_POWER_FRAC                 # 1.8


# --------------------------------------------------------------------------- the wall
def test_upfront_capex_reference_values():
    # 1,024 H100s: IT 1,024 · 30,000 · (1 + 0.45 + 0.33) = $54,681,600;
    # facility $10/W · 1,024 · 700 W · (1 + 0.8) = $12,902,400; total $67,584,000
    assert float(ops.upfront_capex_usd(30_000.0, 1024.0, 700.0)) == pytest.approx(67_584_000.0, rel=1e-12)
    assert float(ops.upfront_capex_usd(30_000.0, 1024.0, 700.0, facility_usd_per_w=0.0)) == \
        pytest.approx(54_681_600.0, rel=1e-12)
    # the seed's node: 8 H100s with servers but no network or facility = 8 · 30,000 · 1.45 = $348K (seed: ~$350K)
    node = float(ops.upfront_capex_usd(30_000.0, 8.0, 700.0, network_frac=0.0, facility_usd_per_w=0.0))
    assert node == pytest.approx(348_000.0, rel=1e-12) and abs(node - 350_000) / 350_000 < 0.01
    # the facility prices provisioned IT watts: DGX H100 10.2 kW for 8 GPUs ≈ 8 · 700 · 1.8 = 10.08 kW
    assert 8 * 700 * HOST_MULT == pytest.approx(10_200, rel=0.02)
    # the amortized share of a run is a small fraction of the purchase: 30 days of 3 years of GPUs
    share = ops.tco(30_000.0, 1024.0, 30 * 86400.0, 700.0, 0.0, 1.0, maintenance_frac_per_year=0.0).capex_usd
    assert float(share) == pytest.approx(30_000 * 1024 * 30 / (3 * 365), rel=1e-9)     # $841,644
    assert float(share) / 67_584_000.0 < 0.0125


def test_upfront_capex_batched_equals_scalar_and_float32():
    s = Sampler(14)
    n = 2000
    cols = (s.logu(1e3, 3e6, n), s.logu(1.0, 1e5, n), s.logu(1.0, 2e4, n), s.u(0.0, 1.0, n), s.u(0.0, 1.0, n))
    fn = lambda price, n_dev, w, sf, nf: ops.upfront_capex_usd(price, n_dev, w, system_frac=sf, network_frac=nf)
    assert_batched_equals_scalar(fn, *cols, rtol=1e-12, finite=True)
    f32 = ops.upfront_capex_usd(jnp.float32(30_000.0), jnp.float32(1024.0), jnp.float32(700.0))
    assert f32.dtype == jnp.float32 and float(f32) == pytest.approx(67_584_000.0, rel=1e-6)


def test_upfront_capex_grad_matches_finite_differences():
    base = dict(price=30_000.0, n=1024.0, w=700.0, sf=0.45, nf=0.33, f=10.0, h=0.8)

    def f_of(name):
        def f(x):
            a = {**base, name: x}
            return ops.upfront_capex_usd(a["price"], a["n"], a["w"], system_frac=a["sf"], network_frac=a["nf"],
                                         facility_usd_per_w=a["f"], host_power_frac=a["h"])
        return f

    grads = {k: fd_check(f_of(k), v) for k, v in base.items()}
    # linear: ∂C/∂price = N·1.78, ∂C/∂W = f·N·1.8, ∂C/∂f = N·W·1.8
    assert grads["price"] == pytest.approx(1024 * IT_MULT, rel=1e-9)
    assert grads["w"] == pytest.approx(10 * 1024 * HOST_MULT, rel=1e-9)
    assert grads["f"] == pytest.approx(1024 * 700 * HOST_MULT, rel=1e-9)


# --------------------------------------------------------------------------- scenarios and sweeps
SPEC = {"name": "cost", "scenario": "training",
        "fixed": {"model": "llama3_8b", "n_tokens": "2e11 token", "tp": 8, "global_batch": 512, "seq_len": 4096,
                  "region": "quebec"},
        "axes": {"hardware": ["h100_sxm", "b200"], "n_accelerators": [64, 256, 1024], "pricing": ["cloud", "onprem"]},
        "objectives": {"minimize": ["time_to_train_s", "tco_usd"]}}
LIMIT = 30e6     # between 256 (~$17M) and 1,024 (~$68M) H100s on-prem


def _expected_upfront(hardware, n, pricing):
    e = CAT.entry("accelerators", hardware)
    on = n * float(e["price_usd"]) * IT_MULT + 10.0 * n * float(e["tdp_w"]) * HOST_MULT
    return np.where(np.asarray(pricing) == "onprem", on, 0.0)


@pytest.fixture(scope="module")
def swept():
    """(sweep with max_upfront_capex, its space, every configuration's digits and evaluation)."""
    space = load_space({**SPEC, "constraints": {"max_upfront_capex": f"{LIMIT:g} USD"}})
    digits = np.stack(np.meshgrid(*[np.arange(len(a.labels)) for a in space.axes], indexing="ij"),
                      -1).reshape(-1, len(space.axes))
    return mo.sweep(space, progress=False), space, digits, evaluate_digits(space, digits, dtype=jnp.float64)


def test_training_output_is_the_wall_on_prem_and_zero_in_the_cloud(swept):
    _, space, digits, ev = swept
    lab = {a.name: np.asarray(a.labels)[digits[:, k]] for k, a in enumerate(space.axes)}
    got = np.asarray(ev.outputs.upfront_capex_usd)
    want = np.concatenate([_expected_upfront(h, float(n), p) for h, n, p in
                           zip(lab["hardware"], lab["n_accelerators"], lab["pricing"])], axis=None)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    onprem = lab["pricing"] == "onprem"
    # the run's cost is a small share of the purchase on-prem (a few days of 3 years)
    assert np.all(np.asarray(ev.outputs.tco_usd)[onprem] < 0.05 * got[onprem])
    # the limit column is (y - L) / L, feasible exactly when the purchase fits
    g = np.asarray(ev.G)[:, constraint_names(space).index("limit:upfront_capex_usd")]
    np.testing.assert_allclose(g, (got - LIMIT) / LIMIT, rtol=1e-12)


def test_sweep_reports_the_purchase_and_the_limit_filters(swept):
    limited, _, _, ev = swept
    assert "upfront_capex_usd" in limited.front.columns
    assert limited.front["upfront_capex_usd"].max() <= LIMIT
    assert (limited.front["pricing"] == "onprem").any()       # small on-prem fleets still fit
    # exactly the otherwise-feasible configurations whose purchase exceeds the limit drop out
    structural = np.all(np.asarray(ev.G)[:, :-1] <= 0, axis=1)
    over = structural & (np.asarray(ev.outputs.upfront_capex_usd) > LIMIT)
    assert over.sum() >= 2 and limited.infeasible_by["limit:upfront_capex_usd"] == over.sum()
    assert limited.n_feasible == structural.sum() - over.sum()


def test_serving_output_is_the_wall_on_prem_and_zero_in_the_cloud():
    spec = {"name": "cost_serving", "scenario": "serving",
            "fixed": {"model": "llama3_8b", "request_rate": "20 /s", "region": "quebec"},
            "axes": {"hardware": ["h100_sxm", "b200"], "pricing": ["cloud", "onprem"]},
            "constraints": {"max_upfront_capex": "1e6 USD"},
            "objectives": {"minimize": ["cost_per_mtok_usd"]}}
    space = load_space(spec)
    digits = np.array([[h, p] for h in range(2) for p in range(2)], np.int32)
    ev = evaluate_digits(space, digits, dtype=jnp.float64)
    n = np.asarray(ev.outputs.n_accelerators)
    hw, pr = ["h100_sxm", "h100_sxm", "b200", "b200"], ["cloud", "onprem"] * 2
    want = np.array([float(_expected_upfront(h, float(k), p)) for h, k, p in zip(hw, n, pr)])
    np.testing.assert_allclose(np.asarray(ev.outputs.upfront_capex_usd), want, rtol=1e-12)
    assert want[1] > 0 and want[0] == 0
    g = np.asarray(ev.G)[:, constraint_names(space).index("limit:upfront_capex_usd")]
    np.testing.assert_allclose(g, (want - 1e6) / 1e6, rtol=1e-12)


def test_capstone_budget_is_cash_run_cost_and_purchase():
    space = load_space("capstone")
    assert space.limits["tco_usd"] == ("max", 20e6) and space.limits["upfront_capex_usd"] == ("max", 20e6)
    assert "upfront_capex_usd" in space.description and "budget" in space.description


# --------------------------------------------------------------------------- sensitivity of a front row
def test_sensitivity_accepts_numpy_scalars_from_a_front_row(swept):
    res = swept[0]
    row = res.front.iloc[0]
    config = {a.name: row[a.name] for a in res.space.axes}
    assert any(isinstance(v, np.generic) for v in config.values())      # what a DataFrame row gives
    config["n_accelerators"] = np.int64(config["n_accelerators"])
    inputs = ["hardware.price_usd", "hardware.tdp_w"]                   # one compiled kernel for both calls
    df = mo.sensitivity(res.space, config, outputs=["upfront_capex_usd"], parameters=inputs)
    assert len(df) == 2 and np.isfinite(df["elasticity"]).all()
    by_name = mo.sensitivity("training", {**SPEC["fixed"], "hardware": np.str_("h100_sxm"),
                                          "n_accelerators": np.int64(256), "tp": np.int64(8),
                                          "n_tokens": np.float32(2e11), "efficiency": np.float32(0.5),
                                          "pricing": "onprem"},
                             outputs=["upfront_capex_usd"], parameters=inputs)
    e = dict(zip(by_name["parameter"], by_name["elasticity"]))
    it, fac = 256 * 30_000 * IT_MULT, 10.0 * 256 * 700 * HOST_MULT       # elasticity = share of the term
    assert e["hardware.price_usd"] == pytest.approx(it / (it + fac), rel=1e-6)
    assert e["hardware.tdp_w"] == pytest.approx(fac / (it + fac), rel=1e-6)


# --------------------------------------------------------------------------- synthesize --days
def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_synthesize_days_uses_set_n_tokens_and_refuses_overridden_keys(capsys):
    import json
    code, out, err = _run(capsys, "--json", "synthesize", "--model", "llama3_70b", "--days", "14",
                          "--set", "n_tokens=15e12")
    assert code == 0, err
    data = json.loads(out)
    # 6 · 70.6e9 · 15e12 / (14 d · 989e12 · 0.4) = 13,279 (the --tokens 15e12 answer), not Chinchilla's 1,250
    assert data["n_tokens"] == 15e12 and data["iron_law_devices"] == 13279
    for argv, words in ((["--tokens", "1e12", "--set", "n_tokens=15e12"], "give the token count once"),
                        (["--set", "hardware=b200"], "--hardware b200"),
                        (["--set", "efficiency=0.5"], "--mfu 0.5"),
                        (["--set", "n_accelerators=512"], "finds the number of accelerators")):
        code, _, err = _run(capsys, "synthesize", "--model", "llama3_70b", "--days", "14", *argv)
        assert code == 2 and words in err and err.count("\n") == 1, err


def test_synthesize_days_14_and_30_both_find_a_fleet(capsys):
    """With a fixed microbatches = 4 the micro-batch grew as the fleet shrank, so fleets below ~5,300
    H100s ran out of memory: --days 14 answered 5,312 (in 6.8 days) and --days 30 found nothing in
    [584, 8 × 584].  The default is now the automatic micro-batch."""
    import json
    found = {}
    for days in (14, 30):
        code, out, err = _run(capsys, "--json", "synthesize", "--model", "llama3_70b", "--days", str(days))
        assert code == 0, err
        d = json.loads(out)
        assert d["scenario_devices"] >= d["iron_law_devices"] > 0
        assert 0.8 * days * 86400 < d["scenario_time_s"] <= days * 86400      # the fewest that meet it
        found[days] = d["scenario_devices"]
    assert found[30] < found[14]


# --------------------------------------------------------------------------- catalog add
CHIP = '''[h100_cheap]
based_on = "h100_sxm"
price = "20000 USD"
aliases = ["cheap-h100"]
notes = "quote \\"A\\", 2025"
'''


def test_catalog_add_saves_into_the_user_catalog(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("MLSYS_OPT_CATALOG", raising=False)
    src, user = tmp_path / "chip.toml", tmp_path / "mine.toml"
    src.write_text(CHIP)
    code, out, err = _run(capsys, "catalog", "add", "accelerators", str(src))
    assert code == 0 and "not saved" in out and not user.exists(), err
    code, out, err = _run(capsys, "catalog", "add", "accelerators", str(src), "--catalog", str(user))
    assert code == 0 and f"saved to {user}" in out, err
    cat = load_user_catalog([str(user)])
    e = cat.entry("accelerators", "cheap-h100")
    assert e["name"] == "h100_cheap" and float(e["price_usd"]) == 20_000 and e["notes"] == 'quote "A", 2025'
    assert float(e["tdp_w"]) == float(H100["tdp_w"])
    # a second add of the same name is refused and leaves the file as it was
    before = user.read_text()
    code, _, err = _run(capsys, "catalog", "add", "accelerators", str(src), "--catalog", str(user))
    assert code == 2 and "already defines h100_cheap" in err and user.read_text() == before
    # through the environment variable, appended after the earlier entries (comments kept)
    src2 = tmp_path / "chip2.toml"
    src2.write_text('[accelerators.b200_cheap]\nbased_on = "b200"\nprice = "30000 USD"\n')
    monkeypatch.setenv("MLSYS_OPT_CATALOG", str(user))
    code, out, err = _run(capsys, "--json", "catalog", "add", "hardware", str(src2))
    assert code == 0, err
    text = user.read_text()
    assert text.startswith(before) and "# added by `mlsys-opt catalog add accelerators" in text
    assert set(load_user_catalog([str(user)]).names("accelerators")) >= {"h100_cheap", "b200_cheap"}
    assert not [p for p in tmp_path.iterdir() if ".tmp." in p.name]
