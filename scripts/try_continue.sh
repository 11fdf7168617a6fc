#!/usr/bin/env bash
# Tries D7-D16 (docs/RESULTS.md, "Session 10 tries" and "Session 11 tries"; D9 is step 8 of
# train_default.sh, 0.6.0): detection weights (INIT, default SHIPPED) continued STEPS (400)
# steps on SPLIT (set5), then calibrated; unless EVALUATE=0, also (unless SOUP=0) the soup of
# that with SHIPPED, calibrated, and both evaluated (scripts/eval_candidate.sh), with SHIPPED
# evaluated beside them once.
# ART_COPIES=2 (D7, D9) counts the fitted art twice among the negatives (a folder of links
# beside fit/art: art 23% of the negatives instead of 13%); ART_COPIES=1 (D8) is set5 as it is.
# BALANCE_SOURCES=1 (D9) also links each fitted generated image round(sqrt(25 / images of its
# source)) times, at most 3, so the two largest sources (75 and 46 of 346) weigh less;
# SOURCE_POWER=1 MAX_COPIES=5 (D11) makes that round(25 / images), at most 5 (the largest source
# 12% of the positives instead of 15%). BALANCE_NEGATIVES=1 (D12) links the fitted photos and art
# round(sqrt(NEGATIVE_TARGET (200) / images of their source)) times, at most NEGATIVE_MAX_COPIES
# (5): the training photos (568) go from 37% of the photo and art rows to 24%.
# SOUP=0 skips the soup with SHIPPED. D10 is D9 with SEED=6 (the seed noise); D13 is D9 on
# SPLIT=set6, D14 and D16 the same with SEED=6 and 7 (D15: D9 with SEED=7).
# Ship rule: mean of dev AUC and harvest-validate AUC at 5 tries above the shipped one's.
# Needs work/harvest rebuilt (see scripts/train_default.sh). On a 2-core CPU ~15 minutes to
# sharpen the surrogates the first time, then ~12-20 minutes per try (fit, calibration, eval).
# Usage: NAME=d9 ART_COPIES=2 BALANCE_SOURCES=1 INIT=<0.5.0> scripts/try_continue.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}; H=$SHARED/data/harvest
HARVEST=${HARVEST:-work/harvest}
source scripts/recipe.sh
WORK=${1:-runs}
SHIPPED=${SHIPPED:-ldmscan/models/default.safetensors}
# D10-D16 start where D9 did, from 0.5.0: git show 6e17b3e^:ldmscan/models/default.safetensors
INIT=${INIT:-$SHIPPED}
SPLIT=${SPLIT:-set5}; NAME=${NAME:-d7}; ART_COPIES=${ART_COPIES:-2}; STEPS=${STEPS:-400}
SEED=${SEED:-5}; BALANCE_SOURCES=${BALANCE_SOURCES:-0}; BALANCE_NEGATIVES=${BALANCE_NEGATIVES:-0}
SOURCE_POWER=${SOURCE_POWER:-0.5}; MAX_COPIES=${MAX_COPIES:-3}
NEGATIVE_TARGET=${NEGATIVE_TARGET:-200}; NEGATIVE_MAX_COPIES=${NEGATIVE_MAX_COPIES:-5}
mkdir -p "$WORK"

# SPLIT=set5: the split of step 7 of train_default.sh (0.6.0's training-set.tsv); set6 (D13) adds
# the generated images of training/manifests/generated-extra.tsv to the fitted positives.
SET=$WORK/$SPLIT
[ -f "$SET/training-set.tsv" ] || "split_$SPLIT" "$SET"
cmp -s "$SET/training-set.tsv" "${SHIPPED%.safetensors}.training-set.tsv" ||
  echo "note: $SET/training-set.tsv differs from the shipped one" >&2

# The sharpened SD1/SDXL surrogates and the training photos through all five (as for 0.3.0),
# sharpened on set5's generated images whatever SPLIT is: D13-D16 reused set5's, and set6's
# Kolors JPEGs (latent space sdxl) would change the SDXL surrogate and every fit after it.
[ -f "$WORK/set5/training-set.tsv" ] || split_set5 "$WORK/set5"
[ -d "$WORK/recon-sharp" ] || SHARPEN="taesd taesdxl" SHARPEN_STEPS=120 CROP=192 \
  RECON="$WORK/recon-sharp" scripts/train_surrogates.sh "$WORK/set5" "$WORK/surrogates"

