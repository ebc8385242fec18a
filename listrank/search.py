"""Queries -> runs, against a dense or BM25 index folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from listrank.encoder import Encoder
from listrank.errors import ListrankError
from listrank.formats import Query, Run
from listrank.index import DenseIndex, read_meta


def dense_search(
    index: DenseIndex,
    queries: Sequence[Query],
    k: int = 100,
    *,
    encoder: Encoder | None = None,
    model: str | None = None,
    batch_size: int = 64,
    show_progress: bool = True,
) -> Run:
    """Encode the queries with the indexed encoder (or `model` with the index's settings, or check the
    given `encoder`) and take the exact top-k."""
    if encoder is None:
        encoder = index.query_encoder(model)
    index.check_encoder(encoder)
    index.embeddings  # loads and checks the folder (embeddings, doc ids, meta.json agree) before encoding
    query_emb = encoder.encode([q.text for q in queries], batch_size=batch_size, show_progress=show_progress,
                               description="search")
    if not np.isfinite(query_emb).all():
        raise ListrankError("the encoder gave non-finite query embeddings (NaN or inf weights?); "
                            "refusing to rank by them")
    return index.rank([q.id for q in queries], query_emb, k)


def search(
    index_dir: str | os.PathLike,
    queries: Sequence[Query],
    k: int = 100,
    *,
    encoder: Encoder | None = None,
    model: str | None = None,
    batch_size: int = 64,
    threads: int | None = None,
    show_progress: bool = True,
) -> Run:
    """Search any listrank index folder; the kind (dense or bm25) comes from its metadata."""
    if not queries:
        raise ListrankError("no queries to search")
    if k < 1:
        raise ListrankError(f"-k must be at least 1, got {k}")
    kind = read_meta(index_dir).get("kind")
    if kind == "dense":
        return dense_search(DenseIndex.open(index_dir), queries, k, encoder=encoder, model=model,
                            batch_size=batch_size, show_progress=show_progress)
    if kind == "bm25":
        if encoder is not None or model is not None:
            raise ListrankError(f"{index_dir} is a BM25 index: --model does not apply")
        from listrank import bm25

        return bm25.search(Path(index_dir), list(queries), k=k, threads=threads or os.cpu_count() or 1)
    raise ListrankError(f"{index_dir}: unknown index kind {kind!r}")


def check_index_corpus(index_dir: str | os.PathLike, dataset) -> None:
    """Refuse an index that was not built from `dataset`'s corpus (when the dataset has one):
    a changed corpus would get hits for deleted or rewritten documents, scored as if current."""
    if dataset.root is None or not (dataset.root / "corpus.jsonl").exists():
        return
    kind = read_meta(index_dir).get("kind")
    if kind == "dense":
        from listrank.index import check_corpus

        check_corpus(index_dir, dataset.corpus, dataset.id)
    elif kind == "bm25":
        from listrank import bm25

        if not bm25.index_is_current(index_dir, dataset.corpus_file):
            raise ListrankError(
                f"index {index_dir} was not built from the corpus of {dataset.id} (its corpus fingerprint differs: "
                "documents were added, removed or changed since, or it is another corpus); rebuild it with "
                "`listrank index --bm25`"
            )
