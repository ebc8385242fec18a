"""`listrank index`: its options (`IndexOptions`, one field per flag), what the command does
(`run_index`: read the corpus, encode or build BM25, or merge shards; record the options in the
index's meta.json), and the names older code imports, each a thin call into `listrank.retrieval`
(where the index kinds live: flat, hnsw, ivfpq, bm25, sharded).

A dense index folder holds
    embeddings.npy   float32 (or float16) [n_docs, dim], in the order of docids.txt
    docids.txt       one document id a line
    meta.json        {"kind": "dense", "index": "flat", "encoder": EncoderSpec, "corpus": fingerprint, ...}
The encoder spec (model path, sha256 of its weights, pooling, normalisation, max length) is the
model's identity: searching with another model is an error, and a cached index is reused only when
both the encoder and the corpus fingerprints match.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from listrank.errors import ListrankError
from listrank.formats import Document
from listrank.options import EncoderOptions, data_dir_option, option, recorded
from listrank.retrieval.base import (
    META_FILE, corpus_fingerprint, index_is_current, open_index, parse_params, read_meta, write_meta,
)
from listrank.retrieval.dense import DenseIndex

__all__ = ["META_FILE", "DenseIndex", "IndexOptions", "build_dense_index", "check_corpus", "corpus_fingerprint",
           "index_matches", "read_meta", "run_index"]

KIND_HELP = ("Index kind: flat (exact), hnsw, ivfpq (faiss) or bm25 (Lucene) [default: flat; bm25 with --bm25].")
PARAM_HELP = ("KEY=VALUE, repeatable: a parameter of the index kind (hnsw: m, ef_construction, ef_search; ivfpq: "
              "nlist, m, nbits, nprobe, rerank; bm25: k1, b). See docs/scaling.md.")


def kind_option() -> object:
    """`--kind` (alias `--index-kind`): declared once for `index` and `eval`."""
    return option(None, KIND_HELP, flags=("--kind", "--index-kind"))


def params_option() -> object:
    """`--param KEY=VALUE` (repeatable), as a dict: declared once for `index` and `eval`."""
    return option(help=PARAM_HELP, flags=("--param",), default_factory=dict, cli_type=list[str], cli_default=None,
                  parse=parse_params)


@dataclass(kw_only=True)
class IndexOptions(EncoderOptions):
    """The flags of `listrank index`, one field each (their help and default here; `listrank.options`
    makes the flags). `__post_init__` checks each value, `kind_for` the flags together; `run_index`
    records them (`listrank.options.recorded`) in the index's meta.json under "options"."""

    dataset: str | None = option(None, "Dataset id (beir/scifact), BEIR folder or corpus.jsonl.",
                                 flags=("--dataset", "-d"))
    output: Path = option(help="Index folder to write (replaced atomically if listrank wrote it; any other "
                               "non-empty folder is refused).", flags=("--output", "-o"), record=False)
    bm25: bool = option(False, "Build a Lucene BM25 index (pyserini) instead of a dense one (= --kind bm25).",
                        flags=("--bm25",))
    kind: str | None = kind_option()
    params: dict = params_option()
    dtype: str = option("float32", "Dense: store embeddings as float32 or float16 (half the disk and memory; "
                                   "memory-mapped either way).")
    shard: str | None = option(None, "i/n: encode only the i-th of n consecutive parts of the corpus (then "
                                     "`listrank index merge`). Under torchrun each process takes its part by itself.")
    data_dir: Path | None = data_dir_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        self.output = Path(self.output)

    def kind_for(self, merging: bool) -> str:
        """The index kind to build, once the flags are checked together (`merging`: `index merge`)."""
        from listrank.pipeline import index_kind
        from listrank.retrieval import index_class

        if merging:
            if self.dataset or self.shard or self.bm25:
                raise ListrankError("`index merge` takes shard folders, -o, --kind, --param and --dtype; "
                                    "--dataset, --shard and --bm25 do not apply")
            return self.kind or "sharded"
        if self.dataset is None:
            raise ListrankError("give --dataset (or `listrank index merge SHARD... -o OUT`)")
        kind = index_kind(self.kind, self.bm25)
        cls = index_class(kind)
        if not cls.needs_encoder:
            if (self.model, self.pooling, self.normalize, self.max_length, self.batch_size, self.precision,
                    self.dtype, self.shard) != (None, None, None, 256, 64, "auto", "float32", None):
                raise ListrankError("--bm25 builds a Lucene index: --model, --pooling, --normalize, --max-length, "
                                    "--batch-size, --precision, --dtype and --shard do not apply")
        cls.resolve_params(self.params)  # a typo fails before any encoding
        return kind


