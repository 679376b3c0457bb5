"""Peak memory of reading a large code dataset: the memory-mapped reader against loading it whole (what the format-1
reader did: ``load_file`` then ``.long()``). Synthetic codes, 8x8 int16 grids with labels; each case runs in a fresh
process and reports its peak RSS (VmHWM) above the process's RSS after imports, and how much of the process's own
(anonymous) memory it holds at the end: the rest is file pages mapped from the page cache.

    uv run python experiments/code_dataset_memory.py --items 1000000 --shard-items 131072
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = ("load_whole", "open_shards", "random_batches", "full_pass", "open_one_file")


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def write(folder: Path, items: int, shard_items: int) -> None:
    import torch

    from pipeline.core.code_dataset import write_code_dataset

    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 1024, (items, 8, 8, 1), dtype=torch.int16, generator=generator)
    labels = torch.randint(0, 1000, (items,), generator=generator)
    levels = {"codes": {"grid": [8, 8], "codebook_sizes": [1024]}}
    meta = {"tokenizer": {"dir": "synthetic", "weights_sha256": "0" * 64},
            "dataset": {"name": "synthetic", "split": "train", "classes": [str(i) for i in range(1000)]}}
    write_code_dataset(folder / "shards", {"codes": codes}, levels, labels, meta, shard_items=shard_items)
    write_code_dataset(folder / "one", {"codes": codes}, levels, labels, meta, shard_items=items)


def run_case(case: str, folder: Path) -> dict:
    import time

    import torch

    from pipeline.core.code_dataset import CodeDataset

    base, base_anon = status_kib("VmRSS"), status_kib("RssAnon")
    start = time.perf_counter()
    if case == "load_whole":
        from safetensors.torch import load_file

        tensors = load_file(str(folder / "one" / "codes.safetensors"))
        held = {name: t.long() for name, t in tensors.items()}
        del tensors
        assert held["codes"].shape[0] > 0
    else:
        data = CodeDataset(folder / ("one" if case == "open_one_file" else "shards"))
        if case == "random_batches":  # 200 batches of 256 as the priors' training loader draws them
            from torch.utils.data import DataLoader, RandomSampler

            loader = DataLoader(data, batch_size=256, sampler=RandomSampler(data, generator=torch.manual_seed(0)))
            for _, _ in zip(range(200), loader):
                pass
        elif case == "full_pass":
            for begin in range(0, len(data), 4096):
                data.rows(begin, begin + 4096)
    seconds = time.perf_counter() - start
    return {"case": case, "peak_above_start_mib": (status_kib("VmHWM") - base) / 1024,
            "anon_above_start_mib": (status_kib("RssAnon") - base_anon) / 1024,
            "rss_file_mib": status_kib("RssFile") / 1024,
            "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--shard-items", type=int, default=131_072)
    parser.add_argument("--case", choices=CASES)
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.folder)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), args.items, args.shard_items)
        size = sum(p.stat().st_size for p in (Path(tmp) / "shards").iterdir()) / 2**20
        print(f"{args.items} items of 8x8 int16 codes + labels: {size:.0f} MiB in "
              f"{len(list((Path(tmp) / 'shards').iterdir())) - 1} shards")
        for case in CASES:
            out = subprocess.run([sys.executable, __file__, "--case", case, "--folder", tmp], check=True,
                                 capture_output=True, text=True).stdout
            print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
