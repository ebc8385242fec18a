"""Validation during training: nDCG@10 of the model being trained, measured with listrank's own
index, search and evaluate code (`build_dense_index`, `dense_search`, `evaluate`).

A validation set is either

* a BEIR dataset split (`--eval-dataset ID --eval-split S`, default split `dev`): its corpus, the
  queries judged in the split and their qrels. A split named `test` is refused unless
  `--eval-force`: picking a checkpoint on the test set leaks it into the model; or
* a held-out share of the training queries (`--eval-holdout FRACTION`): those lists are removed
  from training; their passages form the corpus (each query's own list, with every other held-out
  query's passages as distractors) and their labels the graded qrels.

The trainer validates before step 0, every `--eval-steps` steps and after the last step, and keeps
the best step's model as the final one ("do no harm": if no step beats the start, the final model
is the start model).
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from listrank.errors import ListrankError
from listrank.formats import Document, Qrels, Query

METRIC = "nDCG@10"
SEARCH_DEPTH = 100
DEV_SPLITS = ("dev", "validation", "val")


@dataclass
class ValidationSet:
    name: str
    kind: str  # dataset | holdout
    docs: list[Document]
    queries: list[Query]
    qrels: Qrels
    split: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "split": self.split, "queries": len(self.queries),
                "docs": len(self.docs), "metric": METRIC}

    def score(self, encoder, batch_size: int = 64, work_dir: str | Path | None = None) -> float:
        """nDCG@10 of `encoder` (any state: it is switched to eval mode while encoding and back)."""
        from listrank.evaluate import evaluate
        from listrank.index import DenseIndex, build_dense_index
        from listrank.search import dense_search

        with tempfile.TemporaryDirectory(dir=work_dir, prefix=".validation.") as tmp:
            index_dir = build_dense_index(encoder, self.docs, Path(tmp) / "index", batch_size=batch_size,
                                          show_progress=False)
            run = dense_search(DenseIndex.open(index_dir), self.queries, SEARCH_DEPTH, encoder=encoder,
                               batch_size=batch_size, show_progress=False)
        result = evaluate(run, self.qrels, [METRIC], name="validation", qrels_name=self.name)
        value = result.aggregate[METRIC]
        if not math.isfinite(value):  # pragma: no cover - evaluate returns finite means
            raise ListrankError(f"validation on {self.name}: non-finite {METRIC}")
        return value


def dataset_validation(spec: str, split: str | None, force: bool, data_dir=None) -> ValidationSet:
    """A BEIR dataset split; refuses a split named `test` without `force` (one-line error)."""
    from listrank.datasets import resolve

    ds = resolve(spec, data_dir=data_dir)
    if split is None:
        split = next((s for s in DEV_SPLITS if s in ds.splits()), None)
        if split is None:
            raise ListrankError(
                f"--eval-dataset {spec}: no dev split (qrels splits: {', '.join(ds.splits()) or 'none'}); "
                "name one with --eval-split, or use --eval-holdout")
    if split == "test" and not force:
        raise ListrankError(
            f"refusing to validate on {spec}:test (choosing a checkpoint on the test split leaks it into the "
            "model): use a dev split or --eval-holdout, or pass --eval-force")
    qrels = ds.qrels(split)
    queries = ds.queries(split)
    qrels = {q.id: qrels[q.id] for q in queries}
    if not any(g > 0 for rels in qrels.values() for g in rels.values()):
        raise ListrankError(f"--eval-dataset {spec}:{split}: no judged relevant document to validate on")
    return ValidationSet(f"{spec}:{split}", "dataset", list(ds.corpus), queries, qrels, split)


def _rank(seed: int, query_id: str) -> bytes:
    return hashlib.sha256(f"{seed}:holdout:{query_id}".encode()).digest()


def split_holdout(lists: list, fraction: float, seed: int) -> tuple[list, list]:
    """(training lists, held-out lists): a `fraction` of the lists that have a passage with a label
    > 0 (those a ranking metric can score), chosen by a hash of (seed, query id), so the choice
    does not depend on the order of the data or on the number of processes."""
    candidates = [ql for ql in lists if any(p.label > 0 for p in ql.all_passages())]
    k = int(round(fraction * len(lists)))
    k = max(1, min(k, len(candidates), len(lists) - 1))
    if not candidates or len(lists) < 2:
        raise ListrankError(f"--eval-holdout {fraction}: {len(lists)} list(s), {len(candidates)} with a "
                            "relevant passage: too few to hold any out")
    held_ids = {ql.query_id for ql in sorted(candidates, key=lambda ql: _rank(seed, ql.query_id))[:k]}
    return [ql for ql in lists if ql.query_id not in held_ids], [ql for ql in lists if ql.query_id in held_ids]


def holdout_validation(held: list, fraction: float) -> ValidationSet:
    """The held-out lists as a retrieval task: their passages are the corpus, their labels the qrels."""
    docs: dict[str, Document] = {}
    qrels: Qrels = {}
    for ql in held:
        rels = qrels.setdefault(ql.query_id, {})
        for p in ql.all_passages():
            docs.setdefault(p.id, Document(p.id, p.text))
            rels[p.id] = max(rels.get(p.id, p.label), p.label)
    queries = [Query(ql.query_id, ql.query) for ql in held]
    return ValidationSet(f"holdout {fraction:g} of the training queries", "holdout", list(docs.values()),
                         queries, qrels)
