"""listrank's llama.cpp generation vs calling `llama_cpp` directly, same requests and settings.

    .venv/bin/python benchmarks/bench_gen.py [--strategy auto] [--queries 8] [--repeats 2]

"listrank" is `listrank.gen.generate` end to end (the strategy's prompting, validation, borrowing,
JSONL append + fsync, progress off) with the llama-cpp backend, sequential (n_parallel=1) and with
continuous batching (n_parallel=N). Every chat request listrank sends is recorded on the first
repeat; "direct" replays exactly those requests as a llama-cpp-python user would write them: one
`Llama.create_chat_completion` each, with the same messages, JSON schema (grammar), sampling
settings and seed. So both sides do the same work, for any `--strategy` (sycl-v1: one call per
query; the per-level ones: one call per level). One try per query (max_attempts=1). Models are
loaded once per engine, outside the timings; modes are interleaved per repeat so a busy machine
slows them alike; the best repeat of each counts. Throughput = generated tokens/s; listrank's rows
also give valid lists per minute (what gen is for).
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

DATA = Path(os.environ.get("LISTRANK_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def run_direct(llm, requests) -> tuple[float, int]:
    """Replay listrank's recorded requests through the plain llama-cpp-python call."""
    start, tokens = time.perf_counter(), 0
    for r in requests:
        response_format = {"type": "json_object", "schema": r.json_schema} if r.json_schema else None
        out = llm.create_chat_completion(
            messages=r.messages, response_format=response_format, temperature=r.sampling.temperature,
            top_p=r.sampling.top_p, max_tokens=r.sampling.max_tokens, repeat_penalty=r.sampling.repeat_penalty,
            seed=r.seed,
        )
        tokens += out["usage"]["completion_tokens"]
    return time.perf_counter() - start, tokens


def run_listrank(backend, queries, args, workdir: Path, tag: str,
                 record: list | None = None) -> tuple[float, int, int, int]:
    out = workdir / f"{tag}.jsonl"
    for stale in (out, workdir / f"{tag}.rejects.jsonl"):
        stale.unlink(missing_ok=True)
    cfg = GenConfig(output=out, strategy=args.strategy, per_level=args.per_level, passage_words=args.passage_words,
                    max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                    repeat_penalty=args.repeat_penalty,
                    max_attempts=1, batch_size=len(queries), progress=False)
    engine_s = 0.0
    inner = backend.generate

    def timed(requests):  # time spent inside the engine, to separate listrank's own overhead
        nonlocal engine_s
        if record is not None:
            record.extend(requests)
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
    return wall, summary.completion_tokens, summary.rejected, summary.done


OVERHEAD: list[float] = []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategy", default="auto", help="gen --strategy (auto: levels-fewshot-borrow-v1 on llama-cpp)")
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256, help="per answer (sycl-v1; the per-level strategies "
                    "bound each passage's tokens by --passage-words)")
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
    gguf = bundled_gguf()
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=4096, n_batch=512, n_threads=args.threads,
                          n_threads_batch=args.threads, verbose=False)
    backends = {f"listrank n_parallel={p}": LlamaCppBackend(None, n_parallel=str(p), n_threads=str(args.threads))
                for p in [1, *args.parallel]}
    results: dict[str, list[tuple[float, int]]] = {"direct llama_cpp": []}
    results.update({name: [] for name in backends})
    valid: dict[str, list[int]] = {name: [] for name in backends}
    recorded: list = []  # the requests of listrank's first sequential run: what "direct" replays
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name, backend in backends.items():
                record = recorded if rep == 0 and name.endswith("=1") else None
                secs, toks, rej, done = run_listrank(backend, queries, args, Path(tmp), name.replace(" ", "_"), record)
                results[name].append((secs, toks))
                valid[name].append(done)
                print(f"[{rep}] {name}: {toks} tokens in {secs:.1f}s = {toks / secs:.1f} tok/s, {done} valid lists, "
                      f"{rej} rejected", flush=True)
                if record is not None:
                    print(f"    recorded {len(recorded)} requests for the direct replay", flush=True)
            secs, toks = run_direct(llm, recorded)
            results["direct llama_cpp"].append((secs, toks))
            print(f"[{rep}] direct llama_cpp: {toks} tokens in {secs:.1f}s = {toks / secs:.1f} tok/s", flush=True)
    best = {name: max(t / s for s, t in runs) for name, runs in results.items()}
    base = best["direct llama_cpp"]
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"llama-cpp-python {llama_cpp.__version__}, model {gguf.name}, threads {args.threads}")
    print(f"{len(queries)} MS MARCO train queries, strategy={args.strategy}, per_level={args.per_level}, "
          f"passage_words={args.passage_words}, max_tokens={args.max_tokens}, temperature={args.temperature}, "
          f"top_p={args.top_p}, repeat_penalty={args.repeat_penalty}, seed={args.seed}, repeats={args.repeats}; "
          f"{len(recorded)} requests")
    print()
    print("| engine | generated tok/s (best) | runs: tok/s | wall s (median) | ratio vs direct | valid lists/min (median) |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        rates = ", ".join(f"{t / s:.1f}" for s, t in runs)
        wall = statistics.median(s for s, _ in runs)
        per_min = (f"{statistics.median(60 * v / s for (s, _), v in zip(runs, valid[name])):.1f}"
                   if name in valid else "-")
        print(f"| {name} | {best[name]:.1f} | {rates} | {wall:.1f} | {best[name] / base:.2f} | {per_min} |")
    print(f"\nlistrank's own time outside the engine (prompting, validation, JSONL append + fsync): "
          f"median {statistics.median(OVERHEAD) * 1000:.1f} ms per query")
    for backend in backends.values():
        backend.close()


if __name__ == "__main__":
    main()
