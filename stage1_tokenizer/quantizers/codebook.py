"""A bank of codebooks looked up by nearest neighbour, and the upkeep that keeps their codes in use.

Shared by the ``vq``, ``ema``, ``rvq``, ``pq`` (and, for its upkeep, ``soft``) quantizers, whose config models inherit
:class:`CodebookOptions`. ``G`` independent codebooks of ``K`` vectors of size ``d`` (one for plain VQ, one per
group for product VQ) are looked up together with batched fp32 distances. The vectors are learned either

- by gradient (the default): a Parameter moved by the codebook loss ``||sg[z] - e||^2``, or
- with ``ema: true``, by exponential moving averages of the encoder outputs assigned to each code (van den Oord
  et al. 2017, appendix A.1), with Laplace smoothing of the counts so a code that nobody uses never divides by
  zero. Such codes get no gradient, so their quantizer's loss is the commitment term only.

Optional upkeep against codebook collapse, reduced across processes under DDP so all replicas stay identical:

- k-means init: Lloyd's k-means on the first training batch replaces the random init;
- dead-code restart: a code whose usage (an EMA of its assignments per training step, summed over processes)
  falls below a threshold is moved onto a random encoder output of the current batch;
- a usage-entropy loss term (``entropy_weight``): see :mod:`.usage_entropy`.

Vectors are stored flat as ``[G*K, d]``, which for one group is the ``[K, d]`` layout of an ``nn.Embedding``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .distances import grouped_nearest_code
from .distributed import all_reduce_sum_
from .kmeans import cluster_counts, cluster_sums, kmeans, random_rows
from .usage_entropy import usage_entropies
from .configs import CodebookOptions


def vq_loss_terms(x: torch.Tensor, quantized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(||sg[x] - e||^2, ||x - sg[e]||^2)``: the codebook term and the commitment term, means in fp32.

    The two have the same value; they differ in where the gradient goes (codes vs encoder), which is why
    the commitment weight beta multiplies only the second.
    """
    codebook_term = F.mse_loss(quantized.float(), x.detach().float())
    commitment_term = F.mse_loss(x.float(), quantized.detach().float())
    return codebook_term, commitment_term


