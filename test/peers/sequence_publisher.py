"""Test peer: publishes FocusSequence messages of 5 real photographs (1280x960) in its own process.

Usage: sequence_publisher.py COUNT RATE_HZ [--ros-args ...]. Each sequence carries its id; the
subscriber checks the bytes against the same deterministic images. Waits for a subscriber before
publishing (reliable QoS), then exits after the last message has been acknowledged.
"""

from __future__ import annotations

import sys
import time

import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from test_images import photo_burst

from dfocus_capture.dds import apply_default_profile
from dfocus_capture.ros_convert import burst_to_msg, ns_to_stamp
from dfocus_interfaces.msg import FocusSequence

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class SequencePublisher(Node):
    def __init__(self) -> None:
        super().__init__("sequence_publisher")
        self.pub = self.create_publisher(FocusSequence, "capture/sequence", QOS)


def main(args: list[str] | None = None) -> None:
    argv = sys.argv if args is None else args
    count, rate = int(argv[1]), float(argv[2])
    apply_default_profile()
    rclpy.init(args=argv)
    node = SequencePublisher()
    msg = burst_to_msg(photo_burst())
    deadline = time.monotonic() + 15.0
    while node.pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    if node.pub.get_subscription_count() == 0:
        node.get_logger().error("no subscriber appeared within 15 s")
        sys.exit(3)
    period = 1.0 / rate
    start = time.monotonic()
    for i in range(count):
        msg.sequence_id = i + 1
        msg.header.stamp = ns_to_stamp(time.time_ns())
        node.pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0)
        time.sleep(max(0.0, start + (i + 1) * period - time.monotonic()))
    node.pub.wait_for_all_acked(Duration(seconds=10.0))
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
