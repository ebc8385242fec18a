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
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

import numpy as np
import pytrec_eval

from listrank.atomic import atomic_write, write_png
from listrank.errors import ListrankError
from listrank.formats import PathLike, Qrels, Run

if TYPE_CHECKING:
    from rich.table import Table

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "recall@100", "map@100")
DEFAULT_PERMUTATIONS = 10_000
SIGNIFICANCE_MARK = "†"

# --- metrics --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One user-facing metric and the trec_eval measure that computes it."""

    name: str  # display name and key in results, e.g. "nDCG@10"
    measure: str  # trec_eval measure family, e.g. "ndcg_cut"
    cutoff: int | None  # None: the whole ranking

    @property
    def result_key(self) -> str:
        """The key pytrec_eval uses for this metric in its per-query dicts."""
        if self.measure == "recip_rank" or self.cutoff is None:
            return self.measure
        return f"{self.measure}_{self.cutoff}"


# user spelling -> (display name, trec_eval family with a cutoff, family for the whole ranking)
_METRIC_FORMS: dict[str, tuple[str, str, str | None]] = {
    "ndcg": ("nDCG", "ndcg_cut", "ndcg"),
    "mrr": ("MRR", "recip_rank", "recip_rank"),
    "recall": ("Recall", "recall", None),
    "r": ("Recall", "recall", None),
    "map": ("MAP", "map_cut", "map"),
    "p": ("P", "P", None),
    "precision": ("P", "P", None),
}
_METRIC_PATTERN = re.compile(r"^\s*([a-z]+)\s*(?:@\s*(\d+))?\s*$", re.IGNORECASE)
VALID_METRIC_FORMS = "ndcg@K, mrr@K, recall@K, map@K, p@K (K a positive integer), or ndcg, mrr, map"


@functools.lru_cache(maxsize=256)
def parse_metric(spec: str) -> Metric:
    """`"nDCG@10"` -> Metric("nDCG@10", "ndcg_cut", 10); case-insensitive."""
    match = _METRIC_PATTERN.match(spec)
    form = _METRIC_FORMS.get(match.group(1).lower()) if match else None
    if form is None:
        raise ListrankError(f"unknown metric {spec!r}; valid forms: {VALID_METRIC_FORMS}")
    display, measure, whole_ranking_measure = form
    cutoff = int(match.group(2)) if match.group(2) is not None else None
    if cutoff is None:
        if whole_ranking_measure is None:
            raise ListrankError(f"metric {spec!r} needs a cutoff, e.g. {match.group(1).lower()}@100")
        return Metric(display, whole_ranking_measure, None)
    if cutoff < 1:
        raise ListrankError(f"metric {spec!r}: the cutoff must be a positive integer")
    return Metric(f"{display}@{cutoff}", measure, cutoff)


def parse_metrics(specs: str | Iterable[str] | None = None) -> list[Metric]:
    """Metrics from names (a list, or one comma-separated string); None -> the defaults.

    Duplicates are dropped, order is kept.
    """
    if specs is None:
        specs = DEFAULT_METRICS
    elif isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    metrics: dict[str, Metric] = {}
    for spec in specs:
        metric = parse_metric(spec)
        metrics.setdefault(metric.name, metric)
    if not metrics:
        raise ListrankError(f"no metrics given; valid forms: {VALID_METRIC_FORMS}")
    return list(metrics.values())


def trec_eval_measures(metrics: Sequence[Metric]) -> set[str]:
    """pytrec_eval measure strings, with the cutoffs of one family merged ("ndcg_cut.10,20")."""
    cutoffs: dict[str, set[int]] = {}
    whole: set[str] = set()
    for m in metrics:
        if m.cutoff is None or m.measure == "recip_rank":
            whole.add(m.measure)
        else:
            cutoffs.setdefault(m.measure, set()).add(m.cutoff)
    merged = {f"{family}.{','.join(map(str, sorted(ks)))}" for family, ks in cutoffs.items()}
    return merged | whole


# --- evaluation -----------------------------------------------------------------------------


