"""`folder` backend: a recorded focus bracket (image files + calibration) played as triggers, and
the writer of that layout (used by `dfocus simulate`).

Layout of a burst folder:
  calibration.yaml          the array calibration (poses and focus of shot 0); or calib.txt
  frames.yaml               optional: per frame its file, shot, camera, focus_distance_m, T_ref_cam,
                            stamp_ns, exposure_time_s (written by `dfocus simulate`)
  shot<S>_cam<C>.png        images (PNG/JPEG/TIFF, 8 or 16 bit, colour or grey)
Without frames.yaml the files are matched by the shot<S>_cam<C> names, or else taken in sorted
order, shot-major (all cameras of shot 0, then shot 1, ...), at the calibration's focus.
Trigger k delivers shot k modulo the number of shots.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from dfocus_capture.burst import Burst, BurstFrame
from dfocus_capture.calibration import (
    CalibrationError,
    CameraModel,
    load_calibration,
    save_calibration,
)
from dfocus_capture.drivers.base import CameraArrayDriver, CapturedImage, DriverError, Exposure

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
FRAME_NAME = re.compile(r"shot(\d+)_cam(\d+)\.(png|jpe?g|tiff?)$", re.IGNORECASE)
FRAMES_FILE = "frames.yaml"
CALIBRATION_FILES = ("calibration.yaml", "calib.txt")


def frame_filename(shot: int, camera: int) -> str:
    return f"shot{shot}_cam{camera}.png"


def read_image(path: Path) -> np.ndarray:
    """An image file as HxWx3 RGB uint8 (16-bit files scaled to 8 bit, grey repeated)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DriverError(f"{path}: not a readable image")
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DriverError(f"{path}: unsupported pixel type {img.dtype} (8 or 16 bit integers only)")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img[:, :, ::-1])


