"""The llama.cpp backend for real: bundled SmolLM2-135M-Instruct GGUF, a few MS MARCO-like queries."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'listrank[llama]')")

from listrank.errors import ListrankError  # noqa: E402
from listrank.formats import Query, read_synthetic  # noqa: E402
from listrank.gen import GenConfig, generate  # noqa: E402
from listrank.gen.backends.llama_cpp import LlamaCppBackend, bundled_gguf  # noqa: E402

try:
    GGUF = bundled_gguf()
except ListrankError as e:  # pragma: no cover - depends on the install
    pytest.skip(str(e), allow_module_level=True)

QUERIES = [
    Query("1", "what is the boiling point of water"),
    Query("2", "how do vaccines work"),
    Query("3", "symptoms of vitamin d deficiency"),
]
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
    backend = LlamaCppBackend(None, n_parallel="1", n_ctx="2048")
    settings = {**SETTINGS, "max_attempts": 1, "max_tokens": 128}
    try:
        for name in ("a", "b"):
            generate(GenConfig(output=tmp_path / f"{name}.jsonl", **settings), QUERIES[:1], backend)
    finally:
        backend.close()
    def both(name):
        return [p.read_text() for p in (tmp_path / f"{name}.jsonl", tmp_path / f"{name}.rejects.jsonl") if p.exists()]
    assert both("a") == both("b") and both("a")
