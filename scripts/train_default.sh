#!/usr/bin/env bash
# The recipe that produces the shipped detector (ldmscan/models/default.safetensors): 0.3.0's
# detection network (steps 1-6), then 0.5.0 (step 7: 0.3.0 continued on more photos, averaged
# with 0.3.0, recalibrated, with a latent-space attribution head), then 0.6.0 (step 8: 0.5.0
# continued with the art counted twice and the generated images balanced by source), then 0.7.0
# (step 9: the same from 0.5.0 with 22 more generated images, Kandinsky 2.1 and Kolors), then
# 0.8.0 (step 10: 0.7.0's fit averaged with two 800-step fits of its recipe).
# Needs the harvested images rebuilt into work/harvest (../shared/data/harvest/README.md:
# build.py with git mirrors of the repositories it lists) and the BSDS500 photos of
# training/manifests/bsds500.tsv into work/harvest/bsds500 (build.py --manifest, with a mirror of
# BIDS/BSDS500), and for step 9 training/manifests/generated-extra.tsv's images into
# work/harvest/generated-extra (the same, with mirrors of its three repositories). About 3.5
# hours on a 2-core CPU.
# Usage: scripts/train_default.sh [WORKDIR]   (shared data and weights are read from ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}; H=$SHARED/data/harvest
HARVEST=${HARVEST:-work/harvest}  # /work/ is git-ignored
source scripts/recipe.sh
WORK=${1:-runs/default}
mkdir -p "$WORK"

# 1. Which image may be used for what, by source (training-set.tsv is the audit trail). No
#    source that dev (and so the held-out judge) draws on may appear: split refuses them.
.venv/bin/ldmscan train split --fit-pool "photo:$SHARED/data/train/real" \
  --pool "generated:$HARVEST/generated:$H/generated/MANIFEST.tsv" \
  --pool "photo:$HARVEST/real:$H/real/MANIFEST.tsv" \
  --pool "art:$HARVEST/art:$H/art/MANIFEST.tsv" \
  --forbid-manifest "$SHARED/data/dev/MANIFEST.tsv" \
  --role EnragedAntelope/Artists-SD35L=fit --role wyrde/wyrde-comfyui-workflows=fit \
  --out "$WORK/set"

# 2. Sharpened surrogates: the SD1 and SDXL decoders fine-tuned on harvested images of their
#    latent space (the other three as shipped), and the training photos through all five.
SHARPEN="taesd taesdxl" SHARPEN_STEPS=120 CROP=192 RECON="$WORK/recon-sharp" \
  scripts/train_surrogates.sh "$WORK/set" "$WORK/surrogates"

# 3. Fit: warm start from 0.2.0 (aligned TAESD pairs; taken from git history, the last commit
#    that shipped it), on images real decoders made against camera photos and human-made art
#    (one augmentation distribution for both classes), with 8 aligned pairs per step through
#    the sharpened surrogates beside 32 labelled images; 600 steps, then 400 more from there
#    at half the rate (tries D2 and D3 in docs/RESULTS.md).
INIT=${INIT:-$WORK/init-0.2.0.safetensors}
[ -f "$INIT" ] || git show 04c1f41:ldmscan/models/default.safetensors > "$INIT"
FIT=(
  --positives "$WORK/set/fit/generated" --negatives "$WORK/set/fit/photo"
  --negatives "$WORK/set/fit/art" --labelled-batch 32
  --real "$SHARED/data/train/real" --reconstructions "$WORK/recon-sharp" --batch-pairs 8
  --training-set "$WORK/set/training-set.tsv"
  --name ldmscan-lite0 --version "${VERSION:-0.3.0}" --architecture tf_efficientnet_lite0
  --crop-size 128 --score-crop-size 192 --tries 5 --placement smoothest
  --smooth-pick 4 --workers 2 --no-calibrate
)
.venv/bin/ldmscan -v train fit "${FIT[@]}" --init "$INIT" --out "$WORK/d2.safetensors" \
  --steps "${STEPS:-600}" --lr 4e-4 --warmup-steps 30
