"""The fixed test split of `dfocus eval-depth`: scene families no training or tuning step ever saw.

The development split (for tuning) is `evaluate.synthetic_cases`: held-out seeds of the capture
simulator that renders the training data. The test split (for reporting) differs in generator,
renderer and photographs (`layered_scenes`), and adds the real Middlebury Motorcycle pair
(`evaluate.motorcycle_case`) and its perturbed versions. Every family is seeded, so its figures
are reproducible; none of its parameters was chosen by looking at a method's score on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from dfocus_capture.calibration import ArrayCalibration, CameraModel
from dfocus_depth.estimator import DepthEstimator
from dfocus_depth.evaluate import (
    DEV_SEED_BASE,
    SGBM_VALID,
    Case,
    Method,
    classical_methods,
    evaluate,
    network_method,
    occluded,
    project_array,
    scene_case,
    synthetic_cases,
)
from dfocus_depth.layered_scenes import Capture, layered_scene, load_test_photographs, render_burst
from dfocus_depth.stereo_baselines import sgbm

TEST_SEED_BASE = 7_000_000  # disjoint from training (0..), validation (900_000..) and the dev split


def pinhole_camera(name: str, width: int, height: int, fx: float, x_m: float, focus_m: float, f_number: float,
            focal_mm: float = 6.0) -> CameraModel:
    T = np.eye(4)
    T[0, 3] = x_m
    K = np.array([[fx, 0, (width - 1) / 2], [0, fx, (height - 1) / 2], [0, 0, 1.0]])
    return CameraModel(name=name, width=width, height=height, K=K, D=np.zeros(5), T_ref_cam=T,
                       focus_distance_m=focus_m, focal_length_mm=focal_mm, f_number=f_number,
                       pixel_size_um=focal_mm / fx * 1e3)


def stereo_rig(width: int = 960, height: int = 720, fx: float = 900.0, baseline_m: float = 0.12) -> ArrayCalibration:
    """A wide-baseline rectified pair (disparities to about 220 px at 0.5 m), both focused at 1.5 m."""
    cams = tuple(pinhole_camera(name, width, height, fx, x, 1.5, 2.8)
                 for name, x in (("left", 0.0), ("right", baseline_m)))
    return ArrayCalibration(reference_camera="left", cameras=cams)


def light_field_rig(size: int = 512, fx: float = 600.0, step_m: float = 0.002) -> ArrayCalibration:
    """Five views on a line `step_m` apart, the reference in the middle (first), as a light-field
    camera's sub-apertures: small apertures, everything nearly in focus."""
    offsets = (0, 1, -1, 2, -2)
    cams = tuple(pinhole_camera(f"view{o:+d}", size, size, fx, o * step_m, 0.5, 8.0) for o in offsets)
    return ArrayCalibration(reference_camera="view+0", cameras=cams)


@dataclass(frozen=True)
class Family:
    """A kind of test scene: a rig, layer depths (background first, each jittered +-10 % per seed),
    what the layers hold, and how the rig delivers its images."""

    name: str
    rig: str  # "array", "stereo" or "light_field"
    depths_m: tuple[float, ...]
    slant: float = 0.0
    bars: bool = False
    flat_patch: bool = False
    mirror: bool = False
    capture: Capture = field(default_factory=Capture)
    light_field: bool = False  # scored per view step (BadPix0.07, MSE x100)


FAMILIES = (
    Family("photograph layers at 0.8, 1.4 and 3.0 m (5-camera array)", "array", (5.0, 3.0, 1.4, 0.8)),
    Family("slanted photograph planes (5-camera array)", "array", (5.0, 2.2, 1.0), slant=0.45),
    Family("thin bars, a textureless patch, a reflective panel (5-camera array)", "array", (4.5, 1.8),
           bars=True, flat_patch=True, mirror=True),
    Family("rig imperfections: exposure and tone differences, noise, vignetting, calibration error "
           "(5-camera array)", "array", (5.0, 3.0, 1.4, 0.8),
           capture=Capture(exposure_spread=0.3, gamma_spread=0.15, gain=6.0, vignetting=0.5,
                           principal_point_error_px=0.3, rotation_error_deg=0.03)),
    Family("wide-baseline stereo pair (disparities to about 220 px)", "stereo", (6.0, 2.0, 1.0, 0.5)),
    Family("light-field-style 5 views (disparities within 6 px per view step)", "light_field",
           (2.0, 0.7, 0.35, 0.22), capture=Capture(gain=1.0), light_field=True),
)


