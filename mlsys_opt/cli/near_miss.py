"""How close a space with no feasible configuration comes, as `sweep`/`search` print it and --json gives it.

The numbers are ``sweeps.near_miss.NearMiss``'s (reduced on the device by the sweep, picked from the
archive by a search): the least-violating configuration, then for each limit that it breaks or that no
configuration meets, the best value any configuration that meets the structural constraints reaches
(how far to loosen the limit).  Human units here; --json keeps SI values with the unit in the key.
"""
from __future__ import annotations

from typing import Any

from . import report


def _axis_values(space, row) -> dict:
    """{axis column: value} of one near-miss row (every axis, as the front's columns)."""
    from ..space.spec import column_name
    return {c: row[c] for c in (column_name(space.scenario, a.name) for a in space.axes) if c in row}


def _overshoot(g: float, lim: dict) -> str:
    """'62× the limit', '4.2 % over', '30 % short': how far a value with limit column g = (y - L)/|L|
    (a maximum; (L - y)/|L| for a minimum) is from the limit."""
    g = float(g)
    if lim["sense"] == "max" and g >= 1 and lim["limit"] > 0:
        return f"{1 + g:,.3g}× the limit"
    return f"{100 * g:,.2g} % {'over' if lim['sense'] == 'max' else 'short'}"


def _limit_rows(space, nm) -> list[dict]:
    """One dict per spec limit: the least-violating configuration's value, the best reached, the limit."""
    from ..sweeps.near_miss import g_column
    out = []
    for output, (sense, limit) in space.limits.items():
        name = f"limit:{output}"
        least = nm.least.iloc[0] if len(nm.least) else None
        best = nm.closest.get(name)
        best = best.iloc[0] if best is not None and len(best) else None
        out.append({"constraint": name, "output": output, "sense": sense, "limit": float(limit),
                    "least_value": None if least is None else float(least[output]),
                    "least_g": None if least is None else float(least[g_column(name)]),
                    "best_value": None if best is None else float(best[output]),
                    "best_g": None if best is None else float(best[g_column(name)]), "best_row": best})
    return out


def sampled(result) -> bool:
    """Whether `result`'s near miss is over a sample: a search that evaluated part of the space (a sweep, or a
    search whose budget covered the space, saw every configuration)."""
    return not getattr(result, "exhaustive", True)


def near_miss_lines(space, nm, *, sampled: bool = False) -> list[str]:
    """The few lines printed after "no feasible configuration" (see the module docstring); `sampled`: a
    search's near miss, over the configurations it evaluated rather than the whole space."""
    from ..scenarios import schema
    from ..sweeps.near_miss import g_column
    if not len(nm.least):
        return ["no configuration has finite objectives and constraints: nothing to compare"]
    row = nm.least.iloc[0]
    axes, objs = report.axis_columns(space), [n for n, _ in space.objectives]
    lines = [f"least-violating configuration (total violation {nm.violation:.3g}: the sum of each broken "
             "constraint's relative overshoot):",
             f"  {report.describe_row(row, axes) or space.name}  ->  {report.headline(row, objs)}"]
    for name in schema.STRUCTURAL_CONSTRAINTS[space.scenario]:
        g = float(row[g_column(name)])
        if g > 0:
            lines.append(f"  breaks {name} (g = {g:+.3g})")
    limits = _limit_rows(space, nm)
    for lim in limits:
        if lim["least_g"] > 0:
            lines.append(f"  breaks {lim['output']}: {report.value_text(lim['output'], lim['least_value'])}, "
                         f"{_sense(lim['sense'])} {_limit_text(lim)} allowed ({_overshoot(lim['least_g'], lim)})")
    shown = [lim for lim in limits if lim["least_g"] > 0 or lim["best_g"] is None or lim["best_g"] > 0]
    if shown:
        lines.append(f"best value each broken limit reaches (among {'the evaluated ' if sampled else ''}"
                     "configurations that meet the structural constraints):")
    for lim in shown:
        word = "lowest" if lim["sense"] == "max" else "highest"
        if lim["best_row"] is None:
            lines.append(f"  {lim['output']}: no configuration meets the structural constraints")
            continue
        verdict = "meets the limit alone" if lim["best_g"] <= 0 else _overshoot(lim["best_g"], lim)
        where = ("the least-violating configuration" if _axis_values(space, lim["best_row"]) == _axis_values(space, row)
                 else report.describe_row(lim["best_row"], axes) or space.name)
        lines.append(f"  {word} {lim['output']} {report.value_text(lim['output'], lim['best_value'])} "
                     f"(limit {_sense(lim['sense'])} {_limit_text(lim)}, {verdict}) at {where}")
    return lines


def _sense(sense: str) -> str:
    return "≤" if sense == "max" else "≥"


def _limit_text(lim: dict) -> str:
    return report.value_text(lim["output"], lim["limit"], "{:,.4g}")


def near_miss_json(space, nm) -> dict[str, Any]:
    """--json's ``near_miss`` (SI values, unit in the key as the outputs' names say)."""
    from ..sweeps.api import constraint_names, output_names
    from ..sweeps.near_miss import g_column

    def config(row) -> dict:
        return {"configuration": _axis_values(space, row),
                "objectives": {n: row[n] for n, _ in space.objectives},
                "outputs": {k: row[k] for k in output_names(space) if k in row},
                "constraints": {c: row[g_column(c)] for c in constraint_names(space)}}
    least = config(nm.least.iloc[0]) if len(nm.least) else None
    closest = {}
    for name, frame in nm.closest.items():
        r = frame.iloc[0]
        closest[name] = {"g": r[g_column(name)], "configuration": _axis_values(space, r)}
    for lim in _limit_rows(space, nm):
        entry = closest.setdefault(lim["constraint"], {"g": None, "configuration": None})
        entry.update({"output": lim["output"], "sense": lim["sense"], "limit_si": lim["limit"],
                      "best_si": lim["best_value"], "least_violating_si": lim["least_value"],
                      "best_meets_limit": None if lim["best_g"] is None else lim["best_g"] <= 0})
    return {"violation": nm.violation, "least_violating": least, "closest": closest,
            "rule": "violation = sum over constraints of max(g, 0), g <= 0 met (limits: (y - L)/|L|); closest: "
                    "per limit, the smallest g among configurations meeting every structural constraint; ties: "
                    "the lower configuration index"}


__all__ = ["near_miss_json", "near_miss_lines", "sampled"]