.venv/bin/ldmscan -v train fit "${FIT[@]}" --init "$WORK/d2.safetensors" \
  --out "$WORK/detector.safetensors" --steps 400 --lr 2e-4 --warmup-steps 10 --seed 1

# 4. Thresholds from >= 1,000 real images (photos and art) of sources never fitted on.
.venv/bin/ldmscan train calibrate --detector "$WORK/detector.safetensors" \
  --real "$WORK/set/calibrate" --tries 1 --tries 3 --tries 5

# 5. Evaluate on dev (pixels only; thumbnails out) and record the numbers in the card.
.venv/bin/ldmscan train eval --detector "$WORK/detector.safetensors" \
  --real "$SHARED/data/dev/real" --generated "$SHARED/data/dev/generated" \
  --manifest "$SHARED/data/dev/MANIFEST.tsv" --out "$WORK/eval" \
  --tries 1 --tries 3 --tries 5 --record-as dev
cp "$WORK/set/training-set.tsv" "$WORK/detector.training-set.tsv"

# 6. The card says what the detector is and what it may be used for.
.venv/bin/python - "$WORK/detector.safetensors" "${VERSION:-0.3.0}" <<'PY'
import sys
from ldmscan.detector import load_detector, save_detector, stored_in_half_precision
path = sys.argv[1]
detector = load_detector(path)
detector.card.version = sys.argv[2]
detector.card.notes = (
    "0.3.0: 0.2.0 (aligned pairs of training photos and their TAESD-family reconstructions) "
    "fine-tuned on images that real LDM decoders made (harvested from public repositories, "
    "labelled by latent space) against camera photos and human-made art, renders and "
    "screenshots, mixed with aligned pairs through sharpened SD1/SDXL surrogate decoders; "
    "calibrated on real photos and art from sources never fitted on. training-set.tsv beside "
    "the file lists every image with its source and role. All training images are for "
    "research use only, and so is this detector."
)
save_detector(detector.model, detector.card, path, half=stored_in_half_precision(path))
PY

# 7. 0.5.0 (docs/RESULTS.md, "Session 8 tries"): 0.3.0 (D3) continued 400 steps on the same
#    pools (with the 400 BSDS500 photos of scanned film, the kind of real photo dev's worst false
#    positives are), averaged with D3 (a model soup), recalibrated; then the attribution head:
#    a logistic regression on the stage statistics of the engine's crops of the harvested images
#    labelled by latent space (upscaled and composite ones left out: an upscaler repaints the
#    decoder's trace); its confidence is set on the calibration images. Photos through the TAESD
#    stand-ins (`--reconstructions`) made the head worse. ~35 CPU minutes.
#    The split adds BSDS500 as a fitted source; every other image keeps its role.
split_set5 "$WORK/set5"
FIT5=("${FIT[@]//$WORK\/set\//$WORK/set5/}")  # the same options over the new split
.venv/bin/ldmscan -v train fit "${FIT5[@]}" --init "$WORK/detector.safetensors" \
  --out "$WORK/d5.safetensors" --steps 400 --lr 2e-4 --warmup-steps 10 --seed 3
.venv/bin/ldmscan train soup "$WORK/detector.safetensors" "$WORK/d5.safetensors" \
  --out "$WORK/soup.safetensors"
.venv/bin/ldmscan train calibrate --detector "$WORK/soup.safetensors" \
  --real "$WORK/set5/calibrate" --tries 1 --tries 3 --tries 5
attribute_and_evaluate "$WORK" "$WORK/soup.safetensors" 0.5.0

# 8. 0.6.0 (docs/RESULTS.md, "Session 10 tries", D9): 0.5.0's detection weights continued 400
#    steps on set5 with the fitted art counted twice among the negatives and each fitted
#    generated image linked round(sqrt(25 / images of its source)) times (at most 3), so the
#    largest sources weigh less; recalibrated, a new attribution head. ~30 CPU minutes.
NAME=d9 ART_COPIES=2 BALANCE_SOURCES=1 EVALUATE=0 VERSION=0.6.0 \
  SHIPPED="$WORK/detector-0.5.0.safetensors" scripts/try_continue.sh "$WORK"
