"""Argument checks for the Python API boundary (issue 7: every bad input gets a clear error).

Spec files and catalog entries are validated by `space.py` and `catalog/`;
this module is for the arguments a person passes to a Python function
(``sweep(chunk_size=...)``, ``search(evals=...)``, ``calibrate(...)``).  Each
check returns the value in canonical form or raises ONE
`mlsys_opt.errors.MlsysOptError` naming where (the function), the argument,
the value given and what is allowed::

    >>> check_positive_int("chunk_size", -1, "sweep()")
    Traceback (most recent call last):
    ...
    mlsys_opt.errors.MlsysOptError: sweep(): chunk_size: expected an integer >= 1; got -1

    >>> check_choice("dtype", "float61", ("float32", "float64"), "sweep()")
    Traceback (most recent call last):
    ...
    mlsys_opt.errors.MlsysOptError: sweep(): dtype: 'float61' is not allowed; did you mean 'float64'? (allowed: float32, float64)

Host-side only (plain Python / numpy): never call these inside jit, where
bad values are constraint values instead (docs/CONTRACTS.md).
"""
from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import MlsysOptError, suggest

__all__ = ["check_type", "check_int", "check_positive_int", "check_number", "check_finite",
           "check_positive", "check_nonnegative", "check_fraction", "check_choice", "check_float_dtype",
           "check_output_path", "check_existing_file"]

FLOAT_DTYPES = ("float32", "float64")


def _head(name: str, where: str | None) -> str:
    return f"{where}: {name}" if where else name


def _fail(name: str, where: str | None, msg: str) -> MlsysOptError:
    return MlsysOptError(f"{_head(name, where)}: {msg}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_type(name: str, value: Any, types: type | tuple[type, ...], where: str | None = None,
               *, what: str | None = None) -> Any:
    """`value` if it is an instance of `types` (bool never counts as a number); else MlsysOptError.

    what: words for the message ("a path", "an Efficiency"); default: the type names.
    """
    types = types if isinstance(types, tuple) else (types,)
    numeric = any(t in (int, float, numbers.Real, numbers.Integral, numbers.Number) for t in types)
    if isinstance(value, types) and not (numeric and isinstance(value, bool) and bool not in types):
        return value
    words = what or " or ".join(t.__name__ for t in types)
    raise _fail(name, where, f"expected {words}; got {_shown(value)} ({type(value).__name__})")