@dataclass
class EvalResult:
    """The evaluation of one run: per-query values (aligned with `query_ids`) per metric."""

    name: str
    qrels: str | None
    metrics: list[str]
    query_ids: list[str]
    per_query: dict[str, np.ndarray]  # metric name -> values, aligned with query_ids
    settings: dict[str, Any] = field(default_factory=dict)
    missing_queries: list[str] = field(default_factory=list)  # qrels queries absent from the run
    warnings: list[str] = field(default_factory=list)

    @property
    def n_queries(self) -> int:
        return len(self.query_ids)

    @property
    def aggregate(self) -> dict[str, float]:
        """Mean over the evaluated queries, per metric."""
        return {m: float(self.per_query[m].mean()) for m in self.metrics}

    def query_values(self, query_id: str) -> dict[str, float]:
        i = self.query_ids.index(query_id)
        return {m: float(self.per_query[m][i]) for m in self.metrics}

    def to_json(self) -> dict[str, Any]:
        columns = [self.per_query[m].tolist() for m in self.metrics]
        per_query = {qid: dict(zip(self.metrics, values)) for qid, values in zip(self.query_ids, zip(*columns))}
        return {
            "run": self.name,
            "qrels": self.qrels,
            "settings": self.settings,
            "n_queries": self.n_queries,
            "aggregate": self.aggregate,
            "per_query": per_query,
            "missing_queries": self.missing_queries,
            "warnings": self.warnings,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "EvalResult":
        metrics = list(obj["aggregate"])
        per_query: dict[str, dict[str, float]] = obj["per_query"]
        return cls(
            name=obj["run"],
            qrels=obj.get("qrels"),
            metrics=metrics,
            query_ids=list(per_query),
            per_query={m: np.array([v[m] for v in per_query.values()], dtype=float) for m in metrics},
            settings=dict(obj.get("settings") or {}),
            missing_queries=list(obj.get("missing_queries") or []),
            warnings=list(obj.get("warnings") or []),
        )


def evaluate(
    run: Run,
    qrels: Qrels,
    metrics: str | Iterable[str] | Sequence[Metric] | None = None,
    *,
    relevance_level: int = 1,
    ignore_identical_ids: bool = True,
    complete: bool = False,
    name: str = "run",
    qrels_name: str | None = None,
) -> EvalResult:
    """Evaluate `run` against `qrels` (see the module docstring for the conventions).

    Raises ListrankError when the run and the qrels share no query id.
    """
    metric_list = _as_metrics(metrics)
    _check_finite(run, name)
    if ignore_identical_ids:
        run, self_hits = _drop_self_hits(run)
    else:
        self_hits = 0
    measures = trec_eval_measures(metric_list)
    # num_rel (judged >= relevance_level) is nearly free in trec_eval and feeds a warning below
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, measures | {"num_rel"}, relevance_level=relevance_level)
    by_query = evaluator.evaluate(run)
    if not by_query:
        raise ListrankError(_no_overlap_message(name, run, qrels))

    query_ids = list(by_query)
    missing = [qid for qid in qrels if qid not in by_query]
    per_query = {m.name: _metric_values(by_query, m) for m in metric_list}
    if complete and missing:
        query_ids += missing
        per_query = {m: np.concatenate([v, np.zeros(len(missing))]) for m, v in per_query.items()}

    settings = {
        "metrics": [m.name for m in metric_list],
        "trec_eval_measures": sorted(measures),
        "relevance_level": relevance_level,
        "ignore_identical_ids": ignore_identical_ids,
        "complete": complete,
        "pytrec_eval": getattr(pytrec_eval, "__version__", "unknown"),
    }
    notes = _warnings(len(run), len(qrels), by_query, missing, complete, relevance_level, self_hits)
    return EvalResult(name, qrels_name, [m.name for m in metric_list], query_ids, per_query, settings, missing, notes)


def _check_finite(run: Run, name: str) -> None:
    """trec_eval ranks NaN scores arbitrarily (DL19 BM25 0.5058 -> 0.3597 with some NaNs): refuse them."""
    scores = np.fromiter((s for hits in run.values() for s in hits.values()), dtype=float)
    if np.isfinite(scores).all():
        return
    bad = [(qid, d, s) for qid, hits in run.items() for d, s in hits.items() if not np.isfinite(s)]
    if bad:
        qid, doc, score = bad[0]
        raise ListrankError(f"run {name!r} has {len(bad)} non-finite score(s), e.g. {score} for query {qid!r}, "
                            f"document {doc!r}; a ranking by them is arbitrary, so it is not scored")


