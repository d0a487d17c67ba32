"""`--json` echoes the configuration as given, not as the float32 evaluation rounded it (issue 14)."""
from __future__ import annotations

import json

from mlsys_opt.cli import app as cli


def test_evaluate_json_keeps_the_given_values(capsys):
    code = cli.main(["evaluate", "--model", "llama3_8b", "--hardware", "h100_sxm", "--n-accelerators", "64",
                     "--tokens", "1.24e12", "--no-sensitivity", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code in (0, 3)
    cfg = out["configuration"]
    assert cfg["n_tokens"] == 1.24e12                      # float32 would give 1239999971328.0
    assert cfg["maintenance_frac_per_year"] == 0.05
    assert isinstance(cfg["n_accelerators"], int) and cfg["n_accelerators"] == 64
    assert isinstance(out["outputs"]["time_to_train_s"], float)   # numbers, units in the keys


def test_search_progress_bar_counts_evaluations(capsys):
    """Issue 14 item 3: search shows a tqdm bar of evaluations when asked (progress=True)."""
    from mlsys_opt.search.pymoo_problem import run_search
    res = run_search("capstone", evals=400, pop_size=40, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "search" in err and "eval" in err and res.n_evaluated >= 400
    run_search("capstone", evals=200, pop_size=40, seed=0, progress=False)
    assert "search" not in capsys.readouterr().err


def test_search_progress_must_be_a_switch():
    import pytest

    from mlsys_opt.errors import MlsysOptError
    from mlsys_opt.search.pymoo_problem import run_search
    with pytest.raises(MlsysOptError, match="progress must be None .* got 'yes'"):
        run_search("capstone", evals=100, progress="yes")
