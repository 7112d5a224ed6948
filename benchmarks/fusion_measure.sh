#!/bin/bash
# Issue 13's figures in one command (BENCHMARKS.md, "Fusion ... round 3"): the held-out drives with
# odometry, the held-out kidnap, camera only, and the validation set; PoseNet's outputs are cached per
# drive, checkpoint and calibration, so a new default checkpoint is run once and re-runs take seconds.
#
#   benchmarks/fusion_measure.sh [DATA_DIR (/work/fusion_data)] [OUT_DIR (DATA_DIR/results)]
#   CHECKPOINT=path/to/posenet.pt benchmarks/fusion_measure.sh ...    # another checkpoint than the default
#
# DATA_DIR holds heldout_s*.mcap, kidnap_s404.mcap and val/*.mcap (the commands that render them:
# BENCHMARKS.md). Every figure is printed and kept in OUT_DIR as text and JSON.
set -euo pipefail
DATA=${1:-/work/fusion_data}
OUT=${2:-$DATA/results}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
PY="nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=$PWD ${PYTHON:-python}"
CKPT=${CHECKPOINT:+--checkpoint $CHECKPOINT}
EVAL="$PY benchmarks/fusion_eval.py --hypotheses 5 --cache $DATA/cache $CKPT"
HELDOUT=$(ls "$DATA"/heldout_s*.mcap)
for run in "heldout:$HELDOUT" "kidnap:$DATA/kidnap_s404.mcap" "heldout_camera_only:--no-odometry $HELDOUT"; do
    name=${run%%:*}; args=${run#*:}
    $EVAL $args | tee "$OUT/$name.txt"
    $EVAL $args --json > "$OUT/$name.json"
done
$PY benchmarks/fusion_tune.py $(ls "$DATA"/val/*.mcap | grep -v s603) --cache "$DATA/cache" $CKPT --per-drive --try "" \
    | tee "$OUT/validation.txt"
