"""The `listrank` command line: one small function per subcommand that parses flags and calls the core.

No logic a Python user would also need lives here; see the modules each command calls.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from listrank import __version__
from listrank.errors import ListrankError
from listrank.formats import RunFormat
from listrank.gen.generate import GenConfig
from listrank.options import from_options, with_config_options
from listrank.train import cli_support
from listrank.train.config import TrainConfig

app = typer.Typer(
    name="listrank",
    help="""Train dense retrievers on LLM-written graded passage lists (SyCL) and evaluate them honestly.

Examples:

```
listrank gen queries.tsv -o synth.jsonl                       # graded synthetic passages (LLM)
listrank train synth.jsonl --loss wasserstein -o models/sycl  # list-wise training
listrank eval --dataset beir/scifact --model models/sycl      # index + search + evaluate
listrank eval --dataset beir/scifact --bm25                   # the Lucene BM25 baseline
listrank COMMAND --help                                       # each command's flags and examples
```
""",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
# Tables go to stdout; off a terminal rich would assume 80 columns and squeeze them.
stdout_console = Console(width=None if sys.stdout.isatty() else 160)


def command(*args, **kwargs) -> Callable:
    """`app.command` that turns a ListrankError into one red line and a non-zero exit (no traceback)."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*a, **k):
            try:
                return fn(*a, **k)
            except ListrankError as e:
                console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True, highlight=False)
                raise typer.Exit(e.exit_code) from None

        return app.command(*args, **kwargs)(wrapper)

    return decorate


