"""Registration of a burst (shots x cameras) into the reference view from the reference depth map.

Backward warping: every reference pixel is lifted to 3D with its depth, moved into the source
camera with the frame's pose at exposure, and projected there (cv2.remap samples the source).
A reference pixel is visible in a source frame only if its point is the nearest surface along that
source ray: the reference depth is forward-splatted into the source view as a z-buffer and points
behind it (occluded there) get zero weight. Where the poses are off (hand-held bursts, IMU drift),
a residual homography (ECC on low-passed images, blur-tolerant) refines the warp; frames that
still do not match the reference are rejected with a reason instead of being blended.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import cv2
import numpy as np

from dfocus_capture.burst import Burst, BurstFrame
from dfocus_capture.calibration import CameraModel

# Relative depth slack of the z-test (depth noise, splat rounding).
Z_TOLERANCE = 0.02
# Working width for alignment checks and ECC: low-passed structure only, so full resolution is waste.
ALIGN_WIDTH = 480
# Residual alignment must at least be this good (NCC of low-passed gray, over the common valid area).
MIN_NCC = 0.8
# Below this, "auto" tries a residual alignment (a well-registered frame scores ~0.95-1 even when
# defocused differently; a pose error of a few pixels drops it to ~0.8).
CHECK_NCC = 0.97
# A refinement is kept only if it improves the match by at least this much.
MIN_GAIN = 0.005
# Coarse-to-fine residual alignment: (working width px, low-pass sigma at that width, ECC iterations).
REFINE_STAGES = ((160, 1.0, 60), (ALIGN_WIDTH, 0.8, 15))
MIN_OVERLAP = 0.15
# Frames registered at once: two overlap one frame's single-threaded numpy steps with another's;
# above PARALLEL_MAX_PIXELS one at a time (each frame's temporaries reach ~1 GB at 12 MP).
WORKERS = min(2, os.cpu_count() or 1)
PARALLEL_MAX_PIXELS = 4_000_000


def frame_workers(workers: int, pixels: int) -> int:
    """Threads for per-frame work on images of `pixels` (one above PARALLEL_MAX_PIXELS)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return workers if pixels <= PARALLEL_MAX_PIXELS else 1

Progress = Callable[[float], None]
_T = TypeVar("_T")
_Item = TypeVar("_Item")


