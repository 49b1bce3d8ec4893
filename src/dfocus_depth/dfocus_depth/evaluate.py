"""Depth accuracy of the network against OpenCV StereoSGBM (with and without WLS) in one run, on
held-out simulator scenes and on the real Middlebury Motorcycle pair (scikit-image).

Errors are disparities in pixels of the stereo pair the classical methods see (the reference and
the camera to its right); the network turns its depth into that disparity, d = f B / Z - doffs.
Every method searches the same disparities: 0..ndisp of the Middlebury calib.txt, or on the
simulator a bound on the scene's (its largest disparity + 10 %, in steps of 16 for SGBM).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from dfocus_capture.burst import Burst, burst_from_images
from dfocus_capture.calibration import ArrayCalibration, load_calibration
from dfocus_capture.drivers.folder import read_image
from dfocus_depth.dataset import subset_burst
from dfocus_depth.estimator import DepthEstimator
from dfocus_depth.geometry import DepthRange, middlebury_range
from dfocus_depth.stereo_baselines import fill_scanline, sgbm, sgbm_filled_median, sgbm_wls

# The development split's simulator scenes: disjoint from the training (0..) and validation (900_000..) seeds.
DEV_SEED_BASE = 5_000_000
EDGE_BAND_PX = 2
# Regions also scored by their share > 2 px: where SGBM answers, both methods are compared on equal terms.
SGBM_VALID = "SGBM's valid pixels"
BAD2_REGIONS = (SGBM_VALID,)

# Middlebury 2014 Motorcycle at quarter scale as shipped by scikit-image (500 rows x 741 columns):
# f and doffs are the full-resolution calibration divided by 4, the baseline is unchanged.
MOTORCYCLE_CALIB = """cam0=[994.978 0 311.193; 0 994.978 254.877; 0 0 1]
cam1=[994.978 0 342.279; 0 994.978 254.877; 0 0 1]
doffs=31.086
baseline=193.001
width=741
height=500
ndisp=70
"""


@dataclass
class Case:
    """One stereo pair (for the classical methods) inside a burst (for the network)."""

    name: str
    burst: Burst
    left: np.ndarray
    right: np.ndarray
    gt_disp: np.ndarray  # NaN where unknown
    f_px: float
    baseline_m: float
    doffs: float
    num_disparities: int
    depth_range: DepthRange | None
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    light_field: bool = False  # a small-baseline case, also scored by the light-field figures


@dataclass
class Tally:
    """Pixel sums pooled over cases, per region."""

    abs_err: float = 0.0
    sq_err: float = 0.0
    bad2: int = 0
    bad007: int = 0
    bad_rel5: int = 0
    rel: float = 0.0
    covered: int = 0
    total: int = 0

    def add(self, pred: np.ndarray, gt: np.ndarray, region: np.ndarray, f_b: float, doffs: float) -> None:
        valid = region & np.isfinite(gt)
        ok = valid & np.isfinite(pred)
        err = np.abs(pred[ok] - gt[ok])
        z_gt = f_b / (gt[ok] + doffs)
        # A disparity at or below zero means 'infinitely far': cap depth at twice the scene's range.
        z_cap = 2.0 * float(np.max(f_b / (gt[valid] + doffs))) if valid.any() else np.inf
        with np.errstate(divide="ignore"):
            z = np.minimum(f_b / np.maximum(pred[ok] + doffs, 1e-9), z_cap)
        rel = np.abs(z - z_gt) / z_gt
        self.abs_err += float(err.sum())
        self.sq_err += float((err.astype(np.float64) ** 2).sum())
        self.bad2 += int((err > 2.0).sum())
        self.bad007 += int((err > 0.07).sum())
        self.bad_rel5 += int((rel > 0.05).sum())
        self.rel += float(rel.sum())
        self.covered += int(ok.sum())
        self.total += int(valid.sum())

    def row(self, light_field: bool = False) -> dict[str, float]:
        """Pooled figures; with `light_field`, also BadPix0.07 (share > 0.07 px) and MSE x 100 (px^2),
        the light-field benchmarks' figures, meaningful where the pair's baseline is one view step."""
        n = max(self.covered, 1)
        row = {"epe_px": self.abs_err / n, "bad2": self.bad2 / n, "coverage": self.covered / max(self.total, 1),
               "abs_rel": self.rel / n, "bad_rel5": self.bad_rel5 / n}
        if light_field:
            row.update({"bad007": self.bad007 / n, "mse100": 100.0 * self.sq_err / n})
        return row


def edge_band(gt_disp: np.ndarray, jump_px: float = 1.0, band: int = EDGE_BAND_PX) -> np.ndarray:
    """Pixels within `band` of a disparity jump (occlusion boundaries)."""
    d = np.nan_to_num(gt_disp)
    jumps = np.zeros(d.shape, bool)
    jumps[:, 1:] |= np.abs(np.diff(d, axis=1)) > jump_px
    jumps[1:, :] |= np.abs(np.diff(d, axis=0)) > jump_px
    k = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    return cv2.dilate(jumps.astype(np.uint8), k).astype(bool)


def occluded(gt_disp: np.ndarray, margin_px: float = 1.0) -> np.ndarray:
    """Left-view pixels the right view does not see: outside its frame (the left border strip), or
    behind a nearer surface that lands on the same right-view column (a z-buffer per row)."""
    H, W = gt_disp.shape
    valid = np.isfinite(gt_disp)
    d = np.where(valid, gt_disp, -np.inf)
    target = np.round(np.arange(W)[None, :] - np.where(valid, gt_disp, 0.0)).astype(int)
    inside = valid & (target >= 0) & (target < W)
    nearest = np.full((H, W), -np.inf)
    rows = np.broadcast_to(np.arange(H)[:, None], (H, W))
    np.maximum.at(nearest, (rows[inside], target[inside]), d[inside])
    behind = inside & (d < nearest[rows, np.clip(target, 0, W - 1)] - margin_px)
    return valid & (~inside | behind)


def sgbm_disparity_bound(bound: float) -> int:
    """A disparity bound rounded up to the multiple of 16 StereoSGBM needs (at least 16)."""
    return int(math.ceil(bound / 16) * 16) or 16


def middlebury_case(name: str, left: np.ndarray, right: np.ndarray, disp: np.ndarray, calib_path: Path,
                    num_disparities: int | None = None) -> Case:
    """A rectified pair (RGB uint8) with its ground-truth left disparity (non-finite: unknown) and a
    Middlebury calib.txt, read like any user's file. SGBM searches `num_disparities`, by default
    the calibration's ndisp rounded up to 16; the network sweeps 0..ndisp."""
    text = calib_path.read_text()
    cal = load_calibration(calib_path)
    rng = middlebury_range(text)
    if rng is None:
        raise ValueError(f"{calib_path} declares no ndisp: the methods would not search the same disparities")
    cam = cal.cameras[0]
    f_b = cam.fx * float(cal.cameras[1].T_ref_cam[0, 3])
    doffs = float(cam.extra.get("doffs", 0.0))
    ndisp = f_b / rng.near_m - doffs  # the largest disparity the network sweeps
    gt = np.where(np.isfinite(disp), disp, np.nan).astype(np.float32)
    return Case(
        name=name, burst=burst_from_images([left, right], cal), left=left, right=right, gt_disp=gt,
        f_px=cam.fx, baseline_m=float(cal.cameras[1].T_ref_cam[0, 3]), doffs=doffs,
        num_disparities=num_disparities or sgbm_disparity_bound(ndisp), depth_range=rng,
        masks={"occlusion edges": edge_band(gt), "occluded in the right view": occluded(gt)},
    )


