"""`mlsys-opt synthesize`: inverse walls, a target in and the minimum spec out (seed 002 wall 22).

--itl -> HBM bandwidth (inverse memory roofline), --ttft -> FLOP/s (inverse
compute roofline), --days -> accelerators (iron law, checked with the training
scenario); see ``mlsys_opt.search.synthesis``.
"""
from __future__ import annotations

import math

from ...errors import MlsysOptError
from .common import EXIT_OK, _catalog, _count, _out, _print_json, _split_kv


# the options each mode reads (the others are refused rather than silently ignored)
MODE_OPTIONS = {"itl": ("batch", "context"), "ttft": ("prompt_tokens",), "days": ("hardware", "tokens", "set")}
MAX_DAYS = 36500.0      # a century: beyond it the iron-law fleet rounds to nothing
MAX_TOKENS = 1e18       # training tokens: beyond it the work overflows float32 (1e30 tokens read inf devices)


def _check_options(args) -> None:
    mode = next(m for m in MODE_OPTIONS if getattr(args, m, None) is not None)
    unused = [f"--{o.replace('_', '-')}" for m, opts in MODE_OPTIONS.items() if m != mode for o in opts
              if o not in MODE_OPTIONS[mode] and getattr(args, o, None) not in (None, [])]
    if unused:
        uses = ", ".join(f"--{o.replace('_', '-')}" for o in MODE_OPTIONS[mode])
        raise MlsysOptError(f"--{mode} does not use {', '.join(dict.fromkeys(unused))} (--{mode} reads {uses}, "
                            "--mfu and --precision); remove them or pick the mode that uses them")


def cmd_synthesize(args) -> int:
    _check_options(args)
    res = synthesize_target(args, _catalog(args))
    if args.json:
        _print_json({k: v for k, v in res.items() if k != "lines"})
    else:
        for line in res["lines"]:
            _out(line)
    return EXIT_OK


# The training settings --days checks the iron-law answer with (spaces/capstone.toml's parallelism and batch,
# overridable by --set).  microbatches = 0: the scenario picks the fastest micro-batch of 1, 2, 4 or 8
# sequences that fits.  A fixed count M made the micro-batch global_batch / (dp · M) sequences, which grows
# as the fleet shrinks: small fleets ran out of memory, feasibility was not monotone in N, and the search
# window [iron-law bound, 8 × bound] fell below the first fitting fleet for long deadlines (--days 30 said
# "no fleet" where --days 14 found one).
# The parallelism layout is searched (search.fleet_layouts: tp x pp x ZeRO stage) unless --set pins it: the capstone's
# tp 8 x pp 4, the fixed default before, asked Llama-3-8B for 352 H100s where data parallelism with FSDP needs 225.
DAYS_DEFAULTS = {"global_batch": 2048, "seq_len": 8192, "microbatches": 0}
MOE_EP = (1, 8, 16, 32, 64)      # expert-parallel degrees searched for a MoE model (DeepSeek-V3 trained at ep 64)
# --set keys that --days takes from a flag of its own (a --set value would be silently overridden)
SET_FLAGS = {"model": "--model", "hardware": "--hardware", "efficiency": "--mfu", "precision": "--precision"}


def _days_settings(args) -> tuple[dict, str | None, str]:
    """(--set settings, the raw token count or None, the flag it came from) for --days.

    n_tokens may come from --tokens or --set n_tokens=... (not both); keys that have their own flag
    and n_accelerators (what --days solves for) are refused rather than silently overridden.
    """
    sets = _split_kv(getattr(args, "set", None) or [], "--set")
    for key, flag in SET_FLAGS.items():
        if key in sets:
            raise MlsysOptError(f"--set {key}={sets[key]}: --days reads the {key} from {flag}; "
                                f"write {flag} {sets[key]} instead")
    if "n_accelerators" in sets:
        raise MlsysOptError(f"--set n_accelerators={sets['n_accelerators']}: --days finds the number of "
                            "accelerators; remove it (or use `mlsys-opt evaluate` for a given fleet)")
    if "n_tokens" in sets:
        if args.tokens:
            raise MlsysOptError(f"--tokens {args.tokens} and --set n_tokens={sets['n_tokens']}: give the "
                                "token count once (--tokens)")
        return sets, sets.pop("n_tokens"), "--set n_tokens"
    return sets, args.tokens or None, "--tokens"


