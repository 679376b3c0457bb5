"""Read a safetensors file as memory-mapped tensors: nothing is copied into memory until a row is indexed.

``safetensors``' own loaders copy each tensor into process memory, so a code dataset larger than RAM could not be
opened; here the file's header is parsed and each tensor is a NumPy memmap view of its bytes.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch

from .errors import VqgenError

# safetensors dtype names -> NumPy types (the integer and float types vqgen writes).
DTYPES = {"U8": np.uint8, "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64,
          "F16": np.float16, "F32": np.float32, "F64": np.float64, "BOOL": np.bool_}
MAX_HEADER = 100 << 20  # the format's own limit; a larger length means a damaged or foreign file


def _unreadable(path: Path, why: str) -> VqgenError:
    return VqgenError(f"{path} is not a readable safetensors file ({why}); rerun the step that writes it")


def read_header(path: str | Path) -> tuple[dict, int]:
    """The tensors' entries (dtype, shape, data_offsets) and where their data starts, checked against the size."""
    path = Path(path)
    if not path.exists():
        raise VqgenError(f"{path} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise _unreadable(path, "shorter than its header")
        length = struct.unpack("<Q", head)[0]
        if length > MAX_HEADER or 8 + length > size:
            raise _unreadable(path, "truncated or not safetensors: the header length runs past the end")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _unreadable(path, "its header is not JSON") from None
    header.pop("__metadata__", None)
    start = 8 + length
    for name, entry in header.items():
        if entry.get("dtype") not in DTYPES:
            raise _unreadable(path, f"tensor {name!r} has dtype {entry.get('dtype')!r}")
        begin, end = entry["data_offsets"]
        expected = math.prod(entry["shape"]) * np.dtype(DTYPES[entry["dtype"]]).itemsize
        if end - begin != expected or start + end > size:
            raise _unreadable(path, f"tensor {name!r} is truncated")
    return header, start


def map_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of ``path`` as a read-only-in-effect view of the file (copy-on-write: a write never reaches
    the file). Indexing a view reads only the pages it touches."""
    header, start = read_header(path)
    tensors = {}
    for name, entry in header.items():
        dtype, shape = DTYPES[entry["dtype"]], tuple(entry["shape"])
        if math.prod(shape) == 0:  # mmap cannot map zero bytes
            tensors[name] = torch.from_numpy(np.zeros(shape, dtype=dtype))
            continue
        array = np.memmap(path, dtype=dtype, mode="c", offset=start + entry["data_offsets"][0], shape=shape)
        tensors[name] = torch.from_numpy(array)
    return tensors
