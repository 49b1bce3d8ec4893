"""The refocus node's memory: the last N bursts, the depth maps matched to them by stamp, and their
prepared (registered + fused) products. Pure Python, thread-safe, testable without rclpy."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from dfocus_capture.burst import Burst
from dfocus_refocus.pipeline import PreparedSequence, StageProgress


class SequenceNotFoundError(LookupError):
    """The requested sequence is not (or no longer) in the cache."""


@dataclass
class CacheEntry:
    burst: Burst
    depth: np.ndarray | None = None
    confidence: np.ndarray | None = None
    prepared: Future[PreparedSequence] | None = None
    stage: str = "waiting for depth"
    progress: float = 0.0
    depth_arrived: threading.Event = field(default_factory=threading.Event)
    confidence_arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def sequence_id(self) -> int:
        return self.burst.sequence_id

    @property
    def stamp_ns(self) -> int:
        return self.burst.stamp_ns


# depth/confidence is published right after depth/image: wait this long for it when it is used.
CONFIDENCE_GRACE_S = 1.0

Preparer = Callable[[Burst, np.ndarray, StageProgress], PreparedSequence]


class SequenceCache:
    """Bursts by sequence id (oldest evicted first); depth maps join their burst by header stamp,
    whichever arrives first. Preparation runs on one background worker as soon as both are in."""

    def __init__(self, capacity: int, preparer: Preparer, min_confidence: float = 0.0,
                 max_bytes: int | None = None) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes  # bursts' frame bytes held at most (the newest burst is always kept)
        self.min_confidence = min_confidence
        self._prepare_fn = preparer
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # notified when a burst is added
        self._newest_id = 0  # highest sequence id received (the sequencer numbers bursts upwards)
        self._announced_id = 0  # highest sequence id announced (capture/announced), received or not
        self._entries: OrderedDict[int, CacheEntry] = OrderedDict()
        self._orphan_depth: OrderedDict[int, np.ndarray] = OrderedDict()
        self._orphan_conf: OrderedDict[int, np.ndarray] = OrderedDict()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refocus-prepare")

    def shutdown(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)

    def add_burst(self, burst: Burst) -> CacheEntry:
        with self._lock:
            entry = CacheEntry(burst)
            self._entries.pop(burst.sequence_id, None)
            self._entries[burst.sequence_id] = entry
            while len(self._entries) > self.capacity or (
                    len(self._entries) > 1 and self.max_bytes is not None and self._held_bytes() > self.max_bytes):
                old = self._entries.popitem(last=False)[1]
                if old.prepared is not None:
                    old.prepared.cancel()
            conf = self._orphan_conf.pop(burst.stamp_ns, None)
            if conf is not None:
                entry.confidence = conf
                entry.confidence_arrived.set()
            depth = self._orphan_depth.pop(burst.stamp_ns, None)
            if depth is not None:
                self._attach_depth(entry, depth)
            self._newest_id = max(self._newest_id, burst.sequence_id)
            self._arrived.notify_all()
        return entry

    def announce(self, sequence_id: int) -> None:
        """A burst was captured and its frames are on their way: from now on it is 'the newest' (0)."""
        with self._lock:
            self._announced_id = max(self._announced_id, sequence_id)
            self._arrived.notify_all()

    def _held_bytes(self) -> int:
        """Frame bytes of the bursts held (their prepared data scales with them)."""
        return sum(f.image.nbytes for e in self._entries.values() for f in e.burst.frames)

    def add_depth(self, stamp_ns: int, depth: np.ndarray) -> int | None:
        """Attach a depth map to the burst with that stamp (or keep it until the burst arrives).
        Returns the sequence id it was attached to."""
        with self._lock:
            entry = self._by_stamp(stamp_ns)
            if entry is None:
                self._keep(self._orphan_depth, stamp_ns, depth)
                return None
            self._attach_depth(entry, depth)
            return entry.sequence_id

    def add_confidence(self, stamp_ns: int, confidence: np.ndarray) -> None:
        """Confidence is applied when the depth is prepared (below `min_confidence` counts as a hole)."""
        with self._lock:
            entry = self._by_stamp(stamp_ns)
            if entry is None:
                self._keep(self._orphan_conf, stamp_ns, confidence)
                return
            entry.confidence = confidence
            entry.confidence_arrived.set()

    def _keep(self, orphans: OrderedDict[int, np.ndarray], stamp_ns: int, data: np.ndarray) -> None:
        """Hold a map whose burst has not arrived yet (bounded: bursts that never come age out)."""
        orphans[stamp_ns] = data
        while len(orphans) > self.capacity:
            orphans.popitem(last=False)

    def _by_stamp(self, stamp_ns: int) -> CacheEntry | None:
        for e in reversed(self._entries.values()):
            if e.stamp_ns == stamp_ns:
                return e
        return None

    def _attach_depth(self, entry: CacheEntry, depth: np.ndarray) -> None:
        entry.depth = depth
        entry.stage, entry.progress = "queued", 0.0
        entry.prepared = self._worker.submit(self._prepare, entry)
        entry.depth_arrived.set()

    def _prepare(self, entry: CacheEntry) -> PreparedSequence:
        def progress(stage: str, fraction: float) -> None:
            entry.stage, entry.progress = stage, fraction

        assert entry.depth is not None
        depth = np.array(entry.depth, dtype=np.float32)
        if self.min_confidence > 0:
            entry.confidence_arrived.wait(CONFIDENCE_GRACE_S)
        conf = entry.confidence
        if conf is not None and self.min_confidence > 0 and conf.shape == depth.shape:
            depth[conf < self.min_confidence] = np.nan
        prepared = self._prepare_fn(entry.burst, depth, progress)
        entry.stage, entry.progress = "ready", 1.0
        return prepared

    def get(self, sequence_id: int, timeout_s: float = 0.0, check: Callable[[], None] = lambda: None,
            poll_s: float = 0.1) -> CacheEntry:
        """The entry for `sequence_id`; 0 = the newest: the latest announced one when an
        announcement is ahead of the bursts received, else the newest received. A burst not received
        yet is waited for up to `timeout_s` if it can still come: any burst for 0, and for a given
        id one newer than every burst seen (a goal can overtake its burst: they travel on different
        channels). An older id that is not held was evicted: SequenceNotFoundError at once. `check`
        runs every `poll_s` while waiting and may raise (a canceled goal)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._arrived:
                wanted = sequence_id
                if wanted == 0 and self._announced_id > self._newest_id:
                    wanted = self._announced_id
                entry = (next(reversed(self._entries.values()), None) if wanted == 0
                         else self._entries.get(wanted))
                if entry is not None:
                    return entry
                held = list(self._entries)
                can_come = wanted == 0 or wanted > self._newest_id
                left = deadline - time.monotonic()
                if not can_come or left <= 0:
                    break
                self._arrived.wait(min(left, poll_s))
            check()
        if wanted == 0:
            raise SequenceNotFoundError(f"no sequence has been received within {timeout_s:g} s")
        latest = " (the latest announced)" if sequence_id == 0 else ""
        waited = f" and did not arrive within {timeout_s:g} s" if can_come else " (evicted, or never received)"
        raise SequenceNotFoundError(f"sequence {wanted}{latest} is not in the cache (holding {held}){waited}")

    def latest_ready(self) -> PreparedSequence | None:
        """The newest sequence whose preparation finished successfully."""
        with self._lock:
            entries = list(reversed(self._entries.values()))
        for e in entries:
            f = e.prepared
            if f is not None and f.done() and not f.cancelled() and f.exception() is None:
                return f.result()
        return None

    def listing(self) -> list[tuple[int, int, bool]]:
        """(sequence id, stamp ns, has depth), oldest first."""
        with self._lock:
            return [(e.sequence_id, e.stamp_ns, e.depth is not None) for e in self._entries.values()]
