"""Approximate-time synchronizer (message_filters semantics) and the IMU buffer, without rclpy."""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfocus_capture.sync import ApproximateTimeSynchronizer, ImuBuffer, SyncError

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000


def collector(sync: ApproximateTimeSynchronizer) -> list[tuple[object, ...]]:
    sets: list[tuple[object, ...]] = []
    sync.register_callback(lambda *msgs: sets.append(msgs))
    return sets


def test_exact_stamps_make_one_set_per_trigger() -> None:
    sync = ApproximateTimeSynchronizer(3, queue_size=5, slop_s=0.005)
    sets = collector(sync)
    for k in range(4):
        for i in range(3):
            sync.add(i, T0 + k * 100 * MS, (i, k))
    assert sets == [((0, k), (1, k), (2, k)) for k in range(4)]
    assert all(sync.queued_stamps(i) == [] for i in range(3))


def test_jitter_within_slop_matches_and_beyond_slop_does_not() -> None:
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop_s=0.010)
    sets = collector(sync)
    sync.add(0, T0, "a0")
    assert sync.add(1, T0 + 9 * MS, "b0") == ("a0", "b0")
    sync.add(0, T0 + 100 * MS, "a1")
    assert sync.add(1, T0 + 110 * MS, "b1") is None  # span == slop: message_filters needs < slop
    sync.add(0, T0 + 200 * MS, "a2")
    assert sync.add(1, T0 + 195 * MS, "b2") == ("a2", "b2")  # the late-stamped one may come first
    assert sets == [("a0", "b0"), ("a2", "b2")]


def test_set_span_is_limited_not_only_distance_to_the_new_message() -> None:
    # b at +8 and c at -8 are both within slop of a, but span 16 ms > 10 ms: no set.
    sync = ApproximateTimeSynchronizer(3, queue_size=5, slop_s=0.010)
    sync.add(1, T0 + 8 * MS, "b")
    sync.add(2, T0 - 8 * MS, "c")
    assert sync.add(0, T0, "a") is None
    assert sync.add(2, T0 + 3 * MS, "c2") == ("a", "b", "c2")
    assert sync.queued_stamps(2) == [T0 - 8 * MS]  # unused messages stay queued


def test_missing_topic_never_emits_and_stale_messages_overflow() -> None:
    sync = ApproximateTimeSynchronizer(3, queue_size=4, slop_s=0.005)
    sets = collector(sync)
    for k in range(10):
        sync.add(0, T0 + k * 50 * MS, k)
        sync.add(1, T0 + k * 50 * MS, k)
    assert sets == []
    assert sync.queued_stamps(0) == [T0 + k * 50 * MS for k in range(6, 10)]
    assert sync.stats.dropped_overflow == 12
    # The missing input comes back: the newest queued pair completes with it.
    assert sync.add(2, T0 + 9 * 50 * MS + 1 * MS, "late") == (9, 9, "late")


def test_out_of_order_arrival_pairs_by_stamp() -> None:
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop_s=0.002)
    sets = collector(sync)
    stamps = [T0 + k * 33 * MS for k in range(8)]
    order = list(range(8))
    random.Random(3).shuffle(order)
    for k in order:
        sync.add(0, stamps[k] + 500_000, ("img", k))
    random.Random(4).shuffle(order)
    for k in order:
        sync.add(1, stamps[k], ("info", k))
    assert sorted(sets) == [(("img", k), ("info", k)) for k in range(8)]


def test_tightest_set_wins_between_two_triggers() -> None:
    # Two triggers 6 ms apart with 10 ms slop: each new message must join its own trigger's set.
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop_s=0.010)
    sync.add(0, T0, "a0")
    sync.add(0, T0 + 6 * MS, "a1")
    assert sync.add(1, T0 + 6 * MS, "b1") == ("a1", "b1")
    assert sync.add(1, T0, "b0") == ("a0", "b0")


def test_repeated_stamp_replaces_queued_message() -> None:
    sync = ApproximateTimeSynchronizer(2, queue_size=3, slop_s=0.001)
    sync.add(0, T0, "old")
    sync.add(0, T0, "new")
    assert sync.queued_stamps(0) == [T0]
    assert sync.add(1, T0, "b") == ("new", "b")


def test_queue_overflow_drops_the_oldest_stamp_even_if_it_arrived_last() -> None:
    sync = ApproximateTimeSynchronizer(2, queue_size=2, slop_s=0.001)
    sync.add(0, T0 + 20 * MS, "c")
    sync.add(0, T0 + 10 * MS, "b")
    sync.add(0, T0, "a")  # oldest stamp: pushed out at once
    assert sync.queued_stamps(0) == [T0 + 10 * MS, T0 + 20 * MS]
    assert sync.add(1, T0, "x") is None
    assert sync.add(1, T0 + 10 * MS, "y") == ("b", "y")


