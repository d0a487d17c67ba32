"""The `mlsys-opt` command end to end: numbers in its output, files it writes, exit codes, messages.

Most tests call ``mlsys_opt.cli.app(argv)`` in-process (jit caches are shared);
the bad-input tests run ``python -m mlsys_opt`` in subprocesses, all at once,
to see the real stderr and exit code.  Compiled kernels go to a per-session
cache folder (MLSYS_OPT_CACHE_DIR) so repeated programs compile once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlsys_opt
from mlsys_opt.cli import app as cli

ROOT = Path(__file__).resolve().parents[1]
TINY = """\
name = "tiny"
scenario = "training"

[fixed]
model = "llama3_70b"
n_tokens = "1e12 token"
global_batch = 2048
seq_len = 2048

[axes]
hardware = ["h100_sxm", "b200"]
n_accelerators = [256, 512, 1024]
tp = [4, 8]
region = ["quebec", "poland"]

[constraints]
max_time = "120 day"

[objectives]
minimize = ["time_to_train_s", "tco_usd", "carbon_kg"]
report = ["mfu"]
"""
# seed 003's configuration, as examples/06_full_stack_audit.py runs it (same compiled programs)
SEED_003 = ["--model", "llama3_70b", "--hardware", "h100_sxm", "--n-accelerators", "512", "--tp", "8",
            "--region", "quebec", "--tokens", "1.24e12", "--global-batch", "2048", "--seq-len", "2048",
            "--efficiency", "0.4", "--set", "overlap=0.9", "--limit", "max_time=30 day"]


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    """One compile cache per test session, shared with tests/test_examples.py's subprocesses."""
    old = os.environ.get(cli.CACHE_ENV)
    path = tmp_path_factory.getbasetemp() / "mlsys_opt_jax_cache"
    path.mkdir(exist_ok=True)
    os.environ[cli.CACHE_ENV] = str(path)
    yield os.environ[cli.CACHE_ENV]
    if old is None:
        os.environ.pop(cli.CACHE_ENV, None)
    else:
        os.environ[cli.CACHE_ENV] = old


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str):
    code, out, err = run(capsys, "--json", *argv)
    assert code == 0, err
    return json.loads(out)


# --------------------------------------------------------------------------- bad input (subprocesses)

BAD = {
    "no such spec": (["sweep", "nosuch_space.toml"], "no such spec file"),
    "bad flag value": (["sweep", "capstone", "--chunk-size", "0"], "--chunk-size: expected a positive integer"),
    "unknown flag": (["sweep", "capstone", "--chunks", "4"], "unrecognized arguments: --chunks"),
    "unknown model": (["evaluate", "--model", "llama3_7b", "--tokens", "1e12"], "did you mean 'llama3_70b'"),
    "missing tokens": (["evaluate", "--model", "llama3_70b"], "needs the number of tokens"),
    "unknown hardware": (["catalog", "show", "hardware", "h1000"], "did you mean 'h100_sxm'"),
    "bad spec file": (["sweep", "{bad}"], "[axes] tpp: not a parameter of the training scenario"),
    "bad output format": (["sweep", "capstone", "-o", "front.xlsx"], "unknown format '.xlsx'"),
}


@pytest.mark.parametrize("key", list(BAD))
def test_bad_input_exit_2_one_line(capsys, tmp_path, monkeypatch, key):
    spec = tmp_path / "bad.toml"
    spec.write_text(TINY.replace("tp = [4, 8]", "tpp = [4, 8]"))
    monkeypatch.chdir(tmp_path)
    argv, expected = BAD[key]
    code, out, err = run(capsys, *[a.replace("{bad}", str(spec)) for a in argv])
    assert code == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("mlsys-opt") and expected in lines[0]


def test_python_m_mlsys_opt_real_process(tmp_path):
    """Two real processes: --help (exit 0) and a bad spec (exit 2, one line on stderr, no traceback)."""
    spec = tmp_path / "bad.toml"
    spec.write_text(TINY.replace("tp = [4, 8]", "tpp = [4, 8]"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "mlsys_opt", *argv], cwd=tmp_path, text=True, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for argv in (["--help"], ["sweep", str(spec), "--top", "5"])]
    (out0, err0), (out1, err1) = (p.communicate(timeout=300) for p in procs)
    assert procs[0].returncode == 0 and "mlsys-opt sweep spaces/capstone.toml" in out0
    for command in ("sweep", "search", "evaluate", "sensitivity", "synthesize", "catalog", "spaces", "validate"):
        assert command in out0
    assert procs[1].returncode == 2 and "Traceback" not in err1
    assert err1.strip().count("\n") == 0 and "tpp: not a parameter of the training scenario" in err1


