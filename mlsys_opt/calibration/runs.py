"""Published runs with a `setup` (training_runs.json, serving_runs.json, a user's file) -> RowPlans.

Each row's ``setup`` becomes scenario settings through `setup.to_settings` (one table per
scenario); its model becomes a catalog entry when the catalog lacks it.  One measured
quantity per row is compared (the first the row has, convention-free quantities first)::

    training  tokens_per_s_per_gpu  G·s / (N · step_time)              (G sequences of s tokens)
              step_time_s           step_time
              tokens_per_s          G·s / step_time
              mfu                   the scenario's MFU (PaLM App. B: 6·P + 12·L·H·Q·s per token)
              tflops_per_gpu        MFU · peak(hardware, precision): model FLOP/s per accelerator
              time_to_train_days    time_to_train_s / 86400 (n_tokens in the setup)
              energy_mwh            energy_j / 3.6e9 (n_tokens in the setup)
    serving   output_tokens_per_s   (offline / unlimited rate) B·out / (prefill of B·in tokens
                                    + out · mean decode step) / GPUs per replica, × replicas
              tokens_per_s_per_gpu  the same per accelerator
              ttft_s                ttft_s of one prompt (p50 or mean as published)
              itl_s                 itl_s, the decode step of the batch (compared with TPOT where
                                    published: vLLM streams in bursts, README)
    at an offered rate (continuous batching, walls.serving.running_batch; `_offered_rate_target`):
              ttft_s / itl_s        ttft_p50_s / itl_p50_s to a published median, ttft_mean_s /
                                    itl_mean_s to a mean or a median TPOT (a per-request mean)
              requests_per_s        throughput_tok_per_s / out, where the engine saturated (a row records
                                    it under `measured` only with its source's evidence of saturation)

B = setup.batch_size, else the KV-cache capacity / KV per sequence at in + out: f·HBM·tp·pp − weights for
vLLM (gpu_memory_utilization f = 0.9) and SGLang (mem_fraction_static, by tp), fractions of the whole memory;
0.9·(HBM·tp·pp − weights) otherwise (TensorRT-LLM's kv_cache_free_gpu_mem_fraction: of what the weights
leave); setup.mem_fraction where printed; capped at vLLM's max_num_seqs = 256 for vLLM; at an offered rate B is the engine's cap and
the running batch follows the load.  Rows whose lengths are not published or that time one phase
of a disaggregated deployment are not evaluable (`evaluable` says why).
"""
from __future__ import annotations

import functools
import json
from collections.abc import Sequence

from .._types import BYTES_PER_ELEMENT, PRECISIONS, SECONDS_PER_DAY
from ..catalog import load_catalog
from ..errors import MlsysOptError
from ..scenarios import schema
from ..scenarios.serving_steps import embedding_extra_bytes
from . import setup as S
from .rows import DATA_DIR, PACK_TOKENS, Measurement, RowPlan, Target, read_rows_file

TRAINING_RUNS_PATH = DATA_DIR / "training_runs.json"
SERVING_RUNS_PATH = DATA_DIR / "serving_runs.json"

