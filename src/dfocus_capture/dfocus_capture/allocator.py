"""Keep freed image-sized memory in the process instead of handing it back to the kernel.

glibc serves allocations above its mmap threshold (at most 32 MB by default) with fresh mappings
and unmaps them on free, so every 12 MP float image a render makes is page-faulted and zeroed by
the kernel again: measured here, a 12 MP refocus took 1.1 s of CPU in numpy and OpenCV plus
1.8-3.9 s of kernel time for those faults (alternate renders 1.5 and 3.5 s). With the thresholds
raised, freed blocks stay in the heap for the next render (1.1 s each after the first) and the
process keeps its peak resident size, which the benchmarks bound, rather than returning to it.
Other C libraries (musl) and other systems: a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30  # blocks below this come from the heap (a 12 MP RGBA float is 192 MB)
TRIM_THRESHOLD_BYTES = 1 << 30  # free memory kept at the heap's top before it is trimmed


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; True if this C library took them."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
