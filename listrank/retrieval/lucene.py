"""`bm25`: Lucene BM25 through pyserini (listrank.bm25 builds and searches; this is its seam).

Parameters: `k1` (0.9) and `b` (0.4), pyserini's BEIR defaults, recorded at build and overridable at
search (`--param b=0.75`); Lucene applies them at search time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from listrank.errors import ListrankError
from listrank.retrieval.base import Index, register


@register("bm25")
class Bm25Index(Index):
    family = "bm25"
    needs_encoder = False
    build_params = {}
    search_params = {"k1": 0.9, "b": 0.4}

    def __init__(self, path: Path, meta: dict):
        super().__init__(path, {**meta, "index": meta.get("index", "bm25")})

    @property
    def params(self) -> dict:
        return {"k1": self.meta.get("k1", 0.9), "b": self.meta.get("b", 0.4)}

    @classmethod
    def build(cls, docs, out_dir, *, encoder=None, params=None, dataset=None, batch_size=64,
              show_progress=True, corpus_file: str | os.PathLike | None = None, threads: int | None = None,
              **options) -> Path:
        """Index `corpus_file` when given (Anserini reads it; its stat is recorded so that a cache
        check need not re-read it), else `docs`."""
        from listrank import bm25

        if options:
            raise ListrankError(f"a BM25 index does not take {', '.join(options)}")
        p = cls.resolve_params(params)
        bm25.build_index(corpus_file if corpus_file is not None else list(docs), out_dir, threads=threads,
                         k1=p["k1"], b=p["b"], progress=show_progress)
        return Path(out_dir)

    def matches(self, docs, encoder=None, params=None, *, fingerprint=None, corpus_file=None) -> bool:
        """Built from these documents; for a `corpus_file` whose recorded stat is unchanged, without
        reading it again (listrank.bm25.index_is_current)."""
        from listrank import bm25

        if self.meta.get("index_format") != bm25.INDEX_FORMAT:
            return False
        if corpus_file is not None and fingerprint is None:
            return bm25.index_is_current(self.path, corpus_file)
        return super().matches(docs, None, None, fingerprint=fingerprint)

    def check(self) -> None:
        from listrank import bm25

        bm25._check_index(self.path)

    def search(self, queries: Sequence, k: int, *, encoder=None, model=None, batch_size=64, threads=None,
               params=None, show_progress=True):
        from listrank import bm25

        if encoder is not None or model is not None:
            raise ListrankError(f"{self.path} is a BM25 index: --model does not apply")
        p = {**self.params, **self.resolve_params(params, at_search=True)}
        return bm25.search(self.path, list(queries), k=k, k1=p["k1"], b=p["b"],
                           threads=threads or bm25.default_threads(), progress=show_progress)
