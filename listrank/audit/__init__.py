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

Modules: `lists` (input), `stats` (the audit), `report` (tables, JSON, plot).
"""

from __future__ import annotations

from listrank.audit.lists import AuditInput, lists_from_qrels, load_lists
from listrank.audit.report import audit_tables, plot_levels, write_audit_json
from listrank.audit.stats import NDCG, AuditResult, LevelStats, PairStats, QueryAudit, level_audit, score_lists

__all__ = [
    "NDCG", "AuditInput", "AuditResult", "LevelStats", "PairStats", "QueryAudit",
    "audit_tables", "level_audit", "lists_from_qrels", "load_lists", "plot_levels", "score_lists",
    "write_audit_json",
]
