"""Process-level memory tuning for per-frame work.

Each analysed frame allocates a few arrays of 1-2 MB (Laplacian in float64, optical flow).
glibc serves such blocks with a fresh ``mmap`` each time until its dynamic threshold has
grown, so a new worker process pays page faults and zeroing on every frame: measured on a
2-core box, a 720p scorer ran at half speed in a fresh process. Raising the mmap threshold
keeps those blocks on the heap, where they are reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def keep_large_allocations_on_heap(mmap_threshold: int = 64 << 20,
                                   trim_threshold: int = 128 << 20) -> bool:
    """Tell glibc malloc to serve blocks below ``mmap_threshold`` from the heap.

    Returns False (and changes nothing) where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
