"""Training data: sources -> per-query graded lists -> per-epoch groups of G passages -> batches.

* A *source* is a `listrank gen` JSONL file (synthetic lists) or a BEIR dataset split with graded
  qrels (a query's judged passages form its list). Each source may transform its labels
  (`labels="0:drop,*:3"`), use a random `take` of its passages per query and epoch, and add hard
  negatives mined from a corpus with listrank's own search (dense, or BM25 where available).
* Sources are merged **by query id**: the synthetic passages of a query and its real positives
  and mined negatives form one list (SyCL's "synthetic + real" setting).
* `prepare` filters the lists for a loss and group size and counts what it did: lists whose
  passages all share one label are skipped for list-wise losses (their target is uniform),
  lists shorter than the group are padded by repetition or skipped.
* Per epoch the queries are shuffled and each query gets a group of `group_size` passages in
  random order, sampled without replacement (SyCL's setting). Every random choice is drawn from
  a generator seeded by (seed, epoch, list index), so a group does not depend on the number of
  DataLoader workers or ranks, and a resumed run sees exactly the groups of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from listrank.errors import ListrankError
from listrank.formats import Document, Query, ReadStats, is_synthetic_file, read_synthetic, slug
from listrank.train.config import SourceConfig, apply_label_map, parse_label_map


@dataclass(frozen=True)
class Passage:
    id: str
    text: str
    label: int


@dataclass
class Part:
    """The passages one source contributes to a query; `take` > 0 samples that many per epoch."""

    source: str
    passages: list[Passage]
    take: int = 0


@dataclass
class QueryList:
    query_id: str
    query: str
    parts: list[Part] = field(default_factory=list)

    def all_passages(self) -> list[Passage]:
        return [p for part in self.parts for p in part.passages]

    def size(self) -> int:
        """Candidates per epoch (after each part's `take`)."""
        return sum(min(part.take, len(part.passages)) if part.take else len(part.passages) for part in self.parts)

    def labels(self) -> set[int]:
        return {p.label for p in self.all_passages()}


@dataclass
class SourceReport:
    name: str
    kind: str  # synthetic | qrels
    queries: int = 0
    passages: int = 0
    dropped_by_label_map: int = 0
    invalid_lines: int = 0
    invalid_examples: list[str] = field(default_factory=list)
    missing_docs: int = 0
    missing_queries: int = 0
    mined: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class DataReport:
    """What loading and filtering did; printed by the CLI and stored in listrank.json."""

    sources: list[SourceReport] = field(default_factory=list)
    lists: int = 0  # after merging by query id
    used: int = 0
    skipped_empty: int = 0
    skipped_one_label: int = 0
    skipped_short: int = 0
    padded: int = 0
    held_out: int = 0  # --eval-holdout: lists kept out of training for validation
    one_label_examples: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- loading ---------------------------------------------------------------------------------------

def load_synthetic_source(src: SourceConfig, skip_invalid: bool = False) -> tuple[list[QueryList], SourceReport]:
    """A `listrank gen` file; a malformed line raises FormatError `file:line: reason`."""
    name = src.display_name()
    report = SourceReport(name=name, kind="synthetic")
    rules = parse_label_map(src.labels)
    stats = ReadStats()
    records = read_synthetic(src.path, skip_invalid=skip_invalid, stats=stats)
    report.invalid_lines, report.invalid_examples = stats.skipped, list(stats.first_errors)
    by_query: dict[str, QueryList] = {}
    seen: dict[str, set[str]] = {}
    for rec in records:
        qlist = by_query.get(rec.query_id)
        if qlist is None:
            qlist = by_query[rec.query_id] = QueryList(rec.query_id, rec.query, [Part(name, [], src.take)])
            seen[rec.query_id] = set()
        for p in rec.passages:
            label = apply_label_map(rules, p.level)
            if label is None:
                report.dropped_by_label_map += 1
                continue
            if p.id in seen[rec.query_id]:  # the same list twice (e.g. concatenated shards)
                continue
            seen[rec.query_id].add(p.id)
            qlist.parts[0].passages.append(Passage(p.id, p.text, label))
    lists = list(by_query.values())
    _count(report, lists)
    return lists, report


def load_qrels_source(
    src: SourceConfig, data_dir: str | os.PathLike | None = None
) -> tuple[list[QueryList], SourceReport, dict[str, set[str]], Any]:
    """A BEIR dataset split: each judged query's judged passages (labels transformed) form its list.

    Returns (lists, report, judged doc ids per query, the Dataset).
    """
    from listrank.datasets import resolve

    ds = resolve(src.path, data_dir=data_dir)
    split = src.split or ds.default_split()
    name = src.name or f"{src.path}:{split}"
    report = SourceReport(name=name, kind="qrels")
    rules = parse_label_map(src.labels)
    qrels = ds.qrels(split)
    judged: dict[str, set[str]] = {qid: set(rels) for qid, rels in qrels.items()}
    found = ds.judged_lists(qrels)
    report.missing_queries, report.missing_docs = len(found.missing_queries), found.missing_docs
    lists: list[QueryList] = []
    for q, graded in found.lists:
        passages = []
        for doc, grade in graded:
            label = apply_label_map(rules, grade)
            if label is None:
                report.dropped_by_label_map += 1
                continue
            passages.append(Passage(doc.id, doc.full_text(), label))
        lists.append(QueryList(q.id, q.text, [Part(name, passages, src.take)]))
    _count(report, lists)
    return lists, report, judged, ds


def _count(report: SourceReport, lists: list[QueryList]) -> None:
    report.queries = len(lists)
    labels = Counter()
    for ql in lists:
        for p in ql.all_passages():
            labels[str(p.label)] += 1
    report.passages = sum(labels.values())
    report.label_counts = dict(sorted(labels.items()))


# --- hard-negative mining ----------------------------------------------------------------------------

Miner = Callable[[Sequence[Document], Sequence[Query], int, Path], dict[str, list[str]]]


def dense_miner(encoder) -> Miner:
    """Top-k documents by the (base) encoder: builds or reuses a dense index under `work_dir`."""

    return index_miner("flat", encoder, "dense-index")


def index_miner(kind: str, encoder=None, folder: str | None = None) -> Miner:
    """Top-k documents by an index of `kind` (listrank.retrieval), built or reused under `work_dir`."""

    def mine(docs, queries, k, work_dir):
        from listrank.retrieval import index_class

        cls = index_class(kind)
        index_dir, _ = cls.ensure(docs, work_dir / (folder or f"{kind}-index"), encoder=encoder, show_progress=True)
        run = cls.open(index_dir).search(list(queries), k, encoder=encoder, show_progress=True)
        return {qid: [d for d, _ in sorted(hits.items(), key=lambda kv: -kv[1])] for qid, hits in run.items()}

    return mine


def bm25_miner() -> Miner:
    """Top-k documents by Lucene BM25 (listrank.bm25; needs the `bm25` extra: pyserini + Java)."""
    try:
        from listrank import bm25
    except ImportError:  # pragma: no cover - bm25.py is part of listrank
        raise ListrankError("BM25 mining needs listrank.bm25") from None

    def mine(docs, queries, k, work_dir):
        index_dir = work_dir / "bm25-index"
        bm25.ensure_index(list(docs), index_dir, progress=True)
        run = bm25.search(index_dir, list(queries), k=k, exclude_query_id=True, progress=True)
        return {qid: [d for d, _ in sorted(hits.items(), key=lambda kv: -kv[1])] for qid, hits in run.items()}

    return mine


def mine_negatives(
    src: SourceConfig,
    lists: list[QueryList],
    judged: dict[str, set[str]],
    corpus: Sequence[Document],
    miner: Miner,
    work_dir: Path,
    seed: int,
) -> int:
    """Add a part of mined negatives (label `src.mine_label`) to each list; returns how many.

    Negatives are a random `mine_count` of the top-`mine_depth` hits that are not judged for the
    query (and are not one of its passages). The mined ids are cached in `work_dir/mined.json`
    (keyed by a fingerprint of the inputs), so a resumed run does not mine again.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    key = _digest([src.mine, src.mine_depth, [d.id for d in corpus[:1000]], len(corpus),
                   [(ql.query_id, ql.query) for ql in lists]])
    cache = work_dir / "mined.json"
    hits: dict[str, list[str]] | None = None
    if cache.exists():
        try:
            cached = json.loads(cache.read_text())
            if cached.get("key") == key:
                hits = cached["hits"]
        except (json.JSONDecodeError, KeyError):
            hits = None
    if hits is None:
        queries = [Query(ql.query_id, ql.query) for ql in lists]
        hits = miner(corpus, queries, src.mine_depth, work_dir)
        from listrank.atomic import atomic_write

        with atomic_write(cache) as fh:
            json.dump({"key": key, "hits": hits}, fh)
    docs = {d.id: d for d in corpus}
    total = 0
    name = f"{src.display_name()}:mined-{src.mine}"
    for ql in lists:
        exclude = judged.get(ql.query_id, set()) | {p.id for p in ql.all_passages()}
        candidates = [d for d in hits.get(ql.query_id, []) if d not in exclude and d in docs]
        rng = random.Random(f"{seed}:{ql.query_id}:mine")
        chosen = rng.sample(candidates, min(src.mine_count, len(candidates)))
        if chosen:
            ql.parts.append(Part(name, [Passage(d, docs[d].full_text(), src.mine_label) for d in chosen]))
            total += len(chosen)
    return total


# --- all sources ---------------------------------------------------------------------------------------

@dataclass
class TrainData:
    """Merged lists of every source, ready to be filtered (`prepare`) and sampled (`group`)."""

    lists: list[QueryList]
    report: DataReport
    source_specs: list[dict[str, Any]]

    def fingerprint(self) -> str:
        """sha256 over every list (ids, texts, labels, parts) and the source options that shape
        sampling; not over paths or names, so moving the data files keeps the fingerprint."""
        digest = hashlib.sha256()
        options = [{k: v for k, v in spec.items() if k not in ("path", "name", "resolved_name", "mine_corpus")}
                   for spec in self.source_specs]
        digest.update(json.dumps(options, sort_keys=True).encode())
        for ql in self.lists:
            digest.update(f"\x01{ql.query_id}\x00{ql.query}".encode())
            for part in ql.parts:
                digest.update(f"\x02{part.take}".encode())
                for p in part.passages:
                    digest.update(f"\x03{p.id}\x00{p.label}\x00{p.text}".encode())
        return digest.hexdigest()

    def prepare(self, loss: str, group_size: int, pad: str) -> None:
        """Drop lists a loss cannot learn from; count padding. Idempotent on the report counts."""
        report = self.report
        from listrank.losses import trait

        # a loss that learns from the order of a list learns nothing from a list with one label
        listwise = trait(loss, "listwise")
        kept = []
        report.skipped_empty = report.skipped_one_label = report.skipped_short = report.padded = 0
        report.one_label_examples = []
        for ql in self.lists:
            n = ql.size()
            if n == 0:
                report.skipped_empty += 1
                continue
            if listwise and len(ql.labels()) == 1:
                report.skipped_one_label += 1
                if len(report.one_label_examples) < 5:
                    report.one_label_examples.append(ql.query_id)
                continue
            if n < group_size:
                if pad == "skip":
                    report.skipped_short += 1
                    continue
                report.padded += 1
            kept.append(ql)
        self.lists = kept
        report.used = len(kept)


def load_sources(
    sources: Sequence[SourceConfig],
    *,
    skip_invalid: bool = False,
    max_queries: int | None = None,
    data_dir: str | os.PathLike | None = None,
    miner_factory: Callable[[str], Miner] | None = None,
    work_dir: Path | None = None,
    seed: int = 0,
) -> TrainData:
    """Load every source, mine where asked, and merge by query id (first source's query text wins)."""
    merged: dict[str, QueryList] = {}
    report = DataReport()
    specs = []
    for src in sources:
        if is_synthetic_file(src.path):
            lists, rep = load_synthetic_source(src, skip_invalid=skip_invalid)
            judged: dict[str, set[str]] = {}
            own_corpus = None
        else:
            if Path(src.path).is_file():
                raise ListrankError(f"{src.path}: a training file must be listrank gen output (JSONL lines with 'passages')")
            lists, rep, judged, ds = load_qrels_source(src, data_dir=data_dir)
            own_corpus = ds
        if max_queries:
            lists = lists[:max_queries]
        if src.mine:
            if miner_factory is None:
                raise ListrankError(f"source {rep.name}: mining needs a miner")
            if src.mine_corpus:
                from listrank.datasets import resolve

                corpus = resolve(src.mine_corpus, data_dir=data_dir).corpus
            elif own_corpus is not None:
                corpus = own_corpus.corpus
            else:
                raise ListrankError(f"source {rep.name}: mine-corpus=DATASET is needed to mine negatives for synthetic lists")
            safe = f"{slug(Path(rep.name).name)}-{_digest(rep.name)[:8]}"
            rep.mined = mine_negatives(src, lists, judged, corpus, miner_factory(src.mine),
                                       (work_dir or Path(".")) / "mining" / safe, seed)
            _count(rep, lists)
        report.sources.append(rep)
        spec = asdict(src)
        spec["resolved_name"] = rep.name
        specs.append(spec)
        for ql in lists:
            if ql.query_id in merged:
                earlier = merged[ql.query_id]
                # Merging is by id; two datasets with numeric ids can reuse one for different queries.
                if " ".join(earlier.query.split()).lower() != " ".join(ql.query.split()).lower():
                    raise ListrankError(
                        f"query id {ql.query_id!r} names different queries in two sources "
                        f"({earlier.query[:60]!r} vs {ql.query[:60]!r} in {rep.name}); sources are merged "
                        "by query id, so train on them separately or give one of them distinct ids"
                    )
                earlier.parts.extend(ql.parts)
            else:
                merged[ql.query_id] = QueryList(ql.query_id, ql.query, list(ql.parts))
    report.lists = len(merged)
    return TrainData(list(merged.values()), report, specs)


# --- sampling -------------------------------------------------------------------------------------------

def epoch_order(n_lists: int, seed: int, epoch: int) -> list[int]:
    """The order in which the lists are visited in `epoch`."""
    gen = torch.Generator().manual_seed(_seed_int(seed, epoch, "order"))
    return torch.randperm(n_lists, generator=gen).tolist()


def sample_group(ql: QueryList, group_size: int, seed: int, epoch: int, index: int) -> list[Passage]:
    """`group_size` passages in random order; a shorter list is padded by repetition."""
    rng = random.Random(_seed_int(seed, epoch, index))
    candidates: list[Passage] = []
    for part in ql.parts:
        if part.take and part.take < len(part.passages):
            candidates.extend(rng.sample(part.passages, part.take))
        else:
            candidates.extend(part.passages)
    if len(candidates) >= group_size:
        return rng.sample(candidates, group_size)
    # Padding by repetition: every passage once, then repeats of a shuffled copy, then shuffled.
    reps = -(-group_size // len(candidates))
    pool = []
    for _ in range(reps):
        pool.extend(rng.sample(candidates, len(candidates)))
    group = pool[:group_size]
    rng.shuffle(group)
    return group


def _seed_int(*parts) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") & ((1 << 63) - 1)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class EpochBatches(torch.utils.data.Dataset):
    """Item k = this rank's share of global batch `start + k` of an epoch, tokenised.

    A global batch holds `batch_size * world_size` consecutive lists of the epoch order; rank r
    takes the r-th slice of `batch_size`. The last incomplete global batch is dropped. Items hold
    the rank's query and passage tokens and the labels of the whole global batch `[B_global, G]`
    (every rank computes the same loss on the gathered embeddings).
    """

    def __init__(self, lists: list[QueryList], *, tokenizer, group_size: int, batch_size: int, world_size: int,
                 rank: int, seed: int, epoch: int, query_max_length: int, passage_max_length: int, start: int = 0):
        self.lists = lists
        self.tokenizer = tokenizer
        self.group_size = group_size
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.epoch = epoch
        self.qlen = query_max_length
        self.plen = passage_max_length
        self.order = epoch_order(len(lists), seed, epoch)
        self.global_batch = batch_size * world_size
        self.n_batches = len(lists) // self.global_batch
        self.start = start

    def __len__(self) -> int:
        return max(0, self.n_batches - self.start)

    def groups(self, batch: int) -> list[tuple[QueryList, list[Passage]]]:
        begin = batch * self.global_batch
        idx = self.order[begin : begin + self.global_batch]
        return [(self.lists[i], sample_group(self.lists[i], self.group_size, self.seed, self.epoch, i)) for i in idx]

    def __getitem__(self, k: int) -> dict[str, Any]:
        batch = self.start + k
        groups = self.groups(batch)
        mine = groups[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        q = self.tokenizer([ql.query for ql, _ in mine], padding=True, truncation=True,
                           max_length=self.qlen, return_tensors="pt")
        p = self.tokenizer([p.text for _, g in mine for p in g], padding=True, truncation=True,
                           max_length=self.plen, return_tensors="pt")
        labels = torch.tensor([[p.label for p in g] for _, g in groups], dtype=torch.float32)
        return {
            "batch": batch,
            "q_input_ids": q["input_ids"], "q_attention_mask": q["attention_mask"],
            "p_input_ids": p["input_ids"], "p_attention_mask": p["attention_mask"],
            "labels": labels,
            "query_ids": [ql.query_id for ql, _ in groups],
        }
