"""Published scores re-measured through the regressions YAML (the proof that eval is right).

Fast: the stored TREC DL BM25 runs. Slow: all-MiniLM-L6-v2 (MTEB) and pyserini BM25 flat on
SciFact and NFCorpus, each within the YAML's tolerance.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from listrank import regressions
from listrank.cli import app

ROWS = {r.name: r for r in regressions.load()}


def _check(name: str, data_root) -> None:
    outcome = regressions.run_one(ROWS[name], data_root, show_progress=False)
    assert outcome.error is None, outcome.error
    print(f"{name}: measured {outcome.measured:.4f}, expected {ROWS[name].expected} ({outcome.seconds:.0f}s)")
    assert outcome.ok, f"{name}: {outcome.measured:.4f} vs expected {ROWS[name].expected} ± {ROWS[name].tolerance}"


@pytest.mark.parametrize("name", ["dl19.bm25-run", "dl20.bm25-run"])
def test_trec_dl_bm25_runs(name, data_root):
    _check(name, data_root)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scifact.bm25-flat", "nfcorpus.bm25-flat"])
def test_pyserini_bm25_flat(name, data_root):
    pytest.importorskip("pyserini")
    _check(name, data_root)


@pytest.mark.slow(seconds=900)  # a whole corpus encoded in fp32: 704 s for SciFact on an AVX2-only 2-core CPU
@pytest.mark.parametrize("name", ["scifact.minilm", "nfcorpus.minilm"])
def test_minilm_mteb(name, data_root):
    _check(name, data_root)


def test_regressions_command_prints_ok_and_fails_on_a_wrong_expectation(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("LISTRANK_DATA", str(data_root))
    result = CliRunner().invoke(app, ["regressions", "dl19"])
    assert result.exit_code == 0 and "OK" in result.output
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "- {name: dl19.wrong, dataset: msmarco/dl19-pool, split: test, metric: ndcg@10, relevance_level: 2,\n"
        "   retriever: {kind: run, path: '{data}/msmarco/dl19-pool/bm25.run'}, expected: 0.6, tolerance: 0.01}\n"
    )
    result = CliRunner().invoke(app, ["regressions", "--file", str(wrong)])
    assert result.exit_code == 1 and "FAIL" in result.output
