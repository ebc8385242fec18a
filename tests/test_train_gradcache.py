"""Gradient caching (`--grad-cache-chunk`): the loss and the parameter gradients equal those of the
direct step, for every registered loss, with length buckets, under bf16 autocast, with dropout on
(the RNG is replayed), in the trainer, and on 2 gloo processes under DDP (with gradient
accumulation), where the gathered embeddings feed the loss.

Kept cheap: the bundled MiniLM at max length 24, 4 queries x 3 passages. LISTRANK_TEST_DEVICE=cuda
runs the single-process tests on a GPU (the CUDA RNG replay, CUDA autocast); the DDP test's
workers stay on gloo and the CPU, and its reference is computed on that device.
"""

from __future__ import annotations

import contextlib
import json
import os

import pytest
import torch

from listrank import losses
from listrank.train.step import BiEncoder, RandContext, gather_with_grad, micro_step, split_chunks

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytestmark = pytest.mark.usefixtures("one_thread")

TOPICS = ["solar panels", "bread baking", "tax returns", "tide pools", "chess openings", "jazz piano",
          "volcano eruptions", "bicycle repair"]
B, G = 4, 3
TOL = 1e-5
DEVICE = os.environ.get("LISTRANK_TEST_DEVICE", "cpu")


class _World1:
    world, rank = 1, 0


def builtin_losses() -> list[str]:
    """Every loss the registry holds that listrank ships (tests register throwaway ones too)."""
    return [n for n in losses.available() if losses.loss_class(n).__module__.startswith("listrank.losses")]


def _batch(tokenizer, offset: int = 0, n: int = B) -> dict:
    queries = [f"how do {TOPICS[(i + offset) % 8]} work" for i in range(n)]
    passages = [f"{'a precise' if lv == 2 else 'a loose' if lv == 1 else 'an unrelated'} note "
                + f"about {TOPICS[(i + offset) % 8]} " * (1 + (i * G + lv) % 4)
                for i in range(n) for lv in (2, 1, 0)]
    q = tokenizer(queries, padding=True, truncation=True, max_length=24, return_tensors="pt")
    p = tokenizer(passages, padding=True, truncation=True, max_length=24, return_tensors="pt")
    labels = torch.tensor([[3, 1, 0], [2, 0, 1], [0, 3, 2], [1, 2, 3]][:n], dtype=torch.float32)
    return {"q_input_ids": q["input_ids"], "q_attention_mask": q["attention_mask"],
            "p_input_ids": p["input_ids"], "p_attention_mask": p["attention_mask"], "labels": labels}


def _shard(item: dict, rank: int, world: int) -> dict:
    n = item["q_input_ids"].shape[0] // world
    out = {k: item[k][rank * n : (rank + 1) * n] for k in ("q_input_ids", "q_attention_mask")}
    out.update({k: item[k][rank * n * G : (rank + 1) * n * G] for k in ("p_input_ids", "p_attention_mask")})
    out["labels"] = item["labels"]
    return out


def _grads(encoder) -> torch.Tensor:
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel(), device=p.device)
                      for p in encoder.parameters() if p.requires_grad]).cpu()


def _step(model, item, loss_fn, chunk, *, bf16=False, d=None, scale=1.0) -> float:
    autocast = lambda: torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
    return micro_step(model, item, loss_fn, device=torch.device(DEVICE), autocast=autocast, d=d or _World1(),
                      temperature=1.0, scale=scale, chunk=chunk)


def _compare(a: tuple[float, torch.Tensor], b: tuple[float, torch.Tensor]) -> dict:
    """Loss difference, largest gradient entry difference and relative gradient-norm difference."""
    (la, ga), (lb, gb) = a, b
    return {"loss": abs(la - lb), "grad_max": float((ga - gb).abs().max()),
            "grad_rel": float((ga - gb).norm() / ga.norm())}


@pytest.fixture(scope="module")
def encoder():
    from listrank.encoder import Encoder

    enc = Encoder(max_length=24, precision="fp32", normalize=False, device=DEVICE)
    enc.transformer.pooler.requires_grad_(False)  # as the trainer does
    return enc


