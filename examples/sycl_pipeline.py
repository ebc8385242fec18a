"""The SyCL pipeline in one readable script, through listrank's Python API.

The method on its own, synthetic lists only (`make demo`, which drives the CLI, trains on the
domain's real pairs instead: the better recipe with the bundled 135M LLM, docs/experiments.md d):

  1. gen    an LLM writes passages at four relevance levels (3 perfectly relevant, 2 highly
            relevant, 1 related, 0 irrelevant) for real MS MARCO training queries
  2. audit  does an off-the-shelf encoder score the levels in that order? (a PNG)
  3. train  a bi-encoder on those ranked lists with the list-wise Wasserstein loss
  4. eval   the trained model next to the untrained base and BM25, with significance tests

    LISTRANK_DATA=../shared/data python examples/sycl_pipeline.py --out runs/example-sycl

Every stage skips its work when its output exists (gen and train resume an interrupted run), so a
second call only prints the results. The defaults fit a 2-core CPU in about 15 minutes; the GPU
recipe is in examples/sycl_gpu.sh.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from listrank import evaluate
from listrank.audit import level_audit, plot_levels, write_audit_json
from listrank.datasets import resolve
from listrank.encoder import Encoder
from listrank.formats import read_synthetic, write_run
from listrank.gen.generate import GenConfig, generate, load_queries
from listrank.pipeline import DenseSettings, retrieve
from listrank.train.config import SourceConfig, TrainConfig
from listrank.train.trainer import train

console = Console()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries-file", default=None, help="training queries (default: msmarco/train-sample)")
    parser.add_argument("--queries", type=int, default=32, help="the first N training queries")
    parser.add_argument("--eval-dataset", default="beir/scifact")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", choices=("bf16", "fp32", "auto"), default="bf16",
                        help="training precision (bf16: 3-4x fp32 on CPUs with AMX or AVX512-BF16; "
                             "use fp32 where `listrank doctor` says bf16 is emulated)")
    parser.add_argument("--out", type=Path, default=Path("runs/example-sycl"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    synth = args.out / "synth.jsonl"

    # 1. gen: the bundled SmolLM2-135M-Instruct through llama.cpp; one passage per level as in the
    #    paper. Queries already in synth.jsonl (or its rejects file) are not asked again.
    data = Path(os.environ.get("LISTRANK_DATA", "../shared/data"))  # the Makefile's default too
    queries_file = args.queries_file or data / "msmarco/train-sample/queries.tsv"
    queries, _ = load_queries(queries_file)
    summary = generate(GenConfig(output=synth, per_level=1, passage_words=50, max_tokens=800, seed=0),
                       queries[: args.queries])
    console.print(f"gen: {summary.done} new lists, {summary.rejected} rejected, {summary.already_done} done before")

    # 2. audit: the base encoder's score of each query against its own passages, by level
    lists = read_synthetic(synth)
    audit = level_audit(lists, Encoder(), name="all-MiniLM-L6-v2")
    write_audit_json(args.out / "audit.json", audit)
    plot_levels(audit, args.out / "levels.png")

    # 3. train: the SyCL recipe (mean pooling, no normalisation, temperature 1, AdamW, warmup +
    #    linear decay, group size 4, in-batch negatives) at a CPU-sized batch and a higher lr
    model_dir = args.out / "model"
    if not (model_dir / "listrank.json").exists():
        result = train(TrainConfig(
            output=str(model_dir), sources=[SourceConfig(path=str(synth))], loss="wasserstein",
            epochs=args.epochs, batch_size=args.batch_size, lr=2e-5, precision=args.precision,
            save_steps=5, resume=True,
        ))
        console.print(f"train: {result.steps} steps, {result.queries_per_second:.2f} queries/s")

    # 4. eval: index (cached) + search + trec_eval measures; the base is the baseline of the tests
    dataset = resolve(args.eval_dataset)
    split = dataset.default_split()
    qrels = dataset.qrels(split)
    systems = {
        "base": dict(dense=DenseSettings()),
        "sycl": dict(dense=DenseSettings(model=str(model_dir))),
        "bm25": dict(use_bm25=True),
    }
    results = []
    for name, how in systems.items():
        run = retrieve(dataset, split, k=1000, **how)
        write_run(args.out / f"{name}.run.jsonl", run)
        results.append(evaluate.evaluate(run, qrels, name=name))
    comparison = evaluate.compare(results)
    console.print(evaluate.results_table(results, comparison, title=f"{args.eval_dataset} {split}"))
    evaluate.write_results_json(args.out / "compare.json", results, comparison)
    for other in results[1:]:  # per-query deltas against the base
        evaluate.plot_per_query_delta(results[0], other, "nDCG@10", args.out / f"compare.{other.name}.png")


if __name__ == "__main__":
    main()
