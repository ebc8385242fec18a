"""Queries -> runs, against any listrank index folder (the kind comes from its meta.json)."""

from __future__ import annotations

import os
from typing import Sequence

from listrank.errors import ListrankError
from listrank.formats import Query, Run
from listrank.retrieval import open_index
from listrank.retrieval.dense import DenseIndex


def dense_search(index: DenseIndex, queries: Sequence[Query], k: int = 100, *, encoder=None,
                 model: str | None = None, batch_size: int = 64, params: dict | None = None,
                 show_progress: bool = True) -> Run:
    """Encode the queries with the indexed encoder (or `model` with the index's settings, or check the
    given `encoder`) and take the top-k."""
    return index.search(queries, k, encoder=encoder, model=model, batch_size=batch_size, params=params,
                        show_progress=show_progress)


def search(
    index_dir: str | os.PathLike,
    queries: Sequence[Query],
    k: int = 100,
    *,
    encoder=None,
    model: str | None = None,
    batch_size: int = 64,
    threads: int | None = None,
    params: dict | None = None,
    show_progress: bool = True,
) -> Run:
    """Search any listrank index folder; `params` are the kind's search parameters (e.g. ef_search)."""
    if not queries:
        raise ListrankError("no queries to search")
    if k < 1:
        raise ListrankError(f"-k must be at least 1, got {k}")
    return open_index(index_dir).search(queries, k, encoder=encoder, model=model, batch_size=batch_size,
                                        threads=threads, params=params, show_progress=show_progress)


def check_index_corpus(index_dir: str | os.PathLike, dataset) -> None:
    """Refuse an index that was not built from `dataset`'s corpus (when the dataset has one):
    a changed corpus would get hits for deleted or rewritten documents, scored as if current."""
    if dataset.root is None or not (dataset.root / "corpus.jsonl").exists():
        return
    open_index(index_dir).check_corpus(dataset.corpus, dataset.id)
