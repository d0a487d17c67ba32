"""Jacobian columns of a linearized function, one input at a time, skipping what is zero.

``jax.jacfwd`` pushes a dense tangent basis (one column per input) through every
operation of a function: the cost is n_inputs × (the tangent work of the whole
function).  Most inputs of a scenario reach only part of it (a region's carbon
intensity touches one multiplication; a price two; the efficiency leaves the
step-time expression), so this module evaluates the LINEAR map of
``jax.linearize`` once per input with the other inputs' tangents held as a
symbolic zero (:data:`ZERO`): an operation whose linear operands are all zero
is skipped, its outputs are zero.  The primal is computed once and shared
(the residuals of ``jax.linearize``).  Column k is then the JVP along input k
alone, J·e_k, with the cost of the operations input k reaches:

    cost ≈ primal + Σ_k |reach(k)|     (jacfwd: primal + n_inputs · |all|)

(training scenario, 55 inputs: XLA cost analysis ~250k → ~14k element
operations per configuration).

Why skipping is exact: every equation of a linear jaxpr is linear in its linear
operands (the tangents; constants are the primal residuals), so zero operands
give zero outputs.  Sub-jaxprs are followed: ``jit`` calls are inlined, the
branches of a ``cond`` are evaluated sparsely inside a new ``lax.switch`` that
returns only the outputs some branch can make nonzero (dependency pattern of
:func:`nonzero_pattern`).  Equations with integer or boolean outputs, and
every other higher-order primitive (scan, while, ...), are bound as they are
with explicit zeros for the zero operands (correct, just not sparse).

Source: Griewank & Walther, "Evaluating Derivatives" (2008), ch. 7 (sparse
Jacobians: propagating only the structurally nonzero tangent entries);
JAX's own symbolic zeros (``ad.Zero``) applied to an already linearized map.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

__all__ = ["ZERO", "dense", "eval_linear", "jvp_columns", "nonzero_pattern", "plan_groups", "reach"]

_CALLS = ("jit", "pjit", "closed_call", "core_call")


class _Zero:
    """The symbolic zero tangent (an array of zeros that is never built)."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "ZERO"


ZERO = _Zero()


def _inner(eqn):
    """The ClosedJaxpr a call-like equation runs (inlined), else None."""
    if eqn.primitive.name in _CALLS:
        j = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
        if isinstance(j, jcore.ClosedJaxpr):
            return j
        if isinstance(j, jcore.Jaxpr):
            return jcore.ClosedJaxpr(j, ())
    return None


def _inexact(v) -> bool:
    return jnp.issubdtype(v.aval.dtype, jnp.inexact)


def nonzero_pattern(jaxpr, nonzero_in: Sequence[bool]) -> list[bool]:
    """Which outputs of a linear jaxpr can be nonzero when the inputs flagged True can (the rest are 0)."""
    nz = dict(zip(jaxpr.invars, nonzero_in))

    def get(v):
        return (not isinstance(v, jcore.Literal)) and nz.get(v, False)

    for e in jaxpr.eqns:
        ins = [get(v) for v in e.invars]
        inner = _inner(e)
        if inner is not None:
            outs = nonzero_pattern(inner.jaxpr, ins)
        elif e.primitive.name == "cond":
            outs = [False] * len(e.outvars)
            for br in e.params["branches"]:
                outs = [a or b for a, b in zip(outs, nonzero_pattern(br.jaxpr, ins[1:]))]
        else:
            outs = [any(ins)] * len(e.outvars)
        nz.update(zip(e.outvars, outs))
    return [get(v) for v in jaxpr.outvars]


def _zeros(v):
    return jnp.zeros(v.aval.shape, v.aval.dtype)


