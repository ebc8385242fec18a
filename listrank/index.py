"""Index a corpus: dense (embeddings + exact inner-product search) or Lucene BM25.

A dense index folder holds
    embeddings.npy   float32 [n_docs, dim], in the order of docids.txt
    docids.txt       one document id a line
    meta.json        {"kind": "dense", "encoder": EncoderSpec, "corpus": fingerprint, ...}
The encoder spec (model path, sha256 of its weights, pooling, normalisation, max length) is the
model's identity: searching with another model is an error, and a cached index is reused only when
both the encoder and the corpus fingerprints match.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from listrank import __version__
from listrank.atomic import atomic_dir, is_listrank_folder
from listrank.encoder import Encoder, EncoderSpec
from listrank.errors import ListrankError
from listrank.formats import Document, Run

META_FILE = "meta.json"


def corpus_fingerprint(docs: Sequence[Document]) -> str:
    """sha256 over ids, titles and texts: a changed corpus never reuses a stale index."""
    digest = hashlib.sha256()
    for d in docs:
        for part in (d.id, d.title, d.text):
            digest.update(part.encode("utf-8"))
            digest.update(b"\x00")
    return digest.hexdigest()


def read_meta(index_dir: str | os.PathLike) -> dict:
    path = Path(index_dir) / META_FILE
    if not path.exists():
        raise ListrankError(f"{index_dir} is not a listrank index (no {META_FILE}); build one with `listrank index`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ListrankError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def build_dense_index(
    encoder: Encoder,
    docs: Sequence[Document],
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 64,
    show_progress: bool = True,
    dataset: str | None = None,
) -> Path:
    """Encode `docs` (title + text) and write the index folder atomically."""
    if not docs:
        raise ListrankError("cannot index an empty corpus")
    start = time.perf_counter()
    seen: set[str] = set()
    for d in docs:
        if d.id in seen:
            raise ListrankError(f"doc id {d.id!r} appears more than once in the corpus; an index needs unique ids")
        seen.add(d.id)
    out_dir = Path(out_dir)
    embeddings = encoder.encode(
        [d.full_text() for d in docs], batch_size=batch_size, show_progress=show_progress, description="index"
    )
    if not np.isfinite(embeddings).all():
        bad = int((~np.isfinite(embeddings).all(axis=1)).sum())
        raise ListrankError(f"the encoder gave non-finite embeddings for {bad} of {len(docs)} documents "
                            "(NaN or inf weights?); refusing to write an index that would rank them arbitrarily")
    meta = {
        "kind": "dense",
        "listrank_version": __version__,
        "dataset": dataset,
        "encoder": encoder.spec().to_json(),
        "corpus": corpus_fingerprint(docs),
        "n_docs": len(docs),
        "dim": int(embeddings.shape[1]),
        "precision": "bf16" if encoder.use_bf16 else "fp32",
        "seconds": round(time.perf_counter() - start, 2),
    }
    with atomic_dir(out_dir, replace=is_listrank_folder) as tmp:
        np.save(tmp / "embeddings.npy", embeddings)
        (tmp / "docids.txt").write_text("".join(f"{d.id}\n" for d in docs), encoding="utf-8")
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    return out_dir


@dataclass
class DenseIndex:
    path: Path
    meta: dict

    @classmethod
    def open(cls, path: str | os.PathLike) -> "DenseIndex":
        meta = read_meta(path)
        if meta.get("kind") != "dense":
            raise ListrankError(f"{path} is a {meta.get('kind')!r} index, not a dense one")
        return cls(Path(path), meta)

    @property
    def encoder_spec(self) -> EncoderSpec:
        return EncoderSpec(**self.meta["encoder"])

    def query_encoder(self, model: str | None = None) -> Encoder:
        """The encoder the documents were encoded with (or `model` with its settings), in the same
        precision: an fp32 index gets fp32 queries."""
        spec = self.encoder_spec
        return Encoder(model or spec.model, pooling=spec.pooling, normalize=spec.normalize,
                       max_length=spec.max_length, precision=self.meta.get("precision", "auto"))

    @cached_property
    def embeddings(self) -> np.ndarray:
        try:
            embeddings = np.load(self.path / "embeddings.npy", allow_pickle=False)
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
        return (self.path / "docids.txt").read_text(encoding="utf-8").splitlines()

    def check_encoder(self, encoder: Encoder) -> None:
        """Refuse to search with a model other than the one the documents were encoded with."""
        diff = self.encoder_spec.mismatch(encoder.spec())
        if diff:
            have = {f: getattr(self.encoder_spec, f) for f in diff}
            got = {f: getattr(encoder.spec(), f) for f in diff}
            raise ListrankError(
                f"index {self.path} was built with another encoder ({', '.join(diff)} differ: index {have}, "
                f"query encoder {got}); search with the indexed model or rebuild the index"
            )

    @cached_property
    def faiss_index(self):
        """Exact inner-product index over the embeddings (built once per opened index)."""
        import faiss

        index = faiss.IndexFlatIP(self.embeddings.shape[1])
        index.add(self.embeddings)
        return index

    def search(self, query_embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner-product top-k: (scores [nq, k], row indices [nq, k])."""
        k = min(k, len(self.docids))
        return self.faiss_index.search(np.ascontiguousarray(query_embeddings, dtype=np.float32), k)

    def rank(self, query_ids: Sequence[str], query_embeddings: np.ndarray, k: int) -> Run:
        """Top-k documents per query as a run (qid -> docid -> score)."""
        scores, rows = self.search(query_embeddings, k)  # k <= n_docs, so every row index is valid
        ids = self._docid_array[rows]
        # dict(zip(...)) over lists runs in C: the run costs little next to the search itself.
        return {qid: dict(zip(q_ids.tolist(), q_scores.tolist())) for qid, q_ids, q_scores in zip(query_ids, ids, scores)}

    @cached_property
    def _docid_array(self) -> np.ndarray:
        return np.asarray(self.docids, dtype=object)


def check_corpus(index_dir: str | os.PathLike, docs: Sequence[Document], corpus_name: str) -> None:
    """Refuse to use an index built from another corpus than `docs` (a changed, or another, corpus):
    its hits would name documents that are gone or were rewritten."""
    meta = read_meta(index_dir)
    if meta.get("kind") == "dense":
        fresh = meta.get("corpus") == corpus_fingerprint(docs)
    else:
        return  # BM25 indexes are checked by listrank.bm25.index_is_current (a corpus file)
    if not fresh:
        raise ListrankError(
            f"index {index_dir} was not built from the corpus of {corpus_name} (its corpus fingerprint differs: "
            "documents were added, removed or changed since, or it is another corpus); rebuild it with "
            "`listrank index`"
        )


def index_matches(index_dir: str | os.PathLike, kind: str, corpus: str, encoder: EncoderSpec | None = None) -> bool:
    """True when a cached index at `index_dir` was built from this corpus (and this encoder)."""
    try:
        meta = read_meta(index_dir)
    except ListrankError:
        return False
    if meta.get("kind") != kind or meta.get("corpus") != corpus:
        return False
    return encoder is None or not EncoderSpec(**meta["encoder"]).mismatch(encoder)
