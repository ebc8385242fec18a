"""The records every subcommand shares, and their readers and writers.

One definition per format (documented in docs/formats.md):

* corpus    BEIR `corpus.jsonl`   {"_id", "title", "text"}
* queries   BEIR `queries.jsonl`  {"_id", "text"}  or a TSV `qid<TAB>text` (no header)
* qrels     BEIR `qrels/<split>.tsv` with header `query-id<TAB>corpus-id<TAB>score`,
            or TREC 4-column `qid 0 docid rel`
* run       JSONL, one query a line: {"query_id", "hits": [{"doc_id", "score"}, ...]} best first;
            TREC 6-column `qid Q0 docid rank score tag` (ranks 1-based) in and out
* synthetic JSONL, one query a line (written by `listrank gen`), see `SyntheticList`

Readers raise `FormatError` ("file:line: what was wrong") on the first bad line, or, when
`skip_invalid=True`, skip it and count it in `ReadStats`.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from listrank.atomic import atomic_write
from listrank.errors import FormatError, ListrankError

PathLike = str | os.PathLike

# qid -> docid -> graded relevance
Qrels = dict[str, dict[str, int]]
# qid -> docid -> score (pytrec_eval's shape); ordering comes from the scores
Run = dict[str, dict[str, float]]


def json_or_str(value: str) -> Any:
    """A flag value as JSON where it parses (`2` -> 2, `true` -> True), else the string itself."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def parse_key_values(items: Iterable[str] | None, flag: str, *, convert: Callable[[str], Any] = str,
                     underscore_keys: bool = False, example: str | None = None) -> dict[str, Any]:
    """Repeated `KEY=VALUE` flags -> a dict, the one parser of `--param`, `--backend-opt`, `--loss-opt`.

    `convert` turns each value (`str`, `str.strip`, `json_or_str`); `underscore_keys` writes
    `ef-search` as `ef_search`; a bad item raises `ListrankError` naming `flag` (and `example`)."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ListrankError(f"{flag} {item!r}: expected KEY=VALUE" + (f", e.g. {example}" if example else ""))
        key = key.strip()
        out[key.replace("-", "_") if underscore_keys else key] = convert(value)
    return out


def slug(text: str) -> str:
    """A file-name-safe form of a name (cache entries, plot files): each run of characters other
    than ASCII letters, digits, `_`, `.`, `-` becomes one `_`, none at the ends; 'x' if nothing is left."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""

    def full_text(self, sep: str = " ") -> str:
        """Title and text joined, as dense encoders and flat BM25 see a BEIR document."""
        return f"{self.title}{sep}{self.text}" if self.title else self.text


@dataclass(frozen=True)
class Query:
    id: str
    text: str


@dataclass
class SyntheticPassage:
    id: str  # `{qid}_l_{level}_d_{i}`, the id scheme of the published SyCL data
    level: int
    text: str
    # Set when the text was not written for this query but taken from another query's list (the id
    # of that passage): `gen --strategy levels-fewshot-borrow-v1` takes level 0 that way. Written
    # to JSON only when set, so other lines keep their shape.
    borrowed_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"id": self.id, "level": self.level, "text": self.text}
        if self.borrowed_from is not None:
            obj["borrowed_from"] = self.borrowed_from
        return obj


