"""Timing shared by the packages' benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def time_runs(fn: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (this process, all threads) of `repeats` runs after one warm-up run.
    On a shared machine the CPU time shows what the code costs when other processes inflate the
    wall time; callers pick the statistic (best run, median)."""
    fn()  # warm caches (textures, kernels, maps)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def status_mb(field: str, pid: int | str = "self") -> float | None:
    """A memory field of /proc/<pid>/status (VmRSS, VmHWM, ...) in MB; None without it (the
    process has gone, or this is not Linux)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB) since it started its program. Not getrusage's
    ru_maxrss: Linux keeps that across fork and exec, so a child started from a large benchmark
    process reports the parent's peak as its own. VmHWM belongs to the address space exec made."""
    peak = status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource  # no /proc (not Linux): the best this platform offers

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