def synthesize_target(args, catalog) -> dict:
    """Wall 22 (mlsys_opt.search.synthesis): --itl -> HBM bandwidth, --ttft -> FLOP/s, --days -> devices.

    Returns SI numbers, a `candidates` table (datacenter accelerators, fewest needed first) and `lines`.
    """
    import math

    import numpy as np
    import pandas as pd

    from ... import units
    from ..._types import BYTES_PER_ELEMENT, PRECISION_ALIASES, PRECISIONS, SECONDS_PER_DAY
    from ...search import synthesis as S
    from ...walls import analysis, node
    from .. import report
    m = catalog.entry("models", args.model)
    key = PRECISION_ALIASES.get(args.precision.strip().lower(), args.precision.strip().lower())
    if key not in PRECISIONS:
        from ...errors import did_you_mean
        raise MlsysOptError(f"--precision {args.precision!r}: not a precision{did_you_mean(args.precision, PRECISIONS)} "
                            f"(allowed: {', '.join(PRECISIONS)}; bf16 = fp16)")
    prec = key
    if not 0 < args.mfu <= 1:
        raise MlsysOptError(f"--mfu {args.mfu!r}: expected a fraction in (0, 1]")
    hw = catalog.frames["accelerators"]
    hw = hw[(hw["segment"] == "datacenter") & (hw[f"peak_{prec}_flop_per_s"] > 0) & ~hw["is_wafer_scale"].astype(bool)]
    peaks, bws, caps = (hw[c].to_numpy(float) for c in (f"peak_{prec}_flop_per_s", "mem_bw_bytes_per_s",
                                                           "mem_capacity_bytes"))
    q = report.quantity_text
    name, out, lines = str(m["name"]), {"model": str(m["name"]), "precision": prec}, []
    batch = args.batch if getattr(args, "batch", None) is not None else 1
    context = args.context if getattr(args, "context", None) is not None else 0
    prompt = args.prompt_tokens if getattr(args, "prompt_tokens", None) is not None else 1024
    if args.itl or args.ttft:
        flag = "--itl" if args.itl else "--ttft"
        t = units.parse(args.itl or args.ttft, "time", positive=True, field=flag)
        tokens = batch if args.itl else prompt
        spec = S.inverse_roofline(name, t, precision=prec, efficiency=args.mfu, tokens=float(tokens), catalog=catalog)
        kv = float(node.kv_cache_bytes(float(m["n_layers"]), float(m["n_kv_heads"]), float(m["head_dim"]),
                                       float(context), float(batch), BYTES_PER_ELEMENT[PRECISIONS.index(prec)],
                                       kv_latent_dim=float(m["kv_latent_dim"])))
        kv = kv if args.itl else 0.0
        bw = spec.required_bw_bytes_per_s + float(analysis.required_bandwidth(kv, t))
        mem = spec.required_memory_bytes + kv
        out.update(target=flag[2:], target_s=t, required_bandwidth_bytes_per_s=bw, required_memory_bytes=mem,
                   required_flop_per_s=spec.required_flop_per_s, kv_cache_bytes=kv)
        if args.itl:
            lines += [f"{name} decode at {1e3 * t:g} ms per token ({prec}, batch {batch}, {context:,} KV "
                      f"tokens per sequence):",
                      f"  bytes read per token: {q('w_bytes', spec.weight_bytes)} weights + {q('k_bytes', kv)} KV",
                      f"  required HBM bandwidth: {q('b_bytes_per_s', bw)}  (= {spec.weight_bytes + kv:.4g} B / "
                      f"{t:g} s, inverse memory roofline)",
                      f"  required memory: {q('m_bytes', mem)}; compute: {q('f_flop_per_s', spec.required_flop_per_s)}"
                      f" at η = {args.mfu:g} (decode is memory-bound)"]
            need = np.maximum(1, np.ceil(np.maximum(bw / bws, mem / caps))).astype(int)
            got = [f"{1e3 * (spec.weight_bytes + kv) / (n * b):.1f} ms" for n, b in zip(need, bws)]
            cand = pd.DataFrame({"hardware": hw["name"].to_numpy(), "HBM BW": [q("b_bytes_per_s", v) for v in bws],
                                 "HBM": [q("c_bytes", v) for v in caps], "devices (tp)": need, "ITL at that tp": got})
        else:
            lines += [f"{name} prefill of {tokens:,} tokens in {1e3 * t:g} ms ({prec}):",
                      f"  work: 2·P·prompt = {spec.flop:.4g} FLOP",
                      f"  required peak: {q('p_flop_per_s', spec.required_flop_per_s)} at η = {args.mfu:g} (inverse "
                      f"compute roofline); weights {q('w_bytes', spec.weight_bytes)}"]
            need = np.maximum(1, np.ceil(np.maximum(spec.required_flop_per_s / peaks, mem / caps))).astype(int)
            got = [f"{1e3 * spec.flop / (n * pk * args.mfu):.0f} ms" for n, pk in zip(need, peaks)]
            cand = pd.DataFrame({"hardware": hw["name"].to_numpy(), "peak": [q("p_flop_per_s", v) for v in peaks],
                                 "devices (tp)": need, "TTFT at that tp": got})
        cand = cand.sort_values(["devices (tp)", cand.columns[-1]], kind="stable")
    else:
        try:
            days = float(args.days)
        except ValueError:
            raise MlsysOptError(f"--days {args.days!r}: expected a number of days, e.g. 14") from None
        if not 0 < days <= MAX_DAYS:
            raise MlsysOptError(f"--days {args.days!r}: expected a number of days in (0, {MAX_DAYS:g}] "
                                "(a century at most)")
        sets, tokens_raw, tokens_flag = _days_settings(args)
        n_tok = units.parse(tokens_raw, "tokens", positive=True, field=tokens_flag) if tokens_raw \
            else 20.0 * float(m["n_params"])
        if not n_tok <= MAX_TOKENS:
            raise MlsysOptError(f"{tokens_flag} {tokens_raw}: expected at most {MAX_TOKENS:g} tokens (a million "
                                "times the largest published runs)")
        config = {**DAYS_DEFAULTS, **sets, "model": name,
                  "hardware": args.hardware or "h100_sxm", "n_tokens": n_tok, "efficiency": args.mfu,
                  "precision": prec}
        try:            # a placeholder fleet of one tp·pp·ep group: the search sweeps N itself
            config["n_accelerators"] = int(config.get("tp", 1)) * int(config.get("pp", 1)) * int(config.get("ep", 1))
        except (TypeError, ValueError):
            raise MlsysOptError("--set tp/pp/ep: expected integers") from None
        from ...point.evaluation import point_space
        from ...search.fleet_layouts import LAYOUT_AXES, min_devices_over_layouts
        axes = dict(LAYOUT_AXES)
        if float(m["n_experts"]) > 1:        # MoE: expert parallelism is part of the layout (ep divides dp)
            axes["ep"] = MOE_EP
        search_axes = {k: v for k, v in axes.items() if k not in sets}
        space = point_space("training", config, catalog=catalog)
        point = {space.axes[0].name: space.axes[0].labels[0]}
        layouts = None
        if search_axes:
            layouts = min_devices_over_layouts(space, point, days * SECONDS_PER_DAY, axes=search_axes)
            res = layouts.best
            config.update(layouts.layout)
        else:
            res = S.min_devices_for_time(space, point, days * SECONDS_PER_DAY)
        hw_name = str(catalog.entry("accelerators", config["hardware"])["name"])
        cnn = str(m["kind"]) == "cnn"     # 6·P_eff·D with P_eff = FLOP per sample / 2
        flop = S.run_flop(catalog.tables(), catalog.index("models", name), n_tok)
        n_iron = math.ceil(res.iron_law_n)
        out.update(target="days", target_s=days * SECONDS_PER_DAY, hardware=hw_name, n_tokens=n_tok,
                   training_flop=flop, iron_law_devices=n_iron, scenario_devices=res.n, scenario_time_s=res.time_s)
        settings = ", ".join(f"{k} {'0 (auto)' if k in ('microbatches', 'micro_batch_size') and str(v) == '0' else v}"
                             for k, v in config.items() if k in DAYS_DEFAULTS or k in sets)
        searched = (f"; the fewest over {layouts.n_layouts} layouts of {' × '.join(search_axes)}" if layouts else "")
        chosen = (" with " + ", ".join(f"{k} {v}" for k, v in layouts.layout.items()) if layouts and res.n else "")
        if layouts:
            out.update(layout=layouts.layout, layouts=layouts.table)
        lines += [f"train {name} on {_count(n_tok)} {'samples' if cnn else 'tokens'}"
                  f"{'' if tokens_raw else ' (Chinchilla: 20 per parameter)'}"
                  f" in {days:g} day{'' if days == 1 else 's'} on {hw_name} ({prec}, MFU {args.mfu:g}):",
                  f"  iron law: N = 6{'·(FLOP per sample / 2)' if cnn else 'P'}D / (T · peak · MFU) = {flop:.4g} FLOP"
                  f" / ({days:g} d · "
                  f"{q('p_flop_per_s', float(catalog.entry('accelerators', hw_name)[f'peak_{prec}_flop_per_s']))}"
                  f" · {args.mfu:g}) = {n_iron:,} device{'' if n_iron == 1 else 's'} at MFU {args.mfu:g} "
                  "(the back-of-the-envelope answer; the scenario below may need fewer or more)",
                  (f"  training scenario ({settings}{searched}): {res.n:,} "
                   f"{'device trains' if res.n == 1 else 'devices train'} in "
                   f"{res.time_s / SECONDS_PER_DAY:.1f} days{chosen} (communication, bubbles, failures included)"
                   if res.n else
                   f"  training scenario ({settings}{searched}): no fleet up to 8× the iron law meets {days:g} days "
                   "(scaling losses, memory or the batch split bind; change them with --set, e.g. "
                   "--set global_batch=4096 virtual_stages=4)")]
        if layouts is not None and len(layouts.table) > 1:
            tab = layouts.table.head(6).assign(days=lambda f: (f["time_to_train_s"] / SECONDS_PER_DAY).round(1),
                                               cost=lambda f: [q("tco_usd", v) for v in f["tco_usd"]])
            lines += ["", "  fewest devices per layout (those within 1.5× of the fewest; cost of the run):",
                      *("  " + r for r in report.format_table(
                          tab.drop(columns=["time_to_train_s", "tco_usd"]), human=False).splitlines())]
        need = [math.ceil(float(analysis.required_devices(flop, days * SECONDS_PER_DAY, pk, args.mfu, 1.0, 1.0)))
                for pk in peaks]
        known = {hw_name: (res, ", ".join(f"{k} {v}" for k, v in layouts.layout.items()) if layouts else "as set")}
        cand = _days_candidates(space, point, hw["name"].to_numpy(), need, days * SECONDS_PER_DAY, search_axes,
                                known)
        cand.insert(1, "peak_flop_per_s", peaks[cand.index.to_numpy()].astype(float))
        cand = cand.reset_index(drop=True)
        out["candidates"] = cand
        out["lines"] = lines + _days_table(cand, config.get("pricing", "cloud"))
        return out
    key = [c for c in cand.columns if c.startswith("devices")][0]
    cand[key] = [f"{int(v):,}" for v in cand[key]]
    out["candidates"] = cand
    out["lines"] = lines + ["", "datacenter accelerators in the catalog, fewest needed first:",
                            report.format_table(cand.head(12), human=False)]
    return out


