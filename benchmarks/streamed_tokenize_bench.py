"""Section g: peak memory and speed of tokenizing a streamed image folder, 2,000 against 20,000 images at 128x128.

Each case runs in a fresh interpreter that loads the folder as a streamed split (``data.stream: true``) and encodes
every image with a small untrained tokenizer through the tokenize step's own ``encode_images``; its peak resident
set (``VmHWM``, DataLoader workers counted by ``RUSAGE_CHILDREN``) is reported. A split held in memory would grow
by 48 KiB per image; streamed, the peak for 20,000 should stay within 10% of the peak for 2,000.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .results import Row, skipped
from .timing import Settings

SECTION = "g. streamed tokenize memory"
UNIT = "MiB peak RSS"
MIB = 1 << 20
REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 128
WORKERS = 2


def make_folder(root: Path, count: int, size: int) -> None:
    """``count`` synthetic PNGs in two class folders: smooth gradients plus noise, fast to write and to decode."""
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size, dtype=np.float32)
    base = (ramp[None, :, None] + ramp[:, None, None] * np.array([0.2, 0.5, 0.8], np.float32)) / 2
    for label in ("a", "b"):
        (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        noise = rng.integers(0, 56, (size, size, 3), dtype=np.uint8)
        array = (base + noise).astype(np.uint8)
        Image.fromarray(array).save(root / ("a" if i % 2 else "b") / f"{i:06d}.png", compress_level=1)


def probe(root: str, image_size: int, workers: int) -> tuple[int, float, int]:
    """In a fresh process: (peak RSS bytes of this process and its workers, images/s, images encoded)."""
    import torch

    from pipeline.datasets import DataConfig, load_split
    from stage1_tokenizer import Tokenizer, TokenizerConfig
    from stage1_tokenizer.tokenize import encode_images

    torch.set_num_threads(1)
    torch.manual_seed(0)
    split = load_split(DataConfig(name="imagefolder", root=root, image_size=image_size, stream=True, workers=workers),
                       "train")
    network = Tokenizer(TokenizerConfig(hidden_channels=16, res_channels=8, n_res_blocks=1, embed_dim=8,
                                        downsample=8, image_size=image_size, in_channels=3,
                                        quantizer={"name": "vq", "codebook_size": 64})).network.eval()
    start = time.perf_counter()
    codes, labels = encode_images(network, split, batch_size=64, with_labels=True)
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the largest worker
    return own + workers * children, labels.shape[0] / seconds, labels.shape[0], own


def _in_child(root: Path, workers: int) -> tuple[str, object]:
    command = [sys.executable, "-m", __name__, str(root), str(IMAGE_SIZE), str(workers)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return "error", f"measuring process failed: {tail}"
    peak, rate, count, own = done.stdout.strip().splitlines()[-1].split()
    return "ok", (int(peak), float(rate), int(count), int(own))


def run(settings: Settings) -> list[Row]:
    counts = [40, 400] if settings.quick else [2_000, 20_000]
    rows, peaks = [], {}
    with tempfile.TemporaryDirectory(prefix="vqgen-stream-bench-") as tmp:
        for count in counts:
            root = Path(tmp) / f"n{count}"
            start = time.perf_counter()
            make_folder(root, count, IMAGE_SIZE)
            made = time.perf_counter() - start
            status, value = _in_child(root, WORKERS)
            case = f"{count:,} PNGs {IMAGE_SIZE}x{IMAGE_SIZE}, {WORKERS} workers"
            if status != "ok":
                rows.append(skipped(SECTION, case, UNIT, value))
                continue
            peak, rate, encoded, own = value
            peaks[count] = peak
            in_memory = count * 3 * IMAGE_SIZE * IMAGE_SIZE
            baseline = peaks[counts[0]]
            note = (f"{rate:,.0f} images/s, {encoded:,} encoded; main process {own / MIB:,.0f} MiB + {WORKERS} x "
                    f"the largest worker (shared pages counted in each); "
                    f"uint8 split in memory would be {in_memory / MIB:,.0f} MiB; folder written in {made:.0f} s")
            # ratio = smallest peak / this peak; >= 1/1.1 means this peak is within 10% of the smallest one's.
            target = 1 / 1.10 if count != counts[0] else None
            rows.append(Row(SECTION, case, UNIT, peak / MIB, baseline / MIB, f"{counts[0]:,} images, streamed",
                            baseline / peak, target, note, {"peak_bytes": peak, "main_process_peak_bytes": own,
                                                            "images_per_s": rate, "count": count}))
    return rows


if __name__ == "__main__":  # the measuring process: prints "peak_bytes images_per_s count own_peak_bytes"
    folder, size, worker_count = sys.argv[1:]
    print(*probe(folder, int(size), int(worker_count)))
