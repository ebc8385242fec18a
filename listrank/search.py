"""Queries -> runs, against any listrank index folder (the kind comes from its meta.json); and
`listrank search`: its options (`SearchOptions`, one field per flag) and what it does (`run_search`).

A run file has no room for metadata, so `search` records no options (its index's meta.json holds
how the documents were encoded, and the queries are encoded the same way). The one exception is a
run of one shard (`listrank index --shard i/n`, searched on the machine that holds it): beside it
goes `RUN.part.json`, which says which shard of which corpus it covers, with which encoder, queries
and k, and the run's sha256, so that `listrank search merge` can join the parts of every shard
into the exact top-k of the whole corpus, and refuse parts that do not belong together."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import InitVar, dataclass
from pathlib import Path
from typing import Sequence

from listrank.atomic import file_sha256
from listrank.errors import ListrankError
from listrank.formats import Query, Run, RunFormat
from listrank.options import batch_size_option, data_dir_option, given_flags, option
from listrank.retrieval import open_index
from listrank.retrieval.base import StaleIndexError, corpus_fingerprint, parse_params
from listrank.retrieval.dense import DenseIndex


@dataclass(kw_only=True)
class SearchOptions:
    """The flags of `listrank search`, one field each (their help and default here; `listrank.options`
    makes the flags); `__post_init__` checks them."""

    dataset: str | None = option(None, "Dataset id or folder whose queries to search.", flags=("--dataset", "-d"))
    split: str | None = option(None, "Only the queries judged in this split [default: test/dev/train].")
    queries: Path | None = option(None, "A queries file (.tsv `qid<TAB>text` or .jsonl) instead of --dataset.",
                                  flags=("--queries", "-q"))
    k: int | None = option(None, "Hits per query [default: 100; `search merge`: the parts' k].", flags=("-k",))
    output: Path = option(help="Run file to write.", flags=("--output", "-o"))
    fmt: RunFormat = option(RunFormat.jsonl, "jsonl (listrank) or trec (6 columns, 1-based ranks).",
                            flags=("--format",))
    model: str | None = option(None, "Query encoder; must be the indexed one [default: read from the index].",
                               flags=("--model", "-m"))
    params: dict = option(help="KEY=VALUE, repeatable: a search parameter of the index's kind (hnsw: ef_search; "
                               "ivfpq: nprobe, rerank; bm25: k1, b) [default: the one recorded at index time].",
                          flags=("--param",), default_factory=dict, cli_type=list[str], cli_default=None,
                          parse=parse_params)
    batch_size: int = batch_size_option()
    data_dir: Path | None = data_dir_option()
    merging: InitVar[bool] = False  # `search merge RUN...`: no queries, the parts give them

    def __post_init__(self, merging: bool) -> None:
        self.output = Path(self.output)
        self.fmt = RunFormat(self.fmt)
        if self.k is not None and self.k < 1:
            raise ListrankError(f"-k must be at least 1, got {self.k}")
        if merging:
            extra = given_flags(self, ["dataset", "split", "queries", "model", "params", "batch_size", "data_dir"])
            if extra:
                raise ListrankError(f"`search merge` takes part runs, -o, -k and --format; not {', '.join(extra)}")
            return
        if (self.dataset is None) == (self.queries is None):
            raise ListrankError("give exactly one of --dataset or --queries")
        if self.k is None:
            self.k = 100


def dense_search(index: DenseIndex, queries: Sequence[Query], k: int = 100, *, encoder=None,
                 model: str | None = None, batch_size: int = 64, params: dict | None = None,
                 show_progress: bool = True) -> Run:
    """Encode the queries with the indexed encoder (or `model` with the index's settings, or check the
    given `encoder`) and take the top-k."""
    return index.search(queries, k, encoder=encoder, model=model, batch_size=batch_size, params=params,
                        show_progress=show_progress)


def search(
    index_dir: str | os.PathLike,
    queries: Sequence[Query],
    k: int = 100,
    *,
    encoder=None,
    model: str | None = None,
    batch_size: int = 64,
    threads: int | None = None,
    params: dict | None = None,
    show_progress: bool = True,
) -> Run:
    """Search any listrank index folder; `params` are the kind's search parameters (e.g. ef_search)."""
    if not queries:
        raise ListrankError("no queries to search")
    if k < 1:
        raise ListrankError(f"-k must be at least 1, got {k}")
    return open_index(index_dir).search(queries, k, encoder=encoder, model=model, batch_size=batch_size,
                                        threads=threads, params=params, show_progress=show_progress)


def check_index_corpus(index_dir: str | os.PathLike, dataset) -> None:
    """Refuse an index that was not built from `dataset`'s corpus (when the dataset has one):
    a changed corpus would get hits for deleted or rewritten documents, scored as if current."""
    if dataset.root is None or not (dataset.root / "corpus.jsonl").exists():
        return
    index = open_index(index_dir)
    shard = index.meta.get("shard")
    if shard is None:
        index.check_corpus(dataset.corpus, dataset.id)
    elif shard.get("corpus") != corpus_fingerprint(dataset.corpus):  # a shard: one part of this corpus
        raise StaleIndexError(f"index {index_dir} is shard {shard.get('index')}/{shard.get('count')} of another corpus "
                              f"than {dataset.id}'s (its corpus fingerprint differs); rebuild it with "
                              "`listrank index --shard i/n`")


