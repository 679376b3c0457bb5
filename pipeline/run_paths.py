"""The names inside a run directory, kept in one place: steps, commands, reports and experiments ask ``RunPaths``
where things are, so runs saved earlier keep loading for as long as these names stay."""

from __future__ import annotations

from pathlib import Path

RESOLVED_CONFIG = "config.yaml"  # the merged config a run (or a step command, in its output) ran with
METRICS_FILE = "metrics.json"  # a report's figures; written last, so it marks a finished report
GRID_FILE = "grid.png"  # a samples directory's first 64 images in one picture
PNG_DIR = "png"  # a samples directory's images, one file each
EVAL_DIR = "eval"  # `vqgen tokenizer eval` writes here inside the tokenizer directory


class RunPaths:
    """Where each step writes inside a run directory."""

    def __init__(self, root: str | Path, tokenizer: str | Path | None = None):
        self.root = Path(root)
        self.config = self.root / RESOLVED_CONFIG
        # ``tokenizer``: one trained elsewhere, read where it is (experiments/prior_table.py --tokenizer-dir); the
        # steps after it fingerprint its weights file, not its place, so finished work stays valid.
        self.tokenizer = Path(tokenizer) if tokenizer else self.root / "tokenizer"
        self.tokenizer_eval = self.tokenizer / EVAL_DIR
        self.codes_root = self.root / "codes"
        self.report = self.root / "report"
        self.summary = self.root / "summary"
        self.real_report = self.root / "report-real"  # real images against the reference: the floor of FID

    def codes(self, split: str) -> Path:
        return self.codes_root / split

    def prior(self, arch: str) -> Path:
        return self.root / f"prior-{arch}"

    def samples(self, arch: str, setting: str = "") -> Path:
        """``setting`` names one of several sample sets of the same prior (a sweep of sampling controls)."""
        return self.root / _named("samples", arch, setting)

    def arch_report(self, arch: str, setting: str = "") -> Path:
        """A report per prior (and setting), for runs that compare several (experiments/prior_table.py)."""
        return self.root / _named("report", arch, setting)

    def priors(self) -> list[Path]:
        return sorted(self.root.glob("prior-*"))

    def sample_sets(self) -> list[Path]:
        return sorted(path for path in self.root.glob("samples-*") if (path / PNG_DIR).is_dir())

    def metrics_files(self) -> list[Path]:
        """Every report's figures, the main one and any per prior."""
        return sorted(self.root.rglob(METRICS_FILE))


def _named(kind: str, arch: str, setting: str) -> str:
    return f"{kind}-{arch}-{setting}" if setting else f"{kind}-{arch}"
