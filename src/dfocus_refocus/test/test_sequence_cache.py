"""The node's sequence cache without ROS: depth joins its burst by stamp in either order, the oldest
bursts are evicted, preparation runs in the background (pure, no rclpy)."""

import numpy as np
import pytest
from refocus_cases import make_case

from dfocus_refocus.pipeline import prepare_sequence
from dfocus_refocus.sequence_cache import SequenceCache, SequenceNotFoundError


def _prepare(burst, depth, progress):
    return prepare_sequence(burst, depth, progress=progress)


def test_depth_joins_its_burst_in_either_order_and_old_bursts_age_out():
    cache = SequenceCache(capacity=2, preparer=_prepare)
    try:
        with pytest.raises(SequenceNotFoundError, match="no sequence"):
            cache.get(0)
        a = make_case(seed=5, width=160, stamp_ns=100, sequence_id=1)
        b = make_case(seed=6, width=160, stamp_ns=200, sequence_id=2)
        c = make_case(seed=7, width=160, stamp_ns=300, sequence_id=3)
        assert cache.add_depth(200, b.depth) is None  # depth first: kept until its burst arrives
        cache.add_burst(a.burst)
        entry_b = cache.add_burst(b.burst)
        assert entry_b.depth is not None
        assert cache.add_depth(999, a.depth) is None  # a stamp no burst has: not attached to any
        assert cache.listing() == [(1, 100, False), (2, 200, True)]
        prepared = entry_b.prepared.result(timeout=60)
        assert entry_b.stage == "ready" and prepared.burst.sequence_id == 2
        assert np.array_equal(prepared.all_in_focus_srgb(), prepare_sequence(b.burst, b.depth).all_in_focus_srgb())
        assert cache.latest_ready() is prepared
        cache.add_burst(c.burst)  # capacity 2: sequence 1 leaves
        assert [s for s, _, _ in cache.listing()] == [2, 3]
        assert cache.get(0).sequence_id == 3
        with pytest.raises(SequenceNotFoundError, match="sequence 1 is not in the cache"):
            cache.get(1)
    finally:
        cache.shutdown()


def test_low_confidence_depth_becomes_holes():
    case = make_case(seed=5, width=160, stamp_ns=100)
    seen = []

    def spy(burst, depth, progress):  # the real preparation, recording the depth it was given
        seen.append(depth)
        return prepare_sequence(burst, depth, progress=progress)

    cache = SequenceCache(capacity=1, preparer=spy, min_confidence=0.5)
    try:
        conf = np.ones_like(case.depth)
        conf[:, :40] = 0.1
        cache.add_burst(case.burst)
        cache.add_confidence(100, conf)
        entry = cache.get(0)
        cache.add_depth(100, case.depth)
        entry.prepared.result(timeout=60)
        assert np.isnan(seen[0][:, :40]).all() and np.isfinite(seen[0][:, 40:]).all()
    finally:
        cache.shutdown()


def test_a_goal_may_overtake_its_burst_but_not_wait_for_an_evicted_one():
    import threading
    import time

    cache = SequenceCache(capacity=1, preparer=_prepare)
    try:
        a = make_case(seed=5, width=96, stamp_ns=100, sequence_id=4)
        b = make_case(seed=6, width=96, stamp_ns=200, sequence_id=5)
        arrives = threading.Timer(0.5, cache.add_burst, (a.burst,))
        arrives.start()
        start = time.monotonic()
        assert cache.get(4, timeout_s=30.0).sequence_id == 4  # waited for it, not the full timeout
        assert time.monotonic() - start < 25.0
        arrives.join()
        cache.add_burst(b.burst)  # capacity 1: sequence 4 is evicted
        start = time.monotonic()
        with pytest.raises(SequenceNotFoundError, match=r"sequence 4 is not in the cache \(holding \[5\]\) \(evicted"):
            cache.get(4, timeout_s=30.0)
        assert time.monotonic() - start < 5.0  # an older id cannot come any more: no wait
        with pytest.raises(SequenceNotFoundError, match="did not arrive within 0.2 s"):
            cache.get(6, timeout_s=0.2)
        checks = []

        def cancel() -> None:
            checks.append(1)
            raise RuntimeError("canceled")

        with pytest.raises(RuntimeError, match="canceled"):
            cache.get(7, timeout_s=30.0, check=cancel, poll_s=0.05)
        assert checks == [1]
    finally:
        cache.shutdown()


def test_the_latest_sequence_is_the_latest_announced_not_the_latest_received():
    import threading

    cache = SequenceCache(capacity=4, preparer=_prepare)
    try:
        a = make_case(seed=5, width=96, stamp_ns=100, sequence_id=4)
        b = make_case(seed=6, width=96, stamp_ns=200, sequence_id=5)
        cache.add_burst(a.burst)
        assert cache.get(0).sequence_id == 4  # nothing announced: the newest received
        cache.announce(5)  # captured; its frames are still on their way
        arrives = threading.Timer(0.3, cache.add_burst, (b.burst,))
        arrives.start()
        assert cache.get(0, timeout_s=30.0).sequence_id == 5  # waited for it instead of rendering 4
        arrives.join()
        cache.announce(6)  # announced, never delivered: a clear error, not the previous burst
        with pytest.raises(SequenceNotFoundError,
                           match=r"sequence 6 \(the latest announced\) is not in the cache .* within 0.2 s"):
            cache.get(0, timeout_s=0.2)
        cache.announce(3)  # an older announcement (a replayed bag) changes nothing
        assert cache.get(5).sequence_id == 5
    finally:
        cache.shutdown()


def test_bursts_are_also_bounded_by_bytes_but_the_newest_stays():
    cases = [make_case(seed=5 + k, width=96, stamp_ns=100 * (k + 1), sequence_id=k + 1) for k in range(3)]
    per_burst = sum(f.image.nbytes for f in cases[0].burst.frames)
    cache = SequenceCache(capacity=10, preparer=_prepare, max_bytes=2 * per_burst)
    try:
        for c in cases:
            cache.add_burst(c.burst)
        assert [s for s, _, _ in cache.listing()] == [2, 3]  # the oldest went for bytes, not count
        tiny = SequenceCache(capacity=10, preparer=_prepare, max_bytes=1)
        tiny.add_burst(cases[0].burst)
        assert [s for s, _, _ in tiny.listing()] == [1]  # one burst over the budget is still kept
        tiny.shutdown()
    finally:
        cache.shutdown()
