"""What the page shows of one captured sequence, and the files it offers: the reference image, the
depth map as a colour overlay with its range, depth as .npy / 16-bit PNG, a PLY point cloud, and the
focal plane that a request (slider values and/or a painted mask) resolves to.

The focal plane is resolved with the same `focal_plane.resolve_focal_plane` the refocus node uses,
so the range the page displays is the range the renderer keeps sharp.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import cv2
import numpy as np

from dfocus_capture.calibration import CameraModel
from dfocus_refocus.focal_plane import SharpRange, resolve_focal_plane
from dfocus_refocus.ui.errors import UiError
from dfocus_refocus.ui.graph import PlaneRequest

# Robust display range: a few outliers (sky, sensor glints) must not squash the colour map.
RANGE_PERCENTILES = (0.5, 99.5)
# Near is warm, far is cool: the depth colour map reads like a heat map of closeness.
COLORMAP = cv2.COLORMAP_TURBO


@dataclass
class Scene:
    sequence_id: int
    stamp_ns: int
    image: np.ndarray  # HxWx3 uint8 RGB, the reference camera at shot 0
    camera: CameraModel  # the reference camera at shot 0
    depth: np.ndarray | None = None  # float32 metres, NaN invalid; may be smaller than the image

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])


def display_rgb8(image: np.ndarray) -> np.ndarray:
    """Any mono/RGB 8- or 16-bit image as HxWx3 uint8 for the browser."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise UiError(f"cannot display {image.dtype} images")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def depth_range(depth: np.ndarray) -> tuple[float, float]:
    """Near and far display limits (robust percentiles of the valid depths), far > near."""
    z = depth[np.isfinite(depth) & (depth > 0)]
    if z.size == 0:
        raise UiError("the depth map has no valid pixels")
    lo, hi = (float(v) for v in np.percentile(z, RANGE_PERCENTILES))
    return lo, max(hi, lo * 1.01)


def depth_to_unit(depth: np.ndarray | float, lo: float, hi: float) -> np.ndarray:
    """0 at `lo` .. 1 at `hi` on a log scale (how focus and depth of field behave), clipped."""
    z = np.maximum(np.asarray(depth, dtype=np.float32), np.float32(1e-6))
    t = np.log(z / np.float32(lo)) / np.float32(math.log(hi / lo))
    return np.clip(t, 0.0, 1.0)


def colormap_stops(n: int = 16) -> list[list[int]]:
    """RGB colours along the overlay's colour map from near (first) to far (last), for the colour bar."""
    ramp = np.linspace(255, 0, n).astype(np.uint8).reshape(-1, 1)
    bgr = cv2.applyColorMap(ramp, COLORMAP).reshape(-1, 3)
    return [[int(c) for c in px[::-1]] for px in bgr]


def colorize_depth(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """HxWx4 uint8 RGBA: the colour map over [lo, hi] (log), transparent where depth is invalid."""
    valid = np.isfinite(depth) & (depth > 0)
    t = depth_to_unit(np.where(valid, depth, lo), lo, hi)
    index = np.round((1.0 - t) * 255.0).astype(np.uint8)
    rgb = cv2.applyColorMap(index, COLORMAP)[:, :, ::-1]
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    return np.ascontiguousarray(np.dstack([rgb, alpha]))


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise UiError("JPEG encoding failed")
    return buf.tobytes()


def encode_png(image: np.ndarray) -> bytes:
    """RGB, RGBA or single-channel (8/16-bit) array as PNG bytes."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = image[:, :, ::-1]
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, [2, 1, 0, 3]]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise UiError("PNG encoding failed")
    return buf.tobytes()


def depth_png16(depth: np.ndarray) -> bytes:
    """Depth as a 16-bit PNG in millimetres (0 = invalid, saturating at 65.535 m)."""
    valid = np.isfinite(depth) & (depth > 0)
    mm = np.where(valid, np.clip(np.round(depth * 1000.0), 1, 65535), 0).astype(np.uint16)
    return encode_png(mm)


def depth_npy(depth: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(depth, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def point_cloud_ply(depth: np.ndarray, image: np.ndarray, camera: CameraModel) -> bytes:
    """Binary PLY (x y z float32 in the reference optical frame, REP 103; r g b uint8) of every
    valid depth pixel, coloured from the reference image (resampled to the depth map's size)."""
    h, w = depth.shape[:2]
    sx, sy = w / camera.width, h / camera.height
    fx, fy = camera.fx * sx, camera.fy * sy
    # Pixel centres: a depth pixel (u, v) covers image pixels scaled by (sx, sy).
    cx, cy = (camera.cx + 0.5) * sx - 0.5, (camera.cy + 0.5) * sy - 0.5
    if image.shape[:2] != (h, w):
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    v, u = np.nonzero(np.isfinite(depth) & (depth > 0))
    z = depth[v, u].astype(np.float32)
    vertex = np.empty(z.size, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    vertex["x"] = (u - cx) / fx * z
    vertex["y"] = (v - cy) / fy * z
    vertex["z"] = z
    rgb = display_rgb8(image)[v, u]
    vertex["r"], vertex["g"], vertex["b"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment dfocus point cloud, metres, REP 103 optical frame\n"
        f"element vertex {z.size}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    return header.encode("ascii") + vertex.tobytes()


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, without decoding; None if it is not a PNG."""
    if len(data) < 24 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def decode_mask(data: bytes, width: int, height: int) -> np.ndarray | None:
    """A painted mask (PNG from the page's canvas: alpha or grey, non-zero = keep sharp) as mono8
    0/255 at the reference image's size; None when nothing is painted."""
    size = png_size(data)
    if size is None:
        raise UiError("the painted mask is not a readable PNG")
    if size != (width, height):  # checked on the header: a small file can decode to gigabytes
        raise UiError(f"the painted mask is {size[0]}x{size[1]}, the image is {width}x{height}")
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise UiError("the painted mask is not a readable PNG")
    if raw.ndim == 3:
        raw = raw[:, :, 3] if raw.shape[2] == 4 else raw.max(axis=2)
    if raw.shape[:2] != (height, width):
        raise UiError(f"the painted mask is {raw.shape[1]}x{raw.shape[0]}, the image is {width}x{height}")
    mask = np.where(raw >= 128, 255, 0).astype(np.uint8)
    return mask if mask.any() else None


def resolve_plane(scene: Scene, plane: PlaneRequest, f_number: float, coc_limit_px: float = 1.0) -> SharpRange:
    """The sharp range the refocus node will derive from `plane` (FocalPlane semantics)."""
    mask = plane.mask
    depth = scene.depth
    if mask is not None and depth is not None and mask.shape[:2] != depth.shape[:2]:
        # The mask is in reference-image pixels; the depth map may be coarser.
        mask = cv2.resize(mask, (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_NEAREST)
    return resolve_focal_plane(
        scene.camera,
        focus_m=plane.focus_m,
        near_m=plane.near_m,
        far_m=plane.far_m,
        f_number=f_number or None,
        mask=mask,
        depth=depth,
        coc_limit_px=coc_limit_px,
    )
