"""Overhead of listrank's search and eval over direct faiss and pytrec_eval calls on the same inputs.

search: the flat index's `rank` (exact inner product, then the run dict keyed by doc ids) vs
        `faiss.IndexFlatIP.search` (raw score/row arrays) with identical embeddings (SciFact-sized:
        5,183 x 384, 300 queries); also the flat kind's search alone (no run), to show where time goes.
        --threads sets faiss's and BLAS's threads alike (default 1).
eval:   `listrank.evaluate.evaluate` (nDCG@10, MRR@10, R@100, MAP@100 + self-hit filter) vs one
        `pytrec_eval.RelevanceEvaluator(...).evaluate` with the same measures, on real runs.
Best of interleaved repeats (noise only makes a run slower).

    LISTRANK_DATA=../shared/data python benchmarks/bench_search_eval.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pytrec_eval

from listrank.datasets import resolve
from listrank.evaluate import evaluate, parse_metrics, trec_eval_measures
from listrank.formats import read_run
from listrank.retrieval.flat import FlatIndex


def best_of(repeats: int, **fns) -> dict[str, float]:
    times = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name] = min(times[name], time.perf_counter() - start)
    return times


def bench_search(repeats: int, k: int) -> tuple[float, float]:
    ds = resolve("beir/scifact")
    docids = [d.id for d in ds.corpus]
    queries = ds.queries("test")
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((len(docids), 384), dtype=np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    q = rng.standard_normal((len(queries), 384), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "embeddings.npy", docs)
        (Path(tmp) / "docids.txt").write_text("".join(f"{d}\n" for d in docids))
        (Path(tmp) / "meta.json").write_text('{"kind": "dense"}')
        index = FlatIndex.open(tmp)
        index.embeddings, index._docid_array  # loaded once per opened index, like the raw one below
        raw = faiss.IndexFlatIP(384)
        raw.add(docs)
        qids = [x.id for x in queries]
        t = best_of(repeats, listrank=lambda: index.rank(qids, q, k), faiss=lambda: raw.search(q, k),
                    topk=lambda: index.search_embeddings(q, k))
    return t["listrank"], t["faiss"], t["topk"]


def bench_eval(repeats: int, run_path: Path, dataset: str, relevance_level: int) -> tuple[float, float]:
    ds = resolve(dataset)
    qrels = ds.qrels("test")
    run = read_run(run_path)
    metrics = parse_metrics(None)
    measures = trec_eval_measures(metrics)

    def direct():
        per_query = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=relevance_level).evaluate(run)
        return {m: np.mean([v[m] for v in per_query.values()]) for m in next(iter(per_query.values()))}

    t = best_of(repeats, listrank=lambda: evaluate(run, qrels, metrics, relevance_level=relevance_level),
                pytrec_eval=direct)
    return t["listrank"], t["pytrec_eval"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:
        pass
    data = Path(os.environ["LISTRANK_DATA"])
    print(f"{'task':44s} {'listrank ms':>12s} {'direct ms':>10s} {'overhead':>9s}")
    for k in (10, 100, 1000):
        ours, theirs, topk = bench_search(args.repeats, k)
        print(f"{f'search scifact 300q x 5183d, k={k} (vs faiss)':44s} {ours*1e3:12.2f} {theirs*1e3:10.2f} "
              f"{(ours / theirs - 1) * 100:+8.1f}%   (top-k alone {topk*1e3:.2f} ms, run dict {(ours-topk)*1e3:.2f} ms)")
    for name in ("dl19", "dl20"):
        ours, theirs = bench_eval(args.repeats, data / f"msmarco/{name}-pool/bm25.run", f"msmarco/{name}-pool", 2)
        print(f"{f'eval {name} bm25.run (vs pytrec_eval)':44s} {ours*1e3:12.2f} {theirs*1e3:10.2f} "
              f"{(ours / theirs - 1) * 100:+8.1f}%")


if __name__ == "__main__":
    main()
