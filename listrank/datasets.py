"""Dataset ids (`beir/scifact`) and paths resolved to local BEIR-layout folders.

Resolution order for an id `<namespace>/<name>`:
  1. `--data-dir` (the `data_dir` argument), 2. `$LISTRANK_DATA`, 3. the user cache
  (`$LISTRANK_CACHE`, else `$XDG_CACHE_HOME/listrank`, else `~/.cache/listrank`) under `datasets/`.
A `beir/<name>` id found nowhere is downloaded from the official BEIR distribution into the cache:
the zip is checked against BEIR's published md5 and unpacked atomically. A path to a BEIR folder
works too, and so does a plain queries file (`.tsv` or `.jsonl`), which has queries only.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple, Sequence

from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from listrank.atomic import atomic_dir
from listrank.errors import ListrankError
from listrank.formats import Document, Qrels, Query, ReadStats, read_corpus, read_qrels, read_queries

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
# md5 of each official zip, as published in the BEIR README (beir-cellar/beir).
BEIR_MD5 = {
    "msmarco": "444067daf65d982533ea17ebd59501e4",
    "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
    "cqadupstack": "4e41456d7df8ee7760a7f866133bda78",
    "quora": "18fb154900ba42a600f84b839c173167",
    "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "fever": "5a818580227bfb4b35bb6fa46d9b6c03",
    "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
}
_ID = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")


def cache_dir() -> Path:
    if os.environ.get("LISTRANK_CACHE"):
        return Path(os.environ["LISTRANK_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "listrank"


@dataclass
class JudgedLists:
    """Each judged query with its judged documents and their grades, in qrels order; what was
    judged but is not in the dataset (queries without text, documents not in the corpus)."""

    lists: list[tuple[Query, list[tuple[Document, int]]]]
    missing_queries: list[str]
    missing_docs: int


def judged_lists(corpus: Sequence[Document], queries: Sequence[Query], qrels: Qrels) -> JudgedLists:
    """The graded lists of `qrels` over these documents and queries (`Dataset.judged_lists`)."""
    docs = {d.id: d for d in corpus}
    texts = {q.id: q for q in queries}
    out = JudgedLists([], [], 0)
    for qid, judged in qrels.items():
        query = texts.get(qid)
        if query is None:
            out.missing_queries.append(qid)
            continue
        passages = [(docs[d], int(g)) for d, g in judged.items() if d in docs]
        out.missing_docs += len(judged) - len(passages)
        out.lists.append((query, passages))
    return out


class Judgements(NamedTuple):
    """Qrels with where they came from: `split` (None for a qrels file given alone) and `name`."""

    qrels: Qrels
    split: str | None
    name: str


@dataclass
class Dataset:
    """A BEIR-layout folder, or a lone queries file (then `corpus`/`qrels` are unavailable)."""

    id: str
    root: Path | None = None
    queries_file: Path | None = None

    def __post_init__(self):
        if self.root is not None and self.queries_file is None:
            self.queries_file = self.root / "queries.jsonl"
            if not self.queries_file.exists() and (self.root / "queries.tsv").exists():
                self.queries_file = self.root / "queries.tsv"

    @property
    def corpus_file(self) -> Path:
        if self.root is None or not (self.root / "corpus.jsonl").exists():
            raise ListrankError(f"dataset {self.id!r} has no corpus.jsonl (a queries file has queries only)")
        return self.root / "corpus.jsonl"

    def files(self) -> list[Path]:
        """The files this dataset is read from: what no output may replace."""
        found = [self.queries_file] if self.queries_file is not None else []
        if self.root is not None and self.root.is_dir():
            found += [p for p in self.root.rglob("*") if p.is_file()]
        return found

    def splits(self) -> list[str]:
        qrels_dir = self.root / "qrels" if self.root else None
        if qrels_dir is None or not qrels_dir.is_dir():
            return []
        return sorted(p.stem for p in qrels_dir.glob("*.tsv"))

    def qrels_file(self, split: str) -> Path:
        if self.root is not None:
            for candidate in (self.root / "qrels" / f"{split}.tsv", self.root / f"qrels.{split}.tsv"):
                if candidate.exists():
                    return candidate
            if split == "train" and (self.root / "qrels.tsv").exists():
                return self.root / "qrels.tsv"
        have = ", ".join(self.splits()) or "none"
        raise ListrankError(f"dataset {self.id!r} has no split {split!r} (qrels splits here: {have})")

    def default_split(self) -> str:
        splits = self.splits()
        for preferred in ("test", "dev", "train"):
            if preferred in splits:
                return preferred
        if splits:
            return splits[0]
        raise ListrankError(f"dataset {self.id!r} has no qrels folder")

    @cached_property
    def corpus(self) -> list[Document]:
        return read_corpus(self.corpus_file)

    @cached_property
    def all_queries(self) -> list[Query]:
        return self._read_queries()

    def _read_queries(self, skip_invalid: bool = False, stats: ReadStats | None = None) -> list[Query]:
        if self.queries_file is None or not self.queries_file.exists():
            raise ListrankError(f"dataset {self.id!r} has no queries.jsonl")
        return read_queries(self.queries_file, skip_invalid=skip_invalid, stats=stats)

    def qrels(self, split: str) -> Qrels:
        return read_qrels(self.qrels_file(split))

    def judged_lists(self, qrels: Qrels) -> JudgedLists:
        """Each query judged in `qrels` with its judged documents of this corpus and their grades."""
        return judged_lists(self.corpus, self.all_queries, qrels)

    def judgements(self, split: str | None = None, qrels_file: str | os.PathLike | None = None) -> "Judgements":
        """The judgements a run is scored against: a `qrels_file` (BEIR TSV or TREC) if given, else
        the `split`'s (default: test, else dev, else train); with the split and a name for reports."""
        split = split or (None if qrels_file else self.default_split())
        if qrels_file:
            return Judgements(read_qrels(qrels_file), split, str(qrels_file))
        return Judgements(self.qrels(split), split, f"{self.id}/{split}")

    def queries(self, split: str | None = None, *, skip_invalid: bool = False,
                stats: ReadStats | None = None) -> list[Query]:
        """All queries, or only those judged in `split` (as BEIR does), in file order.

        `skip_invalid` skips malformed lines instead of failing on the first; `stats` (a
        `ReadStats`) counts what was read and skipped. Either reads the file afresh; without them
        the queries are read once per `Dataset`."""
        fresh = skip_invalid or stats is not None
        queries = self._read_queries(skip_invalid, stats) if fresh else self.all_queries
        if split is None:
            return queries
        judged = self.qrels(split)
        queries = [q for q in queries if q.id in judged]
        if not queries:
            raise ListrankError(f"dataset {self.id!r}: no query of {self.queries_file} is judged in split {split!r}")
        return queries


