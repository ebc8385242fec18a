"""Markdown tables for docs/experiments.md from the `listrank eval ... -o compare.json` files.

    python benchmarks/exp_tables.py runs/exp/dl/dl20.compare.json [more.json ...] [--metrics nDCG@10,MRR@10]

Each row is a run with its mean per metric; against the comparison's baseline it adds the delta
and the Holm-corrected randomization-test p-value, with † where p < alpha (the same mark as the
CLI table).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def table(path: Path, metrics: list[str] | None) -> str:
    obj = json.loads(path.read_text())
    runs, comparison = obj["runs"], obj.get("comparison") or {}
    metrics = metrics or list(runs[0]["aggregate"])
    rows = {(r["run"], r["metric"]): r for r in comparison.get("rows", [])}
    alpha = comparison.get("alpha", 0.05)
    head = ["run"] + [f"{m} (Δ, p)" if rows else m for m in metrics]
    lines = [f"`{path}`, baseline **{obj['baseline']}**, {runs[0]['n_queries']} queries", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        cells = [run["run"]]
        for m in metrics:
            value = run["aggregate"][m]
            row = rows.get((run["run"], m))
            if row is None:
                cells.append(f"{value:.4f}")
            else:
                mark = "†" if row["p_randomization_holm"] < alpha else ""
                cells.append(f"{value:.4f}{mark} ({row['delta']:+.4f}, {row['p_randomization_holm']:.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--metrics", default=None, help="comma-separated; default: all in the file")
    args = parser.parse_args()
    metrics = args.metrics.split(",") if args.metrics else None
    print("\n\n".join(table(f, metrics) for f in args.files))


if __name__ == "__main__":
    main()