def check_int(name: str, value: Any, where: str | None = None, *, low: int | None = None,
              high: int | None = None) -> int:
    """`value` as a Python int within [low, high]; integral floats (8.0) and numpy ints are accepted.

    Refused: bool, non-integral or non-finite floats, strings, None.
    """
    bounds = [f">= {low}"] if low is not None else []
    bounds += [f"<= {high}"] if high is not None else []
    want = "expected an integer" + (" " + " and ".join(bounds) if bounds else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise _fail(name, where, f"{want}; got {_shown(value)}")
    if isinstance(value, numbers.Integral):
        out = int(value)
    else:
        x = float(value)
        if not math.isfinite(x) or x != math.floor(x):
            raise _fail(name, where, f"{want}; got {_shown(value)}")
        out = int(x)
    if (low is not None and out < low) or (high is not None and out > high):
        raise _fail(name, where, f"{want}; got {_shown(value)}")
    return out


def check_positive_int(name: str, value: Any, where: str | None = None) -> int:
    """check_int(..., low=1)."""
    return check_int(name, value, where, low=1)


def check_number(name: str, value: Any, where: str | None = None) -> float:
    """`value` as a finite Python float (bool, strings, None, NaN and inf refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise _fail(name, where, f"expected a finite number; got {_shown(value)}")
    x = float(value)
    if not math.isfinite(x):
        raise _fail(name, where, f"expected a finite number; got {_shown(value)}")
    return x


def check_finite(name: str, value: Any, where: str | None = None) -> Any:
    """`value` unchanged if it is a number or an array with no NaN/inf; else MlsysOptError.

    For arrays the message gives how many entries are bad and the first bad index.
    """
    if isinstance(value, (bool, np.bool_)):
        raise _fail(name, where, f"expected finite numbers; got {_shown(value)}")
    if isinstance(value, numbers.Real):
        check_number(name, value, where)
        return value
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(name, where, f"expected finite numbers; got {_shown(value)}") from None
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        where_bad = f" at index {first[0] if len(first) == 1 else first}" if first else ""
        raise _fail(name, where, f"{int(bad.sum())} of {arr.size} values are NaN or infinite "
                                 f"(first{where_bad}: {float(arr[first]) if first else float(arr)!r}); "
                                 "expected finite numbers")
    return value


def check_positive(name: str, value: Any, where: str | None = None) -> float:
    """`value` as a finite float > 0."""
    x = check_number(name, value, where)
    if not x > 0:
        raise _fail(name, where, f"expected a finite number > 0; got {_shown(value)}")
    return x


def check_nonnegative(name: str, value: Any, where: str | None = None) -> float:
    """`value` as a finite float >= 0."""
    x = check_number(name, value, where)
    if not x >= 0:
        raise _fail(name, where, f"expected a finite number >= 0; got {_shown(value)}")
    return x


def check_fraction(name: str, value: Any, where: str | None = None, *, open_low: bool = False) -> float:
    """`value` as a float in [0, 1] (or (0, 1] with open_low)."""
    x = check_number(name, value, where)
    ok = (0 < x <= 1) if open_low else (0 <= x <= 1)
    if not ok:
        raise _fail(name, where, f"expected a fraction in {'(0, 1]' if open_low else '[0, 1]'}; got {_shown(value)}")
    return x


def check_choice(name: str, value: Any, allowed: Iterable[str], where: str | None = None, *,
                 case_sensitive: bool = False) -> str:
    """The entry of `allowed` that `value` names (case-insensitive by default), with a suggestion on a miss."""
    allowed = tuple(allowed)
    if isinstance(value, str):
        if value in allowed:
            return value
        if not case_sensitive:
            lookup = {a.lower(): a for a in allowed}
            if value.strip().lower() in lookup:
                return lookup[value.strip().lower()]
    hint = suggest(str(value), allowed) if isinstance(value, str) else ""
    raise _fail(name, where, f"{_shown(value)} is not allowed{';' + hint if hint else ''} "
                             f"(allowed: {', '.join(allowed)})")


def check_float_dtype(name: str, value: Any, where: str | None = None,
                      allowed: Iterable[str] = FLOAT_DTYPES) -> np.dtype:
    """A numpy dtype among `allowed` (default float32, float64) from a dtype, type or name.

    float16 / bfloat16 are refused: the models' intermediate values (1e18 stand-ins,
    FLOP counts ~1e25) overflow them, which would turn results into NaN/inf.
    """
    allowed = tuple(allowed)
    try:
        dt = np.dtype(value)
        label = dt.name
    except TypeError:
        label = getattr(value, "__name__", None) or getattr(value, "name", None) or str(value)
        dt = None
    if dt is None or label not in allowed:
        hint = suggest(str(label), allowed) if isinstance(value, str) else ""
        raise _fail(name, where, f"{_shown(label)} is not allowed{';' + hint if hint else ''} "
                                 f"(allowed: {', '.join(allowed)})")
    return dt


def check_output_path(name: str, value: Any, where: str | None = None) -> Path:
    """A path a file can be written to: str/PathLike, not a directory, parent directory exists and is writable."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise _fail(name, where, f"expected a file path; got {_shown(value)}")
    path = Path(value)
    if path.is_dir():
        raise _fail(name, where, f"'{path}' is a directory; expected a file path such as '{path / 'sweep.npz'}'")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise _fail(name, where, f"the directory '{parent}' of '{path}' does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise _fail(name, where, f"the directory '{parent}' of '{path}' is not writable")
    return path


def check_existing_file(name: str, value: Any, where: str | None = None) -> Path:
    """A path to an existing, readable regular file."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise _fail(name, where, f"expected a file path; got {_shown(value)}")
    path = Path(value)
    if not path.exists():
        raise _fail(name, where, f"'{path}' does not exist")
    if not path.is_file():
        raise _fail(name, where, f"'{path}' is not a regular file")
    if not os.access(path, os.R_OK):
        raise _fail(name, where, f"'{path}' is not readable")
    return path