@dataclass
class SyntheticList:
    """One query and its LLM-written passages at graded relevance levels (`listrank gen` output)."""

    query_id: str
    query: str
    passages: list[SyntheticPassage]
    generator: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def passage_id(query_id: str, level: int, index: int) -> str:
        return f"{query_id}_l_{level}_d_{index}"

    def to_json(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "query": self.query,
            "passages": [p.to_json() for p in self.passages],
            "generator": self.generator,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "SyntheticList":
        passages = obj["passages"]
        if not isinstance(passages, list) or not passages:
            raise ValueError("'passages' must be a non-empty list")
        return cls(
            query_id=str(obj["query_id"]),
            query=_text(obj["query"], "query"),
            passages=[
                SyntheticPassage(id=str(p["id"]), level=int(p["level"]), text=_text(p["text"], "text"),
                                 borrowed_from=None if p.get("borrowed_from") is None else str(p["borrowed_from"]))
                for p in passages
            ],
            generator=dict(obj.get("generator") or {}),
        )


@dataclass
class ReadStats:
    """How many lines a reader took and skipped (with `skip_invalid=True`)."""

    read: int = 0
    skipped: int = 0
    first_errors: list[str] = field(default_factory=list)

    def skip(self, err: FormatError) -> None:
        self.skipped += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(str(err))


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string, got {type(value).__name__}")
    return value


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise FormatError(path, None, "no such file")
    if path.is_dir():
        raise FormatError(path, None, "is a folder, expected a file")


def _lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without newline), skipping blank lines.

    A UTF-8 byte order mark at the start is dropped (editors on Windows write one): it is not part
    of the first id.
    """
    path = Path(path)
    _check_exists(path)
    with open(path, encoding="utf-8-sig") as fh:
        try:
            for lineno, line in enumerate(fh, 1):
                line = line.rstrip("\n").rstrip("\r")
                if line.strip():
                    yield lineno, line
        except UnicodeDecodeError as e:
            raise FormatError(path, None, f"not UTF-8 text ({e.reason})") from None


def read_jsonl(
    path: PathLike,
    parse: Callable[[dict[str, Any]], Any],
    *,
    skip_invalid: bool = False,
    stats: ReadStats | None = None,
    numbered: bool = False,
) -> Iterator[Any]:
    """Parse each JSON object line with `parse`; any error becomes `file:line: reason`.

    `numbered=True` yields (line number, record) pairs."""
    stats = stats if stats is not None else ReadStats()
    for lineno, line in _lines(path):
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            record = parse(obj)
        except json.JSONDecodeError as e:
            err = FormatError(path, lineno, f"invalid JSON ({e.msg} at column {e.colno})")
        except KeyError as e:
            err = FormatError(path, lineno, f"missing field {e.args[0]!r}")
        except (ValueError, TypeError) as e:
            err = FormatError(path, lineno, str(e))
        except RecursionError:
            err = FormatError(path, lineno, "JSON nested too deeply")
        else:
            stats.read += 1
            yield (lineno, record) if numbered else record
            continue
        if not skip_invalid:
            raise err
        stats.skip(err)


def _require_nonempty(path: PathLike, items: list, what: str) -> list:
    if not items:
        raise FormatError(path, None, f"empty file: expected {what}")
    return items


# --- corpus ---------------------------------------------------------------------------------

def _parse_document(obj: dict[str, Any]) -> Document:
    doc_id = obj["_id"] if "_id" in obj else obj["id"]
    return Document(id=str(doc_id), text=_text(obj["text"], "text"), title=_text(obj.get("title") or "", "title"))


def read_corpus(path: PathLike, *, skip_invalid: bool = False) -> list[Document]:
    """Documents in file order; a doc id that appears twice is an error (`file:line`), as an index
    and its runs could not tell the two documents apart."""
    docs = []
    first_line: dict[str, int] = {}
    for lineno, doc in read_jsonl(path, _parse_document, skip_invalid=skip_invalid, numbered=True):
        if doc.id in first_line:
            raise FormatError(path, lineno, f"doc id {doc.id!r} appears more than once (first on line {first_line[doc.id]})")
        first_line[doc.id] = lineno
        docs.append(doc)
    return _require_nonempty(path, docs, 'documents {"_id", "title", "text"}')


def write_corpus(path: PathLike, docs: Iterable[Document]) -> None:
    with atomic_write(path) as fh:
        for d in docs:
            fh.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text}, ensure_ascii=False) + "\n")


# --- queries --------------------------------------------------------------------------------

def _parse_query(obj: dict[str, Any]) -> Query:
    qid = obj["_id"] if "_id" in obj else obj["id"] if "id" in obj else obj["query_id"]
    text = obj["text"] if "text" in obj else obj["query"]
    text = _text(text, "text")
    if not text.strip():
        raise ValueError("empty query text")
    return Query(id=str(qid), text=text)


def read_queries(path: PathLike, *, skip_invalid: bool = False, stats: ReadStats | None = None) -> list[Query]:
    """Queries from `.jsonl` ({"_id", "text"}) or `.tsv`/`.txt` (`qid<TAB>text`)."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    if path.suffix in (".jsonl", ".json"):
        queries = list(read_jsonl(path, _parse_query, skip_invalid=skip_invalid, stats=stats))
    else:
        queries = []
        for lineno, line in _lines(path):
            parts = line.split("\t")
            if not queries and not stats.skipped and _is_queries_header(parts):
                continue  # `qid<TAB>text`-style header line: not a query
            if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
                err = FormatError(path, lineno, f"expected 'qid<TAB>text', got {line[:60]!r}")
                if not skip_invalid:
                    raise err
                stats.skip(err)
                continue
            stats.read += 1
            queries.append(Query(id=parts[0].strip(), text="\t".join(parts[1:]).strip()))
    seen: set[str] = set()
    for q in queries:
        if q.id in seen:
            raise FormatError(path, None, f"query id {q.id!r} appears more than once")
        seen.add(q.id)
    return _require_nonempty(path, queries, "queries")


