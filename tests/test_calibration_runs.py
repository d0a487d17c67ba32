"""Published runs with a setup (training_runs.json, serving_runs.json), the setup -> parameter
mapping, leave-one-source-out on a tiny subset, and a user's --measurements file (CSV/TOML)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlsys_opt import calibration as C
from mlsys_opt._types import BOTTLENECKS
from mlsys_opt.calibration import runs as R
from mlsys_opt.calibration import setup as S
from mlsys_opt.catalog import load_catalog
from mlsys_opt.errors import MlsysOptError
from mlsys_opt.scenarios import schema


@pytest.fixture(scope="module")
def published():
    return C.load_runs()


def test_published_files_load_with_setups_and_organisations(published):
    train, serve = C.load_runs("training"), C.load_runs("serving")
    assert (len(train), len(serve)) == (501, 144) and len(published) == 645
    assert len({r.id for r in published}) == 645                       # ids are unique
    assert all(r.setup and r.source_key and r.org for r in published)
    assert {r.source_key for r in published} <= set(C.ORGANISATIONS)   # every source has its organisation
    # sources of one organisation count once: NVIDIA publishes five training sources and TRT-LLM
    assert {r.source_key for r in train if r.org == "NVIDIA"} == {
        "megatron_core_2024", "nemo_perf_2407", "nemo_longseq", "megatron_bridge_2604", "korthikanti_2022",
        "nemotron4_340b_2024", "nemotron4_15b_2024", "nvidia_dgxc_2411", "mlperf_training_nvidia", "megatronlm_2019",
        "nvidia_dgxc_2411_llama_gpt3", "nvidia_dgxc_2502", "nemo_perf_2504"}
    assert all(R.scenario_of(r) == "training" for r in train) and all(R.scenario_of(r) == "serving" for r in serve)


def test_every_row_plans_or_says_why(published):
    ok, skipped = C.evaluable(published)
    assert len(ok) + len(skipped) == 645 and len(ok) >= 635
    why = dict(skipped)
    # at an offered rate the load sets the running batch (walls.serving.running_batch) under the printed or
    # KV-capacity cap: the time per token is compared with the model's mean (TPOT is a per-request mean),
    # a saturated engine's request rate with the model's throughput
    by_id = {r.id: r for r in ok}
    for rid, metric, output in (("sglang030_a100_llama31_8b_sharegpt_rps4", "itl_s", "itl_mean_s"),
                                ("trtllm014_h100_llama31_8b_tp1_bf16_467_256_qps16", "itl_s", "itl_mean_s"),
                                ("mlperf40_nvidia_8xh100_llama2_70b_server", "itl_s", "itl_mean_s"),
                                ("vllm062_8xmi300x_llama31_405b_default_qps16", "requests_per_s",
                                 "throughput_tok_per_s")):
        plan = R.plan_setup_row(by_id[rid])
        t = plan.targets[0]
        assert (t.metric, t.num[0][0][1]) == (metric, output), rid
        assert plan.evaluations[0][1]["request_rate"] == f"{float(by_id[rid].setup['request_rate'])} /s"
    assert by_id["mlperf40_nvidia_8xh100_llama2_70b_server"].setup["batch_size"] == 1024
    assert R.plan_setup_row(by_id["mlperf40_nvidia_8xh100_llama2_70b_server"]).evaluations[0][1]["batch"] == 1024
    assert "one phase" in why["sglang_pd_ep72_9x8h100_deepseekv3_decode_kv2000"]
    assert all(not r.startswith(("mosaic", "titan", "nemo", "mcore", "maxtext", "llama3", "mbridge", "kempner",
                                 "internevo", "megatron_llama", "glm130b", "bloom176b", "mlperf31", "flashattn",
                                 "korth22", "megascale24", "amd25", "intel119", "olmo24", "ibm_fmsfsdp",
                                 "together26", "hfus_"))
               for r in why)                                             # every training row is evaluated
    catalog = load_catalog()
    for r in ok:
        plan = R.plan_setup_row(r)
        assert len(plan.targets) == 1 and plan.targets[0].measured > 0
        settings = plan.evaluations[0][1]
        assert settings["hardware"] in catalog.names("accelerators")
        assert set(settings) <= set(schema.PARAMS[plan.evaluations[0][0]])   # only parameters that exist


def test_training_conventions_are_convention_free_first(published):
    row = next(r for r in published if r.id == "mosaic_h100l_70b_s2048_n512_gb4096")
    t = R.plan_setup_row(row).targets[0]
    # tokens/s/GPU (printed) is preferred over MFU (a FLOP convention): G·s/(N·step)
    assert t.metric == "tokens_per_s_per_gpu" and t.measured == 1007
    assert t.coef == pytest.approx(4096 * 2048 / 512) and t.den == (((0, "step_time_s"), 1.0),)
    longseq = next(r for r in published if r.id == "nemo_longseq_h100_llama2_7b_s4k_n4")
    t = R.plan_setup_row(longseq).targets[0]      # TFLOP/s only: MFU x the catalog peak at the row's precision
    peak = load_catalog().entry("accelerators", "h100_sxm")["peak_fp8_flop_per_s"] / 1e12
    # NeMo's formula of that date counts the full s² square and the vocabulary matrix once (no input embedding):
    # × (6(P - V·h) + 12·L·a·d·s)/(6P + 12·L·a·d·s·f)
    p, attn, emb = 6.74e9 * 6.0, 12.0 * 32 * 32 * 128 * 4096.0, 6.0 * 32000 * 4096
    r = (p - emb + attn) / (p + attn * (1.0 - 4095.0 / 8192.0))
    assert t.metric == "model_tflops_per_gpu" and t.coef == pytest.approx(peak * r) and t.num == (((0, "mfu"), 1.0),)


def test_attention_flop_count_ratio():
    """Hand-computed: Llama-2-7B shape (6.74e9 params, 32 layers, 32 heads of 128) at s = 1,048,576."""
    model = {"n_active_params": 6.74e9, "n_layers": 32, "n_heads": 32, "head_dim": 128}
    s = 1048576.0
    attn = 12.0 * 32 * 32 * 128 * s                       # 1.649e12 FLOP per token, full square
    f = 1.0 - (s - 1.0) / (2.0 * s)
    want = (6 * 6.74e9 + attn) / (6 * 6.74e9 + attn * f)   # (4.04e10 + 1.649e12)/(4.04e10 + 8.25e11)
    assert R.attention_count_ratio({"seq_len": s, "attention_flop_count": "full_square"}, model) == pytest.approx(want)
    assert want == pytest.approx(1.9533, abs=1e-4)
    assert R.attention_count_ratio({"seq_len": s}, model) == 1.0
    assert R.attention_count_ratio({"seq_len": s, "attention_flop_count": "causal_half"}, model) == 1.0
    # a model entry built from a row's shape (string params, 'layers'/'heads' keys)
    entry = {"params": "6.74e+09", "layers": 32, "heads": 32, "head_dim": 128}
    assert R.attention_count_ratio({"seq_len": s, "attention_flop_count": "full_square"}, entry) == pytest.approx(want)
    with pytest.raises(MlsysOptError, match="attention_flop_count: 'half'.*allowed: causal_half, full_square"):
        R.attention_count_ratio({"seq_len": s, "attention_flop_count": "half"}, model)


def test_embedding_flop_count_ratio():
    """Hand-computed: Llama 3 8B (8.03e9 params, untied 128,256 x 4,096, 32 layers, 32 heads of 128) at s = 8,192:
    a source counting the vocabulary matrix once (NeMo, Megatron-Bridge, nanotron) reports 6·(P - V·h) + A."""
    model = {"n_active_params": 8.03e9, "n_layers": 32, "n_heads": 32, "head_dim": 128, "vocab_size": 128256,
             "hidden_dim": 4096, "tied_embeddings": False}
    s = 8192.0
    attn = 12.0 * 32 * 32 * 128 * s * (1.0 - (s - 1.0) / (2.0 * s))
    ours = 6 * 8.03e9 + attn
    want = (ours - 6 * 128256 * 4096) / ours
    assert R.flop_count_ratio({"seq_len": s, "embedding_flop_count": "excluded"}, model) == pytest.approx(want)
    assert want == pytest.approx(0.9423, abs=1e-4)                      # the input table: 5.8 % of the count
    assert R.flop_count_ratio({"seq_len": s}, model) == 1.0
    assert R.flop_count_ratio({"seq_len": s, "embedding_flop_count": "excluded"},
                              model | {"tied_embeddings": True}) == 1.0  # tied: the one matrix is the head
    # both conventions: the full square and no input embedding
    full = 12.0 * 32 * 32 * 128 * s
    both = R.flop_count_ratio({"seq_len": s, "embedding_flop_count": "excluded", "attention_flop_count": "full_square"},
                              model)
    assert both == pytest.approx((6 * 8.03e9 - 6 * 128256 * 4096 + full) / ours)
    with pytest.raises(MlsysOptError, match="embedding_flop_count: 'no'.*allowed: counted, excluded"):
        R.flop_count_ratio({"seq_len": s, "embedding_flop_count": "no"}, model)


def test_training_mapping_table():
    setup = {"hardware": "tpu_v5p", "n_accelerators": 2048, "tp": 16, "cp": 1, "pp": 1, "dp": 128, "ep": 1,
             "virtual_stages": None, "sharding": "hsdp", "slices": 2, "micro_batch_size": 2, "global_batch": 4096,
             "seq_len": 2048, "precision": "bf16", "attention": "flash", "recompute": "full", "fabric": "tpu_ici",
             "torch_compile": True}
    m = S.to_settings("training", setup)
    s = m.settings
    assert (s["tp"], s["pp"], s["global_batch"], s["seq_len"], s["n_accelerators"]) == (16, 1, 4096, 2048, 2048)
    assert s["precision"] == ("bf16" if "bf16" in schema.PRECISIONS else "fp16")
    assert s["zero_stage"] == 3                                  # hsdp = FSDP inside a slice ...
    assert s.get("shard_group", m.pending.get("shard_group")) == 64   # ... of dp/slices = 64 ranks
    assert s["microbatches"] == 4096 // (128 * 2)                # M = G/(dp·b): exact
    assert "torch_compile" not in s and "virtual_stages" not in s   # mapped to another name / null -> default
    assert s["kernels"] == "fused"                                   # torch.compile fuses the elementwise ops
    assert S.to_settings("training", {**setup, "torch_compile": False}).settings["kernels"] == "eager"
    assert S.to_settings("training", {**setup, "attention_kernel": "fa1"}).settings["kernels"] == "fa1"
    assert S.to_settings("training", {**setup, "attention_kernel": "fa1", "torch_compile": False}
                         ).settings["kernels"] == "fa1_eager"
    with pytest.raises(MlsysOptError, match=r"setup\.attention_kernel: 'fa3' is not an attention kernel generation \(allowed: fa1, fa2\)"):
        S.to_settings("training", {**setup, "attention_kernel": "fa3"})
    for name, stage in (("ddp", 0), ("zero1", 1), ("zero2", 2), ("fsdp", 3)):
        assert S.to_settings("training", {**setup, "sharding": name}).settings["zero_stage"] == stage
    with pytest.raises(MlsysOptError, match=r"setup\.sharding: 'zero4'"):
        S.to_settings("training", {**setup, "sharding": "zero4"})
    # a key neither mapped nor kept as context is refused (it would otherwise be silently ignored)
    with pytest.raises(MlsysOptError, match=r"setup\.ep_dispatchr: unknown setup key; did you mean 'ep_dispatcher'\?"):
        S.to_settings("training", {**setup, "ep_dispatchr": "deepep"})
    assert S.to_settings("training", {**setup, "ep_dispatcher": "deepep"}).settings["ep_dispatcher"] == "deepep"
    # documented communication overlap: dp_overlap -> overlap (DP/FSDP), tp_overlap -> tp_overlap
    o = S.to_settings("training", {**setup, "dp_overlap": 1.0, "tp_overlap": 0.5}).settings
    assert (o["overlap"], o["tp_overlap"]) == (1.0, 0.5)
    assert "overlap" not in s and "tp_overlap" not in s          # absent -> the schema defaults (0.5, 0)


MLPERF_OTHERS = ("mlperf_azure", "mlperf_coreweave_ibm", "mlperf_nebius", "mlperf_oracle", "mlperf_uflorida",
                 "mlperf_cisco")


def test_documented_overlap_rows(published):
    """Only sources that document their overlap settings carry them (training_runs.json sources.*.comm_overlap):
    MaxText's LIBTPU_INIT_ARGS (async collectives) -> DP overlap; the Megatron-LM README -> DP and TP overlap;
    Megatron-Bridge's recipes at the rows' commit -> DP overlap, and TP overlap for the Llama rows (TP > 1);
    the NeMo-Framework-Launcher 24.07 configs -> DP overlap, and TP overlap where ub_tp_comm_overlap is on (and on
    the 512-GPU GPT-3 row, whose figure the table links to MLPerf, where NVIDIA's config sets TP_COMM_OVERLAP);
    Korthikanti et al. 2022 §6.3 ('we do not use any overlapping of gradient all-reduces') -> DP overlap 0;
    MegaScale (Jiang et al. 2024): its Megatron-LM baseline at commit 285068c8 has no overlap flags -> DP and TP
    overlap 0; MegaScale itself: TP overlap 1 (§3.2, Figure 3c), DP overlap 1 - 1/(2v) = 0.917 (§3.2, v = 6);
    Together AI's runs of the Megatron-Bridge recipes (their logs print overlap_grad_reduce / overlap_param_gather
    true) -> DP overlap 1; NVIDIA's Nemotron-4 reports (NeMo-Framework-Launcher configs of the time), DGX Cloud
    v24.11.1 and MLPerf Training configs -> DP overlap 1, TP overlap where the config sets it (the 340B report's
    launcher file has it off); Megatron-LM 2019 (no gradient overlap in that code) -> DP overlap 0."""
    data = json.loads(Path(C.TRAINING_RUNS_PATH).read_text())
    rows = [r for r in published if r.setup.get("dp_overlap") is not None or r.setup.get("tp_overlap") is not None]
    documented = {"maxtext_tpu_2023", "megatron_core_2024", "megatron_bridge_2604", "nemo_perf_2407", "korthikanti_2022",
                  "megascale_2024", "together_dgxc_2026", "nemotron4_340b_2024", "nemotron4_15b_2024",
                  "nvidia_dgxc_2411", "mlperf_training_nvidia", "megatronlm_2019", "nvidia_dgxc_2411_llama_gpt3",
                  "nvidia_dgxc_2502", "nemo_perf_2504", "deepseek_v3_2024", *MLPERF_OTHERS}
    assert {r.source_key for r in rows} == documented

    def dp_overlap(r):
        if r.source_key == "megascale_2024":
            return 0.917 if r.id.startswith("megascale24_megascale_") else 0.0
        return 0.0 if r.source_key in ("korthikanti_2022", "megatronlm_2019") else 1.0
    assert all(r.setup["dp_overlap"] == dp_overlap(r) for r in rows)
    tp_rows = {r.id for r in rows if r.setup.get("tp_overlap") == 1.0}
    nemo_tp = {"nemo2407_gpt3_20b_n64", "nemo2407_llama2_70b_n64", "nemo2407_llama3_70b_n64",
               "nemo2407_nemotron_8b_n64", "nemo2407_nemotron_22b_n64",
               "nemo2407_gpt3_175b_n512"}   # NVIDIA's MLPerf GPT-3 configuration: TP_COMM_OVERLAP=True
    assert tp_rows == {r.id for r in rows if r.source_key == "megatron_core_2024" or r.id in nemo_tp
                       or (r.source_key == "megatron_bridge_2604" and "llama" in r.id and int(r.setup["tp"]) > 1)
                       or r.id.startswith("megascale24_megascale_")
                       or r.source_key in ("nemotron4_15b_2024", "nvidia_dgxc_2411")
                       or (r.source_key in ("nvidia_dgxc_2411_llama_gpt3", "nvidia_dgxc_2502")
                           and int(r.setup["tp"]) > 1)
                       or (r.source_key in ("mlperf_training_nvidia", "nemo_perf_2504") and int(r.setup["tp"]) > 1)
                       # the other MLPerf submitters: NVIDIA's configs set TP_COMM_OVERLAP, except Oracle's B200
                       # 8B (TP 1) and University of Florida's runs (its config comments the setting out)
                       or (r.source_key in MLPERF_OTHERS and r.source_key != "mlperf_uflorida"
                           and int(r.setup["tp"]) > 1)}
    assert all(int(r.setup["tp"]) > 1 for r in rows if r.id in tp_rows and r.source_key != "megatron_core_2024")
    for key in documented:
        assert "overlap" in data["sources"][key]["comm_overlap"]


def test_internevo_reduces_bf16_gradients(published):
    """InternEvo's HybridZeroOptimizer all-reduces the bf16 parameters' gradients in their own dtype
    (internlm/solver/optimizer/utils.py reduce_tensor at 34fc28d: 'use the original dtype') and casts
    them to the fp32 shard afterwards, so every InternEvo row maps to main_grads = bf16 (2 B per
    parameter on the wire), and the DP collective of those rows moves half the bytes of fp32 ones:
    with latency 0 the data-parallel time is exactly half."""
    from mlsys_opt.walls import parallel
    rows = [r for r in published if r.source_key == "internevo_2024"]
    assert len(rows) == 38
    for r in rows:
        assert r.setup["grad_reduce_in_fp32"] is False
        assert S.to_settings("training", r.setup).settings["main_grads"] == "bf16"
        assert "reduce_tensor" in r.assumptions and "34fc28d" in r.assumptions
    p = 7.321e9          # InternLM-7B parameters; 1024 GPUs = 128 nodes of 8, ZeRO-1 over dp
    kw = dict(dp=1024.0, shard=1024.0, zero_stage=1.0, dp_local=8.0, bw_intra=240e9, alpha_intra=0.0,
              bw_inter=6.25e9, alpha_inter=0.0)
    f_bf16, _ = parallel.data_parallel_times(2.0 * p, 2.0 * p, **kw)
    f_fp32, _ = parallel.data_parallel_times(4.0 * p, 2.0 * p, **kw)
    g_only = parallel.data_parallel_times(4.0 * p, 0.0, **kw)[0] - parallel.data_parallel_times(2.0 * p, 0.0, **kw)[0]
    np.testing.assert_allclose(float(f_fp32 - f_bf16), float(g_only), rtol=1e-9)
    np.testing.assert_allclose(float(parallel.data_parallel_times(2.0 * p, 0.0, **kw)[0]),
                               0.5 * float(parallel.data_parallel_times(4.0 * p, 0.0, **kw)[0]), rtol=1e-9)


def test_torchtitan_pipeline_rows_use_the_framework_defaults(published):
    """torchtitan's 405B pipeline rows (Dec 2024 page, commit 9dec370) print neither the number of
    micro-batches nor the stages per rank, so they take torchtitan's defaults at that commit:
    microbatches = pp (pipeline_llama.py), so b = local batch / pp (Table 5: 32/8 = 4; Table 6:
    8/8 = 1), and 2 stages per rank for the interleaved (PipelineScheduleMulti) schedule, 1 for
    1F1B (pipelining_utils.generate_split_points)."""
    rows = {r.id: r for r in published if r.id.startswith(("titan24_t5_405b", "titan24_t6_405b"))}
    assert len(rows) == 6
    for rid, r in rows.items():
        local = 32 if rid.startswith("titan24_t5") else 8
        pp, dp = int(r.setup["pp"]), int(r.setup["dp"])
        assert r.setup["global_batch"] == local * dp
        assert r.setup["micro_batch_size"] == local // pp
        settings = S.to_settings("training", r.setup).settings
        assert int(settings["micro_batch_size"]) == local // pp
        assert "9dec370" in r.assumptions and "parallel_dims.pp" in r.assumptions
    assert rows["titan24_t5_405b_n512_interleaved"].setup["virtual_stages"] == 2
    assert rows["titan24_t5_405b_n512_1f1b"].setup["virtual_stages"] == 1
    assert S.to_settings("training", rows["titan24_t5_405b_n512_interleaved"].setup).settings["virtual_stages"] == 2


def test_pending_parameters_are_flagged_until_the_schema_has_them(monkeypatch):
    """A setup key whose parameter the scenario lacks is pending (and flagged when it changes the
    physics); once the schema has it, the same row maps it with no change to the table."""
    setup = {"n_accelerators": 16, "tp": 2, "cp": 4, "pp": 1, "dp": 2, "global_batch": 8, "seq_len": 65536,
             "micro_batch_size": 1, "attention": "flash"}
    for name in ("cp", "attention", "micro_batch_size"):
        monkeypatch.delitem(schema.TRAINING_PARAMS, name, raising=False)
    m = S.to_settings("training", setup)
    assert m.pending == {"cp": 4, "attention": "flash", "micro_batch_size": 1}
    assert any(f.startswith("cp=4") for f in m.flags) and any(f.startswith("attention=") for f in m.flags)
    assert m.settings["microbatches"] == 4            # micro_batch_size emulated exactly, no flag
    monkeypatch.undo()
    m = S.to_settings("training", setup)
    assert not m.pending and not m.flags and m.settings["cp"] == 4 and m.settings["attention"] == "flash"


def test_serving_mapping_table():
    setup = {"hardware": "h100_sxm", "n_accelerators": 8, "tp": 2, "pp": 1, "ep": None, "weight_precision": "fp8",
             "kv_precision": "fp8", "input_len": 1000, "output_len": 1000, "batch_size": None, "request_rate": 4.0,
             "disaggregated": False, "speculative": None, "engine": "trtllm", "mode": "server"}
    m = S.to_settings("serving", setup)
    s = m.settings
    assert s["replicas"] == 4 and s["precision"] == "fp8" and s["request_rate"] == "4.0 /s"
    prompt = "prompt_len" if "prompt_len" in schema.SERVING_PARAMS else "prompt_tokens"
    assert s[prompt] == 1000 and "batch" not in s
    if "kv_precision" in schema.SERVING_PARAMS:
        assert s["kv_precision"] == "fp8"
    else:
        assert m.pending["kv_precision"] == "fp8"


def test_model_entries_for_shapes_the_catalog_lacks(published):
    row = next(r for r in published if r.id == "maxtext23_v5p_1024b_2x2048")
    name, entry = S.model_entry(row.setup["model"], 2048, row.source, "setup")
    assert name.startswith("run_") and entry["head_dim"] == 256 and entry["ffn_dim"] == 131072
    assert S.model_entry(row.setup["model"], 2048, row.source, "setup")[0] == name     # deterministic
    cat = load_catalog().with_entries("models", {name: entry})
    assert cat.entry("models", name)["n_params"] == pytest.approx(1032.1e9)
    assert S.model_entry({"catalog_model": "llama3_8b", "params_B": 8}, 8192, "", "setup") == ("llama3_8b", None)
    with pytest.raises(MlsysOptError, match="active_params_B"):
        S.model_entry({"params_B": 10, "layers": 4, "hidden": 512, "heads": 8, "vocab": 1000, "experts": 8}, 1, "", "x")


# --------------------------------------------------------------------------- leave-one-source-out
@pytest.fixture(scope="module")
def tiny():
    """Training rows of three sources, two of one organisation (NVIDIA): mosaic (MosaicML),
    megatron_core_2024 and nemo_perf_2407 (NVIDIA)."""
    rows = [r for r in C.load_runs("training") if r.id in (
        "mosaic_h100l_70b_s2048_n512_gb4096", "mosaic_h100_13b_s4096_n8_gb240", "mcore24_h100_7.1B",
        "mcore24_h100_70B", "nemo2407_llama2_7b_n8")]
    assert len(rows) == 5
    plan = C.build(rows)
    return rows, plan, C.leave_one_source_out(rows, steps=40, plan=plan), C.leave_one_source_out(
        rows, steps=40, plan=plan, by="org")


def test_leave_one_source_out_counts_organisations(tiny):
    _, plan, by_source, by_org = tiny
    assert len(by_source) == len(plan.targets) == 5 and set(by_source["scenario"]) == {"training"}
    fitted = by_source.groupby("fold")["fitted"].first()
    # without mosaic only NVIDIA is left (two sources, one organisation): nothing is fitted
    assert fitted["mosaic_llmfoundry"] == "(none)"
    assert fitted["megatron_core_2024"] == "compute_eff_scale"     # mosaic + nemo: two organisations
    held = by_source[by_source["fold"] == "mosaic_llmfoundry"]
    np.testing.assert_allclose(held["heldout"], held["default"], rtol=1e-9)
    moved = by_source[by_source["fold"] == "megatron_core_2024"]
    assert (np.abs(moved["heldout"] / moved["default"] - 1.0) > 1e-6).all()
    # by organisation: two folds, each leaves one organisation -> nothing fitted, held out = default
    assert set(by_org["fold"]) == {"MosaicML/Databricks", "NVIDIA"} and set(by_org["fitted"]) == {"(none)"}
    np.testing.assert_allclose(by_org["heldout"], by_org["default"], rtol=1e-9)
    err = 100 * (by_source["heldout"] / by_source["measured"] - 1)
    np.testing.assert_allclose(by_source["heldout_error_pct"], err, rtol=1e-9)
    assert by_source.attrs["all_rows_fitted"] == ("compute_eff_scale",)
    s = C.summarize_loso(by_source)
    assert s.loc["training", "rows"] == 5 and s.loc["training", "organisations"] == 2
    assert s.loc["training", "sources"] == 3


def test_feasibility_and_bottleneck_per_row(tiny):
    rows, plan, by_source, _ = tiny
    diag = C.diagnostics(C.DEFAULT_EFFICIENCY, plan)
    assert list(diag.index) == [r.id for r in rows]
    assert set(diag["bottleneck"]) <= set(BOTTLENECKS)
    hbm = load_catalog().entry("accelerators", "h100_sxm")["mem_capacity_bytes"] / 2**30
    np.testing.assert_allclose(diag["capacity_gib"], hbm, rtol=1e-4)
    assert (diag["feasible"] == (diag["memory_gib"] <= diag["capacity_gib"] * (1 + 1e-6))).all()
    text = C.format_loso(by_source, diag, skipped=[("x", "why")])
    assert "rows that miss most" in text and "x: why" in text and "feasible" in text


# --------------------------------------------------------------------------- --measurements files
CSV = """id,hardware,model,n_accelerators,tp,pp,sharding,micro_batch_size,global_batch,seq_len,precision,recompute,step_time_s,mfu
a,h100_sxm,llama3_8b,64,1,1,fsdp,2,512,8192,bf16,selective,6.1,0.42
b,H100,llama3_70b,256,8,1,fsdp,1,512,8192,bf16,full,25.0,
"""
TOML = """
[[runs]]
id = "s1"
hardware = "h100_sxm"
model = "llama3_8b"
n_accelerators = 1
input_len = 1000
output_len = 1000
precision = "fp8"
output_tokens_per_s = 15000.0

