"""Fidelity: published measurements -> scenario predictions -> error tables -> calibration.

Every row of ``calibration_data/measurements.json`` (Megatron-LM on up to 3,072
A100s, PaLM, BLOOM, Llama, Patterson et al. 2021, TensorRT-LLM) becomes one or
more scenario evaluations (`to_scenario`); ``calibration_data/cases.toml`` holds
what a row needs and does not print, each value with its source or marked as an
assumption.  Each compared number ("target") is predicted in the row's own
convention from the scenario outputs q::

    prediction = coef · (Σ w_num · q) / (Σ w_den · q)

    tflops_per_gpu  Megatron eq.(3) 96·B·s·l·h²·(1 + s/6h + V/16lh) / (step_time · N)
                    (hardware FLOPs incl. full recompute, Narayanan et al. 2021 §5.1)
    mfu             the scenario's own MFU (PaLM App. B: 6·N + 12·L·H·Q·T per token)
    energy_mwh      (energy_j / time_to_train_s) · published duration: the facility
    carbon_t        power (resp. carbon rate) over the run's own duration, so these
                    check the power·PUE·grid chain, not the throughput model
    gpu_hours       time_to_train_s · N / 3600  (training_days: time_to_train_s / 86400)
    ttft_ms         ttft_s of one prompt
    tok_per_s_per_gpu  TensorRT-LLM static batch: B·out / (prefill of B·in tokens
                    + out · mean decode step) / GPUs (two evaluations of the scenario)

`validate` gives a DataFrame (id, category, metric, measured, predicted,
error_pct, plus a constant-η roofline baseline: T = 6·P·D/(N·peak·η), memory
roofline for serving, N·TDP·PUE for energy, one η fitted on the same rows).
`calibrate` fits the efficiency parameters (`mlsys_opt.scenarios.efficiency`) with optax
Adam on L = mean_t (log pred_t − log meas_t)², all rows in one jitted call, over a
bounded reparametrisation (sigmoid for fractions, exp for positive values); by
default only the candidates that rows of at least two sources measure
(`identification`: each row measures the parameter of its largest elasticity).
`leave_one_out` refits with each row (or each source) held out — one vmapped
optimisation, the fitted set chosen again on each fold's training rows — and
reports the held-out error before and after.  A row whose source's own figures
disagree (cases.toml `source_inconsistent`) is reported and counted in the
targets both with and without it (`check_targets`).

Published runs with their full setup (``training_runs.json``: 208 rows, ``serving_runs.json``:
31 rows) are planned by `runs` through the mapping tables of `setup` (setup key -> scenario
parameters; parameters the scenarios do not have yet are recorded as pending and flagged);
`heldout` reports leave-one-source-out over the whole set with per-row feasibility and
bottleneck; `user` reads a user's CSV/TOML of measured runs (``--measurements``).

Modules: `rows` (measurements -> evaluations -> batch -> predictions), `report`
(validation tables, baseline, targets), `fit` (calibration, sensitivity,
leave-one-out), `files` (save / load a calibration), `setup`, `runs`, `heldout`,
`user`.  This package re-exports their public API.
"""
from __future__ import annotations

from ..scenarios.efficiency import DEFAULT_EFFICIENCY, Efficiency
from .files import load_calibration, save_calibration
from .fit import (
           FIT_PARAMS,
           MIN_SOURCES,
           Calibration,
           calibrate,
           identification,
           leave_one_out,
           sensitivity,
           synthetic_rows,
)
from .heldout import (DATASETS, Dataset, dataset, diagnostics, format_loso, format_memory_check, leave_one_source_out,
                      memory_check, step_breakdowns, summarize_loso)
from .report import (
           check_targets,
           format_validation_table,
           summarize,
           to_scenario,
           validate,
)
from .rows import (
           CASES_PATH,
           DATA_DIR,
           DEFAULT_CALIBRATION_PATH,
           FIELDS,
           MEASUREMENTS_PATH,
           METRICS,
           Batch,
           Measurement,
           Plan,
           RowPlan,
           Target,
           build,
           load_measurements,
           plan_row,
           predict,
)
from .runs import ORGANISATIONS, SERVING_RUNS_PATH, TRAINING_RUNS_PATH, Unevaluable, evaluable, load_runs
from .setup import SERVING_MAP, TRAINING_MAP, Rule, to_settings
from .user import MEASURED, read_measurements

__all__ = [
           "CASES_PATH",
           "DATA_DIR",
           "DEFAULT_CALIBRATION_PATH",
           "DEFAULT_EFFICIENCY",
           "FIELDS",
           "FIT_PARAMS",
           "MEASUREMENTS_PATH",
           "METRICS",
           "MIN_SOURCES",
           "Batch",
           "Calibration",
           "Efficiency",
           "Measurement",
           "Plan",
           "RowPlan",
           "Target",
           "build",
           "calibrate",
           "check_targets",
           "format_validation_table",
           "identification",
           "leave_one_out",
           "load_calibration",
           "load_measurements",
           "plan_row",
           "predict",
           "save_calibration",
           "sensitivity",
           "summarize",
           "synthetic_rows",
           "to_scenario",
           "validate",
           "DATASETS", "Dataset", "dataset", "diagnostics", "format_loso", "leave_one_source_out", "memory_check",
           "format_memory_check", "step_breakdowns", "summarize_loso",
           "ORGANISATIONS", "TRAINING_RUNS_PATH", "SERVING_RUNS_PATH", "Unevaluable", "evaluable", "load_runs",
           "TRAINING_MAP", "SERVING_MAP", "Rule", "to_settings", "MEASURED", "read_measurements",
]
