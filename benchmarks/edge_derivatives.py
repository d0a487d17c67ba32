"""Where a sensitivity sits on a kink: forward-mode elasticities against one-sided differences.

For each configuration below (or the ones given with --config), every continuous input of the
scenario (``mlsys_opt.point.sensitivity.parameter_names``: catalog fields, float parameters,
efficiency leaves) is scaled by e^{+h} and e^{-h} (h = 1e-6, float64, on the full catalog tables,
independent of the sensitivity kernel) and the one-sided elasticities

    up = (ln y(+h) - ln y) / h,     down = (ln y - ln y(-h)) / h

are compared with the exact (forward-mode) elasticity.  Where up and down differ the output has a
kink in that input at this configuration; the exact derivative must then be one side's (the
admissible one at the edge of the input's domain), never their average: ``jnp.maximum`` and
``jnp.clip`` split a tie ½/½, which is how straggler_factor = 1, oversubscription = 1, cp_overlap = 1
and a length cv of 0 read half (or none) of their sensitivity before stop 24.  Printed: every
(input, output) pair on a kink, with the three numbers and a verdict; "no kink" otherwise.  An
input at 0 (elasticity 0 by definition) is checked on its derivative, with an absolute step.

    .venv/bin/python benchmarks/edge_derivatives.py                 # the built-in configurations
    .venv/bin/python benchmarks/edge_derivatives.py --config training '{"model": "llama3_8b", ...}'

Not a test (tests/test_sensitivity.py holds the rule at two configurations); about 10-40 s per
configuration on the 2-core CPU, most of it compiling.
"""
from __future__ import annotations

import argparse
import json

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from mlsys_opt.point.config import read_input, resolve_config, with_inputs  # noqa: E402
from mlsys_opt.point.sensitivity import sensitivity_arrays  # noqa: E402
from mlsys_opt.scenarios import SCENARIO_FNS, params_from_dict, static_options  # noqa: E402
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY  # noqa: E402

H = 1e-6
CONFIGS = [
    ("training", {"model": "llama3_8b", "hardware": "h100_sxm", "n_accelerators": 64, "n_tokens": 1e12}),
    ("training", {"model": "llama3_70b", "hardware": "h100_sxm", "n_accelerators": 1024, "tp": 8, "cp": 2,
                  "seq_len": 32768, "n_tokens": 1e12, "zero_stage": 3}),
    ("training", {"model": "llama3_405b", "hardware": "h100_sxm", "n_accelerators": 2048, "tp": 8, "pp": 8,
                  "virtual_stages": 2, "precision": "fp8", "n_tokens": 1e12, "zero_stage": 1}),
    ("training", {"model": "deepseek_v3", "hardware": "h100_sxm", "n_accelerators": 2048, "pp": 16, "ep": 64,
                  "precision": "fp8", "n_tokens": 1e12, "zero_stage": 1}),
    ("serving", {"model": "llama3_70b", "hardware": "h100_sxm", "tp": 8, "request_rate": "10 /s"}),
    ("serving", {"model": "llama3_70b", "hardware": "h100_sxm", "tp": 4, "request_rate": "20 /s",
                 "disaggregated": "on"}),
    ("serving", {"model": "llama3_8b", "hardware": "a100_80gb", "tp": 1, "request_rate": "5 /s", "spec_k": 4}),
]
SKIP_OUTPUTS = ("bottleneck",)


def check(scenario: str, config: dict) -> list[str]:
    """Lines describing every (input, output) pair on a kink at `config` (empty: none)."""
    s = sensitivity_arrays(scenario, config, dtype=jnp.float64, method="dense")
    _, _, p, catalog = resolve_config(scenario, config, jnp.float64)
    tables = catalog.tables(dtype=jnp.float64)
    eff = type(DEFAULT_EFFICIENCY)(*[jnp.asarray(x, jnp.float64) for x in DEFAULT_EFFICIENCY])
    opts = static_options(scenario, {k: np.asarray(v) for k, v in p.items()})
    names, outs = s.parameters, [o for o in s.outputs if o not in SKIP_OUTPUTS]
    xs = [jnp.asarray(read_input(k, p, tables, eff), jnp.float64) for k in names]

    @jax.jit
    def run(inputs):
        pp, tt, ee = with_inputs(dict(zip(names, inputs)), p, tables, eff)
        o, _ = SCENARIO_FNS[scenario](params_from_dict(scenario, pp), tt, ee, **opts)
        return jnp.stack([jnp.asarray(getattr(o, n), jnp.float64).reshape(-1)[0] for n in outs])

    y0 = np.asarray(run(xs))
    cols = [s.outputs.index(o) for o in outs]
    lines = []
    for i, k in enumerate(names):
        x = xs[i]
        zero = bool(np.all(np.asarray(x) == 0))
        t = jnp.where(x != 0, x, 1.0)
        yu = np.asarray(run([*xs[:i], x + H * t, *xs[i + 1:]]))
        yd = np.asarray(run([*xs[:i], x - H * t, *xs[i + 1:]]))
        ok = np.abs(y0) > 0
        scale = np.where(ok, y0, 1.0)
        if zero:        # elasticity 0 by definition: compare derivatives (per unit of x) instead
            up, down, ad = (yu - y0) / H, (y0 - yd) / H, s.derivative[0][cols, i]
        else:
            up, down, ad = (yu - y0) / H / scale, (y0 - yd) / H / scale, s.elasticity[0][cols, i]
        for j, o in enumerate(outs):
            size = max(abs(up[j]), abs(down[j]), 1e-3)
            if abs(up[j] - down[j]) <= 0.05 * size:
                continue
            side = "up" if abs(ad[j] - up[j]) <= 0.05 * size else "down" if abs(ad[j] - down[j]) <= 0.05 * size \
                else "NEITHER side (a balanced tie?)"
            lines.append(f"  {k:32s} {o:24s} exact {ad[j]:+.4g}  up {up[j]:+.4g}  down {down[j]:+.4g}  -> {side}"
                         + ("  (x = 0: derivatives)" if zero else ""))
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", nargs=2, action="append", metavar=("SCENARIO", "JSON"),
                    help="a scenario name and a JSON dict of display values (repeatable)")
    ap.add_argument("--all", action="store_true", help="also list the kinks whose derivative is one side's")
    args = ap.parse_args(argv)
    configs = [(sc, json.loads(js)) for sc, js in args.config] if args.config else CONFIGS
    wrong = 0
    for scenario, config in configs:
        print(f"{scenario} {json.dumps(config)}", flush=True)
        lines = check(scenario, config)
        bad = [ln for ln in lines if "NEITHER" in ln]
        wrong += len(bad)
        for ln in (lines if args.all else bad):
            print(ln)
        print(f"  {len(lines)} (input, output) pairs on a kink, {len(lines) - len(bad)} with one side's derivative, "
              f"{len(bad)} with neither", flush=True)
    print(f"pairs whose exact derivative is neither side's: {wrong}")


if __name__ == "__main__":
    main()
