"""The camera_array node in its own process: every camera's image and camera_info arrive with one
shared stamp per trigger; the trigger service sets focus, reports it, refuses bad requests and
reports a camera that stopped delivering, while the node keeps serving."""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from typing import Any

import pytest
from sensor_msgs.msg import CameraInfo, Image

from dfocus_capture.qos import SENSOR
from dfocus_capture.ros_convert import msg_to_image, stamp_to_ns
from dfocus_interfaces.srv import TriggerCameras

pytestmark = pytest.mark.ros
N = 5


def _start(node_processes: Any, **params: object) -> Any:
    args = ["--ros-args", "-r", "__ns:=/test", "-p", "width:=160", "-p", "height:=120", "-p", "noise:=false"]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    return node_processes.python("dfocus_capture.camera_array_node", *args, name="camera_array")


class Collector:
    def __init__(self, node: Any) -> None:
        self.lock = threading.Lock()
        self.images: dict[int, set[int]] = defaultdict(set)  # stamp -> cameras
        self.infos: dict[int, set[int]] = defaultdict(set)
        self.shapes: set[tuple[int, ...]] = set()
        for i in range(N):
            node.create_subscription(Image, f"cam{i}/image_raw", lambda m, i=i: self._image(i, m), SENSOR)
            node.create_subscription(CameraInfo, f"cam{i}/camera_info", lambda m, i=i: self._info(i, m), SENSOR)

    def _image(self, cam: int, msg: Image) -> None:
        with self.lock:
            self.images[stamp_to_ns(msg.header.stamp)].add(cam)
            self.shapes.add(msg_to_image(msg).shape)

    def _info(self, cam: int, msg: CameraInfo) -> None:
        with self.lock:
            self.infos[stamp_to_ns(msg.header.stamp)].add(cam)

    def complete(self) -> list[int]:
        with self.lock:
            return sorted(s for s, cams in self.images.items() if len(cams) == N and len(self.infos[s]) == N)


def _call(node: Any, client: Any, wait: Any, focus: list[float]) -> Any:
    future = client.call_async(TriggerCameras.Request(focus_distances_m=focus))
    wait(future.done, 20.0, "the trigger service response")
    return future.result()


def test_free_running_sets_share_one_stamp_per_trigger(rclpy_context, spin, node_processes, wait) -> None:
    proc = _start(node_processes, rate_hz=4.0)
    import rclpy

    node = rclpy.create_node("listener", namespace="/test", context=rclpy_context)
    got = Collector(node)
    spin(node)
    wait(lambda: len(got.complete()) >= 3 or proc.poll() is not None, 30.0, "3 complete camera sets")
    assert proc.poll() is None, node_processes.output(proc)
    stamps = got.complete()
    assert got.shapes == {(120, 160, 3)}
    # Every stamp belongs to one trigger of all cameras: no camera stamped on its own.
    with got.lock:
        partial = [s for s in got.images if s < stamps[-1] and len(got.images[s]) not in (0, N)]
    assert len(partial) <= 1  # best-effort transport may drop a frame, never split a stamp
    assert all(b - a >= 50_000_000 for a, b in zip(stamps, stamps[1:], strict=False))  # ~4 Hz, distinct


