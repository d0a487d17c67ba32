"""The sweep-scale sensitivity kernel (issue 15 item 6) equals the straightforward one.

- ``point.linear.jvp_columns`` (one JVP per input on a shared linearization, skipping what an
  input does not reach; grouped under a program-size budget) equals ``jax.jacfwd`` on a toy
  function with the constructs the scenarios use: ``jit`` calls, a ``cond`` (as
  ``scenarios.parts.materialized``), ``where``, integer gathers, inputs of several shapes;
- on the training scenario the sparse kernel equals ``jax.jacfwd`` (method "dense"), the
  batch equals its configurations one by one, the static scenario options (one micro-batch
  geometry when the space fixes ``microbatches``) equal the automatic ones, and the
  per-configuration-tables form kept for ``point.table_eval`` equals the batch kernel.
The elasticities themselves are checked against finite differences in tests/test_sensitivity.py,
which also checks the sparse kernel on the serving scenario against jacfwd.
Float64 (tests/conftest.py); one input subset so the compilations stay small.
"""
from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt.point.config import gather_local, resolve_config
from mlsys_opt.point.linear import (
    ZERO,
    eval_linear,
    jvp_columns,
    nonzero_pattern,
    plan_groups,
)
from mlsys_opt.scenarios.efficiency import DEFAULT_EFFICIENCY
from mlsys_opt.space.spec import load_space

sens = importlib.import_module("mlsys_opt.point.sensitivity")     # the package re-exports a function

# a few inputs of every kind: table fields (one a per-precision row), float parameters, efficiency leaves
INPUTS = ("hardware.peak_flop_per_s", "hardware.mem_bw_bytes_per_s", "hardware.price_usd", "fabric.bw_bytes_per_s",
          "region.carbon_gco2e_per_kwh", "n_tokens", "overlap", "eff.mem_bw_eff", "eff.active_power_frac")


# --------------------------------------------------------------------------- point.linear on a toy function

@jax.jit
def _inner(a, b):
    return jnp.where(a > 1.0, a * b, a + b)


def _toy(table, scale, vec, codes):
    """table [4, 3], scale [], vec [n], codes int [n] -> [n, 3] (gathers, a jit call, a cond, a where)."""
    row = table[codes]                                            # [n, 3]
    s = _inner(row[:, 0] * scale, vec)                            # [n]
    keep = jnp.sum(codes[:1]) >= 0                                # never false: a fusion boundary, as materialized
    s = jax.lax.cond(keep, lambda x: x, lambda x: jnp.zeros_like(x), s)
    free = vec * 2.0                                              # reaches only the last output
    return jnp.stack([s * row[:, 1], jnp.sin(row[:, 2]) + s, free * free], axis=1)


def _toy_args():
    table = jnp.asarray(np.arange(1.0, 13.0).reshape(4, 3) / 7.0)
    return table, jnp.asarray(1.7), jnp.asarray([0.5, 2.0, 3.0, 0.25, 1.5]), jnp.asarray([0, 3, 1, 3, 2], jnp.int32)


@pytest.mark.parametrize("budget", [None, 4.0, 1.0])
def test_jvp_columns_equal_jacfwd_on_a_toy(budget):
    table, scale, vec, codes = _toy_args()
    primals = (table, scale, vec)
    tangents = (table, jnp.asarray(1.0), vec)                     # scale by the value, as the kernel does

    @jax.jit
    def sparse(table, scale, vec):
        out, cols, _ = jvp_columns(lambda *a: _toy(*a, codes), (table, scale, vec),
                                   (table, jnp.asarray(1.0), vec), budget=budget)
        return out, [jnp.zeros_like(out) if c is ZERO else c for c in cols]

    out, cols = sparse(*primals)
    ref = [jax.jvp(lambda x, k=k: _toy(*[x if j == k else p for j, p in enumerate(primals)], codes),
                   (primals[k],), (tangents[k],))[1] for k in range(3)]
    np.testing.assert_allclose(out, _toy(*primals, codes), rtol=1e-15)
    for k in range(3):
        np.testing.assert_allclose(cols[k], ref[k], rtol=1e-13, atol=1e-15)
    # and the whole Jacobian along the scaled directions equals jax.jacfwd's
    D = jax.jacfwd(lambda d: _toy(table * (1 + d[0]), scale + d[1], vec * (1 + d[2]), codes))(jnp.zeros(3))
    np.testing.assert_allclose(jnp.stack(cols, axis=2), D, rtol=1e-13, atol=1e-15)


def test_columns_skip_what_an_input_does_not_reach():
    """The table and the scale do not reach the third output; the linear map's pattern says so."""
    table, scale, vec, codes = _toy_args()
    _, lin = jax.linearize(lambda *a: _toy(*a, codes), table, scale, vec)
    closed = jax.make_jaxpr(lin)(table, scale, vec)
    assert nonzero_pattern(closed.jaxpr, [True, False, False]) == [True]
    assert nonzero_pattern(closed.jaxpr, [False, False, False]) == [False]
    (col,) = eval_linear(closed.jaxpr, closed.consts, [ZERO, ZERO, ZERO])
    assert col is ZERO
    (col,) = eval_linear(closed.jaxpr, closed.consts, [ZERO, jnp.asarray(1.0), ZERO])
    assert np.all(np.asarray(col)[:, 2] == 0) and np.any(np.asarray(col)[:, 0] != 0)
    # grouping: a budget of 1 (jacfwd's program size) puts every input in one group; no budget, one each
    assert sorted(map(len, plan_groups(closed.jaxpr, 3, 1.0))) == [3]
    assert plan_groups(closed.jaxpr, 3, 100.0) == [[0], [1], [2]]


# --------------------------------------------------------------------------- the training kernel