def search_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    roots = []
    if data_dir:
        roots.append(Path(data_dir))
    if os.environ.get("LISTRANK_DATA"):
        roots.append(Path(os.environ["LISTRANK_DATA"]))
    roots.append(cache_dir() / "datasets")
    return roots


def _is_dataset_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "queries.jsonl").exists() or (path / "corpus.jsonl").exists()
                              or (path / "queries.tsv").exists())


def resolve(spec: str | os.PathLike, data_dir: str | os.PathLike | None = None, download: bool = True) -> Dataset:
    """Turn a dataset id, a BEIR folder or a queries file into a `Dataset`."""
    spec_str = str(spec)
    path = Path(spec_str).expanduser()
    if path.is_file():
        return Dataset(id=spec_str, root=None, queries_file=path)
    if _is_dataset_folder(path):
        return Dataset(id=spec_str, root=path)
    if _ID.match(spec_str) and any(part in (".", "..") for part in spec_str.split("/")):
        raise ListrankError(
            f"dataset id {spec_str!r} has a '.' or '..' segment; an id names a folder inside the data roots "
            "and may not leave them (give a path to the folder instead)"
        )
    if not _ID.match(spec_str):
        raise ListrankError(
            f"dataset {spec_str!r} not found: not a file, not a BEIR folder, and not an id like 'beir/scifact'"
        )
    roots = search_roots(data_dir)
    for root in roots:
        candidate = root / spec_str
        if _is_dataset_folder(candidate):
            return Dataset(id=spec_str, root=candidate)
    namespace, _, name = spec_str.partition("/")
    downloadable = name in BEIR_MD5 or bool(os.environ.get("LISTRANK_BEIR_URL"))
    if namespace == "beir" and download and downloadable and "/" not in name:
        return Dataset(id=spec_str, root=download_beir(name, roots[-1] / "beir"))
    looked = ", ".join(str(r / spec_str) for r in roots)
    hint = f"; downloadable BEIR ids: beir/{{{','.join(sorted(BEIR_MD5))}}}" if namespace == "beir" else ""
    raise ListrankError(
        f"dataset {spec_str!r} not found (looked in {looked}); "
        "set LISTRANK_DATA or --data-dir to a folder holding it in BEIR layout "
        f"(corpus.jsonl, queries.jsonl, qrels/<split>.tsv){hint}"
    )