def _as_metrics(metrics: str | Iterable[str] | Sequence[Metric] | None) -> list[Metric]:
    if metrics is not None and not isinstance(metrics, str):
        metrics = list(metrics)
        if metrics and all(isinstance(m, Metric) for m in metrics):
            return metrics
    return parse_metrics(metrics)


def _drop_self_hits(run: Run) -> tuple[Run, int]:
    """The run without documents whose id is the query id; untouched queries are shared, not copied."""
    with_self = [qid for qid, hits in run.items() if qid in hits]
    if not with_self:
        return run, 0
    filtered = dict(run)  # shallow: only the affected queries get new hit dicts
    for qid in with_self:
        filtered[qid] = {d: s for d, s in run[qid].items() if d != qid}
    return filtered, len(with_self)


def _metric_values(by_query: dict[str, dict[str, float]], metric: Metric) -> np.ndarray:
    """One metric's per-query values, in by_query's order."""
    key = metric.result_key
    values = np.fromiter((scores[key] for scores in by_query.values()), dtype=float, count=len(by_query))
    if metric.measure == "recip_rank" and metric.cutoff is not None:
        # recip_rank is 1/rank of the first relevant document; truncating the run at depth k keeps
        # it exactly when rank <= k, i.e. when 1/rank >= 1/k (adjacent ranks differ by >> 1e-12).
        values[values < 1.0 / metric.cutoff - 1e-12] = 0.0
    return values


def _first_ids(ids: Iterable[str], n: int = 3) -> str:
    ids = list(ids)
    shown = ", ".join(repr(i) for i in ids[:n])
    return shown + (", ..." if len(ids) > n else "") if ids else "none"


def _no_overlap_message(name: str, run: Run, qrels: Qrels) -> str:
    if not run:
        return f"run {name!r} is empty: no query to evaluate"
    return (
        f"run {name!r} shares no query id with the qrels (run: {_first_ids(run)}; "
        f"qrels: {_first_ids(qrels)}); are they for the same dataset and split?"
    )


def _warnings(
    n_run_queries: int,
    n_qrels_queries: int,
    by_query: dict[str, dict[str, float]],
    missing: list[str],
    complete: bool,
    relevance_level: int,
    self_hits: int,
) -> list[str]:
    notes = []
    if missing:
        how = "scored 0 (complete)" if complete else "not counted; --complete / complete=True scores them 0"
        notes.append(f"{len(missing)} of {n_qrels_queries} qrels queries have no results in the run ({how})")
    unjudged = n_run_queries - len(by_query)
    if unjudged:
        notes.append(f"{unjudged} run queries are not in the qrels and were ignored")
    no_relevant = sum(1 for values in by_query.values() if values["num_rel"] == 0)
    if no_relevant:
        notes.append(
            f"{no_relevant} evaluated queries have no document judged >= {relevance_level}: "
            "their binary metrics are 0"
        )
    if self_hits:
        notes.append(f"dropped the query's own id from the results of {self_hits} queries (ignore_identical_ids)")
    return notes


# --- significance tests ---------------------------------------------------------------------


