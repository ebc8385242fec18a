"""DDP equivalence: `torchrun --nproc-per-node 2 -m listrank train` on CPU (gloo) gives the loss,
gradient norm and parameters of one process on the same global batch.

Two processes with 2 queries each are compared with one process with 4: the embeddings are
all-gathered (autograd through the local shard), every rank computes the loss of the global batch,
and the loss is scaled by the world size because DDP averages gradients. Gradient accumulation
(DDP's no_sync path) and an epoch boundary are exercised too. Dropout is switched off in a copy of
the model: the two setups draw different dropout masks by construction. Adam's first steps are
nearly invariant to the gradient's scale, so the gradient norm is compared as well; and Adam divides
by |g| + eps, which turns float noise in near-zero gradient entries (1e-9, different BLAS blockings
for the different batch shapes) into updates of up to lr * 0.1 with the default eps 1e-8, so the
test uses eps 1e-6 (passed through --config, which is exercised on the way).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Tiny training steps: one torch thread (the `one_thread` fixture in conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_thread")



TOPICS = ["solar panels", "bread baking", "tax returns", "tide pools", "chess openings", "jazz piano",
          "volcano eruptions", "bicycle repair"]


def _write_synth(path: Path) -> Path:
    lines = []
    for i, topic in enumerate(TOPICS):
        passages = [{"id": f"q{i}_l_{lv}_d_0", "level": lv, "text": f"note {lv} about {topic if lv else 'rain'}"}
                    for lv in (3, 2, 1, 0)]
        lines.append(json.dumps({"query_id": f"q{i}", "query": f"how do {topic} work", "passages": passages}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _no_dropout_model(folder: Path) -> Path:
    from listrank.encoder import Encoder

    enc = Encoder(None, normalize=False, device="cpu", precision="fp32")
    enc.transformer.config.hidden_dropout_prob = 0.0
    enc.transformer.config.attention_probs_dropout_prob = 0.0
    enc.save(folder)
    return folder


def test_two_gloo_processes_equal_one_process_on_the_global_batch(tmp_path):
    from safetensors.torch import load_file

    from listrank.train import SourceConfig, build_config, train

    synth = _write_synth(tmp_path / "synth.jsonl")
    model = _no_dropout_model(tmp_path / "base")
    common = dict(model=str(model), group_size=4, query_max_length=16, passage_max_length=16, max_steps=2,
                  grad_accum=2, lr=1e-4, max_grad_norm=0.0, warmup_steps=0, save_steps=0, num_workers=0,
                  progress=False, plot=False, seed=3, precision="fp32", adam_eps=1e-6)
    single = train(build_config(preset="sycl", overrides=dict(
        output=str(tmp_path / "one"), sources=[SourceConfig(str(synth))], batch_size=4, device="cpu", **common)))
    assert single.steps == 2 and single.epochs == 2.0  # 8 lists = 2 micro-batches of 4 = 1 step per epoch

    (tmp_path / "extra.yaml").write_text("adam_eps: 1.0e-6\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "listrank", "train", str(synth), "-o", str(tmp_path / "two"), "--model", str(model),
           "--batch-size", "2", "--group-size", "4", "--max-length", "16", "--max-steps", "2", "--grad-accum", "2",
           "--lr", "1e-4", "--max-grad-norm", "0", "--warmup-steps", "0", "--save-steps", "0",
           "--num-workers", "0", "--no-progress", "--no-plot", "--seed", "3", "--precision", "fp32",
           "--device", "cpu", "--preset", "sycl", "--config", str(tmp_path / "extra.yaml")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    two_log = [json.loads(line) for line in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    meta = json.loads((tmp_path / "two" / "listrank.json").read_text())
    assert meta["world_size"] == 2 and meta["global_batch"] == 4
    for a, b in zip(single.log, two_log, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    one_w = load_file(str(tmp_path / "one" / "model.safetensors"))
    two_w = load_file(str(tmp_path / "two" / "model.safetensors"))
    base_w = load_file(str(model / "model.safetensors"))
    for k in one_w:
        torch.testing.assert_close(two_w[k], one_w[k], atol=1e-5, rtol=0)
    moved = max(float((one_w[k] - base_w[k]).abs().max()) for k in one_w)
    assert moved > 1e-5  # the comparison is not between two untouched models
