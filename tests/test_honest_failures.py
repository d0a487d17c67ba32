"""Issue 18 item 2: honest failures.

- A bug (an exception that is not MlsysOptError) inside a scenario reaches the
  caller unchanged, and the command line prints its traceback, says it is a
  bug, and exits 1 -- not 2, which would blame the user's input.
- Configurations whose objectives or constraints come out NaN or infinite are
  counted under the reason code ``non_finite``; with it, every configuration of
  the space is either feasible or has exactly one reason, and the CLI shows it.
"""
from __future__ import annotations

import jax.numpy as jnp
import pytest

import mlsys_opt as mo
from mlsys_opt import scenarios
from mlsys_opt.cli import app
from mlsys_opt.sweeps.api import NON_FINITE, constraint_names

SPEC = """\
name = "honest"
scenario = "training"

[fixed]
model = "llama3_70b"
n_tokens = "1e12 token"
global_batch = 2048

[axes]
hardware = ["h100_sxm", "b200"]
n_accelerators = [256, 512, 1024]
tp = [4, 8]

[objectives]
minimize = ["time_to_train_s", "tco_usd"]
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "honest.toml"
    path.write_text(SPEC)
    return path


def _broken(*args, **kwargs):
    raise TypeError("deliberately broken scenario")


def test_a_bug_in_a_scenario_reaches_the_caller_unchanged(spec, monkeypatch):
    monkeypatch.setitem(scenarios.SCENARIO_FNS, "training", _broken)
    with pytest.raises(TypeError, match="deliberately broken"):
        mo.sweep(mo.load_space(spec), progress=False)


def test_the_cli_prints_the_traceback_of_a_bug_and_exits_1(spec, monkeypatch, capsys):
    monkeypatch.setitem(scenarios.SCENARIO_FNS, "training", _broken)
    rc = app.console_main(["sweep", str(spec), "--no-save"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback (most recent call last)" in err and "TypeError: deliberately broken scenario" in err
    assert "this is a bug" in err


def _nan_where_tp8(fn):
    """The training scenario with time_to_train_s NaN wherever tp == 8 (on purpose)."""
    def wrapped(p, tables, eff, **options):
        outs, cons = fn(p, tables, eff, **options)
        return outs._replace(time_to_train_s=jnp.where(p.tp == 8, jnp.nan, outs.time_to_train_s)), cons
    return wrapped


def test_nan_results_are_counted_as_non_finite_and_shown(spec, monkeypatch, capsys):
    monkeypatch.setitem(scenarios.SCENARIO_FNS, "training", _nan_where_tp8(scenarios.SCENARIO_FNS["training"]))
    space = mo.load_space(spec)
    res = mo.sweep(space, progress=False)
    assert set(res.infeasible_by) == set(constraint_names(space)) | {NON_FINITE}
    assert res.infeasible_by[NON_FINITE] == space.size // 2            # every tp = 8 configuration
    assert res.n_feasible + sum(res.infeasible_by.values()) == res.n_evaluated == space.size
    assert res.front["tp"].tolist() == [4] * len(res.front)             # NaN rows never reach the front

    rc = app.console_main(["sweep", str(spec), "--no-save"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert NON_FINITE in out + err
