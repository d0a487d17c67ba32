"""XLA compile options for the package's small-batch programs (sensitivities, fits, solves, points).

Used by the sensitivity kernels (``point.sensitivity``, ``point.table_eval``'s sensitivity
columns), the calibration fit and row evaluation (``calibration.fit._fit``,
``calibration.rows._evaluate_jit``), the gradient and synthesis solves (``search.gradient``,
``search.synthesis``), the layout searches (``search.fleet_layouts``: 4,096-row chunks, 10-30 ms a
call; compile 3.7 -> 2.5 s training, 2.7 -> 1.8 s serving) and ``point.evaluation`` (a point or a
small grid): programs that run on a few configurations, where compiling is most of a call's time.

XLA's CPU backend compiles each fusion of a program with its MLIR fusion emitters by default.
For the sensitivity kernels (``point.sensitivity``: the scenario's forward-mode Jacobian on
chunks of at most 1,024 configurations) the older elemental IR emitters
(``xla_cpu_use_fusion_emitters=False``) compile the same program in ~40-60 % of the CPU time
with the same run time, measured on the 2-core CPU in float64 (compile CPU-s / run CPU-ms per
1,024 configurations, default -> these options):

=========================  ===============  ===============
kernel                     compile, CPU-s   run, CPU-ms
=========================  ===============  ===============
serving, dense (jacfwd)    25.3 -> 14.4     196 -> 198
training, dense            10.4 -> 6.4      60 -> 65
serving, sparse, 53 inputs 63.3 -> 44.4     57 -> 59
=========================  ===============  ===============

First calls, cold cache, 2-core CPU: ``mlsys_opt.calibrate()`` 46.7 -> 25.1 CPU-s (the same fitted
loss, the same 0.2 s per later call); ``mlsys-opt sensitivity`` (float32) 14.0 -> 9.8 s (training
point) and 23.0 -> 15.9 s (serving); ``mlsys-opt evaluate`` 16.2 -> 10.3 s and 31.0 -> 19.6 s.

A function compiled with options cannot be called inside another ``jax.jit`` (JAX refuses
``compiler_options`` on a nested jit): the kernels that other programs trace take ``jit=False``.
The sweep step is NOT compiled this way: its wide elementwise chunks (65,536 lanes) run at half
the rate with the older emitters (training 1.2e7 -> 6e6 configurations/s).

:func:`jit_options` gives the keyword arguments for ``jax.jit``: the options above on the CPU
backend when the installed XLA knows them (probed once by compiling a one-operation program; an
XLA that dropped the flag answers "No such compile option"), else none.  The numbers are the
same either way (IEEE arithmetic, no fast-math in either emitter; tests/test_sensitivity.py
compares them with finite differences and tests/test_sensitivity_sparse.py with jacfwd).
"""
from __future__ import annotations

import functools

import jax

SMALL_BATCH_OPTIONS = {"xla_cpu_use_fusion_emitters": False}

__all__ = ["SMALL_BATCH_OPTIONS", "jit_options"]


@functools.lru_cache(maxsize=1)
def jit_options() -> dict:
    """``{"compiler_options": SMALL_BATCH_OPTIONS}`` on a CPU backend whose XLA accepts them, else ``{}``."""
    if jax.default_backend() != "cpu":
        return {}
    kw = {"compiler_options": dict(SMALL_BATCH_OPTIONS)}
    try:
        jax.jit(lambda x: x + 1, **kw).lower(1.0).compile()
    except (TypeError, jax.errors.JaxRuntimeError):      # jit without compiler_options; an unknown option
        return {}
    return kw
