"""Mixed-radix digits: host round trips, device chunk decode, size limits."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsys_opt.errors import MlsysOptError
from mlsys_opt.space import indexing


def test_digits_round_trip_small_space_exhaustive():
    rad = (3, 1, 4, 2)
    n = indexing.space_size(rad)
    assert n == 24
    seen = set()
    for i in range(n):
        d = indexing.digits_of(i, rad)
        assert d.dtype == np.int32 and d.shape == (4,)
        assert indexing.index_of(d, rad) == i
        seen.add(tuple(d))
    assert len(seen) == n
    # last axis fastest
    np.testing.assert_array_equal(indexing.digits_of(1, rad), [0, 0, 0, 1])
    np.testing.assert_array_equal(indexing.digits_of(2, rad), [0, 0, 1, 0])
    np.testing.assert_array_equal(indexing.digits_of(23, rad), [2, 0, 3, 1])


def test_digits_round_trip_beyond_int32_and_int53():
    rng = np.random.default_rng(1)
    rad = (2**31 - 1, 1000003, 7, 4093)           # ~6.2e19 > int64: too big
    with pytest.raises(MlsysOptError, match="more than an int64 index allows"):
        indexing.space_size(rad)
    rad = (2**31 - 1, 1000003, 4093)               # 8.8e18 < 2**63 - 1
    n = indexing.space_size(rad)
    assert n == math.prod(rad) and n > 2**62
    for i in [0, 1, n - 1, n // 2, 2**53 + 1, 2**62 + 12345] + [int(x) for x in rng.integers(0, 2**62, 50)]:
        d = indexing.digits_of(i, rad)
        assert indexing.index_of(d, rad) == i


def test_space_size_message_and_bad_radices():
    with pytest.raises(MlsysOptError, match=r"9\.2e18.*remove or narrow an axis"):
        indexing.space_size((2**31 - 1,) * 3)
    for bad in [(), (0, 3), (3, -1), (2**31,), (2.5, 3)]:
        with pytest.raises(MlsysOptError):
            indexing.space_size(bad)
    with pytest.raises(MlsysOptError, match="outside the space"):
        indexing.digits_of(24, (3, 8))
    with pytest.raises(MlsysOptError, match="outside"):
        indexing.index_of([3, 0], (3, 8))


def test_decode_chunk_matches_host_for_huge_random_radices():
    """Product > 2**40, random starts (some near the end: wrap-around), random lanes."""
    rng = np.random.default_rng(0)
    rad = (97, 2**31 - 1, 3, 1, 65537, 12)           # 1.2e18 configurations
    n = indexing.space_size(rad)
    assert n > 2**40
    chunk = 4096
    decode = jax.jit(lambda s, l: indexing.decode_chunk(s, l, rad))
    starts = [0, n - 1, n - chunk // 2] + [int(x) for x in rng.integers(0, n, 5)]
    for start in starts:
        lane = np.concatenate([np.arange(64), rng.integers(0, 2**31 - 1, chunk - 64)]).astype(np.int32)
        got = np.asarray(decode(indexing.digits_of(start, rad), lane))
        assert got.dtype == np.int32
        for row in rng.choice(chunk, 200, replace=False).tolist() + list(range(64)):
            want = indexing.digits_of((start + int(lane[row])) % n, rad)
            np.testing.assert_array_equal(got[row], want, err_msg=f"start={start} lane={lane[row]}")
        assert np.all((got >= 0) & (got < np.array(rad)))


def test_decode_chunks_tile_the_space_exactly():
    """Consecutive chunks (chunk size not dividing N) cover every configuration once, in order."""
    rad = (5, 7, 3, 11)
    n = indexing.space_size(rad)
    chunk = 97
    lane = jnp.arange(chunk, dtype=jnp.int32)
    decode = jax.jit(lambda s: indexing.decode_chunk(s, lane, rad))
    rows = []
    for start in range(0, n, chunk):
        d = np.asarray(decode(indexing.digits_of(start, rad)))
        rows.append(d[: min(chunk, n - start)])
    allrows = np.concatenate(rows)
    want = np.stack(np.unravel_index(np.arange(n), rad), 1)
    np.testing.assert_array_equal(allrows, want)
    assert indexing.indices_of(allrows[:5], rad) == [0, 1, 2, 3, 4]