# The fitted art again: links under another folder are other paths, so each is counted again.
negatives=(--negatives "$SET/fit/photo" --negatives "$SET/fit/art")
for ((copy = 2; copy <= ART_COPIES; copy++)); do
  rm -rf "$WORK/art-copy$copy"; mkdir -p "$WORK/art-copy$copy"
  for f in "$SET"/fit/art/*; do ln -s "$(realpath "$f")" "$WORK/art-copy$copy/"; done
  negatives+=(--negatives "$WORK/art-copy$copy")
done

# link_extra_copies LABEL TARGET POWER MOST DIR: each fitted image of LABEL linked again under
# DIR/copyK (K = 2..c), c = round((TARGET / images of its source) ^ POWER), at most MOST, so
# the sampler (uniform within a class) draws large sources less often than their size says.
link_extra_copies() {
  rm -rf "$5"
  awk -F'\t' -v label="$1" -v target="$2" -v power="$3" -v most="$4" '
    $3 == "fit" && $4 == label { n[$2]++; src[NR] = $2; file[NR] = $7 }
    END { for (i in file) { c = int((target / n[src[i]]) ^ power + 0.5); if (c > most) c = most
          for (k = 2; k <= c; k++) print k "\t" file[i] } }' "$SET/training-set.tsv" |
    while IFS=$'\t' read -r copy file; do
      mkdir -p "$5/copy$copy"
      ln -s "$(realpath "$file")" "$5/copy$copy/"
    done
  mkdir -p "$5"
}

positives=(--positives "$SET/fit/generated")
if [ "$BALANCE_SOURCES" = 1 ]; then
  link_extra_copies generated 25 "$SOURCE_POWER" "$MAX_COPIES" "$WORK/generated-extra"
  positives+=(--positives "$WORK/generated-extra")
fi
if [ "$BALANCE_NEGATIVES" = 1 ]; then
  link_extra_copies real "$NEGATIVE_TARGET" 0.5 "$NEGATIVE_MAX_COPIES" "$WORK/negatives-extra"
  negatives+=(--negatives "$WORK/negatives-extra")
fi

.venv/bin/ldmscan -v train fit \
  "${positives[@]}" "${negatives[@]}" --labelled-batch 32 \
  --real "$SHARED/data/train/real" --reconstructions "$WORK/recon-sharp" --batch-pairs 8 \
  --training-set "$SET/training-set.tsv" \
  --name ldmscan-lite0 --version "${VERSION:-0.6.0}" --architecture tf_efficientnet_lite0 \
  --crop-size 128 --score-crop-size 192 --tries 5 --placement smoothest \
  --smooth-pick 4 --workers 2 --no-calibrate \
  --init "$INIT" --out "$WORK/$NAME.safetensors" --steps "$STEPS" --lr 2e-4 --warmup-steps 10 \
  --seed "$SEED"

calibrate() {
  .venv/bin/ldmscan train calibrate --detector "$1" --real "$SET/calibrate" \
    --tries 1 --tries 3 --tries 5
}
calibrate "$WORK/$NAME.safetensors"
[ "${EVALUATE:-1}" = 1 ] || exit 0  # train_default.sh step 8 needs the calibrated fit only

candidates=("$NAME")
if [ "${SOUP:-1}" = 1 ]; then
  # The new fit first: the soup takes the first file's card.
  .venv/bin/ldmscan train soup "$WORK/$NAME.safetensors" "$SHIPPED" --out "$WORK/$NAME-soup.safetensors"
  calibrate "$WORK/$NAME-soup.safetensors"
  candidates+=("$NAME-soup")
fi
for d in "${candidates[@]}"; do
  scripts/eval_candidate.sh "$WORK/$d.safetensors" "$WORK/eval-$d" "$SET"
done
[ -d "$WORK/eval-shipped" ] || scripts/eval_candidate.sh "$SHIPPED" "$WORK/eval-shipped" "$SET"
