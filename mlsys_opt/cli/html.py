"""One self-contained, offline HTML report of a sweep or search (issue 14 item 5).

`html(result, path)` writes a single file that needs no network: plotly's
JavaScript bundle is inlined once and every view is a plotly figure, so the
page works from a USB stick or a mail attachment.  Views:

- the run: spec name, scenario, configurations evaluated / feasible, the spec's
  own text (or its one-paragraph description), package version and time;
- the front as a table, sortable by any column with the buttons above it;
- a scatter of any two objectives (buttons choose the pair) coloured by the
  remaining one, with every input and output of a point in its hover text;
- a parallel-coordinates view of the front (categorical axes as ticks);
- the infeasibility breakdown: configurations per binding constraint;
- when nothing is feasible, the near miss (``cli.near_miss``: the least-violating configuration and the
  best value each broken limit reaches), in the words `sweep`/`search` print.

No hand-written JavaScript: sorting and axis choice are plotly ``updatemenus``
(restyle/update buttons) computed here in Python.
"""
from __future__ import annotations

import datetime as _dt
import html as _html
import itertools
from pathlib import Path
from typing import Any

import numpy as np

_MAX_ROWS = 5000            # front rows shown in the table and plots (the file stays a few MB)


def _objective_columns(front, objectives) -> list[str]:
    """Front column of each objective, preferring the human unit column (days over seconds)."""
    cols = []
    for name, _sense in objectives:
        human = {"time_to_train_s": "time_to_train_days"}.get(name)
        cols.append(human if human in front.columns else name)
    return [c for c in cols if c in front.columns]


def _hover_text(front) -> list[str]:
    lines = []
    for rec in front.to_dict("records"):
        lines.append("<br>".join(f"{k}: {_fmt(v)}" for k, v in rec.items()))
    return lines


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return str(v)


def _table(front):
    import plotly.graph_objects as go

    cols = list(front.columns)

    def cells(df):
        return [[_fmt(v) for v in df[c].tolist()] for c in cols]

    fig = go.Figure(go.Table(header=dict(values=cols, align="left"),
                             cells=dict(values=cells(front), align="left")))
    buttons = []
    for c in cols:
        for ascending in (True, False):
            ordered = front.sort_values(c, ascending=ascending, kind="stable")
            buttons.append(dict(label=f"{c} {'↑' if ascending else '↓'}", method="restyle",
                                args=[{"cells.values": [cells(ordered)]}]))
    fig.update_layout(title="Pareto front (sort with the menu)", height=min(200 + 28 * len(front), 900),
                      updatemenus=[dict(buttons=buttons, direction="down", x=0, xanchor="left", y=1.12,
                                        yanchor="top", showactive=True)],
                      margin=dict(t=90))
    return fig


def _scatter(front, obj_cols: list[str]):
    import plotly.graph_objects as go

    hover = _hover_text(front)
    pairs = list(itertools.combinations(obj_cols, 2)) or [(obj_cols[0], obj_cols[0])]

    def colour_of(x, y):
        rest = [c for c in obj_cols if c not in (x, y)]
        return rest[0] if rest else y

    x0, y0 = pairs[0]
    c0 = colour_of(x0, y0)
    fig = go.Figure(go.Scatter(
        x=front[x0], y=front[y0], mode="markers", text=hover, hoverinfo="text",
        marker=dict(color=front[c0], colorscale="Viridis", showscale=True, size=10,
                    colorbar=dict(title=c0), line=dict(width=1, color="black"), opacity=0.8)))
    buttons = []
    for x, y in pairs:
        c = colour_of(x, y)
        buttons.append(dict(label=f"{y} vs {x}", method="update",
                            args=[{"x": [front[x].tolist()], "y": [front[y].tolist()],
                                   "marker.color": [front[c].tolist()], "marker.colorbar.title.text": c},
                                  {"xaxis.title.text": x, "yaxis.title.text": y}]))
    fig.update_layout(title="Objectives of the front (choose the pair; colour = the remaining objective)",
                      xaxis_title=x0, yaxis_title=y0, height=600,
                      updatemenus=[dict(buttons=buttons, direction="down", x=0, xanchor="left", y=1.15,
                                        yanchor="top")] if len(pairs) > 1 else [],
                      margin=dict(t=100))
    return fig


