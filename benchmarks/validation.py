"""Fidelity benchmark: the model against 25 published measurements, before and after calibration.

Prints (the numbers the README quotes):
  1. every compared figure: measured, predicted with the default efficiency model,
     with the calibrated one, and with a constant-η roofline baseline, with % errors;
  2. median / worst |error| per category and per accuracy-target group;
  3. the accuracy targets and whether they are met;
  4. which candidate parameters rows of how many sources measure (the fitted ones: >= 2),
     and the parameters with their elasticities and standard errors;
  5. leave-one-out (per row and per source): held-out |error| before vs after, each fold
     choosing its fitted parameters on its own training rows; for comparison the same with
     all four candidates fitted regardless of how many sources measure them.

    python benchmarks/validation.py            # fit, print everything
    python benchmarks/validation.py --save     # also write calibration_data/default_calibration.json
    python benchmarks/validation.py --shipped  # use the shipped calibration instead of fitting

Runs on CPU in about a minute (the jit compiles dominate).
"""
from __future__ import annotations

import argparse
import time

import pandas as pd

from mlsys_opt import calibration as C


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", action="store_true", help="write the fit to calibration_data/default_calibration.json")
    ap.add_argument("--shipped", action="store_true", help="use the shipped calibration file, do not fit")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--learning-rate", type=float, default=0.05)
    ap.add_argument("--no-loo", action="store_true", help="skip the leave-one-out refits")
    args = ap.parse_args(argv)
    pd.set_option("display.width", 200)

    t0 = time.perf_counter()
    if args.shipped:
        eff, cal = C.load_calibration(C.DEFAULT_CALIBRATION_PATH), None
        print(f"calibration: {C.DEFAULT_CALIBRATION_PATH}")
    else:
        cal = C.calibrate(steps=args.steps, learning_rate=args.learning_rate)
        eff = cal.eff
        print(f"calibration: fitted {', '.join(cal.fitted)} on {len(cal.fitted_on)} rows; "
              f"loss {cal.loss_before:.5f} -> {cal.loss_after:.5f} "
              f"(mean squared log error over the fit targets)")
    kw = dict(steps=args.steps, learning_rate=args.learning_rate)
    loo = {} if args.no_loo else {by: C.leave_one_out(by=by, **kw) for by in ("row", "source")}
    every = {} if args.no_loo else {by: C.leave_one_out(by=by, fit=C.FIT_PARAMS, **kw) for by in ("row", "source")}
    df = C.validate(calibrated=eff)
    print()
    print(C.format_validation_table(df, loo))
    if cal is not None:
        print("\ncandidate parameters: the fit rows each measures (its leading elasticity) and their "
              f"sources; fitted when >= {C.MIN_SOURCES} sources measure it")
        print(C.identification().drop(columns="rows").to_string())
        print("\nparameters (elasticity = ∂log prediction/∂log θ over the fit targets; "
              "rel_std_err from Gauss-Newton, large = the rows do not pin it down):")
        print(cal.sensitivity.to_string(float_format=lambda x: f"{x:.4g}"))

    def line(frame):
        b, a = frame["before_abs_error_pct"], frame["after_abs_error_pct"]
        return f"median {b.median():.1f} % -> {a.median():.1f} %; worst {b.max():.1f} % -> {a.max():.1f} %"

    for by, frame in loo.items():
        print(f"\nleave-one-out by {by}: held-out |error| % with the defaults -> after refitting without it")
        print(frame.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        print(f"  {line(frame)}")
        print(f"  (all four candidates fitted in every fold: {line(every[by])})")
    if args.save and cal is not None:
        path = C.save_calibration(cal, C.DEFAULT_CALIBRATION_PATH)
        print(f"\nwrote {path}")
    print(f"\n[{time.perf_counter() - t0:.1f} s]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
