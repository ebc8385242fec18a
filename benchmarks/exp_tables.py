"""Markdown tables for docs/experiments.md from the `listrank eval ... -o compare.json` files.

    python benchmarks/exp_tables.py runs/exp/dl/dl20.compare.json [more.json ...] [--metrics nDCG@10,MRR@10]
    python benchmarks/exp_tables.py runs/exp/dlfull/dl20.from-dl19-cos.compare.json --seeds

Each row is a run with its mean per metric; against the comparison's baseline it adds the delta
and the Holm-corrected randomization-test p-value, with † where p < alpha (the same mark as the
CLI table).

With `--diagnosis`, the files are `benchmarks/exp_dl_diagnose.py` outputs: one table per file, a row
per (B, G, loss setting).

With `--validation`, the files are trained models' `listrank.json`: one row per run with the
validation score at step 0, the step validation picked and its score, the last step, and which
model was kept.

With `--seeds`, runs named `NAME-s<seed>` are one setting trained with several seeds: each row is a
setting with the mean ± sd (sample sd, n-1) over its seeds of each metric, the mean delta to the
baseline, and two significance summaries: `k/n†`, how many single-seed runs the `listrank eval`
comparison itself found significant (Holm over all its runs x metrics), and `p̄`, a paired
randomization test (10,000 sign flips, seed 0) of the baseline against the seed-averaged per-query
values of the setting, Holm-corrected over all settings x metrics of the table.

With `--seeds --versus NAME`, a second table compares every other setting with setting NAME
directly (not with the baseline): the difference of the seed-averaged means, and the same paired
randomization test of NAME's seed-averaged per-query values against the other setting's, Holm over
the table. That answers "is loss A better than loss B" without passing through the untrained base.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np


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


SEED_SUFFIX = re.compile(r"^(?P<name>.+)-s(?P<seed>\d+)$")


def seed_groups(runs: list[dict]) -> dict[str, list[dict]]:
    """The runs (the baseline excluded) grouped by setting: `NAME-s<seed>` -> NAME."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        m = SEED_SUFFIX.match(run["run"])
        groups.setdefault(m["name"] if m else run["run"], []).append(run)
    return groups


def seed_averaged(members: list[dict], qids: list[str], metrics: list[str]) -> np.ndarray:
    """[query, metric] values averaged over a setting's seeds."""
    return np.mean([[[r["per_query"][q][m] for m in metrics] for q in qids] for r in members], axis=0)


def seed_list(members: list[dict]) -> str:
    return ",".join(SEED_SUFFIX.match(r["run"])["seed"] if SEED_SUFFIX.match(r["run"]) else "?" for r in members)