[[runs]]
id = "t1"
scenario = "training"
hardware = "a100_80gb"
n_accelerators = 16
tp = 2
global_batch = 64
seq_len = 2048
tokens_per_s_per_gpu = 3000.0
[runs.model]
params_B = 1.3
layers = 24
hidden = 2048
heads = 16
vocab = 50257
"""


def test_measurements_csv_and_toml(tmp_path):
    (tmp_path / "r.csv").write_text(CSV)
    a, b = C.read_measurements(tmp_path / "r.csv")
    assert a.measured == {"step_time_s": 6.1, "mfu": 0.42} and b.measured == {"step_time_s": 25.0}
    assert a.setup["dp"] == 64 and b.setup["dp"] == 32 and a.compare_all and a.source_key == "r.csv"
    plan = R.plan_setup_row(a)
    assert [t.metric for t in plan.targets] == ["step_time_s", "mfu"] and all(t.fit for t in plan.targets)
    (tmp_path / "r.toml").write_text(TOML)
    s1, t1 = C.read_measurements(tmp_path / "r.toml")
    assert R.scenario_of(s1) == "serving" and R.scenario_of(t1) == "training"
    p = R.plan_setup_row(s1)
    assert p.targets[0].metric == "output_tokens_per_s" and len(p.evaluations) == 2   # decode + batch prefill
    p = R.plan_setup_row(t1)
    assert p.evaluations[0][1]["model"].startswith("run_") and "models" in p.entries


def test_measurements_flop_count_conventions(tmp_path):
    """A user's MFU from Megatron-LM / NeMo logs: the vocabulary matrix counted once and the full s² square;
    the predicted MFU is counted the same way (runs.flop_count_ratio), a bad value names row and column."""
    head = "id,model,hardware,n_accelerators,tp,global_batch,seq_len,precision,mfu,embedding_flop_count,attention_flop_count"
    (tmp_path / "m.csv").write_text(head + "\nmegatron,llama3_8b,h100_sxm,8,1,64,8192,bf16,0.45,excluded,full_square\n"
                                    "ours,llama3_8b,h100_sxm,8,1,64,8192,bf16,0.45,,\n")
    mega, ours = (R.plan_setup_row(r).targets[0] for r in C.read_measurements(tmp_path / "m.csv"))
    model = load_catalog().entry("models", "llama3_8b")
    setup = {"seq_len": 8192, "embedding_flop_count": "excluded", "attention_flop_count": "full_square"}
    assert ours.coef == 1.0 and mega.coef == pytest.approx(R.flop_count_ratio(setup, model))
    assert 1.0 < mega.coef < 1.2               # + the other half of the square, - the input embedding (6 % of 6P)
    (tmp_path / "b.csv").write_text(head + "\nx,llama3_8b,h100_sxm,8,1,64,8192,bf16,0.45,excluded,full\n")
    with pytest.raises(MlsysOptError, match=r"row 1, column attention_flop_count: 'full' \(allowed: causal_half"):
        C.read_measurements(tmp_path / "b.csv")


@pytest.mark.parametrize("cells, message", [
    ({"tp": "abc"}, "row 2, column tp: 'abc' is not a whole number"),
    ({"hardware": "h1000"}, "row 2, column hardware: 'h1000'"),
    ({"precision": "fp7"}, "row 2, column precision: 'fp7'"),
    ({"step_time_s": "-3"}, "row 2, column step_time_s: -3.0 must be a finite number > 0"),
    ({"step_time_s": "", "mfu": ""}, "row 2: no measured quantity"),
    ({"mfu": "42"}, "row 2, column mfu: 42.0 is a fraction"),
    ({"sharding": "zero9"}, "row 2, column sharding: 'zero9' is not a sharding"),
])
def test_bad_rows_name_row_and_column(tmp_path, cells, message):
    header = CSV.splitlines()[0].split(",")
    row = dict(zip(header, CSV.splitlines()[2].split(",")))
    row.update(cells)
    (tmp_path / "bad.csv").write_text(CSV.splitlines()[0] + "\n" + CSV.splitlines()[1] + "\n"
                                      + ",".join(str(row[h]) for h in header) + "\n")
    with pytest.raises(MlsysOptError) as exc:
        C.read_measurements(tmp_path / "bad.csv")
    text = str(exc.value)
    assert "\n" not in text and str(tmp_path / "bad.csv") in text and message in text, text


def test_bad_files_and_cli_exit_2(tmp_path, capsys):
    from mlsys_opt.cli import main
    (tmp_path / "x.csv").write_text(CSV.replace("recompute,", "recompte,"))
    with pytest.raises(MlsysOptError, match="column recompte: .*did you mean 'recompute'"):
        C.read_measurements(tmp_path / "x.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(MlsysOptError, match=r"\.csv or \.toml"):
        C.read_measurements(tmp_path / "x.json")
    (tmp_path / "x.toml").write_text("runs = 3")
    with pytest.raises(MlsysOptError, match=r"\[\[runs\]\]"):
        C.read_measurements(tmp_path / "x.toml")
    for command in ("validate", "calibrate"):
        assert main([command, "--measurements", str(tmp_path / "x.csv")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "x.csv: row 1, column recompte" in err[0]


def test_measured_memory_is_compared_not_fitted(tmp_path, capsys):
    """memory_gib (peak per accelerator, GiB) in a user's file: compared with the scenario's memory by
    heldout.memory_check and printed by `validate`; a row that measures only memory plans no target."""
    from mlsys_opt.cli import main
    header, a = CSV.splitlines()[0], CSV.splitlines()[1]
    (tmp_path / "m.csv").write_text(f"{header},memory_gib\n{a},60\n" + a.replace("a,", "m,", 1).replace(
        "6.1,0.42", ",") + ",50\n")
    a, m = C.read_measurements(tmp_path / "m.csv")
    assert a.measured == {"step_time_s": 6.1, "mfu": 0.42, "memory_gib": 60.0} and m.measured == {"memory_gib": 50.0}
    assert [t.metric for t in R.plan_setup_row(a).targets] == ["step_time_s", "mfu"]
    assert R.plan_setup_row(m).targets == () and len(R.plan_setup_row(m).evaluations) == 1
    diag = C.diagnostics(C.DEFAULT_EFFICIENCY, C.build([a, m]))
    mem = C.memory_check([a, m], diag)
    assert list(mem.id) == ["a", "m"] and list(mem.measured_gib) == [60.0, 50.0]
    np.testing.assert_allclose(mem.predicted_gib, diag.memory_gib, rtol=1e-12)    # same configuration twice
    np.testing.assert_allclose(mem.error_pct, 100 * (mem.predicted_gib / mem.measured_gib - 1), rtol=1e-12)
    assert main(["validate", "--measurements", str(tmp_path / "m.csv")]) == 0
    out = capsys.readouterr().out
    assert "peak memory per accelerator vs measured (2 rows with memory_gib)" in out


def test_the_example_measurements_file_reproduces_the_packaged_rows():
    """examples/my_runs.csv (the README's `validate --measurements` example) holds two published runs in the user
    schema; read from it, each predicts what the packaged row of the same run predicts."""
    from mlsys_opt.calibration.heldout import dataset
    from mlsys_opt.calibration.rows import build, predict
    from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
    user = C.read_measurements(Path(__file__).resolve().parents[1] / "examples" / "my_runs.csv")
    assert [r.id for r in user] == ["titan_8b_compile", "mpt_7b_8gpu"]
    packaged = {r.id: r for r in dataset("training").rows}
    pairs = [(user[0], packaged["titan24_t1_8b_n8_compile"]), (user[1], packaged["mosaic_h100_7b_s2048_n8_gb48"])]
    for mine, theirs in pairs:
        assert mine.measured["tokens_per_s_per_gpu"] == theirs.measured["tokens_per_s_per_gpu"]
        got = float(predict(DEFAULT_EFFICIENCY, build([mine]).batch)[0])
        want = float(predict(DEFAULT_EFFICIENCY, build([theirs]).batch)[0])
        assert got == pytest.approx(want, rel=1e-5), mine.id


def test_offline_batch_latency_rows(published):
    """AMD's vLLM latency runs (benchmark_latency.py: one generate() of B fixed-length prompts) compare the
    printed end-to-end latency with the batch's prefill + output_len decode steps: the denominator of the
    offline throughput target, so B·out/latency is the throughput the model predicts for that batch."""
    row = next(r for r in published if r.id == "amdvllm010_lat_mi300x_llama31_70b_tp8_fp8_2048_2048_bs32")
    plan = R.plan_setup_row(row)
    t = plan.targets[0]
    assert t.metric == "batch_latency_s" and t.measured == row.measured["e2e_latency_mean_s"]
    assert t.den == ((("const", 1.0), 1.0),) and t.coef == 1.0
    # 2048-token prompts are above MI300X's FP8 ridge: B single-prompt prefills, then 2048 decode steps at batch 32
    assert t.num == (((1, "ttft_s"), 32.0), ((0, "itl_s"), 2048.0))
    assert plan.evaluations[0][1]["batch"] == 32 and plan.evaluations[1][1]["batch"] == 1


def test_nanotron_rows_use_pytorch_ddp_buckets(published):
    """BUCKETS: nanotron reduces through PyTorch DDP's buckets (ddp_bucket_cap_mb 25 MiB of fp32 gradients), so its
    ZeRO-1 rows set dp_bucket_params = 25·2^20/4; InternEvo's HybridZeroOptimizer reduces 512M-element buckets; every
    other row keeps Megatron-Core's default (0)."""
    from mlsys_opt.calibration.setup import to_settings
    for r in published:
        if R.scenario_of(r) != "training":
            continue
        # NeMo 2.3.0's megatron_comm_overlap.py sets bucket_size 128 Mi parameters on its ZeRO-1 rows
        want = {"hf_ultrascale_2025": 6553600.0, "internevo_2024": 536870912.0}.get(r.source_key)
        if r.source_key == "nemo_perf_2504" and r.setup.get("sharding") != "fsdp":
            want = 134217728.0
        assert r.setup.get("dp_bucket_params") == want, r.id
        if want:
            assert to_settings("training", r.setup, r.id).settings["dp_bucket_params"] == want


def test_kv_capacity_batch_reads_the_engines_memory_fraction(published):
    """vLLM's gpu_memory_utilization and SGLang's mem_fraction_static are fractions of the whole memory
    (KV = f·HBM − weights); TensorRT-LLM's kv_cache_free_gpu_mem_fraction is of what the weights leave
    (KV = 0.9·(HBM − weights)); a printed fraction (setup.mem_fraction) wins."""
    catalog = load_catalog()
    m, hw = catalog.entry("models", "llama3_70b"), catalog.entry("accelerators", "h200")
    hbm = 4 * hw["mem_capacity_bytes"]
    weights = m["n_params"] * 2 + float(R.embedding_extra_bytes(m["vocab_size"], m["hidden_dim"], 2))
    per_seq = R._kv_bytes_per_seq(m, 1000.0, 2)
    settings = {"hardware": "h200", "model": "llama3_70b", "precision": "fp16", "tp": 4}
    def batch(**setup):
        return R._kv_batch(catalog, settings, {"kv_precision": "fp16", **setup}, 1000.0, 4)
    assert batch(engine="sglang") == int((0.85 * hbm - weights) // per_seq)            # tp 4: 0.85
    assert batch(engine="trtllm") == int((0.9 * (hbm - weights)) // per_seq)
    assert batch(engine="sglang", mem_fraction=0.8) == int((0.8 * hbm - weights) // per_seq)
    assert batch(engine="vllm") == 256                                                  # max_num_seqs
    row = next(r for r in published if r.id == "dc_sglang_8xh200_llama31_405b_tp8_rand1k_rps1")
    assert row.setup["mem_fraction"] == 0.87


def test_an_achieved_rate_is_compared_only_where_the_engine_saturated(published):
    """DataCrunch's runs: the saturated ones (offered load above the deployment's measured capacity) carry
    requests_per_s under `measured` and compare it with the model's throughput; a finite run that kept up
    (70B at 8 req/s: 6.92 of 8 achieved, the run ending one latency after its last arrival) keeps it under
    `derived` and compares its time per token."""
    by_id = {r.id: r for r in published}
    sat = R.plan_setup_row(by_id["dc_sglang_8xh200_llama31_405b_tp8_rand1k_rps8"]).targets[0]
    assert sat.metric == "requests_per_s" and sat.coef == pytest.approx(
        1.0 / by_id["dc_sglang_8xh200_llama31_405b_tp8_rand1k_rps8"].setup["output_len"])
    kept = by_id["dc_sglang_4xh200_llama33_70b_tp4_rand1k_rps8"]
    assert "requests_per_s" not in kept.measured
    assert R.plan_setup_row(kept).targets[0].metric == "itl_s"
    # the rule itself: an achieved rate under `measured` below 0.9 of the offered one
    assert R.plan_setup_row(kept._replace(measured={**kept.measured, "requests_per_s": 6.9})).targets[0].metric \
        == "requests_per_s"
    assert R.plan_setup_row(kept._replace(measured={**kept.measured, "requests_per_s": 7.5})).targets[0].metric \
        == "itl_s"
