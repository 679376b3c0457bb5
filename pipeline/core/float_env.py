"""Denormal floats flushed to zero on the CPU, for the whole process.

Softmax-weighted codes (gumbel, soft, sq), usage entropies and sampled distributions hold probabilities under
1e-38, and on x86 every product with such a denormal takes a microcode assist: [4096, 512] @ [512, 64] with denormal
entries costs 463 ms against 12 ms flushed (one thread). Flushing them changes nothing a model can measure;
TensorFlow does the same by default. A thread inherits the setting only when it is created after it (POSIX), so this
runs before torch's first parallel op: as the command line loads a config, and as each spawned worker starts.
"""

from __future__ import annotations

import torch


def flush_denormals() -> bool:
    """Denormals read and written as zero on this thread and on the threads it creates from now on; False where
    the CPU has no such mode (not x86 with SSE3)."""
    return torch.set_flush_denormal(True)
