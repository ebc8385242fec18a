"""listrank's llama.cpp generation vs calling `llama_cpp` directly, same prompts and settings.

    .venv/bin/python benchmarks/bench_gen.py [--queries 8] [--max-tokens 256] [--repeats 2]

"direct" is what a user of llama-cpp-python would write: one `Llama.create_chat_completion` per
query with the same messages, JSON schema (grammar), sampling settings and per-query seeds that
listrank sends. "listrank" is `listrank.gen.generate` end to end (prompting, validation, JSONL
append + fsync, progress off) with the llama-cpp backend, sequential (n_parallel=1) and with
continuous batching (n_parallel=N). One try per query (max_attempts=1), so all do the same work.
The model is loaded once per engine, outside the timings. Modes are interleaved per repeat so a
busy machine slows them alike; the best repeat of each counts. Throughput = generated tokens/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import llama_cpp

from listrank.formats import read_queries
from listrank.gen import GenConfig, generate
from listrank.gen.backends.llama_cpp import LlamaCppBackend, bundled_gguf
from listrank.gen.generate import request_seed
from listrank.gen.prompts import PromptBuilder, load_template

DATA = Path(os.environ.get("LISTRANK_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def run_direct(llm, queries, builder, args) -> tuple[float, int]:
    schema = builder.json_schema()
    start, tokens = time.perf_counter(), 0
    for q in queries:
        out = llm.create_chat_completion(
            messages=builder.messages(q.text), response_format={"type": "json_object", "schema": schema},
            temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
            repeat_penalty=args.repeat_penalty, seed=request_seed(args.seed, q.id, 0),
        )
        tokens += out["usage"]["completion_tokens"]
    return time.perf_counter() - start, tokens


def run_listrank(backend, queries, args, workdir: Path, tag: str) -> tuple[float, int, int]:
    out = workdir / f"{tag}.jsonl"
    for stale in (out, workdir / f"{tag}.rejects.jsonl"):
        stale.unlink(missing_ok=True)
    cfg = GenConfig(output=out, per_level=args.per_level, passage_words=args.passage_words, min_words=1,
                    max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                    repeat_penalty=args.repeat_penalty,
                    max_attempts=1, batch_size=len(queries), progress=False)
    engine_s = 0.0
    inner = backend.generate

    def timed(requests):  # time spent inside the engine, to separate listrank's own overhead
        nonlocal engine_s
        t = time.perf_counter()
        try:
            return inner(requests)
        finally:
            engine_s += time.perf_counter() - t

    backend.generate = timed
    start = time.perf_counter()
    try:
        summary = generate(cfg, queries, backend)
    finally:
        del backend.generate
    wall = time.perf_counter() - start
    OVERHEAD.append((wall - engine_s) / len(queries))
    return wall, summary.completion_tokens, summary.rejected


OVERHEAD: list[float] = []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--per-level", type=int, default=1)
    ap.add_argument("--passage-words", type=int, default=30)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--top-p", type=float, default=0.95)
    # Both engines get the same penalty (1.1 is listrank's llama-cpp default; 1.0 reproduces the table in docs).
    ap.add_argument("--repeat-penalty", type=float, default=1.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--parallel", type=int, nargs="*", default=[4])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    queries = read_queries(DATA / "msmarco" / "train-sample" / "queries.tsv")[: args.queries]
    # The same schema generate() builds (min_chars = 4 x min_words, min_words=1 below), so the grammar matches.
    builder = PromptBuilder(load_template(), per_level=args.per_level, passage_words=args.passage_words, min_chars=4)
    gguf = bundled_gguf()
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=4096, n_batch=512, n_threads=args.threads,
                          n_threads_batch=args.threads, verbose=False)
    backends = {f"listrank n_parallel={p}": LlamaCppBackend(None, n_parallel=str(p), n_threads=str(args.threads))
                for p in [1, *args.parallel]}
    results: dict[str, list[tuple[float, int]]] = {"direct llama_cpp": []}
    results.update({name: [] for name in backends})
    rejected: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            secs, toks = run_direct(llm, queries, builder, args)
            results["direct llama_cpp"].append((secs, toks))
            print(f"[{rep}] direct llama_cpp: {toks} tokens in {secs:.1f}s = {toks / secs:.1f} tok/s", flush=True)
            for name, backend in backends.items():
                secs, toks, rej = run_listrank(backend, queries, args, Path(tmp), name.replace(" ", "_"))
                results[name].append((secs, toks))
                rejected[name] = rej
                print(f"[{rep}] {name}: {toks} tokens in {secs:.1f}s = {toks / secs:.1f} tok/s, {rej} rejected",
                      flush=True)
    best = {name: max(t / s for s, t in runs) for name, runs in results.items()}
    base = best["direct llama_cpp"]
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"llama-cpp-python {llama_cpp.__version__}, model {gguf.name}, threads {args.threads}")
    print(f"{len(queries)} MS MARCO train queries, per_level={args.per_level}, max_tokens={args.max_tokens}, "
          f"temperature={args.temperature}, top_p={args.top_p}, seed={args.seed}, repeats={args.repeats}")
    print()
    print("| engine | generated tok/s (best) | runs: tok/s | wall s (median) | ratio vs direct |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        rates = ", ".join(f"{t / s:.1f}" for s, t in runs)
        wall = statistics.median(s for s, _ in runs)
        print(f"| {name} | {best[name]:.1f} | {rates} | {wall:.1f} | {best[name] / base:.2f} |")
    print(f"\nlistrank's own time outside the engine (prompting, validation, JSONL append + fsync): "
          f"median {statistics.median(OVERHEAD) * 1000:.1f} ms per query")
    for backend in backends.values():
        backend.close()


if __name__ == "__main__":
    main()
