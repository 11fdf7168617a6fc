# Steps shared by scripts/train_default.sh and scripts/try_continue.sh (sourced, not run).
# Both set SHARED, H (the harvest manifests) and HARVEST (the rebuilt harvest) first.

# split_set5 OUT [SPLIT OPTIONS...]: the split of train_default.sh step 7 (the session-5 pools
# plus the BSDS500 photos as a fitted source; reproduces 0.6.0's training-set.tsv).
split_set5() {
  .venv/bin/ldmscan train split --fit-pool "photo:$SHARED/data/train/real" \
    --pool "generated:$HARVEST/generated:$H/generated/MANIFEST.tsv" \
    --pool "photo:$HARVEST/real:$H/real/MANIFEST.tsv" \
    --pool "art:$HARVEST/art:$H/art/MANIFEST.tsv" \
    --pool "photo:$HARVEST/bsds500:training/manifests/bsds500.tsv" \
    --forbid-manifest "$SHARED/data/dev/MANIFEST.tsv" \
    --role EnragedAntelope/Artists-SD35L=fit --role wyrde/wyrde-comfyui-workflows=fit \
    --role BIDS/BSDS500=fit "${@:2}" --out "$1"
}

# split_set6 OUT: set5 plus the generated images of training/manifests/generated-extra.tsv
# (Kandinsky 2.1, Kolors + LoRA: families the harvest lacks), all three sources fitted. Sources
# are placed by a stable hash of their name, so every set5 row keeps its role.
split_set6() {
  split_set5 "$1" --pool "generated:$HARVEST/generated-extra:training/manifests/generated-extra.tsv" \
    --role MMqd/kandinsky-for-automatic1111=fit --role l1jiewansui/Kolors-LoRA=fit \
    --role freshman2233/Kolors-LoRA-Style-Story-Challenge-AIGC-Direction=fit
}

# attribute_and_evaluate WORK DETECTOR VERSION [SPLIT]: the attribution head on DETECTOR (written
# to WORK/detector-VERSION.safetensors, its report beside), then dev's numbers recorded in its
# card, and the split's (SPLIT, default WORK/set5) training-set.tsv copied beside it.
attribute_and_evaluate() {
  local work=$1 detector=$2 version=$3 split=${4:-$1/set5}
  local out="$work/detector-$version.safetensors"
  .venv/bin/ldmscan train attribution --detector "$detector" \
    --harvest-manifest "$H/generated/MANIFEST.tsv" --harvest-root "$HARVEST/generated" \
    --exclude-flag upscaled --exclude-flag composite \
    --calibrate-real "$split/calibrate" --forbid-sources-of "$SHARED/data/dev/MANIFEST.tsv" \
    --out "$out" --version "$version" --report "$work/attribution-$version.json"
  .venv/bin/ldmscan train eval --detector "$out" \
    --real "$SHARED/data/dev/real" --generated "$SHARED/data/dev/generated" \
    --manifest "$SHARED/data/dev/MANIFEST.tsv" --out "$work/eval-$version" \
    --tries 1 --tries 3 --tries 5 --variant original --variant reencoded_jpeg90 \
    --variant rescale0.5 --record-as dev
  cp "$split/training-set.tsv" "$work/detector-$version.training-set.tsv"
}

# prepend_notes DETECTOR PREVIOUS TEXT...: DETECTOR's card notes become TEXT (its parts joined
# as they are), a space, then PREVIOUS's notes, so each version's card keeps the history.
prepend_notes() {
  .venv/bin/python - "$1" "$2" "$(printf '%s' "${@:3}")" <<'PY'
import sys
from ldmscan.detector import load_detector, save_detector, stored_in_half_precision
path, previous, text = sys.argv[1:]
detector = load_detector(path)
detector.card.notes = text + " " + load_detector(previous).card.notes
save_detector(detector.model, detector.card, path, half=stored_in_half_precision(path))
PY
}
