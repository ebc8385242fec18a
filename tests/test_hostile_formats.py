"""Hostile input files and output paths: formats that round-trip, outputs that never destroy data.

Issue 13, classes 1 (data loss through an output path), 3 (non-finite numbers in runs),
6 (formats that do not round-trip), 7 (tracebacks for user mistakes), 8 (leftover temporaries)
and 9 (file modes).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from listrank import atomic
from listrank.atomic import MARKER_FILE, atomic_dir, atomic_write, check_output_file, check_output_folder
from listrank.datasets import resolve
from listrank.errors import FormatError, ListrankError
from listrank.formats import (
    RunFormat,
    read_corpus,
    read_qrels,
    read_queries,
    read_run,
    write_run,
)


# --- class 6: formats ------------------------------------------------------------------------

def test_bom_is_not_part_of_the_first_id(tmp_path):
    bom = "\ufeff"
    (tmp_path / "q.tsv").write_text(bom + "q1\tfirst query\nq2\tsecond\n", encoding="utf-8")
    (tmp_path / "qrels.tsv").write_text(bom + "query-id\tcorpus-id\tscore\nq1\td1\t1\n", encoding="utf-8")
    (tmp_path / "run.trec").write_text(bom + "q1 Q0 d1 1 2.0 x\n", encoding="utf-8")
    (tmp_path / "run.jsonl").write_text(bom + json.dumps({"query_id": "q1", "hits": [{"doc_id": "d1", "score": 1}]}) + "\n",
                                        encoding="utf-8")
    (tmp_path / "corpus.jsonl").write_text(bom + json.dumps({"_id": "d1", "text": "t"}) + "\n", encoding="utf-8")
    assert [q.id for q in read_queries(tmp_path / "q.tsv")] == ["q1", "q2"]
    assert read_qrels(tmp_path / "qrels.tsv") == {"q1": {"d1": 1}}  # the header is recognised too
    assert read_run(tmp_path / "run.trec") == {"q1": {"d1": 2.0}}
    assert read_run(tmp_path / "run.jsonl") == {"q1": {"d1": 1.0}}
    assert read_corpus(tmp_path / "corpus.jsonl")[0].id == "d1"


def test_qrels_tsv_ids_with_spaces_are_parsed_by_tabs(tmp_path):
    path = tmp_path / "qrels.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq 1\td 1\t2\nq2\td2\t1\n")
    assert read_qrels(path) == {"q 1": {"d 1": 2}, "q2": {"d2": 1}}
    trec = tmp_path / "qrels.trec"
    trec.write_text("q1 0 d1 1\nq1 0 d2 0\n")
    assert read_qrels(trec) == {"q1": {"d1": 1, "d2": 0}}


def test_qrels_judged_twice_differently_is_an_error(tmp_path):
    path = tmp_path / "qrels.tsv"
    path.write_text("q1\td1\t1\nq1\td1\t2\n")
    with pytest.raises(FormatError, match=r"qrels.tsv:2: .*judged twice"):
        read_qrels(path)


def test_duplicate_doc_ids_in_a_corpus_are_an_error_with_both_lines(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": i, "text": "x"}) + "\n" for i in ("a", "b", "a")))
    with pytest.raises(FormatError, match=r"corpus.jsonl:3: doc id 'a' appears more than once \(first on line 1\)"):
        read_corpus(path)


def test_queries_tsv_header_line_is_not_a_query(tmp_path):
    for header in ("qid\ttext", "query-id\tquery", "id\ttext", "_id\ttext"):
        path = tmp_path / "q.tsv"
        path.write_text(f"{header}\nq1\tfirst\n")
        assert [q.id for q in read_queries(path)] == ["q1"], header
    # a query that merely looks like a header further down is kept
    path.write_text("q1\tfirst\nid\ttext\n")
    assert [q.id for q in read_queries(path)] == ["q1", "id"]


def test_trec_run_refuses_ids_with_whitespace_so_it_round_trips(tmp_path):
    run = {"q 1": {"d1": 1.0}}
    with pytest.raises(ListrankError, match="whitespace.*--format jsonl"):
        write_run(tmp_path / "r.trec", run, RunFormat.trec)
    assert not (tmp_path / "r.trec").exists()
    write_run(tmp_path / "r.jsonl", run)  # JSONL holds any id
    assert read_run(tmp_path / "r.jsonl") == run
    with pytest.raises(ListrankError, match="whitespace"):
        write_run(tmp_path / "r.trec", {"q1": {"d 1": 1.0}}, RunFormat.trec)


def test_written_ranks_agree_with_trec_eval_order_after_rounding(tmp_path):
    # Two scores that differ only past the 6th decimal print equal; trec_eval then orders them by
    # doc id, descending. Sorting on full precision put "a" first although it prints the same.
    run = {"q1": {"a": 0.50000049, "b": 0.50000001, "c": 0.2}}
    write_run(tmp_path / "r.trec", run, RunFormat.trec)
    lines = [l.split() for l in (tmp_path / "r.trec").read_text().splitlines()]
    assert [(l[2], l[3], l[4]) for l in lines] == [("b", "1", "0.500000"), ("a", "2", "0.500000"), ("c", "3", "0.200000")]
    # what trec_eval would do with the printed scores: sort by (score, docid) descending
    printed = sorted(((float(l[4]), l[2]) for l in lines), reverse=True)
    assert [d for _, d in printed] == [l[2] for l in lines]
    write_run(tmp_path / "r.jsonl", run)
    hits = json.loads((tmp_path / "r.jsonl").read_text())["hits"]
    assert [h["doc_id"] for h in hits] == ["b", "a", "c"]


def test_duplicate_hits_in_a_run_are_an_error(tmp_path):
    trec = tmp_path / "r.trec"
    trec.write_text("q1 Q0 d1 1 2.0 x\nq1 Q0 d1 2 1.0 x\n")
    with pytest.raises(FormatError, match=r"r.trec:2: .*twice"):
        read_run(trec)
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text(json.dumps({"query_id": "q1", "hits": [{"doc_id": "d", "score": 1}, {"doc_id": "d", "score": 0}]}) + "\n")
    with pytest.raises(FormatError, match=r"r.jsonl:1: .*twice"):
        read_run(jsonl)


# --- class 3: non-finite numbers --------------------------------------------------------------

@pytest.mark.parametrize("score", ["nan", "NaN", "inf", "-Infinity"])
def test_trec_run_with_non_finite_scores_is_refused_with_file_and_line(tmp_path, score):
    path = tmp_path / "r.trec"
    path.write_text(f"q1 Q0 d1 1 1.5 x\nq1 Q0 d2 2 {score} x\n")
    with pytest.raises(FormatError, match=r"r.trec:2: score .* is not a finite number"):
        read_run(path)


def test_jsonl_run_with_nan_is_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"query_id": "q1", "hits": [{"doc_id": "d1", "score": NaN}]}\n')
    with pytest.raises(FormatError, match=r"r.jsonl:1: score nan is not a finite number"):
        read_run(path)


def test_non_finite_run_is_never_written(tmp_path):
    for fmt in RunFormat:
        with pytest.raises(ListrankError, match="non-finite"):
            write_run(tmp_path / f"r.{fmt.value}", {"q1": {"d1": math.nan}}, fmt)
        assert not (tmp_path / f"r.{fmt.value}").exists()


def test_evaluate_refuses_non_finite_scores():
    from listrank.evaluate import evaluate

    with pytest.raises(ListrankError, match="non-finite"):
        evaluate({"q1": {"d1": float("nan"), "d2": 1.0}}, {"q1": {"d1": 1}}, "ndcg@10")


# --- class 1: dataset ids ---------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["beir/..", "beir/../../etc", "./beir/scifact/..", "beir/./scifact"])
def test_dataset_ids_may_not_leave_the_data_roots(tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "root" / "beir").mkdir(parents=True)
    with pytest.raises(ListrankError, match=r"'\.' or '\.\.' segment|not found"):
        resolve(spec, data_dir=tmp_path / "root" / "beir" / "x", download=False)


def test_dotdot_id_that_would_reach_a_dataset_is_refused(tmp_path, monkeypatch):
    # <root>/beir/../secret is a dataset folder; the id must not reach it
    secret = tmp_path / "root" / "secret"
    secret.mkdir(parents=True)
    (secret / "queries.jsonl").write_text('{"_id": "1", "text": "x"}\n')
    (tmp_path / "root" / "beir").mkdir()
    monkeypatch.chdir(tmp_path / "root" / "beir")  # so the id is no local path either
    with pytest.raises(ListrankError, match=r"'\.\.' segment"):
        resolve("beir/../secret", data_dir=tmp_path / "root", download=False)


# --- class 1 / 7: output paths ----------------------------------------------------------------

def test_atomic_dir_refuses_a_folder_listrank_did_not_write(tmp_path):
    theirs = tmp_path / "d"
    theirs.mkdir()
    (theirs / "thesis.txt").write_text("years of work")
    with pytest.raises(ListrankError, match="not written by listrank"):
        with atomic_dir(theirs, replace=atomic.is_listrank_folder) as tmp:
            (tmp / "meta.json").write_text("{}")
    assert (theirs / "thesis.txt").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    # a folder listrank wrote (marker) is replaced, and the new one carries the marker again
    ours = tmp_path / "o"
    for text in ("one", "two"):
        with atomic_dir(ours, replace=atomic.is_listrank_folder, marker=True) as tmp:
            (tmp / "f").write_text(text)
    assert (ours / "f").read_text() == "two" and (ours / MARKER_FILE).exists()


def test_check_output_folder_refuses_inputs_cwd_and_foreign_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "corpus.jsonl").write_text("{}\n")
    with pytest.raises(ListrankError, match="is \\(or holds\\) the input"):
        check_output_folder(ds, inputs=[ds])
    with pytest.raises(ListrankError, match="is \\(or holds\\) the input"):
        check_output_folder(tmp_path / "x", inputs=[tmp_path / "x" / "sub" / "corpus.jsonl"])
    for cwd_like in (".", tmp_path, tmp_path.parent):
        with pytest.raises(ListrankError, match="current folder"):
            check_output_folder(cwd_like)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "thesis.txt").write_text("x")
    with pytest.raises(ListrankError, match="not written by listrank"):
        check_output_folder(tmp_path / "d")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ListrankError, match="not a folder"):
        check_output_folder(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    assert check_output_folder(tmp_path / "empty") == tmp_path / "empty"
    assert check_output_folder(tmp_path / "new" / "idx") == tmp_path / "new" / "idx"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_check_output_file_refuses_folders_inputs_and_unwritable_places(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(ListrankError, match="is a folder"):
        check_output_file(tmp_path / "dir")
    (tmp_path / "in.jsonl").write_text("x")
    with pytest.raises(ListrankError, match="also an input"):
        check_output_file(tmp_path / "sub" / ".." / "in.jsonl", inputs=[tmp_path / "in.jsonl"])
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ListrankError, match="not writable"):
            check_output_file(locked / "deeper" / "m.json")
        with pytest.raises(ListrankError, match="cannot write"):
            with atomic_write(locked / "m.json") as fh:
                fh.write("x")
    finally:
        locked.chmod(0o700)


def test_atomic_write_to_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ListrankError, match="is a folder"):
        with atomic_write(tmp_path) as fh:
            fh.write("x")


# --- class 8: leftovers of a kill; class 9: file modes -----------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_a_killed_process_are_cleaned_by_the_next_write(tmp_path):
    dead = _dead_pid()
    left = [tmp_path / f".idx.{dead}.abc123.tmp", tmp_path / f".run.jsonl.{dead}.x1y2.tmp", tmp_path / f".idx.old-{dead}"]
    left[0].mkdir()
    (left[0] / "embeddings.npy").write_bytes(b"x" * 100)
    left[1].write_text("half a run")
    left[2].mkdir()
    alive = tmp_path / f".idx.{os.getpid()}.zzz.tmp"  # a live writer's (here: ours) is kept
    alive.mkdir()
    other = tmp_path / ".unrelated.1.tmp"
    other.write_text("not ours")
    with atomic_dir(tmp_path / "idx") as tmp:
        (tmp / "f").write_text("x")
    with atomic_write(tmp_path / "run.jsonl") as fh:
        fh.write("x")
    assert not any(p.exists() for p in left)
    assert alive.exists() and other.exists()


def test_atomic_outputs_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "m.json") as fh:
            fh.write("{}")
        with atomic_dir(tmp_path / "idx") as tmp:
            (tmp / "f").write_text("x")
        reference = tmp_path / "plain.txt"
        reference.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == reference.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "idx").stat().st_mode & 0o777 == 0o755


def test_output_under_a_file_is_a_clear_error_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ListrankError, match="is not a folder"):
        check_output_file(tmp_path / "file" / "m.json")
    with pytest.raises(ListrankError, match="cannot write"):
        with atomic_write(tmp_path / "file" / "m.json") as fh:
            fh.write("x")
