"""The depth node in its own process: a FocusSequence in yields depth, confidence, camera_info (one
header) and an organized point cloud here; malformed sequences are logged and the node keeps
serving; export_model writes only under its output folder."""

from __future__ import annotations

import math
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dfocus_capture.qos import LATCHED
from dfocus_capture.ros_convert import burst_to_msg, msg_to_image
from dfocus_depth.dataset import render_sample, subset_burst
from dfocus_depth.mesh import read_ply
from dfocus_depth.pointcloud import read_points

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def sample() -> Any:
    return render_sample(5_200_000, 96, 72)


def _sequence(sample: Any, cams: list[int], seq_id: int) -> Any:
    burst = subset_burst(sample.burst, cams)
    burst.sequence_id, burst.stamp_ns = seq_id, 1_700_000_000_000_000_000 + seq_id
    return burst_to_msg(burst)


def test_sequence_to_depth_across_processes(rclpy_context: Any, spin: Any, node_processes: Any, wait: Any,
                                            sample: Any, tmp_path: Path) -> None:
    from rclpy.node import Node

    from dfocus_interfaces.msg import FocusSequence
    from dfocus_interfaces.srv import ExportModel

    proc = node_processes.python(
        "dfocus_depth.depth_node", "--ros-args", "-r", "__ns:=/test", "-p", "max_width:=96",
        "-p", f"output_dir:={tmp_path / 'exports'}", "-p", "confidence_threshold:=0.0",
        "-p", "max_frame_megapixels:=0.008", name="depth")  # 96x72 frames pass, 128x96 ones are oversized
    node = Node("depth_test", namespace="/test", context=rclpy_context)
    got: dict[str, Any] = {}
    lock = threading.Lock()

    def keep(key: str) -> Any:
        def cb(msg: Any) -> None:
            with lock:
                got[key] = msg
        return cb

    node.create_subscription(Image, "depth/image", keep("depth"), LATCHED)
    node.create_subscription(Image, "depth/confidence", keep("conf"), LATCHED)
    node.create_subscription(CameraInfo, "depth/camera_info", keep("info"), LATCHED)
    node.create_subscription(PointCloud2, "depth/points", keep("points"), LATCHED)
    pub = node.create_publisher(FocusSequence, "capture/sequence", LATCHED)
    export = node.create_client(ExportModel, "depth/export_model")
    spin(node)
    wait(lambda: pub.get_subscription_count() > 0, 20.0, "the depth node to subscribe")

    def log_has(text: str) -> bool:
        return text in node_processes.output(proc)

    # Malformed sequences: each is rejected with a reason in the node's log, and the node lives on.
    one_cam = _sequence(sample, [0], 11)
    nan_pose = _sequence(sample, [0, 1, 2], 12)
    nan_pose.frames[1].pose.position.x = math.nan
    no_info = _sequence(sample, [0, 1, 2], 13)
    no_info.frames[2].camera_info = CameraInfo()
    wrong_size = _sequence(sample, [0, 1, 2], 14)
    wrong_size.frames[1].image = _sequence(render_sample(5_200_001, 64, 48), [0], 0).frames[0].image
    oversized = _sequence(render_sample(5_200_002, 128, 96), [0, 1, 2], 16)
    for msg, reason in [(one_cam, "at least two views"), (nan_pose, "NaN"), (no_info, "camera_info is empty"),
                        (wrong_size, "does not match its camera_info"),
                        (oversized, "frame 0 is 128x96 (0.0123 MP), above the 0.008 MP per frame")]:
        pub.publish(msg)
        wait(lambda reason=reason: log_has(reason), 20.0, f"the node to log {reason!r}")
        assert proc.poll() is None, node_processes.output(proc)
    assert "rejected" in node_processes.output(proc)
    with lock:
        assert not got  # nothing published for bad input

    # A good sequence still produces depth (also right after an oversized one).
    good = _sequence(sample, [0, 1, 2, 3], 15)
    pub.publish(good)
    wait(lambda: len(got) == 4, 60.0, "depth, confidence, camera_info and points")
    with lock:
        depth_msg, conf_msg, info, points = got["depth"], got["conf"], got["info"], got["points"]
    for m in (depth_msg, conf_msg, info, points):
        assert m.header == good.header  # the sequence's stamp, the reference optical frame
    assert depth_msg.encoding == "32FC1" and conf_msg.encoding == "32FC1"
    depth, gt = msg_to_image(depth_msg), sample.gt_depth
    ok = np.isfinite(depth)
    assert depth.shape == gt.shape and ok.mean() > 0.9
    assert np.median(np.abs(depth[ok] - gt[ok]) / gt[ok]) < 0.25  # metres, the right scene (untrained: ~0.7)
    assert (info.width, info.height) == (96, 72) and np.allclose(info.k, good.frames[0].camera_info.k)
    pts = read_points(points)
    assert pts.shape == depth.shape
    assert np.allclose(pts["z"][ok], depth[ok]) and np.all(np.isnan(pts["z"][~ok]))

    # Export: a path out of the folder is refused with a reason, a relative one is written.
    assert export.wait_for_service(timeout_sec=10.0)

    def call(name: str, fmt: int) -> Any:
        req = ExportModel.Request(filename=name, format=fmt, sequence_id=0)
        future = export.call_async(req)
        wait(future.done, 30.0, f"export_model({name!r})")
        return future.result()

    refused = call("../outside.ply", ExportModel.Request.FORMAT_PLY_MESH)
    assert not refused.success and ".." in refused.message
    assert not (tmp_path / "outside.ply").exists()
    done = call("scene/mesh.ply", ExportModel.Request.FORMAT_PLY_MESH)
    assert done.success, done.message
    mesh = read_ply(Path(done.path))
    assert Path(done.path).is_relative_to(tmp_path / "exports")
    assert len(mesh.faces) == done.num_faces > 0 and len(mesh.vertices) == done.num_vertices
    assert proc.poll() is None
    print(node_processes.output(proc)[-2000:], file=sys.stderr)