def motorcycle_case(calib_dir: Path) -> Case:
    """The real Middlebury pair, read through a Middlebury calib.txt like any user's file."""
    from skimage.data import stereo_motorcycle

    left, right, disp = stereo_motorcycle()
    calib_path = calib_dir / "motorcycle_calib.txt"
    calib_path.write_text(MOTORCYCLE_CALIB)
    # SGBM keeps the 64 disparities it was first given (the pair's reach 60).
    return middlebury_case("Middlebury Motorcycle (real, 741x500)", left, right, disp, calib_path, 64)


def perturbed_cases(case: Case, seed: int = 0) -> dict[str, Case]:
    """The pair as another rig would deliver it: the right view at another exposure (gain 0.7,
    gamma 1.2), both views with sensor noise (sigma 4 of 255), the right view 0.5 px lower (a
    rectification error). Same ground truth and masks."""
    rng = np.random.default_rng(seed)
    right = case.right.astype(np.float32)

    def noisy(img: np.ndarray) -> np.ndarray:
        return np.clip(img + rng.normal(0.0, 4.0, img.shape), 0, 255).astype(np.uint8)

    lower = np.array([[1, 0, 0], [0, 1, 0.5]], np.float32)
    variants = {
        "right view at another exposure": (case.left, np.clip(255 * (0.7 * right / 255) ** 1.2, 0, 255)
                                           .astype(np.uint8)),
        "sensor noise": (noisy(case.left), noisy(case.right)),
        "right view 0.5 px lower": (case.left, np.asarray(cv2.warpAffine(
            case.right, lower, (right.shape[1], right.shape[0]), borderMode=cv2.BORDER_REPLICATE))),
    }
    cal = case.burst.calibration()
    return {name: replace(case, name=f"{case.name}, {name}", left=left, right=right_view,
                          burst=burst_from_images([left, right_view], cal))
            for name, (left, right_view) in variants.items()}


