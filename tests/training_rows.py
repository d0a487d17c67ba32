"""Training-scenario rows for tests: a parameter dict per row, stacked into a padded batch, and the
jax.grad vs central-difference check of log(step time) that every new training term needs."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt import scenarios as S
from mlsys_opt._compile import jit_options
from mlsys_opt.catalog import load_catalog
from mlsys_opt.scenarios.training import training_common
from mlsys_opt.scenarios import training_comm as tcomm
from mlsys_opt.scenarios import training_parts as tparts
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
from mlsys_opt.scenarios.schema import TRAINING_PARAMS

CAT = load_catalog()
# the parameters without a plain schema default (catalog rows, quantities with units), in SI
REQUIRED = dict(region=CAT.index("regions", "us_avg"), depreciation=3 * 365.25 * 86400.0, n_tokens=1e12,
                checkpoint_interval=0.0, checkpoint_bw=100e9, recovery=600.0)


def row(hardware_name: str, model_name: str, fabric_name: str, **kw) -> dict:
    """One row: every schema parameter (plain defaults, REQUIRED), the named catalog entries, then kw
    (which may override any of them, catalog parameters as indices)."""
    d = {k: v for k, v in ((k, S._plain_default(spec)) for k, spec in TRAINING_PARAMS.items()) if v is not None}
    d.update(REQUIRED, hardware=CAT.index("accelerators", hardware_name), model=CAT.index("models", model_name),
             fabric=CAT.index("fabrics", fabric_name))
    d.update(kw)
    assert set(d) == set(TRAINING_PARAMS), set(TRAINING_PARAMS) ^ set(d)
    return d


def stack(rows, pad: int):
    """TrainingParams of the rows, padded with copies of the first to `pad` (one compiled shape)."""
    rows = list(rows) + [rows[0]] * (pad - len(rows))
    return S.params_from_dict("training", {k: np.asarray([r[k] for r in rows]) for k in rows[0]})


def evaluate(train, rows, pad: int, tables):
    """train(stack(rows, pad), tables) as numpy dicts of (outputs, constraints), the first len(rows) rows."""
    o, g = train(stack(rows, pad), tables)
    n = len(rows)
    return ({k: np.asarray(v)[:n] for k, v in o._asdict().items()},
            {k: np.asarray(v)[:n] for k, v in g._asdict().items()})


def check_step_time_grad(base: dict, names, tables, *, rel=1e-4, h_rel=1e-6) -> np.ndarray:
    """jax.grad of log(step_time_s) wrt the named float parameters at `base` against central
    differences (step h_rel·max(|x|, 1e-4)); returns the gradient."""
    p0 = S.params_from_dict("training", base)

    def loss(x):
        q = p0._replace(**{k: x[i] for i, k in enumerate(names)})
        return jnp.log(S.training(q, tables)[0].step_time_s)

    x0 = jnp.asarray([float(base[k]) for k in names])
    vg = jax.jit(jax.value_and_grad(loss), **jit_options())     # as the package's derivative programs
    grad = np.asarray(vg(x0)[1])
    for i, k in enumerate(names):
        h = h_rel * max(abs(float(x0[i])), 1e-4)
        fd = (float(vg(x0.at[i].add(h))[0]) - float(vg(x0.at[i].add(-h))[0])) / (2 * h)
        assert np.isfinite(grad[i])
        assert grad[i] == pytest.approx(fd, rel=rel, abs=1e-9), k
    return grad


def check_batched_equals_scalar(rows, run):
    """run(rows) -> (outputs, constraints) dicts of arrays: every row of the batch equals the row run
    alone (padded with copies of itself: the same compiled shape), and every output is finite."""
    ob, gb = run(rows)
    for i, r in enumerate(rows):
        os_, gs = run([r])
        for k in ob:
            np.testing.assert_allclose(ob[k][i], os_[k][0], rtol=1e-12, err_msg=k)
            assert np.isfinite(ob[k][i]), k
        for k in gb:
            np.testing.assert_allclose(gb[k][i], gs[k][0], rtol=1e-12, err_msg=k)
    return ob, gb


def check_table_grad(base: dict, tables, with_value, x0: float, *, rel=1e-4, h_rel=1e-6) -> float:
    """jax.grad of log(step_time_s) at `base` wrt one catalog-table value against central differences:
    with_value(tables, x) returns the tables with that value set to x (e.g. one part's HBM bandwidth);
    returns the gradient."""
    p0 = S.params_from_dict("training", base)
    vg = jax.jit(jax.value_and_grad(lambda x: jnp.log(S.training(p0, with_value(tables, x))[0].step_time_s)),
                 **jit_options())
    g = float(vg(x0)[1])
    h = h_rel * x0
    fd = (float(vg(x0 + h)[0]) - float(vg(x0 - h)[0])) / (2 * h)
    assert np.isfinite(g) and g == pytest.approx(fd, rel=rel)
    return g


def breakdown(rows, pad: int, tables, eff=None):
    """The training scenario's pieces for the rows at their given micro_batch_size b: (params, Common, Setup,
    Memory, Compute, Comm, M), with the catalog rows as S.training reads them (training_common)."""
    eff = DEFAULT_EFFICIENCY if eff is None else eff
    p = stack(rows, pad)
    c = training_common(p, tables, eff)
    s = tparts.setup(p, c, eff, tables.model.vocab_size[jnp.asarray(p.model, jnp.int32)])
    b = p.micro_batch_size * 1.0
    mb = jnp.maximum(s.gb / s.dp / b, 1.0)
    mem = tparts.memory(p, c, s, b, mb)
    cmp = tparts.compute(p, c, eff, s, mem, b, mb)
    return p, c, s, mem, cmp, tcomm.communication(p, c, eff, s, cmp, b, mb), mb