def test_adapt_action_fine_tunes_reports_progress_and_refuses_bad_goals(
        rclpy_context: Any, spin: Any, node_processes: Any, wait: Any, sample: Any, tmp_path: Path) -> None:
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient
    from rclpy.node import Node

    from dfocus_capture.drivers.folder import write_burst_folder
    from dfocus_interfaces.action import AdaptDepth

    folder = tmp_path / "burst"
    write_burst_folder(subset_burst(sample.burst, [0, 1, 2]), folder)
    proc = node_processes.python(
        "dfocus_depth.depth_node", "--ros-args", "-r", "__ns:=/test", "-p", "max_width:=64",
        "-p", f"output_dir:={tmp_path / 'exports'}", name="depth")
    node = Node("adapt_test", namespace="/test", context=rclpy_context)
    client = ActionClient(node, AdaptDepth, "depth/adapt")
    spin(node)
    feedback: list[Any] = []

    def run(goal: Any, cancel_after_feedback: bool = False) -> Any:
        sent = client.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
        wait(sent.done, 30.0, "the adapt goal's response")
        handle = sent.result()
        if cancel_after_feedback:
            wait(lambda: bool(feedback), 60.0, "adapt feedback")
            handle.cancel_goal_async()
        result = handle.get_result_async()
        wait(result.done, 120.0, "the adapt goal's result")
        return result.result()

    try:
        wait(lambda: client.wait_for_server(timeout_sec=0.1), 30.0, "the depth/adapt action server")
        # The graph reports a server before DDS has matched every endpoint: probe with a goal the
        # node refuses at once until one makes the whole trip.
        for _ in range(10):
            try:
                probe = run(AdaptDepth.Goal(inputs=[str(folder)], output="probe", steps=0))
                break
            except AssertionError:
                continue
        assert probe.status == GoalStatus.STATUS_ABORTED and "steps must be" in probe.result.message

        missing = run(AdaptDepth.Goal(inputs=[str(tmp_path / "nowhere")], output="x", steps=3))
        assert missing.status == GoalStatus.STATUS_ABORTED and "neither a rosbag2" in missing.result.message
        outside = run(AdaptDepth.Goal(inputs=[str(folder)], output="../escape", steps=3))
        assert outside.status == GoalStatus.STATUS_ABORTED and ".." in outside.result.message
        assert not (tmp_path / "escape.pt").exists()

        done = run(AdaptDepth.Goal(inputs=[str(folder)], output="rig/adapted", steps=4, learning_rate=1e-3))
        assert done.status == GoalStatus.STATUS_SUCCEEDED, done.result.message
        assert Path(done.result.weights_path) == (tmp_path / "exports" / "rig" / "adapted.pt").resolve()
        assert Path(done.result.weights_path).is_file() and done.result.steps_done == 4
        assert [fb.step for fb in feedback] == [1, 2, 3, 4] and all(fb.steps == 4 for fb in feedback)
        wait(lambda: "depth maps now use the weights" in node_processes.output(proc), 20.0, "the switch logged")

        feedback.clear()
        canceled = run(AdaptDepth.Goal(inputs=[str(folder)], output="long", steps=5000), cancel_after_feedback=True)
        assert canceled.status == GoalStatus.STATUS_CANCELED and "canceled" in canceled.result.message
        assert proc.poll() is None
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{node_processes.output(proc)[-3000:]}") from None


def test_node_defaults_are_the_estimators_and_the_shipped_config() -> None:
    """The benchmarks and the refocus evaluation score DepthEstimator's defaults as 'the depth node':
    the node's declared defaults and config/depth.yaml must be those same settings."""
    import inspect

    import yaml

    from dfocus_capture.dds import find_config
    from dfocus_depth.depth_node import PARAMS
    from dfocus_depth.estimator import DepthEstimator

    declared = {spec.name: spec.default for spec in PARAMS}
    path = find_config("depth.yaml")
    assert path is not None
    shipped = yaml.safe_load(path.read_text())["/**/depth"]["ros__parameters"]
    ctor = inspect.signature(DepthEstimator).parameters
    for param, arg in (("max_width", "max_width"), ("cross_check", "cross_check"), ("edge_median", "edge_median"),
                       ("census_refine", "census_refine"), ("refine", "refine"),
                       ("fill_below_confidence", "fill_below"), ("max_views", "max_sources")):
        assert declared[param] == ctor[arg].default == shipped[param], param
