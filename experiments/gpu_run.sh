#!/usr/bin/env bash
# One time-boxed session on a lent accelerator: run jobs one after another, each with the time left,
# and bring back their logs and results. For the device tool of this workplace (a lent GPU, a budget
# of minutes); not part of the library or of CI.
#
# Usage (repository root; OUT = the folder whose files come back):
#     OUT=/tmp/out bash experiments/gpu_run.sh TOTAL_SECONDS "JOB 1" ["JOB 2" ...]
# e.g.
#     OUT=$OUT bash experiments/gpu_run.sh 500 \
#       "python3 benchmarks/elbo_throughput.py --repeats 5 --out \$OUT/bench.jsonl" \
#       "python3 -m experiments.vae.main --config experiments/vae/configs/long.py --workdir /tmp/runs/vae \
#          --set train.time_limit_s=300"
#
# - Wheels carried in .whl/ (that machine has no package index) are installed into /tmp/site first.
# - Each job runs under `timeout` with the seconds left minus a margin; SIGTERM first (the engine then
#   checkpoints and writes its results: give long trainings train.time_limit_s too), SIGKILL 20 s later.
# - $OUT/session.log: versions, devices, each job's start, exit status and duration; $OUT/job_N.log: its
#   output; $OUT/runs.tgz: /tmp/runs without checkpoints and event files (results.json, metrics.jsonl,
#   images) of jobs that wrote there.
set -u
TOTAL=${1:?TOTAL_SECONDS}; shift
OUT=${OUT:?set OUT to the folder whose files come back}
START=$(date +%s)
MARGIN=${MARGIN:-15}
mkdir -p "$OUT" /tmp/runs
LOG="$OUT/session.log"
elapsed() { echo $(( $(date +%s) - START )); }
say() { echo "[t=$(elapsed)s] $*" | tee -a "$LOG"; }

export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 XLA_PYTHON_CLIENT_PREALLOCATE=false OUT
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >>"$LOG" 2>&1 && export PYTHONPATH=$PWD:/tmp/site || say "wheel install failed"
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
python3 - >>"$LOG" 2>&1 <<'PY'
from importlib import metadata
for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "torch"):
    try:
        print(name, metadata.version(name))
    except metadata.PackageNotFoundError:  # report and go on: each job says what it needs
        print(name, "not installed")
import jax
print("devices", jax.devices())
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$LOG" 2>&1

n=0
for job in "$@"; do
  n=$((n + 1))
  left=$(( TOTAL - $(elapsed) - MARGIN ))
  if [ "$left" -lt 10 ]; then say "job $n not started: ${left}s left"; continue; fi
  say "job $n (${left}s left): $job"
  t0=$(date +%s)
  timeout --kill-after=20 "$left" bash -c "$job" >"$OUT/job_$n.log" 2>&1
  say "job $n exit $? after $(( $(date +%s) - t0 ))s"
done
(cd /tmp/runs && tar czf "$OUT/runs.tgz" --exclude=checkpoints --exclude='events.out.*' . 2>>"$LOG")
say "done"
