"""The interfaces for real: FocusSequence bursts of 5 x 1280x960 photographs between two processes."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy

from dfocus_capture.ros_convert import burst_from_msg

sys.path.insert(0, str(Path(__file__).parent / "peers"))
from test_images import photos  # noqa: E402

PEER = Path(__file__).parent / "peers" / "sequence_publisher.py"
COUNT = 12


def test_focus_sequence_crosses_processes_intact(rclpy_context, spin, node_processes, wait) -> None:
    from rclpy.node import Node

    from dfocus_interfaces.msg import FocusSequence

    node = Node("sequence_probe", namespace="/itest", context=rclpy_context)
    received: list[FocusSequence] = []
    lock = threading.Lock()

    def on_msg(msg: FocusSequence) -> None:
        with lock:
            received.append(msg)

    node.create_subscription(FocusSequence, "capture/sequence", on_msg,
                             QoSProfile(depth=COUNT, reliability=ReliabilityPolicy.RELIABLE))
    spin(node)
    proc = node_processes.start(
        [sys.executable, str(PEER), str(COUNT), "10", "--ros-args", "-r", "__ns:=/itest"], name="publisher"
    )
    wait(lambda: len(received) >= COUNT or proc.poll() not in (None, 0), 60.0, f"{COUNT} sequences")
    assert proc.wait(timeout=30) == 0, node_processes.output(proc)

    expected = photos()
    with lock:
        ids = [m.sequence_id for m in received]
        assert ids == list(range(1, COUNT + 1)), f"lost or reordered: {ids}"
        burst = burst_from_msg(received[-1])
    assert (burst.num_shots, burst.num_cameras) == (1, 5)
    for frame, photo in zip(burst.frames, expected, strict=True):
        assert frame.image.shape == (960, 1280, 3)
        np.testing.assert_array_equal(frame.image, photo)
    assert burst.frame(0, 3).camera.focus_distance_m == 2.0
