"""Megatron-Core's selective recomputation, `recompute = "core_attn"` (issue 12, helper RECOMP).

Megatron-Core's `--recompute-granularity selective` (recompute_modules ["core_attn"], its default) checkpoints
the core attention whatever the kernel: megatron/core/transformer/attention.py at core_r0.8.0 (baf94af),
`if self.checkpoint_core_attention and self.training: core_attn_out = self._checkpointed_attention_forward(...)`,
so the FlashAttention / cuDNN forward runs again in the backward: + L·gb·fwd_flop(attention core) hardware FLOPs,
fwd_flop = 4·a·d·s²·f (walls.attention.attention_core, f = 1 - (s - 1)/(2s) causal), and the flash kernel's
logsumexp is not kept.  `selective` keeps its meaning (legacy Megatron-LM ParallelAttention, MaxText 'minimal':
only an eager core is re-run).  With eager attention core_attn is selective.

(a) reference values by hand; (b) batched == scalar; (c) jax.grad vs central differences; (d) the data rule: the
NVIDIA rows' recompute as their sources ran it.  One jitted scenario, one setup per case batch.
"""
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import training_rows

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt._types import PRECISIONS
from mlsys_opt.calibration import setup as calib_setup
from mlsys_opt.calibration.runs import TRAINING_RUNS_PATH
from mlsys_opt.catalog import load_catalog
from mlsys_opt.scenarios import training_parts as tparts
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY as EFF
from mlsys_opt.scenarios.parts import gather

CAT = load_catalog()
T64 = CAT.tables(dtype=jnp.float64)
TRAIN = jax.jit(S.training, **jit_options())      # mlsys_opt._compile: ~half the compile time
RC = S.schema.RECOMPUTE
ATT = S.schema.ATTENTION
KINDS = [("none", "flash"), ("selective", "flash"), ("core_attn", "flash"),
         ("none", "eager"), ("selective", "eager"), ("core_attn", "eager")]


def cfg(recompute="core_attn", attention="flash", **kw):
    """Llama-3-8B on 8 H100 (NeMo 24.07's LLAMA3-8B shape without CP): tp 1, pp 1, s = 8192, gb 128, bf16."""
    return training_rows.row("h100_sxm", "llama3_8b", "ib_ndr", **{
        **dict(precision=PRECISIONS.index("fp16"), tp=1, pp=1, cp=1, n_accelerators=8, ep=1, microbatches=0,
               virtual_stages=1, global_batch=128, seq_len=8192, micro_batch_size=1, zero_stage=1,
               recompute=RC.index(recompute), attention=ATT.index(attention)), **kw})


def _params(rows):
    return S.params_from_dict("training", {k: np.asarray([r[k] for r in rows]) for k in rows[0]})


def _setup(p, eff=EFF):
    c = gather(p, T64, eff)
    return tparts.setup(p, c, eff, T64.model.vocab_size[jnp.asarray(p.model, jnp.int32)])


def test_core_attn_reruns_the_flash_forward_by_hand():
    s = _setup(_params([cfg(r, a) for r, a in KINDS]))
    flop, attn = np.asarray(s.flop_gpu), np.asarray(s.attn_flop_gpu)
    m = CAT.index("models", "llama3_8b")
    layers, heads, d = (float(np.asarray(x)[m]) for x in (T64.model.n_layers, T64.model.n_heads,
                                                          T64.model.head_dim))
    assert (layers, heads, d) == (32.0, 32.0, 128.0)
    seq, gb, n = 8192.0, 128.0, 8.0
    # by hand: one more causal flash forward per layer and sequence, 4·a·d·s²·(1 - (s - 1)/(2s)), per GPU /N
    rerun = layers * gb * 4.0 * heads * d * seq * seq * (1.0 - (seq - 1.0) / (2.0 * seq)) / n
    assert rerun == pytest.approx(2.8151e14, rel=1e-4)    # 282 TFLOP per GPU and step
    np.testing.assert_allclose(attn[2] - attn[0], rerun, rtol=1e-12)
    np.testing.assert_allclose(flop[2] - flop[0], rerun, rtol=1e-12)      # nothing else is re-run
    # selective keeps its meaning with flash (legacy Megatron-LM, MaxText: the fused core is not re-run)
    assert flop[1] == flop[0] and attn[1] == attn[0]
    # eager: core_attn is selective (the score-tensor core re-run, the same stored bytes)
    assert flop[5] == flop[4] and attn[5] == attn[4] and flop[4] > flop[3]
    act = np.asarray(s.act_seq_layer)
    assert act[5] == act[4]
    # flash: the checkpointed kernel keeps no logsumexp: 4 B·a·s per sequence and layer (fp32) x act_scale
    lse = 4.0 * heads * seq * float(np.asarray(s.act_scale)[2])
    np.testing.assert_allclose(act[0] - act[2], lse, rtol=1e-12)
    assert act[1] == act[0]


