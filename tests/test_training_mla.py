"""DeepSeek-V3 as it is (issue 12, helper DSV3): MLA, leading dense layers, shared expert, MTP, pipeline layout.

Reference values are hand-computed from DeepSeek-V3's published shapes (arXiv:2412.19437 §2.1, §2.2, §4.2;
Hugging Face deepseek-ai/DeepSeek-V3 config.json) and from Megatron-Core's FLOP count
(megatron/training/training.py `num_floating_point_operations`, MLA and MTP terms; Megatron-Bridge
training/utils/flop_utils.py has the same terms), which NVIDIA's Megatron-Bridge performance tables
divide by the step time: 1106 TFLOP/s / 4256 tokens/s per GPU (GB200) = 2.599e11 FLOP per token.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from training_rows import (
    CAT,
    check_batched_equals_scalar,
    check_step_time_grad,
    evaluate,
    row,
    stack,
)

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.catalog import shapes
from mlsys_opt.errors import CatalogError
from mlsys_opt.scenarios import training_parts as tparts
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
from mlsys_opt.scenarios.parts import gather
from mlsys_opt.scenarios.schema import RECOMPUTE

T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
PAD = 8
DSV3 = CAT.index("models", "deepseek_v3")
FP8 = PRECISIONS.index("fp8")
SELECTIVE = RECOMPUTE.index("selective")
# Megatron-Bridge 26.04 DeepSeek-V3 on 256 B200 (training_runs.json mbridge2604_deepseekv3_b200_mxfp8_n256)
B200 = dict(tp=1, pp=8, ep=32, virtual_stages=2, n_accelerators=256, global_batch=4096, seq_len=4096,
            micro_batch_size=1, precision=FP8, recompute=SELECTIVE, zero_stage=1, main_grads=1, ep_dispatcher=1,
            ep_overlap=1.0, moe_node_limit=4, last_stage_layers=5)
H, A, V, S_LEN = 7168, 128, 129280, 4096


def _setup(rows, tables=T64):
    p = stack(rows, PAD)
    c = gather(p, tables, DEFAULT_EFFICIENCY)
    vocab = tables.model.vocab_size[jnp.asarray(p.model, jnp.int32)]
    return tparts.setup(p, c, DEFAULT_EFFICIENCY, vocab), c


def _run(rows, tables=T64):
    return evaluate(TRAIN, rows, PAD, tables)


def _megatron_flop_per_token(mtp: int) -> float:
    """Megatron-Core num_floating_point_operations / (batch·seq) for DeepSeek-V3 (its MLA branch, swiglu,
    moe_layer_freq [0]*3 + [1]*58, 1 shared expert of 2048, mtp_num_layers), written out by hand."""
    layers, moe = 61 + mtp, 58 + mtp
    mlp = 6 * H * (18432 * 3 * 3 + 2048 * 8 * 3 * moe + 2048 * 3 * moe)
    q = 1536 * (H + A * (128 + 64) + 1)
    kv = 512 * (H + A * (128 + 128) + 1) + H * 64
    core = S_LEN * A * (128 + 64) / 2 + S_LEN * A * 128 / 2
    attn = 6 * layers * (q + kv + A * 128 * H + core)
    return mlp + attn + 6 * mtp * (3 * H + 2 * H * H) + 6 * H * V * (mtp + 1)


def test_deepseek_v3_parameters_from_the_fields():
    """671B total / 37B active (§4.2) and the 14B MTP module (HF model card: 685B = 671B + 14B) from the
    catalog fields; hand sums: attention 1536·7168 + 1536·128·192 + 7168·576 + 512·128·256 + 128·128·7168
    = 187,105,280 per layer; MTP per token 187,105,280 + 9·3·7168·2048 + 2·7168² + 129,280·7168."""
    e = CAT.entry("models", "deepseek_v3").to_dict()
    pc = shapes.param_counts(e)
    assert pc.attn_per_layer == 187_105_280
    assert pc.total == pytest.approx(671e9, rel=1e-3)
    assert pc.total == pytest.approx(e["n_params"], rel=1e-3)
    assert 37e9 <= pc.active <= 37.6e9                       # 37.55e9 with the embedding, "37B activated"
    assert pc.mtp_total + 2 * V * H == pytest.approx(14e9, rel=0.05)   # its own embedding / head copies
    assert e["mtp_active_params"] == 187_105_280 + 9 * 3 * H * 2048 + 2 * H * H + V * H == 1_612_906_496
    assert e["core_head_dim"] == 160.0                       # ((128 + 64) + 128) / 2
    # Megatron's FLOP count (mtp_num_layers = 1) is NVIDIA's published TFLOP/s over tokens/s
    assert _megatron_flop_per_token(1) == pytest.approx(1106e12 / 4256, rel=1e-3)
    # B200: 865.3 TFLOP/s at this count against 864 printed (the table averages each column on its own)
    assert _megatron_flop_per_token(1) == pytest.approx(864e12 / 3328, rel=2e-3)


def test_models_without_the_fields_are_unchanged():
    """Every other model: core_head_dim = head_dim, no MTP, no dense layers, and the scenario's new paths
    are exactly inert (setup equals the same rows evaluated with the DSV3 columns forced to the MHA/0 values)."""
    f = CAT.frames["models"]
    others = f[f["name"] != "deepseek_v3"]
    tf = others[others["kind"] != "cnn"]
    assert (tf["core_head_dim"] == tf["head_dim"]).all()
    assert (others[["mtp_active_params", "mtp_layers", "dense_layers", "shared_experts", "kv_lora_rank"]] == 0).all().all()
    names = ["llama3_70b", "mixtral_8x7b", "gpt3_175b", "bloom_176b"]
    rows = [row("h100_sxm", n, "ib_ndr", tp=8, pp=pp, ep=ep, n_accelerators=512, stage_balance=sb, virtual_stages=v)
            for n, pp, ep, sb, v in zip(names, (4, 2, 8, 4), (1, 8, 1, 1), (0, 0, 1, 1), (1, 2, 1, 1))]
    s, c = _setup(rows)
    np.testing.assert_array_equal(np.asarray(c.attn_width), np.asarray(c.n_heads * c.head_dim))
    np.testing.assert_array_equal(np.asarray(s.ep_layers_stage), np.asarray(s.layers_stage))
    # MFU numerator: PaLM App. B with the causal half, 6·N·T + 12·L·(a·d)·s·T·f, as before
    tokens = np.asarray(s.gb * s.seq)
    f_causal = (S_LEN + 1.0) / (2.0 * S_LEN)
    want = (6.0 * np.asarray(c.n_eff) * tokens
            + 12.0 * np.asarray(c.n_layers * c.n_heads * c.head_dim) * S_LEN * tokens * f_causal)
    np.testing.assert_allclose(np.asarray(s.model_flop)[:4], want[:4], rtol=1e-12)


def test_model_flops_and_critical_stage_reference_values():
    """DeepSeek-V3, B200 row: model FLOPs per token = 6·(37e9 + 1,612,906,496) + 12·62·(128·160)·s·f
    (the catalog's 37B counts the embedding; Megatron's count is 1.2 % lower); the last rank (5 layers + MTP
    + two LM-head passes) against the middle ranks' 8 layers; expert dispatch on 5 + 1 MoE layers."""
    rows = [row("b200", "deepseek_v3", "ib_ndr", **B200), row("b200", "deepseek_v3", "ib_ndr", **B200) | dict(
        pp=1, ep=32, n_accelerators=32, last_stage_layers=0, virtual_stages=1)]
    s, c = _setup(rows)
    tokens = 4096.0 * S_LEN
    f_causal = (S_LEN + 1.0) / (2.0 * S_LEN)
    per_tok = 6.0 * (37e9 + 1_612_906_496) + 12.0 * 62 * (A * 160) * S_LEN * f_causal
    assert float(s.model_flop[0]) / tokens == pytest.approx(per_tok, rel=1e-12)
    assert float(s.model_flop[0]) / tokens == pytest.approx(_megatron_flop_per_token(1), rel=0.015)
    # hardware FLOPs (selective + flash: no recomputed FLOPs; balanced routing: load 1)
    attn_seq_layer = 4.0 * A * 160 * S_LEN * S_LEN * f_causal * 3.5      # flash fwd + 2.5x bwd
    # EMBED (issue 12): the untied input embedding (V·h, tie_word_embeddings false) is a gather, not a GEMM
    body = 6.0 * tokens * (37e9 - V * H) + 61 * 4096 * attn_seq_layer
    head = 6.0 * tokens * V * H
    mtp = 6.0 * tokens * 1_612_906_496 + 4096 * attn_seq_layer
    n, pp = 256.0, 8.0
    trunk = body - head                                    # HFUS: the head runs on the last rank only
    middle = trunk * 8 / 61 * pp / n
    last = (trunk * 5 / 61 * pp + head * pp + mtp * pp) / n
    assert last > middle                                   # the MTP rank is critical (~8.9 layer-equivalents)
    assert float(s.flop_gpu[0]) == pytest.approx(max(middle, last), rel=1e-12)
    assert float(s.ep_layers_stage[0]) == 6.0              # 5 decoder layers + the MTP block, all MoE
    assert float(s.layers_first[0]) == 8.0
    # pp = 1: every layer on each rank; 3 dense layers dispatch nothing, the MTP block does
    assert float(s.ep_layers_stage[1]) == 61 - 3 + 1
    assert float(s.flop_gpu[1]) == pytest.approx((body + mtp) / 32.0, rel=1e-12)