def _parallel(front, obj_cols: list[str]):
    import plotly.graph_objects as go

    dims = []
    for c in front.columns:
        s = front[c]
        if s.dtype.kind in "biuf":
            v = s.to_numpy(dtype=float)
            if np.all(np.isfinite(v)):
                dims.append(dict(label=c, values=v))
        else:
            cats = sorted(map(str, s.unique()))
            code = {k: i for i, k in enumerate(cats)}
            dims.append(dict(label=c, values=[code[str(x)] for x in s], tickvals=list(range(len(cats))),
                             ticktext=cats))
    colour = front[obj_cols[0]].to_numpy(dtype=float) if obj_cols else None
    fig = go.Figure(go.Parcoords(dimensions=dims, line=dict(color=colour, colorscale="Viridis", showscale=True)))
    fig.update_layout(title="Parallel coordinates of the front (drag on an axis to filter)", height=550)
    return fig


def _infeasibility(infeasible_by: dict, n_evaluated: int, n_feasible: int):
    import plotly.graph_objects as go

    items = sorted(((k, int(v)) for k, v in (infeasible_by or {}).items()), key=lambda kv: -kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h"))
    fig.update_layout(title=f"Why configurations are infeasible ({n_evaluated - n_feasible:,} of "
                            f"{n_evaluated:,}; each counted under the constraint it violates most)",
                      xaxis_title="configurations", height=max(250, 40 * len(items) + 120),
                      yaxis=dict(autorange="reversed"))
    return fig


def _near_miss_html(result, space) -> str:
    """How close an infeasible space comes (the lines `sweep`/`search` print), or '' without a near miss."""
    near = getattr(result, "near_miss", None)
    if near is None:
        return ""
    from .near_miss import near_miss_lines, sampled
    lines = near_miss_lines(space, near, sampled=sampled(result))
    return ('<section id="near-miss"><h2>How close the space comes</h2><pre>'
            + _html.escape("\n".join(lines)) + "</pre></section>")


def _spec_text(space) -> str:
    src = getattr(space, "source", "")
    try:
        p = Path(src)
        if src and p.is_file() and p.stat().st_size < 1_000_000:
            return p.read_text(encoding="utf-8-sig", errors="replace")
    except OSError:
        pass
    return space.describe() if hasattr(space, "describe") else ""


def render(result, *, space=None, title: str | None = None) -> str:
    """The report as one HTML string (see the module docstring); `space` defaults to ``result.space``."""
    import plotly.io as pio

    from .. import __version__

    space = space if space is not None else result.space
    front = result.front.head(_MAX_ROWS).reset_index(drop=True)
    obj_cols = _objective_columns(front, space.objectives)
    n_eval = int(getattr(result, "n_evaluated", len(front)))
    n_feas = int(getattr(result, "n_feasible", len(front)))
    figs = []
    if len(front) and obj_cols:
        figs += [("scatter", _scatter(front, obj_cols)), ("table", _table(front)),
                 ("parallel", _parallel(front, obj_cols))]
    figs.append(("infeasibility", _infeasibility(getattr(result, "infeasible_by", {}), n_eval, n_feas)))
    parts = []
    for i, (name, fig) in enumerate(figs):
        parts.append(f'<section id="{name}">' + pio.to_html(fig, full_html=False, include_plotlyjs="inline" if i == 0
                                                            else False, div_id=f"fig-{name}") + "</section>")
    head = title or f"mlsys_opt report: {space.name}"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    summary = (f"<p><b>{_html.escape(space.name)}</b> ({_html.escape(space.scenario)}): "
               f"{n_eval:,} configurations evaluated, {n_feas:,} feasible, {len(result.front):,} on the front"
               + (f" (first {_MAX_ROWS:,} shown)" if len(result.front) > _MAX_ROWS else "")
               + f". mlsys_opt {__version__}, {stamp}.</p>")
    if not len(front):
        summary += "<p><b>No feasible configuration</b>: the breakdown below says which constraints bind.</p>"
        summary += _near_miss_html(result, space)
    spec = f"<details><summary>Spec</summary><pre>{_html.escape(_spec_text(space))}</pre></details>"
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + _html.escape(head) + "</title>"
            "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}section{margin:2em 0}</style>"
            "</head><body><h1>" + _html.escape(head) + "</h1>" + summary + spec + "".join(parts) + "</body></html>")


def html(result, path, *, space=None, title: str | None = None) -> Path:
    """Write the report of `result` (a SweepResult or SearchResult) to `path`; returns the path."""
    path = Path(path)
    path.write_text(render(result, space=space, title=title), encoding="utf-8")
    return path
