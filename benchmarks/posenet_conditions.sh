#!/usr/bin/env bash
# PoseNet by condition (BENCHMARKS.md "PoseNet by condition", issue 11 item 4): render 15 held-out random
# routes (5 conditions x 3 route seeds x 400 frames at 5 fps; seeds 7201-7243, never trained, validated,
# calibrated or tuned on; and a second set, seeds 8501-8643: 3 more per condition, 12 more at night) and
# score one or more checkpoints on each condition group.
#
#   benchmarks/posenet_conditions.sh OUT_DIR [MODEL ...]     (default models: both registered PoseNets)
set -euo pipefail
OUT=${1:?usage: benchmarks/posenet_conditions.sh OUT_DIR [MODEL ...]}; shift || true
MODELS=${*:-posenet_synthetic_city posenet_synthetic_city_night}
S=${STREETLOC:-streetloc}
H=$OUT/heldout; mkdir -p "$H"
r() { local name=$1; shift; [ -f "$H/$name.mcap" ] || $S sim --route random --frames 400 --fps 5 "$@" -o "$H/$name.mcap" -q; }
r day_7201 --route-seed 7201 --time-of-day 10.0
r day_7202 --route-seed 7202 --time-of-day 12.5 --clear
r day_7203 --route-seed 7203 --time-of-day 15.0 --overcast
r dusk_7211 --route-seed 7211 --time-of-day 19.3
r dusk_7212 --route-seed 7212 --time-of-day 19.6 --traffic light
r dusk_7213 --route-seed 7213 --time-of-day 19.0 --overcast
r night_7221 --route-seed 7221 --time-of-day 22.5
r night_7222 --route-seed 7222 --time-of-day 1.0 --traffic light
r night_7223 --route-seed 7223 --time-of-day 23.0 --noise
r traffic_7231 --route-seed 7231 --time-of-day 11.0 --traffic heavy
r traffic_7232 --route-seed 7232 --time-of-day 14.0 --traffic heavy
r traffic_7233 --route-seed 7233 --time-of-day 17.0 --traffic heavy
r noiseblur_7241 --route-seed 7241 --time-of-day 11.5 --noise --motion-blur
r noiseblur_7242 --route-seed 7242 --time-of-day 13.5 --noise --motion-blur
r noiseblur_7243 --route-seed 7243 --time-of-day 16.0 --noise --motion-blur --traffic heavy
# Second set (2026-12-01): 3 more routes per condition, 12 more at night (where one route of the first
# set, 7221, crosses an unlit stretch: 42 black frames). Rendered after the shipped checkpoint was fixed;
# nothing was chosen on them. The groups below pool both sets.
r day_8601 --route-seed 8601 --time-of-day 9.0
r day_8602 --route-seed 8602 --time-of-day 13.0 --clear
r day_8603 --route-seed 8603 --time-of-day 16.5 --overcast
r dusk_8611 --route-seed 8611 --time-of-day 19.4
r dusk_8612 --route-seed 8612 --time-of-day 19.8 --traffic light
r dusk_8613 --route-seed 8613 --time-of-day 19.1 --overcast
r traffic_8631 --route-seed 8631 --time-of-day 10.0 --traffic heavy
r traffic_8632 --route-seed 8632 --time-of-day 15.5 --traffic heavy
r traffic_8633 --route-seed 8633 --time-of-day 18.0 --traffic heavy
r noiseblur_8641 --route-seed 8641 --time-of-day 12.0 --noise --motion-blur
r noiseblur_8642 --route-seed 8642 --time-of-day 14.5 --noise --motion-blur
r noiseblur_8643 --route-seed 8643 --time-of-day 17.5 --noise --motion-blur --traffic heavy
i=0
for spec in "22.0" "23.5" "2.0" "21.5 --traffic light" "0.5 --noise" "4.0" "22.5 --traffic heavy" "1.5" "23.0" \
            "3.0 --noise" "22.2" "0.0 --traffic light"; do
  i=$((i + 1)); seed=$((8500 + i))
  # shellcheck disable=SC2086  # spec carries several options
  r night_$seed --route-seed $seed --time-of-day $spec
done
for m in $MODELS; do
  for g in day dusk night traffic noiseblur; do
    $S evaluate posenet --model "$m" --data "$H"/${g}_*.mcap --json --cache-dir "$OUT/cache" > "$OUT/${m##*/}_$g.json"
    echo "$m $g: $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(', '.join(f'{k} {d[k]:.3g}' for k in ('position_error_m_median','position_error_over_20m','topk_recall_10m','heading_error_deg_median')))" "$OUT/${m##*/}_$g.json")"
  done
done
