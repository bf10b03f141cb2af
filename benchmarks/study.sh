#!/usr/bin/env bash
# The simulated-annotator study of BENCHMARKS.md, exactly as run. About 80 minutes on 2 CPU cores.
#   LIVETRAIN_DATA=../shared/data bash benchmarks/study.sh [OUT]
set -euo pipefail
D=${LIVETRAIN_DATA:-../shared/data}
OUT=${1:-benchmarks/results}
S="livetrain simulate --quiet --seed 0"

# 1. BCCD blood cells (detection): the four strategies and the live-training ablations, one run, one order.
$S --task detection --images "$D/bccd/JPEGImages" --labels "$D/bccd/Annotations" --format voc \
   --limit 40 --holdout-max 30 --steps-per-image 15 --eval-at 10,20,40 \
   --offline-max-steps 250 --offline-min-steps 100 --plateau-window 50 --model-option input_size=320 \
   --strategy live --strategy hitl --strategy static --strategy manual \
   --strategy live:uniform --strategy live:offer=3 --strategy live:offer=10 --out "$OUT/bccd"

# 2. DeepForest tree crowns (large aerial images cut into 400 px tiles)
$S --task detection --images "$D/deepforest" --labels "$D/deepforest" --format voc --tile 400 \
   --merge-classes Tree --limit 30 --steps-per-image 10 --eval-at 10,20,30 \
   --offline-max-steps 150 --offline-min-steps 100 --plateau-window 50 --model-option input_size=320 \
   --strategy live --strategy hitl --strategy static --strategy manual --out "$OUT/deepforest"

# 3. DSB nuclei (instances, 16-bit), 128 px tiles
$S --task segmentation --images "$D/nuclei/img2d.tif" --labels "$D/nuclei/mask2d.tif" --format instances \
   --tile 128 --steps-per-image 15 --eval-at 5,10 \
   --offline-max-steps 150 --offline-min-steps 100 --plateau-window 50 --model-option input_size=256 \
   --strategy live --strategy hitl --strategy static --strategy manual --out "$OUT/nuclei"

# 4. EM membrane stack (semantic)
$S --task segmentation --images "$D/membrane/image" --labels "$D/membrane/label" --format masks \
   --classes interior --steps-per-image 10 --eval-at 10,20 \
   --offline-max-steps 150 --offline-min-steps 100 --plateau-window 50 --model-option input_size=256 \
   --strategy live --strategy hitl --strategy static --strategy manual --out "$OUT/membrane"

# 5. BCCD cell crops (classification)
$S --task classification --crops --images "$D/bccd/JPEGImages" --labels "$D/bccd/Annotations" --format voc \
   --limit 150 --steps-per-image 5 --eval-at 50,100,150 \
   --offline-max-steps 200 --offline-min-steps 100 --plateau-window 50 --model-option input_size=128 \
   --strategy live --strategy hitl --strategy static --strategy manual --out "$OUT/bccd-cells"

# 6. Plateau detector on vs off, with generous compute (1 step per simulated human second, at most 80
#    per image) so that the detector has room to fire
$S --task detection --images "$D/bccd/JPEGImages" --labels "$D/bccd/Annotations" --format voc \
   --limit 8 --holdout-max 30 --compute-ratio 1 --max-steps-per-image 80 --plateau-window 20 --eval-at 8 \
   --no-offline --model-option input_size=320 \
   --strategy live --strategy live:noplateau --strategy manual --out "$OUT/bccd-plateau"
