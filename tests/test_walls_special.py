"""Issue 16 (wall item) / issue 18 item 1: a NaN or impossible input never yields a plausible number.

The rule (walls/__init__.py): every public wall, called with one argument NaN
or negative (a bandwidth, count, duration, price or fraction below zero is
physically impossible), returns NaN in every output that depends on that
argument -- never a finite number and never the ``UNBOUNDED`` stand-in, which
a sweep would read as "very slow" or "very expensive".  Zero and +inf are
limits, not mistakes: they must not raise, and a zero must not produce NaN
(its limit is defined: 0, a finite value or ``UNBOUNDED``).

An output "depends" on an argument when doubling the argument at the valid
base point changes it (so a NaN mfu need not poison a ridge point).

The valid base points and argument ranges are the dimensional test's catalogue
(`test_dimensions.CASES`, one case per wall function of the registry), so
every public wall is covered and no range is retyped here.  Two checks per
wall: every (argument, special value) pair in ONE batched call; then a
hypothesis strategy of special values over several arguments at once.
"""
from __future__ import annotations

import functools
import inspect

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_dimensions import CASES as DIM_CASES
from test_dimensions import Case, _output_fields, _sample, _wall_functions

from mlsys_opt.walls import algorithm, data, fleet, laws, moe, node, ops

# walls the dimensional catalogue leaves out (unit-free arguments): explicit valid ranges
EXTRA = [
    Case(laws.amdahl, dict(serial_frac=(0.01, 0.5), n=(1.0, 1024.0))),
    Case(laws.gustafson, dict(serial_frac=(0.01, 0.5), n=(1.0, 1024.0))),
    Case(data.bisection_fraction, dict(topology_code=[0, 1, 2, 3, 4], n_nodes=(2.0, 4096.0),
                                       torus_dims=[2.0, 3.0], dragonfly_frac=(0.5, 0.95))),
    Case(node.kv_waste, dict(seq_len=(16.0, 4096.0), max_seq_len=[4096.0, 8192.0], block_tokens=[16.0, 32.0])),
    Case(fleet.pipeline_bubble, dict(n_stages=(1.0, 64.0), n_microbatches=(1.0, 256.0),
                                     n_virtual_stages=(1.0, 4.0))),
    Case(algorithm.quantization_loss_frac, dict(bits=[4.0, 8.0, 16.0])),
    Case(algorithm.quantization, dict(n_params=(1e6, 1e12), bits_from=[16.0, 32.0], bits_to=[4.0, 8.0])),
    Case(algorithm.pruning, dict(n_params=(1e6, 1e12), sparsity=(0.05, 0.9), structured_code=[0, 1, 2])),
    Case(ops.dp_sgd_slowdown, dict(epsilon=(0.1, 10.0))),
    Case(algorithm.tokens_per_param, dict(n_tokens=(1e9, 1e13), n_params=(1e6, 1e12))),
    Case(moe.dispatch_copies, dict(top_k=(1.0, 8.0), ep=(1.0, 256.0), ranks_per_node=(1.0, 8.0),
                                   node_limit=[0.0, 4.0], dedup=[0.0, 1.0])),
    Case(moe.ep_overlap_partner_frac, dict(pp=(1.0, 16.0), virtual_stages=(1.0, 4.0), microbatches=(1.0, 256.0))),
]
CASES = DIM_CASES + EXTRA

SPECIALS = ("nan", "neg", "zero", "inf")
IDS = [c.fn.__module__.split(".")[-1] + "." + c.fn.__name__ for c in CASES]
# registry functions that are not elementwise walls of arrays (higher-order or string-valued)
NOT_ELEMENTWISE = {"elasticities", "binding", "binding_name", "leaf_names"}


def _special(kind: str, base: np.ndarray) -> np.ndarray:
    return {"nan": np.full_like(base, np.nan), "neg": -np.maximum(np.abs(base), 1e-3),
            "zero": np.zeros_like(base), "inf": np.full_like(base, np.inf)}[kind]


@functools.lru_cache(maxsize=None)
def _base(i: int) -> dict:
    """The case's 32 valid base rows (fixed seed)."""
    rng = np.random.default_rng(1000 + i)
    if i < len(DIM_CASES):
        return _sample(CASES[i], rng)
    out = {}
    for name, spec in CASES[i].args.items():
        if isinstance(spec, list):
            out[name] = rng.choice(np.asarray(spec, np.float64), 32)
        else:
            lo, hi = spec
            out[name] = np.exp(rng.uniform(np.log(lo), np.log(hi), 32))
    return out


