"""The synthetic-level audit: does an encoder's score order an LLM's graded passages by their level?

`listrank gen` asks an LLM for passages at levels 3 (perfectly relevant) ... 0 (irrelevant). A small
model may not respect the levels; this module measures how well an encoder's scores agree with them.
Each query is scored against **its own** list only (score = dot product of the encoder's embeddings,
the retrieval score; the cosine for normalised models), and per query:

* **nDCG@10** of its list ranked by score, against the levels as graded qrels (trec_eval's
  `ndcg_cut.10`, linear gains, through `listrank.evaluate.evaluate`);
* for each pair of levels a > b: whether the **mean** score of its level-a passages exceeds the mean
  of its level-b passages (the "share of queries" columns: top vs bottom level, e.g. 3>0, and the
  adjacent levels 3>2, 2>1, 1>0), and the **pair accuracy**: the share of (level-a, level-b) passage
  pairs of one query scored in that order, pooled over queries;
* **concordance**: over all pairs of its passages with different levels, the share ordered as the
  levels are (Kendall-style; tau = 2 * concordance - 1).

Ties count half everywhere. Aggregates are means over queries (each query counts once), except the
pooled pair accuracy and the per-level score statistics, which pool passages. Levels are those found
in the data. A query that lacks some level is kept and counted (`missing_by_level`); pairs involving
its missing level skip it. A query with fewer than two distinct levels cannot be ordered: it is left
out of nDCG and concordance and counted as `single_level`.

Input: the BEIR folder written by `listrank gen --export-beir` (any folder or id with graded qrels
works: each query's judged documents form its list), or the gen JSONL itself.

Entry points: `load_lists(...)` -> lists, `level_audit(lists, encoder)` -> `AuditResult`, then
`audit_tables`, `write_audit_json`, `plot_levels`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from listrank.atomic import atomic_write, write_png
from listrank.errors import ListrankError
from listrank.formats import (
    Document, PathLike, Qrels, Query, SyntheticList, SyntheticPassage, read_qrels, read_synthetic,
)

if TYPE_CHECKING:
    from rich.console import Group

    from listrank.encoder import Encoder

NDCG = "nDCG@10"


# --- input ----------------------------------------------------------------------------------


@dataclass
class AuditInput:
    """The lists to audit, a name for reports, and what was skipped while building them."""

    lists: list[SyntheticList]
    name: str
    warnings: list[str] = field(default_factory=list)


def _is_synthetic_jsonl(path: Path) -> bool:
    """True when the first non-blank line is a JSON object with 'passages' (listrank gen output)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(obj, dict) and "passages" in obj
    return False


def lists_from_qrels(corpus: Sequence[Document], queries: Sequence[Query], qrels: Qrels) -> tuple[list[SyntheticList], list[str]]:
    """Each judged query with its judged documents (grade = level), and warnings for what was missing."""
    docs = {d.id: d for d in corpus}
    texts = {q.id: q.text for q in queries}
    lists, no_query, no_doc = [], [], 0
    for qid, judged in qrels.items():
        if qid not in texts:
            no_query.append(qid)
            continue
        passages = [SyntheticPassage(id=d, level=int(g), text=docs[d].full_text()) for d, g in judged.items() if d in docs]
        no_doc += len(judged) - len(passages)
        if passages:
            lists.append(SyntheticList(query_id=qid, query=texts[qid], passages=passages))
    notes = []
    if no_query:
        notes.append(f"{len(no_query)} judged queries are not in the queries file and were skipped "
                     f"(e.g. {no_query[0]!r})")
    if no_doc:
        notes.append(f"{no_doc} judged passages are not in the corpus and were skipped")
    return lists, notes


def load_lists(
    spec: str | os.PathLike,
    split: str | None = None,
    data_dir: PathLike | None = None,
    qrels: PathLike | None = None,
) -> AuditInput:
    """Lists from a gen JSONL file, or from a BEIR folder / dataset id (its `split`, or a `qrels` file)."""
    path = Path(spec).expanduser()
    if path.is_file():
        if not _is_synthetic_jsonl(path):
            raise ListrankError(
                f"{path} is not listrank gen output (JSONL lines with 'passages'); give that file or the "
                "BEIR folder written by `listrank gen --export-beir`"
            )
        if split is not None or qrels is not None:
            raise ListrankError("--split/--qrels apply to a BEIR folder; a gen JSONL file carries its own levels")
        notes, seen, lists = [], set(), []
        for sl in read_synthetic(path):
            if sl.query_id in seen:
                notes.append(f"query id {sl.query_id!r} appears more than once in {path}; kept the first")
                continue
            seen.add(sl.query_id)
            lists.append(sl)
        return AuditInput(lists, str(path), notes)

    from listrank.datasets import resolve

    ds = resolve(spec, data_dir)
    split = split or (None if qrels else ds.default_split())
    judgements = read_qrels(qrels) if qrels else ds.qrels(split)
    lists, notes = lists_from_qrels(ds.corpus, ds.all_queries, judgements)
    name = str(qrels) if qrels else f"{ds.id}/{split}"
    if not lists:
        raise ListrankError(f"{name}: no judged query has both its text and judged passages in the dataset")
    return AuditInput(lists, name, notes)


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
        encoder={"name": _model_name(spec.model), "model": spec.model, "pooling": spec.pooling, "normalize": spec.normalize,
                 "max_length": spec.max_length, "weights_sha256": spec.weights_sha256},
        levels=levels, queries=queries, level_stats=level_stats, pairs=pairs,
        ndcg10=float(np.mean([q.ndcg10 for q in ranked])),
        concordance=float(np.mean([q.concordance for q in ranked])),
        n_ranked=len(ranked), single_level=single, missing_by_level=missing,
        scores=pooled, centered=pooled_centered, warnings=notes,
    )


