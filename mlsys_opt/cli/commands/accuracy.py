"""`mlsys-opt validate` and `mlsys-opt calibrate`: accuracy against published measurements."""
from __future__ import annotations

from pathlib import Path

from ...errors import MlsysOptError
from .common import EXIT_OK, _eff, _out, _print_json, enable_compile_cache


def cmd_validate(args) -> int:
    from ... import calibration as C
    enable_compile_cache()
    eff = _eff(args)
    source = args.calibration or f"{C.DEFAULT_CALIBRATION_PATH} (shipped; --calibration FILE for another)"
    eff = C.load_calibration(C.DEFAULT_CALIBRATION_PATH) if eff is None else eff
    df = C.validate(calibrated=eff)
    loo = {by: C.leave_one_out(by=by) for by in ("row", "source")} if getattr(args, "loo", False) else None
    if args.json:
        out = {"rows": df, "summary": df.attrs.get("summary"), "targets": C.check_targets(df, loo)}
        if loo:
            out["leave_one_out"] = loo
        _print_json(out)
    else:
        _out("Predictions vs published measurements (error % = predicted / measured - 1):")
        _out(f"calibrated = {source}")
        _out(C.format_validation_table(df, loo))
    return EXIT_OK


def cmd_calibrate(args) -> int:
    from ... import calibration as C
    if args.output and Path(args.output).suffix.lower() not in (".json", ".toml"):
        raise MlsysOptError(f"-o {args.output!r}: a calibration is written as .json or .toml")
    enable_compile_cache()
    cal = C.calibrate(steps=args.steps)
    df = C.validate(calibrated=cal.eff)
    if args.output:
        C.save_calibration(cal, args.output)
    if args.json:
        _print_json({"parameters": cal.eff._asdict(), "fitted": list(cal.fitted), "loss_before": cal.loss_before,
                     "loss_after": cal.loss_after, "validation": df, "file": args.output})
        return EXIT_OK
    _out(f"fitted {', '.join(cal.fitted)} on {len(cal.fitted_on)} measurements: log-loss "
         f"{cal.loss_before:.4g} -> {cal.loss_after:.4g}")
    for name in cal.fitted:
        _out(f"  {name:<24} {float(getattr(C.DEFAULT_EFFICIENCY, name)):>10.4g} -> {float(getattr(cal.eff, name)):.4g}")
    ident = C.identification()
    for name, r in ident[~ident["fitted"]].iterrows():
        _out(f"  {name:<24} not fitted: measured by {r.n_sources} source(s) "
             f"(needs {C.MIN_SOURCES}: a parameter one publication pins cannot be checked on held-out rows)")
    _out()
    _out(C.format_validation_table(df))
    if args.output:
        _out()
        _out(f"wrote {args.output}; use it with --calibration {args.output}")
    return EXIT_OK
