"""The refocus node in its own process, driven from this one: a simulated burst and its true depth
go out on capture/sequence and depth/image; goals, cancel, preemption, invalid goals, the sequence
list and the live preview are checked against the same core rendering locally."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from refocus_cases import make_case

from dfocus_capture import qos
from dfocus_capture.ros_convert import burst_to_msg, image_to_msg, msg_to_image, ns_to_stamp
from dfocus_refocus.pipeline import RefocusRequest, prepare_sequence

pytestmark = pytest.mark.ros

NS = "/refocus_test"
STAMP_A = 1_700_000_000_000_000_000
STAMP_B = STAMP_A + 1_000_000_000
DEPTH_TIMEOUT_S = 4.0
SEQUENCE_TIMEOUT_S = 8.0
PREVIEW_WIDTH = 160


class Driver:
    """The test side: publishers, action client, service client, result subscriptions."""

    def __init__(self, context: object) -> None:
        from rclpy.action import ActionClient
        from rclpy.node import Node
        from sensor_msgs.msg import Image

        from dfocus_interfaces.action import Refocus
        from dfocus_interfaces.msg import FocalPlane, FocusSequence, SequenceAnnouncement
        from dfocus_interfaces.srv import ListSequences

        self.node = Node("refocus_driver", namespace=NS, context=context)
        self.seq_pub = self.node.create_publisher(FocusSequence, "capture/sequence", qos.LATCHED)
        self.announce_pub = self.node.create_publisher(SequenceAnnouncement, "capture/announced", qos.LATCHED)
        self.SequenceAnnouncement = SequenceAnnouncement
        self.depth_pub = self.node.create_publisher(Image, "depth/image", qos.LATCHED)
        self.plane_pub = self.node.create_publisher(FocalPlane, "refocus/focal_plane", qos.LATEST)
        self.client = ActionClient(self.node, Refocus, "refocus")
        self.lister = self.node.create_client(ListSequences, "refocus/list_sequences")
        self.lock = threading.Lock()
        self.previews: list[np.ndarray] = []
        self.images: list[np.ndarray] = []
        self.node.create_subscription(Image, "refocus/preview", self._keep(self.previews), qos.LATEST)
        self.node.create_subscription(Image, "refocus/image", self._keep(self.images), qos.RELIABLE)
        self.Refocus, self.FocalPlane, self.ListSequences = Refocus, FocalPlane, ListSequences

    def _keep(self, into: list[np.ndarray]) -> Any:
        def callback(msg: Any) -> None:
            with self.lock:
                into.append(np.array(msg_to_image(msg)))
        return callback

    def goal(self, focus: float, near: float, far: float, sequence_id: int, width: int = 0) -> Any:
        g = self.Refocus.Goal()
        g.focal_plane.focus_distance_m, g.focal_plane.near_m, g.focal_plane.far_m = focus, near, far
        g.sequence_id, g.output_width = sequence_id, width
        return g

    def list_sequences(self, timeout: float = 2.0) -> Any:
        """One call; None if no answer in time (a request sent before the server discovered this
        client can go unanswered, so callers retry)."""
        done = threading.Event()
        fut = self.lister.call_async(self.ListSequences.Request())
        fut.add_done_callback(lambda _: done.set())
        return fut.result() if done.wait(timeout) else None

    def send(self, goal: Any, wait: Any) -> tuple[Any, list[Any]]:
        feedback: list[Any] = []
        fut = self.client.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
        wait(fut.done, 20.0, "goal acceptance")
        handle = fut.result()
        assert handle.accepted
        return handle, feedback

    def result(self, handle: Any, wait: Any, timeout: float = 20.0) -> Any:
        fut = handle.get_result_async()
        wait(fut.done, timeout, "goal result")
        return fut.result()


@pytest.fixture
def graph(rclpy_context: object, spin: Any, node_processes: Any, wait: Any) -> tuple[Driver, Any]:
    proc = node_processes.python(
        "dfocus_refocus.refocus_node", "--ros-args", "-r", f"__ns:={NS}",
        "-p", f"depth_timeout_s:={DEPTH_TIMEOUT_S}", "-p", f"sequence_timeout_s:={SEQUENCE_TIMEOUT_S}",
        "-p", f"preview_width:={PREVIEW_WIDTH}", name="refocus",
    )
    driver = Driver(rclpy_context)
    spin(driver.node)
    ok = lambda: driver.client.server_is_ready() and driver.seq_pub.get_subscription_count() > 0  # noqa: E731
    wait(lambda: ok() or proc.poll() is not None, 30.0, "the refocus node's action server")
    assert proc.poll() is None, node_processes.output(proc)
    wait(lambda: driver.depth_pub.get_subscription_count() > 0 and driver.plane_pub.get_subscription_count() > 0,
         5.0, "depth and focal-plane subscriptions")
    # Discovery is mutual only once a request/response round trip works.
    wait(lambda: driver.lister.service_is_ready() and driver.list_sequences() is not None, 20.0, "list_sequences")
    return driver, proc


@pytest.fixture
def node_log(graph: tuple[Driver, Any], node_processes: Any) -> Any:
    """Re-raise a failed check with the refocus node's log attached."""
    class Attach:
        def __enter__(self) -> None:
            return None

        def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
            if isinstance(exc, AssertionError):
                raise AssertionError(f"{exc}\n--- refocus node log ---\n{node_processes.output(graph[1])}") from exc
    return Attach()