def test_every_command_help_has_examples(capsys):
    for command in ("sweep", "search", "evaluate", "sensitivity", "synthesize", "catalog", "spaces", "validate",
                    "calibrate"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and "examples:" in out and "--json" in out, command


# --------------------------------------------------------------------------- catalog, spaces, synthesize

def test_catalog_show_and_list(capsys):
    code, out, _ = run(capsys, "catalog", "show", "hardware", "h100_sxm")
    assert code == 0
    # mem_capacity is the 81,559 MiB the device exposes (issue 12), not the "80 GB" label
    assert "989 TFLOP/s" in out and "3.35 TB/s" in out and "85.5 GB" in out and "700 W" in out
    data = run_json(capsys, "catalog", "list", "regions")
    regions = {r["name"]: r for r in data["regions"]}
    assert regions["quebec"]["carbon_gco2e_per_kwh"] == 20 and regions["poland"]["carbon_gco2e_per_kwh"] == 820
    code, out, _ = run(capsys, "catalog", "list", "accelerators")
    assert "h100_sxm" in out and "ridge" in out and "MLSYS_OPT_CATALOG" in out


def test_catalog_add_and_user_catalog(capsys, tmp_path, monkeypatch):
    mine = tmp_path / "mine.toml"
    mine.write_text('[h100_cheap]\nbased_on = "h100_sxm"\nprice = "20000 USD"\nsource = "my quote"\n')
    code, out, _ = run(capsys, "catalog", "add", "accelerators", str(mine))
    assert code == 0 and "1 new (h100_cheap)" in out and "$20,000" in out and "989 TFLOP/s" in out
    user = tmp_path / "user.toml"
    user.write_text('[accelerators.h100_cheap]\nbased_on = "h100_sxm"\nprice = "20000 USD"\nsource = "q"\n')
    code, out, _ = run(capsys, "--catalog", str(user), "catalog", "list", "hardware")
    assert code == 0 and "h100_cheap*" in out
    monkeypatch.setenv(cli.CATALOG_ENV, str(user))
    data = run_json(capsys, "catalog", "show", "hardware", "h100_cheap")
    assert data["entry"]["price_usd"] == 20000 and data["source_file"] == str(user)
    bad = tmp_path / "bad.toml"
    bad.write_text('[accelerators.x]\nbased_on = "h100_sxm"\nprice = "20000 W"\nsource = "q"\n')
    code, _, err = run(capsys, "--catalog", str(bad), "catalog", "list")
    assert code == 2 and "price" in err and "Traceback" not in err


def test_spaces_list_and_show(capsys):
    code, out, _ = run(capsys, "spaces", "list")
    assert code == 0 and "capstone" in out and "286,720" in out and "llama3_serving" in out
    code, out, _ = run(capsys, "spaces", "show", "capstone")
    assert code == 0 and "region" in out and "quebec" in out


def test_synthesize_itl_and_days(capsys):
    code, out, _ = run(capsys, "synthesize", "--model", "llama3_70b", "--itl", "50ms")
    # seed 002 wall 22: 140 GB at 50 ms -> 2.8 TB/s (70.6e9 params x 2 B = 141.2 GB -> 2.82 TB/s)
    assert code == 0 and "2.82 TB/s" in out and "b200" in out
    data = run_json(capsys, "synthesize", "--model", "llama3_70b", "--itl", "50 ms")
    assert data["required_bandwidth_bytes_per_s"] == pytest.approx(2.824e12, rel=1e-3)
    # iron law: 6 x 70.6e9 x 15e12 / (14 d x 989e12 x 0.4) = 13,279 H100s (seed 003 exercise 3; the seed
    # rounds 6PD to 6.3e24 and prints 13,166), then the training scenario checks fleets above that bound
    data = run_json(capsys, "synthesize", "--model", "llama3_70b", "--days", "14", "--hardware", "h100_sxm",
                    "--tokens", "15e12")
    assert data["iron_law_devices"] == 13279 and data["hardware"] == "h100_sxm"
    assert data["scenario_devices"] == 0 or data["scenario_devices"] >= 13279
    code, _, err = run(capsys, "synthesize", "--model", "llama3_70b", "--itl", "50 GB")
    assert code == 2 and "expected time" in err


# --------------------------------------------------------------------------- evaluate / sensitivity

def test_evaluate_seed_003_audit(capsys, tmp_path):
    api = mlsys_opt.evaluate("training", model="llama3_70b", hardware="h100_sxm", n_accelerators=512, tp=8,
                             region="quebec", n_tokens="1.24e12 token", global_batch=2048, seq_len=2048,
                             efficiency=0.4, overlap=0.9)
    within_30_days = float(api["time_to_train_s"]) <= 30 * 86400
    code, out, err = run(capsys, "evaluate", *SEED_003, "--figure", str(tmp_path / "cascade.png"))
    # the seed's 1.24e12 tokens are "30 days at 40 % MFU"; when the modelled MFU (kernel efficiency x
    # scaling x goodput) is lower the 30-day limit is missed: exit 3, the iron-law row VIOLATED
    assert code == (0 if within_30_days else 3), err
    for text in ("Domain", "Key metric", "1 Compute", "2 Memory (capacity)", "8 Ingestion", "11 Complexity",
                 "14 Communication", "15 Fragility", "19 Checkpoint", "17 Capital", "18 Sustainability",
                 "21 Sensitivity", "22 Synthesis", "989 TFLOP/s", "cluster MTBF 98 h", "17.6 tokens/param",
                 "20 g/kWh", "binding",
                 "feasible: yes" if within_30_days else "feasible: NO, violated: limit:time_to_train_s"):
        assert text in out, text
    assert (tmp_path / "cascade.png").stat().st_size > 10_000
    data = run_json(capsys, "evaluate", *SEED_003, "--allow-infeasible")
    outs = data["outputs"]
    assert outs["n_accelerators"] == 512 and outs["dp"] == 64 and data["feasible"] is within_30_days
    for key in ("time_to_train_s", "tco_usd", "carbon_kg", "mfu", "goodput"):
        assert outs[key] == pytest.approx(float(api[key]), rel=1e-6), key
    assert 15 < outs["time_to_train_s"] / 86400 < 60          # seed: ~30 days at 40 % MFU
    wall21 = [r for r in data["audit"] if r["wall"] == "21 Sensitivity"][0]
    assert "hardware.peak_flop_per_s" in wall21["metric"]    # compute binds (seed 003 summary: Wall 1)
    # where the step goes (scenarios.training_breakdown): the scenario's step time, its parts named
    step = [r for r in data["audit"] if r["wall"] == "Step time"][0]
    assert step["metric"].startswith(f"{outs['step_time_s']:,.4g} s = GEMMs ")
    assert "DP exposed" in step["metric"] and step["status"].startswith("largest: GEMMs")


def test_evaluate_limits_exit_3_and_grid(capsys):
    code, out, _ = run(capsys, "evaluate", *SEED_003[:-2], "--no-sensitivity")
    assert code == 0 and "feasible: yes" in out and "no limit set" in out
    code, out, _ = run(capsys, "evaluate", *[a if a != "8" else "4,8" for a in SEED_003[:-2]])
    lines = out.splitlines()
    # header, rule, the two configurations, and what to change for the infeasible one (tp 4 runs out of memory)
    assert code == 0 and "feasible" in lines[0] and len(lines) == 5 and lines[4].startswith("tp 4: memory: "), out


def test_sensitivity_table_and_tornado(capsys, tmp_path):
    fig = tmp_path / "tornado.png"
    code, out, err = run(capsys, "sensitivity", *SEED_003, "--output", "time_to_train_s", "--figure", str(fig),
                         "--allow-infeasible")      # issue 16: an infeasible configuration exits 3 without it
    # same kernel as the evaluate audit above (same limits and outputs): no new compile
    assert code == 0, err
    assert "hardware.peak_flop_per_s" in out and "989 TFLOP/s" in out and "binding input: n_tokens" in out
    assert "of the system: hardware.peak_flop_per_s" in out
    assert fig.stat().st_size > 10_000
    data = run_json(capsys, "sensitivity", *SERVING, "--output", "cost_per_mtok_usd")
    rows = pd.DataFrame(data["sensitivities"])
    assert set(rows["output"]) == {"cost_per_mtok_usd"}
    assert data["binding"]["cost_per_mtok_usd"]["parameter"] in set(rows["parameter"])


SERVING = ["--model", "llama3_70b", "--hardware", "h100_sxm", "--tp", "4", "--request-rate", "10", "--batch", "16"]


# --------------------------------------------------------------------------- sweep / search

@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("spaces") / "tiny.toml"
    path.write_text(TINY)
    return path


def test_sweep_writes_front_matching_python(capsys, tmp_path, tiny_spec, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "sweep", str(tiny_spec))
    assert code == 0, err
    assert "evaluated 24 configurations" in out and "Pareto front" in out and "fastest:" in out
    assert "wrote tiny_front.csv" in out and "wrote tiny_front.png" in out
    csv = pd.read_csv(tmp_path / "tiny_front.csv")
    res = mlsys_opt.sweep(str(tiny_spec), progress=False)
    assert len(csv) == len(res.front) > 0
    for col in ("time_to_train_s", "tco_usd", "carbon_kg", "mfu", "n_accelerators"):
        np.testing.assert_allclose(csv[col].to_numpy(float), res.front[col].to_numpy(float), rtol=1e-6)
    assert list(csv["hardware"]) == [str(h) for h in res.front["hardware"]]
    assert (tmp_path / "tiny_front.png").read_bytes()[:4] == b"\x89PNG"
    # explicit outputs, parquet + svg, json on stdout
    data = run_json(capsys, "sweep", str(tiny_spec), "-o", str(tmp_path / "f.parquet"), "--figure",
                    str(tmp_path / "f.svg"))
    assert data["n_evaluated"] == 24 and len(data["front"]) == len(res.front)
    assert pd.read_parquet(tmp_path / "f.parquet").shape[0] == len(res.front)
    assert (tmp_path / "f.svg").exists()


def test_sweep_no_feasible_exit_3(capsys, tmp_path, tiny_spec, monkeypatch):
    sweep_module = sys.modules["mlsys_opt.sweeps.api"]   # the CLI's handling of an empty front, no compile
    space = mlsys_opt.load_space(str(tiny_spec))
    cols = space.labels(np.zeros((0, len(space.axes)), np.int32)).columns
    front = pd.DataFrame(columns=list(cols) + ["time_to_train_s", "tco_usd", "carbon_kg", "mfu"])
    fake = mlsys_opt.SweepResult(front, {}, 24, 0, 0.1, space, {})
    monkeypatch.setattr(sweep_module, "sweep", lambda *a, **k: fake)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "sweep", str(tiny_spec), "--no-figure")
    assert code == 3 and "no feasible configuration" in out
    code, _, _ = run(capsys, "sweep", str(tiny_spec), "--no-figure", "--allow-empty")
    assert code == 0


