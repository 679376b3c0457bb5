"""Temperature schedules over training steps (Gumbel-softmax relaxations: the ``gumbel`` and ``sq`` quantizers)."""

from __future__ import annotations

import math

SCHEDULES = ("exp", "linear", "cosine")


def check_schedule(kind: str, start: float, end: float, steps: int) -> None:
    if kind not in SCHEDULES:
        raise ValueError(f"quantizer.schedule must be one of {', '.join(SCHEDULES)}, got {kind!r}")
    if start <= 0 or end <= 0:
        raise ValueError(f"quantizer temperatures must be positive, got tau_start={start}, tau_end={end}")
    if steps < 0:
        raise ValueError(f"quantizer.anneal_steps must be non-negative, got {steps}")


def annealed(start: float, end: float, step: int, steps: int, kind: str = "exp") -> float:
    """``start`` at step 0, ``end`` from step ``steps`` on (at once when ``steps`` is 0).

    ``exp`` interpolates geometrically (equal ratios per step, the usual choice for temperatures),
    ``linear`` arithmetically, ``cosine`` along half a cosine.
    """
    progress = 1.0 if steps <= 0 else min(max(step, 0) / steps, 1.0)
    if kind == "exp":
        return start * (end / start) ** progress
    if kind == "linear":
        return start + (end - start) * progress
    if kind == "cosine":
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {kind!r}; known: {', '.join(SCHEDULES)}")
