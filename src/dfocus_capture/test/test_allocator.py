"""The allocator setting: taken by glibc, and large blocks are then reused instead of being
page-faulted afresh (the effect the refocus and depth nodes rely on)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CHILD = """
import resource, sys
import numpy as np
from dfocus_capture.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def work():
    a = np.ones((3000, 4000), np.float32)  # 48 MB: above glibc's default mmap threshold
    return float(a[::100, ::100].sum())
work()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    work()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_image_buffers_are_reused_not_faulted_again() -> None:
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True,
                             timeout=120)
        return int(out.stdout.strip().splitlines()[-1])

    default, kept = faults("default"), faults("keep")
    # By default each 48 MB buffer is mapped afresh: thousands of faults per allocation.
    assert default > 1000, default
    assert kept < default / 10, (kept, default)


RELEASE_CHILD = """
import numpy as np
from dfocus_capture.allocator import keep_freed_memory, release_freed_memory
from dfocus_capture.bench_timing import status_mb
assert keep_freed_memory()
blocks = [np.ones((1000, 1000), np.float32) for _ in range(100)]  # 400 MB in heap blocks
del blocks
kept = status_mb("VmRSS")
assert release_freed_memory()
print(kept, status_mb("VmRSS"))
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_memory_is_handed_back_on_request() -> None:
    out = subprocess.run([sys.executable, "-c", RELEASE_CHILD], capture_output=True, text=True, check=True,
                         timeout=120)
    kept, released = (float(v) for v in out.stdout.split())
    assert kept - released > 300, (kept, released)  # most of the 400 MB freed went back
