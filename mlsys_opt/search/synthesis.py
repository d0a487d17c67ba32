"""Inverse problems (wall 22): from a target to the minimum specification that meets it.

Closed forms, where a wall inverts exactly (``mlsys_opt.walls.analysis``):

    BW_req    = bytes per token / target ITL          (memory roofline, decode)
    peak_req  = FLOP / (target · η)                   (compute roofline, e.g. TTFT)
    mem_req   = weights (+ KV + activations)          (capacity)
    N_req     = 6·P·D / (T · peak · MFU · η_s · goodput)   (iron law, time to train)

:func:`inverse_roofline` is mlsysim's SynthesisSolver (one pass streaming every
weight once: batch 1, no reuse), :func:`min_devices_for_time` runs the iron law
and then the full training scenario over candidate fleet sizes.

Everything else: :func:`synthesize`, a gradient solve over any continuous
inputs of a scenario (its float parameters, the catalog fields of the chosen
rows, efficiency leaves), vmapped over many targets at once.  Each free input
x is reparametrised x = x0·e^z (log scale; x = lo + (hi - lo)·sigmoid(·) when
the schema bounds it on both sides), and optax Adam minimises

    L(z) = J(x) + μ Σ_targets relu(viol)² + μ Σ_structural relu(g)²   (divisibility excluded),
    viol = ln(y / (t·(1 - m))) for "y <= t"  (ln(t·(1 + m) / y) for "y >= t")

with J = ln(objective output) when an objective (e.g. tco_usd) is given, else
J = Σ ln(x / x0) (the "minimum spec": the smallest product of the free
inputs).  The margin m = 1e-3 puts the optimum just inside the target, so the
returned point meets it; the check uses the exact outputs at that point.

Sources: seed 002 wall 22 and "The Iron Law"; seed 003 section 7 (Llama-3-70B
synthesis); Williams et al. (2009) roofline; mlsysim SynthesisSolver.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._compile import jit_options
from .._types import BYTES_PER_ELEMENT, MODEL_KINDS, PRECISION_ALIASES, PRECISIONS
from ..errors import MlsysOptError, did_you_mean
from ..point.config import (
    gather_local,
    input_value,
    one_config,
    parameter_names,
    read_input,
    resolve_config,
    run_scenario,
    with_inputs,
)
from ..scenarios import schema
from ..walls import analysis
from .optim import adam_scan, decaying_adam, from_unconstrained, to_unconstrained

MARGIN = 1e-3
PENALTY = 1e4


# --------------------------------------------------------------------------- closed forms

class RooflineSpec(NamedTuple):
    """Minimum hardware for one pass of a model in a target time (mlsysim SynthesisSolver)."""
    required_bw_bytes_per_s: float      # W / T
    required_flop_per_s: float          # 2·P_active·tokens / (T·η)
    required_memory_bytes: float        # W
    compute_memory_ratio_flop_per_byte: float
    weight_bytes: float                 # P·bytes per element
    flop: float                         # 2·P_active·tokens


def _precision_code(precision: str) -> int:
    key = PRECISION_ALIASES.get(str(precision).lower(), str(precision).lower())
    if key not in PRECISIONS:
        raise MlsysOptError(f"precision {precision!r} is not known{did_you_mean(str(precision), PRECISIONS)} "
                            f"(allowed: {', '.join(PRECISIONS)})")
    return PRECISIONS.index(key)


def inverse_roofline(model: str, target_latency_s: float, *, precision: str = "fp16",
                     efficiency: float = 0.5, tokens: float = 1.0, catalog=None) -> RooflineSpec:
    """Wall 22 closed form: the hardware one forward pass needs to finish in `target_latency_s`.

    W = P·bytes (every weight streamed once), F = 2·P_active·tokens:
    BW = W/T [analysis.required_bandwidth], peak = F/(T·η)
    [analysis.required_flop_per_s], memory = W [analysis.required_memory_bytes].

    Args:
      model: catalog model name; target_latency_s: T, s; precision: weight/math precision;
      efficiency: η (0-1]; tokens: tokens processed by the pass (1 = one decode step).

    Worked example (seed 003 section 7, mlsysim SynthesisSolver, Llama-3-70B,
    fp16, T = 200 ms, η = 0.5): W = 70.6e9·2 = 141.2 GB -> BW 706 GB/s,
    peak 2·70.6e9/(0.2·0.5) = 1.412 TFLOP/s, memory 141.2 GB.
    """
    from ..catalog import load_catalog

    cat = catalog if catalog is not None else load_catalog()
    row = cat.entry("models", model)
    w = float(row["n_params"]) * BYTES_PER_ELEMENT[_precision_code(precision)]
    flop = 2.0 * float(row["n_active_params"]) * tokens
    bw = float(analysis.required_bandwidth(w, target_latency_s))
    peak = float(analysis.required_flop_per_s(flop, target_latency_s, efficiency))
    mem = float(analysis.required_memory_bytes(w))
    return RooflineSpec(bw, peak, mem, peak / bw, w, flop)


MAX_DEVICES = 1e9       # fleets searched at most (a deadline needing more answers "none"; fleet_layouts too)


class DevicesResult(NamedTuple):
    """Fewest accelerators that train within a target time.

    iron_law_n: N = 6PD/(T·peak·η) (MFU = the efficiency parameter, η_scaling =
      goodput = 1): the back-of-the-envelope answer, no bound (the scenario's MFU may exceed η).
    n: smallest multiple of tp·cp·pp·ep at which the full training scenario is
      feasible and time_to_train_s <= target, searched from the physical bound 6PD/(T·peak)
      (0 when none up to max_factor × iron_law_n).
    time_s: time_to_train_s at n; time_below_s: at n - tp·cp·pp·ep (inf if none/infeasible).
    outputs: every training output at n (dict of floats).
    """
    iron_law_n: float
    n: int
    time_s: float
    time_below_s: float
    outputs: dict


def run_flop(tables, model: int, n_tokens: float) -> float:
    """6·P_eff·D, the work of a training run (FLOP) as the training scenario counts it: P_eff = the active
    parameters per token, or flop_per_sample/2 per sample for a CNN (scenarios.parts: a sample costs
    flop_per_sample = 2·P_eff forward FLOP; 6·P per sample would undercount ResNet-50 160×)."""
    from ..walls.algorithm import training_flop
    fps = float(tables.model.flop_per_sample[model])
    cnn = int(tables.model.kind[model]) == MODEL_KINDS.index("cnn")
    return float(training_flop(0.5 * fps if cnn else float(tables.model.n_active_params[model]), n_tokens))


def min_devices_for_time(target, config: dict, target_time_s: float, *, max_factor: float = 8.0,
                         max_candidates: int = 65536, eff=None, dtype=None) -> DevicesResult:
    """Iron law for a time-to-train target, then checked on the training scenario.

    Args:
      target: "training" or a training ``Space``; config: display values (model,
        hardware, n_tokens, tp, pp, ...) as for ``sensitivity``.
      target_time_s: T, s.  max_factor: candidates go up to max_factor × the iron-law N.

    All candidates N (multiples of tp·cp·pp·ep) are evaluated in one vectorised call.
    """
    from ..catalog import load_catalog  # noqa: F401
    from ..scenarios.efficiency import DEFAULT_EFFICIENCY

    dtype = jnp.float64 if dtype is None and jax.config.jax_enable_x64 else (dtype or jnp.float32)
    scenario, space, p, catalog = resolve_config(target, config, dtype)
    if scenario != "training":
        raise MlsysOptError(f"min_devices_for_time needs the training scenario; got {scenario}")
    eff = DEFAULT_EFFICIENCY if eff is None else eff
    tables = catalog.tables(dtype=dtype)
    q = {k: np.asarray(v)[0] for k, v in p.items()}
    h, m, prec = int(q["hardware"]), int(q["model"]), int(q["precision"])
    peak = float(tables.hw.peak_flop_per_s[h, prec])
    flop = run_flop(tables, m, float(q["n_tokens"]))
    n0 = float(analysis.required_devices(flop, target_time_s, peak, float(q["efficiency"]), 1.0, 1.0))
    if not max_factor * n0 <= MAX_DEVICES:          # more than a billion accelerators (or inf / NaN): none
        return DevicesResult(n0, 0, math.inf, math.inf, {})
    group = int(round(float(q["tp"]) * float(q["cp"]) * float(q["pp"]) * float(q["ep"])))
    # from the physical bound (MFU = 1): the scenario's MFU may beat the user's η, so n0 bounds nothing
    k0 = max(1, math.floor(analysis.required_devices(flop, target_time_s, peak, 1.0, 1.0, 1.0) / group))
    k1 = max(k0 + 1, math.ceil(max_factor * n0 / group))
    ks = np.arange(k0, min(k1, k0 + max_candidates) + 1)
    n_cand = ks * group
    m = max(4096, 1 << max(0, int(len(ks) - 1).bit_length()))   # pad: one compiled shape in practice
    batch = {k: jnp.full((m,), v, jnp.asarray(p[k]).dtype) for k, v in q.items()}
    batch["n_accelerators"] = jnp.asarray(np.concatenate([n_cand, np.full(m - len(ks), n_cand[-1])]), dtype)
    outs, cons = _scenario_jit()(batch, tables, eff)
    outs = type(outs)(*[np.asarray(x)[: len(ks)] for x in outs])
    cons = [np.asarray(c)[: len(ks)] for c in cons]
    t = np.asarray(outs.time_to_train_s, np.float64)
    ok = np.all(np.stack(cons) <= 0, axis=0) & (t <= target_time_s)
    if not ok.any():
        return DevicesResult(n0, 0, math.inf, math.inf, {})
    i = int(np.argmax(ok))
    below = float(t[i - 1]) if i > 0 and bool(np.all([c[i - 1] <= 0 for c in cons])) else math.inf
    return DevicesResult(n0, int(n_cand[i]), float(t[i]), below,
                         {f: float(np.asarray(getattr(outs, f))[i]) for f in outs._fields})


_JIT: dict = {}


def _scenario_jit(scenario: str = "training"):
    """The jitted scenario function ({param: [n]}, tables, eff) -> (outputs, constraints), one per scenario
    (shared by min_devices_for_time and search.fleet_layouts)."""
    if scenario not in _JIT:
        from ..scenarios import SCENARIO_FNS, params_from_dict
        _JIT[scenario] = jax.jit(lambda p, t, e: SCENARIO_FNS[scenario](params_from_dict(scenario, p), t, e),
                                 **jit_options())
    return _JIT[scenario]


# --------------------------------------------------------------------------- gradient solve

class SynthesisResult(NamedTuple):
    """Minimum specifications found, one row per target.

    free: names of the free inputs; values: [n_targets, n_free] their values
    (SI); base: [n_free] values in the base configuration; outputs: {output:
    [n_targets]} the targeted (and objective) outputs at the solution; met:
    bool [n_targets], every target and structural constraint satisfied;
    objective: [n_targets] objective output (NaN when objective is None);
    frame: the same as a DataFrame.
    """
    free: tuple[str, ...]
    values: np.ndarray
    base: np.ndarray
    outputs: dict
    met: np.ndarray
    objective: np.ndarray
    frame: pd.DataFrame


def free_inputs(scenario: str) -> tuple[str, ...]:
    """Inputs :func:`synthesize` may free: continuous inputs plus integer counts/degrees."""
    ints = tuple(k for k, s in schema.PARAMS[scenario].items() if s.kind == "int")
    return parameter_names(scenario) + ints


def _resolve_free(scenario: str, free: Sequence[str]) -> tuple[str, ...]:
    allowed = free_inputs(scenario)
    out = []
    for name in ([free] if isinstance(free, str) else free):
        if name in allowed:
            out.append(name)
            continue
        hits = [a for a in allowed if a.split(".", 1)[-1] == name]   # short table-field names
        if len(hits) == 1:
            out.append(hits[0])
            continue
        raise MlsysOptError(f"synthesize: {name!r} is not a free input of the {scenario} scenario"
                            f"{did_you_mean(name, allowed)} (allowed: {', '.join(allowed)})")
    return tuple(out)


def _bounds(scenario: str, name: str) -> tuple[float | None, float | None]:
    spec = schema.PARAMS[scenario].get(name)
    if spec is None:
        return None, None
    return spec.low, spec.high


def penalty_weights(scenario: str, n_limits: int) -> np.ndarray:
    """Weights of the g columns (structural, then limits) in a continuous solve's penalty.

    "divisibility" (N a multiple of tp·pp·ep) gets 0: it is an integrality
    condition whose sawtooth |N - k·round(N/k)| traps a real-valued solve; the
    rounding step / the final check enforce it instead.
    """
    names = schema.STRUCTURAL_CONSTRAINTS[scenario]
    return np.array([0.0 if c == "divisibility" else 1.0 for c in names] + [1.0] * n_limits)


def reparam(scenario: str, free: Sequence[str]):
    """x_of(z, x0) for the free inputs: x = lo + (hi - lo)·sigmoid(z + logit((x0 - lo)/(hi - lo)))
    where the schema bounds an input on both sides (efficiency, overlap, ...), else x = x0·e^z.

    z = 0 gives x = x0 (clipped 1e-6 inside the bounds).  z, x0: [n_free] (any dtype).
    """
    lo = np.array([_bounds(scenario, k)[0] or 0.0 for k in free])
    hi = np.array([_bounds(scenario, k)[1] if _bounds(scenario, k)[1] is not None else np.inf for k in free])

    def x_of(z, x0):
        return from_unconstrained(z + to_unconstrained(x0, lo, hi, eps=1e-6), lo, hi)

    return x_of


def synthesize(target, base_config, targets: dict, free: Sequence[str], *, objective: str | None = None,
               steps: int = 1500, learning_rate: float = 0.05, eff=None, dtype=None) -> SynthesisResult:
    """Minimum values of `free` inputs that meet `targets`, by a batched gradient solve.

    Args:
      target: scenario name ("training"/"serving") or a ``Space`` (its limits are not applied).
      base_config: the configuration to start from (display values, as for
        ``sensitivity``); every input not in `free` stays as given.
      targets: {output: (sense, value)} with sense "max" (y <= value) or "min"
        (y >= value); value a float or a 1-D array: arrays (broadcast together)
        give one independent solve per entry, all in one vmapped call.
      free: inputs to solve for: scenario parameters ("efficiency",
        "checkpoint_bw", "n_accelerators", ...), catalog fields of the chosen
        rows ("hardware.mem_bw_bytes_per_s" or just "mem_bw_bytes_per_s",
        "hardware.peak_flop_per_s" scales the whole peak row), or efficiency
        leaves ("eff.mem_bw_eff").  Base values must be > 0.
      objective: output to minimise subject to the targets (e.g. "tco_usd"),
        or None for the minimum spec (smallest product of the free inputs).
      steps, learning_rate: Adam steps and initial rate (decays ×0.01 over the run).
      eff: efficiency model (default DEFAULT_EFFICIENCY).

    Returns:
      SynthesisResult (``met`` says whether each target was reached).

    Worked example (seed 002 wall 22): Llama-3-70B fp16 decode at batch 1,
    targets={"itl_s": ("max", 0.05)}, free=["mem_bw_bytes_per_s"] with
    mem_bw_eff = 1 and no dispatch/comm overheads -> (W + KV)/0.05 ≈ 2.8 TB/s.
    """
    from ..scenarios.efficiency import DEFAULT_EFFICIENCY

    dtype = jnp.float64 if dtype is None and jax.config.jax_enable_x64 else (dtype or jnp.float32)
    scenario, _, p, catalog = resolve_config(target, base_config, dtype)
    if int(np.shape(p["hardware"])[0]) != 1:
        raise MlsysOptError("synthesize: base_config must be ONE configuration")
    outs_allowed = tuple(n for n, o in schema.OUTPUTS[scenario].items() if o.unit != "code")
    tnames, senses, tvals = [], [], []
    for out, spec in targets.items():
        if out not in outs_allowed:
            raise MlsysOptError(f"synthesize: target {out!r} is not an output of the {scenario} scenario"
                                f"{did_you_mean(out, outs_allowed)} (allowed: {', '.join(outs_allowed)})")
        sense, value = spec
        if sense not in ("max", "min"):
            raise MlsysOptError(f"synthesize: target {out!r} sense must be 'max' (y <= value) or 'min' "
                                f"(y >= value); got {sense!r}")
        tnames.append(out)
        senses.append(1.0 if sense == "max" else -1.0)
        tvals.append(np.atleast_1d(np.asarray(value, np.float64)))
    if not tnames:
        raise MlsysOptError("synthesize: give at least one target {output: (sense, value)}")
    if objective is not None and objective not in outs_allowed:
        raise MlsysOptError(f"synthesize: objective {objective!r} is not an output of the {scenario} "
                            f"scenario{did_you_mean(objective, outs_allowed)} "
                            f"(allowed: {', '.join(outs_allowed)})")
    T = np.stack(np.broadcast_arrays(*tvals), axis=1)          # [n_targets, n_out_targets]
    if np.any(T <= 0):
        raise MlsysOptError("synthesize: target values must be > 0 (targets are compared on log scale)")
    free = _resolve_free(scenario, free)
    eff = DEFAULT_EFFICIENCY if eff is None else eff
    eff = type(eff)(*[jnp.asarray(x, dtype) for x in eff])
    tables = catalog.tables(dtype=dtype)
    local = jax.tree_util.tree_map(lambda a: a[0], gather_local(tables, p))
    p1 = one_config({k: jnp.asarray(v)[0] for k, v in p.items()})
    prec = int(np.asarray(p["precision"])[0])
    xs = [jnp.asarray(read_input(k, p1, local, eff), dtype) for k in free]
    x0 = np.array([float(input_value(k, x, prec)) for k, x in zip(free, xs)])
    if np.any(x0 <= 0):
        bad = free[int(np.argmax(x0 <= 0))]
        raise MlsysOptError(f"synthesize: the base value of {bad!r} is {x0[x0 <= 0][0]:g}; free inputs "
                            "must start > 0 (give a positive value in base_config)")
    sense = jnp.asarray(senses, dtype)
    n_free = len(free)
    x_of_z = reparam(scenario, free)

    def x_of(z):
        return x_of_z(z, jnp.asarray(x0, dtype))

    def evaluate(z):
        x = x_of(z)
        new = {k: xs[i] * (x[i] / x0[i]) for i, k in enumerate(free)}
        outs, g = run_scenario(scenario, *with_inputs(new, p1, local, eff), (), dtype)
        y = jnp.stack([jnp.reshape(getattr(outs, o), (-1,))[0] for o in tnames]).astype(dtype)
        j = (jnp.reshape(getattr(outs, objective), (-1,))[0].astype(dtype)
             if objective is not None else jnp.asarray(jnp.nan, dtype))
        return x, y, g, j

    tiny = float(jnp.finfo(dtype).tiny)
    w_g = jnp.asarray(penalty_weights(scenario, 0), dtype)

    def loss(z, t):
        x, y, g, j = evaluate(z)
        tgt = t * (1.0 - sense * MARGIN)
        viol = sense * (jnp.log(jnp.maximum(y, tiny)) - jnp.log(tgt))
        pen = PENALTY * (jnp.sum(jax.nn.relu(viol) ** 2) + jnp.sum(w_g * jax.nn.relu(g) ** 2))
        if objective is not None:
            base = jnp.log(jnp.maximum(j, tiny))
        else:
            base = jnp.sum(jnp.log(x / x0))
        return base + pen

    opt = decaying_adam(learning_rate, steps)

    def solve(t):
        z, _, _ = adam_scan(lambda z: loss(z, t), jnp.zeros((n_free,), dtype), opt, steps)
        return evaluate(z)

    x, y, g, j = jax.jit(jax.vmap(solve), **jit_options())(jnp.asarray(T, dtype))    # mlsys_opt._compile
    x, y, g, j = (np.asarray(a, np.float64) for a in (x, y, g, j))
    met = np.all(np.asarray(senses)[None, :] * (y - T) <= 1e-9 * T, axis=1) & np.all(g <= 0, axis=1)
    outputs = {o: y[:, i] for i, o in enumerate(tnames)}
    frame = pd.DataFrame({**{f"target_{o}": T[:, i] for i, o in enumerate(tnames)},
                          **{k: x[:, i] for i, k in enumerate(free)},
                          **outputs, "met": met})
    if objective is not None:
        frame[objective] = j
    return SynthesisResult(free, x, x0, outputs, met, j, frame)


__all__ = [
    "DevicesResult",
    "RooflineSpec",
    "SynthesisResult",
    "free_inputs",
    "inverse_roofline",
    "min_devices_for_time",
    "synthesize",
]