def test_mtp_and_mla_make_deepseek_slower_and_layout_matters():
    """Against the same catalog row without MLA/MTP/dense columns (the previous model): more FLOPs per token
    and a slower step at pp = 1 (2 fewer MoE layers dispatch: 3 dense, + 1 MTP); an even split with the MTP
    on the last rank is slower than the layout."""
    m = T64.model
    plain = T64._replace(model=m._replace(core_head_dim=m.head_dim, mtp_active_params=m.mtp_active_params * 0,
                                          mtp_layers=m.mtp_layers * 0, dense_layers=m.dense_layers * 0))
    base = row("b200", "deepseek_v3", "ib_ndr", **B200)
    # ep_overlap = 0: with overlap, the longer compute also hides more of the dispatch (walls.moe.overlapped_exposed)
    one = base | dict(pp=1, n_accelerators=64, ep=64, last_stage_layers=0, virtual_stages=1, ep_overlap=0.0)
    o_new, _ = _run([one, base, base | dict(last_stage_layers=0)])
    o_old, _ = _run([one], plain)
    assert o_new["step_time_s"][0] > o_old["step_time_s"][0]
    assert o_new["mfu"][0] > 0 and np.all(np.isfinite(o_new["step_time_s"]))
    assert o_new["step_time_s"][2] > 1.1 * o_new["step_time_s"][1]     # MTP + 2 heads on a 7.6-layer rank


