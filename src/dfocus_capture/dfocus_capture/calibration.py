"""Camera array calibration: the YAML format of config/camera_array.yaml and Middlebury calib.txt.

Pure Python (numpy + PyYAML). Every reader of a calibration in dfocus goes through
`load_calibration`, so the CLI, the nodes and the tests accept the same files.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant", "none")


class CalibrationError(ValueError):
    """A calibration file or object is malformed or does not match the images it describes."""


@dataclass(frozen=True)
class CameraModel:
    """One camera of the array: pinhole intrinsics, extrinsics and the thin-lens optics."""

    name: str
    width: int
    height: int
    K: np.ndarray  # 3x3 float64, pixels
    D: np.ndarray  # distortion coefficients
    T_ref_cam: np.ndarray  # 4x4 float64: pose of this camera's optical frame in the reference frame
    focus_distance_m: float
    focal_length_mm: float
    f_number: float
    pixel_size_um: float
    distortion_model: str = "plumb_bob"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _check_camera(self)

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def aperture_mm(self) -> float:
        """Entrance pupil diameter f / N."""
        return self.focal_length_mm / self.f_number

    def coc_px(
        self,
        depth_m: np.ndarray | float,
        focus_m: float | None = None,
        f_number: float | None = None,
    ) -> np.ndarray:
        """Thin-lens circle-of-confusion diameter in pixels for objects at `depth_m`.

        c = A * |z - s| / z * f / (s - f), with A = f / N the aperture, s the focus distance.
        """
        s = self.focus_distance_m if focus_m is None else float(focus_m)
        n = self.f_number if f_number is None else float(f_number)
        f = self.focal_length_mm * 1e-3
        if not (s > f and n > 0):
            raise CalibrationError(f"{self.name}: focus {s} m must exceed the focal length and N > 0")
        z = np.asarray(depth_m, dtype=np.float64)
        aperture = f / n
        with np.errstate(divide="ignore", invalid="ignore"):
            c_m = aperture * np.abs(z - s) / z * f / (s - f)
        return np.asarray(c_m / (self.pixel_size_um * 1e-6), dtype=np.float64)

    def scaled(self, width: int, height: int) -> CameraModel:
        """The same camera read out at another resolution (binning / cropping-free scaling)."""
        if width <= 0 or height <= 0:
            raise CalibrationError(f"{self.name}: resolution must be positive, got {width}x{height}")
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0, 0] *= sx
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 1] *= sy
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        # Larger output pixels integrate more of the sensor: the pixel pitch grows with the scale.
        return replace(self, width=width, height=height, K=K, pixel_size_um=self.pixel_size_um / sx)

    def with_focus(self, focus_distance_m: float) -> CameraModel:
        return replace(self, focus_distance_m=float(focus_distance_m))

    @property
    def baseline_to_ref_m(self) -> float:
        return float(np.linalg.norm(self.T_ref_cam[:3, 3]))


@dataclass(frozen=True)
class ArrayCalibration:
    """The whole array. `cameras[0]` need not be the reference; use `reference_index`."""

    reference_camera: str
    cameras: tuple[CameraModel, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if not self.cameras:
            raise CalibrationError("calibration lists no cameras")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise CalibrationError(f"camera names must be unique, got {names}")
        if self.reference_camera not in names:
            raise CalibrationError(f"reference_camera {self.reference_camera!r} is not one of {names}")

    @property
    def reference_index(self) -> int:
        return [c.name for c in self.cameras].index(self.reference_camera)

    @property
    def reference(self) -> CameraModel:
        return self.cameras[self.reference_index]

    def __len__(self) -> int:
        return len(self.cameras)

    def camera(self, name: str) -> CameraModel:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise CalibrationError(f"no camera named {name!r} in the calibration")

    def scaled(self, width: int, height: int) -> ArrayCalibration:
        """Every camera read out at width x height (all cameras share one resolution)."""
        return replace(self, cameras=tuple(c.scaled(width, height) for c in self.cameras))

    def subset(self, count: int) -> ArrayCalibration:
        """The first `count` cameras, keeping the reference."""
        if not 1 <= count <= len(self.cameras):
            raise CalibrationError(f"cannot take {count} of {len(self.cameras)} cameras")
        keep = list(self.cameras[:count])
        if self.reference not in keep:
            keep[-1] = self.reference
        return replace(self, cameras=tuple(keep))

    def check_images(self, shapes: list[tuple[int, ...]]) -> None:
        """Raise CalibrationError unless the image shapes match the cameras one to one."""
        if len(shapes) % len(self.cameras) != 0:
            raise CalibrationError(
                f"{len(shapes)} images cannot be split over {len(self.cameras)} calibrated cameras"
            )
        for i, shape in enumerate(shapes):
            cam = self.cameras[i % len(self.cameras)]
            if tuple(shape[:2]) != (cam.height, cam.width):
                raise CalibrationError(
                    f"image {i} is {shape[1]}x{shape[0]} but camera {cam.name} is calibrated for "
                    f"{cam.width}x{cam.height}"
                )


def _finite_array(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{what}: not a list of numbers ({exc})") from exc
    if arr.size != int(np.prod(shape)):
        raise CalibrationError(f"{what}: expected {int(np.prod(shape))} numbers, got {arr.size}")
    arr = arr.reshape(shape)
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{what}: contains NaN or infinity")
    return arr


def _check_camera(cam: CameraModel) -> None:
    where = f"camera {cam.name!r}"
    if cam.width <= 0 or cam.height <= 0:
        raise CalibrationError(f"{where}: image size must be positive")
    # NaN compares false with everything, so finiteness first (a NaN fx passed `fx <= 0`).
    for key in ("K", "D", "T_ref_cam"):
        if not np.all(np.isfinite(getattr(cam, key))):
            raise CalibrationError(f"{where}: {key} holds NaN or infinity: {np.asarray(getattr(cam, key)).tolist()}")
    if cam.K.shape != (3, 3) or cam.K[0, 0] <= 0 or cam.K[1, 1] <= 0:
        raise CalibrationError(f"{where}: camera_matrix needs positive fx, fy")
    if not np.allclose(cam.K[2], [0, 0, 1]) or cam.K[1, 0] != 0:
        raise CalibrationError(f"{where}: camera_matrix must be [fx s cx; 0 fy cy; 0 0 1], got {cam.K.tolist()}")
    if cam.T_ref_cam.shape != (4, 4):
        raise CalibrationError(f"{where}: T_ref_cam must be 4x4")
    R = cam.T_ref_cam[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or not math.isclose(
        float(np.linalg.det(R)), 1.0, abs_tol=1e-5
    ):
        raise CalibrationError(f"{where}: T_ref_cam rotation is not orthonormal")
    if not np.allclose(cam.T_ref_cam[3], [0, 0, 0, 1]):
        raise CalibrationError(f"{where}: T_ref_cam last row must be 0 0 0 1")
    if cam.distortion_model not in DISTORTION_MODELS:
        raise CalibrationError(f"{where}: unknown distortion_model {cam.distortion_model!r}")
    for key in ("focus_distance_m", "focal_length_mm", "f_number", "pixel_size_um"):
        v = getattr(cam, key)
        if not (math.isfinite(v) and v > 0):
            raise CalibrationError(f"{where}: {key} must be a positive number, got {v}")
    if cam.focus_distance_m <= cam.focal_length_mm * 1e-3:
        raise CalibrationError(f"{where}: focus_distance_m must exceed the focal length")


_REQUIRED = ("name", "image_width", "image_height", "camera_matrix", "T_ref_cam", "focus_distance_m",
             "focal_length_mm", "f_number", "pixel_size_um")
_KNOWN = set(_REQUIRED) | {"distortion_model", "distortion_coefficients"}


def camera_from_dict(d: dict[str, Any]) -> CameraModel:
    if not isinstance(d, dict):
        raise CalibrationError(f"camera entry must be a mapping, got {type(d).__name__}")
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise CalibrationError(f"camera {d.get('name', '?')!r}: missing keys {missing}")
    name = str(d["name"])
    for key in ("image_width", "image_height"):
        if isinstance(d[key], bool) or not isinstance(d[key], int):
            raise CalibrationError(f"camera {name!r}: {key} must be a whole number of pixels, got {d[key]!r}")
    width, height = d["image_width"], d["image_height"]
    numbers = {}
    for key in ("focus_distance_m", "focal_length_mm", "f_number", "pixel_size_um"):
        if isinstance(d[key], bool) or not isinstance(d[key], (int, float)):
            raise CalibrationError(f"camera {name!r}: {key} must be a number, got {d[key]!r}")
        numbers[key] = float(d[key])
    dist = d.get("distortion_coefficients", [0.0] * 5) or []
    if not isinstance(dist, list):
        raise CalibrationError(f"camera {name!r}: distortion_coefficients must be a list of numbers, got {dist!r}")
    D = _finite_array(dist, (len(dist),), f"camera {name!r} distortion_coefficients")
    return CameraModel(
        name=name,
        width=width,
        height=height,
        K=_finite_array(d["camera_matrix"], (3, 3), f"camera {name!r} camera_matrix"),
        D=D,
        T_ref_cam=_finite_array(d["T_ref_cam"], (4, 4), f"camera {name!r} T_ref_cam"),
        distortion_model=str(d.get("distortion_model", "plumb_bob")),
        extra={k: v for k, v in d.items() if k not in _KNOWN},
        **numbers,
    )


def camera_to_dict(cam: CameraModel) -> dict[str, Any]:
    return {
        "name": cam.name,
        "image_width": cam.width,
        "image_height": cam.height,
        "camera_matrix": [float(x) for x in cam.K.ravel()],
        "distortion_model": cam.distortion_model,
        "distortion_coefficients": [float(x) for x in cam.D],
        "T_ref_cam": [float(x) for x in cam.T_ref_cam.ravel()],
        "focus_distance_m": cam.focus_distance_m,
        "focal_length_mm": cam.focal_length_mm,
        "f_number": cam.f_number,
        "pixel_size_um": cam.pixel_size_um,
        **cam.extra,
    }


def calibration_from_dict(d: Any, source: str = "") -> ArrayCalibration:
    if not isinstance(d, dict) or "cameras" not in d:
        raise CalibrationError(f"{source or 'calibration'}: expected a mapping with a 'cameras' list")
    cams_raw = d["cameras"]
    if not isinstance(cams_raw, list) or not cams_raw:
        raise CalibrationError(f"{source or 'calibration'}: 'cameras' must be a non-empty list")
    cams = tuple(camera_from_dict(c) for c in cams_raw)
    ref = str(d.get("reference_camera", cams[0].name))
    return ArrayCalibration(reference_camera=ref, cameras=cams, source=source)


def calibration_to_dict(cal: ArrayCalibration) -> dict[str, Any]:
    return {"reference_camera": cal.reference_camera, "cameras": [camera_to_dict(c) for c in cal.cameras]}


def save_calibration(cal: ArrayCalibration, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(calibration_to_dict(cal), sort_keys=False))


# Middlebury calib.txt: rectified pair, cam0=[f 0 cx; 0 f cy; 0 0 1], baseline in mm, doffs in px.
_MB_MATRIX = re.compile(r"\[([^\]]*)\]")

# Optics the Middlebury file does not state; defaults of a DSLR-like rig (infinite focus
# for a pinhole-sharp stereo pair). Overridable with extra keys in the file.
_MB_OPTICS = {"focus_distance_m": 1000.0, "focal_length_mm": 50.0, "f_number": 16.0}


def parse_middlebury_calib(text: str, source: str = "calib.txt") -> ArrayCalibration:
    """A Middlebury stereo calib.txt as a two-camera array (cam1 to the right of cam0).

    Z = f * B / (d + doffs) holds for the rectified pair; cam1's principal point may differ from
    cam0's by doffs, which the two camera matrices carry exactly.
    """
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, val = line.split("=", 1)
        values[key.strip()] = val.strip()
    try:
        mats = []
        for key in ("cam0", "cam1"):
            m = _MB_MATRIX.fullmatch(values[key])
            if m is None:
                raise CalibrationError(f"{source}: {key} is not a [..] matrix")
            nums = [float(x) for x in re.split(r"[\s;,]+", m.group(1).strip()) if x]
            mats.append(_finite_array(nums, (3, 3), f"{source}: {key}"))
        baseline_m = float(values["baseline"]) * 1e-3
        width, height = int(values["width"]), int(values["height"])
    except KeyError as exc:
        raise CalibrationError(f"{source}: missing key {exc.args[0]!r}") from exc
    except ValueError as exc:
        raise CalibrationError(f"{source}: {exc}") from exc
    if baseline_m <= 0:
        raise CalibrationError(f"{source}: baseline must be positive")
    optics = {k: float(values.get(k, v)) for k, v in _MB_OPTICS.items()}
    fx = float(mats[0][0, 0])
    pixel_um = float(values["pixel_size_um"]) if "pixel_size_um" in values else optics["focal_length_mm"] / fx * 1e3
    cams = []
    for i, K in enumerate(mats):
        T = np.eye(4)
        T[0, 3] = baseline_m * i
        cams.append(
            CameraModel(
                name=f"cam{i}",
                width=width,
                height=height,
                K=K,
                D=np.zeros(5),
                T_ref_cam=T,
                pixel_size_um=pixel_um,
                focus_distance_m=optics["focus_distance_m"],
                focal_length_mm=optics["focal_length_mm"],
                f_number=optics["f_number"],
                extra={k: float(values[k]) for k in ("doffs", "ndisp", "vmin", "vmax") if k in values},
            )
        )
    return ArrayCalibration(reference_camera="cam0", cameras=tuple(cams), source=source)


def load_calibration(path: str | Path) -> ArrayCalibration:
    """Read a dfocus YAML calibration or a Middlebury calib.txt (detected by content)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalibrationError(f"cannot read calibration {p}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CalibrationError(f"{p}: not a text file (a YAML calibration or a Middlebury calib.txt): {exc}") from exc
    if re.search(r"^\s*cam0\s*=\s*\[", text, re.MULTILINE):
        return parse_middlebury_calib(text, str(p))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CalibrationError(f"{p}: not valid YAML ({exc})") from exc
    return calibration_from_dict(data, str(p))


DEFAULT_CALIBRATION = "camera_array.yaml"


def load_array_calibration(path: str | Path = "") -> ArrayCalibration:
    """`load_calibration(path)`, or with an empty path the shipped config/camera_array.yaml (found
    by `dds.find_config`): the one default every node, CLI and benchmark uses."""
    if not str(path):
        from dfocus_capture.dds import find_config  # config lookup lives with the DDS profile's

        found = find_config(DEFAULT_CALIBRATION)
        if found is None:
            raise CalibrationError(f"no calibration given and config/{DEFAULT_CALIBRATION} not found "
                                   "(set DFOCUS_CONFIG_DIR)")
        path = found
    return load_calibration(path)