def _model_name(model: str) -> str:
    """The folder or hub name; the bundled model by its own name rather than its folder's ('model')."""
    from listrank.encoder import DEFAULT_MODEL_NAME, default_model_path

    try:
        if Path(model) == default_model_path():
            return DEFAULT_MODEL_NAME
    except ListrankError:
        pass
    return Path(model).name


# --- output ---------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{x:.1%}"


def audit_tables(result: AuditResult) -> "Group":
    """Summary, per-pair and per-level tables for the terminal."""
    from rich.console import Group
    from rich.table import Table

    model = result.encoder["name"]
    summary = Table(title=f"level audit: {result.name} ({result.n_queries} queries, encoder {model})")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    summary.add_column("queries", justify="right")
    summary.add_row("nDCG@10 of the lists", f"{result.ndcg10:.4f}", str(result.n_ranked))
    tb = result.top_bottom
    if tb:
        summary.add_row(f"level {tb.high} > level {tb.low} (mean scores)", _pct(tb.query_share), str(tb.queries))
    summary.add_row("concordance (pairs of different levels)", f"{result.concordance:.4f} (τ {result.kendall_tau:+.3f})",
                    str(result.n_ranked))
    summary.add_row("queries missing a level", str(result.queries_missing_a_level), str(result.n_queries))

    pairs = Table(title="level pairs")
    for col in ("pair", "queries", "share of queries (mean > mean)", "passage pairs", "pair accuracy"):
        pairs.add_column(col, justify="left" if col == "pair" else "right")
    for p in result.pairs:
        pairs.add_row(p.label, str(p.queries), _pct(p.query_share), f"{p.pairs:,}", _pct(p.pair_accuracy))

    levels = Table(title="score by level")
    for col in ("level", "passages", "queries", "mean", "std", "mean - query mean"):
        levels.add_column(col, justify="right")
    for s in result.level_stats:
        levels.add_row(str(s.level), f"{s.passages:,}", str(s.queries), f"{s.mean:.4f}", f"{s.std:.4f}",
                       f"{s.mean_centered:+.4f}")
    return Group(summary, pairs, levels)


def write_audit_json(path: PathLike, result: AuditResult) -> Path:
    path = Path(path)
    with atomic_write(path) as fh:
        json.dump(_plain(result.to_json()), fh, indent=2, ensure_ascii=False, allow_nan=False)
        fh.write("\n")
    return path


def _plain(obj: Any) -> Any:
    """JSON-safe: NaN (a pair no query has) -> null, numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def plot_levels(result: AuditResult, path: PathLike) -> Path:
    """A PNG (written atomically): box plots of score per level, raw and minus the query's mean; means marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg without touching pyplot's state
    from matplotlib.figure import Figure

    levels = sorted(result.levels)  # worst first: a rising staircase is what a good encoder shows
    figure = Figure(figsize=(11.0, 4.8), dpi=100)
    FigureCanvasAgg(figure)
    panels = [(result.scores, "score (query · passage)"), (result.centered, "score - query's mean score")]
    for i, (data, ylabel) in enumerate(panels):
        axes = figure.add_subplot(1, 2, i + 1)
        values = [data[lv] for lv in levels]
        axes.boxplot(values, showmeans=True, widths=0.6,
                     meanprops={"marker": "D", "markerfacecolor": "tab:red", "markeredgecolor": "tab:red"})
        axes.set_xticks(range(1, len(levels) + 1), [f"{lv}\n(n={data[lv].size})" for lv in levels])
        means = [float(v.mean()) for v in values]
        axes.plot(range(1, len(levels) + 1), means, color="tab:red", linewidth=1, alpha=0.7, label="mean (◆)")
        axes.set_xlabel("level (3 perfectly relevant ... 0 irrelevant)")
        axes.set_ylabel(ylabel)
        axes.grid(axis="y", alpha=0.3)
        if i == 0:
            axes.legend(loc="best")
    tb = result.top_bottom
    share = f"{tb.high}>{tb.low} in {_pct(tb.query_share)} of queries" if tb else ""
    figure.suptitle(
        f"{result.name} · {result.encoder['name']}\n"
        f"nDCG@10 {result.ndcg10:.3f} · {share} · concordance {result.concordance:.3f} "
        f"({result.n_queries} queries)",
        fontsize=11,
    )
    figure.tight_layout()
    return write_png(figure, path)


__all__ = [
    "AuditInput", "AuditResult", "LevelStats", "PairStats", "QueryAudit",
    "audit_tables", "level_audit", "lists_from_qrels", "load_lists", "plot_levels", "score_lists",
    "write_audit_json",
]
