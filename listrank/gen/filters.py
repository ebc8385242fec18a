"""`listrank gen --filter`: keep a generated list only if an independent scorer agrees with it.

A small LLM sometimes writes a "perfectly relevant" passage that answers nothing, or an
"irrelevant" one on the query's topic. The filter scores each list's passages against its query
with a scorer that is not the LLM and keeps the list only when the mean score of the top level
(3) is above the mean score of the bottom level (0) (the highest and lowest levels present); the
others go to the rejects file with both scores in the reason.

* `bm25`: BM25 (k1 0.9, b 0.4, Lucene's idf) over the list's own passages as the corpus. Lexical,
  cheap and independent of the dense encoders that train on the lists and audit them.
* `encoder`: the dot product of the base encoder (the bundled all-MiniLM-L6-v2), the same scorer
  `listrank eval --level-audit` uses by default, so the audit of a list set filtered this way
  is 100 % 3>0 by construction; it measures agreement, not quality, and is offered for
  comparison.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

from listrank.errors import ListrankError
from listrank.formats import SyntheticList

FILTERS = ("bm25", "encoder")


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def bm25_scores(query: str, passages: Sequence[str], k1: float = 0.9, b: float = 0.4) -> list[float]:
    """BM25 of `query` against each of `passages`, the passages being the whole corpus."""
    docs = [_tokens(p) for p in passages]
    n = len(docs)
    avg = sum(len(d) for d in docs) / n if n else 0.0
    df = Counter(t for d in docs for t in set(d))
    scores = []
    for d in docs:
        tf = Counter(d)
        s = 0.0
        for t in set(_tokens(query)):
            if tf[t]:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * len(d) / (avg or 1.0)))
        scores.append(s)
    return scores


def level_means(sl: SyntheticList, scores: Sequence[float]) -> dict[int, float]:
    """{level: the mean score of the list's passages at that level}, `scores` aligned with `passages`."""
    by_level: dict[int, list[float]] = {}
    for p, s in zip(sl.passages, scores):
        by_level.setdefault(p.level, []).append(s)
    return {lv: sum(v) / len(v) for lv, v in by_level.items()}


class ListFilter:
    """Checks lists; `check` returns {query id: reason} for those to reject."""

    def __init__(self, name: str):
        self.name = name
        self._encoder = None

    def scores(self, lists: Sequence[SyntheticList]) -> list[list[float]]:
        if self.name == "bm25":
            return [bm25_scores(sl.query, [p.text for p in sl.passages]) for sl in lists]
        if self._encoder is None:
            from listrank.encoder import Encoder

            self._encoder = Encoder(max_length=256)
        from listrank.audit import score_lists

        return [list(map(float, s)) for s in score_lists(lists, self._encoder)]

    def check(self, lists: Sequence[SyntheticList]) -> dict[str, str]:
        rejected = {}
        for sl, scores in zip(lists, self.scores(lists)):
            means = level_means(sl, scores)
            if len(means) < 2:
                continue
            top, bottom = max(means), min(means)
            hi, lo = means[top], means[bottom]
            if not hi > lo:
                rejected[sl.query_id] = (f"filter {self.name}: level {top} scored {hi:.3f}, not above "
                                         f"level {bottom} ({lo:.3f})")
        return rejected


def get_filter(name: str | None) -> ListFilter | None:
    if name is None or name == "none":
        return None
    if name not in FILTERS:
        raise ListrankError(f"unknown --filter {name!r} (known: none, {', '.join(FILTERS)})")
    return ListFilter(name)
