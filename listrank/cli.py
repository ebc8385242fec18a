"""The `listrank` command line: one small function per subcommand that parses flags and calls the core.

No logic a Python user would also need lives here; see the modules each command calls.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from listrank import __version__
from listrank.errors import ListrankError
from listrank.gen.generate import GenConfig
from listrank.index import IndexOptions
from listrank.options import from_options, with_config_options
from listrank.pipeline import EvalOptions
from listrank.search import SearchOptions
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


@command("index")
@with_config_options(IndexOptions)
def index_cmd(
    merge: Optional[list[str]] = typer.Argument(None, help="`merge SHARD...`: join the folders of `index --shard i/n` into one index at -o.", show_default=False),
    **options,  # one flag per IndexOptions field (listrank/index.py declares them, with their help)
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
    from listrank.index import run_index

    run_index(from_options(IndexOptions, options), merge, console=console)


@command("search")
@with_config_options(SearchOptions)
def search_cmd(
    index: Path = typer.Argument(..., help="Index folder written by `listrank index` (or `merge`, then the shards' runs)."),
    parts: Optional[list[Path]] = typer.Argument(None, help="`merge RUN...`: the runs of shards 0..n-1, searched on "
                                                 "the machines that hold them; joined into the corpus's top-k at -o.",
                                                 show_default=False),
    **options,  # one flag per SearchOptions field (listrank/search.py declares them, with their help)
) -> None:
    """Search an index with a dataset's queries (or a queries file); write a run.

    Examples:

    ```
    listrank search runs/scifact.idx --dataset beir/scifact --split test -k 100 -o runs/scifact.run.jsonl
    listrank search runs/scifact.idx --dataset beir/scifact --format trec -o runs/scifact.trec
    listrank search runs/scifact.bm25.idx --queries my_queries.tsv -o runs/mine.run.jsonl
    listrank search parts/0 --dataset msmarco -k 1000 -o part0.run.jsonl    # on each machine, its shard
    listrank search merge part0.run.jsonl part1.run.jsonl -o msmarco.run.jsonl   # the exact top-1000 of all
    ```
    """
    from listrank.search import run_search, run_search_merge

    if str(index) == "merge":
        run_search_merge(parts or [], from_options(SearchOptions, options, merging=True), console=console)
        return
    if parts:
        raise ListrankError(f"unexpected argument {str(parts[0])!r}: `listrank search` takes one index folder "
                            "(or `merge RUN...`)")
    run_search(index, from_options(SearchOptions, options), console=console)


@command("eval")
@with_config_options(EvalOptions)
def eval_cmd(
    runs: Optional[list[Path]] = typer.Argument(None, help="Run files (JSONL or TREC). None: retrieve first (dense, or --bm25)."),
    **options,  # one flag per EvalOptions field (listrank/pipeline.py declares them, with their help)
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
    from listrank.pipeline import run_eval

    run_eval(runs, from_options(EvalOptions, options), out=stdout_console, err=console)


@command("regressions")
def regressions_cmd(
    names: Optional[list[str]] = typer.Argument(None, help="Only rows whose name contains one of these."),
    file: Optional[Path] = typer.Option(None, "--file", help="A YAML of regressions [default: the bundled one]."),
    list_only: bool = typer.Option(False, "--list", help="List the rows and their expected scores, run nothing."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder of BEIR-layout datasets (before $LISTRANK_DATA and the cache)."),
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
    from listrank.doctor import run_doctor

    run_doctor(check, json_out, out=stdout_console, err=console)


def main() -> None:
    app()
