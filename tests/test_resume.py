"""Issue 7 item 3: sweeps survive interruption.

* A sweep (Python API) interrupted by SIGINT after some chunks leaves a loadable checkpoint;
  started again with ``resume=True`` it continues from the last completed chunk and produces the
  same front and counts as an uninterrupted run.
* The same through the CLI: ``mlsys-opt sweep SPACE --checkpoint X`` + SIGINT exits 130 with one
  line and no traceback; ``--resume`` completes to the same front.
* Atomic writes: a process SIGKILLed at random moments (checkpoint written after every chunk) always
  leaves a loadable checkpoint; one killed in the MIDDLE of writing a checkpoint (np.savez slowed
  down in the child) leaves the previous checkpoint intact.  Every resume ends at the same front.
* A checkpoint that is empty, truncated, foreign or of another space is refused with MlsysOptError.

Everything that sweeps runs in subprocesses (x64 off, as in production) sharing one persistent XLA
compile cache, so each program is compiled once per test session.
"""
from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt.errors import MlsysOptError
from mlsys_opt.space.spec import load_space
from mlsys_opt.sweeps.api import sweep

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"name": "resume_space", "scenario": "training",
         "fixed": {"model": "llama3_8b", "n_tokens": "1e11 token", "global_batch": 1024},
         "axes": {"hardware": ["h100_sxm", "a100_80gb", "b200", "mi300x"], "tp": [1, 2, 4, 8], "pp": [1, 2, 4],
                  "n_accelerators": {"pow2": [8, 512]}, "microbatches": [4, 8, 16, 32],
                  "region": ["quebec", "poland", "us_avg"], "zero_stage": [0, 1, 2, 3],
                  "recompute": ["selective", "full"]},
         "objectives": {"minimize": ["time_to_train_s", "tco_usd", "carbon_kg"]}}
N = 32256                     # configurations of SPACE
CHUNK = 64                    # 504 chunks; the engine checkpoints every 64 chunks

SWEEP_CHILD = textwrap.dedent("""
    import json, signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even if started with SIGINT ignored
    from mlsys_opt.space import load_space
    from mlsys_opt.sweeps.api import sweep
    mode, ckpt, chunk, space = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    sp = load_space(space)
    def progress(done, total):
        print("P", done, total, flush=True)
        if mode == "interrupt":        # leave the parent time to interrupt: slow down once a fifth is done,
            time.sleep(0.004 if 5 * done < total else 0.05)   # so a fast machine cannot finish first
    def show(tag, res):
        print(tag, json.dumps({"n_evaluated": res.n_evaluated, "n_feasible": res.n_feasible,
                               "front": res.front.astype(str).values.tolist()}), flush=True)
    try:
        res = sweep(sp, chunk_size=chunk, progress=progress, checkpoint_path=ckpt, resume=(mode == "resume"))
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
        sys.exit(130)
    show("RESULT", res)
    if mode == "resume":           # then an uninterrupted run of the same space, for reference
        show("REFERENCE", sweep(sp, chunk_size=chunk, progress=False, checkpoint_path=ckpt + ".ref.npz"))
""")

