"""Readers and writers of the shared records: round trips and file:line errors."""

from __future__ import annotations

import json

import pytest

from listrank.errors import FormatError
from listrank.formats import (
    Document,
    Query,
    ReadStats,
    RunFormat,
    SyntheticList,
    SyntheticPassage,
    read_corpus,
    read_qrels,
    read_queries,
    read_run,
    read_synthetic,
    synthetic_jsonl_line,
    write_corpus,
    write_qrels,
    write_queries,
    write_run,
)


def test_corpus_roundtrip(tmp_path):
    docs = [Document("d1", "some text", "A title"), Document("d2", "ünïcode ✓")]
    write_corpus(tmp_path / "c.jsonl", docs)
    assert read_corpus(tmp_path / "c.jsonl") == docs
    assert docs[0].full_text() == "A title some text" and docs[1].full_text() == "ünïcode ✓"


def test_queries_tsv_and_jsonl(tmp_path):
    (tmp_path / "q.tsv").write_text("1\twhat is bm25\n\n2\tdense retrieval\n")
    assert read_queries(tmp_path / "q.tsv") == [Query("1", "what is bm25"), Query("2", "dense retrieval")]
    write_queries(tmp_path / "q.jsonl", [Query("a", "x y")])
    assert read_queries(tmp_path / "q.jsonl") == [Query("a", "x y")]


def test_queries_tsv_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("1\tok\nno tab here\n3\tfine\n")
    with pytest.raises(FormatError, match=r"q\.tsv:2: expected 'qid<TAB>text'"):
        read_queries(path)
    stats = ReadStats()
    assert [q.id for q in read_queries(path, skip_invalid=True, stats=stats)] == ["1", "3"]
    assert stats.skipped == 1 and "q.tsv:2" in stats.first_errors[0]


def test_jsonl_errors(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "1", "text": "a"}\n{"_id": "2", "text": \n')
    with pytest.raises(FormatError, match=r"c\.jsonl:2: invalid JSON"):
        read_corpus(path)
    path.write_text('{"_id": "1", "title": "t"}\n')
    with pytest.raises(FormatError, match=r"c\.jsonl:1: missing field 'text'"):
        read_corpus(path)
    path.write_text('[1, 2]\n')
    with pytest.raises(FormatError, match=r"c\.jsonl:1: expected a JSON object"):
        read_corpus(path)


@pytest.mark.parametrize("reader", [read_corpus, read_queries, read_qrels, read_run])
def test_empty_files_are_errors(tmp_path, reader):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(FormatError, match="empty"):
        reader(path)


def test_missing_file(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        read_qrels(tmp_path / "nope.tsv")


def test_duplicate_query_ids(tmp_path):
    (tmp_path / "q.tsv").write_text("1\ta\n1\tb\n")
    with pytest.raises(FormatError, match="more than once"):
        read_queries(tmp_path / "q.tsv")


def test_qrels_beir_and_trec(tmp_path):
    (tmp_path / "b.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n")
    (tmp_path / "t.txt").write_text("q1 0 d1 2\nq1 0 d2 0\n")
    assert read_qrels(tmp_path / "b.tsv") == read_qrels(tmp_path / "t.txt") == {"q1": {"d1": 2, "d2": 0}}
    write_qrels(tmp_path / "w.tsv", {"q1": {"d1": 2}})
    assert read_qrels(tmp_path / "w.tsv") == {"q1": {"d1": 2}}
    (tmp_path / "bad.tsv").write_text("q1 d1\n")
    with pytest.raises(FormatError, match=r"bad\.tsv:1: expected"):
        read_qrels(tmp_path / "bad.tsv")
    (tmp_path / "bad2.tsv").write_text("q1 0 d1 high\n")
    with pytest.raises(FormatError, match=r"bad2\.tsv:1: relevance 'high' is not a number"):
        read_qrels(tmp_path / "bad2.tsv")


def test_run_jsonl_and_trec_roundtrip(tmp_path):
    run = {"q1": {"d1": 1.5, "d2": 3.0, "d3": 3.0}, "q2": {"d9": -1.0}}
    write_run(tmp_path / "r.jsonl", run)
    write_run(tmp_path / "r.trec", run, RunFormat.trec, tag="t")
    assert read_run(tmp_path / "r.jsonl") == run == read_run(tmp_path / "r.trec")
    lines = (tmp_path / "r.trec").read_text().splitlines()
    # 1-based ranks, best first, ties broken by doc id descending (as trec_eval sorts them)
    assert lines[:3] == ["q1 Q0 d3 1 3.000000 t", "q1 Q0 d2 2 3.000000 t", "q1 Q0 d1 3 1.500000 t"]
    first = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])
    assert [h["doc_id"] for h in first["hits"]] == ["d3", "d2", "d1"]


def test_trec_run_bad_line(tmp_path):
    (tmp_path / "r.trec").write_text("q1 Q0 d1 1 2.0 tag\nq1 Q0 d2 2 x tag\n")
    with pytest.raises(FormatError, match=r"r\.trec:2: score 'x' is not a number"):
        read_run(tmp_path / "r.trec")
    (tmp_path / "r2.trec").write_text("q1 Q0 d1 1 2.0\n")
    with pytest.raises(FormatError, match=r"r2\.trec:1: expected 6 columns"):
        read_run(tmp_path / "r2.trec")


def test_synthetic_roundtrip_and_errors(tmp_path):
    rec = SyntheticList("q7", "what is x", [SyntheticPassage(SyntheticList.passage_id("q7", 3, 0), 3, "x is y")],
                        {"backend": "fake"})
    assert rec.passages[0].id == "q7_l_3_d_0"
    (tmp_path / "s.jsonl").write_text(synthetic_jsonl_line(rec) + '{"query_id": "q8", "query": "y", "passages": []}\n')
    with pytest.raises(FormatError, match=r"s\.jsonl:2: 'passages' must be a non-empty list"):
        read_synthetic(tmp_path / "s.jsonl")
    assert read_synthetic(tmp_path / "s.jsonl", skip_invalid=True) == [rec]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from listrank.atomic import atomic_write

    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_is_synthetic_file_decides_by_the_first_line_then_the_name(tmp_path):
    from listrank.formats import is_synthetic_file

    cases = {
        "gen.jsonl": '\n{"query_id": "q", "query": "x", "passages": []}\n',
        "gen.txt": '{"query_id": "q", "query": "x", "passages": []}\n',
        "queries.jsonl": '{"_id": "1", "text": "x"}\n',
        "broken.jsonl": "not json\n",
        "broken.txt": "not json\n",
        "empty.jsonl": "",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    assert {n: is_synthetic_file(tmp_path / n) for n in cases} == {
        "gen.jsonl": True, "gen.txt": True, "queries.jsonl": False,
        "broken.jsonl": True, "broken.txt": False, "empty.jsonl": True,  # the reader reports file:line
    }
    assert not is_synthetic_file(tmp_path) and not is_synthetic_file(tmp_path / "missing.jsonl")
