#!/usr/bin/env bash
# Sharpened surrogate decoders (issue 15, item 1): fine-tune TAESD-family decoders on the
# harvested images of their latent space (fitting rows of training-set.tsv; a quarter of the
# sources held out to measure the gain), then reconstruct the training photos through them.
# Usage: scripts/train_surrogates.sh [SET] [OUT]    (SET: `train split` folder)
# SHARPEN picks the decoders (default all five; the others are copied as shipped).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}; SET=${1:-runs/set}; OUT=${2:-runs/surrogates}
SHARPEN_STEPS=${SHARPEN_STEPS:-200}; CROP=${CROP:-256}
SHARPEN=${SHARPEN:-"taesd taesdxl taesd3 taef1 taef2"}
mkdir -p "$OUT"
cp "$SHARED"/models/taes* "$SHARED"/models/taef* "$OUT"/   # the shipped weights, then sharpened
for ae in $SHARPEN; do
  .venv/bin/ldmscan -v train sharpen --autoencoder "$ae" --weights-dir "$SHARED/models" \
    --training-set "$SET/training-set.tsv" --steps "$SHARPEN_STEPS" --batch 4 --crop "$CROP" \
    --out "$OUT"
done
.venv/bin/ldmscan train reconstruct \
  --autoencoder taesd --autoencoder taesdxl --autoencoder taesd3 --autoencoder taef1 \
  --autoencoder taef2 --weights-dir "$OUT" \
  --src "$SHARED/data/train/real" --out "${RECON:-runs/recon-sharp}" --window 256 --per-image 1
