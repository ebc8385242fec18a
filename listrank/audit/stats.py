"""The level audit itself: per-query order statistics of an encoder's scores against the levels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from listrank.errors import ListrankError
from listrank.formats import (
    Qrels, SyntheticList,
)

if TYPE_CHECKING:

    from listrank.encoder import Encoder

from listrank.audit.lists import AuditInput  # noqa: F401

NDCG = "nDCG@10"


# --- the audit ------------------------------------------------------------------------------


@dataclass
class LevelStats:
    level: int
    passages: int
    queries: int
    mean: float
    std: float
    mean_centered: float  # mean of (score - the query's mean score): query difficulty taken out


@dataclass
class PairStats:
    """Level `high` against level `low` over the queries that have both."""

    high: int
    low: int
    kind: str  # "top-bottom" or "adjacent"
    queries: int
    query_share: float  # share of those queries whose mean `high` score exceeds their mean `low` score
    pair_accuracy: float  # share of (high, low) passage pairs scored high > low, pooled over queries
    pairs: int

    @property
    def label(self) -> str:
        return f"{self.high}>{self.low}"


@dataclass
class QueryAudit:
    query_id: str
    counts: dict[int, int]  # level -> passages
    mean_score: dict[int, float]  # level -> mean score
    ndcg10: float | None  # None when the list has a single level
    concordance: float | None
    missing_levels: list[int]


@dataclass
class AuditResult:
    name: str
    encoder: dict[str, Any]
    levels: list[int]  # best first
    queries: list[QueryAudit]
    level_stats: list[LevelStats]  # best first
    pairs: list[PairStats]  # the top-bottom pair first, then adjacent pairs best first
    ndcg10: float
    concordance: float
    n_ranked: int  # queries with two or more levels (those in nDCG and concordance)
    single_level: int
    missing_by_level: dict[int, int]
    scores: dict[int, np.ndarray]  # level -> all passage scores (for the plot)
    centered: dict[int, np.ndarray]  # level -> scores minus their query's mean score
    warnings: list[str] = field(default_factory=list)

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    @property
    def queries_missing_a_level(self) -> int:
        return sum(1 for q in self.queries if q.missing_levels)

    @property
    def top_bottom(self) -> PairStats | None:
        return next((p for p in self.pairs if p.kind == "top-bottom"), None)

    @property
    def kendall_tau(self) -> float:
        return 2.0 * self.concordance - 1.0

    def to_json(self) -> dict[str, Any]:
        tb = self.top_bottom
        return {
            "name": self.name,
            "encoder": self.encoder,
            "score": "dot product of the encoder's embeddings (cosine when normalised)",
            "n_queries": self.n_queries,
            "levels": self.levels,
            "summary": {
                "ndcg@10": self.ndcg10,
                "top_over_bottom": tb.label if tb else None,
                "top_over_bottom_query_share": tb.query_share if tb else None,
                "top_over_bottom_pair_accuracy": tb.pair_accuracy if tb else None,
                "concordance": self.concordance,
                "kendall_tau": self.kendall_tau,
                "queries_ranked": self.n_ranked,
                "single_level_queries": self.single_level,
                "queries_missing_a_level": self.queries_missing_a_level,
                "missing_by_level": {str(k): v for k, v in self.missing_by_level.items()},
            },
            "levels_stats": [vars(s) for s in self.level_stats],
            "pairs": [{"pair": p.label, **vars(p)} for p in self.pairs],
            "per_query": [
                {"query_id": q.query_id,
                 "passages": {str(k): v for k, v in q.counts.items()},
                 "mean_score": {str(k): v for k, v in q.mean_score.items()},
                 "ndcg@10": q.ndcg10, "concordance": q.concordance, "missing_levels": q.missing_levels}
                for q in self.queries
            ],
            "warnings": self.warnings,
        }


def _wins(high: np.ndarray, low: np.ndarray) -> float:
    """Pairs (h, l) with h > l, ties counting half."""
    diff = high[:, None] - low[None, :]
    return float((diff > 0).sum() + 0.5 * (diff == 0).sum())


def _win(a: float, b: float) -> float:
    return 1.0 if a > b else 0.5 if a == b else 0.0


def score_lists(lists: Sequence[SyntheticList], encoder: "Encoder", batch_size: int = 64,
                show_progress: bool = False) -> list[np.ndarray]:
    """Each query's scores against its own passages (dot products), aligned with `passages`.

    Every passage is encoded in one `encode` call and every query in another.
    """
    texts = [p.text for sl in lists for p in sl.passages]
    doc_emb = encoder.encode(texts, batch_size=batch_size, show_progress=show_progress, description="passages")
    query_emb = encoder.encode([sl.query for sl in lists], batch_size=batch_size, show_progress=show_progress,
                               description="queries")
    if not (np.isfinite(doc_emb).all() and np.isfinite(query_emb).all()):
        raise ListrankError("the encoder gave non-finite embeddings (NaN or inf weights?); "
                            "an audit of such scores would be arbitrary")
    out, start = [], 0
    for i, sl in enumerate(lists):
        end = start + len(sl.passages)
        out.append(doc_emb[start:end] @ query_emb[i])
        start = end
    return out


def level_audit(
    lists: Sequence[SyntheticList] | AuditInput,
    encoder: "Encoder",
    *,
    batch_size: int = 64,
    name: str | None = None,
    show_progress: bool = False,
) -> AuditResult:
    """Score each query against its own passages and measure how well the scores order the levels."""
    from listrank.encoder import display_name
    from listrank.evaluate import evaluate

    notes: list[str] = []
    if isinstance(lists, AuditInput):
        name, notes = name or lists.name, list(lists.warnings)
        lists = lists.lists
    lists = list(lists)
    if not lists:
        raise ListrankError("nothing to audit: no query with passages")
    scores = score_lists(lists, encoder, batch_size=batch_size, show_progress=show_progress)
    levels = sorted({p.level for sl in lists for p in sl.passages}, reverse=True)
    if len(levels) < 2:
        raise ListrankError(f"all passages have level {levels[0]}: there is no ordering of levels to audit")

    per_level: dict[int, list[np.ndarray]] = {lv: [] for lv in levels}
    centered: dict[int, list[np.ndarray]] = {lv: [] for lv in levels}
    by_query: list[dict[int, np.ndarray]] = []
    queries: list[QueryAudit] = []
    run: dict[str, dict[str, float]] = {}
    qrels: Qrels = {}
    for sl, s in zip(lists, scores):
        lv = np.array([p.level for p in sl.passages])
        groups = {level: s[lv == level] for level in levels if (lv == level).any()}
        by_query.append(groups)
        for level, values in groups.items():
            per_level[level].append(values)
            centered[level].append(values - s.mean())
        concordance = None
        if len(groups) > 1:
            run[sl.query_id] = {p.id: float(x) for p, x in zip(sl.passages, s)}
            qrels[sl.query_id] = {p.id: p.level for p in sl.passages}
            present = sorted(groups, reverse=True)
            wins = pairs = 0.0
            for i, a in enumerate(present):
                for b in present[i + 1:]:
                    wins += _wins(groups[a], groups[b])
                    pairs += groups[a].size * groups[b].size
            concordance = wins / pairs
        queries.append(QueryAudit(
            query_id=sl.query_id,
            counts={level: int(v.size) for level, v in groups.items()},
            mean_score={level: float(v.mean()) for level, v in groups.items()},
            ndcg10=None, concordance=concordance,
            missing_levels=[level for level in levels if level not in groups],
        ))
    if not run:
        raise ListrankError("no query has passages at two different levels: there is no ordering to audit")

    # nDCG@10 of each query's own list ranked by score (trec_eval; ties broken by doc id as trec_eval does)
    result = evaluate(run, qrels, [NDCG], ignore_identical_ids=False, name="level audit")
    ndcg = dict(zip(result.query_ids, result.per_query[NDCG].tolist()))
    for q in queries:
        q.ndcg10 = ndcg.get(q.query_id)

    pair_specs = [(levels[0], levels[-1], "top-bottom")]
    pair_specs += [(a, b, "adjacent") for a, b in zip(levels, levels[1:]) if (a, b) != (levels[0], levels[-1])]
    pairs = []
    for a, b, kind in pair_specs:
        both = [g for g in by_query if a in g and b in g]
        n_pairs = sum(g[a].size * g[b].size for g in both)
        pairs.append(PairStats(
            high=a, low=b, kind=kind, queries=len(both),
            query_share=float(np.mean([_win(g[a].mean(), g[b].mean()) for g in both])) if both else float("nan"),
            pair_accuracy=sum(_wins(g[a], g[b]) for g in both) / n_pairs if n_pairs else float("nan"),
            pairs=int(n_pairs),
        ))

    pooled = {lv: np.concatenate(v) for lv, v in per_level.items()}
    pooled_centered = {lv: np.concatenate(v) for lv, v in centered.items()}
    level_stats = [LevelStats(level=lv, passages=int(pooled[lv].size), queries=len(per_level[lv]),
                              mean=float(pooled[lv].mean()), std=float(pooled[lv].std()),
                              mean_centered=float(pooled_centered[lv].mean())) for lv in levels]
    missing = {lv: sum(1 for q in queries if lv in q.missing_levels) for lv in levels}
    single = sum(1 for q in queries if q.concordance is None)
    if any(missing.values()):
        which = ", ".join(f"level {lv}: {n}" for lv, n in missing.items() if n)
        notes.append(f"{sum(1 for q in queries if q.missing_levels)} of {len(queries)} queries lack a level "
                     f"({which}); pairs with a missing level skip them")
    if single:
        notes.append(f"{single} queries have a single level and are left out of nDCG@10 and concordance")
    ranked = [q for q in queries if q.concordance is not None]
    spec = encoder.spec()
    return AuditResult(
        name=name or "synthetic lists",
        encoder={"name": display_name(spec.model), "model": spec.model, "pooling": spec.pooling, "normalize": spec.normalize,
                 "max_length": spec.max_length, "weights_sha256": spec.weights_sha256},
        levels=levels, queries=queries, level_stats=level_stats, pairs=pairs,
        ndcg10=float(np.mean([q.ndcg10 for q in ranked])),
        concordance=float(np.mean([q.concordance for q in ranked])),
        n_ranked=len(ranked), single_level=single, missing_by_level=missing,
        scores=pooled, centered=pooled_centered, warnings=notes,
    )


