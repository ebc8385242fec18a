"""The retrieval seam: one `Index` interface, one registry of kinds, one meta.json, one corpus fingerprint.

An index is a folder with a `meta.json`. Its `"kind"` is the family (`"dense"` or `"bm25"`, what
listrank has always written, so older folders stay readable and replaceable) and its `"index"` the
registered kind that opens it (`flat`, `hnsw`, `ivfpq`, `sharded`, `bm25`; a dense folder without
`"index"` is `flat`). A new kind is one module of `listrank/retrieval/`:

    # listrank/retrieval/my_kind.py
    @register("my-kind")
    class MyKind(DenseIndex):          # or Index, for a non-dense kind
        ...

listed in `KIND_MODULES` (or named `package.module:Class` by a plugin); nothing else dispatches on
the kind's name.
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

from listrank.atomic import atomic_write
from listrank.errors import ListrankError
from listrank.formats import Document, Query, Run, parse_key_values

META_FILE = "meta.json"
FAMILIES = ("dense", "bm25")  # meta.json "kind"; listrank.atomic.is_listrank_folder accepts these

# Built-in kinds, imported on first use (importing this package stays cheap: no faiss, no JVM).
KIND_MODULES = {
    "flat": "listrank.retrieval.flat",
    "hnsw": "listrank.retrieval.hnsw",
    "ivfpq": "listrank.retrieval.ivfpq",
    "sharded": "listrank.retrieval.sharded",
    "bm25": "listrank.retrieval.lucene",
}
_KINDS: dict[str, type["Index"]] = {}


class StaleIndexError(ListrankError):
    """An index that does not match the corpus (or encoder) it is used with."""


# --- the one corpus fingerprint ----------------------------------------------------------------

def corpus_fingerprint(docs: Iterable[Document]) -> str:
    """sha256 over every document's id, title and text, in order: the identity of a corpus.

    Every kind records it as meta.json `"corpus"` and is checked against it, whichever file (or
    list) the documents came from: a copied or touched file with the same documents matches, a
    changed document does not.
    """
    digest = hashlib.sha256()
    for d in docs:
        for part in (d.id, d.title, d.text):
            digest.update(part.encode("utf-8"))
            digest.update(b"\x00")
    return digest.hexdigest()


# --- the one meta.json reader / writer ---------------------------------------------------------

def read_meta(index_dir: str | os.PathLike) -> dict[str, Any]:
    """An index folder's meta.json; ListrankError when there is none or it is not a JSON object."""
    path = Path(index_dir) / META_FILE
    if not path.is_file():
        raise ListrankError(f"{index_dir} is not a listrank index (no {META_FILE}); build one with `listrank index`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ListrankError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ListrankError(f"{path}: cannot read it ({e})") from None
    if not isinstance(meta, dict):
        raise ListrankError(f"{path}: not a JSON object")
    return meta


def read_meta_or_none(index_dir: str | os.PathLike) -> dict[str, Any] | None:
    """meta.json, or None where `read_meta` would raise (no index there yet, an unreadable one)."""
    try:
        return read_meta(index_dir)
    except ListrankError:
        return None


def write_meta(folder: str | os.PathLike, meta: dict[str, Any]) -> None:
    with atomic_write(Path(folder) / META_FILE) as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")


def kind_of(meta: dict[str, Any]) -> str | None:
    """The registered kind that opens a folder with this metadata."""
    if meta.get("index"):
        return meta["index"]
    return "flat" if meta.get("kind") == "dense" else meta.get("kind")


# --- registry ----------------------------------------------------------------------------------

def register(name: str):
    """Class decorator: make an index kind available as `index_class(name)`."""

    def decorator(cls):
        if name in _KINDS and _KINDS[name] is not cls:
            raise ValueError(f"index kind {name!r} is already registered by {_KINDS[name].__qualname__}")
        _KINDS[name] = cls
        cls.name = name
        return cls

    return decorator


def available() -> list[str]:
    """Kinds a user can build with `listrank index --kind`."""
    return [k for k in KIND_MODULES if k != "sharded"]


def index_class(name: str) -> type["Index"]:
    if name == "dense":  # the family name, as older configs and regressions say it
        name = "flat"
    if name not in _KINDS:
        module = KIND_MODULES.get(name)
        if module is None and ":" in str(name):
            module_name, _, attr = name.partition(":")
            try:
                cls = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as e:
                raise ListrankError(f"cannot load index kind {name!r}: {e}") from None
            return cls
        if module is None:
            raise ListrankError(f"unknown index kind {name!r}; choose one of {', '.join(available())}")
        importlib.import_module(module)
    return _KINDS[name]


def open_index(index_dir: str | os.PathLike) -> "Index":
    """Open any listrank index folder; its kind comes from its meta.json."""
    meta = read_meta(index_dir)
    kind = kind_of(meta)
    if kind not in KIND_MODULES and kind not in _KINDS:
        raise ListrankError(f"{index_dir}: unknown index kind {kind!r}")
    return index_class(kind)(Path(index_dir), meta)


def index_is_current(index_dir: str | os.PathLike, kind: str, docs: Sequence[Document] | None,
                     encoder=None, params: dict | None = None, *, fingerprint: str | None = None) -> bool:
    """True when `index_dir` holds a complete index of this kind, built from these documents (and
    this encoder and these build parameters): what a cache may reuse."""
    meta = read_meta_or_none(index_dir)
    if meta is None or kind_of(meta) != index_class(kind).name:
        return False
    try:
        index = index_class(kind)(Path(index_dir), meta)
    except ListrankError:
        return False
    return index.matches(docs, encoder, params, fingerprint=fingerprint)


def parse_params(pairs: Iterable[str]) -> dict[str, str]:
    """`--param key=value` pairs (values are converted by the kind that takes them)."""
    return parse_key_values(pairs, "--param", convert=str.strip, underscore_keys=True, example="m=32")


# --- the interface -----------------------------------------------------------------------------

class Index(abc.ABC):
    """One index folder, opened. Subclasses set `family` and implement `build` and `search`.

    `build_params` maps each build-time parameter to its default (`--param key=value` at
    `listrank index`); `search_params` likewise for parameters that may also be given at search
    time (they default to the value recorded at build).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "dense"
    needs_encoder: ClassVar[bool] = True
    build_params: ClassVar[dict[str, Any]] = {}
    search_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = Path(path)
        self.meta = meta
        if meta.get("kind") != self.family or kind_of(meta) != self.name:
            raise ListrankError(f"{path} is a {kind_of(meta)!r} index, not a {self.name!r} one")

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Index":
        """Open `path`, which must be of this class (or, for a base class, of one of its kinds)."""
        index = open_index(path)
        if not isinstance(index, cls):
            what = cls.name or cls.__name__.replace("Index", "").lower() or "listrank"
            raise ListrankError(f"{path} is a {kind_of(index.meta)!r} index, not a {what} one")
        return index

    @classmethod
    def ensure(cls, docs: Sequence[Document], out_dir: str | os.PathLike, *, encoder=None,
               params: dict | None = None, corpus_file: str | os.PathLike | None = None,
               **build_options) -> tuple[Path, bool]:
        """Reuse `out_dir` when it is an index of this kind built from `docs` (with this encoder and
        these parameters), else build it. Returns (path, built)."""
        meta = read_meta_or_none(out_dir)
        if meta is not None and kind_of(meta) == cls.name:
            try:
                if cls(Path(out_dir), meta).matches(docs, encoder, params, corpus_file=corpus_file):
                    return Path(out_dir), False
            except ListrankError:
                pass
        cls.build(docs, out_dir, encoder=encoder, params=params, corpus_file=corpus_file, **build_options)
        return Path(out_dir), True

    # parameters -----------------------------------------------------------------------------

    @classmethod
    def resolve_params(cls, given: dict[str, Any] | None, *, at_search: bool = False) -> dict[str, Any]:
        """`given` (strings from the command line, or values) checked and converted to the types of
        the defaults; unknown keys are errors. At build: build and search parameters with their
        defaults filled in. At search: only the search parameters that were given."""
        allowed = dict(cls.search_params) if at_search else {**cls.build_params, **cls.search_params}
        out: dict[str, Any] = {} if at_search else dict(allowed)
        for key, value in (given or {}).items():
            if key not in allowed:
                what = "search" if at_search else "index"
                names = ", ".join(allowed) or "none"
                raise ListrankError(f"{cls.name} {what} parameter {key!r} is unknown; it takes: {names}")
            default = allowed[key]
            try:
                value = type(default)(value) if not isinstance(default, bool) else str(value).lower() in ("1", "true", "yes")
            except (TypeError, ValueError):
                raise ListrankError(f"{cls.name} parameter {key}={value!r}: expected {type(default).__name__}") from None
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ListrankError(f"{cls.name} parameter {key}={value}: must not be negative")
            out[key] = value
        return out

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.meta.get("params") or {})

    # identity checks --------------------------------------------------------------------------

    def matches(self, docs: Sequence[Document] | None, encoder=None, params: dict | None = None, *,
                fingerprint: str | None = None, corpus_file: str | os.PathLike | None = None) -> bool:
        """Built from these documents (or this fingerprint) with these build parameters?"""
        want = fingerprint if fingerprint is not None else corpus_fingerprint(docs or ())
        if self.meta.get("corpus") != want:
            return False
        if params is not None and any(self.params.get(k) != v for k, v in self.resolve_params(params).items()
                                      if k in self.build_params):
            return False
        return True

    def check_corpus(self, docs: Sequence[Document], corpus_name: str) -> None:
        """Refuse an index built from another corpus than `docs`: its hits would name documents
        that are gone or were rewritten."""
        if self.meta.get("corpus") != corpus_fingerprint(docs):
            raise StaleIndexError(
                f"index {self.path} was not built from the corpus of {corpus_name} (its corpus fingerprint differs: "
                "documents were added, removed or changed since, or it is another corpus); rebuild it with "
                f"`listrank index{'' if self.family == 'dense' else ' --bm25'}`"
            )

    # building and searching -------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def build(cls, docs: Sequence[Document], out_dir: str | os.PathLike, *, encoder=None,
              params: dict | None = None, dataset: str | None = None, batch_size: int = 64,
              show_progress: bool = True, **options) -> Path:
        """Write an index of `docs` at `out_dir` (atomically; only over a folder listrank wrote)."""

    @abc.abstractmethod
    def search(self, queries: Sequence[Query], k: int, *, encoder=None, model: str | None = None,
               batch_size: int = 64, threads: int | None = None, params: dict | None = None,
               show_progress: bool = True) -> Run:
        """Top-k documents per query: a run (qid -> docid -> score)."""


def unique_ids(docs: Sequence[Document]) -> None:
    if not docs:
        raise ListrankError("cannot index an empty corpus")
    seen: set[str] = set()
    for d in docs:
        if d.id in seen:
            raise ListrankError(f"doc id {d.id!r} appears more than once in the corpus; an index needs unique ids")
        seen.add(d.id)
