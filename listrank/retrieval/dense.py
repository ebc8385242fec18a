"""What every dense kind shares: encoding the corpus (whole, or one shard of it), the stored
embeddings, the query encoder check, exact top-k, and turning rows into a run.

A dense index folder holds
    embeddings.npy   float32 or float16 [n_docs, dim], in the order of docids.txt (memory-mapped on open)
    docids.txt       one document id a line
    meta.json        {"kind": "dense", "index": KIND, "encoder": EncoderSpec, "corpus": fingerprint,
                      "params": {...}, "dtype": ..., optional "shard": {...}}
    (kind files)     e.g. faiss.index for hnsw / ivfpq
The encoder spec (model path, sha256 of its weights, pooling, normalisation, max length) is the
model's identity: searching with another model is an error, and a cached index is reused only when
both the encoder and the corpus fingerprints match.
"""

from __future__ import annotations

import os
import time
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from listrank import __version__
from listrank.atomic import atomic_dir, is_listrank_folder
from listrank.errors import ListrankError
from listrank.formats import Document, Query, Run
from listrank.retrieval.base import Index, corpus_fingerprint, unique_ids, write_meta

DTYPES = ("float32", "float16")
# Rows scored per matrix product in exact search: 64k x 384 fp32 = 96 MiB of scores per 384 queries.
DOC_BLOCK = 1 << 16
QUERY_BLOCK = 384