_QUERY_ID_HEADERS = {"qid", "query-id", "query_id", "queryid", "id", "_id"}
_QUERY_TEXT_HEADERS = {"text", "query", "query-text", "query_text", "querytext"}


def _is_queries_header(parts: list[str]) -> bool:
    return (len(parts) == 2 and parts[0].strip().lower() in _QUERY_ID_HEADERS
            and parts[1].strip().lower() in _QUERY_TEXT_HEADERS)


def write_queries(path: PathLike, queries: Iterable[Query]) -> None:
    with atomic_write(path) as fh:
        for q in queries:
            fh.write(json.dumps({"_id": q.id, "text": q.text}, ensure_ascii=False) + "\n")


# --- qrels ----------------------------------------------------------------------------------

def read_qrels(path: PathLike) -> Qrels:
    """BEIR TSV (`query-id corpus-id score`, header optional) or TREC (`qid 0 docid rel`)."""
    qrels: Qrels = {}
    first = True
    for lineno, line in _lines(path):
        # BEIR TSV is tab-separated, so an id may hold spaces; TREC qrels are whitespace-separated.
        parts = [p.strip() for p in line.split("\t")] if "\t" in line else line.split()
        if first and [p.lower() for p in parts[:2]] == ["query-id", "corpus-id"]:
            first = False
            continue
        first = False
        if len(parts) == 3:
            qid, docid, rel = parts
        elif len(parts) == 4:
            qid, _, docid, rel = parts
        else:
            raise FormatError(
                path, lineno, f"expected 'qid docid score' (BEIR) or 'qid 0 docid rel' (TREC), got {len(parts)} columns"
            )
        try:
            value = float(rel)
        except ValueError:
            raise FormatError(path, lineno, f"relevance {rel!r} is not a number") from None
        if not math.isfinite(value):
            raise FormatError(path, lineno, f"relevance {rel!r} is not a finite number")
        if not qid or not docid:
            raise FormatError(path, lineno, "empty query or document id")
        grade = int(value)
        judged = qrels.setdefault(qid, {})
        if judged.get(docid, grade) != grade:
            raise FormatError(path, lineno, f"({qid!r}, {docid!r}) is judged twice with different grades "
                                            f"({judged[docid]} and {grade})")
        judged[docid] = grade
    _require_nonempty(path, list(qrels), "relevance judgements")
    return qrels


def write_qrels(path: PathLike, qrels: Qrels) -> None:
    """BEIR TSV with header."""
    with atomic_write(path) as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in qrels.items():
            for docid, rel in docs.items():
                fh.write(f"{qid}\t{docid}\t{rel}\n")


# --- runs -----------------------------------------------------------------------------------

class RunFormat(str, enum.Enum):
    """How a run is written; readers detect the format from the content."""

    jsonl = "jsonl"
    trec = "trec"


def sorted_hits(hits: dict[str, float]) -> list[tuple[str, float]]:
    """Best first; ties broken by doc id (descending, as trec_eval does) so ranks are stable."""
    return sorted(hits.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)


def _score(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"score {value!r} is not a number")
    try:
        score = float(value)
    except ValueError:
        raise ValueError(f"score {value!r} is not a number") from None
    if not math.isfinite(score):
        raise ValueError(f"score {value!r} is not a finite number (a run with NaN or infinite scores "
                         "cannot be ranked; check the model that wrote it)")
    return score


def _parse_run_line(obj: dict[str, Any]) -> tuple[str, dict[str, float]]:
    hits = obj["hits"]
    if not isinstance(hits, list):
        raise ValueError("'hits' must be a list")
    out: dict[str, float] = {}
    for h in hits:
        if not isinstance(h, dict):
            raise ValueError("each hit must be an object {\"doc_id\", \"score\"}")
        doc_id = str(h["doc_id"])
        if doc_id in out:
            raise ValueError(f"doc id {doc_id!r} appears twice in the hits of one query")
        out[doc_id] = _score(h["score"])
    return str(obj["query_id"]), out