def _run(encoder, item, name, chunk, buckets=1, bf16=False) -> tuple[float, torch.Tensor]:
    encoder.zero_grad(set_to_none=True)
    value = _step(BiEncoder(encoder, buckets), item, losses.get(name), chunk, bf16=bf16)
    return value, _grads(encoder)


@pytest.mark.parametrize("chunk,buckets", [(1, 1), (3, 1), (2, 2)])
def test_cached_equals_direct_for_every_loss(encoder, chunk, buckets):
    encoder.eval()  # no dropout: the direct full-batch step is the reference
    item = _batch(encoder.tokenizer)
    names = builtin_losses()
    assert {"wasserstein", "infonce", "listnet"} <= set(names)
    for name in names:
        direct = _run(encoder, item, name, chunk=0)
        cached = _run(encoder, item, name, chunk=chunk, buckets=buckets)
        diff = _compare(direct, cached)
        assert diff["loss"] <= TOL * max(1.0, abs(direct[0])), (name, diff)
        assert diff["grad_max"] <= TOL and diff["grad_rel"] <= TOL, (name, diff)
        assert float(direct[1].norm()) > 0


def _chunked_reference(encoder, item, name, chunk, bf16=False) -> tuple[float, torch.Tensor]:
    """The uncached computation with the chunking of the cached one: every chunk embedded with its
    graph, in the same order (so dropout draws the same masks), one loss, one backward."""
    encoder.zero_grad(set_to_none=True)
    model = BiEncoder(encoder, 1)
    qs, ps = [], []
    for part in split_chunks(item, chunk):
        part = {k: v.to(DEVICE) for k, v in part.items()}
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bf16):
            q, p = model(**part)
        qs.append(q.float())
        ps.append(p.float())
    q_all, p_all = gather_with_grad(torch.cat(qs), _World1()), gather_with_grad(torch.cat(ps), _World1())
    loss = losses.get(name)(q_all @ p_all.T, item["labels"].to(DEVICE), 1.0)
    loss.backward()
    return float(loss.detach()), _grads(encoder)


def test_dropout_masks_are_replayed(encoder, monkeypatch):
    """model.train(): the cached step equals the chunk-wise uncached computation drawn from the same
    seed; without the RNG replay it would not (the re-run would draw other dropout masks)."""
    item = _batch(encoder.tokenizer)
    encoder.train()
    try:
        for name in builtin_losses():
            torch.manual_seed(11)
            ref = _chunked_reference(encoder, item, name, chunk=2)
            torch.manual_seed(11)
            cached = _run(encoder, item, name, chunk=2)
            diff = _compare(ref, cached)
            assert diff["loss"] <= TOL * max(1.0, abs(ref[0])) and diff["grad_max"] <= TOL \
                and diff["grad_rel"] <= TOL, (name, diff)
        # the check has teeth: dropout is on, and a re-run without the replay differs
        monkeypatch.setattr(RandContext, "__enter__", lambda self: self)
        monkeypatch.setattr(RandContext, "__exit__", lambda self, *exc: None)
        torch.manual_seed(11)
        ref = _chunked_reference(encoder, item, "wasserstein", chunk=2)
        torch.manual_seed(11)
        unreplayed = _run(encoder, item, "wasserstein", chunk=2)
        assert _compare(ref, unreplayed)["grad_rel"] > 1e-3
    finally:
        encoder.eval()


def test_bf16_autocast_composes(encoder):
    """Under bf16 autocast the cached step equals the same chunks run with their graph (the same
    bf16 arithmetic) to 1e-5, and the direct full-batch bf16 step to bf16 precision."""
    encoder.eval()
    item = _batch(encoder.tokenizer)
    for name in builtin_losses():
        ref = _chunked_reference(encoder, item, name, chunk=2, bf16=True)
        cached = _run(encoder, item, name, chunk=2, bf16=True)
        diff = _compare(ref, cached)
        assert diff["loss"] <= TOL * max(1.0, abs(ref[0])) and diff["grad_max"] <= TOL and diff["grad_rel"] <= TOL, \
            (name, diff)
        direct = _run(encoder, item, name, chunk=0, bf16=True)
        assert _compare(direct, cached)["grad_rel"] < 0.1, name


