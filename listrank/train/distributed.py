"""torch.distributed for the trainer: the process group `torchrun` asks for, and rank-0 helpers.

Every helper hands a `ListrankError` raised on rank 0 to every rank, so a user mistake found while
rank 0 loads the data ends all processes with the same one-line message instead of leaving the
other ranks waiting in a collective.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from listrank.errors import ListrankError


@dataclass
class Dist:
    """This process's place in the job (world 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this trainer created the process group (and destroys it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup_distributed(device_hint: str | None) -> Dist:
    """Join the process group that torchrun's environment describes: NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not dist.is_initialized():
        return Dist()
    owns = False
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device_hint is None or device_hint.startswith("cuda"))
    if use_cuda:  # NCCL (and its object collectives) use the current device
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owns = True
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, owns)


def rank0_first(d: Dist, fn: Callable[[], Any]) -> Any:
    """Run `fn` on rank 0, then (if it worked) on the other ranks; an error reaches every rank."""
    if d.world == 1:
        return fn()
    result, error = None, None
    if d.main:
        try:
            result = fn()
        except ListrankError as e:
            error = str(e)
    box = [error]
    dist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        raise ListrankError(box[0])
    if not d.main:
        result = fn()
    d.barrier()
    return result


def rank0_only(d: Dist, fn: Callable[[], Any]) -> Any:
    """Run `fn` on rank 0 only and hand its result (or its error) to every rank."""
    if d.world == 1:
        return fn()
    box: list[Any] = [None, None]
    if d.main:
        try:
            box = [fn(), None]
        except ListrankError as e:
            box = [None, str(e)]
    dist.broadcast_object_list(box, src=0)
    if box[1] is not None:
        raise ListrankError(box[1])
    return box[0]


def rank0_try(d: Dist, fn: Callable[[], Any]) -> Any:
    """Run `fn` on rank 0 only; its error reaches every rank, its result stays on rank 0 (None elsewhere)."""
    if d.world == 1:
        return fn()
    result, box = None, [None]
    if d.main:
        try:
            result = fn()
        except ListrankError as e:
            box = [str(e)]
    dist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        raise ListrankError(box[0])
    return result