def _call(fn, values: dict) -> dict:
    """{field: numpy array} of ``fn`` on float64 arguments; code and flag fields keep their dtype."""
    sig = inspect.signature(fn).parameters
    pos = [jnp.asarray(values[p], jnp.float64) for p, s in sig.items()
           if s.kind == s.POSITIONAL_OR_KEYWORD and p in values]
    kw = {p: jnp.asarray(v, jnp.float64) for p, v in values.items() if sig[p].kind == sig[p].KEYWORD_ONLY}
    out = fn(*pos, **kw)
    fields = _output_fields(fn)
    return {"<result>": np.asarray(out)} if fields is None else {f: np.asarray(getattr(out, f)) for f in fields}


def _float_fields(out: dict) -> dict:
    return {k: v for k, v in out.items() if np.issubdtype(v.dtype, np.floating)}


@functools.lru_cache(maxsize=None)
def _single_args(i: int):
    """Every (argument, special) pair, plus a doubled row per argument, in one batched call.

    Returns (names, out: {field: [n_args, 5, rows]}, base out {field: [rows]}).
    """
    case, base = CASES[i], _base(i)
    names = list(case.args)
    rows = len(next(iter(base.values())))
    kinds = SPECIALS + ("double",)
    batch = {k: np.empty((len(names), len(kinds), rows)) for k in names}
    for a, name in enumerate(names):
        for s, kind in enumerate(kinds):
            for k in names:
                batch[k][a, s] = base[k]
            batch[name][a, s] = 2.0 * base[name] if kind == "double" else _special(kind, base[name])
    out = _float_fields(_call(case.fn, batch))
    ref = _float_fields(_call(case.fn, base))
    return names, out, ref


def test_every_public_wall_is_covered():
    walls = {path.split(":")[1] for path in _wall_functions()} - NOT_ELEMENTWISE
    covered = {c.fn.__name__ for c in CASES}
    assert walls <= covered, f"walls without a special-value case: {sorted(walls - covered)}"


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_each_argument_special_values(i):
    names, out, ref = _single_args(i)
    kinds = SPECIALS + ("double",)
    problems = []
    for field, y in out.items():
        for a, name in enumerate(names):
            depends = ~np.isclose(y[a, kinds.index("double")], ref[field], rtol=1e-9, atol=0.0)
            for kind in ("nan", "neg"):
                v = y[a, kinds.index(kind)]
                bad = depends & ~np.isnan(v)
                if bad.any():
                    problems.append(f"{name}={kind} -> {field} = {v[bad][0]!r} (not NaN)")
            z = y[a, kinds.index("zero")]
            if np.isnan(z).any():
                problems.append(f"{name}=0 -> {field} is NaN (the zero limit is defined)")
        assert np.all(~np.isnan(ref[field])), f"{field}: NaN at a valid base point"
    assert not problems, f"{CASES[i].fn.__name__}: " + "; ".join(sorted(set(problems))[:8])


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_special_value_combinations(i, data):
    case, base = CASES[i], _base(i)
    names = list(case.args)
    picks = data.draw(st.dictionaries(st.sampled_from(names), st.sampled_from(SPECIALS), min_size=1,
                                      max_size=min(3, len(names))), label="special arguments")
    values = dict(base)
    for name, kind in picks.items():
        values[name] = _special(kind, base[name])
    out = _float_fields(_call(case.fn, values))       # must not raise
    bad_args = [n for n, k in picks.items() if k in ("nan", "neg")]
    if not bad_args:
        return
    # where do the bad arguments matter, with the zero / inf picks in place?  (valid vs doubled)
    valid = {**values, **{n: base[n] for n in bad_args}}
    doubled = {**values, **{n: 2.0 * base[n] for n in bad_args}}
    y1, y2 = _float_fields(_call(case.fn, valid)), _float_fields(_call(case.fn, doubled))
    for field, y in out.items():
        poisoned = ~np.isclose(y1[field], y2[field], rtol=1e-9, atol=0.0, equal_nan=True)
        left = y[poisoned & ~np.isnan(y)]
        assert left.size == 0, (f"{case.fn.__name__}{picks}: {field} = {left[0]!r}, "
                                f"a plausible number from an impossible input")


def test_signature_matches_case():
    """The catalogue names real arguments (a renamed argument would silently test nothing)."""
    for case in CASES:
        params = inspect.signature(case.fn).parameters
        assert set(case.args) <= set(params), case.fn.__name__