# Source -> organisation: sources from one organisation count once towards the "independent
# sources" rule (fit.MIN_SOURCES) and in the reported source counts.
ORGANISATIONS = {
    "mosaic_llmfoundry": "MosaicML/Databricks", "megatron_core_2024": "NVIDIA", "nemo_perf_2407": "NVIDIA",
    "nemo_longseq": "NVIDIA", "megatron_bridge_2604": "NVIDIA", "nvidia_trtllm_docs": "NVIDIA",
    "korthikanti_2022": "NVIDIA",
    "Narayanan et al.": "NVIDIA", "NVIDIA TensorRT-LLM performance page": "NVIDIA",
    "torchtitan_2024_2025": "Meta", "llama3_paper_2024": "Meta", "opt_paper_2022": "Meta",
    "Touvron et al. 2023 'Llama 2' Table 2": "Meta", "Touvron et al. 2023 'LLaMA' Table 15": "Meta",
    "maxtext_tpu_2023": "Google", "PaLM paper Table 3": "Google", "Chowdhery et al. 2022 'PaLM'": "Google",
    "Patterson et al. 2021 'Carbon Emissions and Large Neural Network Training'": "Google",
    "kempnerforge_2026": "Kempner Institute", "trainy_whitefiber_2025": "Trainy",
    "Luccioni": "BigScience", "sglang_team_benchmark_vllm_060": "SGLang/LMSYS",
    "lmsys_sglang_large_scale_ep_blog": "SGLang/LMSYS", "mlperf_inference": "MLCommons",
    "vllm_blog_mi300x_embeddedllm": "Embedded LLM",
    "bloom_tr11_2022": "BigScience", "internevo_2024": "Shanghai AI Laboratory",
    "alibaba_megatron_llama_2023": "Alibaba", "glm130b_2022": "Tsinghua/Zhipu AI",
    "mlperf_v31_habana": "Intel (Habana Labs)", "flashattn_training_2023": "Stanford HazyResearch (T. Dao)",
    "megascale_2024": "ByteDance", "amd_pytorch_training_2502": "AMD",
    "intel_gaudi2_modelperf_119": "Intel (Habana Labs)", "olmo_core_2024": "Allen Institute for AI (Ai2)",
    "ibm_fms_fsdp_2024": "IBM", "together_dgxc_2026": "Together AI", "hf_ultrascale_2025": "Hugging Face",
    "amd_vllm_devdocker_2508": "AMD",
    "nemotron4_340b_2024": "NVIDIA", "nemotron4_15b_2024": "NVIDIA", "nvidia_dgxc_2411": "NVIDIA",
    "mlperf_training_nvidia": "NVIDIA", "nvidia_dgxc_2411_llama_gpt3": "NVIDIA", "nvidia_dgxc_2502": "NVIDIA",
    "megatronlm_2019": "NVIDIA", "gptneox20b_2022": "EleutherAI", "mtnlg_2022": "Microsoft",
    "nemo_perf_2504": "NVIDIA", "deepseek_v3_2024": "DeepSeek-AI",
    "argonne_llm_inference_bench": "Argonne National Laboratory", "intel_gaudi_inference_perf": "Intel (Habana Labs)",
    "datacrunch_h200_2412": "DataCrunch",
    # MLPerf Training submissions of NVIDIA's NeMo implementation by other organisations (the submitter's cluster)
    "mlperf_azure": "Microsoft", "mlperf_coreweave_ibm": "IBM+CoreWeave", "mlperf_nebius": "Nebius",
    "mlperf_oracle": "Oracle", "mlperf_uflorida": "University of Florida", "mlperf_cisco": "Cisco",
}

TRAIN_METRICS = ("tokens_per_s_per_gpu", "step_time_s", "tokens_per_s", "mfu", "tflops_per_gpu",
                 "time_to_train_days", "energy_mwh")
SERVE_METRICS = ("output_tokens_per_s", "tokens_per_s_per_gpu", "batch_latency_s", "ttft_s", "itl_s",
                 "requests_per_s")
# published key -> compared quantity (first present wins within each list)
SERVE_KEYS = {"output_tokens_per_s": ("output_tokens_per_s",),
              "tokens_per_s_per_gpu": ("output_tokens_per_s_per_gpu", "tokens_per_s_per_gpu"),
              "ttft_s": ("ttft_p50_s", "ttft_mean_s", "ttft_s"),
              "itl_s": ("tpot_p50_s", "tpot_mean_s", "itl_mean_s", "itl_p50_s", "itl_s")}
