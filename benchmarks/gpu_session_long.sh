#!/usr/bin/env bash
# The second time-boxed session on a lent GPU (an H100, 2026-11-26): the IW-NLL speed comparison of
# issue 4 alone on the GPU, then issue 5's long training: the structured rectified hierarchy and the
# one-layer baseline VAE for the same number of epochs, IW-NLL k=5000 on all 10,000 test images.
# This is the exact script behind those numbers in benchmarks/README.md and
# experiments/rectified_hvae/README.md; it is not part of the library or of CI.
#
# Usage (repository root, on the GPU machine; OUT = a folder for the results):
#     OUT=/tmp/out bash benchmarks/gpu_session_long.sh [TOTAL_SECONDS [EPOCHS]]
#
# Timeline (seconds from the start): set-up; phase A, alone: benchmarks/elbo_throughput.py --iw-only
# (2,000 test-sized examples vectorised against a per-example loop over 50); phase B: the two trainings
# side by side, each with a training time limit (fit's time_limit_s) that leaves EVAL_RESERVE seconds
# for its evaluation, so that both write results before TOTAL_SECONDS.
set -u
TOTAL=${1:-500}
EPOCHS=${2:-200}
source "$(dirname "$0")/_gpu_setup.sh"

say "phase A: IW-NLL speed"
timeout 120 python3 benchmarks/elbo_throughput.py --iw-only --iw-examples 2000 --iw-loop-examples 50 --no-torch \
  --out "$OUT/gpu_iw.jsonl" >"$OUT/bench_iw.log" 2>&1 || say "IW bench exit $?"

export XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest
EVAL_RESERVE=90   # IW-NLL of 10k x 5000 (~40 s for the hierarchy at 'highest'), ELBO, active units, figures
TRAIN_S=$(( TOTAL - $(elapsed) - EVAL_RESERVE ))
[ "$TRAIN_S" -ge 30 ] || { say "only ${TRAIN_S}s left for training: using 30"; TRAIN_S=30; }
say "phase B: $EPOCHS epochs each, training time limit ${TRAIN_S}s"
for c in default baseline_vae; do
  python3 -m experiments.rectified_hvae.main --config experiments/rectified_hvae/configs/$c.py \
    --workdir /tmp/runs/rectified_hvae_$c --set epochs=$EPOCHS --set eval.iw_examples=10000 \
    --set train.sync_every=100 --set train.checkpoint_every=1000000 --set train.log_every=6000 \
    --set train.time_limit_s=$TRAIN_S >"$OUT/rhvae_$c.log" 2>&1 &
done
finish 10
