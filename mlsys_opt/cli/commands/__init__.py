"""The `mlsys-opt` subcommands, grouped by what they answer (the parser and `main` are in mlsys_opt/cli/app.py).

- ``common``: exit codes, environment variables, output, user catalogs, compile cache, flag types.
- ``front``: ``sweep`` and ``search`` (a space's Pareto front, printed and saved).
- ``evaluate``: ``evaluate`` and ``sensitivity`` (one configuration from flags; the seed 003 audit).
- ``catalog``: ``catalog list|show|add`` and ``spaces list|show``.
- ``synthesize``: ``synthesize`` (inverse walls, wall 22).
- ``accuracy``: ``validate`` and ``calibrate``.
- ``warmup``: ``warmup`` (the ready spaces' sweeps compiled into the persistent compile cache).

Each command is ``cmd_<name>(args) -> exit code``.
"""