def middlebury_folder_case(folder: Path) -> Case:
    """A Middlebury 2014/2021-style folder: im0.png, im1.png, calib.txt, disp0.pfm (or disp0GT.pfm).
    Raises ValueError, or DriverError for an unreadable image."""
    pfm = next((folder / n for n in ("disp0.pfm", "disp0GT.pfm") if (folder / n).is_file()), None)
    disp = None if pfm is None else cv2.imread(str(pfm), cv2.IMREAD_UNCHANGED)
    if disp is None:
        raise ValueError(f"{folder} has no readable disp0.pfm or disp0GT.pfm")
    left, right = read_image(folder / "im0.png"), read_image(folder / "im1.png")
    if disp.shape != left.shape[:2] or right.shape != left.shape:
        raise ValueError(f"{folder}: im0 {left.shape[:2]}, im1 {right.shape[:2]} and the disparity "
                         f"{disp.shape} differ in size")
    h, w = left.shape[:2]
    return middlebury_case(f"{folder.name} ({w}x{h})", left, right, disp.astype(np.float32), folder / "calib.txt")


def project_array(width: int) -> ArrayCalibration:
    """The project's 5-camera array (config/camera_array.yaml: 30 mm cross, focus 0.4-5 m) at `width`."""
    from dfocus_capture.dds import find_config

    path = find_config("camera_array.yaml")
    if path is None:
        raise FileNotFoundError("config/camera_array.yaml not found")
    full = load_calibration(path)
    return full.scaled(width, round(full.reference.height * width / full.reference.width))


def synthetic_cases(count: int, width: int, seed_base: int = DEV_SEED_BASE,
                    calibration: ArrayCalibration | None = None, light_field: bool = False) -> list[Case]:
    """Held-out simulator scenes seen by `calibration` (default: the project's array at `width`),
    the reference first and a camera to its right; `light_field` marks small-baseline cases."""
    from dfocus_capture.sim import simulate_burst

    cal = calibration if calibration is not None else project_array(width)
    cases = []
    for i in range(count):
        sb = simulate_burst(cal, seed_base + i, num_shots=1, shift_amplitude_mm=0.0, noise=True)
        cases.append(scene_case(f"sim seed {seed_base + i}", sb.burst, sb.gt_depth, cal,
                                {"specular": sb.specular_mask.astype(bool),
                                 "textureless": sb.textureless_mask.astype(bool)}, light_field))
    return cases


