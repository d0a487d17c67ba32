"""The input embedding is a gather, not a GEMM (issue 12, helper EMBED).

An untied input embedding (V·h parameters; Llama 1/2/3, Mistral/Mixtral, DeepSeek-V3, Qwen2-72B, ...) is a row
gather forward (torch.nn.Embedding -> aten::embedding = index_select) and a scatter-add backward
(aten::embedding_dense_backward), so the training scenario's hardware GEMM FLOPs leave 6·T·V·h out for it (and
2·T·V·h more from a full recomputation's forward); a tied matrix is the LM head's GEMM and counts once, as before.
The model FLOPs (MFU numerator, 6·P·T as the sources count) and the memory (every stored parameter) keep it.
Reference: Llama-3-8B (Hugging Face config.json: vocab_size 128256, hidden_size 4096, tie_word_embeddings false):
6·128,256·4,096 = 3,152,019,456 FLOP per token fewer (6.5 % of 6·8.03e9).
"""
import tomllib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from training_rows import CAT, check_batched_equals_scalar, evaluate, row, stack

from mlsys_opt import catalog
from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt.calibration import setup as calib_setup
from mlsys_opt.errors import CatalogError, MlsysOptError
from mlsys_opt.scenarios import training_parts as tparts
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
from mlsys_opt.scenarios.parts import gather
from mlsys_opt.scenarios.schema import RECOMPUTE

T64 = CAT.tables(dtype=jnp.float64)
M = T64.model
# the previous model: no model's input embedding left out of the GEMM FLOPs
OLD = T64._replace(model=M._replace(untied_embedding_params=M.untied_embedding_params * 0.0))
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
PAD = 8
V8, H8 = 128256, 4096
FULL = RECOMPUTE.index("full")
UNTIED = ("llama2_7b", "llama2_70b", "llama3_8b", "llama3_70b", "llama3_405b", "mixtral_8x7b", "deepseek_v3",
          "qwen2_72b")
TIED = ("bert_large", "gpt2_xl", "gpt3_175b", "llama3_2_1b", "bloom_176b", "gopher_280b", "mtnlg_530b", "palm_540b")


@jax.jit
def _setup_jit(p, tables):
    c = gather(p, tables, DEFAULT_EFFICIENCY)
    vocab = tables.model.vocab_size[jnp.asarray(p.model, jnp.int32)]
    return tparts.setup(p, c, DEFAULT_EFFICIENCY, vocab)


def _setup(rows, tables=T64):
    return _setup_jit(stack(rows, PAD), tables)


def _run(rows, tables=T64):
    return evaluate(TRAIN, rows, PAD, tables)


def test_catalog_flags_and_the_per_model_column():
    f = CAT.frames["models"].set_index("name")
    assert set(UNTIED) | set(TIED) == set(f.index[f["kind"] != "cnn"])     # every transformer has a sourced flag
    assert not f.loc[list(UNTIED), "tied_embeddings"].any() and f.loc[list(TIED), "tied_embeddings"].all()
    toml = tomllib.loads((Path(catalog.__file__).parent / "models.toml").read_text())
    for name in UNTIED + TIED:
        assert "tied_embeddings" in toml[name]                               # set explicitly, not the default
        assert "tied_embeddings" in f.loc[name, "source"]                    # the source is written down
    assert f.loc["llama3_8b", "untied_embedding_params"] == V8 * H8 == 525_336_576
    assert f.loc["deepseek_v3", "untied_embedding_params"] == 129280 * 7168
    assert (f.loc[list(TIED), "untied_embedding_params"] == 0).all()
    assert (f.loc[f["kind"] == "cnn", "untied_embedding_params"] == 0).all()
    np.testing.assert_array_equal(np.asarray(M.untied_embedding_params), f["untied_embedding_params"].to_numpy())


def test_default_is_tied_and_bad_values_are_refused():
    e = {"display_name": "x", "kind": "transformer", "year": 2024, "source": "s", "params": "1e9", "layers": 4,
         "hidden": 64, "heads": 4, "kv_heads": 4, "head_dim": 16, "ffn_dim": 32, "vocab": 100, "context": 128}
    cat = CAT.with_entries("models", {"plain_x": e, "untied_x": e | {"display_name": "y", "tied_embeddings": False}})
    assert bool(cat.entry("models", "plain_x")["tied_embeddings"])                 # default: tied
    assert cat.entry("models", "plain_x")["untied_embedding_params"] == 0.0
    assert cat.entry("models", "untied_x")["untied_embedding_params"] == 6400.0    # 100 x 64
    with pytest.raises(CatalogError, match="tied_embeddings"):
        CAT.with_entries("models", {"bad_x": e | {"tied_embeddings": "yes"}})
    cnn = {"display_name": "c", "kind": "cnn", "year": 2020, "source": "s", "params": "1e6", "layers": 4,
           "flop_per_sample": "1 GFLOP", "tied_embeddings": False}
    with pytest.raises(CatalogError, match="tied_embeddings"):
        CAT.with_entries("models", {"bad_cnn": cnn})


def test_row_model_dicts_map_the_flag():
    m = {"name": "Row model", "params_B": 1.0, "layers": 4, "hidden": 64, "heads": 4, "vocab": 100}
    name, entry = calib_setup.model_entry(m | {"tied_embeddings": False}, 128, "src", "setup")
    assert entry["tied_embeddings"] is False and name != calib_setup.model_entry(m, 128, "src", "setup")[0]
    assert "tied_embeddings" not in calib_setup.model_entry(m, 128, "src", "setup")[1]   # absent: the default
    with pytest.raises(MlsysOptError, match="tied_embeddings"):
        calib_setup.model_entry(m | {"tied_embeddings": "no"}, 128, "src", "setup")


