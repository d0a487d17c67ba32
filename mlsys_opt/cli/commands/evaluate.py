"""`mlsys-opt evaluate` and `mlsys-opt sensitivity`: one configuration, from flags.

The configuration flags (``--model``, ``--hardware``, ..., ``--set KEY=VALUE``,
``--limit``, or ``--space SPACE``) become a scenario name or a ``Space`` plus
parameters (:func:`_config`).  `evaluate` prints seed 003's full-stack audit
(``mlsys_opt.cli.audit``) and every output; `sensitivity` the ranked elasticities
of wall 21 (``mlsys_opt.sensitivity``).
"""
from __future__ import annotations

from typing import Any

from ...errors import MlsysOptError
from .common import (
    EXIT_INFEASIBLE,
    EXIT_INPUT,
    EXIT_OK,
    PROG,
    _catalog,
    _count,
    _eff,
    _err,
    _out,
    _print_json,
    _space,
    _split_kv,
    check_writable,
    enable_compile_cache,
    write_or_fallback,
)

# flag -> (parameter, help); values are read like spec values (names, numbers, "10 min", ...)
CONFIG_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--model", "model", "model to train or serve, e.g. llama3_70b"),
    ("--hardware", "hardware", "accelerator, e.g. h100_sxm (default h100_sxm)"),
    ("--n-accelerators", "n_accelerators", "accelerators in the fleet (training)"),
    ("--tp", "tp", "tensor-parallel degree"),
    ("--pp", "pp", "pipeline-parallel degree"),
    ("--ep", "ep", "expert-parallel degree (training)"),
    ("--region", "region", "grid region, e.g. quebec (default us_avg)"),
    ("--precision", "precision", "fp32, tf32, fp16 (bf16), fp8, int8, int4"),
    ("--fabric", "fabric", "scale-out network, e.g. ib_ndr"),
    ("--pricing", "pricing", "cloud or onprem"),
    ("--tokens", "n_tokens", "training tokens, e.g. 15e12 (training)"),
    ("--efficiency", "efficiency", "matmul fraction of peak η, e.g. 0.4"),
    ("--global-batch", "global_batch", "sequences per optimizer step (training)"),
    ("--seq-len", "seq_len", "tokens per sequence (training)"),
    ("--microbatches", "microbatches", "micro-batches per step (training; default 0 = auto)"),
    ("--zero-stage", "zero_stage", "ZeRO stage 0-3 (training)"),
    ("--request-rate", "request_rate", "requests per second, e.g. 1000 (serving)"),
    ("--batch", "batch", "concurrent sequences per replica (serving)"),
    ("--prompt-tokens", "prompt_tokens", "input tokens per request (serving)"),
    ("--output-tokens", "output_tokens", "generated tokens per request (serving)"),
    ("--replicas", "replicas", "model replicas, 0 = enough for the load (serving)"),
    ("--duration", "duration", "deployment period, e.g. '1 year' (serving)"),
)
SERVING_ONLY = {"request_rate", "batch", "prompt_tokens", "output_tokens", "replicas", "duration",
                "max_utilization"}
_LISTABLE = ("catalog", "choice", "int")


def _add_config_args(p) -> None:
    g = p.add_argument_group("configuration (use --space SPACE with --set, or a scenario with direct flags)")
    g.add_argument("--space", metavar="SPACE", help="a spec file or ready space name; --set picks axis values "
                   "and overrides constants (axes left out take their first value)")
    g.add_argument("--scenario", choices=("training", "serving"),
                   help="scenario without a space (default: serving if a serving flag is given, else training)")
    g.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="any scenario parameter, e.g. --set hardware=b200 tp=8 checkpoint_interval='30 min'")
    g.add_argument("--limit", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="[constraints] limits for a scenario, e.g. --limit max_time='30 day' budget=2e7USD")
    for flag, param, help_ in CONFIG_FLAGS:
        g.add_argument(flag, dest=f"p_{param}", metavar="V", help=help_)
    p.add_argument("--calibration", metavar="FILE", help="efficiency parameters from a calibration file")


