"""The near miss of a sweep with no feasible configuration (engine step 5): the least-violating
configuration and, per constraint, the configuration closest to meeting it, reduced on the device
across chunks (and devices, processes, checkpoints), against a brute-force numpy argmin over every row.

The toy's values are multiples of 1/8 (exact in float32), so argmins tie often: the rule "ties keep
the lower configuration index" is checked, not only the values.
"""
import functools
import html
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt.sweeps import engine as sweep_engine

R = (6, 7, 8, 9)                        # 3,024 configurations
N = 6 * 7 * 8 * 9
KW = dict(n_obj=2, n_constr=4, n_aux=1, n_hard=1, top_k=3, progress=False)


def toy(d):
    """Two objectives, four constraints (the first hard); every configuration breaks g3; d3 = 8 is NaN."""
    x = [d[:, k].astype(jnp.float32) for k in range(4)]
    f1 = x[0] / 8 + x[1] / 4 + jnp.where(d[:, 3] == 8, jnp.nan, 0.0).astype(jnp.float32)
    f2 = (7 - x[0]) / 8 + x[2] / 2
    G = jnp.stack([(x[0] - 3) / 2,                          # hard: met for d0 <= 3
                   (6 - x[1]) / 4 - x[2] / 8 - x[0] / 4,            # smallest at d0 = 5 (breaks the hard one)
                   (x[2] - x[3]) / 8 + 1 / 8,
                   1 / 8 + jnp.remainder(x[3], 2) / 4 + jnp.maximum(x[1] - 5, 0) / 8], 1)   # > 0 everywhere
    return jnp.stack([f1, f2], 1), G, (f1 + f2)[:, None]


def brute(n_hard: int = 1):
    """(least index, its violation, per soft constraint the closest index or -1) by numpy over every row."""
    d = np.stack(np.unravel_index(np.arange(N), R), 1).astype(np.int32)
    F, G, aux = (np.asarray(a) for a in jax.jit(toy)(jnp.asarray(d)))
    ok = np.isfinite(F).all(1) & np.isfinite(G).all(1)
    idx = np.arange(N)
    V = np.maximum(G, 0).sum(1)
    cand = idx[ok]
    least = cand[np.lexsort((cand, V[cand]))[0]]
    c = idx[ok & (G[:, :n_hard] <= 0).all(1)]          # the candidates meeting every hard constraint
    best = [int(c[np.lexsort((c, G[c, j]))[0]]) if len(c) else -1 for j in range(n_hard, G.shape[1])]
    return int(least), float(V[least]), best, (d, F, G, aux)


def check(res, n_hard: int = 1):
    least, v, best, (d, F, G, aux) = brute(n_hard)
    nm = res.near_miss
    assert res.n_feasible == 0 and nm is not None
    assert nm.least.index.tolist() == [least] and nm.violation == v
    np.testing.assert_array_equal(nm.least.digits[0], d[least])
    np.testing.assert_array_equal(nm.least.F[0], F[least])
    np.testing.assert_array_equal(nm.least.G[0], G[least])
    np.testing.assert_array_equal(nm.least.aux[0], aux[least])
    assert [r.index.tolist() for r in nm.closest] == [[b] if b >= 0 else [] for b in best]
    for j, (r, b) in enumerate(zip(nm.closest, best)):
        np.testing.assert_array_equal(r.G, G[[b]])
        np.testing.assert_array_equal(r.aux, aux[[b]])


@functools.lru_cache(maxsize=None)
def reference():
    return sweep_engine.stream(R, toy, chunk_size=256, **KW)


@pytest.mark.parametrize("chunk", [256, 1000])       # 12 and 4 chunks (the last one padded)
def test_near_miss_equals_brute_force_across_chunks(chunk):
    res = reference() if chunk == 256 else sweep_engine.stream(R, toy, chunk_size=chunk, **KW)
    check(res)
    assert res.infeasible_by[-1] == N // 9           # the NaN lanes: non-finite, never a near miss
    # the least-violating configuration violates only g3 by 1/8; the closest ones meet the hard constraint
    assert res.near_miss.violation == 0.125 and all(c.G[0, 0] <= 0 for c in res.near_miss.closest)