attribute_and_evaluate "$WORK" "$WORK/d9.safetensors" 0.6.0
prepend_notes "$WORK/detector-0.6.0.safetensors" "$WORK/detector-0.5.0.safetensors" \
  "0.6.0: 0.5.0's detection weights fine-tuned 400 more steps on the same pools, with the " \
  "human-made art counted twice among the negatives and the images real LDM decoders made " \
  "weighted by source repository (the few large sources count less), recalibrated on 1,889 real " \
  "photos and art from sources never fitted on, with a new attribution head (which latent " \
  "space: sd1-2, sdxl, sd3, flux1, flux2)."

# 9. 0.7.0 (docs/RESULTS.md, "Session 11 tries", D16): 0.5.0's detection weights continued 400
#    steps as in step 8 but on set6 (set5 plus the 22 Kandinsky 2.1 and Kolors images of
#    training/manifests/generated-extra.tsv, rebuilt into work/harvest/generated-extra by
#    build.py --manifest from mirrors of its three repositories), seed 7; the surrogates stay
#    step 2's; recalibrated, a new attribution head. ~30 CPU minutes.
NAME=d16 SPLIT=set6 SEED=7 ART_COPIES=2 BALANCE_SOURCES=1 EVALUATE=0 VERSION=0.7.0 \
  INIT="$WORK/detector-0.5.0.safetensors" SHIPPED="$WORK/detector-0.6.0.safetensors" \
  scripts/try_continue.sh "$WORK"
attribute_and_evaluate "$WORK" "$WORK/d16.safetensors" 0.7.0 "$WORK/set6"
prepend_notes "$WORK/detector-0.7.0.safetensors" "$WORK/detector-0.6.0.safetensors" \
  "0.7.0: 0.5.0's detection weights fine-tuned 400 steps as for 0.6.0 (art counted twice, " \
  "generated images weighted by source), with 22 more generated images among the positives " \
  "(Kandinsky 2.1 and Kolors + LoRA, families the harvest lacked), another seed; recalibrated " \
  "on the same real photos and art from sources never fitted on, with a new attribution head."

# 10. 0.8.0 (docs/RESULTS.md, "Session 12", long soup): D16 fitted again for 800 steps at its
#     seed (D17) and at D14's (D18), the three averaged (a model soup of the three fits' weights;
#     the soup keeps D16's card), recalibrated, a new attribution head. ~55 CPU minutes.
for name_seed in d17:7 d18:6; do
  NAME=${name_seed%:*} SEED=${name_seed#*:} STEPS=800 SPLIT=set6 ART_COPIES=2 BALANCE_SOURCES=1 EVALUATE=0 VERSION=0.8.0 \
    INIT="$WORK/detector-0.5.0.safetensors" SHIPPED="$WORK/detector-0.7.0.safetensors" \
    scripts/try_continue.sh "$WORK"
done
.venv/bin/ldmscan train soup "$WORK/d16.safetensors" "$WORK/d17.safetensors" \
  "$WORK/d18.safetensors" --out "$WORK/long-soup.safetensors"
.venv/bin/ldmscan train calibrate --detector "$WORK/long-soup.safetensors" \
  --real "$WORK/set6/calibrate" --tries 1 --tries 3 --tries 5
attribute_and_evaluate "$WORK" "$WORK/long-soup.safetensors" 0.8.0 "$WORK/set6"
prepend_notes "$WORK/detector-0.8.0.safetensors" "$WORK/detector-0.7.0.safetensors" \
  "0.8.0: the weight average (model soup) of 0.7.0's detection weights and two more fits of its " \
  "recipe for 800 steps instead of 400 (seeds 7 and 6), recalibrated on the same real photos " \
  "and art from sources never fitted on, with a new attribution head; the recipe recorded in " \
  "this card is 0.7.0's, the first ingredient."
