"""The CLI end to end on small real data, and its one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from listrank import __version__
from listrank.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [l for l in result.output.strip().splitlines() if l.strip()]
    text = " ".join(lines)
    assert text.startswith("error:") and "Traceback" not in result.output
    for f in fragments:
        assert f in text, text


def test_version_and_help():
    assert invoke("--version").output.strip() == f"listrank {__version__}"
    for cmd in ("gen", "train", "index", "search", "eval", "regressions"):
        out = invoke(cmd, "--help").output
        assert "Examples" in out, cmd


@pytest.fixture
def small_dataset(tmp_path, make_scifact_folder):
    """A 60-document slice of SciFact with 10 test queries, in BEIR layout."""
    return make_scifact_folder(tmp_path / "mini", n_queries=10, n_docs=50)


def test_index_search_eval_pipeline(tmp_path, small_dataset):
    idx, run, trec, metrics = tmp_path / "idx", tmp_path / "run.jsonl", tmp_path / "run.trec", tmp_path / "m.json"
    assert invoke("index", "--dataset", small_dataset, "-o", idx, "--max-length", 128).exit_code == 0
    assert invoke("search", idx, "--dataset", small_dataset, "-k", 20, "-o", run).exit_code == 0
    assert invoke("search", idx, "--dataset", small_dataset, "-k", 20, "-o", trec, "--format", "trec").exit_code == 0
    first = trec.read_text().splitlines()[0].split()
    assert first[1] == "Q0" and first[3] == "1"
    result = invoke("eval", run, trec, "--dataset", small_dataset, "-o", metrics, "--permutations", 200)
    assert result.exit_code == 0 and "nDCG@10" in result.output
    saved = json.loads(metrics.read_text())
    # The same run in two formats scores the same.
    a, b = saved["runs"]
    assert a["aggregate"] == b["aggregate"] and a["aggregate"]["nDCG@10"] > 0.5


def test_eval_retrieves_when_given_no_run(tmp_path, small_dataset):
    run = tmp_path / "r.jsonl"
    result = invoke("eval", "--dataset", small_dataset, "--max-length", 128, "--save-run", run, "-k", 10)
    assert result.exit_code == 0 and "all-MiniLM-L6-v2" in result.output
    assert len(run.read_text().splitlines()) == 10
    again = invoke("eval", "--dataset", small_dataset, "--max-length", 128, "-k", 10)
    assert "reusing index" in again.output  # the cached index is reused when the fingerprint matches


def test_unknown_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTRANK_DATA", str(tmp_path))
    _one_line_error(invoke("eval", "--dataset", "beir/nope"), "dataset 'beir/nope' not found", "LISTRANK_DATA")


def test_missing_split(small_dataset):
    _one_line_error(invoke("eval", "--dataset", small_dataset, "--split", "dev"), "has no split 'dev'")


def test_malformed_run_lines(tmp_path, small_dataset):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query_id": "1", "hits": []}\n{"query_id": "2", "hits": [{"doc_id": "x"}]}\n')
    _one_line_error(invoke("eval", bad, "--dataset", small_dataset), f"{bad}:2: missing field 'score'")
    trec = tmp_path / "bad.trec"
    trec.write_text("1 Q0 d 1 0.5 t\n1 Q0 d\n")
    _one_line_error(invoke("eval", trec, "--dataset", small_dataset), f"{trec}:2: expected 6 columns")


def test_malformed_queries_tsv(tmp_path, small_dataset):
    idx = tmp_path / "idx"
    invoke("index", "--dataset", small_dataset, "-o", idx, "--max-length", 32)
    queries = tmp_path / "q.tsv"
    queries.write_text("1\tfine\nbroken line\n")
    _one_line_error(invoke("search", idx, "--queries", queries, "-o", tmp_path / "r.jsonl"), f"{queries}:2:")


def test_run_not_overlapping_qrels(tmp_path, small_dataset):
    run = tmp_path / "other.jsonl"
    run.write_text('{"query_id": "zzz", "hits": [{"doc_id": "d", "score": 1.0}]}\n')
    _one_line_error(invoke("eval", run, "--dataset", small_dataset), "shares no query id with the qrels")


def test_empty_files(tmp_path, small_dataset):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _one_line_error(invoke("eval", empty, "--dataset", small_dataset), f"{empty}: empty file")
    _one_line_error(invoke("search", tmp_path, "--queries", empty, "-o", tmp_path / "r.jsonl"), "empty file")


def test_index_built_with_another_model(tmp_path, small_dataset, other_model):
    idx = tmp_path / "idx"
    invoke("index", "--dataset", small_dataset, "-o", idx, "--max-length", 64)
    result = invoke("search", idx, "--dataset", small_dataset, "-o", tmp_path / "r.jsonl", "--model", other_model)
    _one_line_error(result, "built with another encoder")


def test_bad_metric_name(tmp_path, small_dataset):
    run = tmp_path / "r.jsonl"
    run.write_text('{"query_id": "1", "hits": [{"doc_id": "d", "score": 1.0}]}\n')
    _one_line_error(invoke("eval", run, "--dataset", small_dataset, "--metrics", "ndcg@ten"), "metric")


def test_run_names_drop_the_run_suffix_unless_it_tells_runs_apart():
    from listrank.pipeline import run_name as _run_name

    paths = [Path("a/sycl.run.jsonl"), Path("b/bm25.trec"), Path("c/base.jsonl")]
    assert [_run_name(p, paths) for p in paths] == ["sycl", "bm25", "base"]
    paths = [Path("x/a.jsonl"), Path("x/a.trec")]
    assert [_run_name(p, paths) for p in paths] == ["a.jsonl", "a.trec"]
    paths = [Path("x/a.jsonl"), Path("y/a.jsonl")]
    assert [_run_name(p, paths) for p in paths] == ["x/a.jsonl", "y/a.jsonl"]
