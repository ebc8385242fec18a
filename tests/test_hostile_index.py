"""`listrank index` / `search` against hostile output paths, changed corpora, shared caches and huge
texts (issue 13: classes 1, 2, 7, 8, 9), on a tiny real SciFact slice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from listrank.errors import ListrankError
from listrank.formats import Document, read_corpus, write_corpus, write_qrels

from cli_helpers import expect_user_error as _error, invoke


@pytest.fixture
def tiny(tmp_path, make_scifact_folder):
    """3 test queries, their judged documents and 10 more: a 13-odd document BEIR folder."""
    return make_scifact_folder(tmp_path / "tiny", n_queries=3, n_docs=10)


def _index(ds, out, *extra):
    return invoke("index", "--dataset", ds, "-o", out, "--max-length", 64, *extra)


# --- class 1: an output path never deletes data -------------------------------------------------

def test_index_refuses_a_folder_it_did_not_write(tmp_path, tiny):
    d = tmp_path / "d"
    d.mkdir()
    (d / "thesis.txt").write_text("x")
    _error(_index(tiny, d), "not written by listrank")
    assert sorted(p.name for p in d.iterdir()) == ["thesis.txt"]


def test_index_never_replaces_its_input(tmp_path, tiny):
    before = sorted(p.name for p in tiny.rglob("*"))
    _error(_index(tiny, tiny), "input")
    _error(_index(tiny, tiny.parent), "input")  # the folder holding the dataset
    _error(_index(tiny / "corpus.jsonl", tiny / "corpus.jsonl"), "input")
    assert sorted(p.name for p in tiny.rglob("*")) == before


def test_index_into_the_current_folder_is_refused(tmp_path, tiny, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _error(_index(tiny, "."), "current folder")
    assert tiny.exists()


def test_index_replaces_its_own_index_and_bm25_flags_that_do_not_apply(tmp_path, tiny):
    idx = tmp_path / "idx"
    assert _index(tiny, idx).exit_code == 0
    assert _index(tiny, idx).exit_code == 0  # a listrank index may be replaced
    assert (idx / "meta.json").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".idx")]
    _error(invoke("index", "--dataset", tiny, "-o", tmp_path / "b", "--bm25", "--model", "x"), "do not apply")
    _error(invoke("index", "--dataset", tiny, "-o", tmp_path / "b", "--precision", "bf8"), "unknown --precision")


# --- class 2: a stale or mixed-up index is never used -------------------------------------------

def test_search_refuses_an_index_of_a_changed_corpus(tmp_path, tiny):
    idx = tmp_path / "idx"
    assert _index(tiny, idx).exit_code == 0
    assert invoke("search", idx, "-d", tiny, "-k", 5, "-o", tmp_path / "r.jsonl").exit_code == 0
    docs = read_corpus(tiny / "corpus.jsonl")
    write_corpus(tiny / "corpus.jsonl", docs[1:])  # a document deleted
    _error(invoke("search", idx, "-d", tiny, "-k", 5, "-o", tmp_path / "r2.jsonl"), "corpus fingerprint differs")
    assert not (tmp_path / "r2.jsonl").exists()


def test_an_inconsistent_index_folder_is_an_error(tmp_path, tiny):
    idx = tmp_path / "idx"
    assert _index(tiny, idx).exit_code == 0
    ids = (idx / "docids.txt").read_text().splitlines()
    (idx / "docids.txt").write_text("\n".join(ids[:-1]) + "\n")
    _error(invoke("search", idx, "-q", tiny / "queries.jsonl", "-o", tmp_path / "r.jsonl"), "inconsistent")


def test_non_finite_embeddings_are_never_indexed(tmp_path, encoder, monkeypatch):
    from listrank.index import build_dense_index

    monkeypatch.setattr(encoder, "encode", lambda texts, **kw: np.full((len(texts), 384), np.nan, np.float32))
    with pytest.raises(ListrankError, match="non-finite embeddings"):
        build_dense_index(encoder, [Document("a", "x"), Document("b", "y")], tmp_path / "idx", show_progress=False)
    assert not (tmp_path / "idx").exists()


def _renamed_copy(src: Path, dest: Path) -> Path:
    """The same dataset with every doc id prefixed: another corpus, the same scores."""
    from listrank.formats import read_qrels

    dest.mkdir(parents=True)
    write_corpus(dest / "corpus.jsonl", [Document("x" + d.id, d.text, d.title) for d in read_corpus(src / "corpus.jsonl")])
    (dest / "queries.jsonl").write_text((src / "queries.jsonl").read_text())
    qrels = read_qrels(src / "qrels" / "test.tsv")
    write_qrels(dest / "qrels" / "test.tsv", {q: {"x" + d: g for d, g in j.items()} for q, j in qrels.items()})
    return dest


def test_two_evals_at_once_with_the_same_relative_id_from_two_folders(tmp_path, tiny):
    """`eval --dataset beir/tiny` in two working folders, at the same time, one cache: the cache was
    keyed by the id as typed, so one process searched the other's index (nDCG 0.0000, exit 0)."""
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "beir").mkdir(parents=True)
    tiny.rename(a / "beir" / "tiny")
    _renamed_copy(a / "beir" / "tiny", b / "beir" / "tiny")
    cache = tmp_path / "cache"
    env = {**os.environ, "LISTRANK_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [sys.executable, "-m", "listrank", "eval", "--dataset", "beir/tiny", "--max-length", "64", "-o", "m.json"]
    procs = [subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cwd in (a, b)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    scores = [json.loads((cwd / "m.json").read_text())["aggregate"]["nDCG@10"] for cwd in (a, b)]
    assert scores[0] > 0.3 and scores[0] == pytest.approx(scores[1], abs=1e-3), (scores, outs)
    entries = sorted(p.name for p in (cache / "indexes").iterdir() if p.is_dir())
    assert len(entries) == 2 and all(e.startswith("tiny-") for e in entries), entries
    # once more, from a: the cached index is reused (the lock and the fingerprint agree)
    again = subprocess.run(cmd, cwd=a, env=env, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0 and "reusing index" in again.stderr, again.stderr


def test_index_cache_entry_is_keyed_by_content_not_by_id(tmp_path, tiny, monkeypatch):
    from listrank.datasets import resolve
    from listrank.pipeline import index_cache_dir

    copy = tmp_path / "elsewhere" / "tiny"
    copy.parent.mkdir()
    copy.mkdir()
    for f in ("corpus.jsonl", "queries.jsonl"):
        (copy / f).write_text((tiny / f).read_text())
    same = index_cache_dir(resolve(tiny), "dense") == index_cache_dir(resolve(copy), "dense")
    write_corpus(copy / "corpus.jsonl", read_corpus(copy / "corpus.jsonl")[1:])
    differs = index_cache_dir(resolve(tiny), "dense") != index_cache_dir(resolve(copy), "dense")
    assert same and differs


# --- class 7: user mistakes are one-line errors, found before the compute ----------------------

def test_search_output_mistakes_are_found_before_searching(tmp_path, tiny):
    idx = tmp_path / "idx"
    assert _index(tiny, idx).exit_code == 0
    (tmp_path / "folder").mkdir()
    _error(invoke("search", idx, "-d", tiny, "-o", tmp_path / "folder"), "is a folder")
    _error(invoke("search", idx, "-d", tiny, "-o", idx / "docids.txt"), "inside the index")
    assert len((idx / "docids.txt").read_text().splitlines()) > 3
    _error(invoke("search", idx, "-q", tiny / "queries.jsonl", "-o", tiny / "queries.jsonl"), "input")
    (tmp_path / "file").write_text("x")
    _error(invoke("search", idx, "-d", tiny, "-o", tmp_path / "file" / "r.jsonl"), "cannot write")


def test_search_trec_with_query_ids_holding_spaces_is_refused_up_front(tmp_path, tiny):
    idx = tmp_path / "idx"
    assert _index(tiny, idx).exit_code == 0
    queries = tmp_path / "q.tsv"
    queries.write_text("query one\twhat causes cancer\nq2\tprotein folding\n")
    _error(invoke("search", idx, "-q", queries, "--format", "trec", "-o", tmp_path / "r.trec"), "whitespace", "jsonl")
    assert invoke("search", idx, "-q", queries, "-o", tmp_path / "r.jsonl").exit_code == 0


# --- class 8: a huge single-line text is clipped before tokenisation -----------------------------

def test_a_huge_single_line_document_is_clipped_before_tokenising(encoder, monkeypatch):
    from listrank.encoder import CHARS_PER_TOKEN_BOUND, clip_text

    words = ("protein folding in the cell membrane " * 200_000).strip()  # ~7 MB, one line
    seen = []
    tokenizer = encoder.tokenizer

    def recording(texts, **kw):
        seen.extend(len(t) for t in texts)
        return tokenizer(texts, **kw)

    monkeypatch.setattr(encoder, "tokenizer", recording)
    start = time.perf_counter()
    huge = encoder.encode([words])
    elapsed = time.perf_counter() - start
    assert max(seen) <= encoder.max_length * CHARS_PER_TOKEN_BOUND
    assert elapsed < 5
    # the first max_length tokens are what they were: the same embedding as the first 2,000 characters
    assert np.allclose(huge, encoder.encode([words[:2000]]), atol=1e-5)
    assert clip_text("short", 8) == "short" and len(clip_text("a" * 10_000, 8)) == 8 * CHARS_PER_TOKEN_BOUND


def test_search_refuses_a_bm25_index_of_a_changed_corpus(tmp_path, tiny):
    pytest.importorskip("pyserini")
    idx = tmp_path / "bm25"
    result = invoke("index", "--dataset", tiny, "--bm25", "-o", idx)
    if result.exit_code != 0 and "Java" in result.output:
        pytest.skip(result.output)
    assert result.exit_code == 0, result.output
    assert invoke("search", idx, "-d", tiny, "-k", 5, "-o", tmp_path / "r.jsonl").exit_code == 0
    write_corpus(tiny / "corpus.jsonl", read_corpus(tiny / "corpus.jsonl")[1:])
    _error(invoke("search", idx, "-d", tiny, "-k", 5, "-o", tmp_path / "r2.jsonl"), "corpus fingerprint differs")


def test_non_finite_query_embeddings_are_never_ranked_or_audited(tmp_path, tiny, encoder, monkeypatch):
    from listrank.audit import score_lists
    from listrank.formats import SyntheticList, SyntheticPassage, read_queries
    from listrank.index import DenseIndex, build_dense_index
    from listrank.search import dense_search

    idx = build_dense_index(encoder, read_corpus(tiny / "corpus.jsonl"), tmp_path / "idx", show_progress=False)
    monkeypatch.setattr(encoder, "encode", lambda texts, **kw: np.full((len(texts), 384), np.nan, np.float32))
    with pytest.raises(ListrankError, match="non-finite query embeddings"):
        dense_search(DenseIndex.open(idx), read_queries(tiny / "queries.jsonl"), 5, encoder=encoder, show_progress=False)
    lists = [SyntheticList("q", "a query", [SyntheticPassage("q_l_3_d_0", 3, "a passage")])]
    with pytest.raises(ListrankError, match="non-finite embeddings"):
        score_lists(lists, encoder)


@pytest.mark.parametrize("batch_size", [0, -4])
def test_a_batch_size_below_one_is_an_error_not_garbage_embeddings(tmp_path, tiny, batch_size):
    _error(_index(tiny, tmp_path / "idx", "--batch-size", batch_size), "--batch-size must be at least 1")
    assert not (tmp_path / "idx").exists()
