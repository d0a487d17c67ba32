"""What to change when a configuration is infeasible (cli.advice): one sentence per violated structural
constraint, with the row's own numbers; printed by `mlsys-opt evaluate` under "feasible: NO"."""
from __future__ import annotations

import json
import types

import pandas as pd
import pytest

from mlsys_opt.catalog import load_catalog
from mlsys_opt.cli import main
from mlsys_opt.cli.advice import advice
from mlsys_opt.scenarios import schema

SPACE = {sc: types.SimpleNamespace(scenario=sc, catalog=load_catalog()) for sc in schema.SCENARIOS}


def _training_row(**kw):
    base = dict(model="llama3_70b", hardware="h100_sxm", tp=8, cp=1, pp=4, ep=1, n_accelerators=4096.0, dp=128.0,
                global_batch=64, seq_len=8192, precision="fp8", micro_batch_size=0, microbatches=0,
                accelerators_per_node=0, memory_per_accelerator_bytes=120e9)
    base.update({f"g_{n}": -1.0 for n in schema.TRAINING_CONSTRAINTS})
    base.update(kw)
    return pd.Series(base)


def test_no_advice_when_feasible():
    assert advice(_training_row(), SPACE["training"]) == []


def test_each_training_constraint_names_its_numbers_and_levers():
    row = _training_row(**{f"g_{n}": 0.5 for n in schema.TRAINING_CONSTRAINTS},
                        tp=16, pp=96, cp=3, n_accelerators=4000.0, dp=0.5, global_batch=64,
                        memory_per_accelerator_bytes=129e9, precision="int4")
    lines = advice(row, SPACE["training"])
    assert [s.split(":")[0] for s in lines] == list(schema.TRAINING_CONSTRAINTS)
    text = dict(zip(schema.TRAINING_CONSTRAINTS, lines))
    # memory: 129 GB needed at g = 0.5 -> capacity 86 GB
    assert "129.0 GB per accelerator needed" in text["memory"] and "holds 86.0 GB" in text["memory"]
    # tp·cp·pp = 16·3·96 = 4608 does not divide 4000: the nearest multiple above is 4608
    assert "tp·cp·pp = 4608 does not divide 4,000" in text["divisibility"] and "4,608" in text["divisibility"]
    assert "tp 16 is more than the 8 accelerators" in text["tp_within_node"]      # catalog: 8 per H100 node
    assert "pp 96 is more than the model's 80 layers" in text["pipeline_depth"]   # Llama 3 70B: 80 layers
    assert "64 sequences over dp = 0" in text["batch_split"] and "raise global_batch" in text["batch_split"]
    assert "no int4 path" in text["precision"] and "fp8" in text["precision"]
    assert "cp 3 does not divide the sequence length 8,192" in text["context_split"]
    assert "64 attention heads" in text["heads"] and "8 KV heads" in text["heads"]


def test_batch_split_advice_gives_the_batch_that_would_split():
    row = _training_row(dp=4096.0, global_batch=1024, tp=1, pp=1, g_batch_split=3.0)
    (line,) = advice(row, SPACE["training"])
    assert "1,024 sequences over dp = 4,096" in line and "0.25 sequences per rank" in line
    assert ">= 4,096 sequences" in line and "micro_batch_size ×" not in line
    given = row.copy()
    given["microbatches"] = 8
    (line,) = advice(given, SPACE["training"])
    assert "micro_batch_size × microbatches must be <= global_batch/dp" in line


def test_serving_queue_and_memory_advice():
    row = pd.Series(dict(model="llama3_70b", hardware="h100_sxm", tp=8, pp=1, ep=1, replicas=1.0, precision="fp16",
                         request_rate_per_s=500.0, memory_per_accelerator_bytes=90e9,
                         **{f"g_{n}": -1.0 for n in schema.SERVING_CONSTRAINTS}))
    row["g_queue_stable"], row["g_memory"] = 2.0, 0.125
    text = dict(zip(("memory", "queue_stable"), advice(row, SPACE["serving"])))
    assert "1 replica cannot keep up with 500 requests/s" in text["queue_stable"]
    assert "90.0 GB per accelerator" in text["memory"] and "holds 80.0 GB" in text["memory"]


def test_evaluate_prints_the_advice_and_json_returns_it(capsys):
    argv = ["evaluate", "--model", "llama3_8b", "--hardware", "h100_sxm", "--n-accelerators", "4096",
            "--tokens", "2e12", "--no-sensitivity"]
    assert main(argv) == 3
    out = capsys.readouterr().out
    assert "feasible: NO, violated: batch_split" in out
    assert "1,024 sequences over dp = 4,096" in out and "raise global_batch to >= 4,096 sequences" in out
    assert main(argv + ["--json"]) == 3
    data = json.loads(capsys.readouterr().out)
    assert data["feasible"] is False and len(data["advice"]) == 1 and data["advice"][0].startswith("batch_split:")


@pytest.mark.parametrize("name", schema.SERVING_CONSTRAINTS)
def test_every_serving_constraint_has_a_sentence(name):
    row = pd.Series(dict(model="mixtral_8x7b", hardware="h100_sxm", tp=16, pp=99, ep=9, replicas=3.0,
                         precision="int4", request_rate_per_s=10.0, memory_per_accelerator_bytes=1e11,
                         **{f"g_{n}": (1.0 if n == name else -1.0) for n in schema.SERVING_CONSTRAINTS}))
    (line,) = advice(row, SPACE["serving"])
    assert line.startswith(f"{name}: ") and len(line) > len(name) + 20


def test_evaluate_grid_prints_advice_for_its_infeasible_rows(capsys):
    argv = ["evaluate", "--model", "llama3_8b", "--hardware", "h100_sxm", "--n-accelerators", "1024,4096",
            "--tokens", "2e12"]
    assert main(argv) == 0                                   # one feasible configuration: exit 0
    out = capsys.readouterr().out
    assert "n_accelerators 4096: batch_split: a global batch of 1,024 sequences over dp = 4,096" in out
    assert "n_accelerators 1024:" not in out
    assert main(argv + ["--json"]) == 0
    tips = [c["advice"] for c in json.loads(capsys.readouterr().out)["configurations"]]
    assert tips[0] == "" and tips[1].startswith("batch_split:")
