"""``vqgen fid --devices N``: the images cut into N contiguous slices whose edges fall on batch edges, so every
image meets the extractor in the same batch, at the same position, as with one process and gets the same features;
each process builds its own extractor on its device (process r on ``cuda:r`` with cuda) and the parent puts the
slices' features back in order."""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from .core.errors import VqgenError
from .fid_features import extract_features
from .process_pool import process_device, run_processes

FEATURES = "features"


def batch_aligned_slices(count: int, batch_size: int, processes: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each process's images: whole batches, shared as evenly as they go, none empty."""
    batches = -(-count // batch_size)
    processes = max(1, min(processes, batches))  # a process without a batch would only build the model
    edges = [rank * batches // processes * batch_size for rank in range(processes + 1)]
    return [(start, min(stop, count)) for start, stop in zip(edges, edges[1:])]


class ImageSlice:
    """Images ``start:stop`` of a streamed image set, read the way :func:`extract_features` reads a whole one."""

    def __init__(self, images, start: int, stop: int):
        self.images, self.start, self.stop = images, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        return self.images.batches(batch_size, self.start, self.stop)


def _worker(rank: int, job: dict) -> dict[str, torch.Tensor]:
    start, stop = job["slices"][rank]
    images = job["images"]
    mine = images[start:stop] if isinstance(images, torch.Tensor) else ImageSlice(images, start, stop)
    extractor = job["make_extractor"](process_device(job["accelerator"], rank))
    # One progress bar (the first slice's), not N drawn over one another.
    return {FEATURES: extract_features(mine, extractor, job["batch_size"], job["description"], progress=rank == 0)}


def extract_on_processes(images, make_extractor: Callable[[str], Callable], batch_size: int, description: str,
                         processes: int, accelerator: str = "cpu") -> torch.Tensor:
    """The features :func:`extract_features` gives, taken by ``processes`` spawned processes.

    ``make_extractor(device)`` builds the batch function in a process; it and ``images`` (a uint8 tensor, or a
    streamed image set whose item ranges can be read alone) are pickled to every process.
    """
    if batch_size < 1:
        raise VqgenError(f"FID batch size must be positive, got {batch_size}")
    if not isinstance(images, torch.Tensor) and not getattr(images, "divisible", False):
        raise VqgenError(f"fid.devices={processes}: these images are read in one pass (tar shards) and cannot be "
                         f"shared among processes; use fid.devices=1")
    slices = batch_aligned_slices(len(images), batch_size, processes)
    job = {"images": images, "make_extractor": make_extractor, "slices": slices, "batch_size": batch_size,
           "accelerator": accelerator, "description": f"{description} ({len(slices)} processes, first shown)"}
    parts = run_processes(_worker, job, len(slices), "FID feature")
    return torch.cat([part[FEATURES] for part in parts])
