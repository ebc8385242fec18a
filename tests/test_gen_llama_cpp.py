"""The llama.cpp backend for real: bundled SmolLM2-135M-Instruct GGUF, a few MS MARCO-like queries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from needs import missing

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'listrank[llama]')")

from listrank.errors import ListrankError  # noqa: E402
from listrank.formats import Query, read_synthetic  # noqa: E402
from listrank.gen import GenConfig, generate  # noqa: E402
from listrank.gen.backends.llama_cpp import LlamaCppBackend, bundled_gguf  # noqa: E402

try:
    GGUF = bundled_gguf()
except ListrankError as e:  # pragma: no cover - depends on the install
    missing(str(e), allow_module_level=True)

QUERIES = [
    Query("1", "what is the boiling point of water"),
    Query("2", "how do vaccines work"),
    Query("3", "symptoms of vitamin d deficiency"),
]


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


@pytest.fixture(scope="module", autouse=True)
def llama_cpp_runs_here():
    """Before any in-process test: the default backend decodes in a subprocess (`listrank doctor`'s check).

    A llama.cpp build that does not fit this CPU dies with SIGILL; in-process that would kill
    pytest itself, so it is caught here and every test of this module fails with the reason.
    """
    from listrank.doctor import CHECKS, run_check

    result = run_check(next(c for c in CHECKS if c.name == "llama.cpp"))
    if not result.ok:
        pytest.fail(f"llama.cpp does not run on this machine: {result.detail}. Fix: {result.fix}", pytrace=False)


def test_default_backend_and_threads_in_a_subprocess(tmp_path):
    """`listrank gen` exactly as a user starts it: default backend, model, n_parallel and thread count."""
    queries = tmp_path / "queries.tsv"
    queries.write_text("".join(f"{q.id}\t{q.text}\n" for q in QUERIES[:2]))
    out = tmp_path / "synth.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "listrank", "gen", str(queries), "-o", str(out), "--no-progress",
         "--per-level", "1", "--passage-words", "15", "--max-tokens", "256", "--max-attempts", "1", "--seed", "0"],
        capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"listrank gen: {_describe_exit(proc.returncode)}\n{proc.stderr[-3000:]}"
    done = len(out.read_text().splitlines()) if out.exists() else 0
    rejects = out.with_name("synth.rejects.jsonl")
    rejected = len(rejects.read_text().splitlines()) if rejects.exists() else 0
    assert done + rejected == 2, proc.stderr[-2000:]


# The 135M model is weak (it repeats itself, writes one-word passages); temperature 1.0 and a few
# tries give it a fair chance. The run is seeded, so the outcome is the same every time.
SETTINGS = dict(per_level=1, passage_words=15, min_words=3, max_tokens=256, temperature=1.0, max_attempts=4,
                seed=5, progress=False)


def test_real_model_writes_every_level_distinct_and_non_empty(tmp_path):
    backend = LlamaCppBackend(None, n_parallel="3", n_ctx="2048")
    try:
        cfg = GenConfig(output=tmp_path / "s.jsonl", **SETTINGS)
        summary = generate(cfg, QUERIES, backend)
    finally:
        backend.close()
    assert summary.done + summary.rejected == 3 and summary.done >= 1, summary
    assert summary.completion_tokens > 0 and summary.prompt_tokens > 0
    for sl in read_synthetic(cfg.output):
        assert [p.level for p in sl.passages] == [3, 2, 1, 0]
        assert [p.id for p in sl.passages] == [f"{sl.query_id}_l_{lv}_d_0" for lv in (3, 2, 1, 0)]
        texts = [p.text for p in sl.passages]
        assert all(t.strip() for t in texts) and len(set(texts)) == 4
        assert sl.generator["model"] == GGUF.name and sl.generator["backend"] == "llama-cpp"
        assert sl.generator["repeat_penalty"] == 1.1  # the backend's default, through the sampler chain
    rejects = cfg.rejects_path.read_text().splitlines() if cfg.rejects_path.exists() else []
    assert len(rejects) == summary.rejected and all(json.loads(line)["reason"] for line in rejects)


def test_sequential_mode_same_seed_same_text(tmp_path):
    """A re-run (a fresh backend, as a new process gets) with the same seed writes the same text.

    Not promised: two runs through one loaded model. llama-cpp-python then reuses the previous
    prompt's KV cache and decodes only the prompt's last token, and in the portable (AVX2) build
    that one-token product rounds differently from the full prompt's batched one (seen here: the
    second in-process run wrote a different answer; with the -march=native AVX-512 build the two
    happened to match). docs/gen.md, Determinism.
    """
    settings = {**SETTINGS, "max_attempts": 1, "max_tokens": 128}
    for name in ("a", "b"):
        backend = LlamaCppBackend(None, n_parallel="1", n_ctx="2048")
        try:
            generate(GenConfig(output=tmp_path / f"{name}.jsonl", **settings), QUERIES[:1], backend)
        finally:
            backend.close()

    def both(name):
        return [p.read_text() for p in (tmp_path / f"{name}.jsonl", tmp_path / f"{name}.rejects.jsonl") if p.exists()]
    assert both("a") == both("b") and both("a")


def test_parallel_mode_same_seed_same_text(tmp_path):
    """The default mode (continuous batching): a re-run with the same seed and batch writes the same text."""
    settings = {**SETTINGS, "max_attempts": 1, "max_tokens": 128}
    for name in ("a", "b"):
        backend = LlamaCppBackend(None, n_parallel="3", n_ctx="2048")
        try:
            generate(GenConfig(output=tmp_path / f"{name}.jsonl", **settings), QUERIES, backend)
        finally:
            backend.close()

    def both(name):
        return [p.read_text() for p in (tmp_path / f"{name}.jsonl", tmp_path / f"{name}.rejects.jsonl") if p.exists()]
    assert both("a") == both("b") and both("a")
