"""Dense (all-MiniLM-L6-v2) vs Lucene BM25 on a BEIR dataset, through listrank's Python API.

The same steps as `listrank eval --dataset beir/scifact [--bm25]` followed by
`listrank eval a.jsonl b.jsonl --dataset beir/scifact`, written out for readers of the code:

    LISTRANK_DATA=../shared/data python examples/dense_vs_bm25.py --dataset beir/scifact --out runs/example
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from listrank import bm25, evaluate
from listrank.datasets import resolve
from listrank.encoder import Encoder
from listrank.formats import write_run
from listrank.index import build_dense_index
from listrank.search import search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beir/scifact")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, default=Path("runs/example"))
    args = parser.parse_args()

    dataset = resolve(args.dataset)            # $LISTRANK_DATA, then the cache, then BEIR's download
    queries = dataset.queries(args.split)      # the queries judged in this split
    qrels = dataset.qrels(args.split)

    # Dense: encode the corpus once into an index folder, then search it with the same encoder.
    encoder = Encoder(max_length=256)          # the bundled all-MiniLM-L6-v2: mean pooling, normalised
    dense_index = build_dense_index(encoder, dataset.corpus, args.out / "dense.idx")
    dense_run = search(dense_index, queries, k=1000, encoder=encoder)

    # BM25: a Lucene index of title + text, searched with k1=0.9, b=0.4 (pyserini's BEIR setting).
    bm25.build_index(dataset.corpus_file, args.out / "bm25.idx")
    bm25_run = search(args.out / "bm25.idx", queries, k=1000)

    for name, run in (("dense", dense_run), ("bm25", bm25_run)):
        write_run(args.out / f"{name}.run.jsonl", run)

    results = [evaluate.evaluate(bm25_run, qrels, name="BM25"), evaluate.evaluate(dense_run, qrels, name="MiniLM")]
    comparison = evaluate.compare(results)     # paired t-test + randomization test, Holm-corrected
    Console().print(evaluate.results_table(results, comparison, title=f"{args.dataset} {args.split}"))
    evaluate.write_results_json(args.out / "compare.json", results, comparison)
    evaluate.plot_per_query_delta(results[0], results[1], "nDCG@10", args.out / "compare.png")


if __name__ == "__main__":
    main()
