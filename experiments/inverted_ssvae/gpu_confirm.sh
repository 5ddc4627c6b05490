#!/usr/bin/env bash
# Seeds of the Gemp confirmatory test (README: "The confirmatory test") on a lent GPU, in time-boxed
# groups: each group is one vmapped program of its seeds (config untapped_full_confirm.py, every seed on
# its own data), with the training rows on the device (run.device_data), scored by the same classifier as
# the CPU groups. Groups run one after another so that a session cut short still returns whole groups;
# a group that cannot finish before TOTAL is stopped and left out (pool.py refuses a group stopped short).
# Not part of the library or of CI.
#
# Usage (repository root, on the GPU machine, with .whl and the classifier carried):
#     OUT=/tmp/out bash experiments/inverted_ssvae/gpu_confirm.sh TOTAL_SECONDS 14-23 24-33 ...
# carry: [".whl", "runs/inverted_ssvae/paper_codefull_600steps_seeds0-2/mnist_classifier.npz"]
# Results: $OUT/runs.tgz (each group's results.json, metrics, figure), $OUT/session.log, $OUT/*.log.
set -u
TOTAL=${1:?TOTAL_SECONDS}; shift
source "$(dirname "$0")/../../benchmarks/_gpu_setup.sh"
CLF=runs/inverted_ssvae/paper_codefull_600steps_seeds0-2/mnist_classifier.npz
[ -f "$CLF" ] || { say "no $CLF: carry it (every group must be scored by the same classifier)"; exit 2; }
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest
for range in "$@"; do
  lo=${range%-*}; hi=${range#*-}
  seeds=$(seq -s, "$lo" "$hi")
  W=/tmp/runs/confirm_seeds$range
  mkdir -p "$W" && cp "$CLF" "$W/"
  left=$(( TOTAL - $(elapsed) - 15 ))
  [ "$left" -ge 60 ] || { say "group $range not started: ${left}s left"; continue; }
  say "group $range (seeds $seeds), ${left}s left"
  timeout --signal=KILL "$left" python3 -m experiments.inverted_ssvae.main \
    --config experiments/inverted_ssvae/configs/untapped_full_confirm.py --workdir "$W" \
    --set run.seeds="($seeds,)" --set run.device_data=True --set run.checkpoint_every=600 \
    --set run.sync_every=50 --set run.log_every=50 --set run.classifier_path=mnist_classifier.npz \
    >"$OUT/confirm_$range.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] && say "group $range done" || { say "group $range exit $rc: left out"; rm -f "$W/results.json"; }
done
finish 5