def _add_table_args(p) -> None:
    """`mlsys-opt evaluate --table FILE -o OUT ...` (cli/commands/table.py)."""
    from .table import add_table_args
    add_table_args(p)


def _config(args) -> tuple[Any, dict, dict]:
    """(target: scenario name or Space, params, limits) from the configuration flags."""
    from ...scenarios import schema
    params = {param: getattr(args, f"p_{param}") for _, param, _ in CONFIG_FLAGS
              if getattr(args, f"p_{param}") is not None}
    params.update(_split_kv(args.set, "--set"))
    limits = _split_kv(args.limit, "--limit")
    if args.space:
        if args.scenario:
            raise MlsysOptError("--space and --scenario: give one (the space names its scenario)")
        target = _space(args, args.space)
        scenario = target.scenario
    else:
        scenario = args.scenario or ("serving" if SERVING_ONLY & set(params) else "training")
        target = scenario
    allowed = schema.PARAMS[scenario]
    out = {}
    for k, v in params.items():
        spec = allowed.get(k)
        if spec is None:
            from ...errors import did_you_mean
            raise MlsysOptError(f"{k!r} is not a parameter of the {scenario} scenario{did_you_mean(k, allowed)} "
                                f"(allowed: {', '.join(allowed)})")
        if spec.kind in _LISTABLE and "," in v:
            out[k] = [x.strip() for x in v.split(",") if x.strip()]
        elif k == "request_rate" and _is_number(v):
            out[k] = f"{v} /s"
        else:
            out[k] = v
    if scenario == "training" and "n_tokens" not in out and not args.space:
        raise MlsysOptError("the training scenario needs the number of tokens: --tokens 15e12 "
                            "(or --set n_tokens=15e12)")
    if scenario == "serving" and "request_rate" not in out and not args.space:
        raise MlsysOptError("the serving scenario needs a request rate: --request-rate 1000 "
                            "(requests per second)")
    if "model" not in out and not args.space:
        raise MlsysOptError(f"the {scenario} scenario needs a model: --model llama3_70b "
                            "(list: mlsys-opt catalog list models)")
    return target, out, limits


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _first_objective(space) -> str:
    return space.objectives[0][0]


# --------------------------------------------------------------------------- evaluate

