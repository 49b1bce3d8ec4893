"""`sim` backend: renders the array's views of a simulated scene, with the timing of real
sensors (a trigger lasts the exposure plus the rolling readout of all rows) and an optional
simulated fault (a camera that stops delivering after N triggers)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from dfocus_capture.calibration import ArrayCalibration, CameraModel
from dfocus_capture.drivers.base import CameraArrayDriver, CapturedImage, DriverError
from dfocus_capture.sim.render import RenderError, ThinLensRenderer
from dfocus_capture.sim.scene import Scene, SceneError, plane_scene, random_scene
from dfocus_capture.sim.sensor import SensorNoise

# Rolling-shutter line time of a typical mobile sensor: 960 rows in ~16 ms, 3000 rows in ~50 ms.
LINE_TIME_S = 16.7e-6
DEFAULT_NOISE = SensorNoise()


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
    exposure (actuator shift and hand motion); default: the calibration's rest pose."""

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
    ) -> None:
        super().__init__(calibration, width, height)
        if not 0 < exposure_time_s <= 10:
            raise DriverError(f"exposure_time_s must be in (0, 10] s, got {exposure_time_s}")
        if fail_camera >= self.num_cameras:
            raise DriverError(f"fail_camera {fail_camera} out of range (the array has {self.num_cameras})")
        self.renderer = ThinLensRenderer(scene if scene is not None else random_scene(seed))
        self.noise = noise
        self.exposure_time_s = exposure_time_s
        self.realtime = realtime
        self.fail_camera, self.fail_after = fail_camera, fail_after
        self.array_pose = array_pose
        self.clock_ns = clock_ns
        self._rng = np.random.default_rng([seed, 7])
        self._ref_inv = np.linalg.inv(self.calibration.reference.T_ref_cam)
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(self.num_cameras, os.cpu_count() or 1)),
                                        thread_name_prefix="sim_camera")

    @property
    def frame_time_s(self) -> float:
        """Exposure plus readout: the shortest time between triggers on the real sensor."""
        return self.exposure_time_s + self.resolution[1] * LINE_TIME_S

    def _trigger(self) -> list[CapturedImage]:
        start_ns = self.clock_ns()
        stamp_ns = start_ns + round(self.exposure_time_s * 5e8)  # middle of the exposure
        pose = self.array_pose(stamp_ns) if self.array_pose is not None else np.eye(4)
        jobs = []
        for i, cam in enumerate(self.calibration.cameras):
            if i == self.fail_camera and self.trigger_count >= self.fail_after:
                continue  # simulated fault: this camera has stopped delivering frames
            posed = replace(cam, T_ref_cam=self._ref_inv @ pose @ cam.T_ref_cam, focus_distance_m=self.focus_m[i])
            jobs.append((i, posed, self._rng.spawn(1)[0]))  # one generator per view: same noise on any thread

        def render(job: tuple[int, CameraModel, np.random.Generator]) -> CapturedImage:
            i, posed, rng = job
            try:
                view = self.renderer.render(posed, noise=self.noise, rng=rng)
            except RenderError as exc:
                raise DriverError(f"{posed.name}: {exc}") from exc
            return CapturedImage(i, view.image, posed, stamp_ns)

        # The cameras expose in parallel; so do their renders (numpy and OpenCV release the GIL).
        out = list(self._pool.map(render, jobs))
        if self.realtime:
            # Images are available only after exposure + readout, as from the real sensors.
            remaining = start_ns + round(self.frame_time_s * 1e9) - self.clock_ns()
            if remaining > 0:
                time.sleep(remaining * 1e-9)
        return out
