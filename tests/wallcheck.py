"""Shared checks for the wall tests (tests/test_walls_*.py).

A plain module, imported as ``from wallcheck import ...`` (tests/conftest.py puts
tests/ on sys.path). ONE batched-vs-scalar check, ``assert_batched_equals_scalar(fn, *cols)``
(jit == vmap == lax.map row by row == scalar rows through the same jitted function with one
trace == un-jitted scalar calls); ``check_case(CASES, name)`` feeds it jax-random columns from
a CASES table of ``name -> (fn, [(lo, hi, log), ...])`` (node, data, laws).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import settings

B = 10_000  # rows in a batched-vs-scalar check
PROP = settings(max_examples=50, deadline=None)


# ----------------------------------------------------------------------------- small asserts

def close(x, want, rtol=1e-12, atol=0.0):
    np.testing.assert_allclose(np.asarray(x), want, rtol=rtol, atol=atol)


def all_finite(tree):
    return all(bool(np.all(np.isfinite(np.asarray(leaf, dtype=float))))
               for leaf in jax.tree_util.tree_leaves(tree))


def assert_grad_matches_fd(f, x, rtol=1e-6, atol=1e-14):
    """jax.grad of a scalar function equals a central finite difference (float64).

    h = 1e-6·|x| (1e-6 at x = 0). Returns the gradient.
    """
    return assert_derivative_matches_fd(float(jax.grad(f)(float(x))), f, x, rtol=rtol, atol=atol)


def assert_derivative_matches_fd(g, f, x, rtol=1e-6, atol=1e-14):
    """A derivative g of f at x, computed elsewhere by jax (e.g. one jax.jacrev for several
    inputs and outputs: one compile), equals f's central finite difference as in
    :func:`assert_grad_matches_fd`. Returns g."""
    x, g = float(x), float(g)
    h = 1e-6 * abs(x) if x != 0 else 1e-6
    fd = (float(f(x + h)) - float(f(x - h))) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=rtol, atol=atol)
    assert np.isfinite(g)
    return g


def fd_check(f, x, rtol=1e-6):
    """:func:`assert_grad_matches_fd` with no absolute slack (atol = 0)."""
    return assert_grad_matches_fd(f, x, rtol=rtol, atol=0.0)


def fd_check_derivative(g, f, x, rtol=1e-6):
    """:func:`assert_derivative_matches_fd` with no absolute slack (atol = 0)."""
    return assert_derivative_matches_fd(g, f, x, rtol=rtol, atol=0.0)


# ----------------------------------------------------------------------------- samplers

def jax_uniform(key, n, lo, hi, log=False):
    """[n] uniform (log-uniform when ``log``) draws in [lo, hi) from a jax PRNG key."""
    if log:
        return jnp.exp(jax.random.uniform(key, (n,), minval=math.log(lo), maxval=math.log(hi)))
    return jax.random.uniform(key, (n,), minval=lo, maxval=hi)


class Sampler:
    """Uniform / log-uniform [B] columns from one seeded numpy Generator (``.rng``)."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def u(self, lo, hi, n=B):
        return jnp.asarray(self.rng.uniform(lo, hi, n))

    def logu(self, lo, hi, n=B):
        return jnp.asarray(np.exp(self.rng.uniform(np.log(lo), np.log(hi), n)))


# ----------------------------------------------------------------------------- batched == scalar

def check_case(cases, name, n=10_000, rtol=1e-12):
    """One CASES entry (``name -> (fn, [(lo, hi, log), ...])``): n jax-random rows through
    :func:`assert_batched_equals_scalar`, outputs finite."""
    fn, spec = cases[name]
    keys = jax.random.split(jax.random.PRNGKey(len(name)), len(spec))
    args = [jax_uniform(k, n, lo, hi, bool(log)) for k, (lo, hi, log) in zip(keys, spec)]
    assert_batched_equals_scalar(fn, *args, rtol=rtol, atol=0.0, finite=True)


def assert_batched_equals_scalar(fn, *cols, rtol=1e-10, atol=1e-300, finite=False):
    """THE batched-vs-scalar check: jit(fn) over [n] columns equals jit(vmap(fn)), fn row by
    row (lax.map sees scalars), 20 scalar rows through the SAME jitted function (exactly one
    trace for them all) and three plain un-jitted scalar calls; optionally all finite."""
    n = len(cols[0])
    traces = []

    def counted(*a):
        traces.append(1)
        return fn(*a)

    jf = jax.jit(counted)
    batched = jf(*cols)
    leaves = jax.tree_util.tree_leaves(batched)
    for b in leaves:
        assert np.shape(b) == (n,)
    others = (jax.jit(jax.vmap(fn))(*cols), jax.jit(lambda *c: jax.lax.map(lambda row: fn(*row), c))(*cols))
    for other in others:
        for b, r in zip(leaves, jax.tree_util.tree_leaves(other)):
            np.testing.assert_allclose(np.asarray(b), np.asarray(r), rtol=rtol, atol=atol)
    if finite:
        assert all_finite(batched)
    traces.clear()
    for i in range(0, n, max(1, n // 20)):     # scalar rows through the jitted function: one trace
        for b, o in zip(leaves, jax.tree_util.tree_leaves(jf(*[c[i] for c in cols]))):
            np.testing.assert_allclose(np.asarray(o), np.asarray(b)[i], rtol=rtol, atol=atol)
    assert len(traces) == 1
    for i in (0, n // 2, n - 1):                # and the plain (un-jitted) scalar call
        one = fn(*(float(c[i]) for c in cols))
        for b, o in zip(leaves, jax.tree_util.tree_leaves(one)):
            np.testing.assert_allclose(float(np.asarray(b)[i]), float(o), rtol=rtol, atol=atol)