def test_refocus_action_across_processes(graph: tuple[Driver, Any], node_log: Any, wait: Any,
                                         node_processes: Any) -> None:
    with node_log:
        _action_checks(*graph, wait, lambda: node_processes.output(graph[1]))


def _action_checks(driver: Driver, proc: Any, wait: Any, log: Any) -> None:
    from action_msgs.msg import GoalStatus
    from std_msgs.msg import Header

    case = make_case(seed=5, width=240, stamp_ns=STAMP_A, sequence_id=7)
    driver.seq_pub.publish(burst_to_msg(case.burst))
    driver.depth_pub.publish(image_to_msg(case.depth, "32FC1", Header(stamp=ns_to_stamp(STAMP_A))))
    local = prepare_sequence(case.burst, case.depth)

    # A goal succeeds, with feedback by stage, and the image is the core's rendering of that plane.
    handle, feedback = driver.send(driver.goal(0.6, 0.6, 0.6, sequence_id=7), wait)
    res = driver.result(handle, wait)
    assert res.status == GoalStatus.STATUS_SUCCEEDED, res.result.message
    assert res.result.sequence_id == 7 and res.result.focal_plane_used.focus_distance_m == pytest.approx(0.6)
    stages = [f.stage for f in feedback]
    assert "rendering" in stages and stages[-1] == "done", stages
    image = np.array(msg_to_image(res.result.image))
    expected = local.render(RefocusRequest(focus_m=0.6, near_m=0.6, far_m=0.6)).image
    assert image.shape == (180, 240, 3)
    assert np.abs(image.astype(int) - expected).mean() < 0.5
    wait(lambda: len(driver.images) >= 1, 5.0, "refocus/image")

    # The sequence is listed, with its depth.
    listing = driver.list_sequences(10.0)
    assert list(listing.sequence_ids) == [7] and list(listing.has_depth) == [True]
    assert listing.stamps[0].sec == STAMP_A // 10**9

    # Invalid goals abort with their reason; the node keeps serving.
    handle, _ = driver.send(driver.goal(1.0, 2.0, 1.5, sequence_id=7), wait)
    res = driver.result(handle, wait)
    assert res.status == GoalStatus.STATUS_ABORTED and "beyond far_m" in res.result.message
    handle, _ = driver.send(driver.goal(1.0, 0.0, 0.0, sequence_id=99), wait)
    res = driver.result(handle, wait, timeout=SEQUENCE_TIMEOUT_S + 20)
    assert res.status == GoalStatus.STATUS_ABORTED and "99 is not in the cache" in res.result.message
    assert f"did not arrive within {SEQUENCE_TIMEOUT_S:g} s" in res.result.message

    # Sequence 8 has no depth yet: its goal waits, and can be canceled while waiting.
    case_b = make_case(seed=6, width=240, stamp_ns=STAMP_B, sequence_id=8)
    driver.seq_pub.publish(burst_to_msg(case_b.burst))
    # Sent at once: the goal travels apart from the sequence and can overtake it; the node waits
    # for the sequence (up to sequence_timeout_s), then for its depth.
    handle, feedback = driver.send(driver.goal(1.0, 0.0, 0.0, sequence_id=8), wait)
    wait(lambda: any(f.stage == "waiting for depth" for f in feedback), SEQUENCE_TIMEOUT_S + 10,
         "waiting-for-depth feedback")
    cancel = handle.cancel_goal_async()
    wait(cancel.done, 5.0, "cancel response")
    res = driver.result(handle, wait)
    assert res.status == GoalStatus.STATUS_CANCELED and res.result.message == "canceled"

    # A newer goal preempts the waiting one: the older is aborted with a message, the newer succeeds.
    old, feedback = driver.send(driver.goal(1.0, 0.0, 0.0, sequence_id=8), wait)
    wait(lambda: any(f.stage == "waiting for depth" for f in feedback), 5.0, "waiting-for-depth feedback")
    new, _ = driver.send(driver.goal(2.0, 1.5, 3.0, sequence_id=7, width=120), wait)
    res_old, res_new = driver.result(old, wait), driver.result(new, wait)
    assert res_old.status == GoalStatus.STATUS_ABORTED and "preempted" in res_old.result.message
    assert res_new.status == GoalStatus.STATUS_SUCCEEDED
    assert np.array(msg_to_image(res_new.result.image)).shape == (90, 120, 3)

    # Without its depth, sequence 8 aborts after the timeout with a clear message.
    handle, _ = driver.send(driver.goal(1.0, 0.0, 0.0, sequence_id=8), wait)
    res = driver.result(handle, wait, timeout=DEPTH_TIMEOUT_S + 10)
    assert res.status == GoalStatus.STATUS_ABORTED and "no depth map for sequence 8" in res.result.message
    assert proc.poll() is None

    # sequence_id 0 right after a capture: sequence 9 is announced before its frames arrive, and the
    # goal renders it (not 7 or 8, the newest received), once it and its depth are in.
    wait(lambda: driver.announce_pub.get_subscription_count() > 0, 10.0, "the capture/announced subscription")
    driver.announce_pub.publish(driver.SequenceAnnouncement(sequence_id=9, num_shots=1, num_cameras=3))
    wait(lambda: "sequence 9 announced" in log(), 10.0, "the node to take the announcement")
    handle, feedback = driver.send(driver.goal(1.0, 0.0, 0.0, sequence_id=0), wait)
    wait(lambda: any(f.stage == "waiting for the sequence" for f in feedback), 10.0, "waiting-for-sequence feedback")
    case_c = make_case(seed=7, width=240, stamp_ns=STAMP_B + 1, sequence_id=9)
    driver.seq_pub.publish(burst_to_msg(case_c.burst))
    driver.depth_pub.publish(image_to_msg(case_c.depth, "32FC1", Header(stamp=ns_to_stamp(STAMP_B + 1))))
    res = driver.result(handle, wait, timeout=SEQUENCE_TIMEOUT_S + 20)
    assert res.status == GoalStatus.STATUS_SUCCEEDED and res.result.sequence_id == 9, res.result.message


