"""`hnsw`: faiss `IndexHNSWFlat` (inner product), a graph over the full-precision vectors.

Parameters (`--param key=value`): `m` neighbours per node (32), `ef_construction` (200) at build;
`ef_search` (256) at search, raised to k when k is larger. Memory is the vectors (4 bytes x dim) plus
about m x 2 x 4 bytes of links per vector. Recall against flat: docs/benchmarks.md.
"""

from __future__ import annotations

from listrank.errors import ListrankError
from listrank.retrieval._faiss import FaissIndex
from listrank.retrieval.base import register


@register("hnsw")
class HnswIndex(FaissIndex):
    build_params = {"m": 32, "ef_construction": 200}
    search_params = {"ef_search": 256}

    @classmethod
    def create(cls, dim, n, params):
        import faiss

        if params["m"] < 2 or params["ef_construction"] < 1:
            raise ListrankError("hnsw needs m >= 2 and ef_construction >= 1")
        index = faiss.IndexHNSWFlat(dim, int(params["m"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(params["ef_construction"])
        return index

    @classmethod
    def search_parameters(cls, params, k):
        import faiss

        return faiss.SearchParametersHNSW(efSearch=max(int(params["ef_search"]), k))