KV_MEMORY_FRACTION = 0.9        # TRT-LLM kv_cache_free_gpu_mem_fraction (of the memory the weights leave)
# Engines whose memory fraction is of the WHOLE memory, weights included (KV = f·HBM − weights): vLLM's
# gpu_memory_utilization (default 0.9, vllm/engine/arg_utils.py) and SGLang's mem_fraction_static (default by
# tp in sglang/srt/server_args.py, 0.3-0.4: 0.88 at tp 1, 0.87 at tp 2, 0.85 at tp 4, 0.83 at tp 8, 0.79 at
# tp >= 16); a row's printed fraction (setup.mem_fraction) wins.
WHOLE_MEMORY_FRACTION = {"vllm": lambda tp: 0.9,
                         "sglang": lambda tp: 0.79 if tp >= 16 else 0.83 if tp >= 8 else 0.85 if tp >= 4
                         else 0.87 if tp >= 2 else 0.88}
MAX_NUM_SEQS = {"vllm": 256}    # vLLM's default max_num_seqs


class Unevaluable(MlsysOptError):
    """A row that cannot be evaluated by today's scenarios (the message says why)."""


def _measurement(r: dict, i: int, path, sources: dict) -> Measurement:
    if not isinstance(r, dict) or not all(k in r for k in ("id", "measured", "setup")):
        raise MlsysOptError(f"{path}: rows[{i}] needs 'id', 'measured' and 'setup' fields")
    key = str(r.get("source_key") or r.get("source_group") or "")
    incons = r.get("source_inconsistent") or ""
    assumptions = r.get("assumptions") or ""
    return Measurement(str(r["id"]), str(r.get("category", "")), str(r.get("source") or sources.get(key, {}).get("citation", "")),
                       dict(r.get("hardware") or {}), dict(r.get("model") or {}), dict(r.get("parallelism") or {}),
                       str(r.get("precision", "")), dict(r["measured"]), str(r.get("notes", "")),
                       str(r.get("verification", "")), setup=dict(r["setup"]), source_key=key,
                       org=ORGANISATIONS.get(key, sources.get(key, {}).get("org", key)),
                       fit_candidate=bool(r.get("fit_candidate", True)),
                       source_inconsistent=incons if isinstance(incons, str) else json.dumps(incons),
                       assumptions="; ".join(assumptions) if isinstance(assumptions, list) else str(assumptions),
                       derived=dict(r.get("derived") or {}))


@functools.lru_cache(maxsize=4)
def _load(path: str) -> tuple:
    data, rows = read_rows_file(path, "runs", "a 'rows' list")
    sources = data.get("sources") or {}
    return tuple(_measurement(r, i, path, sources) for i, r in enumerate(rows))


def load_runs(which: str = "all") -> list[Measurement]:
    """Rows of training_runs.json ("training"), serving_runs.json ("serving") or both ("all")."""
    if which not in ("training", "serving", "all"):
        raise MlsysOptError(f"load_runs({which!r}): allowed 'training', 'serving', 'all'")
    out: list[Measurement] = []
    if which in ("training", "all"):
        out += _load(str(TRAINING_RUNS_PATH))
    if which in ("serving", "all"):
        out += _load(str(SERVING_RUNS_PATH))
    return out


def scenario_of(row: Measurement) -> str:
    """'serving' for serving rows (category or the setup's serving keys), else 'training'."""
    s = row.setup or {}
    if "serving" in row.category or "inference" in row.category or "mode" in s or "input_len" in s:
        return "serving"
    return "training"


