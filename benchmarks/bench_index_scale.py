"""Index kinds at growing scale: build time, memory, queries/s and recall@100 against exact search,
plus nDCG@10 of each kind on real encoded BEIR corpora.

Part 1 (scale): seeded random unit vectors, 384-d float32 (the size of all-MiniLM-L6-v2
embeddings), n = 10k, 100k, 1M; queries are random unit vectors too. Uniform random vectors have no
cluster structure, which is the hardest case for HNSW and IVF-PQ: recall on real embeddings is
higher (part 2 shows nDCG on real ones). For each kind: build seconds (flat: writing the
embeddings; hnsw: graph insertion; ivfpq: k-means + PQ training + adding), resident memory of what
search holds (the bytes of embeddings.npy / faiss.index: faiss loads the file whole, flat
memory-maps the embeddings), queries/s at k=100 (one batch of all queries), recall@100 against
flat's exact top-100. Kinds whose build would take too long at a size are skipped (--hnsw-max).

Part 2 (quality): the bundled all-MiniLM-L6-v2 encodes SciFact and NFCorpus once (the cached
`listrank eval` index), each kind is built from those same embeddings, and nDCG@10 on the test
queries is compared with flat's.

    OMP_NUM_THREADS=1 LISTRANK_DATA=../shared/data nice python benchmarks/bench_index_scale.py \
        --out benchmarks/results/index_scale.json --plot docs/img/index_scale.png
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def set_threads(n: int) -> None:
    import faiss

    faiss.omp_set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass


def unit(rng, n, dim, block=100_000):
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, block):
        x = rng.standard_normal((min(block, n - s), dim), dtype=np.float32)
        out[s:s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def folder_bytes(path: Path, kind: str) -> int:
    name = "embeddings.npy" if kind == "flat" else "faiss.index"
    return (path / name).stat().st_size


def meta_for(encoder_spec: dict, n: int, dim: int, params=None) -> dict:
    return {"encoder": encoder_spec, "corpus": "random", "n_docs": n, "dim": dim, "precision": "fp32",
            "params": params or {}}


FAKE_SPEC = {"model": "random-vectors", "weights_sha256": "0" * 64, "pooling": "mean", "normalize": True,
             "max_length": 256}


def scale(sizes, kinds, dim, nq, k, hnsw_max, tmp: Path, rows: list, save) -> list[dict]:
    from listrank.retrieval import index_class, open_index

    rng = np.random.default_rng(0)
    q = unit(rng, nq, dim)
    for n in sizes:
        x = unit(np.random.default_rng(n), n, dim)
        ids = [str(i) for i in range(n)]
        truth = None
        for kind in kinds:
            if kind == "hnsw" and n > hnsw_max:
                print(f"n={n:>9,} {kind:6s} skipped (--hnsw-max {hnsw_max:,})", flush=True)
                continue
            path = tmp / f"{kind}-{n}"
            start = time.perf_counter()
            index_class(kind).write(path, x, ids, meta_for(FAKE_SPEC, n, dim))
            build = time.perf_counter() - start
            index = open_index(path)
            index.check()
            start = time.perf_counter()
            _, found = index.search_embeddings(q, k)
            seconds = time.perf_counter() - start
            if kind == "flat":
                truth = found
            rec = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth)])) if truth is not None else None
            row = {"n": n, "kind": kind, "build_s": round(build, 2), "bytes": folder_bytes(path, kind),
                   "qps": round(nq / seconds, 1), "recall@100": None if rec is None else round(rec, 4),
                   "params": index.params}
            rows.append(row)
            save()
            print(f"n={n:>9,} {kind:6s} build {build:8.1f}s  mem {row['bytes'] / 2**20:9.1f} MiB  "
                  f"{row['qps']:9.1f} q/s  recall@100 {row['recall@100']}", flush=True)
            del index
            import shutil

            shutil.rmtree(path)
        del x
    return rows


def quality(datasets, kinds, tmp: Path, rows: list, save) -> list[dict]:
    from listrank.datasets import resolve
    from listrank.evaluate import evaluate
    from listrank.pipeline import DenseSettings, ensure_index
    from listrank.retrieval import index_class, open_index

    for name in datasets:
        ds = resolve(name)
        encoder = DenseSettings().encoder()
        flat_dir = ensure_index(ds, "flat", encoder=encoder)
        flat = open_index(flat_dir)
        queries = ds.queries("test")
        q = flat.encode_queries(queries, encoder, show_progress=False)
        qrels = ds.qrels("test")
        for kind in kinds:
            if kind == "flat":
                index = flat
            else:
                path = tmp / f"{Path(name).name}-{kind}"
                meta = {k: v for k, v in flat.meta.items() if k not in ("index", "params", "seconds")}
                index_class(kind).write(path, np.asarray(flat.embeddings), flat.docids, meta)
                index = open_index(path)
            run = index.rank([x.id for x in queries], q, 1000)
            ndcg = evaluate(run, qrels, ["ndcg@10"]).aggregate
            value = float(next(iter(ndcg.values())))
            rows.append({"dataset": name, "kind": kind, "n_docs": len(flat.docids), "ndcg@10": round(value, 4)})
            save()
            print(f"{name:14s} {kind:6s} nDCG@10 {value:.4f}", flush=True)
    return rows


def plot(rows: list[dict], path: Path, threads: int = 1) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from listrank.atomic import write_png

    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    panels = [("build_s", "build time (s)", True), ("bytes", "memory search holds (MiB)", True),
              ("qps", "queries/s, k=100", True), ("recall@100", "recall@100 vs flat", False)]
    for ax, (key, label, log) in zip(axes, panels):
        for kind in dict.fromkeys(r["kind"] for r in rows):
            pts = [(r["n"], r[key] / (2**20 if key == "bytes" else 1)) for r in rows
                   if r["kind"] == kind and r[key] is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=kind)
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("vectors (random, 384-d)")
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"listrank index kinds at scale ({threads} thread{'s' if threads > 1 else ''}, "
                 f"random unit vectors)")
    fig.tight_layout()
    write_png(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--kinds", default="flat,hnsw,ivfpq")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW above this size (build time)")
    parser.add_argument("--datasets", default="beir/scifact,beir/nfcorpus", help="'' to skip part 2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--replot", type=Path, help="only draw --plot from this --out JSON of an earlier run")
    args = parser.parse_args()
    if args.replot:
        earlier = json.loads(args.replot.read_text())
        plot(earlier["scale"], args.plot, earlier.get("threads", 1))
        return
    set_threads(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    kinds = args.kinds.split(",")
    results = {"threads": args.threads, "dim": args.dim, "queries": args.queries, "data": "random unit vectors",
               "cpu": os.uname().machine, "scale": [], "quality": []}

    def save():  # after every row, so that a run cut short keeps what it measured
        if args.out:
            from listrank.atomic import atomic_write

            with atomic_write(args.out) as fh:
                json.dump(results, fh, indent=1)
        if args.plot and results["scale"]:
            plot(results["scale"], args.plot, args.threads)

    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        if args.datasets:
            quality(args.datasets.split(","), kinds, Path(tmp), results["quality"], save)
        if args.sizes:
            scale([int(s) for s in args.sizes.split(",")], kinds, args.dim, args.queries, 100, args.hnsw_max,
                  Path(tmp), results["scale"], save)
    save()


if __name__ == "__main__":
    main()
