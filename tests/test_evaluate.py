"""Tests for listrank.evaluate: metric parsing, trec_eval conventions, significance tests, output."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from needs import missing
import pytrec_eval
from rich.console import Console
from scipy import stats

from listrank.errors import ListrankError
from listrank.evaluate import (
    EvalResult,
    Metric,
    compare,
    evaluate,
    holm_bonferroni,
    paired_randomization_test,
    paired_ttest,
    parse_metric,
    parse_metrics,
    plot_per_query_delta,
    read_results_json,
    results_table,
    trec_eval_measures,
    write_results_json,
)
from listrank.formats import read_qrels, read_run, sorted_hits

# --- fixtures -------------------------------------------------------------------------------


def _data_root() -> Path | None:
    for candidate in (os.environ.get("LISTRANK_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        missing("no evaluation data: set LISTRANK_DATA to a folder holding msmarco/dl19-pool (BEIR layout)")
    return root


def _dl_pool(root: Path, name: str):
    folder = root / "msmarco" / name
    if not (folder / "bm25.run").is_file() or not (folder / "qrels" / "test.tsv").is_file():
        missing(f"{folder} lacks bm25.run or qrels/test.tsv")
    return read_run(folder / "bm25.run"), read_qrels(folder / "qrels" / "test.tsv")


@pytest.fixture
def graded():
    """One query with graded judgements and a hand-checkable ranking."""
    qrels = {"q1": {"d1": 3, "d2": 1, "d3": 2, "d4": 0, "d5": 1}}
    run = {"q1": {"d4": 0.9, "d2": 0.8, "d1": 0.7, "d6": 0.6, "d3": 0.5}}
    return run, qrels


def _paired_results(n_queries: int = 30, improvement: float = 0.1, seed: int = 0):
    """A baseline and a run better by `improvement` on every query (built via real evaluations)."""
    rng = np.random.default_rng(seed)
    qids = [f"q{i}" for i in range(n_queries)]
    # relevant doc at rank r_base for the baseline, at a better rank for the improved run
    qrels = {q: {"rel": 1} for q in qids}
    base_ranks = rng.integers(3, 10, size=n_queries)
    def run_with(ranks):
        return {q: {f"n{k}": 100.0 - k for k in range(1, 11) if k != r} | {"rel": 100.0 - r} for q, r in zip(qids, ranks)}
    base = evaluate(run_with(base_ranks), qrels, ["mrr@10", "ndcg@10"], name="base")
    better = evaluate(run_with(base_ranks - 2), qrels, ["mrr@10", "ndcg@10"], name="better")
    return base, better


def _renamed(result: EvalResult, name: str) -> EvalResult:
    """The same per-query values under another name."""
    return EvalResult(name, result.qrels, result.metrics, result.query_ids, result.per_query, result.settings)


# --- metric names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("ndcg@10", Metric("nDCG@10", "ndcg_cut", 10)),
        ("NDCG@20", Metric("nDCG@20", "ndcg_cut", 20)),
        ("MRR@10", Metric("MRR@10", "recip_rank", 10)),
        ("recall@100", Metric("Recall@100", "recall", 100)),
        ("R@1000", Metric("Recall@1000", "recall", 1000)),
        ("map@100", Metric("MAP@100", "map_cut", 100)),
        ("p@10", Metric("P@10", "P", 10)),
        ("Precision@5", Metric("P@5", "P", 5)),
        (" map ", Metric("MAP", "map", None)),
        ("mrr", Metric("MRR", "recip_rank", None)),
    ],
)
def test_parse_metric(spec, expected):
    assert parse_metric(spec) == expected


@pytest.mark.parametrize("spec", ["bleu@4", "ndcg@", "ndcg@-1", "ndcg@0", "recall", "p", "", "ndcg@10x"])
def test_unknown_or_malformed_metric_is_a_user_error(spec):
    with pytest.raises(ListrankError) as err:
        parse_metric(spec)
    assert "ndcg@K" in str(err.value) or "cutoff" in str(err.value)


def test_parse_metrics_defaults_string_and_duplicates():
    assert [m.name for m in parse_metrics()] == ["nDCG@10", "MRR@10", "Recall@100", "MAP@100"]
    assert [m.name for m in parse_metrics("ndcg@10, NDCG@10,p@5")] == ["nDCG@10", "P@5"]
    with pytest.raises(ListrankError):
        parse_metrics([])


def test_trec_eval_measures_merge_cutoffs():
    measures = trec_eval_measures(parse_metrics(["ndcg@20", "ndcg@10", "mrr@10", "recall@100", "map"]))
    assert measures == {"ndcg_cut.10,20", "recip_rank", "recall.100", "map"}


# --- trec_eval conventions ------------------------------------------------------------------


def test_graded_values_match_hand_computation(graded):
    run, qrels = graded
    result = evaluate(run, qrels, ["ndcg@10", "mrr@10", "recall@100", "map@100", "p@2"], relevance_level=2)
    dcg = 1 / math.log2(3) + 3 / math.log2(4) + 2 / math.log2(6)  # gains 0, 1, 3, 0, 2 (linear, as trec_eval)
    ideal = 3 + 2 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)
    values = result.aggregate
    assert values["nDCG@10"] == pytest.approx(dcg / ideal, abs=1e-12)
    assert values["MRR@10"] == pytest.approx(1 / 3)  # first doc graded >= 2 is d1 at rank 3
    assert values["Recall@100"] == pytest.approx(1.0)  # d1, d3 of {d1, d3}
    assert values["MAP@100"] == pytest.approx((1 / 3 + 2 / 5) / 2)
    assert values["P@2"] == 0.0


def test_relevance_threshold_changes_binary_metrics_not_ndcg(graded):
    run, qrels = graded
    metrics = ["ndcg@10", "recall@100", "mrr@10"]
    level1 = evaluate(run, qrels, metrics, relevance_level=1).aggregate
    level2 = evaluate(run, qrels, metrics, relevance_level=2).aggregate
    assert level1["Recall@100"] == pytest.approx(3 / 4)  # d5 (grade 1) never retrieved
    assert level2["Recall@100"] == pytest.approx(1.0)
    assert level1["MRR@10"] == pytest.approx(1 / 2) and level2["MRR@10"] == pytest.approx(1 / 3)
    assert level1["nDCG@10"] == level2["nDCG@10"]


def test_mrr_at_k_equals_recip_rank_of_truncated_run():
    rng = np.random.default_rng(7)
    qrels, run = {}, {}
    for q in range(200):
        docs = [f"d{i}" for i in range(40)]
        qrels[f"q{q}"] = {d: int(rng.integers(0, 3)) if rng.random() < 0.15 else 0 for d in docs}
        run[f"q{q}"] = {d: float(np.round(rng.random(), 1)) for d in docs}  # many ties
    for k in (1, 5, 10):
        truncated = {q: dict(sorted_hits(hits)[:k]) for q, hits in run.items()}
        direct = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(truncated)
        result = evaluate(run, qrels, [f"mrr@{k}"])
        expected = np.array([direct[q]["recip_rank"] for q in result.query_ids])
        np.testing.assert_allclose(result.per_query[f"MRR@{k}"], expected, atol=1e-15)
        assert expected.sum() > 0


def test_ignore_identical_ids():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    run = {"q1": {"q1": 2.0, "d1": 1.0}, "q2": {"d2": 3.0, "x": 1.0}}
    filtered = evaluate(run, qrels, ["mrr@10"])
    kept = evaluate(run, qrels, ["mrr@10"], ignore_identical_ids=False)
    assert filtered.query_values("q1")["MRR@10"] == 1.0
    assert kept.query_values("q1")["MRR@10"] == 0.5
    assert "q1" in run["q1"], "the caller's run must not be modified"
    assert any("own id" in w for w in filtered.warnings)


def test_missing_queries_warned_or_counted_as_zero():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    run = {"q1": {"d1": 1.0}, "other": {"d1": 1.0}}
    default = evaluate(run, qrels, ["ndcg@10"])
    assert default.query_ids == ["q1"] and default.aggregate["nDCG@10"] == 1.0
    assert default.missing_queries == ["q2", "q3"]
    assert any("2 of 3 qrels queries" in w for w in default.warnings)
    assert any("not in the qrels" in w for w in default.warnings)
    complete = evaluate(run, qrels, ["ndcg@10"], complete=True)
    assert complete.n_queries == 3 and complete.aggregate["nDCG@10"] == pytest.approx(1 / 3)


def test_no_overlap_is_a_one_line_user_error():
    with pytest.raises(ListrankError) as err:
        evaluate({"a1": {"d": 1.0}, "a2": {"d": 1.0}}, {"b1": {"d": 1}}, name="mine")
    message = str(err.value)
    assert "\n" not in message and "'a1'" in message and "'b1'" in message and "mine" in message
    with pytest.raises(ListrankError, match="empty"):
        evaluate({}, {"b1": {"d": 1}})


@pytest.mark.parametrize("name, expected", [("dl19-pool", 0.5058), ("dl20-pool", 0.4796)])
def test_bm25_reference_ndcg(data_root, name, expected):
    run, qrels = _dl_pool(data_root, name)
    result = evaluate(run, qrels, relevance_level=2, name="bm25", qrels_name=f"msmarco/{name}")
    assert abs(result.aggregate["nDCG@10"] - expected) <= 5e-5
    assert result.n_queries == len(qrels)
    direct = pytrec_eval.RelevanceEvaluator(qrels, {"recall.100"}, relevance_level=2).evaluate(run)
    assert result.aggregate["Recall@100"] == pytest.approx(np.mean([v["recall_100"] for v in direct.values()]))


# --- significance ---------------------------------------------------------------------------


def test_randomization_identical_runs_give_p_one():
    values = np.random.default_rng(0).random((30, 3))
    np.testing.assert_array_equal(paired_randomization_test(values, values.copy()), np.ones(3))
    assert paired_ttest(values[:, 0], values[:, 0]) == 1.0


def test_rounding_level_differences_are_no_difference():
    # a seed average of three identical runs differs from the run by an ulp in many queries, all in
    # one direction: that must read as "no difference" (p = 1), not as a significant constant shift
    values = np.random.default_rng(2).random(300) * 0.9 + 0.05
    averaged = np.mean([values, values, values], axis=0)
    assert np.any(averaged != values), "the fixture must hold rounding differences"
    assert paired_randomization_test(values, averaged) == 1.0
    assert paired_ttest(values, averaged) == 1.0
    # a small real difference is still one
    shifted = values + 1e-6
    assert paired_randomization_test(values, shifted) < 0.001
    assert paired_ttest(values, shifted) < 0.001


def test_randomization_uniformly_better_run_is_significant():
    rng = np.random.default_rng(1)
    base = rng.random(30)
    better = base + rng.uniform(0.01, 0.2, size=30)
    assert paired_randomization_test(base, better) < 0.001
    assert paired_randomization_test(better, base) < 0.001  # two-sided


def test_randomization_p_value_counts_the_observed_labelling():
    # no random flip of 30 positive differences is as extreme, so p = (0 + 1) / (100 + 1), never 0
    assert paired_randomization_test(np.zeros(30), np.linspace(0.1, 0.3, 30), permutations=100) == 1 / 101


def test_randomization_matches_exact_sign_flip_p_value():
    # 5 equal positive differences: only the 2 all-same-sign flips of 2^5 are as extreme -> p = 1/16
    p = paired_randomization_test(np.zeros(5), np.ones(5), permutations=100_000, seed=3)
    assert p == pytest.approx(2 / 32, abs=0.003)
    again = paired_randomization_test(np.zeros(5), np.ones(5), permutations=100_000, seed=3)
    assert p == again, "a fixed seed must give the same p-value"


def test_ttest_matches_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.random(40), rng.random(40)
    assert float(paired_ttest(a, b)) == pytest.approx(stats.ttest_rel(b, a).pvalue)


def test_holm_matches_hand_computation():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    np.testing.assert_allclose(holm_bonferroni([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm_bonferroni([0.5, 0.6]), [1.0, 1.0])


def test_compare_marks_significant_deltas():
    base, better = _paired_results()
    comparison = compare([base, better], permutations=2000)
    assert comparison.family_size == 2
    assert all(row.delta > 0 and row.significant for row in comparison.rows)
    raw = [row.p_randomization for row in comparison.rows]
    np.testing.assert_allclose([row.p_randomization_holm for row in comparison.rows], holm_bonferroni(raw))
    same = compare([base, _renamed(base, "same")])
    assert not any(r.significant for r in same.rows) and all(r.p_randomization == 1.0 for r in same.rows)


def test_compare_marks_by_the_chosen_test():
    base, better = _paired_results()
    # 10 flips cannot give p < 1/11 > alpha; the t-test on a uniform improvement can
    by_randomization = compare([base, better], permutations=10)
    by_ttest = compare([base, better], permutations=10, mark_by="ttest")
    assert not any(row.significant for row in by_randomization.rows)
    assert all(row.significant and row.p_ttest_holm < 0.05 for row in by_ttest.rows)
    assert "t-test" in by_ttest.describe()


def test_compare_rejects_mixed_settings_and_duplicate_names(graded):
    run, qrels = graded
    with pytest.raises(ListrankError, match="relevance_level"):
        compare([evaluate(run, qrels, name="a"), evaluate(run, qrels, relevance_level=2, name="b")])
    with pytest.raises(ListrankError, match="distinct names"):
        compare([evaluate(run, qrels, name="a"), evaluate(run, qrels, name="a")])


# --- output ---------------------------------------------------------------------------------


def _render(table) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(table)
    return console.file.getvalue()


def test_table_shows_metrics_runs_and_marks():
    base, better = _paired_results()
    text = _render(results_table([base, better], compare([base, better], permutations=2000)))
    assert "MRR@10" in text and "nDCG@10" in text and "better" in text
    assert "†" in text and "Holm" in text
    assert "†" not in _render(results_table(base))


def test_json_round_trip(tmp_path, graded):
    run, qrels = graded
    single = evaluate(run, qrels, relevance_level=2, name="bm25", qrels_name="toy")
    path = write_results_json(tmp_path / "out" / "eval.json", single)
    obj = json.loads(path.read_text())
    assert obj["run"] == "bm25" and obj["qrels"] == "toy" and obj["n_queries"] == 1
    assert obj["settings"]["relevance_level"] == 2 and set(obj["per_query"]["q1"]) == set(single.metrics)
    (loaded,), comparison = read_results_json(path)
    assert comparison is None and loaded.aggregate == single.aggregate and loaded.query_ids == single.query_ids
    assert (loaded.name, loaded.qrels, loaded.settings, loaded.warnings) == ("bm25", "toy", single.settings, single.warnings)

    base, better = _paired_results()
    comparison = compare([base, better], permutations=500)
    path = write_results_json(tmp_path / "many.json", [base, better], comparison)
    results, loaded_comparison = read_results_json(path)
    assert [r.name for r in results] == ["base", "better"]
    assert loaded_comparison == comparison
    assert "p_randomization_holm" in json.loads(path.read_text())["comparison"]["rows"][0]


def test_plot_writes_png(tmp_path):
    base, better = _paired_results()
    path = plot_per_query_delta(base, better, "mrr@10", tmp_path / "delta.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file may be left behind"
    with pytest.raises(ListrankError):
        plot_per_query_delta(base, better, "map@100", tmp_path / "x.png")