def test_trainer_with_grad_cache_matches_without(tmp_path):
    """A short training run with --grad-cache-chunk 1 ends at the weights of one without it
    (dropout off: the two draw different masks by construction)."""
    from safetensors.torch import load_file

    from listrank.encoder import Encoder
    from listrank.train import SourceConfig, build_config, train

    enc = Encoder(None, normalize=False, device=DEVICE, precision="fp32")
    enc.transformer.config.hidden_dropout_prob = 0.0
    enc.transformer.config.attention_probs_dropout_prob = 0.0
    enc.save(tmp_path / "base")
    lines = []
    for i, topic in enumerate(TOPICS):
        passages = [{"id": f"q{i}_l_{lv}_d_0", "level": lv, "text": f"note {lv} about {topic if lv else 'rain'}"}
                    for lv in (3, 2, 1, 0)]
        lines.append(json.dumps({"query_id": f"q{i}", "query": f"how do {topic} work", "passages": passages}))
    (tmp_path / "synth.jsonl").write_text("\n".join(lines) + "\n")
    results = {}
    for chunk in (0, 1):
        results[chunk] = train(build_config(preset="sycl", overrides=dict(
            output=str(tmp_path / f"m{chunk}"), sources=[SourceConfig(str(tmp_path / "synth.jsonl"))],
            model=str(tmp_path / "base"), batch_size=4, group_size=4, query_max_length=16,
            passage_max_length=16, max_steps=2, lr=1e-4, warmup_steps=0, save_steps=0, num_workers=0,
            progress=False, plot=False, seed=3, precision="fp32", device=DEVICE, adam_eps=1e-6,
            grad_cache_chunk=chunk)))
    for a, b in zip(results[0].log, results[1].log, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    meta = json.loads((tmp_path / "m1" / "listrank.json").read_text())
    assert meta["hyperparameters"]["grad_cache_chunk"] == 1
    w0, w1 = load_file(str(tmp_path / "m0" / "model.safetensors")), load_file(str(tmp_path / "m1" / "model.safetensors"))
    for k in w0:
        torch.testing.assert_close(w1[k], w0[k], atol=1e-5, rtol=0)


# --- DDP: 2 gloo processes ------------------------------------------------------------------------------

def _ddp_worker(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from listrank.encoder import Encoder
    from listrank.train.trainer import Dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        enc = Encoder(max_length=24, precision="fp32", normalize=False, device="cpu")
        enc.transformer.pooler.requires_grad_(False)
        enc.eval()
        model = DDP(BiEncoder(enc, 1), find_unused_parameters=True)
        d = Dist(rank, world)
        items = [_batch(enc.tokenizer, offset) for offset in (0, 4)]  # two micro-batches of one step
        results = {}
        for name in builtin_losses():
            loss_fn = losses.get(name)
            for chunk in (0, 1):
                enc.zero_grad(set_to_none=True)
                values = []
                for a, item in enumerate(items):  # gradient accumulation: sync on the last micro-batch
                    ctx = model.no_sync() if a == 0 else contextlib.nullcontext()
                    with ctx:
                        values.append(_step(model, _shard(item, rank, world), loss_fn, chunk, d=d,
                                            scale=world / len(items)))
                results[f"{name}:{chunk}"] = (values, _grads(enc))
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def test_ddp_two_gloo_processes_cached_and_direct_equal_one_process(tmp_path, encoder):
    import torch.multiprocessing as mp

    encoder.eval()
    out = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    items = [_batch(encoder.tokenizer, offset) for offset in (0, 4)]
    for name in builtin_losses():
        encoder.zero_grad(set_to_none=True)
        values = [_step(BiEncoder(encoder, 1), item, losses.get(name), 0, scale=1 / len(items)) for item in items]
        reference = _grads(encoder)
        for chunk in (0, 1):
            ddp_values, ddp_grads = got[f"{name}:{chunk}"]
            for v, r in zip(ddp_values, values, strict=True):
                assert abs(v - r) <= TOL * max(1.0, abs(r)), (name, chunk, v, r)
            diff = _compare((0.0, reference), (0.0, ddp_grads))
            assert diff["grad_max"] <= TOL and diff["grad_rel"] <= TOL, (name, chunk, diff)
