"""Input of the level audit: graded lists from a gen JSONL file or any folder/id with graded qrels."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence


from listrank.errors import ListrankError
from listrank.formats import (
    Document, PathLike, Qrels, Query, SyntheticList, SyntheticPassage, is_synthetic_file, read_synthetic,
)

if TYPE_CHECKING:

    pass


# --- input ----------------------------------------------------------------------------------


@dataclass
class AuditInput:
    """The lists to audit, a name for reports, and what was skipped while building them."""

    lists: list[SyntheticList]
    name: str
    warnings: list[str] = field(default_factory=list)


def lists_from_qrels(corpus: Sequence[Document], queries: Sequence[Query], qrels: Qrels) -> tuple[list[SyntheticList], list[str]]:
    """Each judged query with its judged documents (grade = level), and warnings for what was missing."""
    from listrank.datasets import judged_lists

    judged = judged_lists(corpus, queries, qrels)
    lists = [SyntheticList(query_id=q.id, query=q.text,
                           passages=[SyntheticPassage(id=d.id, level=g, text=d.full_text()) for d, g in passages])
             for q, passages in judged.lists if passages]
    no_query, no_doc = judged.missing_queries, judged.missing_docs
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
        if not is_synthetic_file(path):
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
    judgements, split, name = ds.judgements(split, qrels)
    lists, notes = lists_from_qrels(ds.corpus, ds.all_queries, judgements)
    if not lists:
        raise ListrankError(f"{name}: no judged query has both its text and judged passages in the dataset")
    return AuditInput(lists, name, notes)


