"""The ``vqgen`` command line. Every command reads the same config (``-c FILE`` merged in order, then
``--set key=value``); its own options are shortcuts for those overrides. Option values and paths are checked
before torch is imported, so a wrong one answers at once. User errors print one clear message and exit with
code 2; ``--debug`` shows the traceback. One module per group of commands; importing them registers them."""

from __future__ import annotations

# In the order `vqgen --help` lists the commands.
from . import stage1, stage2, evaluation, chain, bench  # noqa: F401  isort: skip
from .apps import app


def main() -> None:  # pragma: no cover
    app()
