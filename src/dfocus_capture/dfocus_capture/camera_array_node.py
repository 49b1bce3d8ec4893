"""camera_array: the synchronized multi-camera array (sim, folder or v4l2 backend).

Publishes cam<i>/image_raw (rgb8) and cam<i>/camera_info for every camera with one shared stamp
per trigger (sensor-data QoS), free-running at `rate_hz` (0 = only on request), and serves
`trigger` (dfocus_interfaces/srv/TriggerCameras): set per-camera focus, fire one synchronized
exposure, publish it, return the stamp and the focus each camera used.

In `sim` the rendered poses follow the same motion the imu node simulates: the actuator stage
position from actuators/state and, with `hand_held`, the hand tremor seeded by `seed`. Each
exposure is rendered where the stage was at its stamp, once the state after the stamp has arrived
(up to 1 s); actuators/state is taken by a helper node `camera_array_stage` on a thread of its own,
so that a trigger waiting for earlier renders cannot hold back the state those renders wait for.

A trigger is answered when the exposure (and readout) has ended; its images are published by a
delivery thread once the backend has them (the sim renders them meanwhile), as a real camera's
frames arrive after the exposure while the rig already moves on.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from dfocus_capture.calibration import load_array_calibration
from dfocus_capture.drivers import (
    BACKENDS,
    CameraArrayDriver,
    DriverError,
    Exposure,
    FolderCameraArray,
    SimCameraArray,
    V4l2CameraArray,
    scene_from_spec,
)
from dfocus_capture.drivers.sim import RENDER_MODES
from dfocus_capture.frames import optical_frame
from dfocus_capture.hand_motion import HandTremor, TremorConfig
from dfocus_capture.imu_model import STAGE_WAIT_S, ActuatorTrack
from dfocus_capture.node_main import run_node
from dfocus_capture.params import ParamSpec, declare_params
from dfocus_capture.qos import FRAMES, TRACK
from dfocus_capture.ros_convert import (
    add_actuator_state,
    camera_info_from_model,
    image_to_msg,
    ns_to_stamp,
)
from dfocus_capture.side_listener import SideListener
from dfocus_capture.sim.sensor import SensorNoise
from dfocus_interfaces.msg import ActuatorState
from dfocus_interfaces.srv import TriggerCameras

PARAMS = [
    ParamSpec("backend", "sim", "camera backend", choices=BACKENDS, read_only=True),
    ParamSpec("calibration_file", "", "array calibration (YAML or Middlebury calib.txt); '' = "
              "config/camera_array.yaml (folder backend: the folder's own calibration)", read_only=True),
    ParamSpec("rate_hz", 5.0, "free-running trigger rate, Hz (0 = only on trigger requests)", min=0.0, max=120.0),
    ParamSpec("width", 0, "output width, px (0 = the calibration's)", min=0, max=20000, read_only=True),
    ParamSpec("height", 0, "output height, px (0 = the calibration's)", min=0, max=20000, read_only=True),
    ParamSpec("seed", 0, "sim: seed of the scene and of the hand tremor (same as the imu node's)", min=0,
              max=2**31 - 1, read_only=True),
    ParamSpec("scene", "random", "sim: 'random', 'random:NEAR:FAR' (m) or 'plane:DISTANCE' (m)", read_only=True),
    ParamSpec("noise", True, "sim: sensor noise, vignetting and quantisation", read_only=True),
    ParamSpec("render", "warp", "sim: 'warp' (each camera's thin-lens keyframe warped to the shot's pose, "
              "fresh noise) or 'exact' (every view ray cast and defocused)", choices=RENDER_MODES, read_only=True),
    ParamSpec("exposure_time_s", 0.01, "sim: exposure time, s (a trigger lasts exposure + readout)", min=1e-5,
              max=1.0, read_only=True),
    ParamSpec("hand_held", False, "sim: add the hand tremor to the rendered poses", read_only=True),
    ParamSpec("tremor_translation_rms_mm", 0.3, "sim: hand tremor translation RMS, mm", min=0.0, max=10.0,
              read_only=True),
    ParamSpec("tremor_rotation_rms_mrad", 2.0, "sim: hand tremor rotation RMS, mrad", min=0.0, max=50.0,
              read_only=True),
    ParamSpec("follow_actuators", True, "sim: shift the rendered array by actuators/state", read_only=True),
    ParamSpec("fail_camera", -1, "sim fault injection: this camera index stops delivering (-1 = none)", min=-1,
              max=63),
    ParamSpec("fail_after", 0, "sim fault injection: ... after this many triggers", min=0, max=1_000_000),
    ParamSpec("drop_rate", 0.0, "fault injection: share of images never delivered, each independently (a camera "
              "or link losing frames; their camera_info still goes out)", min=0.0, max=1.0),
    ParamSpec("delivery_delay_s", 0.0, "fault injection: each exposure's images go out this long after it, s (a slow "
              "link, or a loaded machine developing slowly; later exposures queue behind)", min=0.0, max=120.0),
    ParamSpec("folder", "", "folder: burst folder (images + calibration)", read_only=True),
    ParamSpec("devices", "", "v4l2: comma-separated devices, one per camera (e.g. /dev/video0,/dev/video2)",
              read_only=True),
]


def create_driver(p: dict[str, Any], stage_position: Callable[[float], np.ndarray] | None,
                  tremor: HandTremor | None) -> CameraArrayDriver:
    """The backend the parameters ask for (raises DriverError / CalibrationError).
    `stage_position(t)`: the actuator stage's shift of the simulated array at time t, m."""
    backend = p["backend"]
    if backend == "folder":
        if not p["folder"]:
            raise DriverError("backend 'folder' needs the 'folder' parameter")
        return FolderCameraArray(p["folder"], p["calibration_file"] or None, p["width"], p["height"])
    calibration = load_array_calibration(p["calibration_file"])
    if backend == "v4l2":
        devices = [d.strip() for d in p["devices"].split(",") if d.strip()]
        return V4l2CameraArray(calibration, devices, p["width"], p["height"])

    def array_pose(stamp_ns: int) -> np.ndarray:
        t = stamp_ns * 1e-9
        stage_pose = np.eye(4)
        if stage_position is not None:
            stage_pose[:3, 3] = stage_position(t)
        return stage_pose if tremor is None else np.asarray(tremor.pose_at(t) @ stage_pose)

    return SimCameraArray(
        calibration, p["width"], p["height"], scene=scene_from_spec(p["scene"], p["seed"]), seed=p["seed"],
        noise=SensorNoise() if p["noise"] else None, exposure_time_s=p["exposure_time_s"],
        fail_camera=p["fail_camera"], fail_after=p["fail_after"], array_pose=array_pose, render=p["render"],
    )


