"""Index a corpus. The index kinds live in `listrank.retrieval` (flat, hnsw, ivfpq, bm25, sharded);
this module keeps the names older code imports, each a thin call into that package.

A dense index folder holds
    embeddings.npy   float32 (or float16) [n_docs, dim], in the order of docids.txt
    docids.txt       one document id a line
    meta.json        {"kind": "dense", "index": "flat", "encoder": EncoderSpec, "corpus": fingerprint, ...}
The encoder spec (model path, sha256 of its weights, pooling, normalisation, max length) is the
model's identity: searching with another model is an error, and a cached index is reused only when
both the encoder and the corpus fingerprints match.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from listrank.formats import Document
from listrank.retrieval.base import META_FILE, corpus_fingerprint, index_is_current, open_index, read_meta
from listrank.retrieval.dense import DenseIndex

__all__ = ["META_FILE", "DenseIndex", "build_dense_index", "check_corpus", "corpus_fingerprint", "index_matches",
           "read_meta"]


def build_dense_index(encoder, docs: Sequence[Document], out_dir: str | os.PathLike, *, batch_size: int = 64,
                      show_progress: bool = True, dataset: str | None = None, kind: str = "flat", **options) -> Path:
    """Encode `docs` (title + text) and write a dense index folder of `kind` atomically."""
    from listrank.retrieval import index_class

    return index_class(kind).build(docs, out_dir, encoder=encoder, batch_size=batch_size,
                                   show_progress=show_progress, dataset=dataset, **options)


def check_corpus(index_dir: str | os.PathLike, docs: Sequence[Document], corpus_name: str) -> None:
    """Refuse to use an index built from another corpus than `docs`."""
    open_index(index_dir).check_corpus(docs, corpus_name)


def index_matches(index_dir: str | os.PathLike, kind: str, corpus: str, encoder=None) -> bool:
    """True when a cached index at `index_dir` of `kind` was built from the corpus with fingerprint
    `corpus` (and this encoder)."""
    return index_is_current(index_dir, kind, None, encoder, fingerprint=corpus)