def scene_case(name: str, burst: Burst, depth: np.ndarray, cal: ArrayCalibration, masks: dict[str, np.ndarray],
               light_field: bool = False) -> Case:
    """A rendered burst and its reference's true depth as a `Case` for the reference and its right
    neighbour in `cal` (the true calibration: the burst may carry an erroneous one). `masks` are
    scored after the occlusion-edge band."""
    right = right_neighbour(cal)
    baseline = float(cal.cameras[right].T_ref_cam[0, 3])
    f_b = cal.reference.fx * baseline
    gt = (f_b / depth).astype(np.float32)
    # Like Middlebury's ndisp: a bound on the scene's disparities that every method searches.
    ndisp = sgbm_disparity_bound(float(np.max(gt)) * 1.1)
    return Case(
        name=name, burst=burst, left=burst.reference.image, right=burst.frame(0, right).image, gt_disp=gt,
        f_px=cal.reference.fx, baseline_m=baseline, doffs=0.0, num_disparities=ndisp,
        depth_range=DepthRange(near_m=f_b / ndisp, far_m=math.inf),
        masks={"occlusion edges": edge_band(gt), **masks}, light_field=light_field,
    )


def right_neighbour(cal: ArrayCalibration) -> int:
    """The camera forming a rectified pair with the reference: same rotation, pure +x offset."""
    best, dist = -1, math.inf
    for i, c in enumerate(cal.cameras):
        t = c.T_ref_cam[:3, 3]
        if t[0] > 0 and abs(t[1]) < 1e-9 and abs(t[2]) < 1e-9 and np.allclose(c.T_ref_cam[:3, :3], np.eye(3)):
            if t[0] < dist:
                best, dist = i, float(t[0])
    if best < 0:
        raise ValueError("the calibration has no camera to the right of the reference for a rectified pair")
    return best


Method = Callable[[Case], np.ndarray]


def network_method(estimator: DepthEstimator, two_views: bool, max_width: int | None = None,
                   cross_check: str = "auto", edge_median: bool = True, case_range: bool = True,
                   census_refine: str = "auto", refine: str | None = None) -> Method:
    """The network on a case; with `case_range` False it sweeps its default range (a quarter-image
    disparity at the widest baseline, as the depth node without near_m) instead of the case's."""
    estimator = copy.copy(estimator)  # shares the network, own working resolution, check and median
    estimator.cross_check = cross_check
    estimator.edge_median = edge_median
    estimator.census_refine = census_refine
    if refine is not None:
        estimator.refine = refine
    if max_width is not None:
        estimator.max_width = max_width

    def run(case: Case) -> np.ndarray:
        burst = case.burst
        if two_views and burst.num_cameras > 2:
            burst = subset_burst(burst, [burst.reference_index, right_neighbour(burst.calibration())])
        res = estimator.estimate(burst, case.depth_range if case_range else None)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (case.f_px * case.baseline_m / res.depth - case.doffs).astype(np.float32)
    return run


def evaluate(cases: list[Case], methods: dict[str, Method],
             predictions: dict[tuple[str, str], np.ndarray] | None = None) -> list[dict[str, object]]:
    """One row per method: pooled metrics over all cases, overall and per masked region. Each
    method's disparity map is kept in `predictions[(method, case name)]` when that is given."""
    rows: list[dict[str, object]] = []
    for name, method in methods.items():
        overall = Tally()
        regions: dict[str, Tally] = {}
        seconds = 0.0
        for case in cases:
            start = time.perf_counter()
            pred = method(case)
            seconds += time.perf_counter() - start
            if predictions is not None:
                predictions[(name, case.name)] = pred
            f_b = case.f_px * case.baseline_m
            everywhere = np.ones(case.gt_disp.shape, bool)
            overall.add(pred, case.gt_disp, everywhere, f_b, case.doffs)
            for region, mask in case.masks.items():
                regions.setdefault(region, Tally()).add(pred, case.gt_disp, mask, f_b, case.doffs)
        light_field = bool(cases) and all(c.light_field for c in cases)
        row: dict[str, object] = {"method": name, **overall.row(light_field), "seconds": seconds / max(len(cases), 1)}
        for region, tally in regions.items():
            row[f"epe_px {region}"] = tally.row()["epe_px"] if tally.total else float("nan")
            if region in BAD2_REGIONS:
                row[f"bad2 {region}"] = tally.row()["bad2"] if tally.total else float("nan")
        rows.append(row)
    return rows


