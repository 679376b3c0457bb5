"""Training logs: which loggers a training step writes (the ``logger:`` section) and reading its CSV logs back.

Lightning's CSVLogger opens a new ``logs/version_N`` each time a step trains (a resumed run too), so the readers
join the versions in order. Cheap to import (no Lightning): reports read logs without training anything."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LOG_DIR = "logs"  # inside a step's output: version_N/metrics.csv, and tensorboard/ or wandb/ when chosen
METRICS_CSV = "metrics.csv"


class LoggerConfig(BaseModel):
    """The CSV log is always written (reports draw their curves from it); ``tensorboard`` or ``wandb`` adds that
    logger (``uv sync --group tensorboard`` / ``--group wandb``), which also shows an image grid at each epoch end:
    a tokenizer's reconstructions under their originals, a prior's samples."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["csv", "tensorboard", "wandb"] = "csv"
    images: int = Field(8, ge=0)  # images (or image pairs) in that grid; 0: none
    wandb_project: str = "vqgen"
    wandb_offline: bool = True  # nothing leaves the machine unless set to false (or `wandb sync` later)


def log_versions(out_dir: Path) -> list[Path]:
    """A step's ``logs/version_N`` folders, oldest first (version_10 after version_9)."""
    found = [p for p in (Path(out_dir) / LOG_DIR).glob("version_*") if p.is_dir() and p.name[8:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[8:]))


def metrics_rows(out_dir: Path) -> list[dict[str, str]]:
    """Every row of a step's CSV logs, its versions joined in order. A kill can leave a row longer than its header
    (while Lightning rewrote the file for a new column): the cells past the header are dropped."""
    rows: list[dict[str, str]] = []
    for version in log_versions(out_dir):
        path = version / METRICS_CSV
        if path.is_file():
            with path.open(newline="") as handle:
                rows += [{k: "" if v is None else v for k, v in row.items() if k is not None}
                         for row in csv.DictReader(handle)]
    return rows
