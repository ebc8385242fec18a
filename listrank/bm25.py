"""Lucene BM25 through pyserini, set up like pyserini's BEIR "flat" regressions.

Indexing (`build_index`, `ensure_index`):
  * one field, `contents` = title + "\\n" + text: the join of Anserini's `BeirFlatCollection`
    (`json.get("title").asText() + "\\n" + json.get("text").asText()`, also for an empty title).
    The analyzer splits on the newline exactly as on a space, so this is token for token the
    `Document.full_text()` that dense encoders see;
  * Anserini's `DefaultEnglishAnalyzer` as `IndexCollection` configures it by default: Lucene's
    StandardTokenizer, English possessive removal, lowercasing, Lucene's default English stopword
    list (33 words), Porter stemming. `LuceneSearcher` analyses queries with the same analyzer;
  * no positions, doc vectors or raw documents are stored (BM25 scores do not need them);
  * built by Anserini's `IndexCollection` (`-collection JsonCollection`) in a child process, into a
    temporary folder that replaces `index_dir` only once the index is complete (`atomic_dir`).

`index_dir/meta.json` (kind "bm25") records how the index was built and a fingerprint of its corpus;
`ensure_index` reuses an index only when that fingerprint still matches.

Search (`search`): `LuceneSearcher.batch_search` with BM25 k1=0.9, b=0.4 (pyserini's BEIR
defaults), returning a `Run` (qid -> docid -> score).

Everything here starts a JVM lazily, through `listrank._lucene` (see its docstring for the
workarounds); importing this module is cheap and needs neither pyserini nor Java.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from listrank.atomic import atomic_dir, is_listrank_folder
from listrank.errors import ListrankError
from listrank.formats import Document, Query, Run, read_corpus
from listrank.retrieval.base import META_FILE, write_meta
from listrank.retrieval.base import read_meta_or_none as _read_meta_or_none
from listrank.retrieval.base import corpus_fingerprint as _fingerprint

DEFAULT_K1 = 0.9
DEFAULT_B = 0.4
# Bump when what goes into the index changes (field contents, analyzer, fingerprint...): older indexes
# get rebuilt. 2: the corpus fingerprint is listrank.retrieval's (documents' content), as for dense.
INDEX_FORMAT = 2
CONTENTS_SEP = "\n"  # Anserini BeirFlatCollection: title + "\n" + text
ANALYZER = {"class": "DefaultEnglishAnalyzer", "stemmer": "porter", "stopwords": "lucene-english-default"}
_DOCS_PER_SHARD = 10_000

CorpusLike = Sequence[Document] | str | os.PathLike

__all__ = [
    "DEFAULT_B",
    "DEFAULT_K1",
    "build_index",
    "contents",
    "corpus_fingerprint",
    "default_threads",
    "ensure_index",
    "index_is_current",
    "read_meta_or_none",
    "search",
]


def default_threads() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def contents(doc: Document) -> str:
    """The text indexed for `doc`: exactly what Anserini's BeirFlatCollection indexes."""
    return f"{doc.title}{CONTENTS_SEP}{doc.text}"


# --- corpus and fingerprint ----------------------------------------------------------------------

