"""Figures people can read: Pareto fronts, rooflines, tornado charts, the iron-law cascade.

matplotlib with the Agg backend (no display needed); every function returns the
`Figure` and, given `path`, writes it (PNG, SVG or PDF, chosen by the suffix).
Axes carry units in their labels, values are shown in human units
(`report.column`), legends sit outside the data.

- :func:`pareto_front`: days vs $M (2-D, colour = t CO2e or a category,
  marker = hardware) or the 3-D front, with the spec's limits drawn in.
- :func:`roofline`: log-log per-hardware roofs, ridge points marked,
  configurations plotted at their arithmetic intensity.
- :func:`tornado`: ranked elasticities of one output (wall 21).
- :func:`loss_cascade`: N·peak -> × kernel efficiency -> × scaling -> ×
  goodput (seed 000 §9, the iron law).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..errors import MlsysOptError

if TYPE_CHECKING:
    import pandas as pd

FORMATS = (".png", ".svg", ".pdf")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
_FONT = {"font.size": 10, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9,
         "xtick.labelsize": 9, "ytick.labelsize": 9}


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    plt.rcParams.update(_FONT)
    return plt


def preload() -> None:
    """Import matplotlib (Agg) on a daemon thread, so a command that will draw a figure later pays
    for the import (~0.3 s) while its main thread waits on XLA (compile, cache load, evaluation:
    the GIL is free), not after.  A failure here is left to the later :func:`_plt` call to report."""
    import threading

    def load():
        try:
            _plt()
        except Exception:  # noqa: BLE001 - reported where the figure is drawn
            pass
    threading.Thread(target=load, name="mlsys-opt-preload-matplotlib", daemon=True).start()


def check_path(path: str | Path) -> Path:
    """The figure path, or MlsysOptError when its suffix is not a known format."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise MlsysOptError(f"figure {str(path)!r}: unknown format {path.suffix or '(none)'!r} "
                            f"(allowed: {', '.join(FORMATS)})")
    return path


def save(fig, path: str | Path | None) -> Path | None:
    """Write `fig` to `path` (PNG at 150 dpi, SVG, PDF) and close it; returns the path."""
    if path is None:
        return None
    path = check_path(path)
    if not path.parent.exists():
        raise MlsysOptError(f"figure {str(path)!r}: folder {str(path.parent)!r} does not exist")
    # a constrained layout already fits every label, legend and colour bar inside the figure; "tight"
    # would lay the figure out and draw it a second time only to trim a few pixels of margin
    from matplotlib.layout_engine import ConstrainedLayoutEngine
    tight = None if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine) else "tight"
    fig.savefig(path, dpi=150, bbox_inches=tight)
    _plt().close(fig)
    return path


def _human(df: pd.DataFrame, name: str) -> tuple[np.ndarray, str]:
    """Column values in display units and an axis label with the unit."""
    from .report import _factor, column
    col = column(name)
    values = df[name].to_numpy(dtype=float) * _factor(col)
    label = {"days": "time to train (days)", "$M": "cost, TCO ($M)", "buy $M": "purchase, upfront capex ($M)",
             "t CO2e": "carbon (t CO2e)",
             "MWh": "energy (MWh)", "p99 s": "P99 latency (s)", "$/Mtok": "cost ($ per M tokens)",
             "g CO2e/Mtok": "carbon (g CO2e per M tokens)", "TTFT ms": "time to first token (ms)",
             "ITL ms": "inter-token latency (ms)"}.get(col.header, col.header)
    return values, label


