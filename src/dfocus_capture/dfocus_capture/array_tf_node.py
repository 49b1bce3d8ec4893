"""array_tf: the camera array's transform tree on TF (`frames` has the tree and its conventions).

Publishes, as tf2's broadcasters do:
- `/tf_static` (tf2_msgs/TFMessage; reliable, transient local, depth 1: the whole static set in
  one message, so a late joiner gets all of it): the mounting transform, the reference camera's
  optical frame, every other camera's optical frame from the calibration, `imu_link`;
- `/tf` (reliable, depth 100): `dfocus_array_mount` -> `dfocus_array_link`, the actuator stage's
  displacement, once per `actuators/state` sample with that sample's stamp. Without samples for
  `stage_hold_s` (no stage, a hand-held array, a stopped actuator node) the last known
  displacement (zero before any) is republished at `rate_hz`, stamped now, so the tree stays
  connected for lookups at the current time.

`parent_frame`, `mount_xyz` and `mount_rpy` can be changed at run time (a mount being aligned):
the static set is published again.
"""

from __future__ import annotations

from typing import Any

from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from dfocus_capture.calibration import ArrayCalibration, load_array_calibration
from dfocus_capture.frames import (
    DEFAULT_PARENT_FRAME,
    Edge,
    FrameError,
    mount_matrix,
    stage_edge,
    static_edges,
)
from dfocus_capture.node_main import run_node
from dfocus_capture.params import ParamSpec, declare_params
from dfocus_capture.qos import TRACK
from dfocus_capture.ros_convert import edge_to_transform, stamp_to_ns
from dfocus_interfaces.msg import ActuatorState
from tf2_msgs.msg import TFMessage

# tf2_ros' StaticBroadcasterQoS and DynamicBroadcasterQoS.
TF_STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)

PARAMS = [
    ParamSpec("calibration", "", "camera array calibration (YAML or Middlebury calib.txt); '' = the shipped "
              "config/camera_array.yaml", read_only=True),
    ParamSpec("parent_frame", DEFAULT_PARENT_FRAME, "frame the array is mounted on (REP 105: base_link)"),
    ParamSpec("mount_xyz", [0.0, 0.0, 0.0], "dfocus_array_mount's position in parent_frame, metres"),
    ParamSpec("mount_rpy", [0.0, 0.0, 0.0], "dfocus_array_mount's roll, pitch, yaw in parent_frame, radians "
              "(fixed axes, as URDF); zero: the cameras look along parent_frame's x"),
    ParamSpec("stage_hold_s", 0.5, "without actuators/state for this long, the last stage displacement is "
              "republished at rate_hz", min=0.05, max=60.0, read_only=True),
    ParamSpec("rate_hz", 10.0, "republish rate of the stage transform while no actuators/state arrives, Hz",
              min=0.5, max=100.0, read_only=True),
]
_MOUNT_KEYS = ("parent_frame", "mount_xyz", "mount_rpy")


class ArrayTfNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("array_tf", **kwargs)
        self.params = declare_params(self, PARAMS, on_change=self._check_mount)
        self.calibration: ArrayCalibration = load_array_calibration(self.params["calibration"])
        self._static_pub = self.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self._tf_pub = self.create_publisher(TFMessage, "/tf", TF_QOS)
        self._stage = stage_edge([0.0, 0.0, 0.0])  # the latest displacement, republished while silent
        self._last_state_ns: int | None = None
        self._static = self._static_edges(self.params)  # raises at start-up on a bad mount
        self._publish_static()
        self.add_post_set_parameters_callback(self._apply_mount)
        self.create_subscription(ActuatorState, "actuators/state", self._on_stage, TRACK)
        self.create_timer(1.0 / self.params["rate_hz"], self._hold_stage)
        self.get_logger().info(
            f"TF for {len(self.calibration.cameras)} cameras under {self.params['parent_frame']} "
            f"(mount {list(self.params['mount_xyz'])} m, rpy {list(self.params['mount_rpy'])} rad)")

    def _static_edges(self, p: dict[str, Any]) -> list[Edge]:
        return static_edges(self.calibration, p["parent_frame"], mount_matrix(p["mount_xyz"], p["mount_rpy"]))

    def _check_mount(self, changes: dict[str, Any]) -> str | None:
        if not any(k in changes for k in _MOUNT_KEYS):
            return None
        try:  # static_edges checks the frame id, mount_matrix the numbers
            self._static_edges({**self.params, **changes})
        except (FrameError, TypeError, ValueError) as exc:
            return str(exc)
        return None

    def _apply_mount(self, params: list[Parameter]) -> None:
        if any(p.name in _MOUNT_KEYS for p in params):
            self._static = self._static_edges(self.params)
            self._publish_static()
            self.get_logger().info(f"mount changed: static transforms published again under "
                                   f"{self.params['parent_frame']}")

    def _publish_static(self) -> None:
        now = self.get_clock().now().nanoseconds
        self._static_pub.publish(TFMessage(transforms=[edge_to_transform(e, now) for e in self._static]))

    def _on_stage(self, msg: ActuatorState) -> None:
        try:
            edge = stage_edge(msg.position_mm)
        except FrameError as exc:
            self.get_logger().warning(f"actuators/state ignored: {exc}", throttle_duration_sec=5.0)
            return
        self._stage = edge
        self._last_state_ns = self.get_clock().now().nanoseconds
        stamp = stamp_to_ns(msg.header.stamp) or self._last_state_ns
        self._tf_pub.publish(TFMessage(transforms=[edge_to_transform(edge, stamp)]))

    def _hold_stage(self) -> None:
        now = self.get_clock().now().nanoseconds
        if self._last_state_ns is not None and now - self._last_state_ns < self.params["stage_hold_s"] * 1e9:
            return
        self._tf_pub.publish(TFMessage(transforms=[edge_to_transform(self._stage, now)]))


def main(args: list[str] | None = None) -> int:
    return run_node("array_tf", ArrayTfNode, args, num_threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
