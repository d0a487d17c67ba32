"""Fuzzing the command line (issue 16): argument vectors and catalog files.

Two targets, run in this interpreter through ``mlsys_opt.cli.app.main`` (as
tests/test_robustness.py does), with bounded, derandomized hypothesis examples:

* argument vectors drawn from a grammar of every command's flags, each given a
  valid or an invalid value (typos, negative-looking values, NaN, huge numbers,
  expressions, odd paths: a folder, /dev/full, a non-UTF-8 or deeply nested file);
* catalog files: mutations of a valid user entry (fields dropped, renamed, given
  values of the wrong type, unit or encoding; nesting; random bytes), read by
  ``catalog add`` and ``--catalog``.

The only acceptable outcomes: success, or our own error -- exit 2 or 3 with one
line ``mlsys-opt: error: ...`` on stderr (argparse's usage errors included) and no
traceback.  The expensive work behind a valid command line (the sweep, the search,
the compiled evaluation, the fit) is replaced by a stub that raises ``_Reached``, which also
counts as success: the point is that everything a person can type is checked
before the work starts.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys_opt.cli import app


class _Reached(Exception):
    """The command got past every check to the expensive work (stubbed out here)."""


def _reached(*a, **k):
    raise _Reached()


DEEP = "x = " + "[" * 600 + "]" * 600 + "\n"
GOOD_ENTRY = {"display_name": '"My chip"', "vendor": '"Acme"', "segment": '"datacenter"', "year": "2025",
              "source": '"a quote"', "mem_capacity": '"80 GB"', "mem_bw": '"3 TB/s"', "tdp": '"700 W"',
              "price": '"20000 USD"'}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_cli")
    (d / "small.toml").write_text(
        'name = "small"\nscenario = "training"\n[fixed]\nmodel = "llama3_8b"\nn_tokens = "1e9 token"\n'
        '[axes]\ntp = [1, 2]\n[objectives]\nminimize = ["tco_usd"]\n')
    (d / "deep.toml").write_text(DEEP)
    (d / "latin.toml").write_bytes('[accelerators.h100_sxm]\nsource = "devis reçu"\n'.encode("latin-1"))
    (d / "bom.toml").write_bytes(b"\xef\xbb\xbf" + b'[accelerators.h100_sxm]\nprice = "1000 USD"\n')
    (d / "bin.json").write_bytes(bytes(range(256)))
    (d / "folder").mkdir()
    os.symlink("/dev/full", d / "full.csv")
    return d


PATHS = ["small.toml", "deep.toml", "latin.toml", "bom.toml", "bin.json", "folder", "full.csv", "nope.toml",
         "/proc/x.csv", "/nonexistent/x.csv", "out.csv", "out.png", "out.txt", "capstone", "llama3_serving", ""]
NUMBERS = ["8", "0", "-1", "-5", "1e30", "nan", "inf", "-inf", "1.5", "abc", "9**9**9", "2 * 3", "1_000",
           "1e999999", "0x10", "", " ", "-5ms", "50ms", "50 ms", "10 /s", "1e12", "15e12 token", "30 day",
           "1,000", "٣", "1e-30"]
NAMES = ["h100_sxm", "h1000", "llama3_70b", "llama3_7b", "training", "trianing", "quebec", "fp8", "bf16",
         "nsga2", "nsga9", "tco_usd", "nosuch", "hardware,region", "../x", "", "-x", "h100_sxm,b200"]
KV = ["tp=8", "tp=3", "tp", "=", "hardware=b200", "nosuch=1", "max_time=30 day", "max_time=-1 s",
      "n_tokens=9**9**9", "budget=2e7USD", "tp=-5", "region=quebec"]

VALUE_FLAGS = {
    "sweep": {"-o": PATHS, "--out-dir": PATHS, "--figure": PATHS, "--color": NAMES, "--top": NUMBERS,
              "--columns": NAMES, "--calibration": PATHS, "--chunk-size": NUMBERS, "--devices": NUMBERS,
              "--checkpoint": PATHS, "--max-hours": NUMBERS},
    "search": {"-o": PATHS, "--figure": PATHS, "--columns": NAMES, "--algorithm": NAMES, "--evals": NUMBERS,
               "--pop": NUMBERS, "--seed": NUMBERS, "--max-hours": NUMBERS},
    "evaluate": {"--model": NAMES, "--hardware": NAMES, "--tp": NUMBERS, "--pp": NUMBERS, "--tokens": NUMBERS,
                 "--request-rate": NUMBERS, "--batch": NUMBERS, "--region": NAMES, "--precision": NAMES,
                 "--efficiency": NUMBERS, "--n-accelerators": NUMBERS, "--space": PATHS, "--figure": PATHS,
                 "--scenario": NAMES, "--calibration": PATHS, "--duration": NUMBERS},
    "sensitivity": {"--model": NAMES, "--tp": NUMBERS, "--tokens": NUMBERS, "--output": NAMES, "--top": NUMBERS,
                    "--figure": PATHS, "--space": PATHS, "--request-rate": NUMBERS},
    "synthesize": {"--model": NAMES, "--itl": NUMBERS, "--ttft": NUMBERS, "--days": NUMBERS, "--hardware": NAMES,
                   "--tokens": NUMBERS, "--mfu": NUMBERS, "--precision": NAMES, "--batch": NUMBERS,
                   "--context": NUMBERS, "--prompt-tokens": NUMBERS},
    "validate": {"--calibration": PATHS},
}
SWITCHES = {"sweep": ["--no-save", "--no-figure", "--resume", "--allow-empty", "--force", "-q", "--json"],
            "search": ["--no-save", "--no-figure", "--allow-empty", "--force", "-q", "--json"],
            "evaluate": ["--no-sensitivity", "--allow-infeasible", "--json"],
            "sensitivity": ["--json", "--allow-infeasible"], "synthesize": ["--json"], "validate": ["--loo", "--json"]}
POSITIONAL = {"sweep": PATHS, "search": PATHS}
OTHER = [["catalog", "list"], ["catalog", "list", "hardware"], ["catalog", "list", "gpus"],
         ["catalog", "show", "hardware", "h1000"], ["catalog", "show", "models", "llama3_70b"],
         ["catalog", "add", "accelerators"], ["catalog", "add", "nosuch"], ["spaces", "list"], ["spaces", "show"],
         ["spaces", "list", "--dir"], ["spaces", "show", "capstone"], ["spaces", "show", "capstone2"], ["sweeep"], []]


@st.composite
def argvs(draw, base: Path):
    def path(v: str) -> str:
        return str(base / v) if v and not v.startswith("/") and v not in ("capstone", "llama3_serving") else v

    if draw(st.integers(0, 5)) == 0:                 # the catalog / spaces commands
        argv = list(draw(st.sampled_from(OTHER)))
        if argv[-1:] in (["accelerators"], ["nosuch"], ["--dir"]):
            argv.append(path(draw(st.sampled_from(PATHS))))
    else:
        cmd = draw(st.sampled_from(sorted(VALUE_FLAGS)))
        argv = [cmd]
        if cmd in POSITIONAL:
            argv.append(path(draw(st.sampled_from(POSITIONAL[cmd]))))
        flags = VALUE_FLAGS[cmd]
        for flag in draw(st.lists(st.sampled_from(sorted(flags)), max_size=5, unique=True)):
            value = draw(st.sampled_from(flags[flag]))
            argv += [flag, path(value) if flags[flag] is PATHS else value]
        argv += draw(st.lists(st.sampled_from(SWITCHES[cmd]), max_size=2, unique=True))
        if cmd in ("evaluate", "sensitivity", "synthesize") and draw(st.booleans()):
            argv += [draw(st.sampled_from(["--set", "--limit"]))] + draw(st.lists(st.sampled_from(KV), min_size=1,
                                                                                    max_size=3))
        if cmd == "synthesize" and draw(st.booleans()):
            argv += ["--model", "llama3_70b", draw(st.sampled_from(["--itl", "--ttft", "--days"])),
                     draw(st.sampled_from(NUMBERS))]
    if draw(st.integers(0, 7)) == 0:
        argv.insert(0, draw(st.sampled_from(["--catalog", "--chekpoint", "--json", "-q"])))
        if argv[0] == "--catalog":
            argv.insert(1, path(draw(st.sampled_from(PATHS))))
    return argv


def run(argv) -> tuple[object, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = app.main(argv)
        except _Reached:
            rc = "reached"
    return rc, out.getvalue(), err.getvalue()


def check(argv, rc, out, err) -> None:
    assert "Traceback" not in out + err, (argv, err)
    assert rc in (0, 2, 3, "reached"), (argv, rc, err[-2000:])
    if rc == 2:
        lines = [s for s in err.splitlines() if s.strip() and not s.startswith("size:")]
        assert lines and lines[0].startswith("mlsys-opt"), (argv, err)   # a spec's mistakes: one line each


@pytest.fixture(scope="module")
def stubs():
    """Replace the expensive work behind valid command lines by _Reached (module-wide)."""
    import mlsys_opt.calibration as calibration
    import mlsys_opt.search.pymoo_problem as pp
    import mlsys_opt.search.synthesis as synthesis
    import mlsys_opt.sweeps.api as api
    sens = importlib.import_module("mlsys_opt.point.sensitivity")    # the package re-exports the function
    mp = pytest.MonkeyPatch()
    evaluation = importlib.import_module("mlsys_opt.point.evaluation")
    for mod, name in ((api, "sweep"), (pp, "run_search"), (evaluation, "_eval_fn"), (sens, "_kernel"),
                      (synthesis, "min_devices_for_time"), (calibration, "validate"), (calibration, "calibrate")):
        mp.setattr(mod, name, _reached)
    mp.delenv("MLSYS_OPT_CATALOG", raising=False)
    yield
    mp.undo()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_cli_argument_vectors(files, stubs, data):
    argv = data.draw(argvs(files))
    check(argv, *run(argv))


@pytest.mark.parametrize("argv", [
    ["synthesize", "--model", "llama3_70b", "--itl", "-5ms"], ["synthesize", "--model", "llama3_70b", "--days", "1e30"],
    ["sweep", "small.toml", "--top", "-1"], ["evaluate", "--model", "llama3_70b", "--tp", "-8", "--tokens", "1e9"],
    ["search", "small.toml", "--evals", "10", "--pop", "100"], ["spaces", "list", "--dir", "/nonexistent"],
    ["--catalog", "deep.toml", "catalog", "list"], ["--catalog", "latin.toml", "catalog", "list"],
    ["validate", "--calibration", "bin.json"], ["sweep", "deep.toml"], ["sweep", "small.toml", "-o", "folder"],
    ["sweep", "small.toml", "--columns", "nosuch"], ["sweep", "small.toml", "--max-hours", "-1"],
])
def test_known_bad_command_lines_exit_2(files, stubs, argv, monkeypatch):
    monkeypatch.chdir(files)
    rc, out, err = run(argv)
    check(argv, rc, out, err)
    assert rc == 2, (argv, rc, err)


# --------------------------------------------------------------------------- catalog files

FIELD_VALUES = ['"80 GB"', '"3 TB/s"', '"3 TB"', "80", "-1", "nan", "inf", '"nan GB"', '"9**9**9 GB"', '""',
                "true", "[1, 2]", "{a = 1}", '"datacenter"', '"tiny"', '"x"', "2025", "1e400", '"1e400 W"',
                '"devis reçu"', "[" * 40 + "]" * 40, '"h100_sxm"', '"\\u0000"']
FIELD_NAMES = sorted(GOOD_ENTRY) + ["based_on", "peak", "aliases", "notes", "nosuch", "mem-bw", "tdp "]


@st.composite
def catalog_files(draw) -> bytes:
    kind = draw(st.sampled_from(["accelerators", "accelerators", "models", "regions", "fabrics", "gpus"]))
    name = draw(st.sampled_from(["my_chip", "h100_sxm", "My Chip", "a.b", "x" * 80, "ü"]))
    entry = dict(GOOD_ENTRY)
    for _ in range(draw(st.integers(0, 4))):
        how = draw(st.sampled_from(["drop", "set", "add"]))
        key = draw(st.sampled_from(sorted(entry) if how == "drop" and entry else FIELD_NAMES))
        if how == "drop":
            entry.pop(key, None)
        else:
            entry[key] = draw(st.sampled_from(FIELD_VALUES))
    text = f"[{kind}.{name if all(c.isalnum() or c == '_' for c in name) else repr(name)}]\n"
    text += "".join(f"{k if k.replace('_', '').isalnum() else repr(k)} = {v}\n" for k, v in entry.items())
    raw = text.encode("utf-8")
    how = draw(st.sampled_from(["as is", "as is", "latin-1", "bom", "cut", "junk"]))
    if how == "latin-1":
        raw = text.encode("latin-1", errors="replace")
    elif how == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif how == "cut":
        raw = raw[:draw(st.integers(0, len(raw)))]
    elif how == "junk":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=16)) + raw[at:]
    return raw


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(raw=catalog_files(), door=st.sampled_from(["add", "flag"]))
def test_catalog_files(files, stubs, raw, door):
    path = files / "fuzz_catalog.toml"
    path.write_bytes(raw)
    argv = (["catalog", "add", "accelerators", str(path)] if door == "add"
            else ["--catalog", str(path), "catalog", "list", "hardware"])
    rc, out, err = run(argv)
    check(argv, rc, out, err)
    assert rc in (0, 2), (argv, rc, err)
