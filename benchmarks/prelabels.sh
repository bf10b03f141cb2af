#!/usr/bin/env bash
# Issue 8's ablations: every change to when and how pre-labels are shown, measured with the simulator on
# the same walk, seed and cost model. "live:fixedthreshold,nowithhold,nobalance" is the engine before these
# changes (fixed 0.3 threshold, the trainer's offer rule, no class balance, constant learning rate);
# "live" is the engine now; each other live variant turns one change off (or the learning-rate boost on).
#   LIVETRAIN_DATA=../shared/data bash benchmarks/prelabels.sh [OUT] [bccd|deepforest|nuclei ...]
set -euo pipefail
D=${LIVETRAIN_DATA:-../shared/data}
OUT=${1:-benchmarks/results/prelabels}
shift || true
SETS=${*:-bccd deepforest nuclei}
S="livetrain simulate --quiet --seed ${SEED:-0} --no-offline --save-predictions"  # SEED=1 for another walk
# STRATEGIES="..." (space-separated) runs a subset, e.g. STRATEGIES="live manual"
ABL=()
for s in ${STRATEGIES:-live:fixedthreshold,nowithhold,nobalance live live:fixedthreshold live:nowithhold \
                       live:nobalance live:boost=3 hitl manual}; do ABL+=(--strategy "$s"); done

for set in $SETS; do
  case $set in
    bccd)  # blood cells, 3 classes (platelets are the rare one)
      $S --task detection --images "$D/bccd/JPEGImages" --labels "$D/bccd/Annotations" --format voc \
         --classes RBC,WBC,Platelets --limit 50 --holdout-max 30 --steps-per-image 15 --eval-at 10,20,50 \
         --offline-max-steps 250 --offline-min-steps 100 --plateau-window 50 --model-option input_size=320 \
         "${ABL[@]}" --out "$OUT/bccd" ;;
    deepforest)  # tree crowns, 400 px tiles of large aerial images, one class
      $S --task detection --images "$D/deepforest" --labels "$D/deepforest" --format voc --tile 400 \
         --merge-classes Tree --limit 50 --steps-per-image 10 --eval-at 10,20,50 \
         --offline-max-steps 150 --offline-min-steps 100 --plateau-window 50 --model-option input_size=320 \
         "${ABL[@]}" --out "$OUT/deepforest" ;;
    nuclei)  # DSB nuclei, 16-bit, instance masks: 64 px tiles (64 of them) so that 50 are labeled, 14 held out
      $S --task segmentation --images "$D/nuclei/img2d.tif" --labels "$D/nuclei/mask2d.tif" --format instances \
         --tile 64 --limit 50 --holdout-max 14 --steps-per-image 15 --eval-at 10,20,50 \
         --offline-max-steps 150 --offline-min-steps 100 --plateau-window 50 --model-option input_size=128 \
         "${ABL[@]}" --out "$OUT/nuclei" ;;
    *) echo "unknown set $set" >&2; exit 2 ;;
  esac
done
