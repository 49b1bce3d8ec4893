"""Approximate-time synchronization of N stamped streams, and a stamp-indexed IMU buffer.

`ApproximateTimeSynchronizer` follows ROS 2 message_filters' Python
`ApproximateTimeSynchronizer(fs, queue_size, slop, allow_headerless)` (message_filters is not
installable here): every input keeps a queue of messages keyed by header stamp (a repeated stamp
replaces the queued message), at most `queue_size` per input (the oldest stamp is dropped past it,
which may be the arriving message itself: then it completes no set);
when an arriving message completes a set of one message per input whose stamps span less than
`slop`, the set is emitted in input order and its messages leave the queues. Among several complete
sets the one with the smallest span wins (ties: the earliest), so a set never mixes two triggers
when a tighter one exists. Headerless messages (stamp None) are refused unless `allow_headerless`,
in which case they are stamped with their arrival time, as message_filters does.

The core is pure Python: nodes feed it `(input index, stamp_ns, msg)` from their subscriptions.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SyncError(ValueError):
    """Invalid synchronizer configuration or input index."""


@dataclass
class SyncStats:
    received: int = 0
    emitted_sets: int = 0
    dropped_overflow: int = 0  # pushed out of a full queue before being part of a set
    dropped_headerless: int = 0  # refused: no stamp and allow_headerless is False


class ApproximateTimeSynchronizer:
    def __init__(
        self,
        num_inputs: int,
        queue_size: int,
        slop_s: float,
        allow_headerless: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if num_inputs < 1:
            raise SyncError(f"need at least one input, got {num_inputs}")
        if queue_size < 1:
            raise SyncError(f"queue_size must be >= 1, got {queue_size}")
        if not slop_s > 0:
            raise SyncError(f"slop must be > 0 s, got {slop_s}")
        self.num_inputs = num_inputs
        self.queue_size = queue_size
        self.slop_ns = int(round(slop_s * 1e9))
        self.allow_headerless = allow_headerless
        self._clock_ns = clock_ns
        # Per input: stamps kept sorted, and stamp -> message.
        self._stamps: list[list[int]] = [[] for _ in range(num_inputs)]
        self._msgs: list[dict[int, Any]] = [{} for _ in range(num_inputs)]
        self._callbacks: list[Callable[..., None]] = []
        self._lock = threading.Lock()
        self.stats = SyncStats()

    def register_callback(self, callback: Callable[..., None]) -> None:
        """callback(*msgs) with one message per input, in input order."""
        self._callbacks.append(callback)

    def add(self, index: int, stamp_ns: int | None, msg: Any) -> tuple[Any, ...] | None:
        """Queue `msg` of input `index`; returns (and signals) the set it completed, if any."""
        if not 0 <= index < self.num_inputs:
            raise SyncError(f"input index {index} out of range 0..{self.num_inputs - 1}")
        with self._lock:
            self.stats.received += 1
            if stamp_ns is None:
                if not self.allow_headerless:
                    self.stats.dropped_headerless += 1
                    return None
                stamp_ns = self._clock_ns()
            stamps, msgs = self._stamps[index], self._msgs[index]
            if stamp_ns not in msgs:
                bisect.insort(stamps, stamp_ns)
            msgs[stamp_ns] = msg
            while len(stamps) > self.queue_size:
                del msgs[stamps.pop(0)]
                self.stats.dropped_overflow += 1
            if stamp_ns not in msgs:
                # Older than everything in a full queue: it was dropped at once, and (as in
                # message_filters, whose sets only take queued messages) completes nothing.
                return None
            chosen = self._find_set(index, stamp_ns)
            if chosen is None:
                return None
            out = tuple(self._take(i, s) for i, s in enumerate(chosen))
            self.stats.emitted_sets += 1
        for cb in self._callbacks:
            cb(*out)
        return out

    def _find_set(self, index: int, stamp: int) -> list[int] | None:
        # Candidates of every other input within slop of the new stamp; a set is a choice of one
        # per input whose span (max - min) is < slop. Its minimum is one of the candidates at or
        # below `stamp` (or `stamp` itself), so try each such lower bound.
        slop = self.slop_ns
        cands: list[list[int]] = []
        for i, stamps in enumerate(self._stamps):
            if i == index:
                cands.append([stamp])
                continue
            lo = bisect.bisect_left(stamps, stamp - slop + 1)
            hi = bisect.bisect_right(stamps, stamp + slop - 1)
            if lo == hi:
                return None
            cands.append(stamps[lo:hi])
        lows = sorted({s for c in cands for s in c if s <= stamp})
        best: tuple[int, list[int]] | None = None
        for low in lows:
            choice: list[int] = []
            for c in cands:
                # The earliest candidate at or above `low` keeps the span smallest for this bound.
                k = bisect.bisect_left(c, low)
                if k == len(c) or c[k] - low >= slop:
                    break
                choice.append(c[k])
            else:
                span = max(choice) - low
                if best is None or span < best[0]:
                    best = (span, choice)
        return None if best is None else best[1]

    def _take(self, index: int, stamp: int) -> Any:
        stamps = self._stamps[index]
        del stamps[bisect.bisect_left(stamps, stamp)]
        return self._msgs[index].pop(stamp)

    def queued_stamps(self, index: int) -> list[int]:
        """Stamps waiting in input `index` (oldest first): tells which input a set is missing."""
        with self._lock:
            return list(self._stamps[index])

    def clear(self) -> None:
        with self._lock:
            for stamps, msgs in zip(self._stamps, self._msgs, strict=True):
                stamps.clear()
                msgs.clear()


@dataclass(frozen=True)
class Stamped(Generic[T]):
    stamp_ns: int
    value: T


class ImuBuffer(Generic[T]):
    """Samples kept in stamp order (late arrivals inserted, repeated stamps replaced), at most
    `max_age_s` behind the newest; `between(t0, t1)` returns the samples of a time window and
    `wait_until(t)` blocks until a sample at or after t has arrived (the window is complete)."""

    def __init__(self, max_age_s: float = 10.0) -> None:
        if not max_age_s > 0:
            raise SyncError(f"max_age_s must be > 0, got {max_age_s}")
        self.max_age_ns = int(max_age_s * 1e9)
        self._stamps: list[int] = []
        self._values: list[T] = []
        self._cond = threading.Condition()

    def add(self, stamp_ns: int, value: T) -> None:
        with self._cond:
            k = bisect.bisect_left(self._stamps, stamp_ns)
            if k < len(self._stamps) and self._stamps[k] == stamp_ns:
                self._values[k] = value
            else:
                self._stamps.insert(k, stamp_ns)
                self._values.insert(k, value)
            cut = bisect.bisect_left(self._stamps, self._stamps[-1] - self.max_age_ns)
            if cut:
                del self._stamps[:cut]
                del self._values[:cut]
            self._cond.notify_all()

    def between(self, start_ns: int, end_ns: int) -> list[Stamped[T]]:
        """Samples with start_ns <= stamp <= end_ns, oldest first."""
        with self._cond:
            lo = bisect.bisect_left(self._stamps, start_ns)
            hi = bisect.bisect_right(self._stamps, end_ns)
            return [Stamped(s, v) for s, v in zip(self._stamps[lo:hi], self._values[lo:hi], strict=True)]

    @property
    def oldest_ns(self) -> int | None:
        with self._cond:
            return self._stamps[0] if self._stamps else None

    @property
    def latest_ns(self) -> int | None:
        with self._cond:
            return self._stamps[-1] if self._stamps else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._stamps)

    def wait_until(self, stamp_ns: int, timeout_s: float) -> bool:
        """True once a sample stamped at or after `stamp_ns` is buffered; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._stamps or self._stamps[-1] < stamp_ns:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def clear(self) -> None:
        with self._cond:
            self._stamps.clear()
            self._values.clear()
