"""Shared tools of the reliability tests: tiny settings, in-process CLI calls, and CLI runs in a child process that
can be SIGKILLed (from outside when a file appears, or from inside at an exact point of the code).

Children are forked from the test process, which has already imported torch and Lightning: a fresh interpreter
spends 20-60 s importing them on a busy 2-core machine, a fork none. The child runs the same Typer command as
`vqgen ...` (``app(args)``). The tests marked ``slow`` repeat the main case with the real `vqgen` executable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import pipeline.runner  # noqa: F401  (import Lightning now, so its log handler binds to the real stderr)
from pipeline.cli import app

# 16x16 digits, a tokenizer of a few thousand weights, 5 batches of 256 per epoch (1497 training images).
TOKENIZER_TINY = [
    "data.name=digits", "data.image_size=16",
    "tokenizer.hidden_channels=16", "tokenizer.res_channels=8", "tokenizer.n_res_blocks=1",
    "tokenizer.embed_dim=8", "tokenizer.quantizer.codebook_size=16",
    "tokenizer.train.batch_size=256", "tokenizer.train.accelerator=cpu", "tokenizer.train.max_epochs=3",
]
PRIOR_TINY = [
    "prior.gpt.n_layer=1", "prior.gpt.n_head=2", "prior.gpt.n_embd=16",
    "prior.train.batch_size=256", "prior.train.accelerator=cpu", "prior.train.max_epochs=3",
    "prior.train.warmup_steps=2",
]
STEPS_PER_EPOCH = 5


def sets(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        out += ["--set", item]
    return out


def invoke(args: list[str]) -> tuple[int, str]:
    """Run a vqgen command in this process; returns (exit code, stdout + stderr)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # A real traceback: show it, the test will fail on the exit code or the message.
        import traceback

        return result.exit_code, result.output + "".join(traceback.format_exception(result.exception))
    return result.exit_code, result.output


def assert_clear_error(code: int, output: str, *needles: str) -> None:
    assert code == 2, f"expected exit code 2, got {code}:\n{output}"
    assert "Traceback" not in output, output
    assert "error:" in output, output
    flat = " ".join(output.split())  # rich wraps long lines
    for needle in needles:
        assert " ".join(needle.split()) in flat, f"{needle!r} not in:\n{output}"


def fork_cli(args: list[str], log: Path, *, inject: Optional[Callable[[], None]] = None,
             kill_when: Optional[Callable[[], bool]] = None, sig: int = signal.SIGKILL,
             timeout: float = 300) -> int:
    """Run ``vqgen ARGS`` in a forked child and wait for it. ``inject`` runs in the child first (to plant a
    self-kill at an exact point); ``kill_when`` is polled here and sends ``sig`` once it holds.
    Returns the child's exit code, or -signal when a signal ended it. Its output goes to ``log``."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            # pytest's capture replaced sys.stdout/err with its own files: point them at the log as well.
            sys.stdout = sys.__stdout__ = os.fdopen(os.dup(fd), "w", buffering=1)
            sys.stderr = sys.__stderr__ = os.fdopen(os.dup(fd), "w", buffering=1)
            # GNU OpenMP's thread pool does not survive fork(): one thread avoids a hang in the first parallel op.
            torch.set_num_threads(1)
            os.environ["VQGEN_NO_PROGRESS"] = "1"
            if inject is not None:
                inject()
            try:
                app([str(a) for a in args])
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # noqa: BLE001 - report anything, then leave without running pytest's cleanup
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + timeout
    sent = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if not sent and kill_when is not None and kill_when():
            os.kill(pid, sig)
            sent = True
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"vqgen {' '.join(map(str, args))} did not finish in {timeout}s; log:\n"
                                 f"{log.read_text()[-3000:]}")
        time.sleep(0.02)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def kill_self() -> None:
    """SIGKILL this process at once: no cleanup, no finally blocks, like a power cut for the process."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at_step(step: int) -> Callable[[], None]:
    """For ``fork_cli(inject=...)``: SIGKILL the child right after optimizer step ``step``, before a checkpoint of
    that step could be written (the checkpoint callbacks run after the others)."""
    def inject() -> None:
        from pipeline import training

        original = training.NonFiniteLossGuard.on_train_batch_end

        def hook(self, trainer, *args):
            original(self, trainer, *args)
            if trainer.global_step == step:
                kill_self()

        training.NonFiniteLossGuard.on_train_batch_end = hook

    return inject


def vqgen_subprocess(args: list[str], log: Path) -> subprocess.Popen:
    """The real `vqgen` executable in a new process (for the slow tests)."""
    exe = Path(sys.executable).with_name("vqgen")
    if not exe.exists():
        pytest.skip(f"no vqgen executable beside {sys.executable}")
    # One thread, like the tests' own runs: the same floating-point work, so the same weights.
    env = {**os.environ, "VQGEN_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([str(exe), *map(str, args)], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def temporaries(root: Path) -> list[Path]:
    """Temporary files or folders (``.NAME.XXXX.tmp``) anywhere under ``root``."""
    return [p for p in root.rglob("*.tmp")]


def load_checkpoint_safely(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def wait_for(path: Path) -> Callable[[], bool]:
    return lambda: path.exists()
