"""Calibration files: write a fitted efficiency model (JSON or TOML) and read it back."""
from __future__ import annotations

import json
import math

try:                       # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the tomli backport (pyproject dependency)
    import tomli as tomllib
from pathlib import Path

from ..errors import MlsysOptError, did_you_mean
from ..scenarios.efficiency import DEFAULT_EFFICIENCY, Efficiency
from .fit import Calibration, _kind
from .rows import DEFAULT_CALIBRATION_PATH


# --------------------------------------------------------------------------- calibration files
def save_calibration(cal: Calibration | Efficiency, path: str | Path) -> Path:
    """Write a calibration (JSON, or TOML when the name ends in .toml): per parameter its value,
    default and what it was fitted on (the measurement ids in `fitted_on`, or the default)."""
    path = Path(path)
    eff = cal.eff if isinstance(cal, Calibration) else cal
    fitted = set(cal.fitted) if isinstance(cal, Calibration) else set()
    meta = {"format": "mlsys_opt calibration 1",
            "note": "efficiency parameters (mlsys_opt.scenarios.efficiency); load with mlsys_opt.calibration.load_calibration",
            "fitted_on": list(cal.fitted_on) if isinstance(cal, Calibration) else []}
    if isinstance(cal, Calibration):
        meta.update(loss_before=round(cal.loss_before, 8), loss_after=round(cal.loss_after, 8))
    params = {n: {"value": float(getattr(eff, n)), "default": float(getattr(DEFAULT_EFFICIENCY, n)),
                  "fitted_on": f"the rows in fitted_on ({len(meta['fitted_on'])})" if n in fitted
                  else "not fitted (efficiency.py default or a user value)"} for n in Efficiency._fields}
    if path.suffix.lower() == ".toml":
        lines = [f"{k} = {json.dumps(v)}" for k, v in meta.items()]
        for n, p in params.items():
            lines += ["", f"[parameters.{n}]"] + [f"{k} = {json.dumps(v)}" for k, v in p.items()]
        text = "\n".join(lines)
    else:
        body = ",\n".join(f"  {json.dumps(n)}: {json.dumps(p)}" for n, p in params.items())
        text = "{\n" + "".join(f" {json.dumps(k)}: {json.dumps(v)},\n" for k, v in meta.items()) \
            + f' "parameters": {{\n{body}\n }}\n}}'
    path.write_text(text + "\n", encoding="utf-8")
    return path


def load_calibration(path: str | Path = DEFAULT_CALIBRATION_PATH) -> Efficiency:
    """Efficiency from a calibration file (JSON or TOML, as written by `save_calibration`).

    `parameters.<name>` is a table with `value` (or a bare number); parameters the file
    leaves out keep their DEFAULT_EFFICIENCY value.  Errors name the file and the field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except OSError as exc:
        raise MlsysOptError(f"{path}: cannot read calibration file ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MlsysOptError(f"{path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: "
                            f"{exc}") from None
    params = data.get("parameters") if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise MlsysOptError(f"{path}: parameters: missing; expected a table of efficiency parameters "
                            f"({', '.join(Efficiency._fields)})")
    values = {}
    for name, entry in params.items():
        where = f"{path}: parameters.{name}"
        if name not in Efficiency._fields:
            raise MlsysOptError(f"{where}: not an efficiency parameter{did_you_mean(name, Efficiency._fields)} "
                                f"(allowed: {', '.join(Efficiency._fields)})")
        value = entry.get("value") if isinstance(entry, dict) else entry
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise MlsysOptError(f"{where}.value: expected a finite number, got {value!r}")
        low, high = (0.0, 1.0) if _kind(name) == "frac" else (0.0, math.inf)
        if not low <= value <= high:
            raise MlsysOptError(f"{where}.value: {value!r} is out of range (allowed: "
                                f"{'0 to 1' if high == 1.0 else '>= 0'})")
        values[name] = float(value)
    return DEFAULT_EFFICIENCY._replace(**values)
