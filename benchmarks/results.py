"""One result row of any section, the rich table that shows them and the JSON that keeps them."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """``ratio`` is always "how many times better ours is" (>1: ours wins), whatever the unit measures."""

    section: str
    case: str
    unit: str
    ours: float | None = None
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None
    target: float | None = None  # the ratio we promised; None where there is no target
    note: str = ""
    raw: dict[str, Any] = field(default_factory=dict)  # every timed repeat, for whoever wants the spread

    @property
    def met(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio >= self.target

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def speedup(ours_time: float | None, baseline_time: float | None) -> float | None:
    """Ratio of times (lower is better for ours): baseline / ours."""
    if not ours_time or baseline_time is None or math.isnan(baseline_time) or math.isnan(ours_time):
        return None
    return baseline_time / ours_time


def throughput_gain(ours_rate: float | None, baseline_rate: float | None) -> float | None:
    """Ratio of rates (higher is better for ours): ours / baseline."""
    return speedup(baseline_rate, ours_rate)


def skipped(section: str, case: str, unit: str, why: str, baseline_name: str = "") -> Row:
    return Row(section, case, unit, baseline_name=baseline_name, note=f"skipped: {why}")


def format_number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render_table(rows: list[Row], title: str):
    """One table, a band per section; the long notes go under it, numbered, to keep the table narrow."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for name, justify in [("case", "left"), ("unit", "left"), ("ours", "right"), ("baseline", "right"),
                          ("baseline is", "left"), ("ours better by", "right"), ("target", "right"),
                          ("met", "center"), ("note", "right")]:
        table.add_column(name, justify=justify)
    notes: list[str] = []
    section = None
    for row in rows:
        if row.section != section:
            if section is not None:
                table.add_section()
            section = row.section
            table.add_row(f"[bold]{section}[/]")
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        target = "-" if row.target is None else f">= {row.target:g}x"
        met = {True: "[green]yes[/]", False: "[red]NO[/]", None: ""}[row.met]
        marker = ""
        if row.note:
            notes.append(row.note)
            marker = f"[{len(notes)}]"
        table.add_row(row.case, row.unit, format_number(row.ours), format_number(row.baseline), row.baseline_name,
                      ratio, target, met, marker)
    footnotes = Text("\n".join(f"[{i}] {note}" for i, note in enumerate(notes, start=1)))
    return Group(table, footnotes)


def write_json(path: Path, rows: list[Row], environment: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"environment": environment, "rows": [row.to_json() for row in rows]}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)  # a reader never sees half a file
