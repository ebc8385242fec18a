"""A dense kind backed by a faiss index stored beside the embeddings (`faiss.index`)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from listrank.errors import ListrankError
from listrank.retrieval.dense import DenseIndex, exact_topk

FAISS_FILE = "faiss.index"
ADD_BLOCK = 1 << 16


def set_threads(threads: int | None) -> None:
    if threads:
        import faiss

        faiss.omp_set_num_threads(int(threads))


class FaissIndex(DenseIndex):
    """Subclasses implement `create(dim, n, params)` -> an empty faiss index (trained here if it needs
    training) and `search_parameters(params, k)` -> faiss SearchParameters."""

    train_sample: int = 0  # rows to train on (0: the kind needs no training)

    @classmethod
    def create(cls, dim: int, n: int, params: dict[str, Any]):
        raise NotImplementedError

    @classmethod
    def search_parameters(cls, params: dict[str, Any], k: int):
        return None

    @classmethod
    def training_rows(cls, n: int, params: dict[str, Any]) -> int:
        return 0

    @classmethod
    def write_extra(cls, folder: Path, embeddings: np.ndarray, params: dict[str, Any], *, show_progress=False):
        import faiss

        n, dim = embeddings.shape
        index = cls.create(dim, n, params)
        need = cls.training_rows(n, params)
        if need:
            rng = np.random.default_rng(int(params.get("seed", 0)))
            rows = np.sort(rng.choice(n, size=min(n, need), replace=False))
            index.train(np.ascontiguousarray(embeddings[rows], dtype=np.float32))
        for start in range(0, n, ADD_BLOCK):
            index.add(np.ascontiguousarray(embeddings[start:start + ADD_BLOCK], dtype=np.float32))
        faiss.write_index(index, str(folder / FAISS_FILE))
        return None

    @cached_property
    def faiss_index(self):
        import faiss

        path = self.path / FAISS_FILE
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise ListrankError(f"{path}: cannot read it ({str(e).splitlines()[0]}); rebuild the index") from None
        if index.ntotal != len(self.docids):
            raise ListrankError(f"{self.path} is inconsistent: {index.ntotal} vectors in {FAISS_FILE}, "
                                f"{len(self.docids)} doc ids; rebuild the index")
        return index

    def check(self) -> None:
        super().check()
        self.faiss_index

    def search_embeddings(self, query_embeddings, k, params=None):
        params = {**self.params, **(params or {})}
        k = min(k, len(self.docids))
        rerank = int(params.get("rerank", 0))
        fetch = min(len(self.docids), k * rerank) if rerank else k
        queries = np.ascontiguousarray(query_embeddings, dtype=np.float32)
        scores, rows = self.faiss_index.search(queries, fetch, params=self.search_parameters(params, fetch))
        if rerank:
            return self._rerank(queries, rows, k)
        return scores, rows

    def _rerank(self, queries: np.ndarray, rows: np.ndarray, k: int):
        """Exact inner products of each query with its candidates, from the stored embeddings."""
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_r = np.full((len(queries), k), -1, dtype=np.int64)
        for i, (q, cand) in enumerate(zip(queries, rows)):
            cand = cand[cand >= 0]
            if not len(cand):
                continue
            order = np.argsort(cand)  # sorted reads from the memory map
            s, r = exact_topk(q[None], self.embeddings[cand[order]], k)
            out_s[i, :s.shape[1]], out_r[i, :s.shape[1]] = s[0], cand[order][r[0]]
        return out_s, out_r