def test_search_random(capsys, tiny_spec):
    data = run_json(capsys, "search", str(tiny_spec), "--algorithm", "random", "--evals", "64", "--no-save")
    # issue 16: a budget that covers the space (24 configurations) enumerates it instead of sampling
    assert data["algorithm"] == "random" and data["n_evaluated"] == 24 and len(data["front"]) >= 1


def test_validate_json(capsys):
    data = run_json(capsys, "validate")
    assert len(data["rows"]) > 10 and {"id", "metric", "measured", "predicted"} <= set(data["rows"][0])


def test_sweep_outputs_say_what_produced_them_and_html_report(capsys, tmp_path, tiny_spec, monkeypatch):
    """Issue 14 items 4-5: the CSV's sidecar and the Parquet's metadata carry spec, catalog, efficiency and
    version (read back by mlsys_opt.load_result); --html writes the offline report."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "sweep", str(tiny_spec), "--no-figure", "--html", str(tmp_path / "r.html"))
    assert code == 0, err
    assert "wrote r.html" in out.replace(str(tmp_path) + "/", "") or "r.html" in out
    page = (tmp_path / "r.html").read_text()
    assert "fig-scatter" in page and "tiny" in page
    back = mlsys_opt.load_result(tmp_path / "tiny_front.csv")
    assert back.meta["spec"]["name"] == "tiny" and len(back.meta["catalog_sha256"]) == 64
    assert back.meta["n_evaluated"] == 24 and back.meta["version"] == mlsys_opt.__version__
    code, _, err = run(capsys, "sweep", str(tiny_spec), "--no-figure", "-o", str(tmp_path / "f.parquet"))
    assert code == 0, err
    assert mlsys_opt.load_result(tmp_path / "f.parquet").meta["spec"]["scenario"] == "training"


def test_an_input_at_its_ideal_floor_is_no_lever():
    """straggler_factor = 1 has elasticity +1 (the step scales with it) but can only get worse: the binding input
    of `evaluate`'s audit and `sensitivity`'s "of the system" skip it there, not at 1.2 (stragglers to remove)."""
    import pandas as pd
    from mlsys_opt.cli.commands.evaluate import _levers
    df = pd.DataFrame({"parameter": ["straggler_factor", "hardware.peak_flop_per_s", "n_tokens"],
                       "value": [1.0, 989e12, 1e12], "elasticity": [1.0, -0.9, 1.0]})
    df.attrs["constraints"] = "kept"
    assert list(_levers(df)["parameter"]) == ["hardware.peak_flop_per_s"] and _levers(df).attrs["constraints"] == "kept"
    df.loc[0, "value"] = 1.2
    assert list(_levers(df)["parameter"]) == ["straggler_factor", "hardware.peak_flop_per_s"]