def cmd_evaluate(args) -> int:
    if getattr(args, "table", None):        # a table of configurations: cli/commands/table.py
        from .table import cmd_evaluate_table
        return cmd_evaluate_table(args)
    from ...point import evaluation
    from .. import audit as audit_table
    from .. import report
    from ..advice import advice
    from ..plots import check_path
    target, params, limits = _config(args)
    if args.figure:
        check_writable(check_path(args.figure), "--figure")
    enable_compile_cache()
    df, space = evaluation.evaluate_frame(target, params, eff=_eff(args), catalog=_catalog(args),
                                          limits=limits or None)
    grid = any(isinstance(v, list) for v in params.values())
    if grid or len(df) > 1:
        if args.json:
            tips = ["; ".join(advice(r, space)) for _, r in df.iterrows()]
            _print_json({"scenario": space.scenario, "configurations": df.assign(advice=tips)})
        else:
            varying = [c for c in df.columns if c in params and isinstance(params[c], list)]
            extra = ["time_to_train_s", "tco_usd", "carbon_kg", "mfu"] if space.scenario == "training" else \
                ["ttft_s", "itl_s", "p99_latency_s", "cost_per_mtok_usd", "carbon_per_mtok_kg"]
            cols = list(dict.fromkeys(varying + [n for n, _ in space.objectives] + extra))
            cols += ["feasible", "binding_constraint"]
            _out(report.format_table(df, cols, width=report.terminal_width()))
            bad = df[~df["feasible"].astype(bool)]
            for _, r in bad.head(MAX_ADVICE_ROWS).iterrows():     # what to change, per infeasible configuration
                label = ", ".join(f"{c} {r[c]}" for c in varying) or "configuration"
                for line in advice(r, space):
                    _out(f"{label}: {line}")
            if len(bad) > MAX_ADVICE_ROWS:
                _out(f"(+{len(bad) - MAX_ADVICE_ROWS} more infeasible configurations)")
        return EXIT_OK if df["feasible"].any() or args.allow_infeasible else EXIT_INFEASIBLE
    row = df.iloc[0]
    hint = _layout_hint(target, space, row, params, _eff(args))
    binding = None
    if not args.no_sensitivity:
        from ...point.sensitivity import binding as find_binding
        from ...point.sensitivity import sensitivity
        sens = sensitivity(space, _config_of(space, row, params), outputs=[_first_objective(space)],
                           eff=_eff(args), tables=space.catalog.tables())
        binding = find_binding(_levers(sens), _first_objective(space))
    audit = audit_table.audit(row, space, sensitivity_binding=binding, eff=_eff(args))
    figure, failed = None, ""          # a figure that cannot be written: the audit is still printed, exit 2
    if args.figure:
        from ..plots import evaluation_figure
        figure, failed = write_or_fallback(lambda p: evaluation_figure(row, space, path=p), args.figure, "--figure")
    if args.json:
        _print_json({"scenario": space.scenario, "configuration": _param_dict(row, space),
                     "outputs": {k: row[k] for k in _output_cols(space) if k in row},
                     "constraints": {k[2:]: row[k] for k in row.index if k.startswith("g_")},
                     "feasible": bool(row["feasible"]), "binding_constraint": row["binding_constraint"],
                     "advice": advice(row, space), "audit": audit, "figure": str(figure) if figure else None,
                     "layout_hint": hint and {k: v for k, v in hint.items() if k != "line"}})
    else:
        _out(_title(row, space))
        _out()
        _out(audit_table.format_audit(audit))
        _out()
        outs = [c for c in _output_cols(space) if c in row and c not in report.HIDDEN]
        _out("All outputs (SI value in the last column):")
        _out(_outputs_table(row, outs, space.scenario))
        _out()
        if row["feasible"]:
            _out(f"feasible: yes (tightest constraint: {row['binding_constraint']}, "
                 f"g = {row['g_' + row['binding_constraint'].replace('limit:', 'limit_')]:+.3f})")
        else:
            bad = [k[2:].replace("limit_", "limit:", 1) for k in row.index if k.startswith("g_") and row[k] > 0]
            _out(f"feasible: NO, violated: {', '.join(bad)}")
            for line in advice(row, space):
                _out(f"  {line}")
        if hint:
            _out(hint["line"])
        if figure:
            _out(f"wrote {figure} (iron-law loss cascade)" if space.scenario == "training"
                 else f"wrote {figure} (decode step on the roofline)")
    if failed:
        _err(f"{PROG}: error: {failed}")
        return EXIT_INPUT
    return EXIT_OK if bool(row["feasible"]) or args.allow_infeasible else EXIT_INFEASIBLE


LAYOUT_PARAMS = {"training": ("tp", "pp", "zero_stage"), "serving": ("tp", "pp")}   # search.fleet_layouts


def _layout_hint(target, space, row, params: dict, eff) -> dict | None:
    """A configuration evaluated without any of LAYOUT_PARAMS (the defaults: tp 1, pp 1, ZeRO-1) where another
    layout is feasible and better, or where this one is not: the best layout (search.fleet_layouts.best_layout_at:
    training, the fastest on this fleet; serving, the cheapest per token for this load) as {layout, objective,
    value, tco_usd, line}; else None."""
    names = LAYOUT_PARAMS.get(space.scenario, ())
    if not names or not isinstance(target, str) or set(names) & set(params):
        return None
    from ...search.fleet_layouts import best_layout_at
    from .. import report
    best = best_layout_at(space, _config_of(space, row, params), eff=eff)
    training = space.scenario == "training"
    where = f"on {int(row['n_accelerators']):,} × {row['hardware']}" if training else \
        f"for this load on {row['hardware']}"
    given = ", ".join(f"{k} {int(row[k])}" for k in names)
    n = len(best.table) if best.layout else 0
    if not best.layout:
        return {"layout": {}, "objective": best.objective, "value": None, "tco_usd": None,
                "line": f"layout: no {' × '.join(names)} layout is feasible {where} (more accelerators, or ones "
                        "with more memory)"}
    v = best.outputs[best.objective]
    if bool(row["feasible"]) and v >= 0.99 * float(row[best.objective]):
        return None
    flags = " ".join(f"--{k.replace('_', '-')} {val}" for k, val in best.layout.items())
    what = (f"{v / 86400:.1f} days, {report.quantity_text('tco_usd', best.outputs['tco_usd'])}" if training else
            f"${v:.3g}/Mtok, {int(best.outputs['n_accelerators']):,} accelerators in "
            f"{int(best.outputs['replicas']):,} replicas")
    return {"layout": best.layout, "objective": best.objective, "value": v, "tco_usd": best.outputs["tco_usd"],
            "line": f"layout: {', '.join(names[:-1])} and {names[-1]} were not given ({given} evaluated); the "
                    f"{'fastest' if training else 'cheapest'} of {n} feasible layouts {where} is "
                    + ", ".join(f"{k} {val}" for k, val in best.layout.items()) + f": {what} ({flags})"}


