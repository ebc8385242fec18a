"""`ivfpq`: faiss `IndexIVFPQ` (inner product): k-means cells, product-quantised codes.

Parameters (`--param key=value`):
  build:  `nlist` cells (0 = 4 x sqrt(n), rounded to a power of two, at most n / 39), `m` sub-
          quantisers (0 = dim / 8: 48 bytes a vector for 384 dimensions, 1/32 of fp32), `nbits` per
          code (8), `seed` of the training sample (0);
  search: `nprobe` cells visited (64), `rerank` (4): re-score the best k x rerank candidates exactly
          from the stored embeddings (memory-mapped, so they are read from disk, not held in RAM);
          0 returns the approximate PQ scores.
Training uses a random sample of 64 x nlist rows (at least 39 x 2^nbits). Recall against flat: docs/benchmarks.md.
"""

from __future__ import annotations

import math

from listrank.errors import ListrankError
from listrank.retrieval._faiss import FaissIndex
from listrank.retrieval.base import register


def auto_nlist(n: int) -> int:
    nlist = 2 ** round(math.log2(max(1.0, 4 * math.sqrt(n))))
    return max(1, min(nlist, n // 39))


@register("ivfpq")
class IvfPqIndex(FaissIndex):
    build_params = {"nlist": 0, "m": 0, "nbits": 8, "seed": 0}
    # nprobe 64: on SciFact (132 cells) recall@100 against flat was 0.72/0.93/0.98 at nprobe 16/32/64
    # with rerank 4, nDCG@10 0.598/0.631/0.643 against flat's 0.646 (docs/benchmarks.md).
    search_params = {"nprobe": 64, "rerank": 4}

    @classmethod
    def _shape(cls, dim, n, params):
        nlist = int(params["nlist"]) or auto_nlist(n)
        m = int(params["m"]) or max(1, dim // 8)
        if dim % m:
            raise ListrankError(f"ivfpq: m={m} must divide the dimension {dim}")
        if not 1 <= params["nbits"] <= 16:
            raise ListrankError("ivfpq: nbits must be between 1 and 16")
        if n < max(nlist, 2 ** int(params["nbits"])):
            raise ListrankError(f"ivfpq needs at least max(nlist={nlist}, 2^nbits={2 ** int(params['nbits'])}) "
                                f"documents to train on, got {n}; use a smaller nlist/nbits or the flat kind")
        return nlist, m

    @classmethod
    def create(cls, dim, n, params):
        import faiss

        nlist, m = cls._shape(dim, n, params)
        index = faiss.index_factory(dim, f"IVF{nlist},PQ{m}x{int(params['nbits'])}", faiss.METRIC_INNER_PRODUCT)
        # Polysemous training (Hamming-ordered codes, for a filter listrank does not use) took ~85% of
        # the training time measured here.
        index.do_polysemous_training = False
        return index

    @classmethod
    def training_rows(cls, n, params):
        nlist = int(params["nlist"]) or auto_nlist(n)
        # 64 rows a cell: above the 39 faiss asks for, a quarter of its 256 cap (k-means time grows with it)
        return max(64 * nlist, 2 ** int(params["nbits"]) * 39)

    @classmethod
    def search_parameters(cls, params, k):
        import faiss

        return faiss.SearchParametersIVF(nprobe=int(params["nprobe"]))
