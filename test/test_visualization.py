"""Visualization: the rviz2 config and Foxglove layout name only topics the graph publishes, and the
Foxglove bridge, started as its own process, advertises the graph's image and point-cloud topics
over WebSocket (subprotocol foxglove.sdk.v1) and streams their CDR bytes to a subscribed client."""

from __future__ import annotations

import asyncio
import json
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dfocus_capture.calibration import load_calibration

CONFIG = Path(__file__).resolve().parents[1] / "config"
NS = "/dfocus"


def graph_topics() -> set[str]:
    """Every topic of the graph (DESIGN.md's table) for the shipped camera array."""
    cams = [c.name for c in load_calibration(CONFIG / "camera_array.yaml").cameras]
    rel = [f"{c}/{kind}" for c in cams for kind in ("image_raw", "camera_info")] + [
        "imu/data", "actuators/state", "capture/sequence", "depth/image", "depth/confidence", "depth/camera_info",
        "depth/points", "refocus/image", "refocus/preview", "refocus/all_in_focus", "refocus/focal_plane"]
    return {f"{NS}/{t}" for t in rel}


def _rviz_topics() -> list[str]:
    doc = yaml.safe_load((CONFIG / "dfocus.rviz").read_text())
    return [d["Topic"]["Value"] for d in doc["Visualization Manager"]["Displays"] if "Topic" in d]


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in _strings(k) + _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [obj] if isinstance(obj, str) else []


def test_rviz_and_foxglove_layout_name_graph_topics() -> None:
    topics = graph_topics()
    rviz = _rviz_topics()
    layout = [s for s in _strings(json.loads((CONFIG / "foxglove_layout.json").read_text())) if s.startswith("/")]
    assert len(rviz) >= 5 and len(layout) >= 5
    assert set(rviz) <= topics, set(rviz) - topics
    assert set(layout) <= topics, set(layout) - topics
    # Both show the same things: camera, depth, confidence, point cloud, refocused images.
    wanted = {f"{NS}/cam0/image_raw", f"{NS}/depth/image", f"{NS}/depth/confidence", f"{NS}/depth/points",
              f"{NS}/refocus/image", f"{NS}/refocus/preview", f"{NS}/refocus/all_in_focus"}
    assert wanted <= set(rviz) and wanted <= set(layout)


def test_default_forwarded_topics_cover_the_layout() -> None:
    from dfocus_bringup.foxglove_schema import DEFAULT_TOPICS, SchemaCatalog, SchemaError
    from dfocus_capture.bag import select_topics

    layout = {s for s in _strings(json.loads((CONFIG / "foxglove_layout.json").read_text())) if s.startswith("/")}
    assert set(select_topics(graph_topics(), DEFAULT_TOPICS, NS)) >= layout
    spec = SchemaCatalog().channel("/x", "sensor_msgs/msg/PointCloud2")
    assert spec.schema_encoding == "ros2msg" and b"PointField[] fields" in spec.schema_data
    assert b"MSG: sensor_msgs/PointField" in spec.schema_data
    with pytest.raises(SchemaError, match="no message definition"):
        SchemaCatalog().channel("/x", "nope/msg/Nope")


PUBLISHER = """
import time, numpy as np, rclpy
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header
from dfocus_capture.qos import SENSOR, LATCHED
from dfocus_capture.ros_convert import image_to_msg, ns_to_stamp
rclpy.init()
node = rclpy.create_node("viz_source", namespace="/dfocus")
img = node.create_publisher(__import__("sensor_msgs.msg").msg.Image, "cam0/image_raw", SENSOR)
pts = node.create_publisher(PointCloud2, "depth/points", LATCHED)
cloud = PointCloud2(header=Header(frame_id="cam0_optical_frame"), height=1, width=2, is_bigendian=False,
                    point_step=12, row_step=24, is_dense=True, data=np.arange(6, dtype=np.float32).tobytes(),
                    fields=[PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                            for i, n in enumerate("xyz")])
pts.publish(cloud)
frame = np.full((6, 8, 3), 77, np.uint8)
def tick():
    img.publish(image_to_msg(frame, "rgb8", Header(stamp=ns_to_stamp(time.time_ns()), frame_id="cam0_optical_frame")))
node.create_timer(0.05, tick)
rclpy.spin(node)
"""


async def _client(port: int) -> tuple[dict[str, dict[str, Any]], bytes]:
    """Connects, collects advertised channels until cam0 and points are there, subscribes to the
    image channel and returns its first message payload."""
    import aiohttp

    channels: dict[str, dict[str, Any]] = {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"ws://127.0.0.1:{port}", protocols=("foxglove.sdk.v1",)) as ws:
            assert ws.protocol == "foxglove.sdk.v1"
            subscribed = False
            while True:
                msg = await asyncio.wait_for(ws.receive(), timeout=15)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if data.get("op") == "advertise":
                        channels.update({c["topic"]: c for c in data["channels"]})
                    if not subscribed and {f"{NS}/cam0/image_raw", f"{NS}/depth/points"} <= set(channels):
                        sub = {"id": 1, "channelId": channels[f"{NS}/cam0/image_raw"]["id"]}
                        await ws.send_str(json.dumps({"op": "subscribe", "subscriptions": [sub]}))
                        subscribed = True
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    op, sub_id, _ = struct.unpack_from("<BIQ", msg.data)
                    if op == 1 and sub_id == 1:
                        return channels, bytes(msg.data[13:])
                else:
                    raise AssertionError(f"connection closed: {msg.type}")


@pytest.mark.ros
def test_bridge_advertises_and_streams(node_processes: Any, wait: Any) -> None:
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    source = node_processes.python(PUBLISHER, module=False, name="source")
    bridge = node_processes.python("dfocus_bringup.foxglove_bridge_node", "--ros-args", "-r", "__ns:=/dfocus",
                                   "-p", "port:=0", "-p", "discovery_period_s:=0.1", name="bridge")
    found: list[int] = []

    def port() -> bool:
        found[:] = [int(p) for p in re.findall(r"ws://127\.0\.0\.1:(\d+)", node_processes.output(bridge))]
        return bool(found) or bridge.poll() is not None

    wait(port, 20, "the bridge to listen")
    assert found, node_processes.output(bridge)
    channels, payload = asyncio.run(_client(found[0]))
    assert source.poll() is None
    image = channels[f"{NS}/cam0/image_raw"]
    assert (image["encoding"], image["schemaName"], image["schemaEncoding"]) == ("cdr", "sensor_msgs/msg/Image",
                                                                                  "ros2msg")
    assert channels[f"{NS}/depth/points"]["schemaName"] == "sensor_msgs/msg/PointCloud2"
    msg = deserialize_message(payload, Image)
    assert (msg.width, msg.height, msg.encoding) == (8, 6, "rgb8")
    assert np.all(np.frombuffer(msg.data, np.uint8) == 77)