ENGINE_CHILD = textwrap.dedent("""
    import io, json, sys, time
    import numpy as np
    import jax.numpy as jnp
    from mlsys_opt.sweeps import engine as sweep_engine
    ckpt, chunk, resume, slow_at = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
    ckpt = None if ckpt == "-" else ckpt
    RADICES = (64, 64, 16)

    def chunk_fn(d):
        x, y, z = (d[:, k].astype(jnp.float32) / (r - 1) for k, r in enumerate(RADICES))
        F = jnp.stack([x + 0.05 * y + 0.01 * z, (1 - x) ** 2 + 0.05 * y * y + 0.01 * z], -1)
        G = (x + y - 1.8)[:, None]
        return F, G, jnp.stack([x, y, z, x * y], -1)

    if slow_at:                          # the slow_at-th save stops half-way through writing the file
        real, calls = np.savez, [0]
        def slow_savez(fh, **arrays):
            calls[0] += 1
            if calls[0] != slow_at:
                return real(fh, **arrays)
            buf = io.BytesIO()
            real(buf, **arrays)
            data = buf.getvalue()
            fh.write(data[: len(data) // 2])
            fh.flush()
            print("IN_SAVE", flush=True)
            time.sleep(120)
        sweep_engine.np.savez = slow_savez

    def progress(done, total):
        print("P", done, total, flush=True)
        time.sleep(0.002)
    def run(path, resume, progress):
        return sweep_engine.stream(RADICES, chunk_fn, n_obj=2, n_constr=1, n_aux=4, chunk_size=chunk, top_k=4,
                                   progress=progress, checkpoint_path=path, resume=resume, checkpoint_every=1)
    def show(tag, res):
        print(tag, json.dumps({"n_feasible": res.n_feasible, "digits": res.front.digits.tolist(),
                               "F": res.front.F.tolist()}), flush=True)
    show("RESULT", run(ckpt, resume, progress))
    show("REFERENCE", run(None, False, False))     # uninterrupted, same compiled step
""")
ENGINE_N = 64 * 64 * 16


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Subprocess environment: CPU, x64 off, one persistent compile cache for the whole session."""
    cache = tmp_path_factory.getbasetemp() / "robustness_jax_cache"
    cache.mkdir(exist_ok=True)
    scripts = tmp_path_factory.mktemp("children")
    (scripts / "sweep_child.py").write_text(SWEEP_CHILD)
    (scripts / "engine_child.py").write_text(ENGINE_CHILD)
    e = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "XLA_FLAGS")}
    e.update(JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             MLSYS_OPT_CACHE_DIR=str(cache), MLSYS_OPT_CATALOG="", PYTHONUNBUFFERED="1")
    return {"env": e, "scripts": scripts}


class Child:
    """A subprocess whose stdout lines are read by a thread (never blocks the test forever)."""

    def __init__(self, cmd, env, cwd=ROOT):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     cwd=cwd)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        self.err: list[str] = []                 # stderr is drained too: a full pipe would block the child
        self.threads = [threading.Thread(target=self._pump, daemon=True),
                        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True)]
        for t in self.threads:
            t.start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, predicate, timeout=240.0):
        """The first stdout line satisfying predicate (None when the child ended first)."""
        end = time.time() + timeout
        while time.time() < end:
            try:
                line = self.lines.get(timeout=max(0.01, end - time.time()))
            except queue.Empty:
                break
            if line is None:
                return None
            self.seen.append(line)
            if predicate(line):
                return line
        self.kill()
        pytest.fail(f"child timed out; last lines: {self.seen[-5:]}")

    def finish(self, timeout=240.0):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("child did not finish")
        while (line := self.lines.get()) is not None:
            self.seen.append(line)
        self.threads[1].join(timeout=10)
        return self.proc.returncode, "".join(self.err)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def result(self, tag: str = "RESULT") -> dict:
        line = next((s for s in self.seen if s.startswith(tag + " ")), None)
        assert line is not None, f"no {tag}; stdout tail: {self.seen[-5:]}"
        return json.loads(line[len(tag) + 1:])


def _done(line: str) -> int:
    return int(line.split()[1]) if line.startswith("P ") else -1


def load_checkpoint(path: Path) -> dict:
    """The checkpoint as a dict of arrays; fails the test if it is not a complete, loadable checkpoint."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    for key in ("config", "fingerprint", "next_index", "n_feasible", "front_F", "front_digits"):
        assert key in data, f"checkpoint {path} lacks {key!r}"
    json.loads(str(data["config"]))
    data["next"] = int(str(data["next_index"]))
    data["feasible"] = int(str(data["n_feasible"]))
    assert len(data["front_F"]) == len(data["front_digits"])
    return data


def _front_key(ck: dict) -> list:
    order = np.lexsort(ck["front_digits"].T[::-1])
    return ck["front_digits"][order].tolist()


# --------------------------------------------------------------------------- sweep(): SIGINT and resume