def _days_table(cand, pricing: str) -> list[str]:
    """The printed per-accelerator table of --days (`_days_candidates` plus the peak) and the cheapest run."""
    import pandas as pd

    from ..._types import SECONDS_PER_DAY
    from .. import report
    q = report.quantity_text
    met = cand["scenario_devices"] > 0
    shown = pd.DataFrame({
        "hardware": cand["hardware"], "peak": [q("p_flop_per_s", float(v)) for v in cand["peak_flop_per_s"]],
        "devices (iron law)": [f"{v:,}" for v in cand["iron_law_devices"]],
        "devices": [f"{v:,}" if n else "none" for v, n in zip(cand["scenario_devices"], met)],
        "layout": cand["layout"],
        "days": [f"{t / SECONDS_PER_DAY:.1f}" if n else "" for t, n in zip(cand["time_to_train_s"], met)],
        "run cost": [q("tco_usd", c) if n else "" for c, n in zip(cand["tco_usd"], met)]})
    ok = cand[met]
    if len(ok):
        best = ok.loc[ok["tco_usd"].idxmin()]
        cheapest = (f"cheapest run: {best['hardware']}, {int(best['scenario_devices']):,} devices, {best['layout']}, "
                    f"{q('tco_usd', float(best['tco_usd']))}")
    else:
        cheapest = "no accelerator meets the deadline with these settings"
    return ["", "datacenter accelerators in the catalog, fewest needed first (the iron law at the MFU above, then the "
            f"training scenario's fewest at its best layout; run cost at the catalog's {pricing} prices, estimates: "
            "put your own in with --catalog):", report.format_table(shown.head(20), human=False), cheapest]


