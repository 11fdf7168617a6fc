#!/usr/bin/env bash
# What scripts/gpu_check.sh needs beside the repository on the device tool's machine (64 MiB in
# all travel), made here: .gpupack/ (32 whole training photos, the central 384-px window of 32
# fitted generated images as PNG, the TAESD-family weights) and .whl/ (the packages the
# device's Python lacks). Both are ignored through .git/info/exclude; the run carries them:
#   run(command='COUNT=4000 scripts/gpu_check.sh $OUT', carry=['.gpupack', '.whl'])
# Needs runs/set6 (`split_set6` in scripts/recipe.sh, or any try_continue.sh run with SPLIT=set6).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}; SET=${SET:-runs/set6}
grep -qx '/.gpupack/' .git/info/exclude || echo /.gpupack/ >> .git/info/exclude
grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
rm -rf .gpupack; mkdir -p .gpupack/photos .gpupack/generated .gpupack/models
cp "$SHARED"/models/* .gpupack/models/
.venv/bin/python - "$SHARED/data/train/real" "$SET/fit/generated" <<'PY'
import shutil
import sys
from pathlib import Path

from PIL import Image

photos, generated = (Path(a) for a in sys.argv[1:])
for path in sorted(photos.iterdir())[::17][:32]:
    shutil.copy(path, Path(".gpupack/photos") / path.name)
side = 384  # lossless windows: the decoder's fingerprint must survive the trip
for path in sorted(generated.iterdir())[::11][:32]:
    image = Image.open(path.resolve()).convert("RGB")
    left, top = max(0, (image.width - side) // 2), max(0, (image.height - side) // 2)
    window = image.crop((left, top, min(image.width, left + side), min(image.height, top + side)))
    window.save(Path(".gpupack/generated") / f"{path.stem}.png")
PY
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
  exifread==3.5.1 sd-parsers==0.6 defusedxml==0.7.1 diffusers==0.42.1 importlib_metadata==10.2.0
du -sh .gpupack .whl
