"""Metrics of one run against qrels: trec_eval's measures through pytrec_eval (`evaluate` -> `EvalResult`).

The conventions (gains, relevance level, ties, self-hits, missing queries) are those of the
package docstring, `listrank.evaluate`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pytrec_eval

from listrank.errors import ListrankError
from listrank.formats import Qrels, Run

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "recall@100", "map@100")

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