@pytest.fixture(scope="module")
def capstone():
    """Six capstone configurations and their sensitivities: static options (the default), jacfwd, automatic."""
    space = load_space("capstone")
    rng = np.random.default_rng(1)
    digits = np.column_stack([rng.integers(0, r, 6) for r in space.radices]).astype(np.int32)
    run = {m: sens.sensitivity_arrays(space, digits, parameters=INPUTS, **kw)
           for m, kw in (("sparse", {"method": "sparse"}), ("dense", {"method": "dense"}),
                         ("auto", {"options": {}, "method": "sparse"}))}
    return space, digits, run


def _same(a, b, rtol=1e-10):
    np.testing.assert_allclose(a.y, b.y, rtol=rtol)
    np.testing.assert_allclose(a.value, b.value, rtol=rtol)
    np.testing.assert_allclose(a.elasticity, b.elasticity, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(a.derivative, b.derivative, rtol=rtol, atol=1e-12 * np.abs(b.derivative).max())
    np.testing.assert_allclose(a.G, b.G, rtol=rtol, atol=1e-12)


def test_sparse_equals_jacfwd_and_batch_equals_one_by_one(capstone):
    space, digits, run = capstone
    s = run["sparse"]
    assert s.elasticity.shape == (6, len(s.outputs), len(INPUTS)) and s.elasticity.dtype == np.float64
    assert np.all(np.isfinite(s.elasticity)) and np.any(s.elasticity != 0)
    _same(s, run["dense"])
    for i in (0, 3, 5):
        one = sens.sensitivity_arrays(space, digits[i:i + 1], parameters=INPUTS, method="sparse")
        np.testing.assert_allclose(one.elasticity[0], s.elasticity[i], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(one.derivative[0], s.derivative[i], rtol=1e-12)
    # chunks: the same numbers in pieces of 8 rows (two kernel calls, the last padded)
    many = np.concatenate([digits, digits[::-1]])
    np.testing.assert_allclose(sens.sensitivity_arrays(space, many, parameters=INPUTS, chunk=8,
                                                       method="sparse").elasticity,
                               np.concatenate([s.elasticity, s.elasticity[::-1]]), rtol=1e-12, atol=1e-15)


def test_static_options_equal_the_automatic_micro_batch(capstone):
    """The capstone fixes `microbatches` on every axis value: the kernel traces one micro-batch geometry
    (scenarios.static_options); the automatic candidate set must give the same numbers."""
    space, _, run = capstone
    from mlsys_opt.sweeps.api import scenario_options
    assert scenario_options(space) == {"auto_micro_batch": False, "context_parallel": True,   # cp is an axis
                                       "torch_tp": False, "deepspeed_engine": False,      # tp_comm, pipeline_engine
                                       "param_broadcast": False,                          # param_sync and
                                       "dualpipe": False}                                 # pp_schedule default
    _same(run["sparse"], run["auto"])


def test_local_tables_kernel_equals_batch_kernel(capstone):
    """`_kernel` (rows gathered per configuration, as point.table_eval calls it) = the batch kernel."""
    space, digits, run = capstone
    dtype = jnp.float64
    _, _, p, catalog = resolve_config(space, digits, dtype)
    tables = catalog.tables(dtype=dtype)
    eff = type(DEFAULT_EFFICIENCY)(*[jnp.asarray(x, dtype) for x in DEFAULT_EFFICIENCY])
    kernel = sens._kernel("training", INPUTS, dtype, {"auto_micro_batch": False})
    y, value, deriv, elast, g = kernel(p, gather_local(tables, p), eff, jnp.asarray(p["precision"], jnp.int32))
    s = run["sparse"]
    np.testing.assert_allclose(y, s.y, rtol=1e-12)
    np.testing.assert_allclose(value, s.value, rtol=1e-12)
    np.testing.assert_allclose(elast, s.elasticity, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(deriv, s.derivative, rtol=1e-12)
    np.testing.assert_allclose(g, s.G[:, :g.shape[1]], rtol=1e-12, atol=1e-15)


def test_float32_elasticities_only_and_unknown_method_raises(capstone):
    space, digits, _ = capstone
    with pytest.raises(Exception, match="method 'reverse' is not known"):
        sens.sensitivity_arrays(space, digits, parameters=INPUTS, method="reverse")
    s = sens.sensitivity_arrays(space, digits[:2], parameters=INPUTS[:3], dtype=jnp.float32, derivative=False,
                                method="sparse")
    assert s.elasticity.dtype == np.float32 and s.y.dtype == np.float32 and s.value.dtype == np.float32
    assert s.derivative is None                       # elasticities only, as asked
    ref = capstone[2]["sparse"]
    np.testing.assert_allclose(s.elasticity, ref.elasticity[:2, :, :3], rtol=2e-4, atol=1e-6)


# --------------------------------------------------------------------------- "auto"

def test_auto_takes_dense_for_few_configurations_and_sparse_for_many(capstone, monkeypatch):
    space, digits, run = capstone
    seen = []
    kernel = sens._packed_kernel
    monkeypatch.setattr(sens, "_packed_kernel", lambda *a: seen.append(a[4]) or kernel(*a))
    monkeypatch.setattr(sens, "AUTO_SPARSE_ROWS", 4)
    few = sens.sensitivity_arrays(space, digits[:3], parameters=INPUTS)
    many = sens.sensitivity_arrays(space, digits, parameters=INPUTS)
    assert seen == ["dense", "sparse"]
    _same(few, _rows(run["sparse"], 3))
    _same(many, run["sparse"])


def _rows(s, k):
    """The first k configurations of a Sensitivities."""
    return s._replace(y=s.y[:k], value=s.value[:k], derivative=s.derivative[:k], elasticity=s.elasticity[:k],
                      G=s.G[:k])
