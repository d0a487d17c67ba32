"""Start-up: the light commands never import JAX (issue 15, "fast start").

`mlsys-opt --help`, an argument error, `catalog list|show` and `spaces list|show` run in one
fresh interpreter (one subprocess, ~1 s), each through the CLI's `main`; afterwards neither
JAX nor the other heavy optional layers (optax, pymoo, matplotlib) may be in sys.modules.
The wall times are measured by benchmarks/startup.py (a table, not a timed test).
Also: the sweep's default progress display is a tqdm bar, shown only to someone watching.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LIGHT = {
    "--help": ["--help"],
    "argument error": ["sweep"],
    "catalog list": ["catalog", "list"],
    "catalog show": ["catalog", "show", "hardware", "h100_sxm"],
    "spaces list": ["spaces", "list"],
    "spaces list --json": ["spaces", "list", "--json"],
    "spaces show": ["spaces", "show", "capstone"],
}
HEAVY = ("jax", "jaxlib", "optax", "pymoo", "matplotlib")

CHILD = """
import contextlib, io, json, sys
from mlsys_opt.cli.app import main
heavy = {heavy!r}
report = {{}}
for name, argv in json.loads(sys.argv[1]).items():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    report[name] = {{"code": code, "stdout": out.getvalue()[:20000], "stderr": err.getvalue()[:500],
                    "loaded": [m for m in heavy if m in sys.modules]}}
print(json.dumps(report))
"""


def test_light_commands_do_not_import_jax(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CHILD.format(heavy=HEAVY), json.dumps(LIGHT)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    expected_codes = {"argument error": 2}
    for name, argv in LIGHT.items():
        r = report[name]
        assert r["code"] == expected_codes.get(name, 0), (name, r)
        assert r["loaded"] == [], f"`mlsys-opt {' '.join(argv)}` imported {r['loaded']}"
    # the commands did their work (not an early exit that would pass the check trivially)
    assert "capstone" in report["spaces list"]["stdout"] and "286,720" in report["spaces list"]["stdout"]
    spaces = json.loads(report["spaces list --json"]["stdout"])
    assert {s["name"] for s in spaces} >= {"capstone", "llama3_serving"}
    assert all(not str(s["configurations"]).startswith("invalid") for s in spaces), spaces
    assert "h100_sxm" in report["catalog list"]["stdout"]
    assert "tp" in report["spaces show"]["stdout"]
    assert "usage: mlsys-opt" in report["--help"]["stdout"]


def test_default_progress_is_a_tqdm_bar_only_when_someone_watches(monkeypatch):
    """progress=None: tqdm (tqdm.auto) on a terminal or in a Jupyter kernel, nothing in a pipe or a test."""
    import io

    from tqdm import tqdm as std_tqdm

    from mlsys_opt.sweeps import engine

    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert engine.progress_bar(100) is None
    monkeypatch.setattr(sys, "stderr", Tty())
    bar = engine.progress_bar(100)
    assert isinstance(bar, std_tqdm)
    bar.update(100)
    bar.close()
    assert "100/100" in sys.stderr.getvalue()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setitem(sys.modules, "ipykernel", object())       # a notebook without a terminal
    bar = engine.progress_bar(10)
    assert isinstance(bar, std_tqdm)
    bar.close()
