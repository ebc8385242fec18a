"""One training micro-batch: embed, gather across ranks, score, loss, backward.

Two ways to the same gradients:

* **direct**: one forward of the bi-encoder over the micro-batch with the autograd graph, then
  `loss.backward()`. Memory grows with the whole batch's activations.
* **gradient caching** (`grad_cache_chunk` = N > 0; GradCache, Gao et al. 2021, "Scaling Deep
  Contrastive Learning Batch Size under Memory Limited Setup", the technique behind Tevatron's GC
  trainer and sentence-transformers' CachedMultipleNegativesRankingLoss). Every loss here only sees
  the embeddings, so the step splits in three:

  1. embed the micro-batch in chunks of N queries (and their N*G passages) without a graph,
     recording the RNG state before each chunk;
  2. gather the embeddings across ranks, compute the loss on the whole batch and its gradient
     with respect to this rank's embeddings (a graph over `[B, dim]` tensors only);
  3. re-run each chunk with a graph, the RNG state of step 1 replayed so dropout draws the same
     masks, and back-propagate the cached embedding gradients into the parameters.

  Activation memory is that of one chunk, whatever the batch size; the price is a second forward.
  Under DDP every chunk but the last re-runs under `no_sync()`, so the gradients are all-reduced
  once per micro-batch, as in the direct path.

`gather_with_grad` and `BiEncoder` live here too; the trainer imports them.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable

import torch
import torch.distributed as dist

TOKEN_KEYS = ("q_input_ids", "q_attention_mask", "p_input_ids", "p_attention_mask")


def gather_with_grad(t: torch.Tensor, d) -> torch.Tensor:
    """All ranks' `t` concatenated in rank order; autograd flows through this rank's slot only.

    `d` is the trainer's `Dist` (anything with `world` and `rank`)."""
    if d.world == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(d.world)]
    dist.all_gather(parts, t.detach().contiguous())
    parts[d.rank] = t
    return torch.cat(parts, dim=0)


