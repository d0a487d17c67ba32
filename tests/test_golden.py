"""Every golden value of the walls (tests/golden.py): one row, one check, its source in the id."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
from golden import GOLDEN, Golden, printed

_IDS = [g.id for g in GOLDEN]


def _wall(name: str):
    module, fn = name.split(":")
    return getattr(importlib.import_module(f"mlsys_opt.walls.{module}"), fn)


@pytest.mark.parametrize("g", GOLDEN, ids=_IDS)
def test_golden_value(g: Golden):
    out = _wall(g.wall)(*g.args, **g.kwargs)
    got = getattr(out, g.field) if g.field else out
    np.testing.assert_allclose(np.asarray(got, dtype=float), g.expected, rtol=g.rtol, atol=g.atol,
                               err_msg=f"{g.wall} {g.field or ''}: {g.source}")


def test_catalogue_is_well_formed():
    """Every row names a real wall, a source and a tolerance tighter than the value; no
    (wall, arguments, field, expected) is typed twice."""
    keys = [(g.wall, repr(g.args), repr(sorted(g.kwargs.items())), g.field, repr(g.expected)) for g in GOLDEN]
    assert len(keys) == len(set(keys))
    for g in GOLDEN:
        assert callable(_wall(g.wall)) and g.source.strip(), g
        assert g.rtol < 0.05, g
        assert g.atol == 0 or g.atol < 0.5 * float(np.min(np.abs(g.expected))) or np.all(np.asarray(g.expected) == 0), g


def test_printed_tolerance_is_half_the_last_digit():
    assert printed("41.8", 1e-3) == pytest.approx((0.0418, 0.5e-4))
    assert printed("961538") == (961538.0, 0.5)
    assert printed("2.1", 1e6) == pytest.approx((2.1e6, 0.05e6))
