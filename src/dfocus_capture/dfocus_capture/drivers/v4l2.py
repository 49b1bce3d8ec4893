"""`v4l2` backend: USB/UVC cameras through OpenCV's V4L2 capture.

Synchronisation is software "trigger" style: grab() on every device back to back (latching the
newest frame of each, within a few ms), then retrieve() them all, so the set shares one stamp.
Focus is set through CAP_PROP_FOCUS (V4L2 focus_absolute) where the camera supports it; the
device unit is mapped from metres with the calibration's optional per-camera keys
`v4l2_focus_at_infinity` and `v4l2_focus_per_dioptre` (value = at_infinity + per_dioptre / m).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import cv2
import numpy as np

from dfocus_capture.calibration import ArrayCalibration
from dfocus_capture.drivers.base import CameraArrayDriver, CapturedImage, DriverError, Exposure


def _device(spec: str) -> int | str:
    return int(spec) if spec.isdigit() else spec


class V4l2CameraArray(CameraArrayDriver):
    def __init__(
        self,
        calibration: ArrayCalibration,
        devices: list[str],
        width: int = 0,
        height: int = 0,
        clock_ns: Callable[[], int] = time.time_ns,
        open_capture: Callable[[int | str], cv2.VideoCapture] | None = None,
    ) -> None:
        super().__init__(calibration, width, height)
        if len(devices) != self.num_cameras:
            raise DriverError(f"{len(devices)} v4l2 devices given for {self.num_cameras} calibrated cameras")
        self.devices = list(devices)
        self.clock_ns = clock_ns
        self._open_capture = open_capture or (lambda dev: cv2.VideoCapture(dev, cv2.CAP_V4L2))
        self._caps: list[cv2.VideoCapture] = []
        self.focus_supported = [False] * self.num_cameras

    def open(self) -> None:
        w, h = self.resolution
        try:
            for dev in self.devices:
                cap = self._open_capture(_device(dev))
                if not cap.isOpened():
                    raise DriverError(f"v4l2 device {dev} is absent or busy (cannot open it)")
                self._caps.append(cap)
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
                got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
                if got != (w, h):
                    raise DriverError(f"v4l2 device {dev} delivers {got[0]}x{got[1]}, not the requested {w}x{h}")
        except DriverError:
            self.close()
            raise
        for i in range(self.num_cameras):
            self.set_focus(i, self.focus_m[i])
        super().open()

    def close(self) -> None:
        for cap in self._caps:
            cap.release()
        self._caps = []
        super().close()

    def set_focus(self, camera: int, focus_m: float) -> float:
        super().set_focus(camera, focus_m)
        if not self._caps:
            return self.focus_m[camera]
        cam = self.calibration.cameras[camera]
        value = float(cam.extra.get("v4l2_focus_at_infinity", 0.0)) + float(
            cam.extra.get("v4l2_focus_per_dioptre", 100.0)) / focus_m
        cap = self._caps[camera]
        cap.set(cv2.CAP_PROP_AUTOFOCUS, 0)
        self.focus_supported[camera] = bool(cap.set(cv2.CAP_PROP_FOCUS, value))
        if not self.focus_supported[camera]:
            # Fixed-focus camera: it stays at its calibrated distance.
            self.focus_m[camera] = cam.focus_distance_m
        return self.focus_m[camera]

    def _expose(self) -> Exposure:
        t0 = self.clock_ns()
        for dev, cap in zip(self.devices, self._caps, strict=True):
            if not cap.grab():
                raise DriverError(f"v4l2 device {dev} stopped delivering frames (grab failed)")
        stamp = (t0 + self.clock_ns()) // 2
        out = []
        w, h = self.resolution
        for i, (dev, cap) in enumerate(zip(self.devices, self._caps, strict=True)):
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                raise DriverError(f"v4l2 device {dev}: retrieve failed")
            if frame.shape[:2] != (h, w):
                frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            rgb = np.ascontiguousarray(frame[:, :, ::-1]) if frame.ndim == 3 else np.repeat(frame[:, :, None], 3, 2)
            cam = replace(self.calibration.cameras[i], focus_distance_m=self.focus_m[i])
            out.append(CapturedImage(i, rgb, cam, stamp))
        return Exposure.ready(out)