def _read_trec_run(path: PathLike) -> Run:
    run: Run = {}
    for lineno, line in _lines(path):
        parts = line.split()
        if len(parts) != 6:
            raise FormatError(path, lineno, f"expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}")
        qid, _, docid, _, score, _ = parts
        try:
            value = _score(score)
        except ValueError as e:
            raise FormatError(path, lineno, str(e)) from None
        hits = run.setdefault(qid, {})
        if docid in hits:
            raise FormatError(path, lineno, f"({qid!r}, {docid!r}) appears twice in the run")
        hits[docid] = value
    return run


def read_run(path: PathLike) -> Run:
    """A run in listrank JSONL or TREC format (detected from the first non-blank line)."""
    first = next(_lines(path), None)
    if first is None:
        raise FormatError(path, None, "empty file: expected a run (JSONL or TREC)")
    if first[1].lstrip().startswith("{"):
        run: Run = {}
        for lineno, (qid, hits) in read_jsonl(path, _parse_run_line, numbered=True):
            seen = run.setdefault(qid, {})
            twice = next((d for d in hits if d in seen), None)
            if twice is not None:
                raise FormatError(path, lineno, f"({qid!r}, {twice!r}) appears twice in the run")
            seen.update(hits)
    else:
        run = _read_trec_run(path)
    return run


SCORE_DECIMALS = 6  # what a written run keeps of each score


def trec_unsafe_id(ids: Iterable[str]) -> str | None:
    """The first id a whitespace-separated TREC line could not hold (empty, or with whitespace)."""
    for i in ids:
        if not i or any(c.isspace() for c in i):
            return i
    return None


def check_run(run: Run, fmt: RunFormat = RunFormat.jsonl, tag: str = "listrank") -> None:
    """Raise `ListrankError` if `run` cannot be written faithfully: a non-finite score, or (TREC) an
    id with whitespace, which would shift the columns that `listrank eval` and trec_eval read."""
    from listrank.errors import ListrankError

    for qid, hits in run.items():
        for docid, score in hits.items():
            if not math.isfinite(score):
                raise ListrankError(f"query {qid!r}: document {docid!r} has the non-finite score {score}; "
                                    "refusing to write a run that cannot be ranked (check the model)")
    if RunFormat(fmt) is RunFormat.trec:
        bad = trec_unsafe_id(run) or trec_unsafe_id(d for hits in run.values() for d in hits) or trec_unsafe_id([tag])
        if bad is not None:
            raise ListrankError(f"id {bad!r} is empty or holds whitespace, which a TREC run (space-separated "
                                "columns) cannot represent; write --format jsonl instead")


def write_run(path: PathLike, run: Run, fmt: RunFormat = RunFormat.jsonl, tag: str = "listrank") -> None:
    """Write a run best hit first. Scores are rounded to `SCORE_DECIMALS` before sorting, so hits
    that print equal are ordered by doc id (descending), exactly as trec_eval orders what it reads."""
    fmt = RunFormat(fmt)
    check_run(run, fmt, tag)
    with atomic_write(path) as fh:
        for qid, hits in run.items():
            ranked = sorted_hits({d: round(s, SCORE_DECIMALS) + 0.0 for d, s in hits.items()})
            if fmt is RunFormat.jsonl:
                obj = {"query_id": qid, "hits": [{"doc_id": d, "score": s} for d, s in ranked]}
                fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
            else:
                for rank, (docid, score) in enumerate(ranked, 1):
                    fh.write(f"{qid} Q0 {docid} {rank} {score:.{SCORE_DECIMALS}f} {tag}\n")


# --- synthetic lists ------------------------------------------------------------------------

def is_synthetic_file(path: PathLike) -> bool:
    """Is `path` `listrank gen` output? The one answer every stage uses (train sources, eval --level-audit).

    Its first non-blank line decides: a JSON object with "passages" is, one without is not (a
    queries or corpus file). When that line is not a JSON object (or the file is blank), a
    `.jsonl`/`.json` name decides, so that `read_synthetic` reports the bad line as `file:line`
    (or `--skip-invalid` skips it)."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip():
                try:
                    obj = json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    break
                if isinstance(obj, dict):
                    return "passages" in obj
                break
    return p.suffix in (".jsonl", ".json")


def read_synthetic(path: PathLike, *, skip_invalid: bool = False, stats: ReadStats | None = None) -> list[SyntheticList]:
    lists = list(read_jsonl(path, SyntheticList.from_json, skip_invalid=skip_invalid, stats=stats))
    return _require_nonempty(path, lists, "synthetic lists (listrank gen output)")


def synthetic_jsonl_line(record: SyntheticList) -> str:
    return json.dumps(record.to_json(), ensure_ascii=False) + "\n"
