"""Foxglove channel descriptions for ROS 2 topics forwarded as raw CDR.

Foxglove renders sensor_msgs/Image, CameraInfo and PointCloud2 natively when a channel carries the
`ros2msg` schema (the full .msg text with its dependencies, the same text rosbag2 stores in mcap)
and `cdr` message encoding, so the bridge forwards the middleware's bytes untouched: no conversion
cost, and the custom dfocus types are readable too.
"""

from __future__ import annotations

from dataclasses import dataclass

from rosbags.typesys.store import Typestore

from dfocus_capture.bag import make_typestore

# What the bridge forwards by default (relative to its namespace): every image, depth product and
# point cloud of the graph; not capture/sequence (tens of MB per burst, nothing to draw).
DEFAULT_TOPICS = (
    "cam*/image_raw",
    "cam*/camera_info",
    "depth/image",
    "depth/confidence",
    "depth/camera_info",
    "depth/points",
    "refocus/image",
    "refocus/preview",
    "refocus/all_in_focus",
    "/tf",
    "/tf_static",
)


class SchemaError(ValueError):
    """A topic's message type has no definition the bridge can describe."""


@dataclass(frozen=True)
class ChannelSpec:
    topic: str
    schema_name: str
    schema_encoding: str
    schema_data: bytes
    message_encoding: str = "cdr"


class SchemaCatalog:
    def __init__(self, typestore: Typestore | None = None) -> None:
        self.typestore = typestore or make_typestore()
        self._cache: dict[str, ChannelSpec] = {}

    def channel(self, topic: str, msgtype: str) -> ChannelSpec:
        """The channel for `topic` carrying `msgtype` (e.g. sensor_msgs/msg/Image)."""
        if msgtype not in self.typestore.fielddefs:
            raise SchemaError(f"{topic}: no message definition for {msgtype}")
        if msgtype not in self._cache:
            text, _ = self.typestore.generate_msgdef(msgtype, ros_version=2)
            self._cache[msgtype] = ChannelSpec("", msgtype, "ros2msg", text.encode())
        spec = self._cache[msgtype]
        return ChannelSpec(topic, spec.schema_name, spec.schema_encoding, spec.schema_data)