@pytest.fixture(scope="module")
def interrupted(env, tmp_path_factory):
    """SPACE swept in a child, SIGINTed after a fifth of the chunks, then resumed in a second child
    (which afterwards runs the same sweep uninterrupted, for reference)."""
    path = tmp_path_factory.mktemp("interrupted") / "sweep.npz"
    child = Child([sys.executable, str(env["scripts"] / "sweep_child.py"), "interrupt", str(path), str(CHUNK),
                   json.dumps(SPACE)], env["env"])
    assert child.wait_for(lambda s: _done(s) >= N // 5) is not None, "the sweep ended before it could be interrupted"
    child.proc.send_signal(signal.SIGINT)
    rc, err = child.finish()
    assert rc == 130 and "INTERRUPTED" in child.seen, (rc, child.seen[-3:], err[-2000:])
    at_interrupt = load_checkpoint(path)
    last = max(_done(s) for s in child.seen)

    resumed = Child([sys.executable, str(env["scripts"] / "sweep_child.py"), "resume", str(path), str(CHUNK),
                     json.dumps(SPACE)], env["env"])
    rc, err = resumed.finish()
    assert rc == 0, err[-2000:]
    ref_path = Path(str(path) + ".ref.npz")
    return dict(at_interrupt=at_interrupt, last_progress=last, resumed=resumed, final=load_checkpoint(path),
                ref=load_checkpoint(ref_path), ref_path=ref_path)


@pytest.fixture(scope="module")
def reference(interrupted):
    """(result, final checkpoint, its path) of an uninterrupted sweep of SPACE."""
    return interrupted["resumed"].result("REFERENCE"), interrupted["ref"], interrupted["ref_path"]


def test_sigint_then_resume_gives_the_uninterrupted_front(interrupted, reference):
    ref_result, ref_ckpt, _ = reference
    assert ref_result["n_evaluated"] == N and ref_ckpt["next"] == N and len(ref_result["front"]) > 3
    ck = interrupted["at_interrupt"]
    assert 0 < ck["next"] < N and ck["next"] % CHUNK == 0, ck["next"]
    # the chunk in flight when the signal came may be included (its reduction had been dispatched)
    assert N // 5 <= ck["next"] <= interrupted["last_progress"] + CHUNK, (ck["next"], interrupted["last_progress"])
    resumed = interrupted["resumed"]
    first = min(_done(s) for s in resumed.seen if s.startswith("P "))
    assert first == ck["next"] + CHUNK, f"resume restarted at {first - CHUNK}, not at {ck['next']}"
    assert resumed.result() == ref_result
    final = interrupted["final"]
    assert final["next"] == N and final["feasible"] == ref_ckpt["feasible"]
    assert _front_key(final) == _front_key(ref_ckpt)
    np.testing.assert_array_equal(np.sort(final["front_F"], axis=0), np.sort(ref_ckpt["front_F"], axis=0))


def test_resume_of_a_finished_checkpoint_returns_the_same_front(reference, tmp_path):
    """No work left: the saved front comes back without evaluating anything (and without compiling)."""
    ref_result, ref_ckpt, ref_path = reference
    path = tmp_path / "done.npz"
    path.write_bytes(ref_path.read_bytes())
    res = sweep(load_space(SPACE), chunk_size=CHUNK, checkpoint_path=path, resume=True, progress=False,
                dtype=jnp.float32)
    assert res.n_evaluated == N and res.n_feasible == ref_ckpt["feasible"]
    assert res.front.astype(str).values.tolist() == ref_result["front"]


def test_resume_refuses_a_checkpoint_of_another_space(reference, tmp_path):
    _, _, ref_path = reference
    path = tmp_path / "other.npz"
    path.write_bytes(ref_path.read_bytes())
    other = {**SPACE, "axes": {**SPACE["axes"], "tp": [1, 2]}}
    with pytest.raises(MlsysOptError, match="different run"):
        sweep(load_space(other), chunk_size=CHUNK, checkpoint_path=path, resume=True, progress=False)
    objectives = {**SPACE, "objectives": {"minimize": ["time_to_train_s", "tco_usd"]}}
    with pytest.raises(MlsysOptError, match="different run"):
        sweep(load_space(objectives), chunk_size=CHUNK, checkpoint_path=path, resume=True, progress=False)


def test_resume_names_a_changed_catalog_and_refuses_an_older_run_key_layout(reference, tmp_path):
    """The catalog part of the run key is Catalog.fingerprint(): one changed price is named; a checkpoint
    whose run key has another layout (an earlier catalog hash) is refused saying so, not as a changed catalog."""
    import json

    import mlsys_opt
    _, _, ref_path = reference
    path = tmp_path / "ck.npz"
    path.write_bytes(ref_path.read_bytes())
    cheap = mlsys_opt.load_catalog().with_entries("accelerators", {"h100_sxm": {"price_usd": 1000.0}})
    with pytest.raises(MlsysOptError, match="changed since it was written: the catalog entries"):
        sweep(load_space(SPACE, catalog=cheap), chunk_size=CHUNK, checkpoint_path=path, resume=True,
              progress=False)
    with np.load(ref_path) as f:
        z = {k: f[k] for k in f.files}
    config = json.loads(str(z["config"]))
    assert "catalog_sha256=" in config["run_key"]
    config["run_key"] = config["run_key"].replace("catalog_sha256=", "catalog=")
    z["config"], z["fingerprint"] = np.array(json.dumps(config, sort_keys=True)), np.array("old")
    old = tmp_path / "old.npz"
    np.savez(old, **z)
    with pytest.raises(MlsysOptError, match="run-key layout.*recorded catalog instead of catalog_sha256") as info:
        sweep(load_space(SPACE), chunk_size=CHUNK, checkpoint_path=old, resume=True, progress=False)
    assert "the catalog entries" not in str(info.value)


# --------------------------------------------------------------------------- the CLI

@pytest.mark.skipif(not (ROOT / "mlsys_opt" / "cli.py").exists(), reason="mlsys_opt/cli/app.py does not exist yet")
def test_cli_sigint_then_resume(env, reference, tmp_path):
    from test_robustness import to_toml  # the same small TOML writer
    _, ref_ckpt, _ = reference
    spec = tmp_path / "resume_space.toml"
    spec.write_text(to_toml(SPACE))
    ckpt = tmp_path / "cli.npz"
    cmd = [sys.executable, "-m", "mlsys_opt", "sweep", str(spec), "-q", "--no-save", "--chunk-size", str(CHUNK),
           "--checkpoint", str(ckpt)]
    child = Child(cmd, env["env"], cwd=tmp_path)
    end = time.time() + 240
    while not ckpt.exists() and child.proc.poll() is None and time.time() < end:
        time.sleep(0.005)                   # the first periodic checkpoint: 64 chunks done
    if child.proc.poll() is not None:
        child.finish()
        pytest.skip("this machine finished the CLI sweep before the interrupt could land")
    child.proc.send_signal(signal.SIGINT)
    rc, err = child.finish()
    if rc == 0:
        pytest.skip("this machine finished the CLI sweep before the interrupt landed")
    assert rc == 130, (rc, err[-2000:])
    assert "Traceback" not in err and "interrupted" in err, err[-2000:]
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    ck = load_checkpoint(ckpt)
    assert 0 < ck["next"] < N, ck["next"]

    res = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env["env"], cwd=tmp_path,
                         timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    final = load_checkpoint(ckpt)
    assert final["next"] == N and final["feasible"] == ref_ckpt["feasible"]
    assert _front_key(final) == _front_key(ref_ckpt)


# --------------------------------------------------------------------------- atomic checkpoint writes

def _engine(env, path, chunk, resume, slow_at=0):
    return Child([sys.executable, str(env["scripts"] / "engine_child.py"), str(path), str(chunk),
                  "1" if resume else "0", str(slow_at)], env["env"])


def test_kills_at_random_moments_and_mid_write_leave_a_loadable_checkpoint(env, tmp_path):
    """SIGKILL (no chance to clean up) twice: once at a random moment, once half-way through writing a
    checkpoint (np.savez slowed down in the child).  The checkpoint file is always complete -- the
    previous one survives a torn write -- and the resumed run (other chunk size) ends at the same front."""
    path = tmp_path / "engine.npz"
    child = _engine(env, path, 256, True)                    # a checkpoint after every chunk
    assert child.wait_for(lambda s: _done(s) >= 3 * 256) is not None, "finished before the kill"
    time.sleep(random.Random(7).uniform(0.0, 0.2))
    child.kill()
    ck = load_checkpoint(path)                               # never a torn file
    assert 3 * 256 <= ck["next"] < ENGINE_N and ck["next"] % 256 == 0, ck["next"]

    child = _engine(env, path, 256, True, slow_at=4)         # its 4th save hangs half-written
    assert child.wait_for(lambda s: s == "IN_SAVE") is not None, child.seen[-3:]
    done = max(_done(s) for s in child.seen)
    child.kill()
    assert list(tmp_path.glob("engine.npz.tmp*")), "no temporary file: checkpoints are not written aside first"
    torn = load_checkpoint(path)                             # the 3rd save of this run, intact
    assert torn["next"] == done - 256 == ck["next"] + 3 * 256, (torn["next"], done, ck["next"])

    final = _engine(env, path, 512, True)                    # resume with another chunk size
    rc, err = final.finish()
    assert rc == 0, err[-2000:]
    first = min(_done(s) for s in final.seen if s.startswith("P "))
    assert first == torn["next"] + 512, f"resumed at {first - 512}, not at {torn['next']}"
    assert final.result() == final.result("REFERENCE")


# --------------------------------------------------------------------------- damaged checkpoints

@pytest.mark.parametrize("damage", ["empty", "random_bytes", "truncated", "text"])
def test_unreadable_checkpoints_are_refused(reference, tmp_path, damage):
    _, _, ref_path = reference
    path = tmp_path / "bad.npz"
    data = ref_path.read_bytes()
    path.write_bytes({"empty": b"", "random_bytes": random.Random(3).randbytes(4096),
                      "truncated": data[: len(data) // 2], "text": b"checkpoint"}[damage])
    with pytest.raises(MlsysOptError, match=r"checkpoint .*bad\.npz.*cannot be read"):
        sweep(load_space(SPACE), chunk_size=CHUNK, checkpoint_path=path, resume=True, progress=False)


@pytest.mark.parametrize("damage", ["foreign_npz", "config_not_json", "missing_front", "bad_next_index"])
def test_foreign_or_damaged_npz_checkpoints_are_refused(reference, tmp_path, damage):
    """An .npz that is not a sweep checkpoint (another program's archive), one whose config is not
    JSON, one missing an array or with a damaged counter: MlsysOptError naming the file, never a
    bare KeyError/JSONDecodeError/ValueError (the CLI would print a traceback)."""
    _, _, ref_path = reference
    path = tmp_path / "bad.npz"
    if damage == "foreign_npz":
        np.savez(path, weights=np.arange(3.0))
    elif damage == "config_not_json":
        np.savez(path, config=np.array("not json"), fingerprint=np.array("x"))
    else:                                   # the right run's checkpoint (fingerprint matches), damaged inside
        with np.load(ref_path) as z:
            arrays = {k: z[k] for k in z.files}
        if damage == "missing_front":
            del arrays["front_F"]
        else:
            arrays["next_index"] = np.array("abc")
        np.savez(path, **arrays)
    try:      # the checks come before any compile: a refused file costs nothing
        sweep(load_space(SPACE), chunk_size=CHUNK, checkpoint_path=path, resume=True, progress=False)
    except MlsysOptError as exc:
        assert "checkpoint" in str(exc) and "bad.npz" in str(exc), str(exc)
    except Exception as exc:   # noqa: BLE001
        pytest.fail(f"{damage}: {type(exc).__name__}: {exc}")
    else:
        pytest.fail(f"{damage}: accepted")
