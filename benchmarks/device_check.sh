#!/usr/bin/env bash
# The GPU throughput check of issue 4, as one prepared script for a session that is
# lent an accelerator (the device tool runs it in a copy of the working tree).
#
#   device tool: command = "bash benchmarks/device_check.sh", carry = [".whl"], timeout_s = 540
#
# The device machine has jax with CUDA but no pint and no network: the pint wheels
# (pint, flexcache, flexparser, platformdirs; `pip download` them here into .whl/,
# which .git/info/exclude keeps out of git) are installed into /tmp/site.  Chunks of
# 2^22 and more cost ~2 min 20 s of XLA compile on an H200, so the sizes stay at
# 2^18 and 2^20; each run has its own timeout so one slow compile cannot eat the rest.
# Prints the same table as on the CPU; the device column names the GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import pint" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
timeout 200 python3 benchmarks/throughput.py --scenario training --sizes 1e8 --chunks 18 20
timeout 200 python3 benchmarks/throughput.py --scenario training --sizes 1e9 --chunks 20
timeout 120 python3 benchmarks/throughput.py --scenario serving --sizes 1e8 --chunks 20