# --------------------------------------------------------------------------- planning
def plan_setup_row(row: Measurement, catalog=None) -> RowPlan:
    """Evaluations and the compared target of one row with a setup (module docstring)."""
    where = f"row {row.id!r}: setup"
    scenario = scenario_of(row)
    setup = dict(row.setup)
    mapped = S.to_settings(scenario, setup, where)
    settings = dict(mapped.settings)
    entries: dict = {}
    model = setup.get("model")
    if model is None:
        raise MlsysOptError(f"{where}.model: missing (a catalog model name or a shape table)")
    name, entry = S.model_entry(model, int(setup.get("seq_len") or setup.get("input_len") or 4096),
                                row.source or row.source_key, where)
    settings["model"] = name
    if entry is not None:
        entries["models"] = {name: entry}
    # lookups need the accelerators (peaks) and, for serving, the model (KV size): a new model
    # entry is added to the catalog only where it is read (building a catalog costs ~50 ms)
    catalog = _catalog_with(catalog, entries if scenario == "serving" else {})
    flags = list(mapped.flags)
    if scenario == "training":
        convention = (setup.get("attention_flop_count") not in (None, "causal_half")
                      or setup.get("embedding_flop_count") not in (None, "counted"))
        ratio = flop_count_ratio(setup, entry if entry is not None or not convention
                                 else catalog.entry("models", name))
        evals, found = _training_target(row, settings, catalog, flags, ratio)
    else:
        evals, found = _serving_target(row, setup, settings, catalog, flags)
    blocking = any(f.startswith(("cp=", "ep>1")) for f in flags)
    fit = row.fit_candidate and not row.source_inconsistent and not blocking
    targets = []
    for metric, measured, coef, (num, den), note in (found if row.compare_all else found[:1]):
        notes = "; ".join([note] + flags + ([row.assumptions] if row.assumptions else []))
        targets.append(Target(row.id, row.category or scenario, metric, float(measured), float(coef), num, den,
                              bool(fit), f"{scenario}_runs", notes, str(row.source_inconsistent)))
    return RowPlan(row.id, entries, tuple(evals), tuple(targets))


@functools.lru_cache(maxsize=1)
def _base_catalog():
    return load_catalog()


def _catalog_with(catalog, entries):
    catalog = _base_catalog() if catalog is None else catalog
    for kind, table in entries.items():
        catalog = catalog.with_entries(kind, table)
    return catalog


def _measured(row: Measurement, key: str):
    v = row.measured.get(key)
    return None if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) else float(v)


ATTENTION_FLOP_COUNTS = ("causal_half", "full_square")


def attention_count_ratio(setup: dict, model) -> float:
    """Source FLOP count / the scenario's model FLOPs, for mfu and tflops_per_gpu rows (>= 1).

    The scenario counts causal attention as the lower triangle (PaLM App. B with the causal
    fraction f = 1 - (s-1)/(2s) ≈ ½, `walls.attention.causal_fraction`):
    F = 6·P·T + 12·L·(a·d)·s·T·f.  A source whose reported model FLOPs count the full s²
    square (setup.attention_flop_count = "full_square") reports F_src = 6·P·T + 12·L·(a·d)·s·T,
    so its MFU and TFLOP/s are ours × r, r = (6·P + 12·L·a·d·s)/(6·P + 12·L·a·d·s·f)
    (dimensionless; e.g. Llama-2-7B at s = 1,048,576: r = 1.953).  Full-square formulas, read
    in the code at the sources' commits: Megatron-LM `num_floating_point_operations`
    (megatron/training/training.py @ f2e5db4, 2024-07: 12·B·s·L·h²·(s/h)·...), NeMo
    `nemo/utils/flops_formulas.py` until "Discount FLOPs in dot-product att" (NeMo #14424,
    2025-08-09: `(12·s/hs)·(0.5 if causal_self_attn else 1)`), MaxText `calculate_training_tflops`
    @ e47fa1b (2023-11; halved "due to causality" by 76bd53b, 2023-12).  "causal_half" (or
    absent) = the scenario's own count, r = 1.
    """
    return flop_count_ratio({**setup, "embedding_flop_count": "counted"}, model)


EMBEDDING_FLOP_COUNTS = ("counted", "excluded")


