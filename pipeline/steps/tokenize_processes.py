"""``vqgen tokenize --devices N``: N processes (torch.multiprocessing spawn), each encoding every N-th shard of a
split on its own device and writing it; rank 0 writes ``meta.json`` last, once every shard is on disk.

The processes exchange only a temporary folder's name and the shards' small records, never tensors, so their
process group is gloo on CPUs and GPUs alike (nccl would need a GPU tensor for each message and adds nothing here).
All processes run on this machine (spawned here); several machines would also need a shared output folder.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
from pathlib import Path

import torch
import torch.distributed as dist

from ..core.code_shards import shards_of_rank
from ..core.code_writer import write_meta
from ..core.errors import VqgenError
from ..core.files import atomic_dir
from ..process_pool import spawn


def tokenize_in_processes(cfg, tokenizer_dir: Path, out_root: Path, splits, fingerprint: str) -> None:
    """Run the tokenize step in ``cfg.tokenize.devices`` processes and wait for them."""
    world = cfg.tokenize.devices
    threads = max(1, torch.get_num_threads() // world)  # the processes share this machine's cores
    spawn(_worker, (world, _free_port(), threads, cfg, tokenizer_dir, out_root, tuple(splits), fingerprint), world,
          "tokenize")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def device_for(accelerator: str, rank: int) -> str:
    if accelerator != "cpu" and torch.cuda.is_available():
        return f"cuda:{rank % torch.cuda.device_count()}"
    if accelerator == "gpu":
        raise VqgenError("tokenize.accelerator is gpu but torch sees no GPU; use cpu or auto")
    return "cpu"


def _worker(rank: int, world: int, port: int, threads: int, cfg, tokenizer_dir: Path, out_root: Path, splits,
            fingerprint: str) -> None:
    torch.set_num_threads(threads)
    # Ranks wait for the slowest at the gathers; a shard can take hours, longer than torch's 30-minute default.
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(days=7))
    try:
        for split in splits:
            tokenize_split_as_rank(cfg, tokenizer_dir, out_root / split, split, fingerprint, rank, world)
    finally:
        dist.destroy_process_group()


def tokenize_split_as_rank(cfg, tokenizer_dir: Path, out_dir: Path, split: str, fingerprint: str, rank: int,
                           world: int) -> None:
    """This process's share of one split; every process of the group calls it."""
    from stage1_tokenizer.tokenize import check_fits, split_files, split_meta, tokenize_files
    from stage1_tokenizer.tokenizer import Tokenizer

    from ..datasets import load_split

    device = device_for(cfg.tokenize.accelerator, rank)
    tokenizer = Tokenizer.load(tokenizer_dir, device)
    data = load_split(cfg.data, split)
    check_fits(tokenizer, tokenizer_dir, data)
    shard_items, files = split_files(tokenizer, data, cfg.tokenize.shard_items)
    # Rank 0 owns the temporary folder that replaces out_dir at the end; the others write their shards into it.
    with atomic_dir(out_dir) if rank == 0 else contextlib.nullcontext(None) as tmp:
        shared = [str(tmp) if rank == 0 else None]
        dist.broadcast_object_list(shared, src=0)
        records = tokenize_files(tokenizer, data, Path(shared[0]), files, shards_of_rank(len(files), rank, world),
                                 cfg.tokenize.batch_size, device, show_progress=rank == 0)  # one bar, not N
        gathered: list = [None] * world
        dist.all_gather_object(gathered, records)  # also the barrier: every shard is written and renamed
        if rank == 0:
            ordered = sorted((r for part in gathered for r in part), key=lambda r: r["file"])
            write_meta(tmp, tokenizer.levels(), data.num_classes > 0, shard_items, ordered,
                       split_meta(tokenizer_dir, data, {"fingerprint": fingerprint}))
    dist.barrier()  # no process goes on before the split is in place
