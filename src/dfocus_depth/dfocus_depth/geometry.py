"""Plane-sweep geometry for the reference camera: inverse-depth planes, per-view projection
coefficients, and the working-resolution views of a burst.

A reference pixel x (homogeneous) on the fronto-parallel plane at depth z projects into view i as
    x_i ~ K_i R_i^T K_ref^-1 x  -  K_i R_i^T t_i / z  =  A_i x + b_i * (1/z),
with (R_i, t_i) = T_ref_cam of view i. It is linear in inverse depth, so every plane of the sweep
is one multiply-add away, which is why the sweep is uniform in inverse depth.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from dfocus_capture.burst import Burst
from dfocus_capture.calibration import CameraModel, parse_middlebury_calib


class DepthInputError(ValueError):
    """A burst cannot be turned into a depth map (one view only, bad range, degenerate poses)."""


@dataclass(frozen=True)
class DepthRange:
    """The swept depth interval in metres; far_m may be math.inf (inverse depth 0)."""

    near_m: float
    far_m: float

    def __post_init__(self) -> None:
        if not (self.near_m > 0 and self.far_m > self.near_m):
            raise DepthInputError(f"depth range needs 0 < near < far, got {self.near_m}..{self.far_m}")

    @property
    def inv_min(self) -> float:
        return 0.0 if np.isinf(self.far_m) else 1.0 / self.far_m

    @property
    def inv_max(self) -> float:
        return 1.0 / self.near_m


# Largest disparity (pixels, widest baseline) that the default range must reach, as a share of
# the reference width: objects closer than that are rarely matchable by any view anyway.
DEFAULT_MAX_DISPARITY_FRACTION = 0.25


def baselines(ref: CameraModel, sources: list[CameraModel]) -> list[float]:
    """Distance (m) from the reference's centre to each source's."""
    return [float(np.linalg.norm(c.T_ref_cam[:3, 3] - ref.T_ref_cam[:3, 3])) for c in sources]


def default_range(ref: CameraModel, sources: list[CameraModel]) -> DepthRange:
    """Infinity down to the depth at which the widest baseline sees a quarter-width disparity."""
    widest = max(baselines(ref, sources), default=0.0)
    if widest <= 1e-6:
        raise DepthInputError("all views share the reference's position: no baseline to triangulate from")
    near = ref.fx * widest / (DEFAULT_MAX_DISPARITY_FRACTION * ref.width)
    return DepthRange(near_m=near, far_m=float("inf"))


def middlebury_range(calib_text: str) -> DepthRange | None:
    """Depths of disparities 0..ndisp declared by a Middlebury calib.txt (None without ndisp)."""
    values = dict(line.split("=", 1) for line in calib_text.splitlines() if "=" in line)
    if "ndisp" not in values or "cam0" not in values:
        return None
    cal = parse_middlebury_calib(calib_text)
    f_b = cal.cameras[0].fx * float(cal.cameras[1].T_ref_cam[0, 3])
    doffs = float(cal.cameras[0].extra.get("doffs", 0.0))
    far = f_b / doffs if doffs > 0 else float("inf")
    return DepthRange(near_m=f_b / (float(values["ndisp"]) + doffs), far_m=far)


def inverse_depth_planes(rng: DepthRange, count: int) -> np.ndarray:
    """`count` plane inverse depths, ascending (far to near), uniform in 1/z."""
    return np.linspace(rng.inv_min, rng.inv_max, count, dtype=np.float64)


def projection_coefficients(ref: CameraModel, view: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """(A 3x3, b 3) with x_view ~ A x_ref + b / z for reference pixels x_ref at depth z.

    Both cameras' poses are in the same (reference-at-shot-0) frame, so the reference frame of
    the burst need not be the reference camera itself.
    """
    T_view_ref = np.linalg.inv(view.T_ref_cam) @ ref.T_ref_cam
    R, t = T_view_ref[:3, :3], T_view_ref[:3, 3]
    A = view.K @ R @ np.linalg.inv(ref.K)
    b = view.K @ t
    return A, b


def project(inv: np.ndarray, x: np.ndarray, y: np.ndarray, A: np.ndarray,
            b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (x, y) at inverse depth `inv` -> their pixel in the other camera and inverse depth
    there, through that camera's `projection_coefficients` (A, b)."""
    h = [A[r, 0] * x + A[r, 1] * y + A[r, 2] + b[r] * inv for r in range(3)]
    z = np.where(h[2] > 1e-9, h[2], np.nan)
    return h[0] / z, h[1] / z, inv / z


