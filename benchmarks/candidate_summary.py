"""One summary of a candidate's evaluation (scripts/eval_candidate.sh) against issue 15's targets.

python benchmarks/candidate_summary.py runs/d1/eval [--mode 5_tries]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def summarise(out: Path, mode: str) -> dict:
    dev = json.loads((out / "dev" / "eval.json").read_text())
    val = json.loads((out / "harvest-validate" / "eval.json").read_text())
    first = next(iter(dev["modes"][mode]))  # original, or thumb64 for the baseline
    m = dev["modes"][mode]
    row = {
        "detector": f"{dev['detector']['name']} {dev['detector']['version']}",
        "mode": mode,
        "variant": first,
        "dev_auc": m[first].get("auc"),
        "dev_tpr@1%": m[first].get("tpr@0.01"),
        "dev_tpr@0.1%": m[first].get("tpr@0.001"),
        "dev_jpeg90_auc": m.get("reencoded_jpeg90", {}).get("auc"),
        "dev_half_size_auc": m.get("rescale0.5", {}).get("auc"),
    }
    card1 = m[first].get("at_card_threshold_fpr0.01")
    if card1:
        row["dev_card1%_tpr"] = card1["tpr"]
        row["dev_card1%_real_fpr"] = card1["fpr"]
    v = val["modes"][mode][next(iter(val["modes"][mode]))]
    row["validate_auc"] = v.get("auc")
    row["validate_tpr@1%"] = v.get("tpr@0.01")
    if v.get("at_card_threshold_fpr0.01"):
        row["validate_art_fpr_at_card1%"] = v["at_card_threshold_fpr0.01"]["fpr"]
        row["validate_generated_tpr_at_card1%"] = v["at_card_threshold_fpr0.01"]["tpr"]
    families = m[first].get("per_family", {})
    row["families"] = {k: round(f["auc"], 3) for k, f in families.items() if f["n"] >= 3}
    # the real images that decide TPR at a low false-positive rate: the highest-scoring ones
    key = f"score_{mode.split('_')[0]}"
    reals = sorted(
        ((i[key], Path(p).name) for p, i in dev.get("per_image", {}).items() if i["label"] == 0),
        reverse=True,
    )
    row["real_top"] = reals[:3]
    row["real_mean"] = sum(s for s, _ in reals) / len(reals) if reals else None
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--mode", default="5_tries")
    args = parser.parse_args()
    for mode in sorted({"1_tries", args.mode}):
        row = summarise(args.out, mode)
        families, top, mean = row.pop("families"), row.pop("real_top"), row.pop("real_mean")
        print(" | ".join(f"{k} {_fmt(v) if isinstance(v, float) else v}" for k, v in row.items()))
        print("  families (n>=3) AUC: " + ", ".join(f"{k} {v:.3f}" for k, v in families.items()))
        shown = ", ".join(f"{name} {score:.3f}" for score, name in top)
        print(f"  dev real images: mean score {_fmt(mean)}; highest {shown}")


if __name__ == "__main__":
    main()