def test_no_hard_constraints_takes_every_finite_configuration():
    res = sweep_engine.stream(R, toy, chunk_size=256, **{**KW, "n_hard": 0})
    check(res, n_hard=0)
    assert len(res.near_miss.closest) == 4 and len(reference().near_miss.closest) == 3
    assert res.near_miss.closest[1].digits[0, 0] == 5       # with n_hard=1 the hard constraint holds
    assert reference().near_miss.closest[0].digits[0, 0] <= 3


def test_a_feasible_sweep_has_no_near_miss():
    def relaxed(d):
        F, G, aux = toy(d)
        return F, G - 10.0, aux
    res = sweep_engine.stream(R, relaxed, chunk_size=256, **KW)
    assert res.n_feasible > 0 and res.near_miss is None


def test_checkpoint_resume_carries_the_near_miss(tmp_path):
    from mlsys_opt.errors import MlsysOptError
    from mlsys_opt.sweeps import checkpoint
    path = tmp_path / "ck.npz"
    seen = []

    def stop(done, total):
        seen.append(done)
        if len(seen) == 5:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        sweep_engine.stream(R, toy, chunk_size=256, checkpoint_path=path, **{**KW, "progress": stop})
    with np.load(path) as z:
        assert int(str(z["next_index"])) == 5 * 256 and bool(z["near_valid"])
        old = {k: z[k] for k in z.files if not k.startswith("near_")}
    check(sweep_engine.stream(R, toy, chunk_size=1000, checkpoint_path=path, resume=True, **KW))
    # near_* entries without a candidate after infeasible, finite configurations: a multi-device checkpoint of
    # an earlier mlsys_opt (it did not track the near miss there) is refused, not resumed into a wrong one
    with np.load(path) as z:
        untracked = {k: z[k] for k in z.files}
    for k in ("near_valid", "near_best_valid"):
        untracked[k] = np.zeros_like(untracked[k])
    untracked["near_violation"] = np.array(np.inf, untracked["near_violation"].dtype)
    np.savez(path, **untracked)
    with pytest.raises(MlsysOptError, match="no near miss.*over several devices of an earlier mlsys_opt"):
        sweep_engine.stream(R, toy, chunk_size=256, checkpoint_path=path, resume=True, **KW)
    # a checkpoint written before the near miss existed is refused, never resumed with half of it
    desc = json.loads(str(old["config"]))
    desc.pop("near_miss_hard_constraints")
    old.update(config=np.array(json.dumps(desc, sort_keys=True)), fingerprint=np.array(checkpoint.fingerprint(desc)))
    np.savez(path, **old)
    with pytest.raises(MlsysOptError, match="different run.*near_miss_hard_constraints"):
        sweep_engine.stream(R, toy, chunk_size=256, checkpoint_path=path, resume=True, **KW)


def test_distributed_merge_of_shares_equals_one_sweep():
    """Each process sweeps a share (index_range) and packs its result; the host merge picks the global near miss."""
    from mlsys_opt.sweeps.distributed_merge import merge_results, pack_result, split_range
    parts = [sweep_engine.stream(R, toy, chunk_size=256, index_range=r, **KW) for r in split_range(N, 3, 256)]
    assert len({p.near_miss.least.index[0] for p in parts}) == 3           # each share has its own
    check(merge_results([pack_result(p) for p in parts], 3, N, 0.0))


