#!/usr/bin/env bash
# The GPU run of issue 15 (item 7), prepared but not yet run on a GPU (session 12 was lent one
# but the device tool started no machine; scripts/gpu_check.sh times this script's costly parts
# on a pack small enough to travel). One script: every surrogate sharpened longer, every
# training photo through every surrogate at full size, and a longer fit of a larger network
# (stride-1 stem: 4x the compute per crop, the highest frequencies kept) on the full pools.
# Needs what scripts/train_default.sh needs (work/harvest, runs/set from `train split`): 1.3 GB
# of images, more than the device tool carries (64 MiB), so it runs where they are built.
# Usage: scripts/gpu_train.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}; WORK=${1:-runs/gpu}; SET=${SET:-runs/set}
mkdir -p "$WORK"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

# 1. All five decoders, 600 steps each on 256-px crops; training photos through all five, whole.
SHARPEN_STEPS=${SHARPEN_STEPS:-600} CROP=256 RECON="$WORK/recon-sharp" \
  scripts/train_surrogates.sh "$SET" "$WORK/surrogates" 2>&1 | tail -20
# (train_surrogates.sh reconstructs 256-px windows, one autoencoder per photo; on a GPU add
#  the full images through every autoencoder as well)
.venv/bin/ldmscan train reconstruct --autoencoder taesd --autoencoder taesdxl \
  --autoencoder taesd3 --autoencoder taef1 --autoencoder taef2 --weights-dir "$WORK/surrogates" \
  --src "$SHARED/data/train/real" --out "$WORK/recon-full" --batch-size 8

# 2. A longer fit of a larger network on pairs + labelled images, then calibrate and evaluate.
INIT=$WORK/init-0.2.0.safetensors
[ -f "$INIT" ] || git show 04c1f41:ldmscan/models/default.safetensors > "$INIT"
.venv/bin/ldmscan -v train fit \
  --positives "$SET/fit/generated" --negatives "$SET/fit/photo" --negatives "$SET/fit/art" \
  --labelled-batch 64 --real "$SHARED/data/train/real" \
  --reconstructions "$WORK/recon-full" --reconstructions "$WORK/recon-sharp" --batch-pairs 32 \
  --training-set "$SET/training-set.tsv" --out "$WORK/detector.safetensors" \
  --name ldmscan-lite0-s1 --version 0.4.0-gpu --init "$INIT" --stem-stride "${STRIDE:-1}" \
  --crop-size 128 --score-crop-size 192 --tries 5 --placement smoothest \
  --steps "${STEPS:-4000}" --lr 4e-4 --warmup-steps 100 --smooth-pick 4 --workers 8 --no-calibrate
.venv/bin/ldmscan train calibrate --detector "$WORK/detector.safetensors" \
  --real "$SET/calibrate" --tries 1 --tries 5
scripts/eval_candidate.sh "$WORK/detector.safetensors" "$WORK/eval" "$SET"