def test_batched_equals_scalar_and_step_order():
    rows = [cfg(r, a) for r, a in KINDS]

    def run(rs):
        o, g = TRAIN(_params(list(rs) + [rs[0]] * (len(rows) - len(rs))), T64)
        return {k: np.asarray(v) for k, v in o._asdict().items()}, {k: np.asarray(v) for k, v in g._asdict().items()}

    o, _ = training_rows.check_batched_equals_scalar(rows, run)
    step = o["step_time_s"]
    assert step[0] == step[1] < step[2]         # flash: none = selective < core_attn
    assert step[3] < step[4] == step[5]         # eager: none < selective = core_attn


def test_grad_of_the_rerun_matches_finite_differences():
    """d(attn_flop_gpu)/d(seq_len) and d/d(recompute_flop_scale) with core_attn, by jax.grad, FD and by hand."""
    base = _params([cfg()])

    def attn(seq, scale):
        p = base._replace(seq_len=jnp.reshape(seq, (1,)))
        return _setup(p, EFF._replace(recompute_flop_scale=scale)).attn_flop_gpu[0]

    g_s, g_scale = jax.grad(attn, argnums=(0, 1))(8192.0, 1.0)
    eps = 1e-2
    fd_s = (attn(8192.0 + eps, 1.0) - attn(8192.0 - eps, 1.0)) / (2 * eps)
    fd_scale = (attn(8192.0, 1.0 + 1e-3) - attn(8192.0, 1.0 - 1e-3)) / 2e-3
    np.testing.assert_allclose(float(g_s), float(fd_s), rtol=1e-7)
    np.testing.assert_allclose(float(g_scale), float(fd_scale), rtol=1e-7)
    # by hand: per unit of recompute_flop_scale the re-run forward, L·gb·4·a·d·s²·f/N, f·s² = s²/2 + s/2
    np.testing.assert_allclose(float(g_scale), 32 * 128 * 4 * 32 * 128 * (8192.0 ** 2 / 2 + 8192.0 / 2) / 8,
                               rtol=1e-12)
    # the whole step: log(step time) against central differences in the continuous inputs
    training_rows.check_step_time_grad(cfg(), ("global_batch", "efficiency"), T64)


ROWS = json.loads(TRAINING_RUNS_PATH.read_text())["rows"]
HEX40 = re.compile(r"\b[0-9a-f]{40}\b")


def _expected(r):
    """The recompute each NVIDIA source ran (RECOMP read it; see each row's assumption line)."""
    rid, src = r["id"], r["source_key"]
    if src == "nemo_perf_2407":      # NeMo-Framework-Launcher 24.07 configs: null, except Nemotron-340B selective
        return "core_attn" if "nemotron_340b" in rid else "none"
    if src == "megatron_core_2024":  # not printed: Megatron-LM's default --recompute-granularity None
        return "none"
    if src == "megatron_bridge_2604":  # recipes None; DeepSeek-V3 modules without core_attn
        return "none"
    if rid.startswith("nemo_longseq_h100_"):  # NeMo 1.x default activations_checkpoint_granularity null
        return "none"
    return None


def test_nvidia_rows_recompute_as_their_sources_ran_it():
    seen = {}
    for r in ROWS:
        want = _expected(r)
        if want is None:
            continue
        seen[want] = seen.get(want, 0) + 1
        assert r["setup"]["recompute"] == want, r["id"]
        lines = [a for a in r["assumptions"] if a.startswith("recompute:")]
        assert len(lines) == 1, (r["id"], lines)
        assert "(RECOMP" in lines[0] and HEX40.search(lines[0]), (r["id"], lines[0])
        # mapped into the schema's choice, not pending
        assert calib_setup.to_settings("training", r["setup"], r["id"]).settings["recompute"] == want, r["id"]
    assert seen == {"none": 39, "core_attn": 1}, seen