def flop_count_ratio(setup: dict, model) -> float:
    """Source FLOP count / the scenario's model FLOPs, for mfu and tflops_per_gpu rows: the attention
    convention (`attention_count_ratio`) and the input-embedding one together.

    The scenario's model FLOPs count 6 FLOP per parameter and token, the untied input embedding
    included (6·P, PaLM App. B).  A source whose formula counts the vocabulary matrix once, as the
    logit GEMM, and the input lookup not at all (setup.embedding_flop_count = "excluded") reports
    F_src = 6·(P - E)·T + attention, E = V·h for an untied model (0 tied), so its MFU and TFLOP/s
    are ours × r, r = (6·(P - E) + A_src)/(6·P + A) (A_src: the attention count above).  Read in
    the code: NeMo `flops_formulas.llama3` / `perf_metrics._llama2` (`6 * vocab_size / (layers * hs)`:
    one 6·B·s·h·V term), Megatron-Bridge `flop_utils.transformer_flops` (`# Logit.` 3·2·h·V), AMD's
    pytorch-training-benchmark `estimate_flops_per_token` (one V×E matmul), nanotron `get_flops`
    (`lm_head_flops_fwd`, no embedding term).  "counted" (or absent) = the scenario's count.
    Example: Llama 3 8B at s = 8192, causal half: r = 1 - 6·0.525e9/(6·8.03e9 + A) = 0.942.
    """
    full = _convention(setup, "attention_flop_count", ATTENTION_FLOP_COUNTS) == "full_square"
    excluded = _convention(setup, "embedding_flop_count", EMBEDDING_FLOP_COUNTS) == "excluded"
    if not (full or excluded) or model is None:
        return 1.0

    def get(*keys, default=None):
        return next((model[k] for k in keys if k in model and model[k] not in (None, "")), default)

    seq = float(setup.get("seq_len") or 1)
    six_p = 6.0 * float(get("n_active_params", "active_params", "params"))
    attn = 12.0 * float(get("n_layers", "layers")) * float(get("n_heads", "heads")) * float(get("head_dim")) * seq
    f = 1.0 - max(seq - 1.0, 0.0) / (2.0 * seq)
    untied = excluded and not bool(get("tied_embeddings", default=False))
    emb = 6.0 * float(get("vocab_size", "vocab")) * float(get("hidden_dim", "hidden")) if untied else 0.0
    return (six_p - emb + attn * (1.0 if full else f)) / (six_p + attn * f)


def _convention(setup: dict, key: str, allowed: tuple) -> str:
    """setup[key] (the first of `allowed` when absent), checked against `allowed`."""
    value = str(setup.get(key) or allowed[0])
    if value not in allowed:
        raise MlsysOptError(f"setup.{key}: {value!r} (allowed: {', '.join(allowed)})")
    return value


