"""`torchrun --nproc-per-node N -m listrank index ...`: each process encodes one consecutive part
of the corpus (`index --shard RANK/WORLD_SIZE` done by every rank at once), then rank 0 joins the
parts as `listrank index merge` would (`--kind flat`, the default: one folder of all embeddings,
the same as one process writes; `--kind sharded`: the parts kept as shards, never loaded together;
`hnsw`/`ivfpq`: built from the joined embeddings).

The processes meet in a gloo process group (CPU or GPU alike: only two barriers cross it). Each
process encodes on its own device (`cuda:LOCAL_RANK` when there are GPUs). The parts are written
beside the output in `.<output>.torchrun-parts/` and removed after the merge.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) if "RANK" in os.environ else 1
    except ValueError:
        return 1


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_device():
    """The device this rank encodes on: its own GPU when there are GPUs, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}")
    return torch.device("cpu")


def index_under_torchrun(cls, encoder, docs, output, *, params=None, dtype="float32", batch_size=64,
                         dataset=None) -> Path:
    import torch.distributed as dist

    from listrank.retrieval.flat import FlatIndex
    from listrank.retrieval.sharded import merge

    r, n = rank(), world_size()
    output = Path(output)
    parts_dir = output.parent / f".{output.name}.torchrun-parts"
    own_group = not dist.is_initialized()
    if own_group:
        dist.init_process_group("gloo")
    try:
        encoder.to(local_device())
        encoder.device = local_device()
        if r == 0 and parts_dir.exists():
            shutil.rmtree(parts_dir)  # a crashed earlier run's parts (listrank's own hidden folder)
        dist.barrier()
        part = parts_dir / f"shard-{r:03d}"
        FlatIndex.build(docs, part, encoder=encoder, batch_size=batch_size, dataset=dataset, dtype=dtype,
                        shard=(r, n), show_progress=r == 0)
        dist.barrier()
        if r == 0:
            merge([parts_dir / f"shard-{i:03d}" for i in range(n)], output, kind=cls.name,
                  params=params or None, dtype=dtype if cls.name != "sharded" else None, move=True)
            shutil.rmtree(parts_dir, ignore_errors=True)
    finally:
        if own_group:
            dist.destroy_process_group()
    return output
