"""Nearest-code search: squared distances and the index of the nearest codebook row, in fp32 and in bounded memory.

Shared by every quantizer that looks codes up (vq, ema, rvq, pq through :mod:`.codebook`; soft and sq directly).
"""

from __future__ import annotations

import torch


def squared_distances(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``||x - e||^2`` for every pair, in fp32 whatever the autocast dtype (low precision picks wrong codes)."""
    with torch.autocast(device_type=x.device.type, enabled=False):  # else the matmul below would run in bf16
        x = x.float()
        codebook = codebook.float()
        return torch.addmm(
            x.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1)[None, :], x, codebook.t(), alpha=-2.0
        ).clamp_min(0.0)


# CPU blocks of scores: 2^22 fp32 (16 MiB), written into one reused buffer, so the argmax reads recently written
# scores and no block pays for a fresh, page-faulting allocation. Measured on a shared 2-core CPU (`vqgen bench`):
# smaller blocks win slightly when the machine is idle but lose badly under load (every block is one more OpenMP
# parallel region waiting for a descheduled thread); one whole-matrix block was ~2x slower when idle.
# On a GPU the block is as large as ``max_elements`` allows (fewer launches).
CPU_SCORE_BLOCK = 1 << 22


def nearest_code(x: torch.Tensor, codebook: torch.Tensor, max_elements: int = 1 << 24) -> torch.Tensor:
    """Index of the nearest codebook row for each row of ``x`` (``[N, D]`` against ``[K, D]``).

    At most ``max_elements`` scores (64 MiB of fp32 by default) exist at once, so peak memory stays bounded
    whatever ``N x K`` is; see :func:`grouped_nearest_code`, which this is with one group.
    """
    return grouped_nearest_code(x[None], codebook[None], max_elements)[0]


def grouped_nearest_code(x: torch.Tensor, codebooks: torch.Tensor, max_elements: int = 1 << 24) -> torch.Tensor:
    """Nearest code per group: ``x [G, N, d]`` against ``codebooks [G, K, d]`` gives indices ``[G, N]``.

    ``||x - e||^2 = ||x||^2 - 2 (x.e - ||e||^2 / 2)`` and ``||x||^2`` is the same for every code, so the nearest
    code maximises ``x.e - ||e||^2 / 2``. Appending a 1 to every ``x`` and ``-||e||^2 / 2`` to every code puts
    that bias inside one batched matmul, instead of a separate pass over the ``N x K`` scores (``baddbmm``
    with a broadcast bias first copies the bias into the whole output). Rows go in blocks of at most
    ``max_elements`` scores, written into one reused buffer. fp32 whatever the autocast dtype.
    """
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        codebooks = codebooks.float()
        groups, n = x.shape[0], x.shape[1]
        size = codebooks.shape[1]
        x_aug = torch.cat([x, x.new_ones(groups, n, 1)], dim=-1)  # [G, N, d + 1]
        bias = -0.5 * codebooks.pow(2).sum(-1, keepdim=True)
        codes_aug = torch.cat([codebooks, bias], dim=-1).transpose(1, 2)  # [G, d + 1, K]
        block = max_elements if x.device.type == "cuda" else min(max_elements, CPU_SCORE_BLOCK)
        rows = min(n, max(1, block // max(1, groups * size)))
        if rows == n:
            return torch.bmm(x_aug, codes_aug).argmax(-1)
        indices = torch.empty(groups, n, dtype=torch.long, device=x.device)
        scores = x.new_empty(groups, rows, size)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            out = scores if stop - start == rows else scores[:, : stop - start]
            torch.bmm(x_aug[:, start:stop], codes_aug, out=out)
            torch.argmax(out, dim=-1, out=indices[:, start:stop])
        return indices
