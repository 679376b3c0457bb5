"""N worker processes on this machine (torch.multiprocessing spawn) that each write their share of a result to a
part file in a temporary folder; the parent reads the parts back in rank order. Shared by ``vqgen sample --devices``
and the multi-process FID features."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import torch
import torch.multiprocessing as mp

from .core.errors import VqgenError
from .core.files import load_tensors, save_tensors
from .core.float_env import flush_denormals


def process_device(accelerator: str, rank: int) -> str:
    return f"cuda:{rank}" if accelerator == "cuda" else "cpu"


def check_cuda_devices(key: str, devices: int, accelerator: str) -> None:
    """``SECTION.devices`` with ``SECTION.accelerator=cuda`` needs as many CUDA devices; ``key`` is the section."""
    if accelerator == "cuda" and torch.cuda.device_count() < devices:
        raise VqgenError(f"{key}.devices={devices} with {key}.accelerator=cuda needs {devices} CUDA devices; "
                         f"this machine has {torch.cuda.device_count()}")


def part_file(job: dict, rank: int) -> Path:
    return Path(job["folder"]) / f"part-{rank}.safetensors"


def _run_rank(rank: int, worker: Callable, job: dict) -> None:
    torch.set_num_threads(job["threads"])
    save_tensors(part_file(job, rank), worker(rank, job))


def run_processes(worker: Callable[[int, dict], dict[str, torch.Tensor]], job: dict, processes: int,
                  what: str) -> list[dict[str, torch.Tensor]]:
    """``worker(rank, job)`` in ``processes`` spawned processes; the tensors each returns, in rank order.

    ``worker`` must be a module-level function (spawn pickles it). Each process gets an equal share of this
    process's torch threads, so the CPU is shared rather than oversubscribed. A process that fails raises one
    VqgenError line here: its own message when it raised a VqgenError, else its last traceback line.
    """
    with tempfile.TemporaryDirectory(prefix=f"vqgen-{what}-") as folder:
        job = {**job, "folder": folder, "threads": max(1, torch.get_num_threads() // processes)}
        spawn(_run_rank, (worker, job), processes, what)
        return [load_tensors(part_file(job, rank)) for rank in range(processes)]


def spawn(fn: Callable, args: tuple, processes: int, what: str) -> None:
    """``fn(rank, *args)`` in ``processes`` spawned processes, waited for; a failure is one VqgenError line."""
    try:
        mp.spawn(_start, args=(fn, *args), nprocs=processes, join=True)
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as err:  # a raised error or a killed process
        raise VqgenError(process_failure(err, what)) from None


def _start(rank: int, fn: Callable, *args) -> None:
    flush_denormals()  # a spawned process starts in the CPU's default mode: flush as the parent does, before any op
    fn(rank, *args)


def process_failure(err: Exception, what: str) -> str:
    """One line for a failed process: a VqgenError's own message (the user's error), else the traceback's last line."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else type(err).__name__
    if "VqgenError: " in last:
        return last.split("VqgenError: ", 1)[1]
    return f"a {what} process failed: {last}"
