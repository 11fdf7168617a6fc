#!/usr/bin/env bash
# The recipe that produces the shipped detector (ldmscan/models/default.safetensors).
# About 20 minutes on a 2-core CPU (5 reconstructing, 12 fitting); with a GPU, raise --steps and
# drop --window.
# Usage: scripts/train_default.sh [WORKDIR]   (shared data and weights are read from ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
WORK=${1:-runs/default}
mkdir -p "$WORK"

# 1. Reconstructions: every training photo through one of the five TAESD-family autoencoders
#    (SD1/2, SDXL, SD3, FLUX.1, FLUX.2 latent spaces), central 256x256 grid-aligned window.
.venv/bin/ldmscan train reconstruct \
  --autoencoder taesd --autoencoder taesdxl --autoencoder taesd3 --autoencoder taef1 \
  --autoencoder taef2 --weights-dir "$SHARED/models" \
  --src "$SHARED/data/train/real" --out "$WORK/recon" --window 256 --per-image 1

# 2. Fit EfficientNet-Lite0 (ImageNet weights) on aligned pairs; 15% of the photos are held
#    out and used to calibrate the thresholds (for the "smoothest" placement) when fitting ends.
#    Shipped 0.2.0 = the 0.1.0 weights from this step, recalibrated for placement "smoothest"
#    (`ldmscan train calibrate --placement smoothest`); this step now writes that directly.
.venv/bin/ldmscan -v train fit \
  --real "$SHARED/data/train/real" --reconstructions "$WORK/recon" \
  --out "$WORK/detector.safetensors" --name ldmscan-lite0 --version "${VERSION:-0.2.0}" \
  --architecture tf_efficientnet_lite0 --init imagenet-lite0 \
  --crop-size 128 --score-crop-size 192 --tries 5 \
  --placement smoothest --steps "${STEPS:-1500}" --batch-pairs 16 --lr 8e-4 --workers 2

# 3. Evaluate on the dev set (pixels only; thumbnails left out) with the robustness grid.
.venv/bin/ldmscan train eval --detector "$WORK/detector.safetensors" \
  --real "$SHARED/data/dev/real" --generated "$SHARED/data/dev/generated" \
  --manifest "$SHARED/data/dev/MANIFEST.tsv" --out "$WORK/eval"
