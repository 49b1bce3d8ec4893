"""bag_player: republishes a rosbag2 with its original timing (scaled by `rate`), optionally looping
and publishing /clock for nodes running with use_sim_time.

Each topic is published with the QoS its recorded publishers offered (capture/sequence stays
reliable + transient-local) and the stored CDR bytes go out unchanged. Topic remaps are ordinary
ROS remap rules (`--ros-args -r /dfocus/cam0/image_raw:=/other`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rosgraph_msgs.msg import Clock

from dfocus_capture.bag import BagError, BagReader, PlaybackClock, message_class, select_topics
from dfocus_capture.bag_recorder_node import to_profile
from dfocus_capture.dds import apply_default_profile
from dfocus_capture.params import ParamSpec, declare_params
from dfocus_capture.ros_convert import ns_to_stamp

PARAMS = [
    ParamSpec("bag", "", "rosbag2 folder to play", read_only=True),
    ParamSpec("rate", 1.0, "playback speed relative to the recording", min=0.01, max=100.0, read_only=True),
    ParamSpec("loop", False, "start over at the end", read_only=True),
    ParamSpec("clock", False, "publish /clock (rosgraph_msgs/Clock) for use_sim_time consumers", read_only=True),
    ParamSpec("clock_hz", 100.0, "/clock publish rate", min=1.0, max=1000.0, read_only=True),
    ParamSpec("topics", ["/*"], "topic patterns to play (fnmatch, relative to the namespace)", read_only=True),
    ParamSpec("start_delay_s", 0.0, "wait this long before the first message", min=0.0, max=3600.0,
              read_only=True),
    ParamSpec("wait_for_subscribers", 0, "before playing, wait until every topic has this many subscribers",
              min=0, max=100, read_only=True),
    ParamSpec("wait_timeout_s", 10.0, "give up waiting for subscribers after this long (then play anyway)",
              min=0.0, max=3600.0, read_only=True),
    ParamSpec("keep_alive", False, "stay up after the end so transient-local topics keep serving late joiners",
              read_only=True),
]


class BagPlayer(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("bag_player", **kwargs)
        self.params = declare_params(self, PARAMS)
        if not self.params["bag"]:
            raise BagError("parameter 'bag' (the rosbag2 folder to play) is not set")
        self.reader = BagReader(self.params["bag"])
        topics = self.reader.topics()
        self.topics = select_topics(topics, self.params["topics"], self.get_namespace())
        if not self.topics:
            raise BagError(f"no topic of the bag matches {self.params['topics']}; it has {sorted(topics)}")
        self.pubs = {
            t: self.create_publisher(message_class(topics[t].msgtype), t, to_profile(topics[t].qos))
            for t in self.topics
        }
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._playback: PlaybackClock | None = None
        if self.params["clock"]:
            self._clock_pub = self.create_publisher(Clock, "/clock", 10)
            self.create_timer(1.0 / self.params["clock_hz"], self._publish_clock)
        total = sum(topics[t].count for t in self.topics)
        self.get_logger().info(
            f"playing {total} messages on {len(self.topics)} topics from {self.reader.path} "
            f"({self.reader.duration_ns / 1e9:.2f} s at rate {self.params['rate']})"
        )
        self._thread = threading.Thread(target=self._play, daemon=True)
        self._thread.start()

    def _publish_clock(self) -> None:
        clock = self._playback
        if clock is not None:
            self._clock_pub.publish(Clock(clock=ns_to_stamp(clock.bag_time(time.monotonic_ns()))))

    def _wait_for_subscribers(self) -> None:
        need = self.params["wait_for_subscribers"]
        deadline = time.monotonic() + self.params["wait_timeout_s"]
        while need and not self._stop.is_set():
            missing = [t for t, p in self.pubs.items() if p.get_subscription_count() < need]
            if not missing:
                return
            if time.monotonic() > deadline:
                self.get_logger().warning(f"playing without the {need} subscriber(s) waited for on {missing}")
                return
            self._stop.wait(0.05)

    def _play(self) -> None:
        try:
            self._wait_for_subscribers()
            self._stop.wait(self.params["start_delay_s"])
            while not self._stop.is_set():
                self._play_once()
                if not self.params["loop"]:
                    break
            self.get_logger().info("playback finished")
        except BagError as exc:
            self.get_logger().error(f"playback stopped: {exc}")
        finally:
            self.finished.set()

    def _play_once(self) -> None:
        clock = PlaybackClock(self.reader.start_ns, time.monotonic_ns(), self.params["rate"])
        self._playback = clock
        if self.params["clock"]:
            self._publish_clock()
        for msg in self.reader.messages(self.topics):
            delay = clock.wall_time(msg.timestamp_ns) - time.monotonic_ns()
            if delay > 0 and self._stop.wait(delay / 1e9):
                return
            if self._stop.is_set():
                return
            self.pubs[msg.topic].publish(msg.data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        # Reliable messages still in flight are lost if the process exits before they are acked.
        for pub in self.pubs.values():
            pub.wait_for_all_acked(Duration(seconds=2.0))
        self.reader.close()


def main(args: list[str] | None = None) -> int:
    apply_default_profile()
    rclpy.init(args=args)
    try:
        node = BagPlayer()
    except (BagError, ValueError) as exc:
        rclpy.logging.get_logger("bag_player").error(str(exc))
        rclpy.try_shutdown()
        return 1
    try:
        while rclpy.ok() and (node.params["keep_alive"] or not node.finished.is_set()):
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
