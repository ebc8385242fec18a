"""Dataset -> (cached) index -> run: what `listrank eval --dataset X` does when given no run.

Indexes are cached under `<cache>/indexes/<dataset>-<corpus sha256>/<retriever>`: the key is the
corpus file's content, not the id as typed, so two different folders reached by the same relative
id never share an entry. An entry is reused only when its fingerprint (corpus, and for dense the
encoder's weights/pooling/normalisation/max length) matches. Concurrent processes are safe: an
entry is checked and built under an exclusive lock (`<entry>.lock`) and searched under a shared one,
so no process replaces an index another one is reading, and each search re-checks the corpus.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from listrank import bm25
from listrank.datasets import Dataset, cache_dir
from listrank.encoder import Encoder
from listrank.formats import Run
from listrank.index import build_dense_index, check_corpus, corpus_fingerprint, index_matches, read_meta
from listrank.progress import stderr_console
from listrank.search import search


@dataclass
class DenseSettings:
    """How a dense retriever encodes: the flags `index`, `search` and `eval` share."""

    model: str | None = None
    pooling: str | None = None
    normalize: bool | None = None
    max_length: int = 256
    batch_size: int = 64
    precision: str = "auto"

    def encoder(self) -> Encoder:
        return Encoder(self.model, pooling=self.pooling, normalize=self.normalize, max_length=self.max_length,
                       precision=self.precision)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _corpus_key(dataset: Dataset) -> str:
    with open(dataset.corpus_file, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()[:16]


def index_cache_dir(dataset: Dataset, retriever: str) -> Path:
    """The cache entry for this corpus *content* (not the id as typed) and retriever."""
    base = Path(os.environ.get("LISTRANK_INDEX_CACHE") or cache_dir() / "indexes")
    name = _slug(Path(dataset.id).name if dataset.root is not None else dataset.id)
    return base / f"{name}-{_corpus_key(dataset)}" / _slug(retriever)


@contextlib.contextmanager
def entry_lock(index_dir: Path, exclusive: bool = True):
    """An flock on `<index_dir>.lock`: exclusive to check and build, shared to read."""
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(index_dir.with_name(index_dir.name + ".lock"), "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield fh
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _dense_cache_dir(dataset: Dataset, encoder: Encoder) -> Path:
    spec = encoder.spec()
    # Precision is not part of the model's identity (a bf16 index may be searched with fp32 queries),
    # but a cached index must have been encoded the way this run asks for.
    precision = "bf16" if encoder.use_bf16 else "fp32"
    return index_cache_dir(dataset, f"dense-{spec.weights_sha256[:12]}-{spec.pooling}"
                                    f"-{'norm' if spec.normalize else 'raw'}-{spec.max_length}-{precision}")


def ensure_dense_index(dataset: Dataset, encoder: Encoder, batch_size: int = 64,
                       index_dir: Path | None = None, show_progress: bool = True) -> Path:
    """Reuse the cached dense index for this dataset and encoder, or build it."""
    docs = dataset.corpus
    spec = encoder.spec()
    precision = "bf16" if encoder.use_bf16 else "fp32"
    index_dir = index_dir or _dense_cache_dir(dataset, encoder)
    if index_matches(index_dir, "dense", corpus_fingerprint(docs), spec) and \
            read_meta(index_dir).get("precision") == precision:
        stderr_console.print(f"reusing index {index_dir}", highlight=False)
        return index_dir
    build_dense_index(encoder, docs, index_dir, batch_size=batch_size, show_progress=show_progress,
                      dataset=dataset.id)
    return index_dir


def ensure_bm25_index(dataset: Dataset, index_dir: Path | None = None, show_progress: bool = True) -> Path:
    index_dir = index_dir or index_cache_dir(dataset, "bm25-flat")
    _, built = bm25.ensure_index(dataset.corpus_file, index_dir, progress=show_progress)
    if not built:
        stderr_console.print(f"reusing index {index_dir}", highlight=False)
    return index_dir


def retrieve(
    dataset: Dataset,
    split: str,
    *,
    use_bm25: bool = False,
    dense: DenseSettings | None = None,
    k: int = 1000,
    show_progress: bool = True,
) -> Run:
    """Index the dataset's corpus (cached) and search the queries judged in `split`."""
    queries = dataset.queries(split)
    if use_bm25:
        index_dir = index_cache_dir(dataset, "bm25-flat")
        with entry_lock(index_dir) as lock:
            ensure_bm25_index(dataset, index_dir, show_progress=show_progress)
            fcntl.flock(lock.fileno(), fcntl.LOCK_SH)  # others may read it too, none may replace it
            return search(index_dir, queries, k, show_progress=show_progress)
    dense = dense or DenseSettings()
    encoder = dense.encoder()
    index_dir = _dense_cache_dir(dataset, encoder)
    with entry_lock(index_dir) as lock:
        ensure_dense_index(dataset, encoder, dense.batch_size, index_dir=index_dir, show_progress=show_progress)
        fcntl.flock(lock.fileno(), fcntl.LOCK_SH)
        check_corpus(index_dir, dataset.corpus, dataset.id)
        return search(index_dir, queries, k, encoder=encoder, batch_size=dense.batch_size,
                      show_progress=show_progress)