def default_methods(estimator: DepthEstimator, multi_view: bool, widths: tuple[int, ...] = ()) -> dict[str, Method]:
    """The network (all views, with and without the edge median, and the classical methods' pair in
    one pass and two-way checked, with and without the census refinement; at each working width in
    `widths`, or the estimator's own) next to the `classical_methods`."""
    methods: dict[str, Method] = {}
    for width in widths or (estimator.max_width,):
        tag = f", working width {width}" if widths else ""
        if multi_view:
            methods[f"dfocus CNN (all views{tag})"] = network_method(estimator, False, width)
            methods[f"dfocus CNN (all views, no edge median, no refinement: the depth node's fast setting{tag})"] = (
                network_method(estimator, False, width, edge_median=False, refine="off"))
            methods[f"dfocus CNN (all views, its default range instead of the scene's{tag})"] = network_method(
                estimator, False, width, case_range=False)
        methods[f"dfocus CNN (the stereo pair, one pass{tag})"] = network_method(estimator, True, width, "off")
        methods[f"dfocus CNN (the stereo pair, two-way checked{tag})"] = network_method(estimator, True, width, "on")
        methods[f"dfocus CNN (the stereo pair, two-way checked, no census refinement{tag})"] = network_method(
            estimator, True, width, "on", census_refine="off")
    return {**methods, **classical_methods()}


def classical_methods() -> dict[str, Method]:
    """SGBM, SGBM with its holes filled (and with the network's edge median too), SGBM + WLS."""
    methods: dict[str, Method] = {}
    methods["OpenCV StereoSGBM"] = lambda c: sgbm(c.left, c.right, c.num_disparities)
    methods["OpenCV StereoSGBM, holes filled (scanline background)"] = lambda c: fill_scanline(
        sgbm(c.left, c.right, c.num_disparities))
    methods["OpenCV StereoSGBM, holes filled, then the network's edge median"] = lambda c: sgbm_filled_median(
        c.left, c.right, c.num_disparities)
    methods["SGBM + WLS (own FGS)"] = lambda c: sgbm_wls(c.left, c.right, c.num_disparities)
    return methods


def markdown_table(title: str, rows: list[dict[str, object]]) -> str:
    keys = [k for k in rows[0] if k != "method"]
    head = "| method | " + " | ".join(_label(k) for k in keys) + " |"
    sep = "|---|" + "---:|" * len(keys)
    lines = [f"### {title}", "", head, sep]
    for r in rows:
        lines.append(f"| {r['method']} | " + " | ".join(_fmt(k, r[k]) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _label(key: str) -> str:
    return {"epe_px": "EPE px", "bad2": "> 2 px", "coverage": "coverage", "abs_rel": "abs rel",
            "bad_rel5": "depth > 5 % off", "bad007": "BadPix0.07", "mse100": "MSE x100",
            "seconds": "s / map", "sgbm epe_px": "SGBM EPE px", "sgbm bad2": "SGBM > 2 px",
            "sgbm bad_rel5": "SGBM depth > 5 % off", "sgbm coverage": "SGBM coverage",
            "sgbm filled epe_px": "SGBM filled EPE px", "sgbm bad007": "SGBM BadPix0.07",
            "adapted epe_px": "EPE px after adapt", "adapted bad2": "> 2 px after adapt", "change": "EPE change",
            "photometric before": "photometric error", "photometric after": "photometric error after adapt",
            }.get(key, key.replace("epe_px ", "EPE px, ").replace("bad2 ", "> 2 px, "))


def _fmt(key: str, value: object) -> str:
    v = float(value)  # type: ignore[arg-type]
    if math.isnan(v):
        return "-"
    if key == "change":
        return f"{100 * v:+.1f} %"
    if key.startswith("photometric"):
        return f"{v:.4f}"
    if key.removeprefix("sgbm ").removeprefix("adapted ") in ("bad2", "coverage", "bad_rel5", "bad007") \
            or key.startswith("bad2 "):
        return f"{100 * v:.1f} %"
    if key == "abs_rel":
        return f"{v:.3f}"
    return f"{v:.3f}" if key == "seconds" else f"{v:.2f}"