def _log_if_wide(ax, axis: str, values: np.ndarray) -> None:
    v = values[np.isfinite(values) & (values > 0)]
    if len(v) > 1 and v.max() / v.min() > 30:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _limit_lines(ax, space, name: str, axis: str, values: np.ndarray) -> str | None:
    """Dashed line at a spec limit on `name` when it lies near the data; else a note for the caption."""
    if space is None or name not in getattr(space, "limits", {}):
        return None
    from .report import _factor, column, value_text
    sense, value = space.limits[name]
    col = column(name)
    v = value * _factor(col)
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    word = "limit" if sense == "max" else "minimum"
    if not (lo - 0.5 * (hi - lo) <= v <= hi + 0.5 * max(hi - lo, abs(hi) * 0.1)):
        return f"{name} (off scale)"
    draw = ax.axvline if axis == "x" else ax.axhline
    draw(v, color="crimson", ls="--", lw=1.2, zorder=1)
    text = f"{word} {value_text(name, value, '{:,.4g}')}"
    if axis == "x":
        ax.annotate(text, (v, 0.0), xycoords=("data", "axes fraction"), xytext=(-3, 4),
                    textcoords="offset points", ha="right", va="bottom", color="crimson", fontsize=8, rotation=90,
                    parse_math=False)
    else:
        ax.annotate(text, (0.0, v), xycoords=("axes fraction", "data"), xytext=(4, 3),
                    textcoords="offset points", ha="left", va="bottom", color="crimson", fontsize=8,
                    parse_math=False)
    return None


_SHORT = {"time_to_train_s": "time", "tco_usd": "cost", "upfront_capex_usd": "purchase", "carbon_kg": "carbon",
          "energy_j": "energy",
          "water_l": "water", "mfu": "MFU", "n_accelerators": "devices", "p99_latency_s": "P99",
          "ttft_s": "TTFT", "itl_s": "ITL", "cost_per_mtok_usd": "cost/Mtok"}


def limits_caption(space) -> str:
    """'limits: time_to_train ≤ 30 days, tco ≤ $20M, carbon ≤ 1,000 t CO2e' (empty without limits)."""
    from .report import value_text
    if space is None or not space.limits:
        return ""
    parts = []
    for name, (sense, value) in space.limits.items():
        short = _SHORT.get(name, name)
        parts.append(f"{short} {'≤' if sense == 'max' else '≥'} {value_text(name, value, '{:,.4g}')}")
    return "limits: " + ", ".join(parts)


