"""Batched Lloyd's k-means for codebook initialisation, one independent problem per codebook group.

Under DDP every process contributes its own samples: the seeds come from the first process and each
iteration sums the per-cluster statistics over processes, so all replicas end with the same centroids.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .distances import grouped_nearest_code
from .distributed import all_reduce_sum_, broadcast_from_first_


def _flat_assignment(assignment: torch.Tensor, size: int) -> torch.Tensor:
    """``[G, N]`` cluster indices -> indices into the flattened ``G * size`` clusters."""
    groups = assignment.shape[0]
    return (assignment + torch.arange(groups, device=assignment.device)[:, None] * size).reshape(-1)


def cluster_counts(assignment: torch.Tensor, size: int) -> torch.Tensor:
    """How many samples each cluster holds, ``[G, K]`` in fp32, from ``assignment [G, N]``."""
    groups = assignment.shape[0]
    flat = _flat_assignment(assignment, size)
    return torch.bincount(flat, minlength=groups * size).float().view(groups, size)


def cluster_sums(samples: torch.Tensor, assignment: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group and cluster: the sum of the assigned samples ``[G, K, d]`` and their count ``[G, K]``.

    ``samples [G, N, d]``, ``assignment [G, N]`` with values below ``size``. One ``index_add_`` over all groups.
    """
    groups, _, dim = samples.shape
    flat = _flat_assignment(assignment, size)
    sums = samples.new_zeros(groups * size, dim).index_add_(0, flat, samples.reshape(-1, dim))
    return sums.view(groups, size, dim), cluster_counts(assignment, size).to(samples.dtype)


def random_rows(samples: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` rows drawn per group from ``samples [G, N, d]``: distinct when there are enough, else with replacement.

    The draw of the first process is broadcast, so every replica gets the same rows.
    """
    groups, n, dim = samples.shape
    if n >= count:
        picks = torch.rand(groups, n, device=samples.device).argsort(dim=1)[:, :count]
    else:
        picks = torch.randint(n, (groups, count), device=samples.device)
    rows = samples.gather(1, picks[..., None].expand(-1, -1, dim)).contiguous()
    return broadcast_from_first_(rows)


@torch.no_grad()
def kmeans(samples: torch.Tensor, size: int, iters: int, spherical: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster ``samples [G, N, d]`` into ``size`` centroids per group: centroids ``[G, K, d]``, counts ``[G, K]``.

    ``spherical`` keeps centroids on the unit sphere (for cosine codebooks). A cluster left empty keeps its
    previous centroid rather than collapsing to zero.
    """
    samples = samples.float()
    centroids = random_rows(samples, size)
    if spherical:
        centroids = F.normalize(centroids, dim=-1)
    counts = samples.new_zeros(samples.shape[0], size)
    for _ in range(iters):
        assignment = grouped_nearest_code(samples, centroids)
        sums, counts = cluster_sums(samples, assignment, size)
        packed = all_reduce_sum_(torch.cat([sums, counts[..., None]], dim=-1))
        sums, counts = packed[..., :-1], packed[..., -1]
        means = sums / counts.clamp_min(1.0)[..., None]
        if spherical:
            means = F.normalize(means, dim=-1)
        centroids = torch.where(counts[..., None] > 0, means, centroids)
    # The collectives above leave identical values everywhere; the broadcast makes that a guarantee.
    return broadcast_from_first_(centroids.contiguous()), counts
