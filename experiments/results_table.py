"""What the experiment scripts share about their results: JSON tables that rows are merged into as each finishes
(so a killed run keeps what it finished), the command line and the machine each row records, and training times
that survive a rerun which skips the finished step."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Callable, Hashable, Optional


def merge_rows(path: Path, rows: list[dict], key: Callable[[dict], Hashable],
               order: Optional[Callable[[dict], tuple]] = None) -> list[dict]:
    """Replace the rows of ``path`` with the same ``key`` as a new one, keep the rest; written atomically.
    Returns the merged table."""
    table = json.loads(path.read_text()) if path.exists() else []
    new = {key(row) for row in rows}
    table = [row for row in table if key(row) not in new] + rows
    if order is not None:
        table.sort(key=order)
    write_table(path, table)
    return table


def write_table(path: Path, table: list[dict]) -> None:
    from pipeline.core.files import write_text

    write_text(path, json.dumps(table, indent=2) + "\n")  # atomically, making the folder too


def command_line() -> str:
    """How this script was called, as one could type it again."""
    return "uv run python " + " ".join(shlex.quote(arg) for arg in sys.argv)


def machine_label() -> str:
    import torch

    label = f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
    return label + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")


def timed_step(step, record: Path) -> Optional[float]:
    """Do ``step`` unless it is finished (``run_step``); the seconds of the run that made its outputs, kept in
    ``record`` under the step's name and fingerprint, so a rerun that skips it still reports them. None when they
    are unknown (made before ``record`` existed). A run that resumed counts only its last part: the tables prefer
    the ``train_seconds`` a model's provenance keeps (summed over resumed runs by the checkpoints' clock)."""
    from pipeline.core.files import read_json, write_json
    from pipeline.runner import run_step

    seconds = run_step(step)
    times = read_json(record) if record.exists() else {}
    expected = step.fingerprint()
    if seconds is not None:
        times[step.name] = {"fingerprint": expected, "seconds": seconds}
        write_json(record, times)
    entry = times.get(step.name, {})
    return entry.get("seconds") if entry.get("fingerprint") == expected else None
