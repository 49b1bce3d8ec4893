"""actuators: the micro-actuator stage that shifts the camera array between the shots of a burst.

Serves `actuators/move` (dfocus_interfaces/srv/MoveActuators): the request is refused with a
reason when a target is outside the travel, not finite or has the wrong number of axes; otherwise
the call returns once the stage is in position (success, reached positions) or, after the
request's timeout, fails with the reason (a stuck axis' following error). One move at a time: a
request arriving during a move is taken up when that move ends. Publishes `actuators/state`
(ActuatorState, reliable) at `state_rate_hz`.

Threads: a single-threaded executor serves the moves and parameters (a move waits in its
callback); the state is published by a thread of its own, so it keeps flowing during moves
(rclpy's multi-threaded executor costs several times more CPU per callback).

This is the simulated stage (actuator_model.StageModel); `fault_stuck_axis` injects a jammed axis
at runtime. A real stage driver serving the same service and topic replaces this node.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Header

from dfocus_capture.actuator_model import ActuatorError, StageConfig, StageModel
from dfocus_capture.node_main import run_node
from dfocus_capture.params import ParamSpec, declare_params
from dfocus_capture.qos import TRACK
from dfocus_interfaces.msg import ActuatorState
from dfocus_interfaces.srv import MoveActuators

PARAMS = [
    ParamSpec("axes", ["x", "y"], "stage axes, along the array frame's x (right) and y (down)", read_only=True),
    ParamSpec("min_mm", [-1.5, -1.5], "lower travel limit per axis, mm", read_only=True),
    ParamSpec("max_mm", [1.5, 1.5], "upper travel limit per axis, mm", read_only=True),
    ParamSpec("max_speed_mm_s", 20.0, "profile cruise speed, mm/s", min=0.01, max=1000.0),
    ParamSpec("accel_mm_s2", 2000.0, "profile acceleration, mm/s^2", min=1.0, max=1e6),
    ParamSpec("resonance_hz", 180.0, "stage resonance (ringing after a move), Hz", min=1.0, max=1e5),
    ParamSpec("damping_ratio", 0.1, "damping ratio of the stage's control loop", min=0.01, max=0.99),
    ParamSpec("tolerance_mm", 0.001, "in position when the error stays within this, mm", min=1e-6, max=1.0),
    ParamSpec("settle_time_s", 0.005, "in-position window before a move is reported done, s", min=0.0, max=5.0),
    ParamSpec("encoder_resolution_mm", 0.0001, "position readout step, mm", min=1e-7, max=0.1),
    ParamSpec("following_error_mm", 0.02, "profile-vs-position error that flags a fault, mm", min=1e-4, max=10.0),
    ParamSpec("state_rate_hz", 100.0, "actuators/state publish rate, Hz", min=1.0, max=1000.0, read_only=True),
    ParamSpec("max_timeout_s", 30.0, "upper bound on a request's timeout_s, s", min=0.1, max=600.0),
    ParamSpec("fault_stuck_axis", "", "simulated fault: this axis no longer moves ('' = none)"),
    ParamSpec("frame_id", "actuator_base", "header.frame_id of actuators/state", read_only=True),
]

_MODEL_KEYS = ("max_speed_mm_s", "accel_mm_s2", "resonance_hz", "damping_ratio", "tolerance_mm", "settle_time_s",
               "encoder_resolution_mm", "following_error_mm")


class ActuatorsNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("actuators", **kwargs)
        self.params = declare_params(self, PARAMS, on_change=self._on_change)
        self._lock = threading.Lock()  # the stage model, shared with the state thread
        self._last_fault = ""
        self._stop = threading.Event()
        self.stage = StageModel(self._config(self.params), t0=self._now())
        self._pub = self.create_publisher(ActuatorState, "actuators/state", TRACK)
        self.create_service(MoveActuators, "actuators/move", self._move)
        self._state_thread = threading.Thread(target=self._state_loop, name="state", daemon=True)
        self._state_thread.start()
        cfg = self.stage.config
        self.get_logger().info(
            f"stage axes {list(cfg.axes)}, travel {list(cfg.min_mm)} .. {list(cfg.max_mm)} mm, "
            f"{cfg.max_speed_mm_s} mm/s" + (f", FAULT: axis {cfg.stuck_axis} stuck" if cfg.stuck_axis else "")
        )

    def _config(self, p: dict[str, Any]) -> StageConfig:
        return StageConfig(
            axes=tuple(p["axes"]), min_mm=tuple(float(v) for v in p["min_mm"]),
            max_mm=tuple(float(v) for v in p["max_mm"]), stuck_axis=p["fault_stuck_axis"],
            **{k: float(p[k]) for k in _MODEL_KEYS},
        )

    def _on_change(self, changes: dict[str, Any]) -> str | None:
        merged = {**self.params, **changes}
        try:
            config = self._config(merged)
        except ActuatorError as exc:
            return str(exc)
        with self._lock:  # parameters are set between moves (one executor thread serves both)
            now = self._now()
            self.stage = StageModel(config, t0=now, start_mm=self.stage.true_position(now))
            self.params = merged
        if "fault_stuck_axis" in changes:
            axis = changes["fault_stuck_axis"]
            self.get_logger().warning(f"simulated fault: axis {axis} stuck" if axis else "stuck-axis fault cleared")
        return None

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _state_loop(self) -> None:
        period = 1.0 / self.params["state_rate_hz"]
        next_t = time.monotonic()
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            next_t = max(next_t + period, time.monotonic())
            try:
                self._publish_state()
            except Exception as exc:  # noqa: BLE001 - one failed publish must not end the state stream
                if not self.context.ok():  # Ctrl-C ended the context mid-publish: just stop
                    return
                self.get_logger().error(f"publishing actuators/state failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=2.0)

    def _publish_state(self) -> None:
        t_ns = self.get_clock().now().nanoseconds
        with self._lock:
            state = self.stage.state(t_ns * 1e-9)
            cfg = self.stage.config
            fault = state.fault_message or self._last_fault
        msg = ActuatorState()
        msg.header = Header(frame_id=self.params["frame_id"])
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t_ns, 1_000_000_000)
        msg.position_mm = [float(v) for v in state.position_mm]
        msg.target_mm = [float(v) for v in state.target_mm]
        msg.min_mm = [float(v) for v in cfg.min_mm]
        msg.max_mm = [float(v) for v in cfg.max_mm]
        msg.moving = state.moving
        msg.fault = bool(fault)
        msg.fault_message = fault
        self._pub.publish(msg)

    def _move(self, request: MoveActuators.Request, response: MoveActuators.Response) -> MoveActuators.Response:
        timeout = float(request.timeout_s)
        if not (math.isfinite(timeout) and timeout > 0):
            timeout = 2.0
        timeout = min(timeout, self.params["max_timeout_s"])
        with self._lock:
            now = self._now()
            response.position_mm = [float(v) for v in self.stage.measured(now)]
            try:
                target = self.stage.command(list(request.target_mm), now, relative=request.relative)
            except ActuatorError as exc:
                response.success, response.message = False, f"refused: {exc}"
                self.get_logger().warning(f"move refused: {exc}")
                return response
            self._last_fault = ""
            done_at = self.stage.settled_at()
        self.get_logger().debug(f"move to {target.tolist()} mm, in position at t+{(done_at or math.inf) - now:.3f} s")
        deadline = now + timeout
        # The model is analytic: sleep until it reports in position (or the timeout), on the node's clock.
        wake = deadline if done_at is None else min(done_at, deadline)
        while self._now() < wake and not self._stop.is_set():
            self._stop.wait(min(0.01, max(wake - self._now(), 0.0)))
        with self._lock:
            now = self._now()
            state = self.stage.state(now)
            response.position_mm = [float(v) for v in state.position_mm]
            if not state.moving:
                self.get_logger().debug(f"in position at {state.position_mm.tolist()} mm")
                response.success = True
                response.message = f"in position at {np.round(state.position_mm, 4).tolist()} mm"
                return response
            # Give up: hold where the stage is, keep the fault visible on actuators/state.
            reason = state.fault_message or "not in position"
            self._last_fault = reason
            self.stage.command(self.stage.true_position(now), now)
        response.success = False
        response.message = (f"target {np.round(target, 4).tolist()} mm not reached within {timeout:.2f} s: "
                            f"{reason}; at {response.position_mm} mm")
        self.get_logger().error(response.message)
        return response

    def close(self) -> None:
        self._stop.set()
        self._state_thread.join(timeout=2.0)


def main(args: list[str] | None = None) -> int:
    return run_node("actuators", ActuatorsNode, args, num_threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
