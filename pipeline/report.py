"""report/: metrics.json for machines, report.md for people (protocol first, then numbers, then the grid)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .core.files import atomic_path, write_json, write_text
from .run_paths import METRICS_FILE


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_markdown(result: dict[str, Any], grid_name: str | None) -> str:
    lines = ["# vqgen report", ""]
    gen = result.get("generation", {})
    rec = result.get("reconstruction", {})
    lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall"):
        if key in gen:
            lines.append(f"| {key} | {_fmt(gen[key])} |")
    for key, label in (("rfid", "rFID (tokenizer reconstructions)"), ("psnr", "reconstruction PSNR (dB)"),
                       ("mse", "reconstruction MSE ([-1,1] range)")):
        if key in rec:
            lines.append(f"| {label} | {_fmt(rec[key])} |")
    lines += ["", "## Protocol", "", "| item | value |", "|---|---|"]
    for key, value in result.get("protocol", {}).items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        lines.append(f"| {key} | {value} |")
    sampling = result.get("sampling") or {}
    if sampling:
        lines += ["", "## Sampling", "", "| item | value |", "|---|---|"]
        for key in ("arch", "n", "label", "seed", "controls", "seconds", "prior", "tokenizer"):
            if key in sampling:
                lines.append(f"| {key} | {sampling[key]} |")
    if grid_name:
        lines += ["", "## Samples", "", f"![samples]({grid_name})"]
    return "\n".join(lines) + "\n"


def write_report(out: Path, result: dict[str, Any], grid: Path | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    grid_name = None
    if grid is not None and grid.exists():
        grid_name = "samples.png"
        with atomic_path(out / grid_name) as tmp:
            shutil.copyfile(grid, tmp)
    write_text(out / "report.md", render_markdown(result, grid_name))
    write_json(out / METRICS_FILE, result)  # written last: its presence marks a finished report