def pareto_front(front: pd.DataFrame, *, x: str | None = None, y: str | None = None, color: str | None = None,
                 marker: str | None = "hardware", space=None, title: str | None = None,
                 three_d: bool = False, annotate: bool = True, path: str | Path | None = None):
    """Scatter of a Pareto front in human units.

    Args:
      front: a front DataFrame (``SweepResult.front`` / ``SearchResult.front``).
      x, y: output columns (default: the space's first two objectives, else
        time_to_train_s / tco_usd or the first two numeric outputs).
      color: a numeric column (colour bar; default the third objective) or a
        categorical one such as "region" (legend).
      marker: a categorical column shown as marker shapes (default "hardware").
      space: the ``Space`` (objective names, limits drawn as dashed lines, title).
      three_d: plot the first three objectives in 3-D instead.
      annotate: label the best point of each objective.
    """
    import pandas as pd
    if front.empty:
        raise MlsysOptError("pareto_front: the front is empty; nothing to plot")
    plt = _plt()
    objs = [o for o, _ in space.objectives] if space is not None else [
        c for c in ("time_to_train_s", "tco_usd", "carbon_kg", "cost_per_mtok_usd", "carbon_per_mtok_kg",
                    "p99_latency_s") if c in front]
    x = x or objs[0]
    y = y or (objs[1] if len(objs) > 1 else objs[0])
    if color is None and len(objs) > 2:
        color = objs[2]
    if marker == "hardware" and marker not in front:     # the default, on a space with the hardware fixed
        marker = None
    for name in (x, y, color, marker):
        if name is not None and name not in front:
            raise MlsysOptError(f"pareto_front: no column {name!r} (columns: {', '.join(front.columns)})")
    if marker is not None and front[marker].nunique() > len(_MARKERS):
        marker = None
    if three_d:
        return _front_3d(front, objs[:3] if len(objs) >= 3 else [x, y, color], marker, space, title, path)
    xv, xl = _human(front, x)
    yv, yl = _human(front, y)
    fig, ax = plt.subplots(figsize=(8.5, 6), layout="constrained")
    numeric_color = color is not None and front[color].dtype.kind in "fiu"
    cv, cl = _human(front, color) if numeric_color else (None, None)
    groups = [(None, np.ones(len(front), bool))] if marker is None else \
        [(g, (front[marker] == g).to_numpy()) for g in pd.unique(front[marker])]
    cats = list(pd.unique(front[color])) if color is not None and not numeric_color else []
    cmap = plt.get_cmap("tab10")
    sc = None
    handles = []
    size = _stacked_sizes(xv, yv)
    for k, (g, mask) in enumerate(groups):
        m = _MARKERS[k % len(_MARKERS)]
        if numeric_color:
            sc = ax.scatter(xv[mask], yv[mask], c=cv[mask], cmap="viridis", marker=m, s=size[mask], edgecolors="k",
                            alpha=0.9, linewidths=0.5, vmin=np.nanmin(cv), vmax=np.nanmax(cv), zorder=3,
                            label=str(g) if g is not None else None)
        elif cats:
            cidx = np.array([cats.index(v) for v in front[color][mask]])
            ax.scatter(xv[mask], yv[mask], c=[cmap(i % 10) for i in cidx], marker=m, s=size[mask], edgecolors="k",
                       linewidths=0.5, zorder=3)
        else:
            ax.scatter(xv[mask], yv[mask], marker=m, s=size[mask], edgecolors="k", linewidths=0.5, zorder=3,
                       label=str(g) if g is not None else None)
        if g is not None:
            handles.append(plt.Line2D([], [], marker=m, ls="", color="0.4", markeredgecolor="k",
                                      markersize=8, label=str(g)))
    _count_coincident(ax, xv, yv)
    _log_if_wide(ax, "x", xv)
    _log_if_wide(ax, "y", yv)
    notes = [n for n in (_limit_lines(ax, space, x, "x", xv), _limit_lines(ax, space, y, "y", yv)) if n]
    if numeric_color:
        fig.colorbar(sc, ax=ax, label=cl, pad=0.02)
    if handles:
        fig.legend(handles=handles, title=marker, loc="outside lower center", ncol=min(len(handles), 6),
                   frameon=False)
    if cats:
        ch = [plt.Line2D([], [], marker="o", ls="", color=cmap(i % 10), markersize=8, label=str(c))
              for i, c in enumerate(cats)]
        fig.legend(handles=ch, title=color, loc="outside right center", frameon=False)
    if annotate:
        senses = dict(space.objectives) if space is not None else {}
        _annotate_best(ax, front, [(o, senses.get(o, "min")) for o in objs[:3]], xv, yv)
    caption = limits_caption(space)
    if caption:
        ax.text(0.0, 1.0, caption + (" (dashed where on scale)" if len(notes) < 2 else ""),
                transform=ax.transAxes, ha="left", va="bottom", fontsize=8, color="crimson",
                parse_math=False)         # "$20M, ... $20M" is money, not a TeX formula
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.grid(True, which="major", alpha=0.3)
    n = len(front)
    name = f"{space.name}: " if space is not None else ""
    ax.set_title(title or f"{name}Pareto front ({n} configuration{'s' if n != 1 else ''})",
                 pad=16 if caption else 6)
    save(fig, path)
    return fig


def _coincident_rank(xv, yv) -> tuple[np.ndarray, np.ndarray]:
    """(rank of each point among the points at the same place, size of that group); same place = equal to 6 digits."""
    import pandas as pd
    key = pd.Series([f"{a:.6g},{b:.6g}" for a, b in zip(np.asarray(xv, float), np.asarray(yv, float))])
    return key.groupby(key).cumcount().to_numpy(), key.map(key.value_counts()).to_numpy()