def _version(value: bool) -> None:
    if value:
        typer.echo(f"listrank {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """listrank: graded synthetic lists -> list-wise training -> dense retrieval -> honest evaluation."""


# --- subcommands ----------------------------------------------------------------------------
# (each one below parses its flags and calls the module that does the work)


@command("gen")
@with_config_options(GenConfig)
def gen(
    queries: Path | None = typer.Argument(None, help="Queries file: TSV `qid<TAB>text` or JSONL `{\"_id\", \"text\"}`."),
    **options,  # one flag per GenConfig field (listrank/gen/generate.py declares them, with their help)
) -> None:
    """Write LLM passages at graded relevance levels (3 perfectly relevant ... 0 irrelevant) for queries.

    Examples:

    ```
    listrank gen queries.tsv -o synth.jsonl                       # llama.cpp + bundled SmolLM2
    listrank gen queries.tsv -o synth.jsonl --backend vllm --model Qwen/Qwen2.5-7B-Instruct --tensor-parallel-size 2
    listrank gen --dataset beir/scifact --split train -o scifact.synth.jsonl --export-beir scifact_synth/
    listrank gen queries.tsv -o part0.jsonl --shard 0/4           # machine 0 of 4 (docs/scaling.md)
    cat part{0..3}.jsonl > synth.jsonl                            # merge; not part*.jsonl: that takes the rejects files too
    listrank gen --dataset beir/scifact --split train --first 32 -o demo.jsonl --per-level 1   # a fixed slice
    ```
    """
    from listrank.gen.generate import generate, queries_for, summary_table

    config = from_options(GenConfig, options)
    queries_list, stats = queries_for(config, queries)
    if stats.skipped:
        console.print(f"[yellow]warning:[/] skipped {stats.skipped} invalid query line(s), e.g. {escape(stats.first_errors[0])}")
    summary = generate(config, queries_list)
    console.print(summary_table(summary))


# --- shared options ---------------------------------------------------------------------------

DATA_DIR = typer.Option(None, "--data-dir", help="Folder of BEIR-layout datasets (before $LISTRANK_DATA and the cache).")
MODEL = typer.Option(None, "--model", "-m", help="HF encoder id or local path [default: bundled all-MiniLM-L6-v2].")
POOLING = typer.Option(None, "--pooling", help="mean or cls [default: the model's sentence-transformers setting, else mean].")
NORMALIZE = typer.Option(None, "--normalize/--no-normalize", help="L2-normalise embeddings [default: the model's setting].")
MAX_LENGTH = typer.Option(256, "--max-length", help="Max tokens per text (the SyCL paper uses 256).")
BATCH_SIZE = typer.Option(64, "--batch-size", help="Texts per encoder batch.")
PRECISION = typer.Option("auto", "--precision", help="auto (bf16 where the hardware runs it natively), bf16 or fp32.")
INDEX_KIND = typer.Option(None, "--kind", "--index-kind", help="Index kind: flat (exact), hnsw, ivfpq (faiss) or bm25 (Lucene) [default: flat; bm25 with --bm25].")
INDEX_PARAM = typer.Option(None, "--param", help="KEY=VALUE, repeatable: a parameter of the index kind (hnsw: m, ef_construction, ef_search; ivfpq: nlist, m, nbits, nprobe, rerank; bm25: k1, b). See docs/scaling.md.")


def _dense_settings(model, pooling, normalize, max_length, batch_size, precision):
    from listrank.pipeline import DenseSettings

    return DenseSettings(model=model, pooling=pooling, normalize=normalize, max_length=max_length,
                         batch_size=batch_size, precision=precision)


@command("index")
def index_cmd(
    merge: Optional[list[str]] = typer.Argument(None, help="`merge SHARD...`: join the folders of `index --shard i/n` into one index at -o.", show_default=False),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset id (beir/scifact), BEIR folder or corpus.jsonl."),
    output: Path = typer.Option(..., "--output", "-o", help="Index folder to write (replaced atomically if listrank wrote it; any other non-empty folder is refused)."),
    bm25: bool = typer.Option(False, "--bm25", help="Build a Lucene BM25 index (pyserini) instead of a dense one (= --kind bm25)."),
    kind: Optional[str] = INDEX_KIND,
    param: Optional[list[str]] = INDEX_PARAM,
    dtype: str = typer.Option("float32", "--dtype", help="Dense: store embeddings as float32 or float16 (half the disk and memory; memory-mapped either way)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n: encode only the i-th of n consecutive parts of the corpus (then `listrank index merge`). Under torchrun each process takes its part by itself."),
    model: Optional[str] = MODEL,
    pooling: Optional[str] = POOLING,
    normalize: Optional[bool] = NORMALIZE,
    max_length: int = MAX_LENGTH,
    batch_size: int = BATCH_SIZE,
    precision: str = PRECISION,
    data_dir: Optional[Path] = DATA_DIR,
) -> None:
    """Index a corpus: dense embeddings (flat exact search, HNSW or IVF-PQ) or Lucene BM25.

    Examples:

    ```
    listrank index --dataset beir/scifact -o runs/scifact.idx
    listrank index --dataset beir/scifact --model models/sycl -o runs/scifact.sycl.idx
    listrank index --dataset beir/scifact --bm25 -o runs/scifact.bm25.idx
    listrank index --dataset msmarco --kind ivfpq --param nprobe=64 --dtype float16 -o runs/msmarco.ivfpq
    listrank index --dataset msmarco --shard 0/4 -o parts/0      # on 4 machines, 0/4 .. 3/4
    listrank index merge parts/0 parts/1 parts/2 parts/3 -o runs/msmarco.idx   # --kind sharded (default), flat, hnsw, ivfpq
    torchrun --nproc-per-node 4 -m listrank index --dataset msmarco -o runs/msmarco.idx
    ```
    """
    from listrank.atomic import check_output_folder
    from listrank.datasets import resolve
    from listrank.formats import read_corpus
    from listrank.pipeline import index_kind
    from listrank.retrieval import index_class, parse_params

    start = time.perf_counter()
    _check_precision(precision)
    params = parse_params(param)
    if merge:
        if merge[0] != "merge":
            raise ListrankError(f"unexpected argument {merge[0]!r}: `listrank index` takes --dataset, or `merge SHARD...`")
        return _index_merge(merge[1:], output, kind or "sharded", params, dtype if dtype != "float32" else None,
                            (dataset, shard, bm25), start)
    if dataset is None:
        raise ListrankError("give --dataset (or `listrank index merge SHARD... -o OUT`)")
    kind = index_kind(kind, bm25)
    cls = index_class(kind)
    options = {}
    if not cls.needs_encoder:
        if (model, pooling, normalize, max_length, batch_size, precision, dtype, shard) != (
                None, None, None, 256, 64, "auto", "float32", None):
            raise ListrankError("--bm25 builds a Lucene index: --model, --pooling, --normalize, --max-length, "
                                "--batch-size, --precision, --dtype and --shard do not apply")
    else:
        options["dtype"] = dtype
    cls.resolve_params(params)  # a typo fails before any encoding
    corpus_path = Path(dataset)
    if corpus_path.is_file():
        check_output_folder(output, inputs=[corpus_path], what="--output")
        docs, name = read_corpus(corpus_path), str(corpus_path)
    else:
        ds = resolve(dataset, data_dir)
        check_output_folder(output, inputs=[ds.root or ds.queries_file], what="--output")
        docs, name, corpus_path = ds.corpus, ds.id, ds.corpus_file
    if not cls.needs_encoder:
        cls.build(docs, output, params=params, corpus_file=corpus_path, dataset=name)
        console.print(f"indexed {len(docs):,} documents of {name} → {output} [BM25, {time.perf_counter() - start:.1f}s]",
                      highlight=False)
        return
    encoder = _dense_settings(model, pooling, normalize, max_length, batch_size, precision).encoder()
    from listrank.encoder import display_name
    from listrank.retrieval import distributed

    if distributed.world_size() > 1:
        if shard:
            raise ListrankError("under torchrun each process takes its own shard: drop --shard")
        distributed.index_under_torchrun(cls, encoder, docs, output, params=params, dtype=dtype,
                                         batch_size=batch_size, dataset=name)
        if distributed.rank() != 0:
            return
    else:
        from listrank.gen.generate import parse_shard

        cls.build(docs, output, encoder=encoder, params=params, batch_size=batch_size, dataset=name,
                  shard=parse_shard(shard) if shard else None, **options)
    what = f"{kind}, {display_name(encoder.model_path)}, {'bf16' if encoder.use_bf16 else 'fp32'}"
    part = f" (shard {shard})" if shard else ""
    console.print(f"indexed {len(docs):,} documents of {name}{part} → {output} [{what}, "
                  f"{time.perf_counter() - start:.1f}s]", highlight=False)


def _index_merge(parts, output, kind, params, dtype, others, start) -> None:
    from listrank.atomic import check_output_folder
    from listrank.retrieval.sharded import merge

    if any(v for v in others):
        raise ListrankError("`index merge` takes shard folders, -o, --kind, --param and --dtype; "
                            "--dataset, --shard and --bm25 do not apply")
    check_output_folder(output, inputs=parts, what="--output")
    merge(parts, output, kind=kind, params=params, dtype=dtype)
    console.print(f"merged {len(parts)} shards → {output} [{kind}, {time.perf_counter() - start:.1f}s]",
                  highlight=False)


@command("search")
def search_cmd(
    index: Path = typer.Argument(..., help="Index folder written by `listrank index`."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset id or folder whose queries to search."),
    split: Optional[str] = typer.Option(None, "--split", help="Only the queries judged in this split [default: test/dev/train]."),
    queries: Optional[Path] = typer.Option(None, "--queries", "-q", help="A queries file (.tsv `qid<TAB>text` or .jsonl) instead of --dataset."),
    k: int = typer.Option(100, "-k", help="Hits per query."),
    output: Path = typer.Option(..., "--output", "-o", help="Run file to write."),
    fmt: RunFormat = typer.Option(RunFormat.jsonl, "--format", help="jsonl (listrank) or trec (6 columns, 1-based ranks)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Query encoder; must be the indexed one [default: read from the index]."),
    param: Optional[list[str]] = typer.Option(None, "--param", help="KEY=VALUE, repeatable: a search parameter of the index's kind (hnsw: ef_search; ivfpq: nprobe, rerank; bm25: k1, b) [default: the one recorded at index time]."),
    batch_size: int = BATCH_SIZE,
    data_dir: Optional[Path] = DATA_DIR,
) -> None:
    """Search an index with a dataset's queries (or a queries file); write a run.

    Examples:

    ```
    listrank search runs/scifact.idx --dataset beir/scifact --split test -k 100 -o runs/scifact.run.jsonl
    listrank search runs/scifact.idx --dataset beir/scifact --format trec -o runs/scifact.trec
    listrank search runs/scifact.bm25.idx --queries my_queries.tsv -o runs/mine.run.jsonl
    ```
    """
    from listrank.atomic import check_output_file
    from listrank.datasets import resolve
    from listrank.formats import read_queries, trec_unsafe_id, write_run
    from listrank.retrieval import open_index, parse_params
    from listrank.search import check_index_corpus, search

    if (dataset is None) == (queries is None):
        raise ListrankError("give exactly one of --dataset or --queries")
    check_output_file(output, inputs=[queries], what="--output")
    if queries is not None:
        query_list = read_queries(queries)
    else:
        ds = resolve(dataset, data_dir)
        check_output_file(output, inputs=ds.files(), what="--output")
        query_list = ds.queries(split or (ds.default_split() if ds.splits() else None))
    search_params = open_index(index).resolve_params(parse_params(param), at_search=True)  # an index at all?
    if output.resolve().is_relative_to(index.resolve()):
        raise ListrankError(f"--output {output} is inside the index {index}; write the run elsewhere")
    if dataset is not None:
        check_index_corpus(index, ds)
    if fmt is RunFormat.trec and trec_unsafe_id(q.id for q in query_list) is not None:
        bad = trec_unsafe_id(q.id for q in query_list)
        raise ListrankError(f"query id {bad!r} holds whitespace, which a TREC run (space-separated columns) "
                            "cannot represent; write --format jsonl instead")
    start = time.perf_counter()
    run = search(index, query_list, k, model=model, batch_size=batch_size, params=search_params)
    write_run(output, run, fmt)
    console.print(f"searched {len(query_list):,} queries, top {k} → {output} [{fmt.value}, "
                  f"{time.perf_counter() - start:.1f}s]", highlight=False)


@command("eval")
def eval_cmd(
    runs: Optional[list[Path]] = typer.Argument(None, help="Run files (JSONL or TREC). None: retrieve first (dense, or --bm25)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset id or BEIR folder with the qrels."),
    split: Optional[str] = typer.Option(None, "--split", help="Qrels split [default: test, else dev, else train]."),
    qrels: Optional[Path] = typer.Option(None, "--qrels", help="A qrels file (BEIR TSV or TREC) instead of the dataset's split."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated, e.g. ndcg@10,mrr@10,recall@100,map@100,p@10."),
    relevance_level: int = typer.Option(1, "--relevance-level", help="Minimum grade counted relevant by binary metrics (TREC DL: 2)."),
    keep_self_hits: bool = typer.Option(False, "--keep-self-hits", help="Keep hits whose doc id equals the query id (BEIR drops them)."),
    complete: bool = typer.Option(False, "--complete", help="Score judged queries missing from a run as 0 (trec_eval -c)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write metrics (aggregate + per query + tests) as JSON."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="PNG of per-query deltas of the first metric (needs two runs); with --level-audit: score by level."),
    permutations: int = typer.Option(10_000, "--permutations", help="Randomization-test permutations."),
    bm25: bool = typer.Option(False, "--bm25", help="With no run: retrieve with Lucene BM25 (k1=0.9, b=0.4)."),
    kind: Optional[str] = INDEX_KIND,
    param: Optional[list[str]] = INDEX_PARAM,
    save_run: Optional[Path] = typer.Option(None, "--save-run", help="With no run: also write the retrieved run here."),
    k: Optional[int] = typer.Option(None, "-k", help="With no run: hits per query [default: 1000]."),
    level_audit: bool = typer.Option(False, "--level-audit", help="Audit synthetic levels instead: how well the encoder's scores order each query's own passages by level (--dataset: a gen --export-beir folder or gen JSONL; -o JSON, --plot PNG of score by level)."),
    model: Optional[str] = MODEL,
    pooling: Optional[str] = POOLING,
    normalize: Optional[bool] = NORMALIZE,
    max_length: int = MAX_LENGTH,
    batch_size: int = BATCH_SIZE,
    precision: str = PRECISION,
    data_dir: Optional[Path] = DATA_DIR,
) -> None:
    """Evaluate runs with trec_eval measures; compare several with paired significance tests.

    With no run file, index the dataset (cached), search its queries and evaluate, in one go.

    Examples:

        listrank eval --dataset beir/scifact                       # bundled dense model
        listrank eval --dataset beir/scifact --bm25                # Lucene BM25
        listrank eval --dataset beir/scifact --model models/sycl
        listrank eval runs/scifact.run.jsonl --dataset beir/scifact
        listrank eval runs/a.jsonl runs/b.jsonl --dataset beir/scifact -o cmp.json --plot cmp.png
        listrank eval ../shared/data/msmarco/dl19-pool/bm25.run --dataset msmarco/dl19-pool --relevance-level 2
        listrank eval --dataset synth_beir/ --level-audit -o audit.json --plot levels.png   # do scores follow the levels?
        listrank eval --dataset synth.jsonl --level-audit --model models/sycl
    """
    from listrank.atomic import check_output_file

    _check_precision(precision)
    inputs = [*(runs or []), qrels]
    for path, what in ((output, "--output"), (plot, "--plot"), (save_run, "--save-run")):
        check_output_file(path, inputs=inputs, what=what)
    if len({Path(p).resolve() for p in (output, plot, save_run) if p is not None}) < sum(
            p is not None for p in (output, plot, save_run)):
        raise ListrankError("--output, --plot and --save-run must be different files")
    if level_audit:
        if runs or bm25:
            raise ListrankError("--level-audit scores the dataset's own lists with a dense encoder; "
                                "it takes no run files and no --bm25")
        from listrank.pipeline import level_audit as run_level_audit

        run_level_audit(dataset, split, qrels, _dense_settings(model, pooling, normalize, max_length, batch_size,
                                                                precision),
                        output=output, plot=plot, data_dir=data_dir, out=stdout_console, err=console)
        return
    if runs:
        given = [flag for flag, value, default in (
            ("--model", model, None), ("--pooling", pooling, None), ("--normalize", normalize, None),
            ("--max-length", max_length, 256), ("--batch-size", batch_size, 64), ("--precision", precision, "auto"),
            ("--bm25", bm25, False), ("--save-run", save_run, None), ("-k", k, None), ("--kind", kind, None),
            ("--param", param or None, None)) if value != default]
        if given:
            raise ListrankError(f"{', '.join(given)} only apply when eval retrieves (no run files); "
                                "these runs are already retrieved")
    if plot and len(runs or []) + (0 if runs else 1) < 2:
        raise ListrankError("--plot needs two or more runs (it shows per-query deltas against the first)")
    from listrank.pipeline import evaluate_runs

    evaluate_runs(dataset, runs, split=split, qrels=qrels, metrics=metrics, relevance_level=relevance_level,
                  keep_self_hits=keep_self_hits, complete=complete, output=output, plot=plot,
                  permutations=permutations, bm25=bm25, kind=kind, param=param, save_run=save_run, k=k,
                  dense=_dense_settings(model, pooling, normalize, max_length, batch_size, precision),
                  data_dir=data_dir, out=stdout_console, err=console)


def _check_precision(precision: str) -> None:
    if precision not in ("auto", "bf16", "fp32"):
        raise ListrankError(f"unknown --precision {precision!r}; choose auto, bf16 or fp32")


@command("regressions")
def regressions_cmd(
    names: Optional[list[str]] = typer.Argument(None, help="Only rows whose name contains one of these."),
    file: Optional[Path] = typer.Option(None, "--file", help="A YAML of regressions [default: the bundled one]."),
    list_only: bool = typer.Option(False, "--list", help="List the rows and their expected scores, run nothing."),
    data_dir: Optional[Path] = DATA_DIR,
) -> None:
    """Re-measure published scores (MTEB, pyserini) and print OK/FAIL per row; exit 1 on any FAIL.

    Examples:

    ```
    listrank regressions                 # every row of listrank/resources/regressions.yaml
    listrank regressions bm25            # rows whose name contains "bm25"
    listrank regressions --list
    ```
    """
    from listrank import regressions as reg

    table, failed = reg.results_table(reg.select(reg.load(file), names), data_dir, list_only=list_only)
    stdout_console.print(table)
    if failed:
        raise typer.Exit(1)


@command("train")
@cli_support.with_config_options(TrainConfig)
def train(
    synthetic: list[Path] = typer.Argument(None, help="`listrank gen` output files (JSONL synthetic lists)."),
    output: Path = typer.Option(..., "--output", "-o", help="Model folder (sentence-transformers layout) + logs + checkpoints."),
    dataset: str | None = typer.Option(None, "--dataset", help="Also train on a BEIR dataset's graded qrels (id or folder)."),
    split: str | None = typer.Option(None, "--split", help="With --dataset: the qrels split (default: test/dev/train)."),
    labels: str | None = typer.Option(None, "--labels", help="With --dataset: label transform, e.g. '0:drop,*:3'."),
    source: list[str] = typer.Option([], "--source", help="A source with options: 'PATH_OR_ID split=S labels=0:1,*:3 take=K mine=dense|bm25 mine-corpus=ID mine-label=1 mine-depth=30 mine-count=4' (repeatable)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where dataset ids resolve (else $LISTRANK_DATA)."),
    config_file: Path | None = typer.Option(None, "--config", help="YAML/JSON file of training options (flags win)."),
    preset: str | None = typer.Option(None, "--preset", help="Named recipe: sycl (the paper's; docs/train.md)."),
    max_length: int | None = typer.Option(None, "--max-length", help="Sets both --query-max-length and --passage-max-length."),
    loss_opt: list[str] = typer.Option([], "--loss-opt", help="Loss option KEY=VALUE (repeatable), e.g. positive_threshold=2."),
    **options,  # one flag per TrainConfig field (listrank/train/config.py declares them, with their help)
) -> None:
    """Train a bi-encoder on graded passage lists with a list-wise loss (SyCL).

    Examples:

    ```
    listrank train synth.jsonl --loss wasserstein -o models/sycl              # from gen output
    listrank train synth.jsonl --loss infonce -o models/infonce               # the binary baseline
    listrank train --dataset msmarco/dl19-pool --split test -o models/dl19    # real graded qrels
    listrank train synth.jsonl --source 'beir/scifact split=train labels=*:3 mine=dense mine-label=1' -o models/mix
    listrank train synth.jsonl --preset sycl --batch-size 32 -o models/sycl --resume
    torchrun --nproc-per-node 4 -m listrank train synth.jsonl -o models/sycl  # several GPUs
    ```
    """
    from listrank.train import SourceConfig, build_config, summary_table
    from listrank.train import train as run_training
    from listrank.formats import json_or_str, parse_key_values

    sources = [SourceConfig(path=str(p)) for p in synthetic or []]
    if dataset:
        sources.append(SourceConfig(path=dataset, split=split, labels=labels))
    elif split or labels:
        raise typer.BadParameter("--split and --labels need --dataset (or use --source)")
    sources += [SourceConfig.parse(s) for s in source]
    if max_length is not None:
        for key in ("query_max_length", "passage_max_length"):
            options[key] = options[key] if options[key] is not None else max_length
    overrides = dict(options, output=str(output), sources=sources, preset=preset,
                     loss_options=parse_key_values(loss_opt, "--loss-opt", convert=json_or_str) or None)
    config = build_config(config_file=config_file, overrides=overrides)
    result = run_training(config, data_dir=data_dir)
    if result.rank == 0:
        console.print(summary_table(result))


@command("doctor")
def doctor(
    check: list[str] = typer.Option([], "--check", help="Run only these checks (repeatable); default all."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON to this file."),
) -> None:
    """Check that every real component works on this machine, each in its own process.

    The bundled GGUF decodes a few tokens through the default llama.cpp backend (so a build that
    does not fit this CPU shows up here in seconds, not as a crash after a long gen), torch runs a
    bf16 matmul, the bundled encoder embeds, pyserini starts its JVM, faiss searches and
    pytrec_eval scores a known run. Prints one table, a one-line fix for each failure, and exits
    non-zero if a required component fails. `make setup` runs it.

    Examples:

    ```
    listrank doctor
    listrank doctor --check llama.cpp --check encoder
    listrank doctor --json doctor.json        # attach to a bug report
    ```
    """
    from rich.table import Table

    import json

    from listrank import doctor as doc
    from listrank.atomic import atomic_write

    checks = doc.select(check)
    info = doc.machine_info()
    console.print(f"[bold]listrank {__version__}[/] on {info['cpu']} ({info['cores_usable']} usable cores; "
                  f"{', '.join(info['cpu_isa']) or 'no AVX2'}), Python {info['python']}", highlight=False)
    with console.status("checking") as status:
        def seen(result) -> None:
            mark = "[green]ok[/]" if result.ok else ("[red]FAIL[/]" if result.required else "[yellow]absent[/]")
            status.console.print(f"  {mark} {result.name} ({result.seconds:.1f} s)", highlight=False)

        results = doc.run_checks(checks, on_result=seen)
    table = Table(title="listrank doctor", show_lines=False)
    for col in ("component", "status", "what was checked / what happened", "s"):
        table.add_column(col, justify="right" if col == "s" else "left")
    for r in results:
        status_text = "[green]ok[/]" if r.ok else ("[red]FAIL[/]" if r.required else "[yellow]absent (optional)[/]")
        table.add_row(r.name, status_text, escape(r.detail if r.ok else f"{r.what}: {r.detail}"), f"{r.seconds:.1f}")
    stdout_console.print(table)
    for r in results:
        if not r.ok:
            console.print(f"[bold]{'fix' if r.required else 'optional'} {r.name}:[/] {escape(r.fix)}", highlight=False)
    report = doc.report_json(results)
    if json_out is not None:
        with atomic_write(json_out) as f:
            json.dump(report, f, indent=2)
    if not report["ok"]:
        failed = [r.name for r in results if r.required and not r.ok]
        error = ListrankError(f"{len(failed)} required component(s) failed: {', '.join(failed)}")
        error.exit_code = 1  # the environment is broken, not the command line (2)
        raise error


def main() -> None:
    app()
