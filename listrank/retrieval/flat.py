"""`flat`: exact inner product over every stored embedding (what `listrank index` has always built).

Search is a BLAS product per block of 64k rows and a partial selection of the k best (no faiss
copy of the embeddings: they stay memory-mapped, fp16 or fp32). It ranks as faiss's
`IndexFlatIP` does, up to float rounding (tests/test_retrieval.py compares the two), and is faster
than it at deep k, where faiss keeps a heap per query (docs/benchmarks.md).
"""

from __future__ import annotations

from listrank.retrieval.base import register
from listrank.retrieval.dense import DenseIndex, exact_topk


@register("flat")
class FlatIndex(DenseIndex):
    def search_embeddings(self, query_embeddings, k, params=None):
        return exact_topk(query_embeddings, self.embeddings, k)
