"""Reading people's TOML files (catalogs, specs): size-limited, UTF-8, bounded nesting.

Each function raises the caller's error class (CatalogError, SpecError) with ONE message naming
the file; `read_toml` (catalog files), `catalog._load` and `space.spec` use them.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ..errors import CatalogError

KINDS: tuple[str, ...] = ("accelerators", "models", "fabrics", "regions")   # the catalog's entry kinds
_HEADER = re.compile(r"^\s*\[\s*([^\[\]#]+?)\s*\]\s*(?:#.*)?$")
MAX_TOML_DEPTH = 32   # arrays/tables inside each other; real files use 3-4, tomllib recurses past ~450


MAX_FILE_BYTES = 64 * 2**20   # a spec or catalog file is kilobytes; /dev/zero or a 10 GB log is a mistake


def read_limited(path: str | Path, label: str, error: type[Exception] = CatalogError,
                 limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (devices, pipes and folders refused; OSError passes)."""
    p = Path(path)
    if p.exists() and not p.is_file():
        raise error(f"{label}: not a regular file (a folder, device or pipe); give a TOML file")
    with open(p, "rb") as fh:
        raw = fh.read(limit + 1)
    if len(raw) > limit:
        raise error(f"{label}: larger than {limit // 2**20} MiB; a TOML file of this kind is a few kilobytes")
    return raw


def decode_text(raw: bytes, label: str, error: type[Exception] = CatalogError) -> str:
    """UTF-8 text of a file's bytes (a leading UTF-8 BOM is dropped); `error` names the file otherwise."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{label}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                    "save the file as UTF-8") from None


def loads_toml(text: str, label: str, error: type[Exception] = CatalogError,
               syntax: str = "not valid TOML") -> dict[str, Any]:
    """tomllib.loads for people's files: a BOM is accepted; syntax errors, and nesting deeper than
    MAX_TOML_DEPTH (tomllib would raise RecursionError near 450 levels), raise `error` naming `label`."""
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{label}: {syntax}: {exc}") from None
    except RecursionError:
        data = None
    stack = [(data, 0)] if data is not None else []
    while stack:
        value, depth = stack.pop()
        if depth > MAX_TOML_DEPTH:
            data = None
            break
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    if data is None:
        raise error(f"{label}: values nested too deeply (more than {MAX_TOML_DEPTH} levels of arrays or "
                    "tables inside each other)")
    return data


def read_toml(path: str | Path, label: str | None = None) -> dict[str, Any]:
    """tomllib with duplicate-table and syntax errors turned into CatalogError naming the file."""
    p = Path(path)
    label = label or str(path)
    try:
        text = decode_text(read_limited(p, label, CatalogError), label, CatalogError)
    except OSError as exc:
        raise CatalogError(f"{label}: cannot read catalog file ({exc.strerror or exc})") from None
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if not m:
            continue
        header = re.sub(r"\s*\.\s*", ".", m.group(1).strip())
        if header in seen:
            entry = header.split(".")[-1] if header.count(".") == 1 and header.split(".")[0] in KINDS \
                else header.split(".")[0]
            raise CatalogError(f"{label}: [{entry}] is defined twice (lines {seen[header]} and {lineno}); "
                               "entry names must be unique")
        seen[header] = lineno
    return loads_toml(text, label, CatalogError)
