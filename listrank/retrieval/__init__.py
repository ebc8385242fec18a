"""Retrieval: every index kind behind one interface (see `base` for the seam and the registry).

    from listrank.retrieval import build_index, open_index
    build_index("hnsw", docs, "runs/x.idx", encoder=enc, params={"m": 32})
    run = open_index("runs/x.idx").search(queries, k=100)

Kinds: flat (exact), hnsw, ivfpq (faiss), bm25 (Lucene via pyserini), sharded (merged shards).
"""

from listrank.retrieval.base import (
    FAMILIES,
    META_FILE,
    Index,
    StaleIndexError,
    available,
    corpus_fingerprint,
    index_class,
    index_is_current,
    kind_of,
    open_index,
    parse_params,
    read_meta,
    read_meta_or_none,
    register,
    write_meta,
)


def build_index(kind: str, docs, out_dir, **kwargs):
    """Build an index of `kind` (flat, hnsw, ivfpq, bm25) of `docs` at `out_dir`; see `Index.build`."""
    return index_class(kind).build(docs, out_dir, **kwargs)


__all__ = [
    "FAMILIES", "META_FILE", "Index", "StaleIndexError", "available", "build_index", "corpus_fingerprint",
    "index_class", "index_is_current", "kind_of", "open_index", "parse_params", "read_meta",
    "read_meta_or_none", "register", "write_meta",
]
