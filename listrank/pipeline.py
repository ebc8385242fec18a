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

from listrank.datasets import Dataset, cache_dir
from listrank.encoder import Encoder
from listrank.formats import Run
from listrank.progress import stderr_console
from listrank.retrieval import index_class
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
    kind: str = "flat"  # a dense index kind of listrank.retrieval: flat, hnsw, ivfpq
    params: dict | None = None  # its build parameters (`--param key=value`)

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


def _params_slug(params: dict | None) -> str:
    return "".join(f"-{k}{v}" for k, v in sorted((params or {}).items()))


def _cache_entry(dataset: Dataset, kind: str, encoder: Encoder | None, params: dict | None) -> Path:
    cls = index_class(kind)
    if not cls.needs_encoder:
        return index_cache_dir(dataset, f"{cls.name}-flat{_params_slug(cls.resolve_params(params))}"
                               if cls.name != "bm25" else "bm25-flat")
    spec = encoder.spec()
    # Precision is not part of the model's identity (a bf16 index may be searched with fp32 queries),
    # but a cached index must have been encoded the way this run asks for.
    precision = "bf16" if encoder.use_bf16 else "fp32"
    prefix = "dense" if cls.name == "flat" else f"{cls.name}{_params_slug(cls.resolve_params(params))}"
    return index_cache_dir(dataset, f"{prefix}-{spec.weights_sha256[:12]}-{spec.pooling}"
                                    f"-{'norm' if spec.normalize else 'raw'}-{spec.max_length}-{precision}")


def _dense_cache_dir(dataset: Dataset, encoder: Encoder) -> Path:
    return _cache_entry(dataset, "flat", encoder, None)


def ensure_index(dataset: Dataset, kind: str, *, encoder: Encoder | None = None, params: dict | None = None,
                 batch_size: int = 64, index_dir: Path | None = None, show_progress: bool = True) -> Path:
    """Reuse the cached index of `kind` for this dataset (and encoder and parameters), or build it."""
    cls = index_class(kind)
    index_dir = index_dir or _cache_entry(dataset, kind, encoder, params)
    _, built = cls.ensure(dataset.corpus if cls.needs_encoder else (), index_dir, encoder=encoder, params=params,
                          corpus_file=dataset.corpus_file, batch_size=batch_size, show_progress=show_progress,
                          dataset=dataset.id)
    if not built:
        stderr_console.print(f"reusing index {index_dir}", highlight=False)
    return index_dir


def ensure_dense_index(dataset: Dataset, encoder: Encoder, batch_size: int = 64,
                       index_dir: Path | None = None, show_progress: bool = True, kind: str = "flat",
                       params: dict | None = None) -> Path:
    """Reuse the cached dense index for this dataset and encoder, or build it."""
    return ensure_index(dataset, kind, encoder=encoder, params=params, batch_size=batch_size,
                        index_dir=index_dir, show_progress=show_progress)


def ensure_bm25_index(dataset: Dataset, index_dir: Path | None = None, show_progress: bool = True) -> Path:
    return ensure_index(dataset, "bm25", index_dir=index_dir, show_progress=show_progress)


def retrieve(
    dataset: Dataset,
    split: str,
    *,
    use_bm25: bool = False,
    dense: DenseSettings | None = None,
    k: int = 1000,
    show_progress: bool = True,
    kind: str | None = None,
    search_params: dict | None = None,
) -> Run:
    """Index the dataset's corpus (cached) and search the queries judged in `split`.

    `kind` is any index kind (default: bm25 with `use_bm25`, else `dense.kind`); `search_params`
    are its search-time parameters."""
    queries = dataset.queries(split)
    dense = dense or DenseSettings()
    kind = kind or ("bm25" if use_bm25 else dense.kind)
    cls = index_class(kind)
    encoder = dense.encoder() if cls.needs_encoder else None
    params = dense.params if cls.needs_encoder else None
    index_dir = _cache_entry(dataset, kind, encoder, params)
    with entry_lock(index_dir) as lock:
        ensure_index(dataset, kind, encoder=encoder, params=params, batch_size=dense.batch_size,
                     index_dir=index_dir, show_progress=show_progress)
        fcntl.flock(lock.fileno(), fcntl.LOCK_SH)  # others may read it too, none may replace it
        if cls.needs_encoder:
            cls.open(index_dir).check_corpus(dataset.corpus, dataset.id)
        return search(index_dir, queries, k, encoder=encoder, batch_size=dense.batch_size, params=search_params,
                      show_progress=show_progress)