SCRIPT = textwrap.dedent('''
    import json, os, sys, tempfile
    sys.path.insert(0, sys.argv[1])
    import jax
    from mlsys_opt.sweeps import engine as sweep_engine
    from test_near_miss import KW, R, toy

    def near(r):
        nm = r.near_miss
        return None if nm is None else {
            "least": nm.least.index.tolist(), "violation": nm.violation,
            "rows": [x.tolist() for x in (nm.least.digits, nm.least.F, nm.least.G, nm.least.aux)],
            "closest": [c.index.tolist() for c in nm.closest],
            "closest_rows": [[x.tolist() for x in (c.digits, c.F, c.G, c.aux)] for c in nm.closest]}
    out = {"n_devices": len(jax.devices())}
    for name, chunk, devices, kw in (("four", 1000, None, {}),       # 250 lanes on each of 4 devices
                                     ("four_small", 256, None, {}),  # 64 lanes each, 12 chunks
                                     ("two", 1000, 2, {}),
                                     ("four_soft", 1000, None, {"n_hard": 0}),
                                     ("one", 1000, 1, {}), ("one_soft", 1000, 1, {"n_hard": 0})):
        r = sweep_engine.stream(R, toy, chunk_size=chunk, devices=devices, **{**KW, **kw})
        out[name] = {"n": [r.n_evaluated, r.n_feasible], "near": near(r)}
    # a checkpoint holds the devices' near misses merged: interrupted on 4 devices, resumed on 2; on 1, on 4
    for name, first, then in (("resumed_4_2", 4, 2), ("resumed_1_4", 1, 4)):
        path = os.path.join(tempfile.mkdtemp(), "ck.npz")
        seen = []

        def stop(done, total):
            seen.append(done)
            if len(seen) == 5:
                raise KeyboardInterrupt
        try:
            sweep_engine.stream(R, toy, chunk_size=256, devices=first, checkpoint_path=path, **{**KW, "progress": stop})
        except KeyboardInterrupt:
            pass
        r = sweep_engine.stream(R, toy, chunk_size=1000, devices=then, checkpoint_path=path, resume=True, **KW)
        out[name] = {"n": [r.n_evaluated, r.n_feasible], "near": near(r)}
    print("RESULT" + json.dumps(out))
''')


def test_several_devices_find_the_one_device_near_miss():
    """On 4 (and 2) host devices each device folds its own lanes into its own entry and the host merges
    them (state.merge_near_miss): the near miss is the 1-device sweep's, row for row, and the brute force's;
    so is a sweep resumed on another device count (a checkpoint holds the merged near miss)."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    tests = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, tests], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][len("RESULT"):])
    assert out["n_devices"] == 4
    for name in ("four", "four_small", "two", "resumed_4_2", "resumed_1_4"):
        assert out[name] == out["one"], name
    assert out["four_soft"] == out["one_soft"]
    for key, n_hard in (("one", 1), ("one_soft", 0)):
        least, v, best, _ = brute(n_hard)
        nm = out[key]["near"]
        assert out[key]["n"] == [N, 0] and nm["least"] == [least] and nm["violation"] == v
        assert nm["closest"] == [[b] if b >= 0 else [] for b in best]


# --------------------------------------------------------------------------- a space, the CLI, the search

SPEC = """\
name = "tiny_infeasible"
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
max_time = "5 day"
budget = "500e3 USD"
max_carbon = "10 t"

