"""The `mlsys-opt` command line: the parser and `main` (``app``), the subcommands (``commands``),
and what they print and draw (``report`` tables, ``audit`` the full-stack audit, ``plots`` figures)."""
from __future__ import annotations

from typing import Sequence

from .app import console_main


def main(argv: Sequence[str] | None = None) -> int:
    """The installed `mlsys-opt` script and `python -m mlsys_opt`: :func:`app.console_main` (bugs print a
    traceback and exit 1).

    With ``argv`` None -- the process's own command line, i.e. the script -- the process ends as soon
    as the command is done (:func:`app.exit_now`: output flushed, atexit handlers run, then
    ``os._exit``), skipping the interpreter's ~0.3 s teardown of JAX, XLA and pandas.  Given an
    explicit ``argv`` (embedding, tests) it returns the exit code like ``console_main``.
    """
    code = console_main(argv)
    if argv is None:
        from .app import exit_now
        exit_now(code)
    return code


__all__ = ["main", "console_main"]