def test_preview_follows_the_latest_plane(graph: tuple[Driver, Any], node_log: Any, wait: Any) -> None:
    with node_log:
        _preview_checks(graph[0], wait)


def _preview_checks(driver: Driver, wait: Any) -> None:
    from std_msgs.msg import Header

    case = make_case(seed=5, width=240, stamp_ns=STAMP_A, sequence_id=7)
    driver.seq_pub.publish(burst_to_msg(case.burst))
    driver.depth_pub.publish(image_to_msg(case.depth, "32FC1", Header(stamp=ns_to_stamp(STAMP_A))))
    local = prepare_sequence(case.burst, case.depth)

    def expected(focus: float) -> np.ndarray:
        return local.render(RefocusRequest(focus_m=focus, near_m=focus, far_m=focus, output_width=PREVIEW_WIDTH)).image

    def latest_matches(target: np.ndarray) -> bool:
        with driver.lock:
            last = driver.previews[-1] if driver.previews else None
        return last is not None and last.shape == target.shape and np.abs(last.astype(int) - target).mean() < 0.5

    # A slider sweep: many planes in a burst; the preview must settle on the last one.
    planes = [0.4 + 0.15 * i for i in range(20)]
    for focus in planes:
        plane = driver.FocalPlane()
        plane.focus_distance_m = plane.near_m = plane.far_m = focus
        driver.plane_pub.publish(plane)
    final = expected(planes[-1])
    assert np.abs(final.astype(int) - expected(planes[0])).mean() > 1.0  # the planes look different
    wait(lambda: latest_matches(final), 15.0, "a preview of the last plane")
    with driver.lock:
        count = len(driver.previews)
    assert 1 <= count <= len(planes)  # stale planes may be dropped, never queued up beyond the requests