def in_order(fn: Callable[[_Item], _T], items: Sequence[_Item], workers: int) -> Iterator[_T]:
    """fn over items on `workers` threads (frames are independent, and OpenCV and numpy release
    the GIL on whole images), the results in the items' order; at most `workers` are computed ahead
    of the caller, and stopping the iteration stops the work after the running ones."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="frames") as pool:
        for start in range(0, len(items), workers):
            yield from pool.map(fn, items[start:start + workers])


class RegistrationError(RuntimeError):
    """The burst cannot be registered at all (no depth, reference frame unusable)."""


@dataclass
class RegisteredFrame:
    shot_index: int
    camera_index: int
    camera: CameraModel
    image: np.ndarray  # HxWx3 uint8 in the reference view
    valid: np.ndarray  # HxW bool: visible in this frame and inside its image
    ncc: float  # low-passed normalized cross-correlation with the reference over `valid`
    refined: bool = False
    warped: bool = True  # False only for the reference frame itself (no resampling)


@dataclass
class RejectedFrame:
    shot_index: int
    camera_index: int
    camera_name: str
    reason: str


@dataclass
class Registration:
    reference: CameraModel
    depth: np.ndarray  # HxW float32 metres in the reference view, holes filled
    frames: list[RegisteredFrame]
    rejected: list[RejectedFrame] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.reference.height, self.reference.width)

    @property
    def reference_frame(self) -> RegisteredFrame:
        return next(f for f in self.frames if not f.warped)

    def summary(self) -> str:
        parts = [f"{len(self.frames)} frames registered"]
        parts += [f"rejected shot {r.shot_index} {r.camera_name}: {r.reason}" for r in self.rejected]
        return "; ".join(parts)


def fill_depth(depth: np.ndarray) -> np.ndarray:
    """NaN / non-positive depths filled from their neighbourhood (push-pull over a pyramid)."""
    z = np.asarray(depth, dtype=np.float32)
    good = np.isfinite(z) & (z > 0)
    if good.all():
        return z.copy()
    if not good.any():
        raise RegistrationError("the depth map has no valid pixel")
    return _push_pull(np.where(good, z, 0).astype(np.float32), good.astype(np.float32))


def _push_pull(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    if min(values.shape) <= 2 or weights.min() > 0:
        return np.asarray(values / np.maximum(weights, 1e-6), dtype=np.float32)
    h, w = values.shape
    small_v = cv2.resize(values * weights, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
    small_w = cv2.resize(weights, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
    coarse = _push_pull(small_v / np.maximum(small_w, 1e-6), np.minimum(small_w * 4, 1.0))
    up = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    out = np.where(weights > 0, values / np.maximum(weights, 1e-6), up)
    return np.asarray(out, dtype=np.float32)


def _undistort_rays(cam: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """Normalized image coordinates (x/z, y/z) of every pixel of `cam`."""
    u, v = np.meshgrid(np.arange(cam.width, dtype=np.float32), np.arange(cam.height, dtype=np.float32))
    if not np.any(cam.D) or cam.distortion_model == "none":
        return (u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy
    if cam.distortion_model == "equidistant":
        pts = np.stack([u.ravel(), v.ravel()], axis=1)[:, None, :].astype(np.float64)
        und = cv2.fisheye.undistortPoints(pts, cam.K, cam.D[:4])
    else:
        pts = np.stack([u.ravel(), v.ravel()], axis=1)[:, None, :].astype(np.float64)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 1e-6)
        und = cv2.undistortPointsIter(pts, cam.K, cam.D, np.eye(3), np.eye(3), criteria)
    und = und.reshape(cam.height, cam.width, 2).astype(np.float32)
    return und[..., 0], und[..., 1]


def _project(cam: CameraModel, X: np.ndarray, Y: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in `cam` of points in its optical frame (Z > 0 assumed where used)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = X / Z, Y / Z
    if np.any(cam.D) and cam.distortion_model in ("plumb_bob", "rational_polynomial"):
        d = np.zeros(8)
        d[: min(8, cam.D.size)] = cam.D[:8]
        k1, k2, p1, p2, k3, k4, k5, k6 = d
        r2 = x * x + y * y
        radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        x, y = (
            x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y,
        )
    elif np.any(cam.D) and cam.distortion_model == "equidistant":
        r = np.sqrt(x * x + y * y)
        th = np.arctan(r)
        k1, k2, k3, k4 = cam.D[:4]
        thd = th * (1 + th**2 * (k1 + th**2 * (k2 + th**2 * (k3 + th**2 * k4))))
        s = np.where(r > 1e-9, thd / np.maximum(r, 1e-9), 1.0)
        x, y = x * s, y * s
    return (cam.fx * x + cam.cx).astype(np.float32), (cam.fy * y + cam.cy).astype(np.float32)


def _zbuffer(u: np.ndarray, v: np.ndarray, z: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest depth per source pixel from the splatted reference points (inf where none landed)."""
    ui = np.rint(u).astype(np.int64)
    vi = np.rint(v).astype(np.int64)
    ok = (ui >= 0) & (ui < width) & (vi >= 0) & (vi < height) & (z > 0) & np.isfinite(z)
    buf = np.full(width * height, np.inf, dtype=np.float32)
    np.minimum.at(buf, vi[ok] * width + ui[ok], z[ok])
    # A 3x3 min closes the pinholes between splatted samples where a surface is stretched in the
    # source view, so background points cannot peek through a foreground surface.
    return np.asarray(cv2.erode(buf.reshape(height, width), np.ones((3, 3), np.uint8)), dtype=np.float32)


