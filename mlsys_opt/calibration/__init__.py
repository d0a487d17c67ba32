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

Modules: `rows` (measurements -> evaluations -> batch -> predictions), `report`
(validation tables, baseline, targets), `fit` (calibration, sensitivity,
leave-one-out), `files` (save / load a calibration).  This package re-exports
their public API.
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
from .report import check_targets, format_validation_table, summarize, to_scenario, validate
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

__all__ = ["Measurement", "Target", "RowPlan", "Plan", "Batch", "Calibration", "METRICS", "FIELDS",
           "FIT_PARAMS", "MIN_SOURCES", "identification", "load_measurements", "plan_row", "build", "predict",
           "to_scenario", "validate", "summarize", "check_targets", "format_validation_table", "calibrate", "sensitivity",
           "leave_one_out", "synthetic_rows", "save_calibration", "load_calibration", "DATA_DIR",
           "MEASUREMENTS_PATH", "CASES_PATH", "DEFAULT_CALIBRATION_PATH", "Efficiency", "DEFAULT_EFFICIENCY"]