[objectives]
minimize = ["time_to_train_s", "tco_usd", "carbon_kg"]
"""


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("near_miss") / "tiny_infeasible.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def swept(spec):
    import mlsys_opt
    return mlsys_opt.sweep(str(spec), chunk_size=8, progress=False)      # 24 configurations: 3 chunks


def test_sweep_of_an_infeasible_space_equals_brute_force_over_every_row(swept):
    from mlsys_opt.sweeps.api import constraint_names, evaluate_digits
    from mlsys_opt.sweeps.near_miss import g_column
    res, space = swept, swept.space
    d = np.stack(np.unravel_index(np.arange(space.size), space.radices), 1).astype(np.int32)
    ev = evaluate_digits(space, d)
    G = np.asarray(ev.G, np.float64)
    V = np.maximum(G, 0).sum(1)
    assert res.n_feasible == 0 and (V > 0).all() and (G[:, 0] > 0).any()        # some break memory (hard)
    least = int(np.lexsort((np.arange(len(V)), V))[0])
    nm = res.near_miss
    row = nm.least.iloc[0]
    assert [str(row[a.name]) for a in space.axes] == [str(a.labels[k]) for a, k in zip(space.axes, d[least])]
    np.testing.assert_allclose(nm.violation, V[least], rtol=1e-5)
    np.testing.assert_allclose(row["violation"], V[least], rtol=1e-5)
    np.testing.assert_allclose(row["time_to_train_s"], ev.outputs.time_to_train_s[least], rtol=1e-5)
    names = constraint_names(space)
    for j, name in enumerate(names):
        np.testing.assert_allclose(row[g_column(name)], G[least, j], rtol=1e-5, atol=1e-6)
    # per limit: the best value among configurations meeting every structural constraint
    ok = (G[:, :len(names) - 3] <= 0).all(1)
    for output in ("time_to_train_s", "tco_usd", "carbon_kg"):
        y = np.asarray(getattr(ev.outputs, output), np.float64)
        best = nm.closest[f"limit:{output}"].iloc[0]
        np.testing.assert_allclose(best[output], y[ok].min(), rtol=1e-5)
        assert best["hardware"] in {space.axes[0].labels[k] for k in d[ok & (y == y[ok].min()), 0]}


def test_cli_prints_and_json_gives_the_near_miss(capsys, spec, swept, tmp_path, monkeypatch):
    from mlsys_opt.cli import app as cli
    monkeypatch.chdir(tmp_path)
    code = cli.main(["sweep", str(spec), "--no-save", "--chunk-size", "8"])
    out = capsys.readouterr().out
    assert code == 3 and "no feasible configuration" in out
    tail = out[out.index("no feasible configuration"):]
    assert "least-violating configuration (total violation" in tail and "breaks time_to_train_s" in tail
    assert "lowest time_to_train_s" in tail and "days (limit ≤ 5 days" in tail
    code = cli.main(["--json", "sweep", str(spec), "--no-save", "--chunk-size", "8"])
    data = json.loads(capsys.readouterr().out)
    nm = data["near_miss"]
    assert code == 3 and data["n_feasible"] == 0
    row = swept.near_miss.least.iloc[0]
    assert nm["least_violating"]["configuration"] == {a.name: row[a.name] for a in swept.space.axes}
    assert nm["violation"] == pytest.approx(swept.near_miss.violation)
    assert set(nm["least_violating"]["objectives"]) == {"time_to_train_s", "tco_usd", "carbon_kg"}
    lim = nm["closest"]["limit:time_to_train_s"]
    assert lim["limit_si"] == 5 * 86400 and lim["sense"] == "max" and lim["best_meets_limit"] is False
    assert lim["best_si"] == pytest.approx(swept.near_miss.closest["limit:time_to_train_s"].iloc[0]["time_to_train_s"])
    assert "memory" not in nm["closest"]          # met by some buildable configuration: not reported


def test_exhaustive_search_reports_the_sweeps_near_miss(spec, swept):
    import mlsys_opt
    res = mlsys_opt.run_search(str(spec), algorithm="random", evals=64, progress=False)   # 24 <= 64: every one
    assert res.exhaustive and res.n_feasible == 0 and res.near_miss is not None
    cols = [a.name for a in swept.space.axes]
    assert res.near_miss.least[cols].equals(swept.near_miss.least[cols])
    assert set(res.near_miss.closest) == set(swept.near_miss.closest)
    for name, frame in swept.near_miss.closest.items():
        assert res.near_miss.closest[name][cols].equals(frame[cols]), name


def test_a_feasible_space_has_no_near_miss(capsys, spec, tmp_path, monkeypatch):
    from mlsys_opt.cli import app as cli
    feasible = tmp_path / "tiny_feasible.toml"
    feasible.write_text(SPEC.replace('max_time = "5 day"\nbudget = "500e3 USD"\nmax_carbon = "10 t"', 'max_time = "120 day"'))
    monkeypatch.chdir(tmp_path)
    code = cli.main(["--json", "sweep", str(feasible), "--no-save", "--chunk-size", "8"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["n_feasible"] > 0 and data["near_miss"] is None
    code = cli.main(["sweep", str(feasible), "--no-save", "--chunk-size", "8"])
    assert code == 0 and "least-violating" not in capsys.readouterr().out


def test_html_report_of_an_infeasible_sweep_shows_the_near_miss(spec, swept):
    from mlsys_opt.cli.html import render
    from mlsys_opt.cli.near_miss import near_miss_lines
    page = render(swept)
    assert "No feasible configuration" in page and 'id="near-miss"' in page
    section = page[page.index('id="near-miss"'):]
    for line in near_miss_lines(swept.space, swept.near_miss)[:2]:      # the printed lines, HTML-escaped
        assert html.escape(line) in section
    assert "best value each broken limit reaches (among configurations" in section
