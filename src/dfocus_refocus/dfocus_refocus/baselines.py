"""Peers the fusion is measured against: Debian's enfuse in focus-stacking mode, and image metrics
(PSNR / SSIM over the whole frame or a mask such as "within 10 px of a depth edge")."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
from skimage.metrics import structural_similarity

ENFUSE = "enfuse"
ENFUSE_FOCUS_STACK = ["--exposure-weight=0", "--saturation-weight=0", "--contrast-weight=1", "--hard-mask"]


class BaselineError(RuntimeError):
    """A peer tool is missing or failed."""


def enfuse_available() -> bool:
    return shutil.which(ENFUSE) is not None


def enfuse_focus_stack(images: list[np.ndarray], masks: list[np.ndarray] | None = None) -> np.ndarray:
    """Run enfuse's focus-stacking mode on RGB uint8 images (masks become the TIFF alpha channel,
    which enfuse honours). Returns RGB uint8."""
    if not enfuse_available():
        raise BaselineError("enfuse is not installed (apt install enfuse)")
    with tempfile.TemporaryDirectory(prefix="dfocus-enfuse-") as tmp:
        paths = []
        for i, img in enumerate(images):
            bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            if masks is not None:
                alpha = (masks[i] > 0).astype(np.uint8) * 255
                bgr = np.dstack([bgr, alpha])
            path = str(Path(tmp) / f"in{i:03d}.tif")
            cv2.imwrite(path, bgr)
            paths.append(path)
        out = str(Path(tmp) / "out.tif")
        proc = subprocess.run(
            [ENFUSE, *ENFUSE_FOCUS_STACK, "-o", out, *paths], capture_output=True, text=True, timeout=600
        )
        fused = cv2.imread(out, cv2.IMREAD_UNCHANGED)
        if proc.returncode != 0 or fused is None:
            raise BaselineError(f"enfuse failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
    rgb = np.asarray(cv2.cvtColor(fused[:, :, :3], cv2.COLOR_BGR2RGB))
    return np.asarray(rgb // 257, dtype=np.uint8) if rgb.dtype == np.uint16 else rgb


def depth_edge_band(depth: np.ndarray, radius_px: int = 10, jump: float = 0.05) -> np.ndarray:
    """Pixels within `radius_px` of a depth discontinuity (relative jump > `jump` between neighbours)."""
    z = np.asarray(depth, dtype=np.float32)
    dz_x = np.abs(np.diff(z, axis=1)) > jump * np.minimum(z[:, 1:], z[:, :-1])
    dz_y = np.abs(np.diff(z, axis=0)) > jump * np.minimum(z[1:], z[:-1])
    edges = np.zeros(z.shape, np.uint8)
    edges[:, 1:] |= dz_x
    edges[:, :-1] |= dz_x
    edges[1:] |= dz_y
    edges[:-1] |= dz_y
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1, 2 * radius_px + 1))
    return np.asarray(cv2.dilate(edges, k) > 0)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    diff = a.astype(np.float64) - b.astype(np.float64)
    sq = diff * diff
    mse = float(sq[mask].mean()) if mask is not None else float(sq.mean())
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    _, full = structural_similarity(a, b, channel_axis=2, data_range=255, full=True)
    per_pixel = full.mean(axis=2)
    return float(per_pixel[mask].mean()) if mask is not None else float(per_pixel.mean())