def reference_points(ref: CameraModel, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every reference pixel lifted to 3D with its depth (X, Y, Z in the reference optical frame);
    computed once per burst, shared by every frame's warp."""
    xn, yn = _undistort_rays(ref)
    return xn * depth, yn * depth, depth


def warp_maps(
    points: tuple[np.ndarray, np.ndarray, np.ndarray], ref: CameraModel, src: CameraModel
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(map_x, map_y, visible, z_src): where each reference pixel (its `reference_points`) lies in
    `src`, whether its point is seen there (in front, inside, not occluded), and its depth along
    src's optical axis."""
    Xr, Yr, Zr = points
    T = np.linalg.inv(src.T_ref_cam) @ ref.T_ref_cam  # reference optical frame -> source optical frame
    R, t = T[:3, :3].astype(np.float32), T[:3, 3].astype(np.float32)
    Xs = R[0, 0] * Xr + R[0, 1] * Yr + R[0, 2] * Zr + t[0]
    Ys = R[1, 0] * Xr + R[1, 1] * Yr + R[1, 2] * Zr + t[1]
    Zs = R[2, 0] * Xr + R[2, 1] * Yr + R[2, 2] * Zr + t[2]
    u, v = _project(src, Xs, Ys, Zs)
    front = (Zs > 1e-3) & np.isfinite(u) & np.isfinite(v)
    inside = front & (u >= 0) & (u <= src.width - 1) & (v >= 0) & (v <= src.height - 1)
    zbuf = _zbuffer(u, v, np.where(front, Zs, np.nan), src.width, src.height)
    seen = cv2.remap(zbuf, u, v, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    visible = inside & (Zs <= seen * (1 + Z_TOLERANCE) + 1e-3)
    # Bilinear sampling mixes the 2x2 neighbours: keep one pixel away from occlusion boundaries.
    visible = cv2.erode(visible.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    u = np.where(front, u, -1e4).astype(np.float32)
    v = np.where(front, v, -1e4).astype(np.float32)
    return u, v, visible, Zs.astype(np.float32)


def _gray_small(image: np.ndarray, scale: float, sigma: float) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    h, w = gray.shape[:2]
    small = cv2.resize(gray, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.GaussianBlur(small.astype(np.float32), (0, 0), sigma), dtype=np.float32)


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    if mask.sum() < 16:
        return 0.0
    x, y = a[mask], b[mask]
    x = x - x.mean()
    y = y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 1e-9 else 0.0


def _small_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    small = cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return np.asarray(small > 0.999)


def _to_full(scale: float) -> np.ndarray:
    """Pixel coordinates at `scale` -> full resolution (pixel centres: x_full = (x + 0.5) / scale - 0.5)."""
    return np.array([[1 / scale, 0, 0.5 / scale - 0.5], [0, 1 / scale, 0.5 / scale - 0.5], [0, 0, 1]])


def _refine(image: np.ndarray, warped: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Homography W (full-resolution pixels) with warped(W(x)) ~ reference(x), or None if ECC fails.
    A homography is exact for an unknown rotation of the camera (the usual IMU drift); the small
    translation errors of a hand-held array are nearly so at these baselines. Coarse to fine: small
    and strongly low-passed first (wide capture range, blur-insensitive), then finer (precision)."""
    w = image.shape[1]
    W = np.eye(3)
    for width, sigma, iterations in REFINE_STAGES:
        scale = min(1.0, width / w)
        S = _to_full(scale)
        ref_s, mov_s = _gray_small(image, scale, sigma), _gray_small(warped, scale, sigma)
        mask_s = _small_mask(mask, ref_s.shape[:2]).astype(np.uint8)
        guess = (np.linalg.inv(S) @ W @ S).astype(np.float32)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-5)
        try:
            _, found = cv2.findTransformECC(ref_s, mov_s, guess, cv2.MOTION_HOMOGRAPHY, criteria, mask_s, 1)
        except cv2.error:
            return None
        W = S @ np.asarray(found, dtype=np.float64) @ np.linalg.inv(S)
    return np.asarray(W / W[2, 2], dtype=np.float32)


def register_burst(
    burst: Burst,
    depth: np.ndarray,
    *,
    refine: str = "auto",
    progress: Progress | None = None,
    workers: int = WORKERS,
) -> Registration:
    """Every frame of `burst` in the reference view (reference camera, shot 0).

    refine: "auto" (residual alignment for hand-held bursts, or where the low-passed check is weak),
    "always" or "never". `progress(fraction)` is called after each frame (it may raise to stop).
    `workers` frames are registered at once (`frame_workers`); the result does not depend on it.
    """
    if refine not in ("auto", "always", "never"):
        raise ValueError(f"refine must be auto, always or never, got {refine!r}")
    ref_frame = burst.reference
    ref = ref_frame.camera
    h, w = ref.height, ref.width
    if depth.ndim != 2:
        raise RegistrationError(f"depth must be a HxW map, got shape {depth.shape}")
    if depth.shape != (h, w):
        depth = cv2.resize(depth.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
    z = fill_depth(depth)
    ref_img = _as_rgb8(ref_frame.image)
    scale = min(1.0, ALIGN_WIDTH / w)
    ref_small = _gray_small(ref_img, scale, 1.5)
    if float(ref_small.std()) < 1.0:
        raise RegistrationError("the reference frame is blank (no structure to register against)")
    points = reference_points(ref, z)

    def register(f: BurstFrame) -> RegisteredFrame | RejectedFrame:
        if f is ref_frame:
            return RegisteredFrame(f.shot_index, f.camera_index, f.camera, ref_img, np.ones((h, w), bool), 1.0,
                                   warped=False)
        result = _register_frame(f.camera, _as_rgb8(f.image), ref, points, (ref_img, ref_small), scale, refine,
                                 burst.hand_held)
        if isinstance(result, str):
            return RejectedFrame(f.shot_index, f.camera_index, f.camera.name, result)
        image, valid, ncc, refined = result
        return RegisteredFrame(f.shot_index, f.camera_index, f.camera, image, valid, ncc, refined)

    done: list[RegisteredFrame | RejectedFrame] = []
    for i, result in enumerate(in_order(register, burst.frames, frame_workers(workers, h * w))):
        done.append(result)
        if progress is not None:
            progress((i + 1) / len(burst.frames))
    frames = [r for r in done if isinstance(r, RegisteredFrame)]
    rejected = [r for r in done if isinstance(r, RejectedFrame)]
    return Registration(reference=ref, depth=z, frames=frames, rejected=rejected)


def _as_rgb8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise RegistrationError(f"unsupported image type {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def _register_frame(
    cam: CameraModel,
    image: np.ndarray,
    ref: CameraModel,
    points: tuple[np.ndarray, np.ndarray, np.ndarray],
    reference: tuple[np.ndarray, np.ndarray],
    scale: float,
    refine: str,
    hand_held: bool,
) -> tuple[np.ndarray, np.ndarray, float, bool] | str:
    """The registered image, validity, NCC and whether it was refined; or the rejection reason.
    `points` are the reference pixels in 3D (`reference_points`); `reference` is the reference
    image and its low-passed working-resolution gray."""
    ref_img, ref_small = reference
    if float(image[::4, ::4].std()) < 1.0:  # every 16th pixel tells a blank frame as well as all
        return "blank image (no structure)"
    mx, my, visible, _ = warp_maps(points, ref, cam)
    overlap = float(visible.mean())
    if overlap < MIN_OVERLAP:
        return f"only {overlap:.0%} of the reference view is visible in this frame"
    warped = cv2.remap(image, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    shape = ref_small.shape
    mask_small = _small_mask(visible, (shape[0], shape[1]))
    ncc = _ncc(ref_small, _gray_small(warped, scale, 1.5), mask_small)
    refined = False
    if refine == "always" or (refine == "auto" and (hand_held or ncc < CHECK_NCC)):
        W = _refine(ref_img, warped, visible)
        if W is not None:
            gx, gy = np.meshgrid(np.arange(ref.width, dtype=np.float32), np.arange(ref.height, dtype=np.float32))
            wz = W[2, 0] * gx + W[2, 1] * gy + W[2, 2]
            wx = (W[0, 0] * gx + W[0, 1] * gy + W[0, 2]) / wz
            wy = (W[1, 0] * gx + W[1, 1] * gy + W[1, 2]) / wz
            mx2 = cv2.remap(mx, wx, wy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1e4)
            my2 = cv2.remap(my, wx, wy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1e4)
            vis2 = cv2.remap(visible.astype(np.uint8), wx, wy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
            warped2 = cv2.remap(image, mx2, my2, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
            mask2 = _small_mask(vis2.astype(bool), (shape[0], shape[1]))
            ncc2 = _ncc(ref_small, _gray_small(warped2, scale, 1.5), mask2)
            if ncc2 > ncc + MIN_GAIN:
                warped, visible, ncc, refined = warped2, vis2.astype(bool), ncc2, True
    if ncc < MIN_NCC:
        return f"does not match the reference after alignment (NCC {ncc:.2f} < {MIN_NCC})"
    return warped, visible, ncc, refined