def _rig(kind: str) -> ArrayCalibration:
    if kind == "stereo":
        return stereo_rig()
    if kind == "light_field":
        return light_field_rig()
    return project_array(640)


def family_cases(family: Family, count: int, photos: Sequence[np.ndarray], seed_base: int = TEST_SEED_BASE
                 ) -> list[Case]:
    """`count` seeded scenes of one family, each as a `Case` for the reference and its right neighbour."""
    cal = _rig(family.rig)
    cases = []
    for k in range(count):
        seed = seed_base + 1000 * FAMILIES.index(family) + k
        rng = np.random.default_rng(seed)
        depths = tuple(z * float(rng.uniform(0.9, 1.1)) for z in family.depths_m)
        scene = layered_scene(cal, depths, photos, seed, slant=family.slant, bars=family.bars,
                              flat_patch=family.flat_patch, mirror=family.mirror)
        burst, depth = render_burst(scene, cal, family.capture, seed)
        case = scene_case(f"{family.name}, seed {seed}", burst, depth, cal, {}, family.light_field)
        case.masks["occluded in the right view"] = occluded(case.gt_disp)
        if scene.flat.any():
            case.masks["textureless"] = scene.flat
        if scene.mirror.any():
            case.masks["reflective"] = scene.mirror
        cases.append(with_sgbm_region(case))
    return cases


def build_dev_split(count: int, width: int) -> dict[str, list[Case]]:
    """The development split: held-out seeds of the training simulator on the project's array at
    `width`, on a wide-baseline pair and on a light-field-style line of views (the test split's
    rig kinds, so a change can be tuned for them without looking at the test split)."""
    wide = stereo_rig(480, 360, 450.0)  # disparities to about 180 px at the simulator's 0.3 m
    return {
        f"simulator scenes, 5-camera array at {width} px": synthetic_cases(count, width, DEV_SEED_BASE),
        "simulator scenes, wide-baseline stereo pair at 480 px": synthetic_cases(count, 480, DEV_SEED_BASE + 100,
                                                                                 wide),
        "simulator scenes, light-field-style 5 views at 384 px": synthetic_cases(
            count, 384, DEV_SEED_BASE + 200, light_field_rig(384, 450.0), light_field=True),
    }


def build_test_split(count: int, words: Sequence[str] = ()) -> dict[str, list[Case]]:
    """Every family's cases (only those whose name contains one of `words`, if any), `count`
    scenes each, keyed by family name."""
    photos = load_test_photographs()
    chosen = [f for f in FAMILIES if not words or any(w in f.name for w in words)]
    if not chosen:
        raise ValueError(f"no test family matches {list(words)}; they are: {[f.name for f in FAMILIES]}")
    return {f.name: family_cases(f, count, photos) for f in chosen}


def with_sgbm_region(case: Case) -> Case:
    """The case with SGBM's valid pixels as a region (so methods are also scored where SGBM answers)."""
    valid = np.isfinite(sgbm(case.left, case.right, case.num_disparities))
    return replace(case, masks={**case.masks, SGBM_VALID: valid})


NETWORK = "dfocus CNN (all views, as `dfocus depth`)"
NETWORK_NODE = "dfocus CNN (all views, the depth node's defaults: working width 320, edge median, refinement)"
SGBM_RAW = "OpenCV StereoSGBM"
SGBM_FILLED = "OpenCV StereoSGBM, holes filled (scanline background)"


