"""`mlsys-opt validate` and `mlsys-opt calibrate`: accuracy against published measurements."""
from __future__ import annotations

from pathlib import Path

from ..errors import MlsysOptError
from .common import EXIT_OK, _eff, _out, _print_json, enable_compile_cache


def cmd_validate(args) -> int:
    from ..calibration import format_validation_table, validate
    enable_compile_cache()
    eff = _eff(args)
    df = validate(calibrated=eff) if eff is not None else validate()
    if args.json:
        _print_json({"rows": df, "summary": df.attrs.get("summary")})
    else:
        _out("Predictions vs published measurements (error % = predicted / measured - 1):")
        _out(format_validation_table(df))
    return EXIT_OK


def cmd_calibrate(args) -> int:
    from .. import calibration as C
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
    _out()
    _out(C.format_validation_table(df))
    if args.output:
        _out()
        _out(f"wrote {args.output}; use it with --calibration {args.output}")
    return EXIT_OK
