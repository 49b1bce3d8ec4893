"""foxglove_bridge: serves the graph's images, depth, confidence, point clouds, preview and refocused
images to Foxglove over WebSocket (foxglove-sdk, bound to 127.0.0.1 by default).

Matching topics are picked up as their publishers appear, subscribed with QoS compatible with
every publisher, and forwarded as raw CDR with their ros2msg schema (see foxglove_schema). The SDK
only sends a channel's messages to clients that subscribed to it, so idle topics cost nothing but
the DDS subscription.
"""

from __future__ import annotations

from typing import Any

import foxglove
from rclpy.node import Node

from dfocus_bringup.foxglove_schema import DEFAULT_TOPICS, SchemaCatalog, SchemaError
from dfocus_capture.bag import BagError, message_class, replay_qos, select_topics
from dfocus_capture.bag_recorder_node import offered_qos, to_profile
from dfocus_capture.node_main import run_node
from dfocus_capture.params import ParamSpec, declare_params

PARAMS = [
    ParamSpec("host", "127.0.0.1", "address to listen on (0.0.0.0 exposes the graph to the network)",
              read_only=True),
    ParamSpec("port", 8765, "WebSocket port (0: any free port, logged at start)", min=0, max=65535, read_only=True),
    ParamSpec("topics", list(DEFAULT_TOPICS), "topic patterns to forward (fnmatch, relative to the namespace)",
              read_only=True),
    ParamSpec("discovery_period_s", 0.5, "how often to look for new matching topics", min=0.05, max=10.0,
              read_only=True),
]


class FoxgloveBridge(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("foxglove_bridge", **kwargs)
        self.params = declare_params(self, PARAMS)
        self.catalog = SchemaCatalog()
        self.fox_context = foxglove.Context()
        self.server = foxglove.start_server(
            name="dfocus", host=self.params["host"], port=self.params["port"], context=self.fox_context
        )
        self.channels: dict[str, foxglove.Channel] = {}
        self._subs: dict[str, Any] = {}
        self._refused: set[str] = set()
        self.get_logger().info(f"Foxglove WebSocket server on ws://{self.params['host']}:{self.server.port}")
        self.create_timer(self.params["discovery_period_s"], self._discover)
        self._discover()

    def _discover(self) -> None:
        types = dict(self.get_topic_names_and_types())
        for topic in select_topics(types, self.params["topics"], self.get_namespace()):
            if topic not in self._subs and topic not in self._refused:
                self._forward(topic, types[topic][0])

    def _forward(self, topic: str, msgtype: str) -> None:
        pubs = self.get_publishers_info_by_topic(topic)
        if not pubs:
            return
        try:
            spec = self.catalog.channel(topic, msgtype)
            cls = message_class(msgtype)
        except (SchemaError, BagError) as exc:
            self._refused.add(topic)
            self.get_logger().warning(f"not forwarding {topic}: {exc}")
            return
        channel = foxglove.Channel(
            topic,
            message_encoding=spec.message_encoding,
            schema=foxglove.Schema(name=spec.schema_name, encoding=spec.schema_encoding, data=spec.schema_data),
            context=self.fox_context,
        )
        self.channels[topic] = channel
        qos = to_profile(replay_qos(offered_qos(p.qos_profile) for p in pubs))
        self._subs[topic] = self.create_subscription(
            cls, topic, lambda data, c=channel: c.log(data, log_time=self.get_clock().now().nanoseconds), qos,
            raw=True,
        )
        self.get_logger().info(f"forwarding {topic} [{msgtype}]")

    def close(self) -> None:
        self.server.stop()


def main(args: list[str] | None = None) -> int:
    return run_node("foxglove_bridge", FoxgloveBridge, args, num_threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
