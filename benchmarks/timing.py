"""Wall-clock timing that stays fair on a shared, noisy machine.

Contestants of one row are timed round-robin (A, B, A, B, ...) rather than A-all-then-B-all, so a burst of load
from another process lands on both sides and the ratio survives even when absolute times wobble.
"""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Settings:
    """How hard each section works: ``quick`` shrinks everything so the harness itself can be tested in seconds."""

    device: str = "cpu"
    quick: bool = False
    warmup: int = 1
    repeats: int = 5
    threads: int = 2
    compile: bool = False
    inception_weights: str | None = None
    row_budget_s: float = 120.0  # stop repeating a row once its timed calls have used this much (at least one call)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def autocast(self):
        """bf16 autocast on CUDA (quantizers keep their distances in fp32 inside); plain fp32 on CPU."""
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_round_robin(
    calls: dict[str, Callable[[], object]], settings: Settings, repeats: int | None = None
) -> dict[str, list[float]]:
    """Seconds per call for each contestant: ``warmup`` untimed calls each, then interleaved timed repeats.

    Repeats stop early once the timed calls of the row have spent ``settings.row_budget_s`` (slow baselines
    would otherwise take many minutes); every contestant gets at least one timed call.
    """
    repeats = repeats or settings.repeats
    for fn in calls.values():
        for _ in range(settings.warmup):
            fn()
    synchronize(settings.device)
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    spent = 0.0
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            synchronize(settings.device)
            elapsed = time.perf_counter() - start
            seconds[name].append(elapsed)
            spent += elapsed
        if spent > settings.row_budget_s:
            break
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
