"""The walls: pure, elementwise JAX functions of SI floats (one module per domain; ``registry`` lists them).

The input rule (issues 16 and 18): **a NaN or physically impossible input never yields a
plausible finite number.**

- A NaN argument, or a negative value of an argument that cannot be negative (a
  bandwidth, a count, a duration, a price, a fraction, a code), makes every output that
  depends on it NaN -- never a finite number and never ``UNBOUNDED``, which a sweep would
  read as "very slow" or "very expensive".  A sweep then counts the configuration under the
  reason code ``non_finite`` (``sweeps.engine``), so it is reported, not hidden.
- Zero and +inf are limits, not mistakes: a quantity divided by zero capacity is
  ``UNBOUNDED`` (a finite stand-in for +inf, so float32 arithmetic downstream stays finite),
  0/0 is 0, and the limit is what each call site names (``safe_div(num, den, *, fill)``
  has no default ``fill``).  A cost per unit of nothing is ``UNBOUNDED``, never 0.
- Gradients stay finite away from those points (safe inner values, jax-md ``safe_mask``).

All of this lives in ``walls/_masked.py`` (``nonneg``, ``safe_div``, ``floor_pos``,
``nan_where``, ``UNBOUNDED``), the one place a division by a possibly-zero quantity is
guarded.  tests/test_walls_special.py checks the rule for every public wall with a
hypothesis strategy of special values (NaN, negative, zero, inf).
"""
