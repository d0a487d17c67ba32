"""Shared setup of the `mlsys-opt` commands: output, user catalogs, compile cache, flag parsers.

Exit codes, environment variables (MLSYS_OPT_CATALOG, MLSYS_OPT_CACHE_DIR) and
the helpers every command module uses (``_out``/``_err``/``_print_json``,
``_catalog``/``_space``/``_eff``, ``enable_compile_cache``, argparse integer
types, ``KEY=VALUE`` lists).  See ``mlsys_opt/cli/app.py`` for the command line itself.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from ...errors import MlsysOptError

EXIT_OK, EXIT_INPUT, EXIT_INFEASIBLE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 2, 3, 130, 143
CATALOG_ENV = "MLSYS_OPT_CATALOG"
CACHE_ENV = "MLSYS_OPT_CACHE_DIR"
PROG = "mlsys-opt"


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- shared setup

class _Entries(dict):
    """Entries of one kind from a user file (``label`` names the file in error messages)."""

    def __init__(self, data, label: str):
        super().__init__(data)
        self.label = label


def catalog_paths(args) -> list[str]:
    env = [p for p in os.environ.get(CATALOG_ENV, "").split(os.pathsep) if p.strip()]
    return env + list(getattr(args, "catalog", None) or [])


def load_user_catalog(paths: Sequence[str]):
    """The built-in catalog plus every user file in `paths` (later files override earlier ones)."""
    from ...catalog import load_catalog
    from ...catalog._load import KINDS, kind_of, read_toml
    cat = load_catalog()
    for path in paths:
        if not Path(path).is_file():
            raise MlsysOptError(f"catalog file {path!r} (from --catalog or ${CATALOG_ENV}) "
                                f"{'is not a regular file' if Path(path).exists() else 'does not exist'}")
        data = read_toml(path, path)
        for kind, entries in data.items():
            try:
                k = kind_of(kind)
            except MlsysOptError:
                raise MlsysOptError(f"{path}: [{kind}] is not a catalog kind (allowed top-level tables: "
                                    f"{', '.join(KINDS)}, e.g. [accelerators.my_chip])") from None
            if not isinstance(entries, dict):
                raise MlsysOptError(f"{path}: [{kind}] must hold tables of entries, e.g. [{k}.my_entry]")
            cat = cat.with_entries(k, _Entries(entries, path))
    return cat


def _catalog(args):
    if getattr(args, "_catalog", None) is None:
        args._catalog = load_user_catalog(catalog_paths(args))
    return args._catalog


def _space(args, source):
    """The validated spec `source` (a file's Space comes from the spec cache when it was validated before:
    ``cli.spec_cache``)."""
    from ..spec_cache import load_space_cached
    return load_space_cached(source, _catalog(args))


def _eff(args):
    path = getattr(args, "calibration", None)
    if not path:
        return None
    from ...calibration import load_calibration
    if Path(path).exists() and not Path(path).is_file():
        raise MlsysOptError(f"--calibration {path}: not a regular file; expected a .json or .toml file "
                            "written by 'mlsys-opt calibrate -o FILE'")
    try:
        return load_calibration(path)
    except UnicodeDecodeError as exc:
        raise MlsysOptError(f"--calibration {path}: not UTF-8 text (byte offset {exc.start}); expected a .json "
                            "or .toml file written by 'mlsys-opt calibrate -o FILE'") from None
    except RecursionError:
        raise MlsysOptError(f"--calibration {path}: values nested too deeply; expected a .json or .toml file "
                            "written by 'mlsys-opt calibrate -o FILE'") from None


def enable_compile_cache() -> str | None:
    """Persist compiled XLA programs across runs ($MLSYS_OPT_CACHE_DIR; see ``mlsys_opt._enable_compile_cache``):
    the cache folder, or None when it is off."""
    from ... import _enable_compile_cache
    return _enable_compile_cache()


def _print_json(obj: Any) -> None:
    from ..report import dumps
    _out(dumps(obj))


def _progress(args):
    return False if getattr(args, "quiet", False) or getattr(args, "json", False) else None


def _note(args, text: str) -> None:
    """A progress note on stderr: only on a terminal, and not with --quiet/--json."""
    if sys.stderr.isatty() and not getattr(args, "quiet", False) and not getattr(args, "json", False):
        _err(text)


# --------------------------------------------------------------------------- output files

def check_writable(path: str | os.PathLike, flag: str) -> Path:
    """Refuse, before any work, an output path that is a folder, in a missing folder, or not writable.

    A regular file (or a new one) is probed by opening it for appending (a new file is removed again);
    devices and pipes are not probed (a failed write later goes to :func:`write_or_fallback`).
    """
    p = Path(path)
    if p.is_dir():
        raise MlsysOptError(f"{flag} {str(p)!r}: is a folder; give a file path, e.g. {str(p / ('out' + p.suffix))!r}")
    if not p.parent.is_dir():
        raise MlsysOptError(f"{flag} {str(p)!r}: folder {str(p.parent)!r} does not exist")
    if p.exists() and not p.is_file():
        return p
    existed = p.exists()
    try:
        with open(p, "ab"):
            pass
    except OSError as exc:
        raise MlsysOptError(f"{flag} {str(p)!r}: cannot write there ({exc.strerror or exc})") from None
    if not existed:
        try:
            p.unlink()
        except OSError:
            pass
    return p


def fallback_path(path: str | os.PathLike) -> Path:
    """Where an output that could not be written goes instead: the temporary folder, name kept."""
    import tempfile
    p = Path(path)
    return Path(tempfile.gettempdir()) / f"mlsys-opt-{p.stem}-{os.getpid()}{p.suffix}"


def write_or_fallback(write: Callable[[Path], Any], path: str | os.PathLike, flag: str) -> tuple[Path | None, str]:
    """write(path); on an OSError (disk full, ...) write(fallback_path(path)) instead.

    Returns (the path written or None, '' or a one-line message naming both paths).  Never raises
    OSError: the caller still prints its results and reports the message at the end (exit 2).
    """
    try:
        write(Path(path))
        return Path(path), ""
    except OSError as exc:
        first = f"{flag} {str(path)!r}: cannot write ({exc.strerror or exc})"
    alt = fallback_path(path)
    try:
        write(alt)
        return alt, f"{first}; saved to {alt} instead"
    except OSError as exc:
        return None, f"{first}; nor to {alt} ({exc.strerror or exc}); nothing was saved"


# --------------------------------------------------------------------------- argument parsing helpers

def _int_at_least(low: int, expected: str) -> Callable[[str], int]:
    """argparse type: an integer >= `low`; `expected` words the error ('a positive integer')."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return v
    parse.__name__ = f"int_at_least_{low}"
    return parse


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "an integer >= 0")


def _split_kv(items: Sequence[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise MlsysOptError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} tp=8")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def _count(n: float) -> str:
    """15T, 70.6B, 512 for a count."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:,.0f}"
