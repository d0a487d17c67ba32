"""Issue 7 item 5: determinism.  The same space gives the same exact Pareto front

* on 1 or 4 devices (a child process with XLA_FLAGS=--xla_force_host_platform_device_count=4),
* with any chunk size (64 on one device, 1000 on four -- with a partial last chunk --, 4096 here),
* in float32 (the child: x64 off, as in production) and float64 (this process): compared as sets of
  configurations, float32 may differ only where objectives tie within 1e-5 relative (or a
  constraint margin is within 1e-5 of zero),
* and the float64 front equals the brute-force front of every configuration (numpy, the engine's
  tie rule: of identical objective vectors only the lowest configuration index is kept).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
from test_finiteness import M, evaluate
from test_resume import CHUNK, SPACE  # the space of the resume tests: shared compile cache

from mlsys_opt.space.spec import load_space
from mlsys_opt.sweeps.api import sweep

REL = 1e-5
CHILD = textwrap.dedent("""
    import json, sys
    import jax
    from mlsys_opt.space import load_space
    from mlsys_opt.sweeps.api import sweep
    space, devices, chunk = load_space(json.loads(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
    assert len(jax.devices()) == devices, jax.devices()
    names = [o for o, _ in space.objectives]
    res = sweep(space, chunk_size=chunk, devices=devices, progress=False)
    rows = res.front.to_dict("records")
    print("RESULT", json.dumps({"n_feasible": res.n_feasible, "n_evaluated": res.n_evaluated,
                                "digits": [space.digits_for({a: r[a] for a in space.axis_names}).tolist()
                                           for r in rows],
                                "F": [[r[o] for o in names] for r in rows]}), flush=True)
""")


def _index(space, digits) -> np.ndarray:
    return np.ravel_multi_index(np.asarray(digits, np.int64).reshape(-1, len(space.radices)).T, space.radices)


def brute_force_front(F: np.ndarray, feasible: np.ndarray) -> set[int]:
    """Indices of feasible rows no feasible row beats (all <= and (any < or lower index)).

    Rows in lexicographic order (objectives, then index) meet every possible beater first, and a
    row beaten by anything is beaten by a front member, so each row is tested against the front only.
    """
    idx = np.flatnonzero(feasible)
    order = idx[np.lexsort((idx,) + tuple(F[idx, j] for j in range(F.shape[1] - 1, -1, -1)))]
    front: list[int] = []
    for k in order:
        if front:
            P = F[front]
            if (np.all(P <= F[k], axis=1) & (np.any(P < F[k], axis=1) | (np.array(front) < k))).any():
                continue
        front.append(int(k))
    return set(front)


@pytest.fixture(scope="module")
def children(tmp_path_factory):
    """Two float32 sweeps in child processes (x64 off), started together: 1 device with chunks of 64
    (the resume tests' program: one compile for both files) and 4 host devices with chunks of 1000."""
    cache = tmp_path_factory.getbasetemp() / "robustness_jax_cache"
    cache.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "XLA_FLAGS")}
    base.update(JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    procs = {}
    for label, devices, chunk in (("d1", 1, CHUNK), ("d4", 4, 1000)):
        env = dict(base, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}") if devices > 1 else base
        procs[label] = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(SPACE), str(devices), str(chunk)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    results = {}

    def get(label):
        if label not in results:
            out, err = procs[label].communicate(timeout=600)
            assert procs[label].returncode == 0, err[-3000:]
            line = next(s for s in out.splitlines() if s.startswith("RESULT "))
            results[label] = json.loads(line[len("RESULT "):])
        return results[label]
    yield get
    for p in procs.values():
        if p.poll() is None:
            p.kill()


@pytest.fixture(scope="module")
def four_devices(children):
    return {"d1": children("d1"), "d4": children("d4")}


@pytest.fixture(scope="module")
def float64(children):                       # the children sweep while this process compiles
    """The float64 sweep and every configuration's objectives/constraints by brute force (test_finiteness's
    jitted scenario, in batches)."""
    space = load_space(SPACE)
    assert not space.limits
    digits = np.array(np.unravel_index(np.arange(space.size), space.radices)).T.astype(np.int32)
    names = [o for o, _ in space.objectives]
    F, G = [], []
    for start in range(0, len(digits), M):
        _, out, g = evaluate(space, digits[start:start + M], jnp.float64)
        F.append(np.stack([out[o] for o in names], axis=1))
        G.append(np.stack(list(g.values()), axis=1))
    res = sweep(space, chunk_size=4096, dtype=jnp.float64, progress=False)
    front = {int(_index(space, space.digits_for({a: r[a] for a in space.axis_names}))[0]): [r[o] for o in names]
             for r in res.front.to_dict("records")}
    return space, np.concatenate(F), np.concatenate(G), res, front


def test_float64_front_is_the_brute_force_front(float64):
    space, F, G, res, front = float64
    feasible = (G <= 0).all(axis=1) & np.isfinite(F).all(axis=1)
    assert res.n_evaluated == space.size and res.n_feasible == int(feasible.sum())
    assert set(front) == brute_force_front(F, feasible)
    for k, f in front.items():
        np.testing.assert_allclose(f, F[k], rtol=1e-9)


def test_same_front_on_one_and_four_devices_and_any_chunk_size(four_devices):
    d1, d4 = four_devices["d1"], four_devices["d4"]
    assert d1["n_evaluated"] == d4["n_evaluated"] == load_space(SPACE).size
    assert d1["n_feasible"] == d4["n_feasible"]
    a = {tuple(d): f for d, f in zip(d1["digits"], d1["F"])}
    b = {tuple(d): f for d, f in zip(d4["digits"], d4["F"])}
    assert set(a) == set(b), f"1 device: {sorted(set(a) - set(b))}, 4 devices: {sorted(set(b) - set(a))}"
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, err_msg=str(k))


def test_float32_and_float64_fronts_differ_only_at_ties(four_devices, float64):
    space, F, G, res64, front64 = float64
    front32 = {int(i) for i in _index(space, four_devices["d1"]["digits"])}
    feasible = (G <= 0).all(axis=1)
    margin = G.max(axis=1)
    problems = []
    for c in sorted(front32 - set(front64)):           # float32 kept it, float64 did not
        if margin[c] > REL:
            problems.append(f"{c}: infeasible in float64 by {margin[c]:.3g}")
            continue
        dominators = feasible & np.all(F <= F[c], axis=1) & np.any(F < F[c], axis=1)
        far = dominators & ~np.all(np.abs(F - F[c]) <= REL * np.abs(F[c]), axis=1)
        if far.any():
            p = int(np.flatnonzero(far)[0])
            problems.append(f"{c}: beaten in float64 by {p} beyond {REL:g}: {F[p]} vs {F[c]}")
    for c in sorted(set(front64) - front32):           # float64 kept it, float32 did not
        if margin[c] >= -REL:
            continue                                   # a constraint within 1e-5 of zero
        near = np.array([np.all(F[a] <= F[c] * (1 + REL) + 1e-300) for a in front32])
        if not near.any():
            problems.append(f"{c}: on the float64 front, not beaten within {REL:g} by any float32 member")
    assert not problems, "\n".join(problems)
    assert len(front32 & set(front64)) >= 0.9 * len(front64), (len(front32), len(front64))


@pytest.mark.parametrize("spec", ["capstone", "llama3_serving", "llama3_70b_training"])
def test_float32_sweep_stays_float32_when_x64_is_on(spec):
    # conftest turns x64 on; a float32 sweep must still compute in float32 (integer counts
    # and GEMM rows used to be cast to the default float, float64 here, and promoted
    # most of the scenario to float64).
    import importlib

    import jax

    sw = importlib.import_module("mlsys_opt.sweeps.api")
    space = load_space(spec)
    fn = sw.make_chunk_fn(space, sw._tables(space, None, jnp.float32), sw.DEFAULT_EFFICIENCY, jnp.float32)
    digits = jnp.zeros((8, len(space.radices)), jnp.int32)
    F, G, aux = fn(digits)
    assert F.dtype == G.dtype == aux.dtype == jnp.float32
    strong64 = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            for sub in eqn.params.values():
                if hasattr(sub, "eqns") or hasattr(sub, "jaxpr"):
                    walk(getattr(sub, "jaxpr", sub))
            strong64.extend(str(eqn.primitive) for v in eqn.outvars
                            if v.aval.dtype == np.float64 and v.aval.ndim and not v.aval.weak_type)

    walk(jax.make_jaxpr(fn)(digits).jaxpr)
    assert not strong64, f"float64 batch arrays in a float32 sweep, made by: {sorted(set(strong64))}"
