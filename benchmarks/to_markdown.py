"""Turn a `vqgen bench` JSON file into the markdown table of the README's Performance section.

    uv run python -m benchmarks.to_markdown benchmarks/results/bench.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .results import format_number


def markdown(payload: dict) -> str:
    lines = ["| section | case | unit | ours | baseline | baseline is | ours better by | target | met |",
             "|---|---|---|---:|---:|---|---:|---:|:-:|"]
    for row in payload["rows"]:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        target = "-" if row["target"] is None else f">= {row['target']:g}x"
        met = {True: "yes", False: "**no**", None: ""}[row["met"]]
        lines.append(f"| {row['section']} | {row['case']} | {row['unit']} | {format_number(row['ours'])} | "
                     f"{format_number(row['baseline'])} | {row['baseline_name']} | {ratio} | {target} | {met} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
