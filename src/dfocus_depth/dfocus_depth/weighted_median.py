"""Edge-aware weighted median of a depth map, guided by the reference image.

Why: the network matches at half resolution, so its depth edges fall a pixel or two beside the
image edges, and single mismatches survive in textured areas. A median over a window whose samples
are weighted by their colour likeness to the centre pixel moves each depth edge onto the image
edge (samples across it weigh little) and drops isolated outliers, without the blur a mean would
add at the jump (Ma et al., "Constant Time Weighted Median Filtering for Stereo Matching and
Beyond", ICCV 2013; MC-CNN ends its pipeline with a median filter too). With a confidence map,
each sample's weight is also scaled by its confidence (plus a floor), so the pixels the network
vouches for outvote its guesses. Measured (13x13 span, 25 samples): Middlebury Motorcycle 1.56 ->
1.48 px by colour alone, 1.45 px with the confidence; simulator 5 views 2.04 -> 1.81 / 1.79 px.

The window is sparse, (2 radius + 1)^2 samples `step` pixels apart: as far-reaching as a dense
window step^2 times its size at a fraction of the cost. The median is exact: one numpy sort per
pixel of int64 keys that hold each sample's float32 bits (ordered like the floats, since the values
are >= 0) above its index, which then looks up the sample's weight.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)

RADIUS = 2  # samples each side of the centre: a 5x5 pattern
STEP = 3  # pixels between samples: the pattern spans 13x13 pixels
SIGMA = 10.0 / 255.0  # mean absolute RGB difference (0..1 images) at which a sample weighs 1/e
# A sample's weight scales with (confidence + this): a guess still counts where nothing better is
# near (0.15-0.5 scored alike on Middlebury and the simulator).
CONFIDENCE_FLOOR = 0.3
_INDEX_BITS = 8


class WeightedMedianError(ValueError):
    """Inputs the filter cannot take (shape mismatch, negative or non-finite values, a huge window)."""


def weighted_median(value: np.ndarray, guide: np.ndarray, confidence: np.ndarray | None = None,
                    radius: int = RADIUS, step: int = STEP, sigma: float = SIGMA) -> np.ndarray:
    """value [h,w] float >= 0 (inverse depth), guide [h,w,3] RGB 0..1, confidence [h,w] 0..1 or
    None -> filtered [h,w] float32."""
    h, w = value.shape
    if guide.shape != (h, w, 3):
        raise WeightedMedianError(f"guide {guide.shape} does not match the map {value.shape}")
    if confidence is not None and (confidence.shape != (h, w) or not np.all(np.isfinite(confidence))):
        raise WeightedMedianError(f"confidence {confidence.shape} must be finite and match the map {value.shape}")
    if not np.all(np.isfinite(value)) or value.min(initial=0.0) < 0:
        raise WeightedMedianError("the map must be finite and >= 0")
    taps = [(dy * step, dx * step) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    if len(taps) >= 1 << _INDEX_BITS:
        raise WeightedMedianError(f"radius {radius} gives more than {(1 << _INDEX_BITS) - 1} samples")
    pad = radius * step
    v = torch.from_numpy(np.ascontiguousarray(value, np.float32))
    g = torch.from_numpy(np.ascontiguousarray(guide, np.float32)).permute(2, 0, 1)
    bits = F.pad(v[None, None], (pad,) * 4, mode="replicate")[0, 0].view(torch.int32).long() << _INDEX_BITS
    gp = F.pad(g[None], (pad,) * 4, mode="replicate")[0]
    trust = None
    if confidence is not None:
        c = torch.from_numpy(np.ascontiguousarray(confidence, np.float32)).clamp(0, 1) + CONFIDENCE_FLOOR
        trust = F.pad(c[None, None], (pad,) * 4, mode="replicate")[0, 0]
    keys = torch.empty((len(taps), h, w), dtype=torch.int64)
    weights = torch.empty((len(taps), h, w))
    for k, (dy, dx) in enumerate(taps):
        y, x = pad + dy, pad + dx
        torch.add(bits[y:y + h, x:x + w], k, out=keys[k])
        torch.sum((gp[:, y:y + h, x:x + w] - g).abs_(), dim=0, out=weights[k])
        weights[k].mul_(-1.0 / (3.0 * sigma)).exp_()
        if trust is not None:
            weights[k].mul_(trust[y:y + h, x:x + w])
    # Samples last (one contiguous row per pixel) for the sort and the running weight.
    rows = keys.permute(1, 2, 0).contiguous().numpy()
    rows.sort(axis=2)
    ordered = torch.from_numpy(rows)
    cumulative = weights.permute(1, 2, 0).contiguous().gather(2, ordered & ((1 << _INDEX_BITS) - 1)).cumsum_(2)
    median = (cumulative < cumulative[..., -1:] * 0.5).sum(dim=2, keepdim=True)
    return (ordered.gather(2, median)[..., 0] >> _INDEX_BITS).int().view(torch.float32).numpy()
