"""Queries -> runs, against any listrank index folder (the kind comes from its meta.json); and
`listrank search`: its options (`SearchOptions`, one field per flag) and what it does (`run_search`).

A run file has no room for metadata, so `search` records no options (its index's meta.json holds
how the documents were encoded, and the queries are encoded the same way)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from listrank.errors import ListrankError
from listrank.formats import Query, Run, RunFormat
from listrank.options import batch_size_option, data_dir_option, option
from listrank.retrieval import open_index
from listrank.retrieval.base import parse_params
from listrank.retrieval.dense import DenseIndex


@dataclass(kw_only=True)
class SearchOptions:
    """The flags of `listrank search`, one field each (their help and default here; `listrank.options`
    makes the flags); `__post_init__` checks them."""

    dataset: str | None = option(None, "Dataset id or folder whose queries to search.", flags=("--dataset", "-d"))
    split: str | None = option(None, "Only the queries judged in this split [default: test/dev/train].")
    queries: Path | None = option(None, "A queries file (.tsv `qid<TAB>text` or .jsonl) instead of --dataset.",
                                  flags=("--queries", "-q"))
    k: int = option(100, "Hits per query.", flags=("-k",))
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

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        self.fmt = RunFormat(self.fmt)
        if (self.dataset is None) == (self.queries is None):
            raise ListrankError("give exactly one of --dataset or --queries")


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
    open_index(index_dir).check_corpus(dataset.corpus, dataset.id)


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
    start = time.perf_counter()
    run = search(index, query_list, opts.k, model=opts.model, batch_size=opts.batch_size, params=search_params)
    write_run(output, run, opts.fmt)
    console.print(f"searched {len(query_list):,} queries, top {opts.k} → {output} [{opts.fmt.value}, "
                  f"{time.perf_counter() - start:.1f}s]", highlight=False)
    return run
