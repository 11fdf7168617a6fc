#!/usr/bin/env bash
# Sharpened surrogate decoders (issue 15, item 1): fine-tune each TAESD-family decoder on the
# harvested images of its latent space (fitting rows of training-set.tsv; a quarter of the
# sources held out to measure the gain), then reconstruct the training photos through them.
# Usage: scripts/train_surrogates.sh [SET] [OUT]    (SET: `train split` folder)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}; SET=${1:-runs/set}; OUT=${2:-runs/surrogates}
STEPS=${STEPS:-200}; CROP=${CROP:-256}
mkdir -p "$OUT"
cp -n "$SHARED"/models/taef2_* "$OUT"/ 2>/dev/null || true   # replaced below if FLUX.2 rows exist
for ae in taesd taesdxl taesd3 taef1 taef2; do
  .venv/bin/ldmscan -v train sharpen --autoencoder "$ae" --weights-dir "$SHARED/models" \
    --training-set "$SET/training-set.tsv" --steps "$STEPS" --batch 4 --crop "$CROP" --out "$OUT" \
    || echo "sharpen $ae failed"
done
.venv/bin/ldmscan train reconstruct \
  --autoencoder taesd --autoencoder taesdxl --autoencoder taesd3 --autoencoder taef1 \
  --autoencoder taef2 --weights-dir "$OUT" \
  --src "$SHARED/data/train/real" --out "${RECON:-runs/recon-sharp}" --window 256 --per-image 1