def test_split_methods(estimator: DepthEstimator) -> dict[str, Method]:
    """The network as `dfocus depth` runs it (edge median, the estimator's working width) and as the
    depth node runs it, next to SGBM raw, hole-filled and + WLS, on the same pair."""
    classical = classical_methods()
    del classical["OpenCV StereoSGBM, holes filled, then the network's edge median"]
    return {NETWORK: network_method(estimator, False),
            NETWORK_NODE: network_method(estimator, False, 320, edge_median=True, refine="on"), **classical}


def summary_rows(family_rows: dict[str, list[dict[str, object]]]) -> list[dict[str, object]]:
    """One line per family: the network as `dfocus depth` runs it against SGBM on equal terms (SGBM's
    valid pixels) and at full coverage (SGBM with its holes filled)."""
    out: list[dict[str, object]] = []
    for family, rows in family_rows.items():
        by = {str(r["method"]): r for r in rows}
        net, raw, filled = by[NETWORK], by[SGBM_RAW], by[SGBM_FILLED]
        row: dict[str, object] = {
            "method": family,
            "epe_px": net["epe_px"], "bad2": net["bad2"], "bad_rel5": net["bad_rel5"],
            f"epe_px {SGBM_VALID}": net[f"epe_px {SGBM_VALID}"], f"bad2 {SGBM_VALID}": net[f"bad2 {SGBM_VALID}"],
            "sgbm epe_px": raw["epe_px"], "sgbm bad2": raw["bad2"], "sgbm bad_rel5": raw["bad_rel5"],
            "sgbm coverage": raw["coverage"], "sgbm filled epe_px": filled["epe_px"],
        }
        if "bad007" in net:
            row.update({"bad007": net["bad007"], "mse100": net["mse100"], "sgbm bad007": raw["bad007"]})
        out.append(row)
    return out


ADAPT_SEED_BASE = 7_500_000  # unlabelled bursts adaptation may use: disjoint from the scored scenes
ADAPT_BURSTS = 4


def adaptation_rows(split: dict[str, list[Case]], estimator: DepthEstimator, steps: int, folder: Path,
                    log: Callable[[str], None], dev: bool = False) -> list[dict[str, object]]:
    """Per family of `split` (the test split's, or with `dev` the development split's rigs):
    `dfocus adapt` on ADAPT_BURSTS unlabelled bursts of other scenes of that rig, then the network
    (as `estimator` runs it) scored on the family's cases before and after."""
    from dfocus_depth.adapt import AdaptConfig, adapt

    photos = load_test_photographs()
    rows: list[dict[str, object]] = []
    for name, cases in split.items():
        if dev:
            # The development rigs' own simulator, at other seeds.
            first = cases[0]
            bursts = [c.burst for c in synthetic_cases(ADAPT_BURSTS, first.left.shape[1], ADAPT_SEED_BASE,
                                                       first.burst.calibration(), first.light_field)]
        else:
            family = next(f for f in FAMILIES if f.name == name)
            bursts = [c.burst for c in family_cases(family, ADAPT_BURSTS, photos, ADAPT_SEED_BASE)]
        out = folder / f"adapted_{len(rows)}.pt"
        # At the adaptation's own working width (the depth node's), scored as `estimator` runs.
        record = adapt(bursts, out, log, AdaptConfig(steps=steps, threads=torch.get_num_threads()),
                       estimator.weights)
        before, after = (evaluate(cases, {NETWORK: network_method(e, False)})[0]
                         for e in (estimator, estimator.with_weights(out)))
        rows.append({"method": name, "epe_px": before["epe_px"], "adapted epe_px": after["epe_px"],
                     "change": float(after["epe_px"]) / float(before["epe_px"]) - 1,  # type: ignore[arg-type]
                     "bad2": before["bad2"], "adapted bad2": after["bad2"],
                     "photometric before": record["photometric_error_before"],
                     "photometric after": record["photometric_error_after"]})
    return rows
