"""The `mlsys-opt` command line: the parser and `main` (``app``), the subcommands (``commands``),
and what they print and draw (``report`` tables, ``audit`` the full-stack audit, ``plots`` figures)."""
from __future__ import annotations

from .app import console_main as main   # the installed script: bugs print a traceback and exit 1

__all__ = ["main"]
