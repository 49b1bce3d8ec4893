"""The camera array driver interface every backend (sim, folder, v4l2) implements.

A driver fires all cameras together (`expose`, or `trigger` which also waits for the images) and
returns one image per delivering camera with the camera model at exposure (intrinsics at the
driver's resolution, pose, focus) and one shared stamp. The stamp and the delivering cameras are
known when the exposure ends; the images may follow later, as from a real sensor's readout and
transfer (the sim backend renders them meanwhile). Drivers raise `DriverError` with a reason;
they never leave a half-open device behind.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from dfocus_capture.calibration import ArrayCalibration, CameraModel

MAX_PIXELS = 50_000_000  # per camera; 12 MP and beyond are fine


class DriverError(RuntimeError):
    """A camera backend failed: device absent, files inconsistent, camera stopped delivering."""


@dataclass
class CapturedImage:
    camera_index: int
    image: np.ndarray  # HxWx3 RGB uint8
    camera: CameraModel  # at exposure: intrinsics, pose (T_ref_cam), focus_distance_m
    stamp_ns: int  # shared by every image of one trigger


@dataclass
class Exposure:
    """One synchronized exposure: stamp and delivering cameras, and the images as futures."""

    stamp_ns: int
    cameras: dict[int, CameraModel]  # delivering camera index -> its model (focus) at exposure
    futures: list[Future[CapturedImage]]

    @staticmethod
    def ready(images: list[CapturedImage]) -> Exposure:
        """An exposure whose images are complete already."""
        futures: list[Future[CapturedImage]] = []
        for image in images:
            futures.append(Future())
            futures[-1].set_result(image)
        return Exposure(images[0].stamp_ns if images else 0, {i.camera_index: i.camera for i in images}, futures)

    def images(self) -> list[CapturedImage]:
        """The images, once developed (raises the backend's DriverError)."""
        return [f.result() for f in self.futures]


class CameraArrayDriver(ABC):
    """Base class: holds the calibration at the output resolution and each camera's focus."""

    def __init__(self, calibration: ArrayCalibration, width: int = 0, height: int = 0) -> None:
        if width < 0 or height < 0 or (width == 0) != (height == 0):
            raise DriverError(f"resolution must be both 0 (native) or both positive, got {width}x{height}")
        if width * height > MAX_PIXELS:
            raise DriverError(f"resolution {width}x{height} exceeds {MAX_PIXELS / 1e6:.0f} MP per camera")
        native = calibration.reference
        self.calibration = calibration.scaled(width, height) if width and (width, height) != (
            native.width, native.height) else calibration
        self.focus_m = [c.focus_distance_m for c in self.calibration.cameras]
        self.is_open = False
        self.trigger_count = 0

    @property
    def num_cameras(self) -> int:
        return len(self.calibration.cameras)

    @property
    def resolution(self) -> tuple[int, int]:
        cam = self.calibration.reference
        return cam.width, cam.height

    def open(self) -> None:
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    def _check_camera(self, camera: int) -> None:
        if not 0 <= camera < self.num_cameras:
            raise DriverError(f"camera index {camera} out of range (the array has {self.num_cameras})")

    def set_focus(self, camera: int, focus_m: float) -> float:
        """Focus one camera at focus_m metres; returns the focus it actually uses."""
        self._check_camera(camera)
        cam = self.calibration.cameras[camera]
        if not (math.isfinite(focus_m) and focus_m > cam.focal_length_mm * 1e-3):
            raise DriverError(f"{cam.name}: focus {focus_m} m is impossible (must exceed the focal length "
                              f"{cam.focal_length_mm} mm)")
        self.focus_m[camera] = float(focus_m)
        return self.focus_m[camera]

    def expose(self) -> Exposure:
        """One synchronized exposure of every camera; returns when it has ended."""
        if not self.is_open:
            raise DriverError("driver is not open")
        exposure = self._expose()
        self.trigger_count += 1
        return exposure

    def trigger(self) -> list[CapturedImage]:
        """One synchronized exposure of every camera, with its images."""
        return self.expose().images()

    @abstractmethod
    def _expose(self) -> Exposure: ...

    def __enter__(self) -> CameraArrayDriver:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