def test_batched_equals_scalar_and_grad_vs_finite_differences():
    rows = [row("b200", "deepseek_v3", "ib_ndr", **B200),
            row("gb200", "deepseek_v3", "ib_ndr", **(B200 | dict(pp=4, ep=64, virtual_stages=4, last_stage_layers=13))),
            row("h100_sxm", "deepseek_v3", "ib_ndr", **(B200 | dict(pp=16, n_accelerators=1024, last_stage_layers=1,
                                                                    virtual_stages=1, recompute=2))),
            row("b200", "deepseek_v3", "ib_ndr", **(B200 | dict(last_stage_layers=61))),   # everything on the last
            row("h100_sxm", "llama3_70b", "ib_ndr", tp=8, pp=4, n_accelerators=512, last_stage_layers=17)]
    check_batched_equals_scalar(rows, _run)
    check_step_time_grad(rows[0] | dict(overlap=0.7, straggler_factor=1.05),
                         ("efficiency", "ep_overlap", "straggler_factor"), T64)


def test_bad_fields_are_refused():
    bad = {"display_name": "x", "kind": "moe", "year": 2024, "source": "s", "params": "10e9",
           "active_params": "1e9", "layers": 4, "hidden": 64, "heads": 4, "kv_heads": 4, "head_dim": 16,
           "ffn_dim": 32, "vocab": 100, "context": 128, "experts": 8, "top_k": 2, "dense_layers": 4}
    with pytest.raises(CatalogError, match="dense_layers"):
        CAT.with_entries("models", {"bad_moe": bad})
    with pytest.raises(CatalogError, match="dense_layers"):   # MoE-only field on a dense model
        CAT.with_entries("models", {"bad_dense": {k: v for k, v in bad.items() if k not in ("experts", "top_k",
                                                  "active_params")} | {"kind": "transformer", "dense_layers": 1}})
    with pytest.raises(CatalogError, match="kv_lora_rank"):
        CAT.with_entries("models", {"bad_neg": bad | {"dense_layers": 0, "kv_lora_rank": -1}})
