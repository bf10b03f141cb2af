#!/usr/bin/env bash
# Issue 21: the study a sceptical reader accepts (BENCHMARKS.md, "Issue 21").
#   - live gets real-time compute on this machine (--compute-ratio auto, the default: the person's seconds
#     on each image times the measured step rate, at most --max-steps-per-image);
#   - hitl retrains once per workday of labeling (6 h of the simulated person's seconds in this run), each
#     retrain until its loss plateaus, overnight; hitl:proportional keeps the report's 2/10/20/50 % schedule,
#     labeling waiting for each retrain; every pause is derived from steps x step time, none assumed;
#   - accepted pre-label objects are stored as drawn and trained on (accept=stored, the default);
#   - the offline reference trains until its own plateau and never fewer steps than live;
#   - every ratio comes with its range over the cost grid (livetrain_widgets/study/sensitivity.py).
#
#   LIVETRAIN_DATA=../shared/data SEEDS="0 1 2" bash benchmarks/study21.sh [OUT] [bccd deepforest nuclei ablations]
#   python benchmarks/report.py --seeds OUT      # mean ± sd over the seeds, with the sensitivity ranges
#
# Wall time: live trains in real time, so each live row costs about its own simulated working hours of wall
# time (less where the plateau detector pauses training), and the offline reference at least as much again.
# On 2 CPU cores, BCCD at 150 images is several hours per seed; run the seeds on separate machines
# (SEEDS=0, SEEDS=1, ...) into the same OUT. Every command continues its study (--resume): run the script
# again after an interruption and the strategies already done are kept; the offline reference is trained
# from the labels the live walk stored (OUT/.../stored/live.json.gz).
set -euo pipefail
D=${LIVETRAIN_DATA:-../shared/data}
OUT=${1:-benchmarks/results/issue21}
shift || true
SETS=${*:-bccd deepforest nuclei}
S="livetrain simulate --quiet --resume"
HEAD=(--strategy live --strategy hitl --strategy hitl:proportional --strategy manual)

for seed in ${SEEDS:-0 1 2}; do
  for set in $SETS; do
    case $set in
      bccd)  # blood cells, 3 classes, 150 images labeled, 60 held out
        $S --seed "$seed" --task detection --images "$D/bccd/JPEGImages" --labels "$D/bccd/Annotations" \
           --format voc --classes RBC,WBC,Platelets --limit 150 --holdout-max 60 --eval-at 10,20,50,100,150 \
           --model-option input_size=320 "${HEAD[@]}" --out "$OUT/seed$seed/bccd" ;;
      deepforest)  # tree crowns: 256 px tiles of the large aerial images, 105 labeled, 18 held out
        $S --seed "$seed" --task detection --images "$D/deepforest" --labels "$D/deepforest" --format voc \
           --tile 256 --merge-classes Tree --holdout 0.15 --limit 105 --eval-at 10,20,50,100 \
           --model-option input_size=256 "${HEAD[@]}" --out "$OUT/seed$seed/deepforest" ;;
      nuclei)  # DSB nuclei, 64 px tiles (instances), 50 labeled, 14 held out
        $S --seed "$seed" --task segmentation --images "$D/nuclei/img2d.tif" --labels "$D/nuclei/mask2d.tif" \
           --format instances --tile 64 --limit 50 --holdout-max 14 --eval-at 10,20,50 \
           --model-option input_size=128 "${HEAD[@]}" --out "$OUT/seed$seed/nuclei" ;;
      ablations)  # BCCD, 50 images: fixed compute, label realism both ways, the queue order
        $S --seed "$seed" --task detection --images "$D/bccd/JPEGImages" --labels "$D/bccd/Annotations" \
           --format voc --classes RBC,WBC,Platelets --limit 50 --holdout-max 30 --eval-at 10,20,50 \
           --model-option input_size=320 --strategy live --strategy live:steps=15 \
           --strategy live:accept=charged --strategy live:accept=truth --strategy live:order=file \
           --strategy live:order=uncertain --strategy hitl --strategy hitl:proportional \
           --strategy hitl:proportional,accept=charged --strategy manual --out "$OUT/seed$seed/bccd-ablations" ;;
      *) echo "unknown set $set" >&2; exit 2 ;;
    esac
  done
done