def _stacked_sizes(xv, yv, base: float = 60.0) -> np.ndarray:
    """Marker areas that keep coinciding points visible: the first of k drawn largest, each next one smaller."""
    rank, count = _coincident_rank(xv, yv)
    return base * (1.0 + 1.2 * (count - 1 - rank))


def _count_coincident(ax, xv, yv) -> None:
    """Write '×k' beside every place where k > 1 front points coincide (e.g. two regions, same time and cost)."""
    rank, count = _coincident_rank(xv, yv)
    for i in np.flatnonzero((rank == 0) & (count > 1)):
        ax.annotate(f"×{count[i]}", (xv[i], yv[i]), xytext=(-8, -10), textcoords="offset points", fontsize=7,
                    ha="right", va="top", color="0.25", zorder=5)


def _annotate_best(ax, front, objectives, xv, yv) -> None:
    """Label the best point of each objective, placing each label where it covers no data."""
    from .report import best_rows
    done: dict[int, list[str]] = {}
    for word, idx in best_rows(front, [(o, s) for o, s in objectives if o in front]):
        done.setdefault(int(front.index.get_loc(idx)), []).append(word)
    fig = ax.figure
    fig.draw_without_rendering()         # the layout (positions, text extents) without painting pixels
    renderer = fig.canvas.get_renderer()
    pts = ax.transData.transform(np.column_stack([xv, yv]))
    box = ax.get_window_extent(renderer)
    taken: list = []
    offsets = [(14, 14), (14, -14), (-14, 14), (-14, -14), (30, 0), (-30, 0), (0, 30), (0, -30),
               (40, 40), (40, -40), (-40, 40), (-40, -40), (70, 10), (-70, 10), (70, -10), (-70, -10)]
    for i, words in sorted(done.items(), key=lambda t: xv[t[0]]):
        row = front.iloc[i]
        fleet = " ".join(s for s in (str(row["hardware"]) if "hardware" in row else "",
                                     f"×{int(row['n_accelerators']):,}" if "n_accelerators" in row else "") if s)
        detail = ", ".join(s for s in (fleet, str(row["region"]) if "region" in row else "") if s)
        best = None
        for dx, dy in offsets:
            t = ax.annotate(f"{' & '.join(words)}: {detail}", (xv[i], yv[i]), xytext=(dx, dy),
                            textcoords="offset points", ha="left" if dx >= 0 else "right",
                            va="bottom" if dy >= 0 else "top", fontsize=8,
                            bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="0.6", alpha=0.9),
                            arrowprops=dict(arrowstyle="-", color="0.4", lw=0.8), zorder=4)
            bb = t.get_window_extent(renderer).expanded(1.05, 1.15)
            cover = int(np.sum((pts[:, 0] >= bb.x0) & (pts[:, 0] <= bb.x1) & (pts[:, 1] >= bb.y0)
                               & (pts[:, 1] <= bb.y1)))
            clash = sum(bb.overlaps(o) for o in taken)
            outside = (bb.x0 < box.x0) + (bb.x1 > box.x1) + (bb.y0 < box.y0) + (bb.y1 > box.y1)
            score = cover + 3 * clash + 2 * outside
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, t, bb)
            else:
                t.remove()
            if score == 0:
                break
        taken.append(best[2])


