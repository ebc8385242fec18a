"""Soak: `listrank gen` against a local hostile LLM server, killed with SIGKILL and resumed again and again.

The fake OpenAI-compatible server on 127.0.0.1 answers a random mix of valid replies, malformed
ones of every shape, HTTP 429/5xx, dropped connections and replies slower than the client's
timeout. After several kills and a final resume, every query must be in exactly one of the output
and the rejects file, none twice, none lost. Bounded: the whole soak stops itself within 90 s (about 13 s on the idle 2-core machine).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path


from fake_llm_server import FakeLLM, random_mix

N_QUERIES = 600
KILLS = 6
DEADLINE_S = 90


def _lines(path: Path) -> list[bytes]:
    """Complete lines written so far (a killed writer may leave a partial last one)."""
    if not path.exists():
        return []
    return [line for line in path.read_bytes().split(b"\n")[:-1] if line.strip()]


def _ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line)["query_id"])  # every complete line is valid JSON
    return out


def test_gen_soak_hostile_server_kill_and_resume(tmp_path):
    started = time.monotonic()
    rng = random.Random(13)
    queries = tmp_path / "queries.tsv"
    queries.write_text("".join(f"q{i}\tquestion number {i} about topic {i % 17}\n" for i in range(N_QUERIES)))
    out, rejects = tmp_path / "synth.jsonl", tmp_path / "synth.rejects.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    with FakeLLM(random_mix(seed=13, valid_share=0.6, slow_share=0.01), slow_s=1.0) as server:
        cmd = [sys.executable, "-m", "listrank", "gen", str(queries), "-o", str(out), "--backend", "openai-http",
               "--backend-opt", f"base_url={server.url}", "--backend-opt", "backoff=0.01",
               "--backend-opt", "retries=1", "--backend-opt", "timeout=0.4", "--backend-opt", "concurrency=8",
               "--batch-size", "16", "--max-attempts", "2", "--no-progress"]
        interrupted = 0
        for _ in range(KILLS):
            before = len(_lines(out)) + len(_lines(rejects))
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            # Kill once this run has finished some queries, then a moment later: mid-run on a fast
            # idle machine as on a loaded one (a fixed delay let the whole run end first when idle).
            while proc.poll() is None and len(_lines(out)) + len(_lines(rejects)) <= before:
                assert time.monotonic() - started < DEADLINE_S, "soak over its time budget"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                interrupted += 1
            proc.wait(timeout=10)
            assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read()
            assert time.monotonic() - started < DEADLINE_S, "soak over its time budget"
        final = subprocess.run(cmd, env=env, capture_output=True, text=True,
                               timeout=max(5, DEADLINE_S - (time.monotonic() - started)))
        served = len(server.served)
    assert final.returncode == 0, final.stderr[-3000:]
    assert "Traceback" not in final.stderr
    done, rejected = _ids(out), _ids(rejects)
    counts = Counter(done + rejected)
    assert not [q for q, n in counts.items() if n > 1], "a query ended in the output or rejects twice"
    assert set(counts) == {f"q{i}" for i in range(N_QUERIES)}, "a query was lost"
    assert interrupted >= 3, "the kills came too late to interrupt anything; the soak proved little"
    assert done and rejected  # the mix gives both
    reasons = Counter(json.loads(l)["reason"].replace(server.url + ": ", "")[:30] for l in rejects.read_text().splitlines())
    elapsed = time.monotonic() - started
    print(f"\nsoak: {N_QUERIES} queries, {interrupted} kills, {served} requests served, {len(done)} done, "
          f"{len(rejected)} rejected in {elapsed:.1f} s; reasons: {dict(reasons.most_common(6))}")
    assert elapsed < DEADLINE_S