def shard_bounds(n_docs: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Rows [start, stop) of shard i of n: contiguous, in corpus order, sizes differing by at most one."""
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ListrankError(f"--shard {i}/{n}: expected i/n with 0 <= i < n")
    return i * n_docs // n, (i + 1) * n_docs // n


# --- exact top-k over (memory-mapped, fp16 or fp32) rows ------------------------------------------

def _select(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of each line (unsorted), for scores [nq, m] and their row ids."""
    if scores.shape[1] <= k:
        return scores, rows
    part = np.argpartition(scores, scores.shape[1] - k, axis=1)[:, -k:]
    return np.take_along_axis(scores, part, 1), np.take_along_axis(rows, part, 1)


def _sort(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best first; equal scores by row, so every way of splitting the rows ranks ties alike."""
    order = np.lexsort((rows, -scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


def merge_topk(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of the union of per-part top-k results (scores [nq, *], global rows [nq, *])."""
    scores = np.concatenate([s for s, _ in parts], axis=1)
    rows = np.concatenate([r for _, r in parts], axis=1)
    keep = rows >= 0  # faiss marks missing hits with -1
    if not keep.all():
        scores = np.where(keep, scores, -np.inf).astype(np.float32)
    return _sort(*_select(scores, rows, k))


def exact_topk(queries: np.ndarray, embeddings: np.ndarray, k: int, row_offset: int = 0,
               doc_block: int = DOC_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of `queries` [nq, dim] over `embeddings` [n, dim] (any float dtype,
    memory-mapped or not): one BLAS product per block of rows, a partial selection per block, so
    memory stays at one block's scores and a k-best per query whatever n is. Returns (scores, rows)
    [nq, min(k, n)], best first, rows offset by `row_offset`."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n = embeddings.shape[0]
    k = min(k, n)
    out_s = np.empty((len(queries), k), dtype=np.float32)
    out_r = np.empty((len(queries), k), dtype=np.int64)
    for qa in range(0, len(queries), QUERY_BLOCK):
        q = queries[qa:qa + QUERY_BLOCK]
        best: tuple[np.ndarray, np.ndarray] | None = None
        for start in range(0, n, doc_block):
            block = np.asarray(embeddings[start:start + doc_block], dtype=np.float32)
            scores = q @ block.T
            rows = np.broadcast_to(np.arange(start + row_offset, start + row_offset + len(block)), scores.shape)
            part = _select(scores, rows, k)
            if best is not None:
                part = _select(np.concatenate([best[0], part[0]], 1), np.concatenate([best[1], part[1]], 1), k)
            best = part
        out_s[qa:qa + len(q)], out_r[qa:qa + len(q)] = _sort(*best)
    return out_s, out_r


# --- the dense base class --------------------------------------------------------------------------

class DenseIndex(Index):
    """Embeddings + doc ids + the encoder's identity. Subclasses choose how rows are searched
    (`search_embeddings`) and what else they store (`write_extra`)."""

    family: ClassVar[str] = "dense"
    needs_encoder: ClassVar[bool] = True

    # --- build ------------------------------------------------------------------------------

    @classmethod
    def build(cls, docs: Sequence[Document], out_dir: str | os.PathLike, *, encoder=None,
              params: dict | None = None, dataset: str | None = None, batch_size: int = 64,
              show_progress: bool = True, dtype: str = "float32", shard: tuple[int, int] | None = None,
              corpus_file=None, **options) -> Path:
        """Encode `docs` (title + text), or only rows `shard_bounds(len(docs), shard)` of them, and
        write the index folder atomically."""
        if options:
            raise ListrankError(f"{cls.name} index: unknown option(s) {', '.join(options)}")
        if encoder is None:
            raise ListrankError(f"a {cls.name} index needs an encoder")
        if dtype not in DTYPES:
            raise ListrankError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
        params = cls.resolve_params(params)
        unique_ids(docs)
        start = time.perf_counter()
        meta_shard = None
        part = docs
        if shard is not None and shard != (0, 1):
            lo, hi = shard_bounds(len(docs), shard)
            if cls.name != "flat":
                raise ListrankError("--shard writes flat shards (merge them with `listrank index merge --kind ...`)")
            part = docs[lo:hi]
            meta_shard = {"index": shard[0], "count": shard[1], "start": lo, "stop": hi,
                          "corpus": corpus_fingerprint(docs), "n_docs_total": len(docs)}
        embeddings = encoder.encode([d.full_text() for d in part], batch_size=batch_size,
                                    show_progress=show_progress, description="index")
        if not np.isfinite(embeddings).all():
            bad = int((~np.isfinite(embeddings).all(axis=1)).sum())
            raise ListrankError(f"the encoder gave non-finite embeddings for {bad} of {len(part)} documents "
                                "(NaN or inf weights?); refusing to write an index that would rank them arbitrarily")
        meta = {
            "kind": "dense",
            "index": cls.name,
            "listrank_version": __version__,
            "dataset": dataset,
            "encoder": encoder.spec().to_json(),
            "corpus": corpus_fingerprint(part),
            "n_docs": len(part),
            "dim": int(embeddings.shape[1]) if embeddings.ndim == 2 else 0,
            "precision": "bf16" if encoder.use_bf16 else "fp32",
            "dtype": dtype,
            "params": params,
        }
        if meta_shard:
            meta["shard"] = meta_shard
        return cls.write(out_dir, embeddings, [d.id for d in part], meta, started=start,
                         show_progress=show_progress)

    @classmethod
    def write(cls, out_dir: str | os.PathLike, embeddings: np.ndarray, docids: Sequence[str], meta: dict[str, Any],
              *, started: float | None = None, show_progress: bool = False) -> Path:
        """Write a folder of this kind from embeddings already computed (`build`, `listrank index merge`)."""
        started = time.perf_counter() if started is None else started
        out_dir = Path(out_dir)
        meta = {**meta, "kind": "dense", "index": cls.name}
        meta["params"] = cls.resolve_params(meta.get("params"))
        with atomic_dir(out_dir, replace=is_listrank_folder) as tmp:
            stored = np.asarray(embeddings, dtype=meta.get("dtype", "float32"))
            np.save(tmp / "embeddings.npy", stored)
            (tmp / "docids.txt").write_text("".join(f"{d}\n" for d in docids), encoding="utf-8")
            extra = cls.write_extra(tmp, stored, meta["params"], show_progress=show_progress)
            meta.update(extra or {})
            meta["seconds"] = round(time.perf_counter() - started, 2)
            write_meta(tmp, meta)
        return out_dir

    @classmethod
    def write_extra(cls, folder: Path, embeddings: np.ndarray, params: dict[str, Any], *,
                    show_progress: bool = False) -> dict[str, Any] | None:
        """Kind-specific files (a faiss index...); returns metadata to add. Flat stores nothing more."""
        return None

    # --- open ---------------------------------------------------------------------------------

    @property
    def encoder_spec(self):
        from listrank.encoder import EncoderSpec

        return EncoderSpec(**self.meta["encoder"])

    def query_encoder(self, model: str | None = None):
        """The encoder the documents were encoded with (or `model` with its settings), in the same
        precision: an fp32 index gets fp32 queries."""
        from listrank.encoder import Encoder

        spec = self.encoder_spec
        return Encoder(model or spec.model, pooling=spec.pooling, normalize=spec.normalize,
                       max_length=spec.max_length, precision=self.meta.get("precision", "auto"))

    @cached_property
    def embeddings(self) -> np.ndarray:
        """The stored embeddings, memory-mapped (fp16 or fp32, as written); checked against the ids."""
        try:
            embeddings = np.load(self.path / "embeddings.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ListrankError(f"{self.path}: cannot read embeddings.npy ({e}); rebuild the index") from None
        rows = len(self.docids)
        if embeddings.ndim != 2 or embeddings.shape[0] != rows or rows != self.meta.get("n_docs", rows):
            raise ListrankError(
                f"{self.path} is inconsistent: {embeddings.shape[0] if embeddings.ndim else 0} embeddings, {rows} doc ids, "
                f"meta.json says {self.meta.get('n_docs')} documents; rebuild the index"
            )
        return embeddings

    @cached_property
    def docids(self) -> list[str]:
        try:
            return (self.path / "docids.txt").read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ListrankError(f"{self.path}: cannot read docids.txt ({e}); rebuild the index") from None

    @cached_property
    def _docid_array(self) -> np.ndarray:
        return np.asarray(self.docids, dtype=object)

    def check(self) -> None:
        """Load and check the folder (embeddings, doc ids, meta.json agree) before any encoding."""
        self.embeddings

    # --- identity -----------------------------------------------------------------------------

    def matches(self, docs, encoder=None, params=None, *, fingerprint=None, corpus_file=None) -> bool:
        """Same corpus, parameters and encoder (an `Encoder` also in the same precision)."""
        if not super().matches(docs, encoder, params, fingerprint=fingerprint):
            return False
        if encoder is None:
            return True
        spec = encoder.spec() if hasattr(encoder, "spec") else encoder
        if hasattr(encoder, "use_bf16") and self.meta.get("precision") != ("bf16" if encoder.use_bf16 else "fp32"):
            return False
        return not self.encoder_spec.mismatch(spec)

    def check_encoder(self, encoder) -> None:
        """Refuse to search with a model other than the one the documents were encoded with."""
        diff = self.encoder_spec.mismatch(encoder.spec())
        if diff:
            have = {f: getattr(self.encoder_spec, f) for f in diff}
            got = {f: getattr(encoder.spec(), f) for f in diff}
            raise ListrankError(
                f"index {self.path} was built with another encoder ({', '.join(diff)} differ: index {have}, "
                f"query encoder {got}); search with the indexed model or rebuild the index"
            )

    # --- search -------------------------------------------------------------------------------

    def search_embeddings(self, query_embeddings: np.ndarray, k: int,
                          params: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores [nq, <=k], row indices [nq, <=k]) best first; -1 rows where a kind found fewer."""
        raise NotImplementedError

    def rank(self, query_ids: Sequence[str], query_embeddings: np.ndarray, k: int,
             params: dict | None = None) -> Run:
        """Top-k documents per query as a run (qid -> docid -> score)."""
        scores, rows = self.search_embeddings(query_embeddings, k, params)
        if (rows < 0).any():  # an approximate kind returned fewer than k: drop the padding
            return {qid: {self.docids[r]: s for r, s in zip(q_rows.tolist(), q_scores.tolist()) if r >= 0}
                    for qid, q_rows, q_scores in zip(query_ids, rows, scores)}
        ids = self._docid_array[rows].tolist()
        # dict(zip(...)) over lists runs in C: the cheapest way to a dict of dicts we measured.
        return {qid: dict(zip(q_ids, q_scores)) for qid, q_ids, q_scores in zip(query_ids, ids, scores.tolist())}

    def encode_queries(self, queries: Sequence[Query], encoder, batch_size: int = 64,
                       show_progress: bool = True) -> np.ndarray:
        query_emb = encoder.encode([q.text for q in queries], batch_size=batch_size, show_progress=show_progress,
                                   description="search")
        if not np.isfinite(query_emb).all():
            raise ListrankError("the encoder gave non-finite query embeddings (NaN or inf weights?); "
                                "refusing to rank by them")
        return query_emb

    def search(self, queries: Sequence[Query], k: int, *, encoder=None, model: str | None = None,
               batch_size: int = 64, threads: int | None = None, params: dict | None = None,
               show_progress: bool = True) -> Run:
        """Encode the queries with the indexed encoder (or `model` with the index's settings, or
        check the given `encoder`) and take the top-k."""
        params = self.resolve_params(params, at_search=True)
        if encoder is None:
            encoder = self.query_encoder(model)
        self.check_encoder(encoder)
        self.check()
        query_emb = self.encode_queries(queries, encoder, batch_size, show_progress)
        return self.rank([q.id for q in queries], query_emb, k, params)
