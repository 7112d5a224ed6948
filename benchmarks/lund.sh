#!/bin/bash
# Your own geotagged photos -> a served, fused model (docs/own_data.md), end to end on the Lund walk
# (29 Mapillary photos, ~200 m north along one street), and the figures (BENCHMARKS.md, "Own data: Lund"):
#
#   benchmarks/lund.sh [DATA (../shared/data/lund)] [WORK (/tmp/streetloc-lund)]
#   PYTHON=.venv/bin/python EPOCHS=150 HELD_OUT=11:18 benchmarks/lund.sh ...
#
# DATA is the folder of photos (or the folder whose images/ holds them). Split: the photos in time order,
# HELD_OUT (a contiguous stretch, python slice: 11:18 = the 12th to the 18th photo) is never trained on;
# the rest trains PoseNet. Each step is timed; everything it writes stays in WORK (the drives, the model,
# the recorded runs, their plots, the JSON of every figure). Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/lund}
WORK=${2:-/tmp/streetloc-lund}
EPOCHS=${EPOCHS:-150}
HELD_OUT=${HELD_OUT:-11:18}
[ -d "$DATA/images" ] && DATA=$DATA/images
START=${HELD_OUT%%:*}; STOP=${HELD_OUT#*:}
mkdir -p "$WORK"
rm -rf "$WORK/posenet" "$WORK"/run_*.mcap "$WORK"/times.txt
PY="nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=$PWD ${PYTHON:-python}"
streetloc() { $PY -m nodes.cli "$@"; }
timed() {  # timed NAME COMMAND...: run it, append "NAME seconds" to times.txt
    local name=$1 t0; shift
    t0=$EPOCHREALTIME
    "$@"
    awk -v n="$name" -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%s %.1f\n", n, b - a }' >> "$WORK/times.txt"
}

echo "== 1. import: all photos, and the held-out stretch as its own drive"
timed import streetloc import photos "$DATA" --max-width 640 -o "$WORK/lund.mcap"
timed import_held_out streetloc import photos "$DATA" --max-width 640 --frames "$HELD_OUT" -o "$WORK/lund_heldout.mcap"

echo "== 2. train PoseNet on the other photos ($EPOCHS epochs, CPU, 1 thread), evaluate"
TRAIN=("$WORK/lund.mcap@:$START" "$WORK/lund.mcap@$STOP:")
timed train streetloc train posenet --data "${TRAIN[@]}" --out "$WORK/posenet" --epochs "$EPOCHS" \
    --batch-size 8 --threads 1 --device cpu --quiet
timed evaluate streetloc evaluate posenet --model "$WORK/posenet/model.pt" --data "$WORK/lund_heldout.mcap" --device cpu
streetloc evaluate posenet --model "$WORK/posenet/model.pt" --data "$WORK/lund_heldout.mcap" --device cpu --json \
    > "$WORK/evaluate_held_out.json"
streetloc evaluate posenet --model "$WORK/posenet/model.pt" --data "${TRAIN[@]}" --device cpu --json \
    > "$WORK/evaluate_trained.json"
# the shipped synthetic-city model on these photos: refused without --allow-out-of-area, every fix flagged
streetloc evaluate posenet --data "$WORK/lund.mcap" --device cpu --allow-out-of-area --json \
    > "$WORK/evaluate_default_model.json" 2> /dev/null

echo "== 3. replay lock-step through the graph (PoseNet -> fusion, camera only), score"
for part in heldout all; do
    drive=$WORK/lund_heldout.mcap; [ $part = all ] && drive=$WORK/lund.mcap
    timed "replay_$part" streetloc replay "$drive" --lockstep --launch launch/replay.toml \
        --arg model="$WORK/posenet/model.pt" --arg odometry=false --arg device=cpu --arg monitor=false \
        --record "$WORK/run_$part.mcap"
    timed "eval_$part" streetloc eval "$WORK/run_$part.mcap" --plot "$WORK/run_$part.png"
    streetloc eval "$WORK/run_$part.mcap" --json > "$WORK/eval_$part.json"
done

echo "== what if the filter chained fixes 20 s apart (its chain_gap_s is 2 s): offline, the same filter"
$PY benchmarks/fusion_eval.py "$WORK/lund.mcap" --checkpoint "$WORK/posenet/model.pt" --no-odometry --hypotheses 5 \
    --param chain_gap_s=20 --json > "$WORK/fusion_chain_gap_20s.json" 2> /dev/null

echo "== figures"
$PY - "$WORK" "$EPOCHS" "$HELD_OUT" <<'EOF'
import collections, json, math, sys
from pathlib import Path

import numpy as np

from localization.geodesy import LocalFrame
from perception.drives import DriveReader
from perception.drives.topics import POSE_TOPIC

work, epochs, held = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
times = dict(line.split() for line in (work / "times.txt").read_text().splitlines())
start, stop = (int(v) for v in held.split(":"))

with DriveReader(work / "lund.mcap") as drive:
    fixes = list(drive.fixes())
frame = LocalFrame(DriveReader(work / "lund.mcap").metadata.geo_origin)
east, north, _ = frame.to_enu(np.array([f.lat_deg for f in fixes]), np.array([f.lon_deg for f in fixes]))
is_held = np.zeros(len(fixes), bool)
is_held[start:stop] = True
# the baseline a model must beat: always answer the middle of the training photos
centre = east[~is_held].mean(), north[~is_held].mean()
centroid = np.hypot(east[is_held] - centre[0], north[is_held] - centre[1])
gap = np.hypot(east[stop] - east[start - 1], north[stop] - north[start - 1])
print(f"photos: {len(fixes)}; held out {held} ({is_held.sum()} photos), trained on {(~is_held).sum()}; "
      f"the held-out stretch spans a {gap:.0f} m gap between the nearest training photos")

def row(name, d, median="position_error_m_median", p95="position_error_m_p95", over="position_error_over_20m",
        in95="within_95_ellipse"):
    v = [d.get(k) for k in (median, p95, over, in95)]
    cells = ["-" if x is None else f"{x:.1f}" for x in v[:2]] + ["-" if x is None else f"{100 * x:.0f}%" for x in v[2:]]
    return f"| {name} | " + " | ".join(cells)

ev_held = json.loads((work / "evaluate_held_out.json").read_text())
ev_train = json.loads((work / "evaluate_trained.json").read_text())
ev_default = json.loads((work / "evaluate_default_model.json").read_text())
flagged = lambda d: f"{100 * d.get('flag_rates', {}).get('flagged', 0.0):.0f}%"  # noqa: E731
print("\n| PoseNet (streetloc evaluate posenet) | median m | p95 m | > 20 m | truth in 95 % ellipse | flagged |")
print("|---|---|---|---|---|---|")
print(row(f"held-out photos ({ev_held['frames']})", ev_held) + f" | {flagged(ev_held)} |")
print(row(f"training photos ({ev_train['frames']}; memorized, not a localization figure)", ev_train)
      + f" | {flagged(ev_train)} |")
print(f"| baseline: the training photos' centroid, on the held-out photos | {np.median(centroid):.1f} | "
      f"{np.percentile(centroid, 95):.1f} | {100 * np.mean(centroid > 20):.0f}% | - | - |")
print(f"| the shipped synthetic-city model, all {ev_default['frames']} photos (--allow-out-of-area) | "
      f"{ev_default['position_error_m_median'] / 1000:.0f} km | - | - | - | {flagged(ev_default)} "
      f"({', '.join(k for k in ev_default.get('flag_rates', {}) if k != 'flagged')}) |")
print(f"\nheld-out hypotheses: top-1 within 10 m {100 * ev_held['top1_recall_10m']:.0f}%, "
      f"top-5 within 10 m {100 * ev_held['topk_recall_10m']:.0f}%; median predicted 1-sigma "
      f"{ev_held['predicted_std_m_median']:.0f} m; heading error median {ev_held['heading_error_deg_median']:.0f} deg")

print("\n| graph run (streetloc eval) | track | samples | median m | p95 m | > 20 m | truth in 95 % | availability |")
print("|---|---|---|---|---|---|---|---|")
for part in ("heldout", "all"):
    ev = json.loads((work / f"eval_{part}.json").read_text())
    for track in ("posenet", "fused_at_fixes", "fused"):
        d = ev[track]
        cells = [d["median_m"], d["p95_m"]]
        pct = [d["over_20m"], d["in_95_ellipse"], d["availability"]]
        print(f"| {part} | {track} | {d['samples']} | " + " | ".join("-" if x is None else f"{x:.1f}" for x in cells)
              + " | " + " | ".join("-" if x is None else f"{100 * x:.0f}%" for x in pct) + " |")
    with DriveReader(work / f"run_{part}.mcap") as drive:
        poses = list(drive.read(POSE_TOPIC))
    states = collections.Counter((p.status, p.valid, p.reason.split(":")[0]) for p in poses)
    print(f"|   | pose status | " + "; ".join(f"{s} valid={v} '{r}' {100 * n / len(poses):.0f}%"
                                          for (s, v, r), n in states.most_common()) + " | | | | | |")

gap20 = json.loads((work / "fusion_chain_gap_20s.json").read_text())
print(f"| all, offline, chain_gap_s=20 | fused | {gap20['fused.frames']} | {gap20['fused.median_m']:.1f} | "
      f"{gap20['fused.p95_m']:.1f} | {100 * gap20['fused.over_20m']:.0f}% | {100 * gap20['fused.in_95_ellipse']:.0f}% | "
      f"{100 * gap20['fused.availability']:.0f}% |")

print("\n| step (2-core VM shared with other work: noisy) | s |\n|---|---|")
for name, seconds in times.items():
    print(f"| {name}{f' ({epochs} epochs)' if name == 'train' else ''} | {float(seconds):.1f} |")
EOF
