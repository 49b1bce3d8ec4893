"""Depth and confidence for the reference camera of a burst: the one entry point the CLI, the node,
the evaluation and the benchmarks share."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from dfocus_capture.burst import Burst
from dfocus_capture.calibration import CameraModel
from dfocus_depth.background_fill import (
    FILL_BELOW_CONFIDENCE,
    epipolar_along_rows,
    fill_unreliable,
    occlusion_sized,
)
from dfocus_depth.census_refine import census_refine
from dfocus_depth.cross_check import cross_check, partner_index, swap_reference
from dfocus_depth.geometry import (
    DepthInputError,
    DepthRange,
    WorkingViews,
    default_range,
    prepare_views,
    select_views,
    to_rgb_float,
    undistorted,
    working_size,
)
from dfocus_depth.inputs import disparity_scale, network_inputs
from dfocus_depth.model import NUM_PLANES, DepthNet
from dfocus_depth.multiview_refine import multiview_refine
from dfocus_depth.upsample import upsample
from dfocus_depth.weighted_median import weighted_median

WEIGHTS = Path(__file__).resolve().parent / "weights" / "depth_cnn.pt"
MAX_SOURCES = 12  # most source views per depth map, by default
# When to run the two-way check: always, never, or for two-camera bursts (a stereo pair: each view
# is the other's only witness, so a disagreement marks an occlusion or a mismatch; in a larger array
# a pixel the partner cannot see may still be right, seen by the others).
CROSS_CHECK_MODES = ("auto", "on", "off")
# When to run the census refinement (`census_refine`), the same three: by default for stereo pairs
# only, where it helps on real data; in larger arrays the network's multi-view estimate beats a
# refinement against one view.
CENSUS_REFINE_MODES = CROSS_CHECK_MODES
# The photometric refinement against every source view (`multiview_refine`): on, or off.
REFINE_MODES = ("on", "off")
# Images wider than this are refined at this width (a 12 MP map at full resolution would take seconds
# and a gigabyte for a correction a tenth of a pixel wide).
REFINE_MAX_WIDTH = 1280


def _runs(mode: str, burst: Burst) -> bool:
    """Whether a step in one of those modes runs for this burst: on, or auto on a stereo pair."""
    return mode == "on" or (mode == "auto" and burst.num_cameras == 2)


class WeightsError(RuntimeError):
    """The weights file is missing, unreadable or does not fit the network."""


@dataclass
class DepthResult:
    depth: np.ndarray  # HxW float32 metres along the optical axis, NaN invalid, +inf beyond the sweep
    confidence: np.ndarray  # HxW float32 0..1
    camera: CameraModel  # the reference camera (full resolution) the maps belong to
    depth_range: DepthRange
    num_views: int
    seconds: float
    cross_checked: float | None = None  # share of pixels the two-way check replaced (None: it did not run)
    filled: float = 0.0  # share of pixels given the background fill (check failures and low confidence)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DepthInputError("device 'cuda' requested but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise DepthInputError(f"device must be cpu, cuda or auto, got {name!r}")
    return torch.device(name)


def load_model(path: Path | str = WEIGHTS, device: torch.device | None = None) -> DepthNet:
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise WeightsError(f"cannot load depth weights {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise WeightsError(f"{path} is not a dfocus depth checkpoint")
    net = DepthNet(planes=int(ckpt.get("planes", NUM_PLANES)))
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit the network: {exc}") from exc
    net.eval()
    return net.to(device or torch.device("cpu"))


class DepthEstimator:
    """Loads the network once; `estimate(burst)` per burst (thread-compatible, not re-entrant).

    With the two-way check (`cross_check`: auto, on or off; see CROSS_CHECK_MODES), a second pass
    takes the source with the widest baseline as the reference and the two maps are checked
    against each other (`cross_check.cross_check`): about twice the time, for cleaner depth edges
    and occlusions. Pixels that fail the check in runs an occlusion can explain
    (`background_fill.occlusion_sized`), and those whose confidence is below `fill_below`, take the
    background of their reliable neighbours (`background_fill`); their confidence stays low.
    With `edge_median` an edge-aware weighted median (`weighted_median`) then puts depth edges on
    image edges and drops isolated mismatches (about 40 ms at 320x240 on this CPU). With
    `census_refine` (the same modes as the check) the upsampled map is refined against the partner
    view at full resolution (`census_refine.census_refine`; about 0.15 s at 741x500). With `refine`
    on, Gauss-Newton steps on the photometric error of every source view then bring the map to
    sub-pixel precision at the images' resolution, up to REFINE_MAX_WIDTH
    (`multiview_refine.multiview_refine`; about 0.1 s at 640x480 with 4 sources).

    The constructor's defaults are the depth node's (config/depth.yaml; a test keeps them equal), so
    the benchmarks and the refocus evaluation score what the graph publishes.
    """

    def __init__(
        self,
        weights: Path | str = WEIGHTS,
        device: str = "auto",
        max_width: int = 320,
        max_sources: int = MAX_SOURCES,
        cross_check: str = "auto",
        fill_below: float = FILL_BELOW_CONFIDENCE,
        edge_median: bool = True,
        census_refine: str = "auto",
        refine: str = "on",
    ) -> None:
        if max_width < 32:
            raise DepthInputError(f"working width must be >= 32 pixels, got {max_width}")
        if cross_check not in CROSS_CHECK_MODES:
            raise DepthInputError(f"cross_check must be one of {', '.join(CROSS_CHECK_MODES)}, got {cross_check!r}")
        if census_refine not in CENSUS_REFINE_MODES:
            raise DepthInputError(f"census_refine must be one of {', '.join(CENSUS_REFINE_MODES)}, "
                                  f"got {census_refine!r}")
        if refine not in REFINE_MODES:
            raise DepthInputError(f"refine must be one of {', '.join(REFINE_MODES)}, got {refine!r}")
        if not 0.0 <= fill_below <= 1.0:
            raise DepthInputError(f"fill_below must be a confidence in 0..1, got {fill_below}")
        self.device = pick_device(device)
        self.weights = Path(weights)
        self.net = load_model(weights, self.device)
        self.max_width = max_width
        self.max_sources = max_sources
        self.cross_check = cross_check
        self.fill_below = fill_below
        self.edge_median = edge_median
        self.census_refine = census_refine
        self.refine = refine

    def with_weights(self, weights: Path | str) -> DepthEstimator:
        """The same settings with other weights (loaded now; this estimator is left as it is)."""
        other = copy.copy(self)
        other.net, other.weights = load_model(weights, self.device), Path(weights)
        return other

    def _infer(self, views: WorkingViews, rng: DepthRange) -> tuple[np.ndarray, np.ndarray]:
        """Inverse depth and confidence at working resolution."""
        inputs = {k: v.to(self.device) for k, v in network_inputs(views, rng, self.net.planes).items()}
        with torch.inference_mode():
            out = self.net(**inputs)
        return out["inv_depth"][0, 0].float().cpu().numpy(), out["confidence"][0, 0].float().cpu().numpy()

    def estimate(
        self, burst: Burst, depth_range: DepthRange | None = None, confidence_threshold: float = 0.0
    ) -> DepthResult:
        start = time.perf_counter()
        views = prepare_views(burst, self.max_width, self.max_sources)
        rng = depth_range or default_range(views.ref_camera, views.src_cameras)
        inv, conf = self._infer(views, rng)
        replaced: float | None = None
        k = partner_index(views)
        along_rows = epipolar_along_rows(views.ref_camera, views.src_cameras[k])
        unreliable = conf < self.fill_below
        if _runs(self.cross_check, burst):
            inv_partner, _ = self._infer(swap_reference(views, k), rng)
            inv, failed = cross_check(inv, inv_partner, views.ref_camera, views.src_cameras[k])
            failed = occlusion_sized(failed, inv, along_rows, disparity_scale(views))
            conf = np.where(failed, 0.0, conf).astype(np.float32)  # a fill is a guess, not a measurement
            replaced = float(failed.mean())
            unreliable |= failed
        inv = fill_unreliable(inv, ~unreliable, along_rows)
        if self.edge_median:
            inv = weighted_median(np.maximum(inv, 0.0), views.reference, conf)
        inv_full, conf_full = upsample(np.stack([inv, conf]), views.reference, views.full_reference)
        if _runs(self.census_refine, burst):
            partner = burst.frames[select_views(burst, self.max_sources)[1][k]]
            refined = census_refine(
                np.maximum(inv_full, 0.0), views.full_reference, views.full_camera,
                to_rgb_float(undistorted(partner.image, partner.camera)), partner.camera,
                views.full_camera.width / views.ref_camera.width)
            inv_full = np.clip(refined, rng.inv_min, rng.inv_max)  # the swept range is a promise
        if self.refine == "on":
            # Shot 0 of every other camera: later shots differ by sub-millimetre shifts, add almost no
            # parallax to refine against, and each costs as much as a camera (a 5x5 burst at 1280x960:
            # the refinement took 1.65 s with 12 sources, 0.7 s with 4, here).
            one_per_camera = select_views(burst, min(self.max_sources, burst.num_cameras - 1))[1]
            inv_full = _refined(np.maximum(inv_full, 0.0), views, burst, one_per_camera, rng)
        # REP 118: NaN = no estimate (here: not confident enough), +inf = at the infinitely far plane.
        depth = np.full(inv_full.shape, np.nan, dtype=np.float32)
        confident = conf_full >= confidence_threshold
        near = confident & (inv_full > 1e-9)
        depth[near] = 1.0 / inv_full[near]
        depth[confident & ~near] = np.inf
        return DepthResult(
            depth=depth,
            confidence=np.clip(conf_full, 0.0, 1.0).astype(np.float32),
            camera=views.full_camera,
            depth_range=rng,
            num_views=len(views.sources) + 1,
            seconds=time.perf_counter() - start,
            cross_checked=replaced,
            filled=float(unreliable.mean()),
        )


def _refined(inv: np.ndarray, views: WorkingViews, burst: Burst, sources: list[int], rng: DepthRange) -> np.ndarray:
    """`multiview_refine` at the images' resolution, or at REFINE_MAX_WIDTH for larger images (the
    correction found there is upsampled onto the full-resolution map)."""
    cam = views.full_camera
    full = cam.width <= REFINE_MAX_WIDTH
    w, h = (cam.width, cam.height) if full else working_size(cam.width, cam.height, REFINE_MAX_WIDTH)

    def at_size(image: np.ndarray) -> np.ndarray:
        return image if full else np.asarray(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))

    frames = [burst.frames[i] for i in sources]
    small = at_size(inv)
    refined = multiview_refine(
        small, at_size(views.full_reference), cam if full else cam.scaled(w, h),
        [(to_rgb_float(at_size(undistorted(f.image, f.camera))), f.camera if full else f.camera.scaled(w, h))
         for f in frames], (rng.inv_min, rng.inv_max))
    if full:
        return refined
    correction = cv2.resize(refined - small, (cam.width, cam.height), interpolation=cv2.INTER_LINEAR)
    return np.clip(inv + correction, rng.inv_min, rng.inv_max).astype(np.float32)


def colourise(depth: np.ndarray) -> np.ndarray:
    """Inverse-depth turbo colour map (BGR uint8) for a quick look; invalid pixels black."""
    inv = np.where(np.isfinite(depth) & (depth > 0), 1.0 / np.where(depth > 0, depth, 1.0), np.nan)
    finite = inv[np.isfinite(inv)]
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    norm = np.clip((inv - lo) / max(hi - lo, 1e-9), 0, 1)
    img = cv2.applyColorMap((np.nan_to_num(norm) * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    img[~np.isfinite(inv)] = 0
    return np.asarray(img)
