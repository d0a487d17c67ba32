"""`--timings`: where a command's seconds go, including inside JAX's compile step.

The sweep fills a dict of phases (``import`` since the process started, ``spec``,
``compile``, ``evaluate``, ``reduce``, ``gather``, ``frame``, ``write``).  The
``compile`` phase is split further with JAX's own monitoring events
(:class:`CompileEvents`, through the public ``jax.monitoring`` listeners):

- ``trace``: Python tracing to jaxprs (``/jax/core/compile/jaxpr_trace_duration``);
- ``lower``: jaxpr to an MLIR module (``.../jaxpr_to_mlir_module_duration``);
- ``xla``: XLA compilation, or loading the executable from the persistent
  compilation cache on a hit (``.../backend_compile_duration``);
- ``load``: reading the sweep's compiled step from the step cache (``sweeps.executables``), which
  skips the three above when it hits (the line says whether it did);

with the number of programs compiled and of persistent-cache hits and misses
(``/jax/compilation_cache/cache_hits`` / ``cache_misses``).  Nested traces are
counted once: each kind of event adds the union of its time spans.

Nothing here imports JAX until a :class:`CompileEvents` is entered.
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter, defaultdict

ORDER = ("import", "spec", "compile", "evaluate", "reduce", "gather", "frame", "write")
_SPANS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
          "/jax/core/compile/backend_compile_duration": "xla"}
_COUNTS = {"/jax/compilation_cache/cache_hits": "cache_hits",
           "/jax/compilation_cache/cache_misses": "cache_misses"}


def since_process_start() -> float:
    """Seconds since this process started (Linux: /proc/self/stat vs CLOCK_BOOTTIME; else 0)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


class CompileEvents:
    """Context manager collecting JAX's compile events while it is entered.

    ``.seconds``: {"trace", "lower", "xla"} -> seconds (union of the event spans);
    ``.counts``: {"trace", "lower", "xla"} -> events, plus "cache_hits", "cache_misses".
    """

    def __init__(self):
        self.spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.counts: Counter = Counter()

    def _span(self, event: str, start: float, end: float, **_kw) -> None:
        name = _SPANS.get(event)
        if name is not None:
            self.spans[name].append((float(start), float(end)))
            self.counts[name] += 1

    def _event(self, event: str, **_kw) -> None:
        name = _COUNTS.get(event)
        if name is not None:
            self.counts[name] += 1

    def __enter__(self) -> CompileEvents:
        from jax import monitoring
        monitoring.register_event_time_span_listener(self._span)
        monitoring.register_event_listener(self._event)
        return self

    def __exit__(self, *exc) -> None:
        from jax import monitoring
        monitoring.unregister_event_time_span_listener(self._span)
        monitoring.unregister_event_listener(self._event)

    @property
    def seconds(self) -> dict[str, float]:
        return {name: _union(spans) for name, spans in self.spans.items()}


def _union(spans: list[tuple[float, float]]) -> float:
    """Total length of the union of [start, end] intervals (nested traces counted once)."""
    total, cur_lo, cur_hi = 0.0, None, None
    for lo, hi in sorted(spans):
        if cur_hi is None or lo > cur_hi:
            if cur_hi is not None:
                total += cur_hi - cur_lo
            cur_lo, cur_hi = lo, hi
        else:
            cur_hi = max(cur_hi, hi)
    if cur_hi is not None:
        total += cur_hi - cur_lo
    return total


def format_timings(timings: dict, events: CompileEvents | None = None, cpu_s: float | None = None) -> str:
    """'timings (s):' then one line per phase in the order they run, the compile split, and the total.

    The phase lines are ``  NAME  SECONDS`` (two fields: benchmarks/startup.py reads them); the
    compile split is indented further and says how many programs XLA compiled or loaded.  `cpu_s`
    (the process's CPU seconds, all threads) follows the total: on a shared machine the wall
    seconds grow with the others' load, the CPU seconds much less.
    """
    steps = timings.get("_step_cache")       # (status, seconds, folder) of sweeps.executables, when it is on
    rows = [(k, timings[k]) for k in ORDER if k in timings] + [(k, v) for k, v in timings.items()
                                                                if k not in ORDER and not k.startswith("_")]
    width = max([len(k) for k, _ in rows] + [8])
    lines = ["timings (s):"]
    for k, v in rows:
        lines.append(f"  {k:<{width}} {v:8.3f}")
        if k == "compile" and events is not None:
            sec, n = events.seconds, events.counts
            hits, misses = n.get("cache_hits", 0), n.get("cache_misses", 0)
            xla_what = (f"{n.get('xla', 0)} program(s): {hits} loaded from the compile cache, "
                        f"{n.get('xla', 0) - hits} compiled" + (f" ({misses} cache miss(es))" if misses else ""))
            parts = [("trace", "Python tracing to jaxprs"), ("lower", "jaxpr -> MLIR"), ("xla", xla_what)]
            for part, what in parts:
                lines.append(f"    {part:<{width - 2}} {sec.get(part, 0.0):8.3f}  {what}")
        if k == "compile" and steps is not None:
            status, load_s, folder = steps
            what = ("load cached executable: the step loaded from the step cache (no tracing)" if status == "loaded"
                    else f"load cached executable: none, step {status}")
            lines.append(f"    {'load':<{width - 2}} {load_s:8.3f}  {what} ({folder})")
    lines.append(f"  {'total':<{width}} {sum(v for _, v in rows):8.3f}"
                 + (f"  (process CPU {cpu_s:.3f} s, load average {_load()})" if cpu_s is not None else ""))
    return "\n".join(lines) + "\n"


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (OSError, AttributeError):
        return "?"


def print_timings(timings: dict, events: CompileEvents | None = None) -> None:
    """:func:`format_timings` on stderr, with the process's CPU seconds so far."""
    sys.stderr.write(format_timings(timings, events, cpu_s=time.process_time()))
    sys.stderr.flush()
