"""`mlsys-opt catalog list|show|add` and `mlsys-opt spaces list|show`: what there is to choose from.

`catalog add KIND FILE` validates FILE and saves its entries into the user catalog file named by
--catalog / $MLSYS_OPT_CATALOG (the last one; created if missing); with none named it only validates.
"""
from __future__ import annotations

import json
import math
import os
import re
import textwrap
import time
from pathlib import Path

from ...errors import MlsysOptError
from .common import CATALOG_ENV, EXIT_OK, _catalog, _out, _print_json, _space


def cmd_catalog(args) -> int:
    from ...catalog._load import KINDS, kind_of
    from .. import report
    if args.action == "add":         # before loading the user catalog: `add` may create that file
        return _catalog_add(args)
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
    raise MlsysOptError(f"catalog: unknown action {args.action!r} (allowed: list, show, add)")


def _catalog_add(args) -> int:
    """`catalog add KIND FILE`: validate FILE's entries against the catalog in use, print them merged,
    and SAVE them into the user catalog file when one is named (the last of $MLSYS_OPT_CATALOG and
    --catalog FILE, created if missing; later files override earlier ones, so the saved entries win).

    Entries are appended as [KIND.NAME] tables with the file's own values and units (the user
    catalog's comments are kept); a name the user catalog already defines is refused rather than
    rewritten.  With no user catalog file named, nothing is written and the output says how to save.
    """
    from ...catalog._load import entries_from, kind_of, read_toml
    from .. import report
    from .common import catalog_paths, load_user_catalog
    k = kind_of(args.kind)
    path = args.file
    if not Path(path).is_file():
        raise MlsysOptError(f"catalog add: {path!r} does not exist")
    paths = catalog_paths(args)
    target = paths[-1] if paths else None
    if target is not None and Path(target).exists() and not Path(target).is_file():
        raise MlsysOptError(f"catalog add: user catalog {target!r} (from --catalog or ${CATALOG_ENV}) is not a "
                            "regular file")
    if target is not None and not Path(target).exists() and not Path(target).resolve().parent.is_dir():
        raise MlsysOptError(f"catalog add: user catalog {target!r}: its folder does not exist")
    same = target is not None and Path(target).exists() and Path(target).resolve() == Path(path).resolve()
    # validated against the built-in catalog and the other user files (FILE itself excluded)
    cat = load_user_catalog([p for p in paths if Path(p).exists() and Path(p).resolve() != Path(path).resolve()])
    raw, _ = entries_from(path, k)
    if target is not None and Path(target).exists() and not same:
        _refuse_redefinition(target, k, raw, cat, read_toml)
    new = cat.with_entries(k, path)
    shown = [new.names(k)[new.index(k, n)] for n in raw]
    added = [n for n in shown if n not in cat.names(k)]
    saved = None
    if same:
        note = f"{path} is the user catalog already: nothing to save."
    elif target is not None:
        _save_entries(target, k, raw, path, lambda tmp: load_user_catalog(
            [tmp if Path(p).resolve() == Path(target).resolve() else p for p in paths if Path(p).exists()
             or Path(p).resolve() == Path(target).resolve()]))
        saved = target
        note = f"saved to {target} as [{k}.NAME] tables (every command reads it through --catalog / ${CATALOG_ENV})."
    else:
        note = (f"not saved: no user catalog file is named. To save, run it again with --catalog MY_CATALOG.toml "
                f"(created if missing) or with ${CATALOG_ENV}=MY_CATALOG.toml; or pass {path} itself to other "
                f"commands (mlsys-opt --catalog FILE ..., its tables written as [{k}.NAME]).")
    if args.json:
        _print_json({"kind": k, "file": path, "added": added, "overridden": [n for n in shown if n not in added],
                     "entries": [new.entry(k, n) for n in shown], "saved_to": saved})
        return EXIT_OK
    _out(f"{path}: valid. {len(shown)} {k} entr{'y' if len(shown) == 1 else 'ies'}: "
         f"{len(added)} new ({', '.join(added) or '-'}), {len(shown) - len(added)} overriding built-in ones.")
    for n in shown:
        _out()
        _out(f"{n} (merged):")
        _out(report.entry_table(new.entry(k, n)))
    _out()
    _out(note)
    return EXIT_OK


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(v) -> str:
    """One TOML value (what tomllib read back: str, bool, int, float, list, table)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return ("nan" if math.isnan(v) else "inf" if v > 0 else "-inf") if not math.isfinite(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(str(a))} = {_toml_value(b)}" for a, b in v.items()) + "}"
    return json.dumps(str(v), ensure_ascii=False)     # dates and times: as text


def _resolved(cat, kind: str, name: str) -> str:
    """The catalog's name for `name` (aliases, display names), or `name` when it is new."""
    try:
        return cat.names(kind)[cat.index(kind, name)]
    except MlsysOptError:
        return name


def _refuse_redefinition(target: str, kind: str, raw: dict, cat, read_toml) -> None:
    """MlsysOptError when the user catalog file `target` already defines one of the entries."""
    defined = {_resolved(cat, kind, n) for n in (read_toml(target, target).get(kind) or {})}
    again = [n for n in (_resolved(cat, kind, n) for n in raw) if n in defined]
    if again:
        raise MlsysOptError(f"catalog add: {target} already defines {', '.join(again)}; edit the entry there "
                            f"(or remove it) instead of adding it again")


def _save_entries(target: str, kind: str, raw: dict, source: str, load_with) -> None:
    """Append raw entries as [kind.NAME] tables to `target` (created if missing), atomically, after
    checking that the user catalogs load with the new file in its place (`load_with(tmp_path)`)."""
    t = Path(target)
    text = t.read_text(encoding="utf-8-sig") if t.exists() else ""
    blocks = [f"# added by `mlsys-opt catalog add {kind} {source}` on {time.strftime('%Y-%m-%d %H:%M')}"]
    for name, fields in raw.items():
        lines = [f"[{kind}.{_toml_key(name)}]"] + [f"{_toml_key(str(a))} = {_toml_value(b)}" for a, b in fields.items()]
        blocks.append("\n".join(lines))
    text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + "\n\n".join(blocks) + "\n"
    tmp = t.with_name(f".{t.name}.tmp.{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        try:
            load_with(str(tmp))
        except MlsysOptError as exc:
            raise MlsysOptError(f"catalog add: not saved, {target} would not load with these entries: "
                                f"{str(exc).replace(str(tmp), target)}") from None
        os.replace(tmp, t)
    finally:
        if tmp.exists():
            tmp.unlink()


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
    from ...space.spec import list_spaces
    from .. import report
    if args.action == "show":
        import pandas as pd
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
    cols = ["name", "scenario", "configurations", "description"]
    cells = [[r["name"], r["scenario"], r["configurations"],
              r["description"][:90] + ("..." if len(r["description"]) > 90 else "")] for r in rows]
    _out("\n".join(report.format_rows(cols, cells)))
    _out()
    _out("run one: mlsys-opt sweep NAME (or a path to your own .toml; format: spaces/README.md)")
    return EXIT_OK

