"""Input checks and tensor layouts shared by the losses.

Layout (see docs/method.md): `scores` is `[B, B*G]`, query i against every passage of the batch,
query i's own group in columns `i*G .. i*G+G-1`; `labels` is `[B, G]`, the graded labels of each
query's own group.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from listrank.errors import ListrankError


def check_inputs(scores: Tensor, labels, temperature) -> tuple[Tensor, int, int]:
    """Validate shapes and temperature; return `(labels on scores' device, B, G)`."""
    if not torch.is_tensor(scores) or scores.ndim != 2:
        shape = tuple(scores.shape) if torch.is_tensor(scores) else type(scores).__name__
        raise ValueError(f"scores must be a 2-D tensor [B, B*G], got {shape}")
    if not scores.is_floating_point():
        raise ValueError(f"scores must be a floating-point tensor, got {scores.dtype}")
    labels = torch.as_tensor(labels, device=scores.device)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D tensor [B, G], got shape {tuple(labels.shape)}")
    b, n = scores.shape
    if b == 0:
        raise ValueError("scores is empty: a batch needs at least one query")
    if labels.shape[0] != b:
        raise ValueError(f"labels has {labels.shape[0]} rows but scores has {b} (one row per query)")
    if n % b != 0 or n == 0:
        raise ValueError(
            f"scores has {n} columns, not a positive multiple of its {b} rows: expected [B, B*G]"
        )
    g = n // b
    if labels.shape[1] != g:
        raise ValueError(
            f"labels has {labels.shape[1]} columns but scores {tuple(scores.shape)} implies "
            f"group size G = {n} // {b} = {g}"
        )
    # A tensor temperature (e.g. learnable) is not read back, to avoid a device sync.
    if isinstance(temperature, numbers.Real) and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return labels, b, g


def compute_dtype(scores: Tensor) -> torch.dtype:
    """float16/bfloat16 scores are upcast to float32 before softmax/log-sum-exp."""
    return torch.float32 if scores.dtype in (torch.float16, torch.bfloat16) else scores.dtype


def own_group(scores: Tensor, b: int, g: int) -> Tensor:
    """`[B, G]`: each query's scores against its own group (the diagonal blocks)."""
    idx = torch.arange(b, device=scores.device)
    return scores.reshape(b, b, g)[idx, idx]


def block_label_matrix(labels: Tensor, b: int, g: int) -> Tensor:
    """`[B, B*G]`: labels on the diagonal group blocks, 0 for every in-batch negative."""
    idx = torch.arange(b, device=labels.device)
    full = labels.new_zeros(b, b, g)
    full[idx, idx] = labels
    return full.reshape(b, b * g)



def check_label_temperature(value) -> float:
    """A loss's ``label_temperature`` option: a real number > 0 (the labels are divided by it)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 or value == float("inf"):
        raise ListrankError(f"label_temperature must be a finite number > 0, got {value!r}")
    return float(value)