def undistorted(image: np.ndarray, cam: CameraModel) -> np.ndarray:
    """The image as seen by the distortion-free pinhole `cam.K` (identity for zero distortion)."""
    if cam.distortion_model == "none" or not np.any(cam.D):
        return image
    if cam.distortion_model == "equidistant":
        return np.asarray(cv2.fisheye.undistortImage(image, cam.K, cam.D[:4], Knew=cam.K))
    return np.asarray(cv2.undistort(image, cam.K, cam.D))


def to_rgb_float(image: np.ndarray) -> np.ndarray:
    """HxWx3 float32 in 0..1 from uint8/uint16 RGB or mono."""
    scale = 65535.0 if image.dtype == np.uint16 else 255.0 if image.dtype == np.uint8 else 1.0
    arr = image.astype(np.float32) / scale
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3])


@dataclass
class WorkingViews:
    """The reference and source views resized to one working resolution, with matching cameras."""

    reference: np.ndarray  # h x w x 3 float32 0..1
    sources: list[np.ndarray]
    ref_camera: CameraModel  # scaled to the working resolution
    src_cameras: list[CameraModel]
    full_reference: np.ndarray  # the reference image at its own resolution, float32 0..1
    full_camera: CameraModel


# Below this on either side a frame holds too few pixels for a matching window and the network's
# stride-8 features (a 1x1 burst came out as "100 % valid" depth).
MIN_FRAME_PX = 32


def check_frame_sizes(sizes: Iterable[tuple[int, int]], max_megapixels: float) -> None:
    """DepthInputError naming the first (width, height) above `max_megapixels` or below
    MIN_FRAME_PX a side: checked on the message's header fields, before any image is decoded."""
    for k, (width, height) in enumerate(sizes):
        if min(width, height) < MIN_FRAME_PX:
            raise DepthInputError(f"frame {k} is {width}x{height}, below the {MIN_FRAME_PX}x{MIN_FRAME_PX} pixels "
                                  "depth needs")
        if width * height > max_megapixels * 1e6:
            raise DepthInputError(f"frame {k} is {width}x{height} ({width * height / 1e6:.3g} MP), above the "
                                  f"{max_megapixels:g} MP per frame this node accepts (max_frame_megapixels)")


def working_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """Keep the aspect; shrink to at most max_width, rounded to a multiple of 8 (network strides)."""
    scale = min(1.0, max_width / width)
    w = max(16, int(round(width * scale / 8)) * 8)
    h = max(16, int(round(height * scale / 8)) * 8)
    return w, h


def select_views(burst: Burst, max_sources: int) -> tuple[int, list[int]]:
    """Reference frame index and up to `max_sources` source frame indices.

    Frames beyond one per camera are extra views: shot 0 of every other camera first (widest
    baselines), then the remaining shots in order, each camera's later shots adding the small
    actuator/hand shifts.
    """
    if burst.num_cameras < 2:
        # Shots of one camera differ only by actuator/hand shifts (sub-millimetre): no usable baseline.
        raise DepthInputError(f"a depth map needs at least two views from two cameras; the burst has "
                              f"{burst.num_cameras} camera ({len(burst.frames)} frames)")
    ref_index = burst.reference_index  # shot 0
    order = [i for i in range(burst.num_cameras) if i != ref_index]
    order += [i for i in range(burst.num_cameras, len(burst.frames))]
    return ref_index, order[:max(1, max_sources)]


def prepare_views(burst: Burst, max_width: int, max_sources: int) -> WorkingViews:
    ref_i, src_is = select_views(burst, max_sources)
    ref_frame = burst.frames[ref_i]
    full_cam = ref_frame.camera
    w, h = working_size(full_cam.width, full_cam.height, max_width)
    full_ref = to_rgb_float(undistorted(ref_frame.image, full_cam))

    def resized(img: np.ndarray) -> np.ndarray:
        if img.shape[1] == w and img.shape[0] == h:
            return img
        interp = cv2.INTER_AREA if img.shape[1] > w else cv2.INTER_LINEAR
        return np.asarray(cv2.resize(img, (w, h), interpolation=interp))

    sources, cams = [], []
    for i in src_is:
        f = burst.frames[i]
        sources.append(to_rgb_float(resized(undistorted(f.image, f.camera))))  # resized first: 12 MP is costly
        cams.append(f.camera.scaled(w, h))
    return WorkingViews(
        reference=resized(full_ref),
        sources=sources,
        ref_camera=full_cam.scaled(w, h),
        src_cameras=cams,
        full_reference=full_ref,
        full_camera=full_cam,
    )
