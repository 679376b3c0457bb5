"""Denormals are flushed to zero for every thread of a process that calls ``flush_denormals`` (the command line
does, as it loads a config). Each case runs in a fresh interpreter: the setting is process-wide and must come
before torch starts its threads."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="an x86 CPU mode")

# A product of denormals over 2 threads (large enough for torch to split it): zero only where every thread flushes.
PRODUCT = ("import torch\ntorch.set_num_threads(2)\n"
           "tiny = torch.full((1 << 20,), 1e-39)\n"
           "print(int((tiny * 1.5).count_nonzero()))\n")


def run(prefix: str) -> int:
    done = subprocess.run([sys.executable, "-c", prefix + PRODUCT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])  # how many products stayed non-zero


def test_without_the_call_denormals_survive():
    assert run("") == 1 << 20


def test_flush_denormals_reaches_every_thread():
    assert run("from pipeline.core.float_env import flush_denormals\nassert flush_denormals()\n") == 0


def test_loading_a_config_on_the_command_line_flushes_denormals():
    assert run("from pipeline.cli.options import load_cli_config\nload_cli_config([], [], None)\n") == 0
