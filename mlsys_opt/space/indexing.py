"""Mixed-radix configuration digits: spaces larger than int32 without jax x64.

A design space with axes of sizes ``radices = (r_0, ..., r_{n-1})`` has
``N = r_0 · r_1 · ... · r_{n-1}`` configurations.  Configuration number
``i`` (0 <= i < N) has digits ``d`` with the LAST axis varying fastest::

    i = Σ_k d_k · Π_{m>k} r_m,        0 <= d_k < r_k

On the host, ``i`` is an exact Python int (up to 2**63 - 1, the int64 limit
that checkpoints and reports use).  On the device a configuration is never one
global integer: the sweep engine hands each chunk the digits of its first
configuration (``start_digits``, int32) and a lane offset (int32, < 2**31),
and :func:`decode_chunk` adds them with carry propagation, one axis at a time,
so int32 arithmetic is exact however large N is.

Every radix must fit int32 (1 <= r_k <= 2**31 - 1).  Source: the sweep-engine
contract in docs/CONTRACTS.md ("Sweep engine").

The host functions are numpy only: ``Space.size`` (so ``mlsys-opt spaces list``)
runs without importing JAX; :func:`decode_chunk` imports it when traced.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import MlsysOptError

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


def _check_radices(radices: Sequence[int]) -> tuple[int, ...]:
    try:
        rad = tuple(int(r) for r in radices)
    except (TypeError, ValueError):
        raise MlsysOptError(f"radices must be a sequence of positive ints (axis sizes); got {radices!r}") from None
    if not rad:
        raise MlsysOptError("radices is empty: a design space needs at least one axis")
    for k, (r, raw) in enumerate(zip(rad, radices)):
        if r != raw or r < 1 or r > INT32_MAX:
            raise MlsysOptError(
                f"axis {k} has size {raw!r}; every axis size must be an int in [1, {INT32_MAX}] (int32)")
    return rad


def space_size(radices: Sequence[int]) -> int:
    """Number of configurations N = Π_k r_k, as an exact Python int.

    Args:
      radices: axis sizes ``r_k`` (ints in [1, 2**31 - 1]).

    Returns:
      N (Python int).

    Raises:
      MlsysOptError: an axis size is not an int in range, or N > 2**63 - 1
      (an int64 configuration index could not address every configuration).
    """
    rad = _check_radices(radices)
    n = math.prod(rad)
    if n > INT64_MAX:
        raise MlsysOptError(
            f"space has {n} configurations ({float(n):.3g}), more than an int64 index allows "
            f"(9.2e18); remove or narrow an axis (axis sizes: {list(rad)})")
    return n


def digits_of(index: int, radices: Sequence[int]) -> np.ndarray:
    """Digits of configuration ``index`` (host, exact), last axis fastest.

    Args:
      index: configuration number, 0 <= index < N (Python int or numpy int).
      radices: axis sizes.

    Returns:
      ``np.int32[n_axes]`` with 0 <= d_k < r_k.
    """
    rad = _check_radices(radices)
    n = space_size(rad)
    i = int(index)
    if i != index or not 0 <= i < n:
        raise MlsysOptError(f"configuration index {index!r} is outside the space [0, {n})")
    out = np.zeros(len(rad), dtype=np.int32)
    for k in range(len(rad) - 1, -1, -1):
        i, out[k] = divmod(i, rad[k])
    return out


def index_of(digits: Sequence[int], radices: Sequence[int]) -> int:
    """Configuration number of ``digits`` (host, exact Python int); inverse of :func:`digits_of`."""
    rad = _check_radices(radices)
    d = [int(x) for x in np.asarray(digits).reshape(-1)]
    if len(d) != len(rad):
        raise MlsysOptError(f"digits {d} have {len(d)} entries; the space has {len(rad)} axes")
    i = 0
    for k, (dk, rk) in enumerate(zip(d, rad)):
        if not 0 <= dk < rk:
            raise MlsysOptError(f"digit {dk} of axis {k} is outside [0, {rk})")
        i = i * rk + dk
    return i


def indices_of(digits: np.ndarray, radices: Sequence[int]) -> list[int]:
    """:func:`index_of` for each row of ``digits`` [m, n_axes] (host, exact Python ints)."""
    return [index_of(row, radices) for row in np.asarray(digits).reshape(-1, len(tuple(radices)))]


def decode_chunk(start_digits, lane, radices: tuple[int, ...]):
    """:func:`decode_chunk_columns` stacked: int32[chunk, n_axes]."""
    import jax.numpy as jnp
    return jnp.stack(decode_chunk_columns(start_digits, lane, radices), axis=-1)


def decode_chunk_columns(start_digits, lane, radices: tuple[int, ...]) -> list:
    """Digits of configurations ``start + lane`` on the device (int32 only).

    Adds the int32 offset ``lane`` to the mixed-radix number ``start_digits``
    axis by axis from the last (fastest) one, carrying into the next axis::

        a_{n-1} = lane;   q_k, m_k = divmod(a_k, r_k)
        c_k = [m_k >= r_k - s_k];  d_k = s_k + m_k - c_k·r_k;  a_{k-1} = q_k + c_k

    No intermediate exceeds 2**31 - 1 (the sum s_k + m_k is never formed when
    it would wrap).  A carry out of axis 0 (``start + lane >= N``) wraps round
    to the start of the space, so masked tail lanes still get valid digits.

    Args:
      start_digits: int32[n_axes], digits of the chunk's first configuration.
      lane: int32[chunk], offsets 0 <= lane < 2**31 (any order).
      radices: static tuple of axis sizes (Python ints; part of the jit key).

    Returns:
      n_axes vectors int32[chunk], the digits of each axis.
    """
    import jax.numpy as jnp       # here, not at the top: the host functions above run without JAX
    from jax import lax

    start_digits = jnp.asarray(start_digits, jnp.int32)
    add = jnp.asarray(lane, jnp.int32)
    cols = [None] * len(radices)
    for k in range(len(radices) - 1, -1, -1):
        r = int(radices[k])
        s = start_digits[k]
        if r == 1:
            cols[k] = jnp.zeros_like(add)
            continue
        q = lax.div(add, jnp.int32(r))     # truncating = floor here (add >= 0); much faster than //
        m = add - q * r
        room = r - s                      # > 0: digits still free on this axis
        carry = m >= room
        cols[k] = jnp.where(carry, m - room, s + m)
        add = q + carry.astype(jnp.int32)
    return cols
