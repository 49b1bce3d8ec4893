"""bag_recorder: records topics of the running graph to rosbag2 (mcap or sqlite3).

Topics are matched by shell-style patterns (relative to the node's namespace) and picked up as
their publishers appear; each one is subscribed with the QoS its publishers offer (so transient-local
bursts recorded late still arrive) and stored as raw CDR, byte for byte, with the offered QoS in
metadata.yaml for a faithful replay.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from dfocus_capture.bag import (
    DEFAULT_TOPICS,
    STORAGES,
    BagError,
    BagWriter,
    TopicQos,
    is_hidden,
    message_class,
    replay_qos,
    select_topics,
)
from dfocus_capture.dds import apply_default_profile
from dfocus_capture.params import ParamSpec, declare_params

PARAMS = [
    ParamSpec("output", "", "bag folder to create; empty: rosbag2_<date>-<time> in the working directory",
              read_only=True),
    ParamSpec("storage", "mcap", "storage plugin", choices=STORAGES, read_only=True),
    ParamSpec("topics", list(DEFAULT_TOPICS), "topic patterns to record (fnmatch, relative to the namespace)",
              read_only=True),
    ParamSpec("all", False, "record every non-hidden topic instead of `topics`", read_only=True),
    ParamSpec("discovery_period_s", 0.25, "how often to look for new matching topics", min=0.02, max=10.0),
    ParamSpec("max_duration_s", 0.0, "stop after this many seconds (0: until shut down)", min=0.0, max=1e6,
              read_only=True),
]


# After a stop (Ctrl-C, SIGTERM, max_duration_s), what had already arrived is written for at most this long.
DRAIN_LIMIT_S = 1.0


def to_profile(q: TopicQos) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=q.depth,
        reliability=ReliabilityPolicy.RELIABLE if q.reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if q.transient_local else DurabilityPolicy.VOLATILE,
    )


def offered_qos(profile: Any) -> TopicQos:
    return TopicQos(
        reliable=profile.reliability != ReliabilityPolicy.BEST_EFFORT,
        transient_local=profile.durability == DurabilityPolicy.TRANSIENT_LOCAL,
        depth=max(1, int(profile.depth)),
    )


class BagRecorder(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("bag_recorder", **kwargs)
        self.params = declare_params(self, PARAMS, self._on_change)
        out = self.params["output"] or time.strftime("rosbag2_%Y_%m_%d-%H_%M_%S")
        self.writer = BagWriter(Path(out).expanduser().resolve(), self.params["storage"])
        self.done = False
        self.closed = False
        self._subs: dict[str, Any] = {}
        self._refused: set[str] = set()
        self._timer = self.create_timer(self.params["discovery_period_s"], self._discover)
        if self.params["max_duration_s"] > 0:
            self._stop_timer = self.create_timer(self.params["max_duration_s"], self.stop)
        what = "all topics" if self.params["all"] else ", ".join(self.params["topics"])
        self.get_logger().info(f"recording {what} to {self.writer.path} ({self.params['storage']})")
        self._discover()

    def _on_change(self, changes: dict[str, Any]) -> str | None:
        if "discovery_period_s" in changes:
            self._timer.timer_period_ns = int(changes["discovery_period_s"] * 1e9)
        return None

    def _discover(self) -> None:
        types = dict(self.get_topic_names_and_types())
        if self.params["all"]:
            wanted = [t for t in types if not is_hidden(t)]
        else:
            wanted = select_topics(types, self.params["topics"], self.get_namespace())
        for topic in wanted:
            if topic not in self._subs and topic not in self._refused:
                self._subscribe(topic, types[topic][0])

    def _subscribe(self, topic: str, msgtype: str) -> None:
        pubs = self.get_publishers_info_by_topic(topic)
        if not pubs:
            return  # only subscribers so far: its QoS is unknown until a publisher appears
        offered = [offered_qos(p.qos_profile) for p in pubs]
        try:
            self.writer.add_topic(topic, msgtype, offered)
            cls = message_class(msgtype)
        except BagError as exc:
            self._refused.add(topic)
            self.get_logger().warning(f"not recording {topic}: {exc}")
            return
        # Compatible with every publisher; a deeper queue than theirs so bursts are not dropped here.
        qos = to_profile(replay_qos(offered))
        qos.depth = max(10, qos.depth)
        self._subs[topic] = self.create_subscription(
            cls, topic, lambda data, t=topic: self._write(t, data), qos, raw=True
        )
        self.get_logger().info(f"subscribed {topic} [{msgtype}]")

    def _write(self, topic: str, data: bytes) -> None:
        if self.closed:
            return
        self.writer.write(topic, self.get_clock().now().nanoseconds, data)
        if self.writer.counts[topic] == 1:
            self.get_logger().info(f"first message on {topic}")

    def stop(self) -> None:
        self.done = True

    def drain(self, executor: Executor) -> None:
        """Write what has arrived but not been taken yet: until spins stop bringing messages (a
        spin may run a timer instead, hence a few idle ones), for at most DRAIN_LIMIT_S: a topic
        that streams without pause (the 400 Hz IMU) would otherwise keep the recorder going."""
        idle = 0
        deadline = time.monotonic() + DRAIN_LIMIT_S
        while idle < 3 and time.monotonic() < deadline:
            before = sum(self.writer.counts.values())
            executor.spin_once(timeout_sec=0.05)
            idle = idle + 1 if sum(self.writer.counts.values()) == before else 0

    def close(self) -> None:
        self.closed = True
        self.writer.close()
        counts = ", ".join(f"{t}: {n}" for t, n in self.writer.counts.items()) or "nothing"
        self.get_logger().info(f"closed {self.writer.path} ({counts})")


def main(args: list[str] | None = None) -> int:
    apply_default_profile()
    # Own signal handling: on Ctrl-C / SIGTERM the messages already delivered are still written
    # before the bag is closed (rclpy's handler would shut the context down first).
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = BagRecorder()
    except (BagError, ValueError) as exc:
        rclpy.logging.get_logger("bag_recorder").error(str(exc))
        rclpy.try_shutdown()
        return 1
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: node.stop())
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok() and not node.done:
            executor.spin_once(timeout_sec=0.1)
        node.drain(executor)
    finally:
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