def _training_target(row, settings, catalog, flags, flop_ratio: float = 1.0):
    """(evaluations, [(metric, measured, coef, (num, den), note), ...]) in TRAIN_METRICS order.

    flop_ratio: `flop_count_ratio` of the row; multiplies the predicted mfu / tflops_per_gpu."""
    n = float(settings.get("n_accelerators", 1))
    gb, seq = float(settings.get("global_batch", 1)), float(settings.get("seq_len", 1))
    settings.setdefault("n_tokens", 1000.0 * gb * seq)
    evals = [("training", settings)]
    one = ((("const", 1.0), 1.0),)
    step = (((0, "step_time_s"), 1.0),)
    mfu = ((((0, "mfu"), 1.0),), one)
    out = []
    for metric in TRAIN_METRICS:
        v = _measured(row, metric)
        if v is None:
            continue
        if metric == "tokens_per_s_per_gpu":
            out.append((metric, v, gb * seq / n, (one, step), "G·s/(N·step)"))
        elif metric == "step_time_s":
            out.append((metric, v, 1.0, (step, one), "step time"))
        elif metric == "tokens_per_s":
            out.append((metric, v, gb * seq, (one, step), "G·s/step"))
        elif metric == "mfu":
            out.append((metric, v, flop_ratio, mfu, "MFU, PaLM App. B FLOP count"
                        + (f" × {flop_ratio:.3f} (the source's FLOP count)" if flop_ratio != 1.0 else "")))
        elif metric == "tflops_per_gpu":
            hw = catalog.entry("accelerators", settings["hardware"])
            prec = settings.get("precision", schema.TRAINING_PARAMS["precision"].default)
            peak = float(hw[f"peak_{prec}_flop_per_s"]) / 1e12
            out.append(("model_tflops_per_gpu", v, peak * flop_ratio, mfu,
                        "model TFLOP/s = MFU·peak (PaLM FLOP count" + (
                            f") × {flop_ratio:.3f} (the source's FLOP count)" if flop_ratio != 1.0
                            else "; the source may count attention differently)")))
        elif metric == "time_to_train_days":
            if "n_tokens" not in (row.setup or {}):
                raise MlsysOptError(f"row {row.id!r}: time_to_train_days needs n_tokens in the setup")
            out.append((metric, v, 1.0 / SECONDS_PER_DAY, ((((0, "time_to_train_s"), 1.0),), one), ""))
        elif metric == "energy_mwh":
            if "n_tokens" not in (row.setup or {}):
                raise MlsysOptError(f"row {row.id!r}: energy_mwh needs n_tokens in the setup")
            out.append((metric, v, 1.0 / 3.6e9, ((((0, "energy_j"), 1.0),), one), "facility energy"))
    if not out and _measured(row, "memory_gib") is None:   # a memory-only row: compared by heldout.memory_check
        raise Unevaluable(f"row {row.id!r}: no compared quantity among {', '.join(TRAIN_METRICS)} in measured")
    return evals, out


def _kv_bytes_per_seq(m, tokens: float, bpe: float) -> float:
    per_tok = m["kv_latent_dim"] if m["kv_latent_dim"] > 0 else 2.0 * m["n_kv_heads"] * m["head_dim"]
    return float(m["n_layers"] * per_tok * bpe * tokens)


