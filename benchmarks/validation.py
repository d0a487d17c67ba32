"""Fidelity benchmark: the model against 25 published measurements, before and after calibration.

Prints (the numbers the README quotes):
  1. every compared figure: measured, predicted with the default efficiency model,
     with the calibrated one, and with a constant-η roofline baseline, with % errors;
  2. median / worst |error| per category and per accuracy-target group;
  3. the accuracy targets and whether they are met;
  4. the fitted parameters with their elasticities and standard errors;
  5. leave-one-out (per row and per source): held-out |error| before vs after.

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
    loo = {} if args.no_loo else {by: C.leave_one_out(steps=args.steps, learning_rate=args.learning_rate, by=by)
                                  for by in ("row", "source")}
    df = C.validate(calibrated=eff)
    print()
    print(C.format_validation_table(df, loo.get("row")))
    if cal is not None:
        print("\nfitted parameters (elasticity = ∂log prediction/∂log θ over the fit targets; "
              "rel_std_err from Gauss-Newton, large = the rows do not pin it down):")
        print(cal.sensitivity.to_string(float_format=lambda x: f"{x:.4g}"))
    for by, frame in loo.items():
        print(f"\nleave-one-out by {by}: held-out |error| % with the defaults -> after refitting without it")
        print(frame.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        print(f"  median {frame['before_abs_error_pct'].median():.1f} % -> {frame['after_abs_error_pct'].median():.1f} %;"
              f" worst {frame['before_abs_error_pct'].max():.1f} % -> {frame['after_abs_error_pct'].max():.1f} %")
    if args.save and cal is not None:
        path = C.save_calibration(cal, C.DEFAULT_CALIBRATION_PATH)
        print(f"\nwrote {path}")
    print(f"\n[{time.perf_counter() - t0:.1f} s]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
