#!/usr/bin/env bash
# The one device run of a session that is lent a GPU (issues 19 and 15, item 7), sized for the
# device tool: what travels is the repository plus PACK (see below), 64 MiB at most, so the
# full training pools (1.3 GB, scripts/gpu_train.sh) cannot; this measures what that script
# would spend its time on, on the pack, and the scoring speed on synthetic JPEGs.
#   1. benchmarks/bench_gpu.py: the engine (decode threads + fp16 channels-last network) and
#      the nvJPEG pipeline, 1 and 5 tries, at two batch sizes (issue 19's GPU target).
#   2. `train reconstruct`: PACK/photos through all five TAESD-family autoencoders, whole
#      images, on the GPU (gpu_train.sh step 1).
#   3. `train fit` as gpu_train.sh runs it (pairs + labelled images, 32 + 64 per step, 8
#      workers), stem stride 1 and 2: seconds per step, so its 4,000 steps can be planned.
# PACK holds photos/ (whole training photos), generated/ (384-px windows of fitted generated
# images, lossless) and models/ (a copy of ../shared/models); .whl/ the wheels the device's
# Python lacks (exifread, sd-parsers, defusedxml, diffusers, importlib_metadata). Neither is
# committed (.git/info/exclude): scripts/make_gpu_pack.sh makes both.
# Usage on the device: scripts/gpu_check.sh "$OUT"
# On this CPU, to check the script:  PY=.venv/bin/python DEVICE=cpu COUNT=8 DISTINCT=4 \
#   BATCHES=8 WORKERS=2 STEPS=2 LIMIT=2 INSTALL_WHEELS=0 scripts/gpu_check.sh /tmp/gpu-check
set -uo pipefail  # no -e: a part that fails must not lose the other parts' numbers
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}; mkdir -p "$OUT"
PACK=${PACK:-.gpupack}; PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}
COUNT=${COUNT:-3000}; DISTINCT=${DISTINCT:-200}; BATCHES=${BATCHES:-512 2048}
WORKERS=${WORKERS:-16}; STEPS=${STEPS:-100}; LIMIT=${LIMIT:-1000}
work=$(mktemp -d)

# ldmscan without building it: the package folder with scanner/, server/, training/ and
# migrations/ linked in where pyproject.toml's package-dir installs them.
site=$work/site; mkdir -p "$site"; cp -r ldmscan "$site/"
for part in scanner server training migrations; do ln -s "$PWD/$part" "$site/ldmscan/$part"; done
if [ "${INSTALL_WHEELS:-1}" = 1 ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
fi
export PYTHONPATH=$site PYTHONUNBUFFERED=1
ldmscan() { $PY -m ldmscan "$@"; }
timed() {  # timed LABEL COMMAND...: runs it, appends "LABEL seconds rc" to OUT/timings.tsv
  local label=$1 started=$EPOCHREALTIME rc; shift
  "$@"; rc=$?
  awk -v l="$label" -v a="$started" -v b="$EPOCHREALTIME" -v rc="$rc" \
    'BEGIN { printf "%s\t%.1f s\trc %d\n", l, b - a, rc }' | tee -a "$OUT/timings.tsv"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  nproc; $PY -c 'import torch, timm, PIL; print(torch.__version__, timm.__version__, PIL.__version__)'
} 2>&1 | tee "$OUT/machine.txt"

# 1. Scoring speed.
for batch in $BATCHES; do
  timed "bench_gpu batch $batch" $PY benchmarks/bench_gpu.py --device "$DEVICE" --count "$COUNT" \
    --distinct "$DISTINCT" --batch "$batch" --workers "$WORKERS" 2>&1 | tee -a "$OUT/bench_gpu.md"
done

# 2. Reconstructions through all five surrogates, whole photos.
timed reconstruct ldmscan train reconstruct --autoencoder taesd --autoencoder taesdxl \
  --autoencoder taesd3 --autoencoder taef1 --autoencoder taef2 --weights-dir "$PACK/models" \
  --src "$PACK/photos" --out "$work/recon" --batch-size 8 --limit "$LIMIT" --device "$DEVICE" 2>&1 |
  tail -5 | tee "$OUT/reconstruct.log"
echo "reconstructions: $(find "$work/recon" -name '*.png' | wc -l)" | tee -a "$OUT/reconstruct.log"

# 3. gpu_train.sh's fit, on the pack, at both stem strides (from the shipped weights).
for stride in 1 2; do
  timed "fit stride $stride" ldmscan -v train fit --positives "$PACK/generated" \
    --negatives "$PACK/photos" --labelled-batch 64 --real "$PACK/photos" \
    --reconstructions "$work/recon" --batch-pairs 32 --out "$work/fit-s$stride.safetensors" \
    --name gpu-check --version 0 --init ldmscan/models/default.safetensors \
    --stem-stride "$stride" --crop-size 128 --score-crop-size 192 --tries 5 \
    --placement smoothest --steps "$STEPS" --lr 4e-4 --warmup-steps 10 --smooth-pick 4 \
    --workers 8 --no-calibrate --device "$DEVICE" 2>&1 | grep -E "step|pairs|wrote|Error" |
    tee "$OUT/fit-s$stride.log"
done
cat "$OUT/timings.tsv"