def run_search(index: str | os.PathLike, opts: SearchOptions, console=None) -> Run:
    """`listrank search`: search `index` with the queries of `opts.dataset` (judged in `opts.split`)
    or of `opts.queries`, write the run to `opts.output`, print one line to `console`."""
    from listrank.atomic import check_output_file
    from listrank.datasets import resolve
    from listrank.formats import read_queries, trec_unsafe_id, write_run
    from listrank.progress import stderr_console

    console = console or stderr_console
    index, output = Path(index), opts.output
    check_output_file(output, inputs=[opts.queries], what="--output")
    if opts.queries is not None:
        query_list = read_queries(opts.queries)
    else:
        ds = resolve(opts.dataset, opts.data_dir)
        check_output_file(output, inputs=ds.files(), what="--output")
        query_list = ds.queries(opts.split or (ds.default_split() if ds.splits() else None))
    search_params = open_index(index).resolve_params(opts.params, at_search=True)  # an index at all?
    if output.resolve().is_relative_to(index.resolve()):
        raise ListrankError(f"--output {output} is inside the index {index}; write the run elsewhere")
    if opts.dataset is not None:
        check_index_corpus(index, ds)
    if opts.fmt is RunFormat.trec and trec_unsafe_id(q.id for q in query_list) is not None:
        bad = trec_unsafe_id(q.id for q in query_list)
        raise ListrankError(f"query id {bad!r} holds whitespace, which a TREC run (space-separated columns) "
                            "cannot represent; write --format jsonl instead")
    opened = open_index(index)
    part_meta = part_meta_path(output)
    read_part_meta(part_meta)  # a file of that name that listrank did not write stops us before any work
    start = time.perf_counter()
    run = search(index, query_list, opts.k, model=opts.model, batch_size=opts.batch_size, params=search_params)
    write_run(output, run, opts.fmt)
    if "shard" in opened.meta:
        write_part_meta(part_meta, output, opened, query_list, opts.k, search_params)
    elif part_meta.exists():
        part_meta.unlink()  # our record of an earlier shard search into this file; it no longer holds
    console.print(f"searched {len(query_list):,} queries, top {opts.k} → {output} [{opts.fmt.value}, "
                  f"{time.perf_counter() - start:.1f}s]", highlight=False)
    if "shard" in opened.meta:
        shard = opened.meta["shard"]
        console.print(f"this run covers shard {shard['index']}/{shard['count']} of the corpus; join the runs of all "
                      f"{shard['count']} shards with `listrank search merge RUN... -o OUT`", highlight=False)
    return run


# --- runs of shards, merged (`listrank search merge`) -------------------------------------------

PART_META_SUFFIX = ".part.json"
PART_META_WRITER = "listrank search (a run of one index shard)"


def part_meta_path(run_path: str | os.PathLike) -> Path:
    """Where the record of a shard's run goes: beside it, `RUN.part.json`."""
    return Path(str(run_path) + PART_META_SUFFIX)


def queries_fingerprint(queries: Sequence[Query]) -> str:
    """sha256 over the queries' ids and texts (in id order): the parts of one merge searched the same queries."""
    digest = hashlib.sha256()
    for q in sorted(queries, key=lambda q: q.id):
        for part in (q.id, q.text):
            digest.update(part.encode("utf-8"))
            digest.update(b"\x00")
    return digest.hexdigest()


def read_part_meta(path: Path) -> dict | None:
    """A shard run's record, None when there is none; an error for a file of that name that is not one
    (listrank never overwrites or trusts what it did not write)."""
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ListrankError(f"{path}: not a listrank shard-run record ({e}); move it away") from None
    if not isinstance(meta, dict) or meta.get("written_by") != PART_META_WRITER:
        raise ListrankError(f"{path} exists and was not written by `listrank search`; move it away")
    return meta


def write_part_meta(path: Path, run_path: Path, index: DenseIndex, queries: Sequence[Query], k: int,
                    params: dict) -> None:
    from listrank import __version__
    from listrank.atomic import atomic_write

    meta = {
        "written_by": PART_META_WRITER,
        "listrank_version": __version__,
        "run": run_path.name,
        "run_sha256": file_sha256(run_path),
        "shard": index.meta["shard"],
        "index": index.name,
        "encoder": index.meta.get("encoder"),
        "precision": index.meta.get("precision"),
        "params": params,
        "k": k,
        "queries": queries_fingerprint(queries),
        "n_queries": len(queries),
    }
    with atomic_write(path) as fh:
        json.dump(meta, fh, indent=2, sort_keys=True)
        fh.write("\n")


