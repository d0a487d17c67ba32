"""`mlsys-opt catalog list|show|add` and `mlsys-opt spaces list|show`: what there is to choose from."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

from ...errors import MlsysOptError
from .common import CATALOG_ENV, EXIT_OK, _catalog, _out, _print_json, _space


def cmd_catalog(args) -> int:
    from ...catalog._load import KINDS, kind_of
    from .. import report
    cat = _catalog(args)
    if args.action == "list":
        kinds = [kind_of(args.kind)] if args.kind else list(KINDS)
        if args.json:
            _print_json({k: cat.frames[k] for k in kinds})
            return EXIT_OK
        for k in kinds:
            _out(f"{k} ({len(cat.names(k))}):")
            _out(report.catalog_table(cat, k, width=report.terminal_width()))
            _out()
        _out(f"user entries: --catalog FILE or ${CATALOG_ENV}=FILE{os.pathsep}FILE... "
             "([accelerators.NAME] / [models.NAME] / [fabrics.NAME] / [regions.NAME] tables); "
             "'*' marks entries from user files")
        return EXIT_OK
    if args.action == "show":
        k = kind_of(args.kind)
        entry = cat.entry(k, args.name)
        if args.json:
            _print_json({"kind": k, "source_file": cat.source_of(k, args.name), "entry": entry})
        else:
            _out(f"{k}: {entry['name']} ({entry['display_name']}), from {cat.source_of(k, args.name)}")
            _out(report.entry_table(entry))
            if k in ("accelerators", "fabrics"):
                _out()
                _out(achievable_summary(k, entry))
        return EXIT_OK
    # add
    from ...catalog._load import entries_from
    k = kind_of(args.kind)
    path = args.file
    if not Path(path).is_file():
        raise MlsysOptError(f"catalog add: {path!r} does not exist")
    new = cat.with_entries(k, path)
    names, _ = entries_from(path, k)
    shown = [new.names(k)[new.index(k, n)] for n in names]
    added = [n for n in shown if n not in cat.names(k)]
    if args.json:
        _print_json({"kind": k, "file": path, "added": added, "overridden": [n for n in shown if n not in added],
                     "entries": [new.entry(k, n) for n in shown]})
        return EXIT_OK
    _out(f"{path}: valid. {len(shown)} {k} entr{'y' if len(shown) == 1 else 'ies'}: "
         f"{len(added)} new ({', '.join(added) or '-'}), {len(shown) - len(added)} overriding built-in ones.")
    for n in shown:
        _out()
        _out(f"{n} (merged):")
        _out(report.entry_table(new.entry(k, n)))
    _out()
    _out(f"To use them in other commands: mlsys-opt --catalog FILE ... or export {CATALOG_ENV}=FILE, "
         f"with the tables written as [{k}.NAME] (the file here may use [NAME] or [{k}.NAME]).")
    return EXIT_OK


def achievable_summary(kind: str, entry) -> str:
    """Achieved-rate lines of one accelerator / fabric entry with their provenance (issue 19)."""
    def row(what, value, prov):
        return f"  {what:<15} {value:<54} {prov}"
    lines = ["achievable rates (fractions of this entry's peaks; catalog/achievable.toml, achievable_README.md):"]
    if kind == "fabrics":
        f, a = entry["busbw_frac_large"], entry["allreduce_step_latency_s"]
        value = (f"all-reduce busbw {f:.3g} of bw, α {a * 1e6:.3g} us/step" if a > 0 else
                 f"all-reduce busbw {f:.3g} of bw, α = catalog latency") if f > 0 else "-"
        lines.append(row("collectives", value, entry["busbw_provenance"] or "none"))
        return "\n".join(lines)
    lines.append(row("HBM sustained", f"{entry['sustained_mem_bw_frac']:.3g} of mem_bw (STREAM triad)",
                     entry["hbm_provenance"]))
    lines.append(row("GEMM 16384^3", f"fp16 {entry['gemm_eff_16k_fp16']:.3g}, fp8 {entry['gemm_eff_16k_fp8']:.3g}"
                                     " of peak", entry["gemm_provenance"]))
    lines.append(row("attention", f"FA fwd+bwd {entry['attention_fwdbwd_eff_8k']:.3g} of fp16 peak at 8k",
                     entry["attention_provenance"]))
    f, a = entry["scaleup_busbw_frac_large"], entry["scaleup_allreduce_step_latency_s"]
    value = f"all-reduce busbw {f:.3g} of scaleup_bw, α {a * 1e6:.3g} us/step" if f > 0 else "-"
    lines.append(row("scale-up comm", value, entry["scaleup_comm_provenance"] or "none"))
    lines.append(f"  GEMM per precision: {entry['gemm_method']}")
    return "\n".join(lines)


def cmd_spaces(args) -> int:
    import pandas as pd

    from ...space.spec import list_spaces
    from .. import report
    if args.action == "show":
        space = _space(args, args.name)
        if args.json:
            _print_json({"name": space.name, "scenario": space.scenario, "size": space.size,
                         "axes": {a.name: list(a.labels) for a in space.axes}, "fixed": space.fixed_labels,
                         "limits": {k: {"sense": s, "value": v} for k, (s, v) in space.limits.items()},
                         "objectives": [{"name": n, "sense": s} for n, s in space.objectives]})
            return EXIT_OK
        _out(textwrap.fill(space.describe(), width=100))
        _out()
        _out(report.format_table(pd.DataFrame({"axis": [a.name for a in space.axes],
                                               "values": [len(a.labels) for a in space.axes],
                                               "labels": [", ".join(a.labels[:12]) + (" ..." if len(a.labels) > 12
                                                                                      else "") for a in space.axes]}),
                                 human=False))
        return EXIT_OK
    infos = list_spaces(args.dir)
    rows = []
    for info in infos:
        try:
            size = f"{_space(args, info.path).size:,}"
        except MlsysOptError as exc:
            size = f"invalid ({str(exc).splitlines()[0][:60]})"
        rows.append({"name": info.name, "scenario": info.scenario, "configurations": size,
                     "file": str(info.path), "description": info.description})
    if args.json:
        _print_json(rows)
        return EXIT_OK
    if not rows:
        _out(f"no spec files (*.toml) in {args.dir or 'spaces/'}")
        return EXIT_OK
    df = pd.DataFrame(rows)
    df["description"] = [d[:90] + ("..." if len(d) > 90 else "") for d in df["description"]]
    _out(report.format_table(df[["name", "scenario", "configurations", "description"]], human=False))
    _out()
    _out("run one: mlsys-opt sweep NAME (or a path to your own .toml; format: spaces/README.md)")
    return EXIT_OK
