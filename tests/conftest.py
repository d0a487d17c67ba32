import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Reference-value and finite-difference tests need float64; the package itself
# defaults to float32 for speed and tests that care switch dtype explicitly.
jax.config.update("jax_enable_x64", True)
