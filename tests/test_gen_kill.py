"""`kill -9` in the middle of `listrank gen`: no truncated or duplicated line, and a re-run completes.

A real subprocess (`python -m listrank gen`) with a slow fake backend, killed with SIGKILL at
several moments; the final file must equal an uninterrupted run's byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def run_gen(queries: Path, out: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    cmd = [sys.executable, "-m", "listrank", "gen", str(queries), "-o", str(out), "--no-progress",
           "--backend", "fake_backend:EchoBackend", "--backend-opt", f"delay={delay}", "--batch-size", "3",
           "--seed", "11"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_sigkill_mid_run_loses_at_most_the_batch_in_flight(tmp_path):
    queries = tmp_path / "q.tsv"
    n = 24
    queries.write_text("".join(f"q{i}\tquery number {i}\n" for i in range(n)))
    out = tmp_path / "synth.jsonl"

    for kill_after_lines in (3, 9, 15):
        proc = run_gen(queries, out, delay=0.03)
        deadline = time.monotonic() + 60
        while complete_lines(out) < kill_after_lines and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.04)  # land the kill at some point inside the next batch
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
        data = out.read_bytes()
        body = data[: data.rfind(b"\n") + 1]
        ids = [json.loads(line)["query_id"] for line in body.splitlines()]
        assert len(ids) == len(set(ids)), "a query was written twice"
        assert len(ids) % 3 == 0, "lines are written a whole batch at a time"

    proc = run_gen(queries, out, delay=0.0)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr.decode()

    reference = tmp_path / "reference.jsonl"
    proc = run_gen(queries, reference, delay=0.0)
    assert proc.wait(timeout=120) == 0
    assert out.read_bytes() == reference.read_bytes()
    assert [json.loads(line)["query_id"] for line in out.read_text().splitlines()] == [f"q{i}" for i in range(n)]
