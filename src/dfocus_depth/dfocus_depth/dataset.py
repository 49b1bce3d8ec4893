"""Training and test data from the capture simulator: random camera arrays (2-8 cameras, random
layouts, baselines and focus), random scenes, rendered once and reused as many view subsets.

A rendered sample keeps every view; `sample_views` then draws a camera count and a subset so one
render serves several array configurations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from dfocus_capture.burst import Burst, BurstFrame
from dfocus_capture.calibration import ArrayCalibration, CameraModel
from dfocus_capture.sim.textures import KINDS, NATURAL_KINDS

LAYOUTS = ("line", "cross", "grid", "ring", "scatter")
# The only photographs training may cut textures from, all bundled with an installed package (no
# download): scikit-image's, scikit-learn's and matplotlib's samples named here. Every other
# bundled photograph (the rest of scikit-image, OpenCV's samples) and the Middlebury Motorcycle pair
# are kept for the evaluation's test split (`layered_scenes.TEST_PHOTOGRAPHS`) and never trained on.
SKIMAGE_PHOTOGRAPHS = ("brick", "grass", "gravel", "rocket", "coins", "camera", "text", "page", "moon", "horse",
                       "clock")
SKLEARN_PHOTOGRAPHS = ("china.jpg", "flower.jpg")
MATPLOTLIB_PHOTOGRAPHS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")
PHOTOGRAPHS = (*(f"skimage:{n}" for n in SKIMAGE_PHOTOGRAPHS), *(f"sklearn:{n}" for n in SKLEARN_PHOTOGRAPHS),
               *(f"matplotlib:{n}" for n in MATPLOTLIB_PHOTOGRAPHS))
MAX_CAMERAS = 8
# Domain randomisation of the training scenes: procedural kinds with natural-image statistics next to
# the simulator's own, up to three poles or wires, and the share of photograph textures.
TRAINING_KINDS = KINDS + NATURAL_KINDS
MAX_THIN_OBJECTS = 3
PHOTO_SHARE = 0.5


@dataclass
class SimSample:
    burst: Burst
    gt_depth: np.ndarray  # reference camera, HxW metres
    specular: np.ndarray  # HxW bool
    textureless: np.ndarray  # HxW bool
    seed: int


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def layout_offsets(layout: str, count: int, baseline_m: float, rng: np.random.Generator) -> np.ndarray:
    """count x 2 (x, y) positions in the array plane; the reference (row 0) at the origin."""
    if layout == "line":
        pos = [(baseline_m * i, 0.0) for i in range(count)]
    elif layout == "cross":
        ring = [(1, 0), (-1, 0), (0, 1), (0, -1), (2, 0), (-2, 0), (0, 2)]
        pos = [(0.0, 0.0)] + [(baseline_m * a, baseline_m * b) for a, b in ring[: count - 1]]
    elif layout == "grid":
        side = math.ceil(math.sqrt(count))
        pos = [(baseline_m * (i % side), baseline_m * (i // side)) for i in range(count)]
    elif layout == "ring":
        pos = [(0.0, 0.0)] + [
            (baseline_m * math.cos(2 * math.pi * k / (count - 1)), baseline_m * math.sin(2 * math.pi * k / (count - 1)))
            for k in range(count - 1)
        ]
    else:
        pos = [(0.0, 0.0)] + [tuple(rng.uniform(-1.5, 1.5, 2) * baseline_m) for _ in range(count - 1)]
    return np.asarray(pos, dtype=np.float64)


def random_calibration(rng: np.random.Generator, width: int, height: int, count: int = MAX_CAMERAS) -> ArrayCalibration:
    """A plausible random array: shared sensor, random layout/baseline, each camera its own focus."""
    fx = width * rng.uniform(0.9, 1.6)
    focal_mm = rng.uniform(3.5, 8.0)
    pixel_um = focal_mm / fx * 1e3
    f_number = rng.uniform(1.4, 2.8)
    # From light-field-like rigs (a few px of disparity) to wide stereo (a third of the image).
    baseline = math.exp(rng.uniform(math.log(0.004), math.log(0.08)))
    offsets = layout_offsets(str(rng.choice(LAYOUTS)), count, baseline, rng)
    cams = []
    for i, (x, y) in enumerate(offsets):
        T = np.eye(4)
        if i:
            T[:3, :3] = _rotation(*rng.normal(0, math.radians(0.7), 3))  # imperfect mounting, calibrated
            T[:3, 3] = [x, y, rng.normal(0, 0.001)]
        K = np.array([[fx, 0, (width - 1) / 2 + rng.normal(0, 2)], [0, fx, (height - 1) / 2 + rng.normal(0, 2)],
                      [0, 0, 1]])
        cams.append(CameraModel(
            name=f"cam{i}", width=width, height=height, K=K, D=np.zeros(5), T_ref_cam=T,
            focus_distance_m=float(math.exp(rng.uniform(math.log(0.3), math.log(6.0)))),
            focal_length_mm=focal_mm, f_number=f_number, pixel_size_um=pixel_um,
        ))
    return ArrayCalibration(reference_camera="cam0", cameras=tuple(cams))


def array_motion(rng: np.random.Generator, hand_held: bool) -> np.ndarray:
    """Rigid motion of the whole array between shots: actuator shift (~0.5 mm), plus tremor when hand-held."""
    T = np.eye(4)
    T[:3, 3] = [*rng.normal(0, 0.0005, 2), 0.0]
    if hand_held:
        T[:3, :3] = _rotation(*rng.normal(0, math.radians(0.15), 3))
        T[:3, 3] += rng.normal(0, 0.001, 3)
    return T


def load_photograph(name: str) -> np.ndarray:
    """A bundled sample photograph named `source:name` as uint8 RGB or grey (binary images as 0/255)."""
    source, _, item = name.partition(":")
    if source == "skimage":
        import skimage.data

        img = np.asarray(getattr(skimage.data, item)())
    elif source == "sklearn":
        from sklearn.datasets import load_sample_image

        img = np.asarray(load_sample_image(item))
    elif source == "matplotlib":
        import matplotlib.cbook
        import matplotlib.image

        img = np.asarray(matplotlib.image.imread(str(matplotlib.cbook.get_sample_data(item, asfileobj=False))))
    else:
        raise ValueError(f"unknown photograph source in {name!r}: skimage, sklearn or matplotlib")
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return img[..., :3] if img.ndim == 3 else img


def training_photographs() -> tuple[np.ndarray, ...]:
    return tuple(load_photograph(name) for name in PHOTOGRAPHS)


def render_sample(seed: int, width: int, height: int, photos: Sequence[np.ndarray] = ()) -> SimSample:
    """One random array and scene from the simulator: every camera, one or two shots.

    Later shots move the whole array a little (actuators / hand) and, in focus-bracket mode, refocus
    each camera; every frame carries its true pose and focus, as the capture pipeline's do.
    """
    from dfocus_capture.sim import SensorNoise, ThinLensRenderer, random_scene

    rng = np.random.default_rng(seed)
    cal = random_calibration(rng, width, height)
    near = rng.uniform(0.3, 1.0)
    renderer = ThinLensRenderer(random_scene(seed, near_m=near, far_m=near * rng.uniform(4, 20), photos=photos,
                                             kinds=TRAINING_KINDS, photo_share=PHOTO_SHARE,
                                             thin_objects=int(rng.integers(0, MAX_THIN_OBJECTS + 1))))
    # Clean to noisy sensors (gain log-uniform), any vignetting, each camera at its own exposure.
    noise = SensorNoise(gain=float(math.exp(rng.uniform(math.log(0.3), math.log(8.0)))),
                        exposure=float(rng.uniform(0.6, 1.4)), vignetting=float(rng.uniform(0.0, 0.5)))
    exposures = rng.uniform(0.8, 1.25, len(cal.cameras))
    shots = int(rng.integers(1, 3))
    bracket = bool(rng.random() < 0.3)
    frames = []
    gt = spec = flat = None
    for shot in range(shots):
        motion = np.eye(4) if shot == 0 else array_motion(rng, hand_held=bool(rng.random() < 0.3))
        for i, cam in enumerate(cal.cameras):
            focus = cam.focus_distance_m
            if shot and bracket:
                focus = float(math.exp(rng.uniform(math.log(0.3), math.log(6.0))))
            posed = replace(cam, T_ref_cam=motion @ cam.T_ref_cam, focus_distance_m=focus)
            view = renderer.render(posed, noise=replace(noise, exposure=noise.exposure * float(exposures[i])),
                                   rng=rng)
            frames.append(BurstFrame(camera_index=i, shot_index=shot, camera=posed, image=view.image))
            if shot == 0 and i == 0:
                gt, spec, flat = view.depth, view.specular_mask, view.textureless_mask
    assert gt is not None and spec is not None and flat is not None
    burst = Burst(sequence_id=seed, reference_camera="cam0", num_shots=shots, num_cameras=len(cal.cameras),
                  frames=frames, focus_mode=int(bracket))
    return SimSample(burst, gt.astype(np.float32), spec, flat, seed)


def subset_burst(burst: Burst, cameras: list[int]) -> Burst:
    """The burst restricted to some cameras (the reference, index 0 of `cameras`, first)."""
    frames = []
    for shot in range(burst.num_shots):
        for new_i, cam in enumerate(cameras):
            f = burst.frame(shot, cam)
            frames.append(BurstFrame(camera_index=new_i, shot_index=shot, camera=f.camera, image=f.image,
                                 exposure_time_s=f.exposure_time_s, stamp_ns=f.stamp_ns))
    return Burst(sequence_id=burst.sequence_id, reference_camera=burst.reference_camera, num_shots=burst.num_shots,
                 num_cameras=len(cameras), frames=frames, stamp_ns=burst.stamp_ns, focus_mode=burst.focus_mode)


def random_subset(sample: SimSample, num_cameras: int, rng: np.random.Generator) -> Burst:
    ref = sample.burst.reference_index
    others = [i for i in range(sample.burst.num_cameras) if i != ref]
    pick = rng.choice(others, size=min(num_cameras - 1, len(others)), replace=False)
    return subset_burst(sample.burst, [ref, *[int(i) for i in pick]])
