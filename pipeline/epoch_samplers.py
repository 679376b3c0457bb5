"""Train-split orders that depend on (seed, epoch) alone and can start an epoch late: a run resumed from a
mid-epoch checkpoint skips the samples it had trained on and sees the rest in an uninterrupted run's order."""

from __future__ import annotations

from typing import Optional

import torch
from torch.utils.data import DistributedSampler, RandomSampler, Sampler


class EpochRandomSampler(RandomSampler):
    """Shuffles with a permutation that depends on (seed, epoch) alone (a plain RandomSampler continues its
    generator, which a new process restarts). Lightning calls ``set_epoch``."""

    def __init__(self, data_source, seed: int, epoch: int = 0, skip: int = 0):
        super().__init__(data_source)
        self.seed, self.epoch = seed, epoch
        self.skip = skip  # samples of ``epoch`` trained on before a resume

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:  # only the epoch a run resumed in starts late
            self.skip = 0
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(hash((self.seed, self.epoch)) & 0x7FFF_FFFF_FFFF_FFFF)
        skip, self.skip = self.skip, 0
        order = torch.randperm(len(self.data_source), generator=generator)[skip:].tolist()
        if getattr(self.data_source, "takes_epoch", False):  # random transforms drawn from (seed, epoch, index)
            yield from ((index, self.epoch) for index in order)
        else:
            yield from order


class EpochDistributedSampler(DistributedSampler):
    """What Lightning puts in under DDP (a DistributedSampler seeded with the run's seed, so the same order as
    before), able to start an epoch late. Being a DistributedSampler, Lightning leaves it in place."""

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int, epoch: int = 0, skip: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.epoch, self.skip = epoch, skip  # skip: this replica's samples of ``epoch`` trained on

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def __iter__(self):
        skip, self.skip = self.skip, 0
        yield from list(super().__iter__())[skip:]


def train_sampler(dataset, seed: int, batch_size: int, position: Optional[dict[str, int]],
                  replicas: int = 1, rank: int = 0) -> Sampler:
    """``position``: {"epoch", "batches"} of the epoch in progress when resuming (batches per replica)."""
    at = position or {"epoch": 0, "batches": 0}
    skip = at["batches"] * batch_size
    if replicas > 1:
        return EpochDistributedSampler(dataset, replicas, rank, seed, at["epoch"], skip)
    return EpochRandomSampler(dataset, seed, at["epoch"], skip)
