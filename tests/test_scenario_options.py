"""Trace-time shortcuts of the scenarios give the same numbers as the general path.

- `walls._masked.scenario_inputs`: the walls traced without their NaN / negative-input
  guards equal the guarded walls on finite, non-negative inputs (values and gradients),
  and the guards still act outside it.
- `scenarios.static_options`: `auto_micro_batch=False` (one micro-batch geometry) equals the
  candidate-set path on rows that give micro_batch_size or microbatches; the sweep derives
  the option from its axes and constants.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import mlsys_opt as mo
from mlsys_opt import scenarios as S
from mlsys_opt.sweeps.api import scenario_options
from mlsys_opt.walls import _masked, fleet, node, ops


def _walls(x):
    rl = node.roofline(x * 1e12, x * 1e9, 989e12, 3.35e12, efficiency=0.5, dispatch_tax_s=1e-6)
    ar = fleet.hierarchical_allreduce(x * 1e6, 8.0, 4.0, 450e9, 1e-6, 50e9, 5e-6)
    gp = ops.goodput(3600.0, x * 10.0, 86400.0, recovery_s=600.0)
    return rl.latency_s + ar + gp


def test_trusted_walls_equal_guarded_walls_on_valid_inputs():
    x = jnp.array([0.0, 1e-3, 1.0, 7.5, 1e4])

    def trusted(v):
        with _masked.scenario_inputs():
            return _walls(v)

    np.testing.assert_allclose(trusted(x), _walls(x), rtol=1e-12)
    g_trusted = jax.vmap(jax.grad(trusted))(x[1:])
    g_guarded = jax.vmap(jax.grad(_walls))(x[1:])
    np.testing.assert_allclose(g_trusted, g_guarded, rtol=1e-12)
    # outside the switch the guards are back: a negative input is NaN, not a plausible number
    assert np.isnan(node.roofline(-1.0, 1.0, 1.0, 1.0).latency_s)
    with _masked.scenario_inputs():
        assert _masked._trusted()
    assert not _masked._trusted()


def test_trusted_safe_div_has_finite_gradients_where_it_fills():
    """den <= 0 inside scenario_inputs: the quotient is capped at UNBOUNDED and its gradient is 0, not NaN
    (the floor is a select: jnp.maximum's derivative multiplied the clip's zero cotangent by -num/1e-60 = inf).
    An unstable M/G/c queue (λ = 0.1/s against μ = 0.0587/s on one server: a batch-1 replica whose request
    takes 17 s, AMD's vLLM latency rows at the 0.1/s placeholder rate) waits UNBOUNDED with zero gradients."""
    from mlsys_opt.walls import queueing

    def trusted(f):
        def g(v):
            with _masked.scenario_inputs():
                return f(v)
        return g

    for den in (0.0, -1.0, 1e-35):
        q, g = jax.value_and_grad(trusted(lambda d: _masked.safe_div(jnp.float32(1.0), d, fill=_masked.UNBOUNDED)))(
            jnp.float32(den))
        assert float(q) == float(jnp.float32(_masked.UNBOUNDED)) and float(g) == 0.0
    for field in ("mean_wait_s", "wait_p50_s", "wait_p99_s"):
        g = jax.grad(trusted(lambda v: getattr(queueing.mgc_queue(jnp.float32(0.1), v[0], jnp.float32(1.0), v[1]),
                                                field)))(jnp.asarray([0.0587, 0.3], jnp.float32))
        assert np.all(np.asarray(g) == 0.0), field


def test_static_options_from_possible_values():
    assert S.static_options("serving", {}) == {}
    # cp / tp_comm / pipeline_engine / param_sync unknown: the CP, PyTorch TP, DeepSpeed and broadcast terms traced
    cp = {"context_parallel": True, "torch_tp": True, "deepspeed_engine": True, "param_broadcast": True,
          "dualpipe": True}
    assert S.static_options("training", {}) == {"auto_micro_batch": True, **cp}
    assert S.static_options("training", {"microbatches": [4, 8]}) == {"auto_micro_batch": False, **cp}
    assert S.static_options("training", {"microbatches": [0, 8]}) == {"auto_micro_batch": True, **cp}
    assert S.static_options("training", {"microbatches": [0], "micro_batch_size": [1, 2]}) == \
        {"auto_micro_batch": False, **cp}
    assert S.static_options("training", {"cp": [1]}) == {"auto_micro_batch": True, **cp, "context_parallel": False}
    assert S.static_options("training", {"tp_comm": [0]})["torch_tp"] is False          # ASYNCTP
    assert S.static_options("training", {"tp_comm": [0, 2]})["torch_tp"] is True
    assert S.static_options("training", {"pipeline_engine": [0]})["deepspeed_engine"] is False     # DSPIPE
    assert S.static_options("training", {"pipeline_engine": [0, 2]})["deepspeed_engine"] is True
    assert S.static_options("training", {"param_sync": [0]})["param_broadcast"] is False            # INTERNEVO
    assert S.static_options("training", {"param_sync": [1]})["param_broadcast"] is True
    assert S.static_options("training", {"pp_schedule": [0]})["dualpipe"] is False                  # DUALPIPE
    assert S.static_options("training", {"pp_schedule": [0, 1]})["dualpipe"] is True
    assert S.static_options("training", {"cp": [1, 4]}) == {"auto_micro_batch": True, **cp}


def _space(microbatches):
    return mo.load_space({
        "name": "opts", "scenario": "training",
        "fixed": {"model": "llama3_8b", "n_tokens": "1e12 token", "fabric": "ib_ndr", "global_batch": 512,
                  "seq_len": 4096},
        "axes": {"hardware": ["h100_sxm", "a100_80gb"], "n_accelerators": [64, 256], "tp": [1, 2, 4],
                 "pp": [1, 2], "microbatches": microbatches, "precision": ["fp16", "fp8"]},
        "objectives": {"minimize": ["time_to_train_s", "tco_usd"]}})


def test_one_geometry_equals_the_candidate_set_when_the_space_gives_it():
    space = _space([2, 4, 8])
    off = {"context_parallel": False, "torch_tp": False,      # cp 1 fixed, tp_comm default,
           "deepspeed_engine": False, "param_broadcast": False,     # Megatron's pipeline, all-gather sync
           "dualpipe": False}                                       # 1F1B
    assert scenario_options(space) == {"auto_micro_batch": False, **off}
    assert scenario_options(_space([0, 4])) == {"auto_micro_batch": True, **off}
    digits = np.stack(np.meshgrid(*[np.arange(r) for r in space.radices], indexing="ij"), -1).reshape(
        -1, len(space.radices)).astype(np.int32)
    p = S.params_from_dict("training", space.param_values(jnp.asarray(digits), jnp.float64))
    tables = space.catalog.tables(dtype=jnp.float64) if space.catalog is not None else \
        mo.catalog.load_catalog().tables(dtype=jnp.float64)
    one_o, one_g = S.training(p, tables, auto_micro_batch=False)
    all_o, all_g = S.training(p, tables, auto_micro_batch=True)
    for name in one_o._fields:
        np.testing.assert_allclose(getattr(one_o, name), getattr(all_o, name), rtol=1e-12, err_msg=name)
    for name in one_g._fields:
        np.testing.assert_allclose(getattr(one_g, name), getattr(all_g, name), rtol=1e-12, err_msg=name)


def test_the_table_evaluator_groups_rows_by_every_parameter_the_options_read():
    """point.table_eval groups a table's rows by the parameters static_options reads; one left out makes
    every table trace the terms that option leaves out (tp_comm: the PyTorch TP terms, ~10 % of a
    training row's work)."""
    from mlsys_opt.point.table_eval import OPTION_PARAMS
    from mlsys_opt.scenarios import static_options

    class Reads(dict):
        def get(self, key, default=None):
            seen.add(key)
            return super().get(key, default)

    for scenario in ("training", "serving"):
        seen: set = set()
        static_options(scenario, Reads())
        assert seen <= set(OPTION_PARAMS.get(scenario, ())), (scenario, seen)
    assert "tp_comm" in OPTION_PARAMS["training"]
