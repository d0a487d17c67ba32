"""Fidelity benchmark: the model against every published measurement, leave-one-source-out.

The rows: measurements.json (25 legacy figures), training_runs.json (208 published training
runs) and serving_runs.json (31 serving runs); rows today's scenarios cannot evaluate are listed
with the reason.  Prints (the numbers the README quotes):
  1. every compared figure: measured, predicted with the default efficiency model, with the
     calibration fitted on all fit rows, and with a constant-η roofline baseline, with % errors;
  2. median / worst |error| per category and per target group; the legacy accuracy targets;
  3. which candidate parameters rows of how many organisations measure (fitted when >= 2:
     sources of one organisation count once);
  4. per row: memory per accelerator vs HBM (feasible) and the predicted bottleneck; the predicted
     memory against the published peak where a row prints one (median / worst |error|);
  5. leave-one-source-out and leave-one-organisation-out: every row of a source held out, the
     model fitted on the rest, the held-out rows predicted; median / worst for training and
     serving separately, the default (unfitted) model's figure, the rows that miss most, and
     the issue-12/13 targets; with issue 19's achievable-rate model off (achievable = 0) too.

    python benchmarks/validation.py            # fit, print everything
    python benchmarks/validation.py --save     # also write calibration_data/default_calibration.json
    python benchmarks/validation.py --rows legacy --no-loo   # the 25 legacy figures only

One compiled program per scenario for the predictions and one for the vmapped refits (every
fold at once); the compiles dominate (minutes on the 2-core CPU), the fits take seconds.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd

from mlsys_opt import calibration as C

TARGETS = {"training": (5.0, 15.0, 8.0), "serving": (10.0, 25.0, None)}   # held-out median, worst; default median


def targets(summary: pd.DataFrame, diag: pd.DataFrame) -> list[str]:
    """Issue 12 (training) and 13 (serving) targets on the leave-one-source-out summary."""
    out = []
    for sc, (med, worst, dmed) in TARGETS.items():
        if sc not in summary.index:
            continue
        r = summary.loc[sc]
        checks = [(f"{sc}: held-out median <= {med:g} %", r.heldout_median <= med, r.heldout_median),
                  (f"{sc}: held-out worst <= {worst:g} %", r.heldout_worst <= worst, r.heldout_worst)]
        if dmed is not None:
            checks.append((f"{sc}: default-model median <= {dmed:g} %", r.default_median <= dmed, r.default_median))
        out += [f"  [{'met' if ok else 'NOT met'}] {name}: {v:.1f} %" for name, ok, v in checks]
    n_bad = int((~diag["feasible"]).sum())
    out.append(f"  [{'met' if n_bad == 0 else 'NOT met'}] every published configuration feasible "
               f"(memory per accelerator <= HBM): {len(diag) - n_bad} of {len(diag)}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", action="store_true", help="write the fit to calibration_data/default_calibration.json")
    ap.add_argument("--rows", choices=C.DATASETS, default="all")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--learning-rate", type=float, default=0.05)
    ap.add_argument("--no-loo", action="store_true", help="skip the leave-one-source-out refits")
    args = ap.parse_args(argv)
    pd.set_option("display.width", 220)
    pd.set_option("display.max_rows", 1000)

    t0 = time.perf_counter()
    ds = C.dataset(args.rows)
    rows = ds.rows
    print(f"rows: {len(rows)} evaluable ({args.rows}); {len(ds.skipped)} not evaluable (listed at the end)")
    kw = {"steps": args.steps, "learning_rate": args.learning_rate}
    cal = C.calibrate(rows, **kw)
    print(f"calibration: fitted {', '.join(cal.fitted) or 'nothing'} on {len(cal.fitted_on)} rows; "
          f"loss {cal.loss_before:.5f} -> {cal.loss_after:.5f} (mean squared log error over the fit targets)")
    df = C.validate(calibrated=cal.eff, rows=rows)
    plan = C.build(rows)
    diag = C.diagnostics(cal.eff, plan)
    # where each training row's step goes in the model (printed under the rows that miss most)
    diag = diag.join(C.step_breakdowns(cal.eff, plan))
    print()
    print(C.format_validation_table(df))
    print("\ncandidate parameters: the fit rows each measures (its leading elasticity), their sources and "
          f"organisations; fitted when >= {C.MIN_SOURCES} organisations measure it")
    print(C.identification(rows).drop(columns="rows").to_string())
    print("\nparameters (elasticity = ∂log prediction/∂log θ over the fit targets; rel_std_err from "
          "Gauss-Newton, large = the rows do not pin it down):")
    print(cal.sensitivity.to_string(float_format=lambda x: f"{x:.4g}"))
    print("\nper row (calibrated model): memory per accelerator vs HBM, feasible, predicted bottleneck")
    print(diag.drop(columns="step").to_string(float_format=lambda x: f"{x:.1f}"))
    mem = C.memory_check(rows, diag)
    if len(mem):
        print("\n" + C.format_memory_check(mem, f"memory per accelerator vs the published peak ({len(mem)} rows "
                                            f"that print one, {mem.source.nunique()} sources; torchtitan's figure is "
                                            "max_memory_reserved, KempnerForge's max_memory_allocated)"))

    if not args.no_loo:
        for by in ("source", "org"):
            loso = C.leave_one_source_out(rows, by=by, plan=plan, **kw)
            print(f"\n=== leave-one-{by}-out ===")
            print(C.format_loso(loso, diag, skipped=(), every_row=(by == "source")))
            print("targets (issues 12 and 13):")
            print("\n".join(targets(C.summarize_loso(loso), diag)))
            if by == "source" and "achievable" in C.Efficiency._fields:
                before = C.leave_one_source_out(rows, C.DEFAULT_EFFICIENCY._replace(achievable=0.0), by=by,
                                                plan=plan, **kw)
                s0, s1 = C.summarize_loso(before), C.summarize_loso(loso)
                print("\nissue 19, before (achievable = 0: global factors) -> after (per-part achievable rates), "
                      "held-out median / worst |error| %:")
                for sc in s1.index:
                    print(f"  {sc:<9} {s0.loc[sc, 'heldout_median']:.1f} / {s0.loc[sc, 'heldout_worst']:.1f} -> "
                          f"{s1.loc[sc, 'heldout_median']:.1f} / {s1.loc[sc, 'heldout_worst']:.1f}  "
                          f"(default model {s0.loc[sc, 'default_median']:.1f} -> {s1.loc[sc, 'default_median']:.1f})")
    if ds.skipped:
        print(f"\nnot evaluated ({len(ds.skipped)} rows):")
        print("\n".join(f"  {i}: {w}" for i, w in ds.skipped))
    if args.save:
        path = C.save_calibration(cal, C.DEFAULT_CALIBRATION_PATH)
        print(f"\nwrote {path}")
    print(f"\n[{time.perf_counter() - t0:.1f} s]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
