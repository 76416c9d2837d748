"""Tensors memory-mapped from cache files, and a way to give their pages back while streaming.

Why: feature maps can be larger than RAM. A mapped tensor costs only the pages touched, but a
process keeps every page it touched mapped (and counted in its RSS) until told otherwise, so a
probe streaming through the maps calls :func:`release` after each batch; the pages stay in the
OS page cache and are mapped again, cheaply, on the next touch.

The mapping is copy-on-write (``ACCESS_COPY``): features are read-only by contract (they are
shared between probes already), and a stray in-place write changes this process's copy, never
the file. :func:`release` drops such private writes as well, which is one more reason not to.
"""

from __future__ import annotations

import mmap
import os
import weakref
from pathlib import Path

import numpy as np
import torch

#: storage ``data_ptr`` of a mapped tensor -> its mapping
_MAPS: dict[int, mmap.mmap] = {}


def map_tensor(path: Path, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """``shape`` elements of ``dtype`` at byte ``offset`` of ``path``, as a CPU tensor on the mapping."""
    fd = os.open(path, os.O_RDONLY)
    try:
        mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)
    finally:
        os.close(fd)
    array = np.frombuffer(mapping, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
    tensor = torch.from_numpy(array)
    pointer = tensor.untyped_storage().data_ptr()
    _MAPS[pointer] = mapping
    weakref.finalize(array, _MAPS.pop, pointer, None)  # the array lives as long as any view of it
    return tensor


def is_mapped(tensor: torch.Tensor) -> bool:
    return tensor.untyped_storage().data_ptr() in _MAPS


def release(tensor: torch.Tensor) -> None:
    """Unmap the pages of ``tensor``'s file that this process touched (no-op for other tensors)."""
    mapping = _MAPS.get(tensor.untyped_storage().data_ptr())
    if mapping is not None and hasattr(mapping, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)