def _md5(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def _fetch(url: str, dest: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
            with Progress("[progress.description]{task.description}", *columns, transient=True) as bar:
                task = bar.add_task(f"download {url.rsplit('/', 1)[-1]}", total=total)
                for block in iter(lambda: resp.read(1 << 20), b""):
                    out.write(block)
                    bar.advance(task, len(block))
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ListrankError(
            f"could not download {url} ({reason}); without internet, put the dataset in BEIR layout "
            "under $LISTRANK_DATA (or --data-dir)"
        ) from None


def download_beir(name: str, dest_parent: Path) -> Path:
    """Download `name`.zip from BEIR, check its md5, unpack it atomically to `dest_parent/name`."""
    # LISTRANK_BEIR_URL lets mirrors (and tests) replace the official host: a template with {name}.
    url = os.environ.get("LISTRANK_BEIR_URL", BEIR_URL).format(name=name)
    dest = dest_parent / name
    dest_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_parent, prefix=f".{name}.{os.getpid()}.download.", suffix=".tmp") as tmp:
        zip_path = Path(tmp) / f"{name}.zip"
        _fetch(url, zip_path)
        expected = BEIR_MD5.get(name)
        actual = _md5(zip_path) if expected else None
        if actual != expected:
            raise ListrankError(f"download of {url} is corrupt: md5 {actual} != published {expected}")
        try:
            with zipfile.ZipFile(zip_path) as zf:
                bad = zf.testzip()
                if bad:
                    raise ListrankError(f"download of {url} is corrupt: CRC error in {bad}")
                _safe_extract(zf, Path(tmp) / "unpacked")
        except zipfile.BadZipFile:
            raise ListrankError(f"download of {url} is not a zip file") from None
        unpacked = Path(tmp) / "unpacked"
        inner = unpacked / name if (unpacked / name).is_dir() else unpacked
        if not (inner / "corpus.jsonl").exists() or not (inner / "queries.jsonl").exists():
            raise ListrankError(f"download of {url} does not hold a BEIR dataset (corpus.jsonl, queries.jsonl)")
        with atomic_dir(dest, replace=lambda existing: True) as staging:  # the cache is ours
            shutil.rmtree(staging)
            shutil.move(str(inner), staging)
    return dest


def _safe_extract(zf: zipfile.ZipFile, target: Path) -> None:
    """Extract, refusing members that would land outside `target` (zip-slip)."""
    target = target.resolve()
    for member in zf.infolist():
        out = (target / member.filename).resolve()
        if not out.is_relative_to(target):
            raise ListrankError(f"refusing zip member outside the target folder: {member.filename!r}")
    zf.extractall(target)
