#!/usr/bin/env bash
# Evaluate one detector candidate the way issue 15 asks, into OUT/ (eval.json per set):
#   dev: pixels only (thumbnails out), original / re-encoded JPEG q90 / downscaled 2x, 1 and 5 tries
#   harvest-validate: generated images and human-made art from sources never fitted on
# then print one summary row (benchmarks/candidate_summary.py).
# Usage: scripts/eval_candidate.sh DETECTOR OUT [SET]   (SET: the `train split` folder, runs/set)
# Add VARIANTS="thumb64" for the content-only baseline (it scores 64-px thumbnails).
set -euo pipefail
cd "$(dirname "$0")/.."
DET=$1; OUT=$2; SET=${3:-runs/set}; SHARED=${SHARED:-../shared}
VARIANTS=${VARIANTS:-"original reencoded_jpeg90 rescale0.5"}
args=(); for v in $VARIANTS; do args+=(--variant "$v"); done
.venv/bin/ldmscan train eval --detector "$DET" \
  --real "$SHARED/data/dev/real" --generated "$SHARED/data/dev/generated" \
  --manifest "$SHARED/data/dev/MANIFEST.tsv" --out "$OUT/dev" --tries 1 --tries 5 "${args[@]}" >/dev/null
.venv/bin/ldmscan train eval --detector "$DET" \
  --real "$SET/validate/art" --generated "$SET/validate/generated" \
  --out "$OUT/harvest-validate" --tries 1 --tries 5 --variant "${VARIANTS%% *}" >/dev/null
.venv/bin/python benchmarks/candidate_summary.py "$OUT"