def eval_linear(jaxpr, consts, args: Sequence) -> list:
    """Evaluate a LINEAR jaxpr (its invars: tangents) with some args :data:`ZERO`.

    Returns its outputs, :data:`ZERO` where an output is structurally zero.
    Constants (constvars, literals and what depends only on them) are computed
    as they are; an equation whose linear operands are all ZERO is skipped.
    """
    env: dict = {}
    linear: set = set()

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    linear.update(jaxpr.invars)
    for e in jaxpr.eqns:
        ins = [read(v) for v in e.invars]
        is_lin = [(not isinstance(v, jcore.Literal)) and v in linear for v in e.invars]
        if any(is_lin):
            linear.update(e.outvars)
            if all(x is ZERO for x, lin in zip(ins, is_lin) if lin) and all(_inexact(v) for v in e.outvars):
                env.update((v, ZERO) for v in e.outvars)
                continue
        inner = _inner(e)
        if inner is not None:
            outs = eval_linear(inner.jaxpr, inner.consts, ins)
        elif e.primitive.name == "cond":
            outs = _cond(e, ins)
        else:
            ins = [_zeros(v) if x is ZERO else x for x, v in zip(ins, e.invars)]
            with e.ctx.manager:
                outs = e.primitive.bind(*ins, **e.primitive.get_bind_params(e.params))
            if not e.primitive.multiple_results:
                outs = [outs]
        outs = [_zeros(v) if (o is ZERO and not _inexact(v)) else o for o, v in zip(outs, e.outvars)]
        env.update(zip(e.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def _cond(e, ins) -> list:
    """A cond of a linear jaxpr: branches evaluated sparsely; outputs no branch can make nonzero are ZERO."""
    index, ops = ins[0], ins[1:]
    if index is ZERO:                        # an integer index is never linear; kept for safety
        index = _zeros(e.invars[0])
    branches = e.params["branches"]
    nz_in = [x is not ZERO for x in ops]
    keep = [False] * len(e.outvars)
    for br in branches:
        keep = [a or b for a, b in zip(keep, nonzero_pattern(br.jaxpr, nz_in))]
    keep = [k or not _inexact(v) for k, v in zip(keep, e.outvars)]
    live = [x for x in ops if x is not ZERO]

    def branch(br):
        def run(*vals):
            it = iter(vals)
            full = [ZERO if x is ZERO else next(it) for x in ops]
            outs = eval_linear(br.jaxpr, br.consts, full)
            return [_zeros(v) if o is ZERO else o for o, v, k in zip(outs, br.jaxpr.outvars, keep) if k]
        return run

    res = iter(jax.lax.switch(index, [branch(b) for b in branches], *live) if any(keep) else ())
    return [next(res) if k else ZERO for k in keep]


def plan_groups(jaxpr, n_inputs: int, budget: float) -> list[list[int]]:
    """Inputs grouped so that each group's columns are computed together (vmapped), greedily.

    A group G costs |G| · |reach(G)| equations at run time (every member's tangent goes through
    every equation any member reaches) and |reach(G)| in the compiled program.  Starting from one
    group per input (run time Σ|reach(k)|, the least), the pair whose merge adds the least run
    time per equation saved is merged while the program exceeds `budget` × (the equations all
    inputs reach), i.e. ~`budget` times the size of ``jax.jacfwd``'s program.
    """
    ids: dict = {}
    groups = [([k], reach(jaxpr, [j == k for j in range(n_inputs)], ids)[0]) for k in range(n_inputs)]
    total = reach(jaxpr, [True] * n_inputs, ids)[0].bit_count()
    size = [r.bit_count() for _, r in groups]
    while len(groups) > 1 and sum(size) > budget * total:
        best = None
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                (gi, ri), (gj, rj) = groups[i], groups[j]
                u = (ri | rj).bit_count()
                saved = size[i] + size[j] - u
                added = (len(gi) + len(gj)) * u - len(gi) * size[i] - len(gj) * size[j]
                if saved > 0 and (best is None or added * best[1] < best[0] * saved):
                    best = (added, saved, i, j)
        if best is None:
            break
        _, _, i, j = best
        merged = (groups[i][0] + groups[j][0], groups[i][1] | groups[j][1])
        groups = [g for t, g in enumerate(groups) if t not in (i, j)] + [merged]
        size = [r.bit_count() for _, r in groups]
    return [sorted(g) for g, _ in groups]


def jvp_columns(fun: Callable, primals: Sequence, tangents: Sequence, *, has_aux: bool = False,
                budget: float | None = 4.0):
    """``(out, [J·t_k for each k], aux)``: the JVP of `fun` along each tangent alone, primal shared.

    fun(*primals) -> an array (plus aux with has_aux); tangents[k] has primals[k]'s shape and dtype.
    Column k is ``jax.jvp(fun, primals, (0, .., t_k, .., 0))[1]``, :data:`ZERO` where the output
    does not depend on input k at all.  budget: the compiled program's size as a multiple of
    ``jax.jacfwd``'s (:func:`plan_groups`; None: every input on its own, the least run time).
    Call it inside ``jax.jit`` (it traces; the columns share the primal's residuals).
    """
    if has_aux:
        out, lin, aux = jax.linearize(fun, *primals, has_aux=True)
    else:
        (out, lin), aux = jax.linearize(fun, *primals), None
    closed = jax.make_jaxpr(lin)(*tangents)
    if len(closed.jaxpr.outvars) != 1:
        raise ValueError(f"jvp_columns: fun must return one array, not {len(closed.jaxpr.outvars)}")
    n = len(tangents)
    groups = [[k] for k in range(n)] if budget is None else plan_groups(closed.jaxpr, n, budget)
    cols: list = [ZERO] * n
    for group in groups:
        if len(group) == 1:
            args = [ZERO] * n
            args[group[0]] = tangents[group[0]]
            (cols[group[0]],) = eval_linear(closed.jaxpr, closed.consts, args)
            continue

        def along(delta, group=group):       # linear in delta: vmapped over the unit vectors
            args = [ZERO] * n
            for j, k in enumerate(group):
                args[k] = delta[j] * tangents[k]
            (col,) = eval_linear(closed.jaxpr, closed.consts, args)
            return _zeros(closed.jaxpr.outvars[0]) if col is ZERO else col

        res = jax.vmap(along)(jnp.eye(len(group), dtype=jnp.result_type(*[tangents[k] for k in group])))
        for j, k in enumerate(group):
            cols[k] = res[j]
    return out, cols, aux


def dense(col, shape, dtype):
    """A column of :func:`jvp_columns` as an array (zeros for :data:`ZERO`)."""
    return jnp.zeros(shape, dtype) if col is ZERO else col



def reach(jaxpr, nonzero_in: Sequence[bool], ids: dict | None = None) -> tuple[int, list[bool]]:
    """(bitset of the equations :func:`eval_linear` binds, output pattern) for the inputs flagged True.

    Bit i stands for one equation (numbered in `ids`, {(id(jaxpr), index): bit}, shared across
    calls so that sets of different inputs can be united); a cond's branches count their own.
    """
    ids = {} if ids is None else ids
    nz = dict(zip(jaxpr.invars, nonzero_in))
    linear = set(jaxpr.invars)
    bits = 0

    def get(v):
        return (not isinstance(v, jcore.Literal)) and nz.get(v, False)

    for i, e in enumerate(jaxpr.eqns):
        is_lin = [(not isinstance(v, jcore.Literal)) and v in linear for v in e.invars]
        ins = [get(v) for v in e.invars]
        if any(is_lin):
            linear.update(e.outvars)
            if not any(ins) and all(_inexact(v) for v in e.outvars):
                nz.update((v, False) for v in e.outvars)
                continue
        inner = _inner(e)
        if inner is not None:
            b, outs = reach(inner.jaxpr, ins, ids)
            bits |= b
        elif e.primitive.name == "cond":
            outs = [False] * len(e.outvars)
            for br in e.params["branches"]:
                b, o = reach(br.jaxpr, ins[1:], ids)
                bits |= b
                outs = [x or y for x, y in zip(outs, o)]
        else:
            bits |= 1 << ids.setdefault((id(jaxpr), i), len(ids))
            outs = [any(ins) or not _inexact(v) for v in e.outvars]
        nz.update(zip(e.outvars, outs))
    return bits, [get(v) for v in jaxpr.outvars]