def test_headerless_messages() -> None:
    strict = ApproximateTimeSynchronizer(2, queue_size=2, slop_s=0.01)
    assert strict.add(0, None, "a") is None and strict.stats.dropped_headerless == 1
    now = [T0]
    lenient = ApproximateTimeSynchronizer(2, queue_size=2, slop_s=0.01, allow_headerless=True,
                                          clock_ns=lambda: now[0])
    lenient.add(0, None, "a")
    now[0] += 3 * MS
    assert lenient.add(1, T0 + 2 * MS, "b") == ("a", "b")


def test_single_input_passes_every_message_through() -> None:
    sync = ApproximateTimeSynchronizer(1, queue_size=1, slop_s=0.01)
    assert [sync.add(0, T0 + k, k) for k in range(3)] == [(0,), (1,), (2,)]


@pytest.mark.parametrize(("args", "what"), [((0, 5, 0.1), "input"), ((2, 0, 0.1), "queue_size"),
                                           ((2, 5, 0.0), "slop"), ((2, 5, float("nan")), "slop")])
def test_bad_configuration_is_refused(args: tuple[int, int, float], what: str) -> None:
    with pytest.raises(SyncError, match=what):
        ApproximateTimeSynchronizer(*args)


def test_bad_index_is_refused() -> None:
    with pytest.raises(SyncError, match="out of range"):
        ApproximateTimeSynchronizer(2, 5, 0.01).add(2, T0, "x")


def test_concurrent_inputs_from_threads_emit_every_set_once() -> None:
    n, shots = 6, 200
    sync = ApproximateTimeSynchronizer(n, queue_size=shots, slop_s=0.001)
    sets = collector(sync)

    def feed(i: int) -> None:
        for k in range(shots):
            sync.add(i, T0 + k * 10 * MS, k)

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s[0] for s in sets) == list(range(shots))  # type: ignore[type-var]
    assert all(len(set(s)) == 1 for s in sets)


def test_imu_buffer_window_order_and_age_limit() -> None:
    buf: ImuBuffer[int] = ImuBuffer(max_age_s=1.0)
    stamps = [T0 + k * 2_500_000 for k in range(800)]  # 400 Hz for 2 s
    shuffled = stamps[:]
    random.Random(1).shuffle(shuffled[-20:])
    for s in shuffled:
        buf.add(s, s)
    window = buf.between(T0 + 1500 * MS, T0 + 1510 * MS)
    assert [w.stamp_ns for w in window] == [T0 + 1500 * MS + k * 2_500_000 for k in range(5)]
    assert len(buf) == 401  # one second back from the newest, both ends included
    assert buf.between(T0, T0 + 900 * MS) == []
    buf.add(stamps[-1], -1)
    assert buf.between(stamps[-1], stamps[-1])[0].value == -1
    assert buf.oldest_ns == stamps[-401] and buf.latest_ns == stamps[-1]


def test_imu_buffer_wait_until() -> None:
    buf: ImuBuffer[int] = ImuBuffer()
    assert not buf.wait_until(T0, timeout_s=0.01)
    t = threading.Timer(0.05, lambda: buf.add(T0 + MS, 1))
    t.start()
    assert buf.wait_until(T0, timeout_s=5.0)
    t.join()


def test_an_older_message_on_a_full_queue_completes_nothing_and_leaves_the_queues_consistent() -> None:
    # message_filters emits nothing here: the arriving message is dropped from its own full queue.
    sync = ApproximateTimeSynchronizer(2, queue_size=1, slop_s=0.05)
    sets = collector(sync)
    assert sync.add(0, T0 + 200 * MS, "a200") is None
    assert sync.add(1, T0 + 140 * MS, "b140") is None
    assert sync.add(0, T0 + 150 * MS, "a150") is None
    assert sets == []
    assert sync.queued_stamps(0) == [T0 + 200 * MS] and sync.queued_stamps(1) == [T0 + 140 * MS]
    assert sync.add(1, T0 + 190 * MS, "b190") == ("a200", "b190")  # still pairs what it holds


@settings(max_examples=300, deadline=None)
@given(inputs=st.integers(1, 3), queue_size=st.integers(1, 4), slop_ms=st.integers(1, 80),
       events=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 400)), max_size=40))
def test_any_arrival_order_keeps_the_invariants(inputs: int, queue_size: int, slop_ms: int,
                                                events: list[tuple[int, int]]) -> None:
    """Looped replays and reordering send stamps in any order: the synchronizer never raises, its
    queues stay bounded and consistent, every set spans less than the slop with one message per
    input in input order, and no message is emitted twice."""
    sync = ApproximateTimeSynchronizer(inputs, queue_size, slop_ms / 1000)
    sets = collector(sync)
    for n, (index, t_ms) in enumerate(events):
        index %= inputs
        sync.add(index, T0 + t_ms * MS, (index, t_ms, n))
        for i in range(inputs):
            queued = sync.queued_stamps(i)
            assert queued == sorted(set(queued)) and len(queued) <= queue_size
    seen = [m for s in sets for m in s]
    assert len(seen) == len(set(seen))
    for s in sets:
        assert [m[0] for m in s] == list(range(inputs))  # type: ignore[index]
        stamps = [m[1] for m in s]  # type: ignore[index]
        assert max(stamps) - min(stamps) < slop_ms