class Codebook(nn.Module):
    """``G`` codebooks of ``K`` vectors; ``forward(x [G, N, d]) -> (indices [G, N], vectors [G, N, d])``.

    In training mode, ``forward`` also runs the upkeep: k-means init and dead-code restarts happen before the
    lookup (so this step's graph sees the final codes), the EMA and usage statistics are updated after it.
    """

    def __init__(
        self,
        size: int,
        dim: int,
        groups: int = 1,
        options: CodebookOptions | None = None,
        cosine: bool = False,
    ):
        super().__init__()
        options = options or CodebookOptions()
        if size <= 0 or dim <= 0 or groups <= 0:
            raise ValueError(f"codebook needs positive size, dim and groups, got {size}, {dim}, {groups}")
        self.size, self.dim, self.groups = size, dim, groups
        self.cosine = cosine
        self.kmeans_iters = options.kmeans_iters
        self.restart = options.restart
        self.dead_code_threshold = options.dead_code_threshold
        self.usage_decay = options.usage_decay
        self.ema_decay = options.decay if options.ema else None
        self.ema_eps = options.eps
        self.entropy_weight = options.entropy_weight
        self.entropy_temperature = options.entropy_temperature

        bound = 1.0 / size  # the small uniform init of the VQ-VAE reference implementations
        init = torch.empty(groups * size, dim).uniform_(-bound, bound)
        if self.ema_decay is None:
            self.weight = nn.Parameter(init)
        else:
            self.register_buffer("weight", init)
            # Count 1 and sum = vector: the smoothed average starts at the init instead of at 0 / 0.
            self.register_buffer("ema_count", torch.ones(groups * size))
            self.register_buffer("ema_sum", init.clone())
        # Persistent, so a reloaded model does not run k-means again when training resumes.
        self.register_buffer("initialized", torch.tensor(not options.kmeans_init))
        if self.restart:
            self.register_buffer("usage_ema", torch.zeros(groups * size))
            self.register_buffer("usage_started", torch.tensor(False))
        self.restarted_last_step = 0  # for logging

    @property
    def learned_by_ema(self) -> bool:
        return self.ema_decay is not None

    # --- lookup ------------------------------------------------------------------------------------------------
    def vectors(self) -> torch.Tensor:
        """The codes as ``[G, K, d]`` in fp32 (unit length for cosine codebooks)."""
        vectors = self.weight.float().view(self.groups, self.size, self.dim)
        return F.normalize(vectors, dim=-1) if self.cosine else vectors

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        return grouped_nearest_code(x, self.vectors().detach())

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """``indices [G, N] -> [G, N, d]``; carries the gradient to the vectors of a gradient-learned codebook."""
        if self.groups > 1:
            indices = indices + torch.arange(self.groups, device=indices.device)[:, None] * self.size
        return F.embedding(indices, self.vectors().reshape(-1, self.dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            self.upkeep_before_lookup(x.detach().float())
        indices = self.nearest(x)
        quantized = self.embed(indices)
        if self.training:
            self.update_statistics(x.detach().float(), indices)
        return indices, quantized

    def loss(self, x: torch.Tensor, quantized: torch.Tensor, beta: float):
        """``(loss, codebook term, commitment term)`` of ``x`` quantized by this codebook.

        The commitment term (weighted by beta) keeps the encoder close to its codes; the codebook term moves
        gradient-learned codes toward the encoder outputs. EMA codes learn from their running averages instead,
        so their loss is the commitment term only.
        """
        codebook_term, commitment_term = vq_loss_terms(x, quantized)
        loss = beta * commitment_term
        if not self.learned_by_ema:
            loss = loss + codebook_term
        if self.entropy_weight > 0:
            grouped, nearest = (t if t.dim() == 3 else t.reshape(self.groups, -1, self.dim) for t in (x, quantized))
            sample_entropy, codebook_entropy = usage_entropies(grouped, self.vectors(), nearest,
                                                               self.entropy_temperature)
            loss = loss + self.entropy_weight * (sample_entropy - codebook_entropy)
        return loss, codebook_term, commitment_term

    # --- upkeep ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def upkeep_before_lookup(self, x: torch.Tensor) -> None:
        self.restarted_last_step = 0
        if not bool(self.initialized):
            centroids, _ = kmeans(x, self.size, self.kmeans_iters, spherical=self.cosine)
            self._set_codes(torch.ones(self.groups, self.size, dtype=torch.bool, device=x.device), centroids)
            self.initialized.fill_(True)
        if self.restart and bool(self.usage_started):
            usage = self.usage_ema.view(self.groups, self.size)
            # The usage EMA is built from counts summed over processes, so every replica takes this branch together.
            dead = usage < self.dead_code_threshold
            if bool(dead.any()):
                self._set_codes(dead, random_rows(x, self.size))
                # A new code starts with its group's typical usage, which gives it time to attract outputs.
                usage[dead] = usage.mean(1, keepdim=True).expand_as(usage)[dead]
                self.restarted_last_step = int(dead.sum())

    @torch.no_grad()
    def _set_codes(self, mask: torch.Tensor, vectors: torch.Tensor) -> None:
        """Put ``vectors [G, K, d]`` where ``mask [G, K]`` is set (and reset their EMA statistics)."""
        weight = self.weight.view(self.groups, self.size, self.dim)
        weight[mask] = vectors[mask].to(weight.dtype)
        if self.learned_by_ema:
            self.ema_count.view(self.groups, self.size)[mask] = 1.0
            self.ema_sum.view(self.groups, self.size, self.dim)[mask] = vectors[mask].to(self.ema_sum.dtype)

    @torch.no_grad()
    def update_statistics(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        if not (self.learned_by_ema or self.restart):
            return
        if self.learned_by_ema:
            sums, counts = cluster_sums(x, indices, self.size)
            packed = all_reduce_sum_(torch.cat([sums, counts[..., None]], dim=-1))  # one collective for both
            sums, counts = packed[..., :-1], packed[..., -1]
            self._ema_step(sums, counts)
        else:
            counts = all_reduce_sum_(cluster_counts(indices, self.size))
        if self.restart:
            self._track_usage(counts)

    def _ema_step(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """``N <- g N + (1-g) n``, ``m <- g m + (1-g) sum x``, ``e = m / N~`` with Laplace-smoothed ``N~``."""
        decay = self.ema_decay
        self.ema_count.mul_(decay).add_(counts.reshape(-1), alpha=1.0 - decay)
        self.ema_sum.mul_(decay).add_(sums.reshape(-1, self.dim), alpha=1.0 - decay)
        count = self.ema_count.view(self.groups, self.size)
        total = count.sum(1, keepdim=True)
        smoothed = (count + self.ema_eps) / (total + self.size * self.ema_eps) * total
        averages = self.ema_sum.view(self.groups, self.size, self.dim) / smoothed[..., None]
        self.weight.copy_(averages.reshape(-1, self.dim))

    def _track_usage(self, counts: torch.Tensor) -> None:
        usage = self.usage_ema.view(self.groups, self.size)
        if not bool(self.usage_started):
            # Every code starts at the uniform share of the first step, so nothing is dead before it had a chance.
            usage.copy_((counts.sum(1, keepdim=True) / self.size).expand_as(usage))
            self.usage_started.fill_(True)
        usage.mul_(self.usage_decay).add_(counts, alpha=1.0 - self.usage_decay)
