"""`listrank eval` against non-finite runs, options that do not apply and bad output paths
(issue 13: classes 1, 3, 6, 7, 9), on small real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from listrank.formats import RunFormat, read_run, write_run

from cli_helpers import expect_user_error as _error, invoke


@pytest.fixture
def dl19(data_root) -> Path:
    return data_root / "msmarco" / "dl19-pool"


@pytest.fixture
def run_file(tmp_path, dl19) -> Path:
    """The published DL19 BM25 run, as a listrank JSONL run."""
    path = tmp_path / "bm25.run.jsonl"
    write_run(path, read_run(dl19 / "bm25.run"))
    return path


def _with_nans(src: Path, dest: Path, every: int = 7) -> Path:
    lines = src.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        parts = line.split()
        if i % every == 0:
            parts[4] = "nan"
        out.append(" ".join(parts))
    dest.write_text("\n".join(out) + "\n")
    return dest


def test_nan_scores_in_a_trec_run_are_refused_not_scored(tmp_path, dl19):
    """DL19 BM25 scored 0.5058; with NaN scores it silently became 0.3597."""
    nan_run = _with_nans(dl19 / "bm25.run", tmp_path / "nan.run")
    _error(invoke("eval", nan_run, "--dataset", dl19, "--relevance-level", 2), "nan.run:1:", "not a finite number")
    result = invoke("eval", dl19 / "bm25.run", "--dataset", dl19, "--relevance-level", 2, "--metrics", "ndcg@10")
    assert result.exit_code == 0 and "0.5058" in result.output


def test_nan_in_a_jsonl_run_is_refused(tmp_path, run_file, dl19):
    text = run_file.read_text().replace('"score": ', '"score": NaN, "x": ', 1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(text)
    _error(invoke("eval", bad, "--dataset", dl19), "bad.jsonl:1:", "not a finite number")


def test_retrieval_options_do_not_apply_to_given_runs(run_file, dl19):
    _error(invoke("eval", run_file, "--dataset", dl19, "--precision", "bf8"), "unknown --precision 'bf8'")
    _error(invoke("eval", run_file, "--dataset", dl19, "--precision", "bf16"), "--precision only apply")
    _error(invoke("eval", run_file, "--dataset", dl19, "--model", "x", "-k", 5), "--model, -k only apply")
    _error(invoke("eval", run_file, "--dataset", dl19, "--bm25"), "--bm25 only apply")


def test_output_mistakes_are_found_before_evaluating(tmp_path, run_file, dl19):
    before = run_file.read_text()
    _error(invoke("eval", run_file, "--dataset", dl19, "-o", run_file), "also an input")
    assert run_file.read_text() == before
    (tmp_path / "folder").mkdir()
    _error(invoke("eval", run_file, "--dataset", dl19, "-o", tmp_path / "folder"), "is a folder")
    (tmp_path / "file").write_text("x")
    _error(invoke("eval", run_file, "--dataset", dl19, "-o", tmp_path / "file" / "m.json"), "cannot write")
    _error(invoke("eval", run_file, run_file.with_name("b.jsonl"), "--dataset", dl19,
                  "--plot", tmp_path / "file" / "p.png"), "cannot write")
    _error(invoke("eval", run_file, "--dataset", dl19, "--plot", tmp_path / "p.png"), "--plot needs two or more runs")
    _error(invoke("eval", run_file, "--dataset", dl19, "-o", tmp_path / "same", "--plot", tmp_path / "same"),
           "different files")
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "same").exists()


def test_metrics_and_plots_get_normal_file_modes(tmp_path, run_file, dl19):
    import os

    other = tmp_path / "other.run.jsonl"
    run = read_run(run_file)
    write_run(other, {q: {d: s * 0.5 + (hash(d) % 7) for d, s in hits.items()} for q, hits in run.items()})
    old = os.umask(0o022)
    try:
        result = invoke("eval", run_file, other, "--dataset", dl19, "-o", tmp_path / "m.json",
                        "--plot", tmp_path / "p.png", "--permutations", 100)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    for name in ("m.json", "p.png", "other.run.jsonl"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_trec_run_round_trips_through_eval_with_identical_scores(tmp_path, dl19):
    """search --format trec output is what eval reads; written ranks follow trec_eval's order."""
    run = read_run(dl19 / "bm25.run")
    write_run(tmp_path / "r.trec", run, RunFormat.trec)
    back = read_run(tmp_path / "r.trec")
    assert back.keys() == run.keys()
    for qid in list(run)[:5]:
        lines = [l.split() for l in (tmp_path / "r.trec").read_text().splitlines() if l.startswith(f"{qid} ")]
        order = sorted(((float(l[4]), l[2]) for l in lines), reverse=True)  # trec_eval's order
        assert [d for _, d in order] == [l[2] for l in lines]
        assert [int(l[3]) for l in lines] == list(range(1, len(lines) + 1))


def test_eval_retrieval_after_the_corpus_changed_uses_a_fresh_index(tmp_path, make_scifact_folder):
    from listrank.formats import read_corpus, read_qrels, write_corpus

    ds = make_scifact_folder(tmp_path / "mini", n_queries=3, n_docs=10)
    first = invoke("eval", "--dataset", ds, "--max-length", 64, "-o", tmp_path / "a.json")
    assert first.exit_code == 0, first.output
    docs = read_corpus(ds / "corpus.jsonl")
    # drop every judged document: a stale index would still find them (nDCG > 0)
    relevant = {d for j in read_qrels(ds / "qrels" / "test.tsv").values() for d in j}
    write_corpus(ds / "corpus.jsonl", [d for d in docs if d.id not in relevant])
    second = invoke("eval", "--dataset", ds, "--max-length", 64, "-o", tmp_path / "b.json")
    assert second.exit_code == 0, second.output
    assert json.loads((tmp_path / "a.json").read_text())["aggregate"]["nDCG@10"] > 0.3
    assert json.loads((tmp_path / "b.json").read_text())["aggregate"]["nDCG@10"] == 0.0


def test_no_output_may_replace_a_file_of_the_dataset(tmp_path, make_scifact_folder):
    ds = make_scifact_folder(tmp_path / "mini", n_queries=3, n_docs=5)
    qrels = ds / "qrels" / "test.tsv"
    before = qrels.read_text()
    run = tmp_path / "r.jsonl"
    write_run(run, {"x": {"y": 1.0}})
    _error(invoke("eval", run, "--dataset", ds, "-o", qrels), "also an input")
    _error(invoke("search", tmp_path, "--dataset", ds, "-o", ds / "queries.jsonl"), "also an input")
    queries = ds / "queries.jsonl"
    queries.write_text(queries.read_text().rstrip("\n"))  # no newline at the end: gen's recovery would cut it
    q_before = queries.read_text()
    _error(invoke("gen", "--dataset", ds, "-o", queries, "--backend", "fake_backend:EchoBackend"), "also an input")
    assert qrels.read_text() == before and queries.read_text() == q_before
