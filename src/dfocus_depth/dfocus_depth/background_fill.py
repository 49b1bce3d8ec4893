"""Background fill of the pixels a depth map cannot vouch for: those the two-way check rejects as
occluded and those the network itself gives little confidence (textureless walls, glare, occlusions).

Why the background: a pixel no view can match is most often hidden behind, or featureless beside,
a nearer surface, so the farther of its nearest reliable neighbours along the epipolar direction
is the likelier answer (the Middlebury convention for occlusions, and what the classical peers'
hole filling does). On Middlebury Motorcycle the network's own guess at its pixels below 0.3
confidence (7 % of them) was 6.7 px off on average: it reaches for the near surface beside them.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from dfocus_capture.calibration import CameraModel
from dfocus_depth.consistency import fill_background
from dfocus_depth.geometry import projection_coefficients

FILL_MEDIAN_PX = 5  # fills along the epipolar direction streak; a median across lines smooths them
# Pixels below this confidence take the fill by default (measured: Middlebury checked pair 1.61 ->
# 1.57 px, simulator 5 views 2.08 -> 2.04 px; 0.2 and 0.5 did no better).
FILL_BELOW_CONFIDENCE = 0.3
# A run of pixels the two-way check rejects is an occlusion only if it is about as wide as the
# disparity jump beside it; the network's half-resolution matching smears edges by a few pixels.
# Longer runs are mismatches the other camera made too (a repeating pattern): the background would
# be a guess, so they keep their own estimate. Measured with the check on stereo pairs: simulator
# 4.01 -> 3.56 px, Middlebury 1.44 -> 1.42 px; at 4 px Middlebury got worse (1.49), at 16 px
# the simulator gained a little (3.54) and Middlebury less (1.43).
OCCLUSION_MARGIN_PX = 8.0


def epipolar_along_rows(ref: CameraModel, other: CameraModel) -> bool:
    """Whether the other camera's epipolar lines run mostly along the reference's rows."""
    _, b = projection_coefficients(ref, other)
    return bool(abs(b[0]) >= abs(b[1]))


def occlusion_sized(failed: np.ndarray, inv: np.ndarray, along_rows: bool, px_per_inv: float,
                    margin_px: float = OCCLUSION_MARGIN_PX) -> np.ndarray:
    """The pixels of `failed` [h,w] that an occlusion can explain: their run along the epipolar
    direction, between passing pixels on both sides, is no longer than the disparity jump between
    those two (`px_per_inv` * inverse depth difference) plus `margin_px`. Runs reaching the image
    border always qualify (the strip the other camera never sees)."""
    f, v = (failed, inv) if along_rows else (failed.T, inv.T)
    h, w = f.shape
    idx = np.broadcast_to(np.arange(w), (h, w))
    left = np.maximum.accumulate(np.where(f, -1, idx), axis=1)
    right = (w - 1 - np.maximum.accumulate(np.where(f[:, ::-1], -1, idx), axis=1))[:, ::-1]
    inner = (left >= 0) & (right < w)
    jump = px_per_inv * np.abs(np.take_along_axis(v, left.clip(0, w - 1), 1)
                               - np.take_along_axis(v, right.clip(0, w - 1), 1))
    fits = f & (~inner | (right - left - 1 <= jump + margin_px))
    return fits if along_rows else fits.T


def fill_unreliable(inv: np.ndarray, reliable: np.ndarray, along_rows: bool) -> np.ndarray:
    """Inverse depth [h,w] with the pixels where `reliable` is False replaced by the background of
    their reliable neighbours, smoothed across lines; lines with no reliable pixel keep theirs."""
    if reliable.all():
        return inv
    filled = fill_background(torch.from_numpy(np.ascontiguousarray(inv, np.float32))[None, None],
                             torch.from_numpy(np.ascontiguousarray(reliable))[None, None],
                             torch.tensor([along_rows]))[0, 0].numpy()
    smooth = np.asarray(cv2.medianBlur(filled, FILL_MEDIAN_PX))
    return np.where(reliable, filled, smooth).astype(np.float32)