def seed_table(path: Path, metrics: list[str] | None, permutations: int = 10_000) -> str:
    from listrank.evaluate import holm_bonferroni, paired_randomization_test

    obj = json.loads(path.read_text())
    runs, comparison = obj["runs"], obj.get("comparison") or {}
    metrics = metrics or list(runs[0]["aggregate"])
    rows = {(r["run"], r["metric"]): r for r in comparison.get("rows", [])}
    alpha = comparison.get("alpha", 0.05)
    base = runs[0]
    qids = list(base["per_query"])
    groups = seed_groups(runs[1:])
    # seed-averaged per-query values of each setting against the baseline, Holm over the table
    raw = []
    for name, members in groups.items():
        b = np.array([[base["per_query"][q][m] for m in metrics] for q in qids])
        avg = seed_averaged(members, qids, metrics)
        raw.append(np.atleast_1d(paired_randomization_test(b, avg, permutations=permutations, seed=0)))
    holm = holm_bonferroni(np.concatenate(raw)).reshape(len(groups), len(metrics)) if raw else []
    head = ["setting", "seeds"] + [f"{m} mean ± sd (Δ, k/n†, p̄)" for m in metrics]
    lines = [f"`{path}`, baseline **{base['run']}**, {base['n_queries']} queries", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.append("| " + " | ".join([base["run"], "-"] + [f"{base['aggregate'][m]:.4f}" for m in metrics]) + " |")
    for gi, (name, members) in enumerate(groups.items()):
        seeds = seed_list(members)
        cells = [name, seeds]
        for j, m in enumerate(metrics):
            values = np.array([r["aggregate"][m] for r in members])
            sd = values.std(ddof=1) if len(values) > 1 else float("nan")
            delta = values.mean() - base["aggregate"][m]
            sig = sum(1 for r in members if (row := rows.get((r["run"], m))) and row["p_randomization_holm"] < alpha)
            p = float(holm[gi][j])
            mark = "†" if p < alpha else ""
            spread = f" ± {sd:.4f}" if len(values) > 1 else " (1 seed)"
            cells.append(f"{values.mean():.4f}{spread}{mark} ({delta:+.4f}, {sig}/{len(members)}, {p:.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versus_table(path: Path, metrics: list[str] | None, versus: str, permutations: int = 10_000) -> str:
    """Each setting against setting `versus`, seed-averaged per query (see the module docstring)."""
    from listrank.evaluate import holm_bonferroni, paired_randomization_test

    obj = json.loads(path.read_text())
    runs = obj["runs"]
    metrics = metrics or list(runs[0]["aggregate"])
    qids = list(runs[0]["per_query"])
    groups = seed_groups(runs[1:])
    # runs are named after their files (TEST.from-NAME-sSEED): NAME alone is enough
    found = [name for name in groups if name == versus or name.endswith(f"from-{versus}")]
    if len(found) != 1:
        raise SystemExit(f"--versus {versus}: no single such setting in {path} (settings: {', '.join(groups)})")
    versus = found[0]
    ref = seed_averaged(groups[versus], qids, metrics)
    others = [(name, members) for name, members in groups.items() if name != versus]
    raw = [np.atleast_1d(paired_randomization_test(ref, seed_averaged(members, qids, metrics), permutations=permutations, seed=0))
           for _, members in others]
    holm = holm_bonferroni(np.concatenate(raw)).reshape(len(others), len(metrics)) if raw else []
    n_ref = len(groups[versus])
    head = ["setting", "seeds"] + [f"{m}: Δ to {versus} (p)" for m in metrics]
    lines = [f"`{path}`: each setting against **{versus}** ({n_ref} seed(s), seed-averaged per query), "
             f"{len(qids)} queries, Holm over the table", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for gi, (name, members) in enumerate(others):
        seeds = seed_list(members)
        cells = [name, seeds]
        for j, m in enumerate(metrics):
            delta = np.mean([r["aggregate"][m] for r in members]) - np.mean([r["aggregate"][m] for r in groups[versus]])
            p = float(holm[gi][j])
            cells.append(f"{delta:+.4f}{'†' if p < 0.05 else ''} ({p:.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def diagnosis_table(path: Path, metrics=None) -> str:
    obj = json.loads(path.read_text())
    scoring = "cosine" if obj["normalize"] else "dot product"
    lines = [f"`{path}`: {obj['dataset']} {obj['split']}, {scoring}, T = {obj['temperature']}, "
             f"{obj['batches']} batches per row", "",
             "| B x G | setting | target own mass | target top | descent on 3 / 2 / 1 / 0 / in-batch | own pairs ok | rel. > in-batch ok |",
             "|---|---|---|---|---|---|---|"]
    for entry in obj["grid"]:
        mp = entry["model_P"]
        lines.append(f"| {entry['B']} x {entry['G']} | *model P at the start* (logit gap to in-batch: 3 {mp['gap_3']:.1f}, "
                     f"2 {mp['gap_2']:.1f}, 1 {mp['gap_1']:.1f}, 0 {mp['gap_0']:.1f}) | {mp['own_mass']:.3f} | "
                     f"{mp['top_passage']:.3f} | | | |")
        for name, r in entry["settings"].items():
            t = r.get("target")
            push = " / ".join(f"{r[k]:+.1f}" for k in ("push_3", "push_2", "push_1", "push_0")) + f" / {r['push_inbatch']:+.3f}"
            lines.append(f"| | {name} | {t['own_mass']:.3f} | {t['top_passage']:.3f} | {push} | {r['own_pairs_ok']:.3f} | "
                         f"{r['pos_vs_inbatch_ok']:.3f} |" if t else
                         f"| | {name} | | | {push} | {r['own_pairs_ok']:.3f} | {r['pos_vs_inbatch_ok']:.3f} |")
    return "\n".join(lines)


def validation_table(paths: list[Path]) -> str:
    lines = ["| run | validation | nDCG@10 at step 0 | best step | its score | last step | final model |",
             "|---|---|---|---|---|---|---|"]
    for path in paths:
        v = json.loads(path.read_text()).get("validation") or {}
        if not v:
            continue
        last = max((h["step"] for h in v["history"]), default=0)
        where = v.get("set", {}).get("name", "")
        lines.append(f"| {path.parent.name} | {where} | {v['baseline']['score']:.4f} | {v['best']['step']} | "
                     f"{v['best']['score']:.4f} | {last} | {v['final_model']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--metrics", default=None, help="comma-separated; default: all in the file")
    parser.add_argument("--seeds", action="store_true", help="one row per setting (runs NAME-s<seed>): mean ± sd")
    parser.add_argument("--versus", default=None, metavar="NAME",
                        help="with --seeds: also a table of every setting against setting NAME directly")
    parser.add_argument("--diagnosis", action="store_true", help="the files are exp_dl_diagnose.py outputs")
    parser.add_argument("--validation", action="store_true", help="the files are trained models' listrank.json")
    args = parser.parse_args()
    if args.validation:
        print(validation_table(args.files))
        return
    metrics = args.metrics.split(",") if args.metrics else None
    make = diagnosis_table if args.diagnosis else seed_table if args.seeds else table
    print("\n\n".join(make(f, metrics) for f in args.files))
    if args.seeds and args.versus:
        print("\n\n" + "\n\n".join(versus_table(f, metrics, args.versus) for f in args.files))


if __name__ == "__main__":
    main()
