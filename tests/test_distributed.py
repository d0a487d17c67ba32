"""Multi-process sweeps (sweeps.distributed) on localhost: 2 processes x 2 CPU devices each.

Every process is a fresh Python (tests/_distributed_driver.py) started with
subprocess and a bounded timeout; they meet through jax.distributed on a free
port.  Checked: the front, the best lists, the feasible count and the
infeasibility reasons of a 2-process sweep equal a 1-process sweep, for a
training and a serving space; a killed process makes the other exit non-zero
within the heartbeat timeout; a different spec, a port in use, an unreachable
coordinator and a checkpoint of another process count are one-line errors
(exit 2) on every process.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

DRIVER = str(Path(__file__).with_name("_distributed_driver.py"))
ROOT = str(Path(__file__).resolve().parents[1])
SPACES = "capstone,llama3_serving"
CHUNK = "4096"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ, JAX_PLATFORMS="cpu", MLSYS_OPT_HEARTBEAT_S="2", MLSYS_OPT_INIT_TIMEOUT_S="20",
             MLSYS_OPT_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
             PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    e.pop("XLA_FLAGS", None)
    return e


def _start(env, pid, nproc, port, spaces, *extra):
    return subprocess.Popen([sys.executable, DRIVER, str(pid), str(nproc), str(port), spaces, CHUNK, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _finish(procs, timeout=150):
    out = []
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            o, e = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a distributed sweep process hung")
        out.append((p.returncode, o, e))
    return out


def _results(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def single(env):
    (rc, out, err), = _finish([_start(env, 0, 0, 0, SPACES)])
    assert rc == 0, err[-2000:]
    return _results(out)


def test_two_processes_equal_one_process(env, single, tmp_path):
    """Same front, best lists, feasible count and reasons; process 0 writes one checkpoint bundle,
    which a job of another process count refuses (exit 2)."""
    port = _free_port()
    ckpt = str(tmp_path / "s.ckpt.npz")
    runs = _finish([_start(env, i, 2, port, SPACES, ckpt) for i in range(2)])
    for rc, out, err in runs:
        assert rc == 0, err[-2000:]
        got = _results(out)
        assert [g["space"] for g in got] == ["capstone", "llama3_serving"]
        for g, ref in zip(got, single):
            assert g["n_feasible"] > 0 and len(g["front"]) > 0
            assert g == ref          # front rows, best lists, feasible count, reasons: all equal
    assert os.path.exists(ckpt)      # the serving sweep's bundle (the last one written)
    (rc, out, err), = _finish([_start(env, 0, 1, _free_port(), "llama3_serving", ckpt, "--resume")])
    assert rc == 2, err[-2000:]
    assert "written by a sweep of 2 processes" in err and "Traceback" not in err


def test_killed_process_stops_the_other(env):
    port = _free_port()
    waiter = _start(env, 1, 2, port, "llama3_serving", "--wait")
    sweeper = _start(env, 0, 2, port, "llama3_serving")
    line = waiter.stdout.readline()                 # joined the job
    assert line.strip() == "joined", waiter.stderr.read()[-2000:]
    waiter.kill()
    t0 = time.monotonic()
    (rc, _, err), = _finish([sweeper], timeout=60)
    waiter.wait()
    assert rc != 0 and time.monotonic() - t0 < 45
    assert "process 1 of 2" in err and "heartbeat" in err


def test_different_spec_is_an_error_on_every_process(env):
    port = _free_port()
    runs = _finish([_start(env, 0, 2, port, "llama3_serving"), _start(env, 1, 2, port, "capstone")])
    for rc, _, err in runs:
        assert rc == 2, err[-2000:]
        assert "different problem" in err and "Traceback" not in err


def test_port_in_use_and_unreachable_coordinator(env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        (rc, _, err), = _finish([_start(env, 0, 2, busy, "llama3_serving")], timeout=60)
    assert rc == 2 and "already in use" in err and "Traceback" not in err
    quick = dict(env, MLSYS_OPT_INIT_TIMEOUT_S="3")
    t0 = time.monotonic()
    (rc, _, err), = _finish([_start(quick, 1, 2, _free_port(), "llama3_serving")], timeout=60)
    assert rc == 2 and "could not join" in err and "Traceback" not in err, err[-2000:]
    assert time.monotonic() - t0 < 40


SHARDED_SEARCH = r'''
import json, os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, numpy as np
from mlsys_opt.space.spec import load_space
from mlsys_opt.search.pymoo_problem import batch_evaluator
from mlsys_opt.sweeps import sharding
space = load_space("llama3_serving")
rng = np.random.default_rng(0)
digits = np.column_stack([rng.integers(0, r, 256) for r in space.radices]).astype(np.int32)
evaluate = batch_evaluator(space, batch_size=256)
two = evaluate(digits)
n_dev = len(sharding.shard_rows(digits).sharding.device_set)
sharding.shard_rows = lambda x, devices=None: jax.device_put(np.asarray(x), jax.devices()[0])
one = evaluate(digits)
print(json.dumps({"devices": n_dev, "equal": all(np.array_equal(a, b) for a, b in zip(one, two)),
                  "feasible": int(np.sum(np.all(two[1] <= 0, axis=1)))}))
'''


def test_search_population_sharded_over_devices(env):
    """The pymoo evaluator splits a population over 2 devices and returns what 1 device returns."""
    out = subprocess.run([sys.executable, "-c", SHARDED_SEARCH], check=False, capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["devices"] == 2 and r["equal"] and r["feasible"] > 0


def test_cli_flag_errors_are_one_line(capsys):
    """Bad --distributed flags: exit 2 with one line, before JAX or the spec is touched."""
    from mlsys_opt.cli.app import main
    cases = [(["--coordinator", "127.0.0.1:1"], "need(s) --distributed"),
             (["--distributed", "--coordinator", "127.0.0.1:1"], "go together"),
             (["--distributed", "--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"],
              "HOST:PORT"),
             (["--distributed", "--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "5"],
              "must be in [0, 1]")]
    for flags, words in cases:
        assert main(["sweep", "capstone", "--no-save", *flags]) == 2, flags
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
