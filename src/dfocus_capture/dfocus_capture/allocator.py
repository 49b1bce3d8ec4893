"""Keep freed image-sized memory in the process instead of handing it back to the kernel.

glibc serves allocations above its mmap threshold (at most 32 MB by default) with fresh mappings
and unmaps them on free, so every 12 MP float image a render makes is page-faulted and zeroed by
the kernel again: measured here, a 12 MP refocus took 1.1 s of CPU in numpy and OpenCV plus
1.8-3.9 s of kernel time for those faults (alternate renders 1.5 and 3.5 s). With the thresholds
raised, freed blocks stay in the heap for the next render (1.1 s each after the first) and the
process keeps its peak resident size, which the benchmarks bound, rather than returning to it.
After a step that is done once per burst and holds far more than the renders that follow (the
refocus node's preparation: half a gigabyte of per-frame stacks at 1280x960), `release_freed_memory`
hands the free memory back, so the process's size between bursts is what it holds, not its peak.
Other C libraries (musl) and other systems: a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30  # blocks below this come from the heap (a 12 MP RGBA float is 192 MB)
TRIM_THRESHOLD_BYTES = 1 << 30  # free memory kept at the heap's top before it is trimmed


def _glibc(symbol: str) -> Any | None:
    """A glibc function, or None on other C libraries."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), symbol)
    except (OSError, AttributeError):  # not glibc
        return None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; True if this C library took them."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def release_freed_memory() -> bool:
    """Return the free pages of every heap to the kernel (glibc's malloc_trim); True if any were."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim.argtypes, trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return bool(trim(0))
