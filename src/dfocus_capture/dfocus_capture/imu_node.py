"""imu: simulated 6-axis IMU on the camera array, publishing `imu/data` (sensor_msgs/Imu).

Samples lie on a regular grid of `rate_hz` (the sensor's own clock) and are published in small
batches `latency_s` behind real time, as a driver reading a FIFO does; each reading is the
motion the cameras see: the hand tremor (when `hand_held`; seeded by `seed`, the same seed as the
camera simulator's, so both evaluate one motion) plus the actuator stage, followed on
`actuators/state`. Noise, biases, range and resolution are those of a consumer MEMS part
(parameters). No orientation is estimated (orientation_covariance[0] = -1, REP 145).

On real hardware a driver for the physical IMU that publishes sensor_msgs/Imu on `imu/data` in
frame `imu_link` (mounted at the reference camera, axes of its optical frame) replaces this node.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node
from sensor_msgs.msg import Imu

from dfocus_capture.hand_motion import HandTremor, TremorConfig
from dfocus_capture.imu_model import ImuNoiseConfig, ImuSimulator
from dfocus_capture.node_main import run_node
from dfocus_capture.params import ParamSpec, declare_params
from dfocus_capture.qos import SENSOR, TRACK
from dfocus_capture.ros_convert import add_actuator_state, ns_to_stamp
from dfocus_interfaces.msg import ActuatorState

_NOISE = ImuNoiseConfig()
PARAMS = [
    ParamSpec("rate_hz", 400.0, "sample rate, Hz", min=200.0, max=4000.0, read_only=True),
    ParamSpec("publish_rate_hz", 100.0, "batches per second (samples due are published together)", min=10.0,
              max=4000.0, read_only=True),
    ParamSpec("latency_s", 0.02, "samples are published this long after their stamp", min=0.0, max=1.0,
              read_only=True),
    ParamSpec("frame_id", "imu_link", "header.frame_id", read_only=True),
    ParamSpec("seed", 0, "seed of the hand tremor (same as the camera simulator's) and of the sensor errors",
              min=0, max=2**31 - 1, read_only=True),
    ParamSpec("hand_held", False, "the array is hand-held: add the hand tremor to the motion", read_only=True),
    ParamSpec("tremor_translation_rms_mm", 0.3, "hand tremor translation RMS, mm", min=0.0, max=10.0,
              read_only=True),
    ParamSpec("tremor_rotation_rms_mrad", 2.0, "hand tremor rotation RMS, mrad", min=0.0, max=50.0,
              read_only=True),
    ParamSpec("gyro_noise_density", _NOISE.gyro_noise_density, "gyro white noise, rad/s/sqrt(Hz)", min=0.0,
              max=1.0, read_only=True),
    ParamSpec("accel_noise_density", _NOISE.accel_noise_density, "accelerometer white noise, m/s^2/sqrt(Hz)",
              min=0.0, max=1.0, read_only=True),
    ParamSpec("gyro_bias_sigma", _NOISE.gyro_bias_sigma, "gyro turn-on bias spread, rad/s", min=0.0, max=1.0,
              read_only=True),
    ParamSpec("accel_bias_sigma", _NOISE.accel_bias_sigma, "accelerometer turn-on bias spread, m/s^2", min=0.0,
              max=5.0, read_only=True),
    ParamSpec("gyro_bias_walk", _NOISE.gyro_bias_walk, "gyro bias random walk, rad/s^2/sqrt(Hz)", min=0.0, max=1.0,
              read_only=True),
    ParamSpec("accel_bias_walk", _NOISE.accel_bias_walk, "accelerometer bias random walk, m/s^3/sqrt(Hz)",
              min=0.0, max=1.0, read_only=True),
]
_NOISE_KEYS = ("gyro_noise_density", "accel_noise_density", "gyro_bias_sigma", "accel_bias_sigma", "gyro_bias_walk",
               "accel_bias_walk")
_MAX_CATCH_UP_S = 0.5  # after a stall, drop older samples instead of flooding the topic


class ImuNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("imu", **kwargs)
        p = declare_params(self, PARAMS)
        self.params = p
        noise = ImuNoiseConfig(**{k: float(p[k]) for k in _NOISE_KEYS})
        tremor = None
        if p["hand_held"]:
            tremor = HandTremor(p["seed"], TremorConfig(p["tremor_translation_rms_mm"], p["tremor_rotation_rms_mrad"]))
        self.sim = ImuSimulator(noise, seed=p["seed"], tremor=tremor)
        self.rate = float(p["rate_hz"])
        self._gyro_var = noise.gyro_noise_density**2 * self.rate
        self._accel_var = noise.accel_noise_density**2 * self.rate
        self._next_k: int | None = None
        self._pub = self.create_publisher(Imu, "imu/data", SENSOR)
        self._msg = Imu()
        self._msg.header.frame_id = p["frame_id"]
        self._msg.orientation_covariance[0] = -1.0
        for i in (0, 4, 8):
            self._msg.angular_velocity_covariance[i] = self._gyro_var
            self._msg.linear_acceleration_covariance[i] = self._accel_var
        group = MutuallyExclusiveCallbackGroup()  # stage samples and IMU readings in order
        self.create_subscription(ActuatorState, "actuators/state", self._on_stage, TRACK, callback_group=group)
        self.create_timer(1.0 / p["publish_rate_hz"], self._publish_due, callback_group=group)
        self.get_logger().info(
            f"simulated IMU at {self.rate:g} Hz in {p['frame_id']}"
            + (f", hand-held (tremor seed {p['seed']})" if tremor else ", on a fixed mount")
        )

    def _on_stage(self, msg: ActuatorState) -> None:
        add_actuator_state(self.sim.stage, msg, self.get_logger())

    def _publish_due(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        last_k = math.floor((now_ns * 1e-9 - self.params["latency_s"]) * self.rate)
        first_k = last_k - int(_MAX_CATCH_UP_S * self.rate)
        if self._next_k is None or self._next_k < first_k:
            if self._next_k is not None:
                self.get_logger().warning(f"IMU fell {(first_k - self._next_k) / self.rate:.2f} s behind; skipping")
            self._next_k = max(first_k, last_k)
        if last_k < self._next_k:
            return
        # Integer sample index -> stamp: exact on the sensor's grid, no float drift.
        stamps = [k * 1_000_000_000 // int(self.rate) if self.rate.is_integer() else int(k / self.rate * 1e9)
                  for k in range(self._next_k, last_k + 1)]
        gyros, accels = self.sim.samples(np.array(stamps) * 1e-9, self.rate)
        msg = self._msg  # one message, refilled per sample: publish() serializes it at once
        for stamp_ns, gyro, accel in zip(stamps, gyros, accels, strict=True):
            msg.header.stamp = ns_to_stamp(stamp_ns)
            msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = (float(v) for v in gyro)
            msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = (float(v) for v in accel)
            try:
                self._pub.publish(msg)
            except rclpy_implementation.RCLError as exc:  # a transport refusing one sample must not end the stream
                if not self.context.ok():  # Ctrl-C ended the context mid-publish: just stop
                    return
                self.get_logger().error(f"publishing imu/data failed: {exc}", throttle_duration_sec=2.0)
        self._next_k = last_k + 1


def main(args: list[str] | None = None) -> int:
    return run_node("imu", ImuNode, args, num_threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
