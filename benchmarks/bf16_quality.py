"""Does bf16 autocast change retrieval quality? nDCG@10 with fp32 vs bf16 encoding, same model and data.

listrank encodes with bf16 autocast where the hardware runs it natively, on the condition that
nDCG@10 moves by less than 0.002; this script measures that condition (and the speed gained).

    LISTRANK_DATA=../shared/data python benchmarks/bf16_quality.py beir/scifact beir/nfcorpus
"""

from __future__ import annotations

import argparse
import time

from listrank.datasets import resolve
from listrank.evaluate import evaluate
from listrank.pipeline import DenseSettings, retrieve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--model", default=None)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    print(f"{'dataset':16s} {'fp32 nDCG@10':>13s} {'bf16 nDCG@10':>13s} {'delta':>8s} {'fp32 s':>8s} {'bf16 s':>8s}")
    for name in args.datasets:
        ds = resolve(name)
        split = ds.default_split()
        scores, seconds = {}, {}
        for precision in ("fp32", "bf16"):
            start = time.perf_counter()
            run = retrieve(ds, split, dense=DenseSettings(model=args.model, max_length=args.max_length,
                                                          precision=precision), k=100, show_progress=False)
            seconds[precision] = time.perf_counter() - start
            scores[precision] = evaluate(run, ds.qrels(split), ["ndcg@10"]).aggregate["nDCG@10"]
        delta = scores["bf16"] - scores["fp32"]
        print(f"{name:16s} {scores['fp32']:13.4f} {scores['bf16']:13.4f} {delta:+8.4f} "
              f"{seconds['fp32']:8.0f} {seconds['bf16']:8.0f}", flush=True)


if __name__ == "__main__":
    main()