class BiEncoder(torch.nn.Module):
    """One forward for queries and passages, so DDP sees a single forward per backward.

    With `length_buckets` > 1 the texts of a batch are sorted by length and encoded in that many
    chunks, each cut to its own longest text: a batch padded to its longest passage spends much
    of its compute on padding (about half for MS MARCO-like passages), and the attention mask
    makes the embeddings the same either way (up to float rounding). The embeddings come back in
    the input order, with gradients.
    """

    def __init__(self, encoder, length_buckets: int = 1, padding_side: str = "right"):
        super().__init__()
        self.encoder = encoder
        self.length_buckets = max(1, int(length_buckets))
        self.padding_side = padding_side

    def _encode(self, input_ids, attention_mask):
        n = input_ids.shape[0]
        # Left padding shifts the real tokens' positions when trimmed (absolute position
        # embeddings), so only right-padded batches are bucketed.
        if self.length_buckets == 1 or n < 2 * self.length_buckets or self.padding_side != "right":
            return self.encoder(input_ids, attention_mask)
        lengths = attention_mask.sum(dim=1)
        order = torch.argsort(lengths, descending=True, stable=True)
        chunk = -(-n // self.length_buckets)
        parts = []
        for idx in order.split(chunk):
            width = int(lengths[idx].max())
            parts.append(self.encoder(input_ids[idx, :width], attention_mask[idx, :width]))
        return torch.cat(parts)[torch.argsort(order)]

    def forward(self, q_input_ids, q_attention_mask, p_input_ids, p_attention_mask):
        return self._encode(q_input_ids, q_attention_mask), self._encode(p_input_ids, p_attention_mask)


class RandContext:
    """The CPU RNG state (and the CUDA RNG state of `device`) when created; `with ctx:` replays it.

    Entering forks the RNG (`torch.random.fork_rng`), so the outer random stream continues after
    the block as if the block had not run -- as sentence-transformers' RandContext does for its
    cached losses. Dropout in a re-run chunk then draws the masks of the first pass.
    """

    def __init__(self, device: torch.device):
        self.cpu_state = torch.get_rng_state()
        self.cuda_devices: list[int] = []
        self.cuda_states: list[torch.Tensor] = []
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            self.cuda_devices = [index]
            self.cuda_states = [torch.cuda.get_rng_state(index)]
        self._fork: Any = None

    def __enter__(self) -> "RandContext":
        self._fork = torch.random.fork_rng(devices=self.cuda_devices)
        self._fork.__enter__()
        torch.set_rng_state(self.cpu_state)
        for index, state in zip(self.cuda_devices, self.cuda_states):
            torch.cuda.set_rng_state(state, index)
        return self

    def __exit__(self, *exc) -> None:
        fork, self._fork = self._fork, None
        fork.__exit__(*exc)


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    """The BiEncoder inside a DDP wrapper (or the model itself)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return model.module if isinstance(model, DDP) else model


def _is_ddp(model: torch.nn.Module) -> bool:
    from torch.nn.parallel import DistributedDataParallel as DDP

    return isinstance(model, DDP)


def split_chunks(tensors: dict[str, torch.Tensor], chunk: int, padding_side: str = "right") -> list[dict[str, torch.Tensor]]:
    """Chunks of `chunk` queries with their passages (query i's group is passages i*G..i*G+G-1);
    right-padded chunks are cut to their own longest text."""
    n = tensors["q_input_ids"].shape[0]
    g = tensors["p_input_ids"].shape[0] // n
    out = []
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        part = {"q_input_ids": tensors["q_input_ids"][s:e], "q_attention_mask": tensors["q_attention_mask"][s:e],
                "p_input_ids": tensors["p_input_ids"][s * g : e * g],
                "p_attention_mask": tensors["p_attention_mask"][s * g : e * g]}
        if padding_side == "right":
            for side in ("q", "p"):
                width = max(1, int(part[f"{side}_attention_mask"].sum(dim=1).max()))
                part[f"{side}_input_ids"] = part[f"{side}_input_ids"][:, :width]
                part[f"{side}_attention_mask"] = part[f"{side}_attention_mask"][:, :width]
        out.append(part)
    return out


def _zero_backward(q: torch.Tensor, p: torch.Tensor) -> None:
    """A backward that adds nothing, to keep DDP's gradient reduction in step on every rank."""
    ((q.float().sum() + p.float().sum()) * 0.0).backward()


def micro_step(
    model: torch.nn.Module,
    item: dict[str, Any],
    loss_fn: Callable,
    *,
    device: torch.device,
    autocast: Callable[[], Any],
    d,
    temperature: float,
    scale: float,
    chunk: int = 0,
) -> float | None:
    """Forward and backward of one micro-batch; returns the loss, or None when it (or a score)
    is not finite (then nothing is added to the gradients).

    `scale` multiplies the loss before backward (world size / grad-accum steps: DDP averages the
    ranks' gradients while each rank holds only its own shard's part). `chunk` > 0 turns on
    gradient caching with that many queries per chunk (see the module docstring).
    """
    tensors = {k: item[k].to(device, non_blocking=True) for k in TOKEN_KEYS}
    labels = item["labels"].to(device)
    if chunk and chunk < tensors["q_input_ids"].shape[0]:
        return _cached_step(model, tensors, labels, loss_fn, device, autocast, d, temperature, scale, chunk)
    with autocast():
        q, p = model(**tensors)
    q_all = gather_with_grad(q.float(), d)
    p_all = gather_with_grad(p.float(), d)
    scores = q_all @ p_all.T  # [B, B*G], query i's group at columns i*G .. i*G+G-1
    if not bool(torch.isfinite(scores).all()):
        _zero_backward(q, p)
        return None
    loss = loss_fn(scores, labels, temperature)
    value = float(loss.detach())
    if not math.isfinite(value):
        _zero_backward(q, p)
        return None
    (loss * scale).backward()
    return value


def _cached_step(model, tensors, labels, loss_fn, device, autocast, d, temperature, scale, chunk) -> float | None:
    inner = _inner(model)
    parts = split_chunks(tensors, chunk, getattr(inner, "padding_side", "right"))
    # 1. embeddings without a graph, remembering the RNG state each chunk started from
    states, qs, ps = [], [], []
    with torch.no_grad():
        for part in parts:
            states.append(RandContext(device))
            with autocast():
                q, p = inner(**part)
            qs.append(q.float())
            ps.append(p.float())
    q_local = torch.cat(qs).requires_grad_(True)
    p_local = torch.cat(ps).requires_grad_(True)
    # 2. the loss of the (gathered) batch and its gradient w.r.t. this rank's embeddings
    q_all = gather_with_grad(q_local, d)
    p_all = gather_with_grad(p_local, d)
    scores = q_all @ p_all.T
    value = None
    if bool(torch.isfinite(scores).all()):
        loss = loss_fn(scores, labels, temperature)
        value = float(loss.detach())
    if value is None or not math.isfinite(value):
        # Every rank sees the same gathered batch, so every rank takes this branch: one forward
        # with a graph and an empty backward keeps DDP's reduction in step.
        with RandContext(device), autocast():
            q, p = model(**parts[-1])
        _zero_backward(q, p)
        return None
    (loss * scale).backward()
    q_grad, p_grad = q_local.grad, p_local.grad
    # 3. re-run each chunk with a graph (same dropout masks) and push the cached gradients through
    ddp = _is_ddp(model)
    q_start = p_start = 0
    for i, (part, state) in enumerate(zip(parts, states)):
        nq, np_ = part["q_input_ids"].shape[0], part["p_input_ids"].shape[0]
        sync = contextlib.nullcontext() if not ddp or i == len(parts) - 1 else model.no_sync()
        with sync:
            with state, autocast():
                q, p = model(**part)
            torch.autograd.backward([q.float(), p.float()],
                                    [q_grad[q_start : q_start + nq], p_grad[p_start : p_start + np_]])
        q_start += nq
        p_start += np_
    return value