def test_llama3_8b_hand_computed_reference():
    """pp = 1, no recomputation: flop_gpu drops by exactly 6·T·V·h/N; with full recomputation by 8·T·V·h/N (its
    forward re-runs the blocks only, as before for the head); model FLOPs and memory are unchanged."""
    kw = dict(tp=1, pp=1, n_accelerators=8, global_batch=64, seq_len=8192)
    rows = [row("h100_sxm", "llama3_8b", "ib_ndr", **kw), row("h100_sxm", "llama3_8b", "ib_ndr", recompute=FULL, **kw)]
    new, old = _setup(rows), _setup(rows, OLD)
    tokens = 64 * 8192.0
    d = np.asarray(old.flop_gpu)[:2] - np.asarray(new.flop_gpu)[:2]
    assert d[0] == pytest.approx(6.0 * tokens * V8 * H8 / 8, rel=1e-12)
    assert d[1] == pytest.approx(8.0 * tokens * V8 * H8 / 8, rel=1e-12)
    assert d[0] / tokens * 8 == pytest.approx(3_152_019_456, rel=1e-12)
    np.testing.assert_array_equal(np.asarray(new.model_flop), np.asarray(old.model_flop))
    np.testing.assert_array_equal(np.asarray(new.states_bytes), np.asarray(old.states_bytes))
    np.testing.assert_array_equal(np.asarray(new.attn_flop_gpu), np.asarray(old.attn_flop_gpu))
    o_new, _ = _run(rows)
    o_old, _ = _run(rows, OLD)
    assert np.all(o_new["step_time_s"] < o_old["step_time_s"])
    assert np.all(o_new["mfu"] > o_old["mfu"])            # same model FLOPs, shorter step


def test_tied_models_and_cnns_unchanged_moe_and_mtp_paths():
    """Tied models (and CNNs) give bit-identical outputs; Mixtral / DeepSeek-V3 drop exactly 6·T·V·h over the
    critical stage's share (pp = 1: /N), the expert split, the MTP term and the model FLOPs unchanged."""
    rows = [row("h100_sxm", n, "ib_ndr", tp=8, pp=pp, n_accelerators=512, stage_balance=sb)
            for n, pp, sb in (("llama3_2_1b", 1, 0), ("gpt3_175b", 8, 0), ("bloom_176b", 4, 1), ("palm_540b", 8, 0))]
    rows.append(row("a100_80gb", "resnet50", "ib_hdr", n_accelerators=64, global_batch=2048))
    o_new, g_new = _run(rows)
    o_old, g_old = _run(rows, OLD)
    for k in o_new:
        np.testing.assert_array_equal(o_new[k], o_old[k], err_msg=k)
    for k in g_new:
        np.testing.assert_array_equal(g_new[k], g_old[k], err_msg=k)
    moe = [row("h100_sxm", "mixtral_8x7b", "ib_ndr", tp=2, pp=1, ep=8, n_accelerators=64, seq_len=4096),
           row("b200", "deepseek_v3", "ib_ndr", tp=1, pp=1, ep=32, n_accelerators=32, seq_len=4096)]
    new, old = _setup(moe), _setup(moe, OLD)
    tokens = 1024 * 4096.0
    vh = np.asarray([32000 * 4096.0, 129280 * 7168.0])
    d = np.asarray(old.flop_gpu)[:2] - np.asarray(new.flop_gpu)[:2]
    np.testing.assert_allclose(d, 6.0 * tokens * vh / np.asarray([64.0, 32.0]), rtol=1e-12)
    for k in ("model_flop", "expert_params", "shared_params", "expert_active", "states_bytes"):
        np.testing.assert_array_equal(np.asarray(getattr(new, k)), np.asarray(getattr(old, k)), err_msg=k)


def test_batched_equals_scalar_and_grad_vs_finite_differences():
    rows = [row("h100_sxm", "llama3_8b", "ib_ndr", tp=1, pp=1, n_accelerators=8, seq_len=8192),
            row("h100_sxm", "llama3_70b", "ib_ndr", tp=8, pp=4, n_accelerators=512, recompute=FULL),
            row("h100_sxm", "llama3_2_1b", "ib_ndr", n_accelerators=8),
            row("b200", "deepseek_v3", "ib_ndr", tp=1, pp=8, ep=32, n_accelerators=256, last_stage_layers=5),
            row("a100_80gb", "resnet50", "ib_hdr", n_accelerators=64, global_batch=2048)]
    check_batched_equals_scalar(rows, _run)
    # d log(step time) / d untied_embedding_params (the per-model column) at Llama-3-8B: jax.grad vs central FD
    m = CAT.index("models", "llama3_8b")
    p0 = S.params_from_dict("training", rows[0])

    def loss(x):
        t = T64._replace(model=M._replace(untied_embedding_params=M.untied_embedding_params.at[m].set(x)))
        return jnp.log(S.training(p0, t)[0].step_time_s)

    vg = jax.jit(jax.value_and_grad(loss), **jit_options())
    x0 = float(M.untied_embedding_params[m])
    g = float(vg(x0)[1])
    h = 1e-6 * x0
    fd = (float(vg(x0 + h)[0]) - float(vg(x0 - h)[0])) / (2 * h)
    assert np.isfinite(g) and g < 0                      # fewer GEMM FLOPs, shorter step
    assert g == pytest.approx(fd, rel=1e-4)
