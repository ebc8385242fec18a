"""`listrank gen`: queries -> graded synthetic passage lists, validated, resumable, sharded.

The loop: take the next batch of pending queries, ask the backend for all of them at once,
validate every answer, send the invalid ones back (with what was wrong) up to `max_attempts`
times, then append the batch's lines to the output and the failures to the rejects file, each
flushed and fsynced. A kill loses at most the batch in flight; a re-run skips what is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from rich.console import Console
from rich.progress import Progress, TextColumn

from listrank import __version__
from listrank.atomic import atomic_dir, atomic_write, check_output_file, check_output_folder, is_listrank_folder
from listrank.errors import FormatError, ListrankError
from listrank.formats import (
    Document,
    Query,
    ReadStats,
    SyntheticList,
    SyntheticPassage,
    parse_key_values,
    read_synthetic,
    synthetic_jsonl_line,
    write_corpus,
    write_qrels,
    write_queries,
)
from listrank.gen.backends.base import Backend, Completion, Sampling, get_backend
from listrank.gen.prompts import DEFAULT_VERSION, level_key
from listrank.gen.strategies.base import help_text as strategy_help
from listrank.options import data_dir_option, option, recorded
from listrank.progress import progress_bar

console = Console(stderr=True)

# Settings that change what is generated: a resumed run must match the lines already written.
_IDENTITY_KEYS = ("backend", "model", "strategy", "prompt_version", "levels", "per_level", "passage_words",
                  "temperature", "top_p", "repeat_penalty", "max_tokens", "seed", "filter")
# What a key missing from lines written before it existed meant.
_IDENTITY_MISSING = {"repeat_penalty": 1.0, "strategy": "sycl-v1", "filter": None}


@dataclass
class GenConfig:
    """Everything `listrank gen` does besides the queries file: one field per flag, each declared
    once with its help and default (`listrank.options`; the CLI's flags are made from them).

    `__post_init__` checks them; the fields not declared `record=False` go into every line's
    `generator` (what made the list; not where files go, which slice, or how fast)."""

    output: Path = option(help="Synthetic lists (JSONL); re-running resumes it.", flags=("--output", "-o"),
                          record=False)
    # where the queries come from (besides a queries file, the command's argument)
    dataset: str | None = option(None, "Take the queries of a dataset id or BEIR folder.")
    split: str | None = option(None, "With --dataset: only queries judged in this split.")
    data_dir: Path | None = data_dir_option("Where dataset ids resolve (else $LISTRANK_DATA).")
    skip_invalid: bool = option(False, "Skip malformed query lines (warn, count).", flags=("--skip-invalid",),
                                record=False)
    backend: str = option("llama-cpp", "llama-cpp, vllm, openai-http, or module:Class.")
    model: str | None = option(None, "GGUF path (llama-cpp; default: bundled SmolLM2-135M-Instruct), HF id or "
                                     "folder (vllm).")
    tensor_parallel_size: int | None = option(None, "vllm: GPUs per model.", record=False)  # -> backend_options
    backend_options: dict[str, Any] = option(
        help="Backend setting KEY=VALUE (repeatable), e.g. n_ctx=8192.", flags=("--backend-opt",),
        default_factory=dict, cli_type=list[str], cli_default=[], parse=lambda pairs: parse_backend_options(pairs),
        record=False)  # how the backend runs (threads, server URL, n_ctx), not what a line says
    # A name of listrank.gen.strategies, or "auto": the default for the backend (see there).
    strategy: str = option("auto", "How lists are asked for: " + strategy_help())
    # None, "bm25" or "encoder": keep a list only if that scorer puts level 3 above level 0
    # (listrank.gen.filters); the others go to the rejects file.
    filter: str | None = option(None, "Keep a list only if this scorer puts level 3 above level 0: bm25 or encoder "
                                      "(the others go to the rejects file).")
    prompt_version: str = option(DEFAULT_VERSION, "Built-in prompt template (sycl-v1 strategy).")
    prompt_file: Path | None = option(None, "Own template (YAML/JSON with `user`, or text).")
    levels: tuple[int, ...] = option((3, 2, 1, 0), "Relevance levels to write, best first.", cli_type=str,
                                     cli_default="3,2,1,0", parse=lambda spec: parse_levels(spec))
    per_level: int = option(2, "Passages per level.")
    passage_words: int = option(80, "Passage length the prompt asks for.")
    min_words: int = option(5, "Reject passages shorter than this.")  # validation bounds for each passage
    max_words: int = option(400, "Reject passages longer than this.")
    temperature: float = option(0.7, "Sampling temperature.")
    top_p: float = option(0.95, "Nucleus sampling: the smallest token set of this probability.")
    repeat_penalty: float | None = option(None, "Damp tokens already written, 1.0 = off (default: the backend's, "
                                                "1.1 llama-cpp, 1.0 others).")
    max_tokens: int = option(2048, "Per answer.")
    seed: int = option(0, "Same seed + backend + model + prompt = same output.")
    max_attempts: int = option(3, "Tries per query before it goes to the rejects file.")
    batch_size: int | None = option(None, "Queries per batch (default: the backend's).", record=False)
    shard: tuple[int, int] = option((0, 1), "i/n: only this machine's share of the queries (i from 0).",
                                    cli_type=str, cli_default=None, parse=lambda spec: parse_shard(spec),
                                    record=False)
    first: int | None = option(None, "Only the first N queries of the input: a fixed slice, so a re-run resumes the "
                                     "same queries.", record=False)
    limit: int | None = option(None, "At most this many new queries.", record=False)  # after sharding and resume
    rejects: Path | None = option(None, "Default: `<output>.rejects.jsonl`.", record=False)
    retry_rejected: bool = option(False, "Try the queries in the rejects file again.", flags=("--retry-rejected",),
                                  record=False)
    export_beir: Path | None = option(None, "Also write a BEIR folder with graded qrels.", record=False)
    export_split: str = option("train", "Qrels split name of the BEIR export.", record=False)
    progress: bool = option(True, "No progress bar.", flags=("--no-progress",), cli_type=bool, cli_default=False,
                            parse=lambda no_progress: not no_progress, record=False)

    def __post_init__(self):
        self.output = Path(self.output)
        self.levels = tuple(int(lv) for lv in self.levels)
        if self.tensor_parallel_size is not None:
            self.backend_options = {**self.backend_options, "tensor_parallel_size": str(self.tensor_parallel_size)}
        index, count = self.shard
        if count < 1 or not 0 <= index < count:
            raise ListrankError(f"--shard {index}/{count}: expected i/n with 0 <= i < n")
        if self.first is not None and self.first < 1:
            raise ListrankError(f"--first must be at least 1, got {self.first}")
        if self.max_attempts < 1:
            raise ListrankError("--max-attempts must be at least 1")
        if self.min_words < 1 or self.max_words < self.min_words:
            raise ListrankError(f"passage length bounds {self.min_words}..{self.max_words} words are empty")
        if not 0.0 <= self.top_p <= 1.0 or self.temperature < 0 or self.max_tokens < 1:
            raise ListrankError("need temperature >= 0, 0 <= top-p <= 1 and max-tokens >= 1")
        if self.repeat_penalty is not None and not self.repeat_penalty > 0:
            raise ListrankError("--repeat-penalty must be > 0 (1.0 = off)")
        if self.filter == "none":
            self.filter = None
        if self.batch_size is not None and self.batch_size < 1:
            raise ListrankError("--batch-size must be at least 1")

    @property
    def rejects_path(self) -> Path:
        if self.rejects is not None:
            return Path(self.rejects)
        name = self.output.name[: -len(".jsonl")] if self.output.name.endswith(".jsonl") else self.output.name
        return self.output.with_name(name + ".rejects.jsonl")

    @property
    def sampling(self) -> Sampling:
        return Sampling(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                        repeat_penalty=1.0 if self.repeat_penalty is None else self.repeat_penalty)


@dataclass
class GenSummary:
    queries: int = 0  # in this shard
    already_done: int = 0  # found in the output (or rejects) when the run started
    done: int = 0  # written by this run
    retried: int = 0  # queries that needed more than one attempt
    attempts: int = 0  # requests sent
    rejected: int = 0
    filtered: int = 0  # of the rejected: lists the --filter scorer turned down
    passages: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    dropped_partial_bytes: int = 0
    output: str = ""
    rejects: str = ""
    export: str | None = None
    reject_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s else 0.0


# --- pure helpers -------------------------------------------------------------------------------

def shard_of(query_id: str, count: int) -> int:
    """Which of `count` shards owns a query: a hash of its id, so file order does not matter."""
    digest = hashlib.blake2b(query_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def request_seed(seed: int, query_id: str, attempt: int) -> int:
    """A per-request seed: the same query gets the same sample whatever batch or shard it is in."""
    digest = hashlib.blake2b(f"{seed}\0{query_id}\0{attempt}".encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


class InvalidAnswer(ValueError):
    """The model's answer broke a rule; the message is fed back to the model on retry."""


def _normalise(text: str) -> str:
    return " ".join(text.casefold().split())


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(text: object, limit: int | None = None) -> str:
    """Text safe to write as UTF-8 and to send back to a model: non-text becomes its repr, lone
    surrogates become U+FFFD."""
    if not isinstance(text, str):
        text = repr(text)
    if limit is not None:
        text = text[:limit]
    return text if _encodable(text) else text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def parse_json_answer(completion: Completion, where: str | None = None) -> Any:
    """The JSON value of an LLM's answer, parsed with `json` (never eval); `InvalidAnswer` saying why not.

    A backend's error, text that is not a string, absurdly nested JSON, an answer cut off at the
    token limit and invalid JSON each get their reason; a ``` fence around the JSON is dropped.
    `where` names the answer in the reasons (per-level strategies: `level_2`); without it the
    reasons speak of "the answer". The reasons go back to the model when a query is retried."""
    if completion.error:
        raise InvalidAnswer(str(completion.error))
    if not isinstance(completion.text, str):
        raise InvalidAnswer(f"the answer is a {type(completion.text).__name__}, not text")
    text = completion.text.strip()
    if text.startswith("```"):  # models like to fence JSON even when told not to
        text = text.strip("`").removeprefix("json").strip()
    try:
        # strict=False: raw newlines inside strings, which grammars let small models write, are fine.
        return json.loads(text, strict=False)
    except RecursionError:
        raise InvalidAnswer("the JSON is nested too deeply") from None
    except json.JSONDecodeError as e:
        if completion.finish_reason == "length":
            raise InvalidAnswer(f"{where} was cut off at the token limit" if where else
                                "the answer was cut off at the token limit; write shorter passages") from None
        reason = f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
        raise InvalidAnswer(f"{where}: {reason}" if where else reason) from None


def validate_answer(
    completion: Completion, query: str, levels: Sequence[int], per_level: int, min_words: int, max_words: int
) -> dict[int, list[str]]:
    """Parse the answer with `json` (never eval) and check it; raise `InvalidAnswer` saying why.

    Any reply is handled: a backend's error, text that is not a string, absurdly nested JSON and
    invalid Unicode (lone surrogates) are invalid answers with a reason, never an exception."""
    obj = parse_json_answer(completion)
    if not isinstance(obj, dict):
        raise InvalidAnswer(f"expected a JSON object, got {type(obj).__name__}")
    by_level: dict[int, list[str]] = {}
    seen: dict[str, str] = {_normalise(query): "the query"}
    for lv in levels:
        key = level_key(lv)
        if key not in obj:
            raise InvalidAnswer(f"missing key {key!r}")
        items = obj[key]
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or len(items) < per_level:
            n = len(items) if isinstance(items, list) else 0
            raise InvalidAnswer(f"{key} needs {per_level} passage(s), got {n}")
        passages = []
        for i, passage in enumerate(items[:per_level]):
            where = f"{key}[{i}]"
            if not isinstance(passage, str) or not passage.strip():
                raise InvalidAnswer(f"{where} is empty or not a string")
            if not _encodable(passage):
                raise InvalidAnswer(f"{where} is not valid Unicode (a lone surrogate)")
            passage = " ".join(passage.split())
            words = len(passage.split())
            if not min_words <= words <= max_words:
                raise InvalidAnswer(f"{where} has {words} words, expected {min_words} to {max_words}")
            norm = _normalise(passage)
            if norm in seen:
                raise InvalidAnswer(f"{where} repeats {seen[norm]}")
            seen[norm] = where
            passages.append(passage)
        by_level[lv] = passages
    return by_level


def select_queries(queries: Iterable[Query], shard: tuple[int, int]) -> list[Query]:
    index, count = shard
    return [q for q in queries if count == 1 or shard_of(q.id, count) == index]


# --- append-only JSONL with crash recovery -------------------------------------------------------

def recover_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The complete lines of `path` and the number of bytes of a partial last line, cut off here.

    A process killed while appending can leave one unterminated line; it is the batch that was in
    flight, so it is dropped (and re-generated). A complete line that is not JSON is real damage
    and stops the run with `file:line`.
    """
    if not path.exists():
        return [], 0
    with open(path, "r+b") as fh:
        data = fh.read()
        cut = data.rfind(b"\n") + 1
        dropped = len(data) - cut
        if dropped:
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())
    records = []
    for lineno, line in enumerate(data[:cut].split(b"\n")[:-1], 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or "query_id" not in obj:
                raise ValueError("expected a JSON object with 'query_id'")
        except (ValueError, UnicodeDecodeError) as e:
            raise FormatError(path, lineno, f"damaged line ({e}); move the file aside or fix the line") from None
        records.append(obj)
    return records, dropped


class AppendLog:
    """An output opened for appending whole batches: write, flush, fsync; locked against a second writer."""

    def __init__(self, path: Path, lazy: bool = False):
        self.path = path
        self.fh = None
        if not lazy:  # a rejects file is only created when there is something to reject
            self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "ab")
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            self.fh = None
            raise ListrankError(f"{self.path} is being written by another process (another `listrank gen`?)") from None

    def append(self, lines: list[str]) -> None:
        if not lines:
            return
        if self.fh is None:
            self._open()
        self.fh.write("".join(lines).encode("utf-8"))
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


# --- the run ------------------------------------------------------------------------------------

def _batches(items: list[Query], size: int) -> Iterator[list[Query]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _progress(enabled: bool) -> Progress:
    return progress_bar(
        TextColumn("queries"),
        TextColumn("{task.fields[passages_s]:.1f} passages/s"),
        TextColumn("{task.fields[tokens_s]:.0f} tok/s"),
        TextColumn("{task.fields[rejected]} rejected"),
        enabled=enabled,
    )


def _check_same_settings(path: Path, existing: dict[str, Any], current: dict[str, Any]) -> None:
    if existing:
        existing = {**_IDENTITY_MISSING, **existing}
    diff = [k for k in _IDENTITY_KEYS if k in existing and existing.get(k) != current.get(k)]
    if diff:
        detail = ", ".join(f"{k}: {existing.get(k)!r} -> {current.get(k)!r}" for k in diff)
        raise ListrankError(
            f"{path} was started with other generation settings ({detail}); "
            "resume with the same settings or write to a new --output"
        )


def generate(config: GenConfig, queries: Sequence[Query], backend: Backend | None = None) -> GenSummary:
    """Generate graded lists for `queries` into `config.output`, resuming what is already there."""
    started = time.perf_counter()
    from listrank.gen.filters import get_filter
    from listrank.gen.strategies import get_strategy, resolve_strategy

    custom_prompt = config.prompt_file is not None or config.prompt_version != DEFAULT_VERSION
    name = resolve_strategy(config.strategy, backend.name if backend is not None else config.backend, custom_prompt)
    strategy = get_strategy(name)(config)
    list_filter = get_filter(config.filter)
    summary = GenSummary(output=str(config.output), rejects=str(config.rejects_path))

    selected = select_queries(queries, config.shard)
    summary.queries = len(selected)

    # Validate before working: nothing is created for a run that cannot start.
    if config.rejects_path.resolve() == config.output.resolve():
        raise ListrankError(f"--rejects {config.rejects_path} is the output file; give another name")
    check_output_file(config.output, what="--output")
    check_output_file(config.rejects_path, inputs=[config.output], what="--rejects")
    if config.export_beir is not None:
        check_output_folder(config.export_beir, inputs=[config.output, config.rejects_path], what="--export-beir")
    existed = config.output.exists()
    if backend is None and not existed:
        get_backend(config.backend)  # an unknown backend fails here, before the output exists
    # Lock before looking: a partial last line is only safe to cut when nobody is still writing it.
    out = AppendLog(config.output)
    ok = False
    try:
        result = _generate_locked(config, queries, backend, out, strategy, list_filter, summary, selected, started)
        ok = True
        return result
    finally:
        out.close()
        if not ok and not existed:
            # A run that failed before writing anything leaves no empty output behind.
            with contextlib.suppress(OSError):
                if config.output.stat().st_size == 0:
                    config.output.unlink()


def _generate_locked(config, queries, backend, out, strategy, list_filter, summary, selected, started):
    done_records, summary.dropped_partial_bytes = recover_jsonl(config.output)
    rejected_records, dropped_rejects = recover_jsonl(config.rejects_path)
    if summary.dropped_partial_bytes or dropped_rejects:
        console.print(f"[yellow]note:[/] dropped a partial last line left by an interrupted run in {config.output}")
    done_ids = {str(r["query_id"]) for r in done_records}
    rejected_ids = {str(r["query_id"]) for r in rejected_records} - done_ids
    if config.retry_rejected and rejected_ids:
        # Forget the old rejects before retrying them; a crash now only makes them pending again.
        keep = [r for r in rejected_records if str(r["query_id"]) in done_ids]
        with atomic_write(config.rejects_path) as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in keep)
        rejected_ids = set()
    skip = done_ids | rejected_ids
    pending = [q for q in selected if q.id not in skip]
    summary.already_done = len(selected) - len(pending)
    if config.limit is not None:
        pending = pending[: config.limit]

    if pending:
        owned = backend is None  # a backend handed in by the caller is the caller's to close
        if owned:
            backend = get_backend(config.backend)(config.model, **config.backend_options)
        if config.repeat_penalty is None:
            config = replace(config, repeat_penalty=backend.default_repeat_penalty)
        generator = {
            "backend": backend.name or config.backend,
            "model": backend.model_id,
            "strategy": strategy.name,
            "prompt_version": strategy.prompt_version,
            "levels": list(config.levels),
            "per_level": config.per_level,
            "passage_words": config.passage_words,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "repeat_penalty": config.repeat_penalty,
            "max_tokens": config.max_tokens,
            "seed": config.seed,
            "filter": config.filter,
        }
        # the other settings that made the lists (listrank.options.recorded: not where files go)
        generator.update({k: v for k, v in recorded(config).items() if k not in generator})
        generator = {
            **generator,
            **strategy.record_extra(),
            "listrank": __version__,
        }
        if done_records:
            _check_same_settings(config.output, done_records[0].get("generator") or {}, generator)
        try:
            strategy.check_backend(backend)
            _run(config, pending, backend, strategy, list_filter, generator, summary, out)
        finally:
            if owned:
                backend.close()

    if config.export_beir is not None:
        if config.output.exists() and config.output.stat().st_size:
            summary.export = str(export_beir(config.output, config.export_beir, config.export_split))
        else:
            console.print(f"[yellow]warning:[/] nothing to export: {config.output} has no lists yet")
    summary.wall_s = time.perf_counter() - started
    return summary


def _run(config, pending, backend, strategy, list_filter, generator, summary, out: AppendLog) -> None:
    batch_size = config.batch_size or backend.default_batch_size
    rejects = AppendLog(config.rejects_path, lazy=True)
    run_start = time.perf_counter()
    try:
        with _progress(config.progress) as bar:
            task = bar.add_task("gen", total=len(pending), passages_s=0.0, tokens_s=0.0, rejected=0)
            for batch in _batches(pending, batch_size):
                good, bad = strategy.generate_batch(batch, backend, summary)
                records = {}
                for q in batch:
                    if q.id in good:
                        g = good[q.id]
                        passages = [
                            SyntheticPassage(id=SyntheticList.passage_id(q.id, lv, i), level=lv, text=text,
                                             borrowed_from=g.borrowed.get((lv, i)))
                            for lv in config.levels
                            for i, text in enumerate(g.by_level[lv])
                        ]
                        records[q.id] = SyntheticList(q.id, q.text, passages, {**generator, "attempts": g.attempts})
                if list_filter is not None and records:
                    for qid, reason in list_filter.check(list(records.values())).items():
                        record = records.pop(qid)
                        bad[qid] = (reason, synthetic_jsonl_line(record).strip())
                        summary.filtered += 1
                reject_lines, out_lines = [], []
                for q in batch:
                    if q.id in records:
                        out_lines.append(synthetic_jsonl_line(records[q.id]))
                        summary.passages += len(records[q.id].passages)
                    else:
                        reason, last_answer = bad[q.id]
                        summary.reject_reasons[reason] = summary.reject_reasons.get(reason, 0) + 1
                        reject_lines.append(json.dumps({
                            "query_id": q.id, "query": q.text, "reason": reason,
                            "attempts": config.max_attempts, "last_answer": last_answer[:4000],
                            "generator": generator,
                        }, ensure_ascii=False) + "\n")
                rejects.append(reject_lines)
                out.append(out_lines)
                summary.done += len(out_lines)
                summary.rejected += len(reject_lines)
                elapsed = max(time.perf_counter() - run_start, 1e-9)
                bar.update(task, advance=len(batch), passages_s=summary.passages / elapsed,
                           tokens_s=summary.completion_tokens / elapsed, rejected=summary.rejected)
    finally:
        rejects.close()


def _count(value) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):
        return 0


# --- BEIR export --------------------------------------------------------------------------------

def export_beir(synthetic_path: str | os.PathLike, folder: str | os.PathLike, split: str = "train") -> Path:
    """Write `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv` (graded: the level) atomically."""
    lists = read_synthetic(synthetic_path)
    folder = Path(folder)
    with atomic_dir(folder, replace=is_listrank_folder, marker=True) as tmp:
        write_corpus(tmp / "corpus.jsonl", (Document(id=p.id, text=p.text) for sl in lists for p in sl.passages))
        write_queries(tmp / "queries.jsonl", (Query(id=sl.query_id, text=sl.query) for sl in lists))
        write_qrels(tmp / "qrels" / f"{split}.tsv", {sl.query_id: {p.id: p.level for p in sl.passages} for sl in lists})
    return folder


# --- command-line glue (kept here so that cli.py stays a thin parser) ----------------------------

def load_queries(
    queries_file: str | os.PathLike | None,
    dataset: str | None = None,
    split: str | None = None,
    data_dir: str | os.PathLike | None = None,
    skip_invalid: bool = False,
) -> tuple[list[Query], ReadStats]:
    """Queries from a TSV/JSONL file, or from a dataset id (`Dataset.queries`: only those judged in
    `split`, if given), and what was read and skipped."""
    from listrank.datasets import resolve
    from listrank.formats import read_queries

    if (queries_file is None) == (dataset is None):
        raise ListrankError("give a queries file or --dataset (one of them)")
    stats = ReadStats()
    if queries_file is not None:
        if split is not None:
            raise ListrankError("--split needs --dataset (a queries file has no qrels to split by)")
        return read_queries(queries_file, skip_invalid=skip_invalid, stats=stats), stats
    return resolve(dataset, data_dir=data_dir).queries(split, skip_invalid=skip_invalid, stats=stats), stats


def queries_for(config: GenConfig, queries_file: str | os.PathLike | None = None) -> tuple[list[Query], ReadStats]:
    """The queries of a `listrank gen` run: those of `queries_file` or of `config.dataset` (judged in
    `config.split`), the first `config.first` of them; an --output that is one of the inputs is refused."""
    check_output_file(config.output, inputs=[queries_file] if queries_file else [], what="--output")
    if config.dataset is not None:
        from listrank.datasets import resolve

        check_output_file(config.output, inputs=resolve(config.dataset, config.data_dir).files(), what="--output")
    queries, stats = load_queries(queries_file, config.dataset, config.split, config.data_dir, config.skip_invalid)
    if config.first is not None:
        queries = queries[: config.first]
    return queries, stats


def parse_shard(spec: str | None) -> tuple[int, int]:
    if not spec:
        return (0, 1)
    try:
        index, count = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ListrankError(f"--shard {spec!r}: expected i/n, e.g. 0/4 (i counts from 0)") from None
    if count < 1 or not 0 <= index < count:
        raise ListrankError(f"--shard {spec!r}: expected i/n with 0 <= i < n")
    return index, count


def parse_levels(spec: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in spec.split(",") if x.strip())
    except ValueError:
        raise ListrankError(f"--levels {spec!r}: expected comma-separated integers, e.g. 3,2,1,0") from None


def parse_backend_options(pairs: Iterable[str]) -> dict[str, str]:
    """`--backend-opt key=value` pairs (string values; the backend converts them)."""
    return parse_key_values(pairs, "--backend-opt", underscore_keys=True)


def summary_table(summary: GenSummary):
    from rich.table import Table

    table = Table(title="listrank gen", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("queries (this shard)", f"{summary.queries}"),
        ("already done", f"{summary.already_done}"),
        ("done now", f"{summary.done}  ({summary.passages} passages)"),
        ("retried", f"{summary.retried}  ({summary.attempts} requests)"),
        ("rejected", f"{summary.rejected}" + (f" ({summary.filtered} by --filter)" if summary.filtered else "")
                     + (f"  -> {summary.rejects}" if summary.rejected else "")),
        ("tokens", f"{summary.prompt_tokens} prompt, {summary.completion_tokens} generated "
                   f"({summary.tokens_per_s:.1f} generated/s)"),
        ("wall time", f"{summary.wall_s:.1f} s"),
        ("output", summary.output),
    ]
    if summary.export:
        rows.append(("BEIR export", summary.export))
    for reason, n in sorted(summary.reject_reasons.items(), key=lambda kv: -kv[1])[:5]:
        rows.append(("reject reason", f"{n} x {reason}"))
    for key, value in rows:
        table.add_row(key, value)
    return table
