"""Section e: peak extra memory of the nearest-code search, N=16384 vectors of D=64 against K codes.

``tracemalloc`` does not see torch's CPU allocations, so each case runs in a fresh process that makes its
inputs, resets the kernel's resident-set high-water mark (``echo 5 > /proc/self/clear_refs``) and reads
``VmHWM`` from ``/proc/self/status`` after the search: the difference is what the search added at its peak. The
row compares it with the full ``N x K`` fp32 distance matrix (4 GiB at K=65536) and with the bound the chunk
arithmetic promises (at most ``max_elements`` scores at once, plus the fp32 copies of the inputs and the indices).
On CUDA the same is read from ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import torch

from .results import Row, skipped
from .timing import Settings

SECTION = "e. nearest-code memory"
UNIT = "MiB peak extra"
MIB = 1 << 20
STATUS = Path("/proc/self/status")
REPO = Path(__file__).resolve().parents[1]  # where `python -m benchmarks.memory_bench` finds the package
DEFAULT_MAX_ELEMENTS = 1 << 24  # the search functions' default chunk limit (64 MiB of fp32 scores)


def _status_kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def probe(function: str, n: int, k: int, dim: int, max_elements: int, device: str) -> int:
    """In a fresh process: the peak bytes one search adds on top of its inputs."""
    from stage1_tokenizer.quantizers import distances

    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=generator).to(device)
    codebook = torch.randn(k, dim, generator=generator).to(device)
    search = functools.partial(getattr(distances, function), max_elements=max_elements)

    def args(rows: int):
        return (x[:rows], codebook) if function == "nearest_code" else (x[None, :rows], codebook[None])

    with torch.no_grad():
        # A small search first pages in the kernels' code and the thread pool, which VmHWM would count too.
        search(*args(8))
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            search(*args(n))
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - before
        try:
            Path("/proc/self/clear_refs").write_text("5")  # high-water mark := current resident set
            before = _status_kib("VmRSS")
        except OSError:  # no permission to reset it: the mark so far is the best baseline (it may hide a peak)
            before = _status_kib("VmHWM")
        search(*args(n))
        return (_status_kib("VmHWM") - before) * 1024


def _in_child(function: str, n: int, k: int, dim: int, max_elements: int, device: str) -> tuple[str, object]:
    """``("ok", peak bytes)`` or ``("error", why)``. A fresh interpreter per case, never a fork: earlier sections
    have started OpenMP (and maybe CUDA) threads, and a forked child of such a process can deadlock on their locks."""
    command = [sys.executable, "-m", __name__, function, str(n), str(k), str(dim), str(max_elements), device]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:  # killed (out of memory?) or failed: say so in the row
        tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return "error", f"measuring process failed: {tail}"
    return "ok", int(done.stdout.strip().splitlines()[-1])


def chunk_bound_bytes(n: int, k: int, dim: int, max_elements: int = DEFAULT_MAX_ELEMENTS) -> int:
    """What the chunking promises: one block of scores, the fp32 inputs' copies and the int64 indices."""
    rows = max(1, max_elements // k)
    scores = min(n, rows) * k * 4
    return scores + (n + k) * dim * 4 + n * 8 + k * 4


def run(settings: Settings) -> list[Row]:
    # Quick mode lowers the chunk limit instead of raising K, so the chunked path is still what gets exercised.
    n, dim, max_elements = (512, 16, 1 << 16) if settings.quick else (16384, 64, DEFAULT_MAX_ELEMENTS)
    sizes = [1024] if settings.quick else [512, 8192, 65536]
    functions = ["grouped_nearest_code"] if settings.quick else ["grouped_nearest_code", "nearest_code"]
    if not settings.cuda and not STATUS.exists():
        return [skipped(SECTION, f"K up to {sizes[-1]}", UNIT, "needs Linux /proc/self/status")]
    limit_mib = max_elements * 4 / MIB
    rows = []
    for function in functions:
        for k in sizes:
            status, value = _in_child(function, n, k, dim, max_elements, settings.device)
            full = n * k * 4
            bound = chunk_bound_bytes(n, k, dim, max_elements)
            case = f"{function}, K={k}"
            if status != "ok":
                rows.append(skipped(SECTION, case, UNIT, value, "full N x K fp32 matrix"))
                continue
            if full <= max_elements * 4:
                verdict = f"all N x K scores fit the {limit_mib:g} MiB chunk limit, so they are computed in one block"
            elif value < full:
                verdict = "never holds all N x K distances"
            else:
                verdict = "HOLDS ALL N x K DISTANCES AT ONCE"
            note = f"N={n}, D={dim}; chunk bound {bound / MIB:.2f} MiB; {verdict}"
            # ratio: how many times less memory than materialising every distance at once
            rows.append(Row(SECTION, case, UNIT, value / MIB, full / MIB, "full N x K fp32 matrix",
                            full / max(value, 1), None, note, {"peak_bytes": value, "chunk_bound_bytes": bound}))
    return rows


if __name__ == "__main__":  # the measuring process: prints the peak extra bytes of one search
    name, *numbers, device_name = sys.argv[1:]
    print(probe(name, *(int(v) for v in numbers), device_name))
