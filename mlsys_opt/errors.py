"""The project's own error type for bad input from a person.

Every message names where the mistake is (file, entry/key, field), the value
given and what is allowed, e.g.::

    spaces/x.toml: [axes.hardware] value 'h1000' is not a known accelerator;
    did you mean 'h100_sxm'? (allowed: names from `mlsys-opt catalog list accelerators`)

The CLI catches :class:`MlsysOptError` and exits non-zero with the one-line
message and no traceback. Nothing inside jit raises it: infeasible
configurations are values (constraints > 0), never exceptions.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class MlsysOptError(ValueError):
    """Bad input from a person: a spec file, catalog entry, CLI flag or API call."""


class CatalogError(MlsysOptError):
    """A catalog data file or a user-supplied catalog entry is invalid."""


class SpecError(MlsysOptError):
    """A design-space spec (spaces/*.toml or a dict) is invalid."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """' did you mean 'x'?' for the closest of `choices`, or '' when none is close.

    To append it to a clause use :func:`did_you_mean`, which brings its own
    separator: ``f"...;{suggest(...)} (allowed: ...)"`` leaves "...; (allowed"
    when nothing is close.
    """
    close = difflib.get_close_matches(str(name).lower(), [c.lower() for c in choices], n=1, cutoff=0.5)
    if not close:
        return ""
    lookup = {c.lower(): c for c in choices}
    return f" did you mean '{lookup[close[0]]}'?"


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the closest of `choices`, or '' when none is close.

    Written right after a clause, the message reads cleanly either way::

        f"unknown key {key!r}{did_you_mean(key, allowed)} (allowed: {', '.join(allowed)})"
        -> "unknown key 'tpp'; did you mean 'tp'? (allowed: tp, pp)"
        -> "unknown key 'zzz' (allowed: tp, pp)"
    """
    hint = suggest(name, choices)
    return f";{hint}" if hint else ""


def where(source: str | None, *parts: str) -> str:
    """Join a location prefix: where('a.toml', 'h100', 'hbm') -> "a.toml: h100.hbm"."""
    loc = ".".join(p for p in parts if p)
    if source and loc:
        return f"{source}: {loc}"
    return source or loc or "<input>"
