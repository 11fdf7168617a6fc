"""Markdown tables for docs/RESULTS.md from an `ldmscan train eval` report.

python benchmarks/eval_tables.py runs/default/eval/eval.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(path: str) -> None:
    report = json.loads(Path(path).read_text())
    keys = ("auc", "tpr@0.001", "tpr@0.01", "tpr@0.05")
    print(
        f"detector {report['detector']['name']} {report['detector']['version']} "
        f"(sha256 {report['detector']['sha256'][:12]}), images {report['images']}, "
        f"{report['seconds']} s"
    )
    print()
    print(
        "| mode | variant | AUC | TPR@0.1% | TPR@1% | TPR@5% | TPR / FPR at card's 0.1% | "
        "TPR / FPR at card's 1% |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mode, variants in report["modes"].items():
        for variant, m in variants.items():
            card = []
            for fpr in ("0.001", "0.01"):
                at = m.get(f"at_card_threshold_fpr{fpr}")
                card.append(f"{at['tpr']:.3f} / {at['fpr']:.3f}" if at else "-")
            print(
                f"| {mode.replace('_', ' ')} | {variant} | "
                + " | ".join(f"{m[k]:.3f}" if k in m else "-" for k in keys)
                + f" | {card[0]} | {card[1]} |"
            )
    modes = list(report["modes"])
    print()
    print(
        "| generator family | n | "
        + " | ".join(f"AUC ({m.replace('_', ' ')})" for m in modes)
        + " | "
        + " | ".join(f"TPR@1% ({m.replace('_', ' ')})" for m in modes)
        + " |"
    )
    print("|---|---|" + "---|" * (2 * len(modes)))
    families = report["modes"][modes[-1]]["original"]["per_generator"]
    for family in sorted(families, key=lambda f: -families[f]["auc"]):
        row = [report["modes"][m]["original"]["per_generator"].get(family, {}) for m in modes]
        print(
            f"| {family} | {families[family]['n']} | "
            + " | ".join(f"{r.get('auc', float('nan')):.2f}" for r in row)
            + " | "
            + " | ".join(f"{r.get('tpr@0.01', float('nan')):.2f}" for r in row)
            + " |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