def _serving_target(row, setup, settings, catalog, flags):
    def get(*keys):
        for k in keys:
            if k in settings:
                return float(settings[k])
        return None

    if setup.get("phase"):
        raise Unevaluable(f"row {row.id!r}: times one phase ({setup['phase']}) of a disaggregated deployment "
                          "with the other given unlimited resources; not a scenario output")
    for key, rule in (("disaggregated", "disaggregated"), ("ep", "ep")):
        if setup.get(key) and key not in schema.SERVING_PARAMS and (key != "ep" or int(setup[key]) > 1):
            raise Unevaluable(f"row {row.id!r}: setup.{key} = {setup[key]!r} needs the serving parameter "
                              f"'{rule}' (not in the scenario yet)")
    p_in, out_len = get("prompt_len", "prompt_tokens"), get("output_len", "output_tokens")
    if p_in is None or out_len is None:
        raise Unevaluable(f"row {row.id!r}: {'input' if p_in is None else 'output'} length not published "
                          f"({setup.get('length_distribution') or 'dataset'} mean unknown)")
    tp, pp = float(settings.get("tp", 1)), float(settings.get("pp", 1))
    gpus = tp * pp
    rate = setup.get("request_rate")
    keys = {q: next((k for k in SERVE_KEYS[q] if _measured(row, k) is not None), None) for q in SERVE_KEYS}
    note = ""
    if rate:
        return _offered_rate_target(row, setup, settings, catalog, keys, float(rate), p_in, out_len, gpus)
    if settings.get("batch") is None:
        settings["batch"] = _kv_batch(catalog, settings, setup, p_in + out_len, gpus)
        note = f"batch = {settings['batch']} from the KV-cache capacity (the engine's memory fraction, _kv_batch)"
    settings.setdefault("request_rate", "0.1 /s")
    evals = [("serving", settings)]
    one = ((("const", 1.0), 1.0),)
    b = float(settings["batch"])
    out = []
    # an offline batch timed end to end (vLLM benchmark_latency.py: one generate() of B fixed-length prompts)
    batch_latency = None if setup.get("batch_size") is None else _measured(row, "e2e_latency_mean_s")
    if keys["output_tokens_per_s"] or keys["tokens_per_s_per_gpu"] or batch_latency:
        # prefill of the batch: B prompts of p_in tokens.  Below the ridge point one prompt is
        # weight-read bound and batching them is what an engine does: one prompt of B·p_in
        # tokens (the legacy convention); above it one prompt is already compute-bound, and B
        # prompts cost B single-prompt prefills (attention stays per sequence, not (B·p_in)²).
        hw = catalog.entry("accelerators", settings["hardware"])
        prec = settings.get("precision", "fp16")
        ridge = hw[f"peak_{prec}_flop_per_s"] / hw["mem_bw_bytes_per_s"] * BYTES_PER_ELEMENT[PRECISIONS.index(prec)] / 2
        batched = p_in < ridge
        # batched prompts run as packs of m = min(B·in, PACK_TOKENS) rows: one m-token prompt,
        # B·in/m times.  Attention then spans m tokens instead of each prompt's own `in` (a small
        # over-count at m <= 2048); one prompt of B·in tokens charged (B·in)² attention, -70..-88 %
        # on TensorRT-LLM's 128/128 rows.
        m = int(min(b * p_in, PACK_TOKENS)) if batched else p_in
        evals.append(("serving", {**settings, "batch": 1,
                                  **{k: m for k in ("prompt_len", "prompt_tokens") if k in settings},
                                  **{k: 1 for k in ("output_len", "output_tokens") if k in settings}}))
        den = (((1, "ttft_s"), b * p_in / m if batched else b), ((0, "itl_s"), out_len))
        note = f"{note}; prefill of the batch as {f'packs of {m} tokens' if batched else 'B prompts'}"
        if keys["tokens_per_s_per_gpu"]:
            v = _measured(row, keys["tokens_per_s_per_gpu"])
            out.append(("tokens_per_s_per_gpu", v, b * out_len / gpus, (one, den), note))
        elif batch_latency and not keys["output_tokens_per_s"]:
            # the batch's prefill + out_len decode steps, the throughput's denominator itself
            out.append(("batch_latency_s", batch_latency, 1.0, (den, one), f"{note}; e2e latency of the batch"))
        else:
            n = float(setup.get("n_accelerators") or gpus)
            out.append(("output_tokens_per_s", _measured(row, "output_tokens_per_s"), b * out_len * n / gpus,
                        (one, den), note))
    for q in ("ttft_s", "itl_s"):       # one prompt's TTFT, the decode step at the batch (no offered rate: LITTLE)
        if keys[q]:
            out.append((q, _measured(row, keys[q]), 1.0, ((((0, q), 1.0),), one), f"{keys[q]} vs {q}; {note}"))
    if not out:
        raise Unevaluable(f"row {row.id!r}: no compared quantity (offline throughput, an offline batch's latency or TTFT/ITL) in measured")
    return evals, out