def _check_parts(parts: Sequence[Path]) -> list[dict]:
    """Each part's record, in shard order, once it is clear they are the runs of shards 0..n-1 of one
    corpus, searched alike, and unchanged since."""
    metas = []
    for part in parts:
        meta = read_part_meta(part_meta_path(part))
        if meta is None:
            raise ListrankError(f"{part} has no {part_meta_path(part).name} beside it: only runs that `listrank search` "
                                "wrote from one shard (`listrank index --shard i/n`) can be merged")
        if meta.get("run_sha256") != file_sha256(part):
            raise ListrankError(f"{part} changed after `listrank search` wrote it (its sha256 is not the recorded "
                                "one); search that shard again")
        metas.append({**meta, "path": part})
    metas.sort(key=lambda m: m["shard"]["index"])
    count = metas[0]["shard"]["count"]
    got = [m["shard"]["index"] for m in metas]
    if got != list(range(count)) or any(m["shard"]["count"] != count for m in metas):
        raise ListrankError(f"search merge: expected the runs of shards 0..{count - 1} of {count} once each, got {got}")
    first = metas[0]
    for m in metas[1:]:
        for key, what in (("corpus", "a shard of another corpus"), ("n_docs_total", "a shard of another corpus")):
            if m["shard"][key] != first["shard"][key]:
                raise ListrankError(f"search merge: {m['path']} is {what} than {first['path']}")
        for key, what in (("encoder", "another encoder"), ("precision", "another precision"),
                          ("index", "another index kind"), ("params", "other search parameters"),
                          ("queries", "other queries"), ("k", "another -k")):
            if m[key] != first[key]:
                raise ListrankError(f"search merge: {m['path']} was searched with {what} than {first['path']} "
                                    f"({m[key]!r} vs {first[key]!r})")
    return metas


def merge_runs(parts: Sequence[str | os.PathLike], k: int | None = None) -> tuple[Run, dict]:
    """The top-k of the whole corpus from the runs of its shards (`k`: at most the parts' k, which is
    the default). Exact for flat shards: every document of the corpus is in one shard, and each part
    holds that shard's top-k, so the union holds the corpus's top-k. Equal scores keep the corpus's
    row order (shard, then rank), as a one-process search does. Returns the run and the parts' record."""
    from listrank.formats import read_run

    parts = [Path(p) for p in parts]
    if not parts:
        raise ListrankError("search merge: give the run files of the shards")
    metas = _check_parts(parts)
    part_k = metas[0]["k"]
    k = part_k if k is None else k
    if k > part_k:
        raise ListrankError(f"search merge: the parts hold the top {part_k} of each shard; the top {k} of the corpus "
                            f"needs shards searched with -k {k} or more")
    runs = [read_run(m["path"]) for m in metas]
    qids = set(runs[0])
    if len(qids) != metas[0]["n_queries"]:
        raise ListrankError(f"search merge: {metas[0]['path']} has {len(qids)} queries, its record says {metas[0]['n_queries']}")
    merged: Run = {}
    for qid in runs[0]:
        pooled: list[tuple[float, int, int, str]] = []
        seen: set[str] = set()
        for shard, (meta, run) in enumerate(zip(metas, runs)):
            if qid not in run:
                raise ListrankError(f"search merge: {meta['path']} has no hits for query {qid!r}")
            for rank, (doc, score) in enumerate(run[qid].items()):
                if doc in seen:
                    raise ListrankError(f"search merge: document {doc!r} is in two shards' runs ({meta['path']})")
                seen.add(doc)
                pooled.append((-score, shard, rank, doc))
        pooled.sort()
        merged[qid] = {doc: -neg for neg, _, _, doc in pooled[:k]}
    for meta, run in zip(metas[1:], runs[1:]):
        if set(run) != qids:
            raise ListrankError(f"search merge: {meta['path']} holds other queries than {metas[0]['path']}")
    return merged, {key: metas[0][key] for key in ("shard", "index", "encoder", "precision", "params", "k")}


def run_search_merge(parts: Sequence[str | os.PathLike], opts: SearchOptions, console=None) -> Run:
    """`listrank search merge RUN... -o OUT`: write the exact top-k of the whole corpus from its shards' runs."""
    from listrank.atomic import check_output_file
    from listrank.formats import write_run
    from listrank.progress import stderr_console

    console = console or stderr_console
    parts = [Path(p) for p in parts]
    check_output_file(opts.output, inputs=parts + [part_meta_path(p) for p in parts], what="--output")
    start = time.perf_counter()
    run, shared = merge_runs(parts, opts.k)
    write_run(opts.output, run, opts.fmt)
    k = opts.k or shared["k"]
    console.print(f"merged the runs of {shared['shard']['count']} shards ({shared['shard']['n_docs_total']:,} documents), "
                  f"{len(run):,} queries, top {k} → {opts.output} [{opts.fmt.value}, {time.perf_counter() - start:.1f}s]",
                  highlight=False)
    return run
