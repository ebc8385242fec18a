"""Evaluate runs against qrels with trec_eval's measures (via pytrec_eval), and compare runs.

One run:   `evaluate(run, qrels)` -> `EvalResult` (mean and per-query values per metric).
Many runs: `compare(results)` -> `Comparison`: deltas against the first run (the baseline) with a
paired t-test and a paired randomization (sign-flip) test per run and metric, Holm-corrected.
Output:    `results_table(...)` (a rich Table), `write_results_json(...)`, `plot_per_query_delta(...)`.

Conventions, chosen to match trec_eval and BEIR:

* Metrics are trec_eval's: nDCG uses the graded judgements as linear gains; recall, MAP, P and MRR
  count a document as relevant when its grade is >= `relevance_level` (1 by default; TREC DL uses 2).
* MRR@k is trec_eval's `recip_rank` on the run truncated to depth k (trec_eval has no cutoff for it).
* Ties in score are broken by document id, descending, as trec_eval does.
* A retrieved document whose id equals the query id is dropped (BEIR's `ignore_identical_ids`).
* Queries evaluated: those in both the run and the qrels (trec_eval without `-c`). Qrels queries
  missing from the run are reported in `EvalResult.warnings`; with `complete=True` they score 0
  (trec_eval `-c`). Queries in the qrels with no relevant document are kept, as trec_eval does.
* Significance: the family for Holm-Bonferroni is every (non-baseline run x metric) comparison of
  one `compare` call, corrected separately for each test; a delta is marked significant when the
  Holm-adjusted p-value of the chosen test (`mark_by`, the randomization test by default) is < alpha.

Modules: `metrics` (one run), `significance` (paired tests, Holm), `report` (table, JSON, plot).
"""

from __future__ import annotations

from listrank.evaluate.metrics import (
    DEFAULT_METRICS, EvalResult, Metric, evaluate, parse_metric, parse_metrics, trec_eval_measures,
)
from listrank.evaluate.report import (
    plot_per_query_delta, read_results_json, results_json, results_table, write_results_json,
)
from listrank.evaluate.significance import (
    DEFAULT_PERMUTATIONS, SIGNIFICANCE_MARK, Comparison, MetricComparison, compare, holm_bonferroni, paired_randomization_test,
    paired_ttest,
)

__all__ = [
    "DEFAULT_METRICS",
    "DEFAULT_PERMUTATIONS",
    "Comparison",
    "EvalResult",
    "Metric",
    "MetricComparison",
    "SIGNIFICANCE_MARK",
    "compare",
    "evaluate",
    "holm_bonferroni",
    "paired_randomization_test",
    "paired_ttest",
    "parse_metric",
    "parse_metrics",
    "plot_per_query_delta",
    "read_results_json",
    "results_json",
    "results_table",
    "trec_eval_measures",
    "write_results_json",
]
