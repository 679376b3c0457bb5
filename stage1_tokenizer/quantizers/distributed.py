"""Collectives for codebook state that depends on data, and no-ops when the run has a single process.

Every replica must hold the same codebook: statistics (counts, sums) are summed over processes, and
random choices (k-means seeds, restart picks) are made on the first process and broadcast.
Each helper is a collective under DDP: every process must call it, in the same order.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes, in place; returns it for chaining."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_from_first_(tensor: torch.Tensor) -> torch.Tensor:
    """Overwrite ``tensor`` on every process with the first process's copy, in place."""
    if is_distributed():
        dist.broadcast(tensor, src=0)
    return tensor
