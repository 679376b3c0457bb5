"""One step bound to its inputs and outputs: all the runner needs to skip it or do it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .fingerprints import recorded_fingerprint


@dataclass(frozen=True)
class Step:
    name: str
    marker: Path  # the file in which the finished step records its fingerprint
    fingerprint: Callable[[], str]  # called only when the step is reached: it hashes the steps' outputs before it
    complete: Callable[[], bool]  # the outputs are whole (they load, nothing is missing)
    work: Callable[[str], Any]  # does the step, recording the fingerprint it is given

    def finished(self, expected: str) -> bool:
        return recorded_fingerprint(self.marker) == expected and self.complete()