def _days_candidates(space, point: dict, names, iron_law: list, target_s: float, search_axes: dict,
                     known: dict):
    """Per accelerator: the iron-law bound, then the training scenario's fewest devices (at the best layout of
    `search_axes`, or the pinned one), its time, the run's cost and the layout; fewest first, 'none' last.

    One vectorised search per catalog accelerator (search.fleet_layouts / synthesis.min_devices_for_time), except
    those in `known` ({name: (DevicesResult, layout text)}: the accelerator the command already answered for)."""
    import pandas as pd

    from ...search import synthesis as S
    from ...search.fleet_layouts import min_devices_over_layouts
    rows = []
    for i, (name, bound) in enumerate(zip(names, iron_law)):
        where = {**point, "hardware": str(name)}
        if str(name) in known:
            best, layout = known[str(name)]
        elif search_axes:
            r = min_devices_over_layouts(space, where, target_s, axes=search_axes)
            best, layout = r.best, ", ".join(f"{k} {v}" for k, v in r.layout.items())
        else:
            best, layout = S.min_devices_for_time(space, where, target_s), "as set"
        rows.append({"index": i, "hardware": str(name), "iron_law_devices": int(bound), "scenario_devices": int(best.n),
                     "time_to_train_s": float(best.time_s), "tco_usd": float(best.outputs.get("tco_usd", math.inf)),
                     "layout": layout if best.n else ""})
    df = pd.DataFrame(rows).set_index("index")
    return df.assign(_none=df["scenario_devices"] == 0).sort_values(["_none", "scenario_devices", "tco_usd"],
                                                                    kind="stable") \
        .drop(columns="_none")