MAX_ADVICE_ROWS = 10      # a grid prints what to change for at most this many infeasible configurations
WORKLOAD_INPUTS = ("n_tokens", "request_rate", "duration")   # what is asked, not how the system answers
# inputs whose ideal value is the lower edge of their domain: there they can only make the design worse, so they
# are no lever (straggler_factor = 1 scales the step with elasticity exactly 1 and would name itself "binding"
# in every healthy configuration; a fabric without oversubscription cannot be less oversubscribed)
IDEAL_AT_FLOOR = {"straggler_factor": 1.0, "fabric.oversubscription": 1.0}


def _levers(sens: "pd.DataFrame") -> "pd.DataFrame":   # noqa: F821  (pandas is imported lazily)
    """The sensitivity rows of inputs a design can move to its benefit: not the workload (WORKLOAD_INPUTS), not
    an input sitting at its ideal floor (IDEAL_AT_FLOOR); attrs (the constraints) kept for `binding`."""
    floor = sens["parameter"].map(IDEAL_AT_FLOOR)
    ideal = floor.notna() & (sens["value"] <= floor)
    system = sens[~sens["parameter"].isin(WORKLOAD_INPUTS) & ~ideal]
    system.attrs.update(sens.attrs)
    return system


def _config_of(space, row, params: dict) -> dict:
    """The sensitivity config of an evaluated row: its axis labels plus the non-axis overrides."""
    config = {a.name: str(row[a.name]) if a.kind in ("catalog", "choice") else a.labels[0]
              for a in space.axes if a.name in row}
    for a in space.axes:
        if a.name in params and not isinstance(params[a.name], list):
            config[a.name] = params[a.name]
    config.update({k: v for k, v in params.items() if k not in space.axis_names})
    return config


def _output_cols(space) -> list[str]:
    from ...scenarios import schema
    return list(schema.OUTPUTS[space.scenario]) + (["time_to_train_days"] if space.scenario == "training" else [])


def _param_dict(row, space) -> dict:
    """The configuration with the values as given (SI): numeric constants from the space itself,
    not from the float32 evaluation (n_tokens 2e12, not 1999999991808.0); axes from their labels."""
    from ...scenarios import schema
    from ...space.spec import column_name
    out = {}
    for k, spec in schema.PARAMS[space.scenario].items():
        col = column_name(space.scenario, k)
        if col not in row:
            continue
        v = row[col]
        if k in space.constants and spec.kind == "float":
            v = float(space.constants[k])
        elif k in space.constants and spec.kind == "int":
            v = int(round(float(space.constants[k])))
        out[col] = v
    return out


def _title(row, space) -> str:
    if space.scenario == "training":
        return (f"training {row['model']} on {int(row['n_accelerators']):,} × {row['hardware']} "
                f"(tp {int(row['tp'])}, pp {int(row['pp'])}, dp {int(row['dp']):,}), {row['region']}, "
                f"{row['precision']}, {row['pricing']}, {_count(float(row['n_tokens']))} tokens")
    return (f"serving {row['model']} on {row['hardware']} (tp {int(row['tp'])}, pp {int(row['pp'])}, batch "
            f"{int(row['batch'])}, {int(row['replicas']):,} replicas), {row['region']}, {row['precision']}, "
            f"{float(row['request_rate_per_s']):,.4g} requests/s")