def write_burst_folder(burst: Burst, folder: Path | str) -> list[Path]:
    """Write a burst in the layout above (images as 8/16-bit PNG); returns the image paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_calibration(burst.calibration(0), out / CALIBRATION_FILES[0])
    entries: list[dict[str, Any]] = []
    paths = []
    for f in burst.frames:
        path = out / frame_filename(f.shot_index, f.camera_index)
        img = f.image if f.image.ndim == 2 else f.image[:, :, ::-1]
        if not cv2.imwrite(str(path), np.ascontiguousarray(img)):
            raise DriverError(f"cannot write {path}")
        paths.append(path)
        entries.append({
            "file": path.name, "shot": f.shot_index, "camera": f.camera_index, "camera_name": f.camera.name,
            "focus_distance_m": float(f.camera.focus_distance_m),
            "T_ref_cam": [float(x) for x in f.camera.T_ref_cam.ravel()],
            "stamp_ns": int(f.stamp_ns), "exposure_time_s": float(f.exposure_time_s),
        })
    meta = {"reference_camera": burst.reference_camera, "num_shots": burst.num_shots,
            "num_cameras": burst.num_cameras, "focus_mode": burst.focus_mode, "hand_held": burst.hand_held,
            "actuator_mm": burst.actuator_mm.tolist(), "frames": entries}
    (out / FRAMES_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))
    return paths


class FolderCameraArray(CameraArrayDriver):
    """Plays a burst folder; every trigger delivers the next shot of all cameras."""

    def __init__(
        self,
        folder: Path | str,
        calibration_file: Path | str | None = None,
        width: int = 0,
        height: int = 0,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DriverError(f"image folder {self.folder} does not exist")
        calib_path = Path(calibration_file) if calibration_file else self._find_calibration()
        try:
            native = load_calibration(calib_path)
        except CalibrationError as exc:
            raise DriverError(f"calibration: {exc}") from exc
        super().__init__(native, width, height)
        self.native = native
        self.clock_ns = clock_ns
        self._files, self._models = self._plan()
        self.num_shots = len(self._files) // self.num_cameras
        self._images: list[np.ndarray] = []

    def _find_calibration(self) -> Path:
        for name in CALIBRATION_FILES:
            if (self.folder / name).is_file():
                return self.folder / name
        raise DriverError(f"{self.folder} has no {' or '.join(CALIBRATION_FILES)}; set calibration_file")

    def _plan(self) -> tuple[list[Path], list[CameraModel]]:
        """Files in shot-major order and the camera model (pose, focus) of each."""
        n = self.num_cameras
        frames_yaml = self.folder / FRAMES_FILE
        if frames_yaml.is_file():
            try:
                meta = yaml.safe_load(frames_yaml.read_text())
                entries = sorted(meta["frames"], key=lambda e: (int(e["shot"]), int(e["camera"])))
                files = [self.folder / str(e["file"]) for e in entries]
                models = []
                for i, e in enumerate(entries):
                    if (int(e["shot"]), int(e["camera"])) != divmod(i, n):
                        raise DriverError(f"{frames_yaml}: frames do not form complete shots of {n} cameras "
                                          f"(entry {i} is shot {e['shot']} camera {e['camera']})")
                    cam = self.native.cameras[int(e["camera"])]
                    T = np.asarray(e.get("T_ref_cam", cam.T_ref_cam.ravel()), np.float64).reshape(4, 4)
                    models.append(replace(cam, T_ref_cam=T, focus_distance_m=float(e["focus_distance_m"])))
            except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
                raise DriverError(f"{frames_yaml}: malformed ({exc})") from exc
        else:
            named = {}
            for p in self.folder.iterdir():
                m = FRAME_NAME.fullmatch(p.name)
                if m:
                    named[(int(m.group(1)), int(m.group(2)))] = p
            if named:
                shots = max(s for s, _ in named) + 1
                missing = [f"shot{s}_cam{c}" for s in range(shots) for c in range(n) if (s, c) not in named]
                if missing:
                    raise DriverError(f"{self.folder}: missing images {missing[:5]} for {shots} shots x {n} cameras")
                extra = sorted(str(p.name) for (s, c), p in named.items() if c >= n)
                if extra:
                    raise DriverError(f"{self.folder}: images {extra[:5]} name cameras the calibration lacks ({n})")
                files = [named[(s, c)] for s in range(shots) for c in range(n)]
            else:
                files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            models = [self.native.cameras[i % n] for i in range(len(files))]
        if not files:
            raise DriverError(f"{self.folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        if len(files) % n:
            raise DriverError(f"{self.folder}: {len(files)} images cannot be split into shots of {n} cameras")
        return files, models

    def open(self) -> None:
        images = []
        for path, cam in zip(self._files, self._models, strict=True):
            if not path.is_file():
                raise DriverError(f"{path} is listed but missing")
            img = read_image(path)
            if img.shape[:2] != (cam.height, cam.width):
                raise DriverError(f"{path.name} is {img.shape[1]}x{img.shape[0]} but {cam.name} is calibrated for "
                                  f"{cam.width}x{cam.height}")
            w, h = self.resolution
            if (w, h) != (cam.width, cam.height):
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            images.append(img)
        self._images = images
        super().open()

    def close(self) -> None:
        self._images = []
        super().close()

    def burst(self, sequence_id: int = 0) -> Burst:
        """The whole folder as one burst (every shot of every camera, at the driver's resolution);
        call after `open`."""
        if not self._images:
            raise DriverError(f"{self.folder}: open the folder before reading its burst")
        w, h = self.resolution
        frames = [BurstFrame(camera_index=i % self.num_cameras, shot_index=i // self.num_cameras, image=img,
                             camera=model if (w, h) == (model.width, model.height) else model.scaled(w, h))
                  for i, (model, img) in enumerate(zip(self._models, self._images, strict=True))]
        return Burst(sequence_id=sequence_id, reference_camera=self.native.reference_camera, num_shots=self.num_shots,
                     num_cameras=self.num_cameras, frames=frames)

    def _next_shot(self) -> int:
        return self.trigger_count % self.num_shots

    def set_focus(self, camera: int, focus_m: float) -> float:
        """Recorded images cannot be refocused: returns the focus of the camera's next frame."""
        super().set_focus(camera, focus_m)
        return self._models[self._next_shot() * self.num_cameras + camera].focus_distance_m

    def _expose(self) -> Exposure:
        shot = self._next_shot()
        stamp = self.clock_ns()
        w, h = self.resolution
        out = []
        for c in range(self.num_cameras):
            i = shot * self.num_cameras + c
            model = self._models[i]
            scaled = model if (w, h) == (model.width, model.height) else model.scaled(w, h)
            out.append(CapturedImage(c, self._images[i], scaled, stamp))
        return Exposure.ready(out)