def paired_ttest(baseline: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Two-sided paired t-test p-values, one per column (1-D input -> a 0-d array).

    No difference at all, or fewer than 2 queries -> p = 1; a constant non-zero difference -> p = 0
    (an infinite t).
    """
    from scipy import stats  # slow to import; only comparisons need it

    diffs = np.asarray(other, dtype=float) - np.asarray(baseline, dtype=float)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        pvalues = np.asarray(stats.ttest_rel(other, baseline, axis=0).pvalue, dtype=float)
    if len(diffs) < 2:
        return np.ones_like(pvalues)  # one pair carries no evidence of a difference
    constant = np.ptp(diffs, axis=0) == 0
    pvalues = np.where(constant, np.where(np.all(diffs == 0, axis=0), 1.0, 0.0), pvalues)
    return np.where(np.isnan(pvalues), 1.0, pvalues)


def paired_randomization_test(
    baseline: np.ndarray, other: np.ndarray, *, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0
) -> np.ndarray:
    """Two-sided paired randomization test (random sign flips of the per-query differences).

    p = (1 + #{flips with |mean| >= observed |mean|}) / (1 + permutations), so p > 0 always and
    identical inputs give p = 1. Columns of 2-D inputs are tested with the same flips.
    """
    if permutations < 1:
        raise ListrankError("the randomization test needs at least 1 permutation")
    diffs = np.asarray(other, dtype=float) - np.asarray(baseline, dtype=float)
    one_column = diffs.ndim == 1
    diffs = diffs.reshape(len(diffs), -1)
    observed = np.abs(diffs.sum(axis=0))
    tolerance = 1e-9 * np.abs(diffs).sum(axis=0)  # sums of the same terms in another order
    rng = np.random.default_rng(seed)
    at_least_as_extreme = np.zeros(diffs.shape[1], dtype=np.int64)
    chunk = max(1, min(permutations, 2_000_000 // max(1, len(diffs))))  # bounds memory
    for start in range(0, permutations, chunk):
        size = min(chunk, permutations - start)
        signs = _random_signs(rng, size, len(diffs))
        flipped = np.abs(signs @ diffs)
        at_least_as_extreme += (flipped >= observed - tolerance).sum(axis=0)
    pvalues = (at_least_as_extreme + 1) / (permutations + 1)
    return pvalues[0] if one_column else pvalues


def _random_signs(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    """A (rows, columns) matrix of +-1.0; drawn as random bytes, 8 signs each, for speed."""
    random_bytes = rng.integers(0, 256, size=(rows, (columns + 7) // 8), dtype=np.uint8)
    bits = np.unpackbits(random_bytes, axis=1, count=columns)
    return bits.astype(float) * 2.0 - 1.0


def holm_bonferroni(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (same order as given): max over j <= i of min(1, (m - j + 1) p_(j))."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


# --- comparing runs -------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricComparison:
    """One run against the baseline on one metric, over the queries both evaluated."""

    run: str
    metric: str
    n_queries: int
    baseline_mean: float
    mean: float
    delta: float
    p_ttest: float
    p_randomization: float
    p_ttest_holm: float
    p_randomization_holm: float
    significant: bool


@dataclass
class Comparison:
    baseline: str
    rows: list[MetricComparison]
    permutations: int
    seed: int
    alpha: float
    mark_by: str

    @property
    def family_size(self) -> int:
        return len(self.rows)

    def row(self, run: str, metric: str) -> MetricComparison | None:
        return next((r for r in self.rows if r.run == run and r.metric == metric), None)

    def describe(self) -> str:
        test = (
            f"paired randomization test ({self.permutations:,} sign flips, seed {self.seed})"
            if self.mark_by == "randomization"
            else "paired t-test"
        )
        return (
            f"{SIGNIFICANCE_MARK} p < {self.alpha} vs {self.baseline}, {test}, Holm-corrected over "
            f"{self.family_size} comparisons (runs x metrics)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "tests": ["paired t-test", "paired randomization (sign flip), two-sided"],
            "correction": "holm-bonferroni over all (run x metric) comparisons, per test",
            "family_size": self.family_size,
            "permutations": self.permutations,
            "seed": self.seed,
            "alpha": self.alpha,
            "mark_by": self.mark_by,
            "rows": [asdict(r) for r in self.rows],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Comparison":
        return cls(
            baseline=obj["baseline"],
            rows=[MetricComparison(**r) for r in obj["rows"]],
            permutations=int(obj["permutations"]),
            seed=int(obj["seed"]),
            alpha=float(obj["alpha"]),
            mark_by=obj["mark_by"],
        )


def compare(
    results: Sequence[EvalResult],
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    alpha: float = 0.05,
    mark_by: Literal["randomization", "ttest"] = "randomization",
) -> Comparison:
    """Compare every run with the first (the baseline) on each of the baseline's metrics.

    Each pair is tested on the queries both runs evaluated. p-values are Holm-corrected over the
    family of all (run x metric) comparisons, separately for the t-test and the randomization test.
    """
    if len(results) < 2:
        raise ListrankError("comparing runs needs at least two results")
    if mark_by not in ("randomization", "ttest"):
        raise ListrankError(f"mark_by must be 'randomization' or 'ttest', not {mark_by!r}")
    _check_comparable(results)
    baseline = results[0]
    raw = []  # (run, metric, n, baseline mean, mean, p_ttest, p_randomization)
    for result in results[1:]:
        base_values, values = _common_queries(baseline, result)
        p_t = np.atleast_1d(paired_ttest(base_values, values))
        p_r = np.atleast_1d(paired_randomization_test(base_values, values, permutations=permutations, seed=seed))
        for j, metric in enumerate(baseline.metrics):
            b_mean, mean = float(base_values[:, j].mean()), float(values[:, j].mean())
            raw.append((result.name, metric, len(values), b_mean, mean, float(p_t[j]), float(p_r[j])))
    p_t_holm = holm_bonferroni([r[5] for r in raw])
    p_r_holm = holm_bonferroni([r[6] for r in raw])
    marked = p_r_holm if mark_by == "randomization" else p_t_holm
    rows = [
        MetricComparison(run, metric, n, b, m, m - b, pt, pr, float(p_t_holm[i]), float(p_r_holm[i]), bool(marked[i] < alpha))
        for i, (run, metric, n, b, m, pt, pr) in enumerate(raw)
    ]
    return Comparison(baseline.name, rows, permutations, seed, alpha, mark_by)


_COMPARED_SETTINGS = ("relevance_level", "ignore_identical_ids", "complete")


def _check_comparable(results: Sequence[EvalResult]) -> None:
    names = [r.name for r in results]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ListrankError(f"runs to compare need distinct names; repeated: {', '.join(duplicates)}")
    baseline = results[0]
    for result in results[1:]:
        lacking = [m for m in baseline.metrics if m not in result.per_query]
        if lacking:
            raise ListrankError(f"run {result.name!r} was not evaluated on {', '.join(lacking)}")
        for key in _COMPARED_SETTINGS:
            if result.settings.get(key) != baseline.settings.get(key):
                raise ListrankError(
                    f"runs {baseline.name!r} and {result.name!r} were evaluated with different {key} "
                    f"({baseline.settings.get(key)!r} vs {result.settings.get(key)!r})"
                )
        if result.qrels != baseline.qrels:
            raise ListrankError(
                f"runs {baseline.name!r} and {result.name!r} were evaluated on different qrels "
                f"({baseline.qrels!r} vs {result.qrels!r})"
            )


def _common_queries(baseline: EvalResult, other: EvalResult) -> tuple[np.ndarray, np.ndarray]:
    """(n_common, n_metrics) value matrices of both runs, rows in the baseline's query order."""
    metrics = baseline.metrics
    if baseline.query_ids == other.query_ids:
        rows_b = rows_o = slice(None)
    else:
        position = {qid: i for i, qid in enumerate(other.query_ids)}
        pairs = [(i, position[q]) for i, q in enumerate(baseline.query_ids) if q in position]
        if not pairs:
            raise ListrankError(f"runs {baseline.name!r} and {other.name!r} have no evaluated query in common")
        rows_b, rows_o = (list(ix) for ix in zip(*pairs))
    base = np.column_stack([baseline.per_query[m][rows_b] for m in metrics])
    values = np.column_stack([other.per_query[m][rows_o] for m in metrics])
    return base, values


# --- output ---------------------------------------------------------------------------------


def results_table(
    results: Sequence[EvalResult] | EvalResult,
    comparison: Comparison | None = None,
    *,
    digits: int = 4,
    title: str | None = None,
) -> "Table":
    """One row per run, one column per metric; with a comparison, deltas vs the baseline and marks."""
    from rich.table import Table

    results = [results] if isinstance(results, EvalResult) else list(results)
    metrics = results[0].metrics
    table = Table(title=title, caption=comparison.describe() if comparison else None)
    table.add_column("run", style="bold")
    for metric in metrics:
        table.add_column(metric, justify="right")
    table.add_column("queries", justify="right")
    for result in results:
        cells = [_cell(result, metric, comparison, digits) for metric in metrics]
        table.add_row(result.name, *cells, str(result.n_queries))
    return table


def _cell(result: EvalResult, metric: str, comparison: Comparison | None, digits: int) -> str:
    value = f"{result.aggregate[metric]:.{digits}f}" if metric in result.per_query else "-"
    row = comparison.row(result.name, metric) if comparison else None
    if row is None:
        return value
    mark = SIGNIFICANCE_MARK if row.significant else ""
    delta = f"({row.delta:+.{digits}f}{mark})"
    if row.significant:
        delta = f"[{'green' if row.delta > 0 else 'red'}]{delta}[/]"
    return f"{value} {delta}"


def results_json(results: Sequence[EvalResult] | EvalResult, comparison: Comparison | None = None) -> dict[str, Any]:
    """One result -> its object; several -> {"baseline", "runs": [...], "comparison"}."""
    if isinstance(results, EvalResult):
        results = [results]
    if len(results) == 1 and comparison is None:
        return results[0].to_json()
    return {
        "baseline": results[0].name,
        "runs": [r.to_json() for r in results],
        "comparison": comparison.to_json() if comparison else None,
    }


def write_results_json(
    path: PathLike, results: Sequence[EvalResult] | EvalResult, comparison: Comparison | None = None
) -> Path:
    """Write `results_json(...)` atomically (no NaN: every value is a finite number)."""
    path = Path(path)
    with atomic_write(path) as fh:
        json.dump(results_json(results, comparison), fh, indent=1, ensure_ascii=False, allow_nan=False)
        fh.write("\n")
    return path


def read_results_json(path: PathLike) -> tuple[list[EvalResult], Comparison | None]:
    """Read back what `write_results_json` wrote."""
    with open(path, encoding="utf-8") as fh:
        obj = json.load(fh)
    if "runs" in obj:
        comparison = Comparison.from_json(obj["comparison"]) if obj.get("comparison") else None
        return [EvalResult.from_json(r) for r in obj["runs"]], comparison
    return [EvalResult.from_json(obj)], None


def plot_per_query_delta(
    baseline: EvalResult, other: EvalResult, metric: str, path: PathLike, *, title: str | None = None
) -> Path:
    """A PNG bar chart of per-query `metric` differences (other - baseline), sorted, written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg without touching pyplot's state
    from matplotlib.figure import Figure

    name = parse_metric(metric).name
    for result in (baseline, other):
        if name not in result.per_query:
            raise ListrankError(f"run {result.name!r} was not evaluated on {name}")
    base_values, values = (
        m[:, 0] for m in _common_queries(_only(baseline, name), _only(other, name))
    )
    deltas = np.sort(values - base_values)[::-1]
    figure = Figure(figsize=(min(16.0, 4.0 + 0.06 * len(deltas)), 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colors = np.where(deltas > 0, "tab:green", np.where(deltas < 0, "tab:red", "tab:gray"))
    axes.bar(np.arange(len(deltas)), deltas, width=1.0 if len(deltas) > 200 else 0.8, color=colors)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xlabel(f"queries, sorted by difference (n = {len(deltas)})")
    axes.set_ylabel(f"Δ {name}")  # short: long run names would be clipped; they go in the title
    axes.set_xticks([])
    wins, losses = int((deltas > 0).sum()), int((deltas < 0).sum())
    axes.set_title(title or f"{name} per query, {other.name} − {baseline.name}: mean {deltas.mean():+.4f}, "
                            f"{wins} better, {losses} worse, {len(deltas) - wins - losses} tied")
    figure.tight_layout()
    return write_png(figure, path)


def _only(result: EvalResult, metric: str) -> EvalResult:
    """A view of `result` restricted to one metric (arrays shared, not copied)."""
    return EvalResult(result.name, result.qrels, [metric], result.query_ids, {metric: result.per_query[metric]})


__all__ = [
    "DEFAULT_METRICS",
    "DEFAULT_PERMUTATIONS",
    "Comparison",
    "EvalResult",
    "Metric",
    "MetricComparison",
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
