"""Two llama-cpp-python builds on the same work: prompt processing and fixed-length decoding, tok/s.

    # the installed (portable) build against another one installed with `pip install --target DIR`
    .venv/bin/python benchmarks/bench_llama_build.py --build portable= --build native=/tmp/llama-native

Why not bench_gen.py alone: two builds round differently, so the same seeded gen writes different
answers of different lengths, and tokens/s of different answers compare poorly. Here every run
does identical work: the bundled SmolLM2 GGUF evaluates one fixed prompt (`--prompt-tokens`) and
then decodes exactly `--gen-tokens` greedy tokens (end-of-text banned through logit_bias), from a
fresh KV cache. Each build runs in its own subprocess (a process can load only one libllama), the
builds alternate per repeat so machine load hits both alike, and the best repeat counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = r"""
import json, sys, time
import llama_cpp
from listrank.gen.backends.llama_cpp import bundled_gguf
threads, n_prompt, n_gen = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
llm = llama_cpp.Llama(model_path=str(bundled_gguf()), n_ctx=2048, n_batch=512, n_threads=threads,
                      n_threads_batch=threads, verbose=False)
words = ("retrieval dense passage query ranking relevance level synthetic encoder loss " * 200).split()
prompt = llm.tokenize(" ".join(words).encode())[:n_prompt]
eos = llm.token_eos()
llm.reset()
t = time.perf_counter()
llm.eval(prompt)
prompt_s = time.perf_counter() - t
t = time.perf_counter()
out = llm.create_completion(prompt, max_tokens=n_gen, temperature=0.0, logit_bias={eos: -1e9})
gen_s = time.perf_counter() - t
assert out["usage"]["completion_tokens"] == n_gen, out["usage"]
info = llama_cpp.llama_print_system_info().decode()
isa = [f.split("=")[0].strip().split()[-1] for f in info.split("|") if f.strip().endswith("= 1")]
print(json.dumps({"prompt_tps": len(prompt) / prompt_s, "gen_tps": n_gen / gen_s, "isa": isa}))
"""


def run(pythonpath: str, threads: int, args) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (pythonpath, str(Path(__file__).parents[1])) if p)}
    proc = subprocess.run([sys.executable, "-c", WORKER, str(threads), str(args.prompt_tokens), str(args.gen_tokens)],
                          capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", action="append", required=True, help="NAME=PYTHONPATH ('' = the venv's own)")
    ap.add_argument("--threads", type=int, nargs="*", default=[1, len(os.sched_getaffinity(0))])
    ap.add_argument("--prompt-tokens", type=int, default=400)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    builds = dict(b.split("=", 1) for b in args.build)
    results: dict[tuple[str, int], list[dict]] = {(b, t): [] for b in builds for t in args.threads}
    for rep in range(args.repeats):
        for threads in args.threads:
            for name, path in builds.items():
                r = run(path, threads, args)
                results[(name, threads)].append(r)
                print(f"[{rep}] {name} threads={threads}: {r}", flush=True)
    from listrank.doctor import machine_info

    info = machine_info()
    print(f"\n{info['cpu']} ({', '.join(info['cpu_isa'])}), {info['cores_usable']} cores; prompt "
          f"{args.prompt_tokens} tokens, {args.gen_tokens} decoded; best of {args.repeats}")
    first = next(iter(builds))
    print("| build | ggml ISA | threads | prompt tok/s | decode tok/s | decode runs | decode vs " + first + " |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for threads in args.threads:
        ref = max((r["gen_tps"] for r in results[(first, threads)] if "gen_tps" in r), default=float("nan"))
        for name in builds:
            ok = [r for r in results[(name, threads)] if "gen_tps" in r]
            if not ok:
                print(f"| {name} | - | {threads} | failed: {results[(name, threads)][0]['error']} | | | |")
                continue
            best_p, best_g = max(r["prompt_tps"] for r in ok), max(r["gen_tps"] for r in ok)
            isa = ",".join(x for x in ok[0]["isa"] if x.startswith(("AVX", "AMX")))
            runs = ", ".join(f"{r['gen_tps']:.0f}" for r in ok)
            print(f"| {name} | {isa} | {threads} | {best_p:.0f} | {best_g:.1f} | {runs} | {best_g / ref:.2f} |")
            rows.append({"build": name, "threads": threads, "prompt_tps": best_p, "gen_tps": best_g, "isa": isa})
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
