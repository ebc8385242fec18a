"""Dataset -> (cached) index -> run: what `listrank eval --dataset X` does when given no run.

Indexes are cached under `<cache>/indexes/<dataset>-<corpus sha256>/<retriever>`: the key is the
corpus file's content, not the id as typed, so two different folders reached by the same relative
id never share an entry. An entry is reused only when its fingerprint (corpus, and for dense the
encoder's weights/pooling/normalisation/max length) matches. Concurrent processes are safe: an
entry is checked and built under an exclusive lock (`<entry>.lock`) and searched under a shared one,
so no process replaces an index another one is reading, and each search re-checks the corpus.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from listrank.datasets import Dataset, cache_dir
from listrank.formats import Run, slug
from listrank.index import kind_option, params_option  # the flags `index` has too
from listrank.errors import ListrankError
from listrank.options import EncoderOptions, data_dir_option, given_flags, option, recorded
from listrank.progress import stderr_console
from listrank.retrieval import index_class
from listrank.search import search

if TYPE_CHECKING:  # importing the encoder imports torch: only where one is built
    from listrank.encoder import Encoder


@dataclass
class DenseSettings(EncoderOptions):
    """How a dense retriever encodes (the `EncoderOptions` flags `index` and `eval` share) and, for
    a cached index, its kind and build parameters."""

    kind: str = "flat"  # a dense index kind of listrank.retrieval: flat, hnsw, ivfpq
    params: dict | None = None  # its build parameters (`--param key=value`)

    def encoder(self) -> "Encoder":
        from listrank.encoder import Encoder

        return Encoder(self.model, pooling=self.pooling, normalize=self.normalize, max_length=self.max_length,
                       precision=self.precision)


def _corpus_key(dataset: Dataset) -> str:
    with open(dataset.corpus_file, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()[:16]


def index_cache_dir(dataset: Dataset, retriever: str) -> Path:
    """The cache entry for this corpus *content* (not the id as typed) and retriever."""
    base = Path(os.environ.get("LISTRANK_INDEX_CACHE") or cache_dir() / "indexes")
    name = slug(Path(dataset.id).name if dataset.root is not None else dataset.id)
    return base / f"{name}-{_corpus_key(dataset)}" / slug(retriever)


@contextlib.contextmanager
def entry_lock(index_dir: Path, exclusive: bool = True):
    """An flock on `<index_dir>.lock`: exclusive to check and build, shared to read."""
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(index_dir.with_name(index_dir.name + ".lock"), "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield fh
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _params_slug(params: dict | None) -> str:
    return "".join(f"-{k}{v}" for k, v in sorted((params or {}).items()))


def _cache_entry(dataset: Dataset, kind: str, encoder: "Encoder | None", params: dict | None) -> Path:
    cls = index_class(kind)
    if not cls.needs_encoder:
        return index_cache_dir(dataset, f"{cls.name}-flat{_params_slug(cls.resolve_params(params))}"
                               if cls.name != "bm25" else "bm25-flat")
    spec = encoder.spec()
    # Precision is not part of the model's identity (a bf16 index may be searched with fp32 queries),
    # but a cached index must have been encoded the way this run asks for.
    precision = "bf16" if encoder.use_bf16 else "fp32"
    prefix = "dense" if cls.name == "flat" else f"{cls.name}{_params_slug(cls.resolve_params(params))}"
    return index_cache_dir(dataset, f"{prefix}-{spec.weights_sha256[:12]}-{spec.pooling}"
                                    f"-{'norm' if spec.normalize else 'raw'}-{spec.max_length}-{precision}")


def _dense_cache_dir(dataset: Dataset, encoder: "Encoder") -> Path:
    return _cache_entry(dataset, "flat", encoder, None)


def ensure_index(dataset: Dataset, kind: str, *, encoder: "Encoder | None" = None, params: dict | None = None,
                 batch_size: int = 64, index_dir: Path | None = None, show_progress: bool = True) -> Path:
    """Reuse the cached index of `kind` for this dataset (and encoder and parameters), or build it."""
    cls = index_class(kind)
    index_dir = index_dir or _cache_entry(dataset, kind, encoder, params)
    _, built = cls.ensure(dataset.corpus if cls.needs_encoder else (), index_dir, encoder=encoder, params=params,
                          corpus_file=dataset.corpus_file, batch_size=batch_size, show_progress=show_progress,
                          dataset=dataset.id)
    if not built:
        stderr_console.print(f"reusing index {index_dir}", highlight=False)
    return index_dir


def ensure_dense_index(dataset: Dataset, encoder: "Encoder", batch_size: int = 64,
                       index_dir: Path | None = None, show_progress: bool = True, kind: str = "flat",
                       params: dict | None = None) -> Path:
    """Reuse the cached dense index for this dataset and encoder, or build it."""
    return ensure_index(dataset, kind, encoder=encoder, params=params, batch_size=batch_size,
                        index_dir=index_dir, show_progress=show_progress)


def ensure_bm25_index(dataset: Dataset, index_dir: Path | None = None, show_progress: bool = True) -> Path:
    return ensure_index(dataset, "bm25", index_dir=index_dir, show_progress=show_progress)


def retrieve(
    dataset: Dataset,
    split: str,
    *,
    use_bm25: bool = False,
    dense: DenseSettings | None = None,
    k: int = 1000,
    show_progress: bool = True,
    kind: str | None = None,
    search_params: dict | None = None,
) -> Run:
    """Index the dataset's corpus (cached) and search the queries judged in `split`.

    `kind` is any index kind (default: bm25 with `use_bm25`, else `dense.kind`); `search_params`
    are its search-time parameters."""
    queries = dataset.queries(split)
    dense = dense or DenseSettings()
    kind = kind or ("bm25" if use_bm25 else dense.kind)
    cls = index_class(kind)
    encoder = dense.encoder() if cls.needs_encoder else None
    params = dense.params if cls.needs_encoder else None
    index_dir = _cache_entry(dataset, kind, encoder, params)
    with entry_lock(index_dir) as lock:
        ensure_index(dataset, kind, encoder=encoder, params=params, batch_size=dense.batch_size,
                     index_dir=index_dir, show_progress=show_progress)
        fcntl.flock(lock.fileno(), fcntl.LOCK_SH)  # others may read it too, none may replace it
        if cls.needs_encoder:
            cls.open(index_dir).check_corpus(dataset.corpus, dataset.id)
        return search(index_dir, queries, k, encoder=encoder, batch_size=dense.batch_size, params=search_params,
                      show_progress=show_progress)


# --- `listrank eval`: retrieve if no run, evaluate each run, compare, report ------------------


@dataclass(kw_only=True)
class EvalOptions(EncoderOptions):
    """The flags of `listrank eval`, one field each (their help and default here; `listrank.options`
    makes the flags). `__post_init__` checks each value, `check_runs` the flags against the run
    files; `run_eval` records them (`listrank.options.recorded`) under "options" in the -o JSON."""

    dataset: str = option(help="Dataset id or BEIR folder with the qrels.", flags=("--dataset", "-d"))
    split: str | None = option(None, "Qrels split [default: test, else dev, else train].")
    qrels: Path | None = option(None, "A qrels file (BEIR TSV or TREC) instead of the dataset's split.")
    metrics: str | None = option(None, "Comma-separated, e.g. ndcg@10,mrr@10,recall@100,map@100,p@10.")
    relevance_level: int = option(1, "Minimum grade counted relevant by binary metrics (TREC DL: 2).")
    keep_self_hits: bool = option(False, "Keep hits whose doc id equals the query id (BEIR drops them).",
                                  flags=("--keep-self-hits",))
    complete: bool = option(False, "Score judged queries missing from a run as 0 (trec_eval -c).",
                            flags=("--complete",))
    output: Path | None = option(None, "Write metrics (aggregate + per query + tests) as JSON.",
                                 flags=("--output", "-o"), record=False)
    plot: Path | None = option(None, "PNG of per-query deltas of the first metric (needs two runs); with "
                                     "--level-audit: score by level.", record=False)
    permutations: int = option(10_000, "Randomization-test permutations.")
    bm25: bool = option(False, "With no run: retrieve with Lucene BM25 (k1=0.9, b=0.4).", flags=("--bm25",))
    kind: str | None = kind_option()
    params: dict = params_option()
    save_run: Path | None = option(None, "With no run: also write the retrieved run here.", record=False)
    k: int | None = option(None, "With no run: hits per query [default: 1000].", flags=("-k",))
    level_audit: bool = option(False, "Audit synthetic levels instead: how well the encoder's scores order each "
                                      "query's own passages by level (--dataset: a gen --export-beir folder or gen "
                                      "JSONL; -o JSON, --plot PNG of score by level).", flags=("--level-audit",))
    data_dir: Path | None = data_dir_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        written = [p for p in (self.output, self.plot, self.save_run) if p is not None]
        if len({Path(p).resolve() for p in written}) < len(written):
            raise ListrankError("--output, --plot and --save-run must be different files")

    def check_runs(self, runs: list[Path] | None) -> None:
        """The flags against the run files given (none: eval retrieves)."""
        if self.level_audit:
            if runs or self.bm25:
                raise ListrankError("--level-audit scores the dataset's own lists with a dense encoder; "
                                    "it takes no run files and no --bm25")
            return
        if runs:
            given = given_flags(self, ("model", "pooling", "normalize", "max_length", "batch_size", "precision",
                                       "bm25", "save_run", "k", "kind", "params"))
            if given:
                raise ListrankError(f"{', '.join(given)} only apply when eval retrieves (no run files); "
                                    "these runs are already retrieved")
        if self.plot and len(runs or []) + (0 if runs else 1) < 2:
            raise ListrankError("--plot needs two or more runs (it shows per-query deltas against the first)")


def run_eval(runs: list[Path] | None, opts: EvalOptions, out=None, err=None):
    """`listrank eval`: the level audit (`--level-audit`), or `evaluate_runs` (retrieving first when
    no run is given), with the flags checked and recorded in the -o JSON."""
    from listrank.atomic import check_output_file

    inputs = [*(runs or []), opts.qrels]
    for path, what in ((opts.output, "--output"), (opts.plot, "--plot"), (opts.save_run, "--save-run")):
        check_output_file(path, inputs=inputs, what=what)
    opts.check_runs(runs)
    if opts.level_audit:
        return level_audit(opts.dataset, opts.split, opts.qrels, opts.dense_settings(), output=opts.output,
                           plot=opts.plot, data_dir=opts.data_dir, out=out, err=err, options=recorded(opts))
    return evaluate_runs(opts.dataset, runs, split=opts.split, qrels=opts.qrels, metrics=opts.metrics,
                         relevance_level=opts.relevance_level, keep_self_hits=opts.keep_self_hits,
                         complete=opts.complete, output=opts.output, plot=opts.plot,
                         permutations=opts.permutations, bm25=opts.bm25, kind=opts.kind, params=opts.params,
                         save_run=opts.save_run, k=opts.k, dense=opts.dense_settings(), data_dir=opts.data_dir,
                         out=out, err=err, options=recorded(opts))


def index_kind(kind: str | None, bm25: bool) -> str:
    """The index kind `--kind`/`--bm25` ask for (default flat; bm25 with `--bm25`)."""
    from listrank.retrieval import available

    if kind is None:
        return "bm25" if bm25 else "flat"
    if bm25 and kind != "bm25":
        raise ListrankError(f"--bm25 and --kind {kind} disagree; give one of them")
    if kind not in available() and kind not in ("dense", "sharded"):
        raise ListrankError(f"unknown --kind {kind!r}; choose one of {', '.join(available())}")
    return index_class(kind).name


RUN_SUFFIXES = (".run.jsonl", ".run.trec", ".jsonl", ".trec", ".run", ".txt")


def _short_run_name(path: Path) -> str:
    name = path.name
    for suffix in RUN_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def run_name(path: Path, all_paths: list[Path]) -> str:
    """The file name without its run suffix (`sycl.run.jsonl` -> `sycl`); the file name, or the
    full path, when that would not tell two runs apart."""
    for key in (_short_run_name, lambda p: p.name):
        names = [key(p) for p in all_paths]
        if names.count(key(path)) == 1:
            return key(path)
    return str(path)


def _refuse_shard_run(path) -> None:
    """A run of one index shard is not a run of the corpus: its scores would read as a retriever that
    misses every document of the other shards."""
    from listrank.search import part_meta_path, read_part_meta

    meta = read_part_meta(part_meta_path(path))
    if meta is not None:
        shard = meta["shard"]
        raise ListrankError(f"{path} is the run of shard {shard['index']}/{shard['count']} only "
                            f"({shard['stop'] - shard['start']:,} of {shard['n_docs_total']:,} documents): join the "
                            "shards' runs with `listrank search merge` and evaluate that")


def evaluate_runs(
    dataset: str,
    runs: list[Path] | None,
    *,
    split: str | None = None,
    qrels: Path | None = None,
    metrics: str | None = None,
    relevance_level: int = 1,
    keep_self_hits: bool = False,
    complete: bool = False,
    output: Path | None = None,
    plot: Path | None = None,
    permutations: int = 10_000,
    bm25: bool = False,
    kind: str | None = None,
    params: dict | None = None,
    save_run: Path | None = None,
    k: int | None = None,
    dense: DenseSettings | None = None,
    data_dir: Path | None = None,
    out=None,
    err=None,
    options: dict | None = None,
) -> list:
    """`listrank eval` with its flags checked: retrieve when no run is given (the cached index of
    `retrieve`), evaluate each run against the judgements, compare them when there are several,
    print warnings (to `err`) and the table (to `out`), write `output` JSON and one `plot` per run
    after the first; `options` (the command's flags) are recorded in the JSON. Returns the per-run
    results (`listrank.evaluate.RunResult`)."""
    from rich.markup import escape

    from listrank import evaluate as ev
    from listrank.atomic import check_output_file
    from listrank.datasets import resolve
    from listrank.encoder import display_name
    from listrank.formats import read_run, write_run

    err = err or stderr_console
    out = out or stderr_console
    dense = dense or DenseSettings()
    ds = resolve(dataset, data_dir)
    for path, what in ((output, "--output"), (plot, "--plot"), (save_run, "--save-run")):
        check_output_file(path, inputs=ds.files(), what=what)
    judgements, split, qrels_name = ds.judgements(split, qrels)
    metric_list = ev.parse_metrics(metrics)
    settings = dict(relevance_level=relevance_level, ignore_identical_ids=not keep_self_hits, complete=complete,
                    qrels_name=qrels_name)
    results = []
    if not runs:
        kind = index_kind(kind, bm25)
        cls = index_class(kind)
        given = params or {}
        build = {k_: v for k_, v in given.items() if k_ in cls.build_params}
        search_params = cls.resolve_params({k_: v for k_, v in given.items() if k_ not in cls.build_params},
                                           at_search=True)
        name = "BM25" if kind == "bm25" else display_name(dense.model)
        if kind not in ("flat", "bm25"):
            name += f" ({kind})"
        dense.kind, dense.params = (kind, cls.resolve_params(build)) if cls.needs_encoder else ("flat", None)
        run = retrieve(ds, split, kind=kind, k=k or 1000, dense=dense, search_params=search_params)
        if save_run:
            write_run(save_run, run)
        results.append(ev.evaluate(run, judgements, metric_list, name=name, **settings))
    for path in runs or []:
        _refuse_shard_run(path)
        results.append(ev.evaluate(read_run(path), judgements, metric_list, name=run_name(path, runs), **settings))
    comparison = ev.compare(results, permutations=permutations) if len(results) > 1 else None
    for result in results:
        for warning in result.warnings:
            err.print(f"[yellow]warning:[/] {escape(result.name)}: {escape(warning)}", highlight=False)
    out.print(ev.results_table(results, comparison, title=f"{qrels_name} ({results[0].n_queries} queries)"))
    if output:
        ev.write_results_json(output, results, comparison, options=options)
        err.print(f"metrics → {output}", highlight=False)
    if plot:
        if len(results) < 2:
            raise ListrankError("--plot needs two or more runs (it shows per-query deltas against the first)")
        for other in results[1:]:
            target = plot if len(results) == 2 else plot.with_name(f"{plot.stem}.{slug(other.name)}{plot.suffix}")
            ev.plot_per_query_delta(results[0], other, results[0].metrics[0], target)
            err.print(f"plot → {target}", highlight=False)
    return results


def level_audit(dataset: str, split: str | None, qrels: Path | None, dense: DenseSettings,
                output: Path | None = None, plot: Path | None = None, data_dir: Path | None = None,
                out=None, err=None, options: dict | None = None):
    """`eval --level-audit`: score each query against its own synthetic passages (listrank.audit),
    print the warnings (`err`) and tables (`out`), write `output` JSON (with `options`, the
    command's flags) and the `plot` PNG."""
    from rich.markup import escape

    from listrank import audit

    err = err or stderr_console
    out = out or stderr_console
    lists = audit.load_lists(dataset, split, data_dir, qrels)
    result = audit.level_audit(lists, dense.encoder(), batch_size=dense.batch_size, show_progress=True)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    out.print(audit.audit_tables(result))
    if output:
        err.print(f"level audit → {audit.write_audit_json(output, result, options=options)}", highlight=False)
    if plot:
        err.print(f"plot → {audit.plot_levels(result, plot)}", highlight=False)
    return result