def _offered_rate_target(row, setup, settings, catalog, keys, rate, p_in, out_len, gpus):
    """A row served at an offered rate (continuous batching, walls.serving.running_batch): the printed
    batch is the engine's cap (MLPerf's gpu_batch_size, max_num_seqs), else the KV capacity within
    the engine's default cap; the replicas are the row's accelerators over tp·pp.  Compared: the
    TTFT and the time per output token (a median to the model's median, a mean or a median TPOT,
    itself a per-request mean, to the model's mean), and the achieved request rate when the
    engine saturated (recorded under `measured`, below 0.9 of the offered rate: at a lower load the
    achieved rate is the offered one and says nothing of the model)."""
    if settings.get("batch") is None:
        settings["batch"] = _kv_batch(catalog, settings, setup, p_in + out_len, gpus)
        note = f"batch cap = {settings['batch']} from the KV-cache capacity (the engine's memory fraction, _kv_batch)"
    else:
        note = f"batch cap = {settings['batch']} (printed)"
    one = ((("const", 1.0), 1.0),)
    out = []
    # Saturated: an achieved rate under `measured` below 0.9 of the offered one.  The rate alone cannot tell a
    # finite run that kept up (N requests arrive over N/λ and the run ends one latency later, below λ) from a
    # saturated one (a large cap lets the batch grow, so the latency rises instead of a queue), and neither
    # can N/(N/λ + latency): DataCrunch's saturated 70B run at 16 req/s achieved 0.91 of it.  So a row
    # records an achieved rate under `measured` only where its source shows saturation (offered load above
    # the capacity the same deployment measured), else under `derived` (serving_runs_README.md).
    done = _measured(row, "requests_per_s")
    if done is not None and done < 0.9 * rate:
        out.append(("requests_per_s", done, 1.0 / out_len, ((((0, "throughput_tok_per_s"), 1.0),), one),
                    f"saturated: {done:g} of {rate:g} req/s offered; {note}"))
    for q in ("itl_s", "ttft_s"):       # the first is the row's compared figure (a user's file: all)
        key = keys[q]
        if key:
            stat = "p50" if key in ("ttft_p50_s", "itl_p50_s") else "mean"
            model = f"{q[:-2]}_{stat}_s"
            out.append((q, _measured(row, key), 1.0, ((((0, model), 1.0),), one),
                        f"{key} vs {model} at {rate:g} req/s; {note}"))
    if not out:
        raise Unevaluable(f"row {row.id!r}: served at an offered rate below saturation with no TTFT or "
                          "time per output token in measured")
    return [("serving", settings)], out


def _kv_batch(catalog, settings, setup, context: float, gpus: float) -> int:
    hw = catalog.entry("accelerators", settings["hardware"])
    m = catalog.entry("models", settings["model"])
    prec = settings.get("precision", "fp16")
    bpe = BYTES_PER_ELEMENT[PRECISIONS.index(prec)]
    kv_prec = str(setup.get("kv_precision") or prec).replace("bf16", "fp16")
    kv_bpe = BYTES_PER_ELEMENT[PRECISIONS.index(kv_prec)] if kv_prec in PRECISIONS else bpe
    # input embedding + LM head stay 16-bit under 8/4-bit weights
    embed = float(embedding_extra_bytes(float(m.get("vocab_size") or 0), float(m.get("hidden_dim") or 0), bpe))
    weights, hbm = m["n_params"] * bpe + embed, hw["mem_capacity_bytes"] * gpus
    engine = str(setup.get("engine", "")).lower()
    if engine in WHOLE_MEMORY_FRACTION:
        frac = float(setup.get("mem_fraction") or WHOLE_MEMORY_FRACTION[engine](float(settings.get("tp", 1))))
        free = frac * hbm - weights
    else:
        free = float(setup.get("mem_fraction") or KV_MEMORY_FRACTION) * (hbm - weights)
    batch = max(1, int(free // max(_kv_bytes_per_seq(m, context, kv_bpe), 1.0)))
    return min(batch, MAX_NUM_SEQS.get(engine, batch))


# --------------------------------------------------------------------------- evaluable rows
def evaluable(rows: Sequence[Measurement], catalog=None) -> tuple[list[Measurement], list[tuple[str, str]]]:
    """(rows that plan, [(id, why not) for the others]); rows without a setup always plan."""
    ok, skipped = [], []
    for r in rows:
        if not r.setup:
            ok.append(r)
            continue
        try:
            plan_setup_row(r, catalog)
        except Unevaluable as exc:
            skipped.append((r.id, str(exc).split(": ", 1)[-1]))
            continue
        ok.append(r)
    return ok, skipped


def org_of(row: Measurement) -> str:
    """The organisation of a row's source (ORGANISATIONS; the source itself when unknown)."""
    from .fit import _source
    key = row.source_key or _source(row)
    return row.org or ORGANISATIONS.get(key, key)
