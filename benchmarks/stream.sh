#!/usr/bin/env bash
# The correction mode's figures (issue 5): the LIT paper's protocol, corrections with and without the
# LoRA adapter on the same base model. Writes benchmarks/results/stream-*/results.json.
#   LIVETRAIN_DATA=../shared/data bash benchmarks/stream.sh [OUT]
# Fashion-MNIST: apt-get install dataset-fashion-mnist (files under /usr/share/datasets/fashion-mnist).
set -euo pipefail
D=${LIVETRAIN_DATA:-../shared/data}
F=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
OUT=${1:-benchmarks/results}
S="livetrain simulate --mode stream --quiet --seed 0"

# EM membrane stack: a base trained on the first 5 slices, the stream is the 25 that follow. The paper's
# thresholds 0.5 and 0.75, plus 0.6: this base's membrane IoU sits at 0.55-0.67 on every slice, so 0.5
# almost never fires and 0.75 always does, in both arms; 0.6 is where a correction can change the outcome.
$S --task segmentation --images "$D/membrane/image" --labels "$D/membrane/label" --format masks \
   --classes membrane --invert --base-frames 5 --base-steps 100 --model-option input_size=384 \
   --thresholds 0.5,0.6,0.75 --out "$OUT/stream-membrane"

# DSB nuclei: 96 px tiles of the 512x512 image, row by row; the first 6 tiles train the base.
$S --task segmentation --images "$D/nuclei/img2d.tif" --labels "$D/nuclei/mask2d.tif" --format instances \
   --classes nucleus --tile 96 --base-frames 6 --base-steps 100 --model-option input_size=192 \
   --thresholds 0.5,0.75 --out "$OUT/stream-nuclei"

# Fashion-MNIST, the classification variant: a base from 3 labels per class, 1,000 test-pool images
# grouped by the base's predicted class; a correction when the truth is not in the top 3 (the paper's
# rule) or, stricter, not the top 1. Three seeds (base labels, pool and order differ), since one seed
# swings by tens of per cent. Rank 8 as in the paper's CLIP setting; learning rate 1e-3, chosen on streams
# drawn from the *training* file (3 seeds, 500 images: 1e-3 +8.0 % mean, 3e-3 -1.8 %, a guard of 8 frames
# +0.4 %), so the test-file figures below were not tuned on.
for seed in 0 1 2; do
  for k in 3 1; do
    livetrain simulate --mode stream --quiet --seed $seed --task classification --format idx \
       --images "$F/t10k-images-idx3-ubyte.gz" --labels "$F/t10k-labels-idx1-ubyte.gz" --base-per-class 3 \
       --base-steps 100 --stream-limit 1000 --model-option input_size=96 --top-k $k --thresholds 1 \
       --adapter rank=8 --adapter lr=1e-3 --out "$OUT/stream-fashion-top$k-seed$seed"
  done
done