QUIET_AFTER_TRIGGER_S = 2.0


class CameraArrayNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("camera_array", **kwargs)
        self.params = declare_params(self, PARAMS, self._on_change)
        p = self.params
        self._stage: ActuatorTrack | None = None
        self._stage_listener: SideListener | None = None
        tremor = None
        if p["backend"] == "sim":
            if p["follow_actuators"]:
                # On a thread of its own: a render waits for the stage's state while a trigger that
                # waits for that render can hold this node's single executor thread.
                self._stage = ActuatorTrack()
                self._stage_listener = SideListener(self, "stage")
                self._stage_sub = self._stage_listener.node.create_subscription(
                    ActuatorState, "actuators/state", self._on_stage, TRACK)
                self._stage_listener.start()
            if p["hand_held"]:
                tremor = HandTremor(p["seed"], TremorConfig(p["tremor_translation_rms_mm"],
                                                            p["tremor_rotation_rms_mrad"]))
        self._stop = threading.Event()  # set by close(): free-running and stage waits end
        self.driver = create_driver(p, None if self._stage is None else self._stage_position, tremor)
        self.driver.open()
        self._lock = threading.Lock()  # one trigger at a time: the driver is not re-entrant
        # Requested triggers go first: free-running frames are skipped while one waits, so a
        # slow (e.g. 12 MP simulated) free-run cannot starve the sequencer's exposures.
        self._pending_triggers = 0
        self._quiet_until = 0.0  # no free-running frame before this (monotonic s): a burst is on
        self._group = ReentrantCallbackGroup()  # triggers are serialized by self._lock
        n = self.driver.num_cameras
        self._image_pubs = [self.create_publisher(Image, f"cam{i}/image_raw", FRAMES) for i in range(n)]
        self._info_pubs = [self.create_publisher(CameraInfo, f"cam{i}/camera_info", FRAMES) for i in range(n)]
        # Exposures whose images are still developing, published in order by the delivery thread.
        self._developing: queue.Queue[Exposure | None] = queue.Queue()
        self._drop_rng = np.random.default_rng(p["seed"] + 1)
        self._delivery_thread = threading.Thread(target=self._deliver_loop, name="delivery", daemon=True)
        self._delivery_thread.start()
        self.create_service(TriggerCameras, "trigger", self._on_trigger, callback_group=self._group)
        # Free-running exposures come from a thread of their own, not an executor timer: a render
        # takes longer than a timer period, and a timer whose callback is still busy keeps the
        # executor waking, starving the trigger service and the stage updates.
        self._free_run_thread = threading.Thread(target=self._free_run_loop, name="free_run", daemon=True)
        self._free_run_thread.start()
        w, h = self.driver.resolution
        self.get_logger().info(
            f"{p['backend']} camera array: {n} cameras at {w}x{h}, "
            + (f"free-running at {p['rate_hz']:g} Hz" if p["rate_hz"] > 0 else "trigger-only")
        )

    def _on_change(self, changes: dict[str, Any]) -> str | None:
        if "fail_camera" in changes or "fail_after" in changes:
            if not isinstance(self.driver, SimCameraArray):
                return "fault injection needs the sim backend"
            camera = int(changes.get("fail_camera", self.driver.fail_camera))
            if camera >= self.driver.num_cameras:
                return f"fail_camera {camera} out of range (the array has {self.driver.num_cameras} cameras)"
            self.driver.fail_camera = camera
            self.driver.fail_after = int(changes.get("fail_after", self.driver.fail_after))
        return None

    def _free_run_loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            rate = float(self.params["rate_hz"])
            if rate <= 0:
                next_t = time.monotonic() + 0.1
                continue
            next_t = max(next_t + 1.0 / rate, time.monotonic())
            try:
                self._free_run()
            except Exception as exc:  # noqa: BLE001 - one failed frame must not end free-running
                if not self.context.ok():  # Ctrl-C shut the context down mid-frame: just stop
                    return
                self.get_logger().error(f"free-running frame failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=2.0)

    def _stage_position(self, t: float) -> np.ndarray:
        """Where the stage was at t, once its state after t has arrived (see STAGE_WAIT_S). With no
        state yet, it waits only while a publisher is matched (the stage node is up)."""
        assert self._stage is not None
        latest = self._stage.latest_t
        silent = (t - latest >= STAGE_WAIT_S) if latest is not None else not self._stage_sub.get_publisher_count()
        if not silent and not self._stage.wait_past(t, STAGE_WAIT_S, self._stop) and not self._stop.is_set():
            since = "no state yet" if self._stage.latest_t is None else f"the state of {self._stage.latest_t:.3f} s"
            self.get_logger().warning(f"exposure at {t:.3f} s rendered with {since}: actuators/state is late",
                                      throttle_duration_sec=2.0)
        return self._stage.position_at(t)

    def _on_stage(self, msg: ActuatorState) -> None:
        assert self._stage is not None
        add_actuator_state(self._stage, msg, self.get_logger())

    def _capture(self) -> Exposure:
        """Expose and queue the images for publishing; the caller holds self._lock."""
        exposure = self.driver.expose()
        self._developing.put(exposure)
        return exposure

    def _deliver_loop(self) -> None:
        while (exposure := self._developing.get()) is not None:
            delay = float(self.params["delivery_delay_s"])
            if delay > 0 and self._stop.wait(delay):
                return
            try:
                images = exposure.images()
            except Exception as exc:  # noqa: BLE001 - one failed render must not stop later deliveries
                self.get_logger().error(f"exposure at {exposure.stamp_ns * 1e-9:.3f} s delivered no images: "
                                        f"{type(exc).__name__}: {exc}")
                continue
            for shot in images:
                header = Header(stamp=ns_to_stamp(shot.stamp_ns), frame_id=optical_frame(shot.camera.name))
                try:
                    drop_rate = float(self.params["drop_rate"])
                    if drop_rate and self._drop_rng.random() < drop_rate:
                        self.get_logger().debug(f"fault injection: {shot.camera.name} at {shot.stamp_ns * 1e-9:.3f} s "
                                                "not published")
                    else:
                        self._image_pubs[shot.camera_index].publish(image_to_msg(shot.image, "rgb8", header))
                    self._info_pubs[shot.camera_index].publish(camera_info_from_model(shot.camera, header))
                except Exception as exc:  # noqa: BLE001 - a failed publish must not end later deliveries
                    if not self.context.ok():  # Ctrl-C ended the context mid-delivery: just stop
                        return
                    self.get_logger().error(f"publishing {shot.camera.name} at {shot.stamp_ns * 1e-9:.3f} s "
                                            f"failed: {type(exc).__name__}: {exc}")

    def _missing(self, exposure: Exposure) -> list[str]:
        return [c.name for i, c in enumerate(self.driver.calibration.cameras) if i not in exposure.cameras]

    def _free_run(self) -> None:
        if time.monotonic() < self._quiet_until:
            return
        # A free-running frame waits for the previous ones to be delivered (frames are dropped, not
        # queued, when rendering falls behind the rate).
        if self._pending_triggers or not self._developing.empty() or not self._lock.acquire(blocking=False):
            return
        try:
            exposure = self._capture()
        except DriverError as exc:
            self.get_logger().error(f"trigger failed: {exc}", throttle_duration_sec=2.0)
            return
        finally:
            self._lock.release()
        missing = self._missing(exposure)
        if missing:
            self.get_logger().warning(f"no image from {', '.join(missing)}", throttle_duration_sec=2.0)

    def _on_trigger(self, req: TriggerCameras.Request, res: TriggerCameras.Response) -> TriggerCameras.Response:
        focus = list(req.focus_distances_m)
        n = self.driver.num_cameras
        if focus and len(focus) != n:
            res.success, res.message = False, f"got {len(focus)} focus distances for {n} cameras"
            return res
        bad = [f for f in focus if not (math.isfinite(f) and f > 0)]
        if bad:
            res.success, res.message = False, f"focus distances must be positive metres, got {bad}"
            return res
        self._pending_triggers += 1
        try:
            with self._lock:
                self._pending_triggers -= 1
                for i, f in enumerate(focus):
                    self.driver.set_focus(i, float(f))
                exposure = self._capture()
                # The next trigger of a burst usually follows within a second or two.
                self._quiet_until = time.monotonic() + QUIET_AFTER_TRIGGER_S
        except DriverError as exc:
            res.success, res.message = False, str(exc)
            return res
        if not exposure.cameras:
            res.success, res.message = False, "no camera delivered an image"
            return res
        res.stamp = ns_to_stamp(exposure.stamp_ns)
        used = [exposure.cameras[i].focus_distance_m if i in exposure.cameras else self.driver.focus_m[i]
                for i in range(n)]
        res.focus_distances_m = [float(f) for f in used]
        missing = self._missing(exposure)
        res.success = not missing
        res.message = (f"no image from {', '.join(missing)}" if missing
                       else f"{len(exposure.cameras)} cameras exposed")
        return res

    def close(self) -> None:
        self._stop.set()
        self._free_run_thread.join(timeout=30.0)
        self._developing.put(None)
        self._delivery_thread.join(timeout=30.0)
        with self._lock:
            self.driver.close()
        if self._stage_listener is not None:
            self._stage_listener.close()


def main(args: list[str] | None = None) -> int:
    return run_node("camera_array", CameraArrayNode, args, num_threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
