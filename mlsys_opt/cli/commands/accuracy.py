"""`mlsys-opt validate` and `mlsys-opt calibrate`: accuracy against published (or your own) measurements.

validate   every measured figure against the default model, a calibration (--calibration, default
           the shipped one) and a constant-η baseline; per row feasibility (memory per accelerator
           vs HBM) and the predicted bottleneck; --rows picks the set (default: all published rows);
           --loo source|org refits with each source (organisation) held out; --loo row is the
           per-row refit; --measurements FILE validates your own runs (CSV or TOML) instead.
calibrate  fits the efficiency model (optax) to the published rows (the candidates that >= 2
           organisations measure) or, with --measurements FILE, to your own runs (every candidate
           your rows lead: they are the authority on your cluster).
"""
from __future__ import annotations

from pathlib import Path

from ...errors import MlsysOptError
from .common import (
    EXIT_INPUT,
    EXIT_OK,
    PROG,
    _eff,
    _err,
    _out,
    _print_json,
    check_writable,
    enable_compile_cache,
    write_or_fallback,
)


def _rows(args):
    """(rows, skipped, label) of --measurements FILE or --rows SET."""
    from ... import calibration as C
    path = getattr(args, "measurements", None)
    if path:
        return C.read_measurements(path), [], f"{path}"
    which = getattr(args, "rows", None) or "all"
    ds = C.dataset(which)
    return ds.rows, ds.skipped, {"legacy": "measurements.json", "all": "all published rows"}.get(which, f"{which} rows")


def cmd_validate(args) -> int:
    from ... import calibration as C
    enable_compile_cache()
    eff = _eff(args)
    source = args.calibration or f"{C.DEFAULT_CALIBRATION_PATH} (shipped; --calibration FILE for another)"
    eff = C.load_calibration(C.DEFAULT_CALIBRATION_PATH) if eff is None else eff
    rows, skipped, label = _rows(args)
    df = C.validate(calibrated=eff, rows=rows)
    plan = C.build(rows)
    diag = C.diagnostics(eff, plan)
    if getattr(args, "measurements", None):     # your runs: where the model's step of each goes (one more compile)
        diag = diag.join(C.step_breakdowns(eff, plan))
    loo_by = getattr(args, "loo", None)
    loo = loso = None
    if loo_by == "row":
        loo = {"row": C.leave_one_out(rows=rows, by="row", steps=args.steps)}
    elif loo_by in ("source", "org"):
        loso = C.leave_one_source_out(rows, by=loo_by, steps=args.steps, plan=plan,
                                      min_sources=1 if getattr(args, "measurements", None) else C.MIN_SOURCES)
    mem = C.memory_check(rows, diag)
    if args.json:
        out = {"rows": df, "summary": df.attrs.get("summary"), "targets": C.check_targets(df, loo),
               "feasibility": diag.reset_index(), "not_evaluated": [{"id": i, "why": w} for i, w in skipped]}
        if len(mem):
            out["memory"] = mem
        if loo:
            out["leave_one_out"] = loo
        if loso is not None:
            out["leave_one_source_out"] = loso
            out["leave_one_source_out_summary"] = C.summarize_loso(loso).reset_index()
        _print_json(out)
        return EXIT_OK
    _out(f"Predictions vs measurements ({label}; error % = predicted / measured - 1):")
    _out(f"calibrated = {source}")
    _out(C.format_validation_table(df, loo))
    _out()
    bad = diag[~diag["feasible"]]
    _out(f"feasible (memory per accelerator <= HBM): {int(diag['feasible'].sum())} of {len(diag)} rows"
         + (f"; infeasible: {', '.join(f'{i} ({r.memory_gib:.0f}/{r.capacity_gib:.0f} GiB)' for i, r in bad.iterrows())}"
            if len(bad) else ""))
    _out("predicted bottleneck (calibrated): " + ", ".join(f"{k} {v}" for k, v in diag["bottleneck"].value_counts().items()))
    _out()
    _out("per row (calibrated model): memory per accelerator vs HBM, feasible, predicted bottleneck")
    _out(diag.drop(columns="step", errors="ignore").to_string(float_format=lambda x: f"{x:.1f}"))
    if "step" in diag.columns:
        _out()
        _out("where each training row's step goes in the model (calibrated; scenarios.training_breakdown):")
        for rid, step in diag["step"].dropna().items():
            _out(f"  {rid}: {step}")
    if len(mem):
        _out()
        _out(C.format_memory_check(mem, f"peak memory per accelerator vs measured ({len(mem)} rows with memory_gib)"))
    if loso is not None:
        _out()
        _out(C.format_loso(loso, diag, skipped=skipped, every_row=False))
    elif skipped:
        _out()
        _out(f"not evaluated ({len(skipped)} rows): " + "; ".join(f"{i}: {w}" for i, w in skipped))
    return EXIT_OK


def cmd_calibrate(args) -> int:
    from ... import calibration as C
    if args.output and Path(args.output).suffix.lower() not in (".json", ".toml"):
        raise MlsysOptError(f"-o {args.output!r}: a calibration is written as .json or .toml")
    if args.output:
        check_writable(args.output, "-o")       # before the fit, not after it (issue 16)
    enable_compile_cache()
    user = bool(getattr(args, "measurements", None))
    rows, _, label = _rows(args)
    min_sources = 1 if user else C.MIN_SOURCES
    cal = C.calibrate(rows, steps=args.steps, min_sources=min_sources)
    df = C.validate(calibrated=cal.eff, rows=rows)
    written, failed = None, ""          # a write failure keeps the fit: printed, saved to a fallback, exit 2
    if args.output:
        written, failed = write_or_fallback(lambda p: C.save_calibration(cal, p), args.output, "-o")
    if args.json:
        _print_json({"parameters": cal.eff._asdict(), "fitted": list(cal.fitted), "loss_before": cal.loss_before,
                     "loss_after": cal.loss_after, "validation": df, "file": str(written) if written else None})
        if failed:
            _err(f"{PROG}: error: {failed}")
        return EXIT_INPUT if failed else EXIT_OK
    _out(f"fitted {', '.join(cal.fitted) or 'nothing'} on {len(cal.fitted_on)} measurements ({label}): log-loss "
         f"{cal.loss_before:.4g} -> {cal.loss_after:.4g}")
    for name in cal.fitted:
        _out(f"  {name:<24} {float(getattr(C.DEFAULT_EFFICIENCY, name)):>10.4g} -> {float(getattr(cal.eff, name)):.4g}")
    ident = C.identification(rows, min_sources=min_sources)
    for name, r in ident[~ident["fitted"]].iterrows():
        _out(f"  {name:<24} not fitted: measured by {r.n_organisations} organisation(s) "
             f"(needs {min_sources}: a parameter one organisation pins cannot be checked on held-out rows)")
    _out()
    _out(C.format_validation_table(df))
    if written:
        _out()
        _out(f"wrote {written}; use it with --calibration {written}")
    if failed:
        _err(f"{PROG}: error: {failed}")
        return EXIT_INPUT
    return EXIT_OK