def _outputs_table(row, names, scenario: str) -> str:
    import pandas as pd

    from ...scenarios.schema import OUTPUTS
    from .. import report
    docs = OUTPUTS[scenario]
    rows = [{"output": n, "value": report.value_text(n, row[n]), "meaning": docs[n].doc if n in docs else "",
             "SI": _si(row[n])} for n in names]
    return report.format_table(pd.DataFrame(rows), human=False)


def _si(v) -> str:
    if isinstance(v, str):
        return v
    return f"{float(v):.6g}"


# --------------------------------------------------------------------------- sensitivity

def cmd_sensitivity(args) -> int:
    import pandas as pd

    from ...point.evaluation import point_space
    from ...point.sensitivity import binding, sensitivity
    from .. import report
    target, params, limits = _config(args)
    if any(isinstance(v, list) for v in params.values()):
        raise MlsysOptError("sensitivity takes one configuration; give single values (no comma lists)")
    if args.figure:
        from ..plots import check_path
        check_writable(check_path(args.figure), "--figure")
    enable_compile_cache()
    space = target if not isinstance(target, str) else point_space(target, params, catalog=_catalog(args),
                                                                    limits=limits or None)
    config = _config_of(space, {a.name: a.labels[0] for a in space.axes}, params) if isinstance(target, str) \
        else dict(params)
    outputs = args.output or [n for n, _ in space.objectives]
    df = sensitivity(space, config, outputs=outputs, eff=_eff(args), tables=space.catalog.tables())
    figure, failed = None, ""
    if args.figure:
        from ..plots import tornado
        described = ", ".join(f"{k}={v}" for k, v in config.items())
        figure, failed = write_or_fallback(lambda p: tornado(df, outputs[0], top=args.top, path=p,
                                                             configuration=f"{space.scenario}: {described}"),
                                           args.figure, "--figure")
    cons = df.attrs.get("constraints")      # like evaluate: an infeasible configuration exits 3 (still printed)
    violated = [str(c) for c in cons.columns if float(cons.iloc[0][c]) > 0] if cons is not None and len(cons) else []
    code = EXIT_INPUT if failed else EXIT_INFEASIBLE if violated and not args.allow_infeasible else EXIT_OK
    if args.json:
        _print_json({"scenario": space.scenario, "configuration": config, "sensitivities": df,
                     "binding": {o: binding(df, o)._asdict() for o in outputs}, "feasible": not violated,
                     "figure": str(figure) if figure else None})
        if failed:
            _err(f"{PROG}: error: {failed}")
        return code
    for o in outputs:
        rows = df[df["output"] == o].sort_values("rank").head(args.top)
        _out(f"{o} = {report.value_text(o, rows['output_value'].iloc[0])}: elasticities ∂ln y/∂ln x "
             "(+1 % of the input changes the output by this many %)")
        table = pd.DataFrame({"rank": rows["rank"], "input": rows["parameter"],
                              "value": [report.quantity_text(p, v) for p, v in zip(rows["parameter"], rows["value"])],
                              "elasticity": [f"{e:+.3f}" for e in rows["elasticity"]],
                              "derivative (SI)": [f"{d:.4g}" for d in rows["derivative"]]})
        _out(report.format_table(table, human=False))
        b = binding(df, o)
        bs = binding(_levers(df), o)
        _out(f"binding input: {b.parameter} ({b.elasticity:+.2f})"
             + (f"; of the system: {bs.parameter} ({bs.elasticity:+.2f})" if bs.parameter != b.parameter else "")
             + f"; tightest constraint: {b.constraint} (g = {b.g:+.3f}, <= 0 feasible)")
        _out()
    if violated:
        _out(f"infeasible configuration: violated {', '.join(violated)} (the elasticities hold all the same; "
             f"`mlsys-opt evaluate` with the same options says what to change)")
    if figure:
        _out(f"wrote {figure} (tornado chart of {outputs[0]})")
    if failed:
        _err(f"{PROG}: error: {failed}")
    return code
