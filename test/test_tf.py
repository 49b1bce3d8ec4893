"""TF from the array_tf node, read from another process as tf2 reads it: the static set on
/tf_static (a late joiner gets it), a point of the depth cloud placed in base_link where the
calibration and the mount say, the stage's displacement on /tf as the actuators move it, and the
mount changed at run time (a refused frame id, then an accepted one)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from dfocus_capture.calibration import load_calibration
from dfocus_capture.frames import ARRAY_FRAME, BODY_FROM_OPTICAL, IMU_FRAME, MOUNT_FRAME, Edge, compose, optical_frame
from dfocus_capture.ros_convert import transform_to_matrix
from dfocus_depth.pointcloud import pointcloud2_msg, read_points

CAL = load_calibration(Path(__file__).resolve().parents[1] / "config" / "camera_array.yaml")
NS = "/tftest"
# tf2_msgs/msg/TFMessage's type hash in ROS 2 (the same in every distro since Iron).
TF_MESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


class TfListener:
    """What a tf2 buffer would hold: the latest static set and the latest stage transform."""

    def __init__(self, node: Any) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        from tf2_msgs.msg import TFMessage

        self.lock = threading.Lock()
        self.static: dict[str, Edge] = {}
        self.dynamic: dict[str, Edge] = {}
        self.static_messages = 0
        node.create_subscription(TFMessage, "/tf_static", self._on_static, QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        node.create_subscription(TFMessage, "/tf", self._on_tf, QoSProfile(
            depth=100, reliability=ReliabilityPolicy.RELIABLE))

    @staticmethod
    def _edges(msg: Any) -> dict[str, Edge]:
        return {t.child_frame_id: Edge(t.header.frame_id, t.child_frame_id, transform_to_matrix(t.transform))
                for t in msg.transforms}

    def _on_static(self, msg: Any) -> None:
        with self.lock:
            self.static = self._edges(msg)  # one message holds the whole set (tf2's static broadcaster)
            self.static_messages += 1

    def _on_tf(self, msg: Any) -> None:
        with self.lock:
            self.dynamic.update(self._edges(msg))

    def tree(self) -> list[Edge]:
        with self.lock:
            return [*self.static.values(), *self.dynamic.values()]


def test_array_tf_places_the_cloud_and_follows_the_stage(rclpy_context, spin, node_processes, wait) -> None:
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.node import Node

    from dfocus_interfaces.srv import MoveActuators

    common = ["--ros-args", "-r", f"__ns:={NS}"]
    node_processes.python("dfocus_capture.actuators_node", *common, name="actuators")
    tf_proc = node_processes.python("dfocus_capture.array_tf_node", *common, "-p", "mount_xyz:=[0.2, 0.0, 0.3]",
                                    "-p", "mount_rpy:=[0.0, 0.0, 1.5707963267948966]", name="array_tf")
    node = Node("tf_probe", namespace=NS, context=rclpy_context)
    spin(node)
    # Join late: the static set must still arrive (transient local).
    wait(lambda: bool(node.get_publishers_info_by_topic("/tf_static")) or tf_proc.poll() is not None, 30.0,
         "array_tf's /tf_static publisher")
    assert tf_proc.poll() is None, node_processes.output(tf_proc)
    info = node.get_publishers_info_by_topic("/tf_static")[0]
    assert str(info.topic_type_hash) == TF_MESSAGE_HASH
    tf = TfListener(node)
    cams = {optical_frame(c.name) for c in CAL.cameras}
    wait(lambda: set(tf.static) >= {MOUNT_FRAME, IMU_FRAME, *cams} and ARRAY_FRAME in tf.dynamic, 30.0,
         "the static set and the stage transform")

    # A point of the depth cloud (frame: the reference optical frame) lands where calibration and
    # mount put it: 0.2 m ahead and 0.3 m above base_link, the array turned to look along +y.
    K = np.asarray(CAL.reference.K)
    depth = np.full((CAL.reference.height, CAL.reference.width), 2.0, np.float32)
    u, v = 1000, 200
    depth[v, u] = 1.25
    from std_msgs.msg import Header

    cloud = read_points(pointcloud2_msg(depth, K, np.zeros((*depth.shape, 3), np.uint8),
                                        Header(frame_id=optical_frame(CAL.reference_camera))))
    point = np.array([cloud[v, u][k] for k in ("x", "y", "z")], dtype=float)
    ray = np.linalg.inv(K) @ [u, v, 1.0] * 1.25
    np.testing.assert_allclose(point, ray, rtol=1e-6)
    in_base = compose(tf.tree(), "base_link", optical_frame(CAL.reference_camera)) @ [*point, 1.0]
    body = BODY_FROM_OPTICAL @ ray
    expected = np.array([0.2 - body[1], body[0], 0.3 + body[2]])  # yaw 90 degrees: x -> y, y -> -x
    np.testing.assert_allclose(in_base[:3], expected, atol=2e-6)
    # and another camera's view of the same point is the calibration's
    cam3 = CAL.cameras[3]
    np.testing.assert_allclose(compose(tf.tree(), optical_frame(cam3.name), optical_frame(CAL.reference_camera))
                               @ [*point, 1.0], np.linalg.inv(cam3.T_ref_cam) @ [*point, 1.0], atol=1e-9)

    # The stage moves the array: +0.8 mm along its x (right) is 0.8 mm toward body -y.
    move = node.create_client(MoveActuators, "actuators/move")
    assert move.wait_for_service(timeout_sec=30.0), "actuators/move"
    reply = move.call(MoveActuators.Request(target_mm=[0.8, 0.0], timeout_s=10.0))
    assert reply.success, reply.message

    def stage_y() -> float:
        with tf.lock:
            edge = tf.dynamic.get(ARRAY_FRAME)
        return float(edge.matrix[1, 3]) if edge else 0.0

    wait(lambda: abs(stage_y() + 0.0008) < 2e-6, 30.0, "the stage transform at -0.8 mm")

    # The mount changes at run time: a frame tf2 refuses is refused; an accepted one is republished.
    setter = node.create_client(SetParameters, f"{NS}/array_tf/set_parameters")
    assert setter.wait_for_service(timeout_sec=30.0), "array_tf's set_parameters"

    def set_parent(name: str) -> Any:
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=name)
        return setter.call(SetParameters.Request(parameters=[ParameterMsg(name="parent_frame", value=value)]))

    refused = set_parent("/base_link").results[0]
    assert not refused.successful and "leading '/'" in refused.reason
    seen = tf.static_messages
    assert set_parent("robot_mount").results[0].successful
    wait(lambda: tf.static_messages > seen and tf.static[MOUNT_FRAME].parent == "robot_mount", 30.0,
         "the static set under robot_mount")
    assert tf_proc.poll() is None, node_processes.output(tf_proc)