def test_trigger_service_focus_errors_and_faults(rclpy_context, spin, node_processes, wait) -> None:
    proc = _start(node_processes, rate_hz=0.0, fail_camera=2, fail_after=2)
    import rclpy

    node = rclpy.create_node("caller", namespace="/test", context=rclpy_context)
    got = Collector(node)
    client = node.create_client(TriggerCameras, "trigger")
    spin(node)
    wait(lambda: client.service_is_ready() or proc.poll() is not None, 30.0, "the trigger service")
    assert proc.poll() is None, node_processes.output(proc)

    focus = [0.5, 0.7, 1.0, 2.0, 4.0]
    res = _call(node, client, wait, focus)
    assert res.success, res.message
    assert [round(f, 4) for f in res.focus_distances_m] == focus
    stamp = stamp_to_ns(res.stamp)
    wait(lambda: stamp in got.complete(), 10.0, "the triggered set on all cameras")

    bad = _call(node, client, wait, [1.0, 2.0])
    assert not bad.success and "2 focus distances for 5 cameras" in bad.message
    nan = _call(node, client, wait, [1.0, 1.0, math.nan, 1.0, 1.0])
    assert not nan.success and "positive" in nan.message

    kept = _call(node, client, wait, [])  # keep focus; 2nd trigger: camera 2 still delivers
    assert kept.success and [round(f, 4) for f in kept.focus_distances_m] == focus
    broken = _call(node, client, wait, [])  # 3rd trigger: camera 2 has stopped
    assert not broken.success and "cam2" in broken.message
    broken_stamp = stamp_to_ns(broken.stamp)
    wait(lambda: len(got.images.get(broken_stamp, ())) == N - 1, 10.0, "the 4 images of the broken set")
    assert proc.poll() is None  # still serving


def test_absent_v4l2_devices_stop_the_node_with_a_reason(node_processes, wait) -> None:
    proc = _start(node_processes, backend="v4l2", devices="/dev/video91,/dev/video92,/dev/video93,/dev/video94,"
                  "/dev/video95")
    wait(lambda: proc.poll() is not None, 30.0, "the node to exit")
    assert proc.returncode == 1
    assert "/dev/video91 is absent" in node_processes.output(proc)


def test_a_failed_publish_is_logged_and_later_sets_still_arrive(rclpy_context, spin, wait) -> None:
    import rclpy
    from rclpy.parameter import Parameter

    from dfocus_capture.camera_array_node import CameraArrayNode

    overrides = [Parameter("width", value=160), Parameter("height", value=120), Parameter("noise", value=False),
                 Parameter("rate_hz", value=0.0), Parameter("follow_actuators", value=False)]
    cam = CameraArrayNode(context=rclpy_context, namespace="/test", parameter_overrides=overrides)
    pub = cam._image_pubs[1]
    real_publish, failures = pub.publish, []

    def publish_failing_once(msg: Image) -> None:
        if not failures:
            failures.append(msg.header.stamp)
            raise RuntimeError("transport refused the message")
        real_publish(msg)

    pub.publish = publish_failing_once  # type: ignore[method-assign]
    node = rclpy.create_node("listener", namespace="/test", context=rclpy_context)
    got = Collector(node)
    client = node.create_client(TriggerCameras, "trigger")
    spin(cam, node)
    wait(lambda: client.wait_for_service(timeout_sec=0.1), 10.0, "the trigger service")
    for _ in range(3):
        assert _call(node, client, wait, []).success
    # The first set lost camera 1 to the failed publish; the delivery thread lived on for the others.
    wait(lambda: len(got.complete()) >= 2, 20.0, "2 complete sets after the failed publish")
    assert len(failures) == 1


def test_a_failed_free_running_frame_is_logged_and_free_running_goes_on(rclpy_context, spin, wait) -> None:
    import rclpy
    from rclpy.parameter import Parameter

    from dfocus_capture.camera_array_node import CameraArrayNode

    overrides = [Parameter("width", value=160), Parameter("height", value=120), Parameter("noise", value=False),
                 Parameter("rate_hz", value=5.0), Parameter("follow_actuators", value=False)]
    cam = CameraArrayNode(context=rclpy_context, namespace="/test", parameter_overrides=overrides)
    real_expose, failures = cam.driver.expose, []

    def expose_failing_once(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise RuntimeError("sensor readout broke")  # not a DriverError: an unexpected failure
        return real_expose(*args, **kwargs)

    cam.driver.expose = expose_failing_once  # type: ignore[method-assign]
    node = rclpy.create_node("listener", namespace="/test", context=rclpy_context)
    got = Collector(node)
    spin(cam, node)
    wait(lambda: len(got.complete()) >= 2, 30.0, "2 complete free-running sets after the failed frame")
    assert failures == [1]
