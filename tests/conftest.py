import atexit
import os
import shutil
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The on-disk caches (JAX's compile cache, compiled sweep steps, the validated catalog and specs) of
# this test process: a new folder, never the user's ~/.cache. A test that puts its own scenario
# function in place must not find entries of an earlier run, nor leave any; and every run is a cold
# run, as on CI. Tests that need another folder (or "off") set it themselves.
_CACHE = tempfile.mkdtemp(prefix="mlsys_opt_test_cache_")
os.environ["MLSYS_OPT_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)
# tests/wallcheck.py (shared wall-test checks) is imported as `wallcheck` under any import mode.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

# Reference-value and finite-difference tests need float64; the package itself
# defaults to float32 for speed and tests that care switch dtype explicitly.
jax.config.update("jax_enable_x64", True)
# The walls promise "all arguments broadcast to [...]": a silent [n] x [n, 1] rank
# promotion is a bug the tests must catch (equinox does the same).
jax.config.update("jax_numpy_rank_promotion", "raise")

# Property tests are derandomized so CI is reproducible: a failure found once is
# found every run (and fixed), never a flake.
from hypothesis import settings as _settings  # noqa: E402

_settings.register_profile("mlsys_opt", derandomize=True, deadline=None)
_settings.load_profile("mlsys_opt")