def _front_3d(front, names, marker, space, title, path):
    import pandas as pd
    plt = _plt()
    fig = plt.figure(figsize=(8.5, 6.5), constrained_layout=True)
    ax = fig.add_subplot(projection="3d")
    vals = [_human(front, n) for n in names]
    groups = [(None, np.ones(len(front), bool))] if marker is None else \
        [(g, (front[marker] == g).to_numpy()) for g in pd.unique(front[marker])]
    for k, (g, mask) in enumerate(groups):
        ax.scatter(vals[0][0][mask], vals[1][0][mask], vals[2][0][mask], marker=_MARKERS[k % len(_MARKERS)],
                   s=45, depthshade=False, edgecolors="k", linewidths=0.4, label=str(g) if g is not None else None)
    ax.set_xlabel(vals[0][1], labelpad=8)
    ax.set_ylabel(vals[1][1], labelpad=8)
    ax.set_zlabel(vals[2][1], labelpad=8)
    if marker is not None:
        ax.legend(title=marker, loc="upper left", bbox_to_anchor=(0.0, 1.0), frameon=False)
    name = f"{space.name}: " if space is not None else ""
    ax.set_title(title or f"{name}Pareto front, 3 objectives ({len(front)} configurations)")
    save(fig, path)
    return fig


def roofline(hardware: Sequence[str], points: pd.DataFrame | Sequence[Mapping[str, Any]] = (), *,
             precision: str = "fp16", catalog=None, efficiency: float = 1.0, title: str | None = None,
             path: str | Path | None = None):
    """Log-log roofline of one or more accelerators with configurations plotted on it.

    Attainable(I) = min(peak, I · BW) per hardware (FLOP/s vs FLOP/byte), the
    ridge point I* = peak / BW marked and labelled (Williams et al. 2009).

    Args:
      hardware: catalog names ("h100_sxm", "a100_80gb", ...).
      points: rows with ``label``, ``intensity`` (FLOP/byte) and
        ``flop_per_s`` (achieved; optional: the roof at that intensity is used,
        times `efficiency`) and optionally ``hardware`` (colour).
      precision: which peak column of the catalog (fp16 = the dense 16-bit path).
    """
    import pandas as pd
    from ..catalog import load_catalog
    from ..walls import node
    plt = _plt()
    catalog = catalog or load_catalog()
    fig, ax = plt.subplots(figsize=(8.5, 5.5), constrained_layout=True)
    pts = pd.DataFrame(list(points)) if not isinstance(points, pd.DataFrame) else points
    lo = 0.1
    hi = 1e4
    if len(pts):
        lo = min(lo, float(pts["intensity"].min()) / 3)
        hi = max(hi, float(pts["intensity"].max()) * 3)
    grid = np.logspace(math.log10(lo), math.log10(hi), 400)
    colors = {}
    cmap = plt.get_cmap("tab10")
    for k, name in enumerate(hardware):
        e = catalog.entry("accelerators", name)
        peak, bw = float(e[f"peak_{precision}_flop_per_s"]), float(e["mem_bw_bytes_per_s"])
        if peak <= 0:
            raise MlsysOptError(f"roofline: {name} has no {precision} peak in the catalog")
        colors[e["name"]] = c = cmap(k % 10)
        roof = np.asarray(node.attainable_flop_per_s(grid, peak, bw))
        ax.plot(grid, roof / 1e12, color=c, lw=2, label=f"{e['name']} ({peak / 1e12:,.0f} TFLOP/s, "
                f"{bw / 1e12:.2f} TB/s)")
        ridge = float(node.ridge_point(peak, bw))
        ax.plot([ridge], [peak / 1e12], "o", color=c, markersize=7, markeredgecolor="k", zorder=4)
        ax.axvline(ridge, color=c, ls=":", lw=1, zorder=1)
        ax.annotate(f"ridge {ridge:,.0f} FLOP/B", (ridge, peak / 1e12), xytext=(-8, 5),
                    textcoords="offset points", ha="right", va="bottom", fontsize=8, color=c,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    for _, p in pts.iterrows():
        hw = p.get("hardware", hardware[0])
        e = catalog.entry("accelerators", hw)
        peak, bw = float(e[f"peak_{precision}_flop_per_s"]), float(e["mem_bw_bytes_per_s"])
        at = p.get("flop_per_s")
        if at is None or (isinstance(at, float) and math.isnan(at)):
            at = efficiency * float(node.attainable_flop_per_s(float(p["intensity"]), peak, bw))
        c = colors.get(e["name"], "k")
        ax.plot([p["intensity"]], [at / 1e12], marker="X", ls="", color=c, markersize=10, markeredgecolor="k",
                zorder=5)
        ax.annotate(str(p.get("label", "")), (p["intensity"], at / 1e12), xytext=(8, -6),
                    textcoords="offset points", ha="left", va="top", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel(f"attainable {precision} throughput (TFLOP/s)")
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.08)
    ax.legend(loc="lower right", frameon=True, framealpha=0.9)
    ax.set_title(title or "Roofline: memory-bound left of the ridge, compute-bound right")
    save(fig, path)
    return fig


_INPUT_PREFIX = {"eff": "efficiency model", "hw": "accelerator", "hardware": "accelerator", "model": "model",
                 "fabric": "network", "region": "region"}


def input_label(name: str) -> str:
    """A sensitivity input in words: 'eff.compute_eff_scale' -> 'efficiency model: compute eff scale'."""
    prefix, _, field = name.partition(".")
    if field and prefix in _INPUT_PREFIX:
        return f"{_INPUT_PREFIX[prefix]}: {field.replace('_', ' ')}"
    return name.replace("_", " ")


def tornado(sens: pd.DataFrame, output: str, *, top: int = 12, config: int = 0, title: str | None = None,
            configuration: str | None = None, path: str | Path | None = None):
    """Horizontal bars of the `top` elasticities ∂ln y/∂ln x of `output` (largest on top).

    sens: the long DataFrame of ``mlsys_opt.point.sensitivity.sensitivity``.
    configuration: the configuration in words (printed under the title, so the figure says what it describes).
    """
    rows = sens[(sens["config"] == config) & (sens["output"] == output)]
    if rows.empty:
        outs = sorted(set(sens["output"]))
        raise MlsysOptError(f"tornado: no sensitivities of {output!r} (outputs: {', '.join(outs)})")
    rows = rows[rows["elasticity"].abs() > 1e-9]
    rows = rows.reindex(rows["elasticity"].abs().sort_values(ascending=False).index).head(top)[::-1]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * max(len(rows), 3) + 1.4), constrained_layout=True)
    e = rows["elasticity"].to_numpy(dtype=float)
    colors = ["#c0392b" if v < 0 else "#2e86c1" for v in e]
    ax.barh(np.arange(len(rows)), e, color=colors, edgecolor="k", linewidth=0.5)
    ax.set_yticks(np.arange(len(rows)), [input_label(str(p)) for p in rows["parameter"]])
    ax.axvline(0, color="k", lw=0.8)
    span = max(float(np.max(np.abs(e))) if len(e) else 1.0, 1e-6)
    for i, v in enumerate(e):
        ax.annotate(f"{v:+.2f}", (v, i), xytext=(4 if v >= 0 else -4, 0), textcoords="offset points",
                    ha="left" if v >= 0 else "right", va="center", fontsize=8)
    ax.set_xlim(-1.25 * span if (e < 0).any() else -0.05 * span, 1.25 * span if (e > 0).any() else 0.05 * span)
    ax.set_xlabel(f"elasticity ∂ln y/∂ln x: % change of {output} per +1 % of the input")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title or f"What moves {output}? (blue: raises it, red: lowers it)"
                 + ("\n" + textwrap.fill(configuration, 110) if configuration else ""), fontsize=10)
    save(fig, path)
    return fig


