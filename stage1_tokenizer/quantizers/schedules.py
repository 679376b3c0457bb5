"""Schedules over training steps: temperatures (``gumbel``, ``sq``, ``soft``) and weight ramps (``gumbel``'s KL).

A schedule's length is a fraction of the whole run (``anneal_fraction``), so one config serves a 300-step run and
a 50,000-step one alike; ``anneal_steps > 0`` gives it in absolute steps instead. The run's length reaches a
quantizer through :meth:`RunSchedule.set_run_length`, which the training loop calls before the first step.
"""

from __future__ import annotations

import math
import warnings

import torch

from .configs import SCHEDULES


def interpolate(start: float, end: float, progress: float, kind: str = "exp") -> float:
    """``start`` at progress 0, ``end`` at progress 1 (clipped to [0, 1]).

    ``exp`` interpolates geometrically (equal ratios per step, the usual choice for temperatures),
    ``linear`` arithmetically, ``cosine`` along half a cosine.
    """
    progress = min(max(progress, 0.0), 1.0)
    if kind == "exp":
        return start * (end / start) ** progress
    if kind == "linear":
        return start + (end - start) * progress
    if kind == "cosine":
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {kind!r}; known: {', '.join(SCHEDULES)}")


def annealed(start: float, end: float, step: int, steps: int, kind: str = "exp") -> float:
    """``start`` at step 0, ``end`` from step ``steps`` on (at once when ``steps`` is 0)."""
    return interpolate(start, end, 1.0 if steps <= 0 else max(step, 0) / steps, kind)


class RunSchedule:
    """Mixin for a quantizer whose training depends on where it is in the run.

    It keeps the training ``step`` (a buffer, so a resumed run continues where it stopped) and the run's length
    in steps. :meth:`progress` is the share of a schedule done: ``step / anneal_steps`` when that is given, else
    ``step / (fraction * run length)``.
    """

    run_length: int | None = None

    def _init_schedule(self) -> None:
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def set_run_length(self, total_steps: int) -> None:
        """Training steps of the whole run, so that schedules given as fractions of it end where they should."""
        if total_steps < 1:
            raise ValueError(f"a run needs at least one training step, got {total_steps}")
        self.run_length = int(total_steps)

    def progress(self, anneal_steps: int, fraction: float) -> float:
        step = int(self.step)
        if anneal_steps > 0:
            return min(step / anneal_steps, 1.0)
        if self.run_length is None:
            if not self.training:
                return 1.0  # evaluation uses the schedule's end values
            if not getattr(self, "_warned_no_run_length", False):
                self._warned_no_run_length = True
                warnings.warn(f"{type(self).__name__}: its schedules are fractions of the run, but the run's length "
                              f"is unknown, so they stay at their start values; call set_run_length(total_steps) "
                              f"before training (vqgen's trainer does), or give anneal_steps", stacklevel=3)
            return 0.0
        return min(step / max(1.0, fraction * self.run_length), 1.0)
