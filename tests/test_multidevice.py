"""Sharded sweep on 4 (forced host) devices = 1-device sweep = brute force + pymoo.

jax fixes its device count at import, so the check runs in a fresh Python
with XLA_FLAGS=--xla_force_host_platform_device_count=4.
"""
import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(r'''
    import json
    import jax, jax.numpy as jnp, numpy as np
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
    from mlsys_opt.sweeps import engine as sweep_engine

    R = (10, 20, 25, 20)
    N = 100_000

    def toy(d):
        """Smooth conflicting objectives on [0, 1]^4 (a large 3-D front), one constraint."""
        x = [d[:, k].astype(jnp.float32) / (R[k] - 1) for k in range(4)]
        f1 = x[0] + 0.5 * (x[1] - 0.3) ** 2 + 0.1 * x[3]
        f2 = (1 - x[0]) ** 2 + 0.5 * x[2] + 0.2 * jnp.sin(3 * x[1]) + 0.1 * (1 - x[3])
        f3 = x[2] ** 2 + 0.3 * (1 - x[1]) + x[3] * x[0]
        return jnp.stack([f1, f2, f3], 1), (x[0] + x[1] - 1.6)[:, None], jnp.stack([f1 + f2], 1)

    kw = dict(n_obj=3, n_constr=1, n_aux=1, top_k=4, progress=False, histograms={1: [0.0, 0.5, 1.0]})
    out = {"n_devices": len(jax.devices())}
    for name, devices in (("four", None), ("one", 1)):
        r = sweep_engine.stream(R, toy, chunk_size=6001, devices=devices, **kw)   # 6004 on 4 devices
        out[name] = {"front": r.front.index.tolist(), "feasible": r.n_feasible,
                     "best": [b.index.tolist() for b in r.best],
                     "hist": r.histograms[1][1].tolist()}
    d = np.stack(np.unravel_index(np.arange(N), R), 1).astype(np.int32)
    F, G, _ = (np.asarray(a) for a in jax.jit(toy)(jnp.asarray(d)))
    idx = np.nonzero(np.all(G <= 0, 1))[0]
    nd = idx[NonDominatedSorting().do(F[idx].astype(np.float64), only_non_dominated_front=True)]
    first = {}
    for i in sorted(nd.tolist()):
        first.setdefault(tuple(F[i]), i)
    out["brute"] = {"front": sorted(first.values()), "feasible": int(len(idx))}
    print("RESULT" + json.dumps(out))
''')


def test_four_devices_give_the_same_front_as_one_and_as_brute_force():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    out = json.loads(line[len("RESULT"):])
    assert out["n_devices"] == 4
    four, one, brute = out["four"], out["one"], out["brute"]
    assert len(brute["front"]) > 500                       # a large front, spread over shards
    assert four["front"] == brute["front"] == one["front"]
    assert four["feasible"] == one["feasible"] == brute["feasible"]
    assert four["best"] == one["best"] and four["hist"] == one["hist"]
    assert sum(four["hist"]) == brute["feasible"]
