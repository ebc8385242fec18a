"""`sharded`: several dense indexes of consecutive parts of one corpus, searched as one.

Written by `listrank index merge` (the parts of `index --shard i/n`, or of a torchrun run). The
folder holds `shard-000/`, `shard-001/`, ... (each a complete `flat` index of its rows) and a
meta.json naming them. Search takes each shard's exact top-k in turn (its embeddings memory-mapped,
one block of rows scored at a time) and merges them exactly: the same run as one flat index of the
whole corpus (tests/test_retrieval.py), without one process ever holding all embeddings. The
shards may live on other disks; each is an index `listrank search` can also open alone.
"""

from __future__ import annotations

import os
import shutil
import time
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from listrank import __version__
from listrank.atomic import atomic_dir, is_listrank_folder
from listrank.errors import ListrankError
from listrank.retrieval.base import index_class, open_index, read_meta, register, write_meta
from listrank.retrieval.dense import DenseIndex, merge_topk


def check_parts(parts: Sequence[str | os.PathLike]) -> tuple[list[DenseIndex], dict]:
    """Open the parts of a sharded build and check they are the shards 0..n-1 of one corpus, encoded
    alike; returns them in shard order and the metadata they share."""
    if not parts:
        raise ListrankError("index merge: give the shard folders to merge")
    opened = []
    for p in parts:
        idx = open_index(p)
        if not isinstance(idx, DenseIndex) or "shard" not in idx.meta:
            raise ListrankError(f"{p} is not a shard written by `listrank index --shard i/n`")
        opened.append(idx)
    opened.sort(key=lambda i: i.meta["shard"]["index"])
    first = opened[0].meta
    count = first["shard"]["count"]
    got = [i.meta["shard"]["index"] for i in opened]
    if got != list(range(count)) or any(i.meta["shard"]["count"] != count for i in opened):
        raise ListrankError(f"index merge: expected shards 0..{count - 1} of {count} once each, got {got}")
    for idx in opened[1:]:
        m = idx.meta
        for key in ("corpus", "n_docs_total"):
            if m["shard"][key] != first["shard"][key]:
                raise ListrankError(f"index merge: {idx.path} is a shard of another corpus than {opened[0].path}")
        if idx.encoder_spec.mismatch(opened[0].encoder_spec) or m.get("precision") != first.get("precision"):
            raise ListrankError(f"index merge: {idx.path} was encoded with another encoder or precision "
                                f"than {opened[0].path}")
        if m.get("dim") != first.get("dim"):
            raise ListrankError(f"index merge: {idx.path} has {m.get('dim')} dimensions, {opened[0].path} {first.get('dim')}")
    prev = 0
    for idx in opened:
        sh = idx.meta["shard"]
        if sh["start"] != prev or sh["stop"] - sh["start"] != idx.meta["n_docs"]:
            raise ListrankError(f"index merge: {idx.path} does not hold rows {prev}.. of the corpus")
        prev = sh["stop"]
    if prev != first["shard"]["n_docs_total"]:
        raise ListrankError(f"index merge: the shards hold {prev} of {first['shard']['n_docs_total']} documents")
    shared = {k: first[k] for k in ("encoder", "precision", "dim", "dataset") if k in first}
    shared.update(corpus=first["shard"]["corpus"], n_docs=first["shard"]["n_docs_total"],
                  dtype=first.get("dtype", "float32"))
    return opened, shared


def merge(parts: Sequence[str | os.PathLike], out_dir: str | os.PathLike, kind: str = "sharded",
          params: dict | None = None, dtype: str | None = None, move: bool = False,
          show_progress: bool = False) -> Path:
    """Join the shards: `sharded` keeps them as they are (copied, or moved with `move`), any other
    dense kind is built from their concatenated embeddings (which then must fit in memory)."""
    started = time.perf_counter()
    opened, shared = check_parts(parts)
    out_dir = Path(out_dir)
    for idx in opened:
        if out_dir.resolve() == idx.path.resolve() or idx.path.resolve().is_relative_to(out_dir.resolve()):
            raise ListrankError(f"index merge: -o {out_dir} holds the shard {idx.path}; write elsewhere")
    cls = index_class(kind)
    meta = {"listrank_version": __version__, **shared, "params": params or {}}
    if dtype:
        meta["dtype"] = dtype
    if cls is not ShardedIndex:
        if not issubclass(cls, DenseIndex):
            raise ListrankError(f"index merge --kind {kind}: merging makes a dense index (flat, hnsw, ivfpq or sharded)")
        embeddings = np.concatenate([np.asarray(i.embeddings) for i in opened])
        docids = [d for i in opened for d in i.docids]
        return cls.write(out_dir, embeddings, docids, meta, started=started, show_progress=show_progress)
    if params:
        raise ListrankError("index merge --kind sharded takes no --param")
    if dtype and dtype != shared["dtype"]:
        raise ListrankError("index merge --kind sharded keeps the shards' dtype; --dtype applies to the other kinds")
    names = [f"shard-{i:03d}" for i in range(len(opened))]
    with atomic_dir(out_dir, replace=is_listrank_folder) as tmp:
        for name, idx in zip(names, opened):
            if move:
                shutil.move(str(idx.path), tmp / name)
            else:
                shutil.copytree(idx.path, tmp / name)
        meta.update(kind="dense", index="sharded", shards=names, params={},
                    seconds=round(time.perf_counter() - started, 2))
        write_meta(tmp, meta)
    return out_dir


@register("sharded")
class ShardedIndex(DenseIndex):
    @classmethod
    def build(cls, docs, out_dir, **kwargs):
        raise ListrankError("a sharded index is made by `listrank index merge` (or torchrun) from shards")

    @cached_property
    def shards(self) -> list[DenseIndex]:
        names = self.meta.get("shards")
        if not isinstance(names, list) or not names:
            raise ListrankError(f"{self.path}: meta.json names no shards; rebuild the index")
        shards = []
        for name in names:
            path = self.path / name
            if read_meta(path).get("shard", {}).get("corpus") != self.meta.get("corpus"):
                raise ListrankError(f"{self.path} is inconsistent: {name} is not a shard of its corpus; rebuild it")
            shards.append(open_index(path))
        return shards

    @cached_property
    def docids(self) -> list[str]:
        return [d for s in self.shards for d in s.docids]

    @property
    def embeddings(self) -> np.ndarray:
        """All rows in one array (loads every shard: for tests and small corpora only)."""
        return np.concatenate([np.asarray(s.embeddings) for s in self.shards])

    def check(self) -> None:
        total = 0
        for s in self.shards:
            s.check()
            total += len(s.docids)
        if total != self.meta.get("n_docs"):
            raise ListrankError(f"{self.path} is inconsistent: its shards hold {total} documents, meta.json says "
                                f"{self.meta.get('n_docs')}; rebuild the index")

    def search_embeddings(self, query_embeddings, k, params=None):
        parts, offset = [], 0
        for s in self.shards:
            scores, rows = s.search_embeddings(query_embeddings, k, params)
            parts.append((scores, np.where(rows >= 0, rows + offset, -1)))
            offset += len(s.docids)
        return merge_topk(parts, min(k, offset))
