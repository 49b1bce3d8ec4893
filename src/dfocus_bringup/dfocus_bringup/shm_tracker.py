"""Which /dev/shm files (Fast DDS segments, port locks, semaphores) the processes we started used,
so that they can be removed after those processes end, crashes included.

Fast DDS names its segments by a random id, not by pid (fastdds_<hex>, fastdds_<hex>_el,
fastdds_port7411, sem.fastdds_port7411_mutex), so ownership is observed instead: a file counts as
ours when one of our processes had it mapped or open and it did not exist before we started. It is
removed only once no live process on the machine maps or holds it (port segments are shared).
A process killed between two observations can leave a segment nobody saw it map; a segment that
appeared while we ran and whose `_el` lock no process holds any more (Fast DDS keeps it locked
for the segment owner's lifetime) is an orphan of such a process and is removed too.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

SHM = Path("/dev/shm")
PREFIXES = ("fastdds_", "fastrtps_", "sem.fastdds_", "sem.fastrtps_")


def _is_dds(name: str) -> bool:
    return name.startswith(PREFIXES)


def shm_files_of(pid: int, shm: Path = SHM, deleted: bool = True) -> set[str]:
    """DDS files under `shm` that process `pid` maps or holds open (empty if it is gone).
    deleted=False leaves out mappings of unlinked files: a port number is reused, and a stale
    mapping of the old file does not make the new file of that name in use."""
    names: set[str] = set()
    prefix = str(shm) + "/"
    try:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
            if path.startswith(prefix) and (deleted or not path.endswith(" (deleted)")):
                names.add(path[len(prefix):].removesuffix(" (deleted)"))
    except OSError:
        pass
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = str(fd.readlink())
            except OSError:
                continue
            if target.startswith(prefix) and (deleted or not target.endswith(" (deleted)")):
                names.add(target[len(prefix):].removesuffix(" (deleted)"))
    except OSError:
        pass
    return {n for n in names if _is_dds(n)}


def _all_pids() -> Iterable[int]:
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            yield int(p.name)


class ShmTracker:
    def __init__(self, shm: Path = SHM) -> None:
        self.shm = shm
        self.before = self.listing()
        self.used: set[str] = set()

    def listing(self) -> set[str]:
        try:
            return {p.name for p in self.shm.iterdir() if _is_dds(p.name)}
        except OSError:
            return set()

    def observe(self, pids: Iterable[int]) -> None:
        for pid in pids:
            self.used |= shm_files_of(pid, self.shm)

    def orphans(self) -> set[str]:
        """Segments (and their lock files) created since we started whose owner has died."""
        found: set[str] = set()
        for name in self.listing() - self.before:
            lock = self.shm / f"{name}_el"
            if not name.startswith("fastdds_") or name.endswith("_el") or not lock.exists():
                continue
            try:
                fd = os.open(lock, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                found |= {name, lock.name}
            except OSError:  # still locked: its owner is alive
                pass
            finally:
                os.close(fd)
        return found

    def cleanup(self, exiting: Iterable[int] = ()) -> list[str]:
        """Remove the files our processes created and nobody uses any more; returns their names.
        `exiting`: processes whose mappings do not count (this one, about to exit: Fast DDS keeps
        port segments mapped in static caches after its participants are gone)."""
        candidates = ((self.used - self.before) | self.orphans()) & self.listing()
        if not candidates:
            return []
        skip = set(exiting)
        in_use: set[str] = set()
        for pid in _all_pids():
            if pid not in skip:
                in_use |= shm_files_of(pid, self.shm, deleted=False)
        removed = []
        for name in sorted(candidates - in_use):
            try:
                (self.shm / name).unlink()
                removed.append(name)
            except OSError:
                pass
        return removed
