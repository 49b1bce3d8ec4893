"""The replay regression workflow: record a live session's capture/sequence (and the depth it
produced) with bag_recorder, replay only the sequence with bag_player (/clock, use_sim_time) into a
fresh depth node, and get the same depth map as live. Needs dfocus_depth.depth_node: this test
fails, not skips, while that node is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dfocus_capture.bag import BagReader

pytestmark = pytest.mark.ros
NS = "/rr"
CALIBRATION = Path(__file__).resolve().parents[1] / "config" / "camera_array.yaml"

# A fronto-parallel textured plane at 1.2 m seen by the scaled array: each camera's view is the
# reference texture shifted by its disparity f*B/Z. Published once, latched, by its own process.
SOURCE = f"""
import numpy as np, rclpy
from scipy.ndimage import gaussian_filter, shift
from dfocus_capture.burst import burst_from_images
from dfocus_capture.calibration import load_calibration
from dfocus_capture.qos import LATCHED
from dfocus_capture.ros_convert import burst_to_msg
from dfocus_interfaces.msg import FocusSequence
cal = load_calibration({str(CALIBRATION)!r}).scaled(160, 120)
rng = np.random.default_rng(5)
tex = gaussian_filter(rng.random((120, 160, 3)), (1.5, 1.5, 0)) * 255
images = []
for shot in range(2):
    for cam in cal.cameras:
        t = cam.T_ref_cam[:3, 3]
        fx = cam.K[0, 0]
        images.append(np.clip(shift(tex, (-fx * t[1] / 1.2, -fx * t[0] / 1.2, 0), mode="reflect"), 0, 255)
                      .astype(np.uint8))
burst = burst_from_images(images, cal, sequence_id=7)
burst.stamp_ns = 1_700_000_000_123_000_000
rclpy.init()
node = rclpy.create_node("replay_source", namespace={NS!r})
pub = node.create_publisher(FocusSequence, "capture/sequence", LATCHED)
pub.publish(burst_to_msg(burst))
rclpy.spin(node)
"""


def _depth_listener(rclpy_context: Any, spin: Any, got: list[Any]) -> Any:
    import rclpy
    from sensor_msgs.msg import Image

    from dfocus_capture.qos import LATCHED

    node = rclpy.create_node(f"depth_listener_{len(got)}", context=rclpy_context)
    node.create_subscription(Image, f"{NS}/depth/image", got.append, LATCHED)
    spin(node)
    return node


def test_replayed_sequence_gives_the_live_depth(
    tmp_path: Path, node_processes: Any, wait: Any, rclpy_context: Any, spin: Any
) -> None:
    from dfocus_capture.ros_convert import msg_to_image, stamp_to_ns

    assert importlib.util.find_spec("dfocus_depth.depth_node") is not None, (
        "dfocus_depth.depth_node has not landed: the replay regression cannot run")
    depth_args = ("dfocus_depth.depth_node", "--ros-args", "-r", f"__ns:={NS}")

    # Live: source -> depth, recorded.
    bag = tmp_path / "live"
    source = node_processes.python(SOURCE, module=False, name="source")
    live_depth = node_processes.python(*depth_args, name="depth_live")
    recorder = node_processes.python(
        "dfocus_capture.bag_recorder_node", "--ros-args", "-r", f"__ns:={NS}", "-p", f"output:={bag}",
        "-p", "discovery_period_s:=0.1", "-p", "topics:=[capture/sequence, depth/image]", name="recorder")
    live: list[Any] = []
    _depth_listener(rclpy_context, spin, live)
    wait(lambda: bool(live) or live_depth.poll() is not None, 120, "the live depth map")
    assert live, node_processes.output(live_depth)
    # Each process discovers the others on its own schedule: stop only once both are on record.
    for topic in (f"{NS}/capture/sequence", f"{NS}/depth/image"):
        wait(lambda t=topic: f"first message on {t}" in node_processes.output(recorder), 15,
             f"the recorder to record {topic}")
    recorder.send_signal(2)
    assert recorder.wait(timeout=15) == 0, node_processes.output(recorder)
    for p in (source, live_depth):
        p.send_signal(2)
        p.wait(timeout=15)
    counts = {t.name: t.count for t in BagReader(bag).topics().values()}
    assert counts[f"{NS}/capture/sequence"] == 1 and counts[f"{NS}/depth/image"] == 1

    # Replay: only the sequence, into a fresh depth node on sim time.
    replay_depth = node_processes.python(*depth_args, "-p", "use_sim_time:=true", name="depth_replay")
    player = node_processes.python(
        "dfocus_capture.bag_player_node", "--ros-args", "-p", f"bag:={bag}", "-p", "clock:=true",
        "-p", "keep_alive:=true", "-p", f"topics:=[{NS}/capture/sequence]", name="player")
    replayed: list[Any] = []
    _depth_listener(rclpy_context, spin, replayed)
    wait(lambda: bool(replayed) or replay_depth.poll() is not None, 120, "the replayed depth map")
    assert replayed, node_processes.output(replay_depth) + node_processes.output(player)

    a, b = msg_to_image(live[0]), msg_to_image(replayed[0])
    assert stamp_to_ns(live[0].header.stamp) == stamp_to_ns(replayed[0].header.stamp) == 1_700_000_000_123_000_000
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert np.isfinite(a).mean() > 0.5, "the depth node produced mostly invalid depth"