def loss_cascade(n_devices: float, peak_flop_per_s: float, kernel_frac: float, scaling_frac: float,
                 goodput_frac: float, *, title: str | None = None, path: str | Path | None = None):
    """Iron-law waterfall: N·peak -> × kernel efficiency -> × scaling -> × goodput (seed 000 §9).

    kernel_frac·scaling_frac is the MFU; the effective rate sets the time to train,
    T = FLOP / effective.  Values in PFLOP/s with each bar's share of peak.
    """
    from ..walls import analysis
    c = analysis.loss_cascade(n_devices, peak_flop_per_s, kernel_frac, scaling_frac, goodput_frac)
    stages = [float(c.peak_flop_per_s), float(c.after_mfu_flop_per_s), float(c.after_scaling_flop_per_s),
              float(c.effective_flop_per_s)]
    labels = [f"N × peak\n({int(n_devices):,} devices)", f"× kernel eff.\n({100 * kernel_frac:.0f} %)",
              f"× scaling\n({100 * scaling_frac:.0f} %)", f"× goodput\n({100 * goodput_frac:.0f} %)"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.8), constrained_layout=True)
    scale = 1e15
    v = np.array(stages) / scale
    ax.bar(range(4), v, color=["0.55", "#2e86c1", "#2e86c1", "#1e8449"], edgecolor="k", width=0.6,
           label="delivered")
    lost = np.r_[0.0, v[:-1] - v[1:]]
    ax.bar(range(4), lost, bottom=v, color="#f5b7b1", edgecolor="#c0392b", hatch="//", width=0.6,
           label="lost at this step")
    for i, val in enumerate(v):
        top = val + lost[i]
        ax.annotate(f"{val:,.3g} PFLOP/s\n{100 * val / v[0]:.0f} % of peak", (i, top), xytext=(0, 4),
                    textcoords="offset points", ha="center", va="bottom", fontsize=9)
        if lost[i] > 0.06 * v[0]:
            ax.annotate(f"−{100 * lost[i] / v[0]:.0f} %", (i, val + lost[i] / 2), ha="center", va="center",
                        fontsize=9, color="#922b21", bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none"))
    ax.set_xticks(range(4), labels)
    ax.set_ylabel("fleet throughput (PFLOP/s)")
    ax.set_ylim(0, v[0] * 1.22)
    ax.legend(loc="upper right", frameon=False)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title or "Iron law: where the peak FLOP/s go")
    save(fig, path)
    return fig