def _corpus_file(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "corpus.jsonl"
    if not path.is_file():
        raise ListrankError(f"corpus {path} not found (expected a BEIR corpus.jsonl or a folder holding one)")
    return path


def _file_stat(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def corpus_fingerprint(corpus: CorpusLike) -> str:
    """The corpus fingerprint every index kind records (`listrank.retrieval.corpus_fingerprint`):
    sha256 over the documents' ids, titles and texts, whether they come from a file, a BEIR folder
    or a list."""
    docs = read_corpus(_corpus_file(corpus)) if isinstance(corpus, (str, os.PathLike)) else corpus
    return _fingerprint(docs)


def _load(corpus: CorpusLike) -> list[Document]:
    docs = read_corpus(_corpus_file(corpus)) if isinstance(corpus, (str, os.PathLike)) else list(corpus)
    if not docs:
        raise ListrankError("cannot build a BM25 index from an empty corpus")
    seen: set[str] = set()
    for d in docs:
        if d.id in seen:
            raise ListrankError(f"corpus has document id {d.id!r} more than once; ids must be unique")
        seen.add(d.id)
    return docs


# --- metadata ------------------------------------------------------------------------------------

def read_meta_or_none(index_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The index's `meta.json` if it is a BM25 one, else None (`listrank.retrieval.read_meta` raises instead)."""
    meta = _read_meta_or_none(index_dir)
    return meta if meta is not None and meta.get("kind") == "bm25" else None


def index_is_current(index_dir: str | os.PathLike, corpus: CorpusLike) -> bool:
    """True if `index_dir` is a complete listrank BM25 index built (the current way) from `corpus`.

    For a corpus file whose path, size and mtime are the ones recorded at build, the file is not
    read again; otherwise its documents' fingerprint decides (so a touched or copied but identical
    file still matches, and so do the same documents given as a list).
    """
    meta = read_meta_or_none(index_dir)
    if not meta or meta.get("index_format") != INDEX_FORMAT or not isinstance(meta.get("corpus"), str):
        return False
    if isinstance(corpus, (str, os.PathLike)):
        path = _corpus_file(corpus).resolve()
        if meta.get("corpus_file") == _file_stat(path):
            return True
    return meta["corpus"] == corpus_fingerprint(corpus)


# --- indexing ------------------------------------------------------------------------------------

def _progress(enabled: bool):
    from listrank.progress import progress_bar

    return progress_bar(enabled=enabled, transient=True)


def _write_collection(docs: list[Document], folder: Path, shards: int) -> None:
    """A JsonCollection: `shards` files of {"id", "contents"} lines (IndexCollection: a thread a file)."""
    per_shard = math.ceil(len(docs) / shards)
    for i in range(shards):
        with open(folder / f"docs{i:03d}.jsonl", "w", encoding="utf-8") as fh:
            for d in docs[i * per_shard:(i + 1) * per_shard]:
                fh.write(json.dumps({"id": d.id, "contents": contents(d)}, ensure_ascii=False) + "\n")


def build_index(
    corpus: CorpusLike,
    index_dir: str | os.PathLike,
    *,
    threads: int | None = None,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    progress: bool = True,
) -> dict[str, Any]:
    """Build a Lucene BM25 index of `corpus` (documents, a corpus.jsonl or a BEIR folder) at `index_dir`.

    An existing `index_dir` is replaced, but only once the new index is complete; on any failure
    it is left as it was and no temporary folder remains. `k1`/`b` are only recorded (as the
    parameters the index is meant to be searched with): Lucene applies BM25 at search time.
    Returns the metadata written to `index_dir/meta.json`.
    """
    from listrank import _lucene

    started = time.perf_counter()
    index_dir = Path(index_dir)
    threads = max(1, threads or default_threads())
    docs = _load(corpus)
    fingerprint = _fingerprint(docs)
    corpus_file = _file_stat(_corpus_file(corpus).resolve()) if isinstance(corpus, (str, os.PathLike)) else None
    shards = min(threads, max(1, len(docs) // _DOCS_PER_SHARD))
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    with _progress(progress) as bar, atomic_dir(index_dir, replace=is_listrank_folder) as staging, \
            tempfile.TemporaryDirectory(dir=index_dir.parent, prefix=f".{index_dir.name}.{os.getpid()}.collection.",
                                        suffix=".tmp") as collection:
        bar.add_task(f"BM25: indexing {len(docs):,} documents", total=None)
        _write_collection(docs, Path(collection), shards)
        result = _lucene.index_collection(
            [
                "-collection", "JsonCollection",
                "-generator", "DefaultLuceneDocumentGenerator",
                "-input", str(collection),
                "-index", str(staging),
                "-threads", str(threads),
                "-language", "en",
                "-stemmer", "porter",
            ]
        )
        (staging / "write.lock").unlink(missing_ok=True)
        if result["num_docs"] == 0:
            raise ListrankError("Lucene indexed no document: every document in the corpus is empty")
        meta: dict[str, Any] = {
            "kind": "bm25",
            "index_format": INDEX_FORMAT,
            "k1": k1,
            "b": b,
            "contents": "title + '\\n' + text (Anserini BeirFlatCollection)",
            "analyzer": ANALYZER,
            "index": "bm25",
            "corpus": fingerprint,
            "corpus_file": corpus_file,
            "corpus_docs": len(docs),
            # Anserini skips documents whose contents are blank, as the BEIR regressions do.
            "num_docs": result["num_docs"],
            "threads": threads,
            **_versions(),
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        write_meta(staging, meta)
    return meta


def _versions() -> dict[str, Any]:
    from listrank import _lucene

    info = _lucene.jvm_info()
    return {"pyserini_version": info["pyserini"], "anserini_jar": info["anserini_jar"]}


def ensure_index(
    corpus: CorpusLike,
    index_dir: str | os.PathLike,
    *,
    threads: int | None = None,
    rebuild: bool = False,
    progress: bool = True,
) -> tuple[dict[str, Any], bool]:
    """Reuse `index_dir` if it was built from this very corpus, else (re)build it.

    Returns (metadata, built): built is False when the cached index was reused.
    """
    if not rebuild and index_is_current(index_dir, corpus):
        meta = read_meta_or_none(index_dir)
        assert meta is not None
        return meta, False
    return build_index(corpus, index_dir, threads=threads, progress=progress), True


# --- search --------------------------------------------------------------------------------------

def _check_index(index_dir: Path) -> None:
    if read_meta_or_none(index_dir) is None and not any(index_dir.glob("segments_*")):
        raise ListrankError(
            f"{index_dir} is not a BM25 index (no {META_FILE}, no Lucene segments); "
            "build one first (listrank.bm25.build_index)"
        )


def search(
    index_dir: str | os.PathLike,
    queries: Sequence[Query],
    k: int = 1000,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    threads: int = 2,
    *,
    exclude_query_id: bool = False,
    batch_size: int = 1000,
    progress: bool = True,
) -> Run:
    """BM25 top-`k` documents for each query: qid -> docid -> score (every query id is a key).

    `exclude_query_id=True` applies the BEIR convention of dropping a hit whose doc id equals the
    query id (it fetches k+1 so that k hits remain). Queries go to `LuceneSearcher.batch_search`
    `batch_size` at a time on `threads` Java threads. Also searches any Lucene index built by
    pyserini/Anserini with a `contents` field and the default analyzer.
    """
    index_dir = Path(index_dir)
    _check_index(index_dir)
    if k < 1:
        raise ListrankError(f"k must be at least 1, got {k}")
    ids = [q.id for q in queries]
    if len(set(ids)) != len(ids):
        raise ListrankError("query ids must be unique")
    run: Run = {qid: {} for qid in ids}
    if not queries:
        return run
    from listrank import _lucene

    searcher = _lucene.lucene_searcher_class()(str(index_dir))
    try:
        searcher.set_bm25(float(k1), float(b))
        fetch = k + 1 if exclude_query_id else k
        with _progress(progress and len(queries) > batch_size) as bar:
            task = bar.add_task("BM25: searching", total=len(queries))
            for start in range(0, len(queries), batch_size):
                batch = queries[start:start + batch_size]
                results = searcher.batch_search(
                    [q.text for q in batch], [q.id for q in batch], k=fetch, threads=max(1, threads)
                )
                for qid, hits in results.items():
                    ranked = run[qid]
                    for hit in hits:
                        if exclude_query_id and hit.docid == qid:
                            continue
                        if len(ranked) < k:
                            ranked[hit.docid] = float(hit.score)
                bar.advance(task, len(batch))
    finally:
        close = getattr(searcher, "close", None)
        if close is not None:
            close()
    return run
