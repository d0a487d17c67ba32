"""The scenario NamedTuples and schema.py name exactly the same things, both ways."""
import numpy as np
import pytest

from mlsys_opt import scenarios
from mlsys_opt.scenarios import schema
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY, Efficiency

PAIRS = [
    ("TrainingParams", scenarios.TrainingParams, tuple(schema.TRAINING_PARAMS)),
    ("ServingParams", scenarios.ServingParams, tuple(schema.SERVING_PARAMS)),
    ("TrainingOutputs", scenarios.TrainingOutputs, tuple(schema.TRAINING_OUTPUTS)),
    ("ServingOutputs", scenarios.ServingOutputs, tuple(schema.SERVING_OUTPUTS)),
    ("TrainingConstraints", scenarios.TrainingConstraints, schema.TRAINING_CONSTRAINTS),
    ("ServingConstraints", scenarios.ServingConstraints, schema.SERVING_CONSTRAINTS),
]


@pytest.mark.parametrize("name,cls,keys", PAIRS, ids=[p[0] for p in PAIRS])
def test_fields_equal_schema_keys(name, cls, keys):
    fields = set(cls._fields)
    missing = set(keys) - fields
    extra = fields - set(keys)
    assert not missing, f"{name} lacks schema keys {sorted(missing)}"
    assert not extra, f"{name} has fields not in the schema {sorted(extra)}"
    assert len(cls._fields) == len(keys)


def test_same_order_as_schema():
    # The sweep stacks these columns in field order; keep it the schema's order.
    for name, cls, keys in PAIRS:
        assert tuple(cls._fields) == tuple(keys), name


def test_scenario_registry():
    assert set(scenarios.SCENARIO_FNS) == set(schema.SCENARIOS)
    assert scenarios.PARAMS_TYPES["training"] is scenarios.TrainingParams
    assert scenarios.PARAMS_TYPES["serving"] is scenarios.ServingParams


def test_int_coded_params_match_schema_kinds():
    for scen, table in schema.PARAMS.items():
        coded = {k for k, spec in table.items() if spec.kind in ("catalog", "choice")}
        assert set(scenarios.INT_PARAMS[scen]) == coded, scen


def test_efficiency_is_flat_float_pytree():
    import jax

    leaves = jax.tree_util.tree_leaves(DEFAULT_EFFICIENCY)
    assert len(leaves) == len(Efficiency._fields)
    assert all(isinstance(x, float) for x in leaves)


def test_params_from_dict_round_trip_and_errors():
    from mlsys_opt.errors import MlsysOptError

    values = {k: 1 for k in schema.TRAINING_PARAMS}
    p = scenarios.params_from_dict("training", values)
    assert isinstance(p, scenarios.TrainingParams)
    assert str(p.hardware.dtype) == "int32" and p.tp.dtype.kind == "f"
    bad = dict(values)
    bad.pop("hardware")                 # a catalog parameter has no plain default: required
    with pytest.raises(MlsysOptError, match="missing hardware"):
        scenarios.params_from_dict("training", bad)
    # a parameter with a plain default (int, unit-less float, choice) takes it, broadcast to the batch
    batch = {k: np.ones(3) for k in schema.TRAINING_PARAMS if k not in ("tp", "attention")}
    q = scenarios.params_from_dict("training", batch)
    assert q.tp.shape == (3,) and np.all(np.asarray(q.tp) == schema.TRAINING_PARAMS["tp"].default)
    assert np.all(np.asarray(q.attention) == schema.TRAINING_PARAMS["attention"].choices.index(
        schema.TRAINING_PARAMS["attention"].default)) and q.attention.dtype == np.int32
    with pytest.raises(MlsysOptError, match="did you mean"):
        scenarios.params_from_dict("training", {**values, "tpp": 2})
    with pytest.raises(MlsysOptError, match="scenario"):
        scenarios.params_from_dict("trainin", values)
