"""`sim` backend: renders the array's views of a simulated scene, with the timing of real
sensors (an exposure lasts the exposure time plus the rolling readout of all rows; the images
follow, rendered on worker threads while the caller moves on) and an optional simulated fault
(a camera that stops delivering after N triggers).

Renders are `exact` (every view ray cast and defocused) or `warp` (the default: each camera's
thin-lens keyframe warped to the exposure's pose with its parallax, then fresh sensor noise;
sim.shot_warp). `warp` keeps a keyframe per camera, made when the driver opens and again when a
camera's focus changes or it moves beyond the keyframe's margin.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace

import numpy as np

from dfocus_capture.calibration import ArrayCalibration, CameraModel
from dfocus_capture.drivers.base import CameraArrayDriver, CapturedImage, DriverError, Exposure
from dfocus_capture.sim.render import RenderError, ThinLensRenderer
from dfocus_capture.sim.scene import Scene, SceneError, plane_scene, random_scene
from dfocus_capture.sim.sensor import SensorNoise
from dfocus_capture.sim.shot_warp import ShotRenderer

# Rolling-shutter line time of a typical mobile sensor: 960 rows in ~16 ms, 3000 rows in ~50 ms.
LINE_TIME_S = 16.7e-6
DEFAULT_NOISE = SensorNoise()
RENDER_MODES = ("warp", "exact")
# Exposures whose images may still be rendering: a further trigger waits, as a real camera with
# full frame buffers does, so that a slow render delays the next exposure instead of piling up.
FRAME_BUFFERS = 2


def scene_from_spec(spec: str, seed: int) -> Scene:
    """'random' (seeded random_scene), 'random:NEAR:FAR' (its depth range, m) or 'plane:D' (a
    textured wall at D m)."""
    kind, _, rest = spec.partition(":")
    try:
        if kind == "random":
            if not rest:
                return random_scene(seed)
            near, far = (float(x) for x in rest.split(":"))
            return random_scene(seed, near_m=near, far_m=far)
        if kind == "plane":
            return plane_scene(float(rest), seed)
    except (ValueError, SceneError) as exc:
        raise DriverError(f"scene {spec!r}: {exc}") from exc
    raise DriverError(f"scene must be 'random', 'random:NEAR:FAR' or 'plane:DISTANCE', got {spec!r}")


class SimCameraArray(CameraArrayDriver):
    """Simulated array. `array_pose(stamp_ns)` gives the array's pose in the scene frame at an
    exposure (actuator shift and hand motion; called on a render thread, so it may wait for the
    motion up to the stamp); default: the calibration's rest pose. An exposure's `cameras` carry
    its focus; the posed model comes with each image."""

    def __init__(
        self,
        calibration: ArrayCalibration,
        width: int = 0,
        height: int = 0,
        *,
        scene: Scene | None = None,
        seed: int = 0,
        noise: SensorNoise | None = DEFAULT_NOISE,
        exposure_time_s: float = 0.01,
        realtime: bool = True,
        fail_camera: int = -1,
        fail_after: int = 0,
        array_pose: Callable[[int], np.ndarray] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        render: str = "warp",
    ) -> None:
        super().__init__(calibration, width, height)
        if render not in RENDER_MODES:
            raise DriverError(f"render must be one of {RENDER_MODES}, got {render!r}")
        if not 0 < exposure_time_s <= 10:
            raise DriverError(f"exposure_time_s must be in (0, 10] s, got {exposure_time_s}")
        if fail_camera >= self.num_cameras:
            raise DriverError(f"fail_camera {fail_camera} out of range (the array has {self.num_cameras})")
        self.renderer = ThinLensRenderer(scene if scene is not None else random_scene(seed))
        self.shots = ShotRenderer(self.renderer) if render == "warp" else None
        self.noise = noise
        self.exposure_time_s = exposure_time_s
        self.realtime = realtime
        self.fail_camera, self.fail_after = fail_camera, fail_after
        self.array_pose = array_pose
        self.clock_ns = clock_ns
        self._rng = np.random.default_rng([seed, 7])
        self._ref_inv = np.linalg.inv(self.calibration.reference.T_ref_cam)
        self._pool: ThreadPoolExecutor | None = None  # the renders, while open
        self._developing: deque[list[Future[CapturedImage]]] = deque()

    @property
    def frame_time_s(self) -> float:
        """Exposure plus readout: the shortest time between triggers on the real sensor."""
        return self.exposure_time_s + self.resolution[1] * LINE_TIME_S

    def _posed(self, camera: int, pose: np.ndarray) -> CameraModel:
        cam = self.calibration.cameras[camera]
        return replace(cam, T_ref_cam=self._ref_inv @ pose @ cam.T_ref_cam, focus_distance_m=self.focus_m[camera])

    def open(self) -> None:
        super().open()
        # One render per core: numpy and OpenCV release the GIL.
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(self.num_cameras, os.cpu_count() or 1)),
                                        thread_name_prefix="sim_camera")
        if self.shots is not None:
            # Keyframes at the rest pose, made while the caller starts up (triggers queue behind); the
            # array's motion is not asked for here, as the caller cannot deliver it before it runs.
            for i in range(self.num_cameras):
                self._pool.submit(self.shots.linear, self._posed(i, np.eye(4)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        super().close()

    def _pose_at(self, stamp_ns: int) -> np.ndarray:
        return self.array_pose(stamp_ns) if self.array_pose is not None else np.eye(4)

    def _render(self, camera: int, pose: Future[np.ndarray], rng: np.random.Generator,
                stamp_ns: int) -> CapturedImage:
        # The pose task was queued first (FIFO), so it runs or has run: waiting cannot deadlock.
        posed = self._posed(camera, pose.result())
        try:
            if self.shots is not None:
                image = self.shots.render(posed, self.noise, rng)
            else:
                image = self.renderer.render(posed, noise=self.noise, rng=rng).image
        except RenderError as exc:
            raise DriverError(f"{posed.name}: {exc}") from exc
        return CapturedImage(camera, image, posed, stamp_ns)

    def _expose(self) -> Exposure:
        while len(self._developing) >= FRAME_BUFFERS:
            wait(self._developing.popleft())
        start_ns = self.clock_ns()
        stamp_ns = start_ns + round(self.exposure_time_s * 5e8)  # middle of the exposure
        assert self._pool is not None  # the base class checked is_open
        # The pose at the stamp is asked for on a render thread, ahead of the exposure's renders:
        # `array_pose` may wait for the motion to be known up to the stamp, and the trigger must not.
        pose = self._pool.submit(self._pose_at, stamp_ns)
        cameras: dict[int, CameraModel] = {}
        futures = []
        for i in range(self.num_cameras):
            if i == self.fail_camera and self.trigger_count >= self.fail_after:
                continue  # simulated fault: this camera has stopped delivering frames
            cameras[i] = replace(self.calibration.cameras[i], focus_distance_m=self.focus_m[i])
            # One generator per view: the same noise whichever thread renders it.
            futures.append(self._pool.submit(self._render, i, pose, self._rng.spawn(1)[0], stamp_ns))
        if self.realtime:
            # The exposure (and the rolling readout) ends after frame_time_s; the renders go on.
            remaining = start_ns + round(self.frame_time_s * 1e9) - self.clock_ns()
            if remaining > 0:
                time.sleep(remaining * 1e-9)
        self._developing.append(futures)
        return Exposure(stamp_ns, cameras, futures)
