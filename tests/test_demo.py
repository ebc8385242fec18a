"""The README's `make demo`, end to end at a small size: gen -> train -> index/search/eval.

Runs the Makefile's own demo recipe (so the demo cannot silently break) with a few queries, a few
steps and a small SciFact corpus, then checks what each stage left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from listrank.datasets import resolve
from listrank.formats import read_synthetic, write_queries

pytestmark = pytest.mark.slow(seconds=1500)  # measured 911-1,221 s on an AVX2-only 2-core CPU

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_demo(demo: Path, eval_dir: Path, *args: str) -> subprocess.CompletedProcess:
    listrank = shutil.which("listrank", path=str(Path(sys.executable).parent)) or "listrank"
    return subprocess.run(
        ["make", "--no-print-directory", *(args or ["demo"]), f"DEMO={demo}", "DEMO_DEPS=", f"LISTRANK={listrank}",
         "DEMO_QUERIES=16", f"DEMO_DATA={eval_dir}",
         # one llama.cpp thread: robust on a busy CI machine, where spinning threads contend
         "DEMO_GEN_FLAGS=--per-level 1 --passage-words 50 --max-tokens 800 --seed 0 --backend-opt n_threads=1 --no-progress",
         # the demo's recipe (real pairs, list-wise, cached gradients, validated), at a small size
         "DEMO_TRAIN_FLAGS=--loss wasserstein --loss-opt label_temperature=0.25 --normalize --temperature 0.05"
         " --epochs 2 --batch-size 8 --group-size 4 --grad-cache-chunk 4 --num-workers 0 --lr 2e-5 --save-steps 2"
         " --eval-holdout 0.25 --eval-steps 2 --no-progress",
         # base and trained model still encoded alike, but in bf16 only where the CPU runs it natively:
         # an AVX2-only CI machine emulates bf16 several times slower than fp32
         "DEMO_ENCODE_FLAGS=--precision auto"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_make_demo_end_to_end(tmp_path, make_scifact_folder, monkeypatch):
    monkeypatch.setenv("LISTRANK_INDEX_CACHE", str(tmp_path / "index-cache"))
    eval_dir = make_scifact_folder(tmp_path / "small-scifact", n_queries=25, n_docs=400, n_train=40)
    demo = tmp_path / "demo"

    done = make_demo(demo, eval_dir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # gen: valid graded lists for the first training queries, the rest in the rejects file
    lists = read_synthetic(demo / "synth.jsonl")
    rejects = (demo / "synth.rejects.jsonl").read_text().splitlines() if (demo / "synth.rejects.jsonl").exists() else []
    assert len(lists) >= 3 and len(lists) + len(rejects) == 16
    assert all(sorted({p.level for p in sl.passages}) == [0, 1, 2, 3] for sl in lists)
    audit = json.loads((demo / "audit.json").read_text())
    assert audit and (demo / "levels.png").read_bytes()[:8] == PNG_MAGIC

    # train: a finished Wasserstein run on the domain's real training pairs (judged positives at 3,
    # BM25-mined negatives at 1), not on the 135M LLM's lists (they dilute real pairs, docs/experiments.md d)
    meta = json.loads((demo / "model" / "listrank.json").read_text())
    assert meta["loss"] == "wasserstein" and meta["finished"] and meta["steps"] >= 1
    assert meta["loss_options"] == {"label_temperature": 0.25} and meta["normalize"] and meta["temperature"] == 0.05
    (source,) = meta["data"]["report"]["sources"]
    assert source["kind"] == "qrels" and source["queries"] == 40 and source["missing_docs"] == 0
    assert source["mined"] > 0 and set(source["label_counts"]) == {"1", "3"}
    assert (demo / "model" / "train_curve.png").read_bytes()[:8] == PNG_MAGIC
    # the model is a validated checkpoint: held-out training lists, never the test split it reports
    v = meta["validation"]
    assert v["set"] and v["baseline"]["step"] == 0 and v["history"][0]["step"] == 0
    assert v["best"]["step"] in [h["step"] for h in v["history"]] and v["best"]["score"] >= v["baseline"]["score"]
    assert v["set"]["kind"] == "holdout" and v["set"]["queries"] >= 1

    # eval: base, trained and BM25 in one comparison against the base, with real scores
    cmp = json.loads((demo / "compare.json").read_text())
    ndcg = {run["run"]: run["aggregate"]["nDCG@10"] for run in cmp["runs"]}
    assert len(ndcg) == 3 and "base" in cmp["baseline"], ndcg
    (base,), (sycl,), (bm25,) = ([v for k, v in ndcg.items() if tag in k] for tag in ("base", "sycl", "bm25"))
    assert 0.5 < base <= 1 and 0.5 < bm25 <= 1  # 25 queries over ~450 documents: an easy corpus
    assert abs(sycl - base) < 0.2  # a few steps at lr 2e-5 move the model, they must not wreck it
    assert cmp["comparison"]["rows"], "no significance tests in the comparison"
    for other in ("sycl", "bm25"):  # per-query deltas against the base, one PNG per other run
        assert (demo / f"compare.{other}.png").read_bytes()[:8] == PNG_MAGIC

    # a second `make demo` has nothing left to do
    again = make_demo(demo, eval_dir, "--question", f"{demo}/compare.json", f"{demo}/levels.png")
    assert again.returncode == 0, "make demo would re-run finished stages"

    # examples/sycl_pipeline.py: the same stages through the Python API, on the lists gen wrote
    example = tmp_path / "example"
    example.mkdir()
    for name in ("synth.jsonl", "synth.rejects.jsonl"):
        if (demo / name).exists():
            shutil.copy(demo / name, example / name)
    # the queries the demo's gen answered: the first 16 of the train split
    write_queries(example / "queries.jsonl", resolve(str(eval_dir)).queries("train")[:16])
    done = subprocess.run(
        [sys.executable, "examples/sycl_pipeline.py", "--queries", "16", "--eval-dataset", str(eval_dir),
         "--queries-file", str(example / "queries.jsonl"),
         "--epochs", "2", "--batch-size", "2", "--out", str(example),
         # trainer's auto: fp32 on CPU; the example's bf16 default is emulated (~3x slower) on AVX2-only CPUs
         "--precision", "auto"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "gen: 0 new lists" in done.stdout  # every query was already answered
    assert json.loads((example / "model" / "listrank.json").read_text())["finished"]
    cmp = json.loads((example / "compare.json").read_text())
    assert [run["run"] for run in cmp["runs"]] == ["base", "sycl", "bm25"]
    assert {run["run"]: run["aggregate"]["nDCG@10"] for run in cmp["runs"]}["base"] == pytest.approx(base, abs=1e-9)
    assert all((example / name).read_bytes()[:8] == PNG_MAGIC
               for name in ("levels.png", "compare.sycl.png", "compare.bm25.png"))