def record_options(index_dir: str | os.PathLike, opts: IndexOptions) -> None:
    """Add the options of the `listrank index` run that wrote `index_dir` to its meta.json."""
    meta = read_meta(index_dir)
    meta["options"] = recorded(opts)
    write_meta(index_dir, meta)


def run_index(opts: IndexOptions, merge: Sequence[str] | None = None, console=None) -> Path | None:
    """`listrank index`: index `opts.dataset` at `opts.output` (or, with `merge` = ["merge", SHARD...],
    join shard folders), print one line to `console`, record the options in meta.json. Returns the
    index folder (None on a torchrun rank other than 0)."""
    from listrank.atomic import check_output_folder
    from listrank.datasets import resolve
    from listrank.formats import read_corpus
    from listrank.progress import stderr_console
    from listrank.retrieval import index_class

    console = console or stderr_console
    start = time.perf_counter()
    output = opts.output
    if merge:
        if merge[0] != "merge":
            raise ListrankError(f"unexpected argument {merge[0]!r}: `listrank index` takes --dataset, or `merge SHARD...`")
        from listrank.retrieval.sharded import merge as merge_shards

        kind, parts = opts.kind_for(merging=True), list(merge[1:])
        check_output_folder(output, inputs=parts, what="--output")
        merge_shards(parts, output, kind=kind, params=opts.params, dtype=opts.dtype if opts.dtype != "float32" else None)
        record_options(output, opts)
        console.print(f"merged {len(parts)} shards → {output} [{kind}, {time.perf_counter() - start:.1f}s]",
                      highlight=False)
        return output
    kind = opts.kind_for(merging=False)
    cls = index_class(kind)
    corpus_path = Path(opts.dataset)
    if corpus_path.is_file():
        check_output_folder(output, inputs=[corpus_path], what="--output")
        docs, name = read_corpus(corpus_path), str(corpus_path)
    else:
        ds = resolve(opts.dataset, opts.data_dir)
        check_output_folder(output, inputs=[ds.root or ds.queries_file], what="--output")
        docs, name, corpus_path = ds.corpus, ds.id, ds.corpus_file
    if not cls.needs_encoder:
        cls.build(docs, output, params=opts.params, corpus_file=corpus_path, dataset=name)
        record_options(output, opts)
        console.print(f"indexed {len(docs):,} documents of {name} → {output} [BM25, {time.perf_counter() - start:.1f}s]",
                      highlight=False)
        return output
    encoder = opts.dense_settings().encoder()
    from listrank.encoder import display_name
    from listrank.retrieval import distributed

    if distributed.world_size() > 1:
        if opts.shard:
            raise ListrankError("under torchrun each process takes its own shard: drop --shard")
        distributed.index_under_torchrun(cls, encoder, docs, output, params=opts.params, dtype=opts.dtype,
                                         batch_size=opts.batch_size, dataset=name)
        if distributed.rank() != 0:
            return None
    else:
        from listrank.gen.generate import parse_shard

        cls.build(docs, output, encoder=encoder, params=opts.params, batch_size=opts.batch_size, dataset=name,
                  shard=parse_shard(opts.shard) if opts.shard else None, dtype=opts.dtype)
    record_options(output, opts)
    what = f"{kind}, {display_name(encoder.model_path)}, {'bf16' if encoder.use_bf16 else 'fp32'}"
    part = f" (shard {opts.shard})" if opts.shard else ""
    console.print(f"indexed {len(docs):,} documents of {name}{part} → {output} [{what}, "
                  f"{time.perf_counter() - start:.1f}s]", highlight=False)
    return output


def build_dense_index(encoder, docs: Sequence[Document], out_dir: str | os.PathLike, *, batch_size: int = 64,
                      show_progress: bool = True, dataset: str | None = None, kind: str = "flat", **options) -> Path:
    """Encode `docs` (title + text) and write a dense index folder of `kind` atomically."""
    from listrank.retrieval import index_class

    return index_class(kind).build(docs, out_dir, encoder=encoder, batch_size=batch_size,
                                   show_progress=show_progress, dataset=dataset, **options)


def check_corpus(index_dir: str | os.PathLike, docs: Sequence[Document], corpus_name: str) -> None:
    """Refuse to use an index built from another corpus than `docs`."""
    open_index(index_dir).check_corpus(docs, corpus_name)


def index_matches(index_dir: str | os.PathLike, kind: str, corpus: str, encoder=None) -> bool:
    """True when a cached index at `index_dir` of `kind` was built from the corpus with fingerprint
    `corpus` (and this encoder)."""
    return index_is_current(index_dir, kind, None, encoder, fingerprint=corpus)