def evaluation_figure(row: Mapping[str, Any], space, *, path: str | Path | None = None):
    """The figure of one evaluated configuration (a row of ``mlsys_opt.evaluate``).

    Training: the iron-law loss cascade (kernel efficiency = MFU / scaling efficiency).
    Serving: the decode step on its hardware's roofline (intensity 2·P·batch / (W + KV)).
    """
    from .._types import BYTES_PER_ELEMENT, PRECISIONS
    hw = space.catalog.entry("accelerators", row["hardware"])
    if space.scenario == "training":
        peak = float(hw[f"peak_{row['precision']}_flop_per_s"])
        scaling = float(row["scaling_efficiency"])
        return loss_cascade(float(row["n_accelerators"]), peak, float(row["mfu"]) / max(scaling, 1e-12), scaling,
                            float(row["goodput"]), path=path,
                            title=f"Iron law: {row['model']} on {int(row['n_accelerators']):,} × {row['hardware']}")
    model = space.catalog.entry("models", row["model"])
    replica = int(row["tp"]) * int(row["pp"])
    flop = 2.0 * float(model["n_active_params"]) * int(row["batch"]) / replica
    w = float(model["n_params"]) * BYTES_PER_ELEMENT[PRECISIONS.index(row["precision"])]
    moved = (w + float(row["kv_cache_bytes"])) / replica
    return roofline([row["hardware"]], [{"label": f"decode, batch {int(row['batch'])}", "intensity": flop / moved,
                                         "flop_per_s": flop / float(row["itl_s"]), "hardware": row["hardware"]}],
                    precision=row["precision"], catalog=space.catalog, path=path,
                    title=f"{row['model']} decode on {row['hardware']}: ITL {1e3 * float(row['itl_s']):.1f} ms")


__all__ = ["pareto_front", "roofline", "tornado", "loss_cascade", "evaluation_figure", "save", "check_path",
           "FORMATS", "limits_caption"]
