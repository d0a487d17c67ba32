"""The fewest accelerators for a deadline: the capstone's fixed layout vs the searched one (`synthesize --days`).

For a few questions a planner asks, prints the answer at the layout `synthesize --days` used to fix (tp 8, pp 4,
ZeRO-1: spaces/capstone.toml's), the answer of the layout search (search.fleet_layouts.min_devices_over_layouts:
tp 1-8 × pp 1-16 × ZeRO 1/3, and ep 1-64 for a MoE model), the layouts searched, the rows evaluated and the
seconds a warm search takes (best of 3, after one compiling run).  Not a test: nothing here is asserted.

    python benchmarks/layout_search.py
"""
from __future__ import annotations

import platform
import time

from mlsys_opt.search.fleet_layouts import LAYOUT_AXES, min_devices_over_layouts
from mlsys_opt.search.synthesis import min_devices_for_time

DAY = 86400.0
BASE = {"hardware": "h100_sxm", "efficiency": 0.4, "precision": "fp16", "global_batch": 2048, "seq_len": 8192,
        "microbatches": 0, "tp": 1, "pp": 1, "n_accelerators": 1}
QUESTIONS = [   # (model, tokens, days, overrides)
    ("llama3_8b", 2e12, 14, {}),
    ("llama3_70b", 1.41e12, 14, {}),
    ("llama3_70b", 15e12, 30, {"global_batch": 4096}),
    ("mixtral_8x7b", 0.934e12, 30, {}),
]


def main() -> None:
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{'question':<42} {'tp8 pp4 ZeRO-1':>15} {'searched':>9}  {'layout':<34} {'layouts':>7} {'warm s':>7}")
    for model, tokens, days, over in QUESTIONS:
        cfg = {**BASE, **over, "model": model, "n_tokens": tokens}
        axes = dict(LAYOUT_AXES, **({"ep": (1, 8, 16, 32, 64)} if model.startswith("mixtral") else {}))
        fixed = min_devices_for_time("training", {**cfg, "tp": 8, "pp": 4, "zero_stage": 1, "n_accelerators": 32},
                                     days * DAY)
        min_devices_over_layouts("training", cfg, days * DAY, axes=axes)          # compile
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            r = min_devices_over_layouts("training", cfg, days * DAY, axes=axes)
            best = min(best, time.perf_counter() - t0)
        q = f"{model}, {tokens / 1e12:g}T tokens, {days} d" + (", gb 4096" if over else "")
        lay = ", ".join(f"{k} {v}" for k, v in r.layout.items()) or "none"
        print(f"{q:<42} {fixed.n or 'none':>15} {r.best.n or 'none':>9}  {lay:<34} {r.n_layouts:>7} {best:>7.2f}")


if __name__ == "__main__":
    main()
